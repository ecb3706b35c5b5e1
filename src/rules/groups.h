// Registration of the base catalogue, one function per group (one file each).
#pragma once

#include "cap/rule.h"

namespace cap::rules {

void register_flow(RuleRegistry& r);   // flow.cpp
void register_text(RuleRegistry& r);   // text.cpp
void register_data(RuleRegistry& r);   // data.cpp
void register_http(RuleRegistry& r);   // http.cpp
void register_content(RuleRegistry& r);  // content.cpp (ServeContent)
void register_storage(RuleRegistry& r);  // storage.cpp (SQL, FlightRecorder, shared files)
void register_ai(RuleRegistry& r);       // ai.cpp (LlmChat, AiAgent)

}  // namespace cap::rules

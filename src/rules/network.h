// The HTTP rules that reach the network: HttpClient, HttpServerExecute and
// HttpResponseAddition (DESIGN §4, group HTTP). They call out through HostServices::http,
// so they run the same in the agent (which runs rule sets that may wait on its wait pool,
// never on an event loop) and in capctl.
//
// HttpResponseAddition changes a response that is already set at once; when none is set
// yet (the request will be proxied, or a later rule answers) it records the change in the
// variable RESPONSE_ADDITIONS, which the host applies to whatever response goes out:
// read_response_additions() turns that variable back into edits.
#pragma once

#include <memory>
#include <vector>

#include "rules/forwarding.h"
#include "cap/request.h"
#include "cap/rule.h"
#include "cap/variables.h"

namespace cap::rules {

/// The variable HttpResponseAddition records pending edits in.
inline constexpr const char* kResponseAdditionsVariable = "RESPONSE_ADDITIONS";

/// Adds HttpClient, HttpServerExecute and HttpResponseAddition to `registry`.
void register_network_rules(RuleRegistry& registry);

/// The edits recorded in RESPONSE_ADDITIONS, in the order the rules ran; null when none.
/// Shared and immutable: a thread reading the same recorded list again (the edits of a rule
/// whose parameters are constants) gets the edits it made of it before.
using ResponseEdits = std::shared_ptr<const std::vector<ResponseEdit>>;
ResponseEdits read_response_additions(Variables& vars);
/// Applies an edit to a rule-set response (a Content-Type header edits content_type).
void apply_to_response(const ResponseEdit& edit, Response& res);

}  // namespace cap::rules

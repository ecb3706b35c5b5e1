// Rule sets used as tools, by AiAgent (tools a model may call) and by the agent's MCP
// server (tools other AI agents call): the JSON schema derived from a rule set's "params",
// the check of the arguments a caller sent, and the run that turns the rule set's result
// into the text handed back.
//
// A tool's result is the rule set's result variable (its "result" field, default RESULT):
// a string as is, any other value as JSON. When that variable is not set: the body of a
// response its rules set; else the name of the RuleSetExit reached; else "done". An error
// that escapes the rule set (no FailSafePoint caught it) is an error result naming the node.
#pragma once

#include <string>

#include "cap/engine.h"

namespace cap::rules {

/// {"type": "object", "properties": {...}, "required": [...], "additionalProperties": false}
Value tool_schema(const RuleSet& rs);

/// "" when `args` (a map, or null for none) fits the rule set's params; else what is wrong
/// ("missing required argument 'order_id'", "argument 'n' must be an integer, got a string").
std::string check_tool_arguments(const RuleSet& rs, const Value& args);

struct ToolOutcome {
  bool error = false;
  std::string text;  // the result, or the error message
  std::string exit;  // the RuleSetExit reached, if any
};

/// Checks `args`, then runs `rs` (Runtime::call_ruleset with `caller` and `label`).
ToolOutcome run_tool(Runtime& runtime, const RuleSet& rs, const Value& args, ExecContext* caller,
                     std::string_view label = {});

}  // namespace cap::rules

#include "rules/tools.h"

#include <cmath>

namespace cap::rules {
namespace {

const char* schema_type(const std::string& type) {
  if (type == "list") return "array";
  if (type == "map") return "object";
  return type.c_str();  // string, number, integer, boolean: the same names
}

bool fits(const std::string& type, const Value& v) {
  if (type == "string") return v.is_string();
  if (type == "number") return v.is_number();
  if (type == "integer")
    return v.is_number() && std::isfinite(v.as_number()) &&
           std::floor(v.as_number()) == v.as_number();
  if (type == "boolean") return v.is_bool();
  if (type == "list") return v.is_list();
  if (type == "map") return v.is_map();
  return false;
}

const char* article(const std::string& type) { return type == "integer" ? "an " : "a "; }

}  // namespace

Value tool_schema(const RuleSet& rs) {
  Map properties;
  List required;
  for (const RuleSetParam& p : rs.params) {
    Map prop;
    prop.set("type", Value(schema_type(p.type)));
    if (!p.description.empty()) prop.set("description", Value(p.description));
    properties.set(p.name, Value(std::move(prop)));
    if (p.required) required.push_back(Value(p.name));
  }
  Map schema;
  schema.set("type", Value("object"));
  schema.set("properties", Value(std::move(properties)));
  if (!required.empty()) schema.set("required", Value(std::move(required)));
  schema.set("additionalProperties", Value(false));
  return Value(std::move(schema));
}

std::string check_tool_arguments(const RuleSet& rs, const Value& args) {
  if (!args.is_null() && !args.is_map())
    return std::string("the arguments must be a JSON object, got ") + type_name(args.type());
  static const Map empty;
  const Map& given = args.is_map() ? args.as_map() : empty;
  for (const auto& [name, value] : given) {
    const RuleSetParam* param = nullptr;
    for (const RuleSetParam& p : rs.params)
      if (p.name == name) param = &p;
    if (!param) {
      std::string known;
      for (const RuleSetParam& p : rs.params) known += (known.empty() ? "" : ", ") + p.name;
      return "unknown argument '" + name + "'" +
             (known.empty() ? std::string("; the tool takes none") : "; it takes: " + known);
    }
    if (value.is_null() && !param->required) continue;
    if (!fits(param->type, value))
      return "argument '" + name + "' must be " + article(param->type) + param->type + ", got " +
             (value.is_null() ? std::string("null") : std::string("a ") + type_name(value.type()));
  }
  for (const RuleSetParam& p : rs.params) {
    const Value* v = given.find(p.name);
    if (p.required && (!v || v->is_null())) return "missing required argument '" + p.name + "'";
  }
  return "";
}

ToolOutcome run_tool(Runtime& runtime, const RuleSet& rs, const Value& args, ExecContext* caller,
                     std::string_view label) {
  ToolOutcome out;
  std::string problem = check_tool_arguments(rs, args);
  if (!problem.empty()) {
    out.error = true;
    out.text = problem;
    return out;
  }
  static const Map empty;
  CallResult r = runtime.call_ruleset(rs, args.is_map() ? args.as_map() : empty, caller, label);
  out.exit = r.exit;
  if (r.failed) {
    out.error = true;
    out.text = r.error;
    return out;
  }
  if (!r.result.is_null())
    out.text = r.result.is_string() ? r.result.as_string() : to_json(r.result);
  else if (r.response.set)
    out.text = r.response.body;
  else if (!r.exit.empty())
    out.text = r.exit;
  else
    out.text = "done";
  return out;
}

}  // namespace cap::rules

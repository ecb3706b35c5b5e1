// Loading the parts of a configuration that make rule sets into MCP tools: a rule set's
// tool parameters and result ("params", "result") and the cap.json "mcp" section (path,
// token, tools, sessions, origins). The rest of the loader is in loader.cpp.
#include <algorithm>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <string_view>

#include "loader_internal.h"

namespace cap::detail {

void Loader::load_tool_params(RuleSet& rs, const json::object& o) {
  const std::string& file = rs.file;
  if (auto* r = o.if_contains("result"); r && !r->is_null()) {
    if (!r->is_string() || !valid_identifier(r->get_string()))
      error(file, "", "result", "must be the name of the variable that holds the tool's result");
    else
      rs.result = std::string(r->get_string());
  }
  cfg_->symbols.intern(rs.result);
  auto* p = o.if_contains("params");
  if (!p || p->is_null()) return;
  if (!p->is_array()) {
    error(file, "", "params",
          "must be a list of {\"name\", \"type\", \"required\", \"description\"}");
    return;
  }
  static const std::set<std::string, std::less<>> types = {"string",  "number", "integer",
                                                           "boolean", "list",   "map"};
  static const std::set<std::string, std::less<>> fields = {"name", "type", "required",
                                                            "description"};
  for (size_t i = 0; i < p->get_array().size(); ++i) {
    const json::value& e = p->get_array()[i];
    std::string where = "params[" + std::to_string(i) + "]";
    if (!e.is_object()) {
      error(file, "", where, "must be an object with name and type");
      continue;
    }
    const json::object& eo = e.get_object();
    for (auto& [k, v] : eo)
      if (!fields.count(std::string_view(k)))
        warning(file, "", where + "." + std::string(k), "unknown field, ignored");
    RuleSetParam param;
    auto* name = eo.if_contains("name");
    if (!name || !name->is_string() || !valid_identifier(name->get_string())) {
      error(file, "", where + ".name", "must be a variable name (letters, digits, _)");
      continue;
    }
    param.name = std::string(name->get_string());
    where = "params." + param.name;
    param.type = "string";
    if (auto* t = eo.if_contains("type")) {
      if (!t->is_string() || !types.count(std::string_view(t->get_string()))) {
        error(file, "", where + ".type",
              "must be string, number, integer, boolean, list or map, got " + json::serialize(*t));
        continue;
      }
      param.type = std::string(t->get_string());
    }
    if (auto* r = eo.if_contains("required")) {
      if (!r->is_bool())
        error(file, "", where + ".required", "must be true or false");
      else
        param.required = r->get_bool();
    }
    if (auto* d = eo.if_contains("description")) {
      if (!d->is_string())
        error(file, "", where + ".description", "must be a string");
      else
        param.description = std::string(d->get_string());
    }
    for (auto& other : rs.params)
      if (other.name == param.name) error(file, "", where, "is listed twice");
    cfg_->symbols.intern(param.name);
    rs.params.push_back(std::move(param));
  }
}

/// The session and stream settings of cap.json "mcp" (see McpSettings).
void Loader::load_mcp_session_settings(const json::object& m, McpSettings& mcp) {
  auto whole = [&](std::string_view name, int lo, int hi, int& out) {
    auto* v = m.if_contains(name);
    if (!v || v->is_null()) return;
    double d = v->is_int64()    ? static_cast<double>(v->get_int64())
               : v->is_uint64() ? static_cast<double>(v->get_uint64())
               : v->is_double() ? v->get_double()
                                : -1e18;
    if (d != static_cast<double>(static_cast<int64_t>(d)) || d < lo || d > hi)
      error("cap.json", "", "mcp." + std::string(name),
            "must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
    else
      out = static_cast<int>(d);
  };
  whole("session_ttl_s", 1, 7 * 24 * 3600, mcp.session_ttl_s);
  whole("max_sessions", 1, 100000, mcp.max_sessions);
  whole("keepalive_s", 1, 300, mcp.keepalive_s);
  if (auto* v = m.if_contains("sessions"); v && !v->is_null()) {
    if (!v->is_bool())
      error("cap.json", "", "mcp.sessions", "must be true (sessions) or false (stateless)");
    else
      mcp.sessions = v->get_bool();
  }
  if (auto* v = m.if_contains("origins"); v && !v->is_null()) {
    if (!v->is_array()) {
      error("cap.json", "", "mcp.origins",
            "must be a list of origins like \"https://app.example.com\"");
      return;
    }
    for (auto& e : v->get_array()) {
      std::string_view o = e.is_string() ? std::string_view(e.get_string()) : std::string_view();
      size_t scheme = o.find("://");
      if (scheme == std::string_view::npos || scheme == 0 || o.size() == scheme + 3 ||
          o.find_first_of("/?# ", scheme + 3) != std::string_view::npos)
        error("cap.json", "", "mcp.origins",
              "must hold origins like \"https://app.example.com\" (scheme, host, optional "
              "port; no path), got " +
                  json::serialize(e));
      else
        mcp.origins.emplace_back(o);
    }
  }
}

void Loader::load_mcp() {
  auto* v = manifest_.is_object() ? manifest_.get_object().if_contains("mcp") : nullptr;
  if (!v || v->is_null()) return;
  if (!v->is_object()) {
    error("cap.json", "", "mcp",
          "must be an object: {\"path\": \"/mcp\", \"token\": \"${vault:NAME.field}\", "
          "\"tools\": [rule set names]}");
    return;
  }
  const json::object& m = v->get_object();
  static constexpr std::string_view kFields[] = {"path",         "token",      "tools",
                                                 "origins",      "sessions",   "session_ttl_s",
                                                 "max_sessions", "keepalive_s"};
  for (auto& [k, val] : m)
    if (std::find(std::begin(kFields), std::end(kFields), std::string_view(k)) == std::end(kFields))
      warning("cap.json", "", "mcp." + std::string(k), "unknown field, ignored");
  McpSettings mcp;
  mcp.path = "/mcp";
  load_mcp_session_settings(m, mcp);
  if (auto* p = m.if_contains("path"); p && !p->is_null()) {
    if (!p->is_string() || p->get_string().empty() || p->get_string()[0] != '/' ||
        p->get_string().find_first_of("?# \r\n") != json::string::npos ||
        p->get_string().starts_with("/.cap/"))
      error("cap.json", "", "mcp.path",
            "must be a path starting with '/' (not under /.cap/), without spaces, '?' or '#'");
    else
      mcp.path = std::string(p->get_string());
  }
  auto* t = m.if_contains("token");
  if (!t || !t->is_string() || t->get_string().empty()) {
    error("cap.json", "", "mcp.token",
          "missing: the bearer token clients must send, from the vault: "
          "\"${vault:NAME.field}\"");
  } else {
    std::string err;
    auto tmpl = compile_template(t->get_string(), env_, &err);
    if (!tmpl)
      error("cap.json", "", "mcp.token", err);
    else if (t->get_string().find("${vault:") == json::string::npos &&
             t->get_string().find("${env:") == json::string::npos)
      error("cap.json", "", "mcp.token",
            "must come from the vault (\"${vault:NAME.field}\") or the environment, not be "
            "written in the configuration");
    else
      mcp.token = std::move(*tmpl);
  }
  auto* tools = m.if_contains("tools");
  if (!tools || !tools->is_array() || tools->get_array().empty()) {
    error("cap.json", "", "mcp.tools", "must be a non-empty list of rule set names");
  } else {
    for (auto& e : tools->get_array()) {
      if (!e.is_string()) {
        error("cap.json", "", "mcp.tools", "must hold rule set names, got " + json::serialize(e));
        continue;
      }
      const RuleSet* rs = cfg_->find_ruleset(std::string_view(e.get_string()));
      if (!rs) {
        error("cap.json", "", "mcp.tools",
              "rule set '" + std::string(e.get_string()) + "' does not exist");
        continue;
      }
      if (rs->description.empty())
        error("cap.json", "", "mcp.tools",
              "rule set '" + rs->name +
                  "' needs a \"description\": it tells clients what the tool does");
      mcp.tools.push_back(rs);
    }
  }
  cfg_->mcp = std::move(mcp);
}

}  // namespace cap::detail

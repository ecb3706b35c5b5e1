#include "ext/manifest.h"

#include <charconv>
#include <cmath>
#include <set>

namespace cap::ext {

namespace {

bool valid_rule_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
    return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

bool valid_identifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  return true;
}

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

struct Parser {
  std::vector<std::string>* errors;
  void error(const std::string& field, const std::string& message) {
    errors->push_back(field.empty() ? message : field + ": " + message);
  }
  /// A string field; `required` reports its absence.
  std::string str(const Map& m, const std::string& prefix, std::string_view key, bool required) {
    const Value* v = m.find(key);
    std::string field = prefix + std::string(key);
    if (!v || v->is_null()) {
      if (required) error(field, "missing (a string)");
      return {};
    }
    if (!v->is_string()) {
      error(field, std::string("must be a string, got ") + type_name(v->type()));
      return {};
    }
    return v->as_string();
  }
};

bool param_type_from(std::string_view s, ParamType* t) {
  static const std::pair<std::string_view, ParamType> kTypes[] = {
      {"string", ParamType::String},     {"number", ParamType::Number},
      {"boolean", ParamType::Boolean},   {"expression", ParamType::Expression},
      {"variable", ParamType::Variable}, {"list", ParamType::List},
      {"map", ParamType::Map},           {"any", ParamType::Any},
  };
  for (auto& [name, type] : kTypes)
    if (name == s) {
      *t = type;
      return true;
    }
  return false;
}

void parse_params(Parser& p, const Value& v, const std::string& prefix, RuleSpec* spec) {
  if (v.is_null()) return;
  if (!v.is_list()) {
    p.error(prefix, "must be a list of parameters");
    return;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < v.as_list().size(); ++i) {
    const Value& e = v.as_list()[i];
    std::string at = prefix + "[" + std::to_string(i) + "]";
    if (!e.is_map()) {
      p.error(at, "must be an object {\"name\", \"type\", ...}");
      continue;
    }
    const Map& m = e.as_map();
    for (auto& [k, val] : m)
      if (k != "name" && k != "type" && k != "required" && k != "default" && k != "doc" &&
          k != "choices")
        p.error(at + "." + k,
                "unknown field (a parameter has name, type, required, default, doc, choices)");
    ParamSpec ps;
    ps.name = p.str(m, at + ".", "name", true);
    if (!ps.name.empty() && !valid_identifier(ps.name))
      p.error(at + ".name",
              "'" + ps.name + "' is not a valid parameter name (letters, digits, _ and -)");
    if (!ps.name.empty() && !seen.insert(ps.name).second)
      p.error(at + ".name", "parameter '" + ps.name + "' is declared twice");
    std::string type = p.str(m, at + ".", "type", false);
    if (!type.empty() && !param_type_from(type, &ps.type))
      p.error(at + ".type",
              "unknown type '" + type +
                  "' (string, number, boolean, expression, variable, list, map, any)");
    if (const Value* r = m.find("required"); r && !r->is_null()) {
      if (!r->is_bool())
        p.error(at + ".required", "must be true or false");
      else
        ps.required = r->as_bool();
    }
    if (const Value* d = m.find("default")) ps.default_value = *d;
    ps.doc = p.str(m, at + ".", "doc", false);
    if (const Value* c = m.find("choices"); c && !c->is_null()) {
      if (!c->is_list())
        p.error(at + ".choices", "must be a list of strings");
      else
        for (const Value& x : c->as_list()) ps.choices.push_back(x.to_text());
    }
    spec->params.push_back(std::move(ps));
  }
}

void parse_rule(Parser& p, const Value& v, const std::string& at, Manifest* out) {
  if (!v.is_map()) {
    p.error(at,
            "must be an object {\"name\", \"group\", \"doc\", \"params\", \"chain_points\", "
            "\"script\"}");
    return;
  }
  const Map& m = v.as_map();
  static const std::set<std::string, std::less<>> known = {
      "name", "group", "doc", "params", "chain_points", "script", "waits"};
  for (auto& [k, val] : m)
    if (!known.count(k)) p.error(at + "." + k, "unknown field");
  RuleDef def;
  def.spec.name = p.str(m, at + ".", "name", true);
  if (!def.spec.name.empty() && !valid_rule_name(def.spec.name))
    p.error(at + ".name", "'" + def.spec.name +
                              "' is not a valid rule name (a letter, then letters, digits or _)");
  def.spec.group = p.str(m, at + ".", "group", false);
  if (def.spec.group.empty()) def.spec.group = "Extensions";
  def.spec.doc = p.str(m, at + ".", "doc", true);
  if (const Value* params = m.find("params")) parse_params(p, *params, at + ".params", &def.spec);
  const Value* cps = m.find("chain_points");
  if (!cps || cps->is_null()) {
    def.spec.chain_points = {"next"};
  } else if (!cps->is_list() || cps->as_list().empty()) {
    p.error(at + ".chain_points", "must be a non-empty list of names");
  } else {
    std::set<std::string> seen;
    for (const Value& c : cps->as_list()) {
      if (!c.is_string() || !valid_identifier(c.as_string())) {
        p.error(at + ".chain_points", "'" + c.to_text() + "' is not a valid chain point name");
        continue;
      }
      if (!seen.insert(c.as_string()).second)
        p.error(at + ".chain_points", "'" + c.as_string() + "' is listed twice");
      def.spec.chain_points.push_back(c.as_string());
    }
  }
  def.script = p.str(m, at + ".", "script", true);
  if (!def.script.empty() && (!safe_relative_path(def.script) || !def.script.ends_with(".lua")))
    p.error(at + ".script",
            "'" + def.script + "' must be a relative path to a .lua file inside the package");
  if (const Value* w = m.find("waits"); w && !w->is_null()) {
    if (!w->is_bool())
      p.error(at + ".waits", "must be true or false");
    else
      def.spec.may_wait = w->as_bool();
  }
  out->rules.push_back(std::move(def));
}

}  // namespace

bool valid_extension_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9'))) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

bool parse_version(std::string_view v, int out[3]) {
  out[0] = out[1] = out[2] = 0;
  if (v.empty()) return false;
  for (int i = 0; i < 3; ++i) {
    int n = 0;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || ptr == v.data() || n < 0) return false;
    out[i] = n;
    v.remove_prefix(static_cast<size_t>(ptr - v.data()));
    if (v.empty()) return true;
    if (v[0] != '.' || i == 2) return false;
    v.remove_prefix(1);
  }
  return false;
}

namespace {
int compare(const int a[3], const int b[3]) {
  for (int i = 0; i < 3; ++i)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}
}  // namespace

bool version_satisfies(std::string_view version, std::string_view requirement, std::string* error) {
  error->clear();
  int have[3];
  if (!parse_version(version, have)) {
    *error = "'" + std::string(version) + "' is not a version (MAJOR.MINOR.PATCH)";
    return false;
  }
  bool all = true, any = false;
  while (!requirement.empty()) {
    size_t sp = requirement.find(' ');
    std::string_view term = requirement.substr(0, sp);
    requirement = sp == std::string_view::npos ? std::string_view() : requirement.substr(sp + 1);
    if (term.empty()) continue;
    any = true;
    if (term == "*") continue;
    std::string_view op;
    for (std::string_view o : {">=", "<=", ">", "<", "^", "~", "="})
      if (term.starts_with(o)) {
        op = o;
        break;
      }
    int want[3];
    if (!parse_version(term.substr(op.size()), want)) {
      *error = "'" + std::string(term) +
               "' is not a version requirement (1.2.0, >=1.2, <2, ^1.2.0, ~1.2.0 or *)";
      return false;
    }
    int c = compare(have, want);
    bool ok = op.empty() || op == "=" ? c == 0
              : op == ">="            ? c >= 0
              : op == "<="            ? c <= 0
              : op == ">"             ? c > 0
              : op == "<"             ? c < 0
              : op == "^"             ? c >= 0 && have[0] == want[0]
                                      : c >= 0 && have[0] == want[0] && have[1] == want[1];
    all = all && ok;
  }
  if (!any) {
    *error = "the version requirement is empty";
    return false;
  }
  return all;
}

bool parse_manifest(std::string_view json, Manifest* out, std::vector<std::string>* errors) {
  size_t before = errors->size();
  Parser p{errors};
  std::string err;
  Value doc = json_parse(json, &err);
  if (!err.empty()) {
    p.error("extension.json", "not valid JSON: " + err);
    return false;
  }
  if (!doc.is_map()) {
    p.error("extension.json", "must be a JSON object");
    return false;
  }
  const Map& m = doc.as_map();
  static const std::set<std::string, std::less<>> known = {
      "name", "version", "cap", "description", "rules", "credentials", "limits", "sha256"};
  for (auto& [k, v] : m)
    if (!known.count(k)) p.error(k, "unknown field");
  Manifest man;
  man.name = p.str(m, "", "name", true);
  if (!man.name.empty() && !valid_extension_name(man.name))
    p.error("name", "'" + man.name +
                        "' is not a valid extension name (1 to 64 of a-z 0-9 - _ ., starting "
                        "with a letter or digit)");
  man.version = p.str(m, "", "version", true);
  int v[3];
  if (!man.version.empty() && !parse_version(man.version, v))
    p.error("version", "'" + man.version + "' is not a version (MAJOR.MINOR.PATCH, e.g. 1.0.0)");
  man.cap = p.str(m, "", "cap", false);
  if (!man.cap.empty()) {
    std::string verr;
    bool fits = version_satisfies(CAP_VERSION, man.cap, &verr);
    if (!verr.empty())
      p.error("cap", verr);
    else if (!fits)
      p.error("cap", "this extension needs CAP " + man.cap + "; this is CAP " + CAP_VERSION);
  }
  man.description = p.str(m, "", "description", false);

  const Value* rules = m.find("rules");
  if (!rules || !rules->is_list() || rules->as_list().empty()) {
    p.error("rules", "must be a non-empty list of rules");
  } else {
    for (size_t i = 0; i < rules->as_list().size(); ++i)
      parse_rule(p, rules->as_list()[i], "rules[" + std::to_string(i) + "]", &man);
    std::set<std::string> names;
    for (auto& r : man.rules)
      if (!r.spec.name.empty() && !names.insert(r.spec.name).second)
        p.error("rules", "rule '" + r.spec.name + "' is declared twice");
  }

  if (const Value* creds = m.find("credentials"); creds && !creds->is_null()) {
    if (!creds->is_list())
      p.error("credentials", "must be a list");
    else
      for (size_t i = 0; i < creds->as_list().size(); ++i) {
        const Value& c = creds->as_list()[i];
        std::string at = "credentials[" + std::to_string(i) + "]";
        if (!c.is_map()) {
          p.error(at, "must be an object {\"name\", \"fields\", \"doc\"}");
          continue;
        }
        CredentialDef def;
        def.name = p.str(c.as_map(), at + ".", "name", true);
        def.doc = p.str(c.as_map(), at + ".", "doc", false);
        if (const Value* f = c.as_map().find("fields"); f && f->is_list())
          for (const Value& x : f->as_list()) def.fields.push_back(x.to_text());
        man.credentials.push_back(std::move(def));
      }
  }

  if (const Value* lim = m.find("limits"); lim && !lim->is_null()) {
    if (!lim->is_map()) {
      p.error("limits", "must be an object {\"instructions\", \"memory_mb\"}");
    } else {
      for (auto& [k, val] : lim->as_map()) {
        double d = val.is_number() ? val.as_number() : -1;
        if (k == "instructions") {
          if (d < 1000 || d > static_cast<double>(kMaxInstructions) || d != std::floor(d))
            p.error("limits.instructions",
                    "must be a whole number from 1000 to " + std::to_string(kMaxInstructions));
          else
            man.limits.instructions = static_cast<uint64_t>(d);
        } else if (k == "memory_mb") {
          if (d < 1 || d > static_cast<double>(kMaxMemoryBytes >> 20) || d != std::floor(d))
            p.error("limits.memory_mb",
                    "must be a whole number from 1 to " + std::to_string(kMaxMemoryBytes >> 20));
          else
            man.limits.memory_bytes = static_cast<uint64_t>(d) << 20;
        } else {
          p.error("limits." + k, "unknown limit (instructions, memory_mb)");
        }
      }
    }
  }

  if (const Value* sums = m.find("sha256"); sums && !sums->is_null()) {
    if (!sums->is_map()) {
      p.error("sha256", "must be an object of member path to hex SHA-256");
    } else {
      for (auto& [path, h] : sums->as_map()) {
        if (!h.is_string() || !is_hex64(h.as_string()))
          p.error("sha256." + path, "must be 64 lower-case hex digits");
        else
          man.sha256[path] = h.as_string();
      }
    }
  }

  for (auto& r : man.rules) {
    r.spec.extension = man.name;
    r.spec.extension_version = man.version;
  }
  if (errors->size() != before) return false;
  *out = std::move(man);
  return true;
}

std::string manifest_json(std::string_view original_json,
                          const std::map<std::string, std::string>& sha256) {
  std::string err;
  Value doc = json_parse(original_json, &err);
  Map m = doc.is_map() ? doc.as_map() : Map();
  Map sums;
  for (auto& [k, v] : sha256) sums.append(k, Value(v));
  m.set("sha256", Value(std::move(sums)));
  return to_json(Value(std::move(m))) + "\n";
}

}  // namespace cap::ext

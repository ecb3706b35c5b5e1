// Loading and validation: every error at once, as FILE: node ID: PARAM: message.
// The Loader class is declared in loader_internal.h; its MCP and tool-parameter loading
// is in loader_mcp.cpp.
#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <unordered_map>

#include "cap/engine.h"
#include "loader_internal.h"

namespace cap {

namespace json = boost::json;

std::string Diagnostic::format() const {
  std::string out = file.empty() ? std::string("configuration") : file;
  if (!node.empty()) out += ": node " + node;
  if (!param.empty()) out += ": " + param;
  out += ": ";
  if (severity == Severity::Warning) out += "warning: ";
  out += message;
  return out;
}

size_t LoadResult::error_count() const {
  return std::count_if(diagnostics.begin(), diagnostics.end(),
                       [](auto& d) { return d.severity == Diagnostic::Severity::Error; });
}

const RuleSet* Configuration::find_ruleset(std::string_view n) const {
  for (auto& rs : rulesets)
    if (rs->name == n) return rs.get();
  return nullptr;
}

namespace {

constexpr size_t kMaxJsonDepth = 64;
constexpr size_t kMaxJsonBytes = 8u << 20;

Value to_value(const json::value& j) {
  switch (j.kind()) {
    case json::kind::null:
      return Value();
    case json::kind::bool_:
      return Value(j.get_bool());
    case json::kind::int64:
      return Value(static_cast<double>(j.get_int64()));
    case json::kind::uint64:
      return Value(static_cast<double>(j.get_uint64()));
    case json::kind::double_:
      return Value(j.get_double());
    case json::kind::string:
      return Value(std::string_view(j.get_string()));
    case json::kind::array: {
      List l;
      for (auto& e : j.get_array()) l.push_back(to_value(e));
      return Value(std::move(l));
    }
    case json::kind::object: {
      Map m;
      for (auto& [k, v] : j.get_object()) m.set(std::string(k), to_value(v));
      return Value(std::move(m));
    }
  }
  return Value();
}

const char* json_kind_name(const json::value& j) {
  switch (j.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "a list";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

/// Whether any JSON file of the package holds the word BODY (case-sensitive, as variable
/// names are): in an expression, a template, a Variable parameter, a global. Deliberately
/// coarse: a mention anywhere, even in a description, counts.
bool package_mentions_body(const Package& pkg) {
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (auto& [path, text] : pkg.files) {
    if (path.size() < 5 || path.compare(path.size() - 5, 5, ".json") != 0) continue;
    std::string_view t(text);
    // An escaped capital or underscore (\u0042ODY) could spell it too.
    for (size_t at = t.find("\\u00"); at != std::string_view::npos; at = t.find("\\u00", at + 1))
      if (at + 5 < t.size() && (t[at + 4] == '4' || t[at + 4] == '5')) return true;
    for (size_t at = t.find("BODY"); at != std::string_view::npos; at = t.find("BODY", at + 1)) {
      bool before = at > 0 && ident(t[at - 1]);
      bool after = at + 4 < t.size() && ident(t[at + 4]);
      if (!before && !after) return true;
    }
  }
  return false;
}

}  // namespace

namespace detail {

bool valid_identifier(std::string_view s) {
  if (s.empty() || s.size() > 200) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

}  // namespace detail

namespace {

/// Edit distance, for "did you mean" hints.
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggest(std::string_view name, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = 3;
  for (auto& k : known) {
    size_t d = distance(name, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

using detail::Loader;

class NodeCompileContext : public CompileContext {
 public:
  NodeCompileContext(Loader& l, const std::string& file, const std::string& node, const Params& p,
                     const std::vector<std::string>& cps, const json::object* then)
      : loader_(l), file_(file), node_(node), params_(p), cps_(cps), then_(then) {}
  const Params& params() const override { return params_; }
  const std::vector<std::string>& chain_points() const override { return cps_; }
  void error(std::string_view param, std::string message) override;
  void warning(std::string_view param, std::string message) override;
  CompileEnv& env() override;
  std::shared_ptr<DataFile> data_file(std::string_view param, std::string_view path,
                                      DataFile::Parser parse) override;
  const std::vector<std::string>& mode_names() const override;
  const std::string& node_id() const override { return node_; }
  const Package& package() const override;
  bool chain_wired(std::string_view name) const override {
    if (!then_) return false;
    auto* v = then_->if_contains(name);
    return v && ((v->is_array() && !v->get_array().empty()) || v->is_string());
  }
  const std::map<std::string, std::string>& databases() const override;
  bool failed = false;

 private:
  Loader& loader_;
  const std::string& file_;
  const std::string& node_;
  const Params& params_;
  const std::vector<std::string>& cps_;
  const json::object* then_;
};

void NodeCompileContext::error(std::string_view param, std::string message) {
  failed = true;
  loader_.error(file_, node_, param, std::move(message));
}
void NodeCompileContext::warning(std::string_view param, std::string message) {
  loader_.warning(file_, node_, param, std::move(message));
}
CompileEnv& NodeCompileContext::env() { return loader_.env(); }
std::shared_ptr<DataFile> NodeCompileContext::data_file(std::string_view param,
                                                        std::string_view path,
                                                        DataFile::Parser parse) {
  auto df = loader_.data_file(file_, node_, param, path, std::move(parse));
  if (!df) failed = true;
  return df;
}
const Package& NodeCompileContext::package() const { return loader_.package(); }
const std::map<std::string, std::string>& NodeCompileContext::databases() const {
  return loader_.databases();
}
const std::vector<std::string>& NodeCompileContext::mode_names() const {
  return loader_.mode_names;
}

}  // namespace

namespace detail {

std::optional<json::value> Loader::parse_json(const std::string& file, const std::string& text) {
  if (text.size() > kMaxJsonBytes) {
    error(file, "", "",
          "file is too large (" + std::to_string(text.size()) + " bytes; at most " +
              std::to_string(kMaxJsonBytes) + ")");
    return std::nullopt;
  }
  json::parse_options po;
  po.max_depth = kMaxJsonDepth;
  json::stream_parser p(json::storage_ptr(), po);
  boost::system::error_code ec;
  size_t used = p.write_some(text.data(), text.size(), ec);
  if (!ec) p.finish(ec);
  if (ec) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < used && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string why = ec == json::error::too_deep
                          ? "nested more than " + std::to_string(kMaxJsonDepth) + " levels deep"
                          : ec.message();
    error(file, "", "",
          "invalid JSON at line " + std::to_string(line) + ", column " + std::to_string(col) +
              ": " + why);
    return std::nullopt;
  }
  if (used != text.size()) {
    error(file, "", "", "invalid JSON: extra data after the document");
    return std::nullopt;
  }
  return p.release();
}

const RuleSet* Loader::ruleset_ref(const json::object& m, const char* key) {
  auto* v = m.if_contains(key);
  if (!v || v->is_null()) return nullptr;
  if (!v->is_string()) {
    error("cap.json", "", key, std::string("must be a rule set name, got ") + json_kind_name(*v));
    return nullptr;
  }
  const RuleSet* rs = cfg_->find_ruleset(std::string_view(v->get_string()));
  if (!rs) {
    std::vector<std::string> names;
    for (auto& r : cfg_->rulesets) names.push_back(r->name);
    error("cap.json", "", key,
          "rule set '" + std::string(v->get_string()) + "' does not exist (there is no rulesets/" +
              std::string(v->get_string()) + ".json)" + suggest(v->get_string(), names));
  }
  return rs;
}

void Loader::load_manifest() {
  const std::string* text = pkg_.find("cap.json");
  if (!text) {
    error("cap.json", "", "", "missing: a configuration folder needs a cap.json manifest");
    return;
  }
  auto doc = parse_json("cap.json", *text);
  if (!doc) return;
  if (!doc->is_object()) {
    error("cap.json", "", "", std::string("must be a JSON object, got ") + json_kind_name(*doc));
    return;
  }
  manifest_ = std::move(*doc);
  auto& m = manifest_.get_object();
  static const std::set<std::string, std::less<>> known = {"format",
                                                           "name",
                                                           "description",
                                                           "ruleset",
                                                           "content_ruleset",
                                                           "startup_ruleset",
                                                           "completion_ruleset",
                                                           "modes",
                                                           "globals",
                                                           "origin",
                                                           "databases",
                                                           "performance",
                                                           "extensions",
                                                           "mcp"};
  for (auto& [k, v] : m)
    if (!known.count(std::string_view(k)))
      warning("cap.json", "", std::string(k), "unknown field, ignored");
  auto* format = m.if_contains("format");
  if (!format) {
    error("cap.json", "", "format", "missing: write \"format\": 1");
  } else if (!format->is_number() || format->to_number<double>() != 1) {
    error("cap.json", "", "format",
          "unknown format version " + json::serialize(*format) +
              "; this version of CAP reads format 1");
  }
  auto str_field = [&](const char* key, bool required, std::string* out) {
    auto* v = m.if_contains(key);
    if (!v || v->is_null()) {
      if (required) error("cap.json", "", key, "missing: required");
      return;
    }
    if (!v->is_string()) {
      error("cap.json", "", key, std::string("must be a string, got ") + json_kind_name(*v));
      return;
    }
    *out = std::string(v->get_string());
  };
  str_field("name", true, &cfg_->name);
  str_field("description", false, &cfg_->description);
  std::string entry;
  str_field("ruleset", true, &entry);
  std::string origin;
  str_field("origin", false, &origin);
  if (!origin.empty()) {
    std::string err;
    auto t = compile_template(origin, env_, &err);
    if (!t)
      error("cap.json", "", "origin", err);
    else if (!t->is_constant())
      error("cap.json", "", "origin", "must not depend on variables");
    else
      cfg_->origin = t->constant().to_text();
    if (!cfg_->origin.empty() && cfg_->origin.rfind("http://", 0) != 0 &&
        cfg_->origin.rfind("https://", 0) != 0)
      error("cap.json", "", "origin",
            "must start with http:// or https://, got '" + cfg_->origin + "'");
  }
  std::string perf = "counts";
  str_field("performance", false, &perf);
  if (perf == "off" || perf == "none")
    cfg_->performance = PerformanceLevel::Off;
  else if (perf == "counts")
    cfg_->performance = PerformanceLevel::Counts;
  else if (perf == "timings")
    cfg_->performance = PerformanceLevel::Timings;
  else
    error("cap.json", "", "performance", "must be off, counts or timings, got '" + perf + "'");

  if (auto* modes = m.if_contains("modes"); modes && !modes->is_null()) {
    if (!modes->is_object())
      error("cap.json", "", "modes", "must be an object of mode name to rule set name");
    else
      for (auto& [k, v] : modes->get_object()) mode_names.emplace_back(k);
  }
  if (auto* g = m.if_contains("globals"); g && !g->is_null()) {
    if (!g->is_object()) {
      error("cap.json", "", "globals", "must be an object of variable name to value");
    } else {
      for (auto& [k, v] : g->get_object()) {
        std::string name(k);
        if (!valid_identifier(name)) {
          error("cap.json", "", "globals." + name, "is not a valid variable name");
          continue;
        }
        Value val = to_value(v);
        if (v.is_string()) {
          std::string err;
          auto t = compile_template(v.get_string(), env_, &err);
          if (!t) {
            error("cap.json", "", "globals." + name, err);
            continue;
          }
          if (!t->is_constant()) {
            error("cap.json", "", "globals." + name, "globals may use ${env:...} but no variables");
            continue;
          }
          val = t->constant();
        }
        cfg_->globals.emplace_back(cfg_->symbols.intern(name), std::move(val));
      }
    }
  }
  if (auto* dbs = m.if_contains("databases"); dbs && !dbs->is_null()) {
    if (!dbs->is_object()) {
      error("cap.json", "", "databases", "must be an object of database name to {\"url\": ...}");
    } else {
      for (auto& [k, v] : dbs->get_object()) {
        std::string key = "databases." + std::string(k);
        auto* url = v.is_object() ? v.get_object().if_contains("url") : nullptr;
        if (!url || !url->is_string()) {
          error("cap.json", "", key,
                "needs \"url\": a postgresql://, jdbc:postgresql:// or sqlite:// address");
          continue;
        }
        std::string err;
        auto t = compile_template(url->get_string(), env_, &err);
        if (!t)
          error("cap.json", "", key + ".url", err);
        else
          cfg_->databases[std::string(k)] = t->is_constant() ? t->constant().to_text() : "";
      }
    }
  }
  if (auto* ex = m.if_contains("extensions"); ex && !ex->is_null()) {
    if (!ex->is_object())
      error("cap.json", "", "extensions", "must be an object of extension name to version");
    else
      for (auto& [k, v] : ex->get_object()) {
        if (!v.is_string())
          error("cap.json", "", "extensions." + std::string(k), "version must be a string");
        else {
          cfg_->extensions[std::string(k)] = std::string(v.get_string());
          if (opts_.check_extension) {
            std::string problem = opts_.check_extension(k, v.get_string());
            if (!problem.empty()) error("cap.json", "", "extensions." + std::string(k), problem);
          }
        }
      }
  }
}

void Loader::declare_ruleset(const std::string& file, const json::value& doc) {
  std::string stem = std::filesystem::path(file).stem().string();
  if (!doc.is_object()) {
    error(file, "", "", std::string("must be a JSON object, got ") + json_kind_name(doc));
    return;
  }
  auto& o = doc.get_object();
  auto rs = std::make_unique<RuleSet>();
  rs->file = file;
  rs->name = stem;
  if (auto* n = o.if_contains("name")) {
    if (!n->is_string())
      error(file, "", "name", "must be a string");
    else if (n->get_string() != stem)
      error(file, "", "name",
            "is '" + std::string(n->get_string()) + "' but the file is named " + stem +
                ".json: they must match");
  }
  if (auto* d = o.if_contains("description"); d && d->is_string())
    rs->description = std::string(d->get_string());
  load_tool_params(*rs, o);
  docs_.emplace_back(rs.get(), o);
  cfg_->rulesets.push_back(std::move(rs));
}

void Loader::check_cycles() {
  // Depth-first search over "node runs rule set" edges. Iterative, not recursive: a
  // configuration may nest thousands of rule sets, and one stack frame per level would
  // overflow the stack (it does under AddressSanitizer at 10,000 levels).
  std::unordered_map<const RuleSet*, int> state;  // 0 new, 1 on the path, 2 done
  struct Frame {
    const RuleSet* rs;
    size_t next;  // the next node to look at
  };
  std::vector<Frame> path;
  for (auto& root : cfg_->rulesets) {
    if (state[root.get()] != 0) continue;
    state[root.get()] = 1;
    path.push_back({root.get(), 0});
    while (!path.empty()) {
      Frame& f = path.back();
      if (f.next >= f.rs->nodes.size()) {
        state[f.rs] = 2;
        path.pop_back();
        continue;
      }
      const RuleSet* rs = f.rs;
      const Node& n = *rs->nodes[f.next++];
      if (!n.ruleset) continue;
      int& s = state[n.ruleset];
      if (s == 1) {
        std::string cycle;
        auto from = std::find_if(path.begin(), path.end(),
                                 [&](const Frame& p) { return p.rs == n.ruleset; });
        for (auto it = from; it != path.end(); ++it) cycle += it->rs->name + " -> ";
        cycle += n.ruleset->name;
        error(rs->file, n.id, "ruleset", "rule set cycle: " + cycle);
      } else if (s == 0) {
        s = 1;
        path.push_back({n.ruleset, 0});  // invalidates f
      }
    }
  }
}

bool Loader::compile_any(const std::string& file, const std::string& node, const std::string& pname,
                         const json::value& v, Param* out, int depth) {
  if (depth > 32) {
    error(file, node, pname, "nested too deeply");
    return false;
  }
  if (v.is_string()) {
    std::string err;
    auto t = compile_template(v.get_string(), env_, &err);
    if (!t) {
      error(file, node, pname, err);
      return false;
    }
    *out = Param::from_template(std::move(*t));
    return true;
  }
  if (v.is_array() || v.is_object()) {
    std::vector<std::pair<std::string, Param>> members;
    bool ok = true;
    if (v.is_array()) {
      size_t i = 0;
      for (auto& e : v.get_array()) {
        Param p;
        ok = compile_any(file, node, pname + "[" + std::to_string(i++) + "]", e, &p, depth + 1) &&
             ok;
        members.emplace_back("", std::move(p));
      }
    } else {
      for (auto& [k, e] : v.get_object()) {
        Param p;
        ok = compile_any(file, node, pname + "." + std::string(k), e, &p, depth + 1) && ok;
        members.emplace_back(std::string(k), std::move(p));
      }
    }
    if (!ok) return false;
    // The constant shape, for composites whose members are all constant.
    Value shape;
    if (v.is_array()) {
      List l;
      for (auto& [k, p] : members) l.push_back(p.constant_value());
      shape = Value(std::move(l));
    } else {
      Map m;
      for (auto& [k, p] : members) m.set(k, p.constant_value());
      shape = Value(std::move(m));
    }
    *out = Param::composite(std::move(shape), std::move(members), v.is_array());
    return true;
  }
  *out = Param::constant(to_value(v));
  return true;
}

bool Loader::compile_param(const std::string& file, const std::string& node, const ParamSpec& spec,
                           const json::value& v, Param* out) {
  const std::string& pn = spec.name;
  auto wrong = [&](const char* expected) {
    error(file, node, pn,
          std::string("must be ") + expected + ", got " + json_kind_name(v) + " " +
              json::serialize(v).substr(0, 60));
    return false;
  };
  std::string err;
  switch (spec.type) {
    case ParamType::Expression: {
      if (v.is_bool()) {
        *out = Param::constant(Value(v.get_bool()));
        return true;
      }
      if (!v.is_string()) return wrong("an expression (a string)");
      auto e = compile_expression(v.get_string(), env_, &err);
      if (!e) {
        error(file, node, pn, err);
        return false;
      }
      *out = Param::from_expression(std::move(*e));
      return true;
    }
    case ParamType::Variable: {
      if (!v.is_string()) return wrong("a variable name");
      std::string name(v.get_string());
      if (!valid_identifier(name)) {
        error(file, node, pn,
              "'" + name +
                  "' is not a valid variable name (letters, digits, _ - and ., starting with a "
                  "letter or _)");
        return false;
      }
      *out = Param::variable(env_.symbols.intern(name), name);
      return true;
    }
    case ParamType::Number:
      if (v.is_number()) {
        *out = Param::constant(Value(v.to_number<double>()));
        return true;
      }
      if (!v.is_string()) return wrong("a number");
      if (!compile_any(file, node, pn, v, out, 0)) return false;
      if (out->is_constant()) {
        bool ok = false;
        double d = out->constant_value().to_number(&ok);
        if (!ok) return wrong("a number");
        *out = Param::constant(Value(d));
      }
      return true;
    case ParamType::Boolean:
      if (v.is_bool()) {
        *out = Param::constant(Value(v.get_bool()));
        return true;
      }
      if (!v.is_string()) return wrong("true or false");
      if (!compile_any(file, node, pn, v, out, 0)) return false;
      if (out->is_constant()) {
        auto& c = out->constant_value();
        if (!c.is_bool() &&
            !(c.is_string() && (c.as_string() == "true" || c.as_string() == "false")))
          return wrong("true or false");
        *out = Param::constant(Value(c.is_bool() ? c.as_bool() : c.as_string() == "true"));
      }
      return true;
    case ParamType::String:
      if (v.is_array() || v.is_object()) return wrong("a string");
      if (v.is_null()) {
        *out = Param::constant(Value(""));
        return true;
      }
      if (!v.is_string()) {
        *out = Param::constant(Value(to_value(v).to_text()));
        return true;
      }
      return compile_any(file, node, pn, v, out, 0);
    case ParamType::List:
      if (!v.is_array() && !v.is_string() && !v.is_null()) return wrong("a list");
      return compile_any(file, node, pn, v, out, 0);
    case ParamType::Map:
      if (!v.is_object() && !v.is_string() && !v.is_null()) return wrong("an object");
      return compile_any(file, node, pn, v, out, 0);
    case ParamType::Any:
      return compile_any(file, node, pn, v, out, 0);
  }
  return false;
}

void Loader::compile_node(RuleSet& rs, Node& node, const json::object& def) {
  const std::string& file = rs.file;
  static const std::set<std::string, std::less<>> known = {"rule", "ruleset", "with",
                                                           "then", "pos",     "comment"};
  for (auto& [k, v] : def)
    if (!known.count(std::string_view(k)))
      warning(file, node.id, std::string(k), "unknown field, ignored");
  auto* rule = def.if_contains("rule");
  auto* sub = def.if_contains("ruleset");
  if ((rule != nullptr) == (sub != nullptr)) {
    error(file, node.id, "",
          "needs exactly one of \"rule\" (a rule type) or \"ruleset\" (a rule set name)");
    return;
  }
  const json::object* with = nullptr;
  static const json::object empty;
  if (auto* w = def.if_contains("with"); w && !w->is_null()) {
    if (!w->is_object())
      error(file, node.id, "with", "must be an object of parameter values");
    else
      with = &w->get_object();
  }
  if (!with) with = &empty;

  if (sub) {
    if (!sub->is_string()) {
      error(file, node.id, "ruleset", "must be a rule set name");
      return;
    }
    node.rule_name = std::string(sub->get_string());
    node.ruleset = cfg_->find_ruleset(node.rule_name);
    if (!node.ruleset) {
      std::vector<std::string> names;
      for (auto& r : cfg_->rulesets) names.push_back(r->name);
      error(file, node.id, "ruleset",
            "rule set '" + node.rule_name + "' does not exist" + suggest(node.rule_name, names));
      return;
    }
    for (auto& [k, v] : *with)
      warning(file, node.id, std::string(k), "a rule set node takes no parameters; ignored");
    node.chain_names = node.ruleset->exits;
    return;
  }
  if (!rule->is_string()) {
    error(file, node.id, "rule", "must be a rule type name");
    return;
  }
  node.rule_name = std::string(rule->get_string());
  node.type = reg_.find(node.rule_name);
  if (!node.type) {
    std::vector<std::string> names;
    for (auto& t : reg_.all()) names.push_back(t->spec.name);
    error(file, node.id, "rule",
          "unknown rule '" + node.rule_name + "'" + suggest(node.rule_name, names) +
              "; capctl rules lists the catalogue");
    return;
  }
  const RuleSpec& spec = node.type->spec;
  if (!spec.extension.empty() && !cfg_->extensions.count(spec.extension))
    warning(file, node.id, "rule",
            "rule " + spec.name + " comes from extension '" + spec.extension +
                "': name it in cap.json \"extensions\" (\"" + spec.extension + "\": \"" +
                spec.extension_version +
                "\") so that agents without it refuse this "
                "configuration clearly");
  if (spec.may_wait) rs.may_wait = true;
  if (spec.reads_body) any_rule_reads_body_ = true;
  node.chain_names = spec.chain_points;
  if (spec.user_chain_points) {
    if (auto* then = def.if_contains("then"); then && then->is_object())
      for (auto& [k, v] : then->get_object())
        if (std::find(node.chain_names.begin(), node.chain_names.end(), std::string_view(k)) ==
            node.chain_names.end())
          node.chain_names.emplace_back(k);
  }
  Params params;
  bool ok = true;
  for (auto& [k, v] : *with) {
    std::string_view key(k);  // clang 14 cannot capture a structured binding
    bool found =
        std::any_of(spec.params.begin(), spec.params.end(), [&](auto& p) { return p.name == key; });
    if (!found) {
      std::vector<std::string> names;
      for (auto& p : spec.params) names.push_back(p.name);
      error(file, node.id, std::string(k),
            "rule " + spec.name + " has no parameter '" + std::string(k) + "'" + suggest(k, names) +
                "; its parameters: " + join(names));
      ok = false;
    }
  }
  for (auto& ps : spec.params) {
    Param p;
    auto* v = with->if_contains(ps.name);
    if (!v || (v->is_null() && ps.required)) {
      if (ps.required) {
        error(file, node.id, ps.name,
              "missing: rule " + spec.name + " requires it (" + param_type_name(ps.type) + ")");
        ok = false;
      } else if (!ps.default_value.is_null()) {
        if (ps.type == ParamType::Variable && ps.default_value.is_string())
          p = Param::variable(env_.symbols.intern(ps.default_value.as_string()),
                              ps.default_value.as_string());
        else if (ps.default_value.is_string() &&
                 ps.default_value.as_string().find("${") != std::string::npos)
          ok =
              compile_param(file, node.id, ps, json::value(ps.default_value.as_string()), &p) && ok;
        else
          p = Param::constant(ps.default_value);
      }
    } else if (!compile_param(file, node.id, ps, *v, &p)) {
      ok = false;
    } else if (!ps.choices.empty() && p.is_constant()) {
      std::string c = p.constant_value().to_text();
      if (std::find(ps.choices.begin(), ps.choices.end(), c) == ps.choices.end()) {
        error(file, node.id, ps.name, "'" + c + "' is not one of " + join(ps.choices));
        ok = false;
      }
    }
    p.set_param_name(ps.name);
    params.add(ps.name, std::move(p));
  }
  if (!ok) return;
  const json::value* then_value = def.if_contains("then");
  NodeCompileContext cc(
      *this, file, node.id, params, node.chain_names,
      then_value && then_value->is_object() ? &then_value->get_object() : nullptr);
  node.rule = node.type->factory(cc);
  if (!node.rule && !cc.failed)
    error(file, node.id, "", "rule " + spec.name + " could not be compiled");
  if (node.rule_name == "RuleSetExit") {
    auto& name = params["name"];
    std::string exit = name.is_constant() ? name.constant_value().to_text() : "";
    auto it = std::find(rs.exits.begin(), rs.exits.end(), exit);
    if (it == rs.exits.end())
      error(
          file, node.id, "name",
          "exit '" + exit + "' is not listed in the rule set's \"exits\" (" + join(rs.exits) + ")");
    else
      node.exit_index = static_cast<int>(it - rs.exits.begin());
  }
}

void Loader::compute_exits(RuleSet& rs, const json::object& doc) {
  const std::string& file = rs.file;
  const json::object* rules = nullptr;
  if (auto* r = doc.if_contains("rules"); r && r->is_object()) rules = &r->get_object();
  // Exits: listed, or else the names of the RuleSetExit nodes.
  if (auto* e = doc.if_contains("exits"); e && !e->is_null()) {
    if (!e->is_array()) {
      error(file, "", "exits", "must be a list of chain point names");
    } else {
      for (auto& x : e->get_array()) {
        if (!x.is_string())
          error(file, "", "exits", "must be a list of strings");
        else
          rs.exits.emplace_back(x.get_string());
      }
    }
  }
  if (rs.exits.empty() && rules) {
    for (auto& [id, def] : *rules) {
      if (!def.is_object()) continue;
      auto* r = def.get_object().if_contains("rule");
      auto* w = def.get_object().if_contains("with");
      if (r && r->is_string() && r->get_string() == "RuleSetExit" && w && w->is_object())
        if (auto* n = w->get_object().if_contains("name"); n && n->is_string())
          if (std::find(rs.exits.begin(), rs.exits.end(), std::string_view(n->get_string())) ==
              rs.exits.end())
            rs.exits.emplace_back(n->get_string());
    }
  }
}

void Loader::compile_ruleset(RuleSet& rs, const json::object& doc) {
  const std::string& file = rs.file;
  static const std::set<std::string, std::less<>> known = {
      "name", "description", "start", "exits", "rules", "format", "params", "result"};
  for (auto& [k, v] : doc)
    if (!known.count(std::string_view(k)))
      warning(file, "", std::string(k), "unknown field, ignored");
  const json::object* rules = nullptr;
  if (auto* r = doc.if_contains("rules")) {
    if (!r->is_object())
      error(file, "", "rules", "must be an object of node id to node");
    else
      rules = &r->get_object();
  } else {
    error(file, "", "rules", "missing: a rule set needs \"rules\"");
  }
  if (!rules) return;
  std::unordered_map<std::string, Node*> by_id;
  std::vector<const json::object*> defs;
  for (auto& [id, def] : *rules) {
    auto node = std::make_unique<Node>();
    node->id = std::string(id);
    by_id[node->id] = node.get();
    defs.push_back(def.is_object() ? &def.get_object() : nullptr);
    if (!def.is_object())
      error(file, node->id, "", std::string("must be an object, got ") + json_kind_name(def));
    rs.nodes.push_back(std::move(node));
  }
  for (size_t i = 0; i < rs.nodes.size(); ++i)
    if (defs[i]) compile_node(rs, *rs.nodes[i], *defs[i]);
  // Wire chain points.
  for (size_t i = 0; i < rs.nodes.size(); ++i) {
    Node& node = *rs.nodes[i];
    if (!defs[i]) continue;
    node.chains.resize(node.chain_names.size());
    auto* then = defs[i]->if_contains("then");
    if (!then || then->is_null()) continue;
    if (!then->is_object()) {
      error(file, node.id, "then", "must be an object of chain point to a list of node ids");
      continue;
    }
    bool known_type = node.type || node.ruleset;
    for (auto& [cp, targets] : then->get_object()) {
      auto it = std::find(node.chain_names.begin(), node.chain_names.end(), std::string_view(cp));
      if (it == node.chain_names.end()) {
        if (known_type)
          error(file, node.id, "then." + std::string(cp),
                (node.ruleset ? "rule set " : "rule ") + node.rule_name + " has no chain point '" +
                    std::string(cp) + "'" + suggest(cp, node.chain_names) +
                    "; it has: " + join(node.chain_names));
        continue;
      }
      auto idx = static_cast<size_t>(it - node.chain_names.begin());
      json::array one;
      const json::array* list = nullptr;
      if (targets.is_string()) {
        one.push_back(targets);
        list = &one;
      } else if (targets.is_array()) {
        list = &targets.get_array();
      } else {
        error(file, node.id, "then." + std::string(cp), "must be a list of node ids");
        continue;
      }
      for (auto& t : *list) {
        if (!t.is_string()) {
          error(file, node.id, "then." + std::string(cp), "node ids must be strings");
          continue;
        }
        auto target = by_id.find(std::string(t.get_string()));
        if (target == by_id.end()) {
          std::vector<std::string> ids;
          for (auto& n : rs.nodes) ids.push_back(n->id);
          error(file, node.id, "then." + std::string(cp),
                "refers to node '" + std::string(t.get_string()) + "', which does not exist in " +
                    rs.name + suggest(t.get_string(), ids));
          continue;
        }
        node.chains[idx].push_back(target->second);
      }
    }
  }
  // Start node and reachability.
  auto* start = doc.if_contains("start");
  if (!start || !start->is_string()) {
    if (!rs.nodes.empty())
      error(file, "", "start", "missing: name the node the rule set starts at");
    return;
  }
  auto s = by_id.find(std::string(start->get_string()));
  if (s == by_id.end()) {
    error(file, "", "start", "node '" + std::string(start->get_string()) + "' does not exist");
    return;
  }
  rs.start = s->second;
  // Chains must not loop back: a node reached again on its own path would run forever.
  // Iterative, not recursive: a chain may be as long as the file size allows (100,000+
  // nodes), and one stack frame per node would overflow the stack.
  {
    std::unordered_map<const Node*, int> state;  // 0 new, 1 on the path, 2 done
    struct Frame {
      const Node* n;
      size_t chain, next;
    };
    std::vector<Frame> path;
    for (auto& root : rs.nodes) {
      if (state[root.get()] != 0) continue;
      state[root.get()] = 1;
      path.push_back({root.get(), 0, 0});
      while (!path.empty()) {
        Frame& f = path.back();
        if (f.chain >= f.n->chains.size()) {
          state[f.n] = 2;
          path.pop_back();
          continue;
        }
        if (f.next >= f.n->chains[f.chain].size()) {
          ++f.chain;
          f.next = 0;
          continue;
        }
        const Node* n = f.n;
        size_t c = f.chain;
        const Node* t = n->chains[c][f.next++];
        int& st = state[t];
        if (st == 1) {
          error(file, n->id, "then." + n->chain_names[c],
                "leads back to node '" + t->id +
                    "', which would loop forever (use ForEach to repeat)");
        } else if (st == 0) {
          st = 1;
          path.push_back({t, 0, 0});  // invalidates f
        }
      }
    }
  }
  std::set<const Node*> seen;
  std::vector<const Node*> todo{rs.start};
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    if (!seen.insert(n).second) continue;
    for (auto& c : n->chains)
      for (auto* t : c) todo.push_back(t);
  }
  for (auto& n : rs.nodes)
    if (!seen.count(n.get()))
      warning(file, n->id, "",
              "unreachable: no chain point leads here from start '" + rs.start->id + "'");
}

LoadResult Loader::run() {
  load_manifest();
  // Rule sets: every rulesets/*.json.
  for (auto& [path, text] : pkg_.files) {
    if (path.rfind("rulesets/", 0) != 0) continue;
    if (path.size() < 5 || path.substr(path.size() - 5) != ".json" ||
        path.find('/', 9) != std::string::npos) {
      warning(path, "", "", "not a rule set (rule sets are rulesets/NAME.json); ignored");
      continue;
    }
    auto doc = parse_json(path, text);
    if (doc) declare_ruleset(path, *doc);
  }
  for (auto& [rs, doc] : docs_) compute_exits(*rs, doc);
  for (auto& [rs, doc] : docs_) compile_ruleset(*rs, doc);
  check_cycles();
  if (manifest_.is_object()) {
    auto& m = manifest_.get_object();
    if (m.if_contains("ruleset") && m.at("ruleset").is_string())
      cfg_->entry = ruleset_ref(m, "ruleset");
    cfg_->content = ruleset_ref(m, "content_ruleset");
    cfg_->startup = ruleset_ref(m, "startup_ruleset");
    cfg_->completion = ruleset_ref(m, "completion_ruleset");
    if (auto* modes = m.if_contains("modes"); modes && modes->is_object()) {
      for (auto& [k, v] : modes->get_object()) {
        if (!v.is_string()) {
          error("cap.json", "", "modes." + std::string(k), "must name a rule set");
          continue;
        }
        const RuleSet* rs = cfg_->find_ruleset(std::string_view(v.get_string()));
        if (!rs)
          error("cap.json", "", "modes." + std::string(k),
                "rule set '" + std::string(v.get_string()) + "' does not exist");
        else
          cfg_->modes.emplace_back(std::string(k), rs);
      }
    }
  }
  load_mcp();
  for (auto& rs : cfg_->rulesets)
    if (rs->may_wait) cfg_->may_wait = true;
  // The MCP endpoint reads its requests' bodies (JSON-RPC messages).
  cfg_->reads_body = any_rule_reads_body_ || package_mentions_body(pkg_) || !cfg_->mcp.path.empty();
  if (out_.error_count() == 0) {
    static std::atomic<uint64_t> next_serial{1};
    cfg_->serial = next_serial.fetch_add(1);
    cfg_->package = pkg_;
    out_.configuration = std::move(cfg_);
  }
  return std::move(out_);
}

}  // namespace detail

LoadResult load_configuration(const Package& package, const RuleRegistry& registry,
                              const LoadOptions& options) {
  detail::Loader loader(package, registry, options);
  return loader.run();
}

}  // namespace cap

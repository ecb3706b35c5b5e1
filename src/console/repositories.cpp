// Repositories: configurations saved as revisions (author, message, time), validated with
// the engine library exactly as an agent validates them, diffs between revisions, restore,
// and export and import of a whole repository as a zip. Also the rule catalogue and
// validation without saving, for the editor.
#include <sodium.h>

#include <algorithm>

#include "console/console.h"
#include "net/signing.h"

namespace cap::console {

namespace {

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    size_t n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 4;
    if (n == 4 || i + n >= s.size() + (n == 0 ? 1 : 0)) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n + 1;
  }
  return true;
}

std::string to_base64(std::string_view bin) {
  std::string out(sodium_base64_ENCODED_LEN(bin.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bin.data()),
                    bin.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::string> from_base64(std::string_view b64) {
  std::string out(b64.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), b64.data(),
                        b64.size(), "\n\r ", &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

/// Files as JSON: text as a string, anything else as {"base64": "..."}.
json::object files_json(const Package& pkg) {
  json::object o;
  for (auto& [path, data] : pkg.files) {
    if (valid_utf8(data))
      o[path] = data;
    else
      o[path] = json::object{{"base64", to_base64(data)}};
  }
  return o;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < s.size()) {
    size_t nl = s.find('\n', at);
    if (nl == std::string::npos) {
      out.push_back(s.substr(at));
      break;
    }
    out.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

/// A unified diff (3 lines of context) of two texts; "" when they are equal.
std::string unified_diff(const std::string& a_text, const std::string& b_text,
                         const std::string& path) {
  std::vector<std::string> a = split_lines(a_text), b = split_lines(b_text);
  size_t n = a.size(), m = b.size();
  if (n * m > 4'000'000) return "(the file is too large to diff line by line)\n";
  // Longest common subsequence table, from the end.
  std::vector<std::vector<uint32_t>> lcs(n + 1, std::vector<uint32_t>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  struct Op {
    char kind;  // ' ', '-', '+'
    size_t ai, bi;
  };
  std::vector<Op> ops;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j])
      ops.push_back({' ', i++, j++});
    else if (j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]))
      ops.push_back({'+', i, j++});
    else
      ops.push_back({'-', i++, j});
  }
  std::string out;
  constexpr size_t kContext = 3;
  size_t k = 0;
  while (k < ops.size()) {
    while (k < ops.size() && ops[k].kind == ' ') ++k;
    if (k == ops.size()) break;
    size_t start = k >= kContext ? k - kContext : 0;
    size_t end = k;
    // Extend the hunk while changes are within 2*context lines of each other.
    for (size_t e = k; e < ops.size(); ++e) {
      if (ops[e].kind != ' ')
        end = e;
      else if (e - end > 2 * kContext)
        break;
    }
    size_t stop = std::min(ops.size(), end + kContext + 1);
    size_t a_start = ops[start].ai, b_start = ops[start].bi, a_len = 0, b_len = 0;
    std::string body;
    for (size_t x = start; x < stop; ++x) {
      const Op& op = ops[x];
      if (op.kind != '+') ++a_len;
      if (op.kind != '-') ++b_len;
      body += op.kind;
      body += op.kind == '+' ? b[op.bi] : a[op.ai];
      body += '\n';
    }
    if (out.empty()) out = "--- a/" + path + "\n+++ b/" + path + "\n";
    out += "@@ -" + std::to_string(a_len ? a_start + 1 : a_start) + "," + std::to_string(a_len) +
           " +" + std::to_string(b_len ? b_start + 1 : b_start) + "," + std::to_string(b_len) +
           " @@\n" + body;
    k = stop;
  }
  return out;
}

json::object revision_meta(const DbRow& row, size_t offset = 0) {
  return json::object{{"revision", row.integer(offset)},
                      {"sha256", row.text(offset + 1)},
                      {"author", row.text(offset + 2)},
                      {"message", row.text(offset + 3)},
                      {"created_at", iso_time(row.integer(offset + 4))}};
}

constexpr const char* kRevisionColumns = "number, sha256, author, message, created_at";

/// A repository's configurations, each with its latest revision.
json::array configuration_list(DbSession& s, const std::string& repo) {
  json::array cfgs;
  for (auto& cr : s.query("SELECT configuration, MAX(number) FROM revisions WHERE repository = "
                          "$1 GROUP BY configuration ORDER BY configuration",
                          {repo})) {
    auto latest = s.one(std::string("SELECT ") + kRevisionColumns +
                            " FROM revisions WHERE repository = $1 AND configuration = $2 AND "
                            "number = $3",
                        {repo, cr.text(0), cr.integer(1)});
    cfgs.push_back(json::object{{"name", cr.text(0)}, {"latest", revision_meta(*latest)}});
  }
  return cfgs;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Validation with the engine

namespace {

/// Stands in for an extension's rule during validation: the console checks the node's shape
/// (parameters, chain points) against the rule's extension.json and never runs it.
class ExtensionRuleShape : public Rule {
 public:
  int execute(ExecContext&) const override { return kNoChain; }
};

std::optional<ParamType> param_type(std::string_view name) {
  for (ParamType t :
       {ParamType::String, ParamType::Number, ParamType::Boolean, ParamType::Expression,
        ParamType::Variable, ParamType::List, ParamType::Map, ParamType::Any})
    if (name == param_type_name(t)) return t;
  return std::nullopt;
}

/// The rule specs an extension.json declares (those it declares well).
std::vector<RuleSpec> extension_specs(const json::value& manifest) {
  std::vector<RuleSpec> out;
  auto* rules = manifest.is_object() ? manifest.as_object().if_contains("rules") : nullptr;
  if (!rules || !rules->is_array()) return out;
  auto str = [](const json::object& o, const char* k) {
    auto* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  for (auto& r : rules->as_array()) {
    if (!r.is_object()) continue;
    auto& ro = r.as_object();
    RuleSpec spec;
    spec.name = str(ro, "name");
    spec.group = str(ro, "group");
    spec.doc = str(ro, "doc");
    if (spec.name.empty()) continue;
    if (auto* params = ro.if_contains("params"); params && params->is_array())
      for (auto& p : params->as_array()) {
        if (!p.is_object()) continue;
        auto& po = p.as_object();
        ParamSpec ps;
        ps.name = str(po, "name");
        ps.type = param_type(str(po, "type")).value_or(ParamType::Any);
        if (auto* req = po.if_contains("required"); req && req->is_bool())
          ps.required = req->as_bool();
        if (auto* def = po.if_contains("default"); def && !def->is_null()) {
          std::string err;
          ps.default_value = json_parse(json::serialize(*def), &err);
        }
        ps.doc = str(po, "doc");
        if (!ps.name.empty()) spec.params.push_back(std::move(ps));
      }
    if (auto* chains = ro.if_contains("chain_points"); chains && chains->is_array())
      for (auto& c : chains->as_array())
        if (c.is_string()) spec.chain_points.emplace_back(c.as_string());
    out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace

std::unique_ptr<RuleRegistry> Console::extension_registry(const Package& pkg) {
  const std::string* manifest = pkg.find("cap.json");
  if (!manifest) return nullptr;
  boost::system::error_code ec;
  json::value cap = json::parse(*manifest, ec);
  auto* wanted = !ec && cap.is_object() ? cap.as_object().if_contains("extensions") : nullptr;
  if (!wanted || !wanted->is_object() || wanted->as_object().empty()) return nullptr;
  auto reg = std::make_unique<RuleRegistry>();
  register_base_rules(*reg);
  DbSession s(db_);
  for (auto& [name, version] : wanted->as_object()) {
    if (!version.is_string()) continue;
    auto row = s.one("SELECT manifest FROM extensions WHERE name = $1 AND version = $2",
                     {std::string(name), std::string(version.as_string())});
    if (!row) continue;  // the deploy names what is missing; its rules are unknown here
    json::value m = json::parse(row->text(0), ec);
    if (ec) continue;
    for (RuleSpec& spec : extension_specs(m))
      reg->add(std::move(spec), [](CompileContext&) -> std::unique_ptr<Rule> {
        return std::make_unique<ExtensionRuleShape>();
      });
  }
  return reg;
}

bool Console::validate_zip(const std::string& zip, std::vector<std::string>* errors,
                           std::vector<std::string>* warnings, Package* out_pkg) {
  Package pkg;
  std::string err;
  if (!read_zip(zip, &pkg, &err)) {
    errors->push_back(err);
    return false;
  }
  LoadOptions opts;
  // ${env:...} is read on each agent at activation; the console checks everything else.
  opts.getenv = [](std::string_view) -> std::optional<std::string> { return std::string(); };
  std::unique_ptr<RuleRegistry> with_extensions = extension_registry(pkg);
  LoadResult loaded = load_configuration(pkg, with_extensions ? *with_extensions : registry_, opts);
  for (auto& d : loaded.diagnostics)
    (d.severity == Diagnostic::Severity::Error ? errors : warnings)->push_back(d.format());
  if (out_pkg) *out_pkg = std::move(pkg);
  return loaded.ok();
}

std::string Console::request_zip(const Request& r, std::string* message) {
  std::string type = r.header("content-type");
  if (type.starts_with("application/json")) {
    json::object body = parse_object(r, {"files", "message"});
    if (message) *message = get_string(body, "message").value_or("");
    auto* files = body.if_contains("files");
    if (!files || !files->is_object())
      throw ApiError{400,
                     "\"files\" must be an object {\"PATH\": \"text\" or {\"base64\": \"...\"}}"};
    Package pkg;
    for (auto& [path, v] : files->as_object()) {
      if (v.is_string()) {
        pkg.files[std::string(path)] = std::string(v.as_string());
      } else if (v.is_object() && v.as_object().size() == 1 && v.as_object().contains("base64") &&
                 v.as_object().at("base64").is_string()) {
        auto bin = from_base64(v.as_object().at("base64").as_string());
        if (!bin) throw ApiError{400, "the file " + std::string(path) + " is not valid base64"};
        pkg.files[std::string(path)] = std::move(*bin);
      } else {
        throw ApiError{
            400, "the file " + std::string(path) + " must be a string or {\"base64\": \"...\"}"};
      }
    }
    std::string zip, err;
    if (!write_zip(pkg, &zip, &err)) throw ApiError{400, "the files cannot be packed", {err}};
    // The same checks on paths as for an uploaded zip.
    Package check;
    if (!read_zip(zip, &check, &err))
      throw ApiError{400, "the files are not a configuration", {err}};
    return zip;
  }
  if (type.empty() || type.starts_with("application/zip") ||
      type.starts_with("application/octet-stream") || type.starts_with("application/x-zip")) {
    if (message) *message = r.header("x-cap-message");
    if (message && message->empty()) *message = r.param("message").value_or("");
    if (r.body.empty()) throw ApiError{400, "the body is empty: send a configuration zip"};
    return r.body;
  }
  throw ApiError{415,
                 "send a configuration zip (application/zip) or JSON {\"files\": {...}}",
                 {"Content-Type was " + type}};
}

Response Console::validate(const Request& r) {
  std::string zip = request_zip(r, nullptr);
  std::vector<std::string> errors, warnings;
  bool ok = validate_zip(zip, &errors, &warnings);
  json::array e, w;
  for (auto& s : errors) e.emplace_back(s);
  for (auto& s : warnings) w.emplace_back(s);
  return json_response(200, json::object{{"valid", ok}, {"errors", e}, {"warnings", w}});
}

Response Console::rules_catalogue() {
  json::array rules;
  for (auto& type : registry_.all()) {
    const RuleSpec& spec = type->spec;
    json::array params;
    for (auto& p : spec.params) {
      json::array choices;
      for (auto& ch : p.choices) choices.emplace_back(ch);
      boost::system::error_code ec;
      json::value def =
          p.default_value.is_null() ? json::value() : json::parse(to_json(p.default_value), ec);
      params.push_back(json::object{{"name", p.name},
                                    {"type", param_type_name(p.type)},
                                    {"required", p.required},
                                    {"default", def},
                                    {"doc", p.doc},
                                    {"choices", choices}});
    }
    json::array chains;
    for (auto& c : spec.chain_points) chains.emplace_back(c);
    rules.push_back(json::object{{"name", spec.name},
                                 {"group", spec.group},
                                 {"doc", spec.doc},
                                 {"params", params},
                                 {"chain_points", chains},
                                 {"user_chain_points", spec.user_chain_points}});
  }
  return json_response(200, json::object{{"rules", rules}});
}

// ---------------------------------------------------------------------------------------
// /api/v1/repositories

Response Console::repositories(const Caller& c, const Request& r,
                               const std::vector<std::string>& seg) {
  auto not_allowed = [&](std::string allow) {
    throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", allow}}};
  };
  if (seg.size() == 3) {
    if (r.method == "GET") {
      DbSession s(db_);
      json::array out;
      for (auto& row : s.query("SELECT name, description, created_by, created_at FROM repositories "
                               "ORDER BY name")) {
        if (!may_repository(c, row.text(0), "read")) continue;
        auto n = s.one("SELECT COUNT(DISTINCT configuration) FROM revisions WHERE repository = $1",
                       {row.text(0)});
        out.push_back(json::object{{"name", row.text(0)},
                                   {"description", row.text(1)},
                                   {"created_by", row.text(2)},
                                   {"created_at", iso_time(row.integer(3))},
                                   {"configurations", n->integer(0)}});
      }
      return json_response(200, json::object{{"repositories", out}});
    }
    if (r.method != "POST") not_allowed("GET, POST");
    require_types(c, {UserType::Admin, UserType::Super}, "creating repositories");
    json::object body = parse_object(r, {"name", "description"});
    std::string name = *get_string(body, "name", true);
    require_name("the repository name", name);
    if (name == "import") throw ApiError{400, "\"import\" is reserved: choose another name"};
    std::string description = get_string(body, "description").value_or("");
    DbSession s(db_);
    s.begin();
    if (s.one("SELECT 1 FROM repositories WHERE name = $1", {name}))
      throw ApiError{409, "a repository named " + name + " exists already"};
    int64_t now = now_ms();
    s.query(
        "INSERT INTO repositories (name, description, created_by, created_at) VALUES ($1, $2, "
        "$3, $4)",
        {name, description, c.username, now});
    audit(s, c, "repository.create", name);
    s.commit();
    return json_response(201, json::object{{"name", name},
                                           {"description", description},
                                           {"created_by", c.username},
                                           {"created_at", iso_time(now)},
                                           {"configurations", 0}});
  }

  if (seg[3] == "import" && seg.size() == 4) {
    if (r.method != "POST") not_allowed("POST");
    require_types(c, {UserType::Admin, UserType::Super}, "importing repositories");
    Package archive;
    std::string err;
    PackageLimits limits;
    limits.max_entries = 100000;
    if (!read_zip(r.body, &archive, &err, limits))
      throw ApiError{400, "the body is not a repository export zip", {err}};
    const std::string* manifest = archive.find("repository.json");
    if (!manifest)
      throw ApiError{400, "the zip has no repository.json: it is not a repository export"};
    boost::system::error_code ec;
    json::value m = json::parse(*manifest, ec);
    if (ec || !m.is_object() || !m.as_object().contains("configurations") ||
        !m.as_object().at("configurations").is_object())
      throw ApiError{400, "repository.json is not a repository export manifest"};
    std::string name = r.param("name").value_or(
        m.as_object().contains("name") && m.as_object().at("name").is_string()
            ? std::string(m.as_object().at("name").as_string())
            : "");
    require_name("the repository name", name);
    std::string description =
        m.as_object().contains("description") && m.as_object().at("description").is_string()
            ? std::string(m.as_object().at("description").as_string())
            : "";
    // Every revision is checked before anything is written.
    struct Rev {
      std::string configuration, zip, sha256, author, message;
      int64_t number, created_at;
    };
    std::vector<Rev> revs;
    std::vector<std::string> problems;
    for (auto& [cfg, list] : m.as_object().at("configurations").as_object()) {
      std::string cname(cfg);
      if (!valid_name(cname) || !list.is_array()) {
        problems.push_back("configuration \"" + cname + "\": not a valid entry");
        continue;
      }
      for (auto& e : list.as_array()) {
        if (!e.is_object() || !e.as_object().contains("revision") ||
            !e.as_object().at("revision").is_int64()) {
          problems.push_back(cname + ": a revision without a number");
          continue;
        }
        auto& o = e.as_object();
        Rev rv;
        rv.configuration = cname;
        rv.number = o.at("revision").as_int64();
        auto str = [&](const char* k) {
          return o.contains(k) && o.at(k).is_string() ? std::string(o.at(k).as_string()) : "";
        };
        rv.sha256 = str("sha256");
        rv.author = str("author");
        rv.message = str("message");
        rv.created_at = o.contains("created_at_ms") && o.at("created_at_ms").is_int64()
                            ? o.at("created_at_ms").as_int64()
                            : now_ms();
        std::string path = "configurations/" + cname + "/" + std::to_string(rv.number) + ".zip";
        const std::string* zip = archive.find(path);
        if (!zip) {
          problems.push_back(path + " is missing");
          continue;
        }
        if (net::sha256_hex(*zip) != rv.sha256) {
          problems.push_back(path + " does not match its sha256 in repository.json");
          continue;
        }
        rv.zip = *zip;
        revs.push_back(std::move(rv));
      }
    }
    if (!problems.empty()) throw ApiError{400, "the repository export is damaged", problems};
    DbSession s(db_);
    s.begin();
    if (s.one("SELECT 1 FROM repositories WHERE name = $1", {name}))
      throw ApiError{409,
                     "a repository named " + name + " exists already",
                     {"import under another name with ?name=NEW"}};
    s.query(
        "INSERT INTO repositories (name, description, created_by, created_at) VALUES ($1, $2, "
        "$3, $4)",
        {name, description, c.username, now_ms()});
    for (auto& rv : revs)
      s.query(
          "INSERT INTO revisions (repository, configuration, number, zip, sha256, author, "
          "message, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
          {name, rv.configuration, rv.number, DbBlob{rv.zip}, rv.sha256, rv.author, rv.message,
           rv.created_at});
    audit(s, c, "repository.import", name, json::object{{"revisions", revs.size()}});
    s.commit();
    return json_response(201, json::object{{"name", name}, {"revisions", revs.size()}});
  }

  const std::string& repo = seg[3];
  {
    DbSession s(db_);
    if (!s.one("SELECT 1 FROM repositories WHERE name = $1", {repo}))
      throw ApiError{404, "no repository named " + repo};
  }

  if (seg.size() == 4) {
    if (r.method == "GET") {
      require_repository(c, repo, "read");
      DbSession s(db_);
      auto row = s.one(
          "SELECT name, description, created_by, created_at FROM repositories WHERE "
          "name = $1",
          {repo});
      json::array cfgs = configuration_list(s, repo);
      return json_response(200, json::object{{"name", row->text(0)},
                                             {"description", row->text(1)},
                                             {"created_by", row->text(2)},
                                             {"created_at", iso_time(row->integer(3))},
                                             {"configurations", cfgs}});
    }
    if (r.method == "DELETE") {
      require_types(c, {UserType::Admin, UserType::Super}, "deleting repositories");
      DbSession s(db_);
      s.begin();
      s.query("DELETE FROM revisions WHERE repository = $1", {repo});
      s.query("DELETE FROM repositories WHERE name = $1", {repo});
      audit(s, c, "repository.delete", repo);
      s.commit();
      return no_content();
    }
    not_allowed("GET, DELETE");
  }

  if (seg[4] == "export" && seg.size() == 5) {
    if (r.method != "GET") not_allowed("GET");
    require_repository(c, repo, "read");
    Package archive;
    json::object cfgs;
    DbSession s(db_);
    auto row = s.one("SELECT description FROM repositories WHERE name = $1", {repo});
    for (auto& rv :
         s.query("SELECT configuration, number, sha256, author, message, created_at, zip "
                 "FROM revisions WHERE repository = $1 ORDER BY configuration, number",
                 {repo})) {
      json::object meta{{"revision", rv.integer(1)},
                        {"sha256", rv.text(2)},
                        {"author", rv.text(3)},
                        {"message", rv.text(4)},
                        {"created_at", iso_time(rv.integer(5))},
                        {"created_at_ms", rv.integer(5)}};
      auto it = cfgs.find(rv.text(0));
      if (it == cfgs.end()) cfgs[rv.text(0)] = json::array();
      cfgs[rv.text(0)].as_array().push_back(meta);
      archive.files["configurations/" + rv.text(0) + "/" + std::to_string(rv.integer(1)) + ".zip"] =
          rv.text(6);
    }
    archive.files["repository.json"] =
        json::serialize(json::object{{"format", 1},
                                     {"name", repo},
                                     {"description", row->text(0)},
                                     {"exported_at", iso_time(now_ms())},
                                     {"configurations", cfgs}});
    std::string zip, err;
    if (!write_zip(archive, &zip, &err)) throw ApiError{500, "cannot pack the export", {err}};
    Response out;
    out.content_type = "application/zip";
    out.body = std::move(zip);
    out.headers.emplace_back("Content-Disposition",
                             "attachment; filename=\"" + repo + ".cap-repository.zip\"");
    return out;
  }

  if (seg[4] != "configurations") throw ApiError{404, "no such API endpoint: " + r.path};

  if (seg.size() == 5) {
    if (r.method != "GET") not_allowed("GET");
    require_repository(c, repo, "read");
    DbSession s(db_);
    json::array cfgs = configuration_list(s, repo);
    return json_response(200, json::object{{"configurations", cfgs}});
  }

  const std::string& cfg = seg[5];
  require_name("the configuration name", cfg);
  auto latest_number = [&](DbSession& s) {
    return s
        .one("SELECT MAX(number) FROM revisions WHERE repository = $1 AND configuration = $2",
             {repo, cfg})
        ->integer(0);
  };
  auto load_revision = [&](DbSession& s, int64_t n) {
    auto row = s.one(std::string("SELECT ") + kRevisionColumns +
                         ", zip FROM revisions WHERE repository = $1 AND configuration = $2 AND "
                         "number = $3",
                     {repo, cfg, n});
    if (!row) throw ApiError{404, "no revision " + std::to_string(n) + " of " + repo + "/" + cfg};
    return *row;
  };
  auto parse_number = [&](const std::string& text) -> int64_t {
    if (text.empty() || text.size() > 12 ||
        text.find_first_not_of("0123456789") != std::string::npos)
      throw ApiError{400, "a revision is a whole number: " + text};
    return std::stoll(text);
  };
  auto with_files = [&](const DbRow& row) {
    json::object o = revision_meta(row);
    Package pkg;
    std::string err;
    if (read_zip(row.text(5), &pkg, &err)) o["files"] = files_json(pkg);
    return o;
  };

  // Saving a revision: the zip (or files) validated first; nothing is stored with an error.
  auto save = [&](const std::string& zip, std::string message, const char* action,
                  json::object extra) -> Response {
    std::vector<std::string> errors, warnings;
    if (!validate_zip(zip, &errors, &warnings)) {
      json::array e, w;
      for (auto& x : errors) e.emplace_back(x);
      for (auto& x : warnings) w.emplace_back(x);
      return json_response(
          422,
          json::object{{"error", "configuration is not valid"}, {"details", e}, {"warnings", w}});
    }
    std::string sha = net::sha256_hex(zip);
    json::array w;
    for (auto& x : warnings) w.emplace_back(x);
    DbSession s(db_);
    s.begin();
    int64_t last = latest_number(s);
    if (last > 0 &&
        s.one("SELECT sha256 FROM revisions WHERE repository = $1 AND configuration = "
              "$2 AND number = $3",
              {repo, cfg, last})
                ->text(0) == sha &&
        std::string(action) == "configuration.save")
      return json_response(
          200,
          json::object{{"revision", last}, {"sha256", sha}, {"unchanged", true}, {"warnings", w}});
    int64_t n = last + 1;
    s.query(
        "INSERT INTO revisions (repository, configuration, number, zip, sha256, author, "
        "message, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        {repo, cfg, n, DbBlob{zip}, sha, c.username, message, now_ms()});
    extra["revision"] = n;
    extra["sha256"] = sha;
    audit(s, c, action, repo + "/" + cfg, extra);
    s.commit();
    return json_response(
        201, json::object{{"revision", n}, {"sha256", sha}, {"unchanged", false}, {"warnings", w}});
  };

  if (seg.size() == 6) {
    if (r.method == "GET") {
      require_repository(c, repo, "read");
      DbSession s(db_);
      int64_t n = latest_number(s);
      if (n == 0) throw ApiError{404, "no configuration " + cfg + " in " + repo};
      json::object o = with_files(load_revision(s, n));
      o["name"] = cfg;
      o["repository"] = repo;
      return json_response(200, o);
    }
    if (r.method == "PUT") {
      require_repository(c, repo, "write");
      std::string message;
      std::string zip = request_zip(r, &message);
      if (message.size() > 4000) throw ApiError{400, "the message is longer than 4000 characters"};
      return save(zip, message, "configuration.save", {});
    }
    if (r.method == "DELETE") {
      require_repository(c, repo, "write");
      DbSession s(db_);
      s.begin();
      if (latest_number(s) == 0) throw ApiError{404, "no configuration " + cfg + " in " + repo};
      s.query("DELETE FROM revisions WHERE repository = $1 AND configuration = $2", {repo, cfg});
      audit(s, c, "configuration.delete", repo + "/" + cfg);
      s.commit();
      return no_content();
    }
    not_allowed("GET, PUT, DELETE");
  }

  const std::string& what = seg[6];
  if (what == "revisions" && seg.size() == 7) {
    if (r.method != "GET") not_allowed("GET");
    require_repository(c, repo, "read");
    DbSession s(db_);
    json::array out;
    for (auto& row : s.query(std::string("SELECT ") + kRevisionColumns +
                                 " FROM revisions WHERE repository = $1 AND configuration = $2 "
                                 "ORDER BY number DESC",
                             {repo, cfg}))
      out.push_back(revision_meta(row));
    if (out.empty()) throw ApiError{404, "no configuration " + cfg + " in " + repo};
    return json_response(200, json::object{{"revisions", out}});
  }
  if (what == "revisions" && seg.size() >= 8) {
    int64_t n = parse_number(seg[7]);
    if (seg.size() == 8) {
      if (r.method != "GET") not_allowed("GET");
      require_repository(c, repo, "read");
      DbSession s(db_);
      return json_response(200, with_files(load_revision(s, n)));
    }
    if (seg.size() == 9 && seg[8] == "zip") {
      if (r.method != "GET") not_allowed("GET");
      require_repository(c, repo, "read");
      DbSession s(db_);
      Response out;
      out.content_type = "application/zip";
      out.body = load_revision(s, n).text(5);
      out.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + cfg + "-r" +
                                                          std::to_string(n) + ".zip\"");
      return out;
    }
    if (seg.size() == 9 && seg[8] == "restore") {
      if (r.method != "POST") not_allowed("POST");
      require_repository(c, repo, "write");
      std::string message = "restore of revision " + std::to_string(n);
      if (!r.body.empty()) {
        json::object body = parse_object(r, {"message"});
        if (auto m = get_string(body, "message")) message = *m;
      }
      std::string zip;
      {
        DbSession s(db_);
        zip = load_revision(s, n).text(5);
      }
      return save(zip, message, "configuration.restore", json::object{{"restored", n}});
    }
  }
  if (what == "diff" && seg.size() == 7) {
    if (r.method != "GET") not_allowed("GET");
    require_repository(c, repo, "read");
    auto from = r.param("from"), to = r.param("to");
    if (!from || !to) throw ApiError{400, "give the revisions to compare: ?from=N&to=M"};
    int64_t a = parse_number(*from), b = parse_number(*to);
    DbSession s(db_);
    Package pa, pb;
    std::string err;
    read_zip(load_revision(s, a).text(5), &pa, &err);
    read_zip(load_revision(s, b).text(5), &pb, &err);
    json::array files;
    std::map<std::string, int> paths;
    for (auto& [p, d] : pa.files) paths[p] |= 1;
    for (auto& [p, d] : pb.files) paths[p] |= 2;
    for (auto& [p, where] : paths) {
      const std::string* da = pa.find(p);
      const std::string* db = pb.find(p);
      if (where == 3 && *da == *db) continue;
      std::string change = where == 1 ? "removed" : where == 2 ? "added" : "modified";
      bool text = (!da || valid_utf8(*da)) && (!db || valid_utf8(*db));
      files.push_back(json::object{{"path", p},
                                   {"change", change},
                                   {"diff", text ? unified_diff(da ? *da : "", db ? *db : "", p)
                                                 : "(binary files differ)\n"}});
    }
    return json_response(200, json::object{{"from", a}, {"to", b}, {"files", files}});
  }
  throw ApiError{404, "no such API endpoint: " + r.path};
}

}  // namespace cap::console

// The console's vault (credentials sealed with the installation key; values go in and never
// come out, except to agents on deploy) and the extension store (zips by name and version,
// read from their extension.json, and which agents have which).
#include <set>

#include "console/console.h"
#include "net/signing.h"

namespace cap::console {

namespace {

/// The credential names a configuration reads: ${vault:NAME} and ${vault:NAME.field}.
std::set<std::string> vault_names(const Package& pkg) {
  std::set<std::string> names;
  for (auto& [path, data] : pkg.files) {
    if (!path.ends_with(".json")) continue;
    for (size_t at = data.find("${vault:"); at != std::string::npos;
         at = data.find("${vault:", at + 8)) {
      size_t start = at + 8;
      while (start < data.size() && data[start] == ' ') ++start;
      size_t end = start;
      while (end < data.size() && data[end] != '.' && data[end] != '}' && data[end] != ' ') ++end;
      if (end > start) names.insert(data.substr(start, end - start));
    }
  }
  return names;
}

}  // namespace

std::optional<std::string> Console::vault_for(const Package& pkg) {
  std::set<std::string> names = vault_names(pkg);
  if (names.empty()) return std::nullopt;
  json::object body;
  std::vector<std::string> missing;
  DbSession s(db_);
  for (auto& name : names) {
    auto row = s.one("SELECT sealed FROM vault WHERE name = $1", {name});
    if (!row) {
      missing.push_back("the credential " + name + " is not in the console's vault");
      continue;
    }
    auto plain = sealer_.open(row->text(0));
    boost::system::error_code ec;
    json::value fields = plain ? json::parse(*plain, ec) : json::value();
    if (!plain || ec || !fields.is_object()) {
      missing.push_back("the credential " + name + " cannot be opened with this installation key");
      continue;
    }
    auto& f = fields.as_object();
    if (f.size() == 1 && f.contains(""))
      body[name] = f.at("");
    else
      body[name] = fields;
  }
  if (!missing.empty())
    throw ApiError{422, "the configuration needs credentials the vault does not have", missing};
  return json::serialize(body);
}

Response Console::vault(const Caller& c, const Request& r, const std::vector<std::string>& seg) {
  auto meta = [](const DbRow& row) {
    boost::system::error_code ec;
    json::value fields = json::parse(row.text(1), ec);
    return json::object{{"name", row.text(0)},
                        {"fields", ec ? json::array() : fields},
                        {"updated_by", row.text(2)},
                        {"updated_at", iso_time(row.integer(3))}};
  };
  if (seg.size() == 3) {
    if (r.method != "GET")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET"}}};
    DbSession s(db_);
    json::array out;
    for (auto& row :
         s.query("SELECT name, fields, updated_by, updated_at FROM vault ORDER BY name"))
      out.push_back(meta(row));
    return json_response(200, json::object{{"credentials", out}});
  }
  if (seg.size() != 4) throw ApiError{404, "no such API endpoint: " + r.path};
  const std::string& name = seg[3];
  require_name("the credential name", name);
  if (r.method == "GET") {
    DbSession s(db_);
    auto row =
        s.one("SELECT name, fields, updated_by, updated_at FROM vault WHERE name = $1", {name});
    if (!row) throw ApiError{404, "no credential named " + name};
    return json_response(200, meta(*row));
  }
  require_types(c, {UserType::Admin, UserType::Super, UserType::Security}, "changing the vault");
  if (r.method == "PUT") {
    json::object body = parse_object(r, {"value", "fields"});
    json::object fields;
    auto value = get_string(body, "value");
    auto* f = body.if_contains("fields");
    if (value.has_value() == (f != nullptr))
      throw ApiError{400,
                     "send either {\"value\": \"SECRET\"} or {\"fields\": {\"NAME\": \"SECRET\"}}"};
    if (value) {
      fields[""] = *value;
    } else {
      if (!f->is_object() || f->as_object().empty())
        throw ApiError{400, "\"fields\" must be a non-empty object of strings"};
      for (auto& [k, v] : f->as_object()) {
        if (!v.is_string() || !valid_name(std::string(k)))
          throw ApiError{400,
                         "each field needs a valid name and a string value",
                         {"field \"" + std::string(k) + "\""}};
        fields[k] = v;
      }
    }
    std::set<std::string> sorted;
    for (auto& [k, v] : fields)
      if (!k.empty()) sorted.insert(std::string(k));
    json::array names;
    for (auto& k : sorted) names.emplace_back(k);
    DbSession s(db_);
    s.begin();
    bool exists = s.one("SELECT 1 FROM vault WHERE name = $1", {name}).has_value();
    int64_t now = now_ms();
    if (exists)
      s.query(
          "UPDATE vault SET sealed = $1, fields = $2, updated_by = $3, updated_at = $4 WHERE "
          "name = $5",
          {sealer_.seal(json::serialize(fields)), json::serialize(names), c.username, now, name});
    else
      s.query(
          "INSERT INTO vault (name, sealed, fields, updated_by, updated_at) VALUES ($1, $2, $3, "
          "$4, $5)",
          {name, sealer_.seal(json::serialize(fields)), json::serialize(names), c.username, now});
    audit(s, c, exists ? "vault.update" : "vault.create", name, json::object{{"fields", names}});
    s.commit();
    return json_response(exists ? 200 : 201, json::object{{"name", name},
                                                          {"fields", names},
                                                          {"updated_by", c.username},
                                                          {"updated_at", iso_time(now)}});
  }
  if (r.method == "DELETE") {
    DbSession s(db_);
    s.begin();
    if (!s.one("SELECT 1 FROM vault WHERE name = $1", {name}))
      throw ApiError{404, "no credential named " + name};
    s.query("DELETE FROM vault WHERE name = $1", {name});
    audit(s, c, "vault.delete", name);
    s.commit();
    return no_content();
  }
  throw ApiError{
      405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, PUT, DELETE"}}};
}

// ---------------------------------------------------------------------------------------
// Extensions

Response Console::extensions(const Caller& c, const Request& r,
                             const std::vector<std::string>& seg) {
  // Which agents have which extension, from the last status each agent reported.
  std::map<std::string, json::array> on_agents;
  {
    std::lock_guard lock(status_mu_);
    for (auto& [agent, st] : status_) {
      if (!st.online || !st.status.is_object()) continue;
      auto* list = st.status.as_object().if_contains("extensions");
      if (!list || !list->is_array()) continue;
      for (auto& e : list->as_array()) {
        if (!e.is_object()) continue;
        auto* n = e.as_object().if_contains("name");
        auto* v = e.as_object().if_contains("version");
        if (n && n->is_string())
          on_agents[std::string(n->as_string())].push_back(json::object{
              {"agent", agent}, {"version", v && v->is_string() ? *v : json::value()}});
      }
    }
  }
  auto listing = [&](DbSession& s, const std::string& only) {
    std::map<std::string, json::array> versions;
    for (auto& row :
         s.query("SELECT name, version, sha256, manifest, uploaded_by, uploaded_at FROM "
                 "extensions ORDER BY name, version")) {
      if (!only.empty() && row.text(0) != only) continue;
      boost::system::error_code ec;
      json::value m = json::parse(row.text(3), ec);
      json::array rules;
      std::string description;
      if (!ec && m.is_object()) {
        if (auto* d = m.as_object().if_contains("description"); d && d->is_string())
          description = d->as_string();
        if (auto* rl = m.as_object().if_contains("rules"); rl && rl->is_array())
          for (auto& rule : rl->as_array())
            if (rule.is_object())
              if (auto* n = rule.as_object().if_contains("name"); n && n->is_string())
                rules.push_back(*n);
      }
      versions[row.text(0)].push_back(json::object{{"version", row.text(1)},
                                                   {"sha256", row.text(2)},
                                                   {"description", description},
                                                   {"rules", rules},
                                                   {"uploaded_by", row.text(4)},
                                                   {"uploaded_at", iso_time(row.integer(5))}});
    }
    json::array out;
    for (auto& [name, vs] : versions)
      out.push_back(json::object{{"name", name}, {"versions", vs}, {"agents", on_agents[name]}});
    return out;
  };

  if (seg.size() == 3) {
    if (r.method == "GET") {
      DbSession s(db_);
      return json_response(200, json::object{{"extensions", listing(s, "")}});
    }
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, POST"}}};
    require_types(c, {UserType::Admin, UserType::Super}, "uploading extensions");
    Package pkg;
    std::string err;
    if (!read_zip(r.body, &pkg, &err))
      throw ApiError{400, "the body is not an extension zip", {err}};
    const std::string* manifest = pkg.find("extension.json");
    if (!manifest) throw ApiError{400, "the zip has no extension.json at its top"};
    boost::system::error_code ec;
    json::value m = json::parse(*manifest, ec);
    if (ec || !m.is_object()) throw ApiError{400, "extension.json is not a JSON object"};
    auto& mo = m.as_object();
    auto* name = mo.if_contains("name");
    auto* version = mo.if_contains("version");
    if (!name || !name->is_string() || !valid_name(std::string(name->as_string())))
      throw ApiError{400, "extension.json: \"name\" must be a valid name"};
    if (!version || !version->is_string() || !valid_name(std::string(version->as_string())))
      throw ApiError{400, "extension.json: \"version\" must be a version such as 1.2.0"};
    std::string n(name->as_string()), v(version->as_string());
    std::vector<std::string> problems;
    if (auto* rules = mo.if_contains("rules"); !rules || !rules->is_array())
      problems.push_back("extension.json: \"rules\" must be a list");
    else
      for (auto& rule : rules->as_array()) {
        auto* script = rule.is_object() ? rule.as_object().if_contains("script") : nullptr;
        if (!script || !script->is_string())
          problems.push_back("extension.json: every rule needs a \"script\"");
        else if (!pkg.find(script->as_string()))
          problems.push_back("the script " + std::string(script->as_string()) +
                             " is not in the zip");
      }
    if (!problems.empty()) throw ApiError{400, "the extension is not complete", problems};
    std::string sha = net::sha256_hex(r.body);
    DbSession s(db_);
    s.begin();
    if (s.one("SELECT 1 FROM extensions WHERE name = $1 AND version = $2", {n, v}))
      throw ApiError{409,
                     "the extension " + n + " " + v + " is in the store already",
                     {"a version is never replaced: give the new one another version number"}};
    s.query(
        "INSERT INTO extensions (name, version, zip, sha256, manifest, uploaded_by, "
        "uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        {n, v, DbBlob{r.body}, sha, *manifest, c.username, now_ms()});
    audit(s, c, "extension.upload", n + " " + v, json::object{{"sha256", sha}});
    s.commit();
    return json_response(201, json::object{{"name", n}, {"version", v}, {"sha256", sha}});
  }
  const std::string& name = seg[3];
  if (seg.size() == 4) {
    if (r.method != "GET")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET"}}};
    DbSession s(db_);
    json::array out = listing(s, name);
    if (out.empty()) throw ApiError{404, "no extension named " + name};
    return json_response(200, out[0]);
  }
  if (seg.size() == 5) {
    const std::string& version = seg[4];
    DbSession s(db_);
    if (r.method == "GET") {
      auto row =
          s.one("SELECT zip FROM extensions WHERE name = $1 AND version = $2", {name, version});
      if (!row) throw ApiError{404, "no extension " + name + " " + version};
      Response out;
      out.content_type = "application/zip";
      out.body = row->text(0);
      return out;
    }
    if (r.method == "DELETE") {
      require_types(c, {UserType::Admin, UserType::Super}, "removing extensions");
      s.begin();
      if (!s.one("SELECT 1 FROM extensions WHERE name = $1 AND version = $2", {name, version}))
        throw ApiError{404, "no extension " + name + " " + version};
      s.query("DELETE FROM extensions WHERE name = $1 AND version = $2", {name, version});
      audit(s, c, "extension.delete", name + " " + version);
      s.commit();
      return no_content();
    }
    throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, DELETE"}}};
  }
  throw ApiError{404, "no such API endpoint: " + r.path};
}

}  // namespace cap::console

// Deployments: a configuration revision to one agent, a group or all, rolling (one at a time,
// each checked ready and running the new configuration before the next; the first failure
// stops the rest) or parallel. The credentials and extensions a configuration needs travel
// with it. Every deployment and each agent's answer is kept; redeploying an earlier one is
// the rollback.
#include <spdlog/spdlog.h>

#include <future>
#include <set>

#include "console/console.h"
#include "net/signing.h"

namespace cap::console {

namespace {

/// The extensions a configuration's cap.json asks for: name -> version.
std::map<std::string, std::string> required_extensions(const Package& pkg) {
  std::map<std::string, std::string> out;
  const std::string* manifest = pkg.find("cap.json");
  if (!manifest) return out;
  boost::system::error_code ec;
  json::value v = json::parse(*manifest, ec);
  if (ec || !v.is_object()) return out;
  auto* ext = v.as_object().if_contains("extensions");
  if (!ext || !ext->is_object()) return out;
  for (auto& [name, version] : ext->as_object())
    if (version.is_string()) out[std::string(name)] = std::string(version.as_string());
  return out;
}

/// Whether an agent's status lists extension `name` at `version`.
bool agent_has_extension(const json::value& status, const std::string& name,
                         const std::string& version) {
  if (!status.is_object()) return false;
  auto* list = status.as_object().if_contains("extensions");
  if (!list || !list->is_array()) return false;
  for (auto& e : list->as_array()) {
    if (!e.is_object()) continue;
    auto* n = e.as_object().if_contains("name");
    auto* v = e.as_object().if_contains("version");
    if (n && v && n->is_string() && v->is_string() && n->as_string() == name &&
        v->as_string() == version)
      return true;
  }
  return false;
}

/// The "error" and "details" of an agent's JSON error answer, as lines.
std::vector<std::string> agent_errors(const HttpReply& reply, const std::string& step) {
  std::vector<std::string> out;
  if (reply.status == 0) {
    out.push_back(step + ": the agent cannot be reached: " + reply.error);
    return out;
  }
  boost::system::error_code ec;
  json::value v = json::parse(reply.body, ec);
  if (ec || !v.is_object()) {
    out.push_back(step + ": the agent answered " + std::to_string(reply.status));
    return out;
  }
  auto& o = v.as_object();
  std::string error = o.contains("error") && o.at("error").is_string()
                          ? std::string(o.at("error").as_string())
                          : "no details";
  out.push_back(step + ": the agent answered " + std::to_string(reply.status) + ": " + error);
  if (auto* d = o.if_contains("details"); d && d->is_array())
    for (auto& x : d->as_array())
      if (x.is_string()) out.emplace_back(x.as_string());
  return out;
}

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (auto& s : v) a.emplace_back(s);
  return a;
}

json::object deployment_json(const DbRow& row) {
  boost::system::error_code ec;
  json::value results = json::parse(row.text(9), ec);
  json::object o{
      {"id", row.integer(0)},
      {"configuration", row.text(1)},
      {"revision", row.integer(2)},
      {"sha256", row.text(3)},
      {"strategy", row.text(4)},
      {"requested_by", row.text(5)},
      {"created_at", iso_time(row.integer(6))},
      {"finished_at", row.null(7) ? json::value() : json::value(iso_time(row.integer(7)))},
      {"ok", row.null(8) ? json::value() : json::value(row.integer(8) != 0)},
      {"results", ec ? json::array() : results}};
  o["rollback_of"] = row.null(10) ? json::value() : json::value(row.integer(10));
  return o;
}

constexpr const char* kDeploymentColumns =
    "id, configuration, revision, sha256, strategy, requested_by, created_at, finished_at, ok, "
    "results, rollback_of";

}  // namespace

void read_status(const AgentStatus& st, const std::string& sha256, bool* ready, bool* running) {
  *ready = *running = false;
  if (!st.online || !st.status.is_object()) return;
  auto& o = st.status.as_object();
  *ready = o.contains("ready") && o.at("ready").is_bool() && o.at("ready").as_bool();
  if (auto* cfg = o.if_contains("configuration"); cfg && cfg->is_object())
    if (auto* s = cfg->as_object().if_contains("sha256"); s && s->is_string())
      *running = s->as_string() == sha256;
}

json::object Console::deploy_one(const AgentDef& a, const std::string& zip, const Package& pkg,
                                 bool check_ready) {
  json::object result{{"agent", a.id}, {"ok", false}};
  auto fail = [&](std::vector<std::string> errors) {
    result["errors"] = strings(errors);
    return result;
  };
  // Extensions the configuration needs and the agent lacks.
  AgentStatus st = cached_status(a.id);
  json::array installed;
  for (auto& [name, version] : required_extensions(pkg)) {
    if (agent_has_extension(st.status, name, version)) continue;
    std::string ext_zip;
    {
      DbSession s(db_);
      auto row =
          s.one("SELECT zip FROM extensions WHERE name = $1 AND version = $2", {name, version});
      if (!row)
        return fail({"the extension " + name + " " + version + " is not in the console's store"});
      ext_zip = row->text(0);
    }
    HttpReply reply = agent_call(a, "PUT", "/v1/extensions/" + name, ext_zip, "application/zip");
    if (reply.status != 200 && reply.status != 201)
      return fail(agent_errors(reply, "installing the extension " + name + " " + version));
    installed.emplace_back(name + " " + version);
  }
  if (!installed.empty()) result["extensions_installed"] = installed;
  // The credentials it names.
  if (auto body = vault_for(pkg)) {
    HttpReply reply = agent_call(a, "PUT", "/v1/vault", *body, "application/json");
    if (reply.status != 200) return fail(agent_errors(reply, "sending the credentials"));
    result["vault"] = "sent";
  }
  HttpReply reply = agent_call(a, "PUT", "/v1/configuration", zip, "application/zip");
  if (reply.status != 200) return fail(agent_errors(reply, "activating the configuration"));
  boost::system::error_code ec;
  json::value answer = json::parse(reply.body, ec);
  std::string id;
  if (!ec && answer.is_object() && answer.as_object().contains("id") &&
      answer.as_object().at("id").is_string())
    id = answer.as_object().at("id").as_string();
  result["configuration_id"] = id;
  if (!ec && answer.is_object())
    if (auto* w = answer.as_object().if_contains("warnings");
        w && w->is_array() && !w->as_array().empty())
      result["warnings"] = *w;
  if (check_ready) {
    // The agent must report itself ready with the new configuration before the next one.
    AgentStatus now = check_agent(a);
    bool running = false, ready = false;
    read_status(now, net::sha256_hex(zip), &ready, &running);
    if (!now.online) return fail({"status check after the deploy: " + now.error});
    if (!running || !ready)
      return fail(
          {"status check after the deploy: the agent does not report the new "
           "configuration as active and ready"});
    if (a.web_port) {
      HttpCall call;
      call.method = "GET";
      bool v6 = a.host.find(':') != std::string::npos;
      call.url = "http://" + (v6 ? "[" + a.host + "]" : a.host) + ":" +
                 std::to_string(*a.web_port) + "/.cap/ready";
      call.timeout_ms = 5000;
      HttpReply rr = client_.call(call);
      if (rr.status != 200)
        return fail({"readiness check after the deploy: GET /.cap/ready on port " +
                     std::to_string(*a.web_port) + " answered " +
                     (rr.status ? std::to_string(rr.status) : rr.error)});
      result["ready_checked"] = true;
    }
  } else {
    check_agent(a);
  }
  result["ok"] = true;
  return result;
}

json::object Console::run_deployment(const Caller& c, const std::string& configuration,
                                     int64_t revision, std::vector<AgentDef> targets,
                                     const std::string& strategy,
                                     std::optional<int64_t> rollback_of) {
  size_t slash = configuration.find('/');
  std::string repo = configuration.substr(0, slash);
  std::string cfg = slash == std::string::npos ? "" : configuration.substr(slash + 1);
  require_repository(c, repo, "read");
  std::string zip;
  {
    DbSession s(db_);
    if (revision == 0)
      revision = s.one(
                      "SELECT COALESCE(MAX(number), 0) FROM revisions WHERE repository = $1 AND "
                      "configuration = $2",
                      {repo, cfg})
                     ->integer(0);
    auto row = s.one(
        "SELECT zip FROM revisions WHERE repository = $1 AND configuration = $2 AND "
        "number = $3",
        {repo, cfg, revision});
    if (!row)
      throw ApiError{404, revision == 0
                              ? "no configuration " + configuration
                              : "no revision " + std::to_string(revision) + " of " + configuration};
    zip = row->text(0);
  }
  std::vector<std::string> denied;
  for (auto& a : targets)
    if (!may_agent(c, a, "deploy")) denied.push_back(a.id);
  if (!denied.empty()) throw ApiError{403, "not allowed: deploy on these agents", denied};
  // Everything the deploy needs is checked before the first agent is touched.
  std::vector<std::string> errors, warnings;
  Package pkg;
  if (!validate_zip(zip, &errors, &warnings, &pkg))
    throw ApiError{422, "configuration is not valid", errors};
  std::optional<std::string> vault = vault_for(pkg);
  std::vector<std::string> missing;
  {
    DbSession s(db_);
    for (auto& [name, version] : required_extensions(pkg))
      if (!s.one("SELECT 1 FROM extensions WHERE name = $1 AND version = $2", {name, version}))
        missing.push_back("the extension " + name + " " + version + " is not in the store");
  }
  if (!missing.empty())
    throw ApiError{422, "the configuration needs extensions the console does not have", missing};
  std::vector<std::string> offline;
  {
    std::vector<std::future<AgentStatus>> checks;
    for (auto& a : targets)
      checks.push_back(std::async(std::launch::async, [this, a] { return check_agent(a); }));
    for (size_t i = 0; i < targets.size(); ++i) {
      AgentStatus st = checks[i].get();
      if (!st.online) offline.push_back(targets[i].id + ": " + st.error);
    }
  }
  if (!offline.empty())
    throw ApiError{409, "some agents are offline: nothing was deployed", offline};

  std::string sha = net::sha256_hex(zip);
  int64_t id = 0;
  {
    DbSession s(db_);
    s.begin();
    id = s.one(
              "INSERT INTO deployments (configuration, revision, sha256, strategy, requested_by, "
              "created_at, rollback_of, results) VALUES ($1, $2, $3, $4, $5, $6, $7, '[]') "
              "RETURNING id",
              {configuration, revision, sha, strategy, c.username, now_ms(),
               rollback_of ? DbParam(*rollback_of) : DbParam(nullptr)})
             ->integer(0);
    json::array ids;
    for (auto& a : targets) ids.emplace_back(a.id);
    audit(s, c, rollback_of ? "deployment.rollback" : "deployment.start", configuration,
          json::object{
              {"deployment", id}, {"revision", revision}, {"agents", ids}, {"strategy", strategy}});
    s.commit();
  }
  spdlog::info("deployment {}: {} revision {} to {} agents ({}) by {}", id, configuration, revision,
               targets.size(), strategy, c.username);

  json::array results;
  bool all_ok = true;
  if (strategy == "parallel") {
    std::vector<std::future<json::object>> runs;
    for (auto& a : targets)
      runs.push_back(std::async(std::launch::async,
                                [this, a, &zip, &pkg] { return deploy_one(a, zip, pkg, false); }));
    for (auto& f : runs) {
      json::object r = f.get();
      all_ok = all_ok && r["ok"].as_bool();
      results.push_back(std::move(r));
    }
  } else {
    std::string failed;
    for (auto& a : targets) {
      if (!failed.empty()) {
        results.push_back(json::object{
            {"agent", a.id},
            {"ok", false},
            {"skipped", true},
            {"errors",
             json::array{"not deployed: the rolling deploy stopped after " + failed + " failed"}}});
        continue;
      }
      // ECS tasks leave the load balancer while they change (ecs.cpp); the record shows
      // each step as it happens.
      auto progress = [&](const json::object& now) {
        json::array so_far = results;
        so_far.push_back(now);
        DbSession s(db_);
        s.query("UPDATE deployments SET results = $1 WHERE id = $2", {json::serialize(so_far), id});
      };
      json::object r =
          ecs_rolls(a) ? ecs_deploy_one(a, zip, pkg, progress) : deploy_one(a, zip, pkg, true);
      if (!r["ok"].as_bool()) {
        failed = a.id;
        all_ok = false;
      }
      results.push_back(std::move(r));
    }
  }
  {
    DbSession s(db_);
    s.begin();
    int64_t now = now_ms();
    s.query("UPDATE deployments SET results = $1, ok = $2, finished_at = $3 WHERE id = $4",
            {json::serialize(results), int64_t(all_ok), now, id});
    for (auto& rv : results) {
      auto& r = rv.as_object();
      if (!r.at("ok").as_bool()) continue;
      std::string agent(r.at("agent").as_string());
      std::string cid = r.contains("configuration_id") && r.at("configuration_id").is_string()
                            ? std::string(r.at("configuration_id").as_string())
                            : "";
      s.query("DELETE FROM agent_deployed WHERE agent = $1", {agent});
      s.query(
          "INSERT INTO agent_deployed (agent, deployment, configuration, revision, sha256, "
          "configuration_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {agent, id, configuration, revision, sha, cid, now});
    }
    audit(s, c, "deployment.finish", configuration,
          json::object{{"deployment", id}, {"ok", all_ok}});
    s.commit();
  }
  return json::object{{"id", id},          {"configuration", configuration}, {"revision", revision},
                      {"sha256", sha},     {"strategy", strategy},           {"ok", all_ok},
                      {"results", results}};
}

Response Console::deployments(const Caller& c, const Request& r,
                              const std::vector<std::string>& seg) {
  if (seg.size() == 3) {
    if (r.method == "GET") {
      int64_t limit = 50;
      if (auto l = r.param("limit")) {
        if (l->empty() || l->size() > 4 ||
            l->find_first_not_of("0123456789") != std::string::npos || std::stoll(*l) < 1 ||
            std::stoll(*l) > 1000)
          throw ApiError{400, "limit must be a number from 1 to 1000"};
        limit = std::stoll(*l);
      }
      DbSession s(db_);
      json::array out;
      for (auto& row : s.query(std::string("SELECT ") + kDeploymentColumns +
                                   " FROM deployments ORDER BY id DESC LIMIT $1",
                               {limit})) {
        std::string repo = row.text(1).substr(0, row.text(1).find('/'));
        if (may_repository(c, repo, "read")) out.push_back(deployment_json(row));
      }
      return json_response(200, json::object{{"deployments", out}});
    }
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, POST"}}};
    json::object body =
        parse_object(r, {"configuration", "revision", "agents", "group", "all", "strategy"});
    std::string configuration = *get_string(body, "configuration", true);
    size_t slash = configuration.find('/');
    if (slash == std::string::npos || !valid_name(configuration.substr(0, slash)) ||
        !valid_name(configuration.substr(slash + 1)))
      throw ApiError{400, "\"configuration\" must be \"REPOSITORY/CONFIGURATION\""};
    int64_t revision = get_int(body, "revision", 1, INT32_MAX).value_or(0);
    std::string strategy = get_string(body, "strategy").value_or("rolling");
    if (strategy != "rolling" && strategy != "parallel")
      throw ApiError{400, "\"strategy\" must be \"rolling\" or \"parallel\""};
    auto ids = get_strings(body, "agents");
    auto group = get_string(body, "group");
    bool all = false;
    if (auto* v = body.if_contains("all"); v && !v->is_null()) {
      if (!v->is_bool()) throw ApiError{400, "\"all\" must be true or false"};
      all = v->as_bool();
    }
    if (int(ids.has_value()) + int(group.has_value()) + int(all) != 1)
      throw ApiError{400,
                     "say where to deploy: exactly one of \"agents\": [...], \"group\": "
                     "\"NAME\" or \"all\": true"};
    std::vector<AgentDef> targets;
    {
      DbSession s(db_);
      if (ids) {
        if (ids->empty()) throw ApiError{400, "\"agents\" is empty"};
        std::vector<std::string> unknown;
        std::set<std::string> seen;
        for (auto& id : *ids) {
          if (!seen.insert(id).second) throw ApiError{400, "the agent " + id + " is listed twice"};
          if (auto a = load_agent(s, id))
            targets.push_back(std::move(*a));
          else
            unknown.push_back("no agent with the id " + id);
        }
        if (!unknown.empty()) throw ApiError{404, "unknown agents: nothing was deployed", unknown};
      } else {
        for (auto& a : load_agents(s))
          if (all || a.group == *group) targets.push_back(std::move(a));
        if (targets.empty())
          throw ApiError{404, all ? "there are no agents" : "no agent is in the group " + *group};
      }
    }
    return json_response(200, run_deployment(c, configuration, revision, std::move(targets),
                                             strategy, std::nullopt));
  }
  const std::string& idtext = seg[3];
  if (idtext.empty() || idtext.size() > 15 ||
      idtext.find_first_not_of("0123456789") != std::string::npos)
    throw ApiError{404, "no deployment " + idtext};
  int64_t id = std::stoll(idtext);
  std::optional<DbRow> row;
  {
    DbSession s(db_);
    row = s.one(std::string("SELECT ") + kDeploymentColumns + " FROM deployments WHERE id = $1",
                {id});
  }
  if (!row) throw ApiError{404, "no deployment " + idtext};
  json::object dep = deployment_json(*row);
  std::string repo = row->text(1).substr(0, row->text(1).find('/'));
  if (seg.size() == 4) {
    if (r.method != "GET")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET"}}};
    require_repository(c, repo, "read");
    return json_response(200, dep);
  }
  if (seg.size() == 5 && (seg[4] == "redeploy" || seg[4] == "rollback")) {
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "POST"}}};
    std::string strategy = row->text(4);
    if (!r.body.empty()) {
      json::object body = parse_object(r, {"strategy"});
      strategy = get_string(body, "strategy").value_or(strategy);
      if (strategy != "rolling" && strategy != "parallel")
        throw ApiError{400, "\"strategy\" must be \"rolling\" or \"parallel\""};
    }
    std::vector<AgentDef> targets;
    std::vector<std::string> gone;
    {
      DbSession s(db_);
      for (auto& res : dep["results"].as_array()) {
        std::string agent(res.as_object().at("agent").as_string());
        if (auto a = load_agent(s, agent))
          targets.push_back(std::move(*a));
        else
          gone.push_back("the agent " + agent + " is no longer defined");
      }
    }
    if (!gone.empty()) throw ApiError{409, "the deployment's agents changed: deploy anew", gone};
    return json_response(
        200, run_deployment(c, row->text(1), row->integer(2), std::move(targets), strategy, id));
  }
  throw ApiError{404, "no such API endpoint: " + r.path};
}

}  // namespace cap::console

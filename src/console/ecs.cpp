// Following an ECS service: discovery of its tasks as agent definitions, and rolling
// deployments through its target group (ecs.h, docs/aws.md).
#include "console/ecs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <set>

#include "console/console.h"
#include "net/signing.h"

namespace cap::console {

namespace {

std::string env_text(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool env_number(const char* name, int64_t min, int64_t max, int64_t* out, std::string* error) {
  std::string v = env_text(name);
  if (v.empty()) return true;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < min || n > max) {
    *error = std::string(name) + " must be a whole number from " + std::to_string(min) + " to " +
             std::to_string(max);
    return false;
  }
  *out = n;
  return true;
}

/// The tasks' management key: the setting, or the vault credential it names (a single
/// value, or the field "key"). Empty with `error` when the vault does not hold it.
std::string agent_key(const EcsSettings& es, Db& db, Sealer& sealer, std::string* error) {
  if (es.key_vault.empty()) return es.key;
  std::optional<std::string> plain;
  {
    DbSession s(db);
    auto row = s.one("SELECT sealed FROM vault WHERE name = $1", {es.key_vault});
    if (!row) {
      *error = "the console's vault has no credential " + es.key_vault +
               " (CAP_ECS_AGENT_KEY_VAULT): store the tasks' management key there";
      return {};
    }
    plain = sealer.open(row->text(0));
  }
  boost::system::error_code ec;
  json::value fields = plain ? json::parse(*plain, ec) : json::value();
  const json::value* key = nullptr;
  if (!ec && fields.is_object()) {
    key = fields.as_object().if_contains("");
    if (!key) key = fields.as_object().if_contains("key");
  }
  if (!key || !key->is_string() || key->as_string().empty() ||
      std::string_view(key->as_string()).find_first_of("\r\n") != std::string_view::npos) {
    *error = "the vault credential " + es.key_vault +
             " (CAP_ECS_AGENT_KEY_VAULT) is not a management key: store a single value, or a "
             "field \"key\"";
    return {};
  }
  return std::string(key->as_string());
}

bool draining(const std::string& state) {
  return state == "draining" || state == "unhealthy.draining";
}

/// Whether the target group serves traffic to the target (registered and not leaving).
bool registered(const store::TargetHealth& h) {
  return h.reason != "Target.NotRegistered" && h.state != "unused" && !draining(h.state);
}

std::string host_port(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

json::object step(std::string_view name, bool ok, json::object detail = {}) {
  json::object s{{"step", name}, {"ok", ok}, {"at", iso_time(now_ms())}};
  for (auto& [k, v] : detail) s[k] = v;
  return s;
}

}  // namespace

bool ecs_settings_from_env(EcsSettings* out, std::string* error) {
  EcsSettings s;
  s.cluster = env_text("CAP_ECS_CLUSTER");
  s.service = env_text("CAP_ECS_SERVICE");
  s.target_group_arn = env_text("CAP_ECS_TARGET_GROUP_ARN");
  if (!s.enabled()) {
    if (!s.service.empty() || !s.target_group_arn.empty()) {
      *error = "CAP_ECS_SERVICE and CAP_ECS_TARGET_GROUP_ARN need CAP_ECS_CLUSTER";
      return false;
    }
    *out = std::move(s);
    return true;
  }
  if (s.service.empty()) {
    *error = "CAP_ECS_CLUSTER is set: set CAP_ECS_SERVICE (the service whose tasks are agents)";
    return false;
  }
  if (std::string g = env_text("CAP_ECS_AGENT_GROUP"); !g.empty()) s.group = g;
  if (!valid_name(s.group)) {
    *error = "CAP_ECS_AGENT_GROUP must be 1-100 of A-Z a-z 0-9 . _ - (not starting with '.')";
    return false;
  }
  if (std::string t = env_text("CAP_ECS_AGENT_TYPE"); !t.empty()) s.type = t;
  if (s.type != "production" && s.type != "test") {
    *error = "CAP_ECS_AGENT_TYPE must be production or test";
    return false;
  }
  s.key = env_text("CAP_ECS_AGENT_KEY");
  if (std::string file = env_text("CAP_ECS_AGENT_KEY_FILE"); !file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      *error = "CAP_ECS_AGENT_KEY_FILE " + file + " cannot be read: " + std::strerror(errno);
      return false;
    }
    s.key.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    while (!s.key.empty() && (s.key.back() == '\n' || s.key.back() == '\r')) s.key.pop_back();
  }
  s.key_vault = env_text("CAP_ECS_AGENT_KEY_VAULT");
  if (!s.key_vault.empty() && !s.key.empty()) {
    *error =
        "give the tasks' management key one way: CAP_ECS_AGENT_KEY_VAULT, or "
        "CAP_ECS_AGENT_KEY or CAP_ECS_AGENT_KEY_FILE";
    return false;
  }
  if (!s.key_vault.empty() && !valid_name(s.key_vault)) {
    *error = "CAP_ECS_AGENT_KEY_VAULT must name a credential of the console's vault";
    return false;
  }
  if (s.key_vault.empty() && (s.key.empty() || s.key.find_first_of("\r\n") != std::string::npos)) {
    *error =
        "CAP_ECS_CLUSTER is set: give the tasks' management key (their CAP_MGMT_KEY) in "
        "CAP_ECS_AGENT_KEY, CAP_ECS_AGENT_KEY_FILE or the console's vault "
        "(CAP_ECS_AGENT_KEY_VAULT)";
    return false;
  }
  int64_t agent_port = s.agent_port, web_port = s.web_port, sync = s.sync_ms,
          drain = s.drain_timeout_ms, healthy = s.healthy_timeout_ms, poll = s.target_poll_ms;
  if (!env_number("CAP_ECS_AGENT_PORT", 1, 65535, &agent_port, error) ||
      !env_number("CAP_ECS_WEB_PORT", 1, 65535, &web_port, error) ||
      !env_number("CAP_ECS_SYNC_MS", 0, 86400000, &sync, error) ||
      !env_number("CAP_ECS_DRAIN_TIMEOUT_MS", 0, 3600000, &drain, error) ||
      !env_number("CAP_ECS_HEALTHY_TIMEOUT_MS", 0, 3600000, &healthy, error) ||
      !env_number("CAP_ECS_TARGET_POLL_MS", 50, 600000, &poll, error))
    return false;
  s.agent_port = int(agent_port);
  s.web_port = int(web_port);
  s.sync_ms = int(sync);
  s.drain_timeout_ms = int(drain);
  s.healthy_timeout_ms = int(healthy);
  s.target_poll_ms = int(poll);
  if (!store::FleetOptions::from_environment(store::process_environment(), &s.aws, error))
    return false;
  *out = std::move(s);
  return true;
}

std::string ecs_agent_id(const std::string& task_id) {
  std::string compact;
  for (char ch : task_id)
    if (ch != '-') compact.push_back(ch);
  return "ecs-" + compact.substr(0, 12);
}

EcsRuntime::EcsRuntime(const EcsSettings& settings)
    : http([&] {
        net::ClientOptions o;
        o.threads = 1;
        o.connect_timeout = std::chrono::milliseconds(5000);
        o.retries = 0;
        o.ca_file = settings.aws.ca_file;
        return o;
      }()),
      credentials(http),
      fleet(settings.aws, credentials, http) {}

// ---------------------------------------------------------------------------------------
// Discovery

void Console::start_ecs() {
  const EcsSettings& es = settings_.ecs;
  if (!es.enabled()) return;
  ecs_ = std::make_unique<EcsRuntime>(es);
  spdlog::info(
      "following ECS service {} in cluster {} (region {}, endpoint {}); tasks become agents of "
      "the group {}; target group {}",
      es.service, es.cluster, es.aws.region, es.aws.ecs_url(), es.group,
      es.target_group_arn.empty() ? "none (rolling deploys do not touch the load balancer)"
                                  : es.target_group_arn);
  if (es.sync_ms == 0) return;
  ecs_->thread = std::thread([this] {
    Caller who;
    who.username = "(ECS sync)";
    for (;;) {
      try {
        ecs_sync(who, "periodic");
      } catch (const ApiError&) {
        // Logged and kept as the last result by ecs_sync.
      } catch (const std::exception& e) {
        spdlog::error("ECS sync: {}", e.what());
      }
      std::unique_lock lock(ecs_->mu);
      if (ecs_->cv.wait_for(lock, std::chrono::milliseconds(settings_.ecs.sync_ms),
                            [this] { return ecs_->stop; }))
        return;
    }
  });
}

void Console::stop_ecs() {
  if (!ecs_) return;
  {
    std::lock_guard lock(ecs_->mu);
    ecs_->stop = true;
  }
  ecs_->cv.notify_all();
  if (ecs_->thread.joinable()) ecs_->thread.join();
}

json::object Console::ecs_sync(const Caller& who, const std::string& trigger) {
  const EcsSettings& es = settings_.ecs;
  std::lock_guard one_at_a_time(ecs_->sync_mu);
  json::object result{{"at", iso_time(now_ms())}, {"trigger", trigger}};
  auto failed = [&](const store::AwsError& e, int status = 502) {
    result["ok"] = false;
    result["error"] = e.message;
    result["kind"] = std::string(store::failure_name(e.kind));
    bool again = false;  // the periodic sync failing as it did last time logs it once
    {
      std::lock_guard lock(ecs_->mu);
      auto* before = ecs_->last_sync.if_object();
      again = trigger == "periodic" && before && before->contains("error") &&
              before->at("error") == result["error"];
      ecs_->last_sync = result;
    }
    if (!again) spdlog::warn("ECS sync ({}): {}; agent definitions unchanged", trigger, e.message);
    throw ApiError{status,
                   "ECS discovery failed: " + e.message,
                   {"kind: " + std::string(store::failure_name(e.kind)),
                    "the agent definitions were not changed"}};
  };
  std::string key_error;
  const std::string key = agent_key(es, db_, sealer_, &key_error);
  if (key.empty()) failed(store::AwsError{store::AwsFailure::Other, "", key_error}, 409);
  std::vector<store::EcsTask> tasks;
  store::AwsError err;
  if (!ecs_->fleet.service_tasks(es.cluster, es.service, &tasks, &err)) failed(err);
  const int web_port = es.web_port;

  // What the service runs now: agent id -> task.
  std::map<std::string, const store::EcsTask*> live;
  json::array listed, pending;
  for (auto& t : tasks) {
    json::object o{{"task_arn", t.arn},
                   {"task_id", t.id},
                   {"ip", t.private_ip},
                   {"last_status", t.last_status},
                   {"desired_status", t.desired_status}};
    if (t.last_status == "RUNNING" && t.desired_status == "RUNNING" && !t.private_ip.empty()) {
      o["agent"] = ecs_agent_id(t.id);
      live[ecs_agent_id(t.id)] = &t;
    } else {
      o["agent"] = nullptr;
    }
    listed.push_back(std::move(o));
  }

  json::array added, updated, removed, skipped;
  std::vector<AgentDef> to_check;
  {
    DbSession s(db_);
    s.begin();
    std::vector<AgentDef> defined = load_agents(s);
    std::map<std::string, const AgentDef*> by_id;
    for (auto& a : defined) by_id[a.id] = &a;
    for (auto& [id, task] : live) {
      AgentDef want;
      want.id = id;
      want.host = task->private_ip;
      want.port = es.agent_port;
      want.web_port = web_port;
      want.key = key;
      want.type = es.type;
      want.group = es.group;
      want.registered = "ecs";
      want.created_at = now_ms();
      auto it = by_id.find(id);
      if (it != by_id.end() && it->second->registered != "ecs") {
        skipped.push_back(json::object{
            {"task_arn", task->arn},
            {"reason", "an agent with the id " + id + " exists and was not discovered from ECS"}});
        continue;
      }
      if (it == by_id.end()) {
        const AgentDef* same = nullptr;
        for (auto& a : defined)
          if (a.host == want.host && a.port == want.port && a.registered != "ecs") same = &a;
        if (same) {
          skipped.push_back(
              json::object{{"task_arn", task->arn},
                           {"reason", "the task's address " + host_port(want.host, want.port) +
                                          " is already defined as the agent " + same->id}});
          continue;
        }
        s.query(
            "INSERT INTO agents (id, host, port, web_port, key_sealed, type, grp, registered, "
            "created_at, tls) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
            {want.id, want.host, int64_t(want.port), int64_t(web_port), sealer_.seal(want.key),
             want.type, want.group, want.registered, want.created_at});
        audit(s, who, "agent.ecs_add", id,
              json::object{{"task_arn", task->arn},
                           {"host", want.host},
                           {"port", want.port},
                           {"group", want.group}});
        added.push_back(json::object{{"agent", id}, {"task_arn", task->arn}, {"ip", want.host}});
        to_check.push_back(want);
        continue;
      }
      const AgentDef& have = *it->second;
      if (have.host != want.host || have.port != want.port || have.web_port != want.web_port ||
          have.key != want.key || have.type != want.type || have.group != want.group) {
        s.query(
            "UPDATE agents SET host = $1, port = $2, web_port = $3, key_sealed = $4, type = $5, "
            "grp = $6 WHERE id = $7",
            {want.host, int64_t(want.port), int64_t(web_port), sealer_.seal(want.key), want.type,
             want.group, id});
        audit(s, who, "agent.ecs_update", id,
              json::object{{"task_arn", task->arn}, {"host", want.host}, {"port", want.port}});
        updated.push_back(json::object{{"agent", id}, {"task_arn", task->arn}, {"ip", want.host}});
        want.created_at = have.created_at;
        to_check.push_back(want);
      }
    }
    for (auto& a : defined) {
      if (a.registered != "ecs" || live.count(a.id)) continue;
      s.query("DELETE FROM agent_deployed WHERE agent = $1", {a.id});
      s.query("DELETE FROM agents WHERE id = $1", {a.id});
      audit(s, who, "agent.ecs_remove", a.id,
            json::object{{"host", a.host},
                         {"reason", "its task is no longer running in the service " + es.service}});
      removed.push_back(json::object{{"agent", a.id}, {"ip", a.host}});
    }
    s.commit();
  }
  {
    std::lock_guard lock(status_mu_);
    for (auto& r : removed) status_.erase(std::string(r.as_object().at("agent").as_string()));
  }
  // Ask the new and changed ones for their status now, so the list shows it at once.
  std::vector<std::future<AgentStatus>> checks;
  for (auto& a : to_check)
    checks.push_back(std::async(std::launch::async, [this, a] { return check_agent(a); }));
  for (auto& c : checks) c.get();

  {
    std::lock_guard lock(ecs_->mu);
    if (auto* before = ecs_->last_sync.if_object(); before && before->contains("error"))
      spdlog::info("ECS sync ({}): works again", trigger);
  }
  result["ok"] = true;
  result["tasks"] = listed;
  result["added"] = added;
  result["updated"] = updated;
  result["removed"] = removed;
  result["skipped"] = skipped;
  {
    std::lock_guard lock(ecs_->mu);
    ecs_->last_sync = result;
  }
  if (!added.empty() || !updated.empty() || !removed.empty() || !skipped.empty()) {
    std::string what;
    for (auto& a : added)
      what += " added " + std::string(a.as_object().at("agent").as_string()) + " (" +
              std::string(a.as_object().at("ip").as_string()) + ");";
    for (auto& a : updated)
      what += " updated " + std::string(a.as_object().at("agent").as_string()) + ";";
    for (auto& a : removed)
      what += " removed " + std::string(a.as_object().at("agent").as_string()) + " (task gone);";
    for (auto& a : skipped)
      what += " skipped a task: " + std::string(a.as_object().at("reason").as_string()) + ";";
    spdlog::info("ECS sync ({}): {} running tasks in {};{}", trigger, live.size(), es.service,
                 what);
  }
  return result;
}

Response Console::ecs_api(const Caller& c, const Request& r, const std::vector<std::string>& seg) {
  const EcsSettings& es = settings_.ecs;
  if (seg.size() == 3) {
    if (r.method != "GET")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET"}}};
    json::object o{{"enabled", es.enabled()}};
    if (!es.enabled()) {
      o["hint"] =
          "set CAP_ECS_CLUSTER, CAP_ECS_SERVICE and CAP_ECS_AGENT_KEY or CAP_ECS_AGENT_KEY_VAULT "
          "(and "
          "CAP_ECS_TARGET_GROUP_ARN for rolling updates through the load balancer); see "
          "docs/aws.md";
      return json_response(200, o);
    }
    o["cluster"] = es.cluster;
    o["service"] = es.service;
    o["target_group_arn"] =
        es.target_group_arn.empty() ? json::value() : json::value(es.target_group_arn);
    o["group"] = es.group;
    o["type"] = es.type;
    o["agent_port"] = es.agent_port;
    o["key_from"] = es.key_vault.empty() ? "setting" : "vault:" + es.key_vault;
    o["web_port"] = es.web_port;
    o["region"] = es.aws.region;
    o["ecs_endpoint"] = es.aws.ecs_url();
    o["elb_endpoint"] = es.aws.elb_url();
    o["sync_interval_ms"] = es.sync_ms;
    o["drain_timeout_ms"] = es.drain_timeout_ms;
    o["healthy_timeout_ms"] = es.healthy_timeout_ms;
    std::lock_guard lock(ecs_->mu);
    if (!ecs_->last_sync.is_null()) o["last_sync"] = ecs_->last_sync;
    return json_response(200, o);
  }
  if (seg.size() == 4 && seg[3] == "sync") {
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "POST"}}};
    require_types(c, {UserType::Admin, UserType::Super}, "synchronising agents with ECS");
    if (!es.enabled())
      throw ApiError{
          409,
          "ECS discovery is not configured",
          {"set CAP_ECS_CLUSTER, CAP_ECS_SERVICE and CAP_ECS_AGENT_KEY; see docs/aws.md"}};
    return json_response(200, ecs_sync(c, "manual"));
  }
  throw ApiError{404, "no such API endpoint: " + r.path};
}

// ---------------------------------------------------------------------------------------
// Rolling deployments through the target group

bool Console::ecs_rolls(const AgentDef& a) const {
  return ecs_ && !settings_.ecs.target_group_arn.empty() && a.registered == "ecs";
}

json::object Console::ecs_deploy_one(const AgentDef& a, const std::string& zip, const Package& pkg,
                                     const std::function<void(const json::object&)>& progress) {
  const EcsSettings& es = settings_.ecs;
  const std::string& tg = es.target_group_arn;
  store::FleetClient& fleet = ecs_->fleet;
  json::object result{{"agent", a.id}, {"ok", false}};
  json::array steps;
  auto record = [&](json::object s) {
    steps.push_back(std::move(s));
    result["steps"] = steps;
    progress(result);
  };
  auto fail = [&](std::vector<std::string> errors, std::string target_left) {
    json::array e;
    for (auto& x : errors) e.emplace_back(x);
    result["errors"] = e;
    result["target_left"] = target_left;
    spdlog::warn("rolling deploy to {} ({}): {}; target {}", a.id, a.host, errors.front(),
                 target_left);
    progress(result);
    return result;
  };
  const int port = es.web_port;
  std::string target = host_port(a.host, port);
  result["target"] = target;
  store::AwsError err;

  // 1. Where the target stands now.
  store::TargetHealth before;
  if (!fleet.target_health(tg, a.host, port, &before, &err))
    return fail({err.message}, "untouched");
  bool was_registered = registered(before);
  record(step("target_state", true, {{"state", before.state}, {"reason", before.reason}}));

  auto wait_for = [&](std::string_view name, int timeout_ms, auto done,
                      store::TargetHealth* last) -> bool {
    int64_t start = now_ms();
    for (;;) {
      if (!fleet.target_health(tg, a.host, port, last, &err)) return false;
      int64_t waited = now_ms() - start;
      bool ok = done(*last);
      json::object s = step(name, ok, {{"state", last->state}, {"waited_ms", waited}});
      if (!steps.empty() && steps.back().as_object().at("step").as_string() == name)
        steps.pop_back();  // one entry per wait, updated as it goes
      record(std::move(s));
      if (ok) return true;
      if (waited >= timeout_ms) {
        err = store::AwsError{store::AwsFailure::Other, "",
                              "the target " + target + " was still " + last->state + " after " +
                                  std::to_string(waited / 1000) + " s"};
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(es.target_poll_ms));
    }
  };
  auto reregister = [&](const std::string& why) -> std::string {
    store::AwsError e2;
    if (!fleet.register_target(tg, a.host, port, &e2)) {
      record(step("register", false, {{"error", e2.message}}));
      return "out of the target group: registering it again failed (" + e2.message + ")";
    }
    record(step("register", true, {{"why", why}}));
    return "registered again: " + why;
  };

  // 2. Out of the load balancer, and drained; unless no other target is healthy: taking the
  // only one out would stop the service, so it takes the configuration in place (the agent
  // swaps configurations atomically, requests in flight finish on the old one).
  bool in_place = false;
  if (was_registered) {
    std::vector<store::TargetHealth> all;
    if (!fleet.target_group_health(tg, &all, &err)) return fail({err.message}, "untouched");
    in_place = std::none_of(all.begin(), all.end(), [&](const store::TargetHealth& h) {
      return h.state == "healthy" && !(h.id == a.host && h.port == port);
    });
  }
  if (in_place) {
    record(step("deregister", true,
                {{"skipped", true},
                 {"why", "no other target is healthy: it takes the configuration in place"}}));
  } else if (was_registered) {
    if (!fleet.deregister_target(tg, a.host, port, &err)) {
      record(step("deregister", false, {{"error", err.message}}));
      return fail({err.message}, "untouched");
    }
    record(step("deregister", true));
    store::TargetHealth now;
    if (!wait_for(
            "drain", es.drain_timeout_ms,
            [](const store::TargetHealth& h) { return !draining(h.state); }, &now))
      return fail({"waiting for draining: " + err.message},
                  reregister("the deploy did not start; it serves its previous configuration"));
  }

  // 3. The deploy itself, checked ready (GET /.cap/ready on the web port).
  json::object r = deploy_one(a, zip, pkg, true);
  for (auto& [k, v] : r)
    if (k != "agent" && k != "ok" && k != "errors") result[k] = v;
  if (!r["ok"].as_bool()) {
    json::array errs = r["errors"].as_array();
    record(step("deploy", false, {{"errors", errs}}));
    std::vector<std::string> errors;
    for (auto& e : errs) errors.emplace_back(e.as_string());
    if (!was_registered) return fail(errors, "not registered (it was not registered before)");
    if (in_place)
      return fail(errors, "untouched: no other target is healthy, it stayed registered");
    // Back into the load balancer only when it still serves its previous configuration
    // and says it is ready; a task running the new configuration that failed its checks,
    // or one that does not answer, stays out.
    AgentStatus st = check_agent(a);
    bool ready = false, runs_new = false;
    read_status(st, net::sha256_hex(zip), &ready, &runs_new);
    HttpCall call;
    call.method = "GET";
    call.url = "http://" + host_port(a.host, port) + "/.cap/ready";
    call.timeout_ms = 5000;
    bool web_ready = st.online && ready && !runs_new && client_.call(call).status == 200;
    if (web_ready)
      return fail(errors, reregister("it still serves its previous configuration and is ready"));
    std::string why = !st.online ? "the agent does not answer (" + st.error + ")"
                      : runs_new ? "it runs the new configuration, which failed its checks"
                                 : "it is not ready";
    record(step("register", false, {{"skipped", true}, {"why", why}}));
    return fail(errors, "out of the target group: " + why);
  }
  record(step("deploy", true, {{"configuration_id", r["configuration_id"]}}));

  // 4. Back into the load balancer, and healthy before the next task leaves it.
  if (!was_registered || in_place) {
    record(step("register", true,
                {{"skipped", true},
                 {"why", in_place ? "it stayed registered" : "it was not registered before"}}));
  } else {
    if (!fleet.register_target(tg, a.host, port, &err)) {
      record(step("register", false, {{"error", err.message}}));
      return fail({err.message}, "out of the target group: register it again once AWS allows");
    }
    record(step("register", true));
    store::TargetHealth now;
    if (!wait_for(
            "healthy", es.healthy_timeout_ms,
            [](const store::TargetHealth& h) { return h.state == "healthy"; }, &now))
      return fail({"waiting for the load balancer's health check: " + err.message},
                  "registered, not healthy");
  }
  result["ok"] = true;
  result.erase("errors");
  progress(result);
  return result;
}

}  // namespace cap::console

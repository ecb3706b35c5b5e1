// Agent definitions, their live status (the poller), drift from what the console last
// deployed, the agent's logs, traces, statistics and metrics through the console, join
// tokens and self-registration.
//
// Management keys are stored sealed with the installation key and never answered.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <future>

#include "console/console.h"
#include "net/signing.h"

namespace cap::console {

namespace {

void check_host(const std::string& host) {
  if (host.empty() || host.size() > 253 || host.find_first_of(" /?#@[]\t\r\n") != std::string::npos)
    throw ApiError{400, "\"host\" must be a host name or an IP address"};
}

void check_type(const std::string& type) {
  if (type != "production" && type != "test")
    throw ApiError{400, "\"type\" must be \"production\" or \"test\""};
}

void check_group(const std::string& group) {
  if (!group.empty()) require_name("the group", group);
}

void check_key(const std::string& key) {
  if (key.empty() || key.size() > 1024 || key.find_first_of("\r\n") != std::string::npos)
    throw ApiError{400, "\"key\" must be the agent's management key (CAP_MGMT_KEY)"};
}

Response pass_through(const AgentDef& a, const HttpReply& reply) {
  if (reply.status == 0)
    throw ApiError{502, "the agent " + a.id + " cannot be reached", {reply.error}};
  Response out;
  out.status = reply.status;
  out.body = reply.body;
  out.content_type = "application/octet-stream";
  for (auto& [k, v] : reply.headers) {
    std::string name = k;
    for (char& ch : name) ch = char(std::tolower(uint8_t(ch)));
    if (name == "content-type") out.content_type = v;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Loading definitions

std::optional<AgentDef> Console::load_agent(DbSession& s, const std::string& id) {
  auto row = s.one(
      "SELECT id, host, port, web_port, key_sealed, type, grp, registered, created_at, tls "
      "FROM agents WHERE id = $1",
      {id});
  if (!row) return std::nullopt;
  AgentDef a;
  a.id = row->text(0);
  a.host = row->text(1);
  a.port = int(row->integer(2));
  if (!row->null(3)) a.web_port = int(row->integer(3));
  a.key = sealer_.open(row->text(4)).value_or("");
  a.type = row->text(5);
  a.group = row->text(6);
  a.registered = row->text(7);
  a.created_at = row->integer(8);
  a.tls = row->integer(9) != 0;
  return a;
}

std::vector<AgentDef> Console::load_agents(DbSession& s) {
  std::vector<AgentDef> out;
  for (auto& row : s.query("SELECT id FROM agents ORDER BY id"))
    if (auto a = load_agent(s, row.text(0))) out.push_back(std::move(*a));
  return out;
}

// ---------------------------------------------------------------------------------------
// Talking to agents

HttpReply Console::agent_call(const AgentDef& a, const std::string& method, const std::string& path,
                              const std::string& body, const std::string& content_type,
                              int timeout_ms) {
  if (a.key.empty()) {
    HttpReply r;
    r.error = "the agent's management key cannot be read (was the installation key replaced?)";
    return r;
  }
  bool v6 = a.host.find(':') != std::string::npos;
  HttpCall call;
  call.method = method;
  call.url = std::string(a.tls ? "https://" : "http://") + (v6 ? "[" + a.host + "]" : a.host) +
             ":" + std::to_string(a.port) + path;
  call.body = body;
  call.timeout_ms = timeout_ms > 0 ? timeout_ms : settings_.agent_timeout_ms;
  call.headers.emplace_back(
      "Authorization", net::sign_request(a.key, method, path, body, int64_t(std::time(nullptr)),
                                         net::random_nonce()));
  if (!content_type.empty()) call.headers.emplace_back("Content-Type", content_type);
  call.headers.emplace_back("Accept", "application/json");
  return (a.tls ? agent_client_tls_ : client_).call(call);
}

AgentStatus Console::check_agent(const AgentDef& a) {
  AgentStatus st;
  st.known = true;
  st.checked_at = now_ms();
  HttpReply reply = agent_call(a, "GET", "/v1/status", {}, {}, 3000);
  if (reply.status == 200) {
    boost::system::error_code ec;
    st.status = json::parse(reply.body, ec);
    st.online = !ec && st.status.is_object();
    if (!st.online) st.error = "the agent's status is not JSON";
  } else if (reply.status == 0) {
    st.error = reply.error;
  } else {
    boost::system::error_code ec;
    json::value v = json::parse(reply.body, ec);
    std::string what = !ec && v.is_object() && v.as_object().contains("error") &&
                               v.as_object().at("error").is_string()
                           ? std::string(v.as_object().at("error").as_string())
                           : "no details";
    st.error = "the agent answered " + std::to_string(reply.status) + ": " + what;
    if (reply.status == 401) st.error += " (is the management key right?)";
  }
  std::lock_guard lock(status_mu_);
  status_[a.id] = st;
  return st;
}

AgentStatus Console::cached_status(const std::string& id) {
  std::lock_guard lock(status_mu_);
  auto it = status_.find(id);
  return it == status_.end() ? AgentStatus{} : it->second;
}

void Console::start_poller() {
  poller_ = std::thread([this] { poll_loop(); });
  start_ecs();
}

void Console::stop_poller() {
  {
    std::lock_guard lock(poll_mu_);
    poll_stop_ = true;
  }
  poll_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
  stop_ecs();
}

void Console::poll_loop() {
  for (;;) {
    std::vector<AgentDef> agents;
    try {
      DbSession s(db_);
      agents = load_agents(s);
    } catch (const std::exception& e) {
      spdlog::warn("status poller: {}", e.what());
    }
    // Up to kPollBatch agents at a time, so unreachable ones (each waiting out its connect
    // timeout) do not hold up the others.
    constexpr size_t kPollBatch = 16;
    for (size_t first = 0; first < agents.size(); first += kPollBatch) {
      {
        std::lock_guard lock(poll_mu_);
        if (poll_stop_) return;
      }
      std::vector<std::pair<AgentStatus, std::future<AgentStatus>>> checks;
      for (size_t i = first; i < std::min(agents.size(), first + kPollBatch); ++i)
        checks.emplace_back(
            cached_status(agents[i].id),
            std::async(std::launch::async, [this, &a = agents[i]] { return check_agent(a); }));
      for (size_t i = 0; i < checks.size(); ++i) {
        AgentStatus& before = checks[i].first;
        AgentStatus now = checks[i].second.get();
        if (before.known && before.online != now.online) {
          if (now.online)
            spdlog::info("agent {} is online", agents[first + i].id);
          else
            spdlog::warn("agent {} is offline: {}", agents[first + i].id, now.error);
        }
      }
    }
    std::unique_lock lock(poll_mu_);
    if (poll_cv_.wait_for(lock, std::chrono::milliseconds(settings_.poll_ms),
                          [this] { return poll_stop_; }))
      return;
  }
}

json::object Console::agent_json(const AgentDef& a, DbSession& s) {
  json::object o{{"id", a.id},
                 {"host", a.host},
                 {"port", a.port},
                 {"type", a.type},
                 {"group", a.group},
                 {"registered", a.registered},
                 {"key_set", !a.key.empty()},
                 {"created_at", iso_time(a.created_at)}};
  o["web_port"] = a.web_port ? json::value(*a.web_port) : json::value();
  o["tls"] = a.tls;
  AgentStatus st = cached_status(a.id);
  json::object status{
      {"online", st.online},
      {"checked_at", st.known ? json::value(iso_time(st.checked_at)) : json::value()}};
  if (!st.error.empty()) status["error"] = st.error;
  json::value active;
  if (st.online) {
    auto& so = st.status.as_object();
    for (const char* k : {"version", "ready", "mode", "stopped", "uptime_s", "extensions"})
      if (so.contains(k)) status[k] = so.at(k);
    if (so.contains("configuration")) active = so.at("configuration");
  }
  status["configuration"] = active;
  auto dep = s.one(
      "SELECT deployment, configuration, revision, sha256, configuration_id, at FROM "
      "agent_deployed WHERE agent = $1",
      {a.id});
  json::value deployed;
  json::value drift;
  if (dep) {
    deployed = json::object{{"deployment", dep->integer(0)},    {"configuration", dep->text(1)},
                            {"revision", dep->integer(2)},      {"sha256", dep->text(3)},
                            {"configuration_id", dep->text(4)}, {"at", iso_time(dep->integer(5))}};
    if (st.online) {
      std::string running = active.is_object() && active.as_object().contains("sha256") &&
                                    active.as_object().at("sha256").is_string()
                                ? std::string(active.as_object().at("sha256").as_string())
                                : "";
      drift = running != dep->text(3);
      if (running != dep->text(3))
        status["drift_reason"] = running.empty()
                                     ? "the agent runs no configuration"
                                     : "the agent runs another configuration than the console "
                                       "deployed (" +
                                           dep->text(1) + " revision " +
                                           std::to_string(dep->integer(2)) + ")";
    }
  }
  status["drift"] = drift;
  o["status"] = status;
  o["deployed"] = deployed;
  return o;
}

// ---------------------------------------------------------------------------------------
// /api/v1/agents

Response Console::agents(const Caller& c, const Request& r, const std::vector<std::string>& seg) {
  if (seg.size() == 3) {
    if (r.method == "GET") {
      DbSession s(db_);
      json::array out;
      std::string group = r.param("group").value_or("");
      for (auto& a : load_agents(s))
        if (may_agent(c, a, "read") && (group.empty() || a.group == group))
          out.push_back(agent_json(a, s));
      return json_response(200, json::object{{"agents", out}});
    }
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, POST"}}};
    require_types(c, {UserType::Admin, UserType::Super}, "defining agents");
    json::object body =
        parse_object(r, {"id", "host", "port", "key", "type", "group", "web_port", "tls"});
    AgentDef a;
    a.id = *get_string(body, "id", true);
    require_name("the agent id", a.id);
    if (a.id == "announce") throw ApiError{400, "\"announce\" is reserved: choose another id"};
    a.host = *get_string(body, "host", true);
    check_host(a.host);
    a.port = int(*get_int(body, "port", 1, 65535, true));
    if (auto w = get_int(body, "web_port", 1, 65535)) a.web_port = int(*w);
    a.key = *get_string(body, "key", true);
    check_key(a.key);
    a.type = get_string(body, "type").value_or("production");
    check_type(a.type);
    a.group = get_string(body, "group").value_or("");
    check_group(a.group);
    a.tls = get_bool(body, "tls").value_or(false);
    a.registered = "manual";
    a.created_at = now_ms();
    {
      DbSession s(db_);
      s.begin();
      if (s.one("SELECT 1 FROM agents WHERE id = $1", {a.id}))
        throw ApiError{409,
                       "an agent with the id " + a.id + " exists already",
                       {"change it with PUT /api/v1/agents/" + a.id}};
      s.query(
          "INSERT INTO agents (id, host, port, web_port, key_sealed, type, grp, registered, "
          "created_at, tls) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
          {a.id, a.host, int64_t(a.port),
           a.web_port ? DbParam(int64_t(*a.web_port)) : DbParam(nullptr), sealer_.seal(a.key),
           a.type, a.group, a.registered, a.created_at, int64_t(a.tls)});
      audit(s, c, "agent.create", a.id,
            json::object{{"host", a.host}, {"port", a.port}, {"type", a.type}, {"group", a.group}});
      s.commit();
    }
    check_agent(a);
    DbSession s(db_);
    return json_response(201, agent_json(a, s));
  }

  const std::string& id = seg[3];
  std::optional<AgentDef> found;
  {
    DbSession s(db_);
    found = load_agent(s, id);
  }
  if (!found) throw ApiError{404, "no agent with the id " + id};
  AgentDef a = *found;
  std::string sub;
  for (size_t i = 4; i < seg.size(); ++i) sub += "/" + seg[i];

  if (sub.empty()) {
    if (r.method == "GET") {
      require_agent(c, a, "read");
      check_agent(a);
      DbSession s(db_);
      return json_response(200, agent_json(a, s));
    }
    if (r.method == "PUT") {
      require_types(c, {UserType::Admin, UserType::Super}, "changing agent definitions");
      json::object body =
          parse_object(r, {"id", "host", "port", "key", "type", "group", "web_port", "tls"});
      if (auto other = get_string(body, "id"); other && *other != id)
        throw ApiError{400, "the id cannot be changed", {"define a new agent and delete this one"}};
      json::object changed;
      if (auto v = get_string(body, "host")) check_host(a.host = *v), changed["host"] = *v;
      if (auto v = get_int(body, "port", 1, 65535)) a.port = int(*v), changed["port"] = *v;
      if (body.contains("web_port")) {
        auto v = get_int(body, "web_port", 1, 65535);
        a.web_port = v ? std::optional<int>(int(*v)) : std::nullopt;
        changed["web_port"] = v ? json::value(*v) : json::value();
      }
      if (auto v = get_string(body, "key")) check_key(a.key = *v), changed["key"] = "changed";
      if (auto v = get_string(body, "type")) check_type(a.type = *v), changed["type"] = *v;
      if (auto v = get_string(body, "group")) check_group(a.group = *v), changed["group"] = *v;
      if (auto v = get_bool(body, "tls")) a.tls = *v, changed["tls"] = *v;
      {
        DbSession s(db_);
        s.begin();
        s.query(
            "UPDATE agents SET host = $1, port = $2, web_port = $3, key_sealed = $4, type = "
            "$5, grp = $6, tls = $7 WHERE id = $8",
            {a.host, int64_t(a.port), a.web_port ? DbParam(int64_t(*a.web_port)) : DbParam(nullptr),
             sealer_.seal(a.key), a.type, a.group, int64_t(a.tls), a.id});
        audit(s, c, "agent.update", a.id, changed);
        s.commit();
      }
      check_agent(a);
      DbSession s(db_);
      return json_response(200, agent_json(a, s));
    }
    if (r.method == "DELETE") {
      require_types(c, {UserType::Admin, UserType::Super}, "deleting agent definitions");
      DbSession s(db_);
      s.begin();
      s.query("DELETE FROM agent_deployed WHERE agent = $1", {id});
      s.query("DELETE FROM agents WHERE id = $1", {id});
      audit(s, c, "agent.delete", id);
      s.commit();
      std::lock_guard lock(status_mu_);
      status_.erase(id);
      return no_content();
    }
    throw ApiError{
        405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, PUT, DELETE"}}};
  }

  // The agent's own data, through the console.
  auto only = [&](std::string_view m) {
    if (r.method != m)
      throw ApiError{
          405, r.method + " is not allowed on " + r.path, {}, {{"Allow", std::string(m)}}};
  };
  if (sub == "/status") {
    only("GET");
    require_agent(c, a, "read");
    check_agent(a);
    DbSession s(db_);
    return json_response(200, agent_json(a, s)["status"]);
  }
  if (sub == "/logs") {
    only("GET");
    require_agent(c, a, "read");
    return pass_through(a, agent_call(a, "GET", "/v1/logs"));
  }
  if (seg.size() == 6 && seg[4] == "logs") {
    only("GET");
    require_agent(c, a, "read");
    std::string file = seg[5];
    if (!valid_name(file)) throw ApiError{400, "not a log file name: " + file};
    std::string path = "/v1/logs/" + file;
    if (auto tail = r.param("tail")) {
      if (tail->empty() || tail->size() > 9 ||
          tail->find_first_not_of("0123456789") != std::string::npos)
        throw ApiError{400, "tail must be a whole number of lines"};
      path += "?tail=" + *tail;
    }
    return pass_through(a, agent_call(a, "GET", path));
  }
  if (sub == "/stats" || sub == "/metrics" || sub == "/configuration/history") {
    only("GET");
    require_agent(c, a, "read");
    return pass_through(a, agent_call(a, "GET", sub == "/metrics" ? "/metrics" : "/v1" + sub));
  }
  if (sub == "/trace") {
    if (r.method == "GET") {
      require_agent(c, a, "read");
      return pass_through(a, agent_call(a, "GET", "/v1/trace"));
    }
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, POST"}}};
    require_agent(c, a, "operate");
    json::object body = parse_object(r, {"count"});
    json::object sent;
    if (auto n = get_int(body, "count", 1, 10000)) sent["count"] = *n;
    HttpReply reply = agent_call(a, "POST", "/v1/trace", json::serialize(sent), "application/json");
    DbSession s(db_);
    audit(s, c, "agent.trace", a.id, sent);
    return pass_through(a, reply);
  }
  if (sub == "/mode" || sub == "/configuration/stop" || sub == "/configuration/start") {
    only(sub == "/mode" ? "PUT" : "POST");
    require_agent(c, a, "operate");
    std::string sent = "{}";
    if (sub == "/mode") {
      json::object body = parse_object(r, {"mode"});
      sent = json::serialize(json::object{{"mode", *get_string(body, "mode", true)}});
    }
    HttpReply reply = agent_call(a, r.method, "/v1" + sub, sent, "application/json");
    if (reply.status == 200) {
      DbSession s(db_);
      boost::system::error_code ec;
      audit(s, c,
            "agent" + std::string(sub == "/mode"                 ? ".mode"
                                  : sub == "/configuration/stop" ? ".stop"
                                                                 : ".start"),
            a.id, json::parse(sent, ec));
    }
    return pass_through(a, reply);
  }
  throw ApiError{404, "no such API endpoint: " + r.path};
}

// ---------------------------------------------------------------------------------------
// Join tokens and self-registration

Response Console::join_tokens(const Caller& c, const Request& r,
                              const std::vector<std::string>& seg) {
  require_types(c, {UserType::Admin, UserType::Super}, "managing join tokens");
  if (seg.size() == 3 && r.method == "GET") {
    DbSession s(db_);
    json::array out;
    for (auto& row :
         s.query("SELECT name, grp, type, created_by, created_at FROM join_tokens ORDER BY name"))
      out.push_back(json::object{{"name", row.text(0)},
                                 {"group", row.text(1)},
                                 {"type", row.text(2)},
                                 {"created_by", row.text(3)},
                                 {"created_at", iso_time(row.integer(4))}});
    return json_response(200, json::object{{"join_tokens", out}});
  }
  if (seg.size() == 3 && r.method == "POST") {
    json::object body = parse_object(r, {"name", "group", "type", "key"});
    std::string name = *get_string(body, "name", true);
    require_name("the join token's name", name);
    std::string group = get_string(body, "group").value_or("");
    check_group(group);
    std::string type = get_string(body, "type").value_or("production");
    check_type(type);
    std::string key = *get_string(body, "key", true);
    check_key(key);
    std::string token = random_hex(32);
    DbSession s(db_);
    s.begin();
    if (s.one("SELECT 1 FROM join_tokens WHERE name = $1", {name}))
      throw ApiError{409, "a join token named " + name + " exists already"};
    s.query(
        "INSERT INTO join_tokens (name, token_hash, grp, type, key_sealed, created_by, "
        "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        {name, net::sha256_hex(token), group, type, sealer_.seal(key), c.username, now_ms()});
    audit(s, c, "join_token.create", name, json::object{{"group", group}, {"type", type}});
    s.commit();
    return json_response(
        201, json::object{{"name", name}, {"token", token}, {"group", group}, {"type", type}});
  }
  if (seg.size() == 4 && r.method == "DELETE") {
    DbSession s(db_);
    s.begin();
    if (!s.one("SELECT 1 FROM join_tokens WHERE name = $1", {seg[3]}))
      throw ApiError{404, "no join token named " + seg[3]};
    s.query("DELETE FROM join_tokens WHERE name = $1", {seg[3]});
    audit(s, c, "join_token.delete", seg[3]);
    s.commit();
    return no_content();
  }
  throw ApiError{405,
                 r.method + " is not allowed on " + r.path,
                 {},
                 {{"Allow", seg.size() == 3 ? "GET, POST" : "DELETE"}}};
}

Response Console::announce(const Request& r) {
  std::string auth = r.header("authorization");
  constexpr std::string_view kScheme = "CAP-Join ";
  if (!auth.starts_with(kScheme))
    throw ApiError{401,
                   "an announcement carries Authorization: CAP-Join TOKEN (CAP_JOIN_TOKEN)",
                   {},
                   {{"WWW-Authenticate", "CAP-Join"}}};
  std::string token = auth.substr(kScheme.size());
  std::optional<DbRow> jt;
  {
    DbSession s(db_);
    jt = s.one("SELECT name, grp, type, key_sealed FROM join_tokens WHERE token_hash = $1",
               {net::sha256_hex(token)});
  }
  if (!jt) {
    spdlog::warn("announcement from {} refused: unknown join token", r.remote);
    throw ApiError{401, "the join token is not valid", {}, {{"WWW-Authenticate", "CAP-Join"}}};
  }
  json::object body = parse_object(r, {"id", "host", "port", "web_port", "version", "tls"});
  AgentDef a;
  a.id = *get_string(body, "id", true);
  require_name("the agent id", a.id);
  if (a.id == "announce") throw ApiError{400, "\"announce\" is reserved: choose another id"};
  a.host = get_string(body, "host").value_or(r.remote);
  check_host(a.host);
  a.port = int(*get_int(body, "port", 1, 65535, true));
  if (auto w = get_int(body, "web_port", 1, 65535)) a.web_port = int(*w);
  a.tls = get_bool(body, "tls").value_or(false);
  a.group = jt->text(1);
  a.type = jt->text(2);
  a.key = sealer_.open(jt->text(3)).value_or("");
  a.registered = "announced";
  a.created_at = now_ms();
  // The console only keeps an agent it can command: check it answers with the key first.
  AgentStatus st = check_agent(a);
  if (!st.online) {
    std::lock_guard lock(status_mu_);
    status_.erase(a.id);
    throw ApiError{422,
                   "the console cannot reach the agent " + a.id + " at " + a.host + ":" +
                       std::to_string(a.port) + " with the join token's key",
                   {st.error}};
  }
  auto& so = st.status.as_object();
  if (!so.contains("name") || !so.at("name").is_string() || so.at("name").as_string() != a.id)
    throw ApiError{422, "the agent at " + a.host + ":" + std::to_string(a.port) +
                            " does not call itself " + a.id};
  Caller who;
  who.username = "(join token " + jt->text(0) + ")";
  who.remote = r.remote;
  DbSession s(db_);
  s.begin();
  bool exists = s.one("SELECT 1 FROM agents WHERE id = $1", {a.id}).has_value();
  if (exists) {
    s.query(
        "UPDATE agents SET host = $1, port = $2, web_port = $3, key_sealed = $4, type = $5, "
        "grp = $6, registered = 'announced', tls = $7 WHERE id = $8",
        {a.host, int64_t(a.port), a.web_port ? DbParam(int64_t(*a.web_port)) : DbParam(nullptr),
         sealer_.seal(a.key), a.type, a.group, int64_t(a.tls), a.id});
  } else {
    s.query(
        "INSERT INTO agents (id, host, port, web_port, key_sealed, type, grp, registered, "
        "created_at, tls) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        {a.id, a.host, int64_t(a.port),
         a.web_port ? DbParam(int64_t(*a.web_port)) : DbParam(nullptr), sealer_.seal(a.key), a.type,
         a.group, a.registered, a.created_at, int64_t(a.tls)});
  }
  audit(s, who, "agent.announce", a.id,
        json::object{{"host", a.host}, {"port", a.port}, {"group", a.group}, {"updated", exists}});
  s.commit();
  spdlog::info("agent {} announced itself from {} ({}:{}, group {})", a.id, r.remote, a.host,
               a.port, a.group.empty() ? "none" : a.group);
  return json_response(200, json::object{{"id", a.id},
                                         {"registered", exists ? "updated" : "created"},
                                         {"group", a.group},
                                         {"type", a.type}});
}

}  // namespace cap::console

// Users, sessions, API tokens, roles and rights, login throttling, the audit log.
//
// API clients get a Bearer token from POST /api/v1/auth/token; the UI logs in with
// POST /api/v1/auth/login, which sets an HttpOnly, SameSite=Strict session cookie (Secure
// behind TLS) and answers a CSRF token that every change made through the cookie must carry
// in X-CSRF-Token. Only SHA-256 hashes of tokens are stored.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>

#include "console/console.h"
#include "net/signing.h"

namespace cap::console {

namespace {

constexpr size_t kMinPassword = 10;

std::string cookie_value(const std::string& header, std::string_view name) {
  std::string_view h = header;
  while (!h.empty()) {
    size_t semi = h.find(';');
    std::string_view part = h.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.starts_with(name) && part.size() > name.size() && part[name.size()] == '=')
      return std::string(part.substr(name.size() + 1));
    if (semi == std::string_view::npos) break;
    h.remove_prefix(semi + 1);
  }
  return {};
}

bool secure_request(const Request& r) {
  return r.secure || r.header("x-forwarded-proto") == "https";
}

std::string session_cookie(const Request& r, const std::string& value, int64_t max_age) {
  std::string c = "cap_session=" + value +
                  "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age);
  if (secure_request(r)) c += "; Secure";
  return c;
}

std::vector<Right> parse_rights(const json::value& v) {
  std::vector<Right> out;
  if (!v.is_array()) return out;
  for (auto& e : v.as_array()) {
    if (!e.is_object()) continue;
    Right r;
    auto& o = e.as_object();
    if (auto* s = o.if_contains("resource"); s && s->is_string()) r.resource = s->as_string();
    if (auto* s = o.if_contains("match"); s && s->is_string()) r.match = s->as_string();
    if (auto* a = o.if_contains("actions"); a && a->is_array())
      for (auto& x : a->as_array())
        if (x.is_string()) r.actions.emplace_back(x.as_string());
    out.push_back(std::move(r));
  }
  return out;
}

/// Checks a role's rights as sent by a client: 400 naming each problem.
json::array checked_rights(const json::object& body) {
  auto it = body.find("rights");
  if (it == body.end()) return {};
  if (!it->value().is_array()) throw ApiError{400, "\"rights\" must be a list"};
  std::vector<std::string> problems;
  json::array out;
  size_t i = 0;
  for (auto& e : it->value().as_array()) {
    std::string where = "rights[" + std::to_string(i++) + "]";
    if (!e.is_object()) {
      problems.push_back(where + ": must be {\"resource\", \"match\", \"actions\"}");
      continue;
    }
    auto& o = e.as_object();
    for (auto& [k, v] : o)
      if (k != "resource" && k != "match" && k != "actions")
        problems.push_back(where + ": unknown field \"" + std::string(k) + "\"");
    auto* res = o.if_contains("resource");
    auto* match = o.if_contains("match");
    auto* actions = o.if_contains("actions");
    std::string resource = res && res->is_string() ? std::string(res->as_string()) : "";
    if (resource != "agent" && resource != "repository") {
      problems.push_back(where + ": \"resource\" must be \"agent\" or \"repository\"");
      continue;
    }
    if (!match || !match->is_string() || match->as_string().empty())
      problems.push_back(where + ": \"match\" must be \"*\", an id" +
                         std::string(resource == "agent" ? " or \"group:NAME\"" : ""));
    if (!actions || !actions->is_array() || actions->as_array().empty()) {
      problems.push_back(where + ": \"actions\" must be a non-empty list");
      continue;
    }
    for (auto& a : actions->as_array()) {
      std::string act = a.is_string() ? std::string(a.as_string()) : "";
      bool ok = resource == "agent" ? (act == "read" || act == "deploy" || act == "operate")
                                    : (act == "read" || act == "write");
      if (!ok)
        problems.push_back(where + ": action \"" + act + "\" is not one of " +
                           (resource == "agent" ? "read, deploy, operate" : "read, write"));
    }
    out.push_back(e);
  }
  if (!problems.empty()) throw ApiError{400, "the rights are not valid", problems};
  return out;
}

const std::string& dummy_hash() {
  static const std::string h = hash_password(random_hex(16));
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Authentication

Caller Console::authenticate(const Request& r) {
  std::string auth = r.header("authorization");
  std::string token, kind;
  if (auth.size() > 7 && (auth.starts_with("Bearer ") || auth.starts_with("bearer "))) {
    token = auth.substr(7);
    kind = "token";
  } else if (std::string c = cookie_value(r.header("cookie"), "cap_session"); !c.empty()) {
    token = c;
    kind = "session";
  }
  if (token.empty())
    throw ApiError{401,
                   "authentication required",
                   {"send Authorization: Bearer TOKEN (POST /api/v1/auth/token), or log in "
                    "(POST /api/v1/auth/login)"},
                   {{"WWW-Authenticate", "Bearer"}}};
  DbSession s(db_);
  auto row = s.one(
      "SELECT t.user_id, t.csrf, t.expires_at, u.username, u.type, u.disabled FROM auth_tokens t "
      "JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 AND t.kind = $2",
      {net::sha256_hex(token), kind});
  if (!row)
    throw ApiError{401,
                   kind == "token" ? "the token is not valid" : "the session is not valid",
                   {"log in again"},
                   {{"WWW-Authenticate", "Bearer"}}};
  if (row->integer(2) <= now_ms()) {
    s.query("DELETE FROM auth_tokens WHERE token_hash = $1", {net::sha256_hex(token)});
    throw ApiError{401,
                   kind == "token" ? "the token has expired" : "the session has expired",
                   {"log in again"},
                   {{"WWW-Authenticate", "Bearer"}}};
  }
  if (row->integer(5)) throw ApiError{401, "the user is disabled"};
  Caller c;
  c.id = row->integer(0);
  c.username = row->text(3);
  c.type = parse_user_type(row->text(4)).value_or(UserType::User);
  c.session = kind == "session";
  c.remote = r.remote;
  if (c.session && r.method != "GET" && r.method != "HEAD") {
    // The browser sends the cookie on its own; only the page that logged in knows the CSRF
    // token.
    std::string sent = r.header("x-csrf-token");
    if (sent.empty())
      throw ApiError{403,
                     "the X-CSRF-Token header is missing",
                     {"changes made through the session cookie must carry the csrf_token from "
                      "the login answer (also in GET /api/v1/auth/me)"}};
    if (!net::constant_time_equal(sent, row->text(1)))
      throw ApiError{403, "the X-CSRF-Token header does not match the session"};
  }
  for (auto& rr : s.query("SELECT r.rights FROM user_roles ur JOIN roles r ON r.name = ur.role "
                          "WHERE ur.user_id = $1",
                          {c.id})) {
    boost::system::error_code ec;
    auto v = json::parse(rr.text(0), ec);
    if (!ec)
      for (auto& right : parse_rights(v)) c.rights.push_back(std::move(right));
  }
  return c;
}

Response Console::login(const Request& r, bool cookie) {
  json::object body = parse_object(r, {"username", "password"});
  std::string username = *get_string(body, "username", true);
  std::string password = *get_string(body, "password", true);
  std::string throttle_key = username + "|" + r.remote;
  int64_t now = now_ms();
  {
    std::lock_guard lock(login_mu_);
    auto& a = login_attempts_[throttle_key];
    if (a.locked_until > now) {
      int64_t wait = (a.locked_until - now + 999) / 1000;
      throw ApiError{429,
                     "too many failed logins: try again later",
                     {"wait " + std::to_string(wait) + " s"},
                     {{"Retry-After", std::to_string(wait)}}};
    }
  }
  std::optional<DbRow> user;
  {
    DbSession s(db_);
    user = s.one("SELECT id, password_hash, type, disabled FROM users WHERE username = $1",
                 {username});
  }
  // Unknown users cost a hash too, so the answer's timing does not tell who exists.
  bool ok =
      verify_password(user ? user->text(1) : dummy_hash(), password) && user && !user->integer(3);
  Caller who;
  who.username = username;
  who.remote = r.remote;
  if (!ok) {
    {
      std::lock_guard lock(login_mu_);
      auto& a = login_attempts_[throttle_key];
      if (++a.failures >= settings_.login_attempts) {
        a.failures = 0;
        a.locked_until = now + settings_.login_lockout_s * 1000;
      }
    }
    DbSession s(db_);
    audit(s, who, "auth.login_failed", username);
    spdlog::warn("failed login for {} from {}", username, r.remote);
    throw ApiError{401, "wrong user name or password"};
  }
  {
    std::lock_guard lock(login_mu_);
    login_attempts_.erase(throttle_key);
  }
  std::string token = random_hex(32);
  std::string csrf = cookie ? random_hex(24) : std::string();
  int64_t ttl_s = cookie ? settings_.session_ttl_s : settings_.token_ttl_s;
  int64_t expires = now + ttl_s * 1000;
  who.id = user->integer(0);
  who.type = parse_user_type(user->text(2)).value_or(UserType::User);
  {
    DbSession s(db_);
    s.begin();
    s.query("DELETE FROM auth_tokens WHERE expires_at <= $1", {now});
    s.query(
        "INSERT INTO auth_tokens (token_hash, user_id, kind, csrf, created_at, expires_at) VALUES "
        "($1, $2, $3, $4, $5, $6)",
        {net::sha256_hex(token), who.id, std::string(cookie ? "session" : "token"), csrf, now,
         expires});
    audit(s, who, cookie ? "auth.login" : "auth.token", username);
    s.commit();
  }
  json::object user_json{{"username", username}, {"type", type_name(who.type)}};
  if (!cookie)
    return json_response(
        200,
        json::object{{"token", token}, {"expires_at", iso_time(expires)}, {"user", user_json}});
  Response out = json_response(
      200,
      json::object{{"csrf_token", csrf}, {"expires_at", iso_time(expires)}, {"user", user_json}});
  out.headers.emplace_back("Set-Cookie", session_cookie(r, token, ttl_s));
  return out;
}

Response Console::logout(const Request& r) {
  std::string auth = r.header("authorization");
  std::string token = auth.starts_with("Bearer ") ? auth.substr(7)
                                                  : cookie_value(r.header("cookie"), "cap_session");
  DbSession s(db_);
  s.query("DELETE FROM auth_tokens WHERE token_hash = $1", {net::sha256_hex(token)});
  Response out;
  out.status = 204;
  out.content_type.clear();
  out.headers.emplace_back("Set-Cookie", session_cookie(r, "", 0));
  return out;
}

Response Console::me(const Caller& c, const Request& r) {
  json::object o{{"username", c.username}, {"type", type_name(c.type)}};
  json::array rights;
  for (auto& right : c.rights) {
    json::array acts;
    for (auto& a : right.actions) acts.emplace_back(a);
    rights.push_back(
        json::object{{"resource", right.resource}, {"match", right.match}, {"actions", acts}});
  }
  o["rights"] = rights;
  if (c.session) {
    DbSession s(db_);
    auto row = s.one("SELECT csrf, expires_at FROM auth_tokens WHERE token_hash = $1",
                     {net::sha256_hex(cookie_value(r.header("cookie"), "cap_session"))});
    if (row) {
      o["csrf_token"] = row->text(0);
      o["expires_at"] = iso_time(row->integer(1));
    }
  }
  return json_response(200, o);
}

Response Console::change_password(const Caller& c, const Request& r) {
  json::object body = parse_object(r, {"current_password", "new_password"});
  std::string current = *get_string(body, "current_password", true);
  std::string next = *get_string(body, "new_password", true);
  if (next.size() < kMinPassword)
    throw ApiError{400,
                   "the new password is too short",
                   {"use at least " + std::to_string(kMinPassword) + " characters"}};
  std::string hash;
  {
    DbSession s(db_);
    hash = s.one("SELECT password_hash FROM users WHERE id = $1", {c.id})->text(0);
  }
  if (!verify_password(hash, current)) throw ApiError{403, "the current password is wrong"};
  std::string new_hash = hash_password(next);
  DbSession s(db_);
  s.begin();
  s.query("UPDATE users SET password_hash = $1 WHERE id = $2", {new_hash, c.id});
  audit(s, c, "user.password", c.username);
  s.commit();
  return json_response(200, json::object{{"changed", true}});
}

void Console::ensure_admin() {
  {
    DbSession s(db_);
    if (s.one("SELECT COUNT(*) FROM users")->integer(0) > 0) {
      if (!settings_.admin_password.empty())
        spdlog::info("CAP_ADMIN_PASSWORD is ignored: the console already has users");
      return;
    }
  }
  bool generated = settings_.admin_password.empty();
  std::string password = generated ? random_password() : settings_.admin_password;
  if (!generated && password.size() < kMinPassword)
    spdlog::warn("CAP_ADMIN_PASSWORD is shorter than {} characters", kMinPassword);
  std::string hash = hash_password(password);
  DbSession s(db_);
  s.begin();
  s.query(
      "INSERT INTO users (username, password_hash, type, disabled, created_at) VALUES "
      "('admin', $1, 'admin', 0, $2)",
      {hash, now_ms()});
  Caller system;
  system.username = "(console)";
  system.remote = "";
  audit(s, system, "user.create", "admin", json::object{{"type", "admin"}});
  s.commit();
  if (generated) {
    // Printed once, on stdout only; never written to the log files or the database.
    std::cout << "cap-console: first start: the user \"admin\" has the password " << password
              << "\ncap-console: it is shown only this once; change it after logging in"
              << std::endl;
  } else {
    spdlog::info(
        "first start: created the user \"admin\" with the password from CAP_ADMIN_PASSWORD");
  }
}

// ---------------------------------------------------------------------------------------
// Rights

void Console::require_types(const Caller& c, std::initializer_list<UserType> types,
                            std::string_view what) const {
  for (UserType t : types)
    if (c.type == t) return;
  std::string list;
  for (UserType t : types) list += (list.empty() ? "" : ", ") + std::string(type_name(t));
  throw ApiError{403,
                 "not allowed: " + std::string(what),
                 {"this needs a user of type " + list + "; " + c.username + " is " +
                  std::string(type_name(c.type))}};
}

bool Console::may_agent(const Caller& c, const AgentDef& a, std::string_view action) const {
  if (c.type == UserType::Admin || c.type == UserType::Super) return true;
  if (c.type == UserType::Security && action == "read") return true;
  for (auto& r : c.rights) {
    if (r.resource != "agent") continue;
    if (r.match != "*" && r.match != a.id && r.match != "group:" + a.group) continue;
    if (std::find(r.actions.begin(), r.actions.end(), action) != r.actions.end()) return true;
  }
  return false;
}

bool Console::may_repository(const Caller& c, std::string_view repo,
                             std::string_view action) const {
  if (c.type == UserType::Admin || c.type == UserType::Super) return true;
  if (c.type == UserType::Security && action == "read") return true;
  for (auto& r : c.rights) {
    if (r.resource != "repository") continue;
    if (r.match != "*" && r.match != repo) continue;
    if (std::find(r.actions.begin(), r.actions.end(), action) != r.actions.end()) return true;
    if (action == "read" &&
        std::find(r.actions.begin(), r.actions.end(), "write") != r.actions.end())
      return true;
  }
  return false;
}

void Console::require_agent(const Caller& c, const AgentDef& a, std::string_view action) const {
  if (!may_agent(c, a, action))
    throw ApiError{
        403,
        "not allowed: " + std::string(action) + " on agent " + a.id,
        {c.username + " has no role granting \"" + std::string(action) + "\" on this agent"}};
}

void Console::require_repository(const Caller& c, std::string_view repo,
                                 std::string_view action) const {
  if (!may_repository(c, repo, action))
    throw ApiError{
        403,
        "not allowed: " + std::string(action) + " on repository " + std::string(repo),
        {c.username + " has no role granting \"" + std::string(action) + "\" on this repository"}};
}

// ---------------------------------------------------------------------------------------
// Audit

void Console::audit(DbSession& s, const Caller& c, std::string_view action, std::string_view target,
                    const json::value& details) {
  s.query(
      "INSERT INTO audit (at, username, remote, action, target, details) VALUES ($1, $2, $3, "
      "$4, $5, $6)",
      {now_ms(), c.username, c.remote, std::string(action), std::string(target),
       json::serialize(details)});
}

Response Console::audit_list(const Caller& c, const Request& r) {
  require_types(c, {UserType::Admin, UserType::Security}, "reading the audit log");
  int64_t limit = 100;
  if (auto l = r.param("limit")) {
    try {
      limit = std::stoll(*l);
    } catch (...) {
      limit = -1;
    }
    if (limit < 1 || limit > 1000) throw ApiError{400, "limit must be a number from 1 to 1000"};
  }
  DbSession s(db_);
  json::array out;
  for (auto& row : s.query("SELECT id, at, username, remote, action, target, details FROM audit "
                           "ORDER BY id DESC LIMIT $1",
                           {limit})) {
    boost::system::error_code ec;
    json::value details = json::parse(row.text(6), ec);
    out.push_back(json::object{{"id", row.integer(0)},
                               {"at", iso_time(row.integer(1))},
                               {"user", row.text(2)},
                               {"remote", row.text(3)},
                               {"action", row.text(4)},
                               {"target", row.text(5)},
                               {"details", ec ? json::value() : details}});
  }
  return json_response(200, json::object{{"entries", out}});
}

// ---------------------------------------------------------------------------------------
// Users

namespace {

json::object user_json(DbSession& s, const DbRow& row) {
  json::array roles;
  for (auto& rr :
       s.query("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role", {row.integer(0)}))
    roles.emplace_back(rr.text(0));
  return json::object{{"username", row.text(1)},
                      {"type", row.text(2)},
                      {"disabled", row.integer(3) != 0},
                      {"roles", roles},
                      {"created_at", iso_time(row.integer(4))}};
}

void check_roles_exist(DbSession& s, const std::vector<std::string>& roles) {
  std::vector<std::string> missing;
  for (auto& r : roles)
    if (!s.one("SELECT 1 FROM roles WHERE name = $1", {r}))
      missing.push_back("no role \"" + r + "\"");
  if (!missing.empty()) throw ApiError{400, "unknown roles", missing};
}

}  // namespace

Response Console::users(const Caller& c, const Request& r, const std::vector<std::string>& seg) {
  require_types(c, {UserType::Admin, UserType::Security}, "managing users");
  constexpr const char* kSelect = "SELECT id, username, type, disabled, created_at FROM users";
  if (seg.size() == 3) {
    if (r.method == "GET") {
      DbSession s(db_);
      json::array out;
      for (auto& row : s.query(std::string(kSelect) + " ORDER BY username"))
        out.push_back(user_json(s, row));
      return json_response(200, json::object{{"users", out}});
    }
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, POST"}}};
    json::object body = parse_object(r, {"username", "password", "type", "roles", "disabled"});
    std::string username = *get_string(body, "username", true);
    require_name("the user name", username);
    std::string password = *get_string(body, "password", true);
    if (password.size() < kMinPassword)
      throw ApiError{400,
                     "the password is too short",
                     {"use at least " + std::to_string(kMinPassword) + " characters"}};
    std::string type = get_string(body, "type").value_or("user");
    if (!parse_user_type(type))
      throw ApiError{400, "\"type\" must be one of admin, super, security, user"};
    if (type == "admin" && c.type != UserType::Admin)
      throw ApiError{403, "not allowed: only an admin creates admins"};
    auto roles = get_strings(body, "roles").value_or(std::vector<std::string>{});
    std::string hash = hash_password(password);
    DbSession s(db_);
    s.begin();
    check_roles_exist(s, roles);
    if (s.one("SELECT 1 FROM users WHERE username = $1", {username}))
      throw ApiError{409, "a user named " + username + " exists already"};
    auto id = s.one(
                   "INSERT INTO users (username, password_hash, type, disabled, created_at) "
                   "VALUES ($1, $2, $3, 0, $4) RETURNING id",
                   {username, hash, type, now_ms()})
                  ->integer(0);
    for (auto& role : roles)
      s.query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)", {id, role});
    json::array rj;
    for (auto& x : roles) rj.emplace_back(x);
    audit(s, c, "user.create", username, json::object{{"type", type}, {"roles", rj}});
    auto row = s.one(std::string(kSelect) + " WHERE id = $1", {id});
    json::object out = user_json(s, *row);
    s.commit();
    return json_response(201, out);
  }
  if (seg.size() != 4) throw ApiError{404, "no such API endpoint: " + r.path};
  const std::string& name = seg[3];
  if (r.method == "GET") {
    DbSession s(db_);
    auto row = s.one(std::string(kSelect) + " WHERE username = $1", {name});
    if (!row) throw ApiError{404, "no user named " + name};
    return json_response(200, user_json(s, *row));
  }
  if (r.method == "PUT") {
    json::object body = parse_object(r, {"password", "type", "roles", "disabled"});
    auto password = get_string(body, "password");
    if (password && password->size() < kMinPassword)
      throw ApiError{400,
                     "the password is too short",
                     {"use at least " + std::to_string(kMinPassword) + " characters"}};
    auto type = get_string(body, "type");
    if (type && !parse_user_type(*type))
      throw ApiError{400, "\"type\" must be one of admin, super, security, user"};
    auto roles = get_strings(body, "roles");
    std::optional<bool> disabled;
    if (auto* d = body.if_contains("disabled"); d && !d->is_null()) {
      if (!d->is_bool()) throw ApiError{400, "\"disabled\" must be true or false"};
      disabled = d->as_bool();
    }
    std::string hash = password ? hash_password(*password) : std::string();
    DbSession s(db_);
    s.begin();
    auto row = s.one(std::string(kSelect) + " WHERE username = $1", {name});
    if (!row) throw ApiError{404, "no user named " + name};
    int64_t id = row->integer(0);
    bool target_admin = row->text(2) == "admin";
    if ((target_admin || (type && *type == "admin")) && c.type != UserType::Admin)
      throw ApiError{403, "not allowed: only an admin changes admins"};
    if (target_admin && ((type && *type != "admin") || (disabled && *disabled)) &&
        s.one("SELECT COUNT(*) FROM users WHERE type = 'admin' AND disabled = 0")->integer(0) <= 1)
      throw ApiError{409, "the last admin cannot be demoted or disabled"};
    if (roles) check_roles_exist(s, *roles);
    json::object changed;
    if (password) {
      s.query("UPDATE users SET password_hash = $1 WHERE id = $2", {hash, id});
      changed["password"] = "changed";
    }
    if (type) {
      s.query("UPDATE users SET type = $1 WHERE id = $2", {*type, id});
      changed["type"] = *type;
    }
    if (disabled) {
      s.query("UPDATE users SET disabled = $1 WHERE id = $2", {int64_t(*disabled), id});
      changed["disabled"] = *disabled;
    }
    if (roles) {
      s.query("DELETE FROM user_roles WHERE user_id = $1", {id});
      json::array rj;
      for (auto& role : *roles) {
        s.query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)", {id, role});
        rj.emplace_back(role);
      }
      changed["roles"] = rj;
    }
    if (password || (disabled && *disabled))
      s.query("DELETE FROM auth_tokens WHERE user_id = $1", {id});
    audit(s, c, "user.update", name, changed);
    json::object out = user_json(s, *s.one(std::string(kSelect) + " WHERE id = $1", {id}));
    s.commit();
    return json_response(200, out);
  }
  if (r.method == "DELETE") {
    if (name == c.username) throw ApiError{409, "you cannot delete yourself"};
    DbSession s(db_);
    s.begin();
    auto row = s.one(std::string(kSelect) + " WHERE username = $1", {name});
    if (!row) throw ApiError{404, "no user named " + name};
    if (row->text(2) == "admin" && c.type != UserType::Admin)
      throw ApiError{403, "not allowed: only an admin deletes admins"};
    int64_t id = row->integer(0);
    s.query("DELETE FROM user_roles WHERE user_id = $1", {id});
    s.query("DELETE FROM auth_tokens WHERE user_id = $1", {id});
    s.query("DELETE FROM users WHERE id = $1", {id});
    audit(s, c, "user.delete", name);
    s.commit();
    return no_content();
  }
  throw ApiError{
      405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, PUT, DELETE"}}};
}

// ---------------------------------------------------------------------------------------
// Roles

Response Console::roles(const Caller& c, const Request& r, const std::vector<std::string>& seg) {
  auto role_json = [](const DbRow& row) {
    boost::system::error_code ec;
    json::value rights = json::parse(row.text(2), ec);
    return json::object{{"name", row.text(0)},
                        {"description", row.text(1)},
                        {"rights", ec ? json::array() : rights}};
  };
  if (r.method == "GET") {
    require_types(c, {UserType::Admin, UserType::Security, UserType::Super}, "reading roles");
  } else {
    require_types(c, {UserType::Admin, UserType::Security}, "managing roles");
  }
  if (seg.size() == 3) {
    if (r.method == "GET") {
      DbSession s(db_);
      json::array out;
      for (auto& row : s.query("SELECT name, description, rights FROM roles ORDER BY name"))
        out.push_back(role_json(row));
      return json_response(200, json::object{{"roles", out}});
    }
    if (r.method != "POST")
      throw ApiError{405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, POST"}}};
    json::object body = parse_object(r, {"name", "description", "rights"});
    std::string name = *get_string(body, "name", true);
    require_name("the role name", name);
    std::string description = get_string(body, "description").value_or("");
    json::array rights = checked_rights(body);
    DbSession s(db_);
    s.begin();
    if (s.one("SELECT 1 FROM roles WHERE name = $1", {name}))
      throw ApiError{409, "a role named " + name + " exists already"};
    s.query("INSERT INTO roles (name, description, rights, created_at) VALUES ($1, $2, $3, $4)",
            {name, description, json::serialize(rights), now_ms()});
    audit(s, c, "role.create", name, json::object{{"rights", rights}});
    s.commit();
    return json_response(
        201, json::object{{"name", name}, {"description", description}, {"rights", rights}});
  }
  if (seg.size() != 4) throw ApiError{404, "no such API endpoint: " + r.path};
  const std::string& name = seg[3];
  DbSession s(db_);
  if (r.method == "GET") {
    auto row = s.one("SELECT name, description, rights FROM roles WHERE name = $1", {name});
    if (!row) throw ApiError{404, "no role named " + name};
    return json_response(200, role_json(*row));
  }
  if (r.method == "PUT") {
    json::object body = parse_object(r, {"description", "rights"});
    auto description = get_string(body, "description");
    bool has_rights = body.contains("rights");
    json::array rights = checked_rights(body);
    s.begin();
    if (!s.one("SELECT 1 FROM roles WHERE name = $1", {name}))
      throw ApiError{404, "no role named " + name};
    if (description)
      s.query("UPDATE roles SET description = $1 WHERE name = $2", {*description, name});
    if (has_rights)
      s.query("UPDATE roles SET rights = $1 WHERE name = $2", {json::serialize(rights), name});
    audit(s, c, "role.update", name, json::object{{"rights", rights}});
    auto row = s.one("SELECT name, description, rights FROM roles WHERE name = $1", {name});
    s.commit();
    return json_response(200, role_json(*row));
  }
  if (r.method == "DELETE") {
    s.begin();
    if (!s.one("SELECT 1 FROM roles WHERE name = $1", {name}))
      throw ApiError{404, "no role named " + name};
    std::vector<std::string> holders;
    for (auto& row : s.query("SELECT u.username FROM user_roles ur JOIN users u ON u.id = "
                             "ur.user_id WHERE ur.role = $1 ORDER BY u.username",
                             {name}))
      holders.push_back(row.text(0));
    if (!holders.empty())
      throw ApiError{409, "the role is still given to users: take it from them first", holders};
    s.query("DELETE FROM roles WHERE name = $1", {name});
    audit(s, c, "role.delete", name);
    s.commit();
    return no_content();
  }
  throw ApiError{
      405, r.method + " is not allowed on " + r.path, {}, {{"Allow", "GET, PUT, DELETE"}}};
}

}  // namespace cap::console

#include "console/console.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <ctime>
#include <fstream>

namespace cap::console {

// ---------------------------------------------------------------------------------------
// Requests, answers, JSON fields

std::string Request::header(std::string_view name) const {
  for (auto& [k, v] : headers)
    if (k == name) return v;
  return {};
}

namespace {

std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(uint8_t(s[i + 1])) &&
               std::isxdigit(uint8_t(s[i + 2]))) {
      out.push_back(char(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> Request::param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    size_t eq = part.find('=');
    if (url_decode(part.substr(0, eq)) == name)
      return eq == std::string_view::npos ? std::string() : url_decode(part.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

Response json_response(int status, const json::value& v) {
  Response r;
  r.status = status;
  r.body = json::serialize(v);
  r.body.push_back('\n');
  return r;
}

Response no_content() {
  Response out;
  out.status = 204;
  out.content_type.clear();
  return out;
}

Response error_response(const ApiError& e) {
  json::array d;
  for (auto& s : e.details) d.emplace_back(s);
  Response r = json_response(e.status, json::object{{"error", e.error}, {"details", d}});
  r.headers = e.headers;
  return r;
}

json::object parse_object(const Request& r, std::initializer_list<std::string_view> allowed) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec) throw ApiError{400, "the body is not valid JSON", {ec.message()}};
  if (!v.is_object()) throw ApiError{400, "the body must be a JSON object"};
  std::vector<std::string> unknown;
  for (auto& [k, val] : v.as_object()) {
    bool ok = false;
    for (auto a : allowed) ok = ok || a == std::string_view(k);
    if (!ok) unknown.push_back("unknown field \"" + std::string(k) + "\"");
  }
  if (!unknown.empty()) {
    std::string known;
    for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
    unknown.push_back("known fields: " + known);
    throw ApiError{400, "the body has fields this endpoint does not know", unknown};
  }
  return std::move(v.as_object());
}

std::optional<std::string> get_string(const json::object& o, std::string_view name, bool required) {
  auto it = o.find(name);
  if (it == o.end() || it->value().is_null()) {
    if (required)
      throw ApiError{400, "\"" + std::string(name) + "\" is required", {"a string is expected"}};
    return std::nullopt;
  }
  if (!it->value().is_string())
    throw ApiError{400, "\"" + std::string(name) + "\" must be a string"};
  return std::string(it->value().as_string());
}

std::optional<int64_t> get_int(const json::object& o, std::string_view name, int64_t min,
                               int64_t max, bool required) {
  auto it = o.find(name);
  std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  if (it == o.end() || it->value().is_null()) {
    if (required) throw ApiError{400, "\"" + std::string(name) + "\" is required", {range}};
    return std::nullopt;
  }
  const json::value& v = it->value();
  int64_t n = 0;
  if (v.is_int64())
    n = v.as_int64();
  else if (v.is_uint64() && v.as_uint64() < uint64_t(INT64_MAX))
    n = int64_t(v.as_uint64());
  else
    throw ApiError{400, "\"" + std::string(name) + "\" must be " + range};
  if (n < min || n > max) throw ApiError{400, "\"" + std::string(name) + "\" must be " + range};
  return n;
}

std::optional<bool> get_bool(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || it->value().is_null()) return std::nullopt;
  if (!it->value().is_bool())
    throw ApiError{400, "\"" + std::string(name) + "\" must be true or false"};
  return it->value().as_bool();
}

std::optional<std::vector<std::string>> get_strings(const json::object& o, std::string_view name,
                                                    bool required) {
  auto it = o.find(name);
  if (it == o.end() || it->value().is_null()) {
    if (required) throw ApiError{400, "\"" + std::string(name) + "\" is required"};
    return std::nullopt;
  }
  if (!it->value().is_array())
    throw ApiError{400, "\"" + std::string(name) + "\" must be a list of strings"};
  std::vector<std::string> out;
  for (auto& v : it->value().as_array()) {
    if (!v.is_string())
      throw ApiError{400, "\"" + std::string(name) + "\" must be a list of strings"};
    out.emplace_back(v.as_string());
  }
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string iso_time(int64_t ms) {
  std::time_t t = std::time_t(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
  return buf;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 100 || name[0] == '.') return false;
  for (char c : name)
    if (!std::isalnum(uint8_t(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

void require_name(std::string_view what, std::string_view name) {
  if (!valid_name(name))
    throw ApiError{400,
                   std::string(what) + " is not a valid name",
                   {"use 1 to 100 letters, digits, '.', '_' or '-', not starting with '.'"}};
}

std::string_view type_name(UserType t) {
  switch (t) {
    case UserType::Admin:
      return "admin";
    case UserType::Super:
      return "super";
    case UserType::Security:
      return "security";
    case UserType::User:
      return "user";
  }
  return "user";
}

std::optional<UserType> parse_user_type(std::string_view s) {
  if (s == "admin") return UserType::Admin;
  if (s == "super") return UserType::Super;
  if (s == "security") return UserType::Security;
  if (s == "user") return UserType::User;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// Settings

namespace {

bool env_int(const char* name, int64_t min, int64_t max, int64_t* out, std::string* error) {
  const char* v = std::getenv(name);
  if (!v || !*v) return true;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v, v + std::strlen(v), n);
  if (ec != std::errc() || *p || n < min || n > max) {
    *error = std::string(name) + " must be a whole number from " + std::to_string(min) + " to " +
             std::to_string(max);
    return false;
  }
  *out = n;
  return true;
}

std::string env_str(const char* name, std::string def) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : def;
}

}  // namespace

bool settings_from_env(Settings* s, std::string* error) {
  s->address = env_str("CAP_CONSOLE_ADDRESS", s->address);
  s->home = env_str("CAP_CONSOLE_HOME", s->home);
  s->db_url = env_str("CAP_CONSOLE_DB", "");
  s->admin_password = env_str("CAP_ADMIN_PASSWORD", "");
  s->ui_dir = env_str("CAP_CONSOLE_UI_DIR", "");
  s->tls_cert = env_str("CAP_CONSOLE_TLS_CERT", "");
  s->tls_key = env_str("CAP_CONSOLE_TLS_KEY", "");
  s->agent_ca_file = env_str("CAP_CONSOLE_AGENT_CA_FILE", "");
  int64_t port = s->port, workers = s->workers, poll = s->poll_ms, upload = s->max_upload_bytes,
          attempts = s->login_attempts, agent_timeout = s->agent_timeout_ms;
  if (!env_int("CAP_CONSOLE_PORT", 0, 65535, &port, error) ||
      !env_int("CAP_CONSOLE_WORKERS", 1, 256, &workers, error) ||
      !env_int("CAP_CONSOLE_POLL_MS", 100, 3600000, &poll, error) ||
      !env_int("CAP_CONSOLE_SESSION_TTL", 1, 90LL * 24 * 3600, &s->session_ttl_s, error) ||
      !env_int("CAP_CONSOLE_TOKEN_TTL", 1, 365LL * 24 * 3600, &s->token_ttl_s, error) ||
      !env_int("CAP_CONSOLE_MAX_UPLOAD_BYTES", 1024, 1LL << 32, &upload, error) ||
      !env_int("CAP_CONSOLE_LOGIN_ATTEMPTS", 1, 1000, &attempts, error) ||
      !env_int("CAP_CONSOLE_LOGIN_LOCKOUT", 1, 86400, &s->login_lockout_s, error) ||
      !env_int("CAP_CONSOLE_AGENT_TIMEOUT_MS", 100, 3600000, &agent_timeout, error))
    return false;
  s->port = uint16_t(port);
  s->workers = int(workers);
  s->poll_ms = int(poll);
  s->max_upload_bytes = size_t(upload);
  s->login_attempts = int(attempts);
  s->agent_timeout_ms = int(agent_timeout);
  if (s->tls_cert.empty() != s->tls_key.empty()) {
    *error = "set both CAP_CONSOLE_TLS_CERT and CAP_CONSOLE_TLS_KEY, or neither";
    return false;
  }
  return ecs_settings_from_env(&s->ecs, error);
}

// ---------------------------------------------------------------------------------------
// The console

Console::Console(Settings settings, Db& db, Sealer& sealer)
    : settings_(std::move(settings)),
      db_(db),
      sealer_(sealer),
      client_([] {
        net::ClientOptions o;
        o.threads = 1;
        o.connect_timeout = std::chrono::milliseconds(3000);
        o.max_response_bytes = 256u << 20;
        return o;
      }()),
      agent_client_tls_([this] {
        net::ClientOptions o;
        o.threads = 1;
        o.connect_timeout = std::chrono::milliseconds(3000);
        o.max_response_bytes = 256u << 20;
        o.ca_file = settings_.agent_ca_file;
        return o;
      }()) {
  register_base_rules(registry_);
}

Console::~Console() { stop_poller(); }

Response Console::handle(const Request& r) {
  std::vector<std::string> seg;
  std::string_view p = r.path;
  while (!p.empty()) {
    size_t slash = p.find('/');
    if (slash != 0) seg.emplace_back(url_decode(p.substr(0, slash)));
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  try {
    return route(r, seg);
  } catch (const ApiError& e) {
    return error_response(e);
  } catch (const DbError& e) {
    spdlog::error("{} {}: database: {}", r.method, r.path, e.what());
    return error_response({503, "the console's database failed", {"see the console's log"}});
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", r.method, r.path, e.what());
    return error_response({500, "internal error", {"see the console's log"}});
  }
}

Response Console::route(const Request& r, const std::vector<std::string>& seg) {
  if (!seg.empty() && seg[0] == "api") {
    if (seg.size() < 2 || seg[1] != "v1")
      throw ApiError{404, "no such API: the console's API is under /api/v1/"};
    return api(r, seg);
  }
  if (r.method != "GET" && r.method != "HEAD")
    throw ApiError{405, r.method + " is not allowed here", {}, {{"Allow", "GET, HEAD"}}};
  return serve_ui(r);
}

namespace {

void methods(const Request& r, std::initializer_list<std::string_view> allowed) {
  for (auto m : allowed)
    if (r.method == m) return;
  std::string list;
  for (auto m : allowed) list += (list.empty() ? "" : ", ") + std::string(m);
  throw ApiError{
      405, r.method + " is not allowed on " + r.path, {"allowed: " + list}, {{"Allow", list}}};
}

}  // namespace

Response Console::api(const Request& r, const std::vector<std::string>& seg) {
  std::string area = seg.size() > 2 ? seg[2] : "";
  if (area == "health" && seg.size() == 3) {
    methods(r, {"GET"});
    return json_response(
        200,
        json::object{{"status", "ok"},
                     {"version", CAP_VERSION},
                     {"database", db_.dialect() == Dialect::Postgres ? "postgresql" : "sqlite"},
                     {"schema_version", db_.schema_version()}});
  }
  if (area == "auth" && seg.size() == 4 && (seg[3] == "token" || seg[3] == "login")) {
    methods(r, {"POST"});
    return login(r, seg[3] == "login");
  }
  if (area == "agents" && seg.size() == 4 && seg[3] == "announce") {
    methods(r, {"POST"});
    return announce(r);
  }

  Caller c = authenticate(r);
  if (area == "auth" && seg.size() == 4) {
    if (seg[3] == "logout") return methods(r, {"POST"}), logout(r);
    if (seg[3] == "me") return methods(r, {"GET"}), me(c, r);
    if (seg[3] == "password") return methods(r, {"PUT"}), change_password(c, r);
  }
  if (area == "users") return users(c, r, seg);
  if (area == "roles") return roles(c, r, seg);
  if (area == "audit" && seg.size() == 3) return methods(r, {"GET"}), audit_list(c, r);
  if (area == "agents") return agents(c, r, seg);
  if (area == "join-tokens") return join_tokens(c, r, seg);
  if (area == "repositories") return repositories(c, r, seg);
  if (area == "rules" && seg.size() == 3) return methods(r, {"GET"}), rules_catalogue();
  if (area == "validate" && seg.size() == 3) return methods(r, {"POST"}), validate(r);
  if (area == "deployments") return deployments(c, r, seg);
  if (area == "vault") return vault(c, r, seg);
  if (area == "extensions") return extensions(c, r, seg);
  if (area == "ecs") return ecs_api(c, r, seg);
  throw ApiError{404, "no such API endpoint: " + r.path};
}

// ---------------------------------------------------------------------------------------
// The web UI: static files with an SPA fallback to index.html

namespace {

std::string_view content_type_for(std::string_view path) {
  static const std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".ico", "image/x-icon"},
      {".webp", "image/webp"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
  };
  size_t dot = path.rfind('.');
  if (dot != std::string_view::npos && path.find('/', dot) == std::string_view::npos) {
    std::string ext(path.substr(dot));
    for (char& ch : ext) ch = char(std::tolower(uint8_t(ch)));
    for (auto& [e, t] : kTypes)
      if (e == ext) return t;
  }
  return "application/octet-stream";
}

bool read_file(const std::string& path, std::string* out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

constexpr std::string_view kNoUiPage =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>CAP console</title></head>"
    "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
    "<h1>CAP console</h1><p>The console is running, but its web UI is not built.</p>"
    "<p>Build it with <code>npm ci &amp;&amp; npm run build</code> in <code>web/console</code>, "
    "or point <code>CAP_CONSOLE_UI_DIR</code> at a built UI, then "
    "reload this page.</p><p>The REST API is at <code>/api/v1/</code>; its description is "
    "<code>docs/api/console.yaml</code>.</p></body></html>\n";

}  // namespace

Response Console::serve_ui(const Request& r) {
  Response out;
  std::string index;
  if (settings_.ui_dir.empty() || !read_file(settings_.ui_dir + "/index.html", &index)) {
    out.content_type = "text/html; charset=utf-8";
    out.body = kNoUiPage;
    out.headers.emplace_back("Cache-Control", "no-cache");
    return out;
  }
  std::string rel = r.path;
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  bool bad = rel.find('\0') != std::string::npos;
  for (size_t at = 0; !bad && at <= rel.size();) {
    size_t slash = rel.find('/', at);
    std::string part = rel.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part == ".." || part == ".") bad = true;
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  if (bad) throw ApiError{404, "not found"};
  std::string body;
  if (!rel.empty() && read_file(settings_.ui_dir + "/" + rel, &body)) {
    out.content_type = std::string(content_type_for(rel));
    out.body = std::move(body);
    out.headers.emplace_back("Cache-Control", rel.starts_with("assets/")
                                                  ? "public, max-age=31536000, immutable"
                                                  : "no-cache");
    return out;
  }
  std::string last = rel.substr(rel.rfind('/') == std::string::npos ? 0 : rel.rfind('/') + 1);
  if (!rel.empty() && last.find('.') != std::string::npos)
    throw ApiError{404, "no such file: /" + rel};
  // A route of the single-page app: index.html, which routes in the browser.
  out.content_type = "text/html; charset=utf-8";
  out.body = std::move(index);
  out.headers.emplace_back("Cache-Control", "no-cache");
  return out;
}

}  // namespace cap::console

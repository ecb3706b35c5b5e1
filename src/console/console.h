// cap-console's REST API (DESIGN §7): the request and answer types, the errors, the caller
// and its rights, and the Console that routes requests to the parts (auth.cpp, agents.cpp,
// repositories.cpp, deploy.cpp, store.cpp).
//
// Every API request runs on a worker thread (never an event loop): handlers block on the
// database and on agents. A handler answers with a Response or throws ApiError, which
// becomes {"error": "...", "details": [...]} with its status.
#pragma once

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "console/crypto.h"
#include "console/db.h"
#include "console/ecs.h"
#include "net/http_client.h"

namespace cap::console {

namespace json = boost::json;

struct Settings {
  std::string address = "0.0.0.0";
  uint16_t port = 8000;
  std::string home = "./console-home";
  std::string db_url;  // empty: sqlite HOME/console.db
  std::string admin_password;
  std::string ui_dir;
  std::string tls_cert, tls_key;
  int workers = 8;
  int poll_ms = 5000;
  int64_t session_ttl_s = 8 * 3600;
  int64_t token_ttl_s = 30 * 24 * 3600;
  size_t max_upload_bytes = 64u << 20;
  int login_attempts = 5;  // failures in a row before a lockout
  int64_t login_lockout_s = 300;
  int agent_timeout_ms = 120000;  // one management call during a deploy
  std::string agent_ca_file;      // extra trust anchors for agents' TLS management ports
  EcsSettings ecs;                // following an ECS service (CAP_ECS_*, ecs.h)
};

/// Reads the settings from the environment (CAP_CONSOLE_*, CAP_ADMIN_PASSWORD). False with
/// `error` when a value is not valid.
bool settings_from_env(Settings* s, std::string* error);

struct Request {
  std::string method, target, path, query, body, remote;
  bool secure = false;                                       // arrived over TLS
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  /// The first header named `name` (lower case), or "".
  std::string header(std::string_view name) const;
  /// The decoded query parameter, or nullopt.
  std::optional<std::string> param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// An answer other than success: becomes {"error": error, "details": details}.
struct ApiError {
  ApiError(int s, std::string e, std::vector<std::string> d = {},
           std::vector<std::pair<std::string, std::string>> h = {})
      : status(s), error(std::move(e)), details(std::move(d)), headers(std::move(h)) {}
  int status;
  std::string error;
  std::vector<std::string> details;
  std::vector<std::pair<std::string, std::string>> headers;
};

Response json_response(int status, const json::value& v);
/// 204 with no body.
Response no_content();
Response error_response(const ApiError& e);
/// The body as a JSON object whose keys are all in `allowed`: 400 when it is not JSON, not
/// an object, or has other keys (named in the details).
json::object parse_object(const Request& r, std::initializer_list<std::string_view> allowed);
/// A string field: 400 when present with another type, or missing and `required`.
std::optional<std::string> get_string(const json::object& o, std::string_view name,
                                      bool required = false);
/// An integer field in [min, max]: 400 otherwise.
std::optional<int64_t> get_int(const json::object& o, std::string_view name, int64_t min,
                               int64_t max, bool required = false);
/// A boolean field: 400 when present with another type.
std::optional<bool> get_bool(const json::object& o, std::string_view name);
/// A list of strings: 400 when it is anything else.
std::optional<std::vector<std::string>> get_strings(const json::object& o, std::string_view name,
                                                    bool required = false);
int64_t now_ms();
std::string iso_time(int64_t ms);
/// Whether `name` is a safe identifier: 1-100 of [A-Za-z0-9._-], not starting with '.'.
bool valid_name(std::string_view name);
/// 400 naming `what` when `name` is not valid_name().
void require_name(std::string_view what, std::string_view name);

enum class UserType { Admin, Super, Security, User };
std::string_view type_name(UserType t);
std::optional<UserType> parse_user_type(std::string_view s);

/// A right a role grants: on agents ("read", "deploy", "operate") or repositories
/// ("read", "write"), for one id, a group ("group:NAME", agents only) or all ("*").
struct Right {
  std::string resource;  // "agent" or "repository"
  std::string match;
  std::vector<std::string> actions;
};

/// Who is calling.
struct Caller {
  int64_t id = 0;
  std::string username;
  UserType type = UserType::User;
  std::vector<Right> rights;  // from the user's roles
  bool session = false;       // authenticated by the session cookie (CSRF applies)
  std::string remote;
};

/// The last status the poller (or a live check) saw for an agent.
struct AgentStatus {
  bool known = false;
  bool online = false;
  std::string error;   // why it is offline
  json::value status;  // the agent's /v1/status answer
  int64_t checked_at = 0;
};
/// From an agent's status: whether it says it is ready, and whether its active
/// configuration has the SHA-256 `sha256`. Both false when it is offline. (deploy.cpp)
void read_status(const AgentStatus& st, const std::string& sha256, bool* ready, bool* running);

/// An agent definition with its key opened.
struct AgentDef {
  std::string id, host, key, type, group, registered;
  int port = 0;
  bool tls = false;  // the management port speaks HTTPS (CAP_MGMT_TLS_CERT on the agent)
  std::optional<int> web_port;
  int64_t created_at = 0;
};

class Console {
 public:
  Console(Settings settings, Db& db, Sealer& sealer);
  ~Console();

  /// Creates the first admin when there is no user yet: the password from
  /// CAP_ADMIN_PASSWORD, else a generated one printed once on stdout.
  void ensure_admin();
  /// Starts the status poller.
  void start_poller();
  void stop_poller();
  /// Handles one request (any path); never throws.
  Response handle(const Request& r);

  const Settings& settings() const { return settings_; }

 private:
  Response route(const Request& r, const std::vector<std::string>& seg);
  Response api(const Request& r, const std::vector<std::string>& seg);
  Response serve_ui(const Request& r);

  // auth.cpp
  Caller authenticate(const Request& r);
  Response login(const Request& r, bool cookie);
  Response logout(const Request& r);
  Response me(const Caller& c, const Request& r);
  Response change_password(const Caller& c, const Request& r);
  Response users(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  Response roles(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  Response audit_list(const Caller& c, const Request& r);
  void audit(DbSession& s, const Caller& c, std::string_view action, std::string_view target,
             const json::value& details = json::object());
  bool may_agent(const Caller& c, const AgentDef& a, std::string_view action) const;
  bool may_repository(const Caller& c, std::string_view repo, std::string_view action) const;
  void require_agent(const Caller& c, const AgentDef& a, std::string_view action) const;
  void require_repository(const Caller& c, std::string_view repo, std::string_view action) const;
  void require_types(const Caller& c, std::initializer_list<UserType> types,
                     std::string_view what) const;

  // agents.cpp
  Response agents(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  Response announce(const Request& r);
  Response join_tokens(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  std::optional<AgentDef> load_agent(DbSession& s, const std::string& id);
  std::vector<AgentDef> load_agents(DbSession& s);
  json::object agent_json(const AgentDef& a, DbSession& s);
  /// One signed management call.
  HttpReply agent_call(const AgentDef& a, const std::string& method, const std::string& path,
                       const std::string& body = {}, const std::string& content_type = {},
                       int timeout_ms = 0);
  /// Asks the agent for /v1/status now and records what it said.
  AgentStatus check_agent(const AgentDef& a);
  AgentStatus cached_status(const std::string& id);
  void poll_loop();

  // repositories.cpp
  Response repositories(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  Response rules_catalogue();
  Response validate(const Request& r);
  /// The configuration zip a request carries: application/zip, or JSON {"files": {...}}
  /// (text files, or {"base64": "..."} for binary ones). 400 when it is neither.
  std::string request_zip(const Request& r, std::string* message);
  /// Validates with the engine library exactly as an agent does: the errors and warnings
  /// as "FILE: node ID: PARAM: message".
  /// The base catalogue plus the rules of the extensions in the store that the package's
  /// cap.json asks for (their shape only, from extension.json); null when it asks for none.
  std::unique_ptr<RuleRegistry> extension_registry(const Package& pkg);
  bool validate_zip(const std::string& zip, std::vector<std::string>* errors,
                    std::vector<std::string>* warnings, Package* pkg = nullptr);

  // deploy.cpp
  Response deployments(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  json::object run_deployment(const Caller& c, const std::string& configuration, int64_t revision,
                              std::vector<AgentDef> targets, const std::string& strategy,
                              std::optional<int64_t> rollback_of);
  json::object deploy_one(const AgentDef& a, const std::string& zip, const Package& pkg,
                          bool check_ready);

  // store.cpp: vault and extensions
  Response vault(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  Response extensions(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  /// The credentials a configuration names (${vault:NAME...}), as the agent's PUT /v1/vault
  /// body; throws ApiError 422 when one is not in the vault.
  std::optional<std::string> vault_for(const Package& pkg);

  // ecs.cpp: following an ECS service (ecs.h)
  void start_ecs();
  void stop_ecs();
  Response ecs_api(const Caller& c, const Request& r, const std::vector<std::string>& seg);
  /// Brings the ECS-discovered agent definitions in step with the service's running tasks
  /// and returns what changed (as GET /api/v1/ecs shows it). Throws ApiError 502, with the
  /// definitions untouched, when an AWS call fails.
  json::object ecs_sync(const Caller& who, const std::string& trigger);
  /// Whether a rolling deploy to `a` goes through the target group (an ECS-discovered agent
  /// with CAP_ECS_TARGET_GROUP_ARN set).
  bool ecs_rolls(const AgentDef& a) const;
  /// deploy_one for such an agent: deregister, wait for draining, deploy, check ready,
  /// register, wait for healthy; each step in "steps", the result so far given to
  /// `progress` after every step. On failure "target_left" says where the target stands.
  json::object ecs_deploy_one(const AgentDef& a, const std::string& zip, const Package& pkg,
                              const std::function<void(const json::object&)>& progress);

  Settings settings_;
  Db& db_;
  Sealer& sealer_;
  net::HttpClientPool client_;
  net::HttpClientPool agent_client_tls_;  // for agents whose management port is HTTPS
  RuleRegistry registry_;

  std::mutex status_mu_;
  std::map<std::string, AgentStatus> status_;

  struct Attempts {
    int failures = 0;
    int64_t locked_until = 0;
  };
  std::mutex login_mu_;
  std::map<std::string, Attempts> login_attempts_;

  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool poll_stop_ = false;
  std::thread poller_;
  std::unique_ptr<EcsRuntime> ecs_;
};

}  // namespace cap::console

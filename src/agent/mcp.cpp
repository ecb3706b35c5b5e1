#include "agent/mcp.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "agent/logging.h"
#include "agent/mcp_stream.h"
#include "engine/span_clock.h"
#include "net/signing.h"
#include "rules/tools.h"

namespace cap::agent {
namespace {

/// Protocol revisions this server speaks, newest first.
constexpr const char* kVersions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"};
constexpr const char* kVersionList = "2025-11-25, 2025-06-18, 2025-03-26 and 2024-11-05";
/// A tool call answered as a stream reports progress this often.
constexpr int64_t kProgressEveryMs = 1000;
/// How often the housekeeping thread looks at sessions, streams and the configuration while
/// there are sessions or streamed calls (none: it sleeps until one appears).
constexpr std::chrono::milliseconds kTick{200};

using Headers = std::vector<std::pair<std::string, std::string>>;

bool known_version(std::string_view v) {
  for (const char* k : kVersions)
    if (v == k) return true;
  return false;
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view header(const Request& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (iequal(k, name)) return v;
  return {};
}

/// The media type of a Content-Type or Accept entry, without its parameters.
std::string_view media_type(std::string_view v) { return trim(v.substr(0, v.find(';'))); }

/// Whether an Accept header admits `type` ("application/json"): the type itself, its
/// "main/*" wildcard, or "*/*".
bool accepts(std::string_view accept, std::string_view type) {
  std::string_view main = type.substr(0, type.find('/'));
  while (!accept.empty()) {
    size_t comma = accept.find(',');
    std::string_view entry = media_type(accept.substr(0, comma));
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    if (iequal(entry, type) || entry == "*/*") return true;
    if (entry.size() == main.size() + 2 && iequal(entry.substr(0, main.size()), main) &&
        entry.substr(main.size()) == "/*")
      return true;
  }
  return false;
}

Value rpc_error(const Value& id, int code, std::string message) {
  Map e;
  e.set("code", Value(code));
  e.set("message", Value(std::move(message)));
  Map m;
  m.set("jsonrpc", Value("2.0"));
  m.set("id", id);
  m.set("error", Value(std::move(e)));
  return Value(std::move(m));
}

Value rpc_result(const Value& id, Value result) {
  Map m;
  m.set("jsonrpc", Value("2.0"));
  m.set("id", id);
  m.set("result", std::move(result));
  return Value(std::move(m));
}

Value notification(std::string method, Value params) {
  Map m;
  m.set("jsonrpc", Value("2.0"));
  m.set("method", Value(std::move(method)));
  if (!params.is_null()) m.set("params", std::move(params));
  return Value(std::move(m));
}

const Value* field(const Value& v, std::string_view name) {
  return v.is_map() ? v.as_map().find(name) : nullptr;
}

/// Whether `msg` is a well-formed JSON-RPC request (jsonrpc 2.0, a method, an id).
bool is_request(const Value& msg, std::string_view method = {}) {
  const Value* j = field(msg, "jsonrpc");
  const Value* m = field(msg, "method");
  const Value* id = field(msg, "id");
  return j && j->is_string() && j->as_string() == "2.0" && m && m->is_string() && id &&
         (id->is_string() || id->is_number()) && (method.empty() || m->as_string() == method);
}

/// The progressToken of a tools/call request (params._meta.progressToken), or null.
Value progress_token(const Value& msg) {
  if (!is_request(msg, "tools/call")) return Value();
  const Value* params = field(msg, "params");
  const Value* meta = params ? field(*params, "_meta") : nullptr;
  const Value* token = meta ? field(*meta, "progressToken") : nullptr;
  if (token && (token->is_string() || token->is_number())) return *token;
  return Value();
}

/// Whether the request carries the configured bearer token. False too when the token's
/// credential is missing from the vault (logged, without any value).
bool authorized(Runtime& runtime, const Request& req) {
  const McpSettings& mcp = runtime.configuration().mcp;
  if (!mcp.token) return false;
  std::string expected;
  try {
    Variables vars(runtime.configuration().symbols);
    EvalContext ctx{vars, runtime.services()};
    expected = mcp.token->text(ctx);
  } catch (const EvalError& e) {
    web_log().warn("MCP: the token cannot be read, so every request is refused: {}", e.what());
    return false;
  }
  if (expected.empty()) {
    web_log().warn("MCP: the token is empty, so every request is refused");
    return false;
  }
  std::string_view auth = header(req, "authorization");
  if (auth.size() < 7 || !iequal(auth.substr(0, 7), "Bearer ")) return false;
  std::string_view given = auth.substr(7);
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

/// A browser page must not reach the tools from another site, nor through a rebound DNS
/// name: an Origin header, when present, must be one of the configured origins, or, when
/// none are configured, name the host the request was sent to.
bool origin_allowed(const McpSettings& mcp, const Request& req) {
  std::string_view origin = header(req, "origin");
  if (origin.empty()) return true;
  if (!mcp.origins.empty())
    return std::any_of(mcp.origins.begin(), mcp.origins.end(),
                       [&](const std::string& o) { return iequal(o, origin); });
  size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos) return false;
  return iequal(origin.substr(scheme + 3), header(req, "host"));
}

Value tool_list(const Configuration& cfg) {
  List tools;
  for (const RuleSet* rs : cfg.mcp.tools) {
    Map t;
    t.set("name", Value(rs->name));
    t.set("description", Value(rs->description));
    t.set("inputSchema", rules::tool_schema(*rs));
    tools.push_back(Value(std::move(t)));
  }
  Map m;
  m.set("tools", Value(std::move(tools)));
  return Value(std::move(m));
}

/// What tells tool lists apart (a session is told of a change when this differs).
size_t tools_hash(const Configuration& cfg) {
  return std::hash<std::string>()(to_json(tool_list(cfg)));
}

/// The revision an initialize request gets: the one it asks for when this server speaks
/// it, else the newest this server speaks (the client then decides whether to go on).
std::string negotiate(const Value& initialize) {
  const Value* params = field(initialize, "params");
  const Value* v = params ? field(*params, "protocolVersion") : nullptr;
  if (v && v->is_string() && known_version(v->as_string())) return v->as_string();
  return kVersions[0];
}

Value initialize_result(const Configuration& cfg, const std::string& version) {
  Map tools;
  // Changes are announced on the session's event stream, which needs sessions.
  tools.set("listChanged", Value(cfg.mcp.sessions));
  Map caps;
  caps.set("tools", Value(std::move(tools)));
  Map info;
  info.set("name", Value(cfg.name));
  info.set("version", Value(CAP_VERSION));
  Map m;
  m.set("protocolVersion", Value(version));
  m.set("capabilities", Value(std::move(caps)));
  m.set("serverInfo", Value(std::move(info)));
  if (!cfg.description.empty()) m.set("instructions", Value(cfg.description));
  return Value(std::move(m));
}

/// Runs one tool call; JSON-RPC errors for a malformed call or an unknown tool.
Value call_tool(Runtime& runtime, const Value& id, const Value& params) {
  const Value* name = field(params, "name");
  if (!name || !name->is_string())
    return rpc_error(id, -32602, "tools/call needs params.name, the tool to call");
  const RuleSet* tool = nullptr;
  for (const RuleSet* rs : runtime.configuration().mcp.tools)
    if (rs->name == name->as_string()) tool = rs;
  if (!tool) return rpc_error(id, -32602, "unknown tool '" + name->as_string() + "'");
  const Value* args = field(params, "arguments");
  if (args && !args->is_null() && !args->is_map())
    return rpc_error(id, -32602, "tools/call params.arguments must be an object");
  rules::ToolOutcome out = rules::run_tool(runtime, *tool, args ? *args : Value(), nullptr,
                                           "MCP tools/call " + tool->name);
  if (out.error) web_log().info("MCP: tool {} answered an error: {}", tool->name, out.text);
  Map text;
  text.set("type", Value("text"));
  text.set("text", Value(std::move(out.text)));
  List content;
  content.push_back(Value(std::move(text)));
  Map result;
  result.set("content", Value(std::move(content)));
  result.set("isError", Value(out.error));
  return rpc_result(id, Value(std::move(result)));
}

/// One JSON-RPC message: a response value, or null for a notification or a client's
/// response. `version` is what an initialize gets.
Value dispatch(Runtime& runtime, const Value& msg, const std::string& version) {
  if (!msg.is_map()) return rpc_error(Value(), -32600, "a JSON-RPC message must be an object");
  const Map& m = msg.as_map();
  const Value* jsonrpc = m.find("jsonrpc");
  const Value* method = m.find("method");
  const Value* id = m.find("id");
  Value rid = id && (id->is_string() || id->is_number()) ? *id : Value();
  if (!jsonrpc || !jsonrpc->is_string() || jsonrpc->as_string() != "2.0")
    return rpc_error(rid, -32600, "jsonrpc must be \"2.0\"");
  if (!method || !method->is_string()) {
    // A response from the client (this server never asks it anything) or garbage.
    if (id && (m.find("result") || m.find("error"))) return Value();
    return rpc_error(rid, -32600, "a request needs a method");
  }
  if (!id) return Value();  // a notification: nothing to answer
  if (!id->is_string() && !id->is_number())
    return rpc_error(Value(), -32600, "id must be a string or a number");
  static const Value none;
  const Value* found = m.find("params");
  const Value& params = found ? *found : none;
  if (!params.is_null() && !params.is_map())
    return rpc_error(rid, -32602, "params must be an object");
  const std::string& name = method->as_string();
  const Configuration& cfg = runtime.configuration();
  if (name == "initialize") return rpc_result(rid, initialize_result(cfg, version));
  if (name == "ping") return rpc_result(rid, Value(Map()));
  if (name == "tools/list") return rpc_result(rid, tool_list(cfg));
  if (name == "tools/call") return call_tool(runtime, rid, params);
  return rpc_error(rid, -32601, "method '" + name + "' is not offered by this server");
}

}  // namespace

struct McpServer::Reply {
  int status = 200;
  std::string body;  // JSON; empty for 202 and 204
  Headers headers;
};

/// One HTTP request being answered.
struct McpServer::Exchange {
  Runtime& runtime;
  const Request& req;
  net::Deferred& deferred;
  const std::function<void(int)>& before_answer;
  Headers cors;  // for a browser app on a listed origin: added to every answer
  const McpSettings& mcp() const { return runtime.configuration().mcp; }
};

struct McpServer::Session {
  std::string id;
  std::string path;       // the endpoint it was opened on
  std::string version;    // negotiated at initialize
  size_t tools_seen = 0;  // hash of the tool list the client last got (initialize, tools/list)
  int64_t last_used_ms = 0;
  int busy = 0;                        // requests of this session being answered
  std::shared_ptr<SseChannel> stream;  // the GET stream, while open
};

/// A tool call answered as an event stream, reporting progress while its rule set runs.
struct McpServer::Call {
  std::shared_ptr<SseChannel> stream;
  Value token;
  std::string session;  // "" without sessions
  Value request_id;     // what notifications/cancelled names
  bool cancelled = false;
  std::string tool;
  int64_t started_ms = 0, next_ms = 0;
  int64_t count = 0;
};

namespace {

/// A refusal at the HTTP level: a JSON-RPC error without an id (no message was read, or
/// the one read cannot be answered here).
std::string error_body(int code, std::string message) {
  return to_json(rpc_error(Value(), code, std::move(message))) + "\n";
}

}  // namespace

McpServer::McpServer(ServingSlot& slot, Metrics& metrics) : slot_(slot) {
  metrics.add_section(
      "mcp", [this](std::string& out) { append_prometheus(out); },
      [this] { return stats_value(); });
  thread_ = std::thread([this] { housekeeping(); });
}

Value McpServer::stats_value() const {
  size_t sessions = 0, streams = 0, calls = 0;
  {
    std::lock_guard lock(mu_);
    sessions = sessions_.size();
    for (const auto& [id, s] : sessions_) streams += s->stream && s->stream->is_open();
    calls = calls_.size();
  }
  Map m;
  m.set("sessions", Value(static_cast<double>(sessions)));
  m.set("event_streams", Value(static_cast<double>(streams)));
  m.set("streamed_calls_running", Value(static_cast<double>(calls)));
  m.set("sessions_opened", Value(static_cast<double>(opened_.load())));
  m.set("sessions_refused", Value(static_cast<double>(refused_.load())));
  m.set("sessions_expired", Value(static_cast<double>(expired_.load())));
  m.set("sessions_ended_by_clients", Value(static_cast<double>(ended_.load())));
  m.set("tool_calls", Value(static_cast<double>(tool_calls_.load())));
  m.set("tool_errors", Value(static_cast<double>(tool_errors_.load())));
  m.set("streamed_calls", Value(static_cast<double>(progress_streams_.load())));
  return Value(std::move(m));
}

void McpServer::append_prometheus(std::string& out) const {
  Value v = stats_value();
  struct Series {
    const char* name;
    const char* key;
    const char* type;
    const char* help;
  };
  static const Series series[] = {
      {"cap_mcp_sessions", "sessions", "gauge", "MCP sessions open now."},
      {"cap_mcp_event_streams", "event_streams", "gauge", "MCP event streams (GET) open now."},
      {"cap_mcp_sessions_opened_total", "sessions_opened", "counter", "MCP sessions opened."},
      {"cap_mcp_sessions_refused_total", "sessions_refused", "counter",
       "initialize requests refused because max_sessions sessions were open."},
      {"cap_mcp_sessions_expired_total", "sessions_expired", "counter",
       "MCP sessions ended after session_ttl_s unused."},
      {"cap_mcp_sessions_ended_total", "sessions_ended_by_clients", "counter",
       "MCP sessions ended by their clients (DELETE)."},
      {"cap_mcp_tool_calls_total", "tool_calls", "counter", "MCP tools/call requests."},
      {"cap_mcp_tool_errors_total", "tool_errors", "counter",
       "MCP tool calls answered with an error (isError or a JSON-RPC error)."},
      {"cap_mcp_streamed_calls_total", "streamed_calls", "counter",
       "MCP tool calls answered as event streams with progress."},
  };
  for (const Series& s : series) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", s.name, s.help, s.name, s.type,
                       s.name, v.as_map().find(s.key)->as_number());
  }
}

McpServer::~McpServer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  end_all_sessions_locked();
  for (auto& [n, call] : calls_) call->stream->end();
}

void McpServer::close_streams() {
  std::lock_guard lock(mu_);
  streams_closed_ = true;
  for (auto& [id, s] : sessions_) {
    if (s->stream) s->stream->end();
    s->stream.reset();
  }
}

void McpServer::end_all_sessions_locked() {
  for (auto& [id, s] : sessions_)
    if (s->stream) s->stream->end();
  sessions_.clear();
}

void McpServer::handle(Runtime& runtime, const Request& req, net::Deferred& deferred,
                       const std::function<void(int)>& before_answer) {
  Exchange x{runtime, req, deferred, before_answer, {}};
  std::optional<Reply> r = serve(x);
  if (!r) return;  // answered as a stream
  for (auto& h : x.cors) r->headers.push_back(h);
  before_answer(r->status);
  deferred.respond(net::ResponseView{r->status, r->body.empty() ? "" : "application/json",
                                     r->headers, r->body, false});
}

std::optional<McpServer::Reply> McpServer::serve(Exchange& x) {
  const McpSettings& mcp = x.mcp();
  std::string_view method = x.req.method;
  bool post = method == "POST", get = method == "GET", del = method == "DELETE";
  const char* allowed = mcp.sessions ? "GET, POST, DELETE, OPTIONS" : "POST, OPTIONS";
  if (method == "OPTIONS") {  // a browser's CORS preflight: no token is sent with it
    if (!origin_allowed(mcp, x.req))
      return Reply{403, error_body(-32000, "the Origin header is not one of mcp.origins"), {}};
    Reply r{204, "", {{"Allow", allowed}}};
    std::string_view origin = header(x.req, "origin");
    if (!origin.empty() && !mcp.origins.empty()) {
      r.headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
      r.headers.emplace_back("Access-Control-Allow-Methods",
                             mcp.sessions ? "GET, POST, DELETE" : "POST");
      r.headers.emplace_back("Access-Control-Allow-Headers",
                             "Authorization, Content-Type, Accept, Mcp-Session-Id, "
                             "MCP-Protocol-Version, Last-Event-ID");
      r.headers.emplace_back("Access-Control-Max-Age", "600");
      r.headers.emplace_back("Vary", "Origin");
    }
    return r;
  }
  if (!post && !(mcp.sessions && (get || del))) {
    Reply r{
        405,
        error_body(-32000, mcp.sessions ? "the MCP endpoint takes POST (messages), GET (the "
                                          "session's event stream) and DELETE (ends the session)"
                                        : "the MCP endpoint takes JSON-RPC messages by POST"),
        {}};
    r.headers.emplace_back("Allow", allowed);
    return r;
  }
  if (!origin_allowed(mcp, x.req))
    return Reply{
        403,
        error_body(-32000, mcp.origins.empty() ? "the Origin header does not match the Host"
                                               : "the Origin header is not one of mcp.origins"),
        {}};
  // A browser app on a listed origin may read the answers, the session id among them.
  if (std::string_view origin = header(x.req, "origin"); !origin.empty() && !mcp.origins.empty())
    x.cors = {{"Access-Control-Allow-Origin", std::string(origin)},
              {"Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate"},
              {"Vary", "Origin"}};
  if (!authorized(x.runtime, x.req)) {
    Reply r{401, error_body(-32000, "a valid bearer token is required"), {}};
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"cap-mcp\"");
    return r;
  }
  std::string_view version = header(x.req, "mcp-protocol-version");
  if (!version.empty() && !known_version(version))
    return Reply{400,
                 error_body(-32000, "unsupported MCP-Protocol-Version '" +
                                        std::string(version.substr(0, 40)) +
                                        "'; this server speaks " + kVersionList),
                 {}};
  if (post) return post_messages(x);
  if (get) return open_stream(x);
  return end_session(x);
}

std::shared_ptr<McpServer::Session> McpServer::find_session(Exchange& x, Reply& refusal) {
  std::string_view id = header(x.req, "mcp-session-id");
  if (id.empty()) {
    refusal = Reply{400,
                    error_body(-32000,
                               "the Mcp-Session-Id header is required: send initialize first, "
                               "then its Mcp-Session-Id with every request"),
                    {}};
    return nullptr;
  }
  int64_t now = coarse_clock_ms();
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(id));
  if (it != sessions_.end() && (expired(*it->second, now, x.mcp().session_ttl_s) ||
                                it->second->path != x.mcp().path)) {  // opened elsewhere
    if (it->second->stream) it->second->stream->end();
    if (it->second->path == x.mcp().path) ++expired_;
    sessions_.erase(it);
    it = sessions_.end();
  }
  if (it == sessions_.end()) {
    refusal = Reply{404,
                    error_body(-32001,
                               "session not found: it ended or expired; send initialize to "
                               "open a new one"),
                    {}};
    return nullptr;
  }
  Session& s = *it->second;
  std::string_view version = header(x.req, "mcp-protocol-version");
  if (!version.empty() && version != s.version) {
    refusal = Reply{400,
                    error_body(-32000, "MCP-Protocol-Version '" + std::string(version) +
                                           "' is not the version this session negotiated ('" +
                                           s.version + "')"),
                    {}};
    return nullptr;
  }
  s.last_used_ms = now;
  ++s.busy;
  return it->second;
}

void McpServer::release(Session& s) {
  std::lock_guard lock(mu_);
  --s.busy;
  s.last_used_ms = coarse_clock_ms();
}

bool McpServer::expired(const Session& s, int64_t now, int ttl_s) const {
  return s.busy == 0 && !(s.stream && s.stream->is_open()) &&
         now - s.last_used_ms > int64_t(ttl_s) * 1000;
}

std::shared_ptr<McpServer::Session> McpServer::open_session(const Configuration& cfg,
                                                            std::string version, Reply& refusal) {
  const McpSettings& mcp = cfg.mcp;
  int64_t now = coarse_clock_ms();
  std::lock_guard lock(mu_);
  expired_ += std::erase_if(
      sessions_, [&](const auto& e) { return expired(*e.second, now, mcp.session_ttl_s); });
  if (sessions_.size() >= static_cast<size_t>(mcp.max_sessions)) {
    web_log().warn("MCP: refused a new session: all {} sessions (mcp.max_sessions) are open",
                   sessions_.size());
    ++refused_;
    refusal =
        Reply{503,
              error_body(-32000, "too many MCP sessions: all " + std::to_string(mcp.max_sessions) +
                                     " are open (mcp.max_sessions). End sessions no "
                                     "longer needed with DELETE; idle ones end after " +
                                     std::to_string(mcp.session_ttl_s) + " s"),
              {}};
    refusal.headers.emplace_back("Retry-After", "30");
    return nullptr;
  }
  auto s = std::make_shared<Session>();
  do s->id = net::random_nonce();
  while (sessions_.count(s->id));
  s->path = mcp.path;
  s->version = std::move(version);
  s->tools_seen = tools_hash(cfg);
  s->last_used_ms = now;
  s->busy = 1;
  sessions_.emplace(s->id, s);
  cv_.notify_one();  // housekeeping sleeps while there are no sessions
  ++opened_;
  web_log().info("MCP: session opened ({} open)", sessions_.size());
  return s;
}

std::optional<McpServer::Reply> McpServer::post_messages(Exchange& x) {
  const McpSettings& mcp = x.mcp();
  std::string_view ctype = header(x.req, "content-type");
  if (!ctype.empty() && !iequal(media_type(ctype), "application/json"))
    return Reply{
        415, error_body(-32000, "send JSON-RPC messages as Content-Type: application/json"), {}};
  std::string_view accept = header(x.req, "accept");
  bool json_ok = accept.empty() || accepts(accept, "application/json");
  bool sse_ok = !accept.empty() && accepts(accept, "text/event-stream");
  if (!json_ok && !sse_ok)
    return Reply{406,
                 error_body(-32000,
                            "the client must accept application/json or text/event-stream "
                            "(MCP clients send \"Accept: application/json, text/event-stream\")"),
                 {}};
  std::string err;
  Value msg = json_parse(x.req.body, &err);
  if (!err.empty()) return Reply{400, error_body(-32700, "parse error: " + err), {}};
  List single;
  const List* messages = &single;
  if (msg.is_list()) {
    messages = &msg.as_list();
    if (messages->empty()) return Reply{400, error_body(-32600, "an empty batch"), {}};
  } else {
    single.push_back(msg);
  }
  const Value* init = nullptr;
  bool has_request = false;
  for (const Value& m : *messages) {
    if (is_request(m, "initialize")) init = &m;
    has_request = has_request || (field(m, "method") && field(m, "id"));
  }
  if (init && messages->size() > 1)
    return Reply{400, error_body(-32600, "initialize must be sent alone, not in a batch"), {}};

  std::string version = init ? negotiate(*init) : std::string(kVersions[0]);
  std::shared_ptr<Session> session;
  Reply refusal;
  if (mcp.sessions) {
    session =
        init ? open_session(x.runtime.configuration(), version, refusal) : find_session(x, refusal);
    if (!session) return refusal;
    version = session->version;
  }
  struct Release {
    McpServer* self;
    Session* s;
    ~Release() {
      if (s) self->release(*s);
    }
  } release{this, session.get()};
  Headers headers;
  if (session) headers.emplace_back("Mcp-Session-Id", session->id);
  cancel_calls(session.get(), *messages);

  // An event stream when the client takes only that, or for a tool call that asked for
  // progress: notifications/progress while the rule set runs, then the result.
  Value token = messages->size() == 1 ? progress_token(messages->front()) : Value();
  if (has_request && sse_ok && (!json_ok || !token.is_null())) {
    x.before_answer(200);
    for (auto& h : x.cors) headers.push_back(h);
    auto stream = SseChannel::open(x.deferred, headers);
    uint64_t call_id = 0;
    std::shared_ptr<Call> call;
    if (!token.is_null()) {
      call = std::make_shared<Call>();
      call->stream = stream;
      call->token = token;
      call->session = session ? session->id : "";
      call->request_id = *field(messages->front(), "id");
      const Value* name = field(*field(messages->front(), "params"), "name");
      call->tool = name && name->is_string() ? name->as_string() : "tool";
      call->started_ms = coarse_clock_ms();
      call->next_ms = call->started_ms + kProgressEveryMs;
      std::lock_guard lock(mu_);
      call_id = next_call_++;
      calls_.emplace(call_id, call);
      cv_.notify_one();  // housekeeping sleeps while there is nothing to do
      ++progress_streams_;
      send_progress(*call, call->tool + ": started");
    }
    std::vector<Value> answers;
    for (const Value& m : *messages) {
      Value a = dispatch(x.runtime, m, version);
      count_tool_call(m, a);
      if (!a.is_null()) answers.push_back(std::move(a));
    }
    bool cancelled = false;
    {
      std::lock_guard lock(mu_);  // no progress after the answer
      calls_.erase(call_id);
      cancelled = call && call->cancelled;
    }
    if (session) saw_tools(*session, x.runtime.configuration(), *messages);
    if (!cancelled)
      for (const Value& a : answers) stream->send_message(to_json(a));
    stream->end();
    return std::nullopt;
  }

  List answers;
  for (const Value& m : *messages) {
    Value a = dispatch(x.runtime, m, version);
    count_tool_call(m, a);
    if (!a.is_null()) answers.push_back(std::move(a));
  }
  if (session) saw_tools(*session, x.runtime.configuration(), *messages);
  if (answers.empty()) return Reply{202, "", std::move(headers)};
  Reply r{200, "", std::move(headers)};
  if (msg.is_list()) {
    r.body = to_json(Value(std::move(answers)));
  } else {
    const Value* error = field(answers.front(), "error");
    const Value* code = error ? field(*error, "code") : nullptr;
    if (code && code->is_number() && code->as_number() == -32600) r.status = 400;
    r.body = to_json(answers.front());
  }
  r.body += '\n';
  return r;
}

void McpServer::cancel_calls(const Session* session, const List& messages) {
  if (!session) return;  // without sessions a request id does not say whose call it is
  for (const Value& m : messages) {
    const Value* method = field(m, "method");
    const Value* params = field(m, "params");
    const Value* id = params ? field(*params, "requestId") : nullptr;
    if (field(m, "id") || !method || !method->is_string() ||
        method->as_string() != "notifications/cancelled" || !id)
      continue;
    std::lock_guard lock(mu_);
    for (auto it = calls_.begin(); it != calls_.end(); ++it) {
      Call& call = *it->second;
      if (call.session != session->id || !(call.request_id == *id)) continue;
      call.cancelled = true;
      call.stream->end();
      web_log().info(
          "MCP: the client cancelled its call of {}; the rule set runs to its end and "
          "its result is dropped",
          call.tool);
      calls_.erase(it);
      break;
    }
  }
}

void McpServer::count_tool_call(const Value& request, const Value& answer) {
  if (!is_request(request, "tools/call")) return;
  ++tool_calls_;
  const Value* result = field(answer, "result");
  const Value* is_error = result ? field(*result, "isError") : nullptr;
  if (!result || (is_error && is_error->is_bool() && is_error->as_bool())) ++tool_errors_;
}

void McpServer::saw_tools(Session& s, const Configuration& cfg, const List& messages) {
  for (const Value& m : messages)
    if (is_request(m, "tools/list")) {
      size_t h = tools_hash(cfg);
      std::lock_guard lock(mu_);
      s.tools_seen = h;
      return;
    }
}

void McpServer::tell_tools_changed_locked(Session& s, size_t tools) {
  if (!s.stream || s.tools_seen == tools) return;
  static const std::string changed =
      to_json(notification("notifications/tools/list_changed", Value()));
  if (s.stream->send_message(changed)) s.tools_seen = tools;
}

void McpServer::send_progress(Call& call, const std::string& message) {
  Map p;
  p.set("progressToken", call.token);
  p.set("progress", Value(static_cast<double>(call.count)));
  p.set("message", Value(message));
  call.stream->send_message(to_json(notification("notifications/progress", Value(std::move(p)))));
}

std::optional<McpServer::Reply> McpServer::open_stream(Exchange& x) {
  std::string_view accept = header(x.req, "accept");
  if (!accepts(accept, "text/event-stream"))
    return Reply{
        406,
        error_body(-32000, "GET opens the session's event stream: send Accept: text/event-stream"),
        {}};
  Reply refusal;
  std::shared_ptr<Session> session = find_session(x, refusal);
  if (!session) return refusal;
  std::shared_ptr<SseChannel> old;
  {
    std::lock_guard lock(mu_);
    --session->busy;
    session->last_used_ms = coarse_clock_ms();
    if (streams_closed_)
      return Reply{503, error_body(-32000, "the agent is stopping: no new event streams"), {}};
    x.before_answer(200);
    old = std::move(session->stream);
    // Opened under the lock: once the client sees the head, notifications reach it.
    Headers headers{{"Mcp-Session-Id", session->id}};
    for (auto& h : x.cors) headers.push_back(h);
    session->stream = SseChannel::open(x.deferred, headers);
    // The tool list changed while no stream was open: say so now.
    tell_tools_changed_locked(*session, tools_hash(x.runtime.configuration()));
  }
  if (old) old->end();  // one stream per session: the newest wins
  return std::nullopt;
}

std::optional<McpServer::Reply> McpServer::end_session(Exchange& x) {
  Reply refusal;
  std::shared_ptr<Session> session = find_session(x, refusal);
  if (!session) return refusal;
  size_t left = 0;
  {
    std::lock_guard lock(mu_);
    --session->busy;
    sessions_.erase(session->id);
    ++ended_;
    if (session->stream) session->stream->end();
    session->stream.reset();
    left = sessions_.size();
  }
  web_log().info("MCP: session ended by its client ({} open)", left);
  return Reply{204, "", {}};
}

void McpServer::housekeeping() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // With no session and no streamed call there is nothing to expire, keep alive or tell
    // about a new tool list: sleep until one appears (open_session, post_messages) instead
    // of waking kTick after kTick. The configuration is read again on that wake, before the
    // tick, so whatever was activated meanwhile applies.
    if (sessions_.empty() && calls_.empty())
      cv_.wait(lock, [this] { return stopping_ || !sessions_.empty() || !calls_.empty(); });
    else
      cv_.wait_for(lock, kTick);
    if (stopping_) break;
    lock.unlock();
    watch_configuration();
    tick(coarse_clock_ms());
    lock.lock();
  }
}

void McpServer::watch_configuration() {
  std::shared_ptr<const Serving> s = slot_.latest();
  uint64_t serial = s ? s->runtime_serial : 0;
  if (serial == seen_serial_) return;  // only this thread reads and writes seen_serial_
  seen_serial_ = serial;
  const Configuration* cfg = s && s->runtime ? &s->runtime->configuration() : nullptr;
  // Sessions live on while the endpoint stays where it was and keeps sessions.
  std::string path = cfg && cfg->mcp.sessions ? cfg->mcp.path : "";
  size_t tools = path.empty() ? 0 : tools_hash(*cfg);
  std::lock_guard lock(mu_);
  if (cfg) {
    ttl_s_ = cfg->mcp.session_ttl_s;
    keepalive_s_ = cfg->mcp.keepalive_s;
  }
  size_t ended = 0, told = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    Session& session = *it->second;
    if (session.path != path) {
      if (session.stream) session.stream->end();
      it = sessions_.erase(it);
      ++ended;
      continue;
    }
    size_t before = session.tools_seen;
    tell_tools_changed_locked(session, tools);
    if (session.tools_seen != before) ++told;
    ++it;
  }
  if (ended)
    web_log().info(
        "MCP: the new configuration moved the endpoint or turned sessions off: {} "
        "sessions ended",
        ended);
  if (told) web_log().info("MCP: the tool list changed; told {} open event streams", told);
}

void McpServer::tick(int64_t now) {
  std::lock_guard lock(mu_);
  for (auto& [id, s] : sessions_) {
    if (!s->stream) continue;
    if (s->stream->is_open())
      s->last_used_ms = now;  // a client listening is not idle
    else
      s->stream.reset();  // it went away: the idle clock starts now
  }
  expired_ +=
      std::erase_if(sessions_, [&](const auto& e) { return expired(*e.second, now, ttl_s_); });
  if (now >= next_keepalive_ms_) {
    for (auto& [id, s] : sessions_)
      if (s->stream) s->stream->send_comment("keep-alive");
    next_keepalive_ms_ = now + int64_t(keepalive_s_) * 1000;
  }
  for (auto& [n, call] : calls_) {
    if (now < call->next_ms) continue;
    ++call->count;
    call->next_ms += kProgressEveryMs;
    send_progress(*call, call->tool + ": running for " +
                             std::to_string((now - call->started_ms + 500) / 1000) + " s");
  }
}

}  // namespace cap::agent

// The MCP server: rule sets of the active configuration offered as tools to other AI agents
// over the Model Context Protocol's Streamable HTTP transport, on the web port.
//
// cap.json turns it on:
//   "mcp": {"path": "/mcp", "token": "${vault:mcp.token}", "tools": ["lookup_order"]}
// and may set "origins", "sessions", "session_ttl_s", "max_sessions", "keepalive_s"
// (docs/ai.md, "The MCP server").
//
// The endpoint, in the order a request meets it:
//   method     POST (JSON-RPC messages), GET (the session's event stream), DELETE (ends the
//              session), OPTIONS (CORS preflight); anything else 405. Without sessions no GET
//              or DELETE.
//   origin     a browser's Origin must be one of "origins", or the Host's own: else 403.
//              A listed origin gets CORS headers, so browser apps there can read answers.
//   token      "Authorization: Bearer TOKEN" with the token from the vault (constant-time
//              compare): else 401 with WWW-Authenticate
//   version    an MCP-Protocol-Version header this server does not speak: 400
//   session    initialize opens a session and answers its id in Mcp-Session-Id; every other
//              request carries it: none 400, unknown or expired 404 (the client starts a new
//              one), a table already holding max_sessions 503
//   messages   initialize, ping, tools/list, tools/call; notifications and client responses
//              202; batches answered as a list. A tools/call carrying a progressToken, from a
//              client that accepts text/event-stream, is answered as an event stream:
//              notifications/progress while the rule set runs, then the result (none when
//              the client cancels it with notifications/cancelled).
//   streams    GET opens the session's event stream (one per session: a new one replaces
//              the old): keep-alive comments, and notifications/tools/list_changed when a
//              newly activated configuration offers a different tool list
//
// A tool call runs its rule set as AiAgent does (rules/tools.h); argument errors and rule
// errors come back as tool results with isError, unknown tools as JSON-RPC errors. An
// armed trace records each call as a transaction "MCP tools/call NAME". The token and the
// session ids never reach a log line, a trace or an error.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/metrics.h"
#include "agent/serving.h"
#include "cap/engine.h"
#include "net/http_server.h"

namespace cap::agent {

class SseChannel;

class McpServer {
 public:
  /// Starts the housekeeping thread: session expiry, keep-alives, progress of running calls,
  /// and watching `slot` for configurations that change the tool list; it only wakes while
  /// there are sessions or streamed calls (an idle agent's thread sleeps). Adds the "mcp"
  /// section to `metrics` (/metrics and GET /v1/stats): call it before serving.
  McpServer(ServingSlot& slot, Metrics& metrics);
  /// Ends every stream and joins the thread.
  ~McpServer();
  McpServer(const McpServer&) = delete;
  McpServer& operator=(const McpServer&) = delete;

  /// Answers one HTTP request to the MCP path of `runtime`'s configuration through
  /// `deferred`: at once, or as an event stream that outlives the call (GET). Calls
  /// `before_answer(status)` once, just before the answer goes out (while `request` is still
  /// valid). Waits while tools run: call it off the event loops (the wait pool).
  void handle(Runtime& runtime, const Request& request, net::Deferred& deferred,
              const std::function<void(int status)>& before_answer);

  /// Ends every open event stream and refuses new ones with 503: the agent is stopping, and
  /// a stream open for ever would hold up its drain. Requests still work.
  void close_streams();

 private:
  struct Session;
  struct Call;
  struct Reply;
  struct Exchange;

  /// The answer, or nullopt when the request was answered as an event stream.
  std::optional<Reply> serve(Exchange& x);
  std::optional<Reply> post_messages(Exchange& x);
  std::optional<Reply> open_stream(Exchange& x);  // GET
  std::optional<Reply> end_session(Exchange& x);  // DELETE
  /// The session the request names, marked busy (release() it); else null and `refusal`.
  std::shared_ptr<Session> find_session(Exchange& x, Reply& refusal);
  /// A new session, marked busy; null and `refusal` when the table is full.
  std::shared_ptr<Session> open_session(const Configuration& cfg, std::string version,
                                        Reply& refusal);
  /// Remembers the tool list a session got when `messages` asked for it.
  void saw_tools(Session& s, const Configuration& cfg, const List& messages);
  /// Ends the streamed calls of `session` that notifications/cancelled in `messages` name:
  /// no more progress, and no answer (their rule sets still run to their ends).
  void cancel_calls(const Session* session, const List& messages);
  /// Counts `request` for metrics when it is a tools/call (an error when `answer` is one).
  void count_tool_call(const Value& request, const Value& answer);
  /// Sends notifications/tools/list_changed on the session's stream when `tools` (a hash)
  /// is not the list it last got. Under mu_.
  void tell_tools_changed_locked(Session& s, size_t tools);
  void release(Session& s);
  bool expired(const Session& s, int64_t now_ms, int ttl_s) const;  // under mu_
  void send_progress(Call& call, const std::string& message);       // under mu_
  void housekeeping();
  void tick(int64_t now_ms);
  void watch_configuration();
  void end_all_sessions_locked();
  void append_prometheus(std::string& out) const;
  Value stats_value() const;

  ServingSlot& slot_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::map<uint64_t, std::shared_ptr<Call>> calls_;  // tool calls answered as streams
  uint64_t next_call_ = 1;
  bool stopping_ = false;
  bool streams_closed_ = false;
  // What the housekeeping thread last saw of the active configuration.
  uint64_t seen_serial_ = 0;
  int ttl_s_ = 1800, keepalive_s_ = 15;
  int64_t next_keepalive_ms_ = 0;
  // Counted since start, for metrics.
  std::atomic<uint64_t> opened_{0}, refused_{0}, expired_{0}, ended_{0}, tool_calls_{0},
      tool_errors_{0}, progress_streams_{0};
  std::thread thread_;
};

}  // namespace cap::agent

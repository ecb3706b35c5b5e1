// Loading, validating and running configurations.
//
//   auto loaded = cap::load_configuration(cap::read_folder("examples/hello", &err), registry);
//   if (!loaded.ok()) print(loaded.diagnostics);          // every error at once
//   cap::Runtime runtime(loaded.configuration, services);  // one per activation
//   cap::Workspace ws;                                      // one per thread, reused
//   cap::Response res;
//   auto outcome = runtime.handle(request, res, ws);
//
// A Configuration is immutable and shared by all threads; a Runtime adds the state of one
// activation (mode, statistics, trace). Runtime::handle is thread-safe and takes no lock
// unless a trace is armed.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cap/package.h"
#include "cap/request.h"
#include "cap/rule.h"

namespace cap {

struct Diagnostic {
  enum class Severity { Error, Warning };
  Severity severity = Severity::Error;
  std::string file;   // "cap.json", "rulesets/main.json"
  std::string node;   // node id, or ""
  std::string param;  // parameter (or field) name, or ""
  std::string message;
  /// "FILE: node ID: PARAM: message" (parts that are empty are left out).
  std::string format() const;
};

/// Per-node performance data. Counters are relaxed atomics: no lock on the request path.
struct NodeStats {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> nanos{0};  // inline time: the rule itself, not its chains
  std::atomic<uint64_t> errors{0};
};

enum class PerformanceLevel { Off, Counts, Timings };

struct Node;

/// A typed input of a rule set that is called as a tool (by AiAgent or over MCP): the
/// rule set file's "params" list. The tool's JSON schema is derived from these.
struct RuleSetParam {
  std::string name;         // a variable name: the value is set under it before the call
  std::string type;         // string, number, integer, boolean, list or map
  bool required = false;
  std::string description;  // tells the model what to pass
};

struct RuleSet {
  std::string name;
  std::string file;
  std::string description;
  std::vector<std::string> exits;
  std::vector<std::unique_ptr<Node>> nodes;
  const Node* start = nullptr;
  bool may_wait = false;
  std::vector<RuleSetParam> params;  // inputs when called as a tool
  std::string result = "RESULT";     // the variable holding the tool's result
};

struct Node {
  std::string id;
  std::string rule_name;                   // the rule type, or the sub rule set name
  std::shared_ptr<const RuleType> type;    // keeps the type alive while this node exists
  std::unique_ptr<Rule> rule;              // null for sub rule sets and RuleSetExit
  const RuleSet* ruleset = nullptr;        // set when the node runs a sub rule set
  int exit_index = -1;                     // set for RuleSetExit: index in its set's exits
  std::vector<std::string> chain_names;    // chain point names in index order
  std::vector<std::vector<const Node*>> chains;
  mutable NodeStats stats;
};

/// cap.json "mcp": rule sets offered as tools over the Model Context Protocol on the web
/// port. `path` is empty when the configuration offers none.
struct McpSettings {
  std::string path;                   // "/mcp"
  std::optional<Template> token;      // the bearer token clients must send (vault template)
  std::vector<const RuleSet*> tools;  // each has a description and params
  std::vector<std::string> origins;   // allowed browser Origins; empty: the Host's own only
  bool sessions = true;               // Mcp-Session-Id sessions; false: stateless
  int session_ttl_s = 1800;           // a session idle this long ends
  int max_sessions = 1000;            // open sessions at most
  int keepalive_s = 15;               // a comment on idle event streams this often
};

class Configuration {
 public:
  std::string name, description;
  std::string sha256;  // of the packed form, set by the host
  uint64_t serial = 0;  // unique per loaded configuration in this process
  PerformanceLevel performance = PerformanceLevel::Counts;
  std::string origin;
  std::map<std::string, std::string> extensions;  // name -> version
  std::map<std::string, std::string> databases;   // name -> url (env already resolved)
  Symbols symbols;
  std::vector<std::unique_ptr<RuleSet>> rulesets;
  const RuleSet* entry = nullptr;
  const RuleSet* content = nullptr;
  const RuleSet* startup = nullptr;
  const RuleSet* completion = nullptr;
  std::vector<std::pair<std::string, const RuleSet*>> modes;
  std::vector<std::pair<uint32_t, Value>> globals;
  McpSettings mcp;
  Package package;  // the files it was loaded from (content/ is served from here)
  bool may_wait = false;  // some rule set reachable from the entry waits on a service
  /// The rules may read the request body: some file mentions the BODY variable, or some
  /// node uses a rule type with RuleSpec::reads_body. When false (and the request is not
  /// application/x-www-form-urlencoded, whose fields become variables) a host may run the
  /// rules before the body arrives, with BODY null, and stream the body on.
  bool reads_body = true;

  const RuleSet* find_ruleset(std::string_view name) const;
};

struct LoadOptions {
  /// Reads the process environment for ${env:...}; null uses ::getenv.
  std::function<std::optional<std::string>(std::string_view)> getenv;
  Logger* logger = nullptr;
  /// Checks one entry of cap.json "extensions" (name, required version): "" when an
  /// installed extension satisfies it, else the error to report. Null: no check.
  std::function<std::string(std::string_view name, std::string_view version)> check_extension;
};

struct LoadResult {
  std::vector<Diagnostic> diagnostics;  // errors and warnings, in file order
  std::shared_ptr<const Configuration> configuration;  // null when any error
  bool ok() const { return configuration != nullptr; }
  size_t error_count() const;
};

/// Validates and compiles. Reports every error; never returns a configuration with errors.
LoadResult load_configuration(const Package& package, const RuleRegistry& registry,
                              const LoadOptions& options = {});

/// One recorded transaction.
struct TraceEvent {
  /// Note: a step a rule reports itself (an AiAgent's prompt, tool call, tokens).
  enum class Kind { Enter, Chain, Return, Set, Delete, Complete, Error, Note };
  Kind kind;
  std::string ruleset, node, detail;  // detail: chain point, variable name=value, error
};
struct TraceRecord {
  std::string request;  // "GET /hello?name=Ann"
  int64_t timestamp_ms = 0;
  int status = 0;
  std::vector<TraceEvent> events;
};
/// Renders a trace as readable lines.
std::string format_trace(const TraceRecord& t);
Value trace_to_value(const TraceRecord& t);

class Trace;

/// Per-thread reusable request state.
class Workspace {
 public:
  Workspace() = default;

 private:
  friend class Runtime;
  uint64_t serial_ = 0;  // the configuration vars_ was sized for (addresses get reused)
  std::unique_ptr<Variables> vars_;
};

/// What running a rule set as a tool gave (Runtime::call_ruleset).
struct CallResult {
  bool failed = false;
  std::string error;  // when failed: which node and why (never secrets)
  std::string exit;   // the RuleSetExit reached, "" when none
  Value result;       // the rule set's result variable (RuleSet::result) after the run
  Response response;  // a response its rules set, if any
};

struct Outcome {
  bool responded = false;   // a rule set the response
  bool failed = false;      // an error escaped every FailSafePoint
  std::string error;        // why, for the log (never secrets)
  const RuleSet* ruleset = nullptr;
};

class Runtime {
 public:
  Runtime(std::shared_ptr<const Configuration> config, HostServices services);
  ~Runtime();

  /// Runs the startup rule set, if any. Returns an error message, or "" when fine.
  std::string startup();
  /// Runs one request: content rule set, then the entry (or the active mode's) rule set,
  /// then the completion rule set. Thread-safe.
  Outcome handle(const Request& request, Response& response, Workspace& ws);
  /// Like handle, and hands the final variables to `inspect` before they are cleared.
  Outcome handle(const Request& request, Response& response, Workspace& ws,
                 const std::function<void(Variables&)>& inspect);

  const Configuration& configuration() const { return *config_; }
  std::shared_ptr<const Configuration> configuration_ptr() const { return config_; }
  const HostServices& services() const { return services_; }

  /// The active mode ("" for the normal entry rule set). set_mode fails for unknown names.
  std::string mode() const;
  bool set_mode(std::string_view name);
  /// Called with the new mode's name ("" for the default) after each change, from the
  /// thread that made it (a SwitchMode rule runs on a request's thread): hosts that persist
  /// the mode hand the work elsewhere. Set before the runtime serves.
  void set_mode_listener(std::function<void(const std::string&)> listener) {
    mode_listener_ = std::move(listener);
  }

  /// Runs rule set `rs` as a tool: on a fresh variable bag holding the globals and `args`
  /// (each set under its name), with its own response. Errors inside come back in the
  /// result, never as exceptions. With `caller` (a rule calling a tool), counts, timings and
  /// an armed trace continue in the caller's; without one (an MCP call) an armed trace
  /// records the call as a transaction named `label`. Thread-safe.
  CallResult call_ruleset(const RuleSet& rs, const Map& args, ExecContext* caller,
                          std::string_view label = {});

  /// Records the next `n` transactions.
  void arm_trace(int n);
  /// The transactions recorded so far (oldest first), and how many remain armed.
  std::vector<TraceRecord> traces() const;
  int trace_remaining() const { return trace_armed_.load(std::memory_order_relaxed); }

  /// Per-node statistics and totals as a value (for JSON and tables).
  Value stats() const;
  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

 private:
  friend class ExecContext;
  void run_ruleset(ExecContext& ctx, const RuleSet& rs, const Node* parent);
  void run_node(ExecContext& ctx, const Node& node);
  void run_chain(ExecContext& ctx, const Node& node, int chain);
  Outcome run(ExecContext& ctx, const RuleSet* rs);

  std::shared_ptr<const Configuration> config_;
  HostServices services_;
  SystemClock default_clock_;
  std::atomic<int> mode_{-1};
  std::function<void(const std::string&)> mode_listener_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<int> trace_armed_{0};
  mutable std::mutex trace_mu_;
  std::deque<TraceRecord> traces_;
};

/// Everything a rule reaches while it runs.
class ExecContext : public EvalContext {
 public:
  ExecContext(Variables& vars, const HostServices& services, Runtime& runtime,
              Response& response, const Request* request)
      : EvalContext{vars, services}, runtime_(runtime), response_(response), request_(request) {}

  Response& response() { return response_; }
  /// The raw request (null while startup rule sets run).
  const Request* request() const { return request_; }
  /// Stops all further chain processing for this request (SetCompleted).
  void complete() { completed_ = true; }
  bool completed() const { return completed_; }
  /// Runs the children of the current node's chain point `chain` (for rules returning
  /// kHandled: FailSafePoint, ForEach).
  void run_chain(int chain);
  Runtime& runtime() { return runtime_; }
  Logger& logger();
  int64_t now_ms() const;
  Trace* trace() { return trace_; }
  /// Whether a trace records this request (rules skip building notes otherwise).
  bool tracing() const { return trace_ != nullptr; }
  /// Adds a note to the trace under the running node (no effect when not tracing). Never
  /// pass secrets.
  void note(std::string detail);

 private:
  friend class Runtime;
  Runtime& runtime_;
  Response& response_;
  const Request* request_;
  bool completed_ = false;
  const Node* current_ = nullptr;
  int top_exit_ = -1;  // the RuleSetExit reached at the top level (call_ruleset)
  std::vector<const Node*> frames_;  // the nodes that called the running sub rule sets
  Trace* trace_ = nullptr;
  bool timings_ = false;
  bool counts_ = false;
};

}  // namespace cap

// The rule interface: how a rule type describes itself, checks and compiles its parameters
// once when a configuration loads, and runs per request.
//
// Shape (after Envoy's filters): a RuleSpec describes the type (group, doc, typed
// parameters, chain points); a factory turns one node's parameters into an immutable Rule
// object; Rule::execute runs for every request that reaches the node, on any thread at the
// same time, and returns the index of the chain point to take. Rules that keep state across
// requests (counters, histories) guard it themselves.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cap/expression.h"
#include "cap/package.h"
#include "cap/request.h"
#include "cap/services.h"
#include "cap/value.h"
#include "cap/variables.h"

namespace cap {

enum class ParamType {
  String,      // a template: "${GREETING}, ${name}!"
  Number,      // a JSON number, or a template that evaluates to one
  Boolean,     // a JSON boolean, or a template that evaluates to one
  Expression,  // an expression without ${}: "URI == '/hello'"
  Variable,    // a variable name, not evaluated: "MSG"
  List,        // a JSON list whose strings are templates, or a template yielding a list
  Map,         // a JSON object whose strings are templates, or a template yielding a map
  Any,         // any JSON value; strings inside are templates
};
const char* param_type_name(ParamType t);

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::String;
  bool required = false;
  Value default_value;               // used when the parameter is absent (null: none)
  std::string doc;                   // one line for the editor's side panel
  std::vector<std::string> choices;  // when non-empty, a constant value must be one of these
};

struct RuleSpec {
  std::string name;
  std::string group;
  std::string doc;  // one paragraph
  std::vector<ParamSpec> params;
  std::vector<std::string> chain_points;
  /// The node's own `then` keys become extra chain points (Switch cases).
  bool user_chain_points = false;
  /// The rule waits on a service (HTTP, SQL, LLM); hosts run such rule sets off their
  /// event loops.
  bool may_wait = false;
  /// The rule reads the request body (HttpServerExecute forwards it); a configuration
  /// using such a rule never gets a streamed request body.
  bool reads_body = false;
  /// For rules that come from an extension: its name and version ("" for native rules).
  std::string extension{};
  std::string extension_version{};
};

class ExecContext;

/// One compiled parameter value.
class Param {
 public:
  Param() = default;
  static Param constant(Value v);
  static Param from_template(Template t);
  static Param from_expression(Expression e);
  static Param variable(uint32_t slot, std::string name);
  /// A JSON list or map whose members are parameters themselves.
  static Param composite(Value shape, std::vector<std::pair<std::string, Param>> members,
                         bool is_list);

  bool present() const { return kind_ != Kind::Absent; }
  bool is_constant() const { return kind_ == Kind::Constant; }
  /// The typed value (a reference to a constant or to `scratch`). Throws EvalError.
  const Value& eval(ExecContext& ctx, Value& scratch) const;
  Value value(ExecContext& ctx) const;
  /// Appends the text form.
  void render(ExecContext& ctx, std::string& out) const;
  /// Appends the value as JSON: what append_json(out, value(ctx)) appends, written
  /// member by member for a JSON list or map parameter without building it first.
  void append_json(ExecContext& ctx, std::string& out) const;
  std::string text(ExecContext& ctx) const;
  /// Typed reads that throw EvalError naming the parameter when the value has another type.
  double number(ExecContext& ctx) const;
  bool boolean(ExecContext& ctx) const;
  /// For Variable parameters: the slot and name.
  uint32_t slot() const { return slot_; }
  const std::string& name() const { return name_; }
  /// The constant value (when is_constant()).
  const Value& constant_value() const { return constant_; }
  void set_param_name(std::string n) { param_name_ = std::move(n); }

 private:
  enum class Kind { Absent, Constant, Template, Expression, Variable, CompositeList, CompositeMap };
  Kind kind_ = Kind::Absent;
  Value constant_;
  Template tmpl_;
  Expression expr_;
  uint32_t slot_ = 0;
  std::string name_;
  std::string param_name_;
  std::vector<std::pair<std::string, Param>> members_;
};

/// Parameters of one node, in the order of the RuleSpec.
class Params {
 public:
  const Param& operator[](std::string_view name) const;
  const Param& at(size_t i) const { return values_[i]; }
  void add(std::string name, Param p) {
    names_.push_back(std::move(name));
    values_.push_back(std::move(p));
  }

 private:
  std::vector<std::string> names_;
  std::vector<Param> values_;
};

/// Where a rule keeps data across requests that must survive nothing but the activation,
/// or reads a data file of the configuration. Data files reload when the file changes.
class DataFile {
 public:
  using Parser = std::function<std::shared_ptr<const void>(std::string_view content,
                                                           std::string* error)>;
  DataFile(std::string display_path, std::string disk_path, std::string content, Parser parse);
  /// The current parsed data; reloads (at most once a second) when the file on disk changed.
  /// Keeps the old data and logs when a reload fails to parse.
  template <typename T>
  std::shared_ptr<const T> get(Logger* logger) const {
    return std::static_pointer_cast<const T>(current(logger));
  }
  /// Like get, without touching the shared reference count: the pointer stays valid on this
  /// thread until this thread's next get_pinned call on any data file. For the request path.
  template <typename T>
  const T* get_pinned(Logger* logger) const {
    return static_cast<const T*>(pinned(logger));
  }
  /// Parses the initial content; false with `error` when it does not parse.
  bool load(std::string* error);
  const std::string& path() const { return display_path_; }

 private:
  std::shared_ptr<const void> current(Logger* logger) const;
  const void* pinned(Logger* logger) const;
  void maybe_reload(Logger* logger) const;
  const uint64_t id_;
  mutable std::atomic<uint64_t> version_{0};
  std::string display_path_, disk_path_;
  std::string initial_;
  Parser parse_;
  mutable std::shared_ptr<const void> data_;
  mutable std::atomic<int64_t> next_check_ms_{0};
  mutable std::atomic<int64_t> mtime_{0};
  mutable std::atomic_flag reloading_ = ATOMIC_FLAG_INIT;
};

/// What a factory sees while compiling one node.
class CompileContext {
 public:
  virtual ~CompileContext() = default;
  virtual const Params& params() const = 0;
  /// The node's chain point names, in index order (spec ones, then user ones).
  virtual const std::vector<std::string>& chain_points() const = 0;
  /// Reports an error on a parameter ("" for the node as a whole).
  virtual void error(std::string_view param, std::string message) = 0;
  virtual void warning(std::string_view param, std::string message) = 0;
  /// Compiles extra expressions or templates (for rules that build them from data).
  virtual CompileEnv& env() = 0;
  /// A data file of the configuration (path relative to the configuration, e.g.
  /// "data/blacklist.csv"); nullptr with an error reported when it is missing or does not
  /// parse.
  virtual std::shared_ptr<DataFile> data_file(std::string_view param, std::string_view path,
                                              DataFile::Parser parse) = 0;
  /// The names of the configuration's modes.
  virtual const std::vector<std::string>& mode_names() const = 0;
  virtual const std::string& node_id() const = 0;
  /// The configuration's files (content/ for rules that serve static content). Valid only
  /// during compilation: copy what the rule needs.
  virtual const Package& package() const = 0;
  /// Whether the node's `then` sends chain point `name` to at least one node (rules whose
  /// `error` is not wired fail the request instead, so a FailSafePoint above catches it).
  virtual bool chain_wired(std::string_view name) const = 0;
  /// The configuration's databases (cap.json `databases`): name to resolved address.
  virtual const std::map<std::string, std::string>& databases() const = 0;
};

/// Returned by execute: a chain point index, or one of these.
inline constexpr int kNoChain = -1;  // take no chain point (end of this branch)
inline constexpr int kHandled = -2;  // the rule ran its chains itself (run_chain)

class Rule {
 public:
  virtual ~Rule() = default;
  /// Runs for one request. Returns the chain point index to take, kNoChain or kHandled.
  /// Throws EvalError to fail the request (a FailSafePoint above catches it).
  virtual int execute(ExecContext& ctx) const = 0;
  /// Counters the rule keeps itself (an LLM rule's tokens), as (name, value): shown in the
  /// performance data and /metrics. Thread-safe; none by default.
  virtual void counters(std::vector<std::pair<std::string, uint64_t>>& out) const { (void)out; }
};

/// Makes the Rule for one node; returns nullptr after reporting errors on `cc`.
using RuleFactory = std::function<std::unique_ptr<Rule>(CompileContext& cc)>;

struct RuleType {
  RuleSpec spec;
  RuleFactory factory;
};

/// The catalogue. Filled at start (base rules) and at run time (extensions); readers take
/// a snapshot, so a configuration that loaded keeps the rule types it was compiled with.
class RuleRegistry {
 public:
  /// Adds or replaces a rule type. Thread-safe.
  void add(RuleSpec spec, RuleFactory factory);
  /// Removes a rule type; returns whether it existed.
  bool remove(std::string_view name);
  /// The type named `name`, or nullptr.
  std::shared_ptr<const RuleType> find(std::string_view name) const;
  /// Every type, sorted by group then name.
  std::vector<std::shared_ptr<const RuleType>> all() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const RuleType>> types_;
};

/// Fills a registry with the base catalogue (DESIGN §4).
void register_base_rules(RuleRegistry& registry);

}  // namespace cap

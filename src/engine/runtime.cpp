// The executor: depth-first chain processing over compiled rule sets, the HTTP input
// adaptor that fills the web variables, performance data and trace.
#include <algorithm>
#include <cctype>
#include <chrono>

#include "cap/engine.h"
#include "engine/span_clock.h"

namespace cap {

namespace {

constexpr int kMaxDepth = 2000;  // nodes on the stack: guards runaway nesting
// Nodes on this thread's stack. run_node recurses once per node along a chain, so a long
// chain (a file may hold 100,000+ nodes) would overflow the stack without this limit; a
// thread runs one request at a time, so a per-thread count is the request's depth.
thread_local int t_node_depth = 0;
constexpr size_t kKeptTraces = 200;


bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// Fills HEADERS, BODY and COOKIES on first read.
class RequestInput : public LazyVariables {
 public:
  explicit RequestInput(const Request& r) : req_(r) {}
  Value materialize(uint32_t slot) override {
    switch (slot) {
      case kHeaders: {
        Map m;
        m.reserve(req_.headers.size());
        for (auto& [k, v] : req_.headers) {
          std::string name = lower(k);
          if (Value* existing = m.find(name)) {
            // Repeated headers fold into one comma-separated value, as HTTP defines.
            std::string joined = existing->to_text() + ", " + std::string(v);
            *existing = Value(std::move(joined));
          } else {
            m.append(std::move(name), Value(v));
          }
        }
        return Value(std::move(m));
      }
      case kBody:
        if (req_.body_streamed) return Value();
        return Value(req_.body);
      case kRequestUrl: {
        std::string_view host;
        for (auto& [k, v] : req_.headers)
          if (iequals(k, "host")) host = v;
        std::string url(req_.scheme);
        url += "://";
        url += host.empty() ? std::string_view("localhost") : host;
        url += req_.target;
        return Value(std::move(url));
      }
      case kCookies: {
        Map m;
        for (auto& [k, v] : req_.headers) {
          if (!iequals(k, "cookie")) continue;
          size_t start = 0;
          while (start < v.size()) {
            size_t end = v.find(';', start);
            if (end == std::string_view::npos) end = v.size();
            std::string_view part = v.substr(start, end - start);
            while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
            size_t eq = part.find('=');
            if (eq != std::string_view::npos && eq > 0)
              m.set(std::string(part.substr(0, eq)), Value(url_decode(part.substr(eq + 1), false)));
            start = end + 1;
          }
        }
        return Value(std::move(m));
      }
      default:
        return Value();
    }
  }

 private:
  const Request& req_;
};

/// An EvalError that has learned which node raised it, on its way up.
class NodeError : public EvalError {
 public:
  NodeError(const EvalError& e, std::string node) : EvalError(e.what()), node_(std::move(node)) {}
  const std::string& node() const { return node_; }

 private:
  std::string node_;
};

}  // namespace

/// Records one transaction while the trace is armed.
class Trace : public VariableObserver {
 public:
  TraceRecord record;
  std::string ruleset;
  void on_set(std::string_view name, const Value& v) override {
    std::string d(name);
    d += " = ";
    std::string text = v.is_string() ? "'" + v.as_string() + "'" : to_json(v);
    if (text.size() > 200) text = text.substr(0, 200) + "...";
    d += text;
    add(TraceEvent::Kind::Set, "", std::move(d));
  }
  void on_delete(std::string_view name) override {
    add(TraceEvent::Kind::Delete, "", std::string(name));
  }
  void add(TraceEvent::Kind k, std::string node, std::string detail) {
    if (record.events.size() < 10000)
      record.events.push_back({k, ruleset, std::move(node), std::move(detail)});
  }
};

Runtime::Runtime(std::shared_ptr<const Configuration> config, HostServices services)
    : config_(std::move(config)), services_(services) {
  if (!services_.clock) services_.clock = &default_clock_;
}

Runtime::~Runtime() = default;

std::string Runtime::mode() const {
  int m = mode_.load(std::memory_order_relaxed);
  return m < 0 ? std::string() : config_->modes[static_cast<size_t>(m)].first;
}

bool Runtime::set_mode(std::string_view name) {
  int next = -2;
  if (name.empty() || name == "default") next = -1;
  for (size_t i = 0; next == -2 && i < config_->modes.size(); ++i)
    if (config_->modes[i].first == name) next = static_cast<int>(i);
  if (next == -2) return false;
  int previous = mode_.exchange(next);
  if (previous != next && mode_listener_)
    mode_listener_(next < 0 ? std::string() : config_->modes[static_cast<size_t>(next)].first);
  return true;
}

void Runtime::arm_trace(int n) {
  {
    std::lock_guard lock(trace_mu_);
    traces_.clear();
  }
  trace_armed_.store(std::max(0, n));
}

std::vector<TraceRecord> Runtime::traces() const {
  std::lock_guard lock(trace_mu_);
  return {traces_.begin(), traces_.end()};
}

Logger& ExecContext::logger() {
  static StderrLogger fallback;
  return services.logger ? *services.logger : fallback;
}

int64_t ExecContext::now_ms() const { return services.clock->now_ms(); }

void ExecContext::note(std::string detail) {
  if (trace_) trace_->add(TraceEvent::Kind::Note, current_ ? current_->id : "", std::move(detail));
}

void ExecContext::run_chain(int chain) {
  const Node* node = current_;
  if (!node) return;
  runtime_.run_chain(*this, *node, chain);
  current_ = node;
}

void Runtime::run_chain(ExecContext& ctx, const Node& node, int chain) {
  if (chain < 0 || static_cast<size_t>(chain) >= node.chains.size()) return;
  if (ctx.trace_) ctx.trace_->add(TraceEvent::Kind::Chain, node.id, node.chain_names[chain]);
  for (const Node* child : node.chains[static_cast<size_t>(chain)]) {
    if (ctx.completed_) return;
    run_node(ctx, *child);
  }
}

void Runtime::run_node(ExecContext& ctx, const Node& node) {
  if (ctx.frames_.size() + 1 > kMaxDepth) throw EvalError("rule sets nested too deeply at node " + node.id);
  if (t_node_depth >= kMaxDepth)
    throw EvalError("chain nested too deeply at node " + node.id + " (more than " +
                    std::to_string(kMaxDepth) + " nodes on one path)");
  struct Depth {
    Depth() { ++t_node_depth; }
    ~Depth() { --t_node_depth; }
  } depth;
  if (ctx.trace_) ctx.trace_->add(TraceEvent::Kind::Enter, node.id, node.rule_name);
  struct Restore {  // the caller's node again, also when an error unwinds through here
    ExecContext& c;
    const Node* saved;
    ~Restore() { c.current_ = saved; }
  } restore{ctx, ctx.current_};
  ctx.current_ = &node;
  if (node.ruleset) {  // a sub rule set: its RuleSetExit nodes continue with our chains
    if (ctx.counts_) node.stats.count.fetch_add(1, std::memory_order_relaxed);
    run_ruleset(ctx, *node.ruleset, &node);
  } else if (node.exit_index >= 0) {
    if (ctx.counts_) node.stats.count.fetch_add(1, std::memory_order_relaxed);
    if (ctx.frames_.empty()) {
      ctx.top_exit_ = node.exit_index;  // a tool call's outcome
    } else {
      const Node* caller = ctx.frames_.back();
      ctx.frames_.pop_back();
      Trace* t = ctx.trace_;
      std::string inner;
      if (t) {
        inner = t->ruleset;
        t->add(TraceEvent::Kind::Return, node.id, caller->chain_names[node.exit_index]);
      }
      try {
        run_chain(ctx, *caller, node.exit_index);
      } catch (...) {
        ctx.frames_.push_back(caller);
        throw;
      }
      ctx.frames_.push_back(caller);
      if (t) t->ruleset = inner;
    }
  } else {
    int chain;
    if (ctx.timings_) {
      int64_t t0 = span_clock_ns();
      try {
        chain = node.rule->execute(ctx);
      } catch (const NodeError&) {
        throw;
      } catch (const EvalError& e) {
        node.stats.errors.fetch_add(1, std::memory_order_relaxed);
        throw NodeError(e, node.id);
      }
      node.stats.nanos.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, span_clock_ns() - t0)),
                                 std::memory_order_relaxed);
      node.stats.count.fetch_add(1, std::memory_order_relaxed);
    } else {
      if (ctx.counts_) node.stats.count.fetch_add(1, std::memory_order_relaxed);
      try {
        chain = node.rule->execute(ctx);
      } catch (const NodeError&) {
        throw;
      } catch (const EvalError& e) {
        node.stats.errors.fetch_add(1, std::memory_order_relaxed);
        throw NodeError(e, node.id);
      }
    }
    ctx.current_ = &node;
    if (chain >= 0) run_chain(ctx, node, chain);
  }
}

void Runtime::run_ruleset(ExecContext& ctx, const RuleSet& rs, const Node* parent) {
  if (!rs.start) return;
  std::string outer;
  if (ctx.trace_) {
    outer = ctx.trace_->ruleset;
    ctx.trace_->ruleset = rs.name;
  }
  if (parent) ctx.frames_.push_back(parent);
  try {
    run_node(ctx, *rs.start);
  } catch (...) {
    if (parent) ctx.frames_.pop_back();
    if (ctx.trace_) ctx.trace_->ruleset = outer;
    throw;
  }
  if (parent) ctx.frames_.pop_back();
  if (ctx.trace_) ctx.trace_->ruleset = outer;
}

Outcome Runtime::run(ExecContext& ctx, const RuleSet* rs) {
  Outcome o;
  o.ruleset = rs;
  if (!rs) return o;
  try {
    run_ruleset(ctx, *rs, nullptr);
  } catch (const NodeError& e) {
    o.failed = true;
    o.error = std::string("rule set ") + rs->name + ", node " + e.node() + ": " + e.what();
  } catch (const EvalError& e) {
    o.failed = true;
    o.error = std::string("rule set ") + rs->name + ": " + e.what();
  } catch (const std::exception& e) {
    o.failed = true;
    o.error = std::string("rule set ") + rs->name + ": internal error: " + e.what();
  }
  if (o.failed && ctx.trace_) ctx.trace_->add(TraceEvent::Kind::Error, "", o.error);
  ctx.current_ = nullptr;
  ctx.frames_.clear();
  return o;
}

std::string Runtime::startup() {
  if (!config_->startup) return "";
  Variables vars(config_->symbols);
  for (auto& [slot, v] : config_->globals) vars.set(slot, v);
  Response res;
  ExecContext ctx(vars, services_, *this, res, nullptr);
  ctx.counts_ = config_->performance != PerformanceLevel::Off;
  ctx.timings_ = config_->performance == PerformanceLevel::Timings;
  Outcome o = run(ctx, config_->startup);
  return o.failed ? o.error : "";
}

Outcome Runtime::handle(const Request& request, Response& response, Workspace& ws) {
  return handle(request, response, ws, nullptr);
}

Outcome Runtime::handle(const Request& req, Response& response, Workspace& ws,
                        const std::function<void(Variables&)>& inspect) {
  const Configuration& cfg = *config_;
  if (ws.serial_ != cfg.serial || !ws.vars_) {
    ws.vars_ = std::make_unique<Variables>(cfg.symbols);
    ws.serial_ = cfg.serial;
  }
  requests_.fetch_add(1, std::memory_order_relaxed);
  Variables& vars = *ws.vars_;
  for (auto& [slot, v] : cfg.globals) vars.set(slot, v);

  // The HTTP input adaptor.
  RequestInput input(req);
  vars.set_lazy(&input);
  int64_t ts = req.timestamp_ms ? req.timestamp_ms : services_.clock->now_ms();
  std::string_view target = req.target;
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  vars.set(kMethod, Value(req.method));
  vars.set(kUri, Value(path.find('%') == std::string_view::npos ? std::string(path) : url_decode(path, false)));
  vars.set(kQuery, Value(query));
  vars.set(kRequestTimestamp, Value(static_cast<double>(ts)));
  vars.set(kRemoteAddr, Value(req.remote_addr));
  vars.mark_lazy(kRequestUrl);
  vars.mark_lazy(kHeaders);
  vars.mark_lazy(kBody);
  vars.mark_lazy(kCookies);
  if (!query.empty())
    for_each_query_param(query, [&](std::string_view k, std::string v) {
      if (!k.empty()) vars.set(k, Value(std::move(v)));
    });
  if (!req.body_streamed && !req.body.empty() && (req.method == "POST" || req.method == "PUT" || req.method == "PATCH")) {
    for (auto& [k, v] : req.headers)
      if (iequals(k, "content-type") &&
          lower(v.substr(0, v.find(';'))) == "application/x-www-form-urlencoded") {
        for (auto& [fk, fv] : parse_query(req.body))
          if (!fk.empty()) vars.set(std::string_view(fk), Value(std::move(fv)));
      }
  }

  ExecContext ctx(vars, services_, *this, response, &req);
  ctx.counts_ = cfg.performance != PerformanceLevel::Off;
  ctx.timings_ = cfg.performance == PerformanceLevel::Timings;

  std::unique_ptr<Trace> trace;
  if (trace_armed_.load(std::memory_order_relaxed) > 0) {
    int n = trace_armed_.load();
    while (n > 0 && !trace_armed_.compare_exchange_weak(n, n - 1)) {
    }
    if (n > 0) {
      trace = std::make_unique<Trace>();
      trace->record.request = std::string(req.method) + " " + std::string(req.target);
      trace->record.timestamp_ms = ts;
      ctx.trace_ = trace.get();
      vars.set_observer(trace.get());
    }
  }

  Outcome outcome;
  if (cfg.content) {
    outcome = run(ctx, cfg.content);
    if (outcome.failed || response.set) goto done;
    ctx.completed_ = false;
  }
  {
    int m = mode_.load(std::memory_order_relaxed);
    const RuleSet* entry = m >= 0 ? cfg.modes[static_cast<size_t>(m)].second : cfg.entry;
    outcome = run(ctx, entry);
  }
done:
  if (cfg.completion) {
    ctx.completed_ = false;
    Outcome c = run(ctx, cfg.completion);
    if (c.failed && !outcome.failed) outcome = c;
  }
  outcome.responded = response.set;
  if (trace) {
    if (ctx.completed_) trace->add(TraceEvent::Kind::Complete, "", "");
    trace->record.status = response.set ? response.status : 0;
    std::lock_guard lock(trace_mu_);
    traces_.push_back(std::move(trace->record));
    while (traces_.size() > kKeptTraces) traces_.pop_front();
  }
  if (inspect) {
    vars.set_observer(nullptr);
    inspect(vars);
  }
  vars.clear();
  return outcome;
}

CallResult Runtime::call_ruleset(const RuleSet& rs, const Map& args, ExecContext* caller,
                                 std::string_view label) {
  const Configuration& cfg = *config_;
  Variables vars(cfg.symbols);
  for (auto& [slot, v] : cfg.globals) vars.set(slot, v);
  CallResult out;
  ExecContext ctx(vars, services_, *this, out.response, caller ? caller->request() : nullptr);
  ctx.counts_ = cfg.performance != PerformanceLevel::Off;
  ctx.timings_ = cfg.performance == PerformanceLevel::Timings;
  std::unique_ptr<Trace> own;
  if (caller) {
    ctx.trace_ = caller->trace_;
  } else if (trace_armed_.load(std::memory_order_relaxed) > 0) {
    int n = trace_armed_.load();
    while (n > 0 && !trace_armed_.compare_exchange_weak(n, n - 1)) {
    }
    if (n > 0) {
      own = std::make_unique<Trace>();
      own->record.request = std::string(label.empty() ? std::string_view(rs.name) : label);
      own->record.timestamp_ms = services_.clock->now_ms();
      ctx.trace_ = own.get();
    }
  }
  if (ctx.trace_) vars.set_observer(ctx.trace_);
  for (const auto& [name, value] : args) vars.set(std::string_view(name), value);
  Outcome o = run(ctx, &rs);
  out.failed = o.failed;
  out.error = std::move(o.error);
  if (ctx.top_exit_ >= 0 && static_cast<size_t>(ctx.top_exit_) < rs.exits.size())
    out.exit = rs.exits[static_cast<size_t>(ctx.top_exit_)];
  out.result = vars.get(std::string_view(rs.result));
  vars.set_observer(nullptr);
  if (own) {
    own->record.status = out.failed ? 500 : 200;
    std::lock_guard lock(trace_mu_);
    traces_.push_back(std::move(own->record));
    while (traces_.size() > kKeptTraces) traces_.pop_front();
  }
  return out;
}

Value Runtime::stats() const {
  Map root;
  root.set("requests", Value(requests()));
  root.set("performance", Value(config_->performance == PerformanceLevel::Off       ? "off"
                                : config_->performance == PerformanceLevel::Counts ? "counts"
                                                                                    : "timings"));
  List sets;
  for (auto& rs : config_->rulesets) {
    Map rsm;
    rsm.set("name", Value(rs->name));
    List nodes;
    for (auto& n : rs->nodes) {
      Map nm;
      uint64_t count = n->stats.count.load(std::memory_order_relaxed);
      uint64_t nanos = n->stats.nanos.load(std::memory_order_relaxed);
      nm.set("id", Value(n->id));
      nm.set("rule", Value(n->rule_name));
      nm.set("count", Value(count));
      nm.set("inline_ns", Value(nanos));
      nm.set("avg_ns", Value(count ? static_cast<double>(nanos) / static_cast<double>(count) : 0.0));
      nm.set("errors", Value(n->stats.errors.load(std::memory_order_relaxed)));
      if (n->rule) {
        std::vector<std::pair<std::string, uint64_t>> counters;
        n->rule->counters(counters);
        if (!counters.empty()) {
          Map cm;
          for (auto& [name, value] : counters) cm.set(name, Value(value));
          nm.set("counters", Value(std::move(cm)));
        }
      }
      nodes.push_back(Value(std::move(nm)));
    }
    rsm.set("nodes", Value(std::move(nodes)));
    sets.push_back(Value(std::move(rsm)));
  }
  root.set("rulesets", Value(std::move(sets)));
  return Value(std::move(root));
}

namespace {
const char* kind_name(TraceEvent::Kind k) {
  switch (k) {
    case TraceEvent::Kind::Enter: return "enter";
    case TraceEvent::Kind::Chain: return "chain";
    case TraceEvent::Kind::Return: return "return";
    case TraceEvent::Kind::Set: return "set";
    case TraceEvent::Kind::Delete: return "delete";
    case TraceEvent::Kind::Complete: return "complete";
    case TraceEvent::Kind::Error: return "error";
    case TraceEvent::Kind::Note: return "note";
  }
  return "event";
}
}  // namespace

std::string format_trace(const TraceRecord& t) {
  std::string out = "trace: " + t.request + " -> " + (t.status ? std::to_string(t.status) : std::string("no response")) + "\n";
  for (auto& e : t.events) {
    out += "  ";
    out += kind_name(e.kind);
    out.append(10 - std::min<size_t>(9, std::string_view(kind_name(e.kind)).size()), ' ');
    if (!e.node.empty()) out += (e.ruleset.empty() ? "" : e.ruleset + "/") + e.node;
    if (!e.detail.empty()) out += (e.node.empty() ? "" : " ") + e.detail;
    out += "\n";
  }
  return out;
}

Value trace_to_value(const TraceRecord& t) {
  Map m;
  m.set("request", Value(t.request));
  m.set("timestamp_ms", Value(t.timestamp_ms));
  m.set("status", Value(t.status));
  List events;
  for (auto& e : t.events) {
    Map em;
    em.set("kind", Value(kind_name(e.kind)));
    if (!e.ruleset.empty()) em.set("ruleset", Value(e.ruleset));
    if (!e.node.empty()) em.set("node", Value(e.node));
    if (!e.detail.empty()) em.set("detail", Value(e.detail));
    events.push_back(Value(std::move(em)));
  }
  m.set("events", Value(std::move(events)));
  return Value(std::move(m));
}

}  // namespace cap

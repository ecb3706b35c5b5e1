#include "agent/metrics.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>

#include "agent/serving.h"

namespace cap::agent {

namespace {

constexpr size_t kStatuses = 600;
constexpr size_t kUriSlots = 512;  // per thread; a power of two
constexpr size_t kMaxPathLength = 256;
constexpr size_t kProbes = 8;

/// Adds one on a counter only this thread writes: no read-modify-write instruction needed.
inline void bump(std::atomic<uint64_t>& c, uint64_t by = 1) {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
}

void append_double(std::string& out, double d) {
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%.9g", d);
  out.append(buf, static_cast<size_t>(n));
}

}  // namespace

struct UriSlot {
  std::atomic<uint64_t> hash{0};  // 0: free; published after `path` is written
  std::string path;
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> nanos{0};
};

struct alignas(64) Metrics::ThreadBlock {
  std::array<std::atomic<uint64_t>, kStatuses> by_status{};
  std::array<std::atomic<uint64_t>, kBuckets.size() + 1> buckets{};  // last: above 10 s
  std::atomic<uint64_t> nanos_sum{0};
  std::array<UriSlot, kUriSlots> uris;
  UriSlot other;  // paths that found no free slot

  void record_uri(std::string_view path, int64_t nanos) {
    if (path.size() > kMaxPathLength) path = path.substr(0, kMaxPathLength);
    uint64_t h = std::hash<std::string_view>{}(path) | 1;
    for (size_t i = 0; i < kProbes; ++i) {
      UriSlot& s = uris[(h + i) & (kUriSlots - 1)];
      uint64_t sh = s.hash.load(std::memory_order_relaxed);  // only this thread writes it
      if (sh == 0) {
        s.path.assign(path);
        s.hash.store(h, std::memory_order_release);
      } else if (sh != h || s.path != path) {
        continue;
      }
      bump(s.count);
      bump(s.nanos, static_cast<uint64_t>(nanos));
      return;
    }
    bump(other.count);
    bump(other.nanos, static_cast<uint64_t>(nanos));
  }
};

Metrics::Metrics() = default;
Metrics::~Metrics() = default;

Metrics::ThreadBlock& Metrics::local() {
  struct Cache {
    const Metrics* owner = nullptr;
    ThreadBlock* block = nullptr;
  };
  thread_local Cache cache;
  if (cache.owner != this) {
    auto block = std::make_unique<ThreadBlock>();
    std::lock_guard lock(mu_);
    cache.block = block.get();
    cache.owner = this;
    blocks_.push_back(std::move(block));
  }
  return *cache.block;
}

void Metrics::record(int status, int64_t nanos, std::string_view path) {
  ThreadBlock& b = local();
  bump(b.by_status[status >= 0 && static_cast<size_t>(status) < kStatuses ? status : 0]);
  double seconds = static_cast<double>(nanos) / 1e9;
  size_t bucket = 0;
  while (bucket < kBuckets.size() && seconds > kBuckets[bucket]) ++bucket;
  bump(b.buckets[bucket]);
  bump(b.nanos_sum, static_cast<uint64_t>(nanos > 0 ? nanos : 0));
  if (!path.empty()) b.record_uri(path, nanos);
}

std::string Metrics::prometheus(const Serving& serving) const {
  std::array<uint64_t, kStatuses> statuses{};
  std::array<uint64_t, kBuckets.size() + 1> buckets{};
  uint64_t nanos_sum = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& b : blocks_) {
      for (size_t i = 0; i < kStatuses; ++i)
        statuses[i] += b->by_status[i].load(std::memory_order_relaxed);
      for (size_t i = 0; i < buckets.size(); ++i)
        buckets[i] += b->buckets[i].load(std::memory_order_relaxed);
      nanos_sum += b->nanos_sum.load(std::memory_order_relaxed);
    }
  }
  std::string out;
  out.reserve(4096);
  out += "# HELP cap_up Whether the agent is running.\n# TYPE cap_up gauge\ncap_up 1\n";

  out += "# HELP cap_requests_total Web requests answered, by status.\n";
  out += "# TYPE cap_requests_total counter\n";
  for (size_t i = 0; i < kStatuses; ++i)
    if (statuses[i]) {
      out += "cap_requests_total{status=\"" + std::to_string(i) + "\"} ";
      out += std::to_string(statuses[i]) + "\n";
    }

  out += "# HELP cap_request_duration_seconds Time from reading a web request to answering it.\n";
  out += "# TYPE cap_request_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    cumulative += buckets[i];
    out += "cap_request_duration_seconds_bucket{le=\"";
    append_double(out, kBuckets[i]);
    out += "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += buckets[kBuckets.size()];
  out += "cap_request_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += "cap_request_duration_seconds_sum ";
  append_double(out, static_cast<double>(nanos_sum) / 1e9);
  out += "\ncap_request_duration_seconds_count " + std::to_string(cumulative) + "\n";

  out += "# HELP cap_rule_executions_total Executions per rule node of the active configuration.\n";
  out += "# TYPE cap_rule_executions_total counter\n";
  std::string inline_seconds =
      "# HELP cap_rule_inline_seconds_total Time spent in each rule node itself (not its "
      "chains), with performance \"timings\".\n# TYPE cap_rule_inline_seconds_total counter\n";
  if (serving.runtime) {
    const Configuration& cfg = serving.runtime->configuration();
    for (auto& rs : cfg.rulesets)
      for (auto& n : rs->nodes) {
        std::string labels = "{ruleset=\"";
        append_label_value(labels, rs->name);
        labels += "\",node=\"";
        append_label_value(labels, n->id);
        labels += "\",rule=\"";
        append_label_value(labels, n->rule_name);
        labels += "\"}";
        out += "cap_rule_executions_total" + labels + " " +
               std::to_string(n->stats.count.load(std::memory_order_relaxed)) + "\n";
        inline_seconds += "cap_rule_inline_seconds_total" + labels + " ";
        append_double(inline_seconds,
                      static_cast<double>(n->stats.nanos.load(std::memory_order_relaxed)) / 1e9);
        inline_seconds += "\n";
      }
  }
  out += inline_seconds;

  // Counters rules keep themselves (an LLM rule's calls and tokens): one metric per name.
  std::map<std::string, std::string> counters;
  if (serving.runtime) {
    const Configuration& cfg = serving.runtime->configuration();
    std::vector<std::pair<std::string, uint64_t>> values;
    for (auto& rs : cfg.rulesets)
      for (auto& n : rs->nodes) {
        if (!n->rule) continue;
        values.clear();
        n->rule->counters(values);
        for (auto& [name, value] : values) {
          std::string& text = counters["cap_rule_" + name + "_total"];
          text += "cap_rule_" + name + "_total{ruleset=\"";
          append_label_value(text, rs->name);
          text += "\",node=\"";
          append_label_value(text, n->id);
          text += "\",rule=\"";
          append_label_value(text, n->rule_name);
          text += "\"} " + std::to_string(value) + "\n";
        }
      }
  }
  for (auto& [metric, text] : counters) {
    out += "# HELP " + metric + " A counter the rule keeps (see the rule's documentation).\n";
    out += "# TYPE " + metric + " counter\n";
    out += text;
  }

  out += "# HELP cap_configuration_info The active configuration.\n";
  out += "# TYPE cap_configuration_info gauge\n";
  if (!serving.blank()) {
    out += "cap_configuration_info{id=\"";
    append_label_value(out, serving.id);
    out += "\",name=\"";
    append_label_value(out, serving.name);
    out += "\",sha256=\"";
    append_label_value(out, serving.sha256);
    out += "\"} 1\n";
  }
  for (auto& section : sections_) section.prometheus(out);
  return out;
}

void Metrics::add_section(std::string name, std::function<void(std::string&)> prometheus,
                          std::function<Value()> stats) {
  sections_.push_back({std::move(name), std::move(prometheus), std::move(stats)});
}

Value Metrics::sections() const {
  Map m;
  for (auto& section : sections_) m.set(section.name, section.stats());
  return Value(std::move(m));
}

Value Metrics::summary() const {
  std::map<std::string, std::pair<uint64_t, uint64_t>, std::less<>> uris;
  std::array<uint64_t, kStatuses> statuses{};
  uint64_t total = 0;
  {
    std::lock_guard lock(mu_);
    for (auto& b : blocks_) {
      for (size_t i = 0; i < kStatuses; ++i) {
        uint64_t n = b->by_status[i].load(std::memory_order_relaxed);
        statuses[i] += n;
        total += n;
      }
      auto add = [&](const std::string& path, const UriSlot& s) {
        auto& e = uris[path];
        e.first += s.count.load(std::memory_order_relaxed);
        e.second += s.nanos.load(std::memory_order_relaxed);
      };
      for (auto& s : b->uris)
        if (s.hash.load(std::memory_order_acquire) != 0) add(s.path, s);
      if (b->other.count.load(std::memory_order_relaxed)) add("(other)", b->other);
    }
  }
  Map root;
  root.set("total", Value(total));
  Map by_status;
  for (size_t i = 0; i < kStatuses; ++i)
    if (statuses[i]) by_status.set(std::to_string(i), Value(statuses[i]));
  root.set("by_status", Value(std::move(by_status)));
  List list;
  for (auto& [path, cn] : uris) {
    Map u;
    u.set("uri", Value(path));
    u.set("count", Value(cn.first));
    u.set("avg_ms",
          Value(cn.first ? static_cast<double>(cn.second) / 1e6 / static_cast<double>(cn.first)
                         : 0.0));
    list.push_back(Value(std::move(u)));
  }
  root.set("uris", Value(std::move(list)));
  return Value(std::move(root));
}

}  // namespace cap::agent

// Request metrics for GET /metrics (Prometheus text, written by hand) and GET /v1/stats.
//
// Every thread that finishes requests has its own counter block (a cache-line aligned
// struct found through a thread_local pointer), written only by that thread with relaxed
// atomics, so the request path shares no cache line and takes no lock. A scrape sums the
// blocks. Per-URI counts live in a fixed open-addressed table per thread; paths beyond its
// capacity count under "(other)".
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cap/value.h"

namespace cap::agent {

struct Serving;

class Metrics {
 public:
  /// Upper bounds of the latency histogram, in seconds.
  static constexpr std::array<double, 14> kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  Metrics();
  ~Metrics();

  /// Counts one answered web request. `path` is the request path (no query); empty for
  /// requests the rules never saw (health, blank agent). Call from any thread.
  void record(int status, int64_t nanos, std::string_view path);

  /// The Prometheus exposition text (version 0.0.4), with the rule counters of `serving`.
  std::string prometheus(const Serving& serving) const;
  /// Per-URI counts and totals for GET /v1/stats: {"total", "by_status", "uris": [...]}.
  Value summary() const;

  /// A part outside the request path that reports too (the SQL pools): `prometheus`
  /// appends its series to /metrics, `stats` gives its section `name` of GET /v1/stats.
  /// Add sections before serving.
  void add_section(std::string name, std::function<void(std::string&)> prometheus,
                   std::function<Value()> stats);
  /// Every section's stats, by name.
  Value sections() const;

  struct ThreadBlock;

 private:
  struct Section {
    std::string name;
    std::function<void(std::string&)> prometheus;
    std::function<Value()> stats;
  };
  std::vector<Section> sections_;
  ThreadBlock& local();

  mutable std::mutex mu_;  // guards blocks_ (registration and scrapes only)
  std::vector<std::unique_ptr<ThreadBlock>> blocks_;
};

}  // namespace cap::agent

// In-process cost of running the bundled examples: nanoseconds and heap allocations per
// request, the web input adaptor included, no network. `make bench` runs it.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "cap/engine.h"

namespace {

std::atomic<uint64_t> g_allocations{0};

}  // namespace

// Counting allocator: every operator new in the process bumps one counter.
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace {

std::shared_ptr<const cap::Configuration> load(const std::string& name) {
  static cap::RuleRegistry reg;
  static bool filled = [] {
    cap::register_base_rules(reg);
    return true;
  }();
  (void)filled;
  cap::Package pkg;
  std::string err;
  if (!cap::read_folder(std::string(CAP_SOURCE_DIR) + "/examples/" + name, &pkg, &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    std::abort();
  }
  auto r = cap::load_configuration(pkg, reg);
  if (!r.ok()) {
    for (auto& d : r.diagnostics) std::fprintf(stderr, "%s\n", d.format().c_str());
    std::abort();
  }
  return r.configuration;
}

struct Fixture {
  cap::SystemClock clock;
  cap::StderrLogger logger{cap::LogLevel::Error};
  cap::MemoryVault vault;
  cap::HostServices services() {
    cap::HostServices s;
    s.clock = &clock;
    s.logger = &logger;
    s.vault = &vault;
    return s;
  }
};

void run_requests(benchmark::State& state, const std::string& example,
                  const std::vector<std::pair<std::string, std::string>>& targets,
                  int expected_status_a, int expected_status_b) {
  Fixture fx;
  auto cfg = load(example);
  cap::Runtime runtime(cfg, fx.services());
  cap::Workspace ws;
  cap::Response res;
  std::vector<cap::Request> reqs;
  for (auto& [target, addr] : targets) {
    cap::Request r;
    r.method = "GET";
    r.target = target;
    r.remote_addr = addr;
    r.headers = {{"Host", "bench.local"}, {"User-Agent", "wrk"}, {"Accept", "*/*"}};
    reqs.push_back(r);
  }
  size_t i = 0;
  // Warm up: first requests fill histories and reserve buffers.
  for (size_t w = 0; w < reqs.size() * 2; ++w) {
    res.reset();
    runtime.handle(reqs[w % reqs.size()], res, ws);
  }
  uint64_t allocs_before = g_allocations.load();
  uint64_t bad = 0;
  for (auto _ : state) {
    res.reset();
    cap::Outcome o = runtime.handle(reqs[i], res, ws);
    if (o.failed || (res.status != expected_status_a && res.status != expected_status_b)) ++bad;
    benchmark::DoNotOptimize(res.body.data());
    if (++i == reqs.size()) i = 0;
  }
  uint64_t allocs = g_allocations.load() - allocs_before;
  if (bad) state.SkipWithError("unexpected responses");
  state.counters["allocs/req"] =
      benchmark::Counter(static_cast<double>(allocs) / static_cast<double>(state.iterations()));
  state.counters["req/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void BM_Hello(benchmark::State& state) {
  run_requests(state, "hello", {{"/hello?name=World", "10.0.0.1"}}, 200, 200);
}
BENCHMARK(BM_Hello);

void BM_HelloNotFound(benchmark::State& state) {
  run_requests(state, "hello", {{"/other", "10.0.0.1"}}, 404, 404);
}
BENCHMARK(BM_HelloNotFound);

void BM_Blacklist(benchmark::State& state) {
  // A mix like the published workload: mostly clean addresses, some blacklisted, users
  // coming back from the same and from other addresses.
  std::vector<std::pair<std::string, std::string>> targets;
  static std::vector<std::string> storage;
  storage.clear();
  storage.reserve(4096);
  for (int u = 0; u < 64; ++u) {
    storage.push_back("/check?user=user" + std::to_string(u));
    storage.push_back("10.20." + std::to_string(u % 7) + "." + std::to_string(u % 250 + 1));
  }
  for (size_t k = 0; k + 1 < storage.size(); k += 2) targets.emplace_back(storage[k], storage[k + 1]);
  run_requests(state, "blacklist", targets, 200, 403);
}
BENCHMARK(BM_Blacklist);

}  // namespace

BENCHMARK_MAIN();

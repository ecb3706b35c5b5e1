#include "engine/span_clock.h"

#include <time.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <x86intrin.h>
#define CAP_SPAN_CLOCK_TSC 1
#endif

namespace cap {
namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

#ifdef CAP_SPAN_CLOCK_TSC

constexpr int64_t kCalibrationNs = 50'000'000;

/// The counter trusted by the kernel for its own clock is trusted here.
bool tsc_is_clocksource() {
  std::ifstream f("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::string name;
  return f && (f >> name) && name == "tsc";
}

struct Sample {
  int64_t ns = 0;
  uint64_t tsc = 0;
  bool ok = false;
};

/// steady_clock and the counter read together: the counter on both sides of the clock,
/// kept only when nothing (a preemption, an interrupt) came between.
Sample sample() {
  for (int i = 0; i < 16; ++i) {
    uint64_t before = __rdtsc();
    int64_t ns = steady_ns();
    uint64_t after = __rdtsc();
    if (after - before < 20'000) return Sample{ns, before + (after - before) / 2, true};
  }
  return Sample{};
}

struct Calibration {
  int64_t base_ns;
  uint64_t base_tsc;
  double ns_per_tick;
};

Calibration g_calibration;
std::atomic<const Calibration*> g_calibrated{nullptr};
std::atomic<bool> g_claimed{false};

/// Until calibrated: steady_clock, and the scale measured once 50 ms have gone by since the
/// first reading.
int64_t calibrating_now() {
  static const bool usable = tsc_is_clocksource();
  static const Sample first = usable ? sample() : Sample{};
  if (!first.ok) return steady_ns();
  Sample now = sample();
  if (!now.ok) return steady_ns();
  if (now.ns - first.ns >= kCalibrationNs && now.tsc > first.tsc &&
      !g_claimed.exchange(true, std::memory_order_acq_rel)) {
    double scale = double(now.ns - first.ns) / double(now.tsc - first.tsc);
    if (scale > 0.02 && scale < 50.0) {  // a counter between 20 MHz and 50 GHz
      g_calibration = Calibration{now.ns, now.tsc, scale};
      g_calibrated.store(&g_calibration, std::memory_order_release);
    }
  }
  return now.ns;
}

#endif

}  // namespace

int64_t span_clock_ns() {
#ifdef CAP_SPAN_CLOCK_TSC
  if (const Calibration* c = g_calibrated.load(std::memory_order_acquire)) {
    auto ticks = static_cast<int64_t>(__rdtsc() - c->base_tsc);
    return c->base_ns + static_cast<int64_t>(static_cast<double>(ticks) * c->ns_per_tick);
  }
  return calibrating_now();
#else
  return steady_ns();
#endif
}

bool span_clock_uses_tsc() {
#ifdef CAP_SPAN_CLOCK_TSC
  return g_calibrated.load(std::memory_order_acquire) != nullptr;
#else
  return false;
#endif
}

int64_t coarse_clock_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace cap

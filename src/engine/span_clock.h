// A cheap monotonic clock for timing short spans: rule timings and request latency, read
// several times per request.
#pragma once

#include <cstdint>

namespace cap {

/// Nanoseconds on a monotonic clock. Where the kernel itself keeps time with the CPU's
/// time-stamp counter (x86-64, clocksource "tsc": constant and synchronised across CPUs),
/// this reads the counter and scales it, about 10 ns a read against 25 for
/// std::chrono::steady_clock::now(). The scale is measured against steady_clock over the
/// first 50 ms in which the process reads this clock; until then, and on any other machine,
/// it is steady_clock. Differences of two readings are what is meant to be used.
int64_t span_clock_ns();

/// Whether span_clock_ns() reads the time-stamp counter now (for tests and diagnostics).
bool span_clock_uses_tsc();

/// Milliseconds on the kernel's coarse monotonic clock (a few milliseconds' resolution,
/// about 6 ns a read): for checks that run at most every so often.
int64_t coarse_clock_ms();

}  // namespace cap

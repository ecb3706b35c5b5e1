// The span clock: monotonic, in step with steady_clock, and on the time-stamp counter where
// the kernel keeps time with it.
#include "engine/span_clock.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace cap {
namespace {

using Steady = std::chrono::steady_clock;

// What the kernel says it keeps time with, as `cat` would show it.
std::string kernel_clocksource() {
  std::ifstream f("/sys/devices/system/clocksource/clocksource0/current_clocksource");
  std::string line;
  std::getline(f, line);
  return line;
}

// The clock calibrates itself over its first 50 ms of use: read it across that span first.
void use_past_calibration() {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(80);
  while (std::chrono::steady_clock::now() < until) {
    span_clock_ns();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  span_clock_ns();
}

TEST(SpanClock, NeverGoesBackwards) {
  int64_t last = span_clock_ns();
  for (int i = 0; i < 200000; ++i) {
    int64_t now = span_clock_ns();
    ASSERT_GE(now, last) << "reading " << i;
    last = now;
    if (i % 20000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(6));
  }
}

TEST(SpanClock, ReadsTheCounterWhereTheKernelDoes) {
  use_past_calibration();
  EXPECT_EQ(span_clock_uses_tsc(), kernel_clocksource() == "tsc") << kernel_clocksource();
}

TEST(SpanClock, KeepsStepWithSteadyClock) {
  use_past_calibration();
  for (int ms : {20, 150}) {
    Steady::time_point s0 = Steady::now();
    int64_t c0 = span_clock_ns();
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    int64_t c1 = span_clock_ns();
    Steady::time_point s1 = Steady::now();
    double steady = double(std::chrono::nanoseconds(s1 - s0).count()), span = double(c1 - c0);
    // The span clock's readings sit inside the steady ones: never longer, and short of them
    // only by the reads themselves and the scale's error (well under 1 %).
    EXPECT_LE(span, steady + 1000.0) << ms << " ms";
    EXPECT_GE(span, steady * 0.99 - 50000.0) << ms << " ms";
  }
}

TEST(SpanClock, CoarseMillisecondsFollowSteadyClock) {
  int64_t c0 = coarse_clock_ms();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  int64_t c1 = coarse_clock_ms();
  EXPECT_GE(c1 - c0, 50);
  EXPECT_LE(c1 - c0, 1000);
}

}  // namespace
}  // namespace cap

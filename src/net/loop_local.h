// What code running on one of the HTTP server's event-loop threads can know about that loop:
// its io_context, and a way to clean up on that thread before the loop's io_context goes.
//
// The HTTP client uses it to run origin calls made from a server loop on that same loop
// (no hand-off between threads on the proxy path), with its per-loop state torn down when
// the loop ends.
#pragma once

#include <functional>

namespace boost::asio {
class io_context;
}

namespace cap::net {

/// The io_context of the server loop the calling thread runs, or null on any other thread.
boost::asio::io_context* current_loop();

/// Runs `f` on the calling loop thread when the loop closes: after it stopped serving, while
/// its io_context still runs (so `f` can cancel what it started there and let it finish).
/// In the reverse order of registration. Does nothing off a server loop thread.
void at_loop_exit(std::function<void()> f);

/// Marks the calling thread as running `ioc` until the scope ends. For event-loop owners
/// (the HTTP server), which call run_exit_hooks() on the loop thread when closing it; the
/// scope's end runs any registered after that.
class LoopScope {
 public:
  explicit LoopScope(boost::asio::io_context* ioc);
  ~LoopScope();
  static void run_exit_hooks();
  LoopScope(const LoopScope&) = delete;
  LoopScope& operator=(const LoopScope&) = delete;
};

}  // namespace cap::net

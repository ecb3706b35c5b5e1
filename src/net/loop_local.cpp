#include "net/loop_local.h"

#include <utility>
#include <vector>

namespace cap::net {
namespace {

thread_local boost::asio::io_context* t_loop = nullptr;
thread_local std::vector<std::function<void()>> t_at_exit;

}  // namespace

boost::asio::io_context* current_loop() { return t_loop; }

void at_loop_exit(std::function<void()> f) {
  if (t_loop) t_at_exit.push_back(std::move(f));
}

LoopScope::LoopScope(boost::asio::io_context* ioc) {
  t_loop = ioc;
  t_at_exit.clear();
}

void LoopScope::run_exit_hooks() {
  std::vector<std::function<void()>> fs = std::move(t_at_exit);
  t_at_exit.clear();
  for (auto it = fs.rbegin(); it != fs.rend(); ++it) {
    try {
      (*it)();
    } catch (...) {
    }
  }
}

LoopScope::~LoopScope() {
  run_exit_hooks();
  t_loop = nullptr;
}

}  // namespace cap::net

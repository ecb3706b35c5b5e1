// A fixed set of threads taking tasks from one queue: the wait pool (rule sets that wait
// on HTTP run here, never on an event loop) and the management command thread (one
// thread, so commands that change state run one at a time, in order).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cap::agent {

class WorkQueue {
 public:
  /// Starts `threads` threads. `max_queued` bounds the waiting tasks (0: no bound).
  WorkQueue(int threads, size_t max_queued = 0);
  ~WorkQueue();  // finishes the queued tasks, then joins
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  /// Queues a task; false when the queue is full or closed (the caller answers 503).
  bool post(std::function<void()> task);
  /// Stops taking tasks, runs those queued, joins the threads.
  void shutdown();
  size_t queued() const;

 private:
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  size_t max_queued_;
  bool closed_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace cap::agent

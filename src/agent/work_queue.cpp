#include "agent/work_queue.h"

namespace cap::agent {

WorkQueue::WorkQueue(int threads, size_t max_queued) : max_queued_(max_queued) {
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkQueue::~WorkQueue() { shutdown(); }

bool WorkQueue::post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (closed_ || (max_queued_ && tasks_.size() >= max_queued_)) return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void WorkQueue::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (closed_ && threads_.empty()) return;
    closed_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

size_t WorkQueue::queued() const {
  std::lock_guard lock(mu_);
  return tasks_.size();
}

void WorkQueue::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return closed_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // closed and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace cap::agent

#include "agent/serving.h"

namespace cap::agent {

ServingSlot::ServingSlot() : serving_(std::make_shared<const Serving>()) {}

const std::shared_ptr<const Serving>& ServingSlot::current() {
  struct Cache {
    const ServingSlot* owner = nullptr;
    uint64_t generation = 0;
    std::shared_ptr<const Serving> serving;
  };
  thread_local Cache cache;
  uint64_t g = generation_.load(std::memory_order_acquire);
  if (cache.owner != this || cache.generation != g) {
    std::lock_guard lock(mu_);
    cache.owner = this;
    cache.serving = serving_;
    cache.generation = generation_.load(std::memory_order_relaxed);
  }
  return cache.serving;
}

std::shared_ptr<const Serving> ServingSlot::latest() const {
  std::lock_guard lock(mu_);
  return serving_;
}

void ServingSlot::publish(std::shared_ptr<const Serving> s) {
  std::shared_ptr<const Serving> old;
  {
    std::lock_guard lock(mu_);
    old = std::move(serving_);
    serving_ = std::move(s);
    generation_.fetch_add(1, std::memory_order_release);
  }
  // `old` is released outside the lock: destroying a Runtime may take a while.
}

}  // namespace cap::agent

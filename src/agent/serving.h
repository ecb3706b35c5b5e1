// What the web port serves right now, and how a change reaches every thread without a lock
// on the request path.
//
// A Serving is immutable: activation, rollback, stop and start each publish a new one. The
// slot keeps a generation counter; each thread caches the Serving it last saw and re-reads
// it (under the slot's mutex) only when the generation moved. So a request costs one
// atomic load; a request in flight keeps the Serving (and its Runtime) it started with
// until it ends, and the next request on any thread sees the new one.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "cap/engine.h"

namespace cap::agent {

struct Serving {
  std::shared_ptr<Runtime> runtime;  // null: a blank agent
  /// Names `runtime` uniquely for the process's life (0 when blank). Threads key their
  /// reusable Workspace on it: a Runtime's address may be reused by a later one, a serial
  /// never is.
  uint64_t runtime_serial = 0;
  std::string id, name, sha256;
  int64_t activated_at_ms = 0;
  bool stopped = false;
  std::string origin;     // proxy mode when set ("http://host:port", no trailing '/')
  bool may_wait = false;  // run requests on the wait pool, not on the event loop
  /// The rules may read BODY or form parameters, so request bodies are read whole before
  /// they run; when false (and in proxy mode) large bodies stream to the origin instead.
  bool reads_body = true;
  /// The configuration mentions RESPONSE_ADDITIONS (HttpResponseAddition): the host reads
  /// it after the rules ran.
  bool response_additions = false;

  bool blank() const { return runtime == nullptr; }
  bool proxy() const { return !origin.empty(); }
};

class ServingSlot {
 public:
  ServingSlot();
  /// The Serving for the calling thread: the cached one unless a newer one was published.
  /// The reference stays valid until this thread calls current() again.
  const std::shared_ptr<const Serving>& current();
  /// The latest Serving (takes the mutex; for management).
  std::shared_ptr<const Serving> latest() const;
  /// Makes `s` what new requests get.
  void publish(std::shared_ptr<const Serving> s);

 private:
  std::atomic<uint64_t> generation_{1};
  mutable std::mutex mu_;
  std::shared_ptr<const Serving> serving_;
};

}  // namespace cap::agent

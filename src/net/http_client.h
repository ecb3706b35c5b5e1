// The project's HTTP client: keep-alive connection pools per origin (scheme, host, port),
// connect/read timeouts, retries of idempotent requests on a fresh connection, TLS with
// certificate verification (OpenSSL, system trust store). Runs its own event loop thread(s)
// so callers on any thread never block an event loop: call() waits (for worker threads and
// capctl), call_async() returns at once and completes on the client's loop.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "cap/services.h"

namespace cap::net {

struct ClientOptions {
  int threads = 1;
  size_t max_idle_per_origin = 64;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds idle_keep{30000};  // pooled connections idle longer are closed
  size_t max_response_bytes = 64 * 1024 * 1024;
  int retries = 1;  // extra attempts for idempotent methods on connection failures
  bool verify_tls = true;
  std::string ca_file;  // extra trust anchors (tests); empty: the system store
};

class HttpClientPool : public HttpClient {
 public:
  explicit HttpClientPool(ClientOptions options = {});
  ~HttpClientPool() override;

  /// Blocking call (never from an event loop of the server). Thread-safe.
  HttpReply call(const HttpCall& call) override;
  /// Non-blocking; `done` runs on the client's loop thread.
  void call_async(HttpCall call, std::function<void(HttpReply)> done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cap::net

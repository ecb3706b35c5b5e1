// The project's HTTP client: keep-alive connection pools per origin (scheme, host, port),
// connect/read timeouts, retries of idempotent requests on a fresh connection, TLS with
// certificate verification (OpenSSL, system trust store). Runs its own event loop thread(s)
// so callers on any thread never block an event loop: call() waits (for worker threads and
// capctl), call_async() returns at once and completes on the client's loop. Calls made on
// one of the HTTP server's loop threads (net/loop_local.h) run on that very loop, with a
// connection pool of its own, so proxying needs no hand-off between threads.
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
  /// Before reusing a pooled connection, peek at it (one non-blocking recv) and drop it when
  /// the server has closed it. Off, a dead connection is only found by the retry.
  bool check_idle_before_reuse = true;
  /// A connection idle for less than this is reused without the peek: under load
  /// connections come back within microseconds, and a server closing one that soon after
  /// its answer (without saying Connection: close) is not worth a system call per request.
  std::chrono::milliseconds check_idle_after{50};
};

/// The body of a streamed reply (HttpClientPool::call_streaming), read piece by piece. Pull
/// based, so a reader that waits for its consumer (a slow client) reads no faster than it.
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  /// `piece` holds the next bytes (possibly empty at the end); `end` is true once the body is
  /// complete or failed; `error` is non-empty on failure (connection lost, timed out).
  using Got = std::function<void(std::string piece, bool end, std::string error)>;
  /// Reads the next piece (at most 64 KiB); `got` runs once, on the client's loop thread.
  /// Call again only after `got` ran and only while it did not report the end. Each read
  /// times out after the call's HttpCall::timeout_ms (> 0). Dropping the reader before the
  /// end closes the connection. Must not be used after the pool is destroyed (then it does
  /// nothing, and `got` never runs).
  virtual void read(Got got) = 0;
};

class HttpClientPool : public HttpClient {
 public:
  explicit HttpClientPool(ClientOptions options = {});
  ~HttpClientPool() override;

  /// Blocking call: waits on a future for the reply. Never call it from an event loop (of
  /// the server, or of this client: that is refused with an error, as it would wait
  /// forever). Thread-safe.
  ///
  /// The reply: status 0 with `error` when no answer came (bad URL, connection refused, TLS
  /// failure, response too large...); after HttpCall::timeout_ms (> 0) status 0,
  /// timed_out = true and error "timed out after N ms". Errors name the origin
  /// (scheme://host:port) but never the URL's credentials, path or query.
  ///
  /// Requests carry Host, User-Agent: cap/VERSION, Content-Length (when there is a body, or
  /// for POST, PUT and PATCH), and Authorization: Basic from user:password@ in the URL; the
  /// caller's Host, User-Agent and Authorization replace those; a caller's Content-Length
  /// or Transfer-Encoding is ignored (the client frames the body). Idempotent methods (GET,
  /// HEAD, PUT, DELETE, OPTIONS, TRACE) are retried on a fresh connection when a pooled one
  /// turns out dead before any response byte; any method when connecting failed.
  HttpReply call(const HttpCall& call) override;
  /// Non-blocking; `done` runs exactly once, on the client's loop thread (also with an error
  /// when the pool is destroyed first). Must not be called while the pool is destroyed.
  void call_async(HttpCall call, std::function<void(HttpReply)> done);
  /// Blocking, like call(), with the body handed to `piece` as it arrives (HttpClient's
  /// contract); reads with call_streaming. Never call it from an event loop.
  HttpReply call_pieces(const HttpCall& call, const Pieces& piece) override;
  /// Like call_async, for replies that may be large (proxying). A reply whose body has a
  /// Content-Length of at most `buffer_up_to` bytes comes whole with a null BodyReader. A
  /// larger one, or one of unknown length (chunked, closed-delimited), comes with its status
  /// and headers only, and `body` reads the rest: without the max_response_bytes limit, and
  /// with HttpCall::timeout_ms bounding the wait for the head and then each read, rather
  /// than the whole call. Errors come as with call_async (status 0, null body).
  void call_streaming(HttpCall call, size_t buffer_up_to,
                      std::function<void(HttpReply head, std::shared_ptr<BodyReader> body)> done);

 private:
  struct Impl;
  void start_call(void* loop, HttpCall call, std::function<void(HttpReply)> done);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cap::net

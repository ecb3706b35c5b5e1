// The project's HTTP/1.1 server: one Asio event loop per thread, keep-alive and pipelining,
// limits on header and body size, read, idle and write timeouts enforced by a coarse
// per-loop sweep (no timer armed per request), graceful drain.
//
// Per connection the server reuses its read buffer, its parser state and its response
// buffer, and stores header views into the read buffer, so a request answered from the
// handler costs no heap allocation in the server unless its headers or body outgrow the
// buffers (an answer through a Deferred allocates its rendered copy).
//
// The handler runs on the connection's loop thread. It answers at once with
// Exchange::respond, or takes Exchange::defer() and answers later from any thread
// (rules that wait, proxying). Requests on one connection are answered in order. A deferred
// answer may also stream its body (Deferred::stream), without a size limit.
//
// Request bodies are read whole (up to max_body_bytes) before the handler runs, unless
// ServerOptions::stream_request_bodies says otherwise for a body larger than that, or of
// unknown length: then the handler runs once the head is in, and pulls the body through
// Exchange::body_stream() (proxying an upload without holding it in memory).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/services.h"

namespace cap::net {

struct ServerOptions {
  std::string address = "0.0.0.0";
  uint16_t port = 8080;  // 0: pick a free port (see HttpServer::port())
  int threads = 1;  // event loops (<= 0: one per CPU); several share the port with SO_REUSEPORT
  size_t max_header_bytes = 16 * 1024;       // larger: 431
  size_t max_body_bytes = 16 * 1024 * 1024;  // larger: 413 (unless streamed)
  /// Optional, called on a loop thread once the head of a request is in whose body is
  /// larger than max_body_bytes or chunked: true lets the handler stream that body
  /// (Exchange::body_stream) instead of the server reading it whole (or answering 413).
  std::function<bool()> stream_request_bodies;
  /// The limit on a streamed body (0: none). A larger Content-Length gets 413; a chunked body
  /// that grows larger makes the body stream fail and the connection close.
  uint64_t max_stream_bytes = 0;
  std::chrono::milliseconds read_timeout{15000};   // a started request must be read whole: 408
  std::chrono::milliseconds idle_timeout{60000};   // keep-alive connection with no request: closed
  std::chrono::milliseconds write_timeout{30000};  // a response must be taken by the client
  size_t max_connections = 20000;
  std::string tls_cert_file, tls_key_file;  // both set: TLS (PEM files)
  std::string name = "web";                 // for log lines
  /// Errors the server answers itself (400, 408, 413, 431) carry a JSON body
  /// {"error": "...", "details": []} instead of plain text (the management API).
  bool json_errors = false;
  /// Optional: receives server-level problems (accept failures, handler exceptions). Called
  /// on a loop thread.
  std::function<void(std::string_view)> log;
};

struct HeaderView {
  std::string_view name, value;
};

/// What the handler answers. Header names and values must not contain CR or LF (the
/// server refuses such a response with 500 rather than split it).
struct ResponseView {
  int status = 200;
  std::string_view content_type;  // omitted when empty
  std::span<const std::pair<std::string, std::string>> headers;
  std::string_view body;
  bool close = false;  // close the connection after this response
};

class Connection;

/// The body of a streamed response, sent piece by piece (proxying a large origin response).
/// Obtained from Deferred::stream(). Usable from any thread, one call at a time; a write
/// must wait until the previous one's `taken` ran (back-pressure: the writer never runs
/// ahead of the client by more than one piece).
class ResponseStream {
 public:
  explicit ResponseStream(std::shared_ptr<Connection> c) : conn_(std::move(c)) {}
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;
  /// Ends the body as incomplete (end(false)) unless end() was called.
  ~ResponseStream();
  /// Sends `piece`. `taken(true)` runs on the server's loop thread once the client's socket
  /// took it; `taken(false)` when the connection is gone (stop writing then).
  void write(std::string piece, std::function<void(bool ok)> taken);
  /// Ends the body. `complete` false (the source failed): the connection is closed without
  /// the body's proper end, so the client sees a truncated response. Later calls do nothing.
  void end(bool complete = true);

 private:
  std::shared_ptr<Connection> conn_;
};

/// An answer that will come later, from any thread. Exactly one respond() per Deferred;
/// dropping it unanswered sends 500.
class Deferred {
 public:
  Deferred() = default;
  explicit Deferred(std::shared_ptr<Connection> c) : conn_(std::move(c)) {}
  Deferred(Deferred&&) noexcept = default;
  /// Assigning over an unanswered Deferred answers that one with 500 first.
  Deferred& operator=(Deferred&&) noexcept;
  ~Deferred();
  void respond(const ResponseView& r);
  /// Answers with `head` (its body is ignored) and a body that follows through the returned
  /// stream: `length` bytes exactly (Content-Length), or, without a length, chunked to an
  /// HTTP/1.1 client and closed-delimited to an HTTP/1.0 one. The body is dropped for HEAD
  /// requests and bodyless statuses. The response counts as in flight until the stream ends.
  std::shared_ptr<ResponseStream> stream(const ResponseView& head, std::optional<uint64_t> length);
  explicit operator bool() const { return conn_ != nullptr; }

 private:
  std::shared_ptr<Connection> conn_;
};

/// One request. Views stay valid until the request is answered.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual std::string_view method() const = 0;
  virtual std::string_view target() const = 0;
  virtual int version() const = 0;  // 10 or 11
  virtual std::span<const HeaderView> headers() const = 0;
  /// The value of the first header named `name` (case-insensitive), or "".
  virtual std::string_view header(std::string_view name) const = 0;
  /// The whole body; empty when the body streams (body_stream() is then set).
  virtual std::string_view body() const = 0;
  /// The body still to be read, when this request's body streams
  /// (ServerOptions::stream_request_bodies); else null. Pieces come as the client sends
  /// them, each `got` on the connection's loop thread; read only once at a time, and use
  /// one source per request. The source fails ("client connection closed", "timed out")
  /// when the client goes away or stalls longer than read_timeout. The connection of such a
  /// request closes after its answer (the answer may go out before the body is in).
  virtual std::shared_ptr<BodySource> body_stream() = 0;
  /// The request's Content-Length, or -1 (none, or chunked).
  virtual int64_t content_length() const = 0;
  virtual std::string_view remote_addr() const = 0;  // the peer's IP address, text
  virtual bool secure() const = 0;                   // arrived over TLS
  /// Answers now (on the loop thread, inside the handler).
  virtual void respond(const ResponseView& r) = 0;
  /// Answers later: the handler returns without responding.
  virtual Deferred defer() = 0;
};

using Handler = std::function<void(Exchange&)>;

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and starts the loops. Returns false with `error` when the address is bad, the
  /// port cannot be bound (also when another process holds it), or the TLS files cannot be
  /// loaded.
  bool start(std::string* error);
  /// The bound port.
  uint16_t port() const;
  /// Stops accepting; requests in flight finish; idle keep-alive connections close.
  void stop_accepting();
  /// Stops accepting, waits until no request is in flight or `timeout` passes; then closes
  /// everything and joins the loops. Returns whether everything finished in time. Call it
  /// from outside the server's loops (never from a handler). Deferreds answered afterwards
  /// are dropped harmlessly. The destructor does drain(0) when needed.
  bool drain(std::chrono::milliseconds timeout);
  /// Requests being handled right now.
  size_t in_flight() const;
  /// Connections open right now.
  size_t connections() const;
  /// Connections accepted since start.
  uint64_t accepted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cap::net

// HttpClientPool (net/http_client.h): Asio + Beast, its own loop thread(s), idle keep-alive
// connections pooled per origin.
//
// One call is a CallState owned by the completion handlers in flight (shared_ptr), and
// listed (not owned) in its loop's intrusive list of active calls until it finishes. The
// loop's one deadline timer, armed for the earliest deadline, times calls out; a timeout
// closes the connection, and the handler that then completes with an error finds the call
// finished and only cleans up.
//
// Every reply is read the same way (CallState::read_reply): what the connection's buffer
// holds is fed to a ReplyParser, and more is read only when it needs more. A whole reply's
// body grows in a string up to max_response_bytes; a streamed one goes into the caller's
// buffer (the small whole body of call_streaming) or into 64 KiB pieces. The request bytes
// and the ReplyParser are in net/client_wire.*.
#include "net/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cassert>
#include <cctype>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "net/client_wire.h"
#include "net/header_text.h"
#include "net/loop_local.h"
#include "net/url_target.h"

#ifndef CAP_VERSION
#define CAP_VERSION "dev"
#endif

namespace cap::net {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kMaxResponseHeader = 64 * 1024;
constexpr size_t kPiece = 64 * 1024;  // a streamed body is read in pieces of at most this

// Lets readers of streamed bodies reach a loop from any thread, and find it gone.
struct PoolGate {
  std::mutex mu;
  bool open = true;
};

thread_local const void* t_client_loop_owner = nullptr;

bool idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "PUT" || m == "DELETE" || m == "OPTIONS" || m == "TRACE";
}

// One connection, plain or TLS.
struct Conn {
  std::unique_ptr<tcp::socket> plain;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
  beast::flat_buffer buf;
  std::string key;
  Clock::time_point idle_since;

  // Beast reads as much as the buffer's free capacity: without room reserved, a large
  // body arrives 512 bytes a system call.
  Conn() { buf.reserve(16 * 1024); }

  tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }
  void close() {
    boost::system::error_code ec;
    if (tls || plain) lowest().close(ec);
  }
  // A pooled connection the server closed (EOF) or that holds unexpected bytes is dead.
  bool looks_alive() {
    char b;
    ssize_t n = ::recv(lowest().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
};

struct ClientLoop;
struct CallState;

struct Shared {
  ClientOptions opt;
  // Made on the first https call: loading the system trust store takes tens of
  // milliseconds, which a process that only speaks plain http should not pay at start.
  std::once_flag tls_once;
  std::unique_ptr<ssl::context> tls;
  std::string tls_error;
  /// The TLS context, or null with tls_error set. Thread-safe.
  ssl::context* tls_context();
};

// Where calls run: a loop of the pool's own (a thread of its own), or a loop "attached" to a
// server event loop, for calls made on that loop's thread (proxying without a thread hop).
struct ClientLoop {
  ClientLoop(Shared& s, const void* owner, std::shared_ptr<PoolGate> g,
             asio::io_context* server_loop = nullptr)
      : sh(s),
        owner(owner),
        owned(server_loop ? nullptr : std::make_unique<asio::io_context>(1)),
        ioc(server_loop ? *server_loop : *owned),
        gate(std::move(g)) {
    if (owned) work.emplace(ioc.get_executor());
  }
  Shared& sh;
  const void* owner;
  std::unique_ptr<asio::io_context> owned;  // null when attached
  asio::io_context& ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  // Closes pooled connections idle for ClientOptions::idle_keep: armed for the first one to
  // expire while any is pooled, so a loop without connections never wakes for it.
  asio::steady_timer sweep{ioc};
  bool sweep_armed = false;
  std::shared_ptr<PoolGate> gate;  // the pool's, or for an attached loop its own
  std::unordered_map<std::string, std::vector<std::unique_ptr<Conn>>> idle;
  CallState* active = nullptr;  // calls not finished yet (CallState::prev/next)
  // The calls' deadlines: one timer for the loop, armed for the earliest (time_point::max():
  // not armed), rather than a timer armed and cancelled per call.
  asio::steady_timer deadlines{ioc};
  Clock::time_point deadlines_at = Clock::time_point::max();
  std::unordered_set<std::shared_ptr<CallState>> reading;  // calls streaming their body
  bool stopping = false;
  std::thread thread;

  void start() {
    thread = std::thread([this] {
      t_client_loop_owner = owner;
      for (;;) {
        try {
          ioc.run();
          return;
        } catch (...) {
        }
      }
    });
  }
  /// Arms the sweep for the earliest expiry among the pooled connections (none: not armed).
  /// Only on loops of the pool's own (an attached loop's pool is checked as it is taken).
  void arm_sweep() {
    if (attached() || stopping) return;
    auto first = Clock::time_point::max();
    for (const auto& [key, v] : idle)
      if (!v.empty()) first = std::min(first, v.front()->idle_since);  // oldest first
    if (first == Clock::time_point::max()) return;
    sweep_armed = true;
    sweep.expires_at(first + sh.opt.idle_keep);
    sweep.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      sweep_armed = false;
      auto now = Clock::now();
      for (auto it = idle.begin(); it != idle.end();) {
        auto& v = it->second;
        std::erase_if(v, [&](const std::unique_ptr<Conn>& c) {
          return now - c->idle_since >= sh.opt.idle_keep;
        });
        it = v.empty() ? idle.erase(it) : std::next(it);
      }
      arm_sweep();
    });
  }
  void give_back(std::unique_ptr<Conn> c) {
    if (stopping) return;
    auto& v = idle[c->key];
    if (v.size() >= sh.opt.max_idle_per_origin) return;
    c->idle_since = Clock::now();
    v.push_back(std::move(c));
    if (!sweep_armed) arm_sweep();
  }
  std::unique_ptr<Conn> take(const std::string& key) {
    auto it = idle.find(key);
    if (it == idle.end()) return nullptr;
    auto& v = it->second;
    auto now = Clock::now();
    while (!v.empty()) {
      std::unique_ptr<Conn> c = std::move(v.back());
      v.pop_back();
      auto idle_for = now - c->idle_since;
      if (idle_for < sh.opt.idle_keep && (!sh.opt.check_idle_before_reuse ||
                                          idle_for < sh.opt.check_idle_after || c->looks_alive()))
        return c;
    }
    return nullptr;
  }
  bool attached() const { return owned == nullptr; }
  void shutdown();
  /// Makes sure the deadline timer fires by `at` (a call's deadline).
  void watch(Clock::time_point at);
  /// The deadline timer fired: times out the calls whose deadline passed, re-arms.
  void on_deadlines();
};

struct CallState : std::enable_shared_from_this<CallState> {
  CallState(ClientLoop* l, HttpCall c, Target tg, std::string req, std::function<void(HttpReply)> d)
      : loop(l),
        call(std::move(c)),
        t(std::move(tg)),
        request(std::move(req)),
        done(std::move(d)),
        deadline_at(Clock::time_point::max()) {}
  ~CallState() { unlist(); }

  ClientLoop* loop;
  HttpCall call;
  Target t;
  std::string request;
  std::string body_out;       // the piece of a body_source being written
  uint64_t body_sent = 0;     // bytes of the body_source sent
  bool body_started = false;  // the body_source was read from: no retry any more
  std::function<void(HttpReply)> done;
  Clock::time_point deadline_at;                 // the call's (ClientLoop::deadlines); max(): none
  std::optional<asio::steady_timer> body_timer;  // each read of a streamed body
  // Made when the call connects (a pooled connection needs neither).
  std::optional<asio::steady_timer> connect_timer;
  std::optional<tcp::resolver> resolver;
  CallState* prev = nullptr;  // the loop's active list
  CallState* next = nullptr;
  bool listed = false;
  std::unique_ptr<Conn> conn;
  std::optional<ReplyParser> parser;
  std::string whole;  // the body of a reply read whole

  // call_streaming: the head is read first; the body whole into `whole` when it is small,
  // else piece by piece through a BodyReader.
  bool streaming = false;
  size_t buffer_up_to = 0;
  std::function<void(HttpReply, std::shared_ptr<BodyReader>)> stream_done;
  std::shared_ptr<PoolGate> gate;
  std::unique_ptr<char[]> piece_buf;
  BodyReader::Got got;
  bool body_over = false;  // the streamed body ended, failed or was given up
  bool reused = false;
  bool finished = false;
  bool connect_timed_out = false;
  int attempt = 0;

  const ClientOptions& opt() const { return loop->sh.opt; }

  void list() {
    listed = true;
    prev = nullptr;
    next = loop->active;
    if (next) next->prev = this;
    loop->active = this;
  }
  void unlist() {
    if (!listed) return;
    listed = false;
    if (prev)
      prev->next = next;
    else
      loop->active = next;
    if (next) next->prev = prev;
    prev = next = nullptr;
  }
  void cancel_connect() {
    if (connect_timer) connect_timer->cancel();
    if (resolver) resolver->cancel();
  }

  void arm_deadline() {
    deadline_at = Clock::now() + std::chrono::milliseconds(call.timeout_ms);
    loop->watch(deadline_at);
  }

  void start() {
    if (call.timeout_ms > 0) arm_deadline();
    if (std::unique_ptr<Conn> c = loop->take(t.o->origin_key)) {
      conn = std::move(c);
      reused = true;
      send();
      return;
    }
    connect();
  }

  void connect() {
    reused = false;
    connect_timed_out = false;
    conn.reset();
    ssl::context* tls_ctx = t.o->tls ? loop->sh.tls_context() : nullptr;
    if (t.o->tls && !tls_ctx) return fail(t.o->where + ": " + loop->sh.tls_error);
    conn = std::make_unique<Conn>();
    conn->key = t.o->origin_key;
    if (t.o->tls) {
      conn->tls = std::make_unique<ssl::stream<tcp::socket>>(loop->ioc, *tls_ctx);
    } else {
      conn->plain = std::make_unique<tcp::socket>(loop->ioc);
    }
    if (!connect_timer) connect_timer.emplace(loop->ioc);
    connect_timer->expires_after(opt().connect_timeout);
    connect_timer->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->finished) return;
      self->connect_timed_out = true;
      if (self->resolver) self->resolver->cancel();
      if (self->conn) self->conn->close();
    });
    if (t.o->ip_literal) {
      boost::system::error_code ec;
      auto addr = asio::ip::make_address(t.o->host, ec);
      std::vector<tcp::endpoint> eps{tcp::endpoint(addr, t.o->port)};
      return do_connect(eps);
    }
    if (!resolver) resolver.emplace(loop->ioc);
    resolver->async_resolve(t.o->host, std::to_string(t.o->port),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        tcp::resolver::results_type results) {
                              if (self->finished) return self->cleanup();
                              if (ec) {
                                if (self->connect_timed_out) return self->fail_connect_timeout();
                                return self->fail(self->t.o->where + ": cannot resolve " +
                                                  self->t.o->host + ": " + ec.message());
                              }
                              self->do_connect(results);
                            });
  }

  template <class Endpoints>
  void do_connect(const Endpoints& eps) {
    asio::async_connect(
        conn->lowest(), eps,
        [self = shared_from_this()](const boost::system::error_code& ec, const tcp::endpoint&) {
          self->on_connected(ec);
        });
  }

  void fail_connect_timeout() {
    fail(t.o->where + ": cannot connect: timed out after " +
         std::to_string(opt().connect_timeout.count()) + " ms");
  }

  void on_connected(const boost::system::error_code& ec) {
    if (finished) return cleanup();
    if (ec) {
      connect_timer->cancel();
      if (connect_timed_out) return fail_connect_timeout();
      return retry_or_fail(t.o->where + ": cannot connect: " + ec.message(), true, true);
    }
    boost::system::error_code ignored;
    conn->lowest().set_option(tcp::no_delay(true), ignored);
    if (!conn->tls) {
      connect_timer->cancel();
      return send();
    }
    SSL* ssl = conn->tls->native_handle();
    if (t.o->ip_literal) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t.o->host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, t.o->host.c_str());
      SSL_set1_host(ssl, t.o->host.c_str());
    }
    conn->tls->async_handshake(
        ssl::stream_base::client, [self = shared_from_this()](const boost::system::error_code& e) {
          self->connect_timer->cancel();
          if (self->finished) return self->cleanup();
          if (e) {
            if (self->connect_timed_out) return self->fail_connect_timeout();
            return self->fail(self->t.o->where + ": TLS handshake failed: " + e.message());
          }
          self->send();
        });
  }

  void send() {
    auto handler = [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
      if (self->finished) return self->cleanup();
      if (ec)
        return self->retry_or_fail(self->t.o->where + ": sending failed: " + ec.message(), false,
                                   true);
      if (self->call.body_source) return self->pull_body();
      self->receive();
    };
    if (conn->tls)
      asio::async_write(*conn->tls, asio::buffer(request), std::move(handler));
    else
      asio::async_write(*conn->plain, asio::buffer(request), std::move(handler));
  }

  // HttpCall::body_source: pull a piece, write it (chunk-framed when the length is unknown),
  // pull the next; after the last one read the response.
  void pull_body() {
    body_started = true;
    call.body_source->read(
        [self = shared_from_this()](std::string piece, bool end, std::string error) {
          asio::post(self->loop->ioc,
                     [self, piece = std::move(piece), end, error = std::move(error)]() mutable {
                       self->on_body_piece(std::move(piece), end, std::move(error));
                     });
        });
  }

  void on_body_piece(std::string piece, bool end, std::string error) {
    if (finished) return cleanup();
    if (!error.empty()) return fail(t.o->where + ": reading the request body failed: " + error);
    // A streamed body may take long: HttpCall::timeout_ms bounds each piece (and then the
    // wait for the response after the last one), not the whole call.
    if (call.timeout_ms > 0) arm_deadline();
    bool chunked = call.body_length < 0;
    body_sent += piece.size();
    if (!chunked && (body_sent > uint64_t(call.body_length) ||
                     (end && body_sent != uint64_t(call.body_length))))
      return fail(t.o->where + ": the request body does not have its declared length");
    body_out.clear();
    if (chunked && !piece.empty()) {
      char hex[20];
      std::snprintf(hex, sizeof hex, "%zx\r\n", piece.size());
      body_out = hex;
      body_out += piece;
      body_out += "\r\n";
    } else {
      body_out = std::move(piece);
    }
    if (end && chunked) body_out += "0\r\n\r\n";
    auto handler = [self = shared_from_this(), end](const boost::system::error_code& ec, size_t) {
      if (self->finished) return self->cleanup();
      if (ec) return self->fail(self->t.o->where + ": sending the body failed: " + ec.message());
      if (end) return self->receive();
      self->pull_body();
    };
    if (conn->tls)
      asio::async_write(*conn->tls, asio::buffer(body_out), std::move(handler));
    else
      asio::async_write(*conn->plain, asio::buffer(body_out), std::move(handler));
  }

  template <class F>
  void with_stream(F&& f) {
    if (conn->tls)
      f(*conn->tls);
    else
      f(*conn->plain);
  }

  /// Reads the reply: the head, and the body with it unless the call streams (call_streaming
  /// reads the body after looking at the head). Skips interim (1xx) replies.
  void receive() {
    parser.emplace();
    parser->header_limit(kMaxResponseHeader);
    if (call.method == "HEAD") parser->skip(true);
    whole.clear();
    if (streaming) {
      parser->body_limit(boost::none);
      return read_reply(Until::head, &CallState::on_head_read);
    }
    parser->body_limit(boost::optional<std::uint64_t>(opt().max_response_bytes));
    parser->grow = &whole;
    read_reply(Until::end, &CallState::on_head_read);
  }

  void on_head_read(boost::system::error_code ec) {
    if (finished) return cleanup();
    if (ec == bhttp::error::body_limit)
      return fail(t.o->where + ": the response is larger than " +
                  std::to_string(opt().max_response_bytes) + " bytes");
    if (ec) {
      bool nothing = !parser->got_some();
      std::string what = nothing ? ": the connection closed before a response: "
                                 : ": reading the response failed: ";
      return retry_or_fail(t.o->where + what + ec.message(), false, nothing);
    }
    if (interim(unsigned(parser->head.status)))
      return receive();  // 100 Continue, 103 Early Hints: the final one follows
    if (streaming) return on_stream_head();
    HttpReply reply = head_reply();
    reply.body = std::move(whole);
    if (reusable_after_body()) loop->give_back(std::move(conn));
    finish(std::move(reply));
  }

  void on_body_read(boost::system::error_code ec) {
    if (finished) return cleanup();
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec || !parser->is_done())
      return fail(t.o->where +
                  ": reading the response failed: " + (ec ? ec.message() : "body too long"));
    HttpReply reply = head_reply();
    reply.body = std::move(whole);
    if (reusable_after_body()) loop->give_back(std::move(conn));
    finish(std::move(reply));
  }

  using Then = void (CallState::*)(boost::system::error_code);
  /// How far read_reply reads: the head; the whole message (or until the room for its body
  /// is full); or, for a streamed body, the next piece (some body bytes, or the end).
  enum class Until : uint8_t { head, end, piece };

  bool reached(Until until) const {
    switch (until) {
      case Until::head:
        return parser->is_header_done();
      case Until::end:
        return parser->is_done();
      case Until::piece:
        return parser->is_done() || parser->body_size < kPiece;
    }
    return true;
  }

  /// The one way replies are read. Feeds `parser` what the connection's buffer holds,
  /// reading more as needed, until `until` is reached (or the parser stops: an error, or
  /// need_buffer when the room for the body is full), then calls `then`: at once when the
  /// buffer held enough (an answer often comes in one piece). As Beast's read operations
  /// do, without their per-read hand-offs. A read that completes after the call finished (or,
  /// for Until::piece, after the streamed body was given up) only cleans up.
  void read_reply(Until until, Then then) {
    boost::system::error_code ec;
    for (;;) {
      if (reached(until)) return (this->*then)(ec);
      if (conn->buf.size() == 0) break;
      size_t used = parser->put(conn->buf.data(), ec);
      conn->buf.consume(used);
      if (ec == bhttp::error::need_more) {
        ec = {};
        break;
      }
      if (ec) return (this->*then)(ec);
    }
    size_t room = conn->buf.capacity() - conn->buf.size();
    auto space = conn->buf.prepare(std::clamp<size_t>(room, 512, 65536));
    with_stream([&](auto& stream) {
      stream.async_read_some(
          space, [self = shared_from_this(), until, then](boost::system::error_code ec, size_t n) {
            if ((until == Until::piece ? self->body_over : self->finished) || !self->conn)
              return self->cleanup();
            self->conn->buf.commit(n);
            if (ec == asio::error::eof) {
              if (!self->parser->got_some())
                return (self.get()->*then)(bhttp::error::end_of_stream);
              ec = {};
              self->parser->put_eof(ec);  // a body delimited by the close
              return (self.get()->*then)(ec);
            }
            if (ec) return (self.get()->*then)(ec);
            self->read_reply(until, then);
          });
    });
  }

  HttpReply head_reply() { return std::move(parser->head); }

  bool reusable_after_body() {
    bool reusable = parser->keep_alive() && conn && conn->buf.size() == 0 && parser->is_done();
    for (const auto& [name, value] : call.headers)
      if (iequals(name, "connection") && iequals(value, "close")) reusable = false;
    return reusable;
  }

  void on_stream_head() {
    if (parser->is_done()) {  // no body (HEAD, 204, 304, Content-Length: 0)
      HttpReply reply = head_reply();
      if (reusable_after_body()) loop->give_back(std::move(conn));
      return finish(std::move(reply));
    }
    auto len = parser->content_length();
    if (len && *len <= buffer_up_to) {
      whole.resize(size_t(*len));
      parser->body_data = whole.data();
      parser->body_size = whole.size();
      return read_reply(Until::end, &CallState::on_body_read);
    }
    // Large or of unknown length: hand out the head and a reader for the rest.
    HttpReply reply = head_reply();
    finished = true;
    deadline_at = Clock::time_point::max();
    if (connect_timer) connect_timer->cancel();
    auto keep = shared_from_this();
    unlist();
    loop->reading.insert(keep);
    done = nullptr;
    auto d = std::move(stream_done);
    auto reader = std::make_shared<Reader>(keep);
    try {
      if (d) d(std::move(reply), std::move(reader));
    } catch (...) {
    }
  }

  struct Reader final : BodyReader {
    explicit Reader(std::shared_ptr<CallState> s) : s_(std::move(s)) {}
    ~Reader() override {
      std::lock_guard<std::mutex> lk(s_->gate->mu);
      if (!s_->gate->open) return;
      asio::post(s_->loop->ioc, [s = s_] { s->end_body("", false); });
    }
    void read(Got g) override {
      std::lock_guard<std::mutex> lk(s_->gate->mu);
      if (!s_->gate->open) return;
      asio::post(s_->loop->ioc,
                 [s = s_, g = std::move(g)]() mutable { s->read_piece(std::move(g)); });
    }
    std::shared_ptr<CallState> s_;
  };

  // Closes the body: `error` to report to a waiting reader; `reuse` when it ended cleanly.
  void end_body(const std::string& error, bool reuse) {
    if (body_over) return;
    body_over = true;
    if (body_timer) body_timer->cancel();
    loop->reading.erase(shared_from_this());
    if (conn) {
      if (reuse)
        loop->give_back(std::move(conn));
      else
        conn->close();
    }
    if (!reuse && got) {
      auto g = std::move(got);
      got = nullptr;
      g(std::string(), true, error.empty() ? "the body was given up" : error);
    }
  }

  void read_piece(BodyReader::Got g) {
    if (body_over || !conn) {
      g(std::string(), true, "the body was already read or given up");
      return;
    }
    got = std::move(g);
    if (!piece_buf) piece_buf = std::make_unique_for_overwrite<char[]>(kPiece);
    parser->body_data = piece_buf.get();
    parser->body_size = kPiece;
    if (call.timeout_ms > 0) {
      if (!body_timer) body_timer.emplace(loop->ioc);
      body_timer->expires_after(std::chrono::milliseconds(call.timeout_ms));
      body_timer->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (ec || self->body_over) return;
        self->end_body("timed out after " + std::to_string(self->call.timeout_ms) +
                           " ms waiting for the response body",
                       false);
      });
    }
    read_reply(Until::piece, &CallState::on_piece_read);
  }

  void on_piece_read(boost::system::error_code ec) {
    if (body_over) return cleanup();
    if (ec == bhttp::error::need_buffer) ec = {};  // the piece is full
    if (ec)
      return end_body(t.o->where + ": reading the response body failed: " + ec.message(), false);
    size_t n = kPiece - parser->body_size;
    bool end = parser->is_done();
    if (body_timer) body_timer->cancel();
    auto g = std::move(got);
    got = nullptr;
    std::string piece(piece_buf.get(), n);
    if (end) end_body("", reusable_after_body());
    g(std::move(piece), end, std::string());
  }

  void retry_or_fail(std::string error, bool connecting, bool nothing_received) {
    bool retry = attempt < opt().retries && !body_started &&
                 ((connecting && !connect_timed_out) ||
                  (reused && nothing_received && idempotent(call.method)));
    if (retry) {
      ++attempt;
      if (conn) conn->close();
      conn.reset();
      return connect();
    }
    fail(std::move(error));
  }

  /// An interim (1xx) response, which a final one follows on the same connection.
  static bool interim(unsigned status) { return status >= 100 && status < 200 && status != 101; }

  void on_deadline() {
    if (finished) return;
    HttpReply r;
    r.timed_out = true;
    r.error = "timed out after " + std::to_string(call.timeout_ms) + " ms";
    if (resolver) resolver->cancel();
    if (conn) conn->close();  // the pending handler finds the call finished
    finish(std::move(r));
  }

  void fail(std::string error) {
    HttpReply r;
    r.error = std::move(error);
    if (conn) conn->close();
    finish(std::move(r));
  }

  // Called by handlers that complete after the call finished.
  void cleanup() { conn.reset(); }

  void finish(HttpReply reply) {
    if (finished) return;
    finished = true;
    deadline_at = Clock::time_point::max();
    if (connect_timer) connect_timer->cancel();
    auto keep = shared_from_this();
    unlist();
    try {
      if (streaming) {
        auto d = std::move(stream_done);
        if (d) d(std::move(reply), nullptr);
      } else {
        auto d = std::move(done);
        if (d) d(std::move(reply));
      }
    } catch (...) {
      // The caller's callback threw; nothing to hand it to.
    }
  }
};

void ClientLoop::watch(Clock::time_point at) {
  if (at >= deadlines_at || stopping) return;
  deadlines_at = at;
  deadlines.expires_at(at);  // cancels a wait for a later time (its handler sees the error)
  deadlines.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_deadlines();
  });
}

void ClientLoop::on_deadlines() {
  deadlines_at = Clock::time_point::max();
  if (stopping) return;
  auto now = Clock::now();
  std::vector<std::shared_ptr<CallState>> due;
  auto next = Clock::time_point::max();
  for (CallState* c = active; c; c = c->next) {
    if (c->deadline_at <= now)
      due.push_back(c->shared_from_this());
    else
      next = std::min(next, c->deadline_at);
  }
  for (auto& c : due) c->on_deadline();
  if (next != Clock::time_point::max()) watch(next);
}

void ClientLoop::shutdown() {
  if (stopping) return;
  stopping = true;
  sweep.cancel();
  deadlines.cancel();
  idle.clear();
  std::vector<std::shared_ptr<CallState>> calls;
  for (CallState* c = active; c; c = c->next) calls.push_back(c->shared_from_this());
  for (const auto& c : calls) {
    c->cancel_connect();
    c->fail("the HTTP client was shut down");
  }
  auto streams = reading;
  for (const auto& c : streams) c->end_body("the HTTP client was shut down", false);
  if (attached()) {  // the server's loop goes on to its end; readers must not post to it
    std::lock_guard<std::mutex> lk(gate->mu);
    gate->open = false;
    return;
  }
  work.reset();
  ioc.stop();
}

}  // namespace

ssl::context* Shared::tls_context() {
  std::call_once(tls_once, [this] {
    try {
      auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      boost::system::error_code ec;
      if (opt.verify_tls) {
        ctx->set_verify_mode(ssl::verify_peer);
        ctx->set_default_verify_paths(ec);
        if (!opt.ca_file.empty()) {
          ctx->load_verify_file(opt.ca_file, ec);
          if (ec) tls_error = "cannot load the CA file " + opt.ca_file + ": " + ec.message();
        }
      } else {
        ctx->set_verify_mode(ssl::verify_none);
      }
      if (tls_error.empty()) tls = std::move(ctx);
    } catch (const std::exception& e) {
      tls_error = std::string("TLS is unavailable: ") + e.what();
    }
  });
  return tls.get();
}

struct HttpClientPool::Impl {
  Shared sh;
  std::shared_ptr<PoolGate> gate = std::make_shared<PoolGate>();
  std::vector<std::unique_ptr<ClientLoop>> loops;
  std::atomic<size_t> next{0};
  const uint64_t id = next_pool_id.fetch_add(1, std::memory_order_relaxed);
  std::mutex attached_mu;
  std::vector<std::shared_ptr<ClientLoop>> attached;  // one per server loop that called
  bool closing = false;                               // under attached_mu

  static inline std::atomic<uint64_t> next_pool_id{1};
  struct LocalLoop {
    uint64_t pool_id;
    ClientLoop* loop;
  };
  static inline thread_local std::vector<LocalLoop> t_local;

  ClientLoop* own_loop() {
    return loops[next.fetch_add(1, std::memory_order_relaxed) % loops.size()].get();
  }

  /// On a server loop thread: this pool's loop attached to it (made on first use). Else one
  /// of the pool's own loops, in turn.
  ClientLoop* pick_loop() {
    asio::io_context* server_loop = current_loop();
    if (!server_loop) return own_loop();
    for (const LocalLoop& l : t_local)
      if (l.pool_id == id) return l.loop;
    auto loop = std::make_shared<ClientLoop>(sh, this, std::make_shared<PoolGate>(), server_loop);
    {
      std::lock_guard<std::mutex> lk(attached_mu);
      if (closing) return own_loop();
      attached.push_back(loop);
    }
    t_local.push_back({id, loop.get()});
    // When the server loop closes: fail what runs there, close its connections.
    at_loop_exit([loop, pool_id = id] {
      std::erase_if(t_local, [&](const LocalLoop& l) { return l.pool_id == pool_id; });
      loop->shutdown();
    });
    return loop.get();
  }
};

HttpClientPool::HttpClientPool(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  Shared& sh = impl_->sh;
  sh.opt = std::move(options);
  if (sh.opt.threads < 1) sh.opt.threads = 1;
  if (sh.opt.retries < 0) sh.opt.retries = 0;
  for (int i = 0; i < sh.opt.threads; ++i) {
    impl_->loops.push_back(std::make_unique<ClientLoop>(sh, impl_.get(), impl_->gate));
    impl_->loops.back()->start();
  }
}

HttpClientPool::~HttpClientPool() {
  {
    std::lock_guard<std::mutex> lk(impl_->gate->mu);
    impl_->gate->open = false;
  }
  for (auto& l : impl_->loops) {
    ClientLoop* loop = l.get();
    asio::post(loop->ioc, [loop] { loop->shutdown(); });
  }
  for (auto& l : impl_->loops)
    if (l->thread.joinable()) l->thread.join();
  impl_->loops.clear();
  // Loops attached to server loops that still run (a server that outlives its client): shut
  // them down there, and wait (a while) for it.
  std::vector<std::shared_ptr<ClientLoop>> attached;
  {
    std::lock_guard<std::mutex> lk(impl_->attached_mu);
    impl_->closing = true;
    attached.swap(impl_->attached);
  }
  for (auto& loop : attached) {
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    asio::post(loop->ioc, [loop, done] {
      loop->shutdown();
      done->set_value();
    });
    finished.wait_for(std::chrono::seconds(5));
  }
}

void HttpClientPool::call_async(HttpCall call, std::function<void(HttpReply)> done) {
  start_call(impl_->pick_loop(), std::move(call), std::move(done));
}

static void launch(std::shared_ptr<CallState> state) {
  ClientLoop* loop = state->loop;
  // A loop attached to a server loop is only picked on that loop's thread: start at once.
  // Else (or once stopping, which fails the call) on the loop, after this returns.
  if (loop->attached() && !loop->stopping) {
    state->list();
    state->start();
    return;
  }
  asio::post(loop->ioc, [state = std::move(state)] {
    if (state->loop->stopping) return state->fail("the HTTP client was shut down");
    state->list();
    state->start();
  });
}

void HttpClientPool::start_call(void* where, HttpCall call, std::function<void(HttpReply)> done) {
  auto* loop = static_cast<ClientLoop*>(where);
  Target t;
  std::string error, request;
  if (!parse_target_cached(call.url, &t, &error) || !render_request(call, t, &request, &error)) {
    asio::post(loop->ioc, [done = std::move(done), error = std::move(error)]() mutable {
      HttpReply r;
      r.error = std::move(error);
      if (done) done(std::move(r));
    });
    return;
  }
  auto state = std::make_shared<CallState>(loop, std::move(call), std::move(t), std::move(request),
                                           std::move(done));
  launch(std::move(state));
}

void HttpClientPool::call_streaming(
    HttpCall call, size_t buffer_up_to,
    std::function<void(HttpReply head, std::shared_ptr<BodyReader> body)> done) {
  ClientLoop* loop = impl_->pick_loop();
  Target t;
  std::string error, request;
  if (!parse_target_cached(call.url, &t, &error) || !render_request(call, t, &request, &error)) {
    asio::post(loop->ioc, [done = std::move(done), error = std::move(error)]() mutable {
      HttpReply r;
      r.error = std::move(error);
      if (done) done(std::move(r), nullptr);
    });
    return;
  }
  auto state =
      std::make_shared<CallState>(loop, std::move(call), std::move(t), std::move(request), nullptr);
  state->streaming = true;
  state->buffer_up_to = buffer_up_to;
  state->stream_done = std::move(done);
  state->gate = loop->gate;
  launch(std::move(state));
}

HttpReply HttpClientPool::call(const HttpCall& call) {
  if (t_client_loop_owner == impl_.get()) {
    HttpReply r;
    r.error =
        "HttpClientPool::call() on the client's own loop thread would wait forever; "
        "use call_async()";
    return r;
  }
  std::promise<HttpReply> promise;
  std::future<HttpReply> future = promise.get_future();
  // Always on a loop of the pool's own: a server loop's attached one would wait for itself.
  start_call(impl_->own_loop(), call, [&promise](HttpReply r) { promise.set_value(std::move(r)); });
  return future.get();
}

HttpReply HttpClientPool::call_pieces(const HttpCall& call, const Pieces& piece) {
  if (t_client_loop_owner == impl_.get()) {
    HttpReply r;
    r.error = "HttpClientPool::call_pieces() on the client's own loop thread would wait forever";
    return r;
  }
  using Head = std::pair<HttpReply, std::shared_ptr<BodyReader>>;
  std::promise<Head> head_promise;
  std::future<Head> head_future = head_promise.get_future();
  call_streaming(call, 0, [&head_promise](HttpReply r, std::shared_ptr<BodyReader> body) {
    head_promise.set_value({std::move(r), std::move(body)});
  });
  auto [reply, body] = head_future.get();
  if (reply.status == 0) return reply;
  if (!body) {  // it came whole
    if (!reply.body.empty()) piece(reply.status, reply.body);
    reply.body.clear();
    return reply;
  }
  if (!reply.body.empty() && !piece(reply.status, reply.body)) {
    reply.body.clear();
    return reply;
  }
  reply.body.clear();
  struct Got {
    std::string piece, error;
    bool end = false;
  };
  for (;;) {
    std::promise<Got> promise;
    std::future<Got> future = promise.get_future();
    body->read([&promise](std::string bytes, bool end, std::string error) {
      promise.set_value({std::move(bytes), std::move(error), end});
    });
    Got got = future.get();
    if (!got.error.empty()) {
      reply.error = std::move(got.error);
      reply.timed_out = reply.error.find("timed out") != std::string::npos;
      return reply;
    }
    if (!got.piece.empty() && !piece(reply.status, got.piece)) return reply;
    if (got.end) return reply;
  }
}

}  // namespace cap::net

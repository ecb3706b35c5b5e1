// The HTTP/1.1 server behind net/http_server.h.
//
// Shape, chosen for CPU per request (issue 3's benchmark):
// - One io_context per loop thread, each with its own acceptor on the port (SO_REUSEPORT when
//   there are several loops), so loops share no accept queue lock, no strand, no executor
//   type erasure (sockets use io_context::executor_type).
// - Per connection: one read buffer, one Beast basic_parser re-emplaced per request, one
//   response string; header and body views are kept as offsets from the request's start in
//   the read buffer, so the buffer may be compacted or grown while a request is being read
//   and is left untouched while it is being answered.
// - Reads go straight to the reactor (no wait for readability, which would make Asio
//   re-register the descriptor with epoll per request). A read that returns less than it
//   asked for tells the reactor the socket is drained (see DrainingRead), so the next read
//   waits for epoll instead of trying a recv() that would fail with EAGAIN: one recv and
//   one send per request, as nginx. Responses are first sent with one non-blocking send();
//   only what the kernel does not take goes through async_write.
// - Timeouts: each connection holds a deadline; one timer per loop sweeps the connections a
//   few times a second. No timer is armed per request, and none while the loop has no
//   connection (an idle agent does not wake): accepting one arms it again.
// - Connections are owned by their loop's intrusive list (and by any Deferred); completion
//   handlers capture a raw pointer, and a connection leaves the list only when it is closed
//   and none of its operations is outstanding.
// Beside it: net/response_render.* renders response heads; net/draining_read.h is the read
// operation above.
#include "net/http_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/optional.hpp>
#include <boost/version.hpp>
#include <charconv>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "engine/span_clock.h"
#include "net/draining_read.h"
#include "net/header_text.h"
#include "net/loop_local.h"
#include "net/response_render.h"

namespace cap::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Acceptor = asio::basic_socket_acceptor<tcp, Executor>;
using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                         asio::wait_traits<std::chrono::steady_clock>, Executor>;
using TlsStream = asio::ssl::stream<Socket>;

constexpr size_t kInitialBuffer = 4096;
constexpr size_t kMinRead = 1024;
constexpr size_t kKeepBuffer = 64 * 1024;  // larger buffers are given back between requests
constexpr size_t kLingerBytes = 1 << 20;   // discarded after a closing response, at most
constexpr int64_t kLingerMs = 2000;

// Shared by all loops; immutable once started (but for the counters).
struct Shared {
  ServerOptions opt;
  Handler handler;
  std::unique_ptr<asio::ssl::context> tls;
  std::atomic<size_t> connections{0};
  std::atomic<uint64_t> accepted{0};
  int64_t sweep_ms = 250;
  void log(std::string_view text) const {
    if (opt.log) opt.log(text);
  }
};

// What a Deferred needs to reach the loop from another thread, valid after the loop is gone.
struct LoopGate {
  std::mutex mu;
  bool open = true;
  asio::io_context* ioc = nullptr;
  std::atomic<bool> draining{false};
};

class ConnBase;

class Loop {
 public:
  Loop(Shared& sh) : sh_(sh), gate_(std::make_shared<LoopGate>()) { gate_->ioc = &ioc_; }

  bool listen(const tcp::endpoint& ep, bool reuse_port, std::string* error);
  uint16_t bound_port() const {
    boost::system::error_code ec;
    return acceptor_.local_endpoint(ec).port();
  }
  void start() {
    asio::post(ioc_, [this] { accept_next(); });
    thread_ = std::thread([this] { run(); });
  }
  void stop_accepting();
  void close_all();  // posted: closes everything; run() returns when the last handler ran
  void join() {
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lk(gate_->mu);
    gate_->open = false;
  }

  void link(ConnBase* c);
  void unlink(ConnBase* c);
  // Written by the loop thread only, read by drain(): no locked instruction needed.
  void request_started() {
    in_flight_.store(in_flight_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  void request_answered() {
    in_flight_.store(in_flight_.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  }
  size_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  bool draining() const { return draining_; }
  // "Date: ...\r\n", formatted once a second.
  const char* date_line() {
    int64_t s = wall_sec();
    if (s != date_sec_) {
      date_sec_ = s;
      format_date_line(s, date_line_);
    }
    return date_line_;
  }

  asio::io_context& ioc() { return ioc_; }
#ifdef CAP_NET_DRAINING_READ
  boost::asio::detail::reactor& reactor() { return reactor_; }
#endif
  Shared& sh() { return sh_; }
  const std::shared_ptr<LoopGate>& gate() const { return gate_; }

 private:
  void run() {
    LoopScope scope(&ioc_);  // lets the HTTP client run calls made here on this loop
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        sh_.log(std::string("http server loop: ") + e.what());
      }
    }
  }
  void accept_next();
  void on_accept(const boost::system::error_code& ec);
  /// Arms the sweep timer unless it is armed, the loop is stopping or has no connection.
  void arm_sweep();
  void sweep();

  Shared& sh_;
  std::shared_ptr<LoopGate> gate_;
  // ioc_ first: it is destroyed last, after every object that uses it.
  asio::io_context ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
#ifdef CAP_NET_DRAINING_READ
  boost::asio::detail::reactor& reactor_ = asio::use_service<boost::asio::detail::reactor>(ioc_);
#endif
  Acceptor acceptor_{ioc_};
  Socket pending_{ioc_};
  tcp::endpoint peer_;
  Timer sweep_timer_{ioc_};
  bool sweep_armed_ = false;
  Timer accept_retry_{ioc_};
  ConnBase* head_ = nullptr;
  std::atomic<size_t> in_flight_{0};
  bool draining_ = false;
  bool stopping_ = false;
  char date_line_[kDateLineSize + 1] = {};
  int64_t date_sec_ = -1;
  std::thread thread_;
};

struct FieldRef {
  uint32_t name_off, name_len, value_off, value_len;
  bool value_in_arena;
};

class RequestParser;

}  // namespace

// The header's forward-declared class: a connection as seen by Deferred.
class Connection : public Exchange, public std::enable_shared_from_this<Connection> {
 public:
  /// Renders `r` on the calling thread and hands it to the connection's loop.
  virtual void deliver_from(std::shared_ptr<Connection> self, const ResponseView& r) = 0;
  /// The head of a streamed response (Deferred::stream), from any thread.
  virtual void stream_head_from(std::shared_ptr<Connection> self, const ResponseView& head,
                                std::optional<uint64_t> length) = 0;
  enum class StreamEnd : uint8_t { No, Complete, Abort };
  /// A piece of a streamed body and/or its end (ResponseStream), from any thread.
  virtual void stream_push_from(std::shared_ptr<Connection> self, std::string piece,
                                std::function<void(bool)> taken, StreamEnd end) = 0;
  /// A read of a streamed request body (Exchange::body_stream), from any thread.
  virtual void body_read_from(std::shared_ptr<Connection> self, BodySource::Got got) = 0;
};

namespace {

class ConnBase : public Connection {
 public:
  ConnBase(Loop* loop, const tcp::endpoint& peer) : loop_(loop), gate_(loop->gate()), peer_(peer) {
    buf_ = std::make_unique_for_overwrite<char[]>(kInitialBuffer);
    cap_ = kInitialBuffer;
  }
  ~ConnBase() override;

  // Exchange.
  std::string_view method() const override { return method_; }
  std::string_view target() const override { return target_; }
  int version() const override { return version_; }
  std::span<const HeaderView> headers() const override { return {hv_.data(), hv_.size()}; }
  std::string_view header(std::string_view name) const override {
    for (const auto& h : hv_)
      if (iequals(h.name, name)) return h.value;
    return {};
  }
  std::string_view body() const override { return body_; }
  std::shared_ptr<BodySource> body_stream() override;
  int64_t content_length() const override { return content_length_; }
  std::string_view remote_addr() const override;
  void respond(const ResponseView& r) override;
  Deferred defer() override;

  void deliver_from(std::shared_ptr<Connection> self, const ResponseView& r) override;
  void stream_head_from(std::shared_ptr<Connection> self, const ResponseView& head,
                        std::optional<uint64_t> length) override;
  void stream_push_from(std::shared_ptr<Connection> self, std::string piece,
                        std::function<void(bool)> taken, StreamEnd end) override;
  void body_read_from(std::shared_ptr<Connection> self, BodySource::Got got) override;

  void start();
  void on_timeout();
  bool idle() const { return st_ == St::Idle; }
  void close_socket();
  // Tail of every entry point: leaves the loop when closed and nothing is outstanding.
  // `this` may be gone after it returns.
  void finish();

  // The intrusive list of the loop, and the loop's ownership.
  ConnBase* prev = nullptr;
  ConnBase* next = nullptr;
  int64_t deadline = 0;  // 0: none
  std::shared_ptr<Connection> self;

  // Called by the parser.
  void on_request_line(std::string_view method, std::string_view target, int version);
  void on_field(bhttp::field f, std::string_view name, std::string_view value);
  void on_body(std::string_view piece, bool chunked);

 protected:
  enum class St : uint8_t {
    Handshake,
    Ready,
    Idle,
    Reading,
    Handling,
    Writing,
    Streaming,  // a streamed response: its head is out, pieces of its body follow
    Lingering,
    Closed
  };
  enum class After : uint8_t { Response, Continue, StreamPart };

  // The transport.
  virtual void io_read(char* p, size_t n) = 0;         // completes in on_read
  virtual void io_write(const char* p, size_t n) = 0;  // completes in on_written
  virtual size_t io_try_write(const char* p, size_t n, bool* failed) = 0;  // 0 for TLS
  virtual void io_shutdown_send() = 0;
  virtual void io_close() = 0;
  virtual void io_release() = 0;  // destroys the socket (on the loop thread)
  virtual bool tls() const = 0;

  void on_read(const boost::system::error_code& ec, size_t n);
  void on_written(const boost::system::error_code& ec);
  void process();

  Loop* loop_;
  St st_ = St::Ready;
  bool read_pending_ = false;
  bool write_pending_ = false;
  bool hs_pending_ = false;

 private:
  void begin_request();
  void dispatch();
  void flush(After after);
  void response_done();
  void send_error(int status);
  void fail(const boost::system::error_code& ec);
  void begin_linger();
  void start_read();
  void make_room();
  void grow(size_t want);
  void deliver(std::string&& rendered, bool close);
  void deliver_stream_head(std::string&& rendered, bool close, bool chunked, bool body,
                           std::optional<uint64_t> length);
  void deliver_stream_push(std::string&& piece, std::function<void(bool)>&& taken, StreamEnd end);
  void stream_kick();
  void stream_written();
  void stream_fail_waiters();
  bool choose_body_mode();  // once the head is in: false when it answered 413
  void body_pump();         // feeds a waiting body read: buffered bytes, or reads more
  void body_fail(std::string_view why);
  RenderParams render_params();  // on the loop thread

  std::shared_ptr<LoopGate> gate_;
  tcp::endpoint peer_;
  mutable char addr_[INET6_ADDRSTRLEN + 1] = {};
  mutable bool addr_done_ = false;

  // Read buffer: [begin_, end_) holds the current request and anything after it; the parser
  // has consumed [begin_, parse_).
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0, begin_ = 0, parse_ = 0, end_ = 0;
  size_t header_end_ = 0;                           // offset from begin_, once the header is parsed
  std::optional<RequestParser>* parser_ = nullptr;  // see parser_storage_
  std::unique_ptr<std::optional<RequestParser>> parser_storage_;

  // The request, as offsets from begin_ until dispatch.
  uint32_t method_off_ = 0, method_len_ = 0, target_off_ = 0, target_len_ = 0;
  std::vector<FieldRef> fields_;
  std::string arena_;  // header values the parser rebuilt (obsolete line folding)
  enum class BodyMode : uint8_t { None, View, Copy } body_mode_ = BodyMode::None;
  size_t body_off_ = 0, body_len_ = 0;
  std::string body_copy_;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  bool first_request_ = true;
  int64_t content_length_ = -1;

  // A request whose body streams to the handler (ServerOptions::stream_request_bodies): the
  // head stays at [begin_, begin_ + header_end_); body bytes are parsed only when the
  // handler asks for them, and dropped from the buffer once handed over.
  bool body_decided_ = false;  // the head is in and the body mode chosen
  bool body_streams_ = false;
  bool body_done_ = false;    // the parser has seen the whole body
  BodySource::Got body_got_;  // a read waiting for bytes
  std::string body_piece_;    // bytes parsed, not handed over yet

  // The request, as views, from dispatch until answered.
  std::string_view method_, target_, body_;
  int version_ = 11;
  std::vector<HeaderView> hv_;
  bool keep_alive_ = true;
  bool head_ = false;
  bool in_request_ = false;  // counted in the loop's in-flight requests
  bool responded_ = false;
  bool deferred_ = false;
  bool in_handler_ = false;  // the handler runs (dispatch): a Deferred answer must wait

  // Response.
  std::string out_;
  size_t out_pos_ = 0;
  After after_ = After::Response;
  bool close_after_ = false;
  size_t lingered_ = 0;

  // A streamed response (St::Streaming): framed bytes waiting for the write in progress, and
  // the writers' callbacks for the bytes waiting and for those being written.
  bool stream_chunked_ = false, stream_body_ = true, stream_ended_ = false;
  bool stream_aborted_ = false;
  std::optional<uint64_t> stream_left_;  // with a Content-Length: bytes still due
  std::string stream_pending_;
  std::vector<std::function<void(bool)>> stream_waiting_, stream_sending_;
};

class RequestParser final : public bhttp::basic_parser<true> {
 public:
  explicit RequestParser(ConnBase& c) : c_(c) {}

 private:
  static std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }
  void on_request_impl(bhttp::verb, beast::string_view method, beast::string_view target,
                       int version, beast::error_code&) override {
    c_.on_request_line(sv(method), sv(target), version);
  }
  void on_response_impl(int, beast::string_view, int, beast::error_code&) override {}
  void on_field_impl(bhttp::field f, beast::string_view name, beast::string_view value,
                     beast::error_code&) override {
    if (!is_header_done()) c_.on_field(f, sv(name), sv(value));  // trailers are ignored
  }
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, beast::error_code&) override {
    c_.on_body(sv(body), false);
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 beast::error_code&) override {
    c_.on_body(sv(body), true);
    return body.size();
  }
  void on_finish_impl(beast::error_code&) override {}

  ConnBase& c_;
};

ConnBase::~ConnBase() = default;

std::string_view ConnBase::remote_addr() const {
  if (!addr_done_) {
    addr_done_ = true;
    auto a = peer_.address();
    if (a.is_v6() && a.to_v6().is_v4_mapped())
      a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    boost::system::error_code ec;
    std::string s = a.to_string(ec);
    if (!ec) {
      size_t n = std::min(s.size(), sizeof(addr_) - 1);
      memcpy(addr_, s.data(), n);
      addr_[n] = 0;
    }
  }
  return addr_;
}

void ConnBase::start() {
  parser_storage_ = std::make_unique<std::optional<RequestParser>>();
  parser_ = parser_storage_.get();
  if (st_ == St::Handshake) return;  // the TLS connection continues after its handshake
  process();
}

void ConnBase::begin_request() {
  parser_->emplace(*this);
  auto& p = **parser_;
  const auto& o = loop_->sh().opt;
  // With streaming possible, parsing stops after the head so the body mode can be chosen
  // (choose_body_mode); the head's Content-Length check then uses the larger limit.
  const bool may_stream = bool(o.stream_request_bodies);
  p.eager(!may_stream);
  p.header_limit(uint32_t(std::min<size_t>(o.max_header_bytes, UINT32_MAX)));
  if (may_stream && o.max_stream_bytes == 0)
    p.body_limit(boost::none);
  else
    p.body_limit(boost::optional<std::uint64_t>(
        may_stream ? std::max<uint64_t>(o.max_body_bytes, o.max_stream_bytes) : o.max_body_bytes));
  content_length_ = -1;
  body_decided_ = body_streams_ = body_done_ = false;
  body_piece_.clear();
  fields_.clear();
  arena_.clear();
  body_mode_ = BodyMode::None;
  body_off_ = body_len_ = 0;
  body_copy_.clear();
  expect_continue_ = continue_sent_ = false;
  header_end_ = 0;
}

void ConnBase::on_request_line(std::string_view method, std::string_view target, int version) {
  const char* base = buf_.get() + begin_;
  method_off_ = uint32_t(method.data() - base);
  method_len_ = uint32_t(method.size());
  target_off_ = uint32_t(target.data() - base);
  target_len_ = uint32_t(target.size());
  version_ = version;
}

void ConnBase::on_field(bhttp::field f, std::string_view name, std::string_view value) {
  const char* base = buf_.get() + begin_;
  const char* lim = buf_.get() + end_;
  FieldRef r{uint32_t(name.data() - base), uint32_t(name.size()), 0, uint32_t(value.size()), false};
  if (value.empty() || (value.data() >= base && value.data() + value.size() <= lim)) {
    r.value_off = value.empty() ? 0 : uint32_t(value.data() - base);
  } else {  // the parser rebuilt a folded value in its own storage
    r.value_off = uint32_t(arena_.size());
    r.value_in_arena = true;
    arena_.append(value);
  }
  fields_.push_back(r);
  if (f == bhttp::field::expect && iequals(value, "100-continue")) expect_continue_ = true;
}

void ConnBase::on_body(std::string_view piece, bool chunked) {
  if (piece.empty()) return;
  if (body_streams_) {
    body_piece_.append(piece);
    return;
  }
  const char* base = buf_.get() + begin_;
  if (chunked || body_mode_ == BodyMode::Copy) {
    if (body_mode_ == BodyMode::View) body_copy_.assign(base + body_off_, body_len_);
    body_mode_ = BodyMode::Copy;
    body_copy_.append(piece);
    return;
  }
  size_t off = size_t(piece.data() - base);
  if (body_mode_ == BodyMode::None) {
    body_mode_ = BodyMode::View;
    body_off_ = off;
    body_len_ = piece.size();
  } else if (off == body_off_ + body_len_) {
    body_len_ += piece.size();
  } else {
    body_copy_.assign(base + body_off_, body_len_);
    body_copy_.append(piece);
    body_mode_ = BodyMode::Copy;
  }
}

// The request loop: parse what is buffered; dispatch a whole request; read when more is
// needed. Returns when waiting for the network or for the handler.
void ConnBase::process() {
  for (;;) {
    if (st_ == St::Closed || st_ == St::Lingering) return;
    if (!parser_->has_value()) begin_request();
    auto& p = **parser_;
    if (parse_ < end_) {
      beast::error_code ec;
      size_t n = p.put(asio::const_buffer(buf_.get() + parse_, end_ - parse_), ec);
      parse_ += n;
      if (ec && ec != bhttp::error::need_more) {
        fail(ec);
        return;
      }
      if (p.is_header_done() && header_end_ == 0) header_end_ = parse_ - begin_;
      if (p.is_done()) {
        if (body_streams_) {  // the whole body came before the handler ran
          body_done_ = true;
          continue;
        }
        dispatch();
        if (st_ != St::Ready) return;
        continue;  // answered at once: the next pipelined request, or read
      }
    }
    if (p.is_header_done() && !body_decided_) {
      if (!choose_body_mode()) return;
      if (!body_streams_ && parse_ < end_) continue;  // read the rest of the body whole
    }
    if (body_streams_) {
      if (expect_continue_ && !body_done_ && !continue_sent_ && version_ == 11) {
        continue_sent_ = true;
        static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
        out_.assign(kContinue, sizeof kContinue - 1);
        flush(After::Continue);  // resumes here from on_written
        if (write_pending_ || st_ == St::Closed) return;
      }
      // The handler runs now; the body is read as it asks. The head keeps its place in the
      // buffer (the handler holds views of it), so make the room for the body's reads now.
      if (begin_ > 0) {
        memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        parse_ -= begin_;
        end_ -= begin_;
        begin_ = 0;
      }
      if (cap_ - end_ < kMinRead) grow(end_ + 16 * 1024);
      dispatch();
      if (st_ != St::Ready) return;
      continue;
    }
    size_t have = end_ - begin_;
    if (!p.is_header_done()) {
      if (have >= loop_->sh().opt.max_header_bytes) {
        send_error(431);
        return;
      }
    } else if (expect_continue_ && !continue_sent_ && version_ == 11) {
      continue_sent_ = true;
      static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      out_.assign(kContinue, sizeof kContinue - 1);
      flush(After::Continue);
      if (write_pending_ || st_ == St::Closed) return;
    }
    if (have > 0) {
      if (st_ != St::Reading) {
        st_ = St::Reading;
        deadline = coarse_clock_ms() + loop_->sh().opt.read_timeout.count();
      }
    } else if (st_ != St::Idle) {
      st_ = St::Idle;
      const auto& o = loop_->sh().opt;
      deadline = coarse_clock_ms() + (first_request_ ? o.read_timeout : o.idle_timeout).count();
      if (loop_->draining()) {
        close_socket();
        return;
      }
    }
    start_read();
    return;
  }
}

void ConnBase::start_read() {
  make_room();
  read_pending_ = true;
  io_read(buf_.get() + end_, cap_ - end_);
}

void ConnBase::make_room() {
  if (cap_ - end_ >= kMinRead) return;
  bool chunk_copy = body_mode_ == BodyMode::Copy && parser_->has_value() &&
                    (**parser_).is_header_done() && header_end_ > 0;
  if (chunk_copy && parse_ > begin_ + header_end_) {
    // The body is copied out: the chunk framing already parsed is no longer needed.
    size_t keep_to = begin_ + header_end_;
    memmove(buf_.get() + keep_to, buf_.get() + parse_, end_ - parse_);
    end_ -= parse_ - keep_to;
    parse_ = keep_to;
  }
  if (begin_ > 0) {
    memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    parse_ -= begin_;
    end_ -= begin_;
    begin_ = 0;
  }
  if (cap_ - end_ < kMinRead) grow(end_ + kMinRead);
}

void ConnBase::grow(size_t want) {
  size_t n = std::max(cap_ * 2, want);
  auto b = std::make_unique_for_overwrite<char[]>(n);
  memcpy(b.get(), buf_.get(), end_);
  buf_ = std::move(b);
  cap_ = n;
}

void ConnBase::dispatch() {
  st_ = St::Handling;
  deadline = 0;
  first_request_ = false;
  const char* base = buf_.get() + begin_;
  method_ = {base + method_off_, method_len_};
  target_ = {base + target_off_, target_len_};
  hv_.resize(fields_.size());
  for (size_t i = 0; i < fields_.size(); ++i) {
    const FieldRef& f = fields_[i];
    hv_[i].name = {base + f.name_off, f.name_len};
    hv_[i].value = {(f.value_in_arena ? arena_.data() : base) + f.value_off, f.value_len};
  }
  switch (body_mode_) {
    case BodyMode::None:
      body_ = {};
      break;
    case BodyMode::View:
      body_ = {base + body_off_, body_len_};
      break;
    case BodyMode::Copy:
      body_ = body_copy_;
      break;
  }
  // A streamed body may still be arriving when the answer goes out (the handler answers
  // from any thread at any time): such a connection closes after its answer.
  keep_alive_ = (**parser_).keep_alive() && !body_streams_;
  if (auto n = (**parser_).content_length(); n && !(**parser_).chunked())
    content_length_ = int64_t(*n);
  head_ = method_ == "HEAD";
  in_request_ = true;
  loop_->request_started();
  responded_ = deferred_ = false;
  in_handler_ = true;
  try {
    loop_->sh().handler(*this);
  } catch (const std::exception& e) {
    loop_->sh().log(std::string("http handler threw: ") + e.what());
  } catch (...) {
    loop_->sh().log("http handler threw");
  }
  in_handler_ = false;
  if (deferred_ && !responded_) return;  // Deferred::respond continues in deliver()
  if (!responded_) {
    responded_ = true;
    close_after_ = render_response(out_, internal_error(), render_params());
  }
  flush(After::Response);
}

RenderParams ConnBase::render_params() {
  RenderParams p;
  p.version = version_;
  p.keep_alive = keep_alive_;
  p.head = head_;
  p.draining = loop_->draining();
  p.date_line = loop_->date_line();
  return p;
}

void ConnBase::respond(const ResponseView& r) {
  if (responded_ || deferred_ || st_ != St::Handling) return;
  responded_ = true;
  close_after_ = render_response(out_, r, render_params());
}

Deferred ConnBase::defer() {
  if (responded_ || deferred_ || st_ != St::Handling) return Deferred();
  deferred_ = true;
  return Deferred(shared_from_this());
}

void ConnBase::deliver_from(std::shared_ptr<Connection> keep, const ResponseView& r) {
  // On any thread. The request's fields read here do not change until it is answered.
  const auto& gate = gate_;  // loop_ is not touched here: the gate outlives the loop
  if (current_loop() == gate->ioc && !in_handler_) {
    // On the connection's own loop, outside its handler (an origin's answer arriving):
    // rendered straight into the connection's buffer and written now.
    if (st_ != St::Handling || !deferred_ || responded_) return deliver(std::string(), false);
    responded_ = true;
    close_after_ = render_response(out_, r, render_params());
    flush(After::Response);
    if (st_ == St::Ready) process();
    finish();
    return;
  }
  RenderParams p;
  p.version = version_;
  p.keep_alive = keep_alive_;
  p.head = head_;
  p.draining = gate->draining.load();
  char date_line[kDateLineSize + 1];
  format_date_line(wall_sec(), date_line);
  p.date_line = date_line;
  std::string out;
  bool close = render_response(out, r, p);
  std::unique_lock<std::mutex> lk(gate->mu);
  if (!gate->open) {
    lk.unlock();
    return;  // the server is gone; `keep` goes with it
  }
  asio::post(*gate->ioc, [c = std::move(keep), out = std::move(out), close]() mutable {
    auto* conn = static_cast<ConnBase*>(c.get());
    conn->deliver(std::move(out), close);
  });
}

void ConnBase::deliver(std::string&& rendered, bool close) {
  if (st_ != St::Handling || !deferred_ || responded_) {
    if (in_request_ && st_ == St::Closed) {
      in_request_ = false;
      loop_->request_answered();
    }
    finish();
    return;
  }
  responded_ = true;
  out_.swap(rendered);
  close_after_ = close;
  flush(After::Response);
  if (st_ == St::Ready) process();
  finish();
}

void ConnBase::stream_head_from(std::shared_ptr<Connection> keep, const ResponseView& head,
                                std::optional<uint64_t> length) {
  // On any thread, like deliver_from.
  const auto& gate = gate_;
  RenderParams p;
  p.framing = length ? Framing::Length : Framing::Chunked;
  p.length = length.value_or(0);
  p.version = version_;
  p.keep_alive = keep_alive_;
  p.head = head_;
  p.draining = gate->draining.load();
  char date_line[kDateLineSize + 1];
  format_date_line(wall_sec(), date_line);
  p.date_line = date_line;
  std::string out;
  const ResponseView& r = response_valid(head) ? head : internal_error();
  if (&r != &head) p.framing = Framing::Whole;  // the plain 500: no body follows
  bool close = render_response(out, r, p);
  bool bodyless = r.status == 204 || r.status == 304 || head_ || p.framing == Framing::Whole;
  bool chunked = p.framing == Framing::Chunked && version_ == 11;
  std::unique_lock<std::mutex> lk(gate->mu);
  if (!gate->open) return;
  asio::post(*gate->ioc, [c = std::move(keep), out = std::move(out), close, chunked, bodyless,
                          length]() mutable {
    static_cast<ConnBase*>(c.get())->deliver_stream_head(std::move(out), close, chunked, !bodyless,
                                                         length);
  });
}

void ConnBase::stream_push_from(std::shared_ptr<Connection> keep, std::string piece,
                                std::function<void(bool)> taken, StreamEnd end) {
  const auto& gate = gate_;
  std::unique_lock<std::mutex> lk(gate->mu);
  if (!gate->open) return;  // the server is gone; `taken` is dropped unrun
  asio::post(*gate->ioc, [c = std::move(keep), piece = std::move(piece), taken = std::move(taken),
                          end]() mutable {
    static_cast<ConnBase*>(c.get())->deliver_stream_push(std::move(piece), std::move(taken), end);
  });
}

void ConnBase::deliver_stream_head(std::string&& rendered, bool close, bool chunked, bool body,
                                   std::optional<uint64_t> length) {
  if (st_ != St::Handling || !deferred_ || responded_) {
    if (in_request_ && st_ == St::Closed) {
      in_request_ = false;
      loop_->request_answered();
    }
    finish();
    return;
  }
  responded_ = true;
  st_ = St::Streaming;
  close_after_ = close;
  stream_chunked_ = chunked;
  stream_body_ = body;
  stream_ended_ = stream_aborted_ = false;
  stream_left_ = body ? length : std::optional<uint64_t>(0);
  stream_pending_ = std::move(rendered);
  stream_kick();
  finish();
}

void ConnBase::deliver_stream_push(std::string&& piece, std::function<void(bool)>&& taken,
                                   StreamEnd end) {
  if (st_ != St::Streaming || stream_ended_) {
    if (in_request_ && st_ == St::Closed && end != StreamEnd::No) {
      in_request_ = false;
      loop_->request_answered();
    }
    if (taken) taken(false);
    finish();
    return;
  }
  if (!piece.empty() && stream_body_) {
    std::string_view data = piece;
    if (stream_left_) {  // never more than the announced length
      data = data.substr(0, size_t(std::min<uint64_t>(*stream_left_, data.size())));
      *stream_left_ -= data.size();
    }
    if (stream_chunked_ && !data.empty()) {
      char hex[20];
      auto res = std::to_chars(hex, hex + sizeof hex, data.size(), 16);
      stream_pending_.append(hex, size_t(res.ptr - hex));
      stream_pending_.append("\r\n");
      stream_pending_.append(data);
      stream_pending_.append("\r\n");
    } else if (stream_pending_.empty() && data.size() == piece.size()) {
      stream_pending_.swap(piece);
    } else {
      stream_pending_.append(data);
    }
  }
  if (taken) stream_waiting_.push_back(std::move(taken));
  if (end != StreamEnd::No) {
    stream_ended_ = true;
    if (end == StreamEnd::Abort || (stream_left_ && *stream_left_ != 0)) {
      stream_aborted_ = true;
      close_after_ = true;  // the client must see that the body is incomplete
    } else if (stream_chunked_ && stream_body_) {
      stream_pending_.append("0\r\n\r\n");
    }
  }
  stream_kick();
  finish();
}

// Starts writing what is waiting, unless a write is in progress (its completion comes back).
void ConnBase::stream_kick() {
  if (write_pending_ || st_ != St::Streaming) return;
  if (stream_pending_.empty() && stream_waiting_.empty() && !stream_ended_) return;
  out_.clear();
  out_.swap(stream_pending_);
  stream_sending_.swap(stream_waiting_);
  flush(After::StreamPart);
}

// The bytes of one stream write went out: tell their writers, then go on.
void ConnBase::stream_written() {
  deadline = 0;  // waiting for the source now: its own timeouts apply
  std::vector<std::function<void(bool)>> done;
  done.swap(stream_sending_);
  if (!stream_pending_.empty() || !stream_waiting_.empty()) {
    stream_kick();
  } else if (stream_ended_ && st_ == St::Streaming) {
    response_done();
    if (st_ == St::Ready) process();
  }
  for (auto& f : done) f(true);
}

void ConnBase::stream_fail_waiters() {
  std::vector<std::function<void(bool)>> a, b;
  a.swap(stream_sending_);
  b.swap(stream_waiting_);
  stream_pending_.clear();
  for (auto& f : a) f(false);
  for (auto& f : b) f(false);
}

// Chooses, once a request's head is in, whether its body is read whole before the handler
// runs or streams to it. Returns false when it answered 413 instead.
bool ConnBase::choose_body_mode() {
  body_decided_ = true;
  auto& p = **parser_;
  if (p.is_done()) return true;
  const auto& o = loop_->sh().opt;
  if (!o.stream_request_bodies) return true;  // eager parsing, the usual limit
  auto length = p.content_length();
  bool large = p.chunked() || (length && *length > o.max_body_bytes);
  if (large && o.stream_request_bodies()) {
    body_streams_ = true;
    if (o.max_stream_bytes != 0) p.body_limit(boost::optional<std::uint64_t>(o.max_stream_bytes));
    return true;
  }
  if (length && *length > o.max_body_bytes) {
    send_error(413);
    return false;
  }
  p.body_limit(boost::optional<std::uint64_t>(o.max_body_bytes));
  p.eager(true);
  return true;
}

std::shared_ptr<BodySource> ConnBase::body_stream() {
  if (!body_streams_ || st_ != St::Handling) return nullptr;
  class Source final : public BodySource {
   public:
    explicit Source(std::shared_ptr<Connection> c) : conn_(std::move(c)) {}
    void read(Got got) override { conn_->body_read_from(conn_, std::move(got)); }

   private:
    std::shared_ptr<Connection> conn_;
  };
  return std::make_shared<Source>(shared_from_this());
}

void ConnBase::body_read_from(std::shared_ptr<Connection> keep, BodySource::Got got) {
  const auto& gate = gate_;
  std::unique_lock<std::mutex> lk(gate->mu);
  if (!gate->open) {
    lk.unlock();
    got({}, true, "the server stopped");
    return;
  }
  asio::post(*gate->ioc, [c = std::move(keep), got = std::move(got)]() mutable {
    auto* conn = static_cast<ConnBase*>(c.get());
    if (!conn->body_streams_ || conn->body_got_ || conn->st_ == St::Closed) {
      got({}, true,
          conn->st_ == St::Closed
              ? "the client connection closed"
              : "the request body is not available (read already, or answered)");
      return conn->finish();
    }
    conn->body_got_ = std::move(got);
    conn->body_pump();
    conn->finish();
  });
}

void ConnBase::body_fail(std::string_view why) {
  body_piece_.clear();
  if (!body_got_) return;
  auto got = std::move(body_got_);
  body_got_ = nullptr;
  got({}, true, std::string(why));
}

void ConnBase::body_pump() {
  if (!body_got_ || !body_streams_) return;
  auto& p = **parser_;
  const size_t keep = begin_ + header_end_;  // the head stays; consumed body bytes go
  while (body_piece_.empty() && !body_done_ && parse_ < end_) {
    beast::error_code ec;
    size_t n = p.put(asio::const_buffer(buf_.get() + parse_, end_ - parse_), ec);
    parse_ += n;
    if (ec && ec != bhttp::error::need_more) {
      loop_->sh().log(std::string("request body of ") + std::string(target_) +
                      " failed: " + ec.message());
      body_fail(ec == bhttp::error::body_limit ? "the request body is larger than the limit"
                                               : "the request body is malformed");
      close_socket();
      return;
    }
    if (p.is_done()) body_done_ = true;
    if (parse_ > keep) {
      memmove(buf_.get() + keep, buf_.get() + parse_, end_ - parse_);
      end_ -= parse_ - keep;
      parse_ = keep;
    }
    if (n == 0) break;  // needs more bytes than are buffered
  }
  if (!body_piece_.empty() || body_done_) {
    auto got = std::move(body_got_);
    body_got_ = nullptr;
    std::string piece;
    piece.swap(body_piece_);
    got(std::move(piece), body_done_, {});
    return;
  }
  if (read_pending_) return;
  if (cap_ - end_ == 0) {  // an endless chunk-size line: nothing more can be parsed
    body_fail("the request body is malformed");
    close_socket();
    return;
  }
  if (st_ == St::Handling) deadline = coarse_clock_ms() + loop_->sh().opt.read_timeout.count();
  read_pending_ = true;
  io_read(buf_.get() + end_, cap_ - end_);
}

// Sends out_: one non-blocking send, then async_write for what the kernel did not take.
void ConnBase::flush(After after) {
  after_ = after;
  bool failed = false;
  size_t n = io_try_write(out_.data(), out_.size(), &failed);
  if (failed) {
    close_socket();
    return;
  }
  if (n == out_.size()) {
    if (after == After::Response) response_done();
    if (after == After::StreamPart) stream_written();
    return;
  }
  out_pos_ = n;
  if (after == After::Response) st_ = St::Writing;
  if (after != After::Continue)
    deadline = coarse_clock_ms() + loop_->sh().opt.write_timeout.count();
  write_pending_ = true;
  io_write(out_.data() + n, out_.size() - n);
}

void ConnBase::on_written(const boost::system::error_code& ec) {
  write_pending_ = false;
  if (st_ == St::Closed) return finish();
  if (ec) {
    close_socket();
    return finish();
  }
  if (after_ == After::Continue) {
    if (!read_pending_ && st_ != St::Handling) process();
    return finish();
  }
  if (after_ == After::StreamPart) {
    stream_written();
    return finish();
  }
  response_done();
  if (st_ == St::Ready) process();
  finish();
}

void ConnBase::response_done() {
  if (in_request_) {
    in_request_ = false;
    loop_->request_answered();
  }
  if (body_streams_) {
    close_after_ = true;  // see dispatch(): rendered with Connection: close
    body_fail("the request was answered before its body was read");
    body_streams_ = false;
  }
  parser_->reset();
  if (close_after_ || loop_->draining()) {
    begin_linger();
    return;
  }
  begin_ = parse_;
  if (begin_ == end_) {
    begin_ = parse_ = end_ = 0;
    if (cap_ > kKeepBuffer) {
      buf_ = std::make_unique_for_overwrite<char[]>(kInitialBuffer);
      cap_ = kInitialBuffer;
    }
  }
  if (out_.capacity() > kKeepBuffer) std::string().swap(out_);
  if (body_copy_.capacity() > kKeepBuffer) std::string().swap(body_copy_);
  // The views of the answered request are dead from here on.
  st_ = St::Ready;
}

void ConnBase::send_error(int status) {
  const bool json = loop_->sh().opt.json_errors;
  std::string_view text =
      json ? "{\"error\": \"the request is malformed\", \"details\": []}\n" : "Bad Request\n";
  switch (status) {
    case 408:
      text = json ? "{\"error\": \"the request was not received in time\", \"details\": []}\n"
                  : "Request Timeout\n";
      break;
    case 413:
      text = json ? "{\"error\": \"the request body is too large\", \"details\": []}\n"
                  : "Content Too Large\n";
      break;
    case 431:
      text = json ? "{\"error\": \"the request head is too large\", \"details\": []}\n"
                  : "Request Header Fields Too Large\n";
      break;
    default:
      break;
  }
  ResponseView r{status, json ? "application/json" : "text/plain", {}, text, true};
  RenderParams p;
  p.version = 11;
  p.keep_alive = false;
  p.date_line = loop_->date_line();
  render_response(out_, r, p);
  close_after_ = true;
  st_ = St::Writing;
  deadline = coarse_clock_ms() + loop_->sh().opt.write_timeout.count();
  flush(After::Response);
}

void ConnBase::fail(const boost::system::error_code& ec) {
  if (ec == bhttp::error::header_limit)
    send_error(431);
  else if (ec == bhttp::error::body_limit)
    send_error(413);
  else
    send_error(400);
}

// After a closing response: stop sending, and read and drop what the client still sends for
// a moment, so that closing does not reset the connection before the client read the answer.
void ConnBase::begin_linger() {
  st_ = St::Lingering;
  deadline = coarse_clock_ms() + std::min<int64_t>(kLingerMs, loop_->sh().opt.read_timeout.count());
  io_shutdown_send();
  lingered_ = 0;
  begin_ = parse_ = end_ = 0;
  if (!read_pending_) {
    read_pending_ = true;
    io_read(buf_.get(), cap_);
  }
}

void ConnBase::on_read(const boost::system::error_code& ec, size_t n) {
  read_pending_ = false;
  if (st_ == St::Closed) return finish();
  if (ec) {  // end of stream, reset, or closed by us
    close_socket();
    return finish();
  }
  if (st_ == St::Lingering) {
    lingered_ += n;
    if (n == 0 || lingered_ > kLingerBytes) {
      close_socket();
    } else {
      read_pending_ = true;
      io_read(buf_.get(), cap_);
    }
    return finish();
  }
  end_ += n;
  if (body_streams_ && st_ != St::Ready) {
    if (st_ == St::Handling) deadline = 0;
    body_pump();
    return finish();
  }
  if (!write_pending_) process();
  finish();
}

void ConnBase::on_timeout() {
  switch (st_) {
    case St::Reading:
      if (!write_pending_) {
        send_error(408);
        break;
      }
      close_socket();
      break;
    case St::Handling:
      if (body_streams_ && read_pending_) {
        body_fail("the client did not send the request body in time");
        close_socket();
      }
      break;
    case St::Ready:
      break;
    default:
      close_socket();
  }
}

void ConnBase::close_socket() {
  if (st_ == St::Closed) return;
  st_ = St::Closed;
  deadline = 0;
  io_close();
  if (in_request_ && !deferred_) {
    in_request_ = false;
    loop_->request_answered();
  }
  stream_fail_waiters();
  body_fail("the client connection closed");
}

void ConnBase::finish() {
  if (st_ == St::Closed && !read_pending_ && !write_pending_ && !hs_pending_ && self) {
    io_release();
    loop_->unlink(this);
    std::shared_ptr<Connection> keep = std::move(self);
  }
}

class PlainConn final : public ConnBase {
 public:
#ifdef CAP_NET_DRAINING_READ
  PlainConn(Loop* loop, Socket&& s, const tcp::endpoint& peer)
      : ConnBase(loop, peer),
        sock_(std::in_place, std::move(s)),
        read_op_(this, [](void* self, const boost::system::error_code& ec, size_t n) {
          static_cast<PlainConn*>(self)->on_read(ec, n);
        }) {
    boost::system::error_code ignored;
    sock_->non_blocking(true, ignored);
  }
#else
  PlainConn(Loop* loop, Socket&& s, const tcp::endpoint& peer)
      : ConnBase(loop, peer), sock_(std::move(s)) {}
#endif

 private:
  void io_read(char* p, size_t n) override {
#ifdef CAP_NET_DRAINING_READ
    read_op_.start(loop_->reactor(), *sock_, p, n);
#else
    sock_->async_read_some(asio::buffer(p, n), [this](const boost::system::error_code& ec,
                                                      size_t got) { on_read(ec, got); });
#endif
  }
  void io_write(const char* p, size_t n) override {
    asio::async_write(*sock_, asio::buffer(p, n),
                      [this](const boost::system::error_code& ec, size_t) { on_written(ec); });
  }
  size_t io_try_write(const char* p, size_t n, bool* failed) override {
    size_t done = 0;
    int fd = sock_->native_handle();
    while (done < n) {
      ssize_t r = ::send(fd, p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r > 0) {
        done += size_t(r);
      } else if (r < 0 && errno == EINTR) {
        continue;
      } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        *failed = true;
        break;
      }
    }
    return done;
  }
  void io_shutdown_send() override {
    boost::system::error_code ec;
    sock_->shutdown(tcp::socket::shutdown_send, ec);
  }
  void io_close() override {
    boost::system::error_code ec;
    sock_->close(ec);
  }
  void io_release() override { sock_.reset(); }
  bool tls() const override { return false; }
  bool secure() const override { return false; }

#ifdef CAP_NET_DRAINING_READ
  std::optional<ReactorSocket> sock_;
  DrainingRead read_op_;
#else
  std::optional<Socket> sock_;
#endif
};

class TlsConn final : public ConnBase {
 public:
  TlsConn(Loop* loop, Socket&& s, const tcp::endpoint& peer, asio::ssl::context& ctx)
      : ConnBase(loop, peer), stream_(std::in_place, std::move(s), ctx) {
    st_ = St::Handshake;
  }
  void handshake() {
    deadline = coarse_clock_ms() + loop_->sh().opt.read_timeout.count();
    hs_pending_ = true;
    stream_->async_handshake(asio::ssl::stream_base::server,
                             [this](const boost::system::error_code& ec) {
                               hs_pending_ = false;
                               if (st_ != St::Closed) {
                                 if (ec) {
                                   close_socket();
                                 } else {
                                   st_ = St::Ready;
                                   process();
                                 }
                               }
                               finish();
                             });
  }

 private:
  void io_read(char* p, size_t n) override {
    stream_->async_read_some(asio::buffer(p, n), [this](const boost::system::error_code& ec,
                                                        size_t got) { on_read(ec, got); });
  }
  void io_write(const char* p, size_t n) override {
    asio::async_write(*stream_, asio::buffer(p, n),
                      [this](const boost::system::error_code& ec, size_t) { on_written(ec); });
  }
  size_t io_try_write(const char*, size_t, bool*) override { return 0; }
  void io_shutdown_send() override {
    boost::system::error_code ec;
    stream_->next_layer().shutdown(tcp::socket::shutdown_send, ec);
  }
  void io_close() override {
    boost::system::error_code ec;
    stream_->next_layer().close(ec);
  }
  void io_release() override { stream_.reset(); }
  bool tls() const override { return true; }
  bool secure() const override { return true; }

  std::optional<TlsStream> stream_;
};

// ---- Loop ----

bool Loop::listen(const tcp::endpoint& ep, bool reuse_port, std::string* error) {
  boost::system::error_code ec;
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && reuse_port) {
    int one = 1;
    if (setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      ec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    *error = "cannot listen on " + ep.address().to_string() + ":" + std::to_string(ep.port()) +
             ": " + ec.message();
    return false;
  }
  return true;
}

void Loop::accept_next() {
  if (stopping_ || draining_) return;
  acceptor_.async_accept(pending_, peer_,
                         [this](const boost::system::error_code& ec) { on_accept(ec); });
}

void Loop::on_accept(const boost::system::error_code& ec) {
  if (ec == asio::error::operation_aborted || stopping_ || draining_) {
    boost::system::error_code ignored;
    pending_.close(ignored);
    return;
  }
  if (ec) {
    // Out of descriptors or memory: wait a little rather than spin.
    sh_.log("http server " + sh_.opt.name + ": accept failed: " + ec.message());
    accept_retry_.expires_after(std::chrono::milliseconds(50));
    accept_retry_.async_wait([this](const boost::system::error_code& e) {
      if (!e) accept_next();
    });
    return;
  }
  if (sh_.connections.load(std::memory_order_relaxed) >= sh_.opt.max_connections) {
    boost::system::error_code ignored;
    pending_.close(ignored);
    accept_next();
    return;
  }
  sh_.accepted.fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ignored;
  pending_.set_option(tcp::no_delay(true), ignored);
  std::shared_ptr<ConnBase> c;
  if (sh_.tls) {
    auto t = std::make_shared<TlsConn>(this, std::move(pending_), peer_, *sh_.tls);
    c = t;
    link(c.get());
    c->self = c;
    c->start();
    t->handshake();
  } else {
    c = std::make_shared<PlainConn>(this, std::move(pending_), peer_);
    link(c.get());
    c->self = c;
    c->start();
  }
  ConnBase* raw = c.get();
  c.reset();
  raw->finish();
  accept_next();
}

void Loop::link(ConnBase* c) {
  c->next = head_;
  c->prev = nullptr;
  if (head_) head_->prev = c;
  head_ = c;
  sh_.connections.fetch_add(1, std::memory_order_relaxed);
  arm_sweep();  // off while the loop had no connection
}

void Loop::unlink(ConnBase* c) {
  if (c->prev) c->prev->next = c->next;
  if (c->next) c->next->prev = c->prev;
  if (head_ == c) head_ = c->next;
  c->prev = c->next = nullptr;
  sh_.connections.fetch_sub(1, std::memory_order_relaxed);
}

void Loop::arm_sweep() {
  if (stopping_ || sweep_armed_ || !head_) return;
  sweep_armed_ = true;
  sweep_timer_.expires_after(std::chrono::milliseconds(sh_.sweep_ms));
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    sweep_armed_ = false;
    if (ec || stopping_) return;
    sweep();
    arm_sweep();
  });
}

void Loop::sweep() {
  int64_t now = coarse_clock_ms();
  for (ConnBase* c = head_; c;) {
    ConnBase* next = c->next;
    if (c->deadline != 0 && now >= c->deadline) {
      c->on_timeout();
      c->finish();
    }
    c = next;
  }
}

void Loop::stop_accepting() {
  asio::post(ioc_, [this] {
    draining_ = true;
    gate_->draining = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    accept_retry_.cancel();
    for (ConnBase* c = head_; c;) {
      ConnBase* next = c->next;
      if (c->idle()) {
        c->close_socket();
        c->finish();
      }
      c = next;
    }
  });
}

void Loop::close_all() {
  asio::post(ioc_, [this] {
    stopping_ = true;
    draining_ = true;
    gate_->draining = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    pending_.close(ec);
    sweep_timer_.cancel();
    accept_retry_.cancel();
    for (ConnBase* c = head_; c;) {
      ConnBase* next = c->next;
      c->close_socket();
      c->finish();
      c = next;
    }
    LoopScope::run_exit_hooks();  // e.g. the HTTP client's calls on this loop
  });
}

}  // namespace

// ---- Deferred ----

Deferred::~Deferred() {
  if (conn_) respond(internal_error());
}

void Deferred::respond(const ResponseView& r) {
  if (!conn_) return;
  std::shared_ptr<Connection> c = std::move(conn_);
  Connection* p = c.get();
  p->deliver_from(std::move(c), r);
}

Deferred& Deferred::operator=(Deferred&& other) noexcept {
  if (this != &other) {
    if (conn_) respond(internal_error());
    conn_ = std::move(other.conn_);
  }
  return *this;
}

// ---- ResponseStream ----

std::shared_ptr<ResponseStream> Deferred::stream(const ResponseView& head,
                                                 std::optional<uint64_t> length) {
  if (!conn_) return nullptr;
  std::shared_ptr<Connection> c = std::move(conn_);
  c->stream_head_from(c, head, length);
  return std::make_shared<ResponseStream>(std::move(c));
}

ResponseStream::~ResponseStream() {
  if (conn_) end(false);
}

void ResponseStream::write(std::string piece, std::function<void(bool)> taken) {
  if (!conn_) {
    if (taken) taken(false);
    return;
  }
  conn_->stream_push_from(conn_, std::move(piece), std::move(taken), Connection::StreamEnd::No);
}

void ResponseStream::end(bool complete) {
  if (!conn_) return;
  std::shared_ptr<Connection> c = std::move(conn_);
  Connection* p = c.get();
  p->stream_push_from(std::move(c), {}, {},
                      complete ? Connection::StreamEnd::Complete : Connection::StreamEnd::Abort);
}

// ---- HttpServer ----

struct HttpServer::Impl {
  Shared sh;
  std::vector<std::unique_ptr<Loop>> loops;
  uint16_t port = 0;
  bool started = false;
  bool stopped = false;
  mutable std::mutex mu;  // guards `loops` against teardown

  size_t in_flight() const {
    size_t n = 0;
    for (const auto& l : loops) n += l->in_flight();
    return n;
  }
  void teardown() {
    for (auto& l : loops) l->close_all();
    for (auto& l : loops) l->join();
    loops.clear();
    stopped = true;
  }
};

HttpServer::HttpServer(ServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->sh.opt = std::move(options);
  impl_->sh.handler = std::move(handler);
}

HttpServer::~HttpServer() {
  if (impl_->started && !impl_->stopped) {
    stop_accepting();
    drain(std::chrono::milliseconds(0));
  }
}

bool HttpServer::start(std::string* error) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  std::string scratch;
  if (!error) error = &scratch;
  if (impl_->started) {
    *error = "the server was already started";
    return false;
  }
  Shared& sh = impl_->sh;
  ServerOptions& o = sh.opt;
  if (!sh.handler) {
    *error = "no request handler";
    return false;
  }
  if (o.threads <= 0) o.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  if (o.max_header_bytes < 256) o.max_header_bytes = 256;
  int64_t shortest =
      std::min({o.read_timeout.count(), o.idle_timeout.count(), o.write_timeout.count()});
  sh.sweep_ms = std::clamp<int64_t>(shortest / 4, 10, 250);

  boost::system::error_code ec;
  auto addr = asio::ip::make_address(o.address, ec);
  if (ec) {
    *error = "bad listen address '" + o.address + "': " + ec.message();
    return false;
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    *error = "TLS needs both a certificate file and a key file";
    return false;
  }
  if (!o.tls_cert_file.empty()) {
    auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    ctx->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec) {
      *error = "cannot load TLS certificate " + o.tls_cert_file + ": " + ec.message();
      return false;
    }
    ctx->use_private_key_file(o.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) {
      *error = "cannot load TLS key " + o.tls_key_file + ": " + ec.message();
      return false;
    }
    sh.tls = std::move(ctx);
  }

  bool reuse_port = o.threads > 1;
  uint16_t port = o.port;
  if (reuse_port && port != 0) {
    // SO_REUSEPORT would let us share the port with another running server: make sure the
    // port is free first.
    asio::io_context probe_ctx;
    tcp::acceptor probe(probe_ctx);
    tcp::endpoint ep(addr, port);
    probe.open(ep.protocol(), ec);
    if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) probe.bind(ep, ec);
    if (ec) {
      *error = "cannot listen on " + o.address + ":" + std::to_string(port) + ": " + ec.message();
      return false;
    }
  }
  for (int i = 0; i < o.threads; ++i) {
    auto loop = std::make_unique<Loop>(sh);
    if (!loop->listen(tcp::endpoint(addr, port), reuse_port, error)) {
      impl_->loops.clear();
      return false;
    }
    if (port == 0) port = loop->bound_port();
    impl_->loops.push_back(std::move(loop));
  }
  impl_->port = port;
  for (auto& l : impl_->loops) l->start();
  impl_->started = true;
  return true;
}

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::stop_accepting() {
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (!impl_->started || impl_->stopped) return;
  for (auto& l : impl_->loops) l->stop_accepting();
}

bool HttpServer::drain(std::chrono::milliseconds timeout) {
  stop_accepting();
  auto until = std::chrono::steady_clock::now() + timeout;
  while (in_flight() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (!impl_->started || impl_->stopped) return true;
  bool done = impl_->in_flight() == 0;
  impl_->teardown();
  return done;
}

size_t HttpServer::in_flight() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->in_flight();
}

size_t HttpServer::connections() const { return impl_->sh.connections.load(); }

uint64_t HttpServer::accepted() const { return impl_->sh.accepted.load(); }

}  // namespace cap::net

// The HTTP client pool (src/net/http_client.cpp) against the project's own server on
// loopback: requests and default headers, connection reuse, timeouts, refused connections,
// retries on dead pooled connections, bad URLs and headers, size limits, TLS verification.
#include "net/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>
#include <tuple>

#include "net/http_server.h"
#include "net/net_support.h"

namespace cap::net {
namespace {

using namespace std::chrono_literals;
using test::cat;

std::string header_of(const HttpReply& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return tolower(static_cast<unsigned char>(a)) == tolower(static_cast<unsigned char>(b));
        }))
      return v;
  return "";
}

// A port nothing listens on.
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class NetClient : public ::testing::Test {
 protected:
  // Echoes the request: method, target, a few headers and the body. "/slow" answers after
  // 800 ms from another thread; "/big" sends 5000 bytes.
  void start(ServerOptions o = {}) {
    o.address = "127.0.0.1";
    o.port = 0;
    server_ = std::make_unique<HttpServer>(o, [this](Exchange& ex) { handle(ex); });
    std::string error;
    ASSERT_TRUE(server_->start(&error)) << error;
    base_ = cat(o.tls_cert_file.empty() ? "http" : "https",
                "://127.0.0.1:", std::to_string(server_->port()));
  }
  void TearDown() override {
    if (server_) server_->drain(2s);
    for (auto& t : threads_) t.join();
  }
  void handle(Exchange& ex) {
    std::string target(ex.target());
    if (target == "/slow") {
      auto d = std::make_shared<Deferred>(ex.defer());
      std::lock_guard<std::mutex> lk(mu_);
      threads_.emplace_back([d] {
        std::this_thread::sleep_for(800ms);
        ResponseView r;
        r.body = "slow";
        d->respond(r);
      });
      return;
    }
    std::vector<std::pair<std::string, std::string>> h = {
        {"X-Method", std::string(ex.method())},
        {"X-Target", target},
        {"X-Host", std::string(ex.header("host"))},
        {"X-User-Agent", std::string(ex.header("user-agent"))},
        {"X-Authorization", std::string(ex.header("authorization"))},
        {"X-Content-Length", std::string(ex.header("content-length"))},
        {"X-Transfer-Encoding", std::string(ex.header("transfer-encoding"))},
        {"X-Custom", std::string(ex.header("x-custom"))},
        {"X-Secure", ex.secure() ? "yes" : "no"},
    };
    if (target.starts_with("/stream")) {  // 1 MB in 64 KB pieces; chunked for /stream/chunked
      auto d = std::make_shared<Deferred>(ex.defer());
      bool chunked = target == "/stream/chunked";
      std::lock_guard<std::mutex> lk(mu_);
      threads_.emplace_back([d, chunked] {
        auto out =
            d->stream(ResponseView{}, chunked ? std::nullopt : std::optional<uint64_t>(1 << 20));
        for (int i = 0; i < 16; ++i) {
          std::promise<bool> taken;
          out->write(std::string(64 * 1024, char('a' + i)), [&](bool ok) { taken.set_value(ok); });
          if (!taken.get_future().get()) return;
        }
        out->end();
      });
      return;
    }
    std::string body = target == "/big" ? std::string(5000, 'b') : std::string(ex.body());
    ResponseView r;
    r.status = target == "/created" ? 201 : 200;
    r.content_type = "text/plain";
    r.headers = h;
    r.body = body;
    ex.respond(r);
  }

  std::unique_ptr<HttpServer> server_;
  std::string base_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

TEST_F(NetClient, GetAndPostWithDefaultHeaders) {
  start();
  HttpClientPool pool;
  HttpCall get;
  get.url = base_ + "/path/a%20b?q=1&r=2";
  HttpReply r = pool.call(get);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(header_of(r, "x-method"), "GET");
  EXPECT_EQ(header_of(r, "x-target"), "/path/a%20b?q=1&r=2");
  EXPECT_EQ(header_of(r, "x-host"), cat("127.0.0.1:", std::to_string(server_->port())));
  EXPECT_EQ(header_of(r, "x-user-agent"), cat("cap/", CAP_VERSION));
  EXPECT_EQ(header_of(r, "x-content-length"), "");
  EXPECT_EQ(header_of(r, "content-type"), "text/plain");
  EXPECT_EQ(header_of(r, "x-secure"), "no");

  HttpCall post;
  post.method = "POST";
  post.url = base_ + "/created";
  post.body = "payload";
  post.headers = {{"User-Agent", "mine/1"}, {"X-Custom", "v"}, {"Content-Length", "999"}};
  r = pool.call(post);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "payload");
  EXPECT_EQ(header_of(r, "x-user-agent"), "mine/1");  // the caller's header wins
  EXPECT_EQ(header_of(r, "x-custom"), "v");
  EXPECT_EQ(header_of(r, "x-content-length"), "7");  // never the caller's wrong length

  HttpCall empty_post;
  empty_post.method = "POST";
  empty_post.url = base_ + "/";
  r = pool.call(empty_post);
  EXPECT_EQ(header_of(r, "x-content-length"), "0");

  HttpCall head;
  head.method = "HEAD";
  head.url = base_ + "/big";
  r = pool.call(head);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  // The connection is still in step after a HEAD.
  r = pool.call(get);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server_->accepted(), 1u);
}

/// A request body given piece by piece from another thread, as a proxied upload is.
class PiecesSource : public BodySource {
 public:
  PiecesSource(std::vector<std::string> pieces, std::string error = "")
      : pieces_(std::move(pieces)), error_(std::move(error)) {}
  std::chrono::milliseconds delay{0};  // before each piece
  void read(Got got) override {
    std::thread([this, got = std::move(got)] {
      std::this_thread::sleep_for(delay);
      if (next_ == pieces_.size()) return got("", true, error_);
      std::string p = pieces_[next_++];
      got(std::move(p), next_ == pieces_.size() && error_.empty(), "");
    }).detach();
  }

 private:
  std::vector<std::string> pieces_;
  std::string error_;
  size_t next_ = 0;
};

TEST_F(NetClient, BodySourceSendsWithContentLengthOrChunked) {
  start();
  HttpClientPool pool;
  std::vector<std::string> pieces;
  std::string whole;
  for (int i = 0; i < 5; ++i) {
    pieces.push_back(std::string(40000 + i, char('a' + i)));
    whole += pieces.back();
  }
  pieces.push_back("");  // an empty piece is fine too
  HttpCall known;
  known.method = "PUT";
  known.url = base_ + "/up";
  known.body = "ignored";
  known.body_source = std::make_shared<PiecesSource>(pieces);
  known.body_length = int64_t(whole.size());
  HttpReply r = pool.call(known);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(header_of(r, "x-content-length"), std::to_string(whole.size()));
  EXPECT_EQ(header_of(r, "x-transfer-encoding"), "");
  EXPECT_TRUE(r.body == whole);

  HttpCall chunked = known;
  chunked.body_source = std::make_shared<PiecesSource>(pieces);
  chunked.body_length = -1;
  r = pool.call(chunked);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(header_of(r, "x-content-length"), "");
  EXPECT_EQ(header_of(r, "x-transfer-encoding"), "chunked");
  EXPECT_TRUE(r.body == whole);

  // A source giving fewer bytes than declared, or failing, fails the call.
  HttpCall short_body = known;
  short_body.body_source = std::make_shared<PiecesSource>(std::vector<std::string>{"abc"});
  short_body.body_length = 10;
  r = pool.call(short_body);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("declared length"), std::string::npos) << r.error;
  HttpCall failing = chunked;
  failing.body_source =
      std::make_shared<PiecesSource>(std::vector<std::string>{"abc"}, "client went away");
  r = pool.call(failing);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("client went away"), std::string::npos) << r.error;
  // timeout_ms bounds each piece, not the whole upload.
  HttpCall slow = chunked;
  auto slow_source = std::make_shared<PiecesSource>(pieces);
  slow_source->delay = 150ms;
  slow.body_source = slow_source;
  slow.timeout_ms = 600;
  r = pool.call(slow);
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.body == whole);
  // The pool still works.
  HttpCall get;
  get.url = base_ + "/";
  EXPECT_EQ(pool.call(get).status, 200);
}

TEST_F(NetClient, PoolReusesConnections) {
  start();
  HttpClientPool pool;
  HttpCall c;
  c.url = base_ + "/";
  for (int i = 0; i < 20; ++i) ASSERT_EQ(pool.call(c).status, 200) << i;
  EXPECT_EQ(server_->accepted(), 1u);

  // Concurrent calls open more connections, which are pooled in turn.
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 25; ++i)
        if (pool.call(c).status == 200) ok++;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_LE(server_->accepted(), 9u);
}

// Waits (a while) until the server holds `n` connections.
bool server_holds(const HttpServer& server, size_t n) {
  for (int i = 0; i < 500 && server.connections() != n; ++i) std::this_thread::sleep_for(10ms);
  return server.connections() == n;
}

TEST_F(NetClient, PooledConnectionsIdleLongerThanIdleKeepAreClosed) {
  start();
  ClientOptions o;
  o.idle_keep = 300ms;
  HttpClientPool pool(o);
  HttpCall c;
  c.url = base_ + "/";
  // Twice: the loop is without connections in between, and closes the next one again.
  for (int round = 1; round <= 2; ++round) {
    ASSERT_EQ(pool.call(c).status, 200) << round;
    EXPECT_EQ(server_->accepted(), uint64_t(round));
    EXPECT_TRUE(server_holds(*server_, 0)) << round << ": " << server_->connections();
  }
}

TEST_F(NetClient, CredentialsInTheUrlBecomeBasicAuthAndNeverAppearInErrors) {
  start();
  HttpClientPool pool;
  HttpCall c;
  c.url = cat("http://alice:s3cret@127.0.0.1:", std::to_string(server_->port()), "/");
  HttpReply r = pool.call(c);
  EXPECT_EQ(header_of(r, "x-authorization"), "Basic YWxpY2U6czNjcmV0");

  c.url =
      cat("http://alice:s3cret@127.0.0.1:", std::to_string(closed_port()), "/private?token=hidden");
  r = pool.call(c);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.error.find("s3cret"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("alice"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("hidden"), std::string::npos) << r.error;
}

TEST_F(NetClient, TimeoutGivesTimedOut) {
  start();
  HttpClientPool pool;
  HttpCall c;
  c.url = base_ + "/slow";
  c.timeout_ms = 200;
  auto t0 = std::chrono::steady_clock::now();
  HttpReply r = pool.call(c);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.error, "timed out after 200 ms");
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 3s);  // generous: CI machines are busy
  // The pool still works afterwards.
  c.url = base_ + "/";
  c.timeout_ms = 5000;
  EXPECT_EQ(pool.call(c).status, 200);
}

TEST_F(NetClient, ConnectionRefusedIsAClearError) {
  HttpClientPool pool;
  HttpCall c;
  uint16_t port = closed_port();
  c.url = cat("http://127.0.0.1:", std::to_string(port), "/x");
  HttpReply r = pool.call(c);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.error.find(cat("http://127.0.0.1:", std::to_string(port), ": cannot connect")),
            std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("refused"), std::string::npos) << r.error;
}

TEST_F(NetClient, RetriesOnAFreshConnectionWhenThePooledOneDied) {
  ServerOptions o;
  o.idle_timeout = 200ms;
  start(o);
  ClientOptions co;
  co.check_idle_before_reuse = false;  // find the dead connection by failing on it
  HttpClientPool pool(co);
  HttpCall get;
  get.url = base_ + "/";
  ASSERT_EQ(pool.call(get).status, 200);
  EXPECT_EQ(server_->accepted(), 1u);
  std::this_thread::sleep_for(700ms);  // the server closes the idle connection
  HttpReply r = pool.call(get);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(server_->accepted(), 2u);

  // A POST is not idempotent: on a dead pooled connection it fails rather than repeat.
  std::this_thread::sleep_for(700ms);
  HttpCall post;
  post.method = "POST";
  post.url = base_ + "/";
  post.body = "once";
  r = pool.call(post);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("closed before a response"), std::string::npos) << r.error;
}

TEST_F(NetClient, DeadPooledConnectionsAreSkippedWhenChecked) {
  ServerOptions o;
  o.idle_timeout = 200ms;
  start(o);
  HttpClientPool pool;  // check_idle_before_reuse is on by default
  HttpCall post;
  post.method = "POST";
  post.url = base_ + "/";
  post.body = "x";
  ASSERT_EQ(pool.call(post).status, 200);
  std::this_thread::sleep_for(700ms);
  HttpReply r = pool.call(post);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(server_->accepted(), 2u);
}

TEST_F(NetClient, BadUrlsAndHeadersAreRefused) {
  HttpClientPool pool;
  struct Case {
    std::string url, reason;
  };
  std::vector<Case> cases = {
      {"", "bad URL"},
      {"not a url", "bad URL"},
      {"ftp://example.com/x", "the scheme must be http or https, not 'ftp'"},
      {"http:///path", "no host"},
      {"http://example.com:0/", "the port must be 1 to 65535"},
      {"http://example.com:99999/", "bad URL"},
      {"http://exa mple.com/", "bad URL"},
  };
  for (const auto& c : cases) {
    HttpCall call;
    call.url = c.url;
    HttpReply r = pool.call(call);
    EXPECT_EQ(r.status, 0) << c.url;
    EXPECT_NE(r.error.find(c.reason), std::string::npos) << c.url << " -> " << r.error;
  }
  HttpCall call;
  call.url = "http://127.0.0.1:1/";
  call.headers = {{"X-Evil", "a\r\nInjected: 1"}};
  EXPECT_NE(pool.call(call).error.find("X-Evil holds CR, LF or NUL"), std::string::npos);
  call.headers = {{"Bad Name", "v"}};
  EXPECT_NE(pool.call(call).error.find("bad header name"), std::string::npos);
  call.headers.clear();
  call.method = "GET /x HTTP/1.1\r\n";
  EXPECT_NE(pool.call(call).error.find("bad method"), std::string::npos);
}

TEST_F(NetClient, ResponseSizeLimit) {
  start();
  ClientOptions o;
  o.max_response_bytes = 1000;
  HttpClientPool pool(o);
  HttpCall c;
  c.url = base_ + "/big";
  HttpReply r = pool.call(c);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("larger than 1000 bytes"), std::string::npos) << r.error;
  c.url = base_ + "/";
  EXPECT_EQ(pool.call(c).status, 200);
}

// call_streaming, waited for: the head, and the body read whole through the reader.
struct Streamed {
  HttpReply head;
  bool had_reader = false;
  std::string body, error;
  int pieces = 0;
};
Streamed call_streaming(HttpClientPool& pool, HttpCall c, size_t buffer_up_to) {
  std::promise<std::pair<HttpReply, std::shared_ptr<BodyReader>>> p;
  pool.call_streaming(c, buffer_up_to, [&](HttpReply r, std::shared_ptr<BodyReader> b) {
    p.set_value({std::move(r), std::move(b)});
  });
  auto [head, reader] = p.get_future().get();
  Streamed s;
  s.head = std::move(head);
  s.had_reader = reader != nullptr;
  s.body = s.head.body;
  while (reader) {
    std::promise<std::tuple<std::string, bool, std::string>> got;
    reader->read([&](std::string piece, bool end, std::string error) {
      got.set_value({std::move(piece), end, std::move(error)});
    });
    auto [piece, end, error] = got.get_future().get();
    s.body += piece;
    s.pieces++;
    s.error = error;
    if (end) break;
  }
  return s;
}

TEST_F(NetClient, CallStreamingReadsLargeBodiesPieceByPiece) {
  start();
  ClientOptions o;
  o.max_response_bytes = 1000;  // streamed bodies are not limited by it
  HttpClientPool pool(o);
  HttpCall c;
  std::string expected;
  for (int i = 0; i < 16; ++i) expected += std::string(64 * 1024, char('a' + i));
  for (const char* path : {"/stream/length", "/stream/chunked"}) {
    c.url = base_ + path;
    Streamed s = call_streaming(pool, c, 4096);
    EXPECT_EQ(s.head.status, 200) << path << s.head.error;
    EXPECT_TRUE(s.had_reader) << path;
    EXPECT_EQ(s.error, "") << path;
    EXPECT_GE(s.pieces, 2) << path;
    EXPECT_TRUE(s.body == expected) << path << " got " << s.body.size() << " bytes";
  }
  // A small body comes whole, without a reader; the connection was given back and reused.
  c.url = base_ + "/big";
  Streamed s = call_streaming(pool, c, 4096 * 2);
  EXPECT_EQ(s.head.status, 200);
  EXPECT_FALSE(s.had_reader);
  EXPECT_EQ(s.body, std::string(5000, 'b'));
  EXPECT_LE(server_->accepted(), 2u);
  // Errors come as with call_async.
  c.url = "ftp://nowhere";
  s = call_streaming(pool, c, 10);
  EXPECT_EQ(s.head.status, 0);
  EXPECT_FALSE(s.head.error.empty());
}

// A server that answers each connection it accepts with the next scripted reply: pieces
// written with a pause between them, then the connection closed.
class ScriptedOrigin {
 public:
  explicit ScriptedOrigin(std::vector<std::vector<std::string>> replies) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 8);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, replies = std::move(replies)] {
      for (const auto& pieces : replies) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        accepted_++;
        char buf[4096];
        std::string request;
        while (request.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = ::recv(c, buf, sizeof buf, 0);
          if (n <= 0) break;
          request.append(buf, size_t(n));
        }
        for (const auto& piece : pieces) {
          ::send(c, piece.data(), piece.size(), MSG_NOSIGNAL);
          std::this_thread::sleep_for(30ms);
        }
        ::close(c);
      }
    });
  }
  ~ScriptedOrigin() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url(std::string_view path) const {
    return cat("http://127.0.0.1:", std::to_string(port_), path);
  }
  std::string origin() const { return cat("http://127.0.0.1:", std::to_string(port_)); }
  /// Connections accepted so far.
  int accepted() const { return accepted_.load(); }

 private:
  std::atomic<int> accepted_{0};
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(NetClient, AnswersArrivingInPiecesOrAfterAnInterimOneAreReadWhole) {
  ScriptedOrigin origin({
      {"HTTP/1.1 200 OK\r\nContent-", "Length: 5\r\nX-A: 1\r\n", "\r\nhe", "llo"},
      {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"},  // closed before the end
      {"HTTP/1.1 200 OK\r\nX-B: 2\r\n\r\nuntil ", "the close"},
  });
  HttpClientPool pool;
  HttpCall c;
  c.url = origin.url("/");
  Streamed s = call_streaming(pool, c, 4096);
  EXPECT_EQ(s.head.status, 200) << s.head.error;
  EXPECT_EQ(header_of(s.head, "x-a"), "1");
  EXPECT_FALSE(s.had_reader);
  EXPECT_EQ(s.body, "hello");

  s = call_streaming(pool, c, 4096);
  EXPECT_EQ(s.head.status, 201) << s.head.error;
  EXPECT_EQ(s.body, "ok");

  s = call_streaming(pool, c, 4096);
  EXPECT_EQ(s.head.status, 0);
  EXPECT_NE(s.head.error.find("reading the response failed"), std::string::npos) << s.head.error;

  s = call_streaming(pool, c, 4096);  // no length: handed out with a reader
  EXPECT_EQ(s.head.status, 200) << s.head.error;
  EXPECT_EQ(header_of(s.head, "x-b"), "2");
  EXPECT_TRUE(s.had_reader);
  EXPECT_EQ(s.body, "until the close");
  EXPECT_EQ(s.error, "");
}

TEST_F(NetClient, StreamedBodiesComeInPiecesAndEndWithAnErrorWhenCutShort) {
  ScriptedOrigin origin({
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "3\r\n", "abc\r\n", "2\r\nde\r\n",
       "0\r\n\r\n"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "5\r\nde"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", "xyz"},
  });
  HttpClientPool pool;
  HttpCall c;
  c.url = origin.url("/");
  c.timeout_ms = 5000;
  Streamed s = call_streaming(pool, c, 10);  // chunk headers arrive alone: read on
  EXPECT_EQ(s.head.status, 200) << s.head.error;
  EXPECT_TRUE(s.had_reader);
  EXPECT_EQ(s.body, "abcde");
  EXPECT_EQ(s.error, "");

  std::string cut = origin.origin() + ": reading the response body failed: partial message";
  s = call_streaming(pool, c, 10);
  EXPECT_EQ(s.head.status, 200) << s.head.error;
  EXPECT_TRUE(s.had_reader);
  EXPECT_EQ(s.body.substr(0, 3), "abc");
  EXPECT_EQ(s.error, cut);

  s = call_streaming(pool, c, 10);
  EXPECT_EQ(s.head.status, 200) << s.head.error;
  EXPECT_TRUE(s.had_reader);
  EXPECT_EQ(s.body, "xyz");
  EXPECT_EQ(s.error, cut);
}

// Replies read whole (call) arrive however the origin frames and splits them.
TEST_F(NetClient, WholeRepliesAreReadHoweverTheyAreFramedAndSplit) {
  ScriptedOrigin origin({
      {"HTTP/1.1 200 OK\r\nContent-", "Length: 5\r\nX-A: 1\r\n", "\r\nhe", "llo"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "lo\r\n6\r\n worl",
       "d\r\n0\r\nX-Trailer: t\r\n\r\n"},
      {"HTTP/1.1 200 OK\r\nX-B: 2\r\n\r\nuntil ", "the close"},
      {"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-C: 3\r\n\r\n"},  // to a HEAD
      {"HTTP/1.1 204 No Content\r\nX-D: 4\r\n\r\n"},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\n\r\n"},
  });
  ClientOptions o;
  o.check_idle_after = 0ms;  // the origin closes each connection: always check before reuse
  HttpClientPool pool(o);
  HttpCall c;
  c.url = origin.url("/");
  c.timeout_ms = 5000;
  HttpReply r = pool.call(c);  // in pieces, the head split mid-line
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(header_of(r, "x-a"), "1");
  EXPECT_EQ(r.body, "hello");

  r = pool.call(c);  // chunked, with a trailer, chunks split across reads
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "hello world");
  EXPECT_EQ(header_of(r, "x-trailer"), "t");

  r = pool.call(c);  // delimited by the close
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(header_of(r, "x-b"), "2");
  EXPECT_EQ(r.body, "until the close");

  r = pool.call(c);  // the interim answer is skipped
  EXPECT_EQ(r.status, 201) << r.error;
  EXPECT_EQ(r.body, "ok");

  HttpCall head = c;
  head.method = "HEAD";
  r = pool.call(head);  // a Content-Length but no body
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(header_of(r, "x-c"), "3");
  EXPECT_EQ(header_of(r, "content-length"), "5");
  EXPECT_EQ(r.body, "");

  r = pool.call(c);
  EXPECT_EQ(r.status, 204) << r.error;
  EXPECT_EQ(header_of(r, "x-d"), "4");
  EXPECT_EQ(r.body, "");

  r = pool.call(c);
  EXPECT_EQ(r.status, 304) << r.error;
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(origin.accepted(), 7);
}

TEST_F(NetClient, WholeRepliesOverTheLimitOrCutShortAreClearErrors) {
  ScriptedOrigin origin({
      {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n",
       "4\r\n6789\r\n0\r\n\r\n"},
      {"HTTP/1.1 200 OK\r\n\r\n12345", "6789"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n12345678"},  // just within
      {"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n123"},       // closed before the end
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12"},
  });
  ClientOptions o;
  o.max_response_bytes = 8;
  HttpClientPool pool(o);
  HttpCall c;
  c.url = origin.url("/");
  c.timeout_ms = 5000;
  std::string too_large = origin.origin() + ": the response is larger than 8 bytes";
  for (const char* framing : {"content-length", "chunked", "close"}) {
    HttpReply r = pool.call(c);
    EXPECT_EQ(r.status, 0) << framing;
    EXPECT_FALSE(r.timed_out) << framing;
    EXPECT_EQ(r.error, too_large) << framing;
    EXPECT_EQ(r.body, "") << framing;
  }
  HttpReply r = pool.call(c);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "12345678");

  std::string cut = origin.origin() + ": reading the response failed: partial message";
  r = pool.call(c);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, cut);
  r = pool.call(c);
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, cut);
  EXPECT_EQ(origin.accepted(), 6);
}

TEST_F(NetClient, WholeRepliesKeepTheirConnectionOnlyWhenItStaysOpen) {
  // Each connection is closed by the origin after its reply. One with a length looks
  // reusable: an idempotent call finds it dead and is retried on a fresh connection, a POST
  // is not. One delimited by the close is never pooled: the POST after it goes on a fresh
  // connection.
  ScriptedOrigin origin({
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"},
      {"HTTP/1.1 200 OK\r\n\r\nthree"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour"},
  });
  ClientOptions o;
  o.check_idle_before_reuse = false;  // find the dead connection by failing on it
  HttpClientPool pool(o);
  HttpCall get;
  get.url = origin.url("/");
  get.timeout_ms = 5000;
  HttpCall post = get;
  post.method = "POST";
  HttpReply r = pool.call(get);
  EXPECT_EQ(r.body, "one") << r.error;
  std::this_thread::sleep_for(200ms);  // the origin closes that connection
  r = pool.call(get);                  // on the pooled one, which is dead: retried
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "two");
  EXPECT_EQ(origin.accepted(), 2);

  std::this_thread::sleep_for(200ms);
  r = pool.call(post);  // on the pooled dead one: not retried
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error.rfind(origin.origin() + ": the connection closed before a response: ", 0), 0u)
      << r.error;

  r = pool.call(get);
  EXPECT_EQ(r.body, "three") << r.error;
  r = pool.call(post);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "four");
  EXPECT_EQ(origin.accepted(), 4);
}

TEST_F(NetClient, ShortTimeoutsAreNotHeldBackByLongerOnesOnTheSameLoop) {
  start();
  HttpClientPool pool;  // one loop: both calls share its deadline timer
  HttpCall slow;
  slow.url = base_ + "/slow";
  slow.timeout_ms = 60000;
  std::promise<HttpReply> first;
  pool.call_async(slow, [&](HttpReply r) { first.set_value(std::move(r)); });
  slow.timeout_ms = 200;
  HttpReply r = pool.call(slow);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.error, "timed out after 200 ms");
  HttpReply longer = first.get_future().get();  // the 60 s one is answered (after 800 ms)
  EXPECT_EQ(longer.status, 200) << longer.error;
  EXPECT_EQ(longer.body, "slow");
}

TEST_F(NetClient, TargetsAfterAKnownOriginAreCheckedAsAFullParseWould) {
  start();
  HttpClientPool pool;
  HttpCall c;
  // A port whose digits begin the server's: its URLs share a prefix with the server's.
  c.url = cat("http://127.0.0.1:", std::to_string(server_->port() / 10), "/");
  c.timeout_ms = 2000;
  pool.call(c);  // whatever answers there (likely nothing)
  struct Case {
    std::string path, target, error;
  };
  std::vector<Case> cases = {
      {"/a?q=1", "/a?q=1", ""},
      {"/x?q=1#part", "/x?q=1", ""},  // the fragment stays with the client
      {"/%41b/c;d=e@f:g", "/%41b/c;d=e@f:g", ""},
      {"/%zz", "", "bad URL"},
      {"/a b", "", "bad URL"},
      {"/a\"b", "", "bad URL"},
  };
  for (const auto& k : cases) {
    c.url = base_ + k.path;
    HttpReply r = pool.call(c);
    if (k.error.empty()) {
      EXPECT_EQ(r.status, 200) << k.path << ": " << r.error;
      EXPECT_EQ(header_of(r, "x-target"), k.target) << k.path;
    } else {
      EXPECT_EQ(r.status, 0) << k.path;
      EXPECT_NE(r.error.find(k.error), std::string::npos) << k.path << " -> " << r.error;
    }
  }
}

TEST_F(NetClient, DroppingABodyReaderClosesItsConnection) {
  start();
  HttpClientPool pool;
  HttpCall c;
  c.url = base_ + "/stream/length";
  std::promise<std::shared_ptr<BodyReader>> p;
  pool.call_streaming(c, 10, [&](HttpReply, std::shared_ptr<BodyReader> b) { p.set_value(b); });
  auto reader = p.get_future().get();
  ASSERT_TRUE(reader);
  reader.reset();
  // The server sees its client go: its stream stops and its request ends.
  EXPECT_TRUE(server_->drain(5s));
}

TEST_F(NetClient, CallAsyncCompletesOnTheClientLoop) {
  start();
  HttpClientPool pool;
  std::promise<std::pair<int, std::thread::id>> p;
  HttpCall c;
  c.url = base_ + "/";
  pool.call_async(c, [&](HttpReply r) { p.set_value({r.status, std::this_thread::get_id()}); });
  auto [status, id] = p.get_future().get();
  EXPECT_EQ(status, 200);
  EXPECT_NE(id, std::this_thread::get_id());

  // call() from the loop thread would wait forever: it is refused instead.
  std::promise<std::string> nested;
  pool.call_async(c, [&](HttpReply) { nested.set_value(pool.call(c).error); });
  EXPECT_NE(nested.get_future().get().find("call_async"), std::string::npos);
}

// A proxy: a second server whose handler calls the first one through the pool, from its
// own loop thread.
struct LoopProxy {
  HttpClientPool pool;
  std::unique_ptr<HttpServer> server;
  std::mutex mu;
  std::vector<std::pair<std::thread::id, std::thread::id>> threads;  // handler, completion
  std::string error;

  explicit LoopProxy(const std::string& origin) {
    ServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    server = std::make_unique<HttpServer>(o, [this, origin](Exchange& ex) {
      auto d = std::make_shared<Deferred>(ex.defer());
      HttpCall c;
      c.url = origin + std::string(ex.target());
      c.method = std::string(ex.method());
      c.body = std::string(ex.body());
      c.timeout_ms = 0;
      auto on = std::this_thread::get_id();
      pool.call_async(c, [this, d, on](HttpReply r) {
        {
          std::lock_guard<std::mutex> lk(mu);
          threads.emplace_back(on, std::this_thread::get_id());
          error = r.error;
        }
        ResponseView v;
        v.status = r.status ? r.status : 502;
        v.body = r.status ? std::string_view(r.body) : std::string_view(r.error);
        d->respond(v);
      });
    });
    std::string e;
    if (!server->start(&e)) throw std::runtime_error(e);
  }
};

TEST_F(NetClient, CallsFromAServerLoopRunOnThatLoop) {
  start();
  LoopProxy proxy(base_);
  HttpClientPool client;
  HttpCall c;
  for (int i = 0; i < 5; ++i) {
    c.url = cat("http://127.0.0.1:", std::to_string(proxy.server->port()), "/n", std::to_string(i));
    c.method = "POST";
    c.body = "piece " + std::to_string(i);
    HttpReply r = client.call(c);
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body, "piece " + std::to_string(i));
  }
  std::lock_guard<std::mutex> lk(proxy.mu);
  ASSERT_EQ(proxy.threads.size(), 5u);
  for (auto& [handler, completion] : proxy.threads) EXPECT_EQ(handler, completion);
}

TEST_F(NetClient, DrainingAServerFailsTheCallsOnItsLoopAndDoesNotWaitForThem) {
  start();
  LoopProxy proxy(base_);
  HttpClientPool client;
  HttpCall c;
  c.url = cat("http://127.0.0.1:", std::to_string(proxy.server->port()), "/slow");
  c.timeout_ms = 0;
  std::promise<HttpReply> reply;
  client.call_async(c, [&](HttpReply r) { reply.set_value(std::move(r)); });
  for (int i = 0; i < 100 && proxy.server->in_flight() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(proxy.server->in_flight(), 1u);
  proxy.server->drain(0ms);  // closes now: the origin call on its loop is given up, not
                             // waited for (the origin would answer "slow" after 800 ms)
  std::lock_guard<std::mutex> lk(proxy.mu);
  EXPECT_EQ(proxy.error, "the HTTP client was shut down");
  EXPECT_EQ(reply.get_future().get().status, 0);  // the proxy's client saw the connection go
}

TEST_F(NetClient, DestroyingThePoolAnswersPendingCalls) {
  start();
  std::promise<HttpReply> p;
  {
    HttpClientPool pool;
    HttpCall c;
    c.url = base_ + "/slow";
    pool.call_async(c, [&](HttpReply r) { p.set_value(std::move(r)); });
    std::this_thread::sleep_for(100ms);
  }
  HttpReply r = p.get_future().get();
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.error, "the HTTP client was shut down");
}

TEST_F(NetClient, HttpsWithVerification) {
  test::TestCert cert = test::make_test_cert();
  ServerOptions o;
  o.tls_cert_file = cert.cert_file;
  o.tls_key_file = cert.key_file;
  start(o);
  uint16_t port = server_->port();

  ClientOptions trusting;
  trusting.ca_file = cert.cert_file;
  HttpClientPool pool(trusting);
  HttpCall c;
  c.method = "POST";
  c.body = "over tls";
  for (std::string host : {"127.0.0.1", "localhost"}) {
    c.url = cat("https://", host, ":", std::to_string(port), "/tls");
    HttpReply r = pool.call(c);
    ASSERT_EQ(r.error, "") << host;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "over tls");
    EXPECT_EQ(header_of(r, "x-secure"), "yes");
  }

  // Without the trust anchor the certificate is refused.
  HttpClientPool strict;
  c.url = cat("https://127.0.0.1:", std::to_string(port), "/tls");
  HttpReply r = strict.call(c);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("TLS handshake failed"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("certificate verify failed"), std::string::npos) << r.error;

  // A certificate for another name is refused even when trusted.
  {
    test::TestCert other = test::make_test_cert("DNS:other.test");
    ServerOptions oo;
    oo.address = "127.0.0.1";
    oo.port = 0;
    oo.tls_cert_file = other.cert_file;
    oo.tls_key_file = other.key_file;
    HttpServer s2(oo, [](Exchange& ex) { ex.respond(ResponseView{}); });
    std::string error;
    ASSERT_TRUE(s2.start(&error)) << error;
    ClientOptions trust_other;
    trust_other.ca_file = other.cert_file;
    HttpClientPool p2(trust_other);
    for (std::string host : {"127.0.0.1", "localhost"}) {
      HttpCall c2;
      c2.url = cat("https://", host, ":", std::to_string(s2.port()), "/");
      HttpReply r2 = p2.call(c2);
      EXPECT_EQ(r2.status, 0) << host;
      EXPECT_NE(r2.error.find("TLS handshake failed"), std::string::npos) << r2.error;
    }
    s2.drain(1s);
    std::filesystem::remove_all(other.dir);
  }

  // verify_tls = false accepts anything (never for production use).
  ClientOptions lax;
  lax.verify_tls = false;
  HttpClientPool insecure(lax);
  c.url = cat("https://127.0.0.1:", std::to_string(port), "/tls");
  EXPECT_EQ(insecure.call(c).status, 200);

  // The server saw TLS; plain HTTP to the TLS port gets no answer.
  HttpCall plain;
  plain.url = cat("http://127.0.0.1:", std::to_string(port), "/");
  plain.timeout_ms = 2000;
  EXPECT_EQ(pool.call(plain).status, 0);

  server_->drain(1s);
  server_.reset();
  std::filesystem::remove_all(cert.dir);
}

TEST_F(NetClient, MissingCaFileIsReportedOnHttpsCalls) {
  ClientOptions o;
  o.ca_file = "/nonexistent/ca.pem";
  HttpClientPool pool(o);
  HttpCall c;
  c.url = "https://127.0.0.1:1/";
  HttpReply r = pool.call(c);
  EXPECT_NE(r.error.find("cannot load the CA file /nonexistent/ca.pem"), std::string::npos)
      << r.error;
}

}  // namespace
}  // namespace cap::net

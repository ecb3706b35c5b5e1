// The HTTP server (src/net/http_server.cpp) over real loopback sockets: keep-alive,
// pipelining, HTTP/1.0, limits (400/408/413/431), idle timeout, deferred answers, refused
// response headers, graceful drain, TLS, and many connections at once.
#include "net/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "net/net_support.h"

namespace cap::net {
namespace {

using namespace std::chrono_literals;
using test::cat;
using test::RawClient;
using test::RawResponse;

// A server with an echo handler: answers "METHOD TARGET BODY" plus a few request facts in
// headers. Tests may replace the handler.
class NetServer : public ::testing::Test {
 protected:
  void start(ServerOptions o = {}, Handler h = nullptr) {
    o.address = "127.0.0.1";
    o.port = 0;
    if (!h) h = [this](Exchange& ex) { echo(ex); };
    server_ = std::make_unique<HttpServer>(o, std::move(h));
    std::string error;
    ASSERT_TRUE(server_->start(&error)) << error;
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->drain(1s);
  }

  void echo(Exchange& ex) {
    requests_++;
    std::string text = cat(ex.method(), " ", ex.target(), " ", ex.body());
    std::vector<std::pair<std::string, std::string>> h = {
        {"X-Version", std::to_string(ex.version())},
        {"X-Remote", std::string(ex.remote_addr())},
        {"X-Host", std::string(ex.header("host"))},
        {"X-Headers", std::to_string(ex.headers().size())},
    };
    ResponseView r;
    r.content_type = "text/plain";
    r.headers = h;
    r.body = text;
    ex.respond(r);
  }

  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::atomic<int> requests_{0};
};

TEST_F(NetServer, AnswersAPlainRequest) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET /hello?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.head.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(r.body, "GET /hello?x=1 ");
  EXPECT_EQ(r.header("content-type"), "text/plain");
  EXPECT_EQ(r.header("content-length"), "15");
  EXPECT_EQ(r.header("server"), "cap");
  EXPECT_EQ(r.header("date").size(), 29u);
  EXPECT_EQ(r.header("x-version"), "11");
  EXPECT_EQ(r.header("x-remote"), "127.0.0.1");
  EXPECT_EQ(r.header("x-host"), "example.test");
  EXPECT_EQ(r.header("connection"), "");
}

TEST_F(NetServer, KeepsAConnectionAliveForManyRequests) {
  start();
  RawClient c(port_);
  for (int i = 0; i < 200; ++i) {
    std::string n = std::to_string(i);
    std::string body = cat("b", n);
    ASSERT_TRUE(c.send(cat("POST /n/", n, " HTTP/1.1\r\nHost: h\r\nContent-Length: ",
                           std::to_string(body.size()), "\r\n\r\n", body)));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r)) << "request " << i;
    EXPECT_EQ(r.body, cat("POST /n/", n, " ", body));
  }
  EXPECT_EQ(requests_.load(), 200);
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(NetServer, AnswersPipelinedRequestsInOrder) {
  // The handler answers the first request late, from another thread: the second and third
  // must still come after it.
  std::vector<std::thread> threads;
  std::mutex mu;
  start({}, [&](Exchange& ex) {
    std::string t(ex.target());
    if (t == "/1") {
      auto d = std::make_shared<Deferred>(ex.defer());
      std::lock_guard<std::mutex> lk(mu);
      threads.emplace_back([d] {
        std::this_thread::sleep_for(100ms);
        ResponseView r;
        r.body = "one";
        d->respond(r);
      });
      return;
    }
    ResponseView r;
    r.body = t == "/2" ? "two" : "three";
    ex.respond(r);
  });
  RawClient c(port_);
  ASSERT_TRUE(
      c.send("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
             "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
             "POST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"));
  RawResponse r1, r2, r3;
  ASSERT_TRUE(c.read_response(&r1));
  ASSERT_TRUE(c.read_response(&r2));
  ASSERT_TRUE(c.read_response(&r3));
  EXPECT_EQ(r1.body, "one");
  EXPECT_EQ(r2.body, "two");
  EXPECT_EQ(r3.body, "three");
  std::lock_guard<std::mutex> lk(mu);
  for (auto& t : threads) t.join();
}

TEST_F(NetServer, Http10ClosesUnlessKeepAliveIsAsked) {
  start();
  {
    RawClient c(port_);
    ASSERT_TRUE(c.send("GET /old HTTP/1.0\r\n\r\n"));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("x-version"), "10");
    EXPECT_EQ(r.header("connection"), "close");
    EXPECT_TRUE(c.wait_closed(2s));
  }
  {
    RawClient c(port_);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(c.send("GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
      RawResponse r;
      ASSERT_TRUE(c.read_response(&r)) << i;
      EXPECT_EQ(r.header("connection"), "keep-alive");
      EXPECT_EQ(r.body, "GET /ka ");
    }
  }
}

TEST_F(NetServer, Http11ConnectionCloseIsHonoured) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(c.wait_closed(2s));
}

TEST_F(NetServer, OversizedHeaderGets431) {
  ServerOptions o;
  o.max_header_bytes = 2048;
  start(o);
  RawClient c(port_);
  ASSERT_TRUE(
      c.send(cat("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ", std::string(4000, 'a'), "\r\n\r\n")));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_EQ(requests_.load(), 0);

  // A header just under the limit passes.
  RawResponse ok = test::raw_request(
      port_, cat("GET / HTTP/1.1\r\nHost: h\r\nX-Big: ", std::string(1500, 'a'), "\r\n\r\n"));
  EXPECT_EQ(ok.status, 200);
}

TEST_F(NetServer, OversizedBodyGets413) {
  ServerOptions o;
  o.max_body_bytes = 1000;
  start(o);
  {  // Declared length too large: refused before the body is read.
    RawClient c(port_);
    ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n"));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r));
    EXPECT_EQ(r.status, 413);
    EXPECT_TRUE(c.wait_closed(3s));
  }
  {  // Chunked body growing past the limit.
    RawClient c(port_);
    std::string req = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) req += cat("1f4\r\n", std::string(500, 'x'), "\r\n");
    req += "0\r\n\r\n";
    ASSERT_TRUE(c.send(req));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r));
    EXPECT_EQ(r.status, 413);
  }
  EXPECT_EQ(requests_.load(), 0);
  RawResponse ok = test::raw_request(
      port_,
      cat("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n", std::string(1000, 'y')));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body.size(), std::string("POST / ").size() + 1000);
}

TEST_F(NetServer, MalformedRequestGets400) {
  start();
  for (std::string bad :
       {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"}) {
    RawClient c(port_);
    ASSERT_TRUE(c.send(bad));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r)) << bad;
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(r.header("connection"), "close");
    EXPECT_TRUE(c.wait_closed(3s)) << bad;
  }
  EXPECT_EQ(requests_.load(), 0);
}

TEST_F(NetServer, SlowClientGets408AfterTheReadTimeout) {
  ServerOptions o;
  o.read_timeout = 300ms;
  start(o);
  RawClient c(port_);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.send("GET /slow HTTP/1.1\r\nHost: h\r\n"));  // no blank line: never complete
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r, 5s));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.status, 408);
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 3s);
  EXPECT_TRUE(c.wait_closed(3s));
  EXPECT_EQ(requests_.load(), 0);
}

TEST_F(NetServer, SlowBodyGets408Too) {
  ServerOptions o;
  o.read_timeout = 300ms;
  start(o);
  RawClient c(port_);
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r, 5s));
  EXPECT_EQ(r.status, 408);
}

TEST_F(NetServer, IdleKeepAliveConnectionIsClosedSilently) {
  ServerOptions o;
  o.idle_timeout = 300ms;
  start(o);
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(server_->connections(), 1u);
  auto t0 = std::chrono::steady_clock::now();
  std::string extra;
  EXPECT_TRUE(c.wait_closed(5s, &extra));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_EQ(extra, "");  // no 408 for an idle connection
  for (int i = 0; i < 100 && server_->connections() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->connections(), 0u);
}

// A loop with no connection arms no sweep timer; the first connection after a quiet spell
// must arm it again, or its idle timeout would never fire. Twice: from a fresh server, and
// after the last connection of a busy spell went away.
TEST_F(NetServer, IdleKeepAliveConnectionAfterAQuietSpellIsStillClosed) {
  ServerOptions o;
  o.idle_timeout = 300ms;
  start(o);
  for (int round = 0; round < 2; ++round) {
    std::this_thread::sleep_for(1s);  // several sweep periods without a connection
    EXPECT_EQ(server_->connections(), 0u);
    RawClient c(port_);
    ASSERT_TRUE(c.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r));
    ASSERT_TRUE(c.send("GET /b HTTP/1.1\r\nHost: h\r\n\r\n"));  // kept alive
    ASSERT_TRUE(c.read_response(&r)) << round;
    EXPECT_EQ(r.status, 200);
    std::string extra;
    EXPECT_TRUE(c.wait_closed(5s, &extra)) << round;
    EXPECT_EQ(extra, "");
    for (int i = 0; i < 100 && server_->connections() != 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(server_->connections(), 0u);
  }
}

TEST_F(NetServer, ClientThatDoesNotReadIsClosedAfterTheWriteTimeout) {
  ServerOptions o;
  o.write_timeout = 300ms;
  const std::string big(64 << 20, 'w');  // more than the socket buffers hold
  start(o, [&](Exchange& ex) {
    ResponseView r;
    r.body = big;
    ex.respond(r);
  });
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\nHost: h\r\n\r\n"));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(server_->connections(), 1u);
  EXPECT_EQ(server_->in_flight(), 1u);  // still writing
  for (int i = 0; i < 300 && server_->connections() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->connections(), 0u);
  EXPECT_EQ(server_->in_flight(), 0u);
}

TEST_F(NetServer, MalformedRequestAfterAGoodOneOnTheSameConnection) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET /ok HTTP/1.1\r\nHost: h\r\n\r\nBROKEN\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /ok ");
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.wait_closed(3s));
}

TEST_F(NetServer, DeferredAnswersFromAnotherThread) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<Deferred, std::string>> queue;
  bool stop = false;
  std::thread worker([&] {
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stop || !queue.empty(); });
      if (queue.empty() && stop) return;
      auto item = std::move(queue.front());
      queue.erase(queue.begin());
      lk.unlock();
      std::vector<std::pair<std::string, std::string>> h = {{"X-Worker", "yes"}};
      ResponseView r;
      r.status = 201;
      r.content_type = "text/plain";
      r.headers = h;
      std::string body = cat("later:", item.second);
      r.body = body;
      item.first.respond(r);
      lk.lock();
    }
  });
  start({}, [&](Exchange& ex) {
    std::lock_guard<std::mutex> lk(mu);
    queue.emplace_back(ex.defer(), cat(ex.target(), ":", ex.body()));
    cv.notify_one();
  });
  RawClient c(port_);
  for (int i = 0; i < 50; ++i) {
    std::string n = std::to_string(i);
    ASSERT_TRUE(c.send(cat("POST /d", n, " HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok")));
    RawResponse r;
    ASSERT_TRUE(c.read_response(&r)) << i;
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.header("x-worker"), "yes");
    EXPECT_EQ(r.body, cat("later:/d", n, ":ok"));
  }
  {
    std::lock_guard<std::mutex> lk(mu);
    stop = true;
    cv.notify_one();
  }
  worker.join();
}

// Streams `pieces` from another thread through Deferred::stream, one write after the last
// was taken, with a Content-Length when `length` is set.
void stream_later(Exchange& ex, std::vector<std::string> pieces, bool length,
                  std::vector<std::thread>& threads) {
  auto d = std::make_shared<Deferred>(ex.defer());
  threads.emplace_back([d, pieces = std::move(pieces), length] {
    uint64_t total = 0;
    for (const auto& p : pieces) total += p.size();
    std::vector<std::pair<std::string, std::string>> h = {{"X-Streamed", "yes"}};
    ResponseView head;
    head.content_type = "text/plain";
    head.headers = h;
    auto out = d->stream(head, length ? std::optional<uint64_t>(total) : std::nullopt);
    ASSERT_TRUE(out);
    for (const auto& p : pieces) {
      std::promise<bool> taken;
      out->write(p, [&taken](bool ok) { taken.set_value(ok); });
      if (!taken.get_future().get()) return;
    }
    out->end();
  });
}

TEST_F(NetServer, StreamedResponsesWithLengthOrChunkedKeepTheConnection) {
  std::vector<std::thread> threads;
  start({}, [&](Exchange& ex) {
    bool chunked = ex.target() == "/chunked";
    stream_later(ex, {"one,", std::string(300000, 'x'), "three"}, !chunked, threads);
  });
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET /length HTTP/1.1\r\nHost: h\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("x-streamed"), "yes");
  EXPECT_EQ(r.header("content-length"), "300009");
  EXPECT_EQ(r.body, cat("one,", std::string(300000, 'x'), "three"));

  // Chunked: the raw framing, then the same connection answers the next request.
  ASSERT_TRUE(c.send("GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n"));
  std::string raw;
  for (int i = 0; i < 100 && raw.find("\r\n0\r\n\r\n") == std::string::npos; ++i)
    raw += c.read_some(100ms);
  EXPECT_NE(raw.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(raw.find("Content-Length"), std::string::npos);
  EXPECT_NE(raw.find("\r\n4\r\none,\r\n"), std::string::npos);
  EXPECT_NE(raw.find("\r\n5\r\nthree\r\n0\r\n\r\n"), std::string::npos);
  ASSERT_TRUE(c.send("HEAD /length HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_TRUE(c.read_response(&r, 5s, true));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  server_->drain(2s);
  for (auto& t : threads) t.join();
}

TEST_F(NetServer, StreamEndedEarlyClosesTheConnection) {
  std::vector<std::thread> threads;
  start({}, [&](Exchange& ex) {
    auto d = std::make_shared<Deferred>(ex.defer());
    threads.emplace_back([d] {
      auto out = d->stream(ResponseView{}, 100);
      std::promise<bool> taken;
      out->write("only ten b", [&taken](bool ok) { taken.set_value(ok); });
      taken.get_future().get();
      out->end(false);
    });
  });
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  std::string got;
  EXPECT_TRUE(c.wait_closed(5s, &got));
  EXPECT_NE(got.find("Content-Length: 100\r\n"), std::string::npos);
  EXPECT_TRUE(got.ends_with("\r\n\r\nonly ten b")) << got;
  EXPECT_TRUE(server_->drain(2s));  // the streamed request is no longer in flight
  for (auto& t : threads) t.join();
}

TEST_F(NetServer, StreamWritesReportAClientThatLeft) {
  std::vector<std::thread> threads;
  std::promise<bool> last;
  start({}, [&](Exchange& ex) {
    auto d = std::make_shared<Deferred>(ex.defer());
    threads.emplace_back([d, &last] {
      auto out = d->stream(ResponseView{}, std::nullopt);
      std::string piece(1 << 20, 'p');
      for (;;) {  // the client never reads: writes stop being taken, then fail
        std::promise<bool> taken;
        out->write(piece, [&taken](bool ok) { taken.set_value(ok); });
        if (!taken.get_future().get()) break;
      }
      last.set_value(false);
    });
  });
  {
    RawClient c(port_);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    std::this_thread::sleep_for(200ms);
  }  // closed without reading
  auto f = last.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(server_->drain(2s));
  for (auto& t : threads) t.join();
}

TEST_F(NetServer, JsonErrorBodiesWhenAsked) {
  ServerOptions o;
  o.json_errors = true;
  o.max_body_bytes = 10;
  start(o);
  RawResponse r = test::raw_request(port_, "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, "{\"error\": \"the request is malformed\", \"details\": []}\n");
  r = test::raw_request(port_,
                        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "{\"error\": \"the request body is too large\", \"details\": []}\n");
}

TEST_F(NetServer, DroppedDeferredSends500) {
  start({}, [](Exchange& ex) {
    Deferred d = ex.defer();
    std::thread([d = std::move(d)]() mutable {
      std::this_thread::sleep_for(20ms);
      Deferred gone = std::move(d);  // dropped unanswered
    }).detach();
  });
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 500);
  // The connection stays usable.
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 500);
}

TEST_F(NetServer, HandlerThatNeitherAnswersNorDefersGets500) {
  start({}, [](Exchange&) {});
  EXPECT_EQ(test::raw_request(port_, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status, 500);
}

TEST_F(NetServer, HandlerExceptionGets500) {
  start({}, [](Exchange&) { throw std::runtime_error("boom"); });
  RawResponse r = test::raw_request(port_, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body.find("boom"), std::string::npos);
}

TEST_F(NetServer, ResponseHeaderWithCrLfIsRefused) {
  start({}, [](Exchange& ex) {
    std::string t(ex.target());
    std::vector<std::pair<std::string, std::string>> h;
    ResponseView r;
    if (t == "/value") h = {{"X-Evil", "a\r\nSet-Cookie: stolen=1"}};
    if (t == "/name") h = {{"X-Evil\r\nSet-Cookie", "1"}};
    if (t == "/type") r.content_type = "text/html\r\nSet-Cookie: stolen=1";
    r.headers = h;
    r.body = "should not be sent";
    ex.respond(r);
  });
  for (std::string path : {"/value", "/name", "/type"}) {
    RawResponse r = test::raw_request(port_, cat("GET ", path, " HTTP/1.1\r\nHost: h\r\n\r\n"));
    EXPECT_EQ(r.status, 500) << path;
    EXPECT_EQ(r.header("set-cookie"), "") << path;
    EXPECT_EQ(r.head.find("stolen"), std::string::npos) << path;
    EXPECT_EQ(r.body.find("should not"), std::string::npos) << path;
  }
}

TEST_F(NetServer, HeadResponsesHaveNoBody) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("HEAD /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r, 5s, /*head_request=*/true));
  EXPECT_EQ(r.header("content-length"), "8");  // the length the GET would have
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.body, "GET /y ");
}

TEST_F(NetServer, ChunkedRequestBody) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(
      c.send("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n"));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(c.send("7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.body, "POST /c hello, world");
  EXPECT_EQ(r.header("x-headers"), "2");  // trailers are not headers
}

TEST_F(NetServer, BodyArrivingInPiecesAndLargeBodies) {
  start();
  RawClient c(port_);
  std::string big(300000, 'z');
  std::string req =
      cat("PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: ", std::to_string(big.size()),
          "\r\n\r\n", big);
  for (size_t i = 0; i < req.size(); i += 70000) {
    ASSERT_TRUE(c.send(std::string_view(req).substr(i, 70000)));
    std::this_thread::sleep_for(5ms);
  }
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.body, cat("PUT /big ", big));
  // And a small request after it on the same connection.
  ASSERT_TRUE(c.send("GET /small HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.body, "GET /small ");
}

TEST_F(NetServer, Expect100Continue) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(
      c.send("PUT /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  std::string interim = c.read_some(500ms);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.send("data"));
  RawResponse r;
  ASSERT_TRUE(c.read_response(&r));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "PUT /e data");
}

TEST_F(NetServer, DrainFinishesARequestInFlightThenStops) {
  std::atomic<bool> entered{false};
  start({}, [&](Exchange& ex) {
    entered = true;
    auto d = std::make_shared<Deferred>(ex.defer());
    std::thread([d] {
      std::this_thread::sleep_for(300ms);
      ResponseView r;
      r.body = "finished";
      d->respond(r);
    }).detach();
  });
  RawClient busy(port_);
  RawClient idle(port_);
  ASSERT_TRUE(busy.send("GET /work HTTP/1.1\r\nHost: h\r\n\r\n"));
  while (!entered) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(server_->in_flight(), 1u);

  server_->stop_accepting();
  EXPECT_TRUE(idle.wait_closed(2s));  // idle keep-alive connections close at once
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(server_->drain(5s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  RawResponse r;
  ASSERT_TRUE(busy.read_response(&r));
  EXPECT_EQ(r.body, "finished");
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_FALSE(RawClient(port_).connected());
  server_.reset();
}

TEST_F(NetServer, DrainGivesUpAfterItsTimeout) {
  std::vector<Deferred> parked;
  std::mutex mu;
  start({}, [&](Exchange& ex) {
    std::lock_guard<std::mutex> lk(mu);
    parked.push_back(ex.defer());
  });
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  while (server_->in_flight() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(server_->drain(100ms));
  EXPECT_TRUE(c.wait_closed(2s));
  server_.reset();
  std::lock_guard<std::mutex> lk(mu);
  parked.clear();  // answering after the server is gone is harmless
}

TEST_F(NetServer, ManyConcurrentConnectionsFromSeveralThreads) {
  ServerOptions o;
  o.threads = 2;
  start(o);
  constexpr int kThreads = 8, kConns = 8, kRequests = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::unique_ptr<RawClient>> conns;
      for (int i = 0; i < kConns; ++i) conns.push_back(std::make_unique<RawClient>(port_));
      for (int n = 0; n < kRequests; ++n) {
        for (int i = 0; i < kConns; ++i) {
          std::string path =
              cat("/t", std::to_string(t), "/c", std::to_string(i), "/", std::to_string(n));
          conns[i]->send(cat("GET ", path, " HTTP/1.1\r\nHost: h\r\n\r\n"));
        }
        for (int i = 0; i < kConns; ++i) {
          RawResponse r;
          std::string path =
              cat("/t", std::to_string(t), "/c", std::to_string(i), "/", std::to_string(n));
          if (conns[i]->read_response(&r) && r.body == cat("GET ", path, " ")) ok++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kConns * kRequests);
  EXPECT_EQ(requests_.load(), kThreads * kConns * kRequests);
}

TEST_F(NetServer, MaxConnectionsIsEnforced) {
  ServerOptions o;
  o.max_connections = 2;
  start(o);
  RawClient a(port_), b(port_);
  RawResponse r;
  ASSERT_TRUE(a.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n") && a.read_response(&r));
  ASSERT_TRUE(b.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n") && b.read_response(&r));
  RawClient c(port_);
  EXPECT_TRUE(c.wait_closed(2s));
  EXPECT_EQ(server_->connections(), 2u);
}

TEST_F(NetServer, PortInUseIsAClearError) {
  start();
  ServerOptions o;
  o.address = "127.0.0.1";
  o.port = port_;
  HttpServer second(o, [](Exchange&) {});
  std::string error;
  EXPECT_FALSE(second.start(&error));
  EXPECT_NE(error.find(std::to_string(port_)), std::string::npos) << error;
  o.threads = 2;
  HttpServer third(o, [](Exchange&) {});
  EXPECT_FALSE(third.start(&error));
}

TEST_F(NetServer, BadTlsFilesAreAClearError) {
  ServerOptions o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.tls_cert_file = "/nonexistent/cert.pem";
  o.tls_key_file = "/nonexistent/key.pem";
  HttpServer s(o, [](Exchange&) {});
  std::string error;
  EXPECT_FALSE(s.start(&error));
  EXPECT_NE(error.find("/nonexistent/cert.pem"), std::string::npos) << error;
}

}  // namespace
}  // namespace cap::net

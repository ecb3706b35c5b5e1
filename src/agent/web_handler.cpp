#include "agent/web_handler.h"

#include <algorithm>
#include <charconv>
#include <future>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/logging.h"
#include "engine/span_clock.h"
#include "rules/forwarding.h"
#include "rules/network.h"

namespace cap::agent {

using namespace cap::rules;  // HTTP forwarding helpers and response additions

namespace {

constexpr std::string_view kHtml = "text/html; charset=utf-8";
constexpr std::string_view kJson = "application/json";

std::string_view page(int status) {
  switch (status) {
    case 404:
      return "<!doctype html><title>404 Not Found</title><h1>404 Not Found</h1>"
             "<p>Nothing answers this address.</p>\n";
    case 500:
      return "<!doctype html><title>500 Internal Server Error</title><h1>500 Internal Server "
             "Error</h1><p>The request could not be handled. The agent's log says why.</p>\n";
    case 413:
      return "<!doctype html><title>413 Content Too Large</title><h1>413 Content Too Large</h1>"
             "<p>The request body is larger than this service accepts.</p>\n";
    case 502:
      return "<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1>"
             "<p>The origin server could not be reached.</p>\n";
    case 504:
      return "<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway Timeout</h1>"
             "<p>The origin server did not answer in time.</p>\n";
    default:
      return "<!doctype html><title>503 Service Unavailable</title><h1>503 Service "
             "Unavailable</h1><p>Please try again later.</p>\n";
  }
}

constexpr std::string_view kBlankPage =
    "<!doctype html><title>CAP agent</title><h1>503 Service Unavailable</h1>"
    "<p>This CAP agent has no configuration yet. Deploy one with "
    "<code>capctl deploy DIR --agent HOST:PORT</code>.</p>\n";
constexpr std::string_view kStoppedPage =
    "<!doctype html><title>CAP agent</title><h1>503 Service Unavailable</h1>"
    "<p>The rules of this agent are stopped.</p>\n";

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

/// This thread's Workspace for `s`'s Runtime, started afresh when the Runtime changed. The
/// engine's Workspace remembers its configuration by address, which a later configuration
/// may reuse; the serial tells them apart.
Workspace& workspace_for(const Serving& s) {
  struct Slot {
    uint64_t serial = 0;
    Workspace ws;
  };
  thread_local Slot slot;
  if (slot.serial != s.runtime_serial) {
    slot.ws = Workspace();
    slot.serial = s.runtime_serial;
  }
  return slot.ws;
}

/// Streams a rule's response through a Deferred, waiting for the client to take each piece.
class DeferredStreamer : public StreamingResponse {
 public:
  explicit DeferredStreamer(net::Deferred& deferred) : deferred_(deferred) {}
  ~DeferredStreamer() override {
    if (out_) out_->end(false);
  }
  bool begin(int status, std::string_view content_type,
             const std::vector<std::pair<std::string, std::string>>& headers) override {
    if (out_ || !deferred_) return false;
    out_ =
        deferred_.stream(net::ResponseView{status, content_type, headers, {}, false}, std::nullopt);
    return out_ != nullptr;
  }
  bool write(std::string_view bytes) override {
    if (!out_) return false;
    std::promise<bool> taken;
    std::future<bool> ok = taken.get_future();
    out_->write(std::string(bytes), [&taken](bool b) { taken.set_value(b); });
    return ok.get();
  }
  void end(bool complete) override {
    if (out_) out_->end(complete);
    out_.reset();
  }

 private:
  net::Deferred& deferred_;
  std::shared_ptr<net::ResponseStream> out_;
};

}  // namespace

/// One request on its way through. On the loop thread a thread_local one is reused (its
/// vectors keep their capacity); requests that leave the loop get their own on the heap.
struct WebHandler::Pending {
  const Serving* serving = nullptr;
  std::shared_ptr<const Serving> hold;  // keeps `serving` alive off the loop thread
  net::Exchange* ex = nullptr;          // answering inline
  const std::shared_ptr<const Serving>* inline_serving = nullptr;  // the loop thread's cached one
  net::Deferred deferred;                                          // answering later
  Request req;                       // views into the server's buffers
  std::shared_ptr<BodySource> body;  // the request body, when it streams
  int64_t body_length = -1;
  Response res;
  ResponseEdits edits;  // RESPONSE_ADDITIONS not applied yet (null: none)
  Outcome outcome;
  int64_t t0 = 0;
  bool rules_ran = false;

  void begin(net::Exchange& e, int64_t start) {
    t0 = start;
    req.method = e.method();
    req.target = e.target();
    req.headers.clear();
    for (const net::HeaderView& h : e.headers()) req.headers.emplace_back(h.name, h.value);
    req.body = e.body();
    body = e.body_stream();
    req.body_streamed = body != nullptr;
    body_length = body ? e.content_length() : -1;
    req.remote_addr = e.remote_addr();
    req.scheme = e.secure() ? "https" : "http";
    req.timestamp_ms = 0;
    res.reset();
    edits.reset();
    ex = nullptr;
    inline_serving = nullptr;
    outcome = Outcome{};
    rules_ran = false;
  }

  /// A heap copy that can outlive the handler (proxying after inline rules).
  std::shared_ptr<Pending> detach(std::shared_ptr<const Serving> s) {
    auto p = std::make_shared<Pending>();
    p->hold = std::move(s);
    p->serving = p->hold.get();
    p->req = req;
    p->body = std::move(body);
    p->body_length = body_length;
    p->res = res;
    p->edits = edits;
    p->outcome = outcome;
    p->t0 = t0;
    p->rules_ran = rules_ran;
    p->deferred = ex->defer();
    return p;
  }
};

WebHandler::WebHandler(ServingSlot& slot, Metrics& metrics, net::HttpClientPool& client,
                       WorkQueue& wait_pool, WebOptions options)
    : slot_(slot), metrics_(metrics), client_(client), wait_pool_(wait_pool), options_(options) {}

void WebHandler::record(Pending& p, int status) {
  int64_t nanos = std::max<int64_t>(0, span_clock_ns() - p.t0);
  metrics_.record(status, nanos, p.rules_ran ? path_of(p.req.target) : std::string_view());
  if (options_.request_log)
    web_log().info("{} {} {} {:.3f}ms {}", p.req.method, p.req.target, status,
                   static_cast<double>(nanos) / 1e6, p.req.remote_addr);
}

void WebHandler::send(Pending& p, const net::ResponseView& v) {
  record(p, v.status);
  p.body.reset();  // an unread streamed body: the server closes the connection after this
  if (p.ex)
    p.ex->respond(v);
  else
    p.deferred.respond(v);
}

void WebHandler::run_rules(Pending& p) {
  Runtime& runtime = *p.serving->runtime;
  Workspace& ws = workspace_for(*p.serving);
  p.rules_ran = true;
  if (p.serving->response_additions) {
    p.outcome = runtime.handle(p.req, p.res, ws,
                               [&p](Variables& vars) { p.edits = read_response_additions(vars); });
  } else {
    p.outcome = runtime.handle(p.req, p.res, ws);
  }
}

/// After the rules: the rules' response, the origin's, or 404; 500 on errors.
void WebHandler::finish(Pending& p) {
  if (p.res.streamed) {  // a rule already sent it
    if (p.outcome.failed)
      web_log().error("rule error on {} {} after the response was streamed: {}", p.req.method,
                      p.req.target, p.outcome.error);
    record(p, p.res.status);
    return;
  }
  if (p.outcome.failed) {
    web_log().error("rule error on {} {}: {}", p.req.method, p.req.target, p.outcome.error);
    send(p, net::ResponseView{500, kHtml, {}, page(500), false});
    return;
  }
  if (!p.res.set && p.serving->proxy()) {
    if (p.ex) {
      proxy(p.detach(*p.inline_serving));
    } else {
      // Already off the loop: the caller holds the only reference, so this copy is cheap
      // compared with the origin round trip.
      auto h = std::make_shared<Pending>(std::move(p));
      proxy(std::move(h));
    }
    return;
  }
  if (!p.res.set) {
    p.res.status = 404;
    p.res.content_type = kHtml;
    p.res.body = page(404);
  }
  if (p.edits)
    for (auto& e : *p.edits) apply_to_response(e, p.res);
  send(p, net::ResponseView{p.res.status, p.res.content_type, p.res.headers, p.res.body, false});
}

namespace {

/// Moves the origin's body to the client piece by piece: the next piece is read only once
/// the client took the last one, so a slow client slows the origin rather than filling memory.
void pump(std::shared_ptr<net::BodyReader> body, std::shared_ptr<net::ResponseStream> out) {
  net::BodyReader* reader = body.get();
  reader->read([body = std::move(body), out = std::move(out)](std::string piece, bool end,
                                                              std::string error) mutable {
    if (!error.empty()) {
      web_log().warn("origin body failed midway: {}", error);
      out->end(false);
      return;
    }
    if (end) {
      if (!piece.empty()) out->write(std::move(piece), {});
      out->end(true);
      return;
    }
    net::ResponseStream* stream = out.get();
    stream->write(std::move(piece),
                  [body = std::move(body), out = std::move(out)](bool ok) mutable {
                    if (ok) pump(std::move(body), std::move(out));
                    // else: the client is gone; dropping both closes the origin connection.
                  });
  });
}

std::optional<uint64_t> content_length(const HttpReply& reply) {
  for (const auto& [name, value] : reply.headers) {
    if (iequals(name, "transfer-encoding")) return std::nullopt;
  }
  for (const auto& [name, value] : reply.headers) {
    if (!iequals(name, "content-length")) continue;
    uint64_t n = 0;
    auto r = std::from_chars(value.data(), value.data() + value.size(), n);
    if (r.ec == std::errc() && r.ptr == value.data() + value.size()) return n;
  }
  return std::nullopt;
}

}  // namespace

bool WebHandler::origin_failed(Pending& p, const HttpReply& reply) {
  if (reply.status != 0) return false;
  int status = reply.timed_out ? 504 : 502;
  web_log().warn("origin {} failed for {} {}: {}", p.serving->origin, p.req.method, p.req.target,
                 reply.error);
  send(p, net::ResponseView{status, kHtml, {}, page(status), false});
  return true;
}

HeaderLines WebHandler::client_headers(Pending& p, HttpReply& reply) {
  HeaderLines headers = std::move(reply.headers);
  strip_for_client(headers);
  for (auto& h : p.res.headers) headers.push_back(h);  // added by rules (SetCookie)
  if (p.edits)
    for (auto& e : *p.edits) apply_edit(e, headers, reply.body);
  return headers;
}

bool WebHandler::streams_bodies() {
  const Serving& s = *slot_.current();
  return !s.blank() && s.proxy() && (s.stopped || !s.reads_body);
}

void WebHandler::proxy(std::shared_ptr<Pending> p) {
  HttpCall call = forward_call(p->req, p->serving->origin, {}, options_.origin_timeout_ms);
  if (p->body) {
    call.body_source = std::move(p->body);
    call.body_length = p->body_length;
  }
  bool body_edit = false;
  if (p->edits)
    for (const auto& e : *p->edits) body_edit = body_edit || e.replace_body;
  if (!body_edit) {
    client_.call_streaming(
        std::move(call), kBufferUpTo,
        [this, p](HttpReply reply, std::shared_ptr<net::BodyReader> body) {
          if (origin_failed(*p, reply)) return;
          std::optional<uint64_t> length = body ? content_length(reply) : std::nullopt;
          HeaderLines headers = client_headers(*p, reply);  // body edits: none here
          if (!body) {
            send(*p, net::ResponseView{reply.status, {}, headers, reply.body, false});
            return;
          }
          record(*p, reply.status);
          auto out =
              p->deferred.stream(net::ResponseView{reply.status, {}, headers, {}, false}, length);
          if (out) pump(std::move(body), std::move(out));
        });
    return;
  }
  // An edit replaces the body: the origin's answer is read whole (max_response_bytes).
  client_.call_async(std::move(call), [this, p](HttpReply reply) {
    if (origin_failed(*p, reply)) return;
    HeaderLines headers = client_headers(*p, reply);
    send(*p, net::ResponseView{reply.status, {}, headers, reply.body, false});
  });
}

void WebHandler::answer_mcp(std::shared_ptr<Pending> p) {
  p->ex = nullptr;
  bool queued = wait_pool_.post([this, p] {
    p->body.reset();
    mcp_.handle(*p->serving->runtime, p->req, p->deferred, [&](int status) { record(*p, status); });
  });
  if (!queued) {
    web_log().warn("wait pool full: refusing {} {}", p->req.method, p->req.target);
    send(*p, net::ResponseView{503, kHtml, {}, page(503), false});
  }
}

void WebHandler::handle(net::Exchange& ex) {
  const int64_t t0 = span_clock_ns();
  thread_local Pending local;

  std::string_view target = ex.target();
  if (target.starts_with("/.cap/")) {
    std::string_view path = path_of(target);
    if (path == "/.cap/health" || path == "/.cap/ready") {
      local.begin(ex, t0);
      local.ex = &ex;
      bool ok = path == "/.cap/health" || !slot_.current()->blank();
      send(local, net::ResponseView{ok ? 200 : 503,
                                    kJson,
                                    {},
                                    ok ? std::string_view("{\"status\":\"ok\"}\n")
                                       : std::string_view("{\"status\":\"not ready\"}\n"),
                                    false});
      return;
    }
  }

  const std::shared_ptr<const Serving>& serving = slot_.current();
  local.begin(ex, t0);
  local.ex = &ex;
  local.serving = serving.get();
  local.inline_serving = &serving;

  if (serving->blank()) {
    send(local, net::ResponseView{503, kHtml, {}, kBlankPage, false});
    return;
  }
  if (local.body && !(serving->proxy() && (serving->stopped || !serving->reads_body))) {
    // The body started streaming under a configuration that let it, and the one active now
    // reads bodies: it is too large to hold, as it would have been from the start.
    local.body.reset();
    send(local, net::ResponseView{413, kHtml, {}, page(413), false});
    return;
  }
  if (serving->stopped) {
    if (serving->proxy())
      proxy(local.detach(serving));
    else
      send(local, net::ResponseView{503, kHtml, {}, kStoppedPage, false});
    return;
  }
  if (const std::string& mcp = serving->runtime->configuration().mcp.path;
      !mcp.empty() && path_of(target) == mcp) {
    answer_mcp(local.detach(serving));  // rule sets offered as MCP tools (agent/mcp.h)
    return;
  }
  if (serving->may_wait) {
    // The rules may wait on the network: run them on the wait pool, answer later. There a
    // rule may also stream the response (LlmChat with `stream`).
    auto p = local.detach(serving);
    p->ex = nullptr;
    bool queued = wait_pool_.post([this, p] {
      DeferredStreamer streamer(p->deferred);
      p->res.streamer = &streamer;
      run_rules(*p);
      p->res.streamer = nullptr;
      finish(*p);
    });
    if (!queued) {
      web_log().warn("wait pool full: refusing {} {}", p->req.method, p->req.target);
      send(*p, net::ResponseView{503, kHtml, {}, page(503), false});
    }
    return;
  }
  run_rules(local);
  finish(local);
}

}  // namespace cap::agent

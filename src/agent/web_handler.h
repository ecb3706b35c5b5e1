// The web port's request path, in the order a request meets it:
//
//   accept     /.cap/health and /.cap/ready answer at once; a blank agent answers 503;
//              the configuration's MCP path (cap.json "mcp") goes to agent/mcp.h
//   variables  the Exchange becomes a cap::Request of views into the server's buffers
//   rules      the active Runtime runs on the loop thread with that thread's Workspace, or,
//              when the configuration may wait (HTTP calls), on the wait pool
//   respond    the rules' response; else 404 (endpoint mode) or the origin's answer
//              (proxy mode, through the asynchronous client); rule errors give 500.
//              An origin answer larger than kBufferUpTo, or of unknown length, streams to
//              the client piece by piece as the client takes it (no size limit), unless an
//              HttpResponseAddition replaces its body; header edits apply either way.
//   log        metrics always, a request log line when CAP_REQUEST_LOG is on
//
// Stopped rules: proxy mode passes everything to the origin, endpoint mode answers 503.
//
// Request bodies: read whole by the server (up to CAP_MAX_BODY_BYTES) before the rules run,
// except in proxy mode with a configuration that does not read BODY or form parameters (or
// with the rules stopped): there a body larger than CAP_MAX_BODY_BYTES, or chunked, streams
// to the origin as the client sends it (up to CAP_MAX_STREAM_BYTES), never held whole.
#pragma once

#include <cstdint>
#include <memory>

#include "agent/mcp.h"
#include "agent/metrics.h"
#include "agent/serving.h"
#include "agent/work_queue.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "rules/forwarding.h"

namespace cap::agent {

/// Origin answers with a Content-Length up to this are read whole, then answered.
constexpr size_t kBufferUpTo = 256 * 1024;

struct WebOptions {
  int origin_timeout_ms = 30000;
  bool request_log = false;
};

class WebHandler {
 public:
  WebHandler(ServingSlot& slot, Metrics& metrics, net::HttpClientPool& client, WorkQueue& wait_pool,
             WebOptions options);
  /// The server's handler: runs on a loop thread.
  void handle(net::Exchange& ex);
  /// ServerOptions::stream_request_bodies: whether what is served now passes large request
  /// bodies to the origin as they come. On a loop thread.
  bool streams_bodies();
  /// Ends the MCP server's open event streams (they would hold up the drain): call once
  /// the server stopped accepting.
  void close_streams() { mcp_.close_streams(); }

  struct Pending;  // a request that continues off the loop thread

 private:
  void run_rules(Pending& p);
  void finish(Pending& p);
  void proxy(std::shared_ptr<Pending> p);
  void answer_mcp(std::shared_ptr<Pending> p);  // on the wait pool: tools may wait
  void send(Pending& p, const net::ResponseView& v);
  /// When the origin gave no answer: answers 502 (504 after a timeout), logs, returns true.
  bool origin_failed(Pending& p, const HttpReply& reply);
  /// The origin's headers as the client gets them: hop-by-hop ones dropped, the rules'
  /// headers added, RESPONSE_ADDITIONS applied (to `reply.body` too when one replaces it).
  /// Takes the lines out of `reply.headers`.
  rules::HeaderLines client_headers(Pending& p, HttpReply& reply);
  void record(Pending& p, int status);  // metrics and the request log line

  ServingSlot& slot_;
  Metrics& metrics_;
  net::HttpClientPool& client_;
  WorkQueue& wait_pool_;
  WebOptions options_;
  McpServer mcp_{slot_, metrics_};  // cap.json "mcp": sessions and event streams live here
};

}  // namespace cap::agent

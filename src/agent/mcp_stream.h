// One server-sent event stream from the MCP server to a client (agent/mcp.h): the session's
// GET stream, or the answer to one POST sent as events. It sits on a streamed response of
// the web server (net::Deferred::stream, the way LlmChat streams a model's answer) and
// keeps the server's rule of one write at a time: events queue here and go out as the
// client takes them. Thread-safe; nothing here blocks.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/http_server.h"

namespace cap::agent {

class SseChannel : public std::enable_shared_from_this<SseChannel> {
 public:
  /// Events (or bytes) a client may leave untaken before the stream is dropped as stuck.
  static constexpr size_t kMaxQueuedEvents = 256;
  static constexpr size_t kMaxQueuedBytes = 4 * 1024 * 1024;

  /// Answers `deferred` with 200, Content-Type text/event-stream, no caching, `headers`, and
  /// an open-ended (chunked) body that this channel writes.
  static std::shared_ptr<SseChannel> open(
      net::Deferred& deferred, const std::vector<std::pair<std::string, std::string>>& headers);

  /// Queues `json` (one JSON-RPC message, no newlines) as a "message" event. False when
  /// the stream is closed, or when the client fell too far behind (the stream closes then).
  bool send_message(std::string_view json);
  /// Queues an SSE comment line (": text"), which clients ignore: keeps idle connections
  /// and the proxies on their way alive, and finds clients that went away.
  bool send_comment(std::string_view text);
  /// Ends the stream properly once what is queued went out. Later sends return false.
  void end();
  /// Whether events can still be sent (not ended, client still there as far as known).
  bool is_open() const;

 private:
  struct Key {  // only open() makes channels
    explicit Key() = default;
  };

 public:
  explicit SseChannel(Key) {}

 private:
  bool queue(std::string bytes);
  void pump();
  void written(bool ok);

  mutable std::mutex mu_;
  std::shared_ptr<net::ResponseStream> out_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;  // a write is with the server, its `taken` not called yet
  bool ending_ = false;   // end() was called
  bool closed_ = false;   // ended or failed: nothing more goes out
};

}  // namespace cap::agent

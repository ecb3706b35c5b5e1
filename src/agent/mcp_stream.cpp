#include "agent/mcp_stream.h"

#include <optional>

namespace cap::agent {

std::shared_ptr<SseChannel> SseChannel::open(
    net::Deferred& deferred, const std::vector<std::pair<std::string, std::string>>& headers) {
  std::vector<std::pair<std::string, std::string>> all = headers;
  all.emplace_back("Cache-Control", "no-cache");
  auto ch = std::make_shared<SseChannel>(Key());
  ch->out_ =
      deferred.stream(net::ResponseView{200, "text/event-stream", all, {}, false}, std::nullopt);
  if (!ch->out_) ch->closed_ = true;
  return ch;
}

bool SseChannel::send_message(std::string_view json) {
  std::string event;
  event.reserve(json.size() + 24);
  event.append("event: message\ndata: ").append(json).append("\n\n");
  return queue(std::move(event));
}

bool SseChannel::send_comment(std::string_view text) {
  std::string line;
  line.append(": ").append(text).append("\n\n");
  return queue(std::move(line));
}

bool SseChannel::queue(std::string bytes) {
  std::shared_ptr<net::ResponseStream> drop;
  {
    std::lock_guard lock(mu_);
    if (closed_ || ending_) return false;
    if (queue_.size() >= kMaxQueuedEvents || queued_bytes_ + bytes.size() > kMaxQueuedBytes) {
      // The client stopped reading: free the connection rather than grow without bound.
      closed_ = true;
      queue_.clear();
      queued_bytes_ = 0;
      drop = std::move(out_);
    } else {
      queued_bytes_ += bytes.size();
      queue_.push_back(std::move(bytes));
    }
  }
  if (drop) {
    drop->end(false);
    return false;
  }
  pump();
  return true;
}

void SseChannel::end() {
  {
    std::lock_guard lock(mu_);
    if (closed_ || ending_) return;
    ending_ = true;
  }
  pump();
}

bool SseChannel::is_open() const {
  std::lock_guard lock(mu_);
  return !closed_ && !ending_;
}

// Hands the next queued piece to the server, or ends the stream when asked and drained. The
// server may call `taken` before write() returns (a connection already gone), so no lock is
// held across the calls into it.
void SseChannel::pump() {
  std::shared_ptr<net::ResponseStream> out;
  std::string piece;
  bool finish = false;
  {
    std::lock_guard lock(mu_);
    if (closed_ || writing_ || !out_) return;
    if (queue_.empty()) {
      if (!ending_) return;
      closed_ = true;
      finish = true;
      out = std::move(out_);
    } else {
      piece = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= piece.size();
      writing_ = true;
      out = out_;
    }
  }
  if (finish) {
    out->end(true);
    return;
  }
  out->write(std::move(piece), [self = shared_from_this()](bool ok) { self->written(ok); });
}

void SseChannel::written(bool ok) {
  std::shared_ptr<net::ResponseStream> drop;
  {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {  // the client went away
      closed_ = true;
      queue_.clear();
      queued_bytes_ = 0;
      drop = std::move(out_);
    }
  }
  if (drop) {
    drop->end(false);
    return;
  }
  pump();
}

}  // namespace cap::agent

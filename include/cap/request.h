// The engine's view of an HTTP exchange: plain data, no sockets. The agent's adaptor,
// capctl and the tests fill a Request and read back a Response.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cap {

/// One incoming request. The strings are owned by the caller and must outlive the call.
struct Request {
  std::string_view method = "GET";
  std::string_view target = "/";  // path and query as received
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  std::string_view body;
  std::string_view remote_addr = "127.0.0.1";
  std::string_view scheme = "http";
  int64_t timestamp_ms = 0;  // 0: the host clock's now
  /// The body is not here: the host streams it on (to the origin) after the rules ran, for
  /// a configuration that cannot read it (Configuration::reads_body false). BODY is null
  /// and no form fields are read; `body` is empty.
  bool body_streamed = false;
};

/// A response sent piece by piece while the rules still run (a model's answer as
/// server-sent events). Hosts that can stream hand one to the rules (Response::streamer);
/// one rule uses it per request: begin once, write, end once. Called from the thread
/// running the rules; write waits while the client is slow.
class StreamingResponse {
 public:
  virtual ~StreamingResponse() = default;
  /// Sends the status and headers. False when the client is gone.
  virtual bool begin(int status, std::string_view content_type,
                     const std::vector<std::pair<std::string, std::string>>& headers) = 0;
  /// Sends the next bytes once the client took the previous ones. False when it is gone.
  virtual bool write(std::string_view bytes) = 0;
  /// Ends the body; `complete` false cuts the connection (the client sees it truncated).
  virtual void end(bool complete) = 0;
};

/// What the rules produced. `set` is false when no rule answered; the host then answers 404
/// (endpoint mode) or passes the request to the origin (proxy mode).
struct Response {
  bool set = false;
  int status = 200;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Set by a host that can stream the response (null elsewhere: rules then answer whole).
  StreamingResponse* streamer = nullptr;
  /// A rule sent the response through `streamer`: the host sends nothing more.
  bool streamed = false;

  void reset() {
    set = false;
    status = 200;
    content_type.clear();
    headers.clear();
    body.clear();
    streamer = nullptr;
    streamed = false;
  }
  /// Adds a header line (several of the same name are kept, as Set-Cookie needs).
  void add_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
};

/// Splits a query string into decoded (name, value) pairs ("+" is a space).
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query);
/// Calls f(name, value) for each query parameter, decoding only when needed: names without
/// escapes are passed as views into `query`.
template <typename F>
void for_each_query_param(std::string_view query, F&& f);

/// Percent-decodes; `plus_is_space` for form encoding.
std::string url_decode(std::string_view s, bool plus_is_space);

template <typename F>
void for_each_query_param(std::string_view q, F&& f) {
  size_t start = 0;
  while (start < q.size()) {
    size_t end = q.find('&', start);
    if (end == std::string_view::npos) end = q.size();
    std::string_view part = q.substr(start, end - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      std::string_view name = part.substr(0, eq);
      std::string_view value = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
      bool plain_name = name.find_first_of("%+") == std::string_view::npos;
      std::string value_text = value.find_first_of("%+") == std::string_view::npos
                                   ? std::string(value)
                                   : url_decode(value, true);
      if (plain_name) {
        f(name, std::move(value_text));
      } else {
        std::string decoded = url_decode(name, true);
        f(std::string_view(decoded), std::move(value_text));
      }
    }
    start = end + 1;
  }
}

}  // namespace cap

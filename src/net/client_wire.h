// The HTTP/1.1 wire format of the client's calls (net/http_client.cpp): a call rendered
// as request bytes, and replies parsed straight into an HttpReply. Internal to cap_net.
#pragma once

#include <algorithm>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "net/http_client.h"
#include "net/url_target.h"

namespace cap::net {

/// Renders `call`'s request line, headers and body (unless it has a body source) for
/// target `t` into `out`, adding Host, User-Agent, Authorization (from the URL's
/// credentials) and the framing when the caller gave none. False with `error` on bad
/// caller input: a method or header name that is not a token, a header value with CR, LF
/// or NUL.
bool render_request(const HttpCall& call, const Target& t, std::string* out, std::string* error);

// The client's one response parser: collects the status and header lines straight into an
// HttpReply (no field container in between). The body goes either to a string that grows
// (`grow`, for replies read whole; the parser's body_limit bounds it) or, as Beast's
// buffer_body does, into a buffer its user provides: `body_data`/`body_size` name the room
// left; without room the parser stops with need_buffer.
class ReplyParser final : public boost::beast::http::basic_parser<false> {
 public:
  HttpReply head;  // status and headers; the body goes to `grow` or the buffer
  std::string* grow = nullptr;
  char* body_data = nullptr;
  size_t body_size = 0;

 private:
  void on_request_impl(boost::beast::http::verb, boost::beast::string_view,
                       boost::beast::string_view, int, boost::system::error_code&) override {}
  void on_response_impl(int code, boost::beast::string_view, int,
                        boost::system::error_code&) override {
    head.status = code;
    head.headers.reserve(8);
  }
  void on_field_impl(boost::beast::http::field, boost::beast::string_view name,
                     boost::beast::string_view value, boost::system::error_code&) override {
    head.headers.emplace_back(std::string(name.data(), name.size()),
                              std::string(value.data(), value.size()));
  }
  void on_header_impl(boost::system::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         boost::system::error_code&) override {
    // The length was checked against the body limit before this.
    if (grow && length) grow->reserve(size_t(*length));
  }
  size_t on_body_impl(boost::beast::string_view piece, boost::system::error_code& ec) override {
    if (grow) {
      grow->append(piece.data(), piece.size());
      return piece.size();
    }
    if (!body_data) {
      ec = boost::beast::http::error::need_buffer;
      return 0;
    }
    size_t n = std::min(piece.size(), body_size);
    std::memcpy(body_data, piece.data(), n);
    body_data += n;
    body_size -= n;
    if (n < piece.size()) ec = boost::beast::http::error::need_buffer;
    return n;
  }
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                            boost::system::error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view piece,
                            boost::system::error_code& ec) override {
    return on_body_impl(piece, ec);
  }
  void on_finish_impl(boost::system::error_code&) override {}
};

}  // namespace cap::net

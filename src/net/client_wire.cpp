#include "net/client_wire.h"

#include <cassert>
#include <cstring>
#include <string_view>

#include "net/header_text.h"

namespace cap::net {

// Renders the request line, headers and body. False with `error` on bad caller input.
bool render_request(const HttpCall& call, const Target& t, std::string* out, std::string* error) {
  if (!is_token(call.method)) {
    *error = "bad method '" + call.method + "'";
    return false;
  }
  bool has_host = false, has_agent = false, has_auth = false;
  for (const auto& [name, value] : call.headers) {
    if (!is_token(name)) {
      *error = "bad header name '" + name + "'";
      return false;
    }
    if (has_ctl(value)) {
      *error = "the value of header " + name + " holds CR, LF or NUL";
      return false;
    }
    if (iequals(name, "host")) has_host = true;
    if (iequals(name, "user-agent")) has_agent = true;
    if (iequals(name, "authorization")) has_auth = true;
  }
  // Measured first, then written in one go: one allocation, no growth checks.
  const std::string& m = call.method;
  std::string length;  // the Content-Length value, when there is one
  bool chunked = false;
  if (call.body_source) {
    if (call.body_length >= 0)
      length = std::to_string(call.body_length);
    else
      chunked = true;
  } else if (!call.body.empty() || m == "POST" || m == "PUT" || m == "PATCH") {
    length = std::to_string(call.body.size());
  }
  auto framing = [](std::string_view name) {
    return iequals(name, "content-length") || iequals(name, "transfer-encoding");
  };
  using namespace std::string_view_literals;
  constexpr std::string_view kAgent = "User-Agent: cap/" CAP_VERSION "\r\n";
  constexpr std::string_view kChunked = "Transfer-Encoding: chunked\r\n";
  bool auth = !has_auth && !t.o->basic_auth.empty();
  size_t n = m.size() + 1 + t.target.size() + 11 + 2;
  if (!has_host) n += 6 + t.o->host_header.size() + 2;
  if (!has_agent) n += kAgent.size();
  if (auth) n += 15 + t.o->basic_auth.size() + 2;
  if (!length.empty()) n += 16 + length.size() + 2;
  if (chunked) n += kChunked.size();
  for (const auto& [name, value] : call.headers)
    if (!framing(name)) n += name.size() + 2 + value.size() + 2;
  if (!call.body_source) n += call.body.size();

  std::string& s = *out;
  s.resize(n);
  char* w = s.data();
  auto put = [&w](std::string_view v) {
    std::memcpy(w, v.data(), v.size());
    w += v.size();
  };
  put(m);
  put(" "sv);
  put(t.target);
  put(" HTTP/1.1\r\n"sv);
  if (!has_host) {
    put("Host: "sv);
    put(t.o->host_header);
    put("\r\n"sv);
  }
  if (!has_agent) put(kAgent);
  if (auth) {
    put("Authorization: "sv);
    put(t.o->basic_auth);
    put("\r\n"sv);
  }
  if (!length.empty()) {
    put("Content-Length: "sv);
    put(length);
    put("\r\n"sv);
  }
  if (chunked) put(kChunked);
  // The client frames the body itself; a caller's length could only disagree with it.
  for (const auto& [name, value] : call.headers) {
    if (framing(name)) continue;
    put(name);
    put(": "sv);
    put(value);
    put("\r\n"sv);
  }
  put("\r\n"sv);
  if (!call.body_source) put(call.body);
  assert(w == s.data() + s.size());
  return true;
}

}  // namespace cap::net

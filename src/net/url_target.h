// A URL the HTTP client calls, taken apart (net/http_client.cpp's use only).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace cap::net {

// The scheme and authority of a URL taken apart. `where` names the origin in messages: no
// credentials, path or query.
struct Origin {
  bool tls = false;
  bool ip_literal = false;
  std::string host;  // without brackets
  uint16_t port = 0;
  std::string host_header;  // host[:port], IPv6 in brackets
  std::string origin_key;   // scheme://host:port
  std::string basic_auth;   // "Basic ..." from user:password@, or empty
  std::string where;        // scheme://host:port
};

// A URL taken apart: its origin (shared by the calls to it) and its target.
struct Target {
  std::shared_ptr<const Origin> o;
  std::string target;  // path?query, as encoded in the URL
};

/// Takes `url` apart: http or https, a host, a port 1-65535, a target without spaces or
/// control characters; user:password@ becomes `basic_auth`. False with `error` ("bad URL:
/// ...") otherwise.
bool parse_target(const std::string& url, Target* t, std::string* error);

/// parse_target, remembering per thread the last origin parsed: calls to one origin
/// (proxying) differ only in their targets, which then need no full parse. The same
/// answers as parse_target.
bool parse_target_cached(const std::string& url, Target* t, std::string* error);

}  // namespace cap::net

#include "net/url_target.h"

#include <sodium.h>

#include <array>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <cctype>
#include <string_view>

#include "net/header_text.h"

namespace cap::net {

namespace {

char lower(char c) { return char(detail::kLower[static_cast<unsigned char>(c)]); }

std::string base64(std::string_view in) {
  std::string out(sodium_base64_ENCODED_LEN(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()),
                    in.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

}  // namespace

bool parse_target(const std::string& url, Target* t, std::string* error) {
  auto r = boost::urls::parse_uri(url);
  if (!r) {
    *error = "bad URL: " + r.error().message() + " (expected http://host[:port]/path)";
    return false;
  }
  boost::urls::url_view u = *r;
  auto o = std::make_shared<Origin>();
  std::string scheme(u.scheme());
  for (char& c : scheme) c = lower(c);
  if (scheme != "http" && scheme != "https") {
    *error = "bad URL: the scheme must be http or https, not '" + scheme + "'";
    return false;
  }
  o->tls = scheme == "https";
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::ipv6:
      o->ip_literal = true;
      o->host = u.host_address();
      break;
    case boost::urls::host_type::name:
      o->host = u.host();
      break;
    default:
      *error = "bad URL: it has no host";
      return false;
  }
  if (o->host.empty()) {
    *error = "bad URL: it has no host";
    return false;
  }
  for (char& c : o->host) c = lower(c);
  uint16_t def = o->tls ? 443 : 80;
  o->port = def;
  if (u.has_port() && !u.port().empty()) {
    std::string_view p = u.port();  // port_number() wraps values above 65535
    unsigned long v = 0;
    bool digits = p.size() <= 5 && p.find_first_not_of("0123456789") == std::string_view::npos;
    if (digits) v = std::stoul(std::string(p));
    if (!digits || v < 1 || v > 65535) {
      *error = "bad URL: the port must be 1 to 65535";
      return false;
    }
    o->port = uint16_t(v);
  }
  std::string bracketed =
      u.host_type() == boost::urls::host_type::ipv6 ? "[" + o->host + "]" : o->host;
  o->host_header = bracketed;
  if (o->port != def) o->host_header += ":" + std::to_string(o->port);
  t->target = std::string(u.encoded_path());
  if (t->target.empty()) t->target = "/";
  if (u.has_query()) {
    t->target += "?";
    t->target += std::string(u.encoded_query());
  }
  if (has_ctl(t->target) || t->target.find(' ') != std::string::npos) {
    *error = "bad URL: the path holds spaces or control characters";
    return false;
  }
  o->where = scheme;
  o->where += "://";
  o->where += bracketed;
  o->where += ":" + std::to_string(o->port);
  o->origin_key = o->where;
  if (u.has_userinfo()) {
    std::string cred = u.user();
    cred += ":";
    cred += u.password();
    o->basic_auth = "Basic " + base64(cred);
  }
  t->o = std::move(o);
  return true;
}

namespace {

// Whether `s`, after an origin, is a target parse_uri takes as it is: a path and query of
// the characters RFC 3986 allows there, percent signs followed by two hex digits, no
// fragment.
bool plain_target(std::string_view s) {
  static constexpr auto kAllowed = [] {
    std::array<bool, 256> a{};
    for (int c = 'a'; c <= 'z'; ++c) a[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) a[c] = true;
    for (int c = '0'; c <= '9'; ++c) a[c] = true;
    for (unsigned char c : std::string_view("-._~!$&'()*+,;=:@/?")) a[c] = true;
    return a;
  }();
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (kAllowed[c]) continue;
    if (c != '%' || i + 2 >= s.size() || !hex(s[i + 1]) || !hex(s[i + 2])) return false;
    i += 2;
  }
  return true;
}

}  // namespace

bool parse_target_cached(const std::string& url, Target* t, std::string* error) {
  thread_local std::string prefix;  // scheme://authority of the last URL, as written
  thread_local std::shared_ptr<const Origin> origin;
  if (origin && url.size() > prefix.size() && url[prefix.size()] == '/' &&
      url.starts_with(prefix)) {
    std::string_view rest = std::string_view(url).substr(prefix.size());
    if (plain_target(rest)) {
      t->o = origin;
      t->target.assign(rest);
      return true;
    }
  }
  if (!parse_target(url, t, error)) return false;
  size_t n = t->target.size();
  if (url.size() > n && url.ends_with(t->target) && url[url.size() - n] == '/') {
    prefix.assign(url, 0, url.size() - n);
    origin = t->o;
  }
  return true;
}

}  // namespace cap::net

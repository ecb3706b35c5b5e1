#include "net/sigv4.h"

#include <algorithm>
#include <boost/url/parse.hpp>
#include <ctime>

#include "net/signing.h"

namespace cap::net::sigv4 {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

// Trims the value and folds every run of spaces and tabs into one space.
std::string canonical_header_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

// Removes "." and ".." segments and empty segments (repeated slashes); keeps a trailing
// slash when the path had one and something is left.
std::string normalize_path(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segments.push_back(seg);
    }
    i = j + 1;
  }
  std::string out;
  for (auto seg : segments) {
    out.push_back('/');
    out.append(seg);
  }
  if (out.empty()) return "/";
  if (path.back() == '/') out.push_back('/');
  return out;
}

std::string date_part(std::string_view amz) { return std::string(amz.substr(0, 8)); }

}  // namespace

std::string uri_encode(std::string_view text, bool encode_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    if (unreserved(c) || (c == '/' && !encode_slash)) {
      out.push_back(char(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[20];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string payload_hash(std::string_view data) { return sha256_hex(data); }

Signed sign_v4(const Request& request, const Credentials& credentials, const Scope& scope,
               std::chrono::system_clock::time_point now, const Options& options) {
  Signed out;
  const std::string date = amz_date(now);
  const std::string payload =
      request.payload_sha256.empty() ? payload_hash(request.body) : request.payload_sha256;

  // Canonical query: names and values encoded, sorted by name then value.
  std::vector<std::pair<std::string, std::string>> query;
  query.reserve(request.query.size());
  for (const auto& [k, v] : request.query) query.emplace_back(uri_encode(k), uri_encode(v));
  std::sort(query.begin(), query.end());
  for (const auto& [k, v] : query) {
    if (!out.query.empty()) out.query.push_back('&');
    out.query += k;
    out.query.push_back('=');
    out.query += v;
  }

  // Canonical headers: lower-case names, sorted; values trimmed, repeats joined with ','.
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back("host", canonical_header_value(request.host));
  headers.emplace_back("x-amz-date", date);
  out.headers.emplace_back("x-amz-date", date);
  if (options.content_sha256_header) {
    headers.emplace_back("x-amz-content-sha256", payload);
    out.headers.emplace_back("x-amz-content-sha256", payload);
  }
  if (!credentials.session_token.empty()) {
    if (options.sign_security_token)
      headers.emplace_back("x-amz-security-token", credentials.session_token);
    out.headers.emplace_back("x-amz-security-token", credentials.session_token);
  }
  for (const auto& [k, v] : request.headers)
    headers.emplace_back(lower(k), canonical_header_value(v));
  // Stable sort by name keeps repeated headers in the order given.
  std::stable_sort(headers.begin(), headers.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string canonical_headers;
  std::string signed_headers;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (i > 0 && headers[i].first == headers[i - 1].first) {
      canonical_headers.back() = ',';  // replaces the previous line's '\n'
      canonical_headers += headers[i].second;
      canonical_headers.push_back('\n');
      continue;
    }
    if (!signed_headers.empty()) signed_headers.push_back(';');
    signed_headers += headers[i].first;
    canonical_headers += headers[i].first;
    canonical_headers.push_back(':');
    canonical_headers += headers[i].second;
    canonical_headers.push_back('\n');
  }

  std::string path = request.path.empty() ? "/" : request.path;
  std::string canonical_path = options.s3_path ? path : uri_encode(normalize_path(path), false);

  out.canonical_request = request.method + "\n" + canonical_path + "\n" + out.query + "\n" +
                          canonical_headers + "\n" + signed_headers + "\n" + payload;

  const std::string day = date_part(date);
  const std::string credential_scope =
      day + "/" + scope.region + "/" + scope.service + "/aws4_request";
  out.string_to_sign = std::string(kAlgorithm) + "\n" + date + "\n" + credential_scope + "\n" +
                       sha256_hex(out.canonical_request);

  std::string key = hmac_sha256("AWS4" + credentials.secret_access_key, day);
  key = hmac_sha256(key, scope.region);
  key = hmac_sha256(key, scope.service);
  key = hmac_sha256(key, "aws4_request");
  out.signature = hmac_sha256_hex(key, out.string_to_sign);

  out.authorization = std::string(kAlgorithm) + " Credential=" + credentials.access_key_id + "/" +
                      credential_scope + ", SignedHeaders=" + signed_headers +
                      ", Signature=" + out.signature;
  out.headers.emplace_back("authorization", out.authorization);
  return out;
}

bool sign_call(HttpCall* call, const Credentials& credentials, const Scope& scope,
               std::chrono::system_clock::time_point now, const Options& options,
               std::string* error) {
  auto parsed = boost::urls::parse_uri(call->url);
  std::string scheme = parsed ? lower(std::string(parsed->scheme())) : "";
  if (!parsed || (scheme != "http" && scheme != "https") || parsed->host().empty()) {
    if (error) *error = "cannot sign: the URL must be an absolute http or https URL";
    return false;
  }
  Request r;
  r.method = call->method;
  r.host = lower(std::string(parsed->encoded_host_and_port()));
  const std::string default_port = scheme == "https" ? ":443" : ":80";
  if (r.host.ends_with(default_port)) r.host.resize(r.host.size() - default_port.size());
  r.path = std::string(parsed->encoded_path());
  if (r.path.empty()) r.path = "/";
  for (auto param : parsed->params()) r.query.emplace_back(param.key, param.value);
  for (const auto& [k, v] : call->headers) {
    std::string name = lower(k);
    if (name == "user-agent" || name == "expect" || name == "content-length" ||
        name == "transfer-encoding" || name == "host" || name == "authorization" ||
        name == "x-amz-date")
      continue;
    r.headers.emplace_back(k, v);
  }
  if (call->body_source)
    r.payload_sha256 = "UNSIGNED-PAYLOAD";
  else
    r.body = call->body;
  Signed s = sign_v4(r, credentials, scope, now, options);
  call->url = scheme + "://" + r.host + r.path + (s.query.empty() ? "" : "?" + s.query);
  std::erase_if(call->headers, [](const auto& h) {
    std::string name = lower(h.first);
    return name == "host" || name == "authorization" || name == "x-amz-date";
  });
  call->headers.emplace_back("Host", r.host);
  for (auto& h : s.headers) call->headers.push_back(std::move(h));
  return true;
}

}  // namespace cap::net::sigv4

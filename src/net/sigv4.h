// AWS Signature Version 4 (header form), on OpenSSL, for any AWS service and region: S3,
// Bedrock, ECS, ELBv2... The signer only computes; the caller sends the request (with the
// project's HttpClientPool) exactly as described to sign_v4 below.
//
// Typical use (S3 GET of key "a b/c+d" in bucket "snaps" through a path-style endpoint):
//
//   sigv4::Request req;
//   req.method = "GET";
//   req.host = "127.0.0.1:9000";                            // as the Host header will be sent
//   req.path = "/snaps/" + sigv4::uri_encode("a b/c+d", false);   // the encoded wire path
//   req.query = {{"versionId", "3"}};                       // decoded names and values
//   sigv4::Scope scope{"eu-west-1", "s3"};
//   auto s = sigv4::sign_v4(req, creds, scope, std::chrono::system_clock::now(),
//                           sigv4::Options::s3());
//   // URL: "http://" + req.host + req.path + (s.query.empty() ? "" : "?" + s.query)
//   // headers: req.headers, then s.headers (x-amz-date, x-amz-content-sha256,
//   //          x-amz-security-token when there is a session token, authorization)
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/services.h"

namespace cap::net::sigv4 {

/// An access key pair, with the session token of temporary credentials (may be empty).
/// Never log these.
struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
};

/// Where the signature is valid: region ("us-east-1") and service signing name ("s3",
/// "bedrock", "ecs", "elasticloadbalancing").
struct Scope {
  std::string region;
  std::string service;
};

struct Options {
  /// Generic AWS rule (false): the path is normalised (dot segments removed, repeated
  /// slashes collapsed) and URI-encoded again for the canonical request, so an encoded path
  /// is double-encoded. S3 (true): the path is signed exactly as sent.
  bool s3_path = false;
  /// Adds and signs x-amz-content-sha256 (S3 requires it).
  bool content_sha256_header = false;
  /// Signs x-amz-security-token (almost every service). When false the token header is still
  /// added to the request, but not signed.
  bool sign_security_token = true;

  /// The options S3 needs.
  static Options s3() {
    Options o;
    o.s3_path = true;
    o.content_sha256_header = true;
    return o;
  }
};

struct Request {
  std::string method;  // "GET", "PUT"...
  /// The Host header exactly as it is sent: host, plus ":port" when not the scheme's default.
  std::string host;
  /// The path as it goes on the wire, percent-encoded (build it with uri_encode(x, false)).
  /// Empty means "/".
  std::string path;
  /// Query parameters, decoded; the order does not matter (the signer sorts). A parameter
  /// without a value ("?uploads") is {"uploads", ""}.
  std::vector<std::pair<std::string, std::string>> query;
  /// Further headers to sign (content-type, content-md5, x-amz-*...). Names in any case;
  /// repeated names are joined with ','. Must not hold host, authorization or x-amz-date.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Lower-case hex SHA-256 of the body, or "UNSIGNED-PAYLOAD". When empty, the signer
  /// hashes `body`.
  std::string payload_sha256;
  std::string_view body;
};

struct Signed {
  /// Headers to send in addition to Request::headers and Host: x-amz-date,
  /// x-amz-content-sha256 (with Options::content_sha256_header), x-amz-security-token (with
  /// a session token) and authorization.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The canonical query string: send exactly this after '?' (empty: no query).
  std::string query;
  // For tests and debugging (never log them with secrets: they hold none, but the
  // canonical request may hold the session token).
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // lower-case hex
  std::string authorization;
};

/// Signs `request` at time `now` (UTC). Pure: no I/O, thread-safe.
Signed sign_v4(const Request& request, const Credentials& credentials, const Scope& scope,
               std::chrono::system_clock::time_point now, const Options& options = {});

/// Signs an HttpCall in place, for any service: the simplest way to call an AWS API with
/// the project's HTTP client. Reads the host, path and query from `call->url` (an
/// absolute http or https URL, percent-encoded), rewrites the URL's query in canonical
/// order, signs every header of `call->headers` but user-agent, expect, content-length and
/// transfer-encoding, hashes `call->body` (a streamed body, HttpCall::body_source, is sent
/// as UNSIGNED-PAYLOAD, which S3 accepts and most other services do not), and appends Host,
/// x-amz-date, x-amz-security-token (with a session token), x-amz-content-sha256 (with
/// Options::content_sha256_header) and Authorization. False with `error` when the URL does
/// not parse. Example (Bedrock):
///
///   HttpCall c;
///   c.method = "POST";
///   c.url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/" +
///           sigv4::uri_encode("anthropic.claude-3-haiku-20240307-v1:0") + "/invoke";
///   c.headers = {{"Content-Type", "application/json"}};
///   c.body = R"({"messages": [...]})";
///   sigv4::sign_call(&c, creds, {"us-east-1", "bedrock"}, std::chrono::system_clock::now());
///   HttpReply r = http_client.call(c);
bool sign_call(HttpCall* call, const Credentials& credentials, const Scope& scope,
               std::chrono::system_clock::time_point now, const Options& options = {},
               std::string* error = nullptr);

/// RFC 3986 percent-encoding as SigV4 wants it: every byte but A-Z a-z 0-9 - . _ ~ becomes
/// %XX (upper-case hex); '/' is kept when `encode_slash` is false (for paths).
std::string uri_encode(std::string_view text, bool encode_slash = true);

/// "YYYYMMDDTHHMMSSZ" for `t` (UTC).
std::string amz_date(std::chrono::system_clock::time_point t);

/// Lower-case hex SHA-256 of `data` (the payload hash).
std::string payload_hash(std::string_view data);

}  // namespace cap::net::sigv4

// Management request signing (DESIGN §5): every management request but the health check
// carries
//
//   Authorization: CAP-HMAC-SHA256 ts=<unix seconds>, nonce=<random>, sig=<hex>
//
// where sig = hex(HMAC-SHA256(key, METHOD "\n" PATH_WITH_QUERY "\n" ts "\n" nonce "\n"
// hex(SHA256(body)))). The key never travels. The agent checks the clock skew and nonce
// reuse itself; this file only computes and parses. OpenSSL does the hashing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cap::net {

inline constexpr std::string_view kAuthScheme = "CAP-HMAC-SHA256";

/// Lower-case hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);
/// HMAC-SHA256 of `data` under `key`: the 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);
/// Lower-case hex HMAC-SHA256 of `data` under `key`.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

/// The text that is signed: METHOD \n PATH_WITH_QUERY \n ts \n nonce \n hex(SHA256(body)).
std::string string_to_sign(std::string_view method, std::string_view path_with_query,
                           std::string_view body, int64_t ts, std::string_view nonce);
/// The hex signature of a request.
std::string request_signature(std::string_view key, std::string_view method,
                              std::string_view path_with_query, std::string_view body, int64_t ts,
                              std::string_view nonce);
/// The whole Authorization header value:
/// "CAP-HMAC-SHA256 ts=<ts>, nonce=<nonce>, sig=<hex>".
std::string sign_request(std::string_view key, std::string_view method,
                         std::string_view path_with_query, std::string_view body, int64_t ts,
                         std::string_view nonce);

/// 16 random bytes (OpenSSL RAND_bytes) as 32 lower-case hex characters.
std::string random_nonce();

/// Reads a shared management key from a file (trailing newlines and spaces dropped).
/// False with `error` naming the file when it cannot be read or is empty.
bool read_key_file(const std::string& path, std::string* key, std::string* error);

struct ParsedAuth {
  int64_t ts = 0;
  std::string nonce;
  std::string sig;  // lower-case hex, 64 characters
};
/// Parses an Authorization header value of the form above (fields in any order, spaces
/// after commas optional). False with a short `error` (never echoing the value) when the
/// scheme is wrong, a field is missing, repeated or unknown, ts is not canonical decimal
/// digits, the nonce is not 8-128 characters of [A-Za-z0-9_-], or sig is not 64 hex digits.
bool parse_auth_header(std::string_view value, ParsedAuth* out, std::string* error);

/// Compares in time that depends only on the lengths, not on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

/// Whether `auth` carries the right signature for this request under `key` (constant time).
/// Does not check the clock skew or nonce reuse.
bool verify_signature(std::string_view key, std::string_view method,
                      std::string_view path_with_query, std::string_view body,
                      const ParsedAuth& auth);

}  // namespace cap::net

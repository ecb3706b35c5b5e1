#include "net/signing.h"

#include <sodium.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace cap::net {
namespace {

std::string to_hex(const unsigned char* p, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string s(n * 2, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kHex[p[i] >> 4];
    s[2 * i + 1] = kHex[p[i] & 15];
  }
  return s;
}

bool is_hex_lower(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool is_nonce_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '_';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

const unsigned char* bytes(std::string_view s) {
  // Never null, even for an empty view (the primitives read no byte of it then).
  static const unsigned char kEmpty = 0;
  return s.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

// libsodium, which the agent loads anyway (the vault): hashing and signing with it leaves
// OpenSSL's algorithm providers unloaded in an agent that speaks no TLS and signs no AWS
// call, about 2 MB less resident memory.
void ready() {
  static const bool once = [] {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    return true;
  }();
  (void)once;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  ready();
  unsigned char md[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(md, bytes(data), data.size());
  return to_hex(md, sizeof md);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  ready();
  crypto_auth_hmacsha256_state st;
  unsigned char md[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_init(&st, bytes(key), key.size());
  crypto_auth_hmacsha256_update(&st, bytes(data), data.size());
  crypto_auth_hmacsha256_final(&st, md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  std::string raw = hmac_sha256(key, data);
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string string_to_sign(std::string_view method, std::string_view path_with_query,
                           std::string_view body, int64_t ts, std::string_view nonce) {
  std::string s;
  s.reserve(method.size() + path_with_query.size() + nonce.size() + 100);
  s.append(method);
  s.push_back('\n');
  s.append(path_with_query);
  s.push_back('\n');
  s.append(std::to_string(ts));
  s.push_back('\n');
  s.append(nonce);
  s.push_back('\n');
  s.append(sha256_hex(body));
  return s;
}

std::string request_signature(std::string_view key, std::string_view method,
                              std::string_view path_with_query, std::string_view body, int64_t ts,
                              std::string_view nonce) {
  return hmac_sha256_hex(key, string_to_sign(method, path_with_query, body, ts, nonce));
}

std::string sign_request(std::string_view key, std::string_view method,
                         std::string_view path_with_query, std::string_view body, int64_t ts,
                         std::string_view nonce) {
  std::string v(kAuthScheme);
  v.append(" ts=");
  v.append(std::to_string(ts));
  v.append(", nonce=");
  v.append(nonce);
  v.append(", sig=");
  v.append(request_signature(key, method, path_with_query, body, ts, nonce));
  return v;
}

std::string random_nonce() {
  unsigned char b[16];
  ready();
  randombytes_buf(b, sizeof b);
  return to_hex(b, sizeof b);
}

bool parse_auth_header(std::string_view value, ParsedAuth* out, std::string* error) {
  auto fail = [&](std::string e) {
    if (error) *error = std::move(e);
    return false;
  };
  value = trim(value);
  if (value.size() < kAuthScheme.size() || value.substr(0, kAuthScheme.size()) != kAuthScheme ||
      (value.size() > kAuthScheme.size() && value[kAuthScheme.size()] != ' '))
    return fail("the Authorization scheme is not CAP-HMAC-SHA256");
  std::string_view rest = value.substr(kAuthScheme.size());
  ParsedAuth a;
  bool have_ts = false, have_nonce = false, have_sig = false;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) return fail("empty field in the Authorization header");
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) return fail("a field of the Authorization header has no '='");
    std::string_view name = item.substr(0, eq), v = item.substr(eq + 1);
    if (name == "ts") {
      if (have_ts) return fail("ts appears twice");
      have_ts = true;
      if (v.empty() || v.size() > 18 || (v.size() > 1 && v[0] == '0'))
        return fail("ts is not a Unix time in seconds");
      for (char c : v)
        if (c < '0' || c > '9') return fail("ts is not a Unix time in seconds");
      std::from_chars(v.data(), v.data() + v.size(), a.ts);
    } else if (name == "nonce") {
      if (have_nonce) return fail("nonce appears twice");
      have_nonce = true;
      if (v.size() < 8 || v.size() > 128) return fail("nonce must be 8 to 128 characters");
      for (char c : v)
        if (!is_nonce_char(c)) return fail("nonce may hold only letters, digits, '-' and '_'");
      a.nonce = std::string(v);
    } else if (name == "sig") {
      if (have_sig) return fail("sig appears twice");
      have_sig = true;
      if (v.size() != 64 || !is_hex_lower(v)) return fail("sig must be 64 lower-case hex digits");
      a.sig = std::string(v);
    } else {
      return fail("unknown field in the Authorization header");
    }
  }
  if (!have_ts) return fail("the Authorization header has no ts");
  if (!have_nonce) return fail("the Authorization header has no nonce");
  if (!have_sig) return fail("the Authorization header has no sig");
  *out = std::move(a);
  return true;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool verify_signature(std::string_view key, std::string_view method,
                      std::string_view path_with_query, std::string_view body,
                      const ParsedAuth& auth) {
  return constant_time_equal(
      request_signature(key, method, path_with_query, body, auth.ts, auth.nonce), auth.sig);
}

bool read_key_file(const std::string& path, std::string* key, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read the key file " + path;
    return false;
  }
  std::string k((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!k.empty() && (k.back() == '\n' || k.back() == '\r' || k.back() == ' ')) k.pop_back();
  if (k.empty()) {
    *error = "the key file " + path + " is empty";
    return false;
  }
  *key = std::move(k);
  return true;
}

}  // namespace cap::net

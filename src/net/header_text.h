// Checks on HTTP header names and values shared by the server and the client, written for
// the request path: table lookups, no locale.
#pragma once

#include <array>
#include <string_view>

namespace cap::net {

namespace detail {
inline constexpr std::array<unsigned char, 256> kLower = [] {
  std::array<unsigned char, 256> a{};
  for (int c = 0; c < 256; ++c)
    a[c] = static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return a;
}();
inline constexpr std::array<bool, 256> kToken = [] {
  std::array<bool, 256> a{};
  for (int c = 'a'; c <= 'z'; ++c) a[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) a[c] = true;
  for (int c = '0'; c <= '9'; ++c) a[c] = true;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) a[c] = true;
  return a;
}();
}  // namespace detail

/// ASCII case-insensitive equality (header names, tokens).
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (detail::kLower[static_cast<unsigned char>(a[i])] !=
        detail::kLower[static_cast<unsigned char>(b[i])])
      return false;
  return true;
}

/// Whether `s` is a non-empty RFC 9110 token (a method, a header name).
inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!detail::kToken[static_cast<unsigned char>(c)]) return false;
  return true;
}

/// Whether `s` holds CR, LF or NUL (which would split or end a header line).
inline bool has_ctl(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= '\r' && (u == '\r' || u == '\n' || u == '\0')) return true;
  }
  return false;
}

}  // namespace cap::net

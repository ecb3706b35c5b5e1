// An allow-list of IPv4 and IPv6 networks (CAP_MGMT_ALLOW, DESIGN §5).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cap::net {

class CidrList {
 public:
  /// Everything is allowed until parse() says otherwise.
  CidrList() = default;

  /// Parses a comma list such as "10.0.0.0/8, 127.0.0.1/32, ::1/128". A bare address means
  /// /32 (IPv4) or /128 (IPv6); "all" or an empty list allows everything. Host bits below
  /// the prefix are ignored ("10.1.2.3/8" is 10.0.0.0/8). On a bad entry returns false with
  /// an error naming it, and leaves the list as it was.
  bool parse(std::string_view list, std::string* error);

  /// Whether `ip` (text, as HttpServer's remote_addr gives it) is inside one of the
  /// networks. IPv4-mapped IPv6 addresses match IPv4 networks. Text that is not an address
  /// is never allowed, unless everything is.
  bool allowed(std::string_view ip) const;

  bool allows_all() const { return all_; }
  size_t size() const { return nets_.size(); }

 private:
  struct Net {
    bool v6 = false;
    std::array<uint8_t, 16> addr{};  // IPv4 in the first 4 bytes
    int prefix = 0;
  };
  static bool contains(const Net& n, const std::array<uint8_t, 16>& a, bool v6);

  bool all_ = true;
  std::vector<Net> nets_;
};

}  // namespace cap::net

#include "net/cidr.h"

#include <arpa/inet.h>

#include <cstring>

namespace cap::net {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses an address; v6 tells which family. IPv4-mapped IPv6 becomes IPv4.
bool parse_ip(std::string_view text, std::array<uint8_t, 16>* out, bool* v6) {
  if (text.empty() || text.size() > 45) return false;
  char buf[64];
  memcpy(buf, text.data(), text.size());
  buf[text.size()] = 0;
  out->fill(0);
  if (inet_pton(AF_INET, buf, out->data()) == 1) {
    *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, buf, out->data()) == 1) {
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->data(), kMapped, 12) == 0) {
      memmove(out->data(), out->data() + 12, 4);
      memset(out->data() + 4, 0, 12);
      *v6 = false;
      return true;
    }
    *v6 = true;
    return true;
  }
  return false;
}

}  // namespace

bool CidrList::parse(std::string_view list, std::string* error) {
  auto fail = [&](std::string e) {
    if (error) *error = std::move(e);
    return false;
  };
  std::string_view all = trim(list);
  if (all.empty() || all == "all") {
    all_ = true;
    nets_.clear();
    return true;
  }
  std::vector<Net> nets;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (item.empty()) return fail("empty entry in the address list (two commas in a row?)");
    std::string quoted = "'";
    quoted.append(item);
    quoted.push_back('\'');
    if (item == "all") return fail("'all' cannot be combined with other entries");
    size_t slash = item.find('/');
    Net n;
    if (!parse_ip(trim(item.substr(0, slash)), &n.addr, &n.v6))
      return fail(quoted + " is not an IPv4 or IPv6 address or network");
    int max = n.v6 ? 128 : 32;
    n.prefix = max;
    if (slash != std::string_view::npos) {
      std::string_view p = trim(item.substr(slash + 1));
      if (p.find_first_of(" \t") != std::string_view::npos)
        return fail(quoted + ": entries are separated by commas");
      if (p.empty() || p.size() > 3) return fail(quoted + ": the prefix length is missing or bad");
      int v = 0;
      for (char c : p) {
        if (c < '0' || c > '9') return fail(quoted + ": the prefix length is not a number");
        v = v * 10 + (c - '0');
      }
      if (v > max)
        return fail(quoted + (n.v6 ? ": the prefix length must be 0 to 128"
                                   : ": the prefix length must be 0 to 32"));
      n.prefix = v;
    }
    nets.push_back(n);
  }
  all_ = false;
  nets_ = std::move(nets);
  return true;
}

bool CidrList::contains(const Net& n, const std::array<uint8_t, 16>& a, bool v6) {
  if (n.v6 != v6) return false;
  int bits = n.prefix;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : uint8_t(0xff << (8 - bits));
    if ((a[size_t(i)] & mask) != (n.addr[size_t(i)] & mask)) return false;
  }
  return true;
}

bool CidrList::allowed(std::string_view ip) const {
  if (all_) return true;
  std::array<uint8_t, 16> a;
  bool v6 = false;
  if (!parse_ip(trim(ip), &a, &v6)) return false;
  for (const Net& n : nets_)
    if (contains(n, a, v6)) return true;
  return false;
}

}  // namespace cap::net

// Who may command the agent (DESIGN §5): the CIDR allow list (CAP_MGMT_ALLOW, else 403),
// then the signature: `Authorization: CAP-HMAC-SHA256 ts=<unix s>, nonce=<random>,
// sig=<hex>` over METHOD, PATH_WITH_QUERY, ts, nonce and hex(SHA256(body)) with
// CAP_MGMT_KEY; a timestamp more than 300 s off, a nonce seen before, or a wrong signature
// gets 401. Without a key every command but GET /v1/health is refused (401).
//
// The nonce cache remembers each accepted nonce until its timestamp leaves the window, so
// a replay inside the window is caught and the cache stays bounded: when it is full of
// live nonces new commands are refused (503) rather than letting a replay through.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "net/cidr.h"

namespace cap::agent {

struct AuthVerdict {
  int status = 0;      // 0: allowed; else 401, 403 or 503
  std::string error;   // for the JSON answer
  std::string reason;  // for the log line (never the key or the signature)
};

class ManagementAuth {
 public:
  static constexpr int64_t kSkewSeconds = 300;
  static constexpr size_t kMaxNonces = 100000;

  /// `allow` is CAP_MGMT_ALLOW ("all" or a comma list of CIDRs). False with `error` when
  /// the list does not parse.
  bool configure(std::string key, std::string_view allow, std::string* error);

  /// Whether the peer may talk to the management port at all.
  AuthVerdict check_address(std::string_view remote_addr) const;
  /// Checks a command's signature (health needs none). `now_s`: the clock, for tests.
  AuthVerdict check_signature(std::string_view method, std::string_view target,
                              std::string_view authorization, std::string_view body, int64_t now_s);
  bool has_key() const { return !key_.empty(); }

 private:
  bool remember_nonce(const std::string& nonce, int64_t ts, int64_t now_s);

  std::string key_;
  net::CidrList allow_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> nonces_;  // nonce -> forget after (unix s)
  int64_t next_sweep_s_ = 0;
};

}  // namespace cap::agent

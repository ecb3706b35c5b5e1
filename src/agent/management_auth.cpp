#include "agent/management_auth.h"

#include "net/signing.h"

namespace cap::agent {

bool ManagementAuth::configure(std::string key, std::string_view allow, std::string* error) {
  key_ = std::move(key);
  return allow_.parse(allow, error);
}

AuthVerdict ManagementAuth::check_address(std::string_view remote_addr) const {
  if (allow_.allowed(remote_addr)) return {};
  return {403, "this address may not use the management API", "address outside CAP_MGMT_ALLOW"};
}

AuthVerdict ManagementAuth::check_signature(std::string_view method, std::string_view target,
                                            std::string_view authorization, std::string_view body,
                                            int64_t now_s) {
  if (key_.empty())
    return {401,
            "this agent has no management key (CAP_MGMT_KEY), so it refuses every command but "
            "GET /v1/health",
            "no management key"};
  if (authorization.empty())
    return {401, "the request carries no signature (Authorization: CAP-HMAC-SHA256 ...)",
            "no signature"};
  net::ParsedAuth auth;
  std::string why;
  if (!net::parse_auth_header(authorization, &auth, &why))
    return {401,
            "the Authorization header is not CAP-HMAC-SHA256 ts=<unix seconds>, nonce=<random>, "
            "sig=<hex>",
            "malformed Authorization header: " + why};
  if (auth.ts < now_s - kSkewSeconds || auth.ts > now_s + kSkewSeconds)
    return {401, "the request's timestamp is more than 300 s off the agent's clock",
            "timestamp outside the 300 s window (clock skew " + std::to_string(auth.ts - now_s) +
                " s)"};
  if (!net::verify_signature(key_, method, target, body, auth))
    return {401, "the request's signature does not match", "bad signature"};
  if (!remember_nonce(auth.nonce, auth.ts, now_s)) {
    if (nonces_.size() >= kMaxNonces)
      return {503, "too many management commands in the last 10 minutes; try again later",
              "nonce cache full"};
    return {401, "this request was seen before (nonce replayed)", "replayed nonce"};
  }
  return {};
}

bool ManagementAuth::remember_nonce(const std::string& nonce, int64_t ts, int64_t now_s) {
  std::lock_guard lock(mu_);
  if (now_s >= next_sweep_s_ || nonces_.size() >= kMaxNonces) {
    std::erase_if(nonces_, [&](const auto& e) { return e.second < now_s; });
    next_sweep_s_ = now_s + 10;
  }
  // A nonce is kept until its timestamp can no longer pass the window check.
  auto [it, fresh] = nonces_.try_emplace(nonce, ts + kSkewSeconds + 1);
  if (!fresh) return false;
  if (nonces_.size() > kMaxNonces) {
    nonces_.erase(it);
    return false;
  }
  return true;
}

}  // namespace cap::agent

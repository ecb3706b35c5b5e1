// AWS credentials for signing (net/sigv4.h), found the way the AWS SDKs find them:
//
//  1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN;
//  2. the shared credentials file: AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
//     profile AWS_PROFILE or "default" (aws_access_key_id, aws_secret_access_key,
//     aws_session_token);
//  3. the container credentials endpoint (the ECS task role):
//     AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on http://169.254.170.2) or
//     AWS_CONTAINER_CREDENTIALS_FULL_URI (loopback http, the ECS/EKS link-local addresses,
//     or any https URL), with the header Authorization: AWS_CONTAINER_AUTHORIZATION_TOKEN or
//     the content of AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
//
// Temporary credentials are cached and fetched again when less than five minutes remain
// before their Expiration. Secrets never reach an error message.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "cap/services.h"
#include "net/sigv4.h"

namespace cap::store {

/// Reads an environment variable; std::nullopt when unset. Injectable for tests.
using GetEnv = std::function<std::optional<std::string>(std::string_view name)>;
/// The process environment (getenv).
GetEnv process_environment();

class AwsCredentialsProvider {
 public:
  /// `http` performs the calls to the container endpoint (it must outlive the provider);
  /// `now_ms` gives the wall clock in Unix milliseconds (injectable for tests).
  AwsCredentialsProvider(HttpClient& http, GetEnv env = process_environment(),
                         std::function<int64_t()> now_ms = {});

  /// Current credentials. False with `error` (naming the source that failed and why, or
  /// saying that no source is configured). Thread-safe.
  bool get(net::sigv4::Credentials* out, std::string* error);
  /// Where the last credentials came from ("environment", "shared credentials file PATH
  /// (profile P)", "container credentials endpoint"), for logs; "" before the first get.
  std::string source() const;

  /// Refresh this long before an expiry.
  static constexpr int64_t kRefreshMarginMs = 5 * 60 * 1000;

 private:
  bool from_shared_file(net::sigv4::Credentials* out, std::string* error, bool* found);
  bool from_container(net::sigv4::Credentials* out, int64_t* expires_ms, std::string* error,
                      bool* found);

  HttpClient& http_;
  GetEnv env_;
  std::function<int64_t()> now_ms_;
  mutable std::mutex mu_;
  net::sigv4::Credentials cached_;
  int64_t expires_ms_ = 0;  // 0: cached_ never expires (or nothing cached yet)
  bool have_ = false;
  std::string source_;
};

/// Parses an ISO 8601 UTC time ("2024-05-01T12:00:00Z", fractions allowed) to Unix ms.
/// False when it does not parse.
bool parse_iso8601_ms(std::string_view text, int64_t* ms);

}  // namespace cap::store

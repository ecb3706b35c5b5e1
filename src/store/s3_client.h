// A small S3 client on the project's HTTP client (net/http_client.h, TLS verified) and the
// Signature V4 signer (net/sigv4.h): get, put (multipart for large objects), list.
//
// Addressing: with an endpoint override (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL) the
// client uses path-style URLs (ENDPOINT/BUCKET/KEY), as S3-compatible stores want; without
// one, virtual-hosted URLs (https://BUCKET.s3.REGION.amazonaws.com/KEY), or path-style on
// s3.REGION.amazonaws.com for bucket names with dots. Region: AWS_REGION, else
// AWS_DEFAULT_REGION, else us-east-1.
//
// Failed calls are retried with exponential backoff (0.2 s, 0.4 s, 0.8 s...) when the
// store answers 500, 502, 503 or 504, signals throttling (SlowDown, Throttling,
// RequestLimitExceeded...) or cannot be reached.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/http_client.h"
#include "store/aws_credentials.h"

namespace cap::store {

struct S3Options {
  std::string region = "us-east-1";
  /// "" for AWS itself; else scheme://host[:port] of an S3-compatible store (path-style).
  std::string endpoint;
  size_t multipart_threshold = 16u << 20;  // objects this large or larger go in parts
  size_t part_size = 8u << 20;             // at least 5 MiB (S3's minimum but for the last)
  int attempts = 5;                        // tries per request (1 + retries)
  int timeout_ms = 60000;                  // per request
  std::string ca_file;                     // AWS_CA_BUNDLE: extra trust anchors

  /// Region, endpoint and CA bundle from the environment (see above); the part size can be
  /// set with CAP_S3_PART_SIZE_MB (5 or more), the threshold with CAP_S3_MULTIPART_MB.
  /// False with `error` when a value is not valid.
  static bool from_environment(const GetEnv& env, S3Options* out, std::string* error);
};

/// The kind of a failure, so callers can say what went wrong in one word.
enum class S3Failure { None, NotFound, AccessDenied, Unreachable, Credentials, Other };

struct S3Object {
  std::string key;
  uint64_t size = 0;
  std::string last_modified;  // as S3 gives it (ISO 8601)
};

/// Called with (bytes done, bytes in all) during long transfers.
using Progress = std::function<void(uint64_t done, uint64_t total)>;

class S3Client {
 public:
  /// `credentials` must outlive the client. The client makes its own HTTP client pool
  /// (from http_options(): no automatic retries, large replies, the CA bundle).
  S3Client(S3Options options, AwsCredentialsProvider& credentials);
  /// Uses `http` (made with http_options(), outliving the client) instead: one pool can serve
  /// the credential endpoint and S3, so a process sets up TLS once.
  S3Client(S3Options options, AwsCredentialsProvider& credentials, net::HttpClientPool& http);
  /// The HTTP client options an S3 client needs.
  static net::ClientOptions http_options(const S3Options& options);
  ~S3Client();

  /// Reads an object. False with `error` (naming the cause: no such bucket or key, access
  /// denied, unreachable endpoint, the store's own code and message) and `kind`.
  bool get(const std::string& bucket, const std::string& key, std::string* data, std::string* error,
           S3Failure* kind = nullptr);
  /// Writes an object; with data of multipart_threshold or more, as a multipart upload
  /// (aborted on failure). False with `error` and `kind`.
  bool put(const std::string& bucket, const std::string& key, std::string_view data,
           std::string* error, S3Failure* kind = nullptr, const Progress& progress = {},
           std::string_view content_type = "application/zip");
  /// Lists the objects whose keys start with `prefix` (all pages), sorted by key.
  bool list(const std::string& bucket, const std::string& prefix, std::vector<S3Object>* out,
            std::string* error, S3Failure* kind = nullptr);

  const S3Options& options() const { return options_; }

 private:
  struct Call;
  struct Result;
  Result send(const Call& call);
  bool put_multipart(const std::string& bucket, const std::string& key, std::string_view data,
                     std::string_view content_type, std::string* error, S3Failure* kind,
                     const Progress& progress);

  S3Options options_;
  AwsCredentialsProvider& credentials_;
  std::unique_ptr<net::HttpClientPool> own_http_;
  net::HttpClientPool* http_;
};

/// The text of the first <tag>...</tag> in `xml`, entities decoded ("" when absent).
std::string xml_text(std::string_view xml, std::string_view tag);

}  // namespace cap::store

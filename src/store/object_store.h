// Objects named by URL: `s3://BUCKET/KEY` (S3 or an S3-compatible store, see s3_client.h)
// and `file:///ABSOLUTE/PATH` (a local file). Used for snapshots (the agent's
// S3_GOLD_MASTER, capctl snapshot ...).
//
// Keys and paths are taken literally: "s3://b/a b+c.zip" names the key "a b+c.zip" (no
// percent-decoding), as the AWS CLI does.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/s3_client.h"

namespace cap::store {

struct ObjectUrl {
  enum class Kind { S3, File };
  Kind kind = Kind::File;
  std::string bucket;  // S3
  std::string key;     // S3: may be "" or end with '/' (a prefix)
  std::string path;    // File: absolute
  std::string text;    // the URL as given

  /// The folder-like part: "s3://b/snaps/" for s3://b/snaps/x.zip, "file:///d/" for
  /// file:///d/x.zip.
  std::string parent() const;
  /// The URL of `name` inside parent().
  std::string sibling(std::string_view name) const;
  /// Whether the URL names a prefix or folder (ends with '/', or an S3 URL without key).
  bool is_prefix() const;
};

/// Parses `url`. False with `error` saying what a valid URL looks like. S3 bucket names:
/// 3-63 characters of a-z 0-9 . -; keys at most 1024 bytes; file URLs need an absolute path
/// ("file:///var/snap.zip").
bool parse_object_url(std::string_view url, ObjectUrl* out, std::string* error);

struct ObjectInfo {
  std::string url;
  uint64_t size = 0;
  std::string modified;  // ISO 8601 UTC
};

/// Reads, writes and lists objects. S3 calls need credentials (aws_credentials.h) and the
/// S3 options from the environment; the S3 client is made on first use. Errors name the URL
/// and the cause. Not thread-safe.
class ObjectStore {
 public:
  explicit ObjectStore(GetEnv env = process_environment());
  ~ObjectStore();

  /// Reads the whole object. `kind` (optional) says why it failed.
  bool get(const ObjectUrl& url, std::string* data, std::string* error, S3Failure* kind = nullptr);
  /// Writes the whole object (file: crash-safely, through a temporary file and a rename).
  bool put(const ObjectUrl& url, std::string_view data, std::string* error,
           const Progress& progress = {});
  /// The objects under a prefix or folder URL (or the one object a URL names, when it
  /// exists), sorted.
  bool list(const ObjectUrl& url, std::vector<ObjectInfo>* out, std::string* error);

 private:
  bool s3(S3Client** client, std::string* error);

  GetEnv env_;
  std::unique_ptr<net::HttpClientPool> http_;  // for the credential endpoint and S3
  std::unique_ptr<AwsCredentialsProvider> credentials_;
  std::unique_ptr<S3Client> s3_;
};

}  // namespace cap::store

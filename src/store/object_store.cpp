#include "store/object_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

namespace cap::store {

namespace fs = std::filesystem;

namespace {

bool valid_bucket(std::string_view b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-')) return false;
  return b.front() != '.' && b.front() != '-' && b.back() != '.' && b.back() != '-';
}

std::string iso_from_file_time(fs::file_time_type t) {
  auto sys = std::chrono::file_clock::to_sys(t);
  std::time_t secs = std::chrono::system_clock::to_time_t(sys);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Writes `data` to `path` through a temporary file in the same folder, fsync and rename.
bool write_file_atomically(const std::string& path, std::string_view data, std::string* error) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "cannot write " + tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += size_t(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = "cannot write " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace

std::string ObjectUrl::parent() const {
  if (kind == Kind::S3) {
    size_t slash = key.rfind('/');
    return "s3://" + bucket + "/" + (slash == std::string::npos ? "" : key.substr(0, slash + 1));
  }
  size_t slash = path.rfind('/');
  return "file://" + path.substr(0, slash + 1);
}

std::string ObjectUrl::sibling(std::string_view name) const { return parent() + std::string(name); }

bool ObjectUrl::is_prefix() const {
  if (kind == Kind::S3) return key.empty() || key.back() == '/';
  return !path.empty() && path.back() == '/';
}

bool parse_object_url(std::string_view url, ObjectUrl* out, std::string* error) {
  ObjectUrl u;
  u.text = std::string(url);
  const std::string expected = " (expected s3://BUCKET/KEY or file:///ABSOLUTE/PATH)";
  if (url.starts_with("s3://")) {
    std::string_view rest = url.substr(5);
    size_t slash = rest.find('/');
    u.kind = ObjectUrl::Kind::S3;
    u.bucket = std::string(rest.substr(0, slash));
    u.key = slash == std::string_view::npos ? "" : std::string(rest.substr(slash + 1));
    if (!valid_bucket(u.bucket)) {
      *error = "'" + u.text + "': '" + u.bucket +
               "' is not a valid S3 bucket name (3-63 characters of a-z, 0-9, '.', '-')";
      return false;
    }
    if (u.key.size() > 1024) {
      *error = "'" + u.text + "': an S3 key has at most 1024 bytes";
      return false;
    }
    for (char c : u.key)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        *error = "'" + u.text + "': the key holds control characters";
        return false;
      }
  } else if (url.starts_with("file://")) {
    u.kind = ObjectUrl::Kind::File;
    u.path = std::string(url.substr(7));
    if (u.path.empty() || u.path[0] != '/') {
      *error = "'" + u.text + "': a file URL needs an absolute path" + expected;
      return false;
    }
    if (u.path.find('\0') != std::string::npos) {
      *error = "'" + u.text + "': the path holds a NUL byte";
      return false;
    }
  } else {
    *error = "'" + u.text + "' is not a snapshot URL" + expected;
    return false;
  }
  *out = std::move(u);
  return true;
}

ObjectStore::ObjectStore(GetEnv env) : env_(std::move(env)) {}
ObjectStore::~ObjectStore() = default;

bool ObjectStore::s3(S3Client** client, std::string* error) {
  if (!s3_) {
    S3Options options;
    if (!S3Options::from_environment(env_, &options, error)) return false;
    http_ = std::make_unique<net::HttpClientPool>(S3Client::http_options(options));
    credentials_ = std::make_unique<AwsCredentialsProvider>(*http_, env_);
    s3_ = std::make_unique<S3Client>(options, *credentials_, *http_);
  }
  *client = s3_.get();
  return true;
}

bool ObjectStore::get(const ObjectUrl& url, std::string* data, std::string* error,
                      S3Failure* kind) {
  if (kind) *kind = S3Failure::None;
  if (url.kind == ObjectUrl::Kind::File) {
    std::error_code ec;
    if (!fs::exists(url.path, ec)) {
      if (kind) *kind = S3Failure::NotFound;
      *error = url.text + ": no such file";
      return false;
    }
    std::ifstream in(url.path, std::ios::binary);
    if (!in || fs::is_directory(url.path, ec)) {
      if (kind) *kind = S3Failure::AccessDenied;
      *error = url.text + ": cannot be read (" + std::strerror(errno) + ")";
      return false;
    }
    data->resize(fs::file_size(url.path, ec));
    in.read(data->data(), std::streamsize(data->size()));
    if (ec || in.bad() || in.gcount() != std::streamsize(data->size())) {
      if (kind) *kind = S3Failure::Other;
      *error = url.text + ": read error";
      return false;
    }
    return true;
  }
  if (url.is_prefix()) {
    if (kind) *kind = S3Failure::Other;
    *error = url.text + ": names a prefix, not an object";
    return false;
  }
  S3Client* client = nullptr;
  std::string why;
  if (!s3(&client, &why) || !client->get(url.bucket, url.key, data, &why, kind)) {
    *error = url.text + ": " + why;
    return false;
  }
  return true;
}

bool ObjectStore::put(const ObjectUrl& url, std::string_view data, std::string* error,
                      const Progress& progress) {
  if (url.is_prefix()) {
    *error = url.text + ": names a prefix or folder, not an object";
    return false;
  }
  if (url.kind == ObjectUrl::Kind::File) {
    std::string why;
    if (!write_file_atomically(url.path, data, &why)) {
      *error = url.text + ": " + why;
      return false;
    }
    if (progress) progress(data.size(), data.size());
    return true;
  }
  S3Client* client = nullptr;
  std::string why;
  if (!s3(&client, &why) || !client->put(url.bucket, url.key, data, &why, nullptr, progress)) {
    *error = url.text + ": " + why;
    return false;
  }
  return true;
}

bool ObjectStore::list(const ObjectUrl& url, std::vector<ObjectInfo>* out, std::string* error) {
  out->clear();
  if (url.kind == ObjectUrl::Kind::File) {
    std::error_code ec;
    fs::path dir = url.is_prefix() ? fs::path(url.path) : fs::path(url.path).parent_path();
    std::string name_prefix = url.is_prefix() ? "" : fs::path(url.path).filename().string();
    if (!fs::is_directory(dir, ec)) {
      *error = url.text + ": no such folder " + dir.string();
      return false;
    }
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (!e.is_regular_file()) continue;
      std::string name = e.path().filename().string();
      if (!name.starts_with(name_prefix)) continue;
      ObjectInfo o;
      o.url = "file://" + e.path().string();
      o.size = e.file_size(ec);
      o.modified = iso_from_file_time(e.last_write_time(ec));
      out->push_back(std::move(o));
    }
    if (ec) {
      *error = url.text + ": " + ec.message();
      return false;
    }
  } else {
    S3Client* client = nullptr;
    std::string why;
    std::vector<S3Object> objects;
    if (!s3(&client, &why) || !client->list(url.bucket, url.key, &objects, &why)) {
      *error = url.text + ": " + why;
      return false;
    }
    for (auto& o : objects)
      out->push_back(ObjectInfo{"s3://" + url.bucket + "/" + o.key, o.size, o.last_modified});
  }
  std::sort(out->begin(), out->end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.url < b.url; });
  return true;
}

}  // namespace cap::store

#include "cap/services.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>

namespace cap {

const char* log_level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

int64_t SystemClock::now_ms() const {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void StderrLogger::log(LogLevel level, std::string_view text) {
  if (level < min_) return;
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::cerr << log_level_name(level) << ": " << text << '\n';
}

void MemoryVault::put(std::string name, std::map<std::string, std::string> fields) {
  creds_[std::move(name)] = std::move(fields);
}

std::optional<std::string> MemoryVault::get(std::string_view name, std::string_view field) const {
  auto it = creds_.find(name);
  if (it == creds_.end()) return std::nullopt;
  auto f = it->second.find(std::string(field));
  if (f == it->second.end()) return std::nullopt;
  return f->second;
}

bool safe_relative_path(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.front() == '\\') return false;
  if (path.find('\0') != std::string_view::npos) return false;
  if (path.find('\\') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..") return false;
    start = end + 1;
  }
  return true;
}

namespace {

namespace fs = std::filesystem;

std::string refused(std::string_view path, std::string_view why) {
  return "path '" + std::string(path) + "' is refused: " + std::string(why);
}

/// True when `p` is `root` or below it (both canonical).
bool inside(const fs::path& p, const fs::path& root) {
  std::string a = p.string(), r = root.string();
  if (a == r) return true;
  if (!r.empty() && r.back() != '/') r += '/';
  return a.rfind(r, 0) == 0;
}

/// Resolves `path` under `root`: the canonical root and the full path with every existing
/// link followed. Refused when the path is not relative or leads outside the root.
FileStatus resolve(const std::string& root_text, std::string_view path, bool allow_empty,
                   fs::path* root, fs::path* full, std::string* error) {
  if (!(allow_empty && path.empty()) && !safe_relative_path(path)) {
    *error = refused(path, "paths must be relative to the shared folder, without '..'");
    return FileStatus::Refused;
  }
  std::error_code ec;
  fs::create_directories(root_text, ec);
  *root = fs::canonical(root_text, ec);
  if (ec) {
    *error = "the shared folder cannot be used: " + ec.message();
    return FileStatus::Failed;
  }
  // The folder part resolved with every link followed; the last part only when it is a
  // link itself, so a file being replaced (renamed over) at this moment is never missed.
  fs::path joined = (*root / std::string(path)).lexically_normal();
  fs::path name = joined.filename();
  fs::path folder = name.empty() ? joined : joined.parent_path();
  *full = fs::weakly_canonical(folder, ec);
  if (!ec && !name.empty()) {
    *full /= name;
    std::error_code missing;  // a file that does not exist yet is no link
    if (fs::is_symlink(fs::symlink_status(*full, missing))) *full = fs::weakly_canonical(*full, ec);
  }
  if (ec) {
    *error = "cannot resolve '" + std::string(path) + "': " + ec.message();
    return FileStatus::Failed;
  }
  if (!inside(*full, *root)) {
    *error = refused(path, "it leads outside the shared folder through a link");
    return FileStatus::Refused;
  }
  return FileStatus::Ok;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

FileStatus LocalFiles::read(std::string_view path, size_t max_bytes, std::string* out,
                            std::string* error) {
  fs::path root, full;
  if (auto st = resolve(root_, path, false, &root, &full, error); st != FileStatus::Ok) return st;
  int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    *error = errno == ENOENT ? "no file '" + std::string(path) + "' in the shared folder"
                             : "cannot read '" + std::string(path) + "': " + std::strerror(errno);
    return errno == ENOENT ? FileStatus::NotFound : FileStatus::Failed;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    *error = "'" + std::string(path) + "' is not a file";
    return FileStatus::Failed;
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    *error = "'" + std::string(path) + "' holds " + std::to_string(st.st_size) +
             " bytes, more than the limit of " + std::to_string(max_bytes);
    return FileStatus::TooLarge;
  }
  out->clear();
  out->reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "cannot read '" + std::string(path) + "': " + std::strerror(errno);
      ::close(fd);
      return FileStatus::Failed;
    }
    if (n == 0) break;
    if (out->size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      *error = "'" + std::string(path) + "' grew past the limit of " + std::to_string(max_bytes) +
               " bytes while being read";
      return FileStatus::TooLarge;
    }
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return FileStatus::Ok;
}

FileStatus LocalFiles::write(std::string_view path, std::string_view data, bool append,
                             std::string* error) {
  fs::path root, full;
  if (auto st = resolve(root_, path, false, &root, &full, error); st != FileStatus::Ok) return st;
  std::error_code ec;
  fs::create_directories(full.parent_path(), ec);
  if (ec || !inside(fs::canonical(full.parent_path(), ec), root)) {
    *error = "cannot create the folder of '" + std::string(path) + "'" +
             (ec ? ": " + ec.message() : std::string());
    return FileStatus::Failed;
  }
  if (fs::is_directory(full, ec)) {
    *error = "'" + std::string(path) + "' is a folder";
    return FileStatus::Failed;
  }
  if (append) {
    int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
      *error = "cannot open '" + std::string(path) + "': " + std::strerror(errno);
      return FileStatus::Failed;
    }
    // POSIX record locks (fcntl) are carried by NFSv4 and EFS to every host; flock is not.
    struct flock lk {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    int rc;
    while ((rc = ::fcntl(fd, F_SETLKW, &lk)) != 0 && errno == EINTR) {
    }
    bool ok = rc == 0 && ::lseek(fd, 0, SEEK_END) >= 0 && write_all(fd, data) && ::fsync(fd) == 0;
    int saved = errno;
    ::close(fd);  // releases the lock
    if (!ok) {
      *error = "cannot append to '" + std::string(path) + "': " + std::strerror(saved);
      return FileStatus::Failed;
    }
    return FileStatus::Ok;
  }
  std::string tmp =
      (full.parent_path() / ("." + full.filename().string() + ".tmp-XXXXXX")).string();
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    *error = "cannot write '" + std::string(path) + "': " + std::strerror(errno);
    return FileStatus::Failed;
  }
  ::fchmod(fd, 0644);
  bool ok = write_all(fd, data) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), full.c_str()) != 0) {
    if (ok) saved = errno;
    ::unlink(tmp.c_str());
    *error = "cannot write '" + std::string(path) + "': " + std::strerror(saved);
    return FileStatus::Failed;
  }
  return FileStatus::Ok;
}

FileStatus LocalFiles::list(std::string_view path, std::vector<FileEntry>* out,
                            std::string* error) {
  fs::path root, full;
  if (auto st = resolve(root_, path, true, &root, &full, error); st != FileStatus::Ok) return st;
  std::error_code ec;
  if (!fs::exists(full, ec)) {
    *error = "no folder '" + std::string(path) + "' in the shared folder";
    return FileStatus::NotFound;
  }
  if (!fs::is_directory(full, ec)) {
    *error = "'" + std::string(path) + "' is not a folder";
    return FileStatus::Failed;
  }
  out->clear();
  for (fs::directory_iterator it(full, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.front() == '.' && name.find(".tmp-") != std::string::npos) continue;  // a write
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    FileEntry e;
    e.name = std::move(name);
    e.directory = S_ISDIR(st.st_mode);
    e.size = e.directory ? 0 : static_cast<int64_t>(st.st_size);
    e.modified_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
    out->push_back(std::move(e));
  }
  if (ec) {
    *error = "cannot list '" + std::string(path) + "': " + ec.message();
    return FileStatus::Failed;
  }
  std::sort(out->begin(), out->end(),
            [](const FileEntry& a, const FileEntry& b) { return a.name < b.name; });
  return FileStatus::Ok;
}

}  // namespace cap

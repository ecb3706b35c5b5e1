#include "agent/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

namespace cap::agent {

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

/// Closes a file descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool fsync_dir(const std::string& dir, std::string* error) {
  Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0 || ::fsync(d.fd) != 0) {
    *error = "cannot sync folder " + dir + ": " + errno_text();
    return false;
  }
  return true;
}

}  // namespace

bool write_file_durably(const std::string& path, std::string_view data, std::string* error,
                        unsigned mode) {
  fs::path target(path);
  std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  std::random_device rd;
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)};
    if (f.fd < 0) {
      *error = "cannot create " + tmp + ": " + errno_text();
      return false;
    }
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(f.fd, data.data() + off, data.size() - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        *error = "cannot write " + tmp + ": " + errno_text();
        ::unlink(tmp.c_str());
        return false;
      }
      off += static_cast<size_t>(n);
    }
    if (::fchmod(f.fd, mode) != 0 || ::fsync(f.fd) != 0) {
      *error = "cannot sync " + tmp + ": " + errno_text();
      ::unlink(tmp.c_str());
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = "cannot rename " + tmp + " to " + path + ": " + errno_text();
    ::unlink(tmp.c_str());
    return false;
  }
  return fsync_dir(dir, error);
}

bool read_whole_file(const std::string& path, std::string* out, std::string* error) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    *error = "cannot read " + path + ": " + errno_text();
    return false;
  }
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = "cannot read " + path + ": " + errno_text();
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  return true;
}

bool ensure_dir(const std::string& dir, std::string* error, unsigned mode) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return true;
  fs::create_directories(dir, ec);
  if (ec) {
    *error = "cannot create folder " + dir + ": " + ec.message();
    return false;
  }
  ::chmod(dir.c_str(), mode);
  return true;
}

std::string set_aside_as_corrupt(const std::string& path) {
  std::error_code ec;
  std::string target = path + ".corrupt";
  for (int i = 1; fs::exists(target, ec) && i < 1000; ++i)
    target = path + ".corrupt." + std::to_string(i);
  fs::rename(path, target, ec);
  return ec ? std::string() : target;
}

}  // namespace cap::agent

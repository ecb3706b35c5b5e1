#include "agent/log_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "agent/durable_file.h"

namespace cap::agent {

namespace fs = std::filesystem;

bool valid_log_file_name(std::string_view name) {
  // agent-YYYY-MM-DD.log
  constexpr std::string_view kPrefix = "agent-", kSuffix = ".log";
  if (name.size() != kPrefix.size() + 10 + kSuffix.size()) return false;
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  if (name.substr(name.size() - kSuffix.size()) != kSuffix) return false;
  std::string_view date = name.substr(kPrefix.size(), 10);
  for (size_t i = 0; i < date.size(); ++i) {
    bool dash = i == 4 || i == 7;
    if (dash ? date[i] != '-' : !(date[i] >= '0' && date[i] <= '9')) return false;
  }
  return true;
}

std::vector<LogFileInfo> list_log_files(const std::string& dir) {
  std::vector<LogFileInfo> files;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!valid_log_file_name(name) || !it->is_regular_file(ec)) continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0) continue;
    files.push_back(
        LogFileInfo{name, static_cast<uint64_t>(st.st_size),
                    static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000});
  }
  // The date in the name sorts as text.
  std::sort(files.begin(), files.end(),
            [](const LogFileInfo& a, const LogFileInfo& b) { return a.name < b.name; });
  return files;
}

bool read_log_tail(const std::string& dir, std::string_view name, size_t lines, std::string* out,
                   std::string* error, bool* not_found) {
  *not_found = false;
  if (!valid_log_file_name(name)) {
    *error = "'" + std::string(name) + "' is not a log file name (agent-YYYY-MM-DD.log)";
    *not_found = true;
    return false;
  }
  std::string path = dir + "/" + std::string(name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    *error = "no log file " + std::string(name);
    *not_found = true;
    return false;
  }
  struct stat st {};
  ::fstat(fd, &st);
  // Reads backwards in blocks until enough line breaks are seen, so a tail of a large file
  // costs only what it returns.
  off_t end = st.st_size;
  off_t pos = end;
  std::string data;
  constexpr off_t kBlock = 64 * 1024;
  constexpr size_t kMaxBytes = 64u << 20;  // answers stay bounded
  size_t newlines = 0;
  while (pos > 0 && (lines == 0 || newlines <= lines) && data.size() < kMaxBytes) {
    off_t start = std::max<off_t>(0, pos - kBlock);
    std::string block(static_cast<size_t>(pos - start), '\0');
    ssize_t n = ::pread(fd, block.data(), block.size(), start);
    if (n <= 0) break;
    block.resize(static_cast<size_t>(n));
    newlines += static_cast<size_t>(std::count(block.begin(), block.end(), '\n'));
    data.insert(0, block);
    pos = start;
  }
  ::close(fd);
  if (lines > 0) {
    // Keep the last `lines` lines (the final line break does not start a new line).
    size_t count = 0;
    size_t i = data.size();
    if (i > 0 && data[i - 1] == '\n') --i;
    while (i > 0) {
      if (data[i - 1] == '\n' && ++count == lines) break;
      --i;
    }
    data.erase(0, i);
  }
  *out = std::move(data);
  return true;
}

void prune_log_files(const std::string& dir, size_t keep) {
  auto files = list_log_files(dir);
  if (files.size() <= keep) return;
  for (size_t i = 0; i + keep < files.size(); ++i) {
    std::error_code ec;
    fs::remove(dir + "/" + files[i].name, ec);
  }
}

}  // namespace cap::agent

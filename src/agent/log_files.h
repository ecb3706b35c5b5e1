// The date-stamped log files in CAP_HOME/logs: listing, reading the end of one, retention.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cap::agent {

struct LogFileInfo {
  std::string name;  // "agent-2024-05-01.log"
  uint64_t size = 0;
  int64_t modified_ms = 0;
};

/// The log files, oldest first.
std::vector<LogFileInfo> list_log_files(const std::string& dir);
/// Whether `name` is a log file name this agent writes (agent-YYYY-MM-DD.log): no path,
/// no "..", nothing else.
bool valid_log_file_name(std::string_view name);
/// The last `lines` lines of log file `name` (0: the whole file). False with `error` when
/// the name is not a log file name or the file cannot be read; `not_found` tells which.
bool read_log_tail(const std::string& dir, std::string_view name, size_t lines, std::string* out,
                   std::string* error, bool* not_found);
/// Deletes the oldest log files beyond the newest `keep`.
void prune_log_files(const std::string& dir, size_t keep);

}  // namespace cap::agent

#include "cap/services.h"

#include <chrono>
#include <cstdio>
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

bool LocalFiles::read(std::string_view path, std::string* out, std::string* error) {
  if (!safe_relative_path(path)) {
    *error = "path '" + std::string(path) + "' must be relative and stay inside the shared folder";
    return false;
  }
  std::ifstream in(root_ + "/" + std::string(path), std::ios::binary);
  if (!in) {
    *error = "cannot read '" + std::string(path) + "': no such file";
    return false;
  }
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

bool LocalFiles::write(std::string_view path, std::string_view data, bool append,
                       std::string* error) {
  if (!safe_relative_path(path)) {
    *error = "path '" + std::string(path) + "' must be relative and stay inside the shared folder";
    return false;
  }
  std::filesystem::path full = std::filesystem::path(root_) / std::string(path);
  std::error_code ec;
  std::filesystem::create_directories(full.parent_path(), ec);
  std::ofstream out(full, append ? std::ios::binary | std::ios::app : std::ios::binary);
  if (!out || !out.write(data.data(), static_cast<std::streamsize>(data.size()))) {
    *error = "cannot write '" + std::string(path) + "'";
    return false;
  }
  return true;
}

}  // namespace cap

// Host services: the only way a rule reaches the world outside its variables.
//
// The agent, capctl and the tests each hand the engine their own implementations, so one
// rule set runs unchanged in all three. Every service may be called from any thread at
// the same time; implementations are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cap/value.h"

namespace cap {

enum class LogLevel { Debug, Info, Warn, Error };
const char* log_level_name(LogLevel l);

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log(LogLevel level, std::string_view text) = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  /// Milliseconds since the Unix epoch.
  virtual int64_t now_ms() const = 0;
};

/// Named credentials. Values never reach logs, errors or responses.
class Vault {
 public:
  virtual ~Vault() = default;
  /// The field of credential `name` ("" for a credential that is a single secret).
  virtual std::optional<std::string> get(std::string_view name, std::string_view field) const = 0;
};

/// A request body pulled piece by piece (a proxied upload), instead of HttpCall::body.
class BodySource {
 public:
  virtual ~BodySource() = default;
  /// `piece` holds the next bytes (possibly empty); `end` is true once the body is complete
  /// or failed; `error` is non-empty on failure. `got` runs once, on any thread.
  using Got = std::function<void(std::string piece, bool end, std::string error)>;
  /// Called again only after `got` ran without reporting the end.
  virtual void read(Got got) = 0;
};

struct HttpCall {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int timeout_ms = 10000;
  /// When set, the body comes from here (and `body` is ignored): sent with Content-Length
  /// when `body_length` >= 0 (the source must then give exactly that many bytes), else
  /// chunked. Such a call is never retried once the body started, and `timeout_ms` bounds
  /// each piece (reading and sending it) and then the wait for the answer, not the call.
  std::shared_ptr<BodySource> body_source;
  int64_t body_length = -1;
};
struct HttpReply {
  int status = 0;  // 0 when no answer came; `error` says why
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;
  bool timed_out = false;
};
class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual HttpReply call(const HttpCall& call) = 0;
};

/// One statement for a SqlService. The views must stay valid for the call.
struct SqlCall {
  std::string_view database;   // the name in cap.json `databases` (errors and metrics use it)
  std::string_view url;        // its resolved address: postgresql://, jdbc:postgresql://, sqlite://
  std::string_view sql;        // with `?` placeholders
  const List* args = nullptr;  // bound to the placeholders in order, never spliced into `sql`
  size_t max_rows = 1000;      // rows past this are not returned; SqlResult::truncated says so
  int timeout_ms = 10000;      // for the whole call, waiting for a connection included
};
struct SqlResult {
  bool ok = false;
  std::string error;  // why it failed; never holds a password
  bool timed_out = false;
  List rows;               // each a Map of column name to value
  bool truncated = false;  // more rows than max_rows came back
  int64_t affected = 0;    // rows changed by INSERT, UPDATE, DELETE
};
class SqlService {
 public:
  virtual ~SqlService() = default;
  /// Runs one statement. Blocks the calling thread until it is done or timed out: callers
  /// are rules with RuleSpec::may_wait, which hosts run off their event loops.
  virtual SqlResult run(const SqlCall& call) = 0;
};

/// One entry of a folder listing.
struct FileEntry {
  std::string name;
  bool directory = false;
  int64_t size = 0;
  int64_t modified_ms = 0;
};

/// Files under the shared folder. Paths are relative to it; "..", absolute paths and
/// symbolic links that lead outside it are refused (FileStatus::Refused).
enum class FileStatus { Ok, NotFound, Refused, TooLarge, Failed };
class Files {
 public:
  virtual ~Files() = default;
  /// Reads a whole file of at most `max_bytes`.
  virtual FileStatus read(std::string_view path, size_t max_bytes, std::string* out,
                          std::string* error) = 0;
  /// Replaces a file atomically (a temporary file renamed over it), or, with `append`,
  /// appends under an exclusive lock that holds across hosts sharing the folder over NFS.
  /// Creates missing folders.
  virtual FileStatus write(std::string_view path, std::string_view data, bool append,
                           std::string* error) = 0;
  /// The entries of a folder ("" for the shared folder itself), sorted by name.
  virtual FileStatus list(std::string_view path, std::vector<FileEntry>* out,
                          std::string* error) = 0;
};

/// What the engine is handed. Pointers may be null where a host has no such service;
/// rules that need a missing one fail with an error naming it.
struct HostServices {
  Logger* logger = nullptr;
  const Clock* clock = nullptr;
  const Vault* vault = nullptr;
  HttpClient* http = nullptr;
  SqlService* sql = nullptr;
  Files* files = nullptr;
};

/// Default implementations: the system clock, a logger to stderr, an in-memory vault, and
/// files under a root folder.
class SystemClock : public Clock {
 public:
  int64_t now_ms() const override;
};
class StderrLogger : public Logger {
 public:
  explicit StderrLogger(LogLevel min = LogLevel::Info) : min_(min) {}
  void log(LogLevel level, std::string_view text) override;

 private:
  LogLevel min_;
};
class MemoryVault : public Vault {
 public:
  /// `credentials`: name -> (field -> secret); a single-secret credential uses field "".
  void put(std::string name, std::map<std::string, std::string> fields);
  std::optional<std::string> get(std::string_view name, std::string_view field) const override;

 private:
  std::map<std::string, std::map<std::string, std::string>, std::less<>> creds_;
};
class LocalFiles : public Files {
 public:
  /// Files under `root` (created when missing).
  explicit LocalFiles(std::string root) : root_(std::move(root)) {}
  FileStatus read(std::string_view path, size_t max_bytes, std::string* out,
                  std::string* error) override;
  FileStatus write(std::string_view path, std::string_view data, bool append,
                   std::string* error) override;
  FileStatus list(std::string_view path, std::vector<FileEntry>* out, std::string* error) override;
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

/// Checks a relative path for use under a root: no "..", no absolute path, no NUL.
bool safe_relative_path(std::string_view path);

}  // namespace cap

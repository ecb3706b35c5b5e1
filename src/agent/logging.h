// The agent's logs: spdlog, to stdout (CloudWatch reads it) and to date-stamped files
// CAP_HOME/logs/agent-YYYY-MM-DD.log, the newest 14 kept. CAP_LOG_FORMAT json gives one
// JSON object a line ({"time","level","logger","msg"}), text a readable line.
//
// Loggers: "agent" (start, activation, management), "web" (requests, errors),
// "rules" (what rules log through the engine's Logger). Secrets never reach a log line:
// callers log names, never keys, signatures or vault values.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

#include "cap/services.h"

namespace cap::agent {

struct LogOptions {
  std::string dir;             // CAP_HOME/logs
  bool json = true;            // CAP_LOG_FORMAT
  std::string level = "info";  // CAP_LOG_LEVEL
};

inline constexpr size_t kKeptLogFiles = 14;

/// Creates the sinks and the loggers. False with `error` when the folder cannot be used;
/// the loggers then write to stdout only.
bool setup_logging(const LogOptions& options, std::string* error);
/// Flushes and drops the loggers (at exit).
void shutdown_logging();

/// The loggers. Before setup_logging they write text to stdout. setup_logging must run
/// before other threads use them.
spdlog::logger& agent_log();
spdlog::logger& web_log();
spdlog::logger& rules_log();

/// The engine's Logger interface, writing to the "rules" logger.
class RuleLogger : public Logger {
 public:
  void log(LogLevel level, std::string_view text) override;
};

/// Appends `s` to `out` as the inside of a JSON string (quotes not included).
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace cap::agent

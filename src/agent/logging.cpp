#include "agent/logging.h"

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/daily_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <ctime>
#include <vector>

#include "agent/durable_file.h"
#include "agent/log_files.h"

namespace cap::agent {

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
}

namespace {

const char* level_text(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "info";
  }
}

/// One JSON object a line: {"time":"…Z","level":"info","logger":"agent","msg":"…"}.
class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    int64_t ms = duration_cast<milliseconds>(msg.time.time_since_epoch()).count();
    time_t secs = static_cast<time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char ts[96];
    int n = std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                          static_cast<int>(ms % 1000));
    std::string line;
    line.reserve(96 + msg.payload.size());
    line += "{\"time\":\"";
    line.append(ts, static_cast<size_t>(n));
    line += "\",\"level\":\"";
    line += level_text(msg.level);
    line += "\",\"logger\":\"";
    append_json_escaped(line, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    line += "\",\"msg\":\"";
    append_json_escaped(line, std::string_view(msg.payload.data(), msg.payload.size()));
    line += "\"}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::unique_ptr<spdlog::formatter> make_formatter(bool json) {
  if (json) return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e%z %l [%n] %v",
                                                     spdlog::pattern_time_type::utc);
}

spdlog::level::level_enum parse_level(const std::string& s) {
  if (s == "debug") return spdlog::level::debug;
  if (s == "warn") return spdlog::level::warn;
  if (s == "error") return spdlog::level::err;
  return spdlog::level::info;
}

struct Loggers {
  std::shared_ptr<spdlog::logger> agent, web, rules;
};

Loggers make_loggers(const std::vector<spdlog::sink_ptr>& sinks, bool json,
                     spdlog::level::level_enum level) {
  auto make = [&](const char* name) {
    auto logger = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
    logger->set_formatter(make_formatter(json));
    logger->set_level(level);
    logger->flush_on(spdlog::level::info);
    return logger;
  };
  return Loggers{make("agent"), make("web"), make("rules")};
}

Loggers& loggers() {
  static Loggers l =
      make_loggers({std::make_shared<spdlog::sinks::stdout_sink_mt>()}, false, spdlog::level::info);
  return l;
}

}  // namespace

bool setup_logging(const LogOptions& options, std::string* error) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stdout_sink_mt>());
  bool ok = true;
  if (ensure_dir(options.dir, error, 0750)) {
    prune_log_files(options.dir, kKeptLogFiles);
    try {
      // agent-YYYY-MM-DD.log, rotated at midnight; prune_log_files also runs at start so
      // that gaps between days never keep more than 14 files.
      sinks.push_back(std::make_shared<spdlog::sinks::daily_file_format_sink_mt>(
          options.dir + "/agent-%Y-%m-%d.log", 0, 0, false, static_cast<uint16_t>(kKeptLogFiles)));
    } catch (const spdlog::spdlog_ex& e) {
      *error = std::string("cannot open the log file: ") + e.what();
      ok = false;
    }
  } else {
    ok = false;
  }
  loggers() = make_loggers(sinks, options.json, parse_level(options.level));
  return ok;
}

void shutdown_logging() {
  auto& l = loggers();
  for (auto* logger : {l.agent.get(), l.web.get(), l.rules.get()}) logger->flush();
}

spdlog::logger& agent_log() { return *loggers().agent; }
spdlog::logger& web_log() { return *loggers().web; }
spdlog::logger& rules_log() { return *loggers().rules; }

void RuleLogger::log(LogLevel level, std::string_view text) {
  spdlog::logger& logger = rules_log();
  switch (level) {
    case LogLevel::Debug:
      logger.debug("{}", text);
      break;
    case LogLevel::Info:
      logger.info("{}", text);
      break;
    case LogLevel::Warn:
      logger.warn("{}", text);
      break;
    case LogLevel::Error:
      logger.error("{}", text);
      break;
  }
}

}  // namespace cap::agent

#include "agent/settings.h"

#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "net/signing.h"

namespace cap::agent {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

namespace {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) == 0 && buf[0]) return buf;
  return "cap-agent";
}

/// "CAP_WEB_PORT" -> "--CAP_WEB_PORT,--web-port"; "S3_GOLD_MASTER" -> "...,--s3-gold-master".
std::string flag_names(const std::string& var) {
  std::string shortname = var.rfind("CAP_", 0) == 0 ? var.substr(4) : var;
  for (auto& c : shortname) c = c == '_' ? '-' : static_cast<char>(std::tolower(c));
  return "--" + var + ",--" + shortname;
}

}  // namespace

bool parse_settings(int argc, char** argv, Settings* s, int* exit_code) {
  CLI::App app{
      "cap-agent: serves a CAP configuration on the web port and takes commands on the "
      "management port. Every setting reads its environment variable; a flag of the same name "
      "(--CAP_WEB_PORT) or its short lower-case form (--web-port) overrides it."};
  app.set_version_flag("--version", std::string("cap-agent ") + CAP_VERSION);
  app.option_defaults()->always_capture_default();

  std::string key_file;
  int workers = 0;
  auto opt = [&](const char* var, auto& target, const char* help) {
    return app.add_option(flag_names(var), target, help)->envname(var);
  };
  opt("CAP_AGENT_NAME", s->agent_name, "the agent's id (default: the host name)");
  opt("CAP_HOME", s->home, "state folder: configurations, vault, logs");
  opt("CAP_WEB_ADDRESS", s->web_address, "address the web port binds to");
  opt("CAP_WEB_PORT", s->web_port, "the solution port");
  opt("CAP_MGMT_ADDRESS", s->mgmt_address, "address the management port binds to");
  opt("CAP_MGMT_PORT", s->mgmt_port, "the management port");
  opt("CAP_WORKERS", workers,
      "event-loop threads on the web port (0: the CPUs of the affinity mask)")
      ->check(CLI::Range(0, 1024));
  opt("CAP_WAIT_THREADS", s->wait_threads, "threads running rule sets that wait (HTTP calls)")
      ->check(CLI::Range(1, 4096));
  opt("CAP_MGMT_KEY", s->mgmt_key, "shared key for signed management requests");
  opt("CAP_MGMT_KEY_FILE", key_file, "read the management key from this file instead");
  opt("CAP_MGMT_ALLOW", s->mgmt_allow,
      "comma list of CIDRs allowed on the management port, or all");
  opt("CAP_MGMT_TLS_CERT", s->mgmt_tls_cert, "TLS certificate (PEM) for the management port");
  opt("CAP_MGMT_TLS_KEY", s->mgmt_tls_key, "TLS private key (PEM) for the management port");
  opt("S3_GOLD_MASTER", s->gold_master,
      "snapshot to restore at start: s3://BUCKET/KEY or file:///PATH");
  opt("CAP_DB_URL", s->db_url, "database URL");
  opt("CAP_DB_USER", s->db_user, "database user");
  opt("CAP_DB_PASSWORD", s->db_password, "database password");
  opt("CAP_DB_POOL_SIZE", s->db_pool_size, "connections per PostgreSQL database")
      ->check(CLI::Range(1, 1000));
  opt("CAP_SHARED_DIR", s->shared_dir, "shared file storage (default: $CAP_HOME/shared)");
  opt("CAP_LOG_FORMAT", s->log_format, "json or text")->check(CLI::IsMember({"json", "text"}));
  opt("CAP_LOG_LEVEL", s->log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  opt("CAP_REQUEST_LOG", s->request_log, "1: log one line per web request");
  opt("CAP_CONSOLE_URL", s->console_url, "console to announce this agent to");
  opt("CAP_JOIN_TOKEN", s->join_token, "token for announcing to the console");
  opt("CAP_MAX_HEADER_BYTES", s->max_header_bytes, "larger request heads get 431");
  opt("CAP_MAX_BODY_BYTES", s->max_body_bytes,
      "larger web request bodies get 413, unless they stream to the origin");
  opt("CAP_MAX_STREAM_BYTES", s->max_stream_bytes,
      "proxy mode: the limit on a request body streamed to the origin (0: none)");
  opt("CAP_READ_TIMEOUT_MS", s->read_timeout_ms,
      "a started request must arrive whole within this (408)")
      ->check(CLI::Range(1, 3600000));
  opt("CAP_IDLE_TIMEOUT_MS", s->idle_timeout_ms, "idle keep-alive connections close after this")
      ->check(CLI::Range(1, 3600000));
  opt("CAP_ORIGIN_TIMEOUT_MS", s->origin_timeout_ms,
      "proxy mode: the origin must answer within this")
      ->check(CLI::Range(1, 3600000));
  opt("CAP_MAX_MGMT_BODY_BYTES", s->max_mgmt_body_bytes, "larger management bodies get 413");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    *exit_code = app.exit(e);
    return false;
  } catch (const CLI::CallForVersion& e) {
    *exit_code = app.exit(e);
    return false;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    *exit_code = 2;
    return false;
  }

  if (s->agent_name.empty()) s->agent_name = host_name();
  if (s->home.empty()) s->home = "./cap-home";
  if (s->shared_dir.empty()) s->shared_dir = s->home + "/shared";
  s->workers = workers > 0 ? workers : affinity_cpus();
  if (!key_file.empty()) {
    std::string error;
    if (!net::read_key_file(key_file, &s->mgmt_key, &error)) {
      std::cerr << "cap-agent: " << error << "\n";
      *exit_code = 2;
      return false;
    }
  }
  if (s->mgmt_tls_cert.empty() != s->mgmt_tls_key.empty()) {
    std::cerr
        << "cap-agent: CAP_MGMT_TLS_CERT and CAP_MGMT_TLS_KEY go together: set both or neither\n";
    *exit_code = 2;
    return false;
  }
  return true;
}

}  // namespace cap::agent

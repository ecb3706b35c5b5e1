// The agent's settings: every variable of DESIGN §5, read from the environment, with
// command-line flags of the same names overriding them.
//
// Each setting has two flag spellings, both accepted: the variable's own name
// (--CAP_WEB_PORT 9090) and a lower-case one without the CAP_ prefix (--web-port 9090).
// `cap-agent --help` lists them with their variables and defaults.
#pragma once

#include <cstdint>
#include <string>

namespace cap::agent {

struct Settings {
  std::string agent_name;                    // CAP_AGENT_NAME, default: the host name
  std::string home = "./cap-home";           // CAP_HOME
  std::string web_address = "0.0.0.0";       // CAP_WEB_ADDRESS (extension: the bind address)
  uint16_t web_port = 8080;                  // CAP_WEB_PORT
  std::string mgmt_address = "0.0.0.0";      // CAP_MGMT_ADDRESS (extension)
  uint16_t mgmt_port = 20001;                // CAP_MGMT_PORT
  int workers = 0;                           // CAP_WORKERS, default: CPUs in the affinity mask
  int wait_threads = 32;                     // CAP_WAIT_THREADS: threads for rule sets that wait
  std::string mgmt_key;                      // CAP_MGMT_KEY (or the file CAP_MGMT_KEY_FILE names)
  std::string mgmt_allow = "all";            // CAP_MGMT_ALLOW: comma list of CIDRs, or "all"
  std::string mgmt_tls_cert, mgmt_tls_key;   // CAP_MGMT_TLS_CERT, CAP_MGMT_TLS_KEY
  std::string gold_master;                   // S3_GOLD_MASTER
  std::string db_url, db_user, db_password;  // CAP_DB_URL, CAP_DB_USER, CAP_DB_PASSWORD
  int db_pool_size = 8;  // CAP_DB_POOL_SIZE: connections per PostgreSQL database
  std::string shared_dir;                    // CAP_SHARED_DIR, default: $CAP_HOME/shared
  std::string log_format = "json";           // CAP_LOG_FORMAT: json or text
  std::string log_level = "info";            // CAP_LOG_LEVEL: debug, info, warn, error
  bool request_log = false;                  // CAP_REQUEST_LOG=1: one line per request
  std::string console_url, join_token;       // CAP_CONSOLE_URL, CAP_JOIN_TOKEN
  // Web limits (extensions; the defaults suit production).
  size_t max_header_bytes = 16 * 1024;       // CAP_MAX_HEADER_BYTES: larger gets 431
  size_t max_body_bytes = 16 * 1024 * 1024;  // CAP_MAX_BODY_BYTES: larger gets 413
  /// CAP_MAX_STREAM_BYTES: the limit on a request body that streams to the origin (proxy
  /// mode, a configuration that does not read BODY); 0: none.
  uint64_t max_stream_bytes = 0;
  int read_timeout_ms = 15000;                // CAP_READ_TIMEOUT_MS: slower requests get 408
  int idle_timeout_ms = 60000;                // CAP_IDLE_TIMEOUT_MS
  int origin_timeout_ms = 30000;              // CAP_ORIGIN_TIMEOUT_MS: proxy mode
  size_t max_mgmt_body_bytes = 256ull << 20;  // CAP_MAX_MGMT_BODY_BYTES: configuration zips
};

/// Fills `out` from the environment and `argv`. Returns true to go on; false when the
/// process should end with `*exit_code` (after --help or --version: 0; bad flags or values:
/// 2, having printed why).
bool parse_settings(int argc, char** argv, Settings* out, int* exit_code);

/// The number of CPUs this process may run on (sched_getaffinity), at least 1.
int affinity_cpus();

}  // namespace cap::agent

// The capctl commands. Each returns the process exit status (0, 1 or 2).
#pragma once

#include <string>
#include <vector>

#include "cap/engine.h"

namespace cap::cli {

/// The rule catalogue of this run: the base rules plus the extensions loaded with
/// --extension (ext_commands.cpp).
RuleRegistry& catalogue();
/// How the offline commands load configurations: cap.json "extensions" are checked against
/// the extensions loaded.
LoadOptions load_options();
/// Loads extension packages (zips or folders) into catalogue(). Prints every error and
/// returns 1 when one does not verify, else 0.
int load_extensions(const std::vector<std::string>& paths);
/// capctl ext pack DIR -o FILE.zip: verifies, writes the sha256 of every member into
/// extension.json, writes the zip.
int cmd_ext_pack(const std::string& dir, const std::string& out);
/// capctl ext validate DIR|FILE.zip: every problem, one a line.
int cmd_ext_validate(const std::string& path);
/// capctl ext test DIR|FILE.zip [--data FILE.jsonl]: runs each line's rule on its
/// parameters and variables and checks the chain point, variables or error.
int cmd_ext_test(const std::string& path, const std::string& data);

struct RunOptions {
  std::string request;
  std::vector<std::string> headers;
  std::string body;
  std::string remote_addr = "127.0.0.1";
  bool trace = false;
};

int cmd_validate(const std::string& dir);
int cmd_pack(const std::string& dir, const std::string& out);
int cmd_run(const std::string& dir, const RunOptions& opts);
int cmd_test(const std::string& dir, const std::string& data);
int cmd_rules(bool markdown);
/// Prints the catalogue as one JSON document, {"rules": [{name, group, doc, params: [{name,
/// type, required, default, doc, choices}], chain_points, user_chain_points, may_wait}]},
/// in catalogue order. The console UI's editor reads this shape.
int cmd_rules_json();

// Commands that talk to an agent's management API (agent_commands.cpp). Each signs its
// requests with the key from --key-file, else CAP_MGMT_KEY; without a key they exit 2.
struct AgentOptions {
  std::string agent;     // HOST:PORT of the management port
  std::string key_file;  // empty: CAP_MGMT_KEY
};

/// Deploys a configuration folder (packed on the fly) or zip; prints the new id, or every
/// error the agent reports.
int cmd_deploy(const std::string& path, const AgentOptions& agent);
/// Prints the agent's status (`json`: as the agent sends it).
int cmd_status(const AgentOptions& agent, bool json);
/// Lists the agent's log files, or prints one (`tail` > 0: its last lines).
int cmd_logs(const AgentOptions& agent, const std::string& file, int tail);
/// Arms the trace for the next `arm` transactions (arm > 0), or prints those recorded.
int cmd_trace(const AgentOptions& agent, int arm);
/// Reactivates configuration `to` ("" for the previous one); prints the active id.
int cmd_rollback(const AgentOptions& agent, const std::string& to);

// Snapshots (snapshot.cpp). URLs are s3://BUCKET/KEY or file:///PATH.
/// Captures the agent's snapshot and writes it to `to` (a prefix ending in '/' gets the
/// name AGENT-YYYYMMDDTHHMMSSZ.zip); with `latest`, also points `latest` beside it to it.
/// Prints the URL written.
int cmd_snapshot_capture(const AgentOptions& agent, const std::string& to, bool latest);
/// Downloads (following a pointer), verifies and restores a snapshot into the agent; prints
/// the configuration id now active.
int cmd_snapshot_restore(const AgentOptions& agent, const std::string& from);
/// Verifies a snapshot (URL or local file) and prints its metadata and members.
int cmd_snapshot_inspect(const std::string& url_or_file);
/// Lists the objects under a URL prefix or folder (pointers with their targets).
int cmd_snapshot_list(const std::string& url);

}  // namespace cap::cli

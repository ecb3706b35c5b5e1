// capctl's side of the management API (DESIGN §5, §8): where the agent is, and one signed
// request to it.
#pragma once

#include <cstdint>
#include <string>

#include "cap/services.h"

namespace cap::cli {

/// An agent's management port.
struct AgentTarget {
  std::string host;  // name or address, IPv6 without brackets
  uint16_t port = 0;
  std::string key;      // the shared management key (never sent)
  bool tls = false;     // https
  std::string ca_file;  // extra trust anchors for tls (empty: the system store)
};

/// What the agent answered: status 0 with `error` when it could not be reached.
using AgentReply = HttpReply;

/// Parses "HOST:PORT", "[V6]:PORT", or either behind "http://" or "https://" (https sets
/// `tls`). `key` is stored in the target. False with `error` when the text is not of that
/// shape, the port is not 1-65535, or the key is empty.
bool parse_agent_target(const std::string& spec, const std::string& key, AgentTarget* out,
                        std::string* error);

/// The management key: the contents of `key_file` (trailing newlines and spaces dropped)
/// when it is given, else CAP_MGMT_KEY. False with an error saying what to do when there is
/// none.
bool load_agent_key(const std::string& key_file, std::string* key, std::string* error);

/// One request to the agent, signed with the target's key (Authorization:
/// CAP-HMAC-SHA256 ...). `path` is the path with its query, as sent and signed.
/// `content_type` may be empty. Blocks until the answer or `timeout_ms`.
AgentReply agent_call(const AgentTarget& target, const std::string& method, const std::string& path,
                      const std::string& body, const std::string& content_type,
                      int timeout_ms = 120000);

struct AgentOptions;  // commands.h

/// The agent to talk to, with the key from --key-file or CAP_MGMT_KEY; false (after saying
/// why on stderr: exit 2) when there is no key or --agent is not HOST:PORT.
bool resolve_agent(const AgentOptions& o, AgentTarget* t);
/// Prints an agent's error answer ({"error", "details"}), or why it could not be reached,
/// to stderr.
void print_agent_error(const AgentTarget& t, const AgentReply& r);

}  // namespace cap::cli

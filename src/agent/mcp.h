// The MCP server: rule sets of the active configuration offered as tools to other AI agents
// over the Model Context Protocol's Streamable HTTP transport, on the web port.
//
// cap.json turns it on:
//   "mcp": {"path": "/mcp", "token": "${vault:mcp.token}", "tools": ["lookup_order"]}
//
// The endpoint takes JSON-RPC 2.0 messages by POST and answers each request with one JSON
// body (application/json; no server-sent event stream, which the transport allows). It is
// stateless: no session id, so any agent behind a load balancer can answer. Methods:
// initialize, ping, tools/list, tools/call, and notifications (answered 202). GET and
// DELETE get 405, as the transport specifies for servers without a stream or sessions.
//
// Every request needs "Authorization: Bearer TOKEN" with the token from the vault (compared
// in constant time); without it 401. A browser Origin that is not the Host gets 403 (DNS
// rebinding). A tool call runs its rule set as AiAgent does (rules/tools.h); argument errors
// and rule errors come back as tool results with isError, unknown tools as JSON-RPC errors.
// An armed trace records each call as a transaction "MCP tools/call NAME". The token never
// reaches a log line, a trace or a response.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/engine.h"

namespace cap::agent {

struct McpAnswer {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

/// Answers one HTTP request to the MCP path of `runtime`'s configuration. Waits while tools
/// run: call it off the event loops (the wait pool).
McpAnswer handle_mcp(Runtime& runtime, const Request& request);

}  // namespace cap::agent

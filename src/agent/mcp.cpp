#include "agent/mcp.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>

#include "agent/logging.h"
#include "rules/tools.h"

namespace cap::agent {
namespace {

/// Protocol revisions this server speaks, newest first.
constexpr const char* kVersions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

bool known_version(std::string_view v) {
  for (const char* k : kVersions)
    if (v == k) return true;
  return false;
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view header(const Request& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (iequal(k, name)) return v;
  return {};
}

McpAnswer json_answer(int status, const Value& body) {
  McpAnswer a;
  a.status = status;
  a.body = to_json(body);
  a.body += '\n';
  return a;
}

/// An HTTP-level refusal with a plain JSON error (not JSON-RPC: nothing was read yet).
McpAnswer refuse(int status, std::string message) {
  Map m;
  m.set("error", Value(std::move(message)));
  return json_answer(status, Value(std::move(m)));
}

Value rpc_error(const Value& id, int code, std::string message) {
  Map e;
  e.set("code", Value(code));
  e.set("message", Value(std::move(message)));
  Map m;
  m.set("jsonrpc", Value("2.0"));
  m.set("id", id);
  m.set("error", Value(std::move(e)));
  return Value(std::move(m));
}

Value rpc_result(const Value& id, Value result) {
  Map m;
  m.set("jsonrpc", Value("2.0"));
  m.set("id", id);
  m.set("result", std::move(result));
  return Value(std::move(m));
}

/// Whether the request carries the configured bearer token. False too when the token's
/// credential is missing from the vault (logged, without any value).
bool authorized(Runtime& runtime, const Request& req) {
  const McpSettings& mcp = runtime.configuration().mcp;
  if (!mcp.token) return false;
  std::string expected;
  try {
    Variables vars(runtime.configuration().symbols);
    EvalContext ctx{vars, runtime.services()};
    expected = mcp.token->text(ctx);
  } catch (const EvalError& e) {
    web_log().warn("MCP: the token cannot be read, so every request is refused: {}", e.what());
    return false;
  }
  if (expected.empty()) {
    web_log().warn("MCP: the token is empty, so every request is refused");
    return false;
  }
  std::string_view auth = header(req, "authorization");
  if (auth.size() < 7 || !iequal(auth.substr(0, 7), "Bearer ")) return false;
  std::string_view given = auth.substr(7);
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

/// A browser page from another site must not reach the tools through a rebound DNS name:
/// an Origin header, when present, must name the host the request was sent to.
bool origin_allowed(const Request& req) {
  std::string_view origin = header(req, "origin");
  if (origin.empty()) return true;
  size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos) return false;
  return iequal(origin.substr(scheme + 3), header(req, "host"));
}

Value tool_list(const Configuration& cfg) {
  List tools;
  for (const RuleSet* rs : cfg.mcp.tools) {
    Map t;
    t.set("name", Value(rs->name));
    t.set("description", Value(rs->description));
    t.set("inputSchema", rules::tool_schema(*rs));
    tools.push_back(Value(std::move(t)));
  }
  Map m;
  m.set("tools", Value(std::move(tools)));
  return Value(std::move(m));
}

Value initialize_result(const Configuration& cfg, const Value& params) {
  std::string version = kVersions[0];
  if (const Value* v = params.is_map() ? params.as_map().find("protocolVersion") : nullptr;
      v && v->is_string() && known_version(v->as_string()))
    version = v->as_string();
  Map tools;
  tools.set("listChanged", Value(false));
  Map caps;
  caps.set("tools", Value(std::move(tools)));
  Map info;
  info.set("name", Value(cfg.name));
  info.set("version", Value(CAP_VERSION));
  Map m;
  m.set("protocolVersion", Value(version));
  m.set("capabilities", Value(std::move(caps)));
  m.set("serverInfo", Value(std::move(info)));
  if (!cfg.description.empty()) m.set("instructions", Value(cfg.description));
  return Value(std::move(m));
}

/// Runs one tool call; JSON-RPC errors for a malformed call or an unknown tool.
Value call_tool(Runtime& runtime, const Value& id, const Value& params) {
  const Value* name = params.is_map() ? params.as_map().find("name") : nullptr;
  if (!name || !name->is_string())
    return rpc_error(id, -32602, "tools/call needs params.name, the tool to call");
  const RuleSet* tool = nullptr;
  for (const RuleSet* rs : runtime.configuration().mcp.tools)
    if (rs->name == name->as_string()) tool = rs;
  if (!tool) return rpc_error(id, -32602, "unknown tool '" + name->as_string() + "'");
  const Value* args = params.as_map().find("arguments");
  rules::ToolOutcome out = rules::run_tool(runtime, *tool, args ? *args : Value(), nullptr,
                                           "MCP tools/call " + tool->name);
  if (out.error) web_log().info("MCP: tool {} answered an error: {}", tool->name, out.text);
  Map text;
  text.set("type", Value("text"));
  text.set("text", Value(std::move(out.text)));
  List content;
  content.push_back(Value(std::move(text)));
  Map result;
  result.set("content", Value(std::move(content)));
  result.set("isError", Value(out.error));
  return rpc_result(id, Value(std::move(result)));
}

/// One JSON-RPC message: a response value, or null for a notification.
Value dispatch(Runtime& runtime, const Value& msg) {
  if (!msg.is_map()) return rpc_error(Value(), -32600, "a JSON-RPC message must be an object");
  const Map& m = msg.as_map();
  const Value* jsonrpc = m.find("jsonrpc");
  const Value* method = m.find("method");
  const Value* id = m.find("id");
  Value rid = id && (id->is_string() || id->is_number()) ? *id : Value();
  if (!jsonrpc || !jsonrpc->is_string() || jsonrpc->as_string() != "2.0")
    return rpc_error(rid, -32600, "jsonrpc must be \"2.0\"");
  if (!method || !method->is_string()) {
    // A response from the client (we never ask it anything) or garbage.
    if (id && (m.find("result") || m.find("error"))) return Value();
    return rpc_error(rid, -32600, "a request needs a method");
  }
  if (!id) return Value();  // a notification: nothing to answer
  if (!id->is_string() && !id->is_number())
    return rpc_error(Value(), -32600, "id must be a string or a number");
  static const Value none;
  const Value* found = m.find("params");
  const Value& params = found ? *found : none;
  const std::string& name = method->as_string();
  const Configuration& cfg = runtime.configuration();
  if (name == "initialize") return rpc_result(rid, initialize_result(cfg, params));
  if (name == "ping") return rpc_result(rid, Value(Map()));
  if (name == "tools/list") return rpc_result(rid, tool_list(cfg));
  if (name == "tools/call") return call_tool(runtime, rid, params);
  return rpc_error(rid, -32601, "method '" + name + "' is not offered by this server");
}

}  // namespace

McpAnswer handle_mcp(Runtime& runtime, const Request& req) {
  if (req.method != "POST") {
    McpAnswer a = refuse(405, "the MCP endpoint takes JSON-RPC messages by POST");
    a.headers.emplace_back("Allow", "POST");
    return a;
  }
  if (!origin_allowed(req)) return refuse(403, "the Origin header does not match the Host");
  if (!authorized(runtime, req)) {
    McpAnswer a = refuse(401, "a valid bearer token is required");
    a.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"cap-mcp\"");
    return a;
  }
  std::string_view version = header(req, "mcp-protocol-version");
  if (!version.empty() && !known_version(version))
    return refuse(400, "unsupported MCP-Protocol-Version '" + std::string(version.substr(0, 40)) +
                           "'; this server speaks 2025-06-18, 2025-03-26 and 2024-11-05");
  std::string err;
  Value msg = json_parse(req.body, &err);
  if (!err.empty()) return json_answer(400, rpc_error(Value(), -32700, "parse error: " + err));
  if (msg.is_list()) {  // a batch (protocol 2025-03-26)
    if (msg.as_list().empty())
      return json_answer(400, rpc_error(Value(), -32600, "an empty batch"));
    List answers;
    for (const Value& one : msg.as_list()) {
      Value a = dispatch(runtime, one);
      if (!a.is_null()) answers.push_back(std::move(a));
    }
    if (answers.empty()) return McpAnswer{202, "", {}, ""};
    return json_answer(200, Value(std::move(answers)));
  }
  Value answer = dispatch(runtime, msg);
  if (answer.is_null()) return McpAnswer{202, "", {}, ""};
  const Value* error = answer.as_map().find("error");
  bool invalid = error && error->as_map().find("code")->as_number() == -32600;
  return json_answer(invalid ? 400 : 200, answer);
}

}  // namespace cap::agent

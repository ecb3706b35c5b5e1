// Chat with a language model through the host's HTTP client: the request and answer shapes
// of OpenAI-compatible chat completions (POST BASE/chat/completions) and of Amazon
// Bedrock's Converse API (POST BASE/model/MODEL/converse, signed with Signature V4).
//
// A conversation is kept in a provider-neutral form (Message), so one AiAgent memory works
// with either provider. chat() waits for the answer: rules call it on the host's wait pool,
// never on an event loop. Nothing here logs; errors name the endpoint and the problem, never
// a credential.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cap/services.h"
#include "cap/value.h"

namespace cap::rules::llm {

enum class Provider { OpenAi, Bedrock };

/// A tool the model asked for.
struct ToolCall {
  std::string id;              // echoed back with the result
  std::string name;            // the tool (a rule set name)
  Value arguments;             // a map when the model sent valid JSON, else null
  std::string arguments_text;  // as the model sent it (for errors and the trace)
};

struct Message {
  enum class Role { User, Assistant, Tool };
  Role role = Role::User;
  std::string content;               // text (user, assistant) or the tool result (JSON text)
  std::vector<ToolCall> tool_calls;  // assistant messages asking for tools
  std::string tool_call_id;          // tool results: the call answered
  std::string tool_name;             // tool results: the tool's name
  bool tool_error = false;           // tool results: the tool failed
};

struct ToolSpec {
  std::string name, description;
  Value schema;  // JSON schema of the arguments (an object schema)
};

/// Credentials: an API key (OpenAI), or AWS keys (Bedrock).
struct Credentials {
  std::string api_key;
  std::string access_key_id, secret_access_key, session_token;
};

struct ChatRequest {
  Provider provider = Provider::OpenAi;
  std::string
      base_url;  // "https://api.openai.com/v1", "https://bedrock-runtime.REGION.amazonaws.com"
  std::string region;  // Bedrock: the region signed for
  std::string model;
  std::string system;
  std::vector<Message> messages;
  std::vector<ToolSpec> tools;
  double temperature = -1;  // < 0: the provider's default
  int max_tokens = 0;       // 0: the provider's default
  bool json = false;        // ask for a JSON object answer
  bool stream = false;      // OpenAI: ask for the answer as server-sent events (chat_stream)
  int timeout_ms = 60000;   // bounds the whole call, retries included
  int retries = 2;          // extra attempts after 429, 5xx or a failed connection
  Credentials credentials;
};

struct ChatReply {
  enum class Status { Ok, Error, Timeout };
  Status status = Status::Error;
  std::string error;  // when not Ok
  std::string content;
  std::vector<ToolCall> tool_calls;
  std::string finish_reason;  // "stop", "length", "tool_calls" (Bedrock's stopReason mapped)
  uint64_t prompt_tokens = 0, completion_tokens = 0;
  int attempts = 0;
};

/// The request body and headers for one attempt (without signing), for tests and chat().
HttpCall build_call(const ChatRequest& request);
/// Reads a provider's answer (status 200 and a body). Malformed answers give Status::Error
/// with a message saying what was wrong.
ChatReply parse_answer(Provider provider, const std::string& body);
/// Sends `request` and waits for the answer, retrying 429, 5xx and failed connections with
/// a growing pause while time remains (timeout_ms bounds everything).
ChatReply chat(HttpClient& http, const ChatRequest& request);

/// Receives the answer's text as the model produces it; returns false to stop.
using Delta = std::function<bool(std::string_view text)>;
/// Like chat, handing the answer's text to `delta` as it comes: OpenAI streams it
/// (`"stream": true`, server-sent events, usage in the last event); Bedrock gives it whole,
/// in one delta. Retries only until the first delta. The reply holds the whole text and
/// the tool calls the model asked for (streamed in pieces, assembled here; they are not
/// handed to `delta`).
ChatReply chat_stream(HttpClient& http, const ChatRequest& request, const Delta& delta);

/// "openai" or "bedrock"; false for anything else.
bool parse_provider(std::string_view name, Provider* out);

}  // namespace cap::rules::llm

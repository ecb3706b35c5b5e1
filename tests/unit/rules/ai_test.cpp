// The AI rules' pieces that need no model: the request shapes sent to OpenAI-compatible
// endpoints and to Bedrock Converse, reading their answers, tool schemas derived from a
// rule set's params, argument checks, and rule sets run as tools.
#include <gtest/gtest.h>

#include "rules/llm_client.h"
#include "rules/tools.h"
#include "support/harness.h"

namespace cap::test {
namespace {

using rules::llm::ChatReply;
using rules::llm::ChatRequest;
using rules::llm::Message;
using rules::llm::Provider;

Value parse(const std::string& text) {
  std::string err;
  Value v = json_parse(text, &err);
  EXPECT_EQ(err, "") << text;
  return v;
}

ChatRequest conversation(Provider provider) {
  ChatRequest r;
  r.provider = provider;
  r.base_url = "http://127.0.0.1:1/v1/";
  r.model = "anthropic.claude-3-haiku-20240307-v1:0";
  r.system = "Be brief.";
  r.temperature = 0.5;
  r.max_tokens = 100;
  Message user;
  user.content = "Order A-1?";
  Message asks;
  asks.role = Message::Role::Assistant;
  asks.tool_calls.push_back({"call_1", "lookup", parse(R"({"id": "A-1"})"), R"({"id":"A-1"})"});
  Message result;
  result.role = Message::Role::Tool;
  result.tool_call_id = "call_1";
  result.tool_name = "lookup";
  result.content = "shipped";
  r.messages = {user, asks, result};
  r.tools.push_back({"lookup", "Finds an order.", parse(R"({"type": "object"})")});
  r.credentials.api_key = "sk-unit";
  return r;
}

std::string header(const HttpCall& call, const std::string& name) {
  for (auto& [k, v] : call.headers)
    if (k == name) return v;
  return "";
}

TEST(LlmClient, OpenAiRequestShape) {
  HttpCall call = rules::llm::build_call(conversation(Provider::OpenAi));
  EXPECT_EQ(call.method, "POST");
  EXPECT_EQ(call.url, "http://127.0.0.1:1/v1/chat/completions");
  EXPECT_EQ(header(call, "Authorization"), "Bearer sk-unit");
  EXPECT_EQ(parse(call.body), parse(R"({
    "model": "anthropic.claude-3-haiku-20240307-v1:0",
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Order A-1?"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\":\"A-1\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "shipped"}],
    "temperature": 0.5, "max_tokens": 100,
    "tools": [{"type": "function", "function": {"name": "lookup", "description": "Finds an order.",
               "parameters": {"type": "object"}}}]})"));
}

TEST(LlmClient, BedrockConverseShape) {
  ChatRequest r = conversation(Provider::Bedrock);
  r.json = true;
  HttpCall call = rules::llm::build_call(r);
  EXPECT_EQ(call.url,
            "http://127.0.0.1:1/v1/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
  EXPECT_EQ(header(call, "Authorization"), "") << "Bedrock is signed, not given a key";
  EXPECT_EQ(parse(call.body), parse(R"({
    "messages": [
      {"role": "user", "content": [{"text": "Order A-1?"}]},
      {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "lookup", "input": {"id": "A-1"}}}]},
      {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "shipped"}], "status": "success"}}]}],
    "system": [{"text": "Be brief.\n\nAnswer with a single JSON object and nothing else."}],
    "inferenceConfig": {"temperature": 0.5, "maxTokens": 100},
    "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "description": "Finds an order.",
                                            "inputSchema": {"json": {"type": "object"}}}}]}})"));
}

TEST(LlmClient, BedrockGroupsToolResultsInOneUserMessage) {
  ChatRequest r = conversation(Provider::Bedrock);
  Message second = r.messages.back();
  second.tool_call_id = "call_2";
  second.tool_error = true;
  r.messages.push_back(second);
  Value body = parse(rules::llm::build_call(r).body);
  const List& messages = body.as_map().find("messages")->as_list();
  ASSERT_EQ(messages.size(), 3u);
  const List& content = messages[2].as_map().find("content")->as_list();
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(
      to_json(content[1]),
      R"({"toolResult":{"toolUseId":"call_2","content":[{"text":"shipped"}],"status":"error"}})");
}

TEST(LlmClient, ReadsOpenAiAnswers) {
  ChatReply r = rules::llm::parse_answer(Provider::OpenAi, R"({"choices": [{"message": {
      "role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\": 7}"}},
        {"id": "c2", "type": "function", "function": {"name": "other", "arguments": "not json"}}]},
      "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 12, "completion_tokens": 3}})");
  ASSERT_EQ(r.status, ChatReply::Status::Ok) << r.error;
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].name, "lookup");
  EXPECT_EQ(to_json(r.tool_calls[0].arguments), R"({"id":7})");
  EXPECT_TRUE(r.tool_calls[1].arguments.is_null());
  EXPECT_EQ(r.tool_calls[1].arguments_text, "not json");
  EXPECT_EQ(r.finish_reason, "tool_calls");
  EXPECT_EQ(r.prompt_tokens, 12u);
  EXPECT_EQ(r.completion_tokens, 3u);
}

TEST(LlmClient, ReadsBedrockAnswers) {
  ChatReply r = rules::llm::parse_answer(Provider::Bedrock, R"({"output": {"message": {
      "role": "assistant", "content": [{"text": "Let me look."},
        {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"id": "A-1"}}}]}},
      "stopReason": "tool_use", "usage": {"inputTokens": 30, "outputTokens": 9}})");
  ASSERT_EQ(r.status, ChatReply::Status::Ok) << r.error;
  EXPECT_EQ(r.content, "Let me look.");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].id, "t1");
  EXPECT_EQ(r.finish_reason, "tool_calls");
  EXPECT_EQ(r.prompt_tokens, 30u);
  EXPECT_EQ(r.completion_tokens, 9u);
}

TEST(LlmClient, MalformedAnswersAreErrors) {
  struct Case {
    Provider provider;
    const char* body;
    const char* error;
  } cases[] = {
      {Provider::OpenAi, "", "the model's answer is not valid JSON"},
      {Provider::OpenAi, R"({"choices": [{"message": {"content": "x"}})",
       "the model's answer is not valid JSON"},
      {Provider::OpenAi, R"({"choices": {}})", "the model's answer has no choices"},
      {Provider::OpenAi, R"({"choices": [{"message": {"tool_calls": 5}}]})",
       "the model's tool_calls is not a list"},
      {Provider::Bedrock, R"({"output": {}})", "the model's answer has no output message"},
      {Provider::Bedrock, R"({"output": {"message": {"content": [{"toolUse": {"input": {}}}]}}})",
       "a tool call of the model names no tool"},
  };
  for (const Case& c : cases) {
    ChatReply r = rules::llm::parse_answer(c.provider, c.body);
    EXPECT_EQ(r.status, ChatReply::Status::Error) << c.body;
    EXPECT_EQ(r.error.rfind(c.error, 0), 0u) << c.body << " -> " << r.error;
  }
}

/// Answers every call with `body` under `status`, handed over in pieces of `piece` bytes
/// (a model streaming its answer).
class PiecesModel : public HttpClient {
 public:
  PiecesModel(int status, std::string body, size_t piece)
      : status_(status), body_(std::move(body)), piece_(piece) {}
  HttpReply call(const HttpCall&) override {
    HttpReply r;
    r.status = status_;
    r.body = body_;
    return r;
  }
  HttpReply call_pieces(const HttpCall&, const Pieces& piece) override {
    HttpReply r;
    r.status = status_;
    for (size_t at = 0; at < body_.size(); at += piece_)
      if (!piece(status_, std::string_view(body_).substr(at, piece_))) break;
    return r;
  }

 private:
  int status_;
  std::string body_;
  size_t piece_;
};

std::string events(std::initializer_list<const char*> chunks) {
  std::string out;
  for (const char* c : chunks) out += std::string("data: ") + c + "\n\n";
  return out + "data: [DONE]\n\n";
}

TEST(LlmClient, StreamedToolCallsArePutTogether) {
  std::string body = events({
      R"({"choices":[{"index":0,"delta":{"role":"assistant","content":"Let me look."}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"lookup","arguments":""}}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c2","type":"function","function":{"name":"faq","arguments":"{\"topic\""}}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"id\": "}}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"A-1\"}"}}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": \"returns\"}"}}]}}]})",
      R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})",
      R"({"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":12}})",
  });
  for (size_t piece : {size_t(7), body.size()}) {
    PiecesModel model(200, body, piece);
    ChatRequest r = conversation(Provider::OpenAi);
    std::string said;
    ChatReply reply = rules::llm::chat_stream(model, r, [&](std::string_view t) {
      said += t;
      return true;
    });
    ASSERT_EQ(reply.status, ChatReply::Status::Ok) << reply.error;
    EXPECT_EQ(said, "Let me look.");
    EXPECT_EQ(reply.content, "Let me look.");
    EXPECT_EQ(reply.finish_reason, "tool_calls");
    EXPECT_EQ(reply.prompt_tokens, 40u);
    ASSERT_EQ(reply.tool_calls.size(), 2u);
    EXPECT_EQ(reply.tool_calls[0].id, "c1");
    EXPECT_EQ(reply.tool_calls[0].name, "lookup");
    EXPECT_EQ(reply.tool_calls[0].arguments_text, R"({"id": "A-1"})");
    EXPECT_EQ(to_json(reply.tool_calls[0].arguments), R"({"id":"A-1"})");
    EXPECT_EQ(reply.tool_calls[1].name, "faq");
    EXPECT_EQ(to_json(reply.tool_calls[1].arguments), R"({"topic":"returns"})");
  }
}

TEST(LlmClient, MalformedStreamedToolCallsAreErrors) {
  struct Case {
    std::string body;
    const char* error;
  } cases[] = {
      {events(
           {R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]})"}),
       "a tool call of the model names no function"},
      {events(
           {R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":500,"function":{"name":"x"}}]}}]})"}),
       "the model's stream holds a tool call with the index 500"},
  };
  for (const Case& c : cases) {
    PiecesModel model(200, c.body, 16);
    ChatReply reply = rules::llm::chat_stream(model, conversation(Provider::OpenAi),
                                              [](std::string_view) { return true; });
    EXPECT_EQ(reply.status, ChatReply::Status::Error) << c.body;
    EXPECT_EQ(reply.error, c.error) << c.body;
    EXPECT_TRUE(reply.tool_calls.empty());
  }
}

TEST(LlmClient, Providers) {
  Provider p;
  EXPECT_TRUE(rules::llm::parse_provider("openai", &p));
  EXPECT_EQ(p, Provider::OpenAi);
  EXPECT_TRUE(rules::llm::parse_provider("bedrock", &p));
  EXPECT_EQ(p, Provider::Bedrock);
  EXPECT_FALSE(rules::llm::parse_provider("OpenAI", &p));
}

Harness tool_harness() {
  return Harness({
      {"rulesets/main.json",
       R"({"name": "main", "start": "r", "rules": {"r": {"rule": "HttpRespond", "with": {"body": "x"}}}})"},
      {"rulesets/order.json", R"({"name": "order", "description": "Finds an order.",
         "result": "ORDER", "start": "pick",
         "params": [{"name": "id", "type": "string", "required": true, "description": "Order id"},
                    {"name": "lines", "type": "integer"}, {"name": "tags", "type": "list"},
                    {"name": "flags", "type": "map"}, {"name": "rush", "type": "boolean"}],
         "rules": {
           "pick": {"rule": "IfCondition", "with": {"condition": "id == 'A-1'"},
                    "then": {"true": ["found"], "false": ["missing"]}},
           "found": {"rule": "SetVariable", "with": {"name": "ORDER", "value": {"id": "${id}", "greeting": "${GREETING}"}}},
           "missing": {"rule": "RuleSetExit", "with": {"name": "not_found"}}}})"},
      {"cap.json",
       R"({"format": 1, "name": "t", "ruleset": "main", "globals": {"GREETING": "hi"}})"},
  });
}

TEST(Tools, SchemaFromParams) {
  Harness h = tool_harness();
  ASSERT_TRUE(h.ok()) << h.errors();
  const RuleSet* rs = h.loaded.configuration->find_ruleset("order");
  EXPECT_EQ(to_json(rules::tool_schema(*rs)),
            R"({"type":"object","properties":{"id":{"type":"string","description":"Order id"},)"
            R"("lines":{"type":"integer"},"tags":{"type":"array"},"flags":{"type":"object"},)"
            R"("rush":{"type":"boolean"}},"required":["id"],"additionalProperties":false})");
}

TEST(Tools, ArgumentChecks) {
  Harness h = tool_harness();
  ASSERT_TRUE(h.ok()) << h.errors();
  const RuleSet& rs = *h.loaded.configuration->find_ruleset("order");
  auto check = [&](const char* args) { return rules::check_tool_arguments(rs, parse(args)); };
  EXPECT_EQ(check(R"({"id": "A-1", "lines": 2, "tags": [], "flags": {}, "rush": true})"), "");
  EXPECT_EQ(check(R"({"id": "A-1", "lines": null})"), "");
  EXPECT_EQ(check("{}"), "missing required argument 'id'");
  EXPECT_EQ(check(R"({"id": null})"), "argument 'id' must be a string, got null");
  EXPECT_EQ(check(R"({"id": 5})"), "argument 'id' must be a string, got a number");
  EXPECT_EQ(check(R"({"id": "x", "lines": 2.5})"),
            "argument 'lines' must be an integer, got a number");
  EXPECT_EQ(check(R"({"id": "x", "tags": "a"})"), "argument 'tags' must be a list, got a string");
  EXPECT_EQ(check(R"({"id": "x", "color": "red"})"),
            "unknown argument 'color'; it takes: id, lines, tags, flags, rush");
  EXPECT_EQ(check("[1]"), "the arguments must be a JSON object, got list");
}

TEST(Tools, RunsTheRuleSetOnItsOwnVariables) {
  Harness h = tool_harness();
  ASSERT_TRUE(h.ok()) << h.errors();
  const RuleSet& rs = *h.loaded.configuration->find_ruleset("order");
  auto found = rules::run_tool(*h.runtime, rs, parse(R"({"id": "A-1"})"), nullptr);
  EXPECT_FALSE(found.error);
  EXPECT_EQ(found.text, R"({"id":"A-1","greeting":"hi"})");
  auto missing = rules::run_tool(*h.runtime, rs, parse(R"({"id": "B-2"})"), nullptr);
  EXPECT_FALSE(missing.error);
  EXPECT_EQ(missing.text, "not_found");
  EXPECT_EQ(missing.exit, "not_found");
  auto bad = rules::run_tool(*h.runtime, rs, parse(R"({"lines": 1})"), nullptr);
  EXPECT_TRUE(bad.error);
  EXPECT_EQ(bad.text, "missing required argument 'id'");
}

TEST(Tools, AnMcpCallIsTracedAsItsOwnTransaction) {
  Harness h = tool_harness();
  ASSERT_TRUE(h.ok()) << h.errors();
  h.runtime->arm_trace(1);
  const RuleSet& rs = *h.loaded.configuration->find_ruleset("order");
  rules::run_tool(*h.runtime, rs, parse(R"({"id": "A-1"})"), nullptr, "MCP tools/call order");
  auto traces = h.runtime->traces();
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_EQ(traces[0].request, "MCP tools/call order");
  std::string text = format_trace(traces[0]);
  EXPECT_NE(text.find("id = 'A-1'"), std::string::npos) << text;
  EXPECT_NE(text.find("enter     order/found SetVariable"), std::string::npos) << text;
}

}  // namespace
}  // namespace cap::test

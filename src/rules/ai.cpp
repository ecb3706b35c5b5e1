// The AI group (DESIGN §4): LlmChat asks a language model once; AiAgent runs a model in a
// loop whose tools are rule sets of the configuration.
//
// Both call the model through rules/llm_client.h on the host's HTTP client, so they wait:
// RuleSpec::may_wait makes hosts run such configurations off their event loops. The
// credential is read from the vault at each call and goes only into the request's
// Authorization (or the signature); trace notes, variables, errors and logs never hold it.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "rules/conversations.h"
#include "rules/groups.h"
#include "rules/llm_client.h"
#include "rules/tools.h"

namespace cap::rules {
namespace {

using llm::ChatReply;
using llm::ChatRequest;
using llm::Message;

constexpr size_t kNoteText = 300;  // characters of a prompt or answer a trace note shows

std::string clip(std::string_view s, size_t n = kNoteText) {
  std::string out(s.substr(0, n));
  if (s.size() > n) out += "...";
  return out;
}

// ---------------------------------------------------------------------------------------
// What LlmChat and AiAgent share: the model, the credential, the limits.

std::vector<ParamSpec> model_params(int default_timeout_ms) {
  return {
      {"provider",
       ParamType::String,
       false,
       Value("openai"),
       "openai (any OpenAI-compatible chat completions endpoint) or bedrock (Amazon Bedrock "
       "Converse).",
       {"openai", "bedrock"}},
      {"base_url",
       ParamType::String,
       false,
       Value(""),
       "The endpoint: https://api.openai.com/v1 when empty (openai), "
       "https://bedrock-runtime.REGION.amazonaws.com (bedrock).",
       {}},
      {"model", ParamType::String, true, {}, "The model id.", {}},
      {"system", ParamType::String, false, Value(""), "The system prompt (a template).", {}},
      {"prompt", ParamType::String, true, {}, "The user's message (a template).", {}},
      {"credential",
       ParamType::String,
       false,
       Value(""),
       "A vault credential name. openai: its field api_key (or the single secret) is sent as "
       "the bearer token; bedrock: access_key_id, secret_access_key, session_token and "
       "region. Empty: no key (local endpoints).",
       {}},
      {"temperature", ParamType::Number, false, {}, "Sampling temperature, 0 to 2.", {}},
      {"max_tokens", ParamType::Number, false, {}, "The most tokens the answer may have.", {}},
      {"timeout_ms",
       ParamType::Number,
       false,
       Value(default_timeout_ms),
       "Milliseconds to wait for the model, retries included (per model call in AiAgent).",
       {}},
      {"retries",
       ParamType::Number,
       false,
       Value(2),
       "Extra attempts after a 429, a 5xx or a failed connection, 0 to 5.",
       {}},
  };
}

/// An optional parameter.
ParamSpec optional(std::string name, ParamType type, Value default_value, std::string doc) {
  return {std::move(name), type, false, std::move(default_value), std::move(doc), {}};
}

bool check_number(CompileContext& cc, std::string_view name, double lo, double hi, bool integral) {
  const Param& p = cc.params()[name];
  if (!p.present() || !p.is_constant()) return true;
  const Value& v = p.constant_value();
  if (v.is_null()) return true;
  if (!v.is_number() || !std::isfinite(v.as_number()) || v.as_number() < lo || v.as_number() > hi ||
      (integral && std::floor(v.as_number()) != v.as_number())) {
    cc.error(name, std::string("must be ") + (integral ? "a whole number" : "a number") + " from " +
                       Value(lo).to_text() + " to " + Value(hi).to_text() + ", got " + v.to_text());
    return false;
  }
  return true;
}

double number_in(const Param& p, ExecContext& ctx, std::string_view name, double lo, double hi) {
  double d = p.number(ctx);
  if (!std::isfinite(d) || d < lo || d > hi)
    throw EvalError(std::string(name) + " must be from " + Value(lo).to_text() + " to " +
                    Value(hi).to_text() + ", got " + Value(d).to_text());
  return d;
}

/// The compiled model parameters of one node.
class ModelSettings {
 public:
  explicit ModelSettings(const Params& p)
      : provider_(p["provider"]),
        base_url_(p["base_url"]),
        model_(p["model"]),
        system_(p["system"]),
        prompt_(p["prompt"]),
        credential_(p["credential"]),
        temperature_(p["temperature"]),
        max_tokens_(p["max_tokens"]),
        timeout_(p["timeout_ms"]),
        retries_(p["retries"]) {}

  static bool check(CompileContext& cc) {
    bool ok = check_number(cc, "temperature", 0, 2, false) &&
              check_number(cc, "max_tokens", 1, 1000000, true) &&
              check_number(cc, "timeout_ms", 1, 3600000, true) &&
              check_number(cc, "retries", 0, 5, true);
    const Param& url = cc.params()["base_url"];
    if (url.is_constant()) {
      std::string u = url.constant_value().to_text();
      if (!u.empty() && u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) {
        cc.error("base_url", "must start with http:// or https://, got '" + u + "'");
        ok = false;
      }
    }
    return ok;
  }

  /// A request with everything but the messages and tools. Throws EvalError.
  ChatRequest request(ExecContext& ctx) const {
    ChatRequest r;
    std::string provider = provider_.text(ctx);
    if (!llm::parse_provider(provider, &r.provider))
      throw EvalError("provider must be openai or bedrock, got '" + provider + "'");
    r.model = model_.text(ctx);
    if (r.model.empty()) throw EvalError("model is empty");
    r.system = system_.text(ctx);
    if (temperature_.present()) r.temperature = number_in(temperature_, ctx, "temperature", 0, 2);
    if (max_tokens_.present())
      r.max_tokens = static_cast<int>(number_in(max_tokens_, ctx, "max_tokens", 1, 1000000));
    r.timeout_ms = static_cast<int>(number_in(timeout_, ctx, "timeout_ms", 1, 3600000));
    r.retries = static_cast<int>(number_in(retries_, ctx, "retries", 0, 5));
    std::string credential = credential_.text(ctx);
    if (!credential.empty())
      read_credential(ctx, credential, r);
    else if (r.provider == llm::Provider::Bedrock)
      throw EvalError(
          "bedrock needs a credential: a vault name with access_key_id, "
          "secret_access_key and region");
    std::string base = base_url_.text(ctx);
    if (base.empty())
      base = r.provider == llm::Provider::OpenAi
                 ? "https://api.openai.com/v1"
                 : "https://bedrock-runtime." + r.region + ".amazonaws.com";
    if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0)
      throw EvalError("base_url must start with http:// or https://, got '" + base + "'");
    r.base_url = std::move(base);
    return r;
  }

  std::string prompt(ExecContext& ctx) const { return prompt_.text(ctx); }

 private:
  static void read_credential(ExecContext& ctx, const std::string& name, ChatRequest& r) {
    const Vault* vault = ctx.services.vault;
    auto missing = [&name]() {
      return EvalError("vault credential '" + name + "' is not available");
    };
    if (!vault) throw missing();
    if (r.provider == llm::Provider::OpenAi) {
      auto key = vault->get(name, "api_key");
      if (!key) key = vault->get(name, "");
      if (!key) throw missing();
      r.credentials.api_key = std::move(*key);
      return;
    }
    auto id = vault->get(name, "access_key_id");
    auto secret = vault->get(name, "secret_access_key");
    if (!id || !secret)
      throw EvalError("vault credential '" + name +
                      "' needs the fields access_key_id and secret_access_key for bedrock");
    r.credentials.access_key_id = std::move(*id);
    r.credentials.secret_access_key = std::move(*secret);
    if (auto token = vault->get(name, "session_token")) r.credentials.session_token = *token;
    auto region = vault->get(name, "region");
    if (!region || region->empty())
      throw EvalError("vault credential '" + name + "' needs a region field for bedrock");
    r.region = std::move(*region);
  }

  Param provider_, base_url_, model_, system_, prompt_, credential_, temperature_, max_tokens_,
      timeout_, retries_;
};

/// Calls, failures and tokens of one node: its performance counters.
struct Usage {
  std::atomic<uint64_t> calls{0}, errors{0}, timeouts{0}, prompt_tokens{0}, completion_tokens{0};
  void add(const ChatReply& r) {
    calls.fetch_add(1, std::memory_order_relaxed);
    if (r.status == ChatReply::Status::Error) errors.fetch_add(1, std::memory_order_relaxed);
    if (r.status == ChatReply::Status::Timeout) timeouts.fetch_add(1, std::memory_order_relaxed);
    prompt_tokens.fetch_add(r.prompt_tokens, std::memory_order_relaxed);
    completion_tokens.fetch_add(r.completion_tokens, std::memory_order_relaxed);
  }
  void report(std::vector<std::pair<std::string, uint64_t>>& out) const {
    out.emplace_back("llm_calls", calls.load(std::memory_order_relaxed));
    out.emplace_back("llm_errors", errors.load(std::memory_order_relaxed));
    out.emplace_back("llm_timeouts", timeouts.load(std::memory_order_relaxed));
    out.emplace_back("llm_prompt_tokens", prompt_tokens.load(std::memory_order_relaxed));
    out.emplace_back("llm_completion_tokens", completion_tokens.load(std::memory_order_relaxed));
  }
};

/// Calls the model and notes the call in the trace: what was asked (the last message) and
/// what came back, with the tokens. Never the credential.
/// With `delta`, the answer's text is handed to it as the model writes it (chat_stream).
ChatReply call_model(ExecContext& ctx, const ChatRequest& r, Usage& usage, int step,
                     const llm::Delta* delta = nullptr) {
  std::string prefix = step > 0 ? "step " + std::to_string(step) + ": " : std::string();
  if (ctx.tracing()) {
    std::string last;
    if (!r.messages.empty()) {
      const Message& m = r.messages.back();
      last = m.role == Message::Role::Tool ? "tool result" : "user";
      last += ": '" + clip(m.content) + "'";
    }
    ctx.note(prefix + "prompt to " + r.model + " (" + std::to_string(r.messages.size()) +
             " messages" +
             (r.tools.empty() ? "" : ", " + std::to_string(r.tools.size()) + " tools") +
             "), last " + last);
  }
  HttpClient* http = ctx.services.http;
  ChatReply reply;
  if (!http) {
    reply.error = "this host has no HTTP client";
  } else {
    reply = delta ? llm::chat_stream(*http, r, *delta) : llm::chat(*http, r);
  }
  usage.add(reply);
  if (ctx.tracing()) {
    if (reply.status != ChatReply::Status::Ok) {
      ctx.note(prefix + (reply.status == ChatReply::Status::Timeout ? "timeout: " : "error: ") +
               reply.error);
    } else {
      ctx.note(prefix + "tokens " + std::to_string(reply.prompt_tokens) + " in, " +
               std::to_string(reply.completion_tokens) + " out" +
               (reply.finish_reason.empty() ? "" : ", finish " + reply.finish_reason));
      if (!reply.content.empty()) ctx.note(prefix + "answer '" + clip(reply.content) + "'");
    }
  }
  return reply;
}

/// An answer that should be JSON, without a Markdown code fence some models put around it.
std::string_view unfence(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.starts_with("```") && s.ends_with("```") && s.size() >= 6) {
    s = s.substr(3, s.size() - 6);
    size_t nl = s.find('\n');
    s = nl == std::string_view::npos ? s : s.substr(nl + 1);
  }
  return s;
}

Value usage_value(uint64_t prompt, uint64_t completion, const std::string& finish,
                  const std::string& model) {
  Map m;
  m.set("prompt_tokens", Value(prompt));
  m.set("completion_tokens", Value(completion));
  m.set("finish_reason", Value(finish));
  m.set("model", Value(model));
  return Value(std::move(m));
}

/// The response as server-sent events (`Content-Type: text/event-stream`), begun at the
/// first event. A host that cannot stream (capctl) gets the events as one body.
class EventStream {
 public:
  explicit EventStream(ExecContext& ctx) : res_(ctx.response()), out_(res_.streamer) {}

  /// Sends `data: JSON` under `event` ("" for the default event, "message"). False when
  /// the client is gone.
  bool send(std::string_view event, Value data) {
    std::string text;
    if (!event.empty()) text.append("event: ").append(event).append("\n");
    text.append("data: ").append(to_json(data)).append("\n\n");
    if (!started_) {
      started_ = true;
      res_.set = true;
      res_.status = 200;
      res_.content_type = "text/event-stream";
      res_.body.clear();
      if (out_) {
        res_.streamed = true;
        gone_ = !out_->begin(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
      }
    }
    if (gone_) return false;
    if (!out_) {
      res_.body += text;
      return true;
    }
    gone_ = !out_->write(text);
    return !gone_;
  }
  /// `data: {"delta": text}`.
  bool delta(std::string_view text) {
    Map m;
    m.set("delta", Value(text));
    return send("", Value(std::move(m)));
  }
  /// Sends `event` with `data: {"error": why}`.
  void error(std::string_view event, const std::string& why) {
    Map m;
    m.set("error", Value(why));
    send(event, Value(std::move(m)));
  }
  /// Ends the body (cut short when the client is gone).
  void end() {
    if (started_ && out_) out_->end(!gone_);
  }
  bool started() const { return started_; }
  bool client_gone() const { return gone_; }

 private:
  Response& res_;
  StreamingResponse* out_;
  bool started_ = false, gone_ = false;
};

// ---------------------------------------------------------------------------------------
// LlmChat

RuleSpec llm_chat_spec() {
  RuleSpec s;
  s.name = "LlmChat";
  s.group = "AI";
  s.doc =
      "Asks a language model: sends the system and user prompts to an OpenAI-compatible chat "
      "completions endpoint or to Amazon Bedrock's Converse API and puts the answer into "
      "`output` (with `json`, the answer parsed as JSON: a map or list). Takes `ok` with an "
      "answer, `timeout` when none came within timeout_ms (retries included), and `error` "
      "otherwise (refused, an error status, a malformed answer, JSON that does not parse, a "
      "missing credential); LLM_ERROR then says why. `usage` gets {prompt_tokens, "
      "completion_tokens, finish_reason, model}; the node's token counts also show in the "
      "performance data and /metrics. The call waits, so a configuration using it runs its "
      "requests off the event loops.";
  s.params = model_params(60000);
  s.params.push_back(optional("json", ParamType::Boolean, Value(false),
                              "Ask for a JSON object and parse the answer into output."));
  s.params.push_back(optional("output", ParamType::Variable, Value("LLM_ANSWER"),
                              "The variable that gets the answer."));
  s.params.push_back(optional("stream", ParamType::Boolean, Value(false),
                              "Send the answer to the client as server-sent events while the "
                              "model writes it (this rule then makes the response)."));
  s.params.push_back(optional("usage", ParamType::Variable, Value("LLM_USAGE"),
                              "The variable that gets the token counts."));
  s.chain_points = {"ok", "error", "timeout"};
  s.may_wait = true;
  return s;
}

class LlmChatRule : public Rule {
 public:
  LlmChatRule(CompileContext& cc, const Params& p)
      : model_(p),
        json_(p["json"]),
        stream_(p["stream"]),
        output_(p["output"]),
        usage_(p["usage"]) {
    error_ = cc.env().symbols.intern("LLM_ERROR");
  }

  int execute(ExecContext& ctx) const override {
    ChatRequest r;
    try {
      r = model_.request(ctx);
    } catch (const EvalError& e) {
      return fail(ctx, kError, e.what());
    }
    r.json = json_.boolean(ctx);
    Message user;
    user.content = model_.prompt(ctx);
    r.messages.push_back(std::move(user));
    if (stream_.boolean(ctx)) return streamed(ctx, r);
    ChatReply reply = call_model(ctx, r, stats_, 0);
    if (reply.status == ChatReply::Status::Timeout) return fail(ctx, kTimeout, reply.error);
    if (reply.status != ChatReply::Status::Ok) return fail(ctx, kError, reply.error);
    if (!reply.tool_calls.empty() && reply.content.empty())
      return fail(ctx, kError, "the model asked for a tool, but LlmChat offers none");
    Value answer(reply.content);
    if (r.json) {
      std::string err;
      answer = json_parse(unfence(reply.content), &err);
      if (!err.empty()) {
        std::string why = "the model's answer is not valid JSON (" + err + ")";
        if (reply.finish_reason == "length") why += "; it was cut off at max_tokens";
        return fail(ctx, kError, why);
      }
    }
    ctx.vars.set(usage_.slot(), usage_value(reply.prompt_tokens, reply.completion_tokens,
                                            reply.finish_reason, r.model));
    ctx.vars.set(output_.slot(), std::move(answer));
    ctx.vars.erase(error_);
    return kOk;
  }

  /// The answer as server-sent events: `data: {"delta": "..."}` while the model writes,
  /// then `event: done` with the token counts, or `event: error` when it failed midway.
  /// Nothing is sent when the model fails before its first words: the chain points then
  /// answer as usual. A host without streaming (capctl) gets the same events as one body.
  int streamed(ExecContext& ctx, ChatRequest& r) const {
    EventStream events(ctx);
    if (ctx.tracing())
      ctx.note("prompt to " + r.model + " (streamed), user: '" + clip(r.messages.back().content) +
               "'");
    ChatReply reply;
    if (!ctx.services.http) {
      reply.error = "this host has no HTTP client";
    } else {
      reply = llm::chat_stream(*ctx.services.http, r,
                               [&](std::string_view text) { return events.delta(text); });
    }
    stats_.add(reply);
    if (events.client_gone() && reply.status != ChatReply::Status::Ok) {
      reply.status = ChatReply::Status::Error;
      reply.error = "the client went away while the answer was streamed";
    }
    if (ctx.tracing())
      ctx.note(
          reply.status == ChatReply::Status::Ok
              ? "tokens " + std::to_string(reply.prompt_tokens) + " in, " +
                    std::to_string(reply.completion_tokens) + " out, answer '" +
                    clip(reply.content) + "'"
              : std::string(reply.status == ChatReply::Status::Timeout ? "timeout: " : "error: ") +
                    reply.error);
    int chain = kOk;
    Value answer(reply.content);
    std::string why = reply.error;
    if (reply.status == ChatReply::Status::Ok && r.json) {
      std::string err;
      answer = json_parse(unfence(reply.content), &err);
      if (!err.empty()) {
        reply.status = ChatReply::Status::Error;
        why = "the model's answer is not valid JSON (" + err + ")";
      }
    }
    if (reply.status != ChatReply::Status::Ok)
      chain = reply.status == ChatReply::Status::Timeout ? kTimeout : kError;
    if (events.started()) {
      if (chain == kOk) {
        Map end;
        end.set("prompt_tokens", Value(reply.prompt_tokens));
        end.set("completion_tokens", Value(reply.completion_tokens));
        end.set("finish_reason", Value(reply.finish_reason));
        events.send("done", Value(std::move(end)));
      } else {
        events.error("error", why);
      }
      events.end();
    }
    if (chain != kOk) return fail(ctx, chain, why);
    ctx.vars.set(usage_.slot(), usage_value(reply.prompt_tokens, reply.completion_tokens,
                                            reply.finish_reason, r.model));
    ctx.vars.set(output_.slot(), std::move(answer));
    ctx.vars.erase(error_);
    return kOk;
  }

  void counters(std::vector<std::pair<std::string, uint64_t>>& out) const override {
    stats_.report(out);
  }

 private:
  int fail(ExecContext& ctx, int chain, std::string why) const {
    ctx.vars.erase(output_.slot());
    ctx.vars.set(error_, Value(std::move(why)));
    return chain;
  }

  static constexpr int kOk = 0, kError = 1, kTimeout = 2;
  ModelSettings model_;
  Param json_, stream_, output_, usage_;
  uint32_t error_ = 0;
  mutable Usage stats_;
};

std::unique_ptr<Rule> make_llm_chat(CompileContext& cc) {
  if (!ModelSettings::check(cc)) return nullptr;
  return std::make_unique<LlmChatRule>(cc, cc.params());
}

// ---------------------------------------------------------------------------------------
// AiAgent: conversation memory

/// Keeps at most `max` messages, cutting only before a user message so a tool call is
/// never separated from its result.
void trim_history(std::vector<Message>& messages, size_t max) {
  if (messages.size() <= max) return;
  size_t cut = messages.size() - max;
  while (cut < messages.size() && messages[cut].role != Message::Role::User) ++cut;
  messages.erase(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(cut));
}

// ---------------------------------------------------------------------------------------
// AiAgent

RuleSpec ai_agent_spec() {
  RuleSpec s;
  s.name = "AiAgent";
  s.group = "AI";
  s.doc =
      "Runs a language model in a loop whose tools are rule sets of this configuration: the "
      "model gets the prompt and the tools (each rule set's description, and a JSON schema "
      "derived from its \"params\"), may call tools, gets their results, and goes on until it "
      "answers. A tool call runs the rule set on its own variables (the globals and the "
      "arguments); its result is the rule set's RESULT variable (see docs/ai.md). Takes "
      "`answered` with the answer in `output`, `budget_exceeded` when the model still wanted "
      "tools after max_steps model calls, and `error` when a model call failed or timed out "
      "(AI_ERROR says why). With `conversation`, the exchange is remembered under that id "
      "for memory_ttl_s seconds and the next request with the same id continues it: in the "
      "agent's memory, or with memory: database in a table of a configured database that "
      "every agent using it shares. Every "
      "step (prompt, tool call, tool result, tokens) is noted in the trace; `usage` gets "
      "{steps, tool_calls, prompt_tokens, completion_tokens}. With `stream`, the rule answers "
      "the request as server-sent events: tool_call and tool_result events, the answer's "
      "words as data {\"delta\"}, then done (or error, budget_exceeded).";
  s.params = model_params(60000);
  s.params.push_back(optional("tools", ParamType::List, Value(List()),
                              "Rule set names the model may call; each needs a description."));
  s.params.push_back(optional("max_steps", ParamType::Number, Value(6),
                              "The most model calls for one request, 1 to 50."));
  s.params.push_back(optional("conversation", ParamType::String, Value(""),
                              "The memory key (a template, e.g. ${session}); empty: no memory."));
  s.params.push_back({"memory",
                      ParamType::String,
                      false,
                      Value("memory"),
                      "Where conversations are kept: memory (this agent, until a new deploy) or "
                      "database (the table memory_table of memory_database, shared by every "
                      "agent using it).",
                      {"memory", "database"}});
  s.params.push_back(optional("memory_database", ParamType::String, Value(""),
                              "With memory: database, a database name from cap.json `databases`."));
  s.params.push_back(optional("memory_table", ParamType::String, Value("cap_conversations"),
                              "With memory: database, the table (created on first use)."));
  s.params.push_back(optional("memory_ttl_s", ParamType::Number, Value(3600),
                              "Seconds a conversation is kept after its last use."));
  s.params.push_back(optional("memory_messages", ParamType::Number, Value(40),
                              "The most messages a conversation keeps (older ones are dropped)."));
  s.params.push_back(optional("output", ParamType::Variable, Value("AI_ANSWER"),
                              "The variable that gets the answer."));
  s.params.push_back(optional("usage", ParamType::Variable, Value("AI_USAGE"),
                              "The variable that gets the step and token counts."));
  s.params.push_back(optional("stream", ParamType::Boolean, Value(false),
                              "Send the steps (tool_call, tool_result) and the answer's words to "
                              "the client as server-sent events (this rule then makes the "
                              "response)."));
  s.chain_points = {"answered", "error", "budget_exceeded"};
  s.may_wait = true;
  return s;
}

class AiAgentRule : public Rule {
 public:
  AiAgentRule(CompileContext& cc, const Params& p, std::vector<std::string> tools,
              std::unique_ptr<ConversationStore> memory)
      : model_(p),
        tools_(std::move(tools)),
        max_steps_(p["max_steps"]),
        conversation_(p["conversation"]),
        ttl_(p["memory_ttl_s"]),
        keep_(p["memory_messages"]),
        output_(p["output"]),
        usage_(p["usage"]),
        stream_(p["stream"]),
        memory_(std::move(memory)) {
    error_ = cc.env().symbols.intern("AI_ERROR");
  }

  int execute(ExecContext& ctx) const override {
    ChatRequest r;
    try {
      r = model_.request(ctx);
    } catch (const EvalError& e) {
      return fail(ctx, kError, e.what());
    }
    int max_steps = static_cast<int>(number_in(max_steps_, ctx, "max_steps", 1, 50));
    std::string conversation = conversation_.text(ctx);
    int64_t ttl_ms = static_cast<int64_t>(number_in(ttl_, ctx, "memory_ttl_s", 1, 31536000)) * 1000;
    size_t keep = static_cast<size_t>(number_in(keep_, ctx, "memory_messages", 2, 1000));

    const Configuration& cfg = ctx.runtime().configuration();
    std::vector<const RuleSet*> tools;
    for (const std::string& name : tools_) {
      const RuleSet* rs = cfg.find_ruleset(name);
      if (!rs) return fail(ctx, kError, "tool rule set '" + name + "' does not exist");
      tools.push_back(rs);
      r.tools.push_back({rs->name, rs->description, tool_schema(*rs)});
    }

    if (!conversation.empty()) {
      std::string why;
      if (!memory_->load(ctx, conversation, &r.messages, &why)) return fail(ctx, kError, why);
    }
    size_t first_new = r.messages.size();
    Message user;
    user.content = model_.prompt(ctx);
    r.messages.push_back(std::move(user));
    if (ctx.tracing())
      ctx.note(conversation.empty() ? std::string("no conversation memory")
                                    : "conversation '" + clip(conversation, 80) +
                                          "': " + std::to_string(first_new) + " earlier messages");

    // With `stream`, the response is begun at the first event (words or a tool call); a
    // failure before that takes the chain points with no response made.
    std::optional<EventStream> events;
    if (stream_.boolean(ctx)) events.emplace(ctx);
    const llm::Delta delta = [&events](std::string_view text) { return events->delta(text); };
    EventStream* stream = events ? &*events : nullptr;
    const std::string gone = "the client went away while the answer was streamed";

    uint64_t prompt_tokens = 0, completion_tokens = 0, tool_calls = 0;
    auto usage_map = [&](int steps) {
      Map m;
      m.set("steps", Value(steps));
      m.set("tool_calls", Value(tool_calls));
      m.set("prompt_tokens", Value(prompt_tokens));
      m.set("completion_tokens", Value(completion_tokens));
      return m;
    };
    auto set_usage = [&](int steps) { ctx.vars.set(usage_.slot(), Value(usage_map(steps))); };
    for (int step = 1; step <= max_steps; ++step) {
      ChatReply reply = call_model(ctx, r, stats_, step, stream ? &delta : nullptr);
      prompt_tokens += reply.prompt_tokens;
      completion_tokens += reply.completion_tokens;
      if (stream && stream->client_gone()) {
        set_usage(step);
        return fail(ctx, kError, gone, stream);
      }
      if (reply.status != ChatReply::Status::Ok) {
        set_usage(step);
        return fail(ctx, kError,
                    (reply.status == ChatReply::Status::Timeout ? "timeout: " : "") + reply.error,
                    stream);
      }
      Message said;
      said.role = Message::Role::Assistant;
      said.content = reply.content;
      said.tool_calls = reply.tool_calls;
      r.messages.push_back(said);
      if (reply.tool_calls.empty()) {
        if (reply.content.empty() && reply.finish_reason == "length") {
          set_usage(step);
          return fail(ctx, kError, "the model's answer was cut off at max_tokens before any text",
                      stream);
        }
        if (!conversation.empty()) {
          trim_history(r.messages, keep);
          std::string why;
          if (!memory_->save(ctx, conversation, r.messages, ttl_ms, &why)) {
            // The answer stands; the next request starts from what the store still holds.
            ctx.logger().log(LogLevel::Warn, why);
            if (ctx.tracing()) ctx.note(why);
          }
        }
        set_usage(step);
        if (stream) {
          Map done = usage_map(step);
          done.set("finish_reason", Value(reply.finish_reason));
          stream->send("done", Value(std::move(done)));
          stream->end();
        }
        ctx.vars.set(output_.slot(), Value(reply.content));
        ctx.vars.erase(error_);
        return kAnswered;
      }
      if (step == max_steps) break;  // no budget left to show the model the results
      for (const llm::ToolCall& call : reply.tool_calls) {
        ++tool_calls;
        Message result;
        result.role = Message::Role::Tool;
        result.tool_call_id = call.id;
        result.tool_name = call.name;
        const RuleSet* tool = nullptr;
        for (const RuleSet* t : tools)
          if (t->name == call.name) tool = t;
        if (ctx.tracing())
          ctx.note("step " + std::to_string(step) + ": tool call " + call.name + " " +
                   clip(call.arguments_text.empty() ? std::string("{}") : call.arguments_text));
        if (stream && !stream->send("tool_call", step_event(step, call, nullptr))) {
          set_usage(step);
          return fail(ctx, kError, gone, stream);
        }
        if (!tool) {
          result.tool_error = true;
          result.content = "error: there is no tool named '" + call.name + "'";
        } else if (call.arguments.is_null() && !call.arguments_text.empty() &&
                   call.arguments_text != "{}") {
          result.tool_error = true;
          result.content =
              "error: the arguments are not a JSON object: " + clip(call.arguments_text, 100);
        } else {
          ToolOutcome outcome = run_tool(ctx.runtime(), *tool, call.arguments, &ctx);
          result.tool_error = outcome.error;
          result.content = outcome.error ? "error: " + outcome.text : outcome.text;
        }
        if (ctx.tracing())
          ctx.note("step " + std::to_string(step) + ": tool result " + call.name + " " +
                   clip(result.content));
        if (stream && !stream->send("tool_result", step_event(step, call, &result))) {
          set_usage(step);
          return fail(ctx, kError, gone, stream);
        }
        r.messages.push_back(std::move(result));
      }
    }
    set_usage(max_steps);
    return fail(ctx, kBudget,
                "no answer after " + std::to_string(max_steps) +
                    " model calls (max_steps): the model still asked for tools",
                stream);
  }

  void counters(std::vector<std::pair<std::string, uint64_t>>& out) const override {
    stats_.report(out);
  }

 private:
  /// Takes `chain` with AI_ERROR = why; a stream already begun ends with an `error` or
  /// `budget_exceeded` event.
  int fail(ExecContext& ctx, int chain, std::string why, EventStream* stream = nullptr) const {
    if (ctx.tracing()) ctx.note((chain == kBudget ? "budget exceeded: " : "error: ") + why);
    if (stream && stream->started()) {
      stream->error(chain == kBudget ? "budget_exceeded" : "error", why);
      stream->end();
    }
    ctx.vars.erase(output_.slot());
    ctx.vars.set(error_, Value(std::move(why)));
    return chain;
  }

  /// A tool_call event (result null) or a tool_result event of the stream.
  static Value step_event(int step, const llm::ToolCall& call, const Message* result) {
    Map m;
    m.set("step", Value(step));
    m.set("id", Value(call.id));
    m.set("name", Value(call.name));
    if (!result) {
      m.set("arguments", call.arguments.is_map() ? call.arguments : Value(call.arguments_text));
    } else {
      m.set("result", Value(result->content));
      m.set("error", Value(result->tool_error));
    }
    return Value(std::move(m));
  }

  static constexpr int kAnswered = 0, kError = 1, kBudget = 2;
  ModelSettings model_;
  std::vector<std::string> tools_;
  Param max_steps_, conversation_, ttl_, keep_, output_, usage_, stream_;
  uint32_t error_ = 0;
  mutable Usage stats_;
  std::unique_ptr<ConversationStore> memory_;
};

/// The conversation store a node's memory parameters choose; nullptr after reporting
/// errors.
std::unique_ptr<ConversationStore> compile_memory(CompileContext& cc) {
  const Params& p = cc.params();
  const Param& kind = p["memory"];
  const Param& database = p["memory_database"];
  const Param& table = p["memory_table"];
  bool ok = true;
  for (std::string_view name : {"memory", "memory_database", "memory_table"}) {
    if (!p[name].is_constant()) {
      cc.error(name, "must be written in the rule set, not a template");
      ok = false;
    }
  }
  if (!ok) return nullptr;
  std::string db = database.constant_value().to_text();
  std::string tbl = table.constant_value().to_text();
  if (kind.constant_value().to_text() != "database") {
    if (!db.empty()) {
      cc.error("memory_database", "is used only with memory: database (memory is memory)");
      return nullptr;
    }
    return memory_conversations();
  }
  if (db.empty()) {
    cc.error("memory_database",
             "memory: database needs memory_database, a database name from cap.json `databases`");
    ok = false;
  } else if (!cc.databases().count(db)) {
    std::string names;
    for (auto& [k, v] : cc.databases()) names += (names.empty() ? "" : ", ") + k;
    cc.error("memory_database",
             "no database '" + db + "' in cap.json `databases` (" +
                 (names.empty() ? std::string("it names none") : "it names " + names) + ")");
    ok = false;
  }
  if (!valid_table_name(tbl)) {
    cc.error("memory_table",
             "must be a plain table name (a letter or _, then letters, digits "
             "or _, at most 63), got '" +
                 tbl + "'");
    ok = false;
  }
  if (!ok) return nullptr;
  return database_conversations(std::move(db), std::move(tbl), cc.node_id());
}

std::unique_ptr<Rule> make_ai_agent(CompileContext& cc) {
  bool ok = ModelSettings::check(cc) && check_number(cc, "max_steps", 1, 50, true) &&
            check_number(cc, "memory_ttl_s", 1, 31536000, true) &&
            check_number(cc, "memory_messages", 2, 1000, true);
  const Param& tools = cc.params()["tools"];
  std::vector<std::string> names;
  if (!tools.is_constant() || !tools.constant_value().is_list()) {
    cc.error("tools", "must be a list of rule set names written in the rule set");
    return nullptr;
  }
  for (const Value& v : tools.constant_value().as_list()) {
    if (!v.is_string() || v.as_string().empty()) {
      cc.error("tools", "must hold rule set names, got " + to_json(v));
      ok = false;
      continue;
    }
    const std::string& name = v.as_string();
    const std::string* text = cc.package().find("rulesets/" + name + ".json");
    if (!text) {
      cc.error("tools",
               "rule set '" + name + "' does not exist (there is no rulesets/" + name + ".json)");
      ok = false;
      continue;
    }
    std::string err;
    Value doc = json_parse(*text, &err);
    const Value* description = doc.is_map() ? doc.as_map().find("description") : nullptr;
    if (err.empty() &&
        (!description || !description->is_string() || description->as_string().empty())) {
      cc.error("tools", "rule set '" + name +
                            "' needs a \"description\": it tells the model what the tool does");
      ok = false;
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      cc.error("tools", "rule set '" + name + "' is listed twice");
      ok = false;
    }
    names.push_back(name);
  }
  std::unique_ptr<ConversationStore> memory = compile_memory(cc);
  if (!ok || !memory) return nullptr;
  return std::make_unique<AiAgentRule>(cc, cc.params(), std::move(names), std::move(memory));
}

}  // namespace

void register_ai(RuleRegistry& registry) {
  registry.add(llm_chat_spec(), make_llm_chat);
  registry.add(ai_agent_spec(), make_ai_agent);
}

}  // namespace cap::rules

#include "rules/llm_client.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/span_clock.h"
#include "net/sigv4.h"

namespace cap::rules::llm {
namespace {

std::string trim_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

/// A short, single-line excerpt of a provider's error body (never our request).
std::string excerpt(std::string_view body) {
  std::string out(body.substr(0, 300));
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  if (body.size() > 300) out += "...";
  return out;
}

const Value* member(const Value& v, std::string_view key) {
  return v.is_map() ? v.as_map().find(key) : nullptr;
}

std::string text_member(const Value& v, std::string_view key) {
  const Value* m = member(v, key);
  return m && m->is_string() ? m->as_string() : std::string();
}

uint64_t count_member(const Value& v, std::string_view key) {
  const Value* m = member(v, key);
  return m && m->is_number() && m->as_number() >= 0 ? static_cast<uint64_t>(m->as_number()) : 0;
}

/// The message a provider's error body carries ({"error": {"message": ...}} for OpenAI,
/// {"message": ...} for Bedrock), or an excerpt of the body.
std::string provider_error(const std::string& body) {
  std::string err;
  Value v = json_parse(body, &err);
  if (err.empty()) {
    if (const Value* e = member(v, "error")) {
      if (e->is_string()) return excerpt(e->as_string());
      std::string m = text_member(*e, "message");
      if (!m.empty()) return excerpt(m);
    }
    std::string m = text_member(v, "message");
    if (m.empty()) m = text_member(v, "Message");
    if (!m.empty()) return excerpt(m);
  }
  return excerpt(body);
}

// ---------------------------------------------------------------------------------------
// OpenAI-compatible chat completions

Value openai_body(const ChatRequest& r) {
  Map body;
  body.set("model", Value(r.model));
  List messages;
  if (!r.system.empty()) {
    Map m;
    m.set("role", Value("system"));
    m.set("content", Value(r.system));
    messages.push_back(Value(std::move(m)));
  }
  for (const Message& msg : r.messages) {
    Map m;
    switch (msg.role) {
      case Message::Role::User:
        m.set("role", Value("user"));
        m.set("content", Value(msg.content));
        break;
      case Message::Role::Assistant: {
        m.set("role", Value("assistant"));
        m.set("content",
              msg.tool_calls.empty() || !msg.content.empty() ? Value(msg.content) : Value());
        if (!msg.tool_calls.empty()) {
          List calls;
          for (const ToolCall& c : msg.tool_calls) {
            Map fn;
            fn.set("name", Value(c.name));
            fn.set("arguments",
                   Value(c.arguments_text.empty() ? std::string("{}") : c.arguments_text));
            Map call;
            call.set("id", Value(c.id));
            call.set("type", Value("function"));
            call.set("function", Value(std::move(fn)));
            calls.push_back(Value(std::move(call)));
          }
          m.set("tool_calls", Value(std::move(calls)));
        }
        break;
      }
      case Message::Role::Tool:
        m.set("role", Value("tool"));
        m.set("tool_call_id", Value(msg.tool_call_id));
        m.set("content", Value(msg.content));
        break;
    }
    messages.push_back(Value(std::move(m)));
  }
  body.set("messages", Value(std::move(messages)));
  if (r.temperature >= 0) body.set("temperature", Value(r.temperature));
  if (r.max_tokens > 0) body.set("max_tokens", Value(r.max_tokens));
  if (r.json) {
    Map format;
    format.set("type", Value("json_object"));
    body.set("response_format", Value(std::move(format)));
  }
  if (r.stream) {
    body.set("stream", Value(true));
    Map options;
    options.set("include_usage", Value(true));
    body.set("stream_options", Value(std::move(options)));
  }
  if (!r.tools.empty()) {
    List tools;
    for (const ToolSpec& t : r.tools) {
      Map fn;
      fn.set("name", Value(t.name));
      fn.set("description", Value(t.description));
      fn.set("parameters", t.schema);
      Map tool;
      tool.set("type", Value("function"));
      tool.set("function", Value(std::move(fn)));
      tools.push_back(Value(std::move(tool)));
    }
    body.set("tools", Value(std::move(tools)));
  }
  return Value(std::move(body));
}

ChatReply parse_openai(const Value& v) {
  ChatReply out;
  const Value* choices = member(v, "choices");
  if (!choices || !choices->is_list() || choices->as_list().empty()) {
    out.error = "the model's answer has no choices";
    return out;
  }
  const Value& choice = choices->as_list()[0];
  const Value* message = member(choice, "message");
  if (!message || !message->is_map()) {
    out.error = "the model's answer has no message";
    return out;
  }
  out.finish_reason = text_member(choice, "finish_reason");
  if (const Value* c = member(*message, "content"); c && !c->is_null()) {
    if (!c->is_string()) {
      out.error = "the model's message content is not text";
      return out;
    }
    out.content = c->as_string();
  }
  if (const Value* calls = member(*message, "tool_calls"); calls && !calls->is_null()) {
    if (!calls->is_list()) {
      out.error = "the model's tool_calls is not a list";
      return out;
    }
    for (const Value& c : calls->as_list()) {
      ToolCall call;
      call.id = text_member(c, "id");
      const Value* fn = member(c, "function");
      if (!fn) {
        out.error = "a tool call of the model names no function";
        return out;
      }
      call.name = text_member(*fn, "name");
      if (call.name.empty()) {
        out.error = "a tool call of the model names no function";
        return out;
      }
      if (const Value* a = member(*fn, "arguments")) {
        if (a->is_string()) {
          call.arguments_text = a->as_string();
          std::string err;
          Value args = json_parse(call.arguments_text.empty() ? "{}" : call.arguments_text, &err);
          if (err.empty() && args.is_map()) call.arguments = std::move(args);
        } else if (a->is_map()) {
          call.arguments = *a;
          call.arguments_text = to_json(*a);
        }
      }
      if (call.id.empty()) call.id = "call_" + std::to_string(out.tool_calls.size() + 1);
      out.tool_calls.push_back(std::move(call));
    }
  }
  if (const Value* usage = member(v, "usage")) {
    out.prompt_tokens = count_member(*usage, "prompt_tokens");
    out.completion_tokens = count_member(*usage, "completion_tokens");
  }
  out.status = ChatReply::Status::Ok;
  return out;
}

// ---------------------------------------------------------------------------------------
// Bedrock Converse

Value text_block(std::string text) {
  Map m;
  m.set("text", Value(std::move(text)));
  return Value(std::move(m));
}

Value bedrock_body(const ChatRequest& r) {
  Map body;
  List messages;
  for (const Message& msg : r.messages) {
    Map m;
    List content;
    switch (msg.role) {
      case Message::Role::User:
        m.set("role", Value("user"));
        content.push_back(text_block(msg.content));
        break;
      case Message::Role::Assistant:
        m.set("role", Value("assistant"));
        if (!msg.content.empty()) content.push_back(text_block(msg.content));
        for (const ToolCall& c : msg.tool_calls) {
          Map use;
          use.set("toolUseId", Value(c.id));
          use.set("name", Value(c.name));
          use.set("input", c.arguments.is_map() ? c.arguments : Value(Map()));
          Map block;
          block.set("toolUse", Value(std::move(use)));
          content.push_back(Value(std::move(block)));
        }
        break;
      case Message::Role::Tool: {
        // Bedrock carries tool results in a user message; consecutive results share one.
        Map result;
        result.set("toolUseId", Value(msg.tool_call_id));
        List parts;
        parts.push_back(text_block(msg.content));
        result.set("content", Value(std::move(parts)));
        result.set("status", Value(msg.tool_error ? "error" : "success"));
        Map block;
        block.set("toolResult", Value(std::move(result)));
        if (!messages.empty()) {
          const Value& last = messages.back();
          if (text_member(last, "role") == "user" && member(last, "content") &&
              !member(last, "content")->as_list().empty() &&
              member(member(last, "content")->as_list()[0], "toolResult")) {
            Map merged = last.as_map();
            List c = member(last, "content")->as_list();
            c.push_back(Value(std::move(block)));
            merged.set("content", Value(std::move(c)));
            messages.back() = Value(std::move(merged));
            continue;
          }
        }
        m.set("role", Value("user"));
        content.push_back(Value(std::move(block)));
        break;
      }
    }
    m.set("content", Value(std::move(content)));
    messages.push_back(Value(std::move(m)));
  }
  body.set("messages", Value(std::move(messages)));
  std::string system = r.system;
  if (r.json)
    system += std::string(system.empty() ? "" : "\n\n") +
              "Answer with a single JSON object and nothing else.";
  if (!system.empty()) {
    List s;
    s.push_back(text_block(system));
    body.set("system", Value(std::move(s)));
  }
  Map inference;
  if (r.temperature >= 0) inference.set("temperature", Value(r.temperature));
  if (r.max_tokens > 0) inference.set("maxTokens", Value(r.max_tokens));
  if (!inference.empty()) body.set("inferenceConfig", Value(std::move(inference)));
  if (!r.tools.empty()) {
    List tools;
    for (const ToolSpec& t : r.tools) {
      Map schema;
      schema.set("json", t.schema);
      Map spec;
      spec.set("name", Value(t.name));
      spec.set("description", Value(t.description));
      spec.set("inputSchema", Value(std::move(schema)));
      Map tool;
      tool.set("toolSpec", Value(std::move(spec)));
      tools.push_back(Value(std::move(tool)));
    }
    Map config;
    config.set("tools", Value(std::move(tools)));
    body.set("toolConfig", Value(std::move(config)));
  }
  return Value(std::move(body));
}

ChatReply parse_bedrock(const Value& v) {
  ChatReply out;
  const Value* output = member(v, "output");
  const Value* message = output ? member(*output, "message") : nullptr;
  const Value* content = message ? member(*message, "content") : nullptr;
  if (!content || !content->is_list()) {
    out.error = "the model's answer has no output message";
    return out;
  }
  for (const Value& block : content->as_list()) {
    if (const Value* t = member(block, "text"); t && t->is_string()) {
      out.content += t->as_string();
    } else if (const Value* use = member(block, "toolUse")) {
      ToolCall call;
      call.id = text_member(*use, "toolUseId");
      call.name = text_member(*use, "name");
      if (call.name.empty()) {
        out.error = "a tool call of the model names no tool";
        return out;
      }
      if (const Value* in = member(*use, "input"); in && in->is_map()) {
        call.arguments = *in;
        call.arguments_text = to_json(*in);
      }
      if (call.id.empty()) call.id = "tool_" + std::to_string(out.tool_calls.size() + 1);
      out.tool_calls.push_back(std::move(call));
    }
  }
  std::string stop = text_member(v, "stopReason");
  out.finish_reason = stop == "max_tokens" ? "length"
                      : stop == "tool_use" ? "tool_calls"
                      : stop == "end_turn" ? "stop"
                                           : stop;
  if (const Value* usage = member(v, "usage")) {
    out.prompt_tokens = count_member(*usage, "inputTokens");
    out.completion_tokens = count_member(*usage, "outputTokens");
  }
  out.status = ChatReply::Status::Ok;
  return out;
}

/// Splits "https://host:port/base" into scheme, host (with port) and path.
bool split_url(const std::string& url, std::string* scheme, std::string* host, std::string* path) {
  size_t s = url.find("://");
  if (s == std::string::npos) return false;
  *scheme = url.substr(0, s);
  size_t start = s + 3;
  size_t slash = url.find('/', start);
  *host = url.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
  *path = slash == std::string::npos ? "" : url.substr(slash);
  return !host->empty() && host->find('@') == std::string::npos;
}

/// Signs a Bedrock call in place (Signature V4, service "bedrock"). False with `error`.
bool sign_bedrock(const ChatRequest& r, HttpCall& call, std::string* error) {
  std::string scheme, host, path;
  if (!split_url(call.url, &scheme, &host, &path)) {
    *error = "base_url must be http(s)://host[:port][/path] without credentials";
    return false;
  }
  if (r.credentials.access_key_id.empty() || r.credentials.secret_access_key.empty()) {
    *error = "the credential needs access_key_id and secret_access_key for Bedrock";
    return false;
  }
  if (r.region.empty()) {
    *error = "Bedrock needs a region (the credential's region field, or AWS_REGION)";
    return false;
  }
  net::sigv4::Request req;
  req.method = call.method;
  req.host = host;
  req.path = path;
  req.headers = {{"content-type", "application/json"}};
  req.body = call.body;
  net::sigv4::Credentials creds{r.credentials.access_key_id, r.credentials.secret_access_key,
                                r.credentials.session_token};
  auto s = net::sigv4::sign_v4(req, creds, {r.region, "bedrock"}, std::chrono::system_clock::now());
  call.headers.emplace_back("Host", host);
  for (auto& h : s.headers) call.headers.push_back(h);
  return true;
}

}  // namespace

bool parse_provider(std::string_view name, Provider* out) {
  if (name == "openai")
    *out = Provider::OpenAi;
  else if (name == "bedrock")
    *out = Provider::Bedrock;
  else
    return false;
  return true;
}

HttpCall build_call(const ChatRequest& r) {
  HttpCall call;
  call.method = "POST";
  std::string base = trim_slash(r.base_url);
  if (r.provider == Provider::OpenAi) {
    call.url = base + "/chat/completions";
    call.body = to_json(openai_body(r));
    call.headers.emplace_back("Content-Type", "application/json");
    if (!r.credentials.api_key.empty())
      call.headers.emplace_back("Authorization", "Bearer " + r.credentials.api_key);
  } else {
    // Model ids hold ':' (anthropic.claude-3-haiku-20240307-v1:0); the path carries them
    // percent-encoded, and the signature covers the path as sent.
    std::string model;
    for (unsigned char c : r.model) {
      bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '.' || c == '_' || c == '~';
      if (plain) {
        model += static_cast<char>(c);
      } else {
        static const char* hex = "0123456789ABCDEF";
        model += '%';
        model += hex[c >> 4];
        model += hex[c & 15];
      }
    }
    call.url = base + "/model/" + model + "/converse";
    call.body = to_json(bedrock_body(r));
    call.headers.emplace_back("Content-Type", "application/json");
  }
  return call;
}

ChatReply parse_answer(Provider provider, const std::string& body) {
  std::string err;
  Value v = json_parse(body, &err);
  if (!err.empty()) {
    ChatReply out;
    out.error = "the model's answer is not valid JSON (" + err + ")";
    return out;
  }
  return provider == Provider::OpenAi ? parse_openai(v) : parse_bedrock(v);
}

namespace {

std::string timeout_message(const ChatRequest& r) {
  return "no answer from the model within " + std::to_string(r.timeout_ms) + " ms";
}

/// The error for a call that got no answer (status 0) or an error status, and whether it
/// may be tried again (failed connections, 429, 5xx).
ChatReply failed_call(const HttpReply& reply, bool* retry) {
  ChatReply out;
  out.status = ChatReply::Status::Error;
  if (reply.status == 0) {
    out.error = reply.error.empty() ? "no answer from the model" : reply.error;
    *retry = true;
  } else {
    out.error = "the model's endpoint answered " + std::to_string(reply.status) + ": " +
                provider_error(reply.body);
    *retry = reply.status == 429 || reply.status >= 500;
  }
  return out;
}

/// Runs `attempt` (given the call with the time left as its timeout) until it succeeds, may
/// not be retried, or r.retries or the deadline run out; pauses 250 ms, 500 ms, 1 s...
/// between attempts.
ChatReply with_retries(const ChatRequest& r, int64_t deadline,
                       const std::function<ChatReply(const HttpCall&, bool* retry)>& attempt) {
  const HttpCall call = build_call(r);
  for (int n = 0;; ++n) {
    int64_t left = deadline - coarse_clock_ms();
    if (left <= 0) {
      ChatReply out;
      out.status = ChatReply::Status::Timeout;
      out.error = timeout_message(r);
      return out;
    }
    HttpCall one = call;
    one.timeout_ms = static_cast<int>(left);
    bool retry = false;
    ChatReply out = attempt(one, &retry);
    out.attempts = n + 1;
    if (out.status != ChatReply::Status::Error || !retry || n >= r.retries) return out;
    int64_t pause = std::min<int64_t>(250LL << n, 4000);
    if (coarse_clock_ms() + pause >= deadline) return out;
    std::this_thread::sleep_for(std::chrono::milliseconds(pause));
  }
}

/// Reads an OpenAI answer streamed as server-sent events ("data: {chunk}" events, then
/// "data: [DONE]"), handing each piece of text to the delta callback.
class EventReader {
 public:
  EventReader(ChatReply& out, const Delta& delta) : out_(out), delta_(delta) {}

  /// Takes the next bytes of the body; false to stop reading (the caller stopped, or the
  /// stream reported an error).
  bool feed(std::string_view bytes) {
    buffer_.append(bytes);
    for (;;) {
      size_t end = buffer_.find("\n\n");
      size_t crlf = buffer_.find("\r\n\r\n");
      size_t len = 2;
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
        end = crlf;
        len = 4;
      }
      if (end == std::string::npos) return true;
      std::string event = buffer_.substr(0, end);
      buffer_.erase(0, end + len);
      if (!event_(event)) return false;
    }
  }
  bool done() const { return done_; }
  bool saw_events() const { return events_ > 0; }
  /// The bytes not yet part of an event (a whole JSON answer from a server that ignored
  /// "stream").
  const std::string& rest() const { return buffer_; }
  /// After [DONE]: moves the tool calls into the reply, their arguments parsed. False (with
  /// the reply's error) when one names no function.
  bool finish() {
    for (ToolCall& call : calls_) {
      if (call.name.empty()) {
        out_.error = "a tool call of the model names no function";
        return false;
      }
      std::string err;
      Value args = json_parse(call.arguments_text.empty() ? "{}" : call.arguments_text, &err);
      if (err.empty() && args.is_map()) call.arguments = std::move(args);
      if (call.id.empty()) call.id = "call_" + std::to_string(out_.tool_calls.size() + 1);
      out_.tool_calls.push_back(std::move(call));
    }
    calls_.clear();
    return true;
  }

 private:
  bool event_(const std::string& event) {
    std::string data;
    size_t pos = 0;
    while (pos <= event.size()) {
      size_t nl = event.find('\n', pos);
      std::string_view line(event.data() + pos,
                            (nl == std::string::npos ? event.size() : nl) - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.starts_with("data:")) {
        line.remove_prefix(5);
        if (line.starts_with(' ')) line.remove_prefix(1);
        if (!data.empty()) data += '\n';
        data.append(line);
      }
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    if (data.empty()) return true;  // a comment or keep-alive
    ++events_;
    if (data == "[DONE]") {
      done_ = true;
      return true;
    }
    std::string err;
    Value chunk = json_parse(data, &err);
    if (!err.empty()) {
      out_.error = "the model's stream holds an event that is not JSON (" + err + ")";
      return false;
    }
    if (const Value* e = member(chunk, "error")) {
      std::string m = e->is_string() ? e->as_string() : text_member(*e, "message");
      out_.error = "the model's stream reported an error: " + excerpt(m.empty() ? to_json(*e) : m);
      return false;
    }
    if (const Value* usage = member(chunk, "usage"); usage && usage->is_map()) {
      out_.prompt_tokens = count_member(*usage, "prompt_tokens");
      out_.completion_tokens = count_member(*usage, "completion_tokens");
    }
    const Value* choices = member(chunk, "choices");
    if (!choices || !choices->is_list() || choices->as_list().empty()) return true;
    const Value& choice = choices->as_list()[0];
    std::string finish = text_member(choice, "finish_reason");
    if (!finish.empty()) out_.finish_reason = finish;
    const Value* delta = member(choice, "delta");
    if (!delta) return true;
    if (const Value* calls = member(*delta, "tool_calls"); calls && calls->is_list()) {
      if (!add_tool_call_pieces(calls->as_list())) return false;
    }
    std::string text = text_member(*delta, "content");
    if (text.empty()) return true;
    out_.content += text;
    ++deltas_;
    return delta_(text);
  }

  /// Tool calls arrive in pieces keyed by their index: the first names the call (id and
  /// function name), the following ones add to its arguments' text.
  bool add_tool_call_pieces(const List& pieces) {
    for (const Value& piece : pieces) {
      const Value* index = member(piece, "index");
      size_t i = index && index->is_number() && index->as_number() >= 0
                     ? static_cast<size_t>(index->as_number())
                     : calls_.size();
      if (i > 127) {
        out_.error = "the model's stream holds a tool call with the index " + std::to_string(i);
        return false;
      }
      if (i >= calls_.size()) calls_.resize(i + 1);
      ToolCall& call = calls_[i];
      std::string id = text_member(piece, "id");
      if (!id.empty()) call.id = id;
      if (const Value* fn = member(piece, "function")) {
        call.name += text_member(*fn, "name");
        call.arguments_text += text_member(*fn, "arguments");
      }
    }
    return true;
  }

  ChatReply& out_;
  const Delta& delta_;
  std::string buffer_;
  std::vector<ToolCall> calls_;
  int events_ = 0, deltas_ = 0;
  bool done_ = false;
};

}  // namespace

ChatReply chat_stream(HttpClient& http, const ChatRequest& request, const Delta& delta) {
  if (request.provider != Provider::OpenAi) {
    ChatReply whole = chat(http, request);
    if (whole.status == ChatReply::Status::Ok && !whole.content.empty()) delta(whole.content);
    return whole;
  }
  ChatRequest r = request;
  r.stream = true;
  const int64_t deadline = coarse_clock_ms() + std::max(1, r.timeout_ms);
  return with_retries(r, deadline, [&](const HttpCall& one, bool* retry) {
    ChatReply got;
    EventReader events(got, delta);
    std::string error_body;
    bool stopped = false, late = false;
    HttpReply reply = http.call_pieces(one, [&](int status, std::string_view piece) {
      if (status != 200) {
        if (error_body.size() < 65536) error_body.append(piece);
        return true;
      }
      if (coarse_clock_ms() > deadline) {
        late = true;
        return false;
      }
      if (!events.feed(piece)) {
        stopped = true;
        return false;
      }
      return true;
    });
    bool started = !got.content.empty();
    if (late || (reply.timed_out && (reply.status == 0 || started))) {
      got.status = ChatReply::Status::Timeout;
      got.error = timeout_message(r);
      return got;
    }
    if (reply.status != 200) {
      reply.body = std::move(error_body);
      return failed_call(reply, retry);
    }
    if (stopped) {
      if (got.error.empty()) got.error = "the answer was not read to its end";
    } else if (!reply.error.empty()) {
      got.error = "the model's stream broke off: " + reply.error;
    } else if (!events.saw_events()) {
      // The endpoint ignored "stream" and answered whole.
      ChatReply whole = parse_answer(Provider::OpenAi, events.rest());
      if (whole.status == ChatReply::Status::Ok && !whole.content.empty()) delta(whole.content);
      return whole;
    } else if (!events.done()) {
      got.error = "the model's stream ended before [DONE]";
    } else if (events.finish()) {
      got.status = ChatReply::Status::Ok;
      return got;
    }
    got.status = ChatReply::Status::Error;
    return got;
  });
}

ChatReply chat(HttpClient& http, const ChatRequest& r) {
  const int64_t deadline = coarse_clock_ms() + std::max(1, r.timeout_ms);
  return with_retries(r, deadline, [&](const HttpCall& call, bool* retry) {
    HttpCall one = call;
    if (r.provider == Provider::Bedrock) {
      ChatReply out;
      if (!sign_bedrock(r, one, &out.error)) return out;
    }
    HttpReply reply = http.call(one);
    if (reply.timed_out && reply.status == 0) {
      ChatReply out;
      out.status = ChatReply::Status::Timeout;
      out.error = timeout_message(r);
      return out;
    }
    if (reply.status != 200) return failed_call(reply, retry);
    return parse_answer(r.provider, reply.body);
  });
}

}  // namespace cap::rules::llm

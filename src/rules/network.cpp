#include "rules/network.h"

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cap/engine.h"

namespace cap::rules {
namespace {

// ---------------------------------------------------------------------------------------
// Helpers

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool safe_header_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

/// Header lines from a map parameter's value; names must be tokens, values single-line.
HeaderLines header_lines(const Value& v, std::string_view param) {
  HeaderLines lines;
  if (v.is_null()) return lines;
  if (!v.is_map())
    throw EvalError(std::string(param) + " must be a map of header name to value, got a " +
                    type_name(v.type()));
  for (const auto& [name, value] : v.as_map()) {
    if (!is_token(name))
      throw EvalError(std::string(param) + ": '" + name + "' is not a valid header name");
    std::string text = value.to_text();
    if (!safe_header_value(text))
      throw EvalError(std::string(param) + ": the value of '" + name + "' holds a line break");
    lines.emplace_back(name, std::move(text));
  }
  return lines;
}

std::vector<std::string> name_list(const Value& v, std::string_view param) {
  std::vector<std::string> names;
  if (v.is_null()) return names;
  if (v.is_string()) {
    names.push_back(v.as_string());
    return names;
  }
  if (!v.is_list())
    throw EvalError(std::string(param) + " must be a list of header names, got a " +
                    type_name(v.type()));
  for (const Value& e : v.as_list()) names.push_back(e.to_text());
  return names;
}

/// Checks a constant map of headers at load; reports on `cc`.
bool check_constant_headers(CompileContext& cc, std::string_view param) {
  const Param& p = cc.params()[param];
  if (!p.is_constant() || !p.constant_value().is_map()) return true;
  bool ok = true;
  for (const auto& [name, value] : p.constant_value().as_map()) {
    if (!is_token(name)) {
      cc.error(param, "'" + name + "' is not a valid header name");
      ok = false;
    } else if (!safe_header_value(value.to_text())) {
      cc.error(param, "the value of '" + name + "' must not hold a line break");
      ok = false;
    }
  }
  return ok;
}

int timeout_value(const Param& p, ExecContext& ctx) {
  double d = p.number(ctx);
  if (!std::isfinite(d) || d < 1 || d > 3600000)
    throw EvalError("timeout_ms must be from 1 to 3600000, got " + Value(d).to_text());
  return static_cast<int>(d);
}

bool check_constant_timeout(CompileContext& cc) {
  const Param& p = cc.params()["timeout_ms"];
  if (!p.is_constant()) return true;
  const Value& v = p.constant_value();
  if (!v.is_number() || !std::isfinite(v.as_number()) || v.as_number() < 1 ||
      v.as_number() > 3600000) {
    cc.error("timeout_ms",
             "must be a number of milliseconds from 1 to 3600000, got " + v.to_text());
    return false;
  }
  return true;
}

/// The reply's headers as a map of lower-case name to value (repeats joined with ", ").
Value headers_value(const HttpReply& reply) {
  Map m;
  for (auto& [name, value] : reply.headers) {
    std::string key = lower(name);
    if (Value* existing = m.find(key)) {
      *existing = Value(existing->to_text() + ", " + value);
    } else {
      m.append(std::move(key), Value(value));
    }
  }
  return Value(std::move(m));
}

bool valid_method(std::string_view m) { return is_token(m); }

// ---------------------------------------------------------------------------------------
// HttpClient

RuleSpec http_client_spec() {
  RuleSpec s;
  s.name = "HttpClient";
  s.group = "HTTP";
  s.doc =
      "Calls any HTTP or HTTPS URL and puts the answer into `output` as a map {status, "
      "headers, body} (header names in lower case). Takes `ok` when an answer came, whatever "
      "its status (compare output.status to tell success from failure), `timeout` when none "
      "came within timeout_ms, and `error` when none came at all (refused, bad address, TLS "
      "failure); then output holds {status: 0, error: why}. The call waits, so a "
      "configuration using it runs its requests off the event loops.";
  s.params = {
      {"url", ParamType::String, true, {}, "The URL to call (http:// or https://).", {}},
      {"method", ParamType::String, false, Value("GET"), "The HTTP method.", {}},
      {"headers", ParamType::Map, false, {}, "Request headers: name to value (templates).", {}},
      {"body", ParamType::String, false, Value(""), "The request body (a template).", {}},
      {"timeout_ms",
       ParamType::Number,
       false,
       Value(10000),
       "Milliseconds to wait for the whole answer.",
       {}},
      {"output",
       ParamType::Variable,
       false,
       Value("HTTP_RESPONSE"),
       "The variable that gets {status, headers, body}.",
       {}},
  };
  s.chain_points = {"ok", "error", "timeout"};
  s.may_wait = true;
  return s;
}

class HttpClientRule : public Rule {
 public:
  explicit HttpClientRule(const Params& p)
      : url_(p["url"]),
        method_(p["method"]),
        headers_(p["headers"]),
        body_(p["body"]),
        timeout_(p["timeout_ms"]),
        output_(p["output"]) {}

  int execute(ExecContext& ctx) const override {
    HttpCall call;
    call.url = url_.text(ctx);
    if (call.url.rfind("http://", 0) != 0 && call.url.rfind("https://", 0) != 0)
      throw EvalError("url must start with http:// or https://, got '" + call.url + "'");
    call.method = method_.text(ctx);
    if (!valid_method(call.method)) throw EvalError("method '" + call.method + "' is not valid");
    if (headers_.present()) {
      Value scratch;
      call.headers = header_lines(headers_.eval(ctx, scratch), "headers");
    }
    call.body = body_.text(ctx);
    call.timeout_ms = timeout_value(timeout_, ctx);
    HttpClient* http = ctx.services.http;
    if (!http) throw EvalError("this host has no HTTP client");
    HttpReply reply = http->call(call);
    Map out;
    out.set("status", Value(reply.status));
    if (reply.status == 0) {
      out.set("error", Value(reply.error.empty() ? std::string("no answer") : reply.error));
      ctx.vars.set(output_.slot(), Value(std::move(out)));
      return reply.timed_out ? kTimeout : kError;
    }
    out.set("headers", headers_value(reply));
    out.set("body", Value(std::move(reply.body)));
    ctx.vars.set(output_.slot(), Value(std::move(out)));
    return kOk;
  }

 private:
  static constexpr int kOk = 0, kError = 1, kTimeout = 2;
  Param url_, method_, headers_, body_, timeout_, output_;
};

std::unique_ptr<Rule> make_http_client(CompileContext& cc) {
  bool ok = check_constant_headers(cc, "headers") && check_constant_timeout(cc);
  const Param& url = cc.params()["url"];
  if (url.is_constant()) {
    std::string u = url.constant_value().to_text();
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) {
      cc.error("url", "must start with http:// or https://, got '" + u + "'");
      ok = false;
    }
  }
  const Param& method = cc.params()["method"];
  if (method.is_constant() && !valid_method(method.constant_value().to_text())) {
    cc.error("method", "'" + method.constant_value().to_text() + "' is not an HTTP method");
    ok = false;
  }
  if (!ok) return nullptr;
  return std::make_unique<HttpClientRule>(cc.params());
}

// ---------------------------------------------------------------------------------------
// HttpServerExecute

RuleSpec server_execute_spec() {
  RuleSpec s;
  s.name = "HttpServerExecute";
  s.reads_body = true;  // forwards the request's body
  s.group = "HTTP";
  s.doc =
      "Forwards the current request to the configuration's origin (cap.json `origin`) and "
      "puts the answer into ORIGIN_STATUS, ORIGIN_HEADERS (a map, lower-case names) and "
      "ORIGIN_BODY. The request goes as received (Host kept, X-Forwarded-For, -Proto and "
      "-Host added, hop-by-hop headers dropped) with the overrides given: `path` replaces "
      "the path (and the query too when it holds a '?'), `method`, `body`, `add_headers` and "
      "`remove_headers`. With `respond` (the default) the origin's answer becomes the "
      "response, which later rules may still change (HttpResponseAddition) or replace "
      "(HttpRespond). Takes `ok` when the origin answered, whatever the status, and `error` "
      "when it did not (ORIGIN_STATUS 0, ORIGIN_ERROR says why; with `respond` the response "
      "is then 502, or 504 after a timeout).";
  s.params = {
      {"path",
       ParamType::String,
       false,
       {},
       "Replaces the request's path (absent: as received).",
       {}},
      {"method", ParamType::String, false, {}, "Replaces the request's method.", {}},
      {"body", ParamType::String, false, {}, "Replaces the request's body.", {}},
      {"add_headers", ParamType::Map, false, {}, "Headers to add: name to value.", {}},
      {"remove_headers", ParamType::List, false, {}, "Header names not to forward.", {}},
      {"timeout_ms",
       ParamType::Number,
       false,
       Value(30000),
       "Milliseconds to wait for the origin.",
       {}},
      {"respond",
       ParamType::Boolean,
       false,
       Value(true),
       "Make the origin's answer the response.",
       {}},
  };
  s.chain_points = {"ok", "error"};
  s.may_wait = true;
  return s;
}

class ServerExecuteRule : public Rule {
 public:
  ServerExecuteRule(CompileContext& cc, const Params& p)
      : path_(p["path"]),
        method_(p["method"]),
        body_(p["body"]),
        add_headers_(p["add_headers"]),
        remove_headers_(p["remove_headers"]),
        timeout_(p["timeout_ms"]),
        respond_(p["respond"]) {
    auto& sym = cc.env().symbols;
    status_ = sym.intern("ORIGIN_STATUS");
    headers_ = sym.intern("ORIGIN_HEADERS");
    body_var_ = sym.intern("ORIGIN_BODY");
    error_ = sym.intern("ORIGIN_ERROR");
  }

  int execute(ExecContext& ctx) const override {
    const std::string& origin = ctx.runtime().configuration().origin;
    const Request* req = ctx.request();
    bool respond = respond_.boolean(ctx);
    if (origin.empty()) return fail(ctx, respond, "cap.json has no origin to forward to", false);
    if (!req) return fail(ctx, respond, "there is no request to forward (startup rule set)", false);

    std::string target;
    if (path_.present()) {
      std::string path = path_.text(ctx);
      if (path.empty() || path.front() != '/')
        throw EvalError("path must start with '/', got '" + path + "'");
      if (!safe_header_value(path) || path.find(' ') != std::string::npos)
        throw EvalError("path must not hold spaces or line breaks");
      target = path;
      size_t q = req->target.find('?');
      if (path.find('?') == std::string::npos && q != std::string_view::npos)
        target.append(req->target.substr(q));
    }
    std::string origin_base = origin;
    while (!origin_base.empty() && origin_base.back() == '/') origin_base.pop_back();
    HttpCall call = forward_call(*req, origin_base, target, timeout_value(timeout_, ctx));
    if (method_.present()) {
      call.method = method_.text(ctx);
      if (!valid_method(call.method)) throw EvalError("method '" + call.method + "' is not valid");
    }
    if (body_.present()) call.body = body_.text(ctx);
    if (remove_headers_.present()) {
      Value scratch;
      ResponseEdit edit;
      edit.remove = name_list(remove_headers_.eval(ctx, scratch), "remove_headers");
      std::string unused;
      apply_edit(edit, call.headers, unused);
    }
    if (add_headers_.present()) {
      Value scratch;
      for (auto& h : header_lines(add_headers_.eval(ctx, scratch), "add_headers"))
        call.headers.push_back(std::move(h));
    }
    HttpClient* http = ctx.services.http;
    if (!http) return fail(ctx, respond, "this host has no HTTP client", false);
    HttpReply reply = http->call(call);
    if (reply.status == 0)
      return fail(ctx, respond, reply.error.empty() ? "the origin did not answer" : reply.error,
                  reply.timed_out);

    ctx.vars.set(status_, Value(reply.status));
    ctx.vars.set(headers_, headers_value(reply));
    if (respond) {
      Response& res = ctx.response();
      res.set = true;
      res.status = reply.status;
      res.content_type.clear();
      HeaderLines lines;
      headers_for_client(reply, lines);
      // Headers rules added before (SetCookie) stay.
      for (auto& h : lines) res.headers.push_back(std::move(h));
      res.body = reply.body;
    }
    ctx.vars.set(body_var_, Value(std::move(reply.body)));
    ctx.vars.erase(error_);
    return kOk;
  }

 private:
  int fail(ExecContext& ctx, bool respond, std::string why, bool timed_out) const {
    ctx.vars.set(status_, Value(0));
    ctx.vars.set(headers_, Value(Map()));
    ctx.vars.set(body_var_, Value(""));
    ctx.vars.set(error_, Value(why));
    if (respond) {
      Response& res = ctx.response();
      res.set = true;
      res.status = timed_out ? 504 : 502;
      res.content_type = "text/html; charset=utf-8";
      res.body = timed_out ? "<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway "
                             "Timeout</h1><p>The origin server did not answer in time.</p>\n"
                           : "<!doctype html><title>502 Bad Gateway</title><h1>502 Bad "
                             "Gateway</h1><p>The origin server could not be reached.</p>\n";
    }
    return kError;
  }

  static constexpr int kOk = 0, kError = 1;
  Param path_, method_, body_, add_headers_, remove_headers_, timeout_, respond_;
  uint32_t status_ = 0, headers_ = 0, body_var_ = 0, error_ = 0;
};

std::unique_ptr<Rule> make_server_execute(CompileContext& cc) {
  bool ok = check_constant_headers(cc, "add_headers") && check_constant_timeout(cc);
  const Param& path = cc.params()["path"];
  if (path.is_constant() && !path.constant_value().is_null()) {
    std::string p = path.constant_value().to_text();
    if (p.empty() || p.front() != '/') {
      cc.error("path", "must start with '/', got '" + p + "'");
      ok = false;
    }
  }
  const Param& method = cc.params()["method"];
  if (method.is_constant() && !method.constant_value().is_null() &&
      !valid_method(method.constant_value().to_text())) {
    cc.error("method", "'" + method.constant_value().to_text() + "' is not an HTTP method");
    ok = false;
  }
  if (!ok) return nullptr;
  return std::make_unique<ServerExecuteRule>(cc, cc.params());
}

// ---------------------------------------------------------------------------------------
// HttpResponseAddition

RuleSpec response_addition_spec() {
  RuleSpec s;
  s.name = "HttpResponseAddition";
  s.group = "HTTP";
  s.doc =
      "Changes the response on its way back to the client: removes the headers named in "
      "`remove_headers`, adds `add_headers`, and replaces the body with `body` when given. "
      "It works on whatever response goes out: one a rule already set (HttpRespond, "
      "HttpServerExecute) is changed at once; otherwise the change is kept in the variable "
      "RESPONSE_ADDITIONS and applied by the agent to the response that comes later — the "
      "origin's, in proxy mode.";
  s.params = {
      {"add_headers", ParamType::Map, false, {}, "Headers to add: name to value (templates).", {}},
      {"remove_headers", ParamType::List, false, {}, "Header names to remove.", {}},
      {"body", ParamType::String, false, {}, "Replaces the body (absent: the body stays).", {}},
  };
  s.chain_points = {"next"};
  return s;
}

class ResponseAdditionRule : public Rule {
 public:
  ResponseAdditionRule(CompileContext& cc, const Params& p)
      : add_(p["add_headers"]), remove_(p["remove_headers"]), body_(p["body"]) {
    slot_ = cc.env().symbols.intern(kResponseAdditionsVariable);
    auto constant = [](const Param& q) { return !q.present() || q.is_constant(); };
    if (constant(add_) && constant(remove_) && constant(body_)) {
      // The same edit every time: made once, and recorded as one shared list entry.
      try {
        ResponseEdit edit;
        if (add_.present()) edit.add = header_lines(add_.constant_value(), "add_headers");
        if (remove_.present()) edit.remove = name_list(remove_.constant_value(), "remove_headers");
        if (body_.present()) {
          edit.replace_body = true;
          edit.body = body_.constant_value().to_text();
        }
        constant_entry_ = entry(edit);
        constant_list_ = Value(List{constant_entry_});
        constant_edit_ = std::move(edit);
      } catch (const EvalError&) {
        // Reported when the rule runs, as for computed parameters.
      }
    }
  }

  int execute(ExecContext& ctx) const override {
    if (constant_edit_) return record(ctx, *constant_edit_, constant_entry_);
    ResponseEdit edit;
    if (add_.present()) {
      Value scratch;
      edit.add = header_lines(add_.eval(ctx, scratch), "add_headers");
    }
    if (remove_.present()) {
      Value scratch;
      edit.remove = name_list(remove_.eval(ctx, scratch), "remove_headers");
    }
    if (body_.present()) {
      edit.replace_body = true;
      edit.body = body_.text(ctx);
    }
    return record(ctx, edit, Value());
  }

 private:
  /// Applies `edit` to the response when one is set, else records it (as `made`, its
  /// entry, when given) for the host.
  int record(ExecContext& ctx, const ResponseEdit& edit, const Value& made) const {
    Response& res = ctx.response();
    if (res.set) {
      apply_to_response(edit, res);
      return 0;
    }
    const Value& existing = ctx.vars.get(slot_);
    if (!existing.is_list() && made.is_map()) {
      ctx.vars.set(slot_, constant_list_);
      return 0;
    }
    List all;
    if (existing.is_list()) all = existing.as_list();
    all.push_back(made.is_map() ? made : entry(edit));
    ctx.vars.set(slot_, Value(std::move(all)));
    return 0;
  }

  /// The edit as RESPONSE_ADDITIONS records it.
  static Value entry(const ResponseEdit& edit) {
    Map m;
    List remove;
    for (auto& r : edit.remove) remove.push_back(Value(r));
    m.set("remove", Value(std::move(remove)));
    Map add;
    for (auto& [name, value] : edit.add) add.append(name, Value(value));
    m.set("add", Value(std::move(add)));
    if (edit.replace_body) m.set("body", Value(edit.body));
    return Value(std::move(m));
  }

  Param add_, remove_, body_;
  uint32_t slot_ = 0;
  std::optional<ResponseEdit> constant_edit_;  // set when every parameter is a constant
  Value constant_entry_, constant_list_;
};

std::unique_ptr<Rule> make_response_addition(CompileContext& cc) {
  if (!check_constant_headers(cc, "add_headers")) return nullptr;
  return std::make_unique<ResponseAdditionRule>(cc, cc.params());
}

}  // namespace

void register_network_rules(RuleRegistry& registry) {
  registry.add(http_client_spec(), make_http_client);
  registry.add(server_execute_spec(), make_server_execute);
  registry.add(response_addition_spec(), make_response_addition);
}

void apply_to_response(const ResponseEdit& edit, Response& res) {
  for (auto& r : edit.remove)
    if (iequals(r, "content-type")) res.content_type.clear();
  ResponseEdit rest;
  rest.remove = edit.remove;
  for (auto& h : edit.add) {
    if (iequals(h.first, "content-type") && !res.content_type.empty())
      res.content_type = h.second;
    else
      rest.add.push_back(h);
  }
  rest.replace_body = edit.replace_body;
  rest.body = edit.body;
  apply_edit(rest, res.headers, res.body);
}

ResponseEdits read_response_additions(Variables& vars) {
  const Value& v = vars.get(std::string_view(kResponseAdditionsVariable));
  if (!v.is_list()) return nullptr;
  // The list a constant HttpResponseAddition records is the same object every time; the
  // cache holds it, so its address cannot be taken by another list meanwhile.
  thread_local std::shared_ptr<const List> cached_list;
  thread_local ResponseEdits cached_edits;
  if (v.list_ptr() == cached_list) return cached_edits;
  auto edits = std::make_shared<std::vector<ResponseEdit>>();
  for (const Value& e : v.as_list()) {
    if (!e.is_map()) continue;
    ResponseEdit edit;
    if (const Value* r = e.as_map().find("remove"); r && r->is_list())
      for (const Value& n : r->as_list()) edit.remove.push_back(n.to_text());
    if (const Value* a = e.as_map().find("add"); a && a->is_map())
      for (const auto& [name, value] : a->as_map())
        if (is_token(name) && safe_header_value(value.to_text()))
          edit.add.emplace_back(name, value.to_text());
    if (const Value* b = e.as_map().find("body")) {
      edit.replace_body = true;
      edit.body = b->to_text();
    }
    edits->push_back(std::move(edit));
  }
  cached_list = v.list_ptr();
  cached_edits = std::move(edits);
  return cached_edits;
}

}  // namespace cap::rules

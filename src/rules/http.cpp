// The "HTTP" group: reading the request's client details and answering it (respond,
// redirect, cookies).
//
// Rules here only read the engine's Request and write its Response; the host decides what
// goes on the wire. Every header a rule writes is checked for CR and LF, so no template can
// split a response.
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "cap/request.h"
#include "cap/rule.h"
#include "cap/value.h"
#include "rules/groups.h"

namespace cap::rules {
namespace {

// ---------------------------------------------------------------------------------------
// Helpers

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// RFC 9110 token characters (header names, cookie names).
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) {
      switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
          ok = true;
          break;
        default:
          break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

/// A header value must not carry line breaks or NUL (response splitting).
bool safe_header_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

/// Reads a constant whole number in [min, max]; false when the parameter is not constant.
std::optional<int> constant_int(const Param& p) {
  if (!p.is_constant() || !p.constant_value().is_number()) return std::nullopt;
  double d = p.constant_value().as_number();
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 1e9) return -1;
  return static_cast<int>(d);
}

int runtime_status(const Param& p, ExecContext& ctx) {
  double d = p.number(ctx);
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 1e9)
    throw EvalError("status must be a whole number, got " + Value(d).to_text());
  return static_cast<int>(d);
}

// ---------------------------------------------------------------------------------------
// HttpRequestTracker

RuleSpec request_tracker_spec() {
  RuleSpec s;
  s.name = "HttpRequestTracker";
  s.group = "HTTP";
  s.doc =
      "Puts the client's details into variables named PREFIX + CLIENT_IP, USER_AGENT, HOST, "
      "REFERER, ACCEPT_LANGUAGE, CONTENT_TYPE (the header's text, empty when absent), "
      "COOKIES (a map of cookie name to value, from the Cookie header) and IS_HTTPS "
      "(true or false). CLIENT_IP is the connection's address; with `trust_forwarded` it is "
      "the first address of X-Forwarded-For, and IS_HTTPS also follows X-Forwarded-Proto — "
      "turn that on only behind a proxy or load balancer that sets these headers, since "
      "clients can send them too. Sets nothing when there is no request (startup rule sets).";
  s.params = {
      {"prefix",
       ParamType::String,
       false,
       Value(""),
       "Put before every variable name, e.g. CLIENT_ gives CLIENT_USER_AGENT (constant).",
       {}},
      {"trust_forwarded",
       ParamType::Boolean,
       false,
       Value(false),
       "Believe X-Forwarded-For and X-Forwarded-Proto (behind a trusted proxy only).",
       {}},
  };
  s.chain_points = {"next"};
  return s;
}

/// Request headers from the raw request, or from the HEADERS variable (lower-case names)
/// when there is none.
class HeaderSource {
 public:
  HeaderSource(const Request* req, const Value* map) : req_(req), map_(map) {}

  /// The first header named `lower_name`.
  std::optional<std::string_view> get(std::string_view lower_name) const {
    if (req_) {
      for (const auto& [name, value] : req_->headers)
        if (iequals(name, lower_name)) return value;
      return std::nullopt;
    }
    if (const Value* v = map_->as_map().find(lower_name)) {
      if (v->is_string()) return std::string_view(v->as_string());
      if (v->is_list() && !v->as_list().empty() && v->as_list()[0].is_string())
        return std::string_view(v->as_list()[0].as_string());
    }
    return std::nullopt;
  }

  /// Calls f(value) for every header named `lower_name`.
  template <typename F>
  void each(std::string_view lower_name, F&& f) const {
    if (req_) {
      for (const auto& [name, value] : req_->headers)
        if (iequals(name, lower_name)) f(value);
      return;
    }
    if (const Value* v = map_->as_map().find(lower_name)) {
      if (v->is_string()) f(std::string_view(v->as_string()));
      if (v->is_list())
        for (const auto& e : v->as_list())
          if (e.is_string()) f(std::string_view(e.as_string()));
    }
  }

 private:
  const Request* req_;
  const Value* map_;
};

/// Adds the cookies of one Cookie header ("a=1; b=2") to `out`; the first of a name wins.
void parse_cookies(std::string_view header, Map& out) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = trim(pair.substr(0, eq));
    std::string_view value = trim(pair.substr(eq + 1));
    if (name.empty() || out.find(name)) continue;
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    out.append(std::string(name), Value(url_decode(value, false)));
  }
}

class RequestTrackerRule : public Rule {
 public:
  RequestTrackerRule(CompileContext& cc, const std::string& prefix, bool trust) : trust_(trust) {
    auto slot = [&](const char* name) { return cc.env().symbols.intern(prefix + name); };
    client_ip_ = slot("CLIENT_IP");
    user_agent_ = slot("USER_AGENT");
    host_ = slot("HOST");
    referer_ = slot("REFERER");
    accept_language_ = slot("ACCEPT_LANGUAGE");
    content_type_ = slot("CONTENT_TYPE");
    cookies_ = slot("COOKIES");
    is_https_ = slot("IS_HTTPS");
  }

  int execute(ExecContext& ctx) const override {
    const Request* req = ctx.request();
    const Value* headers_var = nullptr;
    if (!req) {
      headers_var = &ctx.vars.get(static_cast<uint32_t>(kHeaders));
      if (!headers_var->is_map()) return 0;  // no request at all: nothing to track
    }
    HeaderSource headers(req, headers_var);

    std::string client_ip;
    if (trust_) {
      if (auto xff = headers.get("x-forwarded-for")) {
        std::string_view first = trim(xff->substr(0, xff->find(',')));
        client_ip.assign(first);
      }
    }
    if (client_ip.empty()) {
      if (req)
        client_ip.assign(req->remote_addr);
      else
        client_ip = ctx.vars.get(static_cast<uint32_t>(kRemoteAddr)).to_text();
    }
    ctx.vars.set(client_ip_, Value(std::move(client_ip)));

    auto set_header = [&](uint32_t slot, std::string_view name) {
      auto v = headers.get(name);
      ctx.vars.set(slot, Value(v ? *v : std::string_view()));
    };
    set_header(user_agent_, "user-agent");
    set_header(host_, "host");
    set_header(referer_, "referer");
    set_header(accept_language_, "accept-language");
    set_header(content_type_, "content-type");

    Map cookies;
    headers.each("cookie", [&](std::string_view h) { parse_cookies(h, cookies); });
    ctx.vars.set(cookies_, Value(std::move(cookies)));

    bool https;
    if (req) {
      https = iequals(req->scheme, "https");
    } else {
      std::string url = ctx.vars.get(static_cast<uint32_t>(kRequestUrl)).to_text();
      https = url.size() >= 8 && iequals(std::string_view(url).substr(0, 8), "https://");
    }
    if (!https && trust_) {
      if (auto proto = headers.get("x-forwarded-proto"))
        https = iequals(trim(proto->substr(0, proto->find(','))), "https");
    }
    ctx.vars.set(is_https_, Value(https));
    return 0;
  }

 private:
  bool trust_;
  uint32_t client_ip_ = 0, user_agent_ = 0, host_ = 0, referer_ = 0, accept_language_ = 0,
           content_type_ = 0, cookies_ = 0, is_https_ = 0;
};

bool valid_prefix(std::string_view s) {
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return s.empty() || !(s[0] >= '0' && s[0] <= '9');
}

std::unique_ptr<Rule> make_request_tracker(CompileContext& cc) {
  const Param& prefix = cc.params()["prefix"];
  const Param& trust = cc.params()["trust_forwarded"];
  bool ok = true;
  if (!prefix.is_constant() || !prefix.constant_value().is_string()) {
    cc.error("prefix", "must be constant text (no ${...}): it names the variables at load");
    ok = false;
  } else if (!valid_prefix(prefix.constant_value().as_string())) {
    cc.error("prefix",
             "may hold only letters, digits and '_' and must not start with a "
             "digit, got '" +
                 prefix.constant_value().as_string() + "'");
    ok = false;
  }
  if (!trust.is_constant() || !trust.constant_value().is_bool()) {
    cc.error("trust_forwarded", "must be true or false (no ${...})");
    ok = false;
  }
  if (!ok) return nullptr;
  return std::make_unique<RequestTrackerRule>(cc, prefix.constant_value().as_string(),
                                              trust.constant_value().as_bool());
}

// ---------------------------------------------------------------------------------------
// HttpRespond

RuleSpec respond_spec() {
  RuleSpec s;
  s.name = "HttpRespond";
  s.group = "HTTP";
  s.doc =
      "Answers the request: sets the response's status, content type, body and extra "
      "headers. The host sends it once the rule set ends, so later rules may still change "
      "it; headers added before (SetCookie) are kept. Header names must be tokens and no "
      "value may hold a line break.";
  s.params = {
      {"status", ParamType::Number, false, Value(200), "The HTTP status, 100 to 599.", {}},
      {"body", ParamType::String, false, Value(""), "The response body (a template).", {}},
      {"content_type",
       ParamType::String,
       false,
       Value("text/plain; charset=utf-8"),
       "The Content-Type header.",
       {}},
      {"headers",
       ParamType::Map,
       false,
       {},
       "Extra headers: name to value (values are templates).",
       {}},
  };
  s.chain_points = {"next"};
  return s;
}

void check_status_range(int status) {
  if (status < 100 || status > 599)
    throw EvalError("status must be from 100 to 599, got " + std::to_string(status));
}

/// The header lines of a map value, checked: names must be tokens, values single-line.
std::vector<std::pair<std::string, std::string>> header_lines(const Value& headers) {
  std::vector<std::pair<std::string, std::string>> lines;
  if (headers.is_null()) return lines;
  if (!headers.is_map())
    throw EvalError(std::string("headers must be a map of name to value, got a ") +
                    type_name(headers.type()));
  lines.reserve(headers.as_map().size());
  for (const auto& [name, value] : headers.as_map()) {
    if (!is_token(name)) throw EvalError("headers: '" + name + "' is not a valid header name");
    std::string text = value.to_text();
    if (!safe_header_value(text))
      throw EvalError("headers: the value of '" + name + "' holds a line break");
    lines.emplace_back(name, std::move(text));
  }
  return lines;
}

class RespondRule : public Rule {
 public:
  explicit RespondRule(const Params& p)
      : status_(p["status"]),
        body_(p["body"]),
        content_type_(p["content_type"]),
        headers_(p["headers"]) {}

  int execute(ExecContext& ctx) const override {
    // Everything is evaluated and checked before the response changes, so a failure (which
    // a FailSafePoint may catch) leaves it as it was.
    int status = runtime_status(status_, ctx);
    check_status_range(status);
    std::string content_type = content_type_.text(ctx);
    if (!safe_header_value(content_type)) throw EvalError("content_type holds a line break");
    std::vector<std::pair<std::string, std::string>> headers;
    if (headers_.present()) {
      Value scratch;
      headers = header_lines(headers_.eval(ctx, scratch));
    }
    std::string body = body_.text(ctx);
    Response& res = ctx.response();
    res.set = true;
    res.status = status;
    res.content_type = std::move(content_type);
    res.body = std::move(body);
    for (auto& [name, value] : headers) res.add_header(std::move(name), std::move(value));
    return 0;
  }

 private:
  Param status_, body_, content_type_, headers_;
};

std::unique_ptr<Rule> make_respond(CompileContext& cc) {
  const Params& p = cc.params();
  bool ok = true;
  if (auto status = constant_int(p["status"]); status && (*status < 100 || *status > 599)) {
    cc.error("status", "must be a whole number from 100 to 599, got " +
                           p["status"].constant_value().to_text());
    ok = false;
  }
  const Param& ct = p["content_type"];
  if (ct.is_constant() && !safe_header_value(ct.constant_value().to_text())) {
    cc.error("content_type", "must not hold a line break");
    ok = false;
  }
  const Param& headers = p["headers"];
  if (headers.is_constant() && headers.constant_value().is_map()) {
    for (const auto& [name, value] : headers.constant_value().as_map()) {
      if (!is_token(name)) {
        cc.error("headers", "'" + name + "' is not a valid header name");
        ok = false;
      } else if (!safe_header_value(value.to_text())) {
        cc.error("headers", "the value of '" + name + "' must not hold a line break");
        ok = false;
      }
    }
  }
  if (!ok) return nullptr;
  return std::make_unique<RespondRule>(p);
}

// ---------------------------------------------------------------------------------------
// HttpRedirect

RuleSpec redirect_spec() {
  RuleSpec s;
  s.name = "HttpRedirect";
  s.group = "HTTP";
  s.doc =
      "Answers the request with a redirect to `location` (a Location header and an empty "
      "body). Use 301 or 308 for a permanent move, 302, 303 or 307 for a temporary one; 307 "
      "and 308 make the client repeat the method and body.";
  s.params = {
      {"location", ParamType::String, true, {}, "Where to send the client (a URL or a path).", {}},
      {"status", ParamType::Number, false, Value(302), "301, 302, 303, 307 or 308.", {}},
  };
  s.chain_points = {"next"};
  return s;
}

bool redirect_status(int s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }

class RedirectRule : public Rule {
 public:
  explicit RedirectRule(const Params& p) : location_(p["location"]), status_(p["status"]) {}

  int execute(ExecContext& ctx) const override {
    int status = runtime_status(status_, ctx);
    if (!redirect_status(status))
      throw EvalError("status must be 301, 302, 303, 307 or 308, got " + std::to_string(status));
    std::string location = location_.text(ctx);
    if (location.empty()) throw EvalError("location is empty");
    if (!safe_header_value(location)) throw EvalError("location holds a line break");
    Response& res = ctx.response();
    res.set = true;
    res.status = status;
    res.content_type.clear();
    res.body.clear();
    res.add_header("Location", std::move(location));
    return 0;
  }

 private:
  Param location_, status_;
};

std::unique_ptr<Rule> make_redirect(CompileContext& cc) {
  const Params& p = cc.params();
  bool ok = true;
  if (auto status = constant_int(p["status"]); status && !redirect_status(*status)) {
    cc.error("status",
             "must be 301, 302, 303, 307 or 308, got " + p["status"].constant_value().to_text());
    ok = false;
  }
  const Param& loc = p["location"];
  if (loc.is_constant()) {
    std::string text = loc.constant_value().to_text();
    if (text.empty()) {
      cc.error("location", "must not be empty");
      ok = false;
    } else if (!safe_header_value(text)) {
      cc.error("location", "must not hold a line break");
      ok = false;
    }
  }
  if (!ok) return nullptr;
  return std::make_unique<RedirectRule>(p);
}

// ---------------------------------------------------------------------------------------
// SetCookie

RuleSpec set_cookie_spec() {
  RuleSpec s;
  s.name = "SetCookie";
  s.group = "HTTP";
  s.doc =
      "Adds a Set-Cookie header to the response without answering the request, so it also "
      "reaches the client when the request goes on to the origin or another rule responds. "
      "Characters a cookie value cannot hold (spaces, quotes, commas, semicolons, "
      "backslashes, '%' and non-ASCII) are percent-encoded; HttpRequestTracker decodes them "
      "again. SameSite=None needs Secure, so it is added then.";
  s.params = {
      {"name", ParamType::String, true, {}, "The cookie name (token characters only).", {}},
      {"value", ParamType::String, false, Value(""), "The cookie value.", {}},
      {"max_age",
       ParamType::Number,
       false,
       {},
       "Seconds until the cookie expires (0 deletes it); absent: a session cookie.",
       {}},
      {"path", ParamType::String, false, Value("/"), "The path the cookie applies to.", {}},
      {"domain",
       ParamType::String,
       false,
       {},
       "The domain the cookie applies to; absent: this host only.",
       {}},
      {"secure", ParamType::Boolean, false, Value(false), "Send the cookie over HTTPS only.", {}},
      {"http_only",
       ParamType::Boolean,
       false,
       Value(true),
       "Hide the cookie from scripts in the page.",
       {}},
      {"same_site",
       ParamType::String,
       false,
       Value("Lax"),
       "Strict, Lax or None: whether other sites' requests carry the cookie.",
       {"Strict", "Lax", "None"}},
  };
  s.chain_points = {"next"};
  return s;
}

/// RFC 6265 cookie-octet, less '%' so that encoded values decode back unchanged.
bool cookie_octet(unsigned char c) {
  return c == 0x21 || (c >= 0x23 && c <= 0x2B && c != '%') || (c >= 0x2D && c <= 0x3A) ||
         (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

void append_cookie_value(std::string& out, std::string_view v) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : v) {
    if (cookie_octet(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

/// Path and Domain attribute values: no ';' and no control characters.
bool safe_attribute(std::string_view s) {
  for (unsigned char c : s)
    if (c == ';' || c < 0x20 || c == 0x7F) return false;
  return true;
}

class SetCookieRule : public Rule {
 public:
  explicit SetCookieRule(const Params& p)
      : name_(p["name"]),
        value_(p["value"]),
        max_age_(p["max_age"]),
        path_(p["path"]),
        domain_(p["domain"]),
        secure_(p["secure"]),
        http_only_(p["http_only"]),
        same_site_(p["same_site"]) {}

  int execute(ExecContext& ctx) const override {
    std::string line = name_.text(ctx);
    if (!is_token(line)) throw EvalError("name '" + line + "' is not a valid cookie name");
    line.push_back('=');
    Value scratch;
    const Value& v = value_.eval(ctx, scratch);
    if (v.is_string()) {
      append_cookie_value(line, v.as_string());
    } else {
      append_cookie_value(line, v.to_text());
    }
    if (max_age_.present()) {
      Value s2;
      const Value& m = max_age_.eval(ctx, s2);
      if (!m.is_null()) {
        bool numeric = false;
        double d = m.to_number(&numeric);
        if (!numeric || !std::isfinite(d))
          throw EvalError("max_age must be a number of seconds, got '" + m.to_text() + "'");
        line += "; Max-Age=";
        append_number(line, std::max(0.0, std::floor(d)));
      }
    }
    std::string path = path_.text(ctx);
    if (!safe_attribute(path)) throw EvalError("path must not hold ';' or control characters");
    if (!path.empty()) line += "; Path=" + path;
    if (domain_.present()) {
      std::string domain = domain_.text(ctx);
      if (!safe_attribute(domain))
        throw EvalError("domain must not hold ';' or control characters");
      if (!domain.empty()) line += "; Domain=" + domain;
    }
    std::string same_site = same_site_.text(ctx);
    if (same_site != "Strict" && same_site != "Lax" && same_site != "None")
      throw EvalError("same_site must be Strict, Lax or None, got '" + same_site + "'");
    if (secure_.boolean(ctx) || same_site == "None") line += "; Secure";
    if (http_only_.boolean(ctx)) line += "; HttpOnly";
    line += "; SameSite=" + same_site;
    ctx.response().add_header("Set-Cookie", std::move(line));
    return 0;
  }

 private:
  Param name_, value_, max_age_, path_, domain_, secure_, http_only_, same_site_;
};

std::unique_ptr<Rule> make_set_cookie(CompileContext& cc) {
  const Params& p = cc.params();
  bool ok = true;
  const Param& name = p["name"];
  if (name.is_constant() && !is_token(name.constant_value().to_text())) {
    cc.error("name", "'" + name.constant_value().to_text() +
                         "' is not a valid cookie name: use letters, digits and "
                         "!#$%&'*+-.^_`|~ only");
    ok = false;
  }
  for (const char* attr : {"path", "domain"}) {
    const Param& a = p[attr];
    if (a.is_constant() && !safe_attribute(a.constant_value().to_text())) {
      cc.error(attr, "must not hold ';' or control characters");
      ok = false;
    }
  }
  const Param& max_age = p["max_age"];
  if (max_age.is_constant() && !max_age.constant_value().is_null() &&
      (!max_age.constant_value().is_number() ||
       !std::isfinite(max_age.constant_value().as_number()))) {
    cc.error("max_age", "must be a number of seconds");
    ok = false;
  }
  if (!ok) return nullptr;
  return std::make_unique<SetCookieRule>(p);
}

}  // namespace

void register_http(RuleRegistry& r) {
  r.add(request_tracker_spec(), make_request_tracker);
  r.add(respond_spec(), make_respond);
  r.add(redirect_spec(), make_redirect);
  r.add(set_cookie_spec(), make_set_cookie);
}

}  // namespace cap::rules

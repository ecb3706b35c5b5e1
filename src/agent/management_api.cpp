#include "agent/management_api.h"

#include <charconv>
#include <memory>

#include "agent/log_files.h"
#include "agent/logging.h"

namespace cap::agent {

namespace {

using Answer = ManagementApi::Answer;

Answer json_answer(int status, const Value& v) {
  Answer a;
  a.status = status;
  a.body = to_json(v);
  a.body.push_back('\n');
  return a;
}

Answer error_answer(int status, std::string error, const std::vector<std::string>& details = {}) {
  Map m;
  m.set("error", Value(std::move(error)));
  List d;
  for (auto& s : details) d.push_back(Value(s));
  m.set("details", Value(std::move(d)));
  return json_answer(status, Value(std::move(m)));
}

/// Parses a JSON object body; an empty body is an empty object. Returns false with the
/// 400 answer in `bad`.
bool json_body(std::string_view body, Value* out, Answer* bad) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    *out = Value(Map());
    return true;
  }
  std::string err;
  Value v = json_parse(body, &err);
  if (!err.empty()) {
    *bad = error_answer(400, "the body is not valid JSON", {err});
    return false;
  }
  if (!v.is_map()) {
    *bad = error_answer(400, "the body must be a JSON object");
    return false;
  }
  *out = std::move(v);
  return true;
}

Answer from_result(const CommandResult& r, Value ok) {
  if (r.status != 200) {
    Map m;
    m.set("error", Value(r.error));
    List d;
    for (auto& s : r.details) d.push_back(Value(s));
    m.set("details", Value(std::move(d)));
    if (!r.warnings.empty()) {
      List w;
      for (auto& s : r.warnings) w.push_back(Value(s));
      m.set("warnings", Value(std::move(w)));
    }
    return json_answer(r.status, Value(std::move(m)));
  }
  return json_answer(200, ok);
}

Value configuration_value(const Serving& s) {
  if (s.blank()) return Value();
  Map c;
  c.set("name", Value(s.name));
  c.set("id", Value(s.id));
  c.set("sha256", Value(s.sha256));
  c.set("activated_at", Value(iso8601_utc(s.activated_at_ms)));
  return Value(std::move(c));
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  for (auto& [k, v] : parse_query(query))
    if (k == name) return v;
  return std::nullopt;
}

/// The methods each path answers; "" when the path is unknown.
std::string_view allowed_methods(std::string_view path) {
  struct Route {
    std::string_view path, methods;
  };
  static constexpr Route kRoutes[] = {
      {"/v1/health", "GET"},
      {"/v1/status", "GET"},
      {"/v1/configuration", "GET, PUT"},
      {"/v1/configuration/history", "GET"},
      {"/v1/configuration/rollback", "POST"},
      {"/v1/configuration/stop", "POST"},
      {"/v1/configuration/start", "POST"},
      {"/v1/mode", "GET, PUT"},
      {"/v1/extensions", "GET"},
      {"/v1/vault", "PUT"},
      {"/v1/trace", "GET, POST"},
      {"/v1/stats", "GET"},
      {"/v1/logs", "GET"},
      {"/v1/snapshot", "GET, PUT"},
      {"/metrics", "GET"},
  };
  for (auto& r : kRoutes)
    if (r.path == path) return r.methods;
  if (path.starts_with("/v1/extensions/") && path.size() > 15) return "PUT, DELETE";
  if (path.starts_with("/v1/logs/") && path.size() > 9) return "GET";
  return {};
}

bool method_in(std::string_view method, std::string_view list) {
  while (!list.empty()) {
    size_t comma = list.find(", ");
    if (list.substr(0, comma) == method) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 2);
  }
  return false;
}

int64_t unix_seconds() { return SystemClock().now_ms() / 1000; }

}  // namespace

ManagementApi::ManagementApi(const Settings& settings, Activator& activator, ServingSlot& slot,
                             AgentVault& vault, Metrics& metrics, WorkQueue& commands)
    : settings_(settings),
      activator_(activator),
      slot_(slot),
      vault_(vault),
      metrics_(metrics),
      commands_(commands),
      started_(std::chrono::steady_clock::now()) {}

bool ManagementApi::configure(std::string* error) {
  return auth_.configure(settings_.mgmt_key, settings_.mgmt_allow, error);
}

void ManagementApi::handle(net::Exchange& ex) {
  Command c;
  c.method = ex.method();
  c.target = ex.target();
  size_t q = c.target.find('?');
  c.path = c.target.substr(0, q);
  c.query = q == std::string_view::npos ? std::string_view() : c.target.substr(q + 1);
  c.body = ex.body();

  auto answer_now = [&](const Answer& a) {
    ex.respond(net::ResponseView{a.status, a.content_type, a.headers, a.body, false});
  };
  auto refuse = [&](const AuthVerdict& v) {
    agent_log().warn("management: refused {} {} from {}: {}", c.method, c.path, ex.remote_addr(),
                     v.reason);
    Answer a = error_answer(v.status, v.error);
    if (v.status == 401) a.headers.emplace_back("WWW-Authenticate", "CAP-HMAC-SHA256");
    answer_now(a);
  };

  if (AuthVerdict v = auth_.check_address(ex.remote_addr()); v.status) return refuse(v);
  if (c.path == "/v1/health" && c.method == "GET") {
    Map m;
    m.set("status", Value("ok"));
    return answer_now(json_answer(200, Value(std::move(m))));
  }
  if (AuthVerdict v = auth_.check_signature(c.method, c.target, ex.header("authorization"), c.body,
                                            unix_seconds());
      v.status)
    return refuse(v);

  std::string_view methods = allowed_methods(c.path);
  if (methods.empty())
    return answer_now(error_answer(404, "no such management endpoint: " + std::string(c.path)));
  if (!method_in(c.method, methods)) {
    Answer a =
        error_answer(405, std::string(c.method) + " is not allowed on " + std::string(c.path),
                     {"allowed: " + std::string(methods)});
    a.headers.emplace_back("Allow", std::string(methods));
    return answer_now(a);
  }

  // Commands run one at a time on the command thread; the answer comes back through the
  // Deferred. The views in `c` stay valid until then.
  auto deferred = std::make_shared<net::Deferred>(ex.defer());
  bool queued = commands_.post([this, c, deferred] {
    Answer a;
    try {
      a = run(c);
    } catch (const std::exception& e) {
      agent_log().error("management: {} {} failed: {}", c.method, c.path, e.what());
      a = error_answer(500, "internal error", {e.what()});
    }
    deferred->respond(net::ResponseView{a.status, a.content_type, a.headers, a.body, false});
  });
  if (!queued) {
    Answer a = error_answer(503, "the agent is shutting down");
    deferred->respond(net::ResponseView{a.status, a.content_type, a.headers, a.body, false});
  }
}

ManagementApi::Answer ManagementApi::run(const Command& c) {
  std::string_view p = c.path, m = c.method;
  if (p == "/v1/status") return status();
  if (p == "/v1/configuration") return m == "PUT" ? configuration_put(c) : configuration_get();
  if (p == "/v1/configuration/history") {
    Map out;
    auto s = slot_.latest();
    out.set("active", s->blank() ? Value() : Value(s->id));
    out.set("configurations", activator_.history());
    return json_answer(200, Value(std::move(out)));
  }
  if (p == "/v1/configuration/rollback") return rollback(c);
  if (p == "/v1/configuration/stop" || p == "/v1/configuration/start") {
    bool stop = p.ends_with("/stop");
    CommandResult r = activator_.set_stopped(stop);
    Map out;
    out.set("stopped", Value(stop));
    out.set("id", Value(r.id));
    return from_result(r, Value(std::move(out)));
  }
  if (p == "/v1/mode") {
    if (m == "PUT") return mode_put(c);
    auto s = slot_.latest();
    Map out;
    out.set("mode", Value(s->blank() ? std::string() : s->runtime->mode()));
    return json_answer(200, Value(std::move(out)));
  }
  if (p == "/v1/extensions") return json_answer(200, extensions_ ? extensions_->list() : Value(List()));
  if (p.starts_with("/v1/extensions/")) return extension_change(c, p.substr(15));
  if (p == "/v1/vault") return vault_put(c);
  if (p == "/v1/trace") return m == "POST" ? trace_post(c) : trace_get();
  if (p == "/v1/stats") return stats();
  if (p == "/v1/logs") return logs_list();
  if (p.starts_with("/v1/logs/")) return log_file(c, p.substr(9));
  if (p == "/v1/snapshot") return snapshot(c);
  if (p == "/metrics") return metrics();
  return error_answer(404, "no such management endpoint: " + std::string(p));
}

ManagementApi::Answer ManagementApi::status() const {
  auto s = slot_.latest();
  Map m;
  m.set("name", Value(settings_.agent_name));
  m.set("version", Value(CAP_VERSION));
  auto up = std::chrono::steady_clock::now() - started_;
  m.set("uptime_s", Value(std::chrono::duration_cast<std::chrono::seconds>(up).count()));
  m.set("ready", Value(!s->blank()));
  m.set("configuration", configuration_value(*s));
  m.set("mode", Value(s->blank() ? std::string() : s->runtime->mode()));
  m.set("stopped", Value(s->stopped));
  m.set("proxy", Value(s->proxy()));
  m.set("extensions", extensions_ ? extensions_->summary() : Value(List()));
  return json_answer(200, Value(std::move(m)));
}

ManagementApi::Answer ManagementApi::configuration_put(const Command& c) {
  CommandResult r = activator_.activate(c.body);
  Map out;
  if (r.status == 200) {
    auto s = slot_.latest();
    out.set("id", Value(s->id));
    out.set("name", Value(s->name));
    out.set("sha256", Value(s->sha256));
    List w;
    for (auto& s2 : r.warnings) w.push_back(Value(s2));
    out.set("warnings", Value(std::move(w)));
  }
  return from_result(r, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::configuration_get() const {
  std::string zip, err;
  if (!activator_.active_zip(&zip, &err)) return error_answer(404, err);
  Answer a;
  a.content_type = "application/zip";
  a.body = std::move(zip);
  return a;
}

ManagementApi::Answer ManagementApi::rollback(const Command& c) {
  Value body;
  Answer bad;
  if (!json_body(c.body, &body, &bad)) return bad;
  std::string id;
  if (const Value* v = body.as_map().find("id"); v && !v->is_null()) {
    if (!v->is_string()) return error_answer(400, "\"id\" must be a configuration id (a string)");
    id = v->as_string();
  }
  CommandResult r = activator_.rollback(id);
  Map out;
  out.set("id", Value(r.id));
  return from_result(r, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::mode_put(const Command& c) {
  Value body;
  Answer bad;
  if (!json_body(c.body, &body, &bad)) return bad;
  const Value* mode = body.as_map().find("mode");
  if (!mode || !(mode->is_string() || mode->is_null()))
    return error_answer(
        400, "the body must be {\"mode\": \"NAME\"} (\"default\" for the normal rule set)");
  std::string name = mode->is_null() ? std::string() : mode->as_string();
  CommandResult r = activator_.set_mode(name);
  Map out;
  auto s = slot_.latest();
  out.set("mode", Value(s->blank() ? std::string() : s->runtime->mode()));
  return from_result(r, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::vault_put(const Command& c) {
  Value body;
  Answer bad;
  if (!json_body(c.body, &body, &bad)) return bad;
  if (!AgentVault::available())
    return error_answer(501,
                        "this cap-agent was built without libsodium, so it cannot store "
                        "credentials encrypted");
  std::string err;
  if (!vault_.replace(body, &err)) {
    agent_log().warn("vault: replace refused: {}", err);
    return error_answer(400, "the credentials were not stored", {err});
  }
  std::vector<std::string> names = vault_.names();
  agent_log().info("vault: replaced, {} credentials", names.size());
  List l;
  l.reserve(names.size());
  for (std::string& n : names) l.emplace_back(std::move(n));
  Map out;
  out.set("credentials", Value(std::move(l)));
  return json_answer(200, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::trace_post(const Command& c) {
  Value body;
  Answer bad;
  if (!json_body(c.body, &body, &bad)) return bad;
  int count = 20;
  if (const Value* v = body.as_map().find("count"); v && !v->is_null()) {
    if (!v->is_number() || v->as_number() < 1 || v->as_number() > 10000 ||
        v->as_number() != static_cast<double>(static_cast<int>(v->as_number())))
      return error_answer(400, "\"count\" must be a whole number from 1 to 10000");
    count = static_cast<int>(v->as_number());
  }
  auto s = slot_.latest();
  if (s->blank()) return error_answer(409, "no configuration is active");
  s->runtime->arm_trace(count);
  Map out;
  out.set("armed", Value(count));
  out.set("id", Value(s->id));
  return json_answer(200, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::trace_get() const {
  auto s = slot_.latest();
  Map out;
  List traces;
  if (!s->blank()) {
    for (const TraceRecord& t : s->runtime->traces()) {
      Value v = trace_to_value(t);
      Map m = v.as_map();
      m.set("text", Value(format_trace(t)));
      traces.push_back(Value(std::move(m)));
    }
  }
  out.set("remaining", Value(s->blank() ? 0 : s->runtime->trace_remaining()));
  out.set("traces", Value(std::move(traces)));
  return json_answer(200, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::stats() const {
  auto s = slot_.latest();
  Map out;
  out.set("configuration", configuration_value(*s));
  out.set("requests", metrics_.summary());
  out.set("rules", s->blank() ? Value() : s->runtime->stats());
  Value sections = metrics_.sections();
  for (auto& [name, section] : sections.as_map()) out.set(name, section);
  return json_answer(200, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::logs_list() const {
  List files;
  for (auto& f : list_log_files(settings_.home + "/logs")) {
    Map m;
    m.set("name", Value(f.name));
    m.set("size", Value(f.size));
    m.set("modified", Value(iso8601_utc(f.modified_ms)));
    files.push_back(Value(std::move(m)));
  }
  Map out;
  out.set("files", Value(std::move(files)));
  return json_answer(200, Value(std::move(out)));
}

ManagementApi::Answer ManagementApi::log_file(const Command& c, std::string_view name) const {
  size_t lines = 0;
  if (auto tail = query_param(c.query, "tail")) {
    auto [ptr, ec] = std::from_chars(tail->data(), tail->data() + tail->size(), lines);
    if (ec != std::errc() || ptr != tail->data() + tail->size())
      return error_answer(400, "tail must be a whole number of lines");
  }
  std::string text, err;
  bool not_found = false;
  if (!read_log_tail(settings_.home + "/logs", name, lines, &text, &err, &not_found))
    return error_answer(not_found ? 404 : 500, err);
  Answer a;
  a.content_type = "text/plain; charset=utf-8";
  a.body = std::move(text);
  return a;
}

ManagementApi::Answer ManagementApi::extension_change(const Command& c, std::string_view name) {
  if (!extensions_) return error_answer(501, "this cap-agent serves no extensions");
  Value out;
  CommandResult r = c.method == "PUT" ? extensions_->install(name, c.body, &out)
                                      : extensions_->remove(name, &out);
  return from_result(r, out);
}

ManagementApi::Answer ManagementApi::metrics() const {
  Answer a;
  a.content_type = "text/plain; version=0.0.4; charset=utf-8";
  a.body = metrics_.prometheus(*slot_.latest());
  return a;
}

ManagementApi::Answer ManagementApi::snapshot(const Command& c) {
  if (!snapshots_) return error_answer(501, "snapshots are not set up in this agent");
  if (c.method == "PUT") {
    CommandResult r = snapshots_->restore(c.body);
    if (r.status != 200) agent_log().warn("snapshot restore refused: {}", r.error);
    auto s = slot_.latest();
    Map out;
    out.set("id", Value(r.id));
    out.set("configuration", configuration_value(*s));
    out.set("mode", Value(s->blank() ? std::string() : s->runtime->mode()));
    return from_result(r, Value(std::move(out)));
  }
  std::string zip;
  CommandResult r = snapshots_->capture(&zip);
  if (r.status != 200) return from_result(r, Value());
  Answer a;
  a.content_type = "application/zip";
  a.body = std::move(zip);
  return a;
}

}  // namespace cap::agent

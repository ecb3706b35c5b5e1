// deploy, status, logs, trace and rollback: capctl talking to an agent's management API
// through signed requests (cli/remote.h). Progress goes to stderr, results to stdout.
// Exit status: 0 done, 1 the agent refused or could not be reached (errors printed),
// 2 bad usage (no key, a bad --agent, a path that does not exist).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "cap/package.h"
#include "cap/value.h"
#include "cli/commands.h"
#include "cli/remote.h"

namespace cap::cli {

namespace fs = std::filesystem;

/// The agent to talk to, with the key from --key-file or CAP_MGMT_KEY; false (after saying
/// why: exit 2) when there is no key or --agent is not HOST:PORT.
bool resolve_agent(const AgentOptions& o, AgentTarget* t) {
  std::string key, error;
  if (!load_agent_key(o.key_file, &key, &error)) {
    std::cerr << "capctl: " << error << "\n";
    return false;
  }
  if (!parse_agent_target(o.agent, key, t, &error)) {
    std::cerr << "capctl: --agent " << o.agent << ": " << error << "\n";
    return false;
  }
  return true;
}

/// Prints an agent's error answer ({"error", "details"}) to stderr.
void print_agent_error(const AgentTarget& t, const AgentReply& r) {
  if (r.status == 0) {
    std::cerr << "capctl: cannot reach the agent at " << t.host << ":" << t.port << ": " << r.error
              << "\n";
    return;
  }
  std::string err;
  Value v = json_parse(r.body, &err);
  const Value* msg = v.is_map() ? v.as_map().find("error") : nullptr;
  std::cerr << "capctl: the agent answered " << r.status << ": "
            << (msg ? msg->to_text() : r.body.substr(0, 500)) << "\n";
  if (const Value* d = v.is_map() ? v.as_map().find("details") : nullptr; d && d->is_list())
    for (const Value& line : d->as_list()) std::cerr << "  " << line.to_text() << "\n";
}

namespace {

bool ok(const AgentReply& r) { return r.status >= 200 && r.status < 300; }

/// The JSON body of a good answer; null (after printing why) when it does not parse.
Value json_of(const AgentReply& r) {
  std::string err;
  Value v = json_parse(r.body, &err);
  if (!err.empty()) std::cerr << "capctl: the agent's answer is not JSON: " << err << "\n";
  return v;
}

std::string text_of(const Value* v) { return v ? v->to_text() : std::string(); }

}  // namespace

int cmd_deploy(const std::string& path, const AgentOptions& o) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    std::cerr << "capctl: " << path << ": no such folder or file\n";
    return 2;
  }
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;

  std::string zip, err;
  if (fs::is_directory(path, ec)) {
    Package pkg;
    if (!read_folder(path, &pkg, &err) || !write_zip(pkg, &zip, &err)) {
      std::cerr << "capctl: " << err << "\n";
      return 1;
    }
    std::cerr << "capctl: packed " << path << " (" << pkg.files.size() << " files, " << zip.size()
              << " bytes)\n";
  } else {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    zip = ss.str();
    Package pkg;
    if (!in || !read_zip(zip, &pkg, &err)) {
      std::cerr << "capctl: " << path << ": " << (err.empty() ? "cannot read" : err) << "\n";
      return 1;
    }
  }
  std::cerr << "capctl: deploying to " << t.host << ":" << t.port << "\n";
  AgentReply r = agent_call(t, "PUT", "/v1/configuration", zip, "application/zip");
  if (r.status == 422) {
    // Every error, one a line on stdout, as `capctl validate` prints them.
    Value v = json_of(r);
    const Value* d = v.is_map() ? v.as_map().find("details") : nullptr;
    size_t n = 0;
    if (d && d->is_list())
      for (const Value& line : d->as_list()) {
        std::cout << line.to_text() << "\n";
        ++n;
      }
    const Value* msg = v.is_map() ? v.as_map().find("error") : nullptr;
    std::cerr << "capctl: not deployed: " << text_of(msg) << " (" << n
              << (n == 1 ? " error" : " errors") << "); the agent keeps its active configuration\n";
    return 1;
  }
  if (!ok(r)) {
    print_agent_error(t, r);
    return 1;
  }
  Value v = json_of(r);
  if (const Value* w = v.is_map() ? v.as_map().find("warnings") : nullptr; w && w->is_list())
    for (const Value& line : w->as_list()) std::cerr << "warning: " << line.to_text() << "\n";
  std::cout << text_of(v.is_map() ? v.as_map().find("id") : nullptr) << "\n";
  std::cerr << "capctl: active on " << t.host << ":" << t.port << "\n";
  return 0;
}

int cmd_status(const AgentOptions& o, bool json) {
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;
  AgentReply r = agent_call(t, "GET", "/v1/status", "", "");
  if (!ok(r)) {
    print_agent_error(t, r);
    return 1;
  }
  if (json) {
    std::cout << r.body;
    if (!r.body.empty() && r.body.back() != '\n') std::cout << "\n";
    return 0;
  }
  Value v = json_of(r);
  if (!v.is_map()) return 1;
  const Map& m = v.as_map();
  auto field = [&](const char* k) { return text_of(m.find(k)); };
  std::cout << "agent          " << field("name") << " (cap-agent " << field("version") << "), up "
            << field("uptime_s") << " s\n";
  const Value* ready = m.find("ready");
  std::cout << "ready          " << (ready && ready->truthy() ? "yes" : "no") << "\n";
  const Value* c = m.find("configuration");
  if (c && c->is_map()) {
    auto cf = [&](const char* k) { return text_of(c->as_map().find(k)); };
    std::cout << "configuration  " << cf("name") << " (id " << cf("id") << ", activated "
              << cf("activated_at") << ")\n";
    std::cout << "sha256         " << cf("sha256") << "\n";
    std::string mode = field("mode");
    std::cout << "mode           " << (mode.empty() ? "default" : mode) << "\n";
    const Value* stopped = m.find("stopped");
    std::cout << "rules          " << (stopped && stopped->truthy() ? "stopped" : "running")
              << "\n";
  } else {
    std::cout << "configuration  none (blank agent)\n";
  }
  const Value* ext = m.find("extensions");
  std::string names;
  if (ext && ext->is_list())
    for (const Value& e : ext->as_list()) {
      const Value* n = e.is_map() ? e.as_map().find("name") : nullptr;
      const Value* v = e.is_map() ? e.as_map().find("version") : nullptr;
      names += (names.empty() ? "" : ", ") + (n ? n->to_text() : to_json(e)) +
               (v ? " " + v->to_text() : std::string());
    }
  std::cout << "extensions     " << (names.empty() ? "none" : names) << "\n";
  return 0;
}

int cmd_logs(const AgentOptions& o, const std::string& file, int tail) {
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;
  if (file.empty()) {
    AgentReply r = agent_call(t, "GET", "/v1/logs", "", "");
    if (!ok(r)) {
      print_agent_error(t, r);
      return 1;
    }
    Value v = json_of(r);
    const Value* files = v.is_map() ? v.as_map().find("files") : nullptr;
    if (!files || !files->is_list()) return 1;
    for (const Value& f : files->as_list()) {
      if (!f.is_map()) continue;
      std::string name = text_of(f.as_map().find("name"));
      std::printf("%-24s %12s bytes  %s\n", name.c_str(), text_of(f.as_map().find("size")).c_str(),
                  text_of(f.as_map().find("modified")).c_str());
    }
    return 0;
  }
  // The name goes into the path as it is: the agent refuses anything but its own log names.
  std::string path = "/v1/logs/";
  for (unsigned char c : file) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_';
    if (plain) {
      path.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      path += buf;
    }
  }
  if (tail > 0) path += "?tail=" + std::to_string(tail);
  AgentReply r = agent_call(t, "GET", path, "", "");
  if (!ok(r)) {
    print_agent_error(t, r);
    return 1;
  }
  std::fwrite(r.body.data(), 1, r.body.size(), stdout);
  return 0;
}

int cmd_trace(const AgentOptions& o, int arm) {
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;
  if (arm > 0) {
    AgentReply r = agent_call(t, "POST", "/v1/trace", "{\"count\": " + std::to_string(arm) + "}",
                              "application/json");
    if (!ok(r)) {
      print_agent_error(t, r);
      return 1;
    }
    std::cout << "trace armed for the next " << arm << " transactions\n";
    return 0;
  }
  AgentReply r = agent_call(t, "GET", "/v1/trace", "", "");
  if (!ok(r)) {
    print_agent_error(t, r);
    return 1;
  }
  Value v = json_of(r);
  const Value* traces = v.is_map() ? v.as_map().find("traces") : nullptr;
  if (!traces || !traces->is_list()) return 1;
  if (traces->as_list().empty())
    std::cerr << "capctl: no transactions recorded; arm the trace with --arm N first\n";
  for (const Value& tr : traces->as_list())
    if (tr.is_map()) std::cout << text_of(tr.as_map().find("text")) << "\n";
  const Value* remaining = v.as_map().find("remaining");
  if (remaining && remaining->truthy())
    std::cerr << "capctl: " << remaining->to_text() << " more transactions will be recorded\n";
  return 0;
}

int cmd_rollback(const AgentOptions& o, const std::string& to) {
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;
  std::string body;
  if (!to.empty()) {
    Map m;
    m.set("id", Value(to));
    body = to_json(Value(std::move(m)));
  }
  std::cerr << "capctl: rolling back " << t.host << ":" << t.port
            << (to.empty() ? " to the previous configuration" : " to " + to) << "\n";
  AgentReply r = agent_call(t, "POST", "/v1/configuration/rollback", body,
                            body.empty() ? "" : "application/json");
  if (!ok(r)) {
    print_agent_error(t, r);
    return 1;
  }
  Value v = json_of(r);
  std::cout << text_of(v.is_map() ? v.as_map().find("id") : nullptr) << "\n";
  return 0;
}

}  // namespace cap::cli

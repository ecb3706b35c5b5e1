#include "support/harness.h"

#include <filesystem>
#include <fstream>
#include <random>

#include "store/sql.h"

namespace cap::test {

namespace fs = std::filesystem;

Harness::Harness(std::map<std::string, std::string> files_in) {
  if (!files_in.count("cap.json"))
    files_in["cap.json"] = R"({"format": 1, "name": "test", "ruleset": "main"})";
  std::random_device rd;
  dir = (fs::temp_directory_path() / ("cap-harness-" + std::to_string(rd()))).string();
  Package pkg;
  for (auto& [path, content] : files_in) {
    fs::path p = fs::path(dir) / path;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }
  std::string err;
  if (!read_folder(dir, &pkg, &err)) {
    loaded.diagnostics.push_back({Diagnostic::Severity::Error, "", "", "", err});
    return;
  }
  LoadOptions opts;
  opts.logger = &logger;
  loaded = load_configuration(pkg, registry(), opts);
  if (!loaded.ok()) return;
  fs::create_directories(fs::path(dir) / "shared");
  this->files = std::make_unique<LocalFiles>((fs::path(dir) / "shared").string());
  HostServices s;
  s.logger = &logger;
  s.clock = &clock;
  s.vault = &vault;
  s.files = this->files.get();
  sql = std::make_unique<store::SqlHub>(store::SqlHubOptions{});
  s.sql = sql.get();
  runtime = std::make_unique<Runtime>(loaded.configuration, s);
}

RuleRegistry& Harness::registry() {
  static RuleRegistry* reg = [] {
    auto* r = new RuleRegistry();  // one catalogue for the whole test binary
    register_base_rules(*r);
    return r;
  }();
  return *reg;
}

Harness Harness::rules(const std::string& rules_json, const std::string& start,
                       std::map<std::string, std::string> extra) {
  extra["rulesets/main.json"] =
      R"({"name": "main", "start": ")" + start + R"(", "rules": )" + rules_json + "}";
  return Harness(std::move(extra));
}

std::string Harness::errors() const {
  std::string out;
  for (auto& d : loaded.diagnostics) out += d.format() + "\n";
  return out;
}

const Value& Harness::Result::var(const std::string& name) const {
  static const Value null;
  auto it = vars.find(name);
  return it == vars.end() ? null : it->second;
}

Harness::Result Harness::request(const std::string& line, const std::vector<std::string>& headers,
                                 const std::string& body) {
  Result r;
  if (!runtime) {
    r.outcome.failed = true;
    r.outcome.error = "configuration did not load:\n" + errors();
    return r;
  }
  std::string method = line.substr(0, line.find(' '));
  std::string target = line.substr(line.find(' ') + 1);
  std::vector<std::pair<std::string, std::string>> hs;
  for (auto& h : headers) {
    auto c = h.find(':');
    std::string v = h.substr(c + 1);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    hs.emplace_back(h.substr(0, c), v);
  }
  Request req;
  req.method = method;
  req.target = target;
  for (auto& [k, v] : hs) req.headers.emplace_back(k, v);
  req.body = body;
  req.remote_addr = "10.1.2.3";
  r.outcome = runtime->handle(req, r.response, ws, [&](Variables& vars) {
    vars.for_each([&](std::string_view k, const Value& v) { r.vars[std::string(k)] = v; });
  });
  return r;
}

}  // namespace cap::test

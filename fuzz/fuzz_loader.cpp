// libFuzzer target: configurations as an agent receives them, then one request through
// whatever loaded.
//
// The input is read three ways:
//   - starting with "PK": a zip, through read_zip (small limits) and the loader;
//   - holding a NUL byte (never valid in JSON text): cap.json before it, one rule set after;
//   - otherwise: the input as the rule set beside a fixed manifest, and as the manifest
//     beside a fixed rule set (so the seeds, single files from examples/, fuzz both).
// Loading must report errors, never crash, and never hand out a configuration with an
// error. A configuration that loads runs its startup rule set and one request; rules may
// fail the request (Outcome::failed) but must not crash. scripts/run-fuzz seeds
// fuzz/corpus/fuzz_loader from the examples.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cap/engine.h"

namespace {

class NullLogger : public cap::Logger {
 public:
  void log(cap::LogLevel, std::string_view) override {}
};

const cap::RuleRegistry& registry() {
  static const cap::RuleRegistry* reg = [] {
    static cap::RuleRegistry r;
    cap::register_base_rules(r);
    return &r;
  }();
  return *reg;
}

constexpr std::string_view kBlacklist =
    "ip,reason,added\n203.0.113.66,credential stuffing,2024-03-01\n"
    "203.0.113.77,\"spam, repeated\",2024-03-02\n";

constexpr std::string_view kMainRuleSet = R"({"name": "main", "start": "r", "rules": {
  "r": {"rule": "HttpRespond", "with": {"status": 200, "body": "${GREETING}, ${name}!"}}}})";

/// A name that can be a rule set file name, or "" when `text` has none.
std::string ruleset_name(std::string_view text) {
  std::string err;
  cap::JsonLimits limits;
  limits.max_depth = 64;
  limits.max_bytes = 1 << 20;
  cap::Value doc = cap::json_parse(text, &err, limits);
  if (!err.empty() || !doc.is_map()) return "";
  const cap::Value* name = doc.as_map().find("name");
  if (!name || !name->is_string()) return "";
  const std::string& n = name->as_string();
  if (n.empty() || n.size() > 64) return "";
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return "";
  return n;
}

std::string manifest_for(const std::string& entry) {
  return R"({"format": 1, "name": "fuzz", "ruleset": ")" + entry +
         R"(", "modes": {"Maintenance": ")" + entry +
         R"("}, "globals": {"GREETING": "Hello", "RETRY_AFTER_SECONDS": 120}, "performance": "timings"})";
}

void run(const cap::Package& pkg) {
  static NullLogger logger;
  static cap::SystemClock clock;
  static cap::MemoryVault vault;
  cap::LoadOptions opts;
  opts.getenv = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  opts.logger = &logger;
  cap::LoadResult loaded = cap::load_configuration(pkg, registry(), opts);
  size_t errors = 0;
  for (auto& d : loaded.diagnostics) {
    if (d.severity == cap::Diagnostic::Severity::Error) ++errors;
    (void)d.format();
  }
  if (loaded.ok() != (errors == 0)) __builtin_trap();  // a configuration only without errors
  if (!loaded.ok()) return;

  cap::HostServices services;
  services.logger = &logger;
  services.clock = &clock;
  services.vault = &vault;
  cap::Runtime runtime(loaded.configuration, services);
  (void)runtime.startup();
  runtime.arm_trace(1);
  cap::Workspace ws;
  for (const char* target : {"/hello?name=fuzz&user=u&on=1", "/admin/maintenance?on=0"}) {
    cap::Request req;
    req.method = "POST";
    req.target = target;
    req.headers = {{"Host", "example.com"},
                   {"User-Agent", "FuzzBot/1.0"},
                   {"Cookie", "sid=abc; theme=dark"},
                   {"Content-Type", "application/x-www-form-urlencoded"}};
    req.body = "field=value&on=1";
    req.remote_addr = "203.0.113.66";
    cap::Response res;
    cap::Outcome outcome = runtime.handle(req, res, ws);
    if (outcome.failed && outcome.error.empty()) __builtin_trap();  // a failure says why
  }
  for (auto& t : runtime.traces()) (void)cap::format_trace(t);
  (void)cap::to_json(runtime.stats());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  if (input.substr(0, 2) == "PK") {
    cap::PackageLimits limits;
    limits.max_entries = 64;
    limits.max_entry_bytes = 1 << 20;
    limits.max_total_bytes = 4 << 20;
    cap::Package pkg;
    std::string err;
    if (cap::read_zip(input, &pkg, &err, limits)) {
      run(pkg);
    } else if (err.empty()) {
      __builtin_trap();  // a refusal says why
    }
    return 0;
  }

  size_t nul = input.find('\0');
  if (nul != std::string_view::npos) {
    std::string_view manifest = input.substr(0, nul);
    std::string_view rules = input.substr(nul + 1);
    std::string name = ruleset_name(rules);
    cap::Package pkg;
    pkg.files.emplace("cap.json", std::string(manifest));
    pkg.files.emplace("rulesets/" + (name.empty() ? std::string("main") : name) + ".json",
                      std::string(rules));
    pkg.files.emplace("data/blacklist.csv", std::string(kBlacklist));
    run(pkg);
    return 0;
  }

  {  // The input as a rule set.
    std::string name = ruleset_name(input);
    if (name.empty()) name = "main";
    cap::Package pkg;
    pkg.files.emplace("cap.json", manifest_for(name));
    pkg.files.emplace("rulesets/" + name + ".json", std::string(input));
    pkg.files.emplace("data/blacklist.csv", std::string(kBlacklist));
    run(pkg);
  }
  {  // The input as the manifest.
    cap::Package pkg;
    pkg.files.emplace("cap.json", std::string(input));
    pkg.files.emplace("rulesets/main.json", std::string(kMainRuleSet));
    pkg.files.emplace("data/blacklist.csv", std::string(kBlacklist));
    run(pkg);
  }
  return 0;
}

// The same rule written natively and as an extension (Lua), on the W1 hello workload:
// examples/hello as it is (the greeting built by SetVariable with a template), and the same
// configuration with that node replaced by an extension rule doing the same in Lua.
// Part of cap_engine_bench; `make bench` runs it.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "cap/engine.h"
#include "ext/extensions.h"

namespace {

constexpr const char* kGreetScript = R"(
return function(ctx, p)
  ctx:set(p.output, p.greeting .. ", " .. (ctx:get("name") or "") .. "!")
end)";

constexpr const char* kGreetManifest = R"({"name": "greet", "version": "1.0.0",
  "rules": [{"name": "Greet", "group": "Bench", "doc": "Sets output to 'greeting, name!'.",
             "params": [{"name": "greeting", "type": "string", "required": true},
                        {"name": "output", "type": "variable", "default": "MSG"}],
             "script": "rules/greet.lua"}]})";

cap::RuleRegistry& registry() {
  static cap::RuleRegistry reg;
  static cap::ext::ExtensionSet extensions(reg);
  static bool filled = [] {
    cap::register_base_rules(reg);
    cap::Package pkg;
    pkg.files["rules/greet.lua"] = kGreetScript;
    pkg.files["extension.json"] = cap::ext::manifest_json(
        kGreetManifest, {{"rules/greet.lua", cap::ext::sha256_hex(kGreetScript)}});
    std::string zip, err;
    cap::write_zip(pkg, &zip, &err);
    cap::ext::ExtensionSet::Prepared p;
    std::vector<std::string> errors;
    if (!extensions.prepare(zip, &p, &errors)) {
      for (auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
      std::abort();
    }
    extensions.commit(std::move(p));
    return true;
  }();
  (void)filled;
  return reg;
}

std::shared_ptr<const cap::Configuration> hello(bool lua) {
  cap::Package pkg;
  std::string err;
  if (!cap::read_folder(std::string(CAP_SOURCE_DIR) + "/examples/hello", &pkg, &err)) std::abort();
  if (lua) {
    std::string& main = pkg.files["rulesets/main.json"];
    std::string native =
        R"("rule": "SetVariable", "with": { "name": "MSG", "value": "${GREETING}, ${name}!" })";
    size_t at = main.find(native);
    if (at == std::string::npos) std::abort();
    main.replace(at, native.size(), R"("rule": "Greet", "with": { "greeting": "${GREETING}" })");
    std::string& cap = pkg.files["cap.json"];
    cap.insert(cap.rfind('}'), R"(, "extensions": {"greet": "1.0.0"})");
  }
  auto r = cap::load_configuration(pkg, registry());
  if (!r.ok()) {
    for (auto& d : r.diagnostics) std::fprintf(stderr, "%s\n", d.format().c_str());
    std::abort();
  }
  return r.configuration;
}

void run(benchmark::State& state, bool lua) {
  cap::SystemClock clock;
  cap::StderrLogger logger{cap::LogLevel::Error};
  cap::HostServices services;
  services.clock = &clock;
  services.logger = &logger;
  cap::Runtime runtime(hello(lua), services);
  cap::Workspace ws;
  cap::Response res;
  cap::Request req;
  req.method = "GET";
  req.target = "/hello?name=World";
  req.remote_addr = "10.0.0.1";
  req.headers = {{"Host", "bench.local"}, {"User-Agent", "wrk"}, {"Accept", "*/*"}};
  uint64_t bad = 0;
  for (auto _ : state) {
    res.reset();
    cap::Outcome o = runtime.handle(req, res, ws);
    if (o.failed || res.body != "Hello, World!") ++bad;
    benchmark::DoNotOptimize(res.body.data());
  }
  if (bad) state.SkipWithError("unexpected responses");
  state.counters["req/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_HelloNativeGreeting(benchmark::State& state) { run(state, false); }
BENCHMARK(BM_HelloNativeGreeting);

void BM_HelloLuaGreeting(benchmark::State& state) { run(state, true); }
BENCHMARK(BM_HelloLuaGreeting);

}  // namespace

// Extensions: manifests, package verification, the sandboxed Lua host, registration.
#include <gtest/gtest.h>

#include "ext/ext_support.h"
#include "ext/extensions.h"
#include "support/harness.h"

namespace cap::test {
namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += s + "\n";
  return out;
}

/// Installs `zip` into the harness catalogue; fails the test with the errors otherwise.
void install(ext::ExtensionSet& set, const std::string& zip) {
  ext::ExtensionSet::Prepared p;
  std::vector<std::string> errors;
  ASSERT_TRUE(set.prepare(zip, &p, &errors)) << joined(errors);
  set.commit(std::move(p));
}

ext::ExtensionSet& extensions() {
  static ext::ExtensionSet set(Harness::registry());
  return set;
}

/// A configuration running rule `rule` with `with_json`, then recording the chain taken.
Harness run_rule(const std::string& rule, const std::string& with_json = "{}") {
  return Harness::rules(R"({
      "r": {"rule": ")" + rule +
                            R"(", "with": )" + with_json + R"(,
            "then": {"next": ["n"], "other": ["o"]}},
      "n": {"rule": "SetVariable", "with": {"name": "CHAIN", "value": "next"}},
      "o": {"rule": "SetVariable", "with": {"name": "CHAIN", "value": "other"}}})",
                        "r");
}

// ------------------------------------------------------------------ versions

TEST(ExtVersions, Requirements) {
  std::string err;
  EXPECT_TRUE(ext::version_satisfies("1.2.0", "1.2.0", &err));
  EXPECT_TRUE(ext::version_satisfies("1.2.0", "1.2", &err));
  EXPECT_FALSE(ext::version_satisfies("1.2.1", "1.2.0", &err));
  EXPECT_TRUE(err.empty());
  EXPECT_TRUE(ext::version_satisfies("1.3.0", ">=1.2", &err));
  EXPECT_FALSE(ext::version_satisfies("1.1.9", ">=1.2", &err));
  EXPECT_TRUE(ext::version_satisfies("1.9.0", "^1.2.0", &err));
  EXPECT_FALSE(ext::version_satisfies("2.0.0", "^1.2.0", &err));
  EXPECT_TRUE(ext::version_satisfies("1.2.7", "~1.2.0", &err));
  EXPECT_FALSE(ext::version_satisfies("1.3.0", "~1.2.0", &err));
  EXPECT_TRUE(ext::version_satisfies("1.5.0", ">=1.2 <2", &err));
  EXPECT_TRUE(ext::version_satisfies("7.0.0", "*", &err));
  EXPECT_FALSE(ext::version_satisfies("1.0.0", "latest", &err));
  EXPECT_NE(err.find("not a version requirement"), std::string::npos);
}

// ------------------------------------------------------------------ packages

TEST(ExtPackage, MalformedManifestsNameEveryProblem) {
  ext::ExtensionPackage pkg;
  std::vector<std::string> errors;
  EXPECT_FALSE(
      ext::read_extension(ext_zip({{"extension.json", "{not json"}}, false), &pkg, &errors));
  EXPECT_NE(joined(errors).find("extension.json: extension.json: not valid JSON"),
            std::string::npos)
      << joined(errors);

  errors.clear();
  std::string bad = R"({"name": "Bad Name", "version": "one", "cap": ">=99",
      "rules": [{"name": "9x", "params": [{"name": "a", "type": "numbr"}], "chain_points": [],
                 "script": "../x.lua"}], "colour": 1})";
  EXPECT_FALSE(ext::read_extension(ext_zip({{"extension.json", bad}}), &pkg, &errors));
  std::string all = joined(errors);
  for (const char* expected :
       {"name: 'Bad Name' is not a valid extension name", "version: 'one' is not a version",
        "cap: this extension needs CAP >=99", "rules[0].name: '9x' is not a valid rule name",
        "rules[0].doc: missing", "rules[0].params[0].type: unknown type 'numbr'",
        "rules[0].chain_points: must be a non-empty list", "rules[0].script: '../x.lua' must be",
        "colour: unknown field"})
    EXPECT_NE(all.find(expected), std::string::npos) << expected << "\n" << all;
}

TEST(ExtPackage, WrongHashesAndUnlistedMembersAreRefused) {
  std::string manifest = R"({"name": "h", "version": "1.0.0", "rules": [{"name": "HashRule",
      "doc": "d", "script": "rules/a.lua"}],
      "sha256": {"rules/a.lua": "0000000000000000000000000000000000000000000000000000000000000000",
                 "data/gone.txt": "0000000000000000000000000000000000000000000000000000000000000000"}})";
  ext::ExtensionPackage pkg;
  std::vector<std::string> errors;
  EXPECT_FALSE(ext::read_extension(ext_zip({{"extension.json", manifest},
                                            {"rules/a.lua", "return function() end"},
                                            {"extra.txt", "x"}},
                                           false),
                                   &pkg, &errors));
  std::string all = joined(errors);
  EXPECT_NE(all.find("rules/a.lua: sha256 does not match"), std::string::npos) << all;
  EXPECT_NE(all.find("extra.txt: not listed in extension.json \"sha256\""), std::string::npos)
      << all;
  EXPECT_NE(all.find("data/gone.txt: listed in extension.json \"sha256\" but missing"),
            std::string::npos)
      << all;
}

TEST(ExtPackage, ScriptsThatDoNotCompileOrAreBytecodeAreRefused) {
  ext::ExtensionPackage pkg;
  std::vector<std::string> errors;
  EXPECT_FALSE(ext::read_extension(
      one_rule_ext("syn", "1.0.0", "SynRule", "return function(\n  if"), &pkg, &errors));
  EXPECT_NE(joined(errors).find("rules/rule.lua:2:"), std::string::npos) << joined(errors);
  errors.clear();
  EXPECT_FALSE(ext::read_extension(
      one_rule_ext("byt", "1.0.0", "BytRule", std::string("\x1bLua\x54\x00garbage", 12)), &pkg,
      &errors));
  EXPECT_NE(joined(errors).find("bytecode"), std::string::npos) << joined(errors);
}

TEST(ExtPackage, ZipSlipPathsAreRefused) {
  Package evil;
  evil.files["extension.json"] = "{}";
  evil.files["../../etc/evil.lua"] = "x";
  std::string zip, err;
  ASSERT_TRUE(write_zip(evil, &zip, &err)) << err;
  ext::ExtensionPackage pkg;
  std::vector<std::string> errors;
  EXPECT_FALSE(ext::read_extension(zip, &pkg, &errors));
  EXPECT_NE(joined(errors).find("absolute path or '..'"), std::string::npos) << joined(errors);
}

// ------------------------------------------------------------------ the host

TEST(ExtHost, RunsTheScriptWithParametersAndVariables) {
  install(extensions(), one_rule_ext("basic", "1.0.0", "BasicRule", R"(
return function(ctx, p)
  ctx:set(p.output, {sum = p.value.a + p.value.b, uri = ctx:get("URI"), list = {1, 2, "x"}})
  ctx:set("GONE", 1)
  ctx:delete("GONE")
  if p.value.a > 1 then return "other" end
end)"));
  auto h = run_rule("BasicRule", R"({"value": {"a": 1, "b": "${2 + 3}"}, "output": "RESULT"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /path");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  const Map& result = r.var("RESULT").as_map();  // Lua tables have no order
  EXPECT_EQ(result.size(), 3u);
  EXPECT_EQ(to_json(*result.find("sum")), "6");
  EXPECT_EQ(to_json(*result.find("uri")), R"("/path")");
  EXPECT_EQ(to_json(*result.find("list")), R"([1,2,"x"])");
  EXPECT_TRUE(r.var("GONE").is_null());
  EXPECT_EQ(r.var("CHAIN").to_text(), "next");  // nil takes "next"

  auto h2 = run_rule("BasicRule", R"({"value": {"a": 5, "b": 1}})");
  auto r2 = h2.request("GET /");
  EXPECT_EQ(r2.var("CHAIN").to_text(), "other");
  EXPECT_EQ(r2.var("OUT").as_map().find("sum")->as_number(), 6);  // the default output
}

TEST(ExtHost, ErrorsNameExtensionRuleAndLineAndTakeTheErrorPath) {
  install(extensions(), one_rule_ext("broken", "1.0.0", "BrokenRule", R"(
return function(ctx, p)
  local t = nil
  return t.field
end)"));
  auto h = run_rule("BrokenRule");
  auto r = h.request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("extension broken 1.0.0, rule BrokenRule: rules/rule.lua:4:"),
            std::string::npos)
      << r.outcome.error;

  // Inside a FailSafePoint the error takes "failed".
  auto safe = Harness::rules(R"({
      "fs": {"rule": "FailSafePoint", "then": {"ok": ["r"], "failed": ["f"]}},
      "r": {"rule": "BrokenRule"},
      "f": {"rule": "HttpRespond", "with": {"status": 503, "body": "fallback"}}})",
                             "fs");
  ASSERT_TRUE(safe.ok()) << safe.errors();
  auto r2 = safe.request("GET /");
  EXPECT_FALSE(r2.outcome.failed);
  EXPECT_EQ(r2.response.body, "fallback");
}

TEST(ExtHost, UnknownChainPointsAreErrors) {
  install(extensions(),
          one_rule_ext("chainx", "1.0.0", "ChainRule", "return function() return 'sideways' end"));
  auto r = run_rule("ChainRule").request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("returned 'sideways', which is not one of its chain points "
                                 "(next, other)"),
            std::string::npos)
      << r.outcome.error;
}

TEST(ExtHost, RunawayLoopsAreStoppedEvenUnderPcall) {
  install(extensions(), one_rule_ext("loop", "1.0.0", "LoopRule", R"(
return function(ctx, p)
  if p.value == "pcall" then
    while true do pcall(function() while true do end end) end
  end
  if p.value == "coroutine" then
    while true do coroutine.resume(coroutine.create(function() while true do end end)) end
  end
  while true do end
end)",
                                     "", R"( "limits": {"instructions": 100000},)"));
  for (std::string mode : {"plain", "pcall", "coroutine"}) {
    auto h = run_rule("LoopRule", R"({"value": ")" + mode + R"("})");
    auto r = h.request("GET /");
    EXPECT_TRUE(r.outcome.failed) << mode;
    EXPECT_NE(r.outcome.error.find("extension loop 1.0.0, rule LoopRule: rules/rule.lua:"),
              std::string::npos)
        << r.outcome.error;
    EXPECT_NE(r.outcome.error.find("CPU budget exceeded (more than 100000 instructions"),
              std::string::npos)
        << r.outcome.error;
  }
}

TEST(ExtHost, MemoryBombsAreStoppedAndTheStateRecovers) {
  install(extensions(),
          one_rule_ext("bomb", "1.0.0", "BombRule", R"(
return function(ctx, p)
  if p.value == "rep" then local s = string.rep("x", 1 << 40) end
  if p.value == "grow" then local s = "x" while true do s = s .. s end end
  if p.value == "table" then local t = {} for i = 1, 1e9 do t[i] = {i} end end
  if p.value == "caught" then
    local ok = pcall(function() local t = {} for i = 1, 1e9 do t[i] = i end end)
    ctx:set("CAUGHT", not ok)
  end
  ctx:set("SMALL", string.rep("y", 10))
end)",
                       "", R"( "limits": {"memory_mb": 4, "instructions": 100000000},)"));
  for (std::string mode : {"rep", "grow", "table"}) {
    auto r = run_rule("BombRule", R"({"value": ")" + mode + R"("})").request("GET /");
    EXPECT_TRUE(r.outcome.failed) << mode;
    EXPECT_NE(r.outcome.error.find("extension bomb 1.0.0, rule BombRule:"), std::string::npos)
        << r.outcome.error;
    EXPECT_TRUE(r.outcome.error.find("memory limit of 4 MiB exceeded") != std::string::npos ||
                r.outcome.error.find("not enough memory") != std::string::npos ||
                r.outcome.error.find("too large") != std::string::npos)
        << mode << ": " << r.outcome.error;
  }
  auto r = run_rule("BombRule", R"({"value": "caught"})").request("GET /");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.var("CAUGHT").to_text(), "true");
  EXPECT_EQ(r.var("SMALL").to_text(), "yyyyyyyyyy");  // the same state works afterwards
}

TEST(ExtHost, SandboxEscapesAreRefused) {
  install(extensions(), one_rule_ext("escape", "1.0.0", "EscapeRule", R"(
return function(ctx, p)
  local attempts = {
    os_execute = function() return os.execute("touch /tmp/cap-escaped") end,
    io_open = function() return io.open("/etc/passwd") end,
    require = function() return require("os") end,
    dofile = function() return dofile("/etc/passwd") end,
    debug = function() return debug.getregistry() end,
    package = function() return package.loadlib("libc.so.6", "system") end,
    dump = function() return string.dump(function() end) end,
    bytecode = function() local f, e = load("\27Lua\84\0junk") assert(f, e) end,
    collect = function() return collectgarbage("stop") end,
  }
  local out = {}
  for name, f in pairs(attempts) do
    local ok, err = pcall(f)
    out[name] = ok and "ESCAPED" or tostring(err)
  end
  out.text_load = load("return 6 * 7")()
  ctx:set("OUT", out)
end)"));
  auto r = run_rule("EscapeRule").request("GET /");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  const Map& out = r.var("OUT").as_map();
  for (auto& [name, v] : out) EXPECT_NE(v.to_text(), "ESCAPED") << name;
  EXPECT_NE(out.find("os_execute")->to_text().find("the 'os' library is not available"),
            std::string::npos);
  EXPECT_NE(out.find("io_open")->to_text().find("the 'io' library is not available"),
            std::string::npos);
  EXPECT_NE(out.find("bytecode")->to_text().find("loading bytecode is not allowed"),
            std::string::npos)
      << out.find("bytecode")->to_text();
  EXPECT_NE(out.find("collect")->to_text().find("not allowed"), std::string::npos);
  EXPECT_EQ(out.find("text_load")->as_number(), 42);
}

TEST(ExtHost, VaultOnlyGivesDeclaredCredentials) {
  install(extensions(),
          one_rule_ext("vaulty", "1.0.0", "VaultRule", R"(
return function(ctx, p)
  ctx:set("KEY", ctx:vault("geo", "key"))
  local ok, err = pcall(function() return ctx:vault("other", "key") end)
  ctx:set("OTHER", err)
end)",
                       "", R"( "credentials": [{"name": "geo", "fields": ["key"]}],)"));
  auto h = run_rule("VaultRule");
  h.vault.put("geo", {{"key", "s3cret"}});
  h.vault.put("other", {{"key", "nope"}});
  auto r = h.request("GET /");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.var("KEY").to_text(), "s3cret");
  EXPECT_NE(r.var("OTHER").to_text().find("credential 'other' is not declared"), std::string::npos);
}

TEST(ExtHost, WaitingCallsNeedTheWaitsDeclaration) {
  install(extensions(),
          one_rule_ext("nowait", "1.0.0", "NoWaitRule",
                       "return function(ctx) ctx:http{url='http://127.0.0.1:1/'} end"));
  auto r = run_rule("NoWaitRule").request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("must declare \"waits\": true"), std::string::npos)
      << r.outcome.error;
}

TEST(ExtHost, FilesUnderTheSharedFolder) {
  install(extensions(), one_rule_ext("filey", "1.0.0", "FileRule", R"(
return function(ctx, p)
  assert(ctx:write("notes/a.txt", "hello"))
  ctx:set("BACK", ctx:read("notes/a.txt"))
  local ok, err = ctx:read("../outside")
  ctx:set("ERR", err)
end)"));
  auto r = run_rule("FileRule").request("GET /");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.var("BACK").to_text(), "hello");
  EXPECT_FALSE(r.var("ERR").to_text().empty());
}

// ------------------------------------------------------------------ registration

TEST(ExtRegistry, UpgradeAndRemoveKeepLoadedConfigurationsRunning) {
  ext::ExtensionSet& set = extensions();
  install(set,
          one_rule_ext("life", "1.0.0", "LifeRule", "return function(ctx) ctx:set('V', 1) end"));
  auto v1 = run_rule("LifeRule");
  ASSERT_TRUE(v1.ok()) << v1.errors();
  install(set,
          one_rule_ext("life", "2.0.0", "LifeRule", "return function(ctx) ctx:set('V', 2) end"));
  auto v2 = run_rule("LifeRule");
  EXPECT_EQ(v1.request("GET /").var("V").as_number(), 1);  // compiled with 1.0.0
  EXPECT_EQ(v2.request("GET /").var("V").as_number(), 2);
  EXPECT_EQ(set.check("life", "2.0.0"), "");
  EXPECT_EQ(set.check("life", "1.0.0"),
            "extension 'life' 1.0.0 is required, but version 2.0.0 is installed");

  ASSERT_TRUE(set.remove("life"));
  EXPECT_EQ(Harness::registry().find("LifeRule"), nullptr);
  EXPECT_EQ(v1.request("GET /").var("V").as_number(), 1);  // still runs: it holds its rule
  EXPECT_EQ(v2.request("GET /").var("V").as_number(), 2);
  auto gone = run_rule("LifeRule");
  EXPECT_FALSE(gone.ok());
  EXPECT_NE(gone.errors().find("unknown rule 'LifeRule'"), std::string::npos);
  EXPECT_EQ(set.check("life", "1.0.0"), "extension 'life' 1.0.0 is not installed");
  EXPECT_FALSE(set.remove("life"));
}

TEST(ExtRegistry, RulesMayNotReplaceBaseRulesOrOtherExtensions) {
  ext::ExtensionSet& set = extensions();
  ext::ExtensionSet::Prepared p;
  std::vector<std::string> errors;
  EXPECT_FALSE(set.prepare(one_rule_ext("clash", "1.0.0", "SetVariable", "return function() end"),
                           &p, &errors));
  EXPECT_NE(joined(errors).find("rule 'SetVariable' has the name of a base rule"),
            std::string::npos);
  install(set, one_rule_ext("owner", "1.0.0", "OwnedRule", "return function() end"));
  errors.clear();
  EXPECT_FALSE(set.prepare(one_rule_ext("thief", "1.0.0", "OwnedRule", "return function() end"), &p,
                           &errors));
  EXPECT_NE(joined(errors).find("already defined by extension 'owner'"), std::string::npos);
  EXPECT_EQ(Harness::registry().find("OwnedRule")->spec.extension, "owner");
}

TEST(ExtRegistry, ConfigurationsCheckRequiredVersions) {
  ext::ExtensionSet& set = extensions();
  install(set, one_rule_ext("needed", "1.4.0", "NeededRule", "return function() end"));
  auto load = [&](const std::string& requirement) {
    Package pkg;
    pkg.files["cap.json"] =
        R"({"format": 1, "name": "x", "ruleset": "main", "extensions": {"needed": ")" +
        requirement + R"(", "absent": "1.0"}})";
    pkg.files["rulesets/main.json"] =
        R"({"name": "main", "start": "a", "rules": {"a": {"rule": "NeededRule"}}})";
    LoadOptions opts;
    opts.check_extension = [&](std::string_view n, std::string_view v) { return set.check(n, v); };
    return load_configuration(pkg, Harness::registry(), opts);
  };
  auto r = load("^1.2");
  ASSERT_EQ(r.error_count(), 1u);
  EXPECT_EQ(r.diagnostics[0].format(),
            "cap.json: extensions.absent: extension 'absent' 1.0 is not installed");
  r = load("2.0.0");
  EXPECT_EQ(r.error_count(), 2u);
  std::string all;
  for (auto& d : r.diagnostics) all += d.format() + "\n";
  EXPECT_NE(all.find("cap.json: extensions.needed: extension 'needed' 2.0.0 is required, but "
                     "version 1.4.0 is installed"),
            std::string::npos)
      << all;
}

TEST(ExtRegistry, UnnamedExtensionRulesWarn) {
  install(extensions(), one_rule_ext("quiet", "1.0.0", "QuietRule", "return function() end"));
  auto h = run_rule("QuietRule");
  ASSERT_TRUE(h.ok());
  EXPECT_NE(h.errors().find("rule QuietRule comes from extension 'quiet': name it in cap.json "
                            "\"extensions\" (\"quiet\": \"1.0.0\")"),
            std::string::npos)
      << h.errors();
}

}  // namespace
}  // namespace cap::test

namespace cap::test {
namespace {

TEST(ExtHost, StatesOfRemovedExtensionsAreClosed) {
  ext::ExtensionSet& set = extensions();
  size_t before = ext::thread_state_count();
  {
    install(set, one_rule_ext("gc-one", "1.0.0", "GcOneRule", "return function() end"));
    auto h = run_rule("GcOneRule");
    ASSERT_FALSE(h.request("GET /").outcome.failed);
    EXPECT_EQ(ext::thread_state_count(), before + 1);
    ASSERT_TRUE(set.remove("gc-one"));
  }  // the last configuration using gc-one is gone: so is its Image
  install(set, one_rule_ext("gc-two", "1.0.0", "GcTwoRule", "return function() end"));
  auto h = run_rule("GcTwoRule");
  ASSERT_FALSE(h.request("GET /").outcome.failed);
  EXPECT_LE(ext::thread_state_count(), before + 1);  // gc-one's state was closed
}

}  // namespace
}  // namespace cap::test

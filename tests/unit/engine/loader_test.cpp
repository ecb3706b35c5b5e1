// The loader as `capctl validate` and an agent's activation use it: every problem of a
// configuration reported at once, one `FILE: node ID: PARAM: message` line each, and no
// configuration handed out whenever there is a single error.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cap/engine.h"

namespace cap {
namespace {

const RuleRegistry& registry() {
  static const RuleRegistry* reg = [] {
    auto* r = new RuleRegistry();  // one catalogue for the whole test binary
    register_base_rules(*r);
    return r;
  }();
  return *reg;
}

const std::string kManifest = R"({"format": 1, "name": "t", "ruleset": "main"})";

/// A rule set document.
std::string ruleset(const std::string& name, const std::string& start, const std::string& rules,
                    const std::string& exits = "[]") {
  return R"({"name": ")" + name + R"(", "start": ")" + start + R"(", "exits": )" + exits +
         R"(, "rules": )" + rules + "}";
}

/// A rule set "main" that answers 200: a valid entry for tests about other files.
const std::string kMain = ruleset("main", "ok", R"({"ok": {"rule": "HttpRespond"}})");

LoadResult load(std::map<std::string, std::string> files) {
  Package pkg;
  for (auto& [k, v] : files) pkg.files.emplace(k, v);
  return load_configuration(pkg, registry());
}

std::vector<std::string> lines(const LoadResult& r, Diagnostic::Severity s) {
  std::vector<std::string> out;
  for (auto& d : r.diagnostics)
    if (d.severity == s) out.push_back(d.format());
  return out;
}
std::vector<std::string> errors(const LoadResult& r) {
  return lines(r, Diagnostic::Severity::Error);
}
std::vector<std::string> warnings(const LoadResult& r) {
  return lines(r, Diagnostic::Severity::Warning);
}

std::string all(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += "  " + s + "\n";
  return out.empty() ? "  (none)\n" : out;
}

/// Passes when `want` is one of the lines exactly.
::testing::AssertionResult has_line(const std::vector<std::string>& got, const std::string& want) {
  for (auto& g : got)
    if (g == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "no line\n  " << want << "\namong\n" << all(got);
}

/// Passes when some line starts with `prefix` and contains `part`.
::testing::AssertionResult has_line_with(const std::vector<std::string>& got,
                                         const std::string& prefix, const std::string& part) {
  for (auto& g : got)
    if (g.rfind(prefix, 0) == 0 && g.find(part) != std::string::npos)
      return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "no line starting with\n  " << prefix
                                       << "\nand containing\n  " << part << "\namong\n"
                                       << all(got);
}

// ------------------------------------------------------------------------------ Diagnostic

TEST(LoaderDiagnostic, FormatLeavesOutEmptyParts) {
  Diagnostic d{Diagnostic::Severity::Error, "rulesets/main.json", "greet", "value", "bad"};
  EXPECT_EQ(d.format(), "rulesets/main.json: node greet: value: bad");
  d.node.clear();
  EXPECT_EQ(d.format(), "rulesets/main.json: value: bad");
  d.param.clear();
  EXPECT_EQ(d.format(), "rulesets/main.json: bad");
  d.severity = Diagnostic::Severity::Warning;
  EXPECT_EQ(d.format(), "rulesets/main.json: warning: bad");
}

// -------------------------------------------------------------------------------- success

TEST(Loader, ValidConfigurationLoadsWithoutDiagnostics) {
  auto r = load({{"cap.json", kManifest}, {"rulesets/main.json", kMain}});
  EXPECT_TRUE(r.ok()) << all(errors(r));
  EXPECT_TRUE(r.diagnostics.empty()) << all(warnings(r));
  ASSERT_NE(r.configuration, nullptr);
  EXPECT_EQ(r.configuration->name, "t");
  ASSERT_NE(r.configuration->entry, nullptr);
  EXPECT_EQ(r.configuration->entry->name, "main");
  EXPECT_EQ(r.error_count(), 0u);
}

// ------------------------------------------------------------------------------- manifest

TEST(LoaderManifest, MissingCapJson) {
  auto r = load({{"rulesets/main.json", kMain}});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "cap.json: missing: a configuration folder needs a cap.json manifest"));
}

TEST(LoaderManifest, EmptyPackage) {
  auto r = load({});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "cap.json: ", "missing"));
}

TEST(LoaderManifest, MalformedJsonNamesLineAndColumn) {
  // Line 3 lacks the comma after "t": the parser stops at column 3 of line 3.
  auto r = load({{"cap.json", "{\n  \"format\": 1,\n  \"name\": \"t\"\n  \"ruleset\": \"main\"\n}\n"},
                 {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "cap.json: invalid JSON at line 4, column 3: ", ""));
}

TEST(LoaderManifest, MalformedRuleSetJsonNamesItsFile) {
  auto r = load({{"cap.json", kManifest}, {"rulesets/main.json", "{\"name\": \"main\", \"rules\": {,}}"}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "rulesets/main.json: invalid JSON at line 1, column 28: ", ""));
}

TEST(LoaderManifest, TrailingGarbageAfterTheDocument) {
  auto r = load({{"cap.json", kManifest + " {}"}, {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "cap.json: invalid JSON", ""));
}

TEST(LoaderManifest, NotAnObject) {
  auto r = load({{"cap.json", "[1, 2]"}, {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "cap.json: must be a JSON object, got a list"));
}

TEST(LoaderManifest, UnknownFormatVersion) {
  auto r = load({{"cap.json", R"({"format": 2, "name": "t", "ruleset": "main"})"},
                 {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "cap.json: format: unknown format version 2; this version of CAP reads format 1"));
}

TEST(LoaderManifest, MissingFormat) {
  auto r = load({{"cap.json", R"({"name": "t", "ruleset": "main"})"}, {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "cap.json: format: missing: write \"format\": 1"));
}

TEST(LoaderManifest, WrongTypedFieldsAreAllReported) {
  auto r = load({{"cap.json", R"({"format": "1", "name": 5, "description": [], "ruleset": "main",
                                  "performance": "fast", "globals": [1], "modes": "Maintenance",
                                  "databases": {"app": {}}, "extensions": {"geo": 1},
                                  "origin": "ftp://x"})"},
                 {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  EXPECT_TRUE(has_line(e, "cap.json: format: unknown format version \"1\"; this version of CAP reads format 1"));
  EXPECT_TRUE(has_line(e, "cap.json: name: must be a string, got a number"));
  EXPECT_TRUE(has_line(e, "cap.json: description: must be a string, got a list"));
  EXPECT_TRUE(has_line(e, "cap.json: performance: must be off, counts or timings, got 'fast'"));
  EXPECT_TRUE(has_line(e, "cap.json: globals: must be an object of variable name to value"));
  EXPECT_TRUE(has_line(e, "cap.json: modes: must be an object of mode name to rule set name"));
  EXPECT_TRUE(has_line_with(e, "cap.json: databases.app: ", "url"));
  EXPECT_TRUE(has_line(e, "cap.json: extensions.geo: version must be a string"));
  EXPECT_TRUE(has_line(e, "cap.json: origin: must start with http:// or https://, got 'ftp://x'"));
  EXPECT_EQ(r.error_count(), 9u) << all(e);
}

TEST(LoaderManifest, MissingNameAndRuleset) {
  auto r = load({{"cap.json", R"({"format": 1})"}, {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "cap.json: name: missing: required"));
  EXPECT_TRUE(has_line(errors(r), "cap.json: ruleset: missing: required"));
}

TEST(LoaderManifest, UnknownFieldIsAWarningOnly) {
  auto r = load({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "colour": "red"})"},
                 {"rulesets/main.json", kMain}});
  EXPECT_TRUE(r.ok()) << all(errors(r));
  EXPECT_TRUE(has_line(warnings(r), "cap.json: colour: warning: unknown field, ignored"));
}

TEST(LoaderManifest, GlobalWithAnInvalidNameOrAVariable) {
  auto r = load({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                                  "globals": {"1X": 1, "G": "${URI}", "OK": "${env:CAP_LOADER_TEST_UNSET}"}})"},
                 {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "cap.json: globals.1X: is not a valid variable name"));
  EXPECT_TRUE(has_line(errors(r), "cap.json: globals.G: globals may use ${env:...} but no variables"));
  EXPECT_TRUE(has_line(errors(r),
                       "cap.json: globals.OK: column 1: environment variable CAP_LOADER_TEST_UNSET is not set"));
  EXPECT_EQ(r.error_count(), 3u) << all(errors(r));
}

TEST(LoaderManifest, GlobalsReadTheEnvironmentAtLoad) {
  Package pkg;
  pkg.files.emplace("cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                                    "globals": {"KEY": "${env:CAP_TEST_KEY}", "N": 3}})");
  pkg.files.emplace("rulesets/main.json", kMain);
  LoadOptions opts;
  opts.getenv = [](std::string_view name) -> std::optional<std::string> {
    if (name == "CAP_TEST_KEY") return "s3cret";
    return std::nullopt;
  };
  auto r = load_configuration(pkg, registry(), opts);
  ASSERT_TRUE(r.ok()) << all(errors(r));
  std::map<std::string, std::string> globals;
  for (auto& [slot, v] : r.configuration->globals)
    globals[r.configuration->symbols.name(slot)] = to_json(v);
  EXPECT_EQ(globals["KEY"], "\"s3cret\"");
  EXPECT_EQ(globals["N"], "3");
}

TEST(LoaderManifest, EntryRuleSetThatDoesNotExist) {
  auto r = load({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "mian"})"},
                 {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "cap.json: ruleset: rule set 'mian' does not exist (there is no "
                       "rulesets/mian.json) (did you mean 'main'?)"));
}

TEST(LoaderManifest, ModesAndSpecialRuleSetsNamingMissingRuleSets) {
  auto r = load({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                                  "content_ruleset": "static", "startup_ruleset": "boot",
                                  "completion_ruleset": "finish",
                                  "modes": {"Maintenance": "maintenance", "Bad": 3}})"},
                 {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  EXPECT_TRUE(has_line_with(e, "cap.json: content_ruleset: rule set 'static' does not exist", ""));
  EXPECT_TRUE(has_line_with(e, "cap.json: startup_ruleset: rule set 'boot' does not exist", ""));
  EXPECT_TRUE(has_line_with(e, "cap.json: completion_ruleset: rule set 'finish' does not exist", ""));
  EXPECT_TRUE(has_line(e, "cap.json: modes.Maintenance: rule set 'maintenance' does not exist"));
  EXPECT_TRUE(has_line(e, "cap.json: modes.Bad: must name a rule set"));
  EXPECT_EQ(r.error_count(), 5u) << all(e);
}

TEST(LoaderManifest, ModesAndSpecialRuleSetsThatExistLoad) {
  auto r = load({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                                  "content_ruleset": "static", "startup_ruleset": "boot",
                                  "completion_ruleset": "finish",
                                  "modes": {"Maintenance": "maint"}})"},
                 {"rulesets/main.json", kMain},
                 {"rulesets/static.json", ruleset("static", "c", R"({"c": {"rule": "Comment"}})")},
                 {"rulesets/boot.json", ruleset("boot", "c", R"({"c": {"rule": "Comment"}})")},
                 {"rulesets/finish.json", ruleset("finish", "c", R"({"c": {"rule": "Comment"}})")},
                 {"rulesets/maint.json", ruleset("maint", "c", R"({"c": {"rule": "Comment"}})")}});
  ASSERT_TRUE(r.ok()) << all(errors(r));
  auto& c = *r.configuration;
  ASSERT_TRUE(c.content && c.startup && c.completion);
  EXPECT_EQ(c.content->name, "static");
  EXPECT_EQ(c.startup->name, "boot");
  EXPECT_EQ(c.completion->name, "finish");
  ASSERT_EQ(c.modes.size(), 1u);
  EXPECT_EQ(c.modes[0].first, "Maintenance");
  EXPECT_EQ(c.modes[0].second->name, "maint");
}

// -------------------------------------------------------------------------------- nodes

TEST(LoaderNodes, UnknownRuleWithDidYouMean) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({"a": {"rule": "IfCondtion",
                     "with": {"condition": "true"}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node a: rule: unknown rule 'IfCondtion' (did you mean "
                       "'IfCondition'?); capctl rules lists the catalogue"));
}

TEST(LoaderNodes, UnknownRuleFarFromAnyNameHasNoHint) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({"a": {"rule": "Teleport"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node a: rule: unknown rule 'Teleport'; capctl rules "
                       "lists the catalogue"));
}

TEST(LoaderNodes, MissingRequiredParameter) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({"a": {"rule": "IfCondition", "with": {}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node a: condition: missing: rule IfCondition requires it (expression)"));
}

TEST(LoaderNodes, WronglyTypedParameters) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "HttpRespond", "with": {"status": true, "body": ["x"]},
                          "then": {"next": ["b"]}},
                    "b": {"rule": "IfCondition", "with": {"condition": 5}, "then": {"true": ["c"]}},
                    "c": {"rule": "ForEach", "with": {"list": [], "item": "not a name"}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  EXPECT_TRUE(has_line(e, "rulesets/main.json: node a: status: must be a number, got a boolean true"));
  EXPECT_TRUE(has_line(e, "rulesets/main.json: node a: body: must be a string, got a list [\"x\"]"));
  EXPECT_TRUE(has_line(e, "rulesets/main.json: node b: condition: must be an expression (a string), got a number 5"));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node c: item: 'not a name' is not a valid variable name", ""));
  EXPECT_EQ(r.error_count(), 4u) << all(e);
}

TEST(LoaderNodes, ConstantTextWhereANumberIsNeeded) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({"a": {"rule": "HttpRespond", "with": {"status": "abc"}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "rulesets/main.json: node a: status: must be a number, got a string \"abc\""));
}

TEST(LoaderNodes, UnknownParameterWithDidYouMean) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({"a": {"rule": "HttpRespond", "with": {"bdoy": "x"}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node a: bdoy: rule HttpRespond has no parameter 'bdoy' "
                       "(did you mean 'body'?); its parameters: status, body, content_type, headers"));
}

TEST(LoaderNodes, UnknownChainPoint) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "IfCondition", "with": {"condition": "true"},
                          "then": {"ture": ["b"], "maybe": ["b"]}},
                    "b": {"rule": "HttpRespond"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  EXPECT_TRUE(has_line(e, "rulesets/main.json: node a: then.ture: rule IfCondition has no chain point "
                          "'ture' (did you mean 'true'?); it has: true, false"));
  EXPECT_TRUE(has_line(e, "rulesets/main.json: node a: then.maybe: rule IfCondition has no chain point "
                          "'maybe'; it has: true, false"));
}

TEST(LoaderNodes, DanglingNodeId) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "Comment", "then": {"next": ["respnd"]}},
                    "respond": {"rule": "HttpRespond"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node a: then.next: refers to node 'respnd', which does "
                       "not exist in main (did you mean 'respond'?)"));
}

TEST(LoaderNodes, StartNodeThatDoesNotExist) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "nope", R"({"a": {"rule": "HttpRespond"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "rulesets/main.json: start: node 'nope' does not exist"));
}

TEST(LoaderNodes, NodeWithBothOrNeitherRuleAndRuleset) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "Comment", "ruleset": "main", "then": {"next": ["b"]}},
                    "b": {"with": {}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  const std::string why =
      "needs exactly one of \"rule\" (a rule type) or \"ruleset\" (a rule set name)";
  EXPECT_TRUE(has_line(errors(r), "rulesets/main.json: node a: " + why));
  EXPECT_TRUE(has_line(errors(r), "rulesets/main.json: node b: " + why));
}

TEST(LoaderNodes, ExpressionSyntaxErrorNamesTheColumn) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "IfCondition", "with": {"condition": "URI == "}, "then": {"true": ["b"]}},
                    "b": {"rule": "SetVariable", "with": {"name": "X", "value": "${lenght(URI)}"}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node a: condition: column ", ""));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node b: value: column ", "unknown function 'lenght'"));
}

TEST(LoaderNodes, UnreachableNodeIsOnlyAWarning) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "HttpRespond"},
                    "orphan": {"rule": "Comment"}})")}});
  ASSERT_TRUE(r.ok()) << all(errors(r));
  EXPECT_NE(r.configuration, nullptr);
  EXPECT_EQ(r.error_count(), 0u);
  EXPECT_TRUE(has_line(warnings(r),
                       "rulesets/main.json: node orphan: warning: unreachable: no chain point leads "
                       "here from start 'a'"));
}

TEST(LoaderNodes, ChainLoopInsideARuleSet) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "Comment", "then": {"next": ["b"]}},
                    "b": {"rule": "Comment", "then": {"next": ["a"]}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node b: then.next: leads back to node 'a', which would "
                       "loop forever (use ForEach to repeat)"));
}

TEST(LoaderNodes, NodeChainingToItself) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "Comment", "then": {"next": ["a"]}}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "rulesets/main.json: node a: then.next: leads back to node 'a'", ""));
}

TEST(LoaderNodes, SharedTargetIsNotALoop) {
  // Two branches that lead to the same node form a diamond, not a loop.
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "IfCondition", "with": {"condition": "true"},
                          "then": {"true": ["b"], "false": ["c"]}},
                    "b": {"rule": "Comment", "then": {"next": ["d"]}},
                    "c": {"rule": "Comment", "then": {"next": ["d"]}},
                    "d": {"rule": "HttpRespond"}})")}});
  EXPECT_TRUE(r.ok()) << all(errors(r));
}

// ---------------------------------------------------------------------------- rule sets

TEST(LoaderRuleSets, RuleSetCycle) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "x", R"({"x": {"ruleset": "a"}})")},
                 {"rulesets/a.json", ruleset("a", "n", R"({"n": {"ruleset": "b"}})")},
                 {"rulesets/b.json", ruleset("b", "n", R"({"n": {"ruleset": "a"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  // Found once, from whichever rule set the search entered the cycle.
  bool ab = has_line(e, "rulesets/b.json: node n: ruleset: rule set cycle: a -> b -> a");
  bool ba = has_line(e, "rulesets/a.json: node n: ruleset: rule set cycle: b -> a -> b");
  EXPECT_TRUE(ab || ba) << all(e);
  EXPECT_EQ(r.error_count(), 1u) << all(e);
}

TEST(LoaderRuleSets, RuleSetUsingItself) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "x", R"({"x": {"ruleset": "main"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "rulesets/main.json: node x: ruleset: rule set cycle: main -> main"));
}

TEST(LoaderRuleSets, UnknownSubRuleSet) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "x", R"({"x": {"ruleset": "chek"}})")},
                 {"rulesets/check.json", ruleset("check", "c", R"({"c": {"rule": "Comment"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node x: ruleset: rule set 'chek' does not exist (did you mean 'check'?)"));
}

TEST(LoaderRuleSets, SubRuleSetChainPointsAreItsExits) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "x", R"({
                    "x": {"ruleset": "check", "then": {"OK": ["y"], "KO": ["y"]}},
                    "y": {"rule": "HttpRespond"}})")},
                 {"rulesets/check.json", ruleset("check", "e", R"({
                    "e": {"rule": "RuleSetExit", "with": {"name": "OK"}}})", R"(["OK"])")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/main.json: node x: then.KO: rule set check has no chain point "
                       "'KO' (did you mean 'OK'?); it has: OK"));
  EXPECT_EQ(r.error_count(), 1u) << all(errors(r));
}

TEST(LoaderRuleSets, RuleSetExitNameNotInExits) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "x", R"({"x": {"ruleset": "check"}})")},
                 {"rulesets/check.json", ruleset("check", "c", R"({
                    "c": {"rule": "IfCondition", "with": {"condition": "true"},
                          "then": {"true": ["ok"], "false": ["ko"]}},
                    "ok": {"rule": "RuleSetExit", "with": {"name": "OK"}},
                    "ko": {"rule": "RuleSetExit", "with": {"name": "FAILED"}}})", R"(["OK"])")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/check.json: node ko: name: exit 'FAILED' is not listed in the rule "
                       "set's \"exits\" (OK)"));
  EXPECT_EQ(r.error_count(), 1u) << all(errors(r));
}

TEST(LoaderRuleSets, FileNameAndNameMismatch) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", kMain},
                 {"rulesets/checks.json", ruleset("check", "c", R"({"c": {"rule": "Comment"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r),
                       "rulesets/checks.json: name: is 'check' but the file is named checks.json: they must match"));
}

TEST(LoaderRuleSets, MissingRulesAndStart) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", kMain},
                 {"rulesets/a.json", R"({"name": "a"})"},
                 {"rulesets/b.json", R"({"name": "b", "rules": {"c": {"rule": "Comment"}}})"}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "rulesets/a.json: rules: missing: a rule set needs \"rules\""));
  EXPECT_TRUE(has_line(errors(r), "rulesets/b.json: start: missing: name the node the rule set starts at"));
}

TEST(LoaderRuleSets, FileOutsideRulesetsLayoutIsIgnoredWithAWarning) {
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", kMain},
                 {"rulesets/old/main.json", "not even json"},
                 {"rulesets/notes.txt", "hello"}});
  EXPECT_TRUE(r.ok()) << all(errors(r));
  EXPECT_TRUE(has_line_with(warnings(r), "rulesets/old/main.json: warning: not a rule set", ""));
  EXPECT_TRUE(has_line_with(warnings(r), "rulesets/notes.txt: warning: not a rule set", ""));
}

// ------------------------------------------------------------------------- all at once

TEST(Loader, EveryErrorIsReportedAtOnce) {
  auto r = load({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "performance": "lots",
                                  "modes": {"M": "gone"}})"},
                 {"rulesets/main.json", ruleset("main", "a", R"({
                    "a": {"rule": "IfCondtion", "with": {"condition": "true"}, "then": {"true": ["b"]}},
                    "b": {"rule": "SetVariable", "with": {"value": "${1 +}"}, "then": {"next": ["c", "zz"]}},
                    "c": {"rule": "HttpRespond", "with": {"colour": 1}, "then": {"next": ["s"]}},
                    "s": {"rule": "HttpRespond", "with": {"status": 700}},
                    "d": {"ruleset": "sub", "then": {"DONE": ["c"]}}})")},
                 {"rulesets/sub.json", ruleset("sub", "x", R"({"x": {"ruleset": "sub"}})")}});
  EXPECT_EQ(r.configuration, nullptr);
  auto e = errors(r);
  EXPECT_TRUE(has_line_with(e, "cap.json: performance: ", "'lots'"));
  EXPECT_TRUE(has_line_with(e, "cap.json: modes.M: ", "'gone'"));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node a: rule: unknown rule 'IfCondtion'", ""));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node b: name: missing", ""));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node b: value: column ", ""));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node b: then.next: refers to node 'zz'", ""));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node c: colour: rule HttpRespond has no parameter", ""));
  EXPECT_TRUE(has_line(e, "rulesets/main.json: node s: status: must be a whole number from 100 to 599, got 700"));
  EXPECT_TRUE(has_line_with(e, "rulesets/main.json: node d: then.DONE: rule set sub has no chain point", ""));
  EXPECT_TRUE(has_line_with(e, "rulesets/sub.json: node x: ruleset: rule set cycle: sub -> sub", ""));
  EXPECT_GE(r.error_count(), 10u) << all(e);
  // The unreachable node d is still reported, as a warning.
  EXPECT_TRUE(has_line_with(warnings(r), "rulesets/main.json: node d: warning: unreachable", ""));
}

TEST(Loader, AnySingleErrorMeansNoConfiguration) {
  // Every rule set but one is fine; one bad parameter deep in a sub rule set is enough.
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "x", R"({
                    "x": {"ruleset": "sub", "then": {"OK": ["y"]}},
                    "y": {"rule": "HttpRespond"}})")},
                 {"rulesets/sub.json", ruleset("sub", "a", R"({
                    "a": {"rule": "Counter", "with": {"key": "k", "window_ms": -5}, "then": {"next": ["e"]}},
                    "e": {"rule": "RuleSetExit", "with": {"name": "OK"}}})", R"(["OK"])")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error_count(), 1u) << all(errors(r));
  EXPECT_TRUE(has_line_with(errors(r), "rulesets/sub.json: node a: window_ms: ", ""));
}

// ------------------------------------------------------------------------ hostile input

TEST(LoaderHostile, DocumentNestedTenThousandLevelsDeep) {
  std::string deep = std::string(10000, '[') + std::string(10000, ']');
  std::string deep_obj;
  for (int i = 0; i < 10000; ++i) deep_obj += "{\"a\":";
  deep_obj += "1" + std::string(10000, '}');
  auto r = load({{"cap.json", deep},
                 {"rulesets/main.json", R"({"name": "main", "start": "a", "rules": {"a": {"rule": "SetVariable",
                    "with": {"name": "X", "value": )" + deep_obj + "}}}}"}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "cap.json: invalid JSON at line 1, column 65: nested more than 64 levels deep"));
  EXPECT_TRUE(has_line_with(errors(r), "rulesets/main.json: invalid JSON at line 2, column ",
                            "nested more than 64 levels deep"));
}

TEST(LoaderHostile, ParameterNestedDeeperThanTheLoaderFollows) {
  // Within the JSON depth limit, but deeper than parameters are compiled.
  std::string v;
  for (int i = 0; i < 50; ++i) v += "[";
  v += "1";
  for (int i = 0; i < 50; ++i) v += "]";
  auto r = load({{"cap.json", kManifest},
                 {"rulesets/main.json", ruleset("main", "a", R"({"a": {"rule": "SetVariable",
                    "with": {"name": "X", "value": )" + v + "}}}")}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "rulesets/main.json: node a: value", "nested too deeply"));
}

TEST(LoaderHostile, TwentyMegabyteDocument) {
  std::string big = R"({"name": "main", "start": "a", "rules": {"a": {"rule": "SetVariable",
      "with": {"name": "X", "value": ")" + std::string(20u << 20, 'x') + "\"}}}}";
  auto r = load({{"cap.json", kManifest}, {"rulesets/main.json", big}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line(errors(r), "rulesets/main.json: file is too large (" + std::to_string(big.size()) +
                                      " bytes; at most 8388608)"));
}

TEST(LoaderHostile, TwentyMegabyteManifest) {
  std::string big = R"({"format": 1, "name": "t", "ruleset": "main", "description": ")" +
                    std::string(20u << 20, 'd') + "\"}";
  auto r = load({{"cap.json", big}, {"rulesets/main.json", kMain}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "cap.json: file is too large (", ""));
}

TEST(LoaderHostile, BinaryGarbageAndEmptyFiles) {
  std::string garbage("\x00\xff\xfe{\x01\"", 6);
  auto r = load({{"cap.json", garbage}, {"rulesets/main.json", ""}, {"rulesets/b.json", "null"}});
  EXPECT_EQ(r.configuration, nullptr);
  EXPECT_TRUE(has_line_with(errors(r), "cap.json: invalid JSON at line 1, column 1: ", ""));
  EXPECT_TRUE(has_line_with(errors(r), "rulesets/main.json: invalid JSON", ""));
  EXPECT_TRUE(has_line(errors(r), "rulesets/b.json: must be a JSON object, got null"));
}

TEST(LoaderHostile, ManyNodesAndLongChainsLoad) {
  // 5,000 nodes in one chain: loading must not recurse itself to death.
  std::string rules = "{";
  const int n = 5000;
  for (int i = 0; i < n; ++i) {
    rules += "\"n" + std::to_string(i) + "\": {\"rule\": \"Comment\"";
    if (i + 1 < n) rules += ", \"then\": {\"next\": [\"n" + std::to_string(i + 1) + "\"]}";
    rules += i + 1 < n ? "}," : "}";
  }
  rules += "}";
  auto r = load({{"cap.json", kManifest}, {"rulesets/main.json", ruleset("main", "n0", rules)}});
  EXPECT_TRUE(r.ok()) << all(errors(r));
}

TEST(LoaderHostile, ChainAsLongAsTheSizeLimitAllows) {
  // About 140,000 nodes in one chain, just under the 8 MiB file limit: the loader's checks
  // must not recurse once per node (a stack overflow is a crash on bad input).
  std::string rules = "{";
  const int n = 140000;
  for (int i = 0; i < n; ++i) {
    rules += "\"" + std::to_string(i) + "\":{\"rule\":\"Comment\"";
    if (i + 1 < n) rules += ",\"then\":{\"next\":[\"" + std::to_string(i + 1) + "\"]}";
    rules += i + 1 < n ? "}," : "}";
  }
  rules += "}";
  std::string doc = ruleset("main", "0", rules);
  ASSERT_LT(doc.size(), 8u << 20);
  auto r = load({{"cap.json", kManifest}, {"rulesets/main.json", doc}});
  EXPECT_TRUE(r.ok()) << all(errors(r));
}

TEST(LoaderHostile, RuleSetsNestedAsDeepAsTheEntryLimitAllows) {
  // 9,999 rule sets, each using the next: the cycle check must not recurse once per rule set.
  const int n = 9999;
  std::map<std::string, std::string> files{{"cap.json", R"({"format": 1, "name": "t", "ruleset": "r0"})"}};
  for (int i = 0; i < n; ++i) {
    std::string name = "r" + std::to_string(i);
    std::string node = i + 1 < n ? R"({"x": {"ruleset": "r)" + std::to_string(i + 1) + R"("}})"
                                 : R"({"x": {"rule": "HttpRespond"}})";
    files["rulesets/" + name + ".json"] = ruleset(name, "x", node);
  }
  auto r = load(files);
  EXPECT_TRUE(r.ok()) << all(errors(r));
}

// Configuration::reads_body: whether a host must have the whole request body before the
// rules run. Coarse and safe: any mention of BODY, or a rule type that reads the body.
bool reads_body(const std::map<std::string, std::string>& files) {
  auto r = load(files);
  EXPECT_TRUE(r.ok()) << all(errors(r));
  EXPECT_TRUE(warnings(r).empty()) << all(warnings(r));
  return r.ok() ? r.configuration->reads_body : true;
}

TEST(LoaderReadsBody, ConfigurationNotMentioningTheBodyDoesNotReadIt) {
  EXPECT_FALSE(reads_body({{"cap.json", kManifest}, {"rulesets/main.json", kMain}}));
  // ORIGIN_BODY, BODYGUARD and body (lower case) are other names.
  EXPECT_FALSE(reads_body({{"cap.json", kManifest},
                           {"rulesets/main.json",
                            ruleset("main", "ok", R"({"ok": {"rule": "HttpRespond",
                              "with": {"body": "${ORIGIN_BODY}${BODYGUARD}${body}"}}})")}}));
}

TEST(LoaderReadsBody, TemplateExpressionOrVariableNamingBodyReadsIt) {
  EXPECT_TRUE(reads_body({{"cap.json", kManifest},
                          {"rulesets/main.json",
                           ruleset("main", "ok", R"({"ok": {"rule": "HttpRespond", "with": {"body": "${BODY}"}}})")}}));
  EXPECT_TRUE(reads_body({{"cap.json", kManifest},
                          {"rulesets/main.json",
                           ruleset("main", "if", R"({"if": {"rule": "IfCondition",
                             "with": {"condition": "BODY != ''"}}})")}}));
  // In a sub rule set only.
  EXPECT_TRUE(reads_body({{"cap.json", kManifest},
                          {"rulesets/main.json", ruleset("main", "x", R"({"x": {"ruleset": "sub"}})")},
                          {"rulesets/sub.json",
                           ruleset("sub", "ok", R"({"ok": {"rule": "HttpRespond", "with": {"body": "${ BODY }"}}})")}}));
  // Spelled with a JSON escape.
  EXPECT_TRUE(reads_body({{"cap.json", kManifest},
                          {"rulesets/main.json",
                           ruleset("main", "ok", R"({"ok": {"rule": "HttpRespond", "with": {"body": "${\u0042ODY}"}}})")}}));
}

TEST(LoaderReadsBody, RuleTypeThatReadsTheBody) {
  const RuleType* t = registry().find("HttpServerExecute").get();
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->spec.reads_body);
  EXPECT_FALSE(registry().find("HttpRespond")->spec.reads_body);
  EXPECT_TRUE(reads_body({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                                          "origin": "http://127.0.0.1:9"})"},
                          {"rulesets/main.json",
                           ruleset("main", "x", R"({"x": {"rule": "HttpServerExecute"}})")}}));
}

}  // namespace
}  // namespace cap

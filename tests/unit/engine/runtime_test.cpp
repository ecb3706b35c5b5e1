// The executor as an agent uses it: chain order, completion, sub rule sets and their exits,
// fail-safe points, the startup, content and completion rule sets, the web input
// variables, outcomes, trace, statistics, modes and concurrent requests. Most tests append
// a word per node to TRAIL, so they read which nodes ran and in what order.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"

namespace cap {
namespace {

using test::Harness;

/// A node that appends `word` to TRAIL, then runs `next` (a JSON list of node ids).
std::string mark(const std::string& id, const std::string& word, const std::string& next = "") {
  std::string node = "\"" + id +
                     R"(": {"rule": "SetVariable", "with": {"name": "TRAIL", "value": "${TRAIL})" +
                     word + R"( "})";
  if (!next.empty()) node += R"(, "then": {"next": )" + next + "}";
  return node + "}";
}

/// A rule set document.
std::string ruleset(const std::string& name, const std::string& start, const std::string& rules,
                    const std::string& exits = "[]") {
  return R"({"name": ")" + name + R"(", "start": ")" + start + R"(", "exits": )" + exits +
         R"(, "rules": )" + rules + "}";
}

std::string trail(const Harness::Result& r) { return r.var("TRAIL").to_text(); }

/// The statistics entry of node `id` in rule set `rs`.
Value node_stats(const Runtime& rt, const std::string& rs, const std::string& id) {
  Value stats = rt.stats();
  for (auto& set : stats.as_map().find("rulesets")->as_list()) {
    if (set.as_map().find("name")->as_string() != rs) continue;
    for (auto& n : set.as_map().find("nodes")->as_list())
      if (n.as_map().find("id")->as_string() == id) return n;
  }
  return Value();
}

double count_of(const Runtime& rt, const std::string& rs, const std::string& id) {
  Value n = node_stats(rt, rs, id);
  return n.is_map() ? n.as_map().find("count")->as_number() : -1;
}

// ---------------------------------------------------------------------------- chain order

TEST(RuntimeOrder, DepthFirstEachSubtreeToItsEnd) {
  auto h = Harness::rules("{" + mark("root", "root", R"(["a", "b"])") + "," +
                              mark("a", "a", R"(["a1", "a2"])") + "," + mark("a1", "a1", R"(["a11"])") +
                              "," + mark("a11", "a11") + "," + mark("a2", "a2") + "," +
                              mark("b", "b", R"(["b1"])") + "," + mark("b1", "b1") + "}",
                          "root");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_EQ(trail(r), "root a a1 a11 a2 b b1 ");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
}

TEST(RuntimeOrder, SetCompletedStopsSiblingsAndTheCallersRemainingChains) {
  auto h = Harness(
      {{"rulesets/main.json",
        ruleset("main", "start",
                "{" + mark("start", "start", R"(["call", "after"])") + "," +
                    R"("call": {"ruleset": "sub", "then": {"DONE": ["exited"]}},)" +
                    mark("exited", "exited") + "," + mark("after", "after") + "}")},
       {"rulesets/sub.json",
        ruleset("sub", "x",
                "{" + mark("x", "x", R"(["m1", "stop", "m2"])") + "," + mark("m1", "m1") + "," +
                    R"("stop": {"rule": "SetCompleted"},)" + mark("m2", "m2", R"(["out"])") + "," +
                    R"("out": {"rule": "RuleSetExit", "with": {"name": "DONE"}}})",
                R"(["DONE"])")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_EQ(trail(r), "start x m1 ");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_FALSE(r.outcome.responded);
}

TEST(RuntimeOrder, WithoutSetCompletedEverythingRuns) {
  // The same shape as above minus SetCompleted: proves the test above can tell.
  auto h = Harness(
      {{"rulesets/main.json",
        ruleset("main", "start",
                "{" + mark("start", "start", R"(["call", "after"])") + "," +
                    R"("call": {"ruleset": "sub", "then": {"DONE": ["exited"]}},)" +
                    mark("exited", "exited") + "," + mark("after", "after") + "}")},
       {"rulesets/sub.json",
        ruleset("sub", "x",
                "{" + mark("x", "x", R"(["m1", "m2"])") + "," + mark("m1", "m1") + "," +
                    mark("m2", "m2", R"(["out"])") + "," +
                    R"("out": {"rule": "RuleSetExit", "with": {"name": "DONE"}}})",
                R"(["DONE"])")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /")), "start x m1 m2 exited after ");
}

// ------------------------------------------------------------------------ sub rule sets

TEST(RuntimeSubRuleSets, ThreeLevelsDeepExitsContinueInEachCaller) {
  auto h = Harness(
      {{"rulesets/main.json",
        ruleset("main", "m",
                "{" + mark("m", "main", R"(["l1"])") + "," +
                    R"("l1": {"ruleset": "one", "then": {"FINISHED": ["fin"]}},)" +
                    mark("fin", "main-finished", R"(["respond"])") + "," +
                    R"("respond": {"rule": "HttpRespond", "with": {"body": "${TRAIL}"}}})")},
       {"rulesets/one.json",
        ruleset("one", "s",
                "{" + mark("s", "one", R"(["l2"])") + "," +
                    R"("l2": {"ruleset": "two", "then": {"DONE": ["d"]}},)" +
                    mark("d", "one-after-two", R"(["x"])") + "," +
                    R"("x": {"rule": "RuleSetExit", "with": {"name": "FINISHED"}}})",
                R"(["FINISHED"])")},
       {"rulesets/two.json",
        ruleset("two", "s",
                "{" + mark("s", "two", R"(["l3"])") + "," +
                    R"("l3": {"ruleset": "three", "then": {"A": ["ga"], "B": ["gb"]}},)" +
                    mark("ga", "two-after-A", R"(["x"])") + "," +
                    mark("gb", "two-after-B", R"(["x"])") + "," +
                    R"("x": {"rule": "RuleSetExit", "with": {"name": "DONE"}}})",
                R"(["DONE"])")},
       {"rulesets/three.json",
        ruleset("three", "s",
                "{" + mark("s", "three", R"(["pick"])") + "," +
                    R"("pick": {"rule": "IfCondition", "with": {"condition": "which == 'a'"},
                                "then": {"true": ["xa"], "false": ["xb"]}},
                       "xa": {"rule": "RuleSetExit", "with": {"name": "A"}},
                       "xb": {"rule": "RuleSetExit", "with": {"name": "B"}}})",
                R"(["A", "B"])")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto a = h.request("GET /?which=a");
  EXPECT_EQ(a.response.body, "main one two three two-after-A one-after-two main-finished ");
  EXPECT_FALSE(a.outcome.failed) << a.outcome.error;
  auto b = h.request("GET /?which=b");
  EXPECT_EQ(b.response.body, "main one two three two-after-B one-after-two main-finished ");
}

TEST(RuntimeSubRuleSets, RuleSetEndingWithoutAnExitContinuesNothingInTheCaller) {
  auto h = Harness({{"rulesets/main.json",
                     ruleset("main", "call",
                             R"({"call": {"ruleset": "sub", "then": {"OK": ["after"]}},)" +
                                 mark("after", "after") + "}")},
                    {"rulesets/sub.json",
                     ruleset("sub", "c",
                             R"({"c": {"rule": "IfCondition", "with": {"condition": "go == 1"},
                                       "then": {"true": ["x"], "false": ["y"]}},
                                 "x": {"rule": "RuleSetExit", "with": {"name": "OK"}},)" +
                                 mark("y", "no-exit") + "}",
                             R"(["OK"])")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /?go=1")), "after ");
  EXPECT_EQ(trail(h.request("GET /?go=0")), "no-exit ");
}

TEST(RuntimeSubRuleSets, TheSameRuleSetUsedTwice) {
  auto h = Harness(
      {{"rulesets/main.json",
        ruleset("main", "one",
                R"({"one": {"rule": "SetVariable", "with": {"name": "X", "value": 1}, "then": {"next": ["c1"]}},
                    "c1": {"ruleset": "check", "then": {"OK": ["ok1"], "KO": ["ko1"]}},)" +
                    mark("ok1", "ok1", R"(["two"])") + "," + mark("ko1", "ko1", R"(["two"])") + "," +
                    R"("two": {"rule": "SetVariable", "with": {"name": "X", "value": 2}, "then": {"next": ["c2"]}},
                    "c2": {"ruleset": "check", "then": {"OK": ["ok2"], "KO": ["ko2"]}},)" +
                    mark("ok2", "ok2") + "," + mark("ko2", "ko2") + "}")},
       {"rulesets/check.json",
        ruleset("check", "c",
                R"({"c": {"rule": "IfCondition", "with": {"condition": "X == 1"},
                          "then": {"true": ["ok"], "false": ["ko"]}},
                    "ok": {"rule": "RuleSetExit", "with": {"name": "OK"}},
                    "ko": {"rule": "RuleSetExit", "with": {"name": "KO"}}})",
                R"(["OK", "KO"])")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_EQ(trail(r), "ok1 ko2 ");
  EXPECT_EQ(count_of(*h.runtime, "check", "c"), 2);
  EXPECT_EQ(count_of(*h.runtime, "check", "ok"), 1);
  EXPECT_EQ(count_of(*h.runtime, "check", "ko"), 1);
  EXPECT_EQ(count_of(*h.runtime, "main", "c1"), 1);
  EXPECT_EQ(count_of(*h.runtime, "main", "c2"), 1);
}

// ----------------------------------------------------------------------- FailSafePoint

TEST(RuntimeFailSafe, ErrorGoesToFailedAndTheRequestSucceeds) {
  auto h = Harness::rules(
      R"({"fs": {"rule": "FailSafePoint", "then": {"ok": ["before", "boom", "after"], "failed": ["caught"]}},)" +
          mark("before", "before") + "," +
          R"("boom": {"rule": "SetVariable", "with": {"name": "V", "value": "${1 / 0}"}},)" +
          mark("after", "after") + "," + mark("caught", "caught", R"(["respond"])") + "," +
          R"("respond": {"rule": "HttpRespond", "with": {"status": 500, "body": "sorry: ${FAILSAFE_ERROR}"}}})",
      "fs");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "before caught ");
  EXPECT_EQ(r.response.status, 500);
  EXPECT_EQ(r.response.body, "sorry: division by zero");
}

TEST(RuntimeFailSafe, CatchesErrorsInsideSubRuleSets) {
  auto h = Harness(
      {{"rulesets/main.json",
        ruleset("main", "fs",
                R"({"fs": {"rule": "FailSafePoint", "with": {"error_variable": "WHY"},
                           "then": {"ok": ["call"], "failed": ["caught"]}},
                    "call": {"ruleset": "sub"},)" +
                    mark("caught", "caught") + "}")},
       {"rulesets/sub.json",
        ruleset("sub", "a",
                "{" + mark("a", "inner", R"(["b"])") + "," +
                    R"("b": {"rule": "SetVariable", "with": {"name": "V", "value": "${10 / number(d)}"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /?d=0");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "inner caught ");
  EXPECT_EQ(r.var("WHY").to_text(), "division by zero");
  // Without the error, `failed` does not run.
  auto ok = h.request("GET /?d=2");
  EXPECT_EQ(trail(ok), "inner ");
  EXPECT_TRUE(ok.var("WHY").is_null());
}

// ------------------------------------------------------------------- outcomes and errors

TEST(RuntimeOutcome, NoResponseMeansRespondedFalse) {
  auto h = Harness::rules("{" + mark("a", "a") + "}", "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_FALSE(r.outcome.responded);
  EXPECT_FALSE(r.outcome.failed);
  EXPECT_FALSE(r.response.set);
  ASSERT_NE(r.outcome.ruleset, nullptr);
  EXPECT_EQ(r.outcome.ruleset->name, "main");
}

TEST(RuntimeOutcome, RespondedWhenARuleAnswers) {
  auto h = Harness::rules(R"({"a": {"rule": "HttpRespond", "with": {"status": 201, "body": "made"}}})", "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_TRUE(r.outcome.responded);
  EXPECT_TRUE(r.response.set);
  EXPECT_EQ(r.response.status, 201);
  EXPECT_EQ(r.response.body, "made");
}

TEST(RuntimeOutcome, EscapingErrorFailsTheRequestNamingTheNode) {
  auto h = Harness::rules("{" + mark("a", "a", R"(["boom", "never"])") + "," +
                              R"("boom": {"rule": "SetVariable", "with": {"name": "V", "value": "${1 % 0}"}},)" +
                              mark("never", "never") + "}",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_EQ(r.outcome.error, "rule set main, node boom: division by zero");
  EXPECT_EQ(trail(r), "a ");
  EXPECT_EQ(node_stats(*h.runtime, "main", "boom").as_map().find("errors")->as_number(), 1);
}

TEST(RuntimeOutcome, ErrorInASubRuleSetNamesTheNodeWhereItHappened) {
  auto h = Harness({{"rulesets/main.json", ruleset("main", "call", R"({"call": {"ruleset": "sub"}})")},
                    {"rulesets/sub.json",
                     ruleset("sub", "deep", R"({"deep": {"rule": "HttpRespond", "with": {"status": "${code}"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /?code=abc");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("node deep"), std::string::npos) << r.outcome.error;
  EXPECT_FALSE(r.outcome.responded);
  auto ok = h.request("GET /?code=204");
  EXPECT_FALSE(ok.outcome.failed) << ok.outcome.error;
  EXPECT_EQ(ok.response.status, 204);
}

TEST(RuntimeOutcome, AFailedRequestDoesNotDisturbTheNext) {
  auto h = Harness::rules(R"({"a": {"rule": "SetVariable", "with": {"name": "V", "value": "${10 / n}"},
                                    "then": {"next": ["r"]}},
                              "r": {"rule": "HttpRespond", "with": {"body": "${V}"}}})",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_TRUE(h.request("GET /?n=0").outcome.failed);
  auto r = h.request("GET /?n=4");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.response.body, "2.5");
}

TEST(RuntimeOutcome, ChainLongerThanTheStackAllowsFailsInsteadOfCrashing) {
  // A configuration may hold a chain of 100,000+ nodes (it fits in the file size limit);
  // running it must end in an error, not a stack overflow.
  const int n = 100000;
  std::string rules = "{";
  for (int i = 0; i < n; ++i) {
    rules += "\"n" + std::to_string(i) + "\": {\"rule\": \"Comment\"";
    if (i + 1 < n) rules += ", \"then\": {\"next\": [\"n" + std::to_string(i + 1) + "\"]}";
    rules += i + 1 < n ? "}," : "}";
  }
  rules += "}";
  auto h = Harness::rules(rules, "n0");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("too deep"), std::string::npos) << r.outcome.error;
}

TEST(RuntimeOutcome, ChainOfAThousandNodesRuns) {
  const int n = 1000;
  std::string rules = "{";
  for (int i = 0; i < n; ++i) {
    rules += "\"n" + std::to_string(i) + "\": {\"rule\": \"Comment\", \"then\": {\"next\": [\"" +
             (i + 1 < n ? "n" + std::to_string(i + 1) : std::string("r")) + "\"]}},";
  }
  rules += R"("r": {"rule": "HttpRespond", "with": {"body": "end"}}})";
  auto h = Harness::rules(rules, "n0");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.response.body, "end");
}

// ------------------------------------------------ startup, content and completion sets

TEST(RuntimeSpecialRuleSets, StartupRunsOnceWhenAsked) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "startup_ruleset": "boot",
                        "modes": {"Warm": "warm"}, "globals": {"START_IN": "Warm"}})"},
       {"rulesets/main.json", ruleset("main", "r", R"({"r": {"rule": "HttpRespond", "with": {"body": "cold"}}})")},
       {"rulesets/warm.json", ruleset("warm", "r", R"({"r": {"rule": "HttpRespond", "with": {"body": "warm"}}})")},
       {"rulesets/boot.json", ruleset("boot", "go", R"({"go": {"rule": "SwitchMode", "with": {"mode": "${START_IN}"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  // Handling requests never runs the startup rule set by itself.
  EXPECT_EQ(h.request("GET /").response.body, "cold");
  EXPECT_EQ(h.runtime->mode(), "");
  EXPECT_EQ(h.runtime->startup(), "");
  EXPECT_EQ(h.runtime->mode(), "Warm");
  EXPECT_EQ(h.request("GET /").response.body, "warm");
  // Switched back by hand, the mode stays: requests do not run the startup rule set again.
  EXPECT_TRUE(h.runtime->set_mode("default"));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.request("GET /").response.body, "cold");
  EXPECT_EQ(h.runtime->mode(), "");
}

TEST(RuntimeSpecialRuleSets, StartupFailureIsReturnedNamingTheNode) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "startup_ruleset": "boot"})"},
       {"rulesets/main.json", ruleset("main", "r", R"({"r": {"rule": "HttpRespond"}})")},
       {"rulesets/boot.json", ruleset("boot", "bad", R"({"bad": {"rule": "SetVariable", "with": {"name": "X", "value": "${1/0}"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  std::string err = h.runtime->startup();
  EXPECT_EQ(err, "rule set boot, node bad: division by zero");
}

TEST(RuntimeSpecialRuleSets, NoStartupRuleSetIsFine) {
  auto h = Harness::rules(R"({"r": {"rule": "HttpRespond"}})", "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.runtime->startup(), "");
}

TEST(RuntimeSpecialRuleSets, CompletionRunsAfterSetCompleted) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "completion_ruleset": "finish"})"},
       {"rulesets/main.json",
        ruleset("main", "a",
                "{" + mark("a", "main", R"(["stop", "never"])") + R"(, "stop": {"rule": "SetCompleted"},)" +
                    mark("never", "never") + "}")},
       {"rulesets/finish.json",
        ruleset("finish", "c",
                "{" + mark("c", "completion", R"(["r"])") +
                    R"(, "r": {"rule": "HttpRespond", "with": {"status": 202, "body": "${TRAIL}"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_EQ(trail(r), "main completion ");
  EXPECT_EQ(r.response.status, 202);
  EXPECT_EQ(r.response.body, "main completion ");
  EXPECT_TRUE(r.outcome.responded);
}

TEST(RuntimeSpecialRuleSets, CompletionRunsAfterAFailureToo) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "completion_ruleset": "finish"})"},
       {"rulesets/main.json",
        ruleset("main", "a", R"({"a": {"rule": "SetVariable", "with": {"name": "X", "value": "${1/0}"}}})")},
       {"rulesets/finish.json", ruleset("finish", "c", "{" + mark("c", "completion") + "}")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_EQ(r.outcome.error, "rule set main, node a: division by zero");
  EXPECT_EQ(trail(r), "completion ");
}

TEST(RuntimeSpecialRuleSets, ContentRuleSetAnswersFirst) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "content_ruleset": "static"})"},
       {"rulesets/main.json",
        ruleset("main", "a", "{" + mark("a", "main", R"(["r"])") +
                                 R"(, "r": {"rule": "HttpRespond", "with": {"body": "main after ${TRAIL}"}}})")},
       {"rulesets/static.json",
        ruleset("static", "c",
                R"J({"c": {"rule": "IfCondition", "with": {"condition": "startsWith(URI, '/static/')"},
                          "then": {"true": ["serve"], "false": ["pass"]}},
                    "serve": {"rule": "HttpRespond", "with": {"body": "file ${URI}"}},)J" +
                    mark("pass", "content") + "}")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto s = h.request("GET /static/app.js");
  EXPECT_EQ(s.response.body, "file /static/app.js");
  EXPECT_EQ(trail(s), "");
  EXPECT_EQ(count_of(*h.runtime, "main", "a"), 0);
  auto m = h.request("GET /page");
  EXPECT_EQ(m.response.body, "main after content main ");
  EXPECT_EQ(count_of(*h.runtime, "main", "a"), 1);
}

// ------------------------------------------------------------------------------ variables

TEST(RuntimeVariables, GlobalsAreReadableWithTheirTypes) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                        "globals": {"GREETING": "Hello", "LIMIT": 3, "ON": true, "TAGS": ["a", "b"]}})"},
       {"rulesets/main.json",
        ruleset("main", "r", R"({"r": {"rule": "HttpRespond",
                 "with": {"body": "${GREETING} ${LIMIT + 1} ${ON and true} ${TAGS[1]}"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_EQ(r.response.body, "Hello 4 true b");
  EXPECT_TRUE(r.var("LIMIT").is_number());
  EXPECT_TRUE(r.var("TAGS").is_list());
}

TEST(RuntimeVariables, GlobalsAreFreshForEveryRequest) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "globals": {"G": "global"}})"},
       {"rulesets/main.json",
        ruleset("main", "r", R"({"r": {"rule": "HttpRespond", "with": {"body": "${G}"}, "then": {"next": ["s"]}},
                                 "s": {"rule": "SetVariable", "with": {"name": "G", "value": "changed"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /").response.body, "global");
  EXPECT_EQ(h.request("GET /").response.body, "global");
}

TEST(RuntimeVariables, WebInputVariables) {
  auto h = Harness::rules(
      R"({"r": {"rule": "HttpRespond", "with": {"body": "${METHOD}|${URI}|${HEADERS['user-agent']}|${COOKIES.theme}|${f}|${y}"}}})",
      "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("POST /a%20b/c?x=1&y=two+words",
                     {"Host: example.com", "User-Agent: Probe/1.0", "X-Multi: one", "X-Multi: two",
                      "Cookie: sid=abc; theme=dark%20blue",
                      "Content-Type: application/x-www-form-urlencoded; charset=utf-8"},
                     "f=v%3D1&g=hello+world");
  EXPECT_EQ(r.response.body, "POST|/a b/c|Probe/1.0|dark blue|v=1|two words");
  EXPECT_EQ(r.var("METHOD").to_text(), "POST");
  EXPECT_EQ(r.var("URI").to_text(), "/a b/c");
  EXPECT_EQ(r.var("QUERY").to_text(), "x=1&y=two+words");
  EXPECT_EQ(r.var("REQUEST_URL").to_text(), "http://example.com/a%20b/c?x=1&y=two+words");
  EXPECT_EQ(r.var("REMOTE_ADDR").to_text(), "10.1.2.3");
  EXPECT_TRUE(r.var("REQUEST_TIMESTAMP").is_number());
  EXPECT_GT(r.var("REQUEST_TIMESTAMP").as_number(), 1.6e12);
  ASSERT_TRUE(r.var("HEADERS").is_map());
  const Map& headers = r.var("HEADERS").as_map();
  ASSERT_NE(headers.find("user-agent"), nullptr);
  EXPECT_EQ(headers.find("user-agent")->to_text(), "Probe/1.0");
  EXPECT_EQ(headers.find("host")->to_text(), "example.com");
  EXPECT_EQ(headers.find("User-Agent"), nullptr);
  ASSERT_NE(headers.find("x-multi"), nullptr);
  EXPECT_EQ(headers.find("x-multi")->to_text(), "one, two");
  EXPECT_EQ(r.var("BODY").to_text(), "f=v%3D1&g=hello+world");
  EXPECT_EQ(to_json(r.var("COOKIES")), R"({"sid":"abc","theme":"dark blue"})");
  EXPECT_EQ(r.var("x").to_text(), "1");
  EXPECT_EQ(r.var("y").to_text(), "two words");
  EXPECT_EQ(r.var("f").to_text(), "v=1");
  EXPECT_EQ(r.var("g").to_text(), "hello world");
}

TEST(RuntimeVariables, BodyOfAnotherTypeSetsNoVariables) {
  auto h = Harness::rules(R"({"r": {"rule": "HttpRespond", "with": {"body": "[${a}] ${BODY}"}}})", "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto json = h.request("POST /", {"Content-Type: application/json"}, "a=1");
  EXPECT_EQ(json.response.body, "[] a=1");
  // A form body on a GET is not read as parameters either.
  auto get = h.request("GET /", {"Content-Type: application/x-www-form-urlencoded"}, "a=1");
  EXPECT_EQ(get.response.body, "[] a=1");
}

TEST(RuntimeVariables, StreamedBodyIsNull) {
  auto h = Harness::rules(R"({"r": {"rule": "HttpRespond", "with": {"body": "[${a}] ${BODY == null}"}}})", "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  Request req;
  req.method = "POST";
  req.target = "/up";
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.body = "a=1";  // a host leaves it empty; even when not, it is not read
  req.body_streamed = true;
  Response res;
  h.runtime->handle(req, res, h.ws);
  EXPECT_EQ(res.body, "[] true");
  EXPECT_EQ(h.request("POST /", {"Content-Type: application/json"}, "x").response.body, "[] false");
}

TEST(RuntimeVariables, NothingLeaksFromOneRequestToTheNext) {
  auto h = Harness::rules(R"({"r": {"rule": "HttpRespond", "with": {"body": "[${name}] [${HEADERS['x-a']}] [${COOKIES.c}]"}}})",
                          "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /?name=Ann", {"X-A: 1", "Cookie: c=2"}).response.body, "[Ann] [1] [2]");
  EXPECT_EQ(h.request("GET /").response.body, "[] [] []");
}

// ---------------------------------------------------------------------------------- trace

TEST(RuntimeTrace, RecordsExactlyTheArmedNumberOfTransactions) {
  auto h = Harness(
      {{"rulesets/main.json",
        ruleset("main", "a",
                "{" + mark("a", "a", R"(["call"])") + "," +
                    R"("call": {"ruleset": "sub", "then": {"OUT": ["r"]}},
                       "r": {"rule": "HttpRespond", "with": {"status": 201}, "then": {"next": ["stop"]}},
                       "stop": {"rule": "SetCompleted"}})")},
       {"rulesets/sub.json",
        ruleset("sub", "s", R"({"s": {"rule": "Comment", "then": {"next": ["x"]}},
                                "x": {"rule": "RuleSetExit", "with": {"name": "OUT"}}})",
                R"(["OUT"])")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_TRUE(h.runtime->traces().empty());
  h.request("GET /before");  // not armed: not recorded
  h.runtime->arm_trace(2);
  EXPECT_EQ(h.runtime->trace_remaining(), 2);
  h.request("GET /one?x=1");
  EXPECT_EQ(h.runtime->trace_remaining(), 1);
  h.request("GET /two");
  h.request("GET /three");
  EXPECT_EQ(h.runtime->trace_remaining(), 0);
  auto traces = h.runtime->traces();
  ASSERT_EQ(traces.size(), 2u);
  EXPECT_EQ(traces[0].request, "GET /one?x=1");
  EXPECT_EQ(traces[1].request, "GET /two");
  EXPECT_EQ(traces[0].status, 201);

  std::map<TraceEvent::Kind, int> kinds;
  for (auto& e : traces[0].events) ++kinds[e.kind];
  EXPECT_GT(kinds[TraceEvent::Kind::Enter], 0);
  EXPECT_GT(kinds[TraceEvent::Kind::Chain], 0);
  EXPECT_GT(kinds[TraceEvent::Kind::Set], 0);
  EXPECT_EQ(kinds[TraceEvent::Kind::Return], 1);
  EXPECT_EQ(kinds[TraceEvent::Kind::Complete], 1);
  EXPECT_EQ(kinds[TraceEvent::Kind::Error], 0);

  // The events name rule sets and nodes as a user reads them.
  bool entered_sub = false, set_trail = false, returned = false;
  for (auto& e : traces[0].events) {
    if (e.kind == TraceEvent::Kind::Enter && e.ruleset == "sub" && e.node == "s") entered_sub = true;
    if (e.kind == TraceEvent::Kind::Set && e.detail == "TRAIL = 'a '") set_trail = true;
    if (e.kind == TraceEvent::Kind::Return && e.node == "x" && e.detail == "OUT") returned = true;
  }
  EXPECT_TRUE(entered_sub);
  EXPECT_TRUE(set_trail);
  EXPECT_TRUE(returned);
  std::string text = format_trace(traces[0]);
  EXPECT_NE(text.find("GET /one?x=1 -> 201"), std::string::npos) << text;
  EXPECT_NE(text.find("sub/s"), std::string::npos) << text;
  Value v = trace_to_value(traces[0]);
  EXPECT_EQ(v.as_map().find("status")->as_number(), 201);
  EXPECT_EQ(v.as_map().find("events")->as_list().size(), traces[0].events.size());
}

TEST(RuntimeTrace, RecordsTheErrorOfAFailedRequest) {
  auto h = Harness::rules(R"({"a": {"rule": "SetVariable", "with": {"name": "X", "value": "${1/0}"}}})", "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  h.runtime->arm_trace(1);
  h.request("GET /");
  auto traces = h.runtime->traces();
  ASSERT_EQ(traces.size(), 1u);
  EXPECT_EQ(traces[0].status, 0);
  bool error = false;
  for (auto& e : traces[0].events)
    if (e.kind == TraceEvent::Kind::Error && e.detail.find("division by zero") != std::string::npos) error = true;
  EXPECT_TRUE(error) << format_trace(traces[0]);
}

// ----------------------------------------------------------------------------- statistics

TEST(RuntimeStats, CountsPerNode) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "performance": "timings"})"},
       {"rulesets/main.json",
        ruleset("main", "c", R"({"c": {"rule": "IfCondition", "with": {"condition": "x == 1"},
                                       "then": {"true": ["t"], "false": ["f"]}},
                                 "t": {"rule": "HttpRespond"}, "f": {"rule": "Comment"}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  h.request("GET /?x=1");
  h.request("GET /?x=1");
  h.request("GET /?x=2");
  EXPECT_EQ(h.runtime->requests(), 3u);
  EXPECT_EQ(count_of(*h.runtime, "main", "c"), 3);
  EXPECT_EQ(count_of(*h.runtime, "main", "t"), 2);
  EXPECT_EQ(count_of(*h.runtime, "main", "f"), 1);
  Value c = node_stats(*h.runtime, "main", "c");
  EXPECT_EQ(c.as_map().find("rule")->as_string(), "IfCondition");
  EXPECT_GT(c.as_map().find("inline_ns")->as_number(), 0);
  EXPECT_EQ(h.runtime->stats().as_map().find("performance")->as_string(), "timings");
}

TEST(RuntimeStats, PerformanceOffCountsNothing) {
  auto h = Harness({{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "performance": "off"})"},
                    {"rulesets/main.json", ruleset("main", "r", R"({"r": {"rule": "HttpRespond"}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  h.request("GET /");
  EXPECT_EQ(h.runtime->requests(), 1u);
  EXPECT_EQ(count_of(*h.runtime, "main", "r"), 0);
}

// ---------------------------------------------------------------------------------- modes

TEST(RuntimeModes, SetModeChoosesTheRuleSet) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "modes": {"Maintenance": "maint"}})"},
       {"rulesets/main.json", ruleset("main", "r", R"({"r": {"rule": "HttpRespond", "with": {"body": "normal"}}})")},
       {"rulesets/maint.json",
        ruleset("maint", "r", R"({"r": {"rule": "HttpRespond", "with": {"status": 503, "body": "down"}}})")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.runtime->mode(), "");
  EXPECT_EQ(h.request("GET /").response.body, "normal");
  EXPECT_TRUE(h.runtime->set_mode("Maintenance"));
  EXPECT_EQ(h.runtime->mode(), "Maintenance");
  auto r = h.request("GET /");
  EXPECT_EQ(r.response.status, 503);
  EXPECT_EQ(r.response.body, "down");
  ASSERT_NE(r.outcome.ruleset, nullptr);
  EXPECT_EQ(r.outcome.ruleset->name, "maint");
  EXPECT_FALSE(h.runtime->set_mode("Holiday"));
  EXPECT_EQ(h.runtime->mode(), "Maintenance");
  EXPECT_TRUE(h.runtime->set_mode("default"));
  EXPECT_EQ(h.runtime->mode(), "");
  EXPECT_EQ(h.request("GET /").response.body, "normal");
  EXPECT_TRUE(h.runtime->set_mode("Maintenance"));
  EXPECT_TRUE(h.runtime->set_mode(""));
  EXPECT_EQ(h.request("GET /").response.body, "normal");
}

// ---------------------------------------------------------------------------- concurrency

TEST(RuntimeConcurrency, FourThreadsEachWithItsOwnWorkspace) {
  auto h = Harness(
      {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main", "performance": "timings",
                        "globals": {"GREETING": "Hi"}})"},
       {"rulesets/main.json",
        ruleset("main", "c", R"J({"c": {"rule": "IfCondition", "with": {"condition": "startsWith(name, 't0-')"},
                                       "then": {"true": ["mark"], "false": ["r"]}},
                                 "mark": {"rule": "SetVariable", "with": {"name": "ZERO", "value": "yes"},
                                          "then": {"next": ["r"]}},
                                 "r": {"rule": "HttpRespond",
                                       "with": {"body": "${GREETING} ${name} ${HEADERS['x-thread']} [${ZERO}]"}}})J")}});
  ASSERT_TRUE(h.ok()) << h.errors();
  constexpr int kThreads = 4, kRequests = 500;
  std::atomic<int> wrong{0};
  std::vector<std::string> first_wrong(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Workspace ws;
      std::string thread_header = std::to_string(t);
      for (int i = 0; i < kRequests; ++i) {
        std::string target = "/?name=t" + std::to_string(t) + "-" + std::to_string(i);
        Request req;
        req.target = target;
        req.headers.emplace_back("X-Thread", thread_header);
        Response res;
        Outcome o = h.runtime->handle(req, res, ws);
        std::string want = "Hi t" + std::to_string(t) + "-" + std::to_string(i) + " " +
                           thread_header + " [" + (t == 0 ? "yes" : "") + "]";
        if (o.failed || !o.responded || res.body != want) {
          if (wrong.fetch_add(1) == 0) first_wrong[t] = res.body + " (wanted " + want + ")";
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::string details;
  for (auto& s : first_wrong) details += s;
  EXPECT_EQ(wrong.load(), 0) << details;
  EXPECT_EQ(h.runtime->requests(), static_cast<uint64_t>(kThreads * kRequests));
  EXPECT_EQ(count_of(*h.runtime, "main", "r"), kThreads * kRequests);
  EXPECT_EQ(count_of(*h.runtime, "main", "mark"), kRequests);
}

}  // namespace
}  // namespace cap

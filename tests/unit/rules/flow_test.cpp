// The "Flow" rules, run through a loaded configuration the way an agent runs them. Each
// branch appends a word to TRAIL, so a test reads which nodes ran and in what order.
#include <gtest/gtest.h>

#include <string>

#include "support/harness.h"

namespace cap {
namespace {

using test::Harness;

// A node that appends `word` to TRAIL and then runs `next` (a JSON list of node ids).
std::string mark(const std::string& id, const std::string& word, const std::string& next = "") {
  std::string node = "\"" + id +
                     R"(": {"rule": "SetVariable", "with": {"name": "TRAIL", "value": "${TRAIL})" +
                     word + R"( "})";
  if (!next.empty()) node += R"(, "then": {"next": )" + next + "}";
  return node + "}";
}

std::string trail(const Harness::Result& r) { return r.var("TRAIL").to_text(); }

// ------------------------------------------------------------------------------ IfCondition

TEST(FlowIfCondition, TakesTrueOrFalse) {
  auto h = Harness::rules(R"({
    "a": {"rule": "IfCondition", "with": {"condition": "y == 1"},
          "then": {"true": ["t"], "false": ["f"]}},
    )" + mark("t", "true") + "," +
                              mark("f", "false") + "}",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?y=1")), "true ");
  EXPECT_EQ(trail(h.request("GET /x?y=2")), "false ");
  EXPECT_EQ(trail(h.request("GET /x")), "false ");
}

TEST(FlowIfCondition, EmptyAndUnsetValuesAreFalse) {
  auto h = Harness::rules(R"({
    "a": {"rule": "IfCondition", "with": {"condition": "name"},
          "then": {"true": ["t"], "false": ["f"]}},
    )" + mark("t", "true") + "," +
                              mark("f", "false") + "}",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?name=Ann")), "true ");
  EXPECT_EQ(trail(h.request("GET /x?name=")), "false ");
  EXPECT_EQ(trail(h.request("GET /x")), "false ");
}

TEST(FlowIfCondition, MissingConditionIsReported) {
  auto h = Harness::rules(R"({"a": {"rule": "IfCondition", "with": {}}})", "a");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("rulesets/main.json"), std::string::npos) << e;
  EXPECT_NE(e.find("node a"), std::string::npos) << e;
  EXPECT_NE(e.find("condition"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(FlowIfCondition, SyntaxErrorInConditionIsReported) {
  auto h =
      Harness::rules(R"({"a": {"rule": "IfCondition", "with": {"condition": "URI =="}}})", "a");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node a"), std::string::npos) << e;
  EXPECT_NE(e.find("condition"), std::string::npos) << e;
  EXPECT_NE(e.find("column"), std::string::npos) << e;
}

// ----------------------------------------------------------------------------------- Switch

TEST(FlowSwitch, TakesTheMatchingCaseElseDefault) {
  auto h = Harness::rules(R"({
    "s": {"rule": "Switch", "with": {"value": "${METHOD}"},
          "then": {"GET": ["g"], "POST": ["p"], "default": ["d"]}},
    )" + mark("g", "get") + "," +
                              mark("p", "post") + "," + mark("d", "other") + "}",
                          "s");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "get ");
  EXPECT_EQ(trail(h.request("POST /x")), "post ");
  EXPECT_EQ(trail(h.request("DELETE /x")), "other ");
}

TEST(FlowSwitch, MatchesTheTextOfTypedValuesExactly) {
  auto h = Harness::rules(R"({
    "s": {"rule": "Switch", "with": {"value": "${len(name)}"},
          "then": {"3": ["three"], "4": ["four"], "default": ["d"]}},
    )" + mark("three", "three") +
                              "," + mark("four", "four") + "," + mark("d", "other") + "}",
                          "s");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?name=Ann")), "three ");
  EXPECT_EQ(trail(h.request("GET /x?name=Anna")), "four ");
  EXPECT_EQ(trail(h.request("GET /x?name=Ad")), "other ");
}

TEST(FlowSwitch, CaseMatchingIsCaseSensitive) {
  auto h = Harness::rules(R"({
    "s": {"rule": "Switch", "with": {"value": "${v}"},
          "then": {"red": ["r"], "default": ["d"]}},
    )" + mark("r", "red") + "," +
                              mark("d", "other") + "}",
                          "s");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?v=red")), "red ");
  EXPECT_EQ(trail(h.request("GET /x?v=Red")), "other ");
}

TEST(FlowSwitch, WithoutCasesLoadsWithAWarning) {
  auto h = Harness::rules(R"({
    "s": {"rule": "Switch", "with": {"value": "${METHOD}"}, "then": {"default": ["d"]}},
    )" + mark("d", "other") + "}",
                          "s");
  ASSERT_TRUE(h.ok()) << h.errors();
  std::string e = h.errors();
  EXPECT_NE(e.find("node s"), std::string::npos) << e;
  EXPECT_NE(e.find("no cases"), std::string::npos) << e;
  EXPECT_EQ(trail(h.request("GET /x")), "other ");
}

TEST(FlowSwitch, MissingValueIsReported) {
  auto h = Harness::rules(R"({"s": {"rule": "Switch", "then": {"GET": []}}})", "s");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node s"), std::string::npos) << e;
  EXPECT_NE(e.find("value"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

// ----------------------------------------------------------------------------- SetCompleted

TEST(FlowSetCompleted, StopsLaterSiblingsAndEverythingAfter) {
  auto h = Harness::rules(R"({
    "start": {"rule": "Comment", "then": {"next": ["inner", "late"]}},
    "inner": {"rule": "Comment", "then": {"next": ["b", "stop", "d"]}},
    "stop": {"rule": "SetCompleted"},
    )" + mark("b", "b") + "," +
                              mark("d", "d") + "," + mark("late", "late") + "}",
                          "start");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "b ");
}

TEST(FlowSetCompleted, InsideASubRuleSetStopsTheCaller) {
  Harness h({{"rulesets/main.json", R"({"name": "main", "start": "start", "rules": {
       "start": {"rule": "Comment", "then": {"next": ["call", "after"]}},
       "call": {"ruleset": "sub"},
       )" + mark("after", "after") + "}}"},
             {"rulesets/sub.json", R"({"name": "sub", "start": "s", "rules": {
       )" + mark("s", "sub", R"(["stop"])") +
                                       R"(,
       "stop": {"rule": "SetCompleted"}}})"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "sub ");
}

TEST(FlowSetCompleted, HasNoChainPoints) {
  auto h = Harness::rules(R"({
    "stop": {"rule": "SetCompleted", "then": {"next": ["x"]}},
    )" + mark("x", "x") + "}",
                          "stop");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node stop"), std::string::npos) << e;
  EXPECT_NE(e.find("next"), std::string::npos) << e;
}

// ------------------------------------------------------------------------------ RuleSetExit

Harness nested(const std::string& main_rules, const std::string& start) {
  return Harness(
      {{"rulesets/main.json",
        R"({"name": "main", "start": ")" + start + R"(", "rules": )" + main_rules + "}"},
       {"rulesets/sub.json", R"({"name": "sub", "start": "check", "exits": ["OK", "NOTFOUND"],
       "rules": {
         "check": {"rule": "IfCondition", "with": {"condition": "y == 1"},
                   "then": {"true": ["ok"], "false": ["nf"]}},
         "ok": {"rule": "RuleSetExit", "with": {"name": "OK"}},
         "nf": {"rule": "RuleSetExit", "with": {"name": "NOTFOUND"}}}})"}});
}

TEST(FlowRuleSetExit, ExitNamesBecomeChainPointsOfTheCaller) {
  auto h = nested(R"({
       "start": {"rule": "Comment", "then": {"next": ["call", "after"]}},
       "call": {"ruleset": "sub", "then": {"OK": ["good"], "NOTFOUND": ["bad"]}},
       )" + mark("good", "ok") +
                      "," + mark("bad", "notfound") + "," + mark("after", "after") + "}",
                  "start");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?y=1")), "ok after ");
  EXPECT_EQ(trail(h.request("GET /x?y=2")), "notfound after ");
}

TEST(FlowRuleSetExit, ThreeLevelsDeep) {
  Harness h({{"rulesets/main.json", R"({"name": "main", "start": "call", "rules": {
       "call": {"ruleset": "mid", "then": {"DONE": ["m"]}},
       )" + mark("m", "main") + "}}"},
             {"rulesets/mid.json", R"({"name": "mid", "start": "call", "exits": ["DONE"], "rules": {
       "call": {"ruleset": "sub", "then": {"OK": ["m"], "NOTFOUND": ["m"]}},
       )" + mark("m", "mid", R"(["out"])") +
                                       R"(,
       "out": {"rule": "RuleSetExit", "with": {"name": "DONE"}}}})"},
             {"rulesets/sub.json",
              R"({"name": "sub", "start": "m", "exits": ["OK", "NOTFOUND"], "rules": {
       )" + mark("m", "sub", R"(["ok"])") +
                  R"(,
       "ok": {"rule": "RuleSetExit", "with": {"name": "OK"}}}})"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "sub mid main ");
}

TEST(FlowRuleSetExit, TemplateNameIsReported) {
  Harness h({{"rulesets/main.json", R"({"name": "main", "start": "call", "rules": {
       "call": {"ruleset": "sub"}}})"},
             {"rulesets/sub.json", R"({"name": "sub", "start": "out", "exits": ["OK"], "rules": {
       "out": {"rule": "RuleSetExit", "with": {"name": "${y}"}}}})"}});
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("rulesets/sub.json"), std::string::npos) << e;
  EXPECT_NE(e.find("node out"), std::string::npos) << e;
  EXPECT_NE(e.find("name: must be a constant exit name"), std::string::npos) << e;
}

TEST(FlowRuleSetExit, EmptyNameIsReported) {
  Harness h({{"rulesets/main.json", R"({"name": "main", "start": "call", "rules": {
       "call": {"ruleset": "sub"}}})"},
             {"rulesets/sub.json", R"({"name": "sub", "start": "out", "exits": ["OK"], "rules": {
       "out": {"rule": "RuleSetExit", "with": {"name": ""}}}})"}});
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node out"), std::string::npos) << e;
  EXPECT_NE(e.find("name: must not be empty"), std::string::npos) << e;
}

TEST(FlowRuleSetExit, MissingNameIsReported) {
  auto h = Harness::rules(R"({"out": {"rule": "RuleSetExit"}})", "out");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node out"), std::string::npos) << e;
  EXPECT_NE(e.find("name"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(FlowRuleSetExit, UnknownExitOnTheCallerIsReported) {
  auto h = nested(R"({"call": {"ruleset": "sub", "then": {"FAILED": []}}})", "call");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node call"), std::string::npos) << e;
  EXPECT_NE(e.find("FAILED"), std::string::npos) << e;
}

// ---------------------------------------------------------------------------- FailSafePoint

// `fails` errs for y=abc: ValueComparer in mode number refuses text.
const char* kFailing = R"("fails": {"rule": "ValueComparer",
      "with": {"value": "${y}", "compare_to": 1, "mode": "number"},
      "then": {"above": ["wrong"], "equal": ["wrong"], "below": ["wrong"]}})";

TEST(FlowFailSafePoint, TakesOkWhenNothingFails) {
  auto h = Harness::rules(R"({
    "fs": {"rule": "FailSafePoint", "then": {"ok": ["fails", "after"], "failed": ["f"]}},
    )" + std::string(kFailing) +
                              "," + mark("wrong", "compared") + "," + mark("after", "after") + "," +
                              mark("f", "failed") + "}",
                          "fs");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=2");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "compared after ");
  EXPECT_EQ(r.vars.count("FAILSAFE_ERROR"), 0u);
}

TEST(FlowFailSafePoint, CatchesAnErrorAndTakesFailed) {
  auto h = Harness::rules(R"({
    "fs": {"rule": "FailSafePoint", "then": {"ok": ["before", "fails", "after"], "failed": ["f"]}},
    )" + std::string(kFailing) +
                              "," + mark("before", "before") + "," + mark("wrong", "compared") +
                              "," + mark("after", "after") + "," + mark("f", "failed") + "}",
                          "fs");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=abc");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  // The rest of ok is abandoned; changes made before the error stay.
  EXPECT_EQ(trail(r), "before failed ");
  EXPECT_NE(r.var("FAILSAFE_ERROR").to_text().find("must be a number"), std::string::npos)
      << r.var("FAILSAFE_ERROR").to_text();
  EXPECT_NE(r.var("FAILSAFE_ERROR").to_text().find("'abc'"), std::string::npos);
}

TEST(FlowFailSafePoint, WithoutItTheRequestFails) {
  auto h =
      Harness::rules("{" + std::string(kFailing) + "," + mark("wrong", "compared") + "}", "fails");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=abc");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("must be a number"), std::string::npos) << r.outcome.error;
  EXPECT_EQ(trail(r), "");
}

TEST(FlowFailSafePoint, CustomErrorVariable) {
  auto h = Harness::rules(R"({
    "fs": {"rule": "FailSafePoint", "with": {"error_variable": "WHY"},
           "then": {"ok": ["fails"], "failed": ["f"]}},
    )" + std::string(kFailing) +
                              "," + mark("wrong", "compared") + "," + mark("f", "failed") + "}",
                          "fs");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=abc");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "failed ");
  EXPECT_NE(r.var("WHY").to_text().find("must be a number"), std::string::npos);
  EXPECT_EQ(r.vars.count("FAILSAFE_ERROR"), 0u);
}

TEST(FlowFailSafePoint, InsideASubRuleSetHandlesItsOwnError) {
  Harness h({{"rulesets/main.json", R"({"name": "main", "start": "start", "rules": {
       "start": {"rule": "Comment", "then": {"next": ["fs", "again"]}},
       "fs": {"rule": "FailSafePoint", "then": {"ok": ["call"], "failed": ["f"]}},
       "call": {"ruleset": "sub", "then": {"OK": ["ok1"]}},
       "again": {"ruleset": "sub", "then": {"OK": ["ok2"]}},
       )" + mark("ok1", "ok1") + "," + mark("ok2", "ok2") +
                                        "," + mark("f", "failed") + "}}"},
             {"rulesets/sub.json", R"({"name": "sub", "start": "inner", "exits": ["OK"], "rules": {
       "inner": {"rule": "FailSafePoint", "with": {"error_variable": "INNER"},
                 "then": {"ok": ["deep"]}},
       "deep": {"rule": "IfCondition", "with": {"condition": "true"},
                "then": {"true": ["fails"], "false": ["wrong"]}},
       )" + std::string(kFailing) + "," +
                                       mark("wrong", "wrong") + R"(,
       "out": {"rule": "RuleSetExit", "with": {"name": "OK"}}}})"}});
  // `inner` has no failed chain: the sub rule set ends without an exit, so the callers'
  // chains do not run, and the request goes on without failing.
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=abc");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "");
  EXPECT_NE(r.var("INNER").to_text().find("must be a number"), std::string::npos);
}

TEST(FlowFailSafePoint, CatchesAcrossRuleSetsAndTheCallerStillWorks) {
  Harness h({{"rulesets/main.json", R"({"name": "main", "start": "start", "rules": {
       "start": {"rule": "Comment", "then": {"next": ["fs", "again"]}},
       "fs": {"rule": "FailSafePoint", "then": {"ok": ["call", "notreached"], "failed": ["f"]}},
       "call": {"ruleset": "sub", "then": {"OK": ["ok1"]}},
       "again": {"ruleset": "sub", "then": {"OK": ["ok2"]}},
       "fix": {"rule": "SetVariable", "with": {"name": "y", "value": "fixed"}},
       )" + mark("ok1", "ok1") + "," + mark("ok2", "ok2") +
                                        "," + mark("f", "failed", R"(["fix"])") + "," +
                                        mark("notreached", "notreached") + "}}"},
             {"rulesets/sub.json", R"({"name": "sub", "start": "deep", "exits": ["OK"], "rules": {
       "deep": {"rule": "IfCondition", "with": {"condition": "y != 'abc'"},
                "then": {"true": ["out"], "false": ["fails"]}},
       )" + std::string(kFailing) + "," +
                                       mark("wrong", "wrong") + R"(,
       "out": {"rule": "RuleSetExit", "with": {"name": "OK"}}}})"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=abc");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  // The failure inside sub goes to main's failed chain; nothing of the failing node's own
  // chains runs, and the second call of sub returns through its exit to its own caller.
  EXPECT_EQ(trail(r), "failed ok2 ");
  auto fine = h.request("GET /x?y=ok");
  EXPECT_FALSE(fine.outcome.failed) << fine.outcome.error;
  EXPECT_EQ(trail(fine), "ok1 notreached ok2 ");
}

TEST(FlowFailSafePoint, AnErrorInFailedFailsTheRequest) {
  auto h = Harness::rules(R"({
    "fs": {"rule": "FailSafePoint", "then": {"ok": ["fails"], "failed": ["fails"]}},
    )" + std::string(kFailing) +
                              "," + mark("wrong", "compared") + "}",
                          "fs");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=abc");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("must be a number"), std::string::npos) << r.outcome.error;
}

// ---------------------------------------------------------------------------------- ForEach

std::string for_each_rules(const std::string& items, const std::string& with) {
  return R"({
    "set": {"rule": "SetVariable", "with": {"name": "ITEMS", "value": )" +
         items + R"(}, "then": {"next": ["loop"]}},
    "loop": {"rule": "ForEach", "with": {"list": "${ITEMS}")" +
         with + R"(},
             "then": {"each": ["step"], "done": ["done"]}},
    "step": {"rule": "SetVariable", "with": {"name": "TRAIL", "value": "${TRAIL}${INDEX}=${ITEM} "}},
    )" + mark("done", "done") +
         "}";
}

TEST(FlowForEach, WalksAList) {
  auto h = Harness::rules(for_each_rules(R"(["a", "b", "c"])", ""), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "0=a 1=b 2=c done ");
  EXPECT_EQ(r.var("ITEM").to_text(), "c");
  EXPECT_TRUE(r.var("INDEX").is_number());
}

TEST(FlowForEach, WalksAMapAsKeysAndValues) {
  auto h = Harness::rules(for_each_rules(R"({"x": 1, "y": "two"})", ""), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "x=1 y=two done ");
  EXPECT_TRUE(r.var("ITEM").is_string());
  EXPECT_EQ(r.var("INDEX").to_text(), "y");
}

TEST(FlowForEach, NullRunsNoIterationThenDone) {
  auto h = Harness::rules(for_each_rules("null", ""), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "done ");
  EXPECT_EQ(r.vars.count("ITEM"), 0u);
}

TEST(FlowForEach, EmptyListRunsDoneOnly) {
  auto h = Harness::rules(for_each_rules("[]", ""), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "done ");
}

TEST(FlowForEach, MoreThanMaxItemsFails) {
  auto h = Harness::rules(for_each_rules(R"(["a", "b", "c"])", R"(, "max_items": 2)"), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("3 items, more than max_items (2)"), std::string::npos)
      << r.outcome.error;
  EXPECT_EQ(trail(r), "");
}

TEST(FlowForEach, ExactlyMaxItemsIsFine) {
  auto h = Harness::rules(for_each_rules(R"(["a", "b"])", R"(, "max_items": 2)"), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "0=a 1=b done ");
}

TEST(FlowForEach, MaxItemsFromATemplate) {
  auto h =
      Harness::rules(for_each_rules(R"(["a", "b", "c"])", R"(, "max_items": "${max}")"), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?max=3")), "0=a 1=b 2=c done ");
  auto r = h.request("GET /x?max=1");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("more than max_items (1)"), std::string::npos) << r.outcome.error;
}

TEST(FlowForEach, TextIsNotAList) {
  auto h = Harness::rules(for_each_rules(R"("a,b")", ""), "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("must be a list, a map or null, got string 'a,b'"),
            std::string::npos)
      << r.outcome.error;
}

TEST(FlowForEach, CustomItemAndIndexVariables) {
  auto h = Harness::rules(R"({
    "loop": {"rule": "ForEach", "with": {"list": ["p", "q"], "item": "LETTER", "index": "POS"},
             "then": {"each": ["step"]}},
    "step": {"rule": "SetVariable", "with": {"name": "TRAIL", "value": "${TRAIL}${POS}:${LETTER} "}}})",
                          "loop");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_EQ(trail(r), "0:p 1:q ");
  EXPECT_EQ(r.vars.count("ITEM"), 0u);
}

TEST(FlowForEach, ChangingTheListInsideTheLoopDoesNotDisturbIt) {
  auto h = Harness::rules(R"({
    "set": {"rule": "SetVariable", "with": {"name": "ITEMS", "value": [1, 2, 3]},
            "then": {"next": ["loop"]}},
    "loop": {"rule": "ForEach", "with": {"list": "${ITEMS}"}, "then": {"each": ["step"]}},
    "step": {"rule": "SetVariable", "with": {"name": "TRAIL", "value": "${TRAIL}${ITEM} "},
             "then": {"next": ["clear"]}},
    "clear": {"rule": "SetVariable", "with": {"name": "ITEMS", "value": "gone"}}})",
                          "set");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "1 2 3 ");
}

TEST(FlowForEach, StopsWhenARuleCompletesTheRequest) {
  auto h = Harness::rules(R"({
    "loop": {"rule": "ForEach", "with": {"list": ["a", "b", "c"]},
             "then": {"each": ["step", "check"], "done": ["done"]}},
    "step": {"rule": "SetVariable", "with": {"name": "TRAIL", "value": "${TRAIL}${ITEM} "}},
    "check": {"rule": "IfCondition", "with": {"condition": "ITEM == 'b'"}, "then": {"true": ["stop"]}},
    "stop": {"rule": "SetCompleted"},
    )" + mark("done", "done") +
                              "}",
                          "loop");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "a b ");
}

TEST(FlowForEach, NegativeMaxItemsIsReported) {
  auto h = Harness::rules(
      R"({"loop": {"rule": "ForEach", "with": {"list": "${ITEMS}", "max_items": -1}}})", "loop");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node loop"), std::string::npos) << e;
  EXPECT_NE(e.find("max_items: must be a number of 0 or more, got '-1'"), std::string::npos) << e;
}

TEST(FlowForEach, SameItemAndIndexVariableIsReported) {
  auto h = Harness::rules(
      R"({"loop": {"rule": "ForEach", "with": {"list": "${ITEMS}", "item": "X", "index": "X"}}})",
      "loop");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node loop"), std::string::npos) << e;
  EXPECT_NE(e.find("index: must name another variable than item ('X')"), std::string::npos) << e;
}

TEST(FlowForEach, MissingListIsReported) {
  auto h = Harness::rules(R"({"loop": {"rule": "ForEach"}})", "loop");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node loop"), std::string::npos) << e;
  EXPECT_NE(e.find("list"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

// ---------------------------------------------------------------------------------- Comment

TEST(FlowComment, DoesNothingAndGoesOn) {
  auto h = Harness::rules(R"({
    "c": {"rule": "Comment", "with": {"text": "explains ${things}"}, "then": {"next": ["m"]}},
    )" + mark("m", "next") + "}",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(trail(r), "next ");
}

// ------------------------------------------------------------------------------- SwitchMode

std::map<std::string, std::string> mode_files(const std::string& mode_value) {
  return {{"cap.json",
           R"({"format": 1, "name": "t", "ruleset": "main", "modes": {"Maintenance": "maint"}})"},
          {"rulesets/main.json", R"({"name": "main", "start": "check", "rules": {
             "check": {"rule": "IfCondition", "with": {"condition": "y != null"},
                       "then": {"true": ["switch"], "false": ["m"]}},
             "switch": {"rule": "SwitchMode", "with": {"mode": ")" +
                                     mode_value + R"("}, "then": {"next": ["sw"]}},
             )" + mark("m", "main") + "," +
                                     mark("sw", "switched") + "}}"},
          {"rulesets/maint.json", R"({"name": "maint", "start": "check", "rules": {
             "check": {"rule": "IfCondition", "with": {"condition": "y == 'back'"},
                       "then": {"true": ["switch"], "false": ["m"]}},
             "switch": {"rule": "SwitchMode", "with": {"mode": "default"}, "then": {"next": ["m"]}},
             )" + mark("m", "maint") + "}}"}};
}

TEST(FlowSwitchMode, ChangesWhichRuleSetTheNextRequestRuns) {
  Harness h(mode_files("Maintenance"));
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x")), "main ");
  // The switching request itself goes on in main.
  EXPECT_EQ(trail(h.request("GET /x?y=1")), "switched ");
  EXPECT_EQ(trail(h.request("GET /x")), "maint ");
  EXPECT_EQ(trail(h.request("GET /x")), "maint ");
  // "default" switches back.
  EXPECT_EQ(trail(h.request("GET /x?y=back")), "maint ");
  EXPECT_EQ(trail(h.request("GET /x")), "main ");
}

TEST(FlowSwitchMode, ModeFromATemplate) {
  Harness h(mode_files("${y}"));
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(trail(h.request("GET /x?y=Maintenance")), "switched ");
  EXPECT_EQ(trail(h.request("GET /x")), "maint ");
}

TEST(FlowSwitchMode, UnknownModeAtRunTimeFailsAndChangesNothing) {
  Harness h(mode_files("${y}"));
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?y=Holiday");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("unknown mode 'Holiday'; known modes: 'default', 'Maintenance'"),
            std::string::npos)
      << r.outcome.error;
  EXPECT_EQ(trail(r), "");
  EXPECT_EQ(trail(h.request("GET /x")), "main ");
}

TEST(FlowSwitchMode, UnknownConstantModeIsReported) {
  Harness h(mode_files("Maintenence"));
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("rulesets/main.json"), std::string::npos) << e;
  EXPECT_NE(e.find("node switch"), std::string::npos) << e;
  EXPECT_NE(e.find("mode: unknown mode 'Maintenence'; known modes: 'default', 'Maintenance'"),
            std::string::npos)
      << e;
}

TEST(FlowSwitchMode, WithoutModesOnlyDefaultIsKnown) {
  auto h = Harness::rules(R"({"s": {"rule": "SwitchMode", "with": {"mode": "Maintenance"}}})", "s");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node s"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown mode 'Maintenance'; known modes: 'default'"), std::string::npos) << e;
}

TEST(FlowSwitchMode, MissingModeIsReported) {
  auto h = Harness::rules(R"({"s": {"rule": "SwitchMode"}})", "s");
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node s"), std::string::npos) << e;
  EXPECT_NE(e.find("mode"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

// ------------------------------------------------------------------------------ catalogue

TEST(FlowCatalogue, EveryRuleHasDocsForItselfAndEachParameter) {
  RuleRegistry reg;
  register_base_rules(reg);
  for (const char* name : {"IfCondition", "Switch", "SetCompleted", "RuleSetExit", "FailSafePoint",
                           "ForEach", "Comment", "SwitchMode"}) {
    auto t = reg.find(name);
    ASSERT_TRUE(t) << name;
    EXPECT_EQ(t->spec.group, "Flow") << name;
    EXPECT_GT(t->spec.doc.size(), 80u) << name;
    for (auto& p : t->spec.params) EXPECT_FALSE(p.doc.empty()) << name << "." << p.name;
  }
}

}  // namespace
}  // namespace cap

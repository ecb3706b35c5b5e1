// The "Variables and text" rules, run through a loaded configuration the way an agent runs
// them; tests read the variables a request ends with and the chain point each rule took.
#include <gtest/gtest.h>

#include <string>

#include "support/harness.h"

namespace cap {
namespace {

using test::Harness;

// A node that sets TOOK to `word` (to show which chain point ran).
std::string took(const std::string& id, const std::string& word) {
  return "\"" + id + R"(": {"rule": "SetVariable", "with": {"name": "TOOK", "value": ")" + word +
         R"("}})";
}

void expect_error(const Harness& h, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(h.ok());
  std::string e = h.errors();
  for (auto& p : parts) EXPECT_NE(e.find(p), std::string::npos) << "want '" << p << "' in:\n" << e;
}

// ------------------------------------------------------------------------------ SetVariable

TEST(TextSetVariable, WholeExpressionKeepsItsType) {
  auto h = Harness::rules(R"({
    "a": {"rule": "SetVariable", "with": {"name": "COUNT", "value": 5}, "then": {"next": ["b"]}},
    "b": {"rule": "SetVariable", "with": {"name": "COPY", "value": "${COUNT}"}, "then": {"next": ["c"]}},
    "c": {"rule": "SetVariable", "with": {"name": "NEXT", "value": "${COUNT + 1}"}, "then": {"next": ["d"]}},
    "d": {"rule": "SetVariable", "with": {"name": "TEXT", "value": "n=${COUNT}"}}})",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  ASSERT_TRUE(r.var("COPY").is_number());
  EXPECT_EQ(r.var("COPY").as_number(), 5);
  ASSERT_TRUE(r.var("NEXT").is_number());
  EXPECT_EQ(r.var("NEXT").as_number(), 6);
  ASSERT_TRUE(r.var("TEXT").is_string());
  EXPECT_EQ(r.var("TEXT").as_string(), "n=5");
}

TEST(TextSetVariable, JsonValuesAreTakenAsTheyAre) {
  auto h = Harness::rules(R"({
    "a": {"rule": "SetVariable", "with": {"name": "L", "value": [1, "${name}"]}, "then": {"next": ["b"]}},
    "b": {"rule": "SetVariable", "with": {"name": "B", "value": true}, "then": {"next": ["c"]}},
    "c": {"rule": "SetVariable", "with": {"name": "M", "value": {"who": "${name}"}}}})",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?name=Ann");
  ASSERT_TRUE(r.var("L").is_list());
  EXPECT_EQ(to_json(r.var("L")), to_json(Value(List{Value(1), Value("Ann")})));
  ASSERT_TRUE(r.var("B").is_bool());
  EXPECT_TRUE(r.var("B").as_bool());
  ASSERT_TRUE(r.var("M").is_map());
  EXPECT_EQ(r.var("M").as_map().find("who")->to_text(), "Ann");
}

TEST(TextSetVariable, WithoutValueSetsNull) {
  auto h = Harness::rules(R"({
    "a": {"rule": "SetVariable", "with": {"name": "name"}, "then": {"next": ["check"]}},
    "check": {"rule": "IfCondition", "with": {"condition": "name == null"},
              "then": {"true": ["t"], "false": ["f"]}},
    )" + took("t", "null") + "," +
                              took("f", "not null") + "}",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?name=Ann");
  EXPECT_EQ(r.var("TOOK").to_text(), "null");
  EXPECT_TRUE(r.var("name").is_null());
}

TEST(TextSetVariable, OverwritesARequestParameter) {
  auto h = Harness::rules(
      R"({"a": {"rule": "SetVariable", "with": {"name": "name", "value": "Bob"}}})", "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?name=Ann").var("name").to_text(), "Bob");
}

TEST(TextSetVariable, NameFromATemplate) {
  auto h = Harness::rules(R"({
    "a": {"rule": "SetVariable", "with": {"name": "USER_${id}", "value": "${who}"},
          "then": {"next": ["b"]}},
    "b": {"rule": "SetVariable", "with": {"name": "${which}", "value": "set by name"},
          "then": {"next": ["c"]}},
    "c": {"rule": "SetVariable", "with": {"name": "SEEN", "value": "${TARGET}"}}})",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?id=7&who=Ann&which=TARGET");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.var("USER_7").to_text(), "Ann");
  // A computed name that the configuration also mentions is the same variable.
  EXPECT_EQ(r.var("SEEN").to_text(), "set by name");
}

TEST(TextSetVariable, EmptyComputedNameFails) {
  auto h = Harness::rules(
      R"({"a": {"rule": "SetVariable", "with": {"name": "${which}", "value": 1}}})", "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("parameter 'name' evaluated to an empty variable name"),
            std::string::npos)
      << r.outcome.error;
}

TEST(TextSetVariable, EmptyNameIsReported) {
  auto h =
      Harness::rules(R"({"a": {"rule": "SetVariable", "with": {"name": "", "value": 1}}})", "a");
  expect_error(h, {"rulesets/main.json", "node a", "name: must name a variable, not be empty"});
}

TEST(TextSetVariable, MissingNameIsReported) {
  auto h = Harness::rules(R"({"a": {"rule": "SetVariable", "with": {"value": 1}}})", "a");
  expect_error(h, {"node a", "name", "missing"});
}

// --------------------------------------------------------------------------- DeleteVariable

TEST(TextDeleteVariable, RemovesTheVariable) {
  auto h = Harness::rules(R"({
    "a": {"rule": "DeleteVariable", "with": {"name": "token"}, "then": {"next": ["check"]}},
    "check": {"rule": "IfCondition", "with": {"condition": "token == null"},
              "then": {"true": ["t"], "false": ["f"]}},
    )" + took("t", "gone") + "," +
                              took("f", "still there") + "}",
                          "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?token=abc");
  EXPECT_EQ(r.var("TOOK").to_text(), "gone");
  EXPECT_EQ(r.vars.count("token"), 0u);
  // Removing what is not set is fine.
  EXPECT_EQ(h.request("GET /x").var("TOOK").to_text(), "gone");
}

TEST(TextDeleteVariable, NameFromATemplate) {
  auto h =
      Harness::rules(R"({"a": {"rule": "DeleteVariable", "with": {"name": "${which}"}}})", "a");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?which=secret&secret=s3&other=1");
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.vars.count("secret"), 0u);
  EXPECT_EQ(r.var("other").to_text(), "1");
}

TEST(TextDeleteVariable, MissingNameIsReported) {
  auto h = Harness::rules(R"({"a": {"rule": "DeleteVariable"}})", "a");
  expect_error(h, {"node a", "name", "missing"});
}

// ----------------------------------------------------------------------------- NameSplitter

struct Split {
  std::string took, first, middle, last;
};

Split split(const std::string& query) {
  auto h = Harness::rules(R"({
    "n": {"rule": "NameSplitter", "with": {"input": "${full}"},
          "then": {"ok": ["ok"], "empty": ["empty"]}},
    )" + took("ok", "ok") + "," +
                              took("empty", "empty") + "}",
                          "n");
  EXPECT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?full=" + query);
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  auto text = [&](const char* n) {
    return r.vars.count(n) ? r.var(n).to_text() : std::string("<unset>");
  };
  return {text("TOOK"), text("FIRST_NAME"), text("MIDDLE_NAME"), text("LAST_NAME")};
}

TEST(TextNameSplitter, FirstMiddleLast) {
  auto s = split("Ada+King+Lovelace");
  EXPECT_EQ(s.took, "ok");
  EXPECT_EQ(s.first, "Ada");
  EXPECT_EQ(s.middle, "King");
  EXPECT_EQ(s.last, "Lovelace");
}

TEST(TextNameSplitter, FamilyNameFirstWithAComma) {
  auto s = split("Lovelace%2C+Ada+King");
  EXPECT_EQ(s.took, "ok");
  EXPECT_EQ(s.first, "Ada");
  EXPECT_EQ(s.middle, "King");
  EXPECT_EQ(s.last, "Lovelace");
}

TEST(TextNameSplitter, TwoWordsHaveNoMiddleName) {
  auto s = split("+Ada+++Lovelace+");
  EXPECT_EQ(s.took, "ok");
  EXPECT_EQ(s.first, "Ada");
  EXPECT_EQ(s.middle, "");
  EXPECT_EQ(s.last, "Lovelace");
}

TEST(TextNameSplitter, SeveralMiddleNames) {
  auto s = split("Johann+Sebastian+Peter+Bach");
  EXPECT_EQ(s.first, "Johann");
  EXPECT_EQ(s.middle, "Sebastian Peter");
  EXPECT_EQ(s.last, "Bach");
}

TEST(TextNameSplitter, OneWordIsAFirstName) {
  auto s = split("Cher");
  EXPECT_EQ(s.took, "ok");
  EXPECT_EQ(s.first, "Cher");
  EXPECT_EQ(s.middle, "");
  EXPECT_EQ(s.last, "");
}

TEST(TextNameSplitter, BlankInputTakesEmptyAndSetsNothing) {
  for (const char* q : {"", "+++", "%2C"}) {
    auto s = split(q);
    EXPECT_EQ(s.took, "empty") << q;
    EXPECT_EQ(s.first, "<unset>") << q;
    EXPECT_EQ(s.middle, "<unset>") << q;
    EXPECT_EQ(s.last, "<unset>") << q;
  }
}

TEST(TextNameSplitter, CustomVariables) {
  auto h = Harness::rules(R"({"n": {"rule": "NameSplitter",
      "with": {"input": "Grace Brewster Hopper", "first": "F", "middle": "M", "last": "L"}}})",
                          "n");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_EQ(r.var("F").to_text(), "Grace");
  EXPECT_EQ(r.var("M").to_text(), "Brewster");
  EXPECT_EQ(r.var("L").to_text(), "Hopper");
  EXPECT_EQ(r.vars.count("FIRST_NAME"), 0u);
}

TEST(TextNameSplitter, MissingInputIsReported) {
  auto h = Harness::rules(R"({"n": {"rule": "NameSplitter"}})", "n");
  expect_error(h, {"node n", "input", "missing"});
}

// ---------------------------------------------------------------------------- ValueComparer

Harness comparer(const std::string& with) {
  return Harness::rules(R"({
    "c": {"rule": "ValueComparer", "with": )" +
                            with + R"(,
          "then": {"above": ["a"], "equal": ["e"], "below": ["b"], "contains": ["c2"]}},
    )" + took("a", "above") +
                            "," + took("e", "equal") + "," + took("b", "below") + "," +
                            took("c2", "contains") + "}",
                        "c");
}

std::string compare(Harness& h, const std::string& query) {
  auto r = h.request("GET /x?" + query);
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  return r.var("TOOK").to_text();
}

TEST(TextValueComparer, AutoComparesNumbersAsNumbers) {
  auto h = comparer(R"({"value": "${a}", "compare_to": "${b}"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(compare(h, "a=10&b=9"), "above");  // as text "10" would sort below "9"
  EXPECT_EQ(compare(h, "a=5&b=5.0"), "equal");
  EXPECT_EQ(compare(h, "a=2&b=10"), "below");
  EXPECT_EQ(compare(h, "a=-1.5&b=-1"), "below");
}

TEST(TextValueComparer, AutoComparesOtherValuesAsText) {
  auto h = comparer(R"({"value": "${a}", "compare_to": "${b}"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(compare(h, "a=apple&b=banana"), "below");
  EXPECT_EQ(compare(h, "a=pear&b=apple"), "above");
  EXPECT_EQ(compare(h, "a=pineapple&b=apple"), "contains");
  EXPECT_EQ(compare(h, "a=abc&b=abc"), "equal");
  EXPECT_EQ(compare(h, "a=10&b=ten"), "below");
  EXPECT_EQ(compare(h, "a=&b="), "equal");
  EXPECT_EQ(compare(h, "a=x&b="), "above");  // the empty text is not "contained"
}

TEST(TextValueComparer, TypedJsonValues) {
  auto h = comparer(R"({"value": 5, "compare_to": "5"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(compare(h, ""), "equal");
}

TEST(TextValueComparer, TextModeComparesNumbersAsText) {
  auto h = comparer(R"({"value": "${a}", "compare_to": "${b}", "mode": "text"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(compare(h, "a=10&b=9"), "below");
  EXPECT_EQ(compare(h, "a=10&b=1"), "contains");
  EXPECT_EQ(compare(h, "a=5&b=5.0"), "below");
}

TEST(TextValueComparer, NumberModeComparesNumbers) {
  auto h = comparer(R"({"value": "${a}", "compare_to": "${b}", "mode": "number"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(compare(h, "a=10&b=9"), "above");
  EXPECT_EQ(compare(h, "a=+3&b=3"), "equal");
  EXPECT_EQ(compare(h, "a=1e2&b=101"), "below");
}

TEST(TextValueComparer, NumberModeRefusesText) {
  auto h = comparer(R"({"value": "${a}", "compare_to": "${b}", "mode": "number"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?a=abc&b=1");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("parameter 'value' must be a number in mode number, got 'abc'"),
            std::string::npos)
      << r.outcome.error;
  EXPECT_EQ(r.vars.count("TOOK"), 0u);
  r = h.request("GET /x?a=1");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(
      r.outcome.error.find("parameter 'compare_to' must be a number in mode number, got null"),
      std::string::npos)
      << r.outcome.error;
}

TEST(TextValueComparer, ModeFromATemplate) {
  auto h = comparer(R"({"value": "${a}", "compare_to": "${b}", "mode": "${m}"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(compare(h, "a=10&b=9&m=text"), "below");
  EXPECT_EQ(compare(h, "a=10&b=9&m=number"), "above");
  auto r = h.request("GET /x?a=1&b=2&m=fuzzy");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("parameter 'mode' must be auto, number or text, got 'fuzzy'"),
            std::string::npos)
      << r.outcome.error;
}

TEST(TextValueComparer, UnknownModeIsReported) {
  auto h = comparer(R"({"value": 1, "compare_to": 2, "mode": "fuzzy"})");
  expect_error(h, {"node c", "mode", "'fuzzy'"});
}

TEST(TextValueComparer, MissingCompareToIsReported) {
  auto h = comparer(R"({"value": 1})");
  expect_error(h, {"node c", "compare_to", "missing"});
}

// ----------------------------------------------------------------------------- RegexExtract

Harness extractor(const std::string& with) {
  return Harness::rules(R"json({
    "r": {"rule": "RegexExtract", "with": )json" +
                            with + R"json(,
          "then": {"found": ["f"], "not_found": ["n"]}},
    )json" + took("f", "found") +
                            "," + took("n", "not_found") + "}",
                        "r");
}

TEST(TextRegexExtract, FirstGroup) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "order-(\\d+)"})json");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?text=see+order-42+and+order-43");
  EXPECT_EQ(r.var("TOOK").to_text(), "found");
  EXPECT_EQ(r.var("MATCH").to_text(), "42");
}

TEST(TextRegexExtract, WholeMatchWithoutGroups) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "\\d+-\\d+", "output": "RANGE"})json");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?text=pages+10-12");
  EXPECT_EQ(r.var("TOOK").to_text(), "found");
  EXPECT_EQ(r.var("RANGE").to_text(), "10-12");
  EXPECT_EQ(r.vars.count("MATCH"), 0u);
}

TEST(TextRegexExtract, AllGroups) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "(\\w+)@(\\w+)\\.(com|org)",
                             "groups": "PARTS"})json");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?text=mail+ann@example.org+now");
  EXPECT_EQ(r.var("MATCH").to_text(), "ann");
  ASSERT_TRUE(r.var("PARTS").is_list());
  EXPECT_EQ(to_json(r.var("PARTS")),
            to_json(Value(List{Value("ann"), Value("example"), Value("org")})));
}

TEST(TextRegexExtract, GroupThatTookNoPartIsEmpty) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "(a)|(b)", "groups": "PARTS"})json");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?text=b");
  EXPECT_EQ(r.var("TOOK").to_text(), "found");
  EXPECT_EQ(r.var("MATCH").to_text(), "");
  EXPECT_EQ(to_json(r.var("PARTS")), to_json(Value(List{Value(""), Value("b")})));
}

TEST(TextRegexExtract, NoMatchTakesNotFoundAndSetsNothing) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "order-(\\d+)", "groups": "G"})json");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?text=no+order+here");
  EXPECT_EQ(r.var("TOOK").to_text(), "not_found");
  EXPECT_EQ(r.vars.count("MATCH"), 0u);
  EXPECT_EQ(r.vars.count("G"), 0u);
}

TEST(TextRegexExtract, BadPatternIsReportedWithRe2sMessage) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "order-(\\d+"})json");
  expect_error(h, {"rulesets/main.json", "node r",
                   "pattern: invalid regular expression 'order-(\\d+': missing )"});
}

TEST(TextRegexExtract, TemplatePatternIsReported) {
  auto h = extractor(R"json({"input": "${text}", "pattern": "${p}"})json");
  expect_error(h, {"node r", "pattern: must be a constant pattern"});
}

TEST(TextRegexExtract, MissingPatternIsReported) {
  auto h = extractor(R"json({"input": "${text}"})json");
  expect_error(h, {"node r", "pattern", "missing"});
}

// ---------------------------------------------------------------------------- StringReplace

std::string replaced(const std::string& with, const std::string& query) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": )json" + with + R"json(,
                "then": {"next": ["t"]}}, )json" +
                              took("t", "next") + "}",
                          "s");
  EXPECT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?" + query);
  EXPECT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.var("TOOK").to_text(), "next");
  return r.var("OUT").to_text();
}

TEST(TextStringReplace, ReplacesEveryOccurrence) {
  EXPECT_EQ(replaced(R"({"input": "${t}", "search": "-", "replacement": "+", "output": "OUT"})",
                     "t=a-b-c"),
            "a+b+c");
  EXPECT_EQ(replaced(R"({"input": "${t}", "search": "aa", "replacement": "b", "output": "OUT"})",
                     "t=aaaaa"),
            "bba");
  EXPECT_EQ(
      replaced(R"({"input": "${t}", "search": "x", "replacement": "y", "output": "OUT"})", "t=abc"),
      "abc");
}

TEST(TextStringReplace, DefaultReplacementRemoves) {
  EXPECT_EQ(replaced(R"({"input": "${t}", "search": "o", "output": "OUT"})", "t=foo+bar"), "f bar");
}

TEST(TextStringReplace, SearchFromATemplate) {
  std::string with = R"({"input": "${t}", "search": "${s}", "replacement": "*", "output": "OUT"})";
  EXPECT_EQ(replaced(with, "t=secret+is+secret&s=secret"), "* is *");
  EXPECT_EQ(replaced(with, "t=abc&s="), "abc");  // an empty search changes nothing
}

TEST(TextStringReplace, RegexWithGroups) {
  EXPECT_EQ(replaced(R"json({"input": "${t}", "search": "(\\w+)@(\\w+)",
                             "replacement": "\\2 at \\1", "regex": true, "output": "OUT"})json",
                     "t=ann@example+and+bob@test"),
            "example at ann and test at bob");
  EXPECT_EQ(replaced(R"json({"input": "${t}", "search": "\\s+", "replacement": " ",
                             "regex": "true", "output": "OUT"})json",
                     "t=a+++b%09c"),
            "a b c");
}

TEST(TextStringReplace, RegexReplacementFromATemplateThatDoesNotFitFails) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "(a)", "replacement": "${r}", "regex": true, "output": "OUT"}}})json",
                          "s");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?t=banana&r=o").var("OUT").to_text(), "bonono");
  auto r = h.request("GET /x?t=banana&r=%5C2");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("parameter 'replacement' does not fit the pattern"),
            std::string::npos)
      << r.outcome.error;
}

TEST(TextStringReplace, BadRegexIsReported) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "a[", "regex": true, "output": "OUT"}}})json",
                          "s");
  expect_error(h, {"node s", "search: invalid regular expression 'a[': missing ]"});
}

TEST(TextStringReplace, ReplacementThatDoesNotFitThePatternIsReported) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "(a)(b)", "replacement": "\\3", "regex": true, "output": "OUT"}}})json",
                          "s");
  expect_error(h, {"node s", "replacement: does not fit the pattern", "3"});
}

TEST(TextStringReplace, TemplateRegexSearchIsReported) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "${p}", "regex": true, "output": "OUT"}}})json",
                          "s");
  expect_error(h, {"node s", "search: must be a constant pattern"});
}

TEST(TextStringReplace, TemplateRegexFlagIsReported) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "a", "regex": "${r}", "output": "OUT"}}})json",
                          "s");
  expect_error(h, {"node s", "regex: must be a constant true or false"});
}

TEST(TextStringReplace, EmptySearchIsReported) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "", "output": "OUT"}}})json",
                          "s");
  expect_error(h, {"node s", "search: must not be empty"});
}

TEST(TextStringReplace, MissingOutputIsReported) {
  auto h = Harness::rules(R"json({"s": {"rule": "StringReplace", "with": {"input": "${t}",
      "search": "a"}}})json",
                          "s");
  expect_error(h, {"node s", "output", "missing"});
}

// --------------------------------------------------------------------------- AttributeLister

Harness lister(const std::string& with) {
  return Harness::rules(R"({
    "a": {"rule": "SetVariable", "with": {"name": "USER_NAME", "value": "Ann"}, "then": {"next": ["b"]}},
    "b": {"rule": "SetVariable", "with": {"name": "USER_ID", "value": 7}, "then": {"next": ["l"]}},
    "l": {"rule": "AttributeLister", "with": )" +
                            with + R"(, "then": {"next": ["t"]}},
    )" + took("t", "next") + "}",
                        "a");
}

TEST(TextAttributeLister, MapOfVariablesWithAPrefixSortedByName) {
  auto h = lister(R"({"prefix": "USER_"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?other=1&USER_ZIP=12345");
  EXPECT_EQ(r.var("TOOK").to_text(), "next");
  ASSERT_TRUE(r.var("ATTRIBUTES").is_map());
  EXPECT_EQ(to_json(r.var("ATTRIBUTES")), R"({"USER_ID":7,"USER_NAME":"Ann","USER_ZIP":"12345"})");
}

TEST(TextAttributeLister, TextLines) {
  auto h = lister(R"({"prefix": "USER_", "format": "text", "output": "DUMP"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  EXPECT_EQ(r.var("DUMP").to_text(), "USER_ID=7\nUSER_NAME=Ann");
}

TEST(TextAttributeLister, JsonText) {
  auto h = lister(R"({"prefix": "USER_", "format": "json"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x");
  ASSERT_TRUE(r.var("ATTRIBUTES").is_string());
  std::string err;
  Value parsed = json_parse(r.var("ATTRIBUTES").as_string(), &err);
  ASSERT_TRUE(err.empty()) << err;
  ASSERT_TRUE(parsed.is_map());
  EXPECT_EQ(parsed.as_map().size(), 2u);
  EXPECT_EQ(parsed.as_map().find("USER_ID")->as_number(), 7);
  EXPECT_EQ(parsed.as_map().find("USER_NAME")->as_string(), "Ann");
}

TEST(TextAttributeLister, EverythingWithoutAPrefixButItself) {
  auto h = Harness::rules(R"({
    "l1": {"rule": "AttributeLister", "then": {"next": ["l2"]}},
    "l2": {"rule": "AttributeLister"}})",
                          "l1");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /hello?name=Ann");
  const Value& all = r.var("ATTRIBUTES");
  ASSERT_TRUE(all.is_map());
  EXPECT_EQ(all.as_map().find("METHOD")->to_text(), "GET");
  EXPECT_EQ(all.as_map().find("URI")->to_text(), "/hello");
  EXPECT_EQ(all.as_map().find("name")->to_text(), "Ann");
  EXPECT_EQ(all.as_map().find("ATTRIBUTES"), nullptr);
}

TEST(TextAttributeLister, RequestVariablesComputedOnDemandAreListedWhenTheyMatch) {
  // HEADERS, BODY and COOKIES are built on first read: a prefix that takes them in lists
  // them; one that does not leaves them out (and unbuilt).
  auto h = lister(R"({"prefix": "HEAD"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x", {"X-Trace: abc"});
  const Value& all = r.var("ATTRIBUTES");
  ASSERT_TRUE(all.is_map());
  ASSERT_NE(all.as_map().find("HEADERS"), nullptr);
  ASSERT_TRUE(all.as_map().find("HEADERS")->is_map());
  EXPECT_EQ(all.as_map().find("HEADERS")->as_map().find("x-trace")->to_text(), "abc");
  EXPECT_EQ(all.as_map().size(), 1u);

  auto users = lister(R"({"prefix": "USER_"})");
  auto u = users.request("GET /x", {"X-Trace: abc"});
  EXPECT_EQ(to_json(u.var("ATTRIBUTES")), R"({"USER_ID":7,"USER_NAME":"Ann"})");
}

TEST(TextAttributeLister, UnknownFormatIsReported) {
  auto h = lister(R"({"format": "xml"})");
  expect_error(h, {"node l", "format", "'xml'"});
}

TEST(TextAttributeLister, FormatFromATemplate) {
  auto h = lister(R"({"prefix": "USER_N", "format": "${f}"})");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?f=text").var("ATTRIBUTES").to_text(), "USER_NAME=Ann");
  auto r = h.request("GET /x?f=yaml");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("parameter 'format' must be map, text or json, got 'yaml'"),
            std::string::npos)
      << r.outcome.error;
}

// ------------------------------------------------------------------------------ catalogue

TEST(TextCatalogue, EveryRuleHasDocsForItselfAndEachParameter) {
  RuleRegistry reg;
  register_base_rules(reg);
  for (const char* name : {"SetVariable", "DeleteVariable", "NameSplitter", "ValueComparer",
                           "RegexExtract", "StringReplace", "AttributeLister"}) {
    auto t = reg.find(name);
    ASSERT_TRUE(t) << name;
    EXPECT_EQ(t->spec.group, "Variables and text") << name;
    EXPECT_GT(t->spec.doc.size(), 80u) << name;
    for (auto& p : t->spec.params) EXPECT_FALSE(p.doc.empty()) << name << "." << p.name;
  }
}

}  // namespace
}  // namespace cap

// Tests of the "Data" rules (src/rules/data.cpp) through whole configurations, the way
// users meet them: JsonParse, JsonBuild, CsvLookup, HistoryRecorder, Counter, RateLimiter.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"

namespace {

using cap::test::Harness;
namespace fs = std::filesystem;

// Respond nodes that show which chain point a rule took.
const char* kSayNodes = R"J(
  "yes": {"rule": "HttpRespond", "with": {"body": "yes"}},
  "no": {"rule": "HttpRespond", "with": {"body": "no"}})J";

std::string with_say(const std::string& nodes) { return "{" + nodes + "," + kSayNodes + "}"; }

bool has_text(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Asserts the configuration failed with one diagnostic naming node, parameter and reason.
void expect_load_error(const Harness& h, const std::string& node, const std::string& param,
                       const std::string& reason) {
  ASSERT_FALSE(h.ok()) << "the configuration loaded, expected an error about " << param;
  std::string errors = h.errors();
  bool found = false;
  for (const auto& d : h.loaded.diagnostics) {
    if (d.severity != cap::Diagnostic::Severity::Error) continue;
    std::string text = d.format();
    if (has_text(text, "node " + node) && has_text(text, param) && has_text(text, reason))
      found = true;
  }
  EXPECT_TRUE(found) << "no error naming node '" << node << "', '" << param << "' and '" << reason
                     << "' in:\n"
                     << errors;
}

/// A clock the test moves by hand.
class FakeClock : public cap::Clock {
 public:
  std::atomic<int64_t> now{1'000'000};
  int64_t now_ms() const override { return now.load(); }
};

/// A runtime for `h`'s configuration on a fake clock; requests made with `run`.
struct ClockedRuntime {
  FakeClock clock;
  std::unique_ptr<cap::Runtime> runtime;
  cap::Workspace ws;

  explicit ClockedRuntime(Harness& h) {
    cap::HostServices s = h.runtime->services();
    s.clock = &clock;
    runtime = std::make_unique<cap::Runtime>(h.loaded.configuration, s);
  }

  struct Result {
    cap::Response response;
    cap::Outcome outcome;
    std::map<std::string, cap::Value> vars;
    cap::Value var(const std::string& n) const {
      auto it = vars.find(n);
      return it == vars.end() ? cap::Value() : it->second;
    }
  };

  Result run(const std::string& target) {
    Result r;
    cap::Request req;
    req.method = "GET";
    req.target = target;
    r.outcome = runtime->handle(req, r.response, ws, [&](cap::Variables& vars) {
      vars.for_each([&](std::string_view k, const cap::Value& v) { r.vars[std::string(k)] = v; });
    });
    return r;
  }
};

/// Runs one request on `h`'s runtime with the caller's workspace (for threads); returns the
/// response body and the value of variable `name`.
std::pair<std::string, cap::Value> run_in(Harness& h, cap::Workspace& ws, const std::string& target,
                                          const std::string& name) {
  cap::Request req;
  req.method = "GET";
  req.target = target;
  cap::Response res;
  cap::Value out;
  auto outcome = h.runtime->handle(
      req, res, ws, [&](cap::Variables& vars) { out = vars.get(std::string_view(name)); });
  if (outcome.failed) return {"failed: " + outcome.error, out};
  return {res.body, out};
}

std::vector<std::string> texts(const cap::Value& list) {
  std::vector<std::string> out;
  if (!list.is_list()) return {"<not a list: " + list.to_text() + ">"};
  for (const auto& v : list.as_list()) out.push_back(v.to_text());
  return out;
}

// =======================================================================================
// JsonParse

TEST(DataJsonParse, ParsesTextIntoATypedValueAndTakesOk) {
  auto h = Harness::rules(with_say(R"J(
    "p": {"rule": "JsonParse", "with": {"input": "${BODY}", "output": "DATA"},
          "then": {"ok": ["yes"], "error": ["no"]}})J"),
                          "p");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("POST /x", {"Content-Type: application/json"},
                     R"({"name": "Ann", "tags": [1, 2.5, true, null], "deep": {"x": "y"}})");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.response.body, "yes");
  const cap::Value& data = r.var("DATA");
  ASSERT_TRUE(data.is_map()) << data.to_text();
  EXPECT_EQ(data.as_map().find("name")->as_string(), "Ann");
  const cap::Value* tags = data.as_map().find("tags");
  ASSERT_TRUE(tags && tags->is_list());
  ASSERT_EQ(tags->as_list().size(), 4u);
  EXPECT_EQ(tags->as_list()[1].as_number(), 2.5);
  EXPECT_TRUE(tags->as_list()[2].is_bool());
  EXPECT_TRUE(tags->as_list()[3].is_null());
  EXPECT_TRUE(r.var("JSON_ERROR").is_null());
}

TEST(DataJsonParse, BadJsonTakesErrorAndSetsTheMessage) {
  auto h = Harness::rules(with_say(R"J(
    "p": {"rule": "JsonParse", "with": {"input": "${BODY}", "output": "DATA"},
          "then": {"ok": ["yes"], "error": ["no"]}})J"),
                          "p");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("POST /x", {}, R"({"name": )");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.response.body, "no");
  EXPECT_TRUE(r.var("DATA").is_null());
  ASSERT_TRUE(r.var("JSON_ERROR").is_string());
  EXPECT_FALSE(r.var("JSON_ERROR").as_string().empty());
}

TEST(DataJsonParse, ErrorVariableCanBeRenamed) {
  auto h = Harness::rules(with_say(R"J(
    "p": {"rule": "JsonParse", "with": {"input": "${q}", "output": "DATA", "error": "WHY"},
          "then": {"ok": ["yes"], "error": ["no"]}})J"),
                          "p");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?q=nope");
  EXPECT_EQ(r.response.body, "no");
  EXPECT_FALSE(r.var("WHY").to_text().empty());
  EXPECT_TRUE(r.var("JSON_ERROR").is_null());
}

TEST(DataJsonParse, RefusesDocumentsNestedTooDeep) {
  auto h = Harness::rules(with_say(R"J(
    "p": {"rule": "JsonParse", "with": {"input": "${BODY}", "output": "DATA"},
          "then": {"ok": ["yes"], "error": ["no"]}})J"),
                          "p");
  ASSERT_TRUE(h.ok()) << h.errors();
  std::string deep(200, '[');
  deep += std::string(200, ']');
  auto r = h.request("POST /x", {}, deep);
  EXPECT_EQ(r.response.body, "no");
  EXPECT_FALSE(r.var("JSON_ERROR").to_text().empty());
  std::string fine = std::string(10, '[') + std::string(10, ']');
  EXPECT_EQ(h.request("POST /x", {}, fine).response.body, "yes");
}

TEST(DataJsonParse, RequiredParametersAreLoadErrors) {
  auto h = Harness::rules(R"J({"p": {"rule": "JsonParse", "with": {"input": "${BODY}"}}})J", "p");
  expect_load_error(h, "p", "output", "missing");
  auto h2 = Harness::rules(R"J({"p": {"rule": "JsonParse", "with": {"output": "X"}}})J", "p");
  expect_load_error(h2, "p", "input", "missing");
}

// =======================================================================================
// JsonBuild

TEST(DataJsonBuild, BuildsJsonKeepingSingleExpressionsTyped) {
  auto h = Harness::rules(R"J({
    "b": {"rule": "JsonBuild",
          "with": {"value": {"n": "${number(x)}", "s": "id-${x}", "raw": "${x}",
                             "list": [1, "${number(x) * 2}", null], "flag": true,
                             "nested": {"q": "${q}"}},
                   "output": "OUT"},
          "then": {"next": ["r"]}},
    "r": {"rule": "HttpRespond", "with": {"body": "${OUT}", "content_type": "application/json"}}
  })J",
                          "b");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?x=5&q=a%22b");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  std::string err;
  cap::Value v = cap::json_parse(r.var("OUT").to_text(), &err);
  ASSERT_TRUE(err.empty()) << err << " in " << r.var("OUT").to_text();
  const cap::Map& m = v.as_map();
  EXPECT_TRUE(m.find("n")->is_number());
  EXPECT_EQ(m.find("n")->as_number(), 5);
  EXPECT_EQ(m.find("s")->as_string(), "id-5");
  EXPECT_TRUE(m.find("raw")->is_string());
  ASSERT_TRUE(m.find("list")->is_list());
  EXPECT_EQ(m.find("list")->as_list()[1].as_number(), 10);
  EXPECT_TRUE(m.find("list")->as_list()[2].is_null());
  EXPECT_TRUE(m.find("flag")->as_bool());
  EXPECT_EQ(m.find("nested")->as_map().find("q")->as_string(), "a\"b");
  EXPECT_EQ(r.response.body, r.var("OUT").to_text());  // `next` ran the respond node
}

TEST(DataJsonBuild, WritesMembersInTheirOrderWithEmptyAndNestedShapes) {
  auto h = Harness::rules(R"J({
    "b": {"rule": "JsonBuild",
          "with": {"value": {"z": 1, "a": [], "m": {}, "x": "${x}",
                             "l": ["${x}", {"k": "${number(x)}", "t": "a\"b\\c\n"}],
                             "whole": "${QUERY}"},
                   "output": "OUT"}}})J",
                          "b");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?x=5").var("OUT").to_text(),
            R"({"z":1,"a":[],"m":{},"x":"5","l":["5",{"k":5,"t":"a\"b\\c\n"}],"whole":"x=5"})");
}

TEST(DataJsonBuild, AConstantScalarBecomesJsonText) {
  auto h = Harness::rules(
      R"J({"b": {"rule": "JsonBuild", "with": {"value": "say \"hi\"", "output": "OUT"}}})J", "b");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /").var("OUT").to_text(), R"("say \"hi\"")");
}

TEST(DataJsonBuild, RequiredParametersAreLoadErrors) {
  auto h = Harness::rules(R"J({"b": {"rule": "JsonBuild", "with": {"output": "OUT"}}})J", "b");
  expect_load_error(h, "b", "value", "missing");
  auto h2 = Harness::rules(R"J({"b": {"rule": "JsonBuild", "with": {"value": 1}}})J", "b");
  expect_load_error(h2, "b", "output", "missing");
}

// =======================================================================================
// CsvLookup

std::string lookup_rules(const std::string& with) {
  return with_say(R"J(
    "lookup": {"rule": "CsvLookup", "with": )J" +
                  with + R"J(, "then": {"found": ["yes"], "not_found": ["no"]}})J");
}

TEST(DataCsvLookup, FindsTheRowByTheFirstColumn) {
  auto h =
      Harness::rules(lookup_rules(R"J({"file": "data/list.csv", "key": "${ip}"})J"), "lookup",
                     {{"data/list.csv", "ip,reason,score\n10.0.0.1,spam,7\n10.0.0.2,abuse,9\n"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?ip=10.0.0.2");
  EXPECT_EQ(r.response.body, "yes");
  const cap::Value& row = r.var("ROW");
  ASSERT_TRUE(row.is_map()) << row.to_text();
  EXPECT_EQ(row.as_map().size(), 3u);
  EXPECT_EQ(row.as_map().find("ip")->as_string(), "10.0.0.2");
  EXPECT_EQ(row.as_map().find("reason")->as_string(), "abuse");
  EXPECT_EQ(row.as_map().find("score")->to_text(), "9");

  auto miss = h.request("GET /x?ip=10.0.0.3");
  EXPECT_EQ(miss.response.body, "no");
  EXPECT_TRUE(miss.var("ROW").is_null());
  // The header line is not a row.
  EXPECT_EQ(h.request("GET /x?ip=ip").response.body, "no");
}

TEST(DataCsvLookup, NotFoundClearsAnEarlierRow) {
  auto h = Harness::rules(R"J({
    "a": {"rule": "CsvLookup", "with": {"file": "data/l.csv", "key": "x"}, "then": {"found": ["b"]}},
    "b": {"rule": "CsvLookup", "with": {"file": "data/l.csv", "key": "nothing"}}
  })J",
                          "a", {{"data/l.csv", "k,v\nx,1\n"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_TRUE(h.request("GET /").var("ROW").is_null());
}

TEST(DataCsvLookup, KeyColumnByNameOrNumberAndCustomOutput) {
  std::map<std::string, std::string> files = {
      {"data/users.csv", "id,email,plan\n1,ann@example.com,pro\n2,bob@example.com,free\n"}};
  auto by_name = Harness::rules(
      lookup_rules(
          R"J({"file": "data/users.csv", "key": "${e}", "key_column": "email", "output": "USER"})J"),
      "lookup", files);
  ASSERT_TRUE(by_name.ok()) << by_name.errors();
  auto r = by_name.request("GET /x?e=bob%40example.com");
  EXPECT_EQ(r.response.body, "yes");
  EXPECT_EQ(r.var("USER").as_map().find("plan")->as_string(), "free");
  EXPECT_TRUE(r.var("ROW").is_null());
  EXPECT_EQ(by_name.request("GET /x?e=2").response.body, "no");  // ids are not emails

  auto by_number = Harness::rules(
      lookup_rules(R"J({"file": "data/users.csv", "key": "${p}", "key_column": 2})J"), "lookup",
      files);
  ASSERT_TRUE(by_number.ok()) << by_number.errors();
  auto r2 = by_number.request("GET /x?p=pro");
  EXPECT_EQ(r2.response.body, "yes");
  EXPECT_EQ(r2.var("ROW").as_map().find("id")->as_string(), "1");
}

TEST(DataCsvLookup, WithoutHeaderColumnsAreNumbered) {
  auto h = Harness::rules(
      lookup_rules(
          R"J({"file": "data/l.csv", "key": "${k}", "has_header": false, "key_column": "1"})J"),
      "lookup", {{"data/l.csv", "a,b,c\nd,e,f\n"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?k=b");  // the first line is data too
  EXPECT_EQ(r.response.body, "yes");
  const cap::Map& row = r.var("ROW").as_map();
  EXPECT_EQ(row.find("0")->as_string(), "a");
  EXPECT_EQ(row.find("2")->as_string(), "c");
  EXPECT_EQ(h.request("GET /x?k=e").var("ROW").as_map().find("0")->as_string(), "d");
}

TEST(DataCsvLookup, ReadsQuotesCrlfBlankLinesAndAByteOrderMark) {
  std::string csv =
      "\xEF\xBB\xBFname,note\r\n"
      "\r\n"
      "\"a,b\",\"say \"\"hi\"\"\"\r\n"
      "   \r\n"
      "\"multi\r\nline\",x\r\n"
      "plain,\"\"\r\n"
      "trailing,\n"
      "last,end";  // no final line break
  auto h = Harness::rules(
      lookup_rules(R"J({"file": "data/q.csv", "key": "${k}", "key_column": "name"})J"), "lookup",
      {{"data/q.csv", csv}});
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?k=a%2Cb");
  ASSERT_EQ(r.response.body, "yes");
  EXPECT_EQ(r.var("ROW").as_map().find("note")->as_string(), "say \"hi\"");
  auto multi = h.request("GET /x?k=multi%0D%0Aline");
  ASSERT_EQ(multi.response.body, "yes");
  EXPECT_EQ(multi.var("ROW").as_map().find("note")->as_string(), "x");
  auto plain = h.request("GET /x?k=plain");
  ASSERT_EQ(plain.response.body, "yes");
  EXPECT_EQ(plain.var("ROW").as_map().find("note")->as_string(), "");  // no stray \r
  EXPECT_EQ(h.request("GET /x?k=trailing").var("ROW").as_map().find("note")->as_string(), "");
  EXPECT_EQ(h.request("GET /x?k=last").var("ROW").as_map().find("note")->as_string(), "end");
  EXPECT_EQ(h.request("GET /x?k=").response.body, "no");  // blank lines are not rows
}

TEST(DataCsvLookup, OtherDelimitersAndFirstRowWinsForDuplicateKeys) {
  auto semi =
      Harness::rules(lookup_rules(R"J({"file": "data/s.csv", "key": "${k}", "delimiter": ";"})J"),
                     "lookup", {{"data/s.csv", "k;v\na;1,5\na;2\n"}});
  ASSERT_TRUE(semi.ok()) << semi.errors();
  EXPECT_EQ(semi.request("GET /x?k=a").var("ROW").as_map().find("v")->as_string(), "1,5");

  auto tab =
      Harness::rules(lookup_rules(R"J({"file": "data/t.tsv", "key": "${k}", "delimiter": "\t"})J"),
                     "lookup", {{"data/t.tsv", "k\tv\nb\tx y\n"}});
  ASSERT_TRUE(tab.ok()) << tab.errors();
  EXPECT_EQ(tab.request("GET /x?k=b").var("ROW").as_map().find("v")->as_string(), "x y");
}

TEST(DataCsvLookup, AnEmptyFileFindsNothing) {
  auto h = Harness::rules(lookup_rules(R"J({"file": "data/e.csv", "key": "${k}"})J"), "lookup",
                          {{"data/e.csv", ""}});
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?k=").response.body, "no");
}

TEST(DataCsvLookup, MalformedFilesAreLoadErrorsNamingFileAndLine) {
  struct Case {
    std::string content, with_extra, reason;
  };
  std::vector<Case> cases = {
      {"k,v\na,1\n\"b,2\nc,3\n", "", "line 3: a quoted field is not closed"},
      {"k,v\na,1\nb,2,3\n", "", "line 3: 3 fields where the header has 2"},
      {"k,v\n\"a\"x,1\n", "", "line 2: unexpected character 'x' after a closing quote"},
      {"k,k\na,1\n", "", "line 1: the header names column 'k' twice"},
      {"k,v\na,1\n", R"J(, "key_column": "nope")J", "key_column 'nope' is not a column"},
      {"k,v\na,1\n", R"J(, "key_column": "5")J", "key_column 5 is out of range"},
  };
  for (const auto& c : cases) {
    auto h = Harness::rules(
        lookup_rules(R"J({"file": "data/bad.csv", "key": "x")J" + c.with_extra + "}"), "lookup",
        {{"data/bad.csv", c.content}});
    SCOPED_TRACE(c.content);
    expect_load_error(h, "lookup", "data/bad.csv", c.reason);
    expect_load_error(h, "lookup", "file", c.reason);
    EXPECT_EQ(h.runtime, nullptr);
  }
}

TEST(DataCsvLookup, ParameterErrorsAtLoad) {
  std::map<std::string, std::string> files = {{"data/l.csv", "k,v\na,1\n"}};
  expect_load_error(
      Harness::rules(lookup_rules(R"J({"file": "data/${x}.csv", "key": "a"})J"), "lookup", files),
      "lookup", "file", "must be constant");
  expect_load_error(Harness::rules(lookup_rules(R"J({"file": "data/missing.csv", "key": "a"})J"),
                                   "lookup", files),
                    "lookup", "file", "not in the configuration");
  expect_load_error(Harness::rules(lookup_rules(R"J({"file": "", "key": "a"})J"), "lookup", files),
                    "lookup", "file", "must name a data file");
  expect_load_error(
      Harness::rules(lookup_rules(R"J({"file": "data/l.csv", "key": "a", "delimiter": ";;"})J"),
                     "lookup", files),
      "lookup", "delimiter", "one character");
  expect_load_error(
      Harness::rules(lookup_rules(R"J({"file": "data/l.csv", "key": "a", "delimiter": "\""})J"),
                     "lookup", files),
      "lookup", "delimiter", "one character");
  expect_load_error(Harness::rules(lookup_rules(R"J({"file": "data/l.csv", "key": "a",
                                                     "has_header": "${h}"})J"),
                                   "lookup", files),
                    "lookup", "has_header", "true or false");
  expect_load_error(Harness::rules(lookup_rules(R"J({"file": "data/l.csv", "key": "a",
                                                     "key_column": "${c}"})J"),
                                   "lookup", files),
                    "lookup", "key_column", "must be constant");
  expect_load_error(Harness::rules(lookup_rules(R"J({"file": "data/l.csv", "key": "a",
                                                     "has_header": false, "key_column": "k"})J"),
                                   "lookup", files),
                    "lookup", "key_column", "0-based column number");
  expect_load_error(Harness::rules(lookup_rules(R"J({"file": "data/l.csv"})J"), "lookup", files),
                    "lookup", "key", "missing");
}

void rewrite(const std::string& path, const std::string& content) {
  auto before = fs::last_write_time(path);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  fs::last_write_time(path, before + std::chrono::seconds(2));
}

TEST(DataCsvLookup, ReloadsWhenTheFileChangesAndKeepsOldDataWhenTheNewOneIsBad) {
  auto h = Harness::rules(lookup_rules(R"J({"file": "data/list.csv", "key": "${k}"})J"), "lookup",
                          {{"data/list.csv", "k,v\nold,1\n"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  std::string path = (fs::path(h.dir) / "data" / "list.csv").string();
  EXPECT_EQ(h.request("GET /x?k=old").response.body, "yes");
  EXPECT_EQ(h.request("GET /x?k=new").response.body, "no");

  rewrite(path, "k,v\nnew,2\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  auto r = h.request("GET /x?k=new");
  EXPECT_EQ(r.response.body, "yes");
  EXPECT_EQ(r.var("ROW").as_map().find("v")->as_string(), "2");
  EXPECT_EQ(h.request("GET /x?k=old").response.body, "no");

  rewrite(path, "k,v\n\"broken,3\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(h.request("GET /x?k=new").response.body, "yes");  // the last good data
  EXPECT_EQ(h.request("GET /x?k=broken").response.body, "no");

  rewrite(path, "k,v\nfixed,4\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(h.request("GET /x?k=fixed").response.body, "yes");
}

// =======================================================================================
// HistoryRecorder

TEST(DataHistoryRecorder, ReturnsTheNewestValuesFirstPerKey) {
  auto h = Harness::rules(R"J({
    "h": {"rule": "HistoryRecorder", "with": {"key": "${ip}", "value": "${v}"},
          "then": {"next": ["r"]}},
    "r": {"rule": "HttpRespond", "with": {"body": "${HISTORY}"}}
  })J",
                          "h");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(texts(h.request("GET /x?ip=a&v=1").var("HISTORY")), (std::vector<std::string>{"1"}));
  EXPECT_EQ(texts(h.request("GET /x?ip=a&v=2").var("HISTORY")),
            (std::vector<std::string>{"2", "1"}));
  auto r = h.request("GET /x?ip=a&v=3");
  EXPECT_EQ(texts(r.var("HISTORY")), (std::vector<std::string>{"3", "2"}));
  EXPECT_EQ(r.response.body, R"(["3","2"])");  // `next` ran
  EXPECT_EQ(texts(h.request("GET /x?ip=b&v=9").var("HISTORY")), (std::vector<std::string>{"9"}));
}

TEST(DataHistoryRecorder, KeepsTypedValuesAndOnlyKeepMany) {
  auto h = Harness::rules(R"J({
    "h": {"rule": "HistoryRecorder",
          "with": {"key": "k", "value": "${number(v)}", "keep": 3, "read": "${number(n)}",
                   "output": "H"}}
  })J",
                          "h");
  ASSERT_TRUE(h.ok()) << h.errors();
  for (int i = 1; i <= 5; ++i) h.request("GET /x?n=0&v=" + std::to_string(i));
  auto r = h.request("GET /x?n=10&v=6");
  ASSERT_TRUE(r.var("H").is_list());
  EXPECT_EQ(texts(r.var("H")), (std::vector<std::string>{"6", "5", "4"}));
  EXPECT_TRUE(r.var("H").as_list()[0].is_number());
  EXPECT_TRUE(h.request("GET /x?n=0&v=7").var("H").as_list().empty());

  auto bad = h.request("GET /x?n=-1&v=8");
  EXPECT_TRUE(bad.outcome.failed);
  EXPECT_TRUE(has_text(bad.outcome.error, "read")) << bad.outcome.error;
}

TEST(DataHistoryRecorder, ReadingMoreThanKeptIsAWarning) {
  auto h = Harness::rules(R"J({
    "h": {"rule": "HistoryRecorder", "with": {"key": "k", "value": "${v}", "keep": 2, "read": 4}}
  })J",
                          "h");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_TRUE(has_text(h.errors(), "node h: read: warning:")) << h.errors();
  for (int i = 1; i <= 3; ++i) h.request("GET /x?v=" + std::to_string(i));
  EXPECT_EQ(texts(h.request("GET /x?v=4").var("HISTORY")), (std::vector<std::string>{"4", "3"}));
}

TEST(DataHistoryRecorder, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& extra) {
    return Harness::rules(
        R"J({"h": {"rule": "HistoryRecorder", "with": {"key": "k", "value": 1)J" + extra + "}}}",
        "h");
  };
  expect_load_error(rules(R"J(, "keep": 0)J"), "h", "keep", "whole number from 1");
  expect_load_error(rules(R"J(, "keep": 2.5)J"), "h", "keep", "whole number from 1");
  expect_load_error(rules(R"J(, "keep": "${n}")J"), "h", "keep", "constant");
  expect_load_error(rules(R"J(, "max_keys": 0)J"), "h", "max_keys", "whole number from 1");
  expect_load_error(rules(R"J(, "max_keys": "${n}")J"), "h", "max_keys", "constant");
  expect_load_error(rules(R"J(, "read": -1)J"), "h", "read", "whole number from 0");
  expect_load_error(
      Harness::rules(R"J({"h": {"rule": "HistoryRecorder", "with": {"key": "k"}}})J", "h"), "h",
      "value", "missing");
}

TEST(DataHistoryRecorder, ForgetsTheLeastRecentlyUsedKeyBeyondMaxKeys) {
  auto h = Harness::rules(R"J({
    "h": {"rule": "HistoryRecorder", "with": {"key": "${k}", "value": "${v}", "max_keys": 2}}
  })J",
                          "h");
  ASSERT_TRUE(h.ok()) << h.errors();
  h.request("GET /x?k=a&v=1");
  h.request("GET /x?k=b&v=1");
  h.request("GET /x?k=a&v=2");  // a is now more recent than b
  h.request("GET /x?k=c&v=1");  // evicts b
  EXPECT_EQ(texts(h.request("GET /x?k=a&v=3").var("HISTORY")),
            (std::vector<std::string>{"3", "2"}));
  EXPECT_EQ(texts(h.request("GET /x?k=b&v=2").var("HISTORY")),
            (std::vector<std::string>{"2"}));  // b was forgotten (and c now is)
  EXPECT_EQ(texts(h.request("GET /x?k=c&v=2").var("HISTORY")), (std::vector<std::string>{"2"}));
}

TEST(DataHistoryRecorder, IsSafeUnderConcurrentRequests) {
  auto h = Harness::rules(R"J({
    "h": {"rule": "HistoryRecorder",
          "with": {"key": "${k}", "value": "${number(v)}", "keep": 5, "read": 5}}
  })J",
                          "h");
  ASSERT_TRUE(h.ok()) << h.errors();
  constexpr int kThreads = 4, kRequests = 300;
  std::vector<std::vector<std::string>> own_last(kThreads), shared_last(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      cap::Workspace ws;
      for (int i = 0; i < kRequests; ++i) {
        std::string v = std::to_string(t * 1000 + i);
        own_last[t] =
            texts(run_in(h, ws, "/x?k=own" + std::to_string(t) + "&v=" + v, "HISTORY").second);
        shared_last[t] = texts(run_in(h, ws, "/x?k=shared&v=" + v, "HISTORY").second);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    std::vector<std::string> expected;
    for (int i = kRequests - 1; i >= kRequests - 5; --i)
      expected.push_back(std::to_string(t * 1000 + i));
    EXPECT_EQ(own_last[t], expected);
    ASSERT_EQ(shared_last[t].size(), 5u);
    EXPECT_EQ(shared_last[t][0], std::to_string(t * 1000 + kRequests - 1));
    EXPECT_EQ(std::set<std::string>(shared_last[t].begin(), shared_last[t].end()).size(), 5u);
  }
}

TEST(DataHistoryRecorder, EvictsSafelyUnderConcurrentRequests) {
  auto h = Harness::rules(R"J({
    "h": {"rule": "HistoryRecorder",
          "with": {"key": "${k}", "value": "${v}", "keep": 3, "read": 3, "max_keys": 8}}
  })J",
                          "h");
  ASSERT_TRUE(h.ok()) << h.errors();
  constexpr int kThreads = 4, kRequests = 2000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      cap::Workspace ws;
      for (int i = 0; i < kRequests; ++i) {
        std::string v = std::to_string(t) + "-" + std::to_string(i);
        auto got =
            texts(run_in(h, ws, "/x?k=key" + std::to_string(i % 40) + "&v=" + v, "HISTORY").second);
        // The value just recorded comes first; the key may have been evicted meanwhile,
        // but never more than `keep` values come back.
        if (got.empty() || got[0] != v || got.size() > 3) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// =======================================================================================
// Counter

TEST(DataCounter, CountsInASlidingWindow) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "Counter", "with": {"key": "${k}", "window_ms": 1000}, "then": {"next": ["r"]}},
    "r": {"rule": "HttpRespond", "with": {"body": "${COUNT}"}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  ClockedRuntime rt(h);
  rt.clock.now = 10000;
  EXPECT_EQ(rt.run("/x?k=a").response.body, "1");  // `next` ran
  rt.clock.now = 10500;
  EXPECT_EQ(rt.run("/x?k=a").var("COUNT").as_number(), 2);
  EXPECT_EQ(rt.run("/x?k=b").var("COUNT").as_number(), 1);
  rt.clock.now = 10999;
  EXPECT_EQ(rt.run("/x?k=a").var("COUNT").as_number(), 3);
  rt.clock.now = 11000;  // the hit at 10000 leaves the window
  EXPECT_EQ(rt.run("/x?k=a").var("COUNT").as_number(), 3);
  rt.clock.now = 11500;  // the hit at 10500 leaves
  EXPECT_EQ(rt.run("/x?k=a").var("COUNT").as_number(), 3);
  rt.clock.now = 20000;  // everything left
  EXPECT_EQ(rt.run("/x?k=a").var("COUNT").as_number(), 1);
}

TEST(DataCounter, IncrementsByAnyAmountAndWindowZeroCountsForever) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "Counter",
          "with": {"key": "k", "window_ms": 0, "increment": "${number(n)}", "output": "N"}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  ClockedRuntime rt(h);
  EXPECT_EQ(rt.run("/x?n=5").var("N").as_number(), 5);
  rt.clock.now = rt.clock.now + 365LL * 24 * 3600 * 1000;
  EXPECT_EQ(rt.run("/x?n=-2").var("N").as_number(), 3);
  EXPECT_EQ(rt.run("/x?n=0.5").var("N").as_number(), 3.5);
  auto bad = rt.run("/x?n=lots");
  EXPECT_TRUE(bad.outcome.failed);
  EXPECT_TRUE(has_text(bad.outcome.error, "increment")) << bad.outcome.error;
  EXPECT_EQ(rt.run("/x?n=1").var("N").as_number(), 4.5);  // the failed one counted nothing
}

TEST(DataCounter, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& extra) {
    return Harness::rules(R"J({"c": {"rule": "Counter", "with": {"key": "k")J" + extra + "}}}",
                          "c");
  };
  expect_load_error(rules(R"J(, "window_ms": -1)J"), "c", "window_ms", "whole number from 0");
  expect_load_error(rules(R"J(, "window_ms": "${w}")J"), "c", "window_ms", "constant");
  expect_load_error(rules(R"J(, "max_keys": 0)J"), "c", "max_keys", "whole number from 1");
  expect_load_error(rules(R"J(, "increment": "many")J"), "c", "increment", "number");
  expect_load_error(Harness::rules(R"J({"c": {"rule": "Counter", "with": {}}})J", "c"), "c", "key",
                    "missing");
}

TEST(DataCounter, ForgetsTheLeastRecentlyUsedKeyBeyondMaxKeys) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "Counter", "with": {"key": "${k}", "window_ms": 0, "max_keys": 2}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  h.request("GET /x?k=a");
  h.request("GET /x?k=a");
  h.request("GET /x?k=b");
  h.request("GET /x?k=c");  // evicts a
  EXPECT_EQ(h.request("GET /x?k=c").var("COUNT").as_number(), 2);
  EXPECT_EQ(h.request("GET /x?k=a").var("COUNT").as_number(), 1);
}

TEST(DataCounter, ManyKeysStayBoundedAcrossShards) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "Counter", "with": {"key": "${k}", "window_ms": 0, "max_keys": 1024}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  cap::Workspace ws;
  for (int i = 0; i < 20000; ++i) run_in(h, ws, "/x?k=key" + std::to_string(i), "COUNT");
  // The newest key is remembered, the oldest long forgotten.
  EXPECT_EQ(run_in(h, ws, "/x?k=key19999", "COUNT").second.as_number(), 2);
  EXPECT_EQ(run_in(h, ws, "/x?k=key0", "COUNT").second.as_number(), 1);
}

TEST(DataCounter, CountsExactlyUnderConcurrentRequests) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "Counter", "with": {"key": "${k}", "window_ms": 60000}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  constexpr int kThreads = 4, kRequests = 500;
  std::vector<double> own(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      cap::Workspace ws;
      for (int i = 0; i < kRequests; ++i) {
        own[t] = run_in(h, ws, "/x?k=t" + std::to_string(t), "COUNT").second.as_number();
        run_in(h, ws, "/x?k=shared", "COUNT");
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(own[t], kRequests);
  cap::Workspace ws;
  EXPECT_EQ(run_in(h, ws, "/x?k=shared", "COUNT").second.as_number(), kThreads * kRequests + 1);
}

// =======================================================================================
// RateLimiter

std::string limiter_rules(const std::string& with) {
  return with_say(R"J("rl": {"rule": "RateLimiter", "with": )J" + with +
                  R"J(, "then": {"allowed": ["yes"], "limited": ["no"]}})J");
}

TEST(DataRateLimiter, AllowsUpToTheLimitInTheWindowWithoutCountingLimitedOnes) {
  auto h =
      Harness::rules(limiter_rules(R"J({"key": "${k}", "limit": 3, "window_ms": 1000})J"), "rl");
  ASSERT_TRUE(h.ok()) << h.errors();
  ClockedRuntime rt(h);
  rt.clock.now = 50000;
  for (int i = 1; i <= 3; ++i) {
    auto r = rt.run("/x?k=a");
    EXPECT_EQ(r.response.body, "yes");
    EXPECT_EQ(r.var("RATE_COUNT").as_number(), i);
  }
  auto limited = rt.run("/x?k=a");
  EXPECT_EQ(limited.response.body, "no");
  EXPECT_EQ(limited.var("RATE_COUNT").as_number(), 3);
  EXPECT_EQ(rt.run("/x?k=b").response.body, "yes");  // keys are separate
  rt.clock.now = 50999;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(rt.run("/x?k=a").response.body, "no");
  rt.clock.now = 51000;  // the three allowed ones leave the window; the limited ones never counted
  auto again = rt.run("/x?k=a");
  EXPECT_EQ(again.response.body, "yes");
  EXPECT_EQ(again.var("RATE_COUNT").as_number(), 1);
}

TEST(DataRateLimiter, LimitFromATemplateAndZeroLimitsEverything) {
  auto h = Harness::rules(
      limiter_rules(R"J({"key": "k", "limit": "${number(n)}", "output": "RC"})J"), "rl");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?n=0").response.body, "no");
  EXPECT_EQ(h.request("GET /x?n=1").response.body, "yes");
  auto r = h.request("GET /x?n=1");
  EXPECT_EQ(r.response.body, "no");
  EXPECT_EQ(r.var("RC").as_number(), 1);
  auto bad = h.request("GET /x?n=-1");
  EXPECT_TRUE(bad.outcome.failed);
  EXPECT_TRUE(has_text(bad.outcome.error, "limit")) << bad.outcome.error;
}

TEST(DataRateLimiter, WindowZeroIsAQuotaThatNeverResets) {
  auto h = Harness::rules(limiter_rules(R"J({"key": "k", "limit": 2, "window_ms": 0})J"), "rl");
  ASSERT_TRUE(h.ok()) << h.errors();
  ClockedRuntime rt(h);
  EXPECT_EQ(rt.run("/").response.body, "yes");
  EXPECT_EQ(rt.run("/").response.body, "yes");
  rt.clock.now = rt.clock.now + 100LL * 24 * 3600 * 1000;
  EXPECT_EQ(rt.run("/").response.body, "no");
}

TEST(DataRateLimiter, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& extra) {
    return Harness::rules(limiter_rules(R"J({"key": "k")J" + extra + "}"), "rl");
  };
  expect_load_error(rules(""), "rl", "limit", "missing");
  expect_load_error(rules(R"J(, "limit": -1)J"), "rl", "limit", "whole number from 0");
  expect_load_error(rules(R"J(, "limit": 1, "window_ms": "${w}")J"), "rl", "window_ms", "constant");
  expect_load_error(rules(R"J(, "limit": 1, "window_ms": -5)J"), "rl", "window_ms",
                    "whole number from 0");
  expect_load_error(rules(R"J(, "limit": 1, "max_keys": 0)J"), "rl", "max_keys",
                    "whole number from 1");
}

TEST(DataRateLimiter, ForgetsTheLeastRecentlyUsedKeyBeyondMaxKeys) {
  auto h = Harness::rules(limiter_rules(R"J({"key": "${k}", "limit": 1, "max_keys": 1})J"), "rl");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /x?k=a").response.body, "yes");
  EXPECT_EQ(h.request("GET /x?k=a").response.body, "no");
  EXPECT_EQ(h.request("GET /x?k=b").response.body, "yes");  // evicts a
  EXPECT_EQ(h.request("GET /x?k=a").response.body, "yes");
}

TEST(DataRateLimiter, NeverAllowsMoreThanTheLimitUnderConcurrentRequests) {
  auto h = Harness::rules(limiter_rules(R"J({"key": "k", "limit": 150, "window_ms": 0})J"), "rl");
  ASSERT_TRUE(h.ok()) << h.errors();
  constexpr int kThreads = 4, kRequests = 100;
  std::atomic<int> allowed{0}, limited{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      cap::Workspace ws;
      for (int i = 0; i < kRequests; ++i) {
        std::string body = run_in(h, ws, "/x", "RATE_COUNT").first;
        if (body == "yes") ++allowed;
        if (body == "no") ++limited;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed.load(), 150);
  EXPECT_EQ(limited.load(), kThreads * kRequests - 150);
}

// =======================================================================================
// Catalogue entries

TEST(DataCatalogue, EveryRuleAndParameterIsDocumented) {
  cap::RuleRegistry reg;
  cap::register_base_rules(reg);
  for (const char* name :
       {"JsonParse", "JsonBuild", "CsvLookup", "HistoryRecorder", "Counter", "RateLimiter"}) {
    auto t = reg.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->spec.group, "Data");
    EXPECT_GT(t->spec.doc.size(), 80u) << name;
    for (const auto& p : t->spec.params) EXPECT_FALSE(p.doc.empty()) << name << "." << p.name;
  }
}

}  // namespace

// capctl as a user runs it: the real binary, its output and exit status.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace fs = std::filesystem;

namespace {

struct CliResult {
  int status = -1;
  std::string out, err;
};

CliResult capctl(const std::string& args) {
  static int n = 0;
  fs::path errfile = fs::temp_directory_path() /
                     ("capctl-err-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
  std::string cmd = std::string(CAP_CAPCTL) + " " + args + " 2>" + errfile.string();
  CliResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), got);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(errfile);
  r.err.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  fs::remove(errfile);
  return r;
}

class TempConfig {
 public:
  TempConfig() {
    std::random_device rd;
    dir = fs::temp_directory_path() / ("capctl-test-" + std::to_string(rd()));
    fs::create_directories(dir / "rulesets");
  }
  ~TempConfig() { fs::remove_all(dir); }
  void write(const std::string& rel, const std::string& content) {
    fs::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel) << content;
  }
  std::string path() const { return dir.string(); }
  fs::path dir;
};

const std::string kHello = std::string(CAP_SOURCE_DIR) + "/examples/hello";

}  // namespace

TEST(Capctl, RunHelloPrintsTheHttpResponse) {
  CliResult r = capctl("run " + kHello + " --request 'GET /hello?name=World'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("HTTP/1.1 200 OK\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\n\nHello, World!\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("content-length: 13\n"), std::string::npos) << r.out;
}

TEST(Capctl, RunUnansweredRequestIs404) {
  CliResult r = capctl("run " + kHello + " --request 'GET /nowhere'");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.rfind("HTTP/1.1 404 Not Found\n", 0), 0u) << r.out;
}

TEST(Capctl, RunFormPostSetsVariablesAndTraces) {
  CliResult r =
      capctl("run " + kHello +
             " --request 'POST /hello' -H 'Content-Type: application/x-www-form-urlencoded' "
             "-d 'name=Ann' --trace");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Hello, Ann!"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trace: POST /hello -> 200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chain     main/isHello true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("set       MSG = 'Hello, Ann!'"), std::string::npos) << r.out;
}

TEST(Capctl, BadUsageExits2) {
  EXPECT_EQ(capctl("").status, 2);
  EXPECT_EQ(capctl("frobnicate").status, 2);
  EXPECT_EQ(capctl("run " + kHello).status, 2);  // --request missing
  CliResult r = capctl("run " + kHello + " --request 'hello'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("must look like"), std::string::npos) << r.err;
  r = capctl("run " + kHello + " --request 'GET /' -H 'NoColon'");
  EXPECT_EQ(r.status, 2);
  r = capctl("validate /does/not/exist");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("/does/not/exist: no such folder or file"), std::string::npos) << r.err;
}

TEST(Capctl, ValidateReportsEveryErrorOneALine) {
  TempConfig c;
  c.write("cap.json", R"({"format": 1, "name": "bad", "ruleset": "main"})");
  c.write("rulesets/main.json", R"({"name": "main", "start": "a", "rules": {
    "a": {"rule": "IfCondition", "with": {"condition": "len(URI) >"}, "then": {"maybe": ["b"]}},
    "b": {"rule": "NoSuchRule"},
    "c": {"rule": "SetVariable", "with": {"value": 1}}
  }})");
  CliResult r = capctl("validate " + c.path());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("rulesets/main.json: node a: condition: "), std::string::npos) << r.out;
  EXPECT_NE(
      r.out.find(
          "rulesets/main.json: node a: then.maybe: rule IfCondition has no chain point 'maybe'"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("rulesets/main.json: node b: rule: unknown rule 'NoSuchRule'"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("rulesets/main.json: node c: name: missing"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("node c: warning: unreachable"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("4 errors"), std::string::npos) << r.err;
}

TEST(Capctl, ValidateCleanConfigurationPrintsNothing) {
  CliResult r = capctl("validate " + kHello);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Capctl, PackWritesAZipThatRunsAndRefusesBadConfigurations) {
  TempConfig c;
  fs::path zip = c.dir / "hello.zip";
  CliResult r = capctl("pack " + kHello + " -o " + zip.string());
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_TRUE(fs::exists(zip));
  std::ifstream f(zip, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.substr(0, 2), "PK");
  // Packing is deterministic.
  fs::path zip2 = c.dir / "again.zip";
  ASSERT_EQ(capctl("pack " + kHello + " -o " + zip2.string()).status, 0);
  std::ifstream f2(zip2, std::ios::binary);
  std::string bytes2((std::istreambuf_iterator<char>(f2)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes, bytes2);
  // The zip runs like the folder.
  r = capctl("run " + zip.string() + " --request 'GET /hello?name=Zip'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Hello, Zip!"), std::string::npos);
  // A bad configuration is not packed, and no file appears.
  c.write("bad/cap.json", R"({"format": 2, "name": "x", "ruleset": "main"})");
  fs::path bad = c.dir / "bad.zip";
  r = capctl("pack " + (c.dir / "bad").string() + " -o " + bad.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("unknown format version 2"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(bad));
}

TEST(Capctl, RunRejectsAGarbageZip) {
  TempConfig c;
  c.write("garbage.zip", std::string("PK\x03\x04 this is not really a zip \x01\x02", 36));
  CliResult r = capctl("run " + (c.dir / "garbage.zip").string() + " --request 'GET /'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("zip"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Capctl, TestPrintsAPassFailTableAndPerformance) {
  TempConfig c;
  c.write(
      "t.jsonl",
      R"({"name": "greets", "request": "GET /hello?name=Ann", "expect": {"status": 200, "body": "Hello, Ann!", "variables": {"MSG": "Hello, Ann!"}}})"
      "\n\n"
      R"({"name": "wrong on purpose", "request": "GET /hello?name=Bob", "expect": {"status": 201, "body_contains": "Zed", "headers": {"X-Nope": "1"}}})"
      "\n");
  CliResult r = capctl("test " + kHello + " --data " + (c.dir / "t.jsonl").string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("greets"), std::string::npos);
  EXPECT_NE(r.out.find("pass"), std::string::npos);
  EXPECT_NE(r.out.find("wrong on purpose  FAIL    status 200, expected 201"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("lacks 'Zed'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no header X-Nope"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 of 2 passed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("main/isHello"), std::string::npos) << r.out;  // performance rows
}

TEST(Capctl, TestReportsMalformedLinesWithTheirNumber) {
  TempConfig c;
  c.write("t.jsonl", "{\"request\": \"GET /hello\"}\n{not json\n{\"name\": \"no request\"}\n");
  CliResult r = capctl("test " + kHello + " --data " + (c.dir / "t.jsonl").string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("line 2: not valid JSON"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("line 3: \"request\" is required"), std::string::npos) << r.err;
}

TEST(Capctl, RulesListsTheCatalogue) {
  CliResult r = capctl("rules");
  EXPECT_EQ(r.status, 0);
  for (const char* rule : {"IfCondition",     "Switch",
                           "SetCompleted",    "RuleSetExit",
                           "FailSafePoint",   "ForEach",
                           "Comment",         "SwitchMode",
                           "SetVariable",     "DeleteVariable",
                           "NameSplitter",    "ValueComparer",
                           "RegexExtract",    "StringReplace",
                           "AttributeLister", "JsonParse",
                           "JsonBuild",       "CsvLookup",
                           "HistoryRecorder", "Counter",
                           "RateLimiter",     "HttpRequestTracker",
                           "HttpRespond",     "HttpRedirect",
                           "SetCookie"})
    EXPECT_NE(r.out.find(std::string("\n") + rule + "\n"), std::string::npos) << rule;
  CliResult md = capctl("rules --markdown");
  EXPECT_EQ(md.status, 0);
  EXPECT_EQ(md.out.rfind("# Rule reference", 0), 0u);
  EXPECT_NE(md.out.find("### CsvLookup"), std::string::npos);
}

TEST(Capctl, RulesJsonIsTheCatalogueTheEditorReads) {
  CliResult r = capctl("rules --json");
  ASSERT_EQ(r.status, 0) << r.err;
  boost::json::value doc = boost::json::parse(r.out);
  const boost::json::array& rules = doc.at("rules").as_array();
  const boost::json::object* if_condition = nullptr;
  const boost::json::object* switch_rule = nullptr;
  for (auto& rule : rules) {
    if (rule.at("name") == "IfCondition") if_condition = &rule.as_object();
    if (rule.at("name") == "Switch") switch_rule = &rule.as_object();
  }
  ASSERT_NE(if_condition, nullptr);
  EXPECT_EQ(if_condition->at("group"), "Flow");
  EXPECT_EQ(if_condition->at("chain_points"), (boost::json::array{"true", "false"}));
  const auto& condition = if_condition->at("params").as_array().at(0).as_object();
  EXPECT_EQ(condition.at("name"), "condition");
  EXPECT_EQ(condition.at("type"), "expression");
  EXPECT_EQ(condition.at("required"), true);
  ASSERT_NE(switch_rule, nullptr);
  EXPECT_EQ(switch_rule->at("user_chain_points"), true);
  // --json and --markdown are two answers to one question: asking both is bad usage.
  EXPECT_EQ(capctl("rules --json --markdown").status, 2);
}

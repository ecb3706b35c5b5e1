// The storage rules on SQLite and the shared folder, through a Runtime as the agent runs
// them (PostgreSQL is covered by tests/integration/test_sql.py against a real server).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support/harness.h"

namespace cap::test {
namespace {

namespace fs = std::filesystem;

std::string temp_folder() {
  std::string t = (fs::temp_directory_path() / "cap-storage-XXXXXX").string();
  EXPECT_NE(::mkdtemp(t.data()), nullptr);
  return t;
}

/// A configuration with database "app" on a fresh SQLite file and `rules` in "main".
Harness sql_site(const std::string& rules, const std::string& start) {
  std::string db = temp_folder() + "/app.db";
  return Harness::rules(rules, start,
                        {{"cap.json", R"({"format": 1, "name": "t", "ruleset": "main",
                            "databases": {"app": {"url": "sqlite://)" +
                                          db + R"("}}})"}});
}

const char* kNotes = R"J({
  "route": {"rule": "Switch", "with": {"value": "${URI}"},
            "then": {"/create": ["create"], "/add": ["add"], "/find": ["find"], "/all": ["all"]}},
  "create": {"rule": "SqlExecute", "with": {"database": "app",
             "sql": "CREATE TABLE notes (body TEXT, n REAL, raw BLOB)"},
             "then": {"ok": ["done"], "error": ["failed"]}},
  "add": {"rule": "SqlExecute", "with": {"database": "app",
          "sql": "INSERT INTO notes (body, n) VALUES (?, ?)", "args": ["${body}", "${number(n)}"]},
          "then": {"ok": ["done"], "error": ["failed"]}},
  "find": {"rule": "SqlQuery", "with": {"database": "app",
           "sql": "SELECT body, n FROM notes WHERE body = ?", "args": ["${body}"], "output": "ROWS"},
           "then": {"ok": ["done"], "empty": ["none"], "error": ["failed"]}},
  "all": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELECT body FROM notes ORDER BY rowid",
          "output": "ROWS", "max_rows": 2},
          "then": {"ok": ["done"], "empty": ["none"], "error": ["failed"]}},
  "done": {"rule": "HttpRespond", "with": {"body": "ok"}},
  "none": {"rule": "HttpRespond", "with": {"status": 404, "body": "none"}},
  "failed": {"rule": "HttpRespond", "with": {"status": 502, "body": "${SQL_ERROR}"}}
})J";

TEST(StorageSql, ExecuteAndQueryOnSqlite) {
  auto h = sql_site(kNotes, "route");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_EQ(h.request("GET /create").response.body, "ok");
  auto r = h.request("GET /add?body=first&n=1.5");
  EXPECT_EQ(r.response.body, "ok");
  EXPECT_EQ(r.var("SQL_AFFECTED"), Value(1));
  r = h.request("GET /find?body=first");
  ASSERT_EQ(r.response.body, "ok");
  ASSERT_TRUE(r.var("ROWS").is_list());
  ASSERT_EQ(r.var("ROWS").as_list().size(), 1u);
  const Map& row = r.var("ROWS").as_list()[0].as_map();
  EXPECT_EQ(*row.find("body"), Value("first"));
  EXPECT_EQ(*row.find("n"), Value(1.5));
  EXPECT_EQ(h.request("GET /find?body=nobody").response.status, 404);
}

TEST(StorageSql, HostileStringsAreBoundNeverSpliced) {
  auto h = sql_site(kNotes, "route");
  h.request("GET /create");
  for (std::string s : {"x'); DROP TABLE notes;--", "? ?? $1 :a @b", "it''s \"q\" \\"}) {
    std::string enc;
    for (unsigned char c : s) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      enc += buf;
    }
    EXPECT_EQ(h.request("GET /add?n=1&body=" + enc).response.body, "ok") << s;
    auto r = h.request("GET /find?body=" + enc);
    ASSERT_EQ(r.response.body, "ok") << s;
    EXPECT_EQ(*r.var("ROWS").as_list()[0].as_map().find("body"), Value(s));
  }
}

TEST(StorageSql, RowLimitAndErrors) {
  auto h = sql_site(kNotes, "route");
  EXPECT_EQ(h.request("GET /all").response.status, 502);  // no table yet
  EXPECT_NE(h.request("GET /all").response.body.find("no such table: notes"), std::string::npos);
  h.request("GET /create");
  EXPECT_EQ(h.request("GET /all").response.status, 404);  // empty
  for (int i = 0; i < 5; ++i) h.request("GET /add?n=1&body=b" + std::to_string(i));
  auto r = h.request("GET /all");
  EXPECT_EQ(r.var("ROWS").as_list().size(), 2u);
  r = h.request("GET /create");  // already there
  EXPECT_EQ(r.response.status, 502);
  EXPECT_NE(r.response.body.find("database 'app'"), std::string::npos) << r.response.body;
  EXPECT_NE(r.response.body.find("already exists"), std::string::npos) << r.response.body;
}

TEST(StorageSql, UnwiredErrorFailsTheRequestAndFailSafePointCatchesIt) {
  auto h = sql_site(R"({
    "guard": {"rule": "FailSafePoint", "then": {"ok": ["q"], "failed": ["caught"]}},
    "q": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELECT * FROM missing"}},
    "caught": {"rule": "HttpRespond", "with": {"status": 503, "body": "caught ${SQL_ERROR}"}}
  })",
                    "guard");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_EQ(r.response.status, 503);
  EXPECT_NE(r.response.body.find("no such table: missing"), std::string::npos);
  auto bare = sql_site(
      R"({"q": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELECT * FROM missing"}}})",
      "q");
  r = bare.request("GET /");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_NE(r.outcome.error.find("no such table"), std::string::npos) << r.outcome.error;
}

TEST(StorageSql, LoadErrorsNameTheNodeAndParameter) {
  auto h = sql_site(R"({
    "a": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELECT '${name}'"}, "then": {"ok": ["b"]}},
    "b": {"rule": "SqlExecute", "with": {"database": "nope", "sql": "DELETE FROM t"}, "then": {"ok": ["c"]}},
    "c": {"rule": "SqlQuery", "with": {"database": "app", "sql": " ; "}, "then": {"ok": ["d"]}},
    "d": {"rule": "FlightRecorder", "with": {"database": "app", "table": "bad name", "variables": []}}
  })",
                    "a");
  EXPECT_FALSE(h.ok());
  std::string e = h.errors();
  EXPECT_NE(e.find("node a: sql: must be fixed text"), std::string::npos) << e;
  EXPECT_NE(e.find("node b: database: no database 'nope' in cap.json `databases` (it names app)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("node c: sql: is empty"), std::string::npos) << e;
  EXPECT_NE(e.find("node d: table: must be fixed text"), std::string::npos) << e;
  EXPECT_NE(e.find("node d: variables: must be a fixed, non-empty list"), std::string::npos) << e;
}

TEST(StorageSql, FlightRecorderCreatesItsTableAndAppends) {
  auto h = sql_site(R"({
    "rec": {"rule": "FlightRecorder", "with": {"database": "app", "table": "log", "variables": ["who", "URI"]},
            "then": {"ok": ["read"]}},
    "read": {"rule": "SqlQuery", "with": {"database": "app", "sql": "SELECT method, uri, variables FROM log"}}
  })",
                    "rec");
  ASSERT_TRUE(h.ok()) << h.errors();
  h.request("GET /a?who=ann");
  auto r = h.request("POST /b?who=bob");
  const List& rows = r.var("SQL_ROWS").as_list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(*rows[1].as_map().find("method"), Value("POST"));
  EXPECT_EQ(*rows[1].as_map().find("uri"), Value("/b"));
  EXPECT_EQ(*rows[1].as_map().find("variables"), Value(R"({"who":"bob","URI":"/b"})"));
}

// ---------------------------------------------------------------------------------------
// Files

const char* kFiles = R"({
  "route": {"rule": "Switch", "with": {"value": "${URI}"},
            "then": {"/write": ["write"], "/append": ["append"], "/read": ["read"], "/list": ["list"],
                     "/bytes": ["bytes"], "/upload": ["upload"]}},
  "write": {"rule": "FileWrite", "with": {"path": "${p}", "content": "${c}"},
            "then": {"ok": ["done"], "error": ["failed"]}},
  "append": {"rule": "FileWrite", "with": {"path": "${p}", "content": "${c}", "append": true},
             "then": {"ok": ["done"], "error": ["failed"]}},
  "read": {"rule": "FileRead", "with": {"path": "${p}", "max_bytes": 100},
           "then": {"ok": ["show"], "missing": ["none"], "error": ["failed"]}},
  "bytes": {"rule": "FileRead", "with": {"path": "${p}", "format": "bytes"},
            "then": {"ok": ["show"], "missing": ["none"], "error": ["failed"]}},
  "list": {"rule": "FileList", "with": {"path": "${p}"},
           "then": {"ok": ["names"], "empty": ["none"], "error": ["failed"]}},
  "upload": {"rule": "FileUpload", "with": {"max_bytes": 10},
             "then": {"ok": ["done"], "missing": ["none"], "too_large": ["big"], "error": ["failed"]}},
  "show": {"rule": "HttpRespond", "with": {"body": "${FILE_CONTENT}"}},
  "names": {"rule": "HttpRespond", "with": {"body": "${join(FILES, ',')}"}},
  "done": {"rule": "HttpRespond", "with": {"body": "ok"}},
  "none": {"rule": "HttpRespond", "with": {"status": 404, "body": "none"}},
  "big": {"rule": "HttpRespond", "with": {"status": 413, "body": "${FILE_ERROR}"}},
  "failed": {"rule": "HttpRespond", "with": {"status": 400, "body": "${FILE_ERROR}"}}
})";

Harness file_site() {
  auto h = Harness::rules(kFiles, "route");
  EXPECT_TRUE(h.ok()) << h.errors();
  return h;
}

TEST(StorageFiles, WriteReadAppendList) {
  auto h = file_site();
  EXPECT_EQ(h.request("GET /write?p=notes/a.txt&c=hello").response.body, "ok");
  EXPECT_EQ(h.request("GET /read?p=notes/a.txt").response.body, "hello");
  EXPECT_EQ(h.request("GET /write?p=notes/a.txt&c=replaced").response.body, "ok");
  EXPECT_EQ(h.request("GET /append?p=notes/a.txt&c=+more").response.body, "ok");
  EXPECT_EQ(h.request("GET /read?p=notes/a.txt").response.body, "replaced more");
  EXPECT_EQ(h.request("GET /read?p=notes/none.txt").response.status, 404);
  auto r = h.request("GET /list?p=notes");
  ASSERT_TRUE(r.var("FILES").is_list());
  ASSERT_EQ(r.var("FILES").as_list().size(), 1u);  // no temporary files left behind
  const Map& e = r.var("FILES").as_list()[0].as_map();
  EXPECT_EQ(*e.find("name"), Value("a.txt"));
  EXPECT_EQ(*e.find("size"), Value(13));
  EXPECT_EQ(*e.find("directory"), Value(false));
  EXPECT_EQ(h.request("GET /list?p=nothing-here").response.status, 404);
}

TEST(StorageFiles, ReadLimitAndFormats) {
  auto h = file_site();
  h.request("GET /write?p=big.txt&c=" + std::string(150, 'x'));
  auto r = h.request("GET /read?p=big.txt");
  EXPECT_EQ(r.response.status, 400);
  EXPECT_NE(r.response.body.find("more than the limit of 100"), std::string::npos);
  h.request("GET /write?p=bin&c=%00%01%FF");
  r = h.request("GET /bytes?p=bin");
  EXPECT_TRUE(r.var("FILE_CONTENT").is_bytes());
  EXPECT_EQ(r.var("FILE_CONTENT").as_bytes().data, std::string("\0\1\xff", 3));
}

TEST(StorageFiles, EscapesAreRefusedAndNothingIsWrittenOutside) {
  auto h = file_site();
  std::string outside = temp_folder();
  fs::create_symlink(outside, fs::path(h.dir) / "shared" / "link");
  std::ofstream(outside + "/secret.txt") << "secret";
  for (std::string p : {"../escape.txt", "a/../../escape.txt", "%2Fetc%2Fpasswd", "link/secret.txt",
                        "link/new.txt"}) {
    auto w = h.request("GET /write?c=x&p=" + p);
    EXPECT_EQ(w.response.status, 400) << p;
    EXPECT_NE(w.response.body.find("is refused"), std::string::npos)
        << p << ": " << w.response.body;
    auto r = h.request("GET /read?p=" + p);
    EXPECT_EQ(r.response.status, 400) << p;
    EXPECT_EQ(r.response.body.find("secret\n"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(fs::path(h.dir) / "escape.txt"));
  EXPECT_FALSE(fs::exists(outside + "/new.txt"));
  EXPECT_EQ(h.request("GET /list?p=link").response.status, 400);
  EXPECT_EQ(h.request("GET /list?p=..").response.status, 400);
}

TEST(StorageFiles, ConstantEscapesAreLoadErrors) {
  auto h = Harness::rules(
      R"({"w": {"rule": "FileWrite", "with": {"path": "../x", "content": "y"}}})", "w");
  EXPECT_FALSE(h.ok());
  EXPECT_NE(h.errors().find("node w: path: '../x' must be relative to the shared folder"),
            std::string::npos)
      << h.errors();
}

std::string multipart(const std::string& filename, const std::string& data) {
  return "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi there\r\n"
         "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" +
         filename + "\"\r\nContent-Type: text/plain\r\n\r\n" + data + "\r\n--XyZ--\r\n";
}

TEST(StorageFiles, UploadSavesUnderTheFolderWithASafeName) {
  auto h = file_site();
  const std::vector<std::string> headers = {"Content-Type: multipart/form-data; boundary=XyZ"};
  auto r = h.request("POST /upload", headers, multipart("../../My Report.txt", "0123456789"));
  EXPECT_EQ(r.response.body, "ok");
  const Map& up = r.var("UPLOAD").as_map();
  EXPECT_EQ(*up.find("name"), Value("My_Report.txt"));
  EXPECT_EQ(*up.find("path"), Value("uploads/My_Report.txt"));
  EXPECT_EQ(*up.find("size"), Value(10));
  EXPECT_EQ(*up.find("fields")->as_map().find("note"), Value("hi there"));
  EXPECT_EQ(h.request("GET /read?p=uploads/My_Report.txt").response.body, "0123456789");
}

TEST(StorageFiles, OversizedMissingAndBrokenUploads) {
  auto h = file_site();
  const std::vector<std::string> headers = {"Content-Type: multipart/form-data; boundary=XyZ"};
  auto r = h.request("POST /upload", headers, multipart("big.bin", "01234567890"));
  EXPECT_EQ(r.response.status, 413);
  EXPECT_NE(r.response.body.find("more than the limit of 10"), std::string::npos);
  EXPECT_EQ(h.request("GET /list?p=uploads").response.status, 404);  // nothing saved
  EXPECT_EQ(h.request("POST /upload", {"Content-Type: text/plain"}, "x").response.status, 404);
  r = h.request("POST /upload", headers,
                "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                "filename=\"a\"\r\n\r\nno end");
  EXPECT_EQ(r.response.status, 400);
  EXPECT_NE(r.response.body.find("not closed by a boundary"), std::string::npos);
}

}  // namespace
}  // namespace cap::test

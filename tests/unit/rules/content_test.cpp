// ServeContent through a content rule set, as an agent runs it.
#include <gtest/gtest.h>

#include "support/harness.h"

namespace cap::test {
namespace {

Harness site() {
  return Harness({
      {"cap.json", R"({"format": 1, "name": "site", "ruleset": "main", "content_ruleset": "static"})"},
      {"rulesets/static.json", R"({"name": "static", "start": "serve", "rules": {
         "serve": {"rule": "ServeContent", "with": {"prefix": "/"}, "then": {"not_found": ["miss"]}},
         "miss": {"rule": "SetVariable", "with": {"name": "MISSED", "value": true}}}})"},
      {"rulesets/main.json", R"({"name": "main", "start": "api", "rules": {
         "api": {"rule": "HttpRespond", "with": {"status": 200, "body": "api ${URI} missed=${MISSED}"}}}})"},
      {"content/index.html", "<h1>home</h1>"},
      {"content/css/site.css", "body{}"},
      {"content/data.bin", std::string("\x00\x01\x02", 3)},
  });
}

const std::string* header(const Response& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name) return &v;
  return nullptr;
}

TEST(HttpServeContent, ServesFilesWithTheirTypes) {
  auto h = site();
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /css/site.css");
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "body{}");
  EXPECT_EQ(r.response.content_type, "text/css; charset=utf-8");
  ASSERT_NE(header(r.response, "Cache-Control"), nullptr);
  r = h.request("GET /data.bin");
  EXPECT_EQ(r.response.content_type, "application/octet-stream");
  EXPECT_EQ(r.response.body.size(), 3u);
}

TEST(HttpServeContent, IndexForFolders) {
  auto h = site();
  auto r = h.request("GET /");
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "<h1>home</h1>");
  EXPECT_EQ(r.response.content_type, "text/html; charset=utf-8");
}

TEST(HttpServeContent, MissingFilesFallThroughToTheMainRuleSet) {
  auto h = site();
  auto r = h.request("GET /api/x");
  EXPECT_EQ(r.response.body, "api /api/x missed=true");
  r = h.request("GET /../cap.json");
  EXPECT_EQ(r.response.body, "api /../cap.json missed=true");  // never leaves content/
  r = h.request("GET /%2e%2e/cap.json");
  EXPECT_NE(r.response.body, R"({"format": 1, "name": "site", "ruleset": "main", "content_ruleset": "static"})");
}

TEST(HttpServeContent, EtagRevalidationGets304) {
  auto h = site();
  auto first = h.request("GET /index.html");
  const std::string* etag = header(first.response, "ETag");
  ASSERT_NE(etag, nullptr);
  auto again = h.request("GET /index.html", {"If-None-Match: " + *etag});
  EXPECT_EQ(again.response.status, 304);
  EXPECT_EQ(again.response.body, "");
  auto other = h.request("GET /index.html", {"If-None-Match: \"something-else\""});
  EXPECT_EQ(other.response.status, 200);
}

TEST(HttpServeContent, HeadHasNoBody) {
  auto h = site();
  auto r = h.request("HEAD /index.html");
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "");
}

TEST(HttpServeContent, WarnsWithoutContentFolder) {
  auto h = Harness::rules(R"({"s": {"rule": "ServeContent"}})", "s");
  ASSERT_TRUE(h.ok()) << h.errors();
  EXPECT_NE(h.errors().find("rulesets/main.json: node s: warning: the configuration has no content/ folder"),
            std::string::npos)
      << h.errors();
  EXPECT_FALSE(h.request("GET /x").response.set);
}

}  // namespace
}  // namespace cap::test

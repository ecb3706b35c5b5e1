// Tests of the "HTTP" rules (src/rules/http.cpp) through whole configurations:
// HttpRequestTracker, HttpRespond, HttpRedirect, SetCookie.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "support/harness.h"

namespace {

using cap::test::Harness;

bool has_text(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Asserts the configuration failed with an error naming node, parameter and reason.
void expect_load_error(const Harness& h, const std::string& node, const std::string& param,
                       const std::string& reason) {
  ASSERT_FALSE(h.ok()) << "the configuration loaded, expected an error about " << param;
  bool found = false;
  for (const auto& d : h.loaded.diagnostics) {
    if (d.severity != cap::Diagnostic::Severity::Error) continue;
    std::string text = d.format();
    if (has_text(text, "node " + node) && has_text(text, ": " + param + ":") &&
        has_text(text, reason))
      found = true;
  }
  EXPECT_TRUE(found) << "no error naming node '" << node << "', '" << param << "' and '" << reason
                     << "' in:\n"
                     << h.errors();
}

/// The values of every header named `name` (case-insensitive), in order.
std::vector<std::string> header_values(const cap::Response& res, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [k, v] : res.headers)
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(a) == std::tolower(b);
        }))
      out.push_back(v);
  return out;
}

std::string cookie(const Harness::Result& r, const std::string& name) {
  const cap::Value& c = r.var("COOKIES");
  if (!c.is_map()) return "<COOKIES is " + c.to_text() + ">";
  const cap::Value* v = c.as_map().find(name);
  return v ? v->to_text() : "<no cookie " + name + ">";
}

// =======================================================================================
// HttpRequestTracker

const char* kTracker = R"J({
  "t": {"rule": "HttpRequestTracker", "then": {"next": ["r"]}},
  "r": {"rule": "HttpRespond", "with": {"body": "${CLIENT_IP}"}}
})J";

TEST(HttpRequestTracker, PutsClientDetailsIntoVariables) {
  auto h = Harness::rules(kTracker, "t");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r =
      h.request("POST /x", {"User-Agent: Mozilla/5.0 (X11)", "Host: shop.example.com",
                            "Referer: https://search.example/?q=1",
                            "Accept-Language: fr-CH, fr;q=0.9", "Content-Type: application/json",
                            "Cookie: sid=abc123; theme=\"dark\"; msg=hello%20world; flag"});
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.var("CLIENT_IP").to_text(), "10.1.2.3");
  EXPECT_EQ(r.response.body, "10.1.2.3");  // `next` ran
  EXPECT_EQ(r.var("USER_AGENT").to_text(), "Mozilla/5.0 (X11)");
  EXPECT_EQ(r.var("HOST").to_text(), "shop.example.com");
  EXPECT_EQ(r.var("REFERER").to_text(), "https://search.example/?q=1");
  EXPECT_EQ(r.var("ACCEPT_LANGUAGE").to_text(), "fr-CH, fr;q=0.9");
  EXPECT_EQ(r.var("CONTENT_TYPE").to_text(), "application/json");
  ASSERT_TRUE(r.var("IS_HTTPS").is_bool());
  EXPECT_FALSE(r.var("IS_HTTPS").as_bool());
  ASSERT_TRUE(r.var("COOKIES").is_map());
  EXPECT_EQ(r.var("COOKIES").as_map().size(), 3u);
  EXPECT_EQ(cookie(r, "sid"), "abc123");
  EXPECT_EQ(cookie(r, "theme"), "dark");
  EXPECT_EQ(cookie(r, "msg"), "hello world");
}

TEST(HttpRequestTracker, MissingHeadersAreEmptyAndNamesIgnoreCase) {
  auto h = Harness::rules(kTracker, "t");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x", {"user-agent: curl/8", "COOKIE: a=1"});
  EXPECT_EQ(r.var("USER_AGENT").to_text(), "curl/8");
  EXPECT_EQ(cookie(r, "a"), "1");
  for (const char* name : {"HOST", "REFERER", "ACCEPT_LANGUAGE", "CONTENT_TYPE"}) {
    EXPECT_TRUE(r.var(name).is_string()) << name;
    EXPECT_EQ(r.var(name).to_text(), "") << name;
  }
  auto none = h.request("GET /x");
  ASSERT_TRUE(none.var("COOKIES").is_map());
  EXPECT_TRUE(none.var("COOKIES").as_map().empty());
}

TEST(HttpRequestTracker, SeveralCookieHeadersMergeAndTheFirstOfANameWins) {
  auto h = Harness::rules(kTracker, "t");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x", {"Cookie: a=1; b=2", "Cookie: a=3;c=4;  ;=x"});
  EXPECT_EQ(r.var("COOKIES").as_map().size(), 3u);
  EXPECT_EQ(cookie(r, "a"), "1");
  EXPECT_EQ(cookie(r, "c"), "4");
}

TEST(HttpRequestTracker, ForwardedHeadersAreIgnoredUnlessTrusted) {
  std::vector<std::string> headers = {"X-Forwarded-For: 203.0.113.7, 10.0.0.1",
                                      "X-Forwarded-Proto: https"};
  auto untrusted = Harness::rules(kTracker, "t");
  ASSERT_TRUE(untrusted.ok()) << untrusted.errors();
  auto r = untrusted.request("GET /x", headers);
  EXPECT_EQ(r.var("CLIENT_IP").to_text(), "10.1.2.3");
  EXPECT_FALSE(r.var("IS_HTTPS").as_bool());

  auto trusted = Harness::rules(R"J({
    "t": {"rule": "HttpRequestTracker", "with": {"trust_forwarded": true}}
  })J",
                                "t");
  ASSERT_TRUE(trusted.ok()) << trusted.errors();
  auto t = trusted.request("GET /x", headers);
  EXPECT_EQ(t.var("CLIENT_IP").to_text(), "203.0.113.7");
  EXPECT_TRUE(t.var("IS_HTTPS").as_bool());
  auto plain = trusted.request("GET /x", {"X-Forwarded-Proto: http"});
  EXPECT_EQ(plain.var("CLIENT_IP").to_text(), "10.1.2.3");  // no X-Forwarded-For
  EXPECT_FALSE(plain.var("IS_HTTPS").as_bool());
}

TEST(HttpRequestTracker, HttpsSchemeAndPrefix) {
  auto h = Harness::rules(R"J({
    "t": {"rule": "HttpRequestTracker", "with": {"prefix": "C_"}}
  })J",
                          "t");
  ASSERT_TRUE(h.ok()) << h.errors();
  cap::Request req;
  req.target = "/secure";
  req.scheme = "https";
  req.remote_addr = "192.0.2.9";
  req.headers = {{"User-Agent", "ua"}};
  cap::Response res;
  std::map<std::string, cap::Value> vars;
  auto outcome = h.runtime->handle(req, res, h.ws, [&](cap::Variables& v) {
    v.for_each([&](std::string_view k, const cap::Value& val) { vars[std::string(k)] = val; });
  });
  ASSERT_FALSE(outcome.failed) << outcome.error;
  EXPECT_EQ(vars["C_CLIENT_IP"].to_text(), "192.0.2.9");
  EXPECT_EQ(vars["C_USER_AGENT"].to_text(), "ua");
  EXPECT_TRUE(vars["C_IS_HTTPS"].as_bool());
  EXPECT_TRUE(vars["C_COOKIES"].is_map());
  EXPECT_EQ(vars.count("CLIENT_IP"), 0u);
  EXPECT_EQ(vars.count("USER_AGENT"), 0u);
}

TEST(HttpRequestTracker, SetsNothingWithoutARequest) {
  // The startup rule set runs without a request: CLIENT_IP stays unset, so the redirect
  // after the tracker finds an empty location and fails the startup with that reason.
  Harness h({{"cap.json",
              R"J({"format": 1, "name": "t", "ruleset": "main", "startup_ruleset": "boot"})J"},
             {"rulesets/main.json", R"J({"name": "main", "start": "r", "rules": {
                "r": {"rule": "HttpRespond"}}})J"},
             {"rulesets/boot.json", R"J({"name": "boot", "start": "t", "rules": {
                "t": {"rule": "HttpRequestTracker", "then": {"next": ["check"]}},
                "check": {"rule": "HttpRedirect", "with": {"location": "${CLIENT_IP}${USER_AGENT}${COOKIES}"}}}})J"}});
  ASSERT_TRUE(h.ok()) << h.errors();
  std::string err = h.runtime->startup();
  EXPECT_TRUE(has_text(err, "location is empty")) << err;
}

TEST(HttpRequestTracker, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& with) {
    return Harness::rules(R"J({"t": {"rule": "HttpRequestTracker", "with": )J" + with + "}}", "t");
  };
  expect_load_error(rules(R"J({"prefix": "${p}"})J"), "t", "prefix", "must be constant");
  expect_load_error(rules(R"J({"prefix": "my-"})J"), "t", "prefix", "only letters, digits");
  expect_load_error(rules(R"J({"prefix": "1X"})J"), "t", "prefix", "must not start with a digit");
  expect_load_error(rules(R"J({"trust_forwarded": "${t}"})J"), "t", "trust_forwarded",
                    "true or false");
}

// =======================================================================================
// HttpRespond

TEST(HttpRespond, DefaultsToAnEmptyPlainTextOk) {
  auto h = Harness::rules(R"J({"r": {"rule": "HttpRespond"}})J", "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_TRUE(r.response.set);
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(r.response.body, "");
  EXPECT_TRUE(r.response.headers.empty());
}

TEST(HttpRespond, TemplatesStatusBodyTypeAndHeadersThenGoesOn) {
  auto h = Harness::rules(R"J({
    "r": {"rule": "HttpRespond",
          "with": {"status": "${number(s)}", "body": "Hello, ${name}!",
                   "content_type": "text/${kind}",
                   "headers": {"X-Name": "${name}", "Cache-Control": "no-store"}},
          "then": {"next": ["c"]}},
    "c": {"rule": "SetCookie", "with": {"name": "seen", "value": "1"}}
  })J",
                          "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?s=201&name=Ann&kind=html");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_EQ(r.response.status, 201);
  EXPECT_EQ(r.response.body, "Hello, Ann!");
  EXPECT_EQ(r.response.content_type, "text/html");
  EXPECT_EQ(header_values(r.response, "X-Name"), std::vector<std::string>{"Ann"});
  EXPECT_EQ(header_values(r.response, "Cache-Control"), std::vector<std::string>{"no-store"});
  EXPECT_EQ(header_values(r.response, "Set-Cookie").size(), 1u);  // `next` ran
}

TEST(HttpRespond, BadValuesAtRunTimeFailTheRequestAndLeaveTheResponseUnset) {
  auto h = Harness::rules(R"J({
    "r": {"rule": "HttpRespond",
          "with": {"status": "${number(s)}", "body": "x", "headers": {"X-V": "${v}"}}}
  })J",
                          "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  for (const char* s : {"99", "600", "200.5"}) {
    auto r = h.request(std::string("GET /x?v=1&s=") + s);
    EXPECT_TRUE(r.outcome.failed) << s;
    EXPECT_TRUE(has_text(r.outcome.error, "status")) << r.outcome.error;
    EXPECT_FALSE(r.response.set);
  }
  auto split = h.request("GET /x?s=200&v=a%0D%0ASet-Cookie:%20evil=1");
  EXPECT_TRUE(split.outcome.failed);
  EXPECT_TRUE(has_text(split.outcome.error, "line break")) << split.outcome.error;
  EXPECT_FALSE(split.response.set);
  EXPECT_TRUE(split.response.headers.empty());
  EXPECT_EQ(h.request("GET /x?s=599&v=ok").response.status, 599);
}

TEST(HttpRespond, HeadersFromATemplateMustBeAMap) {
  auto h = Harness::rules(R"J({
    "r": {"rule": "HttpRespond", "with": {"headers": "${h}"}}
  })J",
                          "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?h=text");
  EXPECT_TRUE(r.outcome.failed);
  EXPECT_TRUE(has_text(r.outcome.error, "headers must be a map")) << r.outcome.error;
}

TEST(HttpRespond, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& with) {
    return Harness::rules(R"J({"r": {"rule": "HttpRespond", "with": )J" + with + "}}", "r");
  };
  expect_load_error(rules(R"J({"status": 99})J"), "r", "status", "from 100 to 599");
  expect_load_error(rules(R"J({"status": 600})J"), "r", "status", "from 100 to 599");
  expect_load_error(rules(R"J({"status": 200.5})J"), "r", "status", "from 100 to 599");
  expect_load_error(rules(R"J({"status": "ok"})J"), "r", "status", "number");
  expect_load_error(rules(R"J({"headers": {"Bad Name": "x"}})J"), "r", "headers",
                    "'Bad Name' is not a valid header name");
  expect_load_error(rules(R"J({"headers": {"X-A": "a\r\nb"}})J"), "r", "headers", "line break");
  expect_load_error(rules(R"J({"content_type": "text/plain\nX: y"})J"), "r", "content_type",
                    "line break");
  expect_load_error(rules(R"J({"headers": [1]})J"), "r", "headers", "object");
}

// =======================================================================================
// HttpRedirect

TEST(HttpRedirect, SendsALocationWithAnEmptyBody) {
  auto h = Harness::rules(R"J({
    "r": {"rule": "HttpRedirect", "with": {"location": "/login?next=${URI}"},
          "then": {"next": ["c"]}},
    "c": {"rule": "SetCookie", "with": {"name": "back", "value": "${URI}"}}
  })J",
                          "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /account");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_TRUE(r.response.set);
  EXPECT_EQ(r.response.status, 302);
  EXPECT_EQ(r.response.body, "");
  EXPECT_EQ(header_values(r.response, "Location"),
            std::vector<std::string>{"/login?next=/account"});
  EXPECT_EQ(header_values(r.response, "Set-Cookie").size(), 1u);  // `next` ran
}

TEST(HttpRedirect, EveryRedirectStatusIsAccepted) {
  for (int status : {301, 302, 303, 307, 308}) {
    auto h = Harness::rules(
        R"J({"r": {"rule": "HttpRedirect", "with": {"location": "https://x.example/", "status": )J" +
            std::to_string(status) + "}}}",
        "r");
    ASSERT_TRUE(h.ok()) << h.errors();
    EXPECT_EQ(h.request("GET /").response.status, status);
  }
}

TEST(HttpRedirect, BadValuesAtRunTimeFailTheRequest) {
  auto h = Harness::rules(R"J({
    "r": {"rule": "HttpRedirect", "with": {"location": "${to}", "status": "${number(s)}"}}
  })J",
                          "r");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto empty = h.request("GET /x?s=302");
  EXPECT_TRUE(empty.outcome.failed);
  EXPECT_TRUE(has_text(empty.outcome.error, "location is empty")) << empty.outcome.error;
  auto split = h.request("GET /x?s=302&to=/a%0D%0AX:%201");
  EXPECT_TRUE(split.outcome.failed);
  EXPECT_TRUE(has_text(split.outcome.error, "line break")) << split.outcome.error;
  EXPECT_FALSE(split.response.set);
  auto status = h.request("GET /x?s=200&to=/a");
  EXPECT_TRUE(status.outcome.failed);
  EXPECT_TRUE(has_text(status.outcome.error, "301, 302, 303, 307 or 308")) << status.outcome.error;
  EXPECT_EQ(h.request("GET /x?s=307&to=/a").response.status, 307);
}

TEST(HttpRedirect, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& with) {
    return Harness::rules(R"J({"r": {"rule": "HttpRedirect", "with": )J" + with + "}}", "r");
  };
  expect_load_error(rules(R"J({"location": "/a", "status": 200})J"), "r", "status",
                    "must be 301, 302, 303, 307 or 308");
  expect_load_error(rules(R"J({"location": ""})J"), "r", "location", "must not be empty");
  expect_load_error(rules(R"J({"location": "/a\r\nX: 1"})J"), "r", "location", "line break");
  expect_load_error(rules(R"J({"status": 301})J"), "r", "location", "missing");
}

// =======================================================================================
// SetCookie

TEST(HttpSetCookie, AddsAHeaderWithoutAnsweringTheRequest) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "SetCookie", "with": {"name": "sid", "value": "${id}"}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /x?id=abc123");
  ASSERT_FALSE(r.outcome.failed) << r.outcome.error;
  EXPECT_FALSE(r.response.set);  // the request still goes on (404 here, the origin in a proxy)
  EXPECT_EQ(header_values(r.response, "Set-Cookie"),
            std::vector<std::string>{"sid=abc123; Path=/; HttpOnly; SameSite=Lax"});
}

TEST(HttpSetCookie, EveryAttributeAndALaterRespondKeepsIt) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "SetCookie",
          "with": {"name": "pref", "value": "v", "max_age": 3600, "path": "/app",
                   "domain": "example.com", "secure": true, "http_only": false,
                   "same_site": "Strict"},
          "then": {"next": ["gone"]}},
    "gone": {"rule": "SetCookie", "with": {"name": "old", "max_age": 0, "same_site": "None"},
             "then": {"next": ["r"]}},
    "r": {"rule": "HttpRespond", "with": {"body": "ok"}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto r = h.request("GET /");
  EXPECT_TRUE(r.response.set);
  EXPECT_EQ(r.response.body, "ok");
  EXPECT_EQ(header_values(r.response, "Set-Cookie"),
            (std::vector<std::string>{
                "pref=v; Max-Age=3600; Path=/app; Domain=example.com; Secure; SameSite=Strict",
                "old=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=None"}));
}

TEST(HttpSetCookie, ValuesArePercentEncodedAndTheTrackerDecodesThem) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "SetCookie", "with": {"name": "n", "value": "${v}"}, "then": {"next": ["t"]}},
    "t": {"rule": "HttpRequestTracker"}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  // a b;c"d%e\é,f
  auto r = h.request("GET /x?v=a%20b%3Bc%22d%25e%5C%C3%A9%2Cf");
  auto set = header_values(r.response, "Set-Cookie");
  ASSERT_EQ(set.size(), 1u);
  std::string value = set[0].substr(2, set[0].find(';') - 2);
  EXPECT_EQ(value, "a%20b%3Bc%22d%25e%5C%C3%A9%2Cf");
  auto back = h.request("GET /x?v=", {"Cookie: n=" + value});
  EXPECT_EQ(cookie(back, "n"), "a b;c\"d%e\\\xC3\xA9,f");
}

TEST(HttpSetCookie, BadValuesAtRunTimeFailTheRequest) {
  auto h = Harness::rules(R"J({
    "c": {"rule": "SetCookie",
          "with": {"name": "${n}", "path": "${p}", "max_age": "${m}", "same_site": "${s}"}}
  })J",
                          "c");
  ASSERT_TRUE(h.ok()) << h.errors();
  auto ok = h.request("GET /x?n=a&p=/&m=60&s=Lax");
  ASSERT_FALSE(ok.outcome.failed) << ok.outcome.error;
  EXPECT_EQ(header_values(ok.response, "Set-Cookie"),
            std::vector<std::string>{"a=; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"});
  struct Case {
    std::string query, reason;
  };
  for (const Case& c : std::vector<Case>{{"n=a%20b&p=/&m=1&s=Lax", "not a valid cookie name"},
                                         {"n=a&p=/x;y&m=1&s=Lax", "path"},
                                         {"n=a&p=/&m=soon&s=Lax", "max_age"},
                                         {"n=a&p=/&m=1&s=Loose", "same_site"}}) {
    auto r = h.request("GET /x?" + c.query);
    EXPECT_TRUE(r.outcome.failed) << c.query;
    EXPECT_TRUE(has_text(r.outcome.error, c.reason)) << c.query << ": " << r.outcome.error;
    EXPECT_TRUE(header_values(r.response, "Set-Cookie").empty()) << c.query;
  }
}

TEST(HttpSetCookie, ParameterErrorsAtLoad) {
  auto rules = [](const std::string& with) {
    return Harness::rules(R"J({"c": {"rule": "SetCookie", "with": )J" + with + "}}", "c");
  };
  expect_load_error(rules(R"J({"name": "bad name"})J"), "c", "name", "not a valid cookie name");
  expect_load_error(rules(R"J({"name": "a;b"})J"), "c", "name", "not a valid cookie name");
  expect_load_error(rules(R"J({"name": ""})J"), "c", "name", "not a valid cookie name");
  expect_load_error(rules(R"J({"name": "a", "path": "/x;Domain=evil"})J"), "c", "path",
                    "must not hold ';'");
  expect_load_error(rules(R"J({"name": "a", "domain": "x\n"})J"), "c", "domain",
                    "must not hold ';' or control characters");
  expect_load_error(rules(R"J({"name": "a", "same_site": "Loose"})J"), "c", "same_site",
                    "'Loose' is not one of Strict, Lax, None");
  expect_load_error(rules(R"J({"name": "a", "max_age": "soon"})J"), "c", "max_age", "number");
  expect_load_error(rules(R"J({"value": "x"})J"), "c", "name", "missing");
}

// =======================================================================================
// Catalogue entries

TEST(HttpCatalogue, EveryRuleAndParameterIsDocumented) {
  cap::RuleRegistry reg;
  cap::register_base_rules(reg);
  for (const char* name : {"HttpRequestTracker", "HttpRespond", "HttpRedirect", "SetCookie"}) {
    auto t = reg.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->spec.group, "HTTP");
    EXPECT_GT(t->spec.doc.size(), 80u) << name;
    for (const auto& p : t->spec.params) EXPECT_FALSE(p.doc.empty()) << name << "." << p.name;
  }
}

}  // namespace

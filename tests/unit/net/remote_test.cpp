// capctl's agent helper (src/cli/remote.cpp): target parsing, key loading, and signed calls
// checked by a server that verifies the signature the way the agent does.
#include "cli/remote.h"

#include <gtest/gtest.h>

// src/cli/*.cpp is built only into capctl, not into a library the tests link; compile the
// helper into this test directly. (Remove this line if remote.cpp moves into a library.)
#include <stdlib.h>

#include <cstdio>
#include <ctime>
#include <fstream>

#include "cli/remote.cpp"
#include "net/http_server.h"
#include "net/signing.h"

namespace cap::cli {
namespace {

TEST(NetRemote, ParsesAgentTargets) {
  AgentTarget t;
  std::string error;
  ASSERT_TRUE(parse_agent_target("agent.local:20001", "k", &t, &error)) << error;
  EXPECT_EQ(t.host, "agent.local");
  EXPECT_EQ(t.port, 20001);
  EXPECT_EQ(t.key, "k");
  EXPECT_FALSE(t.tls);
  ASSERT_TRUE(parse_agent_target("[::1]:8443", "k", &t, &error)) << error;
  EXPECT_EQ(t.host, "::1");
  EXPECT_EQ(t.port, 8443);
  ASSERT_TRUE(parse_agent_target("https://10.0.0.5:20001/", "k", &t, &error)) << error;
  EXPECT_TRUE(t.tls);
  EXPECT_EQ(t.host, "10.0.0.5");

  struct Case {
    std::string spec, reason;
  };
  std::vector<Case> bad = {
      {"agent.local", "expected HOST:PORT"},
      {"::1:20001", "IPv6 address goes in brackets"},
      {"[::1]20001", "expected [IPv6]:PORT"},
      {":20001", "with a host"},
      {"host:0", "1 to 65535"},
      {"host:70000", "1 to 65535"},
      {"host:abc", "1 to 65535"},
      {"host:", "1 to 65535"},
  };
  for (const auto& c : bad) {
    EXPECT_FALSE(parse_agent_target(c.spec, "k", &t, &error)) << c.spec;
    EXPECT_NE(error.find(c.reason), std::string::npos) << c.spec << " -> " << error;
  }
  EXPECT_FALSE(parse_agent_target("host:1", "", &t, &error));
  EXPECT_NE(error.find("CAP_MGMT_KEY"), std::string::npos) << error;
}

TEST(NetRemote, LoadsTheKeyFromAFileOrTheEnvironment) {
  std::string path = "/tmp/cap-remote-test-key-" + std::to_string(::getpid());
  {
    std::ofstream f(path);
    f << "file-key\n";
  }
  std::string key, error;
  ASSERT_TRUE(load_agent_key(path, &key, &error)) << error;
  EXPECT_EQ(key, "file-key");
  {
    std::ofstream f(path);
    f << "\n";
  }
  EXPECT_FALSE(load_agent_key(path, &key, &error));
  EXPECT_NE(error.find("is empty"), std::string::npos);
  std::remove(path.c_str());
  EXPECT_FALSE(load_agent_key(path, &key, &error));
  EXPECT_NE(error.find("cannot read the key file"), std::string::npos);

  const char* old = getenv("CAP_MGMT_KEY");
  std::string saved = old ? old : "";
  setenv("CAP_MGMT_KEY", "env-key", 1);
  ASSERT_TRUE(load_agent_key("", &key, &error));
  EXPECT_EQ(key, "env-key");
  unsetenv("CAP_MGMT_KEY");
  EXPECT_FALSE(load_agent_key("", &key, &error));
  EXPECT_NE(error.find("set CAP_MGMT_KEY or pass --key-file FILE"), std::string::npos);
  if (old) setenv("CAP_MGMT_KEY", saved.c_str(), 1);
}

TEST(NetRemote, AgentCallIsSignedAndVerifiable) {
  const std::string key = "the-management-key";
  net::ServerOptions o;
  o.address = "127.0.0.1";
  o.port = 0;
  net::HttpServer server(o, [&](net::Exchange& ex) {
    net::ParsedAuth a;
    std::string error;
    int status = 200;
    std::string body = "{\"ok\":true}";
    if (!net::parse_auth_header(ex.header("authorization"), &a, &error)) {
      status = 401;
      body = error;
    } else if (!net::verify_signature(key, ex.method(), ex.target(), ex.body(), a)) {
      status = 401;
      body = "bad signature";
    } else if (std::abs(int64_t(std::time(nullptr)) - a.ts) > 300) {
      status = 401;
      body = "skew";
    } else if (ex.header("content-type") != "application/zip" && ex.method() == "PUT") {
      status = 400;
      body = "content type";
    }
    net::ResponseView r;
    r.status = status;
    r.content_type = "application/json";
    r.body = body;
    ex.respond(r);
  });
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;

  AgentTarget t;
  ASSERT_TRUE(parse_agent_target("127.0.0.1:" + std::to_string(server.port()), key, &t, &error));
  AgentReply r =
      agent_call(t, "PUT", "/v1/configuration?dry=1", "PK\x03\x04zip", "application/zip");
  EXPECT_EQ(r.status, 200) << r.body << r.error;
  r = agent_call(t, "GET", "/v1/status", "", "");
  EXPECT_EQ(r.status, 200) << r.body << r.error;

  AgentTarget wrong = t;
  wrong.key = "another-key";
  r = agent_call(wrong, "GET", "/v1/status", "", "");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body, "bad signature");

  AgentTarget keyless = t;
  keyless.key.clear();
  r = agent_call(keyless, "GET", "/v1/status", "", "");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("no management key"), std::string::npos);
  server.drain(std::chrono::seconds(1));
}

}  // namespace
}  // namespace cap::cli

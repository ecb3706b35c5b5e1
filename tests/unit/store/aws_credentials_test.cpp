// AWS credential sources (src/store/aws_credentials.cpp): environment, shared credentials
// file, the container (ECS task role) endpoint with its token and refresh before expiry;
// S3 options from the environment, and the S3 client's retries (src/store/s3_client.cpp)
// against a local HTTP server that answers 503 first.
#include "store/aws_credentials.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>

#include "net/http_client.h"
#include "net/http_server.h"
#include "net/net_support.h"
#include "store/s3_client.h"

namespace cap::store {
namespace {

using Env = std::map<std::string, std::string>;

GetEnv env_of(const Env& e) {
  return [e](std::string_view name) -> std::optional<std::string> {
    auto it = e.find(std::string(name));
    if (it == e.end()) return std::nullopt;
    return it->second;
  };
}

std::string temp_dir() {
  auto d = std::filesystem::temp_directory_path() /
           ("cap-creds-" + std::to_string(::getpid()) + "-" + std::to_string(rand()));
  std::filesystem::create_directories(d);
  return d.string();
}

// A local container credentials endpoint: answers with keys that expire at `expires`
// (ISO 8601), and counts the calls; 401 without the right token.
class CredentialsEndpoint {
 public:
  explicit CredentialsEndpoint(std::string token) : token_(std::move(token)) {
    net::ServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    server_ = std::make_unique<net::HttpServer>(o, [this](net::Exchange& ex) {
      ++calls;
      last_target = std::string(ex.target());
      net::ResponseView r;
      std::string body;
      if (std::string(ex.header("authorization")) != token_) {
        r.status = 401;
      } else {
        body = R"({"AccessKeyId":"AKIA)" + std::to_string(calls.load()) +
               R"(","SecretAccessKey":"secret","Token":"session","Expiration":")" + expires +
               R"("})";
        r.content_type = "application/json";
      }
      r.body = body;
      ex.respond(r);
    });
    std::string error;
    EXPECT_TRUE(server_->start(&error)) << error;
  }
  ~CredentialsEndpoint() { server_->drain(std::chrono::seconds(2)); }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + path;
  }

  std::atomic<int> calls{0};
  std::string expires = "2030-01-01T00:00:00Z";
  std::string last_target;

 private:
  std::string token_;
  std::unique_ptr<net::HttpServer> server_;
};

TEST(AwsCredentials, EnvironmentComesFirst) {
  net::HttpClientPool http;
  AwsCredentialsProvider p(http,
                           env_of({{"AWS_ACCESS_KEY_ID", "AKIAENV"},
                                   {"AWS_SECRET_ACCESS_KEY", "envsecret"},
                                   {"AWS_SESSION_TOKEN", "tok"},
                                   {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/"}}));
  net::sigv4::Credentials c;
  std::string error;
  ASSERT_TRUE(p.get(&c, &error)) << error;
  EXPECT_EQ(c.access_key_id, "AKIAENV");
  EXPECT_EQ(c.secret_access_key, "envsecret");
  EXPECT_EQ(c.session_token, "tok");
  EXPECT_EQ(p.source(), "environment");

  AwsCredentialsProvider half(http, env_of({{"AWS_ACCESS_KEY_ID", "AKIAENV"}}));
  EXPECT_FALSE(half.get(&c, &error));
  EXPECT_NE(error.find("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), std::string::npos);
}

TEST(AwsCredentials, SharedCredentialsFileWithProfiles) {
  std::string dir = temp_dir();
  std::filesystem::create_directories(dir + "/.aws");
  std::ofstream(dir + "/.aws/credentials")
      << "# comment\n[default]\naws_access_key_id = AKIADEF\n"
         "aws_secret_access_key = defsecret\n\n[ops]\n"
         "aws_access_key_id=AKIAOPS\naws_secret_access_key=ops\n"
         "aws_session_token = opstoken\n";
  net::HttpClientPool http;
  net::sigv4::Credentials c;
  std::string error;
  AwsCredentialsProvider def(http, env_of({{"HOME", dir}}));
  ASSERT_TRUE(def.get(&c, &error)) << error;
  EXPECT_EQ(c.access_key_id, "AKIADEF");
  EXPECT_EQ(c.secret_access_key, "defsecret");
  EXPECT_NE(def.source().find("(profile default)"), std::string::npos);

  AwsCredentialsProvider ops(http, env_of({{"HOME", dir}, {"AWS_PROFILE", "ops"}}));
  ASSERT_TRUE(ops.get(&c, &error)) << error;
  EXPECT_EQ(c.access_key_id, "AKIAOPS");
  EXPECT_EQ(c.session_token, "opstoken");

  AwsCredentialsProvider missing(http, env_of({{"HOME", dir}, {"AWS_PROFILE", "nope"}}));
  EXPECT_FALSE(missing.get(&c, &error));
  EXPECT_NE(error.find("has no profile [nope]"), std::string::npos);

  AwsCredentialsProvider explicit_file(http,
                                       env_of({{"AWS_SHARED_CREDENTIALS_FILE", dir + "/absent"}}));
  EXPECT_FALSE(explicit_file.get(&c, &error));
  EXPECT_NE(error.find("cannot be read"), std::string::npos);

  AwsCredentialsProvider none(http, env_of({{"HOME", dir + "/empty"}}));
  EXPECT_FALSE(none.get(&c, &error));
  EXPECT_NE(error.find("no AWS credentials"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(AwsCredentials, ContainerEndpointWithTokenAndRefreshBeforeExpiry) {
  CredentialsEndpoint endpoint("the-token");
  int64_t now = 0;
  ASSERT_TRUE(parse_iso8601_ms("2029-12-31T23:00:00Z", &now));
  net::HttpClientPool http;
  AwsCredentialsProvider p(http,
                           env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url("/creds")},
                                   {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "the-token"},
                                   {"HOME", "/nonexistent"}}),
                           [&] { return now; });
  net::sigv4::Credentials c;
  std::string error;
  ASSERT_TRUE(p.get(&c, &error)) << error;
  EXPECT_EQ(c.access_key_id, "AKIA1");
  EXPECT_EQ(c.session_token, "session");
  EXPECT_EQ(endpoint.last_target, "/creds");
  EXPECT_EQ(p.source(), "container credentials endpoint");
  // An hour before expiry: cached.
  ASSERT_TRUE(p.get(&c, &error));
  EXPECT_EQ(endpoint.calls.load(), 1);
  // Four minutes before expiry (inside the five-minute margin): fetched again.
  ASSERT_TRUE(parse_iso8601_ms("2029-12-31T23:56:00Z", &now));
  ASSERT_TRUE(p.get(&c, &error));
  EXPECT_EQ(endpoint.calls.load(), 2);
  EXPECT_EQ(c.access_key_id, "AKIA2");
}

TEST(AwsCredentials, ContainerEndpointTokenFileAndRefusals) {
  CredentialsEndpoint endpoint("file-token");
  std::string dir = temp_dir();
  std::ofstream(dir + "/token") << "file-token\n";
  net::HttpClientPool http;
  net::sigv4::Credentials c;
  std::string error;
  AwsCredentialsProvider p(http,
                           env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url("/c")},
                                   {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", dir + "/token"}}));
  ASSERT_TRUE(p.get(&c, &error)) << error;

  AwsCredentialsProvider wrong(http,
                               env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url("/c")},
                                       {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong"}}));
  EXPECT_FALSE(wrong.get(&c, &error));
  EXPECT_NE(error.find("answered HTTP 401"), std::string::npos);
  EXPECT_EQ(error.find("wrong"), std::string::npos);  // the token is not echoed

  AwsCredentialsProvider remote_http(
      http, env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds"}}));
  EXPECT_FALSE(remote_http.get(&c, &error));
  EXPECT_NE(error.find("only to loopback"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// The ECS agent's endpoint is at 169.254.170.2, which tests never call: a recording client
// shows the URL and header the provider uses for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
class RecordingClient : public HttpClient {
 public:
  HttpReply call(const HttpCall& c) override {
    calls.push_back(c);
    HttpReply r;
    r.status = 200;
    r.body = R"({"AccessKeyId":"AKIAROLE","SecretAccessKey":"s","Token":"t",)"
             R"("Expiration":"2030-01-01T00:00:00Z"})";
    return r;
  }
  std::vector<HttpCall> calls;
};

TEST(AwsCredentials, RelativeUriGoesToTheEcsEndpoint) {
  RecordingClient http;
  AwsCredentialsProvider p(
      http, env_of({{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/0c1a2b3c"},
                    {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok"}}));
  net::sigv4::Credentials c;
  std::string error;
  ASSERT_TRUE(p.get(&c, &error)) << error;
  EXPECT_EQ(c.access_key_id, "AKIAROLE");
  ASSERT_EQ(http.calls.size(), 1u);
  EXPECT_EQ(http.calls[0].url, "http://169.254.170.2/v2/credentials/0c1a2b3c");
  bool token = false;
  for (const auto& [k, v] : http.calls[0].headers)
    token = token || (k == "Authorization" && v == "tok");
  EXPECT_TRUE(token);
}

TEST(AwsCredentials, Iso8601) {
  int64_t ms = 0;
  ASSERT_TRUE(parse_iso8601_ms("1970-01-01T00:00:01Z", &ms));
  EXPECT_EQ(ms, 1000);
  ASSERT_TRUE(parse_iso8601_ms("1970-01-01T00:00:01.25Z", &ms));
  EXPECT_EQ(ms, 1250);
  EXPECT_FALSE(parse_iso8601_ms("yesterday", &ms));
  EXPECT_FALSE(parse_iso8601_ms("1970-01-01T00:00:01", &ms));
}

TEST(S3Options, FromEnvironment) {
  S3Options o;
  std::string error;
  ASSERT_TRUE(S3Options::from_environment(env_of({}), &o, &error));
  EXPECT_EQ(o.region, "us-east-1");
  EXPECT_EQ(o.endpoint, "");
  ASSERT_TRUE(S3Options::from_environment(
      env_of({{"AWS_DEFAULT_REGION", "eu-west-3"}, {"AWS_ENDPOINT_URL", "http://h:9000/"}}), &o,
      &error));
  EXPECT_EQ(o.region, "eu-west-3");
  EXPECT_EQ(o.endpoint, "http://h:9000");
  ASSERT_TRUE(S3Options::from_environment(env_of({{"AWS_REGION", "ap-south-1"},
                                                  {"AWS_DEFAULT_REGION", "x"},
                                                  {"AWS_ENDPOINT_URL", "http://generic:1"},
                                                  {"AWS_ENDPOINT_URL_S3", "https://s3only:2"},
                                                  {"CAP_S3_PART_SIZE_MB", "6"}}),
                                          &o, &error));
  EXPECT_EQ(o.region, "ap-south-1");
  EXPECT_EQ(o.endpoint, "https://s3only:2");
  EXPECT_EQ(o.part_size, 6u << 20);
  EXPECT_FALSE(
      S3Options::from_environment(env_of({{"AWS_ENDPOINT_URL_S3", "ftp://x"}}), &o, &error));
  EXPECT_NE(error.find("must be http[s]://host[:port]"), std::string::npos);
  EXPECT_FALSE(S3Options::from_environment(env_of({{"CAP_S3_PART_SIZE_MB", "4"}}), &o, &error));
  EXPECT_NE(error.find("at least 5 MiB"), std::string::npos);
}

TEST(S3Client, RetriesServerErrorsAndThrottlingThenGivesUp) {
  std::atomic<int> calls{0};
  std::atomic<int> fail_first{2};
  net::ServerOptions so;
  so.address = "127.0.0.1";
  so.port = 0;
  net::HttpServer server(so, [&](net::Exchange& ex) {
    int n = ++calls;
    net::ResponseView r;
    std::string body;
    if (n <= fail_first) {
      r.status = n % 2 ? 503 : 400;
      body = n % 2 ? "<Error><Code>ServiceUnavailable</Code></Error>"
                   : "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";
    } else if (ex.header("authorization").starts_with("AWS4-HMAC-SHA256 Credential=AKIATEST/")) {
      body = "object bytes";
    } else {
      r.status = 403;
    }
    r.body = body;
    ex.respond(r);
  });
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;
  net::HttpClientPool http;
  AwsCredentialsProvider creds(
      http, env_of({{"AWS_ACCESS_KEY_ID", "AKIATEST"}, {"AWS_SECRET_ACCESS_KEY", "s"}}));
  S3Options o;
  o.endpoint = "http://127.0.0.1:" + std::to_string(server.port());
  o.attempts = 3;
  S3Client client(o, creds);
  std::string data;
  S3Failure kind;
  ASSERT_TRUE(client.get("bucket", "a key", &data, &error, &kind)) << error;
  EXPECT_EQ(data, "object bytes");
  EXPECT_EQ(calls.load(), 3);

  calls = 0;
  fail_first = 100;
  EXPECT_FALSE(client.get("bucket", "k", &data, &error, &kind));
  EXPECT_EQ(calls.load(), 3);  // o.attempts
  EXPECT_EQ(kind, S3Failure::Other);
  EXPECT_NE(error.find("S3 answered HTTP 503 (ServiceUnavailable)"), std::string::npos);
  server.drain(std::chrono::seconds(2));
}

TEST(S3Client, VerifiesTheEndpointsTlsCertificate) {
  net::test::TestCert cert = net::test::make_test_cert();
  net::ServerOptions so;
  so.address = "127.0.0.1";
  so.port = 0;
  so.tls_cert_file = cert.cert_file;
  so.tls_key_file = cert.key_file;
  net::HttpServer server(so, [](net::Exchange& ex) {
    net::ResponseView r;
    r.body = "over tls";
    ex.respond(r);
  });
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;
  net::HttpClientPool http;
  AwsCredentialsProvider creds(
      http, env_of({{"AWS_ACCESS_KEY_ID", "AKIATEST"}, {"AWS_SECRET_ACCESS_KEY", "s"}}));
  S3Options o;
  std::string endpoint = "https://127.0.0.1:" + std::to_string(server.port());
  ASSERT_TRUE(S3Options::from_environment(env_of({{"AWS_ENDPOINT_URL_S3", endpoint}}), &o, &error));
  o.attempts = 1;
  std::string data;
  S3Failure kind;
  {
    S3Client untrusted(o, creds);  // a self-signed certificate is refused
    EXPECT_FALSE(untrusted.get("bucket", "k", &data, &error, &kind));
    EXPECT_EQ(kind, S3Failure::Unreachable);
    EXPECT_NE(error.find("cannot reach the S3 endpoint " + endpoint), std::string::npos) << error;
  }
  ASSERT_TRUE(S3Options::from_environment(
      env_of({{"AWS_ENDPOINT_URL_S3", endpoint}, {"AWS_CA_BUNDLE", cert.cert_file}}), &o, &error));
  o.attempts = 1;
  S3Client trusted(o, creds);  // AWS_CA_BUNDLE trusts it
  ASSERT_TRUE(trusted.get("bucket", "k", &data, &error, &kind)) << error;
  EXPECT_EQ(data, "over tls");
  server.drain(std::chrono::seconds(2));
  std::filesystem::remove_all(cert.dir);
}

TEST(S3Client, XmlText) {
  EXPECT_EQ(xml_text("<a><Key>x &amp; y&#47;&#x263A;</Key></a>", "Key"), "x & y/\xE2\x98\xBA");
  EXPECT_EQ(xml_text("<a></a>", "Key"), "");
}

}  // namespace
}  // namespace cap::store

// AWS Signature V4 (src/net/sigv4.cpp), checked two ways:
//  - AWS's published SigV4 test suite (the aws-sig-v4-test-suite request / canonical
//    request / string-to-sign / authorization sets, credentials AKIDEXAMPLE, 2015-08-30
//    12:36:00 UTC, us-east-1, service "service"), typed in below;
//  - botocore (the AWS SDK for Python, in the machine's Python) as an oracle: the same S3
//    requests with awkward keys are signed by both and the Authorization headers compared.
#include "net/sigv4.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

namespace cap::net::sigv4 {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

const Credentials kSuiteCreds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
const Scope kSuiteScope{"us-east-1", "service"};
const std::string kEmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::chrono::system_clock::time_point suite_time() {
  std::tm tm{};
  tm.tm_year = 2015 - 1900;
  tm.tm_mon = 7;
  tm.tm_mday = 30;
  tm.tm_hour = 12;
  tm.tm_min = 36;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

struct SuiteCase {
  const char* name;
  const char* method;
  const char* path;
  Pairs query;
  Pairs headers;  // besides Host and X-Amz-Date
  const char* body;
  const char* creq;
  const char* sts_hash;  // last line of the string to sign
  const char* signed_headers;
  const char* signature;
};

std::string suite_authorization(const SuiteCase& c) {
  return std::string(
             "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
             "aws4_request, SignedHeaders=") +
         c.signed_headers + ", Signature=" + c.signature;
}

const std::vector<SuiteCase>& suite() {
  static const std::vector<SuiteCase> cases = {
      {"get-vanilla",
       "GET",
       "/",
       {},
       {},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-header-key-duplicate",
       "GET",
       "/",
       {},
       {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
       "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n",
       "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
       "host;my-header1;x-amz-date",
       "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
      {"get-header-value-order",
       "GET",
       "/",
       {},
       {{"My-Header1", "value4"},
        {"My-Header1", "value1"},
        {"My-Header1", "value3"},
        {"My-Header1", "value2"}},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\n"
       "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n",
       "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
       "host;my-header1;x-amz-date",
       "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
      {"get-header-value-trim",
       "GET",
       "/",
       {},
       {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
       "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n",
       "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
       "host;my-header1;my-header2;x-amz-date",
       "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
      {"get-unreserved",
       "GET",
       "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       {},
       {},
       "",
       "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\n"
       "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
       "host;x-amz-date",
       "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
      {"get-utf8",
       "GET",
       "/\xE1\x88\xB4",
       {},
       {},
       "",
       "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
       "host;x-amz-date",
       "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
      {"get-vanilla-empty-query-key",
       "GET",
       "/",
       {{"Param1", "value1"}},
       {},
       "",
       "GET\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
       "host;x-amz-date",
       "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
      {"get-vanilla-query-order-key",
       "GET",
       "/",
       {{"Param1", "value2"}, {"Param1", "Value1"}},
       {},
       "",
       "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
       "host;x-amz-date",
       "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
      {"get-vanilla-query-order-key-case",
       "GET",
       "/",
       {{"Param2", "value2"}, {"Param1", "value1"}},
       {},
       "",
       "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
       "host;x-amz-date",
       "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
      {"get-vanilla-query-order-value",
       "GET",
       "/",
       {{"Param1", "value2"}, {"Param1", "value1"}},
       {},
       "",
       "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
       "host;x-amz-date",
       "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
      {"get-vanilla-query-unreserved",
       "GET",
       "/",
       {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
         "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}},
       {},
       "",
       "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n"
       "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
       "host;x-amz-date",
       "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
      {"get-vanilla-utf8-query",
       "GET",
       "/",
       {{"\xE1\x88\xB4", "bar"}},
       {},
       "",
       "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
       "host;x-amz-date",
       "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
      {"post-header-key-sort",
       "POST",
       "/",
       {},
       {{"My-Header1", "value1"}},
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n"
       "\nhost;my-header1;x-amz-date\n",
       "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
       "host;my-header1;x-amz-date",
       "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
      {"post-header-value-case",
       "POST",
       "/",
       {},
       {{"My-Header1", "VALUE1"}},
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n"
       "\nhost;my-header1;x-amz-date\n",
       "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
       "host;my-header1;x-amz-date",
       "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
      {"post-vanilla",
       "POST",
       "/",
       {},
       {},
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
       "host;x-amz-date",
       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"post-vanilla-query",
       "POST",
       "/",
       {{"Param1", "value1"}},
       {},
       "",
       "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
       "host;x-amz-date",
       "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
      // The published set's canonical request: charset=utf8, Content-Length not signed.
      {"post-x-www-form-urlencoded-parameters",
       "POST",
       "/",
       {},
       {{"Content-Type", "application/x-www-form-urlencoded; charset=utf8"}},
       "Param1=value1",
       "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
       "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "content-type;host;x-amz-date\n",
       "2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
       "content-type;host;x-amz-date",
       "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
      // Path normalisation (generic services only).
      {"get-relative",
       "GET",
       "/example/..",
       {},
       {},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-relative-relative",
       "GET",
       "/example1/example2/../..",
       {},
       {},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash",
       "GET",
       "//",
       {},
       {},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash-dot-slash",
       "GET",
       "/./",
       {},
       {},
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash-pointless-dot",
       "GET",
       "/./example",
       {},
       {},
       "",
       "GET\n/example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
       "host;x-amz-date",
       "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
      {"get-slashes",
       "GET",
       "//example//",
       {},
       {},
       "",
       "GET\n/example/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "cb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
       "host;x-amz-date",
       "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
      {"get-space",
       "GET",
       "/example space/",
       {},
       {},
       "",
       "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\n",
       "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
       "host;x-amz-date",
       "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
  };
  return cases;
}

TEST(SigV4, AwsTestSuite) {
  for (const auto& c : suite()) {
    SCOPED_TRACE(c.name);
    Request r;
    r.method = c.method;
    r.host = "example.amazonaws.com";
    r.path = c.path;
    r.query = c.query;
    r.headers = c.headers;
    r.body = c.body;
    Signed s = sign_v4(r, kSuiteCreds, kSuiteScope, suite_time());
    const std::string body_hash = payload_hash(c.body);
    EXPECT_EQ(s.canonical_request, std::string(c.creq) + body_hash);
    EXPECT_EQ(s.string_to_sign,
              std::string("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
                          "aws4_request\n") +
                  c.sts_hash);
    EXPECT_EQ(s.signature, c.signature);
    EXPECT_EQ(s.authorization, suite_authorization(c));
  }
}

const std::string kSuiteToken =
    "AQoDYXdzEPT//////////"
    "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIe"
    "oIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0w"
    "q5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDryp"
    "NC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

TEST(SigV4, AwsTestSuiteSessionToken) {
  Credentials creds = kSuiteCreds;
  creds.session_token = kSuiteToken;
  Request r;
  r.method = "POST";
  r.host = "example.amazonaws.com";
  r.path = "/";
  // post-sts-header-before: the token is signed.
  Signed s = sign_v4(r, creds, kSuiteScope, suite_time());
  EXPECT_EQ(s.canonical_request,
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
            "x-amz-security-token:" +
                kSuiteToken + "\n\nhost;x-amz-date;x-amz-security-token\n" + kEmptyHash);
  EXPECT_EQ(s.signature, "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
  // post-sts-header-after: the token is sent but not signed.
  Options after;
  after.sign_security_token = false;
  Signed t = sign_v4(r, creds, kSuiteScope, suite_time(), after);
  EXPECT_EQ(t.signature, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
  bool token_sent = false;
  for (const auto& [k, v] : t.headers)
    if (k == "x-amz-security-token") token_sent = v == kSuiteToken;
  EXPECT_TRUE(token_sent);
}

TEST(SigV4, UriEncoding) {
  EXPECT_EQ(uri_encode("a b+c=d~e/f", true), "a%20b%2Bc%3Dd~e%2Ff");
  EXPECT_EQ(uri_encode("a b+c=d~e/f", false), "a%20b%2Bc%3Dd~e/f");
  EXPECT_EQ(uri_encode("\xC3\xA9*"), "%C3%A9%2A");
  EXPECT_EQ(amz_date(suite_time()), "20150830T123600Z");
}

TEST(SigV4, S3SignsThePathAsSentAndTheContentHash) {
  Request r;
  r.method = "PUT";
  r.host = "127.0.0.1:9000";
  r.path = "/bucket/" + uri_encode("a/../b//c d", false);
  r.body = "hello";
  Signed s = sign_v4(r, kSuiteCreds, {"eu-west-1", "s3"}, suite_time(), Options::s3());
  // No normalisation, no second encoding.
  EXPECT_NE(s.canonical_request.find("\n/bucket/a/../b//c%20d\n"), std::string::npos);
  EXPECT_NE(s.canonical_request.find("x-amz-content-sha256:" + payload_hash("hello")),
            std::string::npos);
  EXPECT_NE(s.authorization.find("SignedHeaders=host;x-amz-content-sha256;x-amz-date,"),
            std::string::npos);
  // The generic rule double-encodes an encoded path.
  Signed g = sign_v4(r, kSuiteCreds, {"eu-west-1", "s3"}, suite_time());
  EXPECT_NE(g.canonical_request.find("\n/bucket/b/c%2520d\n"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// botocore as an oracle

std::string find_python_with_botocore() {
  std::vector<std::string> candidates;
  if (const char* p = std::getenv("CAP_PYTHON")) candidates.push_back(p);
  candidates.push_back("/root/.pyenv/shims/python3");
  candidates.push_back("python3");
  for (const auto& py : candidates) {
    std::string cmd = py + " -c 'import botocore' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

struct OracleCase {
  std::string service, method, url;  // url: path already encoded
  Pairs params;
  Pairs headers;
  std::string body;
};
struct OracleAnswer {
  std::chrono::system_clock::time_point when;
  std::string authorization;
};

std::string hex_of(const std::string& s) {
  static const char k[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(k[c >> 4]);
    out.push_back(k[c & 15]);
  }
  return out;
}

/// Signs `cases` with botocore (tests/support/botocore_sign.py); one answer per case.
std::vector<OracleAnswer> botocore_sign(const Credentials& creds, const std::string& region,
                                        const std::vector<OracleCase>& cases) {
  const std::string python = find_python_with_botocore();
  EXPECT_FALSE(python.empty())
      << "no Python with botocore found (tried $CAP_PYTHON, /root/.pyenv/shims/python3, "
         "python3); it comes with the machine's pyenv Python (moto, boto3, botocore)";
  if (python.empty()) return {};
  boost::json::object doc;
  doc["access_key"] = creds.access_key_id;
  doc["secret_key"] = creds.secret_access_key;
  doc["token"] = creds.session_token;
  doc["region"] = region;
  boost::json::array reqs;
  for (const auto& c : cases) {
    boost::json::object r;
    r["service"] = c.service;
    r["method"] = c.method;
    r["url"] = c.url;
    boost::json::array params, headers;
    for (const auto& [k, v] : c.params) params.push_back(boost::json::array{k, v});
    for (const auto& [k, v] : c.headers) headers.push_back(boost::json::array{k, v});
    r["params"] = params;
    r["headers"] = headers;
    r["body_hex"] = hex_of(c.body);
    reqs.push_back(r);
  }
  doc["requests"] = reqs;
  auto dir = std::filesystem::temp_directory_path() /
             ("sigv4-oracle-" + std::to_string(::getpid()) + "-" + std::to_string(rand()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "in.json") << boost::json::serialize(doc);
  const std::string script = std::string(CAP_SOURCE_DIR) + "/tests/support/botocore_sign.py";
  const std::string cmd = python + " " + script + " < " + (dir / "in.json").string() + " > " +
                          (dir / "out.jsonl").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::vector<OracleAnswer> out;
  std::ifstream in(dir / "out.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto got = boost::json::parse(line).as_object();
    std::tm tm{};
    std::istringstream ds(std::string(got["amz_date"].as_string()));
    ds >> std::get_time(&tm, "%Y%m%dT%H%M%SZ");
    out.push_back({std::chrono::system_clock::from_time_t(timegm(&tm)),
                   std::string(got["authorization"].as_string())});
  }
  std::filesystem::remove_all(dir);
  EXPECT_EQ(out.size(), cases.size());
  return out;
}

TEST(SigV4, MatchesBotocoreOnAwkwardS3Requests) {
  struct Case {
    std::string method, key;
    Pairs params;
    Pairs headers;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"GET", "snapshots/plain.zip", {}, {}, ""},
      {"PUT",
       "with space/and+plus=equals~tilde.zip",
       {},
       {{"Content-Type", "application/zip"}},
       "zip bytes"},
      {"GET", "unicode/\xC3\xA9t\xC3\xA9/\xE2\x98\x83 snow.zip", {}, {}, ""},
      {"HEAD", "a//double/./dot/../key", {}, {}, ""},
      {"GET",
       "",
       {{"list-type", "2"}, {"prefix", "snap shots/+=~\xC3\xA9"}, {"delimiter", "/"}},
       {},
       ""},
      {"POST", "big object.zip", {{"uploads", ""}}, {}, ""},
      {"PUT",
       "big object.zip",
       {{"partNumber", "2"}, {"uploadId", "abc/def+g=="}},
       {},
       std::string(1000, 'x')},
      {"PUT",
       "meta.zip",
       {},
       {{"x-amz-meta-note", "  two   spaces  "}, {"Content-MD5", "x=="}},
       "body"},
  };
  const Credentials creds{"AKIAEXAMPLEKEY", "secret/with+special=chars", "session/token+="};
  std::vector<OracleCase> oracle;
  for (const auto& c : cases)
    oracle.push_back({"s3", c.method, "http://127.0.0.1:9000/my-bucket/" + uri_encode(c.key, false),
                      c.params, c.headers, c.body});
  auto answers = botocore_sign(creds, "eu-central-1", oracle);
  ASSERT_EQ(answers.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    SCOPED_TRACE(c.method + " " + c.key);
    Request r;
    r.method = c.method;
    r.host = "127.0.0.1:9000";
    r.path = "/my-bucket/" + uri_encode(c.key, false);
    r.query = c.params;
    r.headers = c.headers;
    r.body = c.body;
    Signed s = sign_v4(r, creds, {"eu-central-1", "s3"}, answers[i].when, Options::s3());
    EXPECT_EQ(s.authorization, answers[i].authorization);
  }
}

// sign_call on other services (the generic rules: normalised, double-encoded paths), as
// Bedrock, ECS and ELBv2 calls will use it.
TEST(SigV4, SignCallMatchesBotocoreForOtherServices) {
  const Credentials creds{"AKIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "tok/en="};
  struct Case {
    std::string service, method, base, path;  // path encoded once, as sent
    Pairs params;
    Pairs headers;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"bedrock",
       "POST",
       "https://bedrock-runtime.us-east-1.amazonaws.com",
       "/model/" + uri_encode("anthropic.claude-3-haiku-20240307-v1:0") + "/invoke",
       {},
       {{"Content-Type", "application/json"}, {"Accept", "application/json"}},
       R"({"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[]})"},
      {"ecs",
       "POST",
       "https://ecs.us-east-1.amazonaws.com",
       "/",
       {},
       {{"Content-Type", "application/x-amz-json-1.1"},
        {"X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DescribeServices"}},
       R"({"cluster":"cap","services":["cap-svc"]})"},
      {"elasticloadbalancing",
       "GET",
       "https://elasticloadbalancing.us-east-1.amazonaws.com",
       "/",
       {{"Version", "2015-12-01"},
        {"Action", "DescribeTargetHealth"},
        {"TargetGroupArn", "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/cap tg/abc"}},
       {},
       ""},
  };
  std::vector<OracleCase> oracle;
  for (const auto& c : cases)
    oracle.push_back({c.service, c.method, c.base + c.path, c.params, c.headers, c.body});
  auto answers = botocore_sign(creds, "us-east-1", oracle);
  ASSERT_EQ(answers.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    SCOPED_TRACE(c.service);
    HttpCall call;
    call.method = c.method;
    call.url = c.base + c.path;
    if (!c.params.empty()) {
      std::string q;
      for (const auto& [k, v] : c.params)
        q += (q.empty() ? "?" : "&") + uri_encode(k) + "=" + uri_encode(v);
      call.url += q;
    }
    call.headers = c.headers;
    call.headers.emplace_back("User-Agent", "cap/test");  // not signed
    call.body = c.body;
    std::string error;
    ASSERT_TRUE(sign_call(&call, creds, {"us-east-1", c.service}, answers[i].when, {}, &error))
        << error;
    std::string authorization;
    for (const auto& [k, v] : call.headers)
      if (k == "authorization") authorization = v;
    EXPECT_EQ(authorization, answers[i].authorization);
  }
  HttpCall bad;
  bad.url = "not a url";
  std::string error;
  EXPECT_FALSE(sign_call(&bad, creds, {"us-east-1", "ecs"}, answers[0].when, {}, &error));
  EXPECT_NE(error.find("absolute http or https URL"), std::string::npos);
}

}  // namespace
}  // namespace cap::net::sigv4

// Management request signing (src/net/signing.cpp) and the CIDR allow-list
// (src/net/cidr.cpp). Expected digests were computed independently with Python's hashlib
// and hmac modules, e.g.
//   python3 -c "import hmac,hashlib; b=b'{\"count\": 20}'; s='POST\n/v1/trace?x=1\n1700000000\n'
//     '0123456789abcdef0123456789abcdef\n'+hashlib.sha256(b).hexdigest();
//     print(hmac.new(b's3cret-key', s.encode(), hashlib.sha256).hexdigest())"
#include "net/signing.h"

#include <gtest/gtest.h>

#include <set>

#include "net/cidr.h"

namespace cap::net {
namespace {

TEST(NetSigning, Sha256AndHmacMatchKnownValues) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hmac_sha256_hex("key", "The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
  EXPECT_EQ(hmac_sha256_hex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(NetSigning, SignsTheDesignedString) {
  const std::string body = "{\"count\": 20}";
  const std::string nonce = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(string_to_sign("POST", "/v1/trace?x=1", body, 1700000000, nonce),
            "POST\n/v1/trace?x=1\n1700000000\n0123456789abcdef0123456789abcdef\n"
            "2bac7d3275fc0595485bddde192e12b4eceaf0d9d5ebaa5293695e9ee532563d");
  EXPECT_EQ(sign_request("s3cret-key", "POST", "/v1/trace?x=1", body, 1700000000, nonce),
            "CAP-HMAC-SHA256 ts=1700000000, nonce=0123456789abcdef0123456789abcdef, "
            "sig=a612d5a362da7b7b4b19bbea04a05e0dbec3fdda49e16425059eaaab36a7e74c");
  EXPECT_EQ(request_signature("k", "GET", "/v1/status", "", 1700000123, "nonce-123_ABC"),
            "b73844bdd07e9de3b1e7217e24aa966138557e04b9b6753f5e72e2d8226012f2");
}

TEST(NetSigning, ParsesWhatItSignsAndVerifies) {
  std::string h = sign_request("key", "PUT", "/v1/mode", "proxy", 1700000000, random_nonce());
  ParsedAuth a;
  std::string error;
  ASSERT_TRUE(parse_auth_header(h, &a, &error)) << error;
  EXPECT_EQ(a.ts, 1700000000);
  EXPECT_EQ(a.nonce.size(), 32u);
  EXPECT_TRUE(verify_signature("key", "PUT", "/v1/mode", "proxy", a));
  EXPECT_FALSE(verify_signature("other", "PUT", "/v1/mode", "proxy", a));
  EXPECT_FALSE(verify_signature("key", "PUT", "/v1/mode", "endpoint", a));
  EXPECT_FALSE(verify_signature("key", "POST", "/v1/mode", "proxy", a));
  EXPECT_FALSE(verify_signature("key", "PUT", "/v1/mode?x", "proxy", a));
  ParsedAuth later = a;
  later.ts += 1;
  EXPECT_FALSE(verify_signature("key", "PUT", "/v1/mode", "proxy", later));

  // Any order, spaces optional.
  ASSERT_TRUE(parse_auth_header(
      "CAP-HMAC-SHA256 sig=" + a.sig + ",nonce=" + a.nonce + ",  ts=1700000000", &a, &error))
      << error;
  EXPECT_TRUE(verify_signature("key", "PUT", "/v1/mode", "proxy", a));
}

TEST(NetSigning, NoncesAreRandomHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string n = random_nonce();
    EXPECT_EQ(n.size(), 32u);
    EXPECT_EQ(n.find_first_not_of("0123456789abcdef"), std::string::npos);
    seen.insert(n);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(NetSigning, BadAuthorizationHeadersAreRefusedWithAReason) {
  const std::string sig(64, 'a');
  const std::string good_nonce = "abcdefgh";
  struct Case {
    std::string header, reason;
  };
  std::vector<Case> cases = {
      {"", "scheme"},
      {"Bearer abc", "scheme"},
      {"CAP-HMAC-SHA256X ts=1, nonce=abcdefgh, sig=" + sig, "scheme"},
      {"CAP-HMAC-SHA256", "no ts"},
      {"CAP-HMAC-SHA256 nonce=abcdefgh, sig=" + sig, "no ts"},
      {"CAP-HMAC-SHA256 ts=1, sig=" + sig, "no nonce"},
      {"CAP-HMAC-SHA256 ts=1, nonce=abcdefgh", "no sig"},
      {"CAP-HMAC-SHA256 ts=1, ts=2, nonce=abcdefgh, sig=" + sig, "ts appears twice"},
      {"CAP-HMAC-SHA256 ts=-5, nonce=abcdefgh, sig=" + sig, "ts is not"},
      {"CAP-HMAC-SHA256 ts=0123, nonce=abcdefgh, sig=" + sig, "ts is not"},
      {"CAP-HMAC-SHA256 ts=12x, nonce=abcdefgh, sig=" + sig, "ts is not"},
      {"CAP-HMAC-SHA256 ts=1, nonce=short, sig=" + sig, "8 to 128"},
      {"CAP-HMAC-SHA256 ts=1, nonce=abc/defgh, sig=" + sig, "nonce may hold"},
      {"CAP-HMAC-SHA256 ts=1, nonce=abcdefgh, sig=abc", "64 lower-case hex"},
      {"CAP-HMAC-SHA256 ts=1, nonce=abcdefgh, sig=" + std::string(64, 'G'), "64 lower-case hex"},
      {"CAP-HMAC-SHA256 ts=1, nonce=abcdefgh, sig=" + sig + ", extra=1", "unknown field"},
      {"CAP-HMAC-SHA256 ts=1,, nonce=abcdefgh, sig=" + sig, "empty field"},
      {"CAP-HMAC-SHA256 ts=1, nonce, sig=" + sig, "no '='"},
  };
  for (const auto& c : cases) {
    ParsedAuth a;
    a.ts = 42;
    std::string error;
    EXPECT_FALSE(parse_auth_header(c.header, &a, &error)) << c.header;
    EXPECT_NE(error.find(c.reason), std::string::npos) << c.header << " -> " << error;
    EXPECT_EQ(a.ts, 42) << "the output changed on failure";
  }
}

TEST(NetSigning, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
}

TEST(NetCidr, MatchesIPv4AndIPv6Networks) {
  CidrList l;
  std::string error;
  ASSERT_TRUE(l.parse("10.0.0.0/8, 127.0.0.1/32,::1/128, 192.168.1.7, fd00::/8", &error)) << error;
  EXPECT_FALSE(l.allows_all());
  EXPECT_EQ(l.size(), 5u);
  EXPECT_TRUE(l.allowed("10.1.2.3"));
  EXPECT_TRUE(l.allowed("10.255.255.255"));
  EXPECT_FALSE(l.allowed("11.0.0.1"));
  EXPECT_TRUE(l.allowed("127.0.0.1"));
  EXPECT_FALSE(l.allowed("127.0.0.2"));
  EXPECT_TRUE(l.allowed("192.168.1.7"));
  EXPECT_FALSE(l.allowed("192.168.1.8"));
  EXPECT_TRUE(l.allowed("::1"));
  EXPECT_FALSE(l.allowed("::2"));
  EXPECT_TRUE(l.allowed("fd12:3456::1"));
  EXPECT_FALSE(l.allowed("fe80::1"));
  EXPECT_TRUE(l.allowed("::ffff:10.9.8.7"));  // IPv4-mapped matches the IPv4 network
  EXPECT_FALSE(l.allowed("not an address"));
  EXPECT_FALSE(l.allowed(""));
}

TEST(NetCidr, OddPrefixesAndHostBits) {
  CidrList l;
  std::string error;
  ASSERT_TRUE(l.parse("172.16.0.0/12,10.1.2.3/8,2001:db8::/33", &error)) << error;
  EXPECT_TRUE(l.allowed("172.31.255.1"));
  EXPECT_FALSE(l.allowed("172.32.0.1"));
  EXPECT_TRUE(l.allowed("10.200.0.1"));  // host bits below /8 are ignored
  EXPECT_TRUE(l.allowed("2001:db8:7fff::1"));
  EXPECT_FALSE(l.allowed("2001:db8:8000::1"));
  ASSERT_TRUE(l.parse("0.0.0.0/0", &error));
  EXPECT_TRUE(l.allowed("8.8.8.8"));
  EXPECT_FALSE(l.allowed("::1"));
}

TEST(NetCidr, AllOrEmptyAllowsEverything) {
  for (std::string spec : {"", "all", "  all "}) {
    CidrList l;
    std::string error;
    ASSERT_TRUE(l.parse("10.0.0.0/8", &error));
    ASSERT_TRUE(l.parse(spec, &error)) << spec;
    EXPECT_TRUE(l.allows_all());
    EXPECT_TRUE(l.allowed("203.0.113.9"));
    EXPECT_TRUE(l.allowed("::1"));
  }
  CidrList fresh;
  EXPECT_TRUE(fresh.allowed("1.2.3.4"));
}

TEST(NetCidr, BadEntriesAreNamedAndLeaveTheListAlone) {
  struct Case {
    std::string spec, reason;
  };
  std::vector<Case> cases = {
      {"10.0.0.0/8,bogus", "'bogus' is not an IPv4 or IPv6 address"},
      {"10.0.0.0/33", "'10.0.0.0/33': the prefix length must be 0 to 32"},
      {"::1/129", "'::1/129': the prefix length must be 0 to 128"},
      {"10.0.0.0/", "'10.0.0.0/': the prefix length is missing"},
      {"10.0.0.0/x", "'10.0.0.0/x': the prefix length is not a number"},
      {"10.0.0.0/8,,127.0.0.1", "empty entry"},
      {"all,10.0.0.0/8", "'all' cannot be combined"},
      {"256.1.1.1", "'256.1.1.1' is not"},
      {"10.0.0.0/8 127.0.0.1", "'10.0.0.0/8 127.0.0.1': entries are separated by commas"},
      {"10.0.0.1 127.0.0.1", "is not an IPv4 or IPv6"},
  };
  for (const auto& c : cases) {
    CidrList l;
    std::string error;
    ASSERT_TRUE(l.parse("127.0.0.1", &error));
    EXPECT_FALSE(l.parse(c.spec, &error)) << c.spec;
    EXPECT_NE(error.find(c.reason), std::string::npos) << c.spec << " -> " << error;
    EXPECT_TRUE(l.allowed("127.0.0.1")) << c.spec;
    EXPECT_FALSE(l.allowed("10.0.0.1")) << c.spec;
  }
}

}  // namespace
}  // namespace cap::net

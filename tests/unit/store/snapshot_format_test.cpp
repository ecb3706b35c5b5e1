// The snapshot format (src/store/snapshot_format.cpp) and object URLs
// (src/store/object_store.cpp): what is written reads back, and every damaged snapshot is
// refused with its cause.
#include "store/snapshot_format.h"

#include <gtest/gtest.h>

#include "cap/package.h"
#include "net/signing.h"
#include "store/object_store.h"

namespace cap::store {
namespace {

std::string config_zip(const std::string& cap_json) {
  Package p;
  p.files["cap.json"] = cap_json;
  p.files["rulesets/main.json"] =
      R"({"name":"main","start":"r","exits":[],"rules":{"r":{"rule":"HttpRespond","with":{}}}})";
  std::string zip, error;
  EXPECT_TRUE(write_zip(p, &zip, &error)) << error;
  return zip;
}

Snapshot sample() {
  Snapshot s;
  s.agent_version = "0.1.0";
  s.agent_name = "agent-1";
  s.created_at = "2024-05-01T12:00:00.000Z";
  s.configuration_zip =
      config_zip(R"({"format":1,"name":"shop","ruleset":"main","extensions":{"geo":"1.2"}})");
  s.mode = "Maintenance";
  s.stopped = true;
  s.vault_sealed = "sealed bytes";
  s.extensions["geo.zip"] = "geo extension";
  s.extensions["other.zip"] = std::string(1000, 'x');
  return s;
}

// Rewrites one member of a snapshot zip (or snapshot.json) without fixing the hashes.
std::string tamper(const std::string& zip, const std::string& member, const std::string& content,
                   bool remove = false) {
  Package p;
  std::string error;
  EXPECT_TRUE(read_zip(zip, &p, &error)) << error;
  if (remove)
    p.files.erase(member);
  else
    p.files[member] = content;
  std::string out;
  EXPECT_TRUE(write_zip(p, &out, &error)) << error;
  return out;
}

std::string refusal(const std::string& zip) {
  Snapshot out;
  std::string error;
  EXPECT_FALSE(read_snapshot(zip, &out, &error));
  return error;
}

TEST(SnapshotFormat, RoundTrip) {
  std::string zip, error;
  ASSERT_TRUE(write_snapshot(sample(), &zip, &error)) << error;
  Snapshot back;
  std::vector<SnapshotMember> members;
  ASSERT_TRUE(read_snapshot(zip, &back, &error, &members)) << error;
  Snapshot s = sample();
  EXPECT_EQ(back.configuration_zip, s.configuration_zip);
  EXPECT_EQ(back.configuration_name, "shop");
  EXPECT_EQ(back.agent_name, "agent-1");
  EXPECT_EQ(back.agent_version, "0.1.0");
  EXPECT_EQ(back.created_at, s.created_at);
  EXPECT_EQ(back.mode, "Maintenance");
  EXPECT_TRUE(back.stopped);
  EXPECT_EQ(back.vault_sealed, "sealed bytes");
  EXPECT_EQ(back.extensions, s.extensions);
  ASSERT_EQ(members.size(), 5u);  // configuration, mode, vault, two extensions
  for (const auto& m : members) EXPECT_EQ(m.sha256.size(), 64u) << m.name;

  Package p;
  ASSERT_TRUE(read_zip(zip, &p, &error));
  Value meta = json_parse(*p.find("snapshot.json"), &error);
  ASSERT_TRUE(error.empty());
  const Map& m = meta.as_map();
  EXPECT_EQ(m.find("format")->as_number(), 1);
  EXPECT_EQ(m.find("members")->as_map().find("extensions/geo.zip")->as_string(),
            net::sha256_hex("geo extension"));
}

TEST(SnapshotFormat, EmptyVaultAndNoExtensionsAreLeftOut) {
  Snapshot s = sample();
  s.vault_sealed.clear();
  s.extensions.clear();
  s.configuration_zip = config_zip(R"({"format":1,"name":"plain","ruleset":"main"})");
  std::string zip, error;
  ASSERT_TRUE(write_snapshot(s, &zip, &error)) << error;
  Package p;
  ASSERT_TRUE(read_zip(zip, &p, &error));
  EXPECT_EQ(p.files.size(), 3u);  // snapshot.json, configuration.zip, mode.json
  Snapshot back;
  ASSERT_TRUE(read_snapshot(zip, &back, &error)) << error;
  EXPECT_TRUE(back.vault_sealed.empty());
}

TEST(SnapshotFormat, RefusesWhatIsDamaged) {
  std::string zip, error;
  ASSERT_TRUE(write_snapshot(sample(), &zip, &error)) << error;
  EXPECT_NE(refusal("not a zip").find("corrupt snapshot: "), std::string::npos);
  EXPECT_NE(refusal(zip.substr(0, zip.size() / 2)).find("corrupt snapshot"), std::string::npos);
  EXPECT_NE(refusal(tamper(zip, "extensions/geo.zip", "changed"))
                .find("hash mismatch: member extensions/geo.zip has sha256 "),
            std::string::npos);
  EXPECT_NE(refusal(tamper(zip, "vault.sealed", "", true))
                .find("member vault.sealed is listed in snapshot.json but missing"),
            std::string::npos);
  EXPECT_NE(refusal(tamper(zip, "extra.txt", "x")).find("member extra.txt is not listed"),
            std::string::npos);
  EXPECT_NE(refusal(tamper(zip, "snapshot.json", "", true)).find("holds no snapshot.json"),
            std::string::npos);
  EXPECT_NE(refusal(tamper(zip, "snapshot.json", "[1,2")).find("snapshot.json is not a JSON"),
            std::string::npos);
}

TEST(SnapshotFormat, RefusesUnknownFormats) {
  std::string zip, error;
  ASSERT_TRUE(write_snapshot(sample(), &zip, &error));
  Package p;
  ASSERT_TRUE(read_zip(zip, &p, &error));
  std::string meta = *p.find("snapshot.json");
  std::string v2 = meta;
  v2.replace(v2.find("\"format\":1"), 10, "\"format\":2");
  EXPECT_EQ(refusal(tamper(zip, "snapshot.json", v2)),
            "unknown snapshot format 2 (this build reads format 1; use a newer cap-agent)");
}

TEST(SnapshotFormat, RefusesAMissingExtension) {
  Snapshot s = sample();
  s.extensions.erase("geo.zip");
  std::string zip, error;
  ASSERT_TRUE(write_snapshot(s, &zip, &error));
  EXPECT_EQ(refusal(zip),
            "missing extension: the configuration 'shop' needs extension 'geo' 1.2, but the "
            "snapshot holds no extensions/geo.zip");
}

TEST(SnapshotFormat, ExtensionNamesAndPointers) {
  EXPECT_TRUE(valid_extension_file_name("geo-ip_2.zip"));
  EXPECT_FALSE(valid_extension_file_name(".hidden"));
  EXPECT_FALSE(valid_extension_file_name("a/b.zip"));
  EXPECT_FALSE(valid_extension_file_name(""));
  Snapshot s = sample();
  s.extensions["../evil.zip"] = "x";
  std::string zip, error;
  EXPECT_FALSE(write_snapshot(s, &zip, &error));

  std::string url;
  EXPECT_TRUE(read_snapshot_pointer(make_snapshot_pointer("s3://b/k.zip"), &url));
  EXPECT_EQ(url, "s3://b/k.zip");
  EXPECT_FALSE(read_snapshot_pointer("PK\x03\x04...", &url));
  EXPECT_FALSE(read_snapshot_pointer("cap-snapshot-pointer 1\n\n", &url));
}

TEST(ObjectUrls, Parse) {
  ObjectUrl u;
  std::string error;
  ASSERT_TRUE(parse_object_url("s3://my-bucket/snaps/a b+c.zip", &u, &error)) << error;
  EXPECT_EQ(u.kind, ObjectUrl::Kind::S3);
  EXPECT_EQ(u.bucket, "my-bucket");
  EXPECT_EQ(u.key, "snaps/a b+c.zip");  // taken literally
  EXPECT_FALSE(u.is_prefix());
  EXPECT_EQ(u.parent(), "s3://my-bucket/snaps/");
  EXPECT_EQ(u.sibling("latest"), "s3://my-bucket/snaps/latest");

  ASSERT_TRUE(parse_object_url("s3://my-bucket", &u, &error));
  EXPECT_TRUE(u.is_prefix());
  EXPECT_EQ(u.sibling("latest"), "s3://my-bucket/latest");
  ASSERT_TRUE(parse_object_url("s3://my-bucket/snaps/", &u, &error));
  EXPECT_TRUE(u.is_prefix());

  ASSERT_TRUE(parse_object_url("file:///var/snap.zip", &u, &error));
  EXPECT_EQ(u.kind, ObjectUrl::Kind::File);
  EXPECT_EQ(u.path, "/var/snap.zip");
  EXPECT_EQ(u.sibling("latest"), "file:///var/latest");

  EXPECT_FALSE(parse_object_url("http://x/y", &u, &error));
  EXPECT_NE(error.find("expected s3://BUCKET/KEY or file:///ABSOLUTE/PATH"), std::string::npos);
  EXPECT_FALSE(parse_object_url("s3://Bad_Bucket/k", &u, &error));
  EXPECT_NE(error.find("not a valid S3 bucket name"), std::string::npos);
  EXPECT_FALSE(parse_object_url("s3://ab/k", &u, &error));
  EXPECT_FALSE(parse_object_url("file://relative/path", &u, &error));
  EXPECT_NE(error.find("absolute path"), std::string::npos);
  EXPECT_FALSE(parse_object_url(std::string("s3://bucket/a\nb"), &u, &error));
  EXPECT_FALSE(parse_object_url("s3://bucket/" + std::string(1025, 'k'), &u, &error));
}

}  // namespace
}  // namespace cap::store

// Reading configurations from folders and zips (their wire form) and writing zips: a round
// trip keeps every byte, the same files always give the same zip, and hostile zips and
// folders are refused with a clear error before anything is used — leaving the caller's
// package untouched.
#include <gtest/gtest.h>
#include <zip.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "cap/package.h"

namespace cap {
namespace {

namespace fs = std::filesystem;

/// A scratch folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("cap-package-test-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& rel, const std::string& content) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << content;
  }
  std::string str() const { return path.string(); }
  fs::path path;
};

/// Builds a zip in memory with libzip, entry names taken as given (no cleaning), the way a
/// hostile client could.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                     bool compress = true) {
  zip_error_t zerr;
  zip_error_init(&zerr);
  zip_source_t* buf = zip_source_buffer_create(nullptr, 0, 0, &zerr);
  EXPECT_NE(buf, nullptr);
  zip_source_keep(buf);
  zip_t* z = zip_open_from_source(buf, ZIP_TRUNCATE, &zerr);
  EXPECT_NE(z, nullptr) << zip_error_strerror(&zerr);
  zip_error_fini(&zerr);
  for (auto& [name, content] : entries) {
    zip_source_t* s = zip_source_buffer(z, content.data(), content.size(), 0);
    zip_int64_t idx = zip_file_add(z, name.c_str(), s, ZIP_FL_ENC_UTF_8);
    EXPECT_GE(idx, 0) << "cannot add " << name << ": " << zip_strerror(z);
    if (idx >= 0 && !compress) zip_set_file_compression(z, static_cast<zip_uint64_t>(idx), ZIP_CM_STORE, 0);
  }
  EXPECT_EQ(zip_close(z), 0) << zip_strerror(z);
  zip_stat_t st;
  zip_stat_init(&st);
  EXPECT_EQ(zip_source_stat(buf, &st), 0);
  EXPECT_EQ(zip_source_open(buf), 0);
  std::string bytes(st.size, '\0');
  EXPECT_EQ(zip_source_read(buf, bytes.data(), st.size), static_cast<zip_int64_t>(st.size));
  zip_source_close(buf);
  zip_source_free(buf);
  return bytes;
}

/// A package the caller already holds; a refused read must leave it as it was.
Package sentinel() {
  Package p;
  p.files.emplace("cap.json", "previous");
  p.root = "/previous";
  return p;
}
void expect_untouched(const Package& p) {
  ASSERT_EQ(p.files.size(), 1u);
  EXPECT_EQ(p.files.begin()->first, "cap.json");
  EXPECT_EQ(p.files.begin()->second, "previous");
  EXPECT_EQ(p.root, "/previous");
}

const std::string kCap = R"({"format": 1, "name": "z", "ruleset": "main"})";
const std::string kMain =
    R"({"name": "main", "start": "r", "rules": {"r": {"rule": "HttpRespond", "with": {"body": "zipped"}}}})";

const RuleRegistry& registry() {
  static const RuleRegistry* reg = [] {
    auto* r = new RuleRegistry();
    register_base_rules(*r);
    return r;
  }();
  return *reg;
}

// ------------------------------------------------------------------------------- folders

TEST(PackageFolder, ReadsEveryFileWithRelativeNames) {
  TempDir d;
  std::string binary("\x00\x01\xff\xfe zip\r\n", 9);
  d.write("cap.json", kCap);
  d.write("rulesets/main.json", kMain);
  d.write("data/deep/list.csv", "a,b\n1,2\n");
  d.write("data/blob.bin", binary);
  d.write(".git/config", "hidden");
  d.write(".editor.swp", "hidden");
  Package p;
  std::string err;
  ASSERT_TRUE(read_folder(d.str(), &p, &err)) << err;
  std::vector<std::string> names;
  for (auto& [k, v] : p.files) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"cap.json", "data/blob.bin", "data/deep/list.csv",
                                             "rulesets/main.json"}));
  EXPECT_EQ(*p.find("data/blob.bin"), binary);
  EXPECT_EQ(p.find("nope"), nullptr);
  EXPECT_EQ(fs::path(p.root), fs::absolute(d.path).lexically_normal());
}

TEST(PackageFolder, TrailingSlashAndDotInTheFolderName) {
  TempDir d;
  d.write("cap.json", kCap);
  d.write("rulesets/main.json", kMain);
  for (std::string dir : {d.str() + "/", d.str() + "//", d.str() + "/."}) {
    Package p;
    std::string err;
    ASSERT_TRUE(read_folder(dir, &p, &err)) << dir << ": " << err;
    EXPECT_NE(p.find("cap.json"), nullptr) << dir;
    EXPECT_NE(p.find("rulesets/main.json"), nullptr) << dir;
    EXPECT_EQ(p.files.size(), 2u) << dir;
  }
}

TEST(PackageFolder, MissingFolderIsAnError) {
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_folder("/nonexistent/cap-config", &p, &err));
  EXPECT_EQ(err, "/nonexistent/cap-config: not a folder");
  expect_untouched(p);
}

TEST(PackageFolder, SymlinkIsRefused) {
  TempDir d;
  d.write("cap.json", kCap);
  d.write("rulesets/main.json", kMain);
  fs::create_directories(d.path / "data");
  fs::create_symlink("/etc/passwd", d.path / "data" / "users.csv");
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_folder(d.str(), &p, &err));
  EXPECT_EQ(err, d.str() + "/data/users.csv: symbolic links are not allowed in a configuration");
  expect_untouched(p);
}

TEST(PackageFolder, SymlinkInsideTheFolderIsRefusedToo) {
  TempDir d;
  d.write("cap.json", kCap);
  d.write("data/real.csv", "a\n");
  fs::create_symlink(d.path / "data" / "real.csv", d.path / "data" / "alias.csv");
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_folder(d.str(), &p, &err));
  EXPECT_EQ(err, d.str() + "/data/alias.csv: symbolic links are not allowed in a configuration");
  expect_untouched(p);
}

TEST(PackageFolder, SymlinkedFolderIsRefused) {
  TempDir d, outside;
  outside.write("secret.txt", "secret");
  d.write("cap.json", kCap);
  fs::create_directory_symlink(outside.path, d.path / "content");
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_folder(d.str(), &p, &err));
  EXPECT_NE(err.find("symbolic links are not allowed"), std::string::npos) << err;
  expect_untouched(p);
}

TEST(PackageFolder, LimitsOnCountAndSize) {
  TempDir d;
  d.write("cap.json", kCap);
  d.write("a.txt", "a");
  d.write("b.txt", "b");
  PackageLimits few;
  few.max_entries = 2;
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_folder(d.str(), &p, &err, few));
  EXPECT_EQ(err, d.str() + ": more than 2 files");
  expect_untouched(p);

  d.write("big.bin", std::string(5000, 'x'));
  PackageLimits small;
  small.max_entry_bytes = 1000;
  EXPECT_FALSE(read_folder(d.str(), &p, &err, small));
  EXPECT_EQ(err.rfind(d.str() + "/big.bin: too large", 0), 0u) << err;
  expect_untouched(p);
}

// ------------------------------------------------------------------------ zip round trip

TEST(PackageZip, RoundTripKeepsEveryByteAndIsReproducible) {
  TempDir d;
  std::string binary;
  for (int i = 0; i < 1024; ++i) binary.push_back(static_cast<char>(i * 7));
  d.write("cap.json", kCap);
  d.write("rulesets/main.json", kMain);
  d.write("data/blob.bin", binary);
  d.write("data/empty.txt", "");
  d.write("content/index.html", "<h1>hi</h1>");
  Package folder;
  std::string err;
  ASSERT_TRUE(read_folder(d.str(), &folder, &err)) << err;

  std::string zip1, zip2;
  ASSERT_TRUE(write_zip(folder, &zip1, &err)) << err;
  ASSERT_TRUE(write_zip(folder, &zip2, &err)) << err;
  EXPECT_EQ(zip1, zip2);  // same files, same bytes
  EXPECT_EQ(zip1.substr(0, 4), std::string("PK\x03\x04", 4));

  Package back;
  ASSERT_TRUE(read_zip(zip1, &back, &err)) << err;
  EXPECT_EQ(back.files, folder.files);
  EXPECT_EQ(back.root, "");

  // Written again from what was read, still the same bytes.
  std::string zip3;
  ASSERT_TRUE(write_zip(back, &zip3, &err)) << err;
  EXPECT_EQ(zip3, zip1);
}

TEST(PackageZip, DifferentContentGivesDifferentBytes) {
  Package a, b;
  a.files.emplace("cap.json", kCap);
  b.files.emplace("cap.json", kCap + " ");
  std::string za, zb, err;
  ASSERT_TRUE(write_zip(a, &za, &err)) << err;
  ASSERT_TRUE(write_zip(b, &zb, &err)) << err;
  EXPECT_NE(za, zb);
}

TEST(PackageZip, ExampleLoadsFromItsZip) {
  Package folder;
  std::string err;
  ASSERT_TRUE(read_folder(std::string(CAP_SOURCE_DIR) + "/examples/hello", &folder, &err)) << err;
  std::string zip;
  ASSERT_TRUE(write_zip(folder, &zip, &err)) << err;
  Package back;
  ASSERT_TRUE(read_zip(zip, &back, &err)) << err;
  auto loaded = load_configuration(back, registry());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded.configuration->name, "hello");
}

TEST(PackageZip, ReadPathTakesAFolderOrAZipFile) {
  TempDir d;
  d.write("cfg/cap.json", kCap);
  d.write("cfg/rulesets/main.json", kMain);
  Package p;
  std::string err;
  ASSERT_TRUE(read_path((d.path / "cfg").string(), &p, &err)) << err;
  EXPECT_EQ(p.files.size(), 2u);
  std::string zip;
  ASSERT_TRUE(write_zip(p, &zip, &err)) << err;
  d.write("cfg.zip", zip);
  Package z;
  ASSERT_TRUE(read_path((d.path / "cfg.zip").string(), &z, &err)) << err;
  EXPECT_EQ(z.files, p.files);

  Package missing = sentinel();
  EXPECT_FALSE(read_path((d.path / "nope.zip").string(), &missing, &err));
  EXPECT_EQ(err, (d.path / "nope.zip").string() + ": no such file or folder");
  expect_untouched(missing);

  d.write("bad.zip", "this is not a zip");
  Package bad = sentinel();
  EXPECT_FALSE(read_path((d.path / "bad.zip").string(), &bad, &err));
  EXPECT_EQ(err.rfind((d.path / "bad.zip").string() + ": not a valid zip", 0), 0u) << err;
  expect_untouched(bad);
}

TEST(PackageZip, ZipHoldingTheFolderItselfIsAccepted) {
  std::string zip = make_zip({{"hello/", ""},
                              {"hello/cap.json", kCap},
                              {"hello/rulesets/main.json", kMain},
                              {"hello/data/x.csv", "k,v\n"}});
  Package p;
  std::string err;
  ASSERT_TRUE(read_zip(zip, &p, &err)) << err;
  std::vector<std::string> names;
  for (auto& [k, v] : p.files) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"cap.json", "data/x.csv", "rulesets/main.json"}));
  EXPECT_EQ(*p.find("cap.json"), kCap);
  auto loaded = load_configuration(p, registry());
  EXPECT_TRUE(loaded.ok());
}

TEST(PackageZip, TwoTopFoldersAreNotStripped) {
  std::string zip = make_zip({{"a/cap.json", kCap}, {"b/rulesets/main.json", kMain}});
  Package p;
  std::string err;
  ASSERT_TRUE(read_zip(zip, &p, &err)) << err;
  EXPECT_NE(p.find("a/cap.json"), nullptr);
  EXPECT_EQ(p.find("cap.json"), nullptr);
  // Read, but it is not a configuration: the loader says what is missing.
  auto loaded = load_configuration(p, registry());
  EXPECT_FALSE(loaded.ok());
}

TEST(PackageZip, DotSlashPrefixesAreCleaned) {
  std::string zip = make_zip({{"./cap.json", kCap}, {"./rulesets/main.json", kMain}});
  Package p;
  std::string err;
  ASSERT_TRUE(read_zip(zip, &p, &err)) << err;
  EXPECT_NE(p.find("cap.json"), nullptr);
  EXPECT_NE(p.find("rulesets/main.json"), nullptr);
}

TEST(PackageZip, EmptyZipReadsAsNoFiles) {
  // libzip writes nothing for an archive without entries; an explicit empty central
  // directory is the 22-byte end record.
  std::string empty("PK\x05\x06", 4);
  empty += std::string(18, '\0');
  Package p;
  std::string err;
  ASSERT_TRUE(read_zip(empty, &p, &err)) << err;
  EXPECT_TRUE(p.files.empty());
  EXPECT_FALSE(load_configuration(p, registry()).ok());
}

// ------------------------------------------------------------------------------ hostile

TEST(PackageZipHostile, DotDotEntryIsRefused) {
  std::string zip = make_zip({{"cap.json", kCap}, {"../../etc/cron.d/evil", "* * * * * root sh"}});
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err));
  EXPECT_EQ(err, "zip entry '../../etc/cron.d/evil' has an absolute path or '..': refused");
  expect_untouched(p);
}

TEST(PackageZipHostile, DotDotInTheMiddleIsRefused) {
  std::string zip = make_zip({{"cap.json", kCap}, {"data/../../escape.txt", "x"}});
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err));
  EXPECT_EQ(err, "zip entry 'data/../../escape.txt' has an absolute path or '..': refused");
  expect_untouched(p);
}

TEST(PackageZipHostile, AbsolutePathEntryIsRefused) {
  std::string zip = make_zip({{"cap.json", kCap}, {"/etc/passwd", "root:x:0:0"}});
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err));
  EXPECT_EQ(err, "zip entry '/etc/passwd' has an absolute path or '..': refused");
  expect_untouched(p);
}

TEST(PackageZipHostile, BinaryGarbageIsNotAZip) {
  std::mt19937 rng(42);
  std::string garbage(4096, '\0');
  for (auto& c : garbage) c = static_cast<char>(rng());
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(garbage, &p, &err));
  EXPECT_EQ(err.rfind("not a valid zip: ", 0), 0u) << err;
  expect_untouched(p);

}

TEST(PackageZipHostile, EmptyInputGivesNoConfiguration) {
  // libzip reads zero bytes as an archive without entries; either way nothing loads.
  Package p = sentinel();
  std::string err;
  if (read_zip("", &p, &err)) {
    EXPECT_TRUE(p.files.empty());
    auto loaded = load_configuration(p, registry());
    EXPECT_FALSE(loaded.ok());
    ASSERT_FALSE(loaded.diagnostics.empty());
    EXPECT_EQ(loaded.diagnostics[0].format(),
              "cap.json: missing: a configuration folder needs a cap.json manifest");
  } else {
    EXPECT_FALSE(err.empty());
    expect_untouched(p);
  }
}

TEST(PackageZipHostile, TruncatedZipIsRefused) {
  std::string zip = make_zip({{"cap.json", kCap}, {"rulesets/main.json", kMain},
                              {"data/pad.txt", std::string(4000, 'p')}},
                             /*compress=*/false);
  for (size_t cut : {zip.size() / 2, zip.size() - 10, size_t{30}}) {
    Package p = sentinel();
    std::string err;
    EXPECT_FALSE(read_zip(std::string_view(zip).substr(0, cut), &p, &err)) << "cut at " << cut;
    EXPECT_FALSE(err.empty());
    expect_untouched(p);
  }
}

TEST(PackageZipHostile, CorruptedEntryDataIsRefused) {
  std::string content(2000, 'c');
  std::string zip = make_zip({{"cap.json", kCap}, {"data/c.txt", content}}, /*compress=*/false);
  size_t at = zip.find(content);
  ASSERT_NE(at, std::string::npos);
  zip[at + 1000] = 'X';  // the CRC no longer matches
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err));
  EXPECT_NE(err.find("data/c.txt"), std::string::npos) << err;
  expect_untouched(p);
}

TEST(PackageZipHostile, TooManyEntries) {
  std::vector<std::pair<std::string, std::string>> entries{{"cap.json", kCap}};
  for (int i = 0; i < 5; ++i) entries.emplace_back("data/f" + std::to_string(i), "x");
  std::string zip = make_zip(entries);
  PackageLimits limits;
  limits.max_entries = 3;
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err, limits));
  EXPECT_EQ(err, "zip has too many entries (at most 3)");
  expect_untouched(p);
  // Within the limit it reads.
  limits.max_entries = 6;
  EXPECT_TRUE(read_zip(zip, &p, &err, limits)) << err;
}

TEST(PackageZipHostile, EntryLargerThanTheLimit) {
  // Ten megabytes of zeros compress to a few kilobytes: the size in the header is checked
  // before anything is inflated.
  std::string zip = make_zip({{"cap.json", kCap}, {"data/bomb.bin", std::string(10u << 20, '\0')}});
  EXPECT_LT(zip.size(), 100000u);
  PackageLimits limits;
  limits.max_entry_bytes = 1u << 20;
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err, limits));
  EXPECT_EQ(err, "zip entry 'data/bomb.bin' is too large");
  expect_untouched(p);
}

TEST(PackageZipHostile, TotalLargerThanTheLimit) {
  std::string zip = make_zip({{"cap.json", kCap},
                              {"data/a.bin", std::string(600, 'a')},
                              {"data/b.bin", std::string(600, 'b')}});
  PackageLimits limits;
  limits.max_entry_bytes = 1000;
  limits.max_total_bytes = 1000;
  Package p = sentinel();
  std::string err;
  EXPECT_FALSE(read_zip(zip, &p, &err, limits));
  EXPECT_EQ(err, "zip entry 'data/b.bin' is too large");
  expect_untouched(p);
}

}  // namespace
}  // namespace cap

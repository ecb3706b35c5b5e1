#include "ext/package.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "net/signing.h"

namespace cap::ext {

namespace {

constexpr std::string_view kManifest = "extension.json";

/// Checks the manifest against the members; appends problems to `errors`.
void verify(ExtensionPackage& pkg, bool hashes_required, std::vector<std::string>* errors) {
  const std::string* text = pkg.files.find(kManifest);
  if (!text) {
    errors->push_back("extension.json: missing (an extension needs it at the top of the package)");
    return;
  }
  std::vector<std::string> problems;
  if (!parse_manifest(*text, &pkg.manifest, &problems)) {
    for (auto& p : problems) errors->push_back("extension.json: " + p);
    return;
  }
  const Manifest& m = pkg.manifest;
  if (hashes_required || !m.sha256.empty()) {
    for (auto& [path, content] : pkg.files.files) {
      if (path == kManifest) continue;
      auto it = m.sha256.find(path);
      if (it == m.sha256.end())
        errors->push_back(path +
                          ": not listed in extension.json \"sha256\" (capctl ext pack "
                          "lists every member)");
      else if (sha256_hex(content) != it->second)
        errors->push_back(path +
                          ": sha256 does not match extension.json (the member was "
                          "changed after packing)");
    }
    for (auto& [path, h] : m.sha256)
      if (!pkg.files.find(path))
        errors->push_back(path + ": listed in extension.json \"sha256\" but missing");
  }
  for (size_t i = 0; i < m.rules.size(); ++i) {
    const RuleDef& r = m.rules[i];
    const std::string* src = pkg.files.find(r.script);
    if (!src) {
      errors->push_back("extension.json: rules[" + std::to_string(i) + "].script: '" + r.script +
                        "' is not in the package");
      continue;
    }
    std::string err;
    if (!check_script(*src, r.script, &err)) errors->push_back(err);
  }
}

}  // namespace

PackageLimits extension_limits() {
  PackageLimits l;
  l.max_entries = 1000;
  l.max_entry_bytes = 16ull << 20;
  l.max_total_bytes = 64ull << 20;
  return l;
}

std::string sha256_hex(std::string_view data) { return net::sha256_hex(data); }

bool read_extension(std::string_view zip, ExtensionPackage* out, std::vector<std::string>* errors) {
  size_t before = errors->size();
  ExtensionPackage pkg;
  std::string err;
  if (!read_zip(zip, &pkg.files, &err, extension_limits())) {
    errors->push_back(err);
    return false;
  }
  pkg.sha256 = sha256_hex(zip);
  verify(pkg, true, errors);
  if (errors->size() != before) return false;
  *out = std::move(pkg);
  return true;
}

bool read_extension_path(const std::string& path, ExtensionPackage* out,
                         std::vector<std::string>* errors) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    std::string zip, err;
    Package raw;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      errors->push_back(path + ": no such file or folder");
      return false;
    }
    zip.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return read_extension(zip, out, errors);
  }
  size_t before = errors->size();
  ExtensionPackage pkg;
  std::string err;
  if (!read_folder(path, &pkg.files, &err, extension_limits())) {
    errors->push_back(err);
    return false;
  }
  pkg.files.root.clear();
  verify(pkg, false, errors);
  if (errors->size() != before) return false;
  *out = std::move(pkg);
  return true;
}

bool pack_extension(const std::string& dir, std::string* zip, std::vector<std::string>* errors) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    errors->push_back(dir + ": not a folder");
    return false;
  }
  Package files;
  std::string err;
  if (!read_folder(dir, &files, &err, extension_limits())) {
    errors->push_back(err);
    return false;
  }
  files.root.clear();
  const std::string* text = files.find(kManifest);
  if (!text) {
    errors->push_back("extension.json: missing (an extension needs it at the top of the folder)");
    return false;
  }
  std::map<std::string, std::string> sums;
  for (auto& [path, content] : files.files)
    if (path != kManifest) sums[path] = sha256_hex(content);
  files.files[std::string(kManifest)] = manifest_json(*text, sums);
  std::string bytes;
  if (!write_zip(files, &bytes, &err)) {
    errors->push_back(err);
    return false;
  }
  ExtensionPackage check;
  if (!read_extension(bytes, &check, errors)) return false;
  *zip = std::move(bytes);
  return true;
}

std::shared_ptr<const Image> make_image(const ExtensionPackage& pkg) {
  std::vector<std::string> scripts;
  for (auto& r : pkg.manifest.rules) scripts.push_back(*pkg.files.find(r.script));
  return std::make_shared<const Image>(pkg.manifest, std::move(scripts), pkg.sha256);
}

}  // namespace cap::ext

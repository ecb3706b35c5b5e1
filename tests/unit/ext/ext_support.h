// Builds extension zips in memory for the extension tests.
#pragma once

#include <map>
#include <string>

#include "cap/package.h"
#include "ext/manifest.h"
#include "ext/package.h"

namespace cap::test {

/// A zip of `files` whose extension.json gets the sha256 of every other member, as
/// capctl ext pack writes it.
inline std::string ext_zip(std::map<std::string, std::string> files, bool with_hashes = true) {
  Package pkg;
  std::map<std::string, std::string> sums;
  for (auto& [path, content] : files)
    if (path != "extension.json") sums[path] = ext::sha256_hex(content);
  for (auto& [path, content] : files) pkg.files[path] = content;
  if (with_hashes) pkg.files["extension.json"] = ext::manifest_json(files["extension.json"], sums);
  std::string zip, err;
  write_zip(pkg, &zip, &err);
  return zip;
}

/// A one-rule extension `name` whose rule `rule` runs `script`.
inline std::string one_rule_ext(const std::string& name, const std::string& version,
                                const std::string& rule, const std::string& script,
                                const std::string& extra_rule_fields = "",
                                const std::string& extra_fields = "") {
  std::string manifest = R"({"name": ")" + name + R"(", "version": ")" + version +
                         R"(", "cap": ">=0.1",)" + extra_fields + R"( "rules": [{"name": ")" +
                         rule +
                         R"(", "group": "Test", "doc": "A test rule.", "params": [
      {"name": "value", "type": "any"}, {"name": "output", "type": "variable", "default": "OUT"}],
      "chain_points": ["next", "other"], "script": "rules/rule.lua")" +
                         extra_rule_fields + "}]}";
  return ext_zip({{"extension.json", manifest}, {"rules/rule.lua", script}});
}

}  // namespace cap::test

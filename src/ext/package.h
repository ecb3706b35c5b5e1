// Extension packages: reading, verifying and packing the zip of DESIGN §3 ("Extensions").
//
// A package is refused, with every problem named, when: the zip does not read or breaks the
// limits (entries, sizes), a member path is absolute or climbs out with ".." (zip-slip),
// extension.json is missing or invalid, a member is not listed in its "sha256" map or its
// hash differs, a listed member is missing, a rule's script is missing, is bytecode or does
// not compile. Reading never writes anything.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cap/package.h"
#include "ext/lua_host.h"
#include "ext/manifest.h"

namespace cap::ext {

struct ExtensionPackage {
  Manifest manifest;
  Package files;       // every member, extension.json included
  std::string sha256;  // of the zip (empty for a folder)
};

/// The limits an extension zip must keep: 1000 members, 16 MiB each, 64 MiB in all.
PackageLimits extension_limits();

/// Reads and verifies an extension zip. Every member but extension.json must be listed in
/// its "sha256" map with the right hash.
bool read_extension(std::string_view zip, ExtensionPackage* out, std::vector<std::string>* errors);
/// Reads and verifies an extension folder or zip (for capctl). In a folder, hashes are
/// checked only when extension.json lists them (capctl ext pack writes them).
bool read_extension_path(const std::string& path, ExtensionPackage* out,
                         std::vector<std::string>* errors);
/// Packs a folder into a zip with the sha256 of every member written into extension.json,
/// after verifying it. False with every problem.
bool pack_extension(const std::string& dir, std::string* zip, std::vector<std::string>* errors);

/// The runnable form of a verified package.
std::shared_ptr<const Image> make_image(const ExtensionPackage& pkg);

/// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);

}  // namespace cap::ext

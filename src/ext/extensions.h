// The installed extensions of one process, registered in the same RuleRegistry as the base
// rules.
//
// Install, upgrade and remove change the registry at run time, thread-safely. A loaded
// configuration holds the RuleType of each node it uses (and through it the extension's
// Image and Lua scripts), so requests running on a configuration keep the version they were
// compiled with whatever happens to the registry; only configurations loaded afterwards see
// the change. Hosts therefore reload the active configuration after an upgrade.
//
//   ExtensionSet set(registry);
//   ExtensionSet::Prepared p;
//   if (!set.prepare(zip, &p, &errors)) ...   // verifies; nothing changes
//   ... persist the zip ...
//   set.commit(std::move(p));                 // the new rules are in the registry
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cap/engine.h"
#include "ext/package.h"

namespace cap::ext {

struct InstalledExtension {
  std::string name, version, sha256, description;
  std::vector<std::string> rules;
  std::shared_ptr<const Image> image;
};

class ExtensionSet {
 public:
  explicit ExtensionSet(RuleRegistry& registry) : registry_(registry) {}

  struct Prepared {
    ExtensionPackage package;
    std::shared_ptr<const Image> image;
    std::string previous_version;  // "" for a new install
  };
  /// Verifies `zip` and checks that its rules replace no native rule and no rule of another
  /// extension. False with every problem; nothing changes.
  bool prepare(std::string_view zip, Prepared* out, std::vector<std::string>* errors) const;
  /// The same from a folder or zip on disk (capctl).
  bool prepare_path(const std::string& path, Prepared* out, std::vector<std::string>* errors) const;
  /// Registers a prepared extension: its rules are added or replaced, and rules of the
  /// previous version it no longer has are removed.
  void commit(Prepared prepared);
  /// The same from an Image (to put back a version that was replaced).
  void commit_image(std::shared_ptr<const Image> image);
  /// Removes an extension and its rules. False when it is not installed.
  bool remove(std::string_view name);

  /// The installed extensions, by name.
  std::vector<InstalledExtension> list() const;
  std::optional<InstalledExtension> find(std::string_view name) const;
  /// For LoadOptions::check_extension: "" when `name` is installed in a version that
  /// satisfies `requirement`, else the error.
  std::string check(std::string_view name, std::string_view requirement) const;
  /// [{name, version, sha256, description, rules: [...]}] for JSON answers.
  Value to_value() const;

 private:
  bool check_conflicts(const Manifest& m, std::vector<std::string>* errors) const;
  /// The rest of prepare() once the package is read: conflicts, previous version, image.
  bool prepare_read(Prepared p, Prepared* out, std::vector<std::string>* errors) const;
  RuleRegistry& registry_;
  mutable std::mutex mu_;
  std::map<std::string, InstalledExtension, std::less<>> installed_;
};

/// {name, version, sha256, rules: [...]}: an installed extension in JSON answers.
Map describe(const InstalledExtension& e);

/// Whether a configuration uses extension `name`: cap.json names it or a node uses one of
/// its rules.
bool configuration_uses(const Configuration& cfg, std::string_view name);

}  // namespace cap::ext

// The agent's extensions: one NAME.zip per installed extension in CAP_HOME/extensions,
// loaded at start, installed, upgraded and removed at run time (DESIGN §5,
// /v1/extensions).
//
// Every change checks first (the package verifies, the active configuration still loads
// with it), then writes CAP_HOME, then registers the rules and, when the active
// configuration uses the extension, republishes it compiled with the new rules. Requests in
// flight finish on the rules they started with; none fails. A change that cannot complete
// leaves the registry, the active configuration and CAP_HOME as they were. Methods are
// serialised; the management API calls them from its command thread.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

#include "agent/activation.h"
#include "ext/extensions.h"

namespace cap::agent {

class ExtensionStore {
 public:
  /// `home`: CAP_HOME; the zips live in home/extensions.
  ExtensionStore(std::string home, RuleRegistry& registry, Activator& activator);

  /// At start, before the activator restores: loads every NAME.zip. A zip that does not
  /// verify is logged and skipped (left in place); it never stops the agent.
  void load_all();
  /// PUT /v1/extensions/NAME: 200 with the installed extension; 422 when the zip does not
  /// verify or names another extension; 409 when the active configuration requires a
  /// version this one does not satisfy or no longer loads with it; 500 when CAP_HOME cannot
  /// be written.
  CommandResult install(std::string_view name, std::string_view zip, Value* installed);
  /// DELETE /v1/extensions/NAME: 404 when not installed; 409 when the active configuration
  /// uses it.
  CommandResult remove(std::string_view name, Value* removed);
  /// Makes the installed set match the folder again (after a snapshot restore wrote it):
  /// installs what is new or changed, removes what is gone. False with `error` naming each
  /// zip that does not load (it is skipped and left in place).
  bool reload(std::string* error);

  /// For LoadOptions::check_extension.
  std::string check(std::string_view name, std::string_view version) const {
    return set_.check(name, version);
  }
  /// [{name, version, sha256, description, rules}]
  Value list() const { return set_.to_value(); }
  /// [{name, version}] for /v1/status.
  Value summary() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string path_of(std::string_view name) const {
    return dir_ + "/" + std::string(name) + ".zip";
  }

  std::string dir_;
  ext::ExtensionSet set_;
  Activator& activator_;
  mutable std::mutex mu_;
};

}  // namespace cap::agent

// The agent's vault: named credentials handed to runtimes as a cap::Vault, stored
// encrypted at rest in CAP_HOME.
//
//   CAP_HOME/vault.key   32 random bytes, created 0600 on first use
//   CAP_HOME/vault.bin   nonce (24 bytes) + crypto_secretbox of the credentials' JSON
//
// Secrets never reach a log line, an error message or a response: errors name the
// credential or the file, never a value. Reads take no lock (an atomic shared_ptr swap).
//
// Encryption needs libsodium: the build defines CAP_HAVE_SODIUM when it links it. Without
// it the vault stays empty and replace() refuses with an error that says so.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cap/services.h"
#include "cap/value.h"

namespace cap::agent {

class AgentVault : public Vault {
 public:
  explicit AgentVault(std::string home);

  /// Whether this build can store credentials (libsodium linked).
  static bool available();
  /// Loads vault.bin when it exists. False with `error` when it cannot be read or decrypted
  /// (the vault then stays empty).
  bool load(std::string* error);
  /// Replaces every credential with `credentials`: {"NAME": {"field": "secret"}} or
  /// {"NAME": "secret"} (field ""). Validates, encrypts, stores crash-safely, then swaps.
  /// False with `error` (naming what is wrong, never a secret) and nothing changed.
  bool replace(const Value& credentials, std::string* error);
  /// The credential names (never the values).
  std::vector<std::string> names() const;
  /// Every credential with its secrets, as replace() takes them: {"NAME": {"field":
  /// "secret"}}. For snapshots only, which seal it at once; never log or answer it.
  Value credentials() const;

  std::optional<std::string> get(std::string_view name, std::string_view field) const override;

 private:
  using Creds = std::map<std::string, std::map<std::string, std::string>, std::less<>>;
  bool key(std::string* key, bool create, std::string* error) const;

  std::string home_;
  std::atomic<std::shared_ptr<const Creds>> creds_;
};

}  // namespace cap::agent

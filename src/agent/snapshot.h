// Snapshots of the agent's whole state (DESIGN §6; the format is store/snapshot_format.h):
// GET /v1/snapshot captures one, PUT /v1/snapshot restores one, and S3_GOLD_MASTER restores
// one at start, before the agent listens.
//
// What a snapshot holds: the active configuration with its mode and stopped flag, every
// file of CAP_HOME/extensions/ (one NAME.zip per installed extension), and the vault.
//
// The vault travels sealed (libsodium secretbox) under a key derived from CAP_MGMT_KEY
// (BLAKE2b with a random salt per snapshot), never under the agent's own vault.key, which
// stays in its CAP_HOME. An agent restoring the snapshot therefore needs the same
// CAP_MGMT_KEY as the agent that captured it; it unseals the credentials and stores them
// under its own vault.key.
//
// Restoring verifies everything first (every hash, the format, the extensions the
// configuration names, that the vault unseals, that the configuration validates), then
// writes the extensions folder (swapped in whole), the vault and the configuration; when a
// late step fails, the earlier ones are undone and the old state stays.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "agent/activation.h"
#include "agent/settings.h"
#include "agent/vault.h"

namespace cap::agent {

class SnapshotService {
 public:
  SnapshotService(const Settings& settings, Activator& activator, AgentVault& vault);

  /// Reloads the extensions after their folder changed (wired by the extensions feature).
  /// Absent: nothing to reload. False with `error` refuses the restore (it is undone).
  std::function<bool(std::string* error)> reload_extensions;

  /// GET /v1/snapshot: the snapshot zip. 409 when no configuration is active, 503 without
  /// CAP_MGMT_KEY (the vault could not be sealed), 500 when CAP_HOME cannot be read.
  CommandResult capture(std::string* zip);
  /// PUT /v1/snapshot: verifies and restores. 200 with the configuration id; 422 (with the
  /// cause) for a snapshot that is not valid or does not fit this agent; 500 when CAP_HOME
  /// cannot be written. On failure nothing changed.
  CommandResult restore(std::string_view zip);
  /// At start, with S3_GOLD_MASTER: downloads `url` (following a "latest" pointer object
  /// once), verifies and restores. False with `error`: the cause in one line ("missing
  /// object: ...", "access denied: ...", "unreachable endpoint: ...", "the snapshot is not
  /// valid: hash mismatch: ..."), for the caller to log with the URL.
  bool restore_gold_master(const std::string& url, std::string* error);

  /// CAP_HOME/extensions.
  std::string extensions_dir() const;

 private:
  const Settings& settings_;
  Activator& activator_;
  AgentVault& vault_;
};

/// Seals the vault's credentials JSON under a key derived from `mgmt_key`. False with
/// `error` when libsodium is missing.
bool seal_vault_for_snapshot(std::string_view plain_json, std::string_view mgmt_key,
                             std::string* sealed, std::string* error);
/// Opens what seal_vault_for_snapshot made. False with `error` (never a secret) when it is
/// damaged or `mgmt_key` is not the key it was sealed with.
bool open_vault_from_snapshot(std::string_view sealed, std::string_view mgmt_key,
                              std::string* plain_json, std::string* error);

}  // namespace cap::agent

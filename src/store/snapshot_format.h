// The snapshot format (DESIGN §6): an agent's whole state in one zip.
//
//   snapshot.json          {"format": 1, "agent_version", "agent_name", "created_at",
//                           "configuration": {"name", "sha256"}, "mode", "stopped",
//                           "extensions": ["NAME.zip", ...], "vault": true|false,
//                           "members": {"NAME": "sha256 hex", ...}}
//   configuration.zip      the active configuration (its wire form)
//   mode.json              {"mode": "" or a mode name, "stopped": false}
//   vault.sealed           the vault, encrypted (agent/snapshot.h says with which key);
//                          absent when the vault is empty
//   extensions/FILE        each file of CAP_HOME/extensions/ (one NAME.zip per extension)
//
// Reading verifies everything before the caller may change anything: the zip reads, it
// holds snapshot.json in a known format, every member is listed with its sha256 and matches
// it, nothing unlisted is present, the configuration zip reads, and every extension its
// cap.json names is in the snapshot.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cap::store {

inline constexpr int kSnapshotFormat = 1;

struct Snapshot {
  // Metadata (snapshot.json).
  int format = kSnapshotFormat;
  std::string agent_version;
  std::string agent_name;
  std::string created_at;  // ISO 8601 UTC
  std::string configuration_name;
  // Members.
  std::string configuration_zip;
  std::string mode;  // "" for the default entry rule set
  bool stopped = false;
  std::string vault_sealed;                       // "" when the vault is empty
  std::map<std::string, std::string> extensions;  // file name ("NAME.zip") -> bytes
};

/// A member's name, size and sha256, for inspection.
struct SnapshotMember {
  std::string name;
  uint64_t size = 0;
  std::string sha256;
};

/// Packs `s` (computing every hash and snapshot.json). False with `error`.
bool write_snapshot(const Snapshot& s, std::string* zip, std::string* error);

/// Reads and verifies a snapshot (see above). False with `error` saying what is wrong:
/// "not a valid zip (...)", "unknown snapshot format N", "hash mismatch: member M ...",
/// "missing extension: ...", and so on. `members` (optional) receives the member list.
bool read_snapshot(std::string_view zip, Snapshot* out, std::string* error,
                   std::vector<SnapshotMember>* members = nullptr);

/// Whether `name` may be a file in the extensions folder: 1-200 characters of
/// A-Z a-z 0-9 . _ - not starting with '.'.
bool valid_extension_file_name(std::string_view name);

/// A pointer object ("latest"): names the snapshot URL to use instead.
std::string make_snapshot_pointer(std::string_view url);
/// When `data` is a pointer object, sets `url` and returns true.
bool read_snapshot_pointer(std::string_view data, std::string* url);

}  // namespace cap::store

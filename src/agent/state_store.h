// The agent's state in CAP_HOME: the configurations it keeps and which one is active.
//
//   CAP_HOME/configurations/<id>.zip   the wire form of each kept configuration
//   CAP_HOME/state.json                active id, mode, stopped flag, the history (the last
//                                      10 activations, each with the zip's sha256)
//
// Every write is crash-safe (durable_file.h). Reading verifies: a state file that does not
// parse or lacks its fields, or a zip whose sha256 differs from the recorded one, is set
// aside as *.corrupt and reported, never run. Not thread-safe: the activator serialises use.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cap/value.h"

namespace cap::agent {

struct HistoryEntry {
  std::string id, name, sha256;
  int64_t activated_at_ms = 0;
};

struct AgentState {
  std::string active;  // "" when blank
  std::string mode;    // "" for the default entry rule set
  bool stopped = false;
  uint64_t sequence = 0;              // the last sequence number handed out
  std::vector<HistoryEntry> history;  // oldest first; the active one is among them

  const HistoryEntry* find(std::string_view id) const;
};

inline constexpr size_t kKeptConfigurations = 10;

class StateStore {
 public:
  explicit StateStore(std::string home);

  /// Creates CAP_HOME and its configurations/ folder. False with `error`.
  bool open(std::string* error);
  /// The saved state. A missing file gives a blank state; a corrupt one is set aside, a
  /// line saying so is added to `problems`, and a blank state is returned.
  AgentState load(std::vector<std::string>* problems);
  /// Writes state.json, then removes the zips the history no longer names.
  bool save(const AgentState& state, std::string* error);

  /// A new configuration id: the first 12 hex digits of the zip's sha256, '-', and the next
  /// sequence number (which `state` records).
  static std::string new_id(AgentState& state, std::string_view sha256_hex);
  /// Stores a zip crash-safely under configurations/.
  bool write_configuration(const std::string& id, std::string_view zip, std::string* error);
  /// Reads a kept zip and checks it against `expected_sha256`; a zip that does not match is
  /// set aside as corrupt and reported in `error`.
  bool read_configuration(const std::string& id, const std::string& expected_sha256,
                          std::string* zip, std::string* error);
  /// Appends an activation to the history (moving `entry.id` to the end when it was
  /// there) and trims it to kKeptConfigurations.
  static void record_activation(AgentState& state, HistoryEntry entry);

  const std::string& home() const { return home_; }
  std::string configuration_path(const std::string& id) const;

 private:
  std::string home_;
  std::string state_path_;
  std::string configurations_dir_;
  // Ids of the history as last loaded or saved: only these zips may be pruned, so zips a
  // torn state file no longer names are never deleted.
  std::set<std::string> known_ids_;
};

/// "2024-05-01T12:00:00.123Z".
std::string iso8601_utc(int64_t ms);
/// A configuration id is safe as a file name: [A-Za-z0-9-], 1..64 characters.
bool valid_configuration_id(std::string_view id);

}  // namespace cap::agent

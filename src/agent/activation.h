// Activation: turning a configuration zip into what the web port serves, and keeping
// CAP_HOME in step.
//
// Every change follows the same order: check and compile everything first (validation,
// the startup rule set), then persist (zip, then state.json), then publish a new Serving.
// A failure at any step before publishing leaves both the running state and CAP_HOME as
// they were. Methods are serialised by a mutex; the management API calls them from its
// command thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "agent/serving.h"
#include "agent/state_store.h"
#include "cap/engine.h"

namespace cap::agent {

struct CommandResult {
  int status = 200;   // the HTTP status the management API answers with
  std::string error;  // when status != 200
  std::vector<std::string> details;
  std::vector<std::string> warnings;
  std::string id;  // the configuration now active (activate, rollback)
};

/// A failed result with `status`, `error` and `details`.
CommandResult command_failure(int status, std::string error,
                              std::vector<std::string> details = {});

class Activator {
 public:
  Activator(StateStore& store, const RuleRegistry& registry, HostServices services,
            ServingSlot& slot);

  /// At start: resumes the last active configuration after verifying it, with its mode and
  /// stopped flag, or stays blank. Problems are logged and never stop the agent.
  void restore();

  /// PUT /v1/configuration. 200 with the new id; 422 with every error (the zip does not
  /// read, validation, the startup rule set); 500 when CAP_HOME cannot be written. The new
  /// configuration starts in its default mode with its rules running (a deploy ends a stop).
  /// A snapshot restore passes the `mode` ("" = default; 422 when the configuration has no
  /// such mode) and `stopped` flag to start in.
  CommandResult activate(std::string_view zip, std::string_view mode = {}, bool stopped = false);
  /// POST /v1/configuration/rollback: reactivates a kept configuration (`id`, or "" for
  /// the one active before the current one). 404 for an unknown id.
  CommandResult rollback(std::string_view id);
  /// POST /v1/configuration/stop and start.
  CommandResult set_stopped(bool stopped);
  /// PUT /v1/mode: "" or "default" for the normal entry rule set.
  CommandResult set_mode(std::string_view mode);

  /// Where mode changes made by rules (SwitchMode) are saved: `post` runs a task off the
  /// request path (the management command thread). Call before restore().
  void set_background(std::function<void(std::function<void()>)> post) { post_ = std::move(post); }

  /// Checks cap.json "extensions" entries at every build (LoadOptions::check_extension).
  /// Call before restore().
  void set_extension_check(
      std::function<std::string(std::string_view name, std::string_view version)> check) {
    check_extension_ = std::move(check);
  }
  /// Rebuilds the active configuration from its kept zip with the rules registered now
  /// (after an extension changed) and publishes it with the same id, mode and stopped flag.
  /// 200 also when blank; 422 with every error when it no longer builds (the running one
  /// stays).
  CommandResult reload_active();
  /// The active configuration (null when blank).
  std::shared_ptr<const Configuration> active_configuration() const;

  /// The history, newest first: [{id, name, sha256, activated_at, active}].
  Value history() const;
  /// The active configuration's zip. False when blank or unreadable.
  bool active_zip(std::string* zip, std::string* error) const;
  /// The active configuration's zip, name, saved mode and stopped flag, read together (for
  /// snapshots). False with `error` when blank or unreadable.
  bool active_state(std::string* zip, std::string* name, std::string* mode, bool* stopped,
                    std::string* error) const;

 private:
  struct Built {
    std::shared_ptr<Runtime> runtime;
    CommandResult problem;  // status != 200 when building failed
  };
  Built build(std::string_view zip, const std::string& sha256) const;
  /// Saves a mode a rule switched to, when `runtime` is still the active one.
  void remember_mode(const std::weak_ptr<Runtime>& runtime, const std::string& mode);
  std::shared_ptr<Serving> serving_for(const std::shared_ptr<Runtime>& runtime,
                                       const HistoryEntry& entry, bool stopped);
  CommandResult persist_and_publish(AgentState next, std::shared_ptr<const Serving> serving);

  StateStore& store_;
  const RuleRegistry& registry_;
  HostServices services_;
  ServingSlot& slot_;
  mutable std::mutex mu_;
  AgentState state_;
  uint64_t last_serial_ = 0;  // Serving::runtime_serial of the last runtime built
  std::function<void(std::function<void()>)> post_;
  std::function<std::string(std::string_view, std::string_view)> check_extension_;
};

}  // namespace cap::agent

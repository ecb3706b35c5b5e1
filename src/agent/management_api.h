// The management API on CAP_MGMT_PORT (DESIGN §5).
//
// On the server's loop thread a command is checked (allow list, then signature, then the
// route: 403, 401, 404, 405); it then runs on the command thread, one at a time and in
// order, and answers through a Deferred. Answers are JSON; errors are
// {"error": "...", "details": [...]}. Every refusal writes a log line naming the method,
// the path, the peer and the reason, never the key or the signature.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "agent/activation.h"
#include "agent/extension_store.h"
#include "agent/management_auth.h"
#include "agent/metrics.h"
#include "agent/serving.h"
#include "agent/settings.h"
#include "agent/snapshot.h"
#include "agent/vault.h"
#include "agent/work_queue.h"
#include "net/http_server.h"

namespace cap::agent {

class ManagementApi {
 public:
  ManagementApi(const Settings& settings, Activator& activator, ServingSlot& slot,
                AgentVault& vault, Metrics& metrics, WorkQueue& commands);
  /// Sets up the allow list and the key. False with `error` when CAP_MGMT_ALLOW is invalid.
  bool configure(std::string* error);
  /// The server's handler.
  void handle(net::Exchange& ex);
  /// Serves /v1/extensions from `store` (set before serving).
  void set_extensions(ExtensionStore* store) { extensions_ = store; }
  /// GET and PUT /v1/snapshot go to `snapshots` (which must outlive the API); without one
  /// they answer 501.
  void set_snapshots(SnapshotService* snapshots) { snapshots_ = snapshots; }

  /// One command: views into the server's buffers, valid until it is answered.
  struct Command {
    std::string_view method, target, path, query, body;
  };
  /// An answer (owned data).
  struct Answer {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
  };

 private:
  Answer run(const Command& c);
  Answer status() const;
  Answer configuration_put(const Command& c);
  Answer configuration_get() const;
  Answer rollback(const Command& c);
  Answer mode_put(const Command& c);
  Answer vault_put(const Command& c);
  Answer trace_post(const Command& c);
  Answer trace_get() const;
  Answer stats() const;
  Answer logs_list() const;
  Answer log_file(const Command& c, std::string_view name) const;
  Answer metrics() const;
  Answer extension_change(const Command& c, std::string_view name);
  Answer snapshot(const Command& c);

  const Settings& settings_;
  Activator& activator_;
  ServingSlot& slot_;
  AgentVault& vault_;
  Metrics& metrics_;
  WorkQueue& commands_;
  ManagementAuth auth_;
  ExtensionStore* extensions_ = nullptr;
  SnapshotService* snapshots_ = nullptr;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace cap::agent

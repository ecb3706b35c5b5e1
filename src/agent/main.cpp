// cap-agent: serves the active configuration on the web port, takes signed commands on the
// management port, keeps its state in CAP_HOME (DESIGN §5).
//
// Start-up: settings, logs, state (resume the last active configuration or stay blank),
// the two servers. SIGTERM or SIGINT: stop accepting, finish the requests in flight (25 s
// at most), exit 0.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>

#include "agent/activation.h"
#include "agent/announce.h"
#include "agent/durable_file.h"
#include "agent/extension_store.h"
#include "agent/logging.h"
#include "agent/management_api.h"
#include "agent/metrics.h"
#include "agent/serving.h"
#include "agent/settings.h"
#include "agent/snapshot.h"
#include "agent/state_store.h"
#include "agent/vault.h"
#include "agent/web_handler.h"
#include "agent/work_queue.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/stop_signals.h"
#include "rules/network.h"
#include "store/sql.h"

namespace {

constexpr auto kDrainTimeout = std::chrono::seconds(25);
constexpr size_t kMaxWaitingRequests = 10000;

/// The SQL service's options: credentials and pool size from the settings.
cap::store::SqlHubOptions sql_hub_options(const cap::agent::Settings& s) {
  cap::store::SqlHubOptions o;
  o.credentials = {s.db_user, s.db_password};
  o.pool.max_connections = s.db_pool_size;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cap::agent;
  Settings settings;
  int exit_code = 0;
  if (!parse_settings(argc, argv, &settings, &exit_code)) return exit_code;
  sigset_t stop_signals = cap::net::block_stop_signals();
  // cap.json reads these as ${env:CAP_DB_URL} and the like: flags count as the variables.
  if (!settings.db_url.empty()) ::setenv("CAP_DB_URL", settings.db_url.c_str(), 1);
  ::setenv("CAP_SHARED_DIR", settings.shared_dir.c_str(), 1);

  std::string error;
  if (!setup_logging({settings.home + "/logs", settings.log_format == "json", settings.log_level},
                     &error))
    agent_log().warn("logging to stdout only: {}", error);
  auto& log = agent_log();
  log.info("cap-agent {} starting: name {}, home {}, web port {}, management port {}{}, {} workers",
           CAP_VERSION, settings.agent_name, settings.home, settings.web_port, settings.mgmt_port,
           settings.mgmt_tls_cert.empty() ? "" : " (TLS)", settings.workers);

  if (settings.mgmt_key.empty())
    log.warn("no CAP_MGMT_KEY: the management API refuses every command but GET /v1/health");
  else if (settings.mgmt_key.size() < 16)
    log.warn(
        "CAP_MGMT_KEY is shorter than 16 characters: use a long random key "
        "(for example 32 random bytes as hex)");
  if (!settings.console_url.empty() && settings.join_token.empty())
    log.warn("CAP_CONSOLE_URL is set without CAP_JOIN_TOKEN: the agent does not announce itself");

  StateStore store(settings.home);
  if (!store.open(&error)) {
    log.error("cannot use CAP_HOME: {}", error);
    shutdown_logging();
    return 1;
  }
  if (!ensure_dir(settings.shared_dir, &error)) log.warn("shared folder: {}", error);

  AgentVault vault(settings.home);
  if (!vault.load(&error)) log.error("vault: {}; starting with an empty vault", error);

  cap::net::HttpClientPool client;
  cap::SystemClock clock;
  RuleLogger rule_logger;
  cap::LocalFiles files(settings.shared_dir);
  cap::HostServices services;
  services.logger = &rule_logger;
  services.clock = &clock;
  services.vault = &vault;
  services.http = &client;
  services.files = &files;
  cap::store::SqlHub sql(sql_hub_options(settings));
  services.sql = &sql;

  cap::RuleRegistry registry;
  cap::register_base_rules(registry);

  ServingSlot slot;
  Activator activator(store, registry, services, slot);

  Metrics metrics;
  metrics.add_section(
      "databases", [&sql](std::string& out) { sql.append_prometheus(out); },
      [&sql] { return sql.stats_value(); });
  WorkQueue wait_pool(settings.wait_threads, kMaxWaitingRequests);
  WorkQueue commands(1);  // declared after the activator: it finishes its tasks first
  activator.set_background(
      [&commands](std::function<void()> task) { commands.post(std::move(task)); });
  ExtensionStore extensions(settings.home, registry, activator);
  activator.set_extension_check([&extensions](std::string_view name, std::string_view version) {
    return extensions.check(name, version);
  });
  extensions.load_all();
  activator.restore();

  // S3_GOLD_MASTER: the snapshot replaces whatever CAP_HOME held, before anything listens.
  SnapshotService snapshots(settings, activator, vault);
  snapshots.reload_extensions = [&extensions](std::string* why) { return extensions.reload(why); };
  if (!settings.gold_master.empty() &&
      !snapshots.restore_gold_master(settings.gold_master, &error)) {
    log.error("gold master {}: cannot restore, stopping: {}", settings.gold_master, error);
    shutdown_logging();
    return 1;
  }

  WebHandler web_handler(slot, metrics, client, wait_pool,
                         WebOptions{settings.origin_timeout_ms, settings.request_log});
  cap::net::ServerOptions web_options;
  web_options.address = settings.web_address;
  web_options.port = settings.web_port;
  web_options.threads = settings.workers;
  web_options.max_header_bytes = settings.max_header_bytes;
  web_options.max_body_bytes = settings.max_body_bytes;
  web_options.max_stream_bytes = settings.max_stream_bytes;
  web_options.stream_request_bodies = [&web_handler] { return web_handler.streams_bodies(); };
  web_options.read_timeout = std::chrono::milliseconds(settings.read_timeout_ms);
  web_options.idle_timeout = std::chrono::milliseconds(settings.idle_timeout_ms);
  web_options.name = "web";
  web_options.log = [](std::string_view m) { web_log().warn("web server: {}", m); };
  cap::net::HttpServer web(web_options, [&](cap::net::Exchange& ex) { web_handler.handle(ex); });

  ManagementApi api(settings, activator, slot, vault, metrics, commands);
  api.set_extensions(&extensions);
  api.set_snapshots(&snapshots);
  if (!api.configure(&error)) {
    log.error("CAP_MGMT_ALLOW is not valid: {}", error);
    shutdown_logging();
    return 2;
  }
  cap::net::ServerOptions mgmt_options;
  mgmt_options.address = settings.mgmt_address;
  mgmt_options.port = settings.mgmt_port;
  mgmt_options.threads = 1;
  mgmt_options.max_body_bytes = settings.max_mgmt_body_bytes;
  mgmt_options.read_timeout = std::chrono::milliseconds(std::max(settings.read_timeout_ms, 60000));
  mgmt_options.tls_cert_file = settings.mgmt_tls_cert;
  mgmt_options.tls_key_file = settings.mgmt_tls_key;
  mgmt_options.name = "management";
  mgmt_options.json_errors = true;
  mgmt_options.log = [](std::string_view m) { agent_log().warn("management server: {}", m); };
  cap::net::HttpServer mgmt(mgmt_options, [&](cap::net::Exchange& ex) { api.handle(ex); });

  if (!web.start(&error)) {
    log.error("cannot serve the web port {}: {}", settings.web_port, error);
    shutdown_logging();
    return 1;
  }
  if (!mgmt.start(&error)) {
    log.error("cannot serve the management port {}: {}", settings.mgmt_port, error);
    web.stop_accepting();
    web.drain(std::chrono::seconds(1));
    shutdown_logging();
    return 1;
  }
  log.info("serving: web on {}:{}, management on {}:{}", settings.web_address, web.port(),
           settings.mgmt_address, mgmt.port());
  std::unique_ptr<Announcer> announcer;
  if (!settings.console_url.empty() && !settings.join_token.empty()) {
    const char* host = std::getenv("CAP_ADVERTISE_HOST");
    announcer = std::make_unique<Announcer>(
        Announcement{settings.console_url, settings.join_token, settings.agent_name,
                     host ? host : "", mgmt.port(), web.port(), !settings.mgmt_tls_cert.empty()},
        client);
    announcer->start();
  }

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  log.info("{} received: stopping; finishing the requests in flight (up to {} s)",
           sig == SIGTERM ? "SIGTERM" : "SIGINT", kDrainTimeout.count());
  web.stop_accepting();
  mgmt.stop_accepting();
  web_handler.close_streams();  // MCP event streams never end on their own
  auto started = std::chrono::steady_clock::now();
  bool drained = web.drain(kDrainTimeout);
  auto left = kDrainTimeout - (std::chrono::steady_clock::now() - started);
  drained = mgmt.drain(std::max<std::chrono::milliseconds>(
                std::chrono::duration_cast<std::chrono::milliseconds>(left),
                std::chrono::milliseconds(500))) &&
            drained;
  if (!drained) {
    // Requests still running past the limit: leave without waiting for them.
    log.warn("stopped with requests still in flight after {} s", kDrainTimeout.count());
    shutdown_logging();
    std::_Exit(0);
  }
  wait_pool.shutdown();
  commands.shutdown();
  log.info("stopped");
  shutdown_logging();
  return 0;
}

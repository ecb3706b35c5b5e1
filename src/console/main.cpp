// cap-console: the REST API and the web UI (DESIGN §7).
//
// Start-up: settings from the environment, CAP_CONSOLE_HOME (created 0700), the
// installation key, the database (SQLite in the home, or CAP_CONSOLE_DB) with its
// migrations, the first admin, the status poller, the HTTP server. Requests are read on the
// server's event loop and handled on a pool of worker threads, where database and agent
// calls may block. SIGTERM or SIGINT: stop accepting, finish what is in flight, exit 0.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "console/console.h"
#include "net/http_server.h"
#include "net/stop_signals.h"

#ifndef CAP_CONSOLE_SOURCE_UI_DIR
#define CAP_CONSOLE_SOURCE_UI_DIR ""
#endif

namespace {

using namespace cap::console;

constexpr const char* kUsage =
    "cap-console: the CAP console (REST API under /api/v1/, web UI at /)\n"
    "\n"
    "Configured by the environment:\n"
    "  CAP_CONSOLE_PORT      port (8000; 0 picks a free one)\n"
    "  CAP_CONSOLE_ADDRESS   address to listen on (0.0.0.0)\n"
    "  CAP_CONSOLE_HOME      state folder (./console-home): installation key, SQLite file\n"
    "  CAP_CONSOLE_DB        postgresql://user:password@host:5432/db (default: SQLite in the "
    "home)\n"
    "  CAP_ADMIN_PASSWORD    the first admin's password (default: generated, printed once)\n"
    "  CAP_CONSOLE_UI_DIR    the built web UI (default: <bin>/../share/cap/console, else the\n"
    "                        source tree's web/console/dist)\n"
    "  CAP_CONSOLE_TLS_CERT, CAP_CONSOLE_TLS_KEY   serve HTTPS\n"
    "  CAP_CONSOLE_POLL_MS   agent status poll interval (5000)\n"
    "  CAP_CONSOLE_SESSION_TTL, CAP_CONSOLE_TOKEN_TTL   lifetimes in seconds (28800, 2592000)\n"
    "  CAP_CONSOLE_MAX_UPLOAD_BYTES   largest request body (67108864)\n"
    "  CAP_CONSOLE_LOGIN_ATTEMPTS, CAP_CONSOLE_LOGIN_LOCKOUT   failed logins before a lockout\n"
    "                        of that many seconds (5, 300)\n"
    "  CAP_ECS_CLUSTER, CAP_ECS_SERVICE, CAP_ECS_AGENT_KEY, CAP_ECS_TARGET_GROUP_ARN...\n"
    "                        follow an ECS service and roll deploys through its target group\n"
    "                        (docs/aws.md)\n"
    "See docs/console.md.\n";

std::string default_ui_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = exe.parent_path().parent_path() / "share" / "cap" / "console";
    if (std::filesystem::exists(installed / "index.html", ec)) return installed.string();
  }
  return CAP_CONSOLE_SOURCE_UI_DIR;
}

Request to_request(cap::net::Exchange& ex) {
  Request r;
  r.method = ex.method();
  r.target = ex.target();
  size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  r.body = ex.body();
  r.remote = ex.remote_addr();
  r.secure = ex.secure();
  for (auto& h : ex.headers()) {
    std::string name(h.name);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    r.headers.emplace_back(std::move(name), std::string(h.value));
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--version") {
      std::cout << "cap-console " << CAP_VERSION << "\n";
      return 0;
    }
    std::cerr << "cap-console: unknown argument " << a << " (it is configured by the environment; "
              << "see --help)\n";
    return 2;
  }
  sigset_t stop_signals = cap::net::block_stop_signals();
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ console: %v");

  Settings settings;
  std::string error;
  if (!settings_from_env(&settings, &error)) {
    spdlog::error("{}", error);
    return 2;
  }
  if (settings.ui_dir.empty()) settings.ui_dir = default_ui_dir();
  if (::mkdir(settings.home.c_str(), 0700) != 0 && errno != EEXIST) {
    spdlog::error("cannot create CAP_CONSOLE_HOME {}: {}", settings.home, std::strerror(errno));
    return 1;
  }
  if (!crypto_init()) {
    spdlog::error("libsodium cannot be initialised");
    return 1;
  }
  Sealer sealer;
  if (!sealer.load(settings.home, &error)) {
    spdlog::error("installation key: {}", error);
    return 1;
  }
  std::string db_url = settings.db_url.empty() ? settings.home + "/console.db" : settings.db_url;
  auto db = Db::open(db_url, &error);
  if (!db) {
    spdlog::error("{}", error);
    return 1;
  }
  spdlog::info("cap-console {} starting: home {}, database {} (schema version {})", CAP_VERSION,
               settings.home,
               db->dialect() == Dialect::Postgres ? redact_db_url(db_url) : "SQLite " + db_url,
               db->schema_version());

  Console console(settings, *db, sealer);
  try {
    console.ensure_admin();
  } catch (const std::exception& e) {
    spdlog::error("cannot create the first admin: {}", e.what());
    return 1;
  }
  console.start_poller();

  boost::asio::thread_pool workers(size_t(settings.workers));
  cap::net::ServerOptions options;
  options.address = settings.address;
  options.port = settings.port;
  options.threads = 2;
  options.max_body_bytes = settings.max_upload_bytes;
  options.read_timeout = std::chrono::milliseconds(60000);
  options.tls_cert_file = settings.tls_cert;
  options.tls_key_file = settings.tls_key;
  options.name = "console";
  options.json_errors = true;
  options.log = [](std::string_view m) { spdlog::warn("server: {}", m); };
  cap::net::HttpServer server(options, [&](cap::net::Exchange& ex) {
    auto req = std::make_shared<Request>(to_request(ex));
    auto deferred = std::make_shared<cap::net::Deferred>(ex.defer());
    boost::asio::post(workers, [&console, req, deferred] {
      Response r = console.handle(*req);
      deferred->respond(cap::net::ResponseView{r.status, r.content_type, r.headers, r.body, false});
    });
  });
  if (!server.start(&error)) {
    spdlog::error("cannot serve port {}: {}", settings.port, error);
    return 1;
  }
  spdlog::info("listening on {}://{}:{} (UI from {})", settings.tls_cert.empty() ? "http" : "https",
               settings.address, server.port(),
               settings.ui_dir.empty() ? "nowhere: not built" : settings.ui_dir);

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  spdlog::info("{} received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  server.stop_accepting();
  console.stop_poller();
  server.drain(std::chrono::seconds(25));
  workers.join();
  spdlog::info("stopped");
  return 0;
}

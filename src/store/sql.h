// The SQL service of the agent and capctl: one connection pool per database address,
// shared by every configuration that names it, kept across activations.
//
// PostgreSQL goes through libpq's non-blocking API: a rule's thread (a wait-pool thread,
// never an event loop: SQL rules have RuleSpec::may_wait) borrows a connection from a
// bounded pool, sends a prepared statement and polls the socket against the call's
// deadline, so a timeout cancels the statement instead of hanging. A connection that dies
// (the server restarted) is dropped; new ones are opened with exponential backoff (100 ms
// doubling to 2 s), and while the database is down calls fail at once with an error that
// names it, so rules take their `error` chain point. SQLite runs on the rule's thread
// under the database's own lock, in WAL mode.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cap/services.h"
#include "cap/value.h"
#include "store/sql_address.h"

namespace cap::store {

/// Counters of one database, for /metrics and the performance data.
struct DbStats {
  std::string name;     // the cap.json name that first used it
  std::string kind;     // "postgresql" or "sqlite"
  std::string address;  // DbAddress::display
  int pool_max = 0;     // connections at most
  int open = 0;         // connections open now
  int in_use = 0;       // of those, lent to a statement now
  bool up = true;       // false while the last connection attempt failed
  uint64_t statements = 0, errors = 0, timeouts = 0;
  uint64_t waits = 0;       // statements that waited for a free connection
  uint64_t wait_nanos = 0;  // total time spent so waiting
  uint64_t connects = 0, connect_failures = 0;
};

/// One database (a pool of connections to one address).
class Database {
 public:
  virtual ~Database() = default;
  virtual SqlResult run(const SqlCall& call) = 0;
  virtual DbStats stats() const = 0;
};

struct PoolOptions {
  int max_connections = 8;            // per PostgreSQL address
  int prepared_per_connection = 256;  // statements kept prepared on each connection
};

/// A bounded pool of PostgreSQL connections (postgres.cpp).
std::unique_ptr<Database> open_postgres(std::string name, DbAddress address, PoolOptions options);
/// A SQLite database file (sqlite.cpp); opened on first use.
std::unique_ptr<Database> open_sqlite(std::string name, DbAddress address);

struct SqlHubOptions {
  Credentials credentials;  // CAP_DB_USER, CAP_DB_PASSWORD
  PoolOptions pool;
};

class SqlHub : public SqlService {
 public:
  explicit SqlHub(SqlHubOptions options);
  ~SqlHub() override;
  /// Runs on the pool of `call.url` (opened on first use).
  SqlResult run(const SqlCall& call) override;
  /// Every database used so far.
  std::vector<DbStats> stats() const;
  /// Prometheus text (cap_db_* series, one label set per database).
  void append_prometheus(std::string& out) const;
  /// The performance data: a list of maps, one per database.
  Value stats_value() const;

 private:
  SqlHubOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Database>, std::less<>> databases_;  // by address
};

}  // namespace cap::store

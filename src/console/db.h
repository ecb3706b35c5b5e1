// The console's database layer: one connection to SQLite (the default, a file in
// CAP_CONSOLE_HOME) or PostgreSQL (CAP_CONSOLE_DB=postgresql://...), used one session at a
// time, with versioned migrations (schema.cpp).
//
// SQL is written once for both: parameters are $1, $2, ... in order of first use (SQLite
// numbers "$N" parameters by first appearance), times are BIGINT unix milliseconds,
// booleans are INTEGER 0/1 and binary data goes through DbBlob. Calls block: the console
// makes them from its worker threads, never from the HTTP event loops.
//
// Failures throw DbError; a session that was not committed rolls back when it ends.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cap::console {

/// Binary data (zips, ciphertexts): BLOB in SQLite, BYTEA in PostgreSQL.
struct DbBlob {
  std::string data;
};
using DbParam = std::variant<std::nullptr_t, int64_t, std::string, DbBlob>;

/// One result row: every column as text (blobs as their raw bytes), nullopt for NULL.
struct DbRow {
  std::vector<std::optional<std::string>> cols;
  bool null(size_t i) const { return !cols.at(i).has_value(); }
  /// The column's text ("" for NULL).
  const std::string& text(size_t i) const;
  /// The column as an integer (0 for NULL).
  int64_t integer(size_t i) const;
};
using DbRows = std::vector<DbRow>;

class DbError : public std::runtime_error {
 public:
  DbError(const std::string& what, bool unique_violation = false)
      : std::runtime_error(what), unique_violation_(unique_violation) {}
  /// A UNIQUE or PRIMARY KEY constraint refused the row (a duplicate).
  bool unique_violation() const { return unique_violation_; }

 private:
  bool unique_violation_;
};

enum class Dialect { Sqlite, Postgres };

/// A raw connection (SQLite or libpq). Not thread-safe: Db serialises its use.
class DbConnection {
 public:
  virtual ~DbConnection() = default;
  virtual Dialect dialect() const = 0;
  /// Runs one statement. Throws DbError.
  virtual DbRows query(std::string_view sql, const std::vector<DbParam>& params) = 0;
  /// Runs statements without parameters (several separated by ';' allowed). Throws DbError.
  virtual void exec_script(std::string_view sql) = 0;
};

class Db;

/// Exclusive use of the connection for as long as it lives. begin() starts a transaction;
/// commit() ends it; a transaction still open when the session ends is rolled back.
class DbSession {
 public:
  DbSession(Db& db);
  ~DbSession();
  DbSession(const DbSession&) = delete;
  DbSession& operator=(const DbSession&) = delete;

  void begin();
  void commit();
  /// One statement with parameters. Throws DbError.
  DbRows query(std::string_view sql, const std::vector<DbParam>& params = {});
  /// The first row, or nullopt.
  std::optional<DbRow> one(std::string_view sql, const std::vector<DbParam>& params = {});
  Dialect dialect() const;

 private:
  std::unique_lock<std::mutex> lock_;
  DbConnection& conn_;
  bool in_tx_ = false;
};

class Db {
 public:
  /// Opens `url`: "postgresql://..." or "postgres://..." (libpq), "sqlite:///path" or a
  /// plain path (SQLite, created when missing), then applies pending migrations. Returns
  /// null with `error` (credentials removed from it) when that fails.
  static std::unique_ptr<Db> open(const std::string& url, std::string* error);
  Dialect dialect() const { return conn_->dialect(); }
  /// The schema version after migrations.
  int schema_version() const { return schema_version_; }

 private:
  friend class DbSession;
  explicit Db(std::unique_ptr<DbConnection> c) : conn_(std::move(c)) {}
  std::mutex mu_;
  std::unique_ptr<DbConnection> conn_;
  int schema_version_ = 0;
};

/// Applies the migrations newer than the database's version, each in its own transaction.
/// Returns the resulting version. Throws DbError. (schema.cpp)
int migrate(Db& db);

/// `url` with any password replaced by "***" (for log lines and errors).
std::string redact_db_url(const std::string& url);

}  // namespace cap::console

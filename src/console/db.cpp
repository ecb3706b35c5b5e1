#include "console/db.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdlib>

namespace cap::console {

const std::string& DbRow::text(size_t i) const {
  static const std::string empty;
  const auto& c = cols.at(i);
  return c ? *c : empty;
}

int64_t DbRow::integer(size_t i) const {
  const auto& c = cols.at(i);
  if (!c || c->empty()) return 0;
  return std::strtoll(c->c_str(), nullptr, 10);
}

std::string redact_db_url(const std::string& url) {
  // scheme://user:password@host -> scheme://user:***@host
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  size_t at = url.find('@', scheme + 3);
  if (at == std::string::npos) return url;
  size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

namespace {

// ---------------------------------------------------------------------------------------
// SQLite

class SqliteConnection : public DbConnection {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  ~SqliteConnection() override { sqlite3_close_v2(db_); }
  Dialect dialect() const override { return Dialect::Sqlite; }

  DbRows query(std::string_view sql, const std::vector<DbParam>& params) override {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), int(sql.size()), &st, nullptr) != SQLITE_OK)
      fail("prepare");
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = int(i + 1);
      int rc = SQLITE_OK;
      const DbParam& p = params[i];
      if (std::holds_alternative<std::nullptr_t>(p))
        rc = sqlite3_bind_null(st, idx);
      else if (auto* n = std::get_if<int64_t>(&p))
        rc = sqlite3_bind_int64(st, idx, *n);
      else if (auto* s = std::get_if<std::string>(&p))
        rc = sqlite3_bind_text64(st, idx, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      else {
        auto& b = std::get<DbBlob>(p).data;
        rc = sqlite3_bind_blob64(st, idx, b.data(), b.size(), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) fail("bind");
    }
    DbRows rows;
    for (;;) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) fail("step");
      DbRow row;
      int n = sqlite3_column_count(st);
      row.cols.reserve(size_t(n));
      for (int c = 0; c < n; ++c) {
        if (sqlite3_column_type(st, c) == SQLITE_NULL) {
          row.cols.emplace_back(std::nullopt);
          continue;
        }
        const void* data = sqlite3_column_blob(st, c);
        int len = sqlite3_column_bytes(st, c);
        row.cols.emplace_back(std::string(static_cast<const char*>(data ? data : ""), size_t(len)));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  void exec_script(std::string_view sql) override {
    std::string s(sql);
    char* err = nullptr;
    if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      throw DbError("SQLite: " + msg);
    }
  }

 private:
  [[noreturn]] void fail(const char* step) {
    int ext = sqlite3_extended_errcode(db_);
    bool unique = ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY;
    throw DbError(std::string("SQLite ") + step + ": " + sqlite3_errmsg(db_), unique);
  }
  sqlite3* db_;
};

std::unique_ptr<DbConnection> open_sqlite(const std::string& path, std::string* error) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    *error = "cannot open the SQLite database " + path + ": " +
             (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, 5000);
  auto conn = std::make_unique<SqliteConnection>(db);
  try {
    conn->exec_script(
        "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;");
  } catch (const DbError& e) {
    *error = "cannot set up the SQLite database " + path + ": " + e.what();
    return nullptr;
  }
  return conn;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL (libpq, blocking calls on the console's worker threads)

constexpr Oid kByteaOid = 17;

std::string unhex_bytea(const char* text, size_t len) {
  // Text output of bytea: "\x" followed by hex digits.
  if (len < 2 || text[0] != '\\' || text[1] != 'x') return std::string(text, len);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
  };
  std::string out;
  out.reserve((len - 2) / 2);
  for (size_t i = 2; i + 1 < len; i += 2)
    out.push_back(char((nibble(text[i]) << 4) | nibble(text[i + 1])));
  return out;
}

class PgConnection : public DbConnection {
 public:
  explicit PgConnection(PGconn* c) : conn_(c) {}
  ~PgConnection() override { PQfinish(conn_); }
  Dialect dialect() const override { return Dialect::Postgres; }

  DbRows query(std::string_view sql, const std::vector<DbParam>& params) override {
    ensure_connected();
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size()), formats(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const DbParam& p = params[i];
      if (std::holds_alternative<std::nullptr_t>(p)) {
        values[i] = nullptr;
        continue;
      }
      if (auto* n = std::get_if<int64_t>(&p))
        storage[i] = std::to_string(*n);
      else if (auto* s = std::get_if<std::string>(&p))
        storage[i] = *s;
      else {
        storage[i] = std::get<DbBlob>(p).data;
        formats[i] = 1;  // binary: the bytes as they are
      }
      values[i] = storage[i].data();
      lengths[i] = int(storage[i].size());
    }
    std::string q(sql);
    PGresult* res = PQexecParams(conn_, q.c_str(), int(params.size()), nullptr, values.data(),
                                 lengths.data(), formats.data(), 0);
    std::unique_ptr<PGresult, void (*)(PGresult*)> guard(res, PQclear);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      bool unique = state && std::string_view(state) == "23505";
      throw DbError(std::string("PostgreSQL: ") + PQresultErrorMessage(res), unique);
    }
    DbRows rows;
    int n = PQntuples(res), cols = PQnfields(res);
    rows.reserve(size_t(n));
    for (int r = 0; r < n; ++r) {
      DbRow row;
      row.cols.reserve(size_t(cols));
      for (int c = 0; c < cols; ++c) {
        if (PQgetisnull(res, r, c)) {
          row.cols.emplace_back(std::nullopt);
          continue;
        }
        const char* v = PQgetvalue(res, r, c);
        size_t len = size_t(PQgetlength(res, r, c));
        if (PQftype(res, c) == kByteaOid)
          row.cols.emplace_back(unhex_bytea(v, len));
        else
          row.cols.emplace_back(std::string(v, len));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  void exec_script(std::string_view sql) override {
    ensure_connected();
    std::string q(sql);
    PGresult* res = PQexec(conn_, q.c_str());
    std::unique_ptr<PGresult, void (*)(PGresult*)> guard(res, PQclear);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
      throw DbError(std::string("PostgreSQL: ") + PQresultErrorMessage(res));
  }

 private:
  void ensure_connected() {
    if (PQstatus(conn_) == CONNECTION_OK) return;
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK)
      throw DbError(std::string("PostgreSQL connection lost: ") + PQerrorMessage(conn_));
  }
  PGconn* conn_;
};

void pg_notice(void*, const char*) {}  // NOTICEs (IF NOT EXISTS) are not for the console's log

std::unique_ptr<DbConnection> open_postgres(const std::string& url, std::string* error) {
  PGconn* c = PQconnectdb(url.c_str());
  if (!c || PQstatus(c) != CONNECTION_OK) {
    *error = "cannot connect to PostgreSQL at " + redact_db_url(url) + ": " +
             (c ? PQerrorMessage(c) : "out of memory");
    while (!error->empty() && (error->back() == '\n' || error->back() == ' ')) error->pop_back();
    if (c) PQfinish(c);
    return nullptr;
  }
  PQsetNoticeProcessor(c, pg_notice, nullptr);
  return std::make_unique<PgConnection>(c);
}

}  // namespace

DbSession::DbSession(Db& db) : lock_(db.mu_), conn_(*db.conn_) {}

DbSession::~DbSession() {
  if (in_tx_) {
    try {
      conn_.exec_script("ROLLBACK");
    } catch (...) {
    }
  }
}

void DbSession::begin() {
  conn_.exec_script("BEGIN");
  in_tx_ = true;
}

void DbSession::commit() {
  conn_.exec_script("COMMIT");
  in_tx_ = false;
}

DbRows DbSession::query(std::string_view sql, const std::vector<DbParam>& params) {
  return conn_.query(sql, params);
}

std::optional<DbRow> DbSession::one(std::string_view sql, const std::vector<DbParam>& params) {
  DbRows rows = conn_.query(sql, params);
  if (rows.empty()) return std::nullopt;
  return std::move(rows.front());
}

Dialect DbSession::dialect() const { return conn_.dialect(); }

std::unique_ptr<Db> Db::open(const std::string& url, std::string* error) {
  std::unique_ptr<DbConnection> conn;
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    conn = open_postgres(url, error);
  } else {
    std::string path = url.starts_with("sqlite://") ? url.substr(9) : url;
    conn = open_sqlite(path, error);
  }
  if (!conn) return nullptr;
  std::unique_ptr<Db> db(new Db(std::move(conn)));
  try {
    db->schema_version_ = migrate(*db);
  } catch (const DbError& e) {
    *error = std::string("database migration failed: ") + e.what();
    return nullptr;
  }
  return db;
}

}  // namespace cap::console

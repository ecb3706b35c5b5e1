// SQLite: one connection per file, used under a lock by the rule's thread (off the event
// loops), statements prepared once and kept, WAL mode so readers in other processes
// (capctl, a second agent on the same host) do not block writers.
#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <mutex>
#include <unordered_map>

#include "store/sql.h"

namespace cap::store {
namespace {

using Clock = std::chrono::steady_clock;

class SqliteDb : public Database {
 public:
  SqliteDb(std::string name, DbAddress address)
      : name_(std::move(name)), address_(std::move(address)) {}
  ~SqliteDb() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    if (db_) sqlite3_close(db_);
  }

  SqlResult run(const SqlCall& call) override {
    statements_run_.fetch_add(1, std::memory_order_relaxed);
    SqlResult r;
    const auto deadline = Clock::now() + std::chrono::milliseconds(call.timeout_ms);
    std::unique_lock lock(mu_, std::defer_lock);
    if (!lock.try_lock_for(std::chrono::milliseconds(call.timeout_ms))) {
      waits_.fetch_add(1, std::memory_order_relaxed);
      r.error = "timed out waiting for the database";
      r.timed_out = true;
      return fail(std::move(r));
    }
    if (!db_ && !open(&r.error)) return fail(std::move(r));
    int count = 0;
    if (!count_placeholders(call.sql, &count, &r.error)) return fail(std::move(r));
    size_t nargs = call.args ? call.args->size() : 0;
    if (static_cast<size_t>(count) != nargs) {
      r.error = placeholder_mismatch(count, nargs);
      return fail(std::move(r));
    }
    sqlite3_stmt* stmt = prepare(call.sql, &r.error);
    if (!stmt) return fail(std::move(r));
    for (size_t i = 0; i < nargs; ++i) bind(stmt, static_cast<int>(i + 1), (*call.args)[i]);
    deadline_ = deadline;
    sqlite3_progress_handler(db_, 1000, &SqliteDb::progress, this);
    int rc;
    int cols = sqlite3_column_count(stmt);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (r.rows.size() >= call.max_rows) {
        r.truncated = true;
        break;
      }
      Map m;
      m.reserve(static_cast<size_t>(cols));
      for (int c = 0; c < cols; ++c) m.set(sqlite3_column_name(stmt, c), column(stmt, c));
      r.rows.emplace_back(std::move(m));
    }
    sqlite3_progress_handler(db_, 0, nullptr, nullptr);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
      r.ok = true;
      r.affected = cols == 0 ? sqlite3_changes(db_) : 0;
    } else if (rc == SQLITE_INTERRUPT) {
      r.error = "timed out";
      r.timed_out = true;
    } else {
      r.error = sqlite3_errmsg(db_);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (!r.ok) return fail(std::move(r));
    return r;
  }

  DbStats stats() const override {
    DbStats s;
    s.name = name_;
    s.kind = "sqlite";
    s.address = address_.display;
    s.pool_max = 1;
    s.open = open_.load(std::memory_order_relaxed) ? 1 : 0;
    s.statements = statements_run_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    s.timeouts = timeouts_.load(std::memory_order_relaxed);
    s.waits = waits_.load(std::memory_order_relaxed);
    s.connects = s.open;
    return s;
  }

 private:
  static int progress(void* self) {
    return Clock::now() > static_cast<SqliteDb*>(self)->deadline_ ? 1 : 0;
  }

  SqlResult fail(SqlResult r) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (r.timed_out) timeouts_.fetch_add(1, std::memory_order_relaxed);
    r.error = "database '" + name_ + "' (" + address_.display + "): " + r.error;
    return r;
  }

  bool open(std::string* error) {
    int rc =
        sqlite3_open_v2(address_.sqlite_path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      *error = std::string("cannot open: ") + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
      sqlite3_close(db_);
      db_ = nullptr;
      return false;
    }
    sqlite3_busy_timeout(db_, 5000);
    sqlite3_exec(db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
    open_.store(true, std::memory_order_relaxed);
    return true;
  }

  sqlite3_stmt* prepare(std::string_view sql, std::string* error) {
    std::string key(sql);
    if (auto it = statements_.find(key); it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
      *error = sqlite3_errmsg(db_);
      return nullptr;
    }
    if (!stmt) {
      *error = "the SQL holds no statement";
      return nullptr;
    }
    for (; tail && *tail; ++tail) {
      if (!std::isspace(static_cast<unsigned char>(*tail)) && *tail != ';') {
        sqlite3_finalize(stmt);
        *error = "the SQL holds more than one statement; run each with its own rule";
        return nullptr;
      }
    }
    if (statements_.size() >= 256) {
      for (auto& [s, st] : statements_) sqlite3_finalize(st);
      statements_.clear();
    }
    statements_.emplace(std::move(key), stmt);
    return stmt;
  }

  static void bind(sqlite3_stmt* stmt, int i, const Value& v) {
    switch (v.type()) {
      case Type::Null:
        sqlite3_bind_null(stmt, i);
        break;
      case Type::Boolean:
        sqlite3_bind_int(stmt, i, v.as_bool() ? 1 : 0);
        break;
      case Type::Number: {
        double d = v.as_number();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18)
          sqlite3_bind_int64(stmt, i, static_cast<sqlite3_int64>(d));
        else
          sqlite3_bind_double(stmt, i, d);
        break;
      }
      case Type::Bytes: {
        const std::string& b = v.as_bytes().data;
        sqlite3_bind_blob64(stmt, i, b.data(), b.size(), SQLITE_TRANSIENT);
        break;
      }
      default: {
        std::string text = v.to_text();
        sqlite3_bind_text64(stmt, i, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      }
    }
  }

  static Value column(sqlite3_stmt* stmt, int c) {
    switch (sqlite3_column_type(stmt, c)) {
      case SQLITE_INTEGER:
        return Value(static_cast<int64_t>(sqlite3_column_int64(stmt, c)));
      case SQLITE_FLOAT:
        return Value(sqlite3_column_double(stmt, c));
      case SQLITE_BLOB: {
        const void* p = sqlite3_column_blob(stmt, c);
        int n = sqlite3_column_bytes(stmt, c);
        return Value(Bytes{std::string(static_cast<const char*>(p), static_cast<size_t>(n))});
      }
      case SQLITE_NULL:
        return Value();
      default: {
        const unsigned char* p = sqlite3_column_text(stmt, c);
        int n = sqlite3_column_bytes(stmt, c);
        return Value(std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)));
      }
    }
  }

  const std::string name_;
  const DbAddress address_;
  std::timed_mutex mu_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
  Clock::time_point deadline_;
  std::atomic<bool> open_{false};
  std::atomic<uint64_t> statements_run_{0}, errors_{0}, timeouts_{0}, waits_{0};
};

}  // namespace

std::unique_ptr<Database> open_sqlite(std::string name, DbAddress address) {
  return std::make_unique<SqliteDb>(std::move(name), std::move(address));
}

}  // namespace cap::store

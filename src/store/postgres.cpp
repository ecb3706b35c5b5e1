// PostgreSQL through libpq's non-blocking API: see sql.h for the shape.
#include <poll.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <unordered_map>

#include "store/libpq.h"
#include "store/sql.h"

namespace cap::store {
namespace {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// Type OIDs (pg_type.h) that become numbers, booleans, JSON or bytes; the rest is text.
constexpr Oid kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kOid = 26, kJson = 114,
              kFloat4 = 700, kFloat8 = 701, kNumeric = 1700, kJsonb = 3802;

constexpr auto kBackoffStart = std::chrono::milliseconds(100);
constexpr auto kBackoffMax = std::chrono::milliseconds(2000);

std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "unknown error" : s;
}

int millis_left(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

/// Waits until the socket is ready for `events`; false on timeout.
bool wait_socket(int fd, short events, Deadline deadline) {
  for (;;) {
    int ms = millis_left(deadline);
    if (ms == 0) return false;
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let libpq report the error
  }
}

struct PgFree {
  void operator()(PGconn* c) const { PQfinish(c); }
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, PgFree>;

struct Conn {
  std::unique_ptr<PGconn, PgFree> pg;
  std::unordered_map<std::string, std::string> prepared;  // rule SQL -> statement name
  int next_statement = 0;
};

/// The outcome of waiting for a command's results.
enum class Wait { Done, Timeout, Broken };

Value column_value(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return Value();
  const char* text = PQgetvalue(r, row, col);
  int len = PQgetlength(r, row, col);
  switch (PQftype(r, col)) {
    case kBool:
      return Value(text[0] == 't');
    case kInt2:
    case kInt4:
    case kInt8:
    case kOid:
    case kFloat4:
    case kFloat8:
    case kNumeric: {
      char* end = nullptr;
      double d = std::strtod(text, &end);
      if (end && *end == '\0') return Value(d);
      return Value(std::string(text, static_cast<size_t>(len)));  // NaN, Infinity as text
    }
    case kJson:
    case kJsonb: {
      std::string error;
      Value v = json_parse(std::string_view(text, static_cast<size_t>(len)), &error);
      if (error.empty()) return v;
      return Value(std::string(text, static_cast<size_t>(len)));
    }
    case kBytea: {
      size_t n = 0;
      unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &n);
      if (!raw) return Value();
      Bytes b{std::string(reinterpret_cast<char*>(raw), n)};
      PQfreemem(raw);
      return Value(std::move(b));
    }
    default:
      return Value(std::string(text, static_cast<size_t>(len)));
  }
}

bool sqlstate_is(const PGresult* r, const char* code) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return state && std::string_view(state) == code;
}

class PgPool : public Database {
 public:
  PgPool(std::string name, DbAddress address, PoolOptions options)
      : name_(std::move(name)), address_(std::move(address)), options_(options) {
    for (auto& [k, v] : address_.params) {
      keywords_.push_back(k.c_str());
      values_.push_back(v.c_str());
    }
    keywords_.push_back(nullptr);
    values_.push_back(nullptr);
  }

  SqlResult run(const SqlCall& call) override {
    const Deadline deadline = Clock::now() + std::chrono::milliseconds(call.timeout_ms);
    statements_.fetch_add(1, std::memory_order_relaxed);
    SqlResult r;
    std::string pg_sql;
    int count = 0;
    if (!number_placeholders(call.sql, &pg_sql, &count, &r.error)) return fail(std::move(r));
    size_t nargs = call.args ? call.args->size() : 0;
    if (static_cast<size_t>(count) != nargs) {
      r.error = placeholder_mismatch(count, nargs);
      return fail(std::move(r));
    }
    std::unique_ptr<Conn> conn = acquire(deadline, &r);
    if (!conn) return fail(std::move(r));
    bool healthy = execute(*conn, pg_sql, call, deadline, &r);
    release(std::move(conn), healthy);
    if (!r.ok) return fail(std::move(r));
    return r;
  }

  DbStats stats() const override {
    DbStats s;
    s.name = name_;
    s.kind = "postgresql";
    s.address = address_.display;
    s.pool_max = options_.max_connections;
    {
      std::lock_guard lock(mu_);
      s.open = open_;
      s.in_use = open_ - static_cast<int>(idle_.size());
      s.up = up_;
    }
    s.statements = statements_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    s.timeouts = timeouts_.load(std::memory_order_relaxed);
    s.waits = waits_.load(std::memory_order_relaxed);
    s.wait_nanos = wait_nanos_.load(std::memory_order_relaxed);
    s.connects = connects_.load(std::memory_order_relaxed);
    s.connect_failures = connect_failures_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  SqlResult fail(SqlResult r) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (r.timed_out) timeouts_.fetch_add(1, std::memory_order_relaxed);
    r.ok = false;
    r.error = "database '" + name_ + "' (" + address_.display + "): " + r.error;
    return r;
  }

  /// A connection for one statement: an idle one that still answers, a new one while the
  /// pool has room (unless the database is in backoff), else wait for one to come back.
  std::unique_ptr<Conn> acquire(Deadline deadline, SqlResult* r) {
    std::unique_lock lock(mu_);
    bool waited = false;
    auto wait_start = Clock::now();
    for (;;) {
      while (!idle_.empty()) {
        std::unique_ptr<Conn> c = std::move(idle_.back());
        idle_.pop_back();
        // Reads what the server sent while the connection was idle: a server that shut
        // down has said goodbye, and the connection is dropped before use.
        if (PQconsumeInput(c->pg.get()) && PQstatus(c->pg.get()) == CONNECTION_OK) {
          note_wait(waited, wait_start);
          return c;
        }
        --open_;
      }
      if (open_ < options_.max_connections) {
        auto now = Clock::now();
        if (now < retry_at_) {
          note_wait(waited, wait_start);
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now).count();
          r->error =
              "unreachable: " + last_error_ + " (next attempt in " + std::to_string(ms) + " ms)";
          return nullptr;
        }
        ++open_;
        lock.unlock();
        note_wait(waited, wait_start);
        std::string error;
        bool timed_out = false;
        auto c = connect(deadline, &error, &timed_out);
        lock.lock();
        if (c) {
          up_ = true;
          backoff_ = kBackoffStart;
          return c;
        }
        --open_;
        connect_failures_.fetch_add(1, std::memory_order_relaxed);
        up_ = false;
        last_error_ = error;
        retry_at_ = Clock::now() + backoff_;
        backoff_ = std::min(backoff_ * 2,
                            std::chrono::duration_cast<std::chrono::milliseconds>(kBackoffMax));
        cv_.notify_all();
        r->error = "cannot connect: " + error;
        r->timed_out = timed_out;
        return nullptr;
      }
      waited = true;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= options_.max_connections) {
        note_wait(true, wait_start);
        r->error = "timed out waiting for a free connection (all " +
                   std::to_string(options_.max_connections) + " busy)";
        r->timed_out = true;
        return nullptr;
      }
    }
  }

  void note_wait(bool waited, Clock::time_point since) {
    if (!waited) return;
    waits_.fetch_add(1, std::memory_order_relaxed);
    wait_nanos_.fetch_add(
        static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count()),
        std::memory_order_relaxed);
  }

  void release(std::unique_ptr<Conn> c, bool healthy) {
    {
      std::lock_guard lock(mu_);
      if (healthy && PQstatus(c->pg.get()) == CONNECTION_OK &&
          PQtransactionStatus(c->pg.get()) == PQTRANS_IDLE) {
        idle_.push_back(std::move(c));
      } else {
        --open_;
        // A connection broke: the others were opened at the same time and are likely
        // broken too (a restart); each is checked again before its next use.
      }
    }
    cv_.notify_one();
  }

  std::unique_ptr<Conn> connect(Deadline deadline, std::string* error, bool* timed_out) {
    connects_.fetch_add(1, std::memory_order_relaxed);
    if (!load_libpq(error)) return nullptr;
    auto c = std::make_unique<Conn>();
    c->pg.reset(PQconnectStartParams(keywords_.data(), values_.data(), 0));
    if (!c->pg) {
      *error = "out of memory";
      return nullptr;
    }
    if (PQstatus(c->pg.get()) == CONNECTION_BAD) {
      *error = trimmed(PQerrorMessage(c->pg.get()));
      return nullptr;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
      if (st == PGRES_POLLING_OK) break;
      if (st == PGRES_POLLING_FAILED) {
        *error = trimmed(PQerrorMessage(c->pg.get()));
        return nullptr;
      }
      short events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
      if (!wait_socket(PQsocket(c->pg.get()), events, deadline)) {
        *error = "timed out connecting";
        *timed_out = true;
        return nullptr;
      }
      st = PQconnectPoll(c->pg.get());
    }
    if (PQsetnonblocking(c->pg.get(), 1) != 0) {
      *error = trimmed(PQerrorMessage(c->pg.get()));
      return nullptr;
    }
    return c;
  }

  /// Sends what libpq buffered, then reads until the command's results are complete.
  Wait wait_result(Conn& c, Deadline deadline) {
    PGconn* pg = c.pg.get();
    int fd = PQsocket(pg);
    for (;;) {
      int f = PQflush(pg);
      if (f < 0) return Wait::Broken;
      if (f == 0) break;
      if (!wait_socket(fd, POLLOUT | POLLIN, deadline)) return Wait::Timeout;
      if (!PQconsumeInput(pg)) return Wait::Broken;
    }
    while (PQisBusy(pg)) {
      if (!wait_socket(fd, POLLIN, deadline)) return Wait::Timeout;
      if (!PQconsumeInput(pg)) return Wait::Broken;
    }
    return Wait::Done;
  }

  /// Collects the results of one command; the first error wins. Needs wait_result first,
  /// and waits again between results.
  ResultPtr collect(Conn& c, Deadline deadline, Wait* w) {
    ResultPtr first;
    for (;;) {
      *w = wait_result(c, deadline);
      if (*w != Wait::Done) return nullptr;
      ResultPtr next(PQgetResult(c.pg.get()));
      if (!next) break;
      ExecStatusType st = PQresultStatus(next.get());
      bool next_failed = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE;
      if (!first || (next_failed && PQresultStatus(first.get()) != PGRES_FATAL_ERROR))
        first = std::move(next);
    }
    return first;
  }

  void cancel(Conn& c) {
    if (PGcancel* cancel = PQgetCancel(c.pg.get())) {
      char buf[256];
      PQcancel(cancel, buf, sizeof buf);
      PQfreeCancel(cancel);
    }
  }

  /// Runs the statement; true when the connection can be reused.
  bool execute(Conn& c, const std::string& pg_sql, const SqlCall& call, Deadline deadline,
               SqlResult* r) {
    PGconn* pg = c.pg.get();
    // Arguments: text for everything but bytes, which go as binary (bytea).
    size_t n = call.args ? call.args->size() : 0;
    std::vector<std::string> texts(n);
    std::vector<const char*> values(n);
    std::vector<int> lengths(n), formats(n);
    for (size_t i = 0; i < n; ++i) {
      const Value& v = (*call.args)[i];
      if (v.is_null()) {
        values[i] = nullptr;
        continue;
      }
      if (v.is_bool())
        texts[i] = v.as_bool() ? "true" : "false";
      else if (v.is_bytes()) {
        texts[i] = v.as_bytes().data;
        formats[i] = 1;
      } else
        texts[i] = v.to_text();
      values[i] = texts[i].c_str();
      lengths[i] = static_cast<int>(texts[i].size());
    }
    // Prepared once per connection; past the cache size, statements run unprepared.
    const std::string* statement = nullptr;
    auto it = c.prepared.find(pg_sql);
    if (it != c.prepared.end()) {
      statement = &it->second;
    } else if (static_cast<int>(c.prepared.size()) < options_.prepared_per_connection) {
      std::string stmt_name = "cap" + std::to_string(c.next_statement++);
      if (!PQsendPrepare(pg, stmt_name.c_str(), pg_sql.c_str(), static_cast<int>(n), nullptr))
        return broken(c, r);
      Wait w;
      ResultPtr res = collect(c, deadline, &w);
      if (w != Wait::Done) return w == Wait::Timeout ? timeout(c, r) : broken(c, r);
      if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
        r->error = trimmed(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(pg));
        return PQstatus(pg) == CONNECTION_OK;
      }
      statement = &c.prepared.emplace(pg_sql, std::move(stmt_name)).first->second;
    }
    int sent = statement ? PQsendQueryPrepared(pg, statement->c_str(), static_cast<int>(n),
                                               values.data(), lengths.data(), formats.data(), 0)
                         : PQsendQueryParams(pg, pg_sql.c_str(), static_cast<int>(n), nullptr,
                                             values.data(), lengths.data(), formats.data(), 0);
    if (!sent) return broken(c, r);
    Wait w;
    ResultPtr res = collect(c, deadline, &w);
    if (w != Wait::Done) return w == Wait::Timeout ? timeout(c, r) : broken(c, r);
    if (!res) {
      r->error = trimmed(PQerrorMessage(pg));
      return PQstatus(pg) == CONNECTION_OK;
    }
    ExecStatusType st = PQresultStatus(res.get());
    if (st == PGRES_TUPLES_OK) {
      int rows = PQntuples(res.get()), cols = PQnfields(res.get());
      size_t keep = std::min<size_t>(static_cast<size_t>(rows), call.max_rows);
      r->truncated = static_cast<size_t>(rows) > keep;
      r->rows.reserve(keep);
      for (size_t row = 0; row < keep; ++row) {
        Map m;
        m.reserve(static_cast<size_t>(cols));
        for (int col = 0; col < cols; ++col)
          m.set(PQfname(res.get(), col), column_value(res.get(), static_cast<int>(row), col));
        r->rows.emplace_back(std::move(m));
      }
      r->ok = true;
    } else if (st == PGRES_COMMAND_OK) {
      r->affected = std::atoll(PQcmdTuples(res.get()));
      r->ok = true;
    } else {
      r->error = trimmed(PQresultErrorMessage(res.get()));
      // A statement prepared on this connection that the server forgot (DISCARD ALL, a
      // schema change) is prepared again next time.
      if (statement && sqlstate_is(res.get(), "26000")) c.prepared.erase(pg_sql);
    }
    return PQstatus(pg) == CONNECTION_OK;
  }

  bool broken(Conn& c, SqlResult* r) {
    r->error = "connection lost: " + trimmed(PQerrorMessage(c.pg.get()));
    return false;
  }
  bool timeout(Conn& c, SqlResult* r) {
    cancel(c);
    r->error = "timed out";
    r->timed_out = true;
    return false;  // the connection may still be busy: drop it
  }

  const std::string name_;
  const DbAddress address_;
  const PoolOptions options_;
  std::vector<const char*> keywords_, values_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  int open_ = 0;  // idle and lent
  bool up_ = true;
  std::string last_error_;
  Clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_ = kBackoffStart;

  std::atomic<uint64_t> statements_{0}, errors_{0}, timeouts_{0}, waits_{0}, wait_nanos_{0},
      connects_{0}, connect_failures_{0};
};

}  // namespace

std::unique_ptr<Database> open_postgres(std::string name, DbAddress address, PoolOptions options) {
  return std::make_unique<PgPool>(std::move(name), std::move(address), options);
}

}  // namespace cap::store

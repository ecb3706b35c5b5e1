#include "store/sql.h"

namespace cap::store {

SqlHub::SqlHub(SqlHubOptions options) : options_(std::move(options)) {}
SqlHub::~SqlHub() = default;

SqlResult SqlHub::run(const SqlCall& call) {
  std::string_view url = call.url;
  if (url.empty()) {
    SqlResult r;
    r.error = "database '" + std::string(call.database) +
              "' has no address: its url in cap.json is empty";
    return r;
  }
  Database* db = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = databases_.find(url);
    if (it == databases_.end()) {
      DbAddress address;
      std::string error;
      if (!parse_db_address(url, options_.credentials, &address, &error)) {
        SqlResult r;
        r.error = "database '" + std::string(call.database) + "': " + error;
        return r;
      }
      std::string name(call.database);
      auto opened = address.kind == DbAddress::Kind::Postgres
                        ? open_postgres(std::move(name), std::move(address), options_.pool)
                        : open_sqlite(std::move(name), std::move(address));
      it = databases_.emplace(std::string(url), std::move(opened)).first;
    }
    db = it->second.get();  // databases are never removed while the hub lives
  }
  return db->run(call);
}

std::vector<DbStats> SqlHub::stats() const {
  std::vector<DbStats> out;
  std::lock_guard lock(mu_);
  for (auto& [url, db] : databases_) out.push_back(db->stats());
  return out;
}

namespace {

std::string label_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void SqlHub::append_prometheus(std::string& out) const {
  auto all = stats();
  if (all.empty()) return;
  struct Series {
    const char* name;
    const char* type;
    const char* help;
    double (*get)(const DbStats&);
  };
  static const Series series[] = {
      {"cap_db_pool_max", "gauge", "Connections a database pool may open.",
       [](const DbStats& s) { return double(s.pool_max); }},
      {"cap_db_pool_open", "gauge", "Connections open now.",
       [](const DbStats& s) { return double(s.open); }},
      {"cap_db_pool_in_use", "gauge", "Connections running a statement now.",
       [](const DbStats& s) { return double(s.in_use); }},
      {"cap_db_up", "gauge", "1 unless the last connection attempt failed.",
       [](const DbStats& s) { return s.up ? 1.0 : 0.0; }},
      {"cap_db_statements_total", "counter", "Statements run.",
       [](const DbStats& s) { return double(s.statements); }},
      {"cap_db_errors_total", "counter", "Statements that failed (timeouts included).",
       [](const DbStats& s) { return double(s.errors); }},
      {"cap_db_timeouts_total", "counter", "Statements that timed out.",
       [](const DbStats& s) { return double(s.timeouts); }},
      {"cap_db_pool_waits_total", "counter", "Statements that waited for a free connection.",
       [](const DbStats& s) { return double(s.waits); }},
      {"cap_db_pool_wait_seconds_total", "counter",
       "Time statements spent waiting for a connection.",
       [](const DbStats& s) { return double(s.wait_nanos) / 1e9; }},
      {"cap_db_connects_total", "counter", "Connection attempts.",
       [](const DbStats& s) { return double(s.connects); }},
      {"cap_db_connect_failures_total", "counter", "Connection attempts that failed.",
       [](const DbStats& s) { return double(s.connect_failures); }},
  };
  for (const Series& m : series) {
    out +=
        std::string("# HELP ") + m.name + " " + m.help + "\n# TYPE " + m.name + " " + m.type + "\n";
    for (const DbStats& s : all) {
      out += std::string(m.name) + "{database=\"" + label_value(s.name) + "\",kind=\"" + s.kind +
             "\"} ";
      append_number(out, m.get(s));
      out += "\n";
    }
  }
}

Value SqlHub::stats_value() const {
  List list;
  for (const DbStats& s : stats()) {
    Map m;
    m.set("name", Value(s.name));
    m.set("kind", Value(s.kind));
    m.set("address", Value(s.address));
    m.set("pool_max", Value(s.pool_max));
    m.set("open", Value(s.open));
    m.set("in_use", Value(s.in_use));
    m.set("up", Value(s.up));
    m.set("statements", Value(s.statements));
    m.set("errors", Value(s.errors));
    m.set("timeouts", Value(s.timeouts));
    m.set("waits", Value(s.waits));
    m.set("wait_ms", Value(static_cast<double>(s.wait_nanos) / 1e6));
    m.set("connects", Value(s.connects));
    m.set("connect_failures", Value(s.connect_failures));
    list.emplace_back(std::move(m));
  }
  return Value(std::move(list));
}

}  // namespace cap::store

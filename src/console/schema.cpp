// The console's schema as versioned migrations. A migration is applied once, in its own
// transaction, and recorded in schema_migrations; a new version of the console adds
// migrations at the end and never edits one that shipped.
//
// {{id}} becomes an auto-increment primary key and {{blob}} a binary column in the
// database's own dialect.
#include <chrono>
#include <string>
#include <vector>

#include "console/db.h"

namespace cap::console {

namespace {

struct Migration {
  int version;
  const char* description;
  std::vector<const char*> statements;
};

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> kMigrations = {
      {1,
       "users, roles, sessions, audit, agents, repositories, deployments, vault, extensions",
       {
           "CREATE TABLE users (id {{id}}, username TEXT NOT NULL UNIQUE, password_hash TEXT "
           "NOT NULL, type TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created_at "
           "BIGINT NOT NULL)",
           "CREATE TABLE roles (name TEXT PRIMARY KEY, description TEXT NOT NULL, rights TEXT "
           "NOT NULL, created_at BIGINT NOT NULL)",
           "CREATE TABLE user_roles (user_id BIGINT NOT NULL, role TEXT NOT NULL, PRIMARY KEY "
           "(user_id, role))",
           "CREATE TABLE auth_tokens (token_hash TEXT PRIMARY KEY, user_id BIGINT NOT NULL, kind "
           "TEXT NOT NULL, csrf TEXT, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)",
           "CREATE TABLE audit (id {{id}}, at BIGINT NOT NULL, username TEXT NOT NULL, remote "
           "TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL)",
           "CREATE TABLE agents (id TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, "
           "web_port INTEGER, key_sealed TEXT NOT NULL, type TEXT NOT NULL, grp TEXT NOT NULL, "
           "registered TEXT NOT NULL, created_at BIGINT NOT NULL)",
           "CREATE TABLE repositories (name TEXT PRIMARY KEY, description TEXT NOT NULL, "
           "created_by TEXT NOT NULL, created_at BIGINT NOT NULL)",
           "CREATE TABLE revisions (repository TEXT NOT NULL, configuration TEXT NOT NULL, "
           "number INTEGER NOT NULL, zip {{blob}} NOT NULL, sha256 TEXT NOT NULL, author TEXT "
           "NOT NULL, message TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY "
           "(repository, configuration, number))",
           "CREATE TABLE deployments (id {{id}}, configuration TEXT NOT NULL, revision INTEGER "
           "NOT NULL, sha256 TEXT NOT NULL, strategy TEXT NOT NULL, requested_by TEXT NOT NULL, "
           "created_at BIGINT NOT NULL, finished_at BIGINT, ok INTEGER, rollback_of BIGINT, "
           "results TEXT NOT NULL)",
           "CREATE TABLE agent_deployed (agent TEXT PRIMARY KEY, deployment BIGINT NOT NULL, "
           "configuration TEXT NOT NULL, revision INTEGER NOT NULL, sha256 TEXT NOT NULL, "
           "configuration_id TEXT NOT NULL, at BIGINT NOT NULL)",
           "CREATE TABLE vault (name TEXT PRIMARY KEY, sealed TEXT NOT NULL, fields TEXT NOT "
           "NULL, updated_by TEXT NOT NULL, updated_at BIGINT NOT NULL)",
           "CREATE TABLE extensions (name TEXT NOT NULL, version TEXT NOT NULL, zip {{blob}} NOT "
           "NULL, sha256 TEXT NOT NULL, manifest TEXT NOT NULL, uploaded_by TEXT NOT NULL, "
           "uploaded_at BIGINT NOT NULL, PRIMARY KEY (name, version))",
           "CREATE TABLE join_tokens (name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, "
           "grp TEXT NOT NULL, type TEXT NOT NULL, key_sealed TEXT NOT NULL, created_by TEXT "
           "NOT NULL, created_at BIGINT NOT NULL)",
       }},
      {2,
       "agents: the management port may use TLS",
       {
           "ALTER TABLE agents ADD COLUMN tls INTEGER NOT NULL DEFAULT 0",
       }},
  };
  return kMigrations;
}

std::string dialect_sql(std::string sql, Dialect d) {
  auto replace = [&](const std::string& from, const std::string& to) {
    for (size_t at = sql.find(from); at != std::string::npos; at = sql.find(from, at + to.size()))
      sql.replace(at, from.size(), to);
  };
  replace("{{id}}",
          d == Dialect::Postgres ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT");
  replace("{{blob}}", d == Dialect::Postgres ? "BYTEA" : "BLOB");
  return sql;
}

}  // namespace

int migrate(Db& db) {
  DbSession s(db);
  bool pg = s.dialect() == Dialect::Postgres;
  // Two consoles starting at once on one PostgreSQL database migrate one after the other.
  if (pg) s.query("SELECT pg_advisory_lock(72871001)");
  struct Unlock {
    DbSession& s;
    bool pg;
    ~Unlock() {
      if (pg) try {
          s.query("SELECT pg_advisory_unlock(72871001)");
        } catch (...) {
        }
    }
  } unlock{s, pg};
  s.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, description "
      "TEXT NOT NULL, applied_at BIGINT NOT NULL)");
  auto row = s.one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  int current = row ? int(row->integer(0)) : 0;
  for (const Migration& m : migrations()) {
    if (m.version <= current) continue;
    s.begin();
    for (const char* st : m.statements) s.query(dialect_sql(st, s.dialect()));
    s.query("INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
            {int64_t(m.version), std::string(m.description),
             int64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count())});
    s.commit();
    current = m.version;
  }
  return current;
}

}  // namespace cap::console

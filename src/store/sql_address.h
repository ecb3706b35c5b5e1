// Database addresses: the three forms of CAP_DB_URL (DESIGN §5) turned into what the
// drivers take, with credentials from CAP_DB_USER / CAP_DB_PASSWORD, and the `?`
// placeholders of rule SQL turned into PostgreSQL's `$n`.
//
//   postgresql://user:pw@host:5432/db?sslmode=require   (also postgres://)
//   jdbc:postgresql://host:5432/db                      (as a CloudFormation stack prints it)
//   sqlite:///absolute/path.db, sqlite:relative/path.db, sqlite::memory:
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cap::store {

struct Credentials {
  std::string user;      // used when the address names no user
  std::string password;  // used when the address holds no password
};

struct DbAddress {
  enum class Kind { Postgres, Sqlite };
  Kind kind = Kind::Postgres;
  /// PostgreSQL: libpq connection keywords and values (sslmode among them when given).
  std::vector<std::pair<std::string, std::string>> params;
  /// SQLite: the file path, or ":memory:".
  std::string sqlite_path;
  /// For logs, errors and metrics: host:port/db or the SQLite path; never credentials.
  std::string display;
};

/// Parses `url`. False with `error` (which never holds the password) when it is not one of
/// the three forms or libpq refuses it. A PostgreSQL address without connect_timeout gets 5 s.
bool parse_db_address(std::string_view url, const Credentials& credentials, DbAddress* out,
                      std::string* error);

/// Rewrites the `?` placeholders of `sql` as $1, $2, ... (PostgreSQL), leaving those in
/// string literals, quoted names, dollar-quoted text and comments alone. Returns the count in
/// `*count`. False with `error` when a quote or comment is not closed.
bool number_placeholders(std::string_view sql, std::string* out, int* count, std::string* error);

/// The error for `count` placeholders given `nargs` arguments ("the SQL has 2 ? placeholders
/// but 1 argument was given").
std::string placeholder_mismatch(int count, size_t nargs);

/// Counts the `?` placeholders the same way.
bool count_placeholders(std::string_view sql, int* count, std::string* error);

}  // namespace cap::store

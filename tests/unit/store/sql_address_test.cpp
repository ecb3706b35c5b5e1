// Database addresses (the three CAP_DB_URL forms) and placeholder numbering.
#include "store/sql_address.h"

#include <gtest/gtest.h>

namespace cap::store {
namespace {

std::string param(const DbAddress& a, const std::string& key) {
  for (auto& [k, v] : a.params)
    if (k == key) return v;
  return "(absent)";
}

TEST(DbAddress, PostgresUrlKeepsItsPartsAndSslmode) {
  DbAddress a;
  std::string error;
  ASSERT_TRUE(parse_db_address("postgresql://app:s3cret@db.internal:6432/shop?sslmode=verify-full",
                               {}, &a, &error))
      << error;
  EXPECT_EQ(a.kind, DbAddress::Kind::Postgres);
  EXPECT_EQ(param(a, "host"), "db.internal");
  EXPECT_EQ(param(a, "port"), "6432");
  EXPECT_EQ(param(a, "dbname"), "shop");
  EXPECT_EQ(param(a, "user"), "app");
  EXPECT_EQ(param(a, "password"), "s3cret");
  EXPECT_EQ(param(a, "sslmode"), "verify-full");
  EXPECT_EQ(param(a, "connect_timeout"), "5");
  EXPECT_EQ(a.display, "db.internal:6432/shop");
}

TEST(DbAddress, CredentialsFromTheEnvironmentFillOnlyWhatIsMissing) {
  DbAddress a;
  std::string error;
  ASSERT_TRUE(parse_db_address("postgres://h/db", {"envuser", "envpw"}, &a, &error));
  EXPECT_EQ(param(a, "user"), "envuser");
  EXPECT_EQ(param(a, "password"), "envpw");
  ASSERT_TRUE(parse_db_address("postgres://own:ownpw@h/db", {"envuser", "envpw"}, &a, &error));
  EXPECT_EQ(param(a, "user"), "own");
  EXPECT_EQ(param(a, "password"), "ownpw");
}

TEST(DbAddress, JdbcUrlAsTheStackPrintsIt) {
  DbAddress a;
  std::string error;
  ASSERT_TRUE(
      parse_db_address("jdbc:postgresql://cap-db.abc123.eu-west-1.rds.amazonaws.com:5432/cap",
                       {"cap", "pw"}, &a, &error))
      << error;
  EXPECT_EQ(param(a, "host"), "cap-db.abc123.eu-west-1.rds.amazonaws.com");
  EXPECT_EQ(param(a, "port"), "5432");
  EXPECT_EQ(param(a, "dbname"), "cap");
  EXPECT_EQ(param(a, "user"), "cap");
  EXPECT_EQ(a.display, "cap-db.abc123.eu-west-1.rds.amazonaws.com:5432/cap");
}

TEST(DbAddress, JdbcParametersAreTranslated) {
  DbAddress a;
  std::string error;
  ASSERT_TRUE(parse_db_address(
      "jdbc:postgresql://h:5432/db?ssl=true&connectTimeout=7&ApplicationName=cap%20agent", {}, &a,
      &error))
      << error;
  EXPECT_EQ(param(a, "sslmode"), "require");
  EXPECT_EQ(param(a, "connect_timeout"), "7");
  EXPECT_EQ(param(a, "application_name"), "cap agent");
  ASSERT_TRUE(
      parse_db_address("jdbc:postgresql://h/db?ssl=true&sslmode=verify-ca", {}, &a, &error));
  EXPECT_EQ(param(a, "sslmode"), "verify-ca");
}

TEST(DbAddress, UnknownJdbcParameterIsRefusedByName) {
  DbAddress a;
  std::string error;
  EXPECT_FALSE(parse_db_address("jdbc:postgresql://h/db?prepareThreshold=3", {}, &a, &error));
  EXPECT_NE(error.find("'prepareThreshold' is not supported"), std::string::npos) << error;
}

TEST(DbAddress, BadPostgresUrlErrorsNeverHoldThePassword) {
  DbAddress a;
  std::string error;
  EXPECT_FALSE(parse_db_address("postgresql://u:hunter2@h/db?nonsense=1", {}, &a, &error));
  EXPECT_NE(error.find("not valid"), std::string::npos) << error;
  EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
}

TEST(DbAddress, SqliteForms) {
  DbAddress a;
  std::string error;
  ASSERT_TRUE(parse_db_address("sqlite:///var/lib/cap/app.db", {}, &a, &error));
  EXPECT_EQ(a.kind, DbAddress::Kind::Sqlite);
  EXPECT_EQ(a.sqlite_path, "/var/lib/cap/app.db");
  ASSERT_TRUE(parse_db_address("sqlite:data/app.db", {}, &a, &error));
  EXPECT_EQ(a.sqlite_path, "data/app.db");
  ASSERT_TRUE(parse_db_address("sqlite::memory:", {}, &a, &error));
  EXPECT_EQ(a.sqlite_path, ":memory:");
  EXPECT_FALSE(parse_db_address("sqlite://host/app.db", {}, &a, &error));
  EXPECT_NE(error.find("sqlite:///absolute/path"), std::string::npos) << error;
  EXPECT_FALSE(parse_db_address("sqlite:", {}, &a, &error));
}

TEST(DbAddress, OtherSchemesAreRefused) {
  DbAddress a;
  std::string error;
  EXPECT_FALSE(parse_db_address("mysql://u:p@h/db", {}, &a, &error));
  EXPECT_NE(error.find("postgresql://, jdbc:postgresql:// or sqlite:"), std::string::npos);
  EXPECT_NE(error.find("'mysql:'"), std::string::npos) << error;
  EXPECT_EQ(error.find("u:p"), std::string::npos) << error;
  EXPECT_FALSE(parse_db_address("", {}, &a, &error));
}

TEST(Placeholders, NumberedOutsideQuotesAndComments) {
  std::string out, error;
  int n = 0;
  ASSERT_TRUE(number_placeholders(
      "SELECT '?', \"a?\", $q$ ? $q$, E'\\' ?', ? -- ?\n/* ? /* ? */ */ FROM t WHERE x = ? AND y=?",
      &out, &n, &error))
      << error;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(out,
            "SELECT '?', \"a?\", $q$ ? $q$, E'\\' ?', $1 -- ?\n/* ? /* ? */ */ FROM t WHERE x = $2 "
            "AND y=$3");
}

TEST(Placeholders, DoubledQuotesStayInside) {
  std::string out, error;
  int n = 0;
  ASSERT_TRUE(number_placeholders("SELECT 'it''s ?', ?", &out, &n, &error));
  EXPECT_EQ(n, 1);
  EXPECT_EQ(out, "SELECT 'it''s ?', $1");
}

TEST(Placeholders, UnclosedQuotesAreErrors) {
  std::string out, error;
  int n = 0;
  EXPECT_FALSE(number_placeholders("SELECT 'open ?", &out, &n, &error));
  EXPECT_NE(error.find("unclosed string"), std::string::npos);
  EXPECT_FALSE(count_placeholders("SELECT /* ?", &n, &error));
  EXPECT_NE(error.find("unclosed /*"), std::string::npos);
  EXPECT_FALSE(count_placeholders("SELECT $x$ ?", &n, &error));
}

}  // namespace
}  // namespace cap::store

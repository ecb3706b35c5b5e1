#include "store/sql_address.h"

#include <cctype>
#include <memory>

#include "cap/request.h"
#include "store/libpq.h"

namespace cap::store {
namespace {

/// Replaces every occurrence of `secret` in `text` (libpq may echo parts of the address).
std::string scrub(std::string text, std::string_view secret) {
  if (secret.empty()) return text;
  for (size_t at; (at = text.find(secret)) != std::string::npos;)
    text.replace(at, secret.size(), "***");
  return text;
}

/// The raw password part of a URL ("scheme://user:PASSWORD@host"), or "".
std::string_view url_password(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  std::string_view rest = url.substr(scheme + 3);
  size_t at = rest.find('@');
  if (at == std::string_view::npos) return {};
  std::string_view userinfo = rest.substr(0, at);
  size_t colon = userinfo.find(':');
  return colon == std::string_view::npos ? std::string_view() : userinfo.substr(colon + 1);
}

/// JDBC query parameters become libpq ones; unknown ones are refused rather than ignored.
bool translate_jdbc(std::string_view url, std::string* out, std::string* error) {
  std::string_view base = url, query;
  if (size_t q = url.find('?'); q != std::string_view::npos) {
    base = url.substr(0, q);
    query = url.substr(q + 1);
  }
  std::string params;
  bool has_sslmode = false, ssl = false;
  for (auto& [name, value] : parse_query(query)) {
    std::string key;
    if (name == "user" || name == "password" || name == "sslmode" || name == "sslrootcert" ||
        name == "sslcert" || name == "sslkey" || name == "options")
      key = name;
    else if (name == "connectTimeout")
      key = "connect_timeout";
    else if (name == "ApplicationName" || name == "applicationName")
      key = "application_name";
    else if (name == "ssl") {
      ssl = value == "true" || value.empty();
      continue;
    } else {
      *error = "the JDBC parameter '" + name +
               "' is not supported (supported: user, password, ssl, sslmode, sslrootcert, "
               "sslcert, sslkey, connectTimeout, ApplicationName, options)";
      return false;
    }
    has_sslmode = has_sslmode || key == "sslmode";
    std::string escaped;
    for (unsigned char c : value) {
      bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~';
      if (plain) {
        escaped += static_cast<char>(c);
      } else {
        static const char* hex = "0123456789ABCDEF";
        escaped += '%';
        escaped += hex[c >> 4];
        escaped += hex[c & 15];
      }
    }
    params += (params.empty() ? "" : "&") + key + "=" + escaped;
  }
  if (ssl && !has_sslmode) params += std::string(params.empty() ? "" : "&") + "sslmode=require";
  *out = "postgresql://" + std::string(base.substr(std::string_view("jdbc:postgresql://").size()));
  if (!params.empty()) *out += "?" + params;
  return true;
}

bool parse_postgres(std::string_view url, const Credentials& creds, DbAddress* out,
                    std::string* error) {
  std::string uri(url);
  if (url.rfind("jdbc:", 0) == 0 && !translate_jdbc(url, &uri, error)) return false;
  if (!load_libpq(error)) return false;
  char* err = nullptr;
  auto free_options = [](PQconninfoOption* o) { PQconninfoFree(o); };
  std::unique_ptr<PQconninfoOption, decltype(free_options)> opts(PQconninfoParse(uri.c_str(), &err),
                                                                 free_options);
  if (!opts) {
    std::string why = err ? err : "out of memory";
    if (err) PQfreemem(err);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    *error = "the PostgreSQL address is not valid: " + scrub(why, url_password(uri));
    return false;
  }
  out->kind = DbAddress::Kind::Postgres;
  out->params.clear();
  std::string host, port, dbname;
  bool has_user = false, has_password = false, has_timeout = false;
  for (PQconninfoOption* o = opts.get(); o->keyword; ++o) {
    if (!o->val) continue;
    std::string key = o->keyword, val = o->val;
    if (key == "host" || key == "hostaddr") host = host.empty() ? val : host;
    if (key == "port") port = val;
    if (key == "dbname") dbname = val;
    has_user = has_user || (key == "user" && !val.empty());
    has_password = has_password || (key == "password" && !val.empty());
    has_timeout = has_timeout || key == "connect_timeout";
    out->params.emplace_back(std::move(key), std::move(val));
  }
  if (!has_user && !creds.user.empty()) out->params.emplace_back("user", creds.user);
  if (!has_password && !creds.password.empty())
    out->params.emplace_back("password", creds.password);
  if (!has_timeout) out->params.emplace_back("connect_timeout", "5");
  out->display =
      (host.empty() ? "localhost" : host) + (port.empty() ? "" : ":" + port) + "/" + dbname;
  return true;
}

}  // namespace

bool parse_db_address(std::string_view url, const Credentials& creds, DbAddress* out,
                      std::string* error) {
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0 ||
      url.rfind("jdbc:postgresql://", 0) == 0)
    return parse_postgres(url, creds, out, error);
  if (url.rfind("sqlite:", 0) == 0) {
    std::string_view rest = url.substr(7);
    std::string path;
    if (rest == ":memory:") {
      path = ":memory:";
    } else if (rest.rfind("///", 0) == 0) {
      path = std::string(rest.substr(2));  // sqlite:///abs -> /abs
    } else if (rest.rfind("//", 0) == 0) {
      *error = "a SQLite address is sqlite:///absolute/path or sqlite:relative/path, not '" +
               std::string(url) + "'";
      return false;
    } else {
      path = std::string(rest);
    }
    if (path.empty() || path.find('?') != std::string::npos ||
        path.find('\0') != std::string::npos) {
      *error = "the SQLite address '" + std::string(url) + "' names no file";
      return false;
    }
    out->kind = DbAddress::Kind::Sqlite;
    out->params.clear();
    out->sqlite_path = path;
    out->display = path;
    return true;
  }
  std::string shown(url.substr(0, url.find(':') == std::string_view::npos ? 0 : url.find(':')));
  *error =
      "the database address must start with postgresql://, jdbc:postgresql:// or sqlite:" +
      (shown.empty() ? std::string() : std::string(" (this one starts with '") + shown + ":')");
  return false;
}

namespace {

/// Walks `sql`, calling `on_mark(pos)` for each `?` outside quotes and comments.
template <typename F>
bool scan_placeholders(std::string_view sql, F&& on_mark, std::string* error) {
  size_t i = 0, n = sql.size();
  while (i < n) {
    char c = sql[i];
    if (c == '\'' || c == '"') {
      bool backslashes = c == '\'' && i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e');
      size_t j = i + 1;
      for (;;) {
        if (j >= n) {
          *error = std::string("the SQL has an unclosed ") + (c == '\'' ? "string" : "quoted name");
          return false;
        }
        if (backslashes && sql[j] == '\\') {
          j += 2;
          continue;
        }
        if (sql[j] == c) {
          if (j + 1 < n && sql[j + 1] == c) {
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      i = j + 1;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      size_t e = sql.find('\n', i);
      i = e == std::string_view::npos ? n : e + 1;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      int depth = 1;
      size_t j = i + 2;
      while (j < n && depth > 0) {
        if (sql[j] == '/' && j + 1 < n && sql[j + 1] == '*') {
          ++depth;
          j += 2;
        } else if (sql[j] == '*' && j + 1 < n && sql[j + 1] == '/') {
          --depth;
          j += 2;
        } else {
          ++j;
        }
      }
      if (depth > 0) {
        *error = "the SQL has an unclosed /* comment";
        return false;
      }
      i = j;
    } else if (c == '$') {
      // $tag$ ... $tag$ (a tag is empty or a name); $1 and the like are left as they are.
      size_t j = i + 1;
      while (j < n && (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_')) ++j;
      bool is_tag = j < n && sql[j] == '$' &&
                    (j == i + 1 || !std::isdigit(static_cast<unsigned char>(sql[i + 1])));
      if (!is_tag) {
        i = j;
        continue;
      }
      std::string_view tag = sql.substr(i, j - i + 1);
      size_t end = sql.find(tag, j + 1);
      if (end == std::string_view::npos) {
        *error = "the SQL has an unclosed " + std::string(tag) + " quote";
        return false;
      }
      i = end + tag.size();
    } else {
      if (c == '?') on_mark(i);
      ++i;
    }
  }
  return true;
}

}  // namespace

bool number_placeholders(std::string_view sql, std::string* out, int* count, std::string* error) {
  out->clear();
  *count = 0;
  size_t copied = 0;
  bool ok = scan_placeholders(
      sql,
      [&](size_t pos) {
        out->append(sql.substr(copied, pos - copied));
        *out += "$" + std::to_string(++*count);
        copied = pos + 1;
      },
      error);
  out->append(sql.substr(copied));
  return ok;
}

std::string placeholder_mismatch(int count, size_t nargs) {
  return "the SQL has " + std::to_string(count) + " ? placeholder" + (count == 1 ? "" : "s") +
         " but " + std::to_string(nargs) + " argument" + (nargs == 1 ? " was" : "s were") +
         " given";
}

bool count_placeholders(std::string_view sql, int* count, std::string* error) {
  *count = 0;
  return scan_placeholders(
      sql, [&](size_t) { ++*count; }, error);
}

}  // namespace cap::store

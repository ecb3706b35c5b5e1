// Storage: SqlQuery, SqlExecute, FlightRecorder on the configuration's databases; FileRead,
// FileWrite, FileList and FileUpload under the shared folder.
//
// Every rule here reaches the world through HostServices (sql, files), so it runs the same
// in the agent, capctl and tests. SQL text is fixed at load: values travel only in `args`,
// bound to `?` placeholders by the driver, never spliced into the statement. A failure
// takes the rule's `error` chain point with the reason in SQL_ERROR or FILE_ERROR; when
// `error` is not wired the request fails instead, so a FailSafePoint above catches it.
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cap/engine.h"
#include "rules/forwarding.h"
#include "rules/groups.h"

namespace cap::rules {
namespace {

constexpr std::string_view kSqlError = "SQL_ERROR";
constexpr std::string_view kFileError = "FILE_ERROR";

// ---------------------------------------------------------------------------------------
// Shared checks

/// A number parameter within [lo, hi]; checked at load when constant.
bool check_constant_range(CompileContext& cc, std::string_view name, double lo, double hi) {
  const Param& p = cc.params()[name];
  if (!p.is_constant()) return true;
  const Value& v = p.constant_value();
  if (!v.is_number() || !std::isfinite(v.as_number()) || v.as_number() < lo || v.as_number() > hi) {
    cc.error(name, "must be a number from " + Value(lo).to_text() + " to " + Value(hi).to_text() +
                       ", got " + v.to_text());
    return false;
  }
  return true;
}

double range_value(const Param& p, ExecContext& ctx, std::string_view name, double lo, double hi) {
  double d = p.number(ctx);
  if (!std::isfinite(d) || d < lo || d > hi)
    throw EvalError(std::string(name) + " must be from " + Value(lo).to_text() + " to " +
                    Value(hi).to_text() + ", got " + Value(d).to_text());
  return d;
}

/// Reports a failure: the `error` chain point when wired (with the reason in `variable`),
/// else an EvalError that fails the request.
class Failure {
 public:
  Failure(CompileContext& cc, std::string_view variable)
      : slot_(cc.env().symbols.intern(variable)), wired_(cc.chain_wired("error")) {}
  int operator()(ExecContext& ctx, std::string message, int error_chain) const {
    ctx.vars.set(slot_, Value(message));
    if (!wired_) throw EvalError(std::move(message));
    return error_chain;
  }

 private:
  uint32_t slot_;
  bool wired_;
};

// ---------------------------------------------------------------------------------------
// SQL

/// The database and SQL of a node, checked at load.
struct SqlTarget {
  std::string database;
  std::string sql;
};

bool compile_sql_target(CompileContext& cc, SqlTarget* out) {
  bool ok = true;
  const Param& db = cc.params()["database"];
  if (!db.is_constant()) {
    cc.error("database", "must be a database name from cap.json `databases`, not a template");
    ok = false;
  } else {
    out->database = db.constant_value().to_text();
    if (!cc.databases().count(out->database)) {
      std::string names;
      for (auto& [k, v] : cc.databases()) names += (names.empty() ? "" : ", ") + k;
      cc.error("database",
               "no database '" + out->database + "' in cap.json `databases` (" +
                   (names.empty() ? std::string("it names none") : "it names " + names) + ")");
      ok = false;
    }
  }
  const Param& sql = cc.params()["sql"];
  if (!sql.is_constant()) {
    cc.error("sql",
             "must be fixed text: put values in `args` as ? placeholders (they are bound, "
             "never spliced), not ${...} in the SQL");
    ok = false;
  } else {
    out->sql = sql.constant_value().to_text();
    if (out->sql.find_first_not_of(" \t\r\n;") == std::string::npos) {
      cc.error("sql", "is empty");
      ok = false;
    }
  }
  const Param& args = cc.params()["args"];
  if (args.is_constant() && !args.constant_value().is_null() && !args.constant_value().is_list()) {
    cc.error("args", "must be a list of values for the ? placeholders");
    ok = false;
  }
  return ok && check_constant_range(cc, "timeout_ms", 1, 3600000);
}

const std::vector<ParamSpec>& sql_params() {
  static const std::vector<ParamSpec> params = {
      {"database", ParamType::String, true, {}, "A database name from cap.json `databases`.", {}},
      {"sql",
       ParamType::String,
       true,
       {},
       "The statement, with ? placeholders for the values (fixed text, no ${...}).",
       {}},
      {"args",
       ParamType::List,
       false,
       {},
       "Values for the ? placeholders, in order (templates; always bound, never spliced).",
       {}},
      {"timeout_ms",
       ParamType::Number,
       false,
       Value(10000),
       "Milliseconds for the whole call, waiting for a connection included.",
       {}},
  };
  return params;
}

class SqlRule : public Rule {
 public:
  SqlRule(CompileContext& cc, SqlTarget target, bool query)
      : target_(std::move(target)),
        args_(cc.params()["args"]),
        timeout_(cc.params()["timeout_ms"]),
        output_(cc.params()["output"]),
        query_(query),
        fail_(cc, kSqlError) {
    if (query) max_rows_ = cc.params()["max_rows"];
  }

  int execute(ExecContext& ctx) const override {
    SqlService* sql = ctx.services.sql;
    if (!sql) throw EvalError("this host has no SQL service");
    List args;
    if (args_.present()) {
      Value v = args_.value(ctx);
      if (v.is_list())
        args = v.as_list();
      else if (!v.is_null())
        throw EvalError("args must be a list, got a " + std::string(type_name(v.type())));
    }
    SqlCall call;
    call.database = target_.database;
    const auto& dbs = ctx.runtime().configuration().databases;
    auto it = dbs.find(target_.database);
    if (it != dbs.end()) call.url = it->second;
    call.sql = target_.sql;
    call.args = &args;
    call.timeout_ms = static_cast<int>(range_value(timeout_, ctx, "timeout_ms", 1, 3600000));
    if (query_)
      call.max_rows = static_cast<size_t>(range_value(max_rows_, ctx, "max_rows", 1, 1000000));
    SqlResult r = sql->run(call);
    int error_chain = query_ ? 2 : 1;
    if (!r.ok) {
      ctx.logger().log(LogLevel::Warn, r.error);
      return fail_(ctx, std::move(r.error), error_chain);
    }
    if (!query_) {
      ctx.vars.set(output_.slot(), Value(r.affected));
      return 0;
    }
    bool empty = r.rows.empty();
    ctx.vars.set(output_.slot(), Value(std::move(r.rows)));
    return empty ? 1 : 0;
  }

 private:
  SqlTarget target_;
  Param args_, timeout_, output_, max_rows_;
  bool query_;
  Failure fail_;
};

RuleSpec sql_query_spec() {
  RuleSpec s;
  s.name = "SqlQuery";
  s.group = "Storage";
  s.doc =
      "Runs a query on a database of cap.json `databases` and puts the rows into `output` as "
      "a list of maps (column name to value: numbers, booleans, text, JSON columns as values, "
      "binary columns as bytes). The values in `args` are bound to the ? placeholders of "
      "`sql` by the database driver, never spliced into it. At most `max_rows` rows are kept. "
      "Takes `ok` with rows, `empty` with none, and `error` when the database failed or is "
      "down (the reason in SQL_ERROR; when `error` is not wired the request fails, so a "
      "FailSafePoint catches it). The call waits, so a configuration using it runs its "
      "requests off the event loops.";
  s.params = sql_params();
  s.params.push_back({"output",
                      ParamType::Variable,
                      false,
                      Value("SQL_ROWS"),
                      "The variable that gets the rows.",
                      {}});
  s.params.push_back(
      {"max_rows", ParamType::Number, false, Value(1000), "Rows kept at most (1 to 1000000).", {}});
  s.chain_points = {"ok", "empty", "error"};
  s.may_wait = true;
  return s;
}

RuleSpec sql_execute_spec() {
  RuleSpec s;
  s.name = "SqlExecute";
  s.group = "Storage";
  s.doc =
      "Runs a statement (INSERT, UPDATE, DELETE, CREATE ...) on a database of cap.json "
      "`databases` and puts the number of rows it changed into `output`. The values in "
      "`args` are bound to the ? placeholders of `sql`, never spliced into it. Takes `ok`, or "
      "`error` when the database failed or is down (the reason in SQL_ERROR; when `error` is "
      "not wired the request fails, so a FailSafePoint catches it). The call waits, so a "
      "configuration using it runs its requests off the event loops.";
  s.params = sql_params();
  s.params.push_back({"output",
                      ParamType::Variable,
                      false,
                      Value("SQL_AFFECTED"),
                      "The variable that gets the number of rows changed.",
                      {}});
  s.chain_points = {"ok", "error"};
  s.may_wait = true;
  return s;
}

std::unique_ptr<Rule> make_sql(CompileContext& cc, bool query) {
  SqlTarget target;
  bool ok = compile_sql_target(cc, &target);
  if (query) ok = check_constant_range(cc, "max_rows", 1, 1000000) && ok;
  if (!ok) return nullptr;
  return std::make_unique<SqlRule>(cc, std::move(target), query);
}

// ---------------------------------------------------------------------------------------
// FlightRecorder

bool is_identifier(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

RuleSpec flight_recorder_spec() {
  RuleSpec s;
  s.name = "FlightRecorder";
  s.group = "Storage";
  s.doc =
      "Appends one row per transaction to `table` on a database of cap.json `databases`: "
      "recorded_at (milliseconds since 1970), method, uri, and `variables`, a JSON object of "
      "the chosen variables' values. Creates the table on first use (CREATE TABLE IF NOT "
      "EXISTS). Put it in the completion rule set to record every request. Takes `ok`, or "
      "`error` when the database failed (the reason in SQL_ERROR; when `error` is not wired "
      "the request fails).";
  s.params = {
      {"database", ParamType::String, true, {}, "A database name from cap.json `databases`.", {}},
      {"table",
       ParamType::String,
       false,
       Value("flight_recorder"),
       "The table: letters, digits and _, starting with a letter or _.",
       {}},
      {"variables", ParamType::List, true, {}, "The names of the variables to record.", {}},
      {"timeout_ms", ParamType::Number, false, Value(5000), "Milliseconds for the insert.", {}},
  };
  s.chain_points = {"ok", "error"};
  s.may_wait = true;
  return s;
}

class FlightRecorderRule : public Rule {
 public:
  FlightRecorderRule(CompileContext& cc, std::string database, const std::string& table,
                     std::vector<std::pair<std::string, uint32_t>> vars)
      : database_(std::move(database)),
        create_("CREATE TABLE IF NOT EXISTS \"" + table +
                "\" (recorded_at BIGINT NOT NULL, method TEXT, uri TEXT, variables TEXT)"),
        insert_("INSERT INTO \"" + table +
                "\" (recorded_at, method, uri, variables) VALUES (?, ?, ?, ?)"),
        vars_(std::move(vars)),
        timeout_(cc.params()["timeout_ms"]),
        fail_(cc, kSqlError) {}

  int execute(ExecContext& ctx) const override {
    SqlService* sql = ctx.services.sql;
    if (!sql) throw EvalError("this host has no SQL service");
    Map recorded;
    for (auto& [name, slot] : vars_) recorded.set(name, ctx.vars.get(slot));
    const Request* req = ctx.request();
    std::string_view target = req ? req->target : std::string_view();
    List args{Value(ctx.now_ms()), Value(req ? req->method : std::string_view()),
              Value(target.substr(0, target.find('?'))),
              Value(to_json(Value(std::move(recorded))))};
    SqlCall call;
    call.database = database_;
    const auto& dbs = ctx.runtime().configuration().databases;
    if (auto it = dbs.find(database_); it != dbs.end()) call.url = it->second;
    call.timeout_ms = static_cast<int>(range_value(timeout_, ctx, "timeout_ms", 1, 3600000));
    if (!created_.load(std::memory_order_acquire)) {
      call.sql = create_;
      SqlResult c = sql->run(call);
      if (!c.ok) return fail_(ctx, std::move(c.error), 1);
      created_.store(true, std::memory_order_release);
    }
    call.sql = insert_;
    call.args = &args;
    SqlResult r = sql->run(call);
    if (!r.ok) {
      ctx.logger().log(LogLevel::Warn, r.error);
      return fail_(ctx, std::move(r.error), 1);
    }
    return 0;
  }

 private:
  std::string database_, create_, insert_;
  std::vector<std::pair<std::string, uint32_t>> vars_;
  Param timeout_;
  Failure fail_;
  mutable std::atomic<bool> created_{false};
};

std::unique_ptr<Rule> make_flight_recorder(CompileContext& cc) {
  bool ok = check_constant_range(cc, "timeout_ms", 1, 3600000);
  std::string database;
  const Param& db = cc.params()["database"];
  if (!db.is_constant() || !cc.databases().count(db.constant_value().to_text())) {
    cc.error("database", "must name a database of cap.json `databases`");
    ok = false;
  } else {
    database = db.constant_value().to_text();
  }
  const Param& table = cc.params()["table"];
  std::string t = table.is_constant() ? table.constant_value().to_text() : "";
  if (!is_identifier(t)) {
    cc.error("table",
             "must be fixed text of letters, digits and _ (starting with a letter or _), "
             "at most 63 characters; got '" +
                 t + "'");
    ok = false;
  }
  std::vector<std::pair<std::string, uint32_t>> vars;
  const Param& vp = cc.params()["variables"];
  if (!vp.is_constant() || !vp.constant_value().is_list() ||
      vp.constant_value().as_list().empty()) {
    cc.error("variables", "must be a fixed, non-empty list of variable names");
    ok = false;
  } else {
    for (const Value& v : vp.constant_value().as_list()) {
      std::string name = v.to_text();
      if (!v.is_string() || name.empty()) {
        cc.error("variables", "each entry must be a variable name");
        ok = false;
        continue;
      }
      vars.emplace_back(name, cc.env().symbols.intern(name));
    }
  }
  if (!ok) return nullptr;
  return std::make_unique<FlightRecorderRule>(cc, database, t, std::move(vars));
}

// ---------------------------------------------------------------------------------------
// Files

Files& files_of(ExecContext& ctx) {
  if (!ctx.services.files) throw EvalError("this host has no shared folder");
  return *ctx.services.files;
}

std::string checked_path(const Param& p, ExecContext& ctx) {
  std::string path = p.text(ctx);
  while (path.rfind("./", 0) == 0) path.erase(0, 2);
  return path;
}

bool check_constant_path(CompileContext& cc, std::string_view name, bool allow_empty) {
  const Param& p = cc.params()[name];
  if (!p.is_constant()) return true;
  std::string path = p.constant_value().to_text();
  if (allow_empty && path.empty()) return true;
  if (!safe_relative_path(path)) {
    cc.error(name, "'" + path + "' must be relative to the shared folder, without '..'");
    return false;
  }
  return true;
}

RuleSpec file_read_spec() {
  RuleSpec s;
  s.name = "FileRead";
  s.group = "Storage";
  s.doc =
      "Reads a file of the shared folder (CAP_SHARED_DIR, the EFS mount on AWS) into "
      "`output`: as text, as bytes (for downloads), or parsed as JSON. `path` is relative to "
      "the shared folder; '..', absolute paths and links leading outside it are refused. "
      "Takes `ok`, `missing` when there is no such file, `error` otherwise (refused path, "
      "larger than max_bytes, bad JSON; the reason in FILE_ERROR; when `error` is not wired "
      "the request fails).";
  s.params = {
      {"path", ParamType::String, true, {}, "The file, relative to the shared folder.", {}},
      {"output",
       ParamType::Variable,
       false,
       Value("FILE_CONTENT"),
       "The variable that gets the content.",
       {}},
      {"format",
       ParamType::String,
       false,
       Value("text"),
       "text, bytes or json.",
       {"text", "bytes", "json"}},
      {"max_bytes",
       ParamType::Number,
       false,
       Value(16 * 1024 * 1024),
       "Larger files are refused.",
       {}},
  };
  s.chain_points = {"ok", "missing", "error"};
  s.may_wait = true;  // disk or NFS reads can take a while
  return s;
}

class FileReadRule : public Rule {
 public:
  explicit FileReadRule(CompileContext& cc)
      : path_(cc.params()["path"]),
        output_(cc.params()["output"]),
        format_(cc.params()["format"]),
        max_(cc.params()["max_bytes"]),
        fail_(cc, kFileError) {}
  int execute(ExecContext& ctx) const override {
    std::string path = checked_path(path_, ctx);
    std::string format = format_.text(ctx);
    if (format != "text" && format != "bytes" && format != "json")
      throw EvalError("format must be text, bytes or json, got '" + format + "'");
    auto max = static_cast<size_t>(range_value(max_, ctx, "max_bytes", 0, 1e12));
    std::string content, error;
    FileStatus st = files_of(ctx).read(path, max, &content, &error);
    if (st == FileStatus::NotFound) {
      ctx.vars.set(output_.slot(), Value());
      return 1;
    }
    if (st != FileStatus::Ok) return fail_(ctx, std::move(error), 2);
    if (format == "bytes") {
      ctx.vars.set(output_.slot(), Value(Bytes{std::move(content)}));
    } else if (format == "json") {
      std::string perr;
      Value v = json_parse(content, &perr);
      if (!perr.empty()) return fail_(ctx, "'" + path + "' is not valid JSON: " + perr, 2);
      ctx.vars.set(output_.slot(), std::move(v));
    } else {
      ctx.vars.set(output_.slot(), Value(std::move(content)));
    }
    return 0;
  }

 private:
  Param path_, output_, format_, max_;
  Failure fail_;
};

RuleSpec file_write_spec() {
  RuleSpec s;
  s.name = "FileWrite";
  s.group = "Storage";
  s.doc =
      "Writes `content` to a file of the shared folder. A write replaces the file atomically "
      "(a temporary file renamed over it: readers see the old or the new content, never a "
      "mix); with `append` the content is added at the end under an exclusive POSIX lock "
      "that holds across agents sharing the folder over NFS or EFS. Missing folders are "
      "created. '..', absolute paths and links leading outside the shared folder are "
      "refused. Takes `ok`, or `error` (the reason in FILE_ERROR; when `error` is not wired "
      "the request fails).";
  s.params = {
      {"path", ParamType::String, true, {}, "The file, relative to the shared folder.", {}},
      {"content",
       ParamType::String,
       true,
       {},
       "What to write (a template; bytes are written as they are).",
       {}},
      {"append", ParamType::Boolean, false, Value(false), "Append instead of replacing.", {}},
  };
  s.chain_points = {"ok", "error"};
  s.may_wait = true;
  return s;
}

class FileWriteRule : public Rule {
 public:
  explicit FileWriteRule(CompileContext& cc)
      : path_(cc.params()["path"]),
        content_(cc.params()["content"]),
        append_(cc.params()["append"]),
        fail_(cc, kFileError) {}
  int execute(ExecContext& ctx) const override {
    std::string path = checked_path(path_, ctx);
    std::string content = content_.text(ctx);
    std::string error;
    if (files_of(ctx).write(path, content, append_.boolean(ctx), &error) != FileStatus::Ok)
      return fail_(ctx, std::move(error), 1);
    return 0;
  }

 private:
  Param path_, content_, append_;
  Failure fail_;
};

RuleSpec file_list_spec() {
  RuleSpec s;
  s.name = "FileList";
  s.group = "Storage";
  s.doc =
      "Lists a folder of the shared folder into `output`: a list of maps {name, directory, "
      "size, modified} (modified in milliseconds since 1970), sorted by name. Takes `ok`, "
      "`empty` when the folder is empty or does not exist yet, and `error` (refused path, "
      "not a folder; the reason in FILE_ERROR; when `error` is not wired the request fails).";
  s.params = {
      {"path",
       ParamType::String,
       false,
       Value(""),
       "The folder, relative to the shared folder (\"\": the shared folder).",
       {}},
      {"output",
       ParamType::Variable,
       false,
       Value("FILES"),
       "The variable that gets the list.",
       {}},
  };
  s.chain_points = {"ok", "empty", "error"};
  s.may_wait = true;
  return s;
}

class FileListRule : public Rule {
 public:
  explicit FileListRule(CompileContext& cc)
      : path_(cc.params()["path"]), output_(cc.params()["output"]), fail_(cc, kFileError) {}
  int execute(ExecContext& ctx) const override {
    std::string path = checked_path(path_, ctx);
    std::vector<FileEntry> entries;
    std::string error;
    FileStatus st = files_of(ctx).list(path, &entries, &error);
    if (st == FileStatus::NotFound) {
      ctx.vars.set(output_.slot(), Value(List{}));
      return 1;
    }
    if (st != FileStatus::Ok) return fail_(ctx, std::move(error), 2);
    List out;
    out.reserve(entries.size());
    for (auto& e : entries) {
      Map m;
      m.set("name", Value(std::move(e.name)));
      m.set("directory", Value(e.directory));
      m.set("size", Value(e.size));
      m.set("modified", Value(e.modified_ms));
      out.emplace_back(std::move(m));
    }
    bool empty = out.empty();
    ctx.vars.set(output_.slot(), Value(std::move(out)));
    return empty ? 1 : 0;
  }

 private:
  Param path_, output_;
  Failure fail_;
};

// ---------------------------------------------------------------------------------------
// FileUpload: multipart/form-data

/// One part of a multipart body.
struct Part {
  std::string name, filename, content_type;
  std::string_view data;
  bool has_filename = false;
};

/// The value of `key` in a header's parameters (`form-data; name="x"; filename="y"`), or
/// nullopt when the header has no such parameter.
std::optional<std::string> header_param(std::string_view header, std::string_view key) {
  size_t pos = 0;
  while ((pos = header.find(';', pos)) != std::string_view::npos) {
    ++pos;
    while (pos < header.size() && header[pos] == ' ') ++pos;
    size_t eq = header.find('=', pos);
    if (eq == std::string_view::npos) return {};
    std::string_view k = header.substr(pos, eq - pos);
    while (!k.empty() && k.back() == ' ') k.remove_suffix(1);
    std::string_view rest = header.substr(eq + 1);
    std::string value;
    if (!rest.empty() && rest.front() == '"') {
      size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
        value += rest[i];
      }
    } else {
      value = std::string(rest.substr(0, rest.find(';')));
      while (!value.empty() && value.back() == ' ') value.pop_back();
    }
    if (iequals(k, key)) return value;
  }
  return std::nullopt;
}

/// Splits a multipart body; false with `error` when it is not well formed.
bool parse_multipart(std::string_view body, std::string_view boundary, std::vector<Part>* parts,
                     std::string* error) {
  std::string delim = "--" + std::string(boundary);
  size_t pos = body.find(delim);
  if (pos == std::string_view::npos) {
    *error = "the body holds no multipart boundary";
    return false;
  }
  pos += delim.size();
  for (;;) {
    if (body.substr(pos, 2) == "--") return true;  // the closing boundary
    if (body.substr(pos, 2) != "\r\n") {
      *error = "a multipart boundary is not followed by a line break";
      return false;
    }
    pos += 2;
    size_t head_end = body.find("\r\n\r\n", pos);
    if (head_end == std::string_view::npos) {
      *error = "a multipart part has no end of headers";
      return false;
    }
    Part part;
    std::string_view head = body.substr(pos, head_end - pos);
    size_t line_start = 0;
    while (line_start <= head.size()) {
      size_t line_end = head.find("\r\n", line_start);
      if (line_end == std::string_view::npos) line_end = head.size();
      std::string_view line = head.substr(line_start, line_end - line_start);
      size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        std::string_view name = line.substr(0, colon), value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (iequals(name, "content-disposition")) {
          part.name = header_param(value, "name").value_or("");
          auto filename = header_param(value, "filename");
          part.has_filename = filename.has_value();
          part.filename = filename.value_or("");
        } else if (iequals(name, "content-type")) {
          part.content_type = std::string(value);
        }
      }
      line_start = line_end + 2;
    }
    size_t data_start = head_end + 4;
    size_t next = body.find("\r\n" + delim, data_start);
    if (next == std::string_view::npos) {
      *error = "a multipart part is not closed by a boundary";
      return false;
    }
    part.data = body.substr(data_start, next - data_start);
    parts->push_back(std::move(part));
    pos = next + 2 + delim.size();
  }
}

/// A file name safe to keep: the last path component, letters, digits, '.', '-', '_'.
std::string safe_file_name(std::string_view client_name) {
  size_t slash = client_name.find_last_of("/\\");
  if (slash != std::string_view::npos) client_name.remove_prefix(slash + 1);
  std::string out;
  for (char c : client_name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    out += ok ? c : '_';
    if (out.size() >= 120) break;
  }
  while (!out.empty() && out.front() == '.') out.erase(0, 1);
  return out.empty() ? "upload" : out;
}

RuleSpec file_upload_spec() {
  RuleSpec s;
  s.name = "FileUpload";
  s.group = "Storage";
  s.doc =
      "Saves the file of a multipart/form-data upload (a form with <input type=file>) under "
      "`folder` of the shared folder. The file keeps the name the browser sent, reduced to "
      "letters, digits, '.', '-' and '_' (or `name` when given), and replaces an older file "
      "of that name atomically. `output` gets {name, path, size, content_type, fields}, "
      "fields being the form's other (text) fields. Takes `ok`, `missing` when the request "
      "is not multipart or has no file in `field`, `too_large` when the file is larger than "
      "max_bytes (nothing is saved), and `error` (the reason in FILE_ERROR; when `error` is "
      "not wired the request fails). The whole request body is limited by the agent's "
      "CAP_MAX_BODY_BYTES (413 beyond it).";
  s.params = {
      {"field", ParamType::String, false, Value("file"), "The form field of the file.", {}},
      {"folder",
       ParamType::String,
       false,
       Value("uploads"),
       "The folder, relative to the shared folder.",
       {}},
      {"name",
       ParamType::String,
       false,
       {},
       "The file name to save under (default: the browser's, made safe).",
       {}},
      {"max_bytes",
       ParamType::Number,
       false,
       Value(10 * 1024 * 1024),
       "Larger files take too_large.",
       {}},
      {"output",
       ParamType::Variable,
       false,
       Value("UPLOAD"),
       "The variable that gets the details.",
       {}},
  };
  s.chain_points = {"ok", "missing", "too_large", "error"};
  s.may_wait = true;
  s.reads_body = true;
  return s;
}

class FileUploadRule : public Rule {
 public:
  explicit FileUploadRule(CompileContext& cc)
      : field_(cc.params()["field"]),
        folder_(cc.params()["folder"]),
        name_(cc.params()["name"]),
        max_(cc.params()["max_bytes"]),
        output_(cc.params()["output"]),
        fail_(cc, kFileError) {}
  int execute(ExecContext& ctx) const override {
    enum { kOk, kMissing, kTooLarge, kError };
    const Request* req = ctx.request();
    std::string_view content_type;
    if (req)
      for (auto& [k, v] : req->headers)
        if (iequals(k, "content-type")) content_type = v;
    if (!req || content_type.size() < 19 ||
        !iequals(content_type.substr(0, 19), "multipart/form-data"))
      return kMissing;
    std::string boundary = header_param(content_type, "boundary").value_or("");
    if (boundary.empty() || boundary.size() > 200)
      return fail_(ctx, "the multipart/form-data request has no valid boundary", kError);
    std::vector<Part> parts;
    std::string error;
    if (!parse_multipart(req->body, boundary, &parts, &error))
      return fail_(ctx, std::move(error), kError);
    std::string field = field_.text(ctx);
    const Part* file = nullptr;
    Map fields;
    for (const Part& p : parts) {
      if (p.name == field && p.has_filename && !file)
        file = &p;
      else if (!p.has_filename)
        fields.set(p.name, Value(std::string(p.data)));
    }
    if (!file || (file->filename.empty() && file->data.empty())) return kMissing;
    auto max = static_cast<size_t>(range_value(max_, ctx, "max_bytes", 0, 1e12));
    Map out;
    std::string name = name_.present() ? name_.text(ctx) : safe_file_name(file->filename);
    std::string folder = checked_path(folder_, ctx);
    std::string path = folder.empty() ? name : folder + "/" + name;
    out.set("name", Value(name));
    out.set("path", Value(path));
    out.set("size", Value(static_cast<uint64_t>(file->data.size())));
    out.set("content_type", Value(file->content_type));
    out.set("fields", Value(std::move(fields)));
    ctx.vars.set(output_.slot(), Value(std::move(out)));
    if (file->data.size() > max) {
      ctx.vars.set(kFileError, Value("the file holds " + std::to_string(file->data.size()) +
                                     " bytes, more than the limit of " + std::to_string(max)));
      return kTooLarge;
    }
    if (name.empty() || name.find('/') != std::string::npos)
      return fail_(ctx, "the file name '" + name + "' must be a single path component", kError);
    if (files_of(ctx).write(path, file->data, false, &error) != FileStatus::Ok)
      return fail_(ctx, std::move(error), kError);
    return kOk;
  }

 private:
  Param field_, folder_, name_, max_, output_;
  Failure fail_;
};

template <typename R>
RuleFactory file_factory(std::vector<std::pair<std::string_view, bool>> paths, bool max_bytes) {
  return [paths = std::move(paths), max_bytes](CompileContext& cc) -> std::unique_ptr<Rule> {
    bool ok = true;
    for (auto& [name, allow_empty] : paths) ok = check_constant_path(cc, name, allow_empty) && ok;
    if (max_bytes) ok = check_constant_range(cc, "max_bytes", 0, 1e12) && ok;
    if (!ok) return nullptr;
    return std::make_unique<R>(cc);
  };
}

}  // namespace

void register_storage(RuleRegistry& r) {
  r.add(sql_query_spec(), [](CompileContext& cc) { return make_sql(cc, true); });
  r.add(sql_execute_spec(), [](CompileContext& cc) { return make_sql(cc, false); });
  r.add(flight_recorder_spec(), make_flight_recorder);
  r.add(file_read_spec(), file_factory<FileReadRule>({{"path", false}}, true));
  r.add(file_write_spec(), file_factory<FileWriteRule>({{"path", false}}, false));
  r.add(file_list_spec(), file_factory<FileListRule>({{"path", true}}, false));
  r.add(file_upload_spec(), file_factory<FileUploadRule>({{"folder", true}}, true));
}

}  // namespace cap::rules

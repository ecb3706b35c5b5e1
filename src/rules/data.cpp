// The "Data" group: JSON in and out, keyed CSV lookups, and per-key state kept across
// requests (histories, counters, rate limits).
//
// Per-key state lives in a KeyedStore: a fixed number of mutex-guarded shards, each an LRU
// list bounded so that the whole store never holds more than `max_keys` keys. Requests for
// different keys rarely share a lock; the lock is held only to read and update one key.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "cap/rule.h"
#include "cap/value.h"
#include "rules/groups.h"

namespace cap::rules {
namespace {

// ---------------------------------------------------------------------------------------
// Helpers shared by the rules of this group

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

/// The text of a key parameter without copying when it already is a string: a view into
/// the evaluated value, or into `buf` (a per-thread buffer reused across requests).
std::string_view key_text(const Param& p, ExecContext& ctx, Value& scratch, std::string& buf) {
  const Value& v = p.eval(ctx, scratch);
  if (v.is_string()) return v.as_string();
  buf.clear();
  v.append_text(buf);
  return buf;
}

std::string& key_buffer() {
  thread_local std::string buf;
  return buf;
}

std::string format_number(double d) {
  std::string s;
  append_number(s, d);
  return s;
}

/// Reads a constant whole number in [min, max] from parameter `name`; reports an error and
/// returns false otherwise. `what_for` says why it must be constant.
bool constant_integer(CompileContext& cc, std::string_view name, int64_t min, int64_t max,
                      std::string_view what_for, int64_t* out) {
  const Param& p = cc.params()[name];
  if (!p.is_constant()) {
    cc.error(name, "must be a constant number (" + std::string(what_for) + "), not a template");
    return false;
  }
  const Value& v = p.constant_value();
  double d = v.is_number() ? v.as_number() : NAN;
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    cc.error(name, "must be a whole number from " + std::to_string(min) + " to " +
                       std::to_string(max) + ", got " + v.to_text());
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

/// A whole, non-negative count read at run time (a template parameter).
int64_t runtime_count(const Param& p, ExecContext& ctx, std::string_view name) {
  double d = p.number(ctx);
  if (!std::isfinite(d) || d < 0)
    throw EvalError(std::string(name) + " must be a number of 0 or more, got " + format_number(d));
  return static_cast<int64_t>(std::floor(d));
}

constexpr int64_t kMaxKeysLimit = 100'000'000;
constexpr int64_t kMaxWindowMs = int64_t{366} * 24 * 3600 * 1000;  // a year, about

// ---------------------------------------------------------------------------------------
// KeyedStore: bounded, sharded, least-recently-used map from key to State

template <typename State>
class KeyedStore {
 public:
  /// Below this many keys one shard keeps an exact LRU order; above it 16 shards keep
  /// contention low and each evicts its own least recently used key.
  static constexpr size_t kShardThreshold = 1024;
  static constexpr size_t kShards = 16;

  explicit KeyedStore(size_t max_keys)
      : shard_count_(max_keys >= kShardThreshold ? kShards : 1),
        shards_(std::make_unique<Shard[]>(shard_count_)) {
    // The capacities add up to exactly max_keys.
    for (size_t i = 0; i < shard_count_; ++i)
      shards_[i].capacity = max_keys / shard_count_ + (i < max_keys % shard_count_ ? 1 : 0);
  }

  /// Runs `use(State&)` under the key's shard lock, creating the key (evicting the least
  /// recently used one when the shard is full) when it is new. Returns what `use` returns.
  template <typename Use>
  auto with(std::string_view key, Use&& use) {
    Shard& s = shard_for(key);
    std::lock_guard lock(s.mu);
    auto found = s.index.find(key);
    if (found != s.index.end()) {
      s.lru.splice(s.lru.begin(), s.lru, found->second);
      return use(found->second->state);
    }
    if (s.index.size() >= s.capacity && !s.lru.empty()) {
      // Reuse the evicted node: no allocation for the list node or the key's storage.
      auto last = std::prev(s.lru.end());
      s.index.erase(std::string_view(last->key));
      s.lru.splice(s.lru.begin(), s.lru, last);
      last->key.assign(key);
      last->state = State{};
    } else {
      s.lru.emplace_front();
      s.lru.front().key.assign(key);
    }
    s.index.emplace(std::string_view(s.lru.front().key), s.lru.begin());
    return use(s.lru.front().state);
  }

  size_t size() const {
    size_t n = 0;
    for (size_t i = 0; i < shard_count_; ++i) {
      std::lock_guard lock(shards_[i].mu);
      n += shards_[i].index.size();
    }
    return n;
  }

 private:
  struct Entry {
    std::string key;
    State state;
  };
  struct alignas(64) Shard {
    mutable std::mutex mu;
    size_t capacity = 0;
    std::list<Entry> lru;  // most recently used first
    // Views point into the keys held by `lru`, whose nodes never move.
    std::unordered_map<std::string_view, typename std::list<Entry>::iterator> index;
  };

  Shard& shard_for(std::string_view key) {
    if (shard_count_ == 1) return shards_[0];
    // The high bits, so the shard does not correlate with the bucket inside the shard.
    uint64_t h = std::hash<std::string_view>{}(key);
    return shards_[(h >> 32) % shard_count_];
  }

  size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
};

// ---------------------------------------------------------------------------------------
// SlidingWindow: amounts added over time, summed over the last `window` milliseconds.
//
// Events close in time share one slot (the window is cut into at most ~64 slots), so a key
// costs at most about 64 slots however busy it is. A slot leaves the window when its newest
// event does, so a sum may include events up to 1/64 of the window older than the window:
// limits err on the strict side.

class SlidingWindow {
 public:
  /// Drops what is older than the window ending at `now` and returns the sum.
  double sum(int64_t now, int64_t window) {
    if (window <= 0) return total_;
    size_t drop = 0;
    while (drop < slots_.size() && slots_[drop].last <= now - window) ++drop;
    if (drop > 0) {
      slots_.erase(slots_.begin(), slots_.begin() + static_cast<ptrdiff_t>(drop));
      if (slots_.empty()) {
        total_ = 0;  // no rounding residue from repeated subtraction
      } else {
        total_ = 0;
        for (const auto& s : slots_) total_ += s.amount;
      }
    }
    return total_;
  }

  void add(int64_t now, int64_t window, double amount) {
    total_ += amount;
    if (window <= 0) return;
    int64_t granule = std::max<int64_t>(1, window / 64);
    if (!slots_.empty() && now - slots_.back().first < granule) {
      Slot& s = slots_.back();
      s.last = std::max(s.last, now);
      s.amount += amount;
      return;
    }
    slots_.push_back({now, now, amount});
  }

 private:
  struct Slot {
    int64_t first, last;
    double amount;
  };
  std::vector<Slot> slots_;
  double total_ = 0;
};

// ---------------------------------------------------------------------------------------
// JsonParse

RuleSpec json_parse_spec() {
  RuleSpec s;
  s.name = "JsonParse";
  s.group = "Data";
  s.doc =
      "Parses JSON text into a value (map, list, string, number, boolean or null) and stores "
      "it in a variable, so later rules can read its members (DATA.items[0].name). Takes "
      "`ok` when the text parses; otherwise takes `error` and puts the parser's message, "
      "with its position, into the error variable. Documents nested deeper than 64 levels "
      "or larger than 16 MiB are refused.";
  s.params = {
      {"input", ParamType::String, true, {}, "The JSON text, e.g. ${BODY}.", {}},
      {"output", ParamType::Variable, true, {}, "The variable that gets the parsed value.", {}},
      {"error",
       ParamType::Variable,
       false,
       Value("JSON_ERROR"),
       "The variable that gets the parse error message when the text is not JSON.",
       {}},
  };
  s.chain_points = {"ok", "error"};
  return s;
}

class JsonParseRule : public Rule {
 public:
  explicit JsonParseRule(const Params& p)
      : input_(p["input"]), output_(p["output"]), error_(p["error"]) {}

  int execute(ExecContext& ctx) const override {
    Value scratch;
    std::string& buf = key_buffer();
    std::string_view text = key_text(input_, ctx, scratch, buf);
    std::string error;
    Value parsed = json_parse(text, &error, limits_);
    if (buf.capacity() > kKeepBufferBytes) std::string().swap(buf);  // after a huge input
    if (!error.empty()) {
      ctx.vars.set(error_.slot(), Value(std::move(error)));
      return kError;
    }
    ctx.vars.set(output_.slot(), std::move(parsed));
    return kOk;
  }

 private:
  static constexpr int kOk = 0, kError = 1;
  static constexpr size_t kKeepBufferBytes = 64 * 1024;
  JsonLimits limits_{64, 16 * 1024 * 1024};
  Param input_, output_, error_;
};

// ---------------------------------------------------------------------------------------
// JsonBuild

RuleSpec json_build_spec() {
  RuleSpec s;
  s.name = "JsonBuild";
  s.group = "Data";
  s.doc =
      "Builds JSON text from a structure written in the rule set. Strings inside `value` "
      "are templates; a string that is exactly one ${...} keeps the typed value (a number "
      "stays a number, a list stays a list), so {\"id\": \"${ID}\", \"tags\": \"${TAGS}\"} "
      "produces real JSON numbers and arrays. The text goes into `output`.";
  s.params = {
      {"value",
       ParamType::Any,
       true,
       {},
       "The JSON structure to render; its strings are templates.",
       {}},
      {"output", ParamType::Variable, true, {}, "The variable that gets the JSON text.", {}},
  };
  s.chain_points = {"next"};
  return s;
}

class JsonBuildRule : public Rule {
 public:
  explicit JsonBuildRule(const Params& p) : value_(p["value"]), output_(p["output"]) {}

  int execute(ExecContext& ctx) const override {
    std::string out;
    out.reserve(256);  // most answers fit: one allocation instead of a few regrowths
    value_.append_json(ctx, out);
    ctx.vars.set(output_.slot(), Value(std::move(out)));
    return 0;
  }

 private:
  Param value_, output_;
};

// ---------------------------------------------------------------------------------------
// CsvLookup

/// Reads RFC 4180 records: quoted fields with doubled quotes, delimiters and line breaks
/// inside quotes, CRLF or LF line ends. Blank lines (empty or only spaces and tabs) are
/// skipped.
class CsvReader {
 public:
  CsvReader(std::string_view text, char delimiter) : text_(text), delim_(delimiter) {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;  // UTF-8 byte order mark
  }

  /// Reads the next record into `fields`. Returns false at the end of the text, or with a
  /// message in `error` (which then is non-empty) when the text is malformed.
  bool next(std::vector<std::string>& fields, std::string* error) {
    fields.clear();
    skip_blank_lines();
    if (pos_ >= text_.size()) return false;
    record_line_ = line_;
    while (true) {
      std::string field;
      if (pos_ < text_.size() && text_[pos_] == '"') {
        if (!read_quoted(field, error)) return false;
      } else {
        size_t end = pos_;
        while (end < text_.size() && text_[end] != delim_ && text_[end] != '\n') ++end;
        std::string_view part = text_.substr(pos_, end - pos_);
        if (!part.empty() && part.back() == '\r' && (end == text_.size() || text_[end] == '\n'))
          part.remove_suffix(1);
        field.assign(part);
        pos_ = end;
      }
      fields.push_back(std::move(field));
      if (pos_ >= text_.size()) return true;
      if (text_[pos_] == '\n') {
        ++pos_;
        ++line_;
        return true;
      }
      ++pos_;  // the delimiter: another field follows, empty when the line ends here
    }
  }

  /// The line the last record started on (1-based).
  size_t record_line() const { return record_line_; }

 private:
  /// Reads a quoted field starting at the opening quote; leaves pos_ on what follows it.
  bool read_quoted(std::string& field, std::string* error) {
    size_t field_line = line_;
    ++pos_;
    while (true) {
      size_t q = text_.find('"', pos_);
      if (q == std::string_view::npos) {
        *error =
            "line " + std::to_string(field_line) + ": a quoted field is not closed (missing '\"')";
        return false;
      }
      std::string_view part = text_.substr(pos_, q - pos_);
      line_ += static_cast<size_t>(std::count(part.begin(), part.end(), '\n'));
      field.append(part);
      pos_ = q + 1;
      if (pos_ < text_.size() && text_[pos_] == '"') {  // "" stands for one quote
        field.push_back('"');
        ++pos_;
        continue;
      }
      break;
    }
    if (pos_ < text_.size() && text_[pos_] == '\r' &&
        (pos_ + 1 == text_.size() || text_[pos_ + 1] == '\n'))
      ++pos_;
    if (pos_ < text_.size() && text_[pos_] != delim_ && text_[pos_] != '\n') {
      *error = "line " + std::to_string(line_) + ": unexpected character '" +
               std::string(1, text_[pos_]) + "' after a closing quote";
      return false;
    }
    return true;
  }

  void skip_blank_lines() {
    while (pos_ < text_.size()) {
      size_t end = pos_;
      while (end < text_.size() && (text_[end] == ' ' || text_[end] == '\t' || text_[end] == '\r'))
        ++end;
      if (end < text_.size() && text_[end] != '\n') return;
      if (end < text_.size()) ++line_;
      pos_ = end < text_.size() ? end + 1 : end;
    }
  }

  std::string_view text_;
  char delim_;
  size_t pos_ = 0;
  size_t line_ = 1;
  size_t record_line_ = 1;
};

/// The immutable index built from one version of a CSV file.
struct CsvIndex {
  // Each row is a Value holding a shared map, so handing it to a request is a reference
  // count increment.
  std::unordered_map<std::string, Value, StringHash, std::equal_to<>> rows;
};

struct CsvOptions {
  std::string path;        // inside the configuration
  std::string key_column;  // "" = first column, a header name or a 0-based number
  bool has_header = true;
  char delimiter = ',';
};

bool parse_index(std::string_view s, size_t* out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

std::shared_ptr<const CsvIndex> build_csv_index(std::string_view content, const CsvOptions& o,
                                                std::string* error) {
  auto fail = [&](std::string message) {
    *error = std::move(message);  // the engine puts the file name in front
    return nullptr;
  };
  auto index = std::make_shared<CsvIndex>();
  CsvReader reader(content, o.delimiter);
  std::vector<std::string> fields;
  std::string err;

  std::vector<std::string> names;
  bool first = true;
  size_t key_col = 0;
  size_t columns = 0;
  while (reader.next(fields, &err)) {
    if (first) {
      first = false;
      columns = fields.size();
      if (o.has_header) {
        names = fields;
        for (size_t i = 0; i < names.size(); ++i)
          for (size_t j = 0; j < i; ++j)
            if (names[i] == names[j])
              return fail("line " + std::to_string(reader.record_line()) +
                          ": the header names column '" + names[i] + "' twice");
      } else {
        for (size_t i = 0; i < columns; ++i) names.push_back(std::to_string(i));
      }
      if (!o.key_column.empty()) {
        auto named = std::find(names.begin(), names.end(), o.key_column);
        if (o.has_header && named != names.end()) {
          key_col = static_cast<size_t>(named - names.begin());
        } else if (parse_index(o.key_column, &key_col)) {
          if (key_col >= columns)
            return fail("key_column " + o.key_column + " is out of range: the file has " +
                        std::to_string(columns) + " column" + (columns == 1 ? "" : "s"));
        } else {
          return fail("key_column '" + o.key_column + "' is not a column of the header");
        }
      }
      if (o.has_header) continue;
    }
    if (fields.size() != columns)
      return fail("line " + std::to_string(reader.record_line()) + ": " +
                  std::to_string(fields.size()) + " field" + (fields.size() == 1 ? "" : "s") +
                  " where " + (o.has_header ? "the header has " : "the first line has ") +
                  std::to_string(columns));
    if (index->rows.find(std::string_view(fields[key_col])) != index->rows.end())
      continue;  // the first row with a key wins
    Map row;
    row.reserve(columns);
    for (size_t i = 0; i < columns; ++i) row.append(names[i], Value(std::move(fields[i])));
    std::string key = row.begin()[static_cast<ptrdiff_t>(key_col)].second.as_string();
    index->rows.emplace(std::move(key), Value(std::move(row)));
  }
  if (!err.empty()) return fail(err);
  return index;
}

RuleSpec csv_lookup_spec() {
  RuleSpec s;
  s.name = "CsvLookup";
  s.group = "Data";
  s.doc =
      "Looks a key up in a CSV data file of the configuration (for example a blacklist of "
      "addresses) and puts the matching row into a variable as a map of column name to "
      "value; takes `found` or `not_found` (which clears the output variable). The file is "
      "indexed once when the configuration loads and again whenever it changes on disk (at "
      "most once a second); when a changed file does not parse, the old data stays in use "
      "and the error is logged. Quoted fields, doubled quotes, CRLF line ends, blank lines "
      "and a UTF-8 byte order mark are understood; when a key appears twice, the first row "
      "wins.";
  s.params = {
      {"file",
       ParamType::String,
       true,
       {},
       "The CSV file inside the configuration, e.g. data/blacklist.csv (no templates).",
       {}},
      {"key", ParamType::String, true, {}, "The key to look up, e.g. ${REMOTE_ADDR}.", {}},
      {"key_column",
       ParamType::String,
       false,
       Value(""),
       "The column holding the keys: a header name or a 0-based number; empty for the "
       "first column.",
       {}},
      {"has_header",
       ParamType::Boolean,
       false,
       Value(true),
       "Whether the first line names the columns; without one they are named 0, 1, ...",
       {}},
      {"delimiter",
       ParamType::String,
       false,
       Value(","),
       "The single character between fields (\",\", \";\", \"\\t\", ...).",
       {}},
      {"output",
       ParamType::Variable,
       false,
       Value("ROW"),
       "The variable that gets the row (column name to value).",
       {}},
  };
  s.chain_points = {"found", "not_found"};
  return s;
}

class CsvLookupRule : public Rule {
 public:
  CsvLookupRule(std::shared_ptr<DataFile> file, const Params& p)
      : file_(std::move(file)), key_(p["key"]), output_(p["output"]) {}

  int execute(ExecContext& ctx) const override {
    const CsvIndex* index = file_->get_pinned<CsvIndex>(&ctx.logger());
    Value scratch;
    std::string_view key = key_text(key_, ctx, scratch, key_buffer());
    if (index) {
      auto it = index->rows.find(key);
      if (it != index->rows.end()) {
        ctx.vars.set(output_.slot(), it->second);
        return kFound;
      }
    }
    ctx.vars.erase(output_.slot());
    return kNotFound;
  }

 private:
  static constexpr int kFound = 0, kNotFound = 1;
  std::shared_ptr<DataFile> file_;
  Param key_, output_;
};

std::unique_ptr<Rule> make_csv_lookup(CompileContext& cc) {
  const Params& p = cc.params();
  bool ok = true;
  auto constant_string = [&](std::string_view name, std::string* out) {
    const Param& param = p[name];
    if (!param.is_constant() || !param.constant_value().is_string()) {
      cc.error(name, "must be constant text (no ${...}): it decides how the file is indexed");
      ok = false;
      return;
    }
    *out = param.constant_value().as_string();
  };
  CsvOptions o;
  std::string delimiter;
  constant_string("file", &o.path);
  constant_string("key_column", &o.key_column);
  constant_string("delimiter", &delimiter);
  if (ok && o.path.empty()) {
    cc.error("file", "must name a data file, e.g. data/list.csv");
    ok = false;
  }
  if (ok) {
    if (delimiter == "\\t") delimiter = "\t";
    if (delimiter.size() != 1 || delimiter[0] == '"' || delimiter[0] == '\n' ||
        delimiter[0] == '\r') {
      cc.error("delimiter",
               "must be one character other than a quote or a line break, got '" + delimiter + "'");
      ok = false;
    } else {
      o.delimiter = delimiter[0];
    }
  }
  const Param& header = p["has_header"];
  if (!header.is_constant() || !header.constant_value().is_bool()) {
    cc.error("has_header", "must be true or false (no ${...}): it decides how the file is indexed");
    ok = false;
  } else {
    o.has_header = header.constant_value().as_bool();
  }
  if (ok && !o.has_header && !o.key_column.empty()) {
    size_t ignored;
    if (!parse_index(o.key_column, &ignored)) {
      cc.error("key_column", "must be a 0-based column number when has_header is false, got '" +
                                 o.key_column + "'");
      ok = false;
    }
  }
  if (!ok) return nullptr;
  auto file = cc.data_file(
      "file", o.path,
      [o](std::string_view content, std::string* error) -> std::shared_ptr<const void> {
        return build_csv_index(content, o, error);
      });
  if (!file) return nullptr;
  return std::make_unique<CsvLookupRule>(std::move(file), p);
}

// ---------------------------------------------------------------------------------------
// HistoryRecorder

RuleSpec history_recorder_spec() {
  RuleSpec s;
  s.name = "HistoryRecorder";
  s.group = "Data";
  s.doc =
      "Remembers values per key across requests: records `value` under `key`, keeping the "
      "last `keep` values, and puts the last `read` of them (newest first, the one just "
      "recorded included) into a list variable. Use it to compare a client's current "
      "request with its previous ones, e.g. the user agent of the last two requests from "
      "one address. History lives in memory for the life of the activation; at most "
      "`max_keys` keys are kept, the least recently used going first.";
  s.params = {
      {"key", ParamType::String, true, {}, "Whose history, e.g. ${REMOTE_ADDR}.", {}},
      {"value", ParamType::Any, true, {}, "The value to record (any type).", {}},
      {"keep",
       ParamType::Number,
       false,
       Value(5),
       "How many values to keep per key (constant).",
       {}},
      {"read",
       ParamType::Number,
       false,
       Value(2),
       "How many of the newest values to put into the output.",
       {}},
      {"output",
       ParamType::Variable,
       false,
       Value("HISTORY"),
       "The variable that gets the list of values, newest first.",
       {}},
      {"max_keys",
       ParamType::Number,
       false,
       Value(100000),
       "The most keys kept in memory (constant); the least recently used key goes first.",
       {}},
  };
  s.chain_points = {"next"};
  return s;
}

/// The last values of one key: a ring of up to `keep` values.
struct History {
  std::vector<Value> ring;
  size_t next = 0;  // where the next value goes once the ring is full
};

class HistoryRecorderRule : public Rule {
 public:
  HistoryRecorderRule(const Params& p, size_t keep, size_t max_keys)
      : key_(p["key"]),
        value_(p["value"]),
        read_(p["read"]),
        output_(p["output"]),
        keep_(keep),
        store_(max_keys) {}

  int execute(ExecContext& ctx) const override {
    Value scratch;
    Value v = value_.value(ctx);
    size_t read = static_cast<size_t>(
        std::min<int64_t>(runtime_count(read_, ctx, "read"), static_cast<int64_t>(keep_)));
    std::string_view key = key_text(key_, ctx, scratch, key_buffer());
    List out;
    out.reserve(read);
    store_.with(key, [&](History& h) {
      size_t newest;
      if (h.ring.size() < keep_) {
        if (h.ring.capacity() == 0) h.ring.reserve(keep_);
        h.ring.push_back(std::move(v));
        newest = h.ring.size() - 1;
      } else {
        h.ring[h.next] = std::move(v);
        newest = h.next;
        h.next = (h.next + 1) % keep_;
      }
      size_t n = std::min(read, h.ring.size());
      size_t size = h.ring.size();
      for (size_t i = 0; i < n; ++i) out.push_back(h.ring[(newest + size - i) % size]);
    });
    ctx.vars.set(output_.slot(), Value(std::move(out)));
    return 0;
  }

  size_t keys() const { return store_.size(); }

 private:
  Param key_, value_, read_, output_;
  size_t keep_;
  mutable KeyedStore<History> store_;
};

std::unique_ptr<Rule> make_history_recorder(CompileContext& cc) {
  int64_t keep = 0, max_keys = 0, read = 0;
  bool ok = constant_integer(cc, "keep", 1, 10000, "it sizes the storage", &keep);
  ok = constant_integer(cc, "max_keys", 1, kMaxKeysLimit, "it bounds the memory", &max_keys) && ok;
  const Param& r = cc.params()["read"];
  if (r.is_constant()) {
    ok = constant_integer(cc, "read", 0, 10000, "", &read) && ok;
    if (ok && read > keep)
      cc.warning("read", "is " + std::to_string(read) + " but only keep = " + std::to_string(keep) +
                             " values are kept: at most " + std::to_string(keep) + " come back");
  }
  if (!ok) return nullptr;
  return std::make_unique<HistoryRecorderRule>(cc.params(), static_cast<size_t>(keep),
                                               static_cast<size_t>(max_keys));
}

// ---------------------------------------------------------------------------------------
// Counter

RuleSpec counter_spec() {
  RuleSpec s;
  s.name = "Counter";
  s.group = "Data";
  s.doc =
      "Counts per key across requests: adds `increment` to the key's count and puts the sum "
      "of the increments made in the last `window_ms` milliseconds (a sliding window, this "
      "one included) into a variable; with window_ms 0 the count never decays. Events are "
      "grouped in slots of 1/64 of the window, so an event may stay counted up to that much "
      "longer than the window. At most `max_keys` keys are kept in memory, the least "
      "recently used going first.";
  s.params = {
      {"key", ParamType::String, true, {}, "What to count, e.g. ${REMOTE_ADDR}.", {}},
      {"window_ms",
       ParamType::Number,
       false,
       Value(60000),
       "The sliding window in milliseconds (constant); 0 counts forever.",
       {}},
      {"increment", ParamType::Number, false, Value(1), "How much to add (may be negative).", {}},
      {"output",
       ParamType::Variable,
       false,
       Value("COUNT"),
       "The variable that gets the count after this increment.",
       {}},
      {"max_keys",
       ParamType::Number,
       false,
       Value(100000),
       "The most keys kept in memory (constant); the least recently used key goes first.",
       {}},
  };
  s.chain_points = {"next"};
  return s;
}

class CounterRule : public Rule {
 public:
  CounterRule(const Params& p, int64_t window, size_t max_keys)
      : key_(p["key"]),
        increment_(p["increment"]),
        output_(p["output"]),
        window_(window),
        store_(max_keys) {}

  int execute(ExecContext& ctx) const override {
    double inc = increment_.number(ctx);
    if (!std::isfinite(inc)) throw EvalError("increment must be a finite number");
    int64_t now = ctx.now_ms();
    Value scratch;
    std::string_view key = key_text(key_, ctx, scratch, key_buffer());
    double count = store_.with(key, [&](SlidingWindow& w) {
      w.sum(now, window_);
      w.add(now, window_, inc);
      return w.sum(now, window_);
    });
    ctx.vars.set(output_.slot(), Value(count));
    return 0;
  }

 private:
  Param key_, increment_, output_;
  int64_t window_;
  mutable KeyedStore<SlidingWindow> store_;
};

std::unique_ptr<Rule> make_counter(CompileContext& cc) {
  int64_t window = 0, max_keys = 0;
  bool ok = constant_integer(cc, "window_ms", 0, kMaxWindowMs, "it shapes the storage", &window);
  ok = constant_integer(cc, "max_keys", 1, kMaxKeysLimit, "it bounds the memory", &max_keys) && ok;
  if (!ok) return nullptr;
  return std::make_unique<CounterRule>(cc.params(), window, static_cast<size_t>(max_keys));
}

// ---------------------------------------------------------------------------------------
// RateLimiter

RuleSpec rate_limiter_spec() {
  RuleSpec s;
  s.name = "RateLimiter";
  s.group = "Data";
  s.doc =
      "Allows at most `limit` requests per key in any sliding window of `window_ms` "
      "milliseconds: takes `allowed` and counts the request, or takes `limited` without "
      "counting it, so a client that keeps retrying gets through again as soon as its older "
      "requests leave the window. The count in the window goes into a variable. Requests "
      "close in time share a slot of 1/64 of the window that leaves the window with its "
      "newest request, so the limit is never exceeded. At most `max_keys` keys are kept in "
      "memory, the least recently used going first.";
  s.params = {
      {"key", ParamType::String, true, {}, "Whom to limit, e.g. ${REMOTE_ADDR}.", {}},
      {"limit", ParamType::Number, true, {}, "The most requests allowed in the window.", {}},
      {"window_ms",
       ParamType::Number,
       false,
       Value(60000),
       "The sliding window in milliseconds (constant); 0 makes `limit` a quota that never "
       "resets.",
       {}},
      {"output",
       ParamType::Variable,
       false,
       Value("RATE_COUNT"),
       "The variable that gets the number of requests counted in the window.",
       {}},
      {"max_keys",
       ParamType::Number,
       false,
       Value(100000),
       "The most keys kept in memory (constant); the least recently used key goes first.",
       {}},
  };
  s.chain_points = {"allowed", "limited"};
  return s;
}

class RateLimiterRule : public Rule {
 public:
  RateLimiterRule(const Params& p, int64_t window, size_t max_keys)
      : key_(p["key"]),
        limit_(p["limit"]),
        output_(p["output"]),
        window_(window),
        store_(max_keys) {}

  int execute(ExecContext& ctx) const override {
    double limit = limit_.number(ctx);
    if (std::isnan(limit) || limit < 0)
      throw EvalError("limit must be a number of 0 or more, got " + format_number(limit));
    int64_t now = ctx.now_ms();
    Value scratch;
    std::string_view key = key_text(key_, ctx, scratch, key_buffer());
    bool allowed = false;
    double count = store_.with(key, [&](SlidingWindow& w) {
      double c = w.sum(now, window_);
      if (c + 1 <= limit) {
        allowed = true;
        w.add(now, window_, 1);
        ++c;
      }
      return c;
    });
    ctx.vars.set(output_.slot(), Value(count));
    return allowed ? kAllowed : kLimited;
  }

 private:
  static constexpr int kAllowed = 0, kLimited = 1;
  Param key_, limit_, output_;
  int64_t window_;
  mutable KeyedStore<SlidingWindow> store_;
};

std::unique_ptr<Rule> make_rate_limiter(CompileContext& cc) {
  int64_t window = 0, max_keys = 0, limit = 0;
  bool ok = constant_integer(cc, "window_ms", 0, kMaxWindowMs, "it shapes the storage", &window);
  ok = constant_integer(cc, "max_keys", 1, kMaxKeysLimit, "it bounds the memory", &max_keys) && ok;
  if (cc.params()["limit"].is_constant())
    ok = constant_integer(cc, "limit", 0, 1'000'000'000, "", &limit) && ok;
  if (!ok) return nullptr;
  return std::make_unique<RateLimiterRule>(cc.params(), window, static_cast<size_t>(max_keys));
}

}  // namespace

void register_data(RuleRegistry& r) {
  r.add(json_parse_spec(), [](CompileContext& cc) -> std::unique_ptr<Rule> {
    return std::make_unique<JsonParseRule>(cc.params());
  });
  r.add(json_build_spec(), [](CompileContext& cc) -> std::unique_ptr<Rule> {
    return std::make_unique<JsonBuildRule>(cc.params());
  });
  r.add(csv_lookup_spec(), make_csv_lookup);
  r.add(history_recorder_spec(), make_history_recorder);
  r.add(counter_spec(), make_counter);
  r.add(rate_limiter_spec(), make_rate_limiter);
}

}  // namespace cap::rules

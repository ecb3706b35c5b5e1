// Values: text and number views, equality and ordering, JSON in and out.
#include "cap/value.h"

#include <boost/json/basic_parser_impl.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <unordered_map>

namespace cap {

// ---------------------------------------------------------------------------------------
// Map

const Value* Map::find(std::string_view key) const {
  for (const auto& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

Value* Map::find(std::string_view key) {
  for (auto& e : entries_)
    if (e.first == key) return &e.second;
  return nullptr;
}

void Map::set(std::string key, Value v) {
  if (Value* existing = find(key)) {
    *existing = std::move(v);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(v));
}

void Map::append(std::string key, Value v) { entries_.emplace_back(std::move(key), std::move(v)); }

bool Map::erase(std::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

// Maps are equal when they hold the same keys with equal values, in any order.
bool Map::operator==(const Map& o) const {
  if (entries_.size() != o.entries_.size()) return false;
  for (const auto& e : entries_) {
    const Value* other = o.find(e.first);
    if (!other || !e.second.equals(*other)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Value

const char* type_name(Type t) {
  switch (t) {
    case Type::Null:
      return "null";
    case Type::Boolean:
      return "boolean";
    case Type::Number:
      return "number";
    case Type::String:
      return "string";
    case Type::List:
      return "list";
    case Type::Map:
      return "map";
    case Type::Bytes:
      return "bytes";
  }
  return "unknown";
}

bool Value::truthy() const {
  switch (type()) {
    case Type::Null:
      return false;
    case Type::Boolean:
      return as_bool();
    case Type::Number: {
      double d = as_number();
      return d != 0 && !std::isnan(d);
    }
    case Type::String:
      return !as_string().empty();
    case Type::List:
      return !as_list().empty();
    case Type::Map:
      return !as_map().empty();
    case Type::Bytes:
      return !as_bytes().data.empty();
  }
  return false;
}

void Value::append_text(std::string& out) const {
  switch (type()) {
    case Type::Null:
      return;
    case Type::Boolean:
      out += as_bool() ? "true" : "false";
      return;
    case Type::Number:
      append_number(out, as_number());
      return;
    case Type::String:
      out += as_string();
      return;
    case Type::List:
    case Type::Map:
      append_json(out, *this);
      return;
    case Type::Bytes:
      out += as_bytes().data;
      return;
  }
}

std::string Value::to_text() const {
  if (is_string()) return as_string();
  std::string s;
  append_text(s);
  return s;
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Parses trimmed decimal text ("12", " -1.5e3 ", "+4"); rejects anything else, including
// "inf", "nan" and values out of a double's range.
bool parse_number_text(std::string_view s, double* out) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) return false;
  }
  if (s.empty()) return false;
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d, std::chars_format::general);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return false;
  *out = d;
  return true;
}

}  // namespace

double Value::to_number(bool* ok) const {
  double d = std::numeric_limits<double>::quiet_NaN();
  bool good = false;
  switch (type()) {
    case Type::Number:
      d = as_number();
      good = true;
      break;
    case Type::Boolean:
      d = as_bool() ? 1 : 0;
      good = true;
      break;
    case Type::String:
      good = parse_number_text(as_string(), &d);
      break;
    default:
      break;
  }
  if (!good) d = std::numeric_limits<double>::quiet_NaN();
  if (ok) *ok = good;
  return d;
}

bool Value::equals(const Value& o) const {
  Type a = type(), b = o.type();
  if (a != b) {
    // A number and a numeric string compare as numbers.
    if (a == Type::Number && b == Type::String) {
      bool ok = false;
      double d = o.to_number(&ok);
      return ok && d == as_number();
    }
    if (a == Type::String && b == Type::Number) return o.equals(*this);
    return false;
  }
  switch (a) {
    case Type::Null:
      return true;
    case Type::Boolean:
      return as_bool() == o.as_bool();
    case Type::Number:
      return as_number() == o.as_number();
    case Type::String:
      return as_string() == o.as_string();
    case Type::List: {
      const List& x = as_list();
      const List& y = o.as_list();
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!x[i].equals(y[i])) return false;
      return true;
    }
    case Type::Map:
      return &as_map() == &o.as_map() || as_map() == o.as_map();
    case Type::Bytes:
      return as_bytes() == o.as_bytes();
  }
  return false;
}

int Value::compare(const Value& o, bool* ok) const {
  auto order = [](auto x, auto y) { return x < y ? -1 : (y < x ? 1 : 0); };
  Type a = type(), b = o.type();
  if (a == Type::String && b == Type::String) {
    if (ok) *ok = true;
    int c = as_string().compare(o.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a == Type::Bytes && b == Type::Bytes) {
    if (ok) *ok = true;
    int c = as_bytes().data.compare(o.as_bytes().data);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if ((a == Type::Number || a == Type::String) && (b == Type::Number || b == Type::String)) {
    bool ok_a = false, ok_b = false;
    double x = to_number(&ok_a), y = o.to_number(&ok_b);
    if (ok_a && ok_b && !std::isnan(x) && !std::isnan(y)) {
      if (ok) *ok = true;
      return order(x, y);
    }
  }
  if (ok) *ok = false;
  return 0;
}

// ---------------------------------------------------------------------------------------
// Numbers

void append_number(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "NaN";
    return;
  }
  if (std::isinf(d)) {
    out += d < 0 ? "-Infinity" : "Infinity";
    return;
  }
  char buf[40];
  if (d == std::trunc(d) && std::fabs(d) < 1e16) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(d));
    out.append(buf, r.ptr);
    return;
  }
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::general, 15);
  out.append(buf, r.ptr);
}

// ---------------------------------------------------------------------------------------
// JSON out

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
size_t utf8_sequence(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n = s.size() - i;
  auto cont = [&](size_t k) { return k < s.size() && (byte(k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return n >= 2 && cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || !cont(i + 1) || !cont(i + 2)) return 0;
    unsigned char c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
    if (c == 0xED && c1 > 0x9F) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || !cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    unsigned char c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// Writes `s` as a JSON string. Bytes that are not valid UTF-8 become U+FFFD so the output
// is always valid JSON.
}  // namespace

namespace {
/// Bytes a JSON string holds as they are: printable ASCII but the quote and the backslash.
struct JsonPlainTable {
  bool at[256] = {};
  constexpr JsonPlainTable() {
    for (int c = 0x20; c < 0x80; ++c) at[c] = c != '"' && c != '\\';
  }
};
constexpr JsonPlainTable kJsonPlain;
}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (kJsonPlain.at[c]) {
      size_t j = i + 1;
      while (j < s.size() && kJsonPlain.at[static_cast<unsigned char>(s[j])]) ++j;
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      case '\b':
        out += "\\b";
        ++i;
        continue;
      case '\f':
        out += "\\f";
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
      continue;
    }
    size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out += '"';
}

void append_json(std::string& out, const Value& v) {
  switch (v.type()) {
    case Type::Null:
      out += "null";
      return;
    case Type::Boolean:
      out += v.as_bool() ? "true" : "false";
      return;
    case Type::Number:
      if (!std::isfinite(v.as_number()))
        out += "null";
      else
        append_number(out, v.as_number());
      return;
    case Type::String:
      append_json_string(out, v.as_string());
      return;
    case Type::Bytes:
      append_json_string(out, v.as_bytes().data);
      return;
    case Type::List: {
      out += '[';
      bool first = true;
      for (const Value& e : v.as_list()) {
        if (!first) out += ',';
        first = false;
        append_json(out, e);
      }
      out += ']';
      return;
    }
    case Type::Map: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_map()) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, k);
        out += ':';
        append_json(out, e);
      }
      out += '}';
      return;
    }
  }
}

std::string to_json(const Value& v) {
  std::string s;
  append_json(s, v);
  return s;
}

// ---------------------------------------------------------------------------------------
// JSON in: a Boost.JSON SAX handler that builds Values directly, without recursion (the
// parser enforces the depth limit; the builder keeps its own stack).

namespace {

namespace bj = boost::json;

class ValueBuilder {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  bool on_document_begin(bj::error_code&) { return true; }
  bool on_document_end(bj::error_code&) { return true; }
  bool on_array_begin(bj::error_code&) {
    stack_.emplace_back();
    stack_.back().is_map = false;
    return true;
  }
  bool on_array_end(std::size_t, bj::error_code&) {
    Value v(std::move(stack_.back().list));
    stack_.pop_back();
    emit(std::move(v));
    return true;
  }
  bool on_object_begin(bj::error_code&) {
    stack_.emplace_back();
    stack_.back().is_map = true;
    return true;
  }
  bool on_object_end(std::size_t, bj::error_code&) {
    Frame& f = stack_.back();
    Map m;
    m.reserve(f.entries.size());
    for (auto& [k, e] : f.entries) m.append(std::move(k), std::move(e));
    stack_.pop_back();
    emit(Value(std::move(m)));
    return true;
  }
  bool on_string_part(bj::string_view s, std::size_t, bj::error_code&) {
    buf_.append(s.data(), s.size());
    return true;
  }
  bool on_string(bj::string_view s, std::size_t, bj::error_code&) {
    buf_.append(s.data(), s.size());
    emit(Value(std::move(buf_)));
    buf_.clear();
    return true;
  }
  bool on_key_part(bj::string_view s, std::size_t, bj::error_code&) {
    buf_.append(s.data(), s.size());
    return true;
  }
  bool on_key(bj::string_view s, std::size_t, bj::error_code&) {
    buf_.append(s.data(), s.size());
    stack_.back().key = std::move(buf_);
    buf_.clear();
    return true;
  }
  bool on_number_part(bj::string_view, bj::error_code&) { return true; }
  bool on_int64(std::int64_t i, bj::string_view, bj::error_code&) {
    emit(Value(static_cast<double>(i)));
    return true;
  }
  bool on_uint64(std::uint64_t u, bj::string_view, bj::error_code&) {
    emit(Value(static_cast<double>(u)));
    return true;
  }
  bool on_double(double d, bj::string_view, bj::error_code&) {
    emit(Value(d));
    return true;
  }
  bool on_bool(bool b, bj::error_code&) {
    emit(Value(b));
    return true;
  }
  bool on_null(bj::error_code&) {
    emit(Value());
    return true;
  }
  bool on_comment_part(bj::string_view, bj::error_code&) { return true; }
  bool on_comment(bj::string_view, bj::error_code&) { return true; }

  Value take() { return std::move(root_); }

 private:
  struct Frame {
    bool is_map = false;
    List list;
    std::vector<Map::Entry> entries;
    std::string key;
    // Built once an object grows large, so duplicate keys stay cheap to find.
    std::unordered_map<std::string, size_t> index;
  };

  void emit(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return;
    }
    Frame& f = stack_.back();
    if (!f.is_map) {
      f.list.push_back(std::move(v));
      return;
    }
    // A repeated key keeps its first position and takes the last value.
    constexpr size_t kIndexFrom = 16;
    if (f.entries.size() < kIndexFrom) {
      for (auto& e : f.entries) {
        if (e.first == f.key) {
          e.second = std::move(v);
          return;
        }
      }
      f.entries.emplace_back(std::move(f.key), std::move(v));
      if (f.entries.size() == kIndexFrom)
        for (size_t i = 0; i < f.entries.size(); ++i) f.index.emplace(f.entries[i].first, i);
      return;
    }
    auto [it, inserted] = f.index.emplace(f.key, f.entries.size());
    if (!inserted) {
      f.entries[it->second].second = std::move(v);
      return;
    }
    f.entries.emplace_back(std::move(f.key), std::move(v));
  }

  std::vector<Frame> stack_;
  std::string buf_;
  Value root_;
};

}  // namespace

Value json_parse(std::string_view text, std::string* error, const JsonLimits& limits) {
  std::string scratch_error;
  std::string& err = error ? *error : scratch_error;
  err.clear();
  if (text.size() > limits.max_bytes) {
    err = "JSON text is " + std::to_string(text.size()) + " bytes, over the limit of " +
          std::to_string(limits.max_bytes) + " bytes";
    return Value();
  }
  bj::parse_options opts;
  opts.max_depth = limits.max_depth;
  bj::basic_parser<ValueBuilder> parser(opts);
  bj::error_code ec;
  size_t n = parser.write_some(false, text.data(), text.size(), ec);
  if (!ec && n < text.size()) ec = bj::error::extra_data;
  if (ec) {
    if (ec == bj::error::too_deep) {
      err = "JSON is nested deeper than " + std::to_string(limits.max_depth) + " levels";
    } else if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
      err = "invalid JSON: the text is empty";
    } else {
      err = "invalid JSON at byte " + std::to_string(n + 1) + ": " + ec.message();
    }
    return Value();
  }
  return parser.handler().take();
}

}  // namespace cap

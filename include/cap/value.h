// Values that flow through a rule set: null, boolean, number, string, list, map, bytes.
//
// A Value is a small tagged union. Lists and maps are immutable once shared and held by
// shared_ptr, so copying a Value that holds one is a reference-count increment. Strings are
// held inline (std::string, small-string optimised). Values are not thread-safe to mutate
// concurrently, but a const Value may be read from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace cap {

class Value;

/// A list of values.
using List = std::vector<Value>;

/// A map from string keys to values that keeps insertion order. Lookup is linear: maps in
/// rule sets are small (headers, JSON objects); large keyed data belongs in CsvLookup.
class Map {
 public:
  using Entry = std::pair<std::string, Value>;
  Map() = default;

  /// The value under `key`, or nullptr.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  /// Sets `key` to `v`, replacing an existing entry in place.
  void set(std::string key, Value v);
  /// Appends without checking for an existing key (the caller knows it is new).
  void append(std::string key, Value v);
  /// Removes `key`; returns whether it was there.
  bool erase(std::string_view key);
  // Defined below Value: Value is incomplete here.
  size_t size() const;
  bool empty() const;
  void reserve(size_t n);
  std::vector<Entry>::const_iterator begin() const;
  std::vector<Entry>::const_iterator end() const;
  bool operator==(const Map& o) const;

 private:
  std::vector<Entry> entries_;
};

/// Raw bytes, distinct from text.
struct Bytes {
  std::string data;
  bool operator==(const Bytes& o) const { return data == o.data; }
};

enum class Type : uint8_t { Null, Boolean, Number, String, List, Map, Bytes };

/// The name of a type as users see it in errors ("null", "boolean", ...).
const char* type_name(Type t);

class Value {
 public:
  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v_(b) {}
  Value(double d) : v_(d) {}
  Value(int i) : v_(static_cast<double>(i)) {}
  Value(int64_t i) : v_(static_cast<double>(i)) {}
  Value(uint64_t i) : v_(static_cast<double>(i)) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(List l) : v_(std::make_shared<const List>(std::move(l))) {}
  Value(Map m) : v_(std::make_shared<const Map>(std::move(m))) {}
  Value(std::shared_ptr<const List> l) : v_(std::move(l)) {}
  Value(std::shared_ptr<const Map> m) : v_(std::move(m)) {}
  Value(Bytes b) : v_(std::move(b)) {}

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return v_.index() == 0; }
  bool is_bool() const { return type() == Type::Boolean; }
  bool is_number() const { return type() == Type::Number; }
  bool is_string() const { return type() == Type::String; }
  bool is_list() const { return type() == Type::List; }
  bool is_map() const { return type() == Type::Map; }
  bool is_bytes() const { return type() == Type::Bytes; }

  // Accessors: precondition is the matching type.
  bool as_bool() const { return std::get<bool>(v_); }
  double as_number() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const List& as_list() const { return *std::get<std::shared_ptr<const List>>(v_); }
  const Map& as_map() const { return *std::get<std::shared_ptr<const Map>>(v_); }
  const Bytes& as_bytes() const { return std::get<Bytes>(v_); }
  const std::shared_ptr<const List>& list_ptr() const {
    return std::get<std::shared_ptr<const List>>(v_);
  }
  const std::shared_ptr<const Map>& map_ptr() const {
    return std::get<std::shared_ptr<const Map>>(v_);
  }

  /// Truthiness: null, false, 0, NaN, "" and empty list/map/bytes are false.
  bool truthy() const;
  /// Appends the text form: null is empty, numbers without a trailing ".0", lists and maps
  /// as JSON, bytes as their raw content.
  void append_text(std::string& out) const;
  std::string to_text() const;
  /// Numeric view: numbers as is, booleans 0/1, strings parsed (trimmed); nullopt-like NaN
  /// result when the value has no numeric reading. `ok` reports whether it had one.
  double to_number(bool* ok = nullptr) const;
  /// Equality: same type and equal content; a number and a numeric string compare as
  /// numbers. null equals only null.
  bool equals(const Value& o) const;
  /// Ordering for < <= > >=: numbers numerically, strings lexicographically, a number and a
  /// numeric string numerically. Returns false in `ok` when the two do not order.
  int compare(const Value& o, bool* ok) const;

  bool operator==(const Value& o) const { return equals(o); }

 private:
  std::variant<std::monostate, bool, double, std::string, std::shared_ptr<const List>,
               std::shared_ptr<const Map>, Bytes>
      v_;
};

inline size_t Map::size() const { return entries_.size(); }
inline bool Map::empty() const { return entries_.empty(); }
inline void Map::reserve(size_t n) { entries_.reserve(n); }
inline std::vector<Map::Entry>::const_iterator Map::begin() const { return entries_.begin(); }
inline std::vector<Map::Entry>::const_iterator Map::end() const { return entries_.end(); }

/// Formats a number as users expect: integers without a decimal point, others with up to
/// 15 significant digits.
void append_number(std::string& out, double d);

/// JSON conversion. Parsing reports errors through `error` (empty on success); the depth and
/// size limits guard against hostile documents.
struct JsonLimits {
  size_t max_depth = 64;
  size_t max_bytes = 16 * 1024 * 1024;
};
Value json_parse(std::string_view text, std::string* error, const JsonLimits& limits = {});
void append_json(std::string& out, const Value& v);
/// Appends `s` as a JSON string (quoted, escaped; invalid UTF-8 becomes U+FFFD).
void append_json_string(std::string& out, std::string_view s);
std::string to_json(const Value& v);

}  // namespace cap

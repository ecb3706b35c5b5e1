// The per-request variable bag (the VAO) and the symbol table that backs it.
//
// Every variable name a configuration mentions is interned once at load into a Symbols
// table and gets a slot number; expressions and rules read and write slots, so a request
// never hashes a name it knows in advance. Names that appear only at run time (a query
// parameter nobody references, a SetVariable with a computed name) live in an overflow map.
// A Variables object belongs to one request and is used by one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cap/value.h"

namespace cap {

/// Slots every configuration has, set by the HTTP input adaptor.
enum WellKnown : uint32_t {
  kMethod = 0,
  kUri,
  kQuery,
  kRequestUrl,
  kRequestTimestamp,
  kRemoteAddr,
  kHeaders,
  kBody,
  kCookies,
  kWellKnownCount
};

/// Names to slot numbers. Built while a configuration loads; read-only afterwards, so
/// concurrent lookups are safe once loading has finished.
class Symbols {
 public:
  Symbols();
  /// The slot of `name`, adding it when new. Only during load.
  uint32_t intern(std::string_view name);
  /// The slot of `name`, or -1 when the configuration never mentions it.
  int64_t find(std::string_view name) const;
  const std::string& name(uint32_t slot) const { return names_[slot]; }
  uint32_t size() const { return static_cast<uint32_t>(names_.size()); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> ids_;
  std::vector<std::string> names_;
};

/// Receives variable changes while a request is traced.
class VariableObserver {
 public:
  virtual ~VariableObserver() = default;
  virtual void on_set(std::string_view name, const Value& v) = 0;
  virtual void on_delete(std::string_view name) = 0;
};

/// Computes well-known variables on first read (HEADERS, BODY, COOKIES), so requests that
/// never look at them never build them.
class LazyVariables {
 public:
  virtual ~LazyVariables() = default;
  /// Returns the value for well-known `slot`, or null when it has none.
  virtual Value materialize(uint32_t slot) = 0;
};

class Variables {
 public:
  explicit Variables(const Symbols& symbols);

  /// Reads a slot; an unset variable reads as null.
  const Value& get(uint32_t slot);
  /// Reads by name (slot when known, else the overflow map).
  const Value& get(std::string_view name);
  bool has(uint32_t slot) const { return slot < set_.size() && set_[slot]; }
  bool has(std::string_view name) const;

  void set(uint32_t slot, Value v);
  void set(std::string_view name, Value v);
  void erase(uint32_t slot);
  void erase(std::string_view name);

  /// Visits every set variable whose name `want(name)` accepts, as (name, value), slots
  /// first in slot order. A lazily computed one (HEADERS, BODY, COOKIES) is computed only
  /// when its name is accepted.
  template <typename Want, typename F>
  void for_each(Want&& want, F&& f) {
    for (uint32_t i = 0; i < values_.size(); ++i)
      if ((set_[i] || (i < kWellKnownCount && lazy_pending_[i])) && want(symbols_->name(i))) {
        const Value& v = get(i);
        if (set_[i]) f(symbols_->name(i), v);
      }
    for (auto& [k, v] : extra_)
      if (want(std::string_view(k))) f(k, v);
  }
  /// Visits every set variable (the lazily computed ones computed).
  template <typename F>
  void for_each(F&& f) {
    for_each([](std::string_view) { return true; }, f);
  }

  /// Registers the provider of lazily computed well-known variables.
  void set_lazy(LazyVariables* lazy) { lazy_ = lazy; }
  /// Marks well-known `slot` as computed on first read by the lazy provider.
  void mark_lazy(uint32_t slot);
  void set_observer(VariableObserver* obs) { observer_ = obs; }
  const Symbols& symbols() const { return *symbols_; }
  /// Forgets every variable, keeping the allocated storage for the next request.
  void clear();

 private:
  const Symbols* symbols_;
  std::vector<Value> values_;
  std::vector<uint8_t> set_;
  std::vector<uint8_t> lazy_pending_;
  std::unordered_map<std::string, Value> extra_;
  LazyVariables* lazy_ = nullptr;
  VariableObserver* observer_ = nullptr;
};

}  // namespace cap

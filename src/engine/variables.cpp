#include "cap/variables.h"

namespace cap {

namespace {
const Value kNull;
constexpr const char* kWellKnownNames[kWellKnownCount] = {
    "METHOD", "URI", "QUERY", "REQUEST_URL", "REQUEST_TIMESTAMP", "REMOTE_ADDR",
    "HEADERS", "BODY", "COOKIES"};
}  // namespace

Symbols::Symbols() {
  for (const char* n : kWellKnownNames) intern(n);
}

uint32_t Symbols::intern(std::string_view name) {
  auto it = ids_.find(name);
  if (it != ids_.end()) return it->second;
  auto id = static_cast<uint32_t>(names_.size());
  names_.emplace_back(name);
  ids_.emplace(std::string(name), id);
  return id;
}

int64_t Symbols::find(std::string_view name) const {
  auto it = ids_.find(name);
  return it == ids_.end() ? -1 : static_cast<int64_t>(it->second);
}

Variables::Variables(const Symbols& symbols)
    : symbols_(&symbols),
      values_(symbols.size()),
      set_(symbols.size(), 0),
      lazy_pending_(kWellKnownCount, 0) {}

const Value& Variables::get(uint32_t slot) {
  if (slot >= values_.size()) return kNull;
  if (slot < kWellKnownCount && lazy_pending_[slot]) {
    lazy_pending_[slot] = 0;
    if (lazy_) {
      values_[slot] = lazy_->materialize(slot);
      set_[slot] = 1;
    }
  }
  return set_[slot] ? values_[slot] : kNull;
}

const Value& Variables::get(std::string_view name) {
  int64_t slot = symbols_->find(name);
  if (slot >= 0) return get(static_cast<uint32_t>(slot));
  if (extra_.empty()) return kNull;
  auto it = extra_.find(std::string(name));
  return it == extra_.end() ? kNull : it->second;
}

bool Variables::has(std::string_view name) const {
  int64_t slot = symbols_->find(name);
  if (slot >= 0) {
    auto s = static_cast<uint32_t>(slot);
    return s < set_.size() && (set_[s] || (s < kWellKnownCount && lazy_pending_[s]));
  }
  return extra_.count(std::string(name)) != 0;
}

void Variables::set(uint32_t slot, Value v) {
  if (slot >= values_.size()) return;
  if (observer_) observer_->on_set(symbols_->name(slot), v);
  if (slot < kWellKnownCount) lazy_pending_[slot] = 0;
  values_[slot] = std::move(v);
  set_[slot] = 1;
}

void Variables::set(std::string_view name, Value v) {
  int64_t slot = symbols_->find(name);
  if (slot >= 0) return set(static_cast<uint32_t>(slot), std::move(v));
  if (observer_) observer_->on_set(name, v);
  extra_[std::string(name)] = std::move(v);
}

void Variables::erase(uint32_t slot) {
  if (slot >= values_.size()) return;
  if (observer_ && (set_[slot] || (slot < kWellKnownCount && lazy_pending_[slot])))
    observer_->on_delete(symbols_->name(slot));
  if (slot < kWellKnownCount) lazy_pending_[slot] = 0;
  set_[slot] = 0;
  values_[slot] = Value();
}

void Variables::erase(std::string_view name) {
  int64_t slot = symbols_->find(name);
  if (slot >= 0) return erase(static_cast<uint32_t>(slot));
  auto it = extra_.find(std::string(name));
  if (it == extra_.end()) return;
  if (observer_) observer_->on_delete(name);
  extra_.erase(it);
}

void Variables::mark_lazy(uint32_t slot) {
  if (slot < kWellKnownCount && !set_[slot]) lazy_pending_[slot] = 1;
}

void Variables::clear() {
  for (uint32_t i = 0; i < values_.size(); ++i) {
    if (set_[i]) {
      values_[i] = Value();
      set_[i] = 0;
    }
  }
  std::fill(lazy_pending_.begin(), lazy_pending_.end(), 0);
  extra_.clear();
  lazy_ = nullptr;
  observer_ = nullptr;
}

}  // namespace cap

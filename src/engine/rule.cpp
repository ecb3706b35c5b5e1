#include "cap/rule.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <tuple>

#include "cap/engine.h"
#include "engine/span_clock.h"

namespace cap {

const char* param_type_name(ParamType t) {
  switch (t) {
    case ParamType::String: return "string";
    case ParamType::Number: return "number";
    case ParamType::Boolean: return "boolean";
    case ParamType::Expression: return "expression";
    case ParamType::Variable: return "variable";
    case ParamType::List: return "list";
    case ParamType::Map: return "map";
    case ParamType::Any: return "any";
  }
  return "any";
}

Param Param::constant(Value v) {
  Param p;
  p.kind_ = Kind::Constant;
  p.constant_ = std::move(v);
  return p;
}

Param Param::from_template(Template t) {
  if (t.is_constant()) return constant(t.constant());
  Param p;
  p.kind_ = Kind::Template;
  p.tmpl_ = std::move(t);
  return p;
}

Param Param::from_expression(Expression e) {
  Param p;
  p.kind_ = Kind::Expression;
  p.expr_ = std::move(e);
  return p;
}

Param Param::variable(uint32_t slot, std::string name) {
  Param p;
  p.kind_ = Kind::Variable;
  p.slot_ = slot;
  p.name_ = name;
  p.constant_ = Value(std::move(name));
  return p;
}

Param Param::composite(Value shape, std::vector<std::pair<std::string, Param>> members,
                       bool is_list) {
  bool all_constant = std::all_of(members.begin(), members.end(),
                                  [](const auto& m) { return m.second.is_constant(); });
  if (all_constant) return constant(std::move(shape));
  Param p;
  p.kind_ = is_list ? Kind::CompositeList : Kind::CompositeMap;
  p.constant_ = std::move(shape);
  p.members_ = std::move(members);
  return p;
}

const Value& Param::eval(ExecContext& ctx, Value& scratch) const {
  switch (kind_) {
    case Kind::Absent: {
      static const Value null;
      return null;
    }
    case Kind::Constant:
    case Kind::Variable:
      return constant_;
    case Kind::Template:
      return tmpl_.eval(ctx, scratch);
    case Kind::Expression:
      return expr_.eval(ctx, scratch);
    case Kind::CompositeList: {
      List out;
      out.reserve(members_.size());
      for (auto& [k, m] : members_) out.push_back(m.value(ctx));
      scratch = Value(std::move(out));
      return scratch;
    }
    case Kind::CompositeMap: {
      Map out;
      out.reserve(members_.size());
      for (auto& [k, m] : members_) out.append(k, m.value(ctx));
      scratch = Value(std::move(out));
      return scratch;
    }
  }
  return constant_;
}

void Param::append_json(ExecContext& ctx, std::string& out) const {
  if (kind_ != Kind::CompositeList && kind_ != Kind::CompositeMap) {
    Value scratch;
    cap::append_json(out, eval(ctx, scratch));
    return;
  }
  const bool list = kind_ == Kind::CompositeList;
  out += list ? '[' : '{';
  bool first = true;
  for (const auto& [k, m] : members_) {
    if (!first) out += ',';
    first = false;
    if (!list) {
      append_json_string(out, k);
      out += ':';
    }
    m.append_json(ctx, out);
  }
  out += list ? ']' : '}';
}

Value Param::value(ExecContext& ctx) const {
  Value scratch;
  const Value& v = eval(ctx, scratch);
  if (&v == &scratch) return scratch;
  return v;
}

void Param::render(ExecContext& ctx, std::string& out) const {
  if (kind_ == Kind::Template) return tmpl_.render(ctx, out);
  Value scratch;
  eval(ctx, scratch).append_text(out);
}

std::string Param::text(ExecContext& ctx) const {
  std::string s;
  render(ctx, s);
  return s;
}

double Param::number(ExecContext& ctx) const {
  Value scratch;
  const Value& v = eval(ctx, scratch);
  if (v.is_number()) return v.as_number();
  bool ok = false;
  double d = v.to_number(&ok);
  if (!ok || v.is_null())
    throw EvalError("parameter '" + param_name_ + "' must be a number, got " +
                    (v.is_null() ? std::string("null") : "'" + v.to_text() + "'"));
  return d;
}

bool Param::boolean(ExecContext& ctx) const {
  Value scratch;
  const Value& v = eval(ctx, scratch);
  if (v.is_bool()) return v.as_bool();
  if (v.is_string()) {
    if (v.as_string() == "true") return true;
    if (v.as_string() == "false") return false;
  }
  if (v.is_number()) return v.as_number() != 0;
  throw EvalError("parameter '" + param_name_ + "' must be true or false, got '" + v.to_text() +
                  "'");
}

const Param& Params::operator[](std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return values_[i];
  static const Param absent;
  return absent;
}

// ---------------------------------------------------------------- data files

namespace {
int64_t file_mtime_ns(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec +
         static_cast<int64_t>(st.st_size) * 7;  // a size change counts even in the same tick
}
}  // namespace

namespace {
std::atomic<uint64_t> g_next_data_file_id{1};
}  // namespace

DataFile::DataFile(std::string display_path, std::string disk_path, std::string content,
                   Parser parse)
    : id_(g_next_data_file_id.fetch_add(1)),
      display_path_(std::move(display_path)),
      disk_path_(std::move(disk_path)),
      initial_(std::move(content)),
      parse_(std::move(parse)) {}

bool DataFile::load(std::string* error) {
  auto parsed = parse_(initial_, error);
  if (!parsed) return false;
  std::atomic_store(&data_, parsed);
  version_.fetch_add(1, std::memory_order_release);
  mtime_ = file_mtime_ns(disk_path_);
  next_check_ms_ = coarse_clock_ms() + 1000;
  initial_.clear();
  initial_.shrink_to_fit();
  return true;
}

void DataFile::maybe_reload(Logger* logger) const {
  if (disk_path_.empty()) return;
  int64_t now = coarse_clock_ms();
  if (now < next_check_ms_.load(std::memory_order_relaxed) ||
      reloading_.test_and_set(std::memory_order_acquire))
    return;
  next_check_ms_.store(now + 1000, std::memory_order_relaxed);
  int64_t m = file_mtime_ns(disk_path_);
  if (m != 0 && m != mtime_.load()) {
    mtime_ = m;
    std::string content, error;
    if (FILE* f = std::fopen(disk_path_.c_str(), "rb")) {
      char buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) content.append(buf, n);
      std::fclose(f);
      auto parsed = parse_(content, &error);
      if (parsed) {
        std::atomic_store(&data_, parsed);
        version_.fetch_add(1, std::memory_order_release);
        if (logger) logger->log(LogLevel::Info, "reloaded data file " + display_path_);
      } else if (logger) {
        logger->log(LogLevel::Error, "data file " + display_path_ +
                                         " changed but does not load, keeping the previous "
                                         "data: " + error);
      }
    }
  }
  reloading_.clear(std::memory_order_release);
}

std::shared_ptr<const void> DataFile::current(Logger* logger) const {
  maybe_reload(logger);
  return std::atomic_load(&data_);
}

const void* DataFile::pinned(Logger* logger) const {
  maybe_reload(logger);
  // A small per-thread cache of (file, version) -> data keeps the request path free of
  // the lock that atomic_load on a shared_ptr takes.
  struct Pin {
    uint64_t file = 0, version = 0;
    std::shared_ptr<const void> data;
  };
  thread_local Pin pins[8];
  uint64_t v = version_.load(std::memory_order_acquire);
  Pin& p = pins[id_ & 7];
  if (p.file != id_ || p.version != v) {
    p.data = std::atomic_load(&data_);
    p.file = id_;
    p.version = v;
  }
  return p.data.get();
}

// ---------------------------------------------------------------- registry

void RuleRegistry::add(RuleSpec spec, RuleFactory factory) {
  auto type = std::make_shared<RuleType>(RuleType{std::move(spec), std::move(factory)});
  std::lock_guard lock(mu_);
  for (auto& t : types_)
    if (t->spec.name == type->spec.name) {
      t = type;
      return;
    }
  types_.push_back(std::move(type));
}

bool RuleRegistry::remove(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(types_.begin(), types_.end(),
                         [&](auto& t) { return t->spec.name == name; });
  if (it == types_.end()) return false;
  types_.erase(it);
  return true;
}

std::shared_ptr<const RuleType> RuleRegistry::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  for (auto& t : types_)
    if (t->spec.name == name) return t;
  return nullptr;
}

std::vector<std::shared_ptr<const RuleType>> RuleRegistry::all() const {
  std::vector<std::shared_ptr<const RuleType>> out;
  {
    std::lock_guard lock(mu_);
    out = types_;
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return std::tie(a->spec.group, a->spec.name) < std::tie(b->spec.group, b->spec.name);
  });
  return out;
}

}  // namespace cap

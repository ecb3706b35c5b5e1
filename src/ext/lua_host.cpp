#include "ext/lua_host.h"

#include <lua5.4/lauxlib.h>
#include <lua5.4/lua.h>
#include <lua5.4/lualib.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "cap/engine.h"

namespace cap::ext {

namespace {

std::atomic<uint64_t> g_next_image_id{1};

constexpr int kHookStep = 1000;  // instructions between two count-hook calls
constexpr int kMaxDepth = 64;    // nesting of tables and lists crossing the boundary

// ------------------------------------------------------------------ one Lua state

struct RuleSlot {
  int ref = LUA_NOREF;  // the function the script returned
  std::string error;    // why the script did not load, when ref is LUA_NOREF
};

/// A Lua state for one Image on one thread.
class State {
 public:
  explicit State(std::shared_ptr<const Image> image);
  ~State() {
    if (L_) lua_close(L_);
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  /// Runs rule `rule` with `params`; returns the chain point name ("" for nil). Throws
  /// EvalError naming extension, rule and line.
  std::string run(size_t rule, ExecContext& ctx, const Params& params, const RuleSpec& spec);

  const std::weak_ptr<const Image>& image() const { return image_; }

  // Used by the C functions below.
  ExecContext* ctx = nullptr;
  const RuleSpec* spec = nullptr;
  const Manifest* manifest = nullptr;
  uint64_t used_bytes = 0, limit_bytes = 0;
  uint64_t used_instructions = 0, budget = 0;
  bool exhausted = false;
  bool allocation_refused = false;
  lua_State* L_ = nullptr;

  std::string where() const {
    return "extension " + manifest->name + " " + manifest->version +
           (spec ? ", rule " + spec->name : std::string()) + ": ";
  }

 private:
  void arm();  // resets the instruction budget and installs the count hook
  void open_sandbox();
  std::weak_ptr<const Image> image_;
  std::vector<RuleSlot> rules_;
  int ctx_ref_ = LUA_NOREF;  // the one ctx userdata handed to every execution
};

State* state_of(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return static_cast<State*>(ud);
}

void* limited_alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* st = static_cast<State*>(ud);
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    st->used_bytes -= old;
    return nullptr;
  }
  if (nsize > old && st->used_bytes + (nsize - old) > st->limit_bytes) {
    st->allocation_refused = true;
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p) st->used_bytes = st->used_bytes - old + nsize;
  return p;
}

void count_hook(lua_State* L, lua_Debug*) {
  State* st = state_of(L);
  st->used_instructions += kHookStep;
  if (st->used_instructions <= st->budget && !st->exhausted) return;
  if (!st->exhausted) {
    st->exhausted = true;
    // From now on every instruction raises, so a pcall inside the script cannot swallow
    // the stop and go on looping.
    lua_sethook(st->L_, count_hook, LUA_MASKCOUNT, 1);
    if (L != st->L_) lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  }
  luaL_where(L, 0);
  lua_pushfstring(L, "%sCPU budget exceeded (more than %I instructions in one execution)",
                  lua_tostring(L, -1), static_cast<lua_Integer>(st->budget));
  lua_error(L);
}

// ------------------------------------------------------------------ values across

void push_value(lua_State* L, const Value& v, int depth = 0) {
  luaL_checkstack(L, 3, "value nested too deeply");
  switch (v.type()) {
    case Type::Null:
      lua_pushnil(L);
      return;
    case Type::Boolean:
      lua_pushboolean(L, v.as_bool());
      return;
    case Type::Number: {
      double d = v.as_number();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9007199254740992.0)
        lua_pushinteger(L, static_cast<lua_Integer>(d));
      else
        lua_pushnumber(L, d);
      return;
    }
    case Type::String:
      lua_pushlstring(L, v.as_string().data(), v.as_string().size());
      return;
    case Type::Bytes:
      lua_pushlstring(L, v.as_bytes().data.data(), v.as_bytes().data.size());
      return;
    case Type::List: {
      if (depth >= kMaxDepth) luaL_error(L, "value nested too deeply");
      const List& l = v.as_list();
      lua_createtable(L, static_cast<int>(l.size()), 0);
      for (size_t i = 0; i < l.size(); ++i) {
        push_value(L, l[i], depth + 1);
        lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
      }
      return;
    }
    case Type::Map: {
      if (depth >= kMaxDepth) luaL_error(L, "value nested too deeply");
      const Map& m = v.as_map();
      lua_createtable(L, 0, static_cast<int>(m.size()));
      for (auto& [k, e] : m) {
        push_value(L, e, depth + 1);
        lua_setfield(L, -2, k.c_str());
      }
      return;
    }
  }
}

/// The Lua value at `idx` as a Value. Tables whose keys are exactly 1..n become lists, other
/// tables maps (keys as text); functions and other userdata raise an error.
Value to_value(lua_State* L, int idx, int depth = 0) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
      return Value();
    case LUA_TBOOLEAN:
      return Value(lua_toboolean(L, idx) != 0);
    case LUA_TNUMBER:
      return Value(static_cast<double>(lua_tonumber(L, idx)));
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, idx, &n);
      return Value(std::string(s, n));
    }
    case LUA_TTABLE: {
      if (depth >= kMaxDepth) luaL_error(L, "table nested too deeply (or it holds itself)");
      luaL_checkstack(L, 4, "table nested too deeply");
      lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
      lua_Integer count = 0;
      bool sequence = true;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        ++count;
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n)
          sequence = false;
        lua_pop(L, 1);
      }
      if (sequence && count == n) {
        List l;
        l.reserve(static_cast<size_t>(n));
        for (lua_Integer i = 1; i <= n; ++i) {
          lua_rawgeti(L, idx, i);
          l.push_back(to_value(L, -1, depth + 1));
          lua_pop(L, 1);
        }
        return Value(std::move(l));
      }
      Map m;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        std::string key;
        if (lua_type(L, -2) == LUA_TSTRING) {
          size_t kn = 0;
          const char* ks = lua_tolstring(L, -2, &kn);
          key.assign(ks, kn);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
          Value kv(static_cast<double>(lua_tonumber(L, -2)));
          key = kv.to_text();
        } else {
          luaL_error(L, "table keys must be strings or numbers, got a %s", luaL_typename(L, -2));
        }
        m.set(std::move(key), to_value(L, -1, depth + 1));
        lua_pop(L, 1);
      }
      return Value(std::move(m));
    }
    default:
      luaL_error(L, "a %s cannot become a variable value", luaL_typename(L, idx));
      return Value();
  }
}

// ------------------------------------------------------------------ the ctx API

ExecContext& live_ctx(lua_State* L) {
  State* st = state_of(L);
  if (!st->ctx) luaL_error(L, "ctx is used outside the execution it was given to");
  return *st->ctx;
}

std::string_view check_text(lua_State* L, int arg) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, arg, &n);
  return std::string_view(s, n);
}

int ctx_get(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  push_value(L, ctx.vars.get(check_text(L, 2)));
  return 1;
}

int ctx_set(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  std::string_view name = check_text(L, 2);
  if (name.empty()) luaL_argerror(L, 2, "a variable name must not be empty");
  Value v = to_value(L, 3);
  ctx.vars.set(name, std::move(v));
  return 0;
}

int ctx_delete(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  ctx.vars.erase(check_text(L, 2));
  return 0;
}

int ctx_log(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  std::string_view level = check_text(L, 2);
  LogLevel l;
  if (level == "debug")
    l = LogLevel::Debug;
  else if (level == "info")
    l = LogLevel::Info;
  else if (level == "warn")
    l = LogLevel::Warn;
  else if (level == "error")
    l = LogLevel::Error;
  else
    return luaL_argerror(L, 2, "the level must be debug, info, warn or error");
  size_t n = 0;
  const char* text = luaL_tolstring(L, 3, &n);
  ctx.logger().log(l, state_of(L)->where() + std::string(text, n));
  return 0;
}

int ctx_vault(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  State* st = state_of(L);
  std::string_view name = check_text(L, 2);
  std::string_view field = lua_isnoneornil(L, 3) ? std::string_view() : check_text(L, 3);
  bool declared = false;
  for (auto& c : st->manifest->credentials) declared = declared || c.name == name;
  if (!declared)
    return luaL_error(L, "credential '%s' is not declared in extension.json \"credentials\"",
                      std::string(name).c_str());
  if (!ctx.services.vault) return luaL_error(L, "this host has no vault");
  auto secret = ctx.services.vault->get(name, field);
  if (!secret) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, secret->data(), secret->size());
  return 1;
}

void require_waits(lua_State* L, const char* what) {
  State* st = state_of(L);
  if (!st->spec || !st->spec->may_wait)
    luaL_error(L, "ctx:%s waits, so the rule must declare \"waits\": true in extension.json", what);
}

std::string opt_field(lua_State* L, int table, const char* key, const char* fallback) {
  lua_getfield(L, table, key);
  std::string out = fallback;
  if (!lua_isnil(L, -1)) {
    if (!lua_isstring(L, -1)) luaL_error(L, "ctx:http: %s must be a string", key);
    size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    out.assign(s, n);
  }
  lua_pop(L, 1);
  return out;
}

int ctx_http(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  require_waits(L, "http");
  luaL_checktype(L, 2, LUA_TTABLE);
  HttpCall call;
  call.url = opt_field(L, 2, "url", "");
  if (call.url.rfind("http://", 0) != 0 && call.url.rfind("https://", 0) != 0)
    return luaL_error(L, "ctx:http: url must start with http:// or https://");
  call.method = opt_field(L, 2, "method", "GET");
  call.body = opt_field(L, 2, "body", "");
  lua_getfield(L, 2, "timeout_ms");
  if (!lua_isnil(L, -1)) {
    lua_Number t = luaL_checknumber(L, -1);
    if (!(t >= 1 && t <= 3600000))
      return luaL_error(L, "ctx:http: timeout_ms must be 1 to 3600000");
    call.timeout_ms = static_cast<int>(t);
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "headers");
  if (lua_istable(L, -1)) {
    Value h = to_value(L, -1);
    if (h.is_map())
      for (auto& [k, v] : h.as_map()) {
        std::string text = v.to_text();
        if (k.find_first_of("\r\n: ") != std::string::npos ||
            text.find_first_of("\r\n") != std::string::npos)
          return luaL_error(L, "ctx:http: header '%s' is not valid", k.c_str());
        call.headers.emplace_back(k, std::move(text));
      }
  }
  lua_pop(L, 1);
  if (!ctx.services.http) return luaL_error(L, "this host has no HTTP client");
  HttpReply reply = ctx.services.http->call(call);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, reply.status);
  lua_setfield(L, -2, "status");
  if (reply.status == 0) {
    lua_pushstring(L, reply.error.empty() ? "no answer" : reply.error.c_str());
    lua_setfield(L, -2, "error");
    lua_pushboolean(L, reply.timed_out);
    lua_setfield(L, -2, "timed_out");
    return 1;
  }
  lua_createtable(L, 0, static_cast<int>(reply.headers.size()));
  for (auto& [k, v] : reply.headers) {
    std::string key = k;
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, key.c_str());
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, reply.body.data(), reply.body.size());
  lua_setfield(L, -2, "body");
  return 1;
}

int ctx_sql(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  require_waits(L, "sql");
  std::string_view db = check_text(L, 2);
  std::string_view sql = check_text(L, 3);
  List args;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    Value a = to_value(L, 4);
    if (a.is_list())
      args = a.as_list();
    else if (!(a.is_map() && a.as_map().empty()))
      return luaL_argerror(L, 4, "args must be a list");
  }
  if (!ctx.services.sql) return luaL_error(L, "this host has no SQL databases");
  SqlCall call;  // `db` is a name of cap.json `databases`, as for SqlQuery
  call.database = db;
  const auto& dbs = ctx.runtime().configuration().databases;
  auto known = dbs.find(std::string(db));
  if (known == dbs.end())
    return luaL_error(L, "no database '%s' in cap.json `databases`", std::string(db).c_str());
  call.url = known->second;
  call.sql = sql;
  call.args = &args;
  SqlResult r = ctx.services.sql->run(call);
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, r.ok);
  lua_setfield(L, -2, "ok");
  if (!r.ok) {
    lua_pushlstring(L, r.error.data(), r.error.size());
    lua_setfield(L, -2, "error");
    return 1;
  }
  push_value(L, Value(std::move(r.rows)));
  lua_setfield(L, -2, "rows");
  lua_pushinteger(L, r.affected);
  lua_setfield(L, -2, "affected");
  return 1;
}

constexpr size_t kMaxReadBytes = 16 * 1024 * 1024;  // as FileRead's default max_bytes

int ctx_read(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  std::string_view path = check_text(L, 2);
  if (!ctx.services.files) return luaL_error(L, "this host has no shared files");
  std::string out, err;
  if (ctx.services.files->read(path, kMaxReadBytes, &out, &err) != FileStatus::Ok) {
    lua_pushnil(L);
    lua_pushlstring(L, err.data(), err.size());
    return 2;
  }
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

int ctx_write(lua_State* L) {
  ExecContext& ctx = live_ctx(L);
  std::string_view path = check_text(L, 2);
  std::string_view data = check_text(L, 3);
  bool append = lua_toboolean(L, 4) != 0;
  if (!ctx.services.files) return luaL_error(L, "this host has no shared files");
  std::string err;
  if (ctx.services.files->write(path, data, append, &err) != FileStatus::Ok) {
    lua_pushnil(L);
    lua_pushlstring(L, err.data(), err.size());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/// Runs a ctx method so that a C++ exception (an EvalError from the host, bad_alloc) becomes
/// a Lua error instead of unwinding through Lua's C frames.
template <lua_CFunction F>
int guarded(lua_State* L) {
  char message[512];
  try {
    return F(L);
  } catch (const std::exception& e) {
    std::snprintf(message, sizeof message, "%s", e.what());
  }
  return luaL_error(L, "%s", message);
}

// ------------------------------------------------------------------ sandbox replacements

/// load(text [, chunkname [, mode [, env]]]): text chunks only.
int safe_load(lua_State* L) {
  size_t n = 0;
  const char* s = lua_tolstring(L, 1, &n);
  if (!s) return luaL_argerror(L, 1, "load takes the chunk as a string in extensions");
  const char* name = luaL_optstring(L, 2, "=(load)");
  if (n > 0 && s[0] == LUA_SIGNATURE[0]) {
    lua_pushnil(L);
    lua_pushliteral(L, "loading bytecode is not allowed in extensions");
    return 2;
  }
  int status = luaL_loadbufferx(L, s, n, name, "t");
  if (status != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (!lua_isnone(L, 4)) {
    lua_pushvalue(L, 4);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

int safe_collectgarbage(lua_State* L) {
  const char* opt = luaL_optstring(L, 1, "count");
  if (std::strcmp(opt, "count") != 0)
    return luaL_error(L, "collectgarbage(\"%s\") is not allowed in extensions", opt);
  int k = lua_gc(L, LUA_GCCOUNT, 0), b = lua_gc(L, LUA_GCCOUNTB, 0);
  lua_pushnumber(L, static_cast<lua_Number>(k) + static_cast<lua_Number>(b) / 1024);
  return 1;
}

int open_error(lua_State* L) {
  lua_pushstring(L, lua_tostring(L, lua_upvalueindex(1)));
  return lua_error(L);
}

const char* kCtxMeta = "cap.ctx";

// ------------------------------------------------------------------ State

State::State(std::shared_ptr<const Image> image) : image_(image) {
  manifest = &image->manifest();
  limit_bytes = manifest->limits.memory_bytes;
  budget = manifest->limits.instructions;
  L_ = lua_newstate(limited_alloc, this);
  if (!L_) throw EvalError(where() + "cannot create a Lua state within the memory limit");
  open_sandbox();
  rules_.resize(manifest->rules.size());
  for (size_t i = 0; i < manifest->rules.size(); ++i) {
    const RuleDef& def = manifest->rules[i];
    spec = &def.spec;
    arm();
    const std::string& src = image->script(i);
    std::string chunk = "@" + def.script;
    int status = luaL_loadbufferx(L_, src.data(), src.size(), chunk.c_str(), "t");
    if (status == LUA_OK) status = lua_pcall(L_, 0, 1, 0);
    if (status != LUA_OK) {
      rules_[i].error = status == LUA_ERRMEM
                            ? std::string(
                                  "the memory limit was exceeded while "
                                  "loading the script")
                            : std::string(lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "error");
      lua_settop(L_, 0);
      continue;
    }
    if (!lua_isfunction(L_, -1)) {
      rules_[i].error = def.script + ": the script must return a function(ctx, p)";
      lua_settop(L_, 0);
      continue;
    }
    rules_[i].ref = luaL_ref(L_, LUA_REGISTRYINDEX);
  }
  spec = nullptr;
  lua_sethook(L_, nullptr, 0, 0);
}

void State::open_sandbox() {
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
      {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_COLIBNAME, luaopen_coroutine}};
  for (auto& lib : libs) {
    luaL_requiref(L_, lib.name, lib.func, 1);
    lua_pop(L_, 1);
  }
  lua_pushglobaltable(L_);
  for (const char* name : {"dofile", "loadfile", "print", "require"}) {
    lua_pushnil(L_);
    lua_setfield(L_, -2, name);
  }
  for (const char* name : {"io", "os", "package", "debug"}) {
    // A clear message instead of "attempt to index a nil value".
    lua_newtable(L_);
    lua_newtable(L_);
    lua_pushfstring(L_, "the '%s' library is not available in extensions", name);
    lua_pushcclosure(L_, open_error, 1);
    lua_setfield(L_, -2, "__index");
    lua_setmetatable(L_, -2);
    lua_setfield(L_, -2, name);
  }
  lua_pushcfunction(L_, safe_load);
  lua_setfield(L_, -2, "load");
  lua_pushcfunction(L_, safe_collectgarbage);
  lua_setfield(L_, -2, "collectgarbage");
  lua_getfield(L_, -1, "string");
  lua_pushnil(L_);
  lua_setfield(L_, -2, "dump");
  lua_pop(L_, 2);

  // The ctx object: one userdata whose methods reach the running execution.
  luaL_newmetatable(L_, kCtxMeta);
  static const luaL_Reg methods[] = {{"get", guarded<ctx_get>},       {"set", guarded<ctx_set>},
                                     {"delete", guarded<ctx_delete>}, {"log", guarded<ctx_log>},
                                     {"vault", guarded<ctx_vault>},   {"http", guarded<ctx_http>},
                                     {"sql", guarded<ctx_sql>},       {"read", guarded<ctx_read>},
                                     {"write", guarded<ctx_write>},   {nullptr, nullptr}};
  luaL_newlib(L_, methods);
  lua_setfield(L_, -2, "__index");
  lua_pushliteral(L_, "ctx");
  lua_setfield(L_, -2, "__metatable");
  lua_pop(L_, 1);
  lua_newuserdatauv(L_, 0, 0);
  luaL_setmetatable(L_, kCtxMeta);
  ctx_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
}

void State::arm() {
  used_instructions = 0;
  exhausted = false;
  allocation_refused = false;
  lua_sethook(L_, count_hook, LUA_MASKCOUNT, kHookStep);
}

std::string State::run(size_t rule, ExecContext& exec, const Params& params,
                       const RuleSpec& rule_spec) {
  spec = &rule_spec;
  if (rules_[rule].ref == LUA_NOREF) {
    std::string e = where() + rules_[rule].error;
    spec = nullptr;
    throw EvalError(e);
  }
  // The parameters, evaluated before the script runs (errors name the parameter).
  std::vector<Value> values;
  values.reserve(rule_spec.params.size());
  for (size_t i = 0; i < rule_spec.params.size(); ++i) values.push_back(params.at(i).value(exec));

  arm();
  ctx = &exec;
  lua_settop(L_, 0);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, rules_[rule].ref);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, ctx_ref_);
  int status = LUA_OK;
  // Building the parameter table may itself exceed the memory cap: do it protected.
  lua_pushcfunction(L_, [](lua_State* L) -> int {
    auto* vals = static_cast<const std::vector<Value>*>(lua_touserdata(L, 1));
    auto* sp = static_cast<const RuleSpec*>(lua_touserdata(L, 2));
    lua_createtable(L, 0, static_cast<int>(vals->size()));
    for (size_t i = 0; i < vals->size(); ++i) {
      push_value(L, (*vals)[i]);
      lua_setfield(L, -2, sp->params[i].name.c_str());
    }
    return 1;
  });
  lua_pushlightuserdata(L_, &values);
  lua_pushlightuserdata(L_, const_cast<RuleSpec*>(&rule_spec));
  status = lua_pcall(L_, 2, 1, 0);
  if (status == LUA_OK) status = lua_pcall(L_, 2, 1, 0);
  ctx = nullptr;
  lua_sethook(L_, nullptr, 0, 0);
  std::string chain;
  std::string problem;
  if (status != LUA_OK) {
    if (status == LUA_ERRMEM || (allocation_refused && !lua_isstring(L_, -1)))
      problem = "memory limit of " + std::to_string(limit_bytes >> 20) + " MiB exceeded";
    else if (lua_type(L_, -1) == LUA_TSTRING)
      problem = lua_tostring(L_, -1);
    else
      problem = std::string("raised a ") + luaL_typename(L_, -1) + " instead of an error message";
    if (allocation_refused && problem.find("not enough memory") != std::string::npos)
      problem = "memory limit of " + std::to_string(limit_bytes >> 20) + " MiB exceeded";
  } else if (lua_type(L_, -1) == LUA_TSTRING) {
    chain = lua_tostring(L_, -1);
  } else if (!lua_isnil(L_, -1)) {
    problem = std::string("the script returned a ") + luaL_typename(L_, -1) +
              ", not the name of a chain point";
  }
  lua_settop(L_, 0);
  if (allocation_refused || used_bytes > limit_bytes / 2) lua_gc(L_, LUA_GCCOLLECT, 0);
  spec = nullptr;
  if (!problem.empty()) {
    std::string e = "extension " + manifest->name + " " + manifest->version + ", rule " +
                    rule_spec.name + ": " + problem;
    throw EvalError(e);
  }
  return chain;
}

// ------------------------------------------------------------------ per-thread states

struct ThreadStates {
  std::unordered_map<uint64_t, std::unique_ptr<State>> states;
};
thread_local ThreadStates t_states;

State& state_for(const std::shared_ptr<const Image>& image) {
  auto it = t_states.states.find(image->id());
  if (it != t_states.states.end()) return *it->second;
  // Close the states of Images nobody uses any more (removed or upgraded extensions).
  for (auto i = t_states.states.begin(); i != t_states.states.end();)
    if (i->second->image().expired())
      i = t_states.states.erase(i);
    else
      ++i;
  auto st = std::make_unique<State>(image);
  State& ref = *st;
  t_states.states.emplace(image->id(), std::move(st));
  return ref;
}

// ------------------------------------------------------------------ the Rule

class LuaRule : public Rule {
 public:
  LuaRule(std::shared_ptr<const Image> image, size_t rule, const Params& params,
          std::vector<std::string> chain_names)
      : image_(std::move(image)), rule_(rule), params_(params), chains_(std::move(chain_names)) {
    for (size_t i = 0; i < chains_.size(); ++i)
      if (chains_[i] == "next") next_ = static_cast<int>(i);
  }

  int execute(ExecContext& ctx) const override {
    const RuleSpec& spec = image_->manifest().rules[rule_].spec;
    State& st = state_for(image_);
    std::string chain = st.run(rule_, ctx, params_, spec);
    if (chain.empty()) return next_;
    for (size_t i = 0; i < chains_.size(); ++i)
      if (chains_[i] == chain) return static_cast<int>(i);
    std::string names;
    for (auto& c : chains_) names += (names.empty() ? "" : ", ") + c;
    throw EvalError("extension " + image_->manifest().name + " " + image_->manifest().version +
                    ", rule " + spec.name + ": the script returned '" + chain +
                    "', which is not one of its chain points (" + names + ")");
  }

 private:
  std::shared_ptr<const Image> image_;
  size_t rule_;
  Params params_;
  std::vector<std::string> chains_;
  int next_ = kNoChain;
};

}  // namespace

Image::Image(Manifest manifest, std::vector<std::string> scripts, std::string sha256)
    : manifest_(std::move(manifest)),
      scripts_(std::move(scripts)),
      sha256_(std::move(sha256)),
      id_(g_next_image_id.fetch_add(1)) {}

bool check_script(std::string_view source, const std::string& chunkname, std::string* error) {
  if (!source.empty() && source[0] == LUA_SIGNATURE[0]) {
    *error = chunkname + ": precompiled (bytecode) scripts are not allowed; ship the Lua source";
    return false;
  }
  lua_State* L = luaL_newstate();
  if (!L) {
    *error = "cannot create a Lua state";
    return false;
  }
  std::string name = "@" + chunkname;
  int status = luaL_loadbufferx(L, source.data(), source.size(), name.c_str(), "t");
  if (status != LUA_OK) *error = lua_tostring(L, -1) ? lua_tostring(L, -1) : "does not compile";
  lua_close(L);
  return status == LUA_OK;
}

RuleFactory rule_factory(std::shared_ptr<const Image> image, size_t rule) {
  return [image = std::move(image), rule](CompileContext& cc) -> std::unique_ptr<Rule> {
    return std::make_unique<LuaRule>(image, rule, cc.params(), cc.chain_points());
  };
}

size_t thread_state_count() { return t_states.states.size(); }

}  // namespace cap::ext

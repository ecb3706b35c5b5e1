// libFuzzer target: the expression and template compilers, then evaluation of whatever
// compiled against a variable bag holding one value of every type.
//
// Compilation must report errors, never crash; evaluation may throw cap::EvalError (that is
// how a request fails) and nothing else. Build with the "fuzz" preset; run with
// scripts/run-fuzz, which seeds fuzz/corpus/fuzz_expression.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cap/expression.h"
#include "cap/services.h"
#include "cap/value.h"
#include "cap/variables.h"

namespace {

class NullLogger : public cap::Logger {
 public:
  void log(cap::LogLevel, std::string_view) override {}
};

/// A fixed environment: the fuzzer must not depend on (or leak) the real one.
std::optional<std::string> fake_env(std::string_view name) {
  if (name == "HOME") return std::string("/home/fuzz");
  if (name == "CAP_DB_URL") return std::string("sqlite://fuzz.db");
  return std::nullopt;
}

void fill(cap::Variables& vars) {
  using cap::Value;
  vars.set(cap::kMethod, Value("POST"));
  vars.set(cap::kUri, Value("/api/hello"));
  vars.set(cap::kQuery, Value("name=Ann&n=42"));
  vars.set(cap::kRequestUrl, Value("http://example.com/api/hello?name=Ann&n=42"));
  vars.set(cap::kRequestTimestamp, Value(1700000000000.0));
  vars.set(cap::kRemoteAddr, Value("10.0.0.1"));
  cap::Map headers;
  headers.set("user-agent", Value("Mozilla/5.0 (compatible; FuzzBot/1.0)"));
  headers.set("content-type", Value("application/json"));
  vars.set(cap::kHeaders, Value(std::move(headers)));
  vars.set(cap::kBody, Value(R"({"a": [1, 2, {"b": null}], "s": "x\u00e9"})"));
  cap::Map cookies;
  cookies.set("sid", Value("abc123"));
  vars.set(cap::kCookies, Value(std::move(cookies)));
  vars.set(std::string_view("name"), Value("  Ann Lee "));
  vars.set(std::string_view("GREETING"), Value("Hello"));
  vars.set(std::string_view("COUNT"), Value(42));
  vars.set(std::string_view("RATIO"), Value(-0.5));
  vars.set(std::string_view("ON"), Value(true));
  vars.set(std::string_view("NOTHING"), Value(nullptr));
  cap::Map inner;
  inner.set("k", Value(cap::List{Value(true), Value(false), Value(nullptr)}));
  vars.set(std::string_view("ITEMS"),
           Value(cap::List{Value(1), Value("two"), Value(std::move(inner)), Value(cap::List{})}));
  cap::Map config;
  config.set("key", Value("value"));
  config.set("n", Value(7));
  vars.set(std::string_view("CONFIG"), Value(std::move(config)));
  vars.set(std::string_view("RAW"), Value(cap::Bytes{std::string("\x00\xff\x01", 3)}));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view source(reinterpret_cast<const char*>(data), size);
  cap::Symbols symbols;
  cap::CompileEnv env{symbols, fake_env};
  std::string expr_error, tmpl_error;
  std::optional<cap::Expression> expr = cap::compile_expression(source, env, &expr_error);
  std::optional<cap::Template> tmpl = cap::compile_template(source, env, &tmpl_error);
  // Failure always comes with a message.
  if (!expr && expr_error.empty()) __builtin_trap();
  if (!tmpl && tmpl_error.empty()) __builtin_trap();
  if (!expr && !tmpl) return 0;

  static NullLogger logger;
  static cap::SystemClock clock;
  static const cap::MemoryVault* vault = [] {
    static cap::MemoryVault v;
    v.put("db", {{"password", "pw"}, {"user", "app"}});
    v.put("token", {{"", "t0ken"}});
    return &v;
  }();
  cap::HostServices services;
  services.logger = &logger;
  services.clock = &clock;
  services.vault = vault;

  cap::Variables vars(symbols);
  fill(vars);
  cap::EvalContext ctx{vars, services};
  std::string out;
  if (expr) {
    try {
      cap::Value scratch;
      const cap::Value& v = expr->eval(ctx, scratch);
      out = cap::to_json(v);
      v.to_text();
      (void)expr->truthy(ctx);
      (void)expr->is_constant();
      (void)expr->variable_slot();
    } catch (const cap::EvalError&) {
    }
  }
  if (tmpl) {
    try {
      cap::Value scratch;
      const cap::Value& v = tmpl->eval(ctx, scratch);
      out = cap::to_json(v);
      out = tmpl->text(ctx);
      if (tmpl->is_constant()) out = tmpl->constant().to_text();
    } catch (const cap::EvalError&) {
    }
  }
  return 0;
}

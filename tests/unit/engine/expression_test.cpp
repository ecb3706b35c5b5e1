// The expression language and templates (DESIGN §3 "Expressions").
#include "cap/expression.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <new>
#include <random>
#include <thread>

#include "cap/services.h"

// Counts allocations on the current thread so tests can prove a hot path allocates nothing.
// This replaces the global operator new for the whole test binary; it only counts.
namespace {
thread_local long g_allocations = 0;
}
void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// GCC cannot see that these replace the global operators and warns that free() does not
// match operator new.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace cap {
namespace {

class FixedClock : public Clock {
 public:
  int64_t now_ms() const override { return 1700000000123; }
};

class ExpressionTest : public ::testing::Test {
 protected:
  ExpressionTest() {
    env_vars["CAP_TEST_HOST"] = "db.local";
    env_vars["CAP_TEST_EMPTY"] = "";
    env.getenv = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env_vars.find(std::string(name));
      if (it == env_vars.end()) return std::nullopt;
      return it->second;
    };
    given["X"] = Value(5);
    given["ZERO"] = Value(0);
    given["S"] = Value("str");
    given["NUM"] = Value("42");
    given["EMPTY"] = Value("");
    given["T"] = Value(true);
    given["F"] = Value(false);
    given["L"] = Value(List{Value(1), Value("two"), Value(List{Value(3)})});
    Map m;
    m.set("a", Value(1));
    m.set("user-agent", Value("curl/8"));
    m.set("nested", Value(Map{}));
    m.set("7", Value("seven"));
    given["M"] = Value(m);
    given["B"] = Value(Bytes{"raw"});
    vault.put("db", {{"password", "s3cret-pw"}, {"user", "app"}});
    vault.put("token", {{"", "tok-123"}});
    services.vault = &vault;
    services.clock = &clock;
  }

  // A fresh variable bag holding `given`, sized for every name compiled so far.
  Variables& fresh_vars() {
    vars = std::make_unique<Variables>(symbols);
    for (auto& [k, v] : given) vars->set(std::string_view(k), v);
    return *vars;
  }

  Expression compile(std::string_view src) {
    std::string error;
    auto e = compile_expression(src, env, &error);
    if (!e) {
      ADD_FAILURE() << "compiling `" << src << "` failed: " << error;
      return Expression();
    }
    EXPECT_TRUE(e->valid());
    return *e;
  }

  Value eval(std::string_view src) {
    Expression e = compile(src);
    EvalContext ctx{fresh_vars(), services};
    try {
      return e.value(ctx);
    } catch (const EvalError& ex) {
      ADD_FAILURE() << "evaluating `" << src << "` threw: " << ex.what();
      return Value();
    }
  }

  std::string json(std::string_view src) { return to_json(eval(src)); }
  std::string text(std::string_view src) { return eval(src).to_text(); }

  std::string compile_error(std::string_view src) {
    std::string error;
    auto e = compile_expression(src, env, &error);
    EXPECT_FALSE(e.has_value()) << "`" << src << "` compiled";
    return error;
  }

  std::string eval_error(std::string_view src) {
    Expression e = compile(src);
    EvalContext ctx{fresh_vars(), services};
    try {
      Value v = e.value(ctx);
      ADD_FAILURE() << "`" << src << "` evaluated to " << to_json(v);
    } catch (const EvalError& ex) {
      return ex.what();
    }
    return "";
  }

  std::optional<Template> tmpl(std::string_view src) {
    std::string error;
    auto t = compile_template(src, env, &error);
    if (!t) ADD_FAILURE() << "compiling template `" << src << "` failed: " << error;
    return t;
  }

  Value tmpl_value(std::string_view src) {
    auto t = tmpl(src);
    if (!t) return Value();
    EvalContext ctx{fresh_vars(), services};
    Value scratch;
    return t->eval(ctx, scratch);
  }

  std::string tmpl_text(std::string_view src) {
    auto t = tmpl(src);
    if (!t) return "";
    EvalContext ctx{fresh_vars(), services};
    return t->text(ctx);
  }

  std::string tmpl_error(std::string_view src) {
    std::string error;
    auto t = compile_template(src, env, &error);
    EXPECT_FALSE(t.has_value()) << "template `" << src << "` compiled";
    return error;
  }

  std::string tmpl_eval_error(std::string_view src) {
    auto t = tmpl(src);
    if (!t) return "";
    EvalContext ctx{fresh_vars(), services};
    try {
      std::string out;
      t->render(ctx, out);
      ADD_FAILURE() << "template `" << src << "` rendered " << out;
    } catch (const EvalError& ex) {
      return ex.what();
    }
    return "";
  }

  Symbols symbols;
  std::map<std::string, std::string> env_vars;
  CompileEnv env{symbols, {}};
  std::map<std::string, Value> given;
  std::unique_ptr<Variables> vars;
  MemoryVault vault;
  FixedClock clock;
  HostServices services;
};

// --- literals ---------------------------------------------------------------------------

TEST_F(ExpressionTest, Literals) {
  EXPECT_EQ(json("12"), "12");
  EXPECT_EQ(json("1.5"), "1.5");
  EXPECT_EQ(json("2e3"), "2000");
  EXPECT_EQ(json("2.5E-1"), "0.25");
  EXPECT_EQ(json("'single'"), "\"single\"");
  EXPECT_EQ(json("\"double\""), "\"double\"");
  EXPECT_EQ(json("''"), "\"\"");
  EXPECT_TRUE(eval("null").is_null());
  EXPECT_EQ(json("true"), "true");
  EXPECT_EQ(json("false"), "false");
  EXPECT_EQ(json("[1, 'a', [true], []]"), "[1,\"a\",[true],[]]");
  EXPECT_EQ(json("{'a': 1, \"b\": {'c': null}, 'a': 2}"), "{\"a\":2,\"b\":{\"c\":null}}");
  EXPECT_EQ(json("{}"), "{}");
}

TEST_F(ExpressionTest, StringEscapes) {
  EXPECT_EQ(text(R"('a\nb\tc\rd')"), "a\nb\tc\rd");
  EXPECT_EQ(text(R"('it\'s')"), "it's");
  EXPECT_EQ(text(R"("say \"hi\"")"), "say \"hi\"");
  EXPECT_EQ(text(R"('back\\slash')"), "back\\slash");
  EXPECT_EQ(text(R"('\u00e9\u20ac')"), "é€");
  EXPECT_EQ(text(R"('\ud83d\ude00')"), "😀") << "surrogate pairs combine";
  EXPECT_EQ(text(R"('\b\f\/\$')"), "\b\f/$");
  EXPECT_EQ(text(R"('\d+\.\w')"), R"(\d+\.\w)") << "unknown escapes stay as written";
  EXPECT_EQ(text(R"('"' + "'")"), "\"'");
}

// --- variables and null -----------------------------------------------------------------

TEST_F(ExpressionTest, Variables) {
  EXPECT_EQ(json("X"), "5");
  EXPECT_EQ(json("S"), "\"str\"");
  EXPECT_EQ(json("L"), "[1,\"two\",[3]]");
  EXPECT_EQ(json("_under_score9"), "null");
}

TEST_F(ExpressionTest, UnsetVariableIsNull) {
  EXPECT_TRUE(eval("NOT_SET").is_null());
  EXPECT_EQ(json("NOT_SET == null"), "true");
  EXPECT_EQ(json("NOT_SET == ''"), "false") << "null equals only null";
  EXPECT_EQ(json("NOT_SET == 0"), "false");
  EXPECT_EQ(json("NOT_SET == false"), "false");
  EXPECT_EQ(json("NOT_SET != null"), "false");
  EXPECT_EQ(json("null == null"), "true");
  EXPECT_EQ(text("'[' + NOT_SET + ']'"), "[]") << "null renders as an empty string";
  EXPECT_EQ(tmpl_text("Hello ${NOT_SET}!"), "Hello !");
  EXPECT_EQ(json("NOT_SET < 1"), "false");
  EXPECT_EQ(json("NOT_SET >= 1"), "false");
}

TEST_F(ExpressionTest, VariableSlot) {
  Expression e = compile("X");
  EXPECT_EQ(e.variable_slot(), symbols.find("X"));
  EXPECT_GE(e.variable_slot(), 0);
  EXPECT_EQ(compile("(URI)").variable_slot(), static_cast<int64_t>(kUri));
  EXPECT_EQ(compile("X + 1").variable_slot(), -1);
  EXPECT_EQ(compile("M.a").variable_slot(), -1);
  EXPECT_EQ(compile("'X'").variable_slot(), -1);
  EXPECT_EQ(Expression().variable_slot(), -1);
}

TEST_F(ExpressionTest, NamesAreInternedAtCompileTime) {
  EXPECT_EQ(symbols.find("FRESH_NAME"), -1);
  compile("FRESH_NAME + 1");
  EXPECT_GE(symbols.find("FRESH_NAME"), 0);
}

TEST_F(ExpressionTest, DefaultExpressionIsInvalidAndNull) {
  Expression e;
  EXPECT_FALSE(e.valid());
  EvalContext ctx{fresh_vars(), services};
  EXPECT_TRUE(e.value(ctx).is_null());
  EXPECT_FALSE(e.truthy(ctx));
}

// --- comparison -------------------------------------------------------------------------

TEST_F(ExpressionTest, Equality) {
  EXPECT_EQ(json("1 == 1"), "true");
  EXPECT_EQ(json("1 == 2"), "false");
  EXPECT_EQ(json("1 != 2"), "true");
  EXPECT_EQ(json("S == 'str'"), "true");
  EXPECT_EQ(json("S != 'str'"), "false");
  EXPECT_EQ(json("NUM == 42"), "true") << "a numeric string equals its number";
  EXPECT_EQ(json("'42' == '42.0'"), "false");
  EXPECT_EQ(json("T == true"), "true");
  EXPECT_EQ(json("L == [1, 'two', [3]]"), "true");
  EXPECT_EQ(json("M == {'a': 1}"), "false");
  EXPECT_EQ(json("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}"), "true");
}

TEST_F(ExpressionTest, Ordering) {
  EXPECT_EQ(json("1 < 2"), "true");
  EXPECT_EQ(json("2 < 1"), "false");
  EXPECT_EQ(json("2 <= 2"), "true");
  EXPECT_EQ(json("3 <= 2"), "false");
  EXPECT_EQ(json("3 > 2"), "true");
  EXPECT_EQ(json("2 > 2"), "false");
  EXPECT_EQ(json("2 >= 2"), "true");
  EXPECT_EQ(json("1 >= 2"), "false");
  EXPECT_EQ(json("'abc' < 'abd'"), "true");
  EXPECT_EQ(json("'b' > 'abc'"), "true");
  EXPECT_EQ(json("NUM > 9"), "true") << "numeric string against number: numerically";
  EXPECT_EQ(json("'10' < '9'"), "true") << "two strings: lexicographically";
}

TEST_F(ExpressionTest, UnorderableComparisonsAreFalse) {
  for (const char* src :
       {"S < 1", "S > 1", "S <= 1", "S >= 1", "L < L", "T > F", "M >= M", "null <= null", "B < 1"})
    EXPECT_EQ(json(src), "false") << src;
}

// --- logic ------------------------------------------------------------------------------

TEST_F(ExpressionTest, LogicYieldsBooleans) {
  EXPECT_EQ(json("true and true"), "true");
  EXPECT_EQ(json("true and false"), "false");
  EXPECT_EQ(json("false or true"), "true");
  EXPECT_EQ(json("false or false"), "false");
  EXPECT_EQ(json("not true"), "false");
  EXPECT_EQ(json("not NOT_SET"), "true");
  EXPECT_EQ(json("X and S"), "true") << "and yields a boolean, not an operand";
  EXPECT_EQ(json("ZERO or EMPTY"), "false");
  EXPECT_EQ(json("S or X"), "true");
  EXPECT_EQ(json("L and M"), "true");
}

TEST_F(ExpressionTest, SymbolAliases) {
  EXPECT_EQ(json("T && F"), "false");
  EXPECT_EQ(json("T && T"), "true");
  EXPECT_EQ(json("F || T"), "true");
  EXPECT_EQ(json("F || F"), "false");
  EXPECT_EQ(json("!F"), "true");
  EXPECT_EQ(json("!!S"), "true");
  EXPECT_EQ(json("not not S"), "true");
}

TEST_F(ExpressionTest, ShortCircuit) {
  EXPECT_EQ(json("F and 1 / ZERO"), "false") << "the right side is not evaluated";
  EXPECT_EQ(json("T or 1 / ZERO"), "true");
  EXPECT_EQ(json("F && X.y"), "false");
  EXPECT_EQ(eval_error("T and 1 / ZERO"), "division by zero");
  EXPECT_EQ(eval_error("F or 1 / ZERO"), "division by zero");
}

// --- arithmetic -------------------------------------------------------------------------

TEST_F(ExpressionTest, Arithmetic) {
  EXPECT_EQ(json("X + 2"), "7");
  EXPECT_EQ(json("X - 7"), "-2");
  EXPECT_EQ(json("X * 3"), "15");
  EXPECT_EQ(json("X / 2"), "2.5");
  EXPECT_EQ(json("X % 3"), "2");
  EXPECT_EQ(json("-X % 3"), "-2") << "the remainder takes the dividend's sign";
  EXPECT_EQ(json("5.5 % 2"), "1.5");
  EXPECT_EQ(json("0.1 + 0.2"), "0.3");
  EXPECT_EQ(json("NUM - 2"), "40") << "numeric strings take part in arithmetic";
  EXPECT_EQ(json("NUM * '2'"), "84");
  EXPECT_EQ(json("NUM / 4"), "10.5");
}

TEST_F(ExpressionTest, PlusConcatenatesWhenEitherSideIsAString) {
  EXPECT_EQ(json("'a' + 'b'"), "\"ab\"");
  EXPECT_EQ(json("S + 1"), "\"str1\"");
  EXPECT_EQ(json("1 + S"), "\"1str\"");
  EXPECT_EQ(json("NUM + 1"), "\"421\"");
  EXPECT_EQ(json("'x' + 1.5 + true + null"), "\"x1.5true\"");
  EXPECT_EQ(json("'l=' + L"), "\"l=[1,\\\"two\\\",[3]]\"");
  EXPECT_EQ(json("'b=' + B"), "\"b=raw\"");
  EXPECT_EQ(json("1 + 2 + 'x'"), "\"3x\"") << "left to right";
  EXPECT_EQ(json("'x' + 1 + 2"), "\"x12\"");
}

TEST_F(ExpressionTest, PlusJoinsLists) {
  EXPECT_EQ(json("[1] + [2, 3]"), "[1,2,3]");
  EXPECT_EQ(json("L + []"), "[1,\"two\",[3]]");
}

TEST_F(ExpressionTest, ArithmeticTypeErrors) {
  EXPECT_EQ(eval_error("S * 2"), "cannot apply '*' to string and number");
  EXPECT_EQ(eval_error("X - S"), "cannot apply '-' to number and string");
  EXPECT_EQ(eval_error("NOT_SET + 1"), "cannot apply '+' to null and number");
  EXPECT_EQ(eval_error("T + 1"), "cannot apply '+' to boolean and number");
  EXPECT_EQ(eval_error("L / 2"), "cannot apply '/' to list and number");
  EXPECT_EQ(eval_error("M % 2"), "cannot apply '%' to map and number");
  EXPECT_EQ(eval_error("X + B"), "cannot apply '+' to number and bytes");
  EXPECT_EQ(eval_error("L + 1"), "cannot apply '+' to list and number");
  EXPECT_EQ(eval_error("-S"), "cannot negate a string");
  EXPECT_EQ(eval_error("-NOT_SET"), "cannot negate a null");
}

TEST_F(ExpressionTest, DivisionByZero) {
  EXPECT_EQ(eval_error("X / ZERO"), "division by zero");
  EXPECT_EQ(eval_error("X % ZERO"), "division by zero");
  EXPECT_EQ(eval_error("X / '0'"), "division by zero");
  // A constant division by zero compiles and fails when it runs.
  Expression e = compile("1 / 0");
  EXPECT_FALSE(e.is_constant());
  EXPECT_EQ(eval_error("1 / 0"), "division by zero");
  EXPECT_EQ(eval_error("1 % 0"), "division by zero");
}

TEST_F(ExpressionTest, UnaryMinus) {
  EXPECT_EQ(json("-X"), "-5");
  EXPECT_EQ(json("--X"), "5");
  EXPECT_EQ(json("- NUM"), "-42");
  EXPECT_EQ(json("2 * -3"), "-6");
  EXPECT_EQ(json("-L[0]"), "-1") << "indexing binds tighter than unary minus";
}

// --- precedence -------------------------------------------------------------------------

TEST_F(ExpressionTest, Precedence) {
  EXPECT_EQ(json("1 + 2 * 3"), "7");
  EXPECT_EQ(json("(1 + 2) * 3"), "9");
  EXPECT_EQ(json("10 - 2 - 3"), "5") << "left associative";
  EXPECT_EQ(json("8 / 2 / 2"), "2");
  EXPECT_EQ(json("7 % 4 * 2"), "6");
  EXPECT_EQ(json("2 + 6 / 3"), "4");
  EXPECT_EQ(json("-2 * 3 + 1"), "-5");
  EXPECT_EQ(json("1 + 2 == 3"), "true") << "arithmetic before comparison";
  EXPECT_EQ(json("X > 1 and X < 10"), "true") << "comparison before and";
  EXPECT_EQ(json("not X == 5"), "false") << "not applies to the comparison";
  EXPECT_EQ(json("not F and F"), "false") << "not before and";
  EXPECT_EQ(json("T or T and F"), "true") << "and before or";
  EXPECT_EQ(json("(T or T) and F"), "false");
  EXPECT_EQ(json("F and F or T"), "true");
  EXPECT_EQ(json("not (X == 5)"), "false");
  EXPECT_EQ(json("L[2][0] * 2"), "6");
  EXPECT_EQ(json("M.a + 1"), "2");
}

// --- indexing ---------------------------------------------------------------------------

TEST_F(ExpressionTest, IndexingLists) {
  EXPECT_EQ(json("L[0]"), "1");
  EXPECT_EQ(json("L[1]"), "\"two\"");
  EXPECT_EQ(json("L[2][0]"), "3");
  EXPECT_EQ(json("L[3]"), "null") << "out of range reads as null";
  EXPECT_EQ(json("L[-1]"), "null");
  EXPECT_EQ(json("L[0.5]"), "null");
  EXPECT_EQ(json("L['1']"), "\"two\"") << "a numeric string is an index";
  EXPECT_EQ(json("L[X - 4]"), "\"two\"");
  EXPECT_EQ(json("[10, 20][1]"), "20");
}

TEST_F(ExpressionTest, IndexingMaps) {
  EXPECT_EQ(json("M['a']"), "1");
  EXPECT_EQ(json("M.a"), "1");
  EXPECT_EQ(json("M['user-agent']"), "\"curl/8\"");
  EXPECT_EQ(json("M.missing"), "null");
  EXPECT_EQ(json("M['missing']"), "null");
  EXPECT_EQ(json("M.nested.deeper"), "null");
  EXPECT_EQ(json("M[7]"), "\"seven\"") << "a number looks up its text";
  EXPECT_EQ(json("{'if': 1}.if"), "1");
  EXPECT_EQ(json("{'null': 2}.null"), "2") << "any word may follow a dot";
}

TEST_F(ExpressionTest, IndexingNullYieldsNull) {
  EXPECT_EQ(json("NOT_SET[0]"), "null");
  EXPECT_EQ(json("NOT_SET['k']"), "null");
  EXPECT_EQ(json("NOT_SET.k"), "null");
  EXPECT_EQ(json("NOT_SET.a.b[3].c"), "null");
  EXPECT_EQ(json("null[0]"), "null");
}

TEST_F(ExpressionTest, IndexingStrings) {
  EXPECT_EQ(json("S[0]"), "\"s\"");
  EXPECT_EQ(json("S[2]"), "\"r\"");
  EXPECT_EQ(json("S[3]"), "null");
  EXPECT_EQ(json("'abc'[1]"), "\"b\"");
}

TEST_F(ExpressionTest, IndexingComputedValues) {
  // The container lives only while the expression runs: the element must survive it.
  EXPECT_EQ(json("split('a,b,c', ',')[1]"), "\"b\"");
  EXPECT_EQ(json("split(S + ',x', ',')[1]"), "\"x\"");
  EXPECT_EQ(json("parseJson('{\"a\":{\"b\":[5,6]}}' + '').a.b[1]"), "6");
  EXPECT_EQ(json("parseJson(json(M)).nested"), "{}");
  EXPECT_EQ(json("keys(M)[1]"), "\"user-agent\"");
  EXPECT_EQ(json("[L, S][0][1]"), "\"two\"");
  EXPECT_EQ(json("{'k': [X]}.k[0]"), "5");
}

TEST_F(ExpressionTest, IndexingErrors) {
  EXPECT_EQ(eval_error("X[0]"), "cannot index a number");
  EXPECT_EQ(eval_error("T[0]"), "cannot index a boolean");
  EXPECT_EQ(eval_error("B[0]"), "cannot index a bytes");
  EXPECT_EQ(eval_error("L['a']"), "a list index must be a number, got string");
  EXPECT_EQ(eval_error("L[NOT_SET]"), "a list index must be a number, got null");
  EXPECT_EQ(eval_error("S[T]"), "a string index must be a number, got boolean");
  EXPECT_EQ(eval_error("M[L]"), "a map key must be a string, got list");
  EXPECT_EQ(eval_error("X.y"), "cannot read member 'y' of a number");
  EXPECT_EQ(eval_error("L.y"), "cannot read member 'y' of a list");
  EXPECT_EQ(eval_error("S.length"), "cannot read member 'length' of a string");
}

// --- functions --------------------------------------------------------------------------

TEST_F(ExpressionTest, FunctionNamesAreSortedAndComplete) {
  std::vector<std::string> names = function_names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  std::vector<std::string> expected = {
      "abs",      "base64Decode", "base64Encode", "ceil",         "contains", "default",
      "endsWith", "floor",        "indexOf",      "isNull",       "join",     "json",
      "keys",     "len",          "lower",        "matches",      "max",      "min",
      "now",      "number",       "parseJson",    "regexReplace", "replace",  "round",
      "split",    "startsWith",   "string",       "substr",       "trim",     "type",
      "upper",    "urlDecode",    "urlEncode",    "values"};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
  // Every listed name compiles as a function (an arity error, not an unknown name).
  for (const auto& n : names) {
    std::string error;
    compile_expression(n + "(1, 2, 3, 4)", env, &error);
    EXPECT_NE(error.find(n + "() takes"), std::string::npos) << error;
  }
}

TEST_F(ExpressionTest, Contains) {
  EXPECT_EQ(json("contains(S, 'tr')"), "true");
  EXPECT_EQ(json("contains(S, 'x')"), "false");
  EXPECT_EQ(json("contains(S, '')"), "true");
  EXPECT_EQ(json("contains(L, 'two')"), "true");
  EXPECT_EQ(json("contains(L, 1)"), "true");
  EXPECT_EQ(json("contains(L, '1')"), "true") << "list membership uses equality";
  EXPECT_EQ(json("contains(L, 3)"), "false");
  EXPECT_EQ(json("contains(M, 'user-agent')"), "true");
  EXPECT_EQ(json("contains(M, 'curl/8')"), "false") << "maps are searched by key";
  EXPECT_EQ(json("contains(NOT_SET, 'a')"), "false");
  EXPECT_EQ(json("contains(B, 'aw')"), "true");
  EXPECT_EQ(json("contains('a1', 1)"), "true");
  EXPECT_EQ(eval_error("contains(X, 5)"), "contains() needs a string, list or map, got number");
}

TEST_F(ExpressionTest, StartsWithEndsWith) {
  EXPECT_EQ(json("startsWith(S, 'st')"), "true");
  EXPECT_EQ(json("startsWith(S, 'tr')"), "false");
  EXPECT_EQ(json("startsWith(S, '')"), "true");
  EXPECT_EQ(json("endsWith(S, 'tr')"), "true");
  EXPECT_EQ(json("endsWith(S, 'st')"), "false");
  EXPECT_EQ(json("endsWith(NOT_SET, '')"), "true");
  EXPECT_EQ(json("startsWith(NOT_SET, 'a')"), "false");
  EXPECT_EQ(json("startsWith(123, 12)"), "true") << "values are compared as text";
}

TEST_F(ExpressionTest, CaseAndTrim) {
  EXPECT_EQ(json("lower('AbC-É')"), "\"abc-É\"") << "ASCII letters only";
  EXPECT_EQ(json("upper('AbC-é')"), "\"ABC-é\"");
  EXPECT_EQ(json("lower(NOT_SET)"), "\"\"");
  EXPECT_EQ(json("upper(12)"), "\"12\"");
  EXPECT_EQ(json("trim('  a b \\t\\n')"), "\"a b\"");
  EXPECT_EQ(json("trim(S)"), "\"str\"");
  EXPECT_EQ(json("trim('   ')"), "\"\"");
  EXPECT_EQ(json("trim(NOT_SET)"), "\"\"");
}

TEST_F(ExpressionTest, Len) {
  EXPECT_EQ(json("len(S)"), "3");
  EXPECT_EQ(json("len('é')"), "2") << "string length is in bytes";
  EXPECT_EQ(json("len(L)"), "3");
  EXPECT_EQ(json("len(M)"), "4");
  EXPECT_EQ(json("len(NOT_SET)"), "0");
  EXPECT_EQ(json("len(B)"), "3");
  EXPECT_EQ(json("len('')"), "0");
  EXPECT_EQ(eval_error("len(X)"), "len() needs a string, list or map, got number");
  EXPECT_EQ(eval_error("len(T)"), "len() needs a string, list or map, got boolean");
}

TEST_F(ExpressionTest, Matches) {
  EXPECT_EQ(json("matches(S, '^s.r$')"), "true");
  EXPECT_EQ(json("matches(S, 't')"), "true") << "a match anywhere counts";
  EXPECT_EQ(json("matches(S, '^t')"), "false");
  EXPECT_EQ(json("matches('/api/12', '^/api/\\d+$')"), "true");
  EXPECT_EQ(json("matches('/api/12', '^/api/\\\\d+$')"), "true");
  EXPECT_EQ(json("matches(NOT_SET, '^$')"), "true");
  EXPECT_EQ(json("matches(S, '(?i)STR')"), "true");
  // A pattern from a variable compiles when the call runs.
  given["PAT"] = Value("^st");
  EXPECT_EQ(json("matches(S, PAT)"), "true");
  given["PAT"] = Value("(unclosed");
  std::string error = eval_error("matches(S, PAT)");
  EXPECT_EQ(error.rfind("matches(): invalid regular expression: ", 0), 0u) << error;
}

TEST_F(ExpressionTest, Replace) {
  EXPECT_EQ(json("replace('a-b-c', '-', '+')"), "\"a+b+c\"") << "every occurrence";
  EXPECT_EQ(json("replace('a.b', '.', 'X')"), "\"aXb\"") << "plain text, not a pattern";
  EXPECT_EQ(json("replace(S, '', 'X')"), "\"str\"");
  EXPECT_EQ(json("replace('aaa', 'aa', 'b')"), "\"ba\"");
  EXPECT_EQ(json("replace(NOT_SET, 'a', 'b')"), "\"\"");
  EXPECT_EQ(json("replace('x', 'x', NOT_SET)"), "\"\"");
}

TEST_F(ExpressionTest, RegexReplace) {
  EXPECT_EQ(json("regexReplace('a1b22c', '\\d+', '#')"), "\"a#b#c\"");
  EXPECT_EQ(json("regexReplace('john smith', '(\\w+) (\\w+)', '\\2, \\1')"), "\"smith, john\"");
  EXPECT_EQ(json("regexReplace('ab', 'x', 'y')"), "\"ab\"");
  EXPECT_EQ(json("regexReplace('abc', '', '-')"), "\"-a-b-c-\"");
  given["PAT"] = Value("[0-9]");
  EXPECT_EQ(json("regexReplace('a1', PAT, '\\0\\0')"), "\"a11\"");
  given["PAT"] = Value("[");
  EXPECT_EQ(eval_error("regexReplace('a1', PAT, 'x')")
                .rfind("regexReplace(): invalid regular expression", 0),
            0u);
  given["RW"] = Value("\\3");
  EXPECT_EQ(
      eval_error("regexReplace('a1', '(a)', RW)").rfind("regexReplace(): invalid replacement", 0),
      0u);
}

TEST_F(ExpressionTest, SplitAndJoin) {
  EXPECT_EQ(json("split('a,b,,c', ',')"), "[\"a\",\"b\",\"\",\"c\"]");
  EXPECT_EQ(json("split('a::b', '::')"), "[\"a\",\"b\"]");
  EXPECT_EQ(json("split('abc', ';')"), "[\"abc\"]");
  EXPECT_EQ(json("split('', ',')"), "[]");
  EXPECT_EQ(json("split(NOT_SET, ',')"), "[]");
  EXPECT_EQ(json("split('aé€', '')"), "[\"a\",\"é\",\"€\"]")
      << "an empty separator splits characters";
  EXPECT_EQ(json("join(L, '|')"), "\"1|two|[3]\"");
  EXPECT_EQ(json("join([], ',')"), "\"\"");
  EXPECT_EQ(json("join(NOT_SET, ',')"), "\"\"");
  EXPECT_EQ(json("join(split('a b c', ' '), '-')"), "\"a-b-c\"");
  EXPECT_EQ(json("join([1, null, true], ',')"), "\"1,,true\"");
  EXPECT_EQ(eval_error("join(S, ',')"), "join() needs a list, got string");
}

TEST_F(ExpressionTest, Conversions) {
  EXPECT_EQ(json("number('12.5')"), "12.5");
  EXPECT_EQ(json("number(' 7 ')"), "7");
  EXPECT_EQ(json("number(X)"), "5");
  EXPECT_EQ(json("number(true)"), "1");
  EXPECT_EQ(json("number('abc')"), "null") << "null when not numeric";
  EXPECT_EQ(json("number(NOT_SET)"), "null");
  EXPECT_EQ(json("number(L)"), "null");
  EXPECT_EQ(json("string(12)"), "\"12\"");
  EXPECT_EQ(json("string(1.5)"), "\"1.5\"");
  EXPECT_EQ(json("string(NOT_SET)"), "\"\"");
  EXPECT_EQ(json("string(T)"), "\"true\"");
  EXPECT_EQ(json("string(S)"), "\"str\"");
  EXPECT_EQ(json("string([1])"), "\"[1]\"");
  EXPECT_EQ(text("json(M)"), R"({"a":1,"user-agent":"curl/8","nested":{},"7":"seven"})");
  EXPECT_EQ(text("json(S)"), "\"str\"");
  EXPECT_EQ(text("json(NOT_SET)"), "null");
  EXPECT_EQ(text("json('a\"b')"), R"("a\"b")");
}

TEST_F(ExpressionTest, ParseJson) {
  EXPECT_EQ(json("parseJson('{\"a\": [1, 2]}')"), "{\"a\":[1,2]}");
  EXPECT_EQ(json("parseJson('{\"a\": [1, 2]}').a[1]"), "2");
  EXPECT_EQ(json("parseJson('\"s\"')"), "\"s\"");
  EXPECT_EQ(json("parseJson(NOT_SET)"), "null");
  given["DOC"] = Value(Bytes{"[true]"});
  EXPECT_EQ(json("parseJson(DOC)"), "[true]");
  given["DOC"] = Value("{bad");
  std::string error = eval_error("parseJson(DOC)");
  EXPECT_EQ(error.rfind("parseJson(): invalid JSON at byte ", 0), 0u) << error;
  given["DOC"] = Value(std::string(100, '[') + std::string(100, ']'));
  EXPECT_EQ(eval_error("parseJson(DOC)"), "parseJson(): JSON is nested deeper than 64 levels");
  EXPECT_EQ(eval_error("parseJson(X)"), "parseJson() needs a string, got number");
}

TEST_F(ExpressionTest, Now) {
  EXPECT_EQ(json("now()"), "1700000000123") << "milliseconds from the host's clock";
  services.clock = nullptr;
  using namespace std::chrono;
  auto before = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  double got = eval("now()").as_number();
  auto after = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  EXPECT_GE(got, static_cast<double>(before)) << "without a clock, the system clock";
  EXPECT_LE(got, static_cast<double>(after));
  EXPECT_FALSE(compile("now()").is_constant());
  EXPECT_FALSE(compile("now() + 1 > 0").is_constant());
}

TEST_F(ExpressionTest, Substr) {
  EXPECT_EQ(json("substr('hello', 1)"), "\"ello\"");
  EXPECT_EQ(json("substr('hello', 1, 3)"), "\"ell\"");
  EXPECT_EQ(json("substr('hello', 1, 100)"), "\"ello\"");
  EXPECT_EQ(json("substr('hello', -3)"), "\"llo\"") << "negative start counts from the end";
  EXPECT_EQ(json("substr('hello', -10, 2)"), "\"he\"");
  EXPECT_EQ(json("substr('hello', 10)"), "\"\"");
  EXPECT_EQ(json("substr('hello', 2, -1)"), "\"\"");
  EXPECT_EQ(json("substr('hello', '1', '2')"), "\"el\"");
  EXPECT_EQ(json("substr(NOT_SET, 0, 2)"), "\"\"");
  EXPECT_EQ(eval_error("substr(S, 'x')"), "substr() needs a number, got string");
  EXPECT_EQ(eval_error("substr(S, 0, NOT_SET)"), "substr() needs a number, got null");
}

TEST_F(ExpressionTest, IndexOf) {
  EXPECT_EQ(json("indexOf('hello', 'l')"), "2");
  EXPECT_EQ(json("indexOf('hello', 'z')"), "-1");
  EXPECT_EQ(json("indexOf('hello', '')"), "0");
  EXPECT_EQ(json("indexOf(L, 'two')"), "1");
  EXPECT_EQ(json("indexOf(L, 9)"), "-1");
  EXPECT_EQ(json("indexOf(NOT_SET, 'a')"), "-1");
}

TEST_F(ExpressionTest, Default) {
  EXPECT_EQ(json("default(NOT_SET, 'fb')"), "\"fb\"");
  EXPECT_EQ(json("default(EMPTY, 'fb')"), "\"fb\"");
  EXPECT_EQ(json("default(S, 'fb')"), "\"str\"");
  EXPECT_EQ(json("default(ZERO, 1)"), "0") << "only null and \"\" fall back";
  EXPECT_EQ(json("default(F, true)"), "false");
  EXPECT_EQ(json("default(NOT_SET, [1])[0]"), "1");
  EXPECT_EQ(json("default(NOT_SET, S + '!')"), "\"str!\"");
}

TEST_F(ExpressionTest, KeysAndValues) {
  EXPECT_EQ(json("keys(M)"), "[\"a\",\"user-agent\",\"nested\",\"7\"]");
  EXPECT_EQ(json("values({'a': 1, 'b': [2]})"), "[1,[2]]");
  EXPECT_EQ(json("keys(NOT_SET)"), "[]");
  EXPECT_EQ(json("values(NOT_SET)"), "[]");
  EXPECT_EQ(eval_error("keys(L)"), "keys() needs a map, got list");
  EXPECT_EQ(eval_error("values(S)"), "values() needs a map, got string");
}

TEST_F(ExpressionTest, Rounding) {
  EXPECT_EQ(json("round(2.5)"), "3");
  EXPECT_EQ(json("round(-2.5)"), "-3") << "halves round away from zero";
  EXPECT_EQ(json("round(2.4)"), "2");
  EXPECT_EQ(json("round(3.14159, 2)"), "3.14");
  EXPECT_EQ(json("round(1234, -2)"), "1200");
  EXPECT_EQ(json("round('2.6')"), "3");
  EXPECT_EQ(json("floor(2.7)"), "2");
  EXPECT_EQ(json("floor(-2.1)"), "-3");
  EXPECT_EQ(json("ceil(2.1)"), "3");
  EXPECT_EQ(json("ceil(-2.7)"), "-2");
  EXPECT_EQ(json("abs(-4.5)"), "4.5");
  EXPECT_EQ(json("abs(4)"), "4");
  EXPECT_EQ(eval_error("round(S)"), "round() needs a number, got string");
  EXPECT_EQ(eval_error("round(1, S)"), "round() needs a number, got string");
  EXPECT_EQ(eval_error("floor(NOT_SET)"), "floor() needs a number, got null");
  EXPECT_EQ(eval_error("ceil(L)"), "ceil() needs a number, got list");
  EXPECT_EQ(eval_error("abs(T)"), "abs() needs a number, got boolean");
}

TEST_F(ExpressionTest, MinMax) {
  EXPECT_EQ(json("min(3, X)"), "3");
  EXPECT_EQ(json("max(3, X)"), "5");
  EXPECT_EQ(json("min('b', 'a')"), "\"a\"");
  EXPECT_EQ(json("max(NUM, 7)"), "\"42\"") << "the larger argument itself";
  EXPECT_EQ(json("min(-1, -2)"), "-2");
  EXPECT_EQ(json("max([1][0], 0)"), "1");
  EXPECT_EQ(eval_error("min(S, 1)"), "min() cannot compare string and number");
  EXPECT_EQ(eval_error("max(NOT_SET, 1)"), "max() cannot compare null and number");
}

TEST_F(ExpressionTest, UrlEncoding) {
  EXPECT_EQ(json("urlEncode('a b&c=d/é~_.-')"), "\"a%20b%26c%3Dd%2F%C3%A9~_.-\"");
  EXPECT_EQ(json("urlDecode('a%20b+c%3d%C3%A9')"), "\"a b c=é\"");
  EXPECT_EQ(json("urlDecode('100%')"), "\"100%\"") << "a bare % stays";
  EXPECT_EQ(json("urlDecode('%zz%4')"), "\"%zz%4\"");
  EXPECT_EQ(json("urlDecode(urlEncode('x y/z?'))"), "\"x y/z?\"");
  EXPECT_EQ(json("urlEncode(NOT_SET)"), "\"\"");
}

TEST_F(ExpressionTest, Base64) {
  EXPECT_EQ(json("base64Encode('')"), "\"\"");
  EXPECT_EQ(json("base64Encode('f')"), "\"Zg==\"");
  EXPECT_EQ(json("base64Encode('fo')"), "\"Zm8=\"");
  EXPECT_EQ(json("base64Encode('foo')"), "\"Zm9v\"");
  EXPECT_EQ(json("base64Encode('foobar')"), "\"Zm9vYmFy\"");
  EXPECT_EQ(json("base64Encode('user:pa ss')"), "\"dXNlcjpwYSBzcw==\"");
  EXPECT_EQ(json("base64Decode('Zm9vYmFy')"), "\"foobar\"");
  EXPECT_EQ(json("base64Decode('Zg==')"), "\"f\"");
  EXPECT_EQ(json("base64Decode('Zm8')"), "\"fo\"") << "padding is optional";
  EXPECT_EQ(json("base64Decode('-_8')"), json("base64Decode('+/8=')")) << "URL-safe alphabet";
  EXPECT_EQ(json("base64Decode(base64Encode('round trip é'))"), "\"round trip é\"");
  EXPECT_EQ(eval_error("base64Decode('Zm9v!')"), "base64Decode(): the input is not valid base64");
  EXPECT_EQ(eval_error("base64Decode('Z')"), "base64Decode(): the input is not valid base64");
}

TEST_F(ExpressionTest, IsNullAndType) {
  EXPECT_EQ(json("isNull(NOT_SET)"), "true");
  EXPECT_EQ(json("isNull(EMPTY)"), "false");
  EXPECT_EQ(json("isNull(null)"), "true");
  EXPECT_EQ(json("type(NOT_SET)"), "\"null\"");
  EXPECT_EQ(json("type(T)"), "\"boolean\"");
  EXPECT_EQ(json("type(X)"), "\"number\"");
  EXPECT_EQ(json("type(S)"), "\"string\"");
  EXPECT_EQ(json("type(L)"), "\"list\"");
  EXPECT_EQ(json("type(M)"), "\"map\"");
  EXPECT_EQ(json("type(B)"), "\"bytes\"");
}

TEST_F(ExpressionTest, FunctionNamesCanAlsoBeVariables) {
  given["type"] = Value("t");
  EXPECT_EQ(json("type"), "\"t\"");
  EXPECT_EQ(json("type(type)"), "\"string\"");
}

// --- constant folding -------------------------------------------------------------------

TEST_F(ExpressionTest, ConstantFolding) {
  EXPECT_TRUE(compile("1").is_constant());
  EXPECT_TRUE(compile("1 + 2 * 3").is_constant());
  EXPECT_TRUE(compile("'a' + lower('B')").is_constant());
  EXPECT_TRUE(compile("[1, {'a': len('xy')}]").is_constant());
  EXPECT_TRUE(compile("not (1 < 2) or matches('a', 'b')").is_constant());
  EXPECT_TRUE(compile("split('a,b', ',')[1]").is_constant());
  EXPECT_FALSE(compile("X").is_constant());
  EXPECT_FALSE(compile("X + 1").is_constant());
  EXPECT_FALSE(compile("[X]").is_constant());
  EXPECT_FALSE(compile("len(S)").is_constant());
  EXPECT_FALSE(compile("now()").is_constant());
  EXPECT_FALSE(compile("parseJson('{')").is_constant()) << "an error is kept for run time";
  EXPECT_FALSE(Expression().is_constant());
  // A folded constant evaluates to the stored value without touching scratch.
  Expression e = compile("'a' + 'b'");
  EvalContext ctx{fresh_vars(), services};
  Value scratch;
  const Value& v = e.eval(ctx, scratch);
  EXPECT_EQ(v.as_string(), "ab");
  EXPECT_NE(&v, &scratch);
  EXPECT_TRUE(scratch.is_null());
}

TEST_F(ExpressionTest, EvalReturnsVariablesWithoutCopying) {
  Expression e = compile("L");
  Expression m = compile("M['user-agent']");
  EvalContext ctx{fresh_vars(), services};
  Value scratch;
  const Value& v = e.eval(ctx, scratch);
  EXPECT_EQ(&v, &vars->get("L"));
  EXPECT_EQ(&e.eval(ctx, scratch), &vars->get("L"));
  ASSERT_TRUE(vars->get("M").is_map());
  const Value& ua = m.eval(ctx, scratch);
  EXPECT_EQ(&ua, vars->get("M").as_map().find("user-agent")) << "an element of a variable";
}

// --- compile errors ---------------------------------------------------------------------

TEST_F(ExpressionTest, CompileErrors) {
  EXPECT_EQ(compile_error(""), "column 1: empty expression");
  EXPECT_EQ(compile_error("   "), "column 4: empty expression");
  EXPECT_EQ(compile_error("1 +"), "column 4: unexpected end of expression");
  EXPECT_EQ(compile_error("X #"), "column 3: unexpected character '#'");
  EXPECT_EQ(compile_error("X \x01"), "column 3: unexpected character byte 0x01");
  EXPECT_EQ(compile_error("'é' é"), "column 6: unexpected character byte 0xC3");
  EXPECT_EQ(compile_error("'abc"), "column 1: unterminated string");
  EXPECT_EQ(compile_error("X + \"abc\\"), "column 5: unterminated string");
  EXPECT_EQ(compile_error("X = 1"), "column 3: unexpected '='; use '==' to compare");
  EXPECT_EQ(compile_error("X & Y"), "column 3: unexpected '&'; use '&&' or 'and'");
  EXPECT_EQ(compile_error("X | Y"), "column 3: unexpected '|'; use '||' or 'or'");
  EXPECT_EQ(compile_error("1 < X < 3"),
            "column 7: comparisons cannot be chained; combine them with 'and'");
  EXPECT_EQ(compile_error("X == 1 == T"),
            "column 8: comparisons cannot be chained; combine them with 'and'");
  EXPECT_EQ(compile_error("X Y"), "column 3: unexpected 'Y' after the end of the expression");
  EXPECT_EQ(compile_error("X )"), "column 3: unexpected ')' after the end of the expression");
  EXPECT_EQ(compile_error("(X"), "column 3: expected ')' before the end");
  EXPECT_EQ(compile_error("(X ]"), "column 4: expected ')', found ']'");
  EXPECT_EQ(compile_error("L[0"), "column 4: expected ']' before the end");
  EXPECT_EQ(compile_error("[1, 2"), "column 6: expected ',' or ']' before the end");
  EXPECT_EQ(compile_error("[1,]"), "column 4: unexpected ']'");
  EXPECT_EQ(compile_error("{a: 1}"), "column 2: a map key must be a quoted string");
  EXPECT_EQ(compile_error("{'a' 1}"), "column 6: expected ':', found '1'");
  EXPECT_EQ(compile_error("{'a': 1"), "column 8: expected ',' or '}' before the end");
  EXPECT_EQ(compile_error("M."), "column 3: expected a name after '.'");
  EXPECT_EQ(compile_error("M.1"), "column 3: expected a name after '.'");
  EXPECT_EQ(compile_error("M.a(1)"), "column 4: only built-in functions can be called");
  EXPECT_EQ(compile_error("X and"), "column 6: unexpected end of expression");
  EXPECT_EQ(compile_error("and X"), "column 1: unexpected 'and'");
  EXPECT_EQ(compile_error("X * * 2"), "column 5: unexpected '*'");
  EXPECT_EQ(compile_error("+1"), "column 1: unexpected '+'");
  EXPECT_EQ(compile_error("1e999"), "column 1: number 1e999 is out of range");
  EXPECT_EQ(compile_error(std::string(400, '9')),
            "column 1: number " + std::string(40, '9') + "... is out of range");
  EXPECT_EQ(compile_error(".5"), "column 1: unexpected '.'");
  EXPECT_EQ(compile_error("1."), "column 3: expected a name after '.'");
  EXPECT_EQ(compile_error("'\\u12'"), "column 2: invalid \\u escape: expected four hex digits");
  EXPECT_EQ(compile_error("'\\ud800'"), "column 2: invalid \\u escape: unpaired surrogate");
  EXPECT_EQ(compile_error("'\\udc00'"), "column 2: invalid \\u escape: unpaired surrogate");
}

TEST_F(ExpressionTest, FunctionCompileErrors) {
  EXPECT_EQ(compile_error("lenght(S)"), "column 1: unknown function 'lenght'");
  EXPECT_EQ(compile_error("X + sha256(S)"), "column 5: unknown function 'sha256'");
  EXPECT_EQ(compile_error("len(S, 2)"), "column 1: len() takes 1 argument, got 2");
  EXPECT_EQ(compile_error("len()"), "column 1: len() takes 1 argument, got 0");
  EXPECT_EQ(compile_error("contains(S)"), "column 1: contains() takes 2 arguments, got 1");
  EXPECT_EQ(compile_error("  now(1)"), "column 3: now() takes no arguments, got 1");
  EXPECT_EQ(compile_error("substr(S)"), "column 1: substr() takes 2 or 3 arguments, got 1");
  EXPECT_EQ(compile_error("round(1, 2, 3)"), "column 1: round() takes 1 or 2 arguments, got 3");
  EXPECT_EQ(compile_error("len(S"), "column 6: expected ',' or ')' before the end");
  EXPECT_EQ(compile_error("len(S,)"), "column 7: unexpected ')'");
  EXPECT_EQ(compile_error("matches(S, '(unclosed')"),
            "column 12: invalid regular expression: missing ): (unclosed");
  EXPECT_EQ(compile_error("regexReplace(S, 'a', '\\1')"),
            "column 22: invalid replacement: Rewrite schema requests 1 matches, but the regexp "
            "only has 0 parenthesized subexpressions.");
  EXPECT_EQ(compile_error("matches(S, 'a' + '[')"),
            "column 12: invalid regular expression: missing ]: [")
      << "a folded constant pattern";
}

TEST_F(ExpressionTest, NestingLimit) {
  std::string ok = std::string(200, '(') + "X" + std::string(200, ')');
  EXPECT_EQ(text(ok), "5");
  std::string deep = std::string(100000, '(') + "X" + std::string(100000, ')');
  EXPECT_EQ(compile_error(deep),
            "column 257: expression is nested too deeply (more than 256 levels)");
  EXPECT_NE(compile_error(std::string(100000, '[')).find("nested too deeply"), std::string::npos);
  EXPECT_NE(compile_error(std::string(100000, '-') + "X").find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(compile_error(std::string(100000, '!') + "X").find("nested too deeply"),
            std::string::npos);
  std::string calls;
  for (int i = 0; i < 5000; ++i) calls += "len(";
  EXPECT_NE(compile_error(calls).find("nested too deeply"), std::string::npos);
  std::string maps;
  for (int i = 0; i < 5000; ++i) maps += "{'a':";
  EXPECT_NE(compile_error(maps).find("nested too deeply"), std::string::npos);
}

TEST_F(ExpressionTest, LongChainsAreBoundedToo) {
  // A long left-leaning chain does not recurse while parsing, but its tree is deep.
  std::string sum = "X";
  for (int i = 0; i < 100000; ++i) sum += "+X";
  EXPECT_NE(compile_error(sum).find("nested too deeply"), std::string::npos);
  std::string index = "L";
  for (int i = 0; i < 100000; ++i) index += "[0]";
  EXPECT_NE(compile_error(index).find("nested too deeply"), std::string::npos);
  std::string members = "M";
  for (int i = 0; i < 100000; ++i) members += ".a";
  EXPECT_NE(compile_error(members).find("nested too deeply"), std::string::npos);
  // Constant chains fold as they are built, so they stay shallow.
  std::string ones = "1";
  for (int i = 0; i < 100000; ++i) ones += "+1";
  EXPECT_EQ(json(ones), "100001");
  // A chain within the limit evaluates.
  std::string ok = "X";
  for (int i = 0; i < 200; ++i) ok += "+X";
  EXPECT_EQ(json(ok), "1005");
}

TEST_F(ExpressionTest, HugeInputs) {
  std::string big(1 << 20, 'a');
  EXPECT_EQ(eval("len('" + big + "')").as_number(), 1 << 20);
  std::string list = "[";
  for (int i = 0; i < 100000; ++i) list += "X,";
  list += "X]";
  EXPECT_EQ(json("len(" + list + ")"), "100001");
  std::string name(100000, 'V');
  EXPECT_TRUE(eval(name).is_null());
}

TEST_F(ExpressionTest, GarbageNeverCrashes) {
  std::mt19937 rng(4242);
  const std::vector<std::string> pieces = {
      "X",  "S",  "L",    "M",      "NOT_SET", "1",          "0",    "'a'",  "\"b\"", "(",   ")",
      "[",  "]",  "{",    "}",      ",",       ".",          ":",    "+",    "-",     "*",   "/",
      "%",  "==", "!=",   "<",      "<=",      ">",          ">=",   "and",  "or",    "not", "!",
      "&&", "||", "len(", "split(", "substr(", "matches(",   "'(x'", "null", "true",  " ",   "'",
      "\\", "$",  "${",   "#",      "\xff",    "parseJson(", "json("};
  int compiled = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string src;
    size_t n = 1 + rng() % 12;
    for (size_t k = 0; k < n; ++k) {
      if (i % 3 == 0)
        src += static_cast<char>(rng() & 0xFF);
      else
        src += pieces[rng() % pieces.size()];
    }
    std::string error;
    auto e = compile_expression(src, env, &error);
    if (!e) {
      EXPECT_EQ(error.rfind("column ", 0), 0u) << src << " -> " << error;
      continue;
    }
    ++compiled;
    EvalContext ctx{fresh_vars(), services};
    try {
      Value v = e->value(ctx);
      std::string out;
      v.append_text(out);
    } catch (const EvalError& ex) {
      EXPECT_NE(std::string(ex.what()), "");
    }
  }
  EXPECT_GT(compiled, 100) << "the generator should produce some valid expressions";
}

// --- evaluation does not allocate on the hot path ---------------------------------------

TEST_F(ExpressionTest, ComparingAVariableDoesNotAllocate) {
  Expression e = compile("URI == '/hello'");
  Expression h = compile("HEADERS['user-agent'] == 'curl/8' and len(URI) > 3");
  Variables& v = fresh_vars();
  v.set(kUri, Value("/hello"));
  Map headers;
  headers.set("user-agent", Value("curl/8"));
  v.set(kHeaders, Value(headers));
  EvalContext ctx{v, services};
  Value scratch;
  long before = g_allocations;
  bool a = e.eval(ctx, scratch).truthy();
  bool b = h.eval(ctx, scratch).truthy();
  long after = g_allocations;
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
  EXPECT_EQ(after - before, 0);
}

TEST_F(ExpressionTest, RenderingAppendsWithoutAllocating) {
  auto t = tmpl("Hello ${S}, you are ${X}!");
  ASSERT_TRUE(t);
  EvalContext ctx{fresh_vars(), services};
  std::string out = "> ";
  out.reserve(256);
  long before = g_allocations;
  t->render(ctx, out);
  long after = g_allocations;
  EXPECT_EQ(out, "> Hello str, you are 5!");
  EXPECT_EQ(after - before, 0);
}

// --- templates --------------------------------------------------------------------------

TEST_F(ExpressionTest, TemplateLiteralText) {
  auto t = tmpl("plain text, a lone $ and $x and {braces}");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->is_constant());
  EXPECT_EQ(t->constant().as_string(), "plain text, a lone $ and $x and {braces}");
  EXPECT_EQ(tmpl_text("ends with $"), "ends with $");
  auto empty = tmpl("");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->is_constant());
  EXPECT_EQ(tmpl_value("").as_string(), "");
}

TEST_F(ExpressionTest, TemplateRendering) {
  EXPECT_EQ(tmpl_text("Hello ${S}!"), "Hello str!");
  EXPECT_EQ(tmpl_text("${S}${X}"), "str5");
  EXPECT_EQ(tmpl_text("x=${X + 1}, l=${L}, n=${NOT_SET}, t=${T}"),
            "x=6, l=[1,\"two\",[3]], n=, t=true");
  EXPECT_EQ(tmpl_text("${ M['user-agent'] }"), "curl/8");
  Value v = tmpl_value("n=${X}");
  EXPECT_TRUE(v.is_string()) << "a template with text around the expression is a string";
  EXPECT_EQ(v.as_string(), "n=5");
  auto t = tmpl("a${S}b");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->is_constant());
  EvalContext ctx{fresh_vars(), services};
  std::string out = "keep:";
  t->render(ctx, out);
  EXPECT_EQ(out, "keep:astrb") << "render appends to the caller's string";
}

TEST_F(ExpressionTest, SingleExpressionTemplateIsTyped) {
  Value n = tmpl_value("${X}");
  ASSERT_TRUE(n.is_number()) << "a number stays a number";
  EXPECT_EQ(n.as_number(), 5);
  EXPECT_TRUE(tmpl_value("${L}").is_list());
  EXPECT_TRUE(tmpl_value("${M}").is_map());
  EXPECT_TRUE(tmpl_value("${T}").is_bool());
  EXPECT_TRUE(tmpl_value("${NOT_SET}").is_null());
  EXPECT_TRUE(tmpl_value("${ X > 1 }").is_bool());
  EXPECT_TRUE(tmpl_value(" ${X}").is_string()) << "surrounding text makes it a string";
  EXPECT_TRUE(tmpl_value("${X} ").is_string());
  EXPECT_EQ(tmpl_value("${X}${X}").as_string(), "55");
  // A single variable is returned by reference, not copied.
  auto t = tmpl("${L}");
  ASSERT_TRUE(t);
  EvalContext ctx{fresh_vars(), services};
  Value scratch;
  EXPECT_EQ(&t->eval(ctx, scratch), &vars->get("L"));
  EXPECT_EQ(t->text(ctx), "[1,\"two\",[3]]");
}

TEST_F(ExpressionTest, ConstantTemplates) {
  auto a = tmpl("${1 + 2}");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_constant());
  EXPECT_TRUE(a->constant().is_number());
  EXPECT_EQ(a->constant().as_number(), 3);
  auto b = tmpl("v${upper('x')}-${[1, 2]}");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->is_constant());
  EXPECT_EQ(b->constant().as_string(), "vX-[1,2]");
  auto c = tmpl("v${now()}");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->is_constant());
  EXPECT_EQ(tmpl_text("v${now()}"), "v1700000000123");
  auto d = tmpl("${X}");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->is_constant());
  // Evaluating a constant returns the stored value.
  EvalContext ctx{fresh_vars(), services};
  Value scratch;
  EXPECT_EQ(&b->eval(ctx, scratch), &b->constant());
}

TEST_F(ExpressionTest, TemplateBracesInsideExpressions) {
  EXPECT_EQ(tmpl_text("${ lower('}') }"), "}");
  EXPECT_EQ(tmpl_text("[${ \"{\" + '}' }]"), "[{}]");
  EXPECT_EQ(tmpl_text("${ 'it\\'s }' }"), "it's }");
  EXPECT_EQ(tmpl_text("${ {'a': {'b': 2}}.a.b }!"), "2!");
  EXPECT_EQ(tmpl_text("${ json({'k': '}'}) }"), "{\"k\":\"}\"}");
}

TEST_F(ExpressionTest, TemplateEnvironment) {
  EXPECT_EQ(tmpl_text("postgres://${env:CAP_TEST_HOST}/app"), "postgres://db.local/app");
  EXPECT_EQ(tmpl_text("${ env:CAP_TEST_HOST }"), "db.local");
  EXPECT_EQ(tmpl_text("[${env:CAP_TEST_EMPTY}]"), "[]");
  auto t = tmpl("${env:CAP_TEST_HOST}");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->is_constant()) << "read once, at compile time";
  env_vars["CAP_TEST_HOST"] = "changed";
  EvalContext ctx{fresh_vars(), services};
  EXPECT_EQ(t->text(ctx), "db.local");
  EXPECT_EQ(tmpl_error("url=${env:CAP_TEST_MISSING}"),
            "column 5: environment variable CAP_TEST_MISSING is not set");
  EXPECT_EQ(tmpl_error("${env:}"), "column 1: missing environment variable name after 'env:'");
}

TEST_F(ExpressionTest, TemplateEnvironmentFallsBackToProcessEnvironment) {
  env.getenv = nullptr;
  ::setenv("CAP_EXPR_TEST_VAR", "from-process", 1);
  ::unsetenv("CAP_EXPR_TEST_UNSET");
  EXPECT_EQ(tmpl_text("${env:CAP_EXPR_TEST_VAR}"), "from-process");
  EXPECT_EQ(tmpl_error("${env:CAP_EXPR_TEST_UNSET}"),
            "column 1: environment variable CAP_EXPR_TEST_UNSET is not set");
  ::unsetenv("CAP_EXPR_TEST_VAR");
}

TEST_F(ExpressionTest, TemplateVault) {
  EXPECT_EQ(tmpl_text("${vault:db.user}:${vault:db.password}"), "app:s3cret-pw");
  EXPECT_EQ(tmpl_text("Bearer ${vault:token}"), "Bearer tok-123") << "no field means \"\"";
  EXPECT_EQ(tmpl_text("${ vault:db.user }"), "app");
  auto t = tmpl("${vault:db.password}");
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->is_constant()) << "read from the vault at evaluation";
  Value v = tmpl_value("${vault:db.password}");
  ASSERT_TRUE(v.is_string());
  EXPECT_EQ(v.as_string(), "s3cret-pw");
  // The vault is read when evaluated, so a changed credential shows up.
  vault.put("db", {{"password", "rotated"}});
  EXPECT_EQ(tmpl_text("${vault:db.password}"), "rotated");
}

TEST_F(ExpressionTest, TemplateVaultErrorsNeverShowSecrets) {
  EXPECT_EQ(tmpl_eval_error("x${vault:nope.password}"), "vault credential 'nope' is not available");
  std::string missing_field = tmpl_eval_error("${vault:db.nofield}");
  EXPECT_EQ(missing_field, "vault credential 'db' is not available");
  EXPECT_EQ(missing_field.find("s3cret"), std::string::npos);
  services.vault = nullptr;
  EXPECT_EQ(tmpl_eval_error("${vault:db.password}"), "vault credential 'db' is not available");
  auto t = tmpl("${vault:db.password}");
  ASSERT_TRUE(t);
  EvalContext ctx{fresh_vars(), services};
  Value scratch;
  EXPECT_THROW(t->eval(ctx, scratch), EvalError);
  EXPECT_EQ(tmpl_error("${vault:}"), "column 1: missing vault credential name after 'vault:'");
}

TEST_F(ExpressionTest, TemplateErrors) {
  EXPECT_EQ(tmpl_error("abc ${X"), "column 5: unterminated ${");
  EXPECT_EQ(tmpl_error("${ '}"), "column 1: unterminated ${");
  EXPECT_EQ(tmpl_error("ok ${X} then ${"), "column 14: unterminated ${");
  EXPECT_EQ(tmpl_error("a ${}"), "column 3: empty ${}");
  EXPECT_EQ(tmpl_error("a ${  }"), "column 3: empty ${}");
  // Expression errors name the column in the template text.
  EXPECT_EQ(tmpl_error("Hello ${lenght(X)}"), "column 9: unknown function 'lenght'");
  EXPECT_EQ(tmpl_error("Hi ${X} ${ X + }"), "column 16: unexpected end of expression");
  EXPECT_EQ(tmpl_error("${X = 1}"), "column 5: unexpected '='; use '==' to compare");
  EXPECT_EQ(tmpl_error("${X}${len()}"), "column 7: len() takes 1 argument, got 0");
}

TEST_F(ExpressionTest, TemplateEvaluationErrors) {
  EXPECT_EQ(tmpl_eval_error("v=${X / ZERO}"), "division by zero");
  auto t = tmpl("${S * 2}");
  ASSERT_TRUE(t);
  EvalContext ctx{fresh_vars(), services};
  Value scratch;
  EXPECT_THROW(t->eval(ctx, scratch), EvalError);
}

TEST_F(ExpressionTest, DefaultTemplateIsEmpty) {
  Template t;
  EvalContext ctx{fresh_vars(), services};
  EXPECT_EQ(t.text(ctx), "");
  EXPECT_FALSE(t.is_constant());
}

TEST_F(ExpressionTest, TemplateGarbageNeverCrashes) {
  std::mt19937 rng(99);
  const std::string alphabet = "${}'\"\\ xX+()[]:.env:vault:a";
  for (int i = 0; i < 20000; ++i) {
    std::string src;
    size_t n = rng() % 24;
    for (size_t k = 0; k < n; ++k)
      src += (i % 2) ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()];
    std::string error;
    auto t = compile_template(src, env, &error);
    if (!t) {
      EXPECT_EQ(error.rfind("column ", 0), 0u) << src << " -> " << error;
      continue;
    }
    EvalContext ctx{fresh_vars(), services};
    try {
      std::string out;
      t->render(ctx, out);
      Value scratch;
      t->eval(ctx, scratch);
    } catch (const EvalError& ex) {
      EXPECT_NE(std::string(ex.what()), "");
    }
  }
  std::string deep = "${" + std::string(100000, '(') + "}";
  EXPECT_NE(tmpl_error(deep).find("nested too deeply"), std::string::npos);
}

// --- threads ----------------------------------------------------------------------------

TEST_F(ExpressionTest, CompiledExpressionsAreSharedAcrossThreads) {
  Expression e = compile("matches(lower(S + N), '^str[0-9]+$') and len(split(lower(S), 't')) == 2");
  auto t = tmpl("${S}-${N}");
  ASSERT_TRUE(t);
  std::vector<std::thread> threads;
  std::vector<int> good(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      Variables v(symbols);
      v.set("S", Value("STR"));
      HostServices none;
      EvalContext ctx{v, none};
      for (int i = 0; i < 500; ++i) {
        v.set("N", Value(i));
        if (e.truthy(ctx) && t->text(ctx) == "STR-" + std::to_string(i)) ++good[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(good[k], 500);
}

}  // namespace
}  // namespace cap

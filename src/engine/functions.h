// Internal to the engine: the expression language's built-in functions as expression.cpp
// sees them (the lookup by name, the calling convention, the argument-count message), and
// the shared values and small helpers that both the functions and the evaluator use. The
// implementations and the table are in functions.cpp.
#pragma once

#include <re2/re2.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cap/expression.h"

namespace cap::detail {

/// The shared null, true and false values (defined in expression.cpp). Evaluation returns
/// references to them, so they live for the whole program.
extern const Value kNullValue;
extern const Value kTrueValue;
extern const Value kFalseValue;

/// The shared true or false value for `b`.
inline const Value& boolean(bool b) { return b ? kTrueValue : kFalseValue; }

/// The value of the hexadecimal digit `c` (either case), or -1 when it is not one.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

namespace fn {

/// The most arguments any built-in function takes.
constexpr size_t kMaxArgs = 3;

/// One call's arguments and where its result may go.
struct Call {
  const Value* const* a;
  size_t n;
  EvalContext& ctx;
  Value& out;
  const RE2* re;  // the pattern, compiled at load when it was a constant
  const Value& arg(size_t i) const { return *a[i]; }
};

/// Returns `c.out`, one of the arguments, or a static value. Throws EvalError on a bad
/// argument.
using Impl = const Value& (*)(Call& c);

struct Function {
  const char* name;
  size_t min_args, max_args;
  bool pure;  // same arguments, same result: folded at compile time when all are constant
  Impl impl;
  int regex_arg = -1;    // argument compiled at load when it is a constant string
  int rewrite_arg = -1;  // regexReplace's replacement, checked at load when constant
};

/// Numbers and numeric strings take part in arithmetic; nothing else does. Sets `*d` and
/// returns true for those, returns false for anything else.
bool arith_operand(const Value& v, double* d);

/// Compiles `pattern` with the options every regular expression of the language uses;
/// nullptr with `*error` set when it is invalid.
std::shared_ptr<const RE2> compile_regex(std::string_view pattern, std::string* error);

/// The built-in function called `name`, or nullptr when there is none.
const Function* find(std::string_view name);

/// The compile error for calling `f` with `got` arguments, e.g. "substr() takes 2 or 3
/// arguments, got 1".
std::string arity_message(const Function& f, size_t got);

/// The names of all built-in functions, sorted.
std::vector<std::string> names();

}  // namespace fn

}  // namespace cap::detail

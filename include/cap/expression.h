// The expression language and string templates of DESIGN §3.
//
//   literals      null true false 12 1.5 'text' "text" [1, 2] {'a': 1}
//   variables     NAME, ITEMS[0], HEADERS['user-agent'], CONFIG.key (map member)
//   operators     == != < <= > >=  and or not (also && || !)  + - * / %  unary -
//                 + concatenates when either side is a string
//   functions     contains startsWith endsWith lower upper trim len matches replace split
//                 join number string json now ... (see function_names())
//
// Expressions compile once, at load: syntax, unknown functions and argument counts are
// reported then with the column; variable names become slots. Evaluation never parses.
// Templates are strings with ${expr} parts; ${env:NAME} is read from the environment at
// compile time, ${vault:NAME.field} from the vault when evaluated. A template whose whole
// text is one ${expr} yields the expression's typed value.
//
// Evaluation errors (a list index on a number, division by zero, a bad regex argument)
// throw EvalError; the executor turns them into the request's error, which a FailSafePoint
// catches. Compiled expressions and templates are immutable and shared by all threads.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cap/services.h"
#include "cap/value.h"
#include "cap/variables.h"

namespace cap {

/// A failure while evaluating or executing; carries a message for the user.
class EvalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What an expression sees while it runs.
struct EvalContext {
  Variables& vars;
  const HostServices& services;
};

/// What compilation needs: the symbol table to intern names in and a way to read the
/// process environment (replaceable in tests).
struct CompileEnv {
  Symbols& symbols;
  std::function<std::optional<std::string>(std::string_view)> getenv;  // null: ::getenv
};

namespace detail {
class ExprNode;
}

class Expression {
 public:
  Expression() = default;
  /// Evaluates; returns a reference to a stored value (a variable, a constant) or to
  /// `scratch` where the result was computed. Throws EvalError.
  const Value& eval(EvalContext& ctx, Value& scratch) const;
  /// Convenience: evaluate to a fresh value.
  Value value(EvalContext& ctx) const {
    Value s;
    return eval(ctx, s);
  }
  bool truthy(EvalContext& ctx) const {
    Value s;
    return eval(ctx, s).truthy();
  }
  bool valid() const { return root_ != nullptr; }
  /// True when the expression reads no variables and calls nothing time-dependent.
  bool is_constant() const;
  /// The slot when the expression is exactly one variable name, else -1.
  int64_t variable_slot() const;

 private:
  friend std::optional<Expression> compile_expression(std::string_view, CompileEnv&,
                                                      std::string*);
  std::shared_ptr<const detail::ExprNode> root_;
};

/// Compiles `source`. On failure returns nullopt and sets `error` to a message naming the
/// column, e.g. "column 7: unknown function 'lenght'".
std::optional<Expression> compile_expression(std::string_view source, CompileEnv& env,
                                             std::string* error);

class Template {
 public:
  Template() = default;
  /// The typed value: a whole-${expr} template yields the expression's value; otherwise the
  /// rendered string. Returns a reference to a stored value or to `scratch`.
  const Value& eval(EvalContext& ctx, Value& scratch) const;
  /// Appends the text form to `out`.
  void render(EvalContext& ctx, std::string& out) const;
  std::string text(EvalContext& ctx) const {
    std::string s;
    render(ctx, s);
    return s;
  }
  bool is_constant() const;
  /// The constant value, when is_constant().
  const Value& constant() const { return constant_; }

 private:
  friend std::optional<Template> compile_template(std::string_view, CompileEnv&, std::string*);
  struct Segment {
    std::string literal;  // used when !expr.valid() and vault_name is empty
    Expression expr;
    std::string vault_name, vault_field;
  };
  std::vector<Segment> segments_;
  bool single_ = false;    // the whole template is one ${...}
  bool constant_only_ = false;
  Value constant_;
};

/// Compiles a template; errors name the column in the template text.
std::optional<Template> compile_template(std::string_view source, CompileEnv& env,
                                         std::string* error);

/// The names of the built-in functions, for docs and editors.
std::vector<std::string> function_names();

}  // namespace cap

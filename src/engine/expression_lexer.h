// Internal to the engine: the expression language's lexer (the tokens and the Lexer that
// produces them, in expression_lexer.cpp) and CompileError, which the lexer and the parser
// in expression.cpp throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace cap::detail {

/// A compile error: the 1-based column it concerns and the reason.
struct CompileError {
  size_t column;
  std::string message;
};

enum class Tok {
  End,
  Number,
  String,
  Name,
  LParen,
  RParen,
  LBracket,
  RBracket,
  LBrace,
  RBrace,
  Comma,
  Dot,
  Colon,
  Eq,
  Ne,
  Lt,
  Le,
  Gt,
  Ge,
  Plus,
  Minus,
  Star,
  Slash,
  Percent,
  Bang,
  AndAnd,
  OrOr,
};

struct Token {
  Tok kind = Tok::End;
  size_t pos = 0;         // byte offset in the source
  std::string_view text;  // the source text of the token
  std::string str;        // decoded string literal
  double num = 0;
};

/// Splits an expression's source into tokens, one next() at a time.
class Lexer {
 public:
  /// `src` must outlive the lexer and its tokens (they point into it); `base` is the
  /// source's offset in the text it came from (a template), added to error columns.
  Lexer(std::string_view src, size_t base) : src_(src), base_(base) {}

  /// Throws the CompileError for byte offset `pos` of the source.
  [[noreturn]] void fail(size_t pos, std::string msg) const {
    throw CompileError{base_ + pos + 1, std::move(msg)};
  }

  /// The next token; Tok::End once the source is used up. Throws CompileError for a
  /// character, number or string literal the language does not have.
  Token next();

 private:
  Token number(Token& t);
  Token string(Token& t);
  bool hex4(size_t at, uint32_t* cp) const;

  std::string_view src_;
  size_t base_;
  size_t pos_ = 0;
};

}  // namespace cap::detail

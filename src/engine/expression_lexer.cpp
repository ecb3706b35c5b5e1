// The expression language's lexer: names, numbers, string literals (with their escapes)
// and operators, each with its byte offset for error columns. The parser is in
// expression.cpp.
#include "expression_lexer.h"

#include <charconv>
#include <cmath>
#include <string>

#include "functions.h"

namespace cap::detail {

namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string describe_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7F) return std::string("'") + c + "'";
  static const char kHex[] = "0123456789ABCDEF";
  return std::string("byte 0x") + kHex[u >> 4] + kHex[u & 15];
}

}  // namespace

Token Lexer::next() {
  while (pos_ < src_.size() &&
         (src_[pos_] == ' ' || src_[pos_] == '\t' || src_[pos_] == '\n' || src_[pos_] == '\r'))
    ++pos_;
  Token t;
  t.pos = pos_;
  if (pos_ >= src_.size()) return t;
  char c = src_[pos_];
  if (is_name_start(c)) {
    size_t e = pos_ + 1;
    while (e < src_.size() && is_name_char(src_[e])) ++e;
    t.kind = Tok::Name;
    t.text = src_.substr(pos_, e - pos_);
    pos_ = e;
    return t;
  }
  if (is_digit(c)) return number(t);
  if (c == '\'' || c == '"') return string(t);
  auto two = [&](char second) { return pos_ + 1 < src_.size() && src_[pos_ + 1] == second; };
  Tok k;
  size_t len = 1;
  switch (c) {
    case '(':
      k = Tok::LParen;
      break;
    case ')':
      k = Tok::RParen;
      break;
    case '[':
      k = Tok::LBracket;
      break;
    case ']':
      k = Tok::RBracket;
      break;
    case '{':
      k = Tok::LBrace;
      break;
    case '}':
      k = Tok::RBrace;
      break;
    case ',':
      k = Tok::Comma;
      break;
    case '.':
      k = Tok::Dot;
      break;
    case ':':
      k = Tok::Colon;
      break;
    case '+':
      k = Tok::Plus;
      break;
    case '-':
      k = Tok::Minus;
      break;
    case '*':
      k = Tok::Star;
      break;
    case '/':
      k = Tok::Slash;
      break;
    case '%':
      k = Tok::Percent;
      break;
    case '<':
      k = two('=') ? (len = 2, Tok::Le) : Tok::Lt;
      break;
    case '>':
      k = two('=') ? (len = 2, Tok::Ge) : Tok::Gt;
      break;
    case '!':
      k = two('=') ? (len = 2, Tok::Ne) : Tok::Bang;
      break;
    case '=':
      if (!two('=')) fail(pos_, "unexpected '='; use '==' to compare");
      k = Tok::Eq;
      len = 2;
      break;
    case '&':
      if (!two('&')) fail(pos_, "unexpected '&'; use '&&' or 'and'");
      k = Tok::AndAnd;
      len = 2;
      break;
    case '|':
      if (!two('|')) fail(pos_, "unexpected '|'; use '||' or 'or'");
      k = Tok::OrOr;
      len = 2;
      break;
    default:
      fail(pos_, "unexpected character " + describe_char(c));
  }
  t.kind = k;
  t.text = src_.substr(pos_, len);
  pos_ += len;
  return t;
}

Token Lexer::number(Token& t) {
  size_t e = pos_;
  while (e < src_.size() && is_digit(src_[e])) ++e;
  if (e + 1 < src_.size() && src_[e] == '.' && is_digit(src_[e + 1])) {
    ++e;
    while (e < src_.size() && is_digit(src_[e])) ++e;
  }
  if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
    size_t x = e + 1;
    if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
    if (x < src_.size() && is_digit(src_[x])) {
      while (x < src_.size() && is_digit(src_[x])) ++x;
      e = x;
    }
  }
  t.kind = Tok::Number;
  t.text = src_.substr(pos_, e - pos_);
  // from_chars, unlike strtod, ignores the process locale.
  auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), t.num);
  if (ec != std::errc() || end != t.text.data() + t.text.size() || !std::isfinite(t.num))
    fail(pos_, "number " + std::string(t.text.substr(0, 40)) + (t.text.size() > 40 ? "..." : "") +
                   " is out of range");
  pos_ = e;
  return t;
}

Token Lexer::string(Token& t) {
  char quote = src_[pos_];
  size_t i = pos_ + 1;
  std::string out;
  while (true) {
    if (i >= src_.size()) fail(t.pos, "unterminated string");
    char c = src_[i];
    if (c == quote) break;
    if (c != '\\') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 >= src_.size()) fail(t.pos, "unterminated string");
    char e = src_[i + 1];
    i += 2;
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case '/':
        out += '/';
        break;
      case '$':
        out += '$';
        break;
      case 'u': {
        uint32_t cp = 0;
        if (!hex4(i, &cp)) fail(i - 2, "invalid \\u escape: expected four hex digits");
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t lo = 0;
          if (i + 1 < src_.size() && src_[i] == '\\' && src_[i + 1] == 'u' && hex4(i + 2, &lo) &&
              lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          } else {
            fail(i - 6, "invalid \\u escape: unpaired surrogate");
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail(i - 6, "invalid \\u escape: unpaired surrogate");
        }
        append_utf8(out, cp);
        break;
      }
      default:
        // Kept as written, so regular expressions like '\d+' need no doubled backslash.
        out += '\\';
        out += e;
        break;
    }
  }
  t.kind = Tok::String;
  t.text = src_.substr(pos_, i + 1 - pos_);
  t.str = std::move(out);
  pos_ = i + 1;
  return t;
}

bool Lexer::hex4(size_t at, uint32_t* cp) const {
  if (at + 4 > src_.size()) return false;
  uint32_t v = 0;
  for (size_t k = 0; k < 4; ++k) {
    int h = hex_value(src_[at + k]);
    if (h < 0) return false;
    v = v * 16 + static_cast<uint32_t>(h);
  }
  *cp = v;
  return true;
}

}  // namespace cap::detail

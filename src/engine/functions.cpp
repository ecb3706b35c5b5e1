// The expression language's built-in functions (contains, len, matches, base64Encode,
// urlEncode, ...): one implementation each, and the table, sorted by name, that the parser
// looks names up in (see functions.h). The lexer, parser and nodes are in expression.cpp.
#include "functions.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

namespace cap::detail::fn {

namespace {

const Value& put(Value& out, Value v) {
  out = std::move(v);
  return out;
}

}  // namespace

/// Numbers and numeric strings take part in arithmetic; nothing else does.
bool arith_operand(const Value& v, double* d) {
  if (v.is_number()) {
    *d = v.as_number();
    return true;
  }
  if (v.is_string()) {
    bool ok = false;
    double x = v.to_number(&ok);
    if (ok) {
      *d = x;
      return true;
    }
  }
  return false;
}

namespace {

/// The text of a value without copying strings; `buf` holds it for other types.
std::string_view text(const Value& v, std::string& buf) {
  switch (v.type()) {
    case Type::String:
      return v.as_string();
    case Type::Bytes:
      return v.as_bytes().data;
    case Type::Null:
      return {};
    default:
      buf.clear();
      v.append_text(buf);
      return buf;
  }
}

std::string needs(const char* fname, const char* what, const Value& got) {
  return std::string(fname) + "() needs " + what + ", got " + type_name(got.type());
}

double number_arg(const Call& c, size_t i, const char* fname) {
  double d = 0;
  if (!arith_operand(c.arg(i), &d)) throw EvalError(needs(fname, "a number", c.arg(i)));
  if (std::isnan(d)) d = 0;
  return d;
}

RE2::Options regex_options() {
  RE2::Options o;
  o.set_log_errors(false);
  return o;
}

}  // namespace

std::shared_ptr<const RE2> compile_regex(std::string_view pattern, std::string* error) {
  auto re =
      std::make_shared<RE2>(re2::StringPiece(pattern.data(), pattern.size()), regex_options());
  if (!re->ok()) {
    *error = re->error();
    return nullptr;
  }
  return re;
}

namespace {

/// The call's regex: the one compiled at load, or `local` compiled now.
const RE2& regex_for(const Call& c, size_t i, const char* fname, std::optional<RE2>& local) {
  if (c.re) return *c.re;
  std::string buf;
  std::string_view p = text(c.arg(i), buf);
  local.emplace(re2::StringPiece(p.data(), p.size()), regex_options());
  if (!local->ok())
    throw EvalError(std::string(fname) + "(): invalid regular expression: " + local->error());
  return *local;
}

bool is_ascii_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 6) return 2;
  if ((lead >> 4) == 14) return 3;
  if ((lead >> 3) == 30) return 4;
  return 1;
}

const Value& f_contains(Call& c) {
  const Value& h = c.arg(0);
  std::string b1, b2;
  switch (h.type()) {
    case Type::Null:
      return kFalseValue;
    case Type::String:
    case Type::Bytes:
      return boolean(text(h, b1).find(text(c.arg(1), b2)) != std::string_view::npos);
    case Type::List:
      for (const Value& e : h.as_list())
        if (e.equals(c.arg(1))) return kTrueValue;
      return kFalseValue;
    case Type::Map:
      return boolean(h.as_map().find(text(c.arg(1), b2)) != nullptr);
    default:
      throw EvalError(needs("contains", "a string, list or map", h));
  }
}

const Value& f_starts_with(Call& c) {
  std::string b1, b2;
  return boolean(text(c.arg(0), b1).starts_with(text(c.arg(1), b2)));
}

const Value& f_ends_with(Call& c) {
  std::string b1, b2;
  return boolean(text(c.arg(0), b1).ends_with(text(c.arg(1), b2)));
}

const Value& change_case(Call& c, bool upper) {
  std::string b;
  std::string s(text(c.arg(0), b));
  for (char& ch : s) {
    if (upper && ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
    if (!upper && ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return put(c.out, Value(std::move(s)));
}
const Value& f_lower(Call& c) { return change_case(c, false); }
const Value& f_upper(Call& c) { return change_case(c, true); }

const Value& f_trim(Call& c) {
  std::string b;
  std::string_view s = text(c.arg(0), b);
  size_t from = 0, to = s.size();
  while (from < to && is_ascii_space(s[from])) ++from;
  while (to > from && is_ascii_space(s[to - 1])) --to;
  if (c.arg(0).is_string() && from == 0 && to == s.size()) return c.arg(0);
  return put(c.out, Value(std::string(s.substr(from, to - from))));
}

const Value& f_len(Call& c) {
  const Value& v = c.arg(0);
  size_t n = 0;
  switch (v.type()) {
    case Type::Null:
      n = 0;
      break;
    case Type::String:
      n = v.as_string().size();
      break;
    case Type::Bytes:
      n = v.as_bytes().data.size();
      break;
    case Type::List:
      n = v.as_list().size();
      break;
    case Type::Map:
      n = v.as_map().size();
      break;
    default:
      throw EvalError(needs("len", "a string, list or map", v));
  }
  return put(c.out, Value(static_cast<double>(n)));
}

const Value& f_matches(Call& c) {
  std::optional<RE2> local;
  const RE2& re = regex_for(c, 1, "matches", local);
  std::string b;
  std::string_view s = text(c.arg(0), b);
  return boolean(RE2::PartialMatch(re2::StringPiece(s.data(), s.size()), re));
}

const Value& f_regex_replace(Call& c) {
  std::optional<RE2> local;
  const RE2& re = regex_for(c, 1, "regexReplace", local);
  std::string b1, b2, err;
  std::string s(text(c.arg(0), b1));
  std::string_view rw = text(c.arg(2), b2);
  re2::StringPiece rewrite(rw.data(), rw.size());
  if (!re.CheckRewriteString(rewrite, &err))
    throw EvalError("regexReplace(): invalid replacement: " + err);
  RE2::GlobalReplace(&s, re, rewrite);
  return put(c.out, Value(std::move(s)));
}

const Value& f_replace(Call& c) {
  std::string b1, b2, b3;
  std::string_view s = text(c.arg(0), b1), from = text(c.arg(1), b2), to = text(c.arg(2), b3);
  if (from.empty()) return put(c.out, Value(std::string(s)));
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    size_t at = s.find(from, i);
    if (at == std::string_view::npos) break;
    out.append(s.substr(i, at - i));
    out.append(to);
    i = at + from.size();
  }
  out.append(s.substr(i));
  return put(c.out, Value(std::move(out)));
}

const Value& f_split(Call& c) {
  std::string b1, b2;
  std::string_view s = text(c.arg(0), b1), sep = text(c.arg(1), b2);
  List parts;
  if (s.empty()) return put(c.out, Value(std::move(parts)));
  if (sep.empty()) {  // one part per (UTF-8) character
    for (size_t i = 0; i < s.size();) {
      size_t n = std::min(utf8_length(static_cast<unsigned char>(s[i])), s.size() - i);
      parts.emplace_back(std::string(s.substr(i, n)));
      i += n;
    }
    return put(c.out, Value(std::move(parts)));
  }
  size_t i = 0;
  while (true) {
    size_t at = s.find(sep, i);
    if (at == std::string_view::npos) break;
    parts.emplace_back(std::string(s.substr(i, at - i)));
    i = at + sep.size();
  }
  parts.emplace_back(std::string(s.substr(i)));
  return put(c.out, Value(std::move(parts)));
}

const Value& f_join(Call& c) {
  const Value& l = c.arg(0);
  if (l.is_null()) return put(c.out, Value(std::string()));
  if (!l.is_list()) throw EvalError(needs("join", "a list", l));
  std::string b;
  std::string_view sep = text(c.arg(1), b);
  std::string out;
  bool first = true;
  for (const Value& e : l.as_list()) {
    if (!first) out.append(sep);
    first = false;
    e.append_text(out);
  }
  return put(c.out, Value(std::move(out)));
}

const Value& f_number(Call& c) {
  if (c.arg(0).is_number()) return c.arg(0);
  bool ok = false;
  double d = c.arg(0).to_number(&ok);
  if (!ok) return kNullValue;
  return put(c.out, Value(d));
}

const Value& f_string(Call& c) {
  if (c.arg(0).is_string()) return c.arg(0);
  return put(c.out, Value(c.arg(0).to_text()));
}

const Value& f_json(Call& c) { return put(c.out, Value(to_json(c.arg(0)))); }

const Value& f_parse_json(Call& c) {
  const Value& v = c.arg(0);
  if (v.is_null()) return kNullValue;
  if (!v.is_string() && !v.is_bytes()) throw EvalError(needs("parseJson", "a string", v));
  std::string err;
  Value parsed = json_parse(v.is_string() ? v.as_string() : v.as_bytes().data, &err);
  if (!err.empty()) throw EvalError("parseJson(): " + err);
  return put(c.out, std::move(parsed));
}

const Value& f_now(Call& c) {
  int64_t ms = 0;
  if (c.ctx.services.clock) {
    ms = c.ctx.services.clock->now_ms();
  } else {
    using namespace std::chrono;
    ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  return put(c.out, Value(ms));
}

const Value& f_substr(Call& c) {
  std::string b;
  std::string_view s = text(c.arg(0), b);
  auto size = static_cast<double>(s.size());
  double start = std::trunc(number_arg(c, 1, "substr"));
  if (start < 0) start = std::max(0.0, size + start);
  start = std::min(start, size);
  double len = c.n > 2 ? std::trunc(number_arg(c, 2, "substr")) : size;
  len = std::clamp(len, 0.0, size - start);
  return put(c.out,
             Value(std::string(s.substr(static_cast<size_t>(start), static_cast<size_t>(len)))));
}

const Value& f_index_of(Call& c) {
  const Value& h = c.arg(0);
  double at = -1;
  if (h.is_list()) {
    const List& l = h.as_list();
    for (size_t i = 0; i < l.size(); ++i) {
      if (l[i].equals(c.arg(1))) {
        at = static_cast<double>(i);
        break;
      }
    }
  } else if (!h.is_null()) {
    std::string b1, b2;
    size_t pos = text(h, b1).find(text(c.arg(1), b2));
    if (pos != std::string_view::npos) at = static_cast<double>(pos);
  }
  return put(c.out, Value(at));
}

const Value& f_default(Call& c) {
  const Value& v = c.arg(0);
  if (v.is_null() || (v.is_string() && v.as_string().empty())) return c.arg(1);
  return v;
}

const Value& keys_or_values(Call& c, bool keys) {
  const Value& m = c.arg(0);
  List out;
  if (m.is_null()) return put(c.out, Value(std::move(out)));
  if (!m.is_map()) throw EvalError(needs(keys ? "keys" : "values", "a map", m));
  out.reserve(m.as_map().size());
  for (const auto& [k, v] : m.as_map()) out.push_back(keys ? Value(k) : v);
  return put(c.out, Value(std::move(out)));
}
const Value& f_keys(Call& c) { return keys_or_values(c, true); }
const Value& f_values(Call& c) { return keys_or_values(c, false); }

const Value& f_round(Call& c) {
  double x = number_arg(c, 0, "round");
  double digits = c.n > 1 ? std::clamp(std::trunc(number_arg(c, 1, "round")), -15.0, 15.0) : 0;
  if (digits == 0) return put(c.out, Value(std::round(x)));
  double p = std::pow(10.0, digits);
  double scaled = x * p;
  return put(c.out, Value(std::isfinite(scaled) ? std::round(scaled) / p : x));
}
const Value& f_floor(Call& c) { return put(c.out, Value(std::floor(number_arg(c, 0, "floor")))); }
const Value& f_ceil(Call& c) { return put(c.out, Value(std::ceil(number_arg(c, 0, "ceil")))); }
const Value& f_abs(Call& c) { return put(c.out, Value(std::fabs(number_arg(c, 0, "abs")))); }

const Value& min_max(Call& c, bool want_min) {
  bool ok = false;
  int order = c.arg(0).compare(c.arg(1), &ok);
  if (!ok)
    throw EvalError(std::string(want_min ? "min" : "max") + "() cannot compare " +
                    type_name(c.arg(0).type()) + " and " + type_name(c.arg(1).type()));
  bool first = want_min ? order <= 0 : order >= 0;
  return first ? c.arg(0) : c.arg(1);
}
const Value& f_min(Call& c) { return min_max(c, true); }
const Value& f_max(Call& c) { return min_max(c, false); }

const Value& f_url_encode(Call& c) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string b;
  std::string_view s = text(c.arg(0), b);
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '_' || u == '.' || u == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return put(c.out, Value(std::move(out)));
}

const Value& f_url_decode(Call& c) {
  std::string b;
  std::string_view s = text(c.arg(0), b);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];  // a '%' without two hex digits stays as written
    }
  }
  return put(c.out, Value(std::move(out)));
}

const Value& f_base64_encode(Call& c) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b;
  std::string_view s = text(c.arg(0), b);
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    uint32_t v = (static_cast<unsigned char>(s[i]) << 16) |
                 (static_cast<unsigned char>(s[i + 1]) << 8) | static_cast<unsigned char>(s[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < s.size()) {
    uint32_t v = static_cast<unsigned char>(s[i]) << 16;
    if (i + 1 < s.size()) v |= static_cast<unsigned char>(s[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < s.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return put(c.out, Value(std::move(out)));
}

int base64_value(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+' || ch == '-') return 62;
  if (ch == '/' || ch == '_') return 63;
  return -1;
}

// Accepts the standard and the URL-safe alphabets, with or without padding.
const Value& f_base64_decode(Call& c) {
  std::string b;
  std::string_view s = text(c.arg(0), b);
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  if (s.size() % 4 == 1) throw EvalError("base64Decode(): the input is not valid base64");
  std::string out;
  out.reserve(s.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : s) {
    int v = base64_value(ch);
    if (v < 0) throw EvalError("base64Decode(): the input is not valid base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return put(c.out, Value(std::move(out)));
}

const Value& f_is_null(Call& c) { return boolean(c.arg(0).is_null()); }

const Value& f_type(Call& c) { return put(c.out, Value(type_name(c.arg(0).type()))); }

// Sorted by name.
const Function kFunctions[] = {
    {"abs", 1, 1, true, f_abs},
    {"base64Decode", 1, 1, true, f_base64_decode},
    {"base64Encode", 1, 1, true, f_base64_encode},
    {"ceil", 1, 1, true, f_ceil},
    {"contains", 2, 2, true, f_contains},
    {"default", 2, 2, true, f_default},
    {"endsWith", 2, 2, true, f_ends_with},
    {"floor", 1, 1, true, f_floor},
    {"indexOf", 2, 2, true, f_index_of},
    {"isNull", 1, 1, true, f_is_null},
    {"join", 2, 2, true, f_join},
    {"json", 1, 1, true, f_json},
    {"keys", 1, 1, true, f_keys},
    {"len", 1, 1, true, f_len},
    {"lower", 1, 1, true, f_lower},
    {"matches", 2, 2, true, f_matches, 1},
    {"max", 2, 2, true, f_max},
    {"min", 2, 2, true, f_min},
    {"now", 0, 0, false, f_now},
    {"number", 1, 1, true, f_number},
    {"parseJson", 1, 1, true, f_parse_json},
    {"regexReplace", 3, 3, true, f_regex_replace, 1, 2},
    {"replace", 3, 3, true, f_replace},
    {"round", 1, 2, true, f_round},
    {"split", 2, 2, true, f_split},
    {"startsWith", 2, 2, true, f_starts_with},
    {"string", 1, 1, true, f_string},
    {"substr", 2, 3, true, f_substr},
    {"trim", 1, 1, true, f_trim},
    {"type", 1, 1, true, f_type},
    {"upper", 1, 1, true, f_upper},
    {"urlDecode", 1, 1, true, f_url_decode},
    {"urlEncode", 1, 1, true, f_url_encode},
    {"values", 1, 1, true, f_values},
};

}  // namespace

const Function* find(std::string_view name) {
  for (const Function& f : kFunctions)
    if (name == f.name) return &f;
  return nullptr;
}

std::string arity_message(const Function& f, size_t got) {
  std::string m = std::string(f.name) + "() takes ";
  if (f.max_args == 0) {
    m += "no arguments";
  } else if (f.min_args == f.max_args) {
    m += std::to_string(f.min_args) + (f.min_args == 1 ? " argument" : " arguments");
  } else if (f.max_args == f.min_args + 1) {
    m += std::to_string(f.min_args) + " or " + std::to_string(f.max_args) + " arguments";
  } else {
    m += std::to_string(f.min_args) + " to " + std::to_string(f.max_args) + " arguments";
  }
  return m + ", got " + std::to_string(got);
}

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const Function& f : kFunctions) out.emplace_back(f.name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace cap::detail::fn

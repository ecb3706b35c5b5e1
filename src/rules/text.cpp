// The "Variables and text" group: rules that set, remove, compare and reshape variables
// (DESIGN §4).
//
// Constant variable names become slots and constant patterns become compiled RE2 objects
// when the configuration loads; execute evaluates parameters and does the text work only.
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "rules/groups.h"

namespace cap::rules {
namespace {

ParamSpec param(std::string name, ParamType type, bool required, Value def, std::string doc,
                std::vector<std::string> choices = {}) {
  ParamSpec p;
  p.name = std::move(name);
  p.type = type;
  p.required = required;
  p.default_value = std::move(def);
  p.doc = std::move(doc);
  p.choices = std::move(choices);
  return p;
}

/// The text of `v` without a copy when it already is a string; otherwise rendered into `buf`.
std::string_view text_of(const Value& v, std::string& buf) {
  if (v.is_string()) return v.as_string();
  buf.clear();
  v.append_text(buf);
  return buf;
}

/// Evaluates a parameter to text, without a copy when it yields a string.
std::string_view eval_text(const Param& p, ExecContext& ctx, Value& scratch, std::string& buf) {
  return text_of(p.eval(ctx, scratch), buf);
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// Splits on runs of white space (and commas, which separate nothing in a given-name list).
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (is_space(s[i]) || s[i] == ',')) ++i;
    size_t start = i;
    while (i < s.size() && !is_space(s[i]) && s[i] != ',') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string join(const std::vector<std::string_view>& parts, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (!out.empty()) out += ' ';
    out += parts[i];
  }
  return out;
}

/// A variable named by a String parameter: a slot when the name is constant, else the name
/// is rendered per request.
class VariableName {
 public:
  VariableName() = default;
  VariableName(const Param& p, CompileContext& cc) : param_(p) {
    if (p.is_constant()) {
      slot_ = static_cast<int64_t>(cc.env().symbols.intern(p.constant_value().to_text()));
    }
  }
  /// Reports a constant empty name; returns false then.
  static bool check(const Param& p, std::string_view param_name, CompileContext& cc) {
    if (p.present() && p.is_constant() && p.constant_value().to_text().empty()) {
      cc.error(param_name, "must name a variable, not be empty");
      return false;
    }
    return p.present();
  }
  template <typename F>
  void with(ExecContext& ctx, F&& f) const {
    if (slot_ >= 0) return f(static_cast<uint32_t>(slot_));
    std::string name = param_.text(ctx);
    if (name.empty()) throw EvalError("parameter 'name' evaluated to an empty variable name");
    f(std::string_view(name));
  }

 private:
  Param param_;
  int64_t slot_ = -1;
};

// ------------------------------------------------------------------------------ SetVariable

class SetVariable final : public Rule {
 public:
  SetVariable(VariableName name, const Param& value) : name_(std::move(name)), value_(value) {}
  int execute(ExecContext& ctx) const override {
    Value v = value_.value(ctx);
    name_.with(ctx, [&](auto key) { ctx.vars.set(key, std::move(v)); });
    return 0;
  }

 private:
  VariableName name_;
  Param value_;
};

// --------------------------------------------------------------------------- DeleteVariable

class DeleteVariable final : public Rule {
 public:
  explicit DeleteVariable(VariableName name) : name_(std::move(name)) {}
  int execute(ExecContext& ctx) const override {
    name_.with(ctx, [&](auto key) { ctx.vars.erase(key); });
    return 0;
  }

 private:
  VariableName name_;
};

// ----------------------------------------------------------------------------- NameSplitter

class NameSplitter final : public Rule {
 public:
  NameSplitter(const Param& input, uint32_t first, uint32_t middle, uint32_t last)
      : input_(input), first_(first), middle_(middle), last_(last) {}
  int execute(ExecContext& ctx) const override {
    Value scratch;
    std::string buf;
    std::string_view full = trim(eval_text(input_, ctx, scratch, buf));
    std::string first, middle, last;
    if (auto comma = full.find(','); comma != std::string_view::npos) {
      // "Lovelace, Ada King": family name first.
      last = std::string(trim(full.substr(0, comma)));
      auto given = words(full.substr(comma + 1));
      if (!given.empty()) first = std::string(given[0]);
      if (given.size() > 1) middle = join(given, 1, given.size());
    } else {
      auto parts = words(full);
      if (!parts.empty()) first = std::string(parts[0]);
      if (parts.size() > 1) last = std::string(parts.back());
      if (parts.size() > 2) middle = join(parts, 1, parts.size() - 1);
    }
    if (first.empty() && last.empty()) return 1;
    ctx.vars.set(first_, Value(std::move(first)));
    ctx.vars.set(middle_, Value(std::move(middle)));
    ctx.vars.set(last_, Value(std::move(last)));
    return 0;
  }

 private:
  Param input_;
  uint32_t first_, middle_, last_;
};

// ---------------------------------------------------------------------------- ValueComparer

enum class CompareMode { Auto, Number, Text };

bool parse_compare_mode(std::string_view s, CompareMode* out) {
  static constexpr std::pair<std::string_view, CompareMode> kModes[] = {
      {"auto", CompareMode::Auto}, {"number", CompareMode::Number}, {"text", CompareMode::Text}};
  for (auto& [name, mode] : kModes) {
    if (s == name) {
      *out = mode;
      return true;
    }
  }
  return false;
}

class ValueComparer final : public Rule {
 public:
  enum Chain { kAbove = 0, kEqual = 1, kBelow = 2, kContains = 3 };
  ValueComparer(const Param& value, const Param& compare_to, const Param& mode, bool mode_constant,
                CompareMode constant_mode)
      : value_(value),
        compare_to_(compare_to),
        mode_(mode),
        mode_constant_(mode_constant),
        constant_mode_(constant_mode) {}

  int execute(ExecContext& ctx) const override {
    CompareMode mode = constant_mode_;
    if (!mode_constant_) {
      std::string m = mode_.text(ctx);
      if (!parse_compare_mode(m, &mode))
        throw EvalError("parameter 'mode' must be auto, number or text, got '" + m + "'");
    }
    Value sa, sb;
    const Value& a = value_.eval(ctx, sa);
    const Value& b = compare_to_.eval(ctx, sb);
    double x = 0, y = 0;
    if (mode == CompareMode::Number) {
      if (!numeric(a, &x)) throw not_a_number("value", a);
      if (!numeric(b, &y)) throw not_a_number("compare_to", b);
      return order(x, y);
    }
    if (mode == CompareMode::Auto && numeric(a, &x) && numeric(b, &y)) return order(x, y);
    std::string ba, bb;
    std::string_view ta = text_of(a, ba), tb = text_of(b, bb);
    if (ta == tb) return kEqual;
    if (!tb.empty() && ta.find(tb) != std::string_view::npos) return kContains;
    return ta < tb ? kBelow : kAbove;
  }

 private:
  // Numbers and numeric strings read as numbers; booleans, null and the rest do not.
  static bool numeric(const Value& v, double* out) {
    if (!v.is_number() && !v.is_string()) return false;
    bool ok = false;
    *out = v.to_number(&ok);
    return ok && !std::isnan(*out);
  }
  static int order(double x, double y) { return x == y ? kEqual : (x > y ? kAbove : kBelow); }
  static EvalError not_a_number(const char* which, const Value& v) {
    return EvalError(std::string("parameter '") + which +
                     "' must be a number in mode number, got " +
                     (v.is_null() ? std::string("null") : "'" + v.to_text() + "'"));
  }
  Param value_, compare_to_, mode_;
  bool mode_constant_;
  CompareMode constant_mode_;
};

// ----------------------------------------------------------------------------- RegexExtract

/// Compiles a constant pattern parameter; reports RE2's message and returns null when it
/// does not compile.
std::unique_ptr<const RE2> compile_pattern(const Param& p, std::string_view param_name,
                                           CompileContext& cc) {
  if (!p.is_constant()) {
    cc.error(param_name, "must be a constant pattern: templates (${...}) are not allowed here");
    return nullptr;
  }
  std::string pattern = p.constant_value().to_text();
  if (pattern.empty()) {
    cc.error(param_name, "must not be empty");
    return nullptr;
  }
  auto re = std::make_unique<const RE2>(pattern, RE2::Quiet);
  if (!re->ok()) {
    cc.error(param_name, "invalid regular expression '" + pattern + "': " + re->error());
    return nullptr;
  }
  return re;
}

class RegexExtract final : public Rule {
 public:
  RegexExtract(const Param& input, std::unique_ptr<const RE2> re, uint32_t output,
               std::optional<uint32_t> groups)
      : input_(input),
        re_(std::move(re)),
        group_count_(re_->NumberOfCapturingGroups()),
        output_(output),
        groups_(groups) {}

  int execute(ExecContext& ctx) const override {
    Value scratch;
    std::string buf;
    std::string_view text = eval_text(input_, ctx, scratch, buf);
    // Most patterns have a few groups: keep their matches on the stack.
    constexpr int kInline = 8;
    re2::StringPiece inline_subs[kInline];
    std::vector<re2::StringPiece> heap_subs;
    int n = group_count_ + 1;
    re2::StringPiece* subs = inline_subs;
    if (n > kInline) {
      heap_subs.resize(n);
      subs = heap_subs.data();
    }
    if (!re_->Match(re2::StringPiece(text.data(), text.size()), 0, text.size(), RE2::UNANCHORED,
                    subs, n))
      return 1;
    const re2::StringPiece& main = group_count_ > 0 ? subs[1] : subs[0];
    if (groups_) {
      List all;
      all.reserve(group_count_);
      for (int i = 1; i < n; ++i)
        all.emplace_back(std::string_view(subs[i].data(), subs[i].size()));
      ctx.vars.set(*groups_, Value(std::move(all)));
    }
    ctx.vars.set(output_, Value(std::string_view(main.data(), main.size())));
    return 0;
  }

 private:
  Param input_;
  std::unique_ptr<const RE2> re_;
  int group_count_;
  uint32_t output_;
  std::optional<uint32_t> groups_;
};

// ---------------------------------------------------------------------------- StringReplace

class StringReplace final : public Rule {
 public:
  StringReplace(const Param& input, const Param& search, const Param& replacement,
                std::unique_ptr<const RE2> re, uint32_t output)
      : input_(input),
        search_(search),
        replacement_(replacement),
        re_(std::move(re)),
        output_(output) {}

  int execute(ExecContext& ctx) const override {
    std::string text = input_.text(ctx);
    Value rs;
    std::string rbuf;
    std::string_view replacement = eval_text(replacement_, ctx, rs, rbuf);
    if (re_) {
      re2::StringPiece rewrite(replacement.data(), replacement.size());
      if (!replacement_.is_constant()) {
        std::string why;
        if (!re_->CheckRewriteString(rewrite, &why))
          throw EvalError("parameter 'replacement' does not fit the pattern: " + why);
      }
      RE2::GlobalReplace(&text, *re_, rewrite);
    } else {
      Value ss;
      std::string sbuf;
      std::string_view search = eval_text(search_, ctx, ss, sbuf);
      if (!search.empty() && text.find(search) != std::string::npos) {
        std::string out;
        out.reserve(text.size());
        size_t pos = 0;
        for (size_t hit; (hit = text.find(search, pos)) != std::string::npos;
             pos = hit + search.size()) {
          out.append(text, pos, hit - pos);
          out.append(replacement);
        }
        out.append(text, pos, std::string::npos);
        text = std::move(out);
      }
    }
    ctx.vars.set(output_, Value(std::move(text)));
    return 0;
  }

 private:
  Param input_, search_, replacement_;
  std::unique_ptr<const RE2> re_;  // set in regex mode
  uint32_t output_;
};

// ---------------------------------------------------------------------------- AttributeLister

enum class ListFormat { Map, Text, Json };

bool parse_list_format(std::string_view s, ListFormat* out) {
  static constexpr std::pair<std::string_view, ListFormat> kFormats[] = {
      {"map", ListFormat::Map}, {"text", ListFormat::Text}, {"json", ListFormat::Json}};
  for (auto& [name, format] : kFormats) {
    if (s == name) {
      *out = format;
      return true;
    }
  }
  return false;
}

class AttributeLister final : public Rule {
 public:
  AttributeLister(uint32_t output, std::string output_name, const Param& prefix,
                  const Param& format, bool format_constant, ListFormat constant_format)
      : output_(output),
        output_name_(std::move(output_name)),
        prefix_(prefix),
        format_(format),
        format_constant_(format_constant),
        constant_format_(constant_format) {}

  int execute(ExecContext& ctx) const override {
    ListFormat format = constant_format_;
    if (!format_constant_) {
      std::string f = format_.text(ctx);
      if (!parse_list_format(f, &format))
        throw EvalError("parameter 'format' must be map, text or json, got '" + f + "'");
    }
    Value ps;
    std::string pbuf;
    std::string_view prefix = eval_text(prefix_, ctx, ps, pbuf);
    std::vector<std::pair<std::string, Value>> found;
    ctx.vars.for_each(
        [&](std::string_view name) {
          return name.substr(0, prefix.size()) == prefix && name != output_name_;
        },
        [&](std::string_view name, const Value& v) { found.emplace_back(std::string(name), v); });
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    if (format == ListFormat::Text) {
      std::string out;
      for (auto& [name, v] : found) {
        if (!out.empty()) out += '\n';
        out += name;
        out += '=';
        v.append_text(out);
      }
      ctx.vars.set(output_, Value(std::move(out)));
      return 0;
    }
    Map m;
    m.reserve(found.size());
    for (auto& [name, v] : found) m.append(std::move(name), std::move(v));
    Value result(std::move(m));
    ctx.vars.set(output_, format == ListFormat::Json ? Value(to_json(result)) : std::move(result));
    return 0;
  }

 private:
  uint32_t output_;
  std::string output_name_;
  Param prefix_, format_;
  bool format_constant_;
  ListFormat constant_format_;
};

}  // namespace

void register_text(RuleRegistry& r) {
  const std::string group = "Variables and text";

  r.add(RuleSpec{"SetVariable",
                 group,
                 "Sets the variable `name` to `value` and goes on to `next`. A value that is "
                 "one `${expr}` keeps its type (`${COUNT + 1}` stays a number, `${ITEMS}` a "
                 "list); other strings are templates rendered as text; JSON numbers, booleans, "
                 "lists and objects are taken as they are. Without a value the variable is set "
                 "to null. The name may itself be a template such as `USER_${id}`.",
                 {param("name", ParamType::String, true, Value(),
                        "The variable to set: `MSG`, or a template like `USER_${id}`."),
                  param("value", ParamType::Any, false, Value(),
                        "The value: `${GREETING}, ${name}!`, `${COUNT}`, 42, [1, 2].")},
                 {"next"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Param& name = cc.params()["name"];
          if (!VariableName::check(name, "name", cc)) return nullptr;
          return std::make_unique<SetVariable>(VariableName(name, cc), cc.params()["value"]);
        });

  r.add(RuleSpec{"DeleteVariable",
                 group,
                 "Removes the variable `name`, so that it reads as null and no longer appears "
                 "in lists of variables, then goes on to `next`. Removing a variable that is "
                 "not set does nothing.",
                 {param("name", ParamType::String, true, Value(),
                        "The variable to remove: `MSG`, or a template like `USER_${id}`.")},
                 {"next"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Param& name = cc.params()["name"];
          if (!VariableName::check(name, "name", cc)) return nullptr;
          return std::make_unique<DeleteVariable>(VariableName(name, cc));
        });

  r.add(
      RuleSpec{"NameSplitter",
               group,
               "Splits a person's full name into first, middle and last name. "
               "\"Ada King Lovelace\" gives Ada / King / Lovelace; \"Lovelace, Ada King\" (family "
               "name first, before a comma) gives the same; a single word is a first name. "
               "All three variables are set (missing parts as empty text) and `ok` runs; a "
               "blank input sets nothing and takes `empty`.",
               {param("input", ParamType::String, true, Value(), "The full name: `${FULL_NAME}`."),
                param("first", ParamType::Variable, false, Value("FIRST_NAME"),
                      "The variable that receives the first name."),
                param("middle", ParamType::Variable, false, Value("MIDDLE_NAME"),
                      "The variable that receives the middle names, space-separated."),
                param("last", ParamType::Variable, false, Value("LAST_NAME"),
                      "The variable that receives the last (family) name.")},
               {"ok", "empty"}},
      [](CompileContext& cc) -> std::unique_ptr<Rule> {
        const Params& p = cc.params();
        return std::make_unique<NameSplitter>(p["input"], p["first"].slot(), p["middle"].slot(),
                                              p["last"].slot());
      });

  r.add(RuleSpec{"ValueComparer",
                 group,
                 "Compares `value` with `compare_to` and takes `above`, `equal` or `below`. In "
                 "mode `auto` two numbers (or numeric texts such as \"10\") compare as numbers "
                 "and anything else as text; `number` insists on numbers (anything else is an "
                 "error); `text` always compares text. Text that is not equal but contains "
                 "`compare_to` takes `contains`; otherwise the order is lexicographic (byte "
                 "order, so \"Zoo\" is below \"apple\").",
                 {param("value", ParamType::Any, true, Value(), "The value to test: `${AGE}`."),
                  param("compare_to", ParamType::Any, true, Value(),
                        "What to compare it with: 18, `${LIMIT}`, `admin`."),
                  param("mode", ParamType::String, false, Value("auto"),
                        "How to compare: auto, number or text.", {"auto", "number", "text"})},
                 {"above", "equal", "below", "contains"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Params& p = cc.params();
          const Param& mode = p["mode"];
          CompareMode constant_mode = CompareMode::Auto;
          if (mode.is_constant() &&
              !parse_compare_mode(mode.constant_value().to_text(), &constant_mode)) {
            cc.error("mode",
                     "must be auto, number or text, got '" + mode.constant_value().to_text() + "'");
            return nullptr;
          }
          return std::make_unique<ValueComparer>(p["value"], p["compare_to"], mode,
                                                 mode.is_constant(), constant_mode);
        });

  r.add(RuleSpec{"RegexExtract",
                 group,
                 "Searches `input` for the regular expression `pattern` (RE2 syntax, matched "
                 "anywhere in the text) and takes `found` with `output` set to the first capture "
                 "group, or to the whole match when the pattern has no group; `groups`, when "
                 "given, receives the list of all capture groups (a group that took no part is "
                 "empty text). Without a match it takes `not_found` and changes no variable. "
                 "Example: pattern `order-(\\d+)` on \"see order-42\" gives \"42\".",
                 {param("input", ParamType::String, true, Value(), "The text to search: `${URI}`."),
                  param("pattern", ParamType::String, true, Value(),
                        "The RE2 regular expression, a constant: `(\\d+)-(\\d+)`."),
                  param("output", ParamType::Variable, false, Value("MATCH"),
                        "The variable that receives the first group or the whole match."),
                  param("groups", ParamType::Variable, false, Value(),
                        "The variable that receives the list of all capture groups.")},
                 {"found", "not_found"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Params& p = cc.params();
          auto re = compile_pattern(p["pattern"], "pattern", cc);
          if (!re) return nullptr;
          std::optional<uint32_t> groups;
          if (p["groups"].present()) groups = p["groups"].slot();
          return std::make_unique<RegexExtract>(p["input"], std::move(re), p["output"].slot(),
                                                groups);
        });

  r.add(
      RuleSpec{"StringReplace",
               group,
               "Replaces every occurrence of `search` in `input` with `replacement` and "
               "stores the result in `output`, then goes on to `next`. With `regex` true, "
               "`search` is a constant RE2 regular expression and `\\1`...`\\9` in the "
               "replacement insert its capture groups (`\\0` the whole match). An empty "
               "search text changes nothing.",
               {param("input", ParamType::String, true, Value(), "The text to change: `${PATH}`."),
                param("search", ParamType::String, true, Value(),
                      "The text (or, with regex, the constant pattern) to look for."),
                param("replacement", ParamType::String, false, Value(""),
                      "What each occurrence becomes."),
                param("regex", ParamType::Boolean, false, Value(false),
                      "Treat search as a regular expression (a constant true or false)."),
                param("output", ParamType::Variable, true, Value(),
                      "The variable that receives the result.")},
               {"next"}},
      [](CompileContext& cc) -> std::unique_ptr<Rule> {
        const Params& p = cc.params();
        const Param& regex = p["regex"];
        bool use_regex = false;
        if (regex.present()) {
          const Value& v = regex.constant_value();
          if (!regex.is_constant() ||
              !(v.is_bool() ||
                (v.is_string() && (v.as_string() == "true" || v.as_string() == "false")))) {
            cc.error("regex", "must be a constant true or false");
            return nullptr;
          }
          use_regex = v.is_bool() ? v.as_bool() : v.as_string() == "true";
        }
        const Param& search = p["search"];
        const Param& replacement = p["replacement"];
        std::unique_ptr<const RE2> re;
        if (use_regex) {
          re = compile_pattern(search, "search", cc);
          if (!re) return nullptr;
          if (replacement.is_constant()) {
            std::string why, rewrite = replacement.constant_value().to_text();
            if (!re->CheckRewriteString(rewrite, &why)) {
              cc.error("replacement", "does not fit the pattern: " + why);
              return nullptr;
            }
          }
        } else if (search.is_constant() && search.constant_value().to_text().empty()) {
          cc.error("search", "must not be empty");
          return nullptr;
        }
        return std::make_unique<StringReplace>(p["input"], search, replacement, std::move(re),
                                               p["output"].slot());
      });

  r.add(RuleSpec{"AttributeLister",
                 group,
                 "Collects every variable that is set (optionally only those whose names start "
                 "with `prefix`), sorted by name, into `output`, then goes on to `next`. Format "
                 "`map` gives a map of name to value, `text` gives `NAME=value` lines, `json` "
                 "gives a JSON object as text. The output variable itself is left out. Useful "
                 "for debugging and for passing a group of variables on.",
                 {param("output", ParamType::Variable, false, Value("ATTRIBUTES"),
                        "The variable that receives the list."),
                  param("prefix", ParamType::String, false, Value(""),
                        "Only variables whose names start with this: `USER_`."),
                  param("format", ParamType::String, false, Value("map"), "map, text or json.",
                        {"map", "text", "json"})},
                 {"next"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Params& p = cc.params();
          const Param& format = p["format"];
          ListFormat constant_format = ListFormat::Map;
          if (format.is_constant() &&
              !parse_list_format(format.constant_value().to_text(), &constant_format)) {
            cc.error("format",
                     "must be map, text or json, got '" + format.constant_value().to_text() + "'");
            return nullptr;
          }
          return std::make_unique<AttributeLister>(p["output"].slot(), p["output"].name(),
                                                   p["prefix"], format, format.is_constant(),
                                                   constant_format);
        });
}

}  // namespace cap::rules

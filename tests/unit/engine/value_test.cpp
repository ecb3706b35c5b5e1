// Values: Map, type names, truthiness, text and number views, equality, ordering, JSON.
#include "cap/value.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace cap {
namespace {

Value parse_ok(std::string_view text, const JsonLimits& limits = {}) {
  std::string error = "not cleared";
  Value v = json_parse(text, &error, limits);
  EXPECT_EQ(error, "") << "parsing " << text;
  return v;
}

std::string parse_error(std::string_view text, const JsonLimits& limits = {}) {
  std::string error;
  Value v = json_parse(text, &error, limits);
  EXPECT_TRUE(v.is_null()) << "a failed parse yields null";
  return error;
}

// --- Map -------------------------------------------------------------------------------

TEST(Map, SetFindReplaceEraseKeepOrder) {
  Map m;
  EXPECT_TRUE(m.empty());
  m.set("b", Value(1));
  m.set("a", Value(2));
  m.set("b", Value(3));  // replaces in place
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.find("b")->as_number(), 3);
  EXPECT_EQ(m.find("a")->as_number(), 2);
  EXPECT_EQ(m.find("c"), nullptr);
  EXPECT_EQ(m.begin()->first, "b") << "the replaced key keeps its first position";
  EXPECT_TRUE(m.erase("b"));
  EXPECT_FALSE(m.erase("b"));
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.begin()->first, "a");
}

TEST(Map, MutableFindChangesTheEntry) {
  Map m;
  m.append("k", Value("x"));
  *m.find("k") = Value("y");
  EXPECT_EQ(m.find("k")->as_string(), "y");
  const Map& cm = m;
  EXPECT_EQ(cm.find("k")->as_string(), "y");
}

TEST(Map, EqualityIgnoresOrderButNotContent) {
  Map a, b, c;
  a.set("x", Value(1));
  a.set("y", Value("two"));
  b.set("y", Value("two"));
  b.set("x", Value(1));
  c.set("x", Value(1));
  c.set("y", Value("three"));
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
  Map d;
  d.set("x", Value(1));
  EXPECT_FALSE(a == d);
}

// --- type names and truthiness ----------------------------------------------------------

TEST(Value, TypeNames) {
  EXPECT_STREQ(type_name(Type::Null), "null");
  EXPECT_STREQ(type_name(Type::Boolean), "boolean");
  EXPECT_STREQ(type_name(Type::Number), "number");
  EXPECT_STREQ(type_name(Type::String), "string");
  EXPECT_STREQ(type_name(Type::List), "list");
  EXPECT_STREQ(type_name(Type::Map), "map");
  EXPECT_STREQ(type_name(Type::Bytes), "bytes");
  EXPECT_EQ(Value().type(), Type::Null);
  EXPECT_EQ(Value(nullptr).type(), Type::Null);
  EXPECT_EQ(Value(int64_t{3}).type(), Type::Number);
  EXPECT_EQ(Value(uint64_t{3}).type(), Type::Number);
  EXPECT_EQ(Value(std::string_view("s")).type(), Type::String);
  EXPECT_EQ(Value(Bytes{"b"}).type(), Type::Bytes);
}

TEST(Value, Truthiness) {
  EXPECT_FALSE(Value().truthy());
  EXPECT_FALSE(Value(false).truthy());
  EXPECT_TRUE(Value(true).truthy());
  EXPECT_FALSE(Value(0).truthy());
  EXPECT_FALSE(Value(std::nan("")).truthy());
  EXPECT_TRUE(Value(-0.5).truthy());
  EXPECT_FALSE(Value("").truthy());
  EXPECT_TRUE(Value("0").truthy()) << "a non-empty string is true, even \"0\"";
  EXPECT_FALSE(Value(List{}).truthy());
  EXPECT_TRUE(Value(List{Value()}).truthy());
  EXPECT_FALSE(Value(Map{}).truthy());
  Map m;
  m.set("k", Value());
  EXPECT_TRUE(Value(m).truthy());
  EXPECT_FALSE(Value(Bytes{}).truthy());
  EXPECT_TRUE(Value(Bytes{std::string(1, '\0')}).truthy());
}

// --- text -------------------------------------------------------------------------------

TEST(Value, TextForms) {
  EXPECT_EQ(Value().to_text(), "") << "null renders as an empty string";
  EXPECT_EQ(Value(true).to_text(), "true");
  EXPECT_EQ(Value(false).to_text(), "false");
  EXPECT_EQ(Value(42).to_text(), "42");
  EXPECT_EQ(Value(1.5).to_text(), "1.5");
  EXPECT_EQ(Value("héllo").to_text(), "héllo");
  EXPECT_EQ(Value(List{Value(1), Value("a")}).to_text(), "[1,\"a\"]");
  Map m;
  m.set("k", Value(true));
  EXPECT_EQ(Value(m).to_text(), "{\"k\":true}");
  EXPECT_EQ(Value(Bytes{"raw\x01"}).to_text(), "raw\x01");
}

TEST(Value, AppendTextAppends) {
  std::string out = "n=";
  Value(7).append_text(out);
  Value().append_text(out);
  Value("!").append_text(out);
  EXPECT_EQ(out, "n=7!");
}

TEST(Value, NumberFormatting) {
  auto fmt = [](double d) {
    std::string s;
    append_number(s, d);
    return s;
  };
  EXPECT_EQ(fmt(0), "0");
  EXPECT_EQ(fmt(-0.0), "0");
  EXPECT_EQ(fmt(3), "3");
  EXPECT_EQ(fmt(-12), "-12");
  EXPECT_EQ(fmt(1.0), "1") << "no trailing .0";
  EXPECT_EQ(fmt(0.1 + 0.2), "0.3") << "15 significant digits";
  EXPECT_EQ(fmt(1.0 / 3), "0.333333333333333");
  EXPECT_EQ(fmt(2.5e-7), "2.5e-07");
  EXPECT_EQ(fmt(1234567890123456.0), "1234567890123456");
  EXPECT_EQ(fmt(1e20), "1e+20");
  EXPECT_EQ(fmt(std::nan("")), "NaN");
  EXPECT_EQ(fmt(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(fmt(-std::numeric_limits<double>::infinity()), "-Infinity");
}

// --- numbers ----------------------------------------------------------------------------

TEST(Value, ToNumber) {
  bool ok = false;
  EXPECT_EQ(Value(2.5).to_number(&ok), 2.5);
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value(true).to_number(&ok), 1);
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value(false).to_number(&ok), 0);
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value(" 12 ").to_number(&ok), 12) << "strings are trimmed";
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value("-1.5e3").to_number(&ok), -1500);
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value("+4").to_number(&ok), 4);
  EXPECT_TRUE(ok);
  for (const char* bad : {"", "  ", "abc", "12abc", "0x10", "inf", "nan", "1e999", "+-1", "1 2"}) {
    EXPECT_TRUE(std::isnan(Value(bad).to_number(&ok))) << bad;
    EXPECT_FALSE(ok) << bad;
  }
  EXPECT_TRUE(std::isnan(Value().to_number(&ok)));
  EXPECT_FALSE(ok);
  EXPECT_TRUE(std::isnan(Value(List{}).to_number(&ok)));
  EXPECT_FALSE(ok);
  EXPECT_TRUE(std::isnan(Value(Bytes{"1"}).to_number(&ok)));
  EXPECT_FALSE(ok);
  EXPECT_EQ(Value("3").to_number(), 3) << "ok may be omitted";
}

// --- equality and ordering --------------------------------------------------------------

TEST(Value, Equality) {
  EXPECT_TRUE(Value().equals(Value()));
  EXPECT_FALSE(Value().equals(Value("")));
  EXPECT_FALSE(Value().equals(Value(0)));
  EXPECT_FALSE(Value().equals(Value(false)));
  EXPECT_FALSE(Value("").equals(Value()));
  EXPECT_TRUE(Value(1).equals(Value(1.0)));
  EXPECT_TRUE(Value(1).equals(Value("1"))) << "a number and a numeric string compare as numbers";
  EXPECT_TRUE(Value("1.0").equals(Value(1)));
  EXPECT_TRUE(Value(" 2 ").equals(Value(2)));
  EXPECT_FALSE(Value("1").equals(Value("1.0"))) << "two strings compare as text";
  EXPECT_FALSE(Value("abc").equals(Value(0)));
  EXPECT_FALSE(Value(true).equals(Value(1))) << "booleans are not numbers";
  EXPECT_TRUE(Value(true).equals(Value(true)));
  EXPECT_FALSE(Value(std::nan("")).equals(Value(std::nan(""))));
  EXPECT_TRUE(Value(List{Value(1), Value("a")}).equals(Value(List{Value(1), Value("a")})));
  EXPECT_FALSE(Value(List{Value(1)}).equals(Value(List{Value(1), Value(2)})));
  EXPECT_FALSE(Value(List{Value(1)}).equals(Value(List{Value(2)})));
  EXPECT_TRUE(Value(Bytes{"x"}).equals(Value(Bytes{"x"})));
  EXPECT_FALSE(Value(Bytes{"x"}).equals(Value("x"))) << "bytes are distinct from text";
  Map a, b;
  a.set("k", Value(1));
  b.set("k", Value("1"));
  EXPECT_TRUE(Value(a).equals(Value(b)));
  EXPECT_TRUE(Value(a) == Value(a));
  EXPECT_FALSE(Value(a).equals(Value(List{})));
}

TEST(Value, Ordering) {
  bool ok = false;
  EXPECT_EQ(Value(1).compare(Value(2), &ok), -1);
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value(2).compare(Value(2), &ok), 0);
  EXPECT_EQ(Value(3).compare(Value(2), &ok), 1);
  EXPECT_EQ(Value("10").compare(Value(9), &ok), 1) << "numeric string and number: numerically";
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value("10").compare(Value("9"), &ok), -1) << "two strings: lexicographically";
  EXPECT_TRUE(ok);
  EXPECT_EQ(Value("abc").compare(Value("abd"), &ok), -1);
  EXPECT_EQ(Value(Bytes{"b"}).compare(Value(Bytes{"a"}), &ok), 1);
  EXPECT_TRUE(ok);
  Value(1).compare(Value(), &ok);
  EXPECT_FALSE(ok) << "null does not order";
  Value("abc").compare(Value(1), &ok);
  EXPECT_FALSE(ok);
  Value(true).compare(Value(false), &ok);
  EXPECT_FALSE(ok);
  Value(List{}).compare(Value(List{}), &ok);
  EXPECT_FALSE(ok);
  Value(std::nan("")).compare(Value(1), &ok);
  EXPECT_FALSE(ok);
}

// --- JSON out ---------------------------------------------------------------------------

TEST(Json, WritesEveryType) {
  Map m;
  m.set("n", Value());
  m.set("b", Value(false));
  m.set("x", Value(1.25));
  m.set("s", Value("hi"));
  m.set("l", Value(List{Value(1), Value(List{})}));
  m.set("m", Value(Map{}));
  m.set("y", Value(Bytes{"raw"}));
  EXPECT_EQ(to_json(Value(m)),
            R"({"n":null,"b":false,"x":1.25,"s":"hi","l":[1,[]],"m":{},"y":"raw"})");
}

TEST(Json, EscapesStrings) {
  EXPECT_EQ(to_json(Value("a\"b\\c/d")), R"("a\"b\\c/d")");
  EXPECT_EQ(to_json(Value("\n\r\t\b\f")), R"("\n\r\t\b\f")");
  EXPECT_EQ(to_json(Value(std::string("\x01\x1f", 2))), R"("\u0001\u001f")");
  EXPECT_EQ(to_json(Value(std::string(1, '\0'))), R"("\u0000")");
  EXPECT_EQ(to_json(Value("é€😀")), "\"é€😀\"") << "valid UTF-8 passes through";
  EXPECT_EQ(to_json(Value("a\xff"
                          "b")),
            R"("a\ufffdb")")
      << "invalid UTF-8 is replaced";
  EXPECT_EQ(to_json(Value("\xc3")), R"("\ufffd")") << "a truncated sequence is replaced";
  EXPECT_EQ(to_json(Value("\xed\xa0\x80")), R"("\ufffd\ufffd\ufffd")") << "no surrogates";
  EXPECT_EQ(to_json(Value(Bytes{std::string("\x80\x00z", 3)})), R"("\ufffd\u0000z")");
  Map m;
  m.set("k\"ey", Value(1));
  EXPECT_EQ(to_json(Value(m)), R"({"k\"ey":1})");
}

TEST(Json, NonFiniteNumbersAreNull) {
  EXPECT_EQ(to_json(Value(std::nan(""))), "null");
  EXPECT_EQ(to_json(Value(std::numeric_limits<double>::infinity())), "null");
  EXPECT_EQ(to_json(Value(List{Value(-std::numeric_limits<double>::infinity())})), "[null]");
  std::string out = "x";
  append_json(out, Value(1));
  EXPECT_EQ(out, "x1") << "append_json appends";
}

// --- JSON in ----------------------------------------------------------------------------

TEST(Json, ParsesEveryType) {
  Value v = parse_ok(R"( {"a": [1, -2.5, true, false, null, "x\n\u00e9"], "b": {"c": 1e3}} )");
  ASSERT_TRUE(v.is_map());
  const List& a = v.as_map().find("a")->as_list();
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a[0].as_number(), 1);
  EXPECT_EQ(a[1].as_number(), -2.5);
  EXPECT_TRUE(a[2].as_bool());
  EXPECT_FALSE(a[3].as_bool());
  EXPECT_TRUE(a[4].is_null());
  EXPECT_EQ(a[5].as_string(), "x\né");
  EXPECT_EQ(v.as_map().find("b")->as_map().find("c")->as_number(), 1000);
  EXPECT_EQ(parse_ok("12").as_number(), 12);
  EXPECT_EQ(parse_ok("\"s\"").as_string(), "s");
  EXPECT_TRUE(parse_ok("null").is_null());
  EXPECT_EQ(parse_ok("18446744073709551615").as_number(), 18446744073709551615.0)
      << "integers become doubles";
  EXPECT_EQ(parse_ok("-9223372036854775808").as_number(), -9223372036854775808.0);
}

TEST(Json, RoundTrips) {
  const char* text = R"({"k":[1,2.5,"a\"b",null,{"x":true}],"e":{}})";
  EXPECT_EQ(to_json(parse_ok(text)), text);
}

TEST(Json, KeepsKeyOrderAndLastDuplicate) {
  Value v = parse_ok(R"({"z":1,"a":2,"z":3})");
  ASSERT_EQ(v.as_map().size(), 2u);
  EXPECT_EQ(v.as_map().begin()->first, "z");
  EXPECT_EQ(v.as_map().find("z")->as_number(), 3);
  // Large objects take a different path for duplicates.
  std::string big = "{";
  for (int i = 0; i < 100; ++i) big += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  big += "\"k5\":\"again\",\"k99\":\"last\"}";
  Value b = parse_ok(big);
  ASSERT_EQ(b.as_map().size(), 100u);
  EXPECT_EQ(b.as_map().find("k5")->as_string(), "again");
  EXPECT_EQ(b.as_map().find("k99")->as_string(), "last");
  EXPECT_EQ(b.as_map().find("k50")->as_number(), 50);
}

TEST(Json, LongStringsAndKeys) {
  std::string s(100000, 'x');
  Value v = parse_ok("{\"" + s + "\":\"" + s + "y\"}");
  ASSERT_EQ(v.as_map().size(), 1u);
  EXPECT_EQ(v.as_map().begin()->first, s);
  EXPECT_EQ(v.as_map().begin()->second.as_string(), s + "y");
}

TEST(Json, DepthLimit) {
  JsonLimits limits;
  limits.max_depth = 3;
  EXPECT_TRUE(parse_ok("[[[1]]]", limits).is_list());
  EXPECT_EQ(parse_error("[[[[1]]]]", limits), "JSON is nested deeper than 3 levels");
  EXPECT_EQ(parse_error(R"({"a":{"b":{"c":{}}}})", limits), "JSON is nested deeper than 3 levels");
  std::string deep(100000, '[');
  EXPECT_EQ(parse_error(deep), "JSON is nested deeper than 64 levels") << "the default is 64";
  std::string ok_depth = std::string(64, '[') + std::string(64, ']');
  EXPECT_TRUE(parse_ok(ok_depth).is_list());
}

TEST(Json, SizeLimit) {
  JsonLimits limits;
  limits.max_bytes = 10;
  EXPECT_EQ(parse_ok("[1,2,3,45]", limits).as_list().size(), 4u);
  EXPECT_EQ(parse_error("[1,2,3,456]", limits),
            "JSON text is 11 bytes, over the limit of 10 bytes");
  JsonLimits defaults;
  EXPECT_EQ(defaults.max_bytes, 16u * 1024 * 1024);
  EXPECT_EQ(defaults.max_depth, 64u);
}

TEST(Json, MalformedInput) {
  EXPECT_EQ(parse_error(""), "invalid JSON: the text is empty");
  EXPECT_EQ(parse_error(" \n"), "invalid JSON: the text is empty");
  EXPECT_EQ(parse_error("[1] x"), "invalid JSON at byte 5: extra data");
  EXPECT_EQ(parse_error("[1,"), "invalid JSON at byte 4: incomplete JSON");
  for (const char* bad :
       {"{", "[1,]", "{\"a\"}", "{'a':1}", "tru", "nul", "01", "1.", "-", "\"unterminated", "[1 2]",
        "{\"a\":1,}", "/* c */ 1", "\"\\x\"", "\"\xff\"", "NaN", "Infinity", "\"\\ud800\""}) {
    std::string error = parse_error(bad);
    EXPECT_EQ(error.rfind("invalid JSON", 0), 0u) << bad << " gave: " << error;
  }
}

TEST(Json, NullErrorPointerIsAllowed) {
  EXPECT_TRUE(json_parse("{", nullptr).is_null());
  EXPECT_EQ(json_parse("[7]", nullptr).as_list()[0].as_number(), 7);
}

TEST(Json, ErrorIsClearedOnSuccess) {
  std::string error = "old";
  json_parse("1", &error);
  EXPECT_EQ(error, "");
}

TEST(Json, RandomGarbageNeverCrashes) {
  std::mt19937 rng(12345);
  const std::string alphabet = "{}[]\",:0123456789.-+eEtrufalsn \\u\x01\xff";
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    size_t len = rng() % 64;
    for (size_t k = 0; k < len; ++k)
      text += (i % 2) ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()];
    std::string error;
    Value v = json_parse(text, &error);
    if (!error.empty()) {
      EXPECT_TRUE(v.is_null());
    } else {
      // Whatever parsed must write back out as JSON that parses to the same value.
      std::string again;
      Value w = json_parse(to_json(v), &again);
      EXPECT_EQ(again, "") << to_json(v);
      EXPECT_TRUE(w.equals(v) || to_json(v).find("null") != std::string::npos);
    }
  }
}

}  // namespace
}  // namespace cap

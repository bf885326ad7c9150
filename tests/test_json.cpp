// The JSON reader: values, escapes, every error with its byte offset, the
// depth limit, the JSONL fast path and string quoting.
#include <gtest/gtest.h>

#include <string>

#include "trainer/base/json.h"

using namespace muonrun;
using json::Value;

namespace {

std::string parse_error(std::string_view text) {
  try {
    json::parse(text, "doc.json");
  } catch (const json::ParseError& e) {
    return e.what();
  }
  return "";
}

std::string parse_string(std::string_view literal) { return json::parse(literal, "s").string; }

}  // namespace

TEST(Json, ParsesEveryKindOfValue) {
  Value v = json::parse(
      R"( {"null": null, "t": true, "f": false, "n": -12.5e1, "s": "x",
           "a": [1, [], {}], "o": {"k": "v"}} )",
      "doc.json");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.object.size(), 7u);
  EXPECT_EQ(v.object[0].first, "null");  // members keep their order
  EXPECT_EQ(v.find("null")->kind, Value::Kind::Null);
  EXPECT_TRUE(v.find("t")->boolean);
  EXPECT_EQ(v.find("f")->kind, Value::Kind::Bool);
  EXPECT_FALSE(v.find("f")->boolean);
  EXPECT_DOUBLE_EQ(v.find("n")->number, -125.0);
  EXPECT_EQ(v.find("n")->number_text, "-12.5e1");
  EXPECT_EQ(v.find("s")->string, "x");
  const Value& a = *v.find("a");
  ASSERT_TRUE(a.is_array());
  ASSERT_EQ(a.array.size(), 3u);
  EXPECT_TRUE(a.array[1].is_array());
  EXPECT_TRUE(a.array[2].is_object());
  EXPECT_EQ(v.find("o")->find("k")->string, "v");
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(json::parse("0", "x").number, 0);
  EXPECT_EQ(json::parse("-0.0E+2", "x").number_text, "-0.0E+2");
}

TEST(Json, IntegersStayExact) {
  EXPECT_EQ(json::parse("9007199254740993", "x").as_int64(), 9007199254740993);  // 2^53 + 1
  EXPECT_EQ(json::parse("-9223372036854775808", "x").as_int64(), INT64_MIN);
  EXPECT_THROW(json::parse("9223372036854775808", "x").as_int64(), json::ParseError);
  EXPECT_THROW(json::parse("1.0", "x").as_int64(), json::ParseError);
  EXPECT_THROW(json::parse("1e3", "x").as_int64(), json::ParseError);
  EXPECT_THROW(json::parse("\"1\"", "x").as_int64(), json::ParseError);
}

TEST(Json, Escapes) {
  EXPECT_EQ(parse_string(R"("\" \\ \/ \b \f \n \r \t")"), "\" \\ / \b \f \n \r \t");
  EXPECT_EQ(parse_string(R"("\u0041\u00e9\u20AC")"), "A\xC3\xA9\xE2\x82\xAC");
  EXPECT_EQ(parse_string(R"("\u0000")"), std::string(1, '\0'));
  // A surrogate pair is one code point (U+1F600).
  EXPECT_EQ(parse_string(R"("\ud83d\ude00")"), "\xF0\x9F\x98\x80");
  // Lone surrogates become U+FFFD; what follows a lone high one is read on
  // its own, so a pair right after it survives.
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(parse_string(R"("\ud83dx")"), fffd + "x");
  EXPECT_EQ(parse_string(R"("\ude00")"), fffd);
  EXPECT_EQ(parse_string(R"("\ud83d\u0041")"), fffd + "A");
  EXPECT_EQ(parse_string(R"("\ud83d\ud83d\ude00")"), fffd + "\xF0\x9F\x98\x80");
  // Raw UTF-8 (and raw bytes JSON cannot name) pass through unchanged.
  EXPECT_EQ(parse_string("\"\xE2\x82\xAC \xFF\""), "\xE2\x82\xAC \xFF");
}

TEST(Json, EveryErrorNamesSourceOffsetAndProblem) {
  struct Case {
    std::string text;
    std::string expected;
  };
  const Case cases[] = {
      {"", "at byte 0: unexpected end of input"},
      {"   ", "at byte 3: unexpected end of input"},
      {"[1,]", "at byte 3: expected a value"},
      {"@", "at byte 0: expected a value"},
      {"[1 2]", "at byte 3: expected ']'"},
      {"[1", "at byte 2: expected ']'"},
      {R"({"a" 1})", "at byte 5: expected ':'"},
      {R"({"a":1,})", "at byte 7: expected a member name"},
      {R"({1:2})", "at byte 1: expected a member name"},
      {R"({"a":1 "b":2})", "at byte 7: expected '}'"},
      {"[1] x", "at byte 4: unexpected data after the JSON value"},
      {"01", "at byte 1: unexpected data after the JSON value"},
      {"tru", "at byte 0: unknown literal"},
      {"nul", "at byte 0: unknown literal"},
      {"-", "at byte 1: expected a digit"},
      {"1.", "at byte 2: expected a digit"},
      {"1e+", "at byte 3: expected a digit"},
      {"\"abc", "at byte 4: unterminated string"},
      {"\"a\x01\"", "at byte 2: control character in string"},
      {"\"a\nb\"", "at byte 2: control character in string"},
      {"\"\\", "at byte 2: unterminated escape"},
      {R"("\x")", "at byte 2: bad escape \\x"},
      {R"("\u12G4")", "at byte 5: bad hex digit in \\u escape"},
      {R"("\u12")", "at byte 3: short \\u escape"},
  };
  for (const Case& c : cases) {
    std::string e = parse_error(c.text);
    EXPECT_EQ(e, "doc.json: invalid JSON " + c.expected) << "input: " << c.text;
  }
}

TEST(Json, NestingIsBounded) {
  EXPECT_NO_THROW(json::parse(std::string(64, '[') + std::string(64, ']'), "x"));
  // Far deeper input must fail cleanly, not overflow the stack.
  std::string e = parse_error(std::string(1000000, '['));
  EXPECT_NE(e.find("nesting deeper than 64"), std::string::npos) << e;
  std::string objects;
  for (int i = 0; i < 1000; ++i) objects += R"({"a":)";
  e = parse_error(objects);
  EXPECT_NE(e.find("nesting deeper than 64"), std::string::npos) << e;
  std::string deep_member = R"({"x": )" + std::string(1000, '[') + "}";
  std::string out;
  EXPECT_THROW(json::extract_string_member(deep_member, "text", "x", out), json::ParseError);
}

TEST(Json, ExtractStringMember) {
  std::string out;
  EXPECT_TRUE(json::extract_string_member(
      R"( {"id": 7, "meta": {"text": 1, "l": [1, {"a": null}]}, "text": "hi\nthere"} )", "text",
      "x.jsonl:3", out));
  EXPECT_EQ(out, "hi\nthere");
  EXPECT_TRUE(
      json::extract_string_member(R"({"text": "first", "text": "second"})", "text", "x", out));
  EXPECT_EQ(out, "first");
  EXPECT_FALSE(json::extract_string_member(R"({"title": "t"})", "text", "x", out));
  EXPECT_FALSE(json::extract_string_member("{}", "text", "x", out));
  // The whole line is still checked, and errors carry the source given.
  struct Case {
    std::string text;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"text": 5})", "x.jsonl:3: invalid JSON at byte 9: member \"text\" is not a string"},
      {R"({"text": "a"} x)", "x.jsonl:3: invalid JSON at byte 14: unexpected data after"},
      {R"(["text"])", "x.jsonl:3: invalid JSON at byte 0: expected '{'"},
      {R"({"a": [1,}, "text": "b"})", "x.jsonl:3: invalid JSON at byte 9: expected a value"},
      {R"({"text": "a")", "x.jsonl:3: invalid JSON at byte 12: expected '}'"},
  };
  for (const Case& c : cases) {
    try {
      json::extract_string_member(c.text, "text", "x.jsonl:3", out);
      ADD_FAILURE() << "no error for " << c.text;
    } catch (const json::ParseError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(c.expected, 0), 0u) << e.what();
    }
  }
}

TEST(Json, QuoteEscapesControlsAndReplacesInvalidUtf8) {
  EXPECT_EQ(json::quote("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json::quote("\n\r\t"), R"("\n\r\t")");
  EXPECT_EQ(json::quote(std::string("\x01\x1f\0", 3)), R"("\u0001\u001f\u0000")");
  EXPECT_EQ(json::quote("\x7f"), "\"\x7f\"");
  EXPECT_EQ(json::quote("\xC3\xA9\xF0\x9F\x98\x80"), "\"\xC3\xA9\xF0\x9F\x98\x80\"");
  EXPECT_EQ(json::quote("\xFF"), R"("\ufffd")");
  EXPECT_EQ(json::quote("\x80x"), R"("\ufffdx")");                              // lone continuation
  EXPECT_EQ(json::quote("\xC0\x80"), R"("\ufffd\ufffd")");                      // overlong NUL
  EXPECT_EQ(json::quote("\xED\xA0\x80"), R"("\ufffd\ufffd\ufffd")");            // surrogate
  EXPECT_EQ(json::quote("\xF4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
  EXPECT_EQ(json::quote("\xE2\x82"), R"("\ufffd\ufffd")");                      // cut short
}

TEST(Json, QuotedStringsReadBackUnchanged) {
  std::string all_ascii;
  for (int c = 0; c < 128; ++c) all_ascii += static_cast<char>(c);
  for (const std::string& s : {all_ascii, std::string("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80")})
    EXPECT_EQ(json::parse(json::quote(s), "q").string, s);
}

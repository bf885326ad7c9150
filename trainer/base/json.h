// A small strict JSON reader and the string quoting used by our JSON writers.
//
// muonrun reads JSON in three places: the GPT-2 vocabulary (encoder.json),
// JSONL corpora, and safetensors headers. All three may come from users, so
// the parser is strict (RFC 8259), bounded (nesting depth), and every error
// names the source and the byte offset where it stopped.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace muonrun::json {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  // The number exactly as written, so that integers above 2^53 stay exact.
  std::string number_text;
  std::string string;
  std::vector<Value> array;
  // Object members in the order they were written.
  std::vector<std::pair<std::string, Value>> object;

  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Number; }
  // The member called `key`, or nullptr.
  const Value* find(std::string_view key) const;
  // The number as an integer; throws unless it is an integer in int64 range.
  int64_t as_int64() const;
};

// Parses one JSON document; `source` (a file name) goes into error messages.
Value parse(std::string_view text, std::string_view source);

// Finds the string member `key` of a top-level JSON object without building
// the other members (used for the `text` field of large JSONL lines). Returns
// false if the object has no such member; throws ParseError on bad JSON or if
// the member is not a string.
bool extract_string_member(std::string_view text, std::string_view key,
                           std::string_view source, std::string& out);

// `s` as a JSON string literal, quotes included. Bytes that are not valid
// UTF-8 cannot be carried by JSON text and become U+FFFD.
std::string quote(std::string_view s);

}  // namespace muonrun::json

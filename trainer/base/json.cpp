#include "trainer/base/json.h"

#include <cerrno>
#include <cstdlib>

namespace muonrun::json {
namespace {

// Deep enough for every file muonrun reads, shallow enough that hostile
// input cannot exhaust the stack.
constexpr int kMaxDepth = 64;

class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Value document() {
    skip_space();
    Value v = value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected data after the JSON value");
    return v;
  }

  // Scans a top-level object for a string member, parsing only what it must.
  bool string_member(std::string_view key, std::string& out) {
    skip_space();
    if (peek() != '{') fail("expected '{'");
    bool found = false;
    members([&](std::string name) {
      if (found || name != key) return static_cast<void>(value(1));
      if (peek() != '"') fail("member \"" + std::string(key) + "\" is not a string");
      out = string_literal();
      found = true;
    });
    skip_space();
    if (pos_ != text_.size()) fail("unexpected data after the JSON value");
    return found;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ParseError(std::string(source_) + ": invalid JSON at byte " + std::to_string(pos_) +
                     ": " + what);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }
  void expect(char c) {
    if (at_end() || text_[pos_] != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void skip_space() {
    while (!at_end()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }
  void literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("unknown literal");
    pos_ += word.size();
  }

  Value value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    if (at_end()) fail("unexpected end of input");
    Value v;
    switch (peek()) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"': v.kind = Value::Kind::String; v.string = string_literal(); break;
      case 't': literal("true"); v.kind = Value::Kind::Bool; v.boolean = true; break;
      case 'f': literal("false"); v.kind = Value::Kind::Bool; break;
      case 'n': literal("null"); break;
      default:
        if (peek() != '-' && (peek() < '0' || peek() > '9')) fail("expected a value");
        number(v);
        break;
    }
    return v;
  }

  void object(Value& v, int depth) {
    v.kind = Value::Kind::Object;
    members([&](std::string name) { v.object.emplace_back(std::move(name), value(depth + 1)); });
  }

  // Walks an object from its '{' to past its '}', calling on_member(name)
  // with the position at each member's value, which on_member must consume.
  template <typename OnMember>
  void members(OnMember on_member) {
    ++pos_;
    skip_space();
    if (peek() == '}') { ++pos_; return; }
    while (true) {
      skip_space();
      if (peek() != '"') fail("expected a member name");
      std::string name = string_literal();
      skip_space();
      expect(':');
      skip_space();
      on_member(std::move(name));
      skip_space();
      if (peek() == ',') { ++pos_; continue; }
      expect('}');
      return;
    }
  }

  void array(Value& v, int depth) {
    v.kind = Value::Kind::Array;
    ++pos_;
    skip_space();
    if (peek() == ']') { ++pos_; return; }
    while (true) {
      skip_space();
      v.array.push_back(value(depth + 1));
      skip_space();
      if (peek() == ',') { ++pos_; continue; }
      expect(']');
      return;
    }
  }

  void number(Value& v) {
    size_t start = pos_;
    auto digits = [&] {
      size_t d = pos_;
      while (!at_end() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == d) fail("expected a digit");
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') ++pos_; else digits();
    if (peek() == '.') { ++pos_; digits(); }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits();
    }
    v.kind = Value::Kind::Number;
    v.number_text = std::string(text_.substr(start, pos_ - start));
    v.number = std::strtod(v.number_text.c_str(), nullptr);
  }

  unsigned hex4() {
    if (text_.size() - pos_ < 4) fail("short \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      char c = text_[pos_];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= c - '0';
      else if (c >= 'a' && c <= 'f') code |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') code |= c - 'A' + 10;
      else fail("bad hex digit in \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string string_literal() {
    expect('"');
    std::string out;
    while (true) {
      // Copy the run of plain characters in one go: JSONL texts are long.
      size_t run = pos_;
      while (run < text_.size() && text_[run] != '"' && text_[run] != '\\' &&
             static_cast<unsigned char>(text_[run]) >= 0x20)
        ++run;
      out.append(text_.data() + pos_, run - pos_);
      pos_ = run;
      if (at_end()) fail("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return out;
      if (c != '\\') { --pos_; fail("control character in string"); }
      if (at_end()) fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate followed by a low one names one code point
            // above U+FFFF. Otherwise it is lone, and whatever follows is
            // read on its own (it may start a pair itself).
            size_t next = pos_;
            unsigned low = 0;
            if (text_.substr(pos_, 2) == "\\u") {
              pos_ += 2;
              low = hex4();
            }
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              pos_ = next;
              cp = 0xFFFD;
            }
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;  // lone low surrogate
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; fail(std::string("bad escape \\") + e);
      }
    }
  }

  std::string_view text_;
  std::string_view source_;
  size_t pos_ = 0;
};

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  unsigned cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (byte(i + k) & 0x3F);
  bool overlong = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
  if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

}  // namespace

const Value* Value::find(std::string_view key) const {
  for (const auto& [name, member] : object)
    if (name == key) return &member;
  return nullptr;
}

int64_t Value::as_int64() const {
  if (kind != Kind::Number) throw ParseError("expected an integer, got a non-number");
  if (number_text.find_first_of(".eE") != std::string::npos)
    throw ParseError("expected an integer, got " + number_text);
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(number_text.c_str(), &end, 10);
  if (errno == ERANGE) throw ParseError("integer out of range: " + number_text);
  return v;
}

Value parse(std::string_view text, std::string_view source) {
  return Parser(text, source).document();
}

bool extract_string_member(std::string_view text, std::string_view key, std::string_view source,
                           std::string& out) {
  return Parser(text, source).string_member(key, out);
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  static const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    switch (c) {
      case '"': out += "\\\""; ++i; continue;
      case '\\': out += "\\\\"; ++i; continue;
      case '\n': out += "\\n"; ++i; continue;
      case '\r': out += "\\r"; ++i; continue;
      case '\t': out += "\\t"; ++i; continue;
      default: break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xF];
      ++i;
      continue;
    }
    size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      out += "\\ufffd";  // not UTF-8: JSON text cannot carry the raw byte
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out += '"';
  return out;
}

}  // namespace muonrun::json

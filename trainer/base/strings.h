// Small string helpers for every layer (muonrun_base, header only): C++17's
// std::string_view has no ends_with yet (C++20); the words of a config
// text such as "1 1.51 1.93", and each parsed whole as a number.
#pragma once

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace muonrun {

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The words of `text`, separated by white space.
inline std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// `word` as a whole integer / number, or nothing ("12x", "", out of range).
inline std::optional<int64_t> parse_integer(const std::string& word) {
  try {
    size_t used = 0;
    const int64_t v = std::stoll(word, &used);
    if (used == word.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}
inline std::optional<double> parse_number(const std::string& word) {
  try {
    size_t used = 0;
    const double v = std::stod(word, &used);
    if (used == word.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace muonrun

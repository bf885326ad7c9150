// Small string helpers for every layer (muonrun_base, header only): C++17's
// std::string_view has no ends_with yet (C++20).
#pragma once

#include <string_view>

namespace muonrun {

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace muonrun

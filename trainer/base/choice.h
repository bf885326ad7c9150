// Choices of the config (optim.muon.polar, run.device, ...) as enums: each
// enum's *_config.h defines one table of (name, value) pairs, in enum order,
// and `constexpr const auto& choices(E)` returning it. The config loader
// parses names through the table once; everything after loading uses the
// enum, and name_of() gives back the name config files spell (for
// config.yaml, config hashes, logs and describe() strings).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace muonrun {

template <class E>
struct Choice {
  const char* name;
  E value;
};

// Whether the table lists the values 0, 1, ..., N-1 in order (so name_of()
// can index it); every table is static_assert-ed with it.
template <class E, size_t N>
constexpr bool choices_in_enum_order(const Choice<E> (&table)[N]) {
  for (size_t i = 0; i < N; ++i)
    if (static_cast<size_t>(table[i].value) != i) return false;
  return true;
}

// The name of `value`, as config files spell it.
template <class E>
constexpr const char* name_of(E value) {
  return choices(value)[static_cast<size_t>(value)].name;
}

// The entry named `name`, or null.
template <class E, size_t N>
const Choice<E>* find_choice(const Choice<E> (&table)[N], std::string_view name) {
  for (const auto& c : table)
    if (name == c.name) return &c;
  return nullptr;
}

// "a | b | c": the allowed names, for messages and help text.
template <class E, size_t N>
std::string choice_list(const Choice<E> (&table)[N]) {
  std::string listed;
  for (const auto& c : table) listed += listed.empty() ? c.name : std::string(" | ") + c.name;
  return listed;
}

// The allowed names, for a command-line option's check.
template <class E, size_t N>
std::vector<std::string> choice_names(const Choice<E> (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& c : table) names.emplace_back(c.name);
  return names;
}

}  // namespace muonrun

// A key given twice in one YAML mapping, which run configs and sweep files
// both refuse: yaml-cpp keeps every entry of a mapping, block or flow, and
// its lookups find the first, so the second value would be silently lost.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>

namespace muonrun {

struct RepeatedKey {
  std::string key;
  YAML::Node again;  // the second entry's key node (its Mark() is where)
  YAML::Mark first;  // where the key was first given
};

// The first scalar key of `map` given twice, or nothing.
std::optional<RepeatedKey> repeated_key(const YAML::Node& map);

}  // namespace muonrun

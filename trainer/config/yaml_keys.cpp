#include "trainer/config/yaml_keys.h"

#include <map>

namespace muonrun {

std::optional<RepeatedKey> repeated_key(const YAML::Node& map) {
  std::map<std::string, YAML::Mark> first_mark;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) continue;  // not a key either reader looks up
    const auto [first, inserted] = first_mark.emplace(it->first.Scalar(), it->first.Mark());
    if (!inserted) return RepeatedKey{it->first.Scalar(), it->first, first->second};
  }
  return std::nullopt;
}

}  // namespace muonrun

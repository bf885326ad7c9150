#include "optim/presets.h"

#include <string>
#include <vector>

namespace muonrun {
namespace {

// The keys a preset sets, as (config key, accessor, value).
struct PresetKey {
  const char* key;
  std::string& (*field)(OptimConfig&);
  const char* value;
};

std::string& mode(OptimConfig& c) { return c.steepest.mode; }
std::string& outer_norm(OptimConfig& c) { return c.steepest.outer_norm; }
std::string& backup_norm(OptimConfig& c) { return c.steepest.backup_norm; }
std::string& shape_factor(OptimConfig& c) { return c.muon.shape_factor; }

std::vector<PresetKey> preset_keys(const std::string& preset) {
  if (preset == "muon_adam")
    return {{"steepest.mode", mode, "constrained"}, {"steepest.outer_norm", outer_norm, "max"},
            {"steepest.backup_norm", backup_norm, "ada_inf"}};
  if (preset == "scion")
    return {{"steepest.mode", mode, "constrained"}, {"steepest.outer_norm", outer_norm, "max"},
            {"steepest.backup_norm", backup_norm, "sign"}, {"muon.shape_factor", shape_factor, "spectral"}};
  if (preset == "muonmax")
    return {{"steepest.mode", mode, "regularized"}, {"steepest.outer_norm", outer_norm, "hybrid"},
            {"steepest.backup_norm", backup_norm, "ada_2"}};
  if (preset == "polargrad")
    return {{"steepest.mode", mode, "regularized"}, {"steepest.outer_norm", outer_norm, "l2"},
            {"steepest.backup_norm", backup_norm, "ada_2"}};
  return {};
}

}  // namespace

OptimConfig resolve_preset(const OptimConfig& optim) {
  OptimConfig resolved = optim;
  OptimConfig defaults;
  for (const auto& k : preset_keys(optim.preset)) {
    std::string& value = k.field(resolved);
    if (value != k.field(defaults) && value != k.value)
      throw ConfigError("optim.preset " + optim.preset + " sets optim." + k.key + " = " + k.value +
                        ", but the config sets it to " + value);
    value = k.value;
  }
  return resolved;
}

}  // namespace muonrun

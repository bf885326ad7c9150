#include "optim/presets.h"

#include <string>
#include <vector>

namespace muonrun {
namespace {

// Sets one key of a preset: to the preset's value, unless the config set it
// long-hand to a value that is neither its default nor the preset's.
class PresetSetter {
 public:
  explicit PresetSetter(Preset preset) : preset_(preset) {}

  template <class E>
  void operator()(const char* key, E& field, E default_value, E value) const {
    if (field != default_value && field != value)
      throw ConfigError(std::string("optim.preset ") + name_of(preset_) + " sets optim." + key + " = " +
                        name_of(value) + ", but the config sets it to " + name_of(field));
    field = value;
  }

 private:
  Preset preset_;
};

}  // namespace

OptimConfig resolve_preset(const OptimConfig& optim) {
  OptimConfig r = optim;
  const OptimConfig d;
  const PresetSetter set(optim.preset);
  // Every preset names a point of the steepest-descent family.
  auto steepest = [&](SteepestMode mode, OuterNorm outer, BackupNorm backup) {
    set("steepest.mode", r.steepest.mode, d.steepest.mode, mode);
    set("steepest.outer_norm", r.steepest.outer_norm, d.steepest.outer_norm, outer);
    set("steepest.backup_norm", r.steepest.backup_norm, d.steepest.backup_norm, backup);
  };
  switch (optim.preset) {
    case Preset::none:
      break;
    case Preset::muon_adam:
      steepest(SteepestMode::constrained, OuterNorm::max, BackupNorm::ada_inf);
      break;
    case Preset::scion:
      steepest(SteepestMode::constrained, OuterNorm::max, BackupNorm::sign);
      set("muon.shape_factor", r.muon.shape_factor, d.muon.shape_factor, ShapeFactor::spectral);
      break;
    case Preset::muonmax:
      steepest(SteepestMode::regularized, OuterNorm::hybrid, BackupNorm::ada_2);
      break;
    case Preset::polargrad:
      steepest(SteepestMode::regularized, OuterNorm::l2, BackupNorm::ada_2);
      break;
  }
  return r;
}

}  // namespace muonrun

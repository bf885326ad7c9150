#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace muonrun {

double lr_multiplier(int64_t step, int64_t total, const ScheduleConfig& schedule) {
  if (step < schedule.warmup_steps) return static_cast<double>(step + 1) / schedule.warmup_steps;
  const auto cooldown = static_cast<int64_t>(std::llround(schedule.cooldown_frac * total));
  if (cooldown == 0 || step < total - cooldown) return 1.0;
  return std::max(0.0, static_cast<double>(total - step) / cooldown);
}

double muon_momentum(int64_t step, const MuonConfig& muon) {
  if (muon.momentum_warmup_steps == 0) return muon.momentum;
  const double frac = std::min(1.0, static_cast<double>(step) / muon.momentum_warmup_steps);
  return (1 - frac) * muon.momentum_warmup_start + frac * muon.momentum;
}

double muon_momentum_mass(int64_t step, const MuonConfig& muon) {
  double remaining = 1;
  for (int64_t i = 0; i <= step; ++i) remaining *= muon_momentum(i, muon);
  return 1 - remaining;
}

}  // namespace muonrun

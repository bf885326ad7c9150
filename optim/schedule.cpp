#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace muonrun {

double lr_multiplier(int64_t step, int64_t total, const ScheduleConfig& schedule) {
  if (step < schedule.warmup_steps) return static_cast<double>(step + 1) / schedule.warmup_steps;
  // Not rounded to whole steps: record 29's 0.45 x 1670 = 751.5 (x >= 1 - frac
  // is step >= total - frac x total; w = (1 - x) / frac = (total - step) / (frac x total)).
  const double cooldown = schedule.cooldown_frac * static_cast<double>(total);
  if (cooldown <= 0 || static_cast<double>(step) < static_cast<double>(total) - cooldown) return 1.0;
  const double w = std::max(0.0, static_cast<double>(total - step) / cooldown);
  return w + (1 - w) * schedule.cooldown_floor;
}

double muon_momentum(int64_t step, const MuonConfig& muon, int64_t total_steps) {
  const int64_t cooldown = muon.momentum_cooldown_steps;
  if (cooldown > 0) {
    if (total_steps <= 0)
      throw std::invalid_argument("muon_momentum: optim.muon.momentum_cooldown_steps needs the run's total steps");
    const int64_t start = total_steps - cooldown;
    if (step > start)
      return muon.momentum - (muon.momentum - muon.momentum_cooldown_end) * static_cast<double>(step - start) /
                                 static_cast<double>(cooldown);
  }
  if (muon.momentum_warmup_steps == 0) return muon.momentum;
  const double frac = std::min(1.0, static_cast<double>(step) / muon.momentum_warmup_steps);
  return (1 - frac) * muon.momentum_warmup_start + frac * muon.momentum;
}

double muon_momentum_mass(int64_t step, const MuonConfig& muon, int64_t total_steps) {
  double remaining = 1;
  for (int64_t i = 0; i <= step; ++i) remaining *= muon_momentum(i, muon, total_steps);
  return 1 - remaining;
}

}  // namespace muonrun

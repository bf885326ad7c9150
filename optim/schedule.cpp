#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "trainer/base/config_error.h"
#include "trainer/base/strings.h"

namespace muonrun {

LrSchedule::LrSchedule(const ScheduleConfig& schedule, int64_t total_steps)
    : schedule_(schedule), scheduled_(scheduled_steps(schedule, total_steps)) {
  for (const auto& word : words(schedule.stage_lr)) {
    const auto peak = parse_number(word);
    if (!peak || !(*peak > 0) || !std::isfinite(*peak))
      throw ConfigError("schedule.stage_lr: '" + word + "' is not a positive number");
    stage_lr_.push_back(*peak);
  }
  if (stage_lr_.empty())
    throw ConfigError("schedule.stage_lr: '" + schedule.stage_lr + "' names no stage; expected e.g. \"1 1.51 1.93\"");
}

int64_t scheduled_steps(const ScheduleConfig& schedule, int64_t total_steps) {
  if (schedule.extension_steps >= total_steps)
    throw ConfigError("schedule.extension_steps (" + std::to_string(schedule.extension_steps) +
                      ") must be below train.steps (" + std::to_string(total_steps) + ")");
  return total_steps - schedule.extension_steps;
}

double LrSchedule::operator()(int64_t step) const {
  if (step < schedule_.warmup_steps) return static_cast<double>(step + 1) / schedule_.warmup_steps;
  if (step > scheduled_) return schedule_.cooldown_floor;  // the extension steps
  const double x = static_cast<double>(step) / static_cast<double>(scheduled_);
  const auto n = stage_lr_.size();
  double peak = stage_lr_[0];
  for (size_t k = 1; k < n; ++k)
    if (x > static_cast<double>(k) / static_cast<double>(n)) peak = stage_lr_[k];
  // Not rounded to whole steps: record 29's 0.45 x 1670 = 751.5 (x >= 1 - frac
  // is step >= N - frac x N; w = (1 - x) / frac = (N - step) / (frac x N)).
  const double cooldown = schedule_.cooldown_frac * static_cast<double>(scheduled_);
  if (cooldown <= 0 || static_cast<double>(step) < static_cast<double>(scheduled_) - cooldown) return peak;
  const double w = std::max(0.0, static_cast<double>(scheduled_ - step) / cooldown);
  return peak * w + (1 - w) * schedule_.cooldown_floor;
}

double lr_multiplier(int64_t step, int64_t total, const ScheduleConfig& schedule) {
  return LrSchedule(schedule, total)(step);
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

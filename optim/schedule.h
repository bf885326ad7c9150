// Learning-rate and momentum schedules of the speedrun (KellerJordan/modded-nanogpt
// record 11, train_gpt2.py; record 29, records/track_1_short/2025-09-03_FA3/train_gpt.py).
#pragma once

#include <cstdint>
#include <vector>

#include "optim/optim_config.h"

namespace muonrun {

// Multiplier of every base lr before optimizer step `step` (0-based) of
// `total`, as the records' get_lr: optional linear warm-up; then the peak
// p of the step's stage (schedule.stage_lr: stage k of n from x > k/n, with
// x = step / N over the N = total - extension_steps scheduled steps); then,
// once x >= 1 - cooldown_frac, p w + (1 - w) cooldown_floor with
// w = (1 - x) / cooldown_frac; after the scheduled steps, cooldown_floor.
// Record 11: floor 0 over the last 900 of 3000 steps, w = (3000 - step) / 900;
// record 29: floor 0.1 over the last 0.45 of 1670 steps (751.5 steps);
// record 50: peaks 1, 1.51, 1.93 by thirds of 2050 steps, floor 0.1 from
// x = 0.45 (so the lr jumps up at step 1367, where the peak changes inside
// the cooldown), then 40 extension steps at 0.1.
class LrSchedule {
 public:
  // Parses schedule.stage_lr (positive numbers); throws ConfigError naming it.
  LrSchedule(const ScheduleConfig& schedule, int64_t total_steps);
  double operator()(int64_t step) const;

 private:
  ScheduleConfig schedule_;
  std::vector<double> stage_lr_;
  int64_t scheduled_;
};

// train.steps less schedule.extension_steps: the steps the lr, window and
// batch schedules divide into stages. Throws ConfigError unless at least 1.
int64_t scheduled_steps(const ScheduleConfig& schedule, int64_t total_steps);

// LrSchedule(schedule, total)(step).
double lr_multiplier(int64_t step, int64_t total, const ScheduleConfig& schedule);

// Muon momentum at `step`: linear from momentum_warmup_start to momentum over
// momentum_warmup_steps (0.85 -> 0.95 over 500 steps in record 11, over 300
// in record 29), then, with momentum_cooldown_steps = c > 0, linear towards
// momentum_cooldown_end over the steps after total_steps - c:
//   mu - (mu - end) (step - (total_steps - c)) / c   (record 50: 0.95 - 0.10 (s - 2040) / 50).
// total_steps (train.steps) is needed only then; without it that throws.
double muon_momentum(int64_t step, const MuonConfig& muon, int64_t total_steps = 0);

// Weight sum 1 - prod_{i<=step} mu_i of Muon's zero-initialised EMA momentum
// after the updates of steps 0..step (its "mass", for Momo's model).
double muon_momentum_mass(int64_t step, const MuonConfig& muon, int64_t total_steps = 0);

}  // namespace muonrun

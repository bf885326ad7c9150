// Learning-rate and momentum schedules of the speedrun (KellerJordan/modded-nanogpt
// record 11, train_gpt2.py).
#pragma once

#include <cstdint>

#include "optim/optim_config.h"

namespace muonrun {

// Multiplier of every base lr before optimizer step `step` (0-based) of
// `total`: optional linear warm-up, constant, then linear decay to 0 over the
// last cooldown_frac of the steps (record 11: the last 900 of 3000).
double lr_multiplier(int64_t step, int64_t total, const ScheduleConfig& schedule);

// Muon momentum at `step`: linear from momentum_warmup_start to momentum over
// momentum_warmup_steps (0.85 -> 0.95 over 500 steps in record 11).
double muon_momentum(int64_t step, const MuonConfig& muon);

// Weight sum 1 - prod_{i<=step} mu_i of Muon's zero-initialised EMA momentum
// after the updates of steps 0..step (its "mass", for Momo's model).
double muon_momentum_mass(int64_t step, const MuonConfig& muon);

}  // namespace muonrun

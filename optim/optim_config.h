// The optimizers' config: AdamW, Muon, the steepest-descent variants, Momo and the lr schedule.
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace muonrun {

struct ScheduleConfig {
  int64_t warmup_steps = 0;
  double cooldown_frac = 0.3;  // linear decay to 0 over this final fraction
};

struct AdamConfig {
  double embed_lr = 0.6;
  double head_lr = 0.008;
  double scalar_lr = 0.04;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0;
  double matrix_lr = 0.008;  // hidden matrices, when optim.matrix_optimizer = adamw
  // The thesis notes' knobs (seed 000 §3.3.1, §4; recipe §6).
  bool bias_correction = true;  // divide m by 1-b1^t and v by 1-b2^t
  bool zero_init = true;        // m0 = v0 = 0; false: m0 = g1, v0 = g1^2
  bool nested = false;          // step EMA_b1(g / (sqrt(v) + eps)) instead of m / (sqrt(v) + eps)
  // Epsilon of each group; 0: `eps`.
  double embed_eps = 0;
  double head_eps = 0;
  double scalar_eps = 0;
  double matrix_eps = 0;
};

struct MuonConfig {
  double lr = 0.04;
  double momentum = 0.95;
  double momentum_warmup_start = 0.85;
  int64_t momentum_warmup_steps = 500;
  bool nesterov = true;
  int64_t ns_steps = 5;
  double weight_decay = 0;
  // With several ranks: "owner" gives each matrix to one rank (reduce-scatter
  // of gradients, Newton-Schulz on the owner, all-gather of weights);
  // "replicated" all-reduces gradients and every rank updates every matrix.
  std::string distribute = "owner";
  // Polar factor: Newton-Schulz with the fixed "quintic" or the per-step
  // "polar_express" coefficients (recipe §4), or the exact "svd" (ablations).
  std::string polar = "quintic";
  // Update scale per shape: "original" sqrt(max(1, rows/cols)),
  // "match_rms_adamw" 0.2 sqrt(max(rows, cols)), "spectral" sqrt(rows/cols).
  std::string shape_factor = "original";
};

// Muon and AdamW as one steepest descent over all parameters (seed 003,
// recipe §7); the defaults are the recipe's Muon + Adam.
struct SteepestConfig {
  std::string mode = "constrained";    // or "regularized": step scaled by the dual norm
  std::string outer_norm = "max";      // how layer norms combine: max, l2 or hybrid
  std::string backup_norm = "ada_inf"; // norm of non-matrix parameters: ada_inf (Adam), sign, ada_2
  bool stale_dual_norms = false;       // use the previous step's nuclear norms (one pass)
};

// Momo step sizes (Schaipp et al. 2024; seed 003, recipe §7): never step past
// the loss lower bound f_star predicted by the momentum model.
struct MomoConfig {
  bool enabled = false;
  double f_star = 0;  // lower bound of the training loss
  double beta = 0.9;  // EMA of f - <g, w>
};

struct OptimConfig {
  std::string matrix_optimizer = "muon";  // or "adamw": AdamW for everything
  std::string preset = "none";  // muon_adam, scion, muonmax, polargrad: see optim/presets.h
  AdamConfig adam;
  MuonConfig muon;
  SteepestConfig steepest;
  MomoConfig momo;
};

}  // namespace muonrun

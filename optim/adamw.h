// AdamW (Loshchilov & Hutter) with bias correction and decoupled weight decay,
// by default step for step the same arithmetic as torch::optim::AdamW:
//   W = (1 - lr*wd) W
//   m = b1 m + (1-b1) g            v = b2 v + (1-b2) g^2
//   W = W - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Written here (rather than used from LibTorch) so that the ablation variants
// below (bias correction, zero init, nested EMA) can follow and so its state
// is ours to checkpoint and shard:
//   bias_correction = false   the divisions by 1-b1^t and 1-b2^t are left out
//   zero_init = false         m0 = g1, v0 = g1^2 instead of 0 (so m1 = g1, v1 = g1^2)
//   nested = true             v as above, then s = b1 s + (1-b1) g / (sqrt(v^) + eps)
//                             and W = W - lr s^ (s^ = s/(1-b1^t) with bias correction)
//   per-group eps
//   cautious_weight_decay = true
//                             W -= u + W [u W >= 0] lr wd (lr), u the update
//                             lr/(1-b1^t) m / (...) below, as record 50's
//                             DistAdam (the decay follows the lr twice)
//   eps_before_bias_correction = true
//                             W = W - lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps),
//                             i.e. eps / sqrt(1-b2^t) in place of eps above: the
//                             DistAdam of KellerJordan/modded-nanogpt record 29
//                             (records/track_1_short/2025-09-03_FA3/train_gpt.py)
// The first step of the four bias-correction x zero-init combinations is then
// lr x sign(g1) x (1, (1-b1)/sqrt(1-b2), sqrt(1-b2)/(1-b1), 1) up to eps
// (in the order BC+ZI, no BC+ZI, BC+no ZI, no BC+no ZI).
//
// For the steepest-descent variants (optim/steepest_descent.h) a step splits
// into advance() (the moments), dual_norms() and apply() with any backup norm.
//
// step() with the default arithmetic (bias correction, zero init, no
// nesting, eps after bias correction) runs LibTorch's fused multi-tensor AdamW (at::_fused_adamw_, the
// kernel of torch.optim.AdamW(fused=True), on the CPU and CUDA): one kernel
// per group instead of several per parameter, and a device-side skip (its
// found_inf) for steps with non-finite gradients. Step counts live on the
// parameters' device as the kernel wants them (float32, exact to 2^24
// steps); the per-parameter path reads them on the host.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "optim/param_groups.h"
#include "optim/steepest_descent.h"
#include "optim/optim_config.h"

namespace muonrun {

struct AdamWGroup {
  std::string name;
  double lr;
  std::vector<NamedParam> params;
  double eps = 0;  // 0: AdamConfig::eps
  double wd_mul = 1;  // the group's weight decay: AdamConfig::weight_decay x wd_mul
};

class AdamW {
 public:
  AdamW(std::vector<AdamWGroup> groups, const AdamConfig& config);

  // One update of every parameter that has a gradient; lr = group lr x multiplier.
  // `skip`: undefined, or a 0-dim bool tensor on the parameters' device
  // that, when true, leaves weights, moments and step counts as they were;
  // only with fused().
  void step(double lr_multiplier, const torch::Tensor& skip = {});
  // Whether step() runs the fused kernel (the default arithmetic).
  bool fused() const;

  // Advances the moments of every parameter that has a gradient.
  void advance();
  // The dual norm n_g of each group's (bias-corrected) momentum under `norm`.
  std::vector<double> dual_norms(BackupNorm norm) const;
  // W = (1 - lr wd) W - lr k_g d_g for every parameter with a gradient, d_g
  // the LMO of `norm` at the momentum; `scales` k_g per group (empty: all 1);
  // `dual_norms` from dual_norms(norm) (needed for ada_2 only).
  void apply(double lr_multiplier, BackupNorm norm, const std::vector<double>& scales,
             const std::vector<double>& dual_norms);
  // Sums of <g, w> and <m / mass, w> over the parameters with a gradient,
  // mass being the weight sum of the momentum's EMA (for Momo, optim/momo.h).
  std::pair<double, double> momo_inner_products() const;

  // State tensors named adam.exp_avg.<param>, adam.exp_avg_sq.<param>,
  // adam.step.<param>, for checkpoints.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  // Restores what state() wrote; throws naming the first missing tensor.
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  const std::vector<AdamWGroup>& groups() const { return groups_; }

 private:
  struct ParamState {
    torch::Tensor exp_avg, exp_avg_sq;  // m (s when nested), v
    torch::Tensor step;                 // updates so far: float32, 0-dim, on the parameter's device
  };
  // The step counts of every parameter, in one host transfer.
  std::map<std::string, int64_t> host_steps() const;
  // Bias corrections 1-b^t after t steps (1 when switched off).
  double correction1(int64_t t) const;
  double correction2(int64_t t) const;
  // sqrt(v^) + eps, or (sqrt(v) + eps) / sqrt(1-b2^t) with eps_before_bias_correction
  torch::Tensor denominator(const ParamState& s, int64_t t, double eps) const;

  std::vector<AdamWGroup> groups_;
  AdamConfig config_;
  std::map<std::string, ParamState> state_;
};

}  // namespace muonrun

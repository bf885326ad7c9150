// Muon (KellerJordan/Muon; K. Jordan et al., "Muon: An optimizer for hidden
// layers in neural networks", blog post, 2024): momentum, then
// orthogonalisation, for the hidden matrices. One update of a matrix W with gradient G:
//   M = mu M + (1-mu) G                      (EMA momentum)
//   U = (1-mu) G + mu M   if Nesterov, else M
//   O = polar(U)                             Newton-Schulz (bf16 on CUDA, fp32 on
//                                            the CPU; quintic or Polar Express
//                                            coefficients) or exact (SVD)
//   W = (1 - lr wd) W - lr k s O
// optim.muon.normuon (NorMuon, the speedrun's records 41-48): before the
// update, O's rows r_i (or columns) are rescaled by an EMA of their mean square,
//   B = beta2 B + (1 - beta2) mean_j O_ij^2,   O' = diag(max(B, 1e-10)^-1/2) O,
//   O <- O' ||O||_F / max(||O'||_F, 1e-10)
// along the axis the record chooses: per row of the stored matrix when it is
// at least as tall as wide or a gate (a name with "gate"), else per column.
// optim.muon.cautious_weight_decay (records 43, 50): the decay acts only where
// O W >= 0, with strength wd lr (lr s):  W -= W [O W >= 0] wd lr (lr s).
// with s the shape factor (muon.shape_factor) and k = 1 for plain Muon (the
// steepest-descent variants scale it, optim/steepest_descent.h). s O is the
// LMO of the norm ||.||_{2->2} / s, whose dual norm s <U, O> is the nuclear
// norm of U (times s) when O is the exact polar factor.
//
// A parameter may also be a stack [..., rows, cols] of matrices (record 29's
// qkvo_w [4, dim, dim], KellerJordan/modded-nanogpt
// records/track_1_short/2025-09-03_FA3/train_gpt.py): each matrix of the
// stack is orthogonalised separately and s is that of the last two
// dimensions, as the record's batched Newton-Schulz and its
// max(1, p.size(-2) / p.size(-1)) ** 0.5; the stack keeps one momentum
// buffer of its own shape and is one unit for ownership (optim/step_plan.h).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "optim/newton_schulz.h"
#include "optim/param_groups.h"
#include "optim/optim_config.h"

namespace muonrun {

// ShapeFactor: optim/optim_config.h.

// Everything one matrix update needs, resolved for the current step.
struct MuonStep {
  double lr;
  double momentum;
  bool nesterov;
  int64_t ns_steps;
  double weight_decay;
  NewtonSchulzSchedule schedule;
  bool exact_polar = false;  // SVD instead of Newton-Schulz
  ShapeFactor shape = ShapeFactor::original;
  double normuon_beta2 = 0.95;  // used where muon_update_batch gets second moments
  bool cautious_weight_decay = false;
};

// The first two are the adjust_lr_fn choices of torch.optim.Muon (PyTorch
// 2.9+): "original" sqrt(max(1, rows/cols)) keeps the update's RMS comparable across shapes;
// "match_rms_adamw" 0.2 sqrt(max(rows, cols)) matches AdamW's update RMS
// (Moonlight: Liu et al. 2025, "Muon is Scalable for LLM Training",
// arXiv:2502.16982); "spectral" sqrt(fan_out/fan_in) =
// sqrt(rows/cols) for a [out, in] weight.
double muon_shape_factor(int64_t rows, int64_t cols, ShapeFactor shape = ShapeFactor::original);

// The input U of the orthogonalisation and its polar factor O.
struct MuonDirection {
  torch::Tensor input, polar;
};

// The parts of one update, for the steepest-descent variants, in order:
void muon_advance_momentum(torch::Tensor& momentum, const torch::Tensor& grad, const MuonStep& step);
MuonDirection muon_direction(const torch::Tensor& grad, const torch::Tensor& momentum, const MuonStep& step);
// s <U, O>: the dual norm of U in the matrix's norm.
double muon_dual_norm(const MuonDirection& direction, const MuonStep& step);
// W = (1 - lr wd) W - lr scale s O
void muon_apply(torch::Tensor param, const torch::Tensor& polar, const MuonStep& step, double scale);

// All of them with scale 1: updates `param` in place from `grad`, keeping
// `momentum` (same shape).
void muon_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor& momentum,
                 const MuonStep& step);

// (min, max) of a matrix's sides: m x n and n x m matrices share a
// Newton-Schulz batch (the tall ones transposed).
std::pair<int64_t, int64_t> muon_size_class(int64_t rows, int64_t cols);
// The same for a parameter's last two dimensions (a matrix or a stack of them).
std::pair<int64_t, int64_t> muon_size_class(const torch::Tensor& t);

// muon_update for parameters of one size class at once (matrices or stacks
// of them, whose matrices all join the stack): the momenta advance
// on one stack and Newton-Schulz runs once over the stack, so that a step
// launches a few dozen kernels per size class instead of as many per
// matrix. `momenta[k]` is updated in place. `skip`: undefined, or a 0-dim
// bool tensor on the matrices' device that, when true, leaves weights and
// momenta exactly as they were (a step with non-finite gradients), decided
// on the device without a host round trip. `second_moments` (NorMuon; empty:
// off): one fp32 buffer per parameter, muon_second_moment()'s shape, updated
// in place.
// `lr_muls` (empty: all 1): each parameter's lr multiplier (optim.muon.lr_mul),
// on its update and its cautious decay.
void muon_update_batch(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                       const std::vector<torch::Tensor>& momenta, const MuonStep& step, const torch::Tensor& skip,
                       const std::vector<torch::Tensor>& second_moments = {},
                       const std::vector<double>& lr_muls = {});

// optim.muon.lr_mul parsed for `params`: each one's multiplier (1 where no
// suffix matches). Throws ConfigError naming the key for a malformed entry
// or a suffix that matches no matrix.
std::vector<double> parse_muon_lr_mul(const std::string& text, const std::vector<NamedParam>& params);

// NorMuon's second-moment buffer of parameter `param` named `name`: zeros of
// fp32, one per row or column (see above) of each of its matrices, in
// Newton-Schulz's orientation (rows <= cols): [matrices, rows, 1] or [matrices, 1, cols].
torch::Tensor muon_second_moment(const std::string& name, const torch::Tensor& param);

class Muon {
 public:
  // `owned[i]`: whether this rank updates matrix i and keeps its momentum
  // (all of them when empty: one process, or replicated Muon).
  // `total_steps` (train.steps): needed with optim.muon.momentum_cooldown_steps.
  Muon(std::vector<NamedParam> params, const MuonConfig& config, std::vector<bool> owned = {},
       int64_t total_steps = 0);

  // One update of owned matrix `index` from `grad` (the mean over ranks).
  void update(size_t index, const torch::Tensor& grad, const MuonStep& hyper);
  // The same for owned matrices `indices` (one gradient each), one batched
  // update per size class (muon_update_batch, `skip` as there).
  void update(const std::vector<size_t>& indices, const std::vector<torch::Tensor>& grads, const MuonStep& hyper,
              const torch::Tensor& skip = {});
  // The same in parts (see muon_update), for the steepest-descent variants.
  void advance_momentum(size_t index, const torch::Tensor& grad, const MuonStep& hyper);
  MuonDirection direction(size_t index, const torch::Tensor& grad, const MuonStep& hyper) const;
  void apply(size_t index, const torch::Tensor& polar, const MuonStep& hyper, double scale);
  // <M, W> of owned matrix `index`, for Momo.
  double momentum_dot_weights(size_t index) const;

  // The resolved hyper-parameters at `step` (0-based), `lr_multiplier` from the lr schedule.
  MuonStep step_hyper(double lr_multiplier, int64_t step) const;

  // Momentum buffers named muon.momentum.<param> (and with NorMuon its
  // buffers, muon.second_moment.<param>), for checkpoints.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  const std::vector<NamedParam>& params() const { return params_; }
  int64_t total_steps() const { return total_steps_; }

 private:
  std::vector<NamedParam> params_;
  MuonConfig config_;
  int64_t total_steps_;
  std::vector<double> lr_mul_;  // per matrix, optim.muon.lr_mul
  std::map<std::string, torch::Tensor> momentum_;       // owned matrices only
  std::map<std::string, torch::Tensor> second_moment_;  // NorMuon's, owned matrices only
};

}  // namespace muonrun

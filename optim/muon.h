// Muon (Jordan et al.): momentum, then Newton-Schulz orthogonalisation, for
// the 2-D hidden matrices (recipe §4). One update of a matrix W with gradient G:
//   M = mu M + (1-mu) G                      (EMA momentum)
//   U = (1-mu) G + mu M   if Nesterov, else M
//   O = NewtonSchulz(U)                      (bf16 on CUDA, fp32 on the CPU)
//   W = (1 - lr wd) W - lr sqrt(max(1, rows/cols)) O
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "optim/newton_schulz.h"
#include "optim/param_groups.h"
#include "trainer/config.h"

namespace muonrun {

// Everything one matrix update needs, resolved for the current step.
struct MuonStep {
  double lr;
  double momentum;
  bool nesterov;
  int64_t ns_steps;
  double weight_decay;
  NewtonSchulzSchedule schedule;
};

// sqrt(max(1, rows/cols)): keeps the update's RMS comparable across shapes.
double muon_shape_factor(int64_t rows, int64_t cols);

// Updates `param` in place from `grad`, keeping `momentum` (same shape).
// Exposed on its own so distributed Muon can apply it to the matrices a rank owns.
void muon_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor& momentum,
                 const MuonStep& step);

class Muon {
 public:
  // `owned[i]`: whether this rank updates matrix i and keeps its momentum
  // (all of them when empty: one process, or replicated Muon).
  Muon(std::vector<NamedParam> params, const MuonConfig& config, std::vector<bool> owned = {});

  // One update of every owned matrix with a gradient; `step` (0-based) drives
  // the momentum warm-up, `lr_multiplier` the lr schedule.
  void step(double lr_multiplier, int64_t step);
  // One update of owned matrix `index` from `grad` (the mean over ranks).
  void update(size_t index, const torch::Tensor& grad, const MuonStep& hyper);

  // The resolved hyper-parameters at `step`.
  MuonStep step_hyper(double lr_multiplier, int64_t step) const;

  // Momentum buffers named muon.momentum.<param>, for checkpoints.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  const std::vector<NamedParam>& params() const { return params_; }

 private:
  std::vector<NamedParam> params_;
  MuonConfig config_;
  std::map<std::string, torch::Tensor> momentum_;  // owned matrices only
};

}  // namespace muonrun

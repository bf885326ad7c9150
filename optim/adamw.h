// AdamW (Loshchilov & Hutter) with bias correction and decoupled weight decay,
// step for step the same arithmetic as torch::optim::AdamW:
//   W = (1 - lr*wd) W
//   m = b1 m + (1-b1) g            v = b2 v + (1-b2) g^2
//   W = W - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Written here (rather than used from LibTorch) so that the variants of the
// thesis notes can follow and so its state is ours to checkpoint and shard.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "optim/param_groups.h"
#include "trainer/config.h"

namespace muonrun {

struct AdamWGroup {
  std::string name;
  double lr;
  std::vector<NamedParam> params;
};

class AdamW {
 public:
  AdamW(std::vector<AdamWGroup> groups, const AdamConfig& config);

  // One update of every parameter that has a gradient; lr = group lr x multiplier.
  void step(double lr_multiplier);

  // State tensors named adam.exp_avg.<param>, adam.exp_avg_sq.<param>,
  // adam.step.<param>, for checkpoints.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  // Restores what state() wrote; throws naming the first missing tensor.
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  const std::vector<AdamWGroup>& groups() const { return groups_; }

 private:
  struct ParamState {
    torch::Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  std::vector<AdamWGroup> groups_;
  AdamConfig config_;
  std::map<std::string, ParamState> state_;
};

}  // namespace muonrun

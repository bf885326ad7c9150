// The optimizer of a run (recipe §3): Muon for the hidden matrices and AdamW
// for the embedding, head and scalars, driven by the lr and momentum schedules.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "optim/adamw.h"
#include "optim/muon.h"
#include "trainer/config.h"

namespace muonrun {

class Optimizer {
 public:
  Optimizer(const torch::nn::Module& model, const OptimConfig& optim,
            const ScheduleConfig& schedule, int64_t total_steps);

  // Update number `step` (0-based) from the gradients in the parameters.
  void step(int64_t step);
  // Drops every gradient (set to none), ready for the next accumulation.
  void zero_grad();
  double lr_multiplier(int64_t step) const;

  // All state tensors by name, for checkpoints, and their restoration.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  AdamW adam;
  Muon muon;

 private:
  std::vector<torch::Tensor> params_;
  ScheduleConfig schedule_;
  int64_t total_steps_;
};

// The tensor `key` from loaded optimizer state, checked against the shape of
// `like` (when defined). Throws naming the key.
const torch::Tensor& state_tensor(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& key, const torch::Tensor& like);

}  // namespace muonrun

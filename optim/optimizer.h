// The optimizer of a run (recipe §3): Muon for the hidden matrices and AdamW
// for the embedding, head and scalars, driven by the lr and momentum
// schedules, on one process or on every rank of a data-parallel run.
//
// With several ranks it owns the gradient reduction (comm/grad_reducer.h):
// AdamW gradients are all-reduced in buckets; Muon gradients are either
// reduce-scattered to the matrix owners, which alone run Newton-Schulz and
// then all-gather the new weights ("owner"), or all-reduced so that every
// rank updates every matrix ("replicated").
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/grad_reducer.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/muon_ownership.h"
#include "trainer/config.h"

namespace muonrun {

class Optimizer {
 public:
  // `comm` is null for a single process.
  Optimizer(const torch::nn::Module& model, const Config& config, Communicator* comm);

  // Around each micro-step's backward; only the last one communicates.
  void begin_backward(bool last_micro_step);
  void end_backward();
  // Update number `step` (0-based) from the gradients.
  void step(int64_t step);
  // Drops every gradient (set to none), ready for the next accumulation.
  void zero_grad();
  double lr_multiplier(int64_t step) const;

  // This rank's state tensors by name (Muon momentum only for the matrices it
  // owns), for checkpoints, and their restoration from the union of all
  // ranks' tensors (so a run may resume on another number of ranks).
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  // The owner plan of distributed Muon (null unless owner mode on several ranks).
  const MuonOwnership* ownership() const { return ownership_.get(); }
  const GradientReducer* reducer() const { return reducer_.get(); }

  AdamW adam;
  std::unique_ptr<Muon> muon;  // null when matrix_optimizer = adamw

 private:
  void owner_muon_step(int64_t step, double lr_multiplier);

  Communicator* comm_;
  std::vector<torch::Tensor> params_;
  std::vector<NamedParam> matrices_;
  ScheduleConfig schedule_;
  int64_t total_steps_;
  std::unique_ptr<MuonOwnership> ownership_;
  std::unique_ptr<GradientReducer> reducer_;
  std::vector<size_t> bucket_units_, shard_units_;
  std::vector<int> shard_matrix_of_slot_;  // per shard unit: this rank's matrix or -1
};

// The tensor `key` from loaded optimizer state, checked against the shape of
// `like` (when defined). Throws naming the key.
const torch::Tensor& state_tensor(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& key, const torch::Tensor& like);

}  // namespace muonrun

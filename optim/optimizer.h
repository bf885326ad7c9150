// The optimizer of a run (as in KellerJordan/modded-nanogpt record 11,
// train_gpt2.py): Muon for the hidden matrices and AdamW
// for the embedding, head and scalars, driven by the lr and momentum
// schedules, on one process or on every rank of a data-parallel run.
//
// With several ranks it owns the gradient reduction (comm/grad_reducer.h):
// AdamW gradients are all-reduced in buckets; Muon gradients are either
// reduce-scattered to the matrix owners, which alone run Newton-Schulz and
// then all-gather the new weights ("owner"), or all-reduced so that every
// rank updates every matrix ("replicated").
//
// The steepest-descent variants (optim.steepest, optim.preset) and Momo
// (optim.momo) scale each block's update by quantities summed over all
// matrices (dual norms, Momo's inner products): in owner mode each rank sums
// over the matrices it owns and one small all-reduce adds the ranks' sums.
//
// Its parts: optim/step_plan.h plans ownership and gradient units;
// optim/step_rule.h is the update rule, chosen once from a table (the
// recipe in optim/recipe_step.cpp, the variants in optim/variant_step.cpp).
// All of them are built from the one preset-resolved OptimConfig.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/grad_reducer.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/muon_ownership.h"
#include "optim/presets.h"
#include "optim/schedule.h"
#include "optim/step_plan.h"
#include "optim/step_rule.h"
#include "trainer/config/config.h"

namespace muonrun {

class PhaseTimer;  // trainer/base/phase_timer.h

class Optimizer {
 public:
  // `comm` is null for a single process. `resolve` turns config.optim into the
  // one OptimConfig every part is built from (a seam for tests; runs use
  // resolve_preset, optim/presets.h).
  using PresetResolver = OptimConfig (*)(const OptimConfig&);
  Optimizer(const torch::nn::Module& model, const Config& config, Communicator* comm,
            PresetResolver resolve = resolve_preset);

  // Around each micro-step's backward; only the last one communicates.
  void begin_backward(bool last_micro_step);
  void end_backward();
  // Update number `step` (0-based) from the gradients. `loss`: the step's
  // training loss (mean over ranks), which Momo needs (see uses_loss()).
  // `skip`: undefined, or (only when skips_on_device()) a 0-dim bool tensor
  // on the model's device, the same on every rank, that when true makes the
  // step change no weight and no optimizer state, as discard_step() would,
  // without the host reading it first.
  void step(int64_t step, std::optional<double> loss = std::nullopt, const torch::Tensor& skip = {});
  bool uses_loss() const { return rule_->uses_loss(); }
  // Whether step() takes `skip`: the recipe and AdamW-only rules with
  // AdamW's default arithmetic (the speedrun's); the steepest-descent and
  // Momo variants read dual norms and the loss on the host anyway.
  bool skips_on_device() const { return rule_->skips_on_device(adam) && !rule_->uses_loss(); }
  // Finishes the step's communication but changes nothing (a diverged step
  // is skipped); every rank must call it when one does.
  void discard_step();
  // Scales every learning rate from now on (rollback after divergence).
  void set_lr_scale(double scale) { lr_scale_ = scale; }
  // One line naming the optimizer variant, for logs.
  std::string describe() const;
  // Readies the gradients for the next accumulation: drops them (set to
  // none), or zeroes them in place where something holds on to them (a CUDA
  // graph that adds into them), as torch.optim's zero_grad(set_to_none);
  // Adam's are kept while they add up for its next update (optim.adam.step_every).
  void zero_grad(bool set_to_none = true);
  double lr_multiplier(int64_t step) const;
  // step() reports its phases (Newton-Schulz, AdamW, communication waits)
  // to `timer` from now on; null (the default) reports nothing.
  void set_phase_timer(PhaseTimer* timer) { timer_ = timer; }

  // This rank's state tensors by name (Muon momentum only for the matrices it
  // owns), for checkpoints, and their restoration from the union of all
  // ranks' tensors (so a run may resume on another number of ranks).
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

  // The owner plan of distributed Muon (null unless owner mode on several ranks).
  const MuonOwnership* ownership() const { return plan_.ownership ? &*plan_.ownership : nullptr; }
  const GradientReducer* reducer() const { return reducer_.get(); }

  AdamW adam;
  std::unique_ptr<Muon> muon;  // null when matrix_optimizer = adamw

 private:
  struct Resolved {};
  // The public constructor, once `optim` is resolved: every member below and
  // `adam` are built from it.
  Optimizer(const torch::nn::Module& model, const Config& config, Communicator* comm, const OptimConfig& optim,
            Resolved);

  OptimConfig optim_;  // with the preset resolved
  Communicator* comm_;
  std::vector<torch::Tensor> params_;
  std::vector<NamedParam> matrices_;
  LrSchedule schedule_;
  int64_t total_steps_;
  double lr_scale_ = 1.0;
  StepPlan plan_;
  std::unique_ptr<StepRule> rule_;
  std::unique_ptr<GradientReducer> reducer_;
  PhaseTimer* timer_ = nullptr;
  // Whether Adam's gradients are adding up for its next update
  // (optim.adam.step_every: zero_grad() keeps them).
  bool adam_pending_ = false;
};

// The tensor `key` from loaded optimizer state, checked against the shape of
// `like` (when defined). Throws naming the key.
const torch::Tensor& state_tensor(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& key, const torch::Tensor& like);

}  // namespace muonrun

// How one optimizer step turns this step's gradients into new weights: the
// interface every update rule implements, the context the optimizer hands
// it, and the table the rule is chosen from once, at construction.
//
// The rules (one file each):
//   steepest    optim/variant_step.cpp  Muon and AdamW as one steepest descent
//               (Bernstein & Newhouse 2024, "Old Optimizer, New Norm",
//               arXiv:2409.20325; Pethick et al. 2025, Scion, arXiv:2502.07529)
//               and Momo step sizes (Schaipp et al. 2024, arXiv:2305.07583)
//   adamw_only  optim/recipe_step.cpp   AdamW for every parameter
//   recipe      optim/recipe_step.cpp   Muon + AdamW as in the
//               KellerJordan/modded-nanogpt records
//
// To add a variant: write optim/<name>_step.cpp defining a StepRule and
// `StepRuleEntry <name>_step_rule()`, list it in MUONRUN_STEP_RULES
// (optim/step_rule.cpp) and in optim/CMakeLists.txt.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/grad_reducer.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/optim_config.h"
#include "optim/step_plan.h"

namespace muonrun {

class PhaseTimer;  // trainer/base/phase_timer.h

// What a rule may use during one step. The bucketed (AdamW) gradients are
// already reduced; each matrix's gradient comes from gradient(slot), and
// every slot must be passed to share() once its matrix is final (in owner
// mode that all-gathers it while later slots compute), then finish_sharing()
// once.
class StepContext {
 public:
  StepContext(int64_t step, double lr_multiplier, std::optional<double> loss, torch::Tensor skip,
              const OptimConfig& optim, AdamW& adam, Muon* muon, const std::vector<NamedParam>& matrices,
              const StepPlan& plan, Communicator* comm, GradientReducer* reducer, PhaseTimer* timer);

  const int64_t step;            // 0-based
  // Whether Adam updates at this step (optim.adam.step_every; else its
  // gradients keep adding up until it does).
  bool adam_due() const { return (step + 1) % optim.adam.step_every == 0; }
  const double lr_multiplier;    // from the lr schedule
  const std::optional<double> loss;  // the step's training loss, when given
  // Undefined, or a 0-dim bool device tensor: when true the step must leave
  // every weight and all optimizer state as they were (only given to rules
  // whose skips_on_device() holds).
  const torch::Tensor skip;
  const OptimConfig& optim;      // resolved
  AdamW& adam;
  Muon* muon;                    // null when matrix_optimizer = adamw
  PhaseTimer* timer;             // may be null

  // The matrices this rank updates (optim/step_plan.h).
  const std::vector<MatrixSlot>& slots() const { return plan_.slots; }
  // The slots by size class (muon_size_class; in owner mode that of the
  // shard, so every rank groups alike and shares in one order), classes in
  // the order they first occur in slots(): each class is one batched Muon
  // update. The plan puts the shards of a class next to each other, so in
  // owner mode this order is the plan's.
  std::vector<std::vector<MatrixSlot>> slots_by_size_class() const;
  const torch::Tensor& weights(int matrix) const { return matrices_[matrix].tensor; }
  // The step's mean gradient of a slot's matrix (undefined if none).
  torch::Tensor gradient(const MatrixSlot& slot);
  void share(const MatrixSlot& slot);
  void finish_sharing();
  // Sums over ranks of per-rank sums over owned matrices (identity unless
  // matrices are owned); every rank must call it the same number of times.
  std::vector<double> sum_over_owners(const std::vector<double>& partial);

 private:
  struct Gather {
    size_t shard;
    torch::Tensor output;
    std::unique_ptr<Work> work;
  };
  const std::vector<NamedParam>& matrices_;
  const StepPlan& plan_;
  Communicator* comm_;
  GradientReducer* reducer_;
  std::vector<Gather> gathers_;
};

class StepRule {
 public:
  virtual ~StepRule() = default;
  virtual void step(StepContext& context) = 0;
  // Whether step() needs StepContext::loss.
  virtual bool uses_loss() const { return false; }
  // Whether step() honours StepContext::skip, so that a step with
  // non-finite gradients can be skipped without the host reading anything
  // between backward and the update. `adam`: the run's AdamW.
  virtual bool skips_on_device(const AdamW& adam) const { (void)adam; return false; }
  // Appended to Optimizer::describe() after "muon (...) + adamw".
  virtual std::string describe() const { return ""; }
  // The rule's own checkpoint tensors, after AdamW's and Muon's.
  virtual void state(std::vector<std::pair<std::string, torch::Tensor>>& out) const { (void)out; }
  virtual void load_state(const std::map<std::string, torch::Tensor>& tensors) { (void)tensors; }
};

struct StepRuleEntry {
  const char* name;
  bool (*applies)(const OptimConfig& resolved);
  // May throw ConfigError for combinations the rule cannot run.
  std::unique_ptr<StepRule> (*make)(const OptimConfig& resolved);
};

// The registered rules, in the order they are tried.
const std::vector<StepRuleEntry>& step_rules();
// The first registered rule that applies to `resolved`.
std::unique_ptr<StepRule> make_step_rule(const OptimConfig& resolved);

// The dual norms (S, Q) of the previous step, for optim.steepest.stale_dual_norms;
// checkpointed as steepest.stale_norms = [S, Q, whether there are any] (the
// same on every rank) whenever the config asks for stale norms.
struct StaleDualNorms {
  bool enabled = false;
  std::optional<std::pair<double, double>> value;
  void state(std::vector<std::pair<std::string, torch::Tensor>>& out) const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);
};

}  // namespace muonrun

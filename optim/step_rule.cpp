// The registration table of the step rules and the step context they share
// (optim/step_rule.h).
#include "optim/step_rule.h"

#include <algorithm>

#include "optim/optimizer.h"
#include "trainer/base/phase_timer.h"

namespace muonrun {

// One line per rule, tried in this order; the first whose applies() holds
// is used. Each X(name) names `StepRuleEntry name_step_rule()` in its file.
#define MUONRUN_STEP_RULES(X) \
  X(steepest)   /* optim/variant_step.cpp: optim.steepest, optim.momo */ \
  X(adamw_only) /* optim/recipe_step.cpp: matrix_optimizer = adamw */ \
  X(recipe)     /* optim/recipe_step.cpp: Muon + AdamW, always applies */

#define MUONRUN_DECLARE_STEP_RULE(name) StepRuleEntry name##_step_rule();
MUONRUN_STEP_RULES(MUONRUN_DECLARE_STEP_RULE)
#undef MUONRUN_DECLARE_STEP_RULE

const std::vector<StepRuleEntry>& step_rules() {
#define MUONRUN_LIST_STEP_RULE(name) name##_step_rule(),
  static const std::vector<StepRuleEntry> rules = {MUONRUN_STEP_RULES(MUONRUN_LIST_STEP_RULE)};
#undef MUONRUN_LIST_STEP_RULE
  return rules;
}

std::unique_ptr<StepRule> make_step_rule(const OptimConfig& resolved) {
  for (const auto& rule : step_rules())
    if (rule.applies(resolved)) return rule.make(resolved);
  throw std::logic_error("no optimizer step rule applies to this config");
}

StepContext::StepContext(int64_t step, double lr_multiplier, std::optional<double> loss, torch::Tensor skip,
                         const OptimConfig& optim, AdamW& adam, Muon* muon, const std::vector<NamedParam>& matrices,
                         const StepPlan& plan, Communicator* comm, GradientReducer* reducer, PhaseTimer* timer)
    : step(step),
      lr_multiplier(lr_multiplier),
      loss(loss),
      skip(std::move(skip)),
      optim(optim),
      adam(adam),
      muon(muon),
      timer(timer),
      matrices_(matrices),
      plan_(plan),
      comm_(comm),
      reducer_(reducer) {}

std::vector<std::vector<MatrixSlot>> StepContext::slots_by_size_class() const {
  std::vector<std::pair<std::pair<int64_t, int64_t>, std::vector<MatrixSlot>>> classes;
  for (const auto& slot : plan_.slots) {
    int matrix = slot.matrix;
    if (plan_.ownership) {  // any matrix of the shard: this rank may own none of it
      const auto& members = plan_.ownership->shards[slot.shard].slots;
      matrix = *std::find_if(members.begin(), members.end(), [](int m) { return m >= 0; });
    }
    const auto key = muon_size_class(matrices_[matrix].tensor);
    auto it = std::find_if(classes.begin(), classes.end(), [&](const auto& c) { return c.first == key; });
    if (it == classes.end()) it = classes.insert(classes.end(), {key, {}});
    it->second.push_back(slot);
  }
  std::vector<std::vector<MatrixSlot>> out;
  for (auto& c : classes) out.push_back(std::move(c.second));
  return out;
}

torch::Tensor StepContext::gradient(const MatrixSlot& slot) {
  if (plan_.ownership) {
    PhaseScope wait(timer, Phase::CommWait);
    return reducer_->wait_shard(plan_.shard_units[slot.shard]);
  }
  return matrices_[slot.matrix].tensor.grad();
}

void StepContext::share(const MatrixSlot& slot) {
  if (!plan_.ownership) return;
  const auto& slots = plan_.ownership->shards[slot.shard].slots;
  const auto& like = matrices_[*std::find_if(slots.begin(), slots.end(), [](int m) { return m >= 0; })].tensor;
  auto local = slot.matrix >= 0 ? matrices_[slot.matrix].tensor.reshape({-1}) : torch::zeros({like.numel()}, like.options());
  auto output = torch::empty({comm_->size(), like.numel()}, like.options());
  gathers_.push_back({slot.shard, output, comm_->all_gather(local.contiguous(), output)});
}

void StepContext::finish_sharing() {
  for (auto& g : gathers_) {
    {
      PhaseScope wait(timer, Phase::CommWait);
      g.work->wait();
    }
    const auto& slots = plan_.ownership->shards[g.shard].slots;
    for (int r = 0; r < comm_->size(); ++r)
      if (slots[r] >= 0 && r != comm_->rank())
        matrices_[slots[r]].tensor.copy_(g.output[r].view(matrices_[slots[r]].tensor.sizes()));
  }
  gathers_.clear();
}

std::vector<double> StepContext::sum_over_owners(const std::vector<double>& partial) {
  if (!plan_.ownership) return partial;
  auto sums = torch::tensor(partial, torch::kDouble).to(comm_->device());
  comm_->all_reduce_sum(sums)->wait();
  sums = sums.to(torch::kCPU);
  return {sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel()};
}

void StaleDualNorms::state(std::vector<std::pair<std::string, torch::Tensor>>& out) const {
  if (!enabled) return;
  out.emplace_back("steepest.stale_norms", value ? torch::tensor({value->first, value->second, 1.0}, torch::kDouble)
                                                 : torch::zeros({3}, torch::kDouble));
}

void StaleDualNorms::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  if (!enabled) return;
  const auto t = state_tensor(tensors, "steepest.stale_norms", torch::zeros({3})).to(torch::kDouble);
  value.reset();
  if (t[2].item<double>() != 0) value = {t[0].item<double>(), t[1].item<double>()};
}

}  // namespace muonrun

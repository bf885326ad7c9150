#include "optim/optimizer.h"

#include "optim/presets.h"
#include "optim/schedule.h"
#include "trainer/base/phase_timer.h"

namespace muonrun {
namespace {

std::vector<AdamWGroup> adam_groups(const ParamGroups& groups, const OptimConfig& optim) {
  std::vector<AdamWGroup> out;
  const auto& adam = optim.adam;
  if (!groups.embeddings.empty())
    out.push_back({"embed", adam.embed_lr, groups.embeddings, adam.embed_eps, adam.embed_wd_mul});
  if (!groups.heads.empty()) out.push_back({"head", adam.head_lr, groups.heads, adam.head_eps, adam.head_wd_mul});
  if (!groups.scalars.empty())
    out.push_back({"scalar", adam.scalar_lr, groups.scalars, adam.scalar_eps, adam.scalar_wd_mul});
  if (optim.matrix_optimizer == MatrixOptimizer::adamw && !groups.matrices.empty())
    out.push_back({"matrix", adam.matrix_lr, groups.matrices, adam.matrix_eps, adam.matrix_wd_mul});
  return out;
}

}  // namespace

const torch::Tensor& state_tensor(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& key, const torch::Tensor& like) {
  auto it = tensors.find(key);
  if (it == tensors.end()) throw std::runtime_error("optimizer state has no tensor " + key);
  if (like.defined() && it->second.sizes() != like.sizes())
    throw std::runtime_error("optimizer state tensor " + key + " has shape " +
                             c10::str(it->second.sizes()) + ", expected " + c10::str(like.sizes()));
  return it->second;
}

Optimizer::Optimizer(const torch::nn::Module& model, const Config& config, Communicator* comm,
                     PresetResolver resolve)
    : Optimizer(model, config, comm, resolve(config.optim), Resolved{}) {}

Optimizer::Optimizer(const torch::nn::Module& model, const Config& config, Communicator* comm,
                     const OptimConfig& optim, Resolved)
    : adam(adam_groups(group_parameters(model), optim), optim.adam),
      optim_(optim),
      comm_(comm),
      params_(model.parameters()),
      matrices_(group_parameters(model).matrices),
      schedule_(config.schedule, config.train.steps),
      total_steps_(config.train.steps) {
  rule_ = make_step_rule(optim_);
  std::optional<PlanRanks> ranks;
  if (comm) ranks = PlanRanks{comm->size(), comm->rank()};
  plan_ = plan_step(params_, matrices_, adam.groups(), optim_, ranks,
                    static_cast<int64_t>(config.comm.bucket_mb * (1 << 20)));
  if (plan_.use_muon) muon = std::make_unique<Muon>(matrices_, optim_.muon, plan_.owned, total_steps_);
  if (comm) reducer_ = std::make_unique<GradientReducer>(*comm, params_, plan_.units);
}

double Optimizer::lr_multiplier(int64_t step) const {
  return lr_scale_ * schedule_(step);
}

void Optimizer::begin_backward(bool last_micro_step) {
  if (reducer_) reducer_->begin_backward(last_micro_step);
}

void Optimizer::end_backward() {
  if (reducer_) reducer_->end_backward();
}

void Optimizer::step(int64_t step, std::optional<double> loss, const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  if (skip.defined() && !skips_on_device())
    throw std::logic_error("Optimizer::step: this optimizer variant cannot skip a step on the device");
  if (reducer_) {
    PhaseScope wait(timer_, Phase::CommWait);
    for (size_t u : plan_.bucket_units) reducer_->wait_bucket(u);
  }
  StepContext context(step, lr_multiplier(step), loss, skip, optim_, adam, muon.get(), matrices_, plan_, comm_,
                      reducer_.get(), timer_);
  rule_->step(context);
  adam_pending_ = !context.adam_due();
}

void Optimizer::discard_step() {
  adam_pending_ = false;  // the step's gradients are not to be trusted: Adam's sum starts again
  if (!reducer_) return;
  for (size_t u : plan_.bucket_units) reducer_->wait_bucket(u);
  for (size_t u : plan_.shard_units) reducer_->wait_shard(u);
}

std::string Optimizer::describe() const {
  if (!muon) return "adamw";
  std::string out = std::string("muon (polar ") + name_of(optim_.muon.polar) + ", shape " + name_of(optim_.muon.shape_factor) + ") + adamw";
  return out + rule_->describe();
}

void Optimizer::zero_grad(bool set_to_none) {
  auto clear = [&](torch::Tensor& p) {
    if (set_to_none) p.mutable_grad().reset();
    else if (p.grad().defined()) p.mutable_grad().zero_();
  };
  if (!adam_pending_) {
    for (auto& p : params_) clear(p);
  } else if (muon) {  // Adam's gradients add up for its next update: only Muon's matrices start again
    for (auto& p : matrices_) clear(p.tensor);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> Optimizer::state() const {
  auto out = adam.state();
  // Adam's gradient sum between its updates (optim.adam.step_every), the mean
  // over ranks and so the same on each: without it a resume would lose it.
  if (adam_pending_)
    for (const auto& group : adam.groups())
      for (const auto& p : group.params)
        if (p.tensor.grad().defined()) out.emplace_back("adam.pending_grad." + p.name, p.tensor.grad());
  if (muon)
    for (auto& entry : muon->state()) out.push_back(std::move(entry));
  rule_->state(out);  // Momo's, then the stale dual norms
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  adam.load_state(tensors);
  adam_pending_ = false;
  for (const auto& group : adam.groups())
    for (const auto& p : group.params)
      if (auto it = tensors.find("adam.pending_grad." + p.name); it != tensors.end()) {
        p.tensor.mutable_grad() = state_tensor(tensors, it->first, p.tensor).to(p.tensor.device()).clone();
        adam_pending_ = true;
      }
  if (muon) muon->load_state(tensors);
  rule_->load_state(tensors);
}

}  // namespace muonrun

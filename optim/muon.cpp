#include "optim/muon.h"

#include <cmath>

#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace muonrun {

double muon_shape_factor(int64_t rows, int64_t cols) {
  return std::sqrt(std::max(1.0, static_cast<double>(rows) / static_cast<double>(cols)));
}

void muon_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor& momentum,
                 const MuonStep& step) {
  torch::NoGradGuard no_grad;
  const double mu = step.momentum;
  momentum.lerp_(grad, 1 - mu);
  auto direction = step.nesterov ? grad.lerp(momentum, mu) : momentum;
  // bf16 tensor cores on the GPU; fp32 on the CPU, where bf16 is slow and gains nothing.
  const auto dtype = param.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  auto O = newton_schulz(direction, step.ns_steps, step.schedule, dtype);
  if (step.weight_decay != 0) param.mul_(1 - step.lr * step.weight_decay);
  param.add_(O.to(param.scalar_type()), -step.lr * muon_shape_factor(param.size(0), param.size(1)));
}

Muon::Muon(std::vector<NamedParam> params, const MuonConfig& config, std::vector<bool> owned)
    : params_(std::move(params)), config_(config) {
  if (owned.empty()) owned.assign(params_.size(), true);
  TORCH_CHECK(owned.size() == params_.size(), "Muon: one ownership flag per matrix");
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    TORCH_CHECK(p.tensor.dim() == 2, "Muon handles matrices only; ", p.name, " has ",
                p.tensor.dim(), " dimensions");
    if (owned[i]) momentum_[p.name] = torch::zeros_like(p.tensor);
  }
}

void Muon::update(size_t index, const torch::Tensor& grad, const MuonStep& hyper) {
  auto& p = params_.at(index);
  muon_update(p.tensor, grad, momentum_.at(p.name), hyper);
}

MuonStep Muon::step_hyper(double lr_multiplier, int64_t step) const {
  return {config_.lr * lr_multiplier, muon_momentum(step, config_), config_.nesterov,
          config_.ns_steps, config_.weight_decay, quintic_schedule()};
}

void Muon::step(double lr_multiplier, int64_t step) {
  const MuonStep hyper = step_hyper(lr_multiplier, step);
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (momentum_.count(p.name) && p.tensor.grad().defined()) update(i, p.tensor.grad(), hyper);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> Muon::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, m] : momentum_) out.emplace_back("muon.momentum." + name, m);
  return out;
}

void Muon::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& [name, m] : momentum_) m.copy_(state_tensor(tensors, "muon.momentum." + name, m));
}

}  // namespace muonrun

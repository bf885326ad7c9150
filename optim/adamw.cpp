#include "optim/adamw.h"

#include <cmath>

#include "optim/optimizer.h"

namespace muonrun {

AdamW::AdamW(std::vector<AdamWGroup> groups, const AdamConfig& config)
    : groups_(std::move(groups)), config_(config) {
  for (const auto& group : groups_)
    for (const auto& p : group.params)
      state_[p.name] = {torch::zeros_like(p.tensor), torch::zeros_like(p.tensor), 0};
}

void AdamW::step(double lr_multiplier) {
  torch::NoGradGuard no_grad;
  const double b1 = config_.beta1, b2 = config_.beta2;
  for (const auto& group : groups_) {
    const double lr = group.lr * lr_multiplier;
    for (const auto& p : group.params) {
      const auto& grad = p.tensor.grad();
      if (!grad.defined()) continue;
      auto& s = state_.at(p.name);
      s.step += 1;
      auto param = p.tensor;
      param.mul_(1 - lr * config_.weight_decay);
      s.exp_avg.mul_(b1).add_(grad, 1 - b1);
      s.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2);
      const double bias_correction1 = 1 - std::pow(b1, s.step);
      const double bias_correction2 = 1 - std::pow(b2, s.step);
      auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(config_.eps);
      param.addcdiv_(s.exp_avg, denom, -lr / bias_correction1);
    }
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, s] : state_) {
    out.emplace_back("adam.exp_avg." + name, s.exp_avg);
    out.emplace_back("adam.exp_avg_sq." + name, s.exp_avg_sq);
    out.emplace_back("adam.step." + name, torch::tensor(s.step, torch::kInt64));
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& [name, s] : state_) {
    s.exp_avg.copy_(state_tensor(tensors, "adam.exp_avg." + name, s.exp_avg));
    s.exp_avg_sq.copy_(state_tensor(tensors, "adam.exp_avg_sq." + name, s.exp_avg_sq));
    s.step = state_tensor(tensors, "adam.step." + name, {}).item<int64_t>();
  }
}

}  // namespace muonrun

#include "optim/adamw.h"

#include <cmath>
#include <optional>

#include "optim/optimizer.h"
#include "trainer/base/config_error.h"

namespace muonrun {

AdamW::AdamW(std::vector<AdamWGroup> groups, const AdamConfig& config)
    : groups_(std::move(groups)), config_(config) {
  if (config_.cautious_weight_decay && config_.nested)
    throw ConfigError("optim.adam.cautious_weight_decay needs the plain Adam update, not optim.adam.nested");
  for (auto& group : groups_) {
    if (group.eps == 0) group.eps = config_.eps;
    for (const auto& p : group.params)
      state_[p.name] = {torch::zeros_like(p.tensor), torch::zeros_like(p.tensor),
                        torch::zeros({}, torch::dtype(torch::kFloat).device(p.tensor.device()))};
  }
}

bool AdamW::fused() const {
  return config_.bias_correction && config_.zero_init && !config_.nested && !config_.eps_before_bias_correction &&
         !config_.cautious_weight_decay;
}

std::map<std::string, int64_t> AdamW::host_steps() const {
  std::map<std::string, int64_t> out;
  if (state_.empty()) return out;
  std::vector<torch::Tensor> steps;
  for (const auto& [name, s] : state_) steps.push_back(s.step.to(torch::kCPU));
  const auto all = torch::stack(steps);
  size_t i = 0;
  for (const auto& [name, s] : state_) out[name] = static_cast<int64_t>(all[static_cast<int64_t>(i++)].item<float>());
  return out;
}

double AdamW::correction1(int64_t t) const {
  return config_.bias_correction ? 1 - std::pow(config_.beta1, t) : 1.0;
}

double AdamW::correction2(int64_t t) const {
  return config_.bias_correction ? 1 - std::pow(config_.beta2, t) : 1.0;
}

torch::Tensor AdamW::denominator(const ParamState& s, int64_t t, double eps) const {
  if (config_.eps_before_bias_correction) return s.exp_avg_sq.sqrt().add_(eps).div_(std::sqrt(correction2(t)));
  return (s.exp_avg_sq.sqrt() / std::sqrt(correction2(t))).add_(eps);
}

void AdamW::step(double lr_multiplier, const torch::Tensor& skip) {
  if (!fused()) {
    TORCH_CHECK(!skip.defined(), "AdamW: a device-side skip needs the fused step (the default arithmetic)");
    advance();
    apply(lr_multiplier, BackupNorm::ada_inf, {}, {});
    return;
  }
  torch::NoGradGuard no_grad;
  // found_inf as the kernel reads it (float 1: leave everything as it is);
  // the count advances by 1 - found_inf, as torch.optim.AdamW(fused=True) does.
  std::optional<torch::Tensor> found_inf;
  torch::Tensor advance;
  if (skip.defined()) {
    found_inf = skip.to(torch::kFloat);
    advance = 1 - *found_inf;
  }
  for (const auto& group : groups_) {
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (const auto& p : group.params) {
      const auto& grad = p.tensor.grad();
      if (!grad.defined()) continue;
      auto& s = state_.at(p.name);
      params.push_back(p.tensor);
      grads.push_back(grad);
      exp_avgs.push_back(s.exp_avg);
      exp_avg_sqs.push_back(s.exp_avg_sq);
      steps.push_back(s.step);
    }
    if (params.empty()) continue;
    if (advance.defined()) at::_foreach_add_(steps, advance);
    else at::_foreach_add_(steps, 1);
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps,
                      group.lr * lr_multiplier, config_.beta1, config_.beta2, config_.weight_decay * group.wd_mul,
                      group.eps,
                      /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, found_inf);
  }
}

void AdamW::advance() {
  torch::NoGradGuard no_grad;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const auto steps = host_steps();
  for (const auto& group : groups_) {
    for (const auto& p : group.params) {
      const auto& grad = p.tensor.grad();
      if (!grad.defined()) continue;
      auto& s = state_.at(p.name);
      s.step.add_(1);
      const int64_t t = steps.at(p.name) + 1;
      // Not zero-initialised: the moments start at the first gradient, so
      // that the first EMA update leaves them there (m1 = g1, v1 = g1^2).
      const bool start_at_gradient = !config_.zero_init && t == 1;
      if (start_at_gradient) s.exp_avg_sq.copy_(grad * grad);
      s.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2);
      // Nested EMA, s = b1 s + (1-b1) g / (sqrt(v) + eps): the momentum of the
      // normalised gradient.
      auto first = config_.nested ? grad / denominator(s, t, group.eps) : grad;
      if (start_at_gradient) s.exp_avg.copy_(first);
      s.exp_avg.mul_(b1).add_(first, 1 - b1);
    }
  }
}

std::vector<double> AdamW::dual_norms(BackupNorm norm) const {
  torch::NoGradGuard no_grad;
  const auto steps = host_steps();
  std::vector<double> out;
  for (const auto& group : groups_) {
    double sum = 0;
    for (const auto& p : group.params) {
      if (!p.tensor.grad().defined()) continue;
      const auto& s = state_.at(p.name);
      const int64_t t = steps.at(p.name);
      const double c1 = correction1(t);
      if (norm == BackupNorm::sign) {
        sum += s.exp_avg.abs().sum().item<double>() / c1;  // ||m^||_1
      } else {  // <m^, m^ / (sqrt(v^) + eps)>
        sum += (s.exp_avg * s.exp_avg / denominator(s, t, group.eps)).sum().item<double>() / (c1 * c1);
      }
    }
    out.push_back(norm == BackupNorm::ada_2 ? std::sqrt(sum) : sum);
  }
  return out;
}

void AdamW::apply(double lr_multiplier, BackupNorm norm, const std::vector<double>& scales,
                  const std::vector<double>& dual_norms) {
  torch::NoGradGuard no_grad;
  const auto steps = host_steps();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const auto& group = groups_[g];
    const double lr = group.lr * lr_multiplier;
    const double k = scales.empty() ? 1.0 : scales[g];
    for (const auto& p : group.params) {
      if (!p.tensor.grad().defined()) continue;
      const auto& s = state_.at(p.name);
      const int64_t t = steps.at(p.name);
      auto param = p.tensor;
      const double decay = lr * config_.weight_decay * group.wd_mul;
      if (config_.cautious_weight_decay) {
        TORCH_CHECK(norm == BackupNorm::ada_inf && k == 1, "cautious weight decay is Adam's own step only");
        // u = lr/(1-b1^t) m / (...): the mask where the update and the weight
        // agree in sign (>= 0: zero updates decay too), the decay taken on top.
        auto update = s.exp_avg / denominator(s, t, group.eps) * (lr / correction1(t));
        update.addcmul_(param, (update * param).ge(0).to(param.scalar_type()), decay * lr);
        param.sub_(update);
        continue;
      }
      param.mul_(1 - decay);
      if (config_.nested) {
        param.add_(s.exp_avg, -lr * k / correction1(t));
      } else if (norm == BackupNorm::sign) {
        param.add_(s.exp_avg.sign(), -lr * k);
      } else {
        // ada_2's LMO is ada_inf's direction divided by the dual norm.
        const double n = norm == BackupNorm::ada_2 ? dual_norms[g] : 1.0;
        if (n > 0) param.addcdiv_(s.exp_avg, denominator(s, t, group.eps), -lr * k / correction1(t) / n);
      }
    }
  }
}

std::pair<double, double> AdamW::momo_inner_products() const {
  torch::NoGradGuard no_grad;
  const auto steps = host_steps();
  double grad_dot = 0, momentum_dot = 0;
  for (const auto& group : groups_) {
    for (const auto& p : group.params) {
      if (!p.tensor.grad().defined()) continue;
      const auto& s = state_.at(p.name);
      const double mass = config_.zero_init ? 1 - std::pow(config_.beta1, steps.at(p.name)) : 1.0;
      grad_dot += (p.tensor.grad() * p.tensor).sum().item<double>();
      momentum_dot += (s.exp_avg * p.tensor).sum().item<double>() / mass;
    }
  }
  return {grad_dot, momentum_dot};
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, s] : state_) {
    out.emplace_back("adam.exp_avg." + name, s.exp_avg);
    out.emplace_back("adam.exp_avg_sq." + name, s.exp_avg_sq);
    // int64 on the host, as before the counts moved to the device.
    out.emplace_back("adam.step." + name, s.step.to(torch::kCPU).to(torch::kInt64));
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& [name, s] : state_) {
    s.exp_avg.copy_(state_tensor(tensors, "adam.exp_avg." + name, s.exp_avg));
    s.exp_avg_sq.copy_(state_tensor(tensors, "adam.exp_avg_sq." + name, s.exp_avg_sq));
    s.step.fill_(state_tensor(tensors, "adam.step." + name, {}).item<int64_t>());
  }
}

}  // namespace muonrun

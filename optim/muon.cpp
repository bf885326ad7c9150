#include "optim/muon.h"

#include <cmath>
#include <stdexcept>

#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace muonrun {

double muon_shape_factor(int64_t rows, int64_t cols, ShapeFactor shape) {
  const double r = static_cast<double>(rows), c = static_cast<double>(cols);
  switch (shape) {
    case ShapeFactor::original: return std::sqrt(std::max(1.0, r / c));
    case ShapeFactor::match_rms_adamw: return 0.2 * std::sqrt(std::max(r, c));
    case ShapeFactor::spectral: return std::sqrt(r / c);
  }
  return 1.0;
}

void muon_advance_momentum(torch::Tensor& momentum, const torch::Tensor& grad, const MuonStep& step) {
  torch::NoGradGuard no_grad;
  momentum.lerp_(grad, 1 - step.momentum);
}

MuonDirection muon_direction(const torch::Tensor& grad, const torch::Tensor& momentum, const MuonStep& step) {
  torch::NoGradGuard no_grad;
  auto input = step.nesterov ? grad.lerp(momentum, step.momentum) : momentum;
  if (step.exact_polar) return {input, exact_polar(input)};
  // bf16 tensor cores on the GPU; fp32 on the CPU, where bf16 is slow and gains nothing.
  const auto dtype = grad.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  return {input, newton_schulz(input, step.ns_steps, step.schedule, dtype)};
}

double muon_dual_norm(const MuonDirection& direction, const MuonStep& step) {
  torch::NoGradGuard no_grad;
  const auto& U = direction.input;
  const double inner = (U.to(torch::kDouble) * direction.polar.to(torch::kDouble)).sum().item<double>();
  return muon_shape_factor(U.size(0), U.size(1), step.shape) * inner;
}

void muon_apply(torch::Tensor param, const torch::Tensor& polar, const MuonStep& step, double scale) {
  torch::NoGradGuard no_grad;
  if (step.weight_decay != 0) param.mul_(1 - step.lr * step.weight_decay);
  param.add_(polar.to(param.scalar_type()),
             -step.lr * scale * muon_shape_factor(param.size(0), param.size(1), step.shape));
}

void muon_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor& momentum,
                 const MuonStep& step) {
  muon_advance_momentum(momentum, grad, step);
  muon_apply(param, muon_direction(grad, momentum, step).polar, step, 1.0);
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

void Muon::advance_momentum(size_t index, const torch::Tensor& grad, const MuonStep& hyper) {
  muon_advance_momentum(momentum_.at(params_.at(index).name), grad, hyper);
}

MuonDirection Muon::direction(size_t index, const torch::Tensor& grad, const MuonStep& hyper) const {
  return muon_direction(grad, momentum_.at(params_.at(index).name), hyper);
}

void Muon::apply(size_t index, const torch::Tensor& polar, const MuonStep& hyper, double scale) {
  muon_apply(params_.at(index).tensor, polar, hyper, scale);
}

double Muon::momentum_dot_weights(size_t index) const {
  torch::NoGradGuard no_grad;
  const auto& p = params_.at(index);
  return (momentum_.at(p.name).to(torch::kDouble) * p.tensor.to(torch::kDouble)).sum().item<double>();
}

namespace {

// The Newton-Schulz coefficients of optim.muon.polar (svd computes the polar
// factor exactly and keeps the quintic schedule unused, as before).
NewtonSchulzSchedule polar_schedule(Polar polar) {
  switch (polar) {
    case Polar::quintic: return quintic_schedule();
    case Polar::polar_express: return polar_express_schedule();
    case Polar::svd: return quintic_schedule();
  }
  throw std::logic_error("optim.muon.polar: not a Polar value");
}

}  // namespace

MuonStep Muon::step_hyper(double lr_multiplier, int64_t step) const {
  MuonStep hyper{config_.lr * lr_multiplier, muon_momentum(step, config_), config_.nesterov,
                 config_.ns_steps, config_.weight_decay,
                 polar_schedule(config_.polar)};
  hyper.exact_polar = config_.polar == Polar::svd;
  hyper.shape = config_.shape_factor;
  return hyper;
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

#include "optim/muon.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "trainer/base/config_error.h"
#include "trainer/base/strings.h"

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
  return muon_shape_factor(U.size(-2), U.size(-1), step.shape) * inner;
}

void muon_apply(torch::Tensor param, const torch::Tensor& polar, const MuonStep& step, double scale) {
  torch::NoGradGuard no_grad;
  if (step.weight_decay != 0) param.mul_(1 - step.lr * step.weight_decay);
  param.add_(polar.to(param.scalar_type()),
             -step.lr * scale * muon_shape_factor(param.size(-2), param.size(-1), step.shape));
}

namespace {

// m x n and n x m matrices share one stack in the orientation rows <= cols,
// the one Newton-Schulz works in.
torch::Tensor wide(const torch::Tensor& t) { return t.size(-2) > t.size(-1) ? t.transpose(-2, -1) : t; }

// The matrices of `t` ([rows, cols] or a stack [..., rows, cols]) as [k, m, n], wide.
torch::Tensor as_stack(const torch::Tensor& t) {
  const auto w = wide(t);
  return w.reshape({-1, w.size(-2), w.size(-1)});
}

// NorMuon on one parameter's stack of orthogonalised updates O [k, m, n]
// (wide) with its buffer B ([k, m, 1] or [k, 1, n]): B's EMA of O's mean
// squares along the other axis, then O rescaled by B^-1/2, its norm kept.
// A skipped step leaves B as it was (O is 0 then, and stays 0).
torch::Tensor normuon_scale(const torch::Tensor& O, torch::Tensor& B, double beta2, const torch::Tensor& skip) {
  const int64_t axis = B.size(-1) == 1 && O.size(-1) != 1 ? -1 : -2;  // the axis averaged over
  const auto o = O.to(torch::kFloat);
  const auto mean_square = o.square().mean(axis, /*keepdim=*/true);
  const double count = static_cast<double>(O.size(axis));
  const auto norm = (mean_square.sum({-2, -1}, true) * count).sqrt();
  auto updated = B.lerp(mean_square, 1 - beta2);
  if (skip.defined()) updated = torch::where(skip, B, updated);
  B.copy_(updated);
  const auto inverse_root = updated.clamp_min(1e-10).rsqrt();
  const auto scaled_norm = (mean_square * count * inverse_root.square()).sum({-2, -1}, true).sqrt();
  return (o * (inverse_root * norm / scaled_norm.clamp_min(1e-10))).to(O.scalar_type());
}

}  // namespace

torch::Tensor muon_second_moment(const std::string& name, const torch::Tensor& param) {
  const int64_t rows = param.size(-2), cols = param.size(-1);
  const auto stack = as_stack(param);  // wide: a tall matrix's rows are the stack's columns
  // The record's axis on the stored matrix: per row when rows >= cols or a gate, else per column.
  const bool per_stored_row = name.find("gate") != std::string::npos || rows >= cols;
  const bool transposed = rows > cols;
  const bool per_stack_row = per_stored_row != transposed;
  return torch::zeros({stack.size(0), per_stack_row ? stack.size(1) : 1, per_stack_row ? 1 : stack.size(2)},
                      param.options().dtype(torch::kFloat));
}

std::vector<double> parse_muon_lr_mul(const std::string& text, const std::vector<NamedParam>& params) {
  std::vector<double> out(params.size(), 1.0);
  for (const auto& entry : words(text)) {
    const auto eq = entry.find('=');
    const auto factor = eq == std::string::npos ? std::nullopt : parse_number(entry.substr(eq + 1));
    if (eq == 0 || !factor || !(*factor > 0) || !std::isfinite(*factor))
      throw ConfigError("optim.muon.lr_mul: '" + entry + "' is not suffix=factor with a positive factor");
    const std::string suffix = entry.substr(0, eq);
    bool matched = false;
    for (size_t i = 0; i < params.size(); ++i)
      if (ends_with(params[i].name, suffix)) {
        out[i] = *factor;
        matched = true;
      }
    if (!matched) throw ConfigError("optim.muon.lr_mul: '" + suffix + "' ends no matrix's name");
  }
  return out;
}

std::pair<int64_t, int64_t> muon_size_class(int64_t rows, int64_t cols) {
  return {std::min(rows, cols), std::max(rows, cols)};
}

std::pair<int64_t, int64_t> muon_size_class(const torch::Tensor& t) { return muon_size_class(t.size(-2), t.size(-1)); }

void muon_update_batch(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                       const std::vector<torch::Tensor>& momenta, const MuonStep& step, const torch::Tensor& skip,
                       const std::vector<torch::Tensor>& second_moments, const std::vector<double>& lr_muls) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(!params.empty() && grads.size() == params.size() && momenta.size() == params.size(),
              "muon_update_batch: one gradient and one momentum per parameter");
  TORCH_CHECK(second_moments.empty() || second_moments.size() == params.size(),
              "muon_update_batch: one NorMuon buffer per parameter, or none");
  TORCH_CHECK(lr_muls.empty() || lr_muls.size() == params.size(), "muon_update_batch: one lr multiplier per parameter");
  // The scale of each update: shape factor x lr multiplier.
  std::vector<double> scale;
  for (size_t k = 0; k < params.size(); ++k)
    scale.push_back(muon_shape_factor(params[k].size(-2), params[k].size(-1), step.shape) *
                    (lr_muls.empty() ? 1.0 : lr_muls[k]));
  // A parameter that is a stack of matrices (record 29's qkvo_w [4, dim,
  // dim]) contributes each of them to the stack: they are orthogonalised
  // separately, as the record's batched Newton-Schulz does.
  std::vector<torch::Tensor> g, m;
  std::vector<int64_t> counts;
  for (size_t k = 0; k < params.size(); ++k) {
    TORCH_CHECK(params[k].dim() >= 2 && muon_size_class(params[k]) == muon_size_class(params[0]),
                "muon_update_batch: matrices of one size class only");
    g.push_back(as_stack(grads[k]));
    m.push_back(as_stack(momenta[k]));
    counts.push_back(g.back().size(0));
  }
  auto G = torch::cat(g), M = torch::cat(m);
  // A skipped step: the momentum moves towards itself (lerp(M, M, w) = M,
  // whatever NaN the gradient holds) and the update is the polar factor of
  // 0, which is 0; weight decay multiplies by 1.
  if (skip.defined()) G = torch::where(skip, M, G);
  M.lerp_(G, 1 - step.momentum);
  auto U = step.nesterov ? G.lerp(M, step.momentum) : M;
  if (skip.defined()) U = U.masked_fill(skip, 0);
  std::vector<torch::Tensor> wide_momenta, new_momenta;
  const auto M_parts = M.split_with_sizes(counts);
  for (size_t k = 0; k < momenta.size(); ++k) {
    wide_momenta.push_back(wide(momenta[k]));
    new_momenta.push_back(M_parts[k].view(wide_momenta.back().sizes()));
  }
  at::_foreach_copy_(wide_momenta, new_momenta);
  // bf16 tensor cores on the GPU; fp32 on the CPU, where bf16 is slow and gains nothing.
  const auto dtype = G.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  auto O = (step.exact_polar ? exact_polar(U) : newton_schulz(U, step.ns_steps, step.schedule, dtype))
               .to(params[0].scalar_type());
  auto O_parts = O.split_with_sizes(counts);
  for (size_t k = 0; k < second_moments.size(); ++k) {
    auto B = second_moments[k];
    O_parts[k] = normuon_scale(O_parts[k], B, step.normuon_beta2, skip);
  }
  if (step.weight_decay != 0 && step.cautious_weight_decay) {
    // W -= W [O W >= 0] wd lr (lr s): where the update would move the weight
    // towards zero anyway; none on a skipped step.
    for (size_t k = 0; k < params.size(); ++k) {
      const auto W = wide(params[k]);
      const auto update = O_parts[k].view(W.sizes());
      auto decay = W * update.mul(W).ge(0).to(W.scalar_type()) * (step.weight_decay * step.lr * step.lr * scale[k]);
      if (skip.defined()) decay = decay.masked_fill(skip, 0);
      W.sub_(decay);
    }
  } else if (step.weight_decay != 0) {
    if (skip.defined()) at::_foreach_mul_(params, torch::where(skip, 1.0, 1 - step.lr * step.weight_decay));
    else at::_foreach_mul_(params, 1 - step.lr * step.weight_decay);
  }
  // W -= lr s O, one multi-tensor add per scale s (a size class has at most
  // two shape factors, its wide and its tall matrices, times the lr multipliers).
  std::map<double, std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>> by_factor;
  for (size_t k = 0; k < params.size(); ++k) {
    auto& [targets, updates] = by_factor[scale[k]];
    targets.push_back(wide(params[k]));
    updates.push_back(O_parts[k].view(targets.back().sizes()));
  }
  for (auto& [factor, lists] : by_factor) at::_foreach_add_(lists.first, lists.second, -step.lr * factor);
}

void muon_update(torch::Tensor param, const torch::Tensor& grad, torch::Tensor& momentum,
                 const MuonStep& step) {
  muon_update_batch({param}, {grad}, {momentum}, step, {});
}

Muon::Muon(std::vector<NamedParam> params, const MuonConfig& config, std::vector<bool> owned, int64_t total_steps)
    : params_(std::move(params)), config_(config), total_steps_(total_steps),
      lr_mul_(parse_muon_lr_mul(config.lr_mul, params_)) {
  if (owned.empty()) owned.assign(params_.size(), true);
  TORCH_CHECK(owned.size() == params_.size(), "Muon: one ownership flag per matrix");
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    TORCH_CHECK(p.tensor.dim() >= 2, "Muon handles matrices and stacks of matrices only; ", p.name, " has ",
                p.tensor.dim(), " dimensions");
    if (owned[i]) momentum_[p.name] = torch::zeros_like(p.tensor);
    if (owned[i] && config_.normuon) second_moment_[p.name] = muon_second_moment(p.name, p.tensor);
  }
}

void Muon::update(size_t index, const torch::Tensor& grad, const MuonStep& hyper) {
  update(std::vector<size_t>{index}, {grad}, hyper);
}

void Muon::update(const std::vector<size_t>& indices, const std::vector<torch::Tensor>& grads,
                  const MuonStep& hyper, const torch::Tensor& skip) {
  TORCH_CHECK(grads.size() == indices.size(), "Muon::update: one gradient per matrix");
  // Size classes in the order they first occur, each one batched update.
  std::vector<std::pair<std::pair<int64_t, int64_t>, std::vector<size_t>>> classes;
  for (size_t k = 0; k < indices.size(); ++k) {
    const auto& t = params_.at(indices[k]).tensor;
    const auto key = muon_size_class(t);
    auto it = std::find_if(classes.begin(), classes.end(), [&](const auto& c) { return c.first == key; });
    if (it == classes.end()) it = classes.insert(classes.end(), {key, {}});
    it->second.push_back(k);
  }
  for (const auto& [key, members] : classes) {
    std::vector<torch::Tensor> params, batch_grads, momenta, second_moments;
    std::vector<double> lr_muls;
    for (size_t k : members) {
      const auto& p = params_.at(indices[k]);
      params.push_back(p.tensor);
      batch_grads.push_back(grads[k]);
      momenta.push_back(momentum_.at(p.name));
      if (config_.normuon) second_moments.push_back(second_moment_.at(p.name));
      lr_muls.push_back(lr_mul_.at(indices[k]));
    }
    muon_update_batch(params, batch_grads, momenta, hyper, skip, second_moments, lr_muls);
  }
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
  MuonStep hyper{config_.lr * lr_multiplier, muon_momentum(step, config_, total_steps_), config_.nesterov,
                 config_.ns_steps, config_.weight_decay,
                 polar_schedule(config_.polar)};
  hyper.exact_polar = config_.polar == Polar::svd;
  hyper.shape = config_.shape_factor;
  hyper.normuon_beta2 = config_.normuon_beta2;
  hyper.cautious_weight_decay = config_.cautious_weight_decay;
  return hyper;
}

std::vector<std::pair<std::string, torch::Tensor>> Muon::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, m] : momentum_) out.emplace_back("muon.momentum." + name, m);
  for (const auto& [name, b] : second_moment_) out.emplace_back("muon.second_moment." + name, b);
  return out;
}

void Muon::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& [name, m] : momentum_) m.copy_(state_tensor(tensors, "muon.momentum." + name, m));
  for (auto& [name, b] : second_moment_) b.copy_(state_tensor(tensors, "muon.second_moment." + name, b));
}

}  // namespace muonrun

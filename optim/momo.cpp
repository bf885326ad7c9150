#include "optim/momo.h"

#include <algorithm>
#include <cmath>

#include "optim/optimizer.h"

namespace muonrun {

double momo_step_fraction(double model_loss, double f_star, double lr, double dual_norm, SteepestMode mode) {
  const double decrease_per_lr = lr * (mode == SteepestMode::regularized ? dual_norm * dual_norm : dual_norm);
  if (!(decrease_per_lr > 0)) return 1.0;  // no step to truncate
  return std::min(1.0, std::max(0.0, model_loss - f_star) / decrease_per_lr);
}

double Momo::model_loss(double loss, double grad_dot_weights, double momentum_dot_weights) {
  const double beta = config_.beta;
  average_ = beta * average_ + (1 - beta) * (loss - grad_dot_weights);
  steps_ += 1;
  return average_ / (1 - std::pow(beta, static_cast<double>(steps_))) + momentum_dot_weights;
}

std::vector<std::pair<std::string, torch::Tensor>> Momo::state() const {
  return {{"momo.average", torch::tensor(average_, torch::kDouble)},
          {"momo.steps", torch::tensor(steps_, torch::kInt64)}};
}

void Momo::load_state(const std::map<std::string, torch::Tensor>& tensors) {
  average_ = state_tensor(tensors, "momo.average", {}).item<double>();
  steps_ = state_tensor(tensors, "momo.steps", {}).item<int64_t>();
}

}  // namespace muonrun

// Momo step sizes (Schaipp, Ohana, Eickenberg, Defazio, Gower, "MoMo: Momentum
// Models for Adaptive Learning Rates", ICML 2024, arXiv:2305.07583) on top of
// any steepest descent of optim/steepest_descent.h, as proposed for Muon in
// M. Crawshaw's talk "An Exploration of Non-Euclidean Gradient Descent: Muon
// and its Many Variants" (2026).
//
// The loss at the current weights w_t is modelled by the momentum average of
// first-order models of the past losses,
//   f~_t = sum_i rho_i (f_i(w_i) + <g_i, w_t - w_i>) = F_t + <m_t, w_t>,
//   F_t  = EMA_beta of (f_i(w_i) - <g_i, w_i>),
// and the step stops where that linear model reaches the lower bound f*:
//   constrained   lr' = min(lr, (f~ - f*)_+ / N)
//   regularized   lr' = min(lr, (f~ - f*)_+ / N^2)
// with N the dual norm of the momentum (total_dual_norm). Every block is
// scaled by the same fraction lr'/lr in [0, 1]: never further than the plain
// lr, and exactly the plain lr once f* is far enough below the loss.
//
// Choice: the talk's weights rho_i sum to 1, those of a zero-initialised EMA
// to 1 - beta^t; F and every momentum are divided by their weight sum
// ("mass", as Adam's bias correction does) before forming f~, so the model is
// not biased towards 0 in the first steps.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "optim/steepest_descent.h"
#include "optim/optim_config.h"

namespace muonrun {

// lr'/lr for a model loss f~, the bound f*, the plain lr and the dual norm N.
double momo_step_fraction(double model_loss, double f_star, double lr, double dual_norm, SteepestMode mode);

class Momo {
 public:
  explicit Momo(const MomoConfig& config) : config_(config) {}

  // Folds in this step's loss f_t and <g_t, w_t>; returns f~_t for
  // <m_t, w_t> computed with mass-normalised momenta.
  double model_loss(double loss, double grad_dot_weights, double momentum_dot_weights);
  double f_star() const { return config_.f_star; }

  // momo.average and momo.steps, for checkpoints.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors);

 private:
  MomoConfig config_;
  double average_ = 0;  // F, zero-initialised
  int64_t steps_ = 0;
};

}  // namespace muonrun

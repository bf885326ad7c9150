#include "optim/steepest_descent.h"

#include <cmath>

namespace muonrun {

SteepestVariant steepest_variant(const SteepestConfig& config) {
  SteepestVariant v;
  v.mode = config.mode;
  v.outer = config.outer_norm;
  v.backup = config.backup_norm;
  v.stale = config.stale_dual_norms;
  return v;
}

bool is_plain(const SteepestVariant& variant) {
  return variant.mode == SteepestMode::constrained && variant.outer == OuterNorm::max &&
         variant.backup == BackupNorm::ada_inf;
}

bool matrices_separable(const SteepestVariant& variant) {
  // Constrained max: k_l = 1; regularized l2: k_l = n_l. The others need S or Q.
  return (variant.mode == SteepestMode::constrained && variant.outer == OuterNorm::max) ||
         (variant.mode == SteepestMode::regularized && variant.outer == OuterNorm::l2);
}

double total_dual_norm(const SteepestVariant& variant, const BlockDualNorms& norms,
                       const std::vector<double>& lr_ratios) {
  double groups = 0;  // sum_g r_g n_g (max) or sum_g r_g n_g^2 (l2, hybrid)
  for (size_t g = 0; g < norms.groups.size(); ++g) {
    const double n = norms.groups[g];
    groups += variant.outer == OuterNorm::max ? lr_ratios[g] * n : lr_ratios[g] * n * n;
  }
  switch (variant.outer) {
    case OuterNorm::max: return norms.matrix_sum + groups;
    case OuterNorm::l2: return std::sqrt(norms.matrix_sum_sq + groups);
    case OuterNorm::hybrid: return std::sqrt(norms.matrix_sum * norms.matrix_sum + groups);
  }
  return 0;
}

StepScales step_scales(const SteepestVariant& variant, const BlockDualNorms& norms,
                       const std::vector<double>& lr_ratios, double fraction) {
  const double N = total_dual_norm(variant, norms, lr_ratios);
  StepScales scales;
  scales.matrix_constant = 0;
  if (variant.mode == SteepestMode::regularized) {
    // f x (n / N) = n: written without N, which cancels (and may be 0).
    for (double n : norms.groups) scales.groups.push_back(fraction * (variant.outer == OuterNorm::max ? N : n));
    switch (variant.outer) {
      case OuterNorm::max: scales.matrix_constant = fraction * N; break;
      case OuterNorm::l2: scales.matrix_per_dual = fraction; break;
      case OuterNorm::hybrid: scales.matrix_constant = fraction * norms.matrix_sum; break;
    }
    return scales;
  }
  // A zero momentum (N = 0) takes no step.
  const double inverse_N = N > 0 ? 1 / N : 0;
  for (double n : norms.groups) scales.groups.push_back(fraction * (variant.outer == OuterNorm::max ? 1 : n * inverse_N));
  switch (variant.outer) {
    case OuterNorm::max: scales.matrix_constant = fraction; break;
    case OuterNorm::l2: scales.matrix_per_dual = fraction * inverse_N; break;
    case OuterNorm::hybrid: scales.matrix_constant = fraction * norms.matrix_sum * inverse_N; break;
  }
  return scales;
}

}  // namespace muonrun

// Muon and AdamW as one steepest descent over all parameters (M. Crawshaw,
// with C. Modi, M. Liu, R. M. Gower, talk "An Exploration of Non-Euclidean
// Gradient Descent: Muon and its Many Variants", 2026; "the talk" below).
//
// The parameters form blocks: each hidden matrix l, and each AdamW group g
// (embedding, head, scalars) as one vector. Every block has a norm whose
// linear minimisation oracle (LMO, the unit vector d with the largest <m, d>)
// and dual norm n = <m, d> are cheap, m being the block's momentum (Muon's
// Nesterov input U for a matrix; AdamW's m and v, bias-corrected when that is
// on, for a group):
//   matrix   ||W|| = ||W||_{2->2} / s     d = s polar(m)     n = s ||m||_nuc
//            (s: Muon's shape factor, so the speedrun's Muon is this LMO)
//   ada_inf  ||x|| = ||(sqrt(v)+eps)/|m| . x||_inf   d = m / (sqrt(v)+eps)      n = <m, d>
//   sign     ||x|| = ||x||_inf                       d = sign(m)                n = ||m||_1
//   ada_2    ||x|| = ||sqrt(sqrt(v)+eps) . x||_2     d = m / (sqrt(v)+eps) / n  n = ||m / sqrt(sqrt(v)+eps)||_2
// A group's norm is weighted by its lr relative to Muon's, so that each group
// keeps its own lr: c_g = lr_muon / lr_g multiplies the group's norm under the
// max outer norm (the talk's MuonAdam norm) and its squared norm under l2 and
// hybrid (the talk's MuonMax norm).
//
// The outer norm combines the blocks, and fixes the dual norm N of the whole
// (with S = sum_l n_l over matrices, Q = sum_l n_l^2, r_g = lr_g / lr_muon):
//   max     ||.|| = max over blocks                N = S + sum_g r_g n_g
//   l2      ||.||^2 = sum over blocks              N = sqrt(Q + sum_g r_g n_g^2)
//   hybrid  ||.||^2 = (max over matrices)^2 + sum over groups
//                                                  N = sqrt(S^2 + sum_g r_g n_g^2)
// The step of a block is W -= lr_block x k_block x d_block with
//   constrained   (W - lr LMO):                 f = 1
//   regularized   (W - lr N LMO):               f = N
//   max     k_l = f            k_g = f
//   l2      k_l = f n_l / N    k_g = f n_g / N
//   hybrid  k_l = f S / N      k_g = f n_g / N
// which gives the talk's formulas ("Outer Norm Examples", "Incorporating
// Non-Matrix Parameters", "A New Algorithm"; its sums over layers are S and Q
// here, its N gains the groups' terms): constrained max is the speedrun's
// Muon + Adam (all k = 1); regularized max is W_l -= lr (sum_j ||M_j||_nuc)
// polar(M_l); l2 constrained scales layer l by ||M_l||_nuc / sqrt(sum_j
// ||M_j||_nuc^2); l2 regularized by ||M_l||_nuc; hybrid regularized
// (MuonMax) by sum_j ||M_j||_nuc, with its non-matrix step lr_g m/(sqrt(v)+eps).
// Momo multiplies every k by one step fraction (optim/momo.h).
//
// Choice where the talk is ambiguous: its MuonMax slide moves the non-matrix
// parameters by m / sqrt(sqrt(v)+eps), which is not the steepest step of the
// ada_2 norm whose dual norm the same slide uses for Momo; we keep the norm
// and its dual norm, so the regularized ada_2 step is lr m / (sqrt(v)+eps).
#pragma once

#include <string>
#include <vector>

#include "optim/optim_config.h"

namespace muonrun {

// SteepestMode, OuterNorm and BackupNorm: optim/optim_config.h.
struct SteepestVariant {
  SteepestMode mode = SteepestMode::constrained;
  OuterNorm outer = OuterNorm::max;
  BackupNorm backup = BackupNorm::ada_inf;
  bool stale = false;
};

// From the config's choices.
SteepestVariant steepest_variant(const SteepestConfig& config);

// The speedrun's Muon + Adam: every scale is 1 and no dual norm is needed
// (stale dual norms change nothing).
bool is_plain(const SteepestVariant& variant);
// Whether a matrix's scale k_l needs no sum over other matrices, so it can be
// applied as soon as its LMO is known (before Momo).
bool matrices_separable(const SteepestVariant& variant);

// Dual norms n of this step's blocks, before the outer norm.
struct BlockDualNorms {
  double matrix_sum = 0;     // S = sum over matrices of n_l
  double matrix_sum_sq = 0;  // Q = sum over matrices of n_l^2
  std::vector<double> groups;  // n_g, one per AdamW group
};

// N: the dual norm of the momentum in the outer norm. `lr_ratios`: lr_g / lr_muon per group.
double total_dual_norm(const SteepestVariant& variant, const BlockDualNorms& norms,
                       const std::vector<double>& lr_ratios);

// Scales k of this step's blocks (see the top of this file), each multiplied
// by `fraction` (Momo's step fraction, 1 without Momo).
struct StepScales {
  std::vector<double> groups;  // k_g
  // k_l = matrix_constant + matrix_per_dual x n_l
  double matrix_constant = 1;
  double matrix_per_dual = 0;
  double matrix(double dual_norm) const { return matrix_constant + matrix_per_dual * dual_norm; }
};
StepScales step_scales(const SteepestVariant& variant, const BlockDualNorms& norms,
                       const std::vector<double>& lr_ratios, double fraction);

}  // namespace muonrun

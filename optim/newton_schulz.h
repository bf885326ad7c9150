// Newton-Schulz orthogonalisation: the heart of Muon.
//
// For a matrix G = U S V^T, returns approximately the polar factor U V^T
// (all singular values pushed towards 1) using only matrix products, which
// run on tensor cores in bf16. The iteration X <- a X + (b A + c A^2) X with
// A = X X^T is an odd quintic polynomial applied to the singular values.
#pragma once

#include <torch/torch.h>

#include <array>
#include <vector>

namespace muonrun {

struct NewtonSchulzSchedule {
  // One (a, b, c) per iteration; the last triple repeats if steps exceed the list.
  std::vector<std::array<double, 3>> coefficients;
  // X0 = G / (norm_scale * ||G||_F + norm_eps): puts every singular value <= 1.
  double norm_scale = 1.0;
  double norm_eps = 1e-7;
};

// The speedrun's quintic (3.4445, -4.7750, 2.0315): output singular values
// land in about [0.68, 1.13] after 5 steps.
NewtonSchulzSchedule quintic_schedule();

// Polar Express (Amsel, Persson, Musco, Gower 2025, "The Polar Express:
// Optimal Matrix Sign Methods and Their Application to the Muon Algorithm",
// arXiv:2505.16932; modded-nanogpt since record 38): the speedrun's five per-step
// triples, X0 = G / (1.02 ||G||_F + 1e-6). Steps past the fifth use the
// quintic (15/8, -10/8, 3/8), the limit of the optimal polynomials once the
// singular values are near 1, which converges to 1 (repeating the fifth
// triple would settle at 1.035 instead).
NewtonSchulzSchedule polar_express_schedule();

// Orthogonalises G ([m, n], or a batch [k, m, n] of same-shape matrices) with
// `steps` iterations, computing in `dtype` (bf16 on CUDA). Works on the
// transpose when m > n so that A = X X^T is the smaller Gram matrix. Returns
// a tensor of `dtype`. A batch costs the kernels of one matrix (3 batched
// products per iteration), so Muon stacks the matrices of one size class.
torch::Tensor newton_schulz(const torch::Tensor& G, int64_t steps,
                            const NewtonSchulzSchedule& schedule, torch::ScalarType dtype);

// The exact polar factor U V^T of a matrix from its SVD, computed in float64
// (ablations; Newton-Schulz approximates it), without the directions of zero
// singular values. Returns a tensor of G's dtype.
torch::Tensor exact_polar(const torch::Tensor& G);

}  // namespace muonrun

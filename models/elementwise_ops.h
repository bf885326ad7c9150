// The element-wise steps the speedrun's models share (RMSNorm, QK-norm +
// rotary, ReLU^2, residual mixes with their norm), either as the fused
// autograd ops (models/fused_rms_norm.h, qk_norm_rotary.h, relu_square.h,
// mix_norm.h) or as the composite LibTorch ops they replace (the reference
// the fused ops are tested against); model.kernels chooses.
#pragma once

#include <torch/torch.h>

#include "models/mix_norm.h"

namespace muonrun {

// `fused` false: the composite ops (rms_norm below, apply_rotary of
// models/rotary.h, relu then square, sums).
struct ElementwiseOps {
  bool fused = false;

  torch::Tensor norm(const torch::Tensor& x) const;
  // q or k [B, T, H, D] -> rotary(rms_norm(.)) as [B, H, T, D] for attention.
  torch::Tensor qk_norm_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin) const;
  torch::Tensor relu_square(const torch::Tensor& x) const;
  // A block's input: x = l0 * (x_in + s * skip) + l1 * x0, where skip (with
  // weight s, a 0-dim tensor) is the U-net's skip connection or undefined;
  // returns x and its norm.
  MixNorm block_input(const torch::Tensor& x_in, const torch::Tensor& x0, const torch::Tensor& lambdas,
                      const torch::Tensor& skip, const torch::Tensor& skip_weight) const;
  // x + y and its norm.
  MixNorm add_norm(const torch::Tensor& x, const torch::Tensor& y) const;
};

// RMS normalisation over the last dimension without a learned weight,
// computed in fp32 (double for double: the tests' float64 references) and
// returned in the input's dtype (as F.rms_norm).
torch::Tensor rms_norm(const torch::Tensor& x);

}  // namespace muonrun

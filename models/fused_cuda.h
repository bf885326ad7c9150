// The CUDA halves of the fused element-wise ops: forward and backward
// kernels that the autograd ops (models/qk_norm_rotary.cpp, relu_square.cpp,
// mix_norm.cpp) call for CUDA tensors, and the chunked head's soft-capped
// cross-entropy (models/chunked_head.cpp). Defined in the .cu file beside each
// op, compiled only with MUONRUN_CUDA; each takes and returns tensors of the
// same contract as the op's CPU half (the comments at the top of the op's
// header). Each launcher makes the tensors' device current first.
// Only ATen's tensor type here, so that nvcc need not parse torch/torch.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace muonrun::cuda {

// Tables, weights and per-row statistics are fp32 (double for double x).
//
// x [B, T, H, D] contiguous, cos/sin [T, D/2] contiguous fp32 -> (y [B, T, H, D] contiguous, x's dtype; inv_rms [B*T*H] fp32).
std::tuple<at::Tensor, at::Tensor> qk_norm_rotary_forward(const at::Tensor& x, const at::Tensor& cos,
                                                          const at::Tensor& sin);
// g [B, T, H, D] (D contiguous, any other strides) -> dx, x's shape and dtype.
at::Tensor qk_norm_rotary_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& inv_rms,
                                   const at::Tensor& cos, const at::Tensor& sin);

at::Tensor relu_square_forward(const at::Tensor& x);
at::Tensor relu_square_backward(const at::Tensor& g, const at::Tensor& x);

// terms: 2 or 3 contiguous tensors [..., D] of one dtype; weights: a
// contiguous fp32 tensor [terms] -> (x = sum_k w_k t_k, normed = rms_norm(x),
// both the terms' dtype; inv_rms [rows] fp32).
std::tuple<at::Tensor, at::Tensor, at::Tensor> mix_norm_forward(const std::vector<at::Tensor>& terms,
                                                                const at::Tensor& weights);
// g_x (or undefined), g_normed: contiguous, x's shape and dtype. G = dL/dx
// through both outputs; modes[k] = 0: no gradient for term k, 1: G itself,
// 2: weights[k] * G -> (the terms' gradients, undefined where modes[k] = 0;
// per-row dot products G . dot_terms[j], fp32 [rows, dot_terms], or
// undefined when there are none).
std::tuple<std::vector<at::Tensor>, at::Tensor> mix_norm_backward(
    const at::Tensor& g_x, const at::Tensor& g_normed, const at::Tensor& x, const at::Tensor& inv_rms,
    const at::Tensor& weights, const std::vector<int64_t>& modes, const std::vector<at::Tensor>& dot_terms);

// The soft-capped cross-entropy of a chunk (models/softcap_cross_entropy.h),
// one block per row: logits [n, V] contiguous (bf16, fp32 or double), with
// the gradient of sum_n loss_n written over them in their dtype when
// `gradients` (otherwise left as they are); targets [n] int64 on the same
// device; softcap 0 disables the cap. A target outside [0, V) is checked on
// the device, without a host sync: it makes its row's loss and gradient NaN.
// Returns sum_n loss_n (rows summed in double) as an fp32 scalar on the device.
at::Tensor softcap_cross_entropy_(at::Tensor& logits, const at::Tensor& targets, double softcap, bool gradients);

}  // namespace muonrun::cuda

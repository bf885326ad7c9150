// The FP8 language-model head of speedrun record 29 (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-09-03_FA3: the custom ops nanogpt::mm and
// nanogpt::mm_backward by @YouJiacheng), as one autograd op: out = x W^T with
// both products of its backward on float8 operands and static per-tensor
// scales (no amax bookkeeping):
//   forward   x8 = e4m3(x / x_s), w8 = e4m3(W / w_s)
//             out    = _scaled_mm(x8, w8^T, x_s, w_s)            bf16, fast accumulation
//   backward  g8 = e5m2(g / grad_s)
//             grad_x = _scaled_mm(g8, w8, grad_s, w_s)            bf16
//             grad_W = _scaled_mm(x8^T, g8, x_s, grad_s)^T        fp32
// saving only x8 and w8 (1 byte an element) for backward.
//
// Casts to float8 do not saturate: in e4m3fn a value above 464 (the midpoint
// of its largest finite value 448 and the next step, 480) becomes NaN (480,
// 500 -> NaN; 464 -> 448), and in e5m2 one from 61440 on becomes inf. The
// record relies on its scales to keep values in range (record_head_scales
// says why they do); an out-of-range value poisons the product with NaN/inf
// instead of being clipped.
//
// Devices: the same ATen calls on both. On the CPU (LibTorch 2.11)
// at::_scaled_mm dequantises and multiplies in fp32: measured bit-identical to
// an fp32 matmul of the dequantised operands (x8.float() * x_s etc.) rounded to
// the out dtype, for bf16 and fp32 outputs, with or without fast accumulation
// (the flag changes nothing there), and slower than the fp32 product. On CUDA
// (cuBLASLt, sm_89 and later) the first operand must be row-major, the second
// column-major (fp8_linear arranges both), and every dimension a multiple
// of 16: fp8_linear checks rows, in and out features up front, since backward
// multiplies along each of them.
//
// Training only: the record's CastedLinear takes this path when
// `use_fp8 and self.training`, and evaluation and sampling use the plain
// bf16 product x W^T. Record 29's head (models/record29.cpp) runs the same
// three products chunk by chunk inside the chunked head
// (models/chunked_head.h, through the fp8:: steps below), never holding the
// [tokens x vocab] logits; fp8_linear is the op whole, the form its tests
// check against float64 and the chunked head is tested against.
#pragma once

#include <torch/torch.h>

namespace muonrun {

// Static per-tensor scales: a tensor is stored in float8 as t / scale and
// multiplied back by scale in the product.
struct Fp8Scales {
  double x, w, grad;
};

// Record 29's head scales for model width `dim` (train_gpt.py builds
// CastedLinear(model_dim, vocab, use_fp8, x_s=(model_dim**0.5)/448,
// w_s=2**-9, grad_s=1/448)):
//   x_s = sqrt(dim)/448: the head's input is RMS-normed, so |x_i| <= sqrt(dim)
//         and x/x_s never passes e4m3fn's largest finite value, 448.
//   w_s = 2^-9: weights up to 448 * 2^-9 = 0.875 in magnitude fit (the head
//         starts at zero and moves by Adam steps of at most about lr = 0.008).
//   grad_s = 1/448: the gradient of the summed loss with respect to a logit
//         is bounded by 1 (softmax minus one-hot, times the soft-cap's slope
//         30/7.5 * s(1 - s) <= 1), so g * 448 stays far below e5m2's largest
//         finite value 57344, and gradients down to 2^-14 / 448 (1.4e-7)
//         remain normal e5m2 numbers.
Fp8Scales record_head_scales(int64_t dim);

// The float8 steps the op above and the chunked head's FP8 form
// (models/chunked_head.h) share.
namespace fp8 {
// t / scale in `type` (e4m3fn for activations and weights, e5m2 for gradients), contiguous.
torch::Tensor quantize(const torch::Tensor& t, double scale, torch::ScalarType type);
// A [rows, cols] float8 matrix laid out as _scaled_mm's second operand wants:
// column-major, the transpose of a contiguous [cols, rows] tensor.
torch::Tensor column_major(const torch::Tensor& m);
// a8 (row-major) times b8 (column-major), dequantised by a_s x b_s, in `out`.
torch::Tensor scaled_mm(const torch::Tensor& a8, const torch::Tensor& b8, double a_s, double b_s,
                        torch::ScalarType out, bool fast_accumulation);
}  // namespace fp8

// x [..., K] (bf16 or fp32) times w [N, K]^T -> [..., N] in bf16, through the
// op above. Gradients flow to x (bf16 values, in x's dtype) and w (fp32
// values, in w's dtype). On CUDA the row count (x's elements / K), K and N
// must be multiples of 16.
torch::Tensor fp8_linear(const torch::Tensor& x, const torch::Tensor& w, const Fp8Scales& scales);

}  // namespace muonrun

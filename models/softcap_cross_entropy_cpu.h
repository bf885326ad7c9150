// Soft-capped cross-entropy over one chunk of logits on the CPU, in one pass
// over memory: the same function as softcap_cross_entropy_
// (models/softcap_cross_entropy.h), which is the reference it is tested
// against and what runs on CUDA.
//
// LibTorch's ops make about ten passes over a chunk of logits (divide, tanh,
// max, subtract, scale, exp, sum, divide, square, multiply-add), each reading
// and writing 256 MB. Here each row of the chunk (one token's 50,304 logits,
// 200 kB) is read once from memory and worked on while it sits in the core's
// L2 cache: the soft-cap and the row's maximum in one sweep, the exponentials
// and their sum in a second, the gradient in a third, with vector exp and
// tanh (models/simd_math.h).
#pragma once

#include <torch/torch.h>

namespace muonrun {

// The instruction sets the loop is compiled for; the best the CPU has is
// chosen at run time (tests run every level the machine supports).
enum class SimdLevel { portable, avx2, avx512 };
SimdLevel best_simd_level();
const char* simd_level_name(SimdLevel level);

// logits: [n, V] fp32 contiguous on the CPU, overwritten with the gradient of
// sum_n loss_n when `gradients` (otherwise with tanh(l / cap)); targets: [n]
// int64 in [0, V). softcap 0 disables the cap. Returns sum_n loss_n as an
// fp32 scalar (summed in double).
torch::Tensor softcap_cross_entropy_cpu_(torch::Tensor& logits, const torch::Tensor& targets, double softcap,
                                         bool gradients, SimdLevel level = best_simd_level());

}  // namespace muonrun

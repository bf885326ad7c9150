// The CPU side shared by the fused element-wise ops (models/fused_rms_norm.h,
// qk_norm_rotary.h, relu_square.h, mix_norm.h): rows of the last dimension
// split across threads with at::parallel_for, loads and stores in the
// tensor's dtype (float or bfloat16; double for tests), arithmetic in fp32
// (double for double). Each op reads and writes its tensors once per pass
// over a row, so no fp32 copy of an activation is ever made or kept.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

namespace muonrun::fused_cpu {

// fn(begin, end) over row indices [0, rows), in parallel; a task gets about
// 16k elements, enough to amortise the thread hand-off.
template <class F>
void for_rows(int64_t rows, int64_t row_size, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_size));
  at::parallel_for(0, rows, grain, fn);
}

// Sum of a[i] * b[i] over a row in the accumulation type, with 8 partial
// sums so that the compiler can keep them in vector registers (a single
// running sum is a chain of dependent adds).
template <class acc_t, class scalar_t>
acc_t dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  acc_t part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += static_cast<acc_t>(a[i + k]) * static_cast<acc_t>(b[i + k]);
  for (; i < n; ++i) part[0] += static_cast<acc_t>(a[i]) * static_cast<acc_t>(b[i]);
  return ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

// 1 / sqrt(mean(x^2) + eps) with eps = FLT_EPSILON, as models/gpt.cpp's
// rms_norm (and F.rms_norm's default for fp32 computation).
template <class acc_t>
acc_t inv_rms(acc_t sum_sq, int64_t n) {
  return acc_t(1) / std::sqrt(sum_sq / static_cast<acc_t>(n) + static_cast<acc_t>(FLT_EPSILON));
}

// The dtype of the per-row statistics an op saves for backward: fp32, or
// double for double inputs.
inline torch::ScalarType stat_dtype(torch::ScalarType t) {
  return t == torch::kDouble ? torch::kDouble : torch::kFloat;
}

// The fused ops run on the CPU, and on CUDA in builds with MUONRUN_CUDA.
inline void check_device(const char* op, const torch::Tensor& x) {
#ifdef MUONRUN_WITH_CUDA
  const bool supported = x.is_cpu() || x.is_cuda();
#else
  const bool supported = x.is_cpu();
#endif
  TORCH_CHECK(supported, op, ": tensors on ", x.device(),
              " are not supported (CPU, or CUDA in a build with MUONRUN_CUDA)");
}

}  // namespace muonrun::fused_cpu

// Float, bfloat16 and double (tests' float64 references), as the ops allow.
#define MUONRUN_DISPATCH_FUSED(type, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND(at::ScalarType::BFloat16, type, name, __VA_ARGS__)

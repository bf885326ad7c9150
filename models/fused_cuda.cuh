// Device helpers shared by the fused ops' CUDA kernels (models/*.cu): one
// warp per row of the last dimension (the lanes stride over it, a row's
// reductions are warp shuffles, no shared memory, no atomics, so results do
// not depend on scheduling), and the launch geometry for it.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cfloat>

namespace muonrun::cuda {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // 256 threads

// The sum of v over the warp, in every lane.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// 1 / sqrt(mean + eps), eps = FLT_EPSILON (models/fused_cpu.h inv_rms).
template <class acc_t>
__device__ __forceinline__ acc_t inv_rms(acc_t sum_sq, int64_t n) {
  return acc_t(1) / ::sqrt(sum_sq / static_cast<acc_t>(n) + static_cast<acc_t>(FLT_EPSILON));
}

// Blocks for `rows` rows, one warp each.
inline dim3 row_blocks(int64_t rows) {
  return dim3(static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock));
}
inline dim3 row_threads() { return dim3(kRowsPerBlock * kWarp); }

// This thread's row, or -1 past the end (the whole warp agrees).
__device__ __forceinline__ int64_t warp_row(int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  return row < rows ? row : -1;
}

// The dtype of per-row statistics, tables and weights: fp32, double for double.
inline at::ScalarType stat_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace muonrun::cuda

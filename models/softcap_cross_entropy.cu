// CUDA kernel of the soft-capped cross-entropy over one chunk of logits (the
// function of models/softcap_cross_entropy.h; the CPU's one-pass loop of
// models/softcap_cross_entropy_cpu.h is what it is tested against). LibTorch's
// ops pass over a chunk about eleven times; here one block per row (a token's
// V logits) reads the row twice and writes it once:
// - first read: each thread keeps the running maximum m of c = cap tanh(l / cap)
//   over its share of the row and the sum s of exp(c - m), rescaled when m
//   grows (the online normaliser of Milakov & Gimelshein, "Online normalizer
//   calculation for softmax", arXiv:1805.02867); the block merges the
//   threads' (m, s) in a fixed tree, so nothing depends on scheduling;
// - second read: the gradient (softmax(c) - one_hot) (1 - t^2), written over
//   the row in the logits' dtype. The block read the row moments before
//   (100 kB in bf16 for the speedrun's 50,304), so this read mostly hits in L2.
// Per-row losses go to a [n] double tensor that at::sum adds up (no atomics),
// so the result is the same on every run.
#include <c10/cuda/CUDAGuard.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "models/fused_cuda.cuh"
#include "models/fused_cuda.h"

namespace muonrun::cuda {
namespace {

// 32 warps per row: at most two blocks fit on an SM (2048 threads), so the
// rows being worked on (264 on an H100 / H200's 132 SMs, 26 MB in bf16 at
// V = 50,304) stay within the 50 MB L2 between the two reads.
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / kWarp;

// exp of the soft-max's arguments c - m <= 0. In float the hardware exp2
// (__expf: error 2 + 1.2 |x| ulp, so a few ulp on the terms that dominate the
// sum and the gradient; the far smaller ones carry a larger relative error).
__device__ __forceinline__ float exp_shifted(float x) { return __expf(x); }
__device__ __forceinline__ double exp_shifted(double x) { return ::exp(x); }
__device__ __forceinline__ float tanh_of(float x) { return ::tanhf(x); }
__device__ __forceinline__ double tanh_of(double x) { return ::tanh(x); }
// The running maximum's start: below every finite c, so that a -inf logit
// (uncapped) adds exp(-inf) = 0 instead of exp(-inf - -inf) = NaN.
__device__ __forceinline__ float lowest(float) { return -FLT_MAX; }
__device__ __forceinline__ double lowest(double) { return -DBL_MAX; }

// A set of terms: their maximum m and sum s of exp(c - m).
template <class acc_t>
struct MaxSum {
  acc_t m, s;
};

template <class acc_t>
__device__ __forceinline__ void add(MaxSum<acc_t>& a, acc_t c) {
  if (c > a.m) {  // false for NaN, which then makes s NaN below
    a.s *= exp_shifted(a.m - c);
    a.m = c;
  }
  a.s += exp_shifted(c - a.m);
}

// The union of two sets, brought to the larger maximum (an empty set, m =
// lowest and s = 0, adds 0).
template <class acc_t>
__device__ __forceinline__ MaxSum<acc_t> merge(MaxSum<acc_t> a, MaxSum<acc_t> b) {
  const acc_t m = a.m > b.m ? a.m : b.m;
  return {m, a.s * exp_shifted(a.m - m) + b.s * exp_shifted(b.m - m)};
}

template <class acc_t>
__device__ __forceinline__ MaxSum<acc_t> warp_merge(MaxSum<acc_t> v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = merge(v, MaxSum<acc_t>{__shfl_xor_sync(0xffffffffu, v.m, offset), __shfl_xor_sync(0xffffffffu, v.s, offset)});
  return v;
}

// kVec logits loaded or stored at once (16 bytes when the row allows it).
template <class scalar_t, int kVec>
struct alignas(sizeof(scalar_t) * kVec) Pack {
  scalar_t v[kVec];
};

// One block per row. kVec > 1 needs V % kVec == 0 and 16-byte aligned rows
// (the launcher checks), so a pack starting before V ends by V.
template <class scalar_t, class acc_t, int kVec>
__global__ void __launch_bounds__(kThreads)
    softcap_cross_entropy_kernel(scalar_t* __restrict__ logits, const int64_t* __restrict__ targets, int64_t V,
                                 acc_t cap, bool gradients, double* __restrict__ row_loss) {
  using P = Pack<scalar_t, kVec>;
  const int64_t row = blockIdx.x;
  scalar_t* l = logits + row * V;
  const int64_t target = targets[row];
  const bool target_ok = target >= 0 && target < V;
  const bool capped = cap > 0;
  const acc_t inv_cap = capped ? acc_t(1) / cap : acc_t(1), scale = capped ? cap : acc_t(1);
  // t = tanh(l / cap), or l itself without the cap (as the CPU loop: l * (1 / cap)).
  auto soft_cap = [&](acc_t x) { return capped ? tanh_of(x * inv_cap) : x; };
  // Read before the barrier below, after which the row is overwritten.
  const acc_t t_target = threadIdx.x == 0 && target_ok ? soft_cap(static_cast<acc_t>(l[target])) : acc_t(0);

  MaxSum<acc_t> part{lowest(acc_t(0)), acc_t(0)};
  const int64_t stride = int64_t{kThreads} * kVec;
  for (int64_t j = int64_t{threadIdx.x} * kVec; j < V; j += stride) {
    const P p = *reinterpret_cast<const P*>(l + j);
#pragma unroll
    for (int k = 0; k < kVec; ++k) add(part, scale * soft_cap(static_cast<acc_t>(p.v[k])));
  }
  // The block's (m, s): each warp's, then warp 0 merges the 32 in a fixed tree.
  __shared__ MaxSum<acc_t> warps[kWarps];
  __shared__ MaxSum<acc_t> block;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  part = warp_merge(part);
  if (lane == 0) warps[warp] = part;
  __syncthreads();
  if (warp == 0) {
    MaxSum<acc_t> v = lane < kWarps ? warps[lane] : MaxSum<acc_t>{lowest(acc_t(0)), acc_t(0)};
    v = warp_merge(v);
    if (lane == 0) block = v;
  }
  __syncthreads();
  const acc_t m = block.m, s = block.s;
  // loss = logsumexp(c) - c[target] = m + log(s) - cap t_target; NaN for a
  // target outside the vocabulary (no host sync to check it).
  if (threadIdx.x == 0)
    row_loss[row] = target_ok ? static_cast<double>(m) + ::log(static_cast<double>(s)) -
                                    static_cast<double>(scale) * static_cast<double>(t_target)
                              : static_cast<double>(NAN);
  if (!gradients) return;

  // (e / s) (1 - t^2), minus (1 - t^2) at the target; 1 for 1 - t^2 uncapped.
  const acc_t inv_s = acc_t(1) / s;
  for (int64_t j = int64_t{threadIdx.x} * kVec; j < V; j += stride) {
    const P p = *reinterpret_cast<const P*>(l + j);
    P out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const acc_t t = soft_cap(static_cast<acc_t>(p.v[k]));
      const acc_t d = capped ? acc_t(1) - t * t : acc_t(1);
      acc_t g = exp_shifted(scale * t - m) * inv_s * d;
      if (j + k == target) g -= d;
      out.v[k] = static_cast<scalar_t>(target_ok ? g : static_cast<acc_t>(NAN));
    }
    *reinterpret_cast<P*>(l + j) = out;
  }
}

template <class scalar_t, class acc_t, int kVec>
void launch(at::Tensor& logits, const at::Tensor& targets, double softcap, bool gradients, at::Tensor& row_loss) {
  const int64_t n = logits.size(0), V = logits.size(1);
  softcap_cross_entropy_kernel<scalar_t, acc_t, kVec>
      <<<static_cast<unsigned>(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          logits.data_ptr<scalar_t>(), targets.data_ptr<int64_t>(), V,
          static_cast<acc_t>(softcap > 0 ? softcap : 0.0), gradients, row_loss.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor softcap_cross_entropy_(at::Tensor& logits, const at::Tensor& targets_in, double softcap, bool gradients) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2 && logits.is_contiguous(),
              "cuda::softcap_cross_entropy_: logits must be contiguous [n, V] on a CUDA device");
  TORCH_CHECK(targets_in.device() == logits.device() && targets_in.dim() == 1 &&
                  targets_in.size(0) == logits.size(0) && targets_in.scalar_type() == at::kLong,
              "cuda::softcap_cross_entropy_: targets must be int64 [n] on the logits' device, for logits [n, V]");
  const int64_t n = logits.size(0);
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max(), "cuda::softcap_cross_entropy_: ", n,
              " rows exceed the grid's 2^31 - 1 blocks");
  c10::cuda::CUDAGuard guard(logits.device());
  const auto targets = targets_in.contiguous();
  auto row_loss = at::empty({n}, logits.options().dtype(at::kDouble));
  if (n > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, logits.scalar_type(), "softcap_cross_entropy_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      constexpr int kVec = 16 / sizeof(scalar_t);
      const bool packs = logits.size(1) % kVec == 0 && reinterpret_cast<uintptr_t>(logits.data_ptr()) % 16 == 0;
      if (packs) launch<scalar_t, acc_t, kVec>(logits, targets, softcap, gradients, row_loss);
      else launch<scalar_t, acc_t, 1>(logits, targets, softcap, gradients, row_loss);
    });
  }
  return row_loss.sum().to(at::kFloat);
}

}  // namespace muonrun::cuda

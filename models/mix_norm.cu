// CUDA kernels of the residual mixes folded into RMSNorm (models/mix_norm.h):
// one warp per row; forward writes x, then its norm from x as stored;
// backward writes G = dL/dx (or the terms' scaled copies of it) and the
// row's dot products G . t_k for the weights' gradients (summed over rows
// afterwards by the caller: no atomics).
#include <c10/cuda/CUDAGuard.h>

#include "models/fused_cuda.cuh"
#include "models/fused_cuda.h"

namespace muonrun::cuda {
namespace {

constexpr int kMaxTerms = 3;

template <class scalar_t>
struct Pointers {
  const scalar_t* p[kMaxTerms];
};
template <class scalar_t>
struct OutPointers {
  scalar_t* p[kMaxTerms];
};
struct Indices {
  int k[kMaxTerms];
};

template <class scalar_t, class acc_t>
__global__ void mix_norm_forward_kernel(Pointers<scalar_t> terms, int K, const acc_t* __restrict__ weights,
                                        scalar_t* __restrict__ x, scalar_t* __restrict__ normed,
                                        acc_t* __restrict__ inv, int64_t rows, int64_t D) {
  const int64_t row = warp_row(rows);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t o = row * D;
  const acc_t w0 = weights[0], w1 = weights[1], w2 = K > 2 ? weights[2] : acc_t(0);
  acc_t ss = 0;
  for (int64_t i = lane; i < D; i += kWarp) {
    acc_t v = w0 * static_cast<acc_t>(terms.p[0][o + i]) + w1 * static_cast<acc_t>(terms.p[1][o + i]);
    if (K > 2) v += w2 * static_cast<acc_t>(terms.p[2][o + i]);
    const scalar_t stored = static_cast<scalar_t>(v);
    x[o + i] = stored;
    const acc_t r = static_cast<acc_t>(stored);  // the norm of x as stored
    ss += r * r;
  }
  const acc_t s = inv_rms(warp_sum(ss), D);
  for (int64_t i = lane; i < D; i += kWarp) normed[o + i] = static_cast<scalar_t>(static_cast<acc_t>(x[o + i]) * s);
  if (lane == 0) inv[row] = s;
}

template <class scalar_t, class acc_t>
__global__ void mix_norm_backward_kernel(const scalar_t* __restrict__ g_x, const scalar_t* __restrict__ g_n,
                                         const scalar_t* __restrict__ x, const acc_t* __restrict__ inv,
                                         scalar_t* __restrict__ G, OutPointers<scalar_t> scaled, int n_scaled,
                                         const acc_t* __restrict__ weights, Indices scaled_term,
                                         Pointers<scalar_t> dot_terms, int J, acc_t* __restrict__ dots,
                                         int64_t rows, int64_t D) {
  const int64_t row = warp_row(rows);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t o = row * D;
  acc_t dot = 0;
  for (int64_t i = lane; i < D; i += kWarp) dot += static_cast<acc_t>(g_n[o + i]) * static_cast<acc_t>(x[o + i]);
  const acc_t s = inv[row];
  const acc_t c = s * s * s * warp_sum(dot) / static_cast<acc_t>(D);
  acc_t w[kMaxTerms];
  for (int k = 0; k < n_scaled; ++k) w[k] = weights[scaled_term.k[k]];
  acc_t acc[kMaxTerms] = {0, 0, 0};
  for (int64_t i = lane; i < D; i += kWarp) {
    acc_t v = s * static_cast<acc_t>(g_n[o + i]) - c * static_cast<acc_t>(x[o + i]);
    if (g_x != nullptr) v += static_cast<acc_t>(g_x[o + i]);
    const scalar_t gd = static_cast<scalar_t>(v);  // G rounded to x's dtype, as the CPU loop
    const acc_t gv = static_cast<acc_t>(gd);
    if (G != nullptr) G[o + i] = gd;
    for (int k = 0; k < n_scaled; ++k) scaled.p[k][o + i] = static_cast<scalar_t>(w[k] * gv);
    for (int j = 0; j < J; ++j) acc[j] += gv * static_cast<acc_t>(dot_terms.p[j][o + i]);
  }
  for (int j = 0; j < J; ++j) {
    const acc_t total = warp_sum(acc[j]);
    if (lane == 0) dots[row * J + j] = total;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> mix_norm_forward(const std::vector<at::Tensor>& terms,
                                                                const at::Tensor& weights) {
  const auto& t0 = terms[0];
  c10::cuda::CUDAGuard guard(t0.device());
  const int K = static_cast<int>(terms.size());
  const int64_t D = t0.size(-1), rows = D ? t0.numel() / D : 0;
  auto x = at::empty_like(t0), normed = at::empty_like(t0);
  auto inv = at::empty({rows}, t0.options().dtype(stat_dtype(t0.scalar_type())));
  if (rows == 0) return {x, normed, inv};
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, t0.scalar_type(), "mix_norm_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Pointers<scalar_t> p{};
    for (int k = 0; k < K; ++k) p.p[k] = terms[k].data_ptr<scalar_t>();
    mix_norm_forward_kernel<scalar_t, acc_t><<<row_blocks(rows), row_threads(), 0, at::cuda::getCurrentCUDAStream()>>>(
        p, K, weights.data_ptr<acc_t>(), x.data_ptr<scalar_t>(), normed.data_ptr<scalar_t>(), inv.data_ptr<acc_t>(),
        rows, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {x, normed, inv};
}

std::tuple<std::vector<at::Tensor>, at::Tensor> mix_norm_backward(
    const at::Tensor& g_x, const at::Tensor& g_n, const at::Tensor& x, const at::Tensor& inv,
    const at::Tensor& weights, const std::vector<int64_t>& modes, const std::vector<at::Tensor>& dot_terms) {
  c10::cuda::CUDAGuard guard(x.device());
  const int K = static_cast<int>(modes.size()), J = static_cast<int>(dot_terms.size());
  const int64_t D = x.size(-1), rows = inv.numel();
  bool need_g = false;
  for (auto m : modes) need_g = need_g || m == 1;
  auto G = need_g ? at::empty_like(x) : at::Tensor();
  std::vector<at::Tensor> grads(K);
  for (int k = 0; k < K; ++k)
    if (modes[k] == 1) grads[k] = G;
    else if (modes[k] == 2) grads[k] = at::empty_like(x);
  auto dots = J ? at::empty({rows, J}, inv.options()) : at::Tensor();
  if (rows == 0) return {grads, dots};
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "mix_norm_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Each scaled gradient's output and the index of its weight in `weights`.
    OutPointers<scalar_t> scaled{};
    Indices scaled_term{};
    int n_scaled = 0;
    for (int k = 0; k < K; ++k)
      if (modes[k] == 2) {
        scaled_term.k[n_scaled] = k;
        scaled.p[n_scaled++] = grads[k].data_ptr<scalar_t>();
      }
    Pointers<scalar_t> dt{};
    for (int j = 0; j < J; ++j) dt.p[j] = dot_terms[j].data_ptr<scalar_t>();
    mix_norm_backward_kernel<scalar_t, acc_t><<<row_blocks(rows), row_threads(), 0, at::cuda::getCurrentCUDAStream()>>>(
        g_x.defined() ? g_x.data_ptr<scalar_t>() : nullptr, g_n.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        inv.data_ptr<acc_t>(), need_g ? G.data_ptr<scalar_t>() : nullptr, scaled, n_scaled,
        weights.data_ptr<acc_t>(), scaled_term, dt, J, J ? dots.data_ptr<acc_t>() : nullptr, rows, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grads, dots};
}

}  // namespace muonrun::cuda

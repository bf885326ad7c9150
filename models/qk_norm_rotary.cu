// CUDA kernels of QK-norm + rotary (models/qk_norm_rotary.h): one warp per
// (b, t, h) row of D; the lane strides over the rotation's pairs (i, i + D/2).
#include <c10/cuda/CUDAGuard.h>

#include "models/fused_cuda.cuh"
#include "models/fused_cuda.h"

namespace muonrun::cuda {
namespace {

template <class scalar_t, class acc_t>
__global__ void qk_norm_rotary_forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ cos,
                                              const acc_t* __restrict__ sin, scalar_t* __restrict__ y,
                                              acc_t* __restrict__ inv, int64_t rows, int64_t T, int64_t H,
                                              int64_t D) {
  const int64_t row = warp_row(rows);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t half = D / 2, t = (row / H) % T;
  const scalar_t* xr = x + row * D;
  acc_t ss = 0;
  for (int64_t i = lane; i < D; i += kWarp) {
    const acc_t v = static_cast<acc_t>(xr[i]);
    ss += v * v;
  }
  const acc_t k = inv_rms(warp_sum(ss), D);
  scalar_t* yr = y + row * D;
  for (int64_t i = lane; i < half; i += kWarp) {
    const acc_t n1 = static_cast<acc_t>(xr[i]) * k, n2 = static_cast<acc_t>(xr[i + half]) * k;
    const acc_t co = cos[t * half + i], si = sin[t * half + i];
    yr[i] = static_cast<scalar_t>(n1 * co + n2 * si);
    yr[i + half] = static_cast<scalar_t>(n2 * co - n1 * si);
  }
  if (lane == 0) inv[row] = k;
}

template <class scalar_t, class acc_t>
__global__ void qk_norm_rotary_backward_kernel(const scalar_t* __restrict__ g, int64_t gs0, int64_t gs1,
                                               int64_t gs2, const scalar_t* __restrict__ x,
                                               const acc_t* __restrict__ inv, const acc_t* __restrict__ cos,
                                               const acc_t* __restrict__ sin, scalar_t* __restrict__ dx,
                                               int64_t rows, int64_t T, int64_t H, int64_t D) {
  const int64_t row = warp_row(rows);
  if (row < 0) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t half = D / 2, h = row % H, t = (row / H) % T, b = row / (H * T);
  const scalar_t* gr = g + b * gs0 + t * gs1 + h * gs2;
  const scalar_t* xr = x + row * D;
  const acc_t* cr = cos + t * half;
  const acc_t* sr = sin + t * half;
  acc_t dot = 0;
  for (int64_t i = lane; i < half; i += kWarp) {
    const acc_t g1 = static_cast<acc_t>(gr[i]), g2 = static_cast<acc_t>(gr[i + half]);
    dot += (g1 * cr[i] - g2 * sr[i]) * static_cast<acc_t>(xr[i]) +
           (g1 * sr[i] + g2 * cr[i]) * static_cast<acc_t>(xr[i + half]);
  }
  const acc_t k = inv[row];
  const acc_t cx = k * k * k * warp_sum(dot) / static_cast<acc_t>(D);
  scalar_t* dr = dx + row * D;
  for (int64_t i = lane; i < half; i += kWarp) {
    const acc_t g1 = static_cast<acc_t>(gr[i]), g2 = static_cast<acc_t>(gr[i + half]);
    const acc_t gn1 = g1 * cr[i] - g2 * sr[i], gn2 = g1 * sr[i] + g2 * cr[i];
    dr[i] = static_cast<scalar_t>(k * gn1 - cx * static_cast<acc_t>(xr[i]));
    dr[i + half] = static_cast<scalar_t>(k * gn2 - cx * static_cast<acc_t>(xr[i + half]));
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> qk_norm_rotary_forward(const at::Tensor& x, const at::Tensor& cos,
                                                          const at::Tensor& sin) {
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t T = x.size(1), H = x.size(2), D = x.size(3), rows = x.numel() / D;
  auto y = at::empty_like(x);
  auto inv = at::empty({rows}, x.options().dtype(stat_dtype(x.scalar_type())));
  if (rows == 0) return {y, inv};
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "qk_norm_rotary_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    qk_norm_rotary_forward_kernel<scalar_t, acc_t>
        <<<row_blocks(rows), row_threads(), 0, at::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), cos.data_ptr<acc_t>(), sin.data_ptr<acc_t>(), y.data_ptr<scalar_t>(),
            inv.data_ptr<acc_t>(), rows, T, H, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {y, inv};
}

at::Tensor qk_norm_rotary_backward(const at::Tensor& g_in, const at::Tensor& x, const at::Tensor& inv,
                                   const at::Tensor& cos, const at::Tensor& sin) {
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t T = x.size(1), H = x.size(2), D = x.size(3), rows = x.numel() / D;
  auto g = g_in.to(x.scalar_type());
  if (g.stride(3) != 1) g = g.contiguous();
  auto dx = at::empty_like(x);
  if (rows == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "qk_norm_rotary_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    qk_norm_rotary_backward_kernel<scalar_t, acc_t>
        <<<row_blocks(rows), row_threads(), 0, at::cuda::getCurrentCUDAStream()>>>(
            g.data_ptr<scalar_t>(), g.stride(0), g.stride(1), g.stride(2), x.data_ptr<scalar_t>(),
            inv.data_ptr<acc_t>(), cos.data_ptr<acc_t>(), sin.data_ptr<acc_t>(), dx.data_ptr<scalar_t>(), rows,
            T, H, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace muonrun::cuda

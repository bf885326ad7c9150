// CUDA kernels of ReLU^2 (models/relu_square.h): one element per thread,
// grid-stride, the same expressions as the CPU loop.
#include <c10/cuda/CUDAGuard.h>

#include "models/fused_cuda.cuh"
#include "models/fused_cuda.h"

namespace muonrun::cuda {
namespace {

constexpr int kThreads = 256;

// g null: y = relu(x)^2; otherwise dx = g * 2 relu(x) (0 where relu(x) <= 0).
template <class scalar_t, class acc_t>
__global__ void relu_square_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ g,
                                   scalar_t* __restrict__ out, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const acc_t v = static_cast<acc_t>(x[i]);
    if (g == nullptr) {
      const acc_t r = v < 0 ? acc_t(0) : v;  // NaN stays NaN, as torch::relu
      out[i] = static_cast<scalar_t>(r * r);
    } else {
      out[i] = static_cast<scalar_t>(v <= 0 ? acc_t(0) : static_cast<acc_t>(g[i]) * (2 * v));
    }
  }
}

at::Tensor launch(const at::Tensor& x, const at::Tensor* g) {
  c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return out;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 16);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "relu_square_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    relu_square_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), g ? g->data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

at::Tensor relu_square_forward(const at::Tensor& x) { return launch(x, nullptr); }
at::Tensor relu_square_backward(const at::Tensor& g, const at::Tensor& x) { return launch(x, &g); }

}  // namespace muonrun::cuda

#include "models/relu_square.h"

#include <torch/csrc/autograd/custom_function.h>

#include "models/fused_cpu.h"
#ifdef MUONRUN_WITH_CUDA
#include "models/fused_cuda.h"
#endif

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = relu(x)^2, or with g: dx = g * 2 relu(x); contiguous tensors of one
// dtype. Two plain loops the compiler vectorises (max and multiplies).
torch::Tensor relu_square_cpu(const torch::Tensor& x, const torch::Tensor& g) {
  auto out = torch::empty_like(x);
  MUONRUN_DISPATCH_FUSED(x.scalar_type(), "relu_square", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    if (!g.defined()) {
      at::parallel_for(0, x.numel(), 16384, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const acc_t v = static_cast<acc_t>(px[i]);
          const acc_t r = v < 0 ? acc_t(0) : v;  // NaN stays NaN, as torch::relu
          po[i] = static_cast<scalar_t>(r * r);
        }
      });
    } else {
      const scalar_t* pg = g.data_ptr<scalar_t>();
      at::parallel_for(0, x.numel(), 16384, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const acc_t v = static_cast<acc_t>(px[i]);
          const acc_t d = static_cast<acc_t>(pg[i]) * (2 * v);  // both sides computed: a vector select
          po[i] = static_cast<scalar_t>(v <= 0 ? acc_t(0) : d);  // relu's backward: 0 where relu(x) <= 0
        }
      });
    }
  });
  return out;
}

struct ReluSquare : torch::autograd::Function<ReluSquare> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in) {
    auto x = x_in.contiguous();
    ctx->save_for_backward({x});
#ifdef MUONRUN_WITH_CUDA
    if (x.is_cuda()) return cuda::relu_square_forward(x);
#endif
    return relu_square_cpu(x, torch::Tensor());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const auto g = grads[0].to(x.scalar_type()).contiguous();
#ifdef MUONRUN_WITH_CUDA
    if (x.is_cuda()) return {cuda::relu_square_backward(g, x)};
#endif
    return {relu_square_cpu(x, g)};
  }
};

}  // namespace

torch::Tensor relu_square(const torch::Tensor& x) {
  fused_cpu::check_device("relu_square", x);
  return ReluSquare::apply(x);
}

}  // namespace muonrun

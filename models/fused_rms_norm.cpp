#include "models/fused_rms_norm.h"

#include <torch/csrc/autograd/custom_function.h>

#include "models/fused_cpu.h"

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedRmsNormCpu : torch::autograd::Function<FusedRmsNormCpu> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in) {
    auto x = x_in.contiguous();
    const int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
    auto y = torch::empty_like(x);
    auto inv = torch::empty({rows}, x.options().dtype(fused_cpu::stat_dtype(x.scalar_type())));
    MUONRUN_DISPATCH_FUSED(x.scalar_type(), "fused_rms_norm", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* px = x.data_ptr<scalar_t>();
      scalar_t* py = y.data_ptr<scalar_t>();
      acc_t* pinv = inv.data_ptr<acc_t>();
      fused_cpu::for_rows(rows, D, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const scalar_t* xr = px + r * D;
          scalar_t* yr = py + r * D;
          const acc_t s = fused_cpu::inv_rms(fused_cpu::dot<acc_t>(xr, xr, D), D);
          for (int64_t i = 0; i < D; ++i) yr[i] = static_cast<scalar_t>(static_cast<acc_t>(xr[i]) * s);
          pinv[r] = s;
        }
      });
    });
    ctx->save_for_backward({x, inv});
    return y;
  }

  // dx = s g - s^3 x (g . x) / D, s the row's inverse rms.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& inv = saved[1];
    auto g = grads[0].to(x.scalar_type()).contiguous();
    const int64_t D = x.size(-1), rows = inv.numel();
    auto dx = torch::empty_like(x);
    MUONRUN_DISPATCH_FUSED(x.scalar_type(), "fused_rms_norm_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* px = x.data_ptr<scalar_t>();
      const scalar_t* pg = g.data_ptr<scalar_t>();
      scalar_t* pdx = dx.data_ptr<scalar_t>();
      const acc_t* pinv = inv.data_ptr<acc_t>();
      fused_cpu::for_rows(rows, D, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const scalar_t* xr = px + r * D;
          const scalar_t* gr = pg + r * D;
          scalar_t* dr = pdx + r * D;
          const acc_t s = pinv[r];
          const acc_t c = s * s * s * fused_cpu::dot<acc_t>(gr, xr, D) / static_cast<acc_t>(D);
          for (int64_t i = 0; i < D; ++i)
            dr[i] = static_cast<scalar_t>(s * static_cast<acc_t>(gr[i]) - c * static_cast<acc_t>(xr[i]));
        }
      });
    });
    return {dx};
  }
};

}  // namespace

torch::Tensor fused_rms_norm(const torch::Tensor& x) {
  if (x.is_cuda()) return at::rms_norm(x, {x.size(-1)}, /*weight=*/{}, /*eps=*/FLT_EPSILON);
  fused_cpu::check_device("fused_rms_norm", x);
  return FusedRmsNormCpu::apply(x);
}

}  // namespace muonrun

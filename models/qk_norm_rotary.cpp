#include "models/qk_norm_rotary.h"

#include <torch/csrc/autograd/custom_function.h>

#include "models/fused_cpu.h"
#ifdef MUONRUN_WITH_CUDA
#include "models/fused_cuda.h"
#endif

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// x [B, T, H, D] contiguous; cos, sin [T, D/2] contiguous in the accumulation
// type (fp32; double for double x).
std::tuple<torch::Tensor, torch::Tensor> forward_cpu(const torch::Tensor& x, const torch::Tensor& cos,
                                                     const torch::Tensor& sin) {
  const int64_t T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  const int64_t rows = x.numel() / D;
  auto y = torch::empty_like(x);
  auto inv = torch::empty({rows}, x.options().dtype(fused_cpu::stat_dtype(x.scalar_type())));
  MUONRUN_DISPATCH_FUSED(x.scalar_type(), "qk_norm_rotary", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* px = x.data_ptr<scalar_t>();
    const acc_t *pc = cos.data_ptr<acc_t>(), *ps = sin.data_ptr<acc_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    acc_t* pinv = inv.data_ptr<acc_t>();
    fused_cpu::for_rows(rows, D, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t t = (r / H) % T;
        const scalar_t* xr = px + r * D;
        const acc_t *cr = pc + t * half, *sr = ps + t * half;
        scalar_t* yr = py + r * D;
        const acc_t k = fused_cpu::inv_rms(fused_cpu::dot<acc_t>(xr, xr, D), D);
        for (int64_t i = 0; i < half; ++i) {
          const acc_t n1 = static_cast<acc_t>(xr[i]) * k, n2 = static_cast<acc_t>(xr[i + half]) * k;
          const acc_t co = cr[i], si = sr[i];
          yr[i] = static_cast<scalar_t>(n1 * co + n2 * si);
          yr[i + half] = static_cast<scalar_t>(n2 * co - n1 * si);
        }
        pinv[r] = k;
      }
    });
  });
  return {y, inv};
}

// The rotation's transpose turns g back (gn), then RMSNorm's backward:
// dx = k gn - k^3 x (gn . x) / D. g may have any strides but D's.
torch::Tensor backward_cpu(const torch::Tensor& g_in, const torch::Tensor& x, const torch::Tensor& inv,
                           const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  const int64_t rows = x.numel() / D;
  auto g = g_in.to(x.scalar_type());
  if (g.stride(3) != 1) g = g.contiguous();
  const int64_t gs0 = g.stride(0), gs1 = g.stride(1), gs2 = g.stride(2);
  auto dx = torch::empty_like(x);
  MUONRUN_DISPATCH_FUSED(x.scalar_type(), "qk_norm_rotary_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *pg = g.data_ptr<scalar_t>();
    const acc_t *pc = cos.data_ptr<acc_t>(), *ps = sin.data_ptr<acc_t>();
    scalar_t* pdx = dx.data_ptr<scalar_t>();
    const acc_t* pinv = inv.data_ptr<acc_t>();
    fused_cpu::for_rows(rows, D, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t h = r % H, t = (r / H) % T, b = r / (H * T);
        const scalar_t* gr = pg + b * gs0 + t * gs1 + h * gs2;
        const scalar_t* xr = px + r * D;
        const acc_t *cr = pc + t * half, *sr = ps + t * half;
        scalar_t* dr = pdx + r * D;
        const acc_t k = pinv[r];
        const auto turned = [&](int64_t i, acc_t& gn1, acc_t& gn2) {
          const acc_t g1 = static_cast<acc_t>(gr[i]), g2 = static_cast<acc_t>(gr[i + half]);
          const acc_t co = cr[i], si = sr[i];
          gn1 = g1 * co - g2 * si;
          gn2 = g1 * si + g2 * co;
        };
        acc_t dot = 0;
        for (int64_t i = 0; i < half; ++i) {
          acc_t gn1, gn2;
          turned(i, gn1, gn2);
          dot += gn1 * static_cast<acc_t>(xr[i]) + gn2 * static_cast<acc_t>(xr[i + half]);
        }
        const acc_t cx = k * k * k * dot / static_cast<acc_t>(D);
        for (int64_t i = 0; i < half; ++i) {
          acc_t gn1, gn2;
          turned(i, gn1, gn2);
          dr[i] = static_cast<scalar_t>(k * gn1 - cx * static_cast<acc_t>(xr[i]));
          dr[i + half] = static_cast<scalar_t>(k * gn2 - cx * static_cast<acc_t>(xr[i + half]));
        }
      }
    });
  });
  return dx;
}

struct QkNormRotary : torch::autograd::Function<QkNormRotary> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_in, const torch::Tensor& cos_in,
                               const torch::Tensor& sin_in) {
    auto x = x_in.contiguous();
    const int64_t T = x.size(1), half = x.size(3) / 2;
    const auto table = fused_cpu::stat_dtype(x.scalar_type());
    auto cos = cos_in.reshape({T, half}).to(table).contiguous();
    auto sin = sin_in.reshape({T, half}).to(table).contiguous();
    torch::Tensor y, inv;
#ifdef MUONRUN_WITH_CUDA
    if (x.is_cuda())
      std::tie(y, inv) = cuda::qk_norm_rotary_forward(x, cos, sin);
    else
#endif
      std::tie(y, inv) = forward_cpu(x, cos, sin);
    ctx->save_for_backward({x, inv, cos, sin});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    torch::Tensor dx;
#ifdef MUONRUN_WITH_CUDA
    if (saved[0].is_cuda())
      dx = cuda::qk_norm_rotary_backward(grads[0], saved[0], saved[1], saved[2], saved[3]);
    else
#endif
      dx = backward_cpu(grads[0], saved[0], saved[1], saved[2], saved[3]);
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor qk_norm_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "qk_norm_rotary: x must be [B, T, H, D] with D even, got ",
              x.sizes());
  TORCH_CHECK(cos.numel() == x.size(1) * x.size(3) / 2 && cos.sizes() == sin.sizes() &&
                  cos.size(-1) == x.size(3) / 2,
              "qk_norm_rotary: cos and sin must be [1, T, 1, D/2] for x ", x.sizes(), ", got ", cos.sizes());
  TORCH_CHECK(x.device() == cos.device() && x.device() == sin.device(),
              "qk_norm_rotary: x, cos and sin must be on one device");
  fused_cpu::check_device("qk_norm_rotary", x);
  TORCH_CHECK(!cos.requires_grad() && !sin.requires_grad(),
              "qk_norm_rotary: the rotary tables are constants (no gradient flows to them)");
  return QkNormRotary::apply(x, cos, sin).transpose(1, 2);
}

}  // namespace muonrun

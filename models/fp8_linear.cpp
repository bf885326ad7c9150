#include "models/fp8_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// A per-tensor scale as _scaled_mm takes it: a 0-dim fp32 tensor on the
// operands' device.
torch::Tensor scale_tensor(double scale, const torch::Tensor& like) {
  return torch::scalar_tensor(scale, like.options().dtype(torch::kFloat));
}

// A [rows, cols] float8 matrix as _scaled_mm's second operand: column-major,
// i.e. the transpose of a contiguous [cols, rows] tensor.
torch::Tensor column_major(const torch::Tensor& m) { return m.t().contiguous().t(); }

struct Fp8Linear : torch::autograd::Function<Fp8Linear> {
  // x [M, K], w [N, K], both contiguous.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               double x_s, double w_s, double grad_s) {
    const auto x8 = x.div(x_s).to(torch::kFloat8_e4m3fn);
    const auto w8 = w.div(w_s).to(torch::kFloat8_e4m3fn);
    ctx->save_for_backward({x8, w8});
    ctx->saved_data["x_s"] = x_s;
    ctx->saved_data["w_s"] = w_s;
    ctx->saved_data["grad_s"] = grad_s;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    return at::_scaled_mm(x8, w8.t(), scale_tensor(x_s, x), scale_tensor(w_s, x), std::nullopt, std::nullopt,
                          torch::kBFloat16, /*use_fast_accum=*/true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x8 = saved[0];
    const auto& w8 = saved[1];
    const double x_s = ctx->saved_data["x_s"].toDouble();
    const double w_s = ctx->saved_data["w_s"].toDouble();
    const double grad_s = ctx->saved_data["grad_s"].toDouble();
    const auto g8 = grads[0].contiguous().div(grad_s).to(torch::kFloat8_e5m2);
    torch::Tensor grad_x, grad_w;
    if (ctx->needs_input_grad(0)) {
      grad_x = at::_scaled_mm(g8, column_major(w8), scale_tensor(grad_s, g8), scale_tensor(w_s, g8), std::nullopt,
                              std::nullopt, torch::kBFloat16, /*use_fast_accum=*/false)
                   .to(static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt()));
    }
    if (ctx->needs_input_grad(1)) {
      // (x8^T g8)^T rather than g8^T x8: the record found this order faster for
      // the head's (50304, 768) weight. The transposed result is a view;
      // autograd stores a contiguous copy as the weight's .grad.
      grad_w = at::_scaled_mm(x8.t().contiguous(), column_major(g8), scale_tensor(x_s, g8), scale_tensor(grad_s, g8),
                              std::nullopt, std::nullopt, torch::kFloat, /*use_fast_accum=*/false)
                   .t()
                   .to(static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt()));
    }
    return {grad_x, grad_w, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

Fp8Scales record_head_scales(int64_t dim) {
  return {std::sqrt(static_cast<double>(dim)) / 448.0, std::ldexp(1.0, -9), 1.0 / 448.0};
}

torch::Tensor fp8_linear(const torch::Tensor& x, const torch::Tensor& w, const Fp8Scales& scales) {
  TORCH_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(1), "fp8_linear: expected x [..., K] and w [N, K], got x ",
              x.sizes(), " and w ", w.sizes());
  TORCH_CHECK(x.device() == w.device(), "fp8_linear: x is on ", x.device(), " but w on ", w.device());
  const auto x2 = x.reshape({-1, x.size(-1)}).contiguous();
  const int64_t rows = x2.size(0), in = w.size(1), out = w.size(0);
  if (x.is_cuda()) {
    // cuBLASLt's float8 GEMM takes only dimensions that are multiples of 16;
    // backward multiplies along rows (grad_W) and out (grad_x) too.
    TORCH_CHECK(rows % 16 == 0 && in % 16 == 0 && out % 16 == 0,
                "fp8_linear on CUDA: rows (", rows, "), in features (", in, ") and out features (", out,
                ") must be multiples of 16; got x ", x.sizes(), " and w ", w.sizes());
  }
  auto y = Fp8Linear::apply(x2, w.contiguous(), scales.x, scales.w, scales.grad);
  auto shape = x.sizes().vec();
  shape.back() = out;
  return y.reshape(shape);
}

}  // namespace muonrun

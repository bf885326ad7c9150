#include "models/fp8_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using fp8::column_major;
using fp8::quantize;
using fp8::scaled_mm;

struct Fp8Linear : torch::autograd::Function<Fp8Linear> {
  // x [M, K], w [N, K], both contiguous.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               double x_s, double w_s, double grad_s) {
    const auto x8 = quantize(x, x_s, torch::kFloat8_e4m3fn);
    const auto w8 = quantize(w, w_s, torch::kFloat8_e4m3fn);
    ctx->save_for_backward({x8, w8});
    ctx->saved_data["x_s"] = x_s;
    ctx->saved_data["w_s"] = w_s;
    ctx->saved_data["grad_s"] = grad_s;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["w_dtype"] = static_cast<int64_t>(w.scalar_type());
    return scaled_mm(x8, w8.t(), x_s, w_s, torch::kBFloat16, /*fast_accumulation=*/true);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x8 = saved[0];
    const auto& w8 = saved[1];
    const double x_s = ctx->saved_data["x_s"].toDouble();
    const double w_s = ctx->saved_data["w_s"].toDouble();
    const double grad_s = ctx->saved_data["grad_s"].toDouble();
    const auto g8 = quantize(grads[0], grad_s, torch::kFloat8_e5m2);
    torch::Tensor grad_x, grad_w;
    if (ctx->needs_input_grad(0)) {
      grad_x = scaled_mm(g8, column_major(w8), grad_s, w_s, torch::kBFloat16, /*fast_accumulation=*/false)
                   .to(static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt()));
    }
    if (ctx->needs_input_grad(1)) {
      // (x8^T g8)^T rather than g8^T x8: the record found this order faster for
      // the head's (50304, 768) weight. The transposed result is a view;
      // autograd stores a contiguous copy as the weight's .grad.
      grad_w = scaled_mm(x8.t().contiguous(), column_major(g8), x_s, grad_s, torch::kFloat, /*fast_accumulation=*/false)
                   .t()
                   .to(static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt()));
    }
    return {grad_x, grad_w, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace fp8 {

torch::Tensor quantize(const torch::Tensor& t, double scale, torch::ScalarType type) {
  return t.div(scale).to(type).contiguous();
}

torch::Tensor column_major(const torch::Tensor& m) { return m.t().contiguous().t(); }

torch::Tensor scaled_mm(const torch::Tensor& a8, const torch::Tensor& b8, double a_s, double b_s,
                        torch::ScalarType out, bool fast_accumulation) {
  // Per-tensor scales as _scaled_mm takes them: 0-dim fp32 tensors on the operands' device.
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(a8.device());
  return at::_scaled_mm(a8, b8, torch::scalar_tensor(a_s, options), torch::scalar_tensor(b_s, options),
                        std::nullopt, std::nullopt, out, fast_accumulation);
}

}  // namespace fp8

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

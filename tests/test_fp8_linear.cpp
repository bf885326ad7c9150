// The FP8 head op (models/fp8_linear.h) on the CPU. The reference quantises
// x, w and the cotangent g itself (t / scale -> float8, as record 29's
// train_gpt.py does), dequantises to float64 and multiplies there; the op must
// agree element by element within what its own arithmetic may add:
//   - the products of two float8 values are exact in fp32 (at most 4 x 4
//     significant bits), so the only errors are the fp32 accumulation,
//     at most n * 2^-24 * sum|terms| over n terms, and the output's rounding:
//     2^-8 relative for bf16 (forward and grad_x), 2^-23 for fp32 (grad_w);
//   - against the plain product of the unquantised values, the float8 roundings
//     on top: |t8 - t| <= (2^-4 + 2^-8)|t| + 2^-10 scale per element (half of
//     e4m3's 3-bit spacing, after the bf16 rounding of t / scale, or half the
//     subnormal spacing 2^-9), summed through the product (a worst case: on
//     random data the error is several times smaller).
// Negative controls show that a wrong scale in the reference fails the check.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "models/chunked_head.h"
#include "models/fp8_linear.h"

using namespace muonrun;
using torch::Tensor;

namespace {

const Fp8Scales kScales = record_head_scales(768);
constexpr double kU32 = 0x1p-24;  // fp32 unit roundoff
constexpr double kBf16 = 0x1p-8;  // bf16 rounding, relative

// t / scale -> float8 -> float64 * scale: the value the op multiplies.
Tensor dequantised(const Tensor& t, double scale, torch::ScalarType f8) {
  return t.div(scale).to(f8).to(torch::kDouble) * scale;
}

// The largest |got - ref| / bound (a value above 1 fails); `bound` already
// contains any relative part.
double worst_ratio(const Tensor& got, const Tensor& ref, const Tensor& bound) {
  return ((got.to(torch::kDouble) - ref).abs() / (bound + 1e-300)).max().item<double>();
}

// The bound for a product a @ b computed from exact products accumulated in
// fp32 over n terms and rounded by `out_rounding` relative.
Tensor product_bound(const Tensor& a, const Tensor& b, int64_t n, double out_rounding) {
  return out_rounding * a.matmul(b).abs() + (1 + out_rounding) * n * kU32 * a.abs().matmul(b.abs());
}

struct Run {
  Tensor x, w, g;            // inputs (x in its dtype, w fp32) and the cotangent (bf16)
  Tensor y, grad_x, grad_w;  // the op's output and gradients
};

// x [rows..., K] random with unit RMS per row (as the head's normed input),
// w [N, K] of the size a trained head reaches, g a logit-gradient-sized cotangent.
Run run(std::vector<int64_t> x_shape, int64_t n, torch::ScalarType x_dtype) {
  torch::manual_seed(7);
  Run r;
  const int64_t k = x_shape.back();
  auto x = torch::randn(x_shape, torch::kDouble);
  r.x = (x / x.square().mean(-1, true).sqrt()).to(x_dtype).requires_grad_(true);
  r.w = (0.05 * torch::randn({n, k})).requires_grad_(true);
  auto g_shape = x_shape;
  g_shape.back() = n;
  r.g = (1e-2 * torch::randn(g_shape)).to(torch::kBFloat16);
  r.y = fp8_linear(r.x, r.w, kScales);
  const auto grads = torch::autograd::grad({r.y}, {r.x, r.w}, {r.g});
  r.grad_x = grads[0];
  r.grad_w = grads[1];
  return r;
}

// Forward and both gradients against the float64 products of the dequantised
// operands.
void expect_matches_dequantised(const std::vector<int64_t>& x_shape, int64_t n, torch::ScalarType x_dtype) {
  const auto r = run(x_shape, n, x_dtype);
  const int64_t k = x_shape.back();
  ASSERT_EQ(r.y.scalar_type(), torch::kBFloat16);
  ASSERT_EQ(r.grad_x.scalar_type(), x_dtype);
  ASSERT_EQ(r.grad_w.scalar_type(), torch::kFloat);
  auto y_shape = x_shape;
  y_shape.back() = n;
  ASSERT_EQ(r.y.sizes(), torch::IntArrayRef(y_shape));
  const auto x = dequantised(r.x.detach().reshape({-1, k}), kScales.x, torch::kFloat8_e4m3fn);
  const auto w = dequantised(r.w.detach(), kScales.w, torch::kFloat8_e4m3fn);
  const auto g = dequantised(r.g.reshape({-1, n}), kScales.grad, torch::kFloat8_e5m2);
  const int64_t rows = x.size(0);
  EXPECT_LE(worst_ratio(r.y.reshape({-1, n}), x.matmul(w.t()), product_bound(x, w.t(), k, kBf16)), 1.0);
  EXPECT_LE(worst_ratio(r.grad_x.reshape({-1, k}), g.matmul(w), product_bound(g, w, n, kBf16)), 1.0);
  EXPECT_LE(worst_ratio(r.grad_w, g.t().matmul(x), product_bound(g.t(), x, rows, 2 * kU32)), 1.0);
}

TEST(Fp8Linear, RecordScales) {
  // train_gpt.py of record 29: x_s = 768**0.5/448, w_s = 2**-9, grad_s = 1/448.
  EXPECT_NEAR(kScales.x, 0.0618590, 1e-7);
  EXPECT_EQ(kScales.w, 1.0 / 512);
  EXPECT_EQ(kScales.grad, 1.0 / 448);
}

TEST(Fp8Linear, MatchesDequantisedProductsBf16Input) { expect_matches_dequantised({64, 768}, 1024, torch::kBFloat16); }

// The CPU compute dtype: x divided and quantised from fp32, grad_x returned in fp32.
TEST(Fp8Linear, MatchesDequantisedProductsFp32Input) { expect_matches_dequantised({64, 768}, 1024, torch::kFloat); }

// Leading dimensions are flattened and restored; on the CPU no dimension need
// be a multiple of 16.
TEST(Fp8Linear, BatchedInputAndOddSizesOnCpu) { expect_matches_dequantised({3, 5, 40}, 24, torch::kBFloat16); }

// Against x @ w^T of the unquantised values: within the float8 roundings of
// both operands (the bound in this file's header) plus the bf16 output.
TEST(Fp8Linear, CloseToUnquantisedProduct) {
  const auto r = run({64, 768}, 1024, torch::kBFloat16);
  const auto x = r.x.detach().to(torch::kDouble), w = r.w.detach().to(torch::kDouble);
  const auto x8 = dequantised(r.x.detach(), kScales.x, torch::kFloat8_e4m3fn);
  const auto w8 = dequantised(r.w.detach(), kScales.w, torch::kFloat8_e4m3fn);
  const double rel = 0x1p-4 + 0x1p-8;
  const auto ex = rel * x.abs() + 0x1p-10 * kScales.x, ew = rel * w.abs() + 0x1p-10 * kScales.w;
  const auto exact = x.matmul(w.t());
  const auto bound = ex.matmul(w8.abs().t()) + x.abs().matmul(ew.t()) + product_bound(x8, w8.t(), 768, kBf16);
  EXPECT_LE(worst_ratio(r.y, exact, bound), 1.0);
  // Norm-wise the error is a few percent (e4m3 keeps 3 fraction bits); the
  // bf16 product alone would be within 2^-8.
  const double norm_rel = ((r.y.to(torch::kDouble) - exact).norm() / exact.norm()).item<double>();
  EXPECT_LT(norm_rel, 0.05);
  EXPECT_GT(norm_rel, 0x1p-8) << "no float8 quantisation visible: is the op multiplying in bf16?";
}

// The same comparison with the reference built on a wrong scale fails: the
// checks above can tell a scale error apart.
TEST(Fp8Linear, WrongScaleInReferenceFails) {
  const auto r = run({64, 768}, 1024, torch::kBFloat16);
  const auto w = dequantised(r.w.detach(), kScales.w, torch::kFloat8_e4m3fn);
  const auto y = r.y.to(torch::kDouble);
  // x quantised on a grid 1.5 times coarser: other roundings, same magnitude.
  const auto x_coarse = dequantised(r.x.detach(), 1.5 * kScales.x, torch::kFloat8_e4m3fn);
  EXPECT_GT(worst_ratio(y, x_coarse.matmul(w.t()), product_bound(x_coarse, w.t(), 768, kBf16)), 10.0);
  // w dequantised with twice its scale: every product doubled.
  const auto x = dequantised(r.x.detach(), kScales.x, torch::kFloat8_e4m3fn);
  EXPECT_GT(worst_ratio(y, x.matmul(2 * w.t()), product_bound(x, 2 * w.t(), 768, kBf16)), 10.0);
}

// Casts to float8 do not saturate, and the record's scales are what keeps
// values finite: a normed row with all its weight on one element reaches
// exactly 448 (e4m3fn's largest finite value) and stays finite, while a value
// 500 times x_s makes its whole output row NaN (as the record accepts).
TEST(Fp8Linear, OutOfRangeValueGivesNaN) {
  EXPECT_EQ(torch::tensor({464.0}).to(torch::kFloat8_e4m3fn).item<float>(), 448.0f);  // rounds to nearest (even)
  EXPECT_TRUE(std::isnan(torch::tensor({480.0}).to(torch::kFloat8_e4m3fn).item<float>()));
  EXPECT_TRUE(std::isnan(torch::tensor({500.0}).to(torch::kFloat8_e4m3fn).item<float>()));
  EXPECT_TRUE(std::isinf(torch::tensor({61440.0}).to(torch::kFloat8_e5m2).item<float>()));

  const int64_t k = 768, n = 64;
  auto x = torch::zeros({4, k});
  x.index_put_({0, 0}, std::sqrt(static_cast<double>(k)));  // RMS 1: x / x_s = 448
  x.index_put_({1, 5}, 500.0 * kScales.x);
  x.index_put_({2, 3}, 1.0);
  auto w = 0.05 * torch::randn({n, k});
  w.index_put_({torch::indexing::Slice(), 0}, 0.5);
  const auto y = fp8_linear(x.to(torch::kBFloat16), w, kScales).to(torch::kDouble);
  EXPECT_TRUE(y[0].isfinite().all().item<bool>());
  const double half_root = 0.5 * std::sqrt(static_cast<double>(k));  // 448 x_s times w = 0.5
  EXPECT_NEAR(y[0][0].item<double>(), half_root, kBf16 * half_root);
  EXPECT_TRUE(y[1].isnan().all().item<bool>());
  EXPECT_TRUE(y.index({torch::indexing::Slice(2)}).isfinite().all().item<bool>());
}

// x without requires_grad: only the weight's gradient is asked for.
TEST(Fp8Linear, WeightGradientAlone) {
  torch::manual_seed(3);
  const auto x = torch::randn({32, 64}).to(torch::kBFloat16);
  const auto w = (0.05 * torch::randn({48, 64})).requires_grad_(true);
  const auto g = torch::randn({32, 48}).to(torch::kBFloat16) * 1e-2;
  const auto grad_w = torch::autograd::grad({fp8_linear(x, w, kScales)}, {w}, {g})[0];
  const auto xq = dequantised(x, kScales.x, torch::kFloat8_e4m3fn);
  const auto gq = dequantised(g, kScales.grad, torch::kFloat8_e5m2);
  EXPECT_LE(worst_ratio(grad_w, gq.t().matmul(xq), product_bound(gq.t(), xq, 32, 2 * kU32)), 1.0);
}

// The chunked head's FP8 form (models/chunked_head.h, record 29's training
// head) against the same function written out: fp8_linear, then the
// soft-capped cross-entropy summed over the tokens by autograd, whose
// gradient reaches fp8_linear's backward in bf16 as in the record. Both
// quantise the logit gradient to e5m2; where the two computations of that
// gradient round to different bf16 values (their fp32 arithmetic differs in
// order), one e5m2 step (up to 25% of the element) would separate them in
// that element: the gradients are compared in norm, 2e-3 relative (measured:
// 0 and 1.9e-7, no such element here). The loss has no such step (1e-5). The
// control: the head without FP8 is 2.8e-2 from the FP8 function.
TEST(Fp8Linear, ChunkedHeadInFp8IsFp8LinearThenTheSoftcappedLoss) {
  torch::manual_seed(11);
  const int64_t n = 96, k = 64, v = 160;
  auto x = torch::randn({n, k}, torch::kDouble);
  x = (x / x.square().mean(-1, true).sqrt()).to(torch::kBFloat16);
  const auto w = (0.05 * torch::randn({v, k}));
  const auto targets = torch::randint(v, {n}, torch::kLong);
  const Fp8Scales scales = record_head_scales(k);

  const auto xr = x.clone().requires_grad_(true), wr = w.clone().requires_grad_(true);
  const auto logits = fp8_linear(xr, wr, scales).to(torch::kFloat);
  const auto want_loss = torch::nn::functional::cross_entropy(
      15.0 * torch::tanh(logits / 15.0), targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  const auto want = torch::autograd::grad({want_loss}, {xr, wr});
  auto rel = [](const Tensor& a, const Tensor& b) {
    return (a.to(torch::kDouble) - b.to(torch::kDouble)).norm().item<double>() / b.to(torch::kDouble).norm().item<double>();
  };
  for (bool fused : {true, false}) {
    for (const Fp8Scales* fp8 : {&scales, static_cast<const Fp8Scales*>(nullptr)}) {
      SCOPED_TRACE(::testing::Message() << "fused " << fused << (fp8 ? ", fp8" : ", bf16 (the control)"));
      const auto xg = x.clone().requires_grad_(true), wg = w.clone().requires_grad_(true);
      // 7-token chunks: several chunks and a short last one.
      const auto loss = chunked_head_loss(xg, wg, targets, 15.0, 7, fused, fp8) * static_cast<double>(n);
      const auto got = torch::autograd::grad({loss}, {xg, wg});
      const double loss_error = std::abs(loss.item<double>() - want_loss.item<double>()) / want_loss.item<double>();
      const double gx = rel(got[0], want[0]), gw = rel(got[1], want[1]);
      if (fp8) {
        EXPECT_LE(loss_error, 1e-5);
        EXPECT_LE(gx, 2e-3) << "grad x";
        EXPECT_LE(gw, 2e-3) << "grad w";
      } else {
        EXPECT_GE(std::max(gx, gw), 1e-2) << "the bf16 head is as close to the FP8 function as the FP8 head";
      }
    }
  }
}

TEST(Fp8Linear, RejectsMismatchedShapes) {
  try {
    fp8_linear(torch::zeros({4, 32}), torch::zeros({16, 48}), kScales);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("x [..., K] and w [N, K]"), std::string::npos) << e.what();
  }
}

}  // namespace

// The soft-capped cross-entropy of a chunk of logits, both versions (the CPU
// one-pass loop of models/softcap_cross_entropy_cpu.h at every SIMD level
// this CPU runs, and the LibTorch ops of models/softcap_cross_entropy.h),
// against float64 autograd of cap * tanh(l / cap) and cross_entropy on the
// same fp32 logits; and the vector exp and tanh (models/simd_math.h) against
// double-precision std::exp and std::tanh.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "models/simd_math.h"
#include "models/softcap_cross_entropy.h"
#include "models/softcap_cross_entropy_cpu.h"

using namespace muonrun;

namespace {

// Largest |f(x) - ref(x)| / |ref(x)| in units of float's epsilon over n
// points spread evenly over [lo, hi], through the 16-lane function.
template <class F, class Ref>
double max_error_eps(F f, Ref ref, double lo, double hi, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; i += simd::kLanes) {
    float x[simd::kLanes];
    for (int64_t k = 0; k < simd::kLanes; ++k) x[k] = static_cast<float>(lo + (hi - lo) * (i + k) / (n - 1));
    const simd::f32x16 y = f(simd::load(x));
    for (int64_t k = 0; k < simd::kLanes; ++k) {
      const double truth = ref(static_cast<double>(x[k]));
      if (truth == 0) continue;
      worst = std::max(worst, std::abs(y[k] - truth) / std::abs(truth) / FLT_EPSILON);
    }
  }
  return worst;
}

struct Expected {
  double loss;
  torch::Tensor grad;  // double
};

// Float64 autograd of the composite formula on the same logits.
Expected float64_reference(const torch::Tensor& logits, const torch::Tensor& targets, double cap) {
  auto l = logits.to(torch::kDouble).requires_grad_();
  auto c = cap > 0 ? cap * torch::tanh(l / cap) : l;
  auto loss = torch::nn::functional::cross_entropy(
      c, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  loss.backward();
  return {loss.item<double>(), l.grad()};
}

std::vector<SimdLevel> levels_here() {
  std::vector<SimdLevel> levels;
  for (auto level : {SimdLevel::portable, SimdLevel::avx2, SimdLevel::avx512})
    if (static_cast<int>(level) <= static_cast<int>(best_simd_level())) levels.push_back(level);
  return levels;
}

}  // namespace

TEST(SimdMath, ExpIsWithinTwoUlpOfDoubleExp) {
  // The range the soft-max uses (c - cap lies in [-2 cap, 0]) and the rest
  // of float's normal range.
  EXPECT_LE(max_error_eps([](simd::f32x16 x) { return simd::exp(x); },
                          [](double x) { return std::exp(x); }, -87.0, 88.0, 1 << 20),
            2.0);
}

TEST(SimdMath, TanhIsWithinTwoUlpOfDoubleTanh) {
  auto f = [](simd::f32x16 x) { return simd::tanh(x); };
  auto ref = [](double x) { return std::tanh(x); };
  EXPECT_LE(max_error_eps(f, ref, -0.7, 0.7, 1 << 18), 2.0);
  EXPECT_LE(max_error_eps(f, ref, -12.0, 12.0, 1 << 20), 2.0);
  EXPECT_LE(max_error_eps(f, ref, 1e-30, 1e-3, 1 << 12), 2.0);  // tiny arguments keep their precision
}

TEST(SimdMath, TanhStaysWithinMinusOneAndOne) {
  // 1 - tanh^2 is the soft-cap's derivative: it must not turn negative.
  for (float x = 0; x < 12; x += 1.0f / 4096) {
    const simd::f32x16 t = simd::tanh(simd::splat(x));
    ASSERT_LE(t[0], 1.0f) << x;
    ASSERT_GE(simd::tanh(simd::splat(-x))[0], -1.0f) << x;
  }
}

TEST(SimdMath, ExpAndTanhPropagateNan) {
  const simd::f32x16 x = simd::splat(NAN);
  EXPECT_TRUE(std::isnan(simd::exp(x)[3]));
  EXPECT_TRUE(std::isnan(simd::tanh(x)[5]));
}

// Rows whose width is below, at and just past the 16 lanes and a multiple of
// them, with logits of the scale a trained head gives (and a large one, which
// the cap flattens), with and without the cap. The loss is within 1e-6
// relative; the gradient, per element relative to its row's largest, within
// 1e-6 or 1.5 times the error of LibTorch's own fp32 ops, whichever is
// larger (a cap of 2 puts many logits where 1 - t^2 cancels).
TEST(SoftcapCrossEntropy, BothVersionsMatchFloat64Autograd) {
  torch::manual_seed(3);
  for (int64_t V : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{1000}, int64_t{50304}}) {
    for (double cap : {30.0, 0.0, 2.0}) {
      for (bool gradients : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "V " << V << " cap " << cap << " gradients " << gradients);
        const int64_t n = V > 1000 ? 6 : 23;
        auto logits = torch::randn({n, V}) * 4;
        logits.index_put_({0, 0}, 300.0f);  // beyond the cap
        auto targets = torch::randint(V, {n}, torch::kLong);
        const auto expected = float64_reference(logits, targets, cap);
        // The loss's error is checked here; the gradient's is returned.
        auto error = [&](const torch::Tensor& out, const torch::Tensor& loss) {
          EXPECT_NEAR(loss.item<double>(), expected.loss, 1e-6 * std::abs(expected.loss) + 1e-6);
          if (!gradients) return 0.0;
          auto row_scale = expected.grad.abs().amax(1, true).clamp_min(1e-6);  // V = 1: a zero gradient
          return ((out.to(torch::kDouble) - expected.grad).abs() / row_scale).max().item<double>();
        };
        auto ops_out = logits.clone();
        torch::Tensor scratch = torch::empty_like(logits);
        const double ops_error =
            error(ops_out, softcap_cross_entropy_(ops_out, targets, cap, gradients, scratch));
        EXPECT_LE(ops_error, 5e-5) << "LibTorch ops";
        for (auto level : levels_here()) {
          auto out = logits.clone();
          const double loop_error = error(out, softcap_cross_entropy_cpu_(out, targets, cap, gradients, level));
          EXPECT_LE(loop_error, std::max(1e-6, 1.5 * ops_error)) << simd_level_name(level);
        }
      }
    }
  }
}

TEST(SoftcapCrossEntropy, CpuLoopGivesTheSameBitsOnAnyNumberOfThreads) {
  torch::manual_seed(4);
  auto logits = torch::randn({64, 3001}) * 3;
  auto targets = torch::randint(3001, {64}, torch::kLong);
  const int threads = at::get_num_threads();
  auto one = logits.clone(), many = logits.clone();
  at::set_num_threads(1);
  auto loss_one = softcap_cross_entropy_cpu_(one, targets, 30, true);
  at::set_num_threads(std::max(2, threads));
  auto loss_many = softcap_cross_entropy_cpu_(many, targets, 30, true);
  at::set_num_threads(threads);
  EXPECT_EQ(loss_one.item<float>(), loss_many.item<float>());
  EXPECT_TRUE(torch::equal(one, many));
}

TEST(SoftcapCrossEntropy, CpuLoopNamesATargetOutsideTheVocabulary) {
  auto logits = torch::zeros({3, 10});
  auto targets = torch::tensor({1, 10, 2}, torch::kLong);
  try {
    softcap_cross_entropy_cpu_(logits, targets, 30, true);
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("target 10 of row 1 is outside the vocabulary [0, 10)"), std::string::npos)
        << e.what();
  }
}

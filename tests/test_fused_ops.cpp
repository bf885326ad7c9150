// The fused element-wise ops (models/fused_rms_norm.h, qk_norm_rotary.h,
// relu_square.h, mix_norm.h) on the CPU against the composite LibTorch ops
// they replace (ElementwiseOps{false} in models/gpt.h, the model's reference
// path), forward and backward (vector-Jacobian products with random
// cotangents through torch::autograd::grad), on shapes whose rows are not a
// multiple of the loops' 8-wide partial sums:
//   double inputs: fused double vs composite double, 1e-12 relative (the
//                  formulas themselves);
//   fp32:          fused vs composite fp32 and vs composite double of the
//                  same inputs, 2e-6 relative (norm of the difference over
//                  the norm of the reference, per tensor);
//   bf16:          fused vs composite double of the same bf16 inputs within
//                  1e-2 relative (a few bf16 roundings, 2^-8 each), and no
//                  worse than the composite bf16 ops plus 2e-3;
// and the whole GPT: loss and every parameter gradient with kernels=fused vs
// reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "models/fused_rms_norm.h"
#include "models/gpt.h"
#include "models/mix_norm.h"
#include "models/qk_norm_rotary.h"
#include "models/relu_square.h"
#include "tests/op_check.h"
#include "tests/tiny_model.h"

using namespace muonrun;
using torch::Tensor;

namespace {

const ElementwiseOps kFused{true}, kReference{false};

using tests::Op;
using tests::relative_error;

// The four comparisons of the header for one op and one set of inputs.
void check_op(const std::string& name, const Op& fused, const Op& reference, const std::vector<Tensor>& inputs,
              const std::vector<bool>& differentiable) {
  SCOPED_TRACE(name);
  const auto truth = tests::run_op(reference, inputs, differentiable, torch::kDouble);
  const auto fused64 = tests::run_op(fused, inputs, differentiable, torch::kDouble);
  const auto fused32 = tests::run_op(fused, inputs, differentiable, torch::kFloat);
  const auto ref32 = tests::run_op(reference, inputs, differentiable, torch::kFloat);
  // bf16: the truth is the double composite of the same (rounded) inputs.
  std::vector<Tensor> rounded;
  for (auto& t : inputs) rounded.push_back(t.to(torch::kBFloat16).to(torch::kDouble));
  const auto truth16 = tests::run_op(reference, rounded, differentiable, torch::kDouble);
  const auto fused16 = tests::run_op(fused, rounded, differentiable, torch::kBFloat16);
  const auto ref16 = tests::run_op(reference, rounded, differentiable, torch::kBFloat16);
  ASSERT_EQ(truth.size(), fused32.size());
  for (size_t i = 0; i < truth.size(); ++i) {
    SCOPED_TRACE("output/gradient " + std::to_string(i));
    EXPECT_LE(relative_error(fused64[i], truth[i]), 1e-12);
    EXPECT_LE(relative_error(fused32[i], truth[i]), 2e-6);
    EXPECT_LE(relative_error(fused32[i], ref32[i]), 2e-6);
    const double e16 = relative_error(fused16[i], truth16[i]);
    EXPECT_LE(e16, 1e-2);
    EXPECT_LE(e16, relative_error(ref16[i], truth16[i]) + 2e-3);
  }
}

// Rotary tables as GPTImpl::rotary makes them: [1, T, 1, D/2].
std::pair<Tensor, Tensor> rotary_tables(int64_t T, int64_t D) {
  auto inv_freq = 1.0 / torch::pow(10000.0, torch::arange(0, D, 2, torch::kDouble) / D);
  auto freqs = torch::outer(torch::arange(T, torch::kDouble), inv_freq);
  return {freqs.cos().view({1, T, 1, D / 2}), freqs.sin().view({1, T, 1, D / 2})};
}

}  // namespace

TEST(FusedOps, RmsNormMatchesComposite) {
  torch::manual_seed(0);
  const Op fused = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{kFused.norm(in[0])}; };
  const Op reference = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{kReference.norm(in[0])}; };
  for (auto shape : std::vector<std::vector<int64_t>>{{3, 5, 37}, {1, 3}, {7, 130}, {2, 3, 8}}) {
    auto x = torch::randn(shape, torch::kDouble) * 3 + 0.5;
    check_op("rms_norm " + c10::str(torch::IntArrayRef(shape)), fused, reference, {x}, {true});
  }
}

TEST(FusedOps, QkNormRotaryMatchesComposite) {
  torch::manual_seed(0);
  for (auto [B, T, H, D] : std::vector<std::array<int64_t, 4>>{{2, 5, 3, 18}, {1, 7, 2, 32}, {3, 1, 1, 2}}) {
    auto [cos, sin] = rotary_tables(T, D);
    // x as the model has it: a [B, T, H, D] view of a [B, T, H*D] linear output.
    auto x = (torch::randn({B, T, H * D}, torch::kDouble) * 2).view({B, T, H, D});
    const auto op = [](const ElementwiseOps& ops) -> Op {
      return [&ops](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{ops.qk_norm_rotary(in[0], in[1], in[2])};
      };
    };
    check_op("qk_norm_rotary " + std::to_string(D), op(kFused), op(kReference), {x, cos, sin},
             {true, false, false});
    // The layout attention takes: the composite's transposed view, no copy.
    auto f = kFused.qk_norm_rotary(x.to(torch::kFloat), cos.to(torch::kFloat), sin.to(torch::kFloat));
    auto r = kReference.qk_norm_rotary(x.to(torch::kFloat), cos.to(torch::kFloat), sin.to(torch::kFloat));
    EXPECT_EQ(f.sizes(), (std::vector<int64_t>{B, H, T, D}));
    EXPECT_EQ(f.strides(), r.strides());
  }
}

TEST(FusedOps, ReluSquareMatchesCompositeBitForBit) {
  torch::manual_seed(0);
  auto x = torch::randn({3, 1001}, torch::kDouble);
  x.index_put_({0, torch::indexing::Slice(0, 10)}, 0.0);  // relu's kink
  const Op fused = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{kFused.relu_square(in[0])}; };
  const Op reference = [](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{kReference.relu_square(in[0])};
  };
  check_op("relu_square", fused, reference, {x}, {true});
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    auto a = x.to(dtype).requires_grad_(true), b = x.to(dtype).requires_grad_(true);
    auto g = torch::randn({3, 1001}).to(dtype);
    auto ya = kFused.relu_square(a), yb = kReference.relu_square(b);
    EXPECT_TRUE(torch::equal(ya, yb));
    ya.backward(g);
    yb.backward(g);
    EXPECT_TRUE(torch::equal(a.grad(), b.grad()));
  }
  // NaN goes through, as torch::relu: divergence checks see it.
  auto nan = torch::full({4}, std::nan(""));
  EXPECT_TRUE(torch::isnan(kFused.relu_square(nan)).all().item<bool>());
}

TEST(FusedOps, BlockInputMixAndNormMatchComposite) {
  torch::manual_seed(0);
  const std::vector<int64_t> shape{2, 7, 45};
  auto x_in = torch::randn(shape, torch::kDouble), x0 = torch::randn(shape, torch::kDouble);
  auto skip = torch::randn(shape, torch::kDouble);
  auto lambdas = torch::tensor({0.8, -0.35}, torch::kDouble), skip_weights = torch::tensor({1.3, 0.6}, torch::kDouble);
  const auto op = [](const ElementwiseOps& ops, bool with_skip) -> Op {
    return [&ops, with_skip](const std::vector<Tensor>& in) {
      // lambdas and skip weights are fp32 parameters whatever the compute
      // dtype (double in the double runs, whose gradients stay exact).
      const auto param = [](const Tensor& t) { return t.scalar_type() == torch::kDouble ? t : t.to(torch::kFloat); };
      auto l = param(in[3]), s = param(in[4])[1];
      auto out = with_skip ? ops.block_input(in[0], in[1], l, in[2], s)
                           : ops.block_input(in[0], in[1], l, Tensor(), Tensor());
      return std::vector<Tensor>{out.x, out.normed};
    };
  };
  check_op("block input", op(kFused, false), op(kReference, false), {x_in, x0, skip, lambdas, skip_weights},
           {true, true, false, true, false});
  check_op("block input with skip", op(kFused, true), op(kReference, true),
           {x_in, x0, skip, lambdas, skip_weights}, {true, true, true, true, true});
}

TEST(FusedOps, ResidualAddAndNormMatchComposite) {
  torch::manual_seed(0);
  for (auto shape : std::vector<std::vector<int64_t>>{{2, 7, 45}, {5, 8}}) {
    auto x = torch::randn(shape, torch::kDouble), y = torch::randn(shape, torch::kDouble) * 0.3;
    const auto op = [](const ElementwiseOps& ops) -> Op {
      return [&ops](const std::vector<Tensor>& in) {
        auto out = ops.add_norm(in[0], in[1]);
        return std::vector<Tensor>{out.x, out.normed};
      };
    };
    check_op("add_norm", op(kFused), op(kReference), {x, y}, {true, true});
  }
  // Only one output used (the other's gradient undefined): still right.
  auto x = torch::randn({3, 9}, torch::requires_grad()), y = torch::randn({3, 9}, torch::requires_grad());
  auto gx = torch::autograd::grad({kFused.add_norm(x, y).normed.sum()}, {x})[0];
  auto gr = torch::autograd::grad({kReference.add_norm(x, y).normed.sum()}, {x})[0];
  EXPECT_LE(relative_error(gx.to(torch::kDouble), gr.to(torch::kDouble)), 2e-6);
}

TEST(FusedOps, RefusesWhatTheyCannotDo) {
  auto x = torch::randn({2, 3, 4, 5});  // odd head dimension
  auto [cos, sin] = rotary_tables(3, 4);
  EXPECT_THROW(qk_norm_rotary(x, cos, sin), c10::Error);
  auto a = torch::randn({2, 3}), b = torch::randn({2, 4});
  EXPECT_THROW(mix_norm({{a, {}}, {b, {}}}), c10::Error);
  EXPECT_THROW(mix_norm({{a, {}}}), c10::Error);
}

// The whole network, kernels=fused vs reference, on a 4-layer model (two
// U-net skips) with every weight random (the zero-initialised projections
// would hide the blocks): in double the hidden states and every gradient
// through them, parameters in double too (the head computes in fp32 and is
// the same code either way), 1e-10 relative; in fp32 the loss and every
// parameter's gradient, 1e-5 (1e-4 for the scalars).
TEST(FusedOps, WholeModelLossAndGradientsMatchReference) {
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    SCOPED_TRACE(c10::toString(dtype));
    auto config = tests::tiny_model_config(4, 300, 12);
    std::vector<Tensor> outputs;
    std::vector<std::vector<Tensor>> grads;
    for (auto kernels : {Kernels::fused, Kernels::reference}) {
      config.kernels = kernels;
      torch::manual_seed(0);
      GPT model(config);
      {
        torch::NoGradGuard no_grad;
        for (auto& p : model->parameters()) p.normal_(0, 0.5);
      }
      if (dtype == torch::kDouble) model->to(torch::kDouble);  // parameters and their gradients too
      model->set_compute_dtype(dtype);
      auto idx = torch::randint(config.vocab_size, {3, config.seq_len}, torch::kLong);
      auto targets = torch::randint(config.vocab_size, {3, config.seq_len}, torch::kLong);
      Tensor out;
      if (dtype == torch::kDouble) {
        out = model->hidden_states(idx);
        (out * torch::randn(out.sizes(), out.options())).sum().backward();
      } else {
        out = model->loss(idx, targets);
        out.backward();
      }
      outputs.push_back(out.detach().to(torch::kDouble));
      grads.emplace_back();
      for (auto& p : model->parameters())
        grads.back().push_back(p.grad().defined() ? p.grad().to(torch::kDouble) : torch::zeros({1}, torch::kDouble));
    }
    const double tol = dtype == torch::kDouble ? 1e-10 : 1e-5;
    EXPECT_LE(relative_error(outputs[0], outputs[1]), tol);
    for (size_t i = 0; i < grads[0].size(); ++i) {
      // The scalars' gradients are sums over every activation: cancellation
      // magnifies fp32 rounding.
      const double t = dtype == torch::kFloat && grads[0][i].numel() <= 2 ? 1e-4 : tol;
      EXPECT_LE(relative_error(grads[0][i], grads[1][i]), t) << "parameter " << i << " " << grads[0][i].sizes();
    }
  }
}

// model.kernels=auto is the fused ops (a fused op's output has its autograd
// node as grad_fn, the composite a LibTorch one).
TEST(FusedOps, AutoIsFused) {
  auto config = tests::tiny_model_config();
  for (auto [kernels, fused] : std::vector<std::pair<Kernels, bool>>{
           {Kernels::automatic, true}, {Kernels::fused, true}, {Kernels::reference, false}}) {
    config.kernels = kernels;
    torch::manual_seed(0);
    GPT model(config);
    auto h = model->hidden_states(torch::randint(config.vocab_size, {1, config.seq_len}, torch::kLong));
    const std::string node = h.grad_fn()->name();
    EXPECT_EQ(node.find("FusedRmsNorm") != std::string::npos, fused) << node;
  }
}

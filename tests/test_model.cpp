// The speedrun GPT: shapes, causality, loss at init, gradients, and its
// building blocks against float64 formulas written here.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "models/chunked_head.h"
#include "models/gpt.h"
#include "tests/tiny_model.h"

using namespace muonrun;

namespace {

// Vocabulary 300 pads to 384: the padded logits are exercised.
ModelConfig tiny_config() { return tests::tiny_model_config(4, 300, 12); }

// Zero-initialised projections and head make a fresh model's outputs trivially
// constant; tests of information flow need every weight non-zero.
void randomize(GPT& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.5);
}

}  // namespace

TEST(Model, PadsTheVocabulary) {
  ModelConfig c;
  EXPECT_EQ(padded_vocab(c), 50304);
  c.vocab_size = 128;
  EXPECT_EQ(padded_vocab(c), 128);
}

TEST(Model, RecordElevenParameterCount) {
  // 124M model: 12 x (4 x 768^2 + 2 x 4 x 768^2) + 2 x 50304 x 768 + scalars.
  torch::manual_seed(0);
  GPT model(ModelConfig{});
  int64_t total = 0;
  for (auto& p : model->parameters()) total += p.numel();
  const int64_t matrices = 12 * 12 * 768 * 768;
  const int64_t embed_and_head = 2 * 50304 * 768;
  const int64_t scalars = 12 * (1 + 2) + 6;
  EXPECT_EQ(total, matrices + embed_and_head + scalars);
}

TEST(Model, OutputShapeAndLossAtInit) {
  torch::manual_seed(0);
  auto c = tiny_config();
  GPT model(c);
  auto idx = torch::randint(c.vocab_size, {3, c.seq_len}, torch::kLong);
  auto logits = model->forward(idx);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, c.seq_len, padded_vocab(c)}));
  EXPECT_EQ(logits.scalar_type(), torch::kFloat);
  // The zero-initialised head gives uniform predictions: loss = ln(vocab_padded).
  auto loss = model->loss(idx, torch::randint(c.vocab_size, {3, c.seq_len}, torch::kLong));
  EXPECT_NEAR(loss.item<double>(), std::log(static_cast<double>(padded_vocab(c))), 1e-5);
}

TEST(Model, IsCausal) {
  torch::manual_seed(1);
  auto c = tiny_config();
  GPT model(c);
  randomize(model);
  auto idx = torch::randint(c.vocab_size, {2, c.seq_len}, torch::kLong);
  auto before = model->forward(idx);
  const int64_t t = 7;
  auto changed = idx.clone();
  changed.index_put_({torch::indexing::Slice(), t}, (idx.index({torch::indexing::Slice(), t}) + 1) % c.vocab_size);
  auto after = model->forward(changed);
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(before.index({Slice(), Slice(0, t)}), after.index({Slice(), Slice(0, t)})));
  EXPECT_FALSE(torch::allclose(before.index({Slice(), Slice(t, t + 1)}),
                               after.index({Slice(), Slice(t, t + 1)})));
}

TEST(Model, BackwardReachesEveryParameter) {
  torch::manual_seed(2);
  auto c = tiny_config();
  GPT model(c);
  randomize(model);
  auto idx = torch::randint(c.vocab_size, {2, c.seq_len}, torch::kLong);
  model->loss(idx, torch::randint(c.vocab_size, {2, c.seq_len}, torch::kLong)).backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    // Block 0 mixes its values with themselves, (1-l) v + l v, so its lamb has
    // a zero gradient by construction, as in the speedrun script.
    if (p.key() == "transformer.h.0.attn.lamb") continue;
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
}

TEST(Model, ParameterNamesMatchTheSpeedrunScript) {
  GPT model(tiny_config());
  auto named = model->named_parameters();
  for (const char* name : {"transformer.wte.weight", "transformer.h.0.attn.c_q.weight",
                           "transformer.h.3.attn.c_proj.weight", "transformer.h.1.attn.lamb",
                           "transformer.h.2.mlp.c_fc.weight", "transformer.h.2.mlp.c_proj.weight",
                           "transformer.h.0.lambdas", "skip_weights", "lm_head.weight"})
    EXPECT_NE(named.find(name), nullptr) << name;
}

TEST(Model, RmsNormMatchesFloat64Formula) {
  torch::manual_seed(3);
  auto x = torch::randn({4, 5, 32});
  auto x64 = x.to(torch::kDouble);
  auto expected = x64 / torch::sqrt(x64.pow(2).mean(-1, true) + FLT_EPSILON);
  EXPECT_TRUE(torch::allclose(rms_norm(x).to(torch::kDouble), expected, 1e-6, 1e-6));
}

TEST(Model, RotaryDependsOnlyOnRelativePosition) {
  // <rot(q, m), rot(k, n)> must depend on m - n alone, and rotation keeps norms.
  torch::manual_seed(4);
  const int64_t D = 16, T = 10;
  auto inv_freq = 1.0 / torch::pow(10000.0, torch::arange(0, D, 2, torch::kDouble) / D);
  auto freqs = torch::outer(torch::arange(T, torch::kDouble), inv_freq);
  auto cos = freqs.cos().view({1, T, 1, D / 2}), sin = freqs.sin().view({1, T, 1, D / 2});
  auto q = torch::randn({1, 1, 1, D}, torch::kDouble).expand({1, T, 1, D});
  auto k = torch::randn({1, 1, 1, D}, torch::kDouble).expand({1, T, 1, D});
  auto rq = apply_rotary(q.contiguous(), cos, sin), rk = apply_rotary(k.contiguous(), cos, sin);
  auto dot = [&](int64_t m, int64_t n) { return (rq[0][m][0] * rk[0][n][0]).sum().item<double>(); };
  EXPECT_NEAR(dot(5, 2), dot(7, 4), 1e-10);
  EXPECT_NEAR(dot(3, 3), dot(9, 9), 1e-10);
  EXPECT_NEAR(rq[0][6][0].norm().item<double>(), q[0][0][0].norm().item<double>(), 1e-10);
}

TEST(Model, CausalAttentionMatchesFloat64Reference) {
  torch::manual_seed(5);
  auto q = torch::randn({2, 3, 6, 8}), k = torch::randn({2, 3, 6, 8}), v = torch::randn({2, 3, 6, 8});
  auto out = causal_attention(q, k, v).to(torch::kDouble);
  auto q64 = q.to(torch::kDouble), k64 = k.to(torch::kDouble), v64 = v.to(torch::kDouble);
  for (int64_t t = 0; t < 6; ++t) {
    using torch::indexing::Slice;
    auto keys = k64.index({Slice(), Slice(), Slice(0, t + 1)});
    auto scores = torch::matmul(q64.index({Slice(), Slice(), Slice(t, t + 1)}), keys.transpose(-2, -1)) / std::sqrt(8.0);
    auto expected = torch::matmul(torch::softmax(scores, -1), v64.index({Slice(), Slice(), Slice(0, t + 1)}));
    EXPECT_TRUE(torch::allclose(out.index({Slice(), Slice(), Slice(t, t + 1)}), expected, 1e-5, 1e-5)) << t;
  }
}

// The chunked head against the composite LibTorch ops it replaces (linear,
// soft-cap, cross-entropy on whole logits), forward and backward, for chunk
// sizes that do and do not divide the tokens, with and without the cap, for
// a vocabulary of the GPT-2 order (the soft-max over 20,000 logits a row),
// with either version of its element-wise work (the CPU loop and LibTorch's ops).
TEST(ChunkedHead, MatchesTheCompositeOpsForwardAndBackward) {
  torch::manual_seed(7);
  const int64_t N = 37, D = 24;
  for (bool fused : {true, false}) {
    for (int64_t V : {int64_t{101}, int64_t{20000}}) {
      for (double cap : {30.0, 0.0, 2.0}) {
        for (int64_t chunk : {int64_t{1}, int64_t{8}, int64_t{37}, int64_t{100}}) {
          if (V > 1000 && chunk == 1) continue;  // 37 chunks of one token add nothing at this size
          auto h = (torch::randn({N, D}) * 3).requires_grad_();
          auto w = torch::randn({V, D}).requires_grad_();
          auto y = torch::randint(V, {N}, torch::kLong);
          auto h_ref = h.detach().clone().requires_grad_(), w_ref = w.detach().clone().requires_grad_();
          auto logits = torch::nn::functional::linear(h_ref, w_ref);
          if (cap > 0) logits = cap * torch::tanh(logits / cap);
          auto expected = torch::nn::functional::cross_entropy(logits, y);
          (expected * 1.7).backward();
          auto loss = chunked_head_loss(h, w, y, cap, chunk, fused);
          (loss * 1.7).backward();
          const auto where = ::testing::Message() << "fused " << fused << " V " << V << " cap " << cap
                                                  << " chunk " << chunk;
          EXPECT_NEAR(loss.item<double>(), expected.item<double>(), 1e-5 * expected.item<double>()) << where;
          EXPECT_TRUE(torch::allclose(h.grad(), h_ref.grad(), 1e-5, 1e-6)) << where;
          EXPECT_TRUE(torch::allclose(w.grad(), w_ref.grad(), 1e-5, 1e-6)) << where;
        }
      }
    }
  }
}

TEST(ChunkedHead, WithoutGradModeOnlyTheLossIsComputed) {
  torch::manual_seed(8);
  auto h = torch::randn({10, 4}), w = torch::randn({7, 4}).requires_grad_();
  auto y = torch::randint(7, {10}, torch::kLong);
  auto with_grad = chunked_head_loss(h, w, y, 30, 3, /*fused=*/true);
  torch::NoGradGuard no_grad;
  auto without = chunked_head_loss(h, w, y, 30, 3, /*fused=*/true);
  EXPECT_FALSE(without.requires_grad());
  EXPECT_FLOAT_EQ(without.item<float>(), with_grad.item<float>());
}

TEST(ChunkedHead, ModelLossEqualsCrossEntropyOfItsLogits) {
  torch::manual_seed(9);
  auto config = tests::tiny_model_config();
  GPT model(config);
  for (auto& p : model->parameters()) p.data().normal_(0, 0.1);  // the head is zero at init
  auto idx = torch::randint(config.vocab_size, {2, config.seq_len}, torch::kLong);
  auto y = torch::randint(config.vocab_size, {2, config.seq_len}, torch::kLong);
  auto logits = model->forward(idx);
  auto expected = torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), y.view({-1}));
  EXPECT_NEAR(model->loss(idx, y).item<double>(), expected.item<double>(), 1e-5);
}

// Optimizers against independent references: LibTorch's own AdamW, float64
// formulas written in this file, SVD polar factors and closed forms.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/newton_schulz.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "tests/tiny_model.h"

using namespace muonrun;

namespace {

torch::Tensor singular_values(const torch::Tensor& X) {
  return torch::linalg_svdvals(X.to(torch::kDouble));
}

// A float64 matrix U diag(s) V^T with singular values spread over [lo, 1].
torch::Tensor conditioned_matrix(int64_t m, int64_t n, double lo) {
  auto U = std::get<0>(torch::linalg_qr(torch::randn({m, m}, torch::kDouble)));
  auto V = std::get<0>(torch::linalg_qr(torch::randn({n, n}, torch::kDouble)));
  const int64_t r = std::min(m, n);
  auto s = torch::linspace(lo, 1.0, r, torch::kDouble);
  return torch::matmul(U.narrow(1, 0, r) * s, V.narrow(1, 0, r).transpose(0, 1));
}

// Newton-Schulz in float64, written from the quintic iteration of
// KellerJordan/Muon (X = G / (||G||_F + 1e-7), transposed if tall; 5 times
// A = X X^T, X = a X + (b A + c A A) X) without the code under test.
torch::Tensor reference_newton_schulz(torch::Tensor G, int steps) {
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  bool tall = G.size(0) > G.size(1);
  auto X = tall ? G.t() : G;
  X = X / (X.norm() + 1e-7);
  for (int i = 0; i < steps; ++i) {
    auto A = X.mm(X.t());
    X = a * X + (b * A + c * A.mm(A)).mm(X);
  }
  return tall ? X.t() : X;
}

}  // namespace

// --- Newton-Schulz ----------------------------------------------------------
TEST(NewtonSchulz, SingularValuesLandInTheQuinticBand) {
  torch::manual_seed(0);
  for (auto [m, n] : {std::pair<int64_t, int64_t>{64, 64}, {32, 96}, {96, 32}}) {
    auto G = conditioned_matrix(m, n, 0.05);
    auto O = newton_schulz(G.to(torch::kFloat), 5, quintic_schedule(), torch::kFloat);
    auto s = singular_values(O);
    // The quintic's band after 5 steps is "about [0.68, 1.13]": its minimum on
    // [0.68, 1.13] is p(1.05) = 0.682 but p(0.68) = 1.136, so allow 0.01.
    EXPECT_GE(s.min().item<double>(), 0.68 - 0.01) << m << "x" << n;
    EXPECT_LE(s.max().item<double>(), 1.13 + 0.01) << m << "x" << n;
    // Same singular vectors as the exact polar factor: U^T O V is diagonal.
    auto [U, S, Vh] = torch::linalg_svd(G, false);
    auto core = torch::matmul(torch::matmul(U.t(), O.to(torch::kDouble)), Vh.t());
    auto off_diagonal = core - torch::diag_embed(core.diagonal());
    EXPECT_LT(off_diagonal.abs().max().item<double>(), 1e-4) << m << "x" << n;
  }
}

TEST(NewtonSchulz, RankOneInputKeepsItsDirection) {
  torch::manual_seed(1);
  auto u = torch::randn({48, 1}, torch::kDouble), v = torch::randn({1, 80}, torch::kDouble);
  auto G = u.mm(v);
  auto O = newton_schulz(G.to(torch::kFloat), 5, quintic_schedule(), torch::kFloat).to(torch::kDouble);
  // The polar factor of a rank-1 matrix is u v^T / (|u| |v|) (an SVD would
  // add arbitrary null-space directions with zero singular values).
  auto expected = G / (u.norm() * v.norm());
  auto cosine = (O * expected).sum() / (O.norm() * expected.norm());
  EXPECT_NEAR(cosine.item<double>(), 1.0, 1e-6);
}

TEST(NewtonSchulz, MatchesFloat64ReferenceAndHandlesTallAndBatched) {
  torch::manual_seed(2);
  auto G = torch::randn({40, 24}, torch::kDouble);
  auto O = newton_schulz(G, 5, quintic_schedule(), torch::kDouble);
  EXPECT_TRUE(torch::allclose(O, reference_newton_schulz(G, 5), 1e-10, 1e-10));
  auto batch = torch::randn({3, 16, 32});
  auto batched = newton_schulz(batch, 5, quintic_schedule(), torch::kFloat);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(torch::allclose(batched[i], newton_schulz(batch[i], 5, quintic_schedule(), torch::kFloat), 1e-5, 1e-6));
}

// The batched call (one stack of same-shape matrices) against the same
// function matrix by matrix and against the float64 reference, tall and
// wide, and a batch of one.
TEST(NewtonSchulz, BatchedEqualsPerMatrixAndTheFloat64Reference) {
  torch::manual_seed(6);
  for (auto [m, n] : {std::pair<int64_t, int64_t>{16, 40}, {40, 16}, {24, 24}}) {
    auto batch = torch::randn({5, m, n});
    auto batched = newton_schulz(batch, 5, quintic_schedule(), torch::kFloat);
    ASSERT_EQ(batched.sizes(), batch.sizes());
    for (int64_t i = 0; i < 5; ++i) {
      auto single = newton_schulz(batch[i], 5, quintic_schedule(), torch::kFloat);
      EXPECT_LT((batched[i] - single).abs().max().item<double>(), 1e-5) << m << "x" << n << " #" << i;
      auto reference = reference_newton_schulz(batch[i].to(torch::kDouble), 5);
      EXPECT_LT((batched[i].to(torch::kDouble) - reference).abs().max().item<double>(), 1e-4) << m << "x" << n;
    }
    // A batch of one runs the same kernels as the matrix alone.
    EXPECT_TRUE(torch::equal(newton_schulz(batch.narrow(0, 0, 1), 5, quintic_schedule(), torch::kFloat)[0],
                             newton_schulz(batch[0], 5, quintic_schedule(), torch::kFloat)));
  }
  // Each matrix keeps its own normalisation: scaling one does not move another.
  auto batch = torch::randn({2, 8, 12});
  auto scaled = batch.clone();
  scaled[1].mul_(1000);
  auto a = newton_schulz(batch, 5, quintic_schedule(), torch::kFloat);
  auto b = newton_schulz(scaled, 5, quintic_schedule(), torch::kFloat);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
}

// --- AdamW ------------------------------------------------------------------
TEST(AdamW, MatchesLibTorchAdamWOverTenSteps) {
  torch::manual_seed(3);
  AdamConfig config;
  config.beta1 = 0.9;
  config.beta2 = 0.95;
  config.eps = 1e-8;
  config.weight_decay = 0.1;
  auto a = torch::randn({5, 7}), b = torch::randn({3});
  auto a_ref = a.clone(), b_ref = b.clone();
  AdamW ours({{"g1", 0.01, {{"a", a}}}, {"g2", 0.003, {{"b", b}}}}, config);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a_ref},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{b_ref},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.003).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(0.01));
  for (int step = 0; step < 10; ++step) {
    auto ga = torch::randn({5, 7}), gb = torch::randn({3});
    a.mutable_grad() = ga.clone();
    b.mutable_grad() = gb.clone();
    a_ref.mutable_grad() = ga.clone();
    b_ref.mutable_grad() = gb.clone();
    ours.step(1.0);
    reference.step();
    EXPECT_TRUE(torch::allclose(a, a_ref, 0, 1e-7)) << "step " << step;
    EXPECT_TRUE(torch::allclose(b, b_ref, 0, 1e-7)) << "step " << step;
  }
}

// The fused kernel's found_inf: a skipped step leaves weights, moments and
// step counts untouched; skip = false is the step without a flag.
TEST(AdamW, FusedSkipLeavesEverythingUntouched) {
  torch::manual_seed(9);
  AdamConfig config;
  config.weight_decay = 0.1;
  auto w = torch::randn({6, 5}), v = torch::randn({5});
  auto w2 = w.clone(), v2 = v.clone();
  AdamW adam({{"g", 0.01, {{"w", w}, {"v", v}}}}, config), plain({{"g", 0.01, {{"w", w2}, {"v", v2}}}}, config);
  ASSERT_TRUE(adam.fused());
  auto gw = torch::randn({6, 5}), gv = torch::randn({5});
  w.mutable_grad() = gw.clone();
  v.mutable_grad() = gv.clone();
  w2.mutable_grad() = gw.clone();
  v2.mutable_grad() = gv.clone();
  adam.step(1.0, torch::tensor(false));
  plain.step(1.0);
  EXPECT_TRUE(torch::equal(w, w2));
  EXPECT_TRUE(torch::equal(v, v2));
  std::map<std::string, torch::Tensor> before;
  for (auto& [k, t] : adam.state()) before[k] = t.clone();
  const auto w_before = w.clone(), v_before = v.clone();
  w.mutable_grad() = torch::full({6, 5}, std::nan(""));
  v.mutable_grad() = torch::randn({5});
  adam.step(1.0, torch::tensor(true));
  EXPECT_TRUE(torch::equal(w, w_before));
  EXPECT_TRUE(torch::equal(v, v_before));
  for (auto& [k, t] : adam.state()) EXPECT_TRUE(torch::equal(t, before.at(k))) << k;
  // The checkpoint keeps its format: adam.step.<name> an int64 count on the host.
  for (auto& [k, t] : adam.state())
    if (k.rfind("adam.step.", 0) == 0) {
      EXPECT_EQ(t.scalar_type(), torch::kInt64) << k;
      EXPECT_EQ(t.dim(), 0) << k;
      EXPECT_EQ(t.item<int64_t>(), 1) << k;
    }
  // The ablations' per-parameter path has no device-side skip.
  AdamConfig ablation;
  ablation.bias_correction = false;
  AdamW unfused({{"g", 0.01, {{"w", w}}}}, ablation);
  EXPECT_FALSE(unfused.fused());
  EXPECT_THROW(unfused.step(1.0, torch::tensor(false)), c10::Error);
}

TEST(AdamW, FirstStepHasMagnitudeLr) {
  // With bias correction the first update is lr * g / (|g| + eps) = lr * sign(g).
  AdamConfig config;
  auto w = torch::zeros({4});
  AdamW adam({{"g", 0.5, {{"w", w}}}}, config);
  w.mutable_grad() = torch::tensor({3.0f, -2.0f, 0.5f, -7.0f});
  adam.step(1.0);
  EXPECT_TRUE(torch::allclose(w, torch::tensor({-0.5f, 0.5f, -0.5f, 0.5f}), 0, 1e-6));
}

// --- Muon -------------------------------------------------------------------
TEST(Muon, StepMatchesFloat64Reference) {
  torch::manual_seed(4);
  const int64_t rows = 24, cols = 12;  // tall: shape factor sqrt(2)
  auto W = torch::randn({rows, cols});
  auto W64 = W.to(torch::kDouble);
  auto M64 = torch::zeros({rows, cols}, torch::kDouble);
  auto momentum = torch::zeros({rows, cols});
  MuonStep step{0.02, 0.9, true, 5, 0.1, quintic_schedule()};
  for (int i = 0; i < 3; ++i) {
    auto G = torch::randn({rows, cols});
    muon_update(W, G, momentum, step);
    // Reference, from the formulas in muon.h.
    auto G64 = G.to(torch::kDouble);
    M64 = 0.9 * M64 + 0.1 * G64;
    auto U = 0.1 * G64 + 0.9 * M64;
    auto O = reference_newton_schulz(U, 5);
    W64 = (1 - 0.02 * 0.1) * W64 - 0.02 * std::sqrt(2.0) * O;
    EXPECT_LT((W.to(torch::kDouble) - W64).abs().max().item<double>(), 2e-5) << "step " << i;
  }
}

TEST(Muon, WithoutNesterovUsesTheMomentum) {
  torch::manual_seed(5);
  auto W = torch::zeros({8, 16});
  auto momentum = torch::randn({8, 16});
  auto M0 = momentum.to(torch::kDouble);
  auto G = torch::randn({8, 16});
  muon_update(W, G, momentum, {1.0, 0.5, false, 5, 0.0, quintic_schedule()});
  auto M = 0.5 * M0 + 0.5 * G.to(torch::kDouble);
  EXPECT_LT((W.to(torch::kDouble) + reference_newton_schulz(M, 5)).abs().max().item<double>(), 1e-5);
}

// Muon's batched update over mixed shapes (two size classes, one holding
// wide and tall matrices) against one update per matrix and the float64
// formulas of muon.h.
TEST(Muon, BatchedUpdateMatchesPerMatrixUpdatesAndFloat64) {
  torch::manual_seed(7);
  const std::vector<std::vector<int64_t>> shapes{{16, 48}, {48, 16}, {32, 32}, {16, 48}, {32, 32}};
  std::vector<NamedParam> a, b;
  std::vector<torch::Tensor> W64, M64;
  for (size_t i = 0; i < shapes.size(); ++i) {
    auto w = torch::randn(shapes[i]);
    a.push_back({"m" + std::to_string(i), w.clone()});
    b.push_back({"m" + std::to_string(i), w.clone()});
    W64.push_back(w.to(torch::kDouble));
    M64.push_back(torch::zeros(shapes[i], torch::kDouble));
  }
  MuonConfig config;
  config.weight_decay = 0.1;
  Muon per_matrix(a, config), batched(b, config);
  std::vector<size_t> all{0, 1, 2, 3, 4};
  for (int64_t t = 0; t < 3; ++t) {
    const MuonStep hyper = per_matrix.step_hyper(0.5, t);
    std::vector<torch::Tensor> grads;
    for (const auto& s : shapes) grads.push_back(torch::randn(s));
    for (size_t i = 0; i < shapes.size(); ++i) per_matrix.update(i, grads[i], hyper);
    batched.update(all, grads, hyper);
    for (size_t i = 0; i < shapes.size(); ++i) {
      const double mu = hyper.momentum;
      M64[i] = mu * M64[i] + (1 - mu) * grads[i].to(torch::kDouble);
      auto U = (1 - mu) * grads[i].to(torch::kDouble) + mu * M64[i];
      const double s = std::sqrt(std::max(1.0, double(shapes[i][0]) / double(shapes[i][1])));
      W64[i] = (1 - hyper.lr * 0.1) * W64[i] - hyper.lr * s * reference_newton_schulz(U, 5);
      EXPECT_LT((b[i].tensor - a[i].tensor).abs().max().item<double>(), 1e-6) << "matrix " << i << " step " << t;
      EXPECT_LT((b[i].tensor.to(torch::kDouble) - W64[i]).abs().max().item<double>(), 2e-5) << "matrix " << i;
    }
  }
  std::map<std::string, torch::Tensor> ma, mb;
  for (auto& [k, v] : per_matrix.state()) ma[k] = v;
  for (auto& [k, v] : batched.state()) mb[k] = v;
  for (auto& [k, v] : ma) EXPECT_LT((mb.at(k) - v).abs().max().item<double>(), 1e-7) << k;
}

// A skip decided on the device leaves weights and momenta bit for bit as
// they were, NaN gradients or not; a skip flag that is false changes nothing
// against no flag.
TEST(Muon, DeviceSkipLeavesWeightsAndMomentumUntouched) {
  torch::manual_seed(8);
  for (bool nesterov : {true, false}) {
    std::vector<NamedParam> p, q;
    for (auto shape : {std::vector<int64_t>{8, 24}, {24, 8}}) {
      auto w = torch::randn(shape);
      p.push_back({"m" + std::to_string(p.size()), w.clone()});
      q.push_back({"m" + std::to_string(q.size()), w.clone()});
    }
    MuonConfig config;
    config.weight_decay = 0.1;
    config.nesterov = nesterov;
    Muon muon(p, config), plain(q, config);
    const MuonStep hyper = muon.step_hyper(1.0, 0);
    std::vector<torch::Tensor> grads{torch::randn({8, 24}), torch::randn({24, 8})};
    muon.update({0, 1}, grads, hyper, torch::tensor(false));
    plain.update({0, 1}, grads, hyper);
    for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::equal(p[i].tensor, q[i].tensor)) << "skip = false changed step";
    std::map<std::string, torch::Tensor> before;
    for (auto& [k, v] : muon.state()) before[k] = v.clone();
    std::vector<torch::Tensor> weights{p[0].tensor.clone(), p[1].tensor.clone()};
    std::vector<torch::Tensor> bad{torch::full({8, 24}, std::nan("")), torch::randn({24, 8})};
    bad[1][0][0] = INFINITY;
    muon.update({0, 1}, bad, muon.step_hyper(1.0, 1), torch::tensor(true));
    for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::equal(p[i].tensor, weights[i])) << "nesterov " << nesterov;
    for (auto& [k, v] : muon.state()) EXPECT_TRUE(torch::equal(v, before.at(k))) << k;
  }
}

// --- Schedules and groups ---------------------------------------------------
TEST(Schedule, ConstantThenLinearCooldown) {
  ScheduleConfig s;  // cooldown 0.3 of 3000 = record 11's last 900 steps
  EXPECT_DOUBLE_EQ(lr_multiplier(0, 3000, s), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(2099, 3000, s), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(2100, 3000, s), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(2101, 3000, s), 899.0 / 900.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(2999, 3000, s), 1.0 / 900.0);
  s.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(lr_multiplier(0, 3000, s), 0.1);
  EXPECT_DOUBLE_EQ(lr_multiplier(9, 3000, s), 1.0);
  s.cooldown_frac = 0;
  EXPECT_DOUBLE_EQ(lr_multiplier(2999, 3000, s), 1.0);
}

TEST(Schedule, MuonMomentumWarmup) {
  MuonConfig m;
  EXPECT_DOUBLE_EQ(muon_momentum(0, m), 0.85);
  EXPECT_NEAR(muon_momentum(250, m), 0.90, 1e-12);
  EXPECT_DOUBLE_EQ(muon_momentum(500, m), 0.95);
  EXPECT_DOUBLE_EQ(muon_momentum(5000, m), 0.95);
}

// Record 50's momentum (KellerJordan/modded-nanogpt records/track_1_short/
// 2025-12-18_CautiousWDAdam, get_momentum): 0.85 -> 0.95 over 300 steps, 0.95
// to step 2040 of 2090, then 0.95 - 0.10 (s - 2040) / 50: 0.948 at 2041,
// 0.852 at the last update, 2089. Without the run's length the cool-down
// cannot be placed, and says so.
TEST(Schedule, MuonMomentumCooldown) {
  MuonConfig m;
  m.momentum_warmup_steps = 300;
  m.momentum_cooldown_steps = 50;
  m.momentum_cooldown_end = 0.85;
  EXPECT_DOUBLE_EQ(muon_momentum(0, m, 2090), 0.85);
  EXPECT_NEAR(muon_momentum(150, m, 2090), 0.90, 1e-12);
  EXPECT_DOUBLE_EQ(muon_momentum(300, m, 2090), 0.95);
  EXPECT_DOUBLE_EQ(muon_momentum(2040, m, 2090), 0.95);
  EXPECT_NEAR(muon_momentum(2041, m, 2090), 0.948, 1e-12);
  EXPECT_NEAR(muon_momentum(2065, m, 2090), 0.90, 1e-12);
  EXPECT_NEAR(muon_momentum(2089, m, 2090), 0.852, 1e-12);
  EXPECT_THROW(muon_momentum(10, m), std::invalid_argument);
  m.momentum_cooldown_steps = 0;
  EXPECT_DOUBLE_EQ(muon_momentum(2089, m), 0.95);
}

TEST(ParamGroups, RecipeSplit) {
  ModelConfig c;
  c.layers = 4;
  c.dim = 32;
  c.heads = 2;
  c.head_dim = 16;
  c.vocab_size = 100;
  GPT model(c);
  auto groups = group_parameters(*model);
  EXPECT_EQ(groups.matrices.size(), 6u * 4);
  ASSERT_EQ(groups.embeddings.size(), 1u);
  EXPECT_EQ(groups.embeddings[0].name, "transformer.wte.weight");
  ASSERT_EQ(groups.heads.size(), 1u);
  EXPECT_EQ(groups.heads[0].name, "lm_head.weight");
  EXPECT_EQ(groups.scalars.size(), 4u * 2 + 1);  // lamb, lambdas per block + skip_weights
}

// The optimizer gives Muon the run's train.steps, where the cool-down is placed.
TEST(Optimizer, MuonMomentumCoolsDownAtTheEndOfTrainSteps) {
  GPT model(tests::tiny_model_config());
  Config config;
  config.train.steps = 100;
  config.optim.muon.momentum_warmup_steps = 0;
  config.optim.muon.momentum_cooldown_steps = 10;
  Optimizer opt(*model, config, nullptr);
  EXPECT_DOUBLE_EQ(opt.muon->step_hyper(1.0, 90).momentum, 0.95);
  EXPECT_NEAR(opt.muon->step_hyper(1.0, 99).momentum, 0.95 - 0.10 * 9 / 10, 1e-12);
}

TEST(Optimizer, StateRoundTripsByName) {
  GPT model(tests::tiny_model_config());
  Config config;
  config.train.steps = 10;
  Optimizer opt(*model, config, nullptr);
  for (auto& p : model->parameters()) p.mutable_grad() = torch::randn_like(p);
  opt.step(0);
  std::map<std::string, torch::Tensor> saved;
  for (auto& [k, v] : opt.state()) saved[k] = v.clone();
  Optimizer fresh(*model, config, nullptr);
  fresh.load_state(saved);
  for (auto& [k, v] : fresh.state()) EXPECT_TRUE(torch::equal(v, saved.at(k))) << k;
  saved.erase(saved.begin());
  EXPECT_THROW(fresh.load_state(saved), std::runtime_error);
}

// Every part of the optimizer (AdamW's groups, Muon, the ownership plan, the
// step rule) is built from the one preset-resolved OptimConfig, never from
// the raw config.optim. No preset touches an adam key or matrix_optimizer
// today, so a resolver that does stands in for the first one that will.
OptimConfig resolve_to_adamw_with_embed_lr(const OptimConfig& raw) {
  OptimConfig resolved = raw;
  resolved.adam.embed_lr = 0.123;
  resolved.matrix_optimizer = MatrixOptimizer::adamw;
  return resolved;
}

TEST(Optimizer, BuildsEveryPartFromTheResolvedConfig) {
  GPT model(tests::tiny_model_config());
  Config config;
  config.train.steps = 10;
  Optimizer opt(*model, config, nullptr, resolve_to_adamw_with_embed_lr);
  std::map<std::string, double> lr;
  for (const auto& group : opt.adam.groups()) lr[group.name] = group.lr;
  EXPECT_EQ(lr.count("embed"), 1u);
  EXPECT_DOUBLE_EQ(lr["embed"], 0.123);
  EXPECT_EQ(lr.count("matrix"), 1u) << "resolved matrix_optimizer = adamw: AdamW takes the matrices";
  EXPECT_EQ(opt.muon, nullptr);
  EXPECT_EQ(opt.describe(), "adamw");
}

// The step plan (optim/step_plan.h) needs no communicator: every parameter's
// gradient travels in exactly one unit, and each rank's slots are the
// matrices the ownership plan gives it.
TEST(StepPlan, CoversEveryParameterOnceAndSlotsFollowOwnership) {
  GPT model(tests::tiny_model_config());
  const auto params = model->parameters();
  const auto groups = group_parameters(*model);
  std::vector<AdamWGroup> adam_groups{{"embed", 0.6, groups.embeddings},
                                      {"head", 0.008, groups.heads},
                                      {"scalar", 0.04, groups.scalars}};
  const int64_t bucket_bytes = 4096;
  OptimConfig optim;
  for (auto distribute : {Distribute::owner, Distribute::replicated}) {
    optim.muon.distribute = distribute;
    for (int rank = 0; rank < 3; ++rank) {
      auto plan = plan_step(params, groups.matrices, adam_groups, optim, PlanRanks{3, rank}, bucket_bytes);
      std::vector<int> seen(params.size(), 0);
      for (const auto& unit : plan.units)
        for (int p : unit.params)
          if (p >= 0) ++seen[p];
      for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << "parameter " << i;
      EXPECT_EQ(plan.bucket_units.size() + plan.shard_units.size(), plan.units.size());
      if (distribute == Distribute::owner) {
        ASSERT_TRUE(plan.ownership.has_value());
        ASSERT_EQ(plan.slots.size(), plan.ownership->shards.size());
        for (const auto& slot : plan.slots) EXPECT_EQ(slot.matrix, plan.ownership->shards[slot.shard].slots[rank]);
        for (size_t m = 0; m < groups.matrices.size(); ++m)
          EXPECT_EQ(plan.owned[m], plan.ownership->owner[m] == rank);
      } else {
        EXPECT_FALSE(plan.ownership.has_value());
        EXPECT_TRUE(plan.shard_units.empty());
        EXPECT_EQ(plan.slots.size(), groups.matrices.size());
      }
    }
  }
  // One process: every matrix is a slot, nothing travels.
  auto single = plan_step(params, groups.matrices, adam_groups, optim, std::nullopt, bucket_bytes);
  EXPECT_TRUE(single.units.empty());
  EXPECT_FALSE(single.ownership.has_value());
  EXPECT_EQ(single.slots.size(), groups.matrices.size());
}

// The step rule is chosen once from the registration table (optim/step_rule.h).
TEST(StepRule, TableChoosesTheFirstRuleThatApplies) {
  std::vector<std::string> names;
  for (const auto& rule : step_rules()) names.push_back(rule.name);
  EXPECT_EQ(names, (std::vector<std::string>{"steepest", "adamw_only", "recipe"}));
  OptimConfig recipe, adamw_only, momo;
  adamw_only.matrix_optimizer = MatrixOptimizer::adamw;
  momo.momo.enabled = true;
  EXPECT_FALSE(make_step_rule(recipe)->uses_loss());
  EXPECT_EQ(make_step_rule(recipe)->describe(), "");
  EXPECT_EQ(make_step_rule(adamw_only)->describe(), "");
  EXPECT_TRUE(make_step_rule(momo)->uses_loss());
}

// NorMuon and cautious weight decay (optim.muon.normuon,
// optim.muon.cautious_weight_decay; optim/muon.h) against float64 formulas
// written here from the speedrun's record 50 (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-12-18_CautiousWDAdam: NorMuon.step,
// apply_normuon_variance_reduction, cautious_wd_and_update_inplace). The
// polar factor is exact (optim.muon.polar: svd) so that the reference can
// take it from a float64 SVD. Parameters of every kind the rule tells apart:
// a stack of square matrices (per row), a tall matrix (per stored row, which
// Newton-Schulz sees transposed), a wide one (per column), and a wide gate
// (per row, as the record's gates); tall and wide share a size class, so one
// batched update serves both. Two steps, so the second-moment EMA carries
// over. Controls: without NorMuon, or with the plain decay, the weights land
// far from the formulas.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "optim/muon.h"
#include "optim/optim_config.h"
#include "optim/param_groups.h"

using namespace muonrun;
using torch::Tensor;

namespace {

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
};
const std::vector<Spec> kParams = {{"blocks.0.attn.qkvo_w", {2, 6, 6}},
                                   {"tall.weight", {10, 4}},
                                   {"wide.weight", {4, 10}},
                                   {"blocks.0.attn.attn_gate.weight", {3, 8}}};
constexpr double kLr = 0.05, kMomentum = 0.9, kWeightDecay = 0.5, kBeta2 = 0.95;

MuonConfig config(bool normuon, bool cautious) {
  MuonConfig c;
  c.lr = kLr;
  c.momentum = kMomentum;
  c.momentum_warmup_steps = 0;
  c.nesterov = true;
  c.weight_decay = kWeightDecay;
  c.polar = Polar::svd;
  c.normuon = normuon;
  c.normuon_beta2 = kBeta2;
  c.cautious_weight_decay = cautious;
  return c;
}

std::vector<Tensor> initial_weights() {
  torch::manual_seed(41);
  std::vector<Tensor> w;
  for (const auto& p : kParams) w.push_back(torch::randn(p.shape) * 0.3);
  return w;
}

std::vector<std::vector<Tensor>> gradients() {
  torch::manual_seed(42);
  std::vector<std::vector<Tensor>> g(2);
  for (auto& step : g)
    for (const auto& p : kParams) step.push_back(torch::randn(p.shape));
  return g;
}

// muonrun's Muon over two steps; returns the weights (and the Muon, for its state).
std::vector<Tensor> ours(bool normuon, bool cautious, std::map<std::string, Tensor>* state = nullptr) {
  auto weights = initial_weights();
  std::vector<NamedParam> params;
  for (size_t i = 0; i < kParams.size(); ++i) params.push_back({kParams[i].name, weights[i]});
  Muon muon(params, config(normuon, cautious));
  const auto grads = gradients();
  for (int64_t step = 0; step < 2; ++step)
    muon.update({0, 1, 2, 3}, grads[step], muon.step_hyper(1.0, step));
  if (state)
    for (const auto& [name, t] : muon.state()) (*state)[name] = t;
  return weights;
}

// The polar factor of a matrix from its float64 SVD.
Tensor polar(const Tensor& u) {
  auto [a, s, vh] = torch::linalg_svd(u, /*full_matrices=*/false);
  return a.matmul(vh);
}

// The record's update of one matrix W (float64) in place; `b` its NorMuon buffer.
void reference_matrix(Tensor& w, Tensor& m, Tensor& b, const Tensor& g, bool gate, bool normuon, bool cautious) {
  const int64_t rows = w.size(0), cols = w.size(1);
  m = kMomentum * m + (1 - kMomentum) * g;
  const auto u = (1 - kMomentum) * g + kMomentum * m;
  auto o = polar(u);
  if (normuon) {
    const int64_t axis = (gate || rows >= cols) ? 1 : 0;  // averaged over: columns (per row) or rows
    const auto mean_square = o.square().mean(axis, /*keepdim=*/true);
    b = kBeta2 * b + (1 - kBeta2) * mean_square;
    const auto scaled = o * b.clamp_min(1e-10).rsqrt();
    o = scaled * (o.norm() / scaled.norm().clamp_min(1e-10));
  }
  const double s = std::sqrt(std::max(1.0, static_cast<double>(rows) / cols));
  const double lr = kLr * s;
  if (cautious) w = w - w * (o * w).ge(0).to(torch::kDouble) * (kWeightDecay * kLr) * lr;
  else w = w * (1 - kLr * kWeightDecay);
  w = w - lr * o;
}

std::vector<Tensor> reference(bool normuon, bool cautious) {
  const auto init = initial_weights();
  const auto grads = gradients();
  std::vector<Tensor> out;
  for (size_t i = 0; i < kParams.size(); ++i) {
    const bool gate = kParams[i].name.find("gate") != std::string::npos;
    auto w = init[i].to(torch::kDouble);
    const auto stack = w.dim() == 3 ? w : w.unsqueeze(0);
    std::vector<Tensor> matrices;
    for (int64_t k = 0; k < stack.size(0); ++k) {
      auto wk = stack[k].clone(), mk = torch::zeros_like(wk), bk = torch::zeros({1}, torch::kDouble);
      for (int step = 0; step < 2; ++step) {
        auto gk = grads[step][i].to(torch::kDouble);
        gk = gk.dim() == 3 ? gk[k] : gk;
        reference_matrix(wk, mk, bk, gk, gate, normuon, cautious);
      }
      matrices.push_back(wk);
    }
    out.push_back(w.dim() == 3 ? torch::stack(matrices) : matrices[0]);
  }
  return out;
}

double relative_error(const Tensor& got, const Tensor& want) {
  return ((got.to(torch::kDouble) - want).norm() / want.norm()).item<double>();
}

}  // namespace

TEST(NorMuon, TwoStepsWithCautiousDecayMatchFloat64Formulas) {
  for (auto [normuon, cautious] : std::vector<std::pair<bool, bool>>{{true, true}, {true, false}, {false, true}}) {
    SCOPED_TRACE(::testing::Message() << "normuon " << normuon << ", cautious " << cautious);
    const auto got = ours(normuon, cautious);
    const auto want = reference(normuon, cautious);
    for (size_t i = 0; i < kParams.size(); ++i) EXPECT_LT(relative_error(got[i], want[i]), 1e-5) << kParams[i].name;
  }
}

TEST(NorMuon, WithoutEitherFeatureTheWeightsLandElsewhere) {
  const auto want = reference(/*normuon=*/true, /*cautious=*/true);
  for (auto [normuon, cautious] : std::vector<std::pair<bool, bool>>{{false, true}, {true, false}}) {
    const auto got = ours(normuon, cautious);
    double worst = 0;
    for (size_t i = 0; i < kParams.size(); ++i) worst = std::max(worst, relative_error(got[i], want[i]));
    EXPECT_GT(worst, 1e-3) << "normuon " << normuon << ", cautious " << cautious << " still matches";
  }
}

// The buffers: one per row of each square matrix, per stored row of the tall
// matrix (Newton-Schulz's columns), per column of the wide one, per row of
// the gate; named for checkpoints.
TEST(NorMuon, SecondMomentsHaveTheRecordsAxes) {
  std::map<std::string, Tensor> state;
  ours(true, true, &state);
  EXPECT_EQ(state.at("muon.second_moment.blocks.0.attn.qkvo_w").sizes(), (std::vector<int64_t>{2, 6, 1}));
  EXPECT_EQ(state.at("muon.second_moment.tall.weight").sizes(), (std::vector<int64_t>{1, 1, 10}));
  EXPECT_EQ(state.at("muon.second_moment.wide.weight").sizes(), (std::vector<int64_t>{1, 1, 10}));
  EXPECT_EQ(state.at("muon.second_moment.blocks.0.attn.attn_gate.weight").sizes(), (std::vector<int64_t>{1, 3, 1}));
  for (const auto& [name, t] : state) EXPECT_GT(t.abs().sum().item<double>(), 0) << name << " never moved";
  std::map<std::string, Tensor> plain;
  ours(false, true, &plain);
  for (const auto& [name, t] : plain) EXPECT_EQ(name.find("second_moment"), std::string::npos) << name;
}

// A skipped step (non-finite gradients) changes no weight, momentum or buffer.
TEST(NorMuon, ASkippedStepChangesNothing) {
  auto weights = initial_weights();
  std::vector<NamedParam> params;
  for (size_t i = 0; i < kParams.size(); ++i) params.push_back({kParams[i].name, weights[i]});
  Muon muon(params, config(true, true));
  const auto grads = gradients();
  muon.update({0, 1, 2, 3}, grads[0], muon.step_hyper(1.0, 0));
  std::vector<Tensor> before;
  for (const auto& w : weights) before.push_back(w.clone());
  std::map<std::string, Tensor> state_before;
  for (const auto& [name, t] : muon.state()) state_before[name] = t.clone();
  auto bad = grads[1];
  bad[1][0][0] = std::numeric_limits<float>::quiet_NaN();
  muon.update({0, 1, 2, 3}, bad, muon.step_hyper(1.0, 1), torch::tensor(true));
  for (size_t i = 0; i < weights.size(); ++i) EXPECT_TRUE(torch::equal(weights[i], before[i])) << kParams[i].name;
  for (const auto& [name, t] : muon.state()) EXPECT_TRUE(torch::equal(t, state_before.at(name))) << name;
}

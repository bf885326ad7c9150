// PyTorch as the independent reference: muonrun's model, optimizers and
// tokenizer against code that shares nothing with them but PyTorch itself,
// run by the Python of MUONRUN_PYTHON on the CPU in float32:
//
//   tests/reference/record11.py       the GPT of NanoGPT speedrun record 11
//                                     (KellerJordan/modded-nanogpt, train_gpt2.py
//                                     of the U-net record), transcribed in Python:
//                                     loss and every parameter's gradient
//   tests/reference/optimizers.py     torch.optim.AdamW and torch.optim.Muon
//                                     (https://docs.pytorch.org/docs/stable/generated/torch.optim.Muon.html)
//                                     over a fixed gradient sequence
//   tests/reference/tiktoken_offline.py  tiktoken's r50k_base (GPT-2) built
//                                     offline from encoder.json / vocab.bpe
//
// Errors are norm-relative per tensor, ||ours - ref||_2 / ||ref||_2 in
// float64 (the absolute norm when the reference is zero): one number per
// tensor that does not blow up on entries that happen to be near zero, as an
// elementwise relative error would. Each positive comparison has a negative
// control (a deliberately wrong reference) that must fail it, so that a
// comparison which cannot fail does not pass quietly.
//
// Without a Python configured (MUONRUN_PYTHON = "", a build against another
// LibTorch) every test here skips; tests that read ../shared skip when it is
// missing.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "trainer/io/safetensors.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/schedule.h"
#include "tests/python_reference.h"
#include "tests/test_helpers.h"
#include "trainer/data/text_input.h"
#include "trainer/data/tokenizer.h"

using namespace muonrun;
namespace fs = std::filesystem;
using tests::fmt;
using tests::rel_error;
using tests::run_script;
using tests::ScriptRun;
using tests::Tensors;

namespace {

const std::string kShared = MUONRUN_SHARED_DIR;

#define REQUIRE_SHARED(path)                                                                  \
  do {                                                                                        \
    if (!fs::exists(path))                                                                    \
      GTEST_SKIP() << (path) << " is missing: these tests need the shared data (../shared)"; \
  } while (0)

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

// Small, but every feature of record 11: 4 layers (2 encoder blocks pushing,
// 2 decoder blocks popping), 2 heads of 16, vocab 500 padded to 512.
ModelConfig small_config() {
  ModelConfig c;
  c.vocab_size = 500;
  c.vocab_multiple = 128;
  c.layers = 4;
  c.heads = 2;
  c.head_dim = 16;
  c.dim = 32;
  c.mlp_ratio = 4;
  c.seq_len = 16;
  return c;
}

// Random weights with nothing at its default: the zero-initialised
// projections and head become non-zero, the value-residual mixes, embedding
// skips and U-net skip weights get values of their own per layer. The head
// is large enough (logits of std ~ 11) that the 30 tanh(./30) cap bends them.
void randomize(GPT& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    auto& p = item.value();
    if (name.find(".lambdas") != std::string::npos) {
      p.copy_(torch::tensor({0.7f, 0.2f}) + torch::rand({2}) * 0.4);
    } else if (name.find(".lamb") != std::string::npos) {
      p.fill_(0.2 + 0.6 * torch::rand({}).item<double>());
    } else if (name == "skip_weights") {
      p.copy_(torch::rand(p.sizes()) + 0.5);
    } else if (name == "transformer.wte.weight") {
      p.normal_();
    } else if (name == "lm_head.weight") {
      p.normal_(0, 2.0);
    } else {
      ASSERT_EQ(p.dim(), 2) << name;
      const double bound = 1.0 / std::sqrt(static_cast<double>(p.size(1)));
      p.uniform_(-bound, bound);
    }
  }
}

struct ModelCase {
  fs::path dir;
  Tensors ours;  // "loss" and the gradient of every parameter
  std::vector<std::string> names;
};

ModelCase model_case(const std::string& name) {
  torch::manual_seed(11);
  const ModelConfig config = small_config();
  GPT model(config);
  randomize(model);
  const int64_t B = 2, T = config.seq_len;
  auto idx = torch::randint(config.vocab_size, {B, T}, torch::kLong);
  auto targets = torch::randint(config.vocab_size, {B, T}, torch::kLong);
  ModelCase c{tests::scratch_dir(name), {}, {}};
  std::vector<std::pair<std::string, torch::Tensor>> file{{"idx", idx}, {"targets", targets}};
  for (auto& item : model->named_parameters()) {
    file.emplace_back(item.key(), item.value().detach());
    c.names.push_back(item.key());
  }
  save_safetensors((c.dir / "weights.safetensors").string(), file);
  auto loss = model->loss(idx, targets);
  loss.backward();
  c.ours["loss"] = loss.detach();
  for (auto& item : model->named_parameters()) c.ours[item.key()] = item.value().grad().clone();
  return c;
}

// Runs record11.py on the case's weights; returns its loss and gradients.
Tensors reference_gradients(const ModelCase& c, const std::vector<std::string>& extra) {
  const std::string out = (c.dir / "reference.safetensors").string();
  std::vector<std::string> args{"--weights", (c.dir / "weights.safetensors").string(), "--out", out,
                                "--heads", std::to_string(small_config().heads)};
  args.insert(args.end(), extra.begin(), extra.end());
  const ScriptRun run = run_script("record11.py", args, c.dir);
  EXPECT_EQ(run.rc, 0) << run.output;
  if (run.rc != 0) return {};
  return load_safetensors(out).tensors;
}

// fp32 against fp32, the same PyTorch kernels under both: only the order of
// a few operations differs (measured worst 6.6e-8 at the time of
// writing; against a float64 reference muonrun's fp32 is off by 2.7e-6).
constexpr double kModelTolerance = 1e-5;

TEST(ReferenceModel, LossAndEveryGradientMatchRecord11InPyTorch) {
  REQUIRE_PYTHON();
  const ModelCase c = model_case("model");
  const Tensors ref = reference_gradients(c, {});
  ASSERT_FALSE(ref.empty());
  ASSERT_EQ(ref.size(), c.names.size() + 1) << "record11.py wrote other tensors than loss + gradients";
  double worst = 0;
  for (const auto& name : c.names) {
    ASSERT_TRUE(ref.count(name)) << name;
    // Block 0's value-residual mix has v1 = v, so (1-l) v + l v1 = v and its
    // gradient is exactly zero (in record 11 too); every other one must not
    // be, or it would test nothing. rel_error is absolute for a zero reference.
    if (name != "transformer.h.0.attn.lamb") {
      EXPECT_GT(ref.at(name).norm().item<double>(), 0) << name << ": zero gradient tests nothing";
    }
    const double e = rel_error(c.ours.at(name), ref.at(name));
    EXPECT_LT(e, kModelTolerance) << name;
    worst = std::max(worst, e);
  }
  const double loss_error = rel_error(c.ours.at("loss"), ref.at("loss"));
  EXPECT_LT(loss_error, kModelTolerance);
  std::cout << "[ model ] loss " << c.ours.at("loss").item<double>() << " vs "
            << ref.at("loss").item<double>() << ", relative error " << fmt(loss_error)
            << "; worst gradient error " << fmt(worst) << " over " << c.names.size()
            << " tensors (tolerance " << fmt(kModelTolerance) << ")\n";
}

TEST(ReferenceModel, Float64ReferenceBoundsTheFloat32Rounding) {
  // The same reference in float64: muonrun's fp32 gradients are then off by
  // fp32 rounding only, which the fp32-vs-fp32 tolerance above must cover.
  REQUIRE_PYTHON();
  const ModelCase c = model_case("model64");
  const Tensors ref = reference_gradients(c, {"--dtype", "float64"});
  ASSERT_FALSE(ref.empty());
  const auto [worst, name] = tests::worst_error(c.ours, ref);
  EXPECT_LT(worst, kModelTolerance) << name;
  std::cout << "[ model ] fp32 muonrun vs float64 reference: worst error " << fmt(worst) << " (" << name << ")\n";
}

TEST(ReferenceModel, NegativeControlsFailTheComparison) {
  // A reference with the rotation turned the other way, or with the U-net's
  // skips popped first in, first out, must NOT match: the comparison sees them.
  REQUIRE_PYTHON();
  const ModelCase c = model_case("model_mutated");
  for (const std::string mutation : {"rotary", "unet"}) {
    const Tensors ref = reference_gradients(c, {"--mutate", mutation});
    ASSERT_FALSE(ref.empty()) << mutation;
    const auto [worst, name] = tests::worst_error(c.ours, ref);
    EXPECT_GT(worst, 1000 * kModelTolerance) << "--mutate " << mutation << " still matches";
    EXPECT_GT(rel_error(c.ours.at("loss"), ref.at("loss")), 10 * kModelTolerance) << mutation;
    std::cout << "[ model ] --mutate " << mutation << ": worst error " << fmt(worst) << " (" << name
              << "), loss " << ref.at("loss").item<double>() << " vs ours " << c.ours.at("loss").item<double>()
              << "\n";
  }
}

// ---------------------------------------------------------------------------
// Optimizers
// ---------------------------------------------------------------------------

struct Sequence {
  std::vector<std::string> names;
  std::vector<torch::Tensor> init;
  std::vector<std::vector<torch::Tensor>> grads;  // [step][param]
};

// Random weights and `steps` gradients whose scale changes from step to step
// (over two decades), so that Adam's moments and bias corrections matter.
Sequence make_sequence(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes, int steps,
                       uint64_t seed) {
  torch::manual_seed(seed);
  Sequence s;
  for (const auto& [name, shape] : shapes) {
    s.names.push_back(name);
    s.init.push_back(torch::randn(shape));
  }
  for (int t = 0; t < steps; ++t) {
    const double scale = std::pow(10.0, 2 * torch::rand({}).item<double>() - 1);
    std::vector<torch::Tensor> g;
    for (const auto& p : s.init) g.push_back(torch::randn(p.sizes()) * scale);
    s.grads.push_back(g);
  }
  return s;
}

void write_sequence(const Sequence& s, const fs::path& path) {
  std::vector<std::pair<std::string, torch::Tensor>> file;
  for (size_t i = 0; i < s.names.size(); ++i) file.emplace_back("param." + s.names[i], s.init[i]);
  for (size_t t = 0; t < s.grads.size(); ++t)
    for (size_t i = 0; i < s.names.size(); ++i)
      file.emplace_back("grad." + std::to_string(t) + "." + s.names[i], s.grads[t][i]);
  save_safetensors(path.string(), file);
}

// optimizers.py on the sequence; its step.<t>.<name> (and momentum.<t>.<name>).
Tensors torch_optimizer(const Sequence& s, const fs::path& dir, const std::string& tag,
                        const std::vector<std::string>& args) {
  const fs::path in = dir / "sequence.safetensors", out = dir / (tag + ".safetensors");
  if (!fs::exists(in)) write_sequence(s, in);
  std::vector<std::string> all = args;
  all.insert(all.end(), {"--in", in.string(), "--out", out.string()});
  const ScriptRun run = run_script("optimizers.py", all, dir);
  EXPECT_EQ(run.rc, 0) << run.output;
  if (run.rc != 0) return {};
  return load_safetensors(out.string()).tensors;
}

// Worst over steps and params of the relative error of the displacement
// W_t - W_0 (what the optimizer did; W_0 itself would hide it).
double worst_displacement_error(const Sequence& s, const std::vector<std::vector<torch::Tensor>>& ours,
                                const Tensors& ref) {
  double worst = 0;
  for (size_t t = 0; t < ours.size(); ++t)
    for (size_t i = 0; i < s.names.size(); ++i) {
      const auto key = "step." + std::to_string(t) + "." + s.names[i];
      if (!ref.count(key)) return INFINITY;
      worst = std::max(worst, rel_error(ours[t][i] - s.init[i], ref.at(key) - s.init[i]));
    }
  return worst;
}

// muonrun's AdamW over the sequence, one group; the weights after each step.
std::vector<std::vector<torch::Tensor>> run_adamw(const Sequence& s, double lr, const AdamConfig& config) {
  std::vector<NamedParam> params;
  for (size_t i = 0; i < s.names.size(); ++i)
    params.push_back({s.names[i], s.init[i].clone().requires_grad_(true)});
  AdamW adam({{"all", lr, params}}, config);
  std::vector<std::vector<torch::Tensor>> out;
  for (const auto& g : s.grads) {
    for (size_t i = 0; i < params.size(); ++i) params[i].tensor.mutable_grad() = g[i].clone();
    adam.step(1.0);
    std::vector<torch::Tensor> w;
    for (const auto& p : params) w.push_back(p.tensor.detach().clone());
    out.push_back(w);
  }
  return out;
}

// Same formulas, same fp32, different operation order (muonrun runs
// LibTorch's fused kernel, torch.optim.AdamW on the CPU its single-tensor
// loop): about one ulp of the displacement (measured worst 9.2e-8; 2.1e-7
// with the per-parameter ops muonrun used before).
constexpr double kAdamTolerance = 5e-7;

TEST(ReferenceAdamW, MatchesTorchOptimAdamWWithAndWithoutWeightDecay) {
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("adamw");
  const Sequence s = make_sequence({{"matrix", {24, 16}}, {"vector", {16}}, {"scalar", {}}}, 8, 21);
  const double lr = 0.02;
  for (double wd : {0.0, 0.1}) {
    AdamConfig config;  // betas 0.9/0.95, eps 1e-8, bias correction, zero init
    config.weight_decay = wd;
    const auto ours = run_adamw(s, lr, config);
    const Tensors ref = torch_optimizer(s, dir, "adamw_wd" + std::to_string(wd),
                                        {"adamw", "--lr", std::to_string(lr), "--betas", "0.9", "0.95",
                                         "--eps", "1e-8", "--weight-decay", std::to_string(wd)});
    ASSERT_FALSE(ref.empty());
    const double worst = worst_displacement_error(s, ours, ref);
    EXPECT_LT(worst, kAdamTolerance) << "weight decay " << wd;
    std::cout << "[ adamw ] weight decay " << wd << ": worst displacement error " << fmt(worst)
              << " over 8 steps (tolerance " << fmt(kAdamTolerance) << ")\n";
  }
  // Negative control: torch with beta2 = 0.999 is another optimizer.
  const Tensors other = torch_optimizer(s, dir, "adamw_b999",
                                        {"adamw", "--lr", std::to_string(lr), "--betas", "0.9", "0.999"});
  ASSERT_FALSE(other.empty());
  const double control = worst_displacement_error(s, run_adamw(s, lr, AdamConfig{}), other);
  EXPECT_GT(control, 100 * kAdamTolerance) << "beta2 0.999 still matches";
  std::cout << "[ adamw ] negative control (torch with beta2 0.999): error " << fmt(control) << "\n";
}

// muonrun's Muon over the sequence, all matrices in one batched update per
// step (as the recipe runs it: "wide" and "tall" share a Newton-Schulz
// batch, "square" has its own); the weights and momentum after each step.
struct MuonRun {
  std::vector<std::vector<torch::Tensor>> weights, momentum;
};

MuonRun run_muon(const Sequence& s, const MuonConfig& config) {
  std::vector<NamedParam> params;
  for (size_t i = 0; i < s.names.size(); ++i) params.push_back({s.names[i], s.init[i].clone()});
  Muon muon(params, config);
  MuonRun out;
  for (size_t t = 0; t < s.grads.size(); ++t) {
    const MuonStep hyper = muon.step_hyper(1.0, static_cast<int64_t>(t));
    std::vector<size_t> all(params.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    muon.update(all, s.grads[t], hyper);
    Tensors state;
    for (auto& [name, m] : muon.state()) state[name] = m.clone();
    std::vector<torch::Tensor> w, m;
    for (const auto& p : params) {
      w.push_back(p.tensor.clone());
      m.push_back(state.at("muon.momentum." + p.name));
    }
    out.weights.push_back(w);
    out.momentum.push_back(m);
  }
  return out;
}

double worst_momentum_error(const Sequence& s, const MuonRun& ours, const Tensors& ref, double scale_of_ref) {
  double worst = 0;
  for (size_t t = 0; t < ours.momentum.size(); ++t)
    for (size_t i = 0; i < s.names.size(); ++i) {
      const auto key = "momentum." + std::to_string(t) + "." + s.names[i];
      if (!ref.count(key)) return INFINITY;
      worst = std::max(worst, rel_error(ours.momentum[t][i], ref.at(key) * scale_of_ref));
    }
  return worst;
}

std::vector<std::string> muon_args(double lr, double wd, const std::vector<double>& momentum,
                                   const std::string& ns_dtype, const std::string& form,
                                   const std::string& adjust = "original") {
  std::vector<std::string> a{"muon", "--lr", std::to_string(lr), "--weight-decay", std::to_string(wd),
                             "--ns-dtype", ns_dtype, "--form", form, "--adjust-lr-fn", adjust, "--momentum"};
  for (double m : momentum) {
    std::ostringstream v;
    v << std::setprecision(17) << m;
    a.push_back(v.str());
  }
  return a;
}

const std::vector<std::pair<std::string, std::vector<int64_t>>> kMuonShapes{
    {"wide", {16, 48}}, {"tall", {48, 16}}, {"square", {32, 32}}};

// Newton-Schulz in fp32 on both sides (muonrun's CPU path; torch's own code
// with its bf16 cast made fp32): same iteration and fused multiply-adds
// (torch addmm, muonrun baddbmm), but torch clamps the norm instead of
// adding eps, and the quintic
// amplifies those last-bit differences (its slope at 0 is a = 3.4445 per
// iteration). Measured worst 5.8e-6 of the displacement (muonrun batching
// "wide" with the transposed "tall").
constexpr double kMuonFp32Tolerance = 2e-5;
// torch.optim.Muon untouched casts to bf16 (8 bits of mantissa) also on the
// CPU: its update differs from an fp32 one by bf16 rounding, measured worst
// 1.9e-2 of the displacement; this bound says "same algorithm at bf16
// precision" (bf16's unit roundoff is 2^-9 = 2e-3, amplified by the quintic).
constexpr double kMuonBf16Tolerance = 5e-2;
// Momentum buffers: one lerp each side, fp32 rounding only.
constexpr double kMomentumTolerance = 1e-6;

TEST(ReferenceMuon, MatchesTorchOptimMuonAtConstantMomentum) {
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("muon_constant");
  const Sequence s = make_sequence(kMuonShapes, 6, 31);
  const double lr = 0.02, mu = 0.95;
  for (double wd : {0.0, 0.1}) {
    for (const ShapeFactor factor : {ShapeFactor::original, ShapeFactor::match_rms_adamw}) {
      const std::string shape = name_of(factor);  // also the reference's argument
      MuonConfig config;
      config.lr = lr;
      config.momentum = mu;
      config.momentum_warmup_steps = 0;  // constant momentum
      config.weight_decay = wd;
      config.shape_factor = factor;
      const MuonRun ours = run_muon(s, config);
      const std::string tag = "wd" + std::to_string(wd) + "_" + shape;
      const Tensors fp32 = torch_optimizer(s, dir, tag + "_fp32", muon_args(lr, wd, {mu}, "float32", "ema", shape));
      const Tensors bf16 = torch_optimizer(s, dir, tag + "_bf16", muon_args(lr, wd, {mu}, "bfloat16", "ema", shape));
      ASSERT_FALSE(fp32.empty() || bf16.empty());
      const double e32 = worst_displacement_error(s, ours.weights, fp32);
      const double e16 = worst_displacement_error(s, ours.weights, bf16);
      const double em = worst_momentum_error(s, ours, fp32, 1.0);
      EXPECT_LT(e32, kMuonFp32Tolerance) << tag;
      EXPECT_LT(e16, kMuonBf16Tolerance) << tag;
      EXPECT_LT(em, kMomentumTolerance) << tag;
      std::cout << "[ muon ] " << tag << ": displacement error vs torch (fp32 NS) " << fmt(e32)
                << ", vs torch as shipped (bf16 NS) " << fmt(e16) << ", momentum " << fmt(em) << "\n";
    }
  }
}

TEST(ReferenceMuon, SgdFormIsTheEmaFormScaledAtConstantMomentum) {
  // With constant mu, the SGD form (record 11's script and torch.optim.Muon's
  // documentation: B = mu B + g, U = g + mu B) and muonrun's EMA form
  // (M = mu M + (1-mu) g, U = (1-mu) g + mu M) are the same up to scale:
  // by induction M = (1-mu) B, hence U_ema = (1-mu) g + mu (1-mu) B =
  // (1-mu) U_sgd. Newton-Schulz normalises its input, NS(c U) = NS(U) but for
  // eps (X0 = U / (||U|| + eps/c)), so the updates agree to the NS tolerance
  // with the same lr, while the buffers differ exactly by the factor 1-mu.
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("muon_sgd_constant");
  const Sequence s = make_sequence(kMuonShapes, 6, 32);
  const double lr = 0.02, mu = 0.95;
  MuonConfig config;
  config.lr = lr;
  config.momentum = mu;
  config.momentum_warmup_steps = 0;
  const MuonRun ours = run_muon(s, config);
  const Tensors sgd = torch_optimizer(s, dir, "sgd", muon_args(lr, 0, {mu}, "float32", "sgd"));
  ASSERT_FALSE(sgd.empty());
  const double ew = worst_displacement_error(s, ours.weights, sgd);
  const double em = worst_momentum_error(s, ours, sgd, 1 - mu);
  EXPECT_LT(ew, kMuonFp32Tolerance);
  EXPECT_LT(em, kMomentumTolerance);
  // ... and the buffers are NOT equal without the factor.
  EXPECT_GT(worst_momentum_error(s, ours, sgd, 1.0), 0.5);
  std::cout << "[ muon ] SGD form, constant mu: displacement error " << fmt(ew) << ", M_ema vs (1-mu) B_sgd "
            << fmt(em) << "\n";
}

// The weight of gradient g_s in the momentum after step t (0-based, s <= t)
// for per-step momenta mu_0, mu_1, ..., in float64:
//   EMA  M_t = mu_t M_{t-1} + (1-mu_t) g_t:  w_ts = (1-mu_s) prod_{r=s+1..t} mu_r
//   SGD  B_t = mu_t B_{t-1} + g_t:           w_ts =          prod_{r=s+1..t} mu_r
// Their ratio 1/(1-mu_s) depends on s once mu changes over steps: then no
// constant scale maps one onto the other, and the Nesterov inputs (hence the
// Newton-Schulz updates) point in different directions.
std::vector<double> momentum_weights(const std::vector<double>& mu, size_t t, bool ema) {
  std::vector<double> w(t + 1);
  for (size_t s = 0; s <= t; ++s) {
    double prod = ema ? 1 - mu[s] : 1.0;
    for (size_t r = s + 1; r <= t; ++r) prod *= mu[r];
    w[s] = prod;
  }
  return w;
}

// max_s |a_s/sum(a) - b_s/sum(b)|: zero iff a and b differ by a constant scale.
double shape_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double sa = 0, sb = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) sa += a[i], sb += b[i];
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] / sa - b[i] / sb));
  return worst;
}

TEST(ReferenceMuon, UnderMomentumWarmupMuonrunWeighsGradientsTheEmaWay) {
  REQUIRE_PYTHON();
  // A compressed warm-up, 0.85 -> 0.95 over 5 steps, so that mu changes a lot
  // within the test's 8 steps (the recipe's takes 500).
  MuonConfig config;
  config.lr = 0.02;
  config.momentum_warmup_start = 0.85;
  config.momentum = 0.95;
  config.momentum_warmup_steps = 5;
  const size_t steps = 8;
  std::vector<double> mu;
  for (size_t t = 0; t < steps; ++t) mu.push_back(0.85 + 0.1 * std::min(1.0, t / 5.0));
  for (size_t t = 0; t < steps; ++t) ASSERT_NEAR(muon_momentum(t, config), mu[t], 1e-15);

  // The two weightings are not a constant scale apart.
  const auto w_ema = momentum_weights(mu, steps - 1, true), w_sgd = momentum_weights(mu, steps - 1, false);
  const double form_gap = shape_difference(w_ema, w_sgd);
  EXPECT_GT(form_gap, 0.02);

  // Probe: gradient s is the one-hot matrix E_s, so entry s of the momentum
  // after step t is exactly the weight of g_s.
  Sequence probe;
  probe.names = {"probe"};
  probe.init = {torch::zeros({4, 8})};
  for (size_t t = 0; t < steps; ++t) {
    auto g = torch::zeros({4, 8});
    g.view({-1})[t] = 1.0;
    probe.grads.push_back({g});
  }
  const MuonRun ours = run_muon(probe, config);
  const fs::path dir = tests::scratch_dir("muon_warmup_probe");
  const Tensors torch_ema = torch_optimizer(probe, dir, "ema", muon_args(0.02, 0, mu, "float32", "ema"));
  const Tensors torch_sgd = torch_optimizer(probe, dir, "sgd", muon_args(0.02, 0, mu, "float32", "sgd"));
  ASSERT_FALSE(torch_ema.empty() || torch_sgd.empty());
  double ours_vs_ema = 0, ours_vs_sgd = INFINITY, torch_vs_ema = 0, torch_sgd_vs_sgd = 0;
  for (size_t t = 0; t < steps; ++t) {
    const auto ema = momentum_weights(mu, t, true), sgd = momentum_weights(mu, t, false);
    auto entries = [&](const torch::Tensor& m) {
      auto flat = m.to(torch::kDouble).reshape({-1});
      std::vector<double> v(t + 1);
      for (size_t s = 0; s <= t; ++s) v[s] = flat[s].item<double>();
      EXPECT_EQ(flat.narrow(0, t + 1, flat.size(0) - t - 1).abs().max().item<double>(), 0.0);
      return v;
    };
    auto max_rel = [](const std::vector<double>& a, const std::vector<double>& b) {
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
      return worst;
    };
    const auto mine = entries(ours.momentum[t][0]);
    ours_vs_ema = std::max(ours_vs_ema, max_rel(mine, ema));
    if (t == steps - 1) ours_vs_sgd = shape_difference(mine, sgd);
    const std::string key = "momentum." + std::to_string(t) + ".probe";
    torch_vs_ema = std::max(torch_vs_ema, max_rel(entries(torch_ema.at(key)), ema));
    torch_sgd_vs_sgd = std::max(torch_sgd_vs_sgd, max_rel(entries(torch_sgd.at(key)), sgd));
  }
  // muonrun follows the EMA weighting to fp32 rounding, and is farther from
  // the SGD one (after the best scale) than fp32 rounding can explain.
  EXPECT_LT(ours_vs_ema, 1e-6);
  EXPECT_GT(ours_vs_sgd, 0.02);
  // torch 2.11's Muon, as shipped, also weighs the EMA way (its code lerps;
  // only its documentation shows the SGD form); fed g/(1-mu_t) it is the SGD form.
  EXPECT_LT(torch_vs_ema, 1e-6);
  EXPECT_LT(torch_sgd_vs_sgd, 1e-6);
  std::cout << "[ muon ] warm-up weighting: EMA vs SGD shape gap " << fmt(form_gap) << "; muonrun vs EMA "
            << fmt(ours_vs_ema) << ", muonrun vs SGD (shape) " << fmt(ours_vs_sgd)
            << "; torch.optim.Muon vs EMA " << fmt(torch_vs_ema) << ", torch fed g/(1-mu) vs SGD "
            << fmt(torch_sgd_vs_sgd) << "\n";

  // The recipe's own warm-up (0.85 -> 0.95 over 500 steps) differs less, but
  // not by a constant scale either: at step 500 in float64.
  MuonConfig recipe;
  std::vector<double> mu_recipe;
  for (int64_t t = 0; t <= 500; ++t) mu_recipe.push_back(muon_momentum(t, recipe));
  const double recipe_gap = shape_difference(momentum_weights(mu_recipe, 500, true),
                                             momentum_weights(mu_recipe, 500, false));
  EXPECT_GT(recipe_gap, 1e-5);
  std::cout << "[ muon ] recipe warm-up, step 500: EMA vs SGD shape gap " << fmt(recipe_gap) << "\n";
}

TEST(ReferenceMuon, UnderMomentumWarmupUpdatesFollowTheEmaFormNotTheSgdForm) {
  // With random gradients and the compressed warm-up: muonrun matches
  // torch.optim.Muon (EMA in its code) to the NS tolerance, and does not match
  // the SGD form (torch fed g/(1-mu_t)) -- unlike at constant momentum.
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("muon_warmup");
  const Sequence s = make_sequence(kMuonShapes, 8, 33);
  MuonConfig config;
  config.lr = 0.02;
  config.momentum_warmup_start = 0.85;
  config.momentum = 0.95;
  config.momentum_warmup_steps = 5;
  std::vector<double> mu;
  for (int t = 0; t < 8; ++t) mu.push_back(muon_momentum(t, config));
  const MuonRun ours = run_muon(s, config);
  const Tensors ema = torch_optimizer(s, dir, "ema", muon_args(0.02, 0, mu, "float32", "ema"));
  const Tensors sgd = torch_optimizer(s, dir, "sgd", muon_args(0.02, 0, mu, "float32", "sgd"));
  ASSERT_FALSE(ema.empty() || sgd.empty());
  const double e_ema = worst_displacement_error(s, ours.weights, ema);
  const double e_sgd = worst_displacement_error(s, ours.weights, sgd);
  EXPECT_LT(e_ema, kMuonFp32Tolerance);
  EXPECT_GT(e_sgd, 100 * kMuonFp32Tolerance);
  std::cout << "[ muon ] warm-up updates: vs torch.optim.Muon " << fmt(e_ema) << ", vs SGD form " << fmt(e_sgd)
            << "\n";
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

const std::string kVocab = kShared + "/data/gpt2";

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(kVocab + "/encoder.json", kVocab + "/vocab.bpe");
  return tokenizer;
}

std::vector<uint16_t> read_ids(const fs::path& path) {
  const std::string bytes = tests::read_file(path);
  std::vector<uint16_t> ids(bytes.size() / 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    uint32_t v = 0;
    for (int b = 3; b >= 0; --b) v = (v << 8) | static_cast<unsigned char>(bytes[4 * i + b]);
    EXPECT_LT(v, 65536u);
    ids[i] = static_cast<uint16_t>(v);
  }
  return ids;
}

// The texts' ids from tiktoken_offline.py (after it checked the golden vectors).
std::vector<std::vector<uint16_t>> tiktoken_ids(const std::vector<std::string>& texts, const fs::path& dir) {
  std::vector<std::string> args{"--vocab", kVocab, "--vectors", kVocab + "/r50k-test-vectors.txt"};
  for (size_t i = 0; i < texts.size(); ++i) {
    const fs::path in = dir / ("text" + std::to_string(i) + ".txt");
    std::ofstream(in, std::ios::binary) << texts[i];
    args.push_back(in.string());
    args.push_back((dir / ("text" + std::to_string(i) + ".ids")).string());
  }
  const ScriptRun run = run_script("tiktoken_offline.py", args, dir);
  EXPECT_EQ(run.rc, 0) << run.output;
  EXPECT_NE(run.output.find("golden vectors: "), std::string::npos) << run.output;
  std::vector<std::vector<uint16_t>> out;
  for (size_t i = 0; i < texts.size(); ++i) out.push_back(read_ids(dir / ("text" + std::to_string(i) + ".ids")));
  return out;
}

void expect_same_ids(const std::vector<uint16_t>& ours, const std::vector<uint16_t>& ref, const std::string& what) {
  ASSERT_FALSE(ref.empty()) << what;
  size_t first = 0;
  while (first < ours.size() && first < ref.size() && ours[first] == ref[first]) ++first;
  EXPECT_TRUE(first == ours.size() && first == ref.size())
      << what << ": " << ours.size() << " tokens vs tiktoken's " << ref.size() << ", first difference at token "
      << first;
  std::cout << "[ tokenizer ] " << what << ": " << ref.size() << " tokens, "
            << (ours == ref ? "identical" : "DIFFERENT") << "\n";
}

TEST(ReferenceTokenizer, MatchesTiktokenOnTinyShakespeare) {
  REQUIRE_PYTHON();
  REQUIRE_SHARED(kVocab + "/encoder.json");
  REQUIRE_SHARED(kShared + "/data/tinyshakespeare.txt");
  const std::string text = tests::read_file(kShared + "/data/tinyshakespeare.txt");
  const auto ref = tiktoken_ids({text}, tests::scratch_dir("tokenizer_shakespeare"));
  expect_same_ids(gpt2().encode(text), ref[0], "tinyshakespeare.txt");
}

TEST(ReferenceTokenizer, MatchesTiktokenOnGutenbergBooks) {
  REQUIRE_PYTHON();
  REQUIRE_SHARED(kVocab + "/encoder.json");
  const std::string path = kShared + "/data/gutenberg/val.jsonl.xz";
  REQUIRE_SHARED(path);
  // The first books of the validation file, about 2 MB of text, read with
  // muonrun's own .jsonl.xz reader.
  TextReader reader(path);
  std::vector<std::string> books;
  size_t total = 0;
  for (std::string doc; total < (2u << 20) && reader.next(doc);) {
    total += doc.size();
    books.push_back(doc);
  }
  ASSERT_GE(books.size(), 2u);
  const auto ref = tiktoken_ids(books, tests::scratch_dir("tokenizer_gutenberg"));
  for (size_t i = 0; i < books.size(); ++i)
    expect_same_ids(gpt2().encode(books[i]), ref[i], "val.jsonl.xz book " + std::to_string(i));
}

}  // namespace

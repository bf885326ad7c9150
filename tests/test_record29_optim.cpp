// muonrun's optimizer on the record-29 model (models/record29.h) against
// tests/reference/record29_optim.py, a transcription of the optimizers of
// KellerJordan/modded-nanogpt record 29 (records/track_1_short/2025-09-03_FA3/
// train_gpt.py: Muon, DistAdam on one rank, the parameter groups and lr_mul,
// get_lr, the momentum warm-up): from the same weights and gradients, three
// steps of muonrun's Optimizer must move every tensor as the record does to
// 1e-5 relative in fp32, and a wrong lr multiplier or torch's eps placement
// must not. Also, in float64: the lr schedule and momentum at every step of
// the record's 1670, and the record's Adam arithmetic; and Muon on a stack of
// matrices (qkvo_w [4, dim, dim]) against per-matrix float64 updates, its
// ownership as one unit, and owner / replicated Muon on three ranks (threads)
// against one process, with state that moves between them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "models/record29.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "optim/schedule.h"
#include "optim/step_plan.h"
#include "tests/python_reference.h"
#include "tests/record29_small.h"
#include "tests/test_helpers.h"
#include "tests/thread_communicator.h"
#include "trainer/io/safetensors.h"

using namespace muonrun;
using tests::rel_error;
using tests::Tensors;
namespace fs = std::filesystem;

namespace {

// Record 29's optimizer settings in muonrun's keys: DistAdam's base lr 0.008
// times each parameter's lr_mul (embeddings 75, head 1, scalars 5) is
// embed_lr / head_lr / scalar_lr; betas (0.8, 0.95), eps 1e-10 added before
// the bias correction, no weight decay; Muon lr 0.05, momentum 0.85 -> 0.95
// over 300 steps; get_lr's cooldown over the last 0.45 of 1670 steps to 0.1.
Config record29_config() {
  Config c;
  c.train.steps = 1670;
  c.schedule.warmup_steps = 0;
  c.schedule.cooldown_frac = 0.45;
  c.schedule.cooldown_floor = 0.1;
  auto& adam = c.optim.adam;
  adam.embed_lr = 0.008 * 75;
  adam.head_lr = 0.008;
  adam.scalar_lr = 0.008 * 5;
  adam.beta1 = 0.8;
  adam.beta2 = 0.95;
  adam.eps = 1e-10;
  adam.weight_decay = 0;
  adam.eps_before_bias_correction = true;
  auto& muon = c.optim.muon;
  muon.lr = 0.05;
  muon.momentum = 0.95;
  muon.momentum_warmup_start = 0.85;
  muon.momentum_warmup_steps = 300;
  muon.nesterov = true;
  muon.ns_steps = 5;
  muon.weight_decay = 0;
  return c;
}

// A record-29 model whose parameters are copies of `init` (all of one model's).
Record29 make_model(const Tensors& init) {
  Record29 model(tests::record29_small_config());
  tests::set_weights(*model, init);
  return model;
}

// Gradients for `steps` steps: normal, except that the embeddings' rows of
// tokens "not in the batch" are zero (as in a real embedding gradient), the
// padding of `scalars` gets none (the record never reads it), and two
// scalars get gradients of about 1e-10, where sqrt(v) is of the order of
// Adam's eps and its placement shows.
std::vector<Tensors> make_grads(const Tensors& init, int steps, uint64_t seed) {
  torch::manual_seed(seed);
  const auto config = tests::record29_small_config();
  std::vector<Tensors> out(steps);
  for (int t = 0; t < steps; ++t) {
    for (const auto& [name, w] : init) {
      auto g = torch::randn_like(w);
      if (name == "embed.weight" || name.rfind("value_embeds.", 0) == 0)
        g.mul_((torch::rand({w.size(0), 1}) < 0.6).to(g.scalar_type()));
      if (name == "scalars") {
        g.narrow(0, g.size(0) - config.scalar_padding, config.scalar_padding).zero_();
        g.narrow(0, 0, 2).mul_(1e-10);
      }
      out[t][name] = g;
    }
  }
  return out;
}

void set_grads(const Record29& model, const Tensors& grads) {
  for (auto& item : model->named_parameters()) item.value().mutable_grad() = grads.at(item.key()).clone();
}

// muonrun's Optimizer (one process) over `grads`, steps first_step, first_step + 1, ...
std::vector<Tensors> run_ours(const Config& config, const Tensors& init, const std::vector<Tensors>& grads,
                              int64_t first_step) {
  Record29 model = make_model(init);
  Optimizer opt(*model, config, nullptr);
  std::vector<Tensors> out;
  for (size_t t = 0; t < grads.size(); ++t) {
    set_grads(model, grads[t]);
    opt.step(first_step + static_cast<int64_t>(t));
    out.push_back(tests::weights_of(*model));
  }
  return out;
}

// The reference over the same weights and gradients: its step.<t>.<name>
// weights and its schedule (empty when the script failed).
Tensors run_reference(const fs::path& dir, const Tensors& init, const std::vector<Tensors>& grads,
                      int64_t first_step) {
  std::string failure;
  auto out = tests::run_optimizer_reference("record29_optim.py", dir, init, grads, first_step, failure);
  EXPECT_TRUE(failure.empty()) << failure;
  return out;
}

using tests::worst_displacement;

Tensors initial_weights() {
  torch::manual_seed(29);
  Record29 model(tests::record29_small_config());
  return tests::weights_of(*model);
}

constexpr double kTolerance = 1e-5;

}  // namespace

// The record's collection: hidden_matrix_params = block parameters with
// ndim >= 2, embed_params = names with "embed", head, scalars (ndim < 2).
TEST(Record29Optim, ParameterGroupsAreTheRecords) {
  Record29 model(tests::record29_small_config());
  const auto groups = group_parameters(*model);
  auto names = [](const std::vector<NamedParam>& ps) {
    std::vector<std::string> out;
    for (const auto& p : ps) out.push_back(p.name);
    return out;
  };
  EXPECT_EQ(names(groups.embeddings), (std::vector<std::string>{"embed.weight", "value_embeds.0.weight",
                                                                 "value_embeds.1.weight", "value_embeds.2.weight"}));
  EXPECT_EQ(names(groups.heads), std::vector<std::string>{"lm_head.weight"});
  EXPECT_EQ(names(groups.scalars), std::vector<std::string>{"scalars"});
  std::vector<std::string> matrices;
  for (int i = 0; i < 6; ++i) {
    const std::string block = "blocks." + std::to_string(i);
    if (i != 3) matrices.insert(matrices.end(), {block + ".attn.qkvo_w", block + ".attn.attn_gate.weight"});
    matrices.insert(matrices.end(), {block + ".mlp.c_fc", block + ".mlp.c_proj"});
  }
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(names(groups.matrices)), sorted(matrices));
  // And in the optimizer: AdamW's three groups with the record's lr x lr_mul.
  Optimizer opt(*model, record29_config(), nullptr);
  std::map<std::string, std::pair<double, size_t>> adam;
  for (const auto& g : opt.adam.groups()) adam[g.name] = {g.lr, g.params.size()};
  EXPECT_NEAR(adam.at("embed").first, 0.008 * 75, 1e-15);
  EXPECT_NEAR(adam.at("head").first, 0.008 * 1, 1e-15);
  EXPECT_NEAR(adam.at("scalar").first, 0.008 * 5, 1e-15);
  EXPECT_EQ(adam.at("embed").second, 4u);
  ASSERT_NE(opt.muon, nullptr);
  EXPECT_EQ(opt.muon->params().size(), matrices.size());
}

// The record's get_lr and momentum warm-up (from the reference, in float64)
// at every one of its 1670 steps.
TEST(Record29Optim, ScheduleAndMomentumMatchTheRecordAtEveryStep) {
  REQUIRE_PYTHON();
  const auto init = initial_weights();
  const Tensors ref = run_reference(tests::scratch_dir("schedule"), init, make_grads(init, 1, 1), 0);
  ASSERT_FALSE(ref.empty());
  const Config config = record29_config();
  const auto lr = ref.at("schedule.lr"), momentum = ref.at("schedule.momentum");
  ASSERT_EQ(lr.numel(), 1670);
  double worst_lr = 0, worst_mu = 0;
  for (int64_t s = 0; s < 1670; ++s) {
    worst_lr = std::max(worst_lr, std::abs(lr_multiplier(s, 1670, config.schedule) - lr[s].item<double>()));
    worst_mu = std::max(worst_mu, std::abs(muon_momentum(s, config.optim.muon) - momentum[s].item<double>()));
  }
  EXPECT_LT(worst_lr, 1e-12);
  EXPECT_LT(worst_mu, 1e-15);
  // Spot values: constant until step 918 (x < 0.55), 0.1 + 0.9 (1670 - s) / 751.5 after.
  EXPECT_EQ(lr_multiplier(918, 1670, config.schedule), 1.0);
  EXPECT_NEAR(lr_multiplier(919, 1670, config.schedule), 0.1 + 0.9 * 751.0 / 751.5, 1e-15);
  EXPECT_NEAR(lr_multiplier(1669, 1670, config.schedule), 0.1 + 0.9 / 751.5, 1e-15);
  // A rounded cooldown of 752 steps (the record-11 form) would be off by 6e-4.
  EXPECT_GT(std::abs(lr[1000].item<double>() - (0.1 + 0.9 * 670.0 / 752.0)), 1e-4);
  std::cout << "[ record29 ] schedule over 1670 steps: worst lr error " << tests::fmt(worst_lr) << ", momentum "
            << tests::fmt(worst_mu) << "\n";
}

// The record's DistAdam arithmetic, lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps),
// in float64 over five steps, against AdamW with eps_before_bias_correction;
// gradients of about 1e-10 make torch's placement (the default) differ.
TEST(Record29Optim, AdamAddsEpsBeforeTheBiasCorrection) {
  torch::manual_seed(5);
  const double lr = 0.04, b1 = 0.8, b2 = 0.95, eps = 1e-10;
  auto w0 = torch::randn({6, 5}, torch::kDouble);
  std::vector<torch::Tensor> grads;
  for (int t = 0; t < 5; ++t) grads.push_back(torch::randn({6, 5}, torch::kDouble) * (t % 2 ? 1e-10 : 1e-9));
  auto run = [&](bool before) {
    AdamConfig config;
    config.beta1 = b1;
    config.beta2 = b2;
    config.eps = eps;
    config.eps_before_bias_correction = before;
    NamedParam p{"w", w0.clone()};
    AdamW adam({{"all", lr, {p}}}, config);
    EXPECT_EQ(adam.fused(), !before);
    for (const auto& g : grads) {
      p.tensor.mutable_grad() = g.clone();
      adam.step(1.0);
    }
    return p.tensor.clone();
  };
  auto m = torch::zeros_like(w0), v = torch::zeros_like(w0), w = w0.clone();
  for (size_t i = 0; i < grads.size(); ++i) {
    const double t = static_cast<double>(i + 1);
    m = b1 * m + (1 - b1) * grads[i];
    v = b2 * v + (1 - b2) * grads[i] * grads[i];
    w = w - lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t)) * m / (v.sqrt() + eps);
  }
  const double ours = rel_error(run(true) - w0, w - w0);
  const double torch_form = rel_error(run(false) - w0, w - w0);
  EXPECT_LT(ours, 1e-12);
  EXPECT_GT(torch_form, 1e-2) << "eps after the bias correction should differ at gradients of 1e-10";
  std::cout << "[ record29 ] Adam, eps before bias correction: error " << tests::fmt(ours)
            << "; torch's placement: " << tests::fmt(torch_form) << "\n";
}

// A stack [k, rows, cols] is k matrices orthogonalised separately with the
// shape factor of its last two dims, batched with plain matrices of its size
// class: against float64 Muon updates matrix by matrix.
TEST(Record29Optim, MuonOrthogonalisesEachMatrixOfAStack) {
  torch::manual_seed(7);
  const std::vector<std::vector<int64_t>> shapes{{4, 16, 16}, {16, 16}, {3, 24, 8}, {8, 24}};
  std::vector<NamedParam> params;
  for (size_t i = 0; i < shapes.size(); ++i) params.push_back({"p" + std::to_string(i), torch::randn(shapes[i])});
  std::vector<torch::Tensor> w0, reference_w, reference_m;
  for (const auto& p : params) {
    w0.push_back(p.tensor.to(torch::kDouble));
    reference_w.push_back(w0.back().clone());
    reference_m.push_back(torch::zeros_like(w0.back()));
  }
  // The stack read wrongly, as one [4 x 16, 16] matrix: a negative control.
  auto flattened_w = w0[0].clone(), flattened_m = torch::zeros_like(w0[0]);
  MuonConfig config;
  config.lr = 0.05;
  Muon muon(params, config);
  // Newton-Schulz in float64 as the record writes it, one matrix at a time.
  auto ns = [](torch::Tensor G) {
    const bool tall = G.size(0) > G.size(1);
    auto X = tall ? G.t() : G;
    X = X / (X.norm() + 1e-7);
    for (int i = 0; i < 5; ++i) {
      auto A = X.mm(X.t());
      X = 3.4445 * X + (-4.7750 * A + 2.0315 * A.mm(A)).mm(X);
    }
    return tall ? X.t() : X;
  };
  // One float64 Muon update of the matrices [..., rows, cols] of w.
  auto reference_update = [&](torch::Tensor& w, torch::Tensor& m, const torch::Tensor& g, const MuonStep& hyper) {
    m = hyper.momentum * m + (1 - hyper.momentum) * g;
    auto u = (1 - hyper.momentum) * g + hyper.momentum * m;
    const double rows = static_cast<double>(g.size(-2)), cols = static_cast<double>(g.size(-1));
    const double scale = hyper.lr * std::sqrt(std::max(1.0, rows / cols));
    auto stack_u = u.reshape({-1, g.size(-2), g.size(-1)});
    auto stack_w = w.view({-1, g.size(-2), g.size(-1)});
    for (int64_t k = 0; k < stack_u.size(0); ++k) stack_w[k].sub_(scale * ns(stack_u[k]));
  };
  for (int64_t step = 0; step < 3; ++step) {
    std::vector<torch::Tensor> grads;
    for (const auto& p : params) grads.push_back(torch::randn_like(p.tensor));
    const MuonStep hyper = muon.step_hyper(1.0, step);
    muon.update({0, 1, 2, 3}, grads, hyper);
    for (size_t i = 0; i < params.size(); ++i)
      reference_update(reference_w[i], reference_m[i], grads[i].to(torch::kDouble), hyper);
    auto flat_w = flattened_w.view({64, 16});
    auto flat_m = flattened_m.view({64, 16});
    reference_update(flat_w, flat_m, grads[0].to(torch::kDouble).reshape({64, 16}), hyper);
  }
  std::map<std::string, torch::Tensor> state;
  for (const auto& [k, v] : muon.state()) state[k] = v;
  for (size_t i = 0; i < params.size(); ++i) {
    const double e = rel_error(params[i].tensor - w0[i], reference_w[i] - w0[i]);
    EXPECT_LT(e, 1e-5) << params[i].name;
    EXPECT_LT(rel_error(state.at("muon.momentum." + params[i].name), reference_m[i]), 1e-6) << params[i].name;
  }
  EXPECT_GT(rel_error(params[0].tensor - w0[0], flattened_w - w0[0]), 0.1)
      << "the stack moved as one flattened matrix";
}

// In owner mode each qkvo_w is one unit: one rank's slot in one shard, whose
// slots hold equal element counts.
TEST(Record29Optim, OwnershipKeepsEachStackWhole) {
  Record29 model(tests::record29_small_config());
  const auto params = model->parameters();
  const auto groups = group_parameters(*model);
  std::vector<AdamWGroup> adam{{"embed", 0.6, groups.embeddings}, {"head", 0.008, groups.heads},
                               {"scalar", 0.04, groups.scalars}};
  for (int world : {2, 3, 8}) {
    const auto plan = plan_step(params, groups.matrices, adam, OptimConfig{}, PlanRanks{world, 0}, 1 << 20);
    ASSERT_TRUE(plan.ownership.has_value());
    std::vector<int> seen(groups.matrices.size(), 0);
    for (const auto& shard : plan.ownership->shards) {
      torch::Tensor first;
      for (int m : shard.slots) {
        if (m < 0) continue;
        ++seen[m];
        const auto& t = groups.matrices[m].tensor;
        if (!first.defined()) first = t;
        EXPECT_EQ(t.numel(), first.numel()) << "world " << world << ": a shard mixes sizes";
        EXPECT_EQ(t.dim(), first.dim()) << "world " << world << ": a shard mixes stacks and matrices";
      }
    }
    for (size_t m = 0; m < seen.size(); ++m) EXPECT_EQ(seen[m], 1) << groups.matrices[m].name;
    // qkvo_w costs 4 matrices of Newton-Schulz.
    double total = 0;
    for (double f : plan.ownership->flops_per_rank) total += f;
    double expected = 0;
    for (const auto& m : groups.matrices) {
      const auto& t = m.tensor;
      expected += newton_schulz_flops({t.size(-2), t.size(-1), t.numel() / (t.size(-2) * t.size(-1))}, 5);
    }
    EXPECT_DOUBLE_EQ(total, expected);
  }
}

// Owner and replicated Muon on three ranks (threads) give the weights of one
// process fed the mean gradients, and the owners' state, gathered, resumes
// on one process.
TEST(Record29Optim, OwnerAndReplicatedOnThreeRanksMatchOneProcess) {
  const int world = 3, steps = 3;
  const auto init = initial_weights();
  std::vector<std::vector<Tensors>> rank_grads;
  for (int r = 0; r < world; ++r) rank_grads.push_back(make_grads(init, steps, 100 + r));
  std::vector<Tensors> mean(steps);
  for (int t = 0; t < steps; ++t)
    for (const auto& [name, g] : init) {
      auto sum = rank_grads[0][t].at(name).clone();
      for (int r = 1; r < world; ++r) sum.add_(rank_grads[r][t].at(name));
      mean[t][name] = sum / world;
    }
  const Config base = record29_config();
  const auto single = run_ours(base, init, mean, 0);
  for (const auto mode : {Distribute::owner, Distribute::replicated}) {
    Config config = base;
    config.optim.muon.distribute = mode;
    std::vector<std::vector<Tensors>> weights(world);
    std::vector<std::map<std::string, torch::Tensor>> states(world);
    std::vector<Tensors> before_last(world);
    tests::run_ranks(world, [&](int rank, Communicator& comm) {
      Record29 model = make_model(init);
      Optimizer opt(*model, config, &comm);
      EXPECT_EQ(opt.ownership() != nullptr, mode == Distribute::owner);
      for (int t = 0; t < steps; ++t) {
        if (t == steps - 1) {
          for (auto& [k, v] : opt.state()) states[rank][k] = v.clone();
          before_last[rank] = tests::weights_of(*model);
        }
        opt.begin_backward(true);
        set_grads(model, rank_grads[rank][t]);
        opt.end_backward();
        opt.step(t);
        weights[rank].push_back(tests::weights_of(*model));
      }
    });
    const std::string tag = name_of(mode);
    for (int r = 0; r < world; ++r)
      for (int t = 0; t < steps; ++t)
        for (const auto& [name, w] : single[t])
          EXPECT_LT(rel_error(weights[r][t].at(name) - init.at(name), w - init.at(name)), 1e-6)
              << tag << " rank " << r << " step " << t << " " << name;
    // The union of the ranks' state (each owner's Muon momenta) on one process.
    std::map<std::string, torch::Tensor> gathered;
    for (const auto& s : states) gathered.insert(s.begin(), s.end());
    Record29 resumed = make_model(before_last[0]);
    Optimizer opt(*resumed, base, nullptr);
    opt.load_state(gathered);
    set_grads(resumed, mean[steps - 1]);
    opt.step(steps - 1);
    for (const auto& [name, w] : tests::weights_of(*resumed))
      EXPECT_LT(rel_error(w - init.at(name), single[steps - 1].at(name) - init.at(name)), 1e-6)
          << tag << " resumed " << name;
  }
}

// Three steps of muonrun's Optimizer on the record-29 model against the
// record's optimizers: at the start (momentum warm-up, Adam's first steps)
// and in the cooldown; with a wrong lr multiplier or torch's eps placement
// the error must be large.
TEST(Record29Optim, ThreeStepsMatchTheRecordsOptimizers) {
  REQUIRE_PYTHON();
  const auto init = initial_weights();
  for (int64_t first_step : {0, 1100}) {
    const auto grads = make_grads(init, 3, 7 + first_step);
    const Tensors ref = run_reference(tests::scratch_dir("steps" + std::to_string(first_step)), init, grads,
                                      first_step);
    ASSERT_FALSE(ref.empty());
    const auto [worst, where] = worst_displacement(init, run_ours(record29_config(), init, grads, first_step), ref);
    EXPECT_LT(worst, kTolerance) << where;
    std::cout << "[ record29 ] steps " << first_step << ".." << first_step + 2 << ": worst displacement error "
              << tests::fmt(worst) << " (" << where << ", tolerance " << tests::fmt(kTolerance) << ")\n";

    Config wrong_lr = record29_config();
    wrong_lr.optim.adam.embed_lr = 0.008 * 7.5;  // lr_mul 7.5 instead of 75
    const auto lr_control = worst_displacement(init, run_ours(wrong_lr, init, grads, first_step), ref);
    EXPECT_GT(lr_control.first, 100 * kTolerance) << "embed lr x7.5 still matches";
    Config torch_eps = record29_config();
    torch_eps.optim.adam.eps_before_bias_correction = false;
    const auto eps_control = worst_displacement(init, run_ours(torch_eps, init, grads, first_step), ref);
    EXPECT_GT(eps_control.first, 100 * kTolerance) << "eps after the bias correction still matches";
    std::cout << "[ record29 ] negative controls: embed lr_mul 7.5 " << tests::fmt(lr_control.first) << " ("
              << lr_control.second << "), torch's eps placement " << tests::fmt(eps_control.first) << " ("
              << eps_control.second << ")\n";
  }
}

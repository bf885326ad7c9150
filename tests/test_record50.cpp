// The record-50 model (models/record50.h) and its blocks against
// tests/reference/record50.py, an independent PyTorch transcription of
// record 50's GPT (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-12-18_CautiousWDAdam): the same weights and
// packed batch give the same summed loss and every gradient to 1e-5 relative
// in fp32, with every feature on and with each switched off; the reference
// with a feature broken (one control per feature) does not match. Also the
// YaRN state against the reference's transcription of the record's Yarn,
// the window and YaRN schedule at the record's steps, the smear and the
// partial key offset against float64 formulas, the record's names and the
// zero-head structure at init.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "models/key_offset.h"
#include "models/record50.h"
#include "models/smear.h"
#include "models/yarn.h"
#include "tests/python_reference.h"
#include "tests/record50_small.h"
#include "tests/test_helpers.h"
#include "trainer/base/config_error.h"
#include "trainer/io/safetensors.h"

using namespace muonrun;

using tests::rel_error;
using tests::Tensors;
namespace fs = std::filesystem;

namespace {

Record50Config small_config() { return tests::record50_small_config(); }

// Documents of 50, 80, 1 and 69 tokens.
torch::Tensor doc_offsets() { return torch::tensor({0, 50, 130, 131, 200}, torch::kInt); }

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

std::string config_json(const Record50Impl& m) {
  const auto& c = m.config;
  std::vector<std::string> ve, attention, offset, freqs, mlp, skips;
  for (const auto& s : c.skips) skips.push_back(::fmt::format("[{}, {}]", s.from, s.to));
  for (int64_t i = 0; i < c.layers; ++i) {
    mlp.push_back(c.mlp[static_cast<size_t>(i)] ? "true" : "false");
    ve.push_back(std::to_string(c.value_embed[i]));
    attention.push_back(c.windows[i] == LayerWindow::none ? "false" : "true");
    offset.push_back(c.key_offset && c.windows[i] == LayerWindow::long_window ? "true" : "false");
  }
  auto f = m.rotary_freqs().to(torch::kDouble);
  for (int64_t i = 0; i < f.numel(); ++i) freqs.push_back(::fmt::format("{:.17g}", f[i].item<double>()));
  return ::fmt::format(
      "{{\"vocab\": {}, \"dim\": {}, \"heads\": {}, \"head_dim\": {}, \"layers\": {}, \"gate_dim\": {}, "
      "\"smear_dim\": {}, \"value_embed_layers\": {}, \"attention_layers\": {}, \"key_offset_layers\": {}, "
      "\"smear\": {}, \"skips\": {}, \"backout_layer\": {}, \"scalar_padding\": {}, "
      "\"attn_scale\": {:.17g}, \"rope_freqs\": {}, \"mlp_layers\": {}}}",
      c.vocab_padded, c.dim, c.heads, c.head_dim, c.layers, c.gate_dim, c.gate_dim, json_list(ve),
      json_list(attention), json_list(offset), c.smear ? "true" : "false", json_list(skips), c.backout_layer,
      c.scalar_padding, m.attn_scale(), json_list(freqs), json_list(mlp));
}

// The record's state_dict shape of a tensor of ours: qkvo_w [4 dim, dim].
torch::Tensor record_shape(const std::string& name, const torch::Tensor& t) {
  return t.dim() == 3 ? t.reshape({-1, t.size(2)}) : t;
}

// Nothing at its default: zero-initialised projections, gates, value
// embeddings and head become non-zero; every lambda gets a value of its own.
void randomize(Record50& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    auto& p = item.value();
    if (item.key() == "scalars") p.copy_(torch::rand(p.sizes()) * 0.8 + 0.2);
    else if (item.key() == "lm_head.weight") p.normal_(0, 1.0);
    else if (item.key().find("gate") != std::string::npos) p.normal_(0, 0.5);
    else if (p.dim() >= 2 && item.key().find("embed") == std::string::npos) p.uniform_(-0.15, 0.15);
    else p.normal_();
  }
}

struct Case {
  fs::path dir;
  Tensors ours;  // "loss" and "grad.<name>" in the record's shapes
  std::vector<std::string> names;
};

// Builds the small model (as `edit` changes it) with random weights at step 5
// of 8 scheduled + 2 (long window 3 blocks, YaRN applied once), writes what
// the reference reads, and computes muonrun's loss and gradients.
template <class Edit>
Case make_case(const std::string& name, Edit edit, bool training = true) {
  torch::manual_seed(50);
  Record50Config config = small_config();
  edit(config);
  Record50 model(config);
  randomize(model);
  model->set_progress({5, 10, 2});
  if (!training) model->eval();
  const auto cu = doc_offsets();
  const int64_t T = 200;
  auto inputs = torch::randint(config.vocab_padded, {T}, torch::kLong);
  auto targets = torch::randint(config.vocab_padded, {T}, torch::kLong);
  std::vector<int64_t> windows;
  for (auto w : config.windows) windows.push_back(w == LayerWindow::long_window ? model->long_window() : model->short_window());
  Case c{tests::scratch_dir(name), {}, {}};
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  for (auto& item : model->named_parameters()) {
    weights.emplace_back(item.key(), record_shape(item.key(), item.value().detach()).contiguous());
    c.names.push_back(item.key());
  }
  save_safetensors((c.dir / "weights.safetensors").string(), weights);
  save_safetensors((c.dir / "batch.safetensors").string(), {{"inputs", inputs},
                                                            {"targets", targets},
                                                            {"cu_seqlens", cu},
                                                            {"windows", torch::tensor(windows, torch::kLong)}});
  std::ofstream(c.dir / "config.json") << config_json(*model);
  auto loss = model->loss(TokenBatch{inputs, targets, cu}).objective;
  c.ours["loss"] = loss.detach();
  if (training) {
    loss.backward();
    for (auto& item : model->named_parameters()) {
      auto grad = item.value().grad();  // undefined where a switched-off feature leaves a parameter out
      c.ours["grad." + item.key()] = record_shape(item.key(), grad.defined() ? grad : torch::zeros_like(item.value()));
    }
  }
  return c;
}
Case make_case(const std::string& name, bool training = true) {
  return make_case(name, [](Record50Config&) {}, training);
}

Tensors reference(const Case& c, const std::vector<std::string>& extra) {
  std::string failure;
  auto out = tests::run_model_reference("record50.py", c.dir, extra, failure);
  EXPECT_TRUE(failure.empty()) << failure;
  return out;
}

constexpr double kTolerance = 1e-5;

// Loss and every gradient within tolerance; `zero_ok` names parameters a
// switched-off feature leaves without a gradient.
void expect_match(const Case& c, const Tensors& ref, const std::string& what,
                  const std::vector<std::string>& zero_ok = {}) {
  ASSERT_FALSE(ref.empty());
  double worst = 0;
  for (const auto& name : c.names) {
    const std::string key = "grad." + name;
    ASSERT_TRUE(ref.count(key)) << key << " missing from the reference";
    if (std::find(zero_ok.begin(), zero_ok.end(), name) == zero_ok.end()) {
      EXPECT_GT(ref.at(key).norm().item<double>(), 0) << what << ": " << name << ": a zero gradient tests nothing";
    }
    const double e = rel_error(c.ours.at(key), ref.at(key));
    EXPECT_LT(e, kTolerance) << what << ": " << name;
    worst = std::max(worst, e);
  }
  const double loss_error = rel_error(c.ours.at("loss"), ref.at("loss"));
  EXPECT_LT(loss_error, kTolerance) << what;
  std::cout << "[ record50 ] " << what << ": summed loss " << c.ours.at("loss").item<double>() << " vs "
            << ref.at("loss").item<double>() << " (relative " << tests::fmt(loss_error) << "); worst gradient error "
            << tests::fmt(worst) << " over " << c.names.size() << " tensors\n";
}

}  // namespace

TEST(Record50, LossAndEveryGradientMatchTheRecordInPyTorch) {
  REQUIRE_PYTHON();
  const Case c = make_case("record50");
  // The padding of `scalars` is unused; so is the layer without attention's pair of lambdas.
  expect_match(c, reference(c, {}), "every feature", {"scalars"});
}

// Each feature switched off in muonrun against the reference with the same
// structure: the switches change the network as the record's code would.
TEST(Record50, EachFeatureSwitchedOffStillMatches) {
  REQUIRE_PYTHON();
  const std::vector<std::pair<std::string, std::function<void(Record50Config&)>>> variants{
      {"no smear", [](Record50Config& c) { c.smear = false; }},
      {"no key offset", [](Record50Config& c) { c.key_offset = false; }},
      {"no YaRN", [](Record50Config& c) { c.yarn = false; }},
      {"no skip", [](Record50Config& c) { c.skips.clear(); }},
      {"record 32's gated U-net", [](Record50Config& c) { c.skips = parse_skip_pattern("2>3 1>4 0>5", 6, "test"); }},
      {"no backout", [](Record50Config& c) { c.backout_layer = -1; }},
      {"no MLP in layer 0 (record 30)", [](Record50Config& c) { c.mlp = parse_mlp_pattern("- M M M M M", 6, "test"); }},
      {"no attention in layer 0 (record 35)",
       [](Record50Config& c) {
         c.windows = parse_window_pattern("- S L - S L", 6, "test");
         c.value_embed = parse_value_embed_pattern("- 2 - - 0 1", 6, "test");
       }},
  };
  for (const auto& [what, edit] : variants) {
    const Case c = make_case("record50_off", edit);
    // What a switched-off feature leaves untouched has no gradient.
    std::vector<std::string> zero_ok{"scalars"};
    if (what == "no smear") zero_ok.push_back("smear_gate.weight");
    expect_match(c, reference(c, {}), what, zero_ok);
  }
}

TEST(Record50, EvaluationLossIsTheMeanAndMatches) {
  REQUIRE_PYTHON();
  const Case c = make_case("record50_eval", /*training=*/false);
  const Tensors ref = reference(c, {"--eval"});
  ASSERT_FALSE(ref.empty());
  EXPECT_LT(rel_error(c.ours.at("loss"), ref.at("loss")), kTolerance);
  EXPECT_LT(c.ours.at("loss").item<double>(), 3 * std::log(256.0)) << "a mean, not a sum over 200 tokens";
}

TEST(Record50, NegativeControlsFailTheComparison) {
  REQUIRE_PYTHON();
  const Case c = make_case("record50_controls");
  for (const std::string control : {"wrong-window", "no-smear", "no-key-offset", "key-offset-all-dims",
                                    "no-backout", "ungated-skip", "no-value-embed"}) {
    const Tensors ref = reference(c, {"--control", control});
    ASSERT_FALSE(ref.empty()) << control;
    const auto [worst, name] = tests::worst_error(c.ours, ref);
    EXPECT_GT(worst, 100 * kTolerance) << "--control " << control << " still matches";
    std::cout << "[ record50 ] --control " << control << ": worst error " << tests::fmt(worst) << " (" << name << ")\n";
  }
}

TEST(Record50, WeightsLoadIntoTheRecordsModuleAndBack) {
  REQUIRE_PYTHON();
  const Case c = make_case("record50_state_dict");
  const std::string problem = tests::state_dict_round_trip("record50.py", c.dir);
  EXPECT_TRUE(problem.empty()) << problem;
}

// YaRN over record 50's windows (3 -> 7 -> 11 -> 13 blocks of 128, head_dim
// 128) against the reference's transcription of the record's Yarn class, in
// the record's fp32 arithmetic; and the figures of the record's notes.
TEST(Record50, YarnMatchesTheRecordsClass) {
  REQUIRE_PYTHON();
  const auto dir = tests::scratch_dir("record50_yarn");
  std::ofstream(dir / "yarn.json")
      << R"({"head_dim": 128, "base_scale": 0.1, "block": 128, "transitions": [[3, 7], [7, 11], [11, 13]]})";
  const std::string out = (dir / "yarn.safetensors").string();
  const auto run = tests::run_script("record50.py", {"--yarn", (dir / "yarn.json").string(), "--out", out}, dir);
  ASSERT_EQ(run.rc, 0) << run.output;
  const auto ref = load_safetensors(out).tensors;
  const std::vector<int64_t> windows{3, 7, 11, 13};
  for (size_t n = 0; n < windows.size(); ++n) {
    const auto ours = yarn_state(128, 128, 0.1, std::vector<int64_t>(windows.begin(), windows.begin() + n + 1));
    const auto& theirs = ref.at("freqs_f32." + std::to_string(n));
    EXPECT_LT(rel_error(ours.freq.to(torch::kDouble), theirs.to(torch::kDouble)), 1e-7) << "after " << n << " applies";
    EXPECT_NEAR(ours.attn_scale, ref.at("attn_scale")[n].item<double>(), 1e-15) << n;
  }
  const auto last = yarn_state(128, 128, 0.1, windows);
  EXPECT_NEAR(last.attn_scale, 0.1317780, 5e-8);
  EXPECT_NEAR(last.freq[1].item<double>(), 0.7996, 5e-5);
  EXPECT_NEAR(last.freq[31].item<double>(), 2.254e-4, 5e-8);
  EXPECT_EQ(last.freq[0].item<double>(), 1.0) << "a pair turning 32 times or more over the window keeps its speed";
}

// Record 50's windows at its steps (2050 scheduled + 40 extension; notes of
// the record): (short, long) tokens (128, 384), (384, 896), (640, 1408), the
// extension's (768, 1664) and the final validation's (768, 2560) with YaRN
// left at the extension's state.
TEST(Record50, WindowsAndYarnFollowTheRecordsSchedule) {
  Record50Config config;
  config.vocab_padded = 128;
  config.dim = 128;
  config.heads = 1;
  Record50 model(config);
  struct Expected {
    int64_t step, short_window, long_window;
    double scale;
  };
  for (const auto& e : std::vector<Expected>{{0, 128, 384, 0.1},
                                             {683, 128, 384, 0.1},
                                             {684, 384, 896, 0.1169460},
                                             {1366, 384, 896, 0.1169460},
                                             {1367, 640, 1408, 0.1275175},
                                             {2049, 640, 1408, 0.1275175},
                                             {2050, 768, 1664, 0.1317780},
                                             {2089, 768, 1664, 0.1317780},
                                             {2090, 768, 2560, 0.1317780}}) {
    model->set_progress({e.step, 2090, 40});
    EXPECT_EQ(model->short_window(), e.short_window) << "step " << e.step;
    EXPECT_EQ(model->long_window(), e.long_window) << "step " << e.step;
    EXPECT_NEAR(model->attn_scale(), e.scale, 5e-8) << "step " << e.step;
  }
  // Going back (a resumed run's first step) rebuilds the state from the schedule.
  model->set_progress({10, 2090, 40});
  EXPECT_EQ(model->long_window(), 384);
  EXPECT_EQ(model->attn_scale(), 0.1);
  EXPECT_TRUE(torch::equal(model->rotary_freqs(), yarn_state(128, 128, 0.1, {3}).freq));
}

TEST(Record50Blocks, SmearMixesEachTokenWithThePreviousOne) {
  torch::manual_seed(1);
  auto x = torch::randn({7, 16}, torch::kDouble);
  auto w = torch::randn({1, 4}, torch::kDouble);
  auto lambda = torch::tensor(0.7, torch::kDouble);
  auto y = smear(x, w, lambda);
  EXPECT_TRUE(torch::equal(y[0], x[0]));
  for (int64_t t = 1; t < 7; ++t) {
    double z = 0;
    for (int64_t j = 0; j < 4; ++j) z += x[t][j].item<double>() * w[0][j].item<double>();
    const double g = 0.7 / (1 + std::exp(-z));
    EXPECT_LT((y[t] - (x[t] + g * x[t - 1])).abs().max().item<double>(), 1e-14) << t;
  }
  EXPECT_TRUE(torch::equal(smear(x, w, torch::tensor(0.0, torch::kDouble)), x)) << "lambda 0 (its init): the identity";
}

TEST(Record50Blocks, KeyOffsetMovesTheStillDimsOneTokenOn) {
  auto k = torch::randn({5, 2, 8});
  auto y = partial_key_offset(k);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t d = 0; d < 8; ++d) {
      const bool still = (d >= 2 && d < 4) || d >= 6;  // [D/4, D/2) and [3D/4, D)
      const int64_t from = still && t > 0 ? t - 1 : t;
      EXPECT_TRUE(torch::equal(y.select(0, t).select(-1, d), k.select(0, from).select(-1, d))) << t << " " << d;
    }
}

// The record's names and shapes; at init (zero head, zero value embeddings,
// smear and gates at zero) the loss of T tokens is T ln(vocab) and only the
// head has a gradient.
TEST(Record50, NamesShapesAndTheZeroHeadAtInit) {
  Record50 model(small_config());
  std::map<std::string, std::vector<int64_t>> expected{
      {"embed.weight", {256, 64}},           {"smear_gate.weight", {1, 12}},
      {"value_embeds.2.weight", {256, 64}},  {"blocks.0.attn.qkvo_w", {4, 64, 64}},
      {"blocks.0.attn.attn_gate.weight", {2, 12}}, {"blocks.0.mlp.c_fc", {256, 64}},
      {"blocks.5.mlp.c_proj", {256, 64}},    {"lm_head.weight", {256, 64}},
      {"scalars", {4 * 6 + 3 + 5}}};
  const auto params = model->named_parameters();
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(params.contains(name)) << name;
    EXPECT_EQ(params[name].sizes().vec(), shape) << name;
  }
  EXPECT_FALSE(params.contains("blocks.3.attn.qkvo_w")) << "layer 3 has no attention";
  EXPECT_EQ(params["value_embeds.0.weight"].abs().max().item<double>(), 0) << "record 49: zero-initialised";
  auto inputs = torch::randint(256, {200}, torch::kLong), targets = torch::randint(256, {200}, torch::kLong);
  auto loss = model->loss(TokenBatch{inputs, targets, doc_offsets()}).objective;
  EXPECT_NEAR(loss.item<double>(), 200 * std::log(256.0), 1e-3);
  loss.backward();
  for (const auto& item : model->named_parameters()) {
    const double norm = item.value().grad().defined() ? item.value().grad().norm().item<double>() : 0;
    if (item.key() == "lm_head.weight") EXPECT_GT(norm, 0);
    else EXPECT_EQ(norm, 0) << item.key();
  }
}

// model.skips: record 50's single skip, record 32's gated U-net (one lambda
// each, at -1.5, after the smear and backout lambdas), and bad skips named.
TEST(Record50, SkipPatternsParseAndBadOnesAreNamed) {
  EXPECT_EQ(parse_skip_pattern("3>6", 11, "model.skips"), (std::vector<SkipConnection>{{3, 6}}));
  EXPECT_TRUE(parse_skip_pattern("", 11, "model.skips").empty());
  const auto unet = parse_skip_pattern("5>6 4>7 3>8 2>9 1>10 0>11", 12, "model.skips");
  ASSERT_EQ(unet.size(), 6u);
  EXPECT_TRUE(unet[5] == (SkipConnection{0, 11}));
  for (const auto& [text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"6>3", "'6>3' is not a skip from>to between layers 0 <= from < to < 11"},
           {"3>11", "'3>11' is not a skip"},
           {"3-6", "'3-6' is not a skip"},
           {"3>", "'3>' is not a skip"},
           {"-1>2", "'-1>2' is not a skip"},
           {"1>2 1>2", "names the skip 1>2 twice"}}) {
    try {
      parse_skip_pattern(text, 11, "model.skips");
      ADD_FAILURE() << text << " parsed";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("model.skips: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
  auto c = small_config();
  c.skips = parse_skip_pattern("2>3 1>4 0>5", 6, "test");
  c.scalar_padding = 0;
  Record50 model(c);
  const auto s = model->scalars.detach();
  ASSERT_EQ(s.numel(), 4 * 6 + 2 + 3);
  EXPECT_TRUE(torch::equal(s.narrow(0, 4 * 6, 5), torch::tensor({0.0f, 0.5f, -1.5f, -1.5f, -1.5f})));
}

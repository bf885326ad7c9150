// The record-29 model (models/record29.h) against tests/reference/record29.py,
// an independent PyTorch transcription of record 29's GPT
// (KellerJordan/modded-nanogpt, records/track_1_short/2025-09-03_FA3) that
// attends through a dense boolean mask: the same weights (safetensors, the
// record's state_dict names) and the same packed batch must give the same
// summed loss and every gradient to 1e-5 relative in fp32, and a reference
// with a wrong window, a missing value embedding or the gate on the wrong
// input must not. Also: the record's names load into the record's module
// with load_state_dict(strict=True) and come back unchanged, the patterns
// parse as the record's, and the model's structure at init.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "models/record29.h"
#include "tests/python_reference.h"
#include "tests/record29_small.h"
#include "tests/test_helpers.h"
#include "trainer/base/config_error.h"
#include "trainer/io/safetensors.h"

using namespace muonrun;
using tests::fmt;
using tests::rel_error;
using tests::Tensors;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kLong = 48, kShort = 16;

// A packed sequence of 200 tokens: documents of 50, 80, 1 and 69 tokens (the
// second starts in the first block of 128 and runs past it; a 1-token
// document; the longest is longer than the long window).
torch::Tensor doc_offsets() { return torch::tensor({0, 50, 130, 131, 200}, torch::kInt); }

std::string config_json(const Record29Config& c) {
  std::string ve, attention;
  for (int64_t i = 0; i < c.layers; ++i) {
    ve += (i ? ", " : "") + std::to_string(c.value_embed[i]);
    attention += std::string(i ? ", " : "") + (c.windows[i] == LayerWindow::none ? "false" : "true");
  }
  return "{\"vocab\": " + std::to_string(c.vocab_padded) + ", \"dim\": " + std::to_string(c.dim) +
         ", \"heads\": " + std::to_string(c.heads) + ", \"head_dim\": " + std::to_string(c.head_dim) +
         ", \"layers\": " + std::to_string(c.layers) + ", \"value_embed_layers\": [" + ve +
         "], \"attention_layers\": [" + attention + "], \"attn_scale\": " + std::to_string(c.attn_scale) +
         ", \"gate_dim\": " + std::to_string(c.gate_dim) + ", \"scalar_padding\": " + std::to_string(c.scalar_padding) +
         "}";
}

// Nothing at its default: the zero-initialised output projections, gates
// and head become non-zero, every lambda and skip weight gets a value of its
// own. The head is large enough that the soft-cap bends the logits.
void randomize(Record29& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    auto& p = item.value();
    if (item.key() == "scalars") p.copy_(torch::rand(p.sizes()) * 0.8 + 0.2);
    else if (item.key() == "lm_head.weight") p.normal_(0, 1.0);
    else if (p.dim() >= 2 && item.key().find("embed") == std::string::npos) p.uniform_(-0.15, 0.15);
    else p.normal_();
  }
}

struct Case {
  fs::path dir;
  Tensors ours;  // "loss" and "grad.<name>"
  std::vector<std::string> names;
};

// Builds the small model with random weights, writes weights, batch and
// config for the reference, and computes muonrun's loss and gradients.
// `fp8_head`: the training loss through the FP8 head, whose float8 weights
// need the head inside e4m3's range at the record's scale 2^-9 (|w| < 0.875).
Case make_case(const std::string& name, bool training = true, bool fp8_head = false) {
  torch::manual_seed(29);
  Record29Config config = tests::record29_small_config();
  config.fp8_head = fp8_head;
  Record29 model(config);
  randomize(model);
  if (fp8_head) {
    torch::NoGradGuard no_grad;
    model->lm_head->weight.mul_(0.1);
  }
  if (!training) model->eval();
  const auto cu = doc_offsets();
  const int64_t T = cu[-1].item<int>();
  auto inputs = torch::randint(config.vocab_padded, {T}, torch::kLong);
  auto targets = torch::randint(config.vocab_padded, {T}, torch::kLong);
  std::vector<int64_t> windows;
  for (auto w : config.windows) windows.push_back(w == LayerWindow::long_window ? kLong : kShort);
  Case c{tests::scratch_dir(name), {}, {}};
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  for (auto& item : model->named_parameters()) {
    weights.emplace_back(item.key(), item.value().detach());
    c.names.push_back(item.key());
  }
  save_safetensors((c.dir / "weights.safetensors").string(), weights);
  save_safetensors((c.dir / "batch.safetensors").string(), {{"inputs", inputs},
                                                            {"targets", targets},
                                                            {"cu_seqlens", cu},
                                                            {"windows", torch::tensor(windows, torch::kLong)}});
  std::ofstream(c.dir / "config.json") << config_json(config);
  auto loss = model->loss(inputs, targets, cu, kLong, kShort);
  c.ours["loss"] = loss.detach();
  if (training) {
    loss.backward();
    for (auto& item : model->named_parameters()) c.ours["grad." + item.key()] = item.value().grad().clone();
  }
  return c;
}

Tensors reference(const Case& c, const std::vector<std::string>& extra) {
  std::string failure;
  auto out = tests::run_model_reference("record29.py", c.dir, extra, failure);
  EXPECT_TRUE(failure.empty()) << failure;
  return out;
}

// fp32 against fp32, the same kinds of PyTorch kernels under both; only the
// order of operations differs (blocks of keys vs one dense mask, the chunked
// head vs one logits tensor).
constexpr double kTolerance = 1e-5;

}  // namespace

TEST(Record29, LossAndEveryGradientMatchTheRecordInPyTorch) {
  REQUIRE_PYTHON();
  const Case c = make_case("record29");
  const Tensors ref = reference(c, {});
  ASSERT_FALSE(ref.empty());
  double worst = 0;
  for (const auto& name : c.names) {
    const std::string key = "grad." + name;
    ASSERT_TRUE(ref.count(key)) << key << " missing from the reference";
    EXPECT_GT(ref.at(key).norm().item<double>(), 0) << name << ": a zero gradient tests nothing";
    const double e = rel_error(c.ours.at(key), ref.at(key));
    EXPECT_LT(e, kTolerance) << name;
    worst = std::max(worst, e);
  }
  const double loss_error = rel_error(c.ours.at("loss"), ref.at("loss"));
  EXPECT_LT(loss_error, kTolerance);
  std::cout << "[ record29 ] summed loss " << c.ours.at("loss").item<double>() << " vs "
            << ref.at("loss").item<double>() << " (relative " << fmt(loss_error) << "); worst gradient error "
            << fmt(worst) << " over " << c.names.size() << " tensors\n";
}

TEST(Record29, EvaluationLossIsTheMeanAndMatches) {
  REQUIRE_PYTHON();
  const Case c = make_case("record29_eval", /*training=*/false);
  const Tensors ref = reference(c, {"--eval"});
  ASSERT_FALSE(ref.empty());
  EXPECT_LT(rel_error(c.ours.at("loss"), ref.at("loss")), kTolerance);
  EXPECT_LT(c.ours.at("loss").item<double>(), 3 * std::log(256.0)) << "a mean, not a sum over 200 tokens";
}

// The FP8 head's training loss against the record's op (torch._scaled_mm on
// e4m3 operands, bf16 out) in the reference. Both quantise the same fp32
// head input, whose two computations differ by fp32 rounding; where that
// moves a value across an e4m3 rounding boundary, one element's product
// moves by an e4m3 step (1/16 of it), and the bf16 logits round again: the
// summed loss within 1e-4 relative (measured: equal). The control: the plain
// head's loss is farther off than that (measured 4.5e-4).
TEST(Record29, Fp8HeadLossMatchesTheRecordsOp) {
  REQUIRE_PYTHON();
  const Case c = make_case("record29_fp8", /*training=*/true, /*fp8_head=*/true);
  const Tensors ref = reference(c, {"--fp8-head"});
  ASSERT_FALSE(ref.empty());
  const double error = rel_error(c.ours.at("loss"), ref.at("loss"));
  EXPECT_LT(error, 1e-4);
  const Tensors plain = reference(c, {});
  ASSERT_FALSE(plain.empty());
  const double control = rel_error(c.ours.at("loss"), plain.at("loss"));
  EXPECT_GT(control, 1e-4) << "the tolerance cannot tell the FP8 head from the plain one";
  std::cout << "[ record29 ] FP8 head: summed loss " << c.ours.at("loss").item<double>() << " vs the record's op "
            << ref.at("loss").item<double>() << " (relative " << fmt(error) << "); against the plain head "
            << fmt(control) << "\n";
}

TEST(Record29, NegativeControlsFailTheComparison) {
  REQUIRE_PYTHON();
  const Case c = make_case("record29_controls");
  for (const std::string control : {"wrong-window", "no-value-embed", "gate-on-raw-input"}) {
    const Tensors ref = reference(c, {"--control", control});
    ASSERT_FALSE(ref.empty()) << control;
    const auto [worst, name] = tests::worst_error(c.ours, ref);
    EXPECT_GT(worst, 100 * kTolerance) << "--control " << control << " still matches";
    std::cout << "[ record29 ] --control " << control << ": worst error " << fmt(worst) << " (" << name << ")\n";
  }
}

TEST(Record29, WeightsLoadIntoTheRecordsModuleAndBack) {
  REQUIRE_PYTHON();
  const Case c = make_case("record29_state_dict");
  const std::string problem = tests::state_dict_round_trip("record29.py", c.dir);
  EXPECT_TRUE(problem.empty()) << problem;
}

// The record's names and shapes, and the record's structure at init: with
// the zero head every other gradient is zero, and the loss of T tokens is
// T ln(vocab) (notes of the record: "after step 1 only lm_head has moved").
TEST(Record29, NamesShapesAndTheZeroHeadAtInit) {
  Record29Config config = tests::record29_small_config();
  Record29 model(config);
  std::map<std::string, std::vector<int64_t>> expected{
      {"embed.weight", {256, 64}},          {"value_embeds.2.weight", {256, 64}},
      {"blocks.0.attn.qkvo_w", {4, 64, 64}}, {"blocks.0.attn.attn_gate.weight", {2, 12}},
      {"blocks.0.mlp.c_fc", {64, 256}},     {"blocks.5.mlp.c_proj", {64, 256}},
      {"lm_head.weight", {256, 64}},        {"scalars", {6 + 12 + 12 + 2}}};
  const auto params = model->named_parameters();
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(params.contains(name)) << name;
    EXPECT_EQ(params[name].sizes().vec(), shape) << name;
  }
  EXPECT_FALSE(params.contains("blocks.3.attn.qkvo_w")) << "layer 3 has no attention";
  const auto cu = doc_offsets();
  auto inputs = torch::randint(256, {200}, torch::kLong), targets = torch::randint(256, {200}, torch::kLong);
  auto loss = model->loss(inputs, targets, cu, kLong, kShort);
  EXPECT_NEAR(loss.item<double>(), 200 * std::log(256.0), 1e-3);
  loss.backward();
  for (const auto& item : model->named_parameters()) {
    const double norm = item.value().grad().norm().item<double>();
    if (item.key() == "lm_head.weight") EXPECT_GT(norm, 0);
    else EXPECT_EQ(norm, 0) << item.key();
  }
}

TEST(Record29, PatternsParseAndBadOnesAreNamed) {
  const auto w = parse_window_pattern("L S S S L S S - S S S L", 12, "model.windows");
  EXPECT_EQ(w, Record29Config().windows);
  EXPECT_EQ(parse_value_embed_pattern("0 1 2 - - - - - - 0 1 2", 12, "model.value_embeds"),
            Record29Config().value_embed);
  try {
    parse_window_pattern("L S X", 3, "model.windows");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.windows: 'X' is not L"), std::string::npos) << e.what();
  }
  try {
    parse_value_embed_pattern("0 1", 3, "model.value_embeds");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("names 2 layers, the model has 3"), std::string::npos) << e.what();
  }
}

// The training job end to end on the CPU: the loss falls, checkpoints resume
// bit for bit, the run directory holds what tools rely on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "models/safetensors.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/data/shard.h"
#include "trainer/json.h"
#include "trainer/train.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

fs::path test_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / "muonrun_test_train" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A learnable token stream over a 64-token vocabulary: mostly t -> (5t + 3) % 64,
// with one token in eight random, so the loss can fall well below ln(128).
void write_pattern_shards(const fs::path& dir) {
  torch::manual_seed(123);
  auto noise = torch::randint(64, {40000}, torch::kLong);
  std::vector<uint16_t> tokens(40000);
  uint16_t t = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    t = i % 8 == 0 ? static_cast<uint16_t>(noise[i].item<int64_t>()) : static_cast<uint16_t>((5 * t + 3) % 64);
    tokens[i] = t;
  }
  std::vector<uint16_t> first(tokens.begin(), tokens.begin() + 20000), second(tokens.begin() + 20000, tokens.end());
  write_shard((dir / "train_000000.bin").string(), first);
  write_shard((dir / "train_000001.bin").string(), second);
  write_shard((dir / "val_000000.bin").string(), std::vector<uint16_t>(tokens.begin() + 1000, tokens.begin() + 6000));
}

Config tiny_config(const fs::path& dir) {
  return load_config({}, {"model.vocab_size=64", "model.layers=2", "model.heads=2", "model.head_dim=16",
                          "model.dim=32", "model.seq_len=32", "train.micro_batch=4",
                          "train.batch_tokens=256", "train.steps=40", "train.val_every=20",
                          "train.val_tokens=512", "train.timing_warmup_steps=0",
                          "train.val_loss_target=0", "optim.adam.embed_lr=0.05",
                          "optim.adam.head_lr=0.01", "optim.muon.lr=0.02",
                          "data.train=" + (dir / "train_*.bin").string(),
                          "data.val=" + (dir / "val_*.bin").string(),
                          "run.dir=" + (dir / "run").string(), "run.log_level=warn"});
}

struct MetricLine {
  int64_t step;
  std::optional<double> train_loss, val_loss;
};

std::vector<MetricLine> read_metrics(const fs::path& path) {
  std::vector<MetricLine> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto v = json::parse(line, path.string());
    MetricLine m{v.find("step")->as_int64(), {}, {}};
    if (auto* t = v.find("train_loss")) m.train_loss = t->number;
    if (auto* t = v.find("val_loss")) m.val_loss = t->number;
    out.push_back(m);
  }
  return out;
}

}  // namespace

TEST(Train, LossFallsAndTheRunDirectoryHoldsItsFiles) {
  auto dir = test_dir("falls");
  write_pattern_shards(dir);
  auto config = tiny_config(dir);
  auto summary = run_training(config, {});
  EXPECT_EQ(summary.steps, 40);
  auto metrics = read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 41u);  // steps 0..40, one object each
  ASSERT_TRUE(metrics.front().val_loss);
  EXPECT_NEAR(*metrics.front().val_loss, std::log(128.0), 1e-4);  // zero head: uniform
  ASSERT_TRUE(metrics.back().val_loss && metrics.back().train_loss);
  EXPECT_LT(*metrics.back().val_loss, std::log(128.0) - 1.5);
  EXPECT_TRUE(metrics[20].val_loss.has_value());
  EXPECT_FALSE(metrics[21].val_loss.has_value());
  EXPECT_TRUE(fs::exists(dir / "run" / "config.yaml"));
  EXPECT_TRUE(fs::exists(dir / "run" / "log_rank0.txt"));
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints" / "step_000040" / "COMPLETE"));
  // The written config reproduces the run's config.
  EXPECT_EQ(flatten(load_config({(dir / "run" / "config.yaml").string()}, {})), flatten(config));
}

TEST(Train, ResumeContinuesBitForBit) {
  auto dir = test_dir("resume");
  write_pattern_shards(dir);
  auto config = tiny_config(dir);
  config.checkpoint.every = 15;
  config.checkpoint.keep_last = 5;
  run_training(config, {});
  auto uninterrupted = read_metrics(dir / "run" / "metrics.jsonl");
  auto final_weights = load_safetensors((dir / "run/checkpoints/step_000040/model.safetensors").string());

  // Pretend the run died after the checkpoint of step 30: drop what came later.
  fs::remove_all(dir / "run/checkpoints/step_000040");
  TrainOptions resume;
  resume.resume = true;
  run_training(config, resume);
  auto resumed = read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(resumed.size(), uninterrupted.size());
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].step, uninterrupted[i].step);
    EXPECT_EQ(resumed[i].train_loss, uninterrupted[i].train_loss) << "step " << resumed[i].step;
    EXPECT_EQ(resumed[i].val_loss, uninterrupted[i].val_loss) << "step " << resumed[i].step;
  }
  auto weights = load_safetensors((dir / "run/checkpoints/step_000040/model.safetensors").string());
  for (const auto& [name, t] : final_weights.tensors)
    EXPECT_TRUE(torch::equal(t, weights.tensors.at(name))) << name;
}

TEST(Train, ResumeRefusesAChangedModelUnlessForced) {
  auto dir = test_dir("refuse");
  write_pattern_shards(dir);
  auto config = tiny_config(dir);
  config.train.steps = 4;
  run_training(config, {});
  auto changed = config;
  changed.model.layers = 3;
  TrainOptions resume;
  resume.resume = true;
  try {
    run_training(changed, resume);
    FAIL() << "resume with another model was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers: 2 -> 3"), std::string::npos) << e.what();
  }
  // A changed optimizer setting is allowed (it does not change the run's data or shapes).
  auto tuned = config;
  tuned.optim.muon.lr = 0.01;
  EXPECT_NO_THROW(run_training(tuned, resume));
}

TEST(Train, StopsAtTheValidationTarget) {
  auto dir = test_dir("target");
  write_pattern_shards(dir);
  auto config = tiny_config(dir);
  config.train.val_every = 5;
  config.train.val_loss_target = 4.0;  // below ln(128) = 4.85, reached early
  auto summary = run_training(config, {});
  EXPECT_TRUE(summary.reached_target);
  EXPECT_LT(summary.steps, 40);
  EXPECT_LE(*summary.val_loss, 4.0);
}

TEST(Train, RejectsABatchThatDoesNotDivide) {
  auto dir = test_dir("divide");
  write_pattern_shards(dir);
  auto config = tiny_config(dir);
  config.train.batch_tokens = 300;
  try {
    run_training(config, {});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_tokens (300) must be a multiple"), std::string::npos);
  }
}

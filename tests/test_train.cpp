// The training job end to end on the CPU: the loss falls, checkpoints resume
// bit for bit, the run directory holds what tools rely on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "trainer/io/safetensors.h"
#include "trainer/io/checkpoint.h"
#include "trainer/config/config.h"
#include "trainer/data/shard.h"
#include "trainer/base/json.h"
#include "trainer/run/device.h"
#include "trainer/run/train.h"
#include "tests/pattern_shards.h"
#include "tests/run_results.h"
#include "tests/test_helpers.h"

using namespace muonrun;
using muonrun::tests::read_metrics;
namespace fs = std::filesystem;

namespace {

fs::path test_dir(const std::string& name) {
  auto dir = tests::scratch_dir("train_" + name);
  tests::write_pattern_shards(dir);
  return dir;
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

}  // namespace

TEST(Train, LossFallsAndTheRunDirectoryHoldsItsFiles) {
  auto dir = test_dir("falls");
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
  auto config = tiny_config(dir);
  config.train.batch_tokens = 300;
  try {
    run_training(config, {});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_tokens (300) must be a multiple"), std::string::npos);
  }
}

// CUDA graphs need a CUDA device: on the CPU the key is refused by name
// before any step, and the run directory keeps no half-written metrics.
TEST(Train, CudaGraphsOnTheCpuAreRefusedByName) {
  auto dir = test_dir("cuda_graphs");
  auto config = tiny_config(dir);
  config.train.cuda_graphs = true;
  try {
    run_training(config, {});
    FAIL() << "train.cuda_graphs on the CPU was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.cuda_graphs needs a CUDA device"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "run" / "metrics.jsonl"));
}

// A rank's GPU: its local rank among the visible ones, or the only one when
// a scheduler shows each task just its own (Slurm's --gpus-per-task=1).
TEST(Device, LocalRankPicksItsGpuOrTheOnlyOneBoundToIt) {
  EXPECT_EQ(gpu_for_local_rank(0, 8), 0);
  EXPECT_EQ(gpu_for_local_rank(7, 8), 7);
  EXPECT_EQ(gpu_for_local_rank(5, 1), 0);  // one GPU per task: it is device 0
  try {
    gpu_for_local_rank(3, 2);
    FAIL() << "local rank 3 of 2 visible GPUs was given one";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("only 2 are visible"), std::string::npos) << e.what();
  }
}

#ifndef MUONRUN_WITH_CUDA
// A build without CUDA never trains a GPU config on the host: the key and
// the binary are named.
TEST(Device, CpuBuildRefusesRunDeviceCudaByKeyAndBinary) {
  try {
    resolve_device(RunDevice::cuda, 0);
    FAIL() << "run.device=cuda was accepted by a build without CUDA";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("run.device is cuda"), std::string::npos) << message;
    EXPECT_NE(message.find(fs::read_symlink("/proc/self/exe").string()), std::string::npos) << message;
  }
  EXPECT_EQ(resolve_device(RunDevice::automatic, 0), torch::Device(torch::kCPU));
}
#endif

// Checkpoint directories are step_<digits>, zero-padded to six digits but
// longer past step 999,999: discovery (--resume) and rotation (keep_last,
// keep_every) must see them all and order them by step, not by name.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "tests/pattern_shards.h"
#include "tests/test_helpers.h"
#include "trainer/io/checkpoint.h"
#include "trainer/config/config.h"
#include "trainer/run/train.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

Config tiny_config(const fs::path& dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides = {
      "model.vocab_size=64", "model.layers=1", "model.heads=2", "model.head_dim=8", "model.dim=16",
      "model.seq_len=16", "train.micro_batch=2", "train.batch_tokens=32", "train.val_every=0",
      "train.val_tokens=32", "train.val_loss_target=0", "train.timing_warmup_steps=0",
      "data.train=" + (dir / "train_*.bin").string(), "data.val=" + (dir / "val_*.bin").string(),
      "run.dir=" + (dir / "run").string(), "run.log_level=warn"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return load_config({}, overrides);
}

// Writes the checkpoint of each step in turn, as a run checkpointing at
// those steps would (rotating after each).
void save_steps(const Config& config, const std::vector<int64_t>& steps) {
  GPT model(config.model);
  Optimizer optimizer(*model, config, nullptr);
  for (auto& p : model->parameters()) p.mutable_grad() = torch::randn_like(p);
  optimizer.step(0);
  for (int64_t step : steps) {
    TrainerState state;
    state.step = step;
    save_checkpoint(config.run.dir, config, *model, optimizer, state, nullptr);
  }
}

std::vector<std::string> checkpoint_names(const fs::path& run_dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run_dir / "checkpoints")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST(CheckpointNames, StepsPastAMillionAreFoundAndLoad) {
  const fs::path dir = tests::scratch_dir("checkpoint_names_found");
  const Config config = tiny_config(dir, {"checkpoint.keep_last=10"});
  const fs::path root = dir / "run" / "checkpoints";
  save_steps(config, {40});
  // The old six-digit name still loads, on its own.
  ASSERT_EQ(find_latest_checkpoint(config.run.dir), (root / "step_000040").string());
  {
    GPT model(config.model);
    Optimizer optimizer(*model, config, nullptr);
    EXPECT_EQ(load_checkpoint((root / "step_000040").string(), *model, optimizer).step, 40);
  }
  save_steps(config, {999999, 1234567});
  EXPECT_EQ(find_latest_checkpoint(config.run.dir), (root / "step_1234567").string());
  GPT model(config.model);
  Optimizer optimizer(*model, config, nullptr);
  EXPECT_EQ(load_checkpoint((root / "step_1234567").string(), *model, optimizer).step, 1234567);

  // Not checkpoints: a directory being assembled, names that are not
  // step_<digits>, a step no int64 holds (ignored, not an exception).
  for (const char* name : {"step_2000000.tmp", "step_", "step_12x4567", "step_+2000000", "step_ 2000000",
                           "step_99999999999999999999999", "Step_3000000", "xstep_3000000"}) {
    fs::create_directories(root / name);
    std::ofstream(root / name / "COMPLETE") << "1\n";
  }
  EXPECT_EQ(find_latest_checkpoint(config.run.dir), (root / "step_1234567").string());
}

TEST(CheckpointNames, RotationOrdersStepsNumerically) {
  const fs::path dir = tests::scratch_dir("checkpoint_names_rotation");
  const Config config = tiny_config(dir, {"checkpoint.keep_last=2", "checkpoint.keep_every=1000000"});
  save_steps(config, {40, 999999, 1000000, 1234567, 2000001});
  // The newest two, and the multiple of keep_every.
  EXPECT_EQ(checkpoint_names(dir / "run"),
            (std::vector<std::string>{"step_1000000", "step_1234567", "step_2000001"}));
}

TEST(CheckpointNames, ResumeContinuesFromAStepPastAMillion) {
  const fs::path dir = tests::scratch_dir("checkpoint_names_resume");
  tests::write_pattern_shards(dir);
  const Config config = tiny_config(dir, {"train.steps=1234569"});
  // Only this one: were an older one beside it and the big one overlooked,
  // the run would resume from the older one and train for a million steps.
  save_steps(config, {1234567});
  TrainOptions resume;
  resume.resume = true;
  const TrainSummary summary = run_training(config, resume);
  EXPECT_EQ(summary.steps, 1234569);
  EXPECT_EQ(find_latest_checkpoint(config.run.dir), (dir / "run/checkpoints/step_1234569").string());
}

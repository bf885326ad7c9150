// Token ids the model has no embedding row for: training refuses a shard
// holding one with an error naming the shard, the offset, the id and the
// model's vocab_size, instead of indexing past the embedding (a device-side
// assert on CUDA) or, below the padded row count, silently training on it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_helpers.h"
#include "trainer/config/config.h"
#include "trainer/data/shard.h"
#include "trainer/run/train.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

// `n` tokens of the learnable pattern of tests/pattern_shards.h (ids < 64).
std::vector<uint16_t> pattern(size_t n) {
  std::vector<uint16_t> tokens(n);
  uint16_t t = 0;
  for (size_t i = 0; i < n; ++i) tokens[i] = t = static_cast<uint16_t>((5 * t + 3) % 64);
  return tokens;
}

// A tiny run over dir/train_*.bin and dir/val_*.bin, vocab_size 64. The
// embedding has 128 rows (vocab_multiple), so ids 64..127 would not even crash.
Config tiny_config(const fs::path& dir) {
  return load_config({}, {"model.vocab_size=64", "model.layers=1", "model.heads=2", "model.head_dim=8",
                          "model.dim=16", "model.seq_len=16", "train.micro_batch=4", "train.batch_tokens=64",
                          "train.steps=30", "train.val_every=0", "train.val_tokens=64",
                          "train.timing_warmup_steps=0", "train.val_loss_target=0",
                          "data.train=" + (dir / "train_*.bin").string(),
                          "data.val=" + (dir / "val_*.bin").string(), "run.dir=" + (dir / "run").string(),
                          "run.log_level=warn"});
}

testing::AssertionResult names(const std::string& error, const std::vector<std::string>& parts) {
  if (error.empty()) return testing::AssertionFailure() << "training did not fail";
  for (const auto& part : parts)
    if (error.find(part) == std::string::npos)
      return testing::AssertionFailure() << "does not say '" << part << "': " << error;
  return testing::AssertionSuccess();
}

}  // namespace

TEST(TrainVocabulary, AnIdBeyondVocabSizeInATrainingShardStopsTheRun) {
  const fs::path dir = tests::scratch_dir("train_vocab_train");
  auto train = pattern(4000);
  train[1234] = 100;  // >= vocab_size 64, < the 128 padded embedding rows
  const std::string shard = (dir / "train_000000.bin").string();
  write_shard(shard, train);
  write_shard((dir / "val_000000.bin").string(), pattern(1000));
  const std::string error = tests::error_of([&] { run_training(tiny_config(dir), {}); });
  EXPECT_TRUE(names(error, {shard, "token 100 at token 1234", "vocab_size 64"}));
}

TEST(TrainVocabulary, AnIdBeyondVocabSizeInAValidationShardStopsTheRun) {
  const fs::path dir = tests::scratch_dir("train_vocab_val");
  write_shard((dir / "train_000000.bin").string(), pattern(4000));
  auto val = pattern(1000);
  val[17] = 65535;  // past every embedding row
  const std::string shard = (dir / "val_000000.bin").string();
  write_shard(shard, val);
  const std::string error = tests::error_of([&] { run_training(tiny_config(dir), {}); });
  EXPECT_TRUE(names(error, {shard, "token 65535 at token 17", "vocab_size 64"}));
}

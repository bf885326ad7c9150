// The data-parallel loader: shard bookkeeping, batch slicing, wrap-around.
#include "trainer/data/data_loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "trainer/data/shard_glob.h"

namespace muonrun {

DataLoader::DataLoader(const std::string& pattern, int64_t micro_batch, int64_t seq_len, int rank,
                       int world, int64_t vocab_size)
    : pattern_(pattern), rank_(rank), vocab_size_(vocab_size) {
  if (micro_batch < 1 || seq_len < 1)
    throw std::invalid_argument("data: micro batch " + std::to_string(micro_batch) +
                                " and sequence length " + std::to_string(seq_len) +
                                " must be positive");
  if (vocab_size < 1 || vocab_size > 65536)
    throw std::invalid_argument("data: vocabulary size " + std::to_string(vocab_size) +
                                " is not in 1..65536 (shards hold uint16 tokens)");
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("data: rank " + std::to_string(rank) + " is not in 0.." +
                                std::to_string(world - 1));
  // Checked by division so that the products cannot overflow.
  if (micro_batch > kMaxShardTokens / seq_len || micro_batch * seq_len > kMaxShardTokens / world)
    throw std::invalid_argument("data: a global batch of " + std::to_string(world) + " x " +
                                std::to_string(micro_batch) + " x " + std::to_string(seq_len) +
                                " tokens is larger than any shard can hold");
  local_tokens_ = micro_batch * seq_len;
  global_tokens_ = local_tokens_ * world;

  int64_t largest = 0, total = 0;
  std::vector<std::string> files = glob_shards(pattern);
  for (const std::string& file : files) {
    ShardReader shard(file);
    largest = std::max(largest, shard.num_tokens());
    if (shard.num_tokens() < global_tokens_ + 1) {
      spdlog::warn("data: skipping {}: {} tokens, fewer than one global batch ({} + 1)", file,
                   shard.num_tokens(), global_tokens_);
      continue;
    }
    total += shard.num_tokens();
    shards_.push_back(std::move(shard));
  }
  if (shards_.empty())
    throw std::runtime_error("data: none of the " + std::to_string(files.size()) +
                             " shards matching '" + pattern + "' holds one global batch of " +
                             std::to_string(global_tokens_) + " + 1 tokens (the largest has " +
                             std::to_string(largest) + ")");
  scratch_.resize(static_cast<size_t>(local_tokens_ + 1));
  spdlog::info("data: {} shards, {} tokens from '{}'", shards_.size(), total, pattern);
}

void DataLoader::next_batch(int64_t* buf) {
  const ShardReader& shard = shards_[position_.shard];
  const int64_t offset = position_.offset + rank_ * local_tokens_;
  shard.read(offset, local_tokens_ + 1, scratch_.data());
  // Widening and the largest id in one pass without early exit, which the
  // compiler vectorises; the offending token is looked for only when there is one.
  uint16_t largest = 0;
  for (size_t i = 0; i < scratch_.size(); ++i) {
    buf[i] = scratch_[i];
    largest = std::max(largest, scratch_[i]);
  }
  if (largest >= vocab_size_) {
    auto bad = std::find_if(scratch_.begin(), scratch_.end(),
                            [&](uint16_t token) { return token >= vocab_size_; });
    throw std::runtime_error(shard.path() + ": token " + std::to_string(*bad) + " at token " +
                             std::to_string(offset + (bad - scratch_.begin())) +
                             " is outside the model's vocabulary (vocab_size " +
                             std::to_string(vocab_size_) +
                             "): a shard of another tokenizer, or model.vocab_size too small?");
  }
  // Move on now, so that position() always names a batch that can be read.
  position_.offset += global_tokens_;
  if (position_.offset + global_tokens_ + 1 > shard.num_tokens()) {
    position_.offset = 0;
    if (++position_.shard == static_cast<int64_t>(shards_.size())) {
      position_.shard = 0;
      ++position_.epoch;
      spdlog::info("data: epoch {} of '{}' done, starting over", position_.epoch, pattern_);
    }
  }
}

void DataLoader::restore(const LoaderPosition& p) {
  const std::string where = "data: cannot restore position (shard " + std::to_string(p.shard) +
                            ", offset " + std::to_string(p.offset) + ", epoch " +
                            std::to_string(p.epoch) + ") on '" + pattern_ + "': ";
  if (p.shard < 0 || p.shard >= static_cast<int64_t>(shards_.size()))
    throw std::runtime_error(where + "there are " + std::to_string(shards_.size()) +
                             " usable shards");
  const int64_t last = shards_[p.shard].num_tokens() - global_tokens_ - 1;
  if (p.offset < 0 || p.offset > last)
    throw std::runtime_error(where + "the offset must be in 0.." + std::to_string(last) + " in " +
                             shards_[p.shard].path());
  if (p.epoch < 0) throw std::runtime_error(where + "negative epoch");
  position_ = p;
}

}  // namespace muonrun

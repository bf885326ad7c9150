// Token shards with a learnable pattern over a 64-token vocabulary, for tests
// that train: mostly t -> (5t + 3) % 64, with one token in eight random, so
// the loss can fall well below ln(vocab) within a few dozen steps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "trainer/data/shard.h"

namespace muonrun::tests {

// Writes dir/train_000000.bin, dir/train_000001.bin (20,000 tokens each) and
// dir/val_000000.bin (5,000 tokens).
inline void write_pattern_shards(const std::filesystem::path& dir) {
  std::vector<uint16_t> tokens(40000);
  uint32_t lcg = 12345;
  uint16_t t = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    lcg = lcg * 1664525u + 1013904223u;
    t = i % 8 == 0 ? static_cast<uint16_t>((lcg >> 16) % 64) : static_cast<uint16_t>((5 * t + 3) % 64);
    tokens[i] = t;
  }
  write_shard((dir / "train_000000.bin").string(), {tokens.begin(), tokens.begin() + 20000});
  write_shard((dir / "train_000001.bin").string(), {tokens.begin() + 20000, tokens.end()});
  write_shard((dir / "val_000000.bin").string(), {tokens.begin() + 1000, tokens.begin() + 6000});
}

}  // namespace muonrun::tests

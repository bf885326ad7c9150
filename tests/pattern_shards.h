// Token shards with a learnable pattern over a 64-token vocabulary, for tests
// that train: mostly t -> (5t + 3) % 64, with one token in eight random, so
// the loss can fall well below ln(vocab) within a few dozen steps; and the
// same pattern in documents, for the packed-document recipes.
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

// Documents of 8 to 150 tokens, each its <|endoftext|> (50256) and then the
// pattern t -> (5t + 3) % 64 from a random start (learnable inside a
// document, not across one): train_000000.bin, train_000001.bin (15,000
// tokens each), val_000000.bin (5,000).
inline void write_document_shards(const std::filesystem::path& dir) {
  constexpr uint16_t kBos = 50256;
  std::vector<uint16_t> tokens;
  uint32_t lcg = 2029;
  auto next = [&] { return (lcg = lcg * 1664525u + 1013904223u) >> 8; };
  while (tokens.size() < 35000) {
    const uint32_t length = 8 + next() % 143;
    tokens.push_back(kBos);
    uint16_t t = static_cast<uint16_t>(next() % 64);
    for (uint32_t i = 1; i < length; ++i, t = static_cast<uint16_t>((5 * t + 3) % 64)) tokens.push_back(t);
  }
  write_shard((dir / "train_000000.bin").string(), {tokens.begin(), tokens.begin() + 15000});
  write_shard((dir / "train_000001.bin").string(), {tokens.begin() + 15000, tokens.begin() + 30000});
  write_shard((dir / "val_000000.bin").string(), {tokens.begin() + 30000, tokens.begin() + 35000});
}

}  // namespace muonrun::tests

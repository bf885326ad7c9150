// The CPU-sized record-50 model the tests share (test_record50,
// test_record50_optim): every feature of the record at a small size. 6
// layers, a layer without attention, two long-window layers with the key
// offset, value embeddings (one table used twice), the gated skip 2 -> 3,
// the backout of layer 4, smear, and windows of 16-token blocks going
// 1 -> 3 -> 4 (extension) -> 6 (final validation).
#pragma once

#include "models/record50.h"

namespace muonrun::tests {

inline Record50Config record50_small_config() {
  Record50Config c;
  c.vocab_padded = 256;
  c.dim = 64;
  c.heads = 2;
  c.head_dim = 32;
  c.layers = 6;
  c.windows = parse_window_pattern("S S L - S L", 6, "test");
  c.value_embed = parse_value_embed_pattern("1 2 - - 0 1", 6, "test");
  c.mlp = parse_mlp_pattern("", 6, "test");
  c.skips = parse_skip_pattern("2>3", 6, "test");
  c.backout_layer = 4;
  c.window_block = 16;
  c.window_schedule = {1, 3};
  c.extension_window = 4;
  c.final_window = 6;
  c.scalar_padding = 5;  // 27 used
  return c;
}

}  // namespace muonrun::tests

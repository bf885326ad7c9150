// The CPU-sized record-29 model the tests share (test_record29,
// test_record29_optim): every feature of the record at a small size. 6
// layers (3 encoder blocks pushing, 3 decoder blocks popping), all three
// value-embedding tables (one used twice), long and short windows, a layer
// without attention, padding in `scalars`.
#pragma once

#include "models/record29.h"

namespace muonrun::tests {

inline Record29Config record29_small_config() {
  Record29Config c;
  c.vocab_padded = 256;
  c.dim = 64;
  c.heads = 2;
  c.head_dim = 32;
  c.layers = 6;
  c.value_embed = parse_value_embed_pattern("0 1 2 - - 0", 6, "test");
  c.windows = parse_window_pattern("L S S - S L", 6, "test");
  c.scalar_padding = 2;
  return c;
}

}  // namespace muonrun::tests

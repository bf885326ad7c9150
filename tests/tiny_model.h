// The smallest GPT the model and optimizer suites build: every kind of
// parameter of the record-11 network, small enough for float64 references.
#pragma once

#include <cstdint>

#include "models/model_config.h"

namespace muonrun::tests {

inline ModelConfig tiny_model_config(int64_t layers = 2, int64_t vocab_size = 50, int64_t seq_len = 8) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.layers = layers;
  c.heads = 2;
  c.head_dim = 8;
  c.dim = 16;
  c.seq_len = seq_len;
  return c;
}

}  // namespace muonrun::tests

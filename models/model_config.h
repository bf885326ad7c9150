// The model's config: the shape of the record-11 GPT (models/gpt.h).
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace muonrun {

struct ModelConfig {
  int64_t vocab_size = 50257;
  int64_t vocab_multiple = 128;  // embedding and head are padded to a multiple
  int64_t layers = 12;
  int64_t heads = 6;
  int64_t head_dim = 128;
  int64_t dim = 768;
  int64_t mlp_ratio = 4;
  int64_t seq_len = 1024;
  double rope_base = 10000;
  double logit_softcap = 30;
};

}  // namespace muonrun

// Text generation from a checkpoint: `muonrun sample`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/language_model.h"

namespace muonrun {

struct SampleOptions {
  // A checkpoint directory, or a run directory (its newest complete checkpoint).
  std::string checkpoint;
  std::string prompt;
  std::string vocab_dir = "data/gpt2";
  int64_t max_tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 200;       // 0: the whole vocabulary
  int64_t seed = 0;
  std::string device = "auto";
};

// Continues `tokens` (one document) by `count` tokens: softmax(logits /
// temperature) over the top_k tokens of the real vocabulary (`vocab_size`,
// never the padding rows), sampled with `generator`. The context is cropped
// to its last `context` tokens (model.seq_len).
std::vector<int64_t> generate(LanguageModelImpl& model, int64_t vocab_size, int64_t context,
                              std::vector<int64_t> tokens, int64_t count, double temperature, int64_t top_k,
                              torch::Generator& generator);

// Loads the checkpoint and tokenizer, returns prompt + continuation as text.
std::string run_sampling(const SampleOptions& options);

}  // namespace muonrun

// The model's config: which recipe's network (model.recipe: record 11's GPT,
// models/gpt.h, or record 29's, models/record29.h), its shape, the record-29
// features it may switch off for ablations, and which implementation of the
// element-wise work runs (models/elementwise_ops.h).
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/base/choice.h"

namespace muonrun {

// model.kernels: the fused element-wise ops (RMSNorm, QK-norm + rotary,
// ReLU^2, the residual mixes folded into the norms, the head's soft-capped
// cross-entropy; models/elementwise_ops.h) or the composite LibTorch ops they
// replace (the reference). `auto` ("automatic" here) is fused on both
// devices: the CUDA kernels matched the CPU on an H200 and made record 11's
// step 2.2x faster (2026-12-04, bench/RESULTS.md); until then it meant the
// reference on CUDA.
enum class Kernels { automatic, fused, reference };
inline constexpr Choice<Kernels> kKernelsChoices[] = {
    {"auto", Kernels::automatic}, {"fused", Kernels::fused}, {"reference", Kernels::reference}};
constexpr const auto& choices(Kernels) { return kKernelsChoices; }
static_assert(choices_in_enum_order(kKernelsChoices));

inline bool fused_kernels(Kernels kernels) { return kernels != Kernels::reference; }

// model.recipe: the network of one speedrun record, each in its own file.
enum class Recipe { record11, record29 };
inline constexpr Choice<Recipe> kRecipeChoices[] = {{"record11", Recipe::record11}, {"record29", Recipe::record29}};
constexpr const auto& choices(Recipe) { return kRecipeChoices; }
static_assert(choices_in_enum_order(kRecipeChoices));

struct ModelConfig {
  Recipe recipe = Recipe::record11;
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
  Kernels kernels = Kernels::automatic;
  // Record 29 only (models/record29.h parses the patterns when it builds the
  // model and names the key of a bad one).
  std::string windows = "L S S S L S S - S S S L";
  std::string value_embeds = "0 1 2 - - - - - - 0 1 2";
  std::string window_schedule = "3 7 11";
  int64_t window_block = 128;
  double attn_scale = 0.12;
  int64_t attn_gate_dim = 12;
  bool fp8_head = true;
};

// Vocabulary rounded up to a multiple of `vocab_multiple` (50257 -> 50304).
inline int64_t padded_vocab(const ModelConfig& config) {
  return (config.vocab_size + config.vocab_multiple - 1) / config.vocab_multiple * config.vocab_multiple;
}

}  // namespace muonrun

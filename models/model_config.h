// The model's config: which recipe's network (model.recipe: record 11's GPT,
// models/gpt.h, record 29's, models/record29.h, or record 50's,
// models/record50.h), its shape, the features of the packed-document
// recipes that switch for ablations, and which implementation of the
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
enum class Recipe { record11, record29, record50 };
inline constexpr Choice<Recipe> kRecipeChoices[] = {
    {"record11", Recipe::record11}, {"record29", Recipe::record29}, {"record50", Recipe::record50}};
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
  // Records 29 and 50 (models/record29.h and record50.h parse the patterns
  // when they build the model and name the key of a bad one).
  std::string windows = "L S S S L S S - S S S L";
  std::string value_embeds = "0 1 2 - - - - - - 0 1 2";
  std::string window_schedule = "3 7 11";
  int64_t window_block = 128;
  double attn_scale = 0.12;
  int64_t attn_gate_dim = 12;
  bool fp8_head = true;
  // Record 50 only (models/record50.h); each off by default, and the other
  // recipes refuse them (record50_key_in_use).
  bool smear = false;            // record 34's smear of the previous token's embedding
  bool key_offset = false;       // record 49's partial key offset on the long-window layers
  bool yarn = false;             // record 31's YaRN when the long window grows
  std::string skips;             // records 32 and 45's gated skips, "from>to ..." ("": none)
  int64_t backout_layer = -1;    // record 40's backout of this layer's output (-1: none)
  int64_t extension_window = 0;  // long window (blocks) of schedule.extension_steps (0: the schedule's last)
  int64_t final_window = 0;      // long window (blocks) of the final validation (0: training's last)
  std::string mlps;              // per layer M or - (record 30: "- M M ..."); "": an MLP in every layer
};

// The first record-50 key a config sets, or "" (for the recipes that do not
// have those features, which refuse them rather than ignore them).
inline std::string record50_key_in_use(const ModelConfig& c) {
  if (c.smear) return "model.smear";
  if (c.key_offset) return "model.key_offset";
  if (c.yarn) return "model.yarn";
  if (!c.skips.empty()) return "model.skips";
  if (c.backout_layer >= 0) return "model.backout_layer";
  if (c.extension_window > 0) return "model.extension_window";
  if (c.final_window > 0) return "model.final_window";
  if (!c.mlps.empty()) return "model.mlps";
  return "";
}

// Vocabulary rounded up to a multiple of `vocab_multiple` (50257 -> 50304).
inline int64_t padded_vocab(const ModelConfig& config) {
  return (config.vocab_size + config.vocab_multiple - 1) / config.vocab_multiple * config.vocab_multiple;
}

}  // namespace muonrun

// The model's config: the shape of the record-11 GPT (models/gpt.h) and which
// implementation of its element-wise work runs (models/fused_ops.h).
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/base/choice.h"

namespace muonrun {

// model.kernels: the fused element-wise ops (RMSNorm, QK-norm + rotary,
// ReLU^2, the residual mixes folded into the norms; models/fused_ops.h) or the
// composite LibTorch ops they replace (the reference). `auto` ("automatic"
// here) is fused on the CPU and the reference on CUDA, until a GPU run has
// verified the CUDA kernels (README, "Fused kernels").
enum class Kernels { automatic, fused, reference };
inline constexpr Choice<Kernels> kKernelsChoices[] = {
    {"auto", Kernels::automatic}, {"fused", Kernels::fused}, {"reference", Kernels::reference}};
constexpr const auto& choices(Kernels) { return kKernelsChoices; }
static_assert(choices_in_enum_order(kKernelsChoices));

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
  Kernels kernels = Kernels::automatic;
};

// Vocabulary rounded up to a multiple of `vocab_multiple` (50257 -> 50304).
inline int64_t padded_vocab(const ModelConfig& config) {
  return (config.vocab_size + config.vocab_multiple - 1) / config.vocab_multiple * config.vocab_multiple;
}

}  // namespace muonrun

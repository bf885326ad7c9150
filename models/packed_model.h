// What the packed-document recipes (records 29 and 50 of
// KellerJordan/modded-nanogpt, models/record29.h and record50.h) build their
// networks with besides the named blocks: the FLOP count of windowed
// attention that MFU is measured with, and the records' uniform init.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/language_model.h"
#include "models/layer_patterns.h"

namespace muonrun {

// FLOPs per token (models/language_model.h) of a packed-document model:
// every parameter but the embedding tables (embed, value_embeds) in matrix
// products, and each attention layer's keys within its window.
FlopsPerToken windowed_flops_per_token(const torch::nn::Module& model, const std::vector<LayerWindow>& windows,
                                       int64_t channels, int64_t long_window, int64_t short_window, int64_t seq_len);

// The records' init of q, k, v and c_fc: U(-sqrt(3) std, sqrt(3) std) with
// std = 0.5 / sqrt(dim) ("0.5 is a bit better than the default 1/sqrt(3)").
torch::Tensor speedrun_uniform_init(torch::IntArrayRef sizes, int64_t dim);

}  // namespace muonrun

// The per-layer patterns of the packed-document recipes (records 29 and 50
// of KellerJordan/modded-nanogpt), as config files spell them: which window
// each layer attends over, which value-embedding table it mixes into its
// values, and the long window's schedule in blocks. Parsed once when a
// model is built; a bad pattern throws ConfigError naming its key.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/language_model.h"
#include "models/model_config.h"

namespace muonrun {

// The window a layer uses: the long or the short one of the current step, or
// no attention at all (record 29: layer 7; record 50: layer 6).
enum class LayerWindow { long_window, short_window, none };

// "L S S S L S S - S S S L" (L, S or -, separated by spaces) -> windows;
// "0 1 2 - ... 0 1 2" -> value_embed; "3 7 11" -> window_schedule (positive
// block counts). Throw naming `key` and the token when the text does not
// describe `layers` layers (any count of at least one, for the schedule).
std::vector<LayerWindow> parse_window_pattern(const std::string& text, int64_t layers, const std::string& key);
std::vector<int> parse_value_embed_pattern(const std::string& text, int64_t layers, const std::string& key);
std::vector<int64_t> parse_window_schedule(const std::string& text, const std::string& key);
// "- M M ..." (M: the layer has its MLP, -: not) -> one flag per layer; ""
// -> every layer has one.
std::vector<bool> parse_mlp_pattern(const std::string& text, int64_t layers, const std::string& key);

// A gated skip (record 32's U-net gates, record 45's single skip): layer
// `to`'s input adds sigmoid(lambda) times layer `from`'s output.
struct SkipConnection {
  int64_t from, to;
  bool operator==(const SkipConnection& o) const { return from == o.from && to == o.to; }
};
// "3>6" or "5>6 4>7 ..." -> the skips, each 0 <= from < to < layers and
// none named twice; "" -> none.
std::vector<SkipConnection> parse_skip_pattern(const std::string& text, int64_t layers, const std::string& key);

// The shape both packed-document recipes need: heads x head_dim = dim (their
// merged qkvo_w is four dim x dim matrices), head_dim a multiple of 4 (the
// half-truncated rotary, the key offset), the gates' input within dim.
// Throws ConfigError naming the key and `recipe`.
void check_packed_model_shape(const ModelConfig& model, const char* recipe);

// FLOPs per token (models/language_model.h) of a packed-document model:
// every parameter but the embedding tables (embed, value_embeds) in matrix
// products, and each attention layer's keys within its window.
FlopsPerToken windowed_flops_per_token(const torch::nn::Module& model, const std::vector<LayerWindow>& windows,
                                       int64_t channels, int64_t long_window, int64_t short_window, int64_t seq_len);

// The records' init of q, k, v and c_fc: U(-sqrt(3) std, sqrt(3) std) with
// std = 0.5 / sqrt(dim) ("0.5 is a bit better than the default 1/sqrt(3)").
torch::Tensor speedrun_uniform_init(torch::IntArrayRef sizes, int64_t dim);

}  // namespace muonrun

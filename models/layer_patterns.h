// The per-layer patterns of the packed-document recipes (records 29 and 50
// of KellerJordan/modded-nanogpt), as config files spell them: which window
// each layer attends over, which value-embedding table it mixes into its
// values, and the long window's schedule in blocks. Parsed once when a
// model is built; a bad pattern throws ConfigError naming its key. No
// LibTorch (muonrun_layer_patterns), so that the config fuzzer parses them
// too (tests/fuzz/targets.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace muonrun

#include "models/layer_patterns.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>

#include "trainer/base/config_error.h"
#include "trainer/base/strings.h"

namespace muonrun {
namespace {

void check_count(const std::vector<std::string>& tokens, int64_t layers, const std::string& key,
                 const std::string& text) {
  if (static_cast<int64_t>(tokens.size()) != layers)
    throw ConfigError(fmt::format("{}: '{}' names {} layers, the model has {}", key, text, tokens.size(), layers));
}

}  // namespace

std::vector<LayerWindow> parse_window_pattern(const std::string& text, int64_t layers, const std::string& key) {
  const auto tokens = words(text);
  check_count(tokens, layers, key, text);
  std::vector<LayerWindow> out;
  for (const auto& t : tokens) {
    if (t == "L") out.push_back(LayerWindow::long_window);
    else if (t == "S") out.push_back(LayerWindow::short_window);
    else if (t == "-") out.push_back(LayerWindow::none);
    else throw ConfigError(fmt::format("{}: '{}' is not L (long window), S (short window) or - (no attention)", key, t));
  }
  return out;
}

std::vector<int> parse_value_embed_pattern(const std::string& text, int64_t layers, const std::string& key) {
  const auto tokens = words(text);
  check_count(tokens, layers, key, text);
  std::vector<int> out;
  for (const auto& t : tokens) {
    if (t == "-") out.push_back(-1);
    else if (t == "0" || t == "1" || t == "2") out.push_back(t[0] - '0');
    else throw ConfigError(fmt::format("{}: '{}' is not a value-embedding table (0, 1, 2) or - (none)", key, t));
  }
  return out;
}

std::vector<bool> parse_mlp_pattern(const std::string& text, int64_t layers, const std::string& key) {
  const auto tokens = words(text);
  if (tokens.empty()) return std::vector<bool>(static_cast<size_t>(layers), true);
  check_count(tokens, layers, key, text);
  std::vector<bool> out;
  for (const auto& t : tokens) {
    if (t != "M" && t != "-") throw ConfigError(fmt::format("{}: '{}' is not M (an MLP) or - (none)", key, t));
    out.push_back(t == "M");
  }
  return out;
}

std::vector<SkipConnection> parse_skip_pattern(const std::string& text, int64_t layers, const std::string& key) {
  std::vector<SkipConnection> out;
  for (const auto& t : words(text)) {
    const auto arrow = t.find('>');
    const auto from = arrow == std::string::npos ? std::nullopt : parse_integer(t.substr(0, arrow));
    const auto to = arrow == std::string::npos ? std::nullopt : parse_integer(t.substr(arrow + 1));
    if (!from || !to || *from < 0 || *from >= *to || *to >= layers)
      throw ConfigError(fmt::format("{}: '{}' is not a skip from>to between layers 0 <= from < to < {}", key, t,
                                    layers));
    const SkipConnection skip{*from, *to};
    if (std::find(out.begin(), out.end(), skip) != out.end())
      throw ConfigError(fmt::format("{}: '{}' names the skip {} twice", key, text, t));
    out.push_back(skip);
  }
  return out;
}

std::vector<int64_t> parse_window_schedule(const std::string& text, const std::string& key) {
  std::vector<int64_t> out;
  for (const auto& t : words(text)) {
    const auto blocks = parse_integer(t);
    if (!blocks || *blocks < 1 || *blocks > (int64_t{1} << 20))
      throw ConfigError(fmt::format("{}: '{}' is not a window in blocks (a whole number from 1)", key, t));
    out.push_back(*blocks);
  }
  if (out.empty()) throw ConfigError(fmt::format("{}: '{}' names no window; expected e.g. \"3 7 11\"", key, text));
  return out;
}

void check_packed_model_shape(const ModelConfig& model, const char* recipe) {
  if (model.heads * model.head_dim != model.dim)
    throw ConfigError(fmt::format("model.heads x model.head_dim must equal model.dim for {} (its qkvo_w is four "
                                  "dim x dim matrices): {} x {} != {}",
                                  recipe, model.heads, model.head_dim, model.dim));
  if (model.head_dim % 4 != 0)
    throw ConfigError(fmt::format("model.head_dim must be a multiple of 4 for {}'s half-truncated rotary, got {}",
                                  recipe, model.head_dim));
  if (model.attn_gate_dim > model.dim)
    throw ConfigError(fmt::format("model.attn_gate_dim ({}) exceeds model.dim ({})", model.attn_gate_dim, model.dim));
}

}  // namespace muonrun

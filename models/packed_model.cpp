#include "models/packed_model.h"

#include <algorithm>
#include <cmath>

namespace muonrun {

FlopsPerToken windowed_flops_per_token(const torch::nn::Module& model, const std::vector<LayerWindow>& windows,
                                       int64_t channels, int64_t long_window, int64_t short_window, int64_t seq_len) {
  FlopsPerToken f;
  for (const auto& p : model.named_parameters())
    if (p.key() != "embed.weight" && p.key().rfind("value_embeds.", 0) != 0) f.matmul_params += p.value().numel();
  f.channels = static_cast<double>(channels);
  for (const auto w : windows) {
    if (w == LayerWindow::none) continue;
    const int64_t window = w == LayerWindow::long_window ? long_window : short_window;
    f.attended_keys += static_cast<double>(std::min(seq_len, window + 1));
  }
  return f;
}

torch::Tensor speedrun_uniform_init(torch::IntArrayRef sizes, int64_t dim) {
  const double bound = std::sqrt(3.0) * 0.5 / std::sqrt(static_cast<double>(dim));
  return torch::empty(sizes).uniform_(-bound, bound);
}

}  // namespace muonrun

#include "models/yarn.h"

#include <cmath>

#include "models/rotary.h"

namespace muonrun {

YarnState yarn_state(int64_t head_dim, int64_t block, double base_scale, const std::vector<int64_t>& windows) {
  YarnState s{half_truncated_rotary_freqs(head_dim, torch::kCPU), base_scale};
  // The record's apply(old, new, alpha=1, beta=32).
  constexpr double alpha = 1, beta = 32;
  for (size_t i = 1; i < windows.size(); ++i) {
    const auto old_window = static_cast<double>(windows[i - 1]), new_window = static_cast<double>(windows[i]);
    if (old_window == new_window) continue;
    auto rotations = static_cast<double>(block) * old_window * s.freq / (2 * M_PI);
    const double scaling = old_window / new_window;
    auto w = torch::clamp((rotations - alpha) / (beta - alpha), 0, 1);
    s.freq = s.freq * (scaling + w * (1 - scaling));
    s.attn_scale *= 0.2 * std::log(new_window / old_window) + 1;
  }
  return s;
}

}  // namespace muonrun

#include "trainer/faults/divergence.h"

#include <spdlog/fmt/fmt.h>

#include <cmath>

namespace muonrun {

DivergenceDetector::DivergenceDetector(double spike_zscore, int64_t window)
    : spike_zscore_(spike_zscore), window_(static_cast<size_t>(window)) {}

std::string DivergenceDetector::check(double loss, bool gradients_finite) {
  if (!std::isfinite(loss)) return fmt::format("the loss is {}", loss);
  if (!gradients_finite) return "a gradient holds NaN or Inf";
  // Too few losses give no meaningful spread yet.
  if (spike_zscore_ > 0 && losses_.size() >= std::max<size_t>(8, window_ / 4)) {
    double mean = 0, var = 0;
    for (double l : losses_) mean += l;
    mean /= losses_.size();
    for (double l : losses_) var += (l - mean) * (l - mean);
    const double sd = std::sqrt(var / losses_.size());
    const double z = sd > 0 ? (loss - mean) / sd : 0;
    if (z > spike_zscore_)
      return fmt::format("the loss {:.4f} is a spike: z-score {:.1f} over the last {} steps (mean {:.4f})", loss, z,
                         losses_.size(), mean);
  }
  losses_.push_back(loss);
  if (losses_.size() > window_) losses_.pop_front();
  return "";
}

}  // namespace muonrun

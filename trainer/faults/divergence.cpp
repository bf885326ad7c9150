#include "trainer/faults/divergence.h"

#include <spdlog/fmt/fmt.h>

#include <cmath>
#include <limits>

namespace muonrun {

DivergenceDetector::DivergenceDetector(double spike_zscore, int64_t window)
    : spike_zscore_(spike_zscore), window_(static_cast<size_t>(window)) {}

double DivergenceDetector::spike_limit() const {
  // Too few losses give no meaningful spread yet.
  if (spike_zscore_ <= 0 || losses_.size() < std::max<size_t>(8, window_ / 4)) return kNoLimit;
  const auto [mean, sd] = window_stats();
  return sd > 0 ? mean + spike_zscore_ * sd : kNoLimit;
}

std::pair<double, double> DivergenceDetector::window_stats() const {
  double mean = 0, var = 0;
  for (double l : losses_) mean += l;
  mean /= losses_.size();
  for (double l : losses_) var += (l - mean) * (l - mean);
  return {mean, std::sqrt(var / losses_.size())};
}

std::string DivergenceDetector::check(double loss, bool gradients_finite) {
  if (!std::isfinite(loss)) return fmt::format("the loss is {}", loss);
  if (!gradients_finite) return "a gradient holds NaN or Inf";
  // z > spike_zscore, written as the comparison the device makes.
  if (loss > spike_limit()) {
    const auto [mean, sd] = window_stats();
    return fmt::format("the loss {:.4f} is a spike: z-score {:.1f} over the last {} steps (mean {:.4f})", loss,
                       (loss - mean) / sd, losses_.size(), mean);
  }
  losses_.push_back(loss);
  if (losses_.size() > window_) losses_.pop_front();
  return "";
}

}  // namespace muonrun

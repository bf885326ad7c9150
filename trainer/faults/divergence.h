// Deciding that a step went wrong: a non-finite loss or gradient, or (when
// train.spike_zscore > 0) a loss far above the recent ones, measured as a
// z-score over a window of past losses as llm.c does.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <string>
#include <utility>

namespace muonrun {

class DivergenceDetector {
 public:
  DivergenceDetector(double spike_zscore, int64_t window);
  // Judges one step; returns "" if it is fine, else why not. Only fine
  // losses enter the window.
  std::string check(double loss, bool gradients_finite);
  // The loss above which the next check() calls a finite loss a spike:
  // mean + spike_zscore x std of the window, +infinity while spike detection
  // is off or the window too short. The training step compares on the
  // device with it before check() runs on the host, so a spike is skipped
  // without a host round trip (trainer/run/train_step.h).
  double spike_limit() const;

 private:
  static constexpr double kNoLimit = std::numeric_limits<double>::infinity();
  // Mean and population standard deviation of the window.
  std::pair<double, double> window_stats() const;

  double spike_zscore_;
  size_t window_;
  std::deque<double> losses_;
};

}  // namespace muonrun

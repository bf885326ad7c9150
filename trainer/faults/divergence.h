// Deciding that a step went wrong: a non-finite loss or gradient, or (when
// train.spike_zscore > 0) a loss far above the recent ones, measured as a
// z-score over a window of past losses as llm.c does.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

namespace muonrun {

class DivergenceDetector {
 public:
  DivergenceDetector(double spike_zscore, int64_t window);
  // Judges one step; returns "" if it is fine, else why not. Only fine
  // losses enter the window.
  std::string check(double loss, bool gradients_finite);

 private:
  double spike_zscore_;
  size_t window_;
  std::deque<double> losses_;
};

}  // namespace muonrun

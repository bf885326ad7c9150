// Line plots as PNG files, rendered by gnuplot, for `muonrun compare` and the
// sweep report. Each batch of plots is a gnuplot script (<name>.gp) with one
// data file per line (data/*.dat) beside the PNGs: kept, so that a plot can
// be restyled and rendered again by hand.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace muonrun {

using Points = std::vector<std::pair<double, double>>;

struct Series {
  std::string title;
  Points points;
};

struct Plot {
  std::string png;  // file name inside the plots directory
  std::string title, xlabel, ylabel;
  bool log_x = false;
  std::vector<Series> series;  // one line each; a plot without any is left out
};

// gnuplot is missing or failed: the script and data are written, the PNGs not.
struct PlotError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Writes <dir>/<name>.gp and its data files, then runs gnuplot in `dir`.
// Throws PlotError naming the command to run by hand.
void write_plots(const std::string& dir, const std::string& name, const std::vector<Plot>& plots);

// Train losses are noisy: an exponential moving average (`decay` 0.9), debiased.
Points ema_smoothed(const Points& points, double decay = 0.9);

}  // namespace muonrun

// `muonrun compare RUN_DIR... --out DIR`: training runs side by side, from
// the metrics.jsonl each run writes (trainer/io/metrics.h):
//   DIR/compare.md    a markdown table: per run its final and best validation
//                     loss, the training time at which validation first
//                     reached a target loss, and the mean step time
//   DIR/*.png         validation and training loss against step and against
//                     training time, one line per run (trainer/tools/plots.h)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace muonrun {

struct CompareOptions {
  std::vector<std::string> run_dirs;
  std::string out_dir;
  // The validation loss for the time-to-target column; unset: the
  // train.val_loss_target of the runs' config.yaml when they agree on one
  // (none, or disagreeing: no column).
  std::optional<double> target;
};

// One run's numbers, from its metrics.jsonl.
struct RunSummary {
  std::string label;  // the run directory's name (its path when two share a name)
  std::string dir;
  int64_t last_step = 0;
  std::optional<double> final_val_loss, best_val_loss;
  int64_t best_val_step = 0;
  // Training time (excluding validation) and step of the first validation at
  // or below the target.
  std::optional<double> target_time_ms;
  int64_t target_step = 0;
  double step_avg_ms = 0;  // of the last line
};

struct Comparison {
  std::optional<double> target;
  std::vector<RunSummary> runs;
  std::string table;  // what compare.md holds
};

// Reads the runs and writes DIR/compare.md, then the plots. Throws naming
// the file and line of a bad metrics record; PlotError (plots.h) once the
// table is written when gnuplot is missing or fails.
Comparison compare_runs(const CompareOptions& options);

}  // namespace muonrun

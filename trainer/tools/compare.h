// `muonrun compare RUN_DIR... --out DIR`: training runs side by side, from
// the metrics.jsonl each run writes (trainer/io/metrics.h):
//   DIR/compare.md    a markdown table: per run its final and best validation
//                     loss, the training time at which validation first
//                     reached a target loss, and the mean step time
//   DIR/*.png         validation and training loss against step and against
//                     training time, one line per run (trainer/tools/plots.h)
// and the statistics a speedrun record claim needs: runs grouped by their
// config (a hash of every key but run.*: repeats of one recipe with other
// seeds or names fall in one group; or all in one --group), and per group
// n, the mean and standard deviation of the final validation loss, the mean
// time to the target, and the one-sided t-test p-value that the mean is at
// most the target (trainer/tools/t_test.h). A run that did not finish (it
// stopped before train.steps without reaching the target, or has no finite
// validation loss) is listed with its reason and left out. Runs that stop
// at train.val_loss_target report the first loss under it, which biases
// their mean low: for a claim, run every step (train.val_loss_target: 0),
// as the speedrun's record runs do.
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
  // One group named so for every run, instead of grouping by config.
  std::optional<std::string> group;
};

// The statistics' target when neither --target nor the configs give one:
// the speedrun's 3.28.
inline constexpr double kSpeedrunTarget = 3.28;

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
  std::string group;       // the --group name, or "config <hash>"
  std::string left_out;    // why the statistics leave it out, or ""
};

struct Comparison {
  std::optional<double> target;
  std::vector<RunSummary> runs;
  double stats_target = kSpeedrunTarget;
  std::string table;  // what compare.md holds: the runs, then the groups
};

// Reads the runs and writes DIR/compare.md, then the plots. Throws naming
// the file and line of a bad metrics record; PlotError (plots.h) once the
// table is written when gnuplot is missing or fails.
Comparison compare_runs(const CompareOptions& options);

}  // namespace muonrun

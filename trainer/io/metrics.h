// What a run reports after each step: the speedrun's log lines on the console
// and one JSON object per step in <run_dir>/metrics.jsonl for plotting.
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace muonrun {

struct StepMetrics {
  int64_t step = 0;  // updates done so far
  int64_t total_steps = 0;
  std::optional<double> train_loss;
  std::optional<double> val_loss;
  double train_time_ms = 0;  // excludes validation and the untimed warm-up
  double step_avg_ms = 0;
  double tokens_per_s = 0;
  double lr_multiplier = 1;
};

// `step:N/M train_loss:X train_time:Yms step_avg:Zms tokens/s:W`
std::string train_line(const StepMetrics& m);
// `step:N/M val_loss:X train_time:Yms step_avg:Zms`
std::string val_line(const StepMetrics& m);

// Appends to metrics.jsonl; each line is flushed so a crash loses nothing.
class MetricsFile {
 public:
  explicit MetricsFile(const std::string& path);
  void write(const StepMetrics& m);

 private:
  std::string path_;
  std::ofstream out_;
};

// The lines of a metrics.jsonl (empty if there is no file); a loss written as
// null (not finite) reads back as NaN. Throws naming the file and line of a
// line that is not a JSON object with an integer "step".
std::vector<StepMetrics> read_metrics(const std::string& path);

}  // namespace muonrun

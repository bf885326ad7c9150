// The training job: model, optimizer, data, validation, checkpoints and the
// speedrun's timing rules, for one process.
#pragma once

#include <optional>
#include <string>

#include "trainer/config.h"

namespace muonrun {

struct TrainOptions {
  bool resume = false;     // continue from the newest complete checkpoint of the run
  std::string checkpoint;  // or from this checkpoint directory
  bool force = false;      // resume even when the model or data config changed
};

struct TrainSummary {
  std::string run_dir;
  int64_t steps = 0;  // updates completed
  std::optional<double> val_loss;  // of the last validation
  bool reached_target = false;
  double train_time_ms = 0;
  double step_avg_ms = 0;
};

// run.dir, or runs/<run.name> when empty.
std::string run_directory(const Config& config);

TrainSummary run_training(const Config& config, const TrainOptions& options);

}  // namespace muonrun

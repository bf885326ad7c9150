// The training job: model, optimizer, data, validation, checkpoints and the
// speedrun's timing rules, for one process.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "trainer/config/config.h"

namespace muonrun {

struct TrainOptions {
  bool resume = false;     // continue from the newest complete checkpoint of the run
  std::string checkpoint;  // or from this checkpoint directory
  bool force = false;      // resume even when the model or data config changed
};

struct TrainSummary {
  std::string run_dir;
  int64_t steps = 0;  // updates completed
  int64_t skipped_steps = 0;  // diverged steps skipped (train.on_divergence=skip)
  bool stopped_by_signal = false;  // checkpointed and stopped early: exit kExitStoppedBySignal
  std::optional<double> val_loss;  // of the last validation
  bool reached_target = false;
  double train_time_ms = 0;
  double step_avg_ms = 0;
};

// The run ended early in a way its exit code must tell (see exit_codes.h).
struct TrainingStopped : std::runtime_error {
  TrainingStopped(const std::string& what, int exit_code) : std::runtime_error(what), exit_code(exit_code) {}
  int exit_code;
};

// run.dir, or runs/<run.name> when empty.
std::string run_directory(const Config& config);

TrainSummary run_training(const Config& config, const TrainOptions& options);

}  // namespace muonrun

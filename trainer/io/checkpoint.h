// Checkpoints: everything a run needs to continue exactly where it stopped.
//
// <run_dir>/checkpoints/step_000123/   (six digits or more: step_1234567)
//   model.safetensors     the weights (fp32), names as in models/gpt.h
//   rank<r>.safetensors   optimizer state held by rank r, its RNG state, and
//                         in its metadata the step, loader position and timing
//   config.yaml           the run's effective config
//   COMPLETE              written last: a directory without it is ignored
// The directory is assembled as step_000123.tmp and renamed when complete, so
// a crash at any point leaves the previous checkpoint intact.
#pragma once

#include <torch/torch.h>

#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "optim/optimizer.h"
#include "trainer/config/config.h"
#include "trainer/data/loader_position.h"

namespace muonrun {

// What a run carries from step to step besides weights and optimizer state.
struct TrainerState {
  int64_t step = 0;  // optimizer updates completed
  LoaderPosition loader;
  double train_time_ms = 0;
  int64_t timed_steps = 0;
  // Train loss of the step that ended at `step` (its metrics line is written
  // after the checkpoint), NaN when no step has run.
  double last_train_loss = std::numeric_limits<double>::quiet_NaN();
  double lr_scale = 1.0;  // lowered by each rollback after divergence
  int64_t rollbacks = 0;
};

// Writes the checkpoint of `state.step`, then deletes the complete
// checkpoints that are neither among the newest checkpoint.keep_last nor a
// multiple of checkpoint.keep_every. Every rank calls it (`comm` null for one
// process): each writes its rank file, rank 0 the rest, and the directory is
// renamed once all are written. The run directory must be shared by all ranks.
// Returns the checkpoint's directory.
std::string save_checkpoint(const std::string& run_dir, const Config& config, torch::nn::Module& model,
                            const Optimizer& optimizer, const TrainerState& state, Communicator* comm);

// The newest complete checkpoint under <run_dir>/checkpoints, if any.
std::optional<std::string> find_latest_checkpoint(const std::string& run_dir);

// The config a checkpoint was written with.
Config checkpoint_config(const std::string& checkpoint_dir);

// Copies the checkpoint's model.safetensors into `model`, checking every name
// and shape.
void load_model_weights(const std::string& checkpoint_dir, torch::nn::Module& model);

// Restores weights, optimizer state and RNG; returns the trainer state. The
// optimizer takes what it needs from all rank files, so the number of ranks
// may differ from the run that wrote them. Throws naming the file and the
// problem for incomplete or corrupt checkpoints.
TrainerState load_checkpoint(const std::string& checkpoint_dir, torch::nn::Module& model, Optimizer& optimizer,
                             int rank = 0);

// Keys under the given prefixes ("model.", "data.") whose values differ,
// as "key: old -> new", for refusing resumes that would change the run.
std::vector<std::string> config_differences(const Config& saved, const Config& current,
                                            const std::vector<std::string>& prefixes);

}  // namespace muonrun

// One optimizer step of training, shared by the training loop
// (trainer/train.cpp) and bench_step (bench/bench_step.cpp), and the pieces
// of a run both build the same way: batch plan, model, scalar agreement.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "models/language_model.h"
#include "optim/optimizer.h"
#include "trainer/config/config.h"
#include "trainer/run/batch_source.h"
#include "trainer/run/micro_step_graph.h"
#include "trainer/run/phase_timer.h"

namespace muonrun {

// The batch arithmetic of a run: global batch = world x micro x seq x
// accumulation; validation = world x micro x val_seq x val_batches.
// With train.batch_schedule (record 46 on: 131,072 -> 262,144 -> 393,216
// tokens by thirds) the accumulation stays and each stage's packed sequence
// is its share: stage tokens / (world x accumulation); the extension steps
// keep the last stage's.
struct BatchPlan {
  int64_t micro_batch, seq_len, accumulation, val_seq_len, val_batches;
  int64_t batch_tokens = 0;             // train.batch_tokens
  std::vector<int64_t> stage_tokens;    // train.batch_schedule, parsed; empty: batch_tokens throughout
  int64_t scheduled_steps = 0;          // train.steps - schedule.extension_steps
  int64_t max_doc_tokens = 0;           // data.max_doc_tokens
  std::vector<int64_t> stage_doc_cut;   // train.doc_cut_schedule, parsed; empty: max_doc_tokens throughout

  BatchShape train_shape() const { return {micro_batch, seq_len}; }
  BatchShape val_shape() const { return {micro_batch, val_seq_len}; }
  // The global batch of step `step` (the record's get_bs: entry int(n x),
  // x = step / scheduled_steps, the last from there on), and its sequence per rank.
  int64_t step_tokens(int64_t step) const;
  int64_t step_seq_len(int64_t step) const;
  // That sequence and the cut of its documents.
  BatchStage step_stage(int64_t step) const;
  // Tokens of steps [first, end).
  int64_t tokens_of_steps(int64_t first, int64_t end) const;
};

// Throws ConfigError when train.batch_tokens or train.val_tokens do not
// divide into world x micro_batch x seq_len (x val_seq_len), when a
// packed layout is given more than one sequence per micro-batch, or when
// train.batch_schedule is not a list of batches, each at most batch_tokens
// and a multiple of world x accumulation, for a packed-document recipe, or
// train.doc_cut_schedule not one positive cut per stage of it.
BatchPlan plan_batches(const Config& config, int world, BatchLayout layout);

// The run's network, model.recipe's: seeded with run.seed, on `device`, bf16
// compute on CUDA. Throws ConfigError naming a model.* key it cannot build.
LanguageModel make_model(const Config& config, const torch::Device& device);

// Sums over ranks of a few scalars, in one small all-reduce (`comm` null:
// the values themselves), left on `device` as a float vector: nothing waits
// for them on the host. Counts and flags that decide something go through
// sums, never means (Communicator::all_reduce_sum says why).
torch::Tensor sum_over_ranks_on_device(Communicator* comm, const torch::Device& device,
                                       std::vector<torch::Tensor> scalars, PhaseTimer* timer = nullptr);
// The same, read on the host (one transfer).
std::vector<double> sum_over_ranks(Communicator* comm, const torch::Device& device,
                                   std::vector<torch::Tensor> scalars, PhaseTimer* timer = nullptr);
// The sums divided by the number of ranks: means of measurements (losses).
std::vector<double> mean_over_ranks(Communicator* comm, const torch::Device& device,
                                    std::vector<torch::Tensor> scalars, PhaseTimer* timer = nullptr);

// What a step works on.
struct StepParts {
  LanguageModelImpl& model;
  Optimizer& optimizer;
  BatchSource& data;
  Communicator* comm;  // null for one process
  torch::Device device;
  BatchPlan plan;
  PhaseTimer* timer = nullptr;  // bench_step's; null in training
  MicroStepGraph* graph = nullptr;  // train.cuda_graphs: replaces the eager micro-step
};

// The captured micro-step of train.cuda_graphs (null when it is off), after
// checking what graphs need: no communicator (one process, no launcher), a
// CUDA device, rows of a fixed shape (not packed documents, whose offsets
// change with every batch), no loss changed on the host (debug.inject_nan_step). Throws
// ConfigError naming the key (and the communicator).
std::unique_ptr<MicroStepGraph> make_micro_step_graph(const Config& config, Communicator* comm, LanguageModelImpl& model,
                                                      const torch::Device& device, const BatchPlan& plan);

// The training loop's say in a step.
struct StepHooks {
  // Applied to each micro-batch's loss before backward (debug.inject_nan_step).
  std::function<torch::Tensor(int64_t micro, torch::Tensor loss)> change_loss;
  // Given the agreed mean loss and whether every rank's gradients are
  // finite: "" to apply the update, else why it is skipped. Empty: apply.
  // It must object exactly when the loss or a gradient is not finite or the
  // loss exceeds spike_limit() (asked just before), which is what the
  // device applies without asking it first (see training_step).
  std::function<std::string(double loss, bool gradients_finite)> check;
  // The loss above which `check` will call the step a spike; empty: +infinity.
  std::function<double()> spike_limit;
  // Whether this rank got a stop signal, asked after backward. Empty: no.
  std::function<bool()> stop_requested;
};

// What one step produced, agreed on by all ranks.
struct StepResult {
  double loss;          // mean over micro-batches and ranks
  std::string trouble;  // from hooks.check: the update was discarded
  bool stop_requested;  // some rank got a stop signal
};

// Forward and backward over the plan's accumulation micro-batches, one
// all-reduce agreeing on the loss, finite gradients and stop requests, then
// the optimizer's update for `step` (0-based) or, when hooks.check objects,
// its discard; gradients are dropped at the end.
//
// When the optimizer skips on the device (Optimizer::skips_on_device(): the
// speedrun's recipe), nothing is read on the host between backward and the
// update: the skip decision of hooks.check (non-finite loss or gradient,
// loss above hooks.spike_limit()) is computed on the device from the
// all-reduced values and masks the update there, and the values are read
// once the update is queued, which then waits for the step to finish (the
// training loop synchronises there anyway, to time the step). Otherwise
// (steepest-descent and Momo variants, AdamW ablations) they are read before
// the update, as those rules need the loss and dual norms on the host.
StepResult training_step(StepParts& parts, int64_t step, const StepHooks& hooks = {});

}  // namespace muonrun

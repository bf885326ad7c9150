// `muonrun eval --checkpoint DIR`: the validation loss of a checkpoint's
// weights, computed as training computes it (trainer/run/evaluate.h, the
// same batch plan and mean over ranks), so that it equals the val_loss the
// run logged at that step; over the config's data.val or any other shards,
// on one process or on the ranks of mpirun / torchrun / srun like `train`.
// Optionally HellaSwag accuracy (trainer/tools/hellaswag.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/tools/hellaswag.h"

namespace muonrun {

struct EvalOptions {
  // A checkpoint directory, or a run directory (its newest complete checkpoint).
  std::string checkpoint;
  // The config: the checkpoint's config.yaml unless files are given; then the overrides.
  std::vector<std::string> config_files, overrides;
  std::string hellaswag;  // a HellaSwag .jsonl, or "" for none
  std::string vocab_dir = "data/gpt2";
};

struct EvalResult {
  std::string checkpoint;  // the directory evaluated
  int64_t step = 0;        // of the checkpoint
  int rank = 0, world = 1;
  double val_loss = 0;
  int64_t val_tokens = 0;
  std::string val_pattern;
  std::optional<HellaswagResult> hellaswag;
};

EvalResult run_evaluation(const EvalOptions& options);

// What `muonrun eval` prints: a val_loss line, and a hellaswag line if scored.
std::string eval_report(const EvalResult& result);

}  // namespace muonrun

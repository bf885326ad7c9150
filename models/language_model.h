// What the training loop, evaluation, sampling and HellaSwag need from a
// recipe's network, whichever recipe it is (model.recipe): record 11's GPT
// (models/gpt.h) trains on rows of tokens, records 29's and 50's
// (models/record29.h, record50.h) on one packed sequence of documents. Each recipe file keeps its forward pass
// top to bottom; this interface is the only place the rest of muonrun sees it.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>

namespace muonrun {

// One micro-step's tokens on the model's device.
struct TokenBatch {
  torch::Tensor inputs;   // int64: [B, T] rows, or [T] one packed sequence
  torch::Tensor targets;  // int64, inputs' shape: the next tokens
  // Packed sequences only: int32 document offsets [0, ..., T] on the host
  // (models/doc_window_attention.h checks them once per forward pass and
  // copies them to the device once).
  torch::Tensor cu_seqlens;

  int64_t tokens() const { return inputs.numel(); }
};

// A recipe's loss: `objective` is what backward runs on, the record's own
// (record 11: the mean over tokens; record 29: the sum in training), and
// objective x per_token is the mean cross-entropy per token that logs,
// validation and comparisons across recipes use. In evaluation mode
// per_token is 1: the objective is the mean.
struct Loss {
  torch::Tensor objective;
  double per_token = 1.0;
};

// How a recipe's data is laid out, which decides the loader that feeds it.
enum class BatchLayout { rows, packed_documents };

// Training FLOPs per token as llm.c counts them, for MFU: 6 per parameter
// that takes part in a matrix product (all but the input embeddings, which
// are lookups), plus 6 x channels (heads x head_dim) x the keys one query
// attends to, summed over layers (record 11's 6LCT).
struct FlopsPerToken {
  int64_t matmul_params = 0;
  double channels = 0, attended_keys = 0;
  double total() const { return 6.0 * static_cast<double>(matmul_params) + 6.0 * channels * attended_keys; }
};

// The stage of `step` when `scheduled_steps` divide into `stages` equal
// parts: int(stages x) at x = step / scheduled_steps in floating point, as
// record 50's get_ws and get_bs compute it, and the last from there on.
inline size_t schedule_stage(int64_t step, int64_t scheduled_steps, size_t stages) {
  if (step >= scheduled_steps) return stages - 1;
  const double x = static_cast<double>(step) / static_cast<double>(scheduled_steps);
  return static_cast<size_t>(std::min(static_cast<double>(stages - 1), std::floor(static_cast<double>(stages) * x)));
}

// Where training stands, for structure that changes with it (windows).
struct TrainingProgress {
  int64_t step;                 // the step about to run, or whose validation runs (steps: the final one)
  int64_t steps;                // train.steps
  int64_t extension_steps = 0;  // schedule.extension_steps: the last steps, after the scheduled ones
  int64_t scheduled_steps() const { return steps - extension_steps; }
};

struct LanguageModelImpl : torch::nn::Module {
  virtual BatchLayout layout() const = 0;
  virtual Loss loss(const TokenBatch& batch) = 0;
  // Soft-capped fp32 logits [T, vocab_padded] of one document, tokens int64 [T].
  virtual torch::Tensor document_logits(const torch::Tensor& tokens) = 0;
  // Step-dependent structure (the attention windows of records 29 and 50),
  // set before a step and before validation at that step. Default: none.
  virtual void set_progress(const TrainingProgress& /*progress*/) {}
  // bf16 for CUDA training, fp32 on the CPU (the default).
  virtual void set_compute_dtype(torch::ScalarType dtype) = 0;
  // At seq_len tokens per sequence, with the structure set_progress() last set.
  virtual FlopsPerToken flops_per_token(int64_t seq_len) const = 0;
};

using LanguageModel = std::shared_ptr<LanguageModelImpl>;

}  // namespace muonrun

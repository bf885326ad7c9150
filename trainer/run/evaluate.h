// Validation loss: the mean next-token loss over a fixed number of tokens
// from the start of the validation shards (the speedrun's first 10,485,760).
#pragma once

#include <torch/torch.h>

#include "models/gpt.h"
#include "trainer/data/data_loader.h"

namespace muonrun {

// Runs `batches` micro-batches [B, T] of the val loader from its start;
// returns the mean loss of this rank's batches.
double evaluate(GPT& model, DataLoader& val, int64_t batches, int64_t B, int64_t T,
                const torch::Device& device);

// Copies one loader batch (B*T+1 tokens) to `device` as inputs and targets [B, T].
std::pair<torch::Tensor, torch::Tensor> next_batch(DataLoader& loader, int64_t B, int64_t T,
                                                   const torch::Device& device);

}  // namespace muonrun

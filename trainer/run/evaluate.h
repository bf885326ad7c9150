// Validation loss: the mean next-token loss over a fixed number of tokens
// from the start of the validation shards (the speedrun's first 10,485,760).
#pragma once

#include <torch/torch.h>

#include "models/language_model.h"
#include "trainer/run/batch_source.h"

namespace muonrun {

// Runs `batches` micro-batches of the validation source from its start, in
// evaluation mode; returns the mean loss per token of this rank's batches.
double evaluate(LanguageModelImpl& model, BatchSource& val, int64_t batches, const torch::Device& device);

}  // namespace muonrun

// Which optimizer handles which parameter (as in KellerJordan/modded-nanogpt
// record 11, train_gpt2.py): Muon takes the 2-D
// hidden matrices; AdamW takes the token embedding, the head and the scalars,
// each group with its own learning rate.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace muonrun {

struct NamedParam {
  std::string name;
  torch::Tensor tensor;
};

struct ParamGroups {
  std::vector<NamedParam> matrices;    // Muon
  std::vector<NamedParam> embeddings;  // AdamW, optim.adam.embed_lr
  std::vector<NamedParam> heads;       // AdamW, optim.adam.head_lr
  std::vector<NamedParam> scalars;     // AdamW, optim.adam.scalar_lr (0-D and 1-D)
};

// Sorts a model's parameters into the groups by name and shape: `*wte.weight`
// is the embedding, `lm_head.weight` the head, other 2-D tensors are hidden
// matrices, everything else is a scalar. Keeps the model's parameter order.
ParamGroups group_parameters(const torch::nn::Module& model);

}  // namespace muonrun

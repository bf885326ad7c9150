// Which optimizer handles which parameter (as in KellerJordan/modded-nanogpt
// record 11, train_gpt2.py, and record 29, records/track_1_short/2025-09-03_FA3/
// train_gpt.py): Muon takes the hidden matrices; AdamW takes the token (and
// value) embeddings, the head and the scalars, each group with its own
// learning rate.
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
  std::vector<NamedParam> matrices;    // Muon (2-D, or stacks [..., rows, cols] such as record 29's qkvo_w)
  std::vector<NamedParam> embeddings;  // AdamW, optim.adam.embed_lr
  std::vector<NamedParam> heads;       // AdamW, optim.adam.head_lr
  std::vector<NamedParam> scalars;     // AdamW, optim.adam.scalar_lr (0-D and 1-D)
};

// Sorts a model's parameters into the groups by name and shape. Embeddings:
// `*wte.weight` (record 11), `embed.weight` and `value_embeds.*` (record 29,
// whose code puts every name containing "embed" there, lr_mul 75); the head:
// `lm_head.weight`; hidden matrices: every other tensor of 2 or more
// dimensions (record 29: `p.ndim >= 2` in model.blocks, so its [4, dim, dim]
// qkvo_w and its [heads, 12] attn_gate.weight); everything else is a scalar.
// Keeps the model's parameter order.
ParamGroups group_parameters(const torch::nn::Module& model);

}  // namespace muonrun

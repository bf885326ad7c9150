// Smear (KellerJordan/modded-nanogpt record 34, kept through record 50,
// records/track_1_short/2025-12-18_CautiousWDAdam/train_gpt.py, GPT.forward):
// each token's embedding takes in a gated share of the previous token's,
//   g_t = lambda sigmoid(x_t[:gate_dim] . w)        (t >= 1; w: smear_gate.weight [1, gate_dim])
//   x_t <- x_t + g_t x_{t-1},                       x_0 unchanged,
// on the raw embedding, before the first norm, and across document
// boundaries (a document's first token takes from the previous document's
// last, as the record does). lambda starts at 0 and w at 0: the identity.
#pragma once

#include <torch/torch.h>

namespace muonrun {

// x: [T, dim] in the compute dtype; gate_weight [1, gate_dim] (cast to x's
// dtype); lambda: a 0-dim tensor.
torch::Tensor smear(const torch::Tensor& x, const torch::Tensor& gate_weight, const torch::Tensor& lambda);

}  // namespace muonrun

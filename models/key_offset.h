// Partial key offset (KellerJordan/modded-nanogpt record 49, kept in record
// 50, records/track_1_short/2025-12-18_CautiousWDAdam/train_gpt.py,
// CausalSelfAttention.forward with key_shift): on the long-window layers the
// key dims that rotary leaves still -- [D/4, D/2) and [3D/4, D), the pairs of
// zero frequency of the half-truncated rotary (models/rotary.h) -- are taken
// from the previous token, after rotary; the first token keeps its own. A
// query can then match "the token before this key", which gives one layer
// an induction head. Like the record, the shift crosses document boundaries.
// (The record writes it as an in-place copy between overlapping slices,
// which torch.compile turns into this shift by one; here it is built from
// slices, so eager, compiled, CPU and CUDA agree.)
#pragma once

#include <torch/torch.h>

namespace muonrun {

// k: [T, heads, D] with D a multiple of 4; returns the shifted keys.
torch::Tensor partial_key_offset(const torch::Tensor& k);

}  // namespace muonrun

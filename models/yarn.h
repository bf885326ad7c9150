// YaRN for the speedrun's growing attention window (Peng et al. 2023, "YaRN:
// Efficient Context Window Extension of Large Language Models",
// arXiv:2309.00071; KellerJordan/modded-nanogpt record 31 on, class Yarn of
// records/track_1_short/2025-12-18_CautiousWDAdam/train_gpt.py). When the
// long window grows from `old` to `new` blocks, each rotary frequency that
// turns less than once over the old window is slowed by old/new, one that
// turns 32 times or more is kept, and those between are interpolated:
//   rot = block old freq / (2 pi),  w = clamp((rot - 1) / 31, 0, 1),
//   freq *= old/new + w (1 - old/new),   attn_scale *= 0.2 ln(new/old) + 1.
// The changes compound over the schedule's windows (3 -> 7 -> 11 -> 13 blocks
// in record 50: scale 0.1 -> 0.11695 -> 0.12752 -> 0.13178). The state is a
// function of the windows visited so far, so a resumed run rebuilds it.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace muonrun {

struct YarnState {
  torch::Tensor freq;  // fp32 [head_dim / 2] on the CPU: the rotary frequencies
  double attn_scale;   // the softmax scale of q.k
};

// The state after the long window went through `windows` (in blocks of
// `block` tokens, the first being the start: no change), from the
// half-truncated frequencies (models/rotary.h) and `base_scale`. The
// frequency arithmetic is fp32, as the record's in-place tensor updates.
YarnState yarn_state(int64_t head_dim, int64_t block, double base_scale, const std::vector<int64_t>& windows);

}  // namespace muonrun

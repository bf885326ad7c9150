// Rotary position embeddings (Su et al. 2021, arXiv:2104.09864) as the
// speedrun applies them: the pairs (x[..., i], x[..., i + D/2]) of each head
// are rotated by angle t * freq_i at position t. The frequency tables:
//   rotary_tables                 record 11: freq_i = base^(-2i/D), in the compute dtype
//   half_truncated_rotary_freqs   record 29 (KellerJordan/modded-nanogpt,
//       2025-09-03_FA3, Rotary): freq_i = (1/1024)^(i/(D/4-1)) for the first
//       D/4 pairs, 0 for the other D/4 (those pairs do not rotate), in fp32;
//       record 50 rescales them with YaRN (models/yarn.h)
//   rotary_tables_from_freqs      the tables of given frequencies
//   RotaryTableCache              those tables kept between calls (records 29, 50)
#pragma once

#include <torch/torch.h>

#include <utility>

namespace muonrun {

// Rotates pairs (x[..., i], x[..., i + D/2]) by the rotary angles.
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin);


// cos and sin of t * freq_i for positions t < T: [T, D/2] each, in `dtype`.
std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, int64_t head_dim, double base,
                                                      torch::ScalarType dtype, torch::Device device);
// [D/2] fp32 frequencies on `device`.
torch::Tensor half_truncated_rotary_freqs(int64_t head_dim, torch::Device device);
// cos and sin of t * freq_i for t < T: fp32 [T, D/2] each, freq fp32 [D/2].
std::pair<torch::Tensor, torch::Tensor> rotary_tables_from_freqs(int64_t T, const torch::Tensor& freq);

// The fp32 tables [T, 1, D/2] (every head alike) of the frequencies last
// set, rebuilt only when T, the device or the frequencies change: the
// packed-document recipes ask for the same T at every forward.
class RotaryTableCache {
 public:
  void set_freqs(torch::Tensor freqs);  // fp32 [D/2], any device
  const torch::Tensor& freqs() const { return freqs_; }
  std::pair<torch::Tensor, torch::Tensor> tables(int64_t T, torch::Device device);

 private:
  torch::Tensor freqs_, cos_, sin_;
};

}  // namespace muonrun

#include "models/rotary.h"

namespace muonrun {

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto y1 = x1 * cos + x2 * sin;
  auto y2 = x2 * cos - x1 * sin;
  return torch::cat({y1, y2}, -1).to(x.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t T, int64_t head_dim, double base,
                                                      torch::ScalarType dtype, torch::Device device) {
  const int64_t D = head_dim;
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto inv_freq = 1.0 / torch::pow(base, torch::arange(0, D, 2, opts) / D);
  auto freqs = torch::outer(torch::arange(T, opts), inv_freq);
  return {freqs.cos().to(dtype), freqs.sin().to(dtype)};
}

torch::Tensor half_truncated_rotary_freqs(int64_t head_dim, torch::Device device) {
  TORCH_CHECK(head_dim % 4 == 0, "half-truncated rotary needs head_dim divisible by 4, got ", head_dim);
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const int64_t rotating = head_dim / 4;
  return torch::cat({torch::pow(1.0 / 1024, torch::linspace(0, 1, rotating, opts)), torch::zeros({rotating}, opts)});
}

std::pair<torch::Tensor, torch::Tensor> rotary_tables_from_freqs(int64_t T, const torch::Tensor& freq) {
  auto theta = torch::outer(torch::arange(T, freq.options()), freq);
  return {theta.cos(), theta.sin()};
}

void RotaryTableCache::set_freqs(torch::Tensor freqs) {
  freqs_ = std::move(freqs);
  cos_ = sin_ = torch::Tensor();
}

std::pair<torch::Tensor, torch::Tensor> RotaryTableCache::tables(int64_t T, torch::Device device) {
  if (!cos_.defined() || cos_.size(0) != T || cos_.device() != device) {
    auto [cos, sin] = rotary_tables_from_freqs(T, freqs_.to(device));
    cos_ = cos.unsqueeze(1);
    sin_ = sin.unsqueeze(1);
  }
  return {cos_, sin_};
}

}  // namespace muonrun

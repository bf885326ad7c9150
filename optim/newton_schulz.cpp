#include "optim/newton_schulz.h"

namespace muonrun {

NewtonSchulzSchedule quintic_schedule() { return {{{3.4445, -4.7750, 2.0315}}, 1.0, 1e-7}; }

torch::Tensor newton_schulz(const torch::Tensor& G, int64_t steps,
                            const NewtonSchulzSchedule& schedule, torch::ScalarType dtype) {
  TORCH_CHECK(G.dim() >= 2, "newton_schulz expects a matrix or a batch of matrices");
  TORCH_CHECK(!schedule.coefficients.empty(), "newton_schulz: empty coefficient schedule");
  const bool tall = G.size(-2) > G.size(-1);
  auto X = G.to(dtype);
  if (tall) X = X.transpose(-2, -1);
  X = X / (X.norm(2, {-2, -1}, /*keepdim=*/true) * schedule.norm_scale + schedule.norm_eps);
  for (int64_t i = 0; i < steps; ++i) {
    const auto& k = schedule.coefficients[std::min<size_t>(i, schedule.coefficients.size() - 1)];
    auto A = torch::matmul(X, X.transpose(-2, -1));
    auto B = k[1] * A + k[2] * torch::matmul(A, A);
    X = k[0] * X + torch::matmul(B, X);
  }
  return tall ? X.transpose(-2, -1) : X;
}

}  // namespace muonrun

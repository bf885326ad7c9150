#include "optim/newton_schulz.h"

#include <algorithm>

namespace muonrun {

NewtonSchulzSchedule quintic_schedule() { return {{{3.4445, -4.7750, 2.0315}}, 1.0, 1e-7}; }

NewtonSchulzSchedule polar_express_schedule() {
  return {{{8.156554524902461, -22.48329292557795, 15.878769915207462},
           {4.042929935166739, -2.808917465908714, 0.5000178451051316},
           {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
           {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
           {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
           {15.0 / 8, -10.0 / 8, 3.0 / 8}},
          1.02,
          1e-6};
}

torch::Tensor exact_polar(const torch::Tensor& G) {
  auto [U, S, Vh] = torch::linalg_svd(G.to(torch::kDouble), /*full_matrices=*/false);
  // Directions of (numerically) zero singular values are arbitrary in an SVD:
  // leave them out, as Newton-Schulz does (p(0) = 0), so that a zero or
  // low-rank input does not get a spurious full-rank update.
  const double rank_tol = static_cast<double>(std::max(G.size(-2), G.size(-1))) * 1e-15;
  auto keep = (S > std::get<0>(S.max(-1, /*keepdim=*/true)) * rank_tol).to(torch::kDouble);
  return torch::matmul(U * keep.unsqueeze(-2), Vh).to(G.scalar_type());
}

torch::Tensor newton_schulz(const torch::Tensor& G, int64_t steps,
                            const NewtonSchulzSchedule& schedule, torch::ScalarType dtype) {
  TORCH_CHECK(G.dim() >= 2, "newton_schulz expects a matrix or a batch of matrices");
  TORCH_CHECK(!schedule.coefficients.empty(), "newton_schulz: empty coefficient schedule");
  const bool tall = G.size(-2) > G.size(-1);
  auto X = G.to(dtype);
  if (tall) X = X.transpose(-2, -1);
  // One stack [k, m, n] whatever the input, so that a single matrix and a
  // batch run the same bmm kernels; each matrix keeps its own norm.
  const auto shape = X.sizes().vec();
  X = X.reshape({-1, shape[shape.size() - 2], shape.back()});
  X = X / (X.norm(2, {-2, -1}, /*keepdim=*/true) * schedule.norm_scale + schedule.norm_eps);
  for (int64_t i = 0; i < steps; ++i) {
    const auto& k = schedule.coefficients[std::min<size_t>(i, schedule.coefficients.size() - 1)];
    auto A = torch::bmm(X, X.transpose(-2, -1));
    // b A + c A A and a X + B X in one fused multiply-add each, as
    // KellerJordan/modded-nanogpt's zeropower_via_newtonschulz5 does.
    auto B = torch::baddbmm(A, A, A, /*beta=*/k[1], /*alpha=*/k[2]);
    X = torch::baddbmm(X, B, X, /*beta=*/k[0], /*alpha=*/1);
  }
  X = X.reshape(shape);
  return tall ? X.transpose(-2, -1) : X;
}

}  // namespace muonrun

#include "models/elementwise_ops.h"

#include <cfloat>

#include "models/fused_rms_norm.h"
#include "models/qk_norm_rotary.h"
#include "models/relu_square.h"
#include "models/rotary.h"

namespace muonrun {

torch::Tensor rms_norm(const torch::Tensor& x) {
  auto x32 = x.scalar_type() == torch::kDouble ? x : x.to(torch::kFloat);
  auto inv_rms = torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + FLT_EPSILON);
  return (x32 * inv_rms).to(x.scalar_type());
}

torch::Tensor ElementwiseOps::norm(const torch::Tensor& x) const {
  return fused ? fused_rms_norm(x) : rms_norm(x);
}

torch::Tensor ElementwiseOps::qk_norm_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                                             const torch::Tensor& sin) const {
  if (fused) return muonrun::qk_norm_rotary(x, cos, sin);
  return apply_rotary(rms_norm(x), cos, sin).transpose(1, 2);
}

torch::Tensor ElementwiseOps::relu_square(const torch::Tensor& x) const {
  return fused ? muonrun::relu_square(x) : torch::relu(x).square();
}

MixNorm ElementwiseOps::block_input(const torch::Tensor& x_in, const torch::Tensor& x0,
                                    const torch::Tensor& lambdas, const torch::Tensor& skip,
                                    const torch::Tensor& skip_weight) const {
  if (fused) {
    // l0 (x_in + s skip) + l1 x0 = l0 x_in + (l0 s) skip + l1 x0, the
    // weights in fp32 (l0 s from its product in double).
    const auto l0 = lambdas[0], l1 = lambdas[1];
    if (!skip.defined()) return mix_norm({{x_in, l0}, {x0, l1}});
    return mix_norm({{x_in, l0}, {skip, l0.to(torch::kDouble) * skip_weight}, {x0, l1}});
  }
  const auto dtype = x_in.scalar_type();
  auto x = skip.defined() ? x_in + skip_weight.to(dtype) * skip : x_in;
  auto l = lambdas.to(dtype);
  x = l[0] * x + l[1] * x0;
  return {x, rms_norm(x)};
}

MixNorm ElementwiseOps::add_norm(const torch::Tensor& x, const torch::Tensor& y) const {
  if (fused) return mix_norm({{x, {}}, {y, {}}});
  auto sum = x + y;
  return {sum, rms_norm(sum)};
}

}  // namespace muonrun

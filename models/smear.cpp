#include "models/smear.h"

namespace muonrun {

torch::Tensor smear(const torch::Tensor& x, const torch::Tensor& gate_weight, const torch::Tensor& lambda) {
  const int64_t T = x.size(0), gate_dim = gate_weight.size(1);
  if (T < 2) return x;
  auto later = x.narrow(0, 1, T - 1);
  auto gate = lambda.to(x.scalar_type()) *
              torch::sigmoid(torch::nn::functional::linear(later.narrow(1, 0, gate_dim), gate_weight.to(x.scalar_type())));
  return torch::cat({x.narrow(0, 0, 1), later + gate * x.narrow(0, 0, T - 1)});
}

}  // namespace muonrun

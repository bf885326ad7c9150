#include "models/casted_linear.h"

#include <cmath>

namespace muonrun {

CastedLinearImpl::CastedLinearImpl(int64_t in, int64_t out, bool zero_init) {
  // nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), unless zeroed:
  // modded-nanogpt record 11 zero-initialises output projections and the head.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter(
      "weight", zero_init ? torch::zeros({out, in}) : torch::empty({out, in}).uniform_(-bound, bound));
}

torch::Tensor CastedLinearImpl::forward(const torch::Tensor& x) {
  return torch::nn::functional::linear(x, weight.to(x.scalar_type()));
}

}  // namespace muonrun

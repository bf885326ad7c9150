// ReLU^2, the record-11 MLP's activation, as one autograd op:
//   y = relu(x)^2,  dy/dx = 2 relu(x).
// The composite torch::relu(x).square() writes two tensors and keeps both for
// backward; this op writes y once and saves x. In fp32 and bf16 it gives the
// composite's results bit for bit (one rounding of r*r, and of g*2r).
//
// CPU: an at::parallel_for loop; CUDA: models/relu_square.cu.
#pragma once

#include <torch/torch.h>

namespace muonrun {

torch::Tensor relu_square(const torch::Tensor& x);

}  // namespace muonrun

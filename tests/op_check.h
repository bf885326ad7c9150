// One op's forward and backward for the fused-op suites (test_fused_ops on
// the CPU, test_cuda for the CUDA kernels): the op's outputs and its inputs'
// vector-Jacobian products for fixed random cotangents, in any dtype and on
// any device, returned as double on the CPU so that runs compare directly.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace muonrun::tests {

using Op = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// Runs `op` on copies of `inputs` in `dtype` on `device` (those flagged
// differentiable require grad): its outputs, then the gradients of the
// differentiable inputs for cotangents drawn from a fixed seed (the same in
// every run of the same op).
inline std::vector<torch::Tensor> run_op(const Op& op, const std::vector<torch::Tensor>& inputs,
                                         const std::vector<bool>& differentiable, torch::ScalarType dtype,
                                         torch::Device device = torch::kCPU) {
  std::vector<torch::Tensor> in, leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto t = inputs[i].to(device, dtype).detach();
    if (differentiable[i]) {
      t.requires_grad_(true);
      leaves.push_back(t);
    }
    in.push_back(t);
  }
  auto out = op(in);
  torch::manual_seed(1234);
  std::vector<torch::Tensor> cotangents;
  for (auto& o : out) cotangents.push_back(torch::randn(o.sizes(), torch::kDouble).to(o.device(), o.scalar_type()));
  auto grads = torch::autograd::grad(out, leaves, cotangents, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  std::vector<torch::Tensor> values;
  for (auto& o : out) values.push_back(o.detach().to(torch::kCPU, torch::kDouble));
  for (auto& g : grads) {
    EXPECT_TRUE(g.defined()) << "an input's gradient is missing";
    values.push_back(g.defined() ? g.to(torch::kCPU, torch::kDouble) : torch::zeros({}, torch::kDouble));
  }
  return values;
}

// ||a - b|| / ||b|| (or ||a - b|| where b is zero).
inline double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  const double scale = b.norm().item<double>();
  return (a - b).norm().item<double>() / (scale > 0 ? scale : 1.0);
}

}  // namespace muonrun::tests

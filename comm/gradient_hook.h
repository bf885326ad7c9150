// A callback for the moment autograd has finished a parameter's gradient,
// which is when the gradient reducer may start communicating it.
#pragma once

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <functional>
#include <memory>

namespace muonrun {

// Calls `ready` each time autograd has accumulated a gradient into `param`
// (after the sum over all its uses in the graph). This is what DDP's C++
// reducer uses (torch/csrc/distributed/c10d/reducer.cpp): a post hook on the
// parameter's AccumulateGrad node. The returned node must be kept alive: the
// parameter only holds it weakly, and a recreated node would have lost the hook.
inline std::shared_ptr<torch::autograd::Node> on_gradient_ready(const torch::Tensor& param,
                                                                std::function<void()> ready) {
  auto accumulator = torch::autograd::impl::grad_accumulator(param);
  TORCH_CHECK(accumulator, "on_gradient_ready: tensor is not a leaf that requires grad");
  accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
      [ready](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
        ready();
        return outputs;
      }));
  return accumulator;
}

}  // namespace muonrun

// Every switch between LibTorch versions lives here, so that the rest of the
// code base reads as if there were only one LibTorch.
//
// Supported: LibTorch 1.13 (Debian 12, CPU only) and 2.x (the GPU machine,
// 2.11 + CUDA 13).
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#define MUONRUN_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||          \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// at::scaled_dot_product_attention (flash / cuDNN / memory-efficient backends)
// arrived in 2.0; 1.13 gets an equivalent masked softmax attention.
#define MUONRUN_HAS_SDPA MUONRUN_TORCH_AT_LEAST(2, 0)

namespace muonrun::compat {

// Causal self-attention over q, k, v of shape [B, H, T, D] with scale
// 1/sqrt(D). LibTorch 2.x picks the fastest kernel (flash / cuDNN on Hopper);
// 1.13 computes the same softmax(q k^T / sqrt(D) + causal mask) v explicitly.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v) {
#if MUONRUN_HAS_SDPA
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/true);
#else
  const int64_t T = q.size(-2);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  auto future = torch::ones({T, T}, torch::dtype(torch::kBool).device(q.device())).triu(1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  auto weights = torch::softmax(scores.to(torch::kFloat), -1).to(q.scalar_type());
  return torch::matmul(weights, v);
#endif
}

}  // namespace muonrun::compat

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace muonrun::compat {

// Calls `ready` each time autograd has accumulated a gradient into `param`
// (after the sum over all its uses in the graph). Tensor post-accumulate-grad
// hooks exist only from 2.1, so this uses what DDP's C++ reducer uses on every
// version: a post hook on the parameter's AccumulateGrad node. The returned
// node must be kept alive: the parameter only holds it weakly, and a
// recreated node would have lost the hook.
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

}  // namespace muonrun::compat

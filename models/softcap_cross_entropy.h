// Soft-capped cross-entropy over one chunk of logits, in place:
//   t = tanh(l / cap),  c = cap * t,  loss_n = logsumexp(c_n) - c_n[target_n]
// and, when asked, the gradient of sum_n loss_n with respect to l written over
// the logits: (softmax(c_n) - one_hot(target_n)) * (1 - t_n^2).
// cap 0 disables the cap (c = l). It is the element-wise half of the chunked
// head (models/chunked_head.h): the chunk's logits come from one matrix
// product, and its gradient goes into two more.
//
// This version is made of LibTorch ops, so it runs on any device: it is the
// CUDA path and the `model.kernels: reference` path, and the reference the
// CPU's one-pass loop (models/softcap_cross_entropy_cpu.h) is tested
// against. It is written for few passes: one tanh and one exp per logit
// (softmax reuses the exponentials of the log-sum-exp; at::logsumexp alone
// costs five times an exp on the CPU), in place or into a reused buffer, so
// no pass allocates (and page-faults) a fresh chunk-sized tensor.
#pragma once

#include <torch/torch.h>

namespace muonrun {

// logits: [n, V] fp32 contiguous, overwritten with the gradient when
// `gradients` (otherwise left in an unspecified state); targets: [n] int64;
// scratch: fp32 with at least n * V elements, overwritten. Returns sum_n
// loss_n as an fp32 scalar on the logits' device.
torch::Tensor softcap_cross_entropy_(torch::Tensor& logits, const torch::Tensor& targets, double softcap,
                                     bool gradients, torch::Tensor& scratch);

}  // namespace muonrun

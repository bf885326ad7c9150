// Soft-capped cross-entropy over one chunk of logits, in place:
//   c = cap * tanh(l / cap),  loss_n = logsumexp(c_n) - c_n[target_n]
// and, when asked, the gradient of sum_n loss_n with respect to l written over
// the logits: (softmax(c_n) - one_hot(target_n)) * (1 - (c_n / cap)^2).
// cap 0 disables the cap (c = l). It is the element-wise half of the chunked
// head (models/chunked_head.h): the chunk's logits come from one matrix
// product, and its gradient goes into two more.
//
// Two implementations of the same formula:
// - composite: a dozen whole-chunk LibTorch ops; each reads and writes the
//   whole chunk (256 MB), so on a CPU every op goes to DRAM;
// - blocked: the same ops on blocks of a few rows at a time, each block small
//   enough to stay in the core's L2 cache while all its ops run (CPU only: on
//   a GPU the thousands of small launches would cost more than they save).
// The head uses blocked on the CPU, composite elsewhere; the tests check one
// against the other and both against autograd of the plain ops.
#pragma once

#include <torch/torch.h>

namespace muonrun {

enum class SoftcapCrossEntropy { composite, blocked };

// logits: [n, V] fp32 contiguous, overwritten with the gradient when
// `gradients` (otherwise left in an unspecified state); targets: [n] int64.
// Returns sum_n loss_n as an fp32 scalar on the logits' device.
torch::Tensor softcap_cross_entropy_(torch::Tensor& logits, const torch::Tensor& targets, double softcap,
                                     bool gradients, SoftcapCrossEntropy how);

}  // namespace muonrun

// The language-model head and its loss without a logits tensor:
//   loss = mean_n CE(cap * tanh(h_n W^T / cap), target_n)
// computed over chunks of tokens, so that neither the [tokens x vocab] fp32
// logits nor their gradient ever exist whole (13 GB a copy for the speedrun's
// 65,536-token micro-batch). While a chunk's logits are at hand the forward
// pass also computes that chunk's share of the gradients of the hidden states
// and of the head weight (as Liger-Kernel's fused linear cross-entropy does,
// linkedin/Liger-Kernel); backward only scales them by the incoming gradient.
// That is the same three matrix products as an unfused forward + backward, and
// no recomputation. Without grad mode only the loss is computed.
#pragma once

#include <torch/torch.h>

#include "models/fp8_linear.h"

namespace muonrun {

// hidden: [N, D] in the compute dtype; weight: [V, D] fp32 (the master
// weight, cast to hidden's dtype for the products); targets: [N] int64.
// softcap 0 disables the cap. `fused`: the soft-cap and cross-entropy of a
// chunk are the one-pass loop of models/softcap_cross_entropy_cpu.h on the
// CPU, and on CUDA (MUONRUN_CUDA builds) the kernel of
// models/softcap_cross_entropy.cu, which works on the bf16 product's output in
// place; otherwise LibTorch's ops (models/softcap_cross_entropy.h) on fp32
// logits. Returns the mean loss, an fp32 scalar; its gradients flow to
// `hidden` (in its dtype) and to `weight` (fp32).
//
// `fp8` (record 29's FP8 head, training only): the three products of each
// chunk are models/fp8_linear.h's, on float8 operands with these static
// scales: logits = (x8 w8^T) in bf16, grad_hidden = (g8 w8) in bf16,
// grad_weight += (x8^T g8)^T in fp32, where g8 is the gradient of the
// chunk's summed loss in e5m2 (the record's scales assume that sum). The
// same function as fp8_linear followed by the soft-capped cross-entropy,
// without the [N x vocab] logits. On CUDA, N, D and the vocabulary must be
// multiples of 16, and chunk_tokens is rounded down to one.
torch::Tensor chunked_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                                const torch::Tensor& targets, double softcap, int64_t chunk_tokens, bool fused,
                                const Fp8Scales* fp8 = nullptr);

// The head of the packed-document records (29 on): logits 30 sigmoid(z / 7.5)
// = 15 tanh(z / 15) + 15, and cross-entropy does not change when every logit
// moves by the same constant, so the loss is the chunked head's with soft-cap
// 15; the chunk is sized to about 64 M logits. `fp8`: the records' FP8 product
// (record_head_scales of the hidden width). Returns the mean over tokens.
torch::Tensor sigmoid_capped_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                                       const torch::Tensor& targets, bool fused, bool fp8);
// That head's fp32 logits 30 sigmoid(z / 7.5), z = hidden weight^T in hidden's
// dtype (sampling and HellaSwag read them).
torch::Tensor sigmoid_capped_logits(const torch::Tensor& hidden, const torch::Tensor& weight);

}  // namespace muonrun

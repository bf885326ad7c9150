// The GPT of speedrun record 11 (KellerJordan/modded-nanogpt record 11,
// train_gpt2.py): the network and nothing else.
//
//   embed -> rmsnorm = x0
//   12 blocks; block i: x = l0*x + l1*x0
//                       x = x + attn(norm(x))   (QK-norm, rotary, value residual)
//                       x = x + mlp(norm(x))    (relu^2)
//   blocks 0..5 push x, blocks 6..11 first add skip_weight * pop()  (U-net)
//   norm -> lm_head -> 30*tanh(logits/30) -> cross-entropy in fp32
//
// The element-wise steps (norms, QK-norm + rotary, relu^2, the residual mixes
// folded into the norms after them) go through ElementwiseOps: one fused op
// each, or the composite LibTorch ops they replace (model.kernels).
//
// Parameters stay in fp32 (the master weights); forward casts them to the
// compute dtype (bf16 on CUDA, fp32 on the CPU), as CastedLinear in
// modded-nanogpt's train_gpt2.py.
// Parameter names follow the PyTorch speedrun script, so a safetensors file
// written from here opens with the same keys there:
//   transformer.wte.weight            [vocab_padded, dim]
//   transformer.h.<i>.attn.c_q.weight [heads*head_dim, dim]   (also c_k, c_v)
//   transformer.h.<i>.attn.c_proj.weight [dim, heads*head_dim]
//   transformer.h.<i>.attn.lamb       []   value-residual mix
//   transformer.h.<i>.mlp.c_fc.weight [mlp_ratio*dim, dim]
//   transformer.h.<i>.mlp.c_proj.weight [dim, mlp_ratio*dim]
//   transformer.h.<i>.lambdas         [2]  embedding-skip mix
//   skip_weights                      [layers - layers/2]
//   lm_head.weight                    [vocab_padded, dim]
#pragma once

#include <torch/torch.h>

#include "models/casted_linear.h"
#include "models/elementwise_ops.h"
#include "models/language_model.h"
#include "models/model_config.h"
#include "models/rotary.h"

namespace muonrun {

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ModelConfig& config);
  // `v1` is the first block's values (undefined in the first block); returns
  // the output and this block's v1.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& v1,
                                                  const torch::Tensor& cos, const torch::Tensor& sin,
                                                  const ElementwiseOps& ops);
  int64_t heads, head_dim;
  CastedLinear c_q{nullptr}, c_k{nullptr}, c_v{nullptr}, c_proj{nullptr};
  torch::Tensor lamb;
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const ElementwiseOps& ops);
  CastedLinear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Mlp);

struct BlockImpl : torch::nn::Module {
  explicit BlockImpl(const ModelConfig& config);
  // `skip` (weight `skip_weight`) is the U-net connection added to x before
  // the block's mix, or undefined.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& v1,
                                                  const torch::Tensor& x0, const torch::Tensor& skip,
                                                  const torch::Tensor& skip_weight,
                                                  const torch::Tensor& cos, const torch::Tensor& sin,
                                                  const ElementwiseOps& ops);
  Attention attn{nullptr};
  Mlp mlp{nullptr};
  torch::Tensor lambdas;
};
TORCH_MODULE(Block);

struct GPTImpl : LanguageModelImpl {
  explicit GPTImpl(const ModelConfig& config);

  // Logits [B, T, vocab_padded] in fp32, soft-capped. idx: [B, T] int64.
  torch::Tensor forward(const torch::Tensor& idx);
  // Mean cross-entropy of next-token prediction, fp32 scalar, computed by
  // chunks of tokens without a logits tensor (models/chunked_head.h).
  torch::Tensor loss(const torch::Tensor& idx, const torch::Tensor& targets);
  // The normalised hidden states that enter the head: [B, T, dim].
  torch::Tensor hidden_states(const torch::Tensor& idx);

  // LanguageModelImpl: rows of tokens, the mean loss both for backward and logs.
  BatchLayout layout() const override { return BatchLayout::rows; }
  Loss loss(const TokenBatch& batch) override;
  torch::Tensor document_logits(const torch::Tensor& tokens) override;
  void set_compute_dtype(torch::ScalarType dtype) override { compute_dtype = dtype; }
  FlopsPerToken flops_per_token(int64_t seq_len) const override;

  ModelConfig config;
  torch::ScalarType compute_dtype = torch::kFloat;
  torch::nn::ModuleDict transformer{nullptr};
  torch::nn::Embedding wte{nullptr};
  torch::nn::ModuleList h{nullptr};
  CastedLinear lm_head{nullptr};
  torch::Tensor skip_weights;

 private:
  // The element-wise ops model.kernels chooses.
  ElementwiseOps elementwise_ops() const;
  // Rotary tables for sequence length T: cos, sin of shape [1, T, 1, head_dim/2].
  std::pair<torch::Tensor, torch::Tensor> rotary(int64_t T, torch::Device device);
  torch::Tensor rotary_cos_, rotary_sin_;
};
TORCH_MODULE(GPT);

// Causal self-attention over q, k, v of shape [B, H, T, D] with scale
// 1/sqrt(D): LibTorch's scaled_dot_product_attention, which picks the fastest
// kernel (flash / cuDNN on Hopper, a fused CPU kernel otherwise).
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace muonrun

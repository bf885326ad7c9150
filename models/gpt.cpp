#include "models/gpt.h"


#include <cfloat>
#include <cmath>

#include "models/chunked_head.h"

namespace muonrun {

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
}

// --- Attention --------------------------------------------------------------
AttentionImpl::AttentionImpl(const ModelConfig& config)
    : heads(config.heads), head_dim(config.head_dim) {
  const int64_t inner = heads * head_dim;
  c_q = register_module("c_q", CastedLinear(config.dim, inner, false));
  c_k = register_module("c_k", CastedLinear(config.dim, inner, false));
  c_v = register_module("c_v", CastedLinear(config.dim, inner, false));
  c_proj = register_module("c_proj", CastedLinear(inner, config.dim, true));
  lamb = register_parameter("lamb", torch::tensor(0.5f));
}

std::pair<torch::Tensor, torch::Tensor> AttentionImpl::forward(const torch::Tensor& x,
                                                               const torch::Tensor& v1_in,
                                                               const torch::Tensor& cos,
                                                               const torch::Tensor& sin,
                                                               const ElementwiseOps& ops) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = c_q(x).view({B, T, heads, head_dim});
  auto k = c_k(x).view({B, T, heads, head_dim});
  auto v = c_v(x).view({B, T, heads, head_dim});
  // Value residual: every block mixes in the first block's values.
  auto v1 = v1_in.defined() ? v1_in : v;
  auto l = lamb.to(x.scalar_type());
  v = (1 - l) * v + l * v1;
  // QK-norm and rotary, into attention's [B, H, T, D].
  auto y = causal_attention(ops.qk_norm_rotary(q, cos, sin), ops.qk_norm_rotary(k, cos, sin),
                            v.transpose(1, 2));
  y = y.transpose(1, 2).contiguous().view({B, T, heads * head_dim});
  return {c_proj(y), v1};
}

// --- MLP and Block ----------------------------------------------------------
MlpImpl::MlpImpl(const ModelConfig& config) {
  const int64_t hidden = config.mlp_ratio * config.dim;
  c_fc = register_module("c_fc", CastedLinear(config.dim, hidden, false));
  c_proj = register_module("c_proj", CastedLinear(hidden, config.dim, true));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x, const ElementwiseOps& ops) {
  return c_proj(ops.relu_square(c_fc(x)));
}

BlockImpl::BlockImpl(const ModelConfig& config) {
  attn = register_module("attn", Attention(config));
  mlp = register_module("mlp", Mlp(config));
  lambdas = register_parameter("lambdas", torch::tensor({1.0f, 0.0f}));
}

std::pair<torch::Tensor, torch::Tensor> BlockImpl::forward(
    const torch::Tensor& x_in, const torch::Tensor& v1, const torch::Tensor& x0, const torch::Tensor& skip,
    const torch::Tensor& skip_weight, const torch::Tensor& cos, const torch::Tensor& sin,
    const ElementwiseOps& ops) {
  // x = l0 * (x_in + s * skip) + l1 * x0, and norm(x) for attention.
  auto in = ops.block_input(x_in, x0, lambdas, skip, skip_weight);
  auto [attn_out, v1_out] = attn->forward(in.normed, v1, cos, sin, ops);
  // x = x + attn_out, and norm(x) for the MLP.
  auto mid = ops.add_norm(in.x, attn_out);
  return {mid.x + mlp->forward(mid.normed, ops), v1_out};
}

// --- GPT --------------------------------------------------------------------
GPTImpl::GPTImpl(const ModelConfig& model_config) : config(model_config) {
  TORCH_CHECK(config.head_dim % 2 == 0, "model.head_dim must be even for rotary embeddings, got ",
              config.head_dim);
  const int64_t vocab = padded_vocab(config);
  transformer = register_module("transformer", torch::nn::ModuleDict());
  wte = torch::nn::Embedding(vocab, config.dim);  // init N(0, 1)
  h = torch::nn::ModuleList();
  for (int64_t i = 0; i < config.layers; ++i) h->push_back(Block(config));
  transformer->update(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"wte", wte.ptr()}, {"h", h.ptr()}});
  lm_head = register_module("lm_head", CastedLinear(config.dim, vocab, true));
  skip_weights = register_parameter("skip_weights",
                                    torch::ones({config.layers - config.layers / 2}));
}

std::pair<torch::Tensor, torch::Tensor> GPTImpl::rotary(int64_t T, torch::Device device) {
  if (!rotary_cos_.defined() || rotary_cos_.size(1) != T || rotary_cos_.device() != device ||
      rotary_cos_.scalar_type() != compute_dtype) {
    const int64_t half = config.head_dim / 2;
    auto [cos, sin] = rotary_tables(T, config.head_dim, config.rope_base, compute_dtype, device);
    rotary_cos_ = cos.view({1, T, 1, half});
    rotary_sin_ = sin.view({1, T, 1, half});
  }
  return {rotary_cos_, rotary_sin_};
}

ElementwiseOps GPTImpl::elementwise_ops() const { return ElementwiseOps{fused_kernels(config.kernels)}; }

torch::Tensor GPTImpl::hidden_states(const torch::Tensor& idx) {
  const auto ops = elementwise_ops();
  auto [cos, sin] = rotary(idx.size(1), idx.device());
  auto x = ops.norm(wte(idx).to(compute_dtype));
  auto x0 = x;
  torch::Tensor v1;
  const int64_t encoder_layers = config.layers / 2;
  std::vector<torch::Tensor> skips;
  for (int64_t i = 0; i < config.layers; ++i) {
    // U-net: decoder block j adds the output of encoder block (encoder_layers - 1 - j).
    torch::Tensor skip, skip_weight;
    if (i >= encoder_layers && !skips.empty()) {
      skip = skips.back();
      skip_weight = skip_weights[i - encoder_layers];
      skips.pop_back();
    }
    std::tie(x, v1) = h[i]->as<Block>()->forward(x, v1, x0, skip, skip_weight, cos, sin, ops);
    if (i < encoder_layers) skips.push_back(x);
  }
  return ops.norm(x);
}

torch::Tensor GPTImpl::forward(const torch::Tensor& idx) {
  auto logits = lm_head(hidden_states(idx)).to(torch::kFloat);
  if (config.logit_softcap > 0)
    logits = config.logit_softcap * torch::tanh(logits / config.logit_softcap);
  return logits;
}

torch::Tensor GPTImpl::loss(const torch::Tensor& idx, const torch::Tensor& targets) {
  // Chunks of at most 2^26 logits (256 MB in fp32): 1,334 tokens of the
  // padded GPT-2 vocabulary, large enough to keep the matrix products efficient.
  const int64_t vocab = lm_head->weight.size(0);
  const int64_t chunk_tokens = std::max<int64_t>(1, (int64_t{1} << 26) / vocab);
  auto h = hidden_states(idx);
  return chunked_head_loss(h.reshape({-1, h.size(-1)}), lm_head->weight, targets.reshape({-1}),
                           config.logit_softcap, chunk_tokens, elementwise_ops().fused);
}

Loss GPTImpl::loss(const TokenBatch& batch) { return {loss(batch.inputs, batch.targets)}; }

FlopsPerToken GPTImpl::flops_per_token(int64_t seq_len) const {
  FlopsPerToken f;
  for (const auto& p : named_parameters())
    if (p.key() != "transformer.wte.weight") f.matmul_params += p.value().numel();
  f.channels = static_cast<double>(config.heads * config.head_dim);
  f.attended_keys = static_cast<double>(config.layers * seq_len);
  return f;
}

torch::Tensor GPTImpl::document_logits(const torch::Tensor& tokens) { return forward(tokens.unsqueeze(0))[0]; }

}  // namespace muonrun

#include "models/gpt.h"

#include <cfloat>
#include <cmath>

#include "models/chunked_head.h"

namespace muonrun {

int64_t padded_vocab(const ModelConfig& config) {
  return (config.vocab_size + config.vocab_multiple - 1) / config.vocab_multiple *
         config.vocab_multiple;
}

torch::Tensor rms_norm(const torch::Tensor& x) {
  auto x32 = x.to(torch::kFloat);
  auto inv_rms = torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + FLT_EPSILON);
  return (x32 * inv_rms).to(x.scalar_type());
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos,
                           const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto y1 = x1 * cos + x2 * sin;
  auto y2 = x2 * cos - x1 * sin;
  return torch::cat({y1, y2}, -1).to(x.scalar_type());
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
}

// --- CastedLinear -----------------------------------------------------------
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
                                                               const torch::Tensor& sin) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = c_q(x).view({B, T, heads, head_dim});
  auto k = c_k(x).view({B, T, heads, head_dim});
  auto v = c_v(x).view({B, T, heads, head_dim});
  // Value residual: every block mixes in the first block's values.
  auto v1 = v1_in.defined() ? v1_in : v;
  auto l = lamb.to(x.scalar_type());
  v = (1 - l) * v + l * v1;
  q = apply_rotary(rms_norm(q), cos, sin);
  k = apply_rotary(rms_norm(k), cos, sin);
  auto y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));
  y = y.transpose(1, 2).contiguous().view({B, T, heads * head_dim});
  return {c_proj(y), v1};
}

// --- MLP and Block ----------------------------------------------------------
MlpImpl::MlpImpl(const ModelConfig& config) {
  const int64_t hidden = config.mlp_ratio * config.dim;
  c_fc = register_module("c_fc", CastedLinear(config.dim, hidden, false));
  c_proj = register_module("c_proj", CastedLinear(hidden, config.dim, true));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return c_proj(torch::relu(c_fc(x)).square());
}

BlockImpl::BlockImpl(const ModelConfig& config) {
  attn = register_module("attn", Attention(config));
  mlp = register_module("mlp", Mlp(config));
  lambdas = register_parameter("lambdas", torch::tensor({1.0f, 0.0f}));
}

std::pair<torch::Tensor, torch::Tensor> BlockImpl::forward(const torch::Tensor& x_in,
                                                           const torch::Tensor& v1,
                                                           const torch::Tensor& x0,
                                                           const torch::Tensor& cos,
                                                           const torch::Tensor& sin) {
  auto l = lambdas.to(x_in.scalar_type());
  auto x = l[0] * x_in + l[1] * x0;
  auto [attn_out, v1_out] = attn(rms_norm(x), v1, cos, sin);
  x = x + attn_out;
  x = x + mlp(rms_norm(x));
  return {x, v1_out};
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
    const int64_t D = config.head_dim;
    auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
    auto inv_freq = 1.0 / torch::pow(config.rope_base, torch::arange(0, D, 2, opts) / D);
    auto freqs = torch::outer(torch::arange(T, opts), inv_freq);
    rotary_cos_ = freqs.cos().to(compute_dtype).view({1, T, 1, D / 2});
    rotary_sin_ = freqs.sin().to(compute_dtype).view({1, T, 1, D / 2});
  }
  return {rotary_cos_, rotary_sin_};
}

torch::Tensor GPTImpl::hidden_states(const torch::Tensor& idx) {
  auto [cos, sin] = rotary(idx.size(1), idx.device());
  auto x = rms_norm(wte(idx).to(compute_dtype));
  auto x0 = x;
  torch::Tensor v1;
  const int64_t encoder_layers = config.layers / 2;
  std::vector<torch::Tensor> skips;
  auto skip = skip_weights.to(compute_dtype);
  for (int64_t i = 0; i < config.layers; ++i) {
    if (i >= encoder_layers) {
      // U-net: decoder block j adds the output of encoder block (encoder_layers - 1 - j).
      const int64_t j = i - encoder_layers;
      if (!skips.empty()) {
        x = x + skip[j] * skips.back();
        skips.pop_back();
      }
    }
    std::tie(x, v1) = h[i]->as<Block>()->forward(x, v1, x0, cos, sin);
    if (i < encoder_layers) skips.push_back(x);
  }
  return rms_norm(x);
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
                           config.logit_softcap, chunk_tokens);
}

}  // namespace muonrun

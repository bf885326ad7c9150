#include "models/record29.h"

#include <fmt/format.h>

#include <cmath>

#include "models/chunked_head.h"
#include "models/packed_model.h"
#include "models/doc_window_attention.h"
#include "models/fp8_linear.h"
#include "models/rotary.h"
#include "trainer/base/config_error.h"

namespace muonrun {


Record29Config record29_config(const ModelConfig& model) {
  Record29Config c;
  c.vocab_padded = padded_vocab(model);
  c.dim = model.dim;
  c.heads = model.heads;
  c.head_dim = model.head_dim;
  c.layers = model.layers;
  check_packed_model_shape(model, "record29");
  c.windows = parse_window_pattern(model.windows, c.layers, "model.windows");
  c.value_embed = parse_value_embed_pattern(model.value_embeds, c.layers, "model.value_embeds");
  c.window_schedule = parse_window_schedule(model.window_schedule, "model.window_schedule");
  c.window_block = model.window_block;
  c.attn_scale = model.attn_scale;
  c.gate_dim = model.attn_gate_dim;
  c.fp8_head = model.fp8_head;
  c.scalar_padding = (8 - (5 * c.layers) % 8) % 8;
  c.fused_kernels = fused_kernels(model.kernels);
  return c;
}

// --- Attention ----------------------------------------------------------------
Attention29Impl::Attention29Impl(const Record29Config& config)
    : heads(config.heads), head_dim(config.head_dim), gate_dim(config.gate_dim), scale(config.attn_scale) {
  const int64_t dim = config.dim;
  // q, k, v, o stacked: one parameter, the four orthogonalised separately by Muon.
  auto w = speedrun_uniform_init({4, dim, dim}, dim);
  w[3].zero_();  // the output projection starts at zero
  qkvo_w = register_parameter("qkvo_w", w);
  attn_gate = register_module("attn_gate", CastedLinear(gate_dim, heads, /*zero_init=*/true));
}

torch::Tensor Attention29Impl::forward(const torch::Tensor& x, const torch::Tensor& ve, const torch::Tensor& sa,
                                       const DocumentOffsets& documents, int64_t window, const torch::Tensor& cos,
                                       const torch::Tensor& sin, const ElementwiseOps& ops) {
  const int64_t T = x.size(0), dim = qkvo_w.size(1);
  const auto dtype = x.scalar_type();
  auto qkv = torch::nn::functional::linear(x, qkvo_w.narrow(0, 0, 3).reshape({3 * dim, dim}).to(dtype));
  auto parts = qkv.view({T, 3 * heads, head_dim}).chunk(3, 1);
  // QK-norm, then rotary in fp32 on the normed values.
  auto rotate = [&](const torch::Tensor& t) {
    return apply_rotary(ops.norm(t).to(torch::kFloat), cos, sin).to(dtype);
  };
  auto q = rotate(parts[0]), k = rotate(parts[1]);
  const auto l = sa.to(dtype);
  auto v = ve.defined() ? l[0] * parts[2] + l[1] * ve.view({T, heads, head_dim}) : l[0] * parts[2];
  auto y = doc_window_attention(q, k, v, documents, window, scale);  // [T, heads, head_dim]
  // The sparse attention gate: per head, from the first gate_dim channels.
  auto gate = torch::sigmoid(attn_gate(x.narrow(1, 0, gate_dim)));  // [T, heads]
  y = (y * gate.unsqueeze(-1)).reshape({T, heads * head_dim});
  return torch::nn::functional::linear(y, qkvo_w[3].to(dtype));
}

// --- MLP and block --------------------------------------------------------------
Mlp29Impl::Mlp29Impl(int64_t dim) {
  // Both stored [dim, 4 dim] ("the optimizer sorts params by shape").
  c_fc = register_parameter("c_fc", speedrun_uniform_init({dim, 4 * dim}, dim));
  c_proj = register_parameter("c_proj", torch::zeros({dim, 4 * dim}));
}

torch::Tensor Mlp29Impl::forward(const torch::Tensor& x, const ElementwiseOps& ops) {
  const auto dtype = x.scalar_type();
  auto h = ops.relu_square(torch::matmul(x, c_fc.to(dtype)));
  return torch::nn::functional::linear(h, c_proj.to(dtype));
}

Block29Impl::Block29Impl(const Record29Config& config, bool attention) {
  if (attention) attn = register_module("attn", Attention29(config));
  mlp = register_module("mlp", Mlp29(config.dim));
}

// --- The model --------------------------------------------------------------------
Record29Impl::Record29Impl(Record29Config model_config) : config(std::move(model_config)) {
  const int64_t L = config.layers, dim = config.dim, vocab = config.vocab_padded;
  TORCH_CHECK(config.heads * config.head_dim == dim, "record 29's attention needs heads x head_dim == dim, got ",
              config.heads, " x ", config.head_dim, " and ", dim);
  TORCH_CHECK(static_cast<int64_t>(config.windows.size()) == L && static_cast<int64_t>(config.value_embed.size()) == L,
              "record 29: one window and one value-embedding entry per layer");
  TORCH_CHECK(config.gate_dim <= dim, "the attention gate reads ", config.gate_dim, " of ", dim, " channels");
  embed = register_module("embed", torch::nn::Embedding(vocab, dim));  // N(0, 1)
  value_embeds = register_module("value_embeds", torch::nn::ModuleList());
  for (int k = 0; k < 3; ++k) value_embeds->push_back(torch::nn::Embedding(vocab, dim));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < L; ++i) blocks->push_back(Block29(config, config.windows[i] != LayerWindow::none));
  lm_head = register_module("lm_head", CastedLinear(dim, vocab, /*zero_init=*/true));
  scalars = register_parameter(
      "scalars", torch::cat({torch::ones({L}), torch::tensor({1.0f, 0.0f}).repeat({L}),
                             torch::tensor({0.5f, 0.5f}).repeat({L}), torch::ones({config.scalar_padding})}));
  TORCH_CHECK(!config.window_schedule.empty() && config.window_block >= 1, "record 29: an empty window schedule");
  set_windows(config.window_schedule.back());
  rotary_.set_freqs(half_truncated_rotary_freqs(config.head_dim, torch::kCPU));
}

void Record29Impl::set_windows(int64_t blocks) {
  long_window_ = blocks * config.window_block;
  short_window_ = (blocks / 2) * config.window_block;
}

void Record29Impl::set_progress(const TrainingProgress& progress) {
  const int64_t step = progress.step, steps = progress.steps;
  // get_ws as the record computes it, in floating point: x = step / (steps + 1),
  // entry int(n x), so that step `steps` (the last validation) still uses the last entry.
  const auto n = static_cast<int64_t>(config.window_schedule.size());
  const double x = static_cast<double>(step) / static_cast<double>(steps + 1);
  const int64_t index = std::min(n - 1, static_cast<int64_t>(static_cast<double>(n) * x));
  set_windows(config.window_schedule[static_cast<size_t>(std::max<int64_t>(0, index))]);
}

torch::Tensor Record29Impl::hidden_states(const torch::Tensor& inputs, const torch::Tensor& cu_seqlens,
                                          int64_t long_window, int64_t short_window) {
  const ElementwiseOps ops{config.fused_kernels};
  const int64_t L = config.layers, n = L / 2, T = inputs.size(0);
  const auto [cos, sin] = rotary_.tables(T, inputs.device());
  const auto documents = document_offsets(cu_seqlens, T, inputs.device());  // checked once for every layer
  std::vector<torch::Tensor> ve(3);
  for (int k = 0; k < 3; ++k)
    ve[k] = value_embeds[k]->as<torch::nn::Embedding>()->forward(inputs).to(compute_dtype);
  auto skip_weights = scalars.narrow(0, 0, L);
  auto lambdas = scalars.narrow(0, L, 2 * L).view({L, 2});
  auto sa_lambdas = scalars.narrow(0, 3 * L, 2 * L).view({L, 2});

  auto x = ops.norm(embed(inputs).to(compute_dtype));
  const auto x0 = x;
  std::vector<torch::Tensor> skips;
  for (int64_t i = 0; i < L; ++i) {
    auto& block = *blocks[i]->as<Block29>();
    if (i >= n) {  // U-net: the decoder half adds the encoder's outputs, last in first out
      x = x + skip_weights[i - n].to(compute_dtype) * skips.back();
      skips.pop_back();
    }
    const auto l = lambdas[i].to(compute_dtype);
    x = l[0] * x + l[1] * x0;
    if (block.attn) {
      const int64_t window = config.windows[i] == LayerWindow::long_window ? long_window : short_window;
      const int table = config.value_embed[i];
      x = x + block.attn->forward(ops.norm(x), table >= 0 ? ve[table] : torch::Tensor(), sa_lambdas[i],
                                  documents, window, cos, sin, ops);
    }
    x = x + block.mlp->forward(ops.norm(x), ops);
    if (i < n) skips.push_back(x);
  }
  return ops.norm(x);
}

torch::Tensor Record29Impl::loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                                 const torch::Tensor& cu_seqlens, int64_t long_window, int64_t short_window) {
  TORCH_CHECK(inputs.dim() == 1 && targets.sizes() == inputs.sizes(),
              "record 29 trains on one packed sequence: inputs and targets [T]");
  auto h = hidden_states(inputs, cu_seqlens, long_window, short_window);
  const double T = static_cast<double>(inputs.size(0));
  // The record's FP8 head (CastedLinear with use_fp8) in training; evaluation
  // and sampling use the bf16 product.
  auto mean = sigmoid_capped_head_loss(h, lm_head->weight, targets, config.fused_kernels,
                                       config.fp8_head && is_training());
  return is_training() ? mean * T : mean;
}

Loss Record29Impl::loss(const TokenBatch& batch) {
  TORCH_CHECK(batch.cu_seqlens.defined(), "record 29 needs document offsets (cu_seqlens) with its tokens");
  auto loss = this->loss(batch.inputs, batch.targets, batch.cu_seqlens, long_window_, short_window_);
  return {loss, is_training() ? 1.0 / static_cast<double>(batch.tokens()) : 1.0};
}

FlopsPerToken Record29Impl::flops_per_token(int64_t seq_len) const {
  return windowed_flops_per_token(*this, config.windows, config.heads * config.head_dim, long_window_, short_window_,
                                  seq_len);
}

torch::Tensor Record29Impl::document_logits(const torch::Tensor& tokens) {
  const auto T = static_cast<int32_t>(tokens.size(0));
  const auto cu_seqlens = torch::tensor({0, T}, torch::kInt);
  return sigmoid_capped_logits(hidden_states(tokens, cu_seqlens, long_window_, short_window_), lm_head->weight);
}

}  // namespace muonrun

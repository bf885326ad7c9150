#include "models/record50.h"

#include <fmt/format.h>

#include "models/chunked_head.h"
#include "models/packed_model.h"
#include "models/key_offset.h"
#include "models/rotary.h"
#include "models/smear.h"
#include "models/yarn.h"
#include "trainer/base/config_error.h"

namespace muonrun {

Record50Config record50_config(const ModelConfig& model) {
  Record50Config c;
  c.vocab_padded = padded_vocab(model);
  c.dim = model.dim;
  c.heads = model.heads;
  c.head_dim = model.head_dim;
  c.layers = model.layers;
  check_packed_model_shape(model, "record50");
  c.windows = parse_window_pattern(model.windows, c.layers, "model.windows");
  c.value_embed = parse_value_embed_pattern(model.value_embeds, c.layers, "model.value_embeds");
  c.mlp = parse_mlp_pattern(model.mlps, c.layers, "model.mlps");
  c.window_schedule = parse_window_schedule(model.window_schedule, "model.window_schedule");
  c.window_block = model.window_block;
  c.attn_scale = model.attn_scale;
  c.gate_dim = model.attn_gate_dim;
  c.fp8_head = model.fp8_head;
  c.smear = model.smear;
  c.key_offset = model.key_offset;
  c.yarn = model.yarn;
  c.skips = parse_skip_pattern(model.skips, c.layers, "model.skips");
  c.backout_layer = model.backout_layer;
  if (c.backout_layer >= c.layers)
    throw ConfigError(fmt::format("model.backout_layer ({}) must be a layer below model.layers ({}), or -1",
                                  c.backout_layer, c.layers));
  c.extension_window = model.extension_window > 0 ? model.extension_window : c.window_schedule.back();
  c.final_window = model.final_window > 0 ? model.final_window : c.extension_window;
  c.scalar_padding = (8 - (4 * c.layers + 2 + static_cast<int64_t>(c.skips.size())) % 8) % 8;
  c.fused_kernels = fused_kernels(model.kernels);
  return c;
}

// --- Attention ----------------------------------------------------------------
Attention50Impl::Attention50Impl(const Record50Config& config)
    : heads(config.heads), head_dim(config.head_dim), gate_dim(config.gate_dim) {
  const int64_t dim = config.dim;
  auto w = speedrun_uniform_init({4, dim, dim}, dim);
  w[3].zero_();  // the output projection starts at zero
  qkvo_w = register_parameter("qkvo_w", w);
  attn_gate = register_module("attn_gate", CastedLinear(gate_dim, heads, /*zero_init=*/true));
}

torch::Tensor Attention50Impl::forward(const torch::Tensor& h, const torch::Tensor& ve, const torch::Tensor& sa,
                                       const DocumentOffsets& documents, int64_t window, double scale,
                                       bool key_offset, const torch::Tensor& cos, const torch::Tensor& sin,
                                       const ElementwiseOps& ops) {
  const int64_t T = h.size(0), dim = qkvo_w.size(1);
  const auto dtype = h.scalar_type();
  const auto l = sa.to(dtype);
  // The attention lambdas folded into the weights: l0 scales q, k and v (the
  // norms of q and k take it out again), l1 the output.
  auto qkv = torch::nn::functional::linear(h, l[0] * qkvo_w.narrow(0, 0, 3).reshape({3 * dim, dim}).to(dtype));
  auto parts = qkv.view({T, 3 * heads, head_dim}).chunk(3, 1);
  auto rotate = [&](const torch::Tensor& t) {
    return apply_rotary(ops.norm(t).to(torch::kFloat), cos, sin).to(dtype);
  };
  auto q = rotate(parts[0]), k = rotate(parts[1]);
  if (key_offset) k = partial_key_offset(k);
  auto v = ve.defined() ? parts[2] + ve.view({T, heads, head_dim}) : parts[2];
  auto y = doc_window_attention(q, k, v, documents, window, scale);
  auto gate = torch::sigmoid(attn_gate(h.narrow(1, 0, gate_dim)));  // [T, heads]
  y = (y * gate.unsqueeze(-1)).reshape({T, heads * head_dim});
  return torch::nn::functional::linear(y, l[1] * qkvo_w[3].to(dtype));
}

// --- MLP and block --------------------------------------------------------------
Mlp50Impl::Mlp50Impl(int64_t dim) {
  c_fc = register_parameter("c_fc", speedrun_uniform_init({4 * dim, dim}, dim));
  c_proj = register_parameter("c_proj", torch::zeros({4 * dim, dim}));
}

torch::Tensor Mlp50Impl::forward(const torch::Tensor& x, const ElementwiseOps& ops) {
  const auto dtype = x.scalar_type();
  auto h = ops.relu_square(torch::nn::functional::linear(x, c_fc.to(dtype)));
  return torch::matmul(h, c_proj.to(dtype));
}

Block50Impl::Block50Impl(const Record50Config& config, bool attention, bool has_mlp) {
  if (attention) attn = register_module("attn", Attention50(config));
  if (has_mlp) mlp = register_module("mlp", Mlp50(config.dim));
}

// --- The model --------------------------------------------------------------------
Record50Impl::Record50Impl(Record50Config model_config) : config(std::move(model_config)) {
  const int64_t L = config.layers, dim = config.dim, vocab = config.vocab_padded;
  TORCH_CHECK(config.heads * config.head_dim == dim, "record 50's attention needs heads x head_dim == dim");
  TORCH_CHECK(static_cast<int64_t>(config.windows.size()) == L && static_cast<int64_t>(config.value_embed.size()) == L &&
                  static_cast<int64_t>(config.mlp.size()) == L,
              "record 50: one window, one value-embedding entry and one MLP flag per layer");
  TORCH_CHECK(config.gate_dim <= dim, "the gates read ", config.gate_dim, " of ", dim, " channels");
  TORCH_CHECK(!config.window_schedule.empty() && config.window_block >= 1, "record 50: an empty window schedule");
  embed = register_module("embed", torch::nn::Embedding(vocab, dim));  // N(0, 1)
  smear_gate = register_module("smear_gate", CastedLinear(config.gate_dim, 1, /*zero_init=*/true));
  value_embeds = register_module("value_embeds", torch::nn::ModuleList());
  for (int k = 0; k < 3; ++k) {
    torch::nn::Embedding table(vocab, dim);
    torch::NoGradGuard no_grad;
    table->weight.zero_();  // record 49: value embeddings start at zero
    value_embeds->push_back(table);
  }
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < L; ++i)
    blocks->push_back(Block50(config, config.windows[i] != LayerWindow::none, config.mlp[static_cast<size_t>(i)]));
  lm_head = register_module("lm_head", CastedLinear(dim, vocab, /*zero_init=*/true));
  scalars = register_parameter(
      "scalars", torch::cat({torch::full({L}, 1.1f), torch::zeros({L}), torch::tensor({0.5f, 1.0f}).repeat({L}),
                             torch::tensor({0.0f, 0.5f}), torch::full({static_cast<int64_t>(config.skips.size())}, -1.5f),
                             torch::ones({config.scalar_padding})}));
  // Before any set_progress: the trained structure, as after training.
  set_progress({0, 0, 0});
}

void Record50Impl::set_progress(const TrainingProgress& progress) {
  // The long windows of training so far, which YaRN's state follows: the
  // schedule's entries up to the current one (the record's get_ws), then the
  // extension's.
  const int64_t scheduled = progress.scheduled_steps();
  std::vector<int64_t> visited = config.window_schedule;
  if (progress.step < scheduled) {
    visited.resize(schedule_stage(progress.step, scheduled, visited.size()) + 1);
  } else {
    visited.push_back(config.extension_window);
  }
  if (progress.step >= progress.steps)  // the final validation: longer windows, YaRN as trained
    set_windows(config.final_window, config.extension_window / 2, visited);
  else
    set_windows(visited.back(), visited.back() / 2, visited);
}

void Record50Impl::set_windows(int64_t long_blocks, int64_t short_blocks, std::vector<int64_t> yarn_windows) {
  long_window_ = long_blocks * config.window_block;
  short_window_ = short_blocks * config.window_block;
  if (!config.yarn) yarn_windows.resize(1);
  if (rotary_.freqs().defined() && yarn_windows == yarn_windows_) return;
  const auto state = yarn_state(config.head_dim, config.window_block, config.attn_scale, yarn_windows);
  yarn_windows_ = std::move(yarn_windows);
  rotary_.set_freqs(state.freq);
  attn_scale_ = state.attn_scale;
}

torch::Tensor Record50Impl::hidden_states(const torch::Tensor& inputs, const torch::Tensor& cu_seqlens) {
  const ElementwiseOps ops{config.fused_kernels};
  const int64_t L = config.layers, T = inputs.size(0);
  const auto [cos, sin] = rotary_.tables(T, inputs.device());
  const auto documents = document_offsets(cu_seqlens, T, inputs.device());
  std::vector<torch::Tensor> ve(3);
  for (int k = 0; k < 3; ++k)
    ve[k] = value_embeds[k]->as<torch::nn::Embedding>()->forward(inputs).to(compute_dtype);
  const auto resid_lambdas = scalars.narrow(0, 0, L).to(compute_dtype);
  const auto x0_lambdas = scalars.narrow(0, L, L).to(compute_dtype);
  const auto sa_lambdas = scalars.narrow(0, 2 * L, 2 * L).view({L, 2});
  const auto smear_lambda = scalars[4 * L], backout_lambda = scalars[4 * L + 1];
  const auto skip_gates = torch::sigmoid(scalars.narrow(0, 4 * L + 2, static_cast<int64_t>(config.skips.size())))
                              .to(compute_dtype);

  auto x = embed(inputs).to(compute_dtype);
  if (config.smear) x = smear(x, smear_gate->weight, smear_lambda);
  x = ops.norm(x);
  const auto x0 = x;
  std::vector<torch::Tensor> outputs(static_cast<size_t>(L));  // the layers' outputs that skips carry
  torch::Tensor backout;
  for (int64_t i = 0; i < L; ++i) {
    auto& block = *blocks[i]->as<Block50>();
    for (size_t k = 0; k < config.skips.size(); ++k)
      if (config.skips[k].to == i) x = x + skip_gates[static_cast<int64_t>(k)] * outputs[config.skips[k].from];
    x = resid_lambdas[i] * x + x0_lambdas[i] * x0;
    if (block.attn) {
      const bool is_long = config.windows[i] == LayerWindow::long_window;
      const int table = config.value_embed[i];
      x = x + block.attn->forward(ops.norm(x), table >= 0 ? ve[table] : torch::Tensor(), sa_lambdas[i], documents,
                                  is_long ? long_window_ : short_window_, attn_scale_,
                                  config.key_offset && is_long, cos, sin, ops);
    }
    if (block.mlp) x = x + block.mlp->forward(ops.norm(x), ops);
    for (const auto& skip : config.skips)
      if (skip.from == i) outputs[i] = x;
    if (i == config.backout_layer) backout = x;
  }
  if (backout.defined()) x = x - backout_lambda.to(compute_dtype) * backout;
  return ops.norm(x);
}

Loss Record50Impl::loss(const TokenBatch& batch) {
  TORCH_CHECK(batch.cu_seqlens.defined(), "record 50 needs document offsets (cu_seqlens) with its tokens");
  TORCH_CHECK(batch.inputs.dim() == 1 && batch.targets.sizes() == batch.inputs.sizes(),
              "record 50 trains on one packed sequence: inputs and targets [T]");
  auto h = hidden_states(batch.inputs, batch.cu_seqlens);
  auto mean = sigmoid_capped_head_loss(h, lm_head->weight, batch.targets, config.fused_kernels,
                                       config.fp8_head && is_training());
  // The record's objective: the sum over tokens in training, the mean in evaluation.
  const double T = static_cast<double>(batch.tokens());
  if (!is_training()) return {mean, 1.0};
  return {mean * T, 1.0 / T};
}

FlopsPerToken Record50Impl::flops_per_token(int64_t seq_len) const {
  return windowed_flops_per_token(*this, config.windows, config.heads * config.head_dim, long_window_, short_window_,
                                  seq_len);
}

torch::Tensor Record50Impl::document_logits(const torch::Tensor& tokens) {
  const auto T = static_cast<int32_t>(tokens.size(0));
  const auto cu_seqlens = torch::tensor({0, T}, torch::kInt);
  return sigmoid_capped_logits(hidden_states(tokens, cu_seqlens), lm_head->weight);
}

}  // namespace muonrun

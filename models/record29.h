// The GPT of NanoGPT speedrun record 29 (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-09-03_FA3, train_gpt.py: class GPT), trained on
// one packed sequence of documents per rank:
//
//   x = x0 = norm(embed(tokens))
//   ve_k = value_embeds[k](tokens), k = 0, 1, 2  (layer i uses table value_embed[i] or none)
//   block i:  x = x + skip_w[i - n] * skips.pop()      (decoder half, i >= n = layers / 2)
//             x = l0 * x + l1 * x0                     (block lambdas)
//             x = x + attn(norm(x), ve, sa_lambdas)    (unless the layer has no attention)
//             x = x + mlp(norm(x))                     (relu^2)
//             skips.push(x)                            (encoder half, i < n)
//   loss = cross-entropy(30 sigmoid(lm_head(norm(x)) / 7.5)), summed over
//          tokens in training, the mean in evaluation
//
// attn: q, k, v = x qkvo_w[0..2]^T; rms-normed q, k, half-truncated rotary
// in fp32 (models/rotary.h); v = sa0 v + sa1 ve; causal attention within each
// document and a sliding window, scale 0.12 (models/doc_window_attention.h);
// each head's output times sigmoid(attn_gate(x[:, :12])) (the sparse
// attention gate); out = y qkvo_w[3]^T.
//
// 30 sigmoid(z / 7.5) = 15 tanh(z / 15) + 15, and cross-entropy does not
// change when every logit moves by the same constant: the loss is that of the
// tanh soft-cap 15, which is what the chunked head computes
// (models/chunked_head.h) without a logits tensor.
//
// Parameter names are the record's state_dict keys, so the record's PyTorch
// model loads these weights with load_state_dict and back:
//   embed.weight, value_embeds.{0,1,2}.weight        [vocab_padded, dim]
//   blocks.{i}.attn.qkvo_w                            [4, dim, dim] (layers with attention)
//   blocks.{i}.attn.attn_gate.weight                  [heads, gate_dim]
//   blocks.{i}.mlp.c_fc, blocks.{i}.mlp.c_proj        [dim, 4 dim] both
//   lm_head.weight                                    [vocab_padded, dim]
//   scalars   [skip weights (layers), block lambdas (2 x layers),
//              attention lambdas (2 x layers), padding ones]
// Master weights are fp32; forward casts them to the compute dtype (bf16 on
// CUDA), as the record's CastedLinear / type_as.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/casted_linear.h"
#include "models/doc_window_attention.h"
#include "models/elementwise_ops.h"
#include "models/language_model.h"
#include "models/layer_patterns.h"
#include "models/model_config.h"
#include "models/rotary.h"

namespace muonrun {

struct Record29Config {
  int64_t vocab_padded = 50304;
  int64_t dim = 768;
  int64_t heads = 6;
  int64_t head_dim = 128;  // heads x head_dim == dim
  int64_t layers = 12;
  // Per layer: which value-embedding table feeds its values (0, 1, 2) or -1.
  std::vector<int> value_embed = {0, 1, 2, -1, -1, -1, -1, -1, -1, 0, 1, 2};
  // Per layer: L, S or none (record 29: L S S S L S S - S S S L).
  std::vector<LayerWindow> windows = {LayerWindow::long_window,  LayerWindow::short_window,
                                      LayerWindow::short_window, LayerWindow::short_window,
                                      LayerWindow::long_window,  LayerWindow::short_window,
                                      LayerWindow::short_window, LayerWindow::none,
                                      LayerWindow::short_window, LayerWindow::short_window,
                                      LayerWindow::short_window, LayerWindow::long_window};
  double attn_scale = 0.12;
  int64_t gate_dim = 12;        // channels the attention gate reads
  int64_t scalar_padding = 0;   // ones after the lambdas (the record pads to a multiple of the world size)
  bool fused_kernels = true;    // ElementwiseOps: fused ops or the composite reference
  // The long window by thirds of training, in blocks (record 29's
  // ws_schedule (3, 7, 11) and get_ws: entry int(n x step / (steps + 1)));
  // the short window is half of it rounded down to a block.
  std::vector<int64_t> window_schedule = {3, 7, 11};
  int64_t window_block = 128;   // tokens per block
  bool fp8_head = false;        // training's head product in FP8 (models/fp8_linear.h)
};

// The record-29 network model.* describes (model.recipe: record29): the
// shape and vocabulary, the patterns parsed (a bad one throws ConfigError
// naming its key), `scalars` padded as in the record's 8-GPU run (to a
// multiple of 8: 60 + 4 for 12 layers, so that its state_dict loads), fused
// element-wise ops as model.kernels says.
Record29Config record29_config(const ModelConfig& model);

struct Attention29Impl : torch::nn::Module {
  explicit Attention29Impl(const Record29Config& config);
  // x: the normed block input [T, dim]; ve: [T, dim] or undefined;
  // sa: the layer's two attention lambdas; cos, sin: fp32 rotary tables [T, 1, head_dim/2].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& ve, const torch::Tensor& sa,
                        const DocumentOffsets& documents, int64_t window, const torch::Tensor& cos,
                        const torch::Tensor& sin, const ElementwiseOps& ops);
  int64_t heads, head_dim, gate_dim;
  double scale;
  torch::Tensor qkvo_w;
  CastedLinear attn_gate{nullptr};  // [heads, gate_dim], zero-init: the gate starts at sigmoid(0) = 1/2
};
TORCH_MODULE(Attention29);

struct Mlp29Impl : torch::nn::Module {
  explicit Mlp29Impl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x, const ElementwiseOps& ops);
  torch::Tensor c_fc, c_proj;  // both [dim, 4 dim]: h = x c_fc, out = h c_proj^T
};
TORCH_MODULE(Mlp29);

struct Block29Impl : torch::nn::Module {
  Block29Impl(const Record29Config& config, bool attention);
  Attention29 attn{nullptr};  // null in a layer without attention
  Mlp29 mlp{nullptr};
};
TORCH_MODULE(Block29);

struct Record29Impl : LanguageModelImpl {
  explicit Record29Impl(Record29Config config);

  // inputs, targets: int64 [T], one packed sequence; cu_seqlens: int32
  // document offsets [0, ..., T]; long_window, short_window: this step's
  // windows in tokens. Returns the cross-entropy summed over the T tokens
  // in training mode, their mean in evaluation mode (as the record).
  torch::Tensor loss(const torch::Tensor& inputs, const torch::Tensor& targets, const torch::Tensor& cu_seqlens,
                     int64_t long_window, int64_t short_window);
  // The normalised hidden states that enter the head: [T, dim].
  torch::Tensor hidden_states(const torch::Tensor& inputs, const torch::Tensor& cu_seqlens, int64_t long_window,
                              int64_t short_window);

  // LanguageModelImpl, with the windows of the step set_progress() last named
  // (before any: the schedule's last, as after training).
  BatchLayout layout() const override { return BatchLayout::packed_documents; }
  Loss loss(const TokenBatch& batch) override;
  torch::Tensor document_logits(const torch::Tensor& tokens) override;
  void set_progress(const TrainingProgress& progress) override;
  void set_compute_dtype(torch::ScalarType dtype) override { compute_dtype = dtype; }
  FlopsPerToken flops_per_token(int64_t seq_len) const override;
  // This step's windows in tokens: long = schedule entry x block, short = half of it rounded down to a block.
  int64_t long_window() const { return long_window_; }
  int64_t short_window() const { return short_window_; }

  Record29Config config;
  torch::ScalarType compute_dtype = torch::kFloat;
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList value_embeds{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  CastedLinear lm_head{nullptr};  // [vocab_padded, dim], zero-init
  torch::Tensor scalars;

 private:
  void set_windows(int64_t blocks);
  int64_t long_window_ = 0, short_window_ = 0;
  RotaryTableCache rotary_;
};
TORCH_MODULE(Record29);

}  // namespace muonrun

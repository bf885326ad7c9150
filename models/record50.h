// The GPT of NanoGPT speedrun record 50 (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-12-18_CautiousWDAdam, train_gpt.py: class GPT,
// 2.13 min on 8xH100), trained like record 29 on one packed sequence of
// documents per rank. Top to bottom, with each named block in its own file:
//
//   x = embed(tokens)
//   x = smear(x)                                   (models/smear.h; model.smear)
//   x = x0 = norm(x)
//   block i:  x = x + sigmoid(skip_l[k]) out[from_k]   (each gated skip k into layer i)
//             x = resid_l[i] x + x0_l[i] x0
//             x = x + attn(norm(x))                (unless the layer has no attention)
//             x = x + mlp(norm(x))                 (relu^2; unless the layer has none)
//             out[i] = x  (a skip's from layer);  xb = x  (i == backout_layer)
//   x = x - backout_l xb                           (the backout)
//   loss = cross-entropy(30 sigmoid(lm_head(norm(x)) / 7.5)), summed over
//          tokens in training, the mean in evaluation (as record 29)
//
// attn(h): the attention lambdas folded into the weights (record 47/48):
// q, k, v = h (l0 W_qkv)^T; rms-normed q, k; half-truncated rotary with the
// YaRN-rescaled frequencies (models/yarn.h; model.yarn); on long-window layers
// the partial key offset (models/key_offset.h; model.key_offset); v += the
// layer's value embedding (unscaled); causal attention within each document
// and a sliding window at YaRN's scale; each head times
// sigmoid(attn_gate(h[:, :12])); out = y (l1 W_o)^T.
//
// Windows: the long window goes through model.window_schedule in equal
// thirds of the scheduled steps (int(n step / scheduled), as the record's
// get_ws), model.extension_window during schedule.extension_steps, and
// model.final_window in the final validation with YaRN left as trained; the
// short window is half the long one, rounded down to a block (the final
// validation keeps the extension's).
//
// Parameters, in the record's state_dict order and names:
//   embed.weight [vocab, dim] N(0, 1); smear_gate.weight [1, gate_dim] 0;
//   value_embeds.{0,1,2}.weight [vocab, dim] 0 (record 49);
//   blocks.{i}.attn.qkvo_w [4, dim, dim] (the record's [4 dim, dim], same
//     memory; a stack so that Muon orthogonalises Q, K, V, O separately, as
//     the record's NorMuon does); blocks.{i}.attn.attn_gate.weight [heads, gate_dim] 0;
//   blocks.{i}.mlp.c_fc, blocks.{i}.mlp.c_proj [4 dim, dim] (the record's
//     layout: h = x c_fc^T, out = h c_proj);
//   lm_head.weight [vocab, dim] 0;
//   scalars [resid lambdas (L, 1.1), x0 lambdas (L, 0), attention lambdas
//     (L x 2: on W_qkv 0.5, on W_o 1.0), smear lambda 0, backout lambda 0.5,
//     one skip lambda per skip -1.5, ones to a multiple of 8].
// Skips: the record's single one, 3 -> 6 (record 45, its lambda a sigmoid
// gate since record 32), or any list of them, such as record 32's gated U-net
// (KellerJordan/modded-nanogpt 2025-09-11_VectSigmoidBFloat16: after layers
// 0..5 push x, before layers 6..11 add sigmoid(w) pop(): "5>6 4>7 ... 0>11").
// Master weights are fp32 (the record keeps embeddings, gates and head in
// bf16 without a master copy); forward casts them to the compute dtype.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/casted_linear.h"
#include "models/doc_window_attention.h"
#include "models/elementwise_ops.h"
#include "models/language_model.h"
#include "models/layer_patterns.h"
#include "models/model_config.h"
#include "models/rotary.h"

namespace muonrun {

struct Record50Config {
  int64_t vocab_padded = 50304;
  int64_t dim = 768;
  int64_t heads = 6;
  int64_t head_dim = 128;
  int64_t layers = 11;
  std::vector<int> value_embed = {1, 2, -1, -1, -1, -1, -1, -1, 0, 1, 2};
  std::vector<bool> mlp = std::vector<bool>(11, true);  // per layer: whether it has an MLP (record 30: not layer 0)
  std::vector<LayerWindow> windows = {
      LayerWindow::short_window, LayerWindow::short_window, LayerWindow::short_window, LayerWindow::long_window,
      LayerWindow::short_window, LayerWindow::short_window, LayerWindow::none,         LayerWindow::short_window,
      LayerWindow::short_window, LayerWindow::short_window, LayerWindow::long_window};
  double attn_scale = 0.1;  // before YaRN
  int64_t gate_dim = 12;    // channels the attention and smear gates read
  bool smear = true;
  bool key_offset = true;
  bool yarn = true;
  std::vector<SkipConnection> skips = {{3, 6}};
  int64_t backout_layer = 7;          // -1: no backout
  std::vector<int64_t> window_schedule = {3, 7, 11};
  int64_t extension_window = 13;
  int64_t final_window = 20;
  int64_t window_block = 128;
  int64_t scalar_padding = 1;  // 4 x 11 + 2 + 1 skip = 47 used, padded to 48
  bool fp8_head = false;
  bool fused_kernels = true;
};

// The record-50 network model.* describes (model.recipe: record50); bad keys
// throw ConfigError naming them.
Record50Config record50_config(const ModelConfig& model);

struct Attention50Impl : torch::nn::Module {
  explicit Attention50Impl(const Record50Config& config);
  // h: the normed block input [T, dim]; ve: [T, dim] or undefined; sa: the
  // layer's two attention lambdas; cos, sin: fp32 rotary tables [T, 1, head_dim/2].
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& ve, const torch::Tensor& sa,
                        const DocumentOffsets& documents, int64_t window, double scale, bool key_offset,
                        const torch::Tensor& cos, const torch::Tensor& sin, const ElementwiseOps& ops);
  int64_t heads, head_dim, gate_dim;
  torch::Tensor qkvo_w;
  CastedLinear attn_gate{nullptr};
};
TORCH_MODULE(Attention50);

struct Mlp50Impl : torch::nn::Module {
  explicit Mlp50Impl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x, const ElementwiseOps& ops);
  torch::Tensor c_fc, c_proj;  // both [4 dim, dim]
};
TORCH_MODULE(Mlp50);

struct Block50Impl : torch::nn::Module {
  Block50Impl(const Record50Config& config, bool attention, bool mlp);
  Attention50 attn{nullptr};  // null in a layer without attention
  Mlp50 mlp{nullptr};         // null in a layer without MLP
};
TORCH_MODULE(Block50);

struct Record50Impl : LanguageModelImpl {
  explicit Record50Impl(Record50Config config);

  // The normalised hidden states that enter the head [T, dim], with the
  // windows and YaRN state set_progress() last set.
  torch::Tensor hidden_states(const torch::Tensor& inputs, const torch::Tensor& cu_seqlens);

  BatchLayout layout() const override { return BatchLayout::packed_documents; }
  Loss loss(const TokenBatch& batch) override;
  torch::Tensor document_logits(const torch::Tensor& tokens) override;
  void set_progress(const TrainingProgress& progress) override;
  void set_compute_dtype(torch::ScalarType dtype) override { compute_dtype = dtype; }
  FlopsPerToken flops_per_token(int64_t seq_len) const override;
  int64_t long_window() const { return long_window_; }
  int64_t short_window() const { return short_window_; }
  double attn_scale() const { return attn_scale_; }
  const torch::Tensor& rotary_freqs() const { return rotary_.freqs(); }

  Record50Config config;
  torch::ScalarType compute_dtype = torch::kFloat;
  torch::nn::Embedding embed{nullptr};
  CastedLinear smear_gate{nullptr};
  torch::nn::ModuleList value_embeds{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  CastedLinear lm_head{nullptr};
  torch::Tensor scalars;

 private:
  // The windows in blocks, with the YaRN state after the long window went through `yarn_windows`.
  void set_windows(int64_t long_blocks, int64_t short_blocks, std::vector<int64_t> yarn_windows);
  int64_t long_window_ = 0, short_window_ = 0;
  std::vector<int64_t> yarn_windows_;
  double attn_scale_ = 0;
  RotaryTableCache rotary_;  // YaRN's frequencies, fp32 [head_dim / 2] on the CPU
};
TORCH_MODULE(Record50);

}  // namespace muonrun

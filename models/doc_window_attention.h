// Causal attention over packed documents with a sliding window, as the
// speedrun computes it from record 12 on (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-09-03_FA3, record 29: FlashAttention's varlen
// call with window (left = window, right = 0)): one packed sequence of T
// tokens holds several documents, and key j is visible to query i iff
//   j <= i,  j and i in the same document,  i - j <= window,
// so a query sees up to window + 1 keys, itself included.
//
// CUDA: ATen's varlen FlashAttention (models/doc_window_attention_cuda.cpp,
// builds with MUONRUN_CUDA; bf16 or fp16), differentiable through its own
// autograd node. CPU (where ATen registers no varlen FlashAttention): an exact
// autograd op that runs each block of 128 queries against only the keys it
// can see [max(block start - window, document start), block end), with that
// block's (128 x keys) mask, through ATen's CPU FlashAttention kernel, and
// saves only q, k, v, the output and each row's logsumexp: backward rebuilds
// each block's mask and recomputes its probabilities (FlashAttention-2's
// scheme, Dao 2023, arXiv:2307.08691). Memory and time grow with
// T x window, never T^2. (Autograd through per-block calls would keep every
// block's mask and output until backward: up to 1.6 GB of masks alone for
// 262,144 tokens, the record's validation sequence, with its 1408-token window.)
#pragma once

#include <torch/torch.h>

namespace muonrun {

// q, k, v: (T, heads, head_dim) of one dtype and device (CPU: float, double
// or bfloat16, computed in fp32 or double; CUDA: bfloat16 or float16).
// cu_seqlens: int32, 1-D, [0, ..., T], non-decreasing (an empty document is
// allowed: the record pads its list with T), on any device; it is read on the
// host to check it (a device-to-host copy when it lives on a GPU).
// window >= 0 in tokens; scale multiplies q.k (record 29: 0.12).
// Returns (T, heads, head_dim) in q's dtype.
torch::Tensor doc_window_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& cu_seqlens, int64_t window, double scale);

// cu_seqlens checked once, for the many layers of one forward pass: its host
// copy (the CPU path's masks), its copy on the device (varlen
// FlashAttention's), and the longest document. Throws as above.
struct DocumentOffsets {
  torch::Tensor host, on_device;
  int64_t max_len = 0;
};
DocumentOffsets document_offsets(const torch::Tensor& cu_seqlens, int64_t T, const torch::Device& device);
torch::Tensor doc_window_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const DocumentOffsets& offsets, int64_t window, double scale);

#ifdef MUONRUN_WITH_CUDA
namespace cuda {
// The CUDA half of doc_window_attention, on checked inputs: cu_seqlens int32
// on q's device, max_len its longest document.
torch::Tensor doc_window_attention_flash(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& cu_seqlens, int64_t max_len, int64_t window,
                                         double scale);
}  // namespace cuda
#endif

}  // namespace muonrun

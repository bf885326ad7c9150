// The CUDA half of models/doc_window_attention.h: ATen's varlen
// FlashAttention-2 with window (left = window, right = 0), the call record 29
// makes to FlashAttention-3 (KellerJordan/modded-nanogpt,
// records/track_1_short/2025-09-03_FA3). Its autograd node
// (FlashAttentionBackward0) keeps the offsets and the window, so backward is
// windowed too. Compiled only in builds with MUONRUN_CUDA.
#include <ATen/ops/_flash_attention_forward.h>

#include "models/doc_window_attention.h"

namespace muonrun::cuda {

torch::Tensor doc_window_attention_flash(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& cu_seqlens, int64_t max_len, int64_t window,
                                         double scale) {
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kHalf,
              "doc_window_attention: FlashAttention on CUDA computes bfloat16 or float16, got ", q.scalar_type());
  // Both offset lists are the same: every document attends only to itself.
  return std::get<0>(at::_flash_attention_forward(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len,
                                                  /*dropout_p=*/0.0, /*is_causal=*/true,
                                                  /*return_debug_mask=*/false, scale,
                                                  /*window_size_left=*/window, /*window_size_right=*/0));
}

}  // namespace muonrun::cuda

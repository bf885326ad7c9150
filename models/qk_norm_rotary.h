// QK-norm and rotary embedding of one attention input as one autograd op:
//   y = rotary(rms_norm(x)),  rotary as models/gpt.h apply_rotary: the pairs
//   (n[i], n[i + D/2]) turn by the angle of position t and frequency i:
//   y[i] = n[i] cos + n[i + D/2] sin,  y[i + D/2] = n[i + D/2] cos - n[i] sin.
// x is q or k straight from c_q / c_k: [B, T, H, D], a view of the linear
// output. The result is [B, H, T, D], the layout
// at::scaled_dot_product_attention takes, as the transposed view of a
// contiguous [B, T, H, D] tensor: exactly the layout the composite path
// hands it (q.transpose(1, 2)), so no copy is made before attention. The
// composite path is rms_norm (six ops, an fp32 copy of x kept for backward)
// then about seven for the rotation; this op writes y once and saves x, the
// tables and one fp32 inverse rms per (b, t, h).
// cos, sin: [1, T, 1, D/2] (GPTImpl::rotary), in the compute dtype.
//
// CPU: row loops (models/fused_cpu.h); CUDA: models/qk_norm_rotary.cu.
#pragma once

#include <torch/torch.h>

namespace muonrun {

torch::Tensor qk_norm_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace muonrun

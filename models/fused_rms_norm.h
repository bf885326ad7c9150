// RMSNorm over the last dimension without a learned weight, eps = FLT_EPSILON,
// as one autograd op: y = x / sqrt(mean(x^2) + eps), computed in fp32 and
// returned in x's dtype. The composite form (models/gpt.h rms_norm) is six
// LibTorch ops that write, and autograd keeps, an fp32 copy of x; this op
// saves only x and one fp32 inverse rms per row.
//
// CPU: single-pass row loops (models/fused_cpu.h).
// CUDA: at::rms_norm, which in LibTorch 2.11 dispatches to
// at::_fused_rms_norm: one CUDA kernel forward (output and per-row rstd) and
// one backward (_fused_rms_norm_backward), found with
// torch._C._dispatch_has_kernel_for_dispatch_key('aten::_fused_rms_norm',
// 'CUDA') (and '..._backward') = True; on the CPU the same call runs the
// composite ops (no CPU kernel is registered), hence our own CPU loop.
#pragma once

#include <torch/torch.h>

namespace muonrun {

torch::Tensor fused_rms_norm(const torch::Tensor& x);

}  // namespace muonrun

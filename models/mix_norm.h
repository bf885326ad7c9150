// The residual stream's mixes folded into the RMSNorm that follows them, as
// one autograd op:
//   x = w_0 t_0 + w_1 t_1 [+ w_2 t_2]   (w_k scalars, learned or 1)
//   returns x (the residual stream goes on) and rms_norm(x) (the next layer's input).
// The record-11 block (models/gpt.cpp BlockImpl::forward) uses it twice:
//   its input      x = l0 x_in + l1 x0, in the U-net's decoder blocks with the
//                  skip added first: l0 (x_in + s skip) + l1 x0 = l0 x_in + (l0 s) skip + l1 x0
//   before the MLP x = x + attn_out
// The composite ops write each product, the sum, and the norm's fp32 copy;
// this op reads the terms once and writes x and its norm, saving x, one fp32
// inverse rms per row and only the terms whose weight needs a gradient.
// Backward gives each term w_k G (G, shared, where w_k = 1), G = dL/dx
// through both outputs, and each learned weight sum(G * t_k).
//
// CPU: row loops (models/fused_cpu.h); CUDA: models/mix_norm.cu.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace muonrun {

struct MixTerm {
  torch::Tensor value;   // [..., D], every term of one shape and dtype
  torch::Tensor weight;  // a 0-dim tensor (e.g. lambdas[0], fp32), or undefined for 1
};

struct MixNorm {
  torch::Tensor x, normed;
};

// 2 or 3 terms.
MixNorm mix_norm(const std::vector<MixTerm>& terms);

}  // namespace muonrun

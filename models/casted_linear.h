// A bias-free linear layer whose fp32 master weight is cast to the input's
// dtype in each product (CastedLinear of KellerJordan/modded-nanogpt: bf16
// products on CUDA, fp32 on the CPU). Its one parameter is "weight", so the
// layer's state_dict key is "<name>.weight", as in the records.
#pragma once

#include <torch/torch.h>

namespace muonrun {

// A bias-free linear layer whose fp32 weight is cast to the input's dtype.
struct CastedLinearImpl : torch::nn::Module {
  CastedLinearImpl(int64_t in, int64_t out, bool zero_init);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
};
TORCH_MODULE(CastedLinear);

}  // namespace muonrun

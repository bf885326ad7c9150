// Every switch between LibTorch versions lives here, so that the rest of the
// code base reads as if there were only one LibTorch.
//
// Supported: LibTorch 1.13 (Debian 12, CPU only) and 2.x (the GPU machine,
// 2.11 + CUDA 13).
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#define MUONRUN_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||          \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// at::scaled_dot_product_attention (flash / cuDNN / memory-efficient backends)
// arrived in 2.0; 1.13 gets an equivalent masked softmax attention.
#define MUONRUN_HAS_SDPA MUONRUN_TORCH_AT_LEAST(2, 0)

// The fixed-shape micro-step (forward + backward of one micro-batch) captured
// once as a CUDA graph and replayed (train.cuda_graphs): one launch instead of
// the ~1,000 kernel launches of an eager micro-step, so the host stops being
// the limit (CUDA Graphs in NVIDIA's CUDA C++ Programming Guide; PyTorch's
// "whole network capture", pytorch.org/docs/stable/notes/cuda.html).
//
// What capture needs and how it is met:
// - static inputs: each batch is copied into tensors the graph reads;
// - static gradients: they are allocated before capture and the graph adds
//   into them, so between steps they are zeroed in place, never dropped;
// - nothing on the host during replay: the data-parallel gradient hooks would
//   run only once, at capture, so graphs need a single process without a
//   communicator (not even a launcher's world of one), and a loss changed on
//   the host (debug.inject_nan_step) cannot be replayed;
// - warm-up first: LibTorch picks kernels and fills caches (rotary tables)
//   during a few eager micro-steps, which must not happen inside the capture;
//   then, as torch.cuda.graph does, a device synchronise and an emptied
//   allocator cache, so the warm-up's activations are not kept beside the
//   graph's own pool.
//
// The graph itself is CUDA-only code (micro_step_graph.cpp, MUONRUN_CUDA);
// a CPU build refuses train.cuda_graphs (micro_step_graph_unavailable.cpp).
// Not yet run on a GPU (README, "Speed").
#pragma once

#include <torch/torch.h>

#include <memory>

#include "models/language_model.h"

namespace muonrun {

class MicroStepGraph {
 public:
  virtual ~MicroStepGraph() = default;
  // Copies the batch in, replays, and returns the micro-batch's loss (a
  // device scalar, before loss_scale); gradients are added into the model's.
  virtual torch::Tensor run(const torch::Tensor& x, const torch::Tensor& y) = 0;
};

// Captures the loss of rows x, y (models/language_model.h: BatchLayout::rows)
// times loss_scale and its backward for batches shaped like x and y (on a CUDA device), after `warmup` eager micro-steps whose
// gradients are then zeroed. Throws ConfigError in a build without CUDA.
std::unique_ptr<MicroStepGraph> capture_micro_step(LanguageModelImpl& model, const torch::Tensor& x, const torch::Tensor& y,
                                                   double loss_scale, int warmup = 3);

}  // namespace muonrun

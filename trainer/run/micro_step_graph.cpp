// CUDA graph of the micro-step: see micro_step_graph.h.
#include "trainer/run/micro_step_graph.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>

namespace muonrun {
namespace {

// Makes `waiter` wait for the work queued so far on `queued`.
void wait(const at::cuda::CUDAStream& waiter, const at::cuda::CUDAStream& queued) {
  at::cuda::CUDAEvent done;
  done.record(queued);
  done.block(waiter);
}

class CudaMicroStepGraph : public MicroStepGraph {
 public:
  CudaMicroStepGraph(LanguageModelImpl& model, const torch::Tensor& x, const torch::Tensor& y, double loss_scale, int warmup)
      : model_(model), loss_scale_(loss_scale), x_(x.clone()), y_(y.clone()) {
    TORCH_CHECK(x.is_cuda() && y.is_cuda(), "capture_micro_step: the batch must be on a CUDA device");
    // The gradients the graph adds into, allocated outside its memory pool.
    for (auto& p : model_.parameters())
      if (p.requires_grad() && !p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    // Warm-up and capture on a side stream: capture may not use the default one.
    auto side = at::cuda::getStreamFromPool();
    wait(side, at::cuda::getCurrentCUDAStream());
    {
      c10::cuda::CUDAStreamGuard on_side(side);
      for (int i = 0; i < warmup; ++i) forward_backward();
      for (auto& p : model_.parameters())
        if (p.grad().defined()) p.mutable_grad().zero_();
      // As torch.cuda.graph does before capture: the warm-up's work finished,
      // and its freed activations handed back to the driver, so that they do
      // not stay cached beside the graph's private memory pool (twice the
      // activation memory otherwise).
      c10::cuda::device_synchronize();
      c10::cuda::CUDACachingAllocator::emptyCache();
      graph_.capture_begin();
      loss_ = forward_backward();
      graph_.capture_end();
    }
    wait(at::cuda::getCurrentCUDAStream(), side);
  }

  torch::Tensor run(const torch::Tensor& x, const torch::Tensor& y) override {
    TORCH_CHECK(x.sizes() == x_.sizes() && y.sizes() == y_.sizes(), "MicroStepGraph: batch ", x.sizes(),
                " differs from the captured ", x_.sizes());
    x_.copy_(x, /*non_blocking=*/true);
    y_.copy_(y, /*non_blocking=*/true);
    graph_.replay();
    return loss_.clone();  // the next replay overwrites loss_
  }

 private:
  torch::Tensor forward_backward() {
    auto loss = model_.loss(TokenBatch{x_, y_}).objective;
    (loss * loss_scale_).backward();
    return loss.detach();
  }

  LanguageModelImpl& model_;
  double loss_scale_;
  torch::Tensor x_, y_, loss_;  // the graph's inputs and output
  at::cuda::CUDAGraph graph_;
};

}  // namespace

std::unique_ptr<MicroStepGraph> capture_micro_step(LanguageModelImpl& model, const torch::Tensor& x, const torch::Tensor& y,
                                                   double loss_scale, int warmup) {
  return std::make_unique<CudaMicroStepGraph>(model, x, y, loss_scale, warmup);
}

}  // namespace muonrun

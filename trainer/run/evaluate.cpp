#include "trainer/run/evaluate.h"

#include "trainer/base/progress.h"

namespace muonrun {

std::pair<torch::Tensor, torch::Tensor> next_batch(DataLoader& loader, int64_t B, int64_t T,
                                                   const torch::Device& device) {
  auto tokens = torch::empty({B * T + 1}, torch::kLong);
  loader.next_batch(tokens.data_ptr<int64_t>());
  if (device.is_cuda()) tokens = tokens.pin_memory().to(device, /*non_blocking=*/true);
  return {tokens.narrow(0, 0, B * T).view({B, T}), tokens.narrow(0, 1, B * T).view({B, T})};
}

double evaluate(GPT& model, DataLoader& val, int64_t batches, int64_t B, int64_t T,
                const torch::Device& device) {
  torch::NoGradGuard no_grad;
  model->eval();
  val.reset();
  Progress progress("validation", static_cast<double>(batches), "batches", 10.0,
                    /*transient=*/true);
  auto total = torch::zeros({}, torch::dtype(torch::kFloat).device(device));
  for (int64_t i = 0; i < batches; ++i) {
    auto [x, y] = next_batch(val, B, T, device);
    total += model->loss(x, y);
    progress.update(static_cast<double>(i + 1));
  }
  model->train();
  return total.item<double>() / static_cast<double>(batches);
}

}  // namespace muonrun

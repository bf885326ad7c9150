#include "trainer/run/train_step.h"

#include <fmt/format.h>

#include <algorithm>

#include "trainer/run/evaluate.h"

namespace muonrun {

BatchPlan plan_batches(const Config& config, int world) {
  const int64_t B = config.train.micro_batch, T = config.model.seq_len;
  const int64_t per_micro_step = world * B * T;
  if (config.train.batch_tokens % per_micro_step != 0)
    throw ConfigError(fmt::format(
        "train.batch_tokens ({}) must be a multiple of world size x train.micro_batch x "
        "model.seq_len = {} x {} x {} = {}",
        config.train.batch_tokens, world, B, T, per_micro_step));
  if (config.train.val_tokens % per_micro_step != 0)
    throw ConfigError(fmt::format(
        "train.val_tokens ({}) must be a multiple of world size x train.micro_batch x "
        "model.seq_len = {}; nearest: {}",
        config.train.val_tokens, per_micro_step,
        std::max<int64_t>(1, config.train.val_tokens / per_micro_step) * per_micro_step));
  return {B, T, config.train.batch_tokens / per_micro_step, config.train.val_tokens / per_micro_step};
}

GPT make_model(const Config& config, const torch::Device& device) {
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  GPT model(config.model);
  model->to(device);
  if (device.is_cuda()) model->set_compute_dtype(torch::kBFloat16);
  return model;
}

std::vector<double> mean_over_ranks(Communicator* comm, const torch::Device& device,
                                    std::vector<torch::Tensor> scalars, PhaseTimer* timer) {
  for (auto& s : scalars) s = s.to(device, torch::kFloat);  // NCCL takes device tensors only
  auto values = torch::stack(scalars).detach().reshape({-1}).contiguous();
  if (comm) {
    PhaseScope wait(timer, Phase::CommWait);
    comm->all_reduce_mean(values)->wait();
  }
  values = values.to(torch::kCPU);
  return std::vector<double>(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
}

namespace {

// Whether this rank's gradients are all finite, as a device scalar (1 or 0):
// one sum per parameter and a single host transfer for the step.
torch::Tensor gradients_finite(GPT& model, const torch::Device& device) {
  auto total = torch::zeros({}, torch::dtype(torch::kFloat).device(device));
  for (const auto& p : model->parameters())
    if (p.grad().defined()) total += p.grad().abs().sum().to(torch::kFloat);
  return torch::isfinite(total).to(torch::kFloat);
}

}  // namespace

StepResult training_step(StepParts& parts, int64_t step, const StepHooks& hooks) {
  const auto& plan = parts.plan;
  PhaseTimer* timer = parts.timer;
  parts.optimizer.set_phase_timer(timer);
  auto loss_sum = torch::zeros({}, torch::dtype(torch::kFloat).device(parts.device));
  for (int64_t micro = 0; micro < plan.accumulation; ++micro) {
    torch::Tensor x, y;
    {
      PhaseScope data(timer, Phase::Data);
      std::tie(x, y) = next_batch(parts.data, plan.micro_batch, plan.seq_len, parts.device);
    }
    parts.optimizer.begin_backward(micro == plan.accumulation - 1);
    torch::Tensor loss;
    {
      PhaseScope forward(timer, Phase::Forward);
      loss = parts.model->loss(x, y);
    }
    if (hooks.change_loss) loss = hooks.change_loss(micro, loss);
    {
      PhaseScope backward(timer, Phase::Backward);
      (loss / static_cast<double>(plan.accumulation)).backward();
    }
    loss_sum += loss.detach();
  }
  {
    PhaseScope backward(timer, Phase::Backward);
    parts.optimizer.end_backward();
  }
  // One all-reduce tells every rank the mean loss, whether any rank saw a
  // non-finite gradient, and whether any rank got a stop signal, so that all
  // take the same decision.
  const auto agreed = mean_over_ranks(
      parts.comm, parts.device,
      {loss_sum / static_cast<double>(plan.accumulation), gradients_finite(parts.model, parts.device),
       torch::tensor(hooks.stop_requested && hooks.stop_requested() ? 1.0f : 0.0f, torch::device(parts.device))},
      timer);
  StepResult result{agreed[0], hooks.check ? hooks.check(agreed[0], agreed[1] == 1.0) : std::string(),
                    agreed[2] > 0};
  if (result.trouble.empty()) parts.optimizer.step(step, result.loss);  // Momo needs the loss
  else parts.optimizer.discard_step();
  parts.optimizer.zero_grad();
  return result;
}

}  // namespace muonrun

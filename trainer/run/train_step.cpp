#include "trainer/run/train_step.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "models/gpt.h"
#include "models/record29.h"
#include "models/record50.h"
#include "optim/schedule.h"
#include "trainer/base/strings.h"

namespace muonrun {

BatchPlan plan_batches(const Config& config, int world, BatchLayout layout) {
  const int64_t B = config.train.micro_batch, T = config.model.seq_len;
  const int64_t val_T = config.train.val_seq_len > 0 ? config.train.val_seq_len : T;
  if (layout == BatchLayout::packed_documents && B != 1)
    throw ConfigError(fmt::format("train.micro_batch must be 1 for model.recipe {}: it trains on one packed "
                                  "sequence of model.seq_len tokens per rank per micro-step, got {}",
                                  name_of(config.model.recipe), B));
  const int64_t per_micro_step = world * B * T;
  if (config.train.batch_tokens % per_micro_step != 0)
    throw ConfigError(fmt::format(
        "train.batch_tokens ({}) must be a multiple of world size x train.micro_batch x "
        "model.seq_len = {} x {} x {} = {}",
        config.train.batch_tokens, world, B, T, per_micro_step));
  const int64_t per_val_batch = world * B * val_T;
  if (config.train.val_tokens % per_val_batch != 0)
    throw ConfigError(fmt::format(
        "train.val_tokens ({}) must be a multiple of world size x train.micro_batch x "
        "{} = {}; nearest: {}",
        config.train.val_tokens, config.train.val_seq_len > 0 ? "train.val_seq_len" : "model.seq_len", per_val_batch,
        std::max<int64_t>(1, config.train.val_tokens / per_val_batch) * per_val_batch));
  BatchPlan plan{B, T, config.train.batch_tokens / per_micro_step, val_T, config.train.val_tokens / per_val_batch,
                 config.train.batch_tokens, {}, scheduled_steps(config.schedule, config.train.steps),
                 config.data.max_doc_tokens, {}};
  for (const auto& word : words(config.train.batch_schedule)) {
    const auto tokens = parse_integer(word);
    const int64_t unit = world * plan.accumulation;
    if (!tokens || *tokens < 1 || *tokens > config.train.batch_tokens || *tokens % unit != 0)
      throw ConfigError(fmt::format("train.batch_schedule: '{}' is not a batch in tokens from 1 to train.batch_tokens "
                                    "({}) that divides into world size x accumulation = {} x {} sequences",
                                    word, config.train.batch_tokens, world, plan.accumulation));
    plan.stage_tokens.push_back(*tokens);
  }
  if (!plan.stage_tokens.empty() && layout != BatchLayout::packed_documents)
    throw ConfigError(fmt::format("train.batch_schedule needs a packed-document recipe (record29, record50), whose "
                                  "sequence length may change; model.recipe is {}",
                                  name_of(config.model.recipe)));
  for (const auto& word : words(config.train.doc_cut_schedule)) {
    const auto cut = parse_integer(word);
    if (!cut || *cut < 1 || *cut > std::numeric_limits<int32_t>::max())
      throw ConfigError(fmt::format("train.doc_cut_schedule: '{}' is not a cut in tokens (a whole number from 1)",
                                    word));
    plan.stage_doc_cut.push_back(*cut);
  }
  if (!plan.stage_doc_cut.empty() && plan.stage_doc_cut.size() != plan.stage_tokens.size())
    throw ConfigError(fmt::format("train.doc_cut_schedule: '{}': expected one cut per stage of "
                                  "train.batch_schedule ('{}': {} stages), got {}",
                                  config.train.doc_cut_schedule, config.train.batch_schedule,
                                  plan.stage_tokens.size(), plan.stage_doc_cut.size()));
  return plan;
}

int64_t BatchPlan::step_tokens(int64_t step) const {
  if (stage_tokens.empty()) return batch_tokens;
  return stage_tokens[schedule_stage(step, scheduled_steps, stage_tokens.size())];
}

int64_t BatchPlan::step_seq_len(int64_t step) const {
  return step_tokens(step) / (batch_tokens / seq_len);  // batch_tokens / seq_len: the sequences of a step
}

BatchStage BatchPlan::step_stage(int64_t step) const {
  const int64_t cut = stage_doc_cut.empty()
                          ? max_doc_tokens
                          : stage_doc_cut[schedule_stage(step, scheduled_steps, stage_doc_cut.size())];
  return {step_seq_len(step), cut};
}

int64_t BatchPlan::tokens_of_steps(int64_t first, int64_t end) const {
  if (stage_tokens.empty()) return batch_tokens * std::max<int64_t>(0, end - first);
  int64_t sum = 0;
  for (int64_t s = first; s < end; ++s) sum += step_tokens(s);
  return sum;
}

LanguageModel make_model(const Config& config, const torch::Device& device) {
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  if (const auto key = record50_key_in_use(config.model); !key.empty() && config.model.recipe != Recipe::record50)
    throw ConfigError(fmt::format("{} is a feature of model.recipe record50, not {}", key,
                                  name_of(config.model.recipe)));
  LanguageModel model;
  switch (config.model.recipe) {
    case Recipe::record11: model = GPT(config.model).ptr(); break;
    case Recipe::record29: model = Record29(record29_config(config.model)).ptr(); break;
    case Recipe::record50: model = Record50(record50_config(config.model)).ptr(); break;
  }
  model->to(device);
  if (device.is_cuda()) model->set_compute_dtype(torch::kBFloat16);
  return model;
}

torch::Tensor sum_over_ranks_on_device(Communicator* comm, const torch::Device& device,
                                       std::vector<torch::Tensor> scalars, PhaseTimer* timer) {
  for (auto& s : scalars) s = s.to(device, torch::kFloat);  // NCCL takes device tensors only
  auto values = torch::stack(scalars).detach().reshape({-1}).contiguous();
  if (comm) {
    PhaseScope wait(timer, Phase::CommWait);
    comm->all_reduce_sum(values)->wait();
  }
  return values;
}

std::vector<double> sum_over_ranks(Communicator* comm, const torch::Device& device,
                                   std::vector<torch::Tensor> scalars, PhaseTimer* timer) {
  const auto values = sum_over_ranks_on_device(comm, device, std::move(scalars), timer).to(torch::kCPU);
  return std::vector<double>(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
}

std::vector<double> mean_over_ranks(Communicator* comm, const torch::Device& device,
                                    std::vector<torch::Tensor> scalars, PhaseTimer* timer) {
  const auto values = sum_over_ranks_on_device(comm, device, std::move(scalars), timer)
                          .div_(comm ? comm->size() : 1)
                          .to(torch::kCPU);
  return std::vector<double>(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
}

namespace {

// Whether some gradient of this rank is not finite, as a device scalar (1 or
// 0): the sum of their L1 norms (one multi-tensor kernel on CUDA) is NaN or
// Inf exactly when some gradient is.
torch::Tensor gradients_not_finite(LanguageModelImpl& model, const torch::Device& device) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : model.parameters())
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({}, torch::dtype(torch::kFloat).device(device));
  const auto total = torch::stack(at::_foreach_norm(grads, 1)).sum().to(torch::kFloat);
  return torch::isfinite(total).logical_not().to(torch::kFloat);
}

// The step's outcome from the agreed [mean loss, ranks with a non-finite
// gradient, ranks asked to stop] on the host.
StepResult judge(const torch::Tensor& agreed, const StepHooks& hooks) {
  const auto a = agreed.accessor<float, 1>();
  const double loss = a[0];
  return {loss, hooks.check ? hooks.check(loss, a[1] == 0.0f) : std::string(), a[2] > 0};
}

}  // namespace

StepResult training_step(StepParts& parts, int64_t step, const StepHooks& hooks) {
  const auto& plan = parts.plan;
  PhaseTimer* timer = parts.timer;
  parts.optimizer.set_phase_timer(timer);
  auto loss_sum = torch::zeros({}, torch::dtype(torch::kFloat).device(parts.device));
  for (int64_t micro = 0; micro < plan.accumulation; ++micro) {
    TokenBatch batch;
    {
      PhaseScope data(timer, Phase::Data);
      batch = parts.data.next(parts.device);
    }
    parts.optimizer.begin_backward(micro == plan.accumulation - 1);
    Loss loss;
    if (parts.graph) {
      PhaseScope forward_backward(timer, Phase::Forward);  // one replay: the split is not seen
      loss.objective = parts.graph->run(batch.inputs, batch.targets);
    } else {
      {
        PhaseScope forward(timer, Phase::Forward);
        loss = parts.model.loss(batch);
      }
      if (hooks.change_loss) loss.objective = hooks.change_loss(micro, loss.objective);
      PhaseScope backward(timer, Phase::Backward);
      // Divided by the accumulation: the gradient of one micro-step's
      // objective, averaged, whatever the number of micro-steps (record 29's
      // one-GPU run sums eight micro-steps' instead: eight times the 8-GPU
      // gradient, which Adam and Muon almost entirely normalise away).
      (loss.objective / static_cast<double>(plan.accumulation)).backward();
    }
    loss_sum += loss.objective.detach() * loss.per_token;
  }
  {
    PhaseScope backward(timer, Phase::Backward);
    parts.optimizer.end_backward();
  }
  // One all-reduce tells every rank the mean loss, how many ranks saw a
  // non-finite gradient, and how many got a stop signal, so that all take the
  // same decision. The flags are summed, not averaged: a mean of n ones need
  // not be exactly 1 (Communicator::all_reduce_sum). (torch::full, not
  // torch::tensor: a host-to-device copy would wait for the queue to drain.)
  const bool stop = hooks.stop_requested && hooks.stop_requested();
  const auto agreed = sum_over_ranks_on_device(
      parts.comm, parts.device,
      {loss_sum / static_cast<double>(plan.accumulation), gradients_not_finite(parts.model, parts.device),
       torch::full({}, stop ? 1.0 : 0.0, torch::dtype(torch::kFloat).device(parts.device))},
      timer);
  if (parts.comm) agreed.narrow(0, 0, 1).div_(parts.comm->size());  // the loss: sum -> mean
  Optimizer& optimizer = parts.optimizer;
  StepResult result;
  if (optimizer.skips_on_device()) {
    // hooks.check's decision, taken on the device: the update is queued
    // right behind backward and the all-reduce, with no host read between.
    // The loss is compared in float64, as check() compares it, so both sides
    // decide alike; check() below says why, and a disagreement is a bug.
    torch::Tensor skip;
    if (hooks.check) {
      const auto loss = agreed[0].to(torch::kDouble);
      const double limit = hooks.spike_limit ? hooks.spike_limit() : std::numeric_limits<double>::infinity();
      skip = agreed[1].gt(0) | torch::isfinite(loss).logical_not() | loss.gt(limit);
    }
    optimizer.step(step, std::nullopt, skip);  // these rules take no loss
    const auto host = (skip.defined() ? torch::cat({agreed, skip.to(torch::kFloat).reshape({1})}) : agreed)
                          .to(torch::kCPU);
    result = judge(host, hooks);
    if (skip.defined()) {
      const bool skipped = host[3].item<float>() != 0;
      if (skipped == result.trouble.empty())
        throw std::logic_error(fmt::format("training_step: at step {} the device {} the update but the check said '{}'",
                                           step, skipped ? "skipped" : "applied", result.trouble));
    }
  } else {
    result = judge(agreed.to(torch::kCPU), hooks);
    if (result.trouble.empty()) optimizer.step(step, result.loss);  // Momo needs the loss
    else optimizer.discard_step();
  }
  // A graph adds into the gradients it captured: they are zeroed, not dropped.
  optimizer.zero_grad(/*set_to_none=*/parts.graph == nullptr);
  return result;
}

std::unique_ptr<MicroStepGraph> make_micro_step_graph(const Config& config, Communicator* comm, LanguageModelImpl& model,
                                                      const torch::Device& device, const BatchPlan& plan) {
  if (!config.train.cuda_graphs) return nullptr;
  // Any communicator, even over one rank (a launcher with one process): its
  // gradient hooks run on the host, which a replayed graph does not call,
  // and they were registered outside the capture stream, so capture fails.
  if (comm)
    throw ConfigError(fmt::format("train.cuda_graphs needs a single process without a launcher, but this run has "
                                  "the {} communicator over {} rank(s): the gradient all-reduce runs from hooks on "
                                  "the host, which a replayed graph does not call; start muonrun directly",
                                  comm->name(), comm->size()));
  if (model.layout() != BatchLayout::rows)
    throw ConfigError(fmt::format("train.cuda_graphs needs batches of one shape, but model.recipe {} trains on packed "
                                  "documents whose offsets change with every batch; set train.cuda_graphs: false",
                                  name_of(config.model.recipe)));
  if (!device.is_cuda())
    throw ConfigError(fmt::format("train.cuda_graphs needs a CUDA device (run.device is {})", device.str()));
  if (config.debug.inject_nan_step >= 0)
    throw ConfigError("train.cuda_graphs replays the captured loss: it cannot be combined with debug.inject_nan_step");
  auto tokens = torch::zeros({plan.micro_batch, plan.seq_len}, torch::dtype(torch::kLong).device(device));
  return capture_micro_step(model, tokens, tokens, 1.0 / static_cast<double>(plan.accumulation));
}

}  // namespace muonrun

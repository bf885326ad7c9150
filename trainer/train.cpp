#include "trainer/train.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "models/gpt.h"
#include "optim/optimizer.h"
#include "trainer/atomic_file.h"
#include "trainer/checkpoint.h"
#include "trainer/data/data_loader.h"
#include "trainer/device.h"
#include "trainer/evaluate.h"
#include "trainer/logging.h"
#include "trainer/metrics.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

// The batch arithmetic of a run: global batch = world x micro x seq x accumulation.
struct BatchPlan {
  int64_t micro_batch, seq_len, accumulation, val_batches;
};

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
  return {B, T, config.train.batch_tokens / per_micro_step,
          config.train.val_tokens / per_micro_step};
}

// Keeps the metrics.jsonl lines before `step`: the resumed run writes the
// line of `step` and those after it again.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    auto colon = line.find("\"step\":");
    if (colon == std::string::npos) continue;
    if (std::stoll(line.substr(colon + 7)) < step) kept += line + "\n";
  }
  write_file_atomically(path, kept);
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

std::string run_directory(const Config& config) {
  return config.run.dir.empty() ? "runs/" + config.run.name : config.run.dir;
}

TrainSummary run_training(const Config& config, const TrainOptions& options) {
  const int rank = 0, world = 1;
  const std::string run_dir = run_directory(config);
  init_run_logging(rank, config.run.log_level, run_dir);
  const BatchPlan plan = plan_batches(config, world);
  const torch::Device device = resolve_device(config.run.device, 0);
  configure_host(config.run.cpu_threads, 1);

  // Resolve the checkpoint first: a resume that would change the run is refused
  // before anything in the run directory is touched.
  std::optional<std::string> resume_from;
  if (!options.checkpoint.empty()) resume_from = options.checkpoint;
  else if (options.resume) {
    resume_from = find_latest_checkpoint(run_dir);
    if (!resume_from) throw std::runtime_error("--resume: no complete checkpoint in " + run_dir + "/checkpoints");
  }
  if (resume_from) {
    auto differences = config_differences(checkpoint_config(*resume_from), config, {"model.", "data."});
    if (!differences.empty() && !options.force) {
      std::string list;
      for (const auto& d : differences) list += "\n  " + d;
      throw std::runtime_error("refusing to resume from " + *resume_from +
                               ": the model or data config differs (use --force to resume anyway):" + list);
    }
  }
  write_file_atomically(run_dir + "/config.yaml", to_yaml(config));

  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  GPT model(config.model);
  model->to(device);
  if (device.is_cuda()) model->set_compute_dtype(torch::kBFloat16);
  Optimizer optimizer(*model, config.optim, config.schedule, config.train.steps);
  DataLoader train_data(config.data.train, plan.micro_batch, plan.seq_len, rank, world);
  DataLoader val_data(config.data.val, plan.micro_batch, plan.seq_len, rank, world);

  TrainerState state;
  if (resume_from) {
    state = load_checkpoint(*resume_from, model, optimizer);
    train_data.restore(state.loader);
    spdlog::info("resumed from {} at step {}", *resume_from, state.step);
    truncate_metrics(run_dir + "/metrics.jsonl", state.step);
  } else {
    fs::remove(run_dir + "/metrics.jsonl");
  }
  MetricsFile metrics(run_dir + "/metrics.jsonl");

  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  spdlog::info("run {}: {} parameters on {}, {} steps of {} tokens ({} x {} x {} x {} accumulation)",
               run_dir, params, device.str(), config.train.steps, config.train.batch_tokens, world,
               plan.micro_batch, plan.seq_len, plan.accumulation);

  TrainSummary summary{run_dir};
  StepMetrics pending;  // the current step's metrics, written once validation is decided
  pending.step = state.step;
  pending.total_steps = config.train.steps;
  if (!std::isnan(state.last_train_loss)) pending.train_loss = state.last_train_loss;
  const int64_t tokens_per_step = config.train.batch_tokens;
  auto timing = [&](StepMetrics& m) {
    m.train_time_ms = state.train_time_ms;
    m.step_avg_ms = state.timed_steps > 0 ? state.train_time_ms / state.timed_steps : 0;
    m.tokens_per_s = state.train_time_ms > 0
                         ? tokens_per_step * state.timed_steps / (state.train_time_ms / 1000)
                         : 0;
  };

  for (int64_t step = state.step;; ++step) {
    const bool last = step == config.train.steps;
    bool stop = last;
    const bool validate = last || (config.train.val_every > 0 && step % config.train.val_every == 0);
    if (validate) {
      const double val_loss = evaluate(model, val_data, plan.val_batches, plan.micro_batch, plan.seq_len, device);
      pending.val_loss = val_loss;
      timing(pending);
      spdlog::info("{}", val_line(pending));
      summary.val_loss = val_loss;
      if (config.train.val_loss_target > 0 && val_loss <= config.train.val_loss_target) {
        spdlog::info("val_loss {:.4f} reached the target {} at step {}", val_loss,
                     config.train.val_loss_target, step);
        summary.reached_target = true;
        stop = true;
      }
    }
    if (validate || pending.train_loss) metrics.write(pending);
    if (stop) {
      state.loader = train_data.position();
      save_checkpoint(run_dir, config, model, optimizer, state, config.checkpoint.keep_last);
      break;
    }

    // One optimizer step: forward/backward over the accumulation micro-batches.
    synchronize(device);
    const auto start = std::chrono::steady_clock::now();
    auto loss_sum = torch::zeros({}, torch::dtype(torch::kFloat).device(device));
    for (int64_t micro = 0; micro < plan.accumulation; ++micro) {
      auto [x, y] = next_batch(train_data, plan.micro_batch, plan.seq_len, device);
      auto loss = model->loss(x, y);
      (loss / static_cast<double>(plan.accumulation)).backward();
      loss_sum += loss.detach();
    }
    optimizer.step(step);
    optimizer.zero_grad();
    const double train_loss = loss_sum.item<double>() / static_cast<double>(plan.accumulation);
    synchronize(device);
    const double step_ms = elapsed_ms(start);
    if (step >= config.train.timing_warmup_steps) {
      state.train_time_ms += step_ms;
      state.timed_steps += 1;
    }
    state.step = step + 1;
    state.last_train_loss = train_loss;

    pending = StepMetrics{};
    pending.step = state.step;
    pending.total_steps = config.train.steps;
    pending.train_loss = train_loss;
    pending.lr_multiplier = optimizer.lr_multiplier(step);
    timing(pending);
    if (state.timed_steps == 0) pending.step_avg_ms = step_ms;  // still in the untimed warm-up
    if (state.step % config.train.log_every == 0 || state.step == config.train.steps)
      spdlog::info("{}", train_line(pending));

    if (config.checkpoint.every > 0 && state.step % config.checkpoint.every == 0 &&
        state.step < config.train.steps) {
      state.loader = train_data.position();
      save_checkpoint(run_dir, config, model, optimizer, state, config.checkpoint.keep_last);
    }
  }
  summary.steps = state.step;
  summary.train_time_ms = state.train_time_ms;
  summary.step_avg_ms = state.timed_steps > 0 ? state.train_time_ms / state.timed_steps : 0;
  return summary;
}

}  // namespace muonrun

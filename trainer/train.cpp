#include "trainer/train.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "comm/world.h"
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

// The checkpoint to resume from, if any; refuses one whose model or data
// config differs (unless forced) before anything in the run is touched.
std::optional<std::string> checkpoint_to_resume(const Config& config, const TrainOptions& options,
                                                const std::string& run_dir) {
  std::optional<std::string> from;
  if (!options.checkpoint.empty()) from = options.checkpoint;
  else if (options.resume) {
    from = find_latest_checkpoint(run_dir);
    if (!from) throw std::runtime_error("--resume: no complete checkpoint in " + run_dir + "/checkpoints");
  }
  if (!from) return from;
  auto differences = config_differences(checkpoint_config(*from), config, {"model.", "data."});
  if (!differences.empty() && !options.force) {
    std::string list;
    for (const auto& d : differences) list += "\n  " + d;
    throw std::runtime_error("refusing to resume from " + *from +
                             ": the model or data config differs (use --force to resume anyway):" + list);
  }
  return from;
}

// One rank's share of a training run.
class Run {
 public:
  Run(const Config& config, World& world, const torch::Device& device, const std::string& dir)
      : config_(config),
        world_(world),
        comm_(world.comm()),
        device_(device),
        dir_(dir),
        plan_(plan_batches(config, world.size())),
        model_(make_model(config, device)),
        optimizer_(*model_, config, comm_),
        train_data_(config.data.train, plan_.micro_batch, plan_.seq_len, world.rank(), world.size()),
        val_data_(config.data.val, plan_.micro_batch, plan_.seq_len, world.rank(), world.size()) {
    share_initial_weights();
  }

  TrainSummary train(const std::optional<std::string>& resume_from) {
    if (resume_from) {
      state_ = load_checkpoint(*resume_from, model_, optimizer_, world_.rank());
      train_data_.restore(state_.loader);
      spdlog::info("resumed from {} at step {}", *resume_from, state_.step);
    }
    if (world_.rank() == 0) {
      if (resume_from) truncate_metrics(dir_ + "/metrics.jsonl", state_.step);
      else fs::remove(dir_ + "/metrics.jsonl");
      metrics_ = std::make_unique<MetricsFile>(dir_ + "/metrics.jsonl");
    }
    log_start();

    TrainSummary summary{dir_};
    StepMetrics pending = metrics_of_step(state_.step);  // written once validation is decided
    if (!std::isnan(state_.last_train_loss)) pending.train_loss = state_.last_train_loss;
    for (int64_t step = state_.step;; ++step) {
      const bool last = step == config_.train.steps;
      bool stop = last;
      if (last || (config_.train.val_every > 0 && step % config_.train.val_every == 0)) {
        pending.val_loss = validate();
        spdlog::info("{}", val_line(pending));
        summary.val_loss = pending.val_loss;
        if (config_.train.val_loss_target > 0 && *pending.val_loss <= config_.train.val_loss_target) {
          spdlog::info("val_loss {:.4f} reached the target {} at step {}", *pending.val_loss,
                       config_.train.val_loss_target, step);
          summary.reached_target = stop = true;
        }
      }
      if (metrics_ && (pending.val_loss || pending.train_loss)) metrics_->write(pending);
      if (stop) {
        checkpoint();
        break;
      }
      const double step_ms = train_step(step);
      pending = metrics_of_step(state_.step);
      pending.train_loss = state_.last_train_loss;
      pending.lr_multiplier = optimizer_.lr_multiplier(step);
      if (state_.timed_steps == 0) pending.step_avg_ms = step_ms;  // still in the untimed warm-up
      if (state_.step % config_.train.log_every == 0 || state_.step == config_.train.steps)
        spdlog::info("{}", train_line(pending));
      if (config_.checkpoint.every > 0 && state_.step % config_.checkpoint.every == 0 &&
          state_.step < config_.train.steps)
        checkpoint();
    }
    summary.steps = state_.step;
    summary.train_time_ms = state_.train_time_ms;
    summary.step_avg_ms = state_.timed_steps > 0 ? state_.train_time_ms / state_.timed_steps : 0;
    return summary;
  }

 private:
  static GPT make_model(const Config& config, const torch::Device& device) {
    torch::manual_seed(static_cast<uint64_t>(config.run.seed));
    GPT model(config.model);
    model->to(device);
    if (device.is_cuda()) model->set_compute_dtype(torch::kBFloat16);
    return model;
  }

  // Every rank starts from rank 0's weights, whatever its RNG did.
  void share_initial_weights() {
    if (!comm_) return;
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) comm_->broadcast(p, 0)->wait();
  }

  double mean_over_ranks(const torch::Tensor& scalar) {
    auto value = scalar.detach().to(torch::kFloat).reshape({1}).clone();
    if (comm_) comm_->all_reduce_mean(value)->wait();
    return value.item<double>();
  }

  double validate() {
    auto local = torch::tensor(evaluate(model_, val_data_, plan_.val_batches, plan_.micro_batch,
                                        plan_.seq_len, device_));
    return mean_over_ranks(local);
  }

  // One optimizer step over the accumulation micro-batches; returns its ms.
  double train_step(int64_t step) {
    synchronize(device_);
    const auto start = std::chrono::steady_clock::now();
    auto loss_sum = torch::zeros({}, torch::dtype(torch::kFloat).device(device_));
    for (int64_t micro = 0; micro < plan_.accumulation; ++micro) {
      auto [x, y] = next_batch(train_data_, plan_.micro_batch, plan_.seq_len, device_);
      optimizer_.begin_backward(micro == plan_.accumulation - 1);
      auto loss = model_->loss(x, y);
      (loss / static_cast<double>(plan_.accumulation)).backward();
      loss_sum += loss.detach();
    }
    optimizer_.end_backward();
    optimizer_.step(step);
    optimizer_.zero_grad();
    const double train_loss = mean_over_ranks(loss_sum / static_cast<double>(plan_.accumulation));
    synchronize(device_);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (step >= config_.train.timing_warmup_steps) {
      state_.train_time_ms += ms;
      state_.timed_steps += 1;
    }
    state_.step = step + 1;
    state_.last_train_loss = train_loss;
    return ms;
  }

  void checkpoint() {
    state_.loader = train_data_.position();
    save_checkpoint(dir_, config_, model_, optimizer_, state_, config_.checkpoint.keep_last, comm_);
  }

  StepMetrics metrics_of_step(int64_t step) const {
    StepMetrics m;
    m.step = step;
    m.total_steps = config_.train.steps;
    m.train_time_ms = state_.train_time_ms;
    m.step_avg_ms = state_.timed_steps > 0 ? state_.train_time_ms / state_.timed_steps : 0;
    m.tokens_per_s = state_.train_time_ms > 0
                         ? config_.train.batch_tokens * state_.timed_steps / (state_.train_time_ms / 1000)
                         : 0;
    return m;
  }

  void log_start() const {
    int64_t params = 0;
    for (const auto& p : model_->parameters()) params += p.numel();
    spdlog::info("run {}: {} parameters; {} rank(s) ({}{}) on {}; {} steps of {} tokens = {} x {} x {} x {} accumulation",
                 dir_, params, world_.size(), launcher_name(world_.launch().launcher),
                 comm_ ? ", " + comm_->name() : std::string(), device_.str(), config_.train.steps,
                 config_.train.batch_tokens, world_.size(), plan_.micro_batch, plan_.seq_len, plan_.accumulation);
    if (const auto* plan = optimizer_.ownership()) {
      const auto [lo, hi] = std::minmax_element(plan->flops_per_rank.begin(), plan->flops_per_rank.end());
      spdlog::info("muon: {} matrices in {} shards; Newton-Schulz GFLOP per rank per step: max {:.2f}, min {:.2f}",
                   plan->owner.size(), plan->shards.size(), *hi / 1e9, *lo / 1e9);
    }
  }

  const Config& config_;
  World& world_;
  Communicator* comm_;
  torch::Device device_;
  std::string dir_;
  BatchPlan plan_;
  GPT model_;
  Optimizer optimizer_;
  DataLoader train_data_, val_data_;
  TrainerState state_;
  std::unique_ptr<MetricsFile> metrics_;
};

}  // namespace

std::string run_directory(const Config& config) {
  return config.run.dir.empty() ? "runs/" + config.run.name : config.run.dir;
}

TrainSummary run_training(const Config& config, const TrainOptions& options) {
  const LaunchInfo launch = detect_launch();
  const std::string run_dir = run_directory(config);
  init_run_logging(launch.rank, config.run.log_level, run_dir);
  const torch::Device device = resolve_device(config.run.device, launch.local_rank);
  configure_host(config.run.cpu_threads, launch.local_size);
  World world(launch, device, std::chrono::milliseconds(static_cast<int64_t>(config.comm.timeout_s * 1000)));
  try {
    const auto flat = to_yaml(config);
    world.check_same_run(fnv1a(flat.data(), flat.size()));
    const auto resume_from = checkpoint_to_resume(config, options, run_dir);
    if (world.rank() == 0) write_file_atomically(run_dir + "/config.yaml", to_yaml(config));
    Run run(config, world, device, run_dir);
    return run.train(resume_from);
  } catch (const std::exception& e) {
    // The other ranks would wait for this one until their timeout: under
    // mpirun, end them now, with the reason in this rank's log.
    if (world.size() > 1) {
      spdlog::error("rank {}: {}", world.rank(), e.what());
      world.abort(1);
    }
    throw;
  }
}

}  // namespace muonrun

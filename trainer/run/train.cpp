#include "trainer/run/train.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "comm/world.h"
#include "optim/optimizer.h"
#include "trainer/base/atomic_file.h"
#include "trainer/io/checkpoint.h"
#include "trainer/run/device.h"
#include "trainer/faults/divergence.h"
#include "trainer/base/exit_codes.h"
#include "trainer/faults/heartbeat.h"
#include "trainer/faults/signals.h"
#include "trainer/run/train_step.h"
#include "trainer/run/evaluate.h"
#include "trainer/base/logging.h"
#include "trainer/io/metrics.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

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
  // The batch and cut schedules decide the data stream as data.* does: a
  // resumed run with others would read other documents than the run did.
  auto differences = config_differences(checkpoint_config(*from), config,
                                        {"model.", "data.", "train.batch_schedule", "train.doc_cut_schedule"});
  if (!differences.empty() && !options.force) {
    std::string list;
    for (const auto& d : differences) list += "\n  " + d;
    throw std::runtime_error("refusing to resume from " + *from +
                             ": the model or data config differs (use --force to resume anyway):" + list);
  }
  return from;
}

// The run stopped because the loss or gradients diverged (train.on_divergence).
struct DivergedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What one optimizer step produced, agreed on by all ranks.
struct StepOutcome {
  double ms;
  double loss;          // mean over ranks
  std::string trouble;  // why the step diverged, or ""
  bool stop_requested;  // some rank got a stop signal
};

// One rank's share of a training run.
class Run {
 public:
  Run(const Config& config, World& world, const torch::Device& device, const std::string& dir,
      Heartbeat& heartbeat)
      : config_(config),
        world_(world),
        comm_(world.comm()),
        device_(device),
        dir_(dir),
        heartbeat_(heartbeat),
        model_(make_model(config, device)),
        plan_(plan_batches(config, world.size(), model_->layout())),
        optimizer_(*model_, config, comm_),
        train_data_(make_training_batches(config, model_->layout(), plan_.train_shape(), world.rank(), world.size())),
        val_data_(make_validation_batches(config, model_->layout(), plan_.val_shape(), world.rank(), world.size())),
        divergence_(config.train.spike_zscore, config.train.spike_window) {
    share_initial_weights();
  }

  TrainSummary train(const std::optional<std::string>& resume_from) {
    if (resume_from) restore(*resume_from);
    graph_ = make_micro_step_graph(config_, comm_, *model_, device_, plan_);  // after the weights are final
    if (world_.rank() == 0) {
      if (!resume_from) fs::remove(dir_ + "/metrics.jsonl");
      metrics_ = std::make_unique<MetricsFile>(dir_ + "/metrics.jsonl");
    }
    log_start();

    TrainSummary summary;
    summary.run_dir = dir_;
    StepMetrics pending = metrics_of_step(state_.step);  // written once validation is decided
    if (!std::isnan(state_.last_train_loss)) pending.train_loss = state_.last_train_loss;
    for (int64_t step = state_.step;; ++step) {
      const bool last = step == config_.train.steps;
      model_->set_progress({step, config_.train.steps, config_.schedule.extension_steps});  // validation at `step` and the step itself
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

      const StepOutcome outcome = train_step(step);
      if (!outcome.trouble.empty()) {
        if (recover_from_divergence(step, outcome.trouble)) {
          // Rolled back: continue from the checkpoint's step.
          step = state_.step - 1;
          pending = metrics_of_step(state_.step);
          pending.train_loss = state_.last_train_loss;
          continue;
        }
      } else {
        state_.last_train_loss = outcome.loss;
      }
      pending = metrics_of_step(state_.step);
      pending.train_loss = outcome.loss;
      pending.lr_multiplier = optimizer_.lr_multiplier(step);
      if (state_.timed_steps == 0) pending.step_avg_ms = outcome.ms;  // still in the untimed warm-up
      if (state_.step % config_.train.log_every == 0 || state_.step == config_.train.steps)
        spdlog::info("{}", train_line(pending));
      heartbeat_.beat(state_.step);

      if (outcome.stop_requested) {
        if (metrics_) metrics_->write(pending);
        const std::string where = checkpoint();
        spdlog::warn("stopped by signal {} after step {}; checkpoint {}; continue with --resume",
                     stop_signal(), state_.step, where);
        summary.stopped_by_signal = true;
        break;
      }
      if (config_.checkpoint.every > 0 && state_.step % config_.checkpoint.every == 0 &&
          state_.step < config_.train.steps)
        checkpoint();
    }
    summary.steps = state_.step;
    summary.skipped_steps = skipped_steps_;
    summary.train_time_ms = state_.train_time_ms;
    summary.step_avg_ms = state_.timed_steps > 0 ? state_.train_time_ms / state_.timed_steps : 0;
    return summary;
  }

 private:
  // Every rank starts from rank 0's weights, whatever its RNG did.
  void share_initial_weights() {
    if (!comm_) return;
    torch::NoGradGuard no_grad;
    for (auto& p : model_->parameters()) comm_->broadcast(p, 0)->wait();
  }

  void restore(const std::string& checkpoint_dir) {
    state_ = load_checkpoint(checkpoint_dir, *model_, optimizer_, world_.rank());
    // The position was found for the batch stage (sequence length and
    // document cut) of the step before: the loader gets that stage first,
    // and the next step's as the run did.
    train_data_->set_stage(plan_.step_stage(std::max<int64_t>(0, state_.step - 1)));
    train_data_->restore(state_.loader);
    optimizer_.set_lr_scale(state_.lr_scale);
    if (world_.rank() == 0) truncate_metrics(dir_ + "/metrics.jsonl", state_.step);
    spdlog::info("resumed from {} at step {}", checkpoint_dir, state_.step);
  }

  // Means over ranks of a few scalars, in one small all-reduce.
  std::vector<double> mean_over_ranks(std::vector<torch::Tensor> scalars) {
    return muonrun::mean_over_ranks(comm_, device_, std::move(scalars));
  }

  double validate() {
    heartbeat_.pulse();  // evaluation is a long phase of its own
    auto local = torch::tensor(evaluate(*model_, *val_data_, plan_.val_batches, device_));
    return mean_over_ranks({local})[0];
  }

  // One optimizer step over the accumulation micro-batches.
  StepOutcome train_step(int64_t step) {
    synchronize(device_);
    const auto start = std::chrono::steady_clock::now();
    train_data_->set_stage(plan_.step_stage(step));  // train.batch_schedule's stage
    StepParts parts{*model_, optimizer_, *train_data_, comm_, device_, plan_, nullptr, graph_.get()};
    StepHooks hooks;
    hooks.change_loss = [&](int64_t, torch::Tensor loss) {
      if (step == config_.debug.inject_nan_step && world_.rank() == 0 && !nan_injected_) {
        loss = loss * std::numeric_limits<float>::quiet_NaN();
        nan_injected_ = true;
      }
      return loss;
    };
    hooks.check = [&](double loss, bool finite) { return divergence_.check(loss, finite); };
    hooks.spike_limit = [&] { return divergence_.spike_limit(); };
    hooks.stop_requested = [] { return stop_requested(); };
    const StepResult result = training_step(parts, step, hooks);
    StepOutcome outcome{0, result.loss, result.trouble, result.stop_requested};
    synchronize(device_);
    outcome.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (step >= config_.train.timing_warmup_steps) {
      state_.train_time_ms += outcome.ms;
      state_.timed_steps += 1;
    }
    state_.step = step + 1;
    return outcome;
  }

  // Applies train.on_divergence to a bad step; returns true after a rollback.
  bool recover_from_divergence(int64_t step, const std::string& trouble) {
    const OnDivergence policy = config_.train.on_divergence;
    if (policy == OnDivergence::skip) {
      ++skipped_steps_;
      spdlog::warn("step {}: {}; update skipped (train.on_divergence=skip, {} skipped so far)", step + 1, trouble,
                   skipped_steps_);
      return false;
    }
    const auto latest = find_latest_checkpoint(dir_);
    if (policy == OnDivergence::rollback && latest && state_.rollbacks < config_.train.max_rollbacks) {
      const double lr_scale = state_.lr_scale * config_.train.rollback_lr_factor;
      const int64_t rollbacks = state_.rollbacks + 1;
      spdlog::warn("step {}: {}; rolling back to {} with lr x{} (rollback {} of {})", step + 1, trouble, *latest,
                   lr_scale, rollbacks, config_.train.max_rollbacks);
      if (comm_) comm_->barrier();
      restore(*latest);
      state_.lr_scale = lr_scale;
      state_.rollbacks = rollbacks;
      optimizer_.set_lr_scale(lr_scale);
      if (metrics_) metrics_ = std::make_unique<MetricsFile>(dir_ + "/metrics.jsonl");
      return true;
    }
    std::string why = policy == OnDivergence::stop ? "train.on_divergence=stop"
                      : !latest        ? "no checkpoint to roll back to"
                                       : "train.max_rollbacks reached";
    throw DivergedError(fmt::format("step {}: {}; stopping ({}). Last complete checkpoint: {}", step + 1, trouble,
                                    why, latest ? *latest : std::string("none")));
  }

  std::string checkpoint() {
    heartbeat_.pulse();  // writing a checkpoint is a long phase of its own
    state_.loader = train_data_->position();
    return save_checkpoint(dir_, config_, *model_, optimizer_, state_, comm_);
  }

  StepMetrics metrics_of_step(int64_t step) const {
    StepMetrics m;
    m.step = step;
    m.total_steps = config_.train.steps;
    m.train_time_ms = state_.train_time_ms;
    m.step_avg_ms = state_.timed_steps > 0 ? state_.train_time_ms / state_.timed_steps : 0;
    m.tokens_per_s = state_.train_time_ms > 0
                         ? static_cast<double>(plan_.tokens_of_steps(state_.step - state_.timed_steps, state_.step)) /
                               (state_.train_time_ms / 1000)
                         : 0;
    return m;
  }

  void log_start() const {
    int64_t params = 0;
    for (const auto& p : model_->parameters()) params += p.numel();
    spdlog::info("run {}: {} ({} parameters); {} rank(s) ({}{}) on {}; {} steps of {} tokens = {} x {} x {} x {} accumulation",
                 dir_, name_of(config_.model.recipe), params, world_.size(), launcher_name(world_.launch().launcher),
                 comm_ ? ", " + comm_->name() : std::string(), device_.str(), config_.train.steps,
                 config_.train.batch_tokens, world_.size(), plan_.micro_batch, plan_.seq_len, plan_.accumulation);
    if (!plan_.stage_tokens.empty())
      spdlog::info("batch schedule: {} tokens per step by equal parts of {} scheduled steps (sequences of {} tokens "
                   "per rank at first); documents cut at {} tokens",
                   config_.train.batch_schedule, plan_.scheduled_steps, plan_.step_seq_len(0),
                   config_.train.doc_cut_schedule.empty() ? std::to_string(plan_.max_doc_tokens)
                                                          : config_.train.doc_cut_schedule);
    spdlog::info("optimizer: {}", optimizer_.describe());
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
  Heartbeat& heartbeat_;
  LanguageModel model_;  // model.recipe's network
  BatchPlan plan_;
  Optimizer optimizer_;
  std::unique_ptr<BatchSource> train_data_, val_data_;
  DivergenceDetector divergence_;
  std::unique_ptr<MicroStepGraph> graph_;  // train.cuda_graphs
  TrainerState state_;
  std::unique_ptr<MetricsFile> metrics_;
  int64_t skipped_steps_ = 0;
  bool nan_injected_ = false;
};

}  // namespace

std::string run_directory(const Config& config) {
  return config.run.dir.empty() ? "runs/" + config.run.name : config.run.dir;
}

TrainSummary run_training(const Config& config, const TrainOptions& options) {
  const LaunchInfo launch = detect_launch();
  const std::string run_dir = run_directory(config);
  init_run_logging(launch.rank, spdlog_level(config.run.log_level), run_dir);
  install_stop_handlers();
  const torch::Device device = resolve_device(config.run.device, launch.local_rank);
  configure_host(config.run.cpu_threads, launch.local_size);
  World world(launch, device, std::chrono::milliseconds(static_cast<int64_t>(config.comm.timeout_s * 1000)));
  Heartbeat heartbeat(run_dir, world.rank());
  try {
    heartbeat.set_peers(world.all_gather_words(heartbeat.endpoint()));
    const auto flat = to_yaml(config);
    world.check_same_run(fnv1a(flat.data(), flat.size()));
    const auto resume_from = checkpoint_to_resume(config, options, run_dir);
    if (world.rank() == 0) write_file_atomically(run_dir + "/config.yaml", to_yaml(config));
    Run run(config, world, device, run_dir, heartbeat);
    return run.train(resume_from);
  } catch (const CommunicationError& e) {
    // Name the rank that fell behind, then end the job on every rank rather
    // than leave the others waiting for their own timeouts.
    // The one rank prefix of the line: the communicators' messages carry none.
    spdlog::error("rank {}: {}; {}", world.rank(), e.what(), heartbeat.diagnose());
    spdlog::default_logger()->flush();
    world.abort(kExitCommunicationFailure, /*links_may_be_down=*/true);
    throw;
  } catch (const DivergedError& e) {
    spdlog::error("{}", e.what());
    throw TrainingStopped(e.what(), kExitDiverged);
  } catch (const std::exception& e) {
    if (world.size() > 1) {
      spdlog::error("rank {}: {}", world.rank(), e.what());
      world.abort(kExitError);
    }
    throw;
  }
}

}  // namespace muonrun

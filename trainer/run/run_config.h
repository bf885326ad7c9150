// The training loop's config: the run's identity, its steps and batches, and fault injection.
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/base/choice.h"

namespace muonrun {

enum class LogLevel { trace, debug, info, warn, error };
inline constexpr Choice<LogLevel> kLogLevelChoices[] = {
    {"trace", LogLevel::trace}, {"debug", LogLevel::debug}, {"info", LogLevel::info},
    {"warn", LogLevel::warn},   {"error", LogLevel::error}};
constexpr const auto& choices(LogLevel) { return kLogLevelChoices; }
static_assert(choices_in_enum_order(kLogLevelChoices));

// run.device: "automatic" is spelt `auto` in config files.
enum class RunDevice { automatic, cpu, cuda };
inline constexpr Choice<RunDevice> kRunDeviceChoices[] = {
    {"auto", RunDevice::automatic}, {"cpu", RunDevice::cpu}, {"cuda", RunDevice::cuda}};
constexpr const auto& choices(RunDevice) { return kRunDeviceChoices; }
static_assert(choices_in_enum_order(kRunDeviceChoices));

// What a non-finite loss or gradient (or a loss spike) does: skip the
// update, roll back to the last checkpoint with a lower lr, or stop.
enum class OnDivergence { skip, rollback, stop };
inline constexpr Choice<OnDivergence> kOnDivergenceChoices[] = {
    {"skip", OnDivergence::skip}, {"rollback", OnDivergence::rollback}, {"stop", OnDivergence::stop}};
constexpr const auto& choices(OnDivergence) { return kOnDivergenceChoices; }
static_assert(choices_in_enum_order(kOnDivergenceChoices));

struct RunConfig {
  std::string name = "speedrun";
  std::string dir;  // empty: runs/<name>
  LogLevel log_level = LogLevel::info;
  RunDevice device = RunDevice::automatic;  // auto: cuda when available, else cpu
  int64_t cpu_threads = 0;      // 0: the node's cores divided among its ranks
  int64_t seed = 0;
};

struct TrainConfig {
  int64_t steps = 3000;
  int64_t batch_tokens = 524288;  // global batch; accumulation is derived from it
  // The global batch of each equal part of the scheduled steps, e.g.
  // "131072 262144 393216" (record 50); "": batch_tokens throughout.
  std::string batch_schedule;
  // With it, each stage's cut of the packed documents in tokens, e.g. "896
  // 2048 2048" (the record's .send((batch, max_seq_len, accumulation)));
  // "": data.max_doc_tokens in every stage.
  std::string doc_cut_schedule;
  int64_t micro_batch = 64;       // sequences per rank per forward/backward
  int64_t val_every = 125;        // 0: only at the end
  int64_t val_tokens = 10485760;
  int64_t val_seq_len = 0;  // tokens per validation sequence; 0: model.seq_len
  double val_loss_target = 3.28;  // stop once val_loss <= target; 0: never
  int64_t timing_warmup_steps = 10;  // first steps not counted in train_time
  int64_t log_every = 1;
  // What a non-finite loss or gradient (or a loss spike) does: "skip" the
  // update, "rollback" to the last checkpoint with a lower lr, or "stop".
  OnDivergence on_divergence = OnDivergence::stop;
  double spike_zscore = 0;     // > 0: a loss this many std devs above the window is a spike
  int64_t spike_window = 128;  // losses the spike z-score is measured over
  double rollback_lr_factor = 0.5;
  int64_t max_rollbacks = 3;
  // Capture the micro-step as a CUDA graph and replay it (one process on a
  // GPU; trainer/run/micro_step_graph.h). Off until a GPU run verifies it.
  bool cuda_graphs = false;
};

// Fault injection for testing the recovery paths; off by default.
struct DebugConfig {
  int64_t inject_nan_step = -1;  // poison rank 0's loss once at this step
};

}  // namespace muonrun

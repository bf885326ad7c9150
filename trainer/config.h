// The configuration of a run: typed structs whose member initialisers are the
// one place where each default is defined.
//
// A config is built from YAML files and `--set key.path=value` overrides,
// applied in order (later wins). A config file may start from another one
// with a top-level `base: speedrun.yaml` (a path relative to the file naming
// it): the base config, and its own base, are applied first, then the
// file's keys on top. A key given twice in one mapping is an error. The schema (key names, ranges, choices and
// help text) lives in config.cpp next to the loader and the YAML writer, so
// adding a field means adding it here and naming it once there.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace muonrun {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct RunConfig {
  std::string name = "speedrun";
  std::string dir;  // empty: runs/<name>
  std::string log_level = "info";
  std::string device = "auto";  // auto: cuda when available, else cpu
  int64_t cpu_threads = 0;      // 0: the node's cores divided among its ranks
  int64_t seed = 0;
};

struct ModelConfig {
  int64_t vocab_size = 50257;
  int64_t vocab_multiple = 128;  // embedding and head are padded to a multiple
  int64_t layers = 12;
  int64_t heads = 6;
  int64_t head_dim = 128;
  int64_t dim = 768;
  int64_t mlp_ratio = 4;
  int64_t seq_len = 1024;
  double rope_base = 10000;
  double logit_softcap = 30;
};

struct DataConfig {
  std::string train = "data/fineweb10B/fineweb_train_*.bin";
  std::string val = "data/fineweb10B/fineweb_val_*.bin";
};

struct TrainConfig {
  int64_t steps = 3000;
  int64_t batch_tokens = 524288;  // global batch; accumulation is derived from it
  int64_t micro_batch = 64;       // sequences per rank per forward/backward
  int64_t val_every = 125;        // 0: only at the end
  int64_t val_tokens = 10485760;
  double val_loss_target = 3.28;  // stop once val_loss <= target; 0: never
  int64_t timing_warmup_steps = 10;  // first steps not counted in train_time
  int64_t log_every = 1;
  // What a non-finite loss or gradient (or a loss spike) does: "skip" the
  // update, "rollback" to the last checkpoint with a lower lr, or "stop".
  std::string on_divergence = "stop";
  double spike_zscore = 0;     // > 0: a loss this many std devs above the window is a spike
  int64_t spike_window = 128;  // losses the spike z-score is measured over
  double rollback_lr_factor = 0.5;
  int64_t max_rollbacks = 3;
};

struct ScheduleConfig {
  int64_t warmup_steps = 0;
  double cooldown_frac = 0.3;  // linear decay to 0 over this final fraction
};

struct AdamConfig {
  double embed_lr = 0.6;
  double head_lr = 0.008;
  double scalar_lr = 0.04;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0;
  double matrix_lr = 0.008;  // hidden matrices, when optim.matrix_optimizer = adamw
  // The thesis notes' knobs (seed 000 §3.3.1, §4; recipe §6).
  bool bias_correction = true;  // divide m by 1-b1^t and v by 1-b2^t
  bool zero_init = true;        // m0 = v0 = 0; false: m0 = g1, v0 = g1^2
  bool nested = false;          // step EMA_b1(g / (sqrt(v) + eps)) instead of m / (sqrt(v) + eps)
  // Epsilon of each group; 0: `eps`.
  double embed_eps = 0;
  double head_eps = 0;
  double scalar_eps = 0;
  double matrix_eps = 0;
};

struct MuonConfig {
  double lr = 0.04;
  double momentum = 0.95;
  double momentum_warmup_start = 0.85;
  int64_t momentum_warmup_steps = 500;
  bool nesterov = true;
  int64_t ns_steps = 5;
  double weight_decay = 0;
  // With several ranks: "owner" gives each matrix to one rank (reduce-scatter
  // of gradients, Newton-Schulz on the owner, all-gather of weights);
  // "replicated" all-reduces gradients and every rank updates every matrix.
  std::string distribute = "owner";
  // Polar factor: Newton-Schulz with the fixed "quintic" or the per-step
  // "polar_express" coefficients (recipe §4), or the exact "svd" (ablations).
  std::string polar = "quintic";
  // Update scale per shape: "original" sqrt(max(1, rows/cols)),
  // "match_rms_adamw" 0.2 sqrt(max(rows, cols)), "spectral" sqrt(rows/cols).
  std::string shape_factor = "original";
};

// Muon and AdamW as one steepest descent over all parameters (seed 003,
// recipe §7); the defaults are the recipe's Muon + Adam.
struct SteepestConfig {
  std::string mode = "constrained";    // or "regularized": step scaled by the dual norm
  std::string outer_norm = "max";      // how layer norms combine: max, l2 or hybrid
  std::string backup_norm = "ada_inf"; // norm of non-matrix parameters: ada_inf (Adam), sign, ada_2
  bool stale_dual_norms = false;       // use the previous step's nuclear norms (one pass)
};

// Momo step sizes (Schaipp et al. 2024; seed 003, recipe §7): never step past
// the loss lower bound f_star predicted by the momentum model.
struct MomoConfig {
  bool enabled = false;
  double f_star = 0;  // lower bound of the training loss
  double beta = 0.9;  // EMA of f - <g, w>
};

struct OptimConfig {
  std::string matrix_optimizer = "muon";  // or "adamw": AdamW for everything
  std::string preset = "none";  // muon_adam, scion, muonmax, polargrad: see optim/presets.h
  AdamConfig adam;
  MuonConfig muon;
  SteepestConfig steepest;
  MomoConfig momo;
};

struct CommConfig {
  double bucket_mb = 25;    // gradient all-reduce bucket size
  double timeout_s = 600;   // a collective waiting longer fails instead of hanging
};

struct CheckpointConfig {
  int64_t every = 0;  // 0: only at the end of the run
  int64_t keep_last = 2;
  int64_t keep_every = 0;  // also keep every checkpoint whose step is a multiple (0: none)
};

// Fault injection for testing the recovery paths; off by default.
struct DebugConfig {
  int64_t inject_nan_step = -1;  // poison rank 0's loss once at this step
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  ScheduleConfig schedule;
  OptimConfig optim;
  CommConfig comm;
  CheckpointConfig checkpoint;
  DebugConfig debug;
};

// Applies the YAML files (each after its `base:` chain), then the
// `key.path=value` overrides, onto the defaults. Throws ConfigError naming
// the file, line and key path; a base that leads back to a file being read
// is refused, naming the chain. Files over
// 1 MiB are refused unread (configs are a few kilobytes), as are strings that
// are not UTF-8 text, which the config.yaml of a run could not hold.
Config load_config(const std::vector<std::string>& files,
                   const std::vector<std::string>& overrides);

// Applies YAML text (as from a file named `source`) onto `config`. Only
// load_config() follows `base:`: here it is an unknown key.
void apply_yaml(Config& config, const std::string& yaml_text, const std::string& source);

// Applies one `key.path=value` override.
void apply_override(Config& config, const std::string& assignment);

// The whole config as YAML, every key present, with a comment per key.
std::string to_yaml(const Config& config);

// Every key as (full.key.path, value as text), in schema order: used to list
// differences between two configs and to hash a config.
std::vector<std::pair<std::string, std::string>> flatten(const Config& config);

}  // namespace muonrun

// The configuration of a run: typed structs whose member initialisers are the
// one place where each default is defined.
//
// A config is built from YAML files and `--set key.path=value` overrides,
// applied in order (later wins). The schema (key names, ranges, choices and
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
};

struct OptimConfig {
  std::string matrix_optimizer = "muon";  // or "adamw": AdamW for everything
  AdamConfig adam;
  MuonConfig muon;
};

struct CommConfig {
  double bucket_mb = 25;    // gradient all-reduce bucket size
  double timeout_s = 600;   // a collective waiting longer fails instead of hanging
};

struct CheckpointConfig {
  int64_t every = 0;  // 0: only at the end of the run
  int64_t keep_last = 2;
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
};

// Applies the YAML files, then the `key.path=value` overrides, onto the
// defaults. Throws ConfigError naming the file, line and key path.
Config load_config(const std::vector<std::string>& files,
                   const std::vector<std::string>& overrides);

// Applies YAML text (as from a file named `source`) onto `config`.
void apply_yaml(Config& config, const std::string& yaml_text, const std::string& source);

// Applies one `key.path=value` override.
void apply_override(Config& config, const std::string& assignment);

// The whole config as YAML, every key present, with a comment per key.
std::string to_yaml(const Config& config);

// Every key as (full.key.path, value as text), in schema order: used to list
// differences between two configs and to hash a config.
std::vector<std::pair<std::string, std::string>> flatten(const Config& config);

}  // namespace muonrun

// The configuration of a run: the config struct of each component, assembled.
// Each struct lives next to the component it configures (models/model_config.h,
// optim/optim_config.h, comm/comm_config.h, trainer/data/data_config.h,
// trainer/io/checkpoint_config.h, trainer/run/run_config.h); its member
// initialisers are the one place where each default is defined.
//
// A config is built from YAML files and `--set key.path=value` overrides,
// applied in order (later wins). A config file may start from another one
// with a top-level `base: speedrun.yaml` (a path relative to the file naming
// it): the base config, and its own base, are applied first, then the
// file's keys on top. A key given twice in one mapping is an error. The schema (key names, ranges, choices and
// help text) lives in config.cpp next to the loader and the YAML writer, so
// adding a field means adding it to its component's struct and naming it once there.
#pragma once

#include <spdlog/common.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "comm/comm_config.h"
#include "models/model_config.h"
#include "optim/optim_config.h"
#include "trainer/base/config_error.h"
#include "trainer/data/data_config.h"
#include "trainer/io/checkpoint_config.h"
#include "trainer/run/run_config.h"

namespace muonrun {

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

// The spdlog level of run.log_level.
spdlog::level::level_enum spdlog_level(LogLevel level);

}  // namespace muonrun

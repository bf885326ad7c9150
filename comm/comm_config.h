// The communication config: gradient buckets and how long a collective may wait.
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace muonrun {

struct CommConfig {
  double bucket_mb = 25;    // gradient all-reduce bucket size
  double timeout_s = 600;   // a collective waiting longer fails instead of hanging
};

}  // namespace muonrun

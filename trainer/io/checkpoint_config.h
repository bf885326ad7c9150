// The checkpoint config: how often checkpoints are written and which are kept.
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace muonrun {

struct CheckpointConfig {
  int64_t every = 0;  // 0: only at the end of the run
  int64_t keep_last = 2;
  int64_t keep_every = 0;  // also keep every checkpoint whose step is a multiple (0: none)
};

}  // namespace muonrun

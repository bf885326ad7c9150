// The data config: which token shards a run reads.
// The aggregate config (trainer/config/config.h) assembles it; its keys and
// help text are in the schema of trainer/config/config.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace muonrun {

struct DataConfig {
  std::string train = "data/fineweb10B/fineweb_train_*.bin";
  std::string val = "data/fineweb10B/fineweb_val_*.bin";
  // Document-aligned batches cut each document to this many tokens
  // (record 29's train_max_seq_len, 2048).
  int64_t max_doc_tokens = 2048;
};

}  // namespace muonrun

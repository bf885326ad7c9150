// `muonrun prepare`: raw text in, GPT-2 token shards out (train_000000.bin,
// ..., val_000000.bin, ...), using every core while keeping the output
// byte-identical whatever the number of threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace muonrun {

struct PrepareOptions {
  std::vector<std::string> inputs;      // .txt / .jsonl, optionally .xz / .gz
  std::vector<std::string> val_inputs;  // validation text, if kept apart
  std::string out_dir;
  std::string vocab_dir = "data/gpt2";  // holds encoder.json and vocab.bpe
  // .txt inputs: a document per paragraph (lines up to a blank line) instead
  // of one per file, for document-aligned batches (TextReader).
  bool split_docs = false;
  int64_t shard_tokens = 100'000'000;
  // Without val_inputs: the first val_tokens tokens of the input stream go to
  // val (as llm.c does for tinyshakespeare); 0 = no validation split.
  int64_t val_tokens = 0;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

struct PrepareSummary {
  int64_t documents = 0;
  int64_t text_bytes = 0;
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int train_shards = 0;
  int val_shards = 0;
  double seconds = 0;
};

// Every document becomes <|endoftext|> followed by its tokens; documents run
// on across shard boundaries. Refuses an out_dir that already holds shards.
PrepareSummary run_prepare(const PrepareOptions& options);

}  // namespace muonrun

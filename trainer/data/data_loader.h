// Training batches from token shards for data-parallel training. The global
// batch is world*B*T consecutive tokens of the shard stream; rank r reads its
// B*T+1 tokens at offset r*B*T inside it (the +1 gives the last target), so
// the ranks together read each global batch exactly once, as in llm.c.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/data/loader_position.h"
#include "trainer/data/shard.h"

namespace muonrun {

class DataLoader {
 public:
  // `pattern` is a glob ("data/train_*.bin"); matching files are used in
  // sorted order and all validated here. Shards too small for one global
  // batch are skipped with a warning. A batch holding a token >= `vocab_size`
  // (pass the model's) is refused naming the shard and offset: the id would
  // index past the embedding. The default accepts every uint16.
  DataLoader(const std::string& pattern, int64_t micro_batch, int64_t seq_len, int rank, int world,
             int64_t vocab_size = 65536);

  // Fills `buf` with this rank's micro_batch*seq_len+1 tokens: inputs are
  // buf[0, B*T), targets buf[1, B*T+1). Moves on by one global batch; at the
  // end of a shard goes to the next, after the last back to the first.
  void next_batch(int64_t* buf);

  LoaderPosition position() const { return position_; }
  // Continues from a saved position; throws if it does not fit these shards.
  void restore(const LoaderPosition& position);
  // Back to the first batch of the first shard (e.g. before each validation).
  void reset() { position_ = LoaderPosition{}; }

 private:
  std::string pattern_;
  int64_t local_tokens_;   // B*T
  int64_t global_tokens_;  // world*B*T
  int rank_;
  int64_t vocab_size_;
  std::vector<ShardReader> shards_;
  std::vector<uint16_t> scratch_;
  LoaderPosition position_;
};

}  // namespace muonrun

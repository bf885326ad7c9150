// Batches of whole documents, as the NanoGPT speedrun feeds its model since
// record 12: one sequence of T tokens per rank per micro-step, with the
// offsets where its documents start (varlen attention's cu_seqlens), so that
// attention stays inside a document. Transcribed from record 29
// (KellerJordan/modded-nanogpt, records/track_1_short/2025-09-03_FA3:
// BOSFinder and distributed_data_generator); tests/reference/bos_finder.py is
// that code in Python, the reference of tests/test_document_loader.cpp.
//
// Packed (training): a document starts at its <|endoftext|> (50256) and runs
// to the next one, cut at max_doc_tokens. Rank 0 takes the documents from the
// current one on until it holds exactly T + 1 tokens, the last document cut to
// fit; rank 1 takes the documents after rank 0's, and so on; the next
// micro-step starts after the last rank's. The rest of a cut document is
// dropped, so every sequence starts at a document start. Tokens before a
// shard's first document start are never read, and a global batch that would
// run past the shard's last document is not made: the next one starts at the
// next shard's first document (the record does the same).
//
// Contiguous (validation): rank r reads the T + 1 tokens at r * T of the
// global batch, wherever documents start; the offsets are the document starts
// inside its inputs. A shard is left once fewer than world * T + 2 tokens
// remain (the record's `pos + num_tokens + 1 >= len(tokens)`).
//
// After the last shard both modes start over at the first (counting epochs;
// the record stops there). Shards are indexed one at a time, when first
// reached (a 100M-token shard: one read of 200 MB and its document starts as
// int32). No LibTorch: the caller copies the batch to its tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/data/loader_position.h"
#include "trainer/data/shard.h"

namespace muonrun {

enum class DocumentMode { Packed, Contiguous };

struct DocumentLoaderOptions {
  DocumentMode mode = DocumentMode::Packed;
  int64_t seq_tokens = 0;          // T: input tokens per rank per micro-step
  int64_t max_doc_tokens = 2048;   // packed: each document is cut to this many tokens
  int rank = 0;
  int world = 1;
  int64_t vocab_size = 65536;      // a token >= this is refused (pass the model's)
};

struct DocumentBatch {
  // T + 1 tokens: inputs are tokens[0, T), targets tokens[1, T + 1).
  std::vector<int64_t> tokens;
  // Strictly increasing: 0, every later document start inside the inputs,
  // T. Not padded: the record pads its list to a fixed length with T for
  // torch.compile; varlen attention takes any length. The zero-length
  // segments the record's list can also hold (a packed sequence whose last
  // document is its <|endoftext|> alone, which is the last target; a
  // validation sequence that starts at a document: 0 twice) are left out.
  std::vector<int32_t> cu_seqlens;
};

class DocumentLoader {
 public:
  // `pattern` is a glob ("data/train_*.bin"); the matching files are read in
  // sorted order and their headers checked here. Throws when no shard holds
  // one global batch, naming each file with its tokens (and documents), and
  // what a batch needs. A shard too small for one batch is skipped with a
  // warning when reached; a packed shard without any <|endoftext|> is an
  // error naming it.
  DocumentLoader(const std::string& pattern, const DocumentLoaderOptions& options);

  // This rank's sequence of the next global batch; moves on by one global
  // batch (to the next shard, after the last back to the first).
  void next_batch(DocumentBatch& batch);
  // From now on T tokens per rank, documents cut at `max_doc_tokens` (a
  // batch-size schedule's next stage: the record's generator after
  // .send((batch, max_seq_len, accumulation))). If the batch at the current
  // position no longer fits in its shard, the loader moves to the next
  // shard, as at a shard's end.
  void resize(int64_t T, int64_t max_doc_tokens);

  LoaderPosition position() const { return position_; }
  // Continues from a saved position; throws if it names no batch of these shards.
  void restore(const LoaderPosition& position);
  // Back to the first batch (e.g. before each validation).
  void reset();

 private:
  struct Segment {
    int64_t begin, end;  // token range in the shard
  };

  int64_t shard_count() const { return static_cast<int64_t>(shards_.size()); }
  // Packed: the document starts of `shard` into starts_ (if not there yet).
  void index_shard(int64_t shard);
  // Packed: plans the global batch whose first document is `document` of the
  // indexed shard (this rank's part into segments_); false if the shard runs
  // out first.
  bool plan(int64_t document);
  // Whether a batch can start at `document` / `offset` of `shard`.
  bool fits(int64_t shard, int64_t document_or_offset);
  // Moves to the first batch of the first shard from `shard` on (wrapping,
  // counting epochs) that holds one; throws if none does.
  void move_to_shard(int64_t shard, int64_t epoch);
  [[noreturn]] void throw_no_batch() const;
  std::string batch_needs() const;
  void read_packed(DocumentBatch& batch);
  void read_contiguous(DocumentBatch& batch);
  // Widens scratch_ into batch.tokens, refusing tokens past the vocabulary.
  void widen(DocumentBatch& batch, const std::vector<Segment>& from) const;

  std::string pattern_;
  DocumentLoaderOptions options_;
  int64_t global_tokens_;  // world * T
  std::vector<ShardReader> shards_;
  std::vector<int64_t> documents_;  // per shard, -1 until indexed
  std::vector<signed char> usable_; // per shard: -1 not tried yet, 0 holds no batch (warned), 1 does
  int64_t indexed_ = -1;            // the shard whose document starts are in starts_
  std::vector<int32_t> starts_;
  std::vector<Segment> segments_;   // packed: this rank's part of the planned batch
  int64_t next_document_ = 0;       // packed: the document after the planned batch
  std::vector<uint16_t> scratch_;
  LoaderPosition first_;
  LoaderPosition position_;
};

}  // namespace muonrun

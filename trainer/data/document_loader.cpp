// The document loader: per-shard index of document starts, the record's
// packing walk, the contiguous slices, shard advance and restore.
#include "trainer/data/document_loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "trainer/data/shard_glob.h"
#include "trainer/data/tokenizer.h"

namespace muonrun {
namespace {

constexpr uint16_t kDocumentStart = Tokenizer::kEndOfText;
constexpr int64_t kIndexChunkTokens = int64_t{1} << 20;

std::string count_of_documents(int64_t n) {
  return std::to_string(n) + (n == 1 ? " document" : " documents");
}

}  // namespace

DocumentLoader::DocumentLoader(const std::string& pattern, const DocumentLoaderOptions& options)
    : pattern_(pattern), options_(options) {
  const int64_t T = options.seq_tokens;
  if (T < 1)
    throw std::invalid_argument("data: " + std::to_string(T) +
                                " tokens per sequence; expected at least 1");
  if (options.mode == DocumentMode::Packed && options.max_doc_tokens < 1)
    throw std::invalid_argument("data: max_doc_tokens " + std::to_string(options.max_doc_tokens) +
                                " must be at least 1");
  if (options.vocab_size < 1 || options.vocab_size > 65536)
    throw std::invalid_argument("data: vocabulary size " + std::to_string(options.vocab_size) +
                                " is not in 1..65536 (shards hold uint16 tokens)");
  if (options.world < 1 || options.rank < 0 || options.rank >= options.world)
    throw std::invalid_argument("data: rank " + std::to_string(options.rank) + " is not in 0.." +
                                std::to_string(options.world - 1));
  // Checked by division so that the product cannot overflow.
  if (T + 1 > kMaxShardTokens / options.world)
    throw std::invalid_argument("data: a global batch of " + std::to_string(options.world) +
                                " x (" + std::to_string(T) +
                                " + 1) tokens is larger than any shard can hold");
  global_tokens_ = options.world * T;

  int64_t total = 0;
  for (const std::string& file : glob_shards(pattern)) {
    shards_.emplace_back(file);
    total += shards_.back().num_tokens();
  }
  documents_.assign(shards_.size(), -1);
  usable_.assign(shards_.size(), -1);
  move_to_shard(0, 0);
  first_ = position_;
  spdlog::info("data: {} shards, {} tokens from '{}', {} sequences of {} tokens per rank{}",
               shards_.size(), total, pattern,
               options.mode == DocumentMode::Packed ? "packed" : "contiguous", T,
               options.mode == DocumentMode::Packed
                   ? " (documents cut at " + std::to_string(options.max_doc_tokens) + " tokens)"
                   : "");
}

void DocumentLoader::index_shard(int64_t shard) {
  if (indexed_ == shard) return;
  const ShardReader& reader = shards_[shard];
  indexed_ = -1;
  starts_.clear();
  std::vector<uint16_t> chunk(static_cast<size_t>(std::min(kIndexChunkTokens, reader.num_tokens())));
  for (int64_t offset = 0; offset < reader.num_tokens(); offset += kIndexChunkTokens) {
    const int64_t n = std::min(kIndexChunkTokens, reader.num_tokens() - offset);
    reader.read(offset, n, chunk.data());
    // Shard offsets fit int32: a shard holds at most 2^31-1 tokens.
    for (int64_t i = 0; i < n; ++i)
      if (chunk[i] == kDocumentStart) starts_.push_back(static_cast<int32_t>(offset + i));
  }
  if (starts_.empty())
    throw std::runtime_error(reader.path() + ": no document start (<|endoftext|>, token 50256) in its " +
                             std::to_string(reader.num_tokens()) +
                             " tokens; packed batches need documents that each start with it, "
                             "as `muonrun prepare` writes them");
  documents_[shard] = static_cast<int64_t>(starts_.size());
  indexed_ = shard;
}

// BOSFinder.next_batch of the record: each rank's documents in turn, each from
// its start to min(next start or the shard's end, start + max_doc_tokens,
// start + what the rank still needs), until the rank holds T + 1 tokens.
bool DocumentLoader::plan(int64_t document) {
  const int64_t T = options_.seq_tokens;
  const int64_t n = static_cast<int64_t>(starts_.size());
  const int64_t shard_end = shards_[indexed_].num_tokens();
  segments_.clear();
  int64_t i = document;
  for (int r = 0; r < options_.world; ++r) {
    int64_t held = 0;
    while (held <= T) {
      if (i < 0 || i >= n) return false;
      const int64_t begin = starts_[i];
      const int64_t next = i + 1 < n ? starts_[i + 1] : shard_end;
      const int64_t end = std::min({next, begin + options_.max_doc_tokens, begin + T + 1 - held});
      if (r == options_.rank) segments_.push_back({begin, end});
      held += end - begin;
      ++i;
    }
  }
  next_document_ = i;
  return true;
}

bool DocumentLoader::fits(int64_t shard, int64_t document_or_offset) {
  if (options_.mode == DocumentMode::Contiguous)
    return document_or_offset >= 0 &&
           document_or_offset + global_tokens_ + 1 < shards_[shard].num_tokens();
  index_shard(shard);
  return plan(document_or_offset);
}

void DocumentLoader::move_to_shard(int64_t shard, int64_t epoch) {
  for (int64_t tried = 0; tried < shard_count(); ++tried, ++shard) {
    if (shard == shard_count()) {
      shard = 0;
      ++epoch;
      spdlog::info("data: epoch {} of '{}' done, starting over", epoch, pattern_);
    }
    if (usable_[shard] == 0) continue;
    if (fits(shard, 0)) {
      usable_[shard] = 1;
      position_ = {shard, 0, options_.mode == DocumentMode::Packed ? starts_[0] : 0, epoch};
      return;
    }
    usable_[shard] = 0;
    spdlog::warn("data: skipping {}: {} tokens{} do not make one batch ({})", shards_[shard].path(),
                 shards_[shard].num_tokens(),
                 options_.mode == DocumentMode::Packed
                     ? " in " + count_of_documents(documents_[shard])
                     : "",
                 batch_needs());
  }
  throw_no_batch();
}

std::string DocumentLoader::batch_needs() const {
  const std::string w = std::to_string(options_.world), t = std::to_string(options_.seq_tokens);
  if (options_.mode == DocumentMode::Contiguous)
    return "a validation batch needs more than " + w + " x " + t + " + 1 = " +
           std::to_string(global_tokens_ + 1) + " tokens";
  return "a batch needs " + w + " x (" + t + " + 1) = " +
         std::to_string(global_tokens_ + options_.world) +
         " tokens of whole documents from their <|endoftext|> on, each cut at " +
         std::to_string(options_.max_doc_tokens) + " tokens, the rest of a cut document unused";
}

void DocumentLoader::throw_no_batch() const {
  std::string found;
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (i == 10) {
      found += "; and " + std::to_string(shards_.size() - i) + " more";
      break;
    }
    found += (i ? "; " : "") + shards_[i].path() + ": " + std::to_string(shards_[i].num_tokens()) +
             " tokens";
    if (options_.mode == DocumentMode::Packed)
      found += ", " + count_of_documents(documents_[i]);
  }
  throw std::runtime_error("data: too few " +
                           std::string(options_.mode == DocumentMode::Packed ? "documents" : "tokens") +
                           " for one batch in the " + std::to_string(shards_.size()) +
                           " shards matching '" + pattern_ + "': " + batch_needs() + "; found " +
                           found);
}

void DocumentLoader::widen(DocumentBatch& batch, const std::vector<Segment>& from) const {
  batch.tokens.resize(scratch_.size());
  // Widening and the largest id in one pass without early exit, which the
  // compiler vectorises; the offending token is looked for only when there is one.
  uint16_t largest = 0;
  for (size_t i = 0; i < scratch_.size(); ++i) {
    batch.tokens[i] = scratch_[i];
    largest = std::max(largest, scratch_[i]);
  }
  if (largest < options_.vocab_size) return;
  int64_t at = 0;
  for (const Segment& s : from) {
    for (int64_t k = s.begin; k < s.end; ++k, ++at) {
      if (scratch_[at] < options_.vocab_size) continue;
      throw std::runtime_error(shards_[position_.shard].path() + ": token " +
                               std::to_string(scratch_[at]) + " at token " + std::to_string(k) +
                               " is outside the model's vocabulary (vocab_size " +
                               std::to_string(options_.vocab_size) +
                               "): a shard of another tokenizer, or model.vocab_size too small?");
    }
  }
}

void DocumentLoader::read_packed(DocumentBatch& batch) {
  const ShardReader& reader = shards_[position_.shard];
  index_shard(position_.shard);
  if (!plan(position_.document))  // position_ always names a batch that fits
    throw std::logic_error("data: position does not name a batch of " + reader.path());
  const int64_t T = options_.seq_tokens;
  scratch_.resize(static_cast<size_t>(T + 1));
  batch.cu_seqlens.assign(1, 0);
  int64_t held = 0;
  for (const Segment& s : segments_) {
    reader.read(s.begin, s.end - s.begin, scratch_.data() + held);
    held += s.end - s.begin;
    // The last document ends one token early: its last token is a target only.
    const int32_t end = static_cast<int32_t>(std::min(held, T));
    if (end != batch.cu_seqlens.back()) batch.cu_seqlens.push_back(end);
  }
  widen(batch, segments_);
}

void DocumentLoader::read_contiguous(DocumentBatch& batch) {
  const int64_t T = options_.seq_tokens;
  const int64_t begin = position_.offset + options_.rank * T;
  scratch_.resize(static_cast<size_t>(T + 1));
  shards_[position_.shard].read(begin, T + 1, scratch_.data());
  widen(batch, {{begin, begin + T + 1}});
  batch.cu_seqlens.assign(1, 0);
  for (int64_t i = 1; i < T; ++i)
    if (scratch_[i] == kDocumentStart) batch.cu_seqlens.push_back(static_cast<int32_t>(i));
  batch.cu_seqlens.push_back(static_cast<int32_t>(T));
}

void DocumentLoader::next_batch(DocumentBatch& batch) {
  // Move on now, so that position() always names a batch that can be read.
  if (options_.mode == DocumentMode::Packed) {
    read_packed(batch);
    position_.document = next_document_;
    if (fits(position_.shard, position_.document)) {
      position_.offset = starts_[position_.document];
      return;
    }
  } else {
    read_contiguous(batch);
    position_.offset += global_tokens_;
    if (fits(position_.shard, position_.offset)) return;
  }
  move_to_shard(position_.shard + 1, position_.epoch);
}

void DocumentLoader::resize(int64_t T, int64_t max_doc_tokens) {
  if (T == options_.seq_tokens && max_doc_tokens == options_.max_doc_tokens) return;
  if (T < 1 || T + 1 > kMaxShardTokens / options_.world)
    throw std::invalid_argument("data: " + std::to_string(T) + " tokens per sequence is not in 1.." +
                                std::to_string(kMaxShardTokens / options_.world - 1));
  if (max_doc_tokens < 1)
    throw std::invalid_argument("data: max_doc_tokens " + std::to_string(max_doc_tokens) + " must be at least 1");
  options_.seq_tokens = T;
  options_.max_doc_tokens = max_doc_tokens;
  global_tokens_ = options_.world * T;
  usable_.assign(shards_.size(), -1);  // whether a shard holds one batch depends on both
  const bool packed = options_.mode == DocumentMode::Packed;
  if (fits(position_.shard, packed ? position_.document : position_.offset)) return;
  move_to_shard(position_.shard + 1, position_.epoch);
}

void DocumentLoader::restore(const LoaderPosition& p) {
  const std::string where = "data: cannot restore position (shard " + std::to_string(p.shard) +
                            ", document " + std::to_string(p.document) + ", offset " +
                            std::to_string(p.offset) + ", epoch " + std::to_string(p.epoch) +
                            ") on '" + pattern_ + "': ";
  if (p.shard < 0 || p.shard >= shard_count())
    throw std::runtime_error(where + "there are " + std::to_string(shard_count()) + " shards");
  if (p.epoch < 0) throw std::runtime_error(where + "negative epoch");
  const ShardReader& reader = shards_[p.shard];
  if (options_.mode == DocumentMode::Contiguous) {
    if (p.document != 0)
      throw std::runtime_error(where + "contiguous batches have document 0");
    if (!fits(p.shard, p.offset))
      throw std::runtime_error(where + "the offset must be in 0.." +
                               std::to_string(reader.num_tokens() - global_tokens_ - 2) + " in " +
                               reader.path());
  } else {
    index_shard(p.shard);
    const int64_t n = static_cast<int64_t>(starts_.size());
    if (p.document < 0 || p.document >= n)
      throw std::runtime_error(where + reader.path() + " has " + std::to_string(n) + " documents");
    if (starts_[p.document] != p.offset)
      throw std::runtime_error(where + "document " + std::to_string(p.document) + " of " +
                               reader.path() + " starts at token " +
                               std::to_string(starts_[p.document]) +
                               ": not the shards the position was saved on?");
    if (!plan(p.document))
      throw std::runtime_error(where + "no batch fits between document " +
                               std::to_string(p.document) + " and the end of " + reader.path());
  }
  position_ = p;
}

void DocumentLoader::reset() { position_ = first_; }

}  // namespace muonrun

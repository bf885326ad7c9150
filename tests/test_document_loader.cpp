// The document loader against tests/reference/bos_finder.py, record 29's
// BOSFinder and distributed_data_generator transcribed in Python (run by
// MUONRUN_PYTHON), on shards of known documents: every batch of every rank,
// packed and contiguous, for a world of 1 and of 3, also with the batch size
// changed between batches (record 50's .send()). Also what the reference
// cannot say: the offsets' form, exact resume at every step (mid-shard, at
// shard boundaries, across epochs), and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "tests/reference_script.h"
#include "tests/test_helpers.h"
#include "trainer/data/document_loader.h"
#include "trainer/data/shard.h"

using namespace muonrun;
using muonrun::tests::error_of;
namespace fs = std::filesystem;

namespace {

using Tokens = std::vector<uint16_t>;
constexpr uint16_t kBos = 50256;

// Documents of the given lengths, each its <|endoftext|> then random tokens
// below it.
Tokens documents(const std::vector<int>& lengths, std::mt19937& rng) {
  Tokens t;
  for (int n : lengths) {
    t.push_back(kBos);
    for (int k = 1; k < n; ++k) t.push_back(static_cast<uint16_t>(rng() % kBos));
  }
  return t;
}

// Random document lengths adding up to about `tokens`: tiny documents (one
// <|endoftext|> alone), ones just under, at and over the cut of 24, and long ones.
std::vector<int> lengths(int tokens, std::mt19937& rng) {
  const int choices[] = {1, 2, 3, 5, 8, 13, 23, 24, 25, 40, 100};
  std::vector<int> out;
  for (int sum = 0; sum < tokens;) {
    out.push_back(choices[rng() % 11]);
    sum += out.back();
  }
  return out;
}

// Packed training shards: shard 0 opens with the tail of a document (no
// <|endoftext|>), shard 1 holds too few documents for any batch, shard 2 ends
// inside a long document.
std::string write_train_shards(const fs::path& dir) {
  std::mt19937 rng(29);
  Tokens s0(7);
  for (auto& t : s0) t = static_cast<uint16_t>(rng() % kBos);
  Tokens docs = documents(lengths(1200, rng), rng);
  s0.insert(s0.end(), docs.begin(), docs.end());
  Tokens s2 = documents(lengths(900, rng), rng);
  Tokens tail = documents({300}, rng);
  s2.insert(s2.end(), tail.begin(), tail.end() - 150);
  write_shard((dir / "train_000000.bin").string(), s0);
  write_shard((dir / "train_000001.bin").string(), documents({5, 5, 5}, rng));
  write_shard((dir / "train_000002.bin").string(), s2);
  write_shard((dir / "train_000003.bin").string(), documents(lengths(1500, rng), rng));
  return (dir / "train_*.bin").string();
}

// Validation shards with documents starting at the first token of several
// ranks' slices (T = 40, world 3), so that the record's offsets repeat 0.
// Shard 0 ends exactly where a batch at 600 (world 3) or 680 (world 1) would
// end: the record leaves the shard there (its `>=`).
std::string write_val_shards(const fs::path& dir) {
  std::mt19937 rng(30);
  Tokens v0 = documents(lengths(721, rng), rng);
  v0.resize(721);
  for (int at : {0, 40, 120, 200, 239}) v0[at] = kBos;
  write_shard((dir / "val_000000.bin").string(), v0);
  Tokens v1 = documents(lengths(500, rng), rng);
  v1.resize(500);
  write_shard((dir / "val_000001.bin").string(), v1);
  return (dir / "val_*.bin").string();
}

// A new sequence length and document cut sent to the loader before a step.
struct Resize {
  int64_t T, cut;
};

struct Reference {
  std::vector<std::vector<int64_t>> tokens, offsets;  // [step * world + rank]
};

// bos_finder.py's batches; its offsets with the zero-length segments left out
// (consecutive repeats: its padding with T, a repeated 0 or T).
Reference reference(const std::string& pattern, int64_t T, int world, int64_t max_doc, int steps,
                    bool contiguous, const fs::path& dir, const std::map<int, Resize>& resize = {}) {
  const fs::path out = dir / "reference.txt";
  std::vector<std::string> args{"--pattern", pattern, "--tokens", std::to_string(T), "--world", std::to_string(world),
                                "--max-seq-len", std::to_string(max_doc), "--steps", std::to_string(steps),
                                "--out", out.string()};
  if (contiguous) args.push_back("--contiguous");
  for (const auto& [step, stage] : resize)
    args.insert(args.end(), {"--resize", std::to_string(step) + ":" + std::to_string(stage.T) + ":" +
                                             std::to_string(stage.cut)});
  const auto run = tests::run_script("bos_finder.py", args, dir);
  EXPECT_EQ(run.rc, 0) << run.output;
  Reference ref;
  std::istringstream lines(tests::read_file(out));
  std::string line;
  for (int i = 0; std::getline(lines, line); ++i) {
    std::istringstream values(line);
    std::vector<int64_t> v;
    for (int64_t x; values >> x;) v.push_back(x);
    if (i % 2 == 1) v.erase(std::unique(v.begin(), v.end()), v.end());
    (i % 2 == 0 ? ref.tokens : ref.offsets).push_back(std::move(v));
  }
  EXPECT_EQ(ref.tokens.size(), static_cast<size_t>(steps * world));
  return ref;
}

// What every batch must look like, whatever the reference says: offsets
// strictly increasing from 0 to T; packed, a document starts at each offset
// and nowhere else in the inputs (the cut rest of a document is dropped), so
// the last target of each document is the next one's <|endoftext|>;
// contiguous, the offsets are the document starts after position 0.
void expect_well_formed(const DocumentBatch& b, int64_t T, DocumentMode mode) {
  ASSERT_EQ(b.tokens.size(), static_cast<size_t>(T + 1));
  ASSERT_GE(b.cu_seqlens.size(), 2u);
  EXPECT_EQ(b.cu_seqlens.front(), 0);
  EXPECT_EQ(b.cu_seqlens.back(), T);
  EXPECT_TRUE(std::adjacent_find(b.cu_seqlens.begin(), b.cu_seqlens.end(),
                                 [](int32_t a, int32_t c) { return a >= c; }) == b.cu_seqlens.end());
  std::vector<int32_t> starts = {0};
  for (int64_t i = 1; i < T; ++i)
    if (b.tokens[i] == kBos) starts.push_back(static_cast<int32_t>(i));
  starts.push_back(static_cast<int32_t>(T));
  EXPECT_EQ(b.cu_seqlens, starts);
  if (mode == DocumentMode::Packed) {
    EXPECT_EQ(b.tokens[0], kBos);
  }
}

DocumentLoaderOptions options(DocumentMode mode, int64_t T, int rank, int world,
                              int64_t max_doc = 24) {
  DocumentLoaderOptions o;
  o.mode = mode;
  o.seq_tokens = T;
  o.max_doc_tokens = max_doc;
  o.rank = rank;
  o.world = world;
  return o;
}

void compare_with_reference(DocumentMode mode, const std::string& pattern, int64_t T, int world,
                            int steps, const fs::path& dir) {
  const bool contiguous = mode == DocumentMode::Contiguous;
  const Reference ref = reference(pattern, T, world, 24, steps, contiguous, dir);
  ASSERT_EQ(ref.tokens.size(), static_cast<size_t>(steps * world));
  int lone_last_bos = 0;  // packed batches whose last document is its <|endoftext|> alone
  for (int rank = 0; rank < world; ++rank) {
    DocumentLoader loader(pattern, options(mode, T, rank, world));
    DocumentBatch b;
    for (int s = 0; s < steps; ++s) {
      const std::string where = "world " + std::to_string(world) + " rank " + std::to_string(rank) +
                                " step " + std::to_string(s);
      loader.next_batch(b);
      ASSERT_EQ(b.tokens, ref.tokens[s * world + rank]) << where;
      ASSERT_EQ(std::vector<int64_t>(b.cu_seqlens.begin(), b.cu_seqlens.end()),
                ref.offsets[s * world + rank])
          << where;
      expect_well_formed(b, T, mode);
      lone_last_bos += !contiguous && b.tokens[T] == kBos;
      if (!contiguous) {
        EXPECT_NE(loader.position().shard, 1) << "shard 1 holds no batch";
      }
    }
    EXPECT_GE(loader.position().epoch, 2) << "the test should cover wrapping";
  }
  if (!contiguous) {
    EXPECT_GT(lone_last_bos, 0) << "the test should cover a zero-length last segment";
  }
}

}  // namespace

TEST(DocumentLoader, PackedMatchesTheRecordsBosFinder) {
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("packed_reference");
  const std::string pattern = write_train_shards(dir);
  compare_with_reference(DocumentMode::Packed, pattern, 48, 1, 150, dir);
  compare_with_reference(DocumentMode::Packed, pattern, 48, 3, 60, dir);
}

// A batch-size schedule (train.batch_schedule, train.doc_cut_schedule): the
// loader's sequence length and document cut change between batches as record
// 50's generator's do after .send((batch, max_seq_len, accumulation)),
// smaller and larger, where a larger batch no longer fits in the shard's
// rest (the record's StopIteration: on to the next shard), on 1 and 3 ranks.
TEST(DocumentLoader, BatchSizeChangesMatchTheRecordsSend) {
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("resize_reference");
  const std::string pattern = write_train_shards(dir);
  // New lengths and cuts (the record's max_seq_len, 24 at first): shorter, longer, unchanged.
  const std::map<int, Resize> resize{{7, {24, 24}}, {19, {96, 40}}, {33, {48, 12}}, {41, {120, 12}}, {50, {120, 64}}};
  for (int world : {1, 3}) {
    const int steps = 60;
    const Reference ref = reference(pattern, 48, world, 24, steps, false, dir, resize);
    ASSERT_EQ(ref.tokens.size(), static_cast<size_t>(steps * world));
    for (int rank = 0; rank < world; ++rank) {
      DocumentLoader loader(pattern, options(DocumentMode::Packed, 48, rank, world));
      DocumentBatch b;
      int64_t T = 48;
      for (int s = 0; s < steps; ++s) {
        if (auto it = resize.find(s); it != resize.end()) {
          T = it->second.T;
          loader.resize(T, it->second.cut);
        }
        loader.next_batch(b);
        const std::string where = "world " + std::to_string(world) + " rank " + std::to_string(rank) + " step " +
                                  std::to_string(s);
        ASSERT_EQ(b.tokens, ref.tokens[s * world + rank]) << where;
        ASSERT_EQ(std::vector<int64_t>(b.cu_seqlens.begin(), b.cu_seqlens.end()), ref.offsets[s * world + rank])
            << where;
        expect_well_formed(b, T, DocumentMode::Packed);
      }
    }
  }
}

TEST(DocumentLoader, ContiguousMatchesTheRecordsValidationBatches) {
  REQUIRE_PYTHON();
  const fs::path dir = tests::scratch_dir("contiguous_reference");
  const std::string pattern = write_val_shards(dir);
  compare_with_reference(DocumentMode::Contiguous, pattern, 40, 1, 60, dir);
  compare_with_reference(DocumentMode::Contiguous, pattern, 40, 3, 20, dir);
}

// A loader restored from the position saved before any step continues with
// the same batches: mid-shard, right at a shard boundary, after a wrap.
TEST(DocumentLoader, RestoreAtEveryStepContinuesIdentically) {
  const fs::path dir = tests::scratch_dir("restore");
  const std::string train = write_train_shards(dir), val = write_val_shards(dir);
  for (DocumentMode mode : {DocumentMode::Packed, DocumentMode::Contiguous}) {
    const std::string& pattern = mode == DocumentMode::Packed ? train : val;
    const int64_t T = mode == DocumentMode::Packed ? 48 : 40;
    for (int rank : {0, 2}) {
      DocumentLoader a(pattern, options(mode, T, rank, 3));
      std::vector<LoaderPosition> saved;
      std::vector<DocumentBatch> batches(70);
      for (DocumentBatch& b : batches) {
        saved.push_back(a.position());
        a.next_batch(b);
      }
      bool boundary = false, mid = false, wrapped = false;
      for (size_t k = 0; k + 5 < batches.size(); ++k) {
        boundary |= k > 0 && saved[k].shard != saved[k - 1].shard;
        mid |= saved[k].document > 0 || (mode == DocumentMode::Contiguous && saved[k].offset > 0);
        wrapped |= saved[k].epoch > 0;
        DocumentLoader b(pattern, options(mode, T, rank, 3));
        b.restore(saved[k]);
        DocumentBatch got;
        for (size_t i = k; i < k + 5; ++i) {
          b.next_batch(got);
          ASSERT_EQ(got.tokens, batches[i].tokens) << "restored at step " << k << ", step " << i;
          ASSERT_EQ(got.cu_seqlens, batches[i].cu_seqlens) << "restored at step " << k;
        }
        EXPECT_EQ(b.position().epoch, saved[k + 5].epoch);
      }
      EXPECT_TRUE(boundary && mid && wrapped);
      // reset() goes back to the first batch.
      DocumentBatch first;
      a.reset();
      a.next_batch(first);
      EXPECT_EQ(first.tokens, batches[0].tokens);
      EXPECT_EQ(a.position().shard, saved[1].shard);
      EXPECT_EQ(a.position().offset, saved[1].offset);
    }
  }
}

TEST(DocumentLoader, TooFewDocumentsIsAnErrorThatSaysSo) {
  const fs::path dir = tests::scratch_dir("too_few");
  std::mt19937 rng(1);
  // 3 documents of 10 tokens, and one of 100 cut to 24: neither fills 48 + 1.
  write_shard((dir / "a_000000.bin").string(), documents({10, 10, 10}, rng));
  write_shard((dir / "a_000001.bin").string(), documents({100}, rng));
  const std::string pattern = (dir / "a_*.bin").string();
  std::string e = error_of([&] { DocumentLoader(pattern, options(DocumentMode::Packed, 48, 0, 1)); });
  EXPECT_NE(e.find("data: too few documents for one batch in the 2 shards matching '" + pattern +
                   "': a batch needs 1 x (48 + 1) = 49 tokens of whole documents"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("each cut at 24 tokens"), std::string::npos) << e;
  EXPECT_NE(e.find("a_000000.bin: 30 tokens, 3 documents; "), std::string::npos) << e;
  EXPECT_NE(e.find("a_000001.bin: 100 tokens, 1 document"), std::string::npos) << e;
  // Uncut, the long document does it; 3 ranks need more than either shard has.
  EXPECT_EQ(error_of([&] { DocumentLoader(pattern, options(DocumentMode::Packed, 48, 0, 1, 2048)); }),
            "");
  e = error_of([&] { DocumentLoader(pattern, options(DocumentMode::Packed, 48, 2, 3, 2048)); });
  EXPECT_NE(e.find("a batch needs 3 x (48 + 1) = 147 tokens"), std::string::npos) << e;

  e = error_of([&] { DocumentLoader(pattern, options(DocumentMode::Contiguous, 40, 0, 3)); });
  EXPECT_NE(e.find("data: too few tokens for one batch in the 2 shards matching"), std::string::npos)
      << e;
  EXPECT_NE(e.find("a validation batch needs more than 3 x 40 + 1 = 121 tokens; found "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("a_000001.bin: 100 tokens"), std::string::npos) << e;
}

TEST(DocumentLoader, Errors) {
  const fs::path dir = tests::scratch_dir("errors");
  std::mt19937 rng(2);
  Tokens plain(500, 7);
  write_shard((dir / "plain_000000.bin").string(), plain);
  std::string e = error_of(
      [&] { DocumentLoader((dir / "plain_*.bin").string(), options(DocumentMode::Packed, 8, 0, 1)); });
  EXPECT_NE(e.find("plain_000000.bin: no document start (<|endoftext|>, token 50256) in its 500 "
                   "tokens"),
            std::string::npos)
      << e;
  // Contiguous batches do not need documents.
  EXPECT_EQ(error_of([&] {
              DocumentLoader((dir / "plain_*.bin").string(), options(DocumentMode::Contiguous, 8, 0, 1));
            }),
            "");

  const std::string pattern = write_train_shards(dir);
  EXPECT_THROW(DocumentLoader(pattern, options(DocumentMode::Packed, 0, 0, 1)), std::invalid_argument);
  EXPECT_THROW(DocumentLoader(pattern, options(DocumentMode::Packed, 8, 0, 1, 0)),
               std::invalid_argument);
  EXPECT_THROW(DocumentLoader(pattern, options(DocumentMode::Packed, 8, 3, 3)), std::invalid_argument);
  EXPECT_THROW(DocumentLoader(pattern, options(DocumentMode::Packed, int64_t{1} << 30, 0, 4)),
               std::invalid_argument);

  DocumentLoader loader(pattern, options(DocumentMode::Packed, 48, 0, 1));
  const LoaderPosition at = loader.position();  // shard 0, document 0, offset 7
  EXPECT_EQ(at.offset, 7);
  e = error_of([&] { loader.restore({4, 0, 0, 0}); });
  EXPECT_NE(e.find("cannot restore position (shard 4, document 0, offset 0, epoch 0)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("there are 4 shards"), std::string::npos) << e;
  e = error_of([&] { loader.restore({0, 0, 8, 0}); });
  EXPECT_NE(e.find("document 0 of " + (dir / "train_000000.bin").string() +
                   " starts at token 7: not the shards the position was saved on?"),
            std::string::npos)
      << e;
  e = error_of([&] { loader.restore({1, 0, 0, 0}); });
  EXPECT_NE(e.find("no batch fits between document 0 and the end of"), std::string::npos) << e;
  e = error_of([&] { loader.restore({0, 100000, 0, 0}); });
  EXPECT_NE(e.find("documents"), std::string::npos) << e;
  EXPECT_FALSE(error_of([&] { loader.restore({0, 0, 7, -1}); }).empty());
  // A failed restore leaves the loader where it was.
  DocumentBatch b, fresh;
  loader.next_batch(b);
  DocumentLoader(pattern, options(DocumentMode::Packed, 48, 0, 1)).next_batch(fresh);
  EXPECT_EQ(b.tokens, fresh.tokens);

  DocumentLoader val(write_val_shards(dir), options(DocumentMode::Contiguous, 40, 0, 3));
  e = error_of([&] { val.restore({0, 0, 600, 0}); });  // 600 + 120 + 1 >= 721
  EXPECT_NE(e.find("the offset must be in 0..599"), std::string::npos) << e;
  EXPECT_FALSE(error_of([&] { val.restore({0, 1, 0, 0}); }).empty());
  EXPECT_EQ(error_of([&] { val.restore({0, 0, 578, 3}); }), "");

  // A token past the model's vocabulary, named with its shard and offset.
  Tokens bad = documents({30, 30, 30}, rng);
  bad[45] = 50300;
  write_shard((dir / "vocab_000000.bin").string(), bad);
  DocumentLoaderOptions o = options(DocumentMode::Packed, 48, 0, 1);
  o.vocab_size = 50257;
  DocumentLoader small((dir / "vocab_*.bin").string(), o);
  e = error_of([&] { small.next_batch(b); });
  EXPECT_NE(e.find("vocab_000000.bin: token 50300 at token 45 is outside the model's vocabulary"),
            std::string::npos)
      << e;
}

// The data-parallel loader against a plain reference computed from the shard
// contents: slicing per rank, shard advance, wrap-around, restore, errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "tests/test_helpers.h"
#include "trainer/data/data_loader.h"

using namespace muonrun;
using muonrun::tests::error_of;
namespace fs = std::filesystem;

namespace {

using Tokens = std::vector<uint16_t>;

struct ShardSet {
  std::string pattern;  // matches exactly these shards
  std::vector<Tokens> shards;
};

// Shards of the given sizes (random tokens) in a fresh directory.
ShardSet make_shards(const std::string& name, const std::vector<size_t>& sizes) {
  fs::path dir = tests::scratch_dir(name);
  std::mt19937 rng(static_cast<unsigned>(sizes.size() * 31 + sizes[0]));
  ShardSet set{(dir / "train_*.bin").string(), {}};
  for (size_t i = 0; i < sizes.size(); ++i) {
    Tokens t(sizes[i]);
    for (auto& x : t) x = static_cast<uint16_t>(rng());
    write_shard((dir / ("train_00000" + std::to_string(i) + ".bin")).string(), t);
    set.shards.push_back(std::move(t));
  }
  return set;
}

// The obvious way: walk the usable shards; the global batch is the next
// world*B*T+1 tokens of the current shard (else the next shard, wrapping);
// rank r's part starts r*B*T tokens into it.
std::vector<std::vector<int64_t>> reference_batches(const std::vector<Tokens>& all, int64_t bt,
                                                    int world, int steps) {
  const int64_t global = bt * world;
  std::vector<const Tokens*> usable;
  for (const Tokens& t : all)
    if (static_cast<int64_t>(t.size()) >= global + 1) usable.push_back(&t);
  std::vector<std::vector<int64_t>> batches;  // [step * world + rank]
  size_t shard = 0;
  int64_t offset = 0;
  for (int s = 0; s < steps; ++s) {
    if (offset + global + 1 > static_cast<int64_t>(usable[shard]->size())) {
      shard = (shard + 1) % usable.size();
      offset = 0;
    }
    const Tokens& t = *usable[shard];
    for (int r = 0; r < world; ++r)
      batches.emplace_back(t.begin() + offset + r * bt, t.begin() + offset + r * bt + bt + 1);
    offset += global;
  }
  return batches;
}

}  // namespace

TEST(DataLoader, RanksTogetherReadEachGlobalBatchOnceAcrossShardsAndEpochs) {
  const int64_t B = 2, T = 8, bt = B * T;
  // 40 tokens is too small for world 3 (needs 3*16+1) but fine for 1 and 2.
  const ShardSet set = make_shards("cover", {200, 40, 333, 97});
  for (int world : {1, 2, 3}) {
    const int steps = 130;  // several epochs
    auto expected = reference_batches(set.shards, bt, world, steps);
    std::vector<DataLoader> loaders;
    for (int r = 0; r < world; ++r) loaders.emplace_back(set.pattern, B, T, r, world);
    std::vector<int64_t> buf(bt + 1);
    for (int s = 0; s < steps; ++s) {
      std::vector<int64_t> global_inputs, expected_inputs;
      for (int r = 0; r < world; ++r) {
        loaders[r].next_batch(buf.data());
        ASSERT_EQ(buf, expected[s * world + r])
            << "world " << world << " step " << s << " rank " << r;
        // Each rank's last token is the first of the next rank's slice.
        global_inputs.insert(global_inputs.end(), buf.begin(), buf.end() - 1);
      }
      // Consecutive, no gaps or overlaps: the ranks' inputs are one run.
      for (int r = 0; r < world; ++r)
        expected_inputs.insert(expected_inputs.end(), expected[s * world + r].begin(),
                               expected[s * world + r].end() - 1);
      EXPECT_EQ(global_inputs, expected_inputs);
    }
    EXPECT_GT(loaders[0].position().epoch, 1) << "the test should cover wrapping";
  }
}

TEST(DataLoader, ShardAdvanceAndWrapShowInPosition) {
  const ShardSet set = make_shards("advance", {50, 30});
  DataLoader loader(set.pattern, 1, 10, 0, 1);
  std::vector<int64_t> buf(11);
  // Shard 0 holds batches at 0, 10, 20, 30 (30 + 10 + 1 <= 50), shard 1 at 0, 10.
  std::vector<LoaderPosition> seen;
  for (int i = 0; i < 7; ++i) {
    seen.push_back(loader.position());
    loader.next_batch(buf.data());
  }
  auto at = [&](int i) { return std::make_tuple(seen[i].shard, seen[i].offset, seen[i].epoch); };
  EXPECT_EQ(at(0), std::make_tuple(0, 0, 0));
  EXPECT_EQ(at(3), std::make_tuple(0, 30, 0));
  EXPECT_EQ(at(4), std::make_tuple(1, 0, 0));
  EXPECT_EQ(at(5), std::make_tuple(1, 10, 0));
  EXPECT_EQ(at(6), std::make_tuple(0, 0, 1));
  EXPECT_EQ(buf, std::vector<int64_t>(set.shards[0].begin(), set.shards[0].begin() + 11));
}

TEST(DataLoader, RestoreContinuesIdentically) {
  const std::string pattern = make_shards("restore", {300, 250, 280}).pattern;
  for (int world : {1, 3}) {
    for (int rank = 0; rank < world; ++rank) {
      DataLoader a(pattern, 2, 7, rank, world);
      std::vector<int64_t> buf_a(15), buf_b(15);
      for (int i = 0; i < 23; ++i) a.next_batch(buf_a.data());
      DataLoader b(pattern, 2, 7, rank, world);
      b.restore(a.position());
      for (int i = 0; i < 40; ++i) {
        a.next_batch(buf_a.data());
        b.next_batch(buf_b.data());
        ASSERT_EQ(buf_a, buf_b) << "world " << world << " rank " << rank << " step " << i;
      }
      EXPECT_EQ(a.position().epoch, b.position().epoch);
      // reset() goes back to the very first batch.
      DataLoader fresh(pattern, 2, 7, rank, world);
      fresh.next_batch(buf_b.data());
      a.reset();
      a.next_batch(buf_a.data());
      EXPECT_EQ(buf_a, buf_b);
    }
  }
}

TEST(DataLoader, Errors) {
  const std::string pattern = make_shards("errors", {100, 60}).pattern;
  const std::string nothing = (tests::scratch_dir("nothing_here") / "train_*.bin").string();
  std::string e = error_of([&] { DataLoader(nothing, 1, 8, 0, 1); });
  EXPECT_NE(e.find("data: no files match '"), std::string::npos) << e;
  EXPECT_NE(e.find("nothing_here/train_*.bin'"), std::string::npos) << e;

  e = error_of([&] { DataLoader(pattern, 4, 32, 0, 1); });  // needs 129 tokens
  EXPECT_NE(e.find("none of the 2 shards matching"), std::string::npos) << e;
  EXPECT_NE(e.find("holds one global batch of 128 + 1 tokens (the largest has 100)"),
            std::string::npos)
      << e;

  EXPECT_THROW(DataLoader(pattern, 1, 8, 2, 2), std::invalid_argument);
  EXPECT_THROW(DataLoader(pattern, 0, 8, 0, 1), std::invalid_argument);
  EXPECT_THROW(DataLoader(pattern, 1 << 20, 1 << 20, 0, 1), std::invalid_argument);

  DataLoader loader(pattern, 1, 8, 0, 1);
  e = error_of([&] { loader.restore({2, 0, 0, 0}); });
  EXPECT_NE(e.find("cannot restore position (shard 2, offset 0, epoch 0)"), std::string::npos) << e;
  EXPECT_NE(e.find("there are 2 usable shards"), std::string::npos) << e;
  e = error_of([&] { loader.restore({1, 0, 52, 0}); });  // 52 + 8 + 1 > 60
  EXPECT_NE(e.find("the offset must be in 0..51"), std::string::npos) << e;
  EXPECT_FALSE(error_of([&] { loader.restore({1, 0, -1, 0}); }).empty());
  EXPECT_FALSE(error_of([&] { loader.restore({0, 0, 0, -1}); }).empty());
  EXPECT_EQ(error_of([&] { loader.restore({1, 0, 51, 4}); }), "");

  // A corrupt shard among good ones is caught up front.
  std::ofstream(fs::path(pattern).parent_path() / "train_000009.bin") << "not a shard";
  e = error_of([&] { DataLoader(pattern, 1, 8, 0, 1); });
  EXPECT_NE(e.find("train_000009.bin: file has 11 bytes, too short"), std::string::npos) << e;
}

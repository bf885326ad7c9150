// The owner plan of distributed Muon: every matrix has exactly one owner,
// shards hold one size each, and Newton-Schulz work is balanced over ranks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <set>

#include "optim/muon_ownership.h"

using namespace muonrun;

namespace {

// The hidden matrices of the 124M model in the order backward makes them ready.
std::vector<MatrixShape> record11_matrices() {
  std::vector<MatrixShape> m;
  for (int layer = 11; layer >= 0; --layer)
    for (MatrixShape s : {MatrixShape{768, 3072}, {3072, 768}, {768, 768}, {768, 768}, {768, 768}, {768, 768}})
      m.push_back(s);
  return m;
}

void expect_valid(const std::vector<MatrixShape>& matrices, int world, const MuonOwnership& plan) {
  std::multiset<int> seen;
  for (const auto& shard : plan.shards) {
    ASSERT_EQ(shard.slots.size(), static_cast<size_t>(world));
    int64_t numel = -1;
    for (int r = 0; r < world; ++r) {
      const int m = shard.slots[r];
      if (m < 0) continue;
      seen.insert(m);
      EXPECT_EQ(plan.owner[m], r);
      const int64_t n = matrices[m].rows * matrices[m].cols;
      if (numel >= 0) {
        EXPECT_EQ(n, numel) << "a shard mixes sizes";
      }
      numel = n;
    }
    EXPECT_GE(numel, 0) << "a shard of padding only";
  }
  for (int m = 0; m < static_cast<int>(matrices.size()); ++m) EXPECT_EQ(seen.count(m), 1u) << "matrix " << m;
  double total = 0;
  for (const auto& s : matrices) total += newton_schulz_flops(s, 5);
  double planned = 0;
  for (double f : plan.flops_per_rank) planned += f;
  EXPECT_DOUBLE_EQ(planned, total);
}

}  // namespace

TEST(MuonOwnership, NewtonSchulzFlopsFollowTheRecipe) {
  // 5 steps x (4 m^2 n + 2 m^3) with m = 768, n = 3072, whichever way round.
  const double expected = 5 * (4.0 * 768 * 768 * 3072 + 2.0 * 768 * 768 * 768);
  EXPECT_DOUBLE_EQ(newton_schulz_flops({768, 3072}, 5), expected);
  EXPECT_DOUBLE_EQ(newton_schulz_flops({3072, 768}, 5), expected);
}

TEST(MuonOwnership, Record11IsPerfectlyBalancedOnEightRanks) {
  auto matrices = record11_matrices();
  auto plan = plan_muon_ownership(matrices, 8, 5);
  expect_valid(matrices, 8, plan);
  auto [lo, hi] = std::minmax_element(plan.flops_per_rank.begin(), plan.flops_per_rank.end());
  std::printf("124M at 8 ranks: Newton-Schulz GFLOP per rank max %.2f min %.2f\n", *hi / 1e9, *lo / 1e9);
  EXPECT_DOUBLE_EQ(*hi, *lo);
  EXPECT_EQ(plan.shards.size(), 9u);  // 48 square matrices in 6 shards, 24 MLP matrices in 3
}

TEST(MuonOwnership, EveryWorldSizeCoversEachMatrixOnceAndStaysBalanced) {
  auto matrices = record11_matrices();
  for (int world = 1; world <= 16; ++world) {
    auto plan = plan_muon_ownership(matrices, world, 5);
    expect_valid(matrices, world, plan);
    auto [lo, hi] = std::minmax_element(plan.flops_per_rank.begin(), plan.flops_per_rank.end());
    // No rank does more than the average plus one of the largest matrices.
    const double average = std::accumulate(plan.flops_per_rank.begin(), plan.flops_per_rank.end(), 0.0) / world;
    EXPECT_LE(*hi, average + newton_schulz_flops({768, 3072}, 5)) << "world " << world;
    std::printf("world %2d: max/min NS GFLOP per rank %.2f / %.2f\n", world, *hi / 1e9, *lo / 1e9);
  }
}

TEST(MuonOwnership, FewerMatricesThanRanks) {
  std::vector<MatrixShape> matrices = {{16, 64}, {16, 16}};
  auto plan = plan_muon_ownership(matrices, 4, 5);
  expect_valid(matrices, 4, plan);
  EXPECT_NE(plan.owner[0], plan.owner[1]);  // the two matrices go to two different ranks
  EXPECT_EQ(std::count(plan.flops_per_rank.begin(), plan.flops_per_rank.end(), 0.0), 2);
}

TEST(MuonOwnership, IsDeterministic) {
  auto matrices = record11_matrices();
  auto a = plan_muon_ownership(matrices, 5, 5), b = plan_muon_ownership(matrices, 5, 5);
  EXPECT_EQ(a.owner, b.owner);
}

#include "optim/muon_ownership.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

namespace muonrun {

double newton_schulz_flops(const MatrixShape& shape, int64_t steps) {
  const double m = static_cast<double>(std::min(shape.rows, shape.cols));
  const double n = static_cast<double>(std::max(shape.rows, shape.cols));
  return static_cast<double>(shape.count) * static_cast<double>(steps) * (4 * m * m * n + 2 * m * m * m);
}

MuonOwnership plan_muon_ownership(const std::vector<MatrixShape>& matrices, int world, int64_t ns_steps) {
  // Group by size class: a shard's slots must have equal element counts, and
  // an m x n matrix costs the same as its transpose.
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::vector<int>> groups;
  for (size_t i = 0; i < matrices.size(); ++i) {
    const auto& s = matrices[i];
    groups[{s.count, std::min(s.rows, s.cols), std::max(s.rows, s.cols)}].push_back(static_cast<int>(i));
  }
  // Costliest size class first, so the partial shards of cheaper classes fill in.
  std::vector<std::vector<int>> ordered;
  for (auto& [key, members] : groups) ordered.push_back(members);
  std::stable_sort(ordered.begin(), ordered.end(), [&](const auto& a, const auto& b) {
    return newton_schulz_flops(matrices[a[0]], 1) > newton_schulz_flops(matrices[b[0]], 1);
  });

  MuonOwnership plan;
  plan.flops_per_rank.assign(world, 0.0);
  plan.owner.assign(matrices.size(), -1);
  for (const auto& members : ordered) {
    const double cost = newton_schulz_flops(matrices[members[0]], ns_steps);
    for (size_t start = 0; start < members.size(); start += world) {
      const size_t count = std::min<size_t>(world, members.size() - start);
      // Ranks by current load (ties: lower rank first); a full shard uses all.
      std::vector<int> ranks(world);
      std::iota(ranks.begin(), ranks.end(), 0);
      std::stable_sort(ranks.begin(), ranks.end(),
                       [&](int a, int b) { return plan.flops_per_rank[a] < plan.flops_per_rank[b]; });
      MuonShardPlan shard{std::vector<int>(world, -1)};
      for (size_t k = 0; k < count; ++k) {
        const int rank = ranks[k], matrix = members[start + k];
        shard.slots[rank] = matrix;
        plan.owner[matrix] = rank;
        plan.flops_per_rank[rank] += cost;
      }
      plan.shards.push_back(shard);
    }
  }
  return plan;
}

}  // namespace muonrun

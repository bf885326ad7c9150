// The step plan (optim/step_plan.h): matrix ownership and gradient units.
#include "optim/step_plan.h"

#include <c10/util/accumulate.h>

#include <algorithm>
#include <map>

namespace muonrun {

StepPlan plan_step(const std::vector<torch::Tensor>& params, const std::vector<NamedParam>& matrices,
                   const std::vector<AdamWGroup>& adam_groups, const OptimConfig& optim,
                   std::optional<PlanRanks> ranks, int64_t bucket_bytes) {
  StepPlan plan;
  plan.use_muon = optim.matrix_optimizer == MatrixOptimizer::muon;
  const bool owner = ranks && plan.use_muon && optim.muon.distribute == Distribute::owner;

  // Index of each parameter in registration order; gradients become ready in
  // roughly the reverse order, which is the order units are planned in.
  std::map<const void*, int> index;
  for (size_t i = 0; i < params.size(); ++i) index[params[i].unsafeGetTensorImpl()] = static_cast<int>(i);
  auto index_of = [&](const torch::Tensor& t) { return index.at(t.unsafeGetTensorImpl()); };

  if (owner) {
    std::vector<size_t> by_readiness(matrices.size());
    for (size_t i = 0; i < by_readiness.size(); ++i) by_readiness[i] = matrices.size() - 1 - i;
    std::vector<MatrixShape> shapes;
    for (size_t i : by_readiness) {
      // A stack [..., rows, cols] (record 29's qkvo_w) is one unit: one owner
      // orthogonalises all its matrices, as the record's Muon does.
      const auto& t = matrices[i].tensor;
      const auto sizes = t.sizes();
      shapes.push_back({t.size(-2), t.size(-1), c10::multiply_integers(sizes.begin(), sizes.end() - 2)});
    }
    auto planned = plan_muon_ownership(shapes, ranks->world, optim.muon.ns_steps);
    MuonOwnership ownership;
    ownership.flops_per_rank = planned.flops_per_rank;
    ownership.owner.assign(matrices.size(), -1);
    for (size_t k = 0; k < by_readiness.size(); ++k) ownership.owner[by_readiness[k]] = planned.owner[k];
    for (const auto& shard : planned.shards) {
      MuonShardPlan mapped{shard.slots};
      for (int& slot : mapped.slots)
        if (slot >= 0) slot = static_cast<int>(by_readiness[slot]);
      ownership.shards.push_back(mapped);
    }
    for (int o : ownership.owner) plan.owned.push_back(o == ranks->rank);
    plan.ownership = std::move(ownership);
  } else {
    for (size_t i = 0; i < matrices.size(); ++i) plan.slots.push_back({0, static_cast<int>(i)});
  }
  if (!ranks) return plan;

  // Gradient units: buckets for everything all-reduced, shards for owned matrices.
  std::vector<int> bucketed;
  for (const auto& group : adam_groups)
    for (const auto& p : group.params) bucketed.push_back(index_of(p.tensor));
  if (plan.use_muon && !owner)
    for (const auto& m : matrices) bucketed.push_back(index_of(m.tensor));
  std::sort(bucketed.rbegin(), bucketed.rend());
  plan.units = plan_buckets(params, bucketed, bucket_bytes);
  for (size_t u = 0; u < plan.units.size(); ++u) plan.bucket_units.push_back(u);
  if (owner) {
    for (const auto& shard : plan.ownership->shards) {
      GradientUnit unit{GradientUnit::Kind::Shard, {}};
      for (int m : shard.slots) unit.params.push_back(m >= 0 ? index_of(matrices[m].tensor) : -1);
      plan.slots.push_back({plan.shard_units.size(), shard.slots[ranks->rank]});
      plan.shard_units.push_back(plan.units.size());
      plan.units.push_back(unit);
    }
  }
  return plan;
}

}  // namespace muonrun

// The plan of an optimizer step, apart from its execution: which rank
// updates which hidden matrix, and in which units gradients travel between
// ranks. Pure data computed once at construction from the parameters, the
// resolved OptimConfig, the world size and rank, and the bucket size; no
// communicator is needed, so it can be tested on one process.
//
// Distributed Muon follows KellerJordan/modded-nanogpt: since the records
// that shard Newton-Schulz over GPUs, each rank orthogonalises only the
// matrices it owns and all-gathers the new weights ("owner",
// optim/muon_ownership.h); everything else is all-reduced in buckets, as
// PyTorch DDP does (Li et al. 2020, "PyTorch Distributed").
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "comm/grad_reducer.h"
#include "optim/adamw.h"
#include "optim/muon_ownership.h"
#include "optim/optim_config.h"
#include "optim/param_groups.h"

namespace muonrun {

// A matrix this rank updates: in owner mode one slot per shard (the matrix
// it owns there, or -1), else one per matrix (shard 0).
struct MatrixSlot {
  size_t shard;
  int matrix;
};

struct StepPlan {
  bool use_muon = false;  // matrix_optimizer = muon
  // Owner mode with a communicator: who owns what (matrix indices into the
  // `matrices` given to plan_step).
  std::optional<MuonOwnership> ownership;
  std::vector<bool> owned;  // per matrix, for Muon's state; empty: all
  std::vector<MatrixSlot> slots;
  // For comm/grad_reducer.h; empty for a single process.
  std::vector<GradientUnit> units;
  std::vector<size_t> bucket_units;  // indices into units, all-reduced
  std::vector<size_t> shard_units;   // indices into units, one per shard
};

struct PlanRanks {
  int world, rank;
};

// `params`: every trainable parameter in registration order; `matrices`: the
// hidden matrices (param_groups.h); `adam_groups`: what AdamW updates;
// `ranks`: none for a single process (no communicator).
StepPlan plan_step(const std::vector<torch::Tensor>& params, const std::vector<NamedParam>& matrices,
                   const std::vector<AdamWGroup>& adam_groups, const OptimConfig& optim,
                   std::optional<PlanRanks> ranks, int64_t bucket_bytes);

}  // namespace muonrun

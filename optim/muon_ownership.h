// Which rank runs Newton-Schulz for which matrix in owner-distributed Muon
// (KellerJordan/modded-nanogpt records 15-24, train_gpt2.py): matrices of one
// size are taken `world` at a time, in the order their gradients become
// ready, into a shard whose slot r belongs to rank r (a stack of matrices,
// such as record 29's qkvo_w, is one parameter of its total size, so the
// slots of a shard hold equal element counts). Full shards give every rank
// the same work; the last, partial shard of each size gives its matrices to
// the ranks with the least Newton-Schulz work so far (largest matrices placed
// first), so the plan is balanced, shape-aware and the same on every rank.
#pragma once

#include <cstdint>
#include <vector>

namespace muonrun {

// A parameter Muon updates: `count` matrices of rows x cols (a stack such as
// record 29's qkvo_w [4, dim, dim] has count 4; a plain matrix 1). One rank
// owns the whole stack.
struct MatrixShape {
  int64_t rows, cols;
  int64_t count = 1;
};

// Newton-Schulz FLOPs for `count` m x n matrices (m <= n after transposing):
// count x steps x (4 m^2 n + 2 m^3): X X^T and B X are 2 m^2 n each, A A is 2 m^3.
double newton_schulz_flops(const MatrixShape& shape, int64_t steps);

struct MuonShardPlan {
  // slots[r]: the matrix (index into the planner's input) that rank r owns, or -1.
  std::vector<int> slots;
};

struct MuonOwnership {
  std::vector<MuonShardPlan> shards;
  std::vector<double> flops_per_rank;  // Newton-Schulz FLOPs per step
  std::vector<int> owner;              // per matrix
};

// `matrices` in the order their gradients become ready in backward.
MuonOwnership plan_muon_ownership(const std::vector<MatrixShape>& matrices, int world, int64_t ns_steps);

}  // namespace muonrun

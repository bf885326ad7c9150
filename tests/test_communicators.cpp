// Every communicator's collectives against values computed here, run as N
// processes at once (tests/CMakeLists.txt launches this binary with mpirun
// and with the variables torchrun sets, so both MPI and Gloo are checked).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>

#include "comm/world.h"

using namespace muonrun;

namespace {

World* world = nullptr;

Communicator& comm() {
  if (!world || !world->comm()) throw std::runtime_error("run this test under mpirun or with torchrun's variables");
  return *world->comm();
}

// Rank r holds r + 1 + i at position i: the mean over ranks is (W + 1) / 2 + i.
torch::Tensor rank_values(int64_t n, int rank) {
  return torch::arange(n, torch::kFloat) + static_cast<float>(rank + 1);
}

}  // namespace

TEST(Communicator, AllReduceMean) {
  const int W = comm().size(), r = comm().rank();
  auto t = rank_values(10, r);
  comm().all_reduce_mean(t)->wait();
  EXPECT_TRUE(torch::allclose(t, torch::arange(10, torch::kFloat) + (W + 1) / 2.0f)) << t;
}

TEST(Communicator, ReduceScatterMeanGivesEachRankItsChunk) {
  const int W = comm().size(), r = comm().rank();
  auto input = rank_values(4 * W, r);
  auto output = torch::empty({4});
  comm().reduce_scatter_mean(input, output)->wait();
  auto expected = torch::arange(4 * r, 4 * r + 4, torch::kFloat) + (W + 1) / 2.0f;
  EXPECT_TRUE(torch::allclose(output, expected)) << output;
}

TEST(Communicator, AllGatherInRankOrder) {
  const int W = comm().size(), r = comm().rank();
  auto input = torch::full({3}, static_cast<float>(r));
  auto output = torch::empty({W, 3});
  comm().all_gather(input, output)->wait();
  for (int k = 0; k < W; ++k) EXPECT_TRUE(torch::equal(output[k], torch::full({3}, static_cast<float>(k))));
}

TEST(Communicator, BroadcastFromAnyRoot) {
  const int W = comm().size(), r = comm().rank();
  for (int root = 0; root < W; ++root) {
    auto t = torch::full({5}, static_cast<float>(r));
    comm().broadcast(t, root)->wait();
    EXPECT_TRUE(torch::equal(t, torch::full({5}, static_cast<float>(root))));
  }
  comm().barrier();
}

TEST(Communicator, ManyOutstandingOperationsCompleteInAnyWaitOrder) {
  const int W = comm().size(), r = comm().rank();
  std::vector<torch::Tensor> tensors;
  std::vector<std::unique_ptr<Work>> works;
  for (int i = 0; i < 6; ++i) {
    tensors.push_back(torch::full({100}, static_cast<float>(r * i)));
    works.push_back(comm().all_reduce_mean(tensors.back()));
  }
  for (int i = 5; i >= 0; --i) works[i]->wait();
  for (int i = 0; i < 6; ++i)
    EXPECT_TRUE(torch::allclose(tensors[i], torch::full({100}, i * (W - 1) / 2.0f)));
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  World joined(detect_launch(), torch::kCPU, std::chrono::seconds(60));
  world = &joined;
  int rc = RUN_ALL_TESTS();
  // Every rank must pass; a failure on one rank fails the whole launch.
  auto failed = torch::tensor({static_cast<float>(rc != 0)});
  comm().all_reduce_mean(failed)->wait();
  return failed.item<float>() > 0 ? 1 : 0;
}

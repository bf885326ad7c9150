// The gradient reducer's bookkeeping on one process: hooks fire once per
// parameter, units start during backward, only the last micro-step
// communicates, and parameters without gradients cannot stall it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "comm/grad_reducer.h"
#include "models/gpt.h"
#include "tests/tiny_model.h"

using namespace muonrun;

namespace {

// A world of one rank: every collective leaves the data as it is, so the
// test sees the reducer's own behaviour.
class LoopbackCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "loopback"; }
  torch::Device device() const override { return torch::kCPU; }
  std::unique_ptr<Work> all_reduce_mean(torch::Tensor) override { return done(); }
  std::unique_ptr<Work> all_reduce_sum(torch::Tensor) override { return done(); }
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor input, torch::Tensor output) override {
    output.copy_(input.view({-1}));
    return done();
  }
  std::unique_ptr<Work> all_gather(torch::Tensor input, torch::Tensor output) override {
    output.view({-1}).copy_(input.view({-1}));
    return done();
  }
  std::unique_ptr<Work> broadcast(torch::Tensor, int) override { return done(); }
  void barrier() override {}

 private:
  static std::unique_ptr<Work> done() {
    struct Done : Work {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
};

std::vector<int> all_indices(size_t n) {
  std::vector<int> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<int>(n - 1 - i);
  return v;
}

void backward_once(GPT& model) {
  auto idx = torch::randint(50, {2, 8}, torch::kLong);
  model->loss(idx, idx).backward();
}

}  // namespace

TEST(GradientReducer, HooksFireOncePerParameterAndUnitsStartDuringBackward) {
  torch::manual_seed(0);
  GPT model(tests::tiny_model_config());
  auto params = model->parameters();
  LoopbackCommunicator comm;
  auto units = plan_buckets(params, all_indices(params.size()), 4096);  // several small buckets
  ASSERT_GT(units.size(), 3u);
  GradientReducer reducer(comm, params, units);
  reducer.begin_backward(true);
  backward_once(model);
  reducer.end_backward();

  auto events = reducer.events();
  std::map<std::string, int> count;
  for (const auto& e : events) count[e] += 1;
  for (size_t p = 0; p < params.size(); ++p) EXPECT_EQ(count["ready " + std::to_string(p)], 1) << "param " << p;
  for (size_t u = 0; u < units.size(); ++u) EXPECT_EQ(count["launch " + std::to_string(u)], 1) << "unit " << u;
  auto end = std::find(events.begin(), events.end(), "end_backward");
  ASSERT_NE(end, events.end());
  const auto launched_during_backward =
      std::count_if(events.begin(), end, [](const std::string& e) { return e.rfind("launch", 0) == 0; });
  EXPECT_GT(launched_during_backward, 0) << "no unit started before backward ended";
}

TEST(GradientReducer, OnlyTheLastMicroStepCommunicates) {
  torch::manual_seed(1);
  GPT model(tests::tiny_model_config());
  auto params = model->parameters();
  LoopbackCommunicator comm;
  GradientReducer reducer(comm, params, plan_buckets(params, all_indices(params.size()), 1 << 20));
  reducer.begin_backward(false);
  backward_once(model);
  reducer.end_backward();
  EXPECT_TRUE(reducer.events().empty());
  reducer.begin_backward(true);
  backward_once(model);  // accumulates onto the first micro-step's gradients
  reducer.end_backward();
  EXPECT_FALSE(reducer.events().empty());
  // The bucket carries the accumulated gradient back unchanged (world of one).
  auto before = params[0].grad().clone();
  reducer.wait_bucket(0);
  EXPECT_TRUE(torch::equal(params[0].grad(), before));
}

TEST(GradientReducer, AParameterWithoutGradientCannotStallTheOthers) {
  auto used = torch::randn({4}, torch::requires_grad());
  auto unused = torch::randn({3}, torch::requires_grad());
  auto late = torch::randn({2}, torch::requires_grad());
  std::vector<torch::Tensor> params = {used, unused, late};
  LoopbackCommunicator comm;
  // One parameter per bucket; the unused one sits in the middle of the order.
  GradientReducer reducer(comm, params, plan_buckets(params, {2, 1, 0}, 1));
  reducer.begin_backward(true);
  (used.sum() + late.sum()).backward();
  reducer.end_backward();  // must launch the stalled units, not wait for a hook that never fires
  for (size_t u = 0; u < reducer.units().size(); ++u) reducer.wait_bucket(u);
  ASSERT_TRUE(unused.grad().defined());
  EXPECT_TRUE(torch::equal(unused.grad(), torch::zeros({3})));
  EXPECT_TRUE(torch::equal(used.grad(), torch::ones({4})));
}

TEST(GradientReducer, ShardsReturnTheSlotOfThisRank) {
  auto a = torch::randn({3, 4}, torch::requires_grad());
  std::vector<torch::Tensor> params = {a};
  LoopbackCommunicator comm;
  GradientReducer reducer(comm, params, {{GradientUnit::Kind::Shard, {0}}});
  reducer.begin_backward(true);
  (a * 2).sum().backward();
  reducer.end_backward();
  auto mine = reducer.wait_shard(0);
  EXPECT_TRUE(torch::equal(mine, torch::full({3, 4}, 2.0f)));
}

TEST(GradientReducer, RejectsUnitsThatDoNotCoverEveryParameterOnce) {
  auto a = torch::randn({2}, torch::requires_grad()), b = torch::randn({2}, torch::requires_grad());
  LoopbackCommunicator comm;
  EXPECT_THROW(GradientReducer(comm, {a, b}, {{GradientUnit::Kind::Bucket, {0}}}), std::invalid_argument);
  EXPECT_THROW(GradientReducer(comm, {a, b}, {{GradientUnit::Kind::Bucket, {0, 1}}, {GradientUnit::Kind::Bucket, {1}}}),
               std::invalid_argument);
}

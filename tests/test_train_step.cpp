// The training step without host round trips (trainer/run/train_step.h):
// the skip decision taken on the device must be the one the host took before
// the update when this step read everything first. The reference here is
// that older order written out with public calls (forward, backward, a host
// check, then the update or nothing), step for step on the same data: the
// losses, weights and optimizer state must be identical, bit for bit,
// through a NaN step and a loss spike.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/pattern_shards.h"
#include "tests/test_helpers.h"
#include "trainer/config/config.h"
#include "trainer/faults/divergence.h"
#include "trainer/run/evaluate.h"
#include "trainer/run/train_step.h"

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

Config tiny_config(const fs::path& dir, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> overrides{"model.vocab_size=64", "model.layers=2", "model.heads=2", "model.head_dim=16",
                                     "model.dim=32", "model.seq_len=32", "train.micro_batch=4",
                                     "train.batch_tokens=256", "train.steps=16", "train.val_tokens=512",
                                     "optim.adam.embed_lr=0.05", "optim.adam.head_lr=0.01", "optim.muon.lr=0.02",
                                     "optim.muon.weight_decay=0.01", "optim.adam.weight_decay=0.01",
                                     "data.train=" + (dir / "train_*.bin").string(),
                                     "data.val=" + (dir / "val_*.bin").string(), "run.device=cpu"};
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return load_config({}, overrides);
}

// Turns step `nan_step`'s loss into NaN and multiplies step `spike_step`'s by 50.
torch::Tensor perturb(int64_t step, int64_t nan_step, int64_t spike_step, torch::Tensor loss) {
  if (step == nan_step) return loss * std::numeric_limits<float>::quiet_NaN();
  if (step == spike_step) return loss * 50.0;
  return loss;
}

struct Trace {
  std::vector<double> losses;
  std::vector<std::string> troubles;
  std::map<std::string, torch::Tensor> weights, state;
};

// What a run of either order is made of, built as the trainer builds it.
struct Run {
  explicit Run(const Config& config)
      : model(make_model(config, device)),
        plan(plan_batches(config, 1, model->layout())),
        optimizer(*model, config, nullptr),
        data(make_training_batches(config, model->layout(), plan.train_shape(), 0, 1)),
        detector(config.train.spike_zscore, config.train.spike_window) {}

  // The trace with the final weights and optimizer state.
  Trace finish() {
    for (const auto& p : model->named_parameters()) trace.weights[p.key()] = p.value().detach().clone();
    for (const auto& [name, t] : optimizer.state()) trace.state[name] = t.clone();
    return trace;
  }

  const torch::Device device{torch::kCPU};
  LanguageModel model;
  const BatchPlan plan;
  Optimizer optimizer;
  std::unique_ptr<BatchSource> data;
  DivergenceDetector detector;
  Trace trace;
};

// training_step as the trainer calls it (with `comm` as its communicator).
Trace with_training_step(const Config& config, int64_t nan_step, int64_t spike_step, bool* on_device,
                         Communicator* comm = nullptr) {
  Run run(config);
  *on_device = run.optimizer.skips_on_device();
  StepParts parts{*run.model, run.optimizer, *run.data, comm, run.device, run.plan};
  for (int64_t step = 0; step < config.train.steps; ++step) {
    StepHooks hooks;
    hooks.change_loss = [&](int64_t, torch::Tensor loss) { return perturb(step, nan_step, spike_step, loss); };
    hooks.check = [&](double loss, bool finite) { return run.detector.check(loss, finite); };
    hooks.spike_limit = [&] { return run.detector.spike_limit(); };
    const StepResult result = training_step(parts, step, hooks);
    run.trace.losses.push_back(result.loss);
    run.trace.troubles.push_back(result.trouble);
  }
  return run.finish();
}

// The order before: everything read on the host, then the update or nothing.
Trace host_first(const Config& config, int64_t nan_step, int64_t spike_step) {
  Run run(config);
  for (int64_t step = 0; step < config.train.steps; ++step) {
    auto loss_sum = torch::zeros({});
    for (int64_t micro = 0; micro < run.plan.accumulation; ++micro) {
      auto loss = perturb(step, nan_step, spike_step, run.model->loss(run.data->next(run.device)).objective);
      (loss / static_cast<double>(run.plan.accumulation)).backward();
      loss_sum += loss.detach();
    }
    const double loss = (loss_sum / static_cast<double>(run.plan.accumulation)).item<float>();
    bool finite = true;
    for (const auto& p : run.model->parameters())
      if (p.grad().defined()) finite = finite && torch::isfinite(p.grad()).all().item<bool>();
    const std::string trouble = run.detector.check(loss, finite);
    if (trouble.empty()) run.optimizer.step(step);
    run.optimizer.zero_grad();
    run.trace.losses.push_back(loss);
    run.trace.troubles.push_back(trouble);
  }
  return run.finish();
}

size_t skipped_steps(const Trace& trace) {
  size_t n = 0;
  for (const auto& t : trace.troubles) n += !t.empty();
  return n;
}

// Losses equal within `loss_tolerance` (relative; 0: bit for bit), the same
// steps skipped, and weights and optimizer state bit for bit.
void expect_same(const Trace& a, const Trace& b, double loss_tolerance = 0) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i) {
    if (std::isnan(b.losses[i])) EXPECT_TRUE(std::isnan(a.losses[i])) << "step " << i;
    else EXPECT_NEAR(a.losses[i], b.losses[i], loss_tolerance * std::abs(b.losses[i])) << "step " << i;
    EXPECT_EQ(a.troubles[i].empty(), b.troubles[i].empty()) << "step " << i << ": '" << a.troubles[i] << "' vs '"
                                                            << b.troubles[i] << "'";
  }
  for (const auto& [name, t] : b.weights) EXPECT_TRUE(torch::equal(a.weights.at(name), t)) << name;
  ASSERT_EQ(a.state.size(), b.state.size());
  for (const auto& [name, t] : b.state) EXPECT_TRUE(torch::equal(a.state.at(name), t)) << name;
}

// n ranks that all hold this process's values, reducing as NCCL does: its
// AVG multiplies each rank's value by float(1/n) and sums the products in
// float, in ring order (ncclAvg in NCCL's collectives); SUM adds them. Only
// the all-reduces of the step's agreement are needed here (the optimizer
// runs without a communicator: mirrored ranks hold the same gradients).
class NcclLikeMirror : public Communicator {
 public:
  explicit NcclLikeMirror(int n) : n_(n) {}
  int rank() const override { return 0; }
  int size() const override { return n_; }
  std::string name() const override { return "nccl-like mirror"; }
  torch::Device device() const override { return torch::kCPU; }
  std::unique_ptr<Work> all_reduce_mean(torch::Tensor t) override {
    return ring_sum(t, 1.0f / static_cast<float>(n_));
  }
  std::unique_ptr<Work> all_reduce_sum(torch::Tensor t) override { return ring_sum(t, 1.0f); }
  std::unique_ptr<Work> reduce_scatter_mean(torch::Tensor, torch::Tensor) override { throw unused(); }
  std::unique_ptr<Work> all_gather(torch::Tensor, torch::Tensor) override { throw unused(); }
  std::unique_ptr<Work> broadcast(torch::Tensor, int) override { throw unused(); }
  void barrier() override {}

 private:
  std::unique_ptr<Work> ring_sum(torch::Tensor& t, float factor) const {
    EXPECT_EQ(t.scalar_type(), torch::kFloat);
    auto v = t.accessor<float, 1>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float each = v[i] * factor;
      float sum = 0.0f;
      for (int r = 0; r < n_; ++r) sum += each;
      v[i] = sum;
    }
    struct Done : Work {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  static std::logic_error unused() { return std::logic_error("NcclLikeMirror: not used by the step's agreement"); }
  int n_;
};

}  // namespace

// The mirror's arithmetic is NCCL's problem: the mean of n ones is not 1.
TEST(TrainingStep, NcclAverageOfOnesIsNotOneAt12And48Ranks) {
  for (int n : {12, 48}) {
    NcclLikeMirror mirror(n);
    auto ones = torch::ones({1});
    mirror.all_reduce_mean(ones)->wait();
    EXPECT_NE(ones.item<float>(), 1.0f) << n << " ranks";
  }
}

// At 12, 24 and 48 ranks reducing as NCCL does, a healthy run takes every
// update (deciding on a float mean of "all finite" flags skipped them all),
// and a NaN step and a spike are still skipped: the same trace as one
// process, losses within float rounding of the n-fold sum. Both decision
// paths: on the device (the recipe) and on the host (an AdamW variant).
TEST(TrainingStep, NcclRoundingOfMeansDoesNotSkipHealthySteps) {
  const fs::path dir = tests::scratch_dir("train_step_nccl_like");
  tests::write_pattern_shards(dir);
  for (const bool device_path : {true, false}) {
    std::vector<std::string> keys{"train.spike_zscore=3", "train.spike_window=8"};
    if (!device_path) keys.push_back("optim.adam.bias_correction=false");  // a variant decided on the host
    const Config config = tiny_config(dir, keys);
    bool on_device = false;
    const Trace one = with_training_step(config, 3, 12, &on_device);
    EXPECT_EQ(on_device, device_path);
    for (int n : {12, 24, 48}) {
      SCOPED_TRACE(std::string(device_path ? "on the device, " : "on the host, ") + std::to_string(n) + " ranks");
      NcclLikeMirror mirror(n);
      const Trace many = with_training_step(config, 3, 12, &on_device, &mirror);
      expect_same(many, one, 1e-6);
      EXPECT_EQ(skipped_steps(many), 2u);
    }
  }
}

// A launcher with one process still makes a communicator, whose gradient
// hooks a replayed graph would never call: train.cuda_graphs refuses it by
// name before asking for a device (which the CPU would refuse anyway).
TEST(TrainingStep, CudaGraphsRefuseACommunicatorByName) {
  const fs::path dir = tests::scratch_dir("train_step_graph_comm");
  tests::write_pattern_shards(dir);
  const Config config = tiny_config(dir, {"train.cuda_graphs=true"});
  ::Run run(config);
  NcclLikeMirror one_rank(1);
  try {
    make_micro_step_graph(config, &one_rank, *run.model, run.device, run.plan);
    FAIL() << "train.cuda_graphs was accepted with a communicator";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("train.cuda_graphs"), std::string::npos) << message;
    EXPECT_NE(message.find("the nccl-like mirror communicator over 1 rank"), std::string::npos) << message;
  }
}

// The recipe (Muon + fused AdamW) skips on the device: a NaN at step 3 and a
// spike at step 12 (z-score 3 over 8 losses) are skipped exactly as the host
// skipped them, and every other step is the same update.
TEST(TrainingStep, DeviceSkipMatchesTheHostFirstOrder) {
  const fs::path dir = tests::scratch_dir("train_step_device");
  tests::write_pattern_shards(dir);
  const Config config = tiny_config(dir, {"train.spike_zscore=3", "train.spike_window=8"});
  bool on_device = false;
  const Trace ours = with_training_step(config, 3, 12, &on_device);
  EXPECT_TRUE(on_device) << "the recipe's step should skip on the device";
  const Trace reference = host_first(config, 3, 12);
  expect_same(ours, reference);
  EXPECT_NE(ours.troubles[3].find("the loss is nan"), std::string::npos) << ours.troubles[3];
  EXPECT_NE(ours.troubles[12].find("spike"), std::string::npos) << ours.troubles[12];
  EXPECT_EQ(skipped_steps(ours), 2u);
}

// A negative control: without the skip the NaN step poisons the weights, so
// the comparison above can fail.
TEST(TrainingStep, WithoutTheCheckANaNStepReachesTheWeights) {
  const fs::path dir = tests::scratch_dir("train_step_control");
  tests::write_pattern_shards(dir);
  const Config config = tiny_config(dir);
  const torch::Device device(torch::kCPU);
  LanguageModel model = make_model(config, device);
  const BatchPlan plan = plan_batches(config, 1, model->layout());
  Optimizer optimizer(*model, config, nullptr);
  const auto data = make_training_batches(config, model->layout(), plan.train_shape(), 0, 1);
  StepParts parts{*model, optimizer, *data, nullptr, device, plan};
  StepHooks hooks;  // no check: every update is applied
  hooks.change_loss = [&](int64_t, torch::Tensor loss) { return perturb(0, 0, -1, loss); };
  training_step(parts, 0, hooks);
  bool finite = true;
  for (const auto& p : model->parameters()) finite = finite && torch::isfinite(p).all().item<bool>();
  EXPECT_FALSE(finite);
}

// An ablation whose AdamW cannot run fused (no bias correction) reads on the
// host first, and gives the same trace as the host-first order too.
TEST(TrainingStep, HostPathForVariantsMatchesTheHostFirstOrder) {
  const fs::path dir = tests::scratch_dir("train_step_host");
  tests::write_pattern_shards(dir);
  const Config config =
      tiny_config(dir, {"optim.adam.bias_correction=false", "train.spike_zscore=3", "train.spike_window=8"});
  bool on_device = true;
  const Trace ours = with_training_step(config, 3, 12, &on_device);
  EXPECT_FALSE(on_device);
  expect_same(ours, host_first(config, 3, 12));
}

TEST(Divergence, SpikeLimitIsWhereCheckObjects) {
  DivergenceDetector detector(3.0, 16);
  EXPECT_EQ(detector.spike_limit(), std::numeric_limits<double>::infinity());  // window too short
  for (int i = 0; i < 16; ++i) detector.check(i % 2 ? 3.0 : 1.0, true);       // mean 2, std 1
  EXPECT_DOUBLE_EQ(detector.spike_limit(), 5.0);
  DivergenceDetector same = detector;
  EXPECT_EQ(same.check(5.0, true), "");  // z = 3 is not above 3
  EXPECT_NE(detector.check(std::nextafter(5.0, 6.0), true).find("spike"), std::string::npos);
  EXPECT_EQ(DivergenceDetector(0.0, 16).spike_limit(), std::numeric_limits<double>::infinity());
}

// `muonrun toy`: the toy problems of trainer/tools/toy.h with every
// optimizer of the family.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "trainer/tools/toy.h"

using namespace muonrun;

TEST(Toy, EveryOptimizerReducesTheRegressionLoss) {
  const Config base;
  for (const auto& optimizer : toy_optimizers()) {
    double initial = 0, best = std::numeric_limits<double>::infinity();
    for (double lr : {1e-3, 1e-2, 1e-1}) {
      const auto losses = run_toy("linreg", optimizer, base, lr, 60, 0);
      ASSERT_EQ(losses.size(), 61u);
      initial = losses.front();
      best = std::min(best, losses.back());
    }
    // ||Y - X W0^T||^2 per sample starts near 2 x 16 (W0 and W* alike) plus the noise.
    EXPECT_GT(initial, 20.0) << optimizer.name;
    EXPECT_LT(best, 0.5 * initial) << optimizer.name;
  }
}

TEST(Toy, ProblemsAreSeededAndRun) {
  const Config base;
  const ToyOptimizer muon{"muon", {}};
  for (const auto& problem : toy_problems()) {
    const auto a = run_toy(problem, muon, base, 0.01, 5, 7);
    const auto b = run_toy(problem, muon, base, 0.01, 5, 7);
    EXPECT_EQ(a, b) << problem;
    EXPECT_TRUE(std::isfinite(a.back())) << problem;
    EXPECT_NE(run_toy(problem, muon, base, 0.01, 5, 8).front(), a.front()) << problem << ": another seed, another problem";
  }
  // Softmax and MLP start near ln(16) (16 classes, small logits).
  EXPECT_NEAR(run_toy("mlp", muon, base, 0.01, 1, 0).front(), std::log(16.0), 0.5);
}

TEST(Toy, ComparisonTableNamesEveryOptimizerAndProblem) {
  ToyOptions options;
  options.problems = {"quadratic", "softmax"};
  options.optimizers = {"adamw", "muonmax_momo"};
  options.lrs = {0.01, 0.1};
  options.steps = 10;
  const auto table = run_toy_comparison(options);
  for (const char* name : {"adamw", "muonmax_momo", "quadratic", "softmax", "(lr "}) EXPECT_NE(table.find(name), std::string::npos) << table;
  options.optimizers = {"no_such_optimizer"};
  EXPECT_THROW(run_toy_comparison(options), std::invalid_argument);
}

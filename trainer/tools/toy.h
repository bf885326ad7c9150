// `muonrun toy`: the optimizers of the family on four simple problems, where
// each runs in milliseconds:
//   linreg     multi-output linear regression  Y = X W* + noise, loss ||Y - X W||_F^2 / batch
//   quadratic  matrix quadratic                q(W) = tr(W^T Q W) / 2, full gradient
//   softmax    softmax (multinomial logistic) regression on labels argmax(softmax(X W*) + noise)
//   mlp        a small MLP (one hidden ReLU layer of 64, with biases) on the same labels
// Every optimizer is the trainer's own (optim/optimizer.h) with a variant's
// config overrides; a grid of learning rates is tried and the best kept.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/config/config.h"

namespace muonrun {

// A named optimizer: config overrides (key=value) on top of the base config.
struct ToyOptimizer {
  std::string name;
  std::vector<std::string> overrides;
};

// adamw, muon (quintic, polar_express, svd), scion, muonmax, polargrad and
// the Momo versions of muon and muonmax.
const std::vector<ToyOptimizer>& toy_optimizers();
const std::vector<std::string>& toy_problems();

// Losses of `optimizer` on `problem` with every lr set to `lr`: the full
// training loss before the first step and after each of `steps` steps
// (infinity once it is not finite). Data and initial weights depend only on
// `seed`, so all optimizers see the same problem.
std::vector<double> run_toy(const std::string& problem, const ToyOptimizer& optimizer, const Config& base,
                            double lr, int64_t steps, uint64_t seed);

struct ToyOptions {
  std::vector<std::string> problems;    // empty: all
  std::vector<std::string> optimizers;  // empty: all
  std::vector<double> lrs = {1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0};
  int64_t steps = 200;
  uint64_t seed = 0;
  std::vector<std::string> config_files, overrides;  // the base config
  std::string csv;                                   // also write every run here
};

// Runs the grid and returns the table (markdown): per problem and optimizer
// the final loss at the best lr.
std::string run_toy_comparison(const ToyOptions& options);

}  // namespace muonrun

#include "trainer/tools/toy.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <memory>

#include "optim/optimizer.h"

namespace muonrun {
namespace {

// Sizes (our choice): N samples of d features, D outputs (also the number of
// classes, as the classification data reuse the linear regression's W*),
// minibatches of B; the quadratic's W is m x n.
constexpr int64_t kSamples = 1024, kFeatures = 32, kOutputs = 16, kHidden = 64, kBatch = 128;
constexpr int64_t kRows = 32, kCols = 16;

// One problem: its data and its model. Weights are stored [out, in] like the
// GPT's, so that Muon's shape factors mean the same; biases are 1-D, so
// they go to AdamW's scalar group (or the backup norm).
class ToyProblem : public torch::nn::Module {
 public:
  // The loss of minibatch `step` (for the quadratic, the full objective).
  virtual torch::Tensor loss(int64_t step) = 0;
  // The loss over all samples.
  virtual torch::Tensor full_loss() = 0;
};

// Minibatch indices: a fresh random permutation of the samples per epoch.
class Batches {
 public:
  explicit Batches(int64_t steps) {
    std::vector<torch::Tensor> epochs;
    for (int64_t n = 0; n * kSamples < (steps + 1) * kBatch; ++n) epochs.push_back(torch::randperm(kSamples));
    order_ = torch::cat(epochs);
  }
  torch::Tensor indices(int64_t step) const { return order_.slice(0, step * kBatch, (step + 1) * kBatch); }

 private:
  torch::Tensor order_;
};

// A problem with samples X and targets: a minibatch loss and a full loss
// from the same `of`.
class SupervisedProblem : public ToyProblem {
 public:
  explicit SupervisedProblem(int64_t steps) : batches_(steps) {}
  torch::Tensor loss(int64_t step) override {
    const auto idx = batches_.indices(step);
    return of(X_.index_select(0, idx), targets_.index_select(0, idx));
  }
  torch::Tensor full_loss() override { return of(X_, targets_); }

 protected:
  virtual torch::Tensor of(const torch::Tensor& X, const torch::Tensor& targets) const = 0;
  torch::Tensor X_, targets_;

 private:
  Batches batches_;
};

// Multi-output linear regression: X ~ N(0, 1), W* ~ N(0, 1/d) (so XW* has unit variance),
// noise of output j ~ N(0, sigma_j^2) with sigma_j evenly spaced in [0.1, 1].
class LinearRegression : public SupervisedProblem {
 public:
  explicit LinearRegression(int64_t steps) : SupervisedProblem(steps) {
    X_ = torch::randn({kSamples, kFeatures});
    auto W_star = torch::randn({kOutputs, kFeatures}) / std::sqrt(double(kFeatures));
    targets_ = X_.mm(W_star.t()) + torch::randn({kSamples, kOutputs}) * torch::linspace(0.1, 1.0, kOutputs);
    W_ = register_parameter("W", torch::randn({kOutputs, kFeatures}) / std::sqrt(double(kFeatures)));
  }

 private:
  // ||Y - X W^T||_F^2 per sample (the sum over the batch, divided by it so
  // that the lr does not depend on it).
  torch::Tensor of(const torch::Tensor& X, const torch::Tensor& Y) const override {
    return (Y - X.mm(W_.t())).pow(2).sum() / X.size(0);
  }
  torch::Tensor W_;
};

// Matrix quadratic: q(W) = tr(W^T Q W) / 2 with Q symmetric positive definite:
// Q = U diag(lambda) U^T, U a random rotation, lambda log-spaced from 1 down
// to 0.01 (condition number 100).
class MatrixQuadratic : public ToyProblem {
 public:
  MatrixQuadratic() {
    auto U = std::get<0>(torch::linalg_qr(torch::randn({kRows, kRows})));
    Q_ = U.mm(torch::diag(torch::logspace(0, -2, kRows))).mm(U.t());
    W_ = register_parameter("W", torch::randn({kRows, kCols}) / std::sqrt(double(kCols)));
  }
  torch::Tensor loss(int64_t) override { return full_loss(); }
  torch::Tensor full_loss() override { return 0.5 * (W_ * Q_.mm(W_)).sum(); }

 private:
  torch::Tensor Q_, W_;
};

// Classification data: X and W* as in the linear regression, P = softmax(X W*) +
// noise (N(0, 0.05^2), about half the mean probability), labels argmax P.
struct Labels {
  torch::Tensor X, y;
};
Labels classification_data() {
  auto X = torch::randn({kSamples, kFeatures});
  auto W_star = torch::randn({kOutputs, kFeatures}) / std::sqrt(double(kFeatures));
  auto P = torch::softmax(X.mm(W_star.t()), 1) + 0.05 * torch::randn({kSamples, kOutputs});
  return {X, P.argmax(1)};
}

// Softmax regression with (d+1) x K weights: X gains a column of
// ones for the bias.
class SoftmaxRegression : public SupervisedProblem {
 public:
  explicit SoftmaxRegression(int64_t steps) : SupervisedProblem(steps) {
    auto data = classification_data();
    X_ = torch::cat({data.X, torch::ones({kSamples, 1})}, 1);
    targets_ = data.y;
    W_ = register_parameter("W", torch::randn({kOutputs, kFeatures + 1}) / std::sqrt(double(kFeatures + 1)));
  }

 private:
  torch::Tensor of(const torch::Tensor& X, const torch::Tensor& y) const override {
    return torch::cross_entropy_loss(X.mm(W_.t()), y);
  }
  torch::Tensor W_;
};

// Small MLP (sizes our choice): one hidden ReLU layer, He-initialised,
// with biases, on the softmax problem's data.
class SmallMlp : public SupervisedProblem {
 public:
  explicit SmallMlp(int64_t steps) : SupervisedProblem(steps) {
    auto data = classification_data();
    X_ = data.X;
    targets_ = data.y;
    W1_ = register_parameter("W1", torch::randn({kHidden, kFeatures}) * std::sqrt(2.0 / kFeatures));
    b1_ = register_parameter("b1", torch::zeros({kHidden}));
    W2_ = register_parameter("W2", torch::randn({kOutputs, kHidden}) / std::sqrt(double(kHidden)));
    b2_ = register_parameter("b2", torch::zeros({kOutputs}));
  }

 private:
  torch::Tensor of(const torch::Tensor& X, const torch::Tensor& y) const override {
    auto hidden = torch::relu(torch::addmm(b1_, X, W1_.t()));
    return torch::cross_entropy_loss(torch::addmm(b2_, hidden, W2_.t()), y);
  }
  torch::Tensor W1_, b1_, W2_, b2_;
};

std::shared_ptr<ToyProblem> make_problem(const std::string& name, int64_t steps) {
  if (name == "linreg") return std::make_shared<LinearRegression>(steps);
  if (name == "quadratic") return std::make_shared<MatrixQuadratic>();
  if (name == "softmax") return std::make_shared<SoftmaxRegression>(steps);
  if (name == "mlp") return std::make_shared<SmallMlp>(steps);
  throw std::invalid_argument("unknown toy problem '" + name + "'");
}

template <class T>
const T& find_named(const std::vector<T>& list, const std::string& name, const char* what) {
  for (const auto& item : list)
    if (item.name == name) return item;
  throw std::invalid_argument(fmt::format("unknown toy {} '{}'", what, name));
}

}  // namespace

const std::vector<ToyOptimizer>& toy_optimizers() {
  static const std::vector<ToyOptimizer> list = {
      {"adamw", {"optim.matrix_optimizer=adamw"}},
      {"muon", {}},
      {"muon_polar_express", {"optim.muon.polar=polar_express"}},
      {"muon_svd", {"optim.muon.polar=svd"}},
      {"scion", {"optim.preset=scion"}},
      {"muonmax", {"optim.preset=muonmax"}},
      {"polargrad", {"optim.preset=polargrad"}},
      {"muon_momo", {"optim.momo.enabled=true"}},
      {"muonmax_momo", {"optim.preset=muonmax", "optim.momo.enabled=true"}},
  };
  return list;
}

const std::vector<std::string>& toy_problems() {
  static const std::vector<std::string> list = {"linreg", "quadratic", "softmax", "mlp"};
  return list;
}

std::vector<double> run_toy(const std::string& problem, const ToyOptimizer& optimizer, const Config& base,
                            double lr, int64_t steps, uint64_t seed) {
  Config config = base;
  for (const auto& o : optimizer.overrides) apply_override(config, o);
  config.optim.muon.lr = lr;
  for (double* group_lr : {&config.optim.adam.embed_lr, &config.optim.adam.head_lr, &config.optim.adam.scalar_lr,
                           &config.optim.adam.matrix_lr})
    *group_lr = lr;
  config.train.steps = steps;
  torch::manual_seed(seed);
  auto model = make_problem(problem, steps);
  Optimizer opt(*model, config, nullptr);
  auto full = [&] {
    torch::NoGradGuard no_grad;
    const double loss = model->full_loss().item<double>();
    return std::isfinite(loss) ? loss : std::numeric_limits<double>::infinity();
  };
  std::vector<double> losses{full()};
  for (int64_t t = 0; t < steps && std::isfinite(losses.back()); ++t) {
    opt.zero_grad();
    auto loss = model->loss(t);
    loss.backward();
    opt.step(t, loss.item<double>());
    losses.push_back(full());
  }
  losses.resize(steps + 1, std::numeric_limits<double>::infinity());  // diverged: the rest is infinite
  return losses;
}

std::string run_toy_comparison(const ToyOptions& options) {
  const Config base = load_config(options.config_files, options.overrides);
  const auto problems = options.problems.empty() ? toy_problems() : options.problems;
  std::vector<ToyOptimizer> optimizers;
  if (options.optimizers.empty()) optimizers = toy_optimizers();
  for (const auto& name : options.optimizers) optimizers.push_back(find_named(toy_optimizers(), name, "optimizer"));
  std::ofstream csv;
  if (!options.csv.empty()) {
    csv.open(options.csv);
    if (!csv) throw std::runtime_error("cannot write " + options.csv);
    csv << "problem,optimizer,lr,initial_loss,final_loss\n";
  }
  struct Best {
    double loss = std::numeric_limits<double>::infinity(), lr = 0, initial = 0;
  };
  std::map<std::pair<std::string, std::string>, Best> best;  // (problem, optimizer)
  for (const auto& problem : problems) {
    for (const auto& optimizer : optimizers) {
      for (double lr : options.lrs) {
        const auto losses = run_toy(problem, optimizer, base, lr, options.steps, options.seed);
        if (csv) csv << fmt::format("{},{},{},{},{}\n", problem, optimizer.name, lr, losses.front(), losses.back());
        auto& b = best[{problem, optimizer.name}];
        b.initial = losses.front();
        if (losses.back() < b.loss) b = {losses.back(), lr, losses.front()};
      }
      spdlog::debug("toy {} {}: best loss {} at lr {}", problem, optimizer.name, best[{problem, optimizer.name}].loss,
                    best[{problem, optimizer.name}].lr);
    }
  }
  std::string table = "| optimizer |";
  std::string rule = "|---|";
  for (const auto& problem : problems) {
    table += " " + problem + " |";
    rule += "---|";
  }
  table += "\n" + rule + "\n| (initial loss) |";
  for (const auto& problem : problems) table += fmt::format(" {:.4g} |", best[{problem, optimizers.front().name}].initial);
  for (const auto& optimizer : optimizers) {
    table += "\n| " + optimizer.name + " |";
    for (const auto& problem : problems) {
      const auto& b = best[{problem, optimizer.name}];
      table += std::isfinite(b.loss) ? fmt::format(" {:.4g} (lr {:g}) |", b.loss, b.lr) : std::string(" diverged |");
    }
  }
  return table + fmt::format("\n\nFinal training loss after {} steps at the best lr of {}; seed {}.\n", options.steps,
                             fmt::join(options.lrs, ", "), options.seed);
}

}  // namespace muonrun

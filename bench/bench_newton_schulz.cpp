// Newton-Schulz over every hidden matrix of a model: the time of one pass,
// its FLOP rate, and what one rank of an owner-distributed run computes
// (from the ownership plan, at the measured rate). Side by side in one run:
// one call per matrix against one batched call per size class (what Muon
// runs, optim/muon.h), and AdamW parameter by parameter (advance + apply, the
// ablations' path) against its fused multi-tensor step (optim/adamw.h), over
// the recipe's AdamW parameters and over all parameters.
//
//   bench_newton_schulz [--config FILE] [--set key=value ...] [--ranks 8] [--repeats 5]
//
// On CUDA the matrices are multiplied in bf16 (as Muon does); on the CPU in
// fp32. Prints one line per figure.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>

#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/muon_ownership.h"
#include "optim/newton_schulz.h"
#include "optim/param_groups.h"
#include "trainer/config/config.h"
#include "trainer/run/device.h"
#include "trainer/run/train_step.h"

using namespace muonrun;

int main(int argc, char** argv) {
  CLI::App app{"Newton-Schulz benchmark"};
  std::vector<std::string> files, overrides;
  int ranks = 8, repeats = 5;
  app.add_option("-c,--config", files, "YAML config (model section used)");
  app.add_option("--set", overrides, "override a key");
  app.add_option("--ranks", ranks, "ranks for the owner-distributed figure");
  app.add_option("--repeats", repeats, "timed passes (after one warm-up)");
  CLI11_PARSE(app, argc, argv);

  const Config config = load_config(files, overrides);
  const auto device = resolve_device(config.run.device, 0);
  configure_host(config.run.cpu_threads, 1);
  const auto dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  const LanguageModel model = make_model(config, device);
  auto matrices = group_parameters(*model).matrices;
  std::vector<torch::Tensor> inputs;
  std::vector<MatrixShape> shapes;
  double flops = 0;
  for (const auto& m : matrices) {
    inputs.push_back(torch::randn_like(m.tensor));
    shapes.push_back({m.tensor.size(0), m.tensor.size(1)});
    flops += newton_schulz_flops(shapes.back(), config.optim.muon.ns_steps);
  }
  const auto schedule = quintic_schedule();
  // Median ms of `repeats` runs of `f` after one warm-up (allocations, kernel selection).
  auto time = [&](const std::function<void()>& f) {
    f();
    synchronize(device);
    std::vector<double> ms;
    for (int i = 0; i < repeats; ++i) {
      const auto start = std::chrono::steady_clock::now();
      f();
      synchronize(device);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms;
  };
  const auto ms = time([&] {
    for (const auto& g : inputs) newton_schulz(g, config.optim.muon.ns_steps, schedule, dtype);
  });
  const double median = ms[ms.size() / 2];
  // The same matrices stacked by size class (tall ones transposed), stacking included.
  std::map<std::pair<int64_t, int64_t>, std::vector<torch::Tensor>> classes;
  for (const auto& g : inputs) {
    const auto key = muon_size_class(g.size(0), g.size(1));
    classes[key].push_back(g.size(0) > g.size(1) ? g.t() : g);
  }
  const auto batched_ms = time([&] {
    for (const auto& [key, members] : classes)
      newton_schulz(torch::stack(members), config.optim.muon.ns_steps, schedule, dtype);
  });
  const double batched_median = batched_ms[batched_ms.size() / 2];
  std::string class_list;
  for (const auto& [key, members] : classes)
    class_list += (class_list.empty() ? "" : ", ") + std::to_string(members.size()) + " x " +
                  std::to_string(key.first) + "x" + std::to_string(key.second);

  // AdamW over a parameter set, per parameter and fused, on random gradients.
  auto adamw_figures = [&](const std::vector<NamedParam>& params) {
    std::vector<NamedParam> copies;
    int64_t numel = 0;
    for (const auto& p : params) {
      copies.push_back({p.name, p.tensor.detach().clone()});
      copies.back().tensor.mutable_grad() = torch::randn_like(p.tensor) * 1e-3;
      numel += p.tensor.numel();
    }
    AdamW adam({{"all", 1e-4, copies}}, config.optim.adam);
    const auto per_param = time([&] {
      adam.advance();
      adam.apply(1.0, BackupNorm::ada_inf, {}, {});
    });
    const auto fused = time([&] { adam.step(1.0); });
    return std::make_tuple(copies.size(), numel, per_param[per_param.size() / 2], fused[fused.size() / 2]);
  };
  const auto groups = group_parameters(*model);
  std::vector<NamedParam> recipe_adam;
  for (const auto* g : {&groups.embeddings, &groups.heads, &groups.scalars})
    recipe_adam.insert(recipe_adam.end(), g->begin(), g->end());
  std::vector<NamedParam> everything = recipe_adam;
  everything.insert(everything.end(), matrices.begin(), matrices.end());
  const double rate = flops / (median / 1e3);
  const auto plan = plan_muon_ownership(shapes, ranks, config.optim.muon.ns_steps);
  const auto [lo, hi] = std::minmax_element(plan.flops_per_rank.begin(), plan.flops_per_rank.end());

  std::printf("device                      %s (%s)\n", device.str().c_str(), c10::toString(dtype));
  std::printf("matrices                    %zu, %.1f GFLOP per pass (%lld steps, recipe FLOP count)\n",
              matrices.size(), flops / 1e9, static_cast<long long>(config.optim.muon.ns_steps));
  std::printf("one pass, all matrices      %.2f ms (median of %d; min %.2f, max %.2f)\n", median, repeats, ms.front(),
              ms.back());
  std::printf("rate                        %.2f TFLOP/s\n", rate / 1e12);
  std::printf("batched by size class       %.2f ms (median of %d; %s): per-matrix / batched = %.2f\n",
              batched_median, repeats, class_list.c_str(), median / batched_median);
  for (const auto& [what, params] : {std::pair<const char*, const std::vector<NamedParam>*>{"recipe's AdamW set", &recipe_adam},
                                     {"all parameters     ", &everything}}) {
    const auto [count, numel, per_param, fused] = adamw_figures(*params);
    std::printf("adamw, %s     %zu tensors, %.1fM values: per parameter %.2f ms, fused %.2f ms: ratio %.2f\n", what,
                count, static_cast<double>(numel) / 1e6, per_param, fused, per_param / fused);
  }
  std::printf("owner pass at %d ranks       max %.1f GFLOP, min %.1f GFLOP per rank -> %.2f ms per rank at this rate (%.1f%% of one rank's full pass)\n",
              ranks, *hi / 1e9, *lo / 1e9, *hi / rate * 1e3, 100.0 * *hi / flops);
  return 0;
}

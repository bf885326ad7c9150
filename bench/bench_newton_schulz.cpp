// Newton-Schulz over every hidden matrix of a model: the time of one pass,
// its FLOP rate, and what one rank of an owner-distributed run computes
// (from the ownership plan, at the measured rate).
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

#include "models/gpt.h"
#include "optim/muon_ownership.h"
#include "optim/newton_schulz.h"
#include "optim/param_groups.h"
#include "trainer/config/config.h"
#include "trainer/run/device.h"

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
  GPT model(config.model);
  model->to(device);
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
  auto pass = [&] {
    for (const auto& g : inputs) newton_schulz(g, config.optim.muon.ns_steps, schedule, dtype);
    synchronize(device);
  };
  pass();  // warm-up: allocations, kernel selection
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    pass();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  const double rate = flops / (median / 1e3);
  const auto plan = plan_muon_ownership(shapes, ranks, config.optim.muon.ns_steps);
  const auto [lo, hi] = std::minmax_element(plan.flops_per_rank.begin(), plan.flops_per_rank.end());

  std::printf("device                      %s (%s)\n", device.str().c_str(), c10::toString(dtype));
  std::printf("matrices                    %zu, %.1f GFLOP per pass (%lld steps, recipe FLOP count)\n",
              matrices.size(), flops / 1e9, static_cast<long long>(config.optim.muon.ns_steps));
  std::printf("one pass, all matrices      %.2f ms (median of %d; min %.2f, max %.2f)\n", median, repeats, ms.front(),
              ms.back());
  std::printf("rate                        %.2f TFLOP/s\n", rate / 1e12);
  std::printf("owner pass at %d ranks       max %.1f GFLOP, min %.1f GFLOP per rank -> %.2f ms per rank at this rate (%.1f%% of one rank's full pass)\n",
              ranks, *hi / 1e9, *lo / 1e9, *hi / rate * 1e3, 100.0 * *hi / flops);
  return 0;
}

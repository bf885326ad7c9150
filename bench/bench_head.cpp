// The language-model head of a config (lm_head + soft-cap + cross-entropy,
// forward and backward, models/chunked_head.h) for one micro-batch: the
// composite and the blocked soft-capped cross-entropy side by side, at the
// model's chunk size and at smaller ones, interleaved so that a busy machine
// slows all alike.
//
//   bench_head [--config FILE] [--set key=value ...] [--repeats 5]
//
// CPU only (blocked is the CPU implementation). Prints the median ms of each
// variant and its ratio to the composite one at the model's chunk size.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "models/chunked_head.h"
#include "models/gpt.h"
#include "trainer/config/config.h"
#include "trainer/run/device.h"

using namespace muonrun;

namespace {

struct Variant {
  const char* name;
  SoftcapCrossEntropy how;
  int64_t chunk_logits;  // logits per chunk
  std::vector<double> ms;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Language-model head benchmark (CPU)"};
  std::vector<std::string> files, overrides;
  int repeats = 5;
  app.add_option("-c,--config", files, "YAML config (model and train.micro_batch used)");
  app.add_option("--set", overrides, "override a key");
  app.add_option("--repeats", repeats, "timed passes of each variant (after one warm-up)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  const Config config = load_config(files, overrides);
  configure_host(config.run.cpu_threads, 1);
  const int64_t N = config.train.micro_batch * config.model.seq_len, D = config.model.dim;
  const int64_t V = padded_vocab(config.model);
  torch::manual_seed(0);
  auto hidden = torch::randn({N, D}).requires_grad_();
  auto weight = (torch::randn({V, D}) * 0.02).requires_grad_();
  auto targets = torch::randint(V, {N}, torch::kLong);
  const int64_t model_chunk = int64_t{1} << 26;  // as models/gpt.cpp
  std::vector<Variant> variants = {
      {"composite", SoftcapCrossEntropy::composite, model_chunk, {}},
      {"blocked", SoftcapCrossEntropy::blocked, model_chunk, {}},
      {"composite", SoftcapCrossEntropy::composite, model_chunk / 4, {}},
      {"blocked", SoftcapCrossEntropy::blocked, model_chunk / 4, {}},
      {"blocked", SoftcapCrossEntropy::blocked, model_chunk / 16, {}},
  };
  auto run = [&](const Variant& v) {
    hidden.mutable_grad() = torch::Tensor();
    weight.mutable_grad() = torch::Tensor();
    const int64_t chunk_tokens = std::max<int64_t>(1, v.chunk_logits / V);
    chunked_head_loss(hidden, weight, targets, config.model.logit_softcap, chunk_tokens, v.how).backward();
  };
  std::printf("bench_head: %lld tokens x dim %lld x vocab %lld, soft-cap %g, %d threads\n",
              static_cast<long long>(N), static_cast<long long>(D), static_cast<long long>(V),
              config.model.logit_softcap, at::get_num_threads());
  for (auto& v : variants) run(v);  // warm-up
  for (int r = 0; r < repeats; ++r) {
    for (auto& v : variants) {
      const auto start = std::chrono::steady_clock::now();
      run(v);
      v.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  }
  const double reference = median(variants[0].ms);
  for (const auto& v : variants)
    std::printf("%-10s chunk 2^%-2d logits (%5lld tokens): median %8.1f ms  %.2fx composite at 2^26\n", v.name,
                static_cast<int>(std::log2(static_cast<double>(v.chunk_logits))),
                static_cast<long long>(std::max<int64_t>(1, v.chunk_logits / V)), median(v.ms),
                reference / median(v.ms));
  return 0;
}

// The language-model head of a config (lm_head + soft-cap + cross-entropy,
// forward and backward) for one micro-batch, three ways, interleaved so that
// a busy machine slows all alike:
// - autograd of the plain ops on whole logits (what the head was before
//   models/chunked_head.h, and what its tests compare with);
// - the chunked head (models/chunked_head.h) with its element-wise work in
//   LibTorch ops (models/softcap_cross_entropy.h, `model.kernels: reference`);
// - the chunked head with the one-pass CPU loop
//   (models/softcap_cross_entropy_cpu.h, `fused`; LibTorch's ops on CUDA);
// - the chunked head's three matrix products alone: what is left when the
//   element-wise work costs nothing.
//
//   bench_head [--config FILE] [--set key=value ...] [--repeats 5] [--chunk-tokens N]
//
// Prints the median ms of each and its ratio to the first.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "models/chunked_head.h"
#include "models/gpt.h"
#include "trainer/config/config.h"
#include "trainer/run/device.h"

using namespace muonrun;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Language-model head benchmark"};
  std::vector<std::string> files, overrides;
  int repeats = 5;
  int64_t chunk_tokens = 0;
  app.add_option("-c,--config", files, "YAML config (model, train.micro_batch and run.device used)");
  app.add_option("--set", overrides, "override a key");
  app.add_option("--repeats", repeats, "timed passes of each variant (after one warm-up)")->check(CLI::PositiveNumber);
  app.add_option("--chunk-tokens", chunk_tokens, "tokens per chunk (default: 2^26 logits, as GPTImpl::loss)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  const Config config = load_config(files, overrides);
  const auto device = resolve_device(config.run.device, 0);
  configure_host(config.run.cpu_threads, 1);
  const int64_t N = config.train.micro_batch * config.model.seq_len, D = config.model.dim;
  const int64_t V = padded_vocab(config.model);
  const double cap = config.model.logit_softcap;
  const int64_t chunk = chunk_tokens > 0 ? chunk_tokens : std::max<int64_t>(1, (int64_t{1} << 26) / V);
  const auto dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  torch::manual_seed(0);
  auto opts = torch::TensorOptions().device(device);
  auto hidden = torch::randn({N, D}, opts.dtype(dtype)).requires_grad_();
  auto weight = (torch::randn({V, D}, opts) * 0.02).requires_grad_();
  auto targets = torch::randint(V, {N}, opts.dtype(torch::kLong));
  auto reset = [&] {
    hidden.mutable_grad() = torch::Tensor();
    weight.mutable_grad() = torch::Tensor();
  };
  struct Variant {
    const char* name;
    std::function<void()> run;
    std::vector<double> ms;
  };
  std::vector<Variant> variants = {
      {"plain ops, whole logits",
       [&] {
         auto logits = torch::nn::functional::linear(hidden, weight.to(dtype)).to(torch::kFloat);
         if (cap > 0) logits = cap * torch::tanh(logits / cap);
         torch::nn::functional::cross_entropy(logits, targets).backward();
       },
       {}},
      {"chunked head, LibTorch ops",
       [&] { chunked_head_loss(hidden, weight, targets, cap, chunk, /*fused=*/false).backward(); },
       {}},
      {"chunked head, fused",
       [&] { chunked_head_loss(hidden, weight, targets, cap, chunk, /*fused=*/true).backward(); },
       {}},
      {"its matrix products alone",
       [&] {
         torch::NoGradGuard no_grad;
         auto w = weight.to(dtype);
         auto grad_w = torch::zeros({V, D}, opts.dtype(dtype));
         for (int64_t start = 0; start < N; start += chunk) {
           auto h = hidden.narrow(0, start, std::min(chunk, N - start));
           auto g = torch::mm(h, w.t());  // the gradient has the logits' shape
           auto grad_h = torch::mm(g, w);
           grad_w.addmm_(g.t(), h);
         }
       },
       {}},
  };
  std::printf("bench_head: %lld tokens x dim %lld x vocab %lld, soft-cap %g, chunks of %lld tokens, %s, %d threads\n",
              static_cast<long long>(N), static_cast<long long>(D), static_cast<long long>(V), cap,
              static_cast<long long>(chunk), device.str().c_str(), at::get_num_threads());
  for (auto& v : variants) {  // warm-up
    reset();
    v.run();
  }
  for (int r = 0; r < repeats; ++r) {
    for (auto& v : variants) {
      reset();
      synchronize(device);
      const auto start = std::chrono::steady_clock::now();
      v.run();
      synchronize(device);
      v.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  }
  const double first = median(variants[0].ms);
  for (const auto& v : variants)
    std::printf("%-30s median %8.1f ms  %.2fx faster than the plain ops\n", v.name, median(v.ms), first / median(v.ms));
  return 0;
}

// The language-model head of a config (lm_head + soft-cap + cross-entropy,
// forward and backward) for one micro-batch, four ways, interleaved so that
// a busy machine slows all alike:
// - autograd of the plain ops on whole logits (what the head was before
//   models/chunked_head.h, and what its tests compare with);
// - the chunked head (models/chunked_head.h) with its element-wise work in
//   LibTorch ops (models/softcap_cross_entropy.h, `model.kernels: reference`);
// - the chunked head fused (`model.kernels: fused`): the one-pass CPU loop
//   (models/softcap_cross_entropy_cpu.h) on the CPU, the kernel of
//   models/softcap_cross_entropy.cu on CUDA;
// - the chunked head's three matrix products alone: what is left when the
//   element-wise work costs nothing.
// First it prints the bytes the two chunked forms move per token on CUDA in
// bf16 (the speedrun's case), pass by pass, from the config's sizes.
//
//   bench_head [--config FILE] [--set key=value ...] [--repeats 5] [--chunk-tokens N]
//
// Prints the median ms of each and its ratio to the first; on CUDA also the
// bandwidth the byte counts imply for the two chunked forms.
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

// What one pass of the chunked head moves in memory, reads plus writes, in
// bytes: per logit of a chunk, per element of the head weight [V, D] once per
// chunk, and per weight element once per call. Not counted: the hidden
// states (2 D bytes per token for each product that reads or writes them)
// and per-row values (targets, maxima, sums), D + O(1) per token against V.
struct Pass {
  const char* what;
  double per_logit, per_weight_chunk, per_weight_call;
};

// In bf16 on CUDA. Today's form (LibTorch ops: models/softcap_cross_entropy.cpp
// and the products in models/chunked_head.cpp), one line per kernel LibTorch
// launches over a chunk; gather and scatter_add touch one value per row.
const std::vector<Pass> kLibTorchOps = {
    {"weight cast to bf16", 0, 0, 4 + 2},
    {"grad_weight zero-filled", 0, 0, 4},
    {"logits = h W^T, bf16 (W read)", 2, 2, 0},
    {"their fp32 copy", 2 + 4, 0, 0},
    {"t = l / cap", 4 + 4, 0, 0},
    {"tanh", 4 + 4, 0, 0},
    {"max over the row", 4, 0, 0},
    {"t - max, into scratch", 4 + 4, 0, 0},
    {"times cap", 4 + 4, 0, 0},
    {"exp", 4 + 4, 0, 0},
    {"sum over the row", 4, 0, 0},
    {"e / sum", 4 + 4, 0, 0},
    {"t^2", 4 + 4, 0, 0},
    {"e - e t^2 (addcmul)", 4 + 4 + 4, 0, 0},
    {"gradient cast to bf16", 4 + 2, 0, 0},
    {"grad_hidden = g W (g, W read)", 2, 2, 0},
    {"g^T h, a bf16 [V, D] (g read)", 2, 2, 0},
    {"its fp32 copy", 0, 2 + 4, 0},
    {"grad_weight += it", 0, 4 + 4 + 4, 0},
};
// The kernel form (models/softcap_cross_entropy.cu): the product's bf16
// output is the kernel's input, and its gradient, in place; grad_weight takes
// the last product in fp32 (cuBLAS beta = 1: read and written once).
const std::vector<Pass> kKernel = {
    {"weight cast to bf16", 0, 0, 4 + 2},
    {"grad_weight zero-filled", 0, 0, 4},
    {"logits = h W^T into the bf16 buffer (W read)", 2, 2, 0},
    {"kernel: first read (max, sum of exp)", 2, 0, 0},
    {"kernel: second read, bf16 gradient written", 2 + 2, 0, 0},
    {"grad_hidden = g W (g, W read)", 2, 2, 0},
    {"grad_weight += g^T h in fp32 (g read)", 2, 4 + 4, 0},
};

// Prints a form's passes and returns its bytes per token: per logit x V, per
// weight element x V D x (chunks per call, or 1) / tokens per call.
double print_bytes(const char* form, const std::vector<Pass>& passes, int64_t N, int64_t V, int64_t D,
                   int64_t chunk) {
  const double chunks = static_cast<double>((N + chunk - 1) / chunk);
  const double weight = static_cast<double>(V) * static_cast<double>(D);
  std::printf("  %s\n    %-48s %8s %14s %13s\n", form, "pass", "B/logit", "B/weight/chunk", "B/weight/call");
  double per_logit = 0, per_chunk = 0, per_call = 0;
  for (const auto& p : passes) {
    std::printf("    %-48s %8g %14g %13g\n", p.what, p.per_logit, p.per_weight_chunk, p.per_weight_call);
    per_logit += p.per_logit;
    per_chunk += p.per_weight_chunk;
    per_call += p.per_weight_call;
  }
  const double per_token = per_logit * static_cast<double>(V) + (per_chunk * chunks + per_call) * weight / N;
  std::printf("    %-48s %8g %14g %13g  -> %.3f MB per token, %.1f GB per call\n", "total", per_logit, per_chunk,
              per_call, per_token / 1e6, per_token * N / 1e9);
  return per_token;
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
  std::printf("bench_head: %lld tokens x dim %lld x vocab %lld, soft-cap %g, chunks of %lld tokens, %s, %d threads\n",
              static_cast<long long>(N), static_cast<long long>(D), static_cast<long long>(V), cap,
              static_cast<long long>(chunk), device.str().c_str(), at::get_num_threads());
  std::printf("bytes moved per token in bf16 on CUDA (reads + writes of each pass: per logit x V, per head-weight\n"
              "element x V x D x chunks / tokens; hidden states and per-row values not counted):\n");
  const double ops_bytes = print_bytes("LibTorch ops (model.kernels: reference)", kLibTorchOps, N, V, D, chunk);
  const double kernel_bytes = print_bytes("kernel (model.kernels: fused)", kKernel, N, V, D, chunk);
  std::printf("  the kernel form moves %.2fx the bytes of the LibTorch ops\n", kernel_bytes / ops_bytes);
  struct Variant {
    const char* name;
    std::function<void()> run;
    double bytes_per_token;  // on CUDA, where the counts above describe it; 0 otherwise
    std::vector<double> ms;
  };
  const bool counted = device.is_cuda();
  std::vector<Variant> variants = {
      {"plain ops, whole logits",
       [&] {
         auto logits = torch::nn::functional::linear(hidden, weight.to(dtype)).to(torch::kFloat);
         if (cap > 0) logits = cap * torch::tanh(logits / cap);
         torch::nn::functional::cross_entropy(logits, targets).backward();
       },
       0,
       {}},
      {"chunked head, LibTorch ops",
       [&] { chunked_head_loss(hidden, weight, targets, cap, chunk, /*fused=*/false).backward(); },
       counted ? ops_bytes : 0,
       {}},
      {"chunked head, fused",
       [&] { chunked_head_loss(hidden, weight, targets, cap, chunk, /*fused=*/true).backward(); },
       counted ? kernel_bytes : 0,
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
       0,
       {}},
  };
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
  for (const auto& v : variants) {
    std::printf("%-30s median %8.1f ms  %.2fx faster than the plain ops", v.name, median(v.ms), first / median(v.ms));
    if (v.bytes_per_token > 0) std::printf("  (%.0f GB/s counted)", v.bytes_per_token * N / (median(v.ms) * 1e6));
    std::printf("\n");
  }
  return 0;
}

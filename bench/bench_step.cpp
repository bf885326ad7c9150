// The training step as `muonrun train` runs it, timed: model, optimizer and
// data built as training builds them (trainer/run/train_step.h), W warm-up steps,
// then N timed optimizer steps.
//
//   bench_step -c configs/quickstart.yaml [-c more.yaml] [--set key=value ...]
//              [--steps 20] [--warmup 5] [--json FILE] [--out-md FILE]
//              [--matmul-size N] [--matmul-repeats 5]
//
// Prints (rank 0; under torchrun/mpirun every rank steps, as in training):
//   step time     median ms per optimizer step (host clock around the step,
//                 device synchronised before and after), mean, min, max and
//                 slowest / median
//   tokens/s      train.batch_tokens / median step (all ranks together)
//   matmul peak   the measured matmul rate MFU is taken against: bf16
//                 8192^3 on CUDA, fp32 2048^3 on the CPU, best of R repeats
//   MFU           tokens/s per rank x FLOPs per token / matmul peak, with
//                 FLOPs per token = 6N + 6LCT (llm.c): N the parameters that
//                 take part in matrix products, i.e. all but the input
//                 embeddings (record 11's wte; record 29's embed and
//                 value_embeds; the head is counted: llm.c's N counts its
//                 tied wte/head matrix once; record 11 has no wpe), C =
//                 heads x head_dim, and LT the keys a query attends to summed
//                 over layers: record 11, layers x seq_len; record 29, each
//                 attention layer's window + 1 at the schedule's last entry,
//                 at most seq_len (models/language_model.h: FlopsPerToken)
//   peak memory   CUDA: the caching allocator's peak allocated bytes (and
//                 peak reserved); CPU: peak RSS of the process (getrusage)
//   settings      model.kernels (auto: fused on the CPU, the reference ops on
//                 CUDA; models/model_config.h) and whether the micro-step ran
//                 as a CUDA graph (train.cuda_graphs)
//   phases        mean ms per step of data / forward / backward /
//                 newton_schulz / adamw / comm_wait (trainer/base/phase_timer.h:
//                 CUDA events on the GPU, steady_clock on the CPU) and the
//                 rest of the step ("other": host gaps, the finite-gradient
//                 check, launch overhead); the JSON also gives each as a
//                 share of the mean step (phase_share)
//
// launch/gpu_check.sh runs it once per setting and bench/step_table.py puts
// the JSON reports side by side.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <ATen/DeviceAccelerator.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>

#include "comm/launch.h"
#include "comm/world.h"
#include "trainer/config/config.h"
#include "trainer/run/device.h"
#include "trainer/base/json.h"
#include "trainer/run/phase_timer.h"
#include "trainer/run/train_step.h"

using namespace muonrun;
using muonrun::json::quote;

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct MatmulPeak {
  std::string dtype;
  int64_t size = 0;
  double best_tflops = 0, median_tflops = 0;
  int repeats = 0;
};

// n^3 matrix products: bf16 on CUDA (tensor cores, what the speedrun's
// forward and Newton-Schulz use), fp32 on the CPU. Each repeat times a few
// products between device synchronisations.
MatmulPeak measure_matmul_peak(const torch::Device& device, int64_t n, int repeats) {
  torch::NoGradGuard no_grad;
  const auto dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  auto options = torch::dtype(dtype).device(device);
  auto a = torch::randn({n, n}, options), b = torch::randn({n, n}, options), c = torch::empty({n, n}, options);
  const double flops = 2.0 * static_cast<double>(n) * n * n;
  const int per_repeat = device.is_cuda() ? 20 : 1;
  for (int i = 0; i < (device.is_cuda() ? 10 : 1); ++i) torch::mm_out(c, a, b);  // warm-up: cuBLAS heuristics, clocks
  synchronize(device);
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (int i = 0; i < per_repeat; ++i) torch::mm_out(c, a, b);
    synchronize(device);
    rates.push_back(flops * per_repeat / (ms_since(start) / 1e3) / 1e12);
  }
  return {device.is_cuda() ? "bf16" : "fp32", n, *std::max_element(rates.begin(), rates.end()), median(rates), repeats};
}

struct Memory {
  double peak_bytes = 0;
  double reserved_bytes = 0;  // CUDA only
  std::string kind;
};

Memory peak_memory(const torch::Device& device) {
  if (device.is_cuda()) {
    const auto stats = at::accelerator::getDeviceStats(device.index());
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return {static_cast<double>(stats.allocated_bytes[all].peak),
            static_cast<double>(stats.reserved_bytes[all].peak), "CUDA caching allocator peak allocated"};
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return {static_cast<double>(usage.ru_maxrss) * 1024.0, 0, "peak RSS (getrusage)"};
}

std::string thousands(double value) {
  auto digits = fmt::format("{:.0f}", value);
  std::string out;
  const int n = static_cast<int>(digits.size());
  for (int i = 0; i < n; ++i) {
    out += digits[i];
    if (digits[i] != '-' && (n - 1 - i) % 3 == 0 && i != n - 1) out += ',';
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_step: time the training step of a config"};
  std::vector<std::string> files, overrides;
  int steps = 20, warmup = 5, matmul_repeats = 5;
  int64_t matmul_size = 0;
  std::string json_path, md_path;
  app.add_option("-c,--config", files, "YAML config (repeatable; later wins)")->check(CLI::ExistingFile);
  app.add_option("--set", overrides, "override one key: --set train.micro_batch=32")->type_name("KEY=VALUE");
  app.add_option("--steps", steps, "timed optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--json", json_path, "also write the figures as JSON");
  app.add_option("--out-md", md_path, "also write the figures as a Markdown table");
  app.add_option("--matmul-size", matmul_size, "n of the n^3 peak matmul (default: 8192 CUDA, 2048 CPU)");
  app.add_option("--matmul-repeats", matmul_repeats, "timed repeats of the peak matmul")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const Config config = load_config(files, overrides);
    const LaunchInfo launch = detect_launch();
    spdlog::set_level(launch.rank == 0 ? spdlog::level::warn : spdlog::level::err);
    const torch::Device device = resolve_device(config.run.device, launch.local_rank);
    configure_host(config.run.cpu_threads, launch.local_size);
    World world(launch, device, std::chrono::milliseconds(static_cast<int64_t>(config.comm.timeout_s * 1000)));
    Communicator* comm = world.comm();
    const bool lead = world.rank() == 0;

    LanguageModel model = make_model(config, device);
    const BatchPlan plan = plan_batches(config, world.size(), model->layout());
    if (comm) {  // every rank starts from rank 0's weights, as in training
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) comm->broadcast(p, 0)->wait();
    }
    Optimizer optimizer(*model, config, comm);
    const auto data = make_training_batches(config, model->layout(), plan.train_shape(), world.rank(), world.size());
    auto timer = make_phase_timer(device);
    auto graph = make_micro_step_graph(config, comm, *model, device, plan);
    StepParts parts{*model, optimizer, *data, comm, device, plan, timer.get(), graph.get()};

    int64_t params_total = 0;
    for (const auto& p : model->parameters()) params_total += p.numel();
    const FlopsPerToken flops = model->flops_per_token(config.model.seq_len);  // see the top of this file
    const int64_t params_matmul = flops.matmul_params;
    const double flops_per_token = flops.total();

    if (lead)
      std::fprintf(stderr, "bench_step: %d warm-up + %d timed steps of %lld tokens on %s ...\n", warmup, steps,
                   static_cast<long long>(config.train.batch_tokens), device.str().c_str());
    std::fflush(stderr);
    std::vector<double> step_ms, losses;
    PhaseTimes phase_sum{};
    const int total = warmup + steps;
    const auto bench_start = Clock::now();
    for (int i = 0; i < total; ++i) {
      // The schedule's step: past train.steps the lr would be 0 (or the
      // cooldown's end); a benchmark longer than the run stays on its last step.
      const int64_t step = std::min<int64_t>(i, std::max<int64_t>(0, config.train.steps - 1));
      model->set_progress({step, config.train.steps, config.schedule.extension_steps});
      synchronize(device);
      const auto start = Clock::now();
      const StepResult result = training_step(parts, step);
      synchronize(device);
      const double ms = ms_since(start);
      const PhaseTimes phases = timer->take();
      losses.push_back(result.loss);
      if (i < warmup) continue;
      step_ms.push_back(ms);
      for (size_t k = 0; k < kPhaseCount; ++k) phase_sum[k] += phases[k];
    }
    const double bench_s = ms_since(bench_start) / 1e3;
    const Memory memory = peak_memory(device);  // before the matmul's buffers
    if (matmul_size <= 0) matmul_size = device.is_cuda() ? 8192 : 2048;
    const MatmulPeak peak = measure_matmul_peak(device, matmul_size, std::max(1, matmul_repeats));
    if (!lead) return 0;

    const double med = median(step_ms);
    const double mean = std::accumulate(step_ms.begin(), step_ms.end(), 0.0) / static_cast<double>(step_ms.size());
    const double lo = *std::min_element(step_ms.begin(), step_ms.end());
    const double hi = *std::max_element(step_ms.begin(), step_ms.end());
    const double tokens_per_s = static_cast<double>(config.train.batch_tokens) / (med / 1e3);
    const double achieved_tflops = tokens_per_s / world.size() * flops_per_token / 1e12;
    const double mfu = achieved_tflops / peak.best_tflops;
    PhaseTimes phase_mean{};
    double phases_total = 0;
    for (size_t k = 0; k < kPhaseCount; ++k) {
      phase_mean[k] = phase_sum[k] / static_cast<double>(steps);
      phases_total += phase_mean[k];
    }
    const double other = mean - phases_total;
    bool finite = true;
    for (double l : losses) finite = finite && std::isfinite(l);

    std::string source;
    for (const auto& f : files) source += (source.empty() ? "" : " ") + f;
    for (const auto& o : overrides) source += " --set " + o;
    const std::string model_line =
        fmt::format("{} layers, dim {}, {} x {} heads, seq {}, vocab {}", config.model.layers, config.model.dim,
                    config.model.heads, config.model.head_dim, config.model.seq_len, padded_vocab(config.model));
    const std::string batch_line = fmt::format("{} tokens = {} rank(s) x {} x {} x {} accumulation",
                                               config.train.batch_tokens, world.size(), plan.micro_batch,
                                               plan.seq_len, plan.accumulation);
    const char* kernels = name_of(config.model.kernels);
    const bool cuda_graphs = graph != nullptr;
    const std::string settings_line = fmt::format("model.kernels={}, {}", kernels,
                                                  cuda_graphs ? "micro-step as a CUDA graph" : "eager micro-step");

    // The human table.
    auto row = [](const char* name, const std::string& value) { std::printf("%-15s %s\n", name, value.c_str()); };
    std::printf("bench_step: %s\n", source.c_str());
    row("device", fmt::format("{} ({} rank(s){})", device.str(), world.size(),
                              comm ? ", " + comm->name() : std::string()));
    row("model", model_line);
    row("parameters", fmt::format("{} in all; N = {} (all but the input embeddings) for 6N + 6LCT = {:.1f} MFLOP/token",
                                  thousands(params_total), thousands(params_matmul), flops_per_token / 1e6));
    row("batch", batch_line);
    row("settings", settings_line);
    row("steps", fmt::format("{} timed after {} warm-up ({:.1f} s in all); loss {:.4f} -> {:.4f}{}", steps, warmup,
                             bench_s, losses.front(), losses.back(), finite ? "" : " NOT FINITE"));
    row("step time", fmt::format("median {:.2f} ms (mean {:.2f}, min {:.2f}, max {:.2f}); slowest/median {:.3f}",
                                 med, mean, lo, hi, hi / med));
    row("tokens/s", thousands(tokens_per_s));
    row("matmul peak", fmt::format("{} {}^3: {:.2f} TFLOP/s (best of {}; median {:.2f})", peak.dtype, peak.size,
                                   peak.best_tflops, peak.repeats, peak.median_tflops));
    row("MFU", fmt::format("{:.2f}% ({:.2f} TFLOP/s per rank of 6N + 6LCT against the matmul peak)", 100 * mfu,
                           achieved_tflops));
    row("peak memory", memory.reserved_bytes > 0
                           ? fmt::format("{:.3f} GB ({}; peak reserved {:.3f} GB)", memory.peak_bytes / 1e9,
                                         memory.kind, memory.reserved_bytes / 1e9)
                           : fmt::format("{:.3f} GB ({})", memory.peak_bytes / 1e9, memory.kind));
    std::printf("phases (%s, mean ms per step):\n", timer->clock());
    for (size_t k = 0; k < kPhaseCount; ++k)
      std::printf("  %-14s %10.2f ms  %5.1f%%\n", phase_name(static_cast<Phase>(k)), phase_mean[k],
                  100 * phase_mean[k] / mean);
    std::printf("  %-14s %10.2f ms  %5.1f%%  (mean step - phases)\n", "other", other, 100 * other / mean);

    if (!json_path.empty()) {
      std::ofstream out(json_path);
      if (!out) throw std::runtime_error("cannot write " + json_path);
      std::string phases_json, shares_json, steps_json;
      for (size_t k = 0; k < kPhaseCount; ++k) {
        const char* name = phase_name(static_cast<Phase>(k));
        phases_json += fmt::format("{}\"{}\": {:.4f}", k ? ", " : "", name, phase_mean[k]);
        shares_json += fmt::format("{}\"{}\": {:.6f}", k ? ", " : "", name, phase_mean[k] / mean);
      }
      phases_json += fmt::format(", \"other\": {:.4f}", other);
      shares_json += fmt::format(", \"other\": {:.6f}", other / mean);
      for (size_t i = 0; i < step_ms.size(); ++i) steps_json += fmt::format("{}{:.4f}", i ? ", " : "", step_ms[i]);
      out << "{\n"
          << fmt::format("  \"config\": {},\n", quote(source))
          << fmt::format("  \"device\": {},\n  \"ranks\": {},\n", quote(device.str()), world.size())
          << fmt::format("  \"model\": {},\n  \"batch\": {},\n", quote(model_line), quote(batch_line))
          << fmt::format("  \"kernels\": {},\n  \"cuda_graphs\": {},\n", quote(kernels), cuda_graphs ? "true" : "false")
          << fmt::format("  \"batch_tokens\": {},\n  \"warmup_steps\": {},\n  \"steps\": {},\n",
                         config.train.batch_tokens, warmup, steps)
          << fmt::format("  \"step_ms_median\": {:.4f},\n  \"step_ms_mean\": {:.4f},\n", med, mean)
          << fmt::format("  \"step_ms_min\": {:.4f},\n  \"step_ms_max\": {:.4f},\n", lo, hi)
          << fmt::format("  \"slowest_over_median\": {:.4f},\n", hi / med)
          << fmt::format("  \"tokens_per_s\": {:.1f},\n", tokens_per_s)
          << fmt::format("  \"params_total\": {},\n  \"params_n\": {},\n", params_total, params_matmul)
          << "  \"params_n_is\": \"all parameters but the input embeddings\",\n"
          << fmt::format("  \"flops_per_token\": {:.1f},\n", flops_per_token)
          << fmt::format("  \"achieved_tflops_per_rank\": {:.4f},\n", achieved_tflops)
          << fmt::format("  \"matmul_peak\": {{\"dtype\": {}, \"size\": {}, \"best_tflops\": {:.4f}, "
                         "\"median_tflops\": {:.4f}, \"repeats\": {}}},\n",
                         quote(peak.dtype), peak.size, peak.best_tflops, peak.median_tflops, peak.repeats)
          << fmt::format("  \"mfu\": {:.6f},\n", mfu)
          << fmt::format("  \"peak_memory_bytes\": {:.0f},\n  \"peak_memory_kind\": {},\n", memory.peak_bytes,
                         quote(memory.kind))
          << fmt::format("  \"peak_reserved_bytes\": {:.0f},\n", memory.reserved_bytes)
          << fmt::format("  \"phase_clock\": {},\n  \"phases_ms\": {{{}}},\n", quote(timer->clock()), phases_json)
          << fmt::format("  \"phase_share\": {{{}}},\n", shares_json)
          << fmt::format("  \"loss_first\": {:.6f},\n  \"loss_last\": {:.6f},\n  \"losses_finite\": {},\n",
                         losses.front(), losses.back(), finite ? "true" : "false")
          << fmt::format("  \"step_ms\": [{}]\n", steps_json) << "}\n";
    }
    if (!md_path.empty()) {
      std::ofstream out(md_path);
      if (!out) throw std::runtime_error("cannot write " + md_path);
      out << "| figure | value |\n|---|---|\n"
          << fmt::format("| config | `{}` |\n", source)
          << fmt::format("| device | {} ({} rank(s)) |\n", device.str(), world.size())
          << fmt::format("| model | {} |\n| batch | {} |\n", model_line, batch_line)
          << fmt::format("| settings | {} |\n", settings_line)
          << fmt::format("| steps | {} timed after {} warm-up |\n", steps, warmup)
          << fmt::format("| ms/step (median) | {:.2f} (min {:.2f}, max {:.2f}) |\n", med, lo, hi)
          << fmt::format("| slowest / median | {:.3f} |\n", hi / med)
          << fmt::format("| tokens/s | {} |\n", thousands(tokens_per_s))
          << fmt::format("| matmul peak | {} {}^3: {:.2f} TFLOP/s |\n", peak.dtype, peak.size, peak.best_tflops)
          << fmt::format("| MFU (6N + 6LCT, N = {}) | {:.2f}% |\n", thousands(params_matmul), 100 * mfu)
          << fmt::format("| peak memory | {:.3f} GB ({}) |\n", memory.peak_bytes / 1e9, memory.kind);
      for (size_t k = 0; k < kPhaseCount; ++k)
        out << fmt::format("| {} ms/step | {:.2f} |\n", phase_name(static_cast<Phase>(k)), phase_mean[k]);
      out << fmt::format("| other ms/step | {:.2f} |\n", other);
      out << fmt::format("| loss first -> last | {:.4f} -> {:.4f} |\n", losses.front(), losses.back());
    }
    return finite ? 0 : 4;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_step: %s\n", e.what());
    return 1;
  }
}

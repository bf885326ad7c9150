// Attention over packed documents with a sliding window on the CPU, two ways,
// for growing sequence lengths T (heads 6 x 128, fp32, scale 0.12, window
// 1408 tokens = record 29's long window, documents of 500-1500 tokens):
// - windowed: models/doc_window_attention.h (query blocks against the keys
//   they can see; time and memory grow with T x window);
// - dense mask: at::scaled_dot_product_attention with the (T, T) boolean
//   mask of the same visibility (what the tests compare with; O(T^2)), the
//   mask built once before the timed runs, as a model shares it across layers.
// Forward alone (no autograd graph) and forward + backward (gradients of q,
// k, v). Each measurement runs in a fresh process (this binary again with
// --child), so that its peak memory is its own: the growth of the process's
// peak resident set (VmHWM) over its resident set once q, k, v (and the
// upstream gradient) exist, i.e. the output, the gradients, the mask and
// every temporary.
//
//   bench_doc_attention [--sizes 1024,4096,...] [--dense-max 16384]
//                       [--backward-max 65536] [--repeats 3]
//
// Prints for each: the fastest of the timed runs (after a warm-up run below
// 64K tokens; interference only adds time), the CPU time per run of all its
// threads (user + system; what other processes on a shared machine change
// least), the peak MB; and dense / windowed ratios of CPU time and memory.
#include <CLI/CLI.hpp>
#include <torch/torch.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "models/doc_window_attention.h"

using namespace muonrun;

namespace {

constexpr int64_t kHeads = 6, kHeadDim = 128, kWindow = 1408;
constexpr double kScale = 0.12;

// Offsets of documents of 500-1500 tokens (fixed seed) up to T.
std::vector<int32_t> document_offsets(int32_t T) {
  std::mt19937 rng(0);
  std::uniform_int_distribution<int32_t> length(500, 1500);
  std::vector<int32_t> offsets = {0};
  while (offsets.back() < T) offsets.push_back(std::min(T, offsets.back() + length(rng)));
  return offsets;
}

// The (T, T) visibility: key j is visible to query i iff max(i - window,
// start of i's document) <= j <= i.
torch::Tensor dense_mask(const std::vector<int32_t>& offsets) {
  const int64_t T = offsets.back();
  auto first = torch::empty({T}, torch::kLong);
  auto f = first.accessor<int64_t, 1>();
  for (size_t d = 0; d + 1 < offsets.size(); ++d)
    for (int64_t i = offsets[d]; i < offsets[d + 1]; ++i) f[i] = std::max<int64_t>(i - kWindow, offsets[d]);
  auto pos = torch::arange(T, torch::kLong);
  return pos.unsqueeze(0).ge(first.unsqueeze(1)).logical_and_(pos.unsqueeze(0).le(pos.unsqueeze(1)));
}

double status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(line.find(':') + 1));
  return 0;
}

double cpu_ms() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

// One measurement in this process: prints "<fastest ms> <CPU ms per run>
// <peak growth MB>".
int child(int64_t T, bool dense, bool backward, int repeats) {
  torch::manual_seed(0);
  const auto offsets = document_offsets(static_cast<int32_t>(T));
  auto q = torch::randn({T, kHeads, kHeadDim}).requires_grad_(backward);
  auto k = torch::randn({T, kHeads, kHeadDim}).requires_grad_(backward);
  auto v = torch::randn({T, kHeads, kHeadDim}).requires_grad_(backward);
  auto grad_out = backward ? torch::randn({T, kHeads, kHeadDim}) : torch::Tensor();
  auto cu_seqlens = torch::tensor(offsets, torch::kInt);
  const double baseline_kb = status_kb("VmRSS:");
  const auto mask = dense ? dense_mask(offsets) : torch::Tensor();
  auto run = [&] {
    torch::AutoGradMode grad_mode(backward);
    torch::Tensor out;
    if (dense) {
      auto heads_first = [](const torch::Tensor& x) { return x.transpose(0, 1).unsqueeze(0); };
      out = at::scaled_dot_product_attention(heads_first(q), heads_first(k), heads_first(v), mask, 0.0, false, kScale)
                .squeeze(0)
                .transpose(0, 1);
    } else {
      out = doc_window_attention(q, k, v, cu_seqlens, kWindow, kScale);
    }
    if (backward) {
      out.backward(grad_out);
      for (auto* t : {&q, &k, &v}) t->mutable_grad() = torch::Tensor();
    }
  };
  if (T < 65536) run();
  std::vector<double> ms;
  const double cpu_start = cpu_ms();
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("%.1f %.1f %.1f\n", *std::min_element(ms.begin(), ms.end()), (cpu_ms() - cpu_start) / repeats,
              (status_kb("VmHWM:") - baseline_kb) / 1024);
  return 0;
}

struct Measured {
  double ms = -1, cpu_ms = -1, mb = -1;
};

Measured measure(int64_t T, bool dense, bool backward, int repeats) {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return {};
  exe[n] = '\0';
  const std::string cmd = std::string(exe) + " --child --t " + std::to_string(T) + (dense ? " --dense" : "") +
                          (backward ? " --backward" : "") + " --repeats " + std::to_string(repeats);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {};
  Measured m;
  if (std::fscanf(p, "%lf %lf %lf", &m.ms, &m.cpu_ms, &m.mb) != 3) m = {};
  pclose(p);
  return m;
}

std::string cell(double x, const char* format) {
  if (x < 0) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, x);
  return buf;
}

void print_table(const char* title, const std::vector<int64_t>& sizes, int64_t dense_max, bool backward,
                 int64_t max_size, int repeats) {
  std::printf("\n%s\n", title);
  std::printf("| T | windowed ms | dense ms | windowed CPU ms | dense CPU ms | dense/windowed | windowed peak MB | "
              "dense peak MB | dense/windowed |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t T : sizes) {
    if (T > max_size) continue;
    const Measured w = measure(T, false, backward, repeats);
    const Measured d = T <= dense_max ? measure(T, true, backward, repeats) : Measured{};
    const bool both = w.cpu_ms > 0 && d.cpu_ms > 0;
    std::printf("| %lld | %s | %s | %s | %s | %s | %s | %s | %s |\n", static_cast<long long>(T),
                cell(w.ms, "%.0f").c_str(), cell(d.ms, "%.0f").c_str(), cell(w.cpu_ms, "%.0f").c_str(),
                cell(d.cpu_ms, "%.0f").c_str(), cell(both ? d.cpu_ms / w.cpu_ms : -1, "%.2fx").c_str(),
                cell(w.mb, "%.1f").c_str(), cell(d.mb, "%.1f").c_str(),
                cell(both && w.mb > 0 ? d.mb / w.mb : -1, "%.2fx").c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Windowed attention over packed documents vs a dense mask, on the CPU"};
  std::vector<int64_t> sizes = {1024, 4096, 16384, 65536, 262144};
  int64_t dense_max = 16384, backward_max = 65536, t = 0;
  int repeats = 3;
  bool is_child = false, dense = false, backward = false;
  app.add_option("--sizes", sizes, "sequence lengths T")->delimiter(',');
  app.add_option("--dense-max", dense_max, "largest T for the dense mask");
  app.add_option("--backward-max", backward_max, "largest T for forward + backward");
  app.add_option("--repeats", repeats, "timed runs of each (the fastest counts)")->check(CLI::PositiveNumber);
  auto* child_flag = app.add_flag("--child", is_child, "run one measurement (internal)");
  app.add_option("--t", t)->needs(child_flag);
  app.add_flag("--dense", dense)->needs(child_flag);
  app.add_flag("--backward", backward)->needs(child_flag);
  CLI11_PARSE(app, argc, argv);
  if (is_child) return child(t, dense, backward, repeats);

  std::printf("bench_doc_attention: heads %lld x %lld, fp32, window %lld, documents of 500-1500 tokens, %d threads\n",
              static_cast<long long>(kHeads), static_cast<long long>(kHeadDim), static_cast<long long>(kWindow),
              at::get_num_threads());
  print_table("forward (no autograd graph)", sizes, dense_max, false, std::numeric_limits<int64_t>::max(), repeats);
  print_table("forward + backward", sizes, dense_max, true, backward_max, repeats);
  return 0;
}

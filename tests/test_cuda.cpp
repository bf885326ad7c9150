// What only a GPU can check (built with MUONRUN_WITH_CUDA only; CTest label
// "cuda"). Every test skips without a CUDA device, so a CPU-only machine
// reports them SKIPPED, never passed.
//
//   - the record-11 model in bf16 on CUDA against the same weights in fp32 on
//     the CPU (and fp32 on CUDA, which must match closely), with the
//     reference element-wise ops and with the fused kernels;
//   - each fused element-wise kernel (models/*.cu) against its CPU loop;
//   - the chunked head's soft-capped cross-entropy kernel
//     (models/softcap_cross_entropy.cu) against the CPU loop, and the
//     chunked head with it against float64 on the CPU;
//   - Muon + AdamW steps on CUDA against the CPU from the same gradients;
//   - the NCCL communicator at world size 1 through the real path
//     (torchrun-style environment, detect_launch, World, c10d NCCL);
//   - CUDA-event phase timing and the shared training step;
//   - a short training run through run_training on CUDA;
//   - with 2 or more GPUs: NCCL collectives across 2 processes, and a 2-rank
//     `muonrun train` (owner-distributed Muon over NCCL).
//
// Tolerances (bf16 keeps 8 significant bits: one rounding is a relative
// error of up to 2^-8 = 0.4%; the model rounds activations at every
// layer and the matrices' products accumulate in fp32):
//   loss:       |bf16 - fp32| <= 1% of the fp32 loss
//   gradients:  per tensor ||g_bf16 - g_fp32|| <= 5% of ||g_fp32|| (matrices)
//               or 20% (scalars and vectors: sums over every activation,
//               where cancellation magnifies the rounding), plus 0.1% of the
//               whole gradient's norm for tensors whose gradient is tiny;
//               and the whole gradient's cosine similarity >= 0.995
//               (bf16 against fp32 on the CPU, same model and seeds: loss
//               within 0.005%, matrices within 1.6%, scalars within 8.6%,
//               cosine 0.99997)
//   fp32 on CUDA vs fp32 on the CPU: loss 1e-4 relative, gradients 3e-3
//               (matrices) or 1e-2 (others): summation order only
//   Muon (Newton-Schulz in bf16 on CUDA, fp32 on the CPU: measured 2-3%
//   relative difference of one orthogonalisation, cosine 0.9995): weight
//   change over 3 steps within 10% and cosine >= 0.995; AdamW (fp32 on both):
//   within 1e-4 relative.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "comm/launch.h"
#include "comm/world.h"
#include "models/chunked_head.h"
#include "models/fused_cuda.h"
#include "models/gpt.h"
#include "models/softcap_cross_entropy_cpu.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"
#include "trainer/config/config.h"
#include "trainer/data/data_loader.h"
#include "trainer/run/device.h"
#include "trainer/run/phase_timer.h"
#include "trainer/run/train.h"
#include "trainer/run/train_step.h"
#include "tests/op_check.h"
#include "tests/pattern_shards.h"
#include "tests/run_results.h"
#include "tests/test_helpers.h"

extern char** environ;

using namespace muonrun;
namespace fs = std::filesystem;

namespace {

// --- helpers -------------------------------------------------------------

// A small record-11 GPT: 4 layers (two U-net skips), every kind of parameter.
ModelConfig small_model_config() {
  ModelConfig c;
  c.vocab_size = 200;  // padded to 256
  c.layers = 4;
  c.heads = 2;
  c.head_dim = 32;
  c.dim = 64;
  c.seq_len = 64;
  return c;
}

// Gives the zero-initialised matrices (attention and MLP out-projections,
// lm_head) nn.Linear's init and moves the scalars off their initial values,
// so that every parameter gets a non-trivial gradient.
void randomize(GPT& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& p : model->named_parameters()) {
    auto& t = p.value();
    if (t.dim() == 2 && t.abs().max().item<double>() == 0) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(t.size(1)));
      t.uniform_(-bound, bound);
    } else if (t.dim() < 2) {
      t.add_(0.1 * torch::randn_like(t));
    }
  }
}

// A copy of `from` on `device`, same weights, computing in `dtype`.
GPT copy_model(const GPT& from, const torch::Device& device, torch::ScalarType dtype) {
  GPT to(from->config);
  to->to(device);
  to->set_compute_dtype(dtype);
  torch::NoGradGuard no_grad;
  auto source = from->named_parameters();
  for (auto& p : to->named_parameters()) p.value().copy_(source[p.key()]);
  return to;
}

struct Gradients {
  double loss;
  std::map<std::string, torch::Tensor> grads;  // on the CPU, fp32
};

Gradients loss_and_gradients(GPT& model, const torch::Tensor& x, const torch::Tensor& y) {
  model->zero_grad();
  const auto device = model->parameters().front().device();
  auto loss = model->loss(x.to(device), y.to(device));
  loss.backward();
  Gradients out{loss.item<double>(), {}};
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(p.value().grad().defined()) << p.key();
    if (p.value().grad().defined()) out.grads[p.key()] = p.value().grad().to(torch::kCPU, torch::kFloat);
  }
  return out;
}

double fnorm(const torch::Tensor& t) { return t.to(torch::kDouble).norm().item<double>(); }

torch::Tensor flat(const std::map<std::string, torch::Tensor>& m) {
  std::vector<torch::Tensor> parts;
  for (const auto& [name, t] : m) parts.push_back(t.reshape({-1}).to(torch::kDouble));
  return torch::cat(parts);
}

double cosine(const torch::Tensor& a, const torch::Tensor& b) {
  return (a * b).sum().item<double>() / (fnorm(a) * fnorm(b));
}

// Compares gradients tensor by tensor: matrices within `matrix_rel`, other
// tensors within `other_rel`, each plus `floor_rel` of the whole gradient's norm.
void expect_gradients_near(const Gradients& got, const Gradients& want, double matrix_rel, double other_rel,
                           double floor_rel, double min_cosine) {
  const double total = fnorm(flat(want.grads));
  ASSERT_GT(total, 0);
  for (const auto& [name, g] : want.grads) {
    ASSERT_TRUE(got.grads.count(name)) << name;
    const double diff = fnorm(got.grads.at(name) - g);
    const double rel = g.dim() == 2 ? matrix_rel : other_rel;
    EXPECT_LE(diff, rel * fnorm(g) + floor_rel * total)
        << name << ": |difference| " << diff << ", |reference| " << fnorm(g);
  }
  EXPECT_GE(cosine(flat(got.grads), flat(want.grads)), min_cosine);
}

// Sets a variable for the scope's lifetime, restoring what was there.
class ScopedEnv {
 public:
  void set(const std::string& name, const std::string& value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) setenv(it->first.c_str(), it->second->c_str(), 1);
      else unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A TCP port nobody listens on now (bound to port 0, then released).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// The torchrun-style variables of `rank` out of `size` on this host.
std::vector<std::pair<std::string, std::string>> torchrun_env(int rank, int size, int port) {
  return {{"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(size)},
          {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(size)},
          {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port)}};
}

// Starts `argv` with this process's environment plus `extra`.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env_strings;
  std::set<std::string> overridden;
  for (const auto& [k, v] : extra) {
    env_strings.push_back(k + "=" + v);
    overridden.insert(k);
  }
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    if (!overridden.count(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
  }
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), envp.data()) != 0) return -1;
  return pid;
}

// Waits for every process; kills them all after `timeout`. Exit codes (-1:
// killed or crashed).
std::vector<int> wait_all(const std::vector<pid_t>& pids, std::chrono::seconds timeout) {
  std::vector<int> codes(pids.size(), -2);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t left = pids.size();
  while (left > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (codes[i] != -2) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        --left;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (size_t i = 0; i < pids.size(); ++i)
        if (codes[i] == -2) {
          kill(pids[i], SIGKILL);
          waitpid(pids[i], nullptr, 0);
          codes[i] = -1;
        }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return codes;
}

// The tiny training config of tests/test_train.cpp, on CUDA.
std::vector<std::string> tiny_run_overrides(const fs::path& dir, int steps) {
  return {"model.vocab_size=64", "model.layers=2", "model.heads=2", "model.head_dim=16",
          "model.dim=32", "model.seq_len=32", "train.micro_batch=4",
          "train.batch_tokens=256", "train.steps=" + std::to_string(steps),
          "train.val_every=" + std::to_string(steps / 2), "train.val_tokens=512",
          "train.timing_warmup_steps=0", "train.val_loss_target=0", "optim.adam.embed_lr=0.05",
          "optim.adam.head_lr=0.01", "optim.muon.lr=0.02",
          "data.train=" + (dir / "train_*.bin").string(), "data.val=" + (dir / "val_*.bin").string(),
          "run.dir=" + (dir / "run").string(), "run.log_level=warn", "run.device=cuda"};
}

// --- worker processes of the 2-GPU test ----------------------------------

// One rank of the 2-process collectives test, started by
// CudaTwoRanks.NcclCollectivesAcrossTwoProcesses with MUONRUN_TEST_CUDA_WORKER
// set; returns the exit code.
int collectives_worker() {
  try {
    const LaunchInfo launch = detect_launch();
    const auto device = resolve_device(RunDevice::cuda, launch.local_rank);
    World world(launch, device, std::chrono::seconds(60));
    Communicator* comm = world.comm();
    if (!comm || comm->name() != "nccl" || comm->size() != 2) throw std::runtime_error("no 2-rank NCCL communicator");
    const int r = comm->rank();
    auto options = torch::dtype(torch::kFloat).device(device);
    std::string failures;
    auto expect = [&](const char* what, const torch::Tensor& got, const torch::Tensor& want) {
      if (!torch::allclose(got.to(torch::kCPU), want.to(torch::kCPU), 1e-6, 1e-6))
        failures += std::string(" ") + what;
    };
    auto t = torch::full({4}, static_cast<float>(r + 1), options);
    comm->all_reduce_mean(t)->wait();
    expect("all_reduce_mean", t, torch::full({4}, 1.5f));

    auto input = torch::arange(6, options) + 10.0 * r;  // chunk k: {3k, 3k+1, 3k+2} + 10 r
    auto output = torch::empty({3}, options);
    comm->reduce_scatter_mean(input, output)->wait();
    expect("reduce_scatter_mean", output, torch::arange(3, torch::kFloat) + 3.0 * r + 5.0);

    auto mine = torch::full({3}, static_cast<float>(r), options);
    auto all = torch::empty({2, 3}, options);
    comm->all_gather(mine, all)->wait();
    expect("all_gather", all, torch::tensor({0.f, 0.f, 0.f, 1.f, 1.f, 1.f}).view({2, 3}));

    auto b = torch::full({5}, static_cast<float>(r + 7), options);
    comm->broadcast(b, 1)->wait();
    expect("broadcast", b, torch::full({5}, 8.0f));

    auto d = torch::full({2}, static_cast<double>(r), torch::dtype(torch::kDouble).device(device));
    comm->all_reduce_mean(d)->wait();
    expect("all_reduce_mean (double)", d.to(torch::kFloat), torch::full({2}, 0.5f));

    comm->barrier();
    world.check_same_run(42);
    if (!failures.empty()) {
      std::fprintf(stderr, "rank %d: wrong values from:%s\n", r, failures.c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "collectives worker: %s\n", e.what());
    return 2;
  }
}

}  // namespace

// --- the model -------------------------------------------------------------

TEST(CudaModel, Bf16LossAndGradientsMatchCpuFp32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  GPT cpu(small_model_config());
  randomize(cpu, 1);
  GPT cuda = copy_model(cpu, torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  auto tokens = torch::randint(0, 200, {4, 65}, torch::kLong);
  auto x = tokens.narrow(1, 0, 64), y = tokens.narrow(1, 1, 64);

  const auto want = loss_and_gradients(cpu, x, y);
  const auto got = loss_and_gradients(cuda, x, y);
  EXPECT_TRUE(std::isfinite(got.loss));
  EXPECT_GT(want.loss, 1.0);  // the randomised head is far from uniform, not degenerate
  EXPECT_NEAR(got.loss, want.loss, 0.01 * want.loss);
  expect_gradients_near(got, want, 0.05, 0.20, 1e-3, 0.995);
}

TEST(CudaModel, Fp32OnCudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  GPT cpu(small_model_config());
  randomize(cpu, 2);
  GPT cuda = copy_model(cpu, torch::Device(torch::kCUDA, 0), torch::kFloat);
  auto tokens = torch::randint(0, 200, {4, 65}, torch::kLong);
  auto x = tokens.narrow(1, 0, 64), y = tokens.narrow(1, 1, 64);
  const auto want = loss_and_gradients(cpu, x, y);
  const auto got = loss_and_gradients(cuda, x, y);
  EXPECT_NEAR(got.loss, want.loss, 1e-4 * want.loss);
  expect_gradients_near(got, want, 3e-3, 1e-2, 1e-5, 0.99999);
}

// --- the fused element-wise ops (models/*.cu) --------------------------------
// Each CUDA kernel against the CPU loop (tests/test_fused_ops.cpp checks that
// one against the composite ops), forward and backward (tests/op_check.h), on
// awkward shapes: CUDA fp32 within 1e-5 relative of the CPU fp32 (summation
// order only); CUDA bf16 within 1e-2 of the CPU fp32 on the same rounded
// inputs (a few bf16 roundings, 2^-8 each). Then the whole model with
// model.kernels=fused on CUDA against the CPU, as the reference path above.

TEST(CudaFusedOps, KernelsMatchTheCpuLoops) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const ElementwiseOps ops{true};
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(0);
  struct Case {
    std::string name;
    tests::Op op;
    std::vector<torch::Tensor> inputs;
    std::vector<bool> differentiable;
  };
  std::vector<Case> cases;
  for (auto shape : std::vector<std::vector<int64_t>>{{3, 5, 37}, {7, 768}, {2, 3}})
    cases.push_back({"rms_norm", [&](const std::vector<torch::Tensor>& in) { return std::vector<torch::Tensor>{ops.norm(in[0])}; },
                     {torch::randn(shape, torch::kDouble) * 3}, {true}});
  for (auto [T, D] : std::vector<std::pair<int64_t, int64_t>>{{5, 18}, {33, 128}}) {
    auto freqs = torch::outer(torch::arange(T, torch::kDouble), torch::rand({D / 2}, torch::kDouble));
    cases.push_back({"qk_norm_rotary",
                     [&](const std::vector<torch::Tensor>& in) {
                       return std::vector<torch::Tensor>{ops.qk_norm_rotary(in[0], in[1], in[2])};
                     },
                     {torch::randn({2, T, 3 * D}, torch::kDouble).view({2, T, 3, D}),
                      freqs.cos().view({1, T, 1, D / 2}), freqs.sin().view({1, T, 1, D / 2})},
                     {true, false, false}});
  }
  cases.push_back({"relu_square",
                   [&](const std::vector<torch::Tensor>& in) { return std::vector<torch::Tensor>{ops.relu_square(in[0])}; },
                   {torch::randn({3, 1001}, torch::kDouble)}, {true}});
  const std::vector<int64_t> shape{2, 9, 70};
  const auto mix = [&](bool with_skip) -> tests::Op {
    return [&ops, with_skip](const std::vector<torch::Tensor>& in) {
      auto l = in[3].to(torch::kFloat), s = in[4].to(torch::kFloat)[0];
      auto out = with_skip ? ops.block_input(in[0], in[1], l, in[2], s)
                           : ops.block_input(in[0], in[1], l, torch::Tensor(), torch::Tensor());
      return std::vector<torch::Tensor>{out.x, out.normed};
    };
  };
  const std::vector<torch::Tensor> mix_inputs{torch::randn(shape, torch::kDouble), torch::randn(shape, torch::kDouble),
                                              torch::randn(shape, torch::kDouble),
                                              torch::tensor({0.8, -0.35}, torch::kDouble),
                                              torch::tensor({1.3}, torch::kDouble)};
  cases.push_back({"block_input", mix(false), mix_inputs, {true, true, false, true, false}});
  cases.push_back({"block_input with skip", mix(true), mix_inputs, {true, true, true, true, true}});
  cases.push_back({"add_norm",
                   [&](const std::vector<torch::Tensor>& in) {
                     auto out = ops.add_norm(in[0], in[1]);
                     return std::vector<torch::Tensor>{out.x, out.normed};
                   },
                   {torch::randn(shape, torch::kDouble), torch::randn(shape, torch::kDouble)}, {true, true}});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<torch::Tensor> rounded;  // bf16-exact values, so every run sees the same inputs
    for (auto& t : c.inputs) rounded.push_back(t.to(torch::kBFloat16).to(torch::kDouble));
    const auto cpu = tests::run_op(c.op, rounded, c.differentiable, torch::kFloat);
    const auto gpu32 = tests::run_op(c.op, rounded, c.differentiable, torch::kFloat, cuda);
    const auto gpu16 = tests::run_op(c.op, rounded, c.differentiable, torch::kBFloat16, cuda);
    ASSERT_EQ(cpu.size(), gpu16.size());
    for (size_t i = 0; i < cpu.size(); ++i) {
      SCOPED_TRACE("output/gradient " + std::to_string(i));
      EXPECT_LE(tests::relative_error(gpu32[i], cpu[i]), 1e-5);
      EXPECT_LE(tests::relative_error(gpu16[i], cpu[i]), 1e-2);
    }
  }
}

TEST(CudaModel, FusedKernelsMatchCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  auto config = small_model_config();
  config.kernels = Kernels::fused;
  GPT cpu(config);
  randomize(cpu, 3);
  auto tokens = torch::randint(0, 200, {4, 65}, torch::kLong);
  auto x = tokens.narrow(1, 0, 64), y = tokens.narrow(1, 1, 64);
  GPT bf16 = copy_model(cpu, torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  GPT fp32 = copy_model(cpu, torch::Device(torch::kCUDA, 0), torch::kFloat);
  const auto want = loss_and_gradients(cpu, x, y);
  const auto got16 = loss_and_gradients(bf16, x, y);
  EXPECT_NEAR(got16.loss, want.loss, 0.01 * want.loss);
  expect_gradients_near(got16, want, 0.05, 0.20, 1e-3, 0.995);
  const auto got32 = loss_and_gradients(fp32, x, y);
  EXPECT_NEAR(got32.loss, want.loss, 1e-4 * want.loss);
  expect_gradients_near(got32, want, 3e-3, 1e-2, 1e-5, 0.99999);
}

// --- the chunked head's cross-entropy kernel (models/softcap_cross_entropy.cu) ---
// The kernel against the CPU's one-pass loop on the same logits: bf16-exact
// values (so that the bf16 and fp32 kernels and the fp32 loop all read the
// same numbers), one far beyond the cap, targets at the first and the last
// index, row widths that do and do not fill 16-byte packs and 1024 threads.
// Tolerances: the loss, per row, within 1e-5 (both compute in fp32 with
// exp and tanh of a few ulp, CUDA's __expf / tanhf against the CPU's vector
// ones; 30 ulp of tanh near 1 is 1e-5 of the capped logit), plus 1e-6
// relative for the sum. The gradient per element: bf16 output is one
// rounding of the fp32 value, at most half a bf16 ulp, 2^-8 relative; fp32
// output within 2e-5 relative (__expf's error grows to 70 ulp at the
// smallest terms); both plus 1e-5 of the row's largest gradient, for the
// elements where 1 - t^2 cancels (|t| near 1) and a few ulp of t are a large
// part of it.

TEST(CudaSoftcapCrossEntropy, KernelMatchesTheCpuLoop) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(5);
  for (int64_t V : {int64_t{1}, int64_t{17}, int64_t{1000}, int64_t{50304}}) {
    for (double cap : {30.0, 0.0}) {
      for (bool gradients : {true, false}) {
        for (auto dtype : {torch::kBFloat16, torch::kFloat}) {
          SCOPED_TRACE(::testing::Message() << "V " << V << " cap " << cap << " gradients " << gradients << " "
                                            << dtype);
          const int64_t n = V > 1000 ? 6 : 23;
          auto logits = torch::randn({n, V}) * 4;
          logits.index_put_({0, 0}, 300.0f);
          logits = logits.to(torch::kBFloat16).to(torch::kFloat);
          auto targets = torch::randint(V, {n}, torch::kLong);
          targets.index_put_({0}, 0);
          targets.index_put_({n - 1}, V - 1);
          auto want = logits.clone();
          const double want_loss = softcap_cross_entropy_cpu_(want, targets, cap, gradients).item<double>();
          auto got = logits.to(cuda, dtype);
          const double got_loss =
              cuda::softcap_cross_entropy_(got, targets.to(cuda), cap, gradients).item<double>();
          EXPECT_NEAR(got_loss, want_loss, 1e-5 * n + 1e-6 * std::abs(want_loss));
          const auto g = got.to(torch::kCPU, torch::kDouble);
          if (!gradients) {
            EXPECT_TRUE(torch::equal(g, logits.to(torch::kDouble))) << "logits changed without gradients";
            continue;
          }
          const auto w = want.to(torch::kDouble);
          const double rel = dtype == torch::kBFloat16 ? std::ldexp(1.0, -8) : 2e-5;
          const auto row_scale = w.abs().amax(1, true).clamp_min(1e-6);  // V = 1: a zero gradient
          // Each element is (p - onehot) (1 - t^2) with p <= 1 known to a few
          // float ulps of 1, however much p - 1 cancels: V = 1 (p = 1, a zero
          // gradient) came out as 2^-22 on an H200 (2026-12-04).
          const double absolute = 4 * std::ldexp(1.0, -23);
          const auto excess = (g - w).abs() - rel * w.abs() - 1e-5 * row_scale - absolute;
          EXPECT_LE(excess.max().item<double>(), 0.0)
              << "largest difference " << (g - w).abs().max().item<double>();
        }
      }
    }
  }
}

TEST(CudaSoftcapCrossEntropy, TargetOutsideTheVocabularyGivesNan) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(7);
  auto logits = torch::randn({4, 10}, torch::device(cuda));
  const auto targets = torch::tensor({1, 10, 2, -1}, torch::kLong).to(cuda);
  const auto loss = cuda::softcap_cross_entropy_(logits, targets, 30, true);
  EXPECT_TRUE(std::isnan(loss.item<float>()));
  const auto g = logits.cpu();
  for (int64_t row : {1, 3}) EXPECT_TRUE(torch::isnan(g[row]).all().item<bool>()) << "row " << row;
  for (int64_t row : {0, 2}) EXPECT_TRUE(torch::isfinite(g[row]).all().item<bool>()) << "row " << row;
  // A NaN logit makes its row's loss NaN too.
  auto with_nan = torch::randn({2, 10}, torch::device(cuda));
  with_nan.index_put_({1, 4}, NAN);
  EXPECT_TRUE(std::isnan(
      cuda::softcap_cross_entropy_(with_nan, torch::tensor({0, 1}, torch::kLong).to(cuda), 30, false).item<float>()));
}

// The chunked head with the kernel (fused) on CUDA against float64 autograd
// of the plain formula on the CPU, from the same bf16-exact hidden states and
// weights (logits about N(0, 4), cap 5 so that the cap matters), in chunks of
// 7 tokens (a partial last chunk), for a vocabulary of single logits (1001)
// and of 16-byte packs (1024). bf16: the logits are the product rounded to
// bf16, 2^-8 relative each, and the loss moves by at most sum_j
// |d loss / d l_j| <= 2 times the largest such change; the gradients carry
// that rounding through the softmax and two more (g, grad_hidden): 1% of
// their norm (0.2% in a float64 emulation of these roundings). fp32 on CUDA
// (no TF32): 1e-5 relative for the loss, 1e-4 for the gradients.
TEST(CudaChunkedHead, KernelFormMatchesFloat64OnTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(6);
  const int64_t N = 64, D = 64;
  const double cap = 5;
  for (int64_t V : {int64_t{1001}, int64_t{1024}}) {
    for (auto dtype : {torch::kBFloat16, torch::kFloat}) {
      SCOPED_TRACE(::testing::Message() << "V " << V << " " << dtype);
      const auto hidden = torch::randn({N, D}).to(torch::kBFloat16).to(torch::kDouble);
      const auto weight =
          (torch::randn({V, D}) * (2.0 / std::sqrt(static_cast<double>(D)))).to(torch::kBFloat16).to(torch::kDouble);
      const auto targets = torch::randint(V, {N}, torch::kLong);

      auto h64 = hidden.clone().requires_grad_();
      auto w64 = weight.clone().requires_grad_();
      const auto l = torch::mm(h64, w64.t());
      const auto want = torch::nn::functional::cross_entropy(cap * torch::tanh(l / cap), targets);
      want.backward();
      const double largest_logit = l.abs().max().item<double>();

      auto h = hidden.to(cuda, dtype).requires_grad_();
      auto w = weight.to(cuda, torch::kFloat).requires_grad_();
      const auto got = chunked_head_loss(h, w, targets.to(cuda), cap, /*chunk_tokens=*/7, /*fused=*/true);
      got.backward();
      const bool bf16 = dtype == torch::kBFloat16;
      EXPECT_NEAR(got.item<double>(), want.item<double>(),
                  bf16 ? 2 * std::ldexp(1.0, -8) * largest_logit : 1e-5 * want.item<double>());
      const double rel = bf16 ? 1e-2 : 1e-4;
      const auto grad_h = h.grad().to(torch::kCPU, torch::kDouble), grad_w = w.grad().to(torch::kCPU, torch::kDouble);
      EXPECT_LE(fnorm(grad_h - h64.grad()), rel * fnorm(h64.grad())) << "hidden";
      EXPECT_LE(fnorm(grad_w - w64.grad()), rel * fnorm(w64.grad())) << "weight";
    }
  }
}

// --- the optimizers ----------------------------------------------------------

TEST(CudaOptimizer, MuonAndAdamWStepsMatchCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  Config config = load_config({}, {"model.vocab_size=200", "model.layers=4", "model.heads=2", "model.head_dim=32",
                                   "model.dim=64", "model.seq_len=64", "train.steps=100",
                                   "optim.muon.lr=0.02", "optim.muon.momentum_warmup_steps=10"});
  torch::manual_seed(0);
  GPT cpu(config.model);
  randomize(cpu, 3);
  GPT cuda = copy_model(cpu, torch::Device(torch::kCUDA, 0), torch::kBFloat16);
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : cpu->named_parameters()) before[p.key()] = p.value().detach().clone();
  std::set<std::string> matrices;
  for (const auto& m : group_parameters(*cpu).matrices) matrices.insert(m.name);
  ASSERT_EQ(matrices.size(), 4u * 6u);  // q, k, v, proj, fc, mlp proj per block

  Optimizer cpu_opt(*cpu, config, nullptr), cuda_opt(*cuda, config, nullptr);
  auto cuda_params = cuda->named_parameters();
  for (int64_t step = 0; step < 3; ++step) {
    torch::manual_seed(100 + static_cast<uint64_t>(step));
    for (auto& p : cpu->named_parameters()) {
      auto g = torch::randn_like(p.value());
      p.value().mutable_grad() = g;
      cuda_params[p.key()].mutable_grad() = g.to(cuda_params[p.key()].device());
    }
    cpu_opt.step(step);
    cuda_opt.step(step);
    cpu_opt.zero_grad();
    cuda_opt.zero_grad();
  }
  int muon_checked = 0, adam_checked = 0;
  for (const auto& p : cpu->named_parameters()) {
    const auto want = p.value().detach() - before[p.key()];
    const auto got = cuda_params[p.key()].detach().to(torch::kCPU) - before[p.key()];
    ASSERT_GT(fnorm(want), 0) << p.key() << " did not move";
    const double rel = fnorm(got - want) / fnorm(want);
    if (matrices.count(p.key())) {
      EXPECT_LE(rel, 0.10) << p.key() << " (Muon)";
      EXPECT_GE(cosine(got.reshape({-1}).to(torch::kDouble), want.reshape({-1}).to(torch::kDouble)), 0.995)
          << p.key();
      ++muon_checked;
    } else {
      EXPECT_LE(rel, 1e-4) << p.key() << " (AdamW)";
      ++adam_checked;
    }
  }
  EXPECT_EQ(muon_checked, 24);
  EXPECT_GT(adam_checked, 0);
}

// --- collectives at world size 1 ---------------------------------------------

TEST(CudaCollectives, NcclAtWorldSizeOneThroughTheLaunchPath) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ScopedEnv env;
  for (const auto& [k, v] : torchrun_env(0, 1, free_port())) env.set(k, v);
  const LaunchInfo launch = detect_launch();
  ASSERT_EQ(launch.launcher, Launcher::Torchrun);
  ASSERT_EQ(launch.size, 1);
  const auto device = resolve_device(RunDevice::cuda, launch.local_rank);
  ASSERT_TRUE(device.is_cuda());
  World world(launch, device, std::chrono::seconds(60));
  Communicator* comm = world.comm();
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->name(), "nccl");
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->device(), device);
  auto options = torch::dtype(torch::kFloat).device(device);

  auto t = torch::arange(10, options) * 1.5;
  comm->all_reduce_mean(t)->wait();
  EXPECT_TRUE(torch::allclose(t.cpu(), torch::arange(10, torch::kFloat) * 1.5));

  auto d = torch::arange(4, torch::dtype(torch::kDouble).device(device));
  comm->all_reduce_mean(d)->wait();  // Optimizer::sum_over_owners reduces doubles
  EXPECT_TRUE(torch::equal(d.cpu(), torch::arange(4, torch::kDouble)));

  auto input = torch::arange(12, options) - 3.0;
  auto output = torch::full({12}, -100.0f, options);
  comm->reduce_scatter_mean(input, output)->wait();
  EXPECT_TRUE(torch::allclose(output.cpu(), input.cpu()));

  auto mine = torch::arange(5, torch::dtype(torch::kLong).device(device));  // check_same_run gathers int64
  auto all = torch::zeros({1, 5}, mine.options());
  comm->all_gather(mine, all)->wait();
  EXPECT_TRUE(torch::equal(all.cpu().view({5}), torch::arange(5, torch::kLong)));

  auto b = torch::full({3}, 7.0f, options);
  comm->broadcast(b, 0)->wait();
  EXPECT_TRUE(torch::equal(b.cpu(), torch::full({3}, 7.0f)));

  // bf16 as well: the collectives are dtype-agnostic in c10d, checked once.
  auto h = torch::full({8}, 0.5f, options).to(torch::kBFloat16);
  comm->all_reduce_mean(h)->wait();
  EXPECT_TRUE(torch::equal(h.cpu().to(torch::kFloat), torch::full({8}, 0.5f)));

  EXPECT_NO_THROW(comm->barrier());
  EXPECT_NO_THROW(world.check_same_run(1234));
}

// --- phase timing and the shared step ----------------------------------------

TEST(CudaPhaseTimer, CudaEventsTimeDeviceWork) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device device(torch::kCUDA, 0);
  auto timer = make_phase_timer(device);
  EXPECT_STREQ(timer->clock(), "cuda_events");
  auto a = torch::randn({2048, 2048}, torch::device(device));
  timer->begin(Phase::Forward);
  for (int i = 0; i < 10; ++i) a = torch::mm(a, a) / 2048.0;
  timer->end(Phase::Forward);
  timer->begin(Phase::AdamW);
  timer->end(Phase::AdamW);
  const auto first = timer->take();
  EXPECT_GT(first[static_cast<size_t>(Phase::Forward)], 0.0);
  EXPECT_LT(first[static_cast<size_t>(Phase::AdamW)], first[static_cast<size_t>(Phase::Forward)]);
  const auto second = timer->take();  // a new period: nothing recorded since
  for (double ms : second) EXPECT_EQ(ms, 0.0);
}

TEST(CudaPhaseTimer, TrainingStepReportsEveryPhase) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto dir = tests::scratch_dir("cuda_step");
  tests::write_pattern_shards(dir);
  const Config config = load_config({}, tiny_run_overrides(dir, 10));
  const torch::Device device(torch::kCUDA, 0);
  LanguageModel model = make_model(config, device);
  const BatchPlan plan = plan_batches(config, 1, model->layout());
  Optimizer optimizer(*model, config, nullptr);
  const auto data = make_training_batches(config, model->layout(), plan.train_shape(), 0, 1);
  auto timer = make_phase_timer(device);
  StepParts parts{*model, optimizer, *data, nullptr, device, plan, timer.get()};
  for (int64_t step = 0; step < 3; ++step) {
    const auto result = training_step(parts, step);
    EXPECT_TRUE(std::isfinite(result.loss));
    EXPECT_TRUE(result.trouble.empty());
    const auto phases = timer->take();
    // The data phase queues only a small host-to-device copy: >= 0.
    EXPECT_GE(phases[static_cast<size_t>(Phase::Data)], 0.0);
    for (auto phase : {Phase::Forward, Phase::Backward, Phase::NewtonSchulz, Phase::AdamW})
      EXPECT_GT(phases[static_cast<size_t>(phase)], 0.0) << phase_name(phase) << " at step " << step;
    EXPECT_EQ(phases[static_cast<size_t>(Phase::CommWait)], 0.0);  // one process: no collectives
  }
  for (const auto& p : model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

// train.cuda_graphs against the eager step: the same model, data and
// optimizer, so the same kernels in the same order; the losses agree to bf16
// rounding of a different launch schedule (expected: bit-equal), and the
// weights after the run too. Accumulation 2 checks that replays add into
// the gradients the graph captured.
TEST(CudaGraphs, GraphedStepsGiveTheEagerLosses) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto dir = tests::scratch_dir("cuda_graphs");
  tests::write_pattern_shards(dir);
  auto overrides = tiny_run_overrides(dir, 6);
  const torch::Device device(torch::kCUDA, 0);
  auto run = [&](bool graphs) {
    auto with = overrides;
    with.push_back(std::string("train.cuda_graphs=") + (graphs ? "true" : "false"));
    const Config config = load_config({}, with);
    LanguageModel model = make_model(config, device);
    const BatchPlan plan = plan_batches(config, 1, model->layout());
    EXPECT_GE(plan.accumulation, 2) << "the test wants accumulation";
    Optimizer optimizer(*model, config, nullptr);
    const auto data = make_training_batches(config, model->layout(), plan.train_shape(), 0, 1);
    auto graph = make_micro_step_graph(config, nullptr, *model, device, plan);
    EXPECT_EQ(graph != nullptr, graphs);
    StepParts parts{*model, optimizer, *data, nullptr, device, plan, nullptr, graph.get()};
    std::vector<double> losses;
    for (int64_t step = 0; step < 6; ++step) losses.push_back(training_step(parts, step).loss);
    std::vector<torch::Tensor> weights;
    for (const auto& p : model->parameters()) weights.push_back(p.detach().reshape({-1}).to(torch::kCPU));
    return std::make_pair(losses, torch::cat(weights));
  };
  const auto [eager, eager_weights] = run(false);
  const auto [graphed, graphed_weights] = run(true);
  for (size_t i = 0; i < eager.size(); ++i) EXPECT_NEAR(graphed[i], eager[i], 1e-3 * std::abs(eager[i])) << "step " << i;
  EXPECT_LT(fnorm(graphed_weights - eager_weights), 1e-3 * fnorm(eager_weights));
}

// --- training ------------------------------------------------------------------

TEST(CudaTraining, ShortRunHasFiniteFallingLosses) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto dir = tests::scratch_dir("cuda_train");
  tests::write_pattern_shards(dir);
  const Config config = load_config({}, tiny_run_overrides(dir, 20));
  const auto summary = run_training(config, {});
  EXPECT_EQ(summary.steps, 20);
  const auto metrics = tests::read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 21u);
  for (const auto& m : metrics) {
    if (m.train_loss) {
      EXPECT_TRUE(std::isfinite(*m.train_loss)) << "step " << m.step;
    }
    if (m.val_loss) {
      EXPECT_TRUE(std::isfinite(*m.val_loss)) << "step " << m.step;
    }
  }
  ASSERT_TRUE(metrics.front().val_loss && metrics.back().val_loss);
  EXPECT_NEAR(*metrics.front().val_loss, std::log(128.0), 1e-2);  // zero head: uniform over the padded vocab
  EXPECT_LT(*metrics.back().val_loss, *metrics.front().val_loss - 0.5);
  EXPECT_TRUE(fs::exists(dir / "run" / "checkpoints" / "step_000020" / "COMPLETE"));
}

// --- two GPUs --------------------------------------------------------------------

TEST(CudaTwoRanks, NcclCollectivesAcrossTwoProcesses) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "needs 2 GPUs";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    auto env = torchrun_env(r, 2, port);
    env.emplace_back("MUONRUN_TEST_CUDA_WORKER", "collectives");
    pids.push_back(spawn({self}, env));
    ASSERT_GT(pids.back(), 0);
  }
  const auto codes = wait_all(pids, std::chrono::seconds(180));
  EXPECT_EQ(codes[0], 0) << "rank 0";
  EXPECT_EQ(codes[1], 0) << "rank 1";
}

TEST(CudaTwoRanks, TrainingRunOnTwoGpus) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "needs 2 GPUs";
  auto dir = tests::scratch_dir("cuda_two_ranks");
  tests::write_pattern_shards(dir);
  std::vector<std::string> argv{MUONRUN_BINARY, "train"};
  for (const auto& o : tiny_run_overrides(dir, 20)) {
    argv.push_back("--set");
    argv.push_back(o);
  }
  argv.push_back("--set");
  argv.push_back("train.batch_tokens=512");  // 2 ranks x 4 x 32 x 2 accumulation
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    pids.push_back(spawn(argv, torchrun_env(r, 2, port)));
    ASSERT_GT(pids.back(), 0);
  }
  const auto codes = wait_all(pids, std::chrono::seconds(300));
  EXPECT_EQ(codes[0], 0) << "rank 0 (log: " << (dir / "run" / "log_rank0.txt") << ")";
  EXPECT_EQ(codes[1], 0) << "rank 1";
  const auto metrics = tests::read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 21u);
  for (const auto& m : metrics)
    if (m.train_loss) {
      EXPECT_TRUE(std::isfinite(*m.train_loss)) << "step " << m.step;
    }
  ASSERT_TRUE(metrics.front().val_loss && metrics.back().val_loss);
  EXPECT_LT(*metrics.back().val_loss, *metrics.front().val_loss - 0.5);
}

// The worker processes of the 2-GPU tests run this binary with
// MUONRUN_TEST_CUDA_WORKER set instead of the tests.
int main(int argc, char** argv) {
  if (const char* worker = std::getenv("MUONRUN_TEST_CUDA_WORKER")) {
    if (std::string(worker) == "collectives") return collectives_worker();
    std::fprintf(stderr, "unknown MUONRUN_TEST_CUDA_WORKER=%s\n", worker);
    return 2;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

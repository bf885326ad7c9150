// Attention over packed documents with a sliding window on CUDA (ATen's
// varlen FlashAttention, models/doc_window_attention_cuda.cpp) against the
// CPU implementation (models/doc_window_attention.cpp, itself checked against
// dense float64 attention by tests/test_doc_window_attention.cpp): bf16
// inputs on the GPU, the same bf16-rounded inputs in fp32 on the CPU, output
// and the gradients of q, k, v (tests/op_check.h), so that a backward which
// lost the window or the document boundaries fails too. CUDA builds only
// (CTest label "cuda"); without a GPU every test skips.
//
// Bounds (norm of the difference over the norm of the CPU result): output
// 1e-2 (bf16 keeps 8 bits: 2^-9 per rounding), gradients 2e-2 (FlashAttention
// also rounds P and dS to bf16 for its products); a window one token off on
// the CPU must miss by more than 5e-2 where the window is small.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "models/doc_window_attention.h"
#include "tests/op_check.h"

using namespace muonrun;
using torch::Tensor;
using tests::relative_error;

namespace {

struct Case {
  std::string name;
  std::vector<int32_t> offsets;
  int64_t window;
};

// Documents of about `length` tokens (lengths vary by up to a third) up to T.
std::vector<int32_t> documents_of_about(int32_t T, int32_t length) {
  std::vector<int32_t> offsets = {0};
  for (int32_t i = 0; offsets.back() < T; ++i) offsets.push_back(std::min(T, offsets.back() + length - (i % 3) * length / 3));
  return offsets;
}

tests::Op windowed(const Case& c, int64_t window) {
  auto offsets = torch::tensor(std::vector<int32_t>(c.offsets), torch::kInt);
  return [=](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{doc_window_attention(in[0], in[1], in[2], offsets, window, 0.12)};
  };
}

std::vector<Tensor> rounded_qkv(int64_t T, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<Tensor> qkv;
  for (int i = 0; i < 3; ++i) qkv.push_back(torch::randn({T, 6, 128}).to(torch::kBFloat16).to(torch::kDouble));
  return qkv;
}

const std::vector<bool> kAllDifferentiable = {true, true, true};
const char* kNames[] = {"output", "grad q", "grad k", "grad v"};

TEST(CudaDocWindowAttention, FlashAttentionMatchesTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<Case> cases = {
      {"record-29 long window, documents of ~1000 tokens", documents_of_about(4096, 1000), 1408},
      {"short window, documents at 128-token edges", {0, 128, 256, 1000, 1024}, 384},
      {"window 0, an empty document, 1-token documents", {0, 1, 2, 3, 300, 300, 700}, 0},
      {"window past every document", {0, 500, 777}, 5000},
  };
  uint64_t seed = 1;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto inputs = rounded_qkv(c.offsets.back(), seed++);
    const auto cpu = tests::run_op(windowed(c, c.window), inputs, kAllDifferentiable, torch::kFloat);
    const auto gpu = tests::run_op(windowed(c, c.window), inputs, kAllDifferentiable, torch::kBFloat16, torch::kCUDA);
    for (size_t i = 0; i < cpu.size(); ++i) {
      if (c.window == 0 && (i == 1 || i == 2)) {
        // A query that sees only itself has softmax 1 whatever q.k: the
        // gradients of q and k vanish, and both sides hold rounding noise
        // whose relative difference means nothing (1.15 on an H200,
        // 2026-12-04). Both must be negligible beside grad v.
        const double scale = cpu[3].norm().item<double>();
        EXPECT_LE(gpu[i].norm().item<double>(), 1e-3 * scale) << kNames[i] << " (GPU) is not ~0";
        EXPECT_LE(cpu[i].norm().item<double>(), 1e-3 * scale) << kNames[i] << " (CPU) is not ~0";
        continue;
      }
      EXPECT_LE(relative_error(gpu[i], cpu[i]), i == 0 ? 1e-2 : 2e-2) << kNames[i];
    }
  }
}

// The negative control: the CPU with the window one token longer is far off.
TEST(CudaDocWindowAttention, WindowOffByOneDiffers) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c{"window 4, one document", {0, 600}, 4};
  const auto inputs = rounded_qkv(600, 9);
  const auto gpu = tests::run_op(windowed(c, c.window), inputs, kAllDifferentiable, torch::kBFloat16, torch::kCUDA);
  const auto off = tests::run_op(windowed(c, c.window + 1), inputs, kAllDifferentiable, torch::kFloat);
  for (size_t i = 0; i < gpu.size(); ++i) EXPECT_GT(relative_error(gpu[i], off[i]), 5e-2) << kNames[i];
}

TEST(CudaDocWindowAttention, RefusesFp32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto q = torch::randn({64, 2, 64}, torch::kCUDA);
  try {
    doc_window_attention(q, q, q, torch::tensor({0, 64}, torch::kInt), 8, 0.12);
    ADD_FAILURE() << "fp32 on CUDA was not refused";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("FlashAttention on CUDA computes bfloat16 or float16"), std::string::npos)
        << e.what();
  }
}

}  // namespace

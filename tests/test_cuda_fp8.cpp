// The FP8 head op (models/fp8_linear.h) on CUDA (cuBLASLt's float8 GEMM)
// against the same op on the CPU, where at::_scaled_mm is an fp32 product of
// the dequantised operands (tests/test_fp8_linear.cpp checks it against
// float64). Both quantise identically (the same element-wise casts), so they
// differ only in how the products are summed and rounded:
//   forward: bf16 out on both (2^-8 relative each) and fast accumulation on
//            CUDA, whose Hopper float8 accumulator keeps about 14 bits
//            between promotions to fp32 (DeepSeek-V3 technical report,
//            arXiv:2412.19437, section 3.3.2): norm-wise 1e-2 relative;
//   grad_x:  bf16 out, full accumulation: norm-wise 2^-7 relative;
//   grad_w:  fp32 out, full accumulation: norm-wise 1e-3 relative.
// Skipped without a CUDA device.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/chunked_head.h"
#include "models/fp8_linear.h"

using namespace muonrun;
using torch::Tensor;

namespace {

const Fp8Scales kScales = record_head_scales(768);

double relative_error(const Tensor& a, const Tensor& b) {
  const auto a64 = a.to(torch::kCPU, torch::kDouble), b64 = b.to(torch::kCPU, torch::kDouble);
  return ((a64 - b64).norm() / b64.norm()).item<double>();
}

// The head's input: `rows` rows of width `dim`, each of unit RMS (it comes
// out of the final norm), in bf16.
Tensor head_input(int64_t rows, int64_t dim) {
  auto x = torch::randn({rows, dim}, torch::kDouble);
  return (x / x.square().mean(-1, true).sqrt()).to(torch::kBFloat16);
}

// y, grad_x, grad_w of the op on `device`, from the same CPU inputs.
std::vector<Tensor> run_on(torch::Device device, const Tensor& x, const Tensor& w, const Tensor& g) {
  const auto xd = x.to(device).requires_grad_(true), wd = w.to(device).requires_grad_(true);
  const auto y = fp8_linear(xd, wd, kScales);
  const auto grads = torch::autograd::grad({y}, {xd, wd}, {g.to(device)});
  return {y, grads[0], grads[1]};
}

TEST(CudaFp8, MatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(11);
  // The head's shapes with a smaller vocabulary: 128 tokens, dim 768, 1024 outputs.
  const auto x = head_input(128, 768);
  const auto w = 0.05 * torch::randn({1024, 768});
  const auto g = (1e-2 * torch::randn({128, 1024})).to(torch::kBFloat16);
  const auto cpu = run_on(torch::kCPU, x, w, g);
  const auto cuda = run_on(torch::kCUDA, x, w, g);
  ASSERT_EQ(cuda[0].scalar_type(), torch::kBFloat16);
  ASSERT_EQ(cuda[1].scalar_type(), torch::kBFloat16);
  ASSERT_EQ(cuda[2].scalar_type(), torch::kFloat);
  EXPECT_LT(relative_error(cuda[0], cpu[0]), 1e-2);
  EXPECT_LT(relative_error(cuda[1], cpu[1]), 0x1p-7);
  EXPECT_LT(relative_error(cuda[2], cpu[2]), 1e-3);
}

// The chunked head's FP8 form (record 29's training head) on CUDA, with the
// soft-cap kernel, against the CPU: the products as above, but the logit
// gradient is rounded to e5m2 from two computations (the kernel and the CPU
// loop), so a few elements may sit one e5m2 step apart: the gradients
// norm-wise 2e-2 relative, the loss 1e-3 (the forward's fast accumulation).
// 1008 tokens in chunks of 1334 (rounded down to 1328): one chunk; in chunks
// of 200 (rounded down to 192): six, the last short.
TEST(CudaFp8, ChunkedHeadMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(12);
  const auto x = head_input(1008, 768);
  const auto w = 0.05 * torch::randn({1024, 768});
  const auto targets = torch::randint(1024, {1008}, torch::kLong);
  for (int64_t chunk : {int64_t{1334}, int64_t{200}}) {
    SCOPED_TRACE(::testing::Message() << "chunk " << chunk);
    std::vector<std::vector<Tensor>> out;
    for (torch::Device device : {torch::Device(torch::kCPU), torch::Device(torch::kCUDA)}) {
      const auto xd = x.to(device).requires_grad_(true), wd = w.to(device).requires_grad_(true);
      const auto loss = chunked_head_loss(xd, wd, targets.to(device), 15.0, chunk, /*fused=*/true, &kScales);
      const auto grads = torch::autograd::grad({loss}, {xd, wd});
      out.push_back({loss, grads[0], grads[1]});
    }
    EXPECT_LT(relative_error(out[1][0], out[0][0]), 1e-3) << "loss";
    EXPECT_LT(relative_error(out[1][1], out[0][1]), 2e-2) << "grad x";
    EXPECT_LT(relative_error(out[1][2], out[0][2]), 2e-2) << "grad w";
  }
}

// cuBLASLt takes only multiples of 16; the op says which shape is wrong
// instead of failing inside _scaled_mm (or later, in backward).
TEST(CudaFp8, RejectsSizesNotMultipleOf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto w = torch::zeros({1024, 768}, torch::kCUDA);
  try {
    fp8_linear(torch::zeros({100, 768}, torch::dtype(torch::kBFloat16).device(torch::kCUDA)), w, kScales);
    FAIL() << "expected an error for 100 rows";
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    EXPECT_NE(what.find("multiples of 16"), std::string::npos) << what;
    EXPECT_NE(what.find("rows (100)"), std::string::npos) << what;
  }
}

}  // namespace

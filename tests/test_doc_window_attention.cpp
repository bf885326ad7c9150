// Attention over packed documents with a sliding window on the CPU
// (models/doc_window_attention.h) against dense attention over the whole
// T x T score matrix with a boolean mask built straight from the definition
// (key j visible to query i iff j <= i, same document, i - j <= window):
// explicit float64 softmax math as the truth, and LibTorch's
// scaled_dot_product_attention with that mask in fp32. Forward and the
// vector-Jacobian products of q, k, v (tests/op_check.h), on offsets that
// exercise the 128-row query blocks: documents longer and shorter than the
// window, a document starting at a block edge, window 0, a window past T,
// T not a multiple of 128, one document, many 1-token documents, an empty
// document. Bounds on the norm of the difference over the norm of the truth,
// or over sqrt(elements) (an RMS of 1, the scale of the unit-normal inputs
// and cotangents) where the truth is smaller (window 0 makes the gradients of
// q and k exactly zero: softmax over one key is constant):
//   double: 1e-12;  fp32: 2e-6, against the truth and the fp32 dense SDPA;
//   bf16 inputs: 1e-2 against the truth of the same rounded inputs.
// A window off by one must miss the truth by far more (the checks can fail),
// and malformed offsets are refused with a message that names them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "models/doc_window_attention.h"
#include "tests/op_check.h"

using namespace muonrun;
using torch::Tensor;
using tests::Op;

namespace {

// The header's error measure.
double error(const Tensor& a, const Tensor& truth) {
  EXPECT_EQ(a.sizes(), truth.sizes());
  const double floor = std::sqrt(static_cast<double>(truth.numel()));
  return (a - truth).norm().item<double>() / std::max(truth.norm().item<double>(), floor);
}

struct Case {
  std::string name;
  std::vector<int32_t> offsets;
  int64_t window;
  int64_t heads = 2, head_dim = 16;
  double scale = 0.3;
};

// visible[i][j], (T, T) bool, from the definition.
Tensor visibility(const std::vector<int32_t>& offsets, int64_t window) {
  const int64_t T = offsets.back();
  std::vector<int64_t> doc(T);
  for (size_t d = 0; d + 1 < offsets.size(); ++d)
    for (int64_t i = offsets[d]; i < offsets[d + 1]; ++i) doc[i] = static_cast<int64_t>(d);
  auto mask = torch::zeros({T, T}, torch::kBool);
  auto m = mask.accessor<bool, 2>();
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j <= i; ++j) m[i][j] = doc[i] == doc[j] && i - j <= window;
  return mask;
}

Tensor offsets_tensor(const std::vector<int32_t>& offsets) {
  return torch::tensor(std::vector<int32_t>(offsets), torch::kInt);
}

Op windowed(const Case& c, int64_t window) {
  auto offsets = offsets_tensor(c.offsets);
  const double scale = c.scale;
  return [=](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{doc_window_attention(in[0], in[1], in[2], offsets, window, scale)};
  };
}

// softmax(scale q k^T, masked) v per head, over the whole (T, T) matrix.
Op dense_softmax(const Case& c) {
  auto mask = visibility(c.offsets, c.window);
  const double scale = c.scale;
  return [=](const std::vector<Tensor>& in) {
    auto q = in[0].transpose(0, 1), k = in[1].transpose(0, 1), v = in[2].transpose(0, 1);
    auto scores = torch::matmul(q, k.transpose(1, 2)).mul(scale).masked_fill(mask.logical_not(),
                                                                             -std::numeric_limits<double>::infinity());
    return std::vector<Tensor>{torch::matmul(torch::softmax(scores, -1), v).transpose(0, 1)};
  };
}

Op dense_sdpa(const Case& c) {
  auto mask = visibility(c.offsets, c.window);
  const double scale = c.scale;
  return [=](const std::vector<Tensor>& in) {
    auto heads_first = [](const Tensor& x) { return x.transpose(0, 1).unsqueeze(0); };
    auto y = at::scaled_dot_product_attention(heads_first(in[0]), heads_first(in[1]), heads_first(in[2]), mask,
                                              /*dropout_p=*/0.0, /*is_causal=*/false, scale);
    return std::vector<Tensor>{y.squeeze(0).transpose(0, 1)};
  };
}

std::vector<Tensor> random_qkv(const Case& c, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t T = c.offsets.back();
  return {torch::randn({T, c.heads, c.head_dim}, torch::kDouble), torch::randn({T, c.heads, c.head_dim}, torch::kDouble),
          torch::randn({T, c.heads, c.head_dim}, torch::kDouble)};
}

const std::vector<bool> kAllDifferentiable = {true, true, true};
const char* kNames[] = {"output", "grad q", "grad k", "grad v"};

std::vector<int32_t> one_token_documents_then_one(int32_t count, int32_t last) {
  std::vector<int32_t> offsets;
  for (int32_t i = 0; i <= count; ++i) offsets.push_back(i);
  offsets.push_back(count + last);
  return offsets;
}

const std::vector<Case> kCases = {
    {"documents longer and shorter than the window", {0, 40, 250, 300}, 64},
    {"a document starting at a 128-token block edge", {0, 128, 256, 300}, 100},
    {"block-edge documents, window past the block", {0, 128, 300}, 200},
    {"window 0: only itself", {0, 100, 300}, 0},
    {"window larger than T", {0, 130, 300}, 1000},
    {"one document, T not a multiple of 128", {0, 77}, 30},
    {"one long document", {0, 300}, 50},
    {"many 1-token documents", one_token_documents_then_one(140, 60), 8},
    {"an empty document", {0, 60, 60, 300}, 64},
    // ATen's CPU kernel splits keys into chunks of 512: queries 1000-1023 of
    // the block [896, 1024) see no key of its first chunk [0, 512).
    {"a block straddling two long documents", {0, 1000, 1100}, 1408},
    {"record-29 head shape, blocks spanning documents", {0, 100, 400, 700}, 256, 6, 128, 0.12},
};

TEST(DocWindowAttention, MatchesDenseMaskedAttention) {
  uint64_t seed = 1;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    const auto inputs = random_qkv(c, seed++);
    const auto truth = tests::run_op(dense_softmax(c), inputs, kAllDifferentiable, torch::kDouble);
    const auto ours64 = tests::run_op(windowed(c, c.window), inputs, kAllDifferentiable, torch::kDouble);
    const auto ours32 = tests::run_op(windowed(c, c.window), inputs, kAllDifferentiable, torch::kFloat);
    const auto sdpa32 = tests::run_op(dense_sdpa(c), inputs, kAllDifferentiable, torch::kFloat);
    std::vector<Tensor> rounded;
    for (const auto& t : inputs) rounded.push_back(t.to(torch::kBFloat16).to(torch::kDouble));
    const auto truth16 = tests::run_op(dense_softmax(c), rounded, kAllDifferentiable, torch::kDouble);
    const auto ours16 = tests::run_op(windowed(c, c.window), rounded, kAllDifferentiable, torch::kBFloat16);
    ASSERT_EQ(truth.size(), 4u);
    for (size_t i = 0; i < truth.size(); ++i) {
      SCOPED_TRACE(kNames[i]);
      EXPECT_LE(error(ours64[i], truth[i]), 1e-12);
      EXPECT_LE(error(ours32[i], truth[i]), 2e-6);
      EXPECT_LE(error(ours32[i], sdpa32[i]), 2e-6);
      EXPECT_LE(error(ours16[i], truth16[i]), 1e-2);
    }
  }
}

// The negative control: the same comparison with the window one token
// shorter or longer than the truth's misses it by far more than rounding,
// in every case where that changes what a query sees (a document longer
// than window + 1 tokens).
TEST(DocWindowAttention, WindowOffByOneDiffers) {
  int checked = 0;
  for (const auto& c : kCases) {
    int32_t longest = 0;
    for (size_t d = 0; d + 1 < c.offsets.size(); ++d) longest = std::max(longest, c.offsets[d + 1] - c.offsets[d]);
    if (longest <= c.window + 1) continue;
    ++checked;
    SCOPED_TRACE(c.name);
    const auto inputs = random_qkv(c, 7);
    const auto truth = tests::run_op(dense_softmax(c), inputs, kAllDifferentiable, torch::kDouble);
    std::vector<int64_t> wrong_windows = {c.window + 1};
    if (c.window > 0) wrong_windows.push_back(c.window - 1);
    for (int64_t w : wrong_windows) {
      SCOPED_TRACE("window " + std::to_string(w));
      const auto off = tests::run_op(windowed(c, w), inputs, kAllDifferentiable, torch::kDouble);
      for (size_t i = 0; i < truth.size(); ++i) EXPECT_GT(error(off[i], truth[i]), 1e-3) << kNames[i];
    }
  }
  EXPECT_GE(checked, 6);
}

// q, k, v as the model makes them: views of one (T, 3, heads, head_dim)
// projection; the result and gradients equal those of contiguous copies.
TEST(DocWindowAttention, StridedViewsGiveTheSameResult) {
  const Case& c = kCases[0];
  const int64_t T = c.offsets.back();
  torch::manual_seed(3);
  auto qkv = torch::randn({T, 3, c.heads, c.head_dim});
  const std::vector<Tensor> views = {qkv.select(1, 0), qkv.select(1, 1), qkv.select(1, 2)};
  std::vector<Tensor> copies;
  for (const auto& t : views) copies.push_back(t.contiguous());
  const auto a = tests::run_op(windowed(c, c.window), views, kAllDifferentiable, torch::kFloat);
  const auto b = tests::run_op(windowed(c, c.window), copies, kAllDifferentiable, torch::kFloat);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << kNames[i];
}

void expect_refused(const std::function<void()>& call, const std::string& message) {
  try {
    call();
    ADD_FAILURE() << "not refused; expected: " << message;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
  }
}

TEST(DocWindowAttention, RefusesMalformedOffsetsAndInputs) {
  auto q = torch::randn({300, 2, 16});
  auto call = [&](const Tensor& offsets, int64_t window = 64) {
    return [=] { doc_window_attention(q, q, q, offsets, window, 0.3); };
  };
  expect_refused(call(offsets_tensor({1, 100, 300})), "doc_window_attention: cu_seqlens[0] is 1, expected 0");
  expect_refused(call(offsets_tensor({0, 100, 299})),
                 "doc_window_attention: cu_seqlens ends at 299 (cu_seqlens[2]), expected T = 300");
  expect_refused(call(offsets_tensor({0, 200, 100, 300})),
                 "doc_window_attention: cu_seqlens decreases at index 2 (200 -> 100)");
  expect_refused(call(torch::tensor({0, 300}, torch::kLong)), "cu_seqlens must be a 1-D int32 tensor");
  expect_refused(call(offsets_tensor({0})), "cu_seqlens must be a 1-D int32 tensor [0, ..., T] of at least 2");
  expect_refused(call(offsets_tensor({0, 300}), -1), "window must be >= 0 tokens, got -1");
  expect_refused([&] { doc_window_attention(q, q, q.narrow(0, 0, 299), offsets_tensor({0, 300}), 8, 0.3); },
                 "q, k, v must have one shape");
  expect_refused([&] { doc_window_attention(q, q, q.to(torch::kDouble), offsets_tensor({0, 300}), 8, 0.3); },
                 "q, k, v must have one dtype");
  auto meta = torch::empty({300, 2, 16}, torch::TensorOptions().device(torch::kMeta));
  expect_refused([&] { doc_window_attention(meta, meta, meta, offsets_tensor({0, 300}), 8, 0.3); },
                 "tensors on meta are not supported");
}

}  // namespace

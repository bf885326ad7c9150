#include "models/doc_window_attention.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Query rows per block (the record's attention block size): a block's mask
// is 128 x (at most window + 128) values.
constexpr int64_t kBlock = 128;

// The first key each query sees: max(i - window, start of i's document);
// query i sees exactly the keys [first_key[i], i]. Non-decreasing in i, so a
// block's keys start at its first row's first key.
torch::Tensor first_visible_keys(const int32_t* offsets, int64_t documents, int64_t window) {
  const int64_t T = offsets[documents];
  auto first = torch::empty({T}, torch::kLong);
  int64_t* f = first.data_ptr<int64_t>();
  for (int64_t d = 0; d < documents; ++d)
    for (int64_t i = offsets[d]; i < offsets[d + 1]; ++i) f[i] = std::max<int64_t>(i - window, offsets[d]);
  return first;
}

// Block b: queries [q0, q0 + rows) against the keys [k0, k0 + keys) that
// they can see, with its additive mask (rows, keys) in q's dtype (ATen's
// kernel takes a mask of the query's dtype): 0 where visible, -inf elsewhere.
// Filled by a plain loop: forward runs blocks one per thread, and a LibTorch
// op here would wake the thread pool for a few thousand elements.
struct Block {
  int64_t q0, rows, k0, keys;
  torch::Tensor bias;

  Block(const torch::Tensor& first_key, int64_t b, torch::ScalarType dtype) {
    const int64_t T = first_key.size(0);
    const int64_t* first = first_key.data_ptr<int64_t>();
    q0 = b * kBlock;
    rows = std::min(kBlock, T - q0);
    k0 = first[q0];
    keys = q0 + rows - k0;
    auto mask = torch::empty({rows, keys}, torch::kFloat);
    float* m = mask.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < keys; ++c)
        m[r * keys + c] = k0 + c >= first[q0 + r] && k0 + c <= q0 + r ? 0.0f : -std::numeric_limits<float>::infinity();
    bias = mask.to(dtype);
  }

  // The block's queries (or keys) of a (T, H, D) tensor as (1, H, len, D),
  // the layout of ATen's attention kernels (a view).
  torch::Tensor queries(const torch::Tensor& x) const { return x.narrow(0, q0, rows).transpose(0, 1).unsqueeze(0); }
  torch::Tensor keys_of(const torch::Tensor& x) const { return x.narrow(0, k0, keys).transpose(0, 1).unsqueeze(0); }
};

int64_t block_count(int64_t T) { return (T + kBlock - 1) / kBlock; }

torch::ScalarType accumulation_dtype(torch::ScalarType t) {
  return t == torch::kDouble ? torch::kDouble : torch::kFloat;
}

// Each block through ATen's CPU FlashAttention kernel (online softmax,
// vectorised; the kernel scaled_dot_product_attention runs on the CPU) with
// its mask, blocks spread over the threads (each kernel then runs on one).
// Returns (out in q's dtype, per-row logsumexp (1, H, T) in the
// accumulation dtype, as the kernel gives it).
std::tuple<torch::Tensor, torch::Tensor> forward_cpu(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& v, const torch::Tensor& first_key,
                                                     double scale) {
  const int64_t T = q.size(0);
  auto out = torch::empty_like(q, at::MemoryFormat::Contiguous);
  auto lse = torch::empty({1, q.size(1), T}, q.options().dtype(accumulation_dtype(q.scalar_type())));
  at::parallel_for(0, block_count(T), 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Block block(first_key, b, q.scalar_type());
      auto [out_b, lse_b] = at::_scaled_dot_product_flash_attention_for_cpu(
          block.queries(q), block.keys_of(k), block.keys_of(v), /*dropout_p=*/0.0, /*is_causal=*/false, block.bias,
          scale);
      out.narrow(0, block.q0, block.rows).copy_(out_b.squeeze(0).transpose(0, 1));
      lse.narrow(2, block.q0, block.rows).copy_(lse_b);
    }
  });
  return {out, lse};
}

// Backward through the same kernel's backward (FlashAttention-2's:
// probabilities recomputed from the saved logsumexp), block by block in order
// since the key ranges of nearby blocks overlap (each kernel uses every
// thread; spreading blocks over threads measured no faster). The key and
// value gradients sum over blocks in fp32 (double for double).
variable_list backward_cpu(const torch::Tensor& grad, const torch::Tensor& q, const torch::Tensor& k,
                           const torch::Tensor& v, const torch::Tensor& out, const torch::Tensor& lse,
                           const torch::Tensor& first_key, double scale) {
  const int64_t T = q.size(0);
  auto dq = torch::empty_like(q, at::MemoryFormat::Contiguous);
  auto dk = torch::zeros(q.sizes(), q.options().dtype(accumulation_dtype(q.scalar_type())));
  auto dv = torch::zeros_like(dk);
  for (int64_t b = 0; b < block_count(T); ++b) {
    const Block block(first_key, b, q.scalar_type());
    auto [dq_b, dk_b, dv_b] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
        block.queries(grad), block.queries(q), block.keys_of(k), block.keys_of(v), block.queries(out),
        lse.narrow(2, block.q0, block.rows), /*dropout_p=*/0.0, /*is_causal=*/false, block.bias, scale);
    dq.narrow(0, block.q0, block.rows).copy_(dq_b.squeeze(0).transpose(0, 1));
    dk.narrow(0, block.k0, block.keys).add_(dk_b.squeeze(0).transpose(0, 1));
    dv.narrow(0, block.k0, block.keys).add_(dv_b.squeeze(0).transpose(0, 1));
  }
  return {dq, dk.to(q.scalar_type()), dv.to(q.scalar_type())};
}

struct DocWindowAttentionCpu : torch::autograd::Function<DocWindowAttentionCpu> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& first_key, double scale) {
    auto [out, lse] = forward_cpu(q, k, v, first_key, scale);
    ctx->save_for_backward({q, k, v, out, lse, first_key});
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto g = backward_cpu(grads[0].contiguous(), saved[0], saved[1], saved[2], saved[3], saved[4], saved[5],
                          ctx->saved_data["scale"].toDouble());
    return {g[0], g[1], g[2], torch::Tensor(), torch::Tensor()};
  }
};

void check_inputs(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t window) {
  TORCH_CHECK(q.dim() == 3, "doc_window_attention: q must be (tokens, heads, head_dim), got shape ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "doc_window_attention: q, k, v must have one shape, got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "doc_window_attention: q, k, v must have one dtype, got ", q.scalar_type(), ", ", k.scalar_type(), ", ",
              v.scalar_type());
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(), "doc_window_attention: q, k, v must be on one device, got ",
              q.device(), ", ", k.device(), ", ", v.device());
  TORCH_CHECK(q.size(0) <= std::numeric_limits<int32_t>::max(), "doc_window_attention: ", q.size(0),
              " tokens do not fit the int32 offsets");
  TORCH_CHECK(window >= 0, "doc_window_attention: window must be >= 0 tokens, got ", window);
}

}  // namespace

DocumentOffsets document_offsets(const torch::Tensor& cu_seqlens, int64_t T, const torch::Device& device) {
  TORCH_CHECK(cu_seqlens.scalar_type() == torch::kInt && cu_seqlens.dim() == 1 && cu_seqlens.numel() >= 2,
              "doc_window_attention: cu_seqlens must be a 1-D int32 tensor [0, ..., T] of at least 2 offsets, got ",
              cu_seqlens.scalar_type(), " of shape ", cu_seqlens.sizes());
  DocumentOffsets offsets;
  offsets.host = cu_seqlens.to(torch::kCPU).contiguous();
  const int32_t* c = offsets.host.data_ptr<int32_t>();
  const int64_t n = offsets.host.numel();
  TORCH_CHECK(c[0] == 0, "doc_window_attention: cu_seqlens[0] is ", c[0], ", expected 0");
  TORCH_CHECK(c[n - 1] == T, "doc_window_attention: cu_seqlens ends at ", c[n - 1], " (cu_seqlens[", n - 1,
              "]), expected T = ", T, " tokens of q");
  for (int64_t d = 0; d + 1 < n; ++d) {
    TORCH_CHECK(c[d + 1] >= c[d], "doc_window_attention: cu_seqlens decreases at index ", d + 1, " (", c[d], " -> ",
                c[d + 1], "), expected non-decreasing offsets");
    offsets.max_len = std::max<int64_t>(offsets.max_len, c[d + 1] - c[d]);
  }
  // Pinned and asynchronous: a copy from pageable memory would first wait
  // for everything queued on the stream.
  offsets.on_device = device.is_cuda() ? offsets.host.pin_memory().to(device, /*non_blocking=*/true)
                                       : offsets.host.to(device);
  return offsets;
}

torch::Tensor doc_window_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& cu_seqlens, int64_t window, double scale) {
  return doc_window_attention(q, k, v, document_offsets(cu_seqlens, q.size(0), q.device()), window, scale);
}

torch::Tensor doc_window_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   const DocumentOffsets& offsets, int64_t window, double scale) {
  check_inputs(q, k, v, window);
#ifdef MUONRUN_WITH_CUDA
  const bool supported = q.is_cpu() || q.is_cuda();
#else
  const bool supported = q.is_cpu();
#endif
  TORCH_CHECK(supported, "doc_window_attention: tensors on ", q.device(),
              " are not supported (CPU, or CUDA in a build with MUONRUN_CUDA)");
  TORCH_CHECK(offsets.host.defined() && offsets.host.size(0) >= 2 &&
                  offsets.host.data_ptr<int32_t>()[offsets.host.size(0) - 1] == q.size(0) &&
                  offsets.on_device.device() == q.device(),
              "doc_window_attention: the document offsets were made for another sequence or device than q (",
              q.size(0), " tokens on ", q.device(), ")");
#ifdef MUONRUN_WITH_CUDA
  if (q.is_cuda())
    return cuda::doc_window_attention_flash(q, k, v, offsets.on_device, offsets.max_len, window, scale);
#endif
  TORCH_CHECK(q.scalar_type() == torch::kFloat || q.scalar_type() == torch::kDouble ||
                  q.scalar_type() == torch::kBFloat16,
              "doc_window_attention: the CPU computes float, double or bfloat16, got ", q.scalar_type());
  auto first_key = first_visible_keys(offsets.host.data_ptr<int32_t>(), offsets.host.numel() - 1, window);
  return DocWindowAttentionCpu::apply(q, k, v, first_key, scale);
}

}  // namespace muonrun

#include "models/chunked_head.h"

#include <torch/csrc/autograd/custom_function.h>

#include "models/softcap_cross_entropy.h"
#include "models/softcap_cross_entropy_cpu.h"
#ifdef MUONRUN_WITH_CUDA
#include "models/fused_cuda.h"
#endif

namespace muonrun {
namespace {

struct ChunkedHead : torch::autograd::Function<ChunkedHead> {
  // fp8_x <= 0: no FP8 (the scales are plain doubles: autograd::Function
  // takes no struct).
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& targets, double softcap,
                               int64_t chunk_tokens, bool fused, bool gradients, double fp8_x, double fp8_w,
                               double fp8_grad) {
    const int64_t N = hidden.size(0);
    const auto dtype = hidden.scalar_type();
    const bool fp32 = dtype == torch::kFloat;
    const bool fp8 = fp8_x > 0;
    // FP8: the operands quantised once (1 byte an element), the bf16/fp32 weight not needed.
    torch::Tensor w, x8, w8;
    if (fp8) {
      x8 = fp8::quantize(hidden, fp8_x, torch::kFloat8_e4m3fn);
      w8 = fp8::quantize(weight, fp8_w, torch::kFloat8_e4m3fn);
    } else {
      w = weight.to(dtype);
    }
    auto total = torch::zeros({}, hidden.options().dtype(torch::kFloat));
    const bool one_pass = fused && hidden.is_cpu();
#ifdef MUONRUN_WITH_CUDA
    // The kernel of models/softcap_cross_entropy.cu: the chunk's logits stay
    // in the compute dtype, the product's output, and become its gradient in
    // place, which the next two products read as it is.
    const bool kernel = fused && hidden.is_cuda();
#else
    const bool kernel = false;
#endif
    // One buffer serves every chunk: the logits, which become the chunk's
    // gradient; fp32 for the CPU loop and LibTorch's ops (which also need a
    // scratch buffer as large).
    auto logits_buffer = torch::empty({std::min(chunk_tokens, N), weight.size(0)},
                                      hidden.options().dtype(kernel ? dtype : torch::kFloat));
    torch::Tensor scratch;
    if (!one_pass && !kernel) scratch = torch::empty_like(logits_buffer);
    auto chunk_loss = [&](torch::Tensor& logits, const torch::Tensor& y) {
#ifdef MUONRUN_WITH_CUDA
      if (kernel) return cuda::softcap_cross_entropy_(logits, y, softcap, gradients);
#endif
      return one_pass ? softcap_cross_entropy_cpu_(logits, y, softcap, gradients)
                      : softcap_cross_entropy_(logits, y, softcap, gradients, scratch);
    };
    torch::Tensor grad_hidden, grad_weight;
    if (gradients) {
      grad_hidden = torch::empty_like(hidden);
      grad_weight = torch::zeros_like(weight, torch::MemoryFormat::Contiguous);
    }
    for (int64_t start = 0; start < N; start += chunk_tokens) {
      const int64_t n = std::min(chunk_tokens, N - start);
      auto h = hidden.narrow(0, start, n);
      auto logits = logits_buffer.narrow(0, 0, n);
      const auto x8_chunk = fp8 ? x8.narrow(0, start, n) : torch::Tensor();
      if (fp8) logits.copy_(fp8::scaled_mm(x8_chunk, w8.t(), fp8_x, fp8_w, torch::kBFloat16, true));
      else if (fp32 || kernel) at::mm_out(logits, h, w.t());
      else logits.copy_(torch::mm(h, w.t()));  // bf16 product, fp32 soft-cap and softmax
      total += chunk_loss(logits, targets.narrow(0, start, n));
      if (!gradients) continue;
      auto grad_h = grad_hidden.narrow(0, start, n);
      if (fp8) {
        // The gradient of the chunk's summed loss, as fp8_linear's backward
        // gets it in the record: in bf16 (its logits' dtype), then e5m2.
        const auto g8 = fp8::quantize(logits.to(torch::kBFloat16), fp8_grad, torch::kFloat8_e5m2);
        grad_h.copy_(fp8::scaled_mm(g8, fp8::column_major(w8), fp8_grad, fp8_w, torch::kBFloat16, false));
        grad_weight += fp8::scaled_mm(x8_chunk.t().contiguous(), fp8::column_major(g8), fp8_x, fp8_grad,
                                      torch::kFloat, false)
                           .t();
        continue;
      }
      auto g = logits.to(dtype);  // no copy in fp32 or from the kernel
      at::mm_out(grad_h, g, w);
      if (fp32) grad_weight.addmm_(g.t(), h);
      // bf16 operands, the product accumulated in fp32 into grad_weight
      // (cuBLAS's beta = 1): no [V, D] temporary, no separate add (ATen's
      // addmm.dtype_out, CUDA only).
      else if (kernel && dtype == torch::kBFloat16) at::addmm_out(grad_weight, grad_weight, g.t(), h, torch::kFloat);
      else grad_weight += torch::mm(g.t(), h).to(torch::kFloat);
    }
    ctx->save_for_backward({grad_hidden, grad_weight});
    ctx->saved_data["N"] = N;
    return total / static_cast<double>(N);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const double scale = 1.0 / static_cast<double>(ctx->saved_data["N"].toInt());
    auto g = grad_outputs[0] * scale;  // a scalar
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g, torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                                const torch::Tensor& targets, double softcap, int64_t chunk_tokens, bool fused,
                                const Fp8Scales* fp8) {
  TORCH_CHECK(hidden.dim() == 2 && targets.dim() == 1 && hidden.size(0) == targets.size(0),
              "chunked_head_loss: hidden [N, D] and targets [N]");
  TORCH_CHECK(chunk_tokens > 0, "chunked_head_loss: chunk_tokens must be positive");
  if (fp8 && hidden.is_cuda()) {
    // cuBLASLt's float8 GEMM multiplies only dimensions that are multiples of 16.
    TORCH_CHECK(hidden.size(0) % 16 == 0 && hidden.size(1) % 16 == 0 && weight.size(0) % 16 == 0,
                "chunked_head_loss with FP8 on CUDA: tokens (", hidden.size(0), "), width (", hidden.size(1),
                ") and vocabulary (", weight.size(0), ") must be multiples of 16");
    chunk_tokens = std::max<int64_t>(16, chunk_tokens / 16 * 16);
  }
  // Inside forward grad mode is off, so whether gradients are wanted is
  // decided here: not under NoGradGuard (evaluation), whatever the weight says.
  const bool gradients = torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  return ChunkedHead::apply(hidden, weight, targets, softcap, chunk_tokens, fused, gradients, fp8 ? fp8->x : 0.0,
                            fp8 ? fp8->w : 0.0, fp8 ? fp8->grad : 0.0);
}

torch::Tensor sigmoid_capped_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                                       const torch::Tensor& targets, bool fused, bool fp8) {
  const int64_t chunk_tokens = std::max<int64_t>(1, (int64_t{1} << 26) / weight.size(0));
  const Fp8Scales scales = record_head_scales(hidden.size(-1));
  return chunked_head_loss(hidden, weight, targets, /*softcap=*/15.0, chunk_tokens, fused, fp8 ? &scales : nullptr);
}

torch::Tensor sigmoid_capped_logits(const torch::Tensor& hidden, const torch::Tensor& weight) {
  auto z = torch::nn::functional::linear(hidden, weight.to(hidden.scalar_type())).to(torch::kFloat);
  return 30.0 * torch::sigmoid(z / 7.5);
}

}  // namespace muonrun

#include "models/chunked_head.h"

#include <torch/csrc/autograd/custom_function.h>

namespace muonrun {
namespace {

// One chunk: its summed loss, and (when asked) the gradients of the summed
// loss with respect to the chunk's hidden states and to the weight.
struct ChunkResult {
  torch::Tensor loss_sum, grad_hidden, grad_weight;
};

ChunkResult head_chunk(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                       double softcap, bool gradients) {
  auto logits = torch::mm(h, w.t()).to(torch::kFloat);  // [n, V]
  torch::Tensor capped = softcap > 0 ? torch::tanh(logits / softcap) : logits;  // tanh(l/cap), or l
  if (softcap > 0) capped.mul_(softcap);
  auto lse = torch::logsumexp(capped, 1, /*keepdim=*/true);  // [n, 1]
  auto picked = capped.gather(1, targets.view({-1, 1}));
  ChunkResult out{(lse - picked).sum(), {}, {}};
  if (!gradients) return out;
  // d loss / d capped = softmax - one_hot(target); through the cap:
  // d capped / d logits = 1 - tanh^2 = 1 - (capped / cap)^2.
  auto grad = capped.sub_(lse).exp_();
  grad.scatter_add_(1, targets.view({-1, 1}), torch::full({targets.size(0), 1}, -1.0f, grad.options()));
  if (softcap > 0) {
    auto t = torch::tanh(logits.div_(softcap));
    grad.mul_(1 - t.square_());
  }
  auto g = grad.to(h.scalar_type());
  out.grad_hidden = torch::mm(g, w);
  out.grad_weight = torch::mm(g.t(), h).to(torch::kFloat);
  return out;
}

struct ChunkedHead : torch::autograd::Function<ChunkedHead> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               const torch::Tensor& weight, const torch::Tensor& targets, double softcap,
                               int64_t chunk_tokens, bool gradients) {
    const int64_t N = hidden.size(0);
    auto w = weight.to(hidden.scalar_type());
    auto total = torch::zeros({}, hidden.options().dtype(torch::kFloat));
    torch::Tensor grad_hidden, grad_weight;
    if (gradients) {
      grad_hidden = torch::empty_like(hidden);
      grad_weight = torch::zeros_like(weight, torch::MemoryFormat::Contiguous);
    }
    for (int64_t start = 0; start < N; start += chunk_tokens) {
      const int64_t n = std::min(chunk_tokens, N - start);
      auto part = head_chunk(hidden.narrow(0, start, n), w, targets.narrow(0, start, n), softcap, gradients);
      total += part.loss_sum;
      if (gradients) {
        grad_hidden.narrow(0, start, n).copy_(part.grad_hidden);
        grad_weight += part.grad_weight;
      }
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
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_head_loss(const torch::Tensor& hidden, const torch::Tensor& weight,
                                const torch::Tensor& targets, double softcap, int64_t chunk_tokens) {
  TORCH_CHECK(hidden.dim() == 2 && targets.dim() == 1 && hidden.size(0) == targets.size(0),
              "chunked_head_loss: hidden [N, D] and targets [N]");
  TORCH_CHECK(chunk_tokens > 0, "chunked_head_loss: chunk_tokens must be positive");
  // Inside forward grad mode is off, so whether gradients are wanted is
  // decided here: not under NoGradGuard (evaluation), whatever the weight says.
  const bool gradients = torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  return ChunkedHead::apply(hidden, weight, targets, softcap, chunk_tokens, gradients);
}

}  // namespace muonrun

#include "models/softcap_cross_entropy.h"

namespace muonrun {

torch::Tensor softcap_cross_entropy_(torch::Tensor& logits, const torch::Tensor& targets, double softcap,
                                     bool gradients, torch::Tensor& scratch) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && logits.scalar_type() == torch::kFloat,
              "softcap_cross_entropy_: logits must be contiguous fp32 [n, V]");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
              "softcap_cross_entropy_: targets must be [n] for logits [n, V]");
  TORCH_CHECK(scratch.scalar_type() == torch::kFloat && scratch.is_contiguous() && scratch.numel() >= logits.numel(),
              "softcap_cross_entropy_: scratch must be contiguous fp32 with at least ", logits.numel(), " elements");
  const bool capped = softcap > 0;
  const double scale = capped ? softcap : 1.0;  // c = scale * t
  auto t = logits;
  if (capped) t.div_(softcap).tanh_();
  auto target_index = targets.view({-1, 1});
  auto t_target = t.gather(1, target_index);                      // [n, 1]
  auto t_max = t.amax(1, /*keepdim=*/true);                        // [n, 1]
  // e = exp(c - max c), into the scratch buffer.
  auto e = scratch.view({-1}).narrow(0, 0, t.numel()).view(t.sizes());
  at::sub_out(e, t, t_max).mul_(scale).exp_();
  auto sum = e.sum(1, /*keepdim=*/true);                           // [n, 1]
  auto lse = t_max * scale + sum.log();
  auto loss_sum = (lse - t_target * scale).sum();
  if (!gradients) return loss_sum;
  e.div_(sum);                                                     // softmax(c)
  // d loss / d l = (softmax - one_hot) * d c / d l, with d c / d l = 1 - t^2
  // (1 without the cap); the one-hot part is added at the targets below.
  if (capped) {
    t.square_();
    at::addcmul_out(t, e, e, t, /*value=*/-1);                    // e - e * t^2
    t.scatter_add_(1, target_index, t_target.square().sub_(1));   // - (1 - t_target^2)
  } else {
    t.copy_(e);
    t.scatter_add_(1, target_index, torch::full_like(t_target, -1.0f));
  }
  return loss_sum;
}

}  // namespace muonrun

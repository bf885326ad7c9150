#include "models/softcap_cross_entropy.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace muonrun {
namespace {

// The formula of the header on whole tensors: rows of `logits` are independent.
torch::Tensor composite(torch::Tensor logits, const torch::Tensor& targets, double softcap, bool gradients) {
  const bool capped = softcap > 0;
  if (capped) logits.div_(softcap).tanh_();               // t = tanh(l / cap), kept for the derivative
  auto c = capped ? logits * softcap : logits;             // the capped logits
  auto lse = torch::logsumexp(c, 1, /*keepdim=*/true);     // [n, 1]
  auto target_index = targets.view({-1, 1});
  auto loss_sum = (lse - c.gather(1, target_index)).sum();
  if (!gradients) return loss_sum;
  auto grad = c.sub_(lse).exp_();                          // softmax(c)
  grad.scatter_add_(1, target_index, torch::full({targets.size(0), 1}, -1.0f, grad.options()));
  // Through the cap: d c / d l = 1 - t^2. Without it, grad already is logits.
  if (capped) logits.square_().neg_().add_(1).mul_(grad);
  return loss_sum;
}

// Rows per block: the block and its capped copy (8 bytes a logit) fit in a
// 1 MiB L2 cache (AMD Zen 4, Intel Sapphire Rapids and later have 1-2 MiB a core).
int64_t rows_per_block(int64_t vocab) {
  return std::max<int64_t>(1, (int64_t{1} << 20) / (8 * vocab));
}

torch::Tensor blocked(torch::Tensor& logits, const torch::Tensor& targets, double softcap, bool gradients) {
  const int64_t n = logits.size(0);
  const int64_t rows = rows_per_block(logits.size(1));
  const int64_t blocks = (n + rows - 1) / rows;
  auto block_loss = torch::empty({blocks}, logits.options());
  auto* out = block_loss.data_ptr<float>();
  // One block per task; the ops inside run on the task's thread (ATen does
  // not nest parallel regions), so each block stays in that core's cache.
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t start = b * rows, count = std::min(rows, n - start);
      out[b] = composite(logits.narrow(0, start, count), targets.narrow(0, start, count), softcap, gradients)
                   .item<float>();
    }
  });
  return block_loss.sum();
}

}  // namespace

torch::Tensor softcap_cross_entropy_(torch::Tensor& logits, const torch::Tensor& targets, double softcap,
                                     bool gradients, SoftcapCrossEntropy how) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && logits.scalar_type() == torch::kFloat,
              "softcap_cross_entropy_: logits must be contiguous fp32 [n, V]");
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
              "softcap_cross_entropy_: targets must be [n] for logits [n, V]");
  if (how == SoftcapCrossEntropy::blocked) {
    TORCH_CHECK(logits.device().is_cpu(), "softcap_cross_entropy_: the blocked implementation is CPU only");
    return blocked(logits, targets, softcap, gradients);
  }
  return composite(logits, targets, softcap, gradients);
}

}  // namespace muonrun

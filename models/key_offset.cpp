#include "models/key_offset.h"

namespace muonrun {
namespace {

// t shifted one token later along dim 0: [t_0, t_0, t_1, ..., t_{T-2}].
torch::Tensor previous_token(const torch::Tensor& t) {
  return torch::cat({t.narrow(0, 0, 1), t.narrow(0, 0, t.size(0) - 1)});
}

}  // namespace

torch::Tensor partial_key_offset(const torch::Tensor& k) {
  const int64_t D = k.size(-1), q = D / 4;
  TORCH_CHECK(D % 4 == 0, "partial key offset: head_dim must be a multiple of 4, got ", D);
  if (k.size(0) < 2) return k;
  return torch::cat({k.narrow(-1, 0, q), previous_token(k.narrow(-1, q, q)), k.narrow(-1, 2 * q, q),
                     previous_token(k.narrow(-1, 3 * q, q))},
                    -1);
}

}  // namespace muonrun

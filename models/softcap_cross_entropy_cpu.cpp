#include "models/softcap_cross_entropy_cpu.h"

#include <cmath>
#include <memory>
#include <vector>

#include "models/fused_cpu.h"
#include "models/simd_math.h"

namespace muonrun {
namespace {

using simd::f32x16;
using simd::kLanes;

struct Chunk {
  float* logits;           // [n, V], overwritten
  const int64_t* targets;  // [n]
  int64_t V;
  float cap;  // 0: no cap
  bool gradients;
  double* row_loss;  // [n], out
};

// t = tanh(x / cap) of 16 logits (x itself without the cap).
MUONRUN_SIMD_INLINE f32x16 soft_cap(const Chunk& c, f32x16 x) {
  return c.cap > 0 ? simd::tanh(x * (1.0f / c.cap)) : x;
}

// One row: its loss, logsumexp(c) - c[target] with c = cap * t, and, when
// asked, its gradient over the logits: (e / sum e) (1 - t^2), minus
// (1 - t_target^2) at the target, where e = exp(c - max c). The first sweep
// reads the row from memory; the others find it in the L2 cache. `e` has
// room for a row.
MUONRUN_SIMD_INLINE void row(const Chunk& c, int64_t r, float* e) {
  float* l = c.logits + r * c.V;
  const int64_t V = c.V, full = V / kLanes * kLanes, rest = V - full;
  const bool capped = c.cap > 0;
  const float scale = capped ? c.cap : 1.0f;
  // t over l, and its maximum.
  f32x16 t_max = simd::splat(-INFINITY);
  for (int64_t j = 0; j < full; j += kLanes) {
    const f32x16 t = soft_cap(c, simd::load(l + j));
    if (capped) simd::store(l + j, t);
    t_max = simd::max(t_max, t);
  }
  if (rest) {
    const f32x16 t = soft_cap(c, simd::load_first(l + full, rest, 0.0f));
    if (capped) simd::store_first(l + full, t, rest);
    t_max = simd::max(t_max, simd::keep_first(t, rest, -INFINITY));
  }
  const float shift = scale * simd::max_lane(t_max);
  // e and its sum: float sums of at most 64 vectors each, added up in double.
  double sum = 0;
  f32x16 part = simd::splat(0.0f);
  for (int64_t j = 0; j < full; j += kLanes) {
    const f32x16 ej = simd::exp(simd::load(l + j) * scale - shift);
    if (c.gradients) simd::store(e + j, ej);
    part += ej;
    if ((j / kLanes) % 64 == 63) {
      sum += simd::sum_lanes(part);
      part = simd::splat(0.0f);
    }
  }
  if (rest) {
    const f32x16 ej = simd::keep_first(simd::exp(simd::load_first(l + full, rest, 0.0f) * scale - shift), rest, 0.0f);
    if (c.gradients) simd::store_first(e + full, ej, rest);
    part += ej;
  }
  sum += simd::sum_lanes(part);
  const int64_t target = c.targets[r];
  const float t_target = l[target];
  c.row_loss[r] = static_cast<double>(shift) + std::log(sum) - static_cast<double>(scale) * t_target;
  if (!c.gradients) return;

  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < full; j += kLanes) {
    f32x16 g = simd::load(e + j) * inv_sum;
    if (capped) {
      const f32x16 t = simd::load(l + j);
      g = g * (1.0f - t * t);
    }
    simd::store(l + j, g);
  }
  for (int64_t j = full; j < V; ++j) l[j] = capped ? e[j] * inv_sum * (1.0f - l[j] * l[j]) : e[j] * inv_sum;
  l[target] -= capped ? 1.0f - t_target * t_target : 1.0f;
}

MUONRUN_SIMD_INLINE void rows(const Chunk& c, int64_t begin, int64_t end) {
  std::unique_ptr<float[]> e(new float[c.V]);
  for (int64_t r = begin; r < end; ++r) row(c, r, e.get());
}

// The same loop compiled three times; best_simd_level picks one.
__attribute__((target("avx512f"))) void rows_avx512(const Chunk& c, int64_t begin, int64_t end) {
  rows(c, begin, end);
}
__attribute__((target("avx2,fma"))) void rows_avx2(const Chunk& c, int64_t begin, int64_t end) {
  rows(c, begin, end);
}
void rows_portable(const Chunk& c, int64_t begin, int64_t end) { rows(c, begin, end); }

}  // namespace

SimdLevel best_simd_level() {
  static const SimdLevel level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return SimdLevel::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::avx2;
    return SimdLevel::portable;
  }();
  return level;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return "avx512";
    case SimdLevel::avx2: return "avx2";
    case SimdLevel::portable: return "portable";
  }
  return "unknown";
}

torch::Tensor softcap_cross_entropy_cpu_(torch::Tensor& logits, const torch::Tensor& targets_in, double softcap,
                                         bool gradients, SimdLevel level) {
  TORCH_CHECK(logits.is_cpu() && logits.dim() == 2 && logits.is_contiguous() &&
                  logits.scalar_type() == torch::kFloat,
              "softcap_cross_entropy_cpu_: logits must be contiguous fp32 [n, V] on the CPU");
  TORCH_CHECK(targets_in.is_cpu() && targets_in.dim() == 1 && targets_in.size(0) == logits.size(0) &&
                  targets_in.scalar_type() == torch::kLong,
              "softcap_cross_entropy_cpu_: targets must be int64 [n] on the CPU for logits [n, V]");
  TORCH_CHECK(static_cast<int>(level) <= static_cast<int>(best_simd_level()),
              "softcap_cross_entropy_cpu_: this CPU cannot run the ", simd_level_name(level), " loop");
  const auto targets = targets_in.contiguous();
  const int64_t n = logits.size(0), V = logits.size(1);
  const int64_t* y = targets.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK(y[i] >= 0 && y[i] < V, "softcap_cross_entropy_cpu_: target ", y[i], " of row ", i,
                " is outside the vocabulary [0, ", V, ")");
  std::vector<double> row_loss(static_cast<size_t>(n));
  const Chunk chunk{logits.data_ptr<float>(), y, V, softcap > 0 ? static_cast<float>(softcap) : 0.0f,
                    gradients, row_loss.data()};
  const auto loop = level == SimdLevel::avx512 ? rows_avx512 : level == SimdLevel::avx2 ? rows_avx2 : rows_portable;
  fused_cpu::for_rows(n, V, [&](int64_t begin, int64_t end) { loop(chunk, begin, end); });
  double total = 0;  // in row order: the same for any number of threads
  for (double v : row_loss) total += v;
  return torch::scalar_tensor(total, torch::kFloat);
}

}  // namespace muonrun

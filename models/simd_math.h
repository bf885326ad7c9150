// exp and tanh on 16 floats at a time, for CPU loops that a call to libm
// would keep scalar (models/softcap_cross_entropy_cpu.cpp spends two of them
// per logit of the GPT-2 vocabulary).
//
// Written with GCC's generic vector types, so that one source serves every
// instruction set: inlined into a function compiled with
// __attribute__((target("avx512f"))) each operation is one zmm instruction,
// with target("avx2,fma") two ymm ones, and with the default (SSE2) four.
// The functions are always inlined: a vector of 64 bytes passed by value to
// an out-of-line function would use a different ABI in each of those (GCC's
// -Wpsabi note, which files that include this header turn off).
//
// The approximations are Cephes' expf and tanhf (S. Moshier,
// netlib.org/cephes, single/expf.c and tanhf.c): range reduction by ln 2 and
// a degree-6 polynomial; tanh by an odd polynomial below |x| = 0.625 and
// 1 - 2 / (e^{2|x|} + 1) above. tests/test_softcap_cross_entropy.cpp bounds
// their error against double-precision std::exp and std::tanh.
#pragma once

#include <cstdint>
#include <cstring>

namespace muonrun::simd {

using f32x16 = float __attribute__((vector_size(64)));
using i32x16 = int32_t __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

#define MUONRUN_SIMD_INLINE inline __attribute__((always_inline))

MUONRUN_SIMD_INLINE f32x16 load(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}

MUONRUN_SIMD_INLINE void store(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

MUONRUN_SIMD_INLINE f32x16 splat(float x) { return f32x16{} + x; }

// The same 64 bits seen as the other type (GCC's vector casts keep the bits).
MUONRUN_SIMD_INLINE f32x16 as_float(i32x16 v) { return (f32x16)v; }
MUONRUN_SIMD_INLINE i32x16 as_int(f32x16 v) { return (i32x16)v; }

// The first n lanes from p, the others `fill` (0 <= n <= 16).
MUONRUN_SIMD_INLINE f32x16 load_first(const float* p, int64_t n, float fill) {
  float lanes[kLanes];
  for (int64_t i = 0; i < kLanes; ++i) lanes[i] = fill;
  std::memcpy(lanes, p, static_cast<size_t>(n) * sizeof(float));
  return load(lanes);
}

MUONRUN_SIMD_INLINE void store_first(float* p, f32x16 v, int64_t n) {
  std::memcpy(p, &v, static_cast<size_t>(n) * sizeof(float));
}

// Lanes i < n keep v, the others become `fill`.
MUONRUN_SIMD_INLINE f32x16 keep_first(f32x16 v, int64_t n, float fill) {
  const i32x16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return lane < static_cast<int32_t>(n) ? v : splat(fill);
}

MUONRUN_SIMD_INLINE f32x16 max(f32x16 a, f32x16 b) { return a > b ? a : b; }

// The largest lane, by halving: four shuffles and four maxima.
MUONRUN_SIMD_INLINE float max_lane(f32x16 v) {
  v = max(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  v = max(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
  v = max(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
  v = max(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
  return v[0];
}

MUONRUN_SIMD_INLINE double sum_lanes(f32x16 v) {
  double s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// e^x. Below -87 the result would leave the normal floats; it is e^-87
// there (1.6e-38), and e^88 above 88. NaN stays NaN.
MUONRUN_SIMD_INLINE f32x16 exp(f32x16 x) {
  x = x < -87.0f ? splat(-87.0f) : x;
  x = x > 88.0f ? splat(88.0f) : x;
  // n = round(x / ln 2): adding 1.5 * 2^23 leaves no fraction bits.
  const float round_magic = 12582912.0f;
  const f32x16 n = (x * 1.44269504088896341f + round_magic) - round_magic;
  // r = x - n ln 2, with ln 2 in two parts so that n * part1 is exact.
  f32x16 r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  f32x16 p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const f32x16 e_r = p * (r * r) + r + 1.0f;
  // 2^n from its exponent bits; n is in [-126, 127] after the clamps.
  const i32x16 two_n = (__builtin_convertvector(n, i32x16) + 127) << 23;
  return e_r * as_float(two_n);
}

// tanh(x): x + x^3 P(x^2) for |x| < 0.625, 1 - 2 / (e^{2|x|} + 1) with the
// sign of x above. Where no lane reaches 0.625 (the soft-cap's usual case:
// with a cap of 30, logits within +-18.75) the exponential is skipped.
MUONRUN_SIMD_INLINE f32x16 tanh(f32x16 x) {
  const i32x16 bits = as_int(x);
  const f32x16 ax = as_float(bits & 0x7fffffff);
  const f32x16 z = x * x;
  f32x16 p = -5.70498872745e-3f * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const f32x16 small = (p * z) * x + x;
  if (max_lane(ax) < 0.625f) return small;
  // |x| >= 0.625: 1 - 2 / (e^{2|x|} + 1), with the sign of x; tanh is 1 in
  // float from |x| = 9.1, so e^{2|x|} is capped at e^20.
  const f32x16 e = exp(2.0f * (ax > 10.0f ? splat(10.0f) : ax));
  const f32x16 large_abs = 1.0f - 2.0f / (e + 1.0f);
  const f32x16 large = as_float(as_int(large_abs) | (bits & INT32_MIN));
  return ax < 0.625f ? small : large;
}

}  // namespace muonrun::simd

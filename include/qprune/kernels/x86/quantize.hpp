// x86 bodies of kernels/quantize.hpp (array range, linear quantization to 8-bit
// codes), one namespace per instruction set, compiled with [[gnu::target]].
// Same results as kernels/reference/quantize.hpp element for element: the value
// x / f (or x * f, or fma(x, f, zp)) is computed in float32 as the twin does,
// NaN lanes are replaced by the value that gives the zero point, the value is
// clamped in float to the code range (the bounds are integers, so clamping
// before rounding equals rounding before clamping) and converted with the
// default round-half-to-even mode.
#pragma once

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "qprune/kernels/reference/quantize.hpp"

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx512 {

#define QPRUNE_TARGET_QUANT512 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")

[[QPRUNE_TARGET_QUANT512]] inline value_range range_of(const float* x, std::size_t n) noexcept {
  if (n < 16) return reference::range_of(x, n);
  __m512 lo = _mm512_loadu_ps(x), hi = lo, bad = _mm512_setzero_ps();
  std::size_t i = 16;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
    bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));  // NaN once any element is inf or NaN
  }
  if (i < n) {
    const __m512 v = _mm512_loadu_ps(x + n - 16);  // overlaps: min/max do not mind
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
    bad = _mm512_add_ps(bad, _mm512_sub_ps(v, v));
  }
  const __m512 first = _mm512_loadu_ps(x);
  bad = _mm512_add_ps(bad, _mm512_sub_ps(first, first));
  value_range r;
  r.finite = _mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q) == 0;
  r.min = _mm512_reduce_min_ps(lo);
  r.max = _mm512_reduce_max_ps(hi);
  return r;
}

template <class T>
[[QPRUNE_TARGET_QUANT512]] inline void quantize_linear(const float* x, std::size_t n,
                                                       const linear_quantizer& q, T* out) noexcept {
  const bool fma_op = q.op == quantize_op::multiply_add;
  const std::int32_t shift = fma_op ? 0 : q.zero_point;  // added after the conversion
  const __m512 f = _mm512_set1_ps(q.factor);
  const __m512 zf = _mm512_set1_ps(static_cast<float>(q.zero_point));
  const __m512 nan_value = fma_op ? zf : _mm512_setzero_ps();
  const __m512 lo = _mm512_set1_ps(static_cast<float>(q.qmin - shift));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(q.qmax - shift));
  const __m512i add = _mm512_set1_epi32(shift);
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    __m512 y;
    switch (q.op) {
      case quantize_op::divide: y = _mm512_div_ps(v, f); break;
      case quantize_op::multiply: y = _mm512_mul_ps(v, f); break;
      default: y = _mm512_fmadd_ps(v, f, zf); break;
    }
    y = _mm512_mask_mov_ps(nan_value, _mm512_cmp_ps_mask(y, y, _CMP_ORD_Q), y);
    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
    const __m512i c = _mm512_add_epi32(_mm512_cvtps_epi32(y), add);
    _mm512_mask_cvtepi32_storeu_epi8(out + i, m, c);  // values already inside T's range
  }
}

#undef QPRUNE_TARGET_QUANT512
}  // namespace qprune::kernels::x86_avx512

namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_QUANT256 gnu::target("avx2,fma")

[[QPRUNE_TARGET_QUANT256]] inline value_range range_of(const float* x, std::size_t n) noexcept {
  if (n < 8) return reference::range_of(x, n);
  __m256 lo = _mm256_loadu_ps(x), hi = lo, bad = _mm256_sub_ps(lo, lo);
  std::size_t i = 8;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
    bad = _mm256_add_ps(bad, _mm256_sub_ps(v, v));
  }
  if (i < n) {
    const __m256 v = _mm256_loadu_ps(x + n - 8);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
    bad = _mm256_add_ps(bad, _mm256_sub_ps(v, v));
  }
  alignas(32) float l[8], h[8], b[8];
  _mm256_store_ps(l, lo);
  _mm256_store_ps(h, hi);
  _mm256_store_ps(b, bad);
  value_range r{l[0], h[0], true};
  for (int j = 0; j < 8; ++j) {
    r.min = l[j] < r.min ? l[j] : r.min;
    r.max = h[j] > r.max ? h[j] : r.max;
    r.finite = r.finite && b[j] == 0.0f;
  }
  return r;
}

template <class T>
[[QPRUNE_TARGET_QUANT256]] inline __m256i quantize8(const float* x, const linear_quantizer& q, __m256 f,
                                                    __m256 zf, __m256 nan_value, __m256 lo, __m256 hi,
                                                    __m256i add) noexcept {
  const __m256 v = _mm256_loadu_ps(x);
  __m256 y;
  switch (q.op) {
    case quantize_op::divide: y = _mm256_div_ps(v, f); break;
    case quantize_op::multiply: y = _mm256_mul_ps(v, f); break;
    default: y = _mm256_fmadd_ps(v, f, zf); break;
  }
  y = _mm256_blendv_ps(nan_value, y, _mm256_cmp_ps(y, y, _CMP_ORD_Q));
  y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
  return _mm256_add_epi32(_mm256_cvtps_epi32(y), add);
}

template <class T>
[[QPRUNE_TARGET_QUANT256]] inline void quantize_linear(const float* x, std::size_t n,
                                                       const linear_quantizer& q, T* out) noexcept {
  const bool fma_op = q.op == quantize_op::multiply_add;
  const std::int32_t shift = fma_op ? 0 : q.zero_point;
  const __m256 f = _mm256_set1_ps(q.factor);
  const __m256 zf = _mm256_set1_ps(static_cast<float>(q.zero_point));
  const __m256 nan_value = fma_op ? zf : _mm256_setzero_ps();
  const __m256 lo = _mm256_set1_ps(static_cast<float>(q.qmin - shift));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(q.qmax - shift));
  const __m256i add = _mm256_set1_epi32(shift);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = quantize8<T>(x + i, q, f, zf, nan_value, lo, hi, add);
    const __m256i b = quantize8<T>(x + i + 8, q, f, zf, nan_value, lo, hi, add);
    const __m256i c = quantize8<T>(x + i + 16, q, f, zf, nan_value, lo, hi, add);
    const __m256i d = quantize8<T>(x + i + 24, q, f, zf, nan_value, lo, hi, add);
    // Every code is inside T's range, so the saturating packs only narrow.
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i bytes = std::is_signed_v<T> ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  reference::quantize_linear(x + i, n - i, q, out + i);
}

#undef QPRUNE_TARGET_QUANT256
}  // namespace qprune::kernels::x86_avx2

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

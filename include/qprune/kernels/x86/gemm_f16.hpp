// x86 bodies of the fp16 / bf16-weight GEMM (kernels/gemm_f16.hpp). Weights are
// packed in panels of 16 (AVX-512) or 8 (AVX2) output channels, k-major:
// [N/W][K][W] 2-byte values. Each k step loads one panel row, widens it to
// float in registers (vcvtph2ps, or a 16-bit shift for bf16) and accumulates
// with FMA, in k order, exactly as the scalar twin does.
#pragma once

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>

#include "qprune/kernels/x86/fma.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "qprune/core/half.hpp"

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx512 {

#define QPRUNE_TARGET_AVX512F16 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")

struct f16_args {
  const float* x;
  index_t ldx;
  const std::uint16_t* w;  ///< packed [panels][k][16]
  index_t k;
  index_t n;
  const float* bias;
  bool relu;
};

template <class H>
[[QPRUNE_TARGET_AVX512F16]] inline __m512 widen16(const std::uint16_t* p) noexcept {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if constexpr (std::is_same_v<H, half>) {
    return _mm512_cvtph_ps(raw);
  } else {
    // bf16 -> float is a 16-bit shift; a signalling NaN is made quiet as in core/half.hpp.
    const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(w, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    return _mm512_castsi512_ps(_mm512_mask_or_epi32(w, nan, w, _mm512_set1_epi32(0x00400000)));
  }
}

template <class H, int MR, int NV>
[[QPRUNE_TARGET_AVX512F16]] inline void micro(const f16_args& g, index_t m0, index_t p0, float* y,
                                              index_t ldy) noexcept {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* xp = g.x + m0 * g.ldx;
  for (index_t p = 0; p < g.k; ++p) {
    __m512 wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) wv[v] = widen16<H>(g.w + ((p0 + v) * g.k + p) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 xv = _mm512_set1_ps(xp[r * g.ldx + p]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) x86::fma16(acc[r][v], xv, wv[v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 16;
    const index_t left = g.n - n0;
    const __mmask16 msk = left >= 16 ? static_cast<__mmask16>(0xffff)
                                     : static_cast<__mmask16>((1u << static_cast<unsigned>(left)) - 1u);
    const __m512 b = g.bias != nullptr ? _mm512_maskz_loadu_ps(msk, g.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m512 o = _mm512_add_ps(acc[r][v], b);
      if (g.relu) o = _mm512_max_ps(o, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(y + (m0 + r) * ldy + n0, msk, o);
    }
  }
}

template <class H, int NV>
[[QPRUNE_TARGET_AVX512F16]] inline void rows(const f16_args& g, index_t m, index_t p0, float* y,
                                             index_t ldy) noexcept {
  index_t m0 = 0;
  for (; m0 + 8 <= m; m0 += 8) micro<H, 8, NV>(g, m0, p0, y, ldy);
  if (m0 + 4 <= m) { micro<H, 4, NV>(g, m0, p0, y, ldy); m0 += 4; }
  if (m0 + 2 <= m) { micro<H, 2, NV>(g, m0, p0, y, ldy); m0 += 2; }
  if (m0 < m) micro<H, 1, NV>(g, m0, p0, y, ldy);
}

/// Output channels per block of work: two 16-channel panels.
inline constexpr index_t f16_block_channels = 32;

/// Rows one at a time over eight panels (as x86_avx2::each_row): a row's outputs
/// are k-ordered fma chains, and one row over two panels has only two in flight
/// (Zen 4, 1 x 1024 x 1024 fp16: 42 -> 27 us with eight).
template <class H, int NV>
[[QPRUNE_TARGET_AVX512F16]] inline void each_row(const f16_args& g, index_t m, index_t p0, float* y,
                                                 index_t ldy) noexcept {
  for (index_t r = 0; r < m; ++r) micro<H, 1, NV>(g, r, p0, y, ldy);
}

template <class H>
[[QPRUNE_TARGET_AVX512F16]] inline void gemm_f16(const f16_args& g, index_t m, index_t block_begin,
                                                 index_t block_end, float* y, index_t ldy) noexcept {
  const index_t panels = std::min((g.n + 15) / 16, block_end * 2);
  index_t p0 = block_begin * 2;
  if (m < 4) {
    for (; p0 + 8 <= panels; p0 += 8) each_row<H, 8>(g, m, p0, y, ldy);
    if (p0 + 4 <= panels) { each_row<H, 4>(g, m, p0, y, ldy); p0 += 4; }
  }
  for (; p0 + 2 <= panels; p0 += 2) rows<H, 2>(g, m, p0, y, ldy);
  if (p0 < panels) rows<H, 1>(g, m, p0, y, ldy);
}

#undef QPRUNE_TARGET_AVX512F16
}  // namespace qprune::kernels::x86_avx512

namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_AVX2F16 gnu::target("avx2,fma,f16c")

struct f16_args {
  const float* x;
  index_t ldx;
  const std::uint16_t* w;  ///< packed [panels][k][8]
  index_t k;
  index_t n;
  const float* bias;
  bool relu;
};

template <class H>
[[QPRUNE_TARGET_AVX2F16]] inline __m256 widen8(const std::uint16_t* p) noexcept {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (std::is_same_v<H, half>) {
    return _mm256_cvtph_ps(raw);
  } else {
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    return _mm256_castsi256_ps(_mm256_or_si256(w, _mm256_and_si256(nan, _mm256_set1_epi32(0x00400000))));
  }
}

template <class H, int MR, int NV>
[[QPRUNE_TARGET_AVX2F16]] inline void micro(const f16_args& g, index_t m0, index_t p0, float* y,
                                            index_t ldy) noexcept {
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* xp = g.x + m0 * g.ldx;
  for (index_t p = 0; p < g.k; ++p) {
    __m256 wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) wv[v] = widen8<H>(g.w + ((p0 + v) * g.k + p) * 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_set1_ps(xp[r * g.ldx + p]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) x86::fma8(acc[r][v], xv, wv[v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 8;
    const index_t cnt = std::min<index_t>(8, g.n - n0);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[r][v]);
      for (index_t j = 0; j < cnt; ++j) {
        float o = tmp[j] + (g.bias != nullptr ? g.bias[n0 + j] : 0.0f);
        if (g.relu && !(o > 0.0f)) o = 0.0f;
        y[(m0 + r) * ldy + n0 + j] = o;
      }
    }
  }
}

template <class H, int NV>
[[QPRUNE_TARGET_AVX2F16]] inline void rows(const f16_args& g, index_t m, index_t p0, float* y,
                                           index_t ldy) noexcept {
  index_t m0 = 0;
  for (; m0 + 4 <= m; m0 += 4) micro<H, 4, NV>(g, m0, p0, y, ldy);
  if (m0 + 2 <= m) { micro<H, 2, NV>(g, m0, p0, y, ldy); m0 += 2; }
  if (m0 < m) micro<H, 1, NV>(g, m0, p0, y, ldy);
}

/// Output channels per block of work: two 8-channel panels.
inline constexpr index_t f16_block_channels = 16;

/// Rows one at a time over eight panels: every output is one k-ordered fma chain,
/// so a row needs eight chains in flight to cover the fma latency (the
/// 4 x 2 tile has them only with four rows).
template <class H, int NV>
[[QPRUNE_TARGET_AVX2F16]] inline void each_row(const f16_args& g, index_t m, index_t p0, float* y,
                                               index_t ldy) noexcept {
  for (index_t r = 0; r < m; ++r) micro<H, 1, NV>(g, r, p0, y, ldy);
}

template <class H>
[[QPRUNE_TARGET_AVX2F16]] inline void gemm_f16(const f16_args& g, index_t m, index_t block_begin,
                                               index_t block_end, float* y, index_t ldy) noexcept {
  const index_t panels = std::min((g.n + 7) / 8, block_end * 2);
  index_t p0 = block_begin * 2;
  if (m < 4) {
    for (; p0 + 8 <= panels; p0 += 8) each_row<H, 8>(g, m, p0, y, ldy);
    if (p0 + 4 <= panels) { each_row<H, 4>(g, m, p0, y, ldy); p0 += 4; }
  }
  for (; p0 + 2 <= panels; p0 += 2) rows<H, 2>(g, m, p0, y, ldy);
  if (p0 < panels) rows<H, 1>(g, m, p0, y, ldy);
}

#undef QPRUNE_TARGET_AVX2F16
}  // namespace qprune::kernels::x86_avx2

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

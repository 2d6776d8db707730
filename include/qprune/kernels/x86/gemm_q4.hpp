// x86 bodies of the int4 grouped-weight GEMM (kernels/gemm_q4.hpp). Weights come
// in panels of W output channels (W = 16 for AVX-512, 8 for AVX2), k-blocks of 8:
// codes [N/W][Kp/8][W][4] bytes, where byte 4*c + j of a block holds channel c's
// unsigned code u(k0 + j) in its low nibble and u(k0 + 4 + j) in its high nibble
// (u = q for affine, q + 8 for int4); scales and zero points [N/W][G][W].
// Float path: each block is widened in registers and dequantized (s * (u - z_u))
// exactly as the scalar twin does, then FMA in k order. Integer path: vpdpbusd
// (VNNI) or vpmaddubsw + vpmaddwd (AVX2, exact: see q4i_block8) per group.
#pragma once

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>

#include "qprune/kernels/x86/fma.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx512 {

#define QPRUNE_TARGET_AVX512Q4 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")

/// Arguments of the float path (AVX-512, W = 16).
struct q4f_args {
  const float* x;              ///< [M, K], row stride ldx
  index_t ldx;
  const std::uint8_t* codes;   ///< [panels][kblocks][16][4]
  const float* scales;         ///< [panels][groups][16]
  const std::int32_t* zeros;   ///< [panels][groups][16], zero points of the unsigned codes
  index_t k;                   ///< true K
  index_t kblocks;             ///< groups * group_size / 8
  index_t groups;
  index_t group_size;
  index_t n;                   ///< true N, for the tail mask
  const float* bias;
  bool relu;
};

[[QPRUNE_TARGET_AVX512Q4]] inline __mmask16 q4_tail_mask(index_t n, index_t n0) noexcept {
  const index_t left = n - n0;
  if (left <= 0) return 0;
  return left >= 16 ? static_cast<__mmask16>(0xffff)
                    : static_cast<__mmask16>((1u << static_cast<unsigned>(left)) - 1u);
}

/// float(u - z_u), exactly: OR-ing the nibble into the mantissa of 2^23 gives the
/// float 2^23 + u, and subtracting zf = 2^23 + z_u (exact) leaves u - z_u exactly
/// (the same float as converting the integer difference, +0 included).
[[QPRUNE_TARGET_AVX512Q4]] inline __m512 q4_code_minus_zero(__m512i shifted, __m512 zf) noexcept {
  const __m512i f = _mm512_ternarylogic_epi32(shifted, _mm512_set1_epi32(0x0F),
                                              _mm512_set1_epi32(0x4B000000), 0xEA);  // (a & b) | c
  return _mm512_sub_ps(_mm512_castsi512_ps(f), zf);
}

/// 2^23 + z_u as floats, for q4_code_minus_zero.
[[QPRUNE_TARGET_AVX512Q4]] inline __m512 q4_zero_float(const std::int32_t* z) noexcept {
  return _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(z)), _mm512_set1_ps(8388608.0f));
}

/// The dequantized weights of k = k0 + J for NV panels: s * float(u - z_u).
template <int J, int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_widen(const __m512i* raw, const __m512* sv,
                                                 const __m512* zf, __m512* w) noexcept {
  constexpr unsigned sh = J < 4 ? 8u * J : 8u * (J - 4) + 4u;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v)
    w[v] = _mm512_mul_ps(q4_code_minus_zero(sh == 0 ? raw[v] : _mm512_srli_epi32(raw[v], sh), zf[v]), sv[v]);
}

template <int J, int MR, int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_step(__m512 (&acc)[MR][NV], const __m512i* raw,
                                                const __m512* sv, const __m512* zv, const float* xp,
                                                index_t ldx) noexcept {
  __m512 w[NV];
  q4f_widen<J, NV>(raw, sv, zv, w);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    const __m512 xv = _mm512_set1_ps(xp[r * ldx + J]);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x86::fma16(acc[r][v], xv, w[v]);
  }
}

/// MR rows x NV panels of the float path, starting at row m0 and panel p0.
template <int MR, int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_micro(const q4f_args& g, index_t m0, index_t p0, float* y,
                                                 index_t ldy) noexcept {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* xp = g.x + m0 * g.ldx;
  for (index_t gi = 0; gi < g.groups; ++gi) {
    __m512 sv[NV], zv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      sv[v] = _mm512_loadu_ps(g.scales + ((p0 + v) * g.groups + gi) * 16);
      zv[v] = q4_zero_float(g.zeros + ((p0 + v) * g.groups + gi) * 16);
    }
    const index_t end = std::min(g.k, (gi + 1) * g.group_size);
    index_t p = gi * g.group_size;
    for (; p + 8 <= end; p += 8) {
      __m512i raw[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) raw[v] = _mm512_loadu_si512(g.codes + ((p0 + v) * g.kblocks + p / 8) * 64);
      q4f_step<0, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<1, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<2, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<3, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<4, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<5, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<6, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
      q4f_step<7, MR, NV>(acc, raw, sv, zv, xp + p, g.ldx);
    }
    // A partial block (K not a multiple of 8): same arithmetic, shift counts at run time.
    if (p < end) {
      __m512i raw[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) raw[v] = _mm512_loadu_si512(g.codes + ((p0 + v) * g.kblocks + p / 8) * 64);
      for (index_t j = 0; j < end - p; ++j) {
        const __m512i sh = _mm512_set1_epi32(static_cast<int>(j < 4 ? 8 * j : 8 * (j - 4) + 4));
        __m512 w[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          w[v] = _mm512_mul_ps(q4_code_minus_zero(_mm512_srlv_epi32(raw[v], sh), zv[v]), sv[v]);
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m512 xv = _mm512_set1_ps(xp[r * g.ldx + p + j]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) x86::fma16(acc[r][v], xv, w[v]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 16;
    const __mmask16 msk = q4_tail_mask(g.n, n0);
    const __m512 b = g.bias != nullptr ? _mm512_maskz_loadu_ps(msk, g.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m512 o = _mm512_add_ps(acc[r][v], b);
      if (g.relu) o = _mm512_max_ps(o, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(y + (m0 + r) * ldy + n0, msk, o);
    }
  }
}

template <int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_rows(const q4f_args& g, index_t m, index_t p0, float* y,
                                                index_t ldy) noexcept {
  index_t m0 = 0;
  for (; m0 + 8 <= m; m0 += 8) q4f_micro<8, NV>(g, m0, p0, y, ldy);
  if (m0 + 4 <= m) { q4f_micro<4, NV>(g, m0, p0, y, ldy); m0 += 4; }
  if (m0 + 2 <= m) { q4f_micro<2, NV>(g, m0, p0, y, ldy); m0 += 2; }
  if (m0 < m) q4f_micro<1, NV>(g, m0, p0, y, ldy);
}

/// Output channels per block of work of both AVX-512 paths: two 16-channel panels.
inline constexpr index_t q4_block_channels = 32;

/// k values per chunk of the cache-blocked float path (NV * 16 * 128 floats: 16 KB).
inline constexpr index_t q4f_chunk = 128;
/// Rows from which the float path dequantizes a chunk once into an L1 buffer and
/// reuses it for every row tile (fewer rows widen in registers per tile).
inline constexpr index_t q4f_blocked_rows = 8;

/// Dequantizes k in [k0, k1) (k0 a multiple of 8) of NV panels from p0 into
/// buf[(k - k0) * NV * 16 + v * 16 + c]: the same s * float(u - z_u) as q4f_widen.
template <int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_dequant(const q4f_args& g, index_t p0, index_t k0, index_t k1,
                                                   float* buf) noexcept {
  for (index_t p = k0; p < k1; p += 8) {
    const index_t gi = p / g.group_size;
    __m512 sv[NV], zv[NV];
    __m512i raw[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      sv[v] = _mm512_loadu_ps(g.scales + ((p0 + v) * g.groups + gi) * 16);
      zv[v] = q4_zero_float(g.zeros + ((p0 + v) * g.groups + gi) * 16);
      raw[v] = _mm512_loadu_si512(g.codes + ((p0 + v) * g.kblocks + p / 8) * 64);
    }
    float* o = buf + (p - k0) * NV * 16;
    __m512 w[NV];
    if (p + 8 <= k1) {
      // clang-format off
      q4f_widen<0, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (0 * NV + v) * 16, w[v]);
      q4f_widen<1, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (1 * NV + v) * 16, w[v]);
      q4f_widen<2, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (2 * NV + v) * 16, w[v]);
      q4f_widen<3, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (3 * NV + v) * 16, w[v]);
      q4f_widen<4, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (4 * NV + v) * 16, w[v]);
      q4f_widen<5, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (5 * NV + v) * 16, w[v]);
      q4f_widen<6, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (6 * NV + v) * 16, w[v]);
      q4f_widen<7, NV>(raw, sv, zv, w); for (int v = 0; v < NV; ++v) _mm512_storeu_ps(o + (7 * NV + v) * 16, w[v]);
      // clang-format on
    } else {
      for (index_t j = 0; j < k1 - p; ++j) {
        const __m512i sh = _mm512_set1_epi32(static_cast<int>(j < 4 ? 8 * j : 8 * (j - 4) + 4));
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          _mm512_storeu_ps(o + (j * NV + v) * 16,
                           _mm512_mul_ps(q4_code_minus_zero(_mm512_srlv_epi32(raw[v], sh), zv[v]), sv[v]));
        }
      }
    }
  }
}

/// MR rows x NV panels over the chunk [k0, k1) of dequantized weights in buf.
/// The accumulators start at 0 on the first chunk, else from y (the previous
/// chunk's exact float partial sums), so each output still sees one fma chain
/// in k order; the last chunk adds the bias and applies the ReLU.
template <int MR, int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_micro_buf(const q4f_args& g, index_t m0, index_t p0, index_t k0,
                                                     index_t k1, const float* buf, float* y,
                                                     index_t ldy) noexcept {
  __m512 acc[MR][NV];
  __mmask16 msk[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) msk[v] = q4_tail_mask(g.n, (p0 + v) * 16);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = k0 == 0 ? _mm512_setzero_ps()
                          : _mm512_maskz_loadu_ps(msk[v], y + (m0 + r) * ldy + (p0 + v) * 16);
  const float* xp = g.x + m0 * g.ldx + k0;
  for (index_t p = 0; p < k1 - k0; ++p) {
    __m512 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(buf + (p * NV + v) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 xv = _mm512_set1_ps(xp[r * g.ldx + p]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) x86::fma16(acc[r][v], xv, wv[v]);
    }
  }
  const bool last = k1 == g.k;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 16;
    const __m512 b = last && g.bias != nullptr ? _mm512_maskz_loadu_ps(msk[v], g.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m512 o = acc[r][v];
      if (last) {
        o = _mm512_add_ps(o, b);
        if (g.relu) o = _mm512_max_ps(o, _mm512_setzero_ps());
      }
      _mm512_mask_storeu_ps(y + (m0 + r) * ldy + n0, msk[v], o);
    }
  }
}

template <int NV>
[[QPRUNE_TARGET_AVX512Q4]] inline void q4f_rows_blocked(const q4f_args& g, index_t m, index_t p0, float* y,
                                                        index_t ldy) noexcept {
  alignas(64) float buf[q4f_chunk * NV * 16];
  for (index_t k0 = 0; k0 < g.k; k0 += q4f_chunk) {
    const index_t k1 = std::min(g.k, k0 + q4f_chunk);
    q4f_dequant<NV>(g, p0, k0, k1, buf);
    index_t m0 = 0;
    for (; m0 + 8 <= m; m0 += 8) q4f_micro_buf<8, NV>(g, m0, p0, k0, k1, buf, y, ldy);
    if (m0 + 4 <= m) { q4f_micro_buf<4, NV>(g, m0, p0, k0, k1, buf, y, ldy); m0 += 4; }
    if (m0 + 2 <= m) { q4f_micro_buf<2, NV>(g, m0, p0, k0, k1, buf, y, ldy); m0 += 2; }
    if (m0 < m) q4f_micro_buf<1, NV>(g, m0, p0, k0, k1, buf, y, ldy);
  }
}

/// Float path over all M rows and the channel blocks [block_begin, block_end).
[[QPRUNE_TARGET_AVX512Q4]] inline void gemm_q4f(const q4f_args& g, index_t m, index_t block_begin,
                                                index_t block_end, float* y, index_t ldy) noexcept {
  const index_t panels = std::min((g.n + 15) / 16, block_end * 2);
  index_t p0 = block_begin * 2;
  if (m >= q4f_blocked_rows && g.k > 0) {
    for (; p0 + 2 <= panels; p0 += 2) q4f_rows_blocked<2>(g, m, p0, y, ldy);
    if (p0 < panels) q4f_rows_blocked<1>(g, m, p0, y, ldy);
    return;
  }
  for (; p0 + 2 <= panels; p0 += 2) q4f_rows<2>(g, m, p0, y, ldy);
  if (p0 < panels) q4f_rows<1>(g, m, p0, y, ldy);
}

/// Quantizes rows of x to int8 per group, bit-identical to
/// reference::quantize_q8_rows (max is exact in any order; the division and
/// vcvtps2dq's round-to-nearest-even match nearbyint(x / d)). Returns false if
/// an element is NaN or infinite.
[[QPRUNE_TARGET_AVX512Q4]] inline bool q4_quantize_q8_rows(index_t m, index_t k, const float* x,
                                                        index_t ldx, index_t group_size,
                                                        std::int8_t* xq, index_t ldq, float* d,
                                                        std::int32_t* sx) noexcept {
  const index_t groups = k / group_size + (k % group_size != 0 ? 1 : 0);
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 inf = _mm512_set1_ps(__builtin_huge_valf());
  __mmask16 bad = 0;
  for (index_t i = 0; i < m; ++i) {
    for (index_t g = 0; g < groups; ++g) {
      const index_t b = g * group_size;
      const float* xr = x + i * ldx + b;
      const index_t len = std::min(group_size, k - b);
      __m512 amax = _mm512_setzero_ps();
      for (index_t c = 0; c < len; c += 16) {
        const __mmask16 mk = q4_tail_mask(len, c);
        const __m512 a = _mm512_and_ps(_mm512_maskz_loadu_ps(mk, xr + c), abs_mask);
        bad = static_cast<__mmask16>(bad | _mm512_cmp_ps_mask(a, inf, _CMP_NLT_UQ));
        amax = _mm512_max_ps(amax, a);
      }
      const float dg = _mm512_reduce_max_ps(amax) / 127.0f;
      const __m512 dv = _mm512_set1_ps(dg);
      __m512i sum = _mm512_setzero_si512();
      std::int8_t* qr = xq + i * ldq + b;
      for (index_t c = 0; c < group_size; c += 16) {
        const __mmask16 mk = dg != 0.0f ? q4_tail_mask(len, c) : static_cast<__mmask16>(0);
        __m512i q = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(mk, xr + c), dv));
        q = _mm512_maskz_mov_epi32(mk, q);
        q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
        sum = _mm512_add_epi32(sum, q);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + c), _mm512_cvtepi32_epi8(q));
      }
      d[i * groups + g] = dg;
      sx[i * groups + g] = _mm512_reduce_add_epi32(sum);
    }
  }
  return bad == 0;
}

#undef QPRUNE_TARGET_AVX512Q4
}  // namespace qprune::kernels::x86_avx512

namespace qprune::kernels::x86_avx512_vnni {

#define QPRUNE_TARGET_VNNIQ4 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")

/// Arguments of the integer path (AVX-512 VNNI, W = 16).
struct q4i_args {
  const std::int8_t* xq;       ///< [M, groups * group_size] int8 codes, row stride ldq
  index_t ldq;
  const float* d;              ///< [M, groups] activation scales
  const std::int32_t* sx;      ///< [M, groups] activation code sums
  const std::uint8_t* codes;   ///< [panels][kblocks][16][4]
  const float* scales;         ///< [panels][groups][16]
  const std::int32_t* zeros;   ///< [panels][groups][16]
  index_t kblocks;
  index_t groups;
  index_t group_size;
  index_t n;
  const float* bias;
  bool relu;
};

[[QPRUNE_TARGET_VNNIQ4]] inline void q4_dpbusd(__m512i& acc, __m512i a, __m512i b) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
#else
  acc = _mm512_dpbusd_epi32(acc, a, b);
#endif
}

/// MR rows x NV panels of the integer path. Per group: S = sum u * qx over the
/// group's 8-blocks with vpdpbusd (u8 codes in [0, 15] x s8 activations, exact
/// int32), S -= z_u * sx (vpmaddwd: z_u in [0, 15] and |sx| <= 32512 fit int16),
/// then acc = fma(float(S), d * s, acc).
template <int MR, int NV>
[[QPRUNE_TARGET_VNNIQ4]] inline void q4i_micro(const q4i_args& g, index_t m0, index_t p0, float* y,
                                               index_t ldy) noexcept {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const std::int8_t* xp = g.xq + m0 * g.ldq;
  const index_t bpg = g.group_size / 8;
  for (index_t gi = 0; gi < g.groups; ++gi) {
    __m512i s[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) s[r][v] = _mm512_setzero_si512();
    for (index_t kb = gi * bpg; kb < (gi + 1) * bpg; ++kb) {
      __m512i lo[NV], hi[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m512i raw = _mm512_loadu_si512(g.codes + ((p0 + v) * g.kblocks + kb) * 64);
        lo[v] = _mm512_and_si512(raw, low4);
        hi[v] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
      }
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        std::int32_t w0, w1;
        std::memcpy(&w0, xp + r * g.ldq + kb * 8, 4);
        std::memcpy(&w1, xp + r * g.ldq + kb * 8 + 4, 4);
        const __m512i xa = _mm512_set1_epi32(w0), xb = _mm512_set1_epi32(w1);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          q4_dpbusd(s[r][v], lo[v], xa);
          q4_dpbusd(s[r][v], hi[v], xb);
        }
      }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m512 sv = _mm512_loadu_ps(g.scales + ((p0 + v) * g.groups + gi) * 16);
      const __m512i zv = _mm512_loadu_si512(g.zeros + ((p0 + v) * g.groups + gi) * 16);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const index_t e = (m0 + r) * g.groups + gi;
        const __m512i corr = _mm512_madd_epi16(zv, _mm512_set1_epi32(g.sx[e]));
        const __m512 c = _mm512_mul_ps(_mm512_set1_ps(g.d[e]), sv);
        x86::fma16(acc[r][v], _mm512_cvtepi32_ps(_mm512_sub_epi32(s[r][v], corr)), c);
      }
    }
  }
#pragma GCC unroll 4
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

template <int NV>
[[QPRUNE_TARGET_VNNIQ4]] inline void q4i_rows(const q4i_args& g, index_t m, index_t p0, float* y,
                                              index_t ldy) noexcept {
  index_t m0 = 0;
  // 8 x 16 tiles unpack each weight block once for 16 vpdpbusd (4 x 32 would need too many registers).
  for (; m0 + 8 <= m; m0 += 8)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) q4i_micro<8, 1>(g, m0, p0 + v, y, ldy);
  if (m0 + 4 <= m) { q4i_micro<4, NV>(g, m0, p0, y, ldy); m0 += 4; }
  if (m0 + 2 <= m) { q4i_micro<2, NV>(g, m0, p0, y, ldy); m0 += 2; }
  if (m0 < m) q4i_micro<1, NV>(g, m0, p0, y, ldy);
}

/// Integer path over all M rows and the channel blocks [block_begin, block_end)
/// (x86_avx512::q4_block_channels = 32 channels each).
[[QPRUNE_TARGET_VNNIQ4]] inline void gemm_q4i(const q4i_args& g, index_t m, index_t block_begin,
                                              index_t block_end, float* y, index_t ldy) noexcept {
  const index_t panels = std::min((g.n + 15) / 16, block_end * 2);
  index_t p0 = block_begin * 2;
  for (; p0 + 2 <= panels; p0 += 2) q4i_rows<2>(g, m, p0, y, ldy);
  if (p0 < panels) q4i_rows<1>(g, m, p0, y, ldy);
}

#undef QPRUNE_TARGET_VNNIQ4
}  // namespace qprune::kernels::x86_avx512_vnni

namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_AVX2Q4 gnu::target("avx2,fma,f16c")

/// Arguments of the AVX2 float path (W = 8).
struct q4f_args {
  const float* x;
  index_t ldx;
  const std::uint8_t* codes;   ///< [panels][kblocks][8][4]
  const float* scales;         ///< [panels][groups][8]
  const std::int32_t* zeros;   ///< [panels][groups][8]
  index_t k;
  index_t kblocks;
  index_t groups;
  index_t group_size;
  index_t n;
  const float* bias;
  bool relu;
};

template <int MR, int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4f_micro(const q4f_args& g, index_t m0, index_t p0, float* y,
                                               index_t ldy) noexcept {
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  const float* xp = g.x + m0 * g.ldx;
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  for (index_t gi = 0; gi < g.groups; ++gi) {
    const index_t end = std::min(g.k, (gi + 1) * g.group_size);
    for (index_t p = gi * g.group_size; p < end; p += 8) {
      __m256i raw[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        raw[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.codes + ((p0 + v) * g.kblocks + p / 8) * 32));
      const index_t cnt = std::min<index_t>(8, end - p);
#pragma GCC unroll 8
      for (index_t j = 0; j < cnt; ++j) {
        const __m128i sh = _mm_cvtsi32_si128(static_cast<int>(j < 4 ? 8 * j : 8 * (j - 4) + 4));
        __m256 w[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const __m256i c = _mm256_and_si256(_mm256_srl_epi32(raw[v], sh), low4);
          const __m256i z = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(g.zeros + ((p0 + v) * g.groups + gi) * 8));
          const __m256 s = _mm256_loadu_ps(g.scales + ((p0 + v) * g.groups + gi) * 8);
          w[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, z)), s);
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m256 xv = _mm256_set1_ps(xp[r * g.ldx + p + j]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) x86::fma8(acc[r][v], xv, w[v]);
        }
      }
    }
  }
#pragma GCC unroll 4
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

template <int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4f_rows(const q4f_args& g, index_t m, index_t p0, float* y,
                                              index_t ldy) noexcept {
  index_t m0 = 0;
  for (; m0 + 4 <= m; m0 += 4) q4f_micro<4, NV>(g, m0, p0, y, ldy);
  if (m0 + 2 <= m) { q4f_micro<2, NV>(g, m0, p0, y, ldy); m0 += 2; }
  if (m0 < m) q4f_micro<1, NV>(g, m0, p0, y, ldy);
}

/// Output channels per block of work of the AVX2 paths: two 8-channel sub-panels.
inline constexpr index_t q4_block_channels = 16;

/// k values per chunk of the cache-blocked AVX2 float path (NV * 8 * 256 floats: 16 KB).
inline constexpr index_t q4f_chunk = 256;
/// Rows from which the AVX2 float path dequantizes chunks into an L1 buffer.
inline constexpr index_t q4f_blocked_rows = 8;

/// s * float(u - z_u) of k = k0 + j for one 8-channel panel (the twin's product).
[[QPRUNE_TARGET_AVX2Q4]] inline __m256 q4f_widen8(__m256i raw, unsigned sh, __m256i z, __m256 s) noexcept {
  const __m256i c = _mm256_and_si256(_mm256_srl_epi32(raw, _mm_cvtsi32_si128(static_cast<int>(sh))),
                                     _mm256_set1_epi32(0x0F));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, z)), s);
}

/// Dequantizes k in [k0, k1) of NV panels from p0 into buf[(k - k0) * NV * 8 + v * 8 + c].
template <int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4f_dequant(const q4f_args& g, index_t p0, index_t k0, index_t k1,
                                                 float* buf) noexcept {
  for (index_t p = k0; p < k1; p += 8) {
    const index_t gi = p / g.group_size;
    const index_t cnt = std::min<index_t>(8, k1 - p);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m256 sv = _mm256_loadu_ps(g.scales + ((p0 + v) * g.groups + gi) * 8);
      const __m256i zv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.zeros + ((p0 + v) * g.groups + gi) * 8));
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.codes + ((p0 + v) * g.kblocks + p / 8) * 32));
      float* o = buf + (p - k0) * NV * 8 + v * 8;
#pragma GCC unroll 8
      for (index_t j = 0; j < cnt; ++j)
        _mm256_storeu_ps(o + j * NV * 8, q4f_widen8(raw, static_cast<unsigned>(j < 4 ? 8 * j : 8 * (j - 4) + 4), zv, sv));
    }
  }
}

/// MR rows x NV panels over the chunk [k0, k1) in buf; partial sums kept in y
/// between chunks (exact), bias and ReLU on the last chunk, as on AVX-512.
template <int MR, int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4f_micro_buf(const q4f_args& g, index_t m0, index_t p0, index_t k0,
                                                   index_t k1, const float* buf, float* y,
                                                   index_t ldy) noexcept {
  __m256 acc[MR][NV];
  index_t cnt[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) cnt[v] = std::min<index_t>(8, g.n - (p0 + v) * 8);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      alignas(32) float tmp[8] = {};
      if (k0 != 0)
        for (index_t j = 0; j < cnt[v]; ++j) tmp[j] = y[(m0 + r) * ldy + (p0 + v) * 8 + j];
      acc[r][v] = _mm256_load_ps(tmp);
    }
  const float* xp = g.x + m0 * g.ldx + k0;
  for (index_t p = 0; p < k1 - k0; ++p) {
    __m256 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_loadu_ps(buf + (p * NV + v) * 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_set1_ps(xp[r * g.ldx + p]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) x86::fma8(acc[r][v], xv, wv[v]);
    }
  }
  const bool last = k1 == g.k;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 8;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[r][v]);
      for (index_t j = 0; j < cnt[v]; ++j) {
        float o = tmp[j];
        if (last) {
          o = o + (g.bias != nullptr ? g.bias[n0 + j] : 0.0f);
          if (g.relu && !(o > 0.0f)) o = 0.0f;
        }
        y[(m0 + r) * ldy + n0 + j] = o;
      }
    }
  }
}

template <int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4f_rows_blocked(const q4f_args& g, index_t m, index_t p0, float* y,
                                                      index_t ldy) noexcept {
  alignas(32) float buf[q4f_chunk * NV * 8];
  for (index_t k0 = 0; k0 < g.k; k0 += q4f_chunk) {
    const index_t k1 = std::min(g.k, k0 + q4f_chunk);
    q4f_dequant<NV>(g, p0, k0, k1, buf);
    index_t m0 = 0;
    for (; m0 + 4 <= m; m0 += 4) q4f_micro_buf<4, NV>(g, m0, p0, k0, k1, buf, y, ldy);
    if (m0 + 2 <= m) { q4f_micro_buf<2, NV>(g, m0, p0, k0, k1, buf, y, ldy); m0 += 2; }
    if (m0 < m) q4f_micro_buf<1, NV>(g, m0, p0, k0, k1, buf, y, ldy);
  }
}

/// AVX2 float path (W = 8) over all M rows and the channel blocks [block_begin, block_end).
[[QPRUNE_TARGET_AVX2Q4]] inline void gemm_q4f(const q4f_args& g, index_t m, index_t block_begin,
                                              index_t block_end, float* y, index_t ldy) noexcept {
  const index_t panels = std::min((g.n + 7) / 8, block_end * 2);
  index_t p0 = block_begin * 2;
  if (m >= q4f_blocked_rows && g.k > 0) {
    for (; p0 + 2 <= panels; p0 += 2) q4f_rows_blocked<2>(g, m, p0, y, ldy);
    if (p0 < panels) q4f_rows_blocked<1>(g, m, p0, y, ldy);
    return;
  }
  for (; p0 + 2 <= panels; p0 += 2) q4f_rows<2>(g, m, p0, y, ldy);
  if (p0 < panels) q4f_rows<1>(g, m, p0, y, ldy);
}

/// Arguments of the AVX2 integer path. It runs on 8-channel sub-panels of
/// panels W channels wide (8 when packed for AVX2, 16 when packed for AVX-512
/// without VNNI).
struct q4i_args {
  const std::int8_t* xq;
  index_t ldq;
  const float* d;
  const std::int32_t* sx;
  const std::uint8_t* codes;   ///< [panels][kblocks][W][4]
  const float* scales;         ///< [panels][groups][W]
  const std::int32_t* zeros;   ///< [panels][groups][W]
  index_t kblocks;
  index_t groups;
  index_t group_size;
  index_t n;
  const float* bias;
  bool relu;
};

/// MR rows x NV 8-channel sub-panels starting at sub-panel q0; W = panel width.
/// Per 8-block: vpmaddubsw(u, qx) for the low and the high nibbles, added in
/// int16, then vpmaddwd with ones into int32. Exact: u in [0, 15] and
/// |qx| <= 127, so a vpmaddubsw pair is at most 2 * 15 * 127 = 3810 and the two
/// added 7620, far from int16 saturation (32767).
template <int W, int MR, int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4i_micro(const q4i_args& g, index_t m0, index_t q0, float* y,
                                               index_t ldy) noexcept {
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  const std::int8_t* xp = g.xq + m0 * g.ldq;
  const index_t bpg = g.group_size / 8;
  index_t pan[NV], off[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    pan[v] = (q0 + v) * 8 / W;
    off[v] = (q0 + v) * 8 % W;
  }
  for (index_t gi = 0; gi < g.groups; ++gi) {
    __m256i s[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) s[r][v] = _mm256_setzero_si256();
    for (index_t kb = gi * bpg; kb < (gi + 1) * bpg; ++kb) {
      __m256i lo[NV], hi[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m256i raw = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(g.codes + ((pan[v] * g.kblocks + kb) * W + off[v]) * 4));
        lo[v] = _mm256_and_si256(raw, low4);
        hi[v] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
      }
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        std::int32_t w0, w1;
        std::memcpy(&w0, xp + r * g.ldq + kb * 8, 4);
        std::memcpy(&w1, xp + r * g.ldq + kb * 8 + 4, 4);
        const __m256i xa = _mm256_set1_epi32(w0), xb = _mm256_set1_epi32(w1);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(lo[v], xa), _mm256_maddubs_epi16(hi[v], xb));
          s[r][v] = _mm256_add_epi32(s[r][v], _mm256_madd_epi16(t, ones));
        }
      }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const index_t po = (pan[v] * g.groups + gi) * W + off[v];
      const __m256 sv = _mm256_loadu_ps(g.scales + po);
      const __m256i zv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.zeros + po));
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const index_t e = (m0 + r) * g.groups + gi;
        const __m256i corr = _mm256_madd_epi16(zv, _mm256_set1_epi32(g.sx[e]));
        const __m256 c = _mm256_mul_ps(_mm256_set1_ps(g.d[e]), sv);
        x86::fma8(acc[r][v], _mm256_cvtepi32_ps(_mm256_sub_epi32(s[r][v], corr)), c);
      }
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (q0 + v) * 8;
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

template <int W, int NV>
[[QPRUNE_TARGET_AVX2Q4]] inline void q4i_rows(const q4i_args& g, index_t m, index_t q0, float* y,
                                              index_t ldy) noexcept {
  index_t m0 = 0;
  for (; m0 + 2 <= m; m0 += 2) q4i_micro<W, 2, NV>(g, m0, q0, y, ldy);
  if (m0 < m) q4i_micro<W, 1, NV>(g, m0, q0, y, ldy);
}

/// AVX2 integer path over all M rows and the blocks [block_begin, block_end)
/// of 16 channels (two 8-channel sub-panels) each; W = the packed panel width.
template <int W>
[[QPRUNE_TARGET_AVX2Q4]] inline void gemm_q4i(const q4i_args& g, index_t m, index_t block_begin,
                                              index_t block_end, float* y, index_t ldy) noexcept {
  const index_t subs = std::min((g.n + 7) / 8, block_end * 2);
  index_t q0 = block_begin * 2;
  for (; q0 + 2 <= subs; q0 += 2) q4i_rows<W, 2>(g, m, q0, y, ldy);
  if (q0 < subs) q4i_rows<W, 1>(g, m, q0, y, ldy);
}

/// AVX2 twin of x86_avx512::q4_quantize_q8_rows: whole groups in vectors, a
/// partial last group through reference-identical scalar code (caller passes it).
[[QPRUNE_TARGET_AVX2Q4]] inline bool q4_quantize_q8_group(const float* xr, index_t group_size,
                                                            std::int8_t* qr, float* d,
                                                            std::int32_t* sx) noexcept {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 inf = _mm256_set1_ps(__builtin_huge_valf());
  __m256 amax = _mm256_setzero_ps();
  int bad = 0;
  for (index_t c = 0; c < group_size; c += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(xr + c), abs_mask);
    bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, inf, _CMP_NLT_UQ));
    amax = _mm256_max_ps(amax, a);
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, amax);
  float mx = 0.0f;
  for (float v : t) mx = v > mx ? v : mx;
  const float dg = mx / 127.0f;
  __m256i sum = _mm256_setzero_si256();
  if (dg != 0.0f) {
    const __m256 dv = _mm256_set1_ps(dg);
    for (index_t c = 0; c < group_size; c += 8) {
      __m256i q = _mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(xr + c), dv));
      q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));
      sum = _mm256_add_epi32(sum, q);
      const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(qr + c), _mm_packs_epi16(p16, p16));
    }
  } else {
    std::memset(qr, 0, static_cast<std::size_t>(group_size));
  }
  alignas(32) std::int32_t u[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(u), sum);
  std::int32_t total = 0;
  for (std::int32_t v : u) total += v;
  *d = dg;
  *sx = total;
  return bad == 0;
}

#undef QPRUNE_TARGET_AVX2Q4
}  // namespace qprune::kernels::x86_avx2

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

// x86 bodies of the direct int8 depthwise conv (kernels/conv2d_s8.hpp; channel
// multiplier 1), vectorised over channels, one namespace per instruction set
// with [[gnu::target]]. Every name here starts with dw_ (the namespaces are
// shared with other kernels).
//
// Arithmetic (exact, int32 lanes): padding taps read the zero point, so
//   acc[c] = sum_t x[t][c] * w[t][c] - zp * sum_t w[t][c]  =  sum_t (x[t][c] - zp) * w[t][c].
// x is widened to int32 lanes (uint8 zero-, int8 sign-extended); each weight is
// stored as an int32 lane whose low int16 half is w and high half 0, so vpmaddwd
// gives x_lo * w + x_hi * 0 = x * w exactly (|x| <= 255, |w| <= 128). The sums
// wrap modulo 2^32 and the correction is exact modulo 2^32, hence exact whenever
// the true result fits in int32 (kernels/gemm_s8.hpp's K bound, checked at the API).
#pragma once

#include "qprune/core/config.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/kernels/output_stage.hpp"
#include "qprune/kernels/reference/conv2d_s8.hpp"
#include "qprune/kernels/x86/gemm_s8.hpp"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace qprune::kernels {

/// Arguments of the depthwise kernels (any ISA).
struct dw_args {
  const conv2d_geometry* g;   ///< geometry (batch = the input's), groups == in_c == out_c
  const std::int32_t* w;      ///< packed weights [kernel_h * kernel_w][cpad], int16 in the low half
  index_t cpad;               ///< channels rounded up to 16, padded weights 0
  const std::int32_t* zcorr;  ///< zp * sum_t w[t][c] (mod 2^32), cpad entries
  std::int32_t zp;            ///< activation zero point (read by padding taps)
};

}  // namespace qprune::kernels

#if QPRUNE_X86
#include <immintrin.h>

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx512 {

#define QPRUNE_TARGET_DW512 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")

template <class Ta>
[[QPRUNE_TARGET_DW512]] inline __m512i dw_load16(const Ta* p) noexcept {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (std::is_signed_v<Ta>) return _mm512_cvtepi8_epi32(b);
  else return _mm512_cvtepu8_epi32(b);
}
template <class Ta>
[[QPRUNE_TARGET_DW512]] inline __m512i dw_load16(const Ta* p, __mmask16 m) noexcept {
  const __m128i b = _mm_maskz_loadu_epi8(m, p);
  if constexpr (std::is_signed_v<Ta>) return _mm512_cvtepi8_epi32(b);
  else return _mm512_cvtepu8_epi32(b);
}

// Output stages: constants prepared once per 16 channels, applied per pixel.
struct dw_int32_consts {};
[[QPRUNE_TARGET_DW512]] inline dw_int32_consts dw_prepare(const store_int32&, __mmask16, index_t) noexcept {
  return {};
}
[[QPRUNE_TARGET_DW512]] inline void dw_store(__m512i acc, __mmask16 m, std::int32_t* c,
                                             const dw_int32_consts&) noexcept {
  _mm512_mask_storeu_epi32(c, m, acc);
}

struct dw_float_consts {
  __m512 scale, bias;
  bool relu;
};
[[QPRUNE_TARGET_DW512]] inline dw_float_consts dw_prepare(const store_float& st, __mmask16 m,
                                                          index_t c0) noexcept {
  return {_mm512_maskz_loadu_ps(m, st.scale + c0),
          st.bias != nullptr ? _mm512_maskz_loadu_ps(m, st.bias + c0) : _mm512_setzero_ps(), st.relu};
}
[[QPRUNE_TARGET_DW512]] inline void dw_store(__m512i acc, __mmask16 m, float* y,
                                             const dw_float_consts& k) noexcept {
  __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), k.scale, k.bias);
  if (k.relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  _mm512_mask_storeu_ps(y, m, v);
}

/// The requantizing stage on 16 lanes, the same arithmetic as the VNNI GEMM's
/// (kernels/x86/gemm_s8.hpp), bit-identical to quant::requantize_value with
/// double rounding: s = acc + bias; x = s << left; h = (x * M0 + 2^30) >> 31 (int64);
/// r = (h >> right) + ((h & mask) > (mask >> 1) + (h < 0)); clamp(r + zp, lo, hi).
struct dw_requant_consts {
  __m512i bias, left, right, mult, mult_odd, mask, half_mask, zp, lo, hi;
};
template <class T>
[[QPRUNE_TARGET_DW512]] inline dw_requant_consts dw_prepare(const store_requant<T>& st, __mmask16 m,
                                                            index_t c0) noexcept {
  const __m512i shift = _mm512_maskz_loadu_epi32(m, st.shift + c0);
  const __m512i zero = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  dw_requant_consts k;
  k.bias = st.bias != nullptr ? _mm512_maskz_loadu_epi32(m, st.bias + c0) : zero;
  k.left = _mm512_max_epi32(shift, zero);
  k.right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
  k.mult = _mm512_maskz_loadu_epi32(m, st.multiplier + c0);
  k.mult_odd = _mm512_srli_epi64(k.mult, 32);
  k.mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, k.right), one);
  k.half_mask = _mm512_srli_epi32(k.mask, 1);
  k.zp = _mm512_set1_epi32(st.out_zero_point);
  k.lo = _mm512_set1_epi32(st.act_min);
  k.hi = _mm512_set1_epi32(st.act_max);
  return k;
}
template <class T>
[[QPRUNE_TARGET_DW512]] inline void dw_store(__m512i acc, __mmask16 m, T* q,
                                             const dw_requant_consts& k) noexcept {
  const __m512i x = _mm512_sllv_epi32(_mm512_add_epi32(acc, k.bias), k.left);
  const __m512i round = _mm512_set1_epi64(std::int64_t{1} << 30);
  const __m512i even = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, k.mult), round), 31);
  const __m512i odd = _mm512_srai_epi64(
      _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), k.mult_odd), round), 31);
  const __m512i h =
      _mm512_mask_blend_epi32(static_cast<__mmask16>(0xAAAA), even, _mm512_slli_epi64(odd, 32));
  const __m512i rem = _mm512_and_si512(h, k.mask);
  const __m512i threshold = _mm512_add_epi32(k.half_mask, _mm512_srli_epi32(h, 31));
  __m512i r = _mm512_srav_epi32(h, k.right);
  r = _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(rem, threshold), r, _mm512_set1_epi32(1));
  r = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, k.zp), k.lo), k.hi);
  _mm_mask_storeu_epi8(q, m, _mm512_cvtepi32_epi8(r));
}

/// acc += vpmaddwd(x, w) (two instructions), or with Vnni one vpdpwssd, the same
/// sum: only the low int16 half of each weight lane is non-zero. GCC 12 copies
/// intrinsic accumulators around the tap loop (as in x86/gemm_s8.hpp), so on GCC
/// both are inline assembly with a tied accumulator; the assembler takes
/// vpdpwssd whatever the function's target, and dw_conv<true> is only dispatched
/// on CPUs with AVX512_VNNI.
template <bool Vnni>
[[QPRUNE_TARGET_DW512]] inline void dw_madd(__m512i& acc, __m512i x, __m512i w) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  if constexpr (Vnni) {
    asm("vpdpwssd %[w], %[x], %[acc]" : [acc] "+v"(acc) : [x] "v"(x), [w] "v"(w));
  } else {
    __m512i t;
    asm("vpmaddwd %[w], %[x], %[t]\n\tvpaddd %[t], %[acc], %[acc]"
        : [acc] "+v"(acc), [t] "=&v"(t)
        : [x] "v"(x), [w] "v"(w));
  }
#else
  acc = _mm512_add_epi32(acc, _mm512_madd_epi16(x, w));
#endif
}

/// The channel block's per-lane state: masks, zero-point corrections, stage constants.
template <int NV, class Consts>
struct dw_lanes {
  __mmask16 mk[NV];
  __m512i zc[NV];
  Consts consts[NV];
};

/// NP horizontally adjacent output pixels (b, oh, ow .. ow + NP - 1) whose taps all lie
/// inside the input: no bounds checks, each weight vector loaded once for NP pixels.
template <bool Vnni, int NP, int NV, bool Masked, class Ta, class Out, class Lanes>
[[QPRUNE_TARGET_DW512]] inline void dw_interior(const dw_args& a, const Ta* x, index_t b, index_t oh,
                                                index_t ow, index_t c0, const Lanes& l, Out* out,
                                                index_t ldo) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t c = g.in_c, xstep = g.stride_w * c, kstep = g.dilation_w * c;
  __m512i acc[NP][NV];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_setzero_si512();
  const index_t ih0 = oh * g.stride_h - g.pad_top, iw0 = ow * g.stride_w - g.pad_left;
  for (index_t kh = 0; kh < g.kernel_h; ++kh) {
    const Ta* xrow = x + ((b * g.in_h + ih0 + kh * g.dilation_h) * g.in_w + iw0) * c + c0;
    const std::int32_t* wrow = a.w + kh * g.kernel_w * a.cpad + c0;
    for (index_t kw = 0; kw < g.kernel_w; ++kw) {
      const Ta* xp = xrow + kw * kstep;
      const std::int32_t* wp = wrow + kw * a.cpad;
      __m512i wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(wp + 16 * v);
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const Ta* q = xp + p * xstep + 16 * v;
          dw_madd<Vnni>(acc[p][v], (Masked && v == NV - 1) ? dw_load16(q, l.mk[v]) : dw_load16(q), wv[v]);
        }
    }
  }
  Out* y = out + ((b * g.out_h() + oh) * g.out_w() + ow) * ldo + c0;
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      dw_store(_mm512_sub_epi32(acc[p][v], l.zc[v]), l.mk[v], y + p * ldo + 16 * v, l.consts[v]);
}

/// One output pixel near the border: taps outside the input read the zero point.
template <bool Vnni, int NV, bool Masked, class Ta, class Out, class Lanes>
[[QPRUNE_TARGET_DW512]] inline void dw_edge(const dw_args& a, const Ta* x, index_t b, index_t oh,
                                            index_t ow, index_t c0, const Lanes& l, Out* out,
                                            index_t ldo) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t c = g.in_c;
  const __m512i zpv = _mm512_set1_epi32(a.zp);
  __m512i acc[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_si512();
  for (index_t kh = 0; kh < g.kernel_h; ++kh) {
    const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
    const bool row_ok = ih >= 0 && ih < g.in_h;
    const std::int32_t* wrow = a.w + kh * g.kernel_w * a.cpad + c0;
    const Ta* xrow = row_ok ? x + ((b * g.in_h + ih) * g.in_w) * c + c0 : x;
    for (index_t kw = 0; kw < g.kernel_w; ++kw) {
      const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
      const std::int32_t* wp = wrow + kw * a.cpad;
      if (row_ok && iw >= 0 && iw < g.in_w) {
        const Ta* xp = xrow + iw * c;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const __m512i xv = (Masked && v == NV - 1) ? dw_load16(xp + 16 * v, l.mk[v]) : dw_load16(xp + 16 * v);
          dw_madd<Vnni>(acc[v], xv, _mm512_loadu_si512(wp + 16 * v));
        }
      } else {
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) dw_madd<Vnni>(acc[v], zpv, _mm512_loadu_si512(wp + 16 * v));
      }
    }
  }
  Out* y = out + ((b * g.out_h() + oh) * g.out_w() + ow) * ldo + c0;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) dw_store(_mm512_sub_epi32(acc[v], l.zc[v]), l.mk[v], y + 16 * v, l.consts[v]);
}

/// NV vectors of 16 channels from c0 (the last one masked by `tail` when Masked)
/// for every output pixel of the rows [row_begin, row_end) (row = b * out_h + oh).
template <bool Vnni, int NV, bool Masked, class Ta, class Out, class Stage>
[[QPRUNE_TARGET_DW512]] inline void dw_block(const dw_args& a, const Ta* x, index_t row_begin,
                                             index_t row_end, index_t c0, __mmask16 tail, Out* out,
                                             index_t ldo, const Stage& st) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t oh_n = g.out_h(), ow_n = g.out_w();
  dw_lanes<NV, decltype(dw_prepare(st, tail, 0))> l;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    l.mk[v] = (Masked && v == NV - 1) ? tail : static_cast<__mmask16>(0xffff);
    l.consts[v] = dw_prepare(st, l.mk[v], c0 + 16 * v);
    l.zc[v] = _mm512_loadu_si512(a.zcorr + c0 + 16 * v);
  }
  // Output columns whose kw taps are all inside the input: [ow_lo, ow_hi).
  const index_t span_w = g.dilation_w * (g.kernel_w - 1);
  const index_t ow_lo = std::min(ow_n, (g.pad_left + g.stride_w - 1) / g.stride_w);
  const index_t last = g.in_w - 1 - span_w + g.pad_left;  // largest ow * stride_w allowed
  const index_t ow_hi = last < 0 ? ow_lo : std::max(ow_lo, std::min(ow_n, last / g.stride_w + 1));
  constexpr int np = NV >= 4 ? 4 : 6;  // NP * NV accumulators + NV weights fit in 32 zmm
  for (index_t row = row_begin; row < row_end; ++row) {
    const index_t b = row / oh_n, oh = row % oh_n;
    const index_t ih0 = oh * g.stride_h - g.pad_top;
    const bool rows_inside = ih0 >= 0 && ih0 + g.dilation_h * (g.kernel_h - 1) < g.in_h;
    if (!rows_inside) {
      for (index_t ow = 0; ow < ow_n; ++ow) dw_edge<Vnni, NV, Masked>(a, x, b, oh, ow, c0, l, out, ldo);
      continue;
    }
    index_t ow = 0;
    for (; ow < ow_lo; ++ow) dw_edge<Vnni, NV, Masked>(a, x, b, oh, ow, c0, l, out, ldo);
    for (; ow + np <= ow_hi; ow += np) dw_interior<Vnni, np, NV, Masked>(a, x, b, oh, ow, c0, l, out, ldo);
    for (; ow < ow_hi; ++ow) dw_interior<Vnni, 1, NV, Masked>(a, x, b, oh, ow, c0, l, out, ldo);
    for (; ow < ow_n; ++ow) dw_edge<Vnni, NV, Masked>(a, x, b, oh, ow, c0, l, out, ldo);
  }
}

/// out[pixel][c] = stage(acc[pixel][c]) for all channels and the rows [row_begin, row_end).
/// Vnni: accumulate with vpdpwssd (the CPU must support AVX512_VNNI).
template <bool Vnni, class Ta, class Out, class Stage>
[[QPRUNE_TARGET_DW512]] inline void dw_conv(const dw_args& a, const Ta* x, index_t row_begin,
                                            index_t row_end, Out* out, index_t ldo,
                                            const Stage& st) noexcept {
  const index_t c = a.g->in_c;
  // A few output rows at a time across all channel blocks, so the input rows
  // they read stay in L1 while every block uses them.
  const index_t chunk = std::max<index_t>(1, (index_t{16} * 1024) / std::max<index_t>(1, a.g->in_w * c * a.g->kernel_h));
  for (index_t r0 = row_begin; r0 < row_end; r0 += chunk) {
    const index_t r1 = std::min(row_end, r0 + chunk);
    index_t c0 = 0;
    for (; c0 + 64 <= c; c0 += 64) dw_block<Vnni, 4, false>(a, x, r0, r1, c0, 0xffff, out, ldo, st);
    for (; c0 + 16 <= c; c0 += 16) dw_block<Vnni, 1, false>(a, x, r0, r1, c0, 0xffff, out, ldo, st);
    if (c0 < c) {
      const auto tail = static_cast<__mmask16>((1u << static_cast<unsigned>(c - c0)) - 1u);
      dw_block<Vnni, 1, true>(a, x, r0, r1, c0, tail, out, ldo, st);
    }
  }
}

#undef QPRUNE_TARGET_DW512
}  // namespace qprune::kernels::x86_avx512

namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_DW256 gnu::target("avx2,fma,f16c")

template <class Ta>
[[QPRUNE_TARGET_DW256]] inline __m256i dw_load8(const Ta* p) noexcept {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  if constexpr (std::is_signed_v<Ta>) return _mm256_cvtepi8_epi32(b);
  else return _mm256_cvtepu8_epi32(b);
}

[[QPRUNE_TARGET_DW256]] inline void dw_store8(__m256i acc, index_t, std::int32_t* c,
                                              const store_int32&) noexcept {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), acc);
}
[[QPRUNE_TARGET_DW256]] inline void dw_store8(__m256i acc, index_t c0, float* y,
                                              const store_float& st) noexcept {
  const __m256 b = st.bias != nullptr ? _mm256_loadu_ps(st.bias + c0) : _mm256_setzero_ps();
  __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(st.scale + c0), b);
  if (st.relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  _mm256_storeu_ps(y, v);
}
/// The requantizing stage with its constants prepared (x86/gemm_s8.hpp's
/// prepare8) for the NV vectors of 8 channels of one block from c0: once per
/// dw_block instead of once per pixel.
template <class T, int NV>
struct dw_requant8 {
  requant_consts8 k[NV];
  index_t c0;
};

/// The stage dw_block passes down: the stage itself, or for requantization its
/// prepared constants.
template <int NV, class Stage>
[[QPRUNE_TARGET_DW256]] inline const Stage& dw_prepare_block(const Stage& st, index_t) noexcept {
  return st;
}
template <int NV, class T>
[[QPRUNE_TARGET_DW256]] inline dw_requant8<T, NV> dw_prepare_block(const store_requant<T>& st,
                                                                   index_t c0) noexcept {
  dw_requant8<T, NV> p;
  for (int v = 0; v < NV; ++v) p.k[v] = prepare8(st, c0 + 8 * v + 8, c0 + 8 * v);
  p.c0 = c0;
  return p;
}

/// Requantization on 8 lanes: the int8 GEMM's AVX2 stage, bit-identical to
/// quant::requantize_value; all 8 channels from c exist.
template <class T, int NV>
[[QPRUNE_TARGET_DW256]] inline void dw_store8(__m256i acc, index_t c, T* q,
                                              const dw_requant8<T, NV>& p) noexcept {
  store_tile8(acc, q, p.k[(c - p.c0) / 8]);
}

/// acc += vpmaddwd(x, w).
[[QPRUNE_TARGET_DW256]] inline void dw_madd8(__m256i& acc, __m256i x, __m256i w) noexcept {
  acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
}

/// Applies the zero-point correction and the stage to the 8 channels from c0 of one
/// pixel (by value: an accumulator array passed by pointer would be kept in memory).
template <class Out, class Stage>
[[QPRUNE_TARGET_DW256]] inline void dw_finish8(const dw_args& a, __m256i acc, index_t c0, Out* y,
                                               const Stage& st) noexcept {
  const __m256i zc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.zcorr + c0));
  dw_store8(_mm256_sub_epi32(acc, zc), c0, y, st);
}

/// NP adjacent interior output pixels (all taps inside the input), NV vectors of 8 channels.
template <int NP, int NV, class Ta, class Out, class Stage>
[[QPRUNE_TARGET_DW256]] inline void dw_interior8(const dw_args& a, const Ta* x, index_t b, index_t oh,
                                                 index_t ow, index_t c0, Out* out, index_t ldo,
                                                 const Stage& st) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t c = g.in_c, xstep = g.stride_w * c, kstep = g.dilation_w * c;
  __m256i acc[NP][NV];
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[p][v] = _mm256_setzero_si256();
  const index_t ih0 = oh * g.stride_h - g.pad_top, iw0 = ow * g.stride_w - g.pad_left;
  for (index_t kh = 0; kh < g.kernel_h; ++kh) {
    const Ta* xrow = x + ((b * g.in_h + ih0 + kh * g.dilation_h) * g.in_w + iw0) * c + c0;
    const std::int32_t* wrow = a.w + kh * g.kernel_w * a.cpad + c0;
    for (index_t kw = 0; kw < g.kernel_w; ++kw) {
      const Ta* xp = xrow + kw * kstep;
      __m256i wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        wv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + kw * a.cpad + 8 * v));
#pragma GCC unroll 4
      for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) dw_madd8(acc[p][v], dw_load8(xp + p * xstep + 8 * v), wv[v]);
    }
  }
  Out* y = out + ((b * g.out_h() + oh) * g.out_w() + ow) * ldo;
#pragma GCC unroll 4
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) dw_finish8(a, acc[p][v], c0 + 8 * v, y + p * ldo + c0 + 8 * v, st);
}

/// One output pixel near the border: taps outside the input read the zero point.
template <int NV, class Ta, class Out, class Stage>
[[QPRUNE_TARGET_DW256]] inline void dw_edge8(const dw_args& a, const Ta* x, index_t b, index_t oh,
                                             index_t ow, index_t c0, Out* out, index_t ldo,
                                             const Stage& st) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t c = g.in_c;
  const __m256i zpv = _mm256_set1_epi32(a.zp);
  __m256i acc[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_si256();
  for (index_t kh = 0; kh < g.kernel_h; ++kh) {
    const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
    const bool row_ok = ih >= 0 && ih < g.in_h;
    const std::int32_t* wrow = a.w + kh * g.kernel_w * a.cpad + c0;
    const Ta* xrow = row_ok ? x + ((b * g.in_h + ih) * g.in_w) * c + c0 : x;
    for (index_t kw = 0; kw < g.kernel_w; ++kw) {
      const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
      const std::int32_t* wp = wrow + kw * a.cpad;
      const bool ok = row_ok && iw >= 0 && iw < g.in_w;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m256i xv = ok ? dw_load8(xrow + iw * c + 8 * v) : zpv;
        dw_madd8(acc[v], xv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 8 * v)));
      }
    }
  }
  Out* y = out + ((b * g.out_h() + oh) * g.out_w() + ow) * ldo + c0;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) dw_finish8(a, acc[v], c0 + 8 * v, y + 8 * v, st);
}

/// NV vectors of 8 channels from c0, for every pixel of rows [row_begin, row_end).
template <int NV, class Ta, class Out, class Stage>
[[QPRUNE_TARGET_DW256]] inline void dw_block(const dw_args& a, const Ta* x, index_t row_begin,
                                             index_t row_end, index_t c0, Out* out, index_t ldo,
                                             const Stage& st) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t oh_n = g.out_h(), ow_n = g.out_w();
  const index_t span_w = g.dilation_w * (g.kernel_w - 1);
  const index_t ow_lo = std::min(ow_n, (g.pad_left + g.stride_w - 1) / g.stride_w);
  const index_t last = g.in_w - 1 - span_w + g.pad_left;
  const index_t ow_hi = last < 0 ? ow_lo : std::max(ow_lo, std::min(ow_n, last / g.stride_w + 1));
  constexpr int np = NV >= 2 ? 4 : 6;  // NP * NV accumulators + NV weights fit in 16 ymm
  const auto& ps = dw_prepare_block<NV>(st, c0);
  for (index_t row = row_begin; row < row_end; ++row) {
    const index_t b = row / oh_n, oh = row % oh_n;
    const index_t ih0 = oh * g.stride_h - g.pad_top;
    const bool rows_inside = ih0 >= 0 && ih0 + g.dilation_h * (g.kernel_h - 1) < g.in_h;
    if (!rows_inside) {
      for (index_t ow = 0; ow < ow_n; ++ow) dw_edge8<NV>(a, x, b, oh, ow, c0, out, ldo, ps);
      continue;
    }
    index_t ow = 0;
    for (; ow < ow_lo; ++ow) dw_edge8<NV>(a, x, b, oh, ow, c0, out, ldo, ps);
    for (; ow + np <= ow_hi; ow += np) dw_interior8<np, NV>(a, x, b, oh, ow, c0, out, ldo, ps);
    for (; ow < ow_hi; ++ow) dw_interior8<1, NV>(a, x, b, oh, ow, c0, out, ldo, ps);
    for (; ow < ow_n; ++ow) dw_edge8<NV>(a, x, b, oh, ow, c0, out, ldo, ps);
  }
}

/// As x86_avx512::dw_conv; channels past the last multiple of 8 run a scalar
/// loop with the same exact integer arithmetic and the scalar stage.
template <class Ta, class Out, class Stage>
[[QPRUNE_TARGET_DW256]] inline void dw_conv(const dw_args& a, const Ta* x, index_t row_begin,
                                            index_t row_end, Out* out, index_t ldo,
                                            const Stage& st) noexcept {
  const conv2d_geometry& g = *a.g;
  const index_t c = g.in_c;
  const index_t chunk = std::max<index_t>(1, (index_t{16} * 1024) / std::max<index_t>(1, g.in_w * c * g.kernel_h));
  for (index_t r0 = row_begin; r0 < row_end; r0 += chunk) {
    const index_t r1 = std::min(row_end, r0 + chunk);
    index_t cb = 0;
    for (; cb + 16 <= c; cb += 16) dw_block<2>(a, x, r0, r1, cb, out, ldo, st);
    for (; cb + 8 <= c; cb += 8) dw_block<1>(a, x, r0, r1, cb, out, ldo, st);
  }
  const index_t c0 = c / 8 * 8;
  if (c0 == c) return;
  const index_t oh_n = g.out_h(), ow_n = g.out_w();
  for (index_t row = row_begin; row < row_end; ++row) {
    const index_t b = row / oh_n, oh = row % oh_n;
    for (index_t ow = 0; ow < ow_n; ++ow) {
      Out* y = out + ((b * oh_n + oh) * ow_n + ow) * ldo;
      for (index_t ch = c0; ch < c; ++ch) {
        std::int32_t acc = 0;
        for (index_t kh = 0; kh < g.kernel_h; ++kh) {
          const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
          if (ih < 0 || ih >= g.in_h) continue;
          for (index_t kw = 0; kw < g.kernel_w; ++kw) {
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            if (iw < 0 || iw >= g.in_w) continue;
            const std::int32_t xv = static_cast<std::int32_t>(x[((b * g.in_h + ih) * g.in_w + iw) * c + ch]) - a.zp;
            // Low int16 half of the packed lane is the weight.
            const auto wv = static_cast<std::int16_t>(a.w[(kh * g.kernel_w + kw) * a.cpad + ch] & 0xffff);
            acc += xv * wv;
          }
        }
        y[ch] = reference::stage_value(acc, ch, st);
      }
    }
  }
}

#undef QPRUNE_TARGET_DW256
}  // namespace qprune::kernels::x86_avx2

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

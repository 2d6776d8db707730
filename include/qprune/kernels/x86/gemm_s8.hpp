// x86 bodies of the int8 GEMM (kernels/gemm_s8.hpp), one namespace per
// instruction set, each compiled for its ISA with [[gnu::target]].
//
//  x86_avx512_vnni: vpdpbusd (u8 x s8, four products per int32 lane, no
//    saturation: the int32 sum wraps, and the zero-point correction
//    acc - a_zero_point * colsum[n] is exact modulo 2^32, hence exact whenever
//    the true result fits in int32, which the API checks). Weights packed in
//    16-channel panels of 4-byte k-groups: [N/16][K/4][16][4].
//  x86_avx2: vpmaddwd on int16 (a - a_zero_point) and int16 weights: no int16
//    saturating step (|a - zp| <= 255, |b| <= 128, a pair sums to <= 65280).
//    Weights packed as int8 in 8-channel panels of k-pairs, [N/8][K/2][8][2],
//    and sign-extended to int16 as they are loaded (vpmovsxbw).
// Micro-kernels keep an MR x (16*NV) (resp. 8*NV) accumulator tile in
// registers over the whole K loop and apply the output stage before storing.
#pragma once

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "qprune/kernels/output_stage.hpp"
#include "qprune/kernels/x86/fma.hpp"

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx512_vnni {

#define QPRUNE_TARGET_VNNI gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")

/// Arguments shared by every micro-kernel call.
struct vnni_args {
  const std::uint8_t* a;        ///< [M, >= 4*k4] u8, row stride lda (padded rows readable)
  index_t lda;
  const std::int8_t* b;         ///< packed [panels][k4][16][4]
  index_t k4;                   ///< number of 4-byte k-groups
  const std::int32_t* zcorr;    ///< a_zero_point * colsum[n], padded to whole panels
  index_t n;                    ///< true N, for the tail mask
};

/// acc += dot4(a_u8, b_s8) per int32 lane. GCC 12 keeps a tile of intrinsic
/// accumulators in registers poorly (it copies each one every iteration), so on
/// GCC the instruction is written as inline assembly with a tied operand.
[[QPRUNE_TARGET_VNNI]] inline void dpbusd(__m512i& acc, __m512i a, __m512i b) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
#else
  acc = _mm512_dpbusd_epi32(acc, a, b);
#endif
}

[[QPRUNE_TARGET_VNNI]] inline __mmask16 tail_mask(index_t n, index_t n0) noexcept {
  const index_t left = n - n0;
  return left >= 16 ? static_cast<__mmask16>(0xffff)
                    : static_cast<__mmask16>((1u << static_cast<unsigned>(left)) - 1u);
}

// Each output stage has a per-panel part, prepared once for the 16 channels of
// a panel (prepare), and a per-row part applied to every accumulator vector of
// that panel (store_tile), so the loads and shift setup are not repeated per row.
// prepare also takes the panel's zero-point correction zc (subtracted from every
// accumulator; wrapping int32 arithmetic, as the reference).

struct int32_consts {
  __m512i zc;
};
[[QPRUNE_TARGET_VNNI]] inline int32_consts prepare(const store_int32&, __mmask16, index_t, __m512i zc) noexcept {
  return {zc};
}
[[QPRUNE_TARGET_VNNI]] inline void store_tile(__m512i acc, __mmask16 m, index_t n0, std::int32_t* c,
                                              const int32_consts& k) noexcept {
  _mm512_mask_storeu_epi32(c + n0, m, _mm512_sub_epi32(acc, k.zc));
}

/// Returns a vector unchanged but opaque to the optimiser, so a product is
/// rounded before the addition that follows (no contraction into an FMA).
[[QPRUNE_TARGET_VNNI]] inline __m512 opaque(__m512 v) noexcept {
  __asm__("" : "+v"(v));
  return v;
}

struct float_consts {
  __m512 scale, bias;
  __m512i zc;
  bool relu, fused;
};
[[QPRUNE_TARGET_VNNI]] inline float_consts prepare(const store_float& st, __mmask16 m,
                                                   index_t n0, __m512i zc) noexcept {
  return {_mm512_maskz_loadu_ps(m, st.scale + n0),
          st.bias != nullptr ? _mm512_maskz_loadu_ps(m, st.bias + n0) : _mm512_setzero_ps(),
          zc, st.relu, st.fused};
}
[[QPRUNE_TARGET_VNNI]] inline void store_tile(__m512i acc, __mmask16 m, index_t n0, float* y,
                                              const float_consts& k) noexcept {
  const __m512 a = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, k.zc));
  __m512 v = k.fused ? _mm512_fmadd_ps(a, k.scale, k.bias) : _mm512_add_ps(opaque(_mm512_mul_ps(a, k.scale)), k.bias);
  if (k.relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  _mm512_mask_storeu_ps(y + n0, m, v);
}

/// The requantizing stage on 16 lanes, bit-identical to quant::requantize_value
/// (double rounding) for multipliers >= 0:
///   s = acc - zc + bias (wraps; one add of bias - zc); x = s << left (wraps;
///     skipped for a panel whose shifts are all <= 0, the usual case)
///   SRDHM(x, M0) = (x * M0 + 2^30) >> 31 in int64 (floor shift: equal to
///     gemmlowp's truncating form with its sign-dependent nudge); bits 31..62
///     of the sum, taken by one shift per lane parity before the merge
///   RDBPOT(h, right) = (h >> right) + ((h & mask) > (mask >> 1) + (h < 0))
///   out = clamp(RDBPOT + zero_point, act_min, act_max)
struct requant_consts {
  __m512i bias, left, right, mult, mult_odd, mask, half_mask, zp, lo, hi;
  bool any_left;
};
template <class T>
[[QPRUNE_TARGET_VNNI]] inline requant_consts prepare(const store_requant<T>& st, __mmask16 m,
                                                     index_t n0, __m512i zc) noexcept {
  const __m512i shift = _mm512_maskz_loadu_epi32(m, st.shift + n0);
  const __m512i zero = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  requant_consts k;
  k.bias = _mm512_sub_epi32(st.bias != nullptr ? _mm512_maskz_loadu_epi32(m, st.bias + n0) : zero, zc);
  k.left = _mm512_max_epi32(shift, zero);
  k.any_left = _mm512_test_epi32_mask(k.left, k.left) != 0;
  k.right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
  k.mult = _mm512_maskz_loadu_epi32(m, st.multiplier + n0);
  k.mult_odd = _mm512_srli_epi64(k.mult, 32);
  k.mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, k.right), one);
  k.half_mask = _mm512_srli_epi32(k.mask, 1);
  k.zp = _mm512_set1_epi32(st.out_zero_point);
  k.lo = _mm512_set1_epi32(st.act_min);
  k.hi = _mm512_set1_epi32(st.act_max);
  return k;
}
template <class T>
[[QPRUNE_TARGET_VNNI]] inline void store_tile(__m512i acc, __mmask16 m, index_t n0, T* q,
                                              const requant_consts& k) noexcept {
  const __m512i s = _mm512_add_epi32(acc, k.bias);
  const __m512i x = k.any_left ? _mm512_sllv_epi32(s, k.left) : s;
  const __m512i round = _mm512_set1_epi64(std::int64_t{1} << 30);
  // Even lanes: the low dword of sum >> 31; odd lanes: the high dword of sum << 1.
  const __m512i even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, k.mult), round), 31);
  const __m512i odd = _mm512_slli_epi64(
      _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), k.mult_odd), round), 1);
  const __m512i h = _mm512_mask_blend_epi32(static_cast<__mmask16>(0xAAAA), even, odd);
  const __m512i rem = _mm512_and_si512(h, k.mask);
  const __m512i threshold = _mm512_add_epi32(k.half_mask, _mm512_srli_epi32(h, 31));
  __m512i r = _mm512_srav_epi32(h, k.right);
  r = _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(rem, threshold), r, _mm512_set1_epi32(1));
  r = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, k.zp), k.lo), k.hi);
  _mm_mask_storeu_epi8(q + n0, m, _mm512_cvtepi32_epi8(r));
}

/// Nothing to do beside a K loop's dot products (every stage but requant).
struct no_step {
  [[QPRUNE_TARGET_VNNI]] void operator()() const noexcept {}
};

/// acc = the MR x NV tile's dot products over all of K (rows from m0, panels
/// from p0), calling step() once per 4-byte k-group: work that the out-of-order
/// core runs beside the vpdpbusd chain.
template <int MR, int NV, class Step>
[[QPRUNE_TARGET_VNNI]] inline void dot_tile(const vnni_args& g, index_t m0, index_t p0,
                                            __m512i (&acc)[MR][NV], const Step& step) noexcept {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  const std::int8_t* bp[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bp[v] = g.b + (p0 + v) * g.k4 * 64;
  const std::uint8_t* ap = g.a + m0 * g.lda;
  for (index_t kg = 0; kg < g.k4; ++kg) {
    __m512i bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(bp[v] + kg * 64);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      std::int32_t word;
      std::memcpy(&word, ap + r * g.lda + kg * 4, 4);
      const __m512i av = _mm512_set1_epi32(word);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) dpbusd(acc[r][v], av, bv[v]);
    }
    step();
  }
}

/// MR rows x NV panels (16 channels each) starting at row m0 and panel p0.
template <int MR, int NV, class Out, class Stage>
[[QPRUNE_TARGET_VNNI]] inline void micro(const vnni_args& g, index_t m0, index_t p0, Out* out,
                                         index_t ldo, const Stage& st) noexcept {
  __m512i acc[MR][NV];
  dot_tile(g, m0, p0, acc, no_step{});
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 16;
    const __mmask16 m = tail_mask(g.n, n0);
    const __m512i zc = _mm512_loadu_si512(g.zcorr + n0);
    const auto consts = prepare(st, m, n0, zc);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) store_tile(acc[r][v], m, n0, out + (m0 + r) * ldo, consts);
  }
}

template <int NV, class Out, class Stage>
[[QPRUNE_TARGET_VNNI]] inline void rows(const vnni_args& g, index_t m, index_t p0, Out* out,
                                        index_t ldo, const Stage& st) noexcept {
  index_t m0 = 0;
  for (; m0 + 8 <= m; m0 += 8) micro<8, NV>(g, m0, p0, out, ldo, st);
  if (m0 + 4 <= m) { micro<4, NV>(g, m0, p0, out, ldo, st); m0 += 4; }
  if (m0 + 2 <= m) { micro<2, NV>(g, m0, p0, out, ldo, st); m0 += 2; }
  if (m0 < m) micro<1, NV>(g, m0, p0, out, ldo, st);
}

/// The requantizing stage deferred by one tile. Its ~20 vector operations per
/// accumulator, run after a tile's K loop, kept the vpdpbusd pipes idle for
/// about as long (+17-19% over int32 output at K = 256-288 on Zen 4): the
/// queued vectors of the previous tile are requantized one per k-step of the
/// next tile's K loop instead, where the out-of-order core runs them beside
/// the dot products. Same arithmetic, so the same bits (store_tile).
template <int NV, class T>
struct requant_queue {
  requant_consts k[NV];  ///< per panel, read from memory by each step
  __mmask16 lanes[NV];   ///< per panel: the channels that exist
  index_t col0 = 0;      ///< first channel of panel 0 (panel v starts at col0 + 16 v)
  alignas(64) std::int32_t acc[8 * NV * 16];  ///< the queued accumulators, (row, panel) order
  T* row0 = nullptr;                           ///< output row of the queued tile's first row
  index_t ldo = 0;
  int count = 0, next = 0;

  /// Requantizes and stores one queued vector.
  [[QPRUNE_TARGET_VNNI]] void step() noexcept {
    const int i = next++;
    const int r = i / NV, v = i % NV;
    store_tile(_mm512_load_si512(acc + i * 16), lanes[v], col0 + 16 * v, row0 + r * ldo, k[v]);
  }
  [[QPRUNE_TARGET_VNNI]] void drain() noexcept {
    while (next < count) step();
  }
  /// dot_tile's step: one queued vector, while any is left.
  struct one_step {
    requant_queue& q;
    [[QPRUNE_TARGET_VNNI]] void operator()() const noexcept {
      if (q.next < q.count) q.step();
    }
  };
};

/// micro() for the requantizing stage: the previous tile's queued vectors are
/// requantized inside this tile's K loop (one per k-step), then this tile's
/// accumulators are queued.
template <int MR, int NV, class T>
[[QPRUNE_TARGET_VNNI]] inline void micro_queued(const vnni_args& g, index_t m0, index_t p0, T* out,
                                                requant_queue<NV, T>& q) noexcept {
  __m512i acc[MR][NV];
  dot_tile(g, m0, p0, acc, typename requant_queue<NV, T>::one_step{q});
  q.drain();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_si512(q.acc + (r * NV + v) * 16, acc[r][v]);
  q.row0 = out + m0 * q.ldo;
  q.count = MR * NV;
  q.next = 0;
}

/// rows() for the requantizing stage, through a requant_queue.
template <int NV, class T>
[[QPRUNE_TARGET_VNNI]] inline void rows(const vnni_args& g, index_t m, index_t p0, T* out, index_t ldo,
                                        const store_requant<T>& st) noexcept {
  requant_queue<NV, T> q;
  q.ldo = ldo;
  q.col0 = p0 * 16;
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = q.col0 + 16 * v;
    q.lanes[v] = tail_mask(g.n, n0);
    q.k[v] = prepare(st, q.lanes[v], n0, _mm512_loadu_si512(g.zcorr + n0));
  }
  index_t m0 = 0;
  for (; m0 + 8 <= m; m0 += 8) micro_queued<8, NV>(g, m0, p0, out, q);
  if (m0 + 4 <= m) { micro_queued<4, NV>(g, m0, p0, out, q); m0 += 4; }
  if (m0 + 2 <= m) { micro_queued<2, NV>(g, m0, p0, out, q); m0 += 2; }
  if (m0 < m) micro_queued<1, NV>(g, m0, p0, out, q);
  q.drain();
}

/// Output channels per block of work: three 16-channel panels.
inline constexpr index_t vnni_block_channels = 48;

/// out[m][n] = stage(sum_k (a - zp) * b) for all M rows and the channel blocks
/// [block_begin, block_end) (48 channels each), panels outermost so a block of
/// weights stays in cache across all rows.
template <class Out, class Stage>
[[QPRUNE_TARGET_VNNI]] inline void gemm(const vnni_args& g, index_t m, index_t block_begin,
                                        index_t block_end, Out* out, index_t ldo,
                                        const Stage& st) noexcept {
  const index_t panels = std::min((g.n + 15) / 16, block_end * 3);
  index_t p0 = block_begin * 3;
  for (; p0 + 3 <= panels; p0 += 3) rows<3>(g, m, p0, out, ldo, st);
  if (p0 + 2 <= panels) { rows<2>(g, m, p0, out, ldo, st); p0 += 2; }
  if (p0 < panels) rows<1>(g, m, p0, out, ldo, st);
}

#undef QPRUNE_TARGET_VNNI
}  // namespace qprune::kernels::x86_avx512_vnni

namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_AVX2 gnu::target("avx2,fma,f16c")

/// The product rounded before the addition that follows (see x86_avx512_vnni::opaque).
[[QPRUNE_TARGET_AVX2]] inline __m256 opaque(__m256 v) noexcept {
  __asm__("" : "+x"(v));
  return v;
}

/// Arguments shared by every AVX2 micro-kernel call.
struct madd_args {
  const std::int16_t* a;  ///< [M, 2*k2] int16 (a - zero point), zero padded, row stride lda
  index_t lda;
  const std::int8_t* b;   ///< packed [panels][k2][8][2], widened to int16 as loaded
  index_t k2;             ///< number of k-pairs
  index_t n;              ///< true N
};

// As on AVX-512, each output stage has a per-panel part (prepare8: the 8
// channels' constants and the tail mask, once per panel) and a per-row part
// (store_tile8, on every accumulator vector of the panel). `out` points at the
// panel's first channel in the row; lanes past the true N are never stored.

struct int32_consts8 {
  __m256i lanes;
  bool full;
};
[[QPRUNE_TARGET_AVX2]] inline int32_consts8 prepare8(const store_int32&, index_t n, index_t n0) noexcept {
  return {x86::first_lanes8(n - n0), n - n0 >= 8};
}
[[QPRUNE_TARGET_AVX2]] inline void store_tile8(__m256i acc, std::int32_t* c, const int32_consts8& k) noexcept {
  if (k.full) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c), acc);
  } else {
    _mm256_maskstore_epi32(c, k.lanes, acc);
  }
}

struct float_consts8 {
  __m256 scale, bias;
  __m256i lanes;
  bool full, relu, fused;
};
[[QPRUNE_TARGET_AVX2]] inline float_consts8 prepare8(const store_float& st, index_t n, index_t n0) noexcept {
  const __m256i lanes = x86::first_lanes8(n - n0);
  return {_mm256_maskload_ps(st.scale + n0, lanes),
          st.bias != nullptr ? _mm256_maskload_ps(st.bias + n0, lanes) : _mm256_setzero_ps(),
          lanes, n - n0 >= 8, st.relu, st.fused};
}
[[QPRUNE_TARGET_AVX2]] inline void store_tile8(__m256i acc, float* y, const float_consts8& k) noexcept {
  const __m256 a = _mm256_cvtepi32_ps(acc);
  __m256 v = k.fused ? _mm256_fmadd_ps(a, k.scale, k.bias) : _mm256_add_ps(opaque(_mm256_mul_ps(a, k.scale)), k.bias);
  if (k.relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  if (k.full) {
    _mm256_storeu_ps(y, v);
  } else {
    _mm256_maskstore_ps(y, k.lanes, v);
  }
}

/// The requantizing stage on 8 lanes, the same arithmetic as the AVX-512 one
/// (x86_avx512_vnni::store_tile for store_requant): bit-identical to
/// quant::requantize_value with double rounding for multipliers >= 0 and shifts
/// in [-31, 30]. SRDHM needs only bits 31..62 of the 64-bit sum x * M0 + 2^30,
/// so logical 64-bit shifts serve (AVX2 has no arithmetic one); the result is
/// clamped into T's range, so its low byte is the stored code.
struct requant_consts8 {
  __m256i bias, left, right, mult, mult_odd, mask, half_mask, zp, lo, hi;
  index_t count;
  bool any_left;
};
template <class T>
[[QPRUNE_TARGET_AVX2]] inline requant_consts8 prepare8(const store_requant<T>& st, index_t n,
                                                       index_t n0) noexcept {
  const __m256i lanes = x86::first_lanes8(n - n0);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i shift = _mm256_maskload_epi32(st.shift + n0, lanes);
  requant_consts8 k;
  k.bias = st.bias != nullptr ? _mm256_maskload_epi32(st.bias + n0, lanes) : zero;
  k.left = _mm256_max_epi32(shift, zero);
  k.any_left = !_mm256_testz_si256(k.left, k.left);
  k.right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
  k.mult = _mm256_maskload_epi32(st.multiplier + n0, lanes);
  k.mult_odd = _mm256_srli_epi64(k.mult, 32);
  k.mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, k.right), one);
  k.half_mask = _mm256_srli_epi32(k.mask, 1);
  k.zp = _mm256_set1_epi32(st.out_zero_point);
  k.lo = _mm256_set1_epi32(st.act_min);
  k.hi = _mm256_set1_epi32(st.act_max);
  k.count = std::min<index_t>(n - n0, 8);
  return k;
}
template <class T>
[[QPRUNE_TARGET_AVX2]] inline void store_tile8(__m256i acc, T* q, const requant_consts8& k) noexcept {
  const __m256i s = _mm256_add_epi32(acc, k.bias);
  const __m256i x = k.any_left ? _mm256_sllv_epi32(s, k.left) : s;
  const __m256i round = _mm256_set1_epi64x(std::int64_t{1} << 30);
  // Even lanes: the low dword of sum >> 31; odd lanes: the high dword of sum << 1.
  const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, k.mult), round), 31);
  const __m256i odd = _mm256_slli_epi64(
      _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), k.mult_odd), round), 1);
  const __m256i h = _mm256_blend_epi32(even, odd, 0xAA);
  const __m256i rem = _mm256_and_si256(h, k.mask);
  const __m256i threshold = _mm256_add_epi32(k.half_mask, _mm256_srli_epi32(h, 31));
  // rem > threshold is -1 where RDBPOT rounds up.
  __m256i r = _mm256_sub_epi32(_mm256_srav_epi32(h, k.right), _mm256_cmpgt_epi32(rem, threshold));
  r = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, k.zp), k.lo), k.hi);
  // Byte 0 of each dword into the low 4 bytes of each 128-bit half, then both halves together.
  const __m256i picked = _mm256_shuffle_epi8(
      r, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  const __m128i bytes = _mm256_castsi256_si128(
      _mm256_permutevar8x32_epi32(picked, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1)));
  if (k.count == 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q), bytes);
  } else {
    alignas(16) unsigned char tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    std::memcpy(q, tmp, static_cast<std::size_t>(k.count));
  }
}

/// One row of the kernel's int16 activations: dst[j] = src[j] - zp for j < k,
/// and dst[k] = 0 when k is odd (the k-pair padding; weights pad with 0 too).
/// |src - zp| <= 255, so no int16 step wraps.
template <class Ta>
[[QPRUNE_TARGET_AVX2]] inline void widen_row(const Ta* src, index_t k, std::int32_t zp,
                                             std::int16_t* dst) noexcept {
  const __m256i z = _mm256_set1_epi16(static_cast<short>(zp));
  index_t j = 0;
  for (; j + 16 <= k; j += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + j));
    const __m256i w = std::is_signed_v<Ta> ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), _mm256_sub_epi16(w, z));
  }
  for (; j < k; ++j) dst[j] = static_cast<std::int16_t>(src[j] - zp);
  if (k % 2 != 0) dst[k] = 0;
}

/// acc += madd(a, b) (int16 pairs to int32 lanes). As with dpbusd, GCC 12
/// copies every intrinsic accumulator of a tile once per iteration and reloads
/// shared weight vectors as memory operands, so on GCC the pair is written as
/// inline assembly with a tied accumulator and a scratch register.
[[QPRUNE_TARGET_AVX2]] inline void madd_acc(__m256i& acc, __m256i a, __m256i b) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  __m256i t;
  asm("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(acc), "=&x"(t) : "x"(a), "x"(b));
#else
  acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/// MR rows x NV panels (8 channels each) starting at row m0 and panel p0. Not
/// inlined: inlined into gemm() with its callers, GCC 12 spilled the
/// accumulator tile to the stack every iteration (measured 2x slower).
template <int MR, int NV, class Out, class Stage>
[[QPRUNE_TARGET_AVX2, gnu::noinline]] inline void micro(const madd_args& g, index_t m0, index_t p0,
                                                        Out* out, index_t ldo, const Stage& st) noexcept {
  __m256i acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_si256();
  const std::int8_t* bp[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) bp[v] = g.b + (p0 + v) * g.k2 * 16;
  const std::int16_t* ap = g.a + m0 * g.lda;
  for (index_t kg = 0; kg < g.k2; ++kg) {
    __m256i bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bp[v] + kg * 16)));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      std::int32_t word;
      std::memcpy(&word, ap + r * g.lda + kg * 2, 4);
      const __m256i av = _mm256_set1_epi32(word);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) madd_acc(acc[r][v], av, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const index_t n0 = (p0 + v) * 8;
    const auto consts = prepare8(st, g.n, n0);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) store_tile8(acc[r][v], out + (m0 + r) * ldo + n0, consts);
  }
}

template <int NV, class Out, class Stage>
[[QPRUNE_TARGET_AVX2]] inline void rows(const madd_args& g, index_t m, index_t p0, Out* out,
                                        index_t ldo, const Stage& st) noexcept {
  index_t m0 = 0;
  for (; m0 + 6 <= m; m0 += 6) micro<6, NV>(g, m0, p0, out, ldo, st);
  if (m0 + 4 <= m) { micro<4, NV>(g, m0, p0, out, ldo, st); m0 += 4; }
  if (m0 + 2 <= m) { micro<2, NV>(g, m0, p0, out, ldo, st); m0 += 2; }
  if (m0 < m) micro<1, NV>(g, m0, p0, out, ldo, st);
}

/// Output channels per block of work: two 8-channel panels.
inline constexpr index_t madd_block_channels = 16;

/// All M rows for the channel blocks [block_begin, block_end) (16 channels each).
template <class Out, class Stage>
[[QPRUNE_TARGET_AVX2]] inline void gemm(const madd_args& g, index_t m, index_t block_begin,
                                        index_t block_end, Out* out, index_t ldo,
                                        const Stage& st) noexcept {
  const index_t panels = std::min((g.n + 7) / 8, block_end * 2);
  index_t p0 = block_begin * 2;
  // One to three rows: wider tiles, so the broadcast, loop and epilogue of a
  // k-pair are shared by 8 (4) panels instead of 2.
  if (m == 1) {
    for (; p0 + 8 <= panels; p0 += 8) micro<1, 8>(g, 0, p0, out, ldo, st);
  } else if (m == 2) {
    for (; p0 + 4 <= panels; p0 += 4) micro<2, 4>(g, 0, p0, out, ldo, st);
  } else if (m == 3) {
    for (; p0 + 4 <= panels; p0 += 4) micro<3, 4>(g, 0, p0, out, ldo, st);
  }
  for (; p0 + 2 <= panels; p0 += 2) rows<2>(g, m, p0, out, ldo, st);
  if (p0 < panels) rows<1>(g, m, p0, out, ldo, st);
}

#undef QPRUNE_TARGET_AVX2
}  // namespace qprune::kernels::x86_avx2

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

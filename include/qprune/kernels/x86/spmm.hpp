// x86 bodies of the sparse kernels (kernels/spmm.hpp), in the lane order of
// kernels/reference/spmm.hpp (16 partial sums per output, fixed tree). A "row
// source" loads 16 stored entries of a row at a time as (value, column, valid)
// vectors, for CSR or packed N:M. SpMV keeps the 16 partial sums in one zmm (or
// two ymm) and fetches x by scalar loads merged in registers (vinsertps chains
// on AVX-512, broadcasts + blends on AVX2; 2:4-like N:M: two loads + one
// permute, four rows at a time); SpMM decodes a row once into (value, X^T
// offset) pairs and runs the batch in the vector lanes, one accumulator per
// partial sum, except 2:4-like N:M on AVX-512, which runs tiles of 4 matrix rows
// x 2 batch rows over X itself (one 16-lane accumulator per output, as SpMV).
#pragma once

#include "qprune/core/config.hpp"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "qprune/core/half.hpp"

namespace qprune::kernels::detail {

/// Bits [bit, bit + 64) of a little-endian bit string of `nbytes` bytes, least
/// significant first; bits past the end read as 0 (never reads out of bounds).
[[nodiscard]] inline std::uint64_t spmm_load_bits64(const std::uint8_t* buf, std::size_t nbytes,
                                                    std::uint64_t bit) noexcept {
  const std::size_t i = static_cast<std::size_t>(bit >> 3);
  const unsigned sh = static_cast<unsigned>(bit & 7u);
  std::uint64_t lo = 0;
  std::uint64_t next = 0;
  if (i + 9 <= nbytes) {
    std::memcpy(&lo, buf + i, 8);  // fixed size: one load (no byte copies to forward)
    next = buf[i + 8];
  } else {
    for (std::size_t t = 0; t < 8 && i + t < nbytes; ++t) {
      lo |= static_cast<std::uint64_t>(buf[i + t]) << (8 * t);
    }
  }
  return sh == 0 ? lo : (lo >> sh) | (next << (64u - sh));
}

/// Arguments of the row sources, shared by the instruction sets.
template <class V, class I, class P>
struct spmm_csr_rows {
  const V* values;
  const I* cols;   ///< column index per entry
  const P* row_ptr;
  index_t nnz;     ///< entries in values and cols
};

template <class V>
struct spmm_nm_rows {
  const V* values;
  const std::uint8_t* positions;
  std::size_t position_bytes;
  int n, m, bits;
  index_t slots_per_row;  ///< groups * n
  index_t cols;
};

/// The common part of a sparse kernel call.
struct spmm_io {
  const float* x;       ///< SpMV: the vector; SpMM: X^T packed [(K + 1) x ld], last row 0
  float* y;             ///< SpMV: the output vector; SpMM: Y [M, N] row-major
  const float* bias;    ///< rows values or null
  const float* scales;  ///< int8: one per row; else null
  index_t m = 1;        ///< SpMM batch
  index_t ld = 0;       ///< SpMM: row stride of X^T (a multiple of 16)
  index_t n = 0;        ///< SpMM: columns of Y (the matrix's rows)
  index_t k = 0;        ///< SpMM: the matrix's columns (X^T's zero row)
};

}  // namespace qprune::kernels::detail

#if QPRUNE_X86
#include <immintrin.h>

#include "qprune/kernels/x86/fma.hpp"

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx2 {

/// Prefetches the cache line of p[Ahead] into L1. The address is formed as an
/// integer: near an array's end it lies past the array, and a prefetch never
/// faults.
template <index_t Ahead, class T>
inline void prefetch_ahead(const T* p) noexcept {
  const auto at = reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(Ahead) * sizeof(T);
  _mm_prefetch(reinterpret_cast<const char*>(at), _MM_HINT_T0);
}

/// x[idx[0..7]] as one ymm: broadcast loads (load ports only) merged by
/// immediate blends, so the shuffle port is not the limit. On the machines
/// measured, vgatherdps, inserts (port 5) and a store-to-stack round trip (a
/// failed store forward per block) were all 2-3x slower. 16-bit indices are
/// read two per 32-bit load and split with a mask and a shift (ALU ports), a
/// quarter fewer loads per entry: CSR SpMV
/// at 1024^2 (AVX-512) measured 1.88x -> 2.18x Eigen's CSR at 90% sparsity,
/// 1.51x -> 1.62x at 95% (medians of 6 alternating runs); 64-bit loads (more
/// ALU work) were slower.
template <class I>
[[gnu::target("avx2,fma,f16c"), gnu::always_inline]] inline __m256 xload8(const float* x, const I* p) noexcept {
  if constexpr (sizeof(I) == 2) {
    std::uint32_t q[4];
    std::memcpy(q, p, sizeof q);
    __m256 v = _mm256_broadcast_ss(x + (q[0] & 0xffffu));
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[0] >> 16)), 0x02);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[1] & 0xffffu)), 0x04);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[1] >> 16)), 0x08);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[2] & 0xffffu)), 0x10);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[2] >> 16)), 0x20);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[3] & 0xffffu)), 0x40);
    return _mm256_blend_ps(v, _mm256_broadcast_ss(x + (q[3] >> 16)), 0x80);
  } else {
    __m256 v = _mm256_broadcast_ss(x + p[0]);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[1]), 0x02);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[2]), 0x04);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[3]), 0x08);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[4]), 0x10);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[5]), 0x20);
    v = _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[6]), 0x40);
    return _mm256_blend_ps(v, _mm256_broadcast_ss(x + p[7]), 0x80);
  }
}

/// x[idx[0..3]] as one xmm: a scalar load and three vinsertps with memory
/// operands (one instruction each; GCC splits the intrinsic form into a load
/// and a register insert). 16-bit indices are read four per 64-bit load. The
/// AVX-512 kernels' gather: on Zen 4, 16 columns as four of these and three
/// inserts (19 instructions) ran the CSR SpMV at 1024^2 1.05x (95%) and 1.11x
/// (90%) faster than 16 broadcasts and 15 blends (31), medians of 9
/// alternating runs.
template <class I>
[[gnu::target("avx2,fma,f16c"), gnu::always_inline]] inline __m128 xload4(const float* x, const I* p) noexcept {
  index_t c[4];
  if constexpr (sizeof(I) == 2) {
    std::uint64_t q;
    std::memcpy(&q, p, sizeof q);
    c[0] = static_cast<index_t>(q & 0xffffu);
    c[1] = static_cast<index_t>((q >> 16) & 0xffffu);
    c[2] = static_cast<index_t>((q >> 32) & 0xffffu);
    c[3] = static_cast<index_t>(q >> 48);
  } else {
    for (int t = 0; t < 4; ++t) c[t] = static_cast<index_t>(p[t]);
  }
  __m128 v = _mm_load_ss(x + c[0]);
  __asm__("vinsertps $0x10, %1, %0, %0" : "+x"(v) : "m"(x[c[1]]));
  __asm__("vinsertps $0x20, %1, %0, %0" : "+x"(v) : "m"(x[c[2]]));
  __asm__("vinsertps $0x30, %1, %0, %0" : "+x"(v) : "m"(x[c[3]]));
  return v;
}

/// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols: 8 x 8 blocks
/// through registers (unpack / shuffle / lane permute), scalar edges. Used to
/// pack X^T and to write SpMM results back in Y's orientation.
[[gnu::target("avx2,fma,f16c")]] inline void transpose(const float* src, index_t rows, index_t cols,
                                                       index_t lds, float* dst, index_t ldd) noexcept {
  index_t r0 = 0;
  for (; r0 + 8 <= rows; r0 += 8) {
    index_t c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8) {
      __m256 v[8], t[8];
      for (int i = 0; i < 8; ++i) v[i] = _mm256_loadu_ps(src + (r0 + i) * lds + c0);
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        v[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        v[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        v[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        v[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + (c0 + i) * ldd + r0, _mm256_permute2f128_ps(v[i], v[i + 4], 0x20));
        _mm256_storeu_ps(dst + (c0 + i + 4) * ldd + r0, _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
      }
    }
    for (; c0 < cols; ++c0)
      for (index_t i = 0; i < 8; ++i) dst[c0 * ldd + r0 + i] = src[(r0 + i) * lds + c0];
  }
  for (; r0 < rows; ++r0)
    for (index_t c = 0; c < cols; ++c) dst[c * ldd + r0] = src[r0 * lds + c];
}

}  // namespace qprune::kernels::x86_avx2

// ===========================================================================
// AVX-512
// ===========================================================================
namespace qprune::kernels::x86_avx512 {

#define QPRUNE_TARGET_SPMM512 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")

/// 16 stored values (lanes with bit t of `k` clear read as +0) widened to float.
template <class V>
[[QPRUNE_TARGET_SPMM512]] inline __m512 load_values16(const V* p, __mmask16 k) noexcept {
  if constexpr (std::same_as<V, float>) {
    return _mm512_maskz_loadu_ps(k, p);
  } else if constexpr (std::same_as<V, half>) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
  } else {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, p)));
  }
}

/// 16 column indices (cleared lanes read as 0) widened to int32.
template <class I>
[[QPRUNE_TARGET_SPMM512]] inline __m512i load_index16(const I* p, __mmask16 k) noexcept {
  if constexpr (sizeof(I) == 1) {
    return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, p));
  } else if constexpr (sizeof(I) == 2) {
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p));
  } else {
    return _mm512_maskz_loadu_epi32(k, p);
  }
}

[[QPRUNE_TARGET_SPMM512]] inline __mmask16 first_lanes(index_t left) noexcept {
  return left >= 16 ? static_cast<__mmask16>(0xffff)
                    : static_cast<__mmask16>((1u << static_cast<unsigned>(left)) - 1u);
}

/// x[idx[0..15]] as one zmm, from four x86_avx2::xload4.
template <class I>
[[QPRUNE_TARGET_SPMM512, gnu::always_inline]] inline __m512 xload16(const float* x, const I* idx) noexcept {
  using x86_avx2::xload4;
  const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(xload4(x, idx)), xload4(x, idx + 4), 1);
  const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(xload4(x, idx + 8)), xload4(x, idx + 12), 1);
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/// CSR rows: entry j of row r is values[row_ptr[r] + j].
template <class V, class I, class P>
struct csr_source {
  detail::spmm_csr_rows<V, I, P> a;

  [[QPRUNE_TARGET_SPMM512]] index_t start(index_t r) const noexcept {
    return static_cast<index_t>(a.row_ptr[r]);
  }
  [[QPRUNE_TARGET_SPMM512]] index_t length(index_t r) const noexcept {
    return static_cast<index_t>(a.row_ptr[r + 1] - a.row_ptr[r]);
  }
  /// Entries j0 .. j0 + 15 of the row starting at `s` with `len` entries: values,
  /// columns, and the lanes that hold a nonzero value inside the row.
  [[QPRUNE_TARGET_SPMM512]] void load(index_t s, index_t j0, index_t len, __m512& w, __m512i& col,
                                      __mmask16& ok) const noexcept {
    const __mmask16 in = first_lanes(len - j0);
    w = load_values16(a.values + s + j0, in);
    col = load_index16(a.cols + s + j0, in);
    ok = _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_NEQ_UQ);  // cleared lanes are +0
  }
  /// x at the columns of entries j0 .. j0 + 15; lanes past the row read x[0]
  /// (they hold value 0 and are masked out). Precondition: the row is not empty.
  /// Lanes past the row read the next row's columns (valid, and masked out);
  /// only the matrix's last block, where 16 indices would pass the end of the
  /// array, goes through a local copy. So a row's tail costs no mispredicted branch.
  [[QPRUNE_TARGET_SPMM512]] __m512 xvalues(const float* x, index_t s, index_t j0, index_t len,
                                           __m512i, __mmask16) const noexcept {
    const I* ip = a.cols + s + j0;
    if (s + j0 + 16 <= a.nnz) [[likely]] return xload16(x, ip);
    I local[16] = {};
    for (index_t t = 0; t < len - j0; ++t) local[t] = ip[t];
    return xload16(x, local);
  }
};

/// Packed N:M rows: slot j of row r is slot r * slots_per_row + j, column
/// (j / n) * m + position.
template <class V>
struct nm_source {
  detail::spmm_nm_rows<V> a;
  __m512i shifts;  ///< lane t: (t % 8) * bits
  __m512i lane;    ///< lane t: t
  std::uint32_t magic;  ///< (o * magic) >> 16 == o / n for 0 <= o < 32
  int n_shift;          ///< log2 n when n is a power of two, else -1

  [[QPRUNE_TARGET_SPMM512]] explicit nm_source(const detail::spmm_nm_rows<V>& rows) noexcept
      : a(rows),
        shifts(_mm512_mullo_epi32(_mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0),
                                  _mm512_set1_epi32(rows.bits))),
        lane(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)),
        magic(static_cast<std::uint32_t>((65536 + rows.n - 1) / rows.n)),
        n_shift((rows.n & (rows.n - 1)) == 0 ? __builtin_ctz(static_cast<unsigned>(rows.n)) : -1),
        lane_col(n_shift >= 0 ? _mm512_mullo_epi32(_mm512_srli_epi32(lane, static_cast<unsigned>(n_shift)),
                                                   _mm512_set1_epi32(rows.m))
                              : _mm512_setzero_si512()) {}

  __m512i lane_col;  ///< contiguous(): lane t's group start within the block, (t / n) * m

  [[QPRUNE_TARGET_SPMM512]] index_t start(index_t r) const noexcept { return r * a.slots_per_row; }
  [[QPRUNE_TARGET_SPMM512]] index_t length(index_t) const noexcept { return a.slots_per_row; }
  /// True when every block of 16 slots is whole groups spanning at most 32
  /// columns (N divides 16 and M <= 2N: 1:2, 2:4, 4:8, 8:16, ...): x is then
  /// loaded contiguously and permuted instead of gathered.
  [[QPRUNE_TARGET_SPMM512]] bool contiguous() const noexcept {
    return n_shift >= 0 && a.m <= 2 * a.n;  // n < m <= 16, so n divides 16
  }
  [[QPRUNE_TARGET_SPMM512]] void load(index_t s, index_t j0, index_t len, __m512& w, __m512i& col,
                                      __mmask16& ok) const noexcept {
    const __mmask16 in = first_lanes(len - j0);
    w = load_values16(a.values + s + j0, in);
    const std::uint64_t bits = detail::spmm_load_bits64(
        a.positions, a.position_bytes,
        static_cast<std::uint64_t>(s + j0) * static_cast<std::uint64_t>(a.bits));
    const auto lo = static_cast<int>(static_cast<std::uint32_t>(bits));
    const auto hi = static_cast<int>(static_cast<std::uint32_t>(bits >> (8 * a.bits)));
    const __m512i packed = _mm512_mask_set1_epi32(_mm512_set1_epi32(lo), 0xff00, hi);
    const __m512i pos = _mm512_and_si512(_mm512_srlv_epi32(packed, shifts),
                                         _mm512_set1_epi32((1 << a.bits) - 1));
    // Group of slot j0 + t: j0 / n + (j0 % n + t) / n, the second by a multiply-shift.
    // (j0 / n, j0 % n in 32 bits: j0 < slots_per_row < 2^31, checked by the caller.)
    const auto j = static_cast<std::uint32_t>(j0);
    const auto n = static_cast<std::uint32_t>(a.n);
    const std::uint32_t jq = n_shift >= 0 ? j >> n_shift : j / n;
    const __m512i o = _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int>(j - jq * n)));
    const __m512i q = _mm512_srli_epi32(
        _mm512_mullo_epi32(o, _mm512_set1_epi32(static_cast<int>(magic))), 16);
    const __m512i g = _mm512_add_epi32(q, _mm512_set1_epi32(static_cast<int>(jq)));
    col = _mm512_add_epi32(_mm512_mullo_epi32(g, _mm512_set1_epi32(a.m)), pos);
    ok = _mm512_mask_cmp_ps_mask(_mm512_cmplt_epi32_mask(col, _mm512_set1_epi32(static_cast<int>(a.cols))),
                                 w, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  }
  /// x at the lanes' columns; lanes outside `ok` may read as anything finite or not.
  [[QPRUNE_TARGET_SPMM512]] __m512 xvalues(const float* x, index_t, index_t j0, index_t,
                                           __m512i col, __mmask16 ok) const noexcept {
    if (contiguous()) {
      const index_t base = (j0 >> n_shift) * a.m;  // first column of the block (n = 2^n_shift)
      const index_t left = a.cols - base;
      const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(left), x + base);
      const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(std::max<index_t>(0, left - 16)),
                                              x + std::min(base + 16, a.cols));
      const __m512i local = _mm512_sub_epi32(col, _mm512_set1_epi32(static_cast<int>(base)));
      return _mm512_permutex2var_ps(lo, _mm512_and_si512(local, _mm512_set1_epi32(31)), hi);
    }
    alignas(64) std::int32_t c[16];
    _mm512_store_si512(c, _mm512_maskz_mov_epi32(ok, col));  // invalid lanes read x[0]
    asm("" : "+m"(c));  // keep the scalar reloads (GCC otherwise extracts on port 5)
    return xload16(x, c);
  }
};

/// SpMV over packed N:M rows when nm_source::contiguous(): each block of 16
/// slots covers the 32 or fewer columns from base = (j0 / n) * m, loaded with
/// two masked loads and permuted into place (no gather, no division); four
/// rows at a time (spmv_nm_rows).
template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void spmv_nm_contiguous(const nm_source<V>& src,
                                                         const detail::spmm_io& io, index_t r0,
                                                         index_t r1) noexcept;

/// The fixed tree of the lane order over one register's 16 partial sums.
[[QPRUNE_TARGET_SPMM512]] inline float tree16(__m512 acc) noexcept {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

/// y_r = sum + b_r, or fma(s_r, sum, b_r) for int8 values.
template <class V>
[[QPRUNE_TARGET_SPMM512]] inline float finish(float sum, const detail::spmm_io& io,
                                              index_t r) noexcept {
  const float b = io.bias != nullptr ? io.bias[r] : 0.0f;
  if constexpr (std::same_as<V, std::int8_t>) {
    return std::fma(io.scales[r], sum, b);
  } else {
    return sum + b;
  }
}

/// acc += the row's entries j0 .. j0 + 15 times x at their columns (valid lanes only).
template <class Source>
[[QPRUNE_TARGET_SPMM512]] inline void spmv_block(const Source& src, const float* x, index_t s, index_t j0,
                                                 index_t len, __m512& acc) noexcept {
  __m512 w;
  __m512i col;
  __mmask16 ok;
  src.load(s, j0, len, w, col, ok);
  acc = _mm512_mask3_fmadd_ps(w, src.xvalues(x, s, j0, len, col, ok), acc, ok);
}

/// y[r] for rows [r0, r1): 16 entries per step, x fetched for the valid lanes;
/// two rows at a time, their blocks interleaved, so two independent fma chains
/// and reduction trees overlap (each row's own arithmetic is unchanged).
template <class V, class Source>
[[QPRUNE_TARGET_SPMM512]] inline void spmv(const Source& src, const detail::spmm_io& io, index_t r0,
                                           index_t r1) noexcept {
  index_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    const index_t sa = src.start(r), la = src.length(r);
    const index_t sb = src.start(r + 1), lb = src.length(r + 1);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    const index_t both = std::min(la, lb);
    index_t j0 = 0;
    for (; j0 < both; j0 += 16) {
      spmv_block(src, io.x, sa, j0, la, a);
      spmv_block(src, io.x, sb, j0, lb, b);
    }
    for (index_t j = j0; j < la; j += 16) spmv_block(src, io.x, sa, j, la, a);
    for (index_t j = j0; j < lb; j += 16) spmv_block(src, io.x, sb, j, lb, b);
    io.y[r] = finish<V>(tree16(a), io, r);
    io.y[r + 1] = finish<V>(tree16(b), io, r + 1);
  }
  for (; r < r1; ++r) {
    const index_t s = src.start(r), len = src.length(r);
    __m512 acc = _mm512_setzero_ps();
    for (index_t j0 = 0; j0 < len; j0 += 16) spmv_block(src, io.x, s, j0, len, acc);
    io.y[r] = finish<V>(tree16(acc), io, r);
  }
}

/// Positions of slots s0 .. s0 + 15 (s0 = row start + j0) as each lane's column
/// within the block's window of 32 columns: (t / n) * m + position (contiguous()).
template <class V>
[[QPRUNE_TARGET_SPMM512]] inline __m512i nm_local_columns(const nm_source<V>& src, index_t s0) noexcept {
  const auto& a = src.a;
  const std::uint64_t bits = detail::spmm_load_bits64(
      a.positions, a.position_bytes, static_cast<std::uint64_t>(s0) * static_cast<std::uint64_t>(a.bits));
  const auto lo = static_cast<int>(static_cast<std::uint32_t>(bits));
  const auto hi = static_cast<int>(static_cast<std::uint32_t>(bits >> (8 * a.bits)));
  const __m512i pos =
      _mm512_and_si512(_mm512_srlv_epi32(_mm512_mask_set1_epi32(_mm512_set1_epi32(lo), 0xff00, hi), src.shifts),
                       _mm512_set1_epi32((1 << a.bits) - 1));
  return _mm512_add_epi32(src.lane_col, pos);
}

/// x[base .. base + 32) of the block starting at slot j0 (base = (j0 / n) * m),
/// columns past the matrix read as +0 (never loaded).
template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void nm_window(const nm_source<V>& src, const float* x, index_t j0,
                                                __m512& lo, __m512& hi) noexcept {
  const index_t base = (j0 >> src.n_shift) * src.a.m;
  const index_t left = src.a.cols - base;  // >= 1
  lo = _mm512_maskz_loadu_ps(first_lanes(left), x + base);
  hi = _mm512_maskz_loadu_ps(first_lanes(std::max<index_t>(0, left - 16)), x + std::min(base + 16, src.a.cols));
}

/// R rows [r, r + R) of spmv_nm_contiguous: the rows share each block's x
/// window, and their R accumulator chains overlap (one row alone waits on the
/// fma latency: a row's lane sums are sequential by the lane order). The lanes
/// taken are those with a nonzero value: padding slots, including those whose
/// column lies past the matrix, hold 0.
template <class V, int R>
[[QPRUNE_TARGET_SPMM512]] inline void spmv_nm_rows(const nm_source<V>& src, const detail::spmm_io& io,
                                                   index_t r) noexcept {
  const auto& a = src.a;
  const index_t len = a.slots_per_row;
  const __m512 zero = _mm512_setzero_ps();
  __m512 acc[R];
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q) acc[q] = zero;
  for (index_t j0 = 0; j0 < len; j0 += 16) {
    __m512 xlo, xhi;
    nm_window(src, io.x, j0, xlo, xhi);
    const __mmask16 in = first_lanes(len - j0);
#pragma GCC unroll 4
    for (int q = 0; q < R; ++q) {
      const index_t s = (r + q) * len;
      const __m512 w = load_values16(a.values + s + j0, in);
      const __m512i local = nm_local_columns(src, s + j0);
      const __mmask16 ok = _mm512_cmp_ps_mask(w, zero, _CMP_NEQ_UQ);
      acc[q] = _mm512_mask3_fmadd_ps(w, _mm512_permutex2var_ps(xlo, local, xhi), acc[q], ok);
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q) io.y[r + q] = finish<V>(tree16(acc[q]), io, r + q);
}

template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void spmv_nm_contiguous(const nm_source<V>& src,
                                                         const detail::spmm_io& io, index_t r0,
                                                         index_t r1) noexcept {
  index_t r = r0;
  for (; r + 4 <= r1; r += 4) spmv_nm_rows<V, 4>(src, io, r);
  for (; r < r1; ++r) spmv_nm_rows<V, 1>(src, io, r);
}

/// One matrix row decoded for spmm_nm_contiguous: per block of 16 slots, the
/// values as float (w), the lanes' window columns (col) and the nonzero lanes (ok).
struct nm_decoded {
  float* w;
  std::int32_t* col;
  std::uint16_t* ok;
};

template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void nm_decode_row(const nm_source<V>& src, index_t r,
                                                    const nm_decoded& d) noexcept {
  const index_t len = src.a.slots_per_row, s = r * len;
  for (index_t j0 = 0; j0 < len; j0 += 16) {
    const __m512 w = load_values16(src.a.values + s + j0, first_lanes(len - j0));
    _mm512_store_ps(d.w + j0, w);
    _mm512_store_si512(d.col + j0, nm_local_columns(src, s + j0));
    d.ok[j0 / 16] = static_cast<std::uint16_t>(_mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_NEQ_UQ));
  }
}

/// Y[i][r + q] for batch rows i0 .. i0 + RI - 1 and matrix rows r + q, q < R,
/// from X row-major [M, K] (io.x) and the R decoded rows: each is spmv's lane
/// order for that batch row (one accumulator per (q, i), 16 lanes = the 16
/// partial sums), x read as the 32-column windows of the batch rows, shared by
/// the R matrix rows; the decoded rows are shared by the RI batch rows.
template <class V, int R, int RI>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_nm_tile(const nm_source<V>& src, const detail::spmm_io& io,
                                                   index_t i0, index_t r, const nm_decoded* d) noexcept {
  const index_t len = src.a.slots_per_row, k = src.a.cols;
  const float* x = io.x + i0 * k;
  __m512 acc[R][RI];
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 2
    for (int i = 0; i < RI; ++i) acc[q][i] = _mm512_setzero_ps();
  for (index_t j0 = 0; j0 < len; j0 += 16) {
    // The window of nm_window, its bounds computed once for the RI batch rows.
    const index_t base = (j0 >> src.n_shift) * src.a.m;
    const index_t left = k - base;  // >= 1
    const __mmask16 mlo = first_lanes(left), mhi = first_lanes(std::max<index_t>(0, left - 16));
    const float* p = x + base;
    const index_t hoff = std::min<index_t>(16, left);
    __m512 xlo[RI], xhi[RI];
#pragma GCC unroll 4
    for (int i = 0; i < RI; ++i) {
      xlo[i] = _mm512_maskz_loadu_ps(mlo, p + i * k);
      xhi[i] = _mm512_maskz_loadu_ps(mhi, p + i * k + hoff);
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; ++q) {
      const __m512 w = _mm512_load_ps(d[q].w + j0);
      const __m512i col = _mm512_load_si512(d[q].col + j0);
      const __mmask16 ok = d[q].ok[j0 / 16];
#pragma GCC unroll 4
      for (int i = 0; i < RI; ++i) {
        acc[q][i] = _mm512_mask3_fmadd_ps(w, _mm512_permutex2var_ps(xlo[i], col, xhi[i]), acc[q][i], ok);
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 2
    for (int i = 0; i < RI; ++i) io.y[(i0 + i) * io.n + r + q] = finish<V>(tree16(acc[q][i]), io, r + q);
}

template <class V, int R>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_nm_batch(const nm_source<V>& src, const detail::spmm_io& io,
                                                    index_t r, const nm_decoded* d) noexcept {
  index_t i0 = 0;
  for (; i0 + 2 <= io.m; i0 += 2) spmm_nm_tile<V, R, 2>(src, io, i0, r, d);
  if (i0 < io.m) spmm_nm_tile<V, R, 1>(src, io, i0, r, d);
}

/// Matrix rows decoded at a time by spmm_nm_contiguous.
inline constexpr int spmm_nm_rows_per_pass = 4;

/// SpMM over packed N:M rows when nm_source::contiguous(), X row-major (io.x,
/// no transpose) and Y row-major [M, N]: matrix rows four at a time, decoded
/// once into d[0..3] (each slots_per_row rounded up to 16 entries), then tiles
/// of 4 matrix rows x 2 batch rows (spmm_nm_tile): each x window loaded (from
/// L2 for large batches) serves 4 rows, the decoded rows stay in L1.
template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_nm_contiguous(const detail::spmm_nm_rows<V>& a,
                                                         const detail::spmm_io& io, index_t r0, index_t r1,
                                                         const nm_decoded* d) noexcept {
  const nm_source<V> src(a);
  index_t r = r0;
  for (; r + spmm_nm_rows_per_pass <= r1; r += spmm_nm_rows_per_pass) {
    for (int q = 0; q < spmm_nm_rows_per_pass; ++q) nm_decode_row(src, r + q, d[q]);
    spmm_nm_batch<V, spmm_nm_rows_per_pass>(src, io, r, d);
  }
  for (; r < r1; ++r) {
    nm_decode_row(src, r, d[0]);
    spmm_nm_batch<V, 1>(src, io, r, d);
  }
}

/// True when spmm_nm_contiguous / the window path of spmv_nm can take pattern n:m.
[[nodiscard]] constexpr bool nm_contiguous(int n, int m) noexcept {
  return n > 0 && (n & (n - 1)) == 0 && m <= 2 * n;
}

/// Decodes row r into w[0..L) and off[0..L) (L = length rounded up to 16): each
/// valid entry as (value, column * ld), every other slot as (-0.0f, k * ld), the
/// zero row of X^T, so that fma(-0, +0, acc) leaves acc exactly as it was.
template <class Source>
[[QPRUNE_TARGET_SPMM512]] inline index_t decode_row(const Source& src, const detail::spmm_io& io,
                                                    index_t r, float* w, std::int32_t* off) noexcept {
  const index_t s = src.start(r), len = src.length(r);
  const __m512 neg0 = _mm512_set1_ps(-0.0f);
  const __m512i zero_off = _mm512_set1_epi32(static_cast<int>(io.k * io.ld));
  const __m512i ld = _mm512_set1_epi32(static_cast<int>(io.ld));
  index_t j0 = 0;
  for (; j0 < len; j0 += 16) {
    __m512 v;
    __m512i col;
    __mmask16 ok;
    src.load(s, j0, len, v, col, ok);
    _mm512_storeu_ps(w + j0, _mm512_mask_blend_ps(ok, neg0, v));
    _mm512_storeu_si512(off + j0, _mm512_mask_blend_epi32(ok, zero_off, _mm512_mullo_epi32(col, ld)));
  }
  return j0;
}

template <class V, class Source>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_row(const Source& src, const detail::spmm_io& io, index_t r,
                                               float* wbuf, std::int32_t* obuf, float* yt) noexcept;

/// Y[m][r] for rows [r0, r1) of the matrix, all of the batch: per row, the
/// decoded entries run over X^T 16 batch columns at a time, entry j into
/// accumulator j % 16, then the fixed tree combines the 16 accumulators.
template <class V, class Source>
[[QPRUNE_TARGET_SPMM512]] inline void spmm(const Source& src, const detail::spmm_io& io, index_t r0,
                                           index_t r1, float* wbuf, std::int32_t* obuf,
                                           float* tile) noexcept {
  // Results of up to 16 rows collect in tile [16][ld] (Y^T), then go to Y
  // [m][r .. r + 16) through one transpose: contiguous stores instead of a
  // scattered column per row.
  for (index_t rb = r0; rb < r1; rb += 16) {
    const index_t re = std::min(r1, rb + 16);
    for (index_t r = rb; r < re; ++r) spmm_row<V>(src, io, r, wbuf, obuf, tile + (r - rb) * io.ld);
    x86_avx2::transpose(tile, re - rb, io.m, io.ld, io.y + rb, io.n);
  }
}

/// Row r of the SpMM for the whole batch, into out[0 .. m) (Y^T row r).
template <class V, class Source>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_row(const Source& src, const detail::spmm_io& io, index_t r,
                                               float* wbuf, std::int32_t* obuf, float* yt) noexcept {
  {
    const index_t len = decode_row(src, io, r, wbuf, obuf);
    const float b = io.bias != nullptr ? io.bias[r] : 0.0f;
    for (index_t c0 = 0; c0 < io.m; c0 += 16) {
      const float* xt = io.x + c0;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_ps();
      for (index_t j = 0; j < len; j += 16) {
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) {
          x86::fma16(acc[t], _mm512_set1_ps(wbuf[j + t]), _mm512_loadu_ps(xt + obuf[j + t]));
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) acc[t] = _mm512_add_ps(acc[t], acc[t + 8]);
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) acc[t] = _mm512_add_ps(acc[t], acc[t + 4]);
#pragma GCC unroll 2
      for (int t = 0; t < 2; ++t) acc[t] = _mm512_add_ps(acc[t], acc[t + 2]);
      __m512 sum = _mm512_add_ps(acc[0], acc[1]);
      if constexpr (std::same_as<V, std::int8_t>) {
        sum = _mm512_fmadd_ps(_mm512_set1_ps(io.scales[r]), sum, _mm512_set1_ps(b));
      } else {
        sum = _mm512_add_ps(sum, _mm512_set1_ps(b));
      }
      _mm512_storeu_ps(yt + c0, sum);  // ld >= c0 + 16: padding lanes are never read
    }
  }
}

// Entry points (the sources hold vector constants, so they are built here).

/// acc += a CSR block of 16 entries at s, all inside one row: no lane mask to
/// build, no bound to check (1024^2 SpMV: 1.72x -> 2.16x Eigen's CSR at 90%,
/// 1.23x -> 1.58x at 95%, against every block paying them). No software
/// prefetch: with rows in order the arrays stream and the hardware prefetcher
/// keeps up (Zen 4, 4096^2: 409 -> 387 us at 90%, 212 -> 200 us at 95%
/// without it; it had doubled the speed of rows taken out of order).
template <class V, class I, class P>
[[QPRUNE_TARGET_SPMM512]] inline void csr_block(const csr_source<V, I, P>& src, const float* x, index_t s,
                                                __m512& acc) noexcept {
  const __m512 w = load_values16(src.a.values + s, static_cast<__mmask16>(0xffff));
  const __mmask16 ok = _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  acc = _mm512_mask3_fmadd_ps(w, xload16(x, src.a.cols + s), acc, ok);
}

/// CSR SpMV, rows [r0, r1) in order, one at a time: each row's whole 16-entry
/// blocks (csr_block), then its partial block (spmv_block), then the tree.
/// Rows in order keep the value and index arrays streaming: on Zen 4 this ran
/// 1024^2 SpMV 1.4x faster at 95% sparsity (15.2 vs 21.3 us) than rows grouped
/// by length in pairs (which had predicted the loop exits on Cascade Lake).
template <class V, class I, class P>
[[QPRUNE_TARGET_SPMM512]] inline void spmv_csr(const detail::spmm_csr_rows<V, I, P>& a,
                                     const detail::spmm_io& io, index_t r0, index_t r1) noexcept {
  const csr_source<V, I, P> src{a};
  constexpr index_t whole = ~index_t{15};
  for (index_t r = r0; r < r1; ++r) {
    const index_t s = src.start(r), len = src.length(r), f = len & whole;
    __m512 acc = _mm512_setzero_ps();
    for (index_t j = 0; j < f; j += 16) csr_block(src, io.x, s + j, acc);
    if (len != f) spmv_block(src, io.x, s + f, 0, len - f, acc);
    io.y[r] = finish<V>(tree16(acc), io, r);
  }
}

template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void spmv_nm(const detail::spmm_nm_rows<V>& a, const detail::spmm_io& io,
                                    index_t r0, index_t r1) noexcept {
  const nm_source<V> src(a);
  if (src.contiguous()) {
    spmv_nm_contiguous<V>(src, io, r0, r1);
  } else {
    spmv<V>(src, io, r0, r1);
  }
}

template <class V, class I, class P>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_csr(const detail::spmm_csr_rows<V, I, P>& a,
                                     const detail::spmm_io& io, index_t r0, index_t r1, float* wbuf,
                                     std::int32_t* obuf, float* tile) noexcept {
  const csr_source<V, I, P> src{a};
  spmm<V>(src, io, r0, r1, wbuf, obuf, tile);
}

template <class V>
[[QPRUNE_TARGET_SPMM512]] inline void spmm_nm(const detail::spmm_nm_rows<V>& a, const detail::spmm_io& io,
                                    index_t r0, index_t r1, float* wbuf, std::int32_t* obuf,
                                    float* tile) noexcept {
  const nm_source<V> src(a);
  spmm<V>(src, io, r0, r1, wbuf, obuf, tile);
}

#undef QPRUNE_TARGET_SPMM512
}  // namespace qprune::kernels::x86_avx512

// ===========================================================================
// AVX2 (+ FMA, F16C): the same order with the 16 lanes in two ymm registers
// ===========================================================================
namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_SPMM256 gnu::target("avx2,fma,f16c")

/// 8 stored values widened to float (the pointer must cover 8 values).
template <class V>
[[QPRUNE_TARGET_SPMM256]] inline __m256 load_values8(const V* p) noexcept {
  if constexpr (std::same_as<V, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::same_as<V, half>) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
}

template <class I>
[[QPRUNE_TARGET_SPMM256]] inline __m256i load_index8(const I* p) noexcept {
  if constexpr (sizeof(I) == 1) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (sizeof(I) == 2) {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
}

/// 16 entries as two halves (lanes 0-7, 8-15); ok is an all-ones float lane mask.
struct entries16 {
  __m256 w[2];
  __m256i col[2];
  __m256 ok[2];
};

/// Copies the `cnt` < 16 remaining items at p into a zero-filled local block,
/// so that vector loads of 16 never pass the end of the array.
template <class T>
struct tail_block {
  T v[16] = {};
  tail_block(const T* p, index_t cnt) noexcept {
    for (index_t i = 0; i < cnt; ++i) v[i] = p[i];
  }
};

template <class V, class I, class P>
struct csr_source {
  detail::spmm_csr_rows<V, I, P> a;

  [[QPRUNE_TARGET_SPMM256]] index_t start(index_t r) const noexcept {
    return static_cast<index_t>(a.row_ptr[r]);
  }
  [[QPRUNE_TARGET_SPMM256]] index_t length(index_t r) const noexcept {
    return static_cast<index_t>(a.row_ptr[r + 1] - a.row_ptr[r]);
  }
  [[QPRUNE_TARGET_SPMM256]] void load(index_t s, index_t j0, index_t len,
                                      entries16& e) const noexcept {
    const V* vp = a.values + s + j0;
    const I* ip = a.cols + s + j0;
    prefetch_ahead<512>(vp);  // values and columns 512 entries ahead
    prefetch_ahead<512>(ip);
    if (s + j0 + 16 <= a.nnz) [[likely]] {
      // Lanes past the row hold the next row's entries: cut by the lane mask.
      fill(vp, ip, e);
      for (int h = 0; h < 2; ++h) {
        e.ok[h] = _mm256_and_ps(e.ok[h], _mm256_castsi256_ps(x86::first_lanes8(len - j0 - 8 * h)));
      }
    } else {
      const tail_block<V> tv(vp, len - j0);
      const tail_block<I> ti(ip, len - j0);
      fill(tv.v, ti.v, e);  // zero values: masked out
    }
  }
  [[QPRUNE_TARGET_SPMM256]] static void fill(const V* vp, const I* ip, entries16& e) noexcept {
    for (int h = 0; h < 2; ++h) {
      e.w[h] = load_values8(vp + 8 * h);
      e.col[h] = load_index8(ip + 8 * h);
      e.ok[h] = _mm256_cmp_ps(e.w[h], _mm256_setzero_ps(), _CMP_NEQ_UQ);
    }
  }
};

template <class V>
struct nm_source {
  detail::spmm_nm_rows<V> a;
  __m256i shifts;  ///< lane t: t * bits
  __m256i lane;    ///< lane t: t
  std::uint32_t magic;
  int n_shift;

  [[QPRUNE_TARGET_SPMM256]] explicit nm_source(const detail::spmm_nm_rows<V>& rows) noexcept
      : a(rows),
        shifts(_mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32(rows.bits))),
        lane(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0)),
        magic(static_cast<std::uint32_t>((65536 + rows.n - 1) / rows.n)),
        n_shift((rows.n & (rows.n - 1)) == 0 ? __builtin_ctz(static_cast<unsigned>(rows.n)) : -1) {}

  [[QPRUNE_TARGET_SPMM256]] index_t start(index_t r) const noexcept { return r * a.slots_per_row; }
  [[QPRUNE_TARGET_SPMM256]] index_t length(index_t) const noexcept { return a.slots_per_row; }
  [[QPRUNE_TARGET_SPMM256]] void load(index_t s, index_t j0, index_t len,
                                      entries16& e) const noexcept {
    const V* vp = a.values + s + j0;
    const index_t left = len - j0;
    if (left >= 16) {
      for (int h = 0; h < 2; ++h) e.w[h] = load_values8(vp + 8 * h);
    } else {
      const tail_block<V> tv(vp, left);
      for (int h = 0; h < 2; ++h) e.w[h] = load_values8(tv.v + 8 * h);
    }
    const std::uint64_t bits = detail::spmm_load_bits64(
        a.positions, a.position_bytes,
        static_cast<std::uint64_t>(s + j0) * static_cast<std::uint64_t>(a.bits));
    const auto lo = static_cast<int>(static_cast<std::uint32_t>(bits));
    const auto hi = static_cast<int>(static_cast<std::uint32_t>(bits >> (8 * a.bits)));
    const __m256i pmask = _mm256_set1_epi32((1 << a.bits) - 1);
    const __m256i cols = _mm256_set1_epi32(static_cast<int>(a.cols));
    const auto j = static_cast<std::uint32_t>(j0);
    const auto n = static_cast<std::uint32_t>(a.n);
    const std::uint32_t jq = n_shift >= 0 ? j >> n_shift : j / n;
    const __m256i o0 = _mm256_set1_epi32(static_cast<int>(j - jq * n));
    const __m256i g0 = _mm256_set1_epi32(static_cast<int>(jq));
    const __m256i mg = _mm256_set1_epi32(static_cast<int>(magic));
    for (int h = 0; h < 2; ++h) {
      const __m256i pos = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(h == 0 ? lo : hi), shifts), pmask);
      const __m256i o = _mm256_add_epi32(_mm256_add_epi32(lane, _mm256_set1_epi32(8 * h)), o0);
      const __m256i g = _mm256_add_epi32(_mm256_srli_epi32(_mm256_mullo_epi32(o, mg), 16), g0);
      e.col[h] = _mm256_add_epi32(_mm256_mullo_epi32(g, _mm256_set1_epi32(a.m)), pos);
      const __m256 inside = _mm256_castsi256_ps(_mm256_cmpgt_epi32(cols, e.col[h]));
      e.ok[h] = _mm256_and_ps(inside, _mm256_cmp_ps(e.w[h], _mm256_setzero_ps(), _CMP_NEQ_UQ));
    }
  }
};

/// The fixed tree over partial sums 0-7 (lo) and 8-15 (hi).
[[QPRUNE_TARGET_SPMM256]] inline float tree16(__m256 lo, __m256 hi) noexcept {
  const __m256 h = _mm256_add_ps(lo, hi);
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

template <class V>
[[QPRUNE_TARGET_SPMM256]] inline float finish(float sum, const detail::spmm_io& io,
                                              index_t r) noexcept {
  const float b = io.bias != nullptr ? io.bias[r] : 0.0f;
  if constexpr (std::same_as<V, std::int8_t>) {
    return std::fma(io.scales[r], sum, b);
  } else {
    return sum + b;
  }
}

template <class V, class Source>
[[QPRUNE_TARGET_SPMM256]] inline void spmv(const Source& src, const detail::spmm_io& io, index_t r0,
                                           index_t r1) noexcept {
  for (index_t r = r0; r < r1; ++r) {
    const index_t s = src.start(r), len = src.length(r);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (index_t j0 = 0; j0 < len; j0 += 16) {
      entries16 e;
      src.load(s, j0, len, e);
      // x by broadcast loads and blends (faster than vgatherdps where measured);
      // lanes outside ok read x[0] and are blended away.
      alignas(32) std::int32_t c[16];
      for (int h = 0; h < 2; ++h) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(c + 8 * h),
                           _mm256_and_si256(e.col[h], _mm256_castps_si256(e.ok[h])));
      }
      asm("" : "+m"(c));  // keep the scalar reloads (GCC otherwise extracts on port 5)
      for (int h = 0; h < 2; ++h) {
        const __m256 xv = xload8(io.x, c + 8 * h);
        acc[h] = _mm256_blendv_ps(acc[h], _mm256_fmadd_ps(e.w[h], xv, acc[h]), e.ok[h]);
      }
    }
    io.y[r] = finish<V>(tree16(acc[0], acc[1]), io, r);
  }
}

/// As x86_avx512::decode_row.
template <class Source>
[[QPRUNE_TARGET_SPMM256]] inline index_t decode_row(const Source& src, const detail::spmm_io& io,
                                                    index_t r, float* w, std::int32_t* off) noexcept {
  const index_t s = src.start(r), len = src.length(r);
  const __m256 neg0 = _mm256_set1_ps(-0.0f);
  const __m256i zero_off = _mm256_set1_epi32(static_cast<int>(io.k * io.ld));
  const __m256i ld = _mm256_set1_epi32(static_cast<int>(io.ld));
  index_t j0 = 0;
  for (; j0 < len; j0 += 16) {
    entries16 e;
    src.load(s, j0, len, e);
    for (int h = 0; h < 2; ++h) {
      _mm256_storeu_ps(w + j0 + 8 * h, _mm256_blendv_ps(neg0, e.w[h], e.ok[h]));
      const __m256i o = _mm256_mullo_epi32(e.col[h], ld);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(off + j0 + 8 * h),
                          _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(zero_off),
                                                               _mm256_castsi256_ps(o), e.ok[h])));
    }
  }
  return j0;
}

/// Partial sums H*8 .. H*8+7 of one row over 8 batch columns at xt.
template <int H>
[[QPRUNE_TARGET_SPMM256]] inline void half_pass(const float* w, const std::int32_t* off, index_t len,
                                                const float* xt, __m256 (&acc)[8]) noexcept {
#pragma GCC unroll 8
  for (int t = 0; t < 8; ++t) acc[t] = _mm256_setzero_ps();
  for (index_t j = H * 8; j < len; j += 16) {
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) x86::fma8(acc[t], _mm256_set1_ps(w[j + t]), _mm256_loadu_ps(xt + off[j + t]));
  }
}

/// As x86_avx512::spmm, 8 batch columns at a time, the 16 accumulators in two
/// passes of 8 (AVX2 has 16 registers).
template <class V, class Source>
[[QPRUNE_TARGET_SPMM256]] inline void spmm_row(const Source& src, const detail::spmm_io& io, index_t r,
                                               float* wbuf, std::int32_t* obuf, float* yt) noexcept {
  {
    const index_t len = decode_row(src, io, r, wbuf, obuf);
    const float b = io.bias != nullptr ? io.bias[r] : 0.0f;
    for (index_t c0 = 0; c0 < io.m; c0 += 8) {
      __m256 lo[8], hi[8];
      half_pass<0>(wbuf, obuf, len, io.x + c0, lo);
      alignas(32) float keep[8][8];
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) _mm256_store_ps(keep[t], lo[t]);
      half_pass<1>(wbuf, obuf, len, io.x + c0, hi);
#pragma GCC unroll 8
      for (int t = 0; t < 8; ++t) hi[t] = _mm256_add_ps(_mm256_load_ps(keep[t]), hi[t]);
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) hi[t] = _mm256_add_ps(hi[t], hi[t + 4]);
#pragma GCC unroll 2
      for (int t = 0; t < 2; ++t) hi[t] = _mm256_add_ps(hi[t], hi[t + 2]);
      __m256 sum = _mm256_add_ps(hi[0], hi[1]);
      if constexpr (std::same_as<V, std::int8_t>) {
        sum = _mm256_fmadd_ps(_mm256_set1_ps(io.scales[r]), sum, _mm256_set1_ps(b));
      } else {
        sum = _mm256_add_ps(sum, _mm256_set1_ps(b));
      }
      _mm256_storeu_ps(yt + c0, sum);  // ld >= c0 + 8
    }
  }
}

/// As x86_avx512::spmm.
template <class V, class Source>
[[QPRUNE_TARGET_SPMM256]] inline void spmm(const Source& src, const detail::spmm_io& io, index_t r0,
                                           index_t r1, float* wbuf, std::int32_t* obuf,
                                           float* tile) noexcept {
  for (index_t rb = r0; rb < r1; rb += 16) {
    const index_t re = std::min(r1, rb + 16);
    for (index_t r = rb; r < re; ++r) spmm_row<V>(src, io, r, wbuf, obuf, tile + (r - rb) * io.ld);
    transpose(tile, re - rb, io.m, io.ld, io.y + rb, io.n);
  }
}

/// Eight entries of a CSR row into their eight partial sums (acc): values at
/// vp, column indices read straight from the index array at ip (8-, 16- or
/// 32-bit; no store and reload of a column vector, whose failed forwarding
/// stalled the generic spmv). `live` holds the lanes inside the row (all ones
/// inside a whole block); lanes outside it, or holding a stored zero, keep
/// their sums. Every index read is a valid column (the next row's, for lanes
/// past this row), so no lane reads x out of bounds.
template <class V, class I>
[[QPRUNE_TARGET_SPMM256]] inline void csr_half(const V* vp, const I* ip, const float* x, __m256 live,
                                               __m256& acc) noexcept {
  const __m256 w = load_values8(vp);
  const __m256 ok = _mm256_and_ps(live, _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_NEQ_UQ));
  acc = _mm256_blendv_ps(acc, _mm256_fmadd_ps(w, xload8(x, ip), acc), ok);
}
/// A block of up to 16 entries: the lower eight into acc[0], the upper eight
/// into acc[1] unless `upper` is false (no entry there: those sums stay).
template <class V, class I>
[[QPRUNE_TARGET_SPMM256]] inline void csr_block(const V* vp, const I* ip, const float* x, __m256 live0,
                                                __m256 live1, bool upper, __m256 (&acc)[2]) noexcept {
  csr_half(vp, ip, x, live0, acc[0]);
  if (upper) csr_half(vp + 8, ip + 8, x, live1, acc[1]);
}

/// CSR SpMV in the lane order of spmv (entry j of a row into partial sum j % 16,
/// the fixed tree at the end): whole blocks without lane masks, then the row's
/// partial block, masked; at the very end of the arrays that block is copied
/// into a zero-filled local one first, so no load passes nnz.
template <class V, class I, class P>
[[QPRUNE_TARGET_SPMM256]] inline void spmv_csr(const detail::spmm_csr_rows<V, I, P>& a,
                                     const detail::spmm_io& io, index_t r0, index_t r1) noexcept {
  const __m256 all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (index_t r = r0; r < r1; ++r) {
    const auto s = static_cast<index_t>(a.row_ptr[r]);
    const auto len = static_cast<index_t>(a.row_ptr[r + 1] - a.row_ptr[r]);
    const V* vp = a.values + s;
    const I* ip = a.cols + s;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    index_t j0 = 0;
    for (; j0 + 16 <= len; j0 += 16) {
      prefetch_ahead<512>(vp + j0);
      prefetch_ahead<512>(ip + j0);
      csr_block(vp + j0, ip + j0, io.x, all, all, true, acc);
    }
    if (j0 < len) {
      const index_t left = len - j0;
      const __m256 live0 = _mm256_castsi256_ps(x86::first_lanes8(left));
      const __m256 live1 = _mm256_castsi256_ps(x86::first_lanes8(left - 8));
      const bool upper = left > 8;
      if (s + j0 + (upper ? 16 : 8) <= a.nnz) [[likely]] {
        csr_block(vp + j0, ip + j0, io.x, live0, live1, upper, acc);
      } else {
        const tail_block<V> tv(vp + j0, left);
        const tail_block<I> ti(ip + j0, left);
        csr_block(tv.v, ti.v, io.x, live0, live1, upper, acc);
      }
    }
    io.y[r] = finish<V>(tree16(acc[0], acc[1]), io, r);
  }
}

/// True when spmv_nm takes its window path for pattern n:m: n is a power of two
/// and m <= 2n (1:2, 2:3, 2:4, 4:5 .. 4:8, 8:9 .. 8:16), so every 8 slots are
/// whole groups whose columns lie within 16 of (slot / n) * m.
constexpr bool nm_window_pattern(int n, int m) noexcept {
  return n >= 1 && (n & (n - 1)) == 0 && n <= 8 && m <= 2 * n;
}

/// The window SpMV's per-call constants: lane t's group start within the
/// window, (t / n) * m, and the shifts and mask that take slot t's position
/// out of a 32-bit word.
struct nm_window_consts {
  int n_shift;  ///< log2(n)
  __m256i lane_col, shifts, pmask;

  template <class V>
  [[QPRUNE_TARGET_SPMM256]] explicit nm_window_consts(const detail::spmm_nm_rows<V>& a) noexcept
      : n_shift(__builtin_ctz(static_cast<unsigned>(a.n))),
        lane_col(_mm256_mullo_epi32(_mm256_srli_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), n_shift),
                                    _mm256_set1_epi32(a.m))),
        shifts(_mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(a.bits))),
        pmask(_mm256_set1_epi32((1 << a.bits) - 1)) {}
};

/// Slots j0 .. j0 + 7 of rows [r, r + R) into their partial sums acc[q] (one
/// half of the lane order's 16): x[base .. base + 16) is loaded once for the R
/// rows (masked past the matrix's columns) and each lane's x is picked by two
/// in-register permutes and a blend: no gather, no multiply, no store and
/// reload. A slot whose value is 0 (padding, including slots past the row) adds
/// nothing.
template <class V, int R>
[[QPRUNE_TARGET_SPMM256]] inline void nm_window_half(const detail::spmm_nm_rows<V>& a, const float* x,
                                                     index_t r, index_t j0, const nm_window_consts& k,
                                                     __m256 (&acc)[R]) noexcept {
  const index_t len = a.slots_per_row;
  const index_t base = (j0 >> k.n_shift) * a.m;
  const index_t left = a.cols - base;  // >= 1: the group of slot j0 starts inside the matrix
  const __m256 zero = _mm256_setzero_ps();
  const __m256 xlo = _mm256_maskload_ps(x + base, x86::first_lanes8(left));
  const __m256 xhi = left > 8 ? _mm256_maskload_ps(x + base + 8, x86::first_lanes8(left - 8)) : zero;
  const __m256i seven = _mm256_set1_epi32(7);
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q) {
    const index_t s = (r + q) * len + j0;
    // A row's last slots: copied into a zero-filled block (no load past the array).
    const __m256 w = j0 + 8 <= len ? load_values8(a.values + s)
                                   : load_values8(tail_block<V>(a.values + s, len - j0).v);
    const auto word = static_cast<std::uint32_t>(detail::spmm_load_bits64(
        a.positions, a.position_bytes, static_cast<std::uint64_t>(s) * static_cast<std::uint64_t>(a.bits)));
    const __m256i local = _mm256_add_epi32(
        k.lane_col, _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), k.shifts), k.pmask));
    const __m256 xv = _mm256_blendv_ps(_mm256_permutevar8x32_ps(xlo, local), _mm256_permutevar8x32_ps(xhi, local),
                                       _mm256_castsi256_ps(_mm256_cmpgt_epi32(local, seven)));
    const __m256 ok = _mm256_cmp_ps(w, zero, _CMP_NEQ_UQ);
    acc[q] = _mm256_blendv_ps(acc[q], _mm256_fmadd_ps(w, xv, acc[q]), ok);
  }
}

/// Rows [r, r + R) of the window SpMV (nm_window_half), the lower and upper
/// halves of each block of 16 slots into their own partial sums.
template <class V, int R>
[[QPRUNE_TARGET_SPMM256]] inline void spmv_nm_window_rows(const detail::spmm_nm_rows<V>& a,
                                                          const detail::spmm_io& io, index_t r,
                                                          const nm_window_consts& k) noexcept {
  const index_t len = a.slots_per_row;
  __m256 lo[R], hi[R];
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q) lo[q] = hi[q] = _mm256_setzero_ps();
  for (index_t j0 = 0; j0 < len; j0 += 16) {
    nm_window_half<V, R>(a, io.x, r, j0, k, lo);
    if (j0 + 8 < len) nm_window_half<V, R>(a, io.x, r, j0 + 8, k, hi);
  }
#pragma GCC unroll 4
  for (int q = 0; q < R; ++q) io.y[r + q] = finish<V>(tree16(lo[q], hi[q]), io, r + q);
}

/// spmv_nm over rows [r0, r1) for a window pattern (nm_window_pattern): two
/// rows at a time, sharing each window of x.
template <class V>
[[QPRUNE_TARGET_SPMM256]] inline void spmv_nm_window(const detail::spmm_nm_rows<V>& a,
                                                     const detail::spmm_io& io, index_t r0,
                                                     index_t r1) noexcept {
  const nm_window_consts k(a);
  index_t r = r0;
  for (; r + 2 <= r1; r += 2) spmv_nm_window_rows<V, 2>(a, io, r, k);
  for (; r < r1; ++r) spmv_nm_window_rows<V, 1>(a, io, r, k);
}

// Entry points (the sources hold vector constants, so they are built here).

template <class V>
[[QPRUNE_TARGET_SPMM256]] inline void spmv_nm(const detail::spmm_nm_rows<V>& a, const detail::spmm_io& io,
                                    index_t r0, index_t r1) noexcept {
  if (nm_window_pattern(a.n, a.m)) {
    spmv_nm_window<V>(a, io, r0, r1);
    return;
  }
  const nm_source<V> src(a);
  spmv<V>(src, io, r0, r1);
}

template <class V, class I, class P>
[[QPRUNE_TARGET_SPMM256]] inline void spmm_csr(const detail::spmm_csr_rows<V, I, P>& a,
                                     const detail::spmm_io& io, index_t r0, index_t r1, float* wbuf,
                                     std::int32_t* obuf, float* tile) noexcept {
  const csr_source<V, I, P> src{a};
  spmm<V>(src, io, r0, r1, wbuf, obuf, tile);
}

template <class V>
[[QPRUNE_TARGET_SPMM256]] inline void spmm_nm(const detail::spmm_nm_rows<V>& a, const detail::spmm_io& io,
                                    index_t r0, index_t r1, float* wbuf, std::int32_t* obuf,
                                    float* tile) noexcept {
  const nm_source<V> src(a);
  spmm<V>(src, io, r0, r1, wbuf, obuf, tile);
}

#undef QPRUNE_TARGET_SPMM256
}  // namespace qprune::kernels::x86_avx2

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

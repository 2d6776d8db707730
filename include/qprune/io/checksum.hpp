// CRC-32 (ISO-HDLC: zlib's, zip's and PNG's; reflected polynomial 0xEDB88320)
// of byte buffers: a PCLMULQDQ folding kernel on x86 (Gopal et al., "Fast CRC
// Computation for Generic Polynomials Using PCLMULQDQ", Intel 2009), chosen once
// at run time, with zlib's crc32_z as the portable path and for the tails. Both
// give the same value for every input (tests/io/format_test.cpp compares them).
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>
#endif

namespace qprune::io {

namespace detail {

/// zlib's CRC-32 continued over `n` bytes at `p`.
[[nodiscard]] inline std::uint32_t crc32_zlib(std::uint32_t crc, const std::byte* p, std::size_t n) noexcept {
  return static_cast<std::uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(p), n));
}

#if QPRUNE_X86
QPRUNE_X86_INTRINSICS_BEGIN
[[gnu::target("sse4.1,pclmul")]] inline __m128i crc32_load16(const std::byte* q) noexcept {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
}
/// acc * x^(128+32) folded onto `next` (one 128-bit step, constants k3k4).
[[gnu::target("sse4.1,pclmul")]] inline __m128i crc32_fold1(__m128i acc, __m128i next, __m128i k3k4) noexcept {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(acc, k3k4, 0x11), _mm_clmulepi64_si128(acc, k3k4, 0x00)),
                       next);
}
/// Folds 64 bytes at a time with four 128-bit accumulators, then reduces to 32
/// bits (Barrett). `crc` is the running CRC in its inverted (internal) form.
/// Preconditions: n >= 64 and n % 16 == 0.
[[gnu::target("sse4.1,pclmul")]] inline std::uint32_t crc32_fold_pclmul(std::uint32_t crc, const std::byte* p,
                                                                        std::size_t n) noexcept {
  // x^(4*128+32) mod P, x^(4*128-32) mod P (fold by 4); x^(128+32), x^(128-32) (fold by 1);
  // x^64 mod P; P' and mu for the Barrett step (all bit-reflected, as the paper lists them).
  const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
  const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
  const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
  const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
  const __m128i mask32 = _mm_setr_epi32(-1, 0, -1, 0);
  const auto load = crc32_load16;

  __m128i x1 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i x2 = load(p + 16);
  __m128i x3 = load(p + 32);
  __m128i x4 = load(p + 48);
  p += 64;
  n -= 64;
  while (n >= 64) {
    const __m128i h1 = _mm_clmulepi64_si128(x1, k1k2, 0x11), l1 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
    const __m128i h2 = _mm_clmulepi64_si128(x2, k1k2, 0x11), l2 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
    const __m128i h3 = _mm_clmulepi64_si128(x3, k1k2, 0x11), l3 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
    const __m128i h4 = _mm_clmulepi64_si128(x4, k1k2, 0x11), l4 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(h1, l1), load(p));
    x2 = _mm_xor_si128(_mm_xor_si128(h2, l2), load(p + 16));
    x3 = _mm_xor_si128(_mm_xor_si128(h3, l3), load(p + 32));
    x4 = _mm_xor_si128(_mm_xor_si128(h4, l4), load(p + 48));
    p += 64;
    n -= 64;
  }
  x1 = crc32_fold1(x1, x2, k3k4);
  x1 = crc32_fold1(x1, x3, k3k4);
  x1 = crc32_fold1(x1, x4, k3k4);
  while (n >= 16) {
    x1 = crc32_fold1(x1, load(p), k3k4);
    p += 16;
    n -= 16;
  }
  // 128 -> 64 bits.
  __m128i x = _mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x10), _mm_srli_si128(x1, 8));
  x = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x, mask32), k5k0, 0x00), _mm_srli_si128(x, 4));
  // Barrett reduction 64 -> 32 bits.
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x, mask32), poly, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, mask32), poly, 0x00);
  x = _mm_xor_si128(x, t);
  return static_cast<std::uint32_t>(_mm_extract_epi32(x, 1));
}
QPRUNE_X86_INTRINSICS_END

[[nodiscard]] inline bool has_pclmul() noexcept {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  }();
  return yes;
}
#endif

}  // namespace detail

/// CRC-32 of `bytes` continued from `crc` (0 to start), the value zlib's
/// crc32(crc, bytes) returns. Complexity: O(n); about 10x zlib 1.2's speed with
/// PCLMULQDQ (buffers of 64 bytes and more).
[[nodiscard]] inline std::uint32_t crc32(std::span<const std::byte> bytes, std::uint32_t crc = 0) noexcept {
  const std::byte* p = bytes.data();
  std::size_t n = bytes.size();
#if QPRUNE_X86
  if (n >= 64 && detail::has_pclmul()) {
    const std::size_t bulk = n & ~std::size_t{15};
    crc = ~detail::crc32_fold_pclmul(~crc, p, bulk);
    p += bulk;
    n -= bulk;
  }
#endif
  return detail::crc32_zlib(crc, p, n);
}

}  // namespace qprune::io

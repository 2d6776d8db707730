// x86 SIMD bodies of the bulk float <-> half / bfloat16 conversions, one
// namespace per instruction set, each function compiled for its ISA with
// [[gnu::target]] so the library needs no -march flag. Selected at run time by
// kernels/convert.hpp. Bit-identical to kernels/reference/convert.hpp:
//  - half: vcvtps2ph with imm 0 (round to nearest even, no exceptions masked
//    differently) and vcvtph2ps implement exactly the rounding, subnormal,
//    overflow and NaN-quieting rules of core/half.hpp.
//  - bf16: integer round-to-nearest-even on the top 16 bits, NaNs quieted.
#pragma once

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "qprune/core/half.hpp"
#include "qprune/kernels/reference/convert.hpp"

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86_avx2 {

#define QPRUNE_TARGET_AVX2 gnu::target("avx2,fma,f16c")

[[QPRUNE_TARGET_AVX2]] inline void convert_f32_f16(const float* in, half* out,
                                                   std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(in + i);
    const __m256 b = _mm256_loadu_ps(in + i + 8);
    const __m256 c = _mm256_loadu_ps(in + i + 16);
    const __m256 d = _mm256_loadu_ps(in + i + 24);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 8), _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 16), _mm256_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 24), _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
  }
  reference::convert_f32_f16(in + i, out + i, n - i);
}

[[QPRUNE_TARGET_AVX2]] inline void convert_f16_f32(const half* in, float* out,
                                                   std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + 8));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + 16));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + 24));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(a));
    _mm256_storeu_ps(out + i + 8, _mm256_cvtph_ps(b));
    _mm256_storeu_ps(out + i + 16, _mm256_cvtph_ps(c));
    _mm256_storeu_ps(out + i + 24, _mm256_cvtph_ps(d));
  }
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  }
  reference::convert_f16_f32(in + i, out + i, n - i);
}

/// 8 floats -> 8 bf16 bit patterns (in the low 16 bits of each 32-bit lane).
[[QPRUNE_TARGET_AVX2]] inline __m256i bf16_round8(__m256i x) noexcept {
  const __m256i abs = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
  const __m256i quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x00400000));
  return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
}

[[QPRUNE_TARGET_AVX2]] inline void convert_f32_bf16(const float* in, bfloat16* out,
                                                    std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = bf16_round8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
    const __m256i b =
        bf16_round8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 8)));
    // packus works per 128-bit lane: a0 b0 a1 b1 -> reorder the 64-bit quarters.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
  reference::convert_f32_bf16(in + i, out + i, n - i);
}

[[QPRUNE_TARGET_AVX2]] inline void convert_bf16_f32(const bfloat16* in, float* out,
                                                    std::size_t n) noexcept {
  std::size_t i = 0;
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))), 16);
    const __m256i abs = _mm256_and_si256(w, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, exp_mask);
    const __m256i q = _mm256_or_si256(w, _mm256_and_si256(is_nan, _mm256_set1_epi32(0x00400000)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), q);
  }
  reference::convert_bf16_f32(in + i, out + i, n - i);
}

#undef QPRUNE_TARGET_AVX2
}  // namespace qprune::kernels::x86_avx2

namespace qprune::kernels::x86_avx512 {

#define QPRUNE_TARGET_AVX512 gnu::target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")

[[QPRUNE_TARGET_AVX512]] inline void convert_f32_f16(const float* in, half* out,
                                                     std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 a = _mm512_loadu_ps(in + i);
    const __m512 b = _mm512_loadu_ps(in + i + 16);
    const __m512 c = _mm512_loadu_ps(in + i + 32);
    const __m512 d = _mm512_loadu_ps(in + i + 48);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16), _mm512_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 32), _mm512_cvtps_ph(c, _MM_FROUND_TO_NEAREST_INT));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 48), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; i += 16) {
    const std::size_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1u);
    const __m512 a = _mm512_maskz_loadu_ps(m, in + i);
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
  }
}

[[QPRUNE_TARGET_AVX512]] inline void convert_f16_f32(const half* in, float* out,
                                                     std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 16));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 32));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 48));
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(a));
    _mm512_storeu_ps(out + i + 16, _mm512_cvtph_ps(b));
    _mm512_storeu_ps(out + i + 32, _mm512_cvtph_ps(c));
    _mm512_storeu_ps(out + i + 48, _mm512_cvtph_ps(d));
  }
  for (; i < n; i += 16) {
    const std::size_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1u);
    const __m256i a = _mm256_maskz_loadu_epi16(m, in + i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_cvtph_ps(a));
  }
}

/// 16 floats -> 16 bf16 bit patterns, round to nearest even, NaNs quieted.
[[QPRUNE_TARGET_AVX512]] inline __m256i bf16_round16(__m512i x) noexcept {
  const __m512i abs = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
  r = _mm512_mask_or_epi32(r, is_nan, x, _mm512_set1_epi32(0x00400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

[[QPRUNE_TARGET_AVX512]] inline void convert_f32_bf16(const float* in, bfloat16* out,
                                                      std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = bf16_round16(_mm512_loadu_si512(in + i));
    const __m256i b = bf16_round16(_mm512_loadu_si512(in + i + 16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16), b);
  }
  for (; i < n; i += 16) {
    const std::size_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1u);
    _mm256_mask_storeu_epi16(out + i, m, bf16_round16(_mm512_maskz_loadu_epi32(m, in + i)));
  }
}

[[QPRUNE_TARGET_AVX512]] inline void convert_bf16_f32(const bfloat16* in, float* out,
                                                      std::size_t n) noexcept {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i exp_mask = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x00400000);
  for (std::size_t i = 0; i < n; i += 16) {
    const std::size_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff)
                                   : static_cast<__mmask16>((1u << left) - 1u);
    const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, in + i)), 16);
    const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(w, abs_mask), exp_mask);
    _mm512_mask_storeu_epi32(out + i, m, _mm512_mask_or_epi32(w, is_nan, w, quiet));
  }
}

#undef QPRUNE_TARGET_AVX512
}  // namespace qprune::kernels::x86_avx512

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

// Helpers shared by the x86 kernels. The float multiply-add every x86 float
// kernel accumulates with: acc += a * b (one rounding), with the accumulator
// tied to one register. GCC copies accumulators held in intrinsic variables
// around each intrinsic in hot loops (see gemm_s8's dpbusd); the inline-asm
// form keeps them in place. And the AVX2 tail mask of the first lanes.
#pragma once

#include "qprune/core/config.hpp"

#if QPRUNE_X86
#include <immintrin.h>

#include <algorithm>

QPRUNE_X86_INTRINSICS_BEGIN

namespace qprune::kernels::x86 {

/// acc += a * b on 16 floats (AVX-512F).
[[gnu::target("avx512f")]] inline void fma16(__m512& acc, __m512 a, __m512 b) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vfmadd231ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
#else
  acc = _mm512_fmadd_ps(a, b, acc);
#endif
}

/// acc += a * b on 8 floats (AVX2 + FMA).
[[gnu::target("avx2,fma")]] inline void fma8(__m256& acc, __m256 a, __m256 b) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vfmadd231ps %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b));
#else
  acc = _mm256_fmadd_ps(a, b, acc);
#endif
}

/// The first `count` of 8 int32 lanes all ones, the others 0 (count clamped to
/// [0, 8]): the tail mask of maskload / maskstore and of lane blends.
[[gnu::target("avx2")]] inline __m256i first_lanes8(index_t count) noexcept {
  const auto c = static_cast<int>(std::clamp<index_t>(count, 0, 8));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace qprune::kernels::x86

QPRUNE_X86_INTRINSICS_END

#endif  // QPRUNE_X86

// Scalar reference twins of the bulk float <-> half / bfloat16 conversions.
// One element at a time through core/half.hpp; the oracle the SIMD paths in
// kernels/x86/convert.hpp are tested against.
#pragma once

#include <cstddef>

#include "qprune/core/half.hpp"

namespace qprune::kernels::reference {

/// out[i] = half(in[i]) for i < n. Round to nearest even.
inline void convert_f32_f16(const float* in, half* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = half(in[i]);
}
/// out[i] = float(in[i]) for i < n. Exact.
inline void convert_f16_f32(const half* in, float* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
}
/// out[i] = bfloat16(in[i]) for i < n. Round to nearest even.
inline void convert_f32_bf16(const float* in, bfloat16* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = bfloat16(in[i]);
}
/// out[i] = float(in[i]) for i < n. Exact.
inline void convert_bf16_f32(const bfloat16* in, float* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

}  // namespace qprune::kernels::reference

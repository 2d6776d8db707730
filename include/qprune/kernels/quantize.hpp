// Bulk linear quantization of float arrays to 8-bit codes and the array range
// it is usually chosen from, dispatched to AVX-512, AVX2 or the scalar twin
// (kernels/reference/quantize.hpp); every path gives the same codes. The
// dynamic int8 layers (quant/dynamic.hpp) quantize their inputs with these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "qprune/core/error.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/reference/quantize.hpp"
#include "qprune/kernels/x86/quantize.hpp"

namespace qprune::kernels {

/// The smallest and largest element of x and whether all are finite, on
/// instruction set `path` (default: the active one). Empty: {0, 0, true}.
/// Throws config_error for a path the CPU lacks. O(n), no allocation.
[[nodiscard]] inline value_range range_of(std::span<const float> x, isa path = active_isa()) {
  require_supported(path);
#if QPRUNE_X86
  if (path == isa::avx512 || path == isa::avx512_vnni) return x86_avx512::range_of(x.data(), x.size());
  if (path == isa::avx2) return x86_avx2::range_of(x.data(), x.size());
#endif
  return reference::range_of(x.data(), x.size());
}

/// out[i] = the code of x[i] under q (kernels/reference/quantize.hpp states the
/// three operations), T = uint8 or int8. Throws shape_error when the sizes
/// differ, config_error when [qmin, qmax] leaves T or the zero point leaves
/// [qmin, qmax], or for a path the CPU lacks. O(n), no allocation.
template <class T>
  requires(std::same_as<T, std::uint8_t> || std::same_as<T, std::int8_t>)
void quantize_linear(std::span<const float> x, const linear_quantizer& q, std::span<T> out,
                     isa path = active_isa()) {
  if (x.size() != out.size()) {
    throw shape_error("quantizing " + std::to_string(x.size()) + " values into " +
                      std::to_string(out.size()) + " codes (expected the same number)");
  }
  constexpr std::int32_t tmin = std::numeric_limits<T>::min(), tmax = std::numeric_limits<T>::max();
  if (q.qmin < tmin || q.qmax > tmax || q.qmin > q.qmax || q.zero_point < q.qmin ||
      q.zero_point > q.qmax) {
    throw config_error("code range [" + std::to_string(q.qmin) + ", " + std::to_string(q.qmax) +
                       "] with zero point " + std::to_string(q.zero_point) +
                       " (expected a range inside [" + std::to_string(tmin) + ", " +
                       std::to_string(tmax) + "] holding the zero point)");
  }
  require_supported(path);
#if QPRUNE_X86
  if (path == isa::avx512 || path == isa::avx512_vnni) {
    return x86_avx512::quantize_linear(x.data(), x.size(), q, out.data());
  }
  if (path == isa::avx2) return x86_avx2::quantize_linear(x.data(), x.size(), q, out.data());
#endif
  reference::quantize_linear(x.data(), x.size(), q, out.data());
}

}  // namespace qprune::kernels

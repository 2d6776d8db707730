// Bulk float <-> half / bfloat16 conversion of arrays, dispatched once per call
// to the best instruction set (AVX-512, AVX2+F16C, or the scalar twin in
// kernels/reference/convert.hpp). Every path gives the same bits as the scalar
// functions of core/half.hpp; the rounding rules are stated there.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/reference/convert.hpp"
#include "qprune/kernels/x86/convert.hpp"

namespace qprune::kernels {

namespace detail {
inline void check_same_size(std::size_t in, std::size_t out) {
  if (in != out) {
    throw shape_error("conversion from " + std::to_string(in) + " elements into a buffer of " +
                      std::to_string(out) + " (expected the same number)");
  }
}

template <class In, class Out>
using convert_fn = void (*)(const In*, Out*, std::size_t) noexcept;

// The dispatch happens here, once per array.
template <class In, class Out>
void run_convert(isa path, std::span<const In> in, std::span<Out> out, convert_fn<In, Out> scalar,
                 [[maybe_unused]] convert_fn<In, Out> avx2,
                 [[maybe_unused]] convert_fn<In, Out> avx512) {
  check_same_size(in.size(), out.size());
  require_supported(path);
  convert_fn<In, Out> f = scalar;
#if QPRUNE_X86
  if (path == isa::avx2) f = avx2;
  if (path == isa::avx512 || path == isa::avx512_vnni) f = avx512;
#endif
  f(in.data(), out.data(), in.size());
}

#if QPRUNE_X86
#define QPRUNE_CONVERT_PATHS(fn) &reference::fn, &x86_avx2::fn, &x86_avx512::fn
#else
#define QPRUNE_CONVERT_PATHS(fn) &reference::fn, &reference::fn, &reference::fn
#endif
}  // namespace detail

/// out[i] = half(in[i]): round to nearest even, subnormals kept, overflow to
/// +-inf, NaN kept quiet. Throws shape_error if the sizes differ.
/// `path` selects the instruction set (default: active_isa()); a path the CPU
/// lacks throws config_error. Complexity: O(n), no allocation.
inline void convert(std::span<const float> in, std::span<half> out, isa path = active_isa()) {
  detail::run_convert(path, in, out, QPRUNE_CONVERT_PATHS(convert_f32_f16));
}

/// out[i] = float(in[i]), exact (NaN made quiet). Same contract as above.
inline void convert(std::span<const half> in, std::span<float> out, isa path = active_isa()) {
  detail::run_convert(path, in, out, QPRUNE_CONVERT_PATHS(convert_f16_f32));
}

/// out[i] = bfloat16(in[i]): round to nearest even, NaN kept quiet.
inline void convert(std::span<const float> in, std::span<bfloat16> out,
                    isa path = active_isa()) {
  detail::run_convert(path, in, out, QPRUNE_CONVERT_PATHS(convert_f32_bf16));
}

/// out[i] = float(in[i]), exact (NaN made quiet).
inline void convert(std::span<const bfloat16> in, std::span<float> out,
                    isa path = active_isa()) {
  detail::run_convert(path, in, out, QPRUNE_CONVERT_PATHS(convert_bf16_f32));
}

#undef QPRUNE_CONVERT_PATHS

}  // namespace qprune::kernels

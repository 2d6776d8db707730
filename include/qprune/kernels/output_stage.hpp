// Output stages of the int8 GEMM: what happens to each int32 accumulator
// after the zero-point correction, in the kernel, before it is stored. The
// scalar reference (kernels/reference/gemm_s8.hpp) and every SIMD path apply
// them with the same arithmetic, so their outputs are bit-identical.
//
//   store_int32:  c[m][n] = acc
//   store_float:  y[m][n] = act(fma(float(acc), scale[n], bias[n]))   (one rounding: fma)
//                 with act = identity or max(0, .)
#pragma once

#include <cstdint>

namespace qprune::kernels {

/// Stores the corrected int32 accumulators: c = sum_k (a - a_zero_point) * b.
struct store_int32 {};

/// Converts to float: y = fma(float(acc), scale[n], bias[n]), then ReLU when `relu`.
/// `scale[n]` is normally s_a * s_w[n]; `bias` may be null (treated as 0).
/// Lifetime: the arrays must outlive the GEMM call; each holds N entries.
struct store_float {
  const float* scale = nullptr;
  const float* bias = nullptr;
  bool relu = false;
};

}  // namespace qprune::kernels

// Output stages of the int8 GEMM: what happens to each int32 accumulator
// after the zero-point correction, in the kernel, before it is stored. The
// scalar reference (kernels/reference/gemm_s8.hpp) and every SIMD path apply
// them with the same arithmetic, so their outputs are bit-identical.
//
//   store_int32:  c[m][n] = acc
//   store_float:  y[m][n] = act(fma(float(acc), scale[n], bias[n]))   (one rounding: fma)
//                 or, with fused = false, act(float(acc) * scale[n] + bias[n]) rounded
//                 after the product and after the sum (what frameworks that multiply
//                 and add in separate steps compute); act = identity or max(0, .)
//   store_requant<T>: q[m][n] = clamp(MBQM(acc + bias[n], M0[n], shift[n]) + zp, lo, hi)
//                 as T (int8 or uint8): TFLite's integer output stage, with MBQM the
//                 double-rounding multiply_by_quantized_multiplier of quant/requantize.hpp
#pragma once

#include <cstdint>

namespace qprune::kernels {

/// Stores the corrected int32 accumulators: c = sum_k (a - a_zero_point) * b.
struct store_int32 {};

/// Converts to float: y = fma(float(acc), scale[n], bias[n]) (or, when `fused` is
/// false, the product rounded to float before bias[n] is added), then ReLU when
/// `relu`. `scale[n]` is normally s_a * s_w[n]; `bias` may be null (treated as 0).
/// Lifetime: the arrays must outlive the GEMM call; each holds N entries.
struct store_float {
  const float* scale = nullptr;
  const float* bias = nullptr;
  bool relu = false;
  bool fused = true;
};

/// Requantizes to int8 / uint8 (T): out = clamp(MBQM(acc + bias[n], multiplier[n],
/// shift[n]) + out_zero_point, act_min, act_max), the fused activation being the
/// clamp. Per-channel arrays of N entries (a per-tensor multiplier is repeated);
/// bias may be null. Preconditions: multiplier[n] >= 0, -31 <= shift[n] <= 30,
/// [act_min, act_max] inside T's range. Build it with kernels::requant_stage.
template <class T>
struct store_requant {
  const std::int32_t* multiplier = nullptr;
  const std::int32_t* shift = nullptr;
  const std::int32_t* bias = nullptr;
  std::int32_t out_zero_point = 0;
  std::int32_t act_min = 0;
  std::int32_t act_max = 0;
};

}  // namespace qprune::kernels

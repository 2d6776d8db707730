// Scalar twins of kernels/quantize.hpp: the range of an array and its linear
// quantization to 8-bit codes. The SIMD paths in kernels/x86/quantize.hpp give
// the same results, element for element.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "qprune/core/config.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::kernels {

/// How a code is computed from x with factor f and zero point zp (all float32,
/// rne = round half to even):
///   divide        q = clamp(rne(x / f) + zp)      f = scale  (qprune, ONNX Runtime)
///   multiply      q = clamp(rne(x * f) + zp)      f = 1/scale (PyTorch quantize_per_tensor)
///   multiply_add  q = clamp(rne(fma(x, f, zp)))   f = 1/scale (fbgemm's QuantizeAvx2)
enum class quantize_op : std::uint8_t { divide, multiply, multiply_add };

/// One linear quantizer: its factor, zero point, code range and operation.
/// Preconditions of the kernels: qmin <= zero_point <= qmax and [qmin, qmax]
/// inside the code type's range.
struct linear_quantizer {
  float factor = 1.0f;
  std::int32_t zero_point = 0;
  std::int32_t qmin = 0;
  std::int32_t qmax = 255;
  quantize_op op = quantize_op::divide;
};

/// The smallest and largest element of an array, and whether every element is
/// finite (when not, min and max are unspecified). Empty: {0, 0, true}.
struct value_range {
  float min = 0.0f;
  float max = 0.0f;
  bool finite = true;
};

namespace reference {

/// The range of x[0, n).
inline value_range range_of(const float* x, std::size_t n) noexcept {
  value_range r;
  if (n == 0) return r;
  r.min = r.max = x[0];
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      r.finite = false;
      return r;
    }
    r.min = std::min(r.min, x[i]);
    r.max = std::max(r.max, x[i]);
  }
  return r;
}

/// out[i] = the code of x[i] under q (see quantize_op). NaN gives the zero point.
template <class T>
inline void quantize_linear(const float* x, std::size_t n, const linear_quantizer& q, T* out) noexcept {
  const auto zf = static_cast<float>(q.zero_point);
  for (std::size_t i = 0; i < n; ++i) {
    std::int32_t c = 0;
    switch (q.op) {
      case quantize_op::divide:
        c = quant::saturate_to_int(std::nearbyint(x[i] / q.factor), q.qmin - q.zero_point,
                                   q.qmax - q.zero_point, 0) + q.zero_point;
        break;
      case quantize_op::multiply:
        c = quant::saturate_to_int(std::nearbyint(quant::detail::unfused(x[i] * q.factor)),
                                   q.qmin - q.zero_point, q.qmax - q.zero_point, 0) + q.zero_point;
        break;
      case quantize_op::multiply_add:
        c = quant::saturate_to_int(std::nearbyint(std::fma(x[i], q.factor, zf)), q.qmin, q.qmax,
                                   q.zero_point);
        break;
    }
    out[i] = static_cast<T>(c);
  }
}

}  // namespace reference
}  // namespace qprune::kernels

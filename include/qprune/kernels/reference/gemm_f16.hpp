// Scalar reference twin of the fp16 / bf16-weight GEMM (kernels/gemm_f16.hpp):
//
//   acc = 0; for k in 0..K-1: acc = fma(x[m][k], float(w[n][k]), acc)   (in k order)
//   y[m][n] = act(acc + bias[n])
//
// Every SIMD path accumulates each output in the same k order with fused
// multiply-adds, so all paths give the same bits.
#pragma once

#include <cmath>

#include "qprune/core/config.hpp"
#include "qprune/core/half.hpp"

namespace qprune::kernels::reference {

/// y[i*ldy + j] for i < m, j < n; x: [m, k] row stride ldx; w: [n, k] (half or
/// bfloat16) row-major with row stride ldw; bias may be null.
template <class H>
inline void gemm_f16(index_t m, index_t n, index_t k, const float* x, index_t ldx, const H* w,
                     index_t ldw, const float* bias, bool relu, float* y, index_t ldy) noexcept {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (index_t p = 0; p < k; ++p) acc = std::fma(x[i * ldx + p], static_cast<float>(w[j * ldw + p]), acc);
      float v = acc + (bias != nullptr ? bias[j] : 0.0f);
      if (relu && !(v > 0.0f)) v = 0.0f;
      y[i * ldy + j] = v;
    }
  }
}

}  // namespace qprune::kernels::reference

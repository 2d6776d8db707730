// Scalar reference twin of the int8 GEMM (kernels/gemm_s8.hpp): the oracle
// every SIMD path is tested against, bit for bit.
//
//   acc[m][n] = sum_k (a[m][k] - a_zero_point) * b[n][k]      exact (int64, then int32)
//
// a is uint8 (affine activations) or int8, b is int8 weights stored [N, K]
// (one row per output channel). Preconditions: the exact sum fits in int32
// (kernels/gemm_s8.hpp states the K bound and checks it at the API boundary).
#pragma once

#include <cmath>
#include <cstdint>

#include "qprune/core/config.hpp"
#include "qprune/kernels/output_stage.hpp"
#include "qprune/quant/requantize.hpp"

namespace qprune::kernels::reference {

/// One accumulator, exactly. Ta is std::uint8_t or std::int8_t.
template <class Ta>
inline std::int32_t dot_s8(const Ta* a, std::int32_t a_zero_point, const std::int8_t* b,
                           index_t k) noexcept {
  std::int64_t acc = 0;
  for (index_t i = 0; i < k; ++i) {
    acc += (static_cast<std::int64_t>(a[i]) - a_zero_point) * static_cast<std::int64_t>(b[i]);
  }
  return static_cast<std::int32_t>(acc);
}

/// c[m*ldc + n] = acc(m, n) for m < M, n < N. a: [M, K] with row stride lda;
/// b: [N, K] row-major (row stride ldb).
template <class Ta>
inline void gemm_s8(index_t m, index_t n, index_t k, const Ta* a, index_t lda,
                    std::int32_t a_zero_point, const std::int8_t* b, index_t ldb, std::int32_t* c,
                    index_t ldc, store_int32) noexcept {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) c[i * ldc + j] = dot_s8(a + i * lda, a_zero_point, b + j * ldb, k);
}

/// y[m*ldy + n] = act(fma(float(acc(m, n)), scale[n], bias[n])), or unfused (store_float::fused).
template <class Ta>
inline void gemm_s8(index_t m, index_t n, index_t k, const Ta* a, index_t lda,
                    std::int32_t a_zero_point, const std::int8_t* b, index_t ldb, float* y,
                    index_t ldy, const store_float& st) noexcept {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      const std::int32_t acc = dot_s8(a + i * lda, a_zero_point, b + j * ldb, k);
      const float bias = st.bias != nullptr ? st.bias[j] : 0.0f;
      float v = st.fused ? std::fma(static_cast<float>(acc), st.scale[j], bias)
                         : quant::detail::unfused(static_cast<float>(acc) * st.scale[j]) + bias;
      if (st.relu && !(v > 0.0f)) v = 0.0f;
      y[i * ldy + j] = v;
    }
  }
}

/// q[m*ldq + n] = requantize(acc(m, n)) as quant::requantize_value computes it
/// (double rounding).
template <class Ta, class T>
inline void gemm_s8(index_t m, index_t n, index_t k, const Ta* a, index_t lda,
                    std::int32_t a_zero_point, const std::int8_t* b, index_t ldb, T* q,
                    index_t ldq, const store_requant<T>& st) noexcept {
  const quant::qrange act{st.act_min, st.act_max};
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      const std::int32_t acc = dot_s8(a + i * lda, a_zero_point, b + j * ldb, k);
      q[i * ldq + j] = static_cast<T>(quant::requantize_value(
          acc, st.bias != nullptr ? st.bias[j] : 0, {st.multiplier[j], static_cast<int>(st.shift[j])},
          st.out_zero_point, act, quant::multiplier_rounding::double_rounding));
    }
  }
}

}  // namespace qprune::kernels::reference

// Scalar reference twins of the int4 grouped-weight GEMM (kernels/gemm_q4.hpp).
// They read the weights in quant::packed_int4_matrix's own row layout, so they
// are independent of the panel packing the SIMD paths use:
//
//   float path    w'(n,k) = s[n][g] * float(q(n,k) - z[n][g])   (quant::dequantize's value)
//                 acc = 0; for k in 0..K-1: acc = fma(x[m][k], w'(n,k), acc)
//                 y[m][n] = act(acc + bias[n])
//   integer path  x quantized per row and group to int8 (quantize_q8_rows), then
//                 S_g = sum_{k in g} qx[m][k] * (q(n,k) - z[n][g])       (int32, exact)
//                 acc = 0; for g in 0..G-1: acc = fma(float(S_g), d[m][g] * s[n][g], acc)
//                 y[m][n] = act(acc + bias[n])
#pragma once

#include <cmath>
#include <cstdint>

#include "qprune/core/config.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::kernels::reference {

/// Read-only view of 4-bit weights [n, k] in packed_int4_matrix's layout: row r
/// in codes + r * row_bytes (element c in the low nibble of byte c / 2 when c is
/// even, the high nibble when odd), parameters [n, groups] row-major.
struct q4_rows {
  const std::uint8_t* codes;
  index_t row_bytes;
  const float* scales;
  const std::int32_t* zero_points;
  index_t group_size;
  index_t groups;
  bool signed_codes;  ///< int4 codes (symmetric schemes), else uint4 (affine)

  /// The code q(r, c): sign-extended for int4, raw for uint4.
  [[nodiscard]] std::int32_t code(index_t r, index_t c) const noexcept {
    const std::uint8_t b = codes[r * row_bytes + c / 2];
    const auto nib = static_cast<std::uint8_t>((c % 2 == 0 ? b : (b >> 4)) & 0x0Fu);
    return signed_codes ? std::int32_t{quant::int4_from_nibble(nib)} : std::int32_t{nib};
  }
};

/// A q4_rows view of a packed_int4_matrix. Precondition: `m` is consistent
/// (kernels::pack_q4 checks it).
[[nodiscard]] inline q4_rows q4_rows_of(const quant::packed_int4_matrix& m) noexcept {
  return {m.codes.data(),
          m.row_bytes(),
          m.params.scales.data(),
          m.params.zero_points.data(),
          m.params.group_size,
          m.cols / m.params.group_size + (m.cols % m.params.group_size != 0 ? 1 : 0),
          m.kind != quant::int4_scheme::affine};
}

/// Float path twin. y[i*ldy + j] for i < m, j < n; x [m, k] with row stride ldx;
/// bias may be null. ReLU maps NaN to 0 (!(v > 0) -> 0), as every path does.
///
/// Numerics: w' = s * float(q - z) (one float product, quant::dequantize_value),
/// then one fused multiply-add per k in k order: the result is bit-identical to a
/// fma-in-k-order float GEMM on quant::dequantize(W).
inline void gemm_q4(index_t m, index_t n, index_t k, const float* x, index_t ldx, const q4_rows& w,
                    const float* bias, bool relu, float* y, index_t ldy) noexcept {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (index_t p = 0; p < k; ++p) {
        const index_t g = j * w.groups + p / w.group_size;
        const float wv = w.scales[g] * static_cast<float>(w.code(j, p) - w.zero_points[g]);
        acc = std::fma(x[i * ldx + p], wv, acc);
      }
      float v = acc + (bias != nullptr ? bias[j] : 0.0f);
      if (relu && !(v > 0.0f)) v = 0.0f;
      y[i * ldy + j] = v;
    }
  }
}

/// Quantizes one group of `len` values (len <= group_size) to int8, as ggml's
/// Q8_0 does but with round half to even:
///   amax = max |x|,  d = amax / 127 (float division)
///   q = d == 0 ? 0 : clamp(nearbyint(x / d), -127, 127)    (float division)
/// Writes group_size codes (zero after len), d, and the code sum
/// sx = sum q (|sx| <= 127 * group_size <= 32512: it fits int16). Returns false
/// (outputs then unspecified) if a value is NaN or infinite.
inline bool quantize_q8_group(const float* x, index_t len, index_t group_size, std::int8_t* q,
                              float* d, std::int32_t* sx) noexcept {
  float amax = 0.0f;
  for (index_t c = 0; c < len; ++c) {
    if (!std::isfinite(x[c])) return false;
    amax = std::fabs(x[c]) > amax ? std::fabs(x[c]) : amax;
  }
  const float dg = amax / 127.0f;
  std::int32_t sum = 0;
  for (index_t c = 0; c < group_size; ++c) {
    std::int32_t v = 0;
    if (c < len && dg != 0.0f) v = quant::saturate_to_int(std::nearbyint(x[c] / dg), -127, 127, 0);
    q[c] = static_cast<std::int8_t>(v);
    sum += v;
  }
  *d = dg;
  *sx = sum;
  return true;
}

/// Quantizes rows of x [m, k] (row stride ldx) group by group with
/// quantize_q8_group (the last group may be partial): codes to xq[i * ldq + c]
/// for c < groups * group_size (zero padded), d and sx to [m, groups] arrays.
/// Returns false if an element is NaN or infinite.
inline bool quantize_q8_rows(index_t m, index_t k, const float* x, index_t ldx, index_t group_size,
                             std::int8_t* xq, index_t ldq, float* d, std::int32_t* sx) noexcept {
  const index_t groups = k / group_size + (k % group_size != 0 ? 1 : 0);
  for (index_t i = 0; i < m; ++i) {
    for (index_t g = 0; g < groups; ++g) {
      const index_t b = g * group_size;
      const index_t len = b + group_size < k ? group_size : k - b;
      if (!quantize_q8_group(x + i * ldx + b, len, group_size, xq + i * ldq + b, d + i * groups + g,
                             sx + i * groups + g)) {
        return false;
      }
    }
  }
  return true;
}

/// Integer path twin on activations quantized by quantize_q8_rows (xq with row
/// stride ldq, d [m, groups]). y[i*ldy + j]; bias may be null.
///
/// Numerics: per group the int32 sum S_g = sum qx * (q - z) is exact
/// (|S_g| <= 127 * 15 * 256 < 2^19, so float(S_g) is exact too); then
/// acc = fma(float(S_g), d * s, acc) over the groups in order, d * s one float
/// product; y = act(acc + bias).
inline void gemm_q4_q8(index_t m, index_t n, index_t k, const std::int8_t* xq, index_t ldq,
                       const float* d, const q4_rows& w, const float* bias, bool relu, float* y,
                       index_t ldy) noexcept {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (index_t g = 0; g < w.groups; ++g) {
        const index_t b = g * w.group_size;
        const index_t e = b + w.group_size < k ? b + w.group_size : k;
        const std::int32_t z = w.zero_points[j * w.groups + g];
        std::int32_t s = 0;
        for (index_t c = b; c < e; ++c) s += std::int32_t{xq[i * ldq + c]} * (w.code(j, c) - z);
        const float c_scale = d[i * w.groups + g] * w.scales[j * w.groups + g];
        acc = std::fma(static_cast<float>(s), c_scale, acc);
      }
      float v = acc + (bias != nullptr ? bias[j] : 0.0f);
      if (relu && !(v > 0.0f)) v = 0.0f;
      y[i * ldy + j] = v;
    }
  }
}

}  // namespace qprune::kernels::reference

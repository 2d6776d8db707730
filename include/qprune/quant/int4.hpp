// 4-bit integers packed two per byte (int4 [-8, 7], uint4 [0, 15]) and the
// per-group quantization of a [rows, cols] weight straight to packed codes.
// Nibble order is ONNX's and ONNX Runtime MatMulNBits': element 2i in the low
// nibble, element 2i + 1 in the high nibble; an odd count leaves the last high
// nibble zero. Formulas: doc/quantization.md, "Quantize and dequantize".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/qparams.hpp"
#include "qprune/quant/quantize.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

/// Bytes that hold `n` packed 4-bit values: ceil(n / 2). Precondition: n >= 0.
[[nodiscard]] constexpr index_t packed_4bit_bytes(index_t n) noexcept { return n / 2 + n % 2; }

/// The signed value of the 4-bit two's-complement nibble `b & 0xF` (sign-extended).
[[nodiscard]] constexpr std::int8_t int4_from_nibble(std::uint8_t b) noexcept {
  return static_cast<std::int8_t>(static_cast<int>(b & 0x0Fu) - ((b & 0x08u) != 0 ? 16 : 0));
}

/// Element `i` of packed 4-bit data, as its raw nibble (uint4 value).
/// Precondition: 0 <= i < 2 * packed.size().
[[nodiscard]] constexpr std::uint8_t nibble_at(std::span<const std::uint8_t> packed,
                                               index_t i) noexcept {
  const std::uint8_t b = packed[static_cast<std::size_t>(i / 2)];
  return static_cast<std::uint8_t>((i % 2 == 0 ? b : (b >> 4)) & 0x0Fu);
}

namespace detail {
inline void check_packed_size(std::size_t count, std::size_t bytes) {
  const auto need = static_cast<std::size_t>(packed_4bit_bytes(static_cast<index_t>(count)));
  if (bytes != need) {
    throw shape_error(std::to_string(count) + " packed 4-bit values need " + std::to_string(need) +
                      " bytes, got " + std::to_string(bytes));
  }
}

/// Packs nibbles (already in [0, 15]) into bytes. Precondition: sizes checked.
template <class Nibble>
void pack_nibbles(std::size_t n, Nibble&& nibble, std::uint8_t* out) noexcept {
  for (std::size_t i = 0; i + 1 < n; i += 2) {
    out[i / 2] = static_cast<std::uint8_t>(nibble(i) | (nibble(i + 1) << 4));
  }
  if (n % 2 != 0) out[n / 2] = static_cast<std::uint8_t>(nibble(n - 1));
}
}  // namespace detail

/// Packs signed 4-bit values: byte i = (v[2i] & 0xF) | (v[2i+1] & 0xF) << 4
/// (two's-complement nibbles, low nibble first); an odd count leaves the last
/// high nibble 0. Throws shape_error unless packed.size() == ceil(n / 2), and
/// config_error if a value is outside [-8, 7] (nothing is written then).
inline void pack_int4(std::span<const std::int8_t> values, std::span<std::uint8_t> packed) {
  detail::check_packed_size(values.size(), packed.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] < -8 || values[i] > 7) {
      throw config_error("value " + std::to_string(values[i]) + " at index " + std::to_string(i) +
                         " is outside the int4 range [-8, 7]");
    }
  }
  detail::pack_nibbles(
      values.size(),
      [&](std::size_t i) { return static_cast<unsigned>(static_cast<std::uint8_t>(values[i])) & 0x0Fu; },
      packed.data());
}

/// Same, returning a new buffer of ceil(n / 2) bytes.
[[nodiscard]] inline std::vector<std::uint8_t> pack_int4(std::span<const std::int8_t> values) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(packed_4bit_bytes(static_cast<index_t>(values.size()))));
  pack_int4(values, out);
  return out;
}

/// Packs unsigned 4-bit values, low nibble first. Throws shape_error unless
/// packed.size() == ceil(n / 2), config_error if a value exceeds 15.
inline void pack_uint4(std::span<const std::uint8_t> values, std::span<std::uint8_t> packed) {
  detail::check_packed_size(values.size(), packed.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] > 15) {
      throw config_error("value " + std::to_string(values[i]) + " at index " + std::to_string(i) +
                         " is outside the uint4 range [0, 15]");
    }
  }
  detail::pack_nibbles(
      values.size(), [&](std::size_t i) { return static_cast<unsigned>(values[i]); },
      packed.data());
}

/// Same, returning a new buffer of ceil(n / 2) bytes.
[[nodiscard]] inline std::vector<std::uint8_t> pack_uint4(std::span<const std::uint8_t> values) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(packed_4bit_bytes(static_cast<index_t>(values.size()))));
  pack_uint4(values, out);
  return out;
}

/// Unpacks values.size() signed 4-bit values (sign-extended). The padding
/// nibble of an odd count is ignored. Throws shape_error unless
/// packed.size() == ceil(values.size() / 2).
inline void unpack_int4(std::span<const std::uint8_t> packed, std::span<std::int8_t> values) {
  detail::check_packed_size(values.size(), packed.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = int4_from_nibble(nibble_at(packed, static_cast<index_t>(i)));
  }
}

/// Same, returning `count` values. Throws shape_error as above (or for count < 0).
[[nodiscard]] inline std::vector<std::int8_t> unpack_int4(std::span<const std::uint8_t> packed,
                                                          index_t count) {
  if (count < 0) throw shape_error("value count " + std::to_string(count) + " is negative");
  std::vector<std::int8_t> out(static_cast<std::size_t>(count));
  unpack_int4(packed, out);
  return out;
}

/// Unpacks values.size() unsigned 4-bit values. Throws shape_error unless
/// packed.size() == ceil(values.size() / 2).
inline void unpack_uint4(std::span<const std::uint8_t> packed, std::span<std::uint8_t> values) {
  detail::check_packed_size(values.size(), packed.size());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = nibble_at(packed, static_cast<index_t>(i));
}

/// Same, returning `count` values.
[[nodiscard]] inline std::vector<std::uint8_t> unpack_uint4(std::span<const std::uint8_t> packed,
                                                            index_t count) {
  if (count < 0) throw shape_error("value count " + std::to_string(count) + " is negative");
  std::vector<std::uint8_t> out(static_cast<std::size_t>(count));
  unpack_uint4(packed, out);
  return out;
}

// ---------------------------------------------------------------------------
// Per-group 4-bit weights
// ---------------------------------------------------------------------------

/// How a 4-bit weight is quantized. Always named explicitly: there is no default.
enum class int4_scheme : std::uint8_t {
  symmetric,         ///< int4 codes in [-8, 7], zero point 0
  symmetric_narrow,  ///< int4 codes in [-7, 7], zero point 0 (negation never overflows)
  affine,            ///< uint4 codes in [0, 15], one zero point per group
};

/// The storage type of a scheme: int4 for the symmetric ones, uint4 for affine.
[[nodiscard]] constexpr dtype storage_dtype(int4_scheme s) noexcept {
  return s == int4_scheme::affine ? dtype::uint4 : dtype::int4;
}

/// The clamp range of a scheme: [-8, 7], [-7, 7] or [0, 15].
[[nodiscard]] constexpr qrange code_range(int4_scheme s) noexcept {
  switch (s) {
    case int4_scheme::symmetric: return full_range(dtype::int4);
    case int4_scheme::symmetric_narrow: return narrow_range(dtype::int4);
    case int4_scheme::affine: return full_range(dtype::uint4);
  }
  return full_range(dtype::int4);
}

/// symmetric (zero points fixed, not stored) or affine (zero points stored).
[[nodiscard]] constexpr scheme param_scheme(int4_scheme s) noexcept {
  return s == int4_scheme::affine ? scheme::affine : scheme::symmetric;
}

/// A [rows, cols] float weight quantized to 4 bits per value in groups along
/// the columns (the reduction axis of an [out, in] weight).
///
/// Layout: each row is packed on its own into ceil(cols / 2) bytes (element c of
/// row r is the low nibble of byte c / 2 when c is even, the high nibble when odd;
/// an odd `cols` pads each row's last high nibble with 0). When cols is even this is
/// exactly ONNX's flat int4 / uint4 packing; when cols is a multiple of the group
/// size it is also MatMulNBits' B layout [N, k_blocks, group_size / 2] for uint4
/// (MatMulNBits stores symmetric weights as uint4 with zero point 8: add 8 to the
/// int4 codes, i.e. flip bit 3 of each nibble).
/// Parameters: `params.axis` = 1, scales and zero points shaped [rows, G],
/// G = ceil(cols / group_size), entry r * G + g; zero points are 0 for the
/// symmetric schemes.
struct packed_int4_matrix {
  int4_scheme kind = int4_scheme::symmetric;
  index_t rows = 0;
  index_t cols = 0;
  tensor<std::uint8_t, 2> codes;  ///< [rows, ceil(cols / 2)]
  per_group_params params;

  /// Bytes per packed row, ceil(cols / 2).
  [[nodiscard]] index_t row_bytes() const noexcept { return packed_4bit_bytes(cols); }

  /// The code of element (r, c): sign-extended for int4, raw for uint4.
  /// Precondition: 0 <= r < rows, 0 <= c < cols.
  [[nodiscard]] std::int32_t code(index_t r, index_t c) const noexcept {
    const std::span<const std::uint8_t> row(codes.data() + r * row_bytes(),
                                            static_cast<std::size_t>(row_bytes()));
    const std::uint8_t n = nibble_at(row, c);
    return kind == int4_scheme::affine ? std::int32_t{n} : std::int32_t{int4_from_nibble(n)};
  }
};

/// Bytes of a packed matrix in storage: the packed codes, rows * ceil(cols / 2),
/// plus 4 bytes per scale (float32), plus 4 bytes per zero point for the affine
/// scheme (the symmetric schemes' zero points are implied, not stored).
[[nodiscard]] inline std::int64_t storage_bytes(const packed_int4_matrix& m) noexcept {
  const auto groups = static_cast<std::int64_t>(m.params.scales.size());
  return static_cast<std::int64_t>(m.codes.size()) + 4 * groups +
         (m.kind == int4_scheme::affine ? 4 * groups : 0);
}

/// Chooses per-group parameters along axis 1 for a [rows, cols] weight with the
/// parameter rules of qparams.hpp, group by group:
///   symmetric, symmetric_narrow: scale = max|w| / 7 (choose_symmetric_params on
///     the scheme's range, so +-max|w| map to +-7; an all-zero group gets scale 1),
///     zero point 0;
///   affine: choose_affine_params(min w, max w, [0, 15]) (range widened to contain
///     0, zero point rounded half to even).
/// The last group of a row may be partial. Throws config_error for a group size
/// that is not a power of two in [16, 256] or a weight that is NaN or infinite.
[[nodiscard]] inline per_group_params choose_int4_group_params(tensor_view<const float, 2> w,
                                                               index_t group_size,
                                                               int4_scheme s) {
  validate_group_size(group_size);
  const index_t rows = w.extent(0);
  const index_t cols = w.extent(1);
  const index_t groups = detail::group_count(cols, group_size);
  per_group_params p{{}, {}, 1, group_size};
  p.scales.reserve(static_cast<std::size_t>(rows * groups));
  p.zero_points.reserve(static_cast<std::size_t>(rows * groups));
  const qrange r = code_range(s);
  for (index_t i = 0; i < rows; ++i) {
    for (index_t g = 0; g < groups; ++g) {
      const index_t begin = g * group_size;
      const index_t end = std::min(cols, begin + group_size);
      float lo = w(i, begin);
      float hi = lo;
      float absmax = 0.0f;
      for (index_t c = begin; c < end; ++c) {
        const float x = w(i, c);
        if (!std::isfinite(x)) {
          throw config_error("weight (" + std::to_string(i) + ", " + std::to_string(c) + ") is " +
                             std::to_string(x) + " (expected finite weights)");
        }
        lo = std::min(lo, x);
        hi = std::max(hi, x);
        absmax = std::max(absmax, std::fabs(x));
      }
      const affine_params a = s == int4_scheme::affine ? choose_affine_params(lo, hi, r)
                                                       : choose_symmetric_params(absmax, r);
      p.scales.push_back(a.scale);
      p.zero_points.push_back(a.zero_point);
    }
  }
  return p;
}

/// Quantizes a [rows, cols] weight per group straight to packed 4-bit codes:
///   q = clamp( round(w / scale_g) + zero_point_g, code_range(s) )
/// (qprune's formula, quant::quantize_value: float32 division, `mode` ties, NaN ->
/// zero point, +-inf saturate), then packed row by row as packed_int4_matrix states.
/// Throws config_error if p.axis != 1, the group size is not a power of two in
/// [16, 256], a scale is not finite and > 0, a zero point is outside the scheme's
/// range or, for a symmetric scheme, not 0; shape_error for a parameter count
/// other than rows * ceil(cols / group_size).
[[nodiscard]] inline packed_int4_matrix quantize_int4(tensor_view<const float, 2> w,
                                                      per_group_params p, int4_scheme s,
                                                      rounding mode = rounding::half_to_even) {
  if (p.axis != 1) {
    throw config_error("4-bit weights are grouped along axis 1 (the columns), got axis " +
                       std::to_string(p.axis));
  }
  const qrange r = code_range(s);
  const index_t rows = w.extent(0);
  const index_t cols = w.extent(1);
  detail::check_group_params(p, rows, cols, r, true);
  if (s != int4_scheme::affine) {
    for (std::size_t i = 0; i < p.zero_points.size(); ++i) {
      if (p.zero_points[i] != 0) {
        throw config_error("group " + std::to_string(i) + ": zero point " +
                           std::to_string(p.zero_points[i]) +
                           " is not 0 (expected 0 for a symmetric 4-bit scheme)");
      }
    }
  }
  packed_int4_matrix m{s, rows, cols, tensor<std::uint8_t, 2>(rows, packed_4bit_bytes(cols)),
                       std::move(p)};
  const index_t groups = detail::group_count(cols, m.params.group_size);
  const float* x = w.data_handle();
  for (index_t i = 0; i < rows; ++i) {
    const float* xr = x + i * cols;
    const float* scales = m.params.scales.data() + i * groups;
    const std::int32_t* zps = m.params.zero_points.data() + i * groups;
    const index_t gs = m.params.group_size;
    detail::pack_nibbles(
        static_cast<std::size_t>(cols),
        [&](std::size_t c) {
          const auto g = static_cast<index_t>(c) / gs;
          const std::int32_t q =
              quantize_value(xr[c], affine_params{scales[g], zps[g]}, r, mode);
          return static_cast<unsigned>(q) & 0x0Fu;
        },
        m.codes.data() + i * m.row_bytes());
  }
  return m;
}

/// Chooses the parameters with choose_int4_group_params, then quantizes.
/// Throws as the two functions do.
[[nodiscard]] inline packed_int4_matrix quantize_int4(tensor_view<const float, 2> w,
                                                      index_t group_size, int4_scheme s,
                                                      rounding mode = rounding::half_to_even) {
  return quantize_int4(w, choose_int4_group_params(w, group_size, s), s, mode);
}

/// Dequantizes a packed matrix: w'(r, c) = scale_g * float(code(r, c) - zero_point_g).
/// Throws shape_error unless `out` is [m.rows, m.cols].
inline void dequantize(const packed_int4_matrix& m, tensor_view<float, 2> out) {
  if (out.extent(0) != m.rows || out.extent(1) != m.cols) {
    throw shape_error("output extents [" + std::to_string(out.extent(0)) + ", " +
                      std::to_string(out.extent(1)) + "] do not match the packed matrix [" +
                      std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]");
  }
  const index_t groups = detail::group_count(m.cols, m.params.group_size);
  float* y = out.data_handle();
  for (index_t i = 0; i < m.rows; ++i) {
    for (index_t c = 0; c < m.cols; ++c) {
      const auto g = static_cast<std::size_t>(i * groups + c / m.params.group_size);
      y[i * m.cols + c] =
          dequantize_value(m.code(i, c), affine_params{m.params.scales[g], m.params.zero_points[g]});
    }
  }
}

}  // namespace qprune::quant

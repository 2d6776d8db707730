// Quantization parameters as plain aggregates: integer types and their
// ranges, affine (scale, zero point) parameters per tensor, per channel along
// any axis, and per group (block) along the reduction axis. Policies compute
// them (observers.hpp, qparams.hpp); kernels apply them. The mapping is always
//   real = scale * (q - zero_point)
// with an integer zero point inside [qmin, qmax], so real 0 is exactly
// representable (doc/quantization.md §2).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"

namespace qprune::quant {

/// Integer storage types of quantized values. int4/uint4 are packed two per
/// byte (int4.hpp states the nibble order).
enum class dtype : std::uint8_t { int4, uint4, int8, uint8, int16, uint16, int32 };

constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::int4: return "int4";
    case dtype::uint4: return "uint4";
    case dtype::int8: return "int8";
    case dtype::uint8: return "uint8";
    case dtype::int16: return "int16";
    case dtype::uint16: return "uint16";
    case dtype::int32: return "int32";
  }
  return "unknown";
}

/// Bits per value.
constexpr int bits_of(dtype t) noexcept {
  switch (t) {
    case dtype::int4:
    case dtype::uint4: return 4;
    case dtype::int8:
    case dtype::uint8: return 8;
    case dtype::int16:
    case dtype::uint16: return 16;
    case dtype::int32: return 32;
  }
  return 0;
}

constexpr bool is_signed(dtype t) noexcept {
  return t == dtype::int4 || t == dtype::int8 || t == dtype::int16 || t == dtype::int32;
}

/// An inclusive integer range [qmin, qmax] that quantized values are clamped to.
struct qrange {
  std::int32_t qmin = 0;
  std::int32_t qmax = 0;
  friend constexpr bool operator==(qrange, qrange) = default;
  /// Number of representable steps, qmax - qmin.
  constexpr std::int64_t levels() const noexcept {
    return static_cast<std::int64_t>(qmax) - static_cast<std::int64_t>(qmin);
  }
};

/// The whole range of a type: int8 [-128, 127], uint8 [0, 255], int4 [-8, 7], ...
constexpr qrange full_range(dtype t) noexcept {
  const int b = bits_of(t);
  if (t == dtype::int32) return {INT32_MIN, INT32_MAX};
  if (is_signed(t)) return {-(1 << (b - 1)), (1 << (b - 1)) - 1};
  return {0, (1 << b) - 1};
}

/// The restricted symmetric range of a signed type, [-(2^(b-1) - 1), 2^(b-1) - 1]:
/// int8 [-127, 127], so negating a value never overflows. qprune's weight range.
constexpr qrange narrow_range(dtype t) noexcept {
  // Signed: drops -2^(b-1). Unsigned: drops 0, as TensorFlow's narrow_range does.
  const qrange f = full_range(t);
  return {f.qmin + 1, f.qmax};
}

/// PyTorch's reduce_range: both ends halved with floor division (int8 [-64, 63],
/// uint8 [0, 127]), for backends whose int16 pairwise sums could overflow.
constexpr qrange reduced_range(qrange r) noexcept {
  auto floor_half = [](std::int32_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  return {floor_half(r.qmin), floor_half(r.qmax)};
}

/// Throws config_error unless qmin < qmax.
inline void validate(qrange r) {
  if (!(r.qmin < r.qmax)) {
    throw config_error("quantization range [" + std::to_string(r.qmin) + ", " +
                       std::to_string(r.qmax) + "] is empty (expected qmin < qmax)");
  }
}

/// Symmetric (zero point fixed: 0 for signed types) or affine (zero point free).
enum class scheme : std::uint8_t { symmetric, affine };

constexpr std::string_view to_string(scheme s) noexcept {
  return s == scheme::symmetric ? "symmetric" : "affine";
}

/// Per-tensor affine parameters: real = scale * (q - zero_point).
struct affine_params {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
  friend bool operator==(const affine_params&, const affine_params&) = default;
};

/// One (scale, zero point) per slice along `axis`: slice c uses scales[c], zero_points[c].
struct per_channel_params {
  std::vector<float> scales;
  std::vector<std::int32_t> zero_points;
  index_t axis = 0;
  index_t channels() const noexcept { return static_cast<index_t>(scales.size()); }
  affine_params at(index_t c) const noexcept {
    return {scales[static_cast<std::size_t>(c)], zero_points[static_cast<std::size_t>(c)]};
  }
  friend bool operator==(const per_channel_params&, const per_channel_params&) = default;
};

/// Groups (blocks) of `group_size` consecutive values along the reduction
/// `axis` share parameters. For a 2-D [rows, cols] weight grouped along axis 1,
/// group g of row r uses scales[r * groups + g], where groups = ceil(cols / group_size).
struct per_group_params {
  std::vector<float> scales;
  std::vector<std::int32_t> zero_points;
  index_t axis = 1;
  index_t group_size = 32;
  friend bool operator==(const per_group_params&, const per_group_params&) = default;
};

/// Throws config_error unless `g` is a power of two in [16, 256].
inline void validate_group_size(index_t g) {
  if (g < 16 || g > 256 || (g & (g - 1)) != 0) {
    throw config_error("group size " + std::to_string(g) +
                       " is not supported (expected a power of two from 16 to 256)");
  }
}

}  // namespace qprune::quant

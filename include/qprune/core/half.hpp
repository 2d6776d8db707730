// IEEE 754 binary16 (`half`) and bfloat16 (`bfloat16`) storage types with
// exact scalar conversions. These scalar functions are the reference twins of
// the bulk SIMD conversions in kernels/convert.hpp. Numerics: doc/numerics.md §1.
//
//   float -> half:  round to nearest, ties to even; results below 2^-14 become
//                   subnormals (kept, not flushed); |x| >= 65520 becomes +-inf;
//                   NaN stays NaN, made quiet, with its sign and its top 9
//                   payload bits (what x86 F16C does).
//   half -> float:  exact; NaN is made quiet, payload kept.
//   float -> bf16:  round to nearest, ties to even on the top 16 bits; subnormals
//                   kept; values that round past FLT_MAX become +-inf; NaN stays
//                   NaN, made quiet, sign and top payload bits kept.
//   bf16 -> float:  exact (the bits shifted up 16); NaN is made quiet.
#pragma once

#include <bit>
#include <cstdint>

namespace qprune {

namespace detail {

/// float bits -> binary16 bits, round to nearest even.
constexpr std::uint16_t float_to_half_bits(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf or NaN
    if (ax == 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x03ffu));
  }
  if (ax >= 0x477ff000u) {  // >= 65520: the tie between 65504 and 2^16 goes to even (inf)
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
    const std::uint32_t e = ax >> 23;
    if (e < 102) return sign;  // below 2^-25 (2^-25 itself ties to even 0 below)
    // value = m * 2^(e-150); in units of 2^-24: m >> (126 - e), rounded.
    const std::uint32_t m = (ax & 0x007fffffu) | 0x00800000u;
    const std::uint32_t shift = 126 - e;  // 14..24
    std::uint32_t h = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  // Normal: rebias the exponent (127 -> 15) and round the low 13 mantissa bits.
  std::uint32_t h = (ax - 0x38000000u) >> 13;
  const std::uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may reach inf: correct
  return static_cast<std::uint16_t>(sign | h);
}

/// binary16 bits -> float, exact.
constexpr float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t man = h & 0x03ffu;
  if (exp == 0x1fu) {
    if (man == 0) return std::bit_cast<float>(sign | 0x7f800000u);
    return std::bit_cast<float>(sign | 0x7fc00000u | (man << 13));
  }
  if (exp == 0) {
    // Subnormal or zero: man * 2^-24 is exact in float.
    const float v = static_cast<float>(man) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) | sign);
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

/// float -> bfloat16 bits, round to nearest even.
constexpr std::uint16_t float_to_bf16_bits(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  }
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/// bfloat16 bits -> float, exact; a NaN is made quiet.
constexpr float bf16_bits_to_float(std::uint16_t b) noexcept {
  std::uint32_t x = static_cast<std::uint32_t>(b) << 16;
  if ((x & 0x7fffffffu) > 0x7f800000u) x |= 0x00400000u;
  return std::bit_cast<float>(x);
}

}  // namespace detail

/// IEEE 754 binary16. A 2-byte trivially copyable storage type, layout-compatible
/// with Eigen::half and _Float16. Arithmetic is done in float.
struct half {
  std::uint16_t bits = 0;

  constexpr half() noexcept = default;
  /// Rounds to nearest even (see the file comment).
  constexpr explicit half(float f) noexcept : bits(detail::float_to_half_bits(f)) {}
  /// Exact.
  constexpr explicit operator float() const noexcept { return detail::half_bits_to_float(bits); }
  static constexpr half from_bits(std::uint16_t b) noexcept {
    half h;
    h.bits = b;
    return h;
  }
  /// Bitwise equality (so +0 != -0 and NaN == the same NaN); compare floats for IEEE semantics.
  friend constexpr bool operator==(half, half) noexcept = default;
};

/// bfloat16: the top 16 bits of a float. 2-byte trivially copyable storage type.
struct bfloat16 {
  std::uint16_t bits = 0;

  constexpr bfloat16() noexcept = default;
  /// Rounds to nearest even (see the file comment).
  constexpr explicit bfloat16(float f) noexcept : bits(detail::float_to_bf16_bits(f)) {}
  /// Exact.
  constexpr explicit operator float() const noexcept { return detail::bf16_bits_to_float(bits); }
  static constexpr bfloat16 from_bits(std::uint16_t b) noexcept {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  /// Bitwise equality.
  friend constexpr bool operator==(bfloat16, bfloat16) noexcept = default;
};

static_assert(sizeof(half) == 2 && sizeof(bfloat16) == 2);

}  // namespace qprune

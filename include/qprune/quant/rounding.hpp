// Rounding modes and saturating float -> integer conversion for the
// quantizers. The frameworks round differently, so the mode is always a
// parameter, never a hidden default (doc/quantization.md §1):
//   half_to_even        nearbyint under FE_TONEAREST: PyTorch, ONNX Runtime, numpy
//   half_up             floor(x + 0.5): TensorFlow fake-quant
//   half_away_from_zero std::round: TensorFlow's zero-point nudge, C roundf
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string_view>
#include <type_traits>
#include <utility>

#include "qprune/core/config.hpp"

namespace qprune::quant {

/// How a real value between two integers is rounded.
enum class rounding : std::uint8_t { half_to_even, half_up, half_away_from_zero };

constexpr std::string_view to_string(rounding r) noexcept {
  switch (r) {
    case rounding::half_to_even: return "half_to_even";
    case rounding::half_up: return "half_up";
    case rounding::half_away_from_zero: return "half_away_from_zero";
  }
  return "unknown";
}

namespace detail {
/// Returns `v` unchanged but opaque to the optimiser, so a float product is
/// rounded before the addition that follows it. GCC contracts `a * b + c` into
/// one FMA, even across statements (-ffp-contract=fast, its default outside ISO
/// mode), whenever the target has FMA (-march=haswell and later, or inside a
/// [[gnu::target("fma")]] function); the frameworks reproduced here round the
/// product first, so contraction would change the last bit.
template <std::floating_point T>
inline T unfused(T v) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  __asm__("" : "+x"(v));
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
  __asm__("" : "+w"(v));
#else
  volatile T t = v;
  v = t;
#endif
  return v;
}
}  // namespace detail

/// Rounds `x` to an integral float.
///   half_to_even:        2.5 -> 2, 3.5 -> 4, -2.5 -> -2 (std::nearbyint; assumes the
///                        default FE_TONEAREST floating-point environment)
///   half_up:             floor(x + 0.5f): 2.5 -> 3, -2.5 -> -2 (the sum is a float
///                        operation, exactly as TensorFlow computes it)
///   half_away_from_zero: 2.5 -> 3, -2.5 -> -3
/// NaN and +-inf pass through unchanged.
inline float round_to_integral(float x, rounding r) noexcept {
  switch (r) {
    case rounding::half_to_even: return std::nearbyint(x);
    case rounding::half_up: return std::floor(x + 0.5f);
    case rounding::half_away_from_zero: return std::round(x);
  }
  return std::nearbyint(x);
}

/// Same, in double precision.
inline double round_to_integral(double x, rounding r) noexcept {
  switch (r) {
    case rounding::half_to_even: return std::nearbyint(x);
    case rounding::half_up: return std::floor(x + 0.5);
    case rounding::half_away_from_zero: return std::round(x);
  }
  return std::nearbyint(x);
}

/// Clamps an integral float into [lo, hi] and converts it, without the
/// undefined behaviour of casting an out-of-range float: +inf -> hi, -inf -> lo.
/// NaN -> `nan_value`. Precondition: lo <= hi.
inline std::int32_t saturate_to_int(float x, std::int32_t lo, std::int32_t hi,
                                    std::int32_t nan_value) noexcept {
  if (std::isnan(x)) return nan_value;
  if (x <= static_cast<float>(lo)) return lo;
  if (x >= static_cast<float>(hi)) return hi;
  return static_cast<std::int32_t>(x);
}

/// Double-precision variant of saturate_to_int.
inline std::int32_t saturate_to_int(double x, std::int32_t lo, std::int32_t hi,
                                    std::int32_t nan_value) noexcept {
  if (std::isnan(x)) return nan_value;
  if (x <= static_cast<double>(lo)) return lo;
  if (x >= static_cast<double>(hi)) return hi;
  return static_cast<std::int32_t>(x);
}

/// Clamps an integer into [lo, hi] and narrows it to T. Precondition: [lo, hi] fits T.
template <class T, class I>
constexpr T saturate_cast(I v, I lo, I hi) noexcept {
  return static_cast<T>(v < lo ? lo : (v > hi ? hi : v));
}

/// Clamps an integer into T's whole range and narrows it (any signedness).
template <std::integral T, std::integral I>
constexpr T saturate_cast(I v) noexcept {
  using L = std::numeric_limits<T>;
  if (std::cmp_less(v, L::min())) return L::min();
  if (std::cmp_greater(v, L::max())) return L::max();
  return static_cast<T>(v);
}

}  // namespace qprune::quant

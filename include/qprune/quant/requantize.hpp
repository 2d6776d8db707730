// Requantization of int32 accumulators: TFLite's QuantizeMultiplier, the
// gemmlowp fixed-point primitives (SaturatingRoundingDoublingHighMul,
// RoundingDivideByPOT), MultiplyByQuantizedMultiplier, the fused-activation
// ranges, and the per-tensor / per-channel output stages to int8, uint8, int16
// and float. These are the scalar references every fast kernel must match bit
// for bit. Formulas, tie rules and sources: doc/quantization.md, "Requantization".
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/quantize.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

// ---------------------------------------------------------------------------
// Quantized multipliers (TFLite quantization_util.cc)
// ---------------------------------------------------------------------------

/// A real multiplier M stored as a Q0.31 fixed-point significand and a power of two:
///   M ~= multiplier * 2^(shift - 31)
/// multiplier is 0 (M = 0 or flushed) or in [2^30, 2^31 - 1]; shift > 0 means a
/// left shift, shift < 0 a right shift (TFLite's convention for QuantizeMultiplier).
struct quantized_multiplier {
  std::int32_t multiplier = 0;
  int shift = 0;
  friend constexpr bool operator==(quantized_multiplier, quantized_multiplier) = default;
};

/// Which MultiplyByQuantizedMultiplier the requantization uses.
enum class multiplier_rounding : std::uint8_t {
  /// gemmlowp's two roundings, SRDHM then RDBPOT: TFLite's default build
  /// (TFLITE_SINGLE_ROUNDING=0), ruy, gemmlowp. Shifts in [-31, 31].
  double_rounding,
  /// One rounding, (x * M0 + 2^(30 - shift)) >> (31 - shift): TFLite built with
  /// TFLITE_SINGLE_ROUNDING=1 (TFLite Micro's default). Shifts in [-31, 30], M0 >= 0.
  single_rounding,
};

constexpr std::string_view to_string(multiplier_rounding r) noexcept {
  return r == multiplier_rounding::double_rounding ? "double_rounding" : "single_rounding";
}

namespace detail {
inline std::string double_string(double x) {
  // Enough digits to tell neighbouring doubles apart in messages.
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

inline void check_real_multiplier(double m) {
  if (!(m >= 0.0) || !std::isfinite(m)) {
    throw config_error("real multiplier " + double_string(m) +
                       " is invalid (expected a finite value >= 0)");
  }
}

/// frexp + round + renormalise, shared by both QuantizeMultiplier variants.
inline quantized_multiplier quantize_multiplier_core(double m) noexcept {
  if (m == 0.0) return {0, 0};
  int shift = 0;
  const double q = std::frexp(m, &shift);  // q in [0.5, 1)
  // q * 2^31 is exact in double; TfLiteRound is std::round (ties away from zero).
  auto q_fixed = static_cast<std::int64_t>(std::round(q * 2147483648.0));
  if (q_fixed == (std::int64_t{1} << 31)) {
    q_fixed /= 2;
    ++shift;
  }
  if (shift < -31) {
    // TFLite flushes multipliers below 2^-32 to zero ("flush denormals"): shift -31 is the
    // smallest kept, so 2^-32 -> (2^30, -31) but 0.99 * 2^-32 -> (0, 0).
    shift = 0;
    q_fixed = 0;
  }
  return {static_cast<std::int32_t>(q_fixed), shift};
}
}  // namespace detail

/// TFLite's QuantizeMultiplier (double-rounding build): M -> (M0, shift) with
///   (q, e) = frexp(M), q in [0.5, 1);  M0 = round_half_away(q * 2^31);  shift = e
///   if M0 == 2^31: M0 = 2^30, shift = e + 1
///   if shift < -31: (M0, shift) = (0, 0)          (M below 2^-32 flushes to zero)
///   M == 0 -> (0, 0)
/// so M0 * 2^(shift-31) is M with a relative error <= 2^-31. Large M gives large
/// shifts unchanged (M = 2^40 -> (2^30, 41)); multiply_by_quantized_multiplier
/// accepts shifts up to 31 only, which make_requant_params checks.
/// Throws config_error if M is negative, NaN or infinite (TFLite accepts negative
/// multipliers; qprune's scales are positive, so a negative M is a caller error).
[[nodiscard]] inline quantized_multiplier quantize_multiplier(double real_multiplier) {
  detail::check_real_multiplier(real_multiplier);
  return detail::quantize_multiplier_core(real_multiplier);
}

/// TFLite's QuantizeMultiplier in a TFLITE_SINGLE_ROUNDING=1 build: as
/// quantize_multiplier, then a shift > 30 saturates to (2^31 - 1, 30), the
/// largest multiplier the single-rounding multiply supports.
/// Throws config_error if M is negative, NaN or infinite.
[[nodiscard]] inline quantized_multiplier quantize_multiplier_single_rounding(
    double real_multiplier) {
  detail::check_real_multiplier(real_multiplier);
  quantized_multiplier m = detail::quantize_multiplier_core(real_multiplier);
  if (m.shift > 30) m = {std::numeric_limits<std::int32_t>::max(), 30};
  return m;
}

/// TFLite's QuantizeMultiplierSmallerThanOneExp: quantize_multiplier for
/// 0 < M < 1, whose shift (returned as a non-positive left shift) must be <= 0.
/// Throws config_error unless 0 < M < 1 and the rounded result keeps shift <= 0
/// (M within 2^-32 of 1 rounds up to (2^30, 1) and is rejected, as TFLite's CHECK does).
[[nodiscard]] inline quantized_multiplier quantize_multiplier_smaller_than_one_exp(
    double real_multiplier) {
  if (!(real_multiplier > 0.0 && real_multiplier < 1.0)) {
    throw config_error("real multiplier " + detail::double_string(real_multiplier) +
                       " is invalid (expected 0 < M < 1)");
  }
  const quantized_multiplier m = detail::quantize_multiplier_core(real_multiplier);
  if (m.shift > 0) {
    throw config_error("real multiplier " + detail::double_string(real_multiplier) +
                       " rounds to 1.0 (expected M0 * 2^(shift-31) < 1, i.e. shift <= 0)");
  }
  return m;
}

/// TFLite's QuantizeMultiplierGreaterThanOne: quantize_multiplier for M > 1,
/// whose shift (a left shift) is then >= 1.
/// Throws config_error unless 1 < M (finite).
[[nodiscard]] inline quantized_multiplier quantize_multiplier_greater_than_one(
    double real_multiplier) {
  if (!(real_multiplier > 1.0) || !std::isfinite(real_multiplier)) {
    throw config_error("real multiplier " + detail::double_string(real_multiplier) +
                       " is invalid (expected a finite M > 1)");
  }
  return detail::quantize_multiplier_core(real_multiplier);
}

// ---------------------------------------------------------------------------
// gemmlowp fixed-point primitives (fixedpoint/fixedpoint.h) and TFLite's
// MultiplyByQuantizedMultiplier (kernels/internal/common.cc)
// ---------------------------------------------------------------------------

/// gemmlowp's SaturatingRoundingDoublingHighMul (ARM VQRDMULH):
///   a == b == INT32_MIN:  INT32_MAX                      (the only overflow)
///   otherwise:            floor((a*b + 2^30) / 2^31)     a*b exact in int64
/// i.e. a*b / 2^31 rounded to nearest with ties toward +infinity (0.5 -> 1,
/// -0.5 -> 0, -1.5 -> -1). gemmlowp writes it as (ab + nudge) / 2^31 with C++
/// truncating division and nudge = ab >= 0 ? 2^30 : 1 - 2^30, which is the same.
/// Symmetric in a and b.
[[nodiscard]] constexpr std::int32_t saturating_rounding_doubling_high_mul(
    std::int32_t a, std::int32_t b) noexcept {
  if (a == b && a == std::numeric_limits<std::int32_t>::min()) {
    return std::numeric_limits<std::int32_t>::max();
  }
  const std::int64_t ab = std::int64_t{a} * std::int64_t{b};
  const std::int64_t nudge = ab >= 0 ? (std::int64_t{1} << 30) : (1 - (std::int64_t{1} << 30));
  return static_cast<std::int32_t>((ab + nudge) / (std::int64_t{1} << 31));
}

/// gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away
/// from zero (2.5 -> 3, -2.5 -> -3), for exponent in [0, 31]:
///   mask = 2^e - 1;  remainder = x & mask;  threshold = (mask >> 1) + (x < 0)
///   result = (x >> e) + (remainder > threshold)       (>> is arithmetic)
/// Never overflows. Precondition (QPRUNE_ASSERT): 0 <= exponent <= 31.
[[nodiscard]] constexpr std::int32_t rounding_divide_by_pot(std::int32_t x,
                                                            int exponent) noexcept {
  QPRUNE_ASSERT(exponent >= 0 && exponent <= 31, "rounding_divide_by_pot: exponent in [0, 31]");
  const auto mask = static_cast<std::int32_t>((std::int64_t{1} << exponent) - 1);
  const std::int32_t remainder = x & mask;
  const std::int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/// TFLite's MultiplyByQuantizedMultiplier (int32, double-rounding build), x * M
/// with M = M0 * 2^(shift - 31):
///   left = max(shift, 0), right = max(-shift, 0)
///   result = RDBPOT( SRDHM( x * 2^left, M0 ), right )
/// x * 2^left is taken modulo 2^32 (two's complement wrap), as TFLite's int32
/// product, ruy and SIMD shifts compute it; meaningful results need
/// |x| * 2^left < 2^31. Two roundings: SRDHM ties toward +inf, RDBPOT ties away
/// from zero, so the result can differ by 1 from round(x * M0 * 2^(shift-31))
/// (x = 1, M = 0.25 gives 1), but |result - x * M0 * 2^(shift-31)| <= 3/4.
/// Preconditions (QPRUNE_ASSERT): -31 <= shift <= 31. Any M0 (negative too).
[[nodiscard]] constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t x,
                                                                      std::int32_t multiplier,
                                                                      int shift) noexcept {
  QPRUNE_ASSERT(shift >= -31 && shift <= 31, "multiply_by_quantized_multiplier: shift in [-31, 31]");
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const auto scaled = static_cast<std::int32_t>(static_cast<std::uint32_t>(x) << left);
  return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(scaled, multiplier), right);
}

/// TFLite's MultiplyByQuantizedMultiplier (int32) in a TFLITE_SINGLE_ROUNDING=1 build:
///   t = 31 - shift;  result = (x * M0 + 2^(t-1)) >> t      (int64, >> arithmetic)
/// i.e. x * M0 * 2^(shift-31) rounded once, ties toward +infinity. A result outside
/// int32 (possible only for shift > 0) wraps modulo 2^32, as TFLite's static_cast.
/// Preconditions (QPRUNE_ASSERT): M0 >= 0, -31 <= shift <= 30.
[[nodiscard]] constexpr std::int32_t multiply_by_quantized_multiplier_single_rounding(
    std::int32_t x, std::int32_t multiplier, int shift) noexcept {
  QPRUNE_ASSERT(multiplier >= 0 && shift >= -31 && shift <= 30,
                "multiply_by_quantized_multiplier_single_rounding: M0 >= 0, shift in [-31, 30]");
  const int total_shift = 31 - shift;
  const std::int64_t round = std::int64_t{1} << (total_shift - 1);
  const std::int64_t r = (std::int64_t{x} * std::int64_t{multiplier} + round) >> total_shift;
  return static_cast<std::int32_t>(r);
}

/// TFLite's MultiplyByQuantizedMultiplier for int64 x (the 16x8 kernels; the same
/// code in both builds): M0 is reduced to 16 bits first,
///   M16 = M0 < 0x7FFF0000 ? (M0 + 2^15) >> 16 : 0x7FFF
///   t = 15 - shift;  result = (x * M16 + 2^(t-1)) >> t     (ties toward +inf)
/// A result outside int32 wraps modulo 2^32 (TFLite's static_cast).
/// Preconditions (QPRUNE_ASSERT): M0 >= 0, -31 <= shift <= 7, -2^47 <= x < 2^47.
[[nodiscard]] constexpr std::int32_t multiply_by_quantized_multiplier_int64(
    std::int64_t x, std::int32_t multiplier, int shift) noexcept {
  QPRUNE_ASSERT(multiplier >= 0 && shift >= -31 && shift <= 7 &&
                    x >= -(std::int64_t{1} << 47) && x < (std::int64_t{1} << 47),
                "multiply_by_quantized_multiplier_int64: M0 >= 0, shift in [-31, 7], |x| < 2^47");
  const std::int32_t reduced = multiplier < 0x7FFF0000 ? (multiplier + (1 << 15)) >> 16 : 0x7FFF;
  const int total_shift = 15 - shift;
  const std::int64_t round = std::int64_t{1} << (total_shift - 1);
  return static_cast<std::int32_t>((x * std::int64_t{reduced} + round) >> total_shift);
}

// ---------------------------------------------------------------------------
// Fused activations (TFLite kernel_util.cc, CalculateActivationRangeQuantized)
// ---------------------------------------------------------------------------

/// An activation folded into the output clamp, as TFLite's TfLiteFusedActivation.
enum class fused_activation : std::uint8_t {
  none,          ///< [qmin, qmax]
  relu,          ///< max(x, 0)
  relu6,         ///< min(max(x, 0), 6)
  relu_n1_to_1,  ///< min(max(x, -1), 1)  (TFLite's kTfLiteActReluN1To1 / Relu1)
};

constexpr std::string_view to_string(fused_activation a) noexcept {
  switch (a) {
    case fused_activation::none: return "none";
    case fused_activation::relu: return "relu";
    case fused_activation::relu6: return "relu6";
    case fused_activation::relu_n1_to_1: return "relu_n1_to_1";
  }
  return "unknown";
}

namespace detail {
/// TFLite's quantize lambda: zero_point + (int32) round_half_away(f / scale), the
/// division in float32, computed here in int64 with the float saturated to int32
/// (TFLite rejects |f / scale| >= 2^31 in newer versions; we clamp instead).
inline std::int64_t activation_code(float f, affine_params out) noexcept {
  const float t = std::round(f / out.scale);
  return std::int64_t{out.zero_point} +
         saturate_to_int(t, std::numeric_limits<std::int32_t>::min(),
                         std::numeric_limits<std::int32_t>::max(), 0);
}

inline void check_out_params(affine_params out, qrange range) {
  validate(range);
  check_scale(out.scale);
  check_zero_point(out.zero_point, range);
}
}  // namespace detail

/// The output clamp [act_min, act_max] of a fused activation, as TFLite's
/// CalculateActivationRangeQuantized, with q(f) = zp + round_half_away(f / s_out)
/// (f / s_out in float32, std::round):
///   none:          [qmin, qmax]
///   relu:          [max(qmin, q(0)), qmax]          q(0) = zp
///   relu6:         [max(qmin, q(0)), min(qmax, q(6))]
///   relu_n1_to_1:  [max(qmin, q(-1)), min(qmax, q(1))]
/// Ties: s_out = 12 gives q(6) = zp + 1 (6/12 = 0.5 rounds away from zero).
/// Throws config_error if `range` is empty, s_out is not finite and > 0, or the
/// zero point lies outside `range`.
[[nodiscard]] inline qrange quantized_activation_range(fused_activation act, affine_params out,
                                                       qrange range) {
  detail::check_out_params(out, range);
  const std::int64_t lo = range.qmin;
  const std::int64_t hi = range.qmax;
  auto narrow = [](std::int64_t v) { return static_cast<std::int32_t>(v); };
  switch (act) {
    case fused_activation::none: return range;
    case fused_activation::relu:
      return {narrow(std::max(lo, detail::activation_code(0.0f, out))), range.qmax};
    case fused_activation::relu6:
      return {narrow(std::max(lo, detail::activation_code(0.0f, out))),
              narrow(std::min(hi, detail::activation_code(6.0f, out)))};
    case fused_activation::relu_n1_to_1:
      return {narrow(std::max(lo, detail::activation_code(-1.0f, out))),
              narrow(std::min(hi, detail::activation_code(1.0f, out)))};
  }
  return range;
}

// ---------------------------------------------------------------------------
// Requantization parameters
// ---------------------------------------------------------------------------

/// How the effective scale M = s_in * s_w / s_out is formed before QuantizeMultiplier.
enum class scale_product : std::uint8_t {
  /// (double)s_in * (double)s_w[c] / (double)s_out, left to right: TFLite's
  /// PopulateConvolutionQuantizationParams (CONV_2D, DEPTHWISE_CONV_2D, int8 and
  /// per-channel FULLY_CONNECTED).
  double_precision,
  /// (double)(s_in * s_w) / (double)s_out, the product rounded to float32 first:
  /// TFLite's GetQuantizedConvolutionMultipler (per-tensor FULLY_CONNECTED, uint8).
  float_precision,
};

/// The effective real multiplier M = s_in * s_w / s_out, formed as `p` says.
[[nodiscard]] inline double effective_multiplier(float s_in, float s_w, float s_out,
                                                 scale_product p) noexcept {
  if (p == scale_product::float_precision) {
    return static_cast<double>(s_in * s_w) / static_cast<double>(s_out);
  }
  return static_cast<double>(s_in) * static_cast<double>(s_w) / static_cast<double>(s_out);
}

/// Everything the integer output stage needs, per tensor (one multiplier) or per
/// output channel (one per column of the [rows, cols] accumulator matrix):
///   out[i][j] = clamp( MBQM(acc[i][j] + bias[j], multipliers[c], shifts[c]) + out_zero_point,
///                      act_min, act_max ),   c = j (per channel) or 0 (per tensor)
/// MBQM is multiply_by_quantized_multiplier or its single-rounding twin (`rounding`).
struct requant_params {
  std::vector<std::int32_t> multipliers;  ///< M0 per channel, Q0.31
  std::vector<int> shifts;                ///< shift per channel (> 0: left)
  std::int32_t out_zero_point = 0;
  std::int32_t act_min = 0;  ///< output clamp, from quantized_activation_range
  std::int32_t act_max = 0;
  multiplier_rounding rounding = multiplier_rounding::double_rounding;

  /// Number of multipliers: 1 (per tensor) or the number of output channels.
  index_t channels() const noexcept { return static_cast<index_t>(multipliers.size()); }
  /// The multiplier of output column `c` (the only one when per tensor).
  /// Precondition: c < channels() or channels() == 1.
  quantized_multiplier at(index_t c) const noexcept {
    const auto i = multipliers.size() == 1 ? std::size_t{0} : static_cast<std::size_t>(c);
    return {multipliers[i], shifts[i]};
  }
  friend bool operator==(const requant_params&, const requant_params&) = default;
};

/// Builds requant_params from real scales, as TFLite's Prepare does:
///   M_c = effective_multiplier(s_in, s_w[c], out.scale, product)
///   (M0_c, shift_c) = quantize_multiplier(M_c)   (single-rounding variant if `rounding` says so)
///   [act_min, act_max] = quantized_activation_range(act, out, range)
/// One s_w gives per-tensor parameters, n give per-channel parameters for n
/// output columns.
/// Throws config_error for an empty `range`, a scale that is not finite and > 0
/// (naming the channel), a zero point outside `range`, or (double rounding) an M_c
/// needing a shift above 31 (M_c >= ~2^31); shape_error if `s_w` is empty.
[[nodiscard]] inline requant_params make_requant_params(float s_in, std::span<const float> s_w,
                                                        affine_params out, qrange range,
                                                        fused_activation act,
                                                        multiplier_rounding rounding,
                                                        scale_product product) {
  if (s_w.empty()) {
    throw shape_error("no weight scales given (expected 1 for per tensor or 1 per output channel)");
  }
  detail::check_scale(s_in);
  const qrange a = quantized_activation_range(act, out, range);
  requant_params p;
  p.out_zero_point = out.zero_point;
  p.act_min = a.qmin;
  p.act_max = a.qmax;
  p.rounding = rounding;
  p.multipliers.reserve(s_w.size());
  p.shifts.reserve(s_w.size());
  for (std::size_t c = 0; c < s_w.size(); ++c) {
    const auto ci = static_cast<index_t>(c);
    detail::check_scale(s_w[c], ci);
    const double m = effective_multiplier(s_in, s_w[c], out.scale, product);
    const quantized_multiplier q = rounding == multiplier_rounding::double_rounding
                                       ? quantize_multiplier(m)
                                       : quantize_multiplier_single_rounding(m);
    if (q.shift > 31) {
      throw config_error(detail::channel_prefix(s_w.size() == 1 ? -1 : ci) +
                         "effective multiplier s_in * s_w / s_out = " + detail::double_string(m) +
                         " needs shift " + std::to_string(q.shift) +
                         " (expected at most 31, i.e. a multiplier below 2^31)");
    }
    p.multipliers.push_back(q.multiplier);
    p.shifts.push_back(q.shift);
  }
  return p;
}

/// make_requant_params with TFLite's defaults: double-precision scale product
/// (CONV_2D / per-channel) and double rounding (TFLITE_SINGLE_ROUNDING=0).
[[nodiscard]] inline requant_params make_requant_params(float s_in, std::span<const float> s_w,
                                                        affine_params out, qrange range,
                                                        fused_activation act) {
  return make_requant_params(s_in, s_w, out, range, act, multiplier_rounding::double_rounding,
                             scale_product::double_precision);
}

/// Per-tensor convenience: one weight scale.
[[nodiscard]] inline requant_params make_requant_params(float s_in, float s_w, affine_params out,
                                                        qrange range, fused_activation act) {
  return make_requant_params(s_in, std::span<const float>(&s_w, 1), out, range, act);
}

/// The storage types requantize() writes.
template <class T>
concept requant_output =
    std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t> || std::same_as<T, std::int16_t>;

/// Throws unless `p` can requantize a [rows, cols] accumulator matrix into type `t`:
/// shape_error if multipliers and shifts differ in count or the count is neither 1
/// nor `cols`; config_error if a multiplier is negative, a shift lies outside
/// [-31, 31] ([-31, 30] for single rounding), act_min > act_max, or act_min,
/// act_max or the zero point do not fit `t`.
inline void validate(const requant_params& p, index_t cols, dtype t) {
  if (p.multipliers.size() != p.shifts.size()) {
    throw shape_error("requantization parameters have " + std::to_string(p.multipliers.size()) +
                      " multipliers but " + std::to_string(p.shifts.size()) +
                      " shifts (expected the same count)");
  }
  if (p.channels() != 1 && p.channels() != cols) {
    throw shape_error("requantization parameters have " + std::to_string(p.channels()) +
                      " multipliers for " + std::to_string(cols) +
                      " output channels (expected 1 or " + std::to_string(cols) + ")");
  }
  const int max_shift = p.rounding == multiplier_rounding::double_rounding ? 31 : 30;
  for (index_t c = 0; c < p.channels(); ++c) {
    const quantized_multiplier m = p.at(c);
    const std::string prefix = detail::channel_prefix(p.channels() == 1 ? -1 : c);
    if (m.multiplier < 0) {
      throw config_error(prefix + "multiplier " + std::to_string(m.multiplier) +
                         " is negative (expected M0 >= 0)");
    }
    if (m.shift < -31 || m.shift > max_shift) {
      throw config_error(prefix + "shift " + std::to_string(m.shift) +
                         " is out of range (expected -31.." + std::to_string(max_shift) + " for " +
                         std::string(to_string(p.rounding)) + ")");
    }
  }
  if (p.act_min > p.act_max) {
    throw config_error("activation range [" + std::to_string(p.act_min) + ", " +
                       std::to_string(p.act_max) + "] is empty (expected act_min <= act_max)");
  }
  const qrange f = full_range(t);
  if (p.act_min < f.qmin || p.act_max > f.qmax) {
    throw config_error("activation range [" + std::to_string(p.act_min) + ", " +
                       std::to_string(p.act_max) + "] does not fit " + std::string(to_string(t)) +
                       " (expected a range inside [" + std::to_string(f.qmin) + ", " +
                       std::to_string(f.qmax) + "])");
  }
  detail::check_zero_point(p.out_zero_point, f);
}

// ---------------------------------------------------------------------------
// Integer output stage
// ---------------------------------------------------------------------------

/// Requantizes one accumulator (the scalar reference of every output stage):
///   s = acc + bias                      int32, wraps modulo 2^32 (as TFLite's int32
///                                       add and SIMD adds; no overflow in practice)
///   y = MBQM(s, m.multiplier, m.shift)  multiply_by_quantized_multiplier, or its
///                                       single-rounding twin
///   out = clamp(y + zero_point, act.qmin, act.qmax)   exact (int64), then int32
/// Equal to TFLite's reference kernels wherever their int32 arithmetic does not
/// overflow. Preconditions: the MBQM preconditions on `m`; act.qmin <= act.qmax.
[[nodiscard]] constexpr std::int32_t requantize_value(std::int32_t acc, std::int32_t bias,
                                                      quantized_multiplier m,
                                                      std::int32_t zero_point, qrange act,
                                                      multiplier_rounding rounding) noexcept {
  const auto sum = static_cast<std::int32_t>(static_cast<std::uint32_t>(acc) +
                                             static_cast<std::uint32_t>(bias));
  const std::int32_t y =
      rounding == multiplier_rounding::double_rounding
          ? multiply_by_quantized_multiplier(sum, m.multiplier, m.shift)
          : multiply_by_quantized_multiplier_single_rounding(sum, m.multiplier, m.shift);
  const std::int64_t v = std::int64_t{y} + std::int64_t{zero_point};
  return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, act.qmin, act.qmax));
}

/// Requantizes one row of `cols` accumulators: out[j] = requantize_value(acc[j],
/// bias[j], p.at(j), ...). `bias` may be null (no bias).
/// Preconditions: validate(p, cols, dtype_of<T>) passed; the arrays hold `cols` entries.
template <requant_output T>
void requantize_row(const std::int32_t* acc, const std::int32_t* bias, const requant_params& p,
                    index_t cols, T* out) noexcept {
  const qrange act{p.act_min, p.act_max};
  for (index_t j = 0; j < cols; ++j) {
    const std::int32_t b = bias != nullptr ? bias[j] : 0;
    out[j] = static_cast<T>(requantize_value(acc[j], b, p.at(j), p.out_zero_point, act, p.rounding));
  }
}

/// Requantizes a [rows, cols] int32 accumulator matrix (one row per sample, one
/// column per output channel) to int8, uint8 or int16:
///   out[i][j] = clamp( MBQM(acc[i][j] + bias[j], M0[c], shift[c]) + zp_out, act_min, act_max )
/// with c = j per channel, 0 per tensor (requantize_value states the arithmetic).
/// `bias` is empty (no bias) or holds one int32 per column (scale s_in * s_w[j],
/// zero point 0). Any layouts.
/// Throws shape_error if the extents differ or `bias` has neither 0 nor cols
/// entries; otherwise as validate(p, cols, dtype_of<T>).
template <requant_output T, class LayoutIn, class LayoutOut>
void requantize(tensor_view<const std::int32_t, 2, LayoutIn> acc,
                std::span<const std::int32_t> bias, const requant_params& p,
                tensor_view<T, 2, LayoutOut> out) {
  detail::check_same_extents(acc.extents(), out.extents());
  const index_t rows = acc.extent(0);
  const index_t cols = acc.extent(1);
  if (!bias.empty() && static_cast<index_t>(bias.size()) != cols) {
    throw shape_error("bias has " + std::to_string(bias.size()) + " entries for " +
                      std::to_string(cols) + " output channels (expected 0 or " +
                      std::to_string(cols) + ")");
  }
  validate(p, cols, dtype_of<T>);
  const qrange act{p.act_min, p.act_max};
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      const std::int32_t b = bias.empty() ? 0 : bias[static_cast<std::size_t>(j)];
      out(i, j) =
          static_cast<T>(requantize_value(acc(i, j), b, p.at(j), p.out_zero_point, act, p.rounding));
    }
  }
}

// ---------------------------------------------------------------------------
// Float output stage
// ---------------------------------------------------------------------------

/// Parameters of the float output stage: scales[c] = s_in * s_w[c] (the bias
/// scale), one per tensor or per output column, and a fused activation.
struct float_output_params {
  std::vector<float> scales;
  fused_activation activation = fused_activation::none;
  index_t channels() const noexcept { return static_cast<index_t>(scales.size()); }
  friend bool operator==(const float_output_params&, const float_output_params&) = default;
};

/// scales[c] = s_in * s_w[c], one float32 product (a single rounding of the exact product).
/// Throws config_error for a scale that is not finite and > 0 or a product that
/// overflows or underflows to 0; shape_error if `s_w` is empty.
[[nodiscard]] inline float_output_params make_float_output_params(float s_in,
                                                                  std::span<const float> s_w,
                                                                  fused_activation act) {
  if (s_w.empty()) {
    throw shape_error("no weight scales given (expected 1 for per tensor or 1 per output channel)");
  }
  detail::check_scale(s_in);
  float_output_params p;
  p.activation = act;
  p.scales.reserve(s_w.size());
  for (std::size_t c = 0; c < s_w.size(); ++c) {
    const auto ci = static_cast<index_t>(c);
    detail::check_scale(s_w[c], ci);
    const float s = s_in * s_w[c];
    if (!(s > 0.0f) || !std::isfinite(s)) {
      throw config_error(detail::channel_prefix(ci) + "s_in * s_w = " + std::to_string(s) +
                         " is not a finite value > 0 (scales " + std::to_string(s_in) + " and " +
                         std::to_string(s_w[c]) + ")");
    }
    p.scales.push_back(s);
  }
  return p;
}

/// Dequantizes one accumulator:
///   s = acc + bias            int32, wraps modulo 2^32 (same sum as requantize_value)
///   y = float(s) * scale      float32: the conversion rounds to nearest-even when
///                             |s| > 2^24, then one rounded product
///   relu: max(y, 0); relu6: min(max(y, 0), 6); relu_n1_to_1: min(max(y, -1), 1)
/// |y - s * scale| <= 2^-23 * |s * scale| (two roundings). y is never NaN for a
/// finite scale; a negative y clamped by relu becomes +0.
[[nodiscard]] inline float dequantize_accumulator(std::int32_t acc, std::int32_t bias,
                                                  float scale, fused_activation act) noexcept {
  const auto sum = static_cast<std::int32_t>(static_cast<std::uint32_t>(acc) +
                                             static_cast<std::uint32_t>(bias));
  const float y = static_cast<float>(sum) * scale;
  switch (act) {
    case fused_activation::none: return y;
    case fused_activation::relu: return y > 0.0f ? y : 0.0f;
    case fused_activation::relu6: return y > 0.0f ? (y < 6.0f ? y : 6.0f) : 0.0f;
    case fused_activation::relu_n1_to_1: return y > -1.0f ? (y < 1.0f ? y : 1.0f) : -1.0f;
  }
  return y;
}

/// The float output stage on a [rows, cols] accumulator matrix:
///   out[i][j] = act( float(acc[i][j] + bias[j]) * scales[c] ),  c = j or 0
/// (dequantize_accumulator states the arithmetic). `bias` is empty or has cols
/// int32 entries with scale scales[c].
/// Throws shape_error if the extents differ, `bias` has neither 0 nor cols entries,
/// or the number of scales is neither 1 nor cols; config_error for a scale that
/// is not finite and > 0.
template <class LayoutIn, class LayoutOut>
void dequantize_accumulators(tensor_view<const std::int32_t, 2, LayoutIn> acc,
                             std::span<const std::int32_t> bias, const float_output_params& p,
                             tensor_view<float, 2, LayoutOut> out) {
  detail::check_same_extents(acc.extents(), out.extents());
  const index_t rows = acc.extent(0);
  const index_t cols = acc.extent(1);
  if (!bias.empty() && static_cast<index_t>(bias.size()) != cols) {
    throw shape_error("bias has " + std::to_string(bias.size()) + " entries for " +
                      std::to_string(cols) + " output channels (expected 0 or " +
                      std::to_string(cols) + ")");
  }
  if (p.channels() != 1 && p.channels() != cols) {
    throw shape_error("float output parameters have " + std::to_string(p.channels()) +
                      " scales for " + std::to_string(cols) + " output channels (expected 1 or " +
                      std::to_string(cols) + ")");
  }
  for (index_t c = 0; c < p.channels(); ++c) {
    detail::check_scale(p.scales[static_cast<std::size_t>(c)], p.channels() == 1 ? -1 : c);
  }
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      const std::int32_t b = bias.empty() ? 0 : bias[static_cast<std::size_t>(j)];
      const float s = p.scales[p.channels() == 1 ? std::size_t{0} : static_cast<std::size_t>(j)];
      out(i, j) = dequantize_accumulator(acc(i, j), b, s, p.activation);
    }
  }
}

}  // namespace qprune::quant

// Choosing quantization parameters (scale, zero point) from a real range
// [min, max]: qprune's own rule, and each framework's rule reproduced bit for
// bit. Formulas and the framework sources they come from: doc/quantization.md §3.
//
//   qprune (default)           choose_affine_params / choose_symmetric_params
//   PyTorch 1.13 observers     pytorch::calculate_qparams (MinMax/PerChannel/Histogram)
//   PyTorch 1.13 dynamic quant pytorch::choose_quantization_params (ChooseQuantizationParams)
//   ONNX Runtime               onnxruntime::compute_scale_zp, onnxruntime::qrange_for
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "qprune/core/error.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

namespace detail {
inline void check_min_max(float min, float max) {
  if (std::isnan(min) || std::isnan(max) || min > max) {
    throw config_error("range [" + std::to_string(min) + ", " + std::to_string(max) +
                       "] is invalid (expected min <= max, neither NaN)");
  }
}
}  // namespace detail

/// qprune's affine parameters for values in [min, max] mapped onto [r.qmin, r.qmax]:
///   min' = min(min, 0), max' = max(max, 0)              (0 must be representable)
///   scale = float((double(max') - min') / (qmax - qmin)); 1 when that is 0 (all zeros)
///   zero_point = clamp(qmin - round_half_even(min' / scale), qmin, qmax)
/// Preconditions (checked, config_error): min <= max, both finite, r.qmin < r.qmax.
[[nodiscard]] inline affine_params choose_affine_params(float min, float max, qrange r) {
  detail::check_min_max(min, max);
  validate(r);
  if (!std::isfinite(min) || !std::isfinite(max)) {
    throw config_error("range [" + std::to_string(min) + ", " + std::to_string(max) +
                       "] is not finite (expected finite calibration values)");
  }
  const float lo = std::min(min, 0.0f);
  const float hi = std::max(max, 0.0f);
  auto scale = static_cast<float>((static_cast<double>(hi) - static_cast<double>(lo)) /
                                  static_cast<double>(r.levels()));
  if (!(scale > 0.0f) || !std::isfinite(1.0f / scale)) scale = 1.0f;
  const float z = static_cast<float>(r.qmin) - std::nearbyint(lo / scale);
  return {scale, saturate_to_int(z, r.qmin, r.qmax, r.qmin)};
}

/// qprune's symmetric parameters (zero point 0) for values in [-absmax, absmax]
/// on a signed range: scale = absmax / qmax (so +absmax maps exactly to qmax;
/// use narrow_range(dtype::int8) = [-127, 127] for weights). An all-zero input
/// (absmax == 0) gets scale 1. Preconditions (config_error): absmax finite and >= 0,
/// r.qmax > 0.
[[nodiscard]] inline affine_params choose_symmetric_params(float absmax, qrange r) {
  validate(r);
  if (!(absmax >= 0.0f) || !std::isfinite(absmax)) {
    throw config_error("absolute maximum " + std::to_string(absmax) +
                       " is invalid (expected a finite value >= 0)");
  }
  if (r.qmax <= 0) {
    throw config_error("symmetric quantization needs qmax > 0, got range [" +
                       std::to_string(r.qmin) + ", " + std::to_string(r.qmax) + "]");
  }
  float scale = absmax / static_cast<float>(r.qmax);
  if (!(scale > 0.0f) || !std::isfinite(1.0f / scale)) scale = 1.0f;
  return {scale, 0};
}

namespace pytorch {

/// torch.finfo(torch.float32).eps, the default observer eps.
inline constexpr float default_eps = FLT_EPSILON;

/// The qscheme of a PyTorch observer.
enum class qscheme : std::uint8_t { per_tensor_affine, per_tensor_symmetric, per_channel_affine,
                                    per_channel_symmetric };

constexpr bool is_symmetric(qscheme s) noexcept {
  return s == qscheme::per_tensor_symmetric || s == qscheme::per_channel_symmetric;
}

/// An observer's configuration as PyTorch's constructor arguments spell it.
/// dtype: int8 (torch.qint8), uint8 (torch.quint8) or int32 (torch.qint32).
struct observer_config {
  dtype type = dtype::uint8;
  qscheme scheme = qscheme::per_tensor_affine;
  bool reduce_range = false;
  std::optional<qrange> custom_range{};  ///< quant_min / quant_max when given
  float eps = default_eps;
};

/// The effective [quant_min, quant_max] of an observer (`_calculate_qmin_qmax`):
/// custom range: (qmin // 2, qmax // 2) with floor division when reduce_range;
/// default ranges: qint8 [-128, 127] (reduce: [-64, 63]), quint8 [0, 255] (reduce:
/// [0, 127]), qint32 [-2^31, 2^31 - 1]. Throws config_error for other dtypes or
/// a custom range that does not contain 0.
[[nodiscard]] inline qrange effective_range(const observer_config& c) {
  if (c.type != dtype::int8 && c.type != dtype::uint8 && c.type != dtype::int32) {
    throw config_error("PyTorch observers support qint8, quint8 and qint32, not " +
                       std::string(to_string(c.type)));
  }
  if (c.custom_range) {
    const qrange r = *c.custom_range;
    if (!(r.qmin <= 0 && 0 <= r.qmax) || !(r.qmin < r.qmax)) {
      throw config_error("custom range [" + std::to_string(r.qmin) + ", " + std::to_string(r.qmax) +
                         "] must contain 0 with quant_min < quant_max");
    }
    return c.reduce_range ? reduced_range(r) : r;
  }
  if (c.type == dtype::int32) return full_range(dtype::int32);
  const qrange full = full_range(c.type);
  return c.reduce_range ? reduced_range(full) : full;
}

/// `_ObserverBase._calculate_qparams` for one (min_val, max_val) pair (one
/// channel of a per-channel observer), bit for bit, in float32 as torch does:
///   uninitialised (min = +inf and max = -inf): scale 1, zero point 0
///   min_neg = min(min_val, 0), max_pos = max(max_val, 0)
///   symmetric: a = max(-min_neg, max_pos); scale = max(a / ((qmax - qmin) / 2), eps);
///              zero point 0, or for quint8 128 (custom range: (qmin + qmax) // 2).
///              So qint8 uses a / 127.5: +a lands on 127.5 and clamps to 127.
///   affine:    scale = max((max_pos - min_neg) / (qmax - qmin), eps);
///              zero point = clamp(qmin - round_half_even(min_neg / scale), qmin, qmax)
/// Throws config_error when min_val > max_val (torch asserts).
[[nodiscard]] inline affine_params calculate_qparams(float min_val, float max_val,
                                                     const observer_config& c) {
  if (min_val == std::numeric_limits<float>::infinity() &&
      max_val == -std::numeric_limits<float>::infinity()) {
    return {1.0f, 0};
  }
  detail::check_min_max(min_val, max_val);
  const qrange r = effective_range(c);
  const float min_neg = std::min(min_val, 0.0f);
  float max_pos = std::max(max_val, 0.0f);
  // float(quant_max - quant_min) is exact in float for every range torch allows
  // except qint32, where torch converts the Python float to float32 as well.
  const auto span = static_cast<float>(static_cast<double>(r.qmax) - static_cast<double>(r.qmin));
  if (is_symmetric(c.scheme)) {
    max_pos = std::max(-min_neg, max_pos);
    const float scale = std::max(max_pos / (span / 2.0f), c.eps);
    std::int32_t zp = 0;
    if (c.type == dtype::uint8) {
      zp = c.custom_range ? static_cast<std::int32_t>(std::floor(
                                (static_cast<double>(r.qmin) + static_cast<double>(r.qmax)) / 2.0))
                          : 128;
    }
    return {scale, zp};
  }
  const float scale = std::max((max_pos - min_neg) / span, c.eps);
  const float z = static_cast<float>(r.qmin) - std::nearbyint(min_neg / scale);
  return {scale, saturate_to_int(z, r.qmin, r.qmax, r.qmin)};
}

/// What ChooseQuantizationParams returns: the scale is a double (dynamic
/// quantization narrows it to float when it quantizes).
struct tensor_qparams {
  double scale = 1.0;
  std::int32_t zero_point = 0;
  /// The parameters as a quantizer uses them: scale narrowed to float.
  affine_params as_affine() const noexcept { return {static_cast<float>(scale), zero_point}; }
};

/// The smallest scale ChooseQuantizationParams allows (about the smallest normal fp16).
inline constexpr float small_scale_threshold = 6.1e-5f;

/// PyTorch's `quant_utils::ChooseQuantizationParams` (used by dynamic Linear and
/// `torch._choose_qparams_per_tensor`), bit for bit:
///  1. reduce_range: qmin /= 2, qmax /= 2 (C++ integer division).
///  2. preserve_sparsity and min < 0 < max: symmetrise the range.
///  3. min = min(min, 0), max = max(max, 0); scale = (double(max) - min) / (qmax - qmin).
///  4. float(scale) == 0 or 1 / float(scale) == inf: scale = 0.1. Optional power of two.
///  5. scale < 6.1e-5: scale = 6.1e-5 and the range is widened to match.
///  6. The zero point comes from the end with the smaller "error", computed as
///     |q| - |r / scale| (sic: a minus), then is clamped and rounded half to even.
/// Throws config_error if min > max, NaN, or qmin >= qmax.
[[nodiscard]] inline tensor_qparams choose_quantization_params(
    float min, float max, std::int32_t qmin = 0, std::int32_t qmax = 255,
    bool preserve_sparsity = false, bool force_scale_power_of_two = false,
    bool reduce_range = false) {
  detail::check_min_max(min, max);
  if (reduce_range) {
    qmin /= 2;
    qmax /= 2;
  }
  validate(qrange{qmin, qmax});
  if (min < 0 && max > 0 && preserve_sparsity) {
    const int symmetric_qmin = -((qmax - qmin) / 2 + 1);
    const int symmetric_qmax = (qmax - qmin) / 2;
    const double max_scale = std::max(std::fabs(static_cast<double>(min) / symmetric_qmin),
                                      std::fabs(static_cast<double>(max) / symmetric_qmax));
    min = static_cast<float>(max_scale * symmetric_qmin);
    max = static_cast<float>(max_scale * symmetric_qmax);
  }
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  double scale = (static_cast<double>(max) - min) / (qmax - qmin);
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) {
    scale = 0.1;
  }
  if (force_scale_power_of_two) {
    if (scale < 1) {
      scale = 1.0 / static_cast<double>(std::int64_t{1} << static_cast<int>(
                                              std::floor(std::log(1.0 / scale) / std::log(2))));
    } else {
      scale = static_cast<double>(std::int64_t{1}
                                  << static_cast<int>(std::ceil(std::log(scale) / std::log(2))));
    }
  }
  if (scale < small_scale_threshold) {
    const auto org_scale = static_cast<float>(scale);
    scale = small_scale_threshold;
    if (min == 0.0f) {
      max = small_scale_threshold * static_cast<float>(qmax - qmin);
    } else if (max == 0.0f) {
      min = -small_scale_threshold * static_cast<float>(qmax - qmin);
    } else {
      const float amplifier = small_scale_threshold / org_scale;
      min *= amplifier;
      max *= amplifier;
    }
  }
  const double zp_from_min = qmin - min / scale;
  const double zp_from_max = qmax - max / scale;
  const double zp_from_min_error = std::abs(qmin) - std::abs(min / scale);
  const double zp_from_max_error = std::abs(qmax) - std::abs(max / scale);
  double initial_zp = zp_from_min_error < zp_from_max_error ? zp_from_min : zp_from_max;
  if (min < 0 && max > 0 && preserve_sparsity) {
    initial_zp = static_cast<double>(qmin + qmax) / 2;
  }
  std::int32_t zp = 0;
  if (initial_zp < qmin) {
    zp = qmin;
  } else if (initial_zp > qmax) {
    zp = qmax;
  } else {
    zp = static_cast<std::int32_t>(std::nearbyint(initial_zp));
  }
  return {scale, zp};
}

}  // namespace pytorch

namespace onnxruntime {

/// ONNX Runtime's `get_qmin_qmax_for_qType(type, reduce_range, symmetric)`:
///
/// | type   | normal         | symmetric      | reduced          |
/// |--------|----------------|----------------|------------------|
/// | int8   | [-128, 127]    | [-127, 127]    | [-64, 64] (sic)  |
/// | uint8  | [0, 255]       | [0, 254]       | [0, 127]         |
/// | int16  | [-32768, 32767]| [-32767, 32767]| [-16384, 16384]  |
/// | uint16 | [0, 65535]     | [0, 65534]     | [0, 32767]       |
/// | int4   | [-8, 7]        | [-8, 7]        | [-4, 3]          |
/// | uint4  | [0, 15]        | [0, 15]        | [0, 7]           |
/// reduce_range wins over symmetric, as in ORT. int32 throws config_error.
[[nodiscard]] inline qrange qrange_for(dtype t, bool reduce_range, bool symmetric) {
  switch (t) {
    case dtype::int8: return reduce_range ? qrange{-64, 64} : symmetric ? qrange{-127, 127} : qrange{-128, 127};
    case dtype::uint8: return reduce_range ? qrange{0, 127} : symmetric ? qrange{0, 254} : qrange{0, 255};
    case dtype::int16:
      return reduce_range ? qrange{-16384, 16384} : symmetric ? qrange{-32767, 32767} : qrange{-32768, 32767};
    case dtype::uint16: return reduce_range ? qrange{0, 32767} : symmetric ? qrange{0, 65534} : qrange{0, 65535};
    case dtype::int4: return reduce_range ? qrange{-4, 3} : qrange{-8, 7};
    case dtype::uint4: return reduce_range ? qrange{0, 7} : qrange{0, 15};
    case dtype::int32: break;
  }
  throw config_error("ONNX Runtime quantizes to int4, uint4, int8, uint8, int16 or uint16, not " +
                     std::string(to_string(t)));
}

/// ONNX Runtime's `compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, min_real_range)`
/// on float32 inputs, bit for bit:
///   rmin = min(rmin, 0), rmax = max(rmax, 0)                         (float32)
///   min_real_range: rmax = max(rmax, rmin + min_real_range)          (float32)
///   symmetric: a = max(|rmin|, |rmax|); rmin = -a, rmax = a
///   scale = double(rmax - rmin) / (double(qmax) - double(qmin))      (float64)
///   scale < FLT_MIN (float32 tiny): scale = 1, zero point 0
///   else zero point = round_half_even((qmin + qmax) / 2.0) if symmetric,
///        round_half_even(qmin - rmin / scale) otherwise (float64); scale -> float32.
/// Symmetric zero points: 0 for int8/int16, and on ORT's symmetric ranges (qrange_for
/// with symmetric) 127 for uint8 [0, 254] and 32767 for uint16 [0, 65534]; the 128 /
/// 32768 of ORT's own comment need the full ranges [0, 255] / [0, 65535].
/// Throws config_error unless qmin <= 0 <= qmax, or for NaN / reversed inputs.
[[nodiscard]] inline affine_params compute_scale_zp(float rmin, float rmax, qrange r,
                                                    bool symmetric,
                                                    std::optional<float> min_real_range = {}) {
  if (r.qmin > 0 || r.qmax < 0) {
    throw config_error("qmin and qmax must satisfy qmin <= 0 <= qmax, got [" +
                       std::to_string(r.qmin) + ", " + std::to_string(r.qmax) + "]");
  }
  detail::check_min_max(rmin, rmax);
  rmin = std::min(rmin, 0.0f);
  rmax = std::max(rmax, 0.0f);
  if (min_real_range) rmax = std::max(rmax, rmin + *min_real_range);
  if (symmetric) {
    const float a = std::max(std::fabs(rmin), std::fabs(rmax));
    rmin = -a;
    rmax = a;
  }
  const double scale = static_cast<double>(rmax - rmin) /
                       (static_cast<double>(r.qmax) - static_cast<double>(r.qmin));
  if (scale < static_cast<double>(std::numeric_limits<float>::min())) return {1.0f, 0};
  const double z = symmetric ? std::nearbyint((static_cast<double>(r.qmin) + r.qmax) / 2.0)
                             : std::nearbyint(r.qmin - static_cast<double>(rmin) / scale);
  return {static_cast<float>(scale), saturate_to_int(z, r.qmin, r.qmax, r.qmin)};
}

}  // namespace onnxruntime

}  // namespace qprune::quant

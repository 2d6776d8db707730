// Quantize and dequantize float tensors with given parameters (params.hpp):
// per tensor, per channel along any axis, and per group along the reduction
// axis of a [rows, cols] weight; qprune's own formula and the bit-exact
// compatibility modes of PyTorch 1.13, ONNX Runtime (QuantizeLinear /
// DequantizeLinear) and the TFLite int8 spec. Formulas, tie rules and sources:
// doc/quantization.md, "Quantize and dequantize".
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

/// The integer types a quantized tensor is stored in, one value per element
/// (4-bit values are packed two per byte by int4.hpp).
template <class T>
concept quantized_integer = std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t> ||
                            std::same_as<T, std::int16_t> || std::same_as<T, std::uint16_t> ||
                            std::same_as<T, std::int32_t>;

/// The dtype tag of a storage type: std::int8_t -> dtype::int8, and so on.
template <quantized_integer T>
inline constexpr dtype dtype_of = std::same_as<T, std::int8_t>     ? dtype::int8
                                  : std::same_as<T, std::uint8_t>  ? dtype::uint8
                                  : std::same_as<T, std::int16_t>  ? dtype::int16
                                  : std::same_as<T, std::uint16_t> ? dtype::uint16
                                                                   : dtype::int32;

/// Throws config_error unless `r` is non-empty (qmin < qmax) and lies inside
/// the range of the storage type `t` (int4 [-8, 7], uint8 [0, 255], ...).
inline void validate_range(qrange r, dtype t) {
  validate(r);
  const qrange f = full_range(t);
  if (r.qmin < f.qmin || r.qmax > f.qmax) {
    throw config_error("quantization range [" + std::to_string(r.qmin) + ", " +
                       std::to_string(r.qmax) + "] does not fit " + std::string(to_string(t)) +
                       " (expected a range inside [" + std::to_string(f.qmin) + ", " +
                       std::to_string(f.qmax) + "])");
  }
}

namespace detail {

inline std::string channel_prefix(index_t c) {
  return c < 0 ? std::string() : "channel " + std::to_string(c) + ": ";
}

inline void check_scale(float s, index_t c = -1) {
  if (!(s > 0.0f) || !std::isfinite(s)) {
    throw config_error(channel_prefix(c) + "scale " + std::to_string(s) +
                       " is invalid (expected a finite value > 0)");
  }
}

inline void check_zero_point(std::int32_t zp, qrange r, index_t c = -1) {
  if (zp < r.qmin || zp > r.qmax) {
    throw config_error(channel_prefix(c) + "zero point " + std::to_string(zp) +
                       " is outside the quantization range [" + std::to_string(r.qmin) + ", " +
                       std::to_string(r.qmax) + "]");
  }
}

template <std::size_t R>
std::string extents_string(const extents<R>& e) {
  std::string s = "[";
  for (std::size_t i = 0; i < R; ++i) {
    if (i != 0) s += ", ";
    s += std::to_string(e.extent(i));
  }
  return s + "]";
}

template <std::size_t R>
void check_same_extents(const extents<R>& in, const extents<R>& out) {
  if (!(in == out)) {
    throw shape_error("input extents " + extents_string(in) + " do not match output extents " +
                      extents_string(out));
  }
}

/// A run of `count` consecutive elements starting at `begin`; element
/// begin + k uses parameter entry `param + k * param_stride`.
struct param_run {
  index_t begin;
  index_t count;
  index_t param;
  index_t param_stride;
};

/// Calls f(param_run) for the runs of a per-channel layout (row-major, `axis`).
/// Precondition: 0 <= axis < R.
template <std::size_t R, class F>
void for_each_channel_run(const extents<R>& e, index_t axis, F&& f) {
  const auto a = static_cast<std::size_t>(axis);
  index_t outer = 1;
  index_t inner = 1;
  for (std::size_t r = 0; r < a; ++r) outer *= e.extent(r);
  for (std::size_t r = a + 1; r < R; ++r) inner *= e.extent(r);
  const index_t channels = e.extent(a);
  if (inner == 1) {
    // The channel axis is the last non-trivial one: one run per outer index,
    // parameters advancing with the element.
    for (index_t o = 0; o < outer; ++o) f(param_run{o * channels, channels, 0, 1});
    return;
  }
  for (index_t o = 0; o < outer; ++o) {
    for (index_t c = 0; c < channels; ++c) f(param_run{(o * channels + c) * inner, inner, c, 0});
  }
}

/// Number of groups along an axis of length n: ceil(n / group_size).
constexpr index_t group_count(index_t n, index_t group_size) noexcept {
  return n / group_size + (n % group_size != 0 ? 1 : 0);
}

/// Calls f(param_run) for a [rows, cols] row-major tensor grouped along `axis`:
/// axis 1: group g of row r uses entry r * G + g (parameters shaped [rows, G]);
/// axis 0: row r, column c uses entry (r / group_size) * cols + c ([G, cols]).
template <class F>
void for_each_group_run(index_t rows, index_t cols, index_t axis, index_t group_size, F&& f) {
  if (axis == 1) {
    const index_t groups = group_count(cols, group_size);
    for (index_t r = 0; r < rows; ++r) {
      for (index_t g = 0; g < groups; ++g) {
        const index_t start = g * group_size;
        const index_t len = cols - start < group_size ? cols - start : group_size;
        f(param_run{r * cols + start, len, r * groups + g, 0});
      }
    }
  } else {
    for (index_t r = 0; r < rows; ++r) f(param_run{r * cols, cols, (r / group_size) * cols, 1});
  }
}

template <std::size_t R>
void check_channel_params(const per_channel_params& p, const extents<R>& e, qrange r,
                          bool check_zero_points_in_range) {
  if (p.axis < 0 || p.axis >= static_cast<index_t>(R)) {
    throw config_error("channel axis " + std::to_string(p.axis) + " is out of range (expected 0.." +
                       std::to_string(R - 1) + " for a rank-" + std::to_string(R) + " tensor)");
  }
  if (p.zero_points.size() != p.scales.size()) {
    throw shape_error("per-channel parameters have " + std::to_string(p.scales.size()) +
                      " scales but " + std::to_string(p.zero_points.size()) +
                      " zero points (expected the same count)");
  }
  const index_t extent = e.extent(static_cast<std::size_t>(p.axis));
  if (p.channels() != extent) {
    throw shape_error("per-channel parameters have " + std::to_string(p.channels()) +
                      " channels but extent " + std::to_string(extent) + " along axis " +
                      std::to_string(p.axis) + " (expected one scale per channel)");
  }
  for (index_t c = 0; c < p.channels(); ++c) {
    check_scale(p.scales[static_cast<std::size_t>(c)], c);
    if (check_zero_points_in_range) check_zero_point(p.zero_points[static_cast<std::size_t>(c)], r, c);
  }
}

inline void check_group_params(const per_group_params& p, index_t rows, index_t cols, qrange r,
                               bool check_zero_points_in_range) {
  if (p.axis != 0 && p.axis != 1) {
    throw config_error("group axis " + std::to_string(p.axis) +
                       " is out of range (expected 0 or 1 for a [rows, cols] tensor)");
  }
  validate_group_size(p.group_size);
  if (p.zero_points.size() != p.scales.size()) {
    throw shape_error("per-group parameters have " + std::to_string(p.scales.size()) +
                      " scales but " + std::to_string(p.zero_points.size()) +
                      " zero points (expected the same count)");
  }
  const index_t along = p.axis == 1 ? cols : rows;
  const index_t across = p.axis == 1 ? rows : cols;
  const index_t groups = group_count(along, p.group_size);
  if (static_cast<index_t>(p.scales.size()) != groups * across) {
    throw shape_error("per-group parameters have " + std::to_string(p.scales.size()) +
                      " scales but a [" + std::to_string(rows) + ", " + std::to_string(cols) +
                      "] tensor grouped by " + std::to_string(p.group_size) + " along axis " +
                      std::to_string(p.axis) + " needs " + std::to_string(groups * across));
  }
  for (std::size_t i = 0; i < p.scales.size(); ++i) {
    check_scale(p.scales[i], static_cast<index_t>(i));
    if (check_zero_points_in_range) check_zero_point(p.zero_points[i], r, static_cast<index_t>(i));
  }
}

template <class T>
void check_zero_point_fits(std::int32_t zp, index_t c = -1) {
  check_zero_point(zp, qrange{static_cast<std::int32_t>(std::numeric_limits<T>::min()),
                              static_cast<std::int32_t>(std::numeric_limits<T>::max())},
                   c);
}

/// Applies `element(x, q, scale, zp)` to every element of a run.
template <class In, class Out, class Element>
void apply_run(const param_run& run, In* in, Out* out, const float* scales,
               const std::int32_t* zps, Element&& element) noexcept {
  In* x = in + run.begin;
  Out* y = out + run.begin;
  if (run.param_stride == 0) {
    const float s = scales[run.param];
    const std::int32_t z = zps[run.param];
    for (index_t k = 0; k < run.count; ++k) element(x[k], y[k], s, z);
  } else {
    for (index_t k = 0; k < run.count; ++k) {
      const index_t p = run.param + k * run.param_stride;
      element(x[k], y[k], scales[p], zps[p]);
    }
  }
}

}  // namespace detail

/// Throws config_error unless `p` can be used on range `r`: scale finite and
/// > 0, zero point inside [r.qmin, r.qmax].
inline void validate(const affine_params& p, qrange r) {
  detail::check_scale(p.scale);
  detail::check_zero_point(p.zero_point, r);
}

/// round(x / scale) + zero_point before clamping, in double precision:
///   x / scale in float32 (one rounding), rounded to an integral float by `mode`,
///   then the zero point added exactly in double. NaN x gives NaN; +-inf stay
///   infinite. A value is *saturated* (clipped) when this lies outside [qmin, qmax].
[[nodiscard]] inline double unclamped_code(float x, float scale, std::int32_t zero_point,
                                           rounding mode) noexcept {
  return static_cast<double>(round_to_integral(x / scale, mode)) +
         static_cast<double>(zero_point);
}

/// qprune's quantizer for one value:
///   q = clamp( round(x / scale) + zero_point, qmin, qmax )
/// x / scale is a float32 division (not a multiplication by a reciprocal);
/// `mode` decides ties; NaN -> zero_point (real 0); +-inf saturate to qmax / qmin.
/// Preconditions (unchecked): scale finite > 0, qmin <= zero_point <= qmax.
[[nodiscard]] inline std::int32_t quantize_value(float x, affine_params p, qrange r,
                                                 rounding mode) noexcept {
  return saturate_to_int(unclamped_code(x, p.scale, p.zero_point, mode), r.qmin, r.qmax,
                         p.zero_point);
}

/// qprune's dequantizer for one value: x' = scale * float(q - zero_point), the
/// difference taken exactly in 64-bit integers, then one float32 product (exact
/// conversion while |q - zero_point| < 2^24, which holds for every type up to 16 bits).
[[nodiscard]] inline float dequantize_value(std::int32_t q, affine_params p) noexcept {
  return p.scale * static_cast<float>(static_cast<std::int64_t>(q) - p.zero_point);
}

namespace detail {
template <class T>
void quantize_runs_kernel(const float* in, T* out, const float* scales, const std::int32_t* zps,
                          qrange r, rounding mode, const param_run& run) noexcept {
  apply_run(run, in, out, scales, zps,
            [r, mode](float x, T& q, float s, std::int32_t z) noexcept {
              q = static_cast<T>(quantize_value(x, affine_params{s, z}, r, mode));
            });
}

template <class T>
void dequantize_runs_kernel(const T* in, float* out, const float* scales,
                            const std::int32_t* zps, const param_run& run) noexcept {
  apply_run(run, in, out, scales, zps, [](T q, float& x, float s, std::int32_t z) noexcept {
    x = dequantize_value(static_cast<std::int32_t>(q), affine_params{s, z});
  });
}
}  // namespace detail

// ---------------------------------------------------------------------------
// qprune's quantizer: per tensor, per channel, per group
// ---------------------------------------------------------------------------

/// Quantizes a row-major tensor with one (scale, zero point):
///   q = clamp( round(x / scale) + zero_point, qmin, qmax ),  r = [qmin, qmax]
/// Rounding: `mode` (qprune's default half_to_even: 2.5 -> 2, -2.5 -> -2).
/// Saturation: values below / above the range clamp to qmin / qmax, +-inf too.
/// NaN -> zero_point, so NaN dequantizes to 0. Inverse: dequantize(); inside the
/// range |x - x'| <= scale/2 up to float rounding (|x| + |x'|) * 2^-24.
/// Throws shape_error if the extents differ, config_error if `r` is empty or does
/// not fit T, the scale is not finite and > 0, or the zero point is outside `r`.
template <quantized_integer T, std::size_t R>
void quantize(tensor_view<const float, R> in, tensor_view<T, R> out, const affine_params& p,
              qrange r, rounding mode = rounding::half_to_even) {
  detail::check_same_extents(in.extents(), out.extents());
  validate_range(r, dtype_of<T>);
  validate(p, r);
  detail::quantize_runs_kernel(in.data_handle(), out.data_handle(), &p.scale, &p.zero_point, r,
                               mode, detail::param_run{0, in.size(), 0, 0});
}

/// Quantizes per channel: element e of slice c along `p.axis` uses
/// (p.scales[c], p.zero_points[c]) in the per-tensor formula above. Works for any
/// axis of a row-major tensor (axis 0: output channels of [out, in] / OIHW;
/// axis 3: the last axis of a 4-D NHWC / HWIO tensor).
/// Throws config_error for an axis outside [0, R), a bad scale or zero point (the
/// message names the channel); shape_error if the extents differ or the number of
/// scales / zero points is not extent(axis).
template <quantized_integer T, std::size_t R>
void quantize(tensor_view<const float, R> in, tensor_view<T, R> out, const per_channel_params& p,
              qrange r, rounding mode = rounding::half_to_even) {
  detail::check_same_extents(in.extents(), out.extents());
  validate_range(r, dtype_of<T>);
  detail::check_channel_params(p, in.extents(), r, true);
  detail::for_each_channel_run(in.extents(), p.axis, [&](const detail::param_run& run) {
    detail::quantize_runs_kernel(in.data_handle(), out.data_handle(), p.scales.data(),
                                 p.zero_points.data(), r, mode, run);
  });
}

/// Quantizes a [rows, cols] tensor per group: `p.group_size` consecutive values
/// along `p.axis` share a (scale, zero point); the last group of a line may be
/// partial. Axis 1 (groups along a row, the reduction axis of an [out, in]
/// weight): group g of row r uses entry r * G + g, G = ceil(cols / group_size).
/// Axis 0: rows are grouped; entry g * cols + c serves column c of group g.
/// (ONNX blocked quantization's layout: the parameter tensor has the weight's
/// shape with the grouped extent divided by the group size, rounded up.)
/// Formula per element as for per tensor.
/// Throws config_error for an axis other than 0 or 1, a group size that is not a
/// power of two in [16, 256], a bad scale or zero point; shape_error for
/// mismatched extents or a parameter count other than G * (other extent).
template <quantized_integer T>
void quantize(tensor_view<const float, 2> in, tensor_view<T, 2> out, const per_group_params& p,
              qrange r, rounding mode = rounding::half_to_even) {
  detail::check_same_extents(in.extents(), out.extents());
  validate_range(r, dtype_of<T>);
  detail::check_group_params(p, in.extent(0), in.extent(1), r, true);
  detail::for_each_group_run(in.extent(0), in.extent(1), p.axis, p.group_size,
                             [&](const detail::param_run& run) {
                               detail::quantize_runs_kernel(in.data_handle(), out.data_handle(),
                                                            p.scales.data(), p.zero_points.data(),
                                                            r, mode, run);
                             });
}

/// Dequantizes per tensor: x' = scale * float(q - zero_point) (exact integer
/// difference, one float32 product). Throws shape_error if the extents differ,
/// config_error if the scale is not finite and > 0 or the zero point does not fit T.
template <quantized_integer T, std::size_t R>
void dequantize(tensor_view<const T, R> in, tensor_view<float, R> out, const affine_params& p) {
  detail::check_same_extents(in.extents(), out.extents());
  detail::check_scale(p.scale);
  detail::check_zero_point_fits<T>(p.zero_point);
  detail::dequantize_runs_kernel(in.data_handle(), out.data_handle(), &p.scale, &p.zero_point,
                                 detail::param_run{0, in.size(), 0, 0});
}

/// Dequantizes per channel along `p.axis` (formula as per tensor, with channel c's
/// parameters). Errors as for quantize() per channel.
template <quantized_integer T, std::size_t R>
void dequantize(tensor_view<const T, R> in, tensor_view<float, R> out,
                const per_channel_params& p) {
  detail::check_same_extents(in.extents(), out.extents());
  detail::check_channel_params(p, in.extents(), qrange{}, false);
  for (index_t c = 0; c < p.channels(); ++c) {
    detail::check_zero_point_fits<T>(p.zero_points[static_cast<std::size_t>(c)], c);
  }
  detail::for_each_channel_run(in.extents(), p.axis, [&](const detail::param_run& run) {
    detail::dequantize_runs_kernel(in.data_handle(), out.data_handle(), p.scales.data(),
                                   p.zero_points.data(), run);
  });
}

/// Dequantizes a [rows, cols] tensor per group (layout as for quantize() per
/// group). Errors as for quantize() per group.
template <quantized_integer T>
void dequantize(tensor_view<const T, 2> in, tensor_view<float, 2> out, const per_group_params& p) {
  detail::check_same_extents(in.extents(), out.extents());
  detail::check_group_params(p, in.extent(0), in.extent(1), qrange{}, false);
  for (std::size_t i = 0; i < p.zero_points.size(); ++i) {
    detail::check_zero_point_fits<T>(p.zero_points[i], static_cast<index_t>(i));
  }
  detail::for_each_group_run(in.extent(0), in.extent(1), p.axis, p.group_size,
                             [&](const detail::param_run& run) {
                               detail::dequantize_runs_kernel(in.data_handle(), out.data_handle(),
                                                              p.scales.data(),
                                                              p.zero_points.data(), run);
                             });
}

// ---------------------------------------------------------------------------
// PyTorch 1.13 compatibility
// ---------------------------------------------------------------------------
namespace pytorch {

/// The storage types of torch.qint8, torch.quint8 and torch.qint32.
template <class T>
concept torch_quantized_type =
    std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t> || std::same_as<T, std::int32_t>;

/// torch's `quantize_val` for one value, bit for bit (torch 1.13 on x86-64, the
/// ATen kernel used when torch is built without FBGEMM; vectors in
/// tests/data/quant/quantize_per_tensor.json):
///   inv = 1.0f / scale                              (float32 reciprocal)
///   t   = float(zero_point) + nearbyint(x * inv)    (float32; half to even)
///   q   = clamp( (int64) t, qmin(T), qmax(T) )
/// Quirks kept: the product by the reciprocal can round differently from x / scale;
/// the zero point is added in float32 (visible for qint32 above 2^24); and when
/// |t| >= 2^63, +-inf or NaN, x86's float -> int64 conversion yields INT64_MIN,
/// so torch returns **qmin** even for huge positive x or +inf (and for NaN).
/// Preconditions (unchecked): scale finite > 0.
template <torch_quantized_type T>
[[nodiscard]] T quantize_val(float x, float scale, std::int32_t zero_point) noexcept {
  const float inv = 1.0f / scale;
  const float t = static_cast<float>(zero_point) + std::nearbyint(x * inv);
  constexpr auto qmin = static_cast<std::int64_t>(std::numeric_limits<T>::min());
  constexpr auto qmax = static_cast<std::int64_t>(std::numeric_limits<T>::max());
  // cvttss2si returns the "integer indefinite" INT64_MIN for out-of-range and NaN.
  const std::int64_t v = std::fabs(t) < 0x1p63f ? static_cast<std::int64_t>(t)
                                                : std::numeric_limits<std::int64_t>::min();
  return static_cast<T>(v < qmin ? qmin : (v > qmax ? qmax : v));
}

/// `torch.quantize_per_tensor(x, scale, zero_point, dtype)` followed by
/// `int_repr()`, bit for bit (formula: quantize_val). The scale is the float32
/// torch's kernel uses (`float(scale)` of the Python double).
/// Throws shape_error for mismatched extents; config_error for a scale that is not
/// finite and > 0 (stricter than torch) or a zero point outside T's range (as torch).
template <torch_quantized_type T, std::size_t R>
void quantize_per_tensor(tensor_view<const float, R> in, tensor_view<T, R> out,
                         const affine_params& p) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  quant::detail::check_scale(p.scale);
  quant::detail::check_zero_point_fits<T>(p.zero_point);
  const float* x = in.data_handle();
  T* q = out.data_handle();
  for (index_t i = 0; i < in.size(); ++i) q[i] = quantize_val<T>(x[i], p.scale, p.zero_point);
}

/// `torch.quantize_per_channel(x, scales, zero_points, axis, dtype)` then
/// `int_repr()`, bit for bit: quantize_val with channel c's float32 scale
/// (torch narrows its float64 scales to float for quantizing, so pass
/// `static_cast<float>(scale_c)`). Errors as for quantize_per_tensor, plus the
/// channel checks of quant::quantize per channel.
template <torch_quantized_type T, std::size_t R>
void quantize_per_channel(tensor_view<const float, R> in, tensor_view<T, R> out,
                          const per_channel_params& p) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  quant::detail::check_channel_params(p, in.extents(), qrange{}, false);
  for (index_t c = 0; c < p.channels(); ++c) {
    quant::detail::check_zero_point_fits<T>(p.zero_points[static_cast<std::size_t>(c)], c);
  }
  quant::detail::for_each_channel_run(in.extents(), p.axis, [&](const quant::detail::param_run& run) {
    quant::detail::apply_run(run, in.data_handle(), out.data_handle(), p.scales.data(),
                             p.zero_points.data(),
                             [](float x, T& q, float s, std::int32_t z) noexcept {
                               q = quantize_val<T>(x, s, z);
                             });
  });
}

/// `dequantize()` of a per-tensor quantized torch tensor, bit for bit:
///   x' = float(scale) * float( (int32)(q - zero_point) )
/// For qint32 the subtraction wraps modulo 2^32 as torch's int32 arithmetic does
/// (q = -2^31, zero_point = 7 gives +2147483641 before the product).
/// Throws shape_error / config_error as quantize_per_tensor.
template <torch_quantized_type T, std::size_t R>
void dequantize_per_tensor(tensor_view<const T, R> in, tensor_view<float, R> out,
                           const affine_params& p) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  quant::detail::check_scale(p.scale);
  quant::detail::check_zero_point_fits<T>(p.zero_point);
  const T* q = in.data_handle();
  float* x = out.data_handle();
  const auto zp = static_cast<std::uint32_t>(p.zero_point);
  for (index_t i = 0; i < in.size(); ++i) {
    // Modular subtraction in uint32, converted back (well defined since C++20).
    const auto d = static_cast<std::int32_t>(static_cast<std::uint32_t>(q[i]) - zp);
    x[i] = p.scale * static_cast<float>(d);
  }
}

/// `dequantize()` of a per-channel quantized torch tensor, bit for bit:
///   x' = (float)( (double)(float(q) - float(zero_point_c)) * scale_c )
/// with the float64 scales torch stores (`q_per_channel_scales()`); unlike per
/// tensor, the product is taken in double. Throws config_error for an axis
/// outside [0, R), a scale that is not finite and > 0, or a zero point outside
/// T's range; shape_error for mismatched extents or counts other than extent(axis).
template <torch_quantized_type T, std::size_t R>
void dequantize_per_channel(tensor_view<const T, R> in, tensor_view<float, R> out,
                            std::span<const double> scales,
                            std::span<const std::int32_t> zero_points, index_t axis) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  // Reuse the float checks on the narrowed scales for axis and counts, then check
  // the doubles themselves.
  per_channel_params shape_only{std::vector<float>(scales.size(), 1.0f),
                                std::vector<std::int32_t>(zero_points.begin(), zero_points.end()),
                                axis};
  quant::detail::check_channel_params(shape_only, in.extents(), qrange{}, false);
  for (std::size_t c = 0; c < scales.size(); ++c) {
    if (!(scales[c] > 0.0) || !std::isfinite(scales[c])) {
      throw config_error("channel " + std::to_string(c) + ": scale " + std::to_string(scales[c]) +
                         " is invalid (expected a finite value > 0)");
    }
    quant::detail::check_zero_point_fits<T>(zero_points[c], static_cast<index_t>(c));
  }
  const T* qd = in.data_handle();
  float* xd = out.data_handle();
  quant::detail::for_each_channel_run(in.extents(), axis, [&](const quant::detail::param_run& run) {
    for (index_t k = 0; k < run.count; ++k) {
      const auto c = static_cast<std::size_t>(run.param + k * run.param_stride);
      const float diff = static_cast<float>(qd[run.begin + k]) - static_cast<float>(zero_points[c]);
      xd[run.begin + k] = static_cast<float>(static_cast<double>(diff) * scales[c]);
    }
  });
}

/// Same, with float32 scales widened to double: bit for bit torch's result when
/// the per-channel scales tensor holds float32 values (observers produce float32
/// scales). For scales that only exist as doubles, use the std::span<const double>
/// overload.
template <torch_quantized_type T, std::size_t R>
void dequantize_per_channel(tensor_view<const T, R> in, tensor_view<float, R> out,
                            const per_channel_params& p) {
  std::vector<double> scales(p.scales.begin(), p.scales.end());
  dequantize_per_channel(in, out, std::span<const double>(scales),
                         std::span<const std::int32_t>(p.zero_points), p.axis);
}

}  // namespace pytorch

// ---------------------------------------------------------------------------
// ONNX Runtime compatibility (QuantizeLinear / DequantizeLinear)
// ---------------------------------------------------------------------------
namespace onnxruntime {

/// The 8- and 16-bit output types of QuantizeLinear (4-bit: int4.hpp).
template <class T>
concept ort_quantized_type = std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t> ||
                             std::same_as<T, std::int16_t> || std::same_as<T, std::uint16_t>;

/// ONNX QuantizeLinear for one value as ONNX Runtime's MLAS kernel computes it:
///   q = saturate<T>( round_half_even(x / scale) + zero_point )
/// float32 division, clamped to T's whole range (MLAS clamps x / scale to
/// [qmin - zp, qmax - zp] before rounding, which gives the same integers). NaN ->
/// qmin(T): MINPS/MAXPS (x86) and FMAXNM (Arm) return the clamp bound for a NaN.
/// Preconditions (unchecked): scale finite > 0, zero point inside T.
template <ort_quantized_type T>
[[nodiscard]] T quantize_linear_value(float x, float scale, std::int32_t zero_point) noexcept {
  constexpr auto qmin = static_cast<std::int32_t>(std::numeric_limits<T>::min());
  constexpr auto qmax = static_cast<std::int32_t>(std::numeric_limits<T>::max());
  if (std::isnan(x)) return static_cast<T>(qmin);
  return static_cast<T>(quantize_value(x, affine_params{scale, zero_point}, qrange{qmin, qmax},
                                       rounding::half_to_even));
}

/// QuantizeLinear with a scalar scale and zero point (per tensor), element by
/// element as quantize_linear_value. Throws shape_error for mismatched extents,
/// config_error for a scale that is not finite and > 0 or a zero point outside T.
template <ort_quantized_type T, std::size_t R>
void quantize_linear(tensor_view<const float, R> in, tensor_view<T, R> out, const affine_params& p) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  quant::detail::check_scale(p.scale);
  quant::detail::check_zero_point_fits<T>(p.zero_point);
  const float* x = in.data_handle();
  T* q = out.data_handle();
  for (index_t i = 0; i < in.size(); ++i) q[i] = quantize_linear_value<T>(x[i], p.scale, p.zero_point);
}

/// QuantizeLinear per axis (1-D scale and zero point along `p.axis`).
/// Errors as quant::quantize per channel, with T's whole range.
template <ort_quantized_type T, std::size_t R>
void quantize_linear(tensor_view<const float, R> in, tensor_view<T, R> out,
                     const per_channel_params& p) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  quant::detail::check_channel_params(p, in.extents(), full_range(dtype_of<T>), true);
  quant::detail::for_each_channel_run(in.extents(), p.axis, [&](const quant::detail::param_run& run) {
    quant::detail::apply_run(run, in.data_handle(), out.data_handle(), p.scales.data(),
                             p.zero_points.data(),
                             [](float x, T& q, float s, std::int32_t z) noexcept {
                               q = quantize_linear_value<T>(x, s, z);
                             });
  });
}

/// QuantizeLinear with blocked parameters (opset 21 `block_size`) on a [rows, cols]
/// tensor; layout of the parameters as quant::quantize per group. qprune only
/// accepts group sizes that are powers of two in [16, 256].
template <ort_quantized_type T>
void quantize_linear(tensor_view<const float, 2> in, tensor_view<T, 2> out,
                     const per_group_params& p) {
  quant::detail::check_same_extents(in.extents(), out.extents());
  quant::detail::check_group_params(p, in.extent(0), in.extent(1), full_range(dtype_of<T>), true);
  quant::detail::for_each_group_run(
      in.extent(0), in.extent(1), p.axis, p.group_size, [&](const quant::detail::param_run& run) {
        quant::detail::apply_run(run, in.data_handle(), out.data_handle(), p.scales.data(),
                                 p.zero_points.data(),
                                 [](float x, T& q, float s, std::int32_t z) noexcept {
                                   q = quantize_linear_value<T>(x, s, z);
                                 });
      });
}

/// ONNX DequantizeLinear as ONNX Runtime computes it: x' = float(int32(q) - zp) * scale
/// in float32; identical to quant::dequantize (the same three overloads apply).
/// Throws as quant::dequantize.
template <ort_quantized_type T, std::size_t R>
void dequantize_linear(tensor_view<const T, R> in, tensor_view<float, R> out,
                       const affine_params& p) {
  quant::dequantize(in, out, p);
}

/// DequantizeLinear per axis.
template <ort_quantized_type T, std::size_t R>
void dequantize_linear(tensor_view<const T, R> in, tensor_view<float, R> out,
                       const per_channel_params& p) {
  quant::dequantize(in, out, p);
}

/// DequantizeLinear with blocked parameters on a [rows, cols] tensor.
template <ort_quantized_type T>
void dequantize_linear(tensor_view<const T, 2> in, tensor_view<float, 2> out,
                       const per_group_params& p) {
  quant::dequantize(in, out, p);
}

}  // namespace onnxruntime

// ---------------------------------------------------------------------------
// TFLite int8 spec helpers
// ---------------------------------------------------------------------------
namespace tflite {

/// TFLite's symmetric int8 range for weights, [-127, 127] (zero point 0).
inline constexpr qrange weight_range{-127, 127};

/// Quantizes weights to int8, symmetric, per channel along `axis` (TFLite: axis 0
/// for CONV_2D / FULLY_CONNECTED [out, ...], axis 3 for DEPTHWISE_CONV_2D), as
/// TFLite's reference `PortableSymmetricQuantizeFloats` does for each channel:
///   range_c = max_e |w_c,e|
///   scale_c = range_c / 127.0f                  (float32)
///   inv_c   = 127.0f / range_c                  (float32)
///   q       = clamp( round_half_away(w * inv_c), -127, 127 ),  zero point 0
/// Ties round away from zero (std::round, TfLiteRound): the product by the
/// reciprocal and the tie rule both differ from qprune's default quantizer.
/// An all-zero channel gets scale 1 and codes 0, as the runtime helper does (the
/// converter's legacy per-channel path writes scale 0 there; the codes agree).
/// Returns the parameters (zero points 0, `axis`).
/// Throws shape_error for mismatched extents, config_error for an axis outside
/// [0, R) or a weight that is NaN or infinite.
template <std::size_t R>
[[nodiscard]] per_channel_params quantize_weights_per_channel(tensor_view<const float, R> w,
                                                              tensor_view<std::int8_t, R> out,
                                                              index_t axis) {
  quant::detail::check_same_extents(w.extents(), out.extents());
  if (axis < 0 || axis >= static_cast<index_t>(R)) {
    throw config_error("channel axis " + std::to_string(axis) + " is out of range (expected 0.." +
                       std::to_string(R - 1) + " for a rank-" + std::to_string(R) + " tensor)");
  }
  const index_t channels = w.extent(static_cast<std::size_t>(axis));
  std::vector<float> range(static_cast<std::size_t>(channels), 0.0f);
  const float* x = w.data_handle();
  for (index_t i = 0; i < w.size(); ++i) {
    if (!std::isfinite(x[i])) {
      throw config_error("weight " + std::to_string(i) + " is " + std::to_string(x[i]) +
                         " (expected finite weights)");
    }
  }
  quant::detail::for_each_channel_run(w.extents(), axis, [&](const quant::detail::param_run& run) {
    for (index_t k = 0; k < run.count; ++k) {
      float& m = range[static_cast<std::size_t>(run.param + k * run.param_stride)];
      const float a = std::fabs(x[run.begin + k]);
      if (a > m) m = a;
    }
  });
  per_channel_params p{std::vector<float>(static_cast<std::size_t>(channels), 1.0f),
                       std::vector<std::int32_t>(static_cast<std::size_t>(channels), 0), axis};
  std::vector<float> inv(static_cast<std::size_t>(channels), 0.0f);
  for (std::size_t c = 0; c < range.size(); ++c) {
    if (range[c] != 0.0f) {
      p.scales[c] = range[c] / 127.0f;
      inv[c] = 127.0f / range[c];
    }
  }
  std::int8_t* q = out.data_handle();
  quant::detail::for_each_channel_run(w.extents(), axis, [&](const quant::detail::param_run& run) {
    for (index_t k = 0; k < run.count; ++k) {
      const float i_c = inv[static_cast<std::size_t>(run.param + k * run.param_stride)];
      const float v = round_to_integral(x[run.begin + k] * i_c, rounding::half_away_from_zero);
      q[run.begin + k] =
          static_cast<std::int8_t>(saturate_to_int(v, weight_range.qmin, weight_range.qmax, 0));
    }
  });
  return p;
}

/// Quantizes a bias to int32 with scale s_in * s_w[c] and zero point 0, as
/// TFLite's `SymmetricBiasQuantize` (per channel) / per-layer variant does:
///   scale_c = input_scale * weight_scales[c]                (float32 product)
///   inv_c   = float(1.0 / double(scale_c))
///   q       = clamp( round_half_away(b_c * inv_c), -(2^31 - 1), 2^31 - 1 )
/// (the range is symmetric: TFLite clamps to +-INT32_MAX). `weight_scales` holds
/// one scale per bias element, or a single per-tensor weight scale.
/// Returns the bias parameters (one scale per element, zero points 0, axis 0).
/// Throws shape_error if `out` or `weight_scales` has the wrong length, config_error
/// if a scale or a product is not finite and > 0, or a bias value is NaN.
[[nodiscard]] inline per_channel_params quantize_bias(std::span<const float> bias,
                                                      float input_scale,
                                                      std::span<const float> weight_scales,
                                                      std::span<std::int32_t> out) {
  if (out.size() != bias.size()) {
    throw shape_error("bias has " + std::to_string(bias.size()) + " values but the output holds " +
                      std::to_string(out.size()));
  }
  if (weight_scales.size() != 1 && weight_scales.size() != bias.size()) {
    throw shape_error("bias has " + std::to_string(bias.size()) + " values but there are " +
                      std::to_string(weight_scales.size()) +
                      " weight scales (expected 1 or one per bias value)");
  }
  quant::detail::check_scale(input_scale);
  per_channel_params p{std::vector<float>(bias.size()), std::vector<std::int32_t>(bias.size(), 0),
                       0};
  for (std::size_t c = 0; c < bias.size(); ++c) {
    const float sw = weight_scales[weight_scales.size() == 1 ? 0 : c];
    quant::detail::check_scale(sw, static_cast<index_t>(c));
    p.scales[c] = input_scale * sw;
    quant::detail::check_scale(p.scales[c], static_cast<index_t>(c));
    if (std::isnan(bias[c])) {
      throw config_error("bias " + std::to_string(c) + " is NaN (expected a number)");
    }
  }
  constexpr std::int32_t kmax = std::numeric_limits<std::int32_t>::max();
  for (std::size_t c = 0; c < bias.size(); ++c) {
    const auto inv = static_cast<float>(1.0 / static_cast<double>(p.scales[c]));
    const float v = round_to_integral(bias[c] * inv, rounding::half_away_from_zero);
    out[c] = saturate_to_int(v, -kmax, kmax, 0);
  }
  return p;
}

}  // namespace tflite

}  // namespace qprune::quant

// How much a quantization costs in accuracy and saves in storage: SQNR,
// absolute errors, saturation counts and bytes before / after, for any float
// tensor and its reconstruction, or computed directly from a quantization
// (per tensor, per channel, per group; int8 / uint8 / int4 / ...).
// Definitions: doc/quantization.md, "Quantization report".
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/quantize.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

/// Accuracy and size of one quantized tensor. Error statistics are computed in
/// double precision over every element, e = x - x':
///   sqnr_db        = 10 * log10( sum x^2 / sum e^2 ); +inf when sum e^2 == 0 (exact,
///                    including an empty or all-zero tensor reconstructed exactly),
///                    -inf when sum x^2 == 0 but e != 0
///   max_abs_error  = max |e|;  mean_abs_error = sum |e| / count (0 when empty)
///   saturated      = elements whose code was clipped: round(x / scale) + zero_point
///                    (before clamping, rounded by the quantizer's mode) lies outside
///                    [qmin, qmax], so the clamp changed the code and |e| may exceed
///                    scale / 2. A value that merely rounds onto qmin or qmax is not
///                    saturated; +-inf are; NaN (which maps to the zero point) is not.
///   bytes_before   = 4 * count (float32)
///   bytes_after    = packed codes + parameters: 4 bytes per scale, plus 4 bytes per
///                    zero point unless the scheme is symmetric (zero point implied)
/// Non-finite inputs propagate through the sums as IEEE arithmetic does (NaN).
/// Reports built from two float tensors (reconstruction_report) leave saturated and
/// bytes_after at 0: only a quantization knows them.
struct quant_report {
  index_t count = 0;
  double sqnr_db = 0.0;
  double max_abs_error = 0.0;
  double mean_abs_error = 0.0;
  index_t saturated = 0;
  std::int64_t bytes_before = 0;
  std::int64_t bytes_after = 0;

  /// bytes_before / bytes_after (0 when bytes_after is 0).
  [[nodiscard]] double compression_ratio() const noexcept {
    return bytes_after == 0 ? 0.0
                            : static_cast<double>(bytes_before) / static_cast<double>(bytes_after);
  }
};

/// Bytes of `n` codes of type `t`: n * bits / 8, rounded up (4-bit codes are
/// packed two per byte). Precondition: n >= 0.
[[nodiscard]] constexpr std::int64_t code_bytes(dtype t, index_t n) noexcept {
  const auto bits = static_cast<std::int64_t>(bits_of(t)) * static_cast<std::int64_t>(n);
  return bits / 8 + (bits % 8 != 0 ? 1 : 0);
}

/// Bytes of `count` (scale, zero point) pairs: 4 per float32 scale, plus 4 per
/// int32 zero point unless `s` is symmetric.
[[nodiscard]] constexpr std::int64_t parameter_bytes(index_t count, scheme s) noexcept {
  return 4 * static_cast<std::int64_t>(count) *
         (s == scheme::symmetric ? std::int64_t{1} : std::int64_t{2});
}

namespace detail {

/// Running sums for quant_report's error statistics.
struct error_accumulator {
  double sum_x2 = 0.0;
  double sum_e2 = 0.0;
  double sum_abs = 0.0;
  double max_abs = 0.0;
  index_t n = 0;

  void add(float x, float xr) noexcept {
    const double xd = static_cast<double>(x);
    const double e = xd - static_cast<double>(xr);
    const double a = std::fabs(e);
    sum_x2 += xd * xd;
    sum_e2 += e * e;
    sum_abs += a;
    // Written so that a NaN error makes the maximum NaN instead of being skipped.
    if (!(a <= max_abs)) max_abs = a;
    ++n;
  }

  [[nodiscard]] quant_report finish() const noexcept {
    quant_report r;
    r.count = n;
    r.max_abs_error = max_abs;
    r.mean_abs_error = n == 0 ? 0.0 : sum_abs / static_cast<double>(n);
    r.sqnr_db = sum_e2 == 0.0 ? std::numeric_limits<double>::infinity()
                              : 10.0 * std::log10(sum_x2 / sum_e2);
    r.bytes_before = 4 * static_cast<std::int64_t>(n);
    return r;
  }
};

/// Quantizes and dequantizes one run, accumulating errors and clipped codes.
inline void report_run(const float* x, const float* scales, const std::int32_t* zps, qrange r,
                       rounding mode, const param_run& run, error_accumulator& acc,
                       index_t& saturated) noexcept {
  for (index_t k = 0; k < run.count; ++k) {
    const index_t p = run.param + k * run.param_stride;
    const float v = x[run.begin + k];
    const double u = unclamped_code(v, scales[p], zps[p], mode);
    if (u < static_cast<double>(r.qmin) || u > static_cast<double>(r.qmax)) ++saturated;
    const std::int32_t q = saturate_to_int(u, r.qmin, r.qmax, zps[p]);
    acc.add(v, dequantize_value(q, affine_params{scales[p], zps[p]}));
  }
}

}  // namespace detail

/// Compares a float tensor with its reconstruction x' (for example dequantize(quantize(x))
/// from any quantizer, fp16 round trips included): count, SQNR, max and mean
/// absolute error and bytes_before; saturated and bytes_after stay 0.
/// Throws shape_error if the extents differ.
template <std::size_t R>
[[nodiscard]] quant_report reconstruction_report(tensor_view<const float, R> x,
                                                 tensor_view<const float, R> reconstructed) {
  detail::check_same_extents(x.extents(), reconstructed.extents());
  detail::error_accumulator acc;
  const float* a = x.data_handle();
  const float* b = reconstructed.data_handle();
  for (index_t i = 0; i < x.size(); ++i) acc.add(a[i], b[i]);
  return acc.finish();
}

/// The report of quantizing `x` per tensor with `p` onto range `r`, stored as
/// `storage` (int8, uint8, int4, ...; 4-bit codes counted packed, ceil(n / 2)
/// bytes) with a `s` parameter scheme (zero point stored or not). Uses qprune's
/// quantizer (quant::quantize_value, rounding `mode`) and dequantize_value.
/// Throws config_error if `r` is empty or does not fit `storage`, the scale is not
/// finite and > 0, or the zero point is outside `r`.
template <std::size_t R>
[[nodiscard]] quant_report quantization_report(tensor_view<const float, R> x,
                                               const affine_params& p, qrange r, dtype storage,
                                               scheme s, rounding mode = rounding::half_to_even) {
  validate_range(r, storage);
  validate(p, r);
  detail::error_accumulator acc;
  index_t saturated = 0;
  detail::report_run(x.data_handle(), &p.scale, &p.zero_point, r, mode,
                     detail::param_run{0, x.size(), 0, 0}, acc, saturated);
  quant_report rep = acc.finish();
  rep.saturated = saturated;
  rep.bytes_after = code_bytes(storage, x.size()) + parameter_bytes(1, s);
  return rep;
}

/// Same, per channel along `p.axis` (one scale, and zero point unless symmetric,
/// per channel). Throws as quant::quantize per channel, and config_error if `r`
/// does not fit `storage`.
template <std::size_t R>
[[nodiscard]] quant_report quantization_report(tensor_view<const float, R> x,
                                               const per_channel_params& p, qrange r,
                                               dtype storage, scheme s,
                                               rounding mode = rounding::half_to_even) {
  validate_range(r, storage);
  detail::check_channel_params(p, x.extents(), r, true);
  detail::error_accumulator acc;
  index_t saturated = 0;
  detail::for_each_channel_run(x.extents(), p.axis, [&](const detail::param_run& run) {
    detail::report_run(x.data_handle(), p.scales.data(), p.zero_points.data(), r, mode, run, acc,
                       saturated);
  });
  quant_report rep = acc.finish();
  rep.saturated = saturated;
  rep.bytes_after = code_bytes(storage, x.size()) + parameter_bytes(p.channels(), s);
  return rep;
}

/// Same, per group on a [rows, cols] tensor (layout as quant::quantize per group).
/// 4-bit codes grouped along axis 1 are counted as packed_int4_matrix stores them,
/// each row padded to whole bytes: rows * ceil(cols / 2); otherwise as one flat
/// buffer. Throws as quant::quantize per group, and config_error if `r` does not
/// fit `storage`.
[[nodiscard]] inline quant_report quantization_report(tensor_view<const float, 2> x,
                                                      const per_group_params& p, qrange r,
                                                      dtype storage, scheme s,
                                                      rounding mode = rounding::half_to_even) {
  validate_range(r, storage);
  detail::check_group_params(p, x.extent(0), x.extent(1), r, true);
  detail::error_accumulator acc;
  index_t saturated = 0;
  detail::for_each_group_run(x.extent(0), x.extent(1), p.axis, p.group_size,
                             [&](const detail::param_run& run) {
                               detail::report_run(x.data_handle(), p.scales.data(),
                                                  p.zero_points.data(), r, mode, run, acc,
                                                  saturated);
                             });
  quant_report rep = acc.finish();
  rep.saturated = saturated;
  const bool row_packed = bits_of(storage) == 4 && p.axis == 1;
  rep.bytes_after = (row_packed ? x.extent(0) * code_bytes(storage, x.extent(1))
                                : code_bytes(storage, x.size())) +
                    parameter_bytes(static_cast<index_t>(p.scales.size()), s);
  return rep;
}

}  // namespace qprune::quant

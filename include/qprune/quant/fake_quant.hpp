// Fake quantization for quantization-aware training: quantize then dequantize
// in float (forward) and the straight-through / LSQ gradients (backward), on
// row-major tensor views and on single values. Two bit-exact compatibility
// modes: PyTorch 1.13 (fake_quantize_per_{tensor,channel}_affine and the
// learnable LSQ variants) and TensorFlow (fake_quant_with_min_max_{args,vars,
// vars_per_channel}). Formulas, tie rules, sources: doc/quantization.md, "Fake quantization".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/qparams.hpp"
#include "qprune/quant/quantize.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

/// Parameters of a learnable (LSQ) fake quantizer: the scale and a *float* zero
/// point, both trained. The zero point is rounded and clamped into the range
/// each time it is used (how, depends on the framework mode).
struct learnable_params {
  float scale = 1.0f;
  float zero_point = 0.0f;
  friend bool operator==(const learnable_params&, const learnable_params&) = default;
};

/// One learnable (scale, float zero point) per slice along `axis`.
struct learnable_per_channel_params {
  std::vector<float> scales;
  std::vector<float> zero_points;
  index_t axis = 0;
  index_t channels() const noexcept { return static_cast<index_t>(scales.size()); }
  friend bool operator==(const learnable_per_channel_params&,
                         const learnable_per_channel_params&) = default;
};

/// Gradients of a per-tensor learnable fake quantizer w.r.t. its scale and zero point.
struct learnable_grads {
  float scale = 0.0f;
  float zero_point = 0.0f;
  friend bool operator==(const learnable_grads&, const learnable_grads&) = default;
};

namespace detail::fq {

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
void check_same_extents(const extents<R>& a, const extents<R>& b, const char* what) {
  if (!(a == b)) {
    throw shape_error(std::string(what) + " extents " + extents_string(b) +
                      " do not match the input extents " + extents_string(a));
  }
}

using quant::detail::channel_prefix;
using quant::detail::check_scale;
using quant::detail::check_zero_point;

inline void check_float_zero_point(float zp, index_t c = -1) {
  if (std::isnan(zp)) {
    throw config_error(channel_prefix(c) + "learnable zero point is NaN (expected a number)");
  }
}

template <std::size_t R>
void check_axis(index_t axis) {
  if (axis < 0 || axis >= static_cast<index_t>(R)) {
    throw config_error("channel axis " + std::to_string(axis) + " is out of range (expected 0.." +
                       std::to_string(static_cast<index_t>(R) - 1) + " for a rank-" +
                       std::to_string(R) + " tensor)");
  }
}

inline void check_channel_count(std::size_t scales, std::size_t zero_points, index_t extent,
                                index_t axis) {
  if (scales != zero_points) {
    throw shape_error("per-channel parameters have " + std::to_string(scales) + " scales but " +
                      std::to_string(zero_points) + " zero points (expected the same count)");
  }
  if (static_cast<index_t>(scales) != extent) {
    throw shape_error("per-channel parameters have " + std::to_string(scales) +
                      " channels but extent " + std::to_string(extent) + " along axis " +
                      std::to_string(axis) + " (expected one scale per channel)");
  }
}

using quant::detail::unfused;


/// Calls f(channel, first_element, count) for every run of consecutive
/// row-major elements that share one channel along `axis`. Precondition: 0 <= axis < R.
template <std::size_t R, class F>
void for_each_channel_run(const extents<R>& e, index_t axis, F&& f) {
  const auto a = static_cast<std::size_t>(axis);
  index_t outer = 1;
  index_t inner = 1;
  for (std::size_t r = 0; r < a; ++r) outer *= e.extent(r);
  for (std::size_t r = a + 1; r < R; ++r) inner *= e.extent(r);
  const index_t channels = e.extent(a);
  for (index_t o = 0; o < outer; ++o) {
    for (index_t c = 0; c < channels; ++c) f(c, (o * channels + c) * inner, inner);
  }
}

}  // namespace detail::fq

// ===========================================================================
// PyTorch 1.13
// ===========================================================================
namespace pytorch {

namespace detail::fq {

/// float -> int64 as x86-64's cvttss2si does it (what torch's compiled
/// `static_cast<int64_t>(float)` yields): truncation toward zero, and the
/// "integer indefinite" INT64_MIN for NaN, +-inf and |v| >= 2^63.
inline std::int64_t to_int64_x86(float v) noexcept {
  return (v >= -0x1p63f && v < 0x1p63f) ? static_cast<std::int64_t>(v)
                                        : std::numeric_limits<std::int64_t>::min();
}

inline std::int64_t clamp64(std::int64_t q, qrange r) noexcept {
  return q < r.qmin ? r.qmin : (q > r.qmax ? r.qmax : q);
}

/// The unclamped integer code of torch's fake-quant kernels:
///   q = (int64)( float(zero_point) + nearbyint(x * inv_scale) )   (float32)
inline std::int64_t code(float x, float inv_scale, std::int32_t zero_point) noexcept {
  return to_int64_x86(static_cast<float>(zero_point) + std::nearbyint(x * inv_scale));
}

/// y = (clamp(q) - zero_point) * scale, evaluated in double as torch's
/// std::fmin/std::fmax on int64 promote it, then narrowed to float.
inline float dequant(std::int64_t q, float scale, std::int32_t zero_point, qrange r) noexcept {
  return static_cast<float>(static_cast<double>(clamp64(q, r) - zero_point) *
                            static_cast<double>(scale));
}

inline bool in_range(std::int64_t q, qrange r) noexcept { return r.qmin <= q && q <= r.qmax; }

/// The straight-through gradient as torch computes it: g * float(mask), so a
/// masked negative g gives -0.0 and a masked NaN / inf g gives NaN.
inline float masked(float g, bool pass) noexcept { return g * (pass ? 1.0f : 0.0f); }

inline void fake_quantize_run(const float* x, float* y, index_t n, float scale,
                              std::int32_t zero_point, qrange r) noexcept {
  const float inv = 1.0f / scale;
  for (index_t i = 0; i < n; ++i) y[i] = dequant(code(x[i], inv, zero_point), scale, zero_point, r);
}

inline void fake_quantize_backward_run(const float* x, const float* g, float* gx, index_t n,
                                       float scale, std::int32_t zero_point, qrange r) noexcept {
  const float inv = 1.0f / scale;
  for (index_t i = 0; i < n; ++i) gx[i] = masked(g[i], in_range(code(x[i], inv, zero_point), r));
}

inline void check_affine(const affine_params& p, qrange r) {
  validate(r);
  quant::detail::fq::check_scale(p.scale);
  quant::detail::fq::check_zero_point(p.zero_point, r);
}

template <std::size_t R>
void check_per_channel(const per_channel_params& p, const extents<R>& e, qrange r) {
  static_assert(R >= 1, "per-channel fake quantization needs a tensor of rank >= 1");
  validate(r);
  quant::detail::fq::check_axis<R>(p.axis);
  quant::detail::fq::check_channel_count(p.scales.size(), p.zero_points.size(),
                                         e.extent(static_cast<std::size_t>(p.axis)), p.axis);
  for (index_t c = 0; c < p.channels(); ++c) {
    quant::detail::fq::check_scale(p.scales[static_cast<std::size_t>(c)], c);
    quant::detail::fq::check_zero_point(p.zero_points[static_cast<std::size_t>(c)], r, c);
  }
}

/// torch's range check in both learnable backward kernels.
inline void check_range_has_zero(qrange r) {
  if (!(r.qmin <= 0 && 0 <= r.qmax)) {
    throw config_error("learnable fake quantization range [" + std::to_string(r.qmin) + ", " +
                       std::to_string(r.qmax) +
                       "] must contain 0 (PyTorch requires quant_min <= 0 <= quant_max)");
  }
}

/// clamp(v, float(qmin), float(qmax)) as torch's std::min(std::max(v, lo), hi).
inline float clamp_to_range(float v, qrange r) noexcept {
  const auto lo = static_cast<float>(r.qmin);
  const auto hi = static_cast<float>(r.qmax);
  return std::min(std::max(v, lo), hi);
}

/// Per-element LSQ gradient terms (torch's kernel, before the sums).
struct lsq_terms {
  float dx;
  float dscale;
  float dzero_point;
};

/// Per-tensor LSQ backward for one element (fake_quantize_learnable_tensor_grad_kernel_cpu,
/// AVX2 build, whose compiler contracts zp + x * inv and xfq - x into FMAs):
///   q = (int64) nearbyint( fma(x, inv, float(zp)) )
///   out of range: dx = 0, dscale = g * float(qmin - zp or qmax - zp) * gf, dzp = -g * s * gf
///   in range:     dx = g, dscale = g * fma(float(clamp(q) - zp), s, -x) * inv * gf, dzp = 0
inline lsq_terms lsq_tensor_terms(float x, float g, float scale, float inv, std::int64_t zp,
                                  qrange r, float gf) noexcept {
  const auto zpf = static_cast<float>(zp);
  const std::int64_t q = to_int64_x86(std::nearbyint(std::fma(x, inv, zpf)));
  const bool pass = in_range(q, r);
  lsq_terms t{masked(g, pass), 0.0f, 0.0f};
  if (!pass) {
    const auto bound = static_cast<float>((q < r.qmin ? r.qmin : r.qmax) - zp);
    t.dzero_point = ((g * -1.0f) * scale) * gf;
    t.dscale = (g * bound) * gf;
  } else {
    // xfq - x with xfq = float(clamp(q) - zp) * s: the compiled kernel fuses it.
    t.dscale = ((g * std::fma(static_cast<float>(clamp64(q, r) - zp), scale, -x)) * inv) * gf;
  }
  return t;
}

/// Per-channel LSQ backward for one element (_fake_quantize_grad_learnable_channel_kernel_cpu,
/// AVX2 build): the zero point stays a float (already rounded and clamped);
///   q = (int64) nearbyint( fma(x, inv, zp) )
///   out of range: dscale = g * (float(qmin or qmax) - zp) * gf, dzp = -g * s * gf
///   in range:     dscale = g * fma(float(clamp(q)) - zp, s, -x) * inv * gf
inline lsq_terms lsq_channel_terms(float x, float g, float scale, float zp, qrange r,
                                   float gf) noexcept {
  const float inv = 1.0f / scale;
  const std::int64_t q = to_int64_x86(std::nearbyint(std::fma(x, inv, zp)));
  const bool pass = in_range(q, r);
  lsq_terms t{masked(g, pass), 0.0f, 0.0f};
  if (!pass) {
    const float bound = static_cast<float>(q < r.qmin ? r.qmin : r.qmax) - zp;
    t.dzero_point = ((g * -1.0f) * scale) * gf;
    t.dscale = (g * bound) * gf;
  } else {
    const float shifted = static_cast<float>(clamp64(q, r)) - zp;
    t.dscale = ((g * std::fma(shifted, scale, -x)) * inv) * gf;
  }
  return t;
}

}  // namespace detail::fq

/// One value through `torch.fake_quantize_per_tensor_affine`, bit for bit
/// (torch 1.13 CPU kernel fake_quantize_tensor_cachemask_kernel):
///   inv = 1.0f / scale                                   (float32 reciprocal, not x / scale)
///   q   = (int64)( float(zero_point) + nearbyint(x * inv) )   (float32, half to even)
///   y   = float( double(clamp(q, qmin, qmax) - zero_point) * double(scale) )
/// Quirk kept: when the float before the int64 conversion is NaN, +-inf or
/// |.| >= 2^63, x86 yields INT64_MIN, so y = (qmin - zero_point) * scale even for
/// huge positive x, +inf or NaN.
/// Preconditions (unchecked): scale finite > 0, qmin <= zero_point <= qmax.
[[nodiscard]] inline float fake_quantize(float x, affine_params p, qrange r) noexcept {
  return detail::fq::dequant(detail::fq::code(x, 1.0f / p.scale, p.zero_point), p.scale,
                             p.zero_point, r);
}

/// The straight-through-estimator mask of fake_quantize for one value:
/// qmin <= q <= qmax with q the *rounded, unclamped* code above (so x up to half
/// a step outside the clamp boundary still passes; the tie is decided by
/// nearbyint, half to even). Preconditions as fake_quantize.
[[nodiscard]] inline bool fake_quantize_mask(float x, affine_params p, qrange r) noexcept {
  return detail::fq::in_range(detail::fq::code(x, 1.0f / p.scale, p.zero_point), r);
}

/// `torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)`
/// forward, bit for bit (formula: fake_quantize). `out` may be `x` itself (in
/// place) but must not overlap it otherwise.
/// Throws shape_error if the extents differ; config_error if qmin >= qmax (torch
/// also accepts qmin == qmax), the scale is not finite and > 0 (torch does not
/// check), or the zero point is outside [qmin, qmax] (as torch).
template <std::size_t R>
void fake_quantize_per_tensor_affine(std::type_identity_t<tensor_view<const float, R>> x,
                                     tensor_view<float, R> out, const affine_params& p, qrange r) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  detail::fq::check_affine(p, r);
  detail::fq::fake_quantize_run(x.data_handle(), out.data_handle(), x.size(), p.scale, p.zero_point,
                                r);
}

/// Backward of fake_quantize_per_tensor_affine (straight-through estimator):
///   grad_in = grad_out * float( qmin <= q <= qmax ),  q as in fake_quantize
/// so masked entries are +-0.0 (sign of grad_out) and NaN if grad_out is NaN or inf.
/// `grad_in` may be `grad_out` itself. Throws as the forward.
template <std::size_t R>
void fake_quantize_per_tensor_affine_backward(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    const affine_params& p, qrange r) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  detail::fq::check_affine(p, r);
  detail::fq::fake_quantize_backward_run(x.data_handle(), grad_out.data_handle(),
                                         grad_in.data_handle(), x.size(), p.scale, p.zero_point, r);
}

/// `torch.fake_quantize_per_channel_affine(x, scales, zero_points, axis, quant_min,
/// quant_max)` forward, bit for bit: fake_quantize with channel c's float32 scale
/// and int32 zero point (fake_quant_per_channel_cachemask_cpu). `out` may be `x`.
/// Throws shape_error for mismatched extents or a parameter count different from
/// the extent along `p.axis`; config_error for an axis outside [0, R), qmin >= qmax,
/// a scale not finite and > 0, or a zero point outside [qmin, qmax].
template <std::size_t R>
void fake_quantize_per_channel_affine(std::type_identity_t<tensor_view<const float, R>> x,
                                      tensor_view<float, R> out, const per_channel_params& p,
                                      qrange r) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  detail::fq::check_per_channel(p, x.extents(), r);
  const float* xs = x.data_handle();
  float* ys = out.data_handle();
  quant::detail::fq::for_each_channel_run(
      x.extents(), p.axis, [&](index_t c, index_t b, index_t n) {
        const auto k = static_cast<std::size_t>(c);
        detail::fq::fake_quantize_run(xs + b, ys + b, n, p.scales[k], p.zero_points[k], r);
      });
}

/// Backward of fake_quantize_per_channel_affine: grad_in = grad_out * float(mask),
/// the mask as fake_quantize_mask with channel c's parameters. Throws as the forward.
template <std::size_t R>
void fake_quantize_per_channel_affine_backward(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    const per_channel_params& p, qrange r) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  detail::fq::check_per_channel(p, x.extents(), r);
  const float* xs = x.data_handle();
  const float* gs = grad_out.data_handle();
  float* gx = grad_in.data_handle();
  quant::detail::fq::for_each_channel_run(
      x.extents(), p.axis, [&](index_t c, index_t b, index_t n) {
        const auto k = static_cast<std::size_t>(c);
        detail::fq::fake_quantize_backward_run(xs + b, gs + b, gx + b, n, p.scales[k],
                                               p.zero_points[k], r);
      });
}

// ---------------------------------------------------------------------------
// Learnable (LSQ): torch._fake_quantize_learnable_per_{tensor,channel}_affine
// ---------------------------------------------------------------------------

/// The LSQ gradient scaling of torch's `_LearnableFakeQuantize` with
/// use_grad_scaling=True: grad_factor = 1 / sqrt(numel * quant_max), in double.
/// (torch writes `1.0 / (numel * quant_max) ** 0.5`; Python's pow(., 0.5) and
/// sqrt agree except possibly in the last bit.) Throws config_error unless
/// numel > 0 and quant_max > 0.
[[nodiscard]] inline double lsq_grad_factor(index_t numel, std::int32_t quant_max) {
  if (numel <= 0 || quant_max <= 0) {
    throw config_error("LSQ grad factor needs numel > 0 and quant_max > 0, got numel " +
                       std::to_string(numel) + " and quant_max " + std::to_string(quant_max));
  }
  return 1.0 / std::sqrt(static_cast<double>(numel) * static_cast<double>(quant_max));
}

/// `_LearnableFakeQuantize` clamps its scale parameter before every forward:
/// scale = max(scale, eps) (torch.clamp_: NaN stays NaN), eps defaulting to
/// torch.finfo(float32).eps (pytorch::default_eps).
[[nodiscard]] inline float clamp_learnable_scale(float scale, float eps) noexcept {
  return scale < eps ? eps : scale;
}

/// The integer zero point the learnable *per-tensor* forward uses:
///   zp = (int64) clamp( nearbyint(zero_point), float(qmin), float(qmax) )   (half to even)
/// Precondition: zero_point not NaN.
[[nodiscard]] inline std::int32_t learnable_forward_zero_point(float zero_point,
                                                               qrange r) noexcept {
  return saturate_to_int(detail::fq::clamp_to_range(std::nearbyint(zero_point), r), r.qmin, r.qmax,
                         r.qmin);
}

/// The integer zero point the learnable *per-tensor* backward uses (a different
/// rounding from the forward, kept from torch):
///   zp = (int64) clamp( zero_point + 0.5f, float(qmin), float(qmax) )   (truncation)
/// e.g. 2.5 -> 3 (forward: 2), -3.7 -> -3 (forward: -4). Precondition: not NaN.
[[nodiscard]] inline std::int32_t learnable_backward_zero_point(float zero_point,
                                                                qrange r) noexcept {
  return saturate_to_int(detail::fq::clamp_to_range(zero_point + 0.5f, r), r.qmin, r.qmax, r.qmin);
}

/// The float zero point both learnable *per-channel* passes use:
///   zp = clamp( round_half_even(zero_point), float(qmin), float(qmax) )
/// (torch.round(zero_point).clamp_(qmin, qmax); the forward then converts it to int32).
[[nodiscard]] inline float learnable_channel_zero_point(float zero_point, qrange r) noexcept {
  return detail::fq::clamp_to_range(std::nearbyint(zero_point), r);
}

/// `torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero_point, qmin,
/// qmax, grad_factor)` forward, bit for bit: fake_quantize_per_tensor_affine with
/// {scale, learnable_forward_zero_point(zero_point)}. The scale is used as given
/// (clamp it with clamp_learnable_scale first to mirror `_LearnableFakeQuantize`).
/// Throws shape_error for mismatched extents; config_error for qmin >= qmax, a
/// scale not finite and > 0 (torch does not check) or a NaN zero point.
template <std::size_t R>
void fake_quantize_learnable_per_tensor_affine(std::type_identity_t<tensor_view<const float, R>> x,
                                               tensor_view<float, R> out, const learnable_params& p,
                                               qrange r) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  validate(r);
  quant::detail::fq::check_scale(p.scale);
  quant::detail::fq::check_float_zero_point(p.zero_point);
  const std::int32_t zp = learnable_forward_zero_point(p.zero_point, r);
  detail::fq::fake_quantize_run(x.data_handle(), out.data_handle(), x.size(), p.scale, zp, r);
}

/// Backward of the learnable per-tensor fake quantizer (LSQ), as torch 1.13's
/// `_fake_quantize_learnable_per_tensor_affine_backward` on an AVX2 CPU:
///   zp = learnable_backward_zero_point(zero_point), inv = 1.0f / s, gf = float(grad_factor)
///   q  = (int64) nearbyint( fma(x, inv, float(zp)) )      (torch's compiled kernel fuses)
///   q outside [qmin, qmax]: grad_in = g * 0,  dS_i = g * float(qmin - zp) * gf (below)
///                           or g * float(qmax - zp) * gf (above),  dZ_i = (-g) * s * gf
///   q inside:               grad_in = g,      dS_i = g * (xfq - x) * inv * gf,  dZ_i = 0
///                           with xfq - x = fma(float(clamp(q) - zp), s, -x) (fused too)
/// Returns {sum dS_i, sum dZ_i}; every product is float32 and left to right as
/// written. The sums are accumulated in double then rounded to float; torch sums
/// the float terms pairwise, so the two sums agree to a few float ulps of
/// sum |term|, not bit for bit. grad_in may be grad_out itself.
/// Throws as the forward, plus config_error unless qmin <= 0 <= qmax (torch's check).
template <std::size_t R>
[[nodiscard]] learnable_grads fake_quantize_learnable_per_tensor_affine_backward(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    const learnable_params& p, qrange r, double grad_factor) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  validate(r);
  detail::fq::check_range_has_zero(r);
  quant::detail::fq::check_scale(p.scale);
  quant::detail::fq::check_float_zero_point(p.zero_point);
  const std::int64_t zp = learnable_backward_zero_point(p.zero_point, r);
  const float inv = 1.0f / p.scale;
  const auto gf = static_cast<float>(grad_factor);
  const float* xs = x.data_handle();
  const float* gs = grad_out.data_handle();
  float* gx = grad_in.data_handle();
  double ds = 0.0;
  double dz = 0.0;
  for (index_t i = 0; i < x.size(); ++i) {
    const detail::fq::lsq_terms t =
        detail::fq::lsq_tensor_terms(xs[i], gs[i], p.scale, inv, zp, r, gf);
    gx[i] = t.dx;
    ds += static_cast<double>(t.dscale);
    dz += static_cast<double>(t.dzero_point);
  }
  return {static_cast<float>(ds), static_cast<float>(dz)};
}

namespace detail::fq {
template <std::size_t R>
void check_learnable_per_channel(const learnable_per_channel_params& p, const extents<R>& e,
                                 qrange r) {
  static_assert(R >= 1, "per-channel fake quantization needs a tensor of rank >= 1");
  validate(r);
  quant::detail::fq::check_axis<R>(p.axis);
  quant::detail::fq::check_channel_count(p.scales.size(), p.zero_points.size(),
                                         e.extent(static_cast<std::size_t>(p.axis)), p.axis);
  for (index_t c = 0; c < p.channels(); ++c) {
    quant::detail::fq::check_scale(p.scales[static_cast<std::size_t>(c)], c);
    quant::detail::fq::check_float_zero_point(p.zero_points[static_cast<std::size_t>(c)], c);
  }
}
}  // namespace detail::fq

/// `torch._fake_quantize_learnable_per_channel_affine(x, scales, zero_points, axis,
/// qmin, qmax, grad_factor)` forward, bit for bit: fake_quantize_per_channel_affine
/// with zero point int32(learnable_channel_zero_point(zero_points[c])) (half to even,
/// unlike the per-tensor variant). Throws shape_error / config_error as
/// fake_quantize_per_channel_affine, a NaN zero point included.
template <std::size_t R>
void fake_quantize_learnable_per_channel_affine(std::type_identity_t<tensor_view<const float, R>> x,
                                                tensor_view<float, R> out,
                                                const learnable_per_channel_params& p, qrange r) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  detail::fq::check_learnable_per_channel(p, x.extents(), r);
  const float* xs = x.data_handle();
  float* ys = out.data_handle();
  quant::detail::fq::for_each_channel_run(
      x.extents(), p.axis, [&](index_t c, index_t b, index_t n) {
        const auto k = static_cast<std::size_t>(c);
        const float zpf = learnable_channel_zero_point(p.zero_points[k], r);
        detail::fq::fake_quantize_run(xs + b, ys + b, n, p.scales[k],
                                      saturate_to_int(zpf, r.qmin, r.qmax, r.qmin), r);
      });
}

/// Backward of the learnable per-channel fake quantizer, as torch 1.13 on an
/// AVX2 CPU (_fake_quantize_grad_learnable_channel_kernel_cpu), for each element
/// of channel c with s = scales[c], zp = learnable_channel_zero_point(zero_points[c])
/// (a float), inv = 1.0f / s, gf = float(grad_factor):
///   q = (int64) nearbyint( fma(x, inv, zp) )
///   q outside: grad_in = g * 0, dS_i = g * (float(qmin or qmax) - zp) * gf,  dZ_i = (-g) * s * gf
///   q inside:  grad_in = g,     dS_i = g * fma(float(clamp(q)) - zp, s, -x) * inv * gf,  dZ_i = 0
/// grad_scales[c] / grad_zero_points[c] = the sums over channel c (double
/// accumulation, see the per-tensor backward). grad_in may be grad_out itself.
/// Throws as the forward, plus shape_error if a gradient span's size is not the
/// channel count and config_error unless qmin <= 0 <= qmax.
template <std::size_t R>
void fake_quantize_learnable_per_channel_affine_backward(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    const learnable_per_channel_params& p, qrange r, double grad_factor,
    std::span<float> grad_scales, std::span<float> grad_zero_points) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  detail::fq::check_learnable_per_channel(p, x.extents(), r);
  detail::fq::check_range_has_zero(r);
  if (static_cast<index_t>(grad_scales.size()) != p.channels() ||
      static_cast<index_t>(grad_zero_points.size()) != p.channels()) {
    throw shape_error("gradient outputs hold " + std::to_string(grad_scales.size()) + " and " +
                      std::to_string(grad_zero_points.size()) + " values (expected " +
                      std::to_string(p.channels()) + ", one per channel)");
  }
  const auto gf = static_cast<float>(grad_factor);
  std::vector<double> ds(static_cast<std::size_t>(p.channels()), 0.0);
  std::vector<double> dz(static_cast<std::size_t>(p.channels()), 0.0);
  const float* xs = x.data_handle();
  const float* gs = grad_out.data_handle();
  float* gx = grad_in.data_handle();
  quant::detail::fq::for_each_channel_run(
      x.extents(), p.axis, [&](index_t c, index_t b, index_t n) {
        const auto k = static_cast<std::size_t>(c);
        const float s = p.scales[k];
        const float zpf = learnable_channel_zero_point(p.zero_points[k], r);
        for (index_t i = b; i < b + n; ++i) {
          const detail::fq::lsq_terms t =
              detail::fq::lsq_channel_terms(xs[i], gs[i], s, zpf, r, gf);
          gx[i] = t.dx;
          ds[k] += static_cast<double>(t.dscale);
          dz[k] += static_cast<double>(t.dzero_point);
        }
      });
  for (std::size_t k = 0; k < ds.size(); ++k) {
    grad_scales[k] = static_cast<float>(ds[k]);
    grad_zero_points[k] = static_cast<float>(dz[k]);
  }
}

}  // namespace pytorch

// ===========================================================================
// TensorFlow
// ===========================================================================
namespace tensorflow {

/// The attributes of TensorFlow's FakeQuantWithMinMax* ops, e.g. {8, false}
/// (TensorFlow's defaults). num_bits has no usable default: left at 0 it is
/// rejected, so the bit width is always chosen visibly.
///   num_bits:     2..16
///   narrow_range: false: codes [0, 2^num_bits - 1]; true: [1, 2^num_bits - 1]
struct fake_quant_attrs {
  int num_bits = 0;
  bool narrow_range = false;
};

/// The integer range of `a`: [narrow_range ? 1 : 0, 2^num_bits - 1].
/// Throws config_error unless 2 <= num_bits <= 16 (TensorFlow's check).
[[nodiscard]] inline qrange quant_range(fake_quant_attrs a) {
  if (a.num_bits < 2 || a.num_bits > 16) {
    throw config_error("num_bits " + std::to_string(a.num_bits) +
                       " is not supported (expected 2 to 16, as TensorFlow)");
  }
  return {a.narrow_range ? 1 : 0, (1 << a.num_bits) - 1};
}

/// The nudged quantization grid of a [min, max] range.
struct nudged_params {
  float min = 0.0f;             ///< nudged_min = (qmin - zero_point) * scale
  float max = 0.0f;             ///< nudged_max = (qmax - zero_point) * scale
  float scale = 1.0f;           ///< (max - min) / (qmax - qmin)
  float inv_scale = 1.0f;       ///< (qmax - qmin) / (max - min), recomputed, not 1 / scale
  float quant_zero = 0.0f;      ///< floor(-nudged_min * inv_scale + 0.5f), the zero point in steps
  std::int32_t zero_point = 0;  ///< the nudged integer zero point
  friend bool operator==(const nudged_params&, const nudged_params&) = default;
};

/// TensorFlow's `Nudge` (core/kernels/fake_quant_ops_functor.h), bit for bit, all
/// in float32 in this order:
///   qmin, qmax = quant_range(a) as floats
///   scale      = (max - min) / (qmax - qmin)
///   inv_scale  = (qmax - qmin) / (max - min)
///   z0         = qmin - min / scale
///   zero_point = qmin if z0 < qmin; qmax if z0 > qmax; else std::round(z0)
///                (half away from zero: 0.5 -> 1, 127.5 -> 128)
///   nudged min = (qmin - zero_point) * scale; nudged max = (qmax - zero_point) * scale
///   quant_zero = floor(-nudged_min * inv_scale + 0.5f)   (product rounded, not fused)
/// A range that does not contain 0 is moved so that it does (min > 0 gives
/// nudged_min = 0; max < 0 gives nudged_max = 0), as TensorFlow does in release
/// builds (its min <= 0 <= max checks are debug-only assertions).
/// Current TensorFlow stores the zero point as uint16, exact for every num_bits
/// <= 16; the 2017 source stored it as uint8, which wrapped for num_bits > 8 (not reproduced).
/// Throws config_error for invalid attributes, a non-finite bound, min >= max, or
/// a range so narrow or wide that scale or inv_scale is 0 or not finite.
[[nodiscard]] inline nudged_params nudge(float min, float max, fake_quant_attrs a) {
  const qrange r = quant_range(a);
  if (!std::isfinite(min) || !std::isfinite(max) || !(min < max)) {
    throw config_error("range [" + std::to_string(min) + ", " + std::to_string(max) +
                       "] is invalid (expected finite min < max)");
  }
  const auto qmin = static_cast<float>(r.qmin);
  const auto qmax = static_cast<float>(r.qmax);
  nudged_params n;
  n.scale = (max - min) / (qmax - qmin);
  n.inv_scale = (qmax - qmin) / (max - min);
  if (!(n.scale > 0.0f) || !std::isfinite(n.scale) || !std::isfinite(n.inv_scale)) {
    throw config_error("range [" + std::to_string(min) + ", " + std::to_string(max) +
                       "] gives no usable step (expected (max - min) / (2^num_bits - 1) "
                       "and its inverse finite and > 0)");
  }
  const float z0 = qmin - min / n.scale;
  float z = 0.0f;
  if (z0 < qmin) {
    z = qmin;
  } else if (z0 > qmax) {
    z = qmax;
  } else {
    z = std::round(z0);
  }
  n.zero_point = static_cast<std::int32_t>(z);
  n.min = (qmin - z) * n.scale;
  n.max = (qmax - z) * n.scale;
  n.quant_zero = std::floor(quant::detail::fq::unfused(-n.min * n.inv_scale) + 0.5f);
  return n;
}

/// Which TensorFlow op's arithmetic to reproduce. They differ in one operation:
/// args and vars_per_channel multiply by inv_scale, vars divides by scale, so
/// results can differ by one step where the two roundings straddle a tie.
enum class fake_quant_op : std::uint8_t { args, vars, vars_per_channel };

/// One value through TensorFlow's fake-quant functor, bit for bit, float32, as in
/// current TensorFlow (the quant_zero form since PR #48580, 2021; inv_scale
/// recomputed from max - min since PR #55310, 2022; older kernels added
/// nudged_min back after the product and used 1 / scale, one ulp or one step apart):
///   c = max(min(x, nudged_max), nudged_min)           (NaN x stays NaN)
///   t = (c - nudged_min) * inv_scale                   (args, vars_per_channel)
///     = (c - nudged_min) / scale                       (vars)
///   y = floor(t - quant_zero + 0.5f) * scale           (half up: ties go to +inf)
/// y is k * scale for an integer k in [qmin - zero_point, qmax - zero_point];
/// 0 maps to exactly 0.
[[nodiscard]] inline float fake_quant(float x, const nudged_params& n, fake_quant_op op) noexcept {
  const float c = std::max(std::min(x, n.max), n.min);
  const float shifted = c - n.min;
  const float t = op == fake_quant_op::vars ? shifted / n.scale
                                            : quant::detail::fq::unfused(shifted * n.inv_scale);
  return std::floor(t - n.quant_zero + 0.5f) * n.scale;
}

/// The straight-through mask of every TensorFlow fake-quant gradient:
/// nudged_min <= x <= nudged_max (on the float input, not the rounded code; NaN -> false).
[[nodiscard]] inline bool in_nudged_range(float x, const nudged_params& n) noexcept {
  return x >= n.min && x <= n.max;
}

/// Gradients of a fake-quant op w.r.t. its min and max inputs.
struct min_max_grads {
  float min = 0.0f;
  float max = 0.0f;
  friend bool operator==(const min_max_grads&, const min_max_grads&) = default;
};

namespace detail::fq {

inline void forward_run(const float* x, float* y, index_t n, index_t stride, const nudged_params& p,
                        fake_quant_op op) noexcept {
  for (index_t i = 0; i < n; ++i) y[i * stride] = fake_quant(x[i * stride], p, op);
}

/// grad_in = g * float(in range); returns the sums of g * float(x < nmin) and
/// g * float(x > nmax) over the run, in double (TensorFlow sums float terms in
/// an Eigen reduction tree).
inline void backward_run(const float* x, const float* g, float* gx, index_t n, index_t stride,
                         const nudged_params& p, double& below, double& above) noexcept {
  for (index_t k = 0; k < n; ++k) {
    const index_t i = k * stride;
    const float xi = x[i];
    gx[i] = g[i] * (in_nudged_range(xi, p) ? 1.0f : 0.0f);
    below += static_cast<double>(g[i] * (xi < p.min ? 1.0f : 0.0f));
    above += static_cast<double>(g[i] * (xi > p.max ? 1.0f : 0.0f));
  }
}

/// min == max == 0: TensorFlow's vars ops output 0 and pass every gradient through.
inline bool is_zero_range(float min, float max) noexcept { return min == 0.0f && max == 0.0f; }

}  // namespace detail::fq

/// `tf.quantization.fake_quant_with_min_max_args(x, min, max, num_bits, narrow_range)`,
/// bit for bit: fake_quant(x, nudge(min, max, a), fake_quant_op::args) for every
/// element. `out` may be `x`. Throws shape_error if the extents differ;
/// config_error as nudge (TensorFlow's op also rejects min >= max).
template <std::size_t R>
void fake_quant_with_min_max_args(std::type_identity_t<tensor_view<const float, R>> x,
                                  tensor_view<float, R> out, float min, float max,
                                  fake_quant_attrs a) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  const nudged_params p = nudge(min, max, a);
  detail::fq::forward_run(x.data_handle(), out.data_handle(), x.size(), 1, p, fake_quant_op::args);
}

/// `FakeQuantWithMinMaxArgsGradient`: grad_in = grad_out * float(nmin <= x <= nmax)
/// (masked entries are +-0.0 with the sign of grad_out). Throws as the forward.
template <std::size_t R>
void fake_quant_with_min_max_args_gradient(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    float min, float max, fake_quant_attrs a) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  const nudged_params p = nudge(min, max, a);
  double below = 0.0;
  double above = 0.0;
  detail::fq::backward_run(x.data_handle(), grad_out.data_handle(), grad_in.data_handle(), x.size(),
                           1, p, below, above);
}

/// `tf.quantization.fake_quant_with_min_max_vars(x, min, max, num_bits, narrow_range)`,
/// bit for bit: fake_quant(x, nudge(min, max, a), fake_quant_op::vars) (division by
/// the scale). min == max == 0 outputs +0.0 everywhere, as TensorFlow.
/// Throws shape_error if the extents differ; config_error as nudge otherwise
/// (TensorFlow computes NaNs or garbage for those ranges).
template <std::size_t R>
void fake_quant_with_min_max_vars(std::type_identity_t<tensor_view<const float, R>> x,
                                  tensor_view<float, R> out, float min, float max,
                                  fake_quant_attrs a) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  if (detail::fq::is_zero_range(min, max)) {
    static_cast<void>(quant_range(a));
    std::fill_n(out.data_handle(), out.size(), 0.0f);
    return;
  }
  const nudged_params p = nudge(min, max, a);
  detail::fq::forward_run(x.data_handle(), out.data_handle(), x.size(), 1, p, fake_quant_op::vars);
}

/// `FakeQuantWithMinMaxVarsGradient`:
///   grad_in = grad_out * float(nmin <= x <= nmax)
///   returns { sum grad_out * float(x < nmin), sum grad_out * float(x > nmax) }
/// (sums accumulated in double, then rounded to float; TensorFlow's Eigen
/// reduction sums float terms in a tree, so sums agree to a few ulps of sum |g|).
/// min == max == 0: grad_in = grad_out and both sums 0, as TensorFlow.
/// Throws as the forward.
template <std::size_t R>
[[nodiscard]] min_max_grads fake_quant_with_min_max_vars_gradient(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    float min, float max, fake_quant_attrs a) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  if (detail::fq::is_zero_range(min, max)) {
    static_cast<void>(quant_range(a));
    std::copy_n(grad_out.data_handle(), grad_out.size(), grad_in.data_handle());
    return {0.0f, 0.0f};
  }
  const nudged_params p = nudge(min, max, a);
  double below = 0.0;
  double above = 0.0;
  detail::fq::backward_run(x.data_handle(), grad_out.data_handle(), grad_in.data_handle(), x.size(),
                           1, p, below, above);
  return {static_cast<float>(below), static_cast<float>(above)};
}

namespace detail::fq {
template <std::size_t R>
index_t check_per_channel(const extents<R>& e, std::span<const float> min,
                          std::span<const float> max) {
  static_assert(R >= 1, "per-channel fake quantization needs a tensor of rank >= 1");
  const index_t depth = e.extent(R - 1);
  if (static_cast<index_t>(min.size()) != depth || static_cast<index_t>(max.size()) != depth) {
    throw shape_error("per-channel min / max hold " + std::to_string(min.size()) + " / " +
                      std::to_string(max.size()) + " values but the last extent is " +
                      std::to_string(depth) + " (expected one per channel)");
  }
  return depth;
}
}  // namespace detail::fq

/// `tf.quantization.fake_quant_with_min_max_vars_per_channel`, bit for bit: the
/// channel is the **last** axis; channel c uses nudge(min[c], max[c], a) and
/// fake_quant_op::vars_per_channel (multiplication by inv_scale, unlike the
/// per-tensor vars op). A channel with min == max == 0 outputs +0.0.
/// Throws shape_error if the extents differ or min / max do not hold one value
/// per channel; config_error as nudge for any other channel range.
template <std::size_t R>
void fake_quant_with_min_max_vars_per_channel(std::type_identity_t<tensor_view<const float, R>> x,
                                              tensor_view<float, R> out, std::span<const float> min,
                                              std::span<const float> max, fake_quant_attrs a) {
  quant::detail::fq::check_same_extents(x.extents(), out.extents(), "output");
  const index_t depth = detail::fq::check_per_channel(x.extents(), min, max);
  static_cast<void>(quant_range(a));
  std::vector<nudged_params> p(static_cast<std::size_t>(depth));
  for (std::size_t c = 0; c < p.size(); ++c) {
    if (!detail::fq::is_zero_range(min[c], max[c])) p[c] = nudge(min[c], max[c], a);
  }
  if (depth == 0) return;
  const index_t rows = x.size() / depth;
  for (std::size_t c = 0; c < p.size(); ++c) {
    const auto off = static_cast<index_t>(c);
    if (detail::fq::is_zero_range(min[c], max[c])) {
      for (index_t i = 0; i < rows; ++i) out.data_handle()[i * depth + off] = 0.0f;
    } else {
      detail::fq::forward_run(x.data_handle() + off, out.data_handle() + off, rows, depth, p[c],
                              fake_quant_op::vars_per_channel);
    }
  }
}

/// `FakeQuantWithMinMaxVarsPerChannelGradient`: per channel c (last axis),
///   grad_in = grad_out * float(nmin_c <= x <= nmax_c)
///   grad_min[c] = sum over the channel of grad_out * float(x < nmin_c)
///   grad_max[c] = sum over the channel of grad_out * float(x > nmax_c)
/// (double accumulation as the per-tensor gradient). A channel with
/// min == max == 0 passes grad_out through and gets 0 sums.
/// Throws as the forward, plus shape_error if grad_min / grad_max do not hold
/// one value per channel.
template <std::size_t R>
void fake_quant_with_min_max_vars_per_channel_gradient(
    std::type_identity_t<tensor_view<const float, R>> x,
    std::type_identity_t<tensor_view<const float, R>> grad_out, tensor_view<float, R> grad_in,
    std::span<const float> min, std::span<const float> max, fake_quant_attrs a,
    std::span<float> grad_min, std::span<float> grad_max) {
  quant::detail::fq::check_same_extents(x.extents(), grad_out.extents(), "grad_out");
  quant::detail::fq::check_same_extents(x.extents(), grad_in.extents(), "grad_in");
  const index_t depth = detail::fq::check_per_channel(x.extents(), min, max);
  if (static_cast<index_t>(grad_min.size()) != depth ||
      static_cast<index_t>(grad_max.size()) != depth) {
    throw shape_error("per-channel gradient outputs hold " + std::to_string(grad_min.size()) +
                      " / " + std::to_string(grad_max.size()) + " values (expected " +
                      std::to_string(depth) + ", one per channel)");
  }
  static_cast<void>(quant_range(a));
  std::vector<nudged_params> p(static_cast<std::size_t>(depth));
  for (std::size_t c = 0; c < p.size(); ++c) {
    if (!detail::fq::is_zero_range(min[c], max[c])) p[c] = nudge(min[c], max[c], a);
  }
  if (depth == 0) return;
  const index_t rows = x.size() / depth;
  for (std::size_t c = 0; c < p.size(); ++c) {
    const auto off = static_cast<index_t>(c);
    if (detail::fq::is_zero_range(min[c], max[c])) {
      for (index_t i = 0; i < rows; ++i) {
        grad_in.data_handle()[i * depth + off] = grad_out.data_handle()[i * depth + off];
      }
      grad_min[c] = 0.0f;
      grad_max[c] = 0.0f;
      continue;
    }
    double below = 0.0;
    double above = 0.0;
    detail::fq::backward_run(x.data_handle() + off, grad_out.data_handle() + off,
                             grad_in.data_handle() + off, rows, depth, p[c], below, above);
    grad_min[c] = static_cast<float>(below);
    grad_max[c] = static_cast<float>(above);
  }
}

}  // namespace tensorflow
}  // namespace qprune::quant

// The integer quantizer policies layers take as template arguments: int8
// weights (symmetric, per output channel by default), 4-bit grouped weights,
// and the two ways of treating int8 activations (static: calibrated per tensor
// with a moving-average observer; dynamic: per call). Each weight policy also
// has the fake-quant forward and straight-through backward quantization-aware
// training uses, with exactly the codes its quantize() stores, so a converted
// layer computes what its QAT twin computed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/concepts.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/observers.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/qparams.hpp"
#include "qprune/quant/quantize.hpp"

namespace qprune::quant {

/// int8 weight storage: codes [out, in] and one (scale, zero point 0) per output
/// channel (or a single one, repeated in `params`, for per-tensor policies).
struct int8_weights {
  tensor<std::int8_t, 2> codes;
  per_channel_params params;  ///< axis 0, channels() == codes.extent(0)

  /// Bytes in storage: one per code plus a float32 scale per channel (zero points
  /// are 0 and not stored).
  [[nodiscard]] std::int64_t bytes() const noexcept {
    return static_cast<std::int64_t>(codes.size()) + 4 * params.channels();
  }
};

namespace detail::policy {

inline void check_finite(tensor_view<const float, 2, layout_stride> w, const char* who) {
  for (index_t i = 0; i < w.extent(0); ++i) {
    for (index_t j = 0; j < w.extent(1); ++j) {
      if (!std::isfinite(w(i, j))) {
        throw config_error(std::string(who) + ": weight (" + std::to_string(i) + ", " +
                           std::to_string(j) + ") is " + (std::isnan(w(i, j)) ? "NaN" : "infinite") +
                           " (expected finite weights)");
      }
    }
  }
}

inline void check_same(index_t r0, index_t c0, index_t r1, index_t c1, const char* what) {
  if (r0 != r1 || c0 != c1) {
    throw shape_error(std::string(what) + " is [" + std::to_string(r1) + ", " + std::to_string(c1) +
                      "] (expected [" + std::to_string(r0) + ", " + std::to_string(c0) + "])");
  }
}

}  // namespace detail::policy

/// int8 weights, symmetric on the narrow range [-127, 127] with zero point 0,
/// one scale per output channel (row) by default or one for the tensor:
///   s = max|w| / 127 (1 for an all-zero slice),  q = clamp(rne(w / s), -127, 127)
/// (choose_symmetric_params and quantize_value; float32 division, ties to even).
/// Pruned zeros stay exactly zero: q(0) = 0 and 0 * s = 0.
/// QAT: fake_quantize gives dq(q(w)) = s * q with the scales recomputed from the
/// current weights (TFMOT's LastValueQuantizer, per axis, symmetric, narrow);
/// as |w| <= max|w| nothing is ever clipped, so the straight-through gradient
/// passes unchanged.
struct int8 {
  using storage_type = int8_weights;
  static constexpr bool quantizes_activations = false;
  bool per_channel = true;

  /// The scales the policy chooses for `w` [out, in]. Throws config_error for a
  /// NaN or infinite weight.
  [[nodiscard]] per_channel_params choose_params(tensor_view<const float, 2, layout_stride> w) const {
    detail::policy::check_finite(w, "int8 weights");
    const index_t rows = w.extent(0);
    per_channel_params p{std::vector<float>(static_cast<std::size_t>(rows), 1.0f),
                         std::vector<std::int32_t>(static_cast<std::size_t>(rows), 0), 0};
    float all = 0.0f;
    std::vector<float> absmax(static_cast<std::size_t>(rows), 0.0f);
    for (index_t i = 0; i < rows; ++i) {
      float m = 0.0f;
      for (index_t j = 0; j < w.extent(1); ++j) m = std::max(m, std::fabs(w(i, j)));
      absmax[static_cast<std::size_t>(i)] = m;
      all = std::max(all, m);
    }
    for (index_t i = 0; i < rows; ++i) {
      const float m = per_channel ? absmax[static_cast<std::size_t>(i)] : all;
      p.scales[static_cast<std::size_t>(i)] = choose_symmetric_params(m, narrow_range(dtype::int8)).scale;
    }
    return p;
  }

  /// Quantizes w [out, in] (any layout). Throws as choose_params.
  [[nodiscard]] storage_type quantize(tensor_view<const float, 2, layout_stride> w) const {
    storage_type s{tensor<std::int8_t, 2>(w.extent(0), w.extent(1)), choose_params(w)};
    for (index_t i = 0; i < w.extent(0); ++i) {
      const affine_params p = s.params.at(i);
      for (index_t j = 0; j < w.extent(1); ++j) {
        s.codes(i, j) = static_cast<std::int8_t>(
            quantize_value(w(i, j), p, narrow_range(dtype::int8), rounding::half_to_even));
      }
    }
    return s;
  }

  /// w' = s[row] * q. Precondition: `out` has the storage's extents.
  void dequantize(const storage_type& s, tensor_view<float, 2> out) const noexcept {
    for (index_t i = 0; i < out.extent(0); ++i) {
      const affine_params p = s.params.at(i);
      for (index_t j = 0; j < out.extent(1); ++j) out(i, j) = dequantize_value(s.codes(i, j), p);
    }
  }

  /// out = dequantize(quantize(w)) in one pass (QAT forward). Throws shape_error
  /// if the extents differ, config_error as choose_params.
  void fake_quantize(tensor_view<const float, 2> w, tensor_view<float, 2> out) const {
    detail::policy::check_same(w.extent(0), w.extent(1), out.extent(0), out.extent(1),
                               "int8 fake-quant output");
    const per_channel_params p = choose_params(w);
    for (index_t i = 0; i < w.extent(0); ++i) {
      const affine_params a = p.at(i);
      for (index_t j = 0; j < w.extent(1); ++j) {
        out(i, j) = dequantize_value(quantize_value(w(i, j), a, narrow_range(dtype::int8),
                                                    rounding::half_to_even), a);
      }
    }
  }

  /// Straight-through estimator: dL/dw = dL/dw' where w is not clipped, which
  /// with max-abs scales is everywhere, so `grad` is left as it is.
  void fake_quantize_backward(tensor_view<const float, 2> w, tensor_view<float, 2> grad) const {
    detail::policy::check_same(w.extent(0), w.extent(1), grad.extent(0), grad.extent(1),
                               "int8 fake-quant gradient");
  }
};

/// 4-bit weights in groups of `group_size` along the input axis (quant/int4.hpp:
/// quantize_int4 with choose_int4_group_params); `scheme` is named explicitly.
/// QAT: fake_quantize gives dequantize(quantize(w)); the straight-through gradient
/// passes where the code was not clipped (symmetric: only -8 is never reached
/// from below, so nothing clips; affine: the range always holds [min, max]).
struct int4_grouped {
  using storage_type = packed_int4_matrix;
  static constexpr bool quantizes_activations = false;
  index_t group_size = 32;
  int4_scheme scheme = int4_scheme::symmetric;

  /// Throws config_error for a group size that is not a power of two in [16, 256]
  /// or a NaN / infinite weight.
  [[nodiscard]] storage_type quantize(tensor_view<const float, 2, layout_stride> w) const {
    detail::policy::check_finite(w, "int4 weights");
    tensor<float, 2> dense(w.extent(0), w.extent(1));
    for (index_t i = 0; i < w.extent(0); ++i)
      for (index_t j = 0; j < w.extent(1); ++j) dense(i, j) = w(i, j);
    return quantize_int4(dense.cview(), group_size, scheme);
  }
  /// w' = scale_g * (code - zero_point_g). Precondition: `out` is [rows, cols].
  void dequantize(const storage_type& s, tensor_view<float, 2> out) const {
    quant::dequantize(s, out);
  }
  /// out = dequantize(quantize(w)). Throws as quantize, shape_error for extents.
  void fake_quantize(tensor_view<const float, 2> w, tensor_view<float, 2> out) const {
    detail::policy::check_same(w.extent(0), w.extent(1), out.extent(0), out.extent(1),
                               "int4 fake-quant output");
    dequantize(quantize(w), out);
  }
  /// Straight-through: the gradient passes unchanged (no weight is clipped).
  void fake_quantize_backward(tensor_view<const float, 2> w, tensor_view<float, 2> grad) const {
    detail::policy::check_same(w.extent(0), w.extent(1), grad.extent(0), grad.extent(1),
                               "int4 fake-quant gradient");
  }
};

/// Static int8 activations: one affine (scale, zero point) per tensor, from a
/// moving-average min/max observer (PyTorch's MovingAverageMinMaxObserver update,
/// averaging constant 0.01 by default) over the batches seen while observing,
/// frozen for inference and conversion. Parameters: choose_affine_params on the
/// range widened to contain 0, over the full range of `type` (uint8 [0, 255] by
/// default, or int8 [-128, 127]).
/// QAT: fake_quantize(x, y, observe) optionally updates the observer, then
/// y = dq(q(x)); the straight-through gradient passes where the code was inside
/// the range and is 0 where x was clipped (PyTorch's fake-quant backward mask).
class static_int8 {
 public:
  static constexpr bool quantizes_activations = true;
  static constexpr bool dynamic = false;

  /// uint8 codes, averaging constant 0.01.
  static_int8() : static_int8(dtype::uint8) {}
  /// Throws config_error unless type is uint8 or int8 and 0 <= averaging_constant <= 1.
  explicit static_int8(dtype type, float averaging_constant = 0.01f)
      : type_(type), observer_(averaging_constant) {
    if (type != dtype::uint8 && type != dtype::int8) {
      throw config_error("static activation type " + std::string(to_string(type)) +
                         " (expected uint8 or int8)");
    }
  }

  /// Adds one batch to the running range (any shape, flattened). Throws
  /// config_error for NaN or infinite values, as the observer does.
  template <std::size_t R, class L>
  void observe(const tensor_view<const float, R, L>& x) { observer_.observe(x); }

  /// Whether at least one batch has been observed.
  [[nodiscard]] bool calibrated() const noexcept { return observer_.batches_seen() > 0; }
  /// The code type, uint8 or int8.
  [[nodiscard]] dtype type() const noexcept { return type_; }
  /// The code range of type().
  [[nodiscard]] qrange range() const noexcept { return full_range(type_); }
  /// The observer (its running min and max).
  [[nodiscard]] const moving_average_minmax_observer& observer() const noexcept { return observer_; }

  /// The current (scale, zero point). Throws config_error before any batch was observed.
  [[nodiscard]] affine_params params() const {
    if (!calibrated()) {
      throw config_error("static activation quantizer has observed no data (expected calibration "
                         "batches or quantization-aware training before its parameters are used)");
    }
    return choose_affine_params(observer_.min(), observer_.max(), range());
  }

  /// y = dq(q(x)) with params(), after adding x to the observer when `observe`.
  /// Throws shape_error if the sizes differ, config_error as params().
  template <std::size_t R>
  void fake_quantize(tensor_view<const float, R> x, tensor_view<float, R> y, bool observe_batch) {
    if (x.size() != y.size()) {
      throw shape_error("activation fake-quant of " + std::to_string(x.size()) + " values into " +
                        std::to_string(y.size()) + " (expected the same number)");
    }
    if (observe_batch) observe(x);
    const affine_params p = params();
    const qrange r = range();
    const float* in = x.data_handle();
    float* out = y.data_handle();
    for (index_t i = 0; i < x.size(); ++i) {
      out[i] = dequantize_value(quantize_value(in[i], p, r, rounding::half_to_even), p);
    }
  }

  /// grad[i] = 0 where x[i] was clipped (its unclamped code outside the range),
  /// unchanged elsewhere, with the current params(). Throws as fake_quantize.
  template <std::size_t R>
  void fake_quantize_backward(tensor_view<const float, R> x, tensor_view<float, R> grad) const {
    if (x.size() != grad.size()) {
      throw shape_error("activation fake-quant gradient of " + std::to_string(grad.size()) +
                        " values for " + std::to_string(x.size()) + " inputs (expected the same number)");
    }
    const affine_params p = params();
    const qrange r = range();
    const float* in = x.data_handle();
    float* g = grad.data_handle();
    for (index_t i = 0; i < x.size(); ++i) {
      const double q = unclamped_code(in[i], p.scale, p.zero_point, rounding::half_to_even);
      if (!(q >= r.qmin && q <= r.qmax)) g[i] = 0.0f;
    }
  }

 private:
  dtype type_;
  moving_average_minmax_observer observer_;
};

/// Dynamic int8 activations: parameters chosen from each call's own batch
/// (quant/dynamic.hpp, qprune's rule with uint8 codes); nothing to calibrate.
struct dynamic_int8 {
  static constexpr bool quantizes_activations = true;
  static constexpr bool dynamic = true;
};

static_assert(weight_quantizer<int8> && fake_quant_weight_quantizer<int8>);
static_assert(weight_quantizer<int4_grouped> && fake_quant_weight_quantizer<int4_grouped>);
static_assert(activation_quantizer<static_int8> && activation_quantizer<dynamic_int8>);
static_assert(!fake_quant_weight_quantizer<none>);

}  // namespace qprune::quant

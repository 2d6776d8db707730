// Dynamic quantization of linear layers: the weights are quantized once, the
// activations get their (scale, zero point) from each batch's own range at every
// call. qprune's rule, PyTorch 1.13's quantized::linear_dynamic on its fbgemm,
// qnnpack and onednn engines, and ONNX Runtime's DynamicQuantizeLinear ->
// MatMulInteger graph, each bit for bit; int8-weight modes run on the packed int8
// GEMM (kernels/gemm_s8.hpp), with the scalar path kept as their reference twin.
// Formulas, sources and tolerances: doc/quantization.md, "Dynamic quantization".
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/gemm_s8.hpp"
#include "qprune/kernels/quantize.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/qparams.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

namespace detail::dynamic_impl {

inline std::string at2(index_t i, index_t j) {
  // Appended piece by piece: "(" + std::to_string(i) trips GCC 12's -Wrestrict (PR 105329).
  std::string s(1, '(');
  s += std::to_string(i);
  s += ", ";
  s += std::to_string(j);
  s += ')';
  return s;
}

struct batch_range {
  float min = 0.0f;
  float max = 0.0f;
};

/// The smallest and largest element of a batch; throws config_error naming the
/// first element that is NaN or infinite (`what` names the tensor). An empty batch
/// gives [0, 0], as every framework does for an empty input.
inline batch_range finite_range(tensor_view<const float, 2, layout_stride> x, const char* what) {
  batch_range r{};
  bool first = true;
  for (index_t i = 0; i < x.extent(0); ++i) {
    for (index_t j = 0; j < x.extent(1); ++j) {
      const float v = x(i, j);
      if (!std::isfinite(v)) {
        throw config_error(std::string(what) + " element " + at2(i, j) + " is " +
                           (std::isnan(v) ? "NaN" : "infinite") +
                           " (expected finite values: dynamic quantization takes its range "
                           "from the data)");
      }
      if (first) {
        r = {v, v};
        first = false;
      } else {
        r.min = std::min(r.min, v);
        r.max = std::max(r.max, v);
      }
    }
  }
  return r;
}

/// ONNX Runtime's GetQuantizationParameter<uint8_t> (core/util/qmath.h) after the
/// data min/max: float32 throughout. Preconditions: lo <= 0 <= hi, both finite.
inline affine_params ort_dql_params(float lo, float hi) {
  const float diff = hi - lo;
  if (!std::isfinite(diff)) {
    throw config_error("input range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                       "] overflows float32 (max - min is infinite; ONNX Runtime would "
                       "return an infinite scale)");
  }
  const float scale = hi == lo ? 1.0f : diff / 255.0f;
  if (!(scale > 0.0f)) {
    throw config_error("input range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                       "] is too small: (max - min) / 255 underflows to 0 (expected max - min "
                       ">= 1.8e-43)");
  }
  const float initial = 0.0f - lo / scale;
  // RoundHalfToEven(x) = x - remainderf(x, 1), which equals nearbyint for finite x.
  const float zp = std::nearbyint(std::max(0.0f, std::min(255.0f, initial)));
  return {scale, static_cast<std::int32_t>(zp)};
}

/// MlasQuantizeLinear<uint8_t> for one value: divide, clamp to the range shifted
/// by the zero point, round half to even (cvtps2dq), add the zero point.
/// Precondition: x finite, p from ort_dql_params.
inline std::uint8_t ort_quantize(float x, affine_params p) noexcept {
  float v = x / p.scale;
  v = std::max(v, static_cast<float>(0 - p.zero_point));
  v = std::min(v, static_cast<float>(255 - p.zero_point));
  return static_cast<std::uint8_t>(static_cast<std::int32_t>(std::nearbyint(v)) + p.zero_point);
}

}  // namespace detail::dynamic_impl

namespace onnxruntime {

/// ONNX `DynamicQuantizeLinear` (opset 11, uint8 output) as ONNX Runtime's CPU
/// kernel computes it (dynamicquantizelinear.cc -> GetQuantizationParameter and
/// MlasQuantizeLinear), writing y[i] for every x[i] and returning (scale, zero point).
///
/// Numerics (all float32, round half to even under FE_TONEAREST):
///   lo = min(0, min x), hi = max(0, max x)
///   scale = 1 if hi == lo (all zeros or empty), else (hi - lo) / 255
///   zero_point = round_half_even(clamp(0 - lo / scale, 0, 255))
///   y = round_half_even(clamp(x / scale, -zero_point, 255 - zero_point)) + zero_point
/// The last line equals the spec's saturate(round(x / scale) + zero_point).
///
/// Where the ONNX spec text and the kernel differ: the spec divides by
/// scale = (hi - lo) / 255 = 0 for an all-zero (or empty) input; the kernel uses
/// scale 1 instead, so such input gives scale 1, zero point 0, codes 0. NaN is
/// implementation-defined in both; qprune rejects it (below).
///
/// Errors: shape_error if x and y differ in size; config_error if an element of
/// x is NaN or infinite, if hi - lo overflows float32 (ORT would return an
/// infinite scale) or if (hi - lo) / 255 underflows to 0 (hi - lo below about 1.8e-43).
[[nodiscard]] inline affine_params dynamic_quantize_linear(std::span<const float> x,
                                                         std::span<std::uint8_t> y) {
  if (x.size() != y.size()) {
    throw shape_error("DynamicQuantizeLinear output has " + std::to_string(y.size()) +
                      " elements for " + std::to_string(x.size()) + " inputs (expected equal sizes)");
  }
  const auto r = detail::dynamic_impl::finite_range(
      tensor_view<const float, 2>(x.data(), index_t{1}, static_cast<index_t>(x.size())), "input");
  const affine_params p =
      detail::dynamic_impl::ort_dql_params(std::min(r.min, 0.0f), std::max(r.max, 0.0f));
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = detail::dynamic_impl::ort_quantize(x[i], p);
  return p;
}

}  // namespace onnxruntime

/// Whose dynamic quantization a `dynamic_linear` reproduces.
enum class dynamic_compat : std::uint8_t {
  qprune,       ///< qprune's own rule (choose_affine_params, division, half to even)
  pytorch,      ///< PyTorch 1.13 quantized::linear_dynamic (nn.quantized.dynamic.Linear)
  onnxruntime,  ///< ONNX Runtime: DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add
};

/// The PyTorch quantized engine (torch.backends.quantized.engine). They share
/// ChooseQuantizationParams but quantize the input and rescale the output differently.
enum class pytorch_engine : std::uint8_t {
  fbgemm,   ///< x86 server default ("fbgemm", "x86")
  qnnpack,  ///< mobile / ARM; ignores reduce_range
  onednn,   ///< oneDNN (ideep)
};

/// PyTorch's reduce_range for the activations: reduced = [0, 127] instead of [0, 255].
enum class activation_range : std::uint8_t { full, reduced };

/// One weight scale (and zero point) for the whole matrix, or one per output row.
enum class weight_granularity : std::uint8_t { per_tensor, per_channel };

constexpr std::string_view to_string(dynamic_compat c) noexcept {
  switch (c) {
    case dynamic_compat::qprune: return "qprune";
    case dynamic_compat::pytorch: return "pytorch";
    case dynamic_compat::onnxruntime: return "onnxruntime";
  }
  return "unknown";
}

constexpr std::string_view to_string(pytorch_engine e) noexcept {
  switch (e) {
    case pytorch_engine::fbgemm: return "fbgemm";
    case pytorch_engine::qnnpack: return "qnnpack";
    case pytorch_engine::onednn: return "onednn";
  }
  return "unknown";
}

/// Everything that decides a dynamic layer's numerics. Build it with one of the
/// factories, which set every field the mode uses; the fields a mode does not use
/// keep their defaults and are ignored.
struct dynamic_scheme {
  dynamic_compat compat = dynamic_compat::qprune;
  pytorch_engine engine = pytorch_engine::fbgemm;  ///< pytorch only
  activation_range range = activation_range::full;  ///< pytorch only (qnnpack ignores it)
  dtype activation_type = dtype::uint8;  ///< qprune: uint8 or int8; otherwise uint8
  dtype weight_type = dtype::int8;       ///< onnxruntime: int8 or uint8; otherwise int8

  /// qprune's rule with uint8 [0, 255] or int8 [-128, 127] activations.
  [[nodiscard]] static constexpr dynamic_scheme for_qprune(dtype activation_type) noexcept {
    return {dynamic_compat::qprune, pytorch_engine::fbgemm, activation_range::full,
            activation_type, dtype::int8};
  }
  /// PyTorch on `engine`; nn.quantized.dynamic.Linear passes reduce_range=True,
  /// i.e. activation_range::reduced.
  [[nodiscard]] static constexpr dynamic_scheme for_pytorch(pytorch_engine engine,
                                                            activation_range range) noexcept {
    return {dynamic_compat::pytorch, engine, range, dtype::uint8, dtype::int8};
  }
  /// ONNX Runtime's quantize_dynamic with weight_type QInt8 (symmetric, the
  /// default) or QUInt8 (asymmetric).
  [[nodiscard]] static constexpr dynamic_scheme for_onnxruntime(dtype weight_type) noexcept {
    return {dynamic_compat::onnxruntime, pytorch_engine::fbgemm, activation_range::full,
            dtype::uint8, weight_type};
  }

  friend constexpr bool operator==(const dynamic_scheme&, const dynamic_scheme&) = default;
};

/// The activation parameters one forward call chose from its batch.
struct dynamic_activation_params {
  float min = 0.0f;  ///< smallest element of the batch (0 for an empty batch)
  float max = 0.0f;  ///< largest element of the batch (0 for an empty batch)
  /// The scale as the rule returned it: PyTorch's ChooseQuantizationParams returns
  /// a double (narrowed to float where used); the other rules a float, exact here.
  double scale = 1.0;
  std::int32_t zero_point = 0;

  /// (float(scale), zero_point): the pair the quantizer applies.
  [[nodiscard]] affine_params as_affine() const noexcept {
    return {static_cast<float>(scale), zero_point};
  }
  friend bool operator==(const dynamic_activation_params&,
                         const dynamic_activation_params&) = default;
};

/// Throws config_error unless the fields of `s` fit its mode: qprune takes uint8
/// or int8 activations and int8 weights; pytorch uint8 activations, int8 weights
/// and a known engine and range; onnxruntime uint8 activations and int8 or uint8
/// weights. The factories always produce valid schemes.
inline void validate(const dynamic_scheme& s) {
  auto bad = [&](const std::string& what) {
    throw config_error("dynamic scheme for " + std::string(to_string(s.compat)) + ": " + what);
  };
  switch (s.compat) {
    case dynamic_compat::qprune:
      if (s.activation_type != dtype::uint8 && s.activation_type != dtype::int8) {
        bad("activation type " + std::string(to_string(s.activation_type)) +
            " is not supported (expected uint8 or int8)");
      }
      if (s.weight_type != dtype::int8) bad("weights must be int8");
      return;
    case dynamic_compat::pytorch:
      if (s.engine != pytorch_engine::fbgemm && s.engine != pytorch_engine::qnnpack &&
          s.engine != pytorch_engine::onednn) {
        bad("unknown engine (expected fbgemm, qnnpack or onednn)");
      }
      if (s.range != activation_range::full && s.range != activation_range::reduced) {
        bad("unknown activation range (expected full or reduced)");
      }
      if (s.activation_type != dtype::uint8 || s.weight_type != dtype::int8) {
        bad("PyTorch quantizes activations to quint8 and weights to qint8");
      }
      return;
    case dynamic_compat::onnxruntime:
      if (s.activation_type != dtype::uint8) bad("DynamicQuantizeLinear outputs uint8 only");
      if (s.weight_type != dtype::int8 && s.weight_type != dtype::uint8) {
        bad("weight type " + std::string(to_string(s.weight_type)) +
            " is not supported (expected int8 or uint8)");
      }
      return;
  }
  throw config_error("dynamic scheme has an unknown compatibility mode (expected qprune, "
                     "pytorch or onnxruntime)");
}

namespace detail::dynamic_impl {
/// choose_dynamic_activation_params after the range: the rule of `s` applied to
/// [r.min, r.max] (finite). Throws config_error as the onnxruntime rule does.
[[nodiscard]] inline dynamic_activation_params params_from_range(batch_range r,
                                                                 const dynamic_scheme& s) {
  dynamic_activation_params a{r.min, r.max, 1.0, 0};
  switch (s.compat) {
    case dynamic_compat::pytorch: {
      const bool reduce = s.range == activation_range::reduced && s.engine != pytorch_engine::qnnpack;
      const auto q = pytorch::choose_quantization_params(r.min, r.max, 0, 255, false, false, reduce);
      a.scale = q.scale;
      a.zero_point = q.zero_point;
      return a;
    }
    case dynamic_compat::onnxruntime: {
      const affine_params p =
          detail::dynamic_impl::ort_dql_params(std::min(r.min, 0.0f), std::max(r.max, 0.0f));
      a.scale = p.scale;
      a.zero_point = p.zero_point;
      return a;
    }
    case dynamic_compat::qprune: break;
  }
  const affine_params p = choose_affine_params(r.min, r.max, full_range(s.activation_type));
  a.scale = p.scale;
  a.zero_point = p.zero_point;
  return a;
}
}  // namespace detail::dynamic_impl

/// The activation parameters scheme `s` chooses for the batch `x` (every element,
/// one pair for the whole batch), as dynamic_linear::forward does:
///   qprune       choose_affine_params(min, max, full range of s.activation_type)
///   pytorch      pytorch::choose_quantization_params(min, max, 0, 255, false, false,
///                range == reduced && engine != qnnpack)   (scale stays a double)
///   onnxruntime  the scale and zero point of onnxruntime::dynamic_quantize_linear
/// An empty batch uses min = max = 0 (what every framework does).
/// Throws config_error for a NaN or infinite element, an invalid scheme, or (onnxruntime)
/// a range whose scale overflows or underflows (see dynamic_quantize_linear).
[[nodiscard]] inline dynamic_activation_params choose_dynamic_activation_params(
    tensor_view<const float, 2, layout_stride> x, const dynamic_scheme& s) {
  validate(s);
  const auto r = detail::dynamic_impl::finite_range(x, "input");
  return detail::dynamic_impl::params_from_range(r, s);
}

namespace detail::dynamic_impl {

/// The activation quantizer of a scheme with one call's parameters, prepared once.
/// operator() returns the code q (not q - zero point); see dynamic_linear for the
/// formulas. Precondition: the value is finite and `a` came from `s`.
class input_quantizer {
 public:
  input_quantizer(const dynamic_activation_params& a, const dynamic_scheme& s) noexcept
      : s_(s), range_(full_range(s.activation_type)), scale_(static_cast<float>(a.scale)),
        inv_(1.0f / scale_), inv_d_(static_cast<float>(1.0 / a.scale)), zp_(a.zero_point) {}

  std::int32_t operator()(float v) const noexcept {
    const auto zf = static_cast<float>(zp_);
    switch (s_.compat) {
      case dynamic_compat::pytorch:
        switch (s_.engine) {
          case pytorch_engine::fbgemm:  // QuantizeAvx2<uint8_t, LEGACY>: one rounding
            return saturate_to_int(std::nearbyint(std::fma(v, inv_, zf)), 0, 255, 0);
          case pytorch_engine::qnnpack:  // at::quantize_per_tensor
            return saturate_to_int(zf + std::nearbyint(v * inv_), 0, 255, 0);
          case pytorch_engine::onednn:  // ideep reorder: product rounded, then + zp
            return saturate_to_int(std::nearbyint(unfused(v * inv_d_) + zf), 0, 255, 0);
        }
        return 0;
      case dynamic_compat::onnxruntime: return ort_quantize(v, {scale_, zp_});
      case dynamic_compat::qprune: break;
    }
    return saturate_to_int(std::nearbyint(v / scale_), range_.qmin - zp_, range_.qmax - zp_, 0) +
           zp_;
  }

 private:
  dynamic_scheme s_;
  qrange range_;
  float scale_;
  float inv_;    // 1.0f / float(scale): torch
  float inv_d_;  // float(1.0 / scale): ideep
  std::int32_t zp_;
};

}  // namespace detail::dynamic_impl

/// The activation code of one value under scheme `s` with one call's parameters
/// `a` (from choose_dynamic_activation_params), exactly as dynamic_linear::forward
/// quantizes it; the formulas are listed at dynamic_linear. Preconditions
/// (unchecked): x finite, `a` chosen by the same valid scheme.
[[nodiscard]] inline std::int32_t quantize_activation(float x, const dynamic_activation_params& a,
                                                      const dynamic_scheme& s) noexcept {
  return detail::dynamic_impl::input_quantizer(a, s)(x);
}

/// A linear layer y = x W^T + b with int8 (or uint8) weights quantized once and
/// activations quantized per call from the batch's [min, max]:
///   y[m, n] = dequant( sum_k (qx[m, k] - zx) * (qw[n, k] - zw[n]) ) + b[n]
///
/// Modes (doc/quantization.md, "Dynamic quantization", has the derivations):
///
/// qprune (`for_qprune(uint8 | int8)`)
///   weights   s_w = absmax / 127 (1 if absmax = 0), zw = 0, qw = clamp(rne(w / s_w), -127, 127)
///   input     (s_x, zx) = choose_affine_params(min x, max x, full range of the type)
///             qx = clamp(rne(x / s_x) + zx, qmin, qmax)
///   output    y = float(acc) * float(s_x * s_w[n]) + b[n]          (two roundings)
///
/// pytorch (`for_pytorch(engine, range)`), PyTorch 1.13:
///   weights   the default dynamic observers: s_w = max(absmax / 127.5f, FLT_EPSILON), zw = 0,
///             qw = clamp(rne(w * (1.0f / s_w)), -128, 127) (so +absmax -> 127.5 -> 127)
///   input     s (double), zx = ChooseQuantizationParams(min x, max x, 0, 255, reduce)
///             with reduce = (range == reduced && engine != qnnpack); codes saturate to
///             [0, 255] in every engine, even when the range was reduced
///     fbgemm  qx = rne(fma(x, 1.0f / float(s), float(zx)))         (QuantizeAvx2, one rounding)
///     qnnpack qx = float(zx) + rne(x * (1.0f / float(s)))          (at::quantize_per_tensor)
///     onednn  qx = rne(float(x * ix) + float(zx)), ix = float(1.0 / s)  (ideep reorder)
///   output
///     fbgemm, qnnpack  y = float(acc) * float(float(s) * s_w[n]) + b[n]
///     onednn  c = ix * float(1.0 / s_w[n]); y = (float(acc) + b[n] * c) * (1.0f / c)
///
/// onnxruntime (`for_onnxruntime(int8 | uint8)`), the unfused quantize_dynamic graph:
///   weights   int8: compute_scale_zp(min, max, [-127, 127], symmetric) (s_w = absmax / 127, zw = 0);
///             uint8: compute_scale_zp(min, max, [0, 255], affine);
///             qw = clamp(rne(float(w / s_w)) + zw, type range)     (quantize_nparray)
///   input     (s_x, zx), qx = onnxruntime::dynamic_quantize_linear(x)
///   output    y = float(acc) * float(s_x * s_w[n]) + b[n]          (Cast, Mul, Add nodes)
///
/// Every mode accumulates exactly in int32; `max_in_features` bounds K so that no
/// partial sum can overflow. float(acc) rounds to nearest even above 2^24, as
/// cvtdq2ps does in every framework. Weight statistics are per row (per_channel) or
/// over the whole matrix (per_tensor); an all-zero row gets scale 1 and codes 0
/// (qprune, onnxruntime) or PyTorch's eps scale and codes 0 (pytorch).
///
/// Errors: shape_error for empty weights (N or K = 0), a bias that is neither empty
/// nor N long, or forward views whose extents do not fit; config_error for NaN or
/// infinite weights, bias or inputs, K above max_in_features(scheme), or a scheme
/// whose fields do not fit its mode.
///
/// Speed: every mode with int8 weights except PyTorch's onednn engine (whose output
/// stage differs) runs on the packed int8 GEMM of kernels/gemm_s8.hpp with the
/// SIMD input quantizer of kernels/quantize.hpp and the unfused float output stage,
/// giving the same bits as the scalar path, which is kept as their reference twin
/// and runs when the layer is built for isa::scalar (or QPRUNE_FORCE_ISA=scalar).
///
/// Thread safety: forward records the last call's parameters and reuses a scratch
/// buffer, so one object must not run forward from two threads at once; copies
/// are independent.
class dynamic_linear {
 public:
  /// Quantizes `weight` [N, K] (any layout; row n is output n) once and copies
  /// `bias` (empty for none, which is the same as zeros). `path` is the
  /// instruction set forward runs on (config_error if the CPU lacks it).
  dynamic_linear(tensor_view<const float, 2, layout_stride> weight, std::span<const float> bias,
                 weight_granularity granularity, const dynamic_scheme& scheme,
                 kernels::isa path = kernels::active_isa())
      : scheme_(scheme), granularity_(granularity), path_(path), n_(weight.extent(0)),
        k_(weight.extent(1)) {
    validate(scheme);
    kernels::require_supported(path);
    if (granularity != weight_granularity::per_tensor &&
        granularity != weight_granularity::per_channel) {
      throw config_error("weight granularity " + std::to_string(static_cast<int>(granularity)) +
                         " is not valid (expected per_tensor or per_channel)");
    }
    if (n_ < 1 || k_ < 1) {
      throw shape_error("weight is [" + std::to_string(n_) + ", " + std::to_string(k_) +
                        "] (expected at least one output and one input feature)");
    }
    if (k_ > max_in_features(scheme)) {
      throw config_error(
          "in_features " + std::to_string(k_) + " exceeds " +
          std::to_string(max_in_features(scheme)) + " for " + std::string(to_string(scheme.compat)) +
          " (expected K * 255 * max|qw - zw| <= 2^31 - 1 so the int32 accumulator cannot overflow)");
    }
    if (!bias.empty() && static_cast<index_t>(bias.size()) != n_) {
      throw shape_error("bias has " + std::to_string(bias.size()) + " elements for " +
                        std::to_string(n_) + " outputs (expected " + std::to_string(n_) +
                        " or none)");
    }
    static_cast<void>(detail::dynamic_impl::finite_range(weight, "weight"));
    bias_.assign(static_cast<std::size_t>(n_), 0.0f);
    for (std::size_t i = 0; i < bias.size(); ++i) {
      if (!std::isfinite(bias[i])) {
        throw config_error("bias element " + std::to_string(i) + " is " +
                           (std::isnan(bias[i]) ? "NaN" : "infinite") + " (expected finite values)");
      }
      bias_[i] = bias[i];
    }
    quantize_weights(weight);
    if (uses_gemm_kernel()) {
      packed_ = kernels::pack_s8(tensor_view<const std::int8_t, 2>(w_s8_.data(), n_, k_), path_);
      out_scale_.resize(static_cast<std::size_t>(n_));
    }
  }

  /// y = dequant(quant(x) * qw^T) + b for x [M, K] into y [M, N] (any layouts).
  /// Chooses the activation parameters from this batch, records them
  /// (last_activation_params) and returns them. M = 0 is allowed: the parameters
  /// come from the range [0, 0] and nothing is written. y may alias x: x is fully
  /// read (quantized into a scratch buffer) before y is written.
  /// Complexity: O(M K N) integer multiply-adds; allocates M*K int16 once per
  /// larger batch.
  dynamic_activation_params forward(tensor_view<const float, 2, layout_stride> x,
                                    tensor_view<float, 2, layout_stride> y) {
    if (x.extent(1) != k_ || y.extent(0) != x.extent(0) || y.extent(1) != n_) {
      throw shape_error("forward got x [" + std::to_string(x.extent(0)) + ", " +
                        std::to_string(x.extent(1)) + "] and y [" + std::to_string(y.extent(0)) +
                        ", " + std::to_string(y.extent(1)) + "] (expected x [M, " +
                        std::to_string(k_) + "] and y [M, " + std::to_string(n_) + "])");
    }
    if (uses_gemm_kernel()) {
      forward_gemm(x, y);
      return last_;
    }
    last_ = choose_dynamic_activation_params(x, scheme_);
    quantize_input(x);
    if (weight_type() == dtype::int8) {
      run(std::span<const std::int8_t>(w_s8_), y);
    } else {
      run(std::span<const std::uint8_t>(w_u8_), y);
    }
    return last_;
  }

  [[nodiscard]] index_t in_features() const noexcept { return k_; }
  /// The instruction set forward runs on.
  [[nodiscard]] kernels::isa path() const noexcept { return path_; }
  /// Whether forward runs on the packed int8 GEMM (see "Speed" above) rather
  /// than the scalar reference path.
  [[nodiscard]] bool uses_gemm_kernel() const noexcept {
    return path_ != kernels::isa::scalar && weight_type() == dtype::int8 &&
           !(scheme_.compat == dynamic_compat::pytorch && scheme_.engine == pytorch_engine::onednn) &&
           k_ <= kernels::max_gemm_s8_k;
  }
  [[nodiscard]] index_t out_features() const noexcept { return n_; }
  [[nodiscard]] const dynamic_scheme& scheme() const noexcept { return scheme_; }
  [[nodiscard]] weight_granularity granularity() const noexcept { return granularity_; }
  /// int8, or uint8 for for_onnxruntime(dtype::uint8).
  [[nodiscard]] dtype weight_type() const noexcept { return scheme_.weight_type; }

  /// The weight codes [N, K], row-major. T must match weight_type() (std::int8_t
  /// or std::uint8_t), else config_error.
  template <class T>
    requires(std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t>)
  [[nodiscard]] tensor_view<const T, 2> weight_codes() const {
    constexpr dtype want = std::same_as<T, std::int8_t> ? dtype::int8 : dtype::uint8;
    if (want != weight_type()) {
      throw config_error("weights are stored as " + std::string(to_string(weight_type())) +
                         ", not " + std::string(to_string(want)));
    }
    if constexpr (std::same_as<T, std::int8_t>) {
      return tensor_view<const T, 2>(w_s8_.data(), n_, k_);
    } else {
      return tensor_view<const T, 2>(w_u8_.data(), n_, k_);
    }
  }

  /// Weight scales and zero points along axis 0: N entries per channel, 1 per tensor.
  [[nodiscard]] const per_channel_params& weight_params() const noexcept { return wparams_; }
  /// The bias as used (zeros when none was given), N values.
  [[nodiscard]] std::span<const float> bias() const noexcept { return bias_; }
  /// The parameters the last forward call chose (default-constructed before the first).
  [[nodiscard]] const dynamic_activation_params& last_activation_params() const noexcept {
    return last_;
  }

  /// The largest K whose int32 accumulator cannot overflow for `s`:
  /// floor((2^31 - 1) / (255 * w)), where 255 bounds |qx - zx| for 8-bit activations
  /// and w bounds |qw - zw|: 127 for qprune ([-127, 127], zw = 0) -> 66311; 128 for
  /// pytorch and onnxruntime int8 (codes clamp to [-128, 127]) -> 65793; 255 for
  /// onnxruntime uint8 (zw in [0, 255]) -> 33025.
  [[nodiscard]] static constexpr index_t max_in_features(const dynamic_scheme& s) noexcept {
    std::int64_t w = 127;
    if (s.compat == dynamic_compat::pytorch) w = 128;
    if (s.compat == dynamic_compat::onnxruntime) w = s.weight_type == dtype::uint8 ? 255 : 128;
    return static_cast<index_t>(std::int64_t{std::numeric_limits<std::int32_t>::max()} / (255 * w));
  }

 private:
  /// (scale, zero point) of one weight slice with statistics min, max, absmax.
  [[nodiscard]] affine_params weight_slice_params(float lo, float hi) const {
    switch (scheme_.compat) {
      case dynamic_compat::pytorch: {
        pytorch::observer_config c;
        c.type = dtype::int8;
        c.scheme = granularity_ == weight_granularity::per_channel
                       ? pytorch::qscheme::per_channel_symmetric
                       : pytorch::qscheme::per_tensor_symmetric;
        return pytorch::calculate_qparams(lo, hi, c);
      }
      case dynamic_compat::onnxruntime:
        return scheme_.weight_type == dtype::int8
                   ? onnxruntime::compute_scale_zp(
                         lo, hi, onnxruntime::qrange_for(dtype::int8, false, true), true)
                   : onnxruntime::compute_scale_zp(
                         lo, hi, onnxruntime::qrange_for(dtype::uint8, false, false), false);
      case dynamic_compat::qprune: break;
    }
    return choose_symmetric_params(std::max(-lo, hi), narrow_range(dtype::int8));
  }

  /// One weight code, as the mode's weight quantizer computes it.
  [[nodiscard]] std::int32_t weight_code(float w, affine_params p) const noexcept {
    switch (scheme_.compat) {
      case dynamic_compat::pytorch:
        // quantize_per_channel / quantize_per_tensor with zero point 0: every torch
        // build (reciprocal, fbgemm fma or fbgemm legacy) gives rne(w * (1.0f / s)).
        return saturate_to_int(std::nearbyint(w * (1.0f / p.scale)), -128, 127, 0);
      case dynamic_compat::onnxruntime: {
        const qrange t = full_range(scheme_.weight_type);
        return saturate_to_int(std::nearbyint(w / p.scale) + static_cast<float>(p.zero_point),
                               t.qmin, t.qmax, p.zero_point);
      }
      case dynamic_compat::qprune: break;
    }
    return saturate_to_int(std::nearbyint(w / p.scale), -127, 127, 0);
  }

  void quantize_weights(tensor_view<const float, 2, layout_stride> w) {
    const bool per_channel = granularity_ == weight_granularity::per_channel;
    const index_t slices = per_channel ? n_ : 1;
    wparams_ = per_channel_params{std::vector<float>(static_cast<std::size_t>(slices)),
                                  std::vector<std::int32_t>(static_cast<std::size_t>(slices)), 0};
    for (index_t c = 0; c < slices; ++c) {
      const index_t r0 = per_channel ? c : 0;
      const index_t r1 = per_channel ? c + 1 : n_;
      float lo = w(r0, 0);
      float hi = lo;
      for (index_t i = r0; i < r1; ++i) {
        for (index_t j = 0; j < k_; ++j) {
          lo = std::min(lo, w(i, j));
          hi = std::max(hi, w(i, j));
        }
      }
      const affine_params p = weight_slice_params(lo, hi);
      wparams_.scales[static_cast<std::size_t>(c)] = p.scale;
      wparams_.zero_points[static_cast<std::size_t>(c)] = p.zero_point;
    }
    const auto total = static_cast<std::size_t>(n_ * k_);
    if (weight_type() == dtype::int8) {
      w_s8_.resize(total);
    } else {
      w_u8_.resize(total);
    }
    row_scale_.resize(static_cast<std::size_t>(n_));
    row_zp_.resize(static_cast<std::size_t>(n_));
    for (index_t i = 0; i < n_; ++i) {
      const affine_params p = wparams_.at(per_channel ? i : 0);
      row_scale_[static_cast<std::size_t>(i)] = p.scale;
      row_zp_[static_cast<std::size_t>(i)] = p.zero_point;
      for (index_t j = 0; j < k_; ++j) {
        const std::int32_t q = weight_code(w(i, j), p);
        const auto at = static_cast<std::size_t>(i * k_ + j);
        if (weight_type() == dtype::int8) {
          w_s8_[at] = static_cast<std::int8_t>(q);
        } else {
          w_u8_[at] = static_cast<std::uint8_t>(q);
        }
      }
    }
  }

  /// The batch range on the SIMD path: row by row when rows are contiguous; the
  /// scalar scan (which names the first bad element) when anything is not finite.
  [[nodiscard]] detail::dynamic_impl::batch_range fast_range(
      tensor_view<const float, 2, layout_stride> x) const {
    const index_t m_rows = x.extent(0);
    if (m_rows == 0 || k_ == 0 || x.stride(1) != 1) return detail::dynamic_impl::finite_range(x, "input");
    detail::dynamic_impl::batch_range r{};
    for (index_t i = 0; i < m_rows; ++i) {
      const auto row = kernels::range_of(
          std::span<const float>(&x(i, 0), static_cast<std::size_t>(k_)), path_);
      if (!row.finite) return detail::dynamic_impl::finite_range(x, "input");  // throws
      r = i == 0 ? detail::dynamic_impl::batch_range{row.min, row.max}
                 : detail::dynamic_impl::batch_range{std::min(r.min, row.min), std::max(r.max, row.max)};
    }
    return r;
  }

  /// The mode's input quantizer as a bulk kernel (same codes as input_quantizer).
  [[nodiscard]] kernels::linear_quantizer bulk_quantizer() const noexcept {
    const auto scale = static_cast<float>(last_.scale);
    kernels::linear_quantizer q{scale, last_.zero_point, 0, 255, kernels::quantize_op::divide};
    if (scheme_.compat == dynamic_compat::pytorch) {
      q.factor = 1.0f / scale;
      q.op = scheme_.engine == pytorch_engine::fbgemm ? kernels::quantize_op::multiply_add
                                                      : kernels::quantize_op::multiply;
    } else if (scheme_.compat == dynamic_compat::qprune) {
      const qrange r = full_range(scheme_.activation_type);
      q.qmin = r.qmin;
      q.qmax = r.qmax;
    }
    return q;
  }

  /// forward on the int8 GEMM: range, bulk quantization, GEMM with the unfused
  /// float stage y = float(acc) * float(s_x * s_w[n]) + b[n].
  void forward_gemm(tensor_view<const float, 2, layout_stride> x,
                    tensor_view<float, 2, layout_stride> y) {
    last_ = detail::dynamic_impl::params_from_range(fast_range(x), scheme_);
    const index_t m_rows = x.extent(0);
    if (m_rows == 0) return;
    const bool signed_codes = scheme_.activation_type == dtype::int8;
    codes_.resize(static_cast<std::size_t>(m_rows * k_));
    const kernels::linear_quantizer q = bulk_quantizer();
    std::vector<float> strided;
    for (index_t i = 0; i < m_rows; ++i) {
      const float* row = &x(i, 0);
      if (x.stride(1) != 1) {
        strided.resize(static_cast<std::size_t>(k_));
        for (index_t j = 0; j < k_; ++j) strided[static_cast<std::size_t>(j)] = x(i, j);
        row = strided.data();
      }
      const std::span<const float> in(row, static_cast<std::size_t>(k_));
      std::uint8_t* out = codes_.data() + i * k_;
      if (signed_codes) {
        kernels::quantize_linear(in, q, std::span<std::int8_t>(reinterpret_cast<std::int8_t*>(out),
                                                               static_cast<std::size_t>(k_)), path_);
      } else {
        kernels::quantize_linear(in, q, std::span<std::uint8_t>(out, static_cast<std::size_t>(k_)), path_);
      }
    }
    const auto sx = static_cast<float>(last_.scale);
    for (std::size_t n = 0; n < out_scale_.size(); ++n) out_scale_[n] = sx * row_scale_[n];
    const kernels::store_float stage{out_scale_.data(), bias_.data(), false, false};
    const bool direct = y.stride(1) == 1 || n_ == 1;
    float* out = y.data_handle();
    index_t ldo = y.stride(0);
    if (!direct) {
      y_scratch_.resize(static_cast<std::size_t>(m_rows * n_));
      out = y_scratch_.data();
      ldo = n_;
    }
    if (signed_codes) {
      kernels::run_gemm_s8(tensor_view<const std::int8_t, 2>(
                               reinterpret_cast<const std::int8_t*>(codes_.data()), m_rows, k_),
                           last_.zero_point, *packed_, out, ldo, stage);
    } else {
      kernels::run_gemm_s8(tensor_view<const std::uint8_t, 2>(codes_.data(), m_rows, k_),
                           last_.zero_point, *packed_, out, ldo, stage);
    }
    if (!direct) {
      for (index_t i = 0; i < m_rows; ++i)
        for (index_t j = 0; j < n_; ++j) y(i, j) = y_scratch_[static_cast<std::size_t>(i * n_ + j)];
    }
  }

  /// xz_[m*K + k] = qx[m, k] - zx with the mode's quantizer.
  void quantize_input(tensor_view<const float, 2, layout_stride> x) {
    const index_t m_rows = x.extent(0);
    xz_.resize(static_cast<std::size_t>(m_rows * k_));
    const detail::dynamic_impl::input_quantizer quantize(last_, scheme_);
    for (index_t i = 0; i < m_rows; ++i) {
      for (index_t j = 0; j < k_; ++j) {
        xz_[static_cast<std::size_t>(i * k_ + j)] =
            static_cast<std::int16_t>(quantize(x(i, j)) - last_.zero_point);
      }
    }
  }

  /// The integer product and the mode's float rescale, into y.
  template <class T>
  void run(std::span<const T> wq, tensor_view<float, 2, layout_stride> y) const {
    using quant::detail::unfused;
    const auto sx = static_cast<float>(last_.scale);
    const bool onednn = scheme_.compat == dynamic_compat::pytorch &&
                        scheme_.engine == pytorch_engine::onednn;
    const auto ix = static_cast<float>(1.0 / last_.scale);
    for (index_t n = 0; n < n_; ++n) {
      const auto un = static_cast<std::size_t>(n);
      const std::int32_t zw = row_zp_[un];
      const float b = bias_[un];
      // onednn: bias pre-scaled by c = ix * iw, one rescale by 1/c after the add;
      // the others: one multiplier s_x * s_w, then the bias.
      const float c = ix * static_cast<float>(1.0 / static_cast<double>(row_scale_[un]));
      const float bq = unfused(b * c);
      const float rescale = 1.0f / c;
      const float mul = sx * row_scale_[un];
      const T* wrow = wq.data() + n * k_;
      for (index_t m = 0; m < y.extent(0); ++m) {
        const std::int16_t* xrow = xz_.data() + m * k_;
        std::int32_t acc = 0;
        for (index_t k = 0; k < k_; ++k) {
          acc += static_cast<std::int32_t>(xrow[k]) * (static_cast<std::int32_t>(wrow[k]) - zw);
        }
        const auto accf = static_cast<float>(acc);
        y(m, n) = onednn ? (accf + bq) * rescale : unfused(accf * mul) + b;
      }
    }
  }

  dynamic_scheme scheme_;
  weight_granularity granularity_;
  kernels::isa path_ = kernels::isa::scalar;
  index_t n_ = 0;
  index_t k_ = 0;
  std::vector<std::int8_t> w_s8_;
  std::vector<std::uint8_t> w_u8_;
  per_channel_params wparams_;
  std::vector<float> row_scale_;
  std::vector<std::int32_t> row_zp_;
  std::vector<float> bias_;
  dynamic_activation_params last_{};
  std::vector<std::int16_t> xz_;
  std::optional<kernels::packed_s8> packed_;  // the int8-GEMM path's weights
  std::vector<float> out_scale_;             // s_x * s_w[n] of the last call
  std::vector<std::uint8_t> codes_;          // the last call's input codes (int8 as bytes)
  std::vector<float> y_scratch_;             // output rows when y is not row-contiguous
};

}  // namespace qprune::quant

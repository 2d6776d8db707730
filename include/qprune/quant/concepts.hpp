// The contracts a weight quantizer and an activation quantizer policy must
// meet, stated once as C++20 concepts, and the policies that mean "off" and
// "store as fp16 / bf16". Layer templates (nn/) take any type that satisfies
// these, including user-written ones (examples/custom_policy.cpp).
#pragma once

#include <concepts>
#include <cstddef>
#include <span>

#include "qprune/core/half.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/convert.hpp"

namespace qprune::quant {

/// A weight quantizer turns a float [out, in] weight matrix into owned storage
/// (its `storage_type`) and back. `dequantize` is the reference path tests use.
template <class Q>
concept weight_quantizer =
    std::copy_constructible<Q> &&
    requires(const Q& q, tensor_view<const float, 2> w, const typename Q::storage_type& s,
             tensor_view<float, 2> out) {
      typename Q::storage_type;
      { q.quantize(w) } -> std::same_as<typename Q::storage_type>;
      { q.dequantize(s, out) } -> std::same_as<void>;
    };

/// A weight quantizer that also simulates its rounding during training (QAT):
///   q.fake_quantize(w, out)           out = dequantize(quantize(w))
///   q.fake_quantize_backward(w, grad) grad <- the straight-through gradient, in place
/// Layers (nn/masked_weight.hpp) call these when the policy has them.
template <class Q>
concept fake_quant_weight_quantizer =
    weight_quantizer<Q> && requires(const Q& q, tensor_view<const float, 2> w, tensor_view<float, 2> out) {
      q.fake_quantize(w, out);
      q.fake_quantize_backward(w, out);
    };

/// An activation quantizer names how a layer treats its input at run time
/// (`none`: float; static: calibrated parameters; dynamic: per call). It only
/// has to say whether it quantizes; layers specialise on the concrete type.
template <class A>
concept activation_quantizer = std::copy_constructible<A> && requires {
  { A::quantizes_activations } -> std::convertible_to<bool>;
};

/// "No quantization": weights stay float32. The default policy of every layer.
struct none {
  using storage_type = tensor<float, 2>;
  static constexpr bool quantizes_activations = false;

  /// Copies the weights (any layout).
  [[nodiscard]] storage_type quantize(tensor_view<const float, 2, layout_stride> w) const {
    storage_type s(w.extent(0), w.extent(1));
    for (index_t i = 0; i < w.extent(0); ++i)
      for (index_t j = 0; j < w.extent(1); ++j) s(i, j) = w(i, j);
    return s;
  }
  /// Copies them back. Precondition: `out` has the storage's extents.
  void dequantize(const storage_type& s, tensor_view<float, 2> out) const noexcept {
    for (index_t i = 0; i < out.extent(0); ++i)
      for (index_t j = 0; j < out.extent(1); ++j) out(i, j) = s(i, j);
  }
};

namespace detail {
/// Stores weights as a 2-byte float type (half or bfloat16), round to nearest even.
template <class H>
struct two_byte_float {
  using storage_type = tensor<H, 2>;
  static constexpr bool quantizes_activations = false;

  /// Rounds every weight to H (round to nearest even, core/half.hpp). Takes any
  /// layout; row-major input is converted in one bulk SIMD call.
  [[nodiscard]] storage_type quantize(tensor_view<const float, 2, layout_stride> w) const {
    storage_type s(w.extent(0), w.extent(1));
    if (w.stride(1) == 1 && (w.stride(0) == w.extent(1) || w.extent(0) <= 1)) {
      kernels::convert(std::span<const float>(w.data_handle(), static_cast<std::size_t>(w.size())),
                       s.span());
    } else {
      for (index_t i = 0; i < w.extent(0); ++i)
        for (index_t j = 0; j < w.extent(1); ++j) s(i, j) = H(w(i, j));
    }
    return s;
  }
  /// Exact widening back to float. Precondition: `out` has the storage's extents.
  void dequantize(const storage_type& s, tensor_view<float, 2> out) const noexcept {
    for (index_t i = 0; i < out.extent(0); ++i)
      for (index_t j = 0; j < out.extent(1); ++j) out(i, j) = static_cast<float>(s(i, j));
  }
};
}  // namespace detail

/// Weights stored as IEEE binary16: half the bytes of float32, 11 significant bits.
struct fp16 : detail::two_byte_float<half> {};
/// Weights stored as bfloat16: half the bytes, float32's exponent range, 8 significant bits.
struct bf16 : detail::two_byte_float<bfloat16> {};

static_assert(weight_quantizer<none> && weight_quantizer<fp16> && weight_quantizer<bf16>);
static_assert(activation_quantizer<none>);

}  // namespace qprune::quant

// What every nn layer shares: the train/eval mode, the `parameter` record the
// optimizers and pruning schedules visit (value + gradient spans), the layer
// concepts that sequential<> and the optimizers check, and the small argument
// checks the layers' public functions use. Layer semantics: doc/nn.md.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"

namespace qprune::nn {

/// Training or inference behaviour of a layer (PyTorch's module.train() / .eval()).
/// train: layers cache what their backward needs and batch_norm uses batch
/// statistics; eval: nothing is cached and batch_norm uses its running statistics.
enum class mode { train, eval };

/// What a parameter is, for optimizers that treat kinds differently (for example
/// weight decay on weights only); qprune's SGD and Adam treat all kinds alike, as
/// PyTorch's do by default.
enum class parameter_kind { weight, bias, scale, shift };

/// One trainable tensor of a layer, flattened: its values and its gradient, of
/// equal size. Lifetime: the spans alias the layer's storage; valid while the
/// layer is alive and not reshaped.
struct parameter {
  std::span<float> value;
  std::span<float> grad;
  parameter_kind kind = parameter_kind::weight;
};

/// A type with a `for_each_parameter(f)` member that calls f(parameter) for each
/// of its trainable tensors, always in the same order (optimizers key their
/// state by that order).
template <class M>
concept parameterised = requires(M& m) { m.for_each_parameter([](const parameter&) {}); };

/// A layer: `forward(x)` maps In to an output, `backward(grad_out)` returns the
/// gradient with respect to the last forward input (accumulating parameter
/// gradients), and `set_mode(mode)` switches train/eval.
template <class L, class In>
concept layer = requires(L& l, const In& x, mode m) {
  l.forward(x);
  l.set_mode(m);
  { l.backward(l.forward(x)) } -> std::same_as<In>;
};

/// A layer whose weights a pruner masks: `apply_mask()` zeroes the pruned weights.
template <class L>
concept maskable = requires(L& l) { l.apply_mask(); };

namespace detail {

/// "[2, 3, 4]".
template <std::size_t Rank>
std::string shape_string(const extents<Rank>& e) {
  std::string s = "[";
  for (std::size_t r = 0; r < Rank; ++r) {
    if (r != 0) s += ", ";
    s += std::to_string(e.extent(r));
  }
  return s + "]";
}

/// Throws shape_error unless `got` == `expected`; `what` names the argument.
template <std::size_t Rank>
void check_shape(const extents<Rank>& got, const extents<Rank>& expected, std::string_view layer,
                 std::string_view what) {
  if (!(got == expected)) {
    throw shape_error(std::string(layer) + ": " + std::string(what) + " has shape " +
                      shape_string(got) + " (expected " + shape_string(expected) + ")");
  }
}

/// Throws shape_error unless extent `r` of `got` equals `expected`.
template <std::size_t Rank>
void check_extent(const extents<Rank>& got, std::size_t r, index_t expected,
                  std::string_view layer, std::string_view what) {
  if (got.extent(r) != expected) {
    throw shape_error(std::string(layer) + ": " + std::string(what) + " has shape " +
                      shape_string(got) + " (expected extent " + std::to_string(r) + " = " +
                      std::to_string(expected) + ")");
  }
}

/// Throws config_error unless v >= 1.
inline void check_positive(index_t v, std::string_view layer, std::string_view what) {
  if (v < 1) {
    throw config_error(std::string(layer) + ": " + std::string(what) + " is " +
                       std::to_string(v) + " (expected >= 1)");
  }
}

/// Throws config_error when backward is called without a cached forward.
inline void check_cached(bool cached, std::string_view layer) {
  if (!cached) {
    throw config_error(std::string(layer) +
                       ": backward called without a forward in mode::train (expected "
                       "forward(x) in train mode first)");
  }
}

/// An activation policy that simulates its quantization during training
/// (quant::static_int8): observe + fake-quantize the layer input, straight-through
/// gradient with the clipping mask.
template <class A>
concept fake_quant_activation =
    requires(A& a, const A& ca, tensor_view<const float, 2> x, tensor_view<float, 2> y) {
      a.fake_quantize(x, y, true);
      ca.fake_quantize_backward(x, y);
      { ca.calibrated() } -> std::convertible_to<bool>;
    };

/// A layer's input under its activation policy A: for a fake_quant_activation
/// (QAT) in train mode, or in eval mode once it has observed data, the input is
/// fake-quantized into `xq` (observed first in train mode, and kept in `raw` for
/// the straight-through backward); otherwise x itself.
template <class A, std::size_t R>
tensor_view<const float, R> quantize_input(A& act, mode m, tensor_view<const float, R> x,
                                           tensor<float, R>& xq, tensor<float, R>& raw) {
  if constexpr (fake_quant_activation<A>) {
    const bool train = m == mode::train;
    if (train || act.calibrated()) {
      xq = tensor<float, R>(x.extents());
      act.fake_quantize(x, xq.view(), train);
      if (train) {
        raw = tensor<float, R>(x.extents());
        std::copy_n(x.data_handle(), x.size(), raw.data());
      }
      return xq.cview();
    }
  }
  return x;
}

/// True when a mask type keeps every weight by construction (prune::all_kept_mask).
template <class M>
inline constexpr bool is_all_kept_v = [] {
  if constexpr (requires { M::is_all_kept; }) {
    return static_cast<bool>(M::is_all_kept);
  } else {
    return false;
  }
}();

/// Applies a pruning mask to a gradient: `apply_to_gradient` when the mask has
/// one, else `apply` (the only member prune::applicable_mask requires).
template <class M>
void mask_gradient(const M& m, tensor_view<float, 2> g) {
  if constexpr (requires { m.apply_to_gradient(g); }) {
    m.apply_to_gradient(g);
  } else {
    m.apply(g);
  }
}

}  // namespace detail

}  // namespace qprune::nn

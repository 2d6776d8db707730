// `sequential<L...>`: a compile-time chain of layers over std::tuple (no virtual
// calls, no type erasure): forward passes each layer's output type to the next,
// backward runs in reverse; mode switching, parameter visiting for optimizers,
// and mask maintenance / pruning schedules for every prunable layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <utility>

#include "qprune/nn/layer.hpp"
#include "qprune/prune/schedule.hpp"

namespace qprune::nn {

/// Layers L... applied in order. Each layer's forward must accept the previous
/// layer's output; backward(grad) returns the gradient with respect to the
/// network's input, backward_params(grad) skips that last input gradient (the
/// first layer then only accumulates its parameter gradients, or does nothing
/// when it has none).
template <class... L>
class sequential {
  static_assert(sizeof...(L) >= 1, "qprune::nn::sequential needs at least one layer");

 public:
  static constexpr std::size_t size() noexcept { return sizeof...(L); }

  explicit sequential(L... layers) : layers_(std::move(layers)...) {}

  /// Layer I.
  template <std::size_t I>
  auto& get() noexcept {
    return std::get<I>(layers_);
  }
  template <std::size_t I>
  const auto& get() const noexcept {
    return std::get<I>(layers_);
  }

  /// The network's output for input x.
  template <class In>
  [[nodiscard]] auto forward(const In& x) {
    return forward_from<0>(x);
  }

  /// Back-propagates dL/doutput; returns dL/dinput.
  template <class G>
  [[nodiscard]] auto backward(const G& grad_out) {
    return backward_from<sizeof...(L) - 1, true>(grad_out);
  }

  /// Back-propagates dL/doutput into the parameter gradients only.
  template <class G>
  void backward_params(const G& grad_out) {
    backward_from<sizeof...(L) - 1, false>(grad_out);
  }

  /// Switches every layer (train: cache for backward, batch statistics; eval: not).
  void set_mode(mode m) {
    mode_ = m;
    for_each_layer([m](auto& l) { l.set_mode(m); });
  }
  mode current_mode() const noexcept { return mode_; }

  /// Calls f(layer) for every layer, in order.
  template <class F>
  void for_each_layer(F&& f) {
    std::apply([&](auto&... l) { (f(l), ...); }, layers_);
  }

  /// Calls f(parameter) for every parameter of every layer, in layer order.
  template <class F>
  void for_each_parameter(F&& f) {
    for_each_layer([&](auto& l) {
      if constexpr (parameterised<std::remove_reference_t<decltype(l)>>) l.for_each_parameter(f);
    });
  }

  void zero_grad() {
    for_each_layer([](auto& l) {
      if constexpr (requires { l.zero_grad(); }) l.zero_grad();
    });
  }

  /// w ← mask ⊙ w in every prunable layer (optimizers call this after each step).
  void apply_mask() {
    for_each_layer([](auto& l) {
      if constexpr (maskable<std::remove_reference_t<decltype(l)>>) l.apply_mask();
    });
  }

  /// Recomputes every prunable layer's mask with its pruner and applies it.
  void update_masks() {
    for_each_layer([](auto& l) {
      if constexpr (requires { l.update_mask(); }) l.update_mask();
    });
  }

  /// The pruning schedule's step for every layer whose pruner takes a run-time
  /// sparsity (prune::sparsity_pruner): if schedule.should_prune(step), each such
  /// layer's pruner is set to schedule.sparsity(step) and its mask recomputed and
  /// applied. Returns the number of layers updated.
  template <prune::pruning_schedule S>
  std::size_t update_masks(const S& schedule, std::int64_t step) {
    std::size_t n = 0;
    for_each_layer([&](auto& l) {
      if constexpr (requires { l.update_mask(schedule, step); }) {
        n += l.update_mask(schedule, step) ? 1 : 0;
      }
    });
    return n;
  }

 private:
  template <std::size_t I, class X>
  auto forward_from(const X& x) {
    auto y = std::get<I>(layers_).forward(x);
    if constexpr (I + 1 == sizeof...(L)) {
      return y;
    } else {
      return forward_from<I + 1>(y);
    }
  }

  template <std::size_t I, bool InputGrad, class G>
  auto backward_from(const G& g) {
    auto& l = std::get<I>(layers_);
    if constexpr (I == 0 && !InputGrad) {
      if constexpr (requires { l.backward_params(g); }) {
        l.backward_params(g);
      } else if constexpr (parameterised<std::remove_reference_t<decltype(l)>>) {
        (void)l.backward(g);
      }
    } else {
      auto dx = l.backward(g);
      if constexpr (I == 0) {
        return dx;
      } else {
        return backward_from<I - 1, InputGrad>(dx);
      }
    }
  }

  std::tuple<L...> layers_;
  mode mode_ = mode::train;
};

}  // namespace qprune::nn

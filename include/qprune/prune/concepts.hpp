// The contract of a pruner policy, stated once as C++20 concepts, and `prune::none`,
// the policy that means "no pruning" (the default of every layer). Layer templates
// (nn/) take any type that satisfies `pruner`, including user-written ones.
// Semantics of the shipped pruners: doc/pruning.md.
#pragma once

#include <concepts>
#include <type_traits>

#include "qprune/core/tensor_view.hpp"

namespace qprune::prune {

/// A mask type a layer can use: it zeroes the pruned weights of a [rows, cols]
/// weight (or gradient) view in place. `basic_mask<2>` and `all_kept_mask` model it.
template <class M>
concept applicable_mask =
    std::copy_constructible<M> && requires(const M& m, tensor_view<float, 2> w) { m.apply(w); };

/// A pruner computes a mask (its `mask_type`) from a [rows, cols] float weight
/// matrix: `p.compute_mask(w)`. The layer stores the mask and applies it to the
/// weights (and to the gradients during training). Nothing else is required.
template <class P>
concept pruner = std::copy_constructible<P> &&
                 requires(const P& p, tensor_view<const float, 2> w) {
                   typename P::mask_type;
                   { p.compute_mask(w) } -> std::same_as<typename P::mask_type>;
                 } &&
                 applicable_mask<typename P::mask_type>;

/// A pruner whose target sparsity (fraction of zeros) is a run-time value, so a
/// schedule (schedule.hpp) can raise it during training: `p.set_sparsity(s)` and
/// `p.sparsity()`. set_sparsity throws config_error for s outside [0, 1].
template <class P>
concept sparsity_pruner = pruner<P> && requires(P& p, const P& cp, float s) {
  p.set_sparsity(s);
  { cp.sparsity() } -> std::convertible_to<float>;
};

/// The mask of `none`: keeps everything, stores nothing, costs nothing (an empty
/// type, so a layer's `[[no_unique_address]] mask_type mask_;` takes no space).
struct all_kept_mask {
  /// Layers can test this with `if constexpr` to skip masking entirely.
  static constexpr bool is_all_kept = true;

  /// Does nothing: every weight is kept.
  template <class View>
  constexpr void apply(const View&) const noexcept {}
  /// Does nothing: every gradient is kept.
  template <class View>
  constexpr void apply_to_gradient(const View&) const noexcept {}
  /// Always 0: nothing is pruned.
  static constexpr double sparsity() noexcept { return 0.0; }

  friend constexpr bool operator==(all_kept_mask, all_kept_mask) noexcept { return true; }
};

/// "No pruning": the default pruner policy of every layer.
struct none {
  using mask_type = all_kept_mask;

  /// Returns the all-kept mask; reads nothing.
  [[nodiscard]] constexpr mask_type compute_mask(
      tensor_view<const float, 2, layout_stride>) const noexcept {
    return {};
  }
};

static_assert(pruner<none> && !sparsity_pruner<none>);
static_assert(std::is_empty_v<none> && std::is_empty_v<all_kept_mask>);

}  // namespace qprune::prune

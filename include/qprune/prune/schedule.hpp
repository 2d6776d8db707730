// Pruning schedules for a C++ training loop: tfmot's ConstantSparsity and PolynomialDecay
// (pruning_schedule.py, computed in float32 as TF does), the `pruning_schedule` concept,
// `update_mask` (tfmot's conditional mask update), and `iterative`, PyTorch-style
// successive amounts each relative to what remains. Formulas: doc/pruning.md §5.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/mask.hpp"

namespace qprune::prune {

/// A schedule says, for a training step, whether to recompute the mask and at which
/// target sparsity.
template <class S>
concept pruning_schedule = std::copy_constructible<S> && requires(const S& s, std::int64_t step) {
  { s.should_prune(step) } -> std::same_as<bool>;
  { s.sparsity(step) } -> std::same_as<float>;
};

namespace detail {

/// tfmot's PruningSchedule._validate_step.
inline void check_schedule_steps(std::int64_t begin, std::int64_t end, std::int64_t frequency,
                                 bool allow_forever) {
  if (begin < 0) {
    throw config_error("begin_step " + std::to_string(begin) + " is invalid (expected >= 0)");
  }
  if (!allow_forever && end == -1) {
    throw config_error(
        "end_step -1 (prune forever) is invalid for polynomial_decay (expected an end step >= "
        "begin_step)");
  }
  if (end != -1) {
    if (end < 0) {
      throw config_error("end_step " + std::to_string(end) + " is invalid (expected -1 or >= 0)");
    }
    if (end < begin) {
      throw config_error("end_step " + std::to_string(end) + " is before begin_step " +
                         std::to_string(begin) + " (expected begin_step <= end_step)");
    }
  }
  if (frequency <= 0) {
    throw config_error("frequency " + std::to_string(frequency) + " is invalid (expected > 0)");
  }
}

/// tfmot's PruningSchedule._validate_sparsity: [0, 1), NaN rejected.
inline void check_schedule_sparsity(double s, const char* name) {
  if (!(s >= 0.0 && s < 1.0)) {
    throw config_error(std::string(name) + " " + format_number(s) +
                       " is invalid (expected [0, 1))");
  }
}

/// tfmot's _should_prune_in_step:
///   step >= begin  and  (step <= end or end < 0)  and  floormod(step - begin, frequency) == 0.
inline bool should_prune_in_step(std::int64_t step, std::int64_t begin, std::int64_t end,
                                 std::int64_t frequency) noexcept {
  if (step < begin) return false;  // also keeps step - begin from overflowing
  if (end >= 0 && step > end) return false;
  return (step - begin) % frequency == 0;  // step - begin >= 0, so % is floormod
}

}  // namespace detail

/// tfmot's ConstantSparsity(target_sparsity, begin_step, end_step=-1, frequency=100):
/// prune every `frequency` steps from begin_step to end_step inclusive (for ever when
/// end_step = -1), always at float32(target_sparsity).
class constant_sparsity {
 public:
  /// Throws config_error unless 0 <= target < 1, begin >= 0, end = -1 or end >= begin,
  /// and frequency > 0 (tfmot's ValueErrors).
  constant_sparsity(double target_sparsity, std::int64_t begin_step, std::int64_t end_step = -1,
                    std::int64_t frequency = 100)
      : target_(target_sparsity), begin_(begin_step), end_(end_step), frequency_(frequency) {
    detail::check_schedule_steps(begin_, end_, frequency_, true);
    detail::check_schedule_sparsity(target_, "target_sparsity");
  }

  /// step >= begin and (step <= end or end = -1) and (step - begin) mod frequency = 0.
  [[nodiscard]] bool should_prune(std::int64_t step) const noexcept {
    return detail::should_prune_in_step(step, begin_, end_, frequency_);
  }
  /// float32(target_sparsity), at every step (tf.constant(target, float32)).
  [[nodiscard]] float sparsity(std::int64_t) const noexcept { return static_cast<float>(target_); }

  double target_sparsity() const noexcept { return target_; }
  std::int64_t begin_step() const noexcept { return begin_; }
  std::int64_t end_step() const noexcept { return end_; }
  std::int64_t frequency() const noexcept { return frequency_; }

 private:
  double target_;
  std::int64_t begin_;
  std::int64_t end_;
  std::int64_t frequency_;
};

/// tfmot's PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step,
/// power=3, frequency=100). The sparsity at a step, in float32 exactly as TF evaluates it
/// (the sparsities and power are Python floats/ints, hence the double parameters):
///   p = min(1, max(0, f32(step − begin) / f32(end − begin)))
///   s = f32(initial − final) · powf(1 − p, f32(power)) + f32(final)
/// every operation in float32 (the difference initial − final in double, then rounded,
/// as Python computes it); powf is the C library's (TF's scalar path calls std::pow).
/// At end = begin TF divides 0 by 0 at step = begin; qprune defines p = 1 for every
/// step >= begin there (the final sparsity). should_prune as constant_sparsity.
class polynomial_decay {
 public:
  /// Throws config_error unless both sparsities are in [0, 1), begin >= 0,
  /// end >= begin (end = -1 is not allowed), frequency > 0 (tfmot's ValueErrors), and
  /// power is finite and >= 0 (tfmot does not check; other powers give inf or NaN).
  polynomial_decay(double initial_sparsity, double final_sparsity, std::int64_t begin_step,
                   std::int64_t end_step, double power = 3, std::int64_t frequency = 100)
      : initial_(initial_sparsity),
        final_(final_sparsity),
        begin_(begin_step),
        end_(end_step),
        power_(power),
        frequency_(frequency) {
    detail::check_schedule_steps(begin_, end_, frequency_, false);
    detail::check_schedule_sparsity(initial_, "initial_sparsity");
    detail::check_schedule_sparsity(final_, "final_sparsity");
    if (!(power_ >= 0.0 && std::isfinite(power_))) {
      throw config_error("power " + detail::format_number(power_) +
                         " is invalid (expected a finite value >= 0)");
    }
  }

  [[nodiscard]] bool should_prune(std::int64_t step) const noexcept {
    return detail::should_prune_in_step(step, begin_, end_, frequency_);
  }

  /// The schedule's sparsity at `step` (see the class comment), for any step.
  [[nodiscard]] float sparsity(std::int64_t step) const noexcept {
    float p = 0.0f;
    if (step >= begin_) {
      if (end_ == begin_) {
        p = 1.0f;
      } else {
        p = static_cast<float>(step - begin_) / static_cast<float>(end_ - begin_);
        p = p < 1.0f ? p : 1.0f;
      }
    }
    const float decay = std::pow(1.0f - p, static_cast<float>(power_));
    // Two float32 operations as in TF (multiply, then add): the volatile keeps a compiler
    // with -ffp-contract=fast (GCC's default for gnu++ modes) from fusing them into an FMA.
    const volatile float scaled = static_cast<float>(initial_ - final_) * decay;
    return scaled + static_cast<float>(final_);
  }

  double initial_sparsity() const noexcept { return initial_; }
  double final_sparsity() const noexcept { return final_; }
  std::int64_t begin_step() const noexcept { return begin_; }
  std::int64_t end_step() const noexcept { return end_; }
  double power() const noexcept { return power_; }
  std::int64_t frequency() const noexcept { return frequency_; }

 private:
  double initial_;
  double final_;
  std::int64_t begin_;
  std::int64_t end_;
  double power_;
  std::int64_t frequency_;
};

static_assert(pruning_schedule<constant_sparsity> && pruning_schedule<polynomial_decay>);

/// tfmot's conditional_mask_update for one weight: if schedule.should_prune(step), sets
/// the pruner's target to schedule.sparsity(step), recomputes the mask `current` from `w`
/// and returns true; otherwise changes nothing and returns false. As in tfmot, the caller
/// applies the mask to the weights after every step (w ← w ⊙ mask), so the next mask is
/// computed on weights whose pruned entries are already zero.
/// The view is passed to compute_mask as it comes (any layout), so a pruner that
/// takes only the row-major view the `pruner` concept checks works here too.
/// Throws what the pruner throws (config_error for a sparsity it rejects).
template <pruning_schedule S, sparsity_pruner P, class Layout>
bool update_mask(const S& schedule, std::int64_t step, P& pruner, tensor_view<const float, 2, Layout> w,
                 typename P::mask_type& current) {
  if (!schedule.should_prune(step)) return false;
  pruner.set_sparsity(schedule.sparsity(step));
  current = pruner.compute_mask(w);
  return true;
}

/// Iterative pruning as torch's PruningContainer does it: a list of amounts, each
/// relative to the entries that survived the previous ones. With fractions a_1, a_2, ...
/// the entries left after step i are
///   r_0 = n,   r_i = r_{i−1} − round_half_even(a_i · r_{i−1})   (a count c_i: r_{i−1} − c_i)
/// so the sparsity after i steps is 1 − r_i / n (≈ 1 − Π(1 − a_j)).
class iterative {
 public:
  /// `iterative{0.3, 0.5}`, `iterative{20, 15}` or mixed; each amount is validated
  /// by pytorch::amount (config_error for a negative count or a fraction outside [0, 1]).
  iterative(std::initializer_list<pytorch::amount> amounts) : amounts_(amounts) {}
  explicit iterative(std::vector<pytorch::amount> amounts) : amounts_(std::move(amounts)) {}

  /// Number of steps.
  index_t size() const noexcept { return static_cast<index_t>(amounts_.size()); }
  /// The amount of step i (0-based). Precondition: 0 <= i < size().
  const pytorch::amount& operator[](index_t i) const noexcept {
    QPRUNE_ASSERT(i >= 0 && i < size(), "iterative: step index out of range");
    return amounts_[static_cast<std::size_t>(i)];
  }

  /// r_steps for a tensor of n entries (see the class comment).
  /// Throws config_error if steps is outside [0, size()] or a count exceeds what remains.
  index_t remaining_after(index_t n, index_t steps) const {
    check_steps(steps);
    index_t r = n;
    for (index_t i = 0; i < steps; ++i) r -= (*this)[i].to_prune(r);
    return r;
  }
  /// 1 − remaining_after(n, steps) / n (0 for n = 0).
  double sparsity_after(index_t n, index_t steps) const {
    const index_t r = remaining_after(n, steps);
    return n == 0 ? 0.0 : 1.0 - static_cast<double>(r) / static_cast<double>(n);
  }

  /// The mask after the first `steps` amounts applied as successive
  /// prune.l1_unstructured calls on the same weights (a pruning_container).
  /// Throws config_error as remaining_after.
  template <float_view V>
  [[nodiscard]] basic_mask<V::rank()> l1_unstructured(const V& w, index_t steps) const {
    check_steps(steps);
    pytorch::pruning_container<V::rank()> c(w.extents());
    for (index_t i = 0; i < steps; ++i) c.l1_unstructured(w, (*this)[i]);
    return c.mask();
  }

 private:
  void check_steps(index_t steps) const {
    if (steps < 0 || steps > size()) {
      throw config_error("iterative: " + std::to_string(steps) +
                         " steps requested (expected 0 to " + std::to_string(size()) + ")");
    }
  }

  std::vector<pytorch::amount> amounts_;
};

}  // namespace qprune::prune

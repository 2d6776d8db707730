// Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs"):
// one-shot, activation-aware pruning. Calibration batches give each input column's
// mean squared activation; a weight's score is |W_ij|·‖X_j‖₂, and the lowest scores are
// pruned within each output row (unstructured) or within each group of M (N:M), with the
// ranking kernels every qprune pruner shares (prune_lowest, n_m_mask_from_scores).
// Policies `wanda` and `wanda_n_m`. Semantics and differences from the reference code:
// doc/pruning.md, "Wanda".
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/mask.hpp"
#include "qprune/prune/n_m.hpp"

namespace qprune::prune {

/// Wanda's calibration statistic for one layer with `in_features` inputs: per input
/// column j, the running mean over all rows seen of x_j²,
///   scaler_j ← scaler_j · n/(n + b) + ‖X_j‖² / (n + b),   n ← n + b,
/// for each batch X of b rows ([b, in_features]; a Dense layer's input, or im2col
/// patches [N·H_out·W_out, kh·kw·in] of a conv layer viewed as [out, kh·kw·in]).
/// So scaler_j = Σ_rows x_j² / n, independent of how the rows were split into batches
/// (up to rounding). Wanda's layerwrapper counts each forward call's leading dimension
/// (sequences) as b instead of rows; that scales every scaler_j by the same positive
/// factor, which changes no score order and so no mask.
/// Numerics: ‖X_j‖² and the update in double.
class wanda_calibrator {
 public:
  /// Throws config_error if in_features < 0.
  explicit wanda_calibrator(index_t in_features) {
    if (in_features < 0) {
      throw config_error("wanda_calibrator: in_features " + std::to_string(in_features) +
                         " is invalid (expected >= 0)");
    }
    scaler_.assign(static_cast<std::size_t>(in_features), 0.0);
    sum_sq_.assign(scaler_.size(), 0.0);
  }

  /// Adds the rows of a [b, in_features] activation batch (any layout). A batch of
  /// 0 rows changes nothing. Throws shape_error if x.extent(1) != in_features.
  void add_batch(tensor_view<const float, 2, layout_stride> x) {
    if (x.extent(1) != in_features()) {
      throw shape_error("wanda_calibrator::add_batch: the batch has " + std::to_string(x.extent(1)) +
                        " columns (expected in_features = " + std::to_string(in_features()) + ")");
    }
    const index_t b = x.extent(0);
    if (b == 0) return;
    std::fill(sum_sq_.begin(), sum_sq_.end(), 0.0);
    for (index_t r = 0; r < b; ++r) {
      for (index_t j = 0; j < in_features(); ++j) {
        const double v = static_cast<double>(x(r, j));
        sum_sq_[static_cast<std::size_t>(j)] += v * v;
      }
    }
    const double n = static_cast<double>(samples_);
    const double nb = n + static_cast<double>(b);
    for (std::size_t j = 0; j < scaler_.size(); ++j) {
      scaler_[j] = scaler_[j] * (n / nb) + sum_sq_[j] / nb;
    }
    samples_ += b;
  }
  /// Same, for any float view (row-major, column-major, ...).
  template <class T, class Layout>
    requires std::same_as<std::remove_const_t<T>, float>
  void add_batch(const tensor_view<T, 2, Layout>& x) {
    add_batch(tensor_view<const float, 2, layout_stride>(x));
  }
  /// Same, for an owning tensor.
  void add_batch(const tensor<float, 2>& x) { add_batch(x.cview()); }

  index_t in_features() const noexcept { return static_cast<index_t>(scaler_.size()); }
  /// Rows seen so far (n).
  index_t samples() const noexcept { return samples_; }
  /// scaler_j: the mean of x_j² over the rows seen (all 0 before the first row).
  std::span<const double> scaler() const noexcept { return scaler_; }
  /// sqrt(scaler_j) = ‖X_j‖₂ / sqrt(n): the RMS of column j. Proportional to ‖X_j‖₂.
  [[nodiscard]] std::vector<double> column_rms() const {
    std::vector<double> r(scaler_.size());
    for (std::size_t j = 0; j < r.size(); ++j) r[j] = std::sqrt(scaler_[j]);
    return r;
  }
  /// Forgets every batch.
  void reset() noexcept {
    std::fill(scaler_.begin(), scaler_.end(), 0.0);
    samples_ = 0;
  }

 private:
  std::vector<double> scaler_;
  std::vector<double> sum_sq_;  // per-batch scratch
  index_t samples_ = 0;
};

namespace detail {

/// Throws config_error if `cal` has in_features > 0 and has seen no rows.
inline void check_wanda_calibrated(const wanda_calibrator& cal, const char* fn) {
  if (cal.samples() == 0 && cal.in_features() > 0) {
    throw config_error(std::string(fn) +
                       ": the calibrator has seen no activations (expected at least one batch with rows)");
  }
}

/// Checks w against the calibrator and that it has seen data.
inline void check_wanda_inputs(const tensor_view<const float, 2, layout_stride>& w,
                               const wanda_calibrator& cal, const char* fn) {
  if (w.extent(1) != cal.in_features()) {
    throw shape_error(std::string(fn) + ": the weight has " + std::to_string(w.extent(1)) +
                      " input columns but the calibrator has " + std::to_string(cal.in_features()) +
                      " (expected equal counts)");
  }
  check_wanda_calibrated(cal, fn);
}

/// S_ij = |W_ij| · sqrt(scaler_j), in double.
inline tensor<double, 2> wanda_score_matrix(const tensor_view<const float, 2, layout_stride>& w,
                                            const wanda_calibrator& cal) {
  const auto rms = cal.column_rms();
  tensor<double, 2> s(w.extent(0), w.extent(1));
  for (index_t i = 0; i < w.extent(0); ++i)
    for (index_t j = 0; j < w.extent(1); ++j)
      s(i, j) = std::fabs(static_cast<double>(w(i, j))) * rms[static_cast<std::size_t>(j)];
  return s;
}

}  // namespace detail

/// Wanda's scores S_ij = |W_ij| · sqrt(scaler_j) of a [out, in] weight (in double):
/// |W_ij|·‖X_j‖₂ divided by the common factor sqrt(n), which no ranking sees.
/// Throws shape_error if w has not in_features columns, config_error if the
/// calibrator has seen no rows.
[[nodiscard]] inline tensor<double, 2> wanda_scores(tensor_view<const float, 2, layout_stride> w,
                                                    const wanda_calibrator& cal) {
  detail::check_wanda_inputs(w, cal, "wanda_scores");
  return detail::wanda_score_matrix(w, cal);
}

/// Wanda's unstructured mask (a prune::mask [out, in], 1 = keep, 0 = prune): in every
/// output row the k = round_half_even(sparsity · in) weights of lowest S_ij are pruned
/// (product in double; 0.25·10 = 2.5 → 2), so every row has exactly in − k ones.
/// Ranking: prune_lowest on each row's double scores — among equal scores the higher
/// column is pruned first (the lower kept), NaN scores rank above every number: the
/// rule of magnitude_mask, score_mask and n_m_mask.
/// Difference from Wanda's code: it prunes int(sparsity · in) per row (truncation) and
/// breaks ties by a stable ascending sort (the lower column pruned first).
/// Throws config_error unless 0 <= sparsity <= 1, and as wanda_scores.
[[nodiscard]] inline mask wanda_mask(tensor_view<const float, 2, layout_stride> w,
                                     const wanda_calibrator& cal, double sparsity) {
  check_sparsity(sparsity, "wanda_mask: sparsity");
  detail::check_wanda_inputs(w, cal, "wanda_mask");
  const index_t rows = w.extent(0);
  const index_t cols = w.extent(1);
  mask keep(w.extents());
  const index_t k = detail::fraction_count(sparsity, cols);
  if (k == 0) return keep;
  const auto s = detail::wanda_score_matrix(w, cal);
  const auto len = static_cast<std::size_t>(cols);
  for (index_t r = 0; r < rows; ++r) {
    const auto off = static_cast<std::size_t>(r) * len;
    prune_lowest(s.span().subspan(off, len), k, keep.span().subspan(off, len));
  }
  return keep;
}

/// Wanda's N:M mask: n_m_mask_from_scores on S — in every group of m consecutive
/// columns of a row (columns [g·m, g·m + m)) the n of highest S_ij are kept, the others
/// pruned. A last group shorter than m (L = in mod m) keeps min(n, L). Ties and NaN as
/// wanda_mask. Convention: n is the number KEPT (NVIDIA's 2:4 keeps 2 of 4, as
/// n_m_mask). Wanda's code reads "n:m" as n PRUNED (topk(largest=False, n)); the two
/// agree when n = m/2 (2:4, 4:8).
/// Throws config_error unless 0 < n < m <= max_n_m_group (64), and as wanda_scores.
[[nodiscard]] inline mask wanda_n_m_mask(tensor_view<const float, 2, layout_stride> w,
                                         const wanda_calibrator& cal, index_t n, index_t m) {
  check_n_m(n, m);
  detail::check_wanda_inputs(w, cal, "wanda_n_m_mask");
  return n_m_mask_from_scores(detail::wanda_score_matrix(w, cal).cview(), n, m);
}

namespace detail {

/// A weight argument of the wanda functions: any 2-D float view, or an owning tensor.
template <class W>
concept wanda_weight = requires(const W& w) { tensor_view<const float, 2, layout_stride>(w); } ||
                       std::same_as<W, tensor<float, 2>>;

/// The weight as a read-only strided view.
template <wanda_weight W>
tensor_view<const float, 2, layout_stride> wanda_view(const W& w) noexcept {
  if constexpr (std::same_as<W, tensor<float, 2>>) {
    return tensor_view<const float, 2, layout_stride>(w.cview());
  } else {
    return tensor_view<const float, 2, layout_stride>(w);
  }
}

}  // namespace detail

/// wanda_scores / wanda_mask / wanda_n_m_mask for any float view or an owning tensor.
template <detail::wanda_weight W>
[[nodiscard]] tensor<double, 2> wanda_scores(const W& w, const wanda_calibrator& cal) {
  return wanda_scores(detail::wanda_view(w), cal);
}
template <detail::wanda_weight W>
[[nodiscard]] mask wanda_mask(const W& w, const wanda_calibrator& cal, double sparsity) {
  return wanda_mask(detail::wanda_view(w), cal, sparsity);
}
template <detail::wanda_weight W>
[[nodiscard]] mask wanda_n_m_mask(const W& w, const wanda_calibrator& cal, index_t n, index_t m) {
  return wanda_n_m_mask(detail::wanda_view(w), cal, n, m);
}

/// Wanda as a pruner policy: holds the calibration statistics of one layer and a target
/// sparsity; compute_mask(w) = wanda_mask(w, calibrator(), sparsity()) (per-row exact k).
/// The sparsity is a run-time value (sparsity_target, so a sparsity_pruner): a schedule
/// may raise it. Lifetime: owns a copy of the calibrator; later batches added to the
/// original do not reach the policy (build it after calibration).
class wanda : public sparsity_target {
 public:
  using mask_type = mask;

  /// Throws config_error unless 0 <= sparsity <= 1, or if the calibrator has seen no
  /// rows while in_features > 0.
  wanda(wanda_calibrator cal, float sparsity) : sparsity_target(sparsity), cal_(std::move(cal)) {
    detail::check_wanda_calibrated(cal_, "wanda");
  }

  const wanda_calibrator& calibrator() const noexcept { return cal_; }
  /// wanda_mask(w, calibrator(), sparsity()); the sparsity widened to double exactly.
  /// Throws shape_error if w.extent(1) != calibrator().in_features().
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return wanda_mask(w, cal_, static_cast<double>(sparsity()));
  }

 private:
  wanda_calibrator cal_;
};

/// Wanda N:M as a pruner policy: compute_mask(w) = wanda_n_m_mask(w, calibrator(), n, m).
/// The pattern is an `n_m` policy (its n(), m() and sparsity() = 1 − n/m); the sparsity
/// is fixed by it, so there is no set_sparsity. Lifetime as `wanda`.
class wanda_n_m {
 public:
  using mask_type = mask;

  /// Throws config_error unless 0 < n < m <= 64, or if the calibrator has seen no
  /// rows while in_features > 0.
  wanda_n_m(wanda_calibrator cal, index_t n, index_t m) : cal_(std::move(cal)), pattern_(n, m) {
    detail::check_wanda_calibrated(cal_, "wanda_n_m");
  }

  const wanda_calibrator& calibrator() const noexcept { return cal_; }
  /// The N:M pattern (n kept in every m).
  const n_m& pattern() const noexcept { return pattern_; }
  /// Throws shape_error if w.extent(1) != calibrator().in_features().
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return wanda_n_m_mask(w, cal_, pattern_.n(), pattern_.m());
  }

 private:
  wanda_calibrator cal_;
  n_m pattern_;
};

static_assert(sparsity_pruner<wanda> && pruner<wanda_n_m> && !sparsity_pruner<wanda_n_m>);

}  // namespace qprune::prune

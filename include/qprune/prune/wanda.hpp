// Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs"):
// one-shot, activation-aware pruning. Calibration batches give each input column's
// mean squared activation; a weight's score is |W_ij|·‖X_j‖₂, and the lowest scores are
// pruned within each output row (unstructured) or within each group of M (N:M).
// Semantics and differences from the reference code: doc/pruning.md, "Wanda".
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::prune {

/// Largest N:M group size wanda_n_m_mask supports.
inline constexpr index_t wanda_max_group = 64;

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

namespace detail::wanda {

inline std::string format_number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

/// The order of every qprune unstructured ranking (the same as magnitude.hpp's and
/// n_m.hpp's): i ranks below j when its score is lower, NaN ranks above every number,
/// and among equal scores the higher index ranks lower (is pruned first).
struct rank_below {
  const double* s;
  bool operator()(index_t i, index_t j) const noexcept {
    const double a = s[i];
    const double b = s[j];
    const bool a_nan = a != a;
    const bool b_nan = b != b;
    if (a_nan != b_nan) return b_nan;
    if (!a_nan && a != b) return a < b;
    return i > j;
  }
};

/// Checks w against the calibrator and that it has seen data.
inline void check_inputs(const tensor_view<const float, 2, layout_stride>& w, const wanda_calibrator& cal,
                         const char* fn) {
  if (w.extent(1) != cal.in_features()) {
    throw shape_error(std::string(fn) + ": the weight has " + std::to_string(w.extent(1)) +
                      " input columns but the calibrator has " + std::to_string(cal.in_features()) +
                      " (expected equal counts)");
  }
  if (cal.samples() == 0 && w.extent(1) > 0) {
    throw config_error(std::string(fn) +
                       ": the calibrator has seen no activations (expected at least one batch with rows)");
  }
}

/// S_ij = |W_ij| · sqrt(scaler_j), in double.
inline tensor<double, 2> scores(const tensor_view<const float, 2, layout_stride>& w,
                                const wanda_calibrator& cal) {
  const auto rms = cal.column_rms();
  tensor<double, 2> s(w.extent(0), w.extent(1));
  for (index_t i = 0; i < w.extent(0); ++i)
    for (index_t j = 0; j < w.extent(1); ++j)
      s(i, j) = std::fabs(static_cast<double>(w(i, j))) * rms[static_cast<std::size_t>(j)];
  return s;
}

/// Prunes the k lowest-ranked of s[0..len) (rank_below) by zeroing keep[idx].
inline void prune_lowest(const double* s, index_t len, index_t k, std::uint8_t* keep,
                         std::vector<index_t>& idx) {
  if (k <= 0) return;
  idx.resize(static_cast<std::size_t>(len));
  std::iota(idx.begin(), idx.end(), index_t{0});
  if (k < len) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), rank_below{s});
  for (index_t t = 0; t < k; ++t) keep[idx[static_cast<std::size_t>(t)]] = 0;
}

}  // namespace detail::wanda

/// Wanda's scores S_ij = |W_ij| · sqrt(scaler_j) of a [out, in] weight (in double):
/// |W_ij|·‖X_j‖₂ divided by the common factor sqrt(n), which no ranking sees.
/// Throws shape_error if w has not in_features columns, config_error if the
/// calibrator has seen no rows.
[[nodiscard]] inline tensor<double, 2> wanda_scores(tensor_view<const float, 2, layout_stride> w,
                                                    const wanda_calibrator& cal) {
  detail::wanda::check_inputs(w, cal, "wanda_scores");
  return detail::wanda::scores(w, cal);
}

/// Wanda's unstructured mask ([out, in] bytes, 1 = keep, 0 = prune): in every output row
/// the k = round_half_even(sparsity · in) weights of lowest S_ij are pruned (product
/// in double; 0.25·10 = 2.5 → 2), so every row has exactly in − k ones.
/// Ties: among equal scores the higher column is pruned first (the lower kept), the
/// rule of magnitude_mask and n_m_mask; NaN scores rank above every number.
/// Difference from Wanda's code: it prunes int(sparsity · in) per row (truncation) and
/// breaks ties by a stable ascending sort (the lower column pruned first).
/// Throws config_error unless 0 <= sparsity <= 1, and as wanda_scores.
[[nodiscard]] inline tensor<std::uint8_t, 2> wanda_mask(tensor_view<const float, 2, layout_stride> w,
                                                        const wanda_calibrator& cal, double sparsity) {
  if (!(sparsity >= 0.0 && sparsity <= 1.0)) {
    throw config_error("wanda_mask: sparsity " + detail::wanda::format_number(sparsity) +
                       " is invalid (expected a fraction of zeros in [0, 1])");
  }
  detail::wanda::check_inputs(w, cal, "wanda_mask");
  const index_t rows = w.extent(0);
  const index_t cols = w.extent(1);
  tensor<std::uint8_t, 2> keep(extents<2>(rows, cols), std::uint8_t{1});
  const double x = quant::round_to_integral(sparsity * static_cast<double>(cols),
                                            quant::rounding::half_to_even);
  const index_t k = x > 0.0 ? std::min(cols, static_cast<index_t>(x)) : 0;
  if (k == 0) return keep;
  const auto s = detail::wanda::scores(w, cal);
  std::vector<index_t> idx;
  for (index_t r = 0; r < rows; ++r) {
    detail::wanda::prune_lowest(s.data() + r * cols, cols, k, keep.data() + r * cols, idx);
  }
  return keep;
}

/// Wanda's N:M mask: in every group of m consecutive columns of a row (columns
/// [g·m, g·m + m)) the n of highest S_ij are kept, the others pruned. A last group
/// shorter than m (L = in mod m) keeps min(n, L). Ties and NaN as wanda_mask.
/// Convention: n is the number KEPT (NVIDIA's 2:4 keeps 2 of 4, as n_m_mask). Wanda's
/// code reads "n:m" as n PRUNED (topk(largest=False, n)); the two agree when n = m/2
/// (2:4, 4:8).
/// Throws config_error unless 0 < n < m <= 64, and as wanda_scores.
[[nodiscard]] inline tensor<std::uint8_t, 2> wanda_n_m_mask(tensor_view<const float, 2, layout_stride> w,
                                                            const wanda_calibrator& cal, index_t n,
                                                            index_t m) {
  if (!(m >= 2 && m <= wanda_max_group && n >= 1 && n < m)) {
    throw config_error("wanda_n_m_mask: N:M pattern " + std::to_string(n) + ":" + std::to_string(m) +
                       " is invalid (expected 0 < N < M <= " + std::to_string(wanda_max_group) +
                       "; N is the number of weights kept in every M consecutive ones)");
  }
  detail::wanda::check_inputs(w, cal, "wanda_n_m_mask");
  const index_t rows = w.extent(0);
  const index_t cols = w.extent(1);
  tensor<std::uint8_t, 2> keep(extents<2>(rows, cols), std::uint8_t{1});
  const auto s = detail::wanda::scores(w, cal);
  std::vector<index_t> idx;
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c0 = 0; c0 < cols; c0 += m) {
      const index_t len = std::min(m, cols - c0);
      detail::wanda::prune_lowest(s.data() + r * cols + c0, len, len - std::min(n, len),
                                  keep.data() + r * cols + c0, idx);
    }
  }
  return keep;
}

/// wanda_scores / wanda_mask / wanda_n_m_mask for any float view or an owning tensor.
template <class W>
  requires requires(const W& w) { tensor_view<const float, 2, layout_stride>(w); } ||
           std::same_as<W, tensor<float, 2>>
[[nodiscard]] tensor<double, 2> wanda_scores(const W& w, const wanda_calibrator& cal) {
  if constexpr (std::same_as<W, tensor<float, 2>>) {
    return wanda_scores(tensor_view<const float, 2, layout_stride>(w.cview()), cal);
  } else {
    return wanda_scores(tensor_view<const float, 2, layout_stride>(w), cal);
  }
}
template <class W>
  requires requires(const W& w) { tensor_view<const float, 2, layout_stride>(w); } ||
           std::same_as<W, tensor<float, 2>>
[[nodiscard]] tensor<std::uint8_t, 2> wanda_mask(const W& w, const wanda_calibrator& cal, double sparsity) {
  if constexpr (std::same_as<W, tensor<float, 2>>) {
    return wanda_mask(tensor_view<const float, 2, layout_stride>(w.cview()), cal, sparsity);
  } else {
    return wanda_mask(tensor_view<const float, 2, layout_stride>(w), cal, sparsity);
  }
}
template <class W>
  requires requires(const W& w) { tensor_view<const float, 2, layout_stride>(w); } ||
           std::same_as<W, tensor<float, 2>>
[[nodiscard]] tensor<std::uint8_t, 2> wanda_n_m_mask(const W& w, const wanda_calibrator& cal, index_t n,
                                                     index_t m) {
  if constexpr (std::same_as<W, tensor<float, 2>>) {
    return wanda_n_m_mask(tensor_view<const float, 2, layout_stride>(w.cview()), cal, n, m);
  } else {
    return wanda_n_m_mask(tensor_view<const float, 2, layout_stride>(w), cal, n, m);
  }
}

}  // namespace qprune::prune

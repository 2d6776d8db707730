// N:M semi-structured sparsity along the reduction axis (axis 1 of a [rows, cols]
// weight): at most N nonzeros in every group of M consecutive weights of a row (NVIDIA's
// convention; 2:4 keeps 2 of 4). Masks from |w| or from any score matrix (Wanda), a
// checker, the `n_m` policy, and tfmot's m_by_n (m ZEROS in every n) as a wrapper.
// Semantics, tie rule and partial groups: doc/pruning.md §3.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/mask.hpp"

namespace qprune::prune {

/// Largest group size M qprune supports (a group's mask fits one 64-bit word).
inline constexpr index_t max_n_m_group = 64;

/// Throws config_error unless 0 < n < m <= max_n_m_group.
inline void check_n_m(index_t n, index_t m) {
  if (!(m >= 2 && m <= max_n_m_group && n >= 1 && n < m)) {
    throw config_error("N:M pattern " + std::to_string(n) + ":" + std::to_string(m) +
                       " is invalid (expected 0 < N < M <= " + std::to_string(max_n_m_group) +
                       "; N is the number of weights kept in every M consecutive ones)");
  }
}

namespace detail {

/// Keeps, in every group of m consecutive entries of each row, the min(n, group length)
/// highest-ranked scores (rank_below's order: larger score, NaN above numbers, then the
/// lower column); float or double scores, compared in their own type.
/// Preconditions: check_n_m(n, m) passed.
template <class T>
mask n_m_from_scores(const tensor_view<const T, 2, layout_stride>& s, index_t n, index_t m) {
  const index_t rows = s.extent(0);
  const index_t cols = s.extent(1);
  mask out(s.extents());  // all kept
  std::array<T, max_n_m_group> g{};
  std::array<index_t, max_n_m_group> idx{};
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c0 = 0; c0 < cols; c0 += m) {
      const index_t len = std::min(m, cols - c0);
      if (len <= n) continue;  // a short last group may keep all its entries
      for (index_t j = 0; j < len; ++j) {
        g[static_cast<std::size_t>(j)] = s(r, c0 + j);
        idx[static_cast<std::size_t>(j)] = j;
      }
      // The len - n lowest-ranked entries of the group are pruned.
      const index_t drop = len - n;
      std::nth_element(idx.begin(), idx.begin() + drop, idx.begin() + len,
                       rank_below<T>{g.data()});
      for (index_t j = 0; j < drop; ++j) out(r, c0 + idx[static_cast<std::size_t>(j)]) = 0;
    }
  }
  return out;
}

/// True when every group of m along axis 1 (the last one possibly shorter) has at most
/// n entries with nonzero(r, c).
template <class F>
bool groups_at_most(index_t rows, index_t cols, index_t n, index_t m, F&& nonzero) {
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c0 = 0; c0 < cols; c0 += m) {
      const index_t end = std::min(c0 + m, cols);
      index_t count = 0;
      for (index_t c = c0; c < end; ++c) count += nonzero(r, c) ? 1 : 0;
      if (count > n) return false;
    }
  }
  return true;
}

/// Throws config_error unless 0 <= m_zeros < n_block <= max_n_m_group (tfmot's m_by_n).
inline void check_m_by_n(index_t m_zeros, index_t n_block) {
  if (!(n_block >= 1 && n_block <= max_n_m_group && m_zeros >= 0 && m_zeros < n_block)) {
    throw config_error("m_by_n (" + std::to_string(m_zeros) + ", " + std::to_string(n_block) +
                       ") is invalid (expected 0 <= m < n <= " + std::to_string(max_n_m_group) +
                       "; m is the number of ZEROS in every n consecutive weights)");
  }
}

}  // namespace detail

/// N:M mask from |w|: in every group of m consecutive weights along axis 1 (columns
/// [g·m, g·m + m) of each row) the n of largest |w| are kept and the others pruned.
/// The last group of a row whose length is not a multiple of m has L = cols mod m
/// entries and keeps min(n, L) of them ("at most n nonzeros in every group", the same
/// as tfmot's zero padding). Ties: among equal |w| the lower column is kept; NaN ranks
/// above every number. A full group keeps exactly n weights, so every group has
/// at most n nonzeros after masking, exactly n when the kept weights are nonzero.
/// Throws config_error unless 0 < n < m <= 64.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] mask n_m_mask(const V& w, index_t n, index_t m) {
  check_n_m(n, m);
  const auto sw = as_strided(w);
  tensor<float, 2> a(sw.extents());
  for (index_t r = 0; r < sw.extent(0); ++r)
    for (index_t c = 0; c < sw.extent(1); ++c) a(r, c) = std::fabs(sw(r, c));
  return detail::n_m_from_scores(as_strided(a.cview()), n, m);
}

/// N:M mask from an importance score matrix (larger = more important, used as is,
/// not |score|), float or double (compared in their own type, no rounding to float),
/// e.g. Wanda's S_ij = |W_ij|·‖X_j‖₂. Same groups, partial-group and tie rules as
/// n_m_mask. Throws config_error unless 0 < n < m <= 64.
template <score_view V>
  requires(V::rank() == 2)
[[nodiscard]] mask n_m_mask_from_scores(const V& scores, index_t n, index_t m) {
  check_n_m(n, m);
  return detail::n_m_from_scores(as_strided(scores), n, m);
}

/// True when every group of m consecutive weights along axis 1 (the last one possibly
/// shorter) has at most n nonzeros (NaN counts as nonzero).
/// Throws config_error unless 0 < n < m <= 64.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] bool is_n_m_sparse(const V& w, index_t n, index_t m) {
  check_n_m(n, m);
  const auto sw = as_strided(w);
  return detail::groups_at_most(sw.extent(0), sw.extent(1), n, m,
                                [&](index_t r, index_t c) { return sw(r, c) != 0.0f; });
}

/// True when every group of m consecutive mask entries along axis 1 keeps at most n.
/// Throws config_error unless 0 < n < m <= 64.
[[nodiscard]] inline bool is_n_m_sparse(const mask& mk, index_t n, index_t m) {
  check_n_m(n, m);
  return detail::groups_at_most(mk.rows(), mk.cols(), n, m,
                                [&](index_t r, index_t c) { return mk(r, c) != 0; });
}

/// The N:M pruner policy (n_m_mask). Its sparsity is fixed by the pattern:
/// 1 − n/m on rows whose length is a multiple of m.
class n_m {
 public:
  using mask_type = mask;

  /// Throws config_error unless 0 < n < m <= 64.
  n_m(index_t n, index_t m) : n_(n), m_(m) { check_n_m(n, m); }

  index_t n() const noexcept { return n_; }
  index_t m() const noexcept { return m_; }
  /// 1 − n/m.
  double sparsity() const noexcept {
    return 1.0 - static_cast<double>(n_) / static_cast<double>(m_);
  }
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return n_m_mask(w, n_, m_);
  }

 private:
  index_t n_;
  index_t m_;
};

static_assert(pruner<n_m> && !sparsity_pruner<n_m>);

namespace tfmot {

/// tfmot's sparsity_m_by_n = (m, n): m ZEROS in every n consecutive weights, i.e. qprune's
/// (n − m):n — (2, 4) is 2:4. tfmot first rearranges TF weights into the TFLite layout
/// [out, in] (Dense) or [out·kh·kw, in] (Conv2D); pass that view here. With qprune's
/// OHWI conv filters it is the same buffer viewed as [out·kh·kw, in] (equal to the
/// [out, kh·kw·in] view's groups when in % n == 0). tfmot zero-pads rows to a multiple
/// of n and keeps top_k (stable: the lower index wins ties), which is n_m_mask's rule.
/// m = 0 keeps everything. Throws config_error unless 0 <= m < n <= 64.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] mask m_by_n_mask(const V& w, index_t m_zeros = 2, index_t n_block = 4) {
  prune::detail::check_m_by_n(m_zeros, n_block);
  if (m_zeros == 0) return mask(w.extents());
  return n_m_mask(w, n_block - m_zeros, n_block);
}

/// tfmot's is_pruned_m_by_n on the rearranged [rows, in] view: at most n − m nonzeros
/// in every group of n consecutive weights. Throws config_error unless 0 <= m < n <= 64.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] bool is_pruned_m_by_n(const V& w, index_t m_zeros = 2, index_t n_block = 4) {
  prune::detail::check_m_by_n(m_zeros, n_block);
  if (m_zeros == 0) return true;
  return is_n_m_sparse(w, n_block - m_zeros, n_block);
}

/// tfmot's m_by_n pruning (prune_low_magnitude(..., sparsity_m_by_n=(m, n))) as a
/// policy. tfmot ignores the schedule's sparsity in this mode (the pattern fixes it),
/// so this policy has no set_sparsity.
class m_by_n {
 public:
  using mask_type = mask;

  /// Throws config_error unless 0 <= m < n <= 64.
  explicit m_by_n(index_t m_zeros = 2, index_t n_block = 4) : m_(m_zeros), n_(n_block) {
    prune::detail::check_m_by_n(m_zeros, n_block);
  }
  index_t zeros() const noexcept { return m_; }
  index_t block() const noexcept { return n_; }
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return m_by_n_mask(w, m_, n_);
  }

 private:
  index_t m_;
  index_t n_;
};

static_assert(pruner<m_by_n>);

}  // namespace tfmot

}  // namespace qprune::prune

// Magnitude pruning. qprune's default prunes exactly k = round_half_even(s·N) weights
// with a deterministic tie rule, per tensor or globally over several tensors; the
// ranking kernel (`prune_lowest`) is shared by every pruner. Compatibility modes:
// pytorch:: reproduces torch.nn.utils.prune (l1_unstructured, ln_structured,
// global_unstructured, random_unstructured, PruningContainer) and tfmot:: the
// low-magnitude mask of tfmot's pruning_impl.py. Rounding and tie rules: doc/pruning.md §2.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <ranges>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/mask.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::prune {

namespace detail {

/// a < b in importance, with NaN above every number (NaN scores are never pruned
/// before a number) and NaN == NaN.
template <class T>
bool score_less(T a, T b) noexcept {
  if (b != b) return a == a;  // b is NaN: a is below it unless a is NaN too
  if (a != a) return false;
  return a < b;
}

/// The strict total order behind every qprune ranking: i ranks below j when its score
/// is lower, or when the scores are equal (ties) and i comes later (i > j). So among
/// equal scores the later entry is pruned first and the earlier one is kept first.
template <class T>
struct rank_below {
  const T* s;
  bool operator()(index_t i, index_t j) const noexcept {
    if (score_less(s[i], s[j])) return true;
    if (score_less(s[j], s[i])) return false;
    return i > j;
  }
};

/// Positions (in no particular order) of the k lowest-ranked scores (rank_below's order).
/// Precondition: 0 <= k <= s.size(). Complexity: O(n) average (nth_element), n indices.
template <class T>
std::vector<index_t> lowest_k(std::span<const T> s, index_t k) {
  const auto n = static_cast<index_t>(s.size());
  QPRUNE_ASSERT(k >= 0 && k <= n, "lowest_k: k out of range");
  std::vector<index_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), index_t{0});
  if (k > 0 && k < n) {
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), rank_below<T>{s.data()});
  }
  idx.resize(static_cast<std::size_t>(k));
  return idx;
}

/// An unsigned key whose order is score_less's order on floats: -0.0 and +0.0 equal,
/// every NaN equal and above +inf.
inline std::uint32_t order_key(float x) noexcept {
  if (x != x) return 0xFFFFFFFFu;
  const std::uint32_t b = x == 0.0f ? 0u : std::bit_cast<std::uint32_t>(x);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

/// The float case of lowest_k, without an index sort: the k-th smallest key T is found
/// with nth_element on the keys, every key below T is taken, and of the keys equal to T
/// the ones with the highest positions (rank_below's tie rule). Same result, a few times
/// faster on large tensors. Complexity: O(n) average, 2n keys of extra memory.
inline std::vector<index_t> lowest_k(std::span<const float> s, index_t k) {
  const auto n = static_cast<index_t>(s.size());
  QPRUNE_ASSERT(k >= 0 && k <= n, "lowest_k: k out of range");
  std::vector<index_t> out;
  if (k == 0) return out;
  out.reserve(static_cast<std::size_t>(k));
  if (k == n) {
    for (index_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  std::vector<std::uint32_t> keys(s.size());
  std::transform(s.begin(), s.end(), keys.begin(), order_key);
  std::vector<std::uint32_t> sel = keys;
  std::nth_element(sel.begin(), sel.begin() + (k - 1), sel.end());
  const std::uint32_t t = sel[static_cast<std::size_t>(k - 1)];
  sel = {};
  index_t below = 0;
  for (index_t i = 0; i < n; ++i) {
    if (keys[static_cast<std::size_t>(i)] < t) {
      out.push_back(i);
      ++below;
    }
  }
  for (index_t i = n, need = k - below; need > 0; --need) {
    do {
      --i;
    } while (keys[static_cast<std::size_t>(i)] != t);
    out.push_back(i);
  }
  return out;
}

/// k = round_half_even(fraction · n), the product in double, clamped to [0, n].
inline index_t fraction_count(double fraction, index_t n) noexcept {
  const double x = quant::round_to_integral(fraction * static_cast<double>(n),
                                            quant::rounding::half_to_even);
  if (!(x > 0.0)) return 0;
  if (x >= static_cast<double>(n)) return n;
  return static_cast<index_t>(x);
}

/// |w| in row-major order.
template <std::size_t Rank>
std::vector<float> abs_row_major(const tensor_view<const float, Rank, layout_stride>& w) {
  std::vector<float> a(static_cast<std::size_t>(w.size()));
  const float* p = w.data_handle();
  for_each_row_major(w.mapping(), [&](index_t flat, index_t off) {
    a[static_cast<std::size_t>(flat)] = std::fabs(p[off]);
  });
  return a;
}

/// Values in row-major order (float or double).
template <class T, std::size_t Rank>
std::vector<T> values_row_major(const tensor_view<const T, Rank, layout_stride>& w) {
  std::vector<T> a(static_cast<std::size_t>(w.size()));
  const T* p = w.data_handle();
  for_each_row_major(w.mapping(), [&](index_t flat, index_t off) {
    a[static_cast<std::size_t>(flat)] = p[off];
  });
  return a;
}

/// Throws shape_error unless the previous mask has the tensor's extents.
template <std::size_t Rank>
void check_mask_extents(const basic_mask<Rank>& m, const extents<Rank>& e, const char* fn) {
  if (m.extents() != e) {
    throw shape_error(std::string(fn) + ": the previous mask has extents " +
                      format_extents(m.extents()) + " but the tensor has " + format_extents(e) +
                      " (expected equal extents)");
  }
}

/// Keeps the k largest scores of a fresh all-kept mask (exact-k); float or double scores.
template <class T, std::size_t Rank>
basic_mask<Rank> keep_largest(const extents<Rank>& e, std::span<const T> scores, index_t k) {
  basic_mask<Rank> m(e);
  std::uint8_t* keep = m.data();
  for (index_t i : lowest_k(scores, k)) keep[i] = 0;
  return m;
}

/// Throws config_error unless the L_n order is > 0 (+inf allowed, NaN rejected).
inline void check_norm_order(double n) {
  if (!(n > 0.0)) {
    throw config_error("ln_structured: norm order n = " + format_number(n) +
                       " is not supported (expected n > 0, e.g. 1, 2 or +inf)");
  }
}
/// Python-style dim in [-rank, rank) to [0, rank); config_error otherwise.
inline std::size_t normalize_dim(index_t dim, std::size_t rank) {
  const auto r = static_cast<index_t>(rank);
  if (dim < -r || dim >= r) {
    throw config_error("ln_structured: dim " + std::to_string(dim) +
                       " is out of range for a tensor of rank " + std::to_string(rank) +
                       " (expected " + std::to_string(-r) + " <= dim < " + std::to_string(r) + ")");
  }
  return static_cast<std::size_t>(dim < 0 ? dim + r : dim);
}

/// The k-th largest of v (1-based k), NaN above every number. Reorders v.
inline float tfmot_kth_largest(std::vector<float>& v, index_t k) {
  const auto nth = v.begin() + static_cast<std::ptrdiff_t>(k - 1);
  std::nth_element(v.begin(), nth, v.end(),
                   [](float a, float b) { return score_less(b, a); });
  return *nth;
}
/// |x| >= thr, with NaN magnitudes always kept and a NaN threshold keeping only NaNs.
inline bool tfmot_keeps(float x, float thr) noexcept { return x != x || (thr == thr && x >= thr); }

}  // namespace detail

namespace detail {

/// prune_lowest for float or double scores: the checks, then lowest_k.
template <class T>
void prune_lowest_checked(std::span<const T> scores, index_t k, std::span<std::uint8_t> keep) {
  if (scores.size() != keep.size()) {
    throw shape_error("prune_lowest: " + std::to_string(scores.size()) + " scores but " +
                      std::to_string(keep.size()) + " mask entries (expected equal sizes)");
  }
  if (k < 0 || k > static_cast<index_t>(scores.size())) {
    throw config_error("prune_lowest: k = " + std::to_string(k) +
                       " is invalid (expected 0 <= k <= " + std::to_string(scores.size()) + ")");
  }
  for (index_t i : lowest_k(scores, k)) keep[static_cast<std::size_t>(i)] = 0;
}

}  // namespace detail

/// Prunes the k lowest-ranked entries: sets keep[i] = 0 for them and leaves every
/// other element of `keep` unchanged. The ranking kernel of every qprune pruner.
/// Ranking (qprune's tie rule): a larger score ranks higher; NaN ranks above every
/// number; among equal scores the lower index ranks higher. So exactly k entries are
/// chosen, and among ties the one with the higher index is pruned first.
/// Throws shape_error if the spans differ in size, config_error unless 0 <= k <= size.
/// Complexity: O(n) average time; 2n 32-bit keys and k indices of extra memory.
inline void prune_lowest(std::span<const float> scores, index_t k, std::span<std::uint8_t> keep) {
  detail::prune_lowest_checked(scores, k, keep);
}

/// The same ranking on double scores (Wanda's |W_ij|·‖X_j‖₂, channel norms), compared
/// as doubles: no rounding to float, so scores that differ only in double stay ordered.
/// Complexity: O(n) average time (nth_element on n indices).
inline void prune_lowest(std::span<const double> scores, index_t k, std::span<std::uint8_t> keep) {
  detail::prune_lowest_checked(scores, k, keep);
}

/// qprune's default unstructured magnitude mask: prunes exactly
///   k = round_half_even(sparsity · N)   (the product in double; N = w.size())
/// weights of smallest |w|. Ties: among equal |w| the weight with the higher
/// row-major index is pruned first; NaN weights rank above every number, so they are
/// pruned only when k exceeds the count of non-NaN weights. The result has exactly
/// N − k ones, so mask.sparsity() = k / N.
/// Throws config_error unless 0 <= sparsity <= 1.
template <float_view V>
[[nodiscard]] basic_mask<V::rank()> magnitude_mask(const V& w, float sparsity) {
  check_sparsity(sparsity);
  const auto sw = as_strided(w);
  const auto a = detail::abs_row_major(sw);
  return detail::keep_largest(sw.extents(), std::span<const float>(a),
                              detail::fraction_count(sparsity, sw.size()));
}

/// Exact-k mask from arbitrary importance scores (larger = more important; not
/// |score|), float or double (double scores are compared as doubles): prunes
/// k = round_half_even(sparsity · N) lowest scores of the whole tensor with
/// magnitude_mask's tie and NaN rules (prune_lowest).
/// Throws config_error unless 0 <= sparsity <= 1.
template <score_view V>
[[nodiscard]] basic_mask<V::rank()> score_mask(const V& scores, float sparsity) {
  using T = typename V::value_type;
  check_sparsity(sparsity);
  const auto sw = as_strided(scores);
  const auto v = detail::values_row_major(sw);
  return detail::keep_largest(sw.extents(), std::span<const T>(v),
                              detail::fraction_count(sparsity, sw.size()));
}

/// Global magnitude pruning: one ranking over every weight of every tensor, so one
/// threshold; prunes exactly k = round_half_even(sparsity · ΣN) weights in total.
/// Ties: the order (tensor position in `ws`, row-major index) — among equal |w| a later
/// tensor's weight, then a higher index, is pruned first. NaN as in magnitude_mask.
/// Returns one mask per tensor, in order. Throws config_error unless 0 <= sparsity <= 1.
template <std::ranges::forward_range R>
  requires float_view<std::ranges::range_value_t<R>>
[[nodiscard]] std::vector<basic_mask<std::ranges::range_value_t<R>::rank()>> global_magnitude_masks(
    const R& ws, float sparsity) {
  constexpr std::size_t rank = std::ranges::range_value_t<R>::rank();
  check_sparsity(sparsity);
  std::vector<float> all;
  for (const auto& w : ws) {
    const auto a = detail::abs_row_major(as_strided(w));
    all.insert(all.end(), a.begin(), a.end());
  }
  std::vector<std::uint8_t> keep(all.size(), 1);
  prune_lowest(all, detail::fraction_count(sparsity, static_cast<index_t>(all.size())), keep);
  std::vector<basic_mask<rank>> out;
  std::size_t pos = 0;
  for (const auto& w : ws) {
    basic_mask<rank> m(w.extents());
    std::copy_n(keep.begin() + static_cast<std::ptrdiff_t>(pos), m.size(), m.data());
    pos += static_cast<std::size_t>(m.size());
    out.push_back(std::move(m));
  }
  return out;
}

/// qprune's default pruner policy: magnitude_mask(w, sparsity()) with its exact-k rule.
/// Default-constructed it prunes nothing (sparsity 0). sparsity() / set_sparsity(s)
/// come from sparsity_target (config_error unless 0 <= s <= 1).
class magnitude : public sparsity_target {
 public:
  using mask_type = mask;

  magnitude() = default;
  /// Throws config_error unless 0 <= sparsity <= 1.
  explicit magnitude(float sparsity) : sparsity_target(sparsity) {}

  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return magnitude_mask(w, sparsity());
  }
};

static_assert(sparsity_pruner<magnitude>);

/// Compatibility with torch.nn.utils.prune (torch 1.13, prune.py).
namespace pytorch {

/// A pruning amount as torch takes it: an integer is a count of entries (channels for
/// ln_structured) to prune; a floating-point value is a fraction of them, turned into
/// a count with Python's round() (half to even):
///   k = count,  or  k = round_half_even(fraction · n)  (double product, as Python)
/// Pass a double to reproduce a Python float exactly (0.3f is not 0.3).
class amount {
 public:
  /// A count. Throws config_error if negative (torch: ValueError).
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  amount(I count) : is_count_(true) {  // NOLINT: implicit, like a Python int
    if (std::cmp_less(count, 0) || std::cmp_greater(count, std::numeric_limits<index_t>::max())) {
      throw config_error("amount=" + std::to_string(count) +
                         " is invalid (expected a float in [0, 1] or a non-negative integer)");
    }
    count_ = static_cast<index_t>(count);
  }
  /// A fraction. Throws config_error unless 0 <= fraction <= 1 (torch: ValueError).
  template <std::floating_point F>
  amount(F fraction) : fraction_(static_cast<double>(fraction)) {  // NOLINT: implicit
    if (!(fraction_ >= 0.0 && fraction_ <= 1.0)) {
      throw config_error("amount=" + detail::format_number(fraction_) +
                         " is invalid (expected a float in [0, 1] or a non-negative integer)");
    }
  }

  bool is_count() const noexcept { return is_count_; }
  /// The count (0 for a fraction).
  index_t count() const noexcept { return count_; }
  /// The fraction (0 for a count).
  double fraction() const noexcept { return fraction_; }

  /// torch's _compute_nparams_toprune with _validate_pruning_amount: the number of
  /// the n units to prune. Throws config_error if a count exceeds n.
  index_t to_prune(index_t n) const {
    if (!is_count_) return detail::fraction_count(fraction_, n);
    if (count_ > n) {
      throw config_error("amount=" + std::to_string(count_) +
                         " should be smaller than the number of parameters to prune=" +
                         std::to_string(n));
    }
    return count_;
  }

 private:
  bool is_count_ = false;
  index_t count_ = 0;
  double fraction_ = 0.0;
};

/// prune.l1_unstructured on a tensor pruned before (PruningContainer semantics): the
/// amount is relative to the A entries `previous` still keeps; of those, the
/// k = amount.to_prune(A) with smallest |w| are pruned, and the result is
/// previous AND that. torch leaves ties to topk (unspecified); qprune prunes the
/// higher row-major index first and ranks NaN above every number.
/// Throws shape_error if the extents differ, config_error if a count exceeds A.
template <float_view V>
[[nodiscard]] basic_mask<V::rank()> l1_unstructured(const V& w, amount a,
                                                    const basic_mask<V::rank()>& previous) {
  const auto sw = as_strided(w);
  detail::check_mask_extents(previous, sw.extents(), "l1_unstructured");
  const std::uint8_t* prev = previous.data();
  const float* p = sw.data_handle();
  std::vector<index_t> alive;
  std::vector<float> scores;
  detail::for_each_row_major(sw.mapping(), [&](index_t flat, index_t off) {
    if (prev[flat] != 0) {
      alive.push_back(flat);
      scores.push_back(std::fabs(p[off]));
    }
  });
  const index_t k = a.to_prune(static_cast<index_t>(alive.size()));
  basic_mask<V::rank()> out = previous;
  for (index_t i : detail::lowest_k(std::span<const float>(scores), k)) {
    out.data()[alive[static_cast<std::size_t>(i)]] = 0;
  }
  return out;
}

/// prune.l1_unstructured(w, amount) on an unpruned tensor: prunes the
/// k = amount.to_prune(w.size()) entries of smallest |w| (ties as above).
template <float_view V>
[[nodiscard]] basic_mask<V::rank()> l1_unstructured(const V& w, amount a) {
  return l1_unstructured(w, a, basic_mask<V::rank()>(w.extents()));
}


/// prune.ln_structured on a tensor pruned before (PruningContainer semantics). The
/// channels are the slices along `dim` (negative counts from the end, as in Python).
///  1. A channel is alive if `previous` keeps at least one of its entries; A = their count.
///  2. k = amount.to_prune(A) channels are pruned (the amount counts channels).
///  3. Each alive channel is scored by the L_n norm of w ⊙ previous over all other dims:
///     (Σ|x|^n)^(1/n), or max|x| for n = +inf. Like torch, the scores use the current
///     (masked) weights, not the original ones.
///  4. The A − k channels with the largest norm keep their previous entries; the others
///     become all zero.
/// Numerics: norms accumulate in double in row-major order (torch: float32), and the
/// root is not taken (monotonic); rankings agree unless two channel norms are within
/// float32 rounding of each other. Ties: the lower channel index is kept; NaN norms rank
/// above every number. k = 0 returns `previous` unchanged.
/// Throws config_error for n <= 0 or NaN, a dim out of range or a count above A;
/// shape_error if the extents differ.
template <float_view V>
[[nodiscard]] basic_mask<V::rank()> ln_structured(const V& w, amount a, double n, index_t dim,
                                                  const basic_mask<V::rank()>& previous) {
  constexpr std::size_t rank = V::rank();
  static_assert(rank >= 2,
                "ln_structured needs a tensor of rank >= 2: channels are slices along dim");
  detail::check_norm_order(n);
  const std::size_t d = detail::normalize_dim(dim, rank);
  const auto sw = as_strided(w);
  detail::check_mask_extents(previous, sw.extents(), "ln_structured");
  const index_t channels = sw.extent(d);
  index_t inner = 1;  // row-major stride of dim d in the (dense) mask
  for (std::size_t r = d + 1; r < rank; ++r) inner *= sw.extent(r);
  const auto channel_of = [&](index_t flat) { return (flat / inner) % channels; };

  const std::uint8_t* prev = previous.data();
  std::vector<std::uint8_t> alive(static_cast<std::size_t>(channels), 0);
  for (index_t i = 0; i < previous.size(); ++i) {
    if (prev[i] != 0) alive[static_cast<std::size_t>(channel_of(i))] = 1;
  }
  const auto n_alive =
      static_cast<index_t>(std::count(alive.begin(), alive.end(), std::uint8_t{1}));
  const index_t k = a.to_prune(n_alive);
  if (k == 0) return previous;

  const bool inf_norm = std::isinf(n);
  std::vector<double> norm(static_cast<std::size_t>(channels), 0.0);
  const float* p = sw.data_handle();
  detail::for_each_row_major(sw.mapping(), [&](index_t flat, index_t off) {
    if (prev[flat] == 0) return;
    double& acc = norm[static_cast<std::size_t>(channel_of(flat))];
    const double x = std::fabs(static_cast<double>(p[off]));
    if (inf_norm) {
      if (x != x || x > acc) acc = x;  // a NaN stays (x > NaN is false)
    } else if (n == 1.0) {
      acc += x;
    } else if (n == 2.0) {
      acc += x * x;
    } else {
      acc += std::pow(x, n);
    }
  });
  std::vector<index_t> ids;
  std::vector<double> scores;
  for (index_t c = 0; c < channels; ++c) {
    if (alive[static_cast<std::size_t>(c)] != 0) {
      ids.push_back(c);
      scores.push_back(norm[static_cast<std::size_t>(c)]);
    }
  }
  std::vector<std::uint8_t> pruned(static_cast<std::size_t>(channels), 0);
  for (index_t i : detail::lowest_k(std::span<const double>(scores), k)) {
    pruned[static_cast<std::size_t>(ids[static_cast<std::size_t>(i)])] = 1;
  }
  basic_mask<rank> out = previous;
  std::uint8_t* o = out.data();
  for (index_t i = 0; i < out.size(); ++i) {
    if (pruned[static_cast<std::size_t>(channel_of(i))] != 0) o[i] = 0;
  }
  return out;
}

/// prune.ln_structured(w, amount, n, dim) on an unpruned tensor.
template <float_view V>
[[nodiscard]] basic_mask<V::rank()> ln_structured(const V& w, amount a, double n, index_t dim) {
  return ln_structured(w, a, n, dim, basic_mask<V::rank()>(w.extents()));
}

/// prune.global_unstructured(params, pruning_method=L1Unstructured, amount) on tensors
/// pruned before: the entries all `previous` masks still keep are ranked jointly by |w|
/// (order: tensor position, then row-major index), k = amount.to_prune(alive total) of
/// them are pruned. Returns one mask per tensor (previous AND the new pruning).
/// Throws shape_error if the counts or extents differ, config_error for a count above
/// the alive total.
template <std::ranges::forward_range R>
  requires float_view<std::ranges::range_value_t<R>>
[[nodiscard]] std::vector<basic_mask<std::ranges::range_value_t<R>::rank()>> global_unstructured(
    const R& ws, amount a,
    std::span<const basic_mask<std::ranges::range_value_t<R>::rank()>> previous) {
  constexpr std::size_t rank = std::ranges::range_value_t<R>::rank();
  if (static_cast<std::size_t>(std::ranges::distance(ws)) != previous.size()) {
    throw shape_error("global_unstructured: " + std::to_string(std::ranges::distance(ws)) +
                      " tensors but " + std::to_string(previous.size()) +
                      " previous masks (expected one mask per tensor)");
  }
  std::vector<std::pair<std::size_t, index_t>> alive;  // (tensor, flat)
  std::vector<float> scores;
  std::size_t t = 0;
  for (const auto& w : ws) {
    const auto sw = as_strided(w);
    detail::check_mask_extents(previous[t], sw.extents(), "global_unstructured");
    const std::uint8_t* prev = previous[t].data();
    const float* p = sw.data_handle();
    detail::for_each_row_major(sw.mapping(), [&](index_t flat, index_t off) {
      if (prev[flat] != 0) {
        alive.emplace_back(t, flat);
        scores.push_back(std::fabs(p[off]));
      }
    });
    ++t;
  }
  const index_t k = a.to_prune(static_cast<index_t>(alive.size()));
  std::vector<basic_mask<rank>> out(previous.begin(), previous.end());
  for (index_t i : detail::lowest_k(std::span<const float>(scores), k)) {
    const auto& [tensor_pos, flat] = alive[static_cast<std::size_t>(i)];
    out[tensor_pos].data()[flat] = 0;
  }
  return out;
}

/// prune.global_unstructured on unpruned tensors.
template <std::ranges::forward_range R>
  requires float_view<std::ranges::range_value_t<R>>
[[nodiscard]] std::vector<basic_mask<std::ranges::range_value_t<R>::rank()>> global_unstructured(
    const R& ws, amount a) {
  constexpr std::size_t rank = std::ranges::range_value_t<R>::rank();
  std::vector<basic_mask<rank>> fresh;
  for (const auto& w : ws) fresh.emplace_back(w.extents());
  return global_unstructured(ws, a, std::span<const basic_mask<rank>>(fresh));
}

/// prune.random_unstructured semantics on a tensor pruned before: k = amount.to_prune(A)
/// of the A entries `previous` keeps are pruned, chosen uniformly at random with `g`
/// (a partial Fisher–Yates shuffle). Not torch's random stream: only the counts match.
/// Throws config_error for a count above A.
template <std::size_t Rank, class URBG>
[[nodiscard]] basic_mask<Rank> random_unstructured(const basic_mask<Rank>& previous, amount a,
                                                   URBG& g) {
  std::vector<index_t> alive;
  for (index_t i = 0; i < previous.size(); ++i) {
    if (previous.data()[i] != 0) alive.push_back(i);
  }
  const auto n_alive = static_cast<index_t>(alive.size());
  const index_t k = a.to_prune(n_alive);
  basic_mask<Rank> out = previous;
  for (index_t i = 0; i < k; ++i) {
    std::uniform_int_distribution<index_t> pick(i, n_alive - 1);
    std::swap(alive[static_cast<std::size_t>(i)], alive[static_cast<std::size_t>(pick(g))]);
    out.data()[alive[static_cast<std::size_t>(i)]] = 0;
  }
  return out;
}

/// torch's PruningContainer for one tensor: the mask accumulated over successive
/// pruning calls, each new amount relative to what is still alive (see the free
/// functions for each method's rule). `w` may be the original or the masked weights:
/// unstructured steps read only alive entries, structured steps score w ⊙ mask.
template <std::size_t Rank>
class pruning_container {
 public:
  /// Nothing pruned yet.
  explicit pruning_container(const extents<Rank>& e) : mask_(e) {}
  /// Continues from an existing mask (torch: a tensor pruned by custom_from_mask).
  explicit pruning_container(basic_mask<Rank> initial) : mask_(std::move(initial)) {}

  /// The combined mask after every step so far.
  const basic_mask<Rank>& mask() const noexcept { return mask_; }
  /// Number of pruning calls applied.
  index_t steps() const noexcept { return steps_; }

  template <float_view V>
    requires(V::rank() == Rank)
  const basic_mask<Rank>& l1_unstructured(const V& w, amount a) {
    mask_ = pytorch::l1_unstructured(w, a, mask_);
    ++steps_;
    return mask_;
  }
  template <float_view V>
    requires(V::rank() == Rank)
  const basic_mask<Rank>& ln_structured(const V& w, amount a, double n, index_t dim) {
    mask_ = pytorch::ln_structured(w, a, n, dim, mask_);
    ++steps_;
    return mask_;
  }
  template <class URBG>
  const basic_mask<Rank>& random_unstructured(amount a, URBG& g) {
    mask_ = pytorch::random_unstructured(mask_, a, g);
    ++steps_;
    return mask_;
  }

 private:
  basic_mask<Rank> mask_;
  index_t steps_ = 0;
};

}  // namespace pytorch

/// Compatibility with tfmot's magnitude pruning (pruning_impl.py, Pruning._update_mask).
namespace tfmot {

/// The number of weights tfmot's threshold keeps at least, computed in float32 as TF does:
///   k = max(round_half_even(float32(n) · (1 − sparsity)), 1)
/// (1 − sparsity and the product are float32 operations), clamped to n; 0 for n = 0.
inline index_t kept_count(index_t n, float sparsity) noexcept {
  if (n <= 0) return 0;
  const float kf = std::max(quant::round_to_integral(static_cast<float>(n) * (1.0f - sparsity),
                                                     quant::rounding::half_to_even),
                            1.0f);
  const double kd = static_cast<double>(kf);
  if (!(kd < static_cast<double>(n))) return n;  // also catches NaN
  return static_cast<index_t>(kd);
}


/// tfmot's threshold: the k-th largest |w|, k = kept_count(w.size(), sparsity).
/// Throws config_error unless 0 <= sparsity <= 1, shape_error for an empty tensor.
template <float_view V>
[[nodiscard]] float magnitude_threshold(const V& w, float sparsity) {
  check_sparsity(sparsity);
  if (w.size() == 0) {
    throw shape_error(
        "tfmot::magnitude_threshold of an empty tensor (expected at least one weight)");
  }
  auto a = detail::abs_row_major(as_strided(w));
  return detail::tfmot_kth_largest(a, kept_count(w.size(), sparsity));
}

/// tfmot's low-magnitude mask (any rank; tfmot flattens the tensor):
///   k = kept_count(N, sparsity), thr = the k-th largest |w|, mask = 1[|w| >= thr].
/// Every weight tied with thr is kept, so more than k can survive (all-equal weights
/// are all kept at any sparsity), and at least one weight always survives.
/// NaN (not defined by tfmot): NaN magnitudes rank above every number and are kept.
/// Throws config_error unless 0 <= sparsity <= 1 (tfmot's schedules give [0, 1)).
template <float_view V>
[[nodiscard]] basic_mask<V::rank()> magnitude_mask(const V& w, float sparsity) {
  check_sparsity(sparsity);
  const auto sw = as_strided(w);
  basic_mask<V::rank()> m(sw.extents());
  if (sw.size() == 0) return m;
  const auto a = detail::abs_row_major(sw);
  auto sorted = a;
  const float thr = detail::tfmot_kth_largest(sorted, kept_count(sw.size(), sparsity));
  std::uint8_t* keep = m.data();
  for (std::size_t i = 0; i < a.size(); ++i) keep[i] = detail::tfmot_keeps(a[i], thr) ? 1 : 0;
  return m;
}

/// tfmot's element-wise pruner (block_size (1, 1)) as a policy: magnitude_mask with a
/// run-time sparsity a schedule sets (sparsity_target). For block sparsity see block.hpp,
/// for m_by_n n_m.hpp.
class magnitude : public sparsity_target {
 public:
  using mask_type = mask;

  magnitude() = default;
  /// Throws config_error unless 0 <= sparsity <= 1.
  explicit magnitude(float sparsity) : sparsity_target(sparsity) {}

  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return tfmot::magnitude_mask(w, sparsity());
  }
};

static_assert(sparsity_pruner<magnitude>);

}  // namespace tfmot

}  // namespace qprune::prune

// Pruning masks: `basic_mask<Rank>` (alias `mask` for the [rows, cols] case), an owning
// byte-per-element 0/1 tensor (1 = keep, 0 = pruned) with the operations every pruner
// and layer needs: apply to weights or gradients, logical AND, counts and sparsity.
// Also the argument checks shared by the pruners (sparsity range, float and score views).
// Semantics: doc/pruning.md §1.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"

namespace qprune::prune {

namespace detail {

/// "%.9g" of a double, for error messages.
inline std::string format_number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

/// "[3, 4]".
template <std::size_t Rank>
std::string format_extents(const extents<Rank>& e) {
  std::string s = "[";
  for (std::size_t r = 0; r < Rank; ++r) {
    if (r != 0) s += ", ";
    s += std::to_string(e.extent(r));
  }
  return s + "]";
}

template <class V>
struct is_tensor_view : std::false_type {};
template <class T, std::size_t Rank, class Layout>
struct is_tensor_view<tensor_view<T, Rank, Layout>> : std::true_type {};

/// Calls f(flat, offset) for every element of a strided mapping, in row-major order
/// (`flat` = the row-major index, `offset` = the element's position in memory).
template <std::size_t Rank, class F>
void for_each_row_major(const layout_stride::mapping<extents<Rank>>& m, F&& f) {
  const auto& e = m.extents();
  const index_t n = e.size();
  if (n == 0) return;
  std::array<index_t, Rank> idx{};
  index_t off = 0;
  for (index_t flat = 0; flat < n; ++flat) {
    f(flat, off);
    // Odometer step: advance the last index, carrying into the earlier ones.
    std::size_t r = Rank - 1;
    ++idx[r];
    off += m.stride(r);
    while (idx[r] == e.extent(r) && r > 0) {
      off -= e.extent(r) * m.stride(r);
      idx[r] = 0;
      --r;
      ++idx[r];
      off += m.stride(r);
    }
  }
}

}  // namespace detail

/// A `tensor_view` of float or const float, of any rank and layout. The pruning
/// functions take these (a `tensor<float, R>` passes its `cview()`).
template <class V>
concept float_view =
    detail::is_tensor_view<V>::value && std::same_as<typename V::value_type, float>;

/// A `tensor_view` of importance scores: float or double (const or not), any rank and
/// layout. The score-ranking functions (score_mask, n_m_mask_from_scores) take these, so
/// double scores (Wanda's, channel norms) are ranked without a rounding to float.
template <class V>
concept score_view = detail::is_tensor_view<V>::value &&
                     (std::same_as<typename V::value_type, float> ||
                      std::same_as<typename V::value_type, double>);

/// The same elements as a read-only strided view (every layout converts to it).
template <score_view V>
constexpr tensor_view<const typename V::value_type, V::rank(), layout_stride> as_strided(
    const V& v) noexcept {
  return tensor_view<const typename V::value_type, V::rank(), layout_stride>(v);
}

/// Throws config_error unless 0 <= s <= 1. A sparsity is the fraction of zeros (pruned
/// weights); NaN is rejected.
inline void check_sparsity(double s, std::string_view what = "sparsity") {
  if (!(s >= 0.0 && s <= 1.0)) {
    std::string m(what);
    m += " " + detail::format_number(s) + " is invalid (expected a fraction of zeros in [0, 1])";
    throw config_error(m);
  }
}

/// The run-time target sparsity of a `sparsity_pruner` policy: a float in [0, 1],
/// checked on every write. Policies inherit it (non-virtual, no state besides the float)
/// to get `sparsity()` and `set_sparsity(s)`. Default: 0 (prune nothing).
class sparsity_target {
 public:
  sparsity_target() = default;
  /// Throws config_error unless 0 <= s <= 1.
  explicit sparsity_target(float s) : sparsity_((check_sparsity(s), s)) {}

  float sparsity() const noexcept { return sparsity_; }
  /// Throws config_error unless 0 <= s <= 1 (the old target is kept then).
  void set_sparsity(float s) {
    check_sparsity(s);
    sparsity_ = s;
  }

 private:
  float sparsity_ = 0.0f;
};

/// An owning 0/1 pruning mask of rank `Rank`, one byte per element, row-major:
/// 1 keeps the weight, 0 prunes it. `mask` (= basic_mask<2>) covers Dense weights
/// [out, in] and conv filters viewed as [out, kh*kw*in] (doc/pruning.md §1).
///
/// Invariant: every element is 0 or 1. The factories and pruners guarantee it; code
/// that writes through operator() or span() must keep it (is_binary() checks).
/// Complexity: counts and apply are O(size()); no member caches anything, so
/// writing through the mutable accessors never leaves a stale count.
template <std::size_t Rank>
class basic_mask {
  static_assert(Rank >= 1, "qprune::prune::basic_mask: Rank must be at least 1");

 public:
  using value_type = std::uint8_t;
  using extents_type = qprune::extents<Rank>;
  using view_type = tensor_view<std::uint8_t, Rank>;
  using const_view_type = tensor_view<const std::uint8_t, Rank>;

  /// An empty mask (every extent 0).
  basic_mask() = default;
  /// A mask of the given extents with every weight kept (`keep`) or pruned.
  /// Throws shape_error for a negative extent or an overflowing product.
  explicit basic_mask(const extents_type& e, bool keep = true)
      : bits_(e, static_cast<std::uint8_t>(keep ? 1 : 0)) {}
  /// All-kept mask: `mask(rows, cols)`.
  template <std::integral... I>
    requires(sizeof...(I) == Rank && (!std::same_as<I, bool> && ...))
  explicit basic_mask(I... e) : basic_mask(extents_type(e...)) {}

  /// Copies 0/1 values (row-major). Throws shape_error if the count differs from
  /// the extents, config_error if a value is neither 0 nor 1.
  [[nodiscard]] static basic_mask from_values(const extents_type& e,
                                              std::span<const std::uint8_t> values) {
    basic_mask m(e);
    if (static_cast<index_t>(values.size()) != m.size()) {
      throw shape_error("mask of extents " + detail::format_extents(e) + " given " +
                        std::to_string(values.size()) + " values (expected " +
                        std::to_string(m.size()) + ")");
    }
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (values[i] > 1) {
        throw config_error("mask value " + std::to_string(values[i]) + " at index " +
                           std::to_string(i) + " is invalid (expected 0 or 1)");
      }
    }
    std::copy(values.begin(), values.end(), m.bits_.span().begin());
    return m;
  }

  /// The mask of a weight tensor's nonzeros: 1 where w != 0 (NaN counts as
  /// nonzero; +0.0 and -0.0 as zero). Recovers the mask of weights that were
  /// pruned by zeroing.
  template <float_view V>
    requires(V::rank() == Rank)
  [[nodiscard]] static basic_mask from_nonzeros(const V& w) {
    const auto sw = as_strided(w);
    basic_mask m(sw.extents());
    std::uint8_t* out = m.bits_.data();
    const float* p = sw.data_handle();
    detail::for_each_row_major(sw.mapping(), [&](index_t flat, index_t off) {
      out[flat] = static_cast<std::uint8_t>(p[off] != 0.0f ? 1 : 0);
    });
    return m;
  }

  static constexpr std::size_t rank() noexcept { return Rank; }
  const extents_type& extents() const noexcept { return bits_.extents(); }
  index_t extent(std::size_t r) const noexcept { return bits_.extent(r); }
  /// Number of elements.
  index_t size() const noexcept { return bits_.size(); }
  bool empty() const noexcept { return bits_.empty(); }
  /// extent(0) and extent(1) of a 2-D mask.
  index_t rows() const noexcept
    requires(Rank == 2)
  {
    return extent(0);
  }
  index_t cols() const noexcept
    requires(Rank == 2)
  {
    return extent(1);
  }

  const std::uint8_t* data() const noexcept { return bits_.data(); }
  std::uint8_t* data() noexcept { return bits_.data(); }
  std::span<const std::uint8_t> span() const noexcept { return bits_.span(); }
  /// Mutable elements; write only 0 or 1.
  std::span<std::uint8_t> span() noexcept { return bits_.span(); }
  const_view_type view() const noexcept { return bits_.cview(); }

  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  std::uint8_t operator()(I... idx) const noexcept {
    return bits_(idx...);
  }
  /// Mutable element; write only 0 or 1.
  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  std::uint8_t& operator()(I... idx) noexcept {
    return bits_(idx...);
  }

  /// Number of kept weights (ones).
  index_t count_kept() const noexcept {
    index_t n = 0;
    for (std::uint8_t b : bits_.span()) n += b;
    return n;
  }
  /// Number of pruned weights (zeros).
  index_t count_pruned() const noexcept { return size() - count_kept(); }
  /// Fraction of pruned weights, count_pruned() / size(); 0 for an empty mask.
  double sparsity() const noexcept {
    return size() == 0 ? 0.0 : static_cast<double>(count_pruned()) / static_cast<double>(size());
  }
  /// True when every element is 0 or 1.
  bool is_binary() const noexcept {
    return std::all_of(bits_.span().begin(), bits_.span().end(),
                       [](std::uint8_t b) { return b <= 1; });
  }

  /// Zeroes the pruned weights of `w` in place: w[i] = mask[i] ? w[i] : +0.0f.
  /// Kept weights are untouched (NaN and -0.0 included); pruned ones become exactly
  /// +0.0f (never a product, so inf and NaN are cleared too). Idempotent.
  /// Throws shape_error if the extents differ.
  void apply(tensor_view<float, Rank> w) const {
    check_same_extents(w.extents(), "apply");
    float* p = w.data_handle();
    const std::uint8_t* b = bits_.data();
    const index_t n = size();
    for (index_t i = 0; i < n; ++i) {
      if (b[i] == 0) p[i] = 0.0f;
    }
  }
  /// Same, for any layout (strided, column-major, ...).
  void apply(tensor_view<float, Rank, layout_stride> w) const {
    check_same_extents(w.extents(), "apply");
    float* p = w.data_handle();
    const std::uint8_t* b = bits_.data();
    detail::for_each_row_major(w.mapping(), [&](index_t flat, index_t off) {
      if (b[flat] == 0) p[off] = 0.0f;
    });
  }
  /// Masks a gradient the same way, so that an optimizer step leaves pruned weights
  /// at exactly zero (apex ASP masks gradients before the step, weights after).
  void apply_to_gradient(tensor_view<float, Rank> g) const { apply(g); }
  void apply_to_gradient(tensor_view<float, Rank, layout_stride> g) const { apply(g); }

  /// Logical AND in place: a weight stays kept only if both masks keep it.
  /// Throws shape_error if the extents differ.
  basic_mask& operator&=(const basic_mask& o) {
    check_same_extents(o.extents(), "operator&");
    std::uint8_t* a = bits_.data();
    const std::uint8_t* b = o.bits_.data();
    const index_t n = size();
    for (index_t i = 0; i < n; ++i) a[i] = static_cast<std::uint8_t>(a[i] & b[i]);
    return *this;
  }
  /// Logical AND. Throws shape_error if the extents differ.
  [[nodiscard]] friend basic_mask operator&(basic_mask a, const basic_mask& b) {
    a &= b;
    return a;
  }

  /// The same elements with new extents of equal product (for example a conv
  /// filter mask [out, kh, kw, in] as [out, kh*kw*in]). Throws shape_error otherwise.
  template <std::size_t R2>
  [[nodiscard]] basic_mask<R2> reshaped(const qprune::extents<R2>& e) const {
    basic_mask<R2> m;
    m.bits_ = bits_.reshaped(e);
    return m;
  }

  friend bool operator==(const basic_mask& a, const basic_mask& b) { return a.bits_ == b.bits_; }

 private:
  template <std::size_t>
  friend class basic_mask;

  void check_same_extents(const extents_type& e, const char* op) const {
    if (e != extents()) {
      throw shape_error(std::string("mask ") + op + ": the mask has extents " +
                        detail::format_extents(extents()) + " but the tensor has " +
                        detail::format_extents(e) + " (expected equal extents)");
    }
  }

  tensor<std::uint8_t, Rank> bits_;
};

/// The mask of a [rows, cols] weight matrix (Dense [out, in]; conv filters viewed
/// as [out, kh*kw*in]).
using mask = basic_mask<2>;

}  // namespace qprune::prune

// Non-owning multi-dimensional views over user memory, in mdspan's vocabulary:
// `extents`, layout policies with a nested `mapping` (`layout_right` = row-major,
// `layout_left` = column-major, `layout_stride`), and `tensor_view`, the
// counterpart of std::mdspan with dynamic extents. Moving to std::mdspan later
// is mechanical: the member names are the standard's.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"

namespace qprune {

/// The sizes of the `Rank` dimensions of a tensor, all known at run time.
/// Preconditions: every extent is >= 0 (checked by the throwing factories).
template <std::size_t Rank>
class extents {
 public:
  using index_type = index_t;
  using rank_type = std::size_t;

  constexpr extents() noexcept = default;
  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  constexpr explicit extents(I... e) noexcept : e_{static_cast<index_t>(e)...} {}
  constexpr explicit extents(const std::array<index_t, Rank>& e) noexcept : e_(e) {}

  static constexpr rank_type rank() noexcept { return Rank; }
  constexpr index_t extent(rank_type r) const noexcept { return e_[r]; }
  /// Product of all extents (1 for rank 0).
  constexpr index_t size() const noexcept {
    index_t n = 1;
    for (index_t e : e_) n *= e;
    return n;
  }
  constexpr const std::array<index_t, Rank>& as_array() const noexcept { return e_; }

  friend constexpr bool operator==(const extents&, const extents&) = default;

 private:
  std::array<index_t, Rank> e_{};
};

namespace detail {
/// Throws shape_error unless every extent is non-negative and the product fits in index_t.
template <std::size_t Rank>
void check_extents(const extents<Rank>& e) {
  index_t n = 1;
  for (std::size_t r = 0; r < Rank; ++r) {
    const index_t x = e.extent(r);
    if (x < 0) {
      throw shape_error("extent " + std::to_string(r) + " is " + std::to_string(x) +
                        " (expected a size >= 0)");
    }
    if (x != 0 && n > PTRDIFF_MAX / x) {
      throw shape_error("the product of the extents overflows (expected at most " +
                        std::to_string(PTRDIFF_MAX) + " elements)");
    }
    n *= x;
  }
}

template <std::size_t Rank, class... I>
constexpr index_t linear_right(const extents<Rank>& e, I... idx) noexcept {
  const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
  index_t off = 0;
  for (std::size_t r = 0; r < Rank; ++r) off = off * e.extent(r) + i[r];
  return off;
}

template <std::size_t Rank, class... I>
constexpr bool in_bounds(const extents<Rank>& e, I... idx) noexcept {
  const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
  for (std::size_t r = 0; r < Rank; ++r) {
    if (i[r] < 0 || i[r] >= e.extent(r)) return false;
  }
  return true;
}
}  // namespace detail

/// Row-major (C order) layout: the last index varies fastest.
struct layout_right {
  template <class Extents>
  class mapping;
};

/// Column-major (Fortran order, Eigen's default) layout: the first index varies fastest.
struct layout_left {
  template <class Extents>
  class mapping;
};

/// Arbitrary non-negative strides, in elements.
struct layout_stride {
  template <class Extents>
  class mapping;
};

template <std::size_t Rank>
class layout_right::mapping<extents<Rank>> {
 public:
  using extents_type = qprune::extents<Rank>;
  using layout_type = layout_right;

  constexpr mapping() noexcept = default;
  constexpr explicit mapping(const extents_type& e) noexcept : e_(e) {}

  constexpr const extents_type& extents() const noexcept { return e_; }
  template <class... I>
  constexpr index_t operator()(I... idx) const noexcept {
    return detail::linear_right(e_, idx...);
  }
  constexpr index_t required_span_size() const noexcept { return e_.size(); }
  constexpr index_t stride(std::size_t r) const noexcept {
    index_t s = 1;
    for (std::size_t k = r + 1; k < Rank; ++k) s *= e_.extent(k);
    return s;
  }
  static constexpr bool is_always_unique() noexcept { return true; }
  static constexpr bool is_always_exhaustive() noexcept { return true; }
  static constexpr bool is_exhaustive() noexcept { return true; }

  friend constexpr bool operator==(const mapping&, const mapping&) = default;

 private:
  extents_type e_{};
};

template <std::size_t Rank>
class layout_left::mapping<extents<Rank>> {
 public:
  using extents_type = qprune::extents<Rank>;
  using layout_type = layout_left;

  constexpr mapping() noexcept = default;
  constexpr explicit mapping(const extents_type& e) noexcept : e_(e) {}

  constexpr const extents_type& extents() const noexcept { return e_; }
  template <class... I>
  constexpr index_t operator()(I... idx) const noexcept {
    const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t r = Rank; r-- > 0;) off = off * e_.extent(r) + i[r];
    return off;
  }
  constexpr index_t required_span_size() const noexcept { return e_.size(); }
  constexpr index_t stride(std::size_t r) const noexcept {
    index_t s = 1;
    for (std::size_t k = 0; k < r; ++k) s *= e_.extent(k);
    return s;
  }
  static constexpr bool is_always_unique() noexcept { return true; }
  static constexpr bool is_always_exhaustive() noexcept { return true; }
  static constexpr bool is_exhaustive() noexcept { return true; }

  friend constexpr bool operator==(const mapping&, const mapping&) = default;

 private:
  extents_type e_{};
};

template <std::size_t Rank>
class layout_stride::mapping<extents<Rank>> {
 public:
  using extents_type = qprune::extents<Rank>;
  using layout_type = layout_stride;

  constexpr mapping() noexcept = default;
  /// Strides in elements; each must be >= 0 (checked by tensor_view's throwing constructors).
  constexpr mapping(const extents_type& e, const std::array<index_t, Rank>& strides) noexcept
      : e_(e), s_(strides) {}
  /// Converts a row- or column-major mapping (mdspan's converting constructor).
  template <class Other>
    requires(std::same_as<typename Other::extents_type, extents_type> &&
             !std::same_as<Other, mapping>)
  constexpr explicit(false) mapping(const Other& other) noexcept : e_(other.extents()) {
    for (std::size_t r = 0; r < Rank; ++r) s_[r] = other.stride(r);
  }

  constexpr const extents_type& extents() const noexcept { return e_; }
  constexpr const std::array<index_t, Rank>& strides() const noexcept { return s_; }
  template <class... I>
  constexpr index_t operator()(I... idx) const noexcept {
    const std::array<index_t, Rank> i{static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t r = 0; r < Rank; ++r) off += i[r] * s_[r];
    return off;
  }
  /// 1 + the offset of the last element, or 0 for an empty tensor.
  constexpr index_t required_span_size() const noexcept {
    index_t n = 1;
    for (std::size_t r = 0; r < Rank; ++r) {
      if (e_.extent(r) == 0) return 0;
      n += (e_.extent(r) - 1) * s_[r];
    }
    return n;
  }
  constexpr index_t stride(std::size_t r) const noexcept { return s_[r]; }
  static constexpr bool is_always_unique() noexcept { return false; }
  static constexpr bool is_always_exhaustive() noexcept { return false; }
  /// True when the elements fill [0, required_span_size()) without gaps.
  constexpr bool is_exhaustive() const noexcept { return required_span_size() == e_.size(); }

  friend constexpr bool operator==(const mapping&, const mapping&) = default;

 private:
  extents_type e_{};
  std::array<index_t, Rank> s_{};
};

/// A non-owning view of `Rank`-dimensional data of type `T` (`const T` for a
/// read-only view) laid out by `Layout`.
///
/// Lifetime: the view does not own its memory. It is valid while the buffer it
/// was made from is alive and not reallocated; copying a view copies the pointer.
/// Element access checks bounds with QPRUNE_ASSERT (debug builds only); the
/// constructors taking a std::span check the span is large enough and throw
/// qprune::shape_error otherwise.
template <class T, std::size_t Rank, class Layout = layout_right>
class tensor_view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using extents_type = qprune::extents<Rank>;
  using layout_type = Layout;
  using mapping_type = typename Layout::template mapping<extents_type>;
  using data_handle_type = T*;
  using reference = T&;
  using index_type = index_t;

  constexpr tensor_view() noexcept = default;

  /// Unchecked: `p` must point to at least `m.required_span_size()` elements.
  constexpr tensor_view(T* p, const mapping_type& m) noexcept : p_(p), m_(m) {}
  /// Unchecked: `p` must point to at least `e.size()` elements (dense layouts).
  constexpr tensor_view(T* p, const extents_type& e) noexcept
    requires(!std::same_as<Layout, layout_stride>)
      : p_(p), m_(e) {}
  /// Unchecked, for dense layouts: `tensor_view<float, 2>(p, rows, cols)`.
  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank && !std::same_as<Layout, layout_stride>)
  constexpr tensor_view(T* p, I... e) noexcept : p_(p), m_(extents_type(e...)) {}

  /// Checked: throws shape_error if an extent is negative or the span is too small.
  tensor_view(std::span<T> s, const mapping_type& m) : p_(s.data()), m_(m) {
    detail::check_extents(m.extents());
    if constexpr (std::same_as<Layout, layout_stride>) {
      for (std::size_t r = 0; r < Rank; ++r) {
        if (m.stride(r) < 0) {
          throw shape_error("stride " + std::to_string(r) + " is " +
                            std::to_string(m.stride(r)) + " (expected >= 0)");
        }
      }
    }
    if (m.required_span_size() > static_cast<index_t>(s.size())) {
      throw shape_error("the view needs " + std::to_string(m.required_span_size()) +
                        " elements but the buffer holds " + std::to_string(s.size()));
    }
  }
  /// Checked, for dense layouts.
  tensor_view(std::span<T> s, const extents_type& e)
    requires(!std::same_as<Layout, layout_stride>)
      : tensor_view(s, mapping_type(e)) {}

  /// Converts `tensor_view<U, ...>` to a view of `const U` and/or to layout_stride,
  /// the conversions std::mdspan allows implicitly.
  template <class U, class OtherLayout>
    requires(std::is_convertible_v<U (*)[], T (*)[]> &&
             std::is_convertible_v<typename OtherLayout::template mapping<extents_type>,
                                   mapping_type>)
  constexpr tensor_view(const tensor_view<U, Rank, OtherLayout>& other) noexcept
      : p_(other.data_handle()), m_(other.mapping()) {}

  static constexpr std::size_t rank() noexcept { return Rank; }
  constexpr T* data_handle() const noexcept { return p_; }
  constexpr const mapping_type& mapping() const noexcept { return m_; }
  constexpr const extents_type& extents() const noexcept { return m_.extents(); }
  constexpr index_t extent(std::size_t r) const noexcept { return m_.extents().extent(r); }
  constexpr index_t stride(std::size_t r) const noexcept { return m_.stride(r); }
  /// Number of elements (product of the extents).
  constexpr index_t size() const noexcept { return m_.extents().size(); }
  constexpr bool empty() const noexcept { return size() == 0; }
  constexpr bool is_exhaustive() const noexcept { return m_.is_exhaustive(); }

  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  constexpr T& operator()(I... idx) const noexcept {
    QPRUNE_ASSERT(detail::in_bounds(m_.extents(), idx...), "tensor_view index out of range");
    return p_[m_(idx...)];
  }

  /// The elements as one contiguous span. Precondition: is_exhaustive().
  constexpr std::span<T> span() const noexcept {
    QPRUNE_ASSERT(is_exhaustive(), "span() needs a view without gaps");
    return std::span<T>(p_, static_cast<std::size_t>(size()));
  }

 private:
  T* p_ = nullptr;
  mapping_type m_{};
};

/// Read-only view alias.
template <class T, std::size_t Rank, class Layout = layout_right>
using const_view = tensor_view<const T, Rank, Layout>;

}  // namespace qprune

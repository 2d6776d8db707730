// `tensor<T, Rank>`: an owning, row-major, 64-byte aligned N-D array. Views of
// it (`view()`, `cview()`) are `tensor_view`s, so every function that takes a
// view takes a tensor's data without copying.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"

namespace qprune {

/// Owning row-major tensor with value semantics (copying copies the data).
/// Complexity: construction allocates size() elements once; element access is O(1).
template <class T, std::size_t Rank>
class tensor {
  static_assert(Rank >= 1, "qprune::tensor: Rank must be at least 1");
 public:
  using value_type = T;
  using extents_type = qprune::extents<Rank>;
  using view_type = tensor_view<T, Rank>;
  using const_view_type = tensor_view<const T, Rank>;

  tensor() = default;
  /// Zero-initialised (value-initialised) tensor of the given extents.
  /// Throws shape_error for a negative extent or an overflowing product.
  explicit tensor(const extents_type& e, const T& value = T{}) : e_(e) {
    detail::check_extents(e);
    data_.assign(static_cast<std::size_t>(e.size()), value);
  }
  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  explicit tensor(I... e) : tensor(extents_type(e...)) {}
  /// Copies `values` (row-major); throws shape_error if the count differs from the extents.
  tensor(const extents_type& e, std::span<const T> values) : tensor(e) {
    if (static_cast<index_t>(values.size()) != e.size()) {
      throw shape_error("tensor of " + std::to_string(e.size()) + " elements given " +
                        std::to_string(values.size()) + " values");
    }
    std::copy(values.begin(), values.end(), data_.begin());
  }
  tensor(const extents_type& e, std::initializer_list<T> values)
      : tensor(e, std::span<const T>(values.begin(), values.size())) {}

  static constexpr std::size_t rank() noexcept { return Rank; }
  const extents_type& extents() const noexcept { return e_; }
  index_t extent(std::size_t r) const noexcept { return e_.extent(r); }
  index_t size() const noexcept { return static_cast<index_t>(data_.size()); }
  bool empty() const noexcept { return data_.empty(); }

  T* data() noexcept { return data_.data(); }
  const T* data() const noexcept { return data_.data(); }
  std::span<T> span() noexcept { return {data_.data(), data_.size()}; }
  std::span<const T> span() const noexcept { return {data_.data(), data_.size()}; }

  view_type view() noexcept { return view_type(data_.data(), e_); }
  const_view_type view() const noexcept { return const_view_type(data_.data(), e_); }
  const_view_type cview() const noexcept { return const_view_type(data_.data(), e_); }
  operator view_type() noexcept { return view(); }
  operator const_view_type() const noexcept { return cview(); }

  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  T& operator()(I... idx) noexcept {
    QPRUNE_ASSERT(detail::in_bounds(e_, idx...), "tensor index out of range");
    return data_[static_cast<std::size_t>(detail::linear_right(e_, idx...))];
  }
  template <std::convertible_to<index_t>... I>
    requires(sizeof...(I) == Rank)
  const T& operator()(I... idx) const noexcept {
    QPRUNE_ASSERT(detail::in_bounds(e_, idx...), "tensor index out of range");
    return data_[static_cast<std::size_t>(detail::linear_right(e_, idx...))];
  }

  void fill(const T& v) { std::fill(data_.begin(), data_.end(), v); }

  /// Same elements, new extents of equal product; throws shape_error otherwise.
  template <std::size_t R2>
  tensor<T, R2> reshaped(const qprune::extents<R2>& e) const {
    detail::check_extents(e);
    if (e.size() != e_.size()) {
      throw shape_error("cannot reshape " + std::to_string(e_.size()) + " elements into " +
                        std::to_string(e.size()));
    }
    return tensor<T, R2>(e, span());
  }

  friend bool operator==(const tensor& a, const tensor& b) {
    return a.e_ == b.e_ && a.data_ == b.data_;
  }

 private:
  extents_type e_{};
  aligned_vector<T> data_;
};

}  // namespace qprune

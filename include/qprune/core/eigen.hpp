// Zero-copy interop between qprune views and Eigen, both ways:
//   as_eigen(view)  -> Eigen::Map over the view's memory (row-major, column-major
//                      or strided, matching the view's layout);
//   to_view(matrix) -> tensor_view over an Eigen matrix, vector, Map or Ref.
// Nothing is copied; the results alias the original memory (see "Lifetime").
#pragma once

#include <Eigen/Core>
#include <type_traits>

#include "qprune/core/tensor_view.hpp"

namespace qprune {

/// Row-major dynamic Eigen matrix, the layout of qprune's 2-D tensors.
template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {
template <class T, class Plain>
using map_of = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Plain, Plain>>;
template <class T, class Plain>
using strided_map_of = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Plain, Plain>, 0,
                                  Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
}  // namespace detail

/// An Eigen::Map of a row-major 2-D view (rows = extent 0).
/// Lifetime: aliases the view's memory; valid while that memory is.
template <class T>
auto as_eigen(tensor_view<T, 2, layout_right> v) noexcept {
  return detail::map_of<T, row_matrix<std::remove_const_t<T>>>(v.data_handle(), v.extent(0),
                                                                 v.extent(1));
}

/// An Eigen::Map of a column-major 2-D view.
template <class T>
auto as_eigen(tensor_view<T, 2, layout_left> v) noexcept {
  return detail::map_of<T, Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic>>(
      v.data_handle(), v.extent(0), v.extent(1));
}

/// An Eigen::Map with run-time strides of a strided 2-D view.
template <class T>
auto as_eigen(tensor_view<T, 2, layout_stride> v) noexcept {
  using plain = row_matrix<std::remove_const_t<T>>;
  // For a row-major Map, Eigen's outer stride steps rows and its inner stride columns.
  return detail::strided_map_of<T, plain>(
      v.data_handle(), v.extent(0), v.extent(1),
      Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(v.stride(0), v.stride(1)));
}

/// An Eigen::Map of a contiguous 1-D view as a column vector.
template <class T, class Layout>
  requires(!std::same_as<Layout, layout_stride>)
auto as_eigen(tensor_view<T, 1, Layout> v) noexcept {
  return detail::map_of<T, Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>>(
      v.data_handle(), v.extent(0));
}

/// A view of a plain row-major Eigen matrix (or Map of one): layout_right.
template <class Derived>
  requires(static_cast<bool>(Derived::IsRowMajor) && Derived::ColsAtCompileTime != 1 &&
           std::is_base_of_v<Eigen::PlainObjectBase<std::remove_const_t<Derived>>,
                             std::remove_const_t<Derived>>)
auto to_view(Derived& m) noexcept {
  using T = std::conditional_t<std::is_const_v<Derived>, const typename Derived::Scalar,
                               typename Derived::Scalar>;
  return tensor_view<T, 2, layout_right>(m.data(), m.rows(), m.cols());
}

/// A view of a plain column-major Eigen matrix: layout_left.
template <class Derived>
  requires(!static_cast<bool>(Derived::IsRowMajor) && Derived::ColsAtCompileTime != 1 &&
           std::is_base_of_v<Eigen::PlainObjectBase<std::remove_const_t<Derived>>,
                             std::remove_const_t<Derived>>)
auto to_view(Derived& m) noexcept {
  using T = std::conditional_t<std::is_const_v<Derived>, const typename Derived::Scalar,
                               typename Derived::Scalar>;
  return tensor_view<T, 2, layout_left>(m.data(), m.rows(), m.cols());
}

/// A view of a plain Eigen column vector: rank 1.
template <class Derived>
  requires(Derived::ColsAtCompileTime == 1 &&
           std::is_base_of_v<Eigen::PlainObjectBase<std::remove_const_t<Derived>>,
                             std::remove_const_t<Derived>>)
auto to_view(Derived& v) noexcept {
  using T = std::conditional_t<std::is_const_v<Derived>, const typename Derived::Scalar,
                               typename Derived::Scalar>;
  return tensor_view<T, 1, layout_right>(v.data(), v.size());
}

/// A strided view of any Eigen expression with direct access: Ref, Map with
/// strides, blocks of a matrix. Read-only when the expression is.
/// Lifetime: aliases the expression's storage.
template <class Derived>
  requires(static_cast<bool>(Eigen::internal::traits<Derived>::Flags & Eigen::DirectAccessBit))
auto to_strided_view(Eigen::DenseBase<Derived>& m) noexcept {
  using T = std::remove_pointer_t<decltype(m.derived().data())>;
  return tensor_view<T, 2, layout_stride>(
      m.derived().data(),
      layout_stride::mapping<extents<2>>(extents<2>(m.rows(), m.cols()),
                                         {m.derived().rowStride(), m.derived().colStride()}));
}
template <class Derived>
  requires(static_cast<bool>(Eigen::internal::traits<Derived>::Flags & Eigen::DirectAccessBit))
auto to_strided_view(const Eigen::DenseBase<Derived>& m) noexcept {
  using T = const typename Derived::Scalar;
  return tensor_view<T, 2, layout_stride>(
      m.derived().data(),
      layout_stride::mapping<extents<2>>(extents<2>(m.rows(), m.cols()),
                                         {m.derived().rowStride(), m.derived().colStride()}));
}

}  // namespace qprune

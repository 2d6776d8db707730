// Scalar reference SpMV / SpMM over the sparse storages of
// prune/sparse_storage.hpp (CSR, bitmask, packed N:M; fp32, fp16, int8 values):
// the oracle the fast sparse kernels are tested against. Every format visits a
// row's entries in ascending column order and accumulates the same way, so the
// three formats give bit-identical results for the same values.
//
//   fp32 / fp16:  acc = 0; for each stored a_rc != 0, ascending c: acc = fma(a_rc, x_c, acc)
//                 y_r = acc + b_r
//   int8:         acc = 0; for each stored q_rc != 0, ascending c: acc = fma(float(q_rc), x_c, acc)
//                 y_r = fma(s_r, acc, b_r)
// (b_r = +0 without a bias.) Stored zeros (N:M padding, int8 codes 0, mask-kept
// zeros) and pruned entries contribute nothing, so a non-finite x_c only
// reaches rows holding a nonzero value in column c.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "qprune/core/config.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/sparse_storage.hpp"

namespace qprune::kernels::reference {

namespace detail {

/// Y[rows, n] = A X (+ bias), X [cols, n] and Y row-major and contiguous.
/// Preconditions (checked by the callers): the sizes match, Y does not overlap
/// X or bias.
template <class Matrix>
void spmm_run(const Matrix& a, const float* x, float* y, index_t n,
              std::span<const float> bias) noexcept {
  using V = typename Matrix::value_type;
  const index_t rows = a.rows();
  std::fill_n(y, rows * n, 0.0f);
  a.for_each_stored([&](index_t r, index_t c, V v) noexcept {
    const float av = prune::detail::sparse_stored_float(v);
    if (av == 0.0f) return;
    const float* xc = x + c * n;
    float* yr = y + r * n;
    for (index_t j = 0; j < n; ++j) yr[j] = std::fma(av, xc[j], yr[j]);
  });
  for (index_t r = 0; r < rows; ++r) {
    const float b = bias.empty() ? 0.0f : bias[static_cast<std::size_t>(r)];
    float* yr = y + r * n;
    if constexpr (std::same_as<V, std::int8_t>) {
      const float s = a.row_scale(r);
      for (index_t j = 0; j < n; ++j) yr[j] = std::fma(s, yr[j], b);
    } else {
      for (index_t j = 0; j < n; ++j) yr[j] = yr[j] + b;
    }
  }
}

template <class Matrix>
bool spmv_checked(const Matrix& a, std::span<const float> x, std::span<float> y,
                  std::span<const float> bias) noexcept {
  if (static_cast<index_t>(x.size()) != a.cols() || static_cast<index_t>(y.size()) != a.rows() ||
      (!bias.empty() && static_cast<index_t>(bias.size()) != a.rows())) {
    return false;
  }
  spmm_run(a, x.data(), y.data(), 1, bias);
  return true;
}

template <class Matrix>
bool spmm_checked(const Matrix& a, tensor_view<const float, 2> x, tensor_view<float, 2> y,
                  std::span<const float> bias) noexcept {
  if (x.extent(0) != a.cols() || y.extent(0) != a.rows() || y.extent(1) != x.extent(1) ||
      (!bias.empty() && static_cast<index_t>(bias.size()) != a.rows())) {
    return false;
  }
  spmm_run(a, x.data_handle(), y.data_handle(), x.extent(1), bias);
  return true;
}

}  // namespace detail

/// y = A x (+ bias): y_r = sum over row r's stored nonzero values, in ascending
/// column order, as stated in the file comment (float accumulator, one fma per
/// term; int8: y_r = fma(s_r, acc, b_r)). `bias` empty means none (b_r = +0),
/// else it holds rows() values.
/// Returns false, writing nothing, unless x.size() == cols(), y.size() ==
/// rows() and bias is empty or of size rows(). Precondition: y does not overlap
/// x or bias. Complexity: O(stored entries + rows) (bitmask: O(rows * cols)),
/// no allocation.
template <prune::sparse_value V>
[[nodiscard]] bool spmv(const prune::csr_matrix<V>& a, std::span<const float> x,
                        std::span<float> y, std::span<const float> bias = {}) noexcept {
  return detail::spmv_checked(a, x, y, bias);
}

/// As the CSR overload.
template <prune::sparse_value V>
[[nodiscard]] bool spmv(const prune::bitmask_matrix<V>& a, std::span<const float> x,
                        std::span<float> y, std::span<const float> bias = {}) noexcept {
  return detail::spmv_checked(a, x, y, bias);
}

/// As the CSR overload; padding slots (value 0) contribute nothing.
template <prune::sparse_value V>
[[nodiscard]] bool spmv(const prune::packed_nm_matrix<V>& a, std::span<const float> x,
                        std::span<float> y, std::span<const float> bias = {}) noexcept {
  return detail::spmv_checked(a, x, y, bias);
}

/// Y = A X (+ bias): X is [cols(), n], Y is [rows(), n], both row-major; every
/// column j of Y is computed exactly as spmv of column j of X (same order, same
/// bits), and bias[r] is added to every element of row r.
/// Returns false, writing nothing, unless X.extent(0) == cols(), Y.extent(0) ==
/// rows(), Y.extent(1) == X.extent(1) and bias is empty or of size rows().
/// Precondition: Y does not overlap X or bias. No allocation.
template <prune::sparse_value V>
[[nodiscard]] bool spmm(const prune::csr_matrix<V>& a, tensor_view<const float, 2> x,
                        tensor_view<float, 2> y, std::span<const float> bias = {}) noexcept {
  return detail::spmm_checked(a, x, y, bias);
}

/// As the CSR overload.
template <prune::sparse_value V>
[[nodiscard]] bool spmm(const prune::bitmask_matrix<V>& a, tensor_view<const float, 2> x,
                        tensor_view<float, 2> y, std::span<const float> bias = {}) noexcept {
  return detail::spmm_checked(a, x, y, bias);
}

/// As the CSR overload.
template <prune::sparse_value V>
[[nodiscard]] bool spmm(const prune::packed_nm_matrix<V>& a, tensor_view<const float, 2> x,
                        tensor_view<float, 2> y, std::span<const float> bias = {}) noexcept {
  return detail::spmm_checked(a, x, y, bias);
}

}  // namespace qprune::kernels::reference

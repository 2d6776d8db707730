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
//
// spmv_lanes / spmm_lanes are the twins of the fast kernels (kernels/spmm.hpp):
// the same terms, summed in 16 interleaved partial sums combined in a fixed
// tree (the "lane order" below), which SIMD paths reproduce bit for bit.
#pragma once

#include <algorithm>
#include <array>
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

// ---------------------------------------------------------------------------
// Lane order: the accumulation order of the fast kernels (kernels/spmm.hpp)
// ---------------------------------------------------------------------------

/// Partial sums per output row in the lane order.
inline constexpr int spmv_lanes_count = 16;

namespace detail {

/// Combines 16 partial sums p[0..15] in the fixed tree of the lane order:
///   p[i] += p[i + 8] (i < 8); p[i] += p[i + 4] (i < 4); p[i] += p[i + 2] (i < 2);
///   result p[0] + p[1]   (each + one float addition, left operand the lower index)
/// which is the halving reduction a 16-lane (or 2 x 8-lane) register performs.
[[nodiscard]] inline float lanes_tree(std::array<float, 16>& p) noexcept {
  for (std::size_t i = 0; i < 8; ++i) p[i] = p[i] + p[i + 8];
  for (std::size_t i = 0; i < 4; ++i) p[i] = p[i] + p[i + 4];
  for (std::size_t i = 0; i < 2; ++i) p[i] = p[i] + p[i + 2];
  return p[0] + p[1];
}

/// y = A x (+ bias) in the lane order. Preconditions (checked by the callers):
/// x holds cols() values, y rows(), bias rows() or is null; y overlaps neither.
template <class Matrix>
void spmv_lanes_run(const Matrix& a, const float* x, float* y, const float* bias) noexcept {
  using V = typename Matrix::value_type;
  std::array<float, 16> p{};
  index_t cur = 0;
  std::size_t j = 0;
  const auto finish_row = [&](index_t r) noexcept {
    const float sum = lanes_tree(p);
    const float b = bias != nullptr ? bias[r] : 0.0f;
    if constexpr (std::same_as<V, std::int8_t>) {
      y[r] = std::fma(a.row_scale(r), sum, b);
    } else {
      y[r] = sum + b;
    }
    p.fill(0.0f);
    j = 0;
  };
  // for_each_stored visits a row's entries in storage order; j counts them (stored
  // zeros and N:M padding included: positions, not values, pick the lane).
  a.for_each_stored([&](index_t r, index_t c, V v) noexcept {
    while (cur < r) finish_row(cur++);
    const float av = prune::detail::sparse_stored_float(v);
    if (av != 0.0f) p[j & 15] = std::fma(av, x[c], p[j & 15]);
    ++j;
  });
  while (cur < a.rows()) finish_row(cur++);
}

template <class Matrix>
bool spmv_lanes_checked(const Matrix& a, std::span<const float> x, std::span<float> y,
                        std::span<const float> bias) noexcept {
  if (static_cast<index_t>(x.size()) != a.cols() || static_cast<index_t>(y.size()) != a.rows() ||
      (!bias.empty() && static_cast<index_t>(bias.size()) != a.rows())) {
    return false;
  }
  spmv_lanes_run(a, x.data(), y.data(), bias.empty() ? nullptr : bias.data());
  return true;
}

template <class Matrix>
bool spmm_lanes_checked(tensor_view<const float, 2> x, const Matrix& a, tensor_view<float, 2> y,
                        std::span<const float> bias) noexcept {
  if (x.extent(1) != a.cols() || y.extent(0) != x.extent(0) || y.extent(1) != a.rows() ||
      (!bias.empty() && static_cast<index_t>(bias.size()) != a.rows())) {
    return false;
  }
  for (index_t i = 0; i < x.extent(0); ++i) {
    spmv_lanes_run(a, x.data_handle() + i * a.cols(), y.data_handle() + i * a.rows(),
                   bias.empty() ? nullptr : bias.data());
  }
  return true;
}

}  // namespace detail

/// y = A x (+ bias) in the lane order, the scalar twin of kernels::spmv.
/// Numerics: row r's stored entries in storage order (ascending column) carry
/// positions j = 0, 1, ... (stored zeros and N:M padding slots count); with
/// p[0..15] = +0,
///   for each entry with a = stored value != 0:  p[j % 16] = fma(a, x_c, p[j % 16])
///   sum = lanes tree of p (detail::lanes_tree)
///   fp32 / fp16: y_r = sum + b_r;   int8 (a = code q): y_r = fma(s_r, sum, b_r)
/// (b_r = +0 without a bias). It differs from spmv only in summation order
/// (both are within (k + 2) 2^-24 (sum|a_rc x_c| + |b_r|) of the exact value,
/// k the row's nonzeros). As in spmv, stored zeros
/// never touch x. Returns false, writing nothing, unless x.size() == cols(),
/// y.size() == rows() and bias is empty or of size rows(). No allocation.
template <prune::sparse_value V>
[[nodiscard]] bool spmv_lanes(const prune::csr_matrix<V>& a, std::span<const float> x,
                              std::span<float> y, std::span<const float> bias = {}) noexcept {
  return detail::spmv_lanes_checked(a, x, y, bias);
}

/// As the CSR overload (positions count the row's stored entries).
template <prune::sparse_value V>
[[nodiscard]] bool spmv_lanes(const prune::bitmask_matrix<V>& a, std::span<const float> x,
                              std::span<float> y, std::span<const float> bias = {}) noexcept {
  return detail::spmv_lanes_checked(a, x, y, bias);
}

/// As the CSR overload; positions are the row's slots (g * N + i), padding included.
template <prune::sparse_value V>
[[nodiscard]] bool spmv_lanes(const prune::packed_nm_matrix<V>& a, std::span<const float> x,
                              std::span<float> y, std::span<const float> bias = {}) noexcept {
  return detail::spmv_lanes_checked(a, x, y, bias);
}

/// Y = X A^T (+ bias) in the layer orientation, the scalar twin of kernels::spmm:
/// X is [M, cols()], Y is [M, rows()], both row-major; row i of Y is exactly
/// spmv_lanes(A, row i of X) (so results do not depend on the batch size).
/// Returns false, writing nothing, unless X.extent(1) == cols(), Y is
/// [X.extent(0), rows()] and bias is empty or of size rows(). No allocation.
template <prune::sparse_value V>
[[nodiscard]] bool spmm_lanes(tensor_view<const float, 2> x, const prune::csr_matrix<V>& a,
                              tensor_view<float, 2> y, std::span<const float> bias = {}) noexcept {
  return detail::spmm_lanes_checked(x, a, y, bias);
}

/// As the CSR overload.
template <prune::sparse_value V>
[[nodiscard]] bool spmm_lanes(tensor_view<const float, 2> x, const prune::bitmask_matrix<V>& a,
                              tensor_view<float, 2> y, std::span<const float> bias = {}) noexcept {
  return detail::spmm_lanes_checked(x, a, y, bias);
}

/// As the CSR overload.
template <prune::sparse_value V>
[[nodiscard]] bool spmm_lanes(tensor_view<const float, 2> x, const prune::packed_nm_matrix<V>& a,
                              tensor_view<float, 2> y, std::span<const float> bias = {}) noexcept {
  return detail::spmm_lanes_checked(x, a, y, bias);
}

}  // namespace qprune::kernels::reference

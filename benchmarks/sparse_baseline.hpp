// Eigen sparse fp32 baselines for benchmarks/sparse_bench.cpp, in their own
// translation unit compiled with -O3 -mavx2 -mfma (sparse_baseline.cpp), as the
// dense baselines in eigen_baseline.cpp are. The Eigen types stay inside that
// translation unit: callers see an opaque handle.
#pragma once

#include <cstdint>
#include <memory>

namespace qprune::bench {

/// Eigen::SparseMatrix<float, RowMajor> built from a dense row-major matrix
/// (its nonzero elements), with Eigen's own products.
class eigen_csr {
 public:
  /// Stores the nonzeros of w [rows, cols] (row-major).
  eigen_csr(std::int64_t rows, std::int64_t cols, const float* w);
  ~eigen_csr();
  eigen_csr(const eigen_csr&) = delete;
  eigen_csr& operator=(const eigen_csr&) = delete;

  /// y = A x (A * VectorXf).
  void spmv(const float* x, float* y) const;
  /// Y^T [rows, m] = A X^T, with X^T [cols, m] and Y^T [rows, m] row-major,
  /// the layout Eigen's row-major sparse * dense product runs fastest on.
  void spmm_rowmajor(std::int64_t m, const float* xt, float* yt) const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

}  // namespace qprune::bench

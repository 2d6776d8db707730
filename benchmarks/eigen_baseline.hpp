// The Eigen fp32 baselines the kernels are measured against. They live in
// their own translation unit (eigen_baseline.cpp), compiled with
// -O3 -mavx2 -mfma so Eigen runs its best vector code on this class of CPU;
// qprune's kernels are compiled without ISA flags and dispatch at run time.
#pragma once

#include <cstdint>

namespace qprune::bench {

/// y[M,N] = x[M,K] * w[N,K]^T with every matrix row-major (x and y as Eigen
/// RowMajor maps, w as a RowMajor map used transposed).
void eigen_gemm_row_major(std::int64_t m, std::int64_t n, std::int64_t k, const float* x,
                          const float* w, float* y);
/// The same product with column-major storage: y^T[N,M] = w^T... i.e. Y = X * W^T
/// computed on ColMajor maps of x [K,M] (x^T) and w [K,N] (w^T), the layout
/// Eigen's GEMM packs fastest for some shapes.
void eigen_gemm_col_major(std::int64_t m, std::int64_t n, std::int64_t k, const float* xt,
                          const float* wt, float* yt);

}  // namespace qprune::bench

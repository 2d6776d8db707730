#include "eigen_baseline.hpp"

#include <Eigen/Core>

namespace qprune::bench {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

void eigen_gemm_row_major(std::int64_t m, std::int64_t n, std::int64_t k, const float* x,
                          const float* w, float* y) {
  Eigen::Map<const RowMat> X(x, m, k);
  Eigen::Map<const RowMat> W(w, n, k);
  Eigen::Map<RowMat> Y(y, m, n);
  if (m == 1) {
    Y.row(0).noalias() = (W * X.row(0).transpose()).transpose();
  } else {
    Y.noalias() = X * W.transpose();
  }
}

void eigen_gemm_col_major(std::int64_t m, std::int64_t n, std::int64_t k, const float* xt,
                          const float* wt, float* yt) {
  // xt: K x M column-major holds x row-major; wt: K x N column-major holds w row-major.
  Eigen::Map<const ColMat> Xt(xt, k, m);
  Eigen::Map<const ColMat> Wt(wt, k, n);
  Eigen::Map<ColMat> Yt(yt, n, m);
  if (m == 1) {
    Yt.col(0).noalias() = Wt.transpose() * Xt.col(0);
  } else {
    Yt.noalias() = Wt.transpose() * Xt;
  }
}

}  // namespace qprune::bench

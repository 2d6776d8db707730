#include "sparse_baseline.hpp"

#include <Eigen/Core>
#include <Eigen/SparseCore>
#include <vector>

namespace qprune::bench {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct eigen_csr::impl {
  Eigen::SparseMatrix<float, Eigen::RowMajor> a;
};

eigen_csr::eigen_csr(std::int64_t rows, std::int64_t cols, const float* w) : p_(new impl) {
  std::vector<Eigen::Triplet<float>> t;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      if (w[r * cols + c] != 0.0f) t.emplace_back(static_cast<int>(r), static_cast<int>(c), w[r * cols + c]);
  p_->a.resize(rows, cols);
  p_->a.setFromTriplets(t.begin(), t.end());
  p_->a.makeCompressed();
}

eigen_csr::~eigen_csr() = default;

void eigen_csr::spmv(const float* x, float* y) const {
  Eigen::Map<const Eigen::VectorXf> X(x, p_->a.cols());
  Eigen::Map<Eigen::VectorXf> Y(y, p_->a.rows());
  Y.noalias() = p_->a * X;
}

void eigen_csr::spmm_rowmajor(std::int64_t m, const float* xt, float* yt) const {
  Eigen::Map<const RowMat> Xt(xt, p_->a.cols(), m);
  Eigen::Map<RowMat> Yt(yt, p_->a.rows(), m);
  Yt.noalias() = p_->a * Xt;
}

}  // namespace qprune::bench

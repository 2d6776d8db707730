#include "qprune/core/eigen.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "qprune/core/tensor.hpp"

namespace {

using qprune::layout_left;
using qprune::layout_right;
using qprune::layout_stride;
using qprune::tensor_view;

TEST(EigenInterop, RowMajorViewAsEigenIsZeroCopy) {
  std::vector<float> buf(6);
  std::iota(buf.begin(), buf.end(), 0.0f);
  tensor_view<float, 2> v(buf.data(), 2, 3);
  auto m = qprune::as_eigen(v);
  EXPECT_EQ(m.data(), buf.data());
  EXPECT_EQ(m.rows(), 2);
  EXPECT_EQ(m(1, 0), 3.0f);
  m(1, 1) = -1.0f;
  EXPECT_EQ(buf[4], -1.0f);
  // Read-only views give read-only maps.
  auto cm = qprune::as_eigen(tensor_view<const float, 2>(v));
  static_assert(std::is_const_v<std::remove_pointer_t<decltype(cm.data())>>);
  EXPECT_EQ(cm(0, 2), 2.0f);
}

TEST(EigenInterop, ColumnMajorAndStrided) {
  std::vector<float> buf(12);
  std::iota(buf.begin(), buf.end(), 0.0f);
  auto cm = qprune::as_eigen(tensor_view<float, 2, layout_left>(buf.data(), 3, 4));
  EXPECT_EQ(cm(2, 1), 5.0f);
  tensor_view<float, 2, layout_stride> sv(
      buf.data(),
      layout_stride::mapping<qprune::extents<2>>(qprune::extents<2>(3, 2), {4, 2}));
  auto sm = qprune::as_eigen(sv);
  EXPECT_EQ(sm(1, 1), 6.0f);
  EXPECT_EQ(sm(2, 0), 8.0f);
  // Eigen arithmetic over the strided map sees the same numbers.
  EXPECT_EQ(sm.sum(), 0 + 2 + 4 + 6 + 8 + 10);
}

TEST(EigenInterop, EigenMatricesToViews) {
  qprune::row_matrix<float> r(2, 3);
  r << 1, 2, 3, 4, 5, 6;
  auto rv = qprune::to_view(r);
  static_assert(std::is_same_v<decltype(rv), tensor_view<float, 2, layout_right>>);
  EXPECT_EQ(rv.data_handle(), r.data());
  EXPECT_EQ(rv(1, 2), 6.0f);

  Eigen::MatrixXf c(2, 3);
  c << 1, 2, 3, 4, 5, 6;
  auto cv = qprune::to_view(c);
  static_assert(std::is_same_v<decltype(cv), tensor_view<float, 2, layout_left>>);
  EXPECT_EQ(cv(1, 2), 6.0f);
  cv(0, 0) = 9.0f;
  EXPECT_EQ(c(0, 0), 9.0f);

  const Eigen::VectorXf vec = Eigen::VectorXf::LinSpaced(4, 0.0f, 3.0f);
  auto vv = qprune::to_view(vec);
  static_assert(std::is_same_v<decltype(vv), tensor_view<const float, 1, layout_right>>);
  EXPECT_EQ(vv(3), 3.0f);
  EXPECT_EQ(qprune::as_eigen(vv).sum(), 6.0f);
}

TEST(EigenInterop, RefsAndBlocksBecomeStridedViews) {
  Eigen::MatrixXf c(4, 5);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) c(i, j) = static_cast<float>(10 * i + j);
  auto block = c.block(1, 2, 2, 3);
  auto bv = qprune::to_strided_view(block);
  EXPECT_EQ(bv.extent(0), 2);
  EXPECT_EQ(bv(1, 2), 24.0f);
  bv(0, 0) = -5.0f;
  EXPECT_EQ(c(1, 2), -5.0f);

  const Eigen::Ref<const Eigen::MatrixXf> ref = c.topRows(2);
  auto rv = qprune::to_strided_view(ref);
  static_assert(std::is_same_v<decltype(rv), tensor_view<const float, 2, layout_stride>>);
  EXPECT_EQ(rv.data_handle(), c.data());
  EXPECT_EQ(rv(1, 4), 14.0f);
  // And back again: the round trip aliases the original memory.
  EXPECT_EQ(qprune::as_eigen(rv).data(), c.data());
  EXPECT_TRUE(qprune::as_eigen(rv).isApprox(c.topRows(2)));
}

TEST(EigenInterop, TensorAsEigen) {
  qprune::tensor<float, 2> t(3, 3);
  qprune::as_eigen(t.view()).setIdentity();
  EXPECT_EQ(t(1, 1), 1.0f);
  EXPECT_EQ(t(1, 2), 0.0f);
}

}  // namespace

#include "qprune/core/tensor.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using qprune::extents;
using qprune::tensor;

TEST(Tensor, ZeroInitialisedAlignedRowMajor) {
  tensor<float, 3> t(2, 3, 5);
  EXPECT_EQ(t.size(), 30);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data()) % qprune::default_alignment, 0u);
  for (float x : t.span()) EXPECT_EQ(x, 0.0f);
  t(1, 2, 4) = 7.0f;
  EXPECT_EQ(t.data()[1 * 15 + 2 * 5 + 4], 7.0f);
  EXPECT_EQ(t.view()(1, 2, 4), 7.0f);
  EXPECT_EQ(t.view().data_handle(), t.data());
}

TEST(Tensor, ValueSemantics) {
  tensor<int, 2> a(extents<2>(2, 2), {1, 2, 3, 4});
  tensor<int, 2> b = a;
  b(0, 0) = 9;
  EXPECT_EQ(a(0, 0), 1);
  EXPECT_FALSE(a == b);
  b(0, 0) = 1;
  EXPECT_TRUE(a == b);
}

TEST(Tensor, BadShapesThrow) {
  EXPECT_THROW((tensor<float, 2>(extents<2>(2, -1))), qprune::shape_error);
  EXPECT_THROW((tensor<int, 2>(extents<2>(2, 2), {1, 2, 3})), qprune::shape_error);
  tensor<int, 2> a(extents<2>(2, 3), {1, 2, 3, 4, 5, 6});
  EXPECT_THROW(a.reshaped(extents<1>(5)), qprune::shape_error);
  const auto r = a.reshaped(extents<3>(3, 1, 2));
  EXPECT_EQ(r(2, 0, 1), 6);
}

TEST(Tensor, ViewConvertsToConstView) {
  tensor<float, 1> t(4);
  qprune::tensor_view<const float, 1> v = t;
  EXPECT_EQ(v.size(), 4);
}

}  // namespace

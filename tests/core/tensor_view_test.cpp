#include "qprune/core/tensor_view.hpp"

#include <gtest/gtest.h>

#include <numeric>
#include <type_traits>
#include <vector>

namespace {

using qprune::extents;
using qprune::index_t;
using qprune::layout_left;
using qprune::layout_right;
using qprune::layout_stride;
using qprune::tensor_view;

static_assert(std::is_trivially_copyable_v<tensor_view<float, 2>>);
static_assert(std::is_convertible_v<tensor_view<float, 2>, tensor_view<const float, 2>>);
static_assert(!std::is_convertible_v<tensor_view<const float, 2>, tensor_view<float, 2>>);
static_assert(std::is_convertible_v<tensor_view<float, 2, layout_right>,
                                    tensor_view<const float, 2, layout_stride>>);
static_assert(!std::is_convertible_v<tensor_view<float, 2, layout_right>,
                                     tensor_view<float, 2, layout_left>>);

TEST(Extents, SizeAndRank) {
  constexpr extents<3> e(2, 3, 4);
  static_assert(e.rank() == 3 && e.size() == 24 && e.extent(1) == 3);
  EXPECT_EQ(extents<2>(0, 5).size(), 0);
}

TEST(LayoutRight, RowMajorOffsetsAndStrides) {
  const layout_right::mapping<extents<3>> m(extents<3>(2, 3, 4));
  EXPECT_EQ(m(0, 0, 0), 0);
  EXPECT_EQ(m(0, 0, 1), 1);
  EXPECT_EQ(m(0, 1, 0), 4);
  EXPECT_EQ(m(1, 2, 3), 23);
  EXPECT_EQ(m.stride(0), 12);
  EXPECT_EQ(m.stride(1), 4);
  EXPECT_EQ(m.stride(2), 1);
  EXPECT_EQ(m.required_span_size(), 24);
}

TEST(LayoutLeft, ColumnMajorOffsetsAndStrides) {
  const layout_left::mapping<extents<3>> m(extents<3>(2, 3, 4));
  EXPECT_EQ(m(1, 0, 0), 1);
  EXPECT_EQ(m(0, 1, 0), 2);
  EXPECT_EQ(m(0, 0, 1), 6);
  EXPECT_EQ(m(1, 2, 3), 1 + 2 * 2 + 3 * 6);
  EXPECT_EQ(m.stride(0), 1);
  EXPECT_EQ(m.stride(2), 6);
}

TEST(LayoutStride, MatchesDenseLayoutsAfterConversion) {
  const layout_right::mapping<extents<2>> r(extents<2>(3, 5));
  const layout_stride::mapping<extents<2>> s(r);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 5; ++j) EXPECT_EQ(s(i, j), r(i, j));
  EXPECT_TRUE(s.is_exhaustive());
  const layout_stride::mapping<extents<2>> gap(extents<2>(3, 5), {10, 1});
  EXPECT_FALSE(gap.is_exhaustive());
  EXPECT_EQ(gap.required_span_size(), 2 * 10 + 4 + 1);
  EXPECT_EQ(layout_stride::mapping<extents<2>>(extents<2>(0, 5), {10, 1}).required_span_size(), 0);
}

TEST(TensorView, ReadsAndWritesThroughToTheBuffer) {
  std::vector<float> buf(6);
  std::iota(buf.begin(), buf.end(), 0.0f);
  tensor_view<float, 2> v(buf.data(), 2, 3);
  EXPECT_EQ(v(1, 2), 5.0f);
  v(0, 1) = 42.0f;
  EXPECT_EQ(buf[1], 42.0f);
  tensor_view<const float, 2> cv = v;
  EXPECT_EQ(cv(0, 1), 42.0f);
  EXPECT_EQ(cv.size(), 6);
  EXPECT_EQ(cv.span().size(), 6u);
}

TEST(TensorView, ColumnMajorAndStridedViewsOfOneBuffer) {
  std::vector<int> buf(12);
  std::iota(buf.begin(), buf.end(), 0);
  const tensor_view<int, 2, layout_left> cm(buf.data(), 3, 4);
  EXPECT_EQ(cm(2, 1), 5);
  // Every other column of a 3x4 row-major matrix: extents 3x2, strides {4, 2}.
  const tensor_view<int, 2, layout_stride> sv(
      buf.data(), layout_stride::mapping<extents<2>>(extents<2>(3, 2), {4, 2}));
  EXPECT_EQ(sv(1, 1), 6);
  EXPECT_EQ(sv(2, 0), 8);
  EXPECT_FALSE(sv.is_exhaustive());
}

TEST(TensorView, CheckedConstructorsRejectTooSmallBuffers) {
  std::vector<float> buf(5);
  EXPECT_THROW((tensor_view<float, 2>(std::span<float>(buf), extents<2>(2, 3))),
               qprune::shape_error);
  EXPECT_THROW((tensor_view<float, 2>(std::span<float>(buf), extents<2>(-1, 3))),
               qprune::shape_error);
  EXPECT_THROW((tensor_view<float, 2, layout_stride>(
                   std::span<float>(buf), layout_stride::mapping<extents<2>>(extents<2>(2, 2), {-1, 1}))),
               qprune::shape_error);
  EXPECT_NO_THROW((tensor_view<float, 2>(std::span<float>(buf), extents<2>(1, 5))));
  try {
    tensor_view<float, 2>(std::span<float>(buf), extents<2>(2, 3));
  } catch (const qprune::shape_error& e) {
    EXPECT_STREQ(e.what(), "[qprune.shape] the view needs 6 elements but the buffer holds 5");
  }
}

TEST(TensorView, OverflowingExtentsAreRejected) {
  std::vector<float> buf(1);
  const index_t big = index_t{1} << 40;
  EXPECT_THROW((tensor_view<float, 2>(std::span<float>(buf), extents<2>(big, big))),
               qprune::shape_error);
}

TEST(TensorView, EmptyViews) {
  tensor_view<float, 2> v;
  EXPECT_TRUE(v.empty());
  std::vector<float> none;
  EXPECT_NO_THROW((tensor_view<float, 2>(std::span<float>(none), extents<2>(0, 7))));
}

}  // namespace

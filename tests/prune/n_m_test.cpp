// N:M semi-structured masks (invariants on random shapes, partial groups, ties, NaN,
// scores, tfmot's m_by_n and is_pruned_2x4 tables) and block masks (qprune exact-k,
// tfmot's factorized SAME pooling with its padding quirk and tfmot's own test cases).
#include "qprune/prune/n_m.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qprune/prune/block.hpp"
#include "support/random.hpp"

namespace {

using qprune::extents;
using qprune::index_t;
using qprune::layout_left;
using qprune::tensor;
using qprune::tensor_view;
namespace prune = qprune::prune;
namespace tfmot = qprune::prune::tfmot;
using bytes = std::vector<std::uint8_t>;

template <class E, class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an exception containing: " << fragment;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

bytes flat(const prune::mask& m) { return bytes(m.span().begin(), m.span().end()); }

tensor<float, 2> mat(index_t rows, index_t cols, std::vector<float> v) {
  return tensor<float, 2>(extents<2>(rows, cols), std::span<const float>(v));
}

tensor<float, 2> random_weights(index_t rows, index_t cols, std::uint64_t salt) {
  tensor<float, 2> w(rows, cols);
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : w.span()) x = nd(rng);
  return w;
}

// ---------------------------------------------------------------- N:M

TEST(NM, TwoFourByHand) {
  const auto w = mat(2, 8,
                     {0.1f, -0.9f, 0.5f, 0.3f, 2, -1, 0, 3,  //
                      4, 3, 2, 1, 1, 2, 3, 4});
  const auto m = prune::n_m_mask(w.cview(), 2, 4);
  EXPECT_EQ(flat(m), (bytes{0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1}));
  EXPECT_TRUE(prune::is_n_m_sparse(m, 2, 4));
  EXPECT_FALSE(prune::is_n_m_sparse(m, 1, 4));
  EXPECT_EQ(prune::n_m(2, 4).compute_mask(w.cview()), m);
  EXPECT_EQ(prune::n_m(2, 4).sparsity(), 0.5);
}

TEST(NM, InvariantsOnRandomShapes) {
  SCOPED_TRACE(qprune::test::seed_trace());
  struct pattern {
    index_t n, m;
  };
  std::uint64_t salt = 100;
  for (const auto p : {pattern{1, 2}, pattern{2, 4}, pattern{1, 4}, pattern{4, 8}, pattern{3, 7},
                       pattern{2, 8}, pattern{16, 64}}) {
    for (const index_t cols : {1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 64, 100}) {
      const auto w = random_weights(5, cols, ++salt);
      const auto m = prune::n_m_mask(w.cview(), p.n, p.m);
      auto masked = w;
      m.apply(masked.view());
      ASSERT_TRUE(prune::is_n_m_sparse(m, p.n, p.m));
      ASSERT_TRUE(prune::is_n_m_sparse(masked.cview(), p.n, p.m));
      for (index_t r = 0; r < 5; ++r) {
        for (index_t c0 = 0; c0 < cols; c0 += p.m) {
          const index_t c1 = std::min(cols, c0 + p.m);
          index_t kept = 0, nonzero = 0;
          float min_kept = std::numeric_limits<float>::infinity(), max_pruned = -1.0f;
          for (index_t c = c0; c < c1; ++c) {
            const float a = std::fabs(w(r, c));
            if (m(r, c) != 0) {
              ++kept;
              min_kept = std::min(min_kept, a);
            } else {
              max_pruned = std::max(max_pruned, a);
            }
            nonzero += masked(r, c) != 0.0f ? 1 : 0;
          }
          // Exactly min(n, group length) kept, and they are the largest of the group;
          // with nonzero random weights the group has exactly that many nonzeros.
          ASSERT_EQ(kept, std::min(p.n, c1 - c0)) << p.n << ":" << p.m << " cols " << cols;
          ASSERT_EQ(nonzero, kept);
          ASSERT_GE(min_kept, max_pruned);
        }
      }
    }
  }
}

TEST(NM, RowsShorterThanMAndPartialGroups) {
  // A group of L < M entries keeps min(N, L): at most N nonzeros in every group.
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 3, {1, 3, 2}).cview(), 2, 4)), (bytes{0, 1, 1}));
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 2, {1, 3}).cview(), 2, 4)), (bytes{1, 1}));
  EXPECT_EQ(flat(prune::n_m_mask(mat(2, 1, {1, 3}).cview(), 2, 4)), (bytes{1, 1}));
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 3, {1, 3, 2}).cview(), 1, 4)), (bytes{0, 1, 0}));
  // 6 columns with 2:4: one full group, then a group of 2 that keeps both.
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 6, {1, 2, 3, 4, 5, 6}).cview(), 2, 4)),
            (bytes{0, 0, 1, 1, 1, 1}));
  // 7 columns with 1:3: the partial group of 1 keeps it.
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 7, {3, 2, 1, 1, 2, 3, 5}).cview(), 1, 3)),
            (bytes{1, 0, 0, 0, 0, 1, 1}));
  const tensor<float, 2> empty(3, 0);
  EXPECT_EQ(prune::n_m_mask(empty.cview(), 2, 4).size(), 0);
}

TEST(NM, TieRuleLowerColumnIsKept) {
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 8, {1, 1, 1, 1, -1, -1, -1, -1}).cview(), 2, 4)),
            (bytes{1, 1, 0, 0, 1, 1, 0, 0}));
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 4, {3, 1, 1, 1}).cview(), 2, 4)), (bytes{1, 1, 0, 0}));
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 4, {1, 1, 1, 3}).cview(), 2, 4)), (bytes{1, 0, 0, 1}));
  // Zeros are ties too: a group with one nonzero keeps it and the first zero.
  const auto z = mat(1, 4, {0, 0, 0, 5});
  const auto mz = prune::n_m_mask(z.cview(), 2, 4);
  EXPECT_EQ(flat(mz), (bytes{1, 0, 0, 1}));
  auto zm = z;
  mz.apply(zm.view());
  EXPECT_TRUE(prune::is_n_m_sparse(zm.cview(), 1, 4));
}

TEST(NM, NaNRanksAboveNumbers) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(flat(prune::n_m_mask(mat(1, 4, {nan, 1, 2, 3}).cview(), 2, 4)), (bytes{1, 0, 0, 1}));
  EXPECT_FALSE(prune::is_n_m_sparse(mat(1, 4, {nan, nan, nan, 0}).cview(), 2, 4));
}

TEST(NM, ScoresInsteadOfMagnitudes) {
  const auto w = mat(1, 8, {1, 2, 3, 4, -8, 7, -6, 5});
  const auto s = mat(1, 8, {4, 3, 2, 1, 0.5f, 0.25f, 1, -2});  // e.g. Wanda |W|·‖X‖
  EXPECT_EQ(flat(prune::n_m_mask_from_scores(s.cview(), 2, 4)), (bytes{1, 1, 0, 0, 1, 0, 1, 0}));
  EXPECT_EQ(flat(prune::n_m_mask(w.cview(), 2, 4)), (bytes{0, 0, 1, 1, 1, 1, 0, 0}));
}

TEST(NM, LayoutAndConvViews) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(6, 12, 7);
  tensor<float, 2> wt(12, 6);
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 12; ++j) wt(j, i) = w(i, j);
  const tensor_view<const float, 2, layout_left> cm(wt.data(), 6, 12);
  EXPECT_EQ(prune::n_m_mask(cm, 2, 4), prune::n_m_mask(w.cview(), 2, 4));
  // OHWI conv filters [2, 3, 3, 4]: the [out, kh*kw*in] view and tfmot's [out*kh*kw, in]
  // view of the same buffer give the same groups when in % M == 0.
  const auto f = random_weights(2, 36, 8);
  const tensor_view<const float, 2> as_out_rows(f.data(), 2, 36);
  const tensor_view<const float, 2> as_tfmot(f.data(), 18, 4);
  EXPECT_EQ(flat(prune::n_m_mask(as_out_rows, 2, 4)), flat(tfmot::m_by_n_mask(as_tfmot, 2, 4)));
}

TEST(NM, IsPruned2x4MatchesTfmotTable) {
  // pruning_utils_test.IsPruned2x4Test.
  EXPECT_FALSE(tfmot::is_pruned_m_by_n(mat(1, 4, {1, 2, 3, 4}).cview()));
  EXPECT_FALSE(tfmot::is_pruned_m_by_n(mat(2, 4, {1, 2, 0, 4, 0, 0, 1, 2}).cview()));
  EXPECT_FALSE(tfmot::is_pruned_m_by_n(mat(1, 6, {1, 2, 3, 4, 5, 6}).cview()));
  EXPECT_TRUE(tfmot::is_pruned_m_by_n(mat(1, 4, {1, 2, 0, 0}).cview()));
  EXPECT_TRUE(tfmot::is_pruned_m_by_n(mat(3, 4, {1, 2, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0}).cview()));
  EXPECT_TRUE(tfmot::is_pruned_m_by_n(mat(1, 4, {0, 0, 0, 0}).cview()));
  EXPECT_TRUE(tfmot::is_pruned_m_by_n(tensor<float, 2>(0, 0).cview()));
}

TEST(NM, TfmotMByNCountsZeros) {
  // (m, n) = m zeros in every n: (2, 4) is 2:4, (3, 4) is 1:4, (1, 2) is 1:2.
  EXPECT_EQ(flat(tfmot::m_by_n_mask(mat(1, 4, {1, 2, 3, 4}).cview(), 2, 4)), (bytes{0, 0, 1, 1}));
  EXPECT_EQ(flat(tfmot::m_by_n_mask(mat(1, 6, {1, 2, 3, 4, 5, 6}).cview(), 2, 4)),
            (bytes{0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(flat(tfmot::m_by_n_mask(mat(2, 2, {1, 2, 3, 4}).cview(), 1, 2)), (bytes{0, 1, 0, 1}));
  EXPECT_EQ(flat(tfmot::m_by_n_mask(mat(1, 4, {1, 2, 3, 4}).cview(), 3, 4)), (bytes{0, 0, 0, 1}));
  EXPECT_EQ(flat(tfmot::m_by_n_mask(mat(1, 4, {1, 2, 3, 4}).cview(), 0, 4)), (bytes{1, 1, 1, 1}));
  EXPECT_EQ(tfmot::m_by_n().compute_mask(mat(1, 4, {4, 3, 2, 1}).cview()),
            prune::n_m_mask(mat(1, 4, {4, 3, 2, 1}).cview(), 2, 4));
}

TEST(NM, InvalidPatternsThrow) {
  const auto w = mat(1, 4, {1, 2, 3, 4});
  for (const auto& [n, m] :
       {std::pair<index_t, index_t>{0, 4}, {4, 4}, {5, 4}, {1, 1}, {1, 65}, {-1, 4}}) {
    EXPECT_THROW((void)prune::n_m_mask(w.cview(), n, m), qprune::config_error) << n << ":" << m;
    EXPECT_THROW((void)prune::is_n_m_sparse(w.cview(), n, m), qprune::config_error);
  }
  expect_error<qprune::config_error>(
      [] { (void)prune::n_m(4, 4); },
      "[qprune.config] N:M pattern 4:4 is invalid (expected 0 < N < M <= 64");
  expect_error<qprune::config_error>([&] { (void)tfmot::m_by_n_mask(w.cview(), 4, 4); },
                                     "m_by_n (4, 4) is invalid (expected 0 <= m < n <= 64");
  EXPECT_NO_THROW((void)prune::n_m_mask(w.cview(), 63, 64));
}

// ---------------------------------------------------------------- block sparsity

TEST(Block, ExactKOverBlocks) {
  // tfmot's 4x4 example with 2x2 blocks: block means 0.1, 0.2 / 0.3, 0.4.
  const auto w = mat(4, 4,
                     {0.1f, 0.1f, 0.2f, 0.2f, 0.1f, 0.1f, 0.2f, 0.2f,  //
                      0.3f, 0.3f, 0.4f, 0.4f, 0.3f, 0.3f, 0.4f, 0.4f});
  const bytes bottom_half{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(flat(prune::block_mask(w.cview(), 0.5f, {2, 2})), bottom_half);
  EXPECT_EQ(flat(prune::block_mask(w.cview(), 0.25f, {2, 2}, prune::block_pooling::max)),
            (bytes{0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
  // All-equal weights: the later blocks (row-major block order) are pruned first.
  const tensor<float, 2> eq(extents<2>(4, 8), 1.0f);
  const auto m = prune::block_mask(eq.cview(), 0.5f, {1, 4});
  for (index_t r = 0; r < 4; ++r)
    for (index_t c = 0; c < 8; ++c) EXPECT_EQ(m(r, c), r < 2 ? 1 : 0) << r << "," << c;
  EXPECT_EQ(flat(prune::block_mask(eq.cview(), 0.375f, {4, 1})),
            flat(prune::block_mask(eq.cview(), 0.375f, {4, 1}, prune::block_pooling::max)));
  EXPECT_EQ(prune::block_mask(eq.cview(), 0.375f, {4, 1}).count_pruned(), 12);  // 3 of 8 columns
}

TEST(Block, PartialEdgeBlocksAndPooling) {
  // 5x5 with 2x2 blocks: 3x3 blocks, the last row/column of blocks partial. Each weight
  // is 1 + its block index, so block b scores 1 + b under AVG and MAX alike.
  tensor<float, 2> w(5, 5);
  for (index_t r = 0; r < 5; ++r)
    for (index_t c = 0; c < 5; ++c) w(r, c) = static_cast<float>(1 + (r / 2) * 3 + c / 2);
  const auto m = prune::block_mask(w.cview(), 1.0f / 3.0f, {2, 2});  // round(3.0) = 3 blocks
  for (index_t r = 0; r < 5; ++r)
    for (index_t c = 0; c < 5; ++c) EXPECT_EQ(m(r, c), (r / 2) * 3 + c / 2 >= 3 ? 1 : 0);
  EXPECT_EQ(m.count_pruned(), 10);  // blocks 0, 1 (2x2 each) and 2 (2x1): rows 0-1
  // AVG and MAX disagree: [0, 10 | 6, 6] scores 5 | 6 under AVG, 10 | 6 under MAX.
  const auto v = mat(1, 4, {0, 10, 6, 6});
  EXPECT_EQ(flat(prune::block_mask(v.cview(), 0.5f, {1, 2})), (bytes{0, 0, 1, 1}));
  EXPECT_EQ(flat(prune::block_mask(v.cview(), 0.5f, {1, 2}, prune::block_pooling::max)),
            (bytes{1, 1, 0, 0}));
  // Sparsity 0 and 1.
  EXPECT_EQ(prune::block_mask(w.cview(), 0.0f, {2, 2}).count_pruned(), 0);
  EXPECT_EQ(prune::block_mask(w.cview(), 1.0f, {2, 2}).count_kept(), 0);
  // Block 1x1 is unstructured magnitude pruning.
  const auto r = random_weights(7, 9, 9);
  EXPECT_EQ(prune::block_mask(r.cview(), 0.6f, {1, 1}), prune::magnitude_mask(r.cview(), 0.6f));
}

TEST(Block, InvalidArgumentsThrow) {
  const auto w = mat(2, 2, {1, 2, 3, 4});
  expect_error<qprune::config_error>(
      [&] {
        (void)prune::block_mask(w.cview(), 0.5f, {0, 4});
      },
      "block shape 0x4 is invalid (expected height >= 1 and width >= 1)");
  EXPECT_THROW((void)prune::block_mask(w.cview(), 1.5f, {1, 2}), qprune::config_error);
  EXPECT_THROW((void)tfmot::block_mask(w.cview(), 0.5f, {2, -1}), qprune::config_error);
  EXPECT_THROW(prune::block_magnitude(0.5f, {1, 2}).set_sparsity(-0.5f), qprune::config_error);
}

TEST(TfmotBlock, TfmotBlockMaskingTests) {
  // pruning_impl_test.testBlockMaskingAvg / testBlockMaskingMax (sparsity 0.5, 2x2).
  const bytes expected{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  const auto avg = mat(4, 4,
                       {0.1f, 0.1f, 0.2f, 0.2f, 0.1f, 0.1f, 0.2f, 0.2f,  //
                        0.3f, 0.3f, 0.4f, 0.4f, 0.3f, 0.3f, 0.4f, 0.4f});
  EXPECT_EQ(flat(tfmot::block_mask(avg.cview(), 0.5f, {2, 2}, prune::block_pooling::avg)),
            expected);
  const auto mx = mat(4, 4,
                      {0.1f, 0.0f, 0.2f, 0.0f, 0.0f, -0.1f, 0.0f, -0.2f,  //
                       0.3f, 0.0f, 0.4f, 0.0f, 0.0f, -0.3f, 0.0f, -0.4f});
  EXPECT_EQ(flat(tfmot::block_mask(mx.cview(), 0.5f, {2, 2}, prune::block_pooling::max)), expected);
  EXPECT_EQ(
      tfmot::block_magnitude(0.5f, {2, 2}, prune::block_pooling::max).compute_mask(mx.cview()),
      tfmot::block_mask(mx.cview(), 0.5f, {2, 2}, prune::block_pooling::max));
}

TEST(TfmotBlock, FactorizedPoolWithSamePadding) {
  // 3x5 weights 0..14, block (2, 4). Rows: 2 windows, padding 1 -> 0 before: {0,1}, {2}.
  // Columns: 2 windows, padding 3 -> 1 before: {0,1,2}, {3,4}. Values are exact in float32.
  tensor<float, 2> w(3, 5);
  for (index_t i = 0; i < 15; ++i) w.data()[i] = static_cast<float>(i);
  const auto avg = tfmot::factorized_pool(w.cview(), {2, 4}, prune::block_pooling::avg);
  ASSERT_EQ(avg.extent(0), 2);
  ASSERT_EQ(avg.extent(1), 2);
  // Row means c + 2.5 and 10 + c, then column means over {0,1,2} and {3,4}.
  EXPECT_EQ(avg(0, 0), 3.5f);
  EXPECT_EQ(avg(0, 1), 6.0f);
  EXPECT_EQ(avg(1, 0), 11.0f);
  EXPECT_EQ(avg(1, 1), 13.5f);
  const auto mx = tfmot::factorized_pool(w.cview(), {2, 4}, prune::block_pooling::max);
  EXPECT_EQ(mx(0, 0), 7.0f);
  EXPECT_EQ(mx(0, 1), 9.0f);
  EXPECT_EQ(mx(1, 0), 12.0f);
  EXPECT_EQ(mx(1, 1), 14.0f);
}

TEST(TfmotBlock, PaddingShiftQuirkIsReproduced) {
  // 1x5 with block (1, 4): tfmot pools columns {0,1,2} and {3,4} (SAME padding, 1 before)
  // but expands the pooled mask over columns {0..3} and {4}. The 9 sits in the kept window
  // and is pruned anyway; qprune's aligned blocks keep it.
  const auto w = mat(1, 5, {1, 1, 1, 9, 1});
  const auto pooled = tfmot::factorized_pool(w.cview(), {1, 4}, prune::block_pooling::avg);
  EXPECT_EQ(pooled(0, 0), 1.0f);
  EXPECT_EQ(pooled(0, 1), 5.0f);
  EXPECT_EQ(flat(tfmot::block_mask(w.cview(), 0.5f, {1, 4})), (bytes{0, 0, 0, 0, 1}));
  EXPECT_EQ(flat(prune::block_mask(w.cview(), 0.5f, {1, 4})), (bytes{1, 1, 1, 1, 0}));
  // The same along axis 0 with block (4, 1).
  const auto t = mat(5, 1, {1, 1, 1, 9, 1});
  EXPECT_EQ(flat(tfmot::block_mask(t.cview(), 0.5f, {4, 1})), (bytes{0, 0, 0, 0, 1}));
}

TEST(TfmotBlock, OneByOneIsTheElementwiseMask) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(9, 11, 10);
  for (const float s : {0.0f, 0.3f, 0.5f, 0.9f}) {
    EXPECT_EQ(tfmot::block_mask(w.cview(), s, {1, 1}), tfmot::magnitude_mask(w.cview(), s));
    EXPECT_EQ(tfmot::block_mask(w.cview(), s, {1, 1}, prune::block_pooling::max),
              tfmot::magnitude_mask(w.cview(), s));
  }
  // Ties of pooled values with the threshold keep whole blocks.
  const tensor<float, 2> eq(extents<2>(4, 4), 2.0f);
  EXPECT_EQ(tfmot::block_mask(eq.cview(), 0.75f, {2, 2}).count_kept(), 16);
}

}  // namespace

// Tests for prune/wanda.hpp: the calibration statistic (running mean of x_j², streaming
// equal to one big batch), scores and masks against a hand example and an independent
// Eigen computation (column norms over all rows, per-row stable ranking), the
// identical-norms case (= per-row magnitude), N:M groups including short ones, edge
// sparsities and bad input; the `wanda` / `wanda_n_m` policies; and the shared ranking
// kernels on double scores (prune_lowest, score_mask, n_m_mask_from_scores), which
// Wanda's double scores go through without a rounding to float.
#include "qprune/prune/wanda.hpp"

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "qprune/core/eigen.hpp"
#include "qprune/core/tensor.hpp"
#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor;
namespace prune = qprune::prune;
using prune::wanda_calibrator;

using mask_t = prune::mask;

mask_t make_mask(index_t rows, index_t cols, std::vector<std::uint8_t> v) {
  return mask_t::from_values(qprune::extents<2>(rows, cols), std::span<const std::uint8_t>(v));
}

tensor<float, 2> random_matrix(std::mt19937_64& rng, index_t rows, index_t cols, float lo = -1.0f, float hi = 1.0f) {
  tensor<float, 2> t(rows, cols);
  std::uniform_real_distribution<float> u(lo, hi);
  for (float& v : t.span()) v = u(rng);
  return t;
}

/// Independent reference: column RMS from all rows at once (Eigen, double), scores
/// |W|·rms, and per row (or per group) a stable sort by descending score: the first
/// entries are kept, so among equal scores the lower column is kept.
struct eigen_reference {
  Eigen::ArrayXd rms;  // sqrt(mean over rows of x_j^2)

  explicit eigen_reference(const std::vector<tensor<float, 2>>& batches) {
    const index_t in = batches.front().extent(1);
    Eigen::ArrayXd sum = Eigen::ArrayXd::Zero(in);
    index_t rows = 0;
    for (const auto& b : batches) {
      const auto x = qprune::as_eigen(b.cview()).cast<double>();
      sum += x.array().square().colwise().sum().transpose();
      rows += b.extent(0);
    }
    rms = (sum / static_cast<double>(rows)).sqrt();
  }

  Eigen::ArrayXXd scores(const tensor<float, 2>& w) const {
    const auto wm = qprune::as_eigen(w.cview()).cast<double>();
    return wm.array().abs().rowwise() * rms.transpose();
  }

  /// Keeps `keep` of the columns [c0, c0 + len) of row r.
  static void keep_top(const Eigen::ArrayXXd& s, index_t r, index_t c0, index_t len, index_t keep, mask_t& m) {
    std::vector<index_t> idx(static_cast<std::size_t>(len));
    std::iota(idx.begin(), idx.end(), c0);
    std::stable_sort(idx.begin(), idx.end(), [&](index_t a, index_t b) { return s(r, a) > s(r, b); });
    for (index_t t = 0; t < len; ++t) m(r, idx[static_cast<std::size_t>(t)]) = t < keep ? 1 : 0;
  }

  mask_t unstructured(const tensor<float, 2>& w, index_t prune_per_row) const {
    const auto s = scores(w);
    mask_t m(w.extent(0), w.extent(1));
    for (index_t r = 0; r < w.extent(0); ++r) keep_top(s, r, 0, w.extent(1), w.extent(1) - prune_per_row, m);
    return m;
  }

  mask_t n_m(const tensor<float, 2>& w, index_t n, index_t m_group) const {
    const auto s = scores(w);
    mask_t m(w.extent(0), w.extent(1));
    for (index_t r = 0; r < w.extent(0); ++r)
      for (index_t c0 = 0; c0 < w.extent(1); c0 += m_group) {
        const index_t len = std::min(m_group, w.extent(1) - c0);
        keep_top(s, r, c0, len, std::min(n, len), m);
      }
    return m;
  }
};

index_t count_kept_in_row(const mask_t& m, index_t r) {
  index_t k = 0;
  for (index_t c = 0; c < m.extent(1); ++c) k += m(r, c);
  return k;
}

// ---------------------------------------------------------------------------

TEST(WandaCalibrator, RunningMeanOfSquares) {
  wanda_calibrator cal(4);
  EXPECT_EQ(cal.samples(), 0);
  // x rows (1,2,0,1) and (1,0,2,3): sums of squares 2, 4, 4, 10 over 2 rows.
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(2, 4), {1, 2, 0, 1, 1, 0, 2, 3}));
  EXPECT_EQ(cal.samples(), 2);
  EXPECT_EQ(std::vector<double>(cal.scaler().begin(), cal.scaler().end()), (std::vector<double>{1, 2, 2, 5}));
  // One more row (3,0,0,0): n = 3, scaler = (1·2 + 9)/3, 4/3, 4/3, 10/3.
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 4), {3, 0, 0, 0}));
  EXPECT_EQ(cal.samples(), 3);
  EXPECT_DOUBLE_EQ(cal.scaler()[0], 11.0 / 3.0);
  EXPECT_DOUBLE_EQ(cal.scaler()[1], 4.0 / 3.0);
  EXPECT_DOUBLE_EQ(cal.scaler()[3], 10.0 / 3.0);
  EXPECT_DOUBLE_EQ(cal.column_rms()[3], std::sqrt(10.0 / 3.0));
  // A batch of zero rows changes nothing.
  cal.add_batch(tensor<float, 2>(0, 4));
  EXPECT_EQ(cal.samples(), 3);
  EXPECT_DOUBLE_EQ(cal.scaler()[0], 11.0 / 3.0);
  cal.reset();
  EXPECT_EQ(cal.samples(), 0);
  EXPECT_EQ(cal.scaler()[0], 0.0);
}

TEST(WandaCalibrator, StreamingEqualsOneBigBatch) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(21);
  const index_t in = 13;
  const std::vector<index_t> sizes{1, 5, 8, 3, 16, 7};
  std::vector<tensor<float, 2>> batches;
  for (index_t b : sizes) batches.push_back(random_matrix(rng, b, in, -3.0f, 3.0f));
  const index_t total = std::accumulate(sizes.begin(), sizes.end(), index_t{0});
  tensor<float, 2> all(total, in);
  index_t row = 0;
  for (const auto& b : batches)
    for (index_t r = 0; r < b.extent(0); ++r, ++row)
      for (index_t j = 0; j < in; ++j) all(row, j) = b(r, j);

  wanda_calibrator stream(in), one(in);
  for (const auto& b : batches) stream.add_batch(b);
  one.add_batch(all);
  EXPECT_EQ(stream.samples(), total);
  EXPECT_EQ(one.samples(), total);
  for (index_t j = 0; j < in; ++j) {
    const auto i = static_cast<std::size_t>(j);
    EXPECT_NEAR(stream.scaler()[i], one.scaler()[i], 1e-12 * one.scaler()[i]) << "column " << j;
  }
  const auto w = random_matrix(rng, 9, in);
  EXPECT_EQ(prune::wanda_mask(w, stream, 0.5), prune::wanda_mask(w, one, 0.5));
  EXPECT_EQ(prune::wanda_n_m_mask(w, stream, 2, 4), prune::wanda_n_m_mask(w, one, 2, 4));
}

TEST(WandaCalibrator, AcceptsAnyLayout) {
  // The same data column-major and strided: identical statistics.
  const tensor<float, 2> x(qprune::extents<2>(2, 3), {1, 2, 3, 4, 5, 6});
  const std::vector<float> col_major{1, 4, 2, 5, 3, 6};
  wanda_calibrator a(3), b(3);
  a.add_batch(x);
  b.add_batch(qprune::tensor_view<const float, 2, qprune::layout_left>(col_major.data(), 2, 3));
  EXPECT_EQ(std::vector<double>(a.scaler().begin(), a.scaler().end()),
            std::vector<double>(b.scaler().begin(), b.scaler().end()));
}

TEST(Wanda, HandExampleDiffersFromMagnitude) {
  wanda_calibrator cal(4);
  // scaler (1, 2, 2, 5): rms 1, sqrt2, sqrt2, sqrt5.
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(2, 4), {1, 2, 0, 1, 1, 0, 2, 3}));
  // Row 0: |w| 5, 3, 3, 1 -> scores 5, 3 sqrt2, 3 sqrt2, sqrt5: prune sqrt5 (col 3) and,
  //   of the exact tie 3 sqrt2 (cols 1, 2), the higher column.
  // Row 1: |w| 2, 1.5, 1, 0.9 -> scores 2, 2.121, 1.414, 2.012: prune cols 2 and 0
  //   (magnitude alone would prune cols 3 and 2).
  const tensor<float, 2> w(qprune::extents<2>(2, 4), {5, -3, 3, 1, 2, 1.5f, -1, 0.9f});
  const auto s = prune::wanda_scores(w, cal);
  EXPECT_EQ(s(0, 1), s(0, 2));
  EXPECT_DOUBLE_EQ(s(1, 1), 1.5 * std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(s(1, 3), static_cast<double>(0.9f) * std::sqrt(5.0));
  EXPECT_EQ(prune::wanda_mask(w, cal, 0.5), make_mask(2, 4, {1, 1, 0, 0, 0, 1, 0, 1}));
  // 2:4 on rows of one group: the same.
  EXPECT_EQ(prune::wanda_n_m_mask(w, cal, 2, 4), make_mask(2, 4, {1, 1, 0, 0, 0, 1, 0, 1}));
  // 1:4 keeps the single best: col 0 (score 5) and col 1 (2.121).
  EXPECT_EQ(prune::wanda_n_m_mask(w, cal, 1, 4), make_mask(2, 4, {1, 0, 0, 0, 0, 1, 0, 0}));
  // 3:4 prunes one: col 3 and col 2.
  EXPECT_EQ(prune::wanda_n_m_mask(w, cal, 3, 4), make_mask(2, 4, {1, 1, 1, 0, 1, 1, 0, 1}));
}

TEST(Wanda, MatchesIndependentEigenComputation) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(22);
  for (int rep = 0; rep < 6; ++rep) {
    SCOPED_TRACE("repeat " + std::to_string(rep));
    const index_t out = 5 + 3 * rep, in = 8 + 5 * rep;
    std::vector<tensor<float, 2>> batches;
    for (int b = 0; b < 3; ++b) {
      auto x = random_matrix(rng, 4 + b, in);
      // Columns of very different scales, so activations matter.
      for (index_t r = 0; r < x.extent(0); ++r)
        for (index_t j = 0; j < in; ++j) x(r, j) *= static_cast<float>(1 + (j * 7) % 5);
      batches.push_back(std::move(x));
    }
    wanda_calibrator cal(in);
    for (const auto& b : batches) cal.add_batch(b);
    const eigen_reference ref(batches);
    const auto w = random_matrix(rng, out, in);

    const auto s = prune::wanda_scores(w, cal);
    const auto rs = ref.scores(w);
    for (index_t i = 0; i < out; ++i)
      for (index_t j = 0; j < in; ++j) EXPECT_NEAR(s(i, j), rs(i, j), 1e-12 * rs(i, j));

    for (double sp : {0.0, 0.3, 0.5, 0.7, 1.0}) {
      const double x = std::nearbyint(sp * static_cast<double>(in));
      const auto k = static_cast<index_t>(x);
      const auto m = prune::wanda_mask(w, cal, sp);
      EXPECT_EQ(m, ref.unstructured(w, k)) << "sparsity " << sp;
      for (index_t r = 0; r < out; ++r) EXPECT_EQ(count_kept_in_row(m, r), in - k);
    }
    for (auto [n, m] : {std::pair<index_t, index_t>{2, 4}, {1, 4}, {4, 8}, {3, 5}}) {
      const auto mk = prune::wanda_n_m_mask(w, cal, n, m);
      EXPECT_EQ(mk, ref.n_m(w, n, m)) << n << ":" << m;
      // Every full group keeps exactly n.
      for (index_t r = 0; r < out; ++r)
        for (index_t c0 = 0; c0 + m <= in; c0 += m) {
          index_t kept = 0;
          for (index_t c = c0; c < c0 + m; ++c) kept += mk(r, c);
          EXPECT_EQ(kept, n);
        }
    }
  }
}

TEST(Wanda, IdenticalColumnNormsEqualPerRowMagnitude) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(23);
  const index_t out = 7, in = 12;
  // x_rj = ±v_r: every column has the same squares in the same order.
  tensor<float, 2> x(6, in);
  std::bernoulli_distribution sign(0.5);
  for (index_t r = 0; r < 6; ++r) {
    const float v = 0.3f + 0.4f * static_cast<float>(r);
    for (index_t j = 0; j < in; ++j) x(r, j) = sign(rng) ? v : -v;
  }
  wanda_calibrator cal(in);
  cal.add_batch(x);
  for (index_t j = 1; j < in; ++j) ASSERT_EQ(cal.scaler()[static_cast<std::size_t>(j)], cal.scaler()[0]);
  const auto w = random_matrix(rng, out, in);
  // Per-row magnitude, computed here: prune the k smallest |w| of each row.
  for (double sp : {0.25, 0.5, 0.75}) {
    const auto k = static_cast<index_t>(std::nearbyint(sp * static_cast<double>(in)));
    mask_t mag(out, in);
    for (index_t r = 0; r < out; ++r) {
      std::vector<index_t> idx(static_cast<std::size_t>(in));
      std::iota(idx.begin(), idx.end(), index_t{0});
      std::stable_sort(idx.begin(), idx.end(),
                       [&](index_t a, index_t b) { return std::fabs(w(r, a)) > std::fabs(w(r, b)); });
      for (index_t t = 0; t < in; ++t) mag(r, idx[static_cast<std::size_t>(t)]) = t < in - k ? 1 : 0;
    }
    EXPECT_EQ(prune::wanda_mask(w, cal, sp), mag) << "sparsity " << sp;
  }
}

TEST(Wanda, CountIsRoundedHalfToEvenPerRow) {
  wanda_calibrator cal10(10), cal6(6);
  cal10.add_batch(tensor<float, 2>(qprune::extents<2>(1, 10), {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
  cal6.add_batch(tensor<float, 2>(qprune::extents<2>(1, 6), {1, 1, 1, 1, 1, 1}));
  const tensor<float, 2> w10(qprune::extents<2>(1, 10), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  const tensor<float, 2> w6(qprune::extents<2>(1, 6), {6, 5, 4, 3, 2, 1});
  // 0.25·10 = 2.5 -> 2; 0.25·6 = 1.5 -> 2; 0.35·10 = 3.5 -> 4.
  EXPECT_EQ(prune::wanda_mask(w10, cal10, 0.25), make_mask(1, 10, {0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(prune::wanda_mask(w6, cal6, 0.25), make_mask(1, 6, {1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(prune::wanda_mask(w10, cal10, 0.35), make_mask(1, 10, {0, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
}

TEST(Wanda, EdgeSparsitiesAndTies) {
  wanda_calibrator cal(5);
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 5), {1, 1, 1, 1, 1}));
  const tensor<float, 2> w(qprune::extents<2>(2, 5), {1, 1, 1, 1, 1, 3, -3, 3, -3, 3});
  EXPECT_EQ(prune::wanda_mask(w, cal, 0.0), mask_t(qprune::extents<2>(2, 5)));
  EXPECT_EQ(prune::wanda_mask(w, cal, 1.0), mask_t(qprune::extents<2>(2, 5), false));
  // All-equal scores: the higher columns are pruned first.
  EXPECT_EQ(prune::wanda_mask(w, cal, 0.4), make_mask(2, 5, {1, 1, 1, 0, 0, 1, 1, 1, 0, 0}));
  // NaN scores rank above every number.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const tensor<float, 2> wn(qprune::extents<2>(1, 5), {nan, 0.5f, 2, nan, 1});
  EXPECT_EQ(prune::wanda_mask(wn, cal, 0.6), make_mask(1, 5, {1, 0, 0, 1, 0}));
  EXPECT_EQ(prune::wanda_mask(wn, cal, 0.8), make_mask(1, 5, {1, 0, 0, 0, 0}));
}

TEST(Wanda, ShortRowsAndPartialGroups) {
  wanda_calibrator cal(7);
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 7), {1, 1, 1, 1, 1, 1, 1}));
  // 2:4 on 7 columns: group [0,4) keeps 2, the partial group [4,7) keeps 2 of 3.
  const tensor<float, 2> w(qprune::extents<2>(1, 7), {1, 4, 2, 3, 9, 7, 8});
  EXPECT_EQ(prune::wanda_n_m_mask(w, cal, 2, 4), make_mask(1, 7, {0, 1, 0, 1, 1, 0, 1}));
  // A row shorter than M with at most N entries keeps everything.
  wanda_calibrator cal2(2);
  cal2.add_batch(tensor<float, 2>(qprune::extents<2>(1, 2), {1, 1}));
  const tensor<float, 2> w2(qprune::extents<2>(2, 2), {1, 2, 3, 4});
  EXPECT_EQ(prune::wanda_n_m_mask(w2, cal2, 2, 4), mask_t(qprune::extents<2>(2, 2)));
  EXPECT_EQ(prune::wanda_n_m_mask(w2, cal2, 1, 4), make_mask(2, 2, {0, 1, 0, 1}));
}

TEST(Wanda, BadInputThrows) {
  wanda_calibrator cal(3);
  const tensor<float, 2> w(2, 3);
  EXPECT_THROW((void)prune::wanda_mask(w, cal, 0.5), config_error);  // no calibration data
  EXPECT_THROW(cal.add_batch(tensor<float, 2>(1, 4)), shape_error);
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 3), {1, 2, 3}));
  EXPECT_THROW((void)prune::wanda_mask(tensor<float, 2>(2, 4), cal, 0.5), shape_error);
  EXPECT_THROW((void)prune::wanda_scores(tensor<float, 2>(2, 4), cal), shape_error);
  EXPECT_THROW((void)prune::wanda_mask(w, cal, -0.1), config_error);
  EXPECT_THROW((void)prune::wanda_mask(w, cal, 1.1), config_error);
  EXPECT_THROW((void)prune::wanda_mask(w, cal, std::numeric_limits<double>::quiet_NaN()), config_error);
  EXPECT_THROW((void)prune::wanda_n_m_mask(w, cal, 4, 4), config_error);
  EXPECT_THROW((void)prune::wanda_n_m_mask(w, cal, 0, 4), config_error);
  EXPECT_THROW((void)prune::wanda_n_m_mask(w, cal, 2, 65), config_error);
  EXPECT_THROW((void)prune::wanda_n_m_mask(w, cal, 1, 1), config_error);
  EXPECT_THROW(wanda_calibrator(-1), config_error);
  // The N:M bound is the shared one (max_n_m_group).
  EXPECT_NO_THROW((void)prune::wanda_n_m_mask(w, cal, 1, prune::max_n_m_group));
  EXPECT_THROW((void)prune::wanda_n_m_mask(w, cal, 1, prune::max_n_m_group + 1), config_error);
}

TEST(Wanda, ReturnsTheCommonMaskType) {
  static_assert(std::is_same_v<decltype(prune::wanda_mask(std::declval<const tensor<float, 2>&>(),
                                                          std::declval<const wanda_calibrator&>(), 0.5)),
                               prune::mask>);
  static_assert(std::is_same_v<decltype(prune::wanda_n_m_mask(std::declval<const tensor<float, 2>&>(),
                                                              std::declval<const wanda_calibrator&>(), 2, 4)),
                               prune::mask>);
  wanda_calibrator cal(4);
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 4), {1, 1, 1, 1}));
  tensor<float, 2> w(qprune::extents<2>(2, 4), {4, -1, 3, 2, 0.5f, 2, -3, 1});
  const auto m = prune::wanda_mask(w, cal, 0.5);
  EXPECT_EQ(m.sparsity(), 0.5);
  m.apply(w.view());
  EXPECT_EQ(w, (tensor<float, 2>(qprune::extents<2>(2, 4), {4, 0, 3, 0, 0, 2, -3, 0})));
}

// Scores that differ only below float precision: S = |W_j|·rms_j with
//   W = (1, 1 + 2^-23, 1 + 2^-22),  rms = (1 + 3·2^-23, 1 + 2^-22, 1 + 2^-23)
// gives S_0 = 1 + 3·2^-23 and S_1 = S_2 = 1 + 3·2^-23 + 2^-45 (exact in double). As
// doubles column 0 is the lowest; rounded to float all three tie and the tie rule
// would prune column 2 instead.
TEST(Wanda, RanksTheDoubleScoresWithoutRoundingToFloat) {
  const float e23 = std::ldexp(1.0f, -23);
  const float e22 = std::ldexp(1.0f, -22);
  wanda_calibrator cal(3);
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 3), {1 + e22 + e23, 1 + e22, 1 + e23}));
  const tensor<float, 2> w(qprune::extents<2>(1, 3), {1, 1 + e23, 1 + e22});
  const auto s = prune::wanda_scores(w, cal);
  EXPECT_EQ(s(0, 0), 1 + 3 * std::ldexp(1.0, -23));
  EXPECT_EQ(s(0, 1), s(0, 2));
  EXPECT_EQ(s(0, 1) - s(0, 0), std::ldexp(1.0, -45));
  EXPECT_EQ(static_cast<float>(s(0, 0)), static_cast<float>(s(0, 1)));
  EXPECT_EQ(prune::wanda_mask(w, cal, 1.0 / 3.0), make_mask(1, 3, {0, 1, 1}));
  // 2:3 keeps the two highest: columns 1 and 2.
  EXPECT_EQ(prune::wanda_n_m_mask(w, cal, 2, 3), make_mask(1, 3, {0, 1, 1}));
}

// ---------------------------------------------------------------------------
// The shared ranking kernels on double scores (magnitude.hpp, n_m.hpp)
// ---------------------------------------------------------------------------

TEST(SharedRanking, DoubleScoresAreComparedAsDoubles) {
  // Equal in float, ordered in double: 1 - 1e-12 < 1 = 1 < 1 + 1e-12.
  const tensor<double, 2> sd(qprune::extents<2>(1, 4), {1.0 - 1e-12, 1.0, 1.0 + 1e-12, 1.0});
  tensor<float, 2> sf(1, 4);
  for (index_t j = 0; j < 4; ++j) sf(0, j) = static_cast<float>(sd(0, j));
  ASSERT_EQ(sf(0, 0), sf(0, 2));

  // prune_lowest: the lowest double first, then the tie (1, 3) by the higher index.
  for (index_t k = 0; k <= 4; ++k) {
    std::vector<std::uint8_t> keep(4, 1);
    prune::prune_lowest(sd.span(), k, keep);
    const std::vector<std::vector<std::uint8_t>> want{{1, 1, 1, 1}, {0, 1, 1, 1}, {0, 1, 1, 0}, {0, 0, 1, 0}, {0, 0, 0, 0}};
    EXPECT_EQ(keep, want[static_cast<std::size_t>(k)]) << "k = " << k;
  }
  // score_mask (exact k over the tensor) on the double view, and on the float view
  // where all four tie and the higher indices go.
  EXPECT_EQ(prune::score_mask(sd.cview(), 0.5f), make_mask(1, 4, {0, 1, 1, 0}));
  EXPECT_EQ(prune::score_mask(sf.cview(), 0.5f), make_mask(1, 4, {1, 1, 0, 0}));
  // n_m_mask_from_scores: 2:4 keeps column 2 and, of the tie (1, 3), column 1.
  EXPECT_EQ(prune::n_m_mask_from_scores(sd.cview(), 2, 4), make_mask(1, 4, {0, 1, 1, 0}));
  EXPECT_EQ(prune::n_m_mask_from_scores(sf.cview(), 2, 4), make_mask(1, 4, {1, 1, 0, 0}));
  // A strided (column-major) double view reads the same elements.
  const std::vector<double> col_major{1.0, 3.0, 2.0, 0.5};  // [[1, 2], [3, 0.5]]
  const qprune::tensor_view<const double, 2, qprune::layout_left> cm(col_major.data(), 2, 2);
  EXPECT_EQ(prune::score_mask(cm, 0.5f), make_mask(2, 2, {0, 1, 1, 0}));
  EXPECT_EQ(prune::n_m_mask_from_scores(cm, 1, 2), make_mask(2, 2, {0, 1, 1, 0}));
}

TEST(SharedRanking, DoubleNaNAndInfOrder) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const tensor<double, 2> s(qprune::extents<2>(1, 6), {nan, inf, -0.0, 0.0, nan, 2.0});
  // Ranking low to high: 0.0 (3), -0.0 (2) [tie: higher index first], 2, inf, NaN (4), NaN (0).
  EXPECT_EQ(prune::score_mask(s.cview(), 0.5f), make_mask(1, 6, {1, 1, 0, 0, 1, 0}));
  EXPECT_EQ(prune::score_mask(s.cview(), 5.0f / 6.0f), make_mask(1, 6, {1, 0, 0, 0, 0, 0}));
  // 1:3 groups {NaN, inf, -0.0} and {0.0, NaN, 2}: the NaN is kept in each.
  EXPECT_EQ(prune::n_m_mask_from_scores(s.cview(), 1, 3), make_mask(1, 6, {1, 0, 0, 0, 1, 0}));
  std::vector<std::uint8_t> keep(6, 1);
  EXPECT_THROW(prune::prune_lowest(s.span(), 7, keep), config_error);
  std::vector<std::uint8_t> short_keep(5, 1);
  EXPECT_THROW(prune::prune_lowest(s.span(), 1, short_keep), shape_error);
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

static_assert(prune::pruner<prune::wanda>);
static_assert(prune::sparsity_pruner<prune::wanda>);
static_assert(prune::pruner<prune::wanda_n_m>);
static_assert(!prune::sparsity_pruner<prune::wanda_n_m>);
static_assert(std::is_same_v<prune::wanda::mask_type, prune::mask>);
static_assert(std::is_same_v<prune::wanda_n_m::mask_type, prune::mask>);

TEST(WandaPolicy, ComputeMaskEqualsTheFreeFunctions) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(24);
  const index_t out = 6, in = 11;
  wanda_calibrator cal(in);
  for (int b = 0; b < 3; ++b) cal.add_batch(random_matrix(rng, 5, in, -2.0f, 2.0f));
  const auto w = random_matrix(rng, out, in);
  const qprune::tensor_view<const float, 2, qprune::layout_stride> v(w.cview());

  prune::wanda pol(cal, 0.5f);
  EXPECT_EQ(pol.sparsity(), 0.5f);
  EXPECT_EQ(pol.calibrator().samples(), 15);
  EXPECT_EQ(pol.compute_mask(v), prune::wanda_mask(w, cal, 0.5));
  pol.set_sparsity(0.25f);
  EXPECT_EQ(pol.compute_mask(v), prune::wanda_mask(w, cal, 0.25));
  for (index_t r = 0; r < out; ++r) EXPECT_EQ(count_kept_in_row(pol.compute_mask(v), r), in - 3);  // 2.75 -> 3
  EXPECT_THROW(pol.set_sparsity(-0.5f), config_error);
  EXPECT_EQ(pol.sparsity(), 0.25f);
  // The policy owns its statistics: later batches on the original do not reach it.
  const auto before = pol.compute_mask(v);
  cal.add_batch(random_matrix(rng, 50, in, -100.0f, 100.0f));
  EXPECT_EQ(pol.compute_mask(v), before);

  const prune::wanda_n_m nm(cal, 2, 4);
  EXPECT_EQ(nm.pattern().n(), 2);
  EXPECT_EQ(nm.pattern().m(), 4);
  EXPECT_EQ(nm.pattern().sparsity(), 0.5);
  EXPECT_EQ(nm.compute_mask(v), prune::wanda_n_m_mask(w, cal, 2, 4));
  EXPECT_TRUE(prune::is_n_m_sparse(nm.compute_mask(v), 2, 4));
}

TEST(WandaPolicy, BadInputThrows) {
  wanda_calibrator empty(3);
  EXPECT_THROW(prune::wanda(empty, 0.5f), config_error);
  EXPECT_THROW(prune::wanda_n_m(empty, 2, 4), config_error);
  wanda_calibrator cal(3);
  cal.add_batch(tensor<float, 2>(qprune::extents<2>(1, 3), {1, 2, 3}));
  EXPECT_THROW(prune::wanda(cal, 1.5f), config_error);
  EXPECT_THROW(prune::wanda(cal, std::numeric_limits<float>::quiet_NaN()), config_error);
  EXPECT_THROW(prune::wanda_n_m(cal, 4, 4), config_error);
  const prune::wanda pol(cal, 0.5f);
  const tensor<float, 2> wrong(2, 4);
  EXPECT_THROW((void)pol.compute_mask(wrong.cview()), shape_error);
  EXPECT_THROW((void)prune::wanda_n_m(cal, 1, 2).compute_mask(wrong.cview()), shape_error);
}

}  // namespace

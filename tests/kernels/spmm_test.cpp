// Sparse kernels (kernels/spmm.hpp): every instruction set this CPU supports
// against the scalar twins of kernels/reference/spmm.hpp bit for bit (the lane
// order), against a double-precision product of the decoded matrix within the
// stated bound, hand-computed lane-order cases, NaN / inf propagation, thread
// independence, SpMM rows equal to SpMV, and the shape errors.
#include "qprune/kernels/spmm.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "support/random.hpp"

namespace {

using qprune::half;
using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;
namespace k = qprune::kernels;
namespace ref = qprune::kernels::reference;
using qprune::prune::csr_matrix;
using qprune::prune::packed_nm_matrix;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::uint32_t bits(float v) { return std::bit_cast<std::uint32_t>(v); }

/// Same bits, or both NaN (a NaN's payload may depend on operand order).
::testing::AssertionResult same(float got, float want) {
  if (bits(got) == bits(want) || (std::isnan(got) && std::isnan(want))) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "got " << got << " (0x" << std::hex << bits(got)
                                       << "), want " << want << " (0x" << bits(want) << ")";
}

/// Random weights: each element kept with probability `density`, values N(0, 1).
tensor<float, 2> random_weights(index_t rows, index_t cols, double density, std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::bernoulli_distribution keep(density);
  tensor<float, 2> w(rows, cols);
  for (float& v : w.span()) {
    const float a = nd(rng);
    v = keep(rng) && a != 0.0f ? a : 0.0f;
  }
  return w;
}

/// Random N:M weights: every group of m columns keeps at most n entries, each
/// of its n candidate positions with probability `density`.
tensor<float, 2> random_nm_weights(index_t rows, index_t cols, int n, int m, double density,
                                   std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::bernoulli_distribution keep(density);
  tensor<float, 2> w(rows, cols);
  for (index_t r = 0; r < rows; ++r) {
    for (index_t g = 0; g < cols; g += m) {
      const index_t width = std::min<index_t>(m, cols - g);
      std::vector<index_t> p(static_cast<std::size_t>(width));
      for (index_t i = 0; i < width; ++i) p[static_cast<std::size_t>(i)] = i;
      std::shuffle(p.begin(), p.end(), rng);
      for (index_t i = 0; i < std::min<index_t>(n, width); ++i) {
        if (keep(rng)) w(r, g + p[static_cast<std::size_t>(i)]) = nd(rng) + 0.125f;
      }
    }
  }
  return w;
}

std::vector<float> random_vector(index_t n, std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::uniform_real_distribution<float> ud(-2.0f, 2.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& e : v) e = ud(rng);
  return v;
}

/// Checks y against the double-precision product of the decoded matrix within
/// (k + 2) 2^-24 (sum |a x| + |b|), k the row's nonzeros.
template <class S>
void expect_near_exact(const S& a, const float* x, const float* y, const std::vector<float>& bias) {
  tensor<float, 2> d(a.rows(), a.cols());
  a.to_dense(d.view());
  for (index_t r = 0; r < a.rows(); ++r) {
    double acc = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(r)];
    double mag = std::fabs(acc);
    index_t nz = 0;
    for (index_t c = 0; c < a.cols(); ++c) {
      if (d(r, c) == 0.0f) continue;
      const double t = static_cast<double>(d(r, c)) * x[c];
      acc += t;
      mag += std::fabs(t);
      ++nz;
    }
    ASSERT_NEAR(y[r], acc, static_cast<double>(nz + 2) * std::ldexp(mag, -24)) << "row " << r;
  }
}

template <class S>
void check_spmv(const S& a, isa path, bool with_bias, std::uint64_t salt) {
  const std::vector<float> x = random_vector(a.cols(), salt);
  std::vector<float> bias = with_bias ? random_vector(a.rows(), salt + 1) : std::vector<float>{};
  std::vector<float> got(static_cast<std::size_t>(a.rows()), -7.0f), want(got.size(), -8.0f);
  k::spmv(a, x, got, bias, path);
  ASSERT_TRUE(ref::spmv_lanes(a, x, want, bias));
  for (std::size_t r = 0; r < got.size(); ++r) ASSERT_TRUE(same(got[r], want[r])) << "row " << r;
  expect_near_exact(a, x.data(), got.data(), bias);
}

template <class S>
void check_spmm(const S& a, isa path, index_t m, bool with_bias, std::uint64_t salt) {
  SCOPED_TRACE("M=" + std::to_string(m));
  const std::vector<float> xs = random_vector(m * a.cols(), salt);
  tensor<float, 2> x(m, a.cols());
  std::copy(xs.begin(), xs.end(), x.data());
  std::vector<float> bias = with_bias ? random_vector(a.rows(), salt + 1) : std::vector<float>{};
  tensor<float, 2> got(qprune::extents<2>(m, a.rows()), -7.0f), want(qprune::extents<2>(m, a.rows()), -8.0f);
  k::spmm(x.cview(), a, got.view(), bias, path);
  ASSERT_TRUE(ref::spmm_lanes(x.cview(), a, want.view(), bias));
  for (index_t i = 0; i < m * a.rows(); ++i) ASSERT_TRUE(same(got.data()[i], want.data()[i])) << "element " << i;
  // Row i of the SpMM is the SpMV of row i of X: results do not depend on the batch.
  for (index_t i = 0; i < m; i += std::max<index_t>(1, m / 3)) {
    std::vector<float> yi(static_cast<std::size_t>(a.rows()));
    k::spmv(a, std::span<const float>(x.data() + i * a.cols(), static_cast<std::size_t>(a.cols())), yi,
            bias, path);
    for (index_t r = 0; r < a.rows(); ++r) ASSERT_TRUE(same(got(i, r), yi[static_cast<std::size_t>(r)]));
  }
  if (m > 0) expect_near_exact(a, x.data() + (m - 1) * a.cols(), got.data() + (m - 1) * a.rows(), bias);
}

struct shape {
  index_t rows, cols;
};
const shape kShapes[] = {{0, 5},  {5, 0},   {1, 1},   {1, 15},  {15, 16}, {16, 17},
                         {17, 1}, {3, 97},  {31, 64}, {97, 33}, {7, 300}, {64, 257}};
const double kDensities[] = {1.0, 0.5, 0.1, 0.0};  // sparsity 0%, 50%, 90%, 100%

class SparseKernels : public ::testing::TestWithParam<isa> {};

template <class V>
void csr_spmv_sweep(isa path, std::uint64_t salt) {
  for (const shape sh : kShapes) {
    for (const double d : kDensities) {
      SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) + " density " + std::to_string(d));
      const auto w = random_weights(sh.rows, sh.cols, d, ++salt);
      const auto a = csr_matrix<V>::from_dense(w.cview());
      check_spmv(a, path, (salt % 2) == 0, salt);
      check_spmv(a, path, (salt % 2) == 1, salt + 7);
    }
  }
}

TEST_P(SparseKernels, CsrSpmvMatchesTwinEveryValueType) {
  SCOPED_TRACE(qprune::test::seed_trace());
  csr_spmv_sweep<float>(GetParam(), 100);
  csr_spmv_sweep<half>(GetParam(), 200);
  csr_spmv_sweep<std::int8_t>(GetParam(), 300);
}

TEST_P(SparseKernels, CsrSpmvIndexWidthsAndLargeShapes) {
  SCOPED_TRACE(qprune::test::seed_trace());
  // uint8 (cols <= 256), uint16 and uint32 column indices.
  for (const index_t cols : {index_t{256}, index_t{257}, index_t{65536}, index_t{65537}}) {
    const auto w = random_weights(3, cols, 0.01, static_cast<std::uint64_t>(cols));
    check_spmv(csr_matrix<float>::from_dense(w.cview()), GetParam(), true, 11);
    check_spmv(csr_matrix<std::int8_t>::from_dense(w.cview()), GetParam(), false, 12);
  }
  // Larger than L2 at 50% density; 1024^2 at 90% and 95% sparsity.
  check_spmv(csr_matrix<float>::from_dense(random_weights(1024, 1024, 0.1, 13).cview()), GetParam(), true, 14);
  check_spmv(csr_matrix<half>::from_dense(random_weights(1024, 1024, 0.05, 15).cview()), GetParam(), true, 16);
  check_spmv(csr_matrix<float>::from_dense(random_weights(1500, 1100, 0.5, 17).cview()), GetParam(), false, 18);
}

template <class V>
void nm_spmv_sweep(isa path, std::uint64_t salt) {
  const int patterns[][2] = {{2, 4}, {1, 4}, {2, 8}, {4, 8}, {1, 2}, {3, 5}, {7, 16}, {15, 16}};
  for (const auto& p : patterns) {
    for (const shape sh : {shape{1, 1}, shape{3, 15}, shape{16, 16}, shape{17, 17}, shape{5, 97}, shape{33, 300}}) {
      for (const double d : {1.0, 0.5, 0.0}) {
        SCOPED_TRACE(std::to_string(p[0]) + ":" + std::to_string(p[1]) + " " + std::to_string(sh.rows) + "x" +
                     std::to_string(sh.cols) + " density " + std::to_string(d));
        const auto w = random_nm_weights(sh.rows, sh.cols, p[0], p[1], d, ++salt);
        check_spmv(packed_nm_matrix<V>::from_dense(w.cview(), p[0], p[1]), path, (salt % 2) == 0, salt);
      }
    }
  }
}

TEST_P(SparseKernels, NmSpmvMatchesTwinEveryPatternAndValueType) {
  SCOPED_TRACE(qprune::test::seed_trace());
  nm_spmv_sweep<float>(GetParam(), 400);
  nm_spmv_sweep<half>(GetParam(), 500);
  nm_spmv_sweep<std::int8_t>(GetParam(), 600);
  check_spmv(packed_nm_matrix<float>::from_dense(random_nm_weights(1024, 1024, 2, 4, 1.0, 19).cview(), 2, 4),
             GetParam(), true, 20);
}

TEST_P(SparseKernels, NmSpmvEqualsDenseProductOfDecodedMatrix) {
  // 2:4 with both slots kept in every group: the decoded matrix times x in
  // double, and exactly a hand-checkable case.
  const tensor<float, 2> w(qprune::extents<2>(2, 8), {1, 0, 2, 0, 0, 3, 0, -4,  //
                                                     0, 0, 5, 6, 0, 0, 0, 0});
  const auto a = packed_nm_matrix<float>::from_dense(w.cview(), 2, 4);
  const std::vector<float> x{1, 10, 100, 1000, 1e4f, 1e5f, 1e6f, 1e7f}, b{0.5f, -1};
  std::vector<float> y(2);
  k::spmv(a, x, y, b, GetParam());
  EXPECT_EQ(y[0], 1.0f + 200.0f + 3e5f - 4e7f + 0.5f);
  EXPECT_EQ(y[1], 500.0f + 6000.0f - 1.0f);
}

template <class V>
void spmm_sweep(isa path, std::uint64_t salt) {
  for (const shape sh : {shape{0, 4}, shape{4, 0}, shape{1, 1}, shape{17, 33}, shape{40, 97}}) {
    for (const double d : {1.0, 0.25, 0.0}) {
      const auto w = random_weights(sh.rows, sh.cols, d, ++salt);
      const auto a = csr_matrix<V>::from_dense(w.cview());
      const auto wn = random_nm_weights(sh.rows, sh.cols, 2, 4, d, ++salt);
      const auto b = packed_nm_matrix<V>::from_dense(wn.cview(), 2, 4);
      for (const index_t m : {0, 1, 2, 3, 15, 16, 17, 64}) {
        SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) + " density " + std::to_string(d));
        check_spmm(a, path, m, (m % 2) == 1, salt + static_cast<std::uint64_t>(m));
        check_spmm(b, path, m, (m % 2) == 0, salt + static_cast<std::uint64_t>(m) + 50);
      }
    }
  }
}

TEST_P(SparseKernels, SpmmMatchesTwinAndSpmvEveryValueType) {
  SCOPED_TRACE(qprune::test::seed_trace());
  spmm_sweep<float>(GetParam(), 700);
  spmm_sweep<half>(GetParam(), 800);
  spmm_sweep<std::int8_t>(GetParam(), 900);
  const auto w = random_weights(256, 512, 0.1, 21);
  check_spmm(csr_matrix<float>::from_dense(w.cview()), GetParam(), 64, true, 22);
  check_spmm(packed_nm_matrix<float>::from_dense(random_nm_weights(128, 300, 1, 4, 1.0, 23).cview(), 1, 4),
             GetParam(), 33, true, 24);
}

TEST_P(SparseKernels, NmSpmmWindowPatternsTilesAndEdges) {
  // The AVX-512 N:M SpMM for N a power of two and M <= 2N (1:2, 2:4, 4:8, 8:16)
  // runs 4 matrix rows x 2 batch rows at a time over 32-column windows: matrix
  // rows not a multiple of 4, odd batches, columns ending mid-window or
  // mid-group (padding slots past the last column), empty and full rows.
  SCOPED_TRACE(qprune::test::seed_trace());
  const int patterns[][2] = {{1, 2}, {2, 4}, {4, 8}, {8, 16}, {2, 3}};
  std::uint64_t salt = 1000;
  for (const auto& p : patterns) {
    for (const shape sh : {shape{1, 3}, shape{5, 31}, shape{7, 33}, shape{13, 50}, shape{9, 64}}) {
      for (const double d : {1.0, 0.5, 0.0}) {
        SCOPED_TRACE(std::to_string(p[0]) + ":" + std::to_string(p[1]) + " " + std::to_string(sh.rows) + "x" +
                     std::to_string(sh.cols) + " density " + std::to_string(d));
        const auto w = random_nm_weights(sh.rows, sh.cols, p[0], p[1], d, ++salt);
        for (const index_t m : {2, 3, 5}) {
          check_spmm(packed_nm_matrix<float>::from_dense(w.cview(), p[0], p[1]), GetParam(), m, (m % 2) == 1, salt);
        }
        check_spmm(packed_nm_matrix<half>::from_dense(w.cview(), p[0], p[1]), GetParam(), 4, true, salt + 1);
        check_spmm(packed_nm_matrix<std::int8_t>::from_dense(w.cview(), p[0], p[1]), GetParam(), 7, false, salt + 2);
      }
    }
  }
  // Non-finite X entries reach only the rows holding a nonzero in their column,
  // whichever tile (matrix row, batch row) they fall in.
  const auto w = random_nm_weights(9, 40, 2, 4, 0.5, 1999);
  const auto a = packed_nm_matrix<float>::from_dense(w.cview(), 2, 4);
  tensor<float, 2> x(qprune::extents<2>(5, 40), 1.0f), y(5, 9);
  x(3, 17) = kNaN;
  x(4, 39) = kInf;
  k::spmm(x.cview(), a, y.view(), {}, GetParam());
  for (index_t i = 0; i < 5; ++i) {
    for (index_t r = 0; r < 9; ++r) {
      const bool nan = i == 3 && w(r, 17) != 0.0f;
      const bool inf = i == 4 && w(r, 39) != 0.0f;
      EXPECT_EQ(std::isnan(y(i, r)), nan) << i << " " << r;
      EXPECT_EQ(std::isinf(y(i, r)), inf) << i << " " << r;
    }
  }
}

TEST_P(SparseKernels, LaneOrderHandComputed) {
  // Entries 0 and 16 share partial sum 0 and cancel exactly; entries 1..15
  // each add 1 in their own partial sum: the lane order gives exactly 15, where
  // a sequential sum loses every 1 against 1e8 (1 < ulp(1e8) / 2) and gives 0.
  tensor<float, 2> w(1, 17);
  for (index_t c = 0; c < 17; ++c) w(0, c) = 1.0f;
  w(0, 0) = 1e8f;
  w(0, 16) = -1e8f;
  const std::vector<float> x(17, 1.0f);
  std::vector<float> y(1);
  k::spmv(csr_matrix<float>::from_dense(w.cview()), x, y, {}, GetParam());
  EXPECT_EQ(y[0], 15.0f);
  ASSERT_TRUE(ref::spmv(csr_matrix<float>::from_dense(w.cview()), x, y));
  EXPECT_EQ(y[0], 0.0f);  // the sequential reference order, for contrast
  // Same matrix as a batch of 3 rows of X.
  tensor<float, 2> xm(qprune::extents<2>(3, 17), 1.0f), ym(3, 1);
  k::spmm(xm.cview(), csr_matrix<float>::from_dense(w.cview()), ym.view(), {}, GetParam());
  for (index_t i = 0; i < 3; ++i) EXPECT_EQ(ym(i, 0), 15.0f);
  // int8: codes 127 (scale 1e8 / 127) ... the scale applies once: y = fma(s, acc, b).
  const auto q = csr_matrix<std::int8_t>::from_dense(w.cview());
  k::spmv(q, x, y, std::vector<float>{0.25f}, GetParam());
  const float s = q.row_scale(0);
  // codes: 127, 15 x round(1 / s) = 0 (stored zeros: skipped), -127 -> acc = 0.
  EXPECT_EQ(y[0], std::fma(s, 0.0f, 0.25f));
}

TEST_P(SparseKernels, NanAndInfReachOnlyRowsWithANonzeroInTheirColumn) {
  // Row 0 holds column 2, row 1 column 5 (and padding / pruned entries elsewhere).
  const tensor<float, 2> w(qprune::extents<2>(3, 8), {0, 0, 2, 0, 0, 0, 0, 1,  //
                                                     0, 3, 0, 0, 0, 4, 0, 0,  //
                                                     0, 0, 0, 0, 0, 0, 0, 0});
  std::vector<float> x{kInf, 1, kNaN, -kInf, kNaN, 2, kInf, 1};
  for (int f = 0; f < 2; ++f) {
    std::vector<float> y(3);
    if (f == 0) {
      k::spmv(csr_matrix<half>::from_dense(w.cview()), x, y, {}, GetParam());
    } else {
      k::spmv(packed_nm_matrix<float>::from_dense(w.cview(), 2, 4), x, y, {}, GetParam());
    }
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(y[1], 11.0f);
    EXPECT_EQ(bits(y[2]), bits(0.0f));
  }
  x[2] = kInf;
  std::vector<float> y(3);
  k::spmv(csr_matrix<std::int8_t>::from_dense(w.cview()), x, y, {}, GetParam());
  EXPECT_EQ(y[0], kInf);
  // inf - inf in one row is NaN.
  x[7] = -kInf;
  k::spmv(csr_matrix<float>::from_dense(w.cview()), x, y, {}, GetParam());
  EXPECT_TRUE(std::isnan(y[0]));
  // Batch: X rows with the NaN in different columns.
  tensor<float, 2> xm(qprune::extents<2>(17, 8), 1.0f), ym(17, 3);
  xm(4, 5) = kNaN;
  k::spmm(xm.cview(), packed_nm_matrix<half>::from_dense(w.cview(), 2, 4), ym.view(), {}, GetParam());
  for (index_t i = 0; i < 17; ++i) {
    EXPECT_EQ(ym(i, 0), 3.0f);
    if (i == 4) {
      EXPECT_TRUE(std::isnan(ym(i, 1)));
    } else {
      EXPECT_EQ(ym(i, 1), 7.0f);
    }
    EXPECT_EQ(bits(ym(i, 2)), bits(0.0f));
  }
}

TEST_P(SparseKernels, NegativeZeroAndStoredZeros) {
  // Stored zeros (kept by the mask) sit where x is inf and NaN: they are skipped,
  // so the result is the twin's (a product rounding to -0 summed into +0), not NaN.
  const tensor<float, 2> w(qprune::extents<2>(1, 4), {-1e-30f, 0, 0, 0});
  const tensor<std::uint8_t, 2> keep(qprune::extents<2>(1, 4), {1, 1, 1, 0});
  const auto a = csr_matrix<float>::from_dense(w.cview(), keep.cview());  // two stored zeros
  ASSERT_EQ(a.nnz(), 3);
  const std::vector<float> x{1e-30f, kInf, kNaN, 1};
  std::vector<float> y(1), want(1);
  k::spmv(a, x, y, {}, GetParam());
  ASSERT_TRUE(ref::spmv_lanes(a, x, want));
  EXPECT_EQ(bits(y[0]), bits(want[0]));
  EXPECT_FALSE(std::isnan(y[0]));
  tensor<float, 2> xm(qprune::extents<2>(2, 4), {1e-30f, kInf, kNaN, 1, 1e-30f, kInf, kNaN, 1}), ym(2, 1);
  k::spmm(xm.cview(), a, ym.view(), {}, GetParam());
  EXPECT_EQ(bits(ym(0, 0)), bits(want[0]));
  EXPECT_EQ(bits(ym(1, 0)), bits(want[0]));
}

TEST_P(SparseKernels, TwoThreadsGiveIdenticalResults) {
  const auto w = random_weights(700, 900, 0.2, 31);
  const auto a = csr_matrix<float>::from_dense(w.cview());
  const auto b = packed_nm_matrix<std::int8_t>::from_dense(random_nm_weights(700, 900, 2, 4, 1.0, 32).cview(), 2, 4);
  const auto xs = random_vector(64 * 900, 33);
  tensor<float, 2> x(64, 900);
  std::copy(xs.begin(), xs.end(), x.data());
  const auto bias = random_vector(700, 34);
  tensor<float, 2> y1(64, 700), y2(64, 700), z1(64, 700), z2(64, 700);
  std::vector<float> v1(700), v2(700);
  k::spmm(x.cview(), a, y1.view(), bias, GetParam());
  k::spmm(x.cview(), b, z1.view(), bias, GetParam());
  k::spmv(a, std::span<const float>(xs.data(), 900), v1, bias, GetParam());
  qprune::kernels::set_num_threads(2);
  k::spmm(x.cview(), a, y2.view(), bias, GetParam());
  k::spmm(x.cview(), b, z2.view(), bias, GetParam());
  k::spmv(a, std::span<const float>(xs.data(), 900), v2, bias, GetParam());
  qprune::kernels::set_num_threads(1);
  for (index_t i = 0; i < 64 * 700; ++i) {
    ASSERT_EQ(bits(y1.data()[i]), bits(y2.data()[i]));
    ASSERT_EQ(bits(z1.data()[i]), bits(z2.data()[i]));
  }
  for (std::size_t r = 0; r < 700; ++r) ASSERT_EQ(bits(v1[r]), bits(v2[r]));
}

INSTANTIATE_TEST_SUITE_P(AllSupported, SparseKernels, ::testing::ValuesIn(qprune::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<isa>& p) {
                           return std::string(qprune::kernels::to_string(p.param));
                         });

TEST(SparseKernelsApi, RejectsBadShapes) {
  const auto a = csr_matrix<float>::from_dense(random_weights(4, 8, 0.5, 41).cview());
  const auto b = packed_nm_matrix<half>::from_dense(random_nm_weights(4, 8, 2, 4, 1.0, 42).cview(), 2, 4);
  std::vector<float> x8(8), x7(7), y4(4), y5(5), b4(4), b3(3);
  EXPECT_THROW(k::spmv(a, x7, y4), qprune::shape_error);
  EXPECT_THROW(k::spmv(a, x8, y5), qprune::shape_error);
  EXPECT_THROW(k::spmv(a, x8, y4, b3), qprune::shape_error);
  EXPECT_THROW(k::spmv(b, x7, y4), qprune::shape_error);
  EXPECT_NO_THROW(k::spmv(b, x8, y4, b4));
  tensor<float, 2> x(3, 8), xb(3, 9), y(3, 4), yr(2, 4), yc(3, 5);
  EXPECT_THROW(k::spmm(xb.cview(), a, y.view()), qprune::shape_error);
  EXPECT_THROW(k::spmm(x.cview(), a, yr.view()), qprune::shape_error);
  EXPECT_THROW(k::spmm(x.cview(), b, yc.view()), qprune::shape_error);
  EXPECT_THROW(k::spmm(x.cview(), b, y.view(), b3), qprune::shape_error);
  try {
    k::spmv(a, x7, y4);
    FAIL() << "expected shape_error";
  } catch (const qprune::shape_error& e) {
    EXPECT_NE(std::string(e.what()).find("has 7 values (expected 8"), std::string::npos) << e.what();
  }
}

TEST(SparseKernelsApi, EmptyShapesWriteBiasOrNothing) {
  // K = 0: every output is the bias (or +0).
  const auto a = csr_matrix<float>::from_dense(tensor<float, 2>(3, 0).cview());
  std::vector<float> y(3, 5.0f);
  const std::vector<float> none, bias{1, -2, 3};
  k::spmv(a, none, y, bias);
  EXPECT_EQ(y, bias);
  tensor<float, 2> x(2, 0), ym(qprune::extents<2>(2, 3), 9.0f);
  k::spmm(x.cview(), a, ym.view());
  for (float v : ym.span()) EXPECT_EQ(bits(v), bits(0.0f));
}

}  // namespace

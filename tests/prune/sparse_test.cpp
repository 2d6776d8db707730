// Tests for prune/sparse_storage.hpp and kernels/reference/spmm.hpp: round trips
// of every format x value type (fp32 exact, fp16 == half(w), int8 == the
// per-row symmetric rule recomputed here), byte accounting and packed layouts
// against hand-computed bytes, SpMV / SpMM against a dense double reference
// (stated bound) and bit for bit against a dense float loop with the same
// accumulation order, edge shapes and bad input.
#include "qprune/prune/sparse_storage.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "qprune/kernels/reference/spmm.hpp"
#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::half;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor;
using qprune::tensor_view;
namespace prune = qprune::prune;
namespace ref = qprune::kernels::reference;
using prune::bitmask_matrix;
using prune::byte_breakdown;
using prune::csr_matrix;
using prune::packed_nm_matrix;
using prune::value_kind;

static_assert(prune::sparse_matrix_storage<csr_matrix<float>>);
static_assert(prune::sparse_matrix_storage<csr_matrix<half>>);
static_assert(prune::sparse_matrix_storage<csr_matrix<std::int8_t>>);
static_assert(prune::sparse_matrix_storage<bitmask_matrix<float>>);
static_assert(prune::sparse_matrix_storage<bitmask_matrix<half>>);
static_assert(prune::sparse_matrix_storage<bitmask_matrix<std::int8_t>>);
static_assert(prune::sparse_matrix_storage<packed_nm_matrix<float>>);
static_assert(prune::sparse_matrix_storage<packed_nm_matrix<half>>);
static_assert(prune::sparse_matrix_storage<packed_nm_matrix<std::int8_t>>);
static_assert(!prune::sparse_matrix_storage<int>);
static_assert(!prune::sparse_matrix_storage<tensor<float, 2>>);
static_assert(!prune::sparse_value<double>);
static_assert(!prune::sparse_value<std::uint8_t>);

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

tensor<float, 2> make(index_t rows, index_t cols, std::initializer_list<float> v) {
  return tensor<float, 2>(qprune::extents<2>(rows, cols), v);
}

// ---------------------------------------------------------------------------
// Oracles, written from the specification, independently of the header
// ---------------------------------------------------------------------------

/// Kept entries: the mask when given, else w != 0.
std::vector<bool> kept_of(const tensor<float, 2>& w, const tensor<std::uint8_t, 2>* mask) {
  std::vector<bool> k(static_cast<std::size_t>(w.size()));
  for (index_t i = 0; i < w.size(); ++i) {
    k[static_cast<std::size_t>(i)] =
        mask != nullptr ? mask->data()[i] == 1 : w.data()[i] != 0.0f;
  }
  return k;
}

/// The stored values of a value type, densely: `stored` holds what the kernels
/// multiply (fp32 w, fp16 float(half(w)), int8 the code), `scale` the row
/// scales (1 for fp32/fp16), `deq` the dequantized dense matrix (0 where pruned).
struct expected_values {
  std::vector<float> stored;
  std::vector<float> scale;
  std::vector<float> deq;
};

template <class V>
expected_values expect(const tensor<float, 2>& w, const tensor<std::uint8_t, 2>* mask = nullptr) {
  const index_t rows = w.extent(0), cols = w.extent(1);
  const std::vector<bool> kept = kept_of(w, mask);
  expected_values e;
  e.stored.assign(static_cast<std::size_t>(w.size()), 0.0f);
  e.deq.assign(static_cast<std::size_t>(w.size()), 0.0f);
  e.scale.assign(static_cast<std::size_t>(rows), 1.0f);
  for (index_t r = 0; r < rows; ++r) {
    float s = 1.0f;
    if constexpr (std::is_same_v<V, std::int8_t>) {
      float mx = 0.0f;
      for (index_t c = 0; c < cols; ++c) {
        if (kept[static_cast<std::size_t>(r * cols + c)]) mx = std::max(mx, std::fabs(w(r, c)));
      }
      s = mx == 0.0f ? 1.0f : mx / 127.0f;
      e.scale[static_cast<std::size_t>(r)] = s;
    }
    for (index_t c = 0; c < cols; ++c) {
      const auto i = static_cast<std::size_t>(r * cols + c);
      if (!kept[i]) continue;
      const float x = w(r, c);
      if constexpr (std::is_same_v<V, float>) {
        e.stored[i] = x;
        e.deq[i] = x;
      } else if constexpr (std::is_same_v<V, half>) {
        e.stored[i] = static_cast<float>(half(x));
        e.deq[i] = e.stored[i];
      } else {
        float q = std::nearbyint(x / s);  // default FE_TONEAREST: half to even
        q = std::min(127.0f, std::max(-127.0f, q));
        if (q == 0.0f) q = 0.0f;  // an integer code has no -0
        e.stored[i] = q;
        e.deq[i] = s * q;
      }
    }
  }
  return e;
}

/// Random weights where every group of m consecutive columns of a row holds at
/// most n nonzeros (n = m: unstructured with the given density).
tensor<float, 2> random_weights(index_t rows, index_t cols, int n, int m, double density,
                                std::uint64_t salt) {
  tensor<float, 2> w(rows, cols);
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (index_t r = 0; r < rows; ++r) {
    for (index_t g0 = 0; g0 < cols; g0 += m) {
      const index_t width = std::min<index_t>(m, cols - g0);
      std::vector<index_t> pos(static_cast<std::size_t>(width));
      std::iota(pos.begin(), pos.end(), g0);
      std::shuffle(pos.begin(), pos.end(), rng);
      int placed = 0;
      for (index_t p : pos) {
        if (placed == n || u(rng) >= density) continue;
        float v = nd(rng);
        if (v == 0.0f) v = 0.5f;
        w(r, p) = v;
        ++placed;
      }
    }
  }
  return w;
}

/// Builds storage S; packed N:M uses the pattern (n, m).
template <class S>
S build(const tensor<float, 2>& w, int n = 2, int m = 4) {
  if constexpr (S::format == prune::storage_format::packed_nm) {
    return S::from_dense(w, n, m);
  } else {
    return S::from_dense(w);
  }
}

template <class S>
S build_masked(const tensor<float, 2>& w, const tensor<std::uint8_t, 2>& mask, int n = 2,
               int m = 4) {
  if constexpr (S::format == prune::storage_format::packed_nm) {
    return S::from_dense(w, mask, n, m);
  } else {
    return S::from_dense(w, mask);
  }
}

template <class S>
tensor<float, 2> dense_of(const S& s) {
  tensor<float, 2> out(s.rows(), s.cols());
  out.fill(12345.0f);  // every element must be overwritten
  s.to_dense(out);
  return out;
}

void expect_same_bits(const std::vector<float>& want, const tensor<float, 2>& got) {
  ASSERT_EQ(static_cast<index_t>(want.size()), got.size());
  for (index_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(bits(want[static_cast<std::size_t>(i)]), bits(got.data()[i]))
        << "element " << i << ": want " << want[static_cast<std::size_t>(i)] << " got "
        << got.data()[i];
  }
}

// ---------------------------------------------------------------------------
// Typed tests over every format x value type
// ---------------------------------------------------------------------------

template <class S>
class SparseStorage : public ::testing::Test {};

using AllStorages =
    ::testing::Types<csr_matrix<float>, csr_matrix<half>, csr_matrix<std::int8_t>,
                     bitmask_matrix<float>, bitmask_matrix<half>, bitmask_matrix<std::int8_t>,
                     packed_nm_matrix<float>, packed_nm_matrix<half>,
                     packed_nm_matrix<std::int8_t>>;

class StorageNames {
 public:
  template <class S>
  static std::string GetName(int) {
    return std::string(prune::to_string(S::format)) + "_" +
           std::string(prune::to_string(S::kind));
  }
};
TYPED_TEST_SUITE(SparseStorage, AllStorages, StorageNames);

struct shape {
  index_t rows, cols;
};
// Edge sizes 0, 1, 15, 16, 17, primes, rows shorter than M, 1xN and Nx1.
const std::vector<shape> kShapes{{0, 0},  {0, 5},   {5, 0},   {1, 1},   {1, 3},  {3, 1},
                                 {1, 17}, {17, 1},  {2, 3},   {15, 16}, {16, 15}, {17, 31},
                                 {13, 37}, {64, 100}, {31, 257}};

TYPED_TEST(SparseStorage, RoundTripMatchesTheValueTypesRule) {
  using S = TypeParam;
  using V = typename S::value_type;
  SCOPED_TRACE(qprune::test::seed_trace());
  const bool nm = S::format == prune::storage_format::packed_nm;
  std::uint64_t salt = 1;
  for (const shape sh : kShapes) {
    for (const double density : {0.0, 0.1, 0.5, 1.0}) {
      SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) +
                   " density=" + std::to_string(density));
      // Packed 2:4 gets at most 2 nonzeros per group of 4; the others any pattern.
      const auto w = random_weights(sh.rows, sh.cols, nm ? 2 : 4, 4, density, ++salt);
      const S s = build<S>(w);
      const expected_values e = expect<V>(w);
      expect_same_bits(e.deq, dense_of(s));
      index_t nnz = 0;
      for (index_t i = 0; i < w.size(); ++i) nnz += w.data()[i] != 0.0f ? 1 : 0;
      EXPECT_EQ(s.nnz(), nnz);
      EXPECT_EQ(s.rows(), sh.rows);
      EXPECT_EQ(s.cols(), sh.cols);
      EXPECT_EQ(s.bytes(), s.breakdown().total());
      if constexpr (std::is_same_v<V, std::int8_t>) {
        ASSERT_EQ(static_cast<index_t>(s.scales().size()), sh.rows);
        for (index_t r = 0; r < sh.rows; ++r) {
          EXPECT_EQ(bits(s.scales()[static_cast<std::size_t>(r)]),
                    bits(e.scale[static_cast<std::size_t>(r)]));
        }
      } else {
        EXPECT_TRUE(s.scales().empty());
      }
    }
  }
}

TYPED_TEST(SparseStorage, MaskDecidesWhatIsStored) {
  using S = TypeParam;
  using V = typename S::value_type;
  // Row 0: the mask keeps an exact zero (col 1) and drops a nonzero (col 2).
  // Row 1: the dropped 100 must not widen the int8 scale (kept max is 2.54).
  const auto w = make(2, 4, {1.5f, 0.0f, 9.0f, 0.0f,  //
                             2.54f, 0.0f, 100.0f, -1.27f});
  tensor<std::uint8_t, 2> mask(qprune::extents<2>(2, 4), {1, 1, 0, 0,  //
                                                          1, 0, 0, 1});
  const S s = build_masked<S>(w, mask);
  EXPECT_EQ(s.nnz(), 4);
  const expected_values e = expect<V>(w, &mask);
  expect_same_bits(e.deq, dense_of(s));
  if constexpr (std::is_same_v<V, std::int8_t>) {
    EXPECT_EQ(s.row_scale(1), 2.54f / 127.0f);
    EXPECT_EQ(s.row_scale(0), 1.5f / 127.0f);
  }
}

TYPED_TEST(SparseStorage, AllZeroStoresNothingAndGivesTheBias) {
  using S = TypeParam;
  using V = typename S::value_type;
  const tensor<float, 2> w(4, 8);
  const S s = build<S>(w);
  EXPECT_EQ(s.nnz(), 0);
  expect_same_bits(std::vector<float>(32, 0.0f), dense_of(s));
  if constexpr (std::is_same_v<V, std::int8_t>) {
    for (float sc : s.scales()) EXPECT_EQ(sc, 1.0f);  // all-zero row: scale 1
  }
  const std::vector<float> x(8, kNaN);  // untouched: nothing is stored
  const std::vector<float> b{1.0f, -2.0f, 0.5f, 3.0f};
  std::vector<float> y(4, 7.0f);
  ASSERT_TRUE(ref::spmv(s, x, y, b));
  for (std::size_t r = 0; r < 4; ++r) EXPECT_EQ(bits(y[r]), bits(b[r]));
  ASSERT_TRUE(ref::spmv(s, x, y));
  for (float v : y) EXPECT_EQ(bits(v), bits(0.0f));
}

TYPED_TEST(SparseStorage, OneElement) {
  using S = TypeParam;
  using V = typename S::value_type;
  const auto w = make(1, 1, {-3.0f});
  const S s = build<S>(w);
  EXPECT_EQ(s.nnz(), 1);
  expect_same_bits({-3.0f}, dense_of(s));  // exact in every value type (int8: s = 3/127, q = -127)
  std::vector<float> y(1);
  ASSERT_TRUE(ref::spmv(s, std::vector<float>{2.0f}, y, std::vector<float>{1.0f}));
  if constexpr (std::is_same_v<V, std::int8_t>) {
    // acc = -127 * 2 = -254; y = fma(3/127, -254, 1) rounded once
    const float sc = 3.0f / 127.0f;
    EXPECT_EQ(bits(y[0]), bits(static_cast<float>(static_cast<double>(sc) * -254.0 + 1.0)));
  } else {
    EXPECT_EQ(y[0], -5.0f);
  }
  const S z = build<S>(make(1, 1, {0.0f}));
  EXPECT_EQ(z.nnz(), 0);
  expect_same_bits({0.0f}, dense_of(z));
}

TYPED_TEST(SparseStorage, EmptyMatrices) {
  using S = TypeParam;
  for (const shape sh : {shape{0, 7}, shape{7, 0}, shape{0, 0}}) {
    const tensor<float, 2> w(sh.rows, sh.cols);
    const S s = build<S>(w);
    EXPECT_EQ(s.nnz(), 0);
    EXPECT_EQ(s.rows(), sh.rows);
    EXPECT_EQ(s.cols(), sh.cols);
    tensor<float, 2> out(sh.rows, sh.cols);
    s.to_dense(out);
    std::vector<float> x(static_cast<std::size_t>(sh.cols), 1.0f);
    std::vector<float> y(static_cast<std::size_t>(sh.rows), 9.0f);
    ASSERT_TRUE(ref::spmv(s, x, y));
    for (float v : y) EXPECT_EQ(bits(v), bits(0.0f));
    tensor<float, 2> xm(sh.cols, 3), ym(sh.rows, 3);
    ASSERT_TRUE(ref::spmm(s, xm, ym));
  }
  const S d{};  // default-constructed: 0x0, consistent with its byte formula
  EXPECT_EQ(d.rows(), 0);
  EXPECT_EQ(d.nnz(), 0);
  EXPECT_EQ(d.bytes(), d.breakdown().total());
  std::vector<float> none;
  EXPECT_TRUE(ref::spmv(d, none, none));
}

TYPED_TEST(SparseStorage, BadInputThrows) {
  using S = TypeParam;
  using V = typename S::value_type;
  const auto w = make(2, 4, {1.0f, 0.0f, 0.0f, 2.0f,  //
                             0.0f, 3.0f, 0.0f, 0.0f});
  const tensor<std::uint8_t, 2> wrong_shape(2, 5);
  EXPECT_THROW(static_cast<void>(build_masked<S>(w, wrong_shape)), shape_error);
  tensor<std::uint8_t, 2> two(2, 4);
  two(1, 2) = 2;
  try {
    static_cast<void>(build_masked<S>(w, two));
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(), "[qprune.config] mask value 2 at (1, 2) (expected 0 or 1)");
  }
  const S s = build<S>(w);
  tensor<float, 2> out(4, 2);
  EXPECT_THROW(s.to_dense(out), shape_error);

  auto bad = w;
  bad(1, 1) = kNaN;
  if constexpr (std::is_same_v<V, std::int8_t>) {
    try {
      static_cast<void>(build<S>(bad));
      ADD_FAILURE() << "expected config_error";
    } catch (const config_error& e) {
      EXPECT_STREQ(e.what(),
                   "[qprune.config] weight (1, 1) is NaN (expected finite weights for int8 "
                   "values)");
    }
    bad(1, 1) = -kInf;
    EXPECT_THROW(static_cast<void>(build<S>(bad)), config_error);
    // A non-finite weight the mask prunes is never looked at.
    const tensor<std::uint8_t, 2> m(qprune::extents<2>(2, 4), {1, 0, 0, 1,  //
                                                               1, 0, 0, 0});
    EXPECT_EQ(build_masked<S>(bad, m).nnz(), 3);
  } else {
    // fp32 / fp16 store non-finite values as their type represents them.
    const S n = build<S>(bad);
    const tensor<float, 2> d = dense_of(n);
    EXPECT_TRUE(std::isnan(d(1, 1)));
  }
}

TYPED_TEST(SparseStorage, KernelsWithWrongSizesWriteNothing) {
  using S = TypeParam;
  const S s = build<S>(random_weights(3, 8, 2, 4, 0.5, 99));
  const std::vector<float> x8(8, 1.0f), x7(7, 1.0f), b3(3, 1.0f), b2(2, 1.0f);
  std::vector<float> y3(3, 42.0f), y4(4, 42.0f);
  EXPECT_FALSE(ref::spmv(s, x7, y3));
  EXPECT_FALSE(ref::spmv(s, x8, y4));
  EXPECT_FALSE(ref::spmv(s, x8, y3, b2));
  for (float v : y3) EXPECT_EQ(v, 42.0f);
  for (float v : y4) EXPECT_EQ(v, 42.0f);
  tensor<float, 2> x(8, 2), xw(7, 2);
  tensor<float, 2> y(qprune::extents<2>(3, 2), 42.0f), yw(qprune::extents<2>(3, 3), 42.0f),
      yr(qprune::extents<2>(2, 2), 42.0f);
  EXPECT_FALSE(ref::spmm(s, xw, y));
  EXPECT_FALSE(ref::spmm(s, x, yw));
  EXPECT_FALSE(ref::spmm(s, x, yr));
  EXPECT_FALSE(ref::spmm(s, x, y, b2));
  for (float v : y.span()) EXPECT_EQ(v, 42.0f);
  for (float v : yw.span()) EXPECT_EQ(v, 42.0f);
  EXPECT_TRUE(ref::spmm(s, x, y, b3));
}

/// The dense float twin: the kernels' accumulation order over a dense matrix of
/// stored values (0 = not stored, skipped), one fma per term, then the bias.
template <class V>
float dense_twin(const expected_values& e, index_t cols, index_t r, const float* x, index_t ldx,
                 float b) {
  float acc = 0.0f;
  for (index_t c = 0; c < cols; ++c) {
    const float a = e.stored[static_cast<std::size_t>(r * cols + c)];
    if (a != 0.0f) acc = std::fma(a, x[c * ldx], acc);
  }
  if constexpr (std::is_same_v<V, std::int8_t>) {
    return std::fma(e.scale[static_cast<std::size_t>(r)], acc, b);
  } else {
    return acc + b;
  }
}

/// The dense double reference sum_c a_rc x_c + b_r with a_rc the exact real
/// value stored (int8: s_r * q exactly), and the bound
/// (k + 2) * 2^-24 * (sum_c |a_rc x_c| + |b_r|), k = stored nonzeros in the row.
struct double_ref {
  double y;
  double bound;
};
double_ref reference_row(const expected_values& e, index_t cols, index_t r, const float* x,
                         index_t ldx, float b) {
  double y = b, mag = std::fabs(static_cast<double>(b));
  int k = 0;
  for (index_t c = 0; c < cols; ++c) {
    const double a = static_cast<double>(e.stored[static_cast<std::size_t>(r * cols + c)]) *
                     static_cast<double>(e.scale[static_cast<std::size_t>(r)]);
    if (a == 0.0) continue;
    ++k;
    y += a * static_cast<double>(x[c * ldx]);
    mag += std::fabs(a * static_cast<double>(x[c * ldx]));
  }
  return {y, (k + 2) * std::ldexp(1.0, -24) * mag};
}

TYPED_TEST(SparseStorage, SpmvAndSpmmMatchDenseTwinBitwiseAndDoubleReference) {
  using S = TypeParam;
  using V = typename S::value_type;
  SCOPED_TRACE(qprune::test::seed_trace());
  const bool nm = S::format == prune::storage_format::packed_nm;
  std::uint64_t salt = 1000;
  for (const shape sh : kShapes) {
    for (const double density : {0.2, 0.7}) {
      SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) +
                   " density=" + std::to_string(density));
      const auto w = random_weights(sh.rows, sh.cols, nm ? 2 : 4, 4, density, ++salt);
      const S s = build<S>(w);
      const expected_values e = expect<V>(w);
      auto rng = qprune::test::make_rng(++salt);
      std::uniform_real_distribution<float> ud(-2.0f, 2.0f);
      for (const index_t n : {index_t{0}, index_t{1}, index_t{3}, index_t{17}}) {
        tensor<float, 2> x(sh.cols, n), y(qprune::extents<2>(sh.rows, n), -1.0f);
        for (float& v : x.span()) v = ud(rng);
        std::vector<float> bias(static_cast<std::size_t>(sh.rows));
        for (float& v : bias) v = ud(rng);
        for (const bool with_bias : {false, true}) {
          const std::span<const float> b =
              with_bias ? std::span<const float>(bias) : std::span<const float>();
          ASSERT_TRUE(ref::spmm(s, x, y, b));
          for (index_t j = 0; j < n; ++j) {
            // SpMV on column j of X equals column j of the SpMM, bit for bit.
            std::vector<float> xj(static_cast<std::size_t>(sh.cols));
            for (index_t c = 0; c < sh.cols; ++c) xj[static_cast<std::size_t>(c)] = x(c, j);
            std::vector<float> yj(static_cast<std::size_t>(sh.rows), -1.0f);
            ASSERT_TRUE(ref::spmv(s, xj, yj, b));
            for (index_t r = 0; r < sh.rows; ++r) {
              const float br = with_bias ? bias[static_cast<std::size_t>(r)] : 0.0f;
              const float twin = dense_twin<V>(e, sh.cols, r, x.data() + j, n, br);
              ASSERT_EQ(bits(y(r, j)), bits(twin)) << "row " << r << " col " << j;
              ASSERT_EQ(bits(yj[static_cast<std::size_t>(r)]), bits(twin)) << "row " << r;
              const double_ref d = reference_row(e, sh.cols, r, x.data() + j, n, br);
              ASSERT_LE(std::fabs(static_cast<double>(y(r, j)) - d.y), d.bound)
                  << "row " << r << " col " << j;
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Widths, byte accounting and layouts against hand-computed values
// ---------------------------------------------------------------------------

TEST(SparseWidths, NarrowestThatFits) {
  EXPECT_EQ(prune::csr_col_index_bytes(0), 1);
  EXPECT_EQ(prune::csr_col_index_bytes(256), 1);
  EXPECT_EQ(prune::csr_col_index_bytes(257), 2);
  EXPECT_EQ(prune::csr_col_index_bytes(65536), 2);
  EXPECT_EQ(prune::csr_col_index_bytes(65537), 4);
  EXPECT_EQ(prune::csr_col_index_bytes(index_t{1} << 32), 4);
  EXPECT_EQ(prune::csr_row_ptr_bytes(0), 4);
  EXPECT_EQ(prune::csr_row_ptr_bytes((index_t{1} << 32) - 1), 4);
  EXPECT_EQ(prune::csr_row_ptr_bytes(index_t{1} << 32), 8);
  const int want_bits[17] = {0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4};
  for (int m = 2; m <= 16; ++m) EXPECT_EQ(prune::packed_nm_index_bits(m), want_bits[m]) << m;
  EXPECT_EQ(prune::packed_nm_groups(0, 4), 0);
  EXPECT_EQ(prune::packed_nm_groups(3, 4), 1);
  EXPECT_EQ(prune::packed_nm_groups(8, 4), 2);
  EXPECT_EQ(prune::packed_nm_groups(9, 4), 3);
}

// 3x5 with 4 kept entries, 2:4-compatible: row 0 {0, 3}, row 1 {4}, row 2 {1}.
tensor<float, 2> small_matrix() {
  return make(3, 5, {1.0f, 0.0f, 0.0f, -2.0f, 0.0f,  //
                     0.0f, 0.0f, 0.0f, 0.0f, 0.5f,   //
                     0.0f, 3.0f, 0.0f, 0.0f, 0.0f});
}

TEST(SparseBytes, CsrHandCounted) {
  const auto w = small_matrix();
  const auto f = csr_matrix<float>::from_dense(w);
  // header 8 (nnz as uint64) + 4 values * 4 + 4 uint8 columns + 4 uint32 row pointers
  EXPECT_EQ(f.breakdown(), (byte_breakdown{.header = 8, .values = 16, .indices = 4, .row_ptr = 16}));
  EXPECT_EQ(f.bytes(), 44);
  EXPECT_EQ(csr_matrix<half>::from_dense(w).bytes(), 8 + 8 + 4 + 16);
  const auto q = csr_matrix<std::int8_t>::from_dense(w);
  EXPECT_EQ(q.breakdown(),
            (byte_breakdown{.header = 8, .values = 4, .scales = 12, .indices = 4, .row_ptr = 16}));
  EXPECT_EQ(q.bytes(), 44);

  // The arrays themselves.
  EXPECT_EQ(f.col_index_bytes(), 1);
  EXPECT_EQ(f.row_ptr_bytes(), 4);
  const auto& ci = std::get<qprune::aligned_vector<std::uint8_t>>(f.col_indices());
  EXPECT_EQ(std::vector<int>(ci.begin(), ci.end()), (std::vector<int>{0, 3, 4, 1}));
  const auto& rp = std::get<qprune::aligned_vector<std::uint32_t>>(f.row_ptr());
  EXPECT_EQ(std::vector<int>(rp.begin(), rp.end()), (std::vector<int>{0, 2, 3, 4}));
  EXPECT_EQ(std::vector<float>(f.values().begin(), f.values().end()),
            (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
  // int8: row maxima 2, 0.5, 3 -> codes 64 (1 / (2/127) = 63.5, to even), -127, 127, 127
  EXPECT_EQ(std::vector<int>(q.values().begin(), q.values().end()),
            (std::vector<int>{64, -127, 127, 127}));
}

TEST(SparseBytes, CsrIndexWidthsFollowTheColumnCount) {
  for (const auto& [cols, width] :
       std::vector<std::pair<index_t, int>>{{256, 1}, {257, 2}, {65536, 2}, {65537, 4}}) {
    tensor<float, 2> w(2, cols);
    w(0, 0) = 1.0f;
    w(1, cols - 1) = 2.0f;
    const auto a = csr_matrix<float>::from_dense(w);
    EXPECT_EQ(a.col_index_bytes(), width) << cols;
    // 8 + 2 values * 4 + 2 indices * width + 3 row pointers * 4
    EXPECT_EQ(a.bytes(), 8 + 8 + 2 * width + 12) << cols;
    tensor<float, 2> back(2, cols);
    a.to_dense(back);
    EXPECT_EQ(back(1, cols - 1), 2.0f);
    EXPECT_EQ(back(0, 0), 1.0f);
  }
}

TEST(SparseBytes, CsrRejectsMoreThan2To32Columns) {
  // Only the extents are inspected before the check: the view is never read.
  const float dummy = 0.0f;
  const tensor_view<const float, 2> w(&dummy, index_t{0}, (index_t{1} << 32) + 1);
  EXPECT_THROW(static_cast<void>(csr_matrix<float>::from_dense(w)), shape_error);
}

TEST(SparseBytes, BitmaskHandCounted) {
  const auto w = small_matrix();
  const auto f = bitmask_matrix<float>::from_dense(w);
  // ceil(15 / 8) = 2 mask bytes + 4 values
  EXPECT_EQ(f.breakdown(), (byte_breakdown{.values = 16, .mask = 2}));
  EXPECT_EQ(bitmask_matrix<half>::from_dense(w).bytes(), 2 + 8);
  EXPECT_EQ(bitmask_matrix<std::int8_t>::from_dense(w).bytes(), 2 + 4 + 12);
  // Kept bits i = r * 5 + c: 0, 3, 9, 11 -> byte 0 = 0b00001001, byte 1 = 0b00001010.
  EXPECT_EQ(std::vector<int>(f.mask_bytes().begin(), f.mask_bytes().end()),
            (std::vector<int>{9, 10}));
  EXPECT_TRUE(f.is_stored(1, 4));
  EXPECT_FALSE(f.is_stored(1, 3));
  EXPECT_EQ(std::vector<float>(f.values().begin(), f.values().end()),
            (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
  // Rows are not padded to bytes: 3x3 has 9 bits -> 2 bytes, not 3.
  EXPECT_EQ(bitmask_matrix<float>::from_dense(tensor<float, 2>(3, 3)).breakdown().mask, 2);
}

TEST(SparseBytes, PackedTwoFourHandCounted) {
  const auto w = small_matrix();
  const auto f = packed_nm_matrix<float>::from_dense(w, 2, 4);
  // 3 rows * 2 groups (4 + a partial 1) * 2 slots = 12 slots; 12 * 2 bits = 3 bytes; header 2
  EXPECT_EQ(f.slot_count(), 12);
  EXPECT_EQ(f.breakdown(), (byte_breakdown{.header = 2, .values = 48, .indices = 3}));
  EXPECT_EQ(f.nnz(), 4);
  EXPECT_EQ(packed_nm_matrix<half>::from_dense(w, 2, 4).bytes(), 2 + 24 + 3);
  EXPECT_EQ(packed_nm_matrix<std::int8_t>::from_dense(w, 2, 4).bytes(), 2 + 12 + 12 + 3);
  // Slot positions: kept entries plus the lowest free positions as padding, ascending:
  // r0 [0 3] [0 1] | r1 [0 1] [0 1] | r2 [0 1] [0 1]; four 2-bit fields per byte, LSB first.
  std::vector<int> pos;
  for (std::size_t s = 0; s < 12; ++s) pos.push_back(f.slot_position(s));
  EXPECT_EQ(pos, (std::vector<int>{0, 3, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(std::vector<int>(f.position_bytes().begin(), f.position_bytes().end()),
            (std::vector<int>{0 | 3 << 2 | 0 << 4 | 1 << 6, 0 | 1 << 2 | 0 << 4 | 1 << 6,
                              0 | 1 << 2 | 0 << 4 | 1 << 6}));
  EXPECT_EQ(std::vector<float>(f.values().begin(), f.values().end()),
            (std::vector<float>{1.0f, -2.0f, 0, 0, 0, 0, 0.5f, 0, 0, 3.0f, 0, 0}));

  // 1x8 [0 a 0 b | c 0 d 0]: positions 1, 3, 0, 2 -> one byte 0b10001101.
  const auto g = packed_nm_matrix<float>::from_dense(
      make(1, 8, {0.0f, 1.0f, 0.0f, 2.0f, 3.0f, 0.0f, 4.0f, 0.0f}), 2, 4);
  EXPECT_EQ(std::vector<int>(g.position_bytes().begin(), g.position_bytes().end()),
            (std::vector<int>{0x8D}));
}

TEST(SparseBytes, PackedThreeEightStraddlesBytes) {
  // Row 0 keeps {1, 4, 7}, row 1 keeps {2} (+ padding 0, 1): positions 1 4 7 0 1 2 at
  // 3 bits each -> bits 0, 5, 6, 7, 8, 12, 16 set -> bytes 0xE1, 0x11, 0x01.
  const auto w = make(2, 8, {0.0f, 1.0f, 0.0f, 0.0f, 2.0f, 0.0f, 0.0f, 3.0f,  //
                             0.0f, 0.0f, 4.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f});
  const auto f = packed_nm_matrix<float>::from_dense(w, 3, 8);
  EXPECT_EQ(f.index_bits(), 3);
  EXPECT_EQ(std::vector<int>(f.position_bytes().begin(), f.position_bytes().end()),
            (std::vector<int>{0xE1, 0x11, 0x01}));
  EXPECT_EQ(f.bytes(), 2 + 6 * 4 + 3);
  expect_same_bits(std::vector<float>(w.span().begin(), w.span().end()), dense_of(f));
}

TEST(SparseBytes, FormulasMatchTheObjects) {
  // The public formulas are what bytes() returns, for every format and value type.
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(17, 31, 2, 4, 0.6, 7);
  index_t nnz = 0;
  for (float v : w.span()) nnz += v != 0.0f ? 1 : 0;
  EXPECT_EQ(csr_matrix<half>::from_dense(w).breakdown(),
            prune::csr_bytes(value_kind::fp16, 17, 31, nnz));
  EXPECT_EQ(bitmask_matrix<std::int8_t>::from_dense(w).breakdown(),
            prune::bitmask_bytes(value_kind::int8, 17, 31, nnz));
  EXPECT_EQ(packed_nm_matrix<float>::from_dense(w, 2, 4).breakdown(),
            prune::packed_nm_bytes(value_kind::fp32, 17, 31, 2, 4));
  // 17 * 8 groups * 2 slots = 272 slots
  EXPECT_EQ(prune::packed_nm_bytes(value_kind::fp16, 17, 31, 2, 4).total(), 2 + 544 + 68);
  EXPECT_EQ(prune::dense_bytes(value_kind::int8, 17, 31).total(), 17 * 31 + 17 * 4);
}

// ---------------------------------------------------------------------------
// Packed N:M: patterns, partial groups, violations
// ---------------------------------------------------------------------------

TEST(PackedNm, EveryPatternRoundTrips) {
  SCOPED_TRACE(qprune::test::seed_trace());
  std::uint64_t salt = 500;
  for (int m = 2; m <= 16; ++m) {
    for (int n = 1; n < m; ++n) {
      for (const index_t cols : {index_t{1}, index_t{m - 1}, index_t{m}, index_t{3 * m + 1}}) {
        SCOPED_TRACE(std::to_string(n) + ":" + std::to_string(m) + " cols " +
                     std::to_string(cols));
        const auto w = random_weights(3, cols, n, m, 0.8, ++salt);
        const auto f = packed_nm_matrix<float>::from_dense(w, n, m);
        const auto h = packed_nm_matrix<half>::from_dense(w, n, m);
        const auto q = packed_nm_matrix<std::int8_t>::from_dense(w, n, m);
        expect_same_bits(expect<float>(w).deq, dense_of(f));
        expect_same_bits(expect<half>(w).deq, dense_of(h));
        expect_same_bits(expect<std::int8_t>(w).deq, dense_of(q));
        EXPECT_EQ(f.slot_count(), 3 * ((cols + m - 1) / m) * n);
        EXPECT_EQ(f.bytes(), 2 + f.slot_count() * 4 +
                                 (f.slot_count() * prune::packed_nm_index_bits(m) + 7) / 8);
        // Within a group the positions are distinct and ascending.
        for (index_t gs = 0; gs < f.slot_count(); gs += n) {
          for (int i = 1; i < n; ++i) {
            ASSERT_LT(f.slot_position(static_cast<std::size_t>(gs + i - 1)),
                      f.slot_position(static_cast<std::size_t>(gs + i)));
          }
        }
      }
    }
  }
}

TEST(PackedNm, RowShorterThanTheGroup) {
  // 2x1 with 2:4: one partial group of width 1; the second slot points past the row.
  const auto w = make(2, 1, {5.0f, 0.0f});
  const auto f = packed_nm_matrix<float>::from_dense(w, 2, 4);
  EXPECT_EQ(f.slot_count(), 4);
  EXPECT_EQ(f.slot_position(0), 0);
  EXPECT_EQ(f.slot_position(1), 1);  // padding at column 1, outside the 1-column row
  EXPECT_EQ(f.nnz(), 1);
  expect_same_bits({5.0f, 0.0f}, dense_of(f));
  std::vector<float> y(2);
  ASSERT_TRUE(ref::spmv(f, std::vector<float>{2.0f}, y));
  EXPECT_EQ(y[0], 10.0f);
  EXPECT_EQ(y[1], 0.0f);
  // 3 columns with 3:8.
  const auto g = packed_nm_matrix<half>::from_dense(make(1, 3, {1.0f, 2.0f, 3.0f}), 3, 8);
  EXPECT_EQ(g.bytes(), 2 + 3 * 2 + 2);  // 3 slots, 9 bits -> 2 bytes
  expect_same_bits({1.0f, 2.0f, 3.0f}, dense_of(g));
}

TEST(PackedNm, ViolationNamesRowAndGroup) {
  const auto w = make(2, 8, {1.0f, 0.0f, 2.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,  //
                             1.0f, 2.0f, 0.0f, 3.0f, 0.0f, 0.0f, 0.0f, 1.0f});
  try {
    static_cast<void>(packed_nm_matrix<float>::from_dense(w, 2, 4));
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(),
                 "[qprune.config] row 1 group 0 has 3 nonzeros (expected at most 2 for 2:4)");
  }
  // int8 reports the pattern too (before looking at scales).
  EXPECT_THROW(static_cast<void>(packed_nm_matrix<std::int8_t>::from_dense(w, 2, 4)),
               config_error);
  // All-dense never fits.
  try {
    static_cast<void>(packed_nm_matrix<half>::from_dense(tensor<float, 2>(qprune::extents<2>(1, 5), 1.0f), 4, 5));
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(),
                 "[qprune.config] row 0 group 0 has 5 nonzeros (expected at most 4 for 4:5)");
  }
  // With a mask, the mask's ones are counted.
  tensor<std::uint8_t, 2> mask(2, 8);
  mask(0, 4) = mask(0, 5) = mask(0, 6) = 1;
  try {
    static_cast<void>(packed_nm_matrix<float>::from_dense(w, mask, 2, 4));
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(),
                 "[qprune.config] row 0 group 1 has 3 kept entries (expected at most 2 for 2:4)");
  }
}

TEST(PackedNm, UnsupportedPatterns) {
  const tensor<float, 2> w(2, 8);
  for (const auto& [n, m] : std::vector<std::pair<int, int>>{
           {0, 4}, {4, 4}, {5, 4}, {1, 1}, {2, 17}, {-1, 4}, {16, 16}}) {
    EXPECT_THROW(static_cast<void>(packed_nm_matrix<float>::from_dense(w, n, m)), config_error)
        << n << ":" << m;
  }
  try {
    static_cast<void>(packed_nm_matrix<float>::from_dense(w, 4, 4));
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(),
                 "[qprune.config] N:M pattern 4:4 is not supported (expected 1 <= N < M <= 16)");
  }
  EXPECT_NO_THROW(static_cast<void>(packed_nm_matrix<float>::from_dense(w, 15, 16)));
  EXPECT_NO_THROW(static_cast<void>(packed_nm_matrix<float>::from_dense(w, 1, 2)));
}

// ---------------------------------------------------------------------------
// Value types: hand-computed int8 and fp16 cases
// ---------------------------------------------------------------------------

TEST(SparseInt8, HalfToEvenCodesAndExplicitZeros) {
  // Row 0: max 127 -> s = 1: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2, 0.4 -> 0 (kept, code 0).
  // Row 1: max 63.5 -> s = 0.5: 0.75 -> 1.5 -> 2, 1.25 -> 2.5 -> 2, -0.25 -> -0.5 -> 0.
  const auto w = make(2, 6, {127.0f, 2.5f, 3.5f, -2.5f, 0.4f, -127.0f,  //
                             63.5f, 0.75f, 1.25f, -0.25f, 0.0f, 0.0f});
  const auto q = csr_matrix<std::int8_t>::from_dense(w);
  EXPECT_EQ(q.nnz(), 10);  // the code-0 entries are still stored
  EXPECT_EQ(q.row_scale(0), 1.0f);
  EXPECT_EQ(q.row_scale(1), 0.5f);
  EXPECT_EQ(std::vector<int>(q.values().begin(), q.values().end()),
            (std::vector<int>{127, 2, 4, -2, 0, -127, 127, 2, 2, 0}));
  expect_same_bits({127.0f, 2.0f, 4.0f, -2.0f, 0.0f, -127.0f,  //
                    63.5f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f},
                   dense_of(q));
  const auto b = bitmask_matrix<std::int8_t>::from_dense(w);
  EXPECT_EQ(b.nnz(), 10);
  expect_same_bits({127.0f, 2.0f, 4.0f, -2.0f, 0.0f, -127.0f,  //
                    63.5f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f},
                   dense_of(b));
  // A kept code 0 is skipped by the kernels: x there may be anything.
  std::vector<float> y(2);
  ASSERT_TRUE(ref::spmv(q, std::vector<float>{0, 0, 0, 0, kNaN, 0}, y));
  EXPECT_EQ(y[0], 0.0f);
}

TEST(SparseInt8, TinyRowScaleNeverUnderflowsToZero) {
  // max |w| = 50 * 2^-149: max / 127 rounds to 0, so the scale is 2^-149 and the codes
  // are the subnormals' integer multiples, exactly.
  const float d = std::numeric_limits<float>::denorm_min();
  const auto w = make(1, 3, {50.0f * d, -7.0f * d, 0.0f});
  const auto q = bitmask_matrix<std::int8_t>::from_dense(w);
  EXPECT_EQ(q.row_scale(0), d);
  EXPECT_EQ(std::vector<int>(q.values().begin(), q.values().end()), (std::vector<int>{50, -7}));
  expect_same_bits({50.0f * d, -7.0f * d, 0.0f}, dense_of(q));
}

TEST(SparseHalf, RoundsToNearestEvenAndKeepsSignedZero) {
  // 1 + 2^-11 ties between 1 and 1 + 2^-10 -> 1 (even); 1 + 3*2^-11 -> 1 + 2^-9;
  // 2^-26 underflows to half +0 but stays a stored entry; 70000 -> +inf.
  const auto w = make(1, 4, {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 0x1p-26f, 70000.0f});
  const auto h = csr_matrix<half>::from_dense(w);
  EXPECT_EQ(h.nnz(), 4);
  expect_same_bits({1.0f, 1.0f + 0x1p-9f, 0.0f, kInf}, dense_of(h));
  // -2^-26 becomes half -0: kept, and read back as -0.0f.
  const auto n = bitmask_matrix<half>::from_dense(make(1, 2, {-0x1p-26f, 1.0f}));
  EXPECT_EQ(bits(dense_of(n)(0, 0)), bits(-0.0f));
}

TEST(SparseFloat, NegativeZeroIsPrunedUnlessTheMaskKeepsIt) {
  const auto w = make(1, 3, {-0.0f, 1.0f, -0.0f});
  const auto a = csr_matrix<float>::from_dense(w);
  EXPECT_EQ(a.nnz(), 1);
  expect_same_bits({0.0f, 1.0f, 0.0f}, dense_of(a));
  const tensor<std::uint8_t, 2> keep(qprune::extents<2>(1, 3), {1, 1, 0});
  const auto b = csr_matrix<float>::from_dense(w, keep);
  EXPECT_EQ(b.nnz(), 2);
  expect_same_bits({-0.0f, 1.0f, 0.0f}, dense_of(b));
}

// ---------------------------------------------------------------------------
// Kernels: hand-computed results and the formats' agreement
// ---------------------------------------------------------------------------

TEST(SparseKernels, HandComputed) {
  const auto w = make(3, 3, {1.0f, 0.0f, 2.0f,  //
                             0.0f, 0.0f, 0.0f,  //
                             0.0f, -3.0f, 0.0f});
  const std::vector<float> x{1.0f, 2.0f, 3.0f}, b{0.5f, 0.25f, -1.0f};
  std::vector<float> y(3);
  ASSERT_TRUE(ref::spmv(csr_matrix<float>::from_dense(w), x, y, b));
  EXPECT_EQ(y, (std::vector<float>{7.5f, 0.25f, -7.0f}));
  ASSERT_TRUE(ref::spmv(bitmask_matrix<half>::from_dense(w), x, y, b));
  EXPECT_EQ(y, (std::vector<float>{7.5f, 0.25f, -7.0f}));
  ASSERT_TRUE(ref::spmv(packed_nm_matrix<std::int8_t>::from_dense(w, 2, 4), x, y, b));
  // int8: s = (2/127, 1, 3/127); row 0 codes 64 (63.5 -> even), 127: acc = 64 + 381 = 445.
  EXPECT_EQ(bits(y[0]), bits(static_cast<float>(static_cast<double>(2.0f / 127.0f) * 445 + 0.5)));
  EXPECT_EQ(y[1], 0.25f);
  EXPECT_EQ(y[2], -7.0f);  // 3/127 * (-127 * 2) - 1 = -6 - 1 within one rounding: exact here
  // SpMM: bias broadcast over the columns of X.
  const tensor<float, 2> xm(qprune::extents<2>(3, 2), {1.0f, 0.0f, 2.0f, 1.0f, 3.0f, 0.0f});
  tensor<float, 2> ym(3, 2);
  ASSERT_TRUE(ref::spmm(csr_matrix<float>::from_dense(w), xm, ym, b));
  EXPECT_EQ(std::vector<float>(ym.span().begin(), ym.span().end()),
            (std::vector<float>{7.5f, 0.5f, 0.25f, 0.25f, -7.0f, -4.0f}));
}

TEST(SparseKernels, PaddingAndPrunedEntriesNeverTouchX) {
  // 2:4 row [0 0 5 0]: a padding slot sits at column 0 where x is +inf.
  const auto w = make(1, 4, {0.0f, 0.0f, 5.0f, 0.0f});
  const std::vector<float> x{kInf, kNaN, 2.0f, -kInf};
  std::vector<float> y(1);
  ASSERT_TRUE(ref::spmv(packed_nm_matrix<float>::from_dense(w, 2, 4), x, y));
  EXPECT_EQ(y[0], 10.0f);
  ASSERT_TRUE(ref::spmv(csr_matrix<float>::from_dense(w), x, y));
  EXPECT_EQ(y[0], 10.0f);
  ASSERT_TRUE(ref::spmv(bitmask_matrix<std::int8_t>::from_dense(w), x, y));
  EXPECT_EQ(y[0], 10.0f);
}

TEST(SparseKernels, FormatsAreBitIdenticalForTheSameValues) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(37, 53, 2, 4, 0.9, 4242);
  auto rng = qprune::test::make_rng(4243);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> x(53), b(37);
  for (float& v : x) v = nd(rng);
  for (float& v : b) v = nd(rng);
  auto run = [&](const auto& s) {
    std::vector<float> y(37);
    EXPECT_TRUE(ref::spmv(s, x, y, b));
    std::vector<std::uint32_t> out;
    for (float v : y) out.push_back(bits(v));
    return out;
  };
  EXPECT_EQ(run(csr_matrix<half>::from_dense(w)), run(bitmask_matrix<half>::from_dense(w)));
  EXPECT_EQ(run(csr_matrix<half>::from_dense(w)), run(packed_nm_matrix<half>::from_dense(w, 2, 4)));
  EXPECT_EQ(run(csr_matrix<std::int8_t>::from_dense(w)),
            run(packed_nm_matrix<std::int8_t>::from_dense(w, 2, 4)));
  EXPECT_EQ(run(bitmask_matrix<float>::from_dense(w)),
            run(packed_nm_matrix<float>::from_dense(w, 2, 4)));
}

}  // namespace

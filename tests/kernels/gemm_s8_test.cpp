// The int8 GEMM on every instruction set this CPU supports, against the scalar
// reference twin, bit for bit: random and edge shapes, extreme values
// (-128/127 weights, 0/255 activations, worst-case accumulation), u8 and s8
// activations, int32 and float output stages.
#include "qprune/kernels/gemm_s8.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "support/random.hpp"

namespace {

using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;

enum class fill { random, extreme_max, extreme_min, alternating };

template <class T>
tensor<T, 2> make(index_t r, index_t c, fill f, std::mt19937_64& rng) {
  tensor<T, 2> t(r, c);
  std::uniform_int_distribution<int> d(std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
  for (index_t i = 0; i < r; ++i) {
    for (index_t j = 0; j < c; ++j) {
      T v{};
      switch (f) {
        case fill::random: v = static_cast<T>(d(rng)); break;
        case fill::extreme_max: v = std::numeric_limits<T>::max(); break;
        case fill::extreme_min: v = std::numeric_limits<T>::min(); break;
        case fill::alternating:
          v = ((i + j) % 2) != 0 ? std::numeric_limits<T>::min() : std::numeric_limits<T>::max();
          break;
      }
      t(i, j) = v;
    }
  }
  return t;
}

template <class Ta>
void check_shape(isa path, index_t m, index_t n, index_t k, fill fa, fill fw, std::int32_t zp,
                 std::uint64_t salt) {
  SCOPED_TRACE("isa=" + std::string(qprune::kernels::to_string(path)) + " M=" + std::to_string(m) +
               " N=" + std::to_string(n) + " K=" + std::to_string(k) + " zp=" + std::to_string(zp) +
               " " + qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(salt);
  const auto a = make<Ta>(m, k, fa, rng);
  const auto w = make<std::int8_t>(n, k, fw, rng);
  const auto packed = qprune::kernels::pack_s8(w.cview(), path);

  tensor<std::int32_t, 2> got(m, n), want(m, n);
  qprune::kernels::gemm_s8<Ta>(a.cview(), zp, packed, got.view());
  qprune::kernels::reference::gemm_s8(m, n, k, a.data(), k, zp, w.data(), k, want.data(), n,
                                      qprune::kernels::store_int32{});
  ASSERT_TRUE(got == want);

  std::vector<float> scale(static_cast<std::size_t>(n)), bias(static_cast<std::size_t>(n));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& s : scale) s = std::abs(u(rng)) * 1e-3f + 1e-6f;
  for (auto& b : bias) b = u(rng);
  for (bool relu : {false, true}) {
    const qprune::kernels::store_float st{scale.data(), bias.data(), relu};
    tensor<float, 2> yg(m, n), yw(m, n);
    qprune::kernels::gemm_s8<Ta>(a.cview(), zp, packed, yg.view(), st);
    qprune::kernels::reference::gemm_s8(m, n, k, a.data(), k, zp, w.data(), k, yw.data(), n, st);
    for (index_t i = 0; i < m * n; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(yg.data()[i]), std::bit_cast<std::uint32_t>(yw.data()[i]))
          << "float stage differs at " << i << " relu=" << relu;
    }
  }
}

template <class T>
void check_requant(isa path, index_t m, index_t n, index_t k, qprune::quant::fused_activation act,
                   float s_out, std::uint64_t salt) {
  SCOPED_TRACE("requant isa=" + std::string(qprune::kernels::to_string(path)) + " M=" +
               std::to_string(m) + " N=" + std::to_string(n) + " K=" + std::to_string(k) + " " +
               qprune::test::seed_trace());
  namespace quant = qprune::quant;
  auto rng = qprune::test::make_rng(salt);
  const auto a = make<std::uint8_t>(m, k, fill::random, rng);
  const auto w = make<std::int8_t>(n, k, fill::random, rng);
  std::uniform_real_distribution<float> u(0.5f, 2.0f);
  std::vector<float> s_w(static_cast<std::size_t>(n));
  for (auto& v : s_w) v = u(rng) * 1e-3f;
  std::vector<std::int32_t> bias(static_cast<std::size_t>(n));
  std::uniform_int_distribution<std::int32_t> bd(-20000, 20000);
  for (auto& v : bias) v = bd(rng);
  const quant::qrange range = quant::full_range(std::is_signed_v<T> ? quant::dtype::int8 : quant::dtype::uint8);
  const quant::affine_params out{s_out, std::is_signed_v<T> ? -5 : 120};
  const auto params = quant::make_requant_params(0.02f, s_w, out, range, act);
  const qprune::kernels::requant_stage<T> stage(params, bias, n);
  const auto packed = qprune::kernels::pack_s8(w.cview(), path);
  tensor<T, 2> got(m, n), want(m, n);
  qprune::kernels::gemm_s8<std::uint8_t, T>(a.cview(), 131, packed, got.view(), stage);
  tensor<std::int32_t, 2> acc(m, n);
  qprune::kernels::reference::gemm_s8(m, n, k, a.data(), k, 131, w.data(), k, acc.data(), n,
                                      qprune::kernels::store_int32{});
  quant::requantize<T>(acc.cview(), bias, params, want.view());
  ASSERT_TRUE(got == want);
}

class GemmS8 : public ::testing::TestWithParam<isa> {};

TEST_P(GemmS8, RequantizingStageMatchesScalarRequantize) {
  using qprune::quant::fused_activation;
  std::uint64_t salt = 900;
  for (auto act : {fused_activation::none, fused_activation::relu, fused_activation::relu6}) {
    for (float s_out : {0.05f, 0.4f, 3e-5f}) {  // 3e-5: multipliers > 1, left shifts
      check_requant<std::int8_t>(GetParam(), 7, 53, 130, act, s_out, ++salt);
      check_requant<std::uint8_t>(GetParam(), 17, 16, 33, act, s_out, ++salt);
      check_requant<std::int8_t>(GetParam(), 64, 100, 300, act, s_out, ++salt);
    }
  }
  // K = 96 (24 groups of 4): an 8 x 3-panel tile's 24 deferred vectors are
  // requantized exactly within the next tile's K loop.
  check_requant<std::uint8_t>(GetParam(), 41, 257, 96, fused_activation::relu, 0.05f, ++salt);
  // Rows split over two threads, each requantizing its own tiles.
  qprune::kernels::set_num_threads(2);
  check_requant<std::int8_t>(GetParam(), 789, 64, 288, fused_activation::none, 0.4f, ++salt);
  check_requant<std::uint8_t>(GetParam(), 64, 1024, 256, fused_activation::relu6, 0.05f, ++salt);
  qprune::kernels::set_num_threads(1);
}

/// The requantizing stage over the whole parameter space it accepts, not only
/// what make_requant_params produces: multipliers 0 .. 2^31 - 1, every shift
/// in [-31, 30] (left shifts that wrap, right shifts of 31), biases that make
/// the int32 sum wrap, ties, any output zero point and clamp range.
template <class T>
void check_requant_extremes(isa path, index_t m, index_t n, index_t k, std::uint64_t salt) {
  SCOPED_TRACE("requant extremes isa=" + std::string(qprune::kernels::to_string(path)) + " M=" +
               std::to_string(m) + " N=" + std::to_string(n) + " " + qprune::test::seed_trace());
  namespace quant = qprune::quant;
  constexpr std::int32_t tmin = std::numeric_limits<T>::min(), tmax = std::numeric_limits<T>::max();
  auto rng = qprune::test::make_rng(salt);
  const auto a = make<std::uint8_t>(m, k, fill::random, rng);
  const auto w = make<std::int8_t>(n, k, fill::random, rng);
  std::uniform_int_distribution<std::int32_t> any(std::numeric_limits<std::int32_t>::min(),
                                                  std::numeric_limits<std::int32_t>::max());
  std::uniform_int_distribution<std::int32_t> mult(0, std::numeric_limits<std::int32_t>::max());
  std::uniform_int_distribution<int> shift(-31, 30);
  quant::requant_params p;
  std::vector<std::int32_t> bias(static_cast<std::size_t>(n));
  const std::int32_t special_mult[] = {0, 1, 1 << 30, std::numeric_limits<std::int32_t>::max()};
  const int special_shift[] = {-31, -30, -1, 0, 1, 30};
  for (index_t j = 0; j < n; ++j) {
    const auto u = static_cast<std::size_t>(j);
    p.multipliers.push_back(u < 4 ? special_mult[u] : mult(rng));
    p.shifts.push_back(u < 6 ? special_shift[u] : shift(rng));
    // Sums near the int32 limits, around zero, and anywhere.
    bias[u] = j % 3 == 0 ? any(rng) : j % 3 == 1 ? std::numeric_limits<std::int32_t>::max() - static_cast<std::int32_t>(j)
                                                 : static_cast<std::int32_t>(j) - 64;
  }
  std::uniform_int_distribution<std::int32_t> code(tmin, tmax);
  const std::int32_t c1 = code(rng), c2 = code(rng);
  p.out_zero_point = code(rng);
  p.act_min = salt % 2 == 0 ? tmin : std::min(c1, c2);
  p.act_max = salt % 2 == 0 ? tmax : std::max(c1, c2);
  const qprune::kernels::requant_stage<T> stage(p, bias, n);
  const auto packed = qprune::kernels::pack_s8(w.cview(), path);
  tensor<T, 2> got(m, n), want(m, n);
  qprune::kernels::gemm_s8<std::uint8_t, T>(a.cview(), 7, packed, got.view(), stage);
  tensor<std::int32_t, 2> acc(m, n);
  qprune::kernels::reference::gemm_s8(m, n, k, a.data(), k, 7, w.data(), k, acc.data(), n,
                                      qprune::kernels::store_int32{});
  quant::requantize<T>(acc.cview(), bias, p, want.view());
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j)
      ASSERT_EQ(static_cast<int>(got(i, j)), static_cast<int>(want(i, j)))
          << "row " << i << " channel " << j << " M0=" << p.multipliers[static_cast<std::size_t>(j)]
          << " shift=" << p.shifts[static_cast<std::size_t>(j)] << " acc=" << acc(i, j)
          << " bias=" << bias[static_cast<std::size_t>(j)];
}

TEST_P(GemmS8, RequantizingStageMatchesScalarOverExtremeParameters) {
  std::uint64_t salt = 950;
  for (index_t n : {1, 7, 8, 9, 37, 64, 131}) {
    check_requant_extremes<std::int8_t>(GetParam(), 11, n, 19, ++salt);
    check_requant_extremes<std::int8_t>(GetParam(), 5, n, 64, ++salt);
    check_requant_extremes<std::uint8_t>(GetParam(), 11, n, 19, ++salt);
    check_requant_extremes<std::uint8_t>(GetParam(), 3, n, 33, ++salt);
  }
}

TEST_P(GemmS8, EdgeAndPrimeShapesU8) {
  std::uint64_t salt = 100;
  for (index_t m : {1, 2, 3, 7, 8, 9, 15, 16, 17})
    for (index_t n : {1, 15, 16, 17, 31, 48, 49, 97})
      for (index_t k : {1, 3, 4, 5, 15, 16, 17, 64, 127})
        check_shape<std::uint8_t>(GetParam(), m, n, k, fill::random, fill::random, 3 + static_cast<int>(k % 200), ++salt);
}

TEST_P(GemmS8, EdgeAndPrimeShapesS8) {
  std::uint64_t salt = 200;
  for (index_t m : {1, 5, 13})
    for (index_t n : {1, 17, 53})
      for (index_t k : {1, 6, 37, 256})
        check_shape<std::int8_t>(GetParam(), m, n, k, fill::random, fill::random, -17, ++salt);
}

TEST_P(GemmS8, EmptyShapes) {
  for (auto [m, n, k] : {std::tuple<index_t, index_t, index_t>{0, 5, 7}, {4, 0, 7}, {4, 5, 0}, {0, 0, 0}})
    check_shape<std::uint8_t>(GetParam(), m, n, k, fill::random, fill::random, 0, 7);
}

TEST_P(GemmS8, WorstCaseAccumulation) {
  // |a - zp| = 255 and |w| = 128 everywhere, K at the guaranteed bound: the
  // result is -2^31 + 2^31 - 1 - ... close to the int32 limits.
  const index_t k = qprune::kernels::max_gemm_s8_k;
  check_shape<std::uint8_t>(GetParam(), 2, 17, k, fill::extreme_max, fill::extreme_min, 0, 1);
  check_shape<std::uint8_t>(GetParam(), 3, 5, k, fill::extreme_min, fill::extreme_min, 255, 2);
  check_shape<std::int8_t>(GetParam(), 1, 33, 4099, fill::alternating, fill::alternating, 127, 3);
  check_shape<std::uint8_t>(GetParam(), 9, 19, 1001, fill::extreme_max, fill::extreme_max, 255, 4);
}

TEST_P(GemmS8, LargerThanCache) {
  check_shape<std::uint8_t>(GetParam(), 97, 1031, 1024 + 3, fill::random, fill::random, 128, 5);
  // More activations than the AVX2 path keeps in its per-thread buffer (4 MiB
  // of int16): they get a buffer of their own.
  check_shape<std::uint8_t>(GetParam(), 2100, 3, 1001, fill::random, fill::random, 17, 12);
}

TEST_P(GemmS8, TwoThreadsGiveIdenticalResults) {
  qprune::kernels::set_num_threads(2);
  check_shape<std::uint8_t>(GetParam(), 64, 1024, 256, fill::random, fill::random, 77, 6);
  check_shape<std::int8_t>(GetParam(), 33, 257, 300, fill::random, fill::random, -3, 7);
  check_shape<std::uint8_t>(GetParam(), 1, 1000, 2048, fill::random, fill::random, 5, 8);
  // Few output channels: the rows are split instead (784 x 64 is a 3x3 conv).
  check_shape<std::uint8_t>(GetParam(), 789, 64, 288, fill::random, fill::random, 9, 9);
  // Six channel blocks of uneven width: rows balance better and are chosen.
  check_shape<std::uint8_t>(GetParam(), 256, 256, 256, fill::random, fill::random, 11, 11);
  qprune::kernels::set_num_threads(3);
  check_shape<std::uint8_t>(GetParam(), 203, 40, 301, fill::random, fill::random, 1, 10);
  qprune::kernels::set_num_threads(1);
}

INSTANTIATE_TEST_SUITE_P(AllSupported, GemmS8, ::testing::ValuesIn(qprune::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<isa>& p) {
                           return std::string(qprune::kernels::to_string(p.param));
                         });

TEST(ParallelFor, CoversEveryItemOnceForAnyThreadCount) {
  for (int threads : {1, 2, 3, 7}) {
    qprune::kernels::set_num_threads(threads);
    for (index_t items : {0, 1, 2, 5, 64, 1000}) {
      std::vector<int> hits(static_cast<std::size_t>(items), 0);
      qprune::kernels::parallel_for(items, [&](index_t b, index_t e) {
        for (index_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
      });
      for (int h : hits) ASSERT_EQ(h, 1) << "threads=" << threads << " items=" << items;
    }
  }
  // Back-to-back regions, as a layer stack issues them: workers that are still
  // polling from the previous region must pick up the next one exactly once.
  qprune::kernels::set_num_threads(2);
  std::vector<int> hits(64, 0);
  for (int round = 0; round < 2000; ++round) {
    qprune::kernels::parallel_for(64, [&](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
    });
  }
  for (int h : hits) ASSERT_EQ(h, 2000);
  qprune::kernels::set_num_threads(1);
  EXPECT_THROW(qprune::kernels::set_num_threads(0), qprune::config_error);
}

TEST(GemmS8Api, RejectsBadArguments) {
  tensor<std::int8_t, 2> w(4, 8);
  const auto packed = qprune::kernels::pack_s8(w.cview());
  tensor<std::uint8_t, 2> a(3, 8), a_bad(3, 7);
  tensor<std::int32_t, 2> c(3, 4), c_bad(3, 5);
  EXPECT_THROW(qprune::kernels::gemm_s8<std::uint8_t>(a_bad.cview(), 0, packed, c.view()), qprune::shape_error);
  EXPECT_THROW(qprune::kernels::gemm_s8<std::uint8_t>(a.cview(), 0, packed, c_bad.view()), qprune::shape_error);
  EXPECT_THROW(qprune::kernels::gemm_s8<std::uint8_t>(a.cview(), 256, packed, c.view()), qprune::config_error);
  tensor<std::int8_t, 2> a8(3, 8);
  EXPECT_THROW(qprune::kernels::gemm_s8<std::int8_t>(a8.cview(), 128, packed, c.view()), qprune::config_error);
  tensor<std::int8_t, 2> too_long(1, qprune::kernels::max_gemm_s8_k + 1);
  EXPECT_THROW((void)qprune::kernels::pack_s8(too_long.cview()), qprune::config_error);
  tensor<float, 2> y(3, 4);
  EXPECT_THROW(qprune::kernels::gemm_s8<std::uint8_t>(a.cview(), 0, packed, y.view(), {}), qprune::config_error);
}

}  // namespace

// kernels/quantize.hpp: every instruction set this CPU has against the scalar
// twin (range and codes), on edge values (ties at .5, +-0, denormals, inf, NaN,
// saturation), every length 0..70 and unaligned starts; the twin itself against
// hand-computed codes; errors at the boundary.
#include "qprune/kernels/quantize.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/random.hpp"

namespace {

namespace k = qprune::kernels;
using k::isa;
using k::linear_quantizer;
using k::quantize_op;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kDenorm = std::numeric_limits<float>::denorm_min();

std::vector<float> edge_values(std::mt19937_64& rng, std::size_t n, bool finite) {
  const float specials[] = {0.0f, -0.0f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 127.5f, -128.5f, 255.5f,
                            kDenorm, -kDenorm, 1e30f, -1e30f, 3.4e38f, kInf, -kInf, kNaN};
  std::normal_distribution<float> nd(0.0f, 40.0f);
  std::uniform_int_distribution<int> pick(0, 3);
  std::uniform_int_distribution<std::size_t> sp(0, finite ? 14 : 17);
  std::vector<float> v(n);
  for (auto& x : v) x = pick(rng) == 0 ? specials[sp(rng)] : nd(rng);
  return v;
}

template <class T>
void check_codes_match(const linear_quantizer& q, std::mt19937_64& rng) {
  for (std::size_t n = 0; n <= 70; ++n) {
    for (std::size_t offset : {std::size_t{0}, std::size_t{3}}) {
      const auto x = edge_values(rng, n + offset, false);
      const std::span<const float> in(x.data() + offset, n);
      std::vector<T> want(n + 1, T{7}), got(n + 1, T{7});
      k::quantize_linear(in, q, std::span<T>(want.data(), n), isa::scalar);
      for (const isa path : k::supported_isas()) {
        std::fill(got.begin(), got.end(), T{7});
        k::quantize_linear(in, q, std::span<T>(got.data(), n), path);
        ASSERT_EQ(got, want) << k::to_string(path) << " n=" << n << " offset=" << offset;
      }
    }
  }
}

TEST(QuantizeLinear, EveryPathMatchesTheTwin) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(41);
  for (const auto op : {quantize_op::divide, quantize_op::multiply, quantize_op::multiply_add}) {
    for (const float f : {0.37f, 1.0f, 1e-20f, 3.0f}) {
      SCOPED_TRACE("op=" + std::to_string(static_cast<int>(op)) + " f=" + std::to_string(f));
      check_codes_match<std::uint8_t>({f, 128, 0, 255, op}, rng);
      check_codes_match<std::uint8_t>({f, 0, 0, 127, op}, rng);
      check_codes_match<std::uint8_t>({f, 255, 0, 255, op}, rng);
      check_codes_match<std::int8_t>({f, 0, -128, 127, op}, rng);
      check_codes_match<std::int8_t>({f, -5, -127, 127, op}, rng);
    }
  }
}

TEST(QuantizeLinear, TwinByHand) {
  const std::vector<float> x{0.5f, 1.5f, 2.5f, -0.5f, -0.0f, 1000.0f, -1000.0f, kNaN, kInf, -kInf};
  std::vector<std::uint8_t> u(x.size());
  k::quantize_linear(x, {1.0f, 10, 0, 255, quantize_op::divide}, std::span<std::uint8_t>(u), isa::scalar);
  EXPECT_EQ(u, (std::vector<std::uint8_t>{10, 12, 12, 10, 10, 255, 0, 10, 255, 0}));
  // multiply_add rounds once: fma(x, f, zp) = 10.5 exactly -> 10 (even).
  std::vector<std::int8_t> s(1);
  k::quantize_linear(std::vector<float>{0.25f}, {2.0f, 10, -128, 127, quantize_op::multiply_add},
                     std::span<std::int8_t>(s), isa::scalar);
  EXPECT_EQ(s[0], 10);
  // multiply rounds the product first: 0.1f * 3 = 0.3000000119 -> 0, + zp.
  k::quantize_linear(std::vector<float>{0.1f}, {3.0f, -4, -128, 127, quantize_op::multiply},
                     std::span<std::int8_t>(s), isa::scalar);
  EXPECT_EQ(s[0], -4);
}

TEST(RangeOf, EveryPathMatchesTheTwin) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(43);
  for (std::size_t n = 0; n <= 70; ++n) {
    for (bool finite : {true, false}) {
      auto x = edge_values(rng, n, finite);
      if (!finite && n > 0) x[n - 1 - (n / 3)] = (n % 2) ? kNaN : -kInf;
      const auto want = k::range_of(x, isa::scalar);
      for (const isa path : k::supported_isas()) {
        const auto got = k::range_of(x, path);
        ASSERT_EQ(got.finite, want.finite) << k::to_string(path) << " n=" << n;
        if (want.finite) {
          // Equal values; the sign of a zero extreme may differ between min
          // instructions and std::min, which the ranges' users do not see.
          ASSERT_EQ(got.min, want.min) << k::to_string(path) << " n=" << n;
          ASSERT_EQ(got.max, want.max) << k::to_string(path) << " n=" << n;
        }
      }
    }
  }
  const std::vector<float> v{3.0f, -2.0f, 7.5f};
  const auto r = k::range_of(v, isa::scalar);
  EXPECT_EQ(r.min, -2.0f);
  EXPECT_EQ(r.max, 7.5f);
  EXPECT_TRUE(r.finite);
  EXPECT_TRUE(k::range_of(std::span<const float>{}).finite);
}

TEST(QuantizeLinear, Errors) {
  std::vector<float> x(4, 1.0f);
  std::vector<std::uint8_t> u(3);
  EXPECT_THROW(k::quantize_linear(x, {}, std::span<std::uint8_t>(u)), qprune::shape_error);
  u.resize(4);
  EXPECT_THROW(k::quantize_linear(x, {1.0f, 0, -1, 255}, std::span<std::uint8_t>(u)), qprune::config_error);
  EXPECT_THROW(k::quantize_linear(x, {1.0f, 300, 0, 255}, std::span<std::uint8_t>(u)), qprune::config_error);
  std::vector<std::int8_t> s(4);
  EXPECT_THROW(k::quantize_linear(x, {1.0f, 0, -128, 128}, std::span<std::int8_t>(s)), qprune::config_error);
  EXPECT_THROW(k::quantize_linear(x, {1.0f, 0, 5, 2}, std::span<std::int8_t>(s)), qprune::config_error);
}

}  // namespace

// Tests for quant/requantize.hpp: the gemmlowp / TFLite fixed-point primitives
// against independent exact (128-bit integer) references over edge values and
// seeded random sweeps, QuantizeMultiplier against TFLite's own test vectors and
// hand-computed cases, the fused-activation ranges, and the integer and float
// output stages against hand-computed examples and exact / double references.
#include "qprune/quant/requantize.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::index_t;
using qprune::layout_stride;
using qprune::shape_error;
using qprune::tensor_view;
namespace quant = qprune::quant;
using quant::affine_params;
using quant::fused_activation;
using quant::multiplier_rounding;
using quant::qrange;
using quant::quantized_multiplier;
using quant::requant_params;
using quant::scale_product;

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

constexpr std::int32_t kMin = std::numeric_limits<std::int32_t>::min();
constexpr std::int32_t kMax = std::numeric_limits<std::int32_t>::max();
constexpr std::int32_t kTwo30 = std::int32_t{1} << 30;
constexpr qrange kInt8{-128, 127};
constexpr qrange kUint8{0, 255};
constexpr qrange kInt16{-32768, 32767};
constexpr qrange kInt32{kMin, kMax};

// ---------------------------------------------------------------------------
// Independent references, exact in 128-bit integers
// ---------------------------------------------------------------------------

i128 pow2(int e) { return static_cast<i128>(1) << e; }

/// floor(n / d) for d > 0.
i128 floor_div(i128 n, i128 d) {
  i128 q = n / d;
  if (n % d != 0 && n < 0) --q;
  return q;
}

/// n / 2^e rounded to nearest, ties toward +infinity (the tie is decided on the
/// exact remainder: r / 2^e >= 1/2).
i128 round_half_up_pot(i128 n, int e) {
  const i128 q = floor_div(n, pow2(e));
  const i128 r = n - q * pow2(e);  // in [0, 2^e)
  return 2 * r >= pow2(e) ? q + 1 : q;
}

/// n / 2^e rounded to nearest, ties away from zero.
i128 round_half_away_pot(i128 n, int e) {
  const i128 mag = n < 0 ? -n : n;
  i128 q = mag >> e;
  const i128 r = mag - (q << e);
  if (e > 0 && 2 * r >= pow2(e)) ++q;
  return n < 0 ? -q : q;
}

/// The low 32 bits of v as a signed value (two's complement wrap).
std::int32_t wrap32(i128 v) {
  const auto u = static_cast<std::uint32_t>(static_cast<u128>(v) & 0xFFFFFFFFu);
  return static_cast<std::int32_t>(u);
}

std::int32_t ref_srdhm(std::int32_t a, std::int32_t b) {
  if (a == kMin && b == kMin) return kMax;  // 2^62 / 2^31 = 2^31 does not fit
  return static_cast<std::int32_t>(round_half_up_pot(static_cast<i128>(a) * b, 31));
}

std::int32_t ref_rdbpot(std::int32_t x, int e) {
  return static_cast<std::int32_t>(round_half_away_pot(x, e));
}

std::int32_t ref_mbqm(std::int32_t x, std::int32_t m0, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return ref_rdbpot(ref_srdhm(wrap32(static_cast<i128>(x) * pow2(left)), m0), right);
}

std::int32_t ref_single(std::int32_t x, std::int32_t m0, int shift) {
  return wrap32(round_half_up_pot(static_cast<i128>(x) * m0, 31 - shift));
}

std::int32_t ref_int64(std::int64_t x, std::int32_t m0, int shift) {
  // M0 / 2^16 rounded half up, capped at 0x7FFF.
  i128 reduced = round_half_up_pot(m0, 16);
  if (reduced > 0x7FFF) reduced = 0x7FFF;
  return wrap32(round_half_up_pot(static_cast<i128>(x) * reduced, 15 - shift));
}

std::int32_t ref_requantize(std::int32_t acc, std::int32_t bias, quantized_multiplier m,
                            std::int32_t zp, qrange act, multiplier_rounding r) {
  const std::int32_t sum = wrap32(static_cast<i128>(acc) + bias);
  const std::int32_t y = r == multiplier_rounding::double_rounding
                             ? ref_mbqm(sum, m.multiplier, m.shift)
                             : ref_single(sum, m.multiplier, m.shift);
  i128 v = static_cast<i128>(y) + zp;
  if (v < act.qmin) v = act.qmin;
  if (v > act.qmax) v = act.qmax;
  return static_cast<std::int32_t>(v);
}

/// INT32 edge values: the extremes, +-1, 0, and +-2^k, +-2^k +- 1.
std::vector<std::int32_t> edge_values() {
  std::vector<std::int32_t> v{kMin, kMin + 1, kMin + 2, -3, -2, -1, 0, 1, 2, 3, kMax - 1, kMax};
  for (int k = 1; k <= 30; ++k) {
    const std::int32_t p = std::int32_t{1} << k;
    for (std::int32_t x : {p - 1, p, p + 1, -p + 1, -p, -p - 1}) v.push_back(x);
  }
  return v;
}

std::int32_t random_int32(std::mt19937_64& rng) {
  // Half the draws uniform over int32, half with a random magnitude (log-uniform),
  // so small values and values near powers of two are both common.
  if (rng() & 1) return static_cast<std::int32_t>(static_cast<std::uint32_t>(rng()));
  const int bits = static_cast<int>(rng() % 32);
  const auto mag = static_cast<std::int64_t>(rng() & ((std::uint64_t{1} << bits) - 1));
  return static_cast<std::int32_t>((rng() & 2) != 0 ? -mag : mag);
}

// ---------------------------------------------------------------------------
// SaturatingRoundingDoublingHighMul
// ---------------------------------------------------------------------------

// Compile-time checks: the primitives are constexpr.
static_assert(quant::saturating_rounding_doubling_high_mul(kMin, kMin) == kMax);
static_assert(quant::saturating_rounding_doubling_high_mul(kTwo30, 1) == 1);
static_assert(quant::rounding_divide_by_pot(-5, 1) == -3);
static_assert(quant::multiply_by_quantized_multiplier(1, kTwo30, -1) == 1);

TEST(Srdhm, HandComputedCases) {
  using quant::saturating_rounding_doubling_high_mul;
  // a*b / 2^31 with ties toward +infinity (VQRDMULH), not away from zero.
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kTwo30, 1), 1);    // 0.5 -> 1
  EXPECT_EQ(saturating_rounding_doubling_high_mul(-kTwo30, 1), 0);   // -0.5 -> 0
  EXPECT_EQ(saturating_rounding_doubling_high_mul(3, kTwo30), 2);    // 1.5 -> 2
  EXPECT_EQ(saturating_rounding_doubling_high_mul(-3, kTwo30), -1);  // -1.5 -> -1
  EXPECT_EQ(saturating_rounding_doubling_high_mul(5, kTwo30), 3);    // 2.5 -> 3
  EXPECT_EQ(saturating_rounding_doubling_high_mul(-5, kTwo30), -2);  // -2.5 -> -2
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kTwo30 - 1, 1), 0);   // just below 0.5
  EXPECT_EQ(saturating_rounding_doubling_high_mul(-kTwo30 - 1, 1), -1); // just below -0.5
  // Multiplying by 2^31 - 1 (~1.0) and by 2^30 (0.5).
  EXPECT_EQ(saturating_rounding_doubling_high_mul(1000, kMax), 1000);
  EXPECT_EQ(saturating_rounding_doubling_high_mul(-1000, kMax), -1000);
  EXPECT_EQ(saturating_rounding_doubling_high_mul(1000, kTwo30), 500);
  // The extremes: only INT32_MIN * INT32_MIN saturates.
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kMin, kMin), kMax);
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kMin, kMax), -kMax);  // -(2^31 - 1)
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kMax, kMax), kMax - 1);
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kMin, kMin + 1), kMax);  // exactly 2^31 - 1
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kMin, 1), -1);
  EXPECT_EQ(saturating_rounding_doubling_high_mul(kMin, -1), 1);
  EXPECT_EQ(saturating_rounding_doubling_high_mul(0, kMin), 0);
}

TEST(Srdhm, MatchesExactReferenceOnEdgeValues) {
  const std::vector<std::int32_t> v = edge_values();
  for (std::int32_t a : v) {
    for (std::int32_t b : v) {
      ASSERT_EQ(quant::saturating_rounding_doubling_high_mul(a, b), ref_srdhm(a, b))
          << "a=" << a << " b=" << b;
    }
  }
}

TEST(Srdhm, MatchesExactReferenceOnRandomValues) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(101);
  for (int i = 0; i < 500000; ++i) {
    const std::int32_t a = random_int32(rng);
    const std::int32_t b = random_int32(rng);
    ASSERT_EQ(quant::saturating_rounding_doubling_high_mul(a, b), ref_srdhm(a, b))
        << "a=" << a << " b=" << b;
    ASSERT_EQ(quant::saturating_rounding_doubling_high_mul(a, b),
              quant::saturating_rounding_doubling_high_mul(b, a));
  }
}

// ---------------------------------------------------------------------------
// RoundingDivideByPOT
// ---------------------------------------------------------------------------

TEST(Rdbpot, HandComputedCases) {
  using quant::rounding_divide_by_pot;
  EXPECT_EQ(rounding_divide_by_pot(5, 1), 3);     // 2.5 -> 3
  EXPECT_EQ(rounding_divide_by_pot(-5, 1), -3);   // -2.5 -> -3
  EXPECT_EQ(rounding_divide_by_pot(3, 1), 2);     // 1.5 -> 2
  EXPECT_EQ(rounding_divide_by_pot(-3, 1), -2);   // -1.5 -> -2
  EXPECT_EQ(rounding_divide_by_pot(1, 1), 1);     // 0.5 -> 1
  EXPECT_EQ(rounding_divide_by_pot(-1, 1), -1);   // -0.5 -> -1
  EXPECT_EQ(rounding_divide_by_pot(5, 2), 1);     // 1.25 -> 1
  EXPECT_EQ(rounding_divide_by_pot(-6, 2), -2);   // -1.5 -> -2
  EXPECT_EQ(rounding_divide_by_pot(-7, 2), -2);   // -1.75 -> -2
  EXPECT_EQ(rounding_divide_by_pot(-5, 2), -1);   // -1.25 -> -1
  EXPECT_EQ(rounding_divide_by_pot(12345, 0), 12345);
  EXPECT_EQ(rounding_divide_by_pot(-12345, 0), -12345);
  EXPECT_EQ(rounding_divide_by_pot(kMin, 0), kMin);
  EXPECT_EQ(rounding_divide_by_pot(kMax, 0), kMax);
  EXPECT_EQ(rounding_divide_by_pot(kMax, 31), 1);   // 0.99999... -> 1
  EXPECT_EQ(rounding_divide_by_pot(kMin, 31), -1);  // exactly -1
  EXPECT_EQ(rounding_divide_by_pot(kTwo30, 31), 1);   // 0.5 -> 1
  EXPECT_EQ(rounding_divide_by_pot(-kTwo30, 31), -1); // -0.5 -> -1
  EXPECT_EQ(rounding_divide_by_pot(kTwo30 - 1, 31), 0);
  EXPECT_EQ(rounding_divide_by_pot(-kTwo30 + 1, 31), 0);
  EXPECT_EQ(rounding_divide_by_pot(kMax, 1), kTwo30);  // 2^30 - 0.5 -> 2^30
  EXPECT_EQ(rounding_divide_by_pot(kMin, 1), -kTwo30);
}

TEST(Rdbpot, MatchesExactReferenceOnEdgeValues) {
  for (std::int32_t x : edge_values()) {
    for (int e = 0; e <= 31; ++e) {
      ASSERT_EQ(quant::rounding_divide_by_pot(x, e), ref_rdbpot(x, e)) << "x=" << x << " e=" << e;
    }
  }
}

TEST(Rdbpot, MatchesExactReferenceOnRandomValues) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(102);
  for (int i = 0; i < 500000; ++i) {
    const std::int32_t x = random_int32(rng);
    const int e = static_cast<int>(rng() % 32);
    ASSERT_EQ(quant::rounding_divide_by_pot(x, e), ref_rdbpot(x, e)) << "x=" << x << " e=" << e;
  }
}

// ---------------------------------------------------------------------------
// MultiplyByQuantizedMultiplier (all three TFLite variants)
// ---------------------------------------------------------------------------

std::int32_t quant_and_multiply(std::int32_t x, double m) {
  const quantized_multiplier q = quant::quantize_multiplier(m);
  return quant::multiply_by_quantized_multiplier(x, q.multiplier, q.shift);
}

TEST(Mbqm, TfliteTestVectors) {
  // tensorflow/lite/kernels/internal/quantization_util_test.cc, MultiplyByQuantizedMultiplierInt32.
  EXPECT_EQ(quant_and_multiply(0, 0.1), 0);
  EXPECT_EQ(quant_and_multiply(1, 0), 0);
  EXPECT_EQ(quant_and_multiply(10000, 0.00097656), 10);
  EXPECT_EQ(quant_and_multiply(-10000, 0.00097656), -10);
  EXPECT_EQ(quant_and_multiply(kMin, 0.00001), -21475);
  EXPECT_EQ(quant_and_multiply(kMax, 0.00001), 21475);
  // Largest x and M0 with shift -3: round(x * M0 / 2^34) (TfLiteRound, in double).
  const auto expected = static_cast<std::int32_t>(
      std::round(static_cast<double>(std::int64_t{kMax} * kMax) / static_cast<double>(1LL << 34)));
  EXPECT_EQ(quant::multiply_by_quantized_multiplier(kMax, kMax, -3), expected);
  EXPECT_EQ(quant::multiply_by_quantized_multiplier(-kMax, kMax, -3), -expected);
}

TEST(Mbqm, DoubleRoundingHandCases) {
  using quant::multiply_by_quantized_multiplier;
  // M = 0.25 = (2^30, -1): SRDHM rounds x/2 (ties up), RDBPOT rounds that /2 (ties away).
  EXPECT_EQ(multiply_by_quantized_multiplier(1, kTwo30, -1), 1);    // 0.25 -> 0.5 -> 1 (not 0)
  EXPECT_EQ(multiply_by_quantized_multiplier(-1, kTwo30, -1), 0);   // -0.5 -> 0 -> 0
  EXPECT_EQ(multiply_by_quantized_multiplier(6, kTwo30, -1), 2);    // 1.5 exact, -> 3 -> 2
  EXPECT_EQ(multiply_by_quantized_multiplier(-6, kTwo30, -1), -2);  // -3 -> -1.5 -> -2
  EXPECT_EQ(multiply_by_quantized_multiplier(1000, kTwo30, -1), 250);
  // M = 0.5 = (2^30, 0): one rounding, ties toward +inf.
  EXPECT_EQ(multiply_by_quantized_multiplier(3, kTwo30, 0), 2);
  EXPECT_EQ(multiply_by_quantized_multiplier(-3, kTwo30, 0), -1);
  // M = 2 = (2^30, 2): left shift first, then exact halving.
  EXPECT_EQ(multiply_by_quantized_multiplier(-7, kTwo30, 2), -14);
  // The left shift wraps modulo 2^32 as in TFLite: 2^30 * 4 -> 0.
  EXPECT_EQ(multiply_by_quantized_multiplier(kTwo30, kTwo30, 2), 0);
  // Shift 31 (M in [2^30, 2^31)): x * 2^31 wraps; 0 stays 0, 2 -> 0, 1 -> INT32_MIN.
  EXPECT_EQ(multiply_by_quantized_multiplier(0, kMax, 31), 0);
  EXPECT_EQ(multiply_by_quantized_multiplier(2, kMax, 31), 0);
  EXPECT_EQ(multiply_by_quantized_multiplier(1, kTwo30, 31), -kTwo30);
  // Shift -31 with the largest multiplier.
  EXPECT_EQ(multiply_by_quantized_multiplier(kMax, kMax, -31), 1);  // ~0.99999 -> 1
  EXPECT_EQ(multiply_by_quantized_multiplier(kMin, kMax, -31), -1);
}

std::vector<std::int32_t> multiplier_values() {
  return {0, 1, 2, kTwo30 - 1, kTwo30, kTwo30 + 1, 1518500250, 1610612736, kMax - 1, kMax,
          -1, -kTwo30, kMin};  // TFLite's double-rounding path accepts any M0
}

TEST(Mbqm, MatchesExactReferenceOnEdgeValues) {
  const std::vector<std::int32_t> xs = edge_values();
  for (std::int32_t m0 : multiplier_values()) {
    for (int shift = -31; shift <= 31; ++shift) {
      for (std::int32_t x : xs) {
        ASSERT_EQ(quant::multiply_by_quantized_multiplier(x, m0, shift), ref_mbqm(x, m0, shift))
            << "x=" << x << " m0=" << m0 << " shift=" << shift;
      }
    }
  }
}

TEST(Mbqm, MatchesExactReferenceAndStaysWithinThreeQuartersOnRandomValues) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(103);
  int checked_bound = 0;
  for (int i = 0; i < 300000; ++i) {
    const std::int32_t x = random_int32(rng);
    const auto m0 = static_cast<std::int32_t>(kTwo30 + static_cast<std::int32_t>(rng() % kTwo30));
    const int shift = static_cast<int>(rng() % 63) - 31;
    const std::int32_t got = quant::multiply_by_quantized_multiplier(x, m0, shift);
    ASSERT_EQ(got, ref_mbqm(x, m0, shift)) << "x=" << x << " m0=" << m0 << " shift=" << shift;
    const int left = shift > 0 ? shift : 0;
    const i128 scaled = static_cast<i128>(x) * pow2(left);
    if (scaled >= kMin && scaled <= kMax) {
      // |got - x * M0 * 2^(shift-31)| <= 3/4, i.e. 4 |got * 2^(31-shift) - x * M0| <= 3 * 2^(31-shift).
      const int down = 31 - shift;  // in [0, 62]
      const i128 exact = static_cast<i128>(x) * m0;
      const i128 err = static_cast<i128>(got) * pow2(down) - exact;
      ASSERT_LE(4 * (err < 0 ? -err : err), 3 * pow2(down))
          << "x=" << x << " m0=" << m0 << " shift=" << shift;
      ++checked_bound;
    }
  }
  EXPECT_GT(checked_bound, 100000);
}

TEST(MbqmSingleRounding, HandCasesAndTfliteVectors) {
  using quant::multiply_by_quantized_multiplier_single_rounding;
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(1, kTwo30, -1), 0);   // 0.25 -> 0
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(2, kTwo30, -1), 1);   // 0.5 -> 1
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(-2, kTwo30, -1), 0);  // -0.5 -> 0
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(-6, kTwo30, -1), -1); // -1.5 -> -1
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(6, kTwo30, -1), 2);   // 1.5 -> 2
  // TFLite's Int32 vectors hold for the single-rounding build too (M >= 0).
  const auto single = [](std::int32_t x, double m) {
    const quantized_multiplier q = quant::quantize_multiplier_single_rounding(m);
    return multiply_by_quantized_multiplier_single_rounding(x, q.multiplier, q.shift);
  };
  EXPECT_EQ(single(0, 0.1), 0);
  EXPECT_EQ(single(1, 0), 0);
  EXPECT_EQ(single(10000, 0.00097656), 10);
  EXPECT_EQ(single(-10000, 0.00097656), -10);
  EXPECT_EQ(single(kMin, 0.00001), -21475);
  EXPECT_EQ(single(kMax, 0.00001), 21475);
  const auto expected = static_cast<std::int32_t>(
      std::round(static_cast<double>(std::int64_t{kMax} * kMax) / static_cast<double>(1LL << 34)));
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(kMax, kMax, -3), expected);
  EXPECT_EQ(multiply_by_quantized_multiplier_single_rounding(-kMax, kMax, -3), -expected);
}

TEST(MbqmSingleRounding, MatchesExactReference) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const std::vector<std::int32_t> xs = edge_values();
  for (std::int32_t m0 : {0, 1, kTwo30, kTwo30 + 1, 1610612736, kMax}) {
    for (int shift = -31; shift <= 30; ++shift) {
      for (std::int32_t x : xs) {
        ASSERT_EQ(quant::multiply_by_quantized_multiplier_single_rounding(x, m0, shift),
                  ref_single(x, m0, shift))
            << "x=" << x << " m0=" << m0 << " shift=" << shift;
      }
    }
  }
  auto rng = qprune::test::make_rng(104);
  for (int i = 0; i < 300000; ++i) {
    const std::int32_t x = random_int32(rng);
    const auto m0 = static_cast<std::int32_t>(static_cast<std::uint32_t>(rng()) >> 1);
    const int shift = static_cast<int>(rng() % 62) - 31;
    ASSERT_EQ(quant::multiply_by_quantized_multiplier_single_rounding(x, m0, shift),
              ref_single(x, m0, shift))
        << "x=" << x << " m0=" << m0 << " shift=" << shift;
  }
}

TEST(MbqmInt64, TfliteTestVectorsAndExactReference) {
  using quant::multiply_by_quantized_multiplier_int64;
  const auto q_and_m = [](std::int64_t x, double m) {
    const quantized_multiplier q = quant::quantize_multiplier(m);
    return multiply_by_quantized_multiplier_int64(x, q.multiplier, q.shift);
  };
  // quantization_util_test.cc, MultiplyByQuantizedMultiplierInt64.
  EXPECT_EQ(q_and_m(0, 0.1), 0);
  EXPECT_EQ(q_and_m(1, 0), 0);
  EXPECT_EQ(q_and_m(10000, 0.00097656), 10);
  EXPECT_EQ(q_and_m(-10000, 0.00097656), -10);
  EXPECT_EQ(q_and_m(-(std::int64_t{1} << 47), 0.00001), -1407385600);
  EXPECT_EQ(q_and_m((std::int64_t{1} << 47) - 1, 0.00001), 1407385600);
  const std::int64_t x = (std::int64_t{1} << 47) - 1;
  EXPECT_EQ(multiply_by_quantized_multiplier_int64(x, kMax, -31), 65534);
  EXPECT_EQ(multiply_by_quantized_multiplier_int64(-x, kMax, -31), -65534);

  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(105);
  for (int i = 0; i < 300000; ++i) {
    const auto xi = static_cast<std::int64_t>(rng() % (std::uint64_t{1} << 48)) -
                    (std::int64_t{1} << 47);
    const auto m0 = static_cast<std::int32_t>(static_cast<std::uint32_t>(rng()) >> 1);
    const int shift = static_cast<int>(rng() % 39) - 31;
    ASSERT_EQ(multiply_by_quantized_multiplier_int64(xi, m0, shift), ref_int64(xi, m0, shift))
        << "x=" << xi << " m0=" << m0 << " shift=" << shift;
  }
  // M0 at the reduction's cap.
  for (std::int32_t m0 : {0x7FFEFFFF, 0x7FFF0000, 0x7FFF8000, kMax}) {
    EXPECT_EQ(multiply_by_quantized_multiplier_int64(123456789, m0, 0),
              ref_int64(123456789, m0, 0));
  }
}

// ---------------------------------------------------------------------------
// QuantizeMultiplier
// ---------------------------------------------------------------------------

quantized_multiplier qm(std::int32_t m, int s) { return {m, s}; }

TEST(QuantizeMultiplier, HandComputedCases) {
  using quant::quantize_multiplier;
  EXPECT_EQ(quantize_multiplier(0.5), qm(kTwo30, 0));
  EXPECT_EQ(quantize_multiplier(1.0), qm(kTwo30, 1));
  EXPECT_EQ(quantize_multiplier(0.75), qm(1610612736, 0));  // 0.75 * 2^31
  EXPECT_EQ(quantize_multiplier(0.0), qm(0, 0));
  EXPECT_EQ(quantize_multiplier(-0.0), qm(0, 0));
  // Just below 1: q * 2^31 = 2^31 - 1/4 rounds to 2^31, so (2^30, shift + 1).
  EXPECT_EQ(quantize_multiplier(1.0 - std::ldexp(1.0, -33)), qm(kTwo30, 1));
  EXPECT_EQ(quantize_multiplier(1.0 - std::ldexp(1.0, -32)), qm(kTwo30, 1));  // 2^31 - 1/2: tie up
  EXPECT_EQ(quantize_multiplier(1.0 - std::ldexp(1.0, -30)), qm(kMax - 1, 0));
  // A tie on an even integer: 2^30 + 1/2 rounds away from zero (std::round), to 2^30 + 1;
  // half-to-even would give 2^30.
  EXPECT_EQ(quantize_multiplier(0.5 + std::ldexp(1.0, -32)), qm(kTwo30 + 1, 0));
  EXPECT_EQ(quantize_multiplier(0.5 + std::ldexp(3.0, -33)), qm(kTwo30 + 1, 0));  // +0.75 -> +1
  // Tiny multipliers flush to (0, 0) below about 2^-32.
  EXPECT_EQ(quantize_multiplier(std::ldexp(1.0, -40)), qm(0, 0));
  EXPECT_EQ(quantize_multiplier(std::numeric_limits<double>::denorm_min()), qm(0, 0));
  // Large multipliers keep their shift (the caller decides what it supports).
  EXPECT_EQ(quantize_multiplier(std::ldexp(1.0, 40)), qm(kTwo30, 41));
  EXPECT_EQ(quantize_multiplier(3.0), qm(1610612736, 2));
}

TEST(QuantizeMultiplier, TfliteTestVectors) {
  using quant::quantize_multiplier;
  using quant::quantize_multiplier_greater_than_one;
  using quant::quantize_multiplier_smaller_than_one_exp;
  // QuantizeMultiplierSmallerThanOneExp.
  EXPECT_THROW((void)quantize_multiplier_smaller_than_one_exp(-0.1), config_error);
  EXPECT_THROW((void)quantize_multiplier_smaller_than_one_exp(0.0), config_error);
  EXPECT_EQ(quantize_multiplier_smaller_than_one_exp(0.25), qm(1073741824, -1));
  EXPECT_EQ(quantize_multiplier_smaller_than_one_exp(0.50 - 5e-9), qm(2147483627, -1));
  EXPECT_EQ(quantize_multiplier_smaller_than_one_exp(0.50 - 1e-10), qm(1073741824, 0));
  EXPECT_EQ(quantize_multiplier_smaller_than_one_exp(0.50), qm(1073741824, 0));
  EXPECT_EQ(quantize_multiplier_smaller_than_one_exp(0.75), qm(1610612736, 0));
  EXPECT_EQ(quantize_multiplier_smaller_than_one_exp(1 - 1e-9), qm(2147483646, 0));
  EXPECT_THROW((void)quantize_multiplier_smaller_than_one_exp(1 - 1e-15), config_error);
  EXPECT_THROW((void)quantize_multiplier_smaller_than_one_exp(1 - 1e-17), config_error);
  EXPECT_THROW((void)quantize_multiplier_smaller_than_one_exp(1.0), config_error);
  // QuantizeMultiplierGreaterThanOne.
  EXPECT_THROW((void)quantize_multiplier_greater_than_one(1 + 1e-16), config_error);
  EXPECT_EQ(quantize_multiplier_greater_than_one(1 + 1e-11), qm(1073741824, 1));
  EXPECT_EQ(quantize_multiplier_greater_than_one(1.25), qm(1342177280, 1));
  EXPECT_EQ(quantize_multiplier_greater_than_one(1.50), qm(1610612736, 1));
  EXPECT_EQ(quantize_multiplier_greater_than_one(1.75), qm(1879048192, 1));
  EXPECT_EQ(quantize_multiplier_greater_than_one(2 - 1e-9), qm(2147483647, 1));
  EXPECT_EQ(quantize_multiplier_greater_than_one(2 - 1e-11), qm(1073741824, 2));
  EXPECT_EQ(quantize_multiplier_greater_than_one(2), qm(1073741824, 2));
  // QuantizeMultiplierUnderflow.
  EXPECT_EQ(quantize_multiplier(std::ldexp(1.0f, -31)), qm(1073741824, -30));
  EXPECT_EQ(quantize_multiplier(std::ldexp(1.0f, -32)), qm(1073741824, -31));
  EXPECT_EQ(quantize_multiplier(std::ldexp(0.99f, -32)), qm(0, 0));
  EXPECT_EQ(quantize_multiplier(std::ldexp(1.0f, -33)), qm(0, 0));
  // QuantizeMultiplierArray (the non-negative half).
  const std::array<double, 7> w{0, 0.125, 0.25, 0.5, 1, 2, 4};
  const std::array<int, 7> shifts{0, -2, -1, 0, 1, 2, 3};
  for (std::size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(quantize_multiplier(w[i]), qm(i == 0 ? 0 : kTwo30, shifts[i])) << w[i];
  }
  // PreprocessSoftmaxScaling, double-rounding build: M = min(2^31 - 1, 16 * 2^27) and 8 * 2^27.
  EXPECT_EQ(quantize_multiplier_greater_than_one((1LL << 31) - 1.0), qm(2147483647, 31));
  EXPECT_EQ(quantize_multiplier_greater_than_one(8.0 * (1 << 27)), qm(1073741824, 31));
}

TEST(QuantizeMultiplier, SingleRoundingSaturatesLargeShifts) {
  using quant::quantize_multiplier_single_rounding;
  // PreprocessSoftmaxScaling, single-rounding build: M = min(2^30 - 1, 8 * 2^27) and 4 * 2^27.
  EXPECT_EQ(quantize_multiplier_single_rounding((1LL << 30) - 1.0), qm(2147483646, 30));
  EXPECT_EQ(quantize_multiplier_single_rounding(4.0 * (1 << 27)), qm(1073741824, 30));
  // Shift 31 and above saturate to (2^31 - 1, 30).
  EXPECT_EQ(quantize_multiplier_single_rounding(std::ldexp(1.0, 30)), qm(kMax, 30));
  EXPECT_EQ(quantize_multiplier_single_rounding(1e10), qm(kMax, 30));
  // Below that, identical to the double-rounding variant.
  EXPECT_EQ(quantize_multiplier_single_rounding(0.75), qm(1610612736, 0));
  EXPECT_EQ(quantize_multiplier_single_rounding(std::ldexp(1.0, -40)), qm(0, 0));
}

TEST(QuantizeMultiplier, RejectsInvalidInput) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double m : {-1.0, -1e-300, nan, inf, -inf}) {
    EXPECT_THROW((void)quant::quantize_multiplier(m), config_error) << m;
    EXPECT_THROW((void)quant::quantize_multiplier_single_rounding(m), config_error) << m;
  }
  EXPECT_THROW((void)quant::quantize_multiplier_greater_than_one(inf), config_error);
  EXPECT_THROW((void)quant::quantize_multiplier_smaller_than_one_exp(nan), config_error);
}

TEST(QuantizeMultiplier, RelativeErrorWithinHalfAnUnitInTheLastPlace) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(106);
  std::uniform_real_distribution<double> frac(0.5, 1.0);
  for (int i = 0; i < 100000; ++i) {
    const double m = std::ldexp(frac(rng), static_cast<int>(rng() % 63) - 31);
    const quantized_multiplier q = quant::quantize_multiplier(m);
    ASSERT_GE(q.multiplier, kTwo30) << m;
    const double rec = std::ldexp(static_cast<double>(q.multiplier), q.shift - 31);
    // Both within a factor of 2, so the difference is exact (Sterbenz).
    ASSERT_LE(std::fabs(rec - m), std::ldexp(1.0, q.shift - 32)) << m;
  }
}

// ---------------------------------------------------------------------------
// Fused activation ranges
// ---------------------------------------------------------------------------

TEST(ActivationRange, HandComputedCases) {
  using quant::quantized_activation_range;
  const affine_params out{0.05f, -10};
  EXPECT_EQ(quantized_activation_range(fused_activation::none, out, kInt8), qrange(-128, 127));
  EXPECT_EQ(quantized_activation_range(fused_activation::relu, out, kInt8), qrange(-10, 127));
  // 6 / 0.05f = 119.9999982 in float -> 120.0f -> -10 + 120.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, out, kInt8), qrange(-10, 110));
  EXPECT_EQ(quantized_activation_range(fused_activation::relu_n1_to_1, out, kInt8),
            qrange(-30, 10));
  // Clipped by the type range.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {0.01f, 100}, kInt8),
            qrange(100, 127));
  EXPECT_EQ(quantized_activation_range(fused_activation::relu, {0.1f, -128}, kInt8),
            qrange(-128, 127));
  EXPECT_EQ(quantized_activation_range(fused_activation::relu_n1_to_1, {0.001f, 0}, kInt8),
            qrange(-128, 127));
  // uint8 and int16.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {6.0f / 255.0f, 0}, kUint8),
            qrange(0, 255));
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {0.5f, 3}, kInt16),
            qrange(3, 15));
  // 6 / s_out overflowing int32 saturates instead of overflowing.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {1e-30f, 0}, kInt8),
            qrange(0, 127));
}

TEST(ActivationRange, TiesRoundAwayFromZero) {
  using quant::quantized_activation_range;
  // 6 / 12 = 0.5 -> 1 (half-to-even would give 0).
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {12.0f, 0}, kInt8), qrange(0, 1));
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {12.0f, 128}, kUint8),
            qrange(128, 129));
  // 6 / 4 = 1.5 -> 2.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {4.0f, 0}, kInt8), qrange(0, 2));
  // -1 / 2 = -0.5 -> -1 and 1 / 2 -> 1.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu_n1_to_1, {2.0f, 7}, kInt8),
            qrange(6, 8));
  // 6 / 2.4f = 2.4999999 exactly rounds to 2.5f in float32 (the division is float), a tie -> 3.
  EXPECT_EQ(quantized_activation_range(fused_activation::relu6, {2.4f, 0}, kInt8), qrange(0, 3));
}

TEST(ActivationRange, RejectsInvalidParameters) {
  using quant::quantized_activation_range;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW((void)quantized_activation_range(fused_activation::relu, {0.0f, 0}, kInt8),
               config_error);
  EXPECT_THROW((void)quantized_activation_range(fused_activation::relu, {nan, 0}, kInt8),
               config_error);
  EXPECT_THROW((void)quantized_activation_range(fused_activation::relu, {0.1f, 128}, kInt8),
               config_error);
  EXPECT_THROW((void)quantized_activation_range(fused_activation::none, {0.1f, 0}, qrange{5, 5}),
               config_error);
}

// ---------------------------------------------------------------------------
// make_requant_params
// ---------------------------------------------------------------------------

TEST(MakeRequantParams, PerTensorAndPerChannel) {
  const requant_params t =
      quant::make_requant_params(0.5f, 0.25f, affine_params{0.5f, 3}, kInt8, fused_activation::none);
  EXPECT_EQ(t.multipliers, std::vector<std::int32_t>{kTwo30});  // M = 0.25
  EXPECT_EQ(t.shifts, std::vector<int>{-1});
  EXPECT_EQ(t.out_zero_point, 3);
  EXPECT_EQ(t.act_min, -128);
  EXPECT_EQ(t.act_max, 127);
  EXPECT_EQ(t.rounding, multiplier_rounding::double_rounding);
  EXPECT_EQ(t.channels(), 1);
  EXPECT_EQ(t.at(5), qm(kTwo30, -1));

  const std::vector<float> s_w{0.5f, 1.0f, 0.75f, 3.0f};
  const requant_params c = quant::make_requant_params(1.0f, s_w, affine_params{1.0f, 0}, kInt8,
                                                      fused_activation::relu);
  EXPECT_EQ(c.multipliers, (std::vector<std::int32_t>{kTwo30, kTwo30, 1610612736, 1610612736}));
  EXPECT_EQ(c.shifts, (std::vector<int>{0, 1, 0, 2}));
  EXPECT_EQ(c.act_min, 0);
  EXPECT_EQ(c.act_max, 127);
  EXPECT_EQ(c.at(2), qm(1610612736, 0));
}

TEST(MakeRequantParams, FollowsTheChosenScaleProduct) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(107);
  std::uniform_real_distribution<float> d(1e-3f, 1e-1f);
  int differing = 0;
  for (int i = 0; i < 2000; ++i) {
    const float s_in = d(rng);
    const float s_w = d(rng) * 0.1f;
    const float s_out = d(rng);
    const double m_double =
        static_cast<double>(s_in) * static_cast<double>(s_w) / static_cast<double>(s_out);
    const double m_float = static_cast<double>(s_in * s_w) / static_cast<double>(s_out);
    ASSERT_EQ(quant::effective_multiplier(s_in, s_w, s_out, scale_product::double_precision),
              m_double);
    ASSERT_EQ(quant::effective_multiplier(s_in, s_w, s_out, scale_product::float_precision),
              m_float);
    const std::array<float, 1> sw{s_w};
    const requant_params pd =
        quant::make_requant_params(s_in, sw, {s_out, 0}, kInt8, fused_activation::none,
                                   multiplier_rounding::double_rounding,
                                   scale_product::double_precision);
    const requant_params pf =
        quant::make_requant_params(s_in, sw, {s_out, 0}, kInt8, fused_activation::none,
                                   multiplier_rounding::double_rounding,
                                   scale_product::float_precision);
    ASSERT_EQ(pd.at(0), quant::quantize_multiplier(m_double));
    ASSERT_EQ(pf.at(0), quant::quantize_multiplier(m_float));
    ASSERT_EQ(quant::make_requant_params(s_in, s_w, {s_out, 0}, kInt8, fused_activation::none),
              pd);
    if (!(pd == pf)) ++differing;
  }
  // The float product loses ~2^-24 relative, far above M0's 2^-31 resolution:
  // most multipliers differ between the two TFLite code paths.
  EXPECT_GT(differing, 1000);
}

TEST(MakeRequantParams, SingleRoundingAndLargeMultipliers) {
  const std::array<float, 2> s_w{1.0f, 0.25f};
  const requant_params s = quant::make_requant_params(
      1.0f, s_w, {std::ldexp(1.0f, -31), 0}, kInt8, fused_activation::none,
      multiplier_rounding::single_rounding, scale_product::double_precision);
  EXPECT_EQ(s.rounding, multiplier_rounding::single_rounding);
  EXPECT_EQ(s.at(0), qm(kMax, 30));    // M = 2^31 (shift 32) saturates
  EXPECT_EQ(s.at(1), qm(kTwo30, 30));  // M = 2^29 = 2^30 * 2^(30 - 31)
  // Double rounding rejects M = 2^31 (shift 32).
  EXPECT_THROW((void)quant::make_requant_params(1.0f, s_w, {std::ldexp(1.0f, -31), 0}, kInt8,
                                                fused_activation::none),
               config_error);
  // M = 2^30 needs shift 31, the largest accepted.
  const requant_params d = quant::make_requant_params(1.0f, 1.0f, {std::ldexp(1.0f, -30), 0},
                                                      kInt8, fused_activation::none);
  EXPECT_EQ(d.at(0), qm(kTwo30, 31));
}

TEST(MakeRequantParams, RejectsInvalidInput) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> empty;
  const std::vector<float> bad{0.1f, 0.0f};
  EXPECT_THROW((void)quant::make_requant_params(1.0f, empty, {1.0f, 0}, kInt8,
                                                fused_activation::none),
               shape_error);
  try {
    (void)quant::make_requant_params(1.0f, bad, {1.0f, 0}, kInt8, fused_activation::none);
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("channel 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)quant::make_requant_params(nan, 0.1f, {1.0f, 0}, kInt8,
                                                fused_activation::none),
               config_error);
  EXPECT_THROW((void)quant::make_requant_params(0.1f, 0.1f, {-1.0f, 0}, kInt8,
                                                fused_activation::none),
               config_error);
  EXPECT_THROW((void)quant::make_requant_params(0.1f, 0.1f, {1.0f, 300}, kUint8,
                                                fused_activation::none),
               config_error);
}

// ---------------------------------------------------------------------------
// Integer output stage
// ---------------------------------------------------------------------------

template <class T>
tensor_view<T, 2> view2(std::vector<T>& v, index_t rows, index_t cols) {
  return tensor_view<T, 2>(v.data(), rows, cols);
}
template <class T>
tensor_view<const T, 2> cview2(const std::vector<T>& v, index_t rows, index_t cols) {
  return tensor_view<const T, 2>(v.data(), rows, cols);
}

TEST(Requantize, HandComputedPerChannelExample) {
  // s_in = s_out = 1, s_w = {0.25, 0.5, 0.75}: M0 = {2^30, 2^30, 3 * 2^29}, shifts {-1, 0, 0}.
  const std::vector<float> s_w{0.25f, 0.5f, 0.75f};
  requant_params p = quant::make_requant_params(1.0f, s_w, {1.0f, 5}, kInt8, fused_activation::none);
  const std::vector<std::int32_t> acc{-9, 13, 2,  //
                                      -4, -7, -2};
  const std::vector<std::int32_t> bias{10, -10, 0};
  std::vector<std::int8_t> out(6);
  quant::requantize<std::int8_t>(cview2(acc, 2, 3), bias, p, view2(out, 2, 3));
  // Sums {1, 3, 2; 6, -17, -2}.
  //   1 * 0.25: SRDHM 0.5 -> 1, RDBPOT 0.5 -> 1 (double rounding; exact 0.25)  -> 6
  //   3 * 0.5  = 1.5 -> 2 (tie up)                                             -> 7
  //   2 * 0.75 = 1.5 -> 2                                                      -> 7
  //   6 * 0.25: SRDHM 3, RDBPOT 1.5 -> 2                                       -> 7
  //  -17 * 0.5 = -8.5 -> -8 (SRDHM ties toward +inf)                           -> -3
  //  -2 * 0.75 = -1.5 -> -1                                                    -> 4
  EXPECT_EQ(out, (std::vector<std::int8_t>{6, 7, 7, 7, -3, 4}));

  // The single-rounding build rounds 0.25 to 0: only the first entry changes.
  p = quant::make_requant_params(1.0f, s_w, {1.0f, 5}, kInt8, fused_activation::none,
                                 multiplier_rounding::single_rounding,
                                 scale_product::double_precision);
  quant::requantize<std::int8_t>(cview2(acc, 2, 3), bias, p, view2(out, 2, 3));
  EXPECT_EQ(out, (std::vector<std::int8_t>{5, 7, 7, 7, -3, 4}));
}

TEST(Requantize, SaturatesAndAppliesFusedActivations) {
  // M = 0.5 per tensor, zp_out = -3.
  const std::vector<std::int32_t> acc{1000, -1000, 20, -20, 0, 7};
  std::vector<std::int8_t> out(6);
  auto run = [&](fused_activation act, float s_out) {
    const requant_params p = quant::make_requant_params(0.5f, 1.0f * s_out, {s_out, -3}, kInt8, act);
    quant::requantize<std::int8_t>(cview2(acc, 1, 6), {}, p, view2(out, 1, 6));
    return out;
  };
  // 1000 * 0.5 - 3 = 497 -> 127; -503 -> -128; 10 - 3 = 7; -13; -3; 7 * 0.5 = 3.5 -> 4, 4 - 3 = 1.
  EXPECT_EQ(run(fused_activation::none, 1.0f), (std::vector<std::int8_t>{127, -128, 7, -13, -3, 1}));
  EXPECT_EQ(run(fused_activation::relu, 1.0f), (std::vector<std::int8_t>{127, -3, 7, -3, -3, 1}));
  // s_out = 1: relu6 clamps to [zp, zp + 6] = [-3, 3].
  EXPECT_EQ(run(fused_activation::relu6, 1.0f), (std::vector<std::int8_t>{3, -3, 3, -3, -3, 1}));
  EXPECT_EQ(run(fused_activation::relu_n1_to_1, 1.0f),
            (std::vector<std::int8_t>{-2, -4, -2, -4, -3, -2}));
}

TEST(Requantize, Uint8AndInt16Outputs) {
  const std::vector<std::int32_t> acc{300, -300, 1, 100000, -100000};
  {
    // uint8, zp 128, M = 0.5.
    const requant_params p =
        quant::make_requant_params(1.0f, 0.5f, {1.0f, 128}, kUint8, fused_activation::none);
    std::vector<std::uint8_t> out(5);
    quant::requantize<std::uint8_t>(cview2(acc, 1, 5), {}, p, view2(out, 1, 5));
    EXPECT_EQ(out, (std::vector<std::uint8_t>{255, 0, 129, 255, 0}));  // 0.5 -> 1
  }
  {
    // int16, zp 0, M = 0.25.
    const requant_params p =
        quant::make_requant_params(1.0f, 0.25f, {1.0f, 0}, kInt16, fused_activation::none);
    std::vector<std::int16_t> out(5);
    quant::requantize<std::int16_t>(cview2(acc, 1, 5), {}, p, view2(out, 1, 5));
    EXPECT_EQ(out, (std::vector<std::int16_t>{75, -75, 1, 25000, -25000}));
  }
}

TEST(Requantize, WrapsTheBiasAddLikeTflite) {
  // INT32_MAX + 1 wraps to INT32_MIN before the multiply (documented; never happens
  // inside the accumulator bound).
  const quantized_multiplier m{kTwo30, 0};
  EXPECT_EQ(quant::requantize_value(kMax, 1, m, 0, kInt32, multiplier_rounding::double_rounding),
            -kTwo30);
  EXPECT_EQ(quant::requantize_value(kMax, 1, m, 0, kInt8, multiplier_rounding::double_rounding),
            -128);
  // The zero-point add is exact: (2^31 - 2) + (2^31 - 1) does not wrap, it clamps.
  EXPECT_EQ(quant::requantize_value(kMax, 0, {kMax, 0}, kMax, kInt32,
                                    multiplier_rounding::double_rounding),
            kMax);
}

TEST(Requantize, MatchesIntegerReferenceExactlyAndDoubleReferenceWithinOne) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(108);
  const index_t rows = 37;
  const index_t cols = 29;
  std::uniform_real_distribution<float> scale(0.5f, 2.0f);
  for (int trial = 0; trial < 40; ++trial) {
    const float s_in = 0.02f * scale(rng);
    const float s_out = 0.05f * scale(rng);
    std::vector<float> s_w(static_cast<std::size_t>(cols));
    for (float& s : s_w) s = 0.004f * scale(rng);
    const auto mode = trial % 2 == 0 ? multiplier_rounding::double_rounding
                                     : multiplier_rounding::single_rounding;
    const auto act = static_cast<fused_activation>(trial % 4);
    const std::int32_t zp = static_cast<std::int32_t>(rng() % 256) - 128;
    const bool per_tensor = trial % 5 == 0;
    const std::span<const float> sw = per_tensor ? std::span<const float>(s_w.data(), 1)
                                                 : std::span<const float>(s_w);
    const requant_params p = quant::make_requant_params(s_in, sw, {s_out, zp}, kInt8, act, mode,
                                                        scale_product::double_precision);
    std::vector<std::int32_t> acc(static_cast<std::size_t>(rows * cols));
    std::vector<std::int32_t> bias(static_cast<std::size_t>(cols));
    // Accumulators up to 2^20 (a K of a few hundred) reach past the int8 range.
    for (auto& a : acc) a = static_cast<std::int32_t>(rng() % (1u << 21)) - (1 << 20);
    for (auto& b : bias) b = static_cast<std::int32_t>(rng() % (1u << 15)) - (1 << 14);
    std::vector<std::int8_t> out(acc.size());
    quant::requantize<std::int8_t>(cview2(acc, rows, cols), bias, p, view2(out, rows, cols));
    for (index_t i = 0; i < rows; ++i) {
      for (index_t j = 0; j < cols; ++j) {
        const std::size_t k = static_cast<std::size_t>(i * cols + j);
        const std::size_t c = per_tensor ? 0 : static_cast<std::size_t>(j);
        const std::int32_t want = ref_requantize(acc[k], bias[static_cast<std::size_t>(j)],
                                                 p.at(j), zp, {p.act_min, p.act_max}, mode);
        ASSERT_EQ(out[k], want) << "trial " << trial << " (" << i << ", " << j << ")";
        // Double reference: round((acc + bias) * M) + zp, clamped.
        const double m = static_cast<double>(s_in) * s_w[c] / s_out;
        const double y = std::round(static_cast<double>(acc[k] + bias[static_cast<std::size_t>(j)]) * m);
        const double r = std::clamp(y + zp, static_cast<double>(p.act_min),
                                    static_cast<double>(p.act_max));
        ASSERT_LE(std::fabs(static_cast<double>(out[k]) - r), 1.0)
            << "trial " << trial << " (" << i << ", " << j << ")";
      }
    }
  }
}

TEST(Requantize, StridedViewsAndRowKernel) {
  // A GEMM result with leading dimension 5 holding a [2, 3] block.
  const std::vector<std::int32_t> buf{4, 8, -12, 99, 99,  //
                                      -4, 16, 2, 99, 99};
  const requant_params p =
      quant::make_requant_params(1.0f, 0.25f, {1.0f, 0}, kInt8, fused_activation::none);
  tensor_view<const std::int32_t, 2, layout_stride> acc(
      buf.data(), layout_stride::mapping<qprune::extents<2>>(qprune::extents<2>(2, 3), {5, 1}));
  std::vector<std::int8_t> out(6);
  quant::requantize<std::int8_t>(acc, {}, p, view2(out, 2, 3));
  // 1, 2, -3, -1, 4, 0.5 -> 1 (SRDHM 1, RDBPOT 0.5 -> 1)
  EXPECT_EQ(out, (std::vector<std::int8_t>{1, 2, -3, -1, 4, 1}));

  std::vector<std::int8_t> row(3);
  const std::vector<std::int32_t> bias{4, 0, 0};
  quant::requantize_row<std::int8_t>(buf.data() + 5, bias.data(), p, 3, row.data());
  EXPECT_EQ(row, (std::vector<std::int8_t>{0, 4, 1}));
  quant::requantize_row<std::int8_t>(buf.data(), nullptr, p, 3, row.data());
  EXPECT_EQ(row, (std::vector<std::int8_t>{1, 2, -3}));
}

TEST(Requantize, RejectsMismatchedShapesAndBadParameters) {
  const std::vector<std::int32_t> acc(6, 0);
  std::vector<std::int8_t> out(6);
  std::vector<std::uint8_t> out_u8(6);
  const std::vector<float> s_w{0.1f, 0.1f, 0.1f};
  const requant_params good =
      quant::make_requant_params(1.0f, s_w, {1.0f, 0}, kInt8, fused_activation::none);
  const std::vector<std::int32_t> bias2{1, 2};
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), bias2, good, view2(out, 2, 3)),
               shape_error);
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, good, view2(out, 3, 2)),
               shape_error);
  // Three multipliers for two columns.
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 3, 2), {}, good, view2(out, 3, 2)),
               shape_error);
  requant_params p = good;
  p.shifts.pop_back();
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               shape_error);
  p = good;
  p.multipliers[1] = -5;
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               config_error);
  p = good;
  p.shifts[2] = 32;
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               config_error);
  p = good;
  p.shifts[2] = 31;
  EXPECT_NO_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)));
  p.rounding = multiplier_rounding::single_rounding;
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               config_error);
  // An int8 activation range does not fit uint8.
  EXPECT_THROW(quant::requantize<std::uint8_t>(cview2(acc, 2, 3), {}, good, view2(out_u8, 2, 3)),
               config_error);
  p = good;
  p.act_min = 10;
  p.act_max = 9;
  EXPECT_THROW(quant::requantize<std::int8_t>(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               config_error);
}

// ---------------------------------------------------------------------------
// Float output stage
// ---------------------------------------------------------------------------

TEST(DequantizeAccumulators, HandComputedExample) {
  const std::vector<float> s_w{0.25f, 2.0f, 8.0f};
  const std::vector<std::int32_t> acc{3, -5, 1, -3, 5, -1};
  const std::vector<std::int32_t> bias{1, 2, 0};
  std::vector<float> out(6);
  auto run = [&](fused_activation act) {
    const auto p = quant::make_float_output_params(0.5f, s_w, act);
    quant::dequantize_accumulators(cview2(acc, 2, 3), bias, p, view2(out, 2, 3));
    return out;
  };
  // scales {0.125, 1, 4}; sums {4, -3, 1; -2, 7, -1}.
  const auto p = quant::make_float_output_params(0.5f, s_w, fused_activation::none);
  EXPECT_EQ(p.scales, (std::vector<float>{0.125f, 1.0f, 4.0f}));
  EXPECT_EQ(run(fused_activation::none), (std::vector<float>{0.5f, -3.0f, 4.0f, -0.25f, 7.0f, -4.0f}));
  EXPECT_EQ(run(fused_activation::relu), (std::vector<float>{0.5f, 0.0f, 4.0f, 0.0f, 7.0f, 0.0f}));
  EXPECT_EQ(run(fused_activation::relu6), (std::vector<float>{0.5f, 0.0f, 4.0f, 0.0f, 6.0f, 0.0f}));
  EXPECT_EQ(run(fused_activation::relu_n1_to_1),
            (std::vector<float>{0.5f, -1.0f, 1.0f, -0.25f, 1.0f, -1.0f}));
  // ReLU'd negatives are +0, not -0.
  EXPECT_FALSE(std::signbit(run(fused_activation::relu)[1]));
}

TEST(DequantizeAccumulators, FloatArithmeticIsBitExact) {
  // float(2^24 + 1) rounds to 2^24 (ties to even), then one product.
  EXPECT_EQ(quant::dequantize_accumulator((1 << 24) + 1, 0, 1.0f, fused_activation::none),
            16777216.0f);
  EXPECT_EQ(quant::dequantize_accumulator((1 << 24) + 3, 0, 1.0f, fused_activation::none),
            16777220.0f);

  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(109);
  std::uniform_real_distribution<float> d(1e-4f, 1e-1f);
  for (int i = 0; i < 100000; ++i) {
    const float s_in = d(rng);
    const float s_w = d(rng);
    const std::int32_t a = random_int32(rng) / 2;
    const std::int32_t b = random_int32(rng) / 4;
    const std::array<float, 1> sw{s_w};
    const auto p = quant::make_float_output_params(s_in, sw, fused_activation::none);
    ASSERT_EQ(p.scales[0], s_in * s_w);
    const float got = quant::dequantize_accumulator(a, b, p.scales[0], fused_activation::none);
    const std::int32_t sum = a + b;  // no overflow: |a| < 2^30, |b| < 2^29
    ASSERT_EQ(got, static_cast<float>(sum) * p.scales[0]);
    // Two roundings: within 2^-23 relative of the exact product with the float scale.
    const double exact = static_cast<double>(sum) * static_cast<double>(p.scales[0]);
    ASSERT_LE(std::fabs(static_cast<double>(got) - exact),
              (std::ldexp(1.0, -23) + std::ldexp(1.0, -47)) * std::fabs(exact));
  }
}

TEST(DequantizeAccumulators, RejectsBadInput) {
  const std::vector<std::int32_t> acc(6, 0);
  std::vector<float> out(6);
  const std::vector<float> empty;
  EXPECT_THROW((void)quant::make_float_output_params(1.0f, empty, fused_activation::none),
               shape_error);
  const std::vector<float> zero{0.0f};
  EXPECT_THROW((void)quant::make_float_output_params(1.0f, zero, fused_activation::none),
               config_error);
  const std::vector<float> tiny{1e-30f};
  EXPECT_THROW((void)quant::make_float_output_params(1e-30f, tiny, fused_activation::none),
               config_error);  // the product underflows to 0
  quant::float_output_params p{{1.0f, 2.0f}, fused_activation::none};
  EXPECT_THROW(quant::dequantize_accumulators(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               shape_error);
  p.scales = {1.0f, std::numeric_limits<float>::infinity(), 1.0f};
  EXPECT_THROW(quant::dequantize_accumulators(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)),
               config_error);
  p.scales = {1.0f};
  const std::vector<std::int32_t> bias4{1, 2, 3, 4};
  EXPECT_THROW(quant::dequantize_accumulators(cview2(acc, 2, 3), bias4, p, view2(out, 2, 3)),
               shape_error);
  EXPECT_NO_THROW(quant::dequantize_accumulators(cview2(acc, 2, 3), {}, p, view2(out, 2, 3)));
}

}  // namespace

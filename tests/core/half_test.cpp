// Scalar half / bfloat16 conversions: hand-checked tables, every one of the
// 65,536 half patterns, and vectors produced by numpy (float16) and torch
// (bfloat16) under tests/data/half/ (gen_half_vectors.py made them).
#include "qprune/core/half.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "support/data.hpp"

namespace {

using qprune::bfloat16;
using qprune::half;

std::uint16_t h_bits(float f) { return half(f).bits; }
std::uint16_t b_bits(float f) { return bfloat16(f).bits; }
float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }
bool is_nan_bits16(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }
bool is_bf16_nan(std::uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0; }

TEST(Half, HandCheckedTable) {
  EXPECT_EQ(h_bits(0.0f), 0x0000);
  EXPECT_EQ(h_bits(-0.0f), 0x8000);
  EXPECT_EQ(h_bits(1.0f), 0x3c00);
  EXPECT_EQ(h_bits(-2.0f), 0xc000);
  EXPECT_EQ(h_bits(65504.0f), 0x7bff);   // largest finite
  EXPECT_EQ(h_bits(65519.0f), 0x7bff);   // below the midpoint to 2^16
  EXPECT_EQ(h_bits(65520.0f), 0x7c00);   // the midpoint ties to even: inf
  EXPECT_EQ(h_bits(-1e9f), 0xfc00);
  EXPECT_EQ(h_bits(0x1p-14f), 0x0400);   // smallest normal
  EXPECT_EQ(h_bits(0x1p-24f), 0x0001);   // smallest subnormal
  EXPECT_EQ(h_bits(0x1p-25f), 0x0000);   // tie between 0 and 2^-24: even is 0
  EXPECT_EQ(h_bits(0x1.8p-24f), 0x0002); // tie between 1 and 2 units: even is 2
  EXPECT_EQ(h_bits(0x1.000002p-25f), 0x0001);  // just above the tie
  EXPECT_EQ(h_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  // Ties in the normal range: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(h_bits(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(h_bits(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(h_bits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(h_bits(-std::numeric_limits<float>::infinity()), 0xfc00);
  // NaN: quiet, sign and top payload bits kept.
  EXPECT_EQ(h_bits(from_bits(0x7fc00000u)), 0x7e00);
  EXPECT_EQ(h_bits(from_bits(0xffc00000u)), 0xfe00);
  EXPECT_EQ(h_bits(from_bits(0x7f802000u)), 0x7e01);  // signalling in, quiet out
  EXPECT_EQ(h_bits(from_bits(0x7f800001u)), 0x7e00);  // payload below bit 13 is dropped
}

TEST(Half, EveryPatternRoundTripsThroughFloat) {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const float f = static_cast<float>(half::from_bits(h));
    const std::uint16_t back = half(f).bits;
    if (is_nan_bits16(h)) {
      ASSERT_TRUE(std::isnan(f)) << b;
      ASSERT_EQ(back, h | 0x0200u) << "NaN comes back quiet, payload kept: " << b;
    } else {
      ASSERT_EQ(back, h) << b;
    }
  }
}

TEST(Half, HalfToFloatMatchesNumpyForAllPatterns) {
  const auto expected = qprune::test::read_raw<std::uint32_t>("half/half_to_float.u32");
  ASSERT_EQ(expected.size(), 65536u);
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<std::uint16_t>(b);
    const auto got = std::bit_cast<std::uint32_t>(static_cast<float>(half::from_bits(h)));
    if (is_nan_bits16(h)) {
      // numpy keeps signalling NaNs signalling; qprune makes them quiet (as F16C does).
      ASSERT_EQ(got, expected[b] | 0x00400000u) << b;
    } else {
      ASSERT_EQ(got, expected[b]) << b;
    }
  }
}

TEST(Half, FloatToHalfMatchesNumpy) {
  const auto in = qprune::test::read_raw<std::uint32_t>("half/float_to_half.in.u32");
  const auto out = qprune::test::read_raw<std::uint16_t>("half/float_to_half.out.u16");
  ASSERT_EQ(in.size(), out.size());
  ASSERT_GT(in.size(), 40000u);
  for (std::size_t i = 0; i < in.size(); ++i) {
    const float f = from_bits(in[i]);
    const std::uint16_t got = half(f).bits;
    if (std::isnan(f)) {
      ASSERT_TRUE(is_nan_bits16(got)) << i;
      ASSERT_EQ(got & 0x8000u, out[i] & 0x8000u) << "NaN sign, input bits " << in[i];
    } else {
      ASSERT_EQ(got, out[i]) << "input bits 0x" << std::hex << in[i];
    }
  }
}

TEST(BFloat16, HandCheckedTable) {
  EXPECT_EQ(b_bits(1.0f), 0x3f80);
  EXPECT_EQ(b_bits(-0.0f), 0x8000);
  EXPECT_EQ(b_bits(from_bits(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(b_bits(from_bits(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(b_bits(from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(b_bits(std::numeric_limits<float>::max()), 0x7f80);  // rounds past FLT_MAX
  EXPECT_EQ(b_bits(from_bits(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(b_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(b_bits(from_bits(0x00018000u)), 0x0002);  // subnormal tie to even
  EXPECT_EQ(b_bits(from_bits(0x7f800001u)), 0x7fc0);  // signalling NaN made quiet
  EXPECT_EQ(b_bits(from_bits(0xffc12345u)), 0xffc1);
  EXPECT_EQ(std::bit_cast<std::uint32_t>(static_cast<float>(bfloat16::from_bits(0x7f81))),
            0x7fc10000u);
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto x = static_cast<std::uint16_t>(b);
    const std::uint16_t back = bfloat16(static_cast<float>(bfloat16::from_bits(x))).bits;
    ASSERT_EQ(back, is_bf16_nan(x) ? (x | 0x0040u) : x) << b;
  }
}

TEST(BFloat16, FloatToBf16MatchesTorch) {
  const auto in = qprune::test::read_raw<std::uint32_t>("half/float_to_bf16.in.u32");
  const auto out = qprune::test::read_raw<std::uint16_t>("half/float_to_bf16.out.u16");
  ASSERT_EQ(in.size(), out.size());
  ASSERT_GT(in.size(), 40000u);
  for (std::size_t i = 0; i < in.size(); ++i) {
    const float f = from_bits(in[i]);
    const std::uint16_t got = bfloat16(f).bits;
    if (std::isnan(f)) {
      // torch returns one canonical NaN (0x7fc0); qprune keeps sign and payload.
      ASSERT_TRUE(is_bf16_nan(got)) << i;
      ASSERT_TRUE(is_bf16_nan(out[i])) << i;
    } else {
      ASSERT_EQ(got, out[i]) << "input bits 0x" << std::hex << in[i];
    }
  }
}

// The scalar conversions are usable in constant expressions.
static_assert(half(1.0f).bits == 0x3c00);
static_assert(static_cast<float>(half::from_bits(0x3555)) == 0.333251953125f);
static_assert(bfloat16(1.0f).bits == 0x3f80);

}  // namespace

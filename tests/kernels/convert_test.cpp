// Every SIMD path of the bulk conversions against the scalar twin, bit for bit,
// on random bit patterns, edge values and awkward sizes (tails of every length).
#include "qprune/kernels/convert.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "support/random.hpp"

namespace {

using qprune::bfloat16;
using qprune::half;
using qprune::kernels::isa;

class ConvertPaths : public ::testing::TestWithParam<isa> {};

std::vector<float> edge_and_random_floats(std::size_t n, std::uint64_t salt) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.0f, 65520.0f, -65520.0f,
                          0x1p-14f, 0x1p-24f, 0x1p-25f, 0x1.8p-24f,
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::bit_cast<float>(0x7fc00000u), std::bit_cast<float>(0xff800001u),
                          std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u),
                          1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f};
  auto rng = qprune::test::make_rng(salt);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::uniform_real_distribution<float> small(-70000.0f, 70000.0f);
  while (v.size() < n) {
    v.push_back(std::bit_cast<float>(bits(rng)));
    v.push_back(small(rng));
  }
  v.resize(n);
  return v;
}

TEST_P(ConvertPaths, F32ToF16MatchesReferenceForEveryTailLength) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto src = edge_and_random_floats(4096 + 77, 1);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8},
                        std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{31},
                        std::size_t{63}, std::size_t{64}, std::size_t{65}, std::size_t{127},
                        std::size_t{1009}, src.size()}) {
    for (std::size_t offset : {std::size_t{0}, std::size_t{3}}) {  // unaligned starts too
      if (offset + n > src.size()) continue;
      std::span<const float> in(src.data() + offset, n);
      std::vector<half> got(n + 1, half::from_bits(0xdead)), want(n);
      qprune::kernels::convert(in, std::span<half>(got.data(), n), GetParam());
      qprune::kernels::reference::convert_f32_f16(in.data(), want.data(), n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i].bits, want[i].bits)
            << "n=" << n << " i=" << i << " in=0x" << std::hex << std::bit_cast<std::uint32_t>(in[i]);
      }
      EXPECT_EQ(got[n].bits, 0xdead) << "wrote past the end, n=" << n;
    }
  }
}

TEST_P(ConvertPaths, F16ToF32MatchesReferenceForAllPatterns) {
  std::vector<half> all(65536 + 13);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = half::from_bits(static_cast<std::uint16_t>(i));
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{17}, all.size()}) {
    std::vector<float> got(n + 1, -3.0f), want(n);
    qprune::kernels::convert(std::span<const half>(all.data(), n), std::span<float>(got.data(), n),
                             GetParam());
    qprune::kernels::reference::convert_f16_f32(all.data(), want.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want[i]))
          << "half bits " << all[i].bits;
    }
    EXPECT_EQ(got[n], -3.0f);
  }
}

TEST_P(ConvertPaths, F32ToBf16MatchesReference) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto src = edge_and_random_floats(8192 + 5, 2);
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{16},
                        std::size_t{17}, std::size_t{33}, src.size()}) {
    std::vector<bfloat16> got(n + 1, bfloat16::from_bits(0xbeef)), want(n);
    qprune::kernels::convert(std::span<const float>(src.data(), n),
                             std::span<bfloat16>(got.data(), n), GetParam());
    qprune::kernels::reference::convert_f32_bf16(src.data(), want.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[i].bits, want[i].bits)
          << "i=" << i << " in=0x" << std::hex << std::bit_cast<std::uint32_t>(src[i]);
    }
    EXPECT_EQ(got[n].bits, 0xbeef);
  }
}

TEST_P(ConvertPaths, Bf16ToF32MatchesReferenceForAllPatterns) {
  std::vector<bfloat16> all(65536 + 9);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = bfloat16::from_bits(static_cast<std::uint16_t>(i));
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{16}, all.size()}) {
    std::vector<float> got(n + 1, -3.0f), want(n);
    qprune::kernels::convert(std::span<const bfloat16>(all.data(), n),
                             std::span<float>(got.data(), n), GetParam());
    qprune::kernels::reference::convert_bf16_f32(all.data(), want.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want[i]))
          << "bf16 bits " << all[i].bits;
    }
    EXPECT_EQ(got[n], -3.0f);
  }
}

TEST_P(ConvertPaths, LargerThanCacheArray) {
  // 8 M elements (32 MiB of floats): well past L2, exercises the long loop.
  const std::size_t n = std::size_t{8} << 20;
  std::vector<float> src(n);
  auto rng = qprune::test::make_rng(3);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  for (auto& x : src) x = nd(rng);
  std::vector<half> got(n), want(n);
  qprune::kernels::convert(std::span<const float>(src), std::span<half>(got), GetParam());
  qprune::kernels::reference::convert_f32_f16(src.data(), want.data(), n);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), n * sizeof(half)), 0);
}

INSTANTIATE_TEST_SUITE_P(AllSupported, ConvertPaths,
                         ::testing::ValuesIn(qprune::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<isa>& p) {
                           return std::string(qprune::kernels::to_string(p.param));
                         });

TEST(Convert, MismatchedSizesThrowShapeError) {
  std::vector<float> in(4);
  std::vector<half> out(3);
  EXPECT_THROW(qprune::kernels::convert(std::span<const float>(in), std::span<half>(out)),
               qprune::shape_error);
}

}  // namespace

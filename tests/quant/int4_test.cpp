// Tests for quant/int4.hpp: nibble order and sign extension against hand-packed
// bytes, round trips over edge sizes, range checks, and per-group quantization
// straight to packed codes checked against the unpacked per-group quantizer.
#include "qprune/quant/int4.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::extents;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor_view;
namespace quant = qprune::quant;
using quant::int4_scheme;
using quant::per_group_params;

TEST(Int4Pack, LowNibbleFirstTwosComplement) {
  const std::vector<std::int8_t> v{1, -1, 7, -8, 0};
  // (1 | 0xF << 4), (7 | 0x8 << 4), (0 | padding 0)
  EXPECT_EQ(quant::pack_int4(v), (std::vector<std::uint8_t>{0xF1, 0x87, 0x00}));
  const std::vector<std::int8_t> w{-2, 3, 5, -7};
  EXPECT_EQ(quant::pack_int4(w), (std::vector<std::uint8_t>{0x3E, 0x95}));
  const std::vector<std::uint8_t> u{0x3, 0xA, 0xF};
  EXPECT_EQ(quant::pack_uint4(u), (std::vector<std::uint8_t>{0xA3, 0x0F}));
  EXPECT_TRUE(quant::pack_int4(std::vector<std::int8_t>{}).empty());
  EXPECT_EQ(quant::pack_uint4(std::vector<std::uint8_t>{9}), (std::vector<std::uint8_t>{0x09}));
}

TEST(Int4Pack, UnpackSignExtends) {
  const std::vector<std::uint8_t> bytes{0xF1, 0x87, 0x7C};
  EXPECT_EQ(quant::unpack_int4(bytes, 6), (std::vector<std::int8_t>{1, -1, 7, -8, -4, 7}));
  EXPECT_EQ(quant::unpack_uint4(bytes, 6), (std::vector<std::uint8_t>{1, 15, 7, 8, 12, 7}));
  // Odd count: the padding nibble is not read.
  EXPECT_EQ(quant::unpack_int4(bytes, 5), (std::vector<std::int8_t>{1, -1, 7, -8, -4}));
  for (int n = 0; n < 16; ++n) {
    EXPECT_EQ(quant::int4_from_nibble(static_cast<std::uint8_t>(n)), n < 8 ? n : n - 16) << n;
    // High bits of the byte are ignored.
    EXPECT_EQ(quant::int4_from_nibble(static_cast<std::uint8_t>(0xA0 | n)), n < 8 ? n : n - 16);
  }
}

TEST(Int4Pack, RoundTripEdgeSizes) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(401);
  std::uniform_int_distribution<int> sd(-8, 7);
  std::uniform_int_distribution<int> ud(0, 15);
  for (index_t n : {0, 1, 2, 15, 16, 17, 31, 97, 1000, 1001}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    std::vector<std::int8_t> s(static_cast<std::size_t>(n));
    std::vector<std::uint8_t> u(static_cast<std::size_t>(n));
    for (auto& x : s) x = static_cast<std::int8_t>(sd(rng));
    for (auto& x : u) x = static_cast<std::uint8_t>(ud(rng));
    const auto ps = quant::pack_int4(s);
    const auto pu = quant::pack_uint4(u);
    ASSERT_EQ(static_cast<index_t>(ps.size()), quant::packed_4bit_bytes(n));
    ASSERT_EQ(static_cast<index_t>(pu.size()), (n + 1) / 2);
    EXPECT_EQ(quant::unpack_int4(ps, n), s);
    EXPECT_EQ(quant::unpack_uint4(pu, n), u);
    if (n % 2 == 1) {
      EXPECT_EQ(ps.back() >> 4, 0);
      EXPECT_EQ(pu.back() >> 4, 0);
    }
    for (index_t i = 0; i < n; ++i) {
      ASSERT_EQ(quant::int4_from_nibble(quant::nibble_at(ps, i)), s[static_cast<std::size_t>(i)]);
    }
  }
}

TEST(Int4Pack, RejectsValuesOutsideTheRangeAndWrongSizes) {
  EXPECT_THROW((void)quant::pack_int4(std::vector<std::int8_t>{0, 8}), config_error);
  EXPECT_THROW((void)quant::pack_int4(std::vector<std::int8_t>{-9}), config_error);
  EXPECT_THROW((void)quant::pack_uint4(std::vector<std::uint8_t>{16}), config_error);
  std::vector<std::uint8_t> out(1, 0xAB);
  EXPECT_THROW(quant::pack_int4(std::vector<std::int8_t>{1, 2, 3}, out), shape_error);
  std::vector<std::uint8_t> out2(2, 0xAB);
  // A bad value writes nothing.
  EXPECT_THROW(quant::pack_int4(std::vector<std::int8_t>{1, 2, 100}, out2), config_error);
  EXPECT_EQ(out2, (std::vector<std::uint8_t>{0xAB, 0xAB}));
  std::vector<std::int8_t> vals(4);
  EXPECT_THROW(quant::unpack_int4(std::vector<std::uint8_t>{1}, vals), shape_error);
  EXPECT_THROW((void)quant::unpack_uint4(std::vector<std::uint8_t>{1, 2}, 5), shape_error);
  EXPECT_THROW((void)quant::unpack_uint4(std::vector<std::uint8_t>{}, -1), shape_error);
}

std::vector<float> random_weights(index_t rows, index_t cols, std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& x : w) x = nd(rng);
  return w;
}

TEST(Int4Weights, HandComputedSymmetricGroup) {
  // One row, 20 columns, group 16: groups [0, 16) and [16, 20).
  std::vector<float> w(20, 0.0f);
  w[0] = 7.0f;    // group 0 absmax 7 -> scale 1
  w[1] = -3.5f;   // tie -> -4 (even)
  w[2] = 2.5f;    // tie -> 2
  w[3] = -7.0f;
  w[16] = 0.7f;   // group 1 absmax 0.7 -> scale 0.1
  w[17] = -0.35f;
  const tensor_view<const float, 2> wv(w.data(), 1, 20);
  const auto m = quant::quantize_int4(wv, 16, int4_scheme::symmetric);
  ASSERT_EQ(m.params.scales.size(), 2u);
  EXPECT_EQ(m.params.scales[0], 1.0f);
  EXPECT_EQ(m.params.scales[1], 0.7f / 7.0f);
  EXPECT_EQ(m.params.zero_points, (std::vector<std::int32_t>{0, 0}));
  EXPECT_EQ(m.codes.extent(0), 1);
  EXPECT_EQ(m.codes.extent(1), 10);
  EXPECT_EQ(m.code(0, 0), 7);
  EXPECT_EQ(m.code(0, 1), -4);
  EXPECT_EQ(m.code(0, 2), 2);
  EXPECT_EQ(m.code(0, 3), -7);
  EXPECT_EQ(m.code(0, 16), 7);
  EXPECT_EQ(m.code(0, 17), static_cast<std::int32_t>(std::nearbyint(-0.35f / (0.7f / 7.0f))));
  // bytes: (7 | -4 << 4) = 0xC7, (2 | -7 << 4) = 0x92
  EXPECT_EQ(m.codes(0, 0), 0xC7);
  EXPECT_EQ(m.codes(0, 1), 0x92);
  EXPECT_EQ(m.codes(0, 2), 0x00);  // zeros
  // storage: 10 code bytes + 2 scales (zero points implied)
  EXPECT_EQ(quant::storage_bytes(m), 10 + 8);
}

template <class Q>
void expect_matches_unpacked_quantizer(const quant::packed_int4_matrix& m,
                                       const std::vector<float>& w, int4_scheme s) {
  const extents<2> e(m.rows, m.cols);
  std::vector<Q> ref(w.size());
  quant::quantize(tensor_view<const float, 2>(w.data(), e), tensor_view<Q, 2>(ref.data(), e),
                  m.params, quant::code_range(s));
  for (index_t r = 0; r < m.rows; ++r) {
    for (index_t c = 0; c < m.cols; ++c) {
      ASSERT_EQ(m.code(r, c), static_cast<std::int32_t>(ref[static_cast<std::size_t>(r * m.cols + c)]))
          << r << ", " << c;
    }
    if (m.cols % 2 == 1) {
      EXPECT_EQ(m.codes(r, m.row_bytes() - 1) >> 4, 0) << "padding nibble of row " << r;
    }
  }
  std::vector<float> dq(w.size()), dq_ref(w.size());
  quant::dequantize(m, tensor_view<float, 2>(dq.data(), e));
  quant::dequantize(tensor_view<const Q, 2>(ref.data(), e), tensor_view<float, 2>(dq_ref.data(), e),
                    m.params);
  EXPECT_EQ(dq, dq_ref);
}

TEST(Int4Weights, PackedCodesEqualTheUnpackedPerGroupQuantizer) {
  SCOPED_TRACE(qprune::test::seed_trace());
  struct shape {
    index_t rows, cols, group;
  };
  for (const shape sh : {shape{4, 64, 32}, shape{3, 40, 16}, shape{5, 33, 16}, shape{2, 17, 256},
                         shape{1, 1, 16}, shape{7, 300, 128}}) {
    SCOPED_TRACE(std::to_string(sh.rows) + "x" + std::to_string(sh.cols) + " g" +
                 std::to_string(sh.group));
    const auto w = random_weights(sh.rows, sh.cols, 402 + static_cast<std::uint64_t>(sh.cols));
    const tensor_view<const float, 2> wv(w.data(), sh.rows, sh.cols);
    for (int4_scheme s : {int4_scheme::symmetric, int4_scheme::symmetric_narrow}) {
      const auto m = quant::quantize_int4(wv, sh.group, s);
      EXPECT_EQ(m.kind, s);
      expect_matches_unpacked_quantizer<std::int8_t>(m, w, s);
      for (index_t r = 0; r < m.rows; ++r) {
        for (index_t c = 0; c < m.cols; ++c) {
          ASSERT_GE(m.code(r, c), s == int4_scheme::symmetric_narrow ? -7 : -8);
          ASSERT_LE(m.code(r, c), 7);
        }
      }
    }
    const auto ma = quant::quantize_int4(wv, sh.group, int4_scheme::affine);
    expect_matches_unpacked_quantizer<std::uint8_t>(ma, w, int4_scheme::affine);
    const auto groups = (sh.cols + sh.group - 1) / sh.group;
    EXPECT_EQ(quant::storage_bytes(ma), sh.rows * ((sh.cols + 1) / 2) + 8 * sh.rows * groups);
  }
}

TEST(Int4Weights, RoundTripErrorAndZeros) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const index_t rows = 6, cols = 96;
  auto w = random_weights(rows, cols, 410);
  auto rng = qprune::test::make_rng(411);
  std::bernoulli_distribution pruned(0.4);
  for (auto& x : w) {
    if (pruned(rng)) x = 0.0f;
  }
  const tensor_view<const float, 2> wv(w.data(), rows, cols);
  for (int4_scheme s : {int4_scheme::symmetric, int4_scheme::symmetric_narrow, int4_scheme::affine}) {
    const auto m = quant::quantize_int4(wv, 32, s);
    std::vector<float> dq(w.size());
    quant::dequantize(m, tensor_view<float, 2>(dq.data(), rows, cols));
    const quant::qrange range = quant::code_range(s);
    index_t clipped = 0;
    for (index_t r = 0; r < rows; ++r) {
      for (index_t c = 0; c < cols; ++c) {
        const auto i = static_cast<std::size_t>(r * cols + c);
        const auto g = static_cast<std::size_t>(r * 3 + c / 32);
        const float scale = m.params.scales[g];
        if (w[i] == 0.0f) {
          ASSERT_EQ(dq[i], 0.0f) << "pruned zero at " << r << ", " << c;
        }
        const double u = quant::unclamped_code(w[i], scale, m.params.zero_points[g],
                                               quant::rounding::half_to_even);
        if (u < range.qmin || u > range.qmax) {
          ++clipped;
          continue;
        }
        // Inside the range: half a step, plus one float rounding of w / scale and of the product.
        ASSERT_LE(std::fabs(static_cast<double>(w[i]) - dq[i]),
                  0.5 * scale + (std::fabs(w[i]) + std::fabs(dq[i])) * 0x1p-24)
            << r << ", " << c;
      }
    }
    // Symmetric parameters are max|w| / 7 per group, so nothing clips.
    if (s != int4_scheme::affine) {
      EXPECT_EQ(clipped, 0);
    }
  }
}

TEST(Int4Weights, RejectsBadParameters) {
  std::vector<float> w(2 * 32, 0.25f);
  const tensor_view<const float, 2> wv(w.data(), 2, 32);
  EXPECT_THROW((void)quant::quantize_int4(wv, 24, int4_scheme::symmetric), config_error);
  EXPECT_THROW((void)quant::quantize_int4(wv, 8, int4_scheme::affine), config_error);
  // symmetric schemes need zero point 0
  EXPECT_THROW((void)quant::quantize_int4(wv, per_group_params{{0.1f, 0.1f}, {0, 1}, 1, 32},
                                          int4_scheme::symmetric),
               config_error);
  // zero point outside the scheme's range
  EXPECT_THROW((void)quant::quantize_int4(wv, per_group_params{{0.1f, 0.1f}, {0, 16}, 1, 32},
                                          int4_scheme::affine),
               config_error);
  EXPECT_THROW((void)quant::quantize_int4(wv, per_group_params{{0.1f, 0.1f}, {-8, 0}, 1, 32},
                                          int4_scheme::symmetric_narrow),
               config_error);
  // axis 0, wrong count, bad scale
  EXPECT_THROW((void)quant::quantize_int4(wv, per_group_params{{0.1f, 0.1f}, {0, 0}, 0, 32},
                                          int4_scheme::symmetric),
               config_error);
  EXPECT_THROW((void)quant::quantize_int4(wv, per_group_params{{0.1f}, {0}, 1, 32},
                                          int4_scheme::symmetric),
               shape_error);
  EXPECT_THROW((void)quant::quantize_int4(wv, per_group_params{{0.1f, 0.0f}, {0, 0}, 1, 32},
                                          int4_scheme::symmetric),
               config_error);
  w[5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW((void)quant::quantize_int4(wv, 32, int4_scheme::symmetric), config_error);
  w[5] = 0.25f;
  const auto m = quant::quantize_int4(wv, 32, int4_scheme::affine);
  std::vector<float> out(3 * 32);
  EXPECT_THROW(quant::dequantize(m, tensor_view<float, 2>(out.data(), 3, 32)), shape_error);
}

}  // namespace

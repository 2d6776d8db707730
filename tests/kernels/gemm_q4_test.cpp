// int4 grouped-weight GEMM: both paths (gemm_q4 float, gemm_q4_dynamic integer)
// on every ISA this CPU supports against their scalar twins bit for bit; the
// float twin against a float GEMM on quant::dequantize's matrix (bit for bit)
// and a double product (rounding bound); the integer twin against the double
// product within the activation quantization bound; extremes, NaN/inf, errors.
#include "qprune/kernels/gemm_q4.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "qprune/quant/int4.hpp"
#include "support/random.hpp"

namespace {

using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;
using qprune::quant::int4_scheme;
using qprune::quant::packed_int4_matrix;

constexpr double kU = 1.0 / 16777216.0;  // 2^-24, float unit roundoff

/// A [n, k] matrix from explicit codes (row-major, n*k values) and per-group parameters.
packed_int4_matrix make_matrix(int4_scheme s, index_t n, index_t k, index_t gs,
                               const std::vector<std::int32_t>& codes, std::vector<float> scales,
                               std::vector<std::int32_t> zps) {
  packed_int4_matrix m{s, n, k, tensor<std::uint8_t, 2>(n, qprune::quant::packed_4bit_bytes(k)),
                       qprune::quant::per_group_params{std::move(scales), std::move(zps), 1, gs}};
  for (index_t i = 0; i < n; ++i) {
    std::span<std::uint8_t> row(m.codes.data() + i * m.row_bytes(), static_cast<std::size_t>(m.row_bytes()));
    if (s == int4_scheme::affine) {
      std::vector<std::uint8_t> v(static_cast<std::size_t>(k));
      for (index_t j = 0; j < k; ++j) v[static_cast<std::size_t>(j)] = static_cast<std::uint8_t>(codes[static_cast<std::size_t>(i * k + j)]);
      qprune::quant::pack_uint4(v, row);
    } else {
      std::vector<std::int8_t> v(static_cast<std::size_t>(k));
      for (index_t j = 0; j < k; ++j) v[static_cast<std::size_t>(j)] = static_cast<std::int8_t>(codes[static_cast<std::size_t>(i * k + j)]);
      qprune::quant::pack_int4(v, row);
    }
  }
  return m;
}

index_t group_count(index_t k, index_t gs) { return k / gs + (k % gs != 0 ? 1 : 0); }

/// Random float weights quantized with quant::quantize_int4 (the realistic case).
packed_int4_matrix random_matrix(int4_scheme s, index_t n, index_t k, index_t gs, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 0.05f);
  tensor<float, 2> w(n, k);
  for (auto& v : w.span()) v = nd(rng) + (s == int4_scheme::affine ? 0.02f : 0.0f);
  return qprune::quant::quantize_int4(w.cview(), gs, s);
}

tensor<float, 2> random_x(index_t m, index_t k, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  tensor<float, 2> x(m, k);
  for (auto& v : x.span()) v = nd(rng);
  return x;
}

void expect_same_bits(const tensor<float, 2>& got, const tensor<float, 2>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (index_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got.data()[i]), std::bit_cast<std::uint32_t>(want.data()[i]))
        << "element " << i << ": got " << got.data()[i] << ", want " << want.data()[i];
  }
}

/// The float twin.
tensor<float, 2> twin_float(const tensor<float, 2>& x, const packed_int4_matrix& w, const std::vector<float>& bias,
                            bool relu) {
  tensor<float, 2> y(x.extent(0), w.rows);
  qprune::kernels::reference::gemm_q4(x.extent(0), w.rows, w.cols, x.data(), w.cols,
                                      qprune::kernels::reference::q4_rows_of(w),
                                      bias.empty() ? nullptr : bias.data(), relu, y.data(), w.rows);
  return y;
}

struct q8_acts {
  std::vector<std::int8_t> q;
  std::vector<float> d;
  std::vector<std::int32_t> sx;
  index_t ldq = 0;
};

q8_acts twin_quantize(const tensor<float, 2>& x, index_t gs) {
  const index_t m = x.extent(0), k = x.extent(1), groups = group_count(k, gs);
  q8_acts a;
  a.ldq = groups * gs;
  a.q.assign(static_cast<std::size_t>(m * a.ldq), 0);
  a.d.assign(static_cast<std::size_t>(m * groups), 0.0f);
  a.sx.assign(static_cast<std::size_t>(m * groups), 0);
  EXPECT_TRUE(qprune::kernels::reference::quantize_q8_rows(m, k, x.data(), k, gs, a.q.data(), a.ldq, a.d.data(),
                                                           a.sx.data()));
  return a;
}

/// The integer twin.
tensor<float, 2> twin_dynamic(const tensor<float, 2>& x, const packed_int4_matrix& w,
                              const std::vector<float>& bias, bool relu) {
  const q8_acts a = twin_quantize(x, w.params.group_size);
  tensor<float, 2> y(x.extent(0), w.rows);
  qprune::kernels::reference::gemm_q4_q8(x.extent(0), w.rows, w.cols, a.q.data(), a.ldq, a.d.data(),
                                         qprune::kernels::reference::q4_rows_of(w),
                                         bias.empty() ? nullptr : bias.data(), relu, y.data(), w.rows);
  return y;
}

/// Both paths on `path` against their twins, bit for bit.
void check_paths(isa path, const tensor<float, 2>& x, const packed_int4_matrix& w, const std::vector<float>& bias,
                 bool relu) {
  const auto packed = qprune::kernels::pack_q4(w, path);
  EXPECT_EQ(packed.path(), path);
  tensor<float, 2> got(x.extent(0), w.rows);
  {
    SCOPED_TRACE("float path");
    qprune::kernels::gemm_q4(x.cview(), packed, bias, relu, got.view());
    expect_same_bits(got, twin_float(x, w, bias, relu));
  }
  {
    SCOPED_TRACE("integer path");
    qprune::kernels::gemm_q4_dynamic(x.cview(), packed, bias, relu, got.view());
    expect_same_bits(got, twin_dynamic(x, w, bias, relu));
  }
}

std::string trace(isa path, index_t m, index_t n, index_t k, index_t gs, int4_scheme s) {
  return "isa=" + std::string(qprune::kernels::to_string(path)) + " M=" + std::to_string(m) +
         " N=" + std::to_string(n) + " K=" + std::to_string(k) + " group=" + std::to_string(gs) +
         " scheme=" + std::to_string(static_cast<int>(s)) + " " + qprune::test::seed_trace();
}

void check_random(isa path, index_t m, index_t n, index_t k, index_t gs, int4_scheme s, bool with_bias,
                  bool relu, std::uint64_t salt) {
  SCOPED_TRACE(trace(path, m, n, k, gs, s));
  auto rng = qprune::test::make_rng(salt);
  const auto w = random_matrix(s, n, k, gs, rng);
  const auto x = random_x(m, k, rng);
  std::vector<float> bias(with_bias ? static_cast<std::size_t>(n) : 0);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : bias) v = nd(rng);
  check_paths(path, x, w, bias, relu);
}

constexpr int4_scheme kSchemes[] = {int4_scheme::symmetric, int4_scheme::symmetric_narrow, int4_scheme::affine};

class GemmQ4 : public ::testing::TestWithParam<isa> {};

TEST_P(GemmQ4, EdgeShapesAllSchemes) {
  std::uint64_t salt = 100;
  for (index_t m : {1, 2, 5, 9, 17})
    for (index_t n : {1, 8, 15, 16, 17, 33})
      for (index_t k : {1, 15, 16, 17, 31, 33, 97, 100}) {
        ++salt;
        const index_t gs = (salt % 2 == 0) ? 16 : 32;
        check_random(GetParam(), m, n, k, gs, kSchemes[salt % 3], (n % 2) == 1, (m % 2) == 0, salt);
      }
}

TEST_P(GemmQ4, GroupSizesAndTails) {
  std::uint64_t salt = 2000;
  for (index_t gs : {16, 32, 64, 128, 256})
    for (index_t k : {gs - 1, gs, gs + 1, 3 * gs + 7, 4 * gs})
      for (int4_scheme s : kSchemes) check_random(GetParam(), 3, 19, k, gs, s, true, false, ++salt);
}

TEST_P(GemmQ4, BatchOneAndSixtyFour) {
  check_random(GetParam(), 1, 257, 300, 32, int4_scheme::symmetric, true, false, 11);
  check_random(GetParam(), 64, 64, 256, 32, int4_scheme::affine, true, true, 12);
  check_random(GetParam(), 64, 130, 211, 64, int4_scheme::symmetric_narrow, false, false, 13);
  check_random(GetParam(), 33, 257, 300, 128, int4_scheme::symmetric, true, true, 14);
}

TEST_P(GemmQ4, EmptyExtents) {
  check_random(GetParam(), 0, 5, 7, 16, int4_scheme::symmetric, true, false, 21);
  check_random(GetParam(), 3, 0, 7, 16, int4_scheme::affine, false, false, 22);
  // K = 0: no groups, y = act(bias).
  auto rng = qprune::test::make_rng(23);
  const auto w = random_matrix(int4_scheme::affine, 5, 0, 32, rng);
  const tensor<float, 2> x(3, 0);
  const std::vector<float> bias{1.5f, -2.0f, 0.0f, 3.0f, -0.5f};
  const auto packed = qprune::kernels::pack_q4(w, GetParam());
  for (bool relu : {false, true}) {
    tensor<float, 2> y(3, 5);
    qprune::kernels::gemm_q4(x.cview(), packed, bias, relu, y.view());
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 5; ++j) EXPECT_EQ(y(i, j), relu ? std::max(bias[static_cast<std::size_t>(j)], 0.0f) : bias[static_cast<std::size_t>(j)]);
    qprune::kernels::gemm_q4_dynamic(x.cview(), packed, bias, relu, y.view());
    for (index_t i = 0; i < 3; ++i)
      for (index_t j = 0; j < 5; ++j) EXPECT_EQ(y(i, j), relu ? std::max(bias[static_cast<std::size_t>(j)], 0.0f) : bias[static_cast<std::size_t>(j)]);
  }
}

/// Every code at an end of its range, zero codes, zero scales, and activations
/// whose int8 codes are all +-127: the largest group sums (15 * 127 per pair, no
/// int16 saturation in vpmaddubsw, 487,680 per group of 256 in int32).
TEST_P(GemmQ4, ExtremeCodesAndScales) {
  const isa path = GetParam();
  const index_t n = 37;
  std::uint64_t salt = 3000;
  for (index_t gs : {16, 256}) {
    for (index_t k : {gs, 2 * gs + 5}) {
      const index_t groups = group_count(k, gs);
      struct variant {
        int4_scheme s;
        std::int32_t code;
        std::int32_t zp;
        float scale;
      };
      const variant variants[] = {{int4_scheme::symmetric, -8, 0, 0.25f},
                                  {int4_scheme::symmetric, 7, 0, 3.0f},
                                  {int4_scheme::symmetric_narrow, -7, 0, 1.0f},
                                  {int4_scheme::affine, 15, 0, 0.5f},
                                  {int4_scheme::affine, 0, 15, 0.5f},
                                  {int4_scheme::affine, 15, 15, 2.0f},
                                  {int4_scheme::symmetric, 0, 0, 1.0f},
                                  {int4_scheme::symmetric, 7, 0, 0.0f}};
      for (const variant& v : variants) {
        SCOPED_TRACE(trace(path, 12, n, k, gs, v.s) + " code=" + std::to_string(v.code) + " zp=" +
                     std::to_string(v.zp) + " scale=" + std::to_string(v.scale));
        std::vector<std::int32_t> codes(static_cast<std::size_t>(n * k), v.code);
        std::vector<float> scales(static_cast<std::size_t>(n * groups), v.scale);
        // A few groups of scale 0 in every variant.
        for (std::size_t i = 0; i < scales.size(); i += 5) scales[i] = 0.0f;
        const auto w = make_matrix(v.s, n, k, gs, codes, scales,
                                   std::vector<std::int32_t>(static_cast<std::size_t>(n * groups), v.zp));
        // 12 rows (so the cache-blocked float path runs too), four patterns:
        tensor<float, 2> x(12, k);
        auto rng = qprune::test::make_rng(++salt);
        std::uniform_real_distribution<float> ud(0.5f, 2.0f);
        for (index_t i = 0; i < 12; ++i) {
          for (index_t j = 0; j < k; ++j) {
            switch (i % 4) {
              case 0: x(i, j) = 3.0f; break;                                  // every int8 code +127
              case 1: x(i, j) = -1e30f; break;                                // every code -127, huge
              case 2: x(i, j) = (j % 2 == 0) ? 1e-30f : -1e-30f; break;       // +-127, tiny
              default: x(i, j) = ud(rng) * ((j % 3 == 0) ? -1.0f : 1.0f); break;
            }
          }
        }
        const std::vector<float> bias(static_cast<std::size_t>(n), 0.25f);
        check_paths(path, x, w, bias, false);
        check_paths(path, x, w, {}, true);
      }
    }
  }
}

/// Worst case of the integer path in numbers: gs = 256, codes 15 - zero point 0,
/// x all equal: S = 127 * 15 * 256 = 487,680 per group, y = S * (d * s) exactly
/// as the twin states, and the float path's exact value.
TEST_P(GemmQ4, WorstCaseAccumulationValues) {
  const index_t gs = 256, k = 512, n = 16;
  const auto w = make_matrix(int4_scheme::affine, n, k, gs, std::vector<std::int32_t>(static_cast<std::size_t>(n * k), 15),
                             std::vector<float>(static_cast<std::size_t>(n * 2), 1.0f),
                             std::vector<std::int32_t>(static_cast<std::size_t>(n * 2), 0));
  tensor<float, 2> x(1, k);
  for (auto& v : x.span()) v = 127.0f;  // d = 1, codes 127
  const auto packed = qprune::kernels::pack_q4(w, GetParam());
  tensor<float, 2> y(1, n);
  qprune::kernels::gemm_q4_dynamic(x.cview(), packed, {}, false, y.view());
  for (index_t j = 0; j < n; ++j) EXPECT_EQ(y(0, j), 2.0f * 487680.0f);
  qprune::kernels::gemm_q4(x.cview(), packed, {}, false, y.view());
  for (index_t j = 0; j < n; ++j) EXPECT_EQ(y(0, j), 127.0f * 15.0f * 512.0f);
}

/// A hand-computed case: codes q_k = k - 8 (symmetric), scale 0.5, x = 1:
/// y = 0.5 * sum_k (k - 8) = -4 on both paths (x codes 127, d = 1/127).
TEST_P(GemmQ4, HandComputed) {
  std::vector<std::int32_t> codes(16);
  for (int j = 0; j < 16; ++j) codes[static_cast<std::size_t>(j)] = j - 8;
  const auto w = make_matrix(int4_scheme::symmetric, 1, 16, 16, codes, {0.5f}, {0});
  tensor<float, 2> x(1, 16);
  for (auto& v : x.span()) v = 1.0f;
  const auto packed = qprune::kernels::pack_q4(w, GetParam());
  tensor<float, 2> y(1, 1);
  const std::vector<float> bias{1.0f};
  qprune::kernels::gemm_q4(x.cview(), packed, bias, false, y.view());
  EXPECT_EQ(y(0, 0), -3.0f);
  qprune::kernels::gemm_q4_dynamic(x.cview(), packed, bias, false, y.view());
  // S = 127 * (-8) = -1016, c = fl(fl(1/127) * 0.5): -1016 * c within 2 ulp of -4.
  EXPECT_NEAR(y(0, 0), -3.0f, 4e-7);
  qprune::kernels::gemm_q4_dynamic(x.cview(), packed, bias, true, y.view());
  EXPECT_EQ(y(0, 0), 0.0f);
}

TEST_P(GemmQ4, NanAndInfPropagateOnTheFloatPath) {
  auto rng = qprune::test::make_rng(40);
  const auto w = random_matrix(int4_scheme::symmetric, 20, 50, 16, rng);
  auto x = random_x(4, 50, rng);
  x(1, 7) = std::numeric_limits<float>::quiet_NaN();
  x(2, 49) = std::numeric_limits<float>::infinity();
  const std::vector<float> bias(20, 0.5f);
  const auto packed = qprune::kernels::pack_q4(w, GetParam());
  tensor<float, 2> y(4, 20);
  qprune::kernels::gemm_q4(x.cview(), packed, bias, false, y.view());
  expect_same_bits(y, twin_float(x, w, bias, false));
  for (index_t j = 0; j < 20; ++j) {
    EXPECT_TRUE(std::isnan(y(1, j))) << j;
    EXPECT_TRUE(std::isfinite(y(0, j)) && std::isfinite(y(3, j))) << j;
    // inf times a nonzero weight gives +-inf (or NaN), times a zero weight NaN.
    EXPECT_FALSE(std::isfinite(y(2, j))) << j;
  }
  // relu maps NaN to 0 (as gemm_f16 does); still the twin's bits.
  qprune::kernels::gemm_q4(x.cview(), packed, bias, true, y.view());
  expect_same_bits(y, twin_float(x, w, bias, true));
  // The integer path takes its scales from the data: non-finite input is an error.
  EXPECT_THROW(qprune::kernels::gemm_q4_dynamic(x.cview(), packed, bias, false, y.view()), qprune::config_error);
}

TEST_P(GemmQ4, TwoThreadsGiveIdenticalResults) {
  qprune::kernels::set_num_threads(2);
  check_random(GetParam(), 64, 512, 256, 32, int4_scheme::symmetric, true, false, 50);
  check_random(GetParam(), 1, 1024, 1024, 64, int4_scheme::affine, true, true, 51);
  // Few output channels: the rows are split instead.
  check_random(GetParam(), 203, 40, 300, 16, int4_scheme::symmetric_narrow, true, false, 52);
  qprune::kernels::set_num_threads(1);
}

INSTANTIATE_TEST_SUITE_P(AllSupported, GemmQ4, ::testing::ValuesIn(qprune::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<isa>& p) {
                           return std::string(qprune::kernels::to_string(p.param));
                         });

/// The float twin is exactly a fma-in-k-order float GEMM on quant::dequantize's
/// matrix, and within the fma chain's rounding bound of the double product:
/// |y - y_exact| <= 1.01 * (K + 1) * 2^-24 * (sum_k |x w'| + |bias|).
TEST(GemmQ4Twin, FloatTwinIsFloatGemmOnDequantizedWeights) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(60);
  for (int4_scheme s : kSchemes) {
    for (index_t k : {1, 16, 45, 300}) {
      const index_t m = 7, n = 29;
      const auto w = random_matrix(s, n, k, 32, rng);
      const auto x = random_x(m, k, rng);
      std::vector<float> bias(static_cast<std::size_t>(n));
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (auto& v : bias) v = nd(rng);
      tensor<float, 2> wd(n, k);
      qprune::quant::dequantize(w, wd.view());
      const auto y = twin_float(x, w, bias, false);
      for (index_t i = 0; i < m; ++i) {
        for (index_t j = 0; j < n; ++j) {
          float acc = 0.0f;
          double exact = 0.0, mag = 0.0;
          for (index_t p = 0; p < k; ++p) {
            acc = std::fma(x(i, p), wd(j, p), acc);
            exact += static_cast<double>(x(i, p)) * static_cast<double>(wd(j, p));
            mag += std::abs(static_cast<double>(x(i, p)) * static_cast<double>(wd(j, p)));
          }
          const float want = acc + bias[static_cast<std::size_t>(j)];
          ASSERT_EQ(std::bit_cast<std::uint32_t>(y(i, j)), std::bit_cast<std::uint32_t>(want)) << i << "," << j;
          exact += bias[static_cast<std::size_t>(j)];
          const double bound = 1.01 * static_cast<double>(k + 1) * kU * (mag + std::abs(bias[static_cast<std::size_t>(j)]));
          ASSERT_LE(std::abs(static_cast<double>(y(i, j)) - exact), bound) << i << "," << j;
        }
      }
    }
  }
}

/// The integer twin against the double product on the dequantized weights:
///   |y - y_exact| <= sum_k d_g(k) * (1/2 + 128 * 2^-24) * |w'(k)|
///                    + 1.01 * (G + 2) * 2^-24 * (sum_g |S_g| d_g s_g + |bias|)
/// (activation rounding: |x - d qx| <= d/2 plus the float division's error;
/// then the rounding of d * s and of the G fused multiply-adds and the bias add).
TEST(GemmQ4Twin, IntegerTwinWithinQuantizationBound) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(70);
  for (int4_scheme s : kSchemes) {
    for (index_t gs : {16, 64}) {
      for (index_t k : {1, 16, 45, 300}) {
        const index_t m = 6, n = 23, groups = group_count(k, gs);
        const auto w = random_matrix(s, n, k, gs, rng);
        const auto x = random_x(m, k, rng);
        std::vector<float> bias(static_cast<std::size_t>(n), 0.75f);
        const auto y = twin_dynamic(x, w, bias, false);
        const q8_acts a = twin_quantize(x, gs);
        for (index_t i = 0; i < m; ++i) {
          for (index_t j = 0; j < n; ++j) {
            double exact = bias[static_cast<std::size_t>(j)], qerr = 0.0, terms = std::abs(bias[static_cast<std::size_t>(j)]);
            for (index_t g = 0; g < groups; ++g) {
              const float sc = w.params.scales[static_cast<std::size_t>(j * groups + g)];
              const std::int32_t z = w.params.zero_points[static_cast<std::size_t>(j * groups + g)];
              const double dg = a.d[static_cast<std::size_t>(i * groups + g)];
              std::int64_t sg = 0;
              for (index_t p = g * gs; p < std::min(k, (g + 1) * gs); ++p) {
                const double wq = static_cast<double>(sc) * (w.code(j, p) - z);
                exact += static_cast<double>(x(i, p)) * wq;
                qerr += dg * (0.5 + 128.0 * kU) * std::abs(wq);
                sg += std::int64_t{a.q[static_cast<std::size_t>(i * a.ldq + p)]} * (w.code(j, p) - z);
              }
              terms += std::abs(static_cast<double>(sg)) * dg * sc;
            }
            const double bound = qerr + 1.01 * static_cast<double>(groups + 2) * kU * terms;
            ASSERT_LE(std::abs(static_cast<double>(y(i, j)) - exact), bound) << i << "," << j;
          }
        }
      }
    }
  }
}

/// The activation quantizer on hand-picked values: ties round half to even.
TEST(GemmQ4Twin, ActivationQuantizerRoundsHalfToEven) {
  // amax = 127 gives d = 1 exactly; then x / d = x.
  std::vector<float> x(16, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  x[4] = -0.5f;
  x[5] = 1.4999999f;
  std::vector<std::int8_t> q(16);
  float d = 0.0f;
  std::int32_t sx = 0;
  ASSERT_TRUE(qprune::kernels::reference::quantize_q8_group(x.data(), 16, 16, q.data(), &d, &sx));
  EXPECT_EQ(d, 1.0f);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], 2);
  EXPECT_EQ(q[2], -2);
  EXPECT_EQ(q[3], 4);
  EXPECT_EQ(q[4], 0);
  EXPECT_EQ(q[5], 1);
  EXPECT_EQ(sx, 127 + 2 - 2 + 4 + 0 + 1);
  // All zero: d = 0 and codes 0; a partial group pads with 0.
  std::vector<float> z(5, 0.0f);
  std::vector<std::int8_t> qz(16, 99);
  ASSERT_TRUE(qprune::kernels::reference::quantize_q8_group(z.data(), 5, 16, qz.data(), &d, &sx));
  EXPECT_EQ(d, 0.0f);
  EXPECT_EQ(sx, 0);
  for (auto v : qz) EXPECT_EQ(v, 0);
  z[2] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(qprune::kernels::reference::quantize_q8_group(z.data(), 5, 16, qz.data(), &d, &sx));
}

TEST(GemmQ4Api, RejectsBadShapes) {
  auto rng = qprune::test::make_rng(80);
  const auto w = random_matrix(int4_scheme::symmetric, 4, 40, 16, rng);
  const auto packed = qprune::kernels::pack_q4(w);
  EXPECT_EQ(packed.rows(), 4);
  EXPECT_EQ(packed.cols(), 40);
  EXPECT_EQ(packed.groups(), 3);
  tensor<float, 2> x(3, 40), xb(3, 41), y(3, 4), yb(2, 4), yc(3, 5);
  std::vector<float> bias(4), bad_bias(3);
  for (bool dyn : {false, true}) {
    auto run = [&](const tensor<float, 2>& xi, const std::vector<float>& b, tensor<float, 2>& yo) {
      if (dyn) {
        qprune::kernels::gemm_q4_dynamic(xi.cview(), packed, b, false, yo.view());
      } else {
        qprune::kernels::gemm_q4(xi.cview(), packed, b, false, yo.view());
      }
    };
    EXPECT_THROW(run(xb, bias, y), qprune::shape_error);
    EXPECT_THROW(run(x, bias, yb), qprune::shape_error);
    EXPECT_THROW(run(x, bias, yc), qprune::shape_error);
    EXPECT_THROW(run(x, bad_bias, y), qprune::shape_error);
    EXPECT_NO_THROW(run(x, {}, y));
  }
}

TEST(GemmQ4Api, RejectsBadMatrices) {
  auto rng = qprune::test::make_rng(81);
  const auto good = random_matrix(int4_scheme::affine, 4, 40, 16, rng);
  auto expect_config = [](packed_int4_matrix m, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_THROW(static_cast<void>(qprune::kernels::pack_q4(m)), qprune::config_error);
  };
  auto expect_shape = [](packed_int4_matrix m, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_THROW(static_cast<void>(qprune::kernels::pack_q4(m)), qprune::shape_error);
  };
  {
    auto m = good;
    m.params.group_size = 24;
    expect_config(m, "group size 24");
  }
  {
    auto m = good;
    m.params.group_size = 8;
    expect_config(m, "group size 8");
  }
  {
    auto m = good;
    m.params.axis = 0;
    expect_config(m, "axis 0");
  }
  {
    auto m = good;
    m.params.scales.pop_back();
    expect_shape(m, "scale count");
  }
  {
    auto m = good;
    m.params.zero_points.push_back(0);
    expect_shape(m, "zero point count");
  }
  {
    auto m = good;
    m.params.zero_points[2] = 16;
    expect_config(m, "zero point 16");
  }
  {
    auto m = good;
    m.params.scales[1] = std::numeric_limits<float>::quiet_NaN();
    expect_config(m, "NaN scale");
  }
  {
    auto m = good;
    m.params.scales[1] = -1.0f;
    expect_config(m, "negative scale");
  }
  {
    auto m = good;
    m.kind = int4_scheme::symmetric;
    m.params.zero_points[0] = 3;
    expect_config(m, "symmetric zero point 3");
  }
  {
    auto m = good;
    m.codes = tensor<std::uint8_t, 2>(4, 21);
    expect_shape(m, "codes extents");
  }
  // The error text says what was expected.
  try {
    auto m = good;
    m.params.group_size = 24;
    static_cast<void>(qprune::kernels::pack_q4(m));
    FAIL() << "no exception";
  } catch (const qprune::config_error& e) {
    EXPECT_NE(std::string(e.what()).find("power of two"), std::string::npos) << e.what();
  }
}

}  // namespace

// The int8 NHWC conv (kernels/conv2d_s8.hpp) on every instruction set this CPU
// supports, against the direct seven-loop reference, bit for bit: seeded random
// geometries (strides, dilations, asymmetric pads, SAME/VALID, groups,
// depthwise, 1x1, batch), extreme values, all three output stages, uint8 and
// int8 inputs. Also im2col/col2im (kernels/im2col.hpp): direct indexing and
// adjointness, the geometry rules, and every error path.
#include "qprune/kernels/conv2d_s8.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/kernels/reference/conv2d_s8.hpp"
#include "qprune/quant/requantize.hpp"
#include "support/random.hpp"

namespace {

using qprune::index_t;
using qprune::tensor;
using qprune::kernels::conv2d_geometry;
using qprune::kernels::isa;
using qprune::kernels::padding_mode;

enum class fill { random, max, min, alternating };

template <class T>
std::vector<T> make(index_t n, fill f, std::mt19937_64& rng) {
  std::vector<T> v(static_cast<std::size_t>(n));
  std::uniform_int_distribution<int> d(std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
  for (index_t i = 0; i < n; ++i) {
    switch (f) {
      case fill::random: v[static_cast<std::size_t>(i)] = static_cast<T>(d(rng)); break;
      case fill::max: v[static_cast<std::size_t>(i)] = std::numeric_limits<T>::max(); break;
      case fill::min: v[static_cast<std::size_t>(i)] = std::numeric_limits<T>::min(); break;
      case fill::alternating:
        v[static_cast<std::size_t>(i)] = (i % 2) != 0 ? std::numeric_limits<T>::min() : std::numeric_limits<T>::max();
        break;
    }
  }
  return v;
}

std::string describe(const conv2d_geometry& g) {
  auto s = [](index_t v) { return std::to_string(v); };
  return "N=" + s(g.batch) + " HxWxC=" + s(g.in_h) + "x" + s(g.in_w) + "x" + s(g.in_c) + " O=" + s(g.out_c) +
         " k=" + s(g.kernel_h) + "x" + s(g.kernel_w) + " s=" + s(g.stride_h) + "x" + s(g.stride_w) +
         " d=" + s(g.dilation_h) + "x" + s(g.dilation_w) + " pads(t,l,b,r)=" + s(g.pad_top) + "," +
         s(g.pad_left) + "," + s(g.pad_bottom) + "," + s(g.pad_right) + " groups=" + s(g.groups);
}

/// Runs the int32, float (with and without ReLU) and requantizing (Tq) stages of
/// conv2d_s8 on `path` and compares each with the reference, bit for bit.
template <class Ta, class Tq>
void check_conv(isa path, const conv2d_geometry& g, fill fx, fill fw, std::int32_t zp,
                std::uint64_t salt) {
  namespace k = qprune::kernels;
  namespace quant = qprune::quant;
  SCOPED_TRACE("isa=" + std::string(k::to_string(path)) + " " + describe(g) + " zp=" +
               std::to_string(zp) + " input=" + (std::is_signed_v<Ta> ? "s8" : "u8") + " " +
               qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(salt);
  const index_t rows_in = g.batch * g.in_h * g.in_w, m = g.out_pixels(), n = g.out_c;
  const auto x = make<Ta>(rows_in * g.in_c, fx, rng);
  const auto w = make<std::int8_t>(n * g.patch(), fw, rng);
  const auto packed = k::pack_conv_s8(g, qprune::tensor_view<const std::int8_t, 2>(w.data(), n, g.patch()), path);
  EXPECT_EQ(packed.depthwise(), g.is_depthwise());
  const qprune::tensor_view<const Ta, 2> xv(x.data(), rows_in, g.in_c);

  tensor<std::int32_t, 2> got(m, n), want(m, n);
  k::conv2d_s8<Ta>(xv, zp, packed, got.view());
  k::reference::conv2d_s8(g, x.data(), zp, w.data(), want.data(), n, k::store_int32{});
  ASSERT_TRUE(got == want);

  std::vector<float> scale(static_cast<std::size_t>(n)), bias(static_cast<std::size_t>(n));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& s : scale) s = std::abs(u(rng)) * 1e-3f + 1e-6f;
  for (auto& b : bias) b = u(rng);
  for (bool relu : {false, true}) {
    const k::store_float st{scale.data(), relu ? bias.data() : nullptr, relu};
    tensor<float, 2> yg(m, n), yw(m, n);
    k::conv2d_s8<Ta>(xv, zp, packed, yg.view(), st);
    k::reference::conv2d_s8(g, x.data(), zp, w.data(), yw.data(), n, st);
    for (index_t i = 0; i < m * n; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(yg.data()[i]), std::bit_cast<std::uint32_t>(yw.data()[i]))
          << "float stage differs at " << i << " relu=" << relu;
    }
  }

  std::vector<float> s_w(static_cast<std::size_t>(n));
  std::uniform_real_distribution<float> us(0.5f, 2.0f);
  for (auto& v : s_w) v = us(rng) * 1e-3f;
  std::vector<std::int32_t> qbias(static_cast<std::size_t>(n));
  std::uniform_int_distribution<std::int32_t> bd(-20000, 20000);
  for (auto& v : qbias) v = bd(rng);
  const quant::qrange range = quant::full_range(std::is_signed_v<Tq> ? quant::dtype::int8 : quant::dtype::uint8);
  for (float s_out : {0.05f, 3e-5f}) {  // 3e-5: multipliers > 1 (left shifts)
    const quant::affine_params out{s_out, std::is_signed_v<Tq> ? -5 : 120};
    const auto params = quant::make_requant_params(0.02f, s_w, out, range, quant::fused_activation::relu);
    const k::requant_stage<Tq> stage(params, qbias, n);
    tensor<Tq, 2> qg(m, n), qw(m, n);
    k::conv2d_s8<Ta, Tq>(xv, zp, packed, qg.view(), stage);
    // The oracle: the library's scalar requantize over the reference int32 result.
    quant::requantize<Tq>(want.cview(), qbias, params, qw.view());
    ASSERT_TRUE(qg == qw) << "requant stage differs, s_out=" << s_out;
  }
}

/// A random geometry from the families the brief lists, small enough for the
/// seven-loop reference.
conv2d_geometry random_geometry(std::mt19937_64& rng) {
  auto pick = [&](std::initializer_list<index_t> v) {
    std::uniform_int_distribution<std::size_t> d(0, v.size() - 1);
    return *(v.begin() + static_cast<std::ptrdiff_t>(d(rng)));
  };
  auto range = [&](index_t lo, index_t hi) { return std::uniform_int_distribution<index_t>(lo, hi)(rng); };
  for (;;) {
    conv2d_geometry g;
    g.batch = pick({1, 1, 3});
    g.in_h = range(1, 13);
    g.in_w = pick({1, 2, 5, 7, 11, 13});
    g.kernel_h = range(1, 5);
    g.kernel_w = range(1, 5);
    g.stride_h = pick({1, 2});
    g.stride_w = pick({1, 2});
    g.dilation_h = pick({1, 2});
    g.dilation_w = pick({1, 2});
    switch (range(0, 3)) {
      case 0:
        g.groups = 1;
        g.in_c = pick({1, 3, 17, 64});
        g.out_c = pick({1, 5, 16, 17, 33});
        break;
      case 1:
        g.groups = 2;
        g.in_c = pick({2, 6, 34, 64});
        g.out_c = 2 * pick({1, 3, 8, 17});
        break;
      case 2:
        g.groups = 4;
        g.in_c = pick({4, 12, 68});
        g.out_c = 4 * pick({1, 5, 16});
        break;
      default:
        g.in_c = g.out_c = g.groups = pick({3, 17, 64, 80, 97});
        break;
    }
    switch (range(0, 2)) {
      case 0: set_padding(g, padding_mode::valid); break;
      case 1: set_padding(g, padding_mode::same); break;
      default:
        g.pad_top = range(0, 3);
        g.pad_left = range(0, 3);
        g.pad_bottom = range(0, 3);
        g.pad_right = range(0, 3);
        break;
    }
    try {
      g.validate();
    } catch (const qprune::error&) {
      continue;
    }
    if (g.out_pixels() * g.out_c * g.patch() <= 3'000'000) return g;
  }
}

conv2d_geometry make_geometry(index_t batch, index_t h, index_t w, index_t c, index_t o, index_t kh,
                              index_t kw, index_t stride, index_t pad, index_t groups = 1,
                              index_t dilation = 1) {
  conv2d_geometry g;
  g.batch = batch;
  g.in_h = h;
  g.in_w = w;
  g.in_c = c;
  g.out_c = o;
  g.kernel_h = kh;
  g.kernel_w = kw;
  g.stride_h = g.stride_w = stride;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = pad;
  g.groups = groups;
  g.dilation_h = g.dilation_w = dilation;
  return g;
}

class Conv2dS8 : public ::testing::TestWithParam<isa> {};

TEST_P(Conv2dS8, RandomGeometriesMatchReference) {
  auto rng = qprune::test::make_rng(4242);
  std::uniform_int_distribution<int> zd(0, 255);
  for (int i = 0; i < 60; ++i) {
    const conv2d_geometry g = random_geometry(rng);
    const auto salt = static_cast<std::uint64_t>(1000 + i);
    if (i % 3 == 2) {
      check_conv<std::int8_t, std::int8_t>(GetParam(), g, fill::random, fill::random, zd(rng) - 128, salt);
    } else if (i % 3 == 1) {
      check_conv<std::uint8_t, std::int8_t>(GetParam(), g, fill::random, fill::random, zd(rng), salt);
    } else {
      check_conv<std::uint8_t, std::uint8_t>(GetParam(), g, fill::random, fill::random, zd(rng), salt);
    }
  }
}

TEST_P(Conv2dS8, NamedShapes) {
  const isa p = GetParam();
  // 1x1 stride 1, no padding: the direct GEMM on the input (no im2col).
  check_conv<std::uint8_t, std::uint8_t>(p, make_geometry(1, 7, 5, 17, 33, 1, 1, 1, 0), fill::random, fill::random, 3, 1);
  check_conv<std::int8_t, std::int8_t>(p, make_geometry(3, 4, 4, 64, 16, 1, 1, 1, 0), fill::random, fill::random, -9, 2);
  // 1x1 strided, padded and grouped: im2col.
  check_conv<std::uint8_t, std::uint8_t>(p, make_geometry(1, 9, 9, 12, 8, 1, 1, 2, 0), fill::random, fill::random, 0, 3);
  check_conv<std::uint8_t, std::uint8_t>(p, make_geometry(1, 5, 5, 12, 8, 1, 1, 1, 1), fill::random, fill::random, 200, 4);
  check_conv<std::uint8_t, std::int8_t>(p, make_geometry(1, 5, 6, 12, 8, 1, 1, 1, 0, 4), fill::random, fill::random, 31, 5);
  // The Fashion-MNIST CNN's convs, one of them in a batch of 3.
  check_conv<std::uint8_t, std::uint8_t>(p, make_geometry(3, 28, 28, 1, 32, 3, 3, 1, 1), fill::random, fill::random, 77, 6);
  check_conv<std::uint8_t, std::int8_t>(p, make_geometry(1, 14, 14, 32, 64, 3, 3, 1, 1), fill::random, fill::random, 128, 7);
  // Several im2col blocks (patch 576 -> 448 rows per block, 784 rows).
  check_conv<std::uint8_t, std::uint8_t>(p, make_geometry(1, 28, 28, 64, 19, 3, 3, 1, 1), fill::random, fill::random, 5, 8);
  // 5x5, asymmetric pads, dilation 2, stride 2, primes.
  conv2d_geometry g = make_geometry(2, 13, 11, 3, 7, 5, 5, 2, 0, 1, 2);
  g.pad_top = 3;
  g.pad_left = 0;
  g.pad_bottom = 1;
  g.pad_right = 2;
  check_conv<std::int8_t, std::int8_t>(p, g, fill::random, fill::random, 0, 9);
  // Depthwise: channel counts around the 8/16/32/64-wide blocks and their tails.
  for (index_t c : {2, 3, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 80, 128, 129}) {
    conv2d_geometry d = make_geometry(1, 9, 7, c, c, 3, 3, 1, 1, c);
    check_conv<std::uint8_t, std::uint8_t>(p, d, fill::random, fill::random, 13, 100 + static_cast<std::uint64_t>(c));
    d.stride_h = 2;
    d.dilation_w = 2;
    d.pad_right = 3;
    d.batch = 3;
    check_conv<std::int8_t, std::int8_t>(p, d, fill::random, fill::random, -100, 200 + static_cast<std::uint64_t>(c));
  }
  // Depthwise 5x5 SAME on a larger map, stride 2.
  conv2d_geometry d = make_geometry(1, 23, 19, 48, 48, 5, 5, 2, 0, 48);
  set_padding(d, padding_mode::same);
  check_conv<std::uint8_t, std::int8_t>(p, d, fill::random, fill::random, 255, 300);
}

TEST_P(Conv2dS8, ExtremeValues) {
  const isa p = GetParam();
  const conv2d_geometry shapes[] = {make_geometry(1, 6, 7, 17, 9, 3, 3, 1, 1),
                                    make_geometry(2, 5, 5, 64, 64, 3, 3, 1, 2, 64),
                                    make_geometry(1, 4, 4, 130, 33, 1, 1, 1, 0),
                                    make_geometry(1, 6, 6, 8, 8, 5, 5, 1, 2, 2)};
  std::uint64_t salt = 500;
  for (const auto& g : shapes) {
    // |x - zp| = 255 against w = -128 / 127 everywhere; padding reads the zero point.
    check_conv<std::uint8_t, std::uint8_t>(p, g, fill::max, fill::min, 0, ++salt);
    check_conv<std::uint8_t, std::uint8_t>(p, g, fill::min, fill::min, 255, ++salt);
    check_conv<std::uint8_t, std::int8_t>(p, g, fill::max, fill::max, 0, ++salt);
    check_conv<std::int8_t, std::int8_t>(p, g, fill::min, fill::max, 127, ++salt);
    check_conv<std::int8_t, std::int8_t>(p, g, fill::max, fill::min, -128, ++salt);
    check_conv<std::uint8_t, std::uint8_t>(p, g, fill::alternating, fill::alternating, 255, ++salt);
  }
}

TEST_P(Conv2dS8, WorstCaseAccumulationAtTheKBound) {
  // patch = 1 * 23 * 2860 = 65780 <= max_gemm_s8_k: sums close to the int32 limit.
  conv2d_geometry g = make_geometry(1, 1, 24, 2860, 3, 1, 23, 1, 0);
  ASSERT_LE(g.patch(), qprune::kernels::max_gemm_s8_k);
  check_conv<std::uint8_t, std::uint8_t>(GetParam(), g, fill::max, fill::min, 0, 600);
  check_conv<std::uint8_t, std::uint8_t>(GetParam(), g, fill::min, fill::min, 255, 601);
}

TEST_P(Conv2dS8, TwoThreadsGiveIdenticalResults) {
  qprune::kernels::set_num_threads(2);
  check_conv<std::uint8_t, std::uint8_t>(GetParam(), make_geometry(1, 28, 28, 32, 64, 3, 3, 1, 1), fill::random, fill::random, 3, 700);
  check_conv<std::uint8_t, std::uint8_t>(GetParam(), make_geometry(1, 33, 30, 128, 128, 3, 3, 1, 1, 128), fill::random, fill::random, 99, 701);
  qprune::kernels::set_num_threads(1);
}

TEST_P(Conv2dS8, BatchComesFromTheInput) {
  // Packed for batch 1, run on batch 3: the same as packing for batch 3.
  namespace k = qprune::kernels;
  const conv2d_geometry g1 = make_geometry(1, 6, 5, 4, 6, 3, 3, 1, 1, 2);
  conv2d_geometry g3 = g1;
  g3.batch = 3;
  auto rng = qprune::test::make_rng(800);
  const auto x = make<std::uint8_t>(3 * 6 * 5 * 4, fill::random, rng);
  const auto w = make<std::int8_t>(6 * g1.patch(), fill::random, rng);
  const auto packed = k::pack_conv_s8(g1, qprune::tensor_view<const std::int8_t, 2>(w.data(), 6, g1.patch()), GetParam());
  tensor<std::int32_t, 2> got(g3.out_pixels(), 6), want(g3.out_pixels(), 6);
  k::conv2d_s8<std::uint8_t>(qprune::tensor_view<const std::uint8_t, 2>(x.data(), 90, 4), 7, packed, got.view());
  k::reference::conv2d_s8(g3, x.data(), 7, w.data(), want.data(), 6, k::store_int32{});
  EXPECT_TRUE(got == want);
}

INSTANTIATE_TEST_SUITE_P(AllSupported, Conv2dS8, ::testing::ValuesIn(qprune::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<isa>& p) {
                           return std::string(qprune::kernels::to_string(p.param));
                         });

TEST(Conv2dReference, HandComputedCase) {
  // 3x3 input, one channel, 2x2 kernel, pad 1 at top/left only, zp 10:
  // y[0][0] only sees x[0][0] through w[1][1]; y[1][1] sees the four taps.
  namespace k = qprune::kernels;
  conv2d_geometry g = make_geometry(1, 3, 3, 1, 1, 2, 2, 1, 0);
  g.pad_top = g.pad_left = 1;
  ASSERT_EQ(g.out_h(), 3);
  ASSERT_EQ(g.out_w(), 3);
  const std::uint8_t x[9] = {11, 12, 13, 14, 15, 16, 17, 18, 19};  // x - zp = 1..9
  const std::int8_t w[4] = {1, -2, 3, -4};
  std::int32_t y[9];
  k::reference::conv2d_s8(g, x, 10, w, y, 1, k::store_int32{});
  EXPECT_EQ(y[0], -4 * 1);
  EXPECT_EQ(y[4], 1 * 1 - 2 * 2 + 3 * 4 - 4 * 5);
  EXPECT_EQ(y[8], 1 * 5 - 2 * 6 + 3 * 8 - 4 * 9);
  EXPECT_EQ(y[2], 3 * 2 - 4 * 3);
}

// ---------------------------------------------------------------------------
// Geometry and im2col / col2im
// ---------------------------------------------------------------------------

TEST(Conv2dGeometry, OutputSizeFormula) {
  conv2d_geometry g = make_geometry(2, 28, 27, 6, 12, 3, 5, 2, 1, 3, 2);
  // floor((28 + 2 - 2*2 - 1) / 2) + 1 = 13; floor((27 + 2 - 2*4 - 1) / 2) + 1 = 11
  EXPECT_EQ(g.out_h(), 13);
  EXPECT_EQ(g.out_w(), 11);
  EXPECT_EQ(g.group_in_c(), 2);
  EXPECT_EQ(g.group_out_c(), 4);
  EXPECT_EQ(g.patch(), 3 * 5 * 2);
  EXPECT_EQ(g.out_pixels(), 2 * 13 * 11);
  g.in_h = 2;  // 2 + 2 - 5 < 0: the dilated kernel does not fit
  EXPECT_EQ(g.out_h(), 0);
}

TEST(Conv2dGeometry, SamePaddingIsTensorFlows) {
  conv2d_geometry g = make_geometry(1, 5, 6, 1, 1, 3, 3, 2, 7);
  set_padding(g, padding_mode::same);
  // in 5, stride 2: out 3, total (3-1)*2 + 3 - 5 = 2 -> 1 / 1
  EXPECT_EQ(g.pad_top, 1);
  EXPECT_EQ(g.pad_bottom, 1);
  // in 6, stride 2: out 3, total 4 + 3 - 6 = 1 -> 0 / 1 (extra at the right)
  EXPECT_EQ(g.pad_left, 0);
  EXPECT_EQ(g.pad_right, 1);
  EXPECT_EQ(g.out_h(), 3);
  EXPECT_EQ(g.out_w(), 3);
  g.stride_h = g.stride_w = 1;
  g.dilation_h = 2;  // effective kernel 5: total 4 -> 2 / 2
  set_padding(g, padding_mode::same);
  EXPECT_EQ(g.pad_top, 2);
  EXPECT_EQ(g.pad_bottom, 2);
  EXPECT_EQ(g.out_h(), 5);
  EXPECT_EQ(g.out_w(), 6);
  g.in_h = 1;
  g.kernel_h = 1;
  g.stride_h = 4;  // kernel within the input: no padding needed
  set_padding(g, padding_mode::same);
  EXPECT_EQ(g.pad_top + g.pad_bottom, 0);
  set_padding(g, padding_mode::valid);
  EXPECT_EQ(g.pad_left + g.pad_right + g.pad_top + g.pad_bottom, 0);
  g.stride_w = 0;
  EXPECT_THROW(set_padding(g, padding_mode::same), qprune::config_error);
}

TEST(Conv2dGeometry, ValidateRejectsEachBadField) {
  const conv2d_geometry ok = make_geometry(1, 5, 5, 4, 4, 3, 3, 1, 1, 2);
  EXPECT_NO_THROW(ok.validate());
  auto expect_shape = [&](auto mutate) {
    conv2d_geometry g = ok;
    mutate(g);
    EXPECT_THROW(g.validate(), qprune::shape_error);
  };
  auto expect_config = [&](auto mutate) {
    conv2d_geometry g = ok;
    mutate(g);
    EXPECT_THROW(g.validate(), qprune::config_error);
  };
  expect_shape([](conv2d_geometry& g) { g.batch = 0; });
  expect_shape([](conv2d_geometry& g) { g.in_h = 0; });
  expect_shape([](conv2d_geometry& g) { g.in_w = -1; });
  expect_shape([](conv2d_geometry& g) { g.in_c = 0; });
  expect_shape([](conv2d_geometry& g) { g.out_c = 0; });
  expect_shape([](conv2d_geometry& g) { g.kernel_h = 0; });
  expect_shape([](conv2d_geometry& g) { g.kernel_w = 0; });
  expect_shape([](conv2d_geometry& g) { g.kernel_h = 8; });  // empty output
  expect_shape([](conv2d_geometry& g) { g.dilation_w = 4; });  // 9 > 5 + 2
  expect_config([](conv2d_geometry& g) { g.stride_h = 0; });
  expect_config([](conv2d_geometry& g) { g.stride_w = -2; });
  expect_config([](conv2d_geometry& g) { g.dilation_h = 0; });
  expect_config([](conv2d_geometry& g) { g.groups = 0; });
  expect_config([](conv2d_geometry& g) { g.groups = 3; });  // divides neither
  expect_config([](conv2d_geometry& g) { g.out_c = 6; g.groups = 4; g.in_c = 4; });  // not out_c
  expect_config([](conv2d_geometry& g) { g.pad_top = -1; });
  expect_config([](conv2d_geometry& g) { g.pad_right = -1; });
}

/// im2col against the definition, element by element, for a row range, with
/// ldc > patch (the entries past patch stay untouched).
template <class T>
void check_im2col_direct(const conv2d_geometry& g, std::mt19937_64& rng) {
  SCOPED_TRACE(describe(g));
  std::vector<T> x(static_cast<std::size_t>(g.batch * g.in_h * g.in_w * g.in_c));
  std::uniform_int_distribution<int> d(1, 100);
  for (auto& v : x) v = static_cast<T>(d(rng));
  const index_t p = g.patch(), m = g.out_pixels(), ldc = p + 3;
  const index_t r0 = m / 3, r1 = m - m / 4;
  const T pad = static_cast<T>(0), sentinel = static_cast<T>(-7 & 0x7f);
  for (index_t grp = 0; grp < g.groups; ++grp) {
    std::vector<T> cols(static_cast<std::size_t>((r1 - r0) * ldc), sentinel);
    qprune::kernels::im2col(g, x.data(), grp, r0, r1, pad, cols.data(), ldc);
    for (index_t r = r0; r < r1; ++r) {
      const index_t ow = r % g.out_w(), oh = (r / g.out_w()) % g.out_h(), b = r / (g.out_w() * g.out_h());
      for (index_t kh = 0; kh < g.kernel_h; ++kh)
        for (index_t kw = 0; kw < g.kernel_w; ++kw)
          for (index_t c = 0; c < g.group_in_c(); ++c) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
            const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
            const T want = inside ? x[static_cast<std::size_t>(((b * g.in_h + ih) * g.in_w + iw) * g.in_c +
                                                              grp * g.group_in_c() + c)]
                                  : pad;
            ASSERT_EQ(cols[static_cast<std::size_t>((r - r0) * ldc + (kh * g.kernel_w + kw) * g.group_in_c() + c)], want)
                << "r=" << r << " kh=" << kh << " kw=" << kw << " c=" << c << " group=" << grp;
          }
      for (index_t j = p; j < ldc; ++j) ASSERT_EQ(cols[static_cast<std::size_t>((r - r0) * ldc + j)], sentinel);
    }
  }
}

TEST(Im2col, MatchesDirectIndexing) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(31);
  for (int i = 0; i < 80; ++i) {
    const conv2d_geometry g = random_geometry(rng);
    if (i % 2 == 0) {
      check_im2col_direct<float>(g, rng);
    } else {
      check_im2col_direct<std::uint8_t>(g, rng);
    }
  }
}

TEST(Im2col, Col2imIsTheAdjoint) {
  // <im2col(x), c> == <x, col2im(c)> over every group, exactly: integer-valued
  // floats small enough that every partial sum is exact.
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(32);
  std::uniform_int_distribution<int> d(-8, 8);
  for (int i = 0; i < 60; ++i) {
    const conv2d_geometry g = random_geometry(rng);
    SCOPED_TRACE(describe(g));
    const index_t p = g.patch(), m = g.out_pixels(), ldc = p + 1;
    const index_t nx = g.batch * g.in_h * g.in_w * g.in_c;
    std::vector<float> x(static_cast<std::size_t>(nx));
    for (auto& v : x) v = static_cast<float>(d(rng));
    double lhs = 0.0, rhs = 0.0;
    std::vector<float> grad(static_cast<std::size_t>(nx), 0.0f);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      std::vector<float> c(static_cast<std::size_t>(m * ldc));
      for (auto& v : c) v = static_cast<float>(d(rng));
      std::vector<float> cols(static_cast<std::size_t>(m * ldc), 0.0f);
      qprune::kernels::im2col(g, x.data(), grp, 0, m, 0.0f, cols.data(), ldc);
      for (index_t r = 0; r < m; ++r)
        for (index_t j = 0; j < p; ++j)
          lhs += static_cast<double>(cols[static_cast<std::size_t>(r * ldc + j)]) * c[static_cast<std::size_t>(r * ldc + j)];
      // In two row ranges, to cover row_begin > 0.
      qprune::kernels::col2im(g, c.data(), ldc, grp, 0, m / 2, grad.data());
      qprune::kernels::col2im(g, c.data() + (m / 2) * ldc, ldc, grp, m / 2, m, grad.data());
    }
    for (index_t j = 0; j < nx; ++j) rhs += static_cast<double>(x[static_cast<std::size_t>(j)]) * grad[static_cast<std::size_t>(j)];
    ASSERT_EQ(lhs, rhs);
  }
}

TEST(Im2col, Col2imAccumulatesOverlappingWindows) {
  // 3x3 input, 2x2 kernel, stride 1: the centre pixel is read by all 4 windows.
  const conv2d_geometry g = make_geometry(1, 3, 3, 1, 1, 2, 2, 1, 0);
  std::vector<float> cols(4 * 4, 1.0f), grad(9, 0.5f);
  qprune::kernels::col2im(g, cols.data(), 4, 0, 0, 4, grad.data());
  const float want[9] = {1.5f, 2.5f, 1.5f, 2.5f, 4.5f, 2.5f, 1.5f, 2.5f, 1.5f};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(grad[static_cast<std::size_t>(i)], want[i]) << i;
}

// ---------------------------------------------------------------------------
// Errors at the API boundary
// ---------------------------------------------------------------------------

TEST(Conv2dS8Api, RejectsBadArguments) {
  namespace k = qprune::kernels;
  const conv2d_geometry g = make_geometry(1, 5, 5, 4, 6, 3, 3, 1, 1, 2);  // patch 18
  tensor<std::int8_t, 2> w(6, 18), w_bad(6, 17), w_bad_rows(5, 18);
  EXPECT_THROW((void)k::pack_conv_s8(g, w_bad.cview()), qprune::shape_error);
  EXPECT_THROW((void)k::pack_conv_s8(g, w_bad_rows.cview()), qprune::shape_error);
  conv2d_geometry bad = g;
  bad.groups = 3;
  EXPECT_THROW((void)k::pack_conv_s8(bad, w.cview()), qprune::config_error);
  bad = g;
  bad.in_h = 0;
  EXPECT_THROW((void)k::pack_conv_s8(bad, w.cview()), qprune::shape_error);
  // K = patch above max_gemm_s8_k.
  const conv2d_geometry big = make_geometry(1, 1, 1, k::max_gemm_s8_k + 1, 1, 1, 1, 1, 0);
  tensor<std::int8_t, 2> w_big(1, big.patch());
  EXPECT_THROW((void)k::pack_conv_s8(big, w_big.cview()), qprune::config_error);
  if (!k::is_supported(isa::avx512_vnni)) {
    EXPECT_THROW((void)k::pack_conv_s8(g, w.cview(), isa::avx512_vnni), qprune::config_error);
  }

  for (isa path : k::supported_isas()) {
    const auto packed = k::pack_conv_s8(g, w.cview(), path);
    tensor<std::uint8_t, 2> x(25, 4), x_bad_c(25, 5), x_bad_rows(24, 4);
    tensor<std::int32_t, 2> y(25, 6), y_bad(25, 5), y_bad_rows(50, 6);
    EXPECT_NO_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), 0, packed, y.view()));
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x_bad_c.cview(), 0, packed, y.view()), qprune::shape_error);
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x_bad_rows.cview(), 0, packed, y.view()), qprune::shape_error);
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), 0, packed, y_bad.view()), qprune::shape_error);
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), 0, packed, y_bad_rows.view()), qprune::shape_error);
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), 256, packed, y.view()), qprune::config_error);
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), -1, packed, y.view()), qprune::config_error);
    tensor<std::int8_t, 2> xs(25, 4);
    EXPECT_THROW(k::conv2d_s8<std::int8_t>(xs.cview(), 128, packed, y.view()), qprune::config_error);
    EXPECT_THROW(k::conv2d_s8<std::int8_t>(xs.cview(), -129, packed, y.view()), qprune::config_error);
    tensor<float, 2> yf(25, 6);
    EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), 0, packed, yf.view(), k::store_float{}), qprune::config_error);
    const std::vector<float> s_w(5, 1e-3f);
    const auto params = qprune::quant::make_requant_params(
        0.02f, s_w, {0.1f, 0}, qprune::quant::full_range(qprune::quant::dtype::int8),
        qprune::quant::fused_activation::none);
    const k::requant_stage<std::int8_t> st5(params, {}, 5);
    tensor<std::int8_t, 2> q(25, 6);
    EXPECT_THROW((k::conv2d_s8<std::uint8_t, std::int8_t>(x.cview(), 0, packed, q.view(), st5)), qprune::shape_error);
  }
  const k::packed_conv_s8 empty;
  tensor<std::uint8_t, 2> x(25, 4);
  tensor<std::int32_t, 2> y(25, 6);
  EXPECT_THROW(k::conv2d_s8<std::uint8_t>(x.cview(), 0, empty, y.view()), qprune::config_error);
}

}  // namespace

// Tests for prune/structured.hpp: L1/L2/geometric-median channel scores against
// hand-computed values, exact-count selection with its tie rule, physical removal of
// producer rows / filters, consumer columns / in-channel slices / flattened NHWC
// columns and BatchNorm entries, the constant-output fold, and the shrunk-network
// equality on random Dense and Conv stacks (with BatchNorm, flatten and max-pool)
// against a masked network run by the reference forward functions below.
#include "qprune/prune/structured.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor;
namespace prune = qprune::prune;
using prune::activation;
using prune::batch_norm_params;
using prune::channel_count;
using prune::channel_criterion;
using prune::conv2d_params;
using prune::dense_params;
using prune::flatten_shape;
using prune::padded_fold;
using prune::padding2d;

// ---------------------------------------------------------------------------
// Reference forward functions (the "masked network" and the shrunk one run through
// the same code). Every output accumulates in double, starting from the bias, in
// increasing input index, and is rounded once to float.
// ---------------------------------------------------------------------------
namespace ref {

/// x [N, in] -> [N, out].
tensor<float, 2> dense(const dense_params& p, const tensor<float, 2>& x) {
  const index_t n = x.extent(0);
  tensor<float, 2> y(n, p.out_features());
  for (index_t b = 0; b < n; ++b) {
    for (index_t j = 0; j < p.out_features(); ++j) {
      double acc = p.bias.empty() ? 0.0 : static_cast<double>(p.bias[static_cast<std::size_t>(j)]);
      for (index_t i = 0; i < p.in_features(); ++i)
        acc += static_cast<double>(p.weight(j, i)) * static_cast<double>(x(b, i));
      y(b, j) = static_cast<float>(acc);
    }
  }
  return y;
}

index_t conv_out(index_t in, index_t pad_a, index_t pad_b, index_t k, index_t s) {
  return (in + pad_a + pad_b - k) / s + 1;
}

/// x NHWC [N, H, W, C], filters OHWI, explicit zero padding and stride.
tensor<float, 4> conv2d(const conv2d_params& p, const tensor<float, 4>& x) {
  const index_t n = x.extent(0), h = x.extent(1), w = x.extent(2), c = x.extent(3);
  EXPECT_EQ(c, p.in_channels());
  const index_t ho = conv_out(h, p.padding.top, p.padding.bottom, p.kernel_h(), p.stride_h);
  const index_t wo = conv_out(w, p.padding.left, p.padding.right, p.kernel_w(), p.stride_w);
  tensor<float, 4> y(n, ho, wo, p.out_channels());
  for (index_t b = 0; b < n; ++b)
    for (index_t oy = 0; oy < ho; ++oy)
      for (index_t ox = 0; ox < wo; ++ox)
        for (index_t o = 0; o < p.out_channels(); ++o) {
          double acc = p.bias.empty() ? 0.0 : static_cast<double>(p.bias[static_cast<std::size_t>(o)]);
          for (index_t ky = 0; ky < p.kernel_h(); ++ky) {
            const index_t iy = oy * p.stride_h - p.padding.top + ky;
            if (iy < 0 || iy >= h) continue;
            for (index_t kx = 0; kx < p.kernel_w(); ++kx) {
              const index_t ix = ox * p.stride_w - p.padding.left + kx;
              if (ix < 0 || ix >= w) continue;
              for (index_t i = 0; i < c; ++i)
                acc += static_cast<double>(p.weight(o, ky, kx, i)) * static_cast<double>(x(b, iy, ix, i));
            }
          }
          y(b, oy, ox, o) = static_cast<float>(acc);
        }
  return y;
}

float act(float v, activation a) {
  switch (a) {
    case activation::identity: return v;
    case activation::relu: return v > 0.0f ? v : 0.0f;
    case activation::relu6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
  }
  return v;
}

template <std::size_t R>
void apply_act(tensor<float, R>& t, activation a) {
  for (float& v : t.span()) v = act(v, a);
}

/// Inference batch norm over the last axis (channels).
template <std::size_t R>
void batch_norm(tensor<float, R>& t, const batch_norm_params& bn) {
  const auto c = static_cast<std::size_t>(bn.channels());
  auto s = t.span();
  for (std::size_t i = 0; i < s.size(); ++i) {
    const std::size_t ch = i % c;
    s[i] = static_cast<float>(static_cast<double>(bn.gamma[ch]) *
                                  (static_cast<double>(s[i]) - static_cast<double>(bn.running_mean[ch])) /
                                  std::sqrt(static_cast<double>(bn.running_var[ch]) + static_cast<double>(bn.eps)) +
                              static_cast<double>(bn.beta[ch]));
  }
}

/// 2x2 max-pool, stride 2, no padding (floor).
tensor<float, 4> maxpool2(const tensor<float, 4>& x) {
  const index_t n = x.extent(0), h = x.extent(1) / 2, w = x.extent(2) / 2, c = x.extent(3);
  tensor<float, 4> y(n, h, w, c);
  for (index_t b = 0; b < n; ++b)
    for (index_t oy = 0; oy < h; ++oy)
      for (index_t ox = 0; ox < w; ++ox)
        for (index_t i = 0; i < c; ++i)
          y(b, oy, ox, i) = std::max(std::max(x(b, 2 * oy, 2 * ox, i), x(b, 2 * oy, 2 * ox + 1, i)),
                                     std::max(x(b, 2 * oy + 1, 2 * ox, i), x(b, 2 * oy + 1, 2 * ox + 1, i)));
  return y;
}

/// NHWC [N, H, W, C] -> [N, H*W*C]: column (h*W + w)*C + c.
tensor<float, 2> flatten(const tensor<float, 4>& x) {
  return x.reshaped(qprune::extents<2>(x.extent(0), x.extent(1) * x.extent(2) * x.extent(3)));
}

}  // namespace ref

// ---------------------------------------------------------------------------
// Random parameters
// ---------------------------------------------------------------------------

tensor<float, 2> mat(index_t rows, index_t cols, std::initializer_list<float> v) {
  return tensor<float, 2>(qprune::extents<2>(rows, cols), v);
}
tensor<float, 4> mat4(index_t o, index_t h, index_t w, index_t i, std::initializer_list<float> v) {
  return tensor<float, 4>(qprune::extents<4>(o, h, w, i), v);
}

float uniform(std::mt19937_64& rng, float lo, float hi) {
  return std::uniform_real_distribution<float>(lo, hi)(rng);
}

std::vector<float> random_vector(std::mt19937_64& rng, index_t n, float lo, float hi) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = uniform(rng, lo, hi);
  return v;
}

template <std::size_t R>
void fill_random(tensor<float, R>& t, std::mt19937_64& rng) {
  for (float& v : t.span()) v = uniform(rng, -1.0f, 1.0f);
}

dense_params random_dense(std::mt19937_64& rng, index_t out, index_t in) {
  dense_params p{tensor<float, 2>(out, in), random_vector(rng, out, -1.0f, 1.0f)};
  fill_random(p.weight, rng);
  return p;
}

conv2d_params random_conv(std::mt19937_64& rng, index_t out, index_t kh, index_t kw, index_t in,
                          index_t stride, padding2d pad) {
  conv2d_params p{tensor<float, 4>(out, kh, kw, in), random_vector(rng, out, -1.0f, 1.0f), stride, stride,
                  pad};
  fill_random(p.weight, rng);
  return p;
}

batch_norm_params random_bn(std::mt19937_64& rng, index_t c) {
  return batch_norm_params{random_vector(rng, c, 0.5f, 1.5f), random_vector(rng, c, -0.5f, 0.5f),
                           random_vector(rng, c, -0.5f, 0.5f), random_vector(rng, c, 0.5f, 1.5f), 1e-3f};
}

/// Zeroes the weights of the channels not in `keep` through output_channel_mask
/// (the weight viewed as [out, rest]); with `mask_bias`, their bias too.
template <class P>
P masked(const P& p, const std::vector<index_t>& keep, bool mask_bias) {
  P m = p;
  const auto mk = prune::output_channel_mask(p, keep);
  auto w = m.weight.span();
  auto b = mk.span();
  EXPECT_EQ(w.size(), b.size());
  for (std::size_t i = 0; i < w.size(); ++i)
    if (b[i] == 0) w[i] = 0.0f;
  if (mask_bias) {
    for (index_t c : prune::complement_channels(p.weight.extent(0), keep)) m.bias[static_cast<std::size_t>(c)] = 0.0f;
  }
  return m;
}

template <std::size_t R>
std::vector<float> values(const tensor<float, R>& t) {
  return {t.span().begin(), t.span().end()};
}

// Tolerance of the shrunk-vs-masked comparison: both networks run the same double
// accumulation on bit-identical kept activations; they differ only by the folded
// bias, rounded once to float (<= 2^-24 relative to the new bias), and by summation
// order in double. |shrunk - masked| <= 1e-5 * max(1, max|masked|).
constexpr double kTol = 1e-5;

double scale_of(const std::vector<float>& v) {
  double s = 1.0;
  for (float x : v) s = std::max(s, std::fabs(static_cast<double>(x)));
  return s;
}

void expect_close(const std::vector<float>& shrunk, const std::vector<float>& masked) {
  ASSERT_EQ(shrunk.size(), masked.size());
  const double tol = kTol * scale_of(masked);
  for (std::size_t i = 0; i < shrunk.size(); ++i) {
    ASSERT_NEAR(shrunk[i], masked[i], tol) << "at flat index " << i;
  }
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return d;
}

// ---------------------------------------------------------------------------
// Scores
// ---------------------------------------------------------------------------

TEST(StructuredScores, L1AndL2HandExample) {
  const dense_params p{tensor<float, 2>(qprune::extents<2>(3, 4), {1, -2, 3, -4, 0, 0, 0, 0, -1, 1, -1, 1}), {}};
  const auto l1 = prune::channel_scores(p, channel_criterion::l1);
  const auto l2 = prune::channel_scores(p, channel_criterion::l2);
  ASSERT_EQ(l1.size(), 3u);
  EXPECT_EQ(l1[0], 10.0);
  EXPECT_EQ(l1[1], 0.0);
  EXPECT_EQ(l1[2], 4.0);
  EXPECT_EQ(l2[0], std::sqrt(30.0));
  EXPECT_EQ(l2[1], 0.0);
  EXPECT_EQ(l2[2], 2.0);
}

TEST(StructuredScores, GeometricMedianHandExample1D) {
  // Filters 0, 1, 3 on a line: summed distances 1+3, 1+2, 3+2.
  const dense_params p{tensor<float, 2>(qprune::extents<2>(3, 1), {0, 1, 3}), {}};
  const auto s = prune::channel_scores(p, channel_criterion::geometric_median);
  EXPECT_EQ(s, (std::vector<double>{4.0, 3.0, 5.0}));
  // The middle filter is the most replaceable one: removed first.
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{1}), std::vector<index_t>{1});
}

TEST(StructuredScores, GeometricMedianDiffersFromNorms) {
  // A=(0,0), B=(1,0), C=(0,1), D=(10,10).
  //   A: |AB|+|AC|+|AD| = 1 + 1 + sqrt(200)
  //   B: 1 + sqrt(2) + sqrt(181);  C: the same;  D: sqrt(200) + 2 sqrt(181)
  const dense_params p{tensor<float, 2>(qprune::extents<2>(4, 2), {0, 0, 1, 0, 0, 1, 10, 10}), {}};
  const auto s = prune::channel_scores(p, channel_criterion::geometric_median);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_DOUBLE_EQ(s[0], 2.0 + std::sqrt(200.0));
  EXPECT_DOUBLE_EQ(s[1], 1.0 + std::sqrt(2.0) + std::sqrt(181.0));
  EXPECT_EQ(s[1], s[2]);  // same summands in the same order: an exact tie
  EXPECT_DOUBLE_EQ(s[3], std::sqrt(200.0) + 2.0 * std::sqrt(181.0));
  // B and C tie: the higher index is removed first (the lower kept).
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{1}), std::vector<index_t>{2});
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{2}), (std::vector<index_t>{1, 2}));
  // By norm, A (the zero filter) would go first.
  const auto l2 = prune::channel_scores(p, channel_criterion::l2);
  EXPECT_EQ(prune::select_channels_to_remove(l2, channel_count{1}), std::vector<index_t>{0});
}

TEST(StructuredScores, ConvScoresUseTheOHWIFilterRows) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(11);
  const auto conv = random_conv(rng, 5, 2, 3, 4, 1, {});
  // The same numbers as a Dense weight [out, kh*kw*in].
  const dense_params flat{conv.weight.reshaped(qprune::extents<2>(5, 24)), {}};
  for (auto c : {channel_criterion::l1, channel_criterion::l2, channel_criterion::geometric_median}) {
    EXPECT_EQ(prune::channel_scores(conv, c), prune::channel_scores(flat, c));
  }
  // L1 recomputed here for filter 3.
  double l1 = 0.0;
  for (index_t y = 0; y < 2; ++y)
    for (index_t x = 0; x < 3; ++x)
      for (index_t i = 0; i < 4; ++i) l1 += std::fabs(static_cast<double>(conv.weight(3, y, x, i)));
  EXPECT_EQ(prune::channel_scores(conv, channel_criterion::l1)[3], l1);
}

// ---------------------------------------------------------------------------
// Selection
// ---------------------------------------------------------------------------

TEST(StructuredSelect, ExactCountWithHigherIndexRemovedFirstAmongTies) {
  const std::vector<double> s{3.0, 1.0, 2.0, 1.0};
  EXPECT_EQ(prune::select_channels_to_remove(s, 0.25), std::vector<index_t>{3});  // tie 1, 3
  EXPECT_EQ(prune::select_channels_to_remove(s, 0.5), (std::vector<index_t>{1, 3}));
  EXPECT_EQ(prune::select_channels_to_remove(s, 0.75), (std::vector<index_t>{1, 2, 3}));
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{3}), (std::vector<index_t>{1, 2, 3}));
  const std::vector<double> eq(5, 7.0);
  EXPECT_EQ(prune::select_channels_to_remove(eq, channel_count{2}), (std::vector<index_t>{3, 4}));
  EXPECT_EQ(prune::select_channels_to_remove(eq, channel_count{4}), (std::vector<index_t>{1, 2, 3, 4}));
  // -0.0 and +0.0 are equal scores: the tie rule, not the sign, decides.
  const std::vector<double> zeros{0.0, -0.0, 1.0};
  EXPECT_EQ(prune::select_channels_to_remove(zeros, channel_count{1}), std::vector<index_t>{1});
}

TEST(StructuredSelect, TieRuleIsTheSharedOne) {
  // select_channels_to_remove is prune_lowest on the channel scores...
  const std::vector<double> s{2.0, 1.0, 2.0, 1.0, 1.0, 2.0};
  for (index_t k = 0; k < 6; ++k) {
    std::vector<std::uint8_t> keep(6, 1);
    prune::prune_lowest(s, k, keep);
    std::vector<std::uint8_t> selected(6, 1);
    for (index_t c : prune::select_channels_to_remove(s, channel_count{k})) selected[static_cast<std::size_t>(c)] = 0;
    EXPECT_EQ(selected, keep) << "k = " << k;
  }
  // Score 1.0 is held by channels 1, 3, 4: two of them go, the higher ones.
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{2}), (std::vector<index_t>{3, 4}));
  // ... and agrees with pytorch::ln_structured (L1, dim 0), whose ties keep the lower
  // channel, on a weight whose rows have equal L1 norms in pairs.
  const tensor<float, 2> w(qprune::extents<2>(6, 3),
                           {1, 2, 3, 3, 2, 1, 0.5f, 0.5f, 1, -1, -0.5f, 0.5f, 4, 0, 0, 0, 0, 4});
  const dense_params p{w, {}};
  const auto l1 = prune::channel_scores(p, channel_criterion::l1);
  ASSERT_EQ(l1, (std::vector<double>{6, 6, 2, 2, 4, 4}));
  for (index_t k = 0; k < 6; ++k) {
    const auto removed = prune::select_channels_to_remove(l1, channel_count{k});
    EXPECT_EQ(prune::output_channel_mask(p, prune::complement_channels(6, removed)),
              prune::pytorch::ln_structured(w.cview(), k, 1.0, 0))
        << "k = " << k;
  }
  EXPECT_EQ(prune::select_channels_to_remove(l1, channel_count{1}), std::vector<index_t>{3});
  EXPECT_EQ(prune::select_channels_to_remove(l1, channel_count{3}), (std::vector<index_t>{2, 3, 5}));
}

TEST(StructuredSelect, CountIsRoundedHalfToEven) {
  EXPECT_EQ(prune::channels_to_remove(4, 0.375), 2);  // 1.5 -> 2
  EXPECT_EQ(prune::channels_to_remove(4, 0.625), 2);  // 2.5 -> 2
  EXPECT_EQ(prune::channels_to_remove(10, 0.25), 2);  // 2.5 -> 2
  EXPECT_EQ(prune::channels_to_remove(6, 0.25), 2);   // 1.5 -> 2
  EXPECT_EQ(prune::channels_to_remove(10, 0.35), 4);  // 3.5 -> 4 (0.35*10 in double is 3.5)
  EXPECT_EQ(prune::channels_to_remove(7, 0.0), 0);
  EXPECT_EQ(prune::channels_to_remove(7, 1.0), 7);
  EXPECT_EQ(prune::channels_to_remove(0, 0.5), 0);
}

TEST(StructuredSelect, NaNScoresAreRemovedLast) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> s{nan, 5.0, 1.0, nan};
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{2}), (std::vector<index_t>{1, 2}));
  // Two NaN scores tie: the higher index goes first.
  EXPECT_EQ(prune::select_channels_to_remove(s, channel_count{3}), (std::vector<index_t>{1, 2, 3}));
  const std::vector<double> inf{std::numeric_limits<double>::infinity(), nan, 0.0};
  EXPECT_EQ(prune::select_channels_to_remove(inf, channel_count{2}), (std::vector<index_t>{0, 2}));
}

TEST(StructuredSelect, AmountZeroRemovesNothing) {
  const std::vector<double> s{3.0, 1.0, 2.0};
  EXPECT_TRUE(prune::select_channels_to_remove(s, 0.0).empty());
  EXPECT_TRUE(prune::select_channels_to_remove(s, channel_count{0}).empty());
  EXPECT_TRUE(prune::select_channels_to_remove(s, 0.1).empty());  // 0.3 -> 0
}

TEST(StructuredSelect, CannotRemoveAllChannels) {
  const std::vector<double> s{3.0, 1.0, 2.0, 0.5};
  try {
    (void)prune::select_channels_to_remove(s, 1.0);
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot remove all 4 output channels"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)prune::select_channels_to_remove(s, channel_count{4}), config_error);
  EXPECT_THROW((void)prune::select_channels_to_remove(s, 0.9), config_error);  // 3.6 -> 4
  EXPECT_THROW((void)prune::select_channels_to_remove(s, channel_count{5}), config_error);
  EXPECT_THROW((void)prune::select_channels_to_remove(s, channel_count{-1}), config_error);
}

TEST(StructuredSelect, OneChannel) {
  const std::vector<double> s{2.0};
  EXPECT_TRUE(prune::select_channels_to_remove(s, 0.5).empty());  // 0.5 -> 0 (half to even)
  try {
    (void)prune::select_channels_to_remove(s, 0.6);  // 0.6 -> 1 = all
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot remove all 1 output channels"), std::string::npos) << e.what();
  }
  // A one-channel layer can be "shrunk" to itself.
  const dense_params p{tensor<float, 2>(qprune::extents<2>(1, 2), {1, 2}), {0.5f}};
  const std::vector<index_t> keep{0};
  const auto r = prune::remove_output_channels(p, keep);
  EXPECT_EQ(r.weight, p.weight);
  EXPECT_EQ(r.bias, p.bias);
}

TEST(StructuredSelect, InvalidFractionThrows) {
  const std::vector<double> s{1.0, 2.0};
  EXPECT_THROW((void)prune::select_channels_to_remove(s, -0.1), config_error);
  EXPECT_THROW((void)prune::select_channels_to_remove(s, 1.5), config_error);
  EXPECT_THROW((void)prune::select_channels_to_remove(s, std::numeric_limits<double>::quiet_NaN()), config_error);
  // An integer literal is a fraction (2.0), not a count: rejected with a hint.
  try {
    (void)prune::select_channels_to_remove(s, 2);
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("channel_count"), std::string::npos) << e.what();
  }
}

TEST(StructuredSelect, ComplementChannels) {
  const std::vector<index_t> removed{3, 1};
  EXPECT_EQ(prune::complement_channels(5, removed), (std::vector<index_t>{0, 2, 4}));
  EXPECT_EQ(prune::complement_channels(3, std::vector<index_t>{}), (std::vector<index_t>{0, 1, 2}));
  EXPECT_THROW((void)prune::complement_channels(3, std::vector<index_t>{3}), config_error);
}

// ---------------------------------------------------------------------------
// Physical removal, by hand
// ---------------------------------------------------------------------------

TEST(StructuredRemove, DenseProducerAndConsumer) {
  const dense_params prod{tensor<float, 2>(qprune::extents<2>(3, 2), {1, 2, 3, 4, 5, 6}), {0.1f, 0.2f, 0.3f}};
  const std::vector<index_t> keep{0, 2};
  const auto p = prune::remove_output_channels(prod, keep);
  EXPECT_EQ(p.weight, mat(2, 2, {1, 2, 5, 6}));
  EXPECT_EQ(p.bias, (std::vector<float>{0.1f, 0.3f}));

  const dense_params cons{tensor<float, 2>(qprune::extents<2>(2, 3), {1, 2, 3, 4, 5, 6}), {10.0f, 20.0f}};
  const auto c = prune::remove_input_channels(cons, keep);
  EXPECT_EQ(c.weight, mat(2, 2, {1, 3, 4, 6}));
  EXPECT_EQ(c.bias, cons.bias);
  // Fold: removed channel 1 with constant 0.5: b' = b + W[:,1]*0.5.
  const std::vector<float> consts{9.0f, 0.5f, 9.0f};  // only channel 1 is read
  const auto f = prune::remove_input_channels(cons, keep, consts);
  EXPECT_EQ(f.weight, c.weight);
  EXPECT_EQ(f.bias, (std::vector<float>{11.0f, 22.5f}));
  // No consumer bias: created only when something is folded.
  const dense_params nob{cons.weight, {}};
  EXPECT_EQ(prune::remove_input_channels(nob, keep, consts).bias, (std::vector<float>{1.0f, 2.5f}));
  EXPECT_TRUE(prune::remove_input_channels(nob, keep, std::vector<float>{9.0f, 0.0f, 9.0f}).bias.empty());
}

TEST(StructuredRemove, ConvProducerAndConsumer) {
  // 3 filters 1x2x2 (OHWI): filter o, tap x, in-channel i holds 100*o + 10*x + i.
  conv2d_params conv{tensor<float, 4>(3, 1, 2, 2), {1.0f, 2.0f, 3.0f}, 2, 1, padding2d{1, 0, 0, 1}};
  for (index_t o = 0; o < 3; ++o)
    for (index_t x = 0; x < 2; ++x)
      for (index_t i = 0; i < 2; ++i) conv.weight(o, 0, x, i) = static_cast<float>(100 * o + 10 * x + i);
  const std::vector<index_t> keep_out{1, 2};
  const auto p = prune::remove_output_channels(conv, keep_out);
  EXPECT_EQ(p.weight, mat4(2, 1, 2, 2, {100, 101, 110, 111, 200, 201, 210, 211}));
  EXPECT_EQ(p.bias, (std::vector<float>{2.0f, 3.0f}));
  EXPECT_EQ(p.stride_h, 2);
  EXPECT_EQ(p.stride_w, 1);
  EXPECT_EQ(p.padding.top, 1);
  EXPECT_EQ(p.padding.right, 1);

  const std::vector<index_t> keep_in{1};
  const auto c = prune::remove_input_channels(conv, keep_in);
  EXPECT_EQ(c.weight, mat4(3, 1, 2, 1, {1, 11, 101, 111, 201, 211}));
  EXPECT_EQ(c.bias, conv.bias);
  // Fold channel 0 (constant 2) into an unpadded copy: b'_o = b_o + 2*(W[o,0,0,0] + W[o,0,1,0]).
  conv2d_params valid = conv;
  valid.padding = {};
  const auto f = prune::remove_input_channels(valid, keep_in, std::vector<float>{2.0f, 7.0f});
  EXPECT_EQ(f.weight, c.weight);
  EXPECT_EQ(f.bias, (std::vector<float>{1.0f + 2 * 10, 2.0f + 2 * 210, 3.0f + 2 * 410}));
  // Padded: rejected unless the caller accepts the border error; fine with a 0 constant.
  EXPECT_THROW((void)prune::remove_input_channels(conv, keep_in, std::vector<float>{2.0f, 7.0f}), config_error);
  EXPECT_EQ(prune::remove_input_channels(conv, keep_in, std::vector<float>{2.0f, 7.0f}, padded_fold::interior_exact).bias,
            f.bias);
  EXPECT_EQ(prune::remove_input_channels(conv, keep_in, std::vector<float>{0.0f, 7.0f}).bias, conv.bias);
}

TEST(StructuredRemove, FlattenedColumnsFollowNHWC) {
  // H=1, W=2, C=3: column (h*W + w)*C + c; removing c=1 drops columns 1 and 4.
  dense_params d{tensor<float, 2>(2, 6), {0.0f, 1.0f}};
  for (index_t j = 0; j < 2; ++j)
    for (index_t i = 0; i < 6; ++i) d.weight(j, i) = static_cast<float>(10 * j + i);
  const std::vector<index_t> keep{0, 2};
  const auto r = prune::remove_flattened_input_channels(d, flatten_shape{1, 2, 3}, keep);
  EXPECT_EQ(r.weight, mat(2, 4, {0, 2, 3, 5, 10, 12, 13, 15}));
  EXPECT_EQ(r.bias, d.bias);
  // Fold const 2 of channel 1: b'_j = b_j + 2*(W[j,1] + W[j,4]).
  const auto f = prune::remove_flattened_input_channels(d, flatten_shape{1, 2, 3}, keep,
                                                        std::vector<float>{5.0f, 2.0f, 5.0f});
  EXPECT_EQ(f.weight, r.weight);
  EXPECT_EQ(f.bias, (std::vector<float>{0.0f + 2 * (1 + 4), 1.0f + 2 * (11 + 14)}));
}

TEST(StructuredRemove, BatchNormChannels) {
  const batch_norm_params bn{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}, 0.01f};
  const std::vector<index_t> keep{0, 2};
  const auto r = prune::remove_channels(bn, keep);
  EXPECT_EQ(r.gamma, (std::vector<float>{1, 3}));
  EXPECT_EQ(r.beta, (std::vector<float>{4, 6}));
  EXPECT_EQ(r.running_mean, (std::vector<float>{7, 9}));
  EXPECT_EQ(r.running_var, (std::vector<float>{10, 12}));
  EXPECT_EQ(r.eps, 0.01f);
}

TEST(StructuredRemove, OutputChannelMaskZeroesWholeRows) {
  conv2d_params conv{tensor<float, 4>(3, 2, 2, 2), {}, 1, 1, {}};
  const std::vector<index_t> keep{0, 2};
  const auto m = prune::output_channel_mask(conv, keep);
  static_assert(std::is_same_v<std::remove_const_t<decltype(m)>, prune::mask>,
                "every pruner returns prune::mask");
  ASSERT_EQ(m.extent(0), 3);
  ASSERT_EQ(m.extent(1), 8);
  for (index_t j = 0; j < 8; ++j) {
    EXPECT_EQ(m(0, j), 1);
    EXPECT_EQ(m(1, j), 0);
    EXPECT_EQ(m(2, j), 1);
  }
  EXPECT_EQ(m.count_pruned(), 8);
  EXPECT_TRUE(m.is_binary());
  // Applying it zeroes exactly the removed filter (viewed as [out, kh*kw*in]).
  tensor<float, 2> w(3, 8);
  for (float& v : w.span()) v = 1.5f;
  m.apply(w.view());
  for (index_t j = 0; j < 8; ++j) {
    EXPECT_EQ(w(0, j), 1.5f);
    EXPECT_EQ(w(1, j), 0.0f);
  }
}

// ---------------------------------------------------------------------------
// The channel_pruner policy
// ---------------------------------------------------------------------------

static_assert(prune::pruner<prune::channel_pruner>);
static_assert(prune::sparsity_pruner<prune::channel_pruner>);
static_assert(std::is_same_v<prune::channel_pruner::mask_type, prune::mask>);

TEST(StructuredPolicy, ChannelPrunerEqualsScoreSelectMask) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(31);
  const auto conv = random_conv(rng, 8, 3, 3, 2, 1, {});
  const auto view = qprune::tensor_view<const float, 2, qprune::layout_stride>(conv.filters());
  for (auto c : {channel_criterion::l1, channel_criterion::l2, channel_criterion::geometric_median}) {
    for (float sp : {0.0f, 0.25f, 0.5f, 0.625f}) {
      const prune::channel_pruner pr(c, sp);
      const auto removed = prune::select_channels_to_remove(prune::channel_scores(conv, c), static_cast<double>(sp));
      const auto expected = prune::output_channel_mask(conv, prune::complement_channels(8, removed));
      const auto m = pr.compute_mask(view);
      EXPECT_EQ(m, expected) << "sparsity " << sp;
      EXPECT_EQ(m.sparsity(), static_cast<double>(removed.size()) / 8.0);
      // Whole rows only.
      for (index_t r = 0; r < 8; ++r) {
        index_t kept = 0;
        for (index_t j = 0; j < 18; ++j) kept += m(r, j);
        EXPECT_TRUE(kept == 0 || kept == 18) << "row " << r;
      }
    }
  }
}

TEST(StructuredPolicy, ChannelPrunerTiesSparsityAndErrors) {
  // Rows with equal L2 norms: the higher rows go first (round_half_even(0.5·4) = 2).
  const tensor<float, 2> w(qprune::extents<2>(4, 2), {3, 4, 4, 3, 0, 5, 5, 0});
  prune::channel_pruner pr(channel_criterion::l2, 0.5f);
  EXPECT_EQ(pr.criterion(), channel_criterion::l2);
  EXPECT_EQ(pr.compute_mask(w.cview()),
            prune::mask::from_values(qprune::extents<2>(4, 2), std::vector<std::uint8_t>{1, 1, 1, 1, 0, 0, 0, 0}));
  pr.set_sparsity(0.25f);
  EXPECT_EQ(pr.sparsity(), 0.25f);
  EXPECT_EQ(pr.compute_mask(w.cview()),
            prune::mask::from_values(qprune::extents<2>(4, 2), std::vector<std::uint8_t>{1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_THROW(pr.set_sparsity(1.5f), config_error);
  EXPECT_EQ(pr.sparsity(), 0.25f);
  EXPECT_THROW(prune::channel_pruner(channel_criterion::l1, -0.1f), config_error);
  EXPECT_THROW(prune::channel_pruner(channel_criterion::l1, std::numeric_limits<float>::quiet_NaN()), config_error);
  // Removing every channel is refused, as for physical removal.
  pr.set_sparsity(1.0f);
  EXPECT_THROW((void)pr.compute_mask(w.cview()), config_error);
  // A weight without rows gives an empty mask.
  const tensor<float, 2> none(0, 3);
  EXPECT_EQ(pr.compute_mask(none.cview()).size(), 0);
}

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

TEST(StructuredConstants, ActivationOfBias) {
  const dense_params p{tensor<float, 2>(4, 1), {-1.0f, 0.5f, 2.0f, 7.0f}};
  EXPECT_EQ(prune::channel_constants(p, activation::relu), (std::vector<float>{0.0f, 0.5f, 2.0f, 7.0f}));
  EXPECT_EQ(prune::channel_constants(p, activation::relu6), (std::vector<float>{0.0f, 0.5f, 2.0f, 6.0f}));
  EXPECT_EQ(prune::channel_constants(p, activation::identity), p.bias);
  const dense_params nob{tensor<float, 2>(2, 1), {}};
  EXPECT_EQ(prune::channel_constants(nob, activation::identity), (std::vector<float>{0.0f, 0.0f}));
}

TEST(StructuredConstants, ThroughBatchNorm) {
  // gamma 2, mean 1, var 3, eps 1: 2*(b-1)/2 + beta = b - 1 + beta; beta 0.5.
  const batch_norm_params bn{{2, 2}, {0.5f, 0.5f}, {1, 1}, {3, 3}, 1.0f};
  const conv2d_params conv{tensor<float, 4>(2, 1, 1, 1), {0.25f, 3.0f}, 1, 1, {}};
  EXPECT_EQ(prune::channel_constants(conv, bn, activation::relu), (std::vector<float>{0.0f, 2.5f}));
  EXPECT_EQ(prune::channel_constants(conv, bn, activation::identity), (std::vector<float>{-0.25f, 2.5f}));
  const batch_norm_params bn3{{1, 1, 1}, {0, 0, 0}, {0, 0, 0}, {1, 1, 1}, 0.0f};
  EXPECT_THROW((void)prune::channel_constants(conv, bn3, activation::relu), shape_error);
}

// ---------------------------------------------------------------------------
// Shrunk network == masked network
// ---------------------------------------------------------------------------

/// Makes the constant of channel c clearly nonzero (so the fold is needed).
void force_positive_constant(std::vector<float>& bias, std::optional<batch_norm_params>& bn, index_t c) {
  const auto i = static_cast<std::size_t>(c);
  bias[i] = 0.75f + std::fabs(bias[i]);
  if (bn) {
    bn->running_mean[i] = -0.25f;
    bn->beta[i] = 0.5f;
  }
}

struct dense_case {
  activation act;
  channel_criterion criterion;
};

void PrintTo(const dense_case& c, std::ostream* os) {
  *os << "act=" << static_cast<int>(c.act) << " criterion=" << static_cast<int>(c.criterion);
}

class StructuredDenseStack : public ::testing::TestWithParam<dense_case> {};

TEST_P(StructuredDenseStack, ShrunkEqualsMasked) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto [act, criterion] = GetParam();
  auto rng = qprune::test::make_rng(100 + static_cast<std::uint64_t>(act) * 3 + static_cast<std::uint64_t>(criterion));
  for (int rep = 0; rep < 5; ++rep) {
    SCOPED_TRACE("repeat " + std::to_string(rep));
    const index_t in = 3 + rep, hidden = 6 + 2 * rep, out = 2 + rep % 3, batch = 4;
    auto l1 = random_dense(rng, hidden, in);
    const auto l2 = random_dense(rng, out, hidden);
    tensor<float, 2> x(batch, in);
    fill_random(x, rng);

    const auto removed = prune::select_channels_to_remove(prune::channel_scores(l1, criterion), 0.375);
    ASSERT_EQ(static_cast<index_t>(removed.size()), prune::channels_to_remove(hidden, 0.375));
    const auto keep = prune::complement_channels(hidden, removed);
    std::optional<batch_norm_params> no_bn;
    force_positive_constant(l1.bias, no_bn, removed.front());

    // Masked network: removed rows of l1 zeroed, all channels still present.
    auto h = ref::dense(masked(l1, keep, false), x);
    ref::apply_act(h, act);
    const auto y_masked = values(ref::dense(l2, h));

    // Shrunk network.
    const auto s1 = prune::remove_output_channels(l1, keep);
    const auto s2 = prune::remove_input_channels(l2, keep, prune::channel_constants(l1, act));
    ASSERT_EQ(s1.out_features(), static_cast<index_t>(keep.size()));
    ASSERT_EQ(s2.in_features(), static_cast<index_t>(keep.size()));
    auto hs = ref::dense(s1, x);
    ref::apply_act(hs, act);
    expect_close(values(ref::dense(s2, hs)), y_masked);

    // Without the fold the outputs differ: the fold is what makes them equal.
    const auto y_unfolded = values(ref::dense(prune::remove_input_channels(l2, keep), hs));
    EXPECT_GT(max_abs_diff(y_unfolded, y_masked), 1e-3);

    // Bias masked too: removed channels output exactly 0; no fold, bit-identical.
    auto hz = ref::dense(masked(l1, keep, true), x);
    ref::apply_act(hz, act);
    EXPECT_EQ(values(ref::dense(prune::remove_input_channels(l2, keep), hs)), values(ref::dense(l2, hz)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, StructuredDenseStack,
    ::testing::Values(dense_case{activation::relu, channel_criterion::l1}, dense_case{activation::relu, channel_criterion::l2},
                      dense_case{activation::relu, channel_criterion::geometric_median},
                      dense_case{activation::identity, channel_criterion::l1},
                      dense_case{activation::relu6, channel_criterion::l2}));

enum class consumer_kind { conv, flatten_dense };

struct conv_case {
  bool batch_norm;
  bool maxpool;
  consumer_kind consumer;
  index_t consumer_stride;
  channel_criterion criterion;
};

void PrintTo(const conv_case& c, std::ostream* os) {
  *os << "bn=" << c.batch_norm << " maxpool=" << c.maxpool
      << " consumer=" << (c.consumer == consumer_kind::conv ? "conv" : "flatten_dense")
      << " stride=" << c.consumer_stride << " criterion=" << static_cast<int>(c.criterion);
}

class StructuredConvStack : public ::testing::TestWithParam<conv_case> {};

// Conv(pad 1) [-> BN] -> ReLU [-> maxpool2] -> Conv (valid, stride s) or flatten -> Dense.
TEST_P(StructuredConvStack, ShrunkEqualsMasked) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const conv_case cc = GetParam();
  auto rng = qprune::test::make_rng(200 + (cc.batch_norm ? 1u : 0u) + (cc.maxpool ? 2u : 0u) +
                                    (cc.consumer == consumer_kind::conv ? 4u : 0u) +
                                    8u * static_cast<std::uint64_t>(cc.consumer_stride) +
                                    32u * static_cast<std::uint64_t>(cc.criterion));
  const activation act = activation::relu;
  for (int rep = 0; rep < 3; ++rep) {
    SCOPED_TRACE("repeat " + std::to_string(rep));
    const index_t n = 2, h = 7 + rep, w = 6, cin = 3, c1 = 6 + rep;
    auto p = random_conv(rng, c1, 3, 3, cin, 1, padding2d{1, 1, 1, 1});
    std::optional<batch_norm_params> bn;
    if (cc.batch_norm) bn = random_bn(rng, c1);
    tensor<float, 4> x(n, h, w, cin);
    fill_random(x, rng);

    const auto removed = prune::select_channels_to_remove(prune::channel_scores(p, cc.criterion), 0.5);
    ASSERT_EQ(static_cast<index_t>(removed.size()), prune::channels_to_remove(c1, 0.5));
    const auto keep = prune::complement_channels(c1, removed);
    force_positive_constant(p.bias, bn, removed.front());

    // The activation entering the consumer, for a given producer / batch norm.
    auto features = [&](const conv2d_params& prod, const std::optional<batch_norm_params>& b) {
      auto t = ref::conv2d(prod, x);
      if (b) ref::batch_norm(t, *b);
      ref::apply_act(t, act);
      if (cc.maxpool) t = ref::maxpool2(t);
      return t;
    };
    const auto f_masked = features(masked(p, keep, false), bn);
    std::optional<batch_norm_params> bn_s;
    if (bn) bn_s = prune::remove_channels(*bn, keep);
    const auto f_shrunk = features(prune::remove_output_channels(p, keep), bn_s);
    ASSERT_EQ(f_shrunk.extent(3), static_cast<index_t>(keep.size()));
    const auto consts = bn ? prune::channel_constants(p, *bn, act) : prune::channel_constants(p, act);

    std::vector<float> y_masked, y_shrunk, y_unfolded;
    if (cc.consumer == consumer_kind::conv) {
      const auto q = random_conv(rng, 4, 2, 3, c1, cc.consumer_stride, {});
      y_masked = values(ref::conv2d(q, f_masked));
      y_shrunk = values(ref::conv2d(prune::remove_input_channels(q, keep, consts), f_shrunk));
      y_unfolded = values(ref::conv2d(prune::remove_input_channels(q, keep), f_shrunk));
    } else {
      const flatten_shape shape{f_masked.extent(1), f_masked.extent(2), c1};
      const auto q = random_dense(rng, 5, shape.height * shape.width * c1);
      y_masked = values(ref::dense(q, ref::flatten(f_masked)));
      y_shrunk = values(ref::dense(prune::remove_flattened_input_channels(q, shape, keep, consts),
                                   ref::flatten(f_shrunk)));
      y_unfolded = values(ref::dense(prune::remove_flattened_input_channels(q, shape, keep), ref::flatten(f_shrunk)));
    }
    expect_close(y_shrunk, y_masked);
    EXPECT_GT(max_abs_diff(y_unfolded, y_masked), 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, StructuredConvStack,
    ::testing::Values(conv_case{false, false, consumer_kind::conv, 1, channel_criterion::l1},
                      conv_case{false, false, consumer_kind::conv, 2, channel_criterion::geometric_median},
                      conv_case{true, false, consumer_kind::conv, 1, channel_criterion::l2},
                      conv_case{true, false, consumer_kind::conv, 2, channel_criterion::l1},
                      conv_case{false, true, consumer_kind::conv, 1, channel_criterion::l1},
                      conv_case{false, false, consumer_kind::flatten_dense, 1, channel_criterion::l1},
                      conv_case{true, false, consumer_kind::flatten_dense, 1, channel_criterion::geometric_median},
                      conv_case{false, true, consumer_kind::flatten_dense, 1, channel_criterion::l2},
                      conv_case{true, true, consumer_kind::flatten_dense, 1, channel_criterion::l1}));

// A padded consumer: the fold is exact only where the receptive field has no padding
// tap. Rejected by default; with interior_exact, equal in the interior and different
// at the border; with zero constants (bias masked too), exact everywhere.
TEST(StructuredPaddedConsumer, FoldIsExactOnlyInTheInterior) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(300);
  const index_t n = 2, h = 6, w = 7, cin = 2, c1 = 5;
  auto p = random_conv(rng, c1, 3, 3, cin, 1, padding2d{1, 1, 1, 1});
  const auto q = random_conv(rng, 3, 3, 3, c1, 1, padding2d{1, 1, 1, 1});
  tensor<float, 4> x(n, h, w, cin);
  fill_random(x, rng);
  const auto removed = prune::select_channels_to_remove(prune::channel_scores(p, channel_criterion::l2), channel_count{2});
  const auto keep = prune::complement_channels(c1, removed);
  std::optional<batch_norm_params> no_bn;
  force_positive_constant(p.bias, no_bn, removed.front());
  const auto consts = prune::channel_constants(p, activation::relu);

  EXPECT_THROW((void)prune::remove_input_channels(q, keep, consts), config_error);
  EXPECT_THROW((void)prune::remove_input_channels(q, keep, consts, padded_fold::reject), config_error);

  auto hm = ref::conv2d(masked(p, keep, false), x);
  ref::apply_act(hm, activation::relu);
  auto hs = ref::conv2d(prune::remove_output_channels(p, keep), x);
  ref::apply_act(hs, activation::relu);
  const auto ym = ref::conv2d(q, hm);
  const auto ys = ref::conv2d(prune::remove_input_channels(q, keep, consts, padded_fold::interior_exact), hs);
  ASSERT_EQ(ym.extents(), ys.extents());
  const double tol = kTol * scale_of(values(ym));
  double border_diff = 0.0;
  for (index_t b = 0; b < n; ++b)
    for (index_t oy = 0; oy < ym.extent(1); ++oy)
      for (index_t ox = 0; ox < ym.extent(2); ++ox)
        for (index_t o = 0; o < ym.extent(3); ++o) {
          // Receptive field rows oy-1..oy+1, cols ox-1..ox+1 (stride 1, pad 1, 3x3).
          const bool interior = oy >= 1 && oy + 1 < h && ox >= 1 && ox + 1 < w;
          const double d = std::fabs(static_cast<double>(ys(b, oy, ox, o)) - static_cast<double>(ym(b, oy, ox, o)));
          if (interior) {
            EXPECT_LE(d, tol) << "interior (" << b << ", " << oy << ", " << ox << ", " << o << ")";
          } else {
            border_diff = std::max(border_diff, d);
          }
        }
  EXPECT_GT(border_diff, 1e-3);

  // Bias masked too: constant 0, nothing to fold, no rejection, bit-identical.
  const auto pz = masked(p, keep, true);
  const auto zero_consts = prune::channel_constants(pz, activation::relu);
  auto hz = ref::conv2d(pz, x);
  ref::apply_act(hz, activation::relu);
  const auto qz = prune::remove_input_channels(q, keep, zero_consts);
  EXPECT_EQ(qz.bias, q.bias);
  EXPECT_EQ(values(ref::conv2d(qz, hs)), values(ref::conv2d(q, hz)));
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

TEST(StructuredErrors, InvalidKeepLists) {
  const dense_params d{tensor<float, 2>(4, 3), {1, 2, 3, 4}};
  try {
    (void)prune::remove_output_channels(d, std::vector<index_t>{});
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot remove all 4 output channels"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)prune::remove_output_channels(d, std::vector<index_t>{0, 4}), config_error);
  EXPECT_THROW((void)prune::remove_output_channels(d, std::vector<index_t>{-1}), config_error);
  EXPECT_THROW((void)prune::remove_output_channels(d, std::vector<index_t>{2, 1}), config_error);
  EXPECT_THROW((void)prune::remove_output_channels(d, std::vector<index_t>{1, 1}), config_error);
  EXPECT_THROW((void)prune::remove_input_channels(d, std::vector<index_t>{}), config_error);
  EXPECT_THROW((void)prune::remove_input_channels(d, std::vector<index_t>{3}), config_error);
  EXPECT_THROW((void)prune::output_channel_mask(d, std::vector<index_t>{5}), config_error);
}

TEST(StructuredErrors, ShapesAreValidated) {
  const std::vector<index_t> keep{0};
  const dense_params bad_bias{tensor<float, 2>(2, 3), {1.0f}};
  EXPECT_THROW((void)prune::remove_output_channels(bad_bias, keep), shape_error);
  EXPECT_THROW((void)prune::remove_input_channels(bad_bias, keep), shape_error);
  EXPECT_THROW((void)prune::channel_constants(bad_bias, activation::relu), shape_error);
  const conv2d_params bad_conv{tensor<float, 4>(2, 1, 1, 2), {1, 2, 3}, 1, 1, {}};
  EXPECT_THROW((void)prune::remove_output_channels(bad_conv, keep), shape_error);

  const dense_params d{tensor<float, 2>(2, 3), {}};
  // constants must cover every input channel
  EXPECT_THROW((void)prune::remove_input_channels(d, keep, std::vector<float>{1.0f, 2.0f}), shape_error);
  // flatten shape must match in_features
  EXPECT_THROW((void)prune::remove_flattened_input_channels(d, flatten_shape{1, 2, 2}, keep), shape_error);
  EXPECT_THROW((void)prune::remove_flattened_input_channels(d, flatten_shape{-1, -1, 3}, keep), shape_error);
  EXPECT_THROW((void)prune::remove_flattened_input_channels(d, flatten_shape{1, 1, 3}, keep, std::vector<float>{1.0f}),
               shape_error);
  // batch norm vectors of different lengths
  const batch_norm_params bn{{1, 2}, {1, 2}, {1}, {1, 2}, 1e-5f};
  EXPECT_THROW((void)prune::remove_channels(bn, keep), shape_error);
  const batch_norm_params bn_eps{{1}, {1}, {1}, {1}, -1.0f};
  EXPECT_THROW((void)prune::remove_channels(bn_eps, keep), config_error);
}

TEST(StructuredErrors, ConvStrideAndPadding) {
  const std::vector<index_t> keep{0};
  const conv2d_params s0{tensor<float, 4>(2, 1, 1, 1), {}, 0, 1, {}};
  EXPECT_THROW((void)prune::remove_output_channels(s0, keep), config_error);
  const conv2d_params pneg{tensor<float, 4>(2, 1, 1, 1), {}, 1, 1, padding2d{0, -1, 0, 0}};
  EXPECT_THROW((void)prune::remove_input_channels(pneg, keep), config_error);
}

}  // namespace

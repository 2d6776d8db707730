// nn layers: forward against direct formulas (conv against a double-precision
// direct convolution over many geometries), and every backward against central
// finite differences of L = Σ r ⊙ forward(x) (r fixed random), evaluated in float
// with the sum in double.
//
// Tolerance of the finite differences: h = 1e-2 on inputs of order 1. Outputs that
// do not depend on the perturbed entry are bit-identical in both evaluations, so the
// rounding error of the difference comes from the few affected outputs:
// ≈ sqrt(n_affected) · |r| · ulp(y) / (2h) ≲ 1e-4 for our sizes (n ≤ 400, |y| < 8);
// smooth layers add a truncation error h²/6 · |f'''| ≲ 1e-4 (batch norm). We assert
// |fd − analytic| ≤ 2e-3 + 2e-3 · |analytic|, above both by ≥ 10x, and far below
// any wrong gradient (a missing term or a wrong index is an O(0.1 .. 1) error).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "qprune/nn/activations.hpp"
#include "qprune/nn/batch_norm.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/loss.hpp"
#include "qprune/nn/pooling.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/prune/magnitude.hpp"
#include "support/random.hpp"

namespace {

using namespace qprune;
using qprune::test::make_rng;
using qprune::test::seed_trace;

constexpr double kH = 1e-2;
constexpr double kAbsTol = 2e-3;
constexpr double kRelTol = 2e-3;

template <std::size_t R>
tensor<float, R> random_tensor(const extents<R>& e, std::mt19937_64& rng, float lo = -1.0f,
                               float hi = 1.0f) {
  tensor<float, R> t(e);
  std::uniform_real_distribution<float> d(lo, hi);
  for (float& v : t.span()) v = d(rng);
  return t;
}

/// Values of magnitude in [0.1, 1] with a random sign: at least 10 h from relu's kink.
template <std::size_t R>
tensor<float, R> away_from_zero(const extents<R>& e, std::mt19937_64& rng) {
  tensor<float, R> t(e);
  std::uniform_real_distribution<float> d(0.1f, 1.0f);
  std::bernoulli_distribution s(0.5);
  for (float& v : t.span()) v = s(rng) ? d(rng) : -d(rng);
  return t;
}

template <std::size_t R>
double dot(const tensor<float, R>& a, const tensor<float, R>& b) {
  double s = 0.0;
  for (index_t i = 0; i < a.size(); ++i) s += static_cast<double>(a.data()[i]) * b.data()[i];
  return s;
}

void expect_grad_near(double fd, double analytic, const char* what, index_t i) {
  EXPECT_NEAR(fd, analytic, kAbsTol + kRelTol * std::abs(analytic)) << what << " index " << i;
}

/// Checks dL/dx from backward(r) against central differences, for L = Σ r ⊙ forward(x).
template <class Layer, std::size_t R>
void check_input_gradient(Layer& layer, tensor<float, R> x, std::mt19937_64& rng) {
  layer.set_mode(nn::mode::train);
  auto y = layer.forward(x);
  const auto r = random_tensor(y.extents(), rng);
  const auto dx = layer.backward(r);
  ASSERT_EQ(dx.extents(), x.extents());
  for (index_t i = 0; i < x.size(); ++i) {
    const float keep = x.data()[i];
    x.data()[i] = static_cast<float>(keep + kH);
    const double lp = dot(layer.forward(x), r);
    x.data()[i] = static_cast<float>(keep - kH);
    const double lm = dot(layer.forward(x), r);
    x.data()[i] = keep;
    const double step = static_cast<double>(static_cast<float>(keep + kH)) -
                        static_cast<double>(static_cast<float>(keep - kH));
    expect_grad_near((lp - lm) / step, dx.data()[i], "input", i);
  }
}

/// Checks every parameter gradient (for_each_parameter) against central differences.
template <class Layer, std::size_t R>
void check_parameter_gradients(Layer& layer, const tensor<float, R>& x, std::mt19937_64& rng) {
  layer.set_mode(nn::mode::train);
  layer.zero_grad();
  auto y = layer.forward(x);
  const auto r = random_tensor(y.extents(), rng);
  (void)layer.backward(r);
  std::vector<nn::parameter> params;
  layer.for_each_parameter([&](const nn::parameter& p) { params.push_back(p); });
  ASSERT_FALSE(params.empty());
  for (std::size_t k = 0; k < params.size(); ++k) {
    const std::vector<float> analytic(params[k].grad.begin(), params[k].grad.end());
    for (std::size_t i = 0; i < params[k].value.size(); ++i) {
      float& v = params[k].value[i];
      const float keep = v;
      v = static_cast<float>(keep + kH);
      const double lp = dot(layer.forward(x), r);
      v = static_cast<float>(keep - kH);
      const double lm = dot(layer.forward(x), r);
      v = keep;
      const double step = static_cast<double>(static_cast<float>(keep + kH)) -
                          static_cast<double>(static_cast<float>(keep - kH));
      expect_grad_near((lp - lm) / step, analytic[i], k == 0 ? "param 0" : "param >0",
                       static_cast<index_t>(i));
    }
  }
}

static_assert(nn::layer<nn::dense<>, tensor<float, 2>> && nn::layer<nn::conv2d<>, tensor<float, 4>>);
static_assert(nn::layer<nn::relu, tensor<float, 2>> && nn::layer<nn::relu6, tensor<float, 4>>);
static_assert(nn::layer<nn::max_pool2d, tensor<float, 4>> && nn::layer<nn::avg_pool2d, tensor<float, 4>>);
static_assert(nn::layer<nn::flatten, tensor<float, 4>> && nn::layer<nn::batch_norm, tensor<float, 4>>);
static_assert(nn::parameterised<nn::dense<>> && nn::parameterised<nn::batch_norm> &&
              !nn::parameterised<nn::relu>);
static_assert(nn::maskable<nn::conv2d<>> && !nn::maskable<nn::batch_norm>);
// prune::none stores no mask: a plain dense layer is as small as its tensors and options.
static_assert(nn::masked_weight<>::always_dense &&
              !nn::masked_weight<quant::none, prune::magnitude>::always_dense);

// ---------------------------------------------------------------------------- init

TEST(NnInit, DenseUsesPytorchDefaultBoundsAndIsReproducible) {
  nn::init_rng a(7), b(7), c(8);
  nn::dense<> d1({.in_features = 300, .out_features = 200}, a);
  nn::dense<> d2({.in_features = 300, .out_features = 200}, b);
  nn::dense<> d3({.in_features = 300, .out_features = 200}, c);
  EXPECT_EQ(d1.weight(), d2.weight());
  EXPECT_EQ(d1.bias(), d2.bias());
  EXPECT_FALSE(d1.weight() == d3.weight());
  const double bound = 1.0 / std::sqrt(300.0);
  double sum = 0.0, sq = 0.0, mx = 0.0;
  for (float v : d1.weight().span()) {
    sum += v;
    sq += static_cast<double>(v) * v;
    mx = std::max(mx, static_cast<double>(std::abs(v)));
  }
  for (float v : d1.bias().span()) EXPECT_LE(std::abs(v), bound);
  const double n = 60000.0;
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);  // U(-b, b) reaches near b in 60000 draws
  // U(-b, b): mean 0 (sd b/sqrt(3n) ≈ 0.0024 b), variance b²/3 (sd ≈ 0.4% relative).
  EXPECT_NEAR(sum / n, 0.0, 0.012 * bound);
  EXPECT_NEAR(sq / n, bound * bound / 3.0, 0.02 * bound * bound / 3.0);
}

TEST(NnInit, ConvFanInIsKernelTimesGroupChannels) {
  nn::init_rng rng(3);
  nn::conv2d<> c({.in_channels = 8, .out_channels = 4, .kernel_h = 3, .kernel_w = 3, .groups = 2},
                 rng);
  EXPECT_EQ(c.weight().extent(0), 4);
  EXPECT_EQ(c.weight().extent(1), 3 * 3 * 4);
  const double bound = 1.0 / std::sqrt(36.0);
  for (float v : c.weight().span()) EXPECT_LE(std::abs(v), bound);
  for (float v : c.bias().span()) EXPECT_LE(std::abs(v), bound);
}

// ---------------------------------------------------------------------------- dense

TEST(NnDense, ForwardIsXWtPlusB) {
  nn::init_rng rng(1);
  nn::dense<> d({.in_features = 2, .out_features = 3}, rng);
  const float w[] = {1, 2, -1, 0.5f, 3, -2};
  std::copy(std::begin(w), std::end(w), d.weight().data());
  d.bias()(0) = 0.25f;
  d.bias()(1) = -1;
  d.bias()(2) = 2;
  const tensor<float, 2> x(extents<2>(2, 2), {1, 2, -3, 4});
  const auto y = d.forward(x);
  const tensor<float, 2> expected(extents<2>(2, 3), {5.25f, -1.0f, 1.0f, 5.25f, 4.0f, -15.0f});
  EXPECT_EQ(y, expected);
}

TEST(NnDense, BackwardMatchesFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(11);
  nn::init_rng init(5);
  nn::dense<> d({.in_features = 7, .out_features = 5}, init);
  const auto x = random_tensor(extents<2>(4, 7), rng);
  check_input_gradient(d, x, rng);
  check_parameter_gradients(d, x, rng);
}

TEST(NnDense, NoBiasHasOneParameter) {
  nn::init_rng init(5);
  nn::dense<> d({.in_features = 3, .out_features = 2, .use_bias = false}, init);
  int n = 0;
  d.for_each_parameter([&](const nn::parameter& p) {
    ++n;
    EXPECT_EQ(p.value.size(), 6u);
  });
  EXPECT_EQ(n, 1);
  const tensor<float, 2> x(extents<2>(1, 3), {0, 0, 0});
  const auto y = d.forward(x);
  for (float v : y.span()) EXPECT_EQ(v, 0.0f);
}

TEST(NnDense, MaskedBackwardMatchesFiniteDifferencesAndZeroesPrunedGradients) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(12);
  nn::init_rng init(6);
  nn::dense<quant::none, prune::magnitude> d({.in_features = 6, .out_features = 4}, init,
                                             prune::magnitude(0.5f));
  EXPECT_EQ(d.mask().count_pruned(), 12);
  for (index_t o = 0; o < 4; ++o)
    for (index_t i = 0; i < 6; ++i)
      if (d.mask()(o, i) == 0) {
        EXPECT_EQ(d.weight()(o, i), 0.0f);
      }
  const auto x = random_tensor(extents<2>(3, 6), rng);
  check_input_gradient(d, x, rng);
  check_parameter_gradients(d, x, rng);  // pruned entries: FD = 0 = masked gradient
  for (index_t o = 0; o < 4; ++o)
    for (index_t i = 0; i < 6; ++i)
      if (d.mask()(o, i) == 0) {
        EXPECT_EQ(d.weight_grad()(o, i), 0.0f);
      }
}

TEST(NnDense, ForwardUsesMaskEvenIfMasterWeightsAreWritten) {
  nn::init_rng init(6);
  nn::dense<quant::none, prune::magnitude> d({.in_features = 4, .out_features = 2}, init,
                                             prune::magnitude(0.5f));
  for (float& v : d.weight().span()) v = 1.0f;  // the user overwrites pruned entries
  const tensor<float, 2> x(extents<2>(1, 4), {1, 1, 1, 1});
  const auto y = d.forward(x);
  for (index_t o = 0; o < 2; ++o) {
    index_t kept = 0;
    for (index_t i = 0; i < 4; ++i) kept += d.mask()(o, i);
    EXPECT_EQ(y(0, o), static_cast<float>(kept) + d.bias()(o));
  }
}

TEST(NnDense, RejectsBadShapesAndMissingForward) {
  nn::init_rng init(1);
  EXPECT_THROW(nn::dense<>({.in_features = 0, .out_features = 2}, init), config_error);
  nn::dense<> d({.in_features = 3, .out_features = 2}, init);
  const tensor<float, 2> bad(extents<2>(2, 4));
  EXPECT_THROW((void)d.forward(bad), shape_error);
  const tensor<float, 2> g(extents<2>(2, 2));
  EXPECT_THROW((void)d.backward(g), config_error);
  const tensor<float, 2> x(extents<2>(2, 3));
  (void)d.forward(x);
  const tensor<float, 2> g_bad(extents<2>(3, 2));
  EXPECT_THROW((void)d.backward(g_bad), shape_error);
  d.set_mode(nn::mode::eval);
  (void)d.forward(x);
  EXPECT_THROW((void)d.backward(g), config_error);
}

// ---------------------------------------------------------------------------- conv2d

struct conv_case {
  const char* name;
  nn::conv2d_options opt;
  index_t batch, h, w;
};

/// Direct convolution in double from the OHWI weights (the formula in conv2d.hpp),
/// and a bound on the float GEMM's rounding error: 4 · K · eps · Σ|x w| per output.
void direct_conv(const conv_case& c, const tensor<float, 4>& x, const tensor<float, 2>& w,
                 const tensor<float, 1>& b, const kernels::conv2d_geometry& g,
                 std::vector<double>& y, std::vector<double>& tol) {
  const index_t gic = g.group_in_c(), goc = g.group_out_c();
  y.assign(static_cast<std::size_t>(g.batch * g.out_h() * g.out_w() * g.out_c), 0.0);
  tol = y;
  std::size_t idx = 0;
  for (index_t n = 0; n < g.batch; ++n)
    for (index_t oh = 0; oh < g.out_h(); ++oh)
      for (index_t ow = 0; ow < g.out_w(); ++ow)
        for (index_t o = 0; o < g.out_c; ++o, ++idx) {
          double s = c.opt.use_bias ? b(o) : 0.0, mag = std::abs(s);
          const index_t grp = o / goc;
          for (index_t kh = 0; kh < g.kernel_h; ++kh)
            for (index_t kw = 0; kw < g.kernel_w; ++kw)
              for (index_t ci = 0; ci < gic; ++ci) {
                const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
                const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
                if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) continue;
                const double t = static_cast<double>(x(n, ih, iw, grp * gic + ci)) *
                                 w(o, (kh * g.kernel_w + kw) * gic + ci);
                s += t;
                mag += std::abs(t);
              }
          y[idx] = s;
          tol[idx] = 4.0 * static_cast<double>(g.patch() + 1) * 0x1p-24 * mag + 1e-30;
        }
}

std::vector<conv_case> conv_cases() {
  using kernels::padding_mode;
  return {
      {"3x3_pad1", {.in_channels = 3, .out_channels = 4, .kernel_h = 3, .kernel_w = 3,
                    .padding = nn::pad(1)}, 2, 5, 6},
      {"stride2_valid_dilated", {.in_channels = 2, .out_channels = 3, .kernel_h = 3, .kernel_w = 2,
                                 .stride_h = 2, .stride_w = 1, .padding = padding_mode::valid,
                                 .dilation_h = 2, .dilation_w = 1}, 2, 9, 5},
      {"same_stride2_groups2", {.in_channels = 4, .out_channels = 6, .kernel_h = 3, .kernel_w = 3,
                                .stride_h = 2, .stride_w = 2, .padding = padding_mode::same,
                                .groups = 2}, 1, 6, 7},
      {"depthwise", {.in_channels = 3, .out_channels = 3, .kernel_h = 3, .kernel_w = 3,
                     .padding = padding_mode::same, .groups = 3}, 2, 4, 5},
      {"depthwise_multiplier2_no_bias", {.in_channels = 3, .out_channels = 6, .kernel_h = 2,
                                         .kernel_w = 3, .padding = nn::pad(1), .groups = 3,
                                         .use_bias = false}, 1, 4, 4},
      {"explicit_asymmetric", {.in_channels = 2, .out_channels = 2, .kernel_h = 2, .kernel_w = 2,
                               .stride_h = 1, .stride_w = 2,
                               .padding = nn::explicit_padding{0, 2, 1, 0}, .dilation_h = 1,
                               .dilation_w = 2}, 2, 4, 5},
      {"1x1", {.in_channels = 5, .out_channels = 3}, 2, 3, 2},
      // 2 * 12 * 11 = 264 output pixels: more than one 256-pixel im2col block.
      {"multi_block_groups2", {.in_channels = 2, .out_channels = 2, .kernel_h = 3, .kernel_w = 3,
                               .padding = nn::pad(1), .groups = 2}, 2, 12, 11},
  };
}

TEST(NnConv2d, ForwardMatchesDirectConvolution) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(21);
  for (const conv_case& c : conv_cases()) {
    SCOPED_TRACE(c.name);
    nn::init_rng init(9);
    nn::conv2d<> conv(c.opt, init);
    const auto x = random_tensor(extents<4>(c.batch, c.h, c.w, c.opt.in_channels), rng);
    const auto y = conv.forward(x);
    const auto g = conv.geometry(x.extents());
    ASSERT_EQ(y.extents(), extents<4>(c.batch, g.out_h(), g.out_w(), c.opt.out_channels));
    std::vector<double> ref, tol;
    direct_conv(c, x, conv.weight(), conv.bias(), g, ref, tol);
    for (index_t i = 0; i < y.size(); ++i) {
      EXPECT_NEAR(y.data()[i], ref[static_cast<std::size_t>(i)], tol[static_cast<std::size_t>(i)])
          << "output " << i;
    }
  }
}

TEST(NnConv2d, OutputSizesFollowPytorchAndTensorflow) {
  nn::init_rng init(1);
  // PyTorch: floor((in + 2p - d(k-1) - 1)/s) + 1; 'same': ceil(in / s).
  nn::conv2d<> a({.in_channels = 1, .out_channels = 1, .kernel_h = 3, .kernel_w = 3,
                  .stride_h = 2, .stride_w = 2, .padding = nn::pad(1)}, init);
  EXPECT_EQ(a.forward(tensor<float, 4>(1, 28, 28, 1)).extents(), extents<4>(1, 14, 14, 1));
  nn::conv2d<> b({.in_channels = 1, .out_channels = 2, .kernel_h = 3, .kernel_w = 3,
                  .stride_h = 2, .stride_w = 2, .padding = kernels::padding_mode::same}, init);
  EXPECT_EQ(b.forward(tensor<float, 4>(1, 7, 8, 1)).extents(), extents<4>(1, 4, 4, 2));
  const auto g = b.geometry(extents<4>(1, 7, 8, 1));
  EXPECT_EQ(g.pad_top, 1);  // total 2 rows: 1 + 1
  EXPECT_EQ(g.pad_left, 0);  // total 1 column: the extra one at the right
  EXPECT_EQ(g.pad_right, 1);
}

TEST(NnConv2d, BackwardMatchesFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(22);
  for (const conv_case& c : conv_cases()) {
    SCOPED_TRACE(c.name);
    nn::init_rng init(10);
    nn::conv2d<> conv(c.opt, init);
    const auto x = random_tensor(extents<4>(c.batch, c.h, c.w, c.opt.in_channels), rng);
    check_input_gradient(conv, x, rng);
    check_parameter_gradients(conv, x, rng);
  }
}

TEST(NnConv2d, MaskedFiltersStayZeroAndGetZeroGradient) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(23);
  nn::init_rng init(11);
  nn::conv2d<quant::none, prune::magnitude> conv(
      {.in_channels = 2, .out_channels = 3, .kernel_h = 3, .kernel_w = 3, .padding = nn::pad(1)},
      init, prune::magnitude(0.75f));
  EXPECT_EQ(conv.mask().rows(), 3);
  EXPECT_EQ(conv.mask().cols(), 18);
  EXPECT_EQ(conv.mask().count_pruned(), 40);  // exact-k: round(0.75 * 54) = 40.5 -> 40 (even)
  const auto x = random_tensor(extents<4>(1, 4, 4, 2), rng);
  check_parameter_gradients(conv, x, rng);
  for (index_t i = 0; i < conv.weight().size(); ++i) {
    if (conv.mask().data()[i] == 0) {
      EXPECT_EQ(conv.weight().data()[i], 0.0f);
      EXPECT_EQ(conv.weight_grad().data()[i], 0.0f);
    }
  }
}

TEST(NnConv2d, RejectsBadConfigurations) {
  nn::init_rng init(1);
  EXPECT_THROW(nn::conv2d<>({.in_channels = 3, .out_channels = 4, .groups = 2}, init),
               config_error);
  EXPECT_THROW(nn::conv2d<>({.in_channels = 2, .out_channels = 2, .stride_h = 0}, init),
               config_error);
  EXPECT_THROW(nn::conv2d<>({.in_channels = 2, .out_channels = 2,
                             .padding = nn::explicit_padding{-1, 0, 0, 0}}, init),
               config_error);
  nn::conv2d<> c({.in_channels = 2, .out_channels = 2, .kernel_h = 5, .kernel_w = 5}, init);
  EXPECT_THROW((void)c.forward(tensor<float, 4>(1, 4, 4, 2)), shape_error);  // kernel > input
  EXPECT_THROW((void)c.forward(tensor<float, 4>(1, 8, 8, 3)), shape_error);  // channels
}

// ---------------------------------------------------------------------------- activations

TEST(NnActivations, ReluAndRelu6ForwardAndKinkConventions) {
  const tensor<float, 2> x(extents<2>(1, 7), {-1.0f, 0.0f, 0.5f, 6.0f, 7.0f, -0.0f, 3.0f});
  nn::relu r;
  const auto y = r.forward(x);
  const tensor<float, 2> ey(extents<2>(1, 7), {0.0f, 0.0f, 0.5f, 6.0f, 7.0f, 0.0f, 3.0f});
  EXPECT_EQ(y, ey);
  const tensor<float, 2> ones(extents<2>(1, 7), 1.0f);
  const tensor<float, 2> edx(extents<2>(1, 7), {0, 0, 1, 1, 1, 0, 1});  // 0 at x = 0 (PyTorch)
  EXPECT_EQ(r.backward(ones), edx);

  nn::relu6 r6;
  const tensor<float, 2> ey6(extents<2>(1, 7), {0.0f, 0.0f, 0.5f, 6.0f, 6.0f, 0.0f, 3.0f});
  EXPECT_EQ(r6.forward(x), ey6);
  const tensor<float, 2> edx6(extents<2>(1, 7), {0, 0, 1, 0, 0, 0, 1});  // 0 at x = 0 and 6
  EXPECT_EQ(r6.backward(ones), edx6);

  const tensor<float, 2> nan(extents<2>(1, 1), {std::nanf("")});
  EXPECT_TRUE(std::isnan(r.forward(nan)(0, 0)));
  EXPECT_TRUE(std::isnan(r6.forward(nan)(0, 0)));
}

TEST(NnActivations, BackwardMatchesFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(31);
  nn::relu r;
  check_input_gradient(r, away_from_zero(extents<4>(2, 3, 3, 2), rng), rng);
  nn::relu6 r6;
  auto x = away_from_zero(extents<2>(3, 8), rng);
  for (index_t i = 0; i < x.size(); i += 3) x.data()[i] = x.data()[i] > 0 ? 6.5f : 5.5f;
  check_input_gradient(r6, x, rng);
}

TEST(NnActivations, FlattenIsNhwcRowMajorAndRoundTrips) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(32);
  nn::flatten f;
  const auto x = random_tensor(extents<4>(2, 3, 4, 5), rng);
  const auto y = f.forward(x);
  EXPECT_EQ(y.extents(), extents<2>(2, 60));
  EXPECT_EQ(y(1, (2 * 4 + 3) * 5 + 4), x(1, 2, 3, 4));
  EXPECT_EQ(f.backward(y), x);
  EXPECT_THROW((void)f.backward(tensor<float, 2>(2, 59)), shape_error);
}

// ---------------------------------------------------------------------------- pooling

TEST(NnPooling, MaxPoolPicksWindowMaximaAndRoutesGradients) {
  // One image 4x4, 1 channel, 2x2 windows.
  const tensor<float, 4> x(extents<4>(1, 4, 4, 1),
                           {1, 5, 2, 2,  //
                            3, 4, 2, 0,  //
                            -1, -2, 7, 8,  //
                            -3, -4, 8, 6});
  nn::max_pool2d p;
  const auto y = p.forward(x);
  const tensor<float, 4> ey(extents<4>(1, 2, 2, 1), {5, 2, -1, 8});
  EXPECT_EQ(y, ey);
  const tensor<float, 4> g(extents<4>(1, 2, 2, 1), {10, 20, 30, 40});
  // Ties go to the first maximum in row-major window order (2 at (0,2); 8 at (2,3)).
  const tensor<float, 4> edx(extents<4>(1, 4, 4, 1), {0, 10, 20, 0,  //
                                                      0, 0, 0, 0,   //
                                                      30, 0, 0, 40,  //
                                                      0, 0, 0, 0});
  EXPECT_EQ(p.backward(g), edx);
}

TEST(NnPooling, MaxPoolNanWinsAndPaddingNeverWins) {
  const float nan = std::nanf("");
  const tensor<float, 4> x(extents<4>(1, 2, 2, 1), {-5, nan, -7, -6});
  nn::max_pool2d p;
  EXPECT_TRUE(std::isnan(p.forward(x)(0, 0, 0, 0)));
  nn::max_pool2d padded({.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1,
                         .pad_w = 1});
  const tensor<float, 4> neg(extents<4>(1, 2, 2, 1), {-5, -9, -7, -6});
  const auto y = padded.forward(neg);
  for (float v : y.span()) EXPECT_EQ(v, -5.0f);
}

TEST(NnPooling, AvgPoolDivisorsFollowPytorch) {
  const tensor<float, 4> x(extents<4>(1, 3, 3, 1), {1, 2, 3, 4, 5, 6, 7, 8, 9});
  // kernel 2, stride 2, pad 1 -> out 2x2; windows clipped to the input.
  nn::avg_pool2d inc({.kernel_h = 2, .kernel_w = 2, .pad_h = 1, .pad_w = 1});
  const tensor<float, 4> e_inc(extents<4>(1, 2, 2, 1), {1.0f / 4, 5.0f / 4, 11.0f / 4, 28.0f / 4});
  EXPECT_EQ(inc.forward(x), e_inc);
  nn::avg_pool2d exc({.kernel_h = 2, .kernel_w = 2, .pad_h = 1, .pad_w = 1}, false);
  const tensor<float, 4> e_exc(extents<4>(1, 2, 2, 1), {1.0f, 5.0f / 2, 11.0f / 2, 28.0f / 4});
  EXPECT_EQ(exc.forward(x), e_exc);
}

TEST(NnPooling, BackwardMatchesFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(41);
  // Distinct values 0.05 apart (> 2h) so no window maximum changes under ±h.
  tensor<float, 4> x(extents<4>(2, 5, 6, 3));
  std::vector<int> perm(static_cast<std::size_t>(x.size()));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = -4.5f + 0.05f * static_cast<float>(perm[static_cast<std::size_t>(i)]);
  nn::max_pool2d mp;
  check_input_gradient(mp, x, rng);
  nn::max_pool2d overlap({.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 1, .pad_h = 1,
                          .pad_w = 1});
  check_input_gradient(overlap, x, rng);
  nn::avg_pool2d ap({.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 2, .pad_h = 1});
  check_input_gradient(ap, x, rng);
  nn::avg_pool2d ap_exc({.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1,
                         .pad_w = 1}, false);
  check_input_gradient(ap_exc, x, rng);
}

TEST(NnPooling, RejectsBadOptions) {
  EXPECT_THROW(nn::max_pool2d({.kernel_h = 2, .kernel_w = 2, .pad_h = 2}), config_error);
  EXPECT_THROW(nn::avg_pool2d({.kernel_h = 0}), config_error);
  nn::max_pool2d p({.kernel_h = 3, .kernel_w = 3});
  EXPECT_THROW((void)p.forward(tensor<float, 4>(1, 2, 2, 1)), shape_error);
}

// ---------------------------------------------------------------------------- batch norm

TEST(NnBatchNorm, TrainingNormalisesAndUpdatesRunningStatsLikePytorch) {
  nn::batch_norm bn({.num_features = 2});
  // Channel 0: 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3); channel 1 constant 5.
  const tensor<float, 2> x(extents<2>(4, 2), {1, 5, 2, 5, 3, 5, 6, 5});
  const auto y = bn.forward(x);
  const double is = 1.0 / std::sqrt(3.5 + 1e-5);
  EXPECT_FLOAT_EQ(y(0, 0), static_cast<float>(-2.0 * is));
  EXPECT_FLOAT_EQ(y(3, 0), static_cast<float>(3.0 * is));
  EXPECT_EQ(y(1, 1), 0.0f);
  EXPECT_FLOAT_EQ(bn.running_mean()(0), 0.3f);
  EXPECT_FLOAT_EQ(bn.running_mean()(1), 0.5f);
  EXPECT_FLOAT_EQ(bn.running_var()(0), static_cast<float>(0.9 + 0.1 * 14.0 / 3.0));
  EXPECT_FLOAT_EQ(bn.running_var()(1), 0.9f);
  bn.set_mode(nn::mode::eval);
  const auto ye = bn.forward(x);
  EXPECT_FLOAT_EQ(ye(0, 1), static_cast<float>((5.0 - 0.5) / std::sqrt(0.9 + 1e-5)));
  EXPECT_THROW((void)nn::batch_norm({.num_features = 2}).forward(tensor<float, 2>(1, 2)),
               shape_error);
}

TEST(NnBatchNorm, BackwardMatchesFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(51);
  nn::batch_norm bn({.num_features = 3});
  std::uniform_real_distribution<float> d(0.5f, 1.5f);
  for (float& v : bn.gamma().span()) v = d(rng);
  for (float& v : bn.beta().span()) v = d(rng) - 1.0f;
  const auto x4 = random_tensor(extents<4>(2, 3, 2, 3), rng, -2.0f, 2.0f);
  check_input_gradient(bn, x4, rng);
  check_parameter_gradients(bn, x4, rng);
  const auto x2 = random_tensor(extents<2>(5, 3), rng, -2.0f, 2.0f);
  check_input_gradient(bn, x2, rng);
  check_parameter_gradients(bn, x2, rng);
}

// ---------------------------------------------------------------------------- loss

TEST(NnLoss, CrossEntropyMatchesHandComputedValues) {
  nn::softmax_cross_entropy ce;
  const tensor<float, 2> z(extents<2>(2, 3), {1, 2, 3, 0, 0, 0});
  const std::vector<int> labels{2, 0};
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  const double l1 = std::log(3.0);
  EXPECT_NEAR(ce.forward(z.cview(), std::span<const int>(labels)), (l0 + l1) / 2, 1e-6);
  const auto g = ce.backward();
  const double s = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(g(0, 0), std::exp(1.0) / s / 2, 1e-7);
  EXPECT_NEAR(g(0, 2), (std::exp(3.0) / s - 1) / 2, 1e-7);
  EXPECT_NEAR(g(1, 0), (1.0 / 3 - 1) / 2, 1e-7);
  EXPECT_NEAR(g(1, 1), 1.0 / 6, 1e-7);
}

TEST(NnLoss, CrossEntropyIsStableForHugeLogits) {
  nn::softmax_cross_entropy ce;
  const tensor<float, 2> z(extents<2>(1, 2), {1000.0f, -1000.0f});
  const std::vector<std::uint8_t> wrong{1}, right{0};
  EXPECT_FLOAT_EQ(ce.forward(z.cview(), std::span<const std::uint8_t>(wrong)), 2000.0f);
  EXPECT_EQ(ce.forward(z.cview(), std::span<const std::uint8_t>(right)), 0.0f);
  const auto g = ce.backward();
  EXPECT_EQ(g(0, 0), 0.0f);
  EXPECT_EQ(g(0, 1), 0.0f);
}

TEST(NnLoss, CrossEntropyGradientMatchesFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(61);
  auto z = random_tensor(extents<2>(4, 5), rng, -3.0f, 3.0f);
  const std::vector<int> labels{0, 4, 2, 2};
  const std::span<const int> ls(labels);
  nn::softmax_cross_entropy ce;
  (void)ce.forward(z.cview(), ls);
  const auto g = ce.backward();
  for (index_t i = 0; i < z.size(); ++i) {
    const float keep = z.data()[i];
    z.data()[i] = static_cast<float>(keep + kH);
    const double lp = ce.forward(z.cview(), ls);
    z.data()[i] = static_cast<float>(keep - kH);
    const double lm = ce.forward(z.cview(), ls);
    z.data()[i] = keep;
    // The loss is one float (mean of 4 rows): its rounding (≤ 1 ulp of ~2) over 2h gives 1e-5.
    expect_grad_near((lp - lm) / (2 * kH), g.data()[i], "logit", i);
  }
}

TEST(NnLoss, RejectsBadLabels) {
  nn::softmax_cross_entropy ce;
  const tensor<float, 2> z(extents<2>(2, 3));
  const std::vector<int> short_labels{1}, bad{1, 3}, neg{-1, 0};
  EXPECT_THROW((void)ce.forward(z.cview(), std::span<const int>(short_labels)), shape_error);
  EXPECT_THROW((void)ce.forward(z.cview(), std::span<const int>(bad)), config_error);
  EXPECT_THROW((void)ce.forward(z.cview(), std::span<const int>(neg)), config_error);
  EXPECT_THROW((void)nn::softmax_cross_entropy().backward(), config_error);
  const std::vector<int> l{2, 0};
  const tensor<float, 2> zz(extents<2>(2, 3), {0, 1, 2, 5, 5, 1});  // tie -> first (0)
  EXPECT_EQ(nn::count_correct(zz.cview(), std::span<const int>(l)), 2);
}

// ---------------------------------------------------------------------------- sequential

TEST(NnSequential, SmallCnnEndToEndGradientsMatchFiniteDifferences) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(71);
  nn::init_rng init(12);
  nn::sequential net(
      nn::conv2d<>({.in_channels = 2, .out_channels = 3, .kernel_h = 3, .kernel_w = 3,
                    .padding = nn::pad(1)}, init),
      nn::batch_norm({.num_features = 3}), nn::relu(), nn::max_pool2d(), nn::flatten(),
      nn::dense<>({.in_features = 12, .out_features = 4}, init));
  const auto x = random_tensor(extents<4>(2, 4, 4, 2), rng);
  const std::vector<int> labels{1, 3};
  nn::softmax_cross_entropy ce;
  const auto loss = [&] {
    return static_cast<double>(ce.forward(net.forward(x).cview(), std::span<const int>(labels)));
  };
  net.zero_grad();
  (void)loss();
  const auto dx = net.backward(ce.backward());
  EXPECT_EQ(dx.extents(), x.extents());
  std::vector<nn::parameter> params;
  net.for_each_parameter([&](const nn::parameter& p) { params.push_back(p); });
  ASSERT_EQ(params.size(), 6u);  // conv w, b; bn gamma, beta; dense w, b
  // The loss is a single float of size ~1.5: its rounding (1 ulp = 1.2e-7) over 2h
  // is 6e-6; relu/max-pool kinks could be crossed by ±h, so count disagreements
  // instead of failing on each: with random inputs almost none are near a kink.
  int checked = 0, off = 0;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const std::vector<float> analytic(params[k].grad.begin(), params[k].grad.end());
    for (std::size_t i = 0; i < params[k].value.size(); ++i) {
      float& v = params[k].value[i];
      const float keep = v;
      v = static_cast<float>(keep + 1e-3);
      const double lp = loss();
      v = static_cast<float>(keep - 1e-3);
      const double lm = loss();
      v = keep;
      const double fd = (lp - lm) / 2e-3;
      ++checked;
      if (std::abs(fd - analytic[i]) > 2e-3 + 2e-2 * std::abs(analytic[i])) ++off;
    }
  }
  EXPECT_LE(off, checked / 50) << off << " of " << checked << " gradients disagree";
}

}  // namespace

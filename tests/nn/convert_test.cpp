// nn/convert.hpp and nn/deployed.hpp: every weight format on an MLP and a CNN,
// each checked against an independent float computation of what that format
// means (the float model itself, the model with rounded or dequantized weights,
// the dynamic layer reference), plus batch-norm folding, ReLU fusion, sparse
// storage of pruned layers, the int8 chain's uint8 hand-off and the errors.
#include "qprune/nn/convert.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "qprune/nn/init.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/n_m.hpp"
#include "support/random.hpp"

namespace {

using namespace qprune;
using nn::weight_format;

tensor<float, 2> samples(index_t n, index_t features, std::uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  tensor<float, 2> x(n, features);
  for (auto& v : x.span()) v = nd(rng);
  return x;
}

using mlp_t = nn::sequential<nn::dense<>, nn::relu, nn::dense<>, nn::relu, nn::dense<>>;
mlp_t make_mlp(std::uint32_t seed) {
  nn::init_rng rng(seed);
  return mlp_t(nn::dense<>({24, 16}, rng), nn::relu{}, nn::dense<>({16, 12}, rng), nn::relu{},
               nn::dense<>({12, 5}, rng));
}

using cnn_t = nn::sequential<nn::conv2d<>, nn::relu, nn::max_pool2d, nn::conv2d<>, nn::relu, nn::max_pool2d,
                             nn::flatten, nn::dense<>>;
cnn_t make_cnn(std::uint32_t seed) {
  nn::init_rng rng(seed);
  return cnn_t(nn::conv2d<>({1, 6, 3, 3, 1, 1, nn::pad(1)}, rng), nn::relu{}, nn::max_pool2d{},
               nn::conv2d<>({6, 8, 3, 3, 1, 1, nn::pad(1)}, rng), nn::relu{}, nn::max_pool2d{}, nn::flatten{},
               nn::dense<>({3 * 3 * 8, 4}, rng));
}

nn::convert_options mlp_options(weight_format f) {
  nn::convert_options o;
  o.format = f;
  o.input_channels = 24;
  o.int4_group_size = 16;
  return o;
}
nn::convert_options cnn_options(weight_format f) {
  nn::convert_options o;
  o.format = f;
  o.input_height = 12;
  o.input_width = 12;
  o.input_channels = 1;
  o.int4_group_size = 16;
  return o;
}

tensor<float, 2> run_cnn(cnn_t& m, const tensor<float, 2>& x) {
  tensor<float, 4> x4(extents<4>(x.extent(0), 12, 12, 1), std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
  return m.forward(x4);
}

double max_abs(const tensor<float, 2>& y) {
  double m = 0.0;
  for (float v : std::span<const float>(y.data(), static_cast<std::size_t>(y.size()))) m = std::max(m, double(std::fabs(v)));
  return m;
}

void expect_close(const tensor<float, 2>& got, const tensor<float, 2>& want, double tol) {
  ASSERT_EQ(got.extent(0), want.extent(0));
  ASSERT_EQ(got.extent(1), want.extent(1));
  for (index_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got.data()[i], want.data()[i], tol) << "element " << i;
  }
}

/// Every Dense/Conv weight of `m` replaced by f(weight) in place.
template <class Model, class F>
void map_weights(Model& m, F&& f) {
  m.for_each_layer([&](auto& l) {
    if constexpr (requires { l.weights(); }) {
      for (auto& v : l.weight().span()) v = f(v);
    }
  });
}

TEST(ConvertFp32, MlpIsTheFloatModelBitForBit) {
  SCOPED_TRACE(test::seed_trace());
  auto m = make_mlp(1);
  const auto x = samples(7, 24, 1);
  auto d = nn::convert(m, mlp_options(weight_format::fp32));
  const auto got = d.forward(x.cview());
  const auto want = m.forward(x.cview());
  for (index_t i = 0; i < got.size(); ++i) EXPECT_EQ(got.data()[i], want.data()[i]) << i;
  EXPECT_EQ(d.ops().size(), 3u);  // both ReLUs fused
  EXPECT_EQ(d.weight_bytes(), 4 * (24 * 16 + 16 + 16 * 12 + 12 + 12 * 5 + 5));
}

TEST(ConvertFp32, CnnMatchesTheFloatModel) {
  SCOPED_TRACE(test::seed_trace());
  auto m = make_cnn(2);
  const auto x = samples(3, 144, 2);
  auto d = nn::convert(m, cnn_options(weight_format::fp32));
  // Same GEMMs over differently blocked rows: float rounding may differ slightly.
  expect_close(d.forward(x.cview()), run_cnn(m, x), 1e-5 * (1.0 + max_abs(run_cnn(m, x))));
  EXPECT_EQ(d.ops().size(), 6u);  // conv, pool, conv, pool, flatten, dense
}

TEST(ConvertHalf, EqualsTheModelWithRoundedWeights) {
  SCOPED_TRACE(test::seed_trace());
  for (auto f : {weight_format::fp16, weight_format::bf16}) {
    auto m = make_mlp(3);
    auto c = make_cnn(4);
    const auto x = samples(5, 24, 3);
    const auto xi = samples(5, 144, 4);
    auto dm = nn::convert(m, mlp_options(f));
    auto dc = nn::convert(c, cnn_options(f));
    auto round = [f](float v) {
      return f == weight_format::fp16 ? static_cast<float>(half(v)) : static_cast<float>(bfloat16(v));
    };
    map_weights(m, round);
    map_weights(c, round);
    const auto ym = m.forward(x.cview());
    const auto yc = run_cnn(c, xi);
    expect_close(dm.forward(x.cview()), ym, 1e-5 * (1.0 + max_abs(ym)));
    expect_close(dc.forward(xi.cview()), yc, 1e-5 * (1.0 + max_abs(yc)));
    EXPECT_EQ(dm.weight_bytes(), 2 * (24 * 16 + 16 * 12 + 12 * 5) + 4 * (16 + 12 + 5));
  }
}

TEST(ConvertDynamic, DenseLayersAreTheDynamicLinearReference) {
  SCOPED_TRACE(test::seed_trace());
  auto m = make_mlp(5);
  const auto x = samples(6, 24, 5);
  auto d = nn::convert(m, mlp_options(weight_format::int8_dynamic));
  // The same chain by hand: dynamic_linear (scalar reference path) then ReLU.
  tensor<float, 2> a = x;
  int layer = 0;
  m.for_each_layer([&](auto& l) {
    if constexpr (requires { l.weights(); }) {
      std::vector<float> b(l.bias().span().begin(), l.bias().span().end());
      quant::dynamic_linear lin(l.weight().cview(), b, quant::weight_granularity::per_channel,
                                quant::dynamic_scheme::for_qprune(quant::dtype::uint8), kernels::isa::scalar);
      tensor<float, 2> y(a.extent(0), l.out_features());
      lin.forward(a.cview(), y.view());
      if (layer++ < 2) {
        for (auto& v : y.span()) v = v < 0.0f ? 0.0f : v;
      }
      a = std::move(y);
    }
  });
  const auto got = d.forward(x.cview());
  for (index_t i = 0; i < got.size(); ++i) EXPECT_EQ(got.data()[i], a.data()[i]) << i;
}

TEST(ConvertInt4, IsTheModelWithDequantizedWeightsUpToActivationRounding) {
  SCOPED_TRACE(test::seed_trace());
  auto m = make_mlp(6);
  const auto x = samples(4, 24, 6);
  auto d = nn::convert(m, mlp_options(weight_format::int4));
  map_weights(m, [](float v) { return v; });
  m.for_each_layer([&](auto& l) {
    if constexpr (requires { l.weights(); }) {
      const auto q = quant::quantize_int4(l.weight().cview(), 16, quant::int4_scheme::symmetric);
      quant::dequantize(q, l.weight().view());
    }
  });
  const auto want = m.forward(x.cview());
  // The int4 kernel quantizes activations per row and group to int8 (d = max|x| / 127):
  // each layer's error is at most 1/254 of the row's range per term; three layers
  // stay well inside 3% of the output scale.
  expect_close(d.forward(x.cview()), want, 0.03 * max_abs(want));
  // Codes (half a byte each), a float scale per row and group of 16, float bias.
  EXPECT_EQ(d.weight_bytes(), (16 * 12 + 16 * 2 * 4 + 16 * 4) + (12 * 8 + 12 * 4 + 12 * 4) + (5 * 6 + 5 * 4 + 5 * 4));
}

TEST(ConvertInt8Static, CalibratedChainPassesCodesAndStaysCloseToFloat) {
  SCOPED_TRACE(test::seed_trace());
  auto m = make_mlp(7);
  auto c = make_cnn(8);
  const auto calib = samples(64, 24, 7), x = samples(16, 24, 8);
  const auto calib_i = samples(64, 144, 9), xi = samples(16, 144, 10);
  for (auto method : {nn::calibration_method::minmax, nn::calibration_method::histogram,
                      nn::calibration_method::entropy, nn::calibration_method::percentile}) {
    auto o = mlp_options(weight_format::int8_static);
    o.calibration = method;
    auto d = nn::convert(m, o, calib.cview());
    ASSERT_EQ(d.ops().size(), 3u);
    const auto y = d.forward(x.cview());
    const auto want = m.forward(x.cview());
    // 8-bit weights and activations through three layers: a few percent of the output scale.
    expect_close(y, want, 0.08 * max_abs(want));
    EXPECT_EQ(d.weight_bytes(), (24 * 16 + 16 * 12 + 12 * 5) + 8 * (16 + 12 + 5) + 3 * 8);
  }
  auto dc = nn::convert(c, cnn_options(weight_format::int8_static), calib_i.cview());
  const auto want = run_cnn(c, xi);
  expect_close(dc.forward(xi.cview()), want, 0.08 * max_abs(want));
}

TEST(ConvertSparse, PrunedDenseLayersInCsrAndNm) {
  SCOPED_TRACE(test::seed_trace());
  nn::init_rng rng(9);
  using pruned = nn::dense<quant::none, prune::magnitude>;
  nn::sequential<pruned, nn::relu, pruned> m(pruned({24, 16}, rng, prune::magnitude(0.75f)), nn::relu{},
                                             pruned({16, 6}, rng, prune::magnitude(0.75f)));
  const auto x = samples(5, 24, 11);
  auto o = mlp_options(weight_format::fp32);
  o.sparse = nn::sparse_layout::csr;
  auto d = nn::convert(m, o);
  const auto want = m.forward(x.cview());
  expect_close(d.forward(x.cview()), want, 1e-5 * (1.0 + max_abs(want)));
  EXPECT_NEAR(d.ops()[0]->sparsity(), 0.75, 1e-9);
  EXPECT_LT(d.weight_bytes(), 4 * (24 * 16 + 16 * 6));
  // 2:4 along the inputs, stored packed.
  using nm = nn::dense<quant::none, prune::n_m>;
  nn::sequential<nm> m2(nm({24, 8}, rng, prune::n_m(2, 4)));
  auto o2 = mlp_options(weight_format::fp16);
  o2.sparse = nn::sparse_layout::nm;
  auto d2 = nn::convert(m2, o2);
  map_weights(m2, [](float v) { return static_cast<float>(half(v)); });
  const auto want2 = m2.forward(x.cview());
  expect_close(d2.forward(x.cview()), want2, 1e-5 * (1.0 + max_abs(want2)));
  EXPECT_EQ(d2.ops()[0]->kind(), "dense.nm.fp16");
}

TEST(ConvertBatchNorm, FoldsIntoThePrecedingLayer) {
  SCOPED_TRACE(test::seed_trace());
  nn::init_rng rng(10);
  nn::sequential<nn::dense<>, nn::batch_norm, nn::relu, nn::dense<>> m(
      nn::dense<>({24, 10}, rng), nn::batch_norm({10}), nn::relu{}, nn::dense<>({10, 3}, rng));
  // Train-mode passes give the batch norm running statistics.
  for (int i = 0; i < 5; ++i) (void)m.forward(samples(32, 24, 20 + static_cast<std::uint64_t>(i)).cview());
  auto& bn = m.get<1>();
  for (index_t c = 0; c < 10; ++c) {
    bn.gamma()(c) = 0.5f + 0.1f * static_cast<float>(c);
    bn.beta()(c) = -0.2f + 0.05f * static_cast<float>(c);
  }
  const auto x = samples(6, 24, 12);
  auto d = nn::convert(m, mlp_options(weight_format::fp32));
  EXPECT_EQ(d.ops().size(), 2u);  // dense(+bn+relu), dense
  const auto want = m.forward(x.cview());  // convert left the model in eval mode
  expect_close(d.forward(x.cview()), want, 1e-5 * (1.0 + max_abs(want)));
}

TEST(ConvertErrors, SayWhatIsMissing) {
  auto m = make_mlp(11);
  nn::convert_options none;
  EXPECT_THROW((void)nn::convert(m, none), config_error);
  EXPECT_THROW((void)nn::convert(m, mlp_options(weight_format::int8_static)), config_error);
  auto wrong = mlp_options(weight_format::fp32);
  wrong.input_channels = 23;
  EXPECT_THROW((void)nn::convert(m, wrong), shape_error);
  const auto bad = samples(4, 23, 1);
  EXPECT_THROW((void)nn::convert(m, mlp_options(weight_format::int8_static), bad.cview()), shape_error);
  auto d = nn::convert(m, mlp_options(weight_format::fp32));
  EXPECT_THROW((void)d.forward(bad.cview()), shape_error);
  auto bf = mlp_options(weight_format::bf16);
  bf.sparse = nn::sparse_layout::csr;
  EXPECT_THROW((void)nn::convert(m, bf), config_error);
}

}  // namespace

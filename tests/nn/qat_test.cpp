// Quantization-aware training end to end: layers with int8 fake-quant weights
// (quant::int8) and observed activations (quant::static_int8) train, then
// convert() turns them into the integer model, whose outputs must match the
// fake-quant model's within one quantization step on >= 99.9% of outputs. Also
// a user-written weight quantizer (satisfying quant::fake_quant_weight_quantizer)
// trained in dense<> and conv2d<>.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "qprune/nn/batch_norm.hpp"
#include "qprune/nn/convert.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/loss.hpp"
#include "qprune/nn/optim.hpp"
#include "support/random.hpp"

namespace {

using namespace qprune;

tensor<float, 2> samples(index_t n, index_t f, std::uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  tensor<float, 2> x(n, f);
  for (auto& v : x.span()) v = nd(rng);
  return x;
}

/// Labels of a fixed random linear rule, so training has something to learn.
std::vector<std::uint8_t> labels_for(const tensor<float, 2>& x, index_t classes) {
  std::vector<std::uint8_t> y(static_cast<std::size_t>(x.extent(0)));
  for (index_t i = 0; i < x.extent(0); ++i) {
    float best = -1e30f;
    for (index_t c = 0; c < classes; ++c) {
      float s = 0.0f;
      for (index_t j = 0; j < x.extent(1); ++j) s += x(i, j) * std::sin(static_cast<float>(c * 7 + j));
      if (s > best) {
        best = s;
        y[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(c);
      }
    }
  }
  return y;
}

/// Fraction of outputs within one step (the fake-quant outputs' range / 255).
double within_one_step(const tensor<float, 2>& got, const tensor<float, 2>& want) {
  const auto [lo, hi] = std::minmax_element(want.data(), want.data() + want.size());
  const double step = (static_cast<double>(*hi) - static_cast<double>(*lo)) / 255.0;
  index_t ok = 0;
  for (index_t i = 0; i < got.size(); ++i) {
    ok += std::fabs(static_cast<double>(got.data()[i]) - static_cast<double>(want.data()[i])) <= step ? 1 : 0;
  }
  return static_cast<double>(ok) / static_cast<double>(got.size());
}

using qdense = nn::dense<quant::int8, prune::none, quant::static_int8>;
using qconv = nn::conv2d<quant::int8, prune::none, quant::static_int8>;

template <class Net, class X>
void train(Net& net, const X& x, const std::vector<std::uint8_t>& y, int steps) {
  nn::adam opt({.lr = 3e-3});
  nn::softmax_cross_entropy ce;
  net.set_mode(nn::mode::train);
  for (int s = 0; s < steps; ++s) {
    net.zero_grad();
    const auto logits = net.forward(x);
    (void)ce.forward(logits.cview(), std::span<const std::uint8_t>(y));
    net.backward_params(ce.backward());
    opt.step(net);
  }
}

TEST(Qat, MlpIntegerModelMatchesFakeQuantModel) {
  SCOPED_TRACE(test::seed_trace());
  nn::init_rng rng(3);
  nn::sequential<qdense, nn::relu, qdense, nn::relu, qdense> net(qdense({32, 48}, rng), nn::relu{},
                                                                  qdense({48, 24}, rng), nn::relu{},
                                                                  qdense({24, 10}, rng));
  const auto x = samples(256, 32, 1);
  const auto y = labels_for(x, 10);
  nn::softmax_cross_entropy ce;
  const double before = ce.forward(net.forward(x.cview()).cview(), std::span<const std::uint8_t>(y));
  train(net, x, y, 60);
  net.set_mode(nn::mode::eval);
  const auto test_x = samples(512, 32, 2);
  const auto fq = net.forward(test_x.cview());
  const double after = ce.forward(net.forward(x.cview()).cview(), std::span<const std::uint8_t>(y));
  EXPECT_LT(after, 0.7 * before);  // QAT trains through the fake-quant
  nn::convert_options o;
  o.format = nn::weight_format::int8_static;
  o.input_channels = 32;
  auto d = nn::convert(net, o);  // activation parameters from the QAT observers
  ASSERT_EQ(d.ops().size(), 3u);
  const auto got = d.forward(test_x.cview());
  EXPECT_GE(within_one_step(got, fq), 0.999);
}

/// Trains a QAT CNN on 12x12 grey images (30 steps on 96 samples from `salt`),
/// converts it to static int8 with the observers' parameters and expects the
/// integer model within one step of the fake-quant model on >= 99.9% of the
/// outputs for 128 other samples. Returns the deployed model.
template <class Net>
nn::deployed_model expect_int8_cnn_matches_fake_quant(Net& net, std::uint64_t salt) {
  const auto x2 = samples(96, 144, salt);
  const auto y = labels_for(x2, 5);
  const tensor<float, 4> x(extents<4>(96, 12, 12, 1), std::span<const float>(x2.data(), static_cast<std::size_t>(x2.size())));
  train(net, x, y, 30);
  net.set_mode(nn::mode::eval);
  const auto t2 = samples(128, 144, salt + 1);
  const tensor<float, 4> t(extents<4>(128, 12, 12, 1), std::span<const float>(t2.data(), static_cast<std::size_t>(t2.size())));
  const auto fq = net.forward(t);
  nn::convert_options o;
  o.format = nn::weight_format::int8_static;
  o.input_height = 12;
  o.input_width = 12;
  o.input_channels = 1;
  auto d = nn::convert(net, o);
  EXPECT_GE(within_one_step(d.forward(t2.cview()), fq), 0.999);
  return d;
}

TEST(Qat, CnnIntegerModelMatchesFakeQuantModel) {
  SCOPED_TRACE(test::seed_trace());
  nn::init_rng rng(4);
  nn::sequential<qconv, nn::relu, nn::max_pool2d, qconv, nn::relu, nn::max_pool2d, nn::flatten, qdense> net(
      qconv({1, 8, 3, 3, 1, 1, nn::pad(1)}, rng), nn::relu{}, nn::max_pool2d{},
      qconv({8, 8, 3, 3, 1, 1, nn::pad(1)}, rng), nn::relu{}, nn::max_pool2d{}, nn::flatten{},
      qdense({3 * 3 * 8, 5}, rng));
  const auto d = expect_int8_cnn_matches_fake_quant(net, 5);
  EXPECT_EQ(d.ops()[0]->kind(), "conv2d.int8");
}

/// Batch-norm folding for quantized convs: QAT trains conv -> batch_norm (batch
/// statistics) with per-tensor int8 weights; convert() folds each batch norm into
/// its conv's per-channel scales and bias without re-quantizing, so the integer
/// model matches the fake-quant model (running statistics) within one step.
TEST(Qat, BatchNormFoldsIntoTheInt8ConvItFollows) {
  SCOPED_TRACE(test::seed_trace());
  nn::init_rng rng(8);
  const quant::int8 per_tensor{.per_channel = false};
  using qconv_t = nn::conv2d<quant::int8, prune::none, quant::static_int8>;
  nn::sequential<qconv_t, nn::batch_norm, nn::relu, nn::max_pool2d, qconv_t, nn::batch_norm, nn::relu, nn::max_pool2d,
                 nn::flatten, qdense>
      net(qconv_t({1, 8, 3, 3, 1, 1, nn::pad(1)}, rng, {}, per_tensor), nn::batch_norm({.num_features = 8}), nn::relu{},
          nn::max_pool2d{}, qconv_t({8, 8, 3, 3, 1, 1, nn::pad(1)}, rng, {}, per_tensor),
          nn::batch_norm({.num_features = 8}), nn::relu{}, nn::max_pool2d{}, nn::flatten{}, qdense({3 * 3 * 8, 5}, rng));
  const auto d = expect_int8_cnn_matches_fake_quant(net, 10);
  EXPECT_EQ(d.ops()[0]->kind(), "conv2d.int8");
  EXPECT_EQ(d.ops()[1]->kind(), "max_pool2d");  // batch norm and ReLU fused into the conv
}

/// A user-written weight quantizer: int8 with power-of-two scales (shift-only
/// requantization hardware), the QAT pair included.
struct pow2_int8 {
  using storage_type = quant::int8_weights;
  static constexpr bool quantizes_activations = false;
  [[nodiscard]] storage_type quantize(tensor_view<const float, 2, layout_stride> w) const {
    storage_type s = quant::int8{}.quantize(w);
    for (index_t r = 0; r < w.extent(0); ++r) {
      float& sc = s.params.scales[static_cast<std::size_t>(r)];
      sc = std::exp2(std::ceil(std::log2(sc)));
      for (index_t c = 0; c < w.extent(1); ++c) {
        s.codes(r, c) = static_cast<std::int8_t>(quant::quantize_value(w(r, c), {sc, 0}, {-127, 127},
                                                                       quant::rounding::half_to_even));
      }
    }
    return s;
  }
  void dequantize(const storage_type& s, tensor_view<float, 2> out) const { quant::int8{}.dequantize(s, out); }
  void fake_quantize(tensor_view<const float, 2> w, tensor_view<float, 2> out) const { dequantize(quantize(w), out); }
  void fake_quantize_backward(tensor_view<const float, 2>, tensor_view<float, 2>) const {}
};
static_assert(quant::fake_quant_weight_quantizer<pow2_int8>);

TEST(Qat, UserWrittenQuantizerTrainsInDenseAndConv) {
  nn::init_rng rng(5);
  using d = nn::dense<pow2_int8>;
  using c = nn::conv2d<pow2_int8>;
  nn::sequential<c, nn::relu, nn::flatten, d> net(c({1, 4, 3, 3}, rng), nn::relu{}, nn::flatten{}, d({4 * 4 * 4, 3}, rng));
  const auto x2 = samples(64, 36, 7);
  const auto y = labels_for(x2, 3);
  const tensor<float, 4> x(extents<4>(64, 6, 6, 1), std::span<const float>(x2.data(), static_cast<std::size_t>(x2.size())));
  nn::softmax_cross_entropy ce;
  const double before = ce.forward(net.forward(x).cview(), std::span<const std::uint8_t>(y));
  train(net, x, y, 40);
  const double after = ce.forward(net.forward(x).cview(), std::span<const std::uint8_t>(y));
  EXPECT_LT(after, before);
  // The forward multiplies by the policy's fake-quantized weights, and every
  // row's scale is a power of two.
  auto& layer = net.get<3>();
  const auto w = layer.weights().effective();
  tensor<float, 2> want(w.extents());
  pow2_int8{}.fake_quantize(layer.weight().cview(), want.view());
  const auto s = pow2_int8{}.quantize(layer.weight().cview());
  for (index_t r = 0; r < w.extent(0); ++r) {
    const float sc = s.params.scales[static_cast<std::size_t>(r)];
    EXPECT_EQ(sc, std::exp2(std::round(std::log2(sc))));
    for (index_t j = 0; j < w.extent(1); ++j) EXPECT_EQ(w(r, j), want(r, j));
  }
}

/// convert() deploys what the layer trained with: a layer whose policy stores int8
/// codes keeps those codes and scales (here power-of-two scales, which the default
/// per-channel rule would not choose) and fills the layer's storage slot; a
/// following batch norm scales the rows (negative gamma negates them); the fp32
/// deployment multiplies by the fake-quantized weights, bit for bit.
TEST(Qat, ConvertDeploysTheLayersOwnQuantizedWeights) {
  SCOPED_TRACE(test::seed_trace());
  nn::init_rng rng(6);
  using d = nn::dense<pow2_int8>;
  using c = nn::conv2d<pow2_int8>;
  nn::sequential<c, nn::batch_norm, nn::relu, nn::flatten, d> net(c({1, 4, 3, 3}, rng), nn::batch_norm({.num_features = 4}),
                                                                nn::relu{}, nn::flatten{}, d({4 * 4 * 4, 3}, rng));
  const auto x2 = samples(64, 36, 8);
  const auto y = labels_for(x2, 3);
  const tensor<float, 4> x(extents<4>(64, 6, 6, 1), std::span<const float>(x2.data(), static_cast<std::size_t>(x2.size())));
  train(net, x, y, 20);
  auto& bn = net.get<1>();
  bn.gamma()(1) = -0.75f;  // a negative batch-norm factor
  bn.gamma()(2) = 0.0f;    // a channel the batch norm switches off
  net.set_mode(nn::mode::eval);
  const auto want = net.forward(x);

  nn::convert_options o;
  o.input_height = 6;
  o.input_width = 6;
  o.input_channels = 1;
  auto fp = nn::convert(net, o);
  const auto got = fp.forward(x2.cview());
  ASSERT_EQ(got.size(), want.size());
  for (index_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got.data()[i], want.data()[i], 1e-5f) << i;

  o.format = nn::weight_format::int8_static;
  auto q = nn::convert(net, o, x2.cview());
  auto& conv = net.get<0>();
  auto& dense = net.get<4>();
  ASSERT_TRUE(conv.weights().storage().has_value());
  ASSERT_TRUE(dense.weights().storage().has_value());
  const auto cs = pow2_int8{}.quantize(conv.weight().cview());
  const auto ds = pow2_int8{}.quantize(dense.weight().cview());
  EXPECT_TRUE(std::ranges::equal(conv.weights().storage()->codes.span(), cs.codes.span()));
  EXPECT_EQ(dense.weights().storage()->params.scales, ds.params.scales);

  const auto& qd = dynamic_cast<const nn::int8_dense&>(*q.ops().back());
  EXPECT_TRUE(std::ranges::equal(qd.codes().span(), ds.codes.span()));
  EXPECT_EQ(qd.stage().weight_scales(), ds.params.scales);
  const auto& qc = dynamic_cast<const nn::int8_conv&>(*q.ops().front());
  for (index_t r = 0; r < 4; ++r) {
    const double k = static_cast<double>(bn.gamma()(r)) /
                     std::sqrt(static_cast<double>(bn.running_var()(r)) + bn.options().eps);
    const float scale = qc.stage().weight_scales()[static_cast<std::size_t>(r)];
    for (index_t j = 0; j < cs.codes.extent(1); ++j) {
      const int want_code = r == 2 ? 0 : (k < 0.0 ? -1 : 1) * cs.codes(r, j);
      ASSERT_EQ(qc.codes()(r, j), want_code) << r << ", " << j;
    }
    if (r == 2) {
      EXPECT_EQ(scale, 1.0f);
    } else {
      EXPECT_FLOAT_EQ(scale, static_cast<float>(std::fabs(k) * cs.params.scales[static_cast<std::size_t>(r)]));
    }
  }
  // The activations are calibrated here, not trained: the integer model stays
  // within a few output steps of the float one.
  const auto qy = q.forward(x2.cview());
  const auto [lo, hi] = std::minmax_element(want.data(), want.data() + want.size());
  double worst = 0.0;
  for (index_t i = 0; i < qy.size(); ++i) worst = std::max(worst, double(std::fabs(qy.data()[i] - want.data()[i])));
  EXPECT_LE(worst, 4.0 * (*hi - *lo) / 255.0) << "steps: " << worst / ((*hi - *lo) / 255.0);
}

/// Per-tensor int8 weights stay per tensor when deployed: every row gets the
/// tensor's one scale and the policy's codes.
TEST(Qat, PerTensorInt8WeightsDeployTheirCodes) {
  nn::init_rng rng(7);
  using d = nn::dense<quant::int8>;
  nn::sequential<d, nn::relu, d> net(d({16, 12}, rng, {}, quant::int8{.per_channel = false}), nn::relu{},
                                     d({12, 4}, rng, {}, quant::int8{.per_channel = false}));
  const auto x = samples(32, 16, 9);
  nn::convert_options o;
  o.format = nn::weight_format::int8_static;
  o.input_channels = 16;
  auto q = nn::convert(net, o, x.cview());
  const auto want = quant::int8{.per_channel = false}.quantize(net.get<0>().weight().cview());
  const auto& op = dynamic_cast<const nn::int8_dense&>(*q.ops().front());
  EXPECT_TRUE(std::ranges::equal(op.codes().span(), want.codes.span()));
  EXPECT_EQ(op.stage().weight_scales(), want.params.scales);
  EXPECT_EQ(std::ranges::count(op.stage().weight_scales(), want.params.scales[0]), 12);
}

}  // namespace

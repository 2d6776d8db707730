// nn::remove_channels: structured pruning that physically shrinks a model. The
// reference is the channel-masked model (the removed channels' weight rows set to
// zero, biases kept, as torch.nn.utils.prune.ln_structured masks them): the smaller
// model must compute the same outputs (up to float rounding of the folded bias),
// with the channels chosen by the L2 norms computed here independently.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "qprune/nn/activations.hpp"
#include "qprune/nn/batch_norm.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/optim.hpp"
#include "qprune/nn/loss.hpp"
#include "qprune/nn/pooling.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/nn/structured.hpp"
#include "qprune/prune/magnitude.hpp"
#include "support/random.hpp"

namespace {

using namespace qprune;
using qprune::test::make_rng;
using qprune::test::seed_trace;

template <std::size_t R>
tensor<float, R> random_tensor(const extents<R>& e, std::mt19937_64& rng) {
  tensor<float, R> t(e);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (float& v : t.span()) v = d(rng);
  return t;
}

/// The `count` rows of w with the smallest L2 norm, increasing.
std::vector<index_t> smallest_rows(const tensor<float, 2>& w, index_t count) {
  std::vector<std::pair<double, index_t>> s;
  for (index_t r = 0; r < w.extent(0); ++r) {
    double a = 0.0;
    for (index_t c = 0; c < w.extent(1); ++c) a += static_cast<double>(w(r, c)) * w(r, c);
    s.emplace_back(std::sqrt(a), r);
  }
  std::sort(s.begin(), s.end());
  std::vector<index_t> out;
  for (index_t i = 0; i < count; ++i) out.push_back(s[static_cast<std::size_t>(i)].second);
  std::sort(out.begin(), out.end());
  return out;
}

void zero_rows(tensor<float, 2>& w, const std::vector<index_t>& rows) {
  for (index_t r : rows)
    for (index_t c = 0; c < w.extent(1); ++c) w(r, c) = 0.0f;
}

template <std::size_t R>
void expect_close(const tensor<float, R>& a, const tensor<float, R>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (index_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a.data()[i]) - b.data()[i]) /
                     (1.0 + std::abs(static_cast<double>(b.data()[i])));
    worst = std::max(worst, d);
  }
  EXPECT_LE(worst, tol);
}

using pdense = nn::dense<quant::none, prune::magnitude>;

auto make_mlp(nn::init_rng& init) {
  return nn::sequential(pdense({.in_features = 20, .out_features = 16}, init), nn::relu(),
                        pdense({.in_features = 16, .out_features = 12}, init), nn::relu(),
                        pdense({.in_features = 12, .out_features = 5}, init));
}

TEST(RemoveChannels, MlpMatchesTheChannelMaskedModel) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(1);
  nn::init_rng init(7);
  auto net = make_mlp(init);
  // Positive biases on some channels so that removed channels have a nonzero constant to fold.
  for (float& b : net.get<0>().bias().span()) b += 0.3f;
  auto masked = net;
  const auto r0 = smallest_rows(net.get<0>().weight(), 8);  // round_half_even(0.5 * 16)
  zero_rows(masked.get<0>().weight(), r0);
  // Layer 2 is ranked on its weights after layer 0's removal, which does not change its rows.
  const auto r2 = smallest_rows(net.get<2>().weight(), 6);
  zero_rows(masked.get<2>().weight(), r2);

  const auto report = nn::remove_channels(net, {.fraction = 0.5});
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[0].layer, 0u);
  EXPECT_EQ(report[0].consumer, 2u);
  EXPECT_EQ(report[0].before, 16);
  EXPECT_EQ(report[0].after, 8);
  EXPECT_TRUE(report[0].exact);
  EXPECT_EQ(report[1].layer, 2u);
  EXPECT_EQ(report[1].after, 6);
  EXPECT_EQ(net.get<0>().out_features(), 8);
  EXPECT_EQ(net.get<2>().in_features(), 8);
  EXPECT_EQ(net.get<2>().out_features(), 6);
  EXPECT_EQ(net.get<4>().in_features(), 6);
  EXPECT_EQ(net.get<4>().out_features(), 5);
  EXPECT_EQ(net.get<0>().weight_grad().extent(0), 8);
  EXPECT_EQ(net.get<0>().mask().extents(), net.get<0>().weight().extents());

  net.set_mode(nn::mode::eval);
  masked.set_mode(nn::mode::eval);
  const auto x = random_tensor(extents<2>(9, 20), rng);
  expect_close(net.forward(x.cview()), masked.forward(x.cview()), 1e-5);
}

TEST(RemoveChannels, WithoutFoldDropsTheConstantAndSaysSo) {
  nn::init_rng init(3);
  auto net = make_mlp(init);
  for (float& b : net.get<0>().bias().span()) b = 0.5f;  // relu(0.5) != 0 for every channel
  auto masked = net;
  zero_rows(masked.get<0>().weight(), smallest_rows(net.get<0>().weight(), 8));
  const auto report = nn::remove_channels(net, {.fraction = 0.5, .fold = false});
  EXPECT_FALSE(report[0].exact);
  net.set_mode(nn::mode::eval);
  masked.set_mode(nn::mode::eval);
  auto rng = make_rng(2);
  const auto x = random_tensor(extents<2>(4, 20), rng);
  const auto a = net.forward(x.cview());
  const auto b = masked.forward(x.cview());
  double diff = 0.0;
  for (index_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
  EXPECT_GT(diff, 1e-3);  // the dropped constants change the output
}

TEST(RemoveChannels, CnnWithBatchNormPoolingAndFlatten) {
  SCOPED_TRACE(seed_trace());
  auto rng = make_rng(3);
  nn::init_rng init(11);
  using pconv = nn::conv2d<quant::none, prune::magnitude>;
  auto net = nn::sequential(
      pconv({.in_channels = 3, .out_channels = 8, .kernel_h = 3, .kernel_w = 3, .padding = nn::pad(1)}, init),
      nn::batch_norm({.num_features = 8}), nn::relu(), nn::max_pool2d(),
      pconv({.in_channels = 8, .out_channels = 6, .kernel_h = 3, .kernel_w = 3}, init), nn::relu(), nn::flatten(),
      pdense({.in_features = 2 * 2 * 6, .out_features = 4}, init));
  auto& bn = net.get<1>();
  std::uniform_real_distribution<float> u(0.5f, 1.5f), v(-0.5f, 0.5f);
  for (index_t c = 0; c < 8; ++c) {
    bn.gamma()(c) = u(rng);
    bn.beta()(c) = v(rng) + 0.4f;
    bn.running_mean()(c) = v(rng);
    bn.running_var()(c) = u(rng);
  }
  auto masked = net;
  const auto r0 = smallest_rows(net.get<0>().weight(), 4);
  const auto r4 = smallest_rows(net.get<4>().weight(), 3);
  zero_rows(masked.get<0>().weight(), r0);
  zero_rows(masked.get<4>().weight(), r4);

  const auto report = nn::remove_channels(net, {.fraction = 0.5});
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[0].consumer, 4u);
  EXPECT_EQ(report[1].consumer, 7u);
  EXPECT_TRUE(report[0].exact);  // the 3x3 consumer is unpadded
  EXPECT_TRUE(report[1].exact);
  EXPECT_EQ(net.get<0>().options().out_channels, 4);
  EXPECT_EQ(net.get<1>().options().num_features, 4);
  EXPECT_EQ(net.get<4>().options().in_channels, 4);
  EXPECT_EQ(net.get<4>().options().out_channels, 3);
  EXPECT_EQ(net.get<7>().in_features(), 2 * 2 * 3);
  // The kept batch-norm channels are the kept producer channels, in order.
  std::vector<index_t> keep;
  for (index_t c = 0; c < 8; ++c)
    if (std::find(r0.begin(), r0.end(), c) == r0.end()) keep.push_back(c);
  for (std::size_t k = 0; k < keep.size(); ++k) {
    EXPECT_EQ(net.get<1>().gamma()(static_cast<index_t>(k)), masked.get<1>().gamma()(keep[k]));
    EXPECT_EQ(net.get<1>().running_var()(static_cast<index_t>(k)), masked.get<1>().running_var()(keep[k]));
  }

  net.set_mode(nn::mode::eval);
  masked.set_mode(nn::mode::eval);
  const auto x = random_tensor(extents<4>(5, 8, 8, 3), rng);
  expect_close(net.forward(x.cview()), masked.forward(x.cview()), 1e-5);
}

TEST(RemoveChannels, PaddedConvConsumerIsExactInTheInteriorOnly) {
  nn::init_rng init(5);
  using conv = nn::conv2d<>;
  auto net = nn::sequential(conv({.in_channels = 2, .out_channels = 6, .kernel_h = 1, .kernel_w = 1}, init), nn::relu(),
                            conv({.in_channels = 6, .out_channels = 3, .kernel_h = 3, .kernel_w = 3, .padding = nn::pad(1)}, init));
  for (float& b : net.get<0>().bias().span()) b = 0.25f;
  auto masked = net;
  zero_rows(masked.get<0>().weight(), smallest_rows(net.get<0>().weight(), 3));
  const auto report = nn::remove_channels(net, {.fraction = 0.5});
  ASSERT_EQ(report.size(), 1u);
  EXPECT_FALSE(report[0].exact);
  net.set_mode(nn::mode::eval);
  masked.set_mode(nn::mode::eval);
  auto rng = make_rng(4);
  const auto x = random_tensor(extents<4>(1, 5, 5, 2), rng);
  const auto a = net.forward(x.cview());
  const auto b = masked.forward(x.cview());
  bool border_differs = false;
  for (index_t i = 0; i < 5; ++i)
    for (index_t j = 0; j < 5; ++j)
      for (index_t o = 0; o < 3; ++o) {
        const double d = std::abs(static_cast<double>(a(0, i, j, o)) - b(0, i, j, o));
        if (i > 0 && i < 4 && j > 0 && j < 4) {
          EXPECT_LE(d, 1e-5) << i << "," << j;
        } else {
          border_differs = border_differs || d > 1e-4;
        }
      }
  EXPECT_TRUE(border_differs);
}

TEST(RemoveChannels, TrainingContinuesOnTheSmallerModel) {
  nn::init_rng init(9);
  auto net = make_mlp(init);
  (void)nn::remove_channels(net, {.fraction = 0.25});
  EXPECT_EQ(net.get<0>().out_features(), 12);
  auto rng = make_rng(5);
  const auto x = random_tensor(extents<2>(8, 20), rng);
  const std::vector<std::uint8_t> labels{0, 1, 2, 3, 4, 0, 1, 2};
  nn::adam opt({.lr = 1e-2});
  nn::softmax_cross_entropy ce;
  net.set_mode(nn::mode::train);
  double first = 0.0, last = 0.0;
  for (int step = 0; step < 30; ++step) {
    net.zero_grad();
    const double loss = ce.forward(net.forward(x.cview()).cview(), std::span<const std::uint8_t>(labels));
    if (step == 0) first = loss;
    last = loss;
    net.backward_params(ce.backward());
    opt.step(net);
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST(RemoveChannels, RejectsBadFractions) {
  nn::init_rng init(1);
  auto net = make_mlp(init);
  EXPECT_THROW((void)nn::remove_channels(net, {.fraction = 1.5}), config_error);
  EXPECT_THROW((void)nn::remove_channels(net, {.fraction = std::nan("")}), config_error);
  EXPECT_THROW((void)nn::remove_channels(net, {.fraction = 1.0}), config_error);  // would empty layer 0
  EXPECT_EQ(net.get<0>().out_features(), 16);  // nothing changed
  const auto none = nn::remove_channels(net, {.fraction = 0.0});
  ASSERT_EQ(none.size(), 2u);
  EXPECT_EQ(none[0].after, 16);
}

TEST(RemoveChannels, ReplaceParametersValidates) {
  nn::init_rng init(1);
  pdense d({.in_features = 4, .out_features = 3}, init);
  EXPECT_THROW(d.replace_parameters(tensor<float, 2>(2, 4), tensor<float, 1>(3)), shape_error);
  EXPECT_EQ(d.out_features(), 3);
  nn::conv2d<> c({.in_channels = 4, .out_channels = 2, .kernel_h = 3, .kernel_w = 3}, init);
  EXPECT_THROW(c.replace_parameters(3, tensor<float, 2>(2, 9 * 4), tensor<float, 1>(2)), shape_error);
  EXPECT_THROW(c.replace_parameters(0, tensor<float, 2>(2, 0), tensor<float, 1>(2)), config_error);
  nn::batch_norm bn({.num_features = 4});
  const std::vector<index_t> bad{2, 1};
  EXPECT_THROW(bn.keep_channels(bad), config_error);
  EXPECT_THROW(bn.keep_channels({}), config_error);
  EXPECT_EQ(bn.options().num_features, 4);
}

}  // namespace

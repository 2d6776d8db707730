// quant/int8.hpp: the integer quantizer policies layers take. Each is checked
// against the lower-level functions it is defined by (choose_symmetric_params,
// quantize_value, quantize_int4, the moving-average observer), by hand on small
// cases, and for the properties QAT relies on: fake_quantize equals
// dequantize(quantize()), pruned zeros stay zero, and the straight-through mask.
#include "qprune/quant/int8.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "support/random.hpp"

namespace {

namespace quant = qprune::quant;
using qprune::index_t;
using qprune::tensor;

tensor<float, 2> random_weights(index_t r, index_t c, std::uint64_t salt, float zero_fraction) {
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  tensor<float, 2> w(r, c);
  for (auto& v : w.span()) v = u(rng) < zero_fraction ? 0.0f : nd(rng);
  return w;
}

TEST(Int8Policy, ByHand) {
  const tensor<float, 2> w(qprune::extents<2>(2, 4), {0.5f, -1.27f, 0.025f, 0.015f, 0.0f, 0.0f, 0.0f, 0.0f});
  const quant::int8 q;
  const auto s = q.quantize(w.cview());
  EXPECT_EQ(s.params.scales[0], 1.27f / 127.0f);
  EXPECT_EQ(s.params.scales[1], 1.0f);  // an all-zero row gets scale 1
  EXPECT_EQ(s.codes(0, 0), 50);
  EXPECT_EQ(s.codes(0, 1), -127);
  EXPECT_EQ(s.codes(0, 2), 2);          // 0.025f / s is exactly 2.5 in float32: ties to even
  EXPECT_EQ(s.codes(0, 3), 2);          // 0.015f / s is exactly 1.5
  EXPECT_EQ(s.codes(1, 0), 0);
  EXPECT_EQ(s.bytes(), 8 + 2 * 4);
  quant::int8 per_tensor;
  per_tensor.per_channel = false;
  const auto t = per_tensor.quantize(w.cview());
  EXPECT_EQ(t.params.scales[1], t.params.scales[0]);
}

TEST(Int8Policy, FakeQuantEqualsDequantizeOfQuantizeAndKeepsZeros) {
  SCOPED_TRACE(qprune::test::seed_trace());
  for (bool per_channel : {true, false}) {
    const auto w = random_weights(17, 33, per_channel ? 1 : 2, 0.5f);
    quant::int8 q;
    q.per_channel = per_channel;
    const auto s = q.quantize(w.cview());
    tensor<float, 2> dq(17, 33), fq(17, 33);
    q.dequantize(s, dq.view());
    q.fake_quantize(w.cview(), fq.view());
    for (index_t i = 0; i < 17; ++i) {
      for (index_t j = 0; j < 33; ++j) {
        EXPECT_EQ(fq(i, j), dq(i, j));
        if (w(i, j) == 0.0f) {
          EXPECT_EQ(fq(i, j), 0.0f);
        }
        EXPECT_LE(std::fabs(fq(i, j) - w(i, j)), s.params.scales[static_cast<std::size_t>(i)] * 0.5f * 1.0001f);
        EXPECT_EQ(s.codes(i, j), quant::quantize_value(w(i, j), s.params.at(i), quant::narrow_range(quant::dtype::int8),
                                                       quant::rounding::half_to_even));
      }
    }
    tensor<float, 2> g(qprune::extents<2>(17, 33), 1.5f);
    q.fake_quantize_backward(w.cview(), g.view());
    for (float v : g.span()) EXPECT_EQ(v, 1.5f);
  }
}

TEST(Int8Policy, Errors) {
  tensor<float, 2> w(qprune::extents<2>(2, 2), 1.0f);
  w(1, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW((void)quant::int8{}.quantize(w.cview()), qprune::config_error);
  tensor<float, 2> ok(qprune::extents<2>(2, 2), 1.0f), out(2, 3);
  EXPECT_THROW(quant::int8{}.fake_quantize(ok.cview(), out.view()), qprune::shape_error);
  EXPECT_THROW(quant::int8{}.fake_quantize_backward(ok.cview(), out.view()), qprune::shape_error);
}

TEST(Int4GroupedPolicy, MatchesQuantizeInt4) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(5, 70, 3, 0.3f);
  for (auto scheme : {quant::int4_scheme::symmetric, quant::int4_scheme::affine}) {
    const quant::int4_grouped q{32, scheme};
    const auto s = q.quantize(w.cview());
    const auto ref = quant::quantize_int4(w.cview(), 32, scheme);
    EXPECT_EQ(s.params, ref.params);
    EXPECT_EQ(std::vector<std::uint8_t>(s.codes.span().begin(), s.codes.span().end()),
              std::vector<std::uint8_t>(ref.codes.span().begin(), ref.codes.span().end()));
    tensor<float, 2> fq(5, 70), dq(5, 70);
    q.fake_quantize(w.cview(), fq.view());
    quant::dequantize(ref, dq.view());
    for (index_t i = 0; i < fq.size(); ++i) EXPECT_EQ(fq.data()[i], dq.data()[i]);
    for (index_t i = 0; i < fq.size(); ++i) {
      if (w.data()[i] == 0.0f) {
        EXPECT_EQ(fq.data()[i], 0.0f);
      }
    }
  }
  EXPECT_THROW((void)(quant::int4_grouped{24, quant::int4_scheme::symmetric}.quantize(w.cview())),
               qprune::config_error);
}

TEST(StaticInt8, ObserverFakeQuantAndMask) {
  quant::static_int8 a;  // uint8, averaging constant 0.01
  EXPECT_FALSE(a.calibrated());
  EXPECT_THROW((void)a.params(), qprune::config_error);
  const tensor<float, 2> x1(qprune::extents<2>(1, 4), {-1.0f, 0.0f, 2.0f, 3.0f});
  const tensor<float, 2> x2(qprune::extents<2>(1, 4), {-3.0f, 0.0f, 1.0f, 5.0f});
  tensor<float, 2> y(1, 4);
  a.fake_quantize(x1.cview(), y.view(), true);
  EXPECT_EQ(a.observer().min(), -1.0f);
  EXPECT_EQ(a.observer().max(), 3.0f);
  const auto p1 = a.params();
  EXPECT_EQ(p1, quant::choose_affine_params(-1.0f, 3.0f, quant::full_range(quant::dtype::uint8)));
  for (index_t j = 0; j < 4; ++j) {
    EXPECT_EQ(y(0, j), quant::dequantize_value(quant::quantize_value(x1(0, j), p1, {0, 255},
                                                                     quant::rounding::half_to_even), p1));
  }
  EXPECT_EQ(y(0, 1), 0.0f);  // real 0 is exact
  a.fake_quantize(x2.cview(), y.view(), true);
  EXPECT_EQ(a.observer().min(), -1.0f + 0.01f * (-3.0f - -1.0f));
  EXPECT_EQ(a.observer().max(), 3.0f + 0.01f * (5.0f - 3.0f));
  // Not observing keeps the range; values outside it clip and get no gradient.
  const float lo = a.observer().min(), hi = a.observer().max();
  a.fake_quantize(x2.cview(), y.view(), false);
  EXPECT_EQ(a.observer().min(), lo);
  EXPECT_EQ(a.observer().max(), hi);
  tensor<float, 2> g(qprune::extents<2>(1, 4), 2.0f);
  a.fake_quantize_backward(x2.cview(), g.view());
  EXPECT_EQ(g(0, 0), 0.0f);  // -3 < -1.02
  EXPECT_EQ(g(0, 1), 2.0f);
  EXPECT_EQ(g(0, 2), 2.0f);
  EXPECT_EQ(g(0, 3), 0.0f);  // 5 > 3.02
  EXPECT_THROW(quant::static_int8(quant::dtype::int16), qprune::config_error);
  tensor<float, 2> bad(1, 3);
  EXPECT_THROW(a.fake_quantize(x1.cview(), bad.view(), false), qprune::shape_error);
}

}  // namespace

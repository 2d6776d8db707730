// Tests for quant/quantize.hpp: PyTorch 1.13 vectors bit for bit, hand-computed
// ties and edge values, per-channel / per-group indexing against a naive
// reference, ONNX Runtime and TFLite helpers, properties and error handling.
#include "qprune/quant/quantize.hpp"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/data.hpp"
#include "support/json.hpp"
#include "support/random.hpp"

namespace {

using qprune::test::load_json;
using qprune::test::floats;

using nlohmann::json;
using qprune::config_error;
using qprune::extents;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor_view;
namespace quant = qprune::quant;
using quant::affine_params;
using quant::per_channel_params;
using quant::per_group_params;
using quant::qrange;
using quant::rounding;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();



template <class T, std::size_t R>
tensor_view<const float, R> cview(const std::vector<float>& v, const extents<R>& e) {
  return tensor_view<const float, R>(v.data(), e);
}

template <class T, std::size_t R>
tensor_view<T, R> view(std::vector<T>& v, const extents<R>& e) {
  return tensor_view<T, R>(v.data(), e);
}

template <class T>
tensor_view<const T, 1> cview1(const std::vector<T>& v) {
  return tensor_view<const T, 1>(v.data(), static_cast<index_t>(v.size()));
}

template <class T>
tensor_view<T, 1> view1(std::vector<T>& v) {
  return tensor_view<T, 1>(v.data(), static_cast<index_t>(v.size()));
}

/// Quantizes a 1-D vector with qprune's per-tensor quantizer into int32 codes of type T.
template <class T>
std::vector<std::int32_t> q1(const std::vector<float>& x, affine_params p, qrange r,
                             rounding mode = rounding::half_to_even) {
  std::vector<T> q(x.size());
  quant::quantize(cview1(x), view1(q), p, r, mode);
  return {q.begin(), q.end()};
}

// ---------------------------------------------------------------------------
// PyTorch 1.13 vectors
// ---------------------------------------------------------------------------

template <class T>
void check_torch_per_tensor_case(const json& c) {
  const std::vector<float> x = floats(c["x_bits"]);
  const affine_params p{std::bit_cast<float>(c["scale_bits"].get<std::uint32_t>()),
                        c["zero_point"].get<std::int32_t>()};
  const auto& expected = c["q"];
  ASSERT_EQ(expected.size(), x.size());
  std::vector<T> q(x.size());
  quant::pytorch::quantize_per_tensor(cview1(x), view1(q), p);
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(static_cast<std::int64_t>(q[i]), expected[i].get<std::int64_t>())
        << "element " << i << " x=" << x[i];
  }
  // Dequantize torch's own codes, so the two checks are independent.
  std::vector<T> tq;
  for (const auto& v : expected) tq.push_back(static_cast<T>(v.get<std::int64_t>()));
  std::vector<float> dq(x.size());
  quant::pytorch::dequantize_per_tensor(cview1(tq), view1(dq), p);
  const auto& dbits = c["dequant_bits"];
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(dq[i]), dbits[i].get<std::uint32_t>())
        << "element " << i << " q=" << static_cast<std::int64_t>(tq[i]);
  }
}

TEST(PyTorchCompat, QuantizePerTensorEveryCaseBitExact) {
  const json j = load_json("quant/quantize_per_tensor.json");
  int n_quint8 = 0, n_qint8 = 0, n_qint32 = 0, n_quirk = 0;
  for (const auto& c : j["cases"]) {
    const std::string dt = c["dtype"];
    SCOPED_TRACE(c["name"].get<std::string>() + " / " + dt);
    if (!c["overflow_quirk_indices"].empty()) ++n_quirk;
    if (dt == "quint8") {
      ++n_quint8;
      check_torch_per_tensor_case<std::uint8_t>(c);
    } else if (dt == "qint8") {
      ++n_qint8;
      check_torch_per_tensor_case<std::int8_t>(c);
    } else if (dt == "qint32") {
      ++n_qint32;
      check_torch_per_tensor_case<std::int32_t>(c);
    } else {
      ADD_FAILURE() << "unknown dtype " << dt;
    }
  }
  // Every case ran, including the ones where torch's int64 conversion overflows.
  EXPECT_EQ(static_cast<std::size_t>(n_quint8 + n_qint8 + n_qint32), j["cases"].size());
  EXPECT_GT(n_quint8, 20);
  EXPECT_GT(n_qint8, 20);
  EXPECT_GT(n_qint32, 20);
  EXPECT_EQ(n_quirk, j["num_cases_with_overflow_quirk"].get<int>());
}

template <class T, std::size_t R>
void check_torch_per_channel_case(const json& c) {
  std::array<index_t, R> shape{};
  for (std::size_t i = 0; i < R; ++i) shape[i] = c["shape"][i].get<index_t>();
  const extents<R> e(shape);
  const std::vector<float> x = floats(c["x_bits"]);
  ASSERT_EQ(static_cast<index_t>(x.size()), e.size());
  per_channel_params p;
  p.axis = c["axis"].get<index_t>();
  p.scales = floats(c["scales_bits"]);
  for (const auto& z : c["zero_points"]) p.zero_points.push_back(z.get<std::int32_t>());
  std::vector<T> q(x.size());
  quant::pytorch::quantize_per_channel(cview<T>(x, e), view(q, e), p);
  const auto& expected = c["q"];
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(static_cast<std::int64_t>(q[i]), expected[i].get<std::int64_t>())
        << "element " << i << " x=" << x[i];
  }
  std::vector<T> tq;
  for (const auto& v : expected) tq.push_back(static_cast<T>(v.get<std::int64_t>()));
  std::vector<double> scales64;
  for (const auto& s : c["q_per_channel_scales_bits64"]) {
    scales64.push_back(std::bit_cast<double>(s.get<std::uint64_t>()));
  }
  std::vector<std::int32_t> zps;
  for (const auto& z : c["q_per_channel_zero_points"]) zps.push_back(z.get<std::int32_t>());
  std::vector<float> dq(x.size());
  quant::pytorch::dequantize_per_channel(tensor_view<const T, R>(tq.data(), e), view(dq, e),
                                         std::span<const double>(scales64),
                                         std::span<const std::int32_t>(zps), p.axis);
  const auto& dbits = c["dequant_bits"];
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(dq[i]), dbits[i].get<std::uint32_t>())
        << "element " << i << " q=" << static_cast<std::int64_t>(tq[i]);
  }
  // The float-scale overload equals torch whenever the double scales are floats.
  bool all_float = true;
  for (std::size_t k = 0; k < scales64.size(); ++k) {
    all_float = all_float && static_cast<double>(static_cast<float>(scales64[k])) == scales64[k];
  }
  if (all_float) {
    std::vector<float> dq2(x.size());
    quant::pytorch::dequantize_per_channel(tensor_view<const T, R>(tq.data(), e), view(dq2, e), p);
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(dq2[i]), dbits[i].get<std::uint32_t>()) << i;
    }
  }
}

template <class T>
void check_torch_per_channel_any_rank(const json& c) {
  switch (c["shape"].size()) {
    case 2: check_torch_per_channel_case<T, 2>(c); break;
    case 4: check_torch_per_channel_case<T, 4>(c); break;
    default: ADD_FAILURE() << "unexpected rank " << c["shape"].size();
  }
}

TEST(PyTorchCompat, QuantizePerChannelEveryCaseBitExact) {
  const json j = load_json("quant/quantize_per_channel.json");
  std::size_t ran = 0;
  std::array<int, 4> axes_seen{};
  for (const auto& c : j["cases"]) {
    const std::string dt = c["dtype"];
    SCOPED_TRACE(c["name"].get<std::string>() + " / " + dt);
    axes_seen[static_cast<std::size_t>(c["axis"].get<int>())]++;
    if (dt == "quint8") {
      check_torch_per_channel_any_rank<std::uint8_t>(c);
    } else if (dt == "qint8") {
      check_torch_per_channel_any_rank<std::int8_t>(c);
    } else {
      ADD_FAILURE() << "unknown dtype " << dt;
      continue;
    }
    ++ran;
  }
  EXPECT_EQ(ran, j["cases"].size());
  EXPECT_GT(axes_seen[0], 0);
  EXPECT_GT(axes_seen[1], 0);
  EXPECT_GT(axes_seen[3], 0);
}

// torch multiplies by the float reciprocal; qprune's own quantizer divides. The
// generator's recip_vs_div_* cases are built where the two differ, so qprune's
// default mode must disagree with torch somewhere on them (and agree with the
// division).
TEST(PyTorchCompat, QpruneDefaultDividesWhereTorchMultipliesByReciprocal) {
  const json j = load_json("quant/quantize_per_tensor.json");
  int differing = 0;
  int cases = 0;
  for (const auto& c : j["cases"]) {
    if (c["name"].get<std::string>().rfind("recip_vs_div_", 0) != 0 || c["dtype"] != "qint32") {
      continue;
    }
    ++cases;
    const std::vector<float> x = floats(c["x_bits"]);
    const affine_params p{std::bit_cast<float>(c["scale_bits"].get<std::uint32_t>()),
                          c["zero_point"].get<std::int32_t>()};
    const auto ours = q1<std::int32_t>(x, p, quant::full_range(quant::dtype::int32));
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double by_division =
          static_cast<double>(std::nearbyint(x[i] / p.scale)) + p.zero_point;
      EXPECT_EQ(ours[i], static_cast<std::int32_t>(by_division)) << i;
      if (ours[i] != c["q"][i].get<std::int64_t>()) ++differing;
    }
  }
  EXPECT_GE(cases, 5);
  EXPECT_GT(differing, 0);
}

TEST(PyTorchCompat, OverflowQuirkAndFloatZeroPointAddition) {
  // +inf and huge positive values give qmin (x86 float -> int64 "integer indefinite").
  const std::vector<float> x{kInf, -kInf, 1e30f, -1e30f, kNaN, 1.0f};
  std::vector<std::uint8_t> q(x.size());
  quant::pytorch::quantize_per_tensor(cview1(x), view1(q), affine_params{0.5f, 3});
  EXPECT_EQ(q, (std::vector<std::uint8_t>{0, 0, 0, 0, 0, 5}));
  // The zero point is added in float32: 2^25 + 3 rounds to 2^25 + 4 in torch,
  // while qprune's own quantizer adds it exactly.
  const std::vector<float> big{33554432.0f};
  std::vector<std::int32_t> qt(1);
  quant::pytorch::quantize_per_tensor(cview1(big), view1(qt), affine_params{1.0f, 3});
  EXPECT_EQ(qt[0], 33554436);
  EXPECT_EQ(q1<std::int32_t>(big, affine_params{1.0f, 3}, quant::full_range(quant::dtype::int32))[0],
            33554435);
  // qint32 dequantize wraps q - zp modulo 2^32.
  const std::vector<std::int32_t> wq{std::numeric_limits<std::int32_t>::min()};
  std::vector<float> wd(1);
  quant::pytorch::dequantize_per_tensor(cview1(wq), view1(wd), affine_params{0.25f, 7});
  EXPECT_EQ(wd[0], 0.25f * static_cast<float>(2147483641));
}

TEST(PyTorchCompat, RejectsBadParameters) {
  std::vector<float> x(4, 1.0f);
  std::vector<std::uint8_t> q(4);
  EXPECT_THROW(quant::pytorch::quantize_per_tensor(cview1(x), view1(q), affine_params{0.0f, 0}),
               config_error);
  EXPECT_THROW(quant::pytorch::quantize_per_tensor(cview1(x), view1(q), affine_params{1.0f, 256}),
               config_error);
  EXPECT_THROW(quant::pytorch::quantize_per_tensor(cview1(x), view1(q), affine_params{1.0f, -1}),
               config_error);
  std::vector<std::uint8_t> q3(3);
  EXPECT_THROW(quant::pytorch::quantize_per_tensor(cview1(x), view1(q3), affine_params{1.0f, 0}),
               shape_error);
  const extents<2> e(2, 2);
  std::vector<std::int8_t> q2(4);
  per_channel_params p{{1.0f, 1.0f, 1.0f}, {0, 0, 0}, 0};
  EXPECT_THROW(quant::pytorch::quantize_per_channel(cview<float>(x, e), view(q2, e), p), shape_error);
  std::vector<double> s64{1.0, std::nan("")};
  std::vector<std::int32_t> z{0, 0};
  std::vector<float> out(4);
  EXPECT_THROW(quant::pytorch::dequantize_per_channel(
                   tensor_view<const std::int8_t, 2>(q2.data(), e), view(out, e),
                   std::span<const double>(s64), std::span<const std::int32_t>(z), 1),
               config_error);
  s64[1] = 2.0;
  EXPECT_THROW(quant::pytorch::dequantize_per_channel(
                   tensor_view<const std::int8_t, 2>(q2.data(), e), view(out, e),
                   std::span<const double>(s64), std::span<const std::int32_t>(z), 2),
               config_error);
}

// ---------------------------------------------------------------------------
// qprune's quantizer: hand-computed values
// ---------------------------------------------------------------------------

struct tie_row {
  float v;
  std::int32_t even, up, away;
};
constexpr std::array<tie_row, 8> kTies{{{0.5f, 0, 1, 1},
                                        {1.5f, 2, 2, 2},
                                        {2.5f, 2, 3, 3},
                                        {3.5f, 4, 4, 4},
                                        {-0.5f, 0, 0, -1},
                                        {-1.5f, -2, -1, -2},
                                        {-2.5f, -2, -2, -3},
                                        {-3.5f, -4, -3, -4}}};

TEST(Quantize, TiesFollowTheRoundingModeForPowerOfTwoScales) {
  const qrange r = quant::full_range(quant::dtype::int8);
  for (int k : {0, 3, 10, 20}) {
    const float scale = std::ldexp(1.0f, -k);
    for (std::int32_t zp : {0, 10, -7}) {
      SCOPED_TRACE("scale 2^-" + std::to_string(k) + " zp " + std::to_string(zp));
      std::vector<float> x;
      for (const auto& t : kTies) x.push_back(t.v * scale);  // exact: scale is a power of two
      const auto even = q1<std::int8_t>(x, {scale, zp}, r, rounding::half_to_even);
      const auto up = q1<std::int8_t>(x, {scale, zp}, r, rounding::half_up);
      const auto away = q1<std::int8_t>(x, {scale, zp}, r, rounding::half_away_from_zero);
      for (std::size_t i = 0; i < kTies.size(); ++i) {
        EXPECT_EQ(even[i], kTies[i].even + zp) << kTies[i].v;
        EXPECT_EQ(up[i], kTies[i].up + zp) << kTies[i].v;
        EXPECT_EQ(away[i], kTies[i].away + zp) << kTies[i].v;
      }
    }
  }
}

TEST(Quantize, TiesAtTheEndsOfTheRange) {
  const qrange i8 = quant::full_range(quant::dtype::int8);
  // qmax + 0.5 rounds to 128 (even) and clamps; 126.5 rounds down to 126.
  EXPECT_EQ(q1<std::int8_t>({127.5f, 126.5f, -128.5f, -127.5f}, {1.0f, 0}, i8),
            (std::vector<std::int32_t>{127, 126, -128, -128}));
  EXPECT_EQ(q1<std::int8_t>({127.5f, -128.5f}, {1.0f, 0}, i8, rounding::half_up),
            (std::vector<std::int32_t>{127, -128}));
  EXPECT_EQ(q1<std::int8_t>({127.5f, -128.5f}, {1.0f, 0}, i8, rounding::half_away_from_zero),
            (std::vector<std::int32_t>{127, -128}));
  const qrange u8 = quant::full_range(quant::dtype::uint8);
  EXPECT_EQ(q1<std::uint8_t>({255.5f, 254.5f, -0.5f, 0.5f}, {1.0f, 0}, u8),
            (std::vector<std::int32_t>{255, 254, 0, 0}));
  // With scale 2^-4 and zero point 100 (uint8): x = (155 + 0.5) / 16 -> 255.5 -> 255.
  EXPECT_EQ(q1<std::uint8_t>({155.5f / 16.0f, 154.5f / 16.0f}, {0.0625f, 100}, u8),
            (std::vector<std::int32_t>{255, 254}));
}

TEST(Quantize, EdgeInputs) {
  const qrange i8 = quant::full_range(quant::dtype::int8);
  const qrange u8 = quant::full_range(quant::dtype::uint8);
  // all zero -> zero point
  EXPECT_EQ(q1<std::uint8_t>(std::vector<float>(5, 0.0f), {0.1f, 3}, u8),
            std::vector<std::int32_t>(5, 3));
  // constant: 0.37f / 0.1f = 3.6999998... -> 4
  EXPECT_EQ(q1<std::int8_t>(std::vector<float>(4, 0.37f), {0.1f, -5}, i8),
            std::vector<std::int32_t>(4, -1));
  // single element: -1.2345 / 0.01 = -123.45 -> -123
  EXPECT_EQ(q1<std::int8_t>({-1.2345f}, {0.01f, 0}, i8), (std::vector<std::int32_t>{-123}));
  // tiny range: 1e-8-sized values with a 1e-10 scale
  EXPECT_EQ(q1<std::int8_t>({1e-8f, -3e-9f, 4e-11f, 1.6e-8f}, {1e-10f, 0}, i8),
            (std::vector<std::int32_t>{100, -30, 0, 127}));
  // huge values: 1e30 with scale 1e28 fits; with scale 1 it saturates
  EXPECT_EQ(q1<std::int8_t>({1e30f, -1e30f, 5e29f}, {1e28f, 0}, i8),
            (std::vector<std::int32_t>{100, -100, 50}));
  EXPECT_EQ(q1<std::int8_t>({1e30f, -1e30f, 3.4e38f}, {1.0f, 0}, i8),
            (std::vector<std::int32_t>{127, -128, 127}));
  EXPECT_EQ(q1<std::int32_t>({1e30f, -1e30f}, {1.0f, 0}, quant::full_range(quant::dtype::int32)),
            (std::vector<std::int32_t>{std::numeric_limits<std::int32_t>::max(),
                                       std::numeric_limits<std::int32_t>::min()}));
  // negative-only data on uint8 with zero point 0 clamps to 0; positive-only fits
  EXPECT_EQ(q1<std::uint8_t>({-0.5f, -3.0f, -0.01f}, {0.05f, 0}, u8),
            (std::vector<std::int32_t>{0, 0, 0}));
  EXPECT_EQ(q1<std::uint8_t>({0.5f, 3.0f, 0.01f}, {0.05f, 0}, u8),
            (std::vector<std::int32_t>{10, 60, 0}));
  // saturation on both sides, infinities, NaN -> zero point
  EXPECT_EQ(q1<std::int8_t>({200.0f, -200.0f, kInf, -kInf, kNaN}, {1.0f, 4}, i8),
            (std::vector<std::int32_t>{127, -128, 127, -128, 4}));
  // 16-bit types and a narrow range
  EXPECT_EQ(q1<std::int16_t>({1000.25f, -40000.0f, 40000.0f}, {0.5f, 0},
                             quant::full_range(quant::dtype::int16)),
            (std::vector<std::int32_t>{2000, -32768, 32767}));
  EXPECT_EQ(q1<std::uint16_t>({-1.0f, 30000.0f, 1e9f}, {1.0f, 32768},
                              quant::full_range(quant::dtype::uint16)),
            (std::vector<std::int32_t>{32767, 62768, 65535}));
  EXPECT_EQ(q1<std::int8_t>({-200.0f, 200.0f}, {1.0f, 0}, quant::narrow_range(quant::dtype::int8)),
            (std::vector<std::int32_t>{-127, 127}));
}

TEST(Dequantize, HandComputed) {
  const std::vector<std::uint8_t> q{0, 3, 128, 255};
  std::vector<float> x(q.size());
  quant::dequantize(cview1(q), view1(x), affine_params{0.5f, 128});
  EXPECT_EQ(x, (std::vector<float>{-64.0f, -62.5f, 0.0f, 63.5f}));
  const std::vector<std::int32_t> q32{std::numeric_limits<std::int32_t>::min(), 0};
  std::vector<float> x32(2);
  // The difference is taken in 64 bits: no wrap, unlike torch's qint32.
  quant::dequantize(cview1(q32), view1(x32), affine_params{0.25f, 7});
  EXPECT_EQ(x32[0], 0.25f * static_cast<float>(-2147483655.0));
  EXPECT_EQ(x32[1], -1.75f);
}

// ---------------------------------------------------------------------------
// Per channel and per group against a naive reference
// ---------------------------------------------------------------------------

template <std::size_t R>
std::array<index_t, R> unravel(index_t i, const extents<R>& e) {
  std::array<index_t, R> idx{};
  for (std::size_t r = R; r-- > 0;) {
    idx[r] = i % e.extent(r);
    i /= e.extent(r);
  }
  return idx;
}

std::vector<float> random_floats(std::size_t n, float lo, float hi, std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

per_channel_params random_channel_params(index_t channels, index_t axis, qrange r,
                                         std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::uniform_real_distribution<float> sd(0.01f, 0.2f);
  std::uniform_int_distribution<std::int32_t> zd(r.qmin, r.qmax);
  per_channel_params p{{}, {}, axis};
  for (index_t c = 0; c < channels; ++c) {
    p.scales.push_back(sd(rng));
    p.zero_points.push_back(zd(rng));
  }
  return p;
}

template <class T, std::size_t R>
void check_per_channel_against_reference(const extents<R>& e, index_t axis, std::uint64_t salt) {
  SCOPED_TRACE(qprune::test::seed_trace());
  SCOPED_TRACE("axis " + std::to_string(axis));
  const qrange r = quant::full_range(quant::dtype_of<T>);
  const auto n = static_cast<std::size_t>(e.size());
  const auto x = random_floats(n, -20.0f, 20.0f, salt);
  const auto p = random_channel_params(e.extent(static_cast<std::size_t>(axis)), axis, r, salt + 1);
  std::vector<T> q(n);
  quant::quantize(cview<float>(x, e), view(q, e), p, r);
  std::vector<float> dq(n);
  quant::dequantize(tensor_view<const T, R>(q.data(), e), view(dq, e), p);
  for (index_t i = 0; i < e.size(); ++i) {
    const auto c = static_cast<std::size_t>(unravel(i, e)[static_cast<std::size_t>(axis)]);
    const affine_params pc{p.scales[c], p.zero_points[c]};
    const auto k = static_cast<std::size_t>(i);
    ASSERT_EQ(static_cast<std::int32_t>(q[k]),
              quant::quantize_value(x[k], pc, r, rounding::half_to_even))
        << "element " << i;
    ASSERT_EQ(dq[k], pc.scale * static_cast<float>(static_cast<std::int32_t>(q[k]) - pc.zero_point))
        << "element " << i;
  }
}

TEST(QuantizePerChannel, AnyAxisMatchesNaiveReference) {
  check_per_channel_against_reference<std::int8_t>(extents<2>(5, 7), 0, 10);
  check_per_channel_against_reference<std::int8_t>(extents<2>(5, 7), 1, 20);
  check_per_channel_against_reference<std::uint8_t>(extents<4>(2, 3, 4, 5), 0, 30);
  check_per_channel_against_reference<std::uint8_t>(extents<4>(2, 3, 4, 5), 1, 40);
  check_per_channel_against_reference<std::int16_t>(extents<4>(2, 3, 4, 5), 2, 50);
  check_per_channel_against_reference<std::int8_t>(extents<4>(2, 3, 4, 5), 3, 60);
  check_per_channel_against_reference<std::int8_t>(extents<4>(3, 3, 1, 1), 1, 70);  // 1x1 conv
  check_per_channel_against_reference<std::uint16_t>(extents<1>(9), 0, 80);
  check_per_channel_against_reference<std::int8_t>(extents<3>(1, 1, 1), 2, 90);
  check_per_channel_against_reference<std::int8_t>(extents<2>(0, 4), 1, 100);  // empty
}

TEST(QuantizePerChannel, HandComputedAxis0And1) {
  const std::vector<float> x{1.0f, -1.0f, 2.5f,   // row 0
                             1.0f, -1.0f, 2.5f};  // row 1
  const extents<2> e(2, 3);
  std::vector<std::int8_t> q(6);
  quant::quantize(cview<float>(x, e), view(q, e), per_channel_params{{0.5f, 0.25f}, {0, 1}, 0},
                  quant::full_range(quant::dtype::int8));
  EXPECT_EQ(q, (std::vector<std::int8_t>{2, -2, 5, 5, -3, 11}));
  quant::quantize(cview<float>(x, e), view(q, e),
                  per_channel_params{{1.0f, 0.5f, 2.0f}, {0, 0, 3}, 1},
                  quant::full_range(quant::dtype::int8));
  // 2.5 / 2 = 1.25 -> 1, + 3 = 4
  EXPECT_EQ(q, (std::vector<std::int8_t>{1, -2, 4, 1, -2, 4}));
}

template <class T>
void check_per_group_against_reference(index_t rows, index_t cols, index_t axis, index_t gs,
                                       std::uint64_t salt) {
  SCOPED_TRACE(qprune::test::seed_trace());
  SCOPED_TRACE("[" + std::to_string(rows) + ", " + std::to_string(cols) + "] axis " +
               std::to_string(axis) + " group " + std::to_string(gs));
  const qrange r = quant::full_range(quant::dtype_of<T>);
  const extents<2> e(rows, cols);
  const auto n = static_cast<std::size_t>(rows * cols);
  const auto x = random_floats(n, -10.0f, 10.0f, salt);
  const index_t along = axis == 1 ? cols : rows;
  const index_t groups = (along + gs - 1) / gs;
  const index_t count = groups * (axis == 1 ? rows : cols);
  const auto pc = random_channel_params(count, 0, r, salt + 1);
  const per_group_params p{pc.scales, pc.zero_points, axis, gs};
  std::vector<T> q(n);
  quant::quantize(cview<float>(x, e), view(q, e), p, r);
  std::vector<float> dq(n);
  quant::dequantize(tensor_view<const T, 2>(q.data(), e), view(dq, e), p);
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      const auto k = static_cast<std::size_t>(axis == 1 ? i * groups + j / gs : (i / gs) * cols + j);
      const affine_params pk{p.scales[k], p.zero_points[k]};
      const auto idx = static_cast<std::size_t>(i * cols + j);
      ASSERT_EQ(static_cast<std::int32_t>(q[idx]),
                quant::quantize_value(x[idx], pk, r, rounding::half_to_even))
          << i << ", " << j;
      ASSERT_EQ(dq[idx], quant::dequantize_value(static_cast<std::int32_t>(q[idx]), pk));
    }
  }
}

TEST(QuantizePerGroup, MatchesNaiveReferenceIncludingPartialGroups) {
  check_per_group_against_reference<std::int8_t>(3, 64, 1, 16, 1);
  check_per_group_against_reference<std::int8_t>(3, 40, 1, 16, 2);   // 16, 16, 8
  check_per_group_against_reference<std::uint8_t>(2, 15, 1, 32, 3);  // one partial group
  check_per_group_against_reference<std::int8_t>(4, 257, 1, 256, 4);
  check_per_group_against_reference<std::int8_t>(40, 3, 0, 16, 5);
  check_per_group_against_reference<std::uint16_t>(17, 5, 0, 16, 6);
  check_per_group_against_reference<std::int8_t>(0, 5, 1, 16, 7);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

template <class T>
void check_round_trip_properties(std::uint64_t salt) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(salt);
  const qrange r = quant::full_range(quant::dtype_of<T>);
  std::uniform_real_distribution<float> log_scale(-12.0f, 4.0f);
  std::uniform_int_distribution<std::int32_t> zd(r.qmin, r.qmax);
  for (int trial = 0; trial < 50; ++trial) {
    const affine_params p{std::exp2(log_scale(rng)), zd(rng)};
    SCOPED_TRACE("trial " + std::to_string(trial) + " scale " + std::to_string(p.scale) + " zp " +
                 std::to_string(p.zero_point));
    const float lo = p.scale * static_cast<float>(r.qmin - p.zero_point);
    const float hi = p.scale * static_cast<float>(r.qmax - p.zero_point);
    std::uniform_real_distribution<float> in_range(lo, hi);
    std::vector<float> x(257);
    for (auto& v : x) v = in_range(rng);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = lo;
    x[3] = hi;
    std::vector<T> q(x.size());
    quant::quantize(cview1(x), view1(q), p, r);
    std::vector<float> dq(x.size());
    quant::dequantize(cview1(q), view1(dq), p);
    for (std::size_t i = 0; i < x.size(); ++i) {
      // Inside the range: half a step, plus one float rounding of x / scale and of the product.
      const double bound = 0.5 * p.scale + (std::fabs(x[i]) + std::fabs(dq[i])) * 0x1p-24;
      ASSERT_LE(std::fabs(static_cast<double>(x[i]) - dq[i]), bound) << "x=" << x[i];
    }
    // Zero is exact: 0 and -0 map to the zero point, which dequantizes to +0.
    EXPECT_EQ(static_cast<std::int32_t>(q[0]), p.zero_point);
    EXPECT_EQ(static_cast<std::int32_t>(q[1]), p.zero_point);
    EXPECT_EQ(std::bit_cast<std::uint32_t>(dq[0]), 0u);
    // Idempotent on the grid: dequantized values re-quantize to the same codes.
    std::vector<T> q2(x.size());
    quant::quantize(cview1(dq), view1(q2), p, r);
    ASSERT_EQ(q2, q);
  }
}

TEST(QuantizeProperties, ErrorBoundZeroAndIdempotence) {
  check_round_trip_properties<std::int8_t>(201);
  check_round_trip_properties<std::uint8_t>(202);
  check_round_trip_properties<std::int16_t>(203);
  check_round_trip_properties<std::uint16_t>(204);
}

TEST(QuantizeProperties, SaturatedCodesAreIdempotentToo) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto x = random_floats(500, -1000.0f, 1000.0f, 205);
  const qrange r = quant::full_range(quant::dtype::int8);
  const affine_params p{0.5f, 17};
  std::vector<std::int8_t> q(x.size()), q2(x.size());
  std::vector<float> dq(x.size());
  quant::quantize(cview1(x), view1(q), p, r);
  quant::dequantize(cview1(q), view1(dq), p);
  quant::quantize(cview1(dq), view1(q2), p, r);
  EXPECT_EQ(q2, q);
}

TEST(QuantizeProperties, PrunedZerosStayExactlyZero) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(206);
  const extents<2> e(12, 48);
  auto x = random_floats(static_cast<std::size_t>(e.size()), -3.0f, 3.0f, 207);
  std::bernoulli_distribution pruned(0.5);
  for (auto& v : x) {
    if (pruned(rng)) v = 0.0f;
  }
  const qrange u8 = quant::full_range(quant::dtype::uint8);
  const auto pc = random_channel_params(12, 0, u8, 208);
  const auto pg = random_channel_params(12 * 3, 0, u8, 209);
  const per_group_params pgp{pg.scales, pg.zero_points, 1, 16};
  std::vector<std::uint8_t> q(x.size());
  std::vector<float> dq_c(x.size()), dq_g(x.size()), dq_t(x.size());
  quant::quantize(cview<float>(x, e), view(q, e), pc, u8);
  quant::dequantize(tensor_view<const std::uint8_t, 2>(q.data(), e), view(dq_c, e), pc);
  quant::quantize(cview<float>(x, e), view(q, e), pgp, u8);
  quant::dequantize(tensor_view<const std::uint8_t, 2>(q.data(), e), view(dq_g, e), pgp);
  quant::quantize(cview<float>(x, e), view(q, e), affine_params{0.03f, 131}, u8);
  quant::dequantize(tensor_view<const std::uint8_t, 2>(q.data(), e), view(dq_t, e),
                    affine_params{0.03f, 131});
  int zeros = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i] != 0.0f) continue;
    ++zeros;
    EXPECT_EQ(dq_c[i], 0.0f) << i;
    EXPECT_EQ(dq_g[i], 0.0f) << i;
    EXPECT_EQ(dq_t[i], 0.0f) << i;
  }
  EXPECT_GT(zeros, 100);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

TEST(QuantizeErrors, BadInputThrowsTheRightError) {
  std::vector<float> x(6, 1.0f);
  std::vector<std::int8_t> q(6);
  std::vector<std::int8_t> q5(5);
  const qrange i8 = quant::full_range(quant::dtype::int8);
  // shape mismatch
  EXPECT_THROW(quant::quantize(cview1(x), view1(q5), affine_params{1.0f, 0}, i8), shape_error);
  std::vector<float> dq5(5);
  EXPECT_THROW(quant::dequantize(cview1(q), view1(dq5), affine_params{1.0f, 0}), shape_error);
  // bad scale
  for (float s : {0.0f, -1.0f, kNaN, kInf, -0.0f}) {
    EXPECT_THROW(quant::quantize(cview1(x), view1(q), affine_params{s, 0}, i8), config_error) << s;
    std::vector<float> dq(6);
    EXPECT_THROW(quant::dequantize(cview1(q), view1(dq), affine_params{s, 0}), config_error) << s;
  }
  // bad range: empty, reversed, or not fitting the type
  EXPECT_THROW(quant::quantize(cview1(x), view1(q), affine_params{1.0f, 0}, qrange{0, 0}),
               config_error);
  EXPECT_THROW(quant::quantize(cview1(x), view1(q), affine_params{1.0f, 0}, qrange{5, -5}),
               config_error);
  EXPECT_THROW(quant::quantize(cview1(x), view1(q), affine_params{1.0f, 0}, qrange{0, 255}),
               config_error);
  std::vector<std::uint8_t> qu(6);
  EXPECT_THROW(quant::quantize(cview1(x), view1(qu), affine_params{1.0f, 0}, qrange{-1, 255}),
               config_error);
  // zero point outside the range
  EXPECT_THROW(quant::quantize(cview1(x), view1(q), affine_params{1.0f, 128}, i8), config_error);
  EXPECT_THROW(quant::quantize(cview1(x), view1(q), affine_params{1.0f, -128},
                               quant::narrow_range(quant::dtype::int8)),
               config_error);
  std::vector<float> dq(6);
  EXPECT_THROW(quant::dequantize(cview1(q), view1(dq), affine_params{1.0f, 200}), config_error);

  // per channel: wrong channel count, zero point count, axis, per-channel scale
  const extents<2> e(2, 3);
  EXPECT_THROW(quant::quantize(cview<float>(x, e), view(q, e),
                               per_channel_params{{1.0f, 1.0f, 1.0f}, {0, 0, 0}, 0}, i8),
               shape_error);
  EXPECT_THROW(quant::quantize(cview<float>(x, e), view(q, e),
                               per_channel_params{{1.0f, 1.0f}, {0}, 0}, i8),
               shape_error);
  EXPECT_THROW(quant::quantize(cview<float>(x, e), view(q, e),
                               per_channel_params{{1.0f, 1.0f}, {0, 0}, 2}, i8),
               config_error);
  EXPECT_THROW(quant::quantize(cview<float>(x, e), view(q, e),
                               per_channel_params{{1.0f, 1.0f}, {0, 0}, -1}, i8),
               config_error);
  EXPECT_THROW(quant::quantize(cview<float>(x, e), view(q, e),
                               per_channel_params{{1.0f, 1.0f, kNaN}, {0, 0, 0}, 1}, i8),
               config_error);
  EXPECT_THROW(quant::quantize(cview<float>(x, e), view(q, e),
                               per_channel_params{{1.0f, 1.0f, 1.0f}, {0, 0, 300}, 1}, i8),
               config_error);
  const extents<2> e32(2, 3);
  EXPECT_THROW(quant::dequantize(tensor_view<const std::int8_t, 2>(q.data(), e32), view(dq, e32),
                                 per_channel_params{{1.0f}, {0}, 0}),
               shape_error);
  try {
    (void)quant::quantize(cview<float>(x, e), view(q, e),
                          per_channel_params{{1.0f, 0.0f, 1.0f}, {0, 0, 0}, 1}, i8);
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& err) {
    EXPECT_NE(std::string(err.what()).find("channel 1"), std::string::npos) << err.what();
  }

  // per group: bad group size, axis, parameter count
  std::vector<float> w(2 * 32, 0.5f);
  std::vector<std::int8_t> wq(w.size());
  const extents<2> we(2, 32);
  for (index_t g : {0, 8, 24, 512, -16, 17}) {
    EXPECT_THROW(quant::quantize(cview<float>(w, we), view(wq, we),
                                 per_group_params{{1.0f, 1.0f}, {0, 0}, 1, g}, i8),
                 config_error)
        << g;
  }
  EXPECT_THROW(quant::quantize(cview<float>(w, we), view(wq, we),
                               per_group_params{{1.0f, 1.0f}, {0, 0}, 2, 32}, i8),
               config_error);
  EXPECT_THROW(quant::quantize(cview<float>(w, we), view(wq, we),
                               per_group_params{{1.0f, 1.0f, 1.0f}, {0, 0, 0}, 1, 32}, i8),
               shape_error);
  EXPECT_THROW(quant::quantize(cview<float>(w, we), view(wq, we),
                               per_group_params{{1.0f, 1.0f}, {0, 0}, 1, 16}, i8),
               shape_error);  // needs 2 * 2 groups
  EXPECT_THROW(quant::quantize(cview<float>(w, we), view(wq, we),
                               per_group_params{{1.0f, -1.0f}, {0, 0}, 1, 32}, i8),
               config_error);
  try {
    quant::validate_group_size(24);
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& err) {
    EXPECT_NE(std::string(err.what()).find("24"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------
// ONNX Runtime
// ---------------------------------------------------------------------------

TEST(OnnxRuntimeCompat, QuantizeLinearSaturatesToTheTypeAndRoundsHalfToEven) {
  const std::vector<float> x{0.0f, 0.25f, 0.75f, -0.25f, -0.75f, 1000.0f, -1000.0f, kInf, -kInf,
                             kNaN, 63.75f};
  std::vector<std::uint8_t> qu(x.size());
  quant::onnxruntime::quantize_linear(cview1(x), view1(qu), affine_params{0.5f, 128});
  // 0.5 -> 0, 1.5 -> 2, -0.5 -> -0, -1.5 -> -2 (even); NaN -> qmin as MLAS's SIMD path.
  EXPECT_EQ(qu, (std::vector<std::uint8_t>{128, 128, 130, 128, 126, 255, 0, 255, 0, 0, 255}));
  std::vector<std::int8_t> qs(x.size());
  quant::onnxruntime::quantize_linear(cview1(x), view1(qs), affine_params{0.5f, -1});
  EXPECT_EQ(qs, (std::vector<std::int8_t>{-1, -1, 1, -1, -3, 127, -128, 127, -128, -128, 127}));
  std::vector<std::int16_t> q16(x.size());
  quant::onnxruntime::quantize_linear(cview1(x), view1(q16), affine_params{0.03125f, 0});
  EXPECT_EQ(q16, (std::vector<std::int16_t>{0, 8, 24, -8, -24, 32000, -32000, 32767, -32768,
                                            -32768, 2040}));
  std::vector<std::uint16_t> qu16(x.size());
  quant::onnxruntime::quantize_linear(cview1(x), view1(qu16), affine_params{0.5f, 32768});
  EXPECT_EQ(qu16, (std::vector<std::uint16_t>{32768, 32768, 32770, 32768, 32766, 34768, 30768,
                                              65535, 0, 0, 32896}));
}

TEST(OnnxRuntimeCompat, AgreesWithQpruneQuantizerOnFiniteData) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const extents<2> e(6, 40);
  const auto x = random_floats(static_cast<std::size_t>(e.size()), -300.0f, 300.0f, 300);
  const qrange i8 = quant::full_range(quant::dtype::int8);
  const auto pc = random_channel_params(6, 0, i8, 301);
  std::vector<std::int8_t> a(x.size()), b(x.size());
  quant::onnxruntime::quantize_linear(cview<float>(x, e), view(a, e), pc);
  quant::quantize(cview<float>(x, e), view(b, e), pc, i8, rounding::half_to_even);
  EXPECT_EQ(a, b);
  const auto pg = random_channel_params(6 * 3, 0, i8, 302);
  const per_group_params pgp{pg.scales, pg.zero_points, 1, 16};
  quant::onnxruntime::quantize_linear(cview<float>(x, e), view(a, e), pgp);
  quant::quantize(cview<float>(x, e), view(b, e), pgp, i8, rounding::half_to_even);
  EXPECT_EQ(a, b);
  std::vector<float> da(x.size()), db(x.size());
  quant::onnxruntime::dequantize_linear(tensor_view<const std::int8_t, 2>(a.data(), e),
                                        view(da, e), pgp);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto k = static_cast<std::size_t>((i / 40) * 3 + (i % 40) / 16);
    EXPECT_EQ(da[i], pg.scales[k] * static_cast<float>(a[i] - pg.zero_points[k])) << i;
  }
}

// ---------------------------------------------------------------------------
// TFLite
// ---------------------------------------------------------------------------

TEST(TfliteCompat, SymmetricPerChannelWeights) {
  // [3, 4]: channel 0 max |w| = 2.54 (scale 0.02), channel 1 all zero, channel 2
  // has exact ties at +-0.5 step (scale 1: 127 / 127).
  const std::vector<float> w{2.54f, -1.27f, 0.01f, 0.0f,  //
                             0.0f,  0.0f,   0.0f,  0.0f,  //
                             127.0f, 0.5f, -0.5f, -2.5f};
  const extents<2> e(3, 4);
  std::vector<std::int8_t> q(w.size());
  const auto p = quant::tflite::quantize_weights_per_channel(cview<float>(w, e), view(q, e), 0);
  EXPECT_EQ(p.axis, 0);
  ASSERT_EQ(p.scales.size(), 3u);
  EXPECT_EQ(p.scales[0], 2.54f / 127.0f);
  EXPECT_EQ(p.scales[1], 1.0f);  // all-zero channel
  EXPECT_EQ(p.scales[2], 1.0f);
  EXPECT_EQ(p.zero_points, (std::vector<std::int32_t>{0, 0, 0}));
  // channel 0: 2.54 * (127 / 2.54) = 127, -1.27 -> -63.5 (ties away) -> -64, 0.01 -> 0.5 -> 1
  const float inv0 = 127.0f / 2.54f;
  EXPECT_EQ(std::round(-1.27f * inv0), -64.0f);
  EXPECT_EQ(q, (std::vector<std::int8_t>{127, static_cast<std::int8_t>(std::round(-1.27f * inv0)),
                                         static_cast<std::int8_t>(std::round(0.01f * inv0)), 0,
                                         0, 0, 0, 0,  //
                                         127, 1, -1, -3}));
}

TEST(TfliteCompat, PerChannelAlongTheLastAxis) {
  // Depthwise [1, 2, 2, 3] with the channel on axis 3.
  const std::vector<float> w{1.0f,  -4.0f, 0.0f,  0.5f,  2.0f, 0.0f,
                             -0.25f, 1.0f, 0.0f, 0.125f, 3.0f, 0.0f};
  const extents<4> e(1, 2, 2, 3);
  std::vector<std::int8_t> q(w.size());
  const auto p = quant::tflite::quantize_weights_per_channel(cview<float>(w, e), view(q, e), 3);
  EXPECT_EQ(p.scales, (std::vector<float>{1.0f / 127.0f, 4.0f / 127.0f, 1.0f}));
  std::vector<std::int8_t> expected;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::size_t c = i % 3;
    const float inv = c == 0 ? 127.0f / 1.0f : (c == 1 ? 127.0f / 4.0f : 0.0f);
    expected.push_back(static_cast<std::int8_t>(std::round(w[i] * inv)));
  }
  EXPECT_EQ(q, expected);
  // 0.5 * 127 = 63.5 -> 64 (away from zero), -0.25 * 127 = -31.75 -> -32
  EXPECT_EQ(q[3], 64);
  EXPECT_EQ(q[6], -32);
}

TEST(TfliteCompat, BiasIsInt32WithProductScale) {
  const std::vector<float> bias{1.0f, -0.375f, 1e12f, -1e12f, 0.0f};
  const std::vector<float> ws{0.5f, 0.25f, 0.5f, 0.5f, 0.125f};
  std::vector<std::int32_t> q(bias.size());
  const auto p = quant::tflite::quantize_bias(bias, 0.25f, ws, q);
  EXPECT_EQ(p.scales, (std::vector<float>{0.125f, 0.0625f, 0.125f, 0.125f, 0.03125f}));
  EXPECT_EQ(p.zero_points, std::vector<std::int32_t>(5, 0));
  // -0.375 / 0.0625 = -6; 1e12 / 0.125 saturates to +-INT32_MAX (symmetric clamp).
  EXPECT_EQ(q, (std::vector<std::int32_t>{8, -6, 2147483647, -2147483647, 0}));
  // Ties round away from zero: 0.3125 / 0.125 = 2.5 -> 3, -2.5 -> -3.
  const std::vector<float> ties{0.3125f, -0.3125f};
  std::vector<std::int32_t> qt(2);
  (void)quant::tflite::quantize_bias(ties, 0.25f, std::vector<float>{0.5f}, qt);
  EXPECT_EQ(qt, (std::vector<std::int32_t>{3, -3}));
}

TEST(TfliteCompat, RejectsBadInput) {
  std::vector<float> w{1.0f, kNaN, 0.0f, 1.0f};
  std::vector<std::int8_t> q(4);
  const extents<2> e(2, 2);
  EXPECT_THROW((void)quant::tflite::quantize_weights_per_channel(cview<float>(w, e), view(q, e), 0),
               config_error);
  w[1] = 0.0f;
  EXPECT_THROW((void)quant::tflite::quantize_weights_per_channel(cview<float>(w, e), view(q, e), 2),
               config_error);
  std::vector<std::int8_t> q3(3);
  EXPECT_THROW((void)quant::tflite::quantize_weights_per_channel(
                   cview<float>(w, e), tensor_view<std::int8_t, 2>(q3.data(), 1, 3), 0),
               shape_error);
  std::vector<std::int32_t> out(2);
  const std::vector<float> b{1.0f, 2.0f};
  EXPECT_THROW((void)quant::tflite::quantize_bias(b, 0.5f, std::vector<float>{1.0f, 1.0f, 1.0f}, out),
               shape_error);
  EXPECT_THROW((void)quant::tflite::quantize_bias(b, 0.0f, std::vector<float>{1.0f}, out),
               config_error);
  EXPECT_THROW((void)quant::tflite::quantize_bias(b, 0.5f, std::vector<float>{1.0f, -1.0f}, out),
               config_error);
  std::vector<std::int32_t> out1(1);
  EXPECT_THROW((void)quant::tflite::quantize_bias(b, 0.5f, std::vector<float>{1.0f}, out1),
               shape_error);
}

}  // namespace

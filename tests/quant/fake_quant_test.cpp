// Tests for quant/fake_quant.hpp: PyTorch 1.13 forward and backward vectors
// (tests/data/quant/fake_quant.json) bit for bit, TensorFlow fake-quant against
// hand-computed cases (TensorFlow is not installable here), seeded properties
// (fake-quant == quantize -> dequantize, grid, idempotence, gradient masks at
// the boundaries) and error handling.
#include "qprune/quant/fake_quant.hpp"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "support/data.hpp"
#include "support/json.hpp"
#include "support/random.hpp"

namespace {

using qprune::test::load_json;
using qprune::test::floats;
using qprune::test::bits;

using nlohmann::json;
using qprune::config_error;
using qprune::extents;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor_view;
namespace quant = qprune::quant;
namespace pt = qprune::quant::pytorch;
namespace tf = qprune::quant::tensorflow;
using quant::affine_params;
using quant::learnable_params;
using quant::learnable_per_channel_params;
using quant::per_channel_params;
using quant::qrange;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }

const json& torch_vectors() {
  static const json j = load_json("quant/fake_quant.json");
  return j;
}


std::vector<std::uint32_t> uints(const json& a) {
  std::vector<std::uint32_t> v;
  for (const auto& b : a) v.push_back(b.get<std::uint32_t>());
  return v;
}

template <std::size_t R>
extents<R> extents_of(const json& shape) {
  std::array<index_t, R> e{};
  for (std::size_t i = 0; i < R; ++i) e[i] = shape.at(i).get<index_t>();
  return extents<R>(e);
}

template <std::size_t R>
tensor_view<const float, R> cview(const std::vector<float>& v, const extents<R>& e) {
  return tensor_view<const float, R>(v.data(), e);
}

template <std::size_t R>
tensor_view<float, R> view(std::vector<float>& v, const extents<R>& e) {
  return tensor_view<float, R>(v.data(), e);
}

tensor_view<const float, 1> cview1(const std::vector<float>& v) {
  return tensor_view<const float, 1>(v.data(), static_cast<index_t>(v.size()));
}
tensor_view<float, 1> view1(std::vector<float>& v) {
  return tensor_view<float, 1>(v.data(), static_cast<index_t>(v.size()));
}

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
  return buf;
}

/// Bit-for-bit comparison of a float vector with reference bit patterns.
::testing::AssertionResult same_bits(const std::vector<float>& got,
                                     const std::vector<std::uint32_t>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  }
  int bad = 0;
  auto failure = ::testing::AssertionFailure();
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (bits(got[i]) != want[i]) {
      if (++bad <= 5) {
        failure << "[" << i << "] got " << got[i] << " (" << hex(bits(got[i])) << ") want "
                << from_bits(want[i]) << " (" << hex(want[i]) << ") ";
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return failure << "-- " << bad << " of " << got.size() << " differ";
}

/// torch sums the per-element scale / zero-point gradient terms in float32 with
/// its own (vectorised, pairwise) order; qprune accumulates in double. The
/// results therefore agree to a few float ulps, not bit for bit: compare with a
/// 1e-5 relative tolerance (absolute 1e-6 near zero, where the sum cancels).
::testing::AssertionResult close_sum(float got, float want) {
  const float tol = std::max(1e-5f * std::fabs(want), 1e-6f);
  if (std::fabs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << " want " << want << " (|diff| "
                                       << std::fabs(got - want) << " > " << tol << ")";
}

qrange range_of(const json& c) {
  return {c.at("quant_min").get<std::int32_t>(), c.at("quant_max").get<std::int32_t>()};
}

// ---------------------------------------------------------------------------
// PyTorch 1.13 vectors
// ---------------------------------------------------------------------------

TEST(FakeQuantTorch, PerTensorMatchesTorchBitForBit) {
  const json& cases = torch_vectors().at("per_tensor");
  ASSERT_GE(cases.size(), 50u);
  for (const json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::vector<float> x = floats(c.at("x_bits"));
    const std::vector<float> g = floats(c.at("g_bits"));
    const affine_params p{from_bits(c.at("scale_bits").get<std::uint32_t>()),
                          c.at("zero_point").get<std::int32_t>()};
    const qrange r = range_of(c);
    std::vector<float> y(x.size()), gx(x.size());
    pt::fake_quantize_per_tensor_affine<1>(cview1(x), view1(y), p, r);
    EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
    pt::fake_quantize_per_tensor_affine_backward<1>(cview1(x), cview1(g), view1(gx), p, r);
    EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));
    // The scalar functions are the same kernel.
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(bits(pt::fake_quantize(x[i], p, r)), bits(y[i])) << i;
      EXPECT_EQ(pt::fake_quantize_mask(x[i], p, r) ? bits(g[i]) : bits(g[i] * 0.0f), bits(gx[i]))
          << i;
    }
  }
}

template <std::size_t R>
void check_torch_per_channel(const json& c) {
  const extents<R> e = extents_of<R>(c.at("shape"));
  const std::vector<float> x = floats(c.at("x_bits"));
  const std::vector<float> g = floats(c.at("g_bits"));
  per_channel_params p;
  p.scales = floats(c.at("scales_bits"));
  p.zero_points = c.at("zero_points").get<std::vector<std::int32_t>>();
  p.axis = c.at("axis").get<index_t>();
  const qrange r = range_of(c);
  std::vector<float> y(x.size()), gx(x.size());
  pt::fake_quantize_per_channel_affine<R>(cview(x, e), view(y, e), p, r);
  EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
  pt::fake_quantize_per_channel_affine_backward<R>(cview(x, e), cview(g, e), view(gx, e), p, r);
  EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));
}

TEST(FakeQuantTorch, PerChannelMatchesTorchBitForBit) {
  const json& cases = torch_vectors().at("per_channel");
  ASSERT_GE(cases.size(), 20u);
  for (const json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    switch (c.at("shape").size()) {
      case 2:
        check_torch_per_channel<2>(c);
        break;
      case 4:
        check_torch_per_channel<4>(c);
        break;
      default:
        FAIL() << "unexpected rank " << c.at("shape").size();
    }
  }
}

TEST(FakeQuantTorch, LearnablePerTensorMatchesTorch) {
  const json& cases = torch_vectors().at("learnable_per_tensor");
  ASSERT_GE(cases.size(), 30u);
  for (const json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::vector<float> x = floats(c.at("x_bits"));
    const std::vector<float> g = floats(c.at("g_bits"));
    const learnable_params p{floats(c.at("scale_bits")).at(0),
                             floats(c.at("zero_point_bits")).at(0)};
    const qrange r = range_of(c);
    const double gf = std::bit_cast<double>(c.at("grad_factor_bits64").get<std::uint64_t>());
    if (c.at("grad_factor_kind") == "lsq") {
      // _LearnableFakeQuantize's use_grad_scaling factor, exactly as the generator computed it.
      EXPECT_EQ(
          std::bit_cast<std::uint64_t>(pt::lsq_grad_factor(static_cast<index_t>(x.size()), r.qmax)),
          c.at("grad_factor_bits64").get<std::uint64_t>());
    } else {
      EXPECT_EQ(gf, 1.0);
    }
    std::vector<float> y(x.size()), gx(x.size());
    pt::fake_quantize_learnable_per_tensor_affine<1>(cview1(x), view1(y), p, r);
    EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
    const quant::learnable_grads d = pt::fake_quantize_learnable_per_tensor_affine_backward<1>(
        cview1(x), cview1(g), view1(gx), p, r, gf);
    EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));
    EXPECT_TRUE(close_sum(d.scale, floats(c.at("grad_scale_bits")).at(0))) << "d/dscale";
    EXPECT_TRUE(close_sum(d.zero_point, floats(c.at("grad_zero_point_bits")).at(0)))
        << "d/dzero_point";
  }
}

template <std::size_t R>
void check_torch_learnable_per_channel(const json& c) {
  const extents<R> e = extents_of<R>(c.at("shape"));
  const std::vector<float> x = floats(c.at("x_bits"));
  const std::vector<float> g = floats(c.at("g_bits"));
  learnable_per_channel_params p;
  p.scales = floats(c.at("scale_bits"));
  p.zero_points = floats(c.at("zero_point_bits"));
  p.axis = c.at("axis").get<index_t>();
  const qrange r = range_of(c);
  const double gf = std::bit_cast<double>(c.at("grad_factor_bits64").get<std::uint64_t>());
  std::vector<float> y(x.size()), gx(x.size());
  pt::fake_quantize_learnable_per_channel_affine<R>(cview(x, e), view(y, e), p, r);
  EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
  std::vector<float> ds(p.scales.size()), dz(p.scales.size());
  pt::fake_quantize_learnable_per_channel_affine_backward<R>(cview(x, e), cview(g, e), view(gx, e),
                                                             p, r, gf, ds, dz);
  EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));
  const std::vector<float> want_ds = floats(c.at("grad_scale_bits"));
  const std::vector<float> want_dz = floats(c.at("grad_zero_point_bits"));
  for (std::size_t k = 0; k < ds.size(); ++k) {
    EXPECT_TRUE(close_sum(ds[k], want_ds.at(k))) << "d/dscale[" << k << "]";
    EXPECT_TRUE(close_sum(dz[k], want_dz.at(k))) << "d/dzero_point[" << k << "]";
  }
}

TEST(FakeQuantTorch, LearnablePerChannelMatchesTorch) {
  const json& cases = torch_vectors().at("learnable_per_channel");
  ASSERT_GE(cases.size(), 18u);
  for (const json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    switch (c.at("shape").size()) {
      case 2:
        check_torch_learnable_per_channel<2>(c);
        break;
      case 4:
        check_torch_learnable_per_channel<4>(c);
        break;
      default:
        FAIL() << "unexpected rank " << c.at("shape").size();
    }
  }
}

}  // namespace

namespace {

// tests/data/quant/fake_quant_extra.json (generator: fake_quant_extra.py, torch 1.13).
const json& extra_vectors() {
  static const json j = [] {
    std::ifstream f(qprune::test::data_path("quant/fake_quant_extra.json"));
    if (!f) throw std::runtime_error("cannot open quant/fake_quant_extra.json");
    return json::parse(f);
  }();
  return j;
}

// torch multiplies by the float32 reciprocal of the scale; every input here
// rounds to a different code with x / scale.
TEST(FakeQuantTorch, MultipliesByTheReciprocalNotDividing) {
  const json& cases = extra_vectors().at("recip_vs_div");
  ASSERT_EQ(cases.size(), 4u);
  for (const json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::vector<float> x = floats(c.at("x_bits"));
    const std::vector<float> g = floats(c.at("g_bits"));
    const affine_params p{from_bits(c.at("scale_bits").get<std::uint32_t>()),
                          c.at("zero_point").get<std::int32_t>()};
    const qrange r = range_of(c);
    for (float v : x) {
      ASSERT_NE(std::nearbyint(v * (1.0f / p.scale)), std::nearbyint(v / p.scale)) << v;
    }
    std::vector<float> y(x.size()), gx(x.size());
    pt::fake_quantize_per_tensor_affine<1>(cview1(x), view1(y), p, r);
    EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
    pt::fake_quantize_per_tensor_affine_backward<1>(cview1(x), cview1(g), view1(gx), p, r);
    EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));

    const extents<2> e(static_cast<index_t>(x.size()), 1);
    const per_channel_params pc{std::vector<float>(x.size(), p.scale),
                                std::vector<std::int32_t>(x.size(), p.zero_point), 0};
    pt::fake_quantize_per_channel_affine<2>(cview(x, e), view(y, e), pc, r);
    EXPECT_TRUE(same_bits(y, uints(c.at("per_channel_y_bits"))));
    pt::fake_quantize_per_channel_affine_backward<2>(cview(x, e), cview(g, e), view(gx, e), pc, r);
    EXPECT_TRUE(same_bits(gx, uints(c.at("per_channel_grad_x_bits"))));
  }
}

// One element per call: torch's "sums" are single per-element terms, so the
// scale and zero-point gradients are compared bit for bit here.
TEST(FakeQuantTorch, LearnablePerTensorTermsBitForBit) {
  const json& groups = extra_vectors().at("lsq_per_tensor");
  ASSERT_GE(groups.size(), 30u);
  for (const json& c : groups) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::vector<float> x = floats(c.at("x_bits"));
    const std::vector<float> g = floats(c.at("g_bits"));
    const learnable_params p{from_bits(c.at("scale_bits").get<std::uint32_t>()),
                             from_bits(c.at("zero_point_bits").get<std::uint32_t>())};
    const qrange r = range_of(c);
    const double gf = std::bit_cast<double>(c.at("grad_factor_bits64").get<std::uint64_t>());
    std::vector<float> y(x.size()), gx(x.size()), ds(x.size()), dz(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      std::vector<float> xi{x[i]}, gi{g[i]}, yi(1), gxi(1);
      pt::fake_quantize_learnable_per_tensor_affine<1>(cview1(xi), view1(yi), p, r);
      const quant::learnable_grads d = pt::fake_quantize_learnable_per_tensor_affine_backward<1>(
          cview1(xi), cview1(gi), view1(gxi), p, r, gf);
      y[i] = yi[0];
      gx[i] = gxi[0];
      ds[i] = d.scale;
      dz[i] = d.zero_point;
    }
    EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
    EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));
    EXPECT_TRUE(same_bits(ds, uints(c.at("grad_scale_bits")))) << "d/dscale";
    EXPECT_TRUE(same_bits(dz, uints(c.at("grad_zero_point_bits")))) << "d/dzero_point";
  }
}

TEST(FakeQuantTorch, LearnablePerChannelTermsBitForBit) {
  const json& calls = extra_vectors().at("lsq_per_channel");
  ASSERT_GE(calls.size(), 6u);
  for (const json& c : calls) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const extents<2> e = extents_of<2>(c.at("shape"));
    const std::vector<float> x = floats(c.at("x_bits"));
    const std::vector<float> g = floats(c.at("g_bits"));
    learnable_per_channel_params p;
    p.scales = floats(c.at("scale_bits"));
    p.zero_points = floats(c.at("zero_point_bits"));
    p.axis = 0;
    const qrange r = range_of(c);
    const double gf = std::bit_cast<double>(c.at("grad_factor_bits64").get<std::uint64_t>());
    std::vector<float> y(x.size()), gx(x.size()), ds(x.size()), dz(x.size());
    pt::fake_quantize_learnable_per_channel_affine<2>(cview(x, e), view(y, e), p, r);
    pt::fake_quantize_learnable_per_channel_affine_backward<2>(cview(x, e), cview(g, e),
                                                               view(gx, e), p, r, gf, ds, dz);
    EXPECT_TRUE(same_bits(y, uints(c.at("y_bits"))));
    EXPECT_TRUE(same_bits(gx, uints(c.at("grad_x_bits"))));
    EXPECT_TRUE(same_bits(ds, uints(c.at("grad_scale_bits")))) << "d/dscale";
    EXPECT_TRUE(same_bits(dz, uints(c.at("grad_zero_point_bits")))) << "d/dzero_point";
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// PyTorch: hand-computed cases
// ---------------------------------------------------------------------------
namespace {

// s = 0.25, zp = 0, [-128, 127]: the STE mask is decided on the *rounded* code,
// ties to even, so it reaches half a step past the clamp boundaries, asymmetrically.
TEST(FakeQuantTorch, MaskIsDecidedOnTheRoundedCode) {
  const affine_params p{0.25f, 0};
  const qrange r{-128, 127};
  // x       x * 4    nearbyint  in range   y = clamp(q) * 0.25
  // 31.75   127      127        yes        31.75
  // 31.875  127.5    128 (even) no         31.75
  // 31.9    127.6    128        no         31.75
  // -32     -128     -128       yes        -32
  // -32.125 -128.5   -128 (even) yes       -32
  // -32.25  -129     -129       no         -32
  // 0.125   0.5      0 (even)   yes        0
  // 0.375   1.5      2 (even)   yes        0.5
  const std::vector<float> x{31.75f, 31.875f, 31.9f, -32.0f, -32.125f, -32.25f, 0.125f, 0.375f};
  const std::vector<float> want_y{31.75f, 31.75f, 31.75f, -32.0f, -32.0f, -32.0f, 0.0f, 0.5f};
  const std::vector<bool> want_mask{true, false, false, true, true, false, true, true};
  const std::vector<float> g(x.size(), -3.0f);
  std::vector<float> y(x.size()), gx(x.size());
  pt::fake_quantize_per_tensor_affine<1>(cview1(x), view1(y), p, r);
  pt::fake_quantize_per_tensor_affine_backward<1>(cview1(x), cview1(g), view1(gx), p, r);
  for (std::size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(x[i]);
    EXPECT_EQ(bits(y[i]), bits(want_y[i]));
    EXPECT_EQ(pt::fake_quantize_mask(x[i], p, r), want_mask[i]);
    // grad = g * float(mask): -3 or -0.0 (torch multiplies, so the sign survives).
    EXPECT_EQ(bits(gx[i]), bits(want_mask[i] ? -3.0f : -0.0f));
  }
}

// float(zp) + nearbyint(x * inv) is converted to int64 as x86 does: NaN, +-inf
// and |.| >= 2^63 give INT64_MIN, so y = (qmin - zp) * s and the mask is 0.
TEST(FakeQuantTorch, Int64ConversionQuirkForHugeInfAndNaN) {
  const affine_params p{0.5f, 10};
  const qrange r{0, 255};
  const float low = (0 - 10) * 0.5f;               // (qmin - zp) * s = -5
  const float high = (255 - 10) * 0.5f;            // (qmax - zp) * s = 122.5
  EXPECT_EQ(pt::fake_quantize(1e30f, p, r), low);  // 1e30 * 2 >= 2^63
  EXPECT_EQ(pt::fake_quantize(kInf, p, r), low);
  EXPECT_EQ(pt::fake_quantize(-kInf, p, r), low);
  EXPECT_EQ(pt::fake_quantize(kNaN, p, r), low);
  EXPECT_EQ(pt::fake_quantize(5e18f, p, r), low);   // 1e19 >= 2^63 (~9.22e18): INT64_MIN
  EXPECT_EQ(pt::fake_quantize(4e18f, p, r), high);  // 8e18 fits int64: clamps to qmax
  EXPECT_FALSE(pt::fake_quantize_mask(kNaN, p, r));
  EXPECT_FALSE(pt::fake_quantize_mask(4e18f, p, r));
}

TEST(FakeQuantTorch, LearnableZeroPointRoundings) {
  const qrange r{0, 255};
  const qrange s{-8, 7};
  // Forward: clamp(nearbyint(zp)); backward: trunc(clamp(zp + 0.5f)).
  EXPECT_EQ(pt::learnable_forward_zero_point(2.5f, r), 2);   // half to even
  EXPECT_EQ(pt::learnable_backward_zero_point(2.5f, r), 3);  // 3.0 truncated
  EXPECT_EQ(pt::learnable_forward_zero_point(3.7f, r), 4);
  EXPECT_EQ(pt::learnable_backward_zero_point(3.7f, r), 4);  // 4.2 -> 4
  EXPECT_EQ(pt::learnable_forward_zero_point(-3.7f, s), -4);
  EXPECT_EQ(pt::learnable_backward_zero_point(-3.7f, s), -3);  // -3.2 truncates toward 0
  EXPECT_EQ(pt::learnable_forward_zero_point(260.0f, r), 255);
  EXPECT_EQ(pt::learnable_backward_zero_point(260.0f, r), 255);
  EXPECT_EQ(pt::learnable_forward_zero_point(-7.0f, r), 0);
  EXPECT_EQ(pt::learnable_backward_zero_point(-0.7f, r), 0);
  EXPECT_EQ(pt::learnable_forward_zero_point(kInf, r), 255);
  // Per channel: torch.round (half to even) then clamp, kept as float.
  EXPECT_EQ(pt::learnable_channel_zero_point(2.5f, r), 2.0f);
  EXPECT_EQ(pt::learnable_channel_zero_point(3.5f, r), 4.0f);
  EXPECT_EQ(pt::learnable_channel_zero_point(300.0f, r), 255.0f);
  EXPECT_EQ(pt::learnable_channel_zero_point(-9.5f, s), -8.0f);
}

TEST(FakeQuantTorch, LsqHelpers) {
  // 1 / sqrt(64 * 256) = 1 / 128 exactly.
  EXPECT_EQ(pt::lsq_grad_factor(64, 256), 1.0 / 128.0);
  EXPECT_THROW(static_cast<void>(pt::lsq_grad_factor(0, 255)), config_error);
  EXPECT_THROW(static_cast<void>(pt::lsq_grad_factor(4, 0)), config_error);
  EXPECT_EQ(pt::clamp_learnable_scale(1e-9f, pt::default_eps), pt::default_eps);
  EXPECT_EQ(pt::clamp_learnable_scale(0.5f, pt::default_eps), 0.5f);
  EXPECT_TRUE(std::isnan(pt::clamp_learnable_scale(kNaN, pt::default_eps)));
}

// Hand-computed LSQ terms, s = 0.5, zp = 2 (float), [0, 15], gf = 0.25, g = 2:
//   x = 1:    q = nearbyint(fma(1, 2, 2)) = 4, in range; xfq - x = fma(4 - 2, 0.5, -1) = 0
//             -> dx = 2, dS = 2 * 0 * 2 * 0.25 = 0, dZ = 0
//   x = 1.2:  q = nearbyint(4.4) = 4; xfq - x = 1 - 1.2 = -0.2 (float: fma exact product)
//             -> dS = 2 * fma(2, 0.5, -1.2f) * 2 * 0.25
//   x = -3:   q = nearbyint(-6 + 2) = -4 < 0 -> dx = 0, dS = 2 * (0 - 2) * 0.25 = -1,
//             dZ = (-2) * 0.5 * 0.25 = -0.25
//   x = 9:    q = 20 > 15 -> dS = 2 * (15 - 2) * 0.25 = 6.5, dZ = -0.25
TEST(FakeQuantTorch, LearnableHandComputedTerms) {
  const learnable_params p{0.5f, 2.0f};
  const qrange r{0, 15};
  const std::vector<float> x{1.0f, 1.2f, -3.0f, 9.0f};
  const std::vector<float> g(4, 2.0f);
  const float ds_12 = ((2.0f * std::fma(2.0f, 0.5f, -1.2f)) * 2.0f) * 0.25f;
  const std::array<float, 4> want_ds{0.0f, ds_12, -1.0f, 6.5f};
  const std::array<float, 4> want_dz{0.0f, 0.0f, -0.25f, -0.25f};
  const std::array<float, 4> want_dx{2.0f, 2.0f, 0.0f, 0.0f};
  for (std::size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(x[i]);
    std::vector<float> xi{x[i]}, gi{g[i]}, gxi(1);
    const quant::learnable_grads d = pt::fake_quantize_learnable_per_tensor_affine_backward<1>(
        cview1(xi), cview1(gi), view1(gxi), p, r, 0.25);
    EXPECT_EQ(bits(d.scale), bits(want_ds[i]));
    EXPECT_EQ(bits(d.zero_point), bits(want_dz[i]));
    EXPECT_EQ(bits(gxi[0]), bits(want_dx[i]));
  }
  // The tensor call sums the terms: -1 + 6.5 + ds_12 + 0; -0.5.
  std::vector<float> gx(4);
  const quant::learnable_grads d = pt::fake_quantize_learnable_per_tensor_affine_backward<1>(
      cview1(x), cview1(g), view1(gx), p, r, 0.25);
  EXPECT_FLOAT_EQ(d.scale, 5.5f + ds_12);
  EXPECT_EQ(d.zero_point, -0.5f);
}

TEST(FakeQuantTorch, InPlaceAndRank0) {
  const affine_params p{0.1f, 3};
  const qrange r{0, 255};
  std::vector<float> x{0.04f, 0.05f, -1.0f, 30.0f, 0.0f};
  std::vector<float> want(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) want[i] = pt::fake_quantize(x[i], p, r);
  pt::fake_quantize_per_tensor_affine<1>(view1(x), view1(x), p, r);  // mutable view converts
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(bits(x[i]), bits(want[i]));
  float v = 0.26f;
  float out = 0.0f;
  pt::fake_quantize_per_tensor_affine<0>(tensor_view<const float, 0>(&v, extents<0>()),
                                         tensor_view<float, 0>(&out, extents<0>()), p, r);
  EXPECT_EQ(bits(out), bits(pt::fake_quantize(0.26f, p, r)));
}

// ---------------------------------------------------------------------------
// TensorFlow: hand-computed cases (TensorFlow cannot be installed here). Each
// comment shows the float32 arithmetic of fake_quant_ops_functor.h.
// ---------------------------------------------------------------------------

void expect_nudged(const tf::nudged_params& n, float min, float max, float scale, float inv,
                   std::int32_t zp, float quant_zero) {
  EXPECT_EQ(bits(n.min), bits(min)) << n.min << " vs " << min;
  EXPECT_EQ(bits(n.max), bits(max)) << n.max << " vs " << max;
  EXPECT_EQ(bits(n.scale), bits(scale)) << n.scale << " vs " << scale;
  EXPECT_EQ(bits(n.inv_scale), bits(inv)) << n.inv_scale << " vs " << inv;
  EXPECT_EQ(n.zero_point, zp);
  EXPECT_EQ(bits(n.quant_zero), bits(quant_zero));
}

TEST(FakeQuantTensorFlow, NudgeHandComputed) {
  {
    SCOPED_TRACE("no nudging: s = 63.75 / 255 = 0.25, inv = 255 / 63.75 = 4, z0 = 10 / 0.25 = 40");
    expect_nudged(tf::nudge(-10.0f, 53.75f, {8, false}), -10.0f, 53.75f, 0.25f, 4.0f, 40, 40.0f);
  }
  {
    SCOPED_TRACE("narrow: s = 63.5 / 254 = 0.25, z0 = 1 + 40 = 41, nmin = (1 - 41) * 0.25");
    expect_nudged(tf::nudge(-10.0f, 53.5f, {8, true}), -10.0f, 53.5f, 0.25f, 4.0f, 41, 40.0f);
  }
  {
    // TF's own test WithArgsNudgedDown: 63.65f - (-0.1f) rounds to 63.75 in float,
    // s = 0.25, z0 = 0.1f / 0.25 = 0.4 -> 0, range [0, 63.75].
    SCOPED_TRACE("nudged down");
    expect_nudged(tf::nudge(-0.1f, 63.65f, {8, false}), 0.0f, 63.75f, 0.25f, 4.0f, 0, 0.0f);
  }
  {
    // z0 = 0.125 / 0.25 = 0.5 exactly: std::round goes away from zero -> 1
    // (half to even would give 0 and the range [0, 3.75]).
    SCOPED_TRACE("zero-point tie rounds away from zero");
    expect_nudged(tf::nudge(-0.125f, 3.625f, {4, false}), -0.25f, 3.5f, 0.25f, 4.0f, 1, 1.0f);
  }
  {
    // tensorflow/tensorflow#117962's example: [-0.5, 2.5], 4 bits: s = 3 / 15 = 0.2f,
    // inv = 15 / 3 = 5, z0 = 0.5 / 0.2f = 2.5 -> 3, nmin = -3 * 0.2f, nmax = 12 * 0.2f.
    SCOPED_TRACE("[-0.5, 2.5] 4 bits");
    expect_nudged(tf::nudge(-0.5f, 2.5f, {4, false}), -0.6f, 2.4f, 0.2f, 5.0f, 3, 3.0f);
  }
  {
    // 16 bits: s = 4095.9375 / 65535 = 0.0625, z0 = 18.75 / 0.0625 = 300. Current TF keeps
    // the zero point in a uint16 (exact); the 2017 source's uint8 wrapped it to 300 - 256 = 44,
    // giving [-2.75, 4093.1875] instead.
    SCOPED_TRACE("16 bits, zero point 300");
    expect_nudged(tf::nudge(-18.75f, 4077.1875f, {16, false}), -18.75f, 4077.1875f, 0.0625f, 16.0f,
                  300, 300.0f);
  }
  {
    // min > 0: z0 = 0 - 2 / 1 = -2 < qmin -> zero point 0, range moved to [0, 15].
    SCOPED_TRACE("positive range");
    expect_nudged(tf::nudge(2.0f, 17.0f, {4, false}), 0.0f, 15.0f, 1.0f, 1.0f, 0, 0.0f);
  }
  {
    // max < 0: z0 = 17 > qmax -> 15, range [-15, 0], quant_zero = floor(15 * 1 + 0.5).
    SCOPED_TRACE("negative range");
    expect_nudged(tf::nudge(-17.0f, -2.0f, {4, false}), -15.0f, 0.0f, 1.0f, 1.0f, 15, 15.0f);
  }
  {
    // [-1, 1], 8 bits: s = 2 / 255 = 0x3c008081, inv = 255 / 2 = 127.5 exactly,
    // z0 = 0 - (-1 / s) = 127.49999 (not a tie in float) -> 127,
    // nmin = -127 * s = -0.9960785 (0xbf7eff00), nmax = 128 * s = 1.0039216 (0x3f808081).
    SCOPED_TRACE("[-1, 1]");
    expect_nudged(tf::nudge(-1.0f, 1.0f, {8, false}), from_bits(0xbf7eff00u),
                  from_bits(0x3f808081u), from_bits(0x3c008081u), 127.5f, 127, 127.0f);
  }
}

TEST(FakeQuantTensorFlow, ArgsHandComputed) {
  // [-10, 53.75], 8 bits: s = 0.25, inv = 4, nmin = -10, quant_zero = 40, all exact:
  //   y = floor((clamp(x) + 10) * 4 - 40 + 0.5) * 0.25
  const std::vector<float> x{-10.1f, -10.0f, -9.9f, -9.875f, -9.75f, -0.125f, 0.0f,
                             0.125f, 53.75f, 53.8f, kInf,    -kInf,  kNaN};
  // -9.9f + 10 = 0.10000038 -> 0.4000015 - 40 + 0.5 -> floor -40 -> -10
  // -9.875: 0.125 * 4 = 0.5 -> -39.5 + 0.5 = -39 -> -9.75 (ties go up)
  // -0.125: 9.875 * 4 = 39.5 -> 0 -> +0;  0.125: 40.5 -> 1 -> 0.25 (torch: 0)
  const std::vector<float> want{-10.0f, -10.0f, -10.0f, -9.75f, -9.75f, 0.0f, 0.0f,
                                0.25f,  53.75f, 53.75f, 53.75f, -10.0f, kNaN};
  std::vector<float> y(x.size());
  tf::fake_quant_with_min_max_args<1>(cview1(x), view1(y), -10.0f, 53.75f, {8, false});
  for (std::size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(x[i]);
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(y[i]));
    } else {
      EXPECT_EQ(bits(y[i]), bits(want[i]));
    }
  }
  // Half up (TF) against half to even (torch) at the same tie, s = 0.25, zp = 40.
  EXPECT_EQ(pt::fake_quantize(0.125f, {0.25f, 40}, {0, 255}), 0.0f);
}

TEST(FakeQuantTensorFlow, ArgsMultipliesVarsDivides) {
  // [-0.5, 2.5], 4 bits: s = 0.2f, inv = 5, nmin = -0.6f, quant_zero = 3. x = 0.7f:
  //   shifted = 0.7f + 0.6f = 1.3f (0x3fa66666, just below 1.3)
  //   args:  1.3f * 5 = 6.49999976 -> rounds to 6.5 (tie in float, to even) -> floor(6.5 - 3 + 0.5)
  //   = 4 vars:  1.3f / 0.2f = 6.4999995 -> floor(6.4999995 - 3 + 0.5) = 3 so args gives 4 * 0.2f =
  //   0.8f, vars 3 * 0.2f = 0.6f: one whole step apart.
  const std::vector<float> x{0.7f};
  std::vector<float> ya(1), yv(1), yc(1);
  tf::fake_quant_with_min_max_args<1>(cview1(x), view1(ya), -0.5f, 2.5f, {4, false});
  tf::fake_quant_with_min_max_vars<1>(cview1(x), view1(yv), -0.5f, 2.5f, {4, false});
  const std::array<float, 1> mn{-0.5f};
  const std::array<float, 1> mx{2.5f};
  tf::fake_quant_with_min_max_vars_per_channel<1>(cview1(x), view1(yc), mn, mx, {4, false});
  EXPECT_EQ(bits(ya[0]), bits(0.8f));
  EXPECT_EQ(bits(yv[0]), bits(0.6f));
  EXPECT_EQ(bits(yc[0]), bits(0.8f));  // the per-channel op multiplies, like args
  EXPECT_EQ(bits(tf::fake_quant(0.7f, tf::nudge(-0.5f, 2.5f, {4, false}), tf::fake_quant_op::vars)),
            bits(0.6f));
}

TEST(FakeQuantTensorFlow, VarsReportedOutputs) {
  // tensorflow/tensorflow#117962 (TF 2.22 nightly, eager):
  //   fake_quant_with_min_max_vars([2.579, -0.6, 2.6], -0.5, 2.5, num_bits=4) = [2.4, -0.6, 2.4]
  // 2.579 clamps to 2.4f: (2.4f + 0.6f) / 0.2f = 15 -> floor(15 - 3 + 0.5) = 12 -> 12 * 0.2f = 2.4f
  // -0.6f equals nmin: 0 / 0.2f - 3 + 0.5 = -2.5 -> -3 -> -0.6f
  const std::vector<float> x{2.579f, -0.6f, 2.6f};
  std::vector<float> y(3);
  tf::fake_quant_with_min_max_vars<1>(cview1(x), view1(y), -0.5f, 2.5f, {4, false});
  EXPECT_EQ(bits(y[0]), bits(2.4f));
  EXPECT_EQ(bits(y[1]), bits(-0.6f));
  EXPECT_EQ(bits(y[2]), bits(2.4f));

  // tensorflow/model-optimization#858: fake_quant_with_min_max_vars([-1, 0, 1], -1, 1) printed
  // [-0.9960785, 0, 1.0039215] with the pre-2021 y = floor(shifted / s + 0.5) * s + nmin:
  //   x = 1: shifted = 1 + 0.9960785 = 1.9960785, / s = 254.5 -> 255 * s + nmin = 1.0039215.
  // Current TF computes floor(254.5 - 127 + 0.5) * s = 128 * s = 1.0039216 (0x3f808081):
  // the same step, one ulp apart, because the product no longer adds nmin back.
  const std::vector<float> x2{-1.0f, 0.0f, 1.0f};
  std::vector<float> y2(3);
  tf::fake_quant_with_min_max_vars<1>(cview1(x2), view1(y2), -1.0f, 1.0f, {8, false});
  EXPECT_EQ(bits(y2[0]), 0xbf7eff00u);  // -127 * s = -0.9960785
  EXPECT_EQ(bits(y2[1]), bits(0.0f));
  EXPECT_EQ(bits(y2[2]), 0x3f808081u);  // 128 * s = 1.0039216
}

TEST(FakeQuantTensorFlow, RecomputedInverseScale) {
  // [-1.3, 2.7], 4 bits: max - min = 2.7f + 1.3f = 4 exactly, so inv = 15 / 4 = 3.75
  // exactly, while 1 / s = 1 / 0.26666668 = 3.7499998. nmin = -5 * s = -1.3333334,
  // quant_zero = 5. x = -0.9333334f (0xbf6eeef0): shifted = 0.39999998 (0x3ecccccc);
  //   current TF (inv recomputed, PR #55310, 2022): 0.39999998 * 3.75 = 1.4999999,
  //     1.4999999 - 5 + 0.5 = -3.0 -> -3 * s = -0.8000001 (0xbf4cccce)
  //   before it (inv = 1 / s): 1.4999998 - 5 + 0.5 = -3.0000002 -> -4 * s = -1.0666667
  const tf::nudged_params n = tf::nudge(-1.3f, 2.7f, {4, false});
  EXPECT_EQ(n.inv_scale, 3.75f);
  EXPECT_NE(n.inv_scale, 1.0f / n.scale);
  EXPECT_EQ(bits(n.scale), 0x3e888889u);
  const std::vector<float> x{from_bits(0xbf6eeef0u)};
  std::vector<float> y(1);
  tf::fake_quant_with_min_max_args<1>(cview1(x), view1(y), -1.3f, 2.7f, {4, false});
  EXPECT_EQ(bits(y[0]), 0xbf4cccceu);
}

TEST(FakeQuantTensorFlow, GradientsHandComputed) {
  // [-10, 53.75], 8 bits: nudged range [-10, 53.75]; the mask is on x itself.
  const float below = std::nextafter(-10.0f, -kInf);
  const float above = std::nextafter(53.75f, kInf);
  const std::vector<float> x{-10.1f, -10.0f, -9.9f, 53.75f, above, 60.0f, below, 0.0f};
  const std::vector<float> g{1.0f, 2.0f, 4.0f, 8.0f, 16.0f, 32.0f, 64.0f, -128.0f};
  // in range: -10, -9.9, 53.75, 0;  below: -10.1, below;  above: above, 60.
  const std::vector<float> want{0.0f, 2.0f, 4.0f, 8.0f, 0.0f, 0.0f, 0.0f, -128.0f};
  std::vector<float> gx(x.size());
  const tf::min_max_grads d = tf::fake_quant_with_min_max_vars_gradient<1>(
      cview1(x), cview1(g), view1(gx), -10.0f, 53.75f, {8, false});
  EXPECT_TRUE(same_bits(gx, [&] {
    std::vector<std::uint32_t> b;
    for (float v : want) b.push_back(bits(v));
    return b;
  }()));
  EXPECT_EQ(d.min, 1.0f + 64.0f);
  EXPECT_EQ(d.max, 16.0f + 32.0f);
  std::vector<float> gx2(x.size());
  tf::fake_quant_with_min_max_args_gradient<1>(cview1(x), cview1(g), view1(gx2), -10.0f, 53.75f,
                                               {8, false});
  EXPECT_EQ(gx2, gx);
  // Masked negative gradients are -0.0 (g * 0.0f), NaN x is masked.
  const std::vector<float> x3{100.0f, kNaN};
  const std::vector<float> g3{-1.0f, 5.0f};
  std::vector<float> gx3(2);
  const tf::min_max_grads d3 = tf::fake_quant_with_min_max_vars_gradient<1>(
      cview1(x3), cview1(g3), view1(gx3), -10.0f, 53.75f, {8, false});
  EXPECT_EQ(bits(gx3[0]), bits(-0.0f));
  EXPECT_EQ(bits(gx3[1]), bits(0.0f));
  EXPECT_EQ(d3.max, -1.0f);
  EXPECT_EQ(d3.min, 0.0f);
}

TEST(FakeQuantTensorFlow, ZeroRangeVarsPassThrough) {
  // min == max == 0: TF's vars ops output zeros and pass gradients through.
  const std::vector<float> x{1.0f, -2.0f, kNaN};
  const std::vector<float> g{0.5f, -0.25f, 3.0f};
  std::vector<float> y(3, 7.0f), gx(3);
  tf::fake_quant_with_min_max_vars<1>(cview1(x), view1(y), 0.0f, 0.0f, {8, false});
  for (float v : y) EXPECT_EQ(bits(v), bits(0.0f));
  const tf::min_max_grads d = tf::fake_quant_with_min_max_vars_gradient<1>(
      cview1(x), cview1(g), view1(gx), 0.0f, 0.0f, {8, false});
  EXPECT_EQ(gx, g);
  EXPECT_EQ(d, (tf::min_max_grads{0.0f, 0.0f}));
  // The args op rejects it (TF: "min has to be smaller than max").
  EXPECT_THROW(tf::fake_quant_with_min_max_args<1>(cview1(x), view1(y), 0.0f, 0.0f, {8, false}),
               config_error);
}

TEST(FakeQuantTensorFlow, PerChannelLastAxis) {
  // x is [3, 2]; channel 0: [-0.5, 2.5] (s 0.2, nmin -0.6), channel 1: min == max == 0.
  const extents<2> e(3, 2);
  const std::vector<float> x{0.7f, 5.0f, -1.0f, -5.0f, 3.0f, 1.0f};
  const std::vector<float> g{1.0f, 2.0f, 4.0f, 8.0f, 16.0f, 32.0f};
  const std::array<float, 2> mn{-0.5f, 0.0f};
  const std::array<float, 2> mx{2.5f, 0.0f};
  std::vector<float> y(6), gx(6);
  tf::fake_quant_with_min_max_vars_per_channel<2>(cview(x, e), view(y, e), mn, mx, {4, false});
  // ch 0: 0.7 -> 0.8 (see ArgsMultipliesVarsDivides), -1 -> nmin = -0.6, 3 -> nmax = 2.4.
  EXPECT_EQ(bits(y[0]), bits(0.8f));
  EXPECT_EQ(bits(y[2]), bits(-0.6f));
  EXPECT_EQ(bits(y[4]), bits(2.4f));
  EXPECT_EQ(bits(y[1]), bits(0.0f));
  EXPECT_EQ(bits(y[3]), bits(0.0f));
  EXPECT_EQ(bits(y[5]), bits(0.0f));
  std::array<float, 2> dmin{}, dmax{};
  tf::fake_quant_with_min_max_vars_per_channel_gradient<2>(cview(x, e), cview(g, e), view(gx, e),
                                                           mn, mx, {4, false}, dmin, dmax);
  EXPECT_EQ(gx, (std::vector<float>{1.0f, 2.0f, 0.0f, 8.0f, 0.0f, 32.0f}));
  EXPECT_EQ(dmin[0], 4.0f);
  EXPECT_EQ(dmax[0], 16.0f);
  EXPECT_EQ(dmin[1], 0.0f);
  EXPECT_EQ(dmax[1], 0.0f);
}

}  // namespace

// ---------------------------------------------------------------------------
// Properties (seeded; the seed is printed with every failure)
// ---------------------------------------------------------------------------
namespace {

constexpr std::array<qrange, 7> kTorchRanges{
    {{0, 255}, {-128, 127}, {-127, 127}, {0, 15}, {-8, 7}, {-32768, 32767}, {0, 65535}}};

// torch.quantize_per_tensor then dequantize(), written out from the documented
// torch formulas (tests/data/quant/README.md): the fake-quant kernel computes
// (clamp(q) - zp) * s in double and narrows; dequantize() multiplies in float.
std::int32_t torch_quantize_val(float x, float s, std::int32_t zp, qrange r) {
  const float t = static_cast<float>(zp) + std::nearbyint(x * (1.0f / s));
  const std::int64_t q = std::fabs(t) < 0x1p63f ? static_cast<std::int64_t>(t)
                                                : std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int32_t>(q < r.qmin ? r.qmin : (q > r.qmax ? r.qmax : q));
}
float torch_dequantize(std::int32_t q, float s, std::int32_t zp) {
  return s * static_cast<float>(q - zp);
}

struct torch_case {
  float scale;
  std::int32_t zp;
  qrange r;
};

torch_case random_torch_case(std::mt19937_64& rng) {
  const qrange r = kTorchRanges[std::uniform_int_distribution<std::size_t>(0, 6)(rng)];
  const float s =
      std::exp(std::uniform_real_distribution<float>(std::log(1e-4f), std::log(10.0f))(rng));
  const std::int32_t zp = std::uniform_int_distribution<std::int32_t>(r.qmin, r.qmax)(rng);
  return {s, zp, r};
}

std::vector<float> random_inputs(std::mt19937_64& rng, const torch_case& c, int n) {
  const double lo = (static_cast<double>(c.r.qmin) - c.zp - 5) * c.scale;
  const double hi = (static_cast<double>(c.r.qmax) - c.zp + 5) * c.scale;
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<float> x{0.0f, -0.0f};
  for (int i = 0; i < n; ++i) x.push_back(static_cast<float>(u(rng)));
  return x;
}

TEST(FakeQuantProperties, TorchForwardEqualsQuantizeDequantizeOnGridIdempotent) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(0xf00d);
  for (int iter = 0; iter < 300; ++iter) {
    const torch_case c = random_torch_case(rng);
    SCOPED_TRACE("scale " + std::to_string(c.scale) + " zp " + std::to_string(c.zp) + " [" +
                 std::to_string(c.r.qmin) + ", " + std::to_string(c.r.qmax) + "]");
    const affine_params p{c.scale, c.zp};
    const std::vector<float> x = random_inputs(rng, c, 64);
    std::vector<float> y(x.size()), yy(x.size());
    pt::fake_quantize_per_tensor_affine<1>(cview1(x), view1(y), p, c.r);
    pt::fake_quantize_per_tensor_affine<1>(cview1(y), view1(yy), p, c.r);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::int32_t q = torch_quantize_val(x[i], c.scale, c.zp, c.r);
      ASSERT_EQ(bits(y[i]), bits(torch_dequantize(q, c.scale, c.zp))) << "x = " << x[i];
      // On the grid: y = k * s for an integer k in [qmin - zp, qmax - zp].
      const double k = std::nearbyint(static_cast<double>(y[i]) / c.scale);
      ASSERT_GE(k, static_cast<double>(c.r.qmin) - c.zp);
      ASSERT_LE(k, static_cast<double>(c.r.qmax) - c.zp);
      ASSERT_EQ(bits(y[i]), bits(static_cast<float>(k) * c.scale)) << "x = " << x[i];
      ASSERT_EQ(bits(yy[i]), bits(y[i])) << "not idempotent at x = " << x[i];
    }
    // 0 is exactly representable.
    EXPECT_EQ(bits(pt::fake_quantize(0.0f, p, c.r)), bits(0.0f));
  }
}

TEST(FakeQuantProperties, TorchGradientMaskAtTheBoundaries) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(0xbead);
  for (int iter = 0; iter < 300; ++iter) {
    const torch_case c = random_torch_case(rng);
    const affine_params p{c.scale, c.zp};
    auto grid = [&](std::int64_t k) {
      return static_cast<float>(static_cast<double>(k) * static_cast<double>(c.scale));
    };
    const float lo = grid(c.r.qmin - c.zp);
    const float hi = grid(c.r.qmax - c.zp);
    // On the clamp boundaries and one ulp past them: inside (the code still rounds
    // to qmin / qmax). One whole step past them: outside.
    std::vector<float> x{lo,
                         hi,
                         std::nextafter(lo, -kInf),
                         std::nextafter(hi, kInf),
                         grid(c.r.qmin - c.zp - 1),
                         grid(c.r.qmax - c.zp + 1)};
    const std::vector<bool> want{true, true, true, true, false, false};
    for (float v : random_inputs(rng, c, 32)) x.push_back(v);
    std::vector<float> g(x.size());
    for (float& v : g) v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
    std::vector<float> gx(x.size());
    pt::fake_quantize_per_tensor_affine_backward<1>(cview1(x), cview1(g), view1(gx), p, c.r);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const bool m = pt::fake_quantize_mask(x[i], p, c.r);
      if (i < want.size()) {
        ASSERT_EQ(m, want[i]) << "boundary case " << i << " x = " << x[i];
      }
      // Exactly 0 or 1 times the gradient, nothing in between.
      ASSERT_EQ(bits(gx[i]), bits(m ? g[i] : g[i] * 0.0f)) << "x = " << x[i];
      // Inside the clamp range the mask is always 1.
      if (x[i] >= lo && x[i] <= hi) {
        ASSERT_TRUE(m) << "x = " << x[i];
      }
    }
  }
}

template <std::size_t R>
void check_per_channel_equals_per_tensor(std::mt19937_64& rng, const extents<R>& e, index_t axis) {
  const index_t channels = e.extent(static_cast<std::size_t>(axis));
  const qrange r{-128, 127};
  per_channel_params p;
  p.axis = axis;
  for (index_t c = 0; c < channels; ++c) {
    const torch_case t = random_torch_case(rng);
    p.scales.push_back(t.scale);
    p.zero_points.push_back(std::clamp(t.zp, r.qmin, r.qmax));
  }
  std::vector<float> x(static_cast<std::size_t>(e.size()));
  std::vector<float> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = std::uniform_real_distribution<float>(-40.0f, 40.0f)(rng);
    g[i] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  }
  std::vector<float> y(x.size()), gx(x.size());
  pt::fake_quantize_per_channel_affine<R>(cview(x, e), view(y, e), p, r);
  pt::fake_quantize_per_channel_affine_backward<R>(cview(x, e), cview(g, e), view(gx, e), p, r);
  // Naive row-major indexing: the channel of flat index i is (i / inner) % channels.
  index_t inner = 1;
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < R; ++d) inner *= e.extent(d);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<std::size_t>((static_cast<index_t>(i) / inner) % channels);
    const affine_params pc{p.scales[c], p.zero_points[c]};
    ASSERT_EQ(bits(y[i]), bits(pt::fake_quantize(x[i], pc, r))) << i;
    ASSERT_EQ(bits(gx[i]), bits(pt::fake_quantize_mask(x[i], pc, r) ? g[i] : g[i] * 0.0f)) << i;
  }
}

TEST(FakeQuantProperties, TorchPerChannelIndexing) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(0xcafe);
  for (int iter = 0; iter < 20; ++iter) {
    std::uniform_int_distribution<index_t> d(1, 5);
    const extents<3> e(d(rng), d(rng), d(rng));
    for (index_t axis = 0; axis < 3; ++axis) check_per_channel_equals_per_tensor<3>(rng, e, axis);
    check_per_channel_equals_per_tensor<1>(rng, extents<1>(d(rng)), 0);
  }
}

TEST(FakeQuantProperties, TensorFlowGridZeroIdempotenceMasks) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(0x7f);
  for (int iter = 0; iter < 400; ++iter) {
    const int b = std::uniform_int_distribution<int>(2, 16)(rng);
    const bool narrow = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
    const float mn = std::uniform_real_distribution<float>(-10.0f, 2.0f)(rng);
    const float width =
        std::exp(std::uniform_real_distribution<float>(std::log(1e-3f), std::log(100.0f))(rng));
    const float mx = mn + width;
    const tf::fake_quant_attrs a{b, narrow};
    SCOPED_TRACE("min " + std::to_string(mn) + " max " + std::to_string(mx) + " bits " +
                 std::to_string(b) + (narrow ? " narrow" : ""));
    const tf::nudged_params n = tf::nudge(mn, mx, a);
    const qrange r = tf::quant_range(a);
    ASSERT_GE(n.zero_point, r.qmin);
    ASSERT_LE(n.zero_point, r.qmax);
    ASSERT_EQ(bits(n.min), bits(static_cast<float>(r.qmin - n.zero_point) * n.scale));
    ASSERT_EQ(bits(n.max), bits(static_cast<float>(r.qmax - n.zero_point) * n.scale));
    ASSERT_LE(n.min, 0.0f);
    ASSERT_GE(n.max, 0.0f);

    std::vector<float> x{0.0f, -0.0f, n.min, n.max, -kInf, kInf};
    std::uniform_real_distribution<float> u(n.min - width, n.max + width);
    for (int i = 0; i < 40; ++i) x.push_back(u(rng));
    for (const tf::fake_quant_op op :
         {tf::fake_quant_op::args, tf::fake_quant_op::vars, tf::fake_quant_op::vars_per_channel}) {
      for (float v : x) {
        const float y = tf::fake_quant(v, n, op);
        const double k = std::nearbyint(static_cast<double>(y) / n.scale);
        ASSERT_GE(k, static_cast<double>(r.qmin) - n.zero_point) << v;
        ASSERT_LE(k, static_cast<double>(r.qmax) - n.zero_point) << v;
        ASSERT_EQ(bits(y), bits(static_cast<float>(k) * n.scale)) << "off the grid at " << v;
        ASSERT_EQ(bits(tf::fake_quant(y, n, op)), bits(y)) << "not idempotent at " << v;
      }
      EXPECT_EQ(bits(tf::fake_quant(0.0f, n, op)), bits(0.0f));
      EXPECT_EQ(bits(tf::fake_quant(n.min, n, op)), bits(n.min));
      EXPECT_EQ(bits(tf::fake_quant(n.max, n, op)), bits(n.max));
      EXPECT_EQ(bits(tf::fake_quant(-kInf, n, op)), bits(n.min));
      EXPECT_EQ(bits(tf::fake_quant(kInf, n, op)), bits(n.max));
    }
    // Gradient mask: 1 on both nudged bounds, 0 one ulp outside; sums of small
    // integer gradients are exact.
    const std::vector<float> xb{n.min, n.max, std::nextafter(n.min, -kInf),
                                std::nextafter(n.max, kInf), 0.0f};
    const std::vector<float> gb{1.0f, 2.0f, 4.0f, 8.0f, 16.0f};
    std::vector<float> gx(xb.size());
    const tf::min_max_grads d =
        tf::fake_quant_with_min_max_vars_gradient<1>(cview1(xb), cview1(gb), view1(gx), mn, mx, a);
    EXPECT_EQ(gx, (std::vector<float>{1.0f, 2.0f, 0.0f, 0.0f, 16.0f}));
    EXPECT_EQ(d.min, 4.0f);
    EXPECT_EQ(d.max, 8.0f);
  }
}

TEST(FakeQuantProperties, TensorFlowPerChannelEqualsArgsPerColumn) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(0x5eed);
  for (int iter = 0; iter < 30; ++iter) {
    const index_t rows = std::uniform_int_distribution<index_t>(1, 6)(rng);
    const index_t depth = std::uniform_int_distribution<index_t>(1, 5)(rng);
    const tf::fake_quant_attrs a{std::uniform_int_distribution<int>(2, 16)(rng), iter % 2 == 1};
    std::vector<float> mn(static_cast<std::size_t>(depth)), mx(mn.size());
    for (std::size_t c = 0; c < mn.size(); ++c) {
      mn[c] = std::uniform_real_distribution<float>(-3.0f, 0.5f)(rng);
      mx[c] = mn[c] + std::uniform_real_distribution<float>(0.01f, 6.0f)(rng);
    }
    const extents<3> e(rows, 1, depth);
    std::vector<float> x(static_cast<std::size_t>(e.size())), g(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = std::uniform_real_distribution<float>(-4.0f, 7.0f)(rng);
      g[i] = static_cast<float>(std::uniform_int_distribution<int>(-8, 8)(rng));
    }
    std::vector<float> y(x.size()), gx(x.size());
    std::vector<float> dmin(mn.size()), dmax(mn.size());
    tf::fake_quant_with_min_max_vars_per_channel<3>(cview(x, e), view(y, e), mn, mx, a);
    tf::fake_quant_with_min_max_vars_per_channel_gradient<3>(cview(x, e), cview(g, e), view(gx, e),
                                                             mn, mx, a, dmin, dmax);
    for (std::size_t c = 0; c < mn.size(); ++c) {
      std::vector<float> xc, gc;
      for (index_t i = 0; i < rows; ++i) {
        xc.push_back(x[static_cast<std::size_t>(i * depth) + c]);
        gc.push_back(g[static_cast<std::size_t>(i * depth) + c]);
      }
      std::vector<float> yc(xc.size()), gxc(xc.size());
      tf::fake_quant_with_min_max_args<1>(cview1(xc), view1(yc), mn[c], mx[c], a);
      const tf::min_max_grads d = tf::fake_quant_with_min_max_vars_gradient<1>(
          cview1(xc), cview1(gc), view1(gxc), mn[c], mx[c], a);
      for (index_t i = 0; i < rows; ++i) {
        const auto k = static_cast<std::size_t>(i * depth) + c;
        ASSERT_EQ(bits(y[k]), bits(yc[static_cast<std::size_t>(i)])) << "row " << i << " ch " << c;
        ASSERT_EQ(bits(gx[k]), bits(gxc[static_cast<std::size_t>(i)]));
      }
      EXPECT_EQ(dmin[c], d.min);  // integer gradients: exact sums
      EXPECT_EQ(dmax[c], d.max);
    }
  }
}

// ---------------------------------------------------------------------------
// Errors at the API boundary
// ---------------------------------------------------------------------------

TEST(FakeQuantErrors, TorchPerTensor) {
  std::vector<float> x(4, 0.5f), y(4), g(4, 1.0f), small(3);
  const qrange r{0, 255};
  auto fwd = [&](affine_params p, qrange q) {
    pt::fake_quantize_per_tensor_affine<1>(cview1(x), view1(y), p, q);
  };
  EXPECT_NO_THROW(fwd({0.1f, 0}, r));
  EXPECT_THROW(fwd({0.0f, 0}, r), config_error);
  EXPECT_THROW(fwd({-0.1f, 0}, r), config_error);
  EXPECT_THROW(fwd({kNaN, 0}, r), config_error);
  EXPECT_THROW(fwd({kInf, 0}, r), config_error);
  EXPECT_THROW(fwd({0.1f, 256}, r), config_error);
  EXPECT_THROW(fwd({0.1f, -1}, r), config_error);
  EXPECT_THROW(fwd({0.1f, 3}, {3, 3}), config_error);  // qmin >= qmax (torch accepts ==)
  EXPECT_THROW(fwd({0.1f, 3}, {5, 3}), config_error);
  EXPECT_THROW(pt::fake_quantize_per_tensor_affine<1>(cview1(x), view1(small), {0.1f, 0}, r),
               shape_error);
  EXPECT_THROW(pt::fake_quantize_per_tensor_affine_backward<1>(cview1(x), cview1(small), view1(y),
                                                               {0.1f, 0}, r),
               shape_error);
  EXPECT_THROW(pt::fake_quantize_per_tensor_affine_backward<1>(cview1(x), cview1(g), view1(small),
                                                               {0.1f, 0}, r),
               shape_error);
  try {
    fwd({0.1f, 300}, r);
    FAIL() << "expected config_error";
  } catch (const config_error& err) {
    EXPECT_STREQ(err.what(),
                 "[qprune.config] zero point 300 is outside the quantization range [0, 255]");
  }
}

TEST(FakeQuantErrors, TorchPerChannel) {
  const extents<2> e(2, 3);
  std::vector<float> x(6, 0.5f), y(6), g(6, 1.0f);
  const qrange r{-128, 127};
  auto fwd = [&](const per_channel_params& p) {
    pt::fake_quantize_per_channel_affine<2>(cview(x, e), view(y, e), p, r);
  };
  EXPECT_NO_THROW(fwd({{0.1f, 0.2f}, {0, 1}, 0}));
  EXPECT_NO_THROW(fwd({{0.1f, 0.2f, 0.3f}, {0, 1, 2}, 1}));
  EXPECT_THROW(fwd({{0.1f, 0.2f}, {0, 1}, 2}), config_error);    // axis >= rank
  EXPECT_THROW(fwd({{0.1f, 0.2f}, {0, 1}, -1}), config_error);   // torch rejects negative axes
  EXPECT_THROW(fwd({{0.1f, 0.2f}, {0, 1}, 1}), shape_error);     // 2 channels, extent 3
  EXPECT_THROW(fwd({{0.1f, 0.2f}, {0}, 0}), shape_error);        // counts differ
  EXPECT_THROW(fwd({{0.1f, 0.0f}, {0, 1}, 0}), config_error);    // scale 0
  EXPECT_THROW(fwd({{0.1f, 0.2f}, {0, 200}, 0}), config_error);  // zero point outside
  EXPECT_THROW(pt::fake_quantize_per_channel_affine_backward<2>(
                   cview(x, e), cview(g, e), view(y, e), {{0.1f, 0.2f}, {0, 1}, 1}, r),
               shape_error);
}

TEST(FakeQuantErrors, TorchLearnable) {
  std::vector<float> x(4, 0.5f), y(4), g(4, 1.0f), gx(4);
  // Forward accepts any range; the backward requires qmin <= 0 <= qmax (torch's check).
  EXPECT_NO_THROW(pt::fake_quantize_learnable_per_tensor_affine<1>(cview1(x), view1(y),
                                                                   {0.1f, 3.0f}, {1, 255}));
  EXPECT_THROW(static_cast<void>(pt::fake_quantize_learnable_per_tensor_affine_backward<1>(
                   cview1(x), cview1(g), view1(gx), {0.1f, 3.0f}, {1, 255}, 1.0)),
               config_error);
  EXPECT_THROW(
      pt::fake_quantize_learnable_per_tensor_affine<1>(cview1(x), view1(y), {0.1f, kNaN}, {0, 255}),
      config_error);
  EXPECT_THROW(
      pt::fake_quantize_learnable_per_tensor_affine<1>(cview1(x), view1(y), {0.0f, 1.0f}, {0, 255}),
      config_error);
  // Out-of-range float zero points are clamped, as torch does.
  EXPECT_NO_THROW(static_cast<void>(pt::fake_quantize_learnable_per_tensor_affine_backward<1>(
      cview1(x), cview1(g), view1(gx), {0.1f, 300.0f}, {0, 255}, 1.0)));

  const extents<2> e(2, 2);
  learnable_per_channel_params p{{0.1f, 0.2f}, {0.0f, 1.0f}, 0};
  std::vector<float> ds(2), dz(2), ds1(1);
  EXPECT_NO_THROW(pt::fake_quantize_learnable_per_channel_affine_backward<2>(
      cview(x, e), cview(g, e), view(gx, e), p, {0, 255}, 1.0, ds, dz));
  EXPECT_THROW(pt::fake_quantize_learnable_per_channel_affine_backward<2>(
                   cview(x, e), cview(g, e), view(gx, e), p, {0, 255}, 1.0, ds1, dz),
               shape_error);
  EXPECT_THROW(pt::fake_quantize_learnable_per_channel_affine_backward<2>(
                   cview(x, e), cview(g, e), view(gx, e), p, {2, 255}, 1.0, ds, dz),
               config_error);
  p.zero_points[1] = kNaN;
  EXPECT_THROW(
      pt::fake_quantize_learnable_per_channel_affine<2>(cview(x, e), view(y, e), p, {0, 255}),
      config_error);
}

TEST(FakeQuantErrors, TensorFlow) {
  std::vector<float> x(4, 0.5f), y(4), g(4, 1.0f), gx(4), small(3);
  EXPECT_EQ(tf::quant_range({8, false}), (qrange{0, 255}));
  EXPECT_EQ(tf::quant_range({8, true}), (qrange{1, 255}));
  EXPECT_EQ(tf::quant_range({2, false}), (qrange{0, 3}));
  EXPECT_EQ(tf::quant_range({16, true}), (qrange{1, 65535}));
  EXPECT_THROW(static_cast<void>(tf::quant_range({1, false})), config_error);
  EXPECT_THROW(static_cast<void>(tf::quant_range({17, false})), config_error);
  EXPECT_THROW(static_cast<void>(tf::nudge(1.0f, 1.0f, {8, false})), config_error);
  EXPECT_THROW(static_cast<void>(tf::nudge(2.0f, 1.0f, {8, false})), config_error);
  EXPECT_THROW(static_cast<void>(tf::nudge(kNaN, 1.0f, {8, false})), config_error);
  EXPECT_THROW(static_cast<void>(tf::nudge(-kInf, 1.0f, {8, false})), config_error);
  EXPECT_THROW(static_cast<void>(tf::nudge(-3e38f, 3e38f, {8, false})),
               config_error);  // max-min = inf
  EXPECT_THROW(static_cast<void>(tf::nudge(0.0f, 1e-44f, {16, false})), config_error);  // scale 0
  EXPECT_THROW(tf::fake_quant_with_min_max_vars<1>(cview1(x), view1(y), 0.0f, 0.0f, {20, false}),
               config_error);
  EXPECT_THROW(
      tf::fake_quant_with_min_max_args<1>(cview1(x), view1(small), -1.0f, 1.0f, {8, false}),
      shape_error);
  EXPECT_THROW(static_cast<void>(tf::fake_quant_with_min_max_vars_gradient<1>(
                   cview1(x), cview1(small), view1(gx), -1.0f, 1.0f, {8, false})),
               shape_error);
  const extents<2> e(2, 2);
  const std::array<float, 2> mn{-1.0f, -1.0f};
  const std::array<float, 2> mx{1.0f, 1.0f};
  const std::array<float, 3> mx3{1.0f, 1.0f, 1.0f};
  const std::array<float, 2> bad{1.0f, -1.0f};
  std::array<float, 2> dmin{}, dmax{};
  std::array<float, 1> d1{};
  EXPECT_NO_THROW(
      tf::fake_quant_with_min_max_vars_per_channel<2>(cview(x, e), view(y, e), mn, mx, {8, false}));
  EXPECT_THROW(
      tf::fake_quant_with_min_max_vars_per_channel<2>(cview(x, e), view(y, e), mn, mx3, {8, false}),
      shape_error);
  EXPECT_THROW(
      tf::fake_quant_with_min_max_vars_per_channel<2>(cview(x, e), view(y, e), mn, bad, {8, false}),
      config_error);
  EXPECT_THROW(tf::fake_quant_with_min_max_vars_per_channel_gradient<2>(
                   cview(x, e), cview(g, e), view(gx, e), mn, mx, {8, false}, d1, dmax),
               shape_error);
  EXPECT_NO_THROW(tf::fake_quant_with_min_max_vars_per_channel_gradient<2>(
      cview(x, e), cview(g, e), view(gx, e), mn, mx, {8, false}, dmin, dmax));
}

}  // namespace

// Tests for quant/dynamic.hpp: ONNX DynamicQuantizeLinear on the ONNX operator
// examples and hand-computed ties; PyTorch 1.13 nn.quantized.dynamic.Linear
// (onednn, qnnpack) bit for bit against tests/data/quant/choose_qparams_dynamic.json
// and dynamic_torch.json; fbgemm's single-rounding fma on a hand-built tie; the
// ONNX Runtime graph composed from its pieces; a float64 reference with the
// quantization error bound; edge shapes, properties and errors.
#include "qprune/quant/dynamic.hpp"

#include <gtest/gtest.h>

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
using qprune::test::f64;
using qprune::test::bits;

using nlohmann::json;
using qprune::config_error;
using qprune::index_t;
using qprune::layout_left;
using qprune::layout_stride;
using qprune::shape_error;
using qprune::tensor_view;
namespace quant = qprune::quant;
using quant::activation_range;
using quant::affine_params;
using quant::dtype;
using quant::dynamic_activation_params;
using quant::dynamic_compat;
using quant::dynamic_linear;
using quant::dynamic_scheme;
using quant::pytorch_engine;
using quant::weight_granularity;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();





/// Distance in units in the last place between two finite floats of any sign.
std::int64_t ulp_distance(float a, float b) {
  auto key = [](float f) {
    const auto i = static_cast<std::int64_t>(std::bit_cast<std::int32_t>(f));
    return i < 0 ? std::int64_t{std::numeric_limits<std::int32_t>::min()} - i : i;
  };
  const std::int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}

tensor_view<const float, 2> cview(const std::vector<float>& v, index_t rows, index_t cols) {
  return tensor_view<const float, 2>(v.data(), rows, cols);
}

tensor_view<float, 2> view(std::vector<float>& v, index_t rows, index_t cols) {
  return tensor_view<float, 2>(v.data(), rows, cols);
}

std::vector<std::uint8_t> dql(const std::vector<float>& x, affine_params* p) {
  std::vector<std::uint8_t> y(x.size());
  *p = quant::onnxruntime::dynamic_quantize_linear(x, y);
  return y;
}

std::vector<int> as_ints(const std::vector<std::uint8_t>& v) { return {v.begin(), v.end()}; }

// ---------------------------------------------------------------------------
// ONNX DynamicQuantizeLinear
// ---------------------------------------------------------------------------

// The three examples of the ONNX operator documentation (opset 11), which the
// ORT kernel reproduces: scale = (max(0, max x) - min(0, min x)) / 255 in float32.
TEST(DynamicQuantizeLinear, OnnxOperatorExamples) {
  affine_params p;
  // Range [-3, 2]: scale = 5/255 = float 0x3CA0A0A1; zp = rne(3 / scale) = 153.
  // -2.5/scale = -127.49999 -> -127 -> 26; 0.5/scale = 25.500002 -> 26 -> 179.
  auto y = dql({0.0f, 2.0f, -3.0f, -2.5f, 1.34f, 0.5f}, &p);
  EXPECT_EQ(bits(p.scale), 0x3CA0A0A1u);
  EXPECT_EQ(p.zero_point, 153);
  EXPECT_EQ(as_ints(y), (std::vector<int>{153, 255, 0, 26, 221, 179}));
  // All negative: range [-4, 0], scale = 4/255 = float 0x3C808081, zp = 255.
  y = dql({-1.0f, -2.1f, -1.3f, -2.5f, -3.34f, -4.0f}, &p);
  EXPECT_EQ(bits(p.scale), 0x3C808081u);
  EXPECT_EQ(p.zero_point, 255);
  EXPECT_EQ(as_ints(y), (std::vector<int>{191, 121, 172, 96, 42, 0}));
  // All positive: range [0, 4], zp = 0; 4.0 maps to 255.
  y = dql({1.0f, 2.1f, 1.3f, 2.5f, 3.34f, 4.0f, 1.5f, 2.6f, 3.9f, 4.0f, 3.0f, 2.345f}, &p);
  EXPECT_EQ(bits(p.scale), 0x3C808081u);
  EXPECT_EQ(p.zero_point, 0);
  EXPECT_EQ(as_ints(y), (std::vector<int>{64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149}));
}

// The spec would divide by scale = 0 here; the ORT kernel uses scale 1 (and so
// zero point 0, codes 0). An empty input takes the same path.
TEST(DynamicQuantizeLinear, AllZeroAndEmptyUseScaleOne) {
  affine_params p;
  auto y = dql({0.0f, -0.0f, 0.0f}, &p);
  EXPECT_EQ(p, (affine_params{1.0f, 0}));
  EXPECT_EQ(as_ints(y), (std::vector<int>{0, 0, 0}));
  y = dql({}, &p);
  EXPECT_EQ(p, (affine_params{1.0f, 0}));
  EXPECT_TRUE(y.empty());
}

// Range [0, 255] gives scale exactly 1 and zero point 0, so x / scale is exact
// and the half-way values show the tie rule: half to even.
TEST(DynamicQuantizeLinear, ExactTiesRoundHalfToEven) {
  affine_params p;
  const auto y = dql({0.0f, 255.0f, 0.5f, 1.5f, 2.5f, 254.5f, 3.5f}, &p);
  EXPECT_EQ(p, (affine_params{1.0f, 0}));
  EXPECT_EQ(as_ints(y), (std::vector<int>{0, 255, 0, 2, 2, 254, 4}));
}

// Range [-127.5, 127.5]: scale 1, initial zero point 127.5 -> 128 (even).
// -127.5 -> rne -128 -> 0; 127.5 would be 128 + 128 = 256 and saturates to 255;
// -0.5 and 0.5 round to 0 -> 128; 1.5 -> 2 -> 130.
// Range [-2.5, 252.5]: zero point 2.5 -> 2; -2.5 -> -2 -> 0, 252.5 -> 252 -> 254,
// -1.5 -> -2 -> 0.
TEST(DynamicQuantizeLinear, ZeroPointTiesAndSaturation) {
  affine_params p;
  auto y = dql({-127.5f, 127.5f, -0.5f, 0.5f, 1.5f}, &p);
  EXPECT_EQ(p, (affine_params{1.0f, 128}));
  EXPECT_EQ(as_ints(y), (std::vector<int>{0, 255, 128, 128, 130}));
  y = dql({-2.5f, 252.5f, -1.5f}, &p);
  EXPECT_EQ(p, (affine_params{1.0f, 2}));
  EXPECT_EQ(as_ints(y), (std::vector<int>{0, 254, 0}));
}

TEST(DynamicQuantizeLinear, Errors) {
  std::vector<std::uint8_t> y(2);
  const std::vector<float> three{1.0f, 2.0f, 3.0f};
  EXPECT_THROW(static_cast<void>(quant::onnxruntime::dynamic_quantize_linear(three, y)), shape_error);
  affine_params p;
  EXPECT_THROW(dql({1.0f, kNaN}, &p), config_error);
  EXPECT_THROW(dql({kInf, 1.0f}, &p), config_error);
  EXPECT_THROW(dql({-kInf}, &p), config_error);
  // max - min overflows float32: ORT would return an infinite scale.
  EXPECT_THROW(dql({-3e38f, 3e38f}, &p), config_error);
  // (max - min) / 255 underflows to 0.
  EXPECT_THROW(dql({std::numeric_limits<float>::denorm_min()}, &p), config_error);
  try {
    dql({0.0f, kNaN}, &p);
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("(0, 1) is NaN"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------
// PyTorch 1.13 vectors
// ---------------------------------------------------------------------------

pytorch_engine engine_from(const std::string& name) {
  if (name == "onednn") return pytorch_engine::onednn;
  if (name == "qnnpack") return pytorch_engine::qnnpack;
  if (name == "fbgemm" || name == "x86") return pytorch_engine::fbgemm;
  throw std::runtime_error("unknown engine " + name);
}

struct torch_run {
  std::vector<float> x;
  index_t rows = 0;
  std::vector<float> y;
  double scale = 0.0;
  std::int32_t zero_point = 0;
};

struct torch_case {
  std::string label;
  std::string engine;
  bool per_channel = false;
  index_t n = 0;
  index_t k = 0;
  std::vector<float> weight;
  std::vector<float> bias;
  std::vector<int> codes;
  std::vector<double> scales;  // one per output row
  std::vector<torch_run> runs;
};

/// Builds the module from the float weights as torch's from_float / the default
/// observers do, then checks every integer part exactly and the outputs bit for bit.
void check_torch_case(const torch_case& c) {
  SCOPED_TRACE(c.label);
  // nn.quantized.dynamic.Linear calls linear_dynamic with reduce_range=True.
  const auto scheme = dynamic_scheme::for_pytorch(engine_from(c.engine), activation_range::reduced);
  dynamic_linear lin(cview(c.weight, c.n, c.k), c.bias,
                     c.per_channel ? weight_granularity::per_channel : weight_granularity::per_tensor,
                     scheme);
  // Weight codes and scales: exact.
  const auto codes = lin.weight_codes<std::int8_t>();
  for (index_t i = 0; i < c.n; ++i) {
    for (index_t j = 0; j < c.k; ++j) {
      ASSERT_EQ(codes(i, j), c.codes[static_cast<std::size_t>(i * c.k + j)]) << "w(" << i << ", " << j << ")";
    }
    // The scale the kernels use is float(scale) (the observers compute it in float32;
    // choose_qparams_dynamic.json's per-tensor weight scale was computed in float64 by
    // its generator, so only its float32 value is comparable).
    const auto& ps = lin.weight_params().scales;
    const float s = ps[c.per_channel ? static_cast<std::size_t>(i) : 0];
    EXPECT_EQ(s, static_cast<float>(c.scales[static_cast<std::size_t>(i)])) << "scale of row " << i;
    EXPECT_EQ(lin.weight_params().zero_points[c.per_channel ? static_cast<std::size_t>(i) : 0], 0);
  }
  EXPECT_EQ(lin.weight_params().channels(), c.per_channel ? c.n : 1);
  for (const auto& r : c.runs) {
    std::vector<float> y(static_cast<std::size_t>(r.rows * c.n), kNaN);
    const dynamic_activation_params a = lin.forward(cview(r.x, r.rows, c.k), view(y, r.rows, c.n));
    EXPECT_EQ(a, lin.last_activation_params());
    // ChooseQuantizationParams: the double scale and the zero point, exactly.
    EXPECT_EQ(std::bit_cast<std::uint64_t>(a.scale), std::bit_cast<std::uint64_t>(r.scale));
    EXPECT_EQ(a.zero_point, r.zero_point);
    // The README states torch's outputs match sum((xq - zx) * wq) * (sx * sw) + b only to
    // about 1 ulp; that is the naive expression. Each engine's own float expression
    // (qnnpack: float(acc) * float(sx * sw) + b; onednn: (float(acc) + b * c) / c with
    // c = ix * iw) reproduces every output bit for bit, so any difference is a bug.
    for (std::size_t i = 0; i < y.size(); ++i) {
      EXPECT_EQ(bits(y[i]), bits(r.y[i]))
          << "y[" << i / static_cast<std::size_t>(c.n) << ", " << i % static_cast<std::size_t>(c.n)
          << "] = " << y[i] << ", torch " << r.y[i] << " (" << ulp_distance(y[i], r.y[i]) << " ulp)";
    }
  }
}

TEST(DynamicLinearPyTorch, ChooseQparamsDynamicJsonBitExact) {
  const json doc = load_json("quant/choose_qparams_dynamic.json");
  int checked = 0;
  for (const auto& e : doc.at("dynamic_linear")) {
    if (!e.at("available").get<bool>() || !e.contains("runs")) continue;
    torch_case c;
    c.engine = e.at("engine").get<std::string>();
    c.per_channel = e.at("weight_qscheme").get<std::string>() == "per_channel";
    c.label = c.engine + " " + e.at("weight_qscheme").get<std::string>();
    c.n = e.at("out_features").get<index_t>();
    c.k = e.at("in_features").get<index_t>();
    c.weight = floats(e.at("weight_float_bits"));
    c.bias = floats(e.at("bias_bits"));
    c.codes = e.at("weight_int_repr").get<std::vector<int>>();
    for (index_t i = 0; i < c.n; ++i) {
      c.scales.push_back(c.per_channel
                             ? f64(e.at("weight_scales_bits64").at(static_cast<std::size_t>(i)))
                             : f64(e.at("weight_scale_bits64")));
    }
    const bool rr = e.at("effective_input_reduce_range").get<bool>();
    EXPECT_EQ(rr, c.engine != "qnnpack");
    for (const auto& r : e.at("runs")) {
      torch_run run;
      run.x = floats(r.at("x_bits"));
      run.rows = r.at("x_shape").at(0).get<index_t>();
      run.y = floats(r.at("y_bits"));
      const json& q = r.at(rr ? "input_qparams_reduce_range_true" : "input_qparams_reduce_range_false");
      run.scale = f64(q.at("scale_bits64"));
      run.zero_point = q.at("zero_point").get<std::int32_t>();
      c.runs.push_back(std::move(run));
    }
    check_torch_case(c);
    ++checked;
  }
  EXPECT_EQ(checked, 4);  // onednn and qnnpack, per channel and per tensor
}

TEST(DynamicLinearPyTorch, DynamicTorchJsonBitExact) {
  const json doc = load_json("quant/dynamic_torch.json");
  int checked = 0;
  for (const auto& e : doc.at("cases")) {
    if (!e.at("available").get<bool>()) continue;
    torch_case c;
    c.engine = e.at("engine").get<std::string>();
    c.per_channel = e.at("weight_qscheme").get<std::string>() == "per_channel";
    c.label = e.at("name").get<std::string>() + " " + c.engine + " " +
              e.at("weight_qscheme").get<std::string>();
    c.n = e.at("out_features").get<index_t>();
    c.k = e.at("in_features").get<index_t>();
    c.weight = floats(e.at("weight_bits"));
    c.bias = floats(e.at("bias_bits"));
    c.codes = e.at("weight_int_repr").get<std::vector<int>>();
    for (const auto& s : e.at("weight_scales_bits64")) c.scales.push_back(f64(s));
    EXPECT_EQ(e.at("effective_input_reduce_range").get<bool>(), c.engine != "qnnpack");
    for (const auto& r : e.at("runs")) {
      torch_run run;
      run.x = floats(r.at("x_bits"));
      run.rows = r.at("x_shape").at(0).get<index_t>();
      run.y = floats(r.at("y_bits"));
      run.scale = f64(r.at("input_scale_bits64"));
      run.zero_point = r.at("input_zero_point").get<std::int32_t>();
      c.runs.push_back(std::move(run));
    }
    check_torch_case(c);
    ++checked;
  }
  EXPECT_GE(checked, 40);
}

// The PyTorch weight rule on hand values: s = absmax / 127.5f. With absmax =
// 255/128, s = 1/64 and 1/s = 64 are exact, so +absmax lands on 127.5 -> 128 ->
// clamps to 127, -absmax on -127.5 -> -128 (half to even, in range), 2.5/64 on
// 2.5 -> 2 and 3.5/64 on 3.5 -> 4. An all-zero row gets the observer's eps
// (FLT_EPSILON) as its scale and codes 0.
TEST(DynamicLinearPyTorch, WeightRuleByHand) {
  const std::vector<float> w{255.0f / 128.0f, -255.0f / 128.0f, 2.5f / 64.0f, 3.5f / 64.0f,
                             0.0f, 0.0f, 0.0f, 0.0f};
  dynamic_linear lin(cview(w, 2, 4), {}, weight_granularity::per_channel,
                     dynamic_scheme::for_pytorch(pytorch_engine::qnnpack, activation_range::full));
  const auto q = lin.weight_codes<std::int8_t>();
  EXPECT_EQ((std::vector<int>{q(0, 0), q(0, 1), q(0, 2), q(0, 3), q(1, 0), q(1, 3)}),
            (std::vector<int>{127, -128, 2, 4, 0, 0}));
  EXPECT_EQ(lin.weight_params().scales[0], 1.0f / 64.0f);
  EXPECT_EQ(lin.weight_params().scales[1], std::numeric_limits<float>::epsilon());
  // Per tensor: one scale from the whole matrix.
  dynamic_linear pt(cview(w, 2, 4), {}, weight_granularity::per_tensor,
                    dynamic_scheme::for_pytorch(pytorch_engine::onednn, activation_range::full));
  EXPECT_EQ(pt.weight_params().channels(), 1);
  EXPECT_EQ(pt.weight_params().scales[0], 1.0f / 64.0f);
}

// Batch range [-6.25, 9.6875] gives s = 15.9375 / 255 = 0.0625 exactly and zero
// point 100 under every rule, so 1/s = 16 is exact and x * 16 is exact. Take
// t = 0.21875 - 2^-26, so t * 16 = 3.5 - 2^-22 (just below a tie):
//   fbgemm  rne(fma(t, 16, 100)) = rne(float(103.5 - 2^-22) = 103.5) = 104   (one rounding)
//   onednn  rne(float(t * 16) + 100) = rne(103.5) = 104       (the sum rounds to the tie)
//   qnnpack 100 + rne(3.4999998) = 103;  qprune, onnxruntime: rne(t / s) + 100 = 103
// and -t: 96 (fbgemm, onednn) against 97 (the others).
TEST(DynamicLinearPyTorch, EnginesRoundTheSameTieDifferently) {
  const float t = std::nextafter(0.21875f, 0.0f);
  ASSERT_EQ(t * 16.0f, 3.5f - 0x1p-22f);
  const std::vector<float> x{-6.25f, 9.6875f, t, -t};
  struct expect {
    dynamic_scheme scheme;
    int q_pos;
    int q_neg;
  };
  const expect cases[] = {
      {dynamic_scheme::for_pytorch(pytorch_engine::fbgemm, activation_range::full), 104, 96},
      {dynamic_scheme::for_pytorch(pytorch_engine::onednn, activation_range::full), 104, 96},
      {dynamic_scheme::for_pytorch(pytorch_engine::qnnpack, activation_range::full), 103, 97},
      {dynamic_scheme::for_pytorch(pytorch_engine::qnnpack, activation_range::reduced), 103, 97},
      {dynamic_scheme::for_qprune(dtype::uint8), 103, 97},
      {dynamic_scheme::for_onnxruntime(dtype::int8), 103, 97},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(quant::to_string(c.scheme.compat)) + " " +
                 std::string(quant::to_string(c.scheme.engine)));
    const auto a = quant::choose_dynamic_activation_params(cview(x, 1, 4), c.scheme);
    ASSERT_EQ(a.scale, 0.0625);
    ASSERT_EQ(a.zero_point, 100);
    EXPECT_EQ(quant::quantize_activation(x[0], a, c.scheme), 0);
    EXPECT_EQ(quant::quantize_activation(x[1], a, c.scheme), 255);
    EXPECT_EQ(quant::quantize_activation(t, a, c.scheme), c.q_pos);
    EXPECT_EQ(quant::quantize_activation(-t, a, c.scheme), c.q_neg);
    // The same codes drive forward: identity weights (codes 127, per-tensor scale
    // 1/127 or 1/127.5) turn code q of input k into output k = (q - 100) * 127 * s * s_w.
    std::vector<float> eye(16, 0.0f);
    for (int i = 0; i < 4; ++i) eye[static_cast<std::size_t>(i * 5)] = 1.0f;
    dynamic_linear lin(cview(eye, 4, 4), {}, weight_granularity::per_tensor, c.scheme);
    ASSERT_EQ(lin.weight_codes<std::int8_t>()(2, 2), 127);
    std::vector<float> y(4);
    lin.forward(cview(x, 1, 4), view(y, 1, 4));
    const double unit = 127.0 * 0.0625 * static_cast<double>(lin.weight_params().scales[0]);
    EXPECT_NEAR(y[2] / unit, c.q_pos - 100, 1e-5);
    EXPECT_NEAR(y[3] / unit, c.q_neg - 100, 1e-5);
  }
}

// Here the product x * (1/s) is inexact, which separates fbgemm's single-rounding
// fma from onednn's product-then-add. Batch [-1, 84]: s = 85/255 = 1/3 (double),
// float(s) = 0.33333334, 1.0f/float(s) = float(1.0/s) = 3 exactly, zero point 3.
// t = float(-2.5f / 3) = -0.8333333, and t * 3 = -2.49999994 exactly:
//   fbgemm  fma(t, 3, 3) = 0.50000006 (representable) -> 1
//   onednn  float(t * 3) = -2.5 (rounds up to the tie), + 3 = 0.5 -> 0 (even)
//   qnnpack 3 + rne(float(t * 3) = -2.5) = 3 - 2 = 1
//   qprune, onnxruntime  t / 0.33333334 = -2.4999998 -> -2 -> 1
// and -t: 5.49999994 rounds to the tie 5.5 in both fbgemm and onednn -> 6, while
// qnnpack (3 + rne(2.5)) and division (rne(2.4999998) + 3) give 5.
TEST(DynamicLinearPyTorch, FbgemmFmaRoundsOnceOnInexactProducts) {
  const float t = -2.5f / 3.0f;
  const std::vector<float> x{-1.0f, 84.0f, t, -t};
  struct expect {
    dynamic_scheme scheme;
    int q_t;
    int q_neg_t;
  };
  const expect cases[] = {
      {dynamic_scheme::for_pytorch(pytorch_engine::fbgemm, activation_range::full), 1, 6},
      {dynamic_scheme::for_pytorch(pytorch_engine::onednn, activation_range::full), 0, 6},
      {dynamic_scheme::for_pytorch(pytorch_engine::qnnpack, activation_range::full), 1, 5},
      {dynamic_scheme::for_qprune(dtype::uint8), 1, 5},
      {dynamic_scheme::for_onnxruntime(dtype::uint8), 1, 5},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(quant::to_string(c.scheme.compat)) + " " +
                 std::string(quant::to_string(c.scheme.engine)));
    const auto a = quant::choose_dynamic_activation_params(cview(x, 1, 4), c.scheme);
    ASSERT_EQ(a.as_affine().scale, 1.0f / 3.0f);
    ASSERT_EQ(a.zero_point, 3);
    EXPECT_EQ(quant::quantize_activation(t, a, c.scheme), c.q_t);
    EXPECT_EQ(quant::quantize_activation(-t, a, c.scheme), c.q_neg_t);
  }
}

// ---------------------------------------------------------------------------
// ONNX Runtime and qprune modes
// ---------------------------------------------------------------------------

// ORT quantize_dynamic weights: int8 symmetric on [-127, 127] (compute_scale_zp),
// uint8 asymmetric on [0, 255]; codes = clip(rne(float(w / s)) + zp).
TEST(DynamicLinearOnnxRuntime, WeightRuleByHand) {
  // absmax 127: scale = 254 / 254 = 1, codes = rne(w): -3.5 -> -4, 2.5 -> 2, 0.5 -> 0.
  const std::vector<float> w8{127.0f, -3.5f, 2.5f, 0.5f};
  dynamic_linear s8(cview(w8, 1, 4), {}, weight_granularity::per_tensor,
                    dynamic_scheme::for_onnxruntime(dtype::int8));
  EXPECT_EQ(s8.weight_params().at(0), (affine_params{1.0f, 0}));
  const auto q8 = s8.weight_codes<std::int8_t>();
  EXPECT_EQ((std::vector<int>{q8(0, 0), q8(0, 1), q8(0, 2), q8(0, 3)}),
            (std::vector<int>{127, -4, 2, 0}));
  EXPECT_THROW(static_cast<void>(s8.weight_codes<std::uint8_t>()), config_error);
  // Row [-1, 3, 0, 1]: scale = float(4 / 255), zp = rne(1 / scale) = rne(63.75) = 64;
  // -1 -> -64 + 64 = 0, 3 -> rne(191.25) + 64 = 255, 0 -> 64, 1 -> 128. Row 2 is all
  // zero: scale 1, zero point 0, codes 0.
  const std::vector<float> wu{-1.0f, 3.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  dynamic_linear u8(cview(wu, 2, 4), {}, weight_granularity::per_channel,
                    dynamic_scheme::for_onnxruntime(dtype::uint8));
  EXPECT_EQ(u8.weight_params().at(0), (affine_params{static_cast<float>(4.0 / 255.0), 64}));
  EXPECT_EQ(u8.weight_params().at(1), (affine_params{1.0f, 0}));
  const auto qu = u8.weight_codes<std::uint8_t>();
  EXPECT_EQ((std::vector<int>{qu(0, 0), qu(0, 1), qu(0, 2), qu(0, 3), qu(1, 0), qu(1, 3)}),
            (std::vector<int>{0, 255, 64, 128, 0, 0}));
}

// dynamic_linear in ORT mode equals the quantize_dynamic graph built from its
// documented pieces: DynamicQuantizeLinear(x) -> MatMulInteger(qx, qw, zx, zw) ->
// Cast(float) -> Mul(scale_x * scale_w) -> Add(bias), each node rounding to float32.
TEST(DynamicLinearOnnxRuntime, EqualsTheQuantizeDynamicGraph) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(41);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const dtype wt : {dtype::int8, dtype::uint8}) {
    for (const auto g : {weight_granularity::per_tensor, weight_granularity::per_channel}) {
      const index_t m = 5, k = 19, n = 7;
      std::vector<float> w(static_cast<std::size_t>(n * k)), x(static_cast<std::size_t>(m * k)),
          b(static_cast<std::size_t>(n));
      for (auto& v : w) v = 0.4f * nd(rng) + (wt == dtype::uint8 ? 0.3f : 0.0f);
      for (auto& v : x) v = 2.0f * nd(rng) + 0.5f;
      for (auto& v : b) v = nd(rng);
      dynamic_linear lin(cview(w, n, k), b, g, dynamic_scheme::for_onnxruntime(wt));
      std::vector<float> y(static_cast<std::size_t>(m * n));
      lin.forward(cview(x, m, k), view(y, m, n));

      affine_params px;
      const auto qx = dql(x, &px);
      EXPECT_EQ(lin.last_activation_params().as_affine(), px);
      for (index_t i = 0; i < m; ++i) {
        for (index_t j = 0; j < n; ++j) {
          const affine_params pw = lin.weight_params().at(g == weight_granularity::per_channel ? j : 0);
          std::int64_t acc = 0;
          for (index_t kk = 0; kk < k; ++kk) {
            const std::int64_t cw = wt == dtype::int8
                                        ? std::int64_t{lin.weight_codes<std::int8_t>()(j, kk)}
                                        : std::int64_t{lin.weight_codes<std::uint8_t>()(j, kk)};
            acc += (std::int64_t{qx[static_cast<std::size_t>(i * k + kk)]} - px.zero_point) *
                   (cw - pw.zero_point);
          }
          const volatile float cast = static_cast<float>(acc);     // Cast
          const volatile float mul_scales = px.scale * pw.scale;   // Mul(x_scale, w_scale)
          const volatile float mul = cast * mul_scales;            // Mul
          const float expected = mul + b[static_cast<std::size_t>(j)];  // Add
          EXPECT_EQ(bits(y[static_cast<std::size_t>(i * n + j)]), bits(expected))
              << to_string(wt) << " (" << i << ", " << j << ")";
        }
      }
    }
  }
}

// qprune's rule by hand. uint8: range [0, 255] -> scale 1, zero point 0, codes
// rne(x): 2.5 -> 2, 3.5 -> 4. Weights with absmax 127 -> scale 1, codes = w.
// y = [2 * 127 + 0.5, 4 * 127 - 1] exactly.
TEST(DynamicLinearQprune, ByHand) {
  const std::vector<float> w{127.0f, 0.0f, 0.0f, 0.0f, 0.0f, 127.0f};
  const std::vector<float> b{0.5f, -1.0f};
  dynamic_linear lin(cview(w, 2, 3), b, weight_granularity::per_channel,
                     dynamic_scheme::for_qprune(dtype::uint8));
  EXPECT_EQ(lin.weight_params().at(0), (affine_params{1.0f, 0}));
  const std::vector<float> x{2.5f, 255.0f, 3.5f};
  std::vector<float> y(2);
  const auto a = lin.forward(cview(x, 1, 3), view(y, 1, 2));
  EXPECT_EQ(a, (dynamic_activation_params{2.5f, 255.0f, 1.0, 0}));
  EXPECT_EQ(y, (std::vector<float>{254.5f, 507.0f}));

  // int8 activations: range [-128, 127] -> scale 1, zero point -128 - rne(-128) = 0;
  // codes rne(x) in [-128, 127]: 0.5 -> 0, -0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
  const auto s8 = dynamic_scheme::for_qprune(dtype::int8);
  const std::vector<float> xi{-128.0f, 127.0f, 0.5f, -0.5f, 1.5f, 2.5f};
  const auto ai = quant::choose_dynamic_activation_params(cview(xi, 1, 6), s8);
  EXPECT_EQ(ai.as_affine(), (affine_params{1.0f, 0}));
  std::vector<int> codes;
  for (float v : xi) codes.push_back(quant::quantize_activation(v, ai, s8));
  EXPECT_EQ(codes, (std::vector<int>{-128, 127, 0, 0, 2, 2}));
  // An all-zero weight row: scale 1, codes 0 (no zero scale ever reaches the rescale).
  const std::vector<float> wz{0.0f, 0.0f, 1.0f, -2.0f};
  dynamic_linear z(cview(wz, 2, 2), {}, weight_granularity::per_channel, s8);
  EXPECT_EQ(z.weight_params().at(0), (affine_params{1.0f, 0}));
  EXPECT_EQ(z.weight_codes<std::int8_t>()(0, 0), 0);
  EXPECT_EQ(z.weight_codes<std::int8_t>()(1, 1), -127);
  EXPECT_EQ(z.weight_codes<std::int8_t>()(1, 0), 64);  // 1 / (2/127) = 63.5 -> 64 (even)
}

// ---------------------------------------------------------------------------
// Every scheme: float64 reference, properties, shapes
// ---------------------------------------------------------------------------

struct named_scheme {
  const char* name;
  dynamic_scheme scheme;
};

std::vector<named_scheme> all_schemes() {
  return {
      {"qprune_u8", dynamic_scheme::for_qprune(dtype::uint8)},
      {"qprune_s8", dynamic_scheme::for_qprune(dtype::int8)},
      {"torch_fbgemm_reduced", dynamic_scheme::for_pytorch(pytorch_engine::fbgemm, activation_range::reduced)},
      {"torch_fbgemm_full", dynamic_scheme::for_pytorch(pytorch_engine::fbgemm, activation_range::full)},
      {"torch_qnnpack", dynamic_scheme::for_pytorch(pytorch_engine::qnnpack, activation_range::reduced)},
      {"torch_onednn_reduced", dynamic_scheme::for_pytorch(pytorch_engine::onednn, activation_range::reduced)},
      {"torch_onednn_full", dynamic_scheme::for_pytorch(pytorch_engine::onednn, activation_range::full)},
      {"ort_s8", dynamic_scheme::for_onnxruntime(dtype::int8)},
      {"ort_u8", dynamic_scheme::for_onnxruntime(dtype::uint8)},
  };
}

bool is_onednn(const dynamic_scheme& s) {
  return s.compat == dynamic_compat::pytorch && s.engine == pytorch_engine::onednn;
}

struct shape3 {
  index_t m, k, n;
};

// |y - sum_k x w - b| against the float64 product of the unquantized inputs, within
//   sum_k (dx (|w| + dw) + |x| dw)  +  8 * 2^-24 * (sum_k (|x| + dx)(|w| + dw) + |b|)
// where dx = s_x / 2 and dw = s_w[n] / 2 (each with a 2^-10 relative margin for the
// reciprocal-based quantizers, whose codes may sit one rounding away from nearest),
// i.e. every input and weight is at most half a step from its grid point, and the
// final float expression (at most 6 roundings for onednn) adds a few ulps.
TEST(DynamicLinear, WithinQuantizationErrorOfFloat64Reference) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-2.0f, 2.0f);
  const shape3 shapes[] = {{0, 5, 3}, {1, 1, 1}, {1, 7, 1}, {3, 1, 4},  {7, 13, 11},
                           {17, 33, 5}, {2, 64, 16}, {4, 257, 3}};
  for (const auto& ns : all_schemes()) {
    for (const auto g : {weight_granularity::per_tensor, weight_granularity::per_channel}) {
      for (const auto& sh : shapes) {
        SCOPED_TRACE(std::string(ns.name) + (g == weight_granularity::per_channel ? " pc " : " pt ") +
                     std::to_string(sh.m) + "x" + std::to_string(sh.k) + "x" + std::to_string(sh.n));
        std::vector<float> w(static_cast<std::size_t>(sh.n * sh.k));
        std::vector<float> x(static_cast<std::size_t>(sh.m * sh.k));
        std::vector<float> b(static_cast<std::size_t>(sh.n));
        const float xs = std::exp2(ud(rng) * 3.0f), xo = ud(rng) * xs;
        for (index_t i = 0; i < sh.n; ++i) {
          const float rs = std::exp2(ud(rng));  // rows of different magnitude
          for (index_t j = 0; j < sh.k; ++j) w[static_cast<std::size_t>(i * sh.k + j)] = rs * nd(rng);
        }
        for (auto& v : x) v = xo + xs * nd(rng);
        for (auto& v : b) v = nd(rng);
        dynamic_linear lin(cview(w, sh.n, sh.k), b, g, ns.scheme);
        std::vector<float> y(static_cast<std::size_t>(sh.m * sh.n), kNaN);
        const auto a = lin.forward(cview(x, sh.m, sh.k), view(y, sh.m, sh.n));
        const double margin = 0.5 + 0x1p-10;
        const double dx = static_cast<double>(a.as_affine().scale) * margin;
        for (index_t i = 0; i < sh.m; ++i) {
          for (index_t j = 0; j < sh.n; ++j) {
            const double sw = lin.weight_params().at(g == weight_granularity::per_channel ? j : 0).scale;
            const double dw = sw * margin;
            double ref = b[static_cast<std::size_t>(j)];
            double quant_err = 0.0, mag = std::fabs(ref);
            for (index_t kk = 0; kk < sh.k; ++kk) {
              const double xv = x[static_cast<std::size_t>(i * sh.k + kk)];
              const double wv = w[static_cast<std::size_t>(j * sh.k + kk)];
              ref += xv * wv;
              quant_err += dx * (std::fabs(wv) + dw) + std::fabs(xv) * dw;
              mag += (std::fabs(xv) + dx) * (std::fabs(wv) + dw);
            }
            const double bound = quant_err + 8.0 * 0x1p-24 * mag;
            const float got = y[static_cast<std::size_t>(i * sh.n + j)];
            EXPECT_LE(std::fabs(static_cast<double>(got) - ref), bound)
                << "y(" << i << ", " << j << ") = " << got << ", reference " << ref;
          }
        }
      }
    }
  }
}

// A row of exact zeros quantizes to the zero point in every mode, so its
// accumulator is 0 and the output is the bias: exactly for float(0) * m + b; for
// onednn, (0 + float(b * c)) * float(1 / c), within 2 ulp of b (torch's own onednn
// output for an all-zero input in choose_qparams_dynamic.json differs from b by 1 ulp).
TEST(DynamicLinear, ZeroRowGivesBias) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const index_t m = 4, k = 10, n = 6;
  std::vector<float> w(static_cast<std::size_t>(n * k)), b(static_cast<std::size_t>(n));
  for (auto& v : w) v = nd(rng);
  for (auto& v : b) v = nd(rng);
  for (const auto& ns : all_schemes()) {
    SCOPED_TRACE(ns.name);
    for (const bool whole_batch_zero : {false, true}) {
      std::vector<float> x(static_cast<std::size_t>(m * k), 0.0f);
      if (!whole_batch_zero) {
        for (index_t j = 0; j < k; ++j) {
          x[static_cast<std::size_t>(j)] = nd(rng) + 1.0f;
          x[static_cast<std::size_t>(3 * k + j)] = nd(rng) - 1.0f;
        }
      }
      dynamic_linear lin(cview(w, n, k), b, weight_granularity::per_channel, ns.scheme);
      std::vector<float> y(static_cast<std::size_t>(m * n));
      lin.forward(cview(x, m, k), view(y, m, n));
      for (const index_t row : {index_t{1}, index_t{2}}) {
        for (index_t j = 0; j < n; ++j) {
          const float got = y[static_cast<std::size_t>(row * n + j)];
          if (is_onednn(ns.scheme)) {
            EXPECT_LE(ulp_distance(got, b[static_cast<std::size_t>(j)]), 2);
          } else {
            EXPECT_EQ(got, b[static_cast<std::size_t>(j)]);
          }
        }
      }
    }
  }
}

// Views of any layout, y aliasing x, repeated calls and M = 0 give the same bits.
TEST(DynamicLinear, LayoutsAliasingAndRepeatedCalls) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(13);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const index_t m = 5, k = 8, n = 8;
  std::vector<float> w(static_cast<std::size_t>(n * k)), x(static_cast<std::size_t>(m * k));
  for (auto& v : w) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  for (const auto& ns : all_schemes()) {
    SCOPED_TRACE(ns.name);
    dynamic_linear lin(cview(w, n, k), {}, weight_granularity::per_channel, ns.scheme);
    std::vector<float> y(static_cast<std::size_t>(m * n));
    const auto a = lin.forward(cview(x, m, k), view(y, m, n));
    // Column-major copies of x and the weights, column-major y.
    std::vector<float> xc(x.size()), wc(w.size()), yc(y.size());
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < k; ++j) xc[static_cast<std::size_t>(j * m + i)] = x[static_cast<std::size_t>(i * k + j)];
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < k; ++j) wc[static_cast<std::size_t>(j * n + i)] = w[static_cast<std::size_t>(i * k + j)];
    dynamic_linear lin_c(tensor_view<const float, 2, layout_left>(wc.data(), n, k), {},
                         weight_granularity::per_channel, ns.scheme);
    EXPECT_EQ(lin_c.weight_params(), lin.weight_params());
    EXPECT_EQ(lin_c.forward(tensor_view<const float, 2, layout_left>(xc.data(), m, k),
                            tensor_view<float, 2, layout_left>(yc.data(), m, n)),
              a);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j)
        EXPECT_EQ(bits(yc[static_cast<std::size_t>(j * m + i)]), bits(y[static_cast<std::size_t>(i * n + j)]));
    // In place: y written over x (N == K).
    std::vector<float> xy = x;
    lin.forward(cview(xy, m, k), view(xy, m, n));
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_EQ(bits(xy[i]), bits(y[i]));
    // Again, same bits; then an empty batch records the [0, 0] range.
    std::vector<float> y2(y.size());
    EXPECT_EQ(lin.forward(cview(x, m, k), view(y2, m, n)), a);
    EXPECT_EQ(y2, y);
    const auto e = lin.forward(tensor_view<const float, 2>(x.data(), 0, k), tensor_view<float, 2>(y2.data(), 0, n));
    EXPECT_EQ(e.min, 0.0f);
    EXPECT_EQ(e.max, 0.0f);
    EXPECT_EQ(lin.last_activation_params(), e);
    EXPECT_EQ(y2, y);
  }
}

// The int8-GEMM path (every instruction set this CPU has) gives the same bits as
// the scalar reference path for every mode, on random and edge shapes, strided
// views, exact zeros of both signs, constant batches and code-range ties.
TEST(DynamicLinear, EveryIsaPathMatchesTheScalarTwin) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(29);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 9);
  using qprune::kernels::isa;
  const index_t shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {1, 1024, 48}, {17, 300, 33},
                               {64, 64, 100}, {2, 1031, 16}, {5, 3, 1}};
  for (const auto& ns : all_schemes()) {
    SCOPED_TRACE(ns.name);
    for (const auto& sh : shapes) {
      const index_t m = sh[0], k = sh[1], n = sh[2];
      SCOPED_TRACE("m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n));
      std::vector<float> w(static_cast<std::size_t>(n * k)), x(static_cast<std::size_t>(m * k)),
          b(static_cast<std::size_t>(n));
      for (auto& v : w) v = nd(rng) * 0.05f;
      for (auto& v : b) v = nd(rng);
      for (auto& v : x) {
        const int c = pick(rng);
        v = c == 0 ? 0.0f : c == 1 ? -0.0f : c == 2 ? std::ldexp(std::round(nd(rng) * 8.0f), -3) : nd(rng) * 3.0f;
      }
      const dynamic_linear ref(cview(w, n, k), b, weight_granularity::per_channel, ns.scheme, isa::scalar);
      EXPECT_FALSE(ref.uses_gemm_kernel());
      for (const isa path : qprune::kernels::supported_isas()) {
        if (path == isa::scalar) continue;
        SCOPED_TRACE(std::string(qprune::kernels::to_string(path)));
        for (auto batch : {x, std::vector<float>(x.size(), 0.75f)}) {
          dynamic_linear r = ref;
          dynamic_linear fast(cview(w, n, k), b, weight_granularity::per_channel, ns.scheme, path);
          EXPECT_EQ(fast.uses_gemm_kernel(),
                    !is_onednn(ns.scheme) && ns.scheme.weight_type == dtype::int8);
          std::vector<float> y0(static_cast<std::size_t>(m * n)), y1(y0.size(), kNaN);
          const auto a0 = r.forward(cview(batch, m, k), view(y0, m, n));
          const auto a1 = fast.forward(cview(batch, m, k), view(y1, m, n));
          EXPECT_EQ(a0, a1);
          for (std::size_t i = 0; i < y0.size(); ++i) ASSERT_EQ(bits(y0[i]), bits(y1[i])) << i;
          // Column-major input and output take the strided branches.
          std::vector<float> xc(batch.size()), yc(y0.size(), kNaN);
          for (index_t i = 0; i < m; ++i)
            for (index_t j = 0; j < k; ++j)
              xc[static_cast<std::size_t>(j * m + i)] = batch[static_cast<std::size_t>(i * k + j)];
          EXPECT_EQ(fast.forward(tensor_view<const float, 2, layout_left>(xc.data(), m, k),
                                 tensor_view<float, 2, layout_left>(yc.data(), m, n)),
                    a0);
          for (index_t i = 0; i < m; ++i)
            for (index_t j = 0; j < n; ++j)
              ASSERT_EQ(bits(yc[static_cast<std::size_t>(j * m + i)]), bits(y0[static_cast<std::size_t>(i * n + j)]));
        }
      }
    }
  }
}

TEST(DynamicLinear, FastPathNamesTheFirstNonFiniteInput) {
  const std::vector<float> w(64, 0.5f);
  std::vector<float> x(4 * 16, 1.0f), y(4 * 4);
  x[2 * 16 + 9] = kInf;
  dynamic_linear lin(cview(w, 4, 16), {}, weight_granularity::per_channel,
                     dynamic_scheme::for_qprune(dtype::uint8));
  try {
    lin.forward(cview(x, 4, 16), view(y, 4, 4));
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("input element (2, 9) is infinite"), std::string::npos) << e.what();
  }
  x[2 * 16 + 9] = 1.0f;
  x[3 * 16 + 15] = kNaN;
  EXPECT_THROW(lin.forward(cview(x, 4, 16), view(y, 4, 4)), config_error);
}

// The int32 accumulator bound: K = 66311 = floor((2^31 - 1) / (255 * 127)) with
// every |qx - zx| = 255 and every qw = 127 reaches |acc| = 2147481735 without
// overflow (UBSan checks this in the sanitizer build); K = 66312 is refused.
TEST(DynamicLinear, AccumulatorBoundOnK) {
  EXPECT_EQ(dynamic_linear::max_in_features(dynamic_scheme::for_qprune(dtype::uint8)), 66311);
  EXPECT_EQ(dynamic_linear::max_in_features(dynamic_scheme::for_qprune(dtype::int8)), 66311);
  EXPECT_EQ(dynamic_linear::max_in_features(
                dynamic_scheme::for_pytorch(pytorch_engine::fbgemm, activation_range::reduced)),
            65793);
  EXPECT_EQ(dynamic_linear::max_in_features(dynamic_scheme::for_onnxruntime(dtype::int8)), 65793);
  EXPECT_EQ(dynamic_linear::max_in_features(dynamic_scheme::for_onnxruntime(dtype::uint8)), 33025);

  const index_t k = 66311;
  const std::vector<float> w(static_cast<std::size_t>(k), 1.0f);
  const auto s = dynamic_scheme::for_qprune(dtype::uint8);
  dynamic_linear lin(cview(w, 1, k), {}, weight_granularity::per_tensor, s);
  for (const float c : {0.75f, -0.75f}) {
    SCOPED_TRACE(c);
    const std::vector<float> x(static_cast<std::size_t>(k), c);
    float y = 0.0f;
    const auto a = lin.forward(cview(x, 1, k), tensor_view<float, 2>(&y, 1, 1));
    EXPECT_EQ(a.zero_point, c > 0 ? 0 : 255);  // codes 255 - 0 or 0 - 255
    EXPECT_NEAR(y / (static_cast<double>(k) * c), 1.0, 1e-6);
  }
  const std::vector<float> w_big(static_cast<std::size_t>(k + 1), 1.0f);
  EXPECT_THROW(dynamic_linear(cview(w_big, 1, k + 1), {}, weight_granularity::per_tensor, s),
               config_error);
  const std::vector<float> w_u8(33026, 1.0f);
  EXPECT_THROW(dynamic_linear(cview(w_u8, 1, 33026), {}, weight_granularity::per_tensor,
                              dynamic_scheme::for_onnxruntime(dtype::uint8)),
               config_error);
  EXPECT_NO_THROW(dynamic_linear(cview(w_u8, 1, 33025), {}, weight_granularity::per_tensor,
                                 dynamic_scheme::for_onnxruntime(dtype::uint8)));
}

TEST(DynamicLinear, Errors) {
  const std::vector<float> w{1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const auto s = dynamic_scheme::for_qprune(dtype::uint8);
  const auto pt = weight_granularity::per_tensor;
  // Shapes at construction.
  EXPECT_THROW(dynamic_linear(cview(w, 0, 3), {}, pt, s), shape_error);
  EXPECT_THROW(dynamic_linear(cview(w, 2, 0), {}, pt, s), shape_error);
  const std::vector<float> b3{1.0f, 2.0f, 3.0f};
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), b3, pt, s), shape_error);
  // Non-finite weights or bias.
  std::vector<float> wn = w;
  wn[4] = kNaN;
  EXPECT_THROW(dynamic_linear(cview(wn, 2, 3), {}, pt, s), config_error);
  wn[4] = -kInf;
  EXPECT_THROW(dynamic_linear(cview(wn, 2, 3), {}, pt, s), config_error);
  const std::vector<float> binf{0.0f, kInf};
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), binf, pt, s), config_error);
  // Schemes whose fields do not fit their mode.
  dynamic_scheme bad = dynamic_scheme::for_qprune(dtype::int16);
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), {}, pt, bad), config_error);
  bad = dynamic_scheme::for_pytorch(pytorch_engine::onednn, activation_range::full);
  bad.weight_type = dtype::uint8;
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), {}, pt, bad), config_error);
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), {}, pt, dynamic_scheme::for_onnxruntime(dtype::int16)),
               config_error);
  bad = dynamic_scheme::for_onnxruntime(dtype::int8);
  bad.activation_type = dtype::int8;
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), {}, pt, bad), config_error);
  EXPECT_THROW(dynamic_linear(cview(w, 2, 3), {}, static_cast<weight_granularity>(7), s), config_error);
  // forward: extents and non-finite input.
  dynamic_linear lin(cview(w, 2, 3), {}, pt, s);
  std::vector<float> x(6, 0.5f), y(4);
  EXPECT_THROW(lin.forward(cview(x, 3, 2), view(y, 3, 2)), shape_error);   // K mismatch
  EXPECT_THROW(lin.forward(cview(x, 2, 3), view(y, 1, 2)), shape_error);   // M mismatch
  EXPECT_THROW(lin.forward(cview(x, 2, 3), view(y, 2, 1)), shape_error);   // N mismatch
  x[5] = kNaN;
  try {
    lin.forward(cview(x, 2, 3), view(y, 2, 2));
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("input element (1, 2) is NaN"), std::string::npos) << e.what();
  }
  EXPECT_THROW(static_cast<void>(lin.weight_codes<std::uint8_t>()), config_error);
  EXPECT_EQ(lin.in_features(), 3);
  EXPECT_EQ(lin.out_features(), 2);
  EXPECT_EQ(lin.scheme(), s);
  EXPECT_EQ(lin.granularity(), pt);
  EXPECT_EQ(lin.bias().size(), 2u);
  EXPECT_EQ(lin.bias()[1], 0.0f);
}

}  // namespace

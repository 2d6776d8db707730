// Tests for quant/qparams.hpp: PyTorch's calculate_qparams and
// ChooseQuantizationParams against torch 1.13 vectors, ONNX Runtime's
// compute_scale_zp against numpy-generated and hand-computed cases, and the
// properties of qprune's own choose_affine_params / choose_symmetric_params.
#include "qprune/quant/qparams.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "support/data.hpp"
#include "support/json.hpp"
#include "quant/torch_observer_config.hpp"
#include "support/random.hpp"

namespace {

using qprune::test::config_from;
using qprune::test::load_json;
using qprune::test::f32;
using qprune::test::bits;

namespace quant = qprune::quant;
namespace pytorch = qprune::quant::pytorch;
namespace ort = qprune::quant::onnxruntime;
using quant::dtype;
using quant::qrange;
using json = nlohmann::json;




// ---------------------------------------------------------------------------
// PyTorch observers' _calculate_qparams
// ---------------------------------------------------------------------------

TEST(PytorchCalculateQparams, EveryObserverCaseFromStoredMinMax) {
  const json d = load_json("quant/observers.json");
  int checked = 0;
  for (const json& c : d["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const pytorch::observer_config cfg = config_from(c);
    const qrange r = pytorch::effective_range(cfg);
    EXPECT_EQ(r.qmin, c["effective_quant_min"].get<int>());
    EXPECT_EQ(r.qmax, c["effective_quant_max"].get<int>());
    if (c["observer"] == "HistogramObserver") continue;  // its qparams use the searched range
    const auto& mins = c["min_val_bits"];
    const auto& maxs = c["max_val_bits"];
    if (mins.empty()) {  // per-channel observer that saw nothing: torch returns (1.0, 0)
      ASSERT_EQ(c["scale_bits"].size(), 1u);
      EXPECT_EQ(bits(1.0f), c["scale_bits"][0].get<std::uint32_t>());
      continue;
    }
    ASSERT_EQ(mins.size(), c["scale_bits"].size());
    for (std::size_t ch = 0; ch < mins.size(); ++ch) {
      const quant::affine_params p = pytorch::calculate_qparams(f32(mins[ch]), f32(maxs[ch]), cfg);
      EXPECT_EQ(bits(p.scale), c["scale_bits"][ch].get<std::uint32_t>()) << "channel " << ch;
      EXPECT_EQ(p.zero_point, c["zero_point"][ch].get<int>()) << "channel " << ch;
      ++checked;
    }
  }
  EXPECT_GE(checked, 60);
}

TEST(PytorchCalculateQparams, HandComputedQuirks) {
  pytorch::observer_config c;
  c.type = dtype::int8;
  c.scheme = pytorch::qscheme::per_tensor_symmetric;
  // qint8 symmetric divides by 127.5, not 127.
  EXPECT_EQ(pytorch::calculate_qparams(-2.55f, 2.0f, c).scale, 2.55f / 127.5f);
  EXPECT_EQ(pytorch::calculate_qparams(-2.55f, 2.0f, c).zero_point, 0);
  // quint8 symmetric: zero point 128; with a custom range (qmin + qmax) // 2.
  c.type = dtype::uint8;
  EXPECT_EQ(pytorch::calculate_qparams(0.5f, 3.0f, c).zero_point, 128);
  c.custom_range = qrange{0, 15};
  EXPECT_EQ(pytorch::calculate_qparams(0.5f, 3.0f, c).zero_point, 7);
  // All-zero range: scale = eps.
  pytorch::observer_config a;
  EXPECT_EQ(pytorch::calculate_qparams(0.0f, 0.0f, a).scale, pytorch::default_eps);
  EXPECT_EQ(pytorch::calculate_qparams(0.0f, 0.0f, a).zero_point, 0);
  // Uninitialised.
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(pytorch::calculate_qparams(inf, -inf, a), (quant::affine_params{1.0f, 0}));
  // Affine zero-point tie: min / scale = -0.5 rounds half to even -> zero point 0.
  EXPECT_EQ(pytorch::calculate_qparams(-0.5f, 254.5f, a).zero_point, 0);
  EXPECT_THROW(static_cast<void>(pytorch::calculate_qparams(1.0f, 0.0f, a)), qprune::config_error);
  EXPECT_THROW(static_cast<void>(pytorch::calculate_qparams(std::nanf(""), 0.0f, a)), qprune::config_error);
}

TEST(PytorchCalculateQparams, EffectiveRanges) {
  pytorch::observer_config c;
  EXPECT_EQ(pytorch::effective_range(c), (qrange{0, 255}));
  c.reduce_range = true;
  EXPECT_EQ(pytorch::effective_range(c), (qrange{0, 127}));
  c.type = dtype::int8;
  EXPECT_EQ(pytorch::effective_range(c), (qrange{-64, 63}));
  c.custom_range = qrange{-127, 127};
  EXPECT_EQ(pytorch::effective_range(c), (qrange{-64, 63}));  // floor halves: -127 // 2 = -64
  c.custom_range = qrange{-15, 15};
  EXPECT_EQ(pytorch::effective_range(c), (qrange{-8, 7}));
  c.custom_range = qrange{1, 15};
  EXPECT_THROW(static_cast<void>(pytorch::effective_range(c)), qprune::config_error);
  c.custom_range.reset();
  c.type = dtype::int16;
  EXPECT_THROW(static_cast<void>(pytorch::effective_range(c)), qprune::config_error);
}

// ---------------------------------------------------------------------------
// PyTorch ChooseQuantizationParams (dynamic quantization)
// ---------------------------------------------------------------------------

TEST(PytorchChooseQuantizationParams, EveryTorchCase) {
  const json d = load_json("quant/choose_qparams_dynamic.json");
  int n = 0;
  for (const json& c : d["choose_qparams"]) {
    SCOPED_TRACE(c["name"].get<std::string>() + " engine " + c["engine"].get<std::string>() +
                 " reduce_range " + std::to_string(c["reduce_range"].get<bool>()));
    // qnnpack ignores reduce_range (see the file's notes).
    const bool rr = c["reduce_range"].get<bool>() && c["engine"] != "qnnpack";
    const pytorch::tensor_qparams q =
        pytorch::choose_quantization_params(f32(c["min_bits"]), f32(c["max_bits"]), 0, 255, false, false, rr);
    EXPECT_EQ(std::bit_cast<std::uint64_t>(q.scale), c["scale_bits64"].get<std::uint64_t>());
    EXPECT_EQ(bits(q.as_affine().scale), c["scale_bits"].get<std::uint32_t>());
    EXPECT_EQ(q.zero_point, c["zero_point"].get<int>());
    ++n;
  }
  EXPECT_GE(n, 40);
}

TEST(PytorchChooseQuantizationParams, HandComputed) {
  // [0, 255] on [0, 255]: scale 1, zero point 0.
  auto q = pytorch::choose_quantization_params(0.0f, 255.0f);
  EXPECT_EQ(q.scale, 1.0);
  EXPECT_EQ(q.zero_point, 0);
  // All zero: scale 0.1 (float(scale) == 0), zero point 0.
  q = pytorch::choose_quantization_params(0.0f, 0.0f);
  EXPECT_EQ(q.scale, 0.1);
  EXPECT_EQ(q.zero_point, 0);
  // Below the fp16 floor: scale 6.1e-5f and the range widened.
  q = pytorch::choose_quantization_params(0.0f, 1e-4f);
  EXPECT_EQ(q.scale, static_cast<double>(6.1e-5f));
  EXPECT_EQ(q.zero_point, 0);
  // Negative only: zero point from the max side = 255.
  q = pytorch::choose_quantization_params(-2.0f, -1.0f);
  EXPECT_EQ(q.scale, 2.0 / 255.0);
  EXPECT_EQ(q.zero_point, 255);
  // reduce_range halves [0, 255] to [0, 127].
  q = pytorch::choose_quantization_params(0.0f, 127.0f, 0, 255, false, false, true);
  EXPECT_EQ(q.scale, 1.0);
  EXPECT_THROW(static_cast<void>(pytorch::choose_quantization_params(1.0f, 0.0f)), qprune::config_error);
}

// ---------------------------------------------------------------------------
// ONNX Runtime
// ---------------------------------------------------------------------------

dtype ort_type(const std::string& s) {
  if (s == "int8") return dtype::int8;
  if (s == "uint8") return dtype::uint8;
  if (s == "int16") return dtype::int16;
  if (s == "uint16") return dtype::uint16;
  if (s == "int4") return dtype::int4;
  if (s == "uint4") return dtype::uint4;
  throw std::runtime_error("unknown type " + s);
}

TEST(OrtComputeScaleZp, EveryNumpyCase) {
  const json d = load_json("quant/ort_qparams.json");
  int n = 0;
  for (const json& c : d["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const qrange r = ort::qrange_for(ort_type(c["qtype"]), c["reduce_range"], c["symmetric"]);
    ASSERT_EQ(r, (qrange{c["qmin"].get<int>(), c["qmax"].get<int>()}));
    std::optional<float> mrr;
    if (c.contains("min_real_range_bits")) mrr = f32(c["min_real_range_bits"]);
    const quant::affine_params p =
        ort::compute_scale_zp(f32(c["rmin_bits"]), f32(c["rmax_bits"]), r, c["symmetric"], mrr);
    EXPECT_EQ(bits(p.scale), c["scale_bits"].get<std::uint32_t>());
    EXPECT_EQ(p.zero_point, c["zero_point"].get<int>());
    ++n;
  }
  EXPECT_GE(n, 300);
}

TEST(OrtComputeScaleZp, HandComputed) {
  const qrange u8{0, 255};
  const qrange s8{-128, 127};
  // Exact unit scale.
  EXPECT_EQ(ort::compute_scale_zp(0.0f, 255.0f, u8, false), (quant::affine_params{1.0f, 0}));
  // Zero-point ties round half to even: 0 - (-0.5) / 1 = 0.5 -> 0; 1.5 -> 2.
  EXPECT_EQ(ort::compute_scale_zp(-0.5f, 254.5f, u8, false), (quant::affine_params{1.0f, 0}));
  EXPECT_EQ(ort::compute_scale_zp(-1.5f, 253.5f, u8, false), (quant::affine_params{1.0f, 2}));
  // Positive-only range is widened to contain 0.
  EXPECT_EQ(ort::compute_scale_zp(2.0f, 3.0f, u8, false),
            (quant::affine_params{static_cast<float>(3.0 / 255.0), 0}));
  // Negative-only on int8: zp = round(-128 + 3 / (3/255)) = 127.
  EXPECT_EQ(ort::compute_scale_zp(-3.0f, -2.0f, s8, false),
            (quant::affine_params{static_cast<float>(3.0 / 255.0), 127}));
  // Symmetric int8 [-127, 127]: scale = 2 * absmax / 254, zero point 0.
  EXPECT_EQ(ort::compute_scale_zp(-1.0f, 0.5f, ort::qrange_for(dtype::int8, false, true), true),
            (quant::affine_params{static_cast<float>(2.0 / 254.0), 0}));
  // Symmetric uint8 uses [0, 254], so its zero point is round(254 / 2) = 127 (not 128).
  EXPECT_EQ(ort::compute_scale_zp(-1.0f, 2.0f, ort::qrange_for(dtype::uint8, false, true), true),
            (quant::affine_params{static_cast<float>(4.0 / 254.0), 127}));
  // The full uint8 range with symmetric=True gives round(127.5) = 128 (half to even).
  EXPECT_EQ(ort::compute_scale_zp(-1.0f, 2.0f, u8, true).zero_point, 128);
  // Zero range, and a range below float32's smallest normal: (1, 0).
  EXPECT_EQ(ort::compute_scale_zp(0.0f, 0.0f, u8, false), (quant::affine_params{1.0f, 0}));
  EXPECT_EQ(ort::compute_scale_zp(0.0f, 1e-37f, u8, false), (quant::affine_params{1.0f, 0}));
  // min_real_range widens rmax to rmin + 1.
  EXPECT_EQ(ort::compute_scale_zp(0.0f, 0.001f, u8, false, 1.0f),
            (quant::affine_params{static_cast<float>(1.0 / 255.0), 0}));
  EXPECT_THROW(static_cast<void>(ort::compute_scale_zp(0.0f, 1.0f, qrange{1, 255}, false)), qprune::config_error);
  EXPECT_THROW(static_cast<void>(ort::compute_scale_zp(1.0f, 0.0f, u8, false)), qprune::config_error);
}

TEST(OrtQrangeFor, EveryTableEntry) {
  struct row {
    dtype t;
    qrange normal, symmetric, reduced;
  };
  const row rows[] = {
      {dtype::int8, {-128, 127}, {-127, 127}, {-64, 64}},
      {dtype::uint8, {0, 255}, {0, 254}, {0, 127}},
      {dtype::int16, {-32768, 32767}, {-32767, 32767}, {-16384, 16384}},
      {dtype::uint16, {0, 65535}, {0, 65534}, {0, 32767}},
      {dtype::int4, {-8, 7}, {-8, 7}, {-4, 3}},
      {dtype::uint4, {0, 15}, {0, 15}, {0, 7}},
  };
  for (const row& r : rows) {
    SCOPED_TRACE(std::string(quant::to_string(r.t)));
    EXPECT_EQ(ort::qrange_for(r.t, false, false), r.normal);
    EXPECT_EQ(ort::qrange_for(r.t, false, true), r.symmetric);
    EXPECT_EQ(ort::qrange_for(r.t, true, false), r.reduced);
    EXPECT_EQ(ort::qrange_for(r.t, true, true), r.reduced);  // reduce_range wins
  }
  EXPECT_THROW(static_cast<void>(ort::qrange_for(dtype::int32, false, false)), qprune::config_error);
}

// ---------------------------------------------------------------------------
// qprune's own rules
// ---------------------------------------------------------------------------

TEST(ChooseAffineParams, ZeroExactRangeCoveredRandom) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(31);
  std::uniform_real_distribution<double> ex(-6.0, 6.0);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const qrange ranges[] = {quant::full_range(dtype::uint8), quant::full_range(dtype::int8),
                           quant::narrow_range(dtype::int8), quant::full_range(dtype::uint4),
                           quant::full_range(dtype::int16)};
  for (int t = 0; t < 2000; ++t) {
    const auto s = static_cast<float>(std::pow(10.0, ex(rng)));
    float a = nd(rng) * s;
    float b = nd(rng) * s;
    if (t % 7 == 0) a = std::fabs(a);  // positive only
    if (t % 11 == 0) b = -std::fabs(b);
    if (a > b) std::swap(a, b);
    const qrange r = ranges[t % 5];
    const quant::affine_params p = quant::choose_affine_params(a, b, r);
    ASSERT_GT(p.scale, 0.0f);
    ASSERT_GE(p.zero_point, r.qmin);
    ASSERT_LE(p.zero_point, r.qmax);
    // Real 0 maps to the zero point exactly and back to 0.
    EXPECT_EQ(std::nearbyint(0.0f / p.scale) + static_cast<float>(p.zero_point),
              static_cast<float>(p.zero_point));
    // The widened range [min(a,0), max(b,0)] is covered within half a step, up to
    // the float32 rounding of the scale and of lo / scale (relative 2^-23 of the
    // number of steps, at most 0.008 steps for int16).
    const double lo_steps = std::min<double>(a, 0.0) / p.scale;
    const double hi_steps = std::max<double>(b, 0.0) / p.scale;
    const double tol = 0.5 + 1.2e-7 * static_cast<double>(r.levels());
    EXPECT_LE(r.qmin - p.zero_point, lo_steps + tol) << a << " " << b;
    EXPECT_GE(r.qmax - p.zero_point, hi_steps - tol) << a << " " << b;
  }
}

TEST(ChooseAffineParams, DegenerateAndInvalid) {
  // All-zero input: scale 1 and real 0 on the zero point (qmin: the range is [0, 0]).
  EXPECT_EQ(quant::choose_affine_params(0.0f, 0.0f, quant::full_range(dtype::uint8)),
            (quant::affine_params{1.0f, 0}));
  EXPECT_EQ(quant::choose_affine_params(0.0f, 0.0f, quant::full_range(dtype::int8)),
            (quant::affine_params{1.0f, -128}));
  // Hand-computed: [-1, 1] on uint8: scale = float(2/255) = 0.007843138 (rounded up), so
  // -1 / scale = -127.49999f, which rounds to -127: zero point 127.
  EXPECT_EQ(quant::choose_affine_params(-1.0f, 1.0f, quant::full_range(dtype::uint8)),
            (quant::affine_params{static_cast<float>(2.0 / 255.0), 127}));
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THROW(static_cast<void>(quant::choose_affine_params(1.0f, 0.0f, quant::full_range(dtype::uint8))),
               qprune::config_error);
  EXPECT_THROW(static_cast<void>(quant::choose_affine_params(std::nanf(""), 0.0f, quant::full_range(dtype::uint8))),
               qprune::config_error);
  EXPECT_THROW(static_cast<void>(quant::choose_affine_params(-inf, 0.0f, quant::full_range(dtype::uint8))),
               qprune::config_error);
  EXPECT_THROW(static_cast<void>(quant::choose_affine_params(0.0f, 1.0f, qrange{3, 3})), qprune::config_error);
}

TEST(ChooseSymmetricParams, AbsmaxMapsToQmaxRandom) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(32);
  std::uniform_real_distribution<double> ex(-8.0, 8.0);
  const qrange ranges[] = {quant::narrow_range(dtype::int8), quant::full_range(dtype::int8),
                           quant::narrow_range(dtype::int4), quant::narrow_range(dtype::int16)};
  for (int t = 0; t < 2000; ++t) {
    const auto absmax = static_cast<float>(std::pow(10.0, ex(rng)));
    const qrange r = ranges[t % 4];
    const quant::affine_params p = quant::choose_symmetric_params(absmax, r);
    ASSERT_EQ(p.zero_point, 0);
    ASSERT_EQ(p.scale, absmax / static_cast<float>(r.qmax));
    EXPECT_EQ(std::nearbyint(absmax / p.scale), static_cast<float>(r.qmax)) << absmax;
    EXPECT_EQ(std::nearbyint(-absmax / p.scale), -static_cast<float>(r.qmax)) << absmax;
  }
}

TEST(ChooseSymmetricParams, DegenerateAndInvalid) {
  EXPECT_EQ(quant::choose_symmetric_params(0.0f, quant::narrow_range(dtype::int8)),
            (quant::affine_params{1.0f, 0}));
  EXPECT_EQ(quant::choose_symmetric_params(1.27f, quant::narrow_range(dtype::int8)).scale, 1.27f / 127.0f);
  EXPECT_THROW(static_cast<void>(quant::choose_symmetric_params(-1.0f, quant::narrow_range(dtype::int8))),
               qprune::config_error);
  EXPECT_THROW(static_cast<void>(quant::choose_symmetric_params(std::nanf(""), quant::narrow_range(dtype::int8))),
               qprune::config_error);
  EXPECT_THROW(static_cast<void>(quant::choose_symmetric_params(1.0f, qrange{-8, 0})), qprune::config_error);
}

}  // namespace

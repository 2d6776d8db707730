// Tests for quant/report.hpp: SQNR and errors against hand-computed sums, the
// saturation definition at its boundaries, byte accounting, and agreement with
// an explicit quantize -> dequantize round trip for every granularity.
#include "qprune/quant/report.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "qprune/quant/int4.hpp"
#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::extents;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor_view;
namespace quant = qprune::quant;
using quant::affine_params;
using quant::dtype;
using quant::per_channel_params;
using quant::per_group_params;
using quant::qrange;
using quant::scheme;

constexpr double kInfD = std::numeric_limits<double>::infinity();
constexpr float kInf = std::numeric_limits<float>::infinity();

tensor_view<const float, 1> v1(const std::vector<float>& v) {
  return tensor_view<const float, 1>(v.data(), static_cast<index_t>(v.size()));
}

TEST(ReconstructionReport, HandComputed) {
  const std::vector<float> x{1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<float> y{1.0f, 2.0f, 3.0f, 5.0f};
  const auto r = quant::reconstruction_report(v1(x), v1(y));
  EXPECT_EQ(r.count, 4);
  EXPECT_DOUBLE_EQ(r.sqnr_db, 10.0 * std::log10(30.0));  // sum x^2 = 30, sum e^2 = 1
  EXPECT_EQ(r.max_abs_error, 1.0);
  EXPECT_EQ(r.mean_abs_error, 0.25);
  EXPECT_EQ(r.saturated, 0);
  EXPECT_EQ(r.bytes_before, 16);
  EXPECT_EQ(r.bytes_after, 0);
  EXPECT_EQ(r.compression_ratio(), 0.0);

  const std::vector<float> a{0.5f, -0.25f};
  const std::vector<float> b{0.25f, 0.25f};
  const auto r2 = quant::reconstruction_report(v1(a), v1(b));
  // sum x^2 = 0.3125, sum e^2 = 0.0625 + 0.25 = 0.3125 -> 0 dB
  EXPECT_EQ(r2.sqnr_db, 0.0);
  EXPECT_EQ(r2.max_abs_error, 0.5);
  EXPECT_EQ(r2.mean_abs_error, 0.375);
}

TEST(ReconstructionReport, ExactEmptyAndZeroSignal) {
  const std::vector<float> x{1.5f, -2.0f, 0.0f};
  EXPECT_EQ(quant::reconstruction_report(v1(x), v1(x)).sqnr_db, kInfD);
  const std::vector<float> none;
  const auto e = quant::reconstruction_report(v1(none), v1(none));
  EXPECT_EQ(e.count, 0);
  EXPECT_EQ(e.sqnr_db, kInfD);
  EXPECT_EQ(e.mean_abs_error, 0.0);
  const std::vector<float> zeros(3, 0.0f);
  const std::vector<float> noise{0.0f, 0.1f, 0.0f};
  EXPECT_EQ(quant::reconstruction_report(v1(zeros), v1(zeros)).sqnr_db, kInfD);
  EXPECT_EQ(quant::reconstruction_report(v1(zeros), v1(noise)).sqnr_db, -kInfD);
  const std::vector<float> shorter(2);
  EXPECT_THROW((void)quant::reconstruction_report(v1(x), v1(shorter)), shape_error);
}

TEST(QuantizationReport, SaturationBoundaries) {
  // int8 full range, scale 0.5, zero point 0: codes are round(2x) before clamping.
  const std::vector<float> x{
      0.0f,     // 0
      63.5f,    // 127: on qmax, not clipped
      63.75f,   // 127.5 -> 128 (even): clipped
      63.7f,    // 127.4 -> 127: not clipped (rounds onto qmax)
      100.0f,   // 200: clipped
      -64.0f,   // -128: on qmin, not clipped
      -64.25f,  // -128.5 -> -128 (even): not clipped
      -64.3f,   // -128.6 -> -129: clipped
      kInf,     // clipped
      -kInf,    // clipped
      std::numeric_limits<float>::quiet_NaN(),  // zero point: not clipped
  };
  const auto r = quant::quantization_report(v1(x), affine_params{0.5f, 0},
                                            quant::full_range(dtype::int8), dtype::int8,
                                            scheme::symmetric);
  EXPECT_EQ(r.saturated, 5);
  EXPECT_EQ(r.count, 11);
  // half_away_from_zero: -64.25 -> -128.5 -> -129 is clipped too; 63.75 -> 128 still clipped.
  const auto ra = quant::quantization_report(v1(x), affine_params{0.5f, 0},
                                             quant::full_range(dtype::int8), dtype::int8,
                                             scheme::symmetric, quant::rounding::half_away_from_zero);
  EXPECT_EQ(ra.saturated, 6);
  // The zero point shifts the range: zp -100 puts qmax at x = 113.5.
  const std::vector<float> y{113.5f, 113.75f, -14.0f, -14.25f};
  const auto ry = quant::quantization_report(v1(y), affine_params{0.5f, -100},
                                             quant::full_range(dtype::int8), dtype::int8,
                                             scheme::affine);
  // 227 - 100 = 127; 227.5 -> 228 - 100 = 128 clipped; -28 - 100 = -128; -28.5 -> -28 -> -128
  EXPECT_EQ(ry.saturated, 1);
}

TEST(QuantizationReport, BytesAccounting) {
  EXPECT_EQ(quant::code_bytes(dtype::int8, 1000), 1000);
  EXPECT_EQ(quant::code_bytes(dtype::int4, 1001), 501);
  EXPECT_EQ(quant::code_bytes(dtype::uint4, 0), 0);
  EXPECT_EQ(quant::code_bytes(dtype::int16, 3), 6);
  EXPECT_EQ(quant::code_bytes(dtype::int32, 3), 12);
  EXPECT_EQ(quant::parameter_bytes(10, scheme::symmetric), 40);
  EXPECT_EQ(quant::parameter_bytes(10, scheme::affine), 80);

  std::vector<float> x(1000, 0.25f);
  const auto r = quant::quantization_report(v1(x), affine_params{0.01f, 0},
                                            quant::narrow_range(dtype::int8), dtype::int8,
                                            scheme::symmetric);
  EXPECT_EQ(r.bytes_before, 4000);
  EXPECT_EQ(r.bytes_after, 1004);
  EXPECT_DOUBLE_EQ(r.compression_ratio(), 4000.0 / 1004.0);
  const auto ru = quant::quantization_report(v1(x), affine_params{0.01f, 7},
                                             quant::full_range(dtype::uint8), dtype::uint8,
                                             scheme::affine);
  EXPECT_EQ(ru.bytes_after, 1008);
  const auto r4 = quant::quantization_report(v1(x), affine_params{0.1f, 0},
                                             quant::full_range(dtype::int4), dtype::int4,
                                             scheme::symmetric);
  EXPECT_EQ(r4.bytes_after, 504);
  // per channel: [4, 250] int8 symmetric: 1000 codes + 4 scales
  const extents<2> e(4, 250);
  const per_channel_params pc{{0.01f, 0.02f, 0.03f, 0.04f}, {0, 0, 0, 0}, 0};
  const auto rc = quant::quantization_report(tensor_view<const float, 2>(x.data(), e), pc,
                                             quant::narrow_range(dtype::int8), dtype::int8,
                                             scheme::symmetric);
  EXPECT_EQ(rc.bytes_after, 1000 + 16);
}

std::vector<float> random_floats(std::size_t n, std::uint64_t salt) {
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_same_errors(const quant::quant_report& a, const quant::quant_report& b) {
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.sqnr_db, b.sqnr_db);
  EXPECT_EQ(a.max_abs_error, b.max_abs_error);
  EXPECT_EQ(a.mean_abs_error, b.mean_abs_error);
  EXPECT_EQ(a.bytes_before, b.bytes_before);
}

TEST(QuantizationReport, AgreesWithAnExplicitRoundTrip) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const extents<2> e(8, 48);
  const auto x = random_floats(static_cast<std::size_t>(e.size()), 501);
  const tensor_view<const float, 2> xv(x.data(), e);
  std::vector<std::int8_t> q(x.size());
  std::vector<float> dq(x.size());
  const qrange r = quant::full_range(dtype::int8);

  // per tensor, with a scale small enough that the tails saturate
  const affine_params pt{0.01f, 3};
  quant::quantize(xv, tensor_view<std::int8_t, 2>(q.data(), e), pt, r);
  quant::dequantize(tensor_view<const std::int8_t, 2>(q.data(), e),
                    tensor_view<float, 2>(dq.data(), e), pt);
  const auto rt = quant::quantization_report(xv, pt, r, dtype::int8, scheme::affine);
  expect_same_errors(rt, quant::reconstruction_report(xv, tensor_view<const float, 2>(dq.data(), e)));
  index_t clipped = 0;
  for (float v : x) {
    const double u = static_cast<double>(std::nearbyint(v / pt.scale)) + pt.zero_point;
    clipped += (u < r.qmin || u > r.qmax) ? 1 : 0;
  }
  EXPECT_EQ(rt.saturated, clipped);
  EXPECT_GT(clipped, 0);
  EXPECT_GT(rt.sqnr_db, 0.0);

  // per channel along axis 1
  per_channel_params pc{std::vector<float>(48), std::vector<std::int32_t>(48), 1};
  for (std::size_t c = 0; c < 48; ++c) {
    pc.scales[c] = 0.005f * static_cast<float>(c + 1);
    pc.zero_points[c] = static_cast<std::int32_t>(c) - 24;
  }
  quant::quantize(xv, tensor_view<std::int8_t, 2>(q.data(), e), pc, r);
  quant::dequantize(tensor_view<const std::int8_t, 2>(q.data(), e),
                    tensor_view<float, 2>(dq.data(), e), pc);
  const auto rc = quant::quantization_report(xv, pc, r, dtype::int8, scheme::affine);
  expect_same_errors(rc, quant::reconstruction_report(xv, tensor_view<const float, 2>(dq.data(), e)));
  EXPECT_EQ(rc.bytes_after, 384 + 48 * 8);

  // per group along axis 0 (groups of 16 rows would need 16 rows: use [32, 12])
  const extents<2> e2(32, 12);
  const auto x2 = random_floats(static_cast<std::size_t>(e2.size()), 502);
  const tensor_view<const float, 2> xv2(x2.data(), e2);
  per_group_params pg{std::vector<float>(24, 0.02f), std::vector<std::int32_t>(24, 0), 0, 16};
  std::vector<std::uint8_t> q2(x2.size());
  std::vector<float> dq2(x2.size());
  pg.zero_points[5] = 128;
  quant::quantize(xv2, tensor_view<std::uint8_t, 2>(q2.data(), e2), pg,
                  quant::full_range(dtype::uint8));
  quant::dequantize(tensor_view<const std::uint8_t, 2>(q2.data(), e2),
                    tensor_view<float, 2>(dq2.data(), e2), pg);
  const auto rg = quant::quantization_report(xv2, pg, quant::full_range(dtype::uint8), dtype::uint8,
                                             scheme::affine);
  expect_same_errors(rg, quant::reconstruction_report(xv2, tensor_view<const float, 2>(dq2.data(), e2)));
  EXPECT_EQ(rg.bytes_after, 384 + 24 * 8);
  // zero point 0 on uint8 clips every negative value that does not round to 0
  EXPECT_GT(rg.saturated, 100);
}

TEST(QuantizationReport, Int4GroupsMatchThePackedMatrix) {
  SCOPED_TRACE(qprune::test::seed_trace());
  for (index_t cols : {64, 33, 100}) {
    const index_t rows = 5;
    const auto w = random_floats(static_cast<std::size_t>(rows * cols), 503);
    const tensor_view<const float, 2> wv(w.data(), rows, cols);
    for (auto s : {quant::int4_scheme::symmetric, quant::int4_scheme::affine}) {
      const auto m = quant::quantize_int4(wv, 32, s);
      std::vector<float> dq(w.size());
      quant::dequantize(m, tensor_view<float, 2>(dq.data(), rows, cols));
      const auto rep = quant::quantization_report(wv, m.params, quant::code_range(s),
                                                  quant::storage_dtype(s), quant::param_scheme(s));
      expect_same_errors(rep, quant::reconstruction_report(
                                  wv, tensor_view<const float, 2>(dq.data(), rows, cols)));
      EXPECT_EQ(rep.bytes_after, quant::storage_bytes(m)) << cols;
      // Symmetric parameters are max|w| / 7 per group: nothing can clip.
      if (s == quant::int4_scheme::symmetric) {
        EXPECT_EQ(rep.saturated, 0);
      }
      EXPECT_GE(rep.compression_ratio(), 4.0);
    }
  }
}

TEST(QuantizationReport, RejectsBadInput) {
  const std::vector<float> x(4, 1.0f);
  EXPECT_THROW((void)quant::quantization_report(v1(x), affine_params{0.0f, 0},
                                                quant::full_range(dtype::int8), dtype::int8,
                                                scheme::symmetric),
               config_error);
  // range does not fit the storage type
  EXPECT_THROW((void)quant::quantization_report(v1(x), affine_params{1.0f, 0},
                                                quant::full_range(dtype::int8), dtype::int4,
                                                scheme::symmetric),
               config_error);
  EXPECT_THROW((void)quant::quantization_report(v1(x), affine_params{1.0f, 20},
                                                quant::full_range(dtype::int4), dtype::int4,
                                                scheme::affine),
               config_error);
  EXPECT_THROW((void)quant::quantization_report(v1(x), per_channel_params{{1.0f, 1.0f}, {0, 0}, 0},
                                                quant::full_range(dtype::int8), dtype::int8,
                                                scheme::symmetric),
               shape_error);
  const tensor_view<const float, 2> xv(x.data(), 2, 2);
  EXPECT_THROW((void)quant::quantization_report(xv, per_group_params{{1.0f, 1.0f}, {0, 0}, 1, 12},
                                                quant::full_range(dtype::int8), dtype::int8,
                                                scheme::symmetric),
               config_error);
}

}  // namespace

// int8 NHWC conv against its baselines, in one binary, one thread: qprune's
// dispatched conv2d_s8 (int32 and requantized int8 outputs), the scalar reference
// twin (the direct seven-loop conv), and the fp32 conv built with -O3 -mavx2 -mfma
// (im2col + Eigen GEMM in both storage orders; a plain vectorised loop for
// depthwise). Items are multiply-accumulates (out_pixels * out_c * patch).
//
//   OMP_NUM_THREADS=1 ./conv_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "conv_baseline.hpp"
#include "qprune/kernels/conv2d_s8.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/quant/requantize.hpp"

namespace {

using qprune::index_t;
using qprune::bench::conv_shape;
using qprune::kernels::conv2d_geometry;
using qprune::kernels::isa;

struct named_shape {
  const char* name;
  conv_shape s;
  bool depthwise;
};

const named_shape shapes[] = {
    {"fmnist_conv1_b1", {1, 28, 28, 1, 32, 3, 3, 1, 1}, false},
    {"fmnist_conv1_b32", {32, 28, 28, 1, 32, 3, 3, 1, 1}, false},
    {"fmnist_conv2_b1", {1, 14, 14, 32, 64, 3, 3, 1, 1}, false},
    {"fmnist_conv2_b32", {32, 14, 14, 32, 64, 3, 3, 1, 1}, false},
    {"resnet_56x56x64_3x3", {1, 56, 56, 64, 64, 3, 3, 1, 1}, false},
    {"pointwise_28x28x128_to_256", {1, 28, 28, 128, 256, 1, 1, 1, 0}, false},
    {"depthwise_56x56x128_3x3", {1, 56, 56, 128, 128, 3, 3, 1, 1}, true},
};

conv2d_geometry geometry(const named_shape& n) {
  const conv_shape& s = n.s;
  conv2d_geometry g;
  g.batch = s.batch;
  g.in_h = s.in_h;
  g.in_w = s.in_w;
  g.in_c = s.in_c;
  g.out_c = s.out_c;
  g.kernel_h = s.kernel_h;
  g.kernel_w = s.kernel_w;
  g.stride_h = g.stride_w = s.stride;
  g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = s.pad;
  g.groups = n.depthwise ? s.in_c : 1;
  return g;
}

index_t macs(const named_shape& n) {
  const conv2d_geometry g = geometry(n);
  return g.out_pixels() * g.out_c * g.patch();
}

template <class T>
std::vector<T> random_int(index_t n, int lo, int hi, unsigned seed) {
  std::vector<T> v(static_cast<std::size_t>(n));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

std::vector<float> random_float(index_t n, unsigned seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto& x : v) x = d(rng);
  return v;
}

enum class out_kind { int32, requant_s8 };

void bm_qprune(benchmark::State& state, named_shape n, isa path, out_kind kind) {
  if (!qprune::kernels::is_supported(path)) return state.SkipWithError("ISA not supported");
  qprune::kernels::set_num_threads(1);
  const conv2d_geometry g = geometry(n);
  const index_t rows_in = g.batch * g.in_h * g.in_w, m = g.out_pixels();
  const auto x = random_int<std::uint8_t>(rows_in * g.in_c, 0, 255, 1);
  const auto w = random_int<std::int8_t>(g.out_c * g.patch(), -127, 127, 2);
  const auto packed = qprune::kernels::pack_conv_s8(
      g, qprune::tensor_view<const std::int8_t, 2>(w.data(), g.out_c, g.patch()), path);
  const qprune::tensor_view<const std::uint8_t, 2> xv(x.data(), rows_in, g.in_c);
  if (kind == out_kind::int32) {
    std::vector<std::int32_t> y(static_cast<std::size_t>(m * g.out_c));
    for (auto _ : state) {
      qprune::kernels::conv2d_s8<std::uint8_t>(xv, 128, packed,
                                               qprune::tensor_view<std::int32_t, 2>(y.data(), m, g.out_c));
      benchmark::DoNotOptimize(y.data());
      benchmark::ClobberMemory();
    }
  } else {
    namespace quant = qprune::quant;
    const std::vector<float> s_w(static_cast<std::size_t>(g.out_c), 2e-3f);
    const auto params = quant::make_requant_params(0.02f, s_w, {0.05f, -3},
                                                   quant::full_range(quant::dtype::int8),
                                                   quant::fused_activation::relu);
    const auto bias = random_int<std::int32_t>(g.out_c, -5000, 5000, 3);
    const qprune::kernels::requant_stage<std::int8_t> st(params, bias, g.out_c);
    std::vector<std::int8_t> q(static_cast<std::size_t>(m * g.out_c));
    for (auto _ : state) {
      qprune::kernels::conv2d_s8<std::uint8_t, std::int8_t>(
          xv, 128, packed, qprune::tensor_view<std::int8_t, 2>(q.data(), m, g.out_c), st);
      benchmark::DoNotOptimize(q.data());
      benchmark::ClobberMemory();
    }
  }
  state.SetItemsProcessed(state.iterations() * macs(n));
}

void bm_reference(benchmark::State& state, named_shape n) {
  const conv2d_geometry g = geometry(n);
  const index_t rows_in = g.batch * g.in_h * g.in_w, m = g.out_pixels();
  const auto x = random_int<std::uint8_t>(rows_in * g.in_c, 0, 255, 1);
  const auto w = random_int<std::int8_t>(g.out_c * g.patch(), -127, 127, 2);
  std::vector<std::int32_t> y(static_cast<std::size_t>(m * g.out_c));
  for (auto _ : state) {
    qprune::kernels::reference::conv2d_s8(g, x.data(), 128, w.data(), y.data(), g.out_c,
                                          qprune::kernels::store_int32{});
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * macs(n));
}

void bm_eigen(benchmark::State& state, named_shape n, bool col_major) {
  const conv_shape& s = n.s;
  const auto x = random_float(s.batch * s.in_h * s.in_w * s.in_c, 3);
  const auto w = random_float(s.out_c * s.patch(), 4);
  std::vector<float> y(static_cast<std::size_t>(s.out_pixels() * s.out_c));
  std::vector<float> scratch(static_cast<std::size_t>(s.out_pixels() * s.patch()));
  for (auto _ : state) {
    qprune::bench::eigen_conv2d(s, x.data(), w.data(), y.data(), scratch.data(), col_major);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * macs(n));
}

void bm_float_depthwise(benchmark::State& state, named_shape n) {
  const conv_shape& s = n.s;
  const auto x = random_float(s.batch * s.in_h * s.in_w * s.in_c, 3);
  const auto w = random_float(s.kernel_h * s.kernel_w * s.in_c, 4);
  std::vector<float> y(static_cast<std::size_t>(s.out_pixels() * s.in_c));
  for (auto _ : state) {
    qprune::bench::float_depthwise_conv2d(s, x.data(), w.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * macs(n));
}

void register_all() {
  const isa best = qprune::kernels::active_isa();
  const std::string best_name(qprune::kernels::to_string(best));
  for (const named_shape& n : shapes) {
    const std::string name = n.name;
    benchmark::RegisterBenchmark(("conv_s8/qprune_" + best_name + "/" + name).c_str(), bm_qprune, n, best,
                                 out_kind::int32);
    if (best != isa::avx2) {
      benchmark::RegisterBenchmark(("conv_s8/qprune_avx2/" + name).c_str(), bm_qprune, n, isa::avx2,
                                   out_kind::int32);
    }
    benchmark::RegisterBenchmark(("conv_s8_requant/qprune_" + best_name + "/" + name).c_str(), bm_qprune, n,
                                 best, out_kind::requant_s8);
    benchmark::RegisterBenchmark(("conv_s8/reference/" + name).c_str(), bm_reference, n);
    if (n.depthwise) {
      benchmark::RegisterBenchmark(("conv_f32/loop_depthwise/" + name).c_str(), bm_float_depthwise, n);
    } else {
      benchmark::RegisterBenchmark(("conv_f32/eigen_rowmajor/" + name).c_str(), bm_eigen, n, false);
      benchmark::RegisterBenchmark(("conv_f32/eigen_colmajor/" + name).c_str(), bm_eigen, n, true);
    }
  }
}

const int registered = (register_all(), 0);

}  // namespace

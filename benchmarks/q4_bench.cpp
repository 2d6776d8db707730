// int4 grouped-weight Dense layers against their baselines, in one binary, one
// thread: gemm_q4 (fp32 path) and gemm_q4_dynamic (int8 activations, the
// quantization of x included in the time) on the active ISA and forced AVX2,
// their scalar twins, and Eigen fp32 (-O3 -mavx2 -mfma, both storage orders) on
// the dequantized weights. Items are multiply-accumulates (M*N*K per iteration).
//
//   OMP_NUM_THREADS=1 ./q4_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "eigen_baseline.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/kernels/gemm_q4.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/quant/int4.hpp"

namespace {

using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;
using qprune::quant::int4_scheme;

struct shape {
  index_t m, n, k;
};
const shape shapes[] = {{1, 1024, 1024}, {16, 1024, 1024}, {64, 1024, 1024},
                        {1, 4096, 4096}, {16, 4096, 4096}, {64, 4096, 4096}};

struct config {
  int4_scheme scheme;
  index_t group_size;
  const char* name;
};
const config configs[] = {{int4_scheme::symmetric, 32, "sym_g32"}, {int4_scheme::affine, 128, "affine_g128"}};

tensor<float, 2> random_float(index_t r, index_t c, unsigned seed, float sd) {
  tensor<float, 2> t(r, c);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  for (auto& v : t.span()) v = d(rng);
  return t;
}

/// The quantized weights of a layer, made once per (N, K, config): quantizing a
/// 4096 x 4096 matrix takes longer than most measurements.
const qprune::quant::packed_int4_matrix& weights(shape s, const config& c) {
  static std::map<std::tuple<index_t, index_t, const config*>, qprune::quant::packed_int4_matrix> cache;
  const auto key = std::make_tuple(s.n, s.k, &c);
  auto it = cache.find(key);
  if (it == cache.end()) {
    const auto w = random_float(s.n, s.k, 4, 0.05f);
    it = cache.emplace(key, qprune::quant::quantize_int4(w.cview(), c.group_size, c.scheme)).first;
  }
  return it->second;
}

void set_macs(benchmark::State& state, shape s) {
  state.SetItemsProcessed(state.iterations() * s.m * s.n * s.k);
}

void bm_q4(benchmark::State& state, shape s, config c, isa path, bool dynamic) {
  if (!qprune::kernels::is_supported(path)) return state.SkipWithError("ISA not supported");
  qprune::kernels::set_num_threads(1);
  const auto x = random_float(s.m, s.k, 3, 1.0f);
  const auto packed = qprune::kernels::pack_q4(weights(s, c), path);
  const std::vector<float> bias(static_cast<std::size_t>(s.n), 0.1f);
  tensor<float, 2> y(s.m, s.n);
  for (auto _ : state) {
    if (dynamic) {
      qprune::kernels::gemm_q4_dynamic(x.cview(), packed, bias, false, y.view());
    } else {
      qprune::kernels::gemm_q4(x.cview(), packed, bias, false, y.view());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}

void bm_eigen(benchmark::State& state, shape s, bool col_major) {
  const auto x = random_float(s.m, s.k, 3, 1.0f);
  tensor<float, 2> w(s.n, s.k);
  qprune::quant::dequantize(weights(s, configs[0]), w.view());
  tensor<float, 2> y(s.m, s.n);
  for (auto _ : state) {
    if (col_major) {
      qprune::bench::eigen_gemm_col_major(s.m, s.n, s.k, x.data(), w.data(), y.data());
    } else {
      qprune::bench::eigen_gemm_row_major(s.m, s.n, s.k, x.data(), w.data(), y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}

void register_all() {
  const isa best = qprune::kernels::active_isa();
  for (const shape& s : shapes) {
    const std::string dims = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
    for (const config& c : configs) {
      const std::string tag = std::string("/") + c.name + "/";
      for (isa path : {best, isa::avx2}) {
        const std::string p = std::string(qprune::kernels::to_string(path));
        benchmark::RegisterBenchmark(("q4_float/qprune_" + p + tag + dims).c_str(), bm_q4, s, c, path, false);
        benchmark::RegisterBenchmark(("q4_dynamic/qprune_" + p + tag + dims).c_str(), bm_q4, s, c, path, true);
        if (best == isa::avx2) break;
      }
      // The scalar twins take seconds per call on the large shapes.
      if (s.m * s.n * s.k <= index_t{64} * 1024 * 1024) {
        benchmark::RegisterBenchmark(("q4_float/scalar_twin" + tag + dims).c_str(), bm_q4, s, c, isa::scalar, false);
        benchmark::RegisterBenchmark(("q4_dynamic/scalar_twin" + tag + dims).c_str(), bm_q4, s, c, isa::scalar, true);
      }
    }
    benchmark::RegisterBenchmark(("sgemm/eigen_rowmajor/" + dims).c_str(), bm_eigen, s, false);
    benchmark::RegisterBenchmark(("sgemm/eigen_colmajor/" + dims).c_str(), bm_eigen, s, true);
  }
}

const int registered = (register_all(), 0);

}  // namespace

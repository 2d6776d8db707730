// Sparse kernels against their baselines, in one binary, one thread: qprune's
// SpMV / SpMM over CSR (fp32, fp16, int8 values) and packed 2:4, per ISA, the
// scalar twin, Eigen's CSR (SparseMatrix<float, RowMajor>) and Eigen's dense
// fp32 product in both storage orders (-O3 -mavx2 -mfma). Items are dense
// multiply-accumulates (M*N*K per iteration), so items/s ratios read straight.
//
//   OMP_NUM_THREADS=1 ./sparse_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "eigen_baseline.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/kernels/spmm.hpp"
#include "sparse_baseline.hpp"

namespace {

using qprune::half;
using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;
using qprune::prune::csr_matrix;
using qprune::prune::packed_nm_matrix;

struct problem {
  index_t m, n, k;  ///< batch, matrix rows (output features), matrix columns
  int sparsity;     ///< percent of the weights pruned (CSR); 50 for 2:4
};

/// Weights [n, k] with `sparsity`% zeros at random positions, values N(0, 1).
tensor<float, 2> sparse_weights(index_t n, index_t k, int sparsity, unsigned seed) {
  tensor<float, 2> w(n, k);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> pct(0, 99);
  for (auto& v : w.span()) {
    const float a = nd(rng);
    v = pct(rng) >= sparsity && a != 0.0f ? a : 0.0f;
  }
  return w;
}

/// 2:4 weights: two random positions of every group of four kept.
tensor<float, 2> weights_2of4(index_t n, index_t k, unsigned seed) {
  tensor<float, 2> w(n, k);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 5);
  static constexpr int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  for (index_t r = 0; r < n; ++r) {
    for (index_t g = 0; g + 4 <= k; g += 4) {
      const int p = pick(rng);
      w(r, g + pairs[p][0]) = nd(rng) + 0.5f;
      w(r, g + pairs[p][1]) = nd(rng) - 0.5f;
    }
  }
  return w;
}

tensor<float, 2> random_input(index_t m, index_t k, unsigned seed) {
  tensor<float, 2> x(m, k);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  for (auto& v : x.span()) v = ud(rng);
  return x;
}

tensor<float, 2> weights_for(const problem& p, bool nm) {
  return nm ? weights_2of4(p.n, p.k, 2) : sparse_weights(p.n, p.k, p.sparsity, 2);
}

void set_macs(benchmark::State& state, const problem& p) {
  state.SetItemsProcessed(state.iterations() * p.m * p.n * p.k);
}

/// qprune kernel; S is csr_matrix<V> or packed_nm_matrix<V>.
template <class S>
void bm_qprune(benchmark::State& state, problem p, isa path) {
  if (!qprune::kernels::is_supported(path)) return state.SkipWithError("ISA not supported");
  constexpr bool nm = S::format == qprune::prune::storage_format::packed_nm;
  const auto w = weights_for(p, nm);
  S a;
  if constexpr (nm) {
    a = S::from_dense(w.cview(), 2, 4);
  } else {
    a = S::from_dense(w.cview());
  }
  const auto x = random_input(p.m, p.k, 3);
  std::vector<float> bias(static_cast<std::size_t>(p.n), 0.25f);
  tensor<float, 2> y(p.m, p.n);
  for (auto _ : state) {
    if (p.m == 1) {
      qprune::kernels::spmv(a, x.span(), y.span(), bias, path);
    } else {
      qprune::kernels::spmm(x.cview(), a, y.view(), bias, path);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, p);
}

void bm_eigen_csr(benchmark::State& state, problem p) {
  const auto w = weights_for(p, false);
  const qprune::bench::eigen_csr a(p.n, p.k, w.data());
  const auto x = random_input(p.m, p.k, 3);
  // SpMM: X^T prepared outside the timed loop (the layout Eigen wants).
  tensor<float, 2> xt(p.k, p.m), y(p.m, p.n), yt(p.n, p.m);
  for (index_t i = 0; i < p.m; ++i)
    for (index_t c = 0; c < p.k; ++c) xt(c, i) = x(i, c);
  for (auto _ : state) {
    if (p.m == 1) {
      a.spmv(x.data(), y.data());
    } else {
      a.spmm_rowmajor(p.m, xt.data(), yt.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(yt.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, p);
}

void bm_eigen_dense(benchmark::State& state, problem p, bool col_major) {
  const auto w = weights_for(p, false);
  const auto x = random_input(p.m, p.k, 3);
  tensor<float, 2> y(p.m, p.n);
  for (auto _ : state) {
    if (col_major) {
      qprune::bench::eigen_gemm_col_major(p.m, p.n, p.k, x.data(), w.data(), y.data());
    } else {
      qprune::bench::eigen_gemm_row_major(p.m, p.n, p.k, x.data(), w.data(), y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, p);
}

/// Concatenates the parts (one reserve, then appends: GCC 12 -O3 reports a
/// false -Wrestrict on chains of std::string operator+).
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  std::size_t len = 0;
  for (const auto part : parts) len += part.size();
  out.reserve(len);
  for (const auto part : parts) out.append(part);
  return out;
}

std::string dims(const problem& p) {
  return std::to_string(p.m) + "x" + std::to_string(p.n) + "x" + std::to_string(p.k);
}

void register_csr(const problem& p) {
  const std::string kind = p.m == 1 ? "spmv" : "spmm";
  const std::string tag = cat({"/", dims(p), "/sparsity", std::to_string(p.sparsity)});
  const isa best = qprune::kernels::active_isa();
  benchmark::RegisterBenchmark(cat({kind, "_csr_f32/qprune_", to_string(best), tag}).c_str(),
                               bm_qprune<csr_matrix<float>>, p, best);
  if (best != isa::avx2) {
    benchmark::RegisterBenchmark(cat({kind, "_csr_f32/qprune_avx2", tag}).c_str(), bm_qprune<csr_matrix<float>>, p,
                                 isa::avx2);
  }
  benchmark::RegisterBenchmark(cat({kind, "_csr_f16/qprune", tag}).c_str(), bm_qprune<csr_matrix<half>>, p, best);
  benchmark::RegisterBenchmark(cat({kind, "_csr_s8/qprune", tag}).c_str(), bm_qprune<csr_matrix<std::int8_t>>, p, best);
  if (p.m * p.n * p.k <= (index_t{1} << 26)) {
    benchmark::RegisterBenchmark(cat({kind, "_csr_f32/scalar_twin", tag}).c_str(), bm_qprune<csr_matrix<float>>, p,
                                 isa::scalar);
  }
  benchmark::RegisterBenchmark(cat({kind, "_csr_f32/eigen_csr", tag}).c_str(), bm_eigen_csr, p);
}

void register_nm(const problem& p) {
  const std::string kind = p.m == 1 ? "spmv" : "spmm";
  const std::string tag = cat({"/", dims(p), "/2of4"});
  const isa best = qprune::kernels::active_isa();
  benchmark::RegisterBenchmark(cat({kind, "_nm_f32/qprune_", to_string(best), tag}).c_str(),
                               bm_qprune<packed_nm_matrix<float>>, p, best);
  if (best != isa::avx2) {
    benchmark::RegisterBenchmark(cat({kind, "_nm_f32/qprune_avx2", tag}).c_str(), bm_qprune<packed_nm_matrix<float>>,
                                 p, isa::avx2);
  }
  benchmark::RegisterBenchmark(cat({kind, "_nm_f16/qprune", tag}).c_str(), bm_qprune<packed_nm_matrix<half>>, p, best);
  benchmark::RegisterBenchmark(cat({kind, "_nm_s8/qprune", tag}).c_str(), bm_qprune<packed_nm_matrix<std::int8_t>>, p,
                               best);
  if (p.m * p.n * p.k <= (index_t{1} << 26)) {
    benchmark::RegisterBenchmark(cat({kind, "_nm_f32/scalar_twin", tag}).c_str(), bm_qprune<packed_nm_matrix<float>>, p,
                                 isa::scalar);
  }
}

void register_dense(const problem& p) {
  const std::string kind = p.m == 1 ? "gemv" : "gemm";
  benchmark::RegisterBenchmark(cat({kind, "_dense_f32/eigen_rowmajor/", dims(p)}).c_str(), bm_eigen_dense, p, false);
  benchmark::RegisterBenchmark(cat({kind, "_dense_f32/eigen_colmajor/", dims(p)}).c_str(), bm_eigen_dense, p, true);
}

void register_all() {
  for (const index_t n : {index_t{1024}, index_t{4096}}) {
    register_dense({1, n, n, 0});
    for (const int s : {50, 75, 90, 95}) register_csr({1, n, n, s});
    register_nm({1, n, n, 50});
  }
  register_dense({64, 1024, 1024, 0});
  for (const int s : {50, 75, 90, 95}) register_csr({64, 1024, 1024, s});
  register_nm({64, 1024, 1024, 50});
}

const int registered = (register_all(), 0);

}  // namespace

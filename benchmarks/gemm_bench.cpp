// int8 GEMM against its baselines, in one binary, for the shapes of real
// layers: qprune's dispatched kernel (and each forced ISA), the scalar
// reference twin, Eigen fp32 (-O3 -mavx2 -mfma, both storage orders) and, when
// Debian's libdnnl-dev is installed, oneDNN's dnnl_gemm_u8s8s32 and dnnl_sgemm.
// Items are multiply-accumulates (M*N*K per iteration). The gemm_pair
// benchmarks report ratios instead (counters a_us, b_us, b_over_a; see paired()).
//
//   OMP_NUM_THREADS=1 ./gemm_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   ./gemm_bench --benchmark_filter='gemm_pair' --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "eigen_baseline.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/kernels/gemm_f16.hpp"
#include "qprune/kernels/gemm_s8.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/quant/dynamic.hpp"

#ifdef QPRUNE_BENCH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#if QPRUNE_X86
#include <immintrin.h>
#endif

namespace {

using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;

struct shape {
  index_t m, n, k;
};
const shape shapes[] = {{1, 1024, 1024},  {16, 1024, 1024}, {64, 1024, 1024}, {256, 256, 256},
                        {512, 512, 512}, {1024, 1024, 1024}, {784, 64, 288},  {33, 257, 300}};

template <class T>
tensor<T, 2> random_int(index_t r, index_t c, int lo, int hi, unsigned seed) {
  tensor<T, 2> t(r, c);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  for (auto& v : t.span()) v = static_cast<T>(d(rng));
  return t;
}

tensor<float, 2> random_float(index_t r, index_t c, unsigned seed) {
  tensor<float, 2> t(r, c);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (auto& v : t.span()) v = d(rng);
  return t;
}

void set_macs(benchmark::State& state, const shape& s) {
  state.SetItemsProcessed(state.iterations() * s.m * s.n * s.k);
}

void bm_qprune_int32(benchmark::State& state, shape s, isa path, int threads) {
  if (!qprune::kernels::is_supported(path)) return state.SkipWithError("ISA not supported");
  qprune::kernels::set_num_threads(threads);
  const auto a = random_int<std::uint8_t>(s.m, s.k, 0, 255, 1);
  const auto w = random_int<std::int8_t>(s.n, s.k, -127, 127, 2);
  const auto packed = qprune::kernels::pack_s8(w.cview(), path);
  tensor<std::int32_t, 2> c(s.m, s.n);
  for (auto _ : state) {
    qprune::kernels::gemm_s8<std::uint8_t>(a.cview(), 128, packed, c.view());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  qprune::kernels::set_num_threads(1);
  set_macs(state, s);
}

void bm_qprune_float_out(benchmark::State& state, shape s, isa path) {
  if (!qprune::kernels::is_supported(path)) return state.SkipWithError("ISA not supported");
  const auto a = random_int<std::uint8_t>(s.m, s.k, 0, 255, 1);
  const auto w = random_int<std::int8_t>(s.n, s.k, -127, 127, 2);
  const auto packed = qprune::kernels::pack_s8(w.cview(), path);
  std::vector<float> scale(static_cast<std::size_t>(s.n), 1e-4f), bias(static_cast<std::size_t>(s.n), 0.5f);
  tensor<float, 2> y(s.m, s.n);
  const qprune::kernels::store_float st{scale.data(), bias.data(), true};
  for (auto _ : state) {
    qprune::kernels::gemm_s8<std::uint8_t>(a.cview(), 128, packed, y.view(), st);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}

/// The u8 x s8 GEMM's operands: u8 activations (zero point 128), packed s8
/// weights and an int8 output stage (per-channel multipliers, int32 bias, fused
/// ReLU); run() computes the product into int32 or, through the stage, int8.
struct u8s8_problem {
  tensor<std::uint8_t, 2> a;
  qprune::kernels::packed_s8 packed;
  qprune::kernels::requant_stage<std::int8_t> stage;

  explicit u8s8_problem(const shape& s)
      : a(random_int<std::uint8_t>(s.m, s.k, 0, 255, 1)),
        packed(qprune::kernels::pack_s8(random_int<std::int8_t>(s.n, s.k, -127, 127, 2).cview())),
        stage(qprune::quant::make_requant_params(0.02f, std::vector<float>(static_cast<std::size_t>(s.n), 2e-3f),
                                                 {0.5f, -3}, qprune::quant::full_range(qprune::quant::dtype::int8),
                                                 qprune::quant::fused_activation::relu),
              std::vector<std::int32_t>(static_cast<std::size_t>(s.n), 1000), s.n) {}

  void run(tensor<std::int32_t, 2>& c) const {
    qprune::kernels::gemm_s8<std::uint8_t>(a.cview(), 128, packed, c.view());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  void run(tensor<std::int8_t, 2>& q) const {
    qprune::kernels::gemm_s8<std::uint8_t, std::int8_t>(a.cview(), 128, packed, q.view(), stage);
    benchmark::DoNotOptimize(q.data());
    benchmark::ClobberMemory();
  }
};

void bm_qprune_requant(benchmark::State& state, shape s) {
  const u8s8_problem p(s);
  tensor<std::int8_t, 2> q(s.m, s.n);
  for (auto _ : state) p.run(q);
  set_macs(state, s);
}

/// Times a() and b() alternately (a b, then b a, ...) for the benchmark's
/// iterations and reports the median of the per-pair ratios time(b) / time(a)
/// as the counter `b_over_a`, with each side's median time in microseconds
/// (`a_us`, `b_us`). On a host whose other tenants change the speed from one
/// second to the next, the two sides of a pair run under the same conditions;
/// separate benchmarks seconds apart do not. Each timed call follows an
/// untimed call of the same side, as in back-to-back use: caches hold that
/// side's output and the thread pool's workers are awake.
template <class A, class B>
void paired(benchmark::State& state, A&& a, B&& b) {
  using clock = std::chrono::steady_clock;
  std::vector<double> ta, tb, ratio;
  const auto timed = [](auto& f) {
    f();
    const auto t0 = clock::now();
    f();
    return std::chrono::duration<double, std::micro>(clock::now() - t0).count();
  };
  bool a_first = true;
  for (auto _ : state) {
    double x = 0.0, y = 0.0;
    if (a_first) {
      x = timed(a);
      y = timed(b);
    } else {
      y = timed(b);
      x = timed(a);
    }
    a_first = !a_first;
    ta.push_back(x);
    tb.push_back(y);
    ratio.push_back(y / x);
  }
  const auto median = [](std::vector<double>& v) {
    if (v.empty()) return 0.0;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  state.counters["a_us"] = median(ta);
  state.counters["b_us"] = median(tb);
  state.counters["b_over_a"] = median(ratio);
}

/// Requantizing output (int8, per-channel multipliers, bias, ReLU) against int32
/// output of the same product, paired: b_over_a - 1 is the output stage's cost.
void bm_pair_requant(benchmark::State& state, shape s) {
  const u8s8_problem p(s);
  tensor<std::int32_t, 2> c(s.m, s.n);
  tensor<std::int8_t, 2> q(s.m, s.n);
  paired(state, [&] { p.run(c); }, [&] { p.run(q); });
}

/// The int32-output GEMM on one thread (a) and on two (b), paired:
/// 1 / b_over_a is the two-thread speed-up.
void bm_pair_threads(benchmark::State& state, shape s) {
  const u8s8_problem p(s);
  tensor<std::int32_t, 2> c(s.m, s.n);
  const auto run = [&](int threads) {
    qprune::kernels::set_num_threads(threads);
    p.run(c);
  };
  paired(state, [&] { run(1); }, [&] { run(2); });
  qprune::kernels::set_num_threads(1);
}

template <class H>
void bm_qprune_f16w(benchmark::State& state, shape s) {
  const auto x = random_float(s.m, s.k, 3);
  const auto w = random_float(s.n, s.k, 4);
  const auto packed = qprune::kernels::pack_f16<H>(w.cview());
  std::vector<float> bias(static_cast<std::size_t>(s.n), 0.1f);
  tensor<float, 2> y(s.m, s.n);
  for (auto _ : state) {
    qprune::kernels::gemm_f16<H>(x.cview(), packed, bias, false, y.view());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}

// A dynamic int8 Dense layer, fp32 in and out: range of the batch, quantization
// of x, int8 GEMM, dequantization and bias, all inside the timed call.
void bm_dynamic_dense(benchmark::State& state, shape s, isa path) {
  const auto x = random_float(s.m, s.k, 3);
  const auto w = random_float(s.n, s.k, 4);
  std::vector<float> bias(static_cast<std::size_t>(s.n), 0.1f);
  qprune::quant::dynamic_linear layer(w.cview(), bias, qprune::quant::weight_granularity::per_channel,
                                      qprune::quant::dynamic_scheme::for_qprune(qprune::quant::dtype::uint8),
                                      path);
  tensor<float, 2> y(s.m, s.n);
  for (auto _ : state) {
    layer.forward(x.cview(), y.view());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}

void bm_reference(benchmark::State& state, shape s) {
  const auto a = random_int<std::uint8_t>(s.m, s.k, 0, 255, 1);
  const auto w = random_int<std::int8_t>(s.n, s.k, -127, 127, 2);
  tensor<std::int32_t, 2> c(s.m, s.n);
  for (auto _ : state) {
    qprune::kernels::reference::gemm_s8(s.m, s.n, s.k, a.data(), s.k, 128, w.data(), s.k, c.data(),
                                        s.n, qprune::kernels::store_int32{});
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}

void bm_eigen(benchmark::State& state, shape s, bool col_major) {
  const auto x = random_float(s.m, s.k, 3);
  const auto w = random_float(s.n, s.k, 4);
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

#ifdef QPRUNE_BENCH_HAVE_DNNL
/// 1 when oneDNN's u8s8s32 GEMM is exact on this CPU, 0 when it saturates: on
/// AVX2 without VNNI it sums u8 x s8 pairs in int16 (vpmaddubsw), and
/// 255 * 127 * 2 > 32767. Reported as the counter `exact` of its benchmarks.
double dnnl_u8s8_exact() {
  static const double exact = [] {
    constexpr std::int32_t k = 64;
    const std::vector<std::uint8_t> a(k, 255);
    const std::vector<std::int8_t> b(k, 127);
    std::int32_t c = 0;
    const std::int32_t co = 0;
    dnnl_gemm_u8s8s32('N', 'N', 'F', 1, 1, k, 1.0f, a.data(), k, 0, b.data(), 1, 0, 0.0f, &c, 1, &co);
    return c == 255 * 127 * k ? 1.0 : 0.0;
  }();
  return exact;
}

void bm_dnnl_u8s8s32(benchmark::State& state, shape s) {
  const auto a = random_int<std::uint8_t>(s.m, s.k, 0, 255, 1);
  const auto w = random_int<std::int8_t>(s.n, s.k, -127, 127, 2);
  tensor<std::int32_t, 2> c(s.m, s.n);
  const std::int32_t co = 0;
  for (auto _ : state) {
    // Row-major C = (A - 128) * W^T: B = W^T is 'T' of the [N,K] matrix.
    dnnl_gemm_u8s8s32('N', 'T', 'F', s.m, s.n, s.k, 1.0f, a.data(), s.k, 128, w.data(), s.k, 0,
                      0.0f, c.data(), s.n, &co);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
  state.counters["exact"] = dnnl_u8s8_exact();
}

void bm_dnnl_sgemm(benchmark::State& state, shape s) {
  const auto x = random_float(s.m, s.k, 3);
  const auto w = random_float(s.n, s.k, 4);
  tensor<float, 2> y(s.m, s.n);
  for (auto _ : state) {
    dnnl_sgemm('N', 'T', s.m, s.n, s.k, 1.0f, x.data(), s.k, w.data(), s.k, 0.0f, y.data(), s.n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_macs(state, s);
}
#endif

#if QPRUNE_X86
// The core's ceilings, for reading the ratios: fp32 FMA (what Eigen's sgemm can
// approach) and the AVX2 path's exact int8 step, vpmaddwd (16 int16 products
// summed in pairs into int32) plus vpaddd. Eight independent chains of
// register-only instructions, 1024 steps per iteration; items are MACs.
#define QPRUNE_BENCH_X8(S) S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7)

[[gnu::target("avx2,fma")]] void bm_peak_fma_f32(benchmark::State& state) {
  if (!qprune::kernels::is_supported(isa::avx2)) return state.SkipWithError("ISA not supported");
#define QPRUNE_BENCH_ACC(j) __m256 a##j = _mm256_set1_ps(0.0f);
  QPRUNE_BENCH_X8(QPRUNE_BENCH_ACC)
#undef QPRUNE_BENCH_ACC
  const __m256 b = _mm256_set1_ps(1.0f), c = _mm256_set1_ps(0.0f);
  for (auto _ : state) {
    for (int i = 0; i < 1024; ++i) {
#define QPRUNE_BENCH_STEP(j) asm volatile("vfmadd231ps %1, %2, %0" : "+x"(a##j) : "x"(b), "x"(c));
      QPRUNE_BENCH_X8(QPRUNE_BENCH_STEP)
#undef QPRUNE_BENCH_STEP
    }
  }
  // One sum kept, not the chains themselves: taking their addresses made GCC
  // store every chain after each step.
  __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 1024 * 8 * 8);
}

[[gnu::target("avx2,fma")]] void bm_peak_madd_s16(benchmark::State& state) {
  if (!qprune::kernels::is_supported(isa::avx2)) return state.SkipWithError("ISA not supported");
#define QPRUNE_BENCH_ACC(j) __m256i a##j = _mm256_set1_epi32(0);
  QPRUNE_BENCH_X8(QPRUNE_BENCH_ACC)
#undef QPRUNE_BENCH_ACC
  const __m256i b = _mm256_set1_epi16(3), c = _mm256_set1_epi16(5);
  for (auto _ : state) {
    for (int i = 0; i < 1024; ++i) {
#define QPRUNE_BENCH_STEP(j)                                                            \
  {                                                                                     \
    __m256i t;                                                                          \
    asm volatile("vpmaddwd %2, %3, %1\n\tvpaddd %1, %0, %0" : "+x"(a##j), "=&x"(t) : "x"(b), "x"(c)); \
  }
      QPRUNE_BENCH_X8(QPRUNE_BENCH_STEP)
#undef QPRUNE_BENCH_STEP
    }
  }
  __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                 _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 1024 * 8 * 16);
}

// The AVX-512 ceilings: 512-bit FMA (16 MACs) and vpdpbusd (64 u8 x s8 MACs
// into int32), eight independent chains each.
[[gnu::target("avx512f,avx512vnni")]] void bm_peak_fma_f32_512(benchmark::State& state) {
  if (!qprune::kernels::is_supported(isa::avx512)) return state.SkipWithError("ISA not supported");
#define QPRUNE_BENCH_ACC(j) __m512 a##j = _mm512_set1_ps(0.0f);
  QPRUNE_BENCH_X8(QPRUNE_BENCH_ACC)
#undef QPRUNE_BENCH_ACC
  const __m512 b = _mm512_set1_ps(1.0f), c = _mm512_set1_ps(0.0f);
  for (auto _ : state) {
    for (int i = 0; i < 1024; ++i) {
#define QPRUNE_BENCH_STEP(j) asm volatile("vfmadd231ps %1, %2, %0" : "+v"(a##j) : "v"(b), "v"(c));
      QPRUNE_BENCH_X8(QPRUNE_BENCH_STEP)
#undef QPRUNE_BENCH_STEP
    }
  }
  __m512 sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 1024 * 8 * 16);
}

[[gnu::target("avx512f,avx512vnni")]] void bm_peak_dpbusd(benchmark::State& state) {
  if (!qprune::kernels::is_supported(isa::avx512_vnni)) return state.SkipWithError("ISA not supported");
#define QPRUNE_BENCH_ACC(j) __m512i a##j = _mm512_set1_epi32(0);
  QPRUNE_BENCH_X8(QPRUNE_BENCH_ACC)
#undef QPRUNE_BENCH_ACC
  const __m512i b = _mm512_set1_epi8(3), c = _mm512_set1_epi8(5);
  for (auto _ : state) {
    for (int i = 0; i < 1024; ++i) {
#define QPRUNE_BENCH_STEP(j) asm volatile("vpdpbusd %1, %2, %0" : "+v"(a##j) : "v"(b), "v"(c));
      QPRUNE_BENCH_X8(QPRUNE_BENCH_STEP)
#undef QPRUNE_BENCH_STEP
    }
  }
  __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                 _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 1024 * 8 * 64);
}
#undef QPRUNE_BENCH_X8
#endif

/// Every benchmark reports wall time (UseRealTime): the two-thread runs' CPU time
/// would count only the calling thread.
void register_all() {
#if QPRUNE_X86
  benchmark::RegisterBenchmark("peak/fma_f32", bm_peak_fma_f32);
  benchmark::RegisterBenchmark("peak/madd_add_s16", bm_peak_madd_s16);
  benchmark::RegisterBenchmark("peak/fma_f32_512", bm_peak_fma_f32_512);
  benchmark::RegisterBenchmark("peak/dpbusd_s32", bm_peak_dpbusd);
#endif
  for (const shape& s : shapes) {
    const std::string dims = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
    for (isa path : {isa::avx512_vnni, isa::avx2}) {
      benchmark::RegisterBenchmark(("gemm_u8s8s32/qprune_" + std::string(qprune::kernels::to_string(path)) + "/" + dims).c_str(),
                                   bm_qprune_int32, s, path, 1)->UseRealTime();
    }
    benchmark::RegisterBenchmark(("gemm_u8s8s32/qprune_2threads/" + dims).c_str(), bm_qprune_int32, s,
                                 qprune::kernels::active_isa(), 2)->UseRealTime();
    benchmark::RegisterBenchmark(("gemm_u8s8_f32out/qprune_" + std::string(qprune::kernels::to_string(qprune::kernels::active_isa())) + "/" + dims).c_str(),
                                 bm_qprune_float_out, s, qprune::kernels::active_isa())->UseRealTime();
    benchmark::RegisterBenchmark(("gemm_u8s8_requant_s8/qprune_" + std::string(qprune::kernels::to_string(qprune::kernels::active_isa())) + "/" + dims).c_str(),
                                 bm_qprune_requant, s)->UseRealTime();
    if (s.m >= 64) {
      benchmark::RegisterBenchmark(("gemm_pair/requant_s8_vs_int32/" + dims).c_str(), bm_pair_requant, s)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("gemm_pair/2threads_vs_1/" + dims).c_str(), bm_pair_threads, s)->UseRealTime();
    }
    if (s.n == 1024 && s.k == 1024 && s.m <= 64) {
      benchmark::RegisterBenchmark(("dynamic_dense/qprune/" + dims).c_str(), bm_dynamic_dense, s,
                                   qprune::kernels::active_isa())->UseRealTime();
      benchmark::RegisterBenchmark(("dynamic_dense/reference/" + dims).c_str(), bm_dynamic_dense, s,
                                   isa::scalar)->UseRealTime();
    }
    benchmark::RegisterBenchmark(("gemm_f16w/qprune/" + dims).c_str(), bm_qprune_f16w<qprune::half>, s)->UseRealTime();
    benchmark::RegisterBenchmark(("gemm_bf16w/qprune/" + dims).c_str(), bm_qprune_f16w<qprune::bfloat16>, s)->UseRealTime();
    if (s.m * s.n * s.k <= 64 * 1024 * 1024) {
      benchmark::RegisterBenchmark(("gemm_u8s8s32/reference/" + dims).c_str(), bm_reference, s)->UseRealTime();
    }
    benchmark::RegisterBenchmark(("sgemm/eigen_rowmajor/" + dims).c_str(), bm_eigen, s, false)->UseRealTime();
    benchmark::RegisterBenchmark(("sgemm/eigen_colmajor/" + dims).c_str(), bm_eigen, s, true)->UseRealTime();
#ifdef QPRUNE_BENCH_HAVE_DNNL
    benchmark::RegisterBenchmark(("gemm_u8s8s32/onednn/" + dims).c_str(), bm_dnnl_u8s8s32, s)->UseRealTime();
    benchmark::RegisterBenchmark(("sgemm/onednn/" + dims).c_str(), bm_dnnl_sgemm, s)->UseRealTime();
#endif
  }
}

const int registered = (register_all(), 0);

}  // namespace

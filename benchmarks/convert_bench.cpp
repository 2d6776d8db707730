// Bulk float <-> half / bfloat16 conversion: every instruction-set path next
// to the scalar reference twin, on an L1-sized (16 KiB of float), an L2-sized
// (256 KiB of float) and a DRAM-sized (64 MiB of float) array, plus memcpy of
// the same bytes (the memory system's ceiling). Reports elements per second.
//
//   ./convert_bench --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/memory.hpp"
#include "qprune/kernels/convert.hpp"

namespace {

using qprune::bfloat16;
using qprune::half;
using qprune::kernels::isa;

constexpr std::int64_t l1_elems = (16 << 10) / 4;    // 16 KiB of float
constexpr std::int64_t l2_elems = (256 << 10) / 4;    // 256 KiB of float
constexpr std::int64_t dram_elems = (64 << 20) / 4;   // 64 MiB of float

qprune::aligned_vector<float> random_floats(std::size_t n) {
  qprune::aligned_vector<float> v(n);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 10.0f);
  for (auto& x : v) x = nd(rng);
  return v;
}

template <class Out>
void bm_from_f32(benchmark::State& state, isa path) {
  if (!qprune::kernels::is_supported(path)) {
    state.SkipWithError("instruction set not supported by this CPU");
    return;
  }
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto in = random_floats(n);
  qprune::aligned_vector<Out> out(n);
  for (auto _ : state) {
    qprune::kernels::convert(std::span<const float>(in), std::span<Out>(out), path);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

void bm_f16_to_f32(benchmark::State& state, isa path) {
  if (!qprune::kernels::is_supported(path)) {
    state.SkipWithError("instruction set not supported by this CPU");
    return;
  }
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto src = random_floats(n);
  qprune::aligned_vector<half> in(n);
  qprune::kernels::convert(std::span<const float>(src), std::span<half>(in));
  qprune::aligned_vector<float> out(n);
  for (auto _ : state) {
    qprune::kernels::convert(std::span<const half>(in), std::span<float>(out), path);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

// The bytes a conversion moves (4 read + 2 written per element), moved by memcpy.
void bm_memcpy_same_bytes(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto in = random_floats(n);
  qprune::aligned_vector<std::uint16_t> out(n);
  for (auto _ : state) {
    std::memcpy(out.data(), in.data(), n * 2);
    std::memcpy(out.data(), in.data() + n / 2, n * 2);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

void register_all() {
  benchmark::RegisterBenchmark("memcpy_same_bytes", bm_memcpy_same_bytes)
      ->Arg(l1_elems)->Arg(l2_elems)->Arg(dram_elems);
  for (isa path : {isa::scalar, isa::avx2, isa::avx512}) {
    const std::string p(qprune::kernels::to_string(path));
    benchmark::RegisterBenchmark(("f32_to_f16/" + p).c_str(), bm_from_f32<half>, path)
        ->Arg(l1_elems)->Arg(l2_elems)->Arg(dram_elems);
    benchmark::RegisterBenchmark(("f16_to_f32/" + p).c_str(), bm_f16_to_f32, path)
        ->Arg(l1_elems)->Arg(l2_elems)->Arg(dram_elems);
    benchmark::RegisterBenchmark(("f32_to_bf16/" + p).c_str(), bm_from_f32<bfloat16>, path)
        ->Arg(l1_elems)->Arg(l2_elems)->Arg(dram_elems);
  }
}

const int registered = (register_all(), 0);

}  // namespace

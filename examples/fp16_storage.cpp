// Stores a layer's float weights as fp16 and as bf16 and reports what that
// buys and costs: bytes before and after, and the error of the round trip.
//
//   fp16_storage [--rows N] [--cols N] [--seed S]
//
// The weights are a dense layer's, drawn the way PyTorch initialises
// nn.Linear (uniform in +-1/sqrt(fan_in)) from a fixed seed.
#include <qprune/qprune.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

struct stats {
  double max_abs = 0, rms = 0, sqnr_db = 0;
};

stats compare(std::span<const float> ref, std::span<const float> got) {
  double err2 = 0, sig2 = 0, max_abs = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double e = static_cast<double>(got[i]) - static_cast<double>(ref[i]);
    err2 += e * e;
    sig2 += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
    max_abs = std::max(max_abs, std::abs(e));
  }
  const double n = static_cast<double>(ref.size());
  return {max_abs, std::sqrt(err2 / n), err2 > 0 ? 10.0 * std::log10(sig2 / err2) : INFINITY};
}

qprune::index_t arg(int argc, char** argv, const char* name, qprune::index_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtoll(argv[i + 1], nullptr, 10);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
  const qprune::index_t rows = arg(argc, argv, "--rows", 1024);
  const qprune::index_t cols = arg(argc, argv, "--cols", 1024);
  const auto seed = static_cast<unsigned>(arg(argc, argv, "--seed", 7));
  if (rows <= 0 || cols <= 0) throw qprune::shape_error("--rows and --cols must be positive");

  qprune::tensor<float, 2> w(rows, cols);
  std::mt19937 rng(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(cols));
  std::uniform_real_distribution<float> u(-bound, bound);
  for (float& x : w.span()) x = u(rng);

  const auto n = static_cast<std::size_t>(w.size());
  std::vector<qprune::half> h(n);
  std::vector<qprune::bfloat16> b(n);
  std::vector<float> back_h(n), back_b(n);
  qprune::kernels::convert(w.span(), std::span<qprune::half>(h));
  qprune::kernels::convert(std::span<const qprune::half>(h), std::span<float>(back_h));
  qprune::kernels::convert(w.span(), std::span<qprune::bfloat16>(b));
  qprune::kernels::convert(std::span<const qprune::bfloat16>(b), std::span<float>(back_b));

  const auto sh = compare(w.span(), back_h);
  const auto sb = compare(w.span(), back_b);
  const double f32_bytes = static_cast<double>(n * sizeof(float));
  std::printf("weights: %td x %td dense layer, seed %u, conversion path: %s\n\n", rows, cols,
              seed, std::string(qprune::kernels::to_string(qprune::kernels::active_isa())).c_str());
  std::printf("| format | bytes | ratio | max abs error | RMS error | SQNR (dB) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  std::printf("| fp32 | %zu | 1.00x | 0 | 0 | inf |\n", n * sizeof(float));
  std::printf("| fp16 | %zu | %.2fx | %.3g | %.3g | %.1f |\n", n * sizeof(qprune::half),
              f32_bytes / static_cast<double>(n * sizeof(qprune::half)), sh.max_abs, sh.rms,
              sh.sqnr_db);
  std::printf("| bf16 | %zu | %.2fx | %.3g | %.3g | %.1f |\n", n * sizeof(qprune::bfloat16),
              f32_bytes / static_cast<double>(n * sizeof(qprune::bfloat16)), sb.max_abs, sb.rms,
              sb.sqnr_db);
  // fp16 keeps 11 significant bits, bf16 8: each must be within half an ulp.
  const bool ok = sh.max_abs <= bound * 0x1p-11 && sb.max_abs <= bound * 0x1p-8;
  if (!ok) std::printf("\nerror larger than half an ulp: conversion is wrong\n");
  return ok ? 0 : 1;
} catch (const qprune::error& e) {
  std::fprintf(stderr, "fp16_storage: %s\n", e.what());
  return 1;
}

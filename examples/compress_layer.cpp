// Compresses one dense layer's weights every way qprune stores them and prints
// what each way costs (error against the float weights) and buys (bytes): fp16,
// bf16, int8 per channel and per tensor, int4 in groups of 32, magnitude
// pruning to 50% and 90% in the smallest sparse format, 2:4, and pruning plus
// int8. Every byte count comes from the library's own accounting.
//
//   compress_layer [--rows N] [--cols N] [--seed S]
//
// The weights are drawn the way PyTorch initialises nn.Linear (uniform in
// +-1/sqrt(fan_in)) from a fixed seed.
#include <qprune/qprune.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using qprune::index_t;
using qprune::tensor;
namespace quant = qprune::quant;
namespace prune = qprune::prune;

struct row {
  std::string variant;
  std::int64_t bytes;
  double sqnr_db;
  double max_abs_error;
  double sparsity;
};

index_t arg(int argc, char** argv, const char* name, index_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtoll(argv[i + 1], nullptr, 10);
  return fallback;
}

row reconstructed(std::string name, const tensor<float, 2>& w, const tensor<float, 2>& back,
                  std::int64_t bytes, double sparsity) {
  const auto r = quant::reconstruction_report(w.cview(), back.cview());
  return {std::move(name), bytes, r.sqnr_db, r.max_abs_error, sparsity};
}

template <class Storage>
row sparse_row(std::string name, const tensor<float, 2>& w, const Storage& s, double sparsity) {
  tensor<float, 2> back(w.extent(0), w.extent(1));
  s.to_dense(back.view());
  return reconstructed(std::move(name), w, back, static_cast<std::int64_t>(s.bytes()), sparsity);
}

tensor<float, 2> masked(const tensor<float, 2>& w, const prune::mask& m) {
  tensor<float, 2> p = w;
  m.apply(p.view());
  return p;
}

}  // namespace

int main(int argc, char** argv) try {
  const index_t rows = arg(argc, argv, "--rows", 1024);
  const index_t cols = arg(argc, argv, "--cols", 1024);
  const auto seed = static_cast<unsigned>(arg(argc, argv, "--seed", 7));
  if (rows <= 0 || cols <= 0) throw qprune::shape_error("--rows and --cols must be positive");

  tensor<float, 2> w(rows, cols);
  std::mt19937 rng(seed);
  const float bound = 1.0f / std::sqrt(static_cast<float>(cols));
  std::uniform_real_distribution<float> u(-bound, bound);
  for (float& x : w.span()) x = u(rng);
  const auto n = w.size();
  const std::int64_t fp32_bytes = 4 * static_cast<std::int64_t>(n);
  std::vector<row> table;
  table.push_back({"fp32", fp32_bytes, INFINITY, 0.0, 0.0});

  {  // 2-byte floats
    tensor<float, 2> back(rows, cols);
    quant::fp16 f16;
    f16.dequantize(f16.quantize(w.cview()), back.view());
    table.push_back(reconstructed("fp16", w, back, 2 * static_cast<std::int64_t>(n), 0.0));
    quant::bf16 b16;
    b16.dequantize(b16.quantize(w.cview()), back.view());
    table.push_back(reconstructed("bf16", w, back, 2 * static_cast<std::int64_t>(n), 0.0));
  }
  {  // int8, TFLite's weight spec: symmetric [-127, 127] per output channel
    tensor<std::int8_t, 2> codes(rows, cols);
    const auto pc = quant::tflite::quantize_weights_per_channel(w.cview(), codes.view(), 0);
    const auto r = quant::quantization_report(w.cview(), pc, quant::narrow_range(quant::dtype::int8),
                                              quant::dtype::int8, quant::scheme::symmetric);
    table.push_back({"int8 per channel", r.bytes_after, r.sqnr_db, r.max_abs_error, 0.0});
    float amax = 0.0f;
    for (float x : w.span()) amax = std::max(amax, std::abs(x));
    const auto pt = quant::choose_symmetric_params(amax, quant::narrow_range(quant::dtype::int8));
    const auto rt = quant::quantization_report(w.cview(), pt, quant::narrow_range(quant::dtype::int8),
                                               quant::dtype::int8, quant::scheme::symmetric);
    table.push_back({"int8 per tensor", rt.bytes_after, rt.sqnr_db, rt.max_abs_error, 0.0});
  }
  {  // int4, symmetric groups of 32 along the input dimension
    const auto pg = quant::choose_int4_group_params(w.cview(), 32, quant::int4_scheme::symmetric);
    const auto r = quant::quantization_report(w.cview(), pg, quant::code_range(quant::int4_scheme::symmetric),
                                              quant::dtype::int4, quant::scheme::symmetric);
    table.push_back({"int4 group 32", r.bytes_after, r.sqnr_db, r.max_abs_error, 0.0});
  }
  for (float s : {0.5f, 0.9f}) {  // magnitude pruning, fp16 and int8 values
    const auto m = prune::magnitude_mask(w.cview(), s);
    const auto p = masked(w, m);
    const std::string pct = std::to_string(static_cast<int>(s * 100.0f + 0.5f)) + "%";
    table.push_back(sparse_row("magnitude " + pct + ", bitmask fp16", w,
                               prune::bitmask_matrix<qprune::half>::from_dense(p.cview()), m.sparsity()));
    table.push_back(sparse_row("magnitude " + pct + ", csr fp16", w,
                               prune::csr_matrix<qprune::half>::from_dense(p.cview()), m.sparsity()));
    table.push_back(sparse_row("magnitude " + pct + ", bitmask int8", w,
                               prune::bitmask_matrix<std::int8_t>::from_dense(p.cview()), m.sparsity()));
  }
  {  // 2:4 semi-structured
    const auto m = prune::n_m_mask(w.cview(), 2, 4);
    const auto p = masked(w, m);
    table.push_back(sparse_row("2:4, packed fp16", w,
                               prune::packed_nm_matrix<qprune::half>::from_dense(p.cview(), 2, 4),
                               m.sparsity()));
  }

  std::printf("weights: %td x %td dense layer (PyTorch nn.Linear init, seed %u)\n\n", rows, cols, seed);
  std::printf("| variant | bytes | size vs fp32 | SQNR (dB) | max abs error | sparsity |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const row& r : table) {
    std::printf("| %s | %lld | %.1f%% | %.1f | %.3g | %.0f%% |\n", r.variant.c_str(),
                static_cast<long long>(r.bytes), 100.0 * static_cast<double>(r.bytes) / static_cast<double>(fp32_bytes),
                r.sqnr_db, r.max_abs_error, 100.0 * r.sparsity);
  }
  return 0;
} catch (const qprune::error& e) {
  std::fprintf(stderr, "compress_layer: %s\n", e.what());
  return 1;
}

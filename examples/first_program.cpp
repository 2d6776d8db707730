// The README's first program: int8 weights packed for the GEMM, and 90%
// magnitude pruning stored as a bitmask with fp16 values.
#include <qprune/qprune.hpp>

#include <cstdio>
namespace q = qprune::quant;
namespace p = qprune::prune;

int main() {
  qprune::tensor<float, 2> w(1024, 1024);                 // [out, in], row-major, aligned
  qprune::as_eigen(w.view()).setRandom();                 // zero-copy Eigen::Map
  // int8, TFLite's weight spec: symmetric [-127, 127] per output channel.
  qprune::tensor<std::int8_t, 2> codes(1024, 1024);
  auto params = q::tflite::quantize_weights_per_channel(w.cview(), codes.view(), 0);
  auto packed = qprune::kernels::pack_s8(codes.cview());  // once, for the best ISA
  // Prune 90% by magnitude and store the rest as a bitmask with fp16 values.
  auto mask = p::magnitude_mask(w.cview(), 0.9f);
  mask.apply(w.view());
  auto sparse = p::bitmask_matrix<qprune::half>::from_dense(w.cview());
  std::printf("%zu bytes (dense fp32: %d)\n", sparse.bytes(), 4 * 1024 * 1024);
}

// GEMM with fp16 or bf16 weights and float activations, for Dense layers whose
// weights are stored at 2 bytes each:
//
//   y[m][n] = act( sum_k x[m][k] * float(w[n][k]) + bias[n] )
//
// Weights are packed once (pack_f16) into panels of output channels; every
// call widens one panel row at a time in registers, never the whole matrix.
// Each output accumulates with fused multiply-adds in k order on every path
// (AVX-512, AVX2+F16C, the scalar twin in kernels/reference/gemm_f16.hpp), so
// all paths give the same bits, for fp16 and bf16 weights alike.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/kernels/reference/gemm_f16.hpp"
#include "qprune/kernels/x86/gemm_f16.hpp"

namespace qprune::kernels {

/// 2-byte float weights [N, K] (H = half or bfloat16) packed for one
/// instruction set. Build with pack_f16().
template <class H>
class packed_f16 {
  static_assert(std::is_same_v<H, half> || std::is_same_v<H, bfloat16>,
                "packed_f16: H must be qprune::half or qprune::bfloat16");

 public:
  packed_f16() = default;
  index_t rows() const noexcept { return n_; }
  index_t cols() const noexcept { return k_; }
  isa path() const noexcept { return path_; }
  /// Bytes of packed weights, padding included.
  std::size_t bytes() const noexcept { return data_.size() * 2; }
  /// Panel width in output channels (16 for AVX-512, 8 for AVX2, 0 = plain rows).
  index_t panel() const noexcept { return panel_; }
  const H* data() const noexcept { return data_.data(); }

  /// Packs w [N, K]: w(n, k) is converted from float with round to nearest even.
  static packed_f16 pack(tensor_view<const float, 2> w, isa path) {
    require_supported(path);
    packed_f16 p;
    p.n_ = w.extent(0);
    p.k_ = w.extent(1);
    p.path_ = path;
    p.panel_ = (path == isa::avx512 || path == isa::avx512_vnni) ? 16 : path == isa::avx2 ? 8 : 0;
    const index_t n = p.n_, k = p.k_, wd = p.panel_;
    if (wd == 0) {
      p.data_.resize(static_cast<std::size_t>(n * k));
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j) p.data_[static_cast<std::size_t>(i * k + j)] = H(w(i, j));
    } else {
      const index_t panels = (n + wd - 1) / wd;
      p.data_.assign(static_cast<std::size_t>(panels * k * wd), H{});
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j)
          p.data_[static_cast<std::size_t>(((i / wd) * k + j) * wd + i % wd)] = H(w(i, j));
    }
    return p;
  }

 private:
  index_t n_ = 0, k_ = 0, panel_ = 0;
  isa path_ = isa::scalar;
  aligned_vector<H> data_;
};

/// Packs float weights w [N, K] to fp16 (H = half) or bf16 for `path`.
template <class H>
[[nodiscard]] packed_f16<H> pack_f16(tensor_view<const float, 2> w, isa path = active_isa()) {
  return packed_f16<H>::pack(w, path);
}

/// y = act(x * w^T + bias). x: [M, K] float, y: [M, N]; bias: N values or
/// empty. Throws shape_error on mismatched extents or a bias of the wrong size.
template <class H>
void gemm_f16(tensor_view<const float, 2> x, const packed_f16<H>& w, std::span<const float> bias,
              bool relu, tensor_view<float, 2> y) {
  const index_t m = x.extent(0), n = w.rows(), k = w.cols();
  if (x.extent(1) != k) {
    throw shape_error("fp16 GEMM input has " + std::to_string(x.extent(1)) +
                      " columns but the weights expect K = " + std::to_string(k));
  }
  if (y.extent(0) != m || y.extent(1) != n) {
    throw shape_error("fp16 GEMM output is " + std::to_string(y.extent(0)) + " x " +
                      std::to_string(y.extent(1)) + " (expected " + std::to_string(m) + " x " +
                      std::to_string(n) + ")");
  }
  if (!bias.empty() && static_cast<index_t>(bias.size()) != n) {
    throw shape_error("bias has " + std::to_string(bias.size()) + " values (expected " +
                      std::to_string(n) + ")");
  }
  require_supported(w.path());
  if (m == 0 || n == 0) return;
  const float* b = bias.empty() ? nullptr : bias.data();
#if QPRUNE_X86
  // The SIMD bodies read the 2-byte values through vector loads (may_alias types).
  const auto* wp = reinterpret_cast<const std::uint16_t*>(w.data());
  if (w.panel() == 16) {
    const x86_avx512::f16_args g{x.data_handle(), k, wp, k, n, b, relu};
    detail::split_gemm_work(m, n, k, x86_avx512::f16_block_channels,
                            [&](index_t r0, index_t r1, index_t lo, index_t hi) {
                              auto part = g;
                              part.x += r0 * k;
                              x86_avx512::gemm_f16<H>(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                            });
    return;
  }
  if (w.panel() == 8) {
    const x86_avx2::f16_args g{x.data_handle(), k, wp, k, n, b, relu};
    detail::split_gemm_work(m, n, k, x86_avx2::f16_block_channels,
                            [&](index_t r0, index_t r1, index_t lo, index_t hi) {
                              auto part = g;
                              part.x += r0 * k;
                              x86_avx2::gemm_f16<H>(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                            });
    return;
  }
#endif
  reference::gemm_f16(m, n, k, x.data_handle(), k, w.data(), k, b, relu, y.data_handle(), n);
}

}  // namespace qprune::kernels

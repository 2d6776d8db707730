// GEMM with 4-bit grouped weights (quant::packed_int4_matrix: int4 or uint4
// codes, one scale and zero point per row and group of K) and float activations:
//
//   y[m][n] = act( sum_k x[m][k] * s[n][g(k)] * (q[n][k] - z[n][g(k)]) + bias[n] )
//
// Two paths over the same packed weights (pack_q4):
//   gemm_q4          fp32: nibbles widened and dequantized in registers, FMA in k order
//   gemm_q4_dynamic  integer (ggml Q4_0 x Q8_0 style): x quantized per row and group
//                    to int8, int4 x int8 dot products in int32 per group, scaled in float
// Each path gives the same bits on AVX-512 VNNI, AVX-512, AVX2 and its scalar twin
// (kernels/reference/gemm_q4.hpp, which states the exact arithmetic).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/kernels/reference/gemm_q4.hpp"
#include "qprune/kernels/x86/gemm_q4.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/params.hpp"

namespace qprune::kernels {

/// 4-bit grouped weights [N, K] packed for one instruction set. Build with
/// pack_q4(); immutable after.
///
/// Layouts (W = panel(): 16 for avx512 / avx512_vnni, 8 for avx2, 0 for scalar):
///   W > 0: codes [ceil(N/W)][Kp/8][W][4] bytes, Kp = groups * group_size; byte
///          4c + j of k-block b holds the unsigned code u of channel c at
///          k = 8b + j (low nibble) and 8b + 4 + j (high nibble); u = q + 8 for the
///          int4 schemes (bit 3 flipped), u = q for affine; padding codes are 0.
///          scales and zero points [ceil(N/W)][groups][W], the zero points those of
///          u (z + 8 for int4), padding channels scale 0, zero point 0.
///   W = 0: the packed_int4_matrix's rows unchanged, parameters [N][groups].
class packed_q4 {
 public:
  packed_q4() = default;

  index_t rows() const noexcept { return n_; }          ///< N, output channels
  index_t cols() const noexcept { return k_; }          ///< K, the reduction length
  index_t group_size() const noexcept { return gs_; }
  index_t groups() const noexcept { return groups_; }   ///< ceil(K / group_size)
  quant::int4_scheme scheme() const noexcept { return kind_; }
  isa path() const noexcept { return path_; }
  index_t panel() const noexcept { return panel_; }
  /// Bytes held: packed codes plus 4-byte scales and zero points, padding included.
  std::size_t bytes() const noexcept { return codes_.size() + 4 * scales_.size() + 4 * zeros_.size(); }

 private:
  friend packed_q4 pack_q4(const quant::packed_int4_matrix&, isa);
  friend void gemm_q4(tensor_view<const float, 2>, const packed_q4&, std::span<const float>, bool,
                      tensor_view<float, 2>);
  friend void gemm_q4_dynamic(tensor_view<const float, 2>, const packed_q4&, std::span<const float>,
                              bool, tensor_view<float, 2>);

  reference::q4_rows rows_view() const noexcept {
    return {codes_.data(), quant::packed_4bit_bytes(k_), scales_.data(), zeros_.data(), gs_, groups_,
            kind_ != quant::int4_scheme::affine};
  }

  index_t n_ = 0, k_ = 0, gs_ = 16, groups_ = 0, panel_ = 0;
  quant::int4_scheme kind_ = quant::int4_scheme::symmetric;
  isa path_ = isa::scalar;
  aligned_vector<std::uint8_t> codes_;
  aligned_vector<float> scales_;
  aligned_vector<std::int32_t> zeros_;
};

namespace detail {
inline void check_q4_matrix(const quant::packed_int4_matrix& w) {
  if (w.rows < 0 || w.cols < 0) {
    throw shape_error("4-bit matrix is " + std::to_string(w.rows) + " x " + std::to_string(w.cols) +
                      " (expected non-negative extents)");
  }
  if (w.codes.extent(0) != w.rows || w.codes.extent(1) != w.row_bytes()) {
    throw shape_error("4-bit codes are [" + std::to_string(w.codes.extent(0)) + ", " +
                      std::to_string(w.codes.extent(1)) + "] bytes (expected [" + std::to_string(w.rows) +
                      ", " + std::to_string(w.row_bytes()) + "] for a " + std::to_string(w.rows) + " x " +
                      std::to_string(w.cols) + " matrix)");
  }
  if (w.params.axis != 1) {
    throw config_error("4-bit weights must be grouped along axis 1 (the columns), got axis " +
                       std::to_string(w.params.axis));
  }
  quant::validate_group_size(w.params.group_size);
  const index_t gs = w.params.group_size;
  const index_t groups = w.cols / gs + (w.cols % gs != 0 ? 1 : 0);
  const auto need = static_cast<std::size_t>(w.rows * groups);
  if (w.params.scales.size() != need || w.params.zero_points.size() != need) {
    throw shape_error("4-bit matrix has " + std::to_string(w.params.scales.size()) + " scales and " +
                      std::to_string(w.params.zero_points.size()) + " zero points (expected " +
                      std::to_string(need) + " = rows * ceil(cols / group_size) each)");
  }
  const quant::qrange zr = w.kind == quant::int4_scheme::affine ? quant::qrange{0, 15} : quant::qrange{0, 0};
  for (std::size_t i = 0; i < need; ++i) {
    if (!std::isfinite(w.params.scales[i]) || w.params.scales[i] < 0.0f) {
      throw config_error("group " + std::to_string(i) + " has scale " + std::to_string(w.params.scales[i]) +
                         " (expected a finite scale >= 0)");
    }
    const std::int32_t z = w.params.zero_points[i];
    if (z < zr.qmin || z > zr.qmax) {
      throw config_error("group " + std::to_string(i) + " has zero point " + std::to_string(z) +
                         " (expected " +
                         (w.kind == quant::int4_scheme::affine ? std::string("[0, 15] for affine uint4 codes")
                                                               : std::string("0 for a symmetric scheme")) +
                         ")");
    }
  }
}
}  // namespace detail

/// Packs 4-bit grouped weights w ([N, K] = [w.rows, w.cols], any int4_scheme)
/// for instruction set `path` (default: the active one). Codes and parameters
/// are copied; `w` may be destroyed afterwards.
/// Throws shape_error for codes or parameter arrays of the wrong size,
/// config_error for a group size that is not a power of two in [16, 256], an
/// axis other than 1, a scale that is not finite and >= 0, a zero point outside
/// the scheme ([0, 15] affine, 0 symmetric) or a path the CPU lacks.
[[nodiscard]] inline packed_q4 pack_q4(const quant::packed_int4_matrix& w, isa path = active_isa()) {
  require_supported(path);
  detail::check_q4_matrix(w);
  packed_q4 p;
  p.n_ = w.rows;
  p.k_ = w.cols;
  p.gs_ = w.params.group_size;
  p.groups_ = p.k_ / p.gs_ + (p.k_ % p.gs_ != 0 ? 1 : 0);
  p.kind_ = w.kind;
  p.path_ = path;
  p.panel_ = path == isa::scalar ? 0 : path == isa::avx2 ? 8 : 16;
  const index_t n = p.n_, k = p.k_, gs = p.gs_, groups = p.groups_, wd = p.panel_;
  const bool sgn = w.kind != quant::int4_scheme::affine;
  if (wd == 0) {
    p.codes_.assign(w.codes.data(), w.codes.data() + w.codes.size());
    p.scales_.assign(w.params.scales.begin(), w.params.scales.end());
    p.zeros_.assign(w.params.zero_points.begin(), w.params.zero_points.end());
    return p;
  }
  const index_t panels = (n + wd - 1) / wd, kblocks = groups * gs / 8;
  p.codes_.assign(static_cast<std::size_t>(panels * kblocks * wd * 4), 0);
  p.scales_.assign(static_cast<std::size_t>(panels * groups * wd), 0.0f);
  p.zeros_.assign(static_cast<std::size_t>(panels * groups * wd), 0);
  const std::uint8_t flip = sgn ? 0x08u : 0x00u;
  for (index_t i = 0; i < n; ++i) {
    const std::span<const std::uint8_t> row(w.codes.data() + i * w.row_bytes(),
                                            static_cast<std::size_t>(w.row_bytes()));
    const index_t pan = i / wd, c = i % wd;
    for (index_t j = 0; j < k; ++j) {
      const auto u = static_cast<unsigned>(quant::nibble_at(row, j) ^ flip);
      const index_t b = j / 8, r = j % 8;
      auto& byte = p.codes_[static_cast<std::size_t>(((pan * kblocks + b) * wd + c) * 4 + r % 4)];
      byte = static_cast<std::uint8_t>(byte | (r < 4 ? u : u << 4));
    }
    for (index_t g = 0; g < groups; ++g) {
      const auto src = static_cast<std::size_t>(i * groups + g);
      const auto dst = static_cast<std::size_t>((pan * groups + g) * wd + c);
      p.scales_[dst] = w.params.scales[src];
      p.zeros_[dst] = w.params.zero_points[src] + (sgn ? 8 : 0);
    }
  }
  return p;
}

namespace detail {
inline void check_q4_args(const char* what, tensor_view<const float, 2> x, const packed_q4& w,
                          std::span<const float> bias, tensor_view<float, 2> y) {
  if (x.extent(1) != w.cols()) {
    throw shape_error(std::string(what) + " input has " + std::to_string(x.extent(1)) +
                      " columns but the weights expect K = " + std::to_string(w.cols()));
  }
  if (y.extent(0) != x.extent(0) || y.extent(1) != w.rows()) {
    throw shape_error(std::string(what) + " output is " + std::to_string(y.extent(0)) + " x " +
                      std::to_string(y.extent(1)) + " (expected " + std::to_string(x.extent(0)) + " x " +
                      std::to_string(w.rows()) + ")");
  }
  if (!bias.empty() && static_cast<index_t>(bias.size()) != w.rows()) {
    throw shape_error("bias has " + std::to_string(bias.size()) + " values (expected " +
                      std::to_string(w.rows()) + ")");
  }
  require_supported(w.path());
}
}  // namespace detail

/// Float path: y = act(x * dequant(W)^T + bias). x: [M, K], y: [M, N], bias: N
/// values or empty; relu clamps at 0 (NaN becomes 0 too).
///
/// Numerics (every path, bit for bit): w' = s * float(q - z), one float32 product,
/// which is exactly quant::dequantize's value; acc = fma(x[m][k], w', acc) for
/// k = 0..K-1 in order from 0; y = acc + bias. Hence the result equals a
/// fma-in-k-order float GEMM on the dequantized matrix, and NaN / inf in x
/// propagate as in that GEMM. Weights are widened per 8-block in registers on
/// every call, never as a whole matrix.
/// Throws shape_error for mismatched extents or bias size, config_error for a
/// path the CPU lacks.
inline void gemm_q4(tensor_view<const float, 2> x, const packed_q4& w, std::span<const float> bias,
                    bool relu, tensor_view<float, 2> y) {
  detail::check_q4_args("int4 GEMM", x, w, bias, y);
  const index_t m = x.extent(0), n = w.rows(), k = w.cols();
  if (m == 0 || n == 0) return;
  const float* b = bias.empty() ? nullptr : bias.data();
#if QPRUNE_X86
  if (w.panel() == 16) {
    const x86_avx512::q4f_args g{x.data_handle(), k, w.codes_.data(), w.scales_.data(), w.zeros_.data(),
                                 k, w.groups_ * w.gs_ / 8, w.groups_, w.gs_, n, b, relu};
    detail::split_gemm_work(m, n, k, x86_avx512::q4_block_channels,
                            [&](index_t r0, index_t r1, index_t lo, index_t hi) {
                              auto part = g;
                              part.x += r0 * k;
                              x86_avx512::gemm_q4f(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                            });
    return;
  }
  if (w.panel() == 8) {
    const x86_avx2::q4f_args g{x.data_handle(), k, w.codes_.data(), w.scales_.data(), w.zeros_.data(),
                               k, w.groups_ * w.gs_ / 8, w.groups_, w.gs_, n, b, relu};
    detail::split_gemm_work(m, n, k, x86_avx2::q4_block_channels,
                            [&](index_t r0, index_t r1, index_t lo, index_t hi) {
                              auto part = g;
                              part.x += r0 * k;
                              x86_avx2::gemm_q4f(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                            });
    return;
  }
#endif
  reference::gemm_q4(m, n, k, x.data_handle(), k, w.rows_view(), b, relu, y.data_handle(), n);
}

namespace detail {
/// x quantized per row and group (reference::quantize_q8_rows' numerics) on the
/// vector unit of `path`. Returns false for a NaN or infinite element.
inline bool quantize_q8_for(isa path, index_t m, index_t k, const float* x, index_t gs,
                            std::int8_t* xq, index_t ldq, float* d, std::int32_t* sx) noexcept {
#if QPRUNE_X86
  if (path == isa::avx512 || path == isa::avx512_vnni) {
    return x86_avx512::q4_quantize_q8_rows(m, k, x, k, gs, xq, ldq, d, sx);
  }
  if (path == isa::avx2) {
    const index_t groups = ldq / gs;
    for (index_t i = 0; i < m; ++i) {
      for (index_t g = 0; g < groups; ++g) {
        const index_t b = g * gs, e = i * groups + g;
        const bool ok = b + gs <= k
                            ? x86_avx2::q4_quantize_q8_group(x + i * k + b, gs, xq + i * ldq + b, d + e, sx + e)
                            : reference::quantize_q8_group(x + i * k + b, k - b, gs, xq + i * ldq + b, d + e, sx + e);
        if (!ok) return false;
      }
    }
    return true;
  }
#endif
  static_cast<void>(path);
  return reference::quantize_q8_rows(m, k, x, k, gs, xq, ldq, d, sx);
}
}  // namespace detail

/// Integer path (ggml Q4_0 x Q8_0 style): y = act(x * dequant(W)^T + bias) with x
/// quantized on the fly; the quantization is part of the call.
///
/// Numerics (every path, bit for bit; reference::quantize_q8_group and gemm_q4_q8):
///   x per row and per weight group: d = max|x| / 127, qx = clamp(nearbyint(x / d),
///     -127, 127) (round half to even; 0 when d == 0), both float32 operations;
///   S_g = sum_{k in g} qx * (q - z) exactly in int32 (|S_g| < 2^19);
///   acc = fma(float(S_g), d_g * s_g, acc) for g = 0..G-1 in order; y = acc + bias.
/// Error against the exact product: |x - d * qx| <= d / 2 per element, so
/// |y - y_exact| <= sum_k (d_g(k) / 2) |w'(k)| plus float rounding of the G terms.
/// VNNI: vpdpbusd on u8 codes in [0, 15] (int4 stored as q + 8) and s8 qx, zero
/// point term z_u * sum(qx) subtracted per group; AVX2 / AVX-512 without VNNI:
/// vpmaddubsw, whose pair sums stay within 2 * 15 * 127 = 3810 (never saturates).
/// Throws as gemm_q4, and config_error if x holds a NaN or infinity (the scale
/// is taken from the data).
inline void gemm_q4_dynamic(tensor_view<const float, 2> x, const packed_q4& w,
                            std::span<const float> bias, bool relu, tensor_view<float, 2> y) {
  detail::check_q4_args("int4 dynamic GEMM", x, w, bias, y);
  const index_t m = x.extent(0), n = w.rows(), k = w.cols();
  if (m == 0 || n == 0) return;
  const index_t groups = w.groups_, gs = w.gs_, ldq = groups * gs;
  aligned_vector<std::int8_t> xq(static_cast<std::size_t>(m * ldq));
  aligned_vector<float> d(static_cast<std::size_t>(m * groups));
  aligned_vector<std::int32_t> sx(static_cast<std::size_t>(m * groups));
  if (!detail::quantize_q8_for(w.path(), m, k, x.data_handle(), gs, xq.data(), ldq, d.data(), sx.data())) {
    throw config_error(
        "int4 dynamic GEMM input holds a NaN or infinite value (expected finite values: the "
        "activation scales are taken from the data; use gemm_q4 to propagate them)");
  }
  const float* b = bias.empty() ? nullptr : bias.data();
#if QPRUNE_X86
  if (w.panel() != 0) {
    if (w.path() == isa::avx512_vnni) {
      const x86_avx512_vnni::q4i_args g{xq.data(), ldq, d.data(), sx.data(), w.codes_.data(), w.scales_.data(),
                                        w.zeros_.data(), ldq / 8, groups, gs, n, b, relu};
      detail::split_gemm_work(m, n, k, x86_avx512::q4_block_channels,
                              [&](index_t r0, index_t r1, index_t lo, index_t hi) {
                                auto part = g;
                                part.xq += r0 * ldq;
                                part.d += r0 * groups;
                                part.sx += r0 * groups;
                                x86_avx512_vnni::gemm_q4i(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                              });
      return;
    }
    const x86_avx2::q4i_args g{xq.data(), ldq, d.data(), sx.data(), w.codes_.data(), w.scales_.data(),
                               w.zeros_.data(), ldq / 8, groups, gs, n, b, relu};
    const bool wide = w.panel() == 16;
    detail::split_gemm_work(m, n, k, x86_avx2::q4_block_channels,
                            [&](index_t r0, index_t r1, index_t lo, index_t hi) {
                              auto part = g;
                              part.xq += r0 * ldq;
                              part.d += r0 * groups;
                              part.sx += r0 * groups;
                              if (wide) {
                                x86_avx2::gemm_q4i<16>(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                              } else {
                                x86_avx2::gemm_q4i<8>(part, r1 - r0, lo, hi, y.data_handle() + r0 * n, n);
                              }
                            });
    return;
  }
#endif
  reference::gemm_q4_q8(m, n, k, xq.data(), ldq, d.data(), w.rows_view(), b, relu, y.data_handle(), n);
}

}  // namespace qprune::kernels

// int8 GEMM with int32 accumulation, for quantized Dense and Conv layers:
//
//   acc[m][n] = sum_k (a[m][k] - a_zero_point) * w[n][k]
//
// a: activations [M, K], uint8 (affine) or int8; w: int8 weights [N, K] (one
// row per output channel, symmetric so their zero point is 0), packed once by
// pack_s8() into the layout of the instruction set that will run them. The
// output stage (kernels/output_stage.hpp) turns accumulators into int32 or
// float. Every path (AVX-512 VNNI, AVX2, scalar reference) gives the same bits.
//
// Accumulator bound: |a - zp| <= 255 and |w| <= 128, so every result fits in
// int32 when K <= 65,793 (= floor((2^31 - 1) / (255 * 128))). The entry points
// check it; no path has an int16 saturating step.
#pragma once

#include <algorithm>
#include <limits>
#include <span>
#include <cstdint>
#include <string>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/output_stage.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/kernels/reference/gemm_s8.hpp"
#include "qprune/kernels/x86/gemm_s8.hpp"
#include "qprune/quant/requantize.hpp"

namespace qprune::kernels {

/// The largest K for which every int8 GEMM result is guaranteed to fit in int32.
inline constexpr index_t max_gemm_s8_k = 65793;

/// int8 weights [N, K] packed for one instruction set, plus the per-channel
/// sums the zero-point correction needs. Build with pack_s8(); immutable after.
class packed_s8 {
 public:
  packed_s8() = default;

  index_t rows() const noexcept { return n_; }  ///< N, output channels
  index_t cols() const noexcept { return k_; }  ///< K, the reduction length
  isa path() const noexcept { return path_; }   ///< the instruction set it was packed for
  /// sum_k w[n][k] for each output channel n.
  const std::vector<std::int32_t>& column_sums() const noexcept { return colsum_; }
  /// Bytes held by the packed weights (padding included).
  std::size_t bytes() const noexcept { return bytes8_.size(); }

 private:
  friend packed_s8 pack_s8(tensor_view<const std::int8_t, 2>, isa);
  template <class Ta, class Out, class Stage>
  friend void run_gemm_s8(tensor_view<const Ta, 2>, std::int32_t, const packed_s8&, Out*, index_t,
                          const Stage&);

  index_t n_ = 0, k_ = 0;
  isa path_ = isa::scalar;
  // scalar: [N][K]; vnni: [N/16][K/4][16][4]; avx2: [N/8][K/2][8][2]
  aligned_vector<std::int8_t> bytes8_;
  std::vector<std::int32_t> colsum_;
};

namespace detail {
/// The kernel family that runs for a requested level: avx512 without VNNI
/// runs the AVX2 kernel.
constexpr isa gemm_family(isa i) noexcept {
  return i == isa::avx512 ? isa::avx2 : i;
}

/// The AVX2 kernel's int16 activations: `count` values. Up to 4 MiB they live
/// in the calling thread's buffer, grown as needed and kept between calls (no
/// allocation and no zero fill per call; every value used is written first);
/// a larger request gets a buffer of its own, freed with this object. Not
/// reentrant: one GEMM per thread at a time, which the library's kernels
/// guarantee.
class scratch_s16 {
 public:
  static constexpr index_t kept_values = index_t{2} << 20;  // 4 MiB of int16

  explicit scratch_s16(index_t count) {
    if (count <= kept_values) {
      thread_local aligned_vector<std::int16_t> kept;
      if (static_cast<index_t>(kept.size()) < count) {
        kept = aligned_vector<std::int16_t>();  // release before growing: one buffer at a time
        kept.resize(static_cast<std::size_t>(count));
      }
      data_ = kept.data();
    } else {
      own_.resize(static_cast<std::size_t>(count));
      data_ = own_.data();
    }
  }
  std::int16_t* data() const noexcept { return data_; }

 private:
  aligned_vector<std::int16_t> own_;
  std::int16_t* data_ = nullptr;
};

inline void check_k(index_t k) {
  if (k > max_gemm_s8_k) {
    throw config_error("int8 GEMM with K = " + std::to_string(k) +
                       " could overflow int32 accumulators (expected K <= " +
                       std::to_string(max_gemm_s8_k) + ")");
  }
}
}  // namespace detail

/// Packs int8 weights w [N, K] for instruction set `path` (default: the active
/// one). Throws config_error for a path the CPU lacks or K above max_gemm_s8_k.
/// Complexity: O(N*K) once; the GEMM then reads the panels sequentially.
[[nodiscard]] inline packed_s8 pack_s8(tensor_view<const std::int8_t, 2> w,
                                       isa path = active_isa()) {
  require_supported(path);
  detail::check_k(w.extent(1));
  packed_s8 p;
  p.n_ = w.extent(0);
  p.k_ = w.extent(1);
  p.path_ = path;
  const index_t n = p.n_, k = p.k_;
  p.colsum_.assign(static_cast<std::size_t>(n), 0);
  for (index_t i = 0; i < n; ++i) {
    std::int32_t s = 0;
    for (index_t j = 0; j < k; ++j) s += w(i, j);
    p.colsum_[static_cast<std::size_t>(i)] = s;
  }
  switch (detail::gemm_family(path)) {
    case isa::avx512_vnni: {
      const index_t panels = (n + 15) / 16, k4 = (k + 3) / 4;
      p.bytes8_.assign(static_cast<std::size_t>(panels * k4 * 64), 0);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j)
          p.bytes8_[static_cast<std::size_t>(((i / 16) * k4 + j / 4) * 64 + (i % 16) * 4 + j % 4)] =
              w(i, j);
      break;
    }
    case isa::avx2: {
      const index_t panels = (n + 7) / 8, k2 = (k + 1) / 2;
      p.bytes8_.assign(static_cast<std::size_t>(panels * k2 * 16), 0);
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j)
          p.bytes8_[static_cast<std::size_t>(((i / 8) * k2 + j / 2) * 16 + (i % 8) * 2 + j % 2)] =
              w(i, j);
      break;
    }
    default: {
      p.bytes8_.resize(static_cast<std::size_t>(n * k));
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j) p.bytes8_[static_cast<std::size_t>(i * k + j)] = w(i, j);
      break;
    }
  }
  return p;
}

namespace detail {
/// Throws config_error unless zp is a value of Ta (the activations' code type).
template <class Ta>
void check_activation_zero_point(std::int32_t zp) {
  constexpr std::int32_t lo = std::is_signed_v<Ta> ? -128 : 0;
  constexpr std::int32_t hi = std::is_signed_v<Ta> ? 127 : 255;
  if (zp < lo || zp > hi) {
    throw config_error("activation zero point " + std::to_string(zp) + " is outside [" +
                       std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
}

template <class Ta>
void check_gemm_args(tensor_view<const Ta, 2> a, std::int32_t zp, const packed_s8& w, index_t out_rows,
                     index_t out_cols) {
  if (a.extent(1) != w.cols()) {
    throw shape_error("int8 GEMM input has " + std::to_string(a.extent(1)) +
                      " columns but the weights expect K = " + std::to_string(w.cols()));
  }
  if (out_rows != a.extent(0) || out_cols != w.rows()) {
    throw shape_error("int8 GEMM output is " + std::to_string(out_rows) + " x " +
                      std::to_string(out_cols) + " (expected " + std::to_string(a.extent(0)) +
                      " x " + std::to_string(w.rows()) + ")");
  }
  check_activation_zero_point<Ta>(zp);
  require_supported(w.path());
}
}  // namespace detail


/// Runs the GEMM on the path the weights were packed for. Internal: use gemm_s8().
/// Each output element is computed by one thread with the same arithmetic, so
/// results do not depend on the thread count.
template <class Ta, class Out, class Stage>
void run_gemm_s8(tensor_view<const Ta, 2> a, std::int32_t zp, const packed_s8& w, Out* out,
                 index_t ldo, const Stage& st) {
  const index_t m = a.extent(0), n = w.rows(), k = w.cols();
  if (m == 0 || n == 0) return;
  switch (detail::gemm_family(w.path())) {
#if QPRUNE_X86
    case isa::avx512_vnni: {
      // VNNI multiplies u8 x s8: int8 activations are shifted by 128 (a ^ 0x80)
      // and their zero point with them. Rows are copied when K is not a multiple
      // of 4 (the kernel reads whole 4-byte groups) or the input is signed.
      const index_t k4 = (k + 3) / 4;
      const std::int32_t zp_u = std::is_signed_v<Ta> ? zp + 128 : zp;
      std::vector<std::uint8_t> padded;
      const std::uint8_t* ap = nullptr;
      index_t lda = k;
      if (!std::is_signed_v<Ta> && k % 4 == 0) {
        ap = reinterpret_cast<const std::uint8_t*>(a.data_handle());
      } else {
        lda = k4 * 4;
        padded.assign(static_cast<std::size_t>(m * lda), static_cast<std::uint8_t>(zp_u));
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < k; ++j)
            padded[static_cast<std::size_t>(i * lda + j)] =
                static_cast<std::uint8_t>(static_cast<std::uint8_t>(a(i, j)) ^ (std::is_signed_v<Ta> ? 0x80u : 0u));
        ap = padded.data();
      }
      // Padding bytes equal the zero point, and padded weights are 0: both add nothing.
      const index_t panels = (n + 15) / 16;
      aligned_vector<std::int32_t> zcorr(static_cast<std::size_t>(panels * 16), 0);
      for (index_t j = 0; j < n; ++j)
        zcorr[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(
            static_cast<std::uint32_t>(zp_u) * static_cast<std::uint32_t>(w.colsum_[static_cast<std::size_t>(j)]));
      const x86_avx512_vnni::vnni_args args{ap, lda, w.bytes8_.data(), k4, zcorr.data(), n};
      detail::split_gemm_work(m, n, k, x86_avx512_vnni::vnni_block_channels,
                           [&](index_t r0, index_t r1, index_t b, index_t e) {
                             auto part = args;
                             part.a += r0 * lda;
                             x86_avx512_vnni::gemm(part, r1 - r0, b, e, out + r0 * ldo, ldo, st);
                           });
      return;
    }
    case isa::avx2: {
      const index_t k2 = (k + 1) / 2, lda = k2 * 2;
      const detail::scratch_s16 scratch(m * lda);
      std::int16_t* a16 = scratch.data();
      const x86_avx2::madd_args args{a16, lda, w.bytes8_.data(), k2, n};
      detail::split_gemm_work(
          m, n, k, x86_avx2::madd_block_channels,
          [&](index_t r0, index_t r1, index_t b, index_t e) {
            auto part = args;
            part.a += r0 * lda;
            x86_avx2::gemm(part, r1 - r0, b, e, out + r0 * ldo, ldo, st);
          },
          [&](index_t r0, index_t r1) {
            for (index_t i = r0; i < r1; ++i) x86_avx2::widen_row(a.data_handle() + i * k, k, zp, a16 + i * lda);
          });
      return;
    }
#endif
    default:
      // The reference twin stays single-threaded: it is the oracle.
      reference::gemm_s8(m, n, k, a.data_handle(), k, zp, w.bytes8_.data(), k, out, ldo, st);
      return;
  }
}

/// c = sum_k (a - a_zero_point) * w, as int32. a: [M, K] uint8 or int8
/// (row-major), c: [M, N]. Throws shape_error for mismatched extents and
/// config_error for a zero point outside the input type's range.
template <class Ta>
  requires(std::same_as<Ta, std::uint8_t> || std::same_as<Ta, std::int8_t>)
void gemm_s8(tensor_view<const Ta, 2> a, std::int32_t a_zero_point, const packed_s8& w,
             tensor_view<std::int32_t, 2> c) {
  detail::check_gemm_args(a, a_zero_point, w, c.extent(0), c.extent(1));
  run_gemm_s8(a, a_zero_point, w, c.data_handle(), c.extent(1), store_int32{});
}

/// y = act(fma(float(acc), st.scale[n], st.bias[n])): the dequantizing output
/// stage (st.scale[n] = s_a * s_w[n]). Same checks as above; st.scale must hold N values.
template <class Ta>
  requires(std::same_as<Ta, std::uint8_t> || std::same_as<Ta, std::int8_t>)
void gemm_s8(tensor_view<const Ta, 2> a, std::int32_t a_zero_point, const packed_s8& w,
             tensor_view<float, 2> y, const store_float& st) {
  detail::check_gemm_args(a, a_zero_point, w, y.extent(0), y.extent(1));
  if (st.scale == nullptr && w.rows() > 0) {
    throw config_error("store_float needs a scale per output channel (got a null pointer)");
  }
  run_gemm_s8(a, a_zero_point, w, y.data_handle(), y.extent(1), st);
}

/// The requantizing output stage's arrays, built once per layer from
/// quant::requant_params (per tensor or per channel) and the int32 bias
/// (scale s_in * s_w[n], zero point 0; empty for none).
template <class T>
  requires(std::same_as<T, std::int8_t> || std::same_as<T, std::uint8_t>)
class requant_stage {
 public:
  /// Throws config_error if the parameters use single rounding (the fused stage
  /// implements TFLite's default double rounding), a multiplier is negative, a
  /// shift is outside [-31, 30] or the activation range leaves T; shape_error if
  /// the counts do not match `channels`.
  requant_stage(const quant::requant_params& p, std::span<const std::int32_t> bias, index_t channels)
      : mult_(static_cast<std::size_t>(channels)), shift_(static_cast<std::size_t>(channels)),
        bias_(bias.begin(), bias.end()) {
    if (p.rounding != quant::multiplier_rounding::double_rounding) {
      throw config_error("the fused requantizing stage implements double rounding (TFLite's default)");
    }
    if (p.channels() != 1 && p.channels() != channels) {
      throw shape_error("requantization has " + std::to_string(p.channels()) +
                        " multipliers for " + std::to_string(channels) + " output channels");
    }
    if (!bias.empty() && static_cast<index_t>(bias.size()) != channels) {
      throw shape_error("bias has " + std::to_string(bias.size()) + " values for " +
                        std::to_string(channels) + " output channels");
    }
    for (index_t c = 0; c < channels; ++c) {
      const auto m = p.at(c);
      if (m.multiplier < 0 || m.shift < -31 || m.shift > 30) {
        throw config_error("channel " + std::to_string(c) + " has multiplier " +
                           std::to_string(m.multiplier) + " shift " + std::to_string(m.shift) +
                           " (expected a multiplier >= 0 and a shift in [-31, 30])");
      }
      mult_[static_cast<std::size_t>(c)] = m.multiplier;
      shift_[static_cast<std::size_t>(c)] = m.shift;
    }
    constexpr std::int32_t lo = std::numeric_limits<T>::min(), hi = std::numeric_limits<T>::max();
    if (p.act_min < lo || p.act_max > hi || p.act_min > p.act_max) {
      throw config_error("activation range [" + std::to_string(p.act_min) + ", " +
                         std::to_string(p.act_max) + "] does not fit the output type");
    }
    view_ = {mult_.data(), shift_.data(), bias_.empty() ? nullptr : bias_.data(), p.out_zero_point,
             p.act_min, p.act_max};
  }
  const store_requant<T>& stage() const noexcept { return view_; }
  index_t channels() const noexcept { return static_cast<index_t>(mult_.size()); }

 private:
  std::vector<std::int32_t> mult_, shift_, bias_;
  store_requant<T> view_{};
};

/// q = requantize(sum_k (a - a_zero_point) * w): int8 or uint8 outputs with the
/// fused activation clamp, bit-identical to quant::requantize over the int32 result.
template <class Ta, class T>
  requires(std::same_as<Ta, std::uint8_t> || std::same_as<Ta, std::int8_t>)
void gemm_s8(tensor_view<const Ta, 2> a, std::int32_t a_zero_point, const packed_s8& w,
             tensor_view<T, 2> q, const requant_stage<T>& st) {
  detail::check_gemm_args(a, a_zero_point, w, q.extent(0), q.extent(1));
  if (st.channels() != w.rows()) {
    throw shape_error("requantization stage for " + std::to_string(st.channels()) +
                      " channels used with " + std::to_string(w.rows()) + " output channels");
  }
  run_gemm_s8(a, a_zero_point, w, q.data_handle(), q.extent(1), st.stage());
}

}  // namespace qprune::kernels

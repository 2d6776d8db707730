// int8 2-D convolution, NHWC activations and OHWI weights, on the int8 GEMM:
//
//   acc[b,oh,ow,o] = sum_{kh,kw,c} (x[b, ih, iw, g*gic + c] - zp) * w[o,kh,kw,c]
//   ih = oh*stride_h - pad_top + kh*dilation_h, iw likewise; g = o / group_out_c;
//   taps outside the input contribute exactly 0 (they read the zero point).
//
// 1x1 stride-1 unpadded convs run the GEMM on the input directly; other convs
// im2col (kernels/im2col.hpp) blocks of output pixels into bounded scratch and run
// one GEMM per block and group; depthwise convs (groups == in_c == out_c) run a
// direct kernel vectorised over channels (kernels/x86/depthwise_s8.hpp). The
// output stages are the GEMM's (kernels/output_stage.hpp). Every path gives the
// bits of the scalar twin, kernels/reference/conv2d_s8.hpp.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/gemm_s8.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/kernels/output_stage.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/kernels/reference/conv2d_s8.hpp"
#include "qprune/kernels/x86/depthwise_s8.hpp"

namespace qprune::kernels {

class packed_conv_s8;

namespace detail {
template <class Ta, class Out, class Stage>
void run_conv2d_s8(tensor_view<const Ta, 2> x, std::int32_t zp, const packed_conv_s8& w, Out* out,
                   const Stage& st);
}  // namespace detail

/// Largest im2col scratch block, in bytes (at least 8 rows are used when one
/// row, patch() bytes, is larger than a block / 8).
inline constexpr index_t conv_scratch_bytes = index_t{256} * 1024;

/// int8 conv weights packed once for one instruction set, with their geometry.
/// GEMM convs hold one packed_s8 [group_out_c, K] per group (K = patch, rounded up to a multiple
/// of 4 with zero weights for the VNNI kernel when the conv runs im2col); depthwise convs
/// hold int32 lanes [kernel_h * kernel_w][in_c rounded up to 16] for the direct
/// kernel (plus the raw OHWI weights for the scalar path). Build with
/// pack_conv_s8(); immutable after.
class packed_conv_s8 {
 public:
  packed_conv_s8() = default;

  /// The geometry the weights were packed for (its batch is not used: conv2d_s8
  /// takes the batch from the input).
  const conv2d_geometry& geometry() const noexcept { return g_; }
  isa path() const noexcept { return path_; }            ///< instruction set packed for
  bool depthwise() const noexcept { return depthwise_; } ///< runs the direct depthwise kernel
  bool empty() const noexcept { return g_.out_c == 0; }  ///< default-constructed
  /// Bytes held by the packed weights.
  std::size_t bytes() const noexcept {
    std::size_t n = dw_w_.size() * 4 + dw_sum_.size() * 4 + raw_.size();
    for (const auto& p : groups_) n += p.bytes() + p.column_sums().size() * 4;
    return n;
  }

 private:
  friend packed_conv_s8 pack_conv_s8(const conv2d_geometry&, tensor_view<const std::int8_t, 2>, isa);
  template <class Ta, class Out, class Stage>
  friend void detail::run_conv2d_s8(tensor_view<const Ta, 2>, std::int32_t, const packed_conv_s8&,
                                    Out*, const Stage&);

  conv2d_geometry g_{};
  isa path_ = isa::scalar;
  bool depthwise_ = false;
  std::vector<packed_s8> groups_;      // GEMM path, one per group
  aligned_vector<std::int32_t> dw_w_;  // depthwise SIMD: [taps][cpad], w in the low int16 half
  std::vector<std::int32_t> dw_sum_;   // depthwise: sum over taps of w per channel (cpad)
  std::vector<std::int8_t> raw_;       // depthwise scalar path: OHWI [in_c, taps]
  index_t cpad_ = 0;
  index_t kp_ = 0;  // GEMM K: patch(), or patch() rounded up to 4 for the VNNI kernel
};

namespace detail {
/// True when output pixel r reads exactly input pixel r (1x1, stride 1, no padding,
/// one group): the input itself is the GEMM operand.
constexpr bool conv_is_direct(const conv2d_geometry& g) noexcept {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
         g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0 && g.groups == 1;
}
}  // namespace detail

/// Packs OHWI int8 weights w [out_c, patch()] (each row kh-major, then kw, then
/// the group's input channels) for geometry g and instruction set `path`.
/// Throws what g.validate() throws; shape_error when w is not [out_c, patch()];
/// config_error for a path the CPU lacks or patch() > max_gemm_s8_k.
/// Complexity: O(out_c * patch()) once.
[[nodiscard]] inline packed_conv_s8 pack_conv_s8(const conv2d_geometry& g,
                                                 tensor_view<const std::int8_t, 2> w,
                                                 isa path = active_isa()) {
  g.validate();
  require_supported(path);
  const index_t patch = g.patch();
  if (w.extent(0) != g.out_c || w.extent(1) != patch) {
    throw shape_error("conv2d weights are " + std::to_string(w.extent(0)) + " x " +
                      std::to_string(w.extent(1)) + " (expected out_c x kernel_h*kernel_w*in_c/groups = " +
                      std::to_string(g.out_c) + " x " + std::to_string(patch) + ")");
  }
  detail::check_k(patch);
  packed_conv_s8 p;
  p.g_ = g;
  p.path_ = path;
  p.depthwise_ = g.is_depthwise();
  if (p.depthwise_) {
    const index_t c = g.in_c, taps = patch;
    p.cpad_ = (c + 15) / 16 * 16;
    p.raw_.assign(w.data_handle(), w.data_handle() + c * taps);
    p.dw_w_.assign(static_cast<std::size_t>(taps * p.cpad_), 0);
    p.dw_sum_.assign(static_cast<std::size_t>(p.cpad_), 0);
    for (index_t ch = 0; ch < c; ++ch) {
      std::int32_t s = 0;
      for (index_t t = 0; t < taps; ++t) {
        const std::int8_t v = w(ch, t);
        s += v;
        // int16 bits of w in the low half, 0 in the high half (see x86/depthwise_s8.hpp).
        p.dw_w_[static_cast<std::size_t>(t * p.cpad_ + ch)] =
            static_cast<std::int32_t>(static_cast<std::uint16_t>(static_cast<std::int16_t>(v)));
      }
      p.dw_sum_[static_cast<std::size_t>(ch)] = s;
    }
    return p;
  }
  const index_t goc = g.group_out_c();
  // The VNNI kernel reads whole 4-byte k-groups and copies its input when K is not
  // a multiple of 4; im2col convs avoid that copy by padding K with zero weights
  // (their im2col columns hold the zero point: (zp - zp) * 0 adds nothing).
  p.kp_ = patch;
  if (path == isa::avx512_vnni && !detail::conv_is_direct(g) && patch % 4 != 0 &&
      (patch + 3) / 4 * 4 <= max_gemm_s8_k) {
    p.kp_ = (patch + 3) / 4 * 4;
  }
  std::vector<std::int8_t> wp(static_cast<std::size_t>(goc * p.kp_), 0);
  p.groups_.reserve(static_cast<std::size_t>(g.groups));
  for (index_t grp = 0; grp < g.groups; ++grp) {
    for (index_t o = 0; o < goc; ++o)
      for (index_t j = 0; j < patch; ++j)
        wp[static_cast<std::size_t>(o * p.kp_ + j)] = w(grp * goc + o, j);
    p.groups_.push_back(pack_s8(tensor_view<const std::int8_t, 2>(wp.data(), goc, p.kp_), path));
  }
  return p;
}

namespace detail {

// The output stage of the channels [offset, offset + n): its per-channel arrays shifted.
inline store_int32 offset_stage(const store_int32& st, index_t) noexcept { return st; }
inline store_float offset_stage(const store_float& st, index_t off) noexcept {
  return {st.scale + off, st.bias != nullptr ? st.bias + off : nullptr, st.relu};
}
template <class T>
store_requant<T> offset_stage(const store_requant<T>& st, index_t off) noexcept {
  return {st.multiplier + off, st.shift + off, st.bias != nullptr ? st.bias + off : nullptr,
          st.out_zero_point, st.act_min, st.act_max};
}

/// Checks the input, zero point and output against the packed geometry; returns
/// the geometry with the batch taken from the input rows.
template <class Ta>
conv2d_geometry check_conv_args(tensor_view<const Ta, 2> x, std::int32_t zp, const packed_conv_s8& w,
                                index_t out_rows, index_t out_cols) {
  if (w.empty()) {
    throw config_error("packed conv weights are empty (expected the result of pack_conv_s8)");
  }
  conv2d_geometry g = w.geometry();
  const index_t pixels = g.in_h * g.in_w;
  if (x.extent(1) != g.in_c || x.extent(0) % pixels != 0) {
    throw shape_error("conv2d input is " + std::to_string(x.extent(0)) + " x " +
                      std::to_string(x.extent(1)) + " (expected batch*in_h*in_w x in_c with in_h*in_w = " +
                      std::to_string(pixels) + ", in_c = " + std::to_string(g.in_c) + ")");
  }
  g.batch = x.extent(0) / pixels;
  if (out_rows != g.out_pixels() || out_cols != g.out_c) {
    throw shape_error("conv2d output is " + std::to_string(out_rows) + " x " + std::to_string(out_cols) +
                      " (expected batch*out_h*out_w x out_c = " + std::to_string(g.out_pixels()) +
                      " x " + std::to_string(g.out_c) + ")");
  }
  check_activation_zero_point<Ta>(zp);
  require_supported(w.path());
  return g;
}

/// Runs the conv on the packed path. Internal: use conv2d_s8(). Each output element
/// is computed by one thread with the same arithmetic, so results do not depend on
/// the thread count.
template <class Ta, class Out, class Stage>
void run_conv2d_s8(tensor_view<const Ta, 2> x, std::int32_t zp, const packed_conv_s8& w, Out* out,
                   const Stage& st) {
  conv2d_geometry g = w.g_;
  g.batch = x.extent(0) / (g.in_h * g.in_w);
  if (g.batch == 0) return;
  const index_t ldo = g.out_c, m = g.out_pixels();
  if (w.depthwise_) {
    if (w.path_ == isa::scalar) {
      reference::conv2d_s8(g, x.data_handle(), zp, w.raw_.data(), out, ldo, st);
      return;
    }
#if QPRUNE_X86
    aligned_vector<std::int32_t> zcorr(static_cast<std::size_t>(w.cpad_));
    for (std::size_t c = 0; c < zcorr.size(); ++c) {
      zcorr[c] = static_cast<std::int32_t>(static_cast<std::uint32_t>(zp) *
                                           static_cast<std::uint32_t>(w.dw_sum_[c]));
    }
    const dw_args a{&g, w.dw_w_.data(), w.cpad_, zcorr.data(), zp};
    const Ta* xp = x.data_handle();
    const isa path = w.path_;
    const auto body = [&](index_t r0, index_t r1) {
      if (path == isa::avx512_vnni) x86_avx512::dw_conv<true>(a, xp, r0, r1, out, ldo, st);
      else if (path == isa::avx512) x86_avx512::dw_conv<false>(a, xp, r0, r1, out, ldo, st);
      else x86_avx2::dw_conv(a, xp, r0, r1, out, ldo, st);
    };
    const index_t rows = g.batch * g.out_h();
    if (num_threads() > 1 && m * g.in_c * g.patch() >= (index_t{1} << 20)) {
      parallel_for(rows, body);
    } else {
      body(0, rows);
    }
#endif
    return;
  }
  const index_t k = w.kp_, goc = g.group_out_c();
  if (conv_is_direct(g)) {
    run_gemm_s8(x, zp, w.groups_[0], out, ldo, st);
    return;
  }
  const index_t block = std::min(m, std::max<index_t>(8, conv_scratch_bytes / (k * 8) * 8));
  // im2col writes the first patch() columns of each row; the K padding columns
  // (if any) keep the zero point.
  std::vector<Ta> cols(static_cast<std::size_t>(block * k), static_cast<Ta>(zp));
  for (index_t r0 = 0; r0 < m; r0 += block) {
    const index_t r1 = std::min(m, r0 + block);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      im2col(g, x.data_handle(), grp, r0, r1, static_cast<Ta>(zp), cols.data(), k);
      run_gemm_s8(tensor_view<const Ta, 2>(cols.data(), r1 - r0, k), zp,
                  w.groups_[static_cast<std::size_t>(grp)], out + r0 * ldo + grp * goc, ldo,
                  offset_stage(st, grp * goc));
    }
  }
}

}  // namespace detail

/// y = conv(x - x_zero_point, w) as int32 accumulators.
/// x: NHWC activations [batch * in_h * in_w, in_c] (uint8 or int8, row-major; the batch
/// is x.extent(0) / (in_h * in_w)); y: [batch * out_h * out_w, out_c] (NHWC).
/// Numerics: exact (patch() <= max_gemm_s8_k guarantees the sums fit in int32);
/// padding taps contribute 0.
/// Throws shape_error for extents that do not match the geometry, config_error for a
/// zero point outside Ta's range, empty weights or an unsupported path.
template <class Ta>
  requires(std::same_as<Ta, std::uint8_t> || std::same_as<Ta, std::int8_t>)
void conv2d_s8(tensor_view<const Ta, 2> x, std::int32_t x_zero_point, const packed_conv_s8& w,
               tensor_view<std::int32_t, 2> y) {
  detail::check_conv_args(x, x_zero_point, w, y.extent(0), y.extent(1));
  detail::run_conv2d_s8(x, x_zero_point, w, y.data_handle(), store_int32{});
}

/// y = act(fma(float(acc), st.scale[o], st.bias[o])) (st.scale[o] = s_x * s_w[o]; one
/// rounding, the fma; act = identity or ReLU). Same checks as above; st.scale (and
/// st.bias unless null) hold out_c values; config_error for a null scale.
template <class Ta>
  requires(std::same_as<Ta, std::uint8_t> || std::same_as<Ta, std::int8_t>)
void conv2d_s8(tensor_view<const Ta, 2> x, std::int32_t x_zero_point, const packed_conv_s8& w,
               tensor_view<float, 2> y, const store_float& st) {
  detail::check_conv_args(x, x_zero_point, w, y.extent(0), y.extent(1));
  if (st.scale == nullptr) {
    throw config_error("store_float needs a scale per output channel (got a null pointer)");
  }
  detail::run_conv2d_s8(x, x_zero_point, w, y.data_handle(), st);
}

/// q = clamp(MBQM(acc + bias[o], M0[o], shift[o]) + zp_out, act_min, act_max) as int8 or
/// uint8: bit-identical to quant::requantize_value (double rounding) on the int32 result.
/// Same checks as above; shape_error when st is not for out_c channels.
template <class Ta, class T>
  requires(std::same_as<Ta, std::uint8_t> || std::same_as<Ta, std::int8_t>)
void conv2d_s8(tensor_view<const Ta, 2> x, std::int32_t x_zero_point, const packed_conv_s8& w,
               tensor_view<T, 2> q, const requant_stage<T>& st) {
  detail::check_conv_args(x, x_zero_point, w, q.extent(0), q.extent(1));
  if (st.channels() != w.geometry().out_c) {
    throw shape_error("requantization stage for " + std::to_string(st.channels()) +
                      " channels used with " + std::to_string(w.geometry().out_c) +
                      " output channels");
  }
  detail::run_conv2d_s8(x, x_zero_point, w, q.data_handle(), st.stage());
}

}  // namespace qprune::kernels

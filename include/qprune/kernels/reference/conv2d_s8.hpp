// Scalar reference twin of the int8 NHWC conv (kernels/conv2d_s8.hpp): the
// direct seven-loop definition every fast path (im2col + GEMM, depthwise
// kernels) is tested against, bit for bit.
//
//   acc[b,oh,ow,o] = sum_{kh,kw,c} (x[b, ih, iw, g*gic + c] - zp) * w[o,kh,kw,c]   exact (int64)
//   ih = oh*sh - pt + kh*dh, iw = ow*sw - pl + kw*dw, g = o / goc; taps outside the input add 0.
#pragma once

#include <cmath>
#include <cstdint>

#include "qprune/core/config.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/kernels/output_stage.hpp"
#include "qprune/quant/requantize.hpp"

namespace qprune::kernels::reference {

/// One accumulator through the int32 output stage: the value itself.
inline std::int32_t stage_value(std::int32_t acc, index_t, const store_int32&) noexcept { return acc; }

/// One accumulator through the float stage of channel n:
///   act(fma(float(acc), scale[n], bias[n])), act = identity or max(0, .) (NaN -> 0 too).
inline float stage_value(std::int32_t acc, index_t n, const store_float& st) noexcept {
  float v = std::fma(static_cast<float>(acc), st.scale[n], st.bias != nullptr ? st.bias[n] : 0.0f);
  if (st.relu && !(v > 0.0f)) v = 0.0f;
  return v;
}

/// One accumulator through the requantizing stage of channel n: quant::requantize_value
/// with double rounding, then the clamp to [act_min, act_max].
template <class T>
inline T stage_value(std::int32_t acc, index_t n, const store_requant<T>& st) noexcept {
  return static_cast<T>(quant::requantize_value(
      acc, st.bias != nullptr ? st.bias[n] : 0, {st.multiplier[n], static_cast<int>(st.shift[n])},
      st.out_zero_point, {st.act_min, st.act_max}, quant::multiplier_rounding::double_rounding));
}

/// The direct conv: out[pixel * ldo + o] = stage(acc[pixel][o]) for every output pixel
/// (pixel = (b * out_h + oh) * out_w + ow) and channel o < out_c.
/// x: NHWC [g.batch, in_h, in_w, in_c] (uint8 or int8); w: OHWI int8 [out_c, patch()] row-major.
/// Preconditions: g.validate() passed; the exact sums fit in int32 (patch() <= max_gemm_s8_k);
/// the stage arrays hold out_c entries.
template <class Ta, class Out, class Stage>
void conv2d_s8(const conv2d_geometry& g, const Ta* x, std::int32_t x_zero_point,
               const std::int8_t* w, Out* out, index_t ldo, const Stage& st) noexcept {
  const index_t oh_n = g.out_h(), ow_n = g.out_w(), gic = g.group_in_c(), goc = g.group_out_c();
  const index_t patch = g.patch();
  for (index_t b = 0; b < g.batch; ++b)
    for (index_t oh = 0; oh < oh_n; ++oh)
      for (index_t ow = 0; ow < ow_n; ++ow) {
        Out* y = out + ((b * oh_n + oh) * ow_n + ow) * ldo;
        for (index_t o = 0; o < g.out_c; ++o) {
          const index_t c0 = (o / goc) * gic;
          std::int64_t acc = 0;
          for (index_t kh = 0; kh < g.kernel_h; ++kh) {
            const index_t ih = oh * g.stride_h - g.pad_top + kh * g.dilation_h;
            if (ih < 0 || ih >= g.in_h) continue;
            for (index_t kw = 0; kw < g.kernel_w; ++kw) {
              const index_t iw = ow * g.stride_w - g.pad_left + kw * g.dilation_w;
              if (iw < 0 || iw >= g.in_w) continue;
              const Ta* xp = x + ((b * g.in_h + ih) * g.in_w + iw) * g.in_c + c0;
              const std::int8_t* wp = w + o * patch + (kh * g.kernel_w + kw) * gic;
              for (index_t c = 0; c < gic; ++c) {
                acc += (static_cast<std::int64_t>(xp[c]) - x_zero_point) * static_cast<std::int64_t>(wp[c]);
              }
            }
          }
          y[o] = stage_value(static_cast<std::int32_t>(acc), o, st);
        }
      }
}

}  // namespace qprune::kernels::reference

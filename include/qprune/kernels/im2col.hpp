// NHWC 2-D convolution geometry and the im2col / col2im lowering that turns a
// convolution into a GEMM: one row of `cols` per output pixel, one column per
// (kh, kw, c) tap in the order of an OHWI weight row, so
//   y[pixel][o] = sum_p cols[pixel][p] * w[o][p]      (per group).
// Used by the int8 conv (kernels/conv2d_s8.hpp) and by the float conv layers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"

namespace qprune::kernels {

/// NHWC convolution geometry. Input [batch, in_h, in_w, in_c]; weights are OHWI:
/// [out_c, kernel_h, kernel_w, in_c / groups]; output [batch, out_h, out_w, out_c].
/// Output channel o belongs to group g = o / group_out_c() and reads input
/// channels [g * group_in_c(), (g + 1) * group_in_c()).
///
/// Input tap of output (oh, ow) and kernel tap (kh, kw):
///   ih = oh * stride_h - pad_top + kh * dilation_h,  iw = ow * stride_w - pad_left + kw * dilation_w
/// Taps with ih outside [0, in_h) or iw outside [0, in_w) are padding.
struct conv2d_geometry {
  index_t batch = 1, in_h = 0, in_w = 0, in_c = 0, out_c = 0, kernel_h = 1, kernel_w = 1;
  index_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  index_t dilation_h = 1, dilation_w = 1, groups = 1;

  /// floor((in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h) + 1,
  /// or 0 when the dilated kernel does not fit (or stride_h <= 0).
  [[nodiscard]] index_t out_h() const noexcept {
    return out_extent(in_h, pad_top + pad_bottom, kernel_h, stride_h, dilation_h);
  }
  /// floor((in_w + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w) + 1,
  /// or 0 when the dilated kernel does not fit (or stride_w <= 0).
  [[nodiscard]] index_t out_w() const noexcept {
    return out_extent(in_w, pad_left + pad_right, kernel_w, stride_w, dilation_w);
  }
  /// in_c / groups: the channels one filter reads.
  [[nodiscard]] index_t group_in_c() const noexcept { return groups > 0 ? in_c / groups : 0; }
  /// out_c / groups: the filters of one group.
  [[nodiscard]] index_t group_out_c() const noexcept { return groups > 0 ? out_c / groups : 0; }
  /// kernel_h * kernel_w * group_in_c(): the GEMM reduction length K (one weight row).
  [[nodiscard]] index_t patch() const noexcept { return kernel_h * kernel_w * group_in_c(); }
  /// batch * out_h() * out_w(): the GEMM row count M (one row per output pixel).
  [[nodiscard]] index_t out_pixels() const noexcept { return batch * out_h() * out_w(); }
  /// True for a depthwise conv with channel multiplier 1 (groups == in_c == out_c).
  [[nodiscard]] bool is_depthwise() const noexcept {
    return groups > 1 && groups == in_c && groups == out_c;
  }

  /// Throws shape_error for a non-positive batch, spatial size, channel count or
  /// kernel size, or an empty output (kernel larger than the padded input);
  /// config_error for a non-positive stride, dilation or group count, a negative
  /// pad, or groups not dividing in_c and out_c.
  void validate() const {
    const auto positive = [](index_t v, const char* what) {
      if (v <= 0) {
        throw shape_error(std::string("conv2d ") + what + " is " + std::to_string(v) +
                          " (expected >= 1)");
      }
    };
    positive(batch, "batch");
    positive(in_h, "in_h");
    positive(in_w, "in_w");
    positive(in_c, "in_c");
    positive(out_c, "out_c");
    positive(kernel_h, "kernel_h");
    positive(kernel_w, "kernel_w");
    const auto positive_cfg = [](index_t v, const char* what) {
      if (v <= 0) {
        throw config_error(std::string("conv2d ") + what + " is " + std::to_string(v) +
                           " (expected >= 1)");
      }
    };
    positive_cfg(stride_h, "stride_h");
    positive_cfg(stride_w, "stride_w");
    positive_cfg(dilation_h, "dilation_h");
    positive_cfg(dilation_w, "dilation_w");
    positive_cfg(groups, "groups");
    const auto non_negative = [](index_t v, const char* what) {
      if (v < 0) {
        throw config_error(std::string("conv2d ") + what + " is " + std::to_string(v) +
                           " (expected >= 0)");
      }
    };
    non_negative(pad_top, "pad_top");
    non_negative(pad_left, "pad_left");
    non_negative(pad_bottom, "pad_bottom");
    non_negative(pad_right, "pad_right");
    if (in_c % groups != 0 || out_c % groups != 0) {
      throw config_error("conv2d groups = " + std::to_string(groups) + " does not divide in_c = " +
                         std::to_string(in_c) + " and out_c = " + std::to_string(out_c) +
                         " (expected a common divisor)");
    }
    if (out_h() <= 0 || out_w() <= 0) {
      throw shape_error("conv2d output is empty: input " + std::to_string(in_h) + " x " +
                        std::to_string(in_w) + " with pads (" + std::to_string(pad_top) + ", " +
                        std::to_string(pad_bottom) + ") x (" + std::to_string(pad_left) + ", " +
                        std::to_string(pad_right) + ") is smaller than the dilated kernel " +
                        std::to_string(dilation_h * (kernel_h - 1) + 1) + " x " +
                        std::to_string(dilation_w * (kernel_w - 1) + 1) +
                        " (expected an output of at least 1 x 1)");
    }
  }

 private:
  static constexpr index_t out_extent(index_t in, index_t pads, index_t k, index_t stride,
                                      index_t dil) noexcept {
    const index_t span = in + pads - dil * (k - 1) - 1;
    if (stride <= 0 || span < 0) return 0;
    return span / stride + 1;
  }
};

/// TensorFlow's padding names.
///  - valid: no padding.
///  - same:  out = ceil(in / stride); total = max((out - 1) * stride + dilation * (k - 1) + 1 - in, 0),
///           pad_top = total / 2, pad_bottom = total - pad_top (the extra pad at bottom/right).
enum class padding_mode { valid, same };

/// Sets g's four pads for `mode` from in_h/in_w, kernel, stride and dilation.
/// Throws config_error for a non-positive stride or dilation (nothing is changed then).
inline void set_padding(conv2d_geometry& g, padding_mode mode) {
  if (g.stride_h <= 0 || g.stride_w <= 0 || g.dilation_h <= 0 || g.dilation_w <= 0) {
    throw config_error("conv2d padding needs strides and dilations >= 1 (got stride " +
                       std::to_string(g.stride_h) + " x " + std::to_string(g.stride_w) +
                       ", dilation " + std::to_string(g.dilation_h) + " x " +
                       std::to_string(g.dilation_w) + ")");
  }
  if (mode == padding_mode::valid) {
    g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 0;
    return;
  }
  const auto total = [](index_t in, index_t k, index_t stride, index_t dil) {
    const index_t out = (in + stride - 1) / stride;
    return std::max<index_t>((out - 1) * stride + dil * (k - 1) + 1 - in, 0);
  };
  const index_t th = total(g.in_h, g.kernel_h, g.stride_h, g.dilation_h);
  const index_t tw = total(g.in_w, g.kernel_w, g.stride_w, g.dilation_w);
  g.pad_top = th / 2;
  g.pad_bottom = th - g.pad_top;
  g.pad_left = tw / 2;
  g.pad_right = tw - g.pad_left;
}

namespace detail {
/// The kernel taps kw in [begin, end) whose input column iw0 + kw * dil lies in [0, in_w).
/// The valid taps are contiguous because iw grows with kw.
struct tap_range {
  index_t begin, end;
};
constexpr tap_range valid_taps(index_t i0, index_t k, index_t dil, index_t in) noexcept {
  if (dil == 1) {  // the common case, without divisions
    const index_t b1 = std::min(std::max<index_t>(0, -i0), k);
    return {b1, std::max(b1, std::min(k, in - i0))};
  }
  const index_t b = i0 >= 0 ? 0 : (-i0 + dil - 1) / dil;
  const index_t e = i0 > in - 1 ? 0 : std::min(k, (in - 1 - i0) / dil + 1);
  return {std::min(b, k), std::max(std::min(b, k), e)};
}

/// Copies n bytes, 0 <= n <= 16, as two overlapping fixed-size copies that stay inside
/// [0, n): im2col's runs for few-channel inputs are that short (a 3-tap row of a
/// 1-channel image is 3 bytes), and a memcpy call costs more than the copy.
inline void copy_small(unsigned char* d, const unsigned char* s, index_t n) noexcept {
  const auto tail = [&](auto word) {
    constexpr index_t w = sizeof(word);
    std::memcpy(&word, s, w);
    decltype(word) last;
    std::memcpy(&last, s + (n - w), w);
    std::memcpy(d, &word, w);
    std::memcpy(d + (n - w), &last, w);
  };
  if (n >= 8 && n <= 16) {
    tail(std::uint64_t{});
  } else if (n >= 4 && n < 8) {
    tail(std::uint32_t{});
  } else if (n >= 2 && n < 4) {
    tail(std::uint16_t{});
  } else if (n == 1) {
    *d = *s;
  }
}

/// Enumerates the taps of the output pixels r in [row_begin, row_end) as runs:
/// visit(r, in_offset, col_offset, run) covers `run` consecutive patch entries of row r
/// from col_offset that are either all padding (in_offset = -1) or contiguous in the
/// input starting at element in_offset. (b, oh, ow) advance incrementally: no
/// divisions per row.
template <class Visit>
inline void for_each_run(const conv2d_geometry& g, index_t group, index_t row_begin,
                         index_t row_end, Visit&& visit) noexcept {
  if (row_begin >= row_end) return;
  const index_t oh_n = g.out_h(), ow_n = g.out_w();
  const index_t gic = g.group_in_c();
  const index_t row_len = g.kernel_w * gic;
  // With one group and no dilation, neighbouring kw taps are adjacent pixels of
  // one input row and all in_c channels are read: one contiguous run per kh.
  const bool merge = g.dilation_w == 1 && gic == g.in_c;
  const index_t c0 = group * gic;
  index_t ow = row_begin % ow_n;
  index_t oh = (row_begin / ow_n) % oh_n;
  index_t b = row_begin / (ow_n * oh_n);
  for (index_t r = row_begin; r < row_end; ++r) {
    const index_t ih0 = oh * g.stride_h - g.pad_top;
    const index_t iw0 = ow * g.stride_w - g.pad_left;
    const tap_range tw = valid_taps(iw0, g.kernel_w, g.dilation_w, g.in_w);
    for (index_t kh = 0; kh < g.kernel_h; ++kh) {
      const index_t ih = ih0 + kh * g.dilation_h;
      const index_t col = kh * row_len;
      if (ih < 0 || ih >= g.in_h) {
        visit(r, index_t{-1}, col, row_len);
        continue;
      }
      const index_t in_row = (b * g.in_h + ih) * g.in_w;
      if (tw.begin > 0) visit(r, index_t{-1}, col, tw.begin * gic);
      if (merge) {
        if (tw.end > tw.begin) {
          visit(r, (in_row + iw0 + tw.begin) * g.in_c, col + tw.begin * gic, (tw.end - tw.begin) * gic);
        }
      } else {
        for (index_t kw = tw.begin; kw < tw.end; ++kw) {
          visit(r, (in_row + iw0 + kw * g.dilation_w) * g.in_c + c0, col + kw * gic, gic);
        }
      }
      if (tw.end < g.kernel_w) visit(r, index_t{-1}, col + tw.end * gic, (g.kernel_w - tw.end) * gic);
    }
    if (++ow == ow_n) {
      ow = 0;
      if (++oh == oh_n) {
        oh = 0;
        ++b;
      }
    }
  }
}
}  // namespace detail

/// Lowers NHWC `input` [batch, in_h, in_w, in_c] to rows of a GEMM operand:
///   cols[(r - row_begin) * ldc + p] = input[b, ih, iw, group * group_in_c() + c]
/// for output pixels r in [row_begin, row_end) (r = (b * out_h + oh) * out_w + ow) and
/// p = (kh * kernel_w + kw) * group_in_c() + c, the order of an OHWI weight row, with
/// ih, iw as in conv2d_geometry; taps outside the input read `pad_value` (pass the
/// activation zero point for quantized inputs, so padding contributes exactly 0).
/// Preconditions: g.validate() passed; 0 <= group < groups; 0 <= row_begin <= row_end <=
/// out_pixels(); ldc >= patch(); cols holds (row_end - row_begin) rows of ldc entries
/// (entries past patch() in each row are not written).
/// Complexity: O((row_end - row_begin) * patch()), copying runs of contiguous channels
/// (whole kernel rows when groups == 1 and dilation_w == 1) with memcpy.
template <class T>
void im2col(const conv2d_geometry& g, const T* input, index_t group, index_t row_begin,
            index_t row_end, T pad_value, T* cols, index_t ldc) noexcept {
  static_assert(std::is_trivially_copyable_v<T>, "im2col copies elements with memcpy");
  QPRUNE_ASSERT(ldc >= g.patch(), "im2col: ldc must be at least patch()");
  QPRUNE_ASSERT(group >= 0 && group < g.groups, "im2col: group out of range");
  QPRUNE_ASSERT(row_begin >= 0 && row_begin <= row_end && row_end <= g.out_pixels(),
                "im2col: rows out of range");
  // A 16-byte run of padding to copy short pad runs from.
  constexpr index_t pad_block = 16 / sizeof(T) > 0 ? 16 / sizeof(T) : 1;
  T pad[pad_block];
  std::fill_n(pad, pad_block, pad_value);
  detail::for_each_run(g, group, row_begin, row_end, [&](index_t r, index_t in_off, index_t col, index_t run) {
    T* d = cols + (r - row_begin) * ldc + col;
    const index_t bytes = run * static_cast<index_t>(sizeof(T));
    if (in_off >= 0 && bytes > 16) {
      std::memcpy(d, input + in_off, static_cast<std::size_t>(run) * sizeof(T));
    } else if (in_off >= 0) {
      detail::copy_small(reinterpret_cast<unsigned char*>(d),
                         reinterpret_cast<const unsigned char*>(input + in_off), bytes);
    } else if (run <= pad_block) {
      detail::copy_small(reinterpret_cast<unsigned char*>(d), reinterpret_cast<const unsigned char*>(pad),
                         bytes);
    } else {
      std::fill_n(d, run, pad_value);
    }
  });
}

/// The adjoint of im2col (for the input gradient of a float conv):
///   input_grad[b, ih, iw, group * group_in_c() + c] += cols[(r - row_begin) * ldc + p]
/// over the same index map; padding taps are dropped. Overlapping windows accumulate,
/// in the order r ascending, then p ascending.
/// Preconditions: as im2col; input_grad holds batch * in_h * in_w * in_c entries.
template <class T>
void col2im(const conv2d_geometry& g, const T* cols, index_t ldc, index_t group, index_t row_begin,
            index_t row_end, T* input_grad) noexcept {
  QPRUNE_ASSERT(ldc >= g.patch(), "col2im: ldc must be at least patch()");
  QPRUNE_ASSERT(group >= 0 && group < g.groups, "col2im: group out of range");
  QPRUNE_ASSERT(row_begin >= 0 && row_begin <= row_end && row_end <= g.out_pixels(),
                "col2im: rows out of range");
  detail::for_each_run(g, group, row_begin, row_end, [&](index_t r, index_t in_off, index_t col, index_t run) {
    if (in_off < 0) return;
    T* d = input_grad + in_off;
    const T* s = cols + (r - row_begin) * ldc + col;
    for (index_t i = 0; i < run; ++i) d[i] += s[i];
  });
}

}  // namespace qprune::kernels

// 2-D max and average pooling over NHWC [batch, h, w, c] float tensors, with
// PyTorch's MaxPool2d / AvgPool2d semantics (floor output size, symmetric
// padding, count_include_pad for the average) and their backward passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/nn/layer.hpp"

namespace qprune::nn {

/// A pooling window: kernel, stride (0 = the kernel size, PyTorch's default) and
/// symmetric zero padding per side.
struct pool2d_options {
  index_t kernel_h = 2, kernel_w = 2;
  index_t stride_h = 0, stride_w = 0;
  index_t pad_h = 0, pad_w = 0;
};

namespace detail {

/// Resolved pooling geometry for an input [batch, in_h, in_w, c]:
///   out = floor((in + 2 * pad - kernel) / stride) + 1   (PyTorch, ceil_mode=False).
struct pool_geometry {
  index_t batch, in_h, in_w, c, kh, kw, sh, sw, ph, pw, out_h, out_w;
};

inline pool2d_options checked_pool(const pool2d_options& o, std::string_view layer) {
  pool2d_options r = o;
  if (r.stride_h == 0) r.stride_h = r.kernel_h;
  if (r.stride_w == 0) r.stride_w = r.kernel_w;
  check_positive(r.kernel_h, layer, "kernel_h");
  check_positive(r.kernel_w, layer, "kernel_w");
  check_positive(r.stride_h, layer, "stride_h");
  check_positive(r.stride_w, layer, "stride_w");
  if (r.pad_h < 0 || r.pad_w < 0 || 2 * r.pad_h > r.kernel_h || 2 * r.pad_w > r.kernel_w) {
    throw config_error(std::string(layer) + ": padding " + std::to_string(r.pad_h) + " x " +
                       std::to_string(r.pad_w) + " for kernel " + std::to_string(r.kernel_h) +
                       " x " + std::to_string(r.kernel_w) +
                       " (expected 0 <= pad <= kernel / 2, as PyTorch)");
  }
  return r;
}

inline pool_geometry pool_geom(const pool2d_options& o, const extents<4>& e,
                               std::string_view layer) {
  pool_geometry g{e.extent(0), e.extent(1), e.extent(2), e.extent(3), o.kernel_h, o.kernel_w,
                  o.stride_h,  o.stride_w,  o.pad_h,     o.pad_w,     0,          0};
  const index_t sh = g.in_h + 2 * g.ph - g.kh, sw = g.in_w + 2 * g.pw - g.kw;
  if (g.batch < 1 || g.c < 1 || sh < 0 || sw < 0) {
    throw shape_error(std::string(layer) + ": input " + shape_string(e) +
                      " is empty or smaller than the padded kernel " + std::to_string(g.kh) +
                      " x " + std::to_string(g.kw));
  }
  g.out_h = sh / g.sh + 1;
  g.out_w = sw / g.sw + 1;
  return g;
}

}  // namespace detail

/// Max pooling: y[n, oh, ow, c] = max over the window's in-bounds taps of x
/// (padding never wins). Ties and NaN follow PyTorch's CPU kernel: the first maximum
/// in row-major window order is taken, and a NaN wins over any number (the last NaN).
/// Backward: dx[argmax] += dy (overlapping windows accumulate).
class max_pool2d {
 public:
  /// Throws config_error for a non-positive kernel or stride or a pad > kernel / 2.
  explicit max_pool2d(const pool2d_options& opt = {})
      : opt_(detail::checked_pool(opt, "max_pool2d")) {}

  const pool2d_options& options() const noexcept { return opt_; }
  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) {
      argmax_.clear();
      cached_ = false;
    }
  }

  /// Throws shape_error for an input smaller than the padded kernel.
  [[nodiscard]] tensor<float, 4> forward(const tensor<float, 4>& x) {
    const detail::pool_geometry g = detail::pool_geom(opt_, x.extents(), "max_pool2d");
    tensor<float, 4> y(g.batch, g.out_h, g.out_w, g.c);
    const bool train = mode_ == mode::train;
    if (train) argmax_.assign(static_cast<std::size_t>(y.size()), 0);
    const float* xp = x.data();
    float* yp = y.data();
    const float lowest = -std::numeric_limits<float>::infinity();
    for (index_t n = 0; n < g.batch; ++n) {
      for (index_t oh = 0; oh < g.out_h; ++oh) {
        for (index_t ow = 0; ow < g.out_w; ++ow) {
          const index_t out_off = ((n * g.out_h + oh) * g.out_w + ow) * g.c;
          float* yrow = yp + out_off;
          std::int64_t* arow = train ? argmax_.data() + out_off : nullptr;
          for (index_t c = 0; c < g.c; ++c) yrow[c] = lowest;
          bool first = true;
          for (index_t kh = 0; kh < g.kh; ++kh) {
            const index_t ih = oh * g.sh - g.ph + kh;
            if (ih < 0 || ih >= g.in_h) continue;
            for (index_t kw = 0; kw < g.kw; ++kw) {
              const index_t iw = ow * g.sw - g.pw + kw;
              if (iw < 0 || iw >= g.in_w) continue;
              const index_t in_off = ((n * g.in_h + ih) * g.in_w + iw) * g.c;
              const float* xrow = xp + in_off;
              for (index_t c = 0; c < g.c; ++c) {
                const float v = xrow[c];
                // PyTorch: (val > maxval) || isnan(val); the first tap always initialises.
                if (first || v > yrow[c] || v != v) {
                  yrow[c] = v;
                  if (arow != nullptr) arow[c] = in_off + c;
                }
              }
              first = false;
            }
          }
        }
      }
    }
    if (train) {
      in_ = x.extents();
      out_ = y.extents();
      cached_ = true;
    }
    return y;
  }

  /// Throws config_error without a train-mode forward, shape_error for another shape.
  [[nodiscard]] tensor<float, 4> backward(const tensor<float, 4>& grad_out) const {
    detail::check_cached(cached_, "max_pool2d");
    detail::check_shape(grad_out.extents(), out_, "max_pool2d", "grad_out");
    tensor<float, 4> dx(in_);
    float* dp = dx.data();
    const float* gp = grad_out.data();
    for (index_t i = 0; i < grad_out.size(); ++i) dp[argmax_[static_cast<std::size_t>(i)]] += gp[i];
    return dx;
  }

 private:
  pool2d_options opt_;
  std::vector<std::int64_t> argmax_;  // flat input index of each output's maximum
  extents<4> in_{}, out_{};
  bool cached_ = false;
  mode mode_ = mode::train;
};

/// Average pooling (PyTorch's AvgPool2d, ceil_mode=False):
///   y[n, oh, ow, c] = (sum of the window's in-bounds taps) / divisor,
/// divisor = the window size clipped to the padded input (count_include_pad = true,
/// PyTorch's default) or the count of in-bounds taps (false).
/// Backward: every in-bounds tap of a window gets dy / divisor.
class avg_pool2d {
 public:
  /// Throws config_error as max_pool2d.
  explicit avg_pool2d(const pool2d_options& opt = {}, bool count_include_pad = true)
      : opt_(detail::checked_pool(opt, "avg_pool2d")), include_pad_(count_include_pad) {}

  const pool2d_options& options() const noexcept { return opt_; }
  /// Whether padded taps count in the divisor (PyTorch's count_include_pad).
  bool count_include_pad() const noexcept { return include_pad_; }
  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) cached_ = false;
  }

  /// Throws shape_error for an input smaller than the padded kernel.
  [[nodiscard]] tensor<float, 4> forward(const tensor<float, 4>& x) {
    const detail::pool_geometry g = detail::pool_geom(opt_, x.extents(), "avg_pool2d");
    tensor<float, 4> y(g.batch, g.out_h, g.out_w, g.c);
    const float* xp = x.data();
    float* yp = y.data();
    for (index_t n = 0; n < g.batch; ++n) {
      for (index_t oh = 0; oh < g.out_h; ++oh) {
        for (index_t ow = 0; ow < g.out_w; ++ow) {
          const window w = window_of(g, oh, ow);
          float* yrow = yp + ((n * g.out_h + oh) * g.out_w + ow) * g.c;
          for (index_t ih = w.h0; ih < w.h1; ++ih) {
            for (index_t iw = w.w0; iw < w.w1; ++iw) {
              const float* xrow = xp + ((n * g.in_h + ih) * g.in_w + iw) * g.c;
              for (index_t c = 0; c < g.c; ++c) yrow[c] += xrow[c];
            }
          }
          for (index_t c = 0; c < g.c; ++c) yrow[c] /= w.divisor;
        }
      }
    }
    if (mode_ == mode::train) {
      geom_ = g;
      cached_ = true;
    }
    return y;
  }

  /// Throws config_error without a train-mode forward, shape_error for another shape.
  [[nodiscard]] tensor<float, 4> backward(const tensor<float, 4>& grad_out) const {
    detail::check_cached(cached_, "avg_pool2d");
    const detail::pool_geometry& g = geom_;
    detail::check_shape(grad_out.extents(), extents<4>(g.batch, g.out_h, g.out_w, g.c),
                        "avg_pool2d", "grad_out");
    tensor<float, 4> dx(g.batch, g.in_h, g.in_w, g.c);
    const float* gp = grad_out.data();
    float* dp = dx.data();
    for (index_t n = 0; n < g.batch; ++n) {
      for (index_t oh = 0; oh < g.out_h; ++oh) {
        for (index_t ow = 0; ow < g.out_w; ++ow) {
          const window w = window_of(g, oh, ow);
          const float* grow = gp + ((n * g.out_h + oh) * g.out_w + ow) * g.c;
          for (index_t ih = w.h0; ih < w.h1; ++ih) {
            for (index_t iw = w.w0; iw < w.w1; ++iw) {
              float* drow = dp + ((n * g.in_h + ih) * g.in_w + iw) * g.c;
              for (index_t c = 0; c < g.c; ++c) drow[c] += grow[c] / w.divisor;
            }
          }
        }
      }
    }
    return dx;
  }

 private:
  struct window {
    index_t h0, h1, w0, w1;
    float divisor;
  };
  // PyTorch's avg_pool2d: hstart = oh*s - pad, hend = min(hstart + k, in + pad),
  // pool_size = (hend - hstart) * (wend - wstart), then clip to the input.
  window window_of(const detail::pool_geometry& g, index_t oh, index_t ow) const noexcept {
    index_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    index_t h1 = std::min(h0 + g.kh, g.in_h + g.ph), w1 = std::min(w0 + g.kw, g.in_w + g.pw);
    const index_t pool_size = (h1 - h0) * (w1 - w0);
    h0 = std::max<index_t>(h0, 0);
    w0 = std::max<index_t>(w0, 0);
    h1 = std::min(h1, g.in_h);
    w1 = std::min(w1, g.in_w);
    const index_t d = include_pad_ ? pool_size : (h1 - h0) * (w1 - w0);
    return {h0, h1, w0, w1, static_cast<float>(d)};
  }

  pool2d_options opt_;
  bool include_pad_;
  detail::pool_geometry geom_{};
  bool cached_ = false;
  mode mode_ = mode::train;
};

}  // namespace qprune::nn

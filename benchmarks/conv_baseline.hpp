// Eigen fp32 conv baselines for benchmarks/conv_bench.cpp, in their own
// translation unit (conv_baseline.cpp) compiled with -O3 -mavx2 -mfma so the
// float side runs its best vector code; qprune's kernels get no ISA flags and
// dispatch at run time. NHWC activations, OHWI weights, as the int8 conv.
#pragma once

#include <cstdint>

namespace qprune::bench {

/// The geometry of a float NHWC conv (groups = 1; symmetric pads).
struct conv_shape {
  std::int64_t batch, in_h, in_w, in_c, out_c, kernel_h, kernel_w, stride, pad;
  std::int64_t out_h() const { return (in_h + 2 * pad - kernel_h) / stride + 1; }
  std::int64_t out_w() const { return (in_w + 2 * pad - kernel_w) / stride + 1; }
  std::int64_t patch() const { return kernel_h * kernel_w * in_c; }
  std::int64_t out_pixels() const { return batch * out_h() * out_w(); }
};

/// Float conv as im2col + Eigen GEMM: y [out_pixels, out_c] = cols [out_pixels, patch] * w^T,
/// w OHWI [out_c, patch]. `scratch` holds out_pixels * patch floats (unused for 1x1 stride-1
/// unpadded convs, which multiply x directly). col_major selects the Eigen expression on
/// column-major maps (Y^T = W * X^T) instead of row-major maps (Y = X * W^T).
void eigen_conv2d(const conv_shape& s, const float* x, const float* w, float* y, float* scratch,
                  bool col_major);

/// Float depthwise conv (channel multiplier 1), the plain loop over NHWC with the
/// channel loop innermost (vectorised by the compiler): w is [kernel_h * kernel_w, C]
/// (tap-major, channels contiguous: its best layout for this loop).
void float_depthwise_conv2d(const conv_shape& s, const float* x, const float* w_tap_major, float* y);

}  // namespace qprune::bench

#include "conv_baseline.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstring>

namespace qprune::bench {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

// A plain NHWC im2col (rows: output pixels; columns: kh, kw, c), contiguous runs
// of in_c channels copied with memcpy.
void im2col_f32(const conv_shape& s, const float* x, float* cols) {
  const std::int64_t oh_n = s.out_h(), ow_n = s.out_w(), k = s.patch();
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t oh = 0; oh < oh_n; ++oh)
      for (std::int64_t ow = 0; ow < ow_n; ++ow) {
        float* dst = cols + ((b * oh_n + oh) * ow_n + ow) * k;
        for (std::int64_t kh = 0; kh < s.kernel_h; ++kh) {
          const std::int64_t ih = oh * s.stride - s.pad + kh;
          for (std::int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const std::int64_t iw = ow * s.stride - s.pad + kw;
            float* d = dst + (kh * s.kernel_w + kw) * s.in_c;
            if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
              std::fill_n(d, s.in_c, 0.0f);
            } else {
              std::memcpy(d, x + ((b * s.in_h + ih) * s.in_w + iw) * s.in_c,
                          static_cast<std::size_t>(s.in_c) * sizeof(float));
            }
          }
        }
      }
}
}  // namespace

void eigen_conv2d(const conv_shape& s, const float* x, const float* w, float* y, float* scratch,
                  bool col_major) {
  const std::int64_t m = s.out_pixels(), n = s.out_c, k = s.patch();
  const float* a = x;
  if (!(s.kernel_h == 1 && s.kernel_w == 1 && s.stride == 1 && s.pad == 0)) {
    im2col_f32(s, x, scratch);
    a = scratch;
  }
  if (col_major) {
    Eigen::Map<const ColMat> Xt(a, k, m);
    Eigen::Map<const ColMat> Wt(w, k, n);
    Eigen::Map<ColMat> Yt(y, n, m);
    Yt.noalias() = Wt.transpose() * Xt;
  } else {
    Eigen::Map<const RowMat> X(a, m, k);
    Eigen::Map<const RowMat> W(w, n, k);
    Eigen::Map<RowMat> Y(y, m, n);
    Y.noalias() = X * W.transpose();
  }
}

void float_depthwise_conv2d(const conv_shape& s, const float* x, const float* w, float* y) {
  const std::int64_t oh_n = s.out_h(), ow_n = s.out_w(), c = s.in_c;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t oh = 0; oh < oh_n; ++oh)
      for (std::int64_t ow = 0; ow < ow_n; ++ow) {
        float* __restrict yp = y + ((b * oh_n + oh) * ow_n + ow) * c;
        std::fill_n(yp, c, 0.0f);
        for (std::int64_t kh = 0; kh < s.kernel_h; ++kh) {
          const std::int64_t ih = oh * s.stride - s.pad + kh;
          if (ih < 0 || ih >= s.in_h) continue;
          for (std::int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const std::int64_t iw = ow * s.stride - s.pad + kw;
            if (iw < 0 || iw >= s.in_w) continue;
            const float* __restrict xp = x + ((b * s.in_h + ih) * s.in_w + iw) * c;
            const float* __restrict wp = w + (kh * s.kernel_w + kw) * c;
            for (std::int64_t ch = 0; ch < c; ++ch) yp[ch] += xp[ch] * wp[ch];
          }
        }
      }
}

}  // namespace qprune::bench

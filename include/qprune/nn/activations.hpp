// Element-wise activation layers for tensors of any rank: relu and relu6
// (PyTorch's nn.ReLU / nn.ReLU6), with the subgradient conventions PyTorch's
// backward uses at the kinks, and `flatten` (NHWC [batch, h, w, c] -> [batch, h*w*c]).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "qprune/nn/layer.hpp"

namespace qprune::nn {

namespace detail {

/// The pass-through flags of an element-wise layer and the extents they were
/// recorded for (any rank, stored flat).
class elementwise_cache {
 public:
  void reset() noexcept {
    pass_.clear();
    cached_ = false;
  }
  std::vector<std::uint8_t>& start(index_t n) {
    pass_.resize(static_cast<std::size_t>(n));
    cached_ = true;
    return pass_;
  }
  /// Throws config_error without a cached forward, shape_error for another size.
  const std::vector<std::uint8_t>& check(index_t n, std::string_view layer) const {
    check_cached(cached_, layer);
    if (static_cast<index_t>(pass_.size()) != n) {
      throw shape_error(std::string(layer) + ": grad_out has " + std::to_string(n) +
                        " elements (expected " + std::to_string(pass_.size()) +
                        ", the forward output's size)");
    }
    return pass_;
  }

 private:
  std::vector<std::uint8_t> pass_;
  bool cached_ = false;
};

/// dx[i] = pass[i] ? g[i] : 0 (a select, so a NaN or inf gradient does not leak
/// into blocked positions).
template <std::size_t R>
tensor<float, R> select_gradient(const tensor<float, R>& g, const std::vector<std::uint8_t>& pass) {
  tensor<float, R> dx(g.extents());
  const float* gp = g.data();
  float* dp = dx.data();
  for (index_t i = 0; i < g.size(); ++i) dp[i] = pass[static_cast<std::size_t>(i)] ? gp[i] : 0.0f;
  return dx;
}

}  // namespace detail

/// y = max(x, 0). Backward (PyTorch's threshold_backward on the output):
/// dx = dy where y > 0, else 0 (so dx = 0 at x = 0). NaN inputs give NaN outputs
/// (std::max(x, 0) would give 0; PyTorch propagates NaN) and a zero gradient.
class relu {
 public:
  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) cache_.reset();
  }

  template <std::size_t R>
  [[nodiscard]] tensor<float, R> forward(const tensor<float, R>& x) {
    tensor<float, R> y(x.extents());
    const float* xp = x.data();
    float* yp = y.data();
    const index_t n = x.size();
    for (index_t i = 0; i < n; ++i) yp[i] = xp[i] < 0.0f ? 0.0f : xp[i];
    if (mode_ == mode::train) {
      auto& pass = cache_.start(n);
      for (index_t i = 0; i < n; ++i) pass[static_cast<std::size_t>(i)] = yp[i] > 0.0f ? 1 : 0;
    }
    return y;
  }

  /// Throws config_error without a train-mode forward, shape_error for another size.
  template <std::size_t R>
  [[nodiscard]] tensor<float, R> backward(const tensor<float, R>& grad_out) const {
    return detail::select_gradient(grad_out, cache_.check(grad_out.size(), "relu"));
  }

 private:
  detail::elementwise_cache cache_;
  mode mode_ = mode::train;
};

/// y = min(max(x, 0), 6) (PyTorch's ReLU6 = hardtanh(x, 0, 6)). Backward
/// (hardtanh_backward on the input): dx = dy where 0 < x < 6, else 0.
/// NaN inputs propagate to the output and get a zero gradient.
class relu6 {
 public:
  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) cache_.reset();
  }

  template <std::size_t R>
  [[nodiscard]] tensor<float, R> forward(const tensor<float, R>& x) {
    tensor<float, R> y(x.extents());
    const float* xp = x.data();
    float* yp = y.data();
    const index_t n = x.size();
    for (index_t i = 0; i < n; ++i) yp[i] = xp[i] < 0.0f ? 0.0f : (xp[i] > 6.0f ? 6.0f : xp[i]);
    if (mode_ == mode::train) {
      auto& pass = cache_.start(n);
      for (index_t i = 0; i < n; ++i) {
        pass[static_cast<std::size_t>(i)] = xp[i] > 0.0f && xp[i] < 6.0f ? 1 : 0;
      }
    }
    return y;
  }

  /// Throws config_error without a train-mode forward, shape_error for another size.
  template <std::size_t R>
  [[nodiscard]] tensor<float, R> backward(const tensor<float, R>& grad_out) const {
    return detail::select_gradient(grad_out, cache_.check(grad_out.size(), "relu6"));
  }

 private:
  detail::elementwise_cache cache_;
  mode mode_ = mode::train;
};

/// NHWC [batch, h, w, c] -> [batch, h*w*c] (row-major: the same memory order), and
/// back for the gradient. Note: PyTorch flattens NCHW, so a dense layer after a
/// flatten orders its inputs differently from a PyTorch model (permute weights
/// when importing one).
class flatten {
 public:
  void set_mode(mode) noexcept {}

  [[nodiscard]] tensor<float, 2> forward(const tensor<float, 4>& x) {
    in_ = x.extents();
    cached_ = true;
    return x.reshaped(extents<2>(x.extent(0), x.extent(1) * x.extent(2) * x.extent(3)));
  }
  /// Throws config_error without a forward, shape_error for another shape.
  [[nodiscard]] tensor<float, 4> backward(const tensor<float, 2>& grad_out) const {
    detail::check_cached(cached_, "flatten");
    detail::check_shape(grad_out.extents(),
                        extents<2>(in_.extent(0), in_.extent(1) * in_.extent(2) * in_.extent(3)),
                        "flatten", "grad_out");
    return grad_out.reshaped(in_);
  }

 private:
  extents<4> in_{};
  bool cached_ = false;
};

}  // namespace qprune::nn

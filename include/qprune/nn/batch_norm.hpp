// Batch normalisation over the last (channel) dimension of [batch, features] or
// NHWC [batch, h, w, c] tensors, with PyTorch's BatchNorm1d/2d semantics:
// batch statistics in training (biased variance to normalise, unbiased variance
// in the running average, momentum 0.1), running statistics in eval.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/nn/layer.hpp"

namespace qprune::nn {

/// BatchNorm's configuration (PyTorch's defaults).
struct batch_norm_options {
  index_t num_features = 0;
  double eps = 1e-5;
  double momentum = 0.1;
};

/// y = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c per channel c (the last
/// dimension).
///  - train: mean_c and var_c are the batch's (over all other dimensions, N values,
///    biased variance, computed in double); running_mean ← (1 - m) running_mean + m mean,
///    running_var ← (1 - m) running_var + m var * N / (N - 1).
///  - eval: the running statistics.
/// Backward (train mode, x̂ = normalised input, σ⁻¹ = 1/sqrt(var + eps)):
///   dgamma += Σ dy x̂,  dbeta += Σ dy,  dx = gamma σ⁻¹ / N (N dy − Σ dy − x̂ Σ dy x̂).
/// gamma starts at 1, beta at 0, running mean 0 and variance 1.
class batch_norm {
 public:
  /// Throws config_error for num_features < 1, eps <= 0 or momentum outside [0, 1].
  explicit batch_norm(const batch_norm_options& opt)
      : opt_(checked(opt)),
        gamma_(extents<1>(opt.num_features), 1.0f),
        beta_(opt.num_features),
        gamma_grad_(opt.num_features),
        beta_grad_(opt.num_features),
        running_mean_(opt.num_features),
        running_var_(extents<1>(opt.num_features), 1.0f) {}

  const batch_norm_options& options() const noexcept { return opt_; }
  /// Scale γ and shift β [num_features], and their gradients.
  tensor<float, 1>& gamma() noexcept { return gamma_; }
  const tensor<float, 1>& gamma() const noexcept { return gamma_; }
  tensor<float, 1>& beta() noexcept { return beta_; }
  const tensor<float, 1>& beta() const noexcept { return beta_; }
  const tensor<float, 1>& gamma_grad() const noexcept { return gamma_grad_; }
  const tensor<float, 1>& beta_grad() const noexcept { return beta_grad_; }
  /// Running statistics [num_features] used in eval mode (and by batch-norm folding).
  tensor<float, 1>& running_mean() noexcept { return running_mean_; }
  const tensor<float, 1>& running_mean() const noexcept { return running_mean_; }
  tensor<float, 1>& running_var() noexcept { return running_var_; }
  const tensor<float, 1>& running_var() const noexcept { return running_var_; }

  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) {
      xhat_.clear();
      cached_ = false;
    }
  }

  /// Throws shape_error unless the last extent is num_features, and in train mode
  /// when a channel has a single value (PyTorch: "Expected more than 1 value per channel").
  template <std::size_t R>
    requires(R == 2 || R == 4)
  [[nodiscard]] tensor<float, R> forward(const tensor<float, R>& x) {
    const index_t c = opt_.num_features;
    detail::check_extent(x.extents(), R - 1, c, "batch_norm", "input");
    const index_t n = x.size() / c;
    tensor<float, R> y(x.extents());
    const float* xp = x.data();
    float* yp = y.data();
    std::vector<float> scale(static_cast<std::size_t>(c)), shift(static_cast<std::size_t>(c));
    if (mode_ == mode::train) {
      if (n < 2) {
        throw shape_error("batch_norm: " + std::to_string(n) +
                          " value per channel in training (expected more than 1)");
      }
      std::vector<double> sum(static_cast<std::size_t>(c)), sq(static_cast<std::size_t>(c));
      for (index_t i = 0; i < n; ++i) {
        for (index_t j = 0; j < c; ++j) sum[static_cast<std::size_t>(j)] += xp[i * c + j];
      }
      for (index_t j = 0; j < c; ++j) sum[static_cast<std::size_t>(j)] /= static_cast<double>(n);
      for (index_t i = 0; i < n; ++i) {
        for (index_t j = 0; j < c; ++j) {
          const double d = xp[i * c + j] - sum[static_cast<std::size_t>(j)];
          sq[static_cast<std::size_t>(j)] += d * d;
        }
      }
      invstd_.assign(static_cast<std::size_t>(c), 0.0f);
      mean_.assign(static_cast<std::size_t>(c), 0.0f);
      const double m = opt_.momentum;
      for (index_t j = 0; j < c; ++j) {
        const auto u = static_cast<std::size_t>(j);
        const double var = sq[u] / static_cast<double>(n);
        invstd_[u] = static_cast<float>(1.0 / std::sqrt(var + opt_.eps));
        mean_[u] = static_cast<float>(sum[u]);
        running_mean_(j) = static_cast<float>((1.0 - m) * running_mean_(j) + m * sum[u]);
        running_var_(j) = static_cast<float>((1.0 - m) * running_var_(j) +
                                             m * var * static_cast<double>(n) /
                                                 static_cast<double>(n - 1));
      }
      xhat_.resize(static_cast<std::size_t>(x.size()));
      for (index_t i = 0; i < n; ++i) {
        for (index_t j = 0; j < c; ++j) {
          const auto u = static_cast<std::size_t>(j);
          const float xh = (xp[i * c + j] - mean_[u]) * invstd_[u];
          xhat_[static_cast<std::size_t>(i * c + j)] = xh;
          yp[i * c + j] = xh * gamma_(j) + beta_(j);
        }
      }
      cached_ = true;
      return y;
    }
    for (index_t j = 0; j < c; ++j) {
      const auto u = static_cast<std::size_t>(j);
      const double is = 1.0 / std::sqrt(static_cast<double>(running_var_(j)) + opt_.eps);
      scale[u] = static_cast<float>(is * gamma_(j));
      shift[u] = static_cast<float>(beta_(j) - running_mean_(j) * is * gamma_(j));
    }
    for (index_t i = 0; i < n; ++i) {
      for (index_t j = 0; j < c; ++j) {
        const auto u = static_cast<std::size_t>(j);
        yp[i * c + j] = xp[i * c + j] * scale[u] + shift[u];
      }
    }
    return y;
  }

  /// Throws config_error without a train-mode forward, shape_error for another size.
  template <std::size_t R>
    requires(R == 2 || R == 4)
  [[nodiscard]] tensor<float, R> backward(const tensor<float, R>& grad_out) {
    detail::check_cached(cached_, "batch_norm");
    if (static_cast<std::size_t>(grad_out.size()) != xhat_.size() ||
        grad_out.extent(R - 1) != opt_.num_features) {
      throw shape_error("batch_norm: grad_out has shape " + detail::shape_string(grad_out.extents()) +
                        " (expected the forward input's shape)");
    }
    const index_t c = opt_.num_features;
    const index_t n = grad_out.size() / c;
    const float* gp = grad_out.data();
    std::vector<double> sg(static_cast<std::size_t>(c)), sgx(static_cast<std::size_t>(c));
    for (index_t i = 0; i < n; ++i) {
      for (index_t j = 0; j < c; ++j) {
        const auto u = static_cast<std::size_t>(j);
        sg[u] += gp[i * c + j];
        sgx[u] += static_cast<double>(gp[i * c + j]) * xhat_[static_cast<std::size_t>(i * c + j)];
      }
    }
    tensor<float, R> dx(grad_out.extents());
    float* dp = dx.data();
    const double inv_n = 1.0 / static_cast<double>(n);
    for (index_t j = 0; j < c; ++j) {
      const auto u = static_cast<std::size_t>(j);
      gamma_grad_(j) += static_cast<float>(sgx[u]);
      beta_grad_(j) += static_cast<float>(sg[u]);
    }
    for (index_t i = 0; i < n; ++i) {
      for (index_t j = 0; j < c; ++j) {
        const auto u = static_cast<std::size_t>(j);
        const double k = static_cast<double>(gamma_(j)) * invstd_[u];
        const double v = gp[i * c + j] - sg[u] * inv_n -
                         xhat_[static_cast<std::size_t>(i * c + j)] * sgx[u] * inv_n;
        dp[i * c + j] = static_cast<float>(k * v);
      }
    }
    return dx;
  }

  /// Keeps only the channels in `keep` (strictly increasing indices in
  /// [0, num_features), non-empty): gamma, beta and the running statistics are
  /// taken together (structured pruning, nn/structured.hpp); gradients become zero,
  /// the train-mode cache is dropped. Throws config_error for an invalid `keep`
  /// (then nothing changes).
  void keep_channels(std::span<const index_t> keep) {
    const index_t n = opt_.num_features;
    for (std::size_t i = 0; i < keep.size(); ++i) {
      if (keep[i] < 0 || keep[i] >= n || (i > 0 && keep[i] <= keep[i - 1])) {
        throw config_error("batch_norm: channel list entry " + std::to_string(i) + " is " + std::to_string(keep[i]) +
                           " (expected strictly increasing indices in [0, " + std::to_string(n) + "))");
      }
    }
    if (keep.empty()) throw config_error("batch_norm: cannot remove all " + std::to_string(n) + " channels");
    const auto take = [&](const tensor<float, 1>& v) {
      tensor<float, 1> r(static_cast<index_t>(keep.size()));
      for (std::size_t i = 0; i < keep.size(); ++i) r(static_cast<index_t>(i)) = v(keep[i]);
      return r;
    };
    gamma_ = take(gamma_);
    beta_ = take(beta_);
    running_mean_ = take(running_mean_);
    running_var_ = take(running_var_);
    opt_.num_features = static_cast<index_t>(keep.size());
    gamma_grad_ = tensor<float, 1>(opt_.num_features);
    beta_grad_ = tensor<float, 1>(opt_.num_features);
    cached_ = false;
  }

  /// gamma (scale), then beta (shift).
  template <class F>
  void for_each_parameter(F&& f) {
    f(parameter{gamma_.span(), gamma_grad_.span(), parameter_kind::scale});
    f(parameter{beta_.span(), beta_grad_.span(), parameter_kind::shift});
  }
  void zero_grad() noexcept {
    gamma_grad_.fill(0.0f);
    beta_grad_.fill(0.0f);
  }

 private:
  static const batch_norm_options& checked(const batch_norm_options& o) {
    detail::check_positive(o.num_features, "batch_norm", "num_features");
    if (!(o.eps > 0.0) || !(o.momentum >= 0.0 && o.momentum <= 1.0)) {
      throw config_error("batch_norm: eps " + std::to_string(o.eps) + ", momentum " +
                         std::to_string(o.momentum) + " (expected eps > 0, momentum in [0, 1])");
    }
    return o;
  }

  batch_norm_options opt_;
  tensor<float, 1> gamma_, beta_, gamma_grad_, beta_grad_, running_mean_, running_var_;
  std::vector<float> xhat_, mean_, invstd_;
  bool cached_ = false;
  mode mode_ = mode::train;
};

}  // namespace qprune::nn

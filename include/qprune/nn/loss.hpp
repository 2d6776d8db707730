// Softmax cross-entropy loss over [batch, classes] logits with integer class
// labels (PyTorch's nn.CrossEntropyLoss, reduction 'mean'), numerically stable
// through the max-shifted log-sum-exp, and `count_correct` for accuracy.
#pragma once

#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/nn/layer.hpp"

namespace qprune::nn {

namespace detail {
template <std::integral L>
void check_labels(index_t batch, index_t classes, std::span<const L> labels, std::string_view fn) {
  if (static_cast<index_t>(labels.size()) != batch) {
    throw shape_error(std::string(fn) + ": " + std::to_string(labels.size()) + " labels for " +
                      std::to_string(batch) + " rows of logits (expected one label per row)");
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    bool negative = false;
    if constexpr (std::is_signed_v<L>) negative = labels[i] < 0;
    if (negative || static_cast<index_t>(labels[i]) >= classes) {
      throw config_error(std::string(fn) + ": label " + std::to_string(i) + " is " +
                         std::to_string(labels[i]) + " (expected a class in [0, " +
                         std::to_string(classes) + "))");
    }
  }
}
}  // namespace detail

/// Softmax cross-entropy, mean over the batch:
///   L = (1/B) Σ_n [ m_n + log Σ_k exp(z[n,k] − m_n) − z[n, y_n] ],  m_n = max_k z[n,k]
/// (exp in float, sums in double; no overflow for any finite logits).
/// Gradient: dL/dz[n,k] = (softmax(z_n)_k − [k = y_n]) / B.
class softmax_cross_entropy {
 public:
  /// The mean loss; caches the softmax for backward(). Throws shape_error unless
  /// there is one label per row and at least one class, config_error for a label
  /// outside [0, classes).
  template <std::integral L>
  [[nodiscard]] float forward(tensor_view<const float, 2> logits, std::span<const L> labels) {
    const index_t b = logits.extent(0), k = logits.extent(1);
    if (k < 1 || b < 1) {
      throw shape_error("softmax_cross_entropy: logits of shape " +
                        detail::shape_string(logits.extents()) +
                        " (expected at least one row and one class)");
    }
    detail::check_labels(b, k, labels, "softmax_cross_entropy");
    prob_ = tensor<float, 2>(logits.extents());
    labels_.assign(labels.begin(), labels.end());
    double total = 0.0;
    for (index_t n = 0; n < b; ++n) {
      const float* z = logits.data_handle() + n * k;
      float* p = prob_.data() + n * k;
      float m = z[0];
      for (index_t j = 1; j < k; ++j) m = z[j] > m ? z[j] : m;
      double s = 0.0;
      for (index_t j = 0; j < k; ++j) {
        p[j] = std::exp(z[j] - m);
        s += p[j];
      }
      const auto inv = static_cast<float>(1.0 / s);
      for (index_t j = 0; j < k; ++j) p[j] *= inv;
      total += static_cast<double>(m) + std::log(s) - z[static_cast<index_t>(labels[n])];
    }
    cached_ = true;
    return static_cast<float>(total / static_cast<double>(b));
  }

  /// dL/dlogits [batch, classes]. Throws config_error without a forward.
  [[nodiscard]] tensor<float, 2> backward() const {
    detail::check_cached(cached_, "softmax_cross_entropy");
    tensor<float, 2> g = prob_;
    const index_t b = g.extent(0), k = g.extent(1);
    const float inv_b = 1.0f / static_cast<float>(b);
    for (index_t n = 0; n < b; ++n) {
      float* r = g.data() + n * k;
      r[labels_[static_cast<std::size_t>(n)]] -= 1.0f;
      for (index_t j = 0; j < k; ++j) r[j] *= inv_b;
    }
    return g;
  }

  /// The softmax of the last forward's logits.
  const tensor<float, 2>& probabilities() const noexcept { return prob_; }

 private:
  tensor<float, 2> prob_;
  std::vector<index_t> labels_;
  bool cached_ = false;
};

/// The number of rows whose largest logit (the first one on ties) is at the label's
/// index. Throws shape_error / config_error as softmax_cross_entropy::forward.
template <std::integral L>
[[nodiscard]] index_t count_correct(tensor_view<const float, 2> logits, std::span<const L> labels) {
  const index_t b = logits.extent(0), k = logits.extent(1);
  detail::check_labels(b, k, labels, "count_correct");
  index_t correct = 0;
  for (index_t n = 0; n < b; ++n) {
    const float* z = logits.data_handle() + n * k;
    index_t best = 0;
    for (index_t j = 1; j < k; ++j) best = z[j] > z[best] ? j : best;
    correct += best == static_cast<index_t>(labels[static_cast<std::size_t>(n)]) ? 1 : 0;
  }
  return correct;
}

}  // namespace qprune::nn

// Optimizers with PyTorch 1.13 semantics (torch/optim/sgd.py, adam.py, single-
// tensor path): SGD with momentum, dampening, Nesterov and L2 weight decay, and
// Adam with bias correction. They update any `parameterised` model and then
// re-apply its pruning masks, so pruned weights stay exactly zero.
// One deviation: optimizer state that would become subnormal is stored as 0
// (flush_subnormal below), as TensorFlow's CPU default flush-to-zero does.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/nn/layer.hpp"

namespace qprune::nn {

namespace detail {

/// Per-parameter optimizer state, keyed by the model's parameter order.
class optimizer_state {
 public:
  /// The state buffer `slot` of parameter `index`, created zeroed with `size` entries.
  /// Throws config_error when the parameter's size changed since the first step.
  std::vector<float>& get(std::size_t index, std::size_t slot, std::size_t size) {
    if (index >= bufs_.size()) bufs_.resize(index + 1);
    auto& p = bufs_[index];
    if (slot >= p.size()) p.resize(slot + 1);
    auto& b = p[slot];
    if (b.empty()) {
      b.assign(size, 0.0f);
    } else if (b.size() != size) {
      throw config_error("optimizer: parameter " + std::to_string(index) + " has " +
                         std::to_string(size) + " values but had " + std::to_string(b.size()) +
                         " at the previous step (expected the same model at every step)");
    }
    return b;
  }
  bool has(std::size_t index, std::size_t slot) const noexcept {
    return index < bufs_.size() && slot < bufs_[index].size() && !bufs_[index][slot].empty();
  }
  void clear() noexcept { bufs_.clear(); }

 private:
  std::vector<std::vector<std::vector<float>>> bufs_;
};

/// x, or +0 when |x| < FLT_MIN (a subnormal). A pruned weight's gradient is 0, so
/// its momentum / Adam moments decay geometrically (0.9^t) into the subnormal
/// range, where each operation takes a ~100-cycle microcode assist on x86: a
/// pruned model's epochs ran 4-5x slower. Flushing the stored state keeps every
/// later operation on normal numbers; it changes results only through state
/// values below 1.2e-38 (PyTorch keeps them; their effect on a weight is below
/// any float resolution of a normal-sized weight).
inline float flush_subnormal(float x) noexcept {
  return std::fabs(x) < std::numeric_limits<float>::min() ? 0.0f : x;
}

template <class M>
void after_step(M& model) {
  if constexpr (requires { model.apply_mask(); }) model.apply_mask();
}

inline void check_nonnegative(double v, const char* what) {
  if (!(v >= 0.0)) {
    throw config_error(std::string("optimizer: ") + what + " " + std::to_string(v) +
                       " (expected >= 0)");
  }
}

}  // namespace detail

/// Sets every gradient of `model` to zero (PyTorch's zero_grad(set_to_none=False)).
template <parameterised M>
void zero_grad(M& model) {
  model.for_each_parameter([](const parameter& p) {
    for (float& g : p.grad) g = 0.0f;
  });
}

/// SGD's hyper-parameters (PyTorch's names and defaults, lr required).
struct sgd_options {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// torch.optim.SGD, per element, scalars rounded to float as PyTorch does:
///   d = g + wd·p                          (if wd ≠ 0)
///   buf = d (first step),  buf = μ·buf + (1 − τ)·d (later)   (if μ ≠ 0)
///   d = d + μ·buf (Nesterov) or d = buf
///   p = p − lr·d
/// Every `a + α·b` (PyTorch's add_(b, alpha=α)) is one fused multiply-add, as in
/// PyTorch's vectorised CPU kernels; then model.apply_mask() when the model has one.
class sgd {
 public:
  /// Throws config_error for a negative lr, momentum or weight decay, or Nesterov
  /// without momentum or with dampening (PyTorch's ValueErrors).
  explicit sgd(const sgd_options& o) : o_(o) {
    detail::check_nonnegative(o.lr, "lr");
    detail::check_nonnegative(o.momentum, "momentum");
    detail::check_nonnegative(o.weight_decay, "weight_decay");
    if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0)) {
      throw config_error("sgd: Nesterov momentum requires a momentum and zero dampening");
    }
  }

  const sgd_options& options() const noexcept { return o_; }
  void set_lr(double lr) {
    detail::check_nonnegative(lr, "lr");
    o_.lr = lr;
  }

  /// One update of every parameter of `model` from its gradient.
  template <parameterised M>
  void step(M& model) {
    std::size_t index = 0;
    const auto lr = static_cast<float>(o_.lr), mu = static_cast<float>(o_.momentum);
    const auto wd = static_cast<float>(o_.weight_decay);
    const auto damp = static_cast<float>(1.0 - o_.dampening);
    model.for_each_parameter([&](const parameter& p) {
      const std::size_t n = p.value.size();
      const bool first = !state_.has(index, 0);
      std::vector<float>* buf = o_.momentum != 0.0 ? &state_.get(index, 0, n) : nullptr;
      for (std::size_t i = 0; i < n; ++i) {
        float d = p.grad[i];
        if (o_.weight_decay != 0.0) d = std::fma(p.value[i], wd, d);
        if (buf != nullptr) {
          float& b = (*buf)[i];
          b = detail::flush_subnormal(first ? d : std::fma(d, damp, b * mu));
          d = o_.nesterov ? std::fma(b, mu, d) : b;
        }
        p.value[i] = std::fma(d, -lr, p.value[i]);
      }
      ++index;
    });
    detail::after_step(model);
  }

 private:
  sgd_options o_;
  detail::optimizer_state state_;
};

/// Adam's hyper-parameters (PyTorch's names and defaults).
struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

/// torch.optim.Adam (amsgrad=False), per element, at step t = 1, 2, ...:
///   g = g + wd·p                                     (if wd ≠ 0)
///   m = β1·m + (1 − β1)·g,   v = β2·v + (1 − β2)·g²
///   p = p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
/// evaluated in PyTorch's order: m = fma(g, 1 − β1, β1·m) (add_ with alpha),
/// v = β2·v + ((1 − β2)·g)·g (addcmul_), p = p + ((−step)·m) / denom (addcdiv_).
/// The bias corrections are computed in double (Python floats) and rounded to
/// float once, as PyTorch passes them to its float kernels; then model.apply_mask().
class adam {
 public:
  /// Throws config_error for a negative lr, eps or weight decay, or betas outside [0, 1).
  explicit adam(const adam_options& o) : o_(o) {
    detail::check_nonnegative(o.lr, "lr");
    detail::check_nonnegative(o.eps, "eps");
    detail::check_nonnegative(o.weight_decay, "weight_decay");
    if (!(o.beta1 >= 0.0 && o.beta1 < 1.0 && o.beta2 >= 0.0 && o.beta2 < 1.0)) {
      throw config_error("adam: betas (" + std::to_string(o.beta1) + ", " +
                         std::to_string(o.beta2) + ") (expected each in [0, 1))");
    }
  }

  const adam_options& options() const noexcept { return o_; }
  void set_lr(double lr) {
    detail::check_nonnegative(lr, "lr");
    o_.lr = lr;
  }
  /// Steps taken so far (t of the last step).
  std::int64_t steps() const noexcept { return t_; }

  /// One update of every parameter of `model` from its gradient.
  template <parameterised M>
  void step(M& model) {
    ++t_;
    const double t = static_cast<double>(t_);
    const double bc1 = 1.0 - std::pow(o_.beta1, t);
    const double bc2 = 1.0 - std::pow(o_.beta2, t);
    const auto neg_step = static_cast<float>(-(o_.lr / bc1));
    const auto bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    const auto b1 = static_cast<float>(o_.beta1), b2 = static_cast<float>(o_.beta2);
    const auto omb1 = static_cast<float>(1.0 - o_.beta1), omb2 = static_cast<float>(1.0 - o_.beta2);
    const auto eps = static_cast<float>(o_.eps), wd = static_cast<float>(o_.weight_decay);
    std::size_t index = 0;
    model.for_each_parameter([&](const parameter& p) {
      const std::size_t n = p.value.size();
      float* m = state_.get(index, 0, n).data();
      float* v = state_.get(index, 1, n).data();
      float* w = p.value.data();
      const float* gr = p.grad.data();
      for (std::size_t i = 0; i < n; ++i) {
        float g = gr[i];
        if (o_.weight_decay != 0.0) g = std::fma(w[i], wd, g);
        m[i] = detail::flush_subnormal(std::fma(g, omb1, m[i] * b1));
        v[i] = detail::flush_subnormal(v[i] * b2 + (omb2 * g) * g);
        const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
        w[i] = w[i] + (neg_step * m[i]) / denom;
      }
      ++index;
    });
    detail::after_step(model);
  }

 private:
  adam_options o_;
  detail::optimizer_state state_;
  std::int64_t t_ = 0;
};

}  // namespace qprune::nn

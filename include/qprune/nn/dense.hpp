// `dense<WeightQ, Pruner, ActQ>`: a fully connected layer (PyTorch's nn.Linear)
// over [batch, in] float activations, composed from a weight quantizer, a pruner
// and an activation quantizer policy. It owns float master weights [out, in],
// the bias, the mask and the quantized-storage slot (masked_weight.hpp); forward
// and backward are Eigen GEMMs on zero-copy maps.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "qprune/core/eigen.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/layer.hpp"
#include "qprune/nn/masked_weight.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/schedule.hpp"
#include "qprune/quant/concepts.hpp"

namespace qprune::nn {

/// The shape of a dense layer: y = x W^T + b with W [out_features, in_features].
struct dense_options {
  index_t in_features = 0;
  index_t out_features = 0;
  bool use_bias = true;  ///< false: no bias (b = 0, not trained)
};

/// A fully connected layer: y[n, o] = b[o] + sum_i x[n, i] * w_eff[o, i], with
/// w_eff = mask ⊙ w (masked_weight::effective). Input [batch, in_features],
/// output [batch, out_features], float32, Eigen's GEMM (float accumulation).
///
/// Backward (grad_out G [batch, out]):
///   dW += G^T X (then masked: pruned entries stay exactly 0), db += sum_n G[n, :],
///   dX  = G w_eff.
/// The default policies make it a plain float layer; ActQ is stored for QAT and
/// convert() and does not change the float forward.
template <quant::weight_quantizer WeightQ = quant::none, prune::pruner Pruner = prune::none,
          quant::activation_quantizer ActQ = quant::none>
class dense {
 public:
  using weight_quantizer_type = WeightQ;
  using pruner_type = Pruner;
  using activation_quantizer_type = ActQ;
  using mask_type = typename Pruner::mask_type;
  using input_type = tensor<float, 2>;
  using output_type = tensor<float, 2>;

  /// A layer with PyTorch's default initialisation (init.hpp: weights then bias,
  /// U(-1/sqrt(in), 1/sqrt(in))) drawn from `rng`; then the pruner computes the
  /// mask from the initial weights and it is applied (prune::none: nothing).
  /// Throws config_error for in_features or out_features < 1.
  dense(const dense_options& opt, init_rng& rng, Pruner pruner = {}, WeightQ quantizer = {},
        ActQ act = {})
      : opt_(checked(opt)),
        w_(opt.out_features, opt.in_features, std::move(pruner), std::move(quantizer)),
        bias_(opt.use_bias ? opt.out_features : 0),
        bias_grad_(opt.use_bias ? opt.out_features : 0),
        act_(std::move(act)) {
    const float b = default_init_bound(opt.in_features);
    uniform_fill(w_.value().span(), b, rng);
    uniform_fill(bias_.span(), b, rng);
    w_.update_mask();
  }

  const dense_options& options() const noexcept { return opt_; }
  index_t in_features() const noexcept { return opt_.in_features; }
  index_t out_features() const noexcept { return opt_.out_features; }

  /// The master weights [out, in] and their gradient.
  tensor<float, 2>& weight() noexcept { return w_.value(); }
  const tensor<float, 2>& weight() const noexcept { return w_.value(); }
  const tensor<float, 2>& weight_grad() const noexcept { return w_.grad(); }
  /// The bias [out] (empty without bias) and its gradient.
  tensor<float, 1>& bias() noexcept { return bias_; }
  const tensor<float, 1>& bias() const noexcept { return bias_; }
  const tensor<float, 1>& bias_grad() const noexcept { return bias_grad_; }
  /// Weights, gradient, mask, policies and storage slot (masked_weight.hpp).
  masked_weight<WeightQ, Pruner>& weights() noexcept { return w_; }
  const masked_weight<WeightQ, Pruner>& weights() const noexcept { return w_; }
  const mask_type& mask() const noexcept { return w_.mask(); }
  Pruner& pruner() noexcept { return w_.pruner(); }
  ActQ& activation_quantizer() noexcept { return act_; }
  const ActQ& activation_quantizer() const noexcept { return act_; }

  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) {
      input_ = tensor<float, 2>();
      cached_ = false;
    }
  }
  mode current_mode() const noexcept { return mode_; }

  /// y = x w_eff^T + b. Caches x in train mode.
  /// Throws shape_error unless x is [batch, in_features].
  [[nodiscard]] tensor<float, 2> forward(tensor_view<const float, 2> x_in) {
    detail::check_extent(x_in.extents(), 1, opt_.in_features, "dense", "input");
    const tensor_view<const float, 2> x = detail::quantize_input(act_, mode_, x_in, xq_, raw_);
    const index_t n = x.extent(0);
    tensor<float, 2> y(n, opt_.out_features);
    auto ym = as_eigen(y.view());
    ym.noalias() = as_eigen(x) * as_eigen(w_.effective()).transpose();
    if (opt_.use_bias) ym.rowwise() += as_eigen(bias_.cview()).transpose();
    if (mode_ == mode::train) {
      input_ = tensor<float, 2>(x.extents());
      std::copy_n(x.data_handle(), x.size(), input_.data());
      cached_ = true;
    }
    return y;
  }

  /// Accumulates dW and db from grad_out and returns dX = grad_out w_eff.
  /// Throws config_error without a train-mode forward, shape_error unless
  /// grad_out is [batch, out_features] with the forward's batch.
  [[nodiscard]] tensor<float, 2> backward(tensor_view<const float, 2> grad_out) {
    accumulate(grad_out);
    tensor<float, 2> dx(grad_out.extent(0), opt_.in_features);
    as_eigen(dx.view()).noalias() = as_eigen(grad_out) * as_eigen(w_.effective());
    if constexpr (detail::fake_quant_activation<ActQ>) {
      if (raw_.size() == dx.size()) act_.fake_quantize_backward(raw_.cview(), dx.view());
    }
    return dx;
  }

  /// backward without the input gradient (for a network's first layer).
  void backward_params(tensor_view<const float, 2> grad_out) { accumulate(grad_out); }

  /// Calls f(parameter) for the weights, then the bias (when present).
  template <class F>
  void for_each_parameter(F&& f) {
    f(w_.as_parameter());
    if (opt_.use_bias) f(parameter{bias_.span(), bias_grad_.span(), parameter_kind::bias});
  }
  void zero_grad() noexcept {
    w_.zero_grad();
    bias_grad_.fill(0.0f);
  }
  /// Replaces the weights [out, in] and the bias ([out], or empty without bias):
  /// the layer takes their shape (structured pruning, nn/structured.hpp). Gradients
  /// become zero, the mask is recomputed by the pruner (masked_weight::replace),
  /// the train-mode cache is dropped; an optimizer that has stepped on the old
  /// shapes must be re-created. Throws config_error for an empty weight, shape_error
  /// for a bias of the wrong size (then nothing changes).
  void replace_parameters(tensor<float, 2> weight, tensor<float, 1> bias) {
    const index_t out = weight.extent(0), in = weight.extent(1);
    detail::check_positive(in, "dense", "in_features");
    detail::check_positive(out, "dense", "out_features");
    detail::check_shape(bias.extents(), extents<1>(opt_.use_bias ? out : 0), "dense", "replacement bias");
    w_.replace(std::move(weight));
    opt_.in_features = in;
    opt_.out_features = out;
    bias_ = std::move(bias);
    bias_grad_ = tensor<float, 1>(bias_.extents());
    input_ = tensor<float, 2>();
    cached_ = false;
  }

  /// w ← mask ⊙ w.
  void apply_mask() { w_.apply_mask(); }
  /// mask ← pruner.compute_mask(w), w ← mask ⊙ w.
  void update_mask() { w_.update_mask(); }
  /// The pruning schedule's conditional mask update (masked_weight::update_mask).
  template <prune::pruning_schedule S>
    requires prune::sparsity_pruner<Pruner>
  bool update_mask(const S& schedule, std::int64_t step) {
    return w_.update_mask(schedule, step);
  }

 private:
  static const dense_options& checked(const dense_options& o) {
    detail::check_positive(o.in_features, "dense", "in_features");
    detail::check_positive(o.out_features, "dense", "out_features");
    return o;
  }

  void accumulate(tensor_view<const float, 2> g) {
    detail::check_cached(cached_ && mode_ == mode::train, "dense");
    detail::check_shape(g.extents(), extents<2>(input_.extent(0), opt_.out_features), "dense",
                        "grad_out");
    auto gm = as_eigen(g);
    as_eigen(w_.grad().view()).noalias() += gm.transpose() * as_eigen(input_.cview());
    if (opt_.use_bias) as_eigen(bias_grad_.view()).noalias() += gm.colwise().sum().transpose();
    w_.finish_backward();
  }

  dense_options opt_;
  masked_weight<WeightQ, Pruner> w_;
  tensor<float, 1> bias_;
  tensor<float, 1> bias_grad_;
  [[no_unique_address]] ActQ act_;
  tensor<float, 2> input_;
  tensor<float, 2> xq_, raw_;  // QAT: fake-quantized input, raw input (train mode)
  bool cached_ = false;
  mode mode_ = mode::train;
};

}  // namespace qprune::nn

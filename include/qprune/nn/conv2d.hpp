// `conv2d<WeightQ, Pruner, ActQ>`: a 2-D convolution (PyTorch's nn.Conv2d) over
// NHWC float activations with OHWI filters [out, kh, kw, in/groups]: stride,
// valid / same / explicit padding, dilation, groups (depthwise included). Forward
// is im2col (kernels/im2col.hpp) + an Eigen GEMM per group; backward is two GEMMs
// per group and col2im. Owns master weights, bias, mask and storage slot
// (masked_weight.hpp), like dense<>.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <variant>

#include "qprune/core/eigen.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/layer.hpp"
#include "qprune/nn/masked_weight.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/schedule.hpp"
#include "qprune/quant/concepts.hpp"

namespace qprune::nn {

/// Explicit zero padding in pixels on each side (PyTorch's padding=(ph, pw) is
/// {ph, ph, pw, pw}).
struct explicit_padding {
  index_t top = 0, bottom = 0, left = 0, right = 0;
};
/// The same padding p on all four sides (PyTorch's padding=p).
[[nodiscard]] constexpr explicit_padding pad(index_t p) noexcept { return {p, p, p, p}; }

/// valid (none), same (TF/PyTorch 'same': out = ceil(in / stride), the odd extra
/// pixel at the bottom/right; kernels::set_padding), or explicit pads.
using conv_padding = std::variant<kernels::padding_mode, explicit_padding>;

/// A conv2d's configuration (PyTorch's Conv2d arguments; kernel 1x1 and valid
/// padding by default).
struct conv2d_options {
  index_t in_channels = 0;
  index_t out_channels = 0;
  index_t kernel_h = 1, kernel_w = 1;
  index_t stride_h = 1, stride_w = 1;
  conv_padding padding = kernels::padding_mode::valid;
  index_t dilation_h = 1, dilation_w = 1;
  index_t groups = 1;    ///< in_channels and out_channels must be multiples; depthwise: = in_channels
  bool use_bias = true;  ///< false: no bias (b = 0, not trained)
};

/// NHWC 2-D convolution (cross-correlation, as every framework computes it):
///   y[n, oh, ow, o] = b[o] + sum_{kh, kw, c} x[n, ih, iw, g * cin_g + c] * w_eff[o, kh, kw, c]
///   ih = oh * stride_h - pad_top + kh * dilation_h,  iw likewise;  g = o / (out / groups),
/// taps outside the input read 0; w_eff = mask ⊙ w, the mask over the [out, kh*kw*in/groups]
/// view of the filters. Float32 with Eigen's GEMM (float accumulation).
///
/// Backward, per group (C = the im2col matrix [pixels, patch], G = grad_out [pixels, out]):
///   dW_g += G_g^T C (then masked), db += sum over pixels of G, dX = col2im(G_g W_g).
/// Both passes lower 256 output pixels at a time into a reused scratch block, so
/// memory stays O(256 * patch) beyond the cached input.
template <quant::weight_quantizer WeightQ = quant::none, prune::pruner Pruner = prune::none,
          quant::activation_quantizer ActQ = quant::none>
class conv2d {
 public:
  using weight_quantizer_type = WeightQ;
  using pruner_type = Pruner;
  using activation_quantizer_type = ActQ;
  using mask_type = typename Pruner::mask_type;
  using input_type = tensor<float, 4>;
  using output_type = tensor<float, 4>;

  /// PyTorch's default initialisation with fan_in = kernel_h * kernel_w * in/groups
  /// (init.hpp), weights (OHWI order) then bias, from `rng`; then the pruner's mask.
  /// Throws config_error for a non-positive size, stride, dilation or group count,
  /// groups not dividing both channel counts, or a negative explicit pad.
  conv2d(const conv2d_options& opt, init_rng& rng, Pruner pruner = {}, WeightQ quantizer = {},
         ActQ act = {})
      : opt_(checked(opt)),
        w_(opt.out_channels, opt.kernel_h * opt.kernel_w * (opt.in_channels / opt.groups),
           std::move(pruner), std::move(quantizer)),
        bias_(opt.use_bias ? opt.out_channels : 0),
        bias_grad_(opt.use_bias ? opt.out_channels : 0),
        act_(std::move(act)) {
    const float b = default_init_bound(w_.cols());
    uniform_fill(w_.value().span(), b, rng);
    uniform_fill(bias_.span(), b, rng);
    w_.update_mask();
  }

  const conv2d_options& options() const noexcept { return opt_; }

  /// The master filters as OHWI [out, kh, kw, in/groups] (the same memory as weight()).
  tensor_view<float, 4> weight_ohwi() noexcept {
    return {w_.value().data(), opt_.out_channels, opt_.kernel_h, opt_.kernel_w,
            opt_.in_channels / opt_.groups};
  }
  /// The master filters as [out, kh*kw*in/groups], the matrix the mask covers.
  tensor<float, 2>& weight() noexcept { return w_.value(); }
  const tensor<float, 2>& weight() const noexcept { return w_.value(); }
  const tensor<float, 2>& weight_grad() const noexcept { return w_.grad(); }
  tensor<float, 1>& bias() noexcept { return bias_; }
  const tensor<float, 1>& bias() const noexcept { return bias_; }
  const tensor<float, 1>& bias_grad() const noexcept { return bias_grad_; }
  masked_weight<WeightQ, Pruner>& weights() noexcept { return w_; }
  const masked_weight<WeightQ, Pruner>& weights() const noexcept { return w_; }
  const mask_type& mask() const noexcept { return w_.mask(); }
  Pruner& pruner() noexcept { return w_.pruner(); }
  ActQ& activation_quantizer() noexcept { return act_; }
  const ActQ& activation_quantizer() const noexcept { return act_; }

  void set_mode(mode m) noexcept {
    mode_ = m;
    if (m == mode::eval) {
      cached_ = false;
      input_ = tensor<float, 4>();
    }
  }
  mode current_mode() const noexcept { return mode_; }

  /// The geometry of a forward on an input [batch, h, w, in_channels] (pads resolved).
  /// Throws shape_error / config_error as kernels::conv2d_geometry::validate, and
  /// shape_error when the input has another channel count.
  [[nodiscard]] kernels::conv2d_geometry geometry(const extents<4>& in) const {
    detail::check_extent(in, 3, opt_.in_channels, "conv2d", "input");
    kernels::conv2d_geometry g;
    g.batch = in.extent(0);
    g.in_h = in.extent(1);
    g.in_w = in.extent(2);
    g.in_c = opt_.in_channels;
    g.out_c = opt_.out_channels;
    g.kernel_h = opt_.kernel_h;
    g.kernel_w = opt_.kernel_w;
    g.stride_h = opt_.stride_h;
    g.stride_w = opt_.stride_w;
    g.dilation_h = opt_.dilation_h;
    g.dilation_w = opt_.dilation_w;
    g.groups = opt_.groups;
    if (const auto* m = std::get_if<kernels::padding_mode>(&opt_.padding)) {
      kernels::set_padding(g, *m);
    } else {
      const auto& p = std::get<explicit_padding>(opt_.padding);
      g.pad_top = p.top;
      g.pad_bottom = p.bottom;
      g.pad_left = p.left;
      g.pad_right = p.right;
    }
    g.validate();
    return g;
  }

  /// y [batch, out_h, out_w, out_channels]. Caches a copy of x in train mode.
  /// Throws as geometry().
  [[nodiscard]] tensor<float, 4> forward(tensor_view<const float, 4> x_in) {
    const kernels::conv2d_geometry g = geometry(x_in.extents());
    const tensor_view<const float, 4> x = detail::quantize_input(act_, mode_, x_in, xq_, raw_);
    const index_t m = g.out_pixels(), k = g.patch(), goc = g.group_out_c();
    tensor<float, 4> y(g.batch, g.out_h(), g.out_w(), g.out_c);
    auto ym = as_eigen(tensor_view<float, 2>(y.data(), m, g.out_c));
    const auto wm = as_eigen(w_.effective());
    float* cols = block_buffer(m, k);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      for (index_t r0 = 0; r0 < m; r0 += kBlock) {
        const index_t rows = std::min(kBlock, m - r0);
        kernels::im2col(g, x.data_handle(), grp, r0, r0 + rows, 0.0f, cols, k);
        ym.block(r0, grp * goc, rows, goc).noalias() =
            as_eigen(tensor_view<const float, 2>(cols, rows, k)) *
            wm.middleRows(grp * goc, goc).transpose();
      }
    }
    if (opt_.use_bias) ym.rowwise() += as_eigen(bias_.cview()).transpose();
    geom_ = g;
    cached_ = mode_ == mode::train;
    if (cached_) {
      if (!(input_.extents() == x.extents())) input_ = tensor<float, 4>(x.extents());
      std::copy_n(x.data_handle(), x.size(), input_.data());
    }
    return y;
  }

  /// Accumulates dW, db and returns dX [batch, h, w, in_channels].
  /// Throws config_error without a train-mode forward, shape_error unless grad_out
  /// has the forward's output shape.
  [[nodiscard]] tensor<float, 4> backward(tensor_view<const float, 4> grad_out) {
    accumulate(grad_out);
    const kernels::conv2d_geometry& g = geom_;
    const index_t m = g.out_pixels(), k = g.patch(), goc = g.group_out_c();
    tensor<float, 4> dx(g.batch, g.in_h, g.in_w, g.in_c);
    const auto gm = as_eigen(tensor_view<const float, 2>(grad_out.data_handle(), m, g.out_c));
    const auto wm = as_eigen(w_.effective());
    float* dcols = block_buffer(m, k);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      for (index_t r0 = 0; r0 < m; r0 += kBlock) {
        const index_t rows = std::min(kBlock, m - r0);
        as_eigen(tensor_view<float, 2>(dcols, rows, k)).noalias() =
            gm.block(r0, grp * goc, rows, goc) * wm.middleRows(grp * goc, goc);
        kernels::col2im(g, dcols, k, grp, r0, r0 + rows, dx.data());
      }
    }
    if constexpr (detail::fake_quant_activation<ActQ>) {
      if (raw_.size() == dx.size()) act_.fake_quantize_backward(raw_.cview(), dx.view());
    }
    return dx;
  }

  /// backward without the input gradient (for a network's first layer).
  void backward_params(tensor_view<const float, 4> grad_out) { accumulate(grad_out); }

  /// Calls f(parameter) for the filters, then the bias (when present).
  template <class F>
  void for_each_parameter(F&& f) {
    f(w_.as_parameter());
    if (opt_.use_bias) f(parameter{bias_.span(), bias_grad_.span(), parameter_kind::bias});
  }
  void zero_grad() noexcept {
    w_.zero_grad();
    bias_grad_.fill(0.0f);
  }
  /// Replaces the filters, viewed as [out, kh*kw*in/groups], and the bias ([out],
  /// or empty without bias), with in_channels input channels: the layer takes the
  /// new channel counts (structured pruning, nn/structured.hpp); kernel, stride,
  /// padding, dilation and groups stay. Gradients become zero, the mask is
  /// recomputed by the pruner (masked_weight::replace), the train-mode cache is
  /// dropped; an optimizer that has stepped on the old shapes must be re-created.
  /// Throws config_error for a non-positive channel count or groups not dividing
  /// the new counts, shape_error for filters or a bias of the wrong size (then
  /// nothing changes).
  void replace_parameters(index_t in_channels, tensor<float, 2> weight, tensor<float, 1> bias) {
    conv2d_options o = opt_;
    o.in_channels = in_channels;
    o.out_channels = weight.extent(0);
    (void)checked(o);
    detail::check_shape(weight.extents(), extents<2>(o.out_channels, o.kernel_h * o.kernel_w * (in_channels / o.groups)),
                        "conv2d", "replacement filters");
    detail::check_shape(bias.extents(), extents<1>(o.use_bias ? o.out_channels : 0), "conv2d", "replacement bias");
    w_.replace(std::move(weight));
    opt_ = o;
    bias_ = std::move(bias);
    bias_grad_ = tensor<float, 1>(bias_.extents());
    input_ = tensor<float, 4>();
    cached_ = false;
  }
  void apply_mask() { w_.apply_mask(); }
  void update_mask() { w_.update_mask(); }
  template <prune::pruning_schedule S>
    requires prune::sparsity_pruner<Pruner>
  bool update_mask(const S& schedule, std::int64_t step) {
    return w_.update_mask(schedule, step);
  }

 private:
  static const conv2d_options& checked(const conv2d_options& o) {
    detail::check_positive(o.in_channels, "conv2d", "in_channels");
    detail::check_positive(o.out_channels, "conv2d", "out_channels");
    detail::check_positive(o.kernel_h, "conv2d", "kernel_h");
    detail::check_positive(o.kernel_w, "conv2d", "kernel_w");
    detail::check_positive(o.stride_h, "conv2d", "stride_h");
    detail::check_positive(o.stride_w, "conv2d", "stride_w");
    detail::check_positive(o.dilation_h, "conv2d", "dilation_h");
    detail::check_positive(o.dilation_w, "conv2d", "dilation_w");
    detail::check_positive(o.groups, "conv2d", "groups");
    if (o.in_channels % o.groups != 0 || o.out_channels % o.groups != 0) {
      throw config_error("conv2d: groups = " + std::to_string(o.groups) +
                         " does not divide in_channels = " + std::to_string(o.in_channels) +
                         " and out_channels = " + std::to_string(o.out_channels) +
                         " (expected a common divisor)");
    }
    if (const auto* p = std::get_if<explicit_padding>(&o.padding)) {
      if (p->top < 0 || p->bottom < 0 || p->left < 0 || p->right < 0) {
        throw config_error("conv2d: explicit padding {" + std::to_string(p->top) + ", " +
                           std::to_string(p->bottom) + ", " + std::to_string(p->left) + ", " +
                           std::to_string(p->right) + "} has a negative pad (expected >= 0)");
      }
    }
    return o;
  }

  // dW_g += G_g^T C_g over blocks of output pixels, re-lowering the cached input
  // block by block (cheaper than keeping the [pixels, patch] matrix in memory).
  void accumulate(tensor_view<const float, 4> grad_out) {
    detail::check_cached(cached_ && mode_ == mode::train, "conv2d");
    const kernels::conv2d_geometry& g = geom_;
    detail::check_shape(grad_out.extents(), extents<4>(g.batch, g.out_h(), g.out_w(), g.out_c),
                        "conv2d", "grad_out");
    const index_t m = g.out_pixels(), k = g.patch(), goc = g.group_out_c();
    const auto gm = as_eigen(tensor_view<const float, 2>(grad_out.data_handle(), m, g.out_c));
    auto dwm = as_eigen(w_.grad().view());
    float* cols = block_buffer(m, k);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      for (index_t r0 = 0; r0 < m; r0 += kBlock) {
        const index_t rows = std::min(kBlock, m - r0);
        kernels::im2col(g, input_.data(), grp, r0, r0 + rows, 0.0f, cols, k);
        dwm.middleRows(grp * goc, goc).noalias() +=
            gm.block(r0, grp * goc, rows, goc).transpose() *
            as_eigen(tensor_view<const float, 2>(cols, rows, k));
      }
    }
    if (opt_.use_bias) as_eigen(bias_grad_.view()).noalias() += gm.colwise().sum().transpose();
    w_.finish_backward();
  }

  /// A [min(pixels, kBlock), patch] scratch matrix, reused across calls.
  float* block_buffer(index_t m, index_t k) {
    const extents<2> e(std::min(m, kBlock), k);
    if (!(block_.extents() == e)) block_ = tensor<float, 2>(e);
    return block_.data();
  }

  static constexpr index_t kBlock = 256;  // output pixels per im2col / col2im block

  conv2d_options opt_;
  masked_weight<WeightQ, Pruner> w_;
  tensor<float, 1> bias_;
  tensor<float, 1> bias_grad_;
  [[no_unique_address]] ActQ act_;
  tensor<float, 4> input_;  // the last train-mode input
  tensor<float, 4> xq_, raw_;  // QAT: fake-quantized input, raw input (train mode)

  tensor<float, 2> block_;  // im2col / col2im scratch, [kBlock, patch]
  kernels::conv2d_geometry geom_{};
  bool cached_ = false;
  mode mode_ = mode::train;
};

}  // namespace qprune::nn

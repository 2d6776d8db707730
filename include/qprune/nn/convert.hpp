// convert(): a trained float or QAT `sequential<...>` becomes a deployed_model
// (nn/deployed.hpp) with its weights in the chosen format: fp32, fp16, bf16,
// static int8 (per-channel weights, per-tensor activations calibrated on user
// data or taken from QAT observers, int32 bias, requantization, fused ReLU),
// dynamic int8, int4 groups, or sparse (CSR / packed N:M). Batch norms that
// follow a Dense or Conv are folded into it; a ReLU that follows is fused.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/nn/activations.hpp"
#include "qprune/nn/batch_norm.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/deployed.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/layer.hpp"
#include "qprune/nn/pooling.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/nn/traits.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/int8.hpp"
#include "qprune/quant/observers.hpp"

namespace qprune::nn {

/// The deployed form of the weights.
enum class weight_format {
  fp32,          ///< float32 (the reference)
  fp16,          ///< IEEE half, Dense on the fp16-weight GEMM; convs compute in float from fp16 weights
  bf16,          ///< bfloat16, likewise
  int8_static,   ///< int8 weights per channel, uint8 activations per tensor from calibration
  int8_dynamic,  ///< int8 weights per channel, activations quantized per call (Dense; convs stay fp32)
  int4,          ///< 4-bit weights in groups (Dense; convs stay fp32)
};

/// How static int8 activation ranges are chosen from the calibration data.
enum class calibration_method { minmax, histogram, entropy, percentile };

/// Sparse storage for pruned Dense weights (convs stay dense).
enum class sparse_layout { none, csr, nm };

/// What convert() builds.
struct convert_options {
  weight_format format = weight_format::fp32;
  /// The model's input as NHWC height, width, channels (an MLP on 784 features:
  /// 1, 1, 784; a CNN on 28x28 grey images: 28, 28, 1).
  index_t input_height = 1, input_width = 1, input_channels = 0;
  /// int8_static: the observer run over the calibration samples (ignored for
  /// layers whose activation policy is a calibrated quant::static_int8).
  calibration_method calibration = calibration_method::minmax;
  double percentile = 99.99;  ///< calibration_method::percentile
  /// int4: group size along the input axis and scheme (a layer whose weight
  /// policy is quant::int4_grouped deploys its own groups instead).
  index_t int4_group_size = 32;
  quant::int4_scheme int4_scheme = quant::int4_scheme::symmetric;
  /// Sparse Dense weights: values in the format's type (fp32, fp16 as half, the
  /// int8 formats as int8 with per-row scales and float activations); N:M needs
  /// an N:M-pruned model (n_of_m, m).
  sparse_layout sparse = sparse_layout::none;
  int nm_n = 2, nm_m = 4;
};

namespace detail::convert {

/// The activation observer of one calibration point.
class calibrator {
 public:
  explicit calibrator(const convert_options& o) {
    switch (o.calibration) {
      case calibration_method::minmax: obs_ = quant::minmax_observer{}; break;
      case calibration_method::histogram: obs_ = quant::histogram_observer{}; break;
      case calibration_method::entropy: obs_ = quant::onnxruntime::entropy_calibrator{}; break;
      case calibration_method::percentile:
        obs_ = quant::onnxruntime::percentile_calibrator{2048, o.percentile,
                                                          quant::onnxruntime::percentile_mode::asymmetric};
        break;
    }
  }
  void observe(std::span<const float> x) {
    std::visit([&](auto& o) { o.observe(x); }, obs_);
  }
  /// uint8 affine parameters for the observed range.
  [[nodiscard]] quant::affine_params params() const {
    const quant::qrange r = quant::full_range(quant::dtype::uint8);
    return std::visit(
        [&](const auto& o) -> quant::affine_params {
          if constexpr (requires { o.params(r, quant::scheme::affine); }) {
            return o.params(r, quant::scheme::affine);
          } else {
            const quant::value_range v = o.compute_range();
            return quant::choose_affine_params(v.lo, v.hi, r);
          }
        },
        obs_);
  }

 private:
  std::variant<quant::minmax_observer, quant::histogram_observer, quant::onnxruntime::entropy_calibrator,
               quant::onnxruntime::percentile_calibrator>
      obs_;
};

/// A Dense or Conv's weights ready to deploy: the weights its forward multiplies
/// by (masked, fake-quantized when the policy has a fake-quant), batch-norm folded.
struct folded {
  tensor<float, 2> w;
  std::vector<float> bias;
  /// The batch-norm factor k folded into each row (empty: no batch norm follows).
  std::vector<double> row_factor;
};

/// Fills the layer's storage slot with its weight policy's quantize() of the
/// masked master weights (nothing for quant::none), then returns its effective
/// weights and bias.
template <class L>
folded fold(L& layer) {
  auto& mw = layer.weights();
  mw.apply_mask();  // the master weights normally hold mask ⊙ w already; applying is idempotent
  if constexpr (!std::same_as<typename std::remove_cvref_t<L>::weight_quantizer_type, quant::none>) {
    mw.storage() = mw.quantizer().quantize(mw.value().cview());
  }
  const tensor_view<const float, 2> eff = mw.effective();
  folded f{tensor<float, 2>(eff.extents()), {}, {}};
  std::copy_n(eff.data_handle(), eff.size(), f.w.data());
  const index_t out = f.w.extent(0);
  f.bias.assign(static_cast<std::size_t>(out), 0.0f);
  for (index_t o = 0; o < layer.bias().size(); ++o) f.bias[static_cast<std::size_t>(o)] = layer.bias()(o);
  return f;
}

/// Channel c of an eval-mode batch norm as y = k x + (beta - k mean),
/// k = gamma / sqrt(var + eps) (double precision).
inline double bn_factor(batch_norm& bn, index_t c) {
  return static_cast<double>(bn.gamma()(c)) / std::sqrt(static_cast<double>(bn.running_var()(c)) + bn.options().eps);
}

/// The stride of a pooling window (0 in the options means the kernel size).
inline index_t pool_stride(const pool2d_options& p) { return p.stride_h == 0 ? p.kernel_h : p.stride_h; }

/// Folds an eval-mode batch norm into the preceding layer's weights and bias:
///   k = gamma / sqrt(var + eps);  w' = k w (per output row);  b' = k (b - mean) + beta.
inline void fold_batch_norm(folded& f, batch_norm& bn) {
  const index_t out = f.w.extent(0);
  if (bn.options().num_features != out) {
    throw shape_error("batch_norm over " + std::to_string(bn.options().num_features) +
                      " channels follows a layer with " + std::to_string(out) + " outputs");
  }
  f.row_factor.resize(static_cast<std::size_t>(out));
  for (index_t o = 0; o < out; ++o) {
    const double k = bn_factor(bn, o);
    f.row_factor[static_cast<std::size_t>(o)] = k;
    for (index_t j = 0; j < f.w.extent(1); ++j) f.w(o, j) = static_cast<float>(k * static_cast<double>(f.w(o, j)));
    auto& b = f.bias[static_cast<std::size_t>(o)];
    b = static_cast<float>(k * (static_cast<double>(b) - static_cast<double>(bn.running_mean()(o))) +
                           static_cast<double>(bn.beta()(o)));
  }
}

/// The int8 codes and per-row scales static int8 deploys for `layer`. A layer
/// whose weight policy stores quant::int8_weights (quant::int8 per channel or per
/// tensor, or a user's policy) deploys that policy's own codes, the ones its
/// fake-quant trained with; a folded batch norm's factor k multiplies the row's
/// scale (|k|, the codes negated for k < 0, -128 becoming 127; a row with k = 0
/// becomes zeros).
/// Any other layer's effective weights are quantized per channel by quant::int8.
template <class L>
quant::int8_weights int8_codes(L& layer, const folded& f) {
  if constexpr (std::same_as<typename std::remove_cvref_t<L>::weight_quantizer_type::storage_type, quant::int8_weights>) {
    quant::int8_weights q = *layer.weights().storage();  // filled by fold()
    for (std::size_t r = 0; r < f.row_factor.size(); ++r) {
      const double k = f.row_factor[r];
      float& scale = q.params.scales[r];
      const auto row = static_cast<index_t>(r);
      if (k == 0.0) {
        for (index_t j = 0; j < q.codes.extent(1); ++j) q.codes(row, j) = 0;
        scale = 1.0f;
        continue;
      }
      scale = static_cast<float>(static_cast<double>(scale) * std::fabs(k));
      if (k < 0.0) {
        for (index_t j = 0; j < q.codes.extent(1); ++j) q.codes(row, j) = static_cast<std::int8_t>(std::min(127, -q.codes(row, j)));
      }
    }
    return q;
  } else {
    return quant::int8{}.quantize(f.w.cview());
  }
}

/// The 4-bit weights int4 deploys for `layer`: a layer whose weight policy stores
/// quant::packed_int4_matrix (quant::int4_grouped) deploys its own groups and codes
/// when no batch norm was folded into it; otherwise its effective weights are
/// grouped as `o` says.
template <class L>
quant::packed_int4_matrix int4_codes(L& layer, const folded& f, const convert_options& o) {
  if constexpr (std::same_as<typename std::remove_cvref_t<L>::weight_quantizer_type::storage_type, quant::packed_int4_matrix>) {
    if (f.row_factor.empty()) return *layer.weights().storage();  // filled by fold()
  }
  return quant::quantize_int4(f.w.cview(), o.int4_group_size, o.int4_scheme);
}

/// State carried through the layer walk.
struct walk {
  const convert_options& opt;
  deployed_model& model;
  index_t h, w, c;  // current activation shape (NHWC; a Dense activation is 1 x 1 x features)
  bool spatial;     // whether the float model's activation here is 4-D (conv side) or 2-D
  /// Calibration samples at the current point, [samples, h * w * c], when given.
  std::optional<tensor<float, 2>> calib;
};

template <class L>
quant::affine_params input_params(L& layer, walk& s) {
  using A = typename std::remove_cvref_t<L>::activation_quantizer_type;
  if constexpr (std::same_as<A, quant::static_int8>) {
    if (layer.activation_quantizer().calibrated()) return layer.activation_quantizer().params();
  }
  if (!s.calib) {
    throw config_error("static int8 conversion needs calibration samples (or QAT layers whose "
                       "activation quantizer has observed data)");
  }
  calibrator cal(s.opt);
  cal.observe(std::span<const float>(s.calib->data(), static_cast<std::size_t>(s.calib->size())));
  return cal.params();
}

/// y as [samples, features]; records y's NHWC shape in the walk.
template <class T, std::size_t R>
tensor<float, 2> flat(const tensor<T, R>& y, walk& s) {
  const index_t n = y.extent(0);
  if constexpr (R == 4) {
    s.h = y.extent(1);
    s.w = y.extent(2);
    s.c = y.extent(3);
  } else {
    s.h = 1;
    s.w = 1;
    s.c = y.extent(1);
  }
  return tensor<float, 2>(extents<2>(n, n == 0 ? 0 : y.size() / n),
                          std::span<const float>(y.data(), static_cast<std::size_t>(y.size())));
}

/// Runs float layer `layer` (eval mode) on the calibration samples and updates
/// the walk's shape bookkeeping for them.
template <class L>
void advance_one(L& layer, walk& s) {
  tensor<float, 2>& x = *s.calib;
  const index_t n = x.extent(0);
  if constexpr (is_dense_v<L>) {
    x = flat(layer.forward(x.cview()), s);
    s.spatial = false;
  } else if constexpr (is_conv_v<L>) {
    x = flat(layer.forward(tensor_view<const float, 4>(x.data(), n, s.h, s.w, s.c)), s);
    s.spatial = true;
  } else if constexpr (std::same_as<L, flatten>) {
    s.spatial = false;
    s.c = s.h * s.w * s.c;
    s.h = 1;
    s.w = 1;
  } else {
    if (s.spatial) {
      if constexpr (requires(const tensor<float, 4>& t) { layer.forward(t); }) {
        tensor<float, 4> x4(extents<4>(n, s.h, s.w, s.c),
                            std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
        x = flat(layer.forward(x4), s);
        return;
      }
    } else {
      if constexpr (requires(const tensor<float, 2>& t) { layer.forward(t); }) {
        x = flat(layer.forward(x), s);
        return;
      }
    }
    throw shape_error(std::string("convert(): a layer receives a ") + (s.spatial ? "4-D" : "2-D") +
                      " activation it does not take");
  }
}

template <class Model, std::size_t J>
constexpr bool bn_at() {
  if constexpr (J < Model::size()) {
    return is_bn_v<decltype(std::declval<Model&>().template get<J>())>;
  } else {
    return false;
  }
}
template <class Model, std::size_t J>
constexpr bool relu_at() {
  if constexpr (J < Model::size()) {
    return is_relu_v<decltype(std::declval<Model&>().template get<J>())>;
  } else {
    return false;
  }
}

/// Moves the calibration samples through float layers [I, End).
template <std::size_t I, std::size_t End, class Model>
void advance(Model& m, walk& s) {
  if constexpr (I < End) {
    if (s.calib) advance_one(m.template get<I>(), s);
    advance<I + 1, End>(m, s);
  }
}

template <class V>
std::unique_ptr<op> sparse_dense_op(const folded& f, const convert_options& o, bool relu) {
  if (o.sparse == sparse_layout::nm) {
    return std::make_unique<sparse_dense<prune::packed_nm_matrix<V>>>(
        prune::packed_nm_matrix<V>::from_dense(f.w.cview(), o.nm_n, o.nm_m), f.bias, relu);
  }
  return std::make_unique<sparse_dense<prune::csr_matrix<V>>>(prune::csr_matrix<V>::from_dense(f.w.cview()), f.bias,
                                                              relu);
}

template <class L>
std::unique_ptr<op> dense_op(L& layer, folded& f, walk& s, bool relu) {
  const convert_options& o = s.opt;
  if (o.sparse != sparse_layout::none) {
    switch (o.format) {
      case weight_format::fp32: return sparse_dense_op<float>(f, o, relu);
      case weight_format::fp16: return sparse_dense_op<half>(f, o, relu);
      case weight_format::int8_static:
      case weight_format::int8_dynamic: return sparse_dense_op<std::int8_t>(f, o, relu);
      default:
        throw config_error("sparse storage takes fp32, fp16 or int8 values (not bf16 or int4)");
    }
  }
  switch (o.format) {
    case weight_format::fp32: return std::make_unique<float_dense>(std::move(f.w), f.bias, relu);
    case weight_format::fp16: return std::make_unique<half_dense<half>>(f.w.cview(), f.bias, relu);
    case weight_format::bf16: return std::make_unique<half_dense<bfloat16>>(f.w.cview(), f.bias, relu);
    case weight_format::int8_dynamic: return std::make_unique<dynamic_dense>(f.w.cview(), f.bias, relu);
    case weight_format::int4:
      return std::make_unique<int4_dense>(int4_codes(layer, f, o), f.bias, relu);
    case weight_format::int8_static: {
      const quant::affine_params in = input_params(layer, s);
      const quant::int8_weights q = int8_codes(layer, f);
      return std::make_unique<int8_dense>(q.codes.cview(), q.params.scales, f.bias, in, relu);
    }
  }
  throw config_error("unknown weight format");
}

template <class L>
std::unique_ptr<op> conv_op(L& layer, const kernels::conv2d_geometry& g, folded& f, walk& s, bool relu) {
  const convert_options& o = s.opt;
  switch (o.format) {
    case weight_format::fp16:
      return std::make_unique<half_conv<half>>(g, f.w.cview(), f.bias, relu);
    case weight_format::bf16:
      return std::make_unique<half_conv<bfloat16>>(g, f.w.cview(), f.bias, relu);
    case weight_format::int8_static: {
      const quant::affine_params in = input_params(layer, s);
      const quant::int8_weights q = int8_codes(layer, f);
      return std::make_unique<int8_conv>(g, q.codes.cview(), q.params.scales, f.bias, in, relu);
    }
    default:  // fp32; dynamic int8 and int4 keep convs in float, as PyTorch's dynamic quantization does
      return std::make_unique<float_conv>(g, std::move(f.w), f.bias, relu);
  }
}

template <std::size_t I, class Model>
void convert_from(Model& m, walk& s) {
  if constexpr (I < Model::size()) {
    auto& layer = m.template get<I>();
    using L = std::remove_cvref_t<decltype(layer)>;
    if constexpr (is_dense_v<L> || is_conv_v<L>) {
      constexpr bool bn = bn_at<Model, I + 1>();
      constexpr std::size_t r = I + 1 + (bn ? 1 : 0);
      constexpr bool fused_relu = relu_at<Model, r>();
      constexpr std::size_t next = r + (fused_relu ? 1 : 0);
      folded f = fold(layer);
      if constexpr (bn) fold_batch_norm(f, m.template get<I + 1>());
      index_t nh = 1, nw = 1, nc = 0;
      if constexpr (is_dense_v<L>) {
        if (s.h * s.w * s.c != layer.in_features()) {
          throw shape_error("dense layer " + std::to_string(I) + " takes " + std::to_string(layer.in_features()) +
                            " features but receives " + std::to_string(s.h * s.w * s.c));
        }
        s.model.add(dense_op(layer, f, s, fused_relu));
        nc = layer.out_features();
      } else {
        const kernels::conv2d_geometry g = layer.geometry(extents<4>(1, s.h, s.w, s.c));
        s.model.add(conv_op(layer, g, f, s, fused_relu));
        nh = g.out_h();
        nw = g.out_w();
        nc = g.out_c;
      }
      advance<I, next>(m, s);
      s.h = nh;
      s.w = nw;
      s.c = nc;
      convert_from<next>(m, s);
    } else {
      if constexpr (std::same_as<L, relu>) {
        s.model.template emplace<relu_op>();
      } else if constexpr (std::same_as<L, relu6>) {
        s.model.template emplace<relu_op>(6.0f);
      } else if constexpr (std::same_as<L, flatten>) {
        s.model.template emplace<flatten_op>();
      } else if constexpr (std::same_as<L, max_pool2d> || std::same_as<L, avg_pool2d>) {
        const pool2d_options& p = layer.options();
        const index_t sh = pool_stride(p);
        const index_t sw = p.stride_w == 0 ? p.kernel_w : p.stride_w;
        if (p.kernel_h != p.kernel_w || sh != sw || p.pad_h != 0 || p.pad_w != 0) {
          throw config_error("deployed pooling supports square windows with equal strides and no padding (layer " +
                             std::to_string(I) + ")");
        }
        s.model.template emplace<pool_op>(
            std::same_as<L, max_pool2d> ? pool_op::kind_t::max : pool_op::kind_t::average, p.kernel_h, sh);
      } else if constexpr (std::same_as<L, batch_norm>) {
        std::vector<float> scale(static_cast<std::size_t>(s.c)), shift(static_cast<std::size_t>(s.c));
        for (index_t ch = 0; ch < s.c; ++ch) {
          const double k = bn_factor(layer, ch);
          scale[static_cast<std::size_t>(ch)] = static_cast<float>(k);
          shift[static_cast<std::size_t>(ch)] = static_cast<float>(
              static_cast<double>(layer.beta()(ch)) - k * static_cast<double>(layer.running_mean()(ch)));
        }
        s.model.template emplace<channel_affine_op>(std::move(scale), std::move(shift));
      } else {
        static_assert(sizeof(L) == 0, "convert(): this layer type has no deployed form");
      }
      index_t nh = s.h, nw = s.w, nc = s.c;
      if constexpr (std::same_as<L, flatten>) {
        nc = s.h * s.w * s.c;
        nh = 1;
        nw = 1;
      } else if constexpr (std::same_as<L, max_pool2d> || std::same_as<L, avg_pool2d>) {
        const pool2d_options& p = layer.options();
        nh = (s.h - p.kernel_h) / pool_stride(p) + 1;
        nw = (s.w - p.kernel_w) / pool_stride(p) + 1;
      }
      advance<I, I + 1>(m, s);
      s.h = nh;
      s.w = nw;
      s.c = nc;
      convert_from<I + 1>(m, s);
    }
  }
}

}  // namespace detail::convert

/// Builds the deployed form of `model` (any sequential of dense, conv2d, relu,
/// max/avg pooling, flatten and batch_norm layers) in format `opt.format`.
/// Weights are the ones the float forward multiplies by (masked, so pruned
/// weights are exactly 0; fake-quantized for QAT layers), and each layer's
/// storage() is filled with its weight policy's quantize(); a batch norm right after
/// a Dense or Conv is folded into it (w' = k w, b' = k (b - mean) + beta with
/// k = gamma / sqrt(var + eps)), a ReLU right after one is fused into its output
/// stage. A layer whose weight policy stores int8 codes deploys those codes under
/// static int8, one with an int4 policy its own groups under int4 (int8_codes,
/// int4_codes). Static int8 takes each Dense/Conv input's (scale, zero point) from
/// the layer's own quant::static_int8 when it has observed data (QAT), else from
/// `opt.calibration` run over `calibration` ([samples, input features]) pushed
/// through the float model in eval mode; consecutive int8 layers then pass uint8
/// codes, requantized in the producer's output stage.
/// The model is left in eval mode. Throws config_error for a missing input shape
/// or calibration, unsupported layer settings or format combinations;
/// shape_error when the layers do not fit the input shape.
template <class... L>
[[nodiscard]] deployed_model convert(sequential<L...>& model, const convert_options& opt,
                                     std::optional<tensor_view<const float, 2>> calibration = std::nullopt) {
  if (opt.input_height < 1 || opt.input_width < 1 || opt.input_channels < 1) {
    throw config_error("convert_options needs the model's input shape (input_height, input_width, "
                       "input_channels; an MLP on 784 features is 1, 1, 784)");
  }
  const index_t features = opt.input_height * opt.input_width * opt.input_channels;
  deployed_model out(opt.input_height, opt.input_width, opt.input_channels);
  model.set_mode(mode::eval);
  using first = std::remove_cvref_t<decltype(model.template get<0>())>;
  detail::convert::walk s{opt, out, opt.input_height, opt.input_width, opt.input_channels,
                          !detail::is_dense_v<first>, std::nullopt};
  if (calibration) {
    if (calibration->extent(1) != features) {
      throw shape_error("calibration samples have " + std::to_string(calibration->extent(1)) +
                        " features (expected " + std::to_string(features) + ")");
    }
    if (calibration->extent(0) < 1) throw shape_error("calibration needs at least one sample");
    s.calib = tensor<float, 2>(calibration->extents(),
                               std::span<const float>(calibration->data_handle(),
                                                      static_cast<std::size_t>(calibration->size())));
  }
  detail::convert::convert_from<0>(model, s);
  out.chain_int8();
  return out;
}

}  // namespace qprune::nn

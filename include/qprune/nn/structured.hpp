// Structured channel pruning of a whole nn model, physically: every Dense or
// Conv2d layer that feeds another one loses its least important output channels
// (rows of its weight, filters), and the layers between and after it shrink with
// it (batch-norm channels, the consumer's input columns or filter slices), so the
// model computes with smaller matrices from then on. Built on the primitives of
// prune/structured.hpp (scores, selection, the consumer's column removal and
// constant folding).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/nn/traits.hpp"
#include "qprune/prune/structured.hpp"

namespace qprune::nn {

/// What remove_channels() removes.
struct channel_removal_options {
  /// Fraction of each pruned layer's output channels to remove:
  /// round_half_even(fraction * channels) of them (prune::channels_to_remove).
  double fraction = 0.5;
  /// How channels are ranked; the lowest scores go (prune::channel_scores).
  prune::channel_criterion criterion = prune::channel_criterion::l2;
  /// Fold each removed channel's constant output (its bias through the layers in
  /// between, see below) into the consumer's bias, so the smaller model computes
  /// what the channel-masked model computed. false: the columns are dropped.
  bool fold = true;
};

/// One pruned layer in remove_channels()'s report.
struct removed_channels {
  std::size_t layer = 0;   ///< index of the producer in the sequential
  std::size_t consumer = 0;  ///< index of the layer whose inputs shrank
  index_t before = 0, after = 0;  ///< output channels of the producer
  /// Whether the smaller model computes exactly what the masked one did (up to
  /// float rounding): true unless the removed channels had a nonzero constant
  /// output that could not be folded exactly (fold off, or a zero-padded conv
  /// consumer, which is folded exactly in the interior only).
  bool exact = true;
};

namespace detail::structured {

inline constexpr std::size_t no_consumer = std::numeric_limits<std::size_t>::max();

/// The index of the first Dense or Conv2d at or after I when only layers that act
/// per channel (ReLU, ReLU6, batch norm, pooling, flatten) lie between; else no_consumer.
template <class Model, std::size_t I>
constexpr std::size_t consumer_index() {
  if constexpr (I >= Model::size()) {
    return no_consumer;
  } else {
    using L = layer_t<Model, I>;
    if constexpr (is_dense_v<L> || is_conv_v<L>) {
      return I;
    } else if constexpr (is_relu_v<L> || is_relu6_v<L> || is_bn_v<L> || is_pool_v<L> || is_flatten_v<L>) {
      return consumer_index<Model, I + 1>();
    } else {
      return no_consumer;
    }
  }
}

template <class L>
bool removable_groups(const L& l) {
  if constexpr (is_conv_v<L>) {
    return l.options().groups == 1;
  } else {
    return true;
  }
}

/// The constant a channel with bias b outputs after layer `l` (which acts per channel).
template <class L>
double through(const L& l, double x, index_t c) {
  if constexpr (is_relu_v<L>) {
    return static_cast<double>(prune::detail::structured::apply_activation(x, prune::activation::relu));
  } else if constexpr (is_relu6_v<L>) {
    return static_cast<double>(prune::detail::structured::apply_activation(x, prune::activation::relu6));
  } else if constexpr (is_bn_v<L>) {
    const double is = 1.0 / std::sqrt(static_cast<double>(l.running_var()(c)) + l.options().eps);
    return static_cast<double>(l.gamma()(c)) * (x - static_cast<double>(l.running_mean()(c))) * is +
           static_cast<double>(l.beta()(c));
  } else {
    return x;  // pooling (max or average of a constant) and flatten pass it on
  }
}

inline tensor<float, 1> to_tensor(const std::vector<float>& v) {
  tensor<float, 1> t(static_cast<index_t>(v.size()));
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

inline std::vector<float> to_vector(const tensor<float, 1>& t) { return {t.data(), t.data() + t.size()}; }

/// Removes the lowest-scored output channels of producer I and shrinks the layers
/// up to consumer J. Appends to `report`.
/// What pass 1 decides for one producer: the kept channels and every channel's
/// constant output at the consumer's input.
struct removal_plan {
  std::vector<index_t> keep;
  std::vector<float> constants;
};

/// Each output channel's constant after the layers between producer I and consumer
/// J when its weights are zero: its bias through ReLU / batch norm / pooling, in
/// double, rounded once to float.
template <std::size_t I, std::size_t J, class Model>
std::vector<float> channel_constants(Model& m) {
  const tensor<float, 1>& bias = m.template get<I>().bias();
  const index_t channels = m.template get<I>().weight().extent(0);
  std::vector<float> constants(static_cast<std::size_t>(channels), 0.0f);
  for (index_t c = 0; c < channels; ++c) {
    double v = bias.size() == 0 ? 0.0 : static_cast<double>(bias(c));
    [&]<std::size_t... K>(std::index_sequence<K...>) {
      ((v = through(m.template get<I + 1 + K>(), v, c)), ...);
    }(std::make_index_sequence<J - I - 1>{});
    constants[static_cast<std::size_t>(c)] = static_cast<float>(v);
  }
  return constants;
}

/// Whether layer I is a Dense/Conv2d with a consumer (consumer_index).
template <class Model, std::size_t I>
constexpr bool has_consumer() {
  using L = layer_t<Model, I>;
  if constexpr (is_dense_v<L> || is_conv_v<L>) {
    return consumer_index<Model, I + 1>() != no_consumer;
  } else {
    return false;
  }
}

/// The producers remove_channels() prunes: Dense/Conv2d layers with groups = 1
/// whose consumer exists and has groups = 1. Precondition: has_consumer<Model, I>().
template <std::size_t I, class Model>
bool is_producer(Model& m) {
  return removable_groups(m.template get<I>()) &&
         removable_groups(m.template get<consumer_index<Model, I + 1>()>());
}

/// Removes the output channels of producer I not in `keep` and shrinks the layers
/// up to consumer J. Appends to `report`.
template <std::size_t I, std::size_t J, class Model>
void remove_from(Model& m, const channel_removal_options& opt, const removal_plan& plan,
                 std::vector<removed_channels>& report) {
  const std::vector<index_t>& keep = plan.keep;
  const std::vector<float>& constants = plan.constants;
  auto& producer = m.template get<I>();
  auto& consumer = m.template get<J>();
  const tensor<float, 2>& w = producer.weight();
  const index_t channels = w.extent(0);
  removed_channels r{I, J, channels, channels, true};
  if (static_cast<index_t>(keep.size()) == channels) {
    report.push_back(r);
    return;
  }
  const std::vector<index_t> removed = prune::complement_channels(channels, keep);

  bool nonzero = false;
  for (index_t c : removed) nonzero = nonzero || constants[static_cast<std::size_t>(c)] != 0.0f;
  const bool fold = opt.fold && nonzero;

  // The consumer's new parameters first (they may throw; nothing has changed yet).
  using C = std::remove_cvref_t<decltype(consumer)>;
  const bool consumer_bias = consumer.bias().size() > 0;
  tensor<float, 2> cw;
  std::vector<float> cb;
  index_t consumer_in = 0;
  if constexpr (is_dense_v<C>) {
    const prune::dense_params p{consumer.weight(), to_vector(consumer.bias())};
    if (p.in_features() % channels != 0) {
      throw shape_error("remove_channels: layer " + std::to_string(J) + " has " + std::to_string(p.in_features()) +
                        " input features, not a multiple of layer " + std::to_string(I) + "'s " +
                        std::to_string(channels) + " output channels (expected the flatten of [H, W, " +
                        std::to_string(channels) + "])");
    }
    const prune::flatten_shape shape{p.in_features() / channels, 1, channels};
    prune::dense_params q = fold && consumer_bias ? prune::remove_flattened_input_channels(p, shape, keep, constants)
                                                  : prune::remove_flattened_input_channels(p, shape, keep);
    cw = std::move(q.weight);
    cb = std::move(q.bias);
    consumer_in = cw.extent(1);
  } else {
    const auto& o = consumer.options();
    const index_t in = o.in_channels;
    prune::conv2d_params p{tensor<float, 4>(extents<4>(o.out_channels, o.kernel_h, o.kernel_w, in),
                                            consumer.weight().span()),
                           to_vector(consumer.bias())};
    const bool padded = !std::holds_alternative<kernels::padding_mode>(o.padding) ||
                        std::get<kernels::padding_mode>(o.padding) != kernels::padding_mode::valid;
    if (padded) p.padding = prune::padding2d{1, 1, 1, 1};  // only "has padding" matters to the fold
    if (const auto* e = std::get_if<explicit_padding>(&o.padding)) {
      p.padding = prune::padding2d{e->top, e->left, e->bottom, e->right};
    }
    prune::conv2d_params q = fold && consumer_bias
                                 ? prune::remove_input_channels(p, keep, constants, prune::padded_fold::interior_exact)
                                 : prune::remove_input_channels(p, keep);
    cw = tensor<float, 2>(extents<2>(q.out_channels(), q.kernel_h() * q.kernel_w() * q.in_channels()),
                          std::span<const float>(q.weight.data(), static_cast<std::size_t>(q.weight.size())));
    cb = std::move(q.bias);
    consumer_in = q.in_channels();
    if (fold && consumer_bias && !p.padding.is_zero()) r.exact = false;
  }
  if (nonzero && (!opt.fold || !consumer_bias)) r.exact = false;

  // The producer's kept rows and bias.
  const tensor<float, 1>& bias = producer.bias();
  const auto rows = prune::detail::structured::take_rows(w.data(), w.extent(1), keep);
  tensor<float, 2> pw(extents<2>(static_cast<index_t>(keep.size()), w.extent(1)), std::span<const float>(rows));
  tensor<float, 1> pb(bias.size() == 0 ? 0 : static_cast<index_t>(keep.size()));
  for (std::size_t k = 0; k < keep.size() && bias.size() > 0; ++k) pb(static_cast<index_t>(k)) = bias(keep[k]);

  using P = std::remove_cvref_t<decltype(producer)>;
  if constexpr (is_dense_v<P>) {
    producer.replace_parameters(std::move(pw), std::move(pb));
  } else {
    producer.replace_parameters(producer.options().in_channels, std::move(pw), std::move(pb));
  }
  [&]<std::size_t... K>(std::index_sequence<K...>) {
    (
        [&] {
          auto& l = m.template get<I + 1 + K>();
          if constexpr (is_bn_v<decltype(l)>) l.keep_channels(keep);
        }(),
        ...);
  }(std::make_index_sequence<J - I - 1>{});
  if constexpr (is_dense_v<C>) {
    consumer.replace_parameters(std::move(cw), consumer_bias ? to_tensor(cb) : tensor<float, 1>());
  } else {
    consumer.replace_parameters(consumer_in, std::move(cw), consumer_bias ? to_tensor(cb) : tensor<float, 1>());
  }
  r.after = static_cast<index_t>(keep.size());
  report.push_back(r);
}

/// Pass 1: the plan of every producer from the model as it is before anything is
/// removed, the channel-masked model's view: each layer ranked on its full weight
/// rows (as a per-layer ln_structured mask), each constant from the original bias
/// (a masked row's output ignores what its removed inputs carried).
/// Throws before anything changes.
template <std::size_t I, class Model>
void select_all(Model& m, const channel_removal_options& opt, std::vector<removal_plan>& plans) {
  if constexpr (I < Model::size()) {
    if constexpr (has_consumer<Model, I>()) {
      if (is_producer<I>(m)) {
        const tensor<float, 2>& w = m.template get<I>().weight();
        const auto removed = prune::select_channels_to_remove(
            prune::channel_scores(tensor_view<const float, 2, layout_stride>(w.cview()), opt.criterion),
            opt.fraction);
        plans[I].keep = prune::complement_channels(w.extent(0), removed);
        plans[I].constants = channel_constants<I, consumer_index<Model, I + 1>()>(m);
      }
    }
    select_all<I + 1>(m, opt, plans);
  }
}

/// Pass 2: the removal, first layer to last.
template <std::size_t I, class Model>
void remove_all(Model& m, const channel_removal_options& opt, const std::vector<removal_plan>& plans,
                std::vector<removed_channels>& report) {
  if constexpr (I < Model::size()) {
    if constexpr (has_consumer<Model, I>()) {
      if (is_producer<I>(m)) remove_from<I, consumer_index<Model, I + 1>()>(m, opt, plans[I], report);
    }
    remove_all<I + 1>(m, opt, plans, report);
  }
}

}  // namespace detail::structured

/// Structured channel pruning with physical removal, over a whole model. Every
/// Dense or Conv2d layer (groups = 1) whose output reaches another Dense or Conv2d
/// (groups = 1) through only per-channel layers (ReLU, ReLU6, batch norm, max or
/// average pooling, flatten) loses round_half_even(fraction * out) output channels,
/// the lowest by `criterion` over its master weights (ties: the higher index goes
/// first). Then, for the kept channels K:
///   producer:  weight rows K, bias K;  batch norms between: channels K;
///   consumer:  Dense: the input columns p*C + c for c not in K (C = the producer's
///              channels, p each flattened pixel); Conv2d: the filter slices of
///              the removed channels.
/// With opt.fold the removed channels' constant output (their bias through the
/// layers between, in double) is folded into the consumer's bias:
/// b'_j = b_j + sum_{c removed} const_c * sum_p W[j, p*C + c] (prune/structured.hpp);
/// it is exact for Dense consumers and unpadded convs, exact in the interior for
/// zero-padded convs. The last Dense/Conv (the classifier) keeps its outputs.
/// Every layer is ranked on its weights before any removal (the channel-masked
/// model's choice), then layers shrink from the first to the last. Masks are recomputed by each layer's pruner (dense::replace_parameters);
/// gradients are zeroed and optimizers must be re-created.
/// Returns one entry per pruned layer.
/// Throws config_error for a fraction outside [0, 1] or one that removes every
/// channel of a layer (then nothing changes), shape_error for a Dense consumer
/// whose inputs are not a flatten of the producer's channels (the layers before
/// it are then already pruned).
template <class... L>
std::vector<removed_channels> remove_channels(sequential<L...>& model, const channel_removal_options& opt = {}) {
  if (!(opt.fraction >= 0.0 && opt.fraction <= 1.0)) {
    throw config_error("remove_channels: fraction " + std::to_string(opt.fraction) + " (expected 0 <= fraction <= 1)");
  }
  std::vector<detail::structured::removal_plan> plans(sequential<L...>::size());
  detail::structured::select_all<0>(model, opt, plans);
  std::vector<removed_channels> report;
  detail::structured::remove_all<0>(model, opt, plans, report);
  return report;
}

}  // namespace qprune::nn

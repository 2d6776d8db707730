// Structured pruning with physical removal: score the output channels of a Dense
// or Conv2D layer (L1, L2, geometric median), choose an exact number to remove, and
// return a smaller producer and a consumer whose input dimension shrank to match
// (Dense, Conv2D, flatten→Dense, with BatchNorm between), folding each removed
// channel's constant output into the consumer's bias. Ranking and masks come from the
// shared kernels (prune_lowest, prune::mask); `channel_pruner` is the policy form.
// Semantics: doc/pruning.md, "Structured pruning with physical removal".
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/mask.hpp"

namespace qprune::prune {

/// A Dense (fully connected) layer's parameters: y = W·x + b.
/// `weight` is [out_features, in_features] row-major (PyTorch's Linear layout);
/// `bias` has out_features values, or is empty (no bias, read as all zeros).
struct dense_params {
  tensor<float, 2> weight;
  std::vector<float> bias;

  index_t out_features() const noexcept { return weight.extent(0); }
  index_t in_features() const noexcept { return weight.extent(1); }
};

/// Explicit zero padding of a 2-D convolution's input, in pixels per side.
struct padding2d {
  index_t top = 0;
  index_t left = 0;
  index_t bottom = 0;
  index_t right = 0;

  /// True when every side is 0 ("valid" convolution).
  constexpr bool is_zero() const noexcept {
    return top == 0 && left == 0 && bottom == 0 && right == 0;
  }
};

/// A 2-D convolution's parameters (groups = 1, dilation = 1). Activations are NHWC;
/// `weight` is [out_channels, kernel_h, kernel_w, in_channels] row-major (OHWI,
/// TFLite's CONV_2D layout); `bias` has out_channels values or is empty.
/// Output size: H_out = (H + top + bottom − kernel_h) / stride_h + 1 (floor), likewise W.
struct conv2d_params {
  tensor<float, 4> weight;
  std::vector<float> bias;
  index_t stride_h = 1;
  index_t stride_w = 1;
  padding2d padding{};

  index_t out_channels() const noexcept { return weight.extent(0); }
  index_t kernel_h() const noexcept { return weight.extent(1); }
  index_t kernel_w() const noexcept { return weight.extent(2); }
  index_t in_channels() const noexcept { return weight.extent(3); }
  /// The filters as a [out_channels, kernel_h·kernel_w·in_channels] matrix (the pruning view).
  tensor_view<const float, 2> filters() const noexcept {
    return tensor_view<const float, 2>(weight.data(), out_channels(),
                                       kernel_h() * kernel_w() * in_channels());
  }
};

/// Inference-mode batch normalisation, per channel c:
///   y = gamma_c · (x − running_mean_c) / sqrt(running_var_c + eps) + beta_c.
/// The four vectors have one value per channel. `eps` has no default on purpose
/// (PyTorch uses 1e-5, Keras 1e-3); an omitted eps is 0.
struct batch_norm_params {
  std::vector<float> gamma;
  std::vector<float> beta;
  std::vector<float> running_mean;
  std::vector<float> running_var;
  float eps;

  index_t channels() const noexcept { return static_cast<index_t>(gamma.size()); }
};

/// The element-wise activation between a producer (and its BatchNorm) and the consumer.
enum class activation : std::uint8_t {
  identity,  ///< f(x) = x
  relu,      ///< f(x) = max(x, 0)
  relu6,     ///< f(x) = min(max(x, 0), 6)
};

/// How an output channel (a Dense row, a conv filter) is scored. A lower score is
/// removed first.
enum class channel_criterion : std::uint8_t {
  l1,                ///< Σ|w| over the channel's weights
  l2,                ///< sqrt(Σ w²)
  geometric_median,  ///< FPGM: Σ_j ‖F_i − F_j‖₂, the summed distance to every other filter
};

/// What remove_input_channels does with a conv consumer that has zero padding when
/// a removed channel's constant output is nonzero (doc/pruning.md, "Padded conv
/// consumers").
enum class padded_fold : std::uint8_t {
  /// Throw config_error: the fold cannot be exact at the border (the safe choice).
  reject,
  /// Fold anyway: exact at every output position whose receptive field has no
  /// padding tap; at border positions the shrunk network adds W·const for the taps
  /// that fall on padding, where the masked network adds 0.
  interior_exact,
};

/// A tag for a channel count: `select_channels_to_remove(scores, channel_count{2})`.
struct channel_count {
  index_t value;
};

/// The spatial shape [H, W, C] of the NHWC activation a Flatten turns into a Dense
/// layer's input: column (h·W + w)·C + c holds element (h, w, c). After a max-pool,
/// H and W are the pooled sizes.
struct flatten_shape {
  index_t height;
  index_t width;
  index_t channels;
};

namespace detail::structured {

inline void check_bias(std::size_t bias_size, index_t channels, std::string_view fn,
                       std::string_view layer) {
  if (bias_size != 0 && static_cast<index_t>(bias_size) != channels) {
    throw shape_error(std::string(fn) + ": the " + std::string(layer) + " bias has " +
                      std::to_string(bias_size) + " values (expected " + std::to_string(channels) +
                      ", one per output channel, or none)");
  }
}

inline void check_params(const dense_params& p, std::string_view fn, std::string_view layer) {
  check_bias(p.bias.size(), p.out_features(), fn, layer);
}

inline void check_params(const conv2d_params& p, std::string_view fn, std::string_view layer) {
  check_bias(p.bias.size(), p.out_channels(), fn, layer);
  if (p.stride_h < 1 || p.stride_w < 1) {
    throw config_error(std::string(fn) + ": the " + std::string(layer) + " stride (" +
                       std::to_string(p.stride_h) + ", " + std::to_string(p.stride_w) +
                       ") is invalid (expected >= 1)");
  }
  const padding2d& q = p.padding;
  if (q.top < 0 || q.left < 0 || q.bottom < 0 || q.right < 0) {
    throw config_error(std::string(fn) + ": the " + std::string(layer) + " padding (" +
                       std::to_string(q.top) + ", " + std::to_string(q.left) + ", " +
                       std::to_string(q.bottom) + ", " + std::to_string(q.right) +
                       ") is invalid (expected >= 0 on every side)");
  }
}

inline void check_params(const batch_norm_params& p, std::string_view fn) {
  const std::size_t n = p.gamma.size();
  if (p.beta.size() != n || p.running_mean.size() != n || p.running_var.size() != n) {
    throw shape_error(std::string(fn) + ": batch norm gamma, beta, running_mean, running_var have " +
                      std::to_string(n) + ", " + std::to_string(p.beta.size()) + ", " +
                      std::to_string(p.running_mean.size()) + ", " +
                      std::to_string(p.running_var.size()) + " values (expected equal counts)");
  }
  if (!(p.eps >= 0.0f)) {
    throw config_error(std::string(fn) + ": batch norm eps " + detail::format_number(p.eps) +
                       " is invalid (expected >= 0)");
  }
}

/// Throws unless `keep` is a non-empty, strictly increasing list of indices in
/// [0, channels). `side` is "output" or "input".
inline void check_keep(std::span<const index_t> keep, index_t channels, std::string_view fn,
                       std::string_view side) {
  if (keep.empty()) {
    throw config_error(std::string(fn) + ": cannot remove all " + std::to_string(channels) + " " +
                       std::string(side) + " channels (expected at least one kept index)");
  }
  for (std::size_t i = 0; i < keep.size(); ++i) {
    if (keep[i] < 0 || keep[i] >= channels) {
      throw config_error(std::string(fn) + ": kept channel index " + std::to_string(keep[i]) +
                         " is out of range (expected 0 <= index < " + std::to_string(channels) +
                         ")");
    }
    if (i > 0 && keep[i] <= keep[i - 1]) {
      throw config_error(std::string(fn) + ": kept channel indices " + std::to_string(keep[i - 1]) +
                         ", " + std::to_string(keep[i]) +
                         " are not strictly increasing (expected a sorted list without repeats)");
    }
  }
}

/// 1 for the channels in `keep`, 0 for the others. Precondition: check_keep passed.
inline std::vector<std::uint8_t> kept_flags(std::span<const index_t> keep, index_t channels) {
  std::vector<std::uint8_t> f(static_cast<std::size_t>(channels), 0);
  for (index_t c : keep) f[static_cast<std::size_t>(c)] = 1;
  return f;
}

inline void check_constants(std::span<const float> constants, index_t channels, std::string_view fn) {
  if (static_cast<index_t>(constants.size()) != channels) {
    throw shape_error(std::string(fn) + ": " + std::to_string(constants.size()) +
                      " channel constants for " + std::to_string(channels) +
                      " input channels (expected one per input channel)");
  }
}

/// True when some removed channel (kept[c] == 0) has a nonzero constant (NaN counts as nonzero).
inline bool any_removed_nonzero(std::span<const float> constants,
                                const std::vector<std::uint8_t>& kept) {
  for (std::size_t c = 0; c < kept.size(); ++c) {
    if (kept[c] == 0 && constants[c] != 0.0f) return true;
  }
  return false;
}

inline float apply_activation(double x, activation act) noexcept {
  switch (act) {
    case activation::identity: break;
    case activation::relu: x = x > 0.0 ? x : 0.0; break;
    case activation::relu6: x = x > 0.0 ? (x < 6.0 ? x : 6.0) : 0.0; break;
  }
  return static_cast<float>(x);
}

/// Rows of a [rows, cols] row-major buffer selected by `keep`.
inline std::vector<float> take_rows(const float* src, index_t cols, std::span<const index_t> keep) {
  std::vector<float> out;
  out.reserve(keep.size() * static_cast<std::size_t>(cols));
  for (index_t r : keep) out.insert(out.end(), src + r * cols, src + (r + 1) * cols);
  return out;
}

inline std::vector<float> take(const std::vector<float>& v, std::span<const index_t> keep) {
  std::vector<float> out;
  out.reserve(keep.size());
  for (index_t c : keep) out.push_back(v[static_cast<std::size_t>(c)]);
  return out;
}

}  // namespace detail::structured

// ---------------------------------------------------------------------------
// Scoring and selection
// ---------------------------------------------------------------------------

/// One score per row of `filters` ([channels, row_size]: a Dense weight, or conv filters
/// viewed as [out, kh·kw·in]). A lower score means less important (removed first).
/// Numerics (double accumulation, row-major order within a row):
///   l1:               s_i = Σ_k |w_ik|
///   l2:               s_i = sqrt(Σ_k w_ik²)
///   geometric_median: s_i = Σ_{j≠i} d_ij, d_ij = sqrt(Σ_k (w_ik − w_jk)²), summed in
///                     increasing j (FPGM, He et al. 2019; NNCF's geometric-median
///                     criterion). The filter closest to all the others — the most
///                     replaceable one — has the lowest score. O(channels²·row_size).
/// Any NaN weight makes its channel's score NaN (ranked above every number).
[[nodiscard]] inline std::vector<double> channel_scores(tensor_view<const float, 2, layout_stride> filters,
                                                        channel_criterion criterion) {
  const index_t n = filters.extent(0);
  const index_t k = filters.extent(1);
  std::vector<double> s(static_cast<std::size_t>(n), 0.0);
  switch (criterion) {
    case channel_criterion::l1:
    case channel_criterion::l2:
      for (index_t i = 0; i < n; ++i) {
        double acc = 0.0;
        for (index_t j = 0; j < k; ++j) {
          const double w = static_cast<double>(filters(i, j));
          acc += criterion == channel_criterion::l1 ? std::fabs(w) : w * w;
        }
        s[static_cast<std::size_t>(i)] = criterion == channel_criterion::l1 ? acc : std::sqrt(acc);
      }
      break;
    case channel_criterion::geometric_median:
      // Each pair once; s[i] receives d_ij in increasing j either way (j < i from the
      // earlier rows, j > i from row i).
      for (index_t i = 0; i < n; ++i) {
        for (index_t j = i + 1; j < n; ++j) {
          double acc = 0.0;
          for (index_t t = 0; t < k; ++t) {
            const double d = static_cast<double>(filters(i, t)) - static_cast<double>(filters(j, t));
            acc += d * d;
          }
          const double dist = std::sqrt(acc);
          s[static_cast<std::size_t>(i)] += dist;
          s[static_cast<std::size_t>(j)] += dist;
        }
      }
      break;
  }
  return s;
}

/// Scores of a Dense layer's output channels (the rows of its weight).
[[nodiscard]] inline std::vector<double> channel_scores(const dense_params& p, channel_criterion criterion) {
  return channel_scores(tensor_view<const float, 2, layout_stride>(p.weight.cview()), criterion);
}

/// Scores of a conv layer's filters, each filter [kh, kw, in] flattened.
[[nodiscard]] inline std::vector<double> channel_scores(const conv2d_params& p, channel_criterion criterion) {
  return channel_scores(tensor_view<const float, 2, layout_stride>(p.filters()), criterion);
}

/// The number of channels a fraction removes: round_half_even(fraction · channels),
/// the product in double (2.5 → 2, 3.5 → 4), as every qprune fraction-to-count.
/// Throws config_error unless 0 <= fraction <= 1 (NaN rejected). The result may equal
/// `channels`; the selection and removal functions refuse that.
[[nodiscard]] inline index_t channels_to_remove(index_t channels, double fraction) {
  if (!(fraction >= 0.0 && fraction <= 1.0)) {
    throw config_error("channels_to_remove: amount " + detail::format_number(fraction) +
                       " is invalid (expected a fraction in [0, 1]; pass channel_count{k} for a count)");
  }
  return detail::fraction_count(fraction, channels);
}

/// The `count.value` channels with the lowest scores, as increasing indices, ranked by
/// prune_lowest (qprune's one tie rule): among equal scores the HIGHER index is removed
/// first (the lower kept), as in magnitude_mask, n_m_mask, wanda_mask and
/// pytorch::ln_structured; NaN scores rank above every number (removed last).
/// count 0 returns an empty list.
/// Throws config_error if count < 0 or count > channels, and
/// "cannot remove all N output channels" if count == channels > 0.
/// Complexity: O(channels) average.
[[nodiscard]] inline std::vector<index_t> select_channels_to_remove(std::span<const double> scores,
                                                                    channel_count count) {
  const auto n = static_cast<index_t>(scores.size());
  if (count.value < 0 || count.value > n) {
    throw config_error("select_channels_to_remove: count " + std::to_string(count.value) +
                       " is invalid (expected 0 <= count < " + std::to_string(n) + ")");
  }
  if (count.value == n && n > 0) {
    throw config_error("select_channels_to_remove: cannot remove all " + std::to_string(n) +
                       " output channels (expected a count below " + std::to_string(n) + ")");
  }
  std::vector<std::uint8_t> keep(scores.size(), 1);
  prune_lowest(scores, count.value, keep);
  std::vector<index_t> removed;
  removed.reserve(static_cast<std::size_t>(count.value));
  for (index_t c = 0; c < n; ++c) {
    if (keep[static_cast<std::size_t>(c)] == 0) removed.push_back(c);
  }
  return removed;
}

/// The round_half_even(fraction · channels) lowest-scored channels (channels_to_remove),
/// with select_channels_to_remove(scores, channel_count)'s tie rule and errors.
[[nodiscard]] inline std::vector<index_t> select_channels_to_remove(std::span<const double> scores,
                                                                    double fraction) {
  const auto n = static_cast<index_t>(scores.size());
  return select_channels_to_remove(scores, channel_count{channels_to_remove(n, fraction)});
}

/// The indices in [0, channels) that are NOT in `indices` (increasing): turns the
/// removed list into the kept list and back. Throws config_error for an index out of range.
[[nodiscard]] inline std::vector<index_t> complement_channels(index_t channels,
                                                              std::span<const index_t> indices) {
  std::vector<std::uint8_t> in(static_cast<std::size_t>(channels < 0 ? 0 : channels), 0);
  for (index_t c : indices) {
    if (c < 0 || c >= channels) {
      throw config_error("complement_channels: channel index " + std::to_string(c) +
                         " is out of range (expected 0 <= index < " + std::to_string(channels) + ")");
    }
    in[static_cast<std::size_t>(c)] = 1;
  }
  std::vector<index_t> out;
  for (index_t c = 0; c < channels; ++c) {
    if (in[static_cast<std::size_t>(c)] == 0) out.push_back(c);
  }
  return out;
}

/// The mask of structured pruning before physical removal: a prune::mask
/// [channels, row_size] whose row c is all 1 (kept) if c is in `keep` and all 0 otherwise.
/// Throws config_error for an invalid `keep` (check as in remove_output_channels),
/// shape_error for a negative extent.
[[nodiscard]] inline mask output_channel_mask(index_t channels, index_t row_size,
                                              std::span<const index_t> keep) {
  detail::structured::check_keep(keep, channels, "output_channel_mask", "output");
  mask m(extents<2>(channels, row_size), false);
  for (index_t c : keep) {
    for (index_t j = 0; j < row_size; ++j) m(c, j) = 1;
  }
  return m;
}

/// output_channel_mask of a Dense weight: [out_features, in_features].
[[nodiscard]] inline mask output_channel_mask(const dense_params& p, std::span<const index_t> keep) {
  return output_channel_mask(p.out_features(), p.in_features(), keep);
}

/// output_channel_mask of conv filters viewed as [out, kh·kw·in].
[[nodiscard]] inline mask output_channel_mask(const conv2d_params& p, std::span<const index_t> keep) {
  return output_channel_mask(p.out_channels(), p.kernel_h() * p.kernel_w() * p.in_channels(), keep);
}

/// Structured channel pruning as a pruner policy (the masked-network view; physical
/// removal is remove_output_channels with the kept rows of this mask). For a [out, rest]
/// weight (Dense [out, in]; conv filters viewed as [out, kh·kw·in]):
///   scores  = channel_scores(w, criterion)
///   removed = select_channels_to_remove(scores, double(sparsity))   (exact count,
///             round_half_even(sparsity · out), the higher index first among ties)
///   mask    = output_channel_mask(out, rest, complement)           (whole rows)
/// The sparsity is the fraction of output channels removed, which is also the fraction
/// of zeros in the mask; it is a run-time value (sparsity_pruner). A weight with 0 rows
/// gives an empty mask. sparsity() / set_sparsity(s) come from sparsity_target.
class channel_pruner : public sparsity_target {
 public:
  using mask_type = mask;

  /// Throws config_error unless 0 <= sparsity <= 1.
  channel_pruner(channel_criterion criterion, float sparsity)
      : sparsity_target(sparsity), criterion_(criterion) {}

  channel_criterion criterion() const noexcept { return criterion_; }
  /// Throws config_error "cannot remove all N output channels" when the sparsity rounds
  /// to every channel (physical removal would leave an empty layer).
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    const index_t out = w.extent(0);
    if (out == 0) return mask(w.extents());
    const auto removed =
        select_channels_to_remove(channel_scores(w, criterion_), static_cast<double>(sparsity()));
    return output_channel_mask(out, w.extent(1), complement_channels(out, removed));
  }

 private:
  channel_criterion criterion_;
};

static_assert(sparsity_pruner<channel_pruner>);

// ---------------------------------------------------------------------------
// Physical removal: the producer
// ---------------------------------------------------------------------------

/// A smaller Dense layer with only the output channels in `keep` (strictly increasing,
/// non-empty): weight rows and bias values are copied in order; nothing is recomputed.
/// Throws config_error for an invalid `keep` ("cannot remove all N output channels" when
/// empty), shape_error for a bias of the wrong size.
[[nodiscard]] inline dense_params remove_output_channels(const dense_params& producer,
                                                         std::span<const index_t> keep) {
  namespace d = detail::structured;
  d::check_params(producer, "remove_output_channels", "producer");
  d::check_keep(keep, producer.out_features(), "remove_output_channels", "output");
  const index_t in = producer.in_features();
  const auto rows = d::take_rows(producer.weight.data(), in, keep);
  dense_params out{tensor<float, 2>(extents<2>(static_cast<index_t>(keep.size()), in),
                                    std::span<const float>(rows)),
                   {}};
  if (!producer.bias.empty()) out.bias = d::take(producer.bias, keep);
  return out;
}

/// A conv layer with only the filters in `keep`; stride and padding are copied.
/// Errors as for the Dense overload, plus config_error for a stride < 1 or negative padding.
[[nodiscard]] inline conv2d_params remove_output_channels(const conv2d_params& producer,
                                                          std::span<const index_t> keep) {
  namespace d = detail::structured;
  d::check_params(producer, "remove_output_channels", "producer");
  d::check_keep(keep, producer.out_channels(), "remove_output_channels", "output");
  const index_t row = producer.kernel_h() * producer.kernel_w() * producer.in_channels();
  const auto rows = d::take_rows(producer.weight.data(), row, keep);
  conv2d_params out{tensor<float, 4>(extents<4>(static_cast<index_t>(keep.size()), producer.kernel_h(),
                                                producer.kernel_w(), producer.in_channels()),
                                     std::span<const float>(rows)),
                    {},
                    producer.stride_h,
                    producer.stride_w,
                    producer.padding};
  if (!producer.bias.empty()) out.bias = d::take(producer.bias, keep);
  return out;
}

/// A BatchNorm over only the channels in `keep` (gamma, beta, mean and variance
/// entries dropped together; eps copied). Throws shape_error if the four vectors
/// differ in length, config_error for an invalid `keep` or a negative eps.
[[nodiscard]] inline batch_norm_params remove_channels(const batch_norm_params& bn,
                                                       std::span<const index_t> keep) {
  namespace d = detail::structured;
  d::check_params(bn, "remove_channels");
  d::check_keep(keep, bn.channels(), "remove_channels", "batch norm");
  return batch_norm_params{d::take(bn.gamma, keep), d::take(bn.beta, keep),
                           d::take(bn.running_mean, keep), d::take(bn.running_var, keep), bn.eps};
}

// ---------------------------------------------------------------------------
// The constant output of a removed channel
// ---------------------------------------------------------------------------

/// The output of every producer channel after its weights are masked to zero, per
/// channel c: const_c = act(b_c) (b_c = 0 without a bias). A masked channel is not
/// zero after the activation: it is this constant at every position (and every
/// batch element). A max-pool passes it on unchanged (the max of a constant is the
/// constant; with -inf padding, as TF and PyTorch pad a max-pool), so the constants
/// apply across a max-pool too. Numerics: in double, rounded once to float.
/// Throws shape_error for a bias of the wrong size.
[[nodiscard]] inline std::vector<float> channel_constants(const dense_params& producer, activation act) {
  detail::structured::check_params(producer, "channel_constants", "producer");
  std::vector<float> c(static_cast<std::size_t>(producer.out_features()));
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double b = producer.bias.empty() ? 0.0 : static_cast<double>(producer.bias[i]);
    c[i] = detail::structured::apply_activation(b, act);
  }
  return c;
}

/// Same, for a conv producer (one constant per filter).
[[nodiscard]] inline std::vector<float> channel_constants(const conv2d_params& producer, activation act) {
  detail::structured::check_params(producer, "channel_constants", "producer");
  std::vector<float> c(static_cast<std::size_t>(producer.out_channels()));
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double b = producer.bias.empty() ? 0.0 : static_cast<double>(producer.bias[i]);
    c[i] = detail::structured::apply_activation(b, act);
  }
  return c;
}

/// The constants through a BatchNorm placed between the producer and the activation:
///   const_c = act(gamma_c · (b_c − mean_c) / sqrt(var_c + eps) + beta_c),
/// in double, rounded once to float. (For the order producer → activation → BatchNorm,
/// compute act(b_c) with the overload above and pass it through the BatchNorm formula.)
/// Throws shape_error if the BatchNorm's channel count differs from the producer's.
template <class Producer>
  requires(std::same_as<Producer, dense_params> || std::same_as<Producer, conv2d_params>)
[[nodiscard]] std::vector<float> channel_constants(const Producer& producer, const batch_norm_params& bn,
                                                   activation act) {
  namespace d = detail::structured;
  d::check_params(producer, "channel_constants", "producer");
  d::check_params(bn, "channel_constants");
  const auto n = static_cast<std::size_t>(producer.weight.extent(0));
  if (static_cast<index_t>(n) != bn.channels()) {
    throw shape_error("channel_constants: the producer has " + std::to_string(n) +
                      " output channels but the batch norm has " + std::to_string(bn.channels()) +
                      " (expected equal counts)");
  }
  std::vector<float> c(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double b = producer.bias.empty() ? 0.0 : static_cast<double>(producer.bias[i]);
    const double y = static_cast<double>(bn.gamma[i]) * (b - static_cast<double>(bn.running_mean[i])) /
                         std::sqrt(static_cast<double>(bn.running_var[i]) + static_cast<double>(bn.eps)) +
                     static_cast<double>(bn.beta[i]);
    c[i] = d::apply_activation(y, act);
  }
  return c;
}

// ---------------------------------------------------------------------------
// Physical removal: the consumer
// ---------------------------------------------------------------------------

/// Dense → Dense: the consumer without the input columns of the removed channels
/// (those not in `keep`). No fold: exact when the removed channels output 0 (their
/// bias was masked too, or relu of a non-positive bias). Bias copied.
/// Throws config_error for an invalid `keep` ("cannot remove all N input channels"),
/// shape_error for a bias of the wrong size.
[[nodiscard]] inline dense_params remove_input_channels(const dense_params& consumer,
                                                        std::span<const index_t> keep) {
  namespace d = detail::structured;
  d::check_params(consumer, "remove_input_channels", "consumer");
  d::check_keep(keep, consumer.in_features(), "remove_input_channels", "input");
  const index_t out = consumer.out_features();
  const auto k = static_cast<index_t>(keep.size());
  dense_params r{tensor<float, 2>(out, k), consumer.bias};
  for (index_t j = 0; j < out; ++j) {
    for (index_t i = 0; i < k; ++i) r.weight(j, i) = consumer.weight(j, keep[static_cast<std::size_t>(i)]);
  }
  return r;
}

/// Dense → Dense with the fold: drops the removed columns and adds their constant
/// contribution to the bias, for every output j:
///   b'_j = b_j + Σ_{c removed} W_jc · const_c
/// (double accumulation in increasing c, starting from b_j, rounded once to float).
/// `constants` has one value per consumer input channel (channel_constants of the
/// producer); only the removed channels' values are read. Then the consumer computes
/// exactly what it computed on the masked producer's output, up to float rounding.
/// The result has no bias only if the consumer had none and every removed constant is 0.
/// Throws as the overload above, plus shape_error if constants.size() != in_features.
[[nodiscard]] inline dense_params remove_input_channels(const dense_params& consumer,
                                                        std::span<const index_t> keep,
                                                        std::span<const float> constants) {
  namespace d = detail::structured;
  dense_params r = remove_input_channels(consumer, keep);
  d::check_constants(constants, consumer.in_features(), "remove_input_channels");
  const auto kept = d::kept_flags(keep, consumer.in_features());
  if (!d::any_removed_nonzero(constants, kept)) return r;
  const index_t out = consumer.out_features();
  r.bias.assign(static_cast<std::size_t>(out), 0.0f);
  for (index_t j = 0; j < out; ++j) {
    double acc = consumer.bias.empty() ? 0.0 : static_cast<double>(consumer.bias[static_cast<std::size_t>(j)]);
    for (index_t c = 0; c < consumer.in_features(); ++c) {
      if (kept[static_cast<std::size_t>(c)] != 0) continue;
      acc += static_cast<double>(consumer.weight(j, c)) * static_cast<double>(constants[static_cast<std::size_t>(c)]);
    }
    r.bias[static_cast<std::size_t>(j)] = static_cast<float>(acc);
  }
  return r;
}

/// Conv → Conv: the consumer with the in-channel slices of the removed channels
/// dropped from every filter ([out, kh, kw, in] → [out, kh, kw, |keep|]). No fold.
/// Throws config_error for an invalid `keep`, stride or padding; shape_error for a bias
/// of the wrong size.
[[nodiscard]] inline conv2d_params remove_input_channels(const conv2d_params& consumer,
                                                         std::span<const index_t> keep) {
  namespace d = detail::structured;
  d::check_params(consumer, "remove_input_channels", "consumer");
  d::check_keep(keep, consumer.in_channels(), "remove_input_channels", "input");
  const auto k = static_cast<index_t>(keep.size());
  conv2d_params r{tensor<float, 4>(consumer.out_channels(), consumer.kernel_h(), consumer.kernel_w(), k),
                  consumer.bias, consumer.stride_h, consumer.stride_w, consumer.padding};
  for (index_t o = 0; o < consumer.out_channels(); ++o)
    for (index_t y = 0; y < consumer.kernel_h(); ++y)
      for (index_t x = 0; x < consumer.kernel_w(); ++x)
        for (index_t i = 0; i < k; ++i)
          r.weight(o, y, x, i) = consumer.weight(o, y, x, keep[static_cast<std::size_t>(i)]);
  return r;
}

/// Conv → Conv with the fold, for every output channel o:
///   b'_o = b_o + Σ_{c removed} const_c · Σ_{kh, kw} W[o, kh, kw, c]
/// (double accumulation in (c, kh, kw) order, rounded once to float).
/// Exactness: the masked network feeds const_c at every input pixel, but the consumer's
/// zero padding feeds 0, so the fold is exact only at output positions whose receptive
/// field has no padding tap. Rule: a consumer without padding folds exactly everywhere;
/// a consumer with padding > 0 on any side and a nonzero constant on a removed channel
/// throws config_error under padded_fold::reject, and under padded_fold::interior_exact
/// is folded anyway (exact in the interior, off by Σ_{padding taps} W·const at the
/// border). When every removed constant is 0 (bias masked too, or relu of a
/// non-positive bias) nothing is folded and the result is exact with any padding.
[[nodiscard]] inline conv2d_params remove_input_channels(const conv2d_params& consumer,
                                                         std::span<const index_t> keep,
                                                         std::span<const float> constants,
                                                         padded_fold on_padding = padded_fold::reject) {
  namespace d = detail::structured;
  conv2d_params r = remove_input_channels(consumer, keep);
  d::check_constants(constants, consumer.in_channels(), "remove_input_channels");
  const auto kept = d::kept_flags(keep, consumer.in_channels());
  if (!d::any_removed_nonzero(constants, kept)) return r;
  if (!consumer.padding.is_zero() && on_padding == padded_fold::reject) {
    throw config_error(
        "remove_input_channels: cannot fold a removed channel's nonzero constant output into a "
        "conv consumer with zero padding exactly (expected an unpadded consumer, removed "
        "channels whose constant is 0, or padded_fold::interior_exact)");
  }
  const index_t out = consumer.out_channels();
  r.bias.assign(static_cast<std::size_t>(out), 0.0f);
  for (index_t o = 0; o < out; ++o) {
    double acc = consumer.bias.empty() ? 0.0 : static_cast<double>(consumer.bias[static_cast<std::size_t>(o)]);
    for (index_t c = 0; c < consumer.in_channels(); ++c) {
      if (kept[static_cast<std::size_t>(c)] != 0) continue;
      const double v = static_cast<double>(constants[static_cast<std::size_t>(c)]);
      for (index_t y = 0; y < consumer.kernel_h(); ++y)
        for (index_t x = 0; x < consumer.kernel_w(); ++x)
          acc += static_cast<double>(consumer.weight(o, y, x, c)) * v;
    }
    r.bias[static_cast<std::size_t>(o)] = static_cast<float>(acc);
  }
  return r;
}

/// Conv → Flatten → Dense: drops, for every removed channel c, the consumer columns
/// (h·W + w)·C + c for all h < H, w < W (the NHWC flatten of `shape`). The kept columns
/// stay in their order, which is the flatten of the shrunk [H, W, |keep|] activation.
/// No fold. Throws shape_error if in_features != H·W·C or an extent is negative,
/// config_error for an invalid `keep` (indices in [0, C)).
[[nodiscard]] inline dense_params remove_flattened_input_channels(const dense_params& consumer,
                                                                  flatten_shape shape,
                                                                  std::span<const index_t> keep) {
  namespace d = detail::structured;
  constexpr std::string_view fn = "remove_flattened_input_channels";
  d::check_params(consumer, fn, "consumer");
  if (shape.height < 0 || shape.width < 0 || shape.channels < 0 ||
      shape.height * shape.width * shape.channels != consumer.in_features()) {
    throw shape_error(std::string(fn) + ": flatten shape [" + std::to_string(shape.height) + ", " +
                      std::to_string(shape.width) + ", " + std::to_string(shape.channels) +
                      "] does not match the consumer's " + std::to_string(consumer.in_features()) +
                      " input features (expected H·W·C == in_features)");
  }
  d::check_keep(keep, shape.channels, fn, "input");
  const index_t out = consumer.out_features();
  const index_t pixels = shape.height * shape.width;
  const auto k = static_cast<index_t>(keep.size());
  dense_params r{tensor<float, 2>(out, pixels * k), consumer.bias};
  for (index_t j = 0; j < out; ++j)
    for (index_t p = 0; p < pixels; ++p)
      for (index_t i = 0; i < k; ++i)
        r.weight(j, p * k + i) = consumer.weight(j, p * shape.channels + keep[static_cast<std::size_t>(i)]);
  return r;
}

/// Conv → Flatten → Dense with the fold, for every output j:
///   b'_j = b_j + Σ_{c removed} const_c · Σ_{h, w} W[j, (h·W + w)·C + c]
/// (double accumulation in (c, h, w) order, rounded once to float). Exact (no padding
/// is involved). `constants` has C values. Errors as the overload above, plus
/// shape_error if constants.size() != C.
[[nodiscard]] inline dense_params remove_flattened_input_channels(const dense_params& consumer,
                                                                  flatten_shape shape,
                                                                  std::span<const index_t> keep,
                                                                  std::span<const float> constants) {
  namespace d = detail::structured;
  dense_params r = remove_flattened_input_channels(consumer, shape, keep);
  d::check_constants(constants, shape.channels, "remove_flattened_input_channels");
  const auto kept = d::kept_flags(keep, shape.channels);
  if (!d::any_removed_nonzero(constants, kept)) return r;
  const index_t out = consumer.out_features();
  const index_t pixels = shape.height * shape.width;
  r.bias.assign(static_cast<std::size_t>(out), 0.0f);
  for (index_t j = 0; j < out; ++j) {
    double acc = consumer.bias.empty() ? 0.0 : static_cast<double>(consumer.bias[static_cast<std::size_t>(j)]);
    for (index_t c = 0; c < shape.channels; ++c) {
      if (kept[static_cast<std::size_t>(c)] != 0) continue;
      const double v = static_cast<double>(constants[static_cast<std::size_t>(c)]);
      for (index_t p = 0; p < pixels; ++p)
        acc += static_cast<double>(consumer.weight(j, p * shape.channels + c)) * v;
    }
    r.bias[static_cast<std::size_t>(j)] = static_cast<float>(acc);
  }
  return r;
}

}  // namespace qprune::prune

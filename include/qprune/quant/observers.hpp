// Calibration observers: policies that accumulate statistics of tensors over
// calibration batches and turn them into quantization parameters. PyTorch 1.13's
// MinMax, MovingAverageMinMax, PerChannel(MovingAverage)MinMax and Histogram
// observers bit for bit, ONNX Runtime's percentile and entropy calibrators bit for
// bit, and an MSE-optimal symmetric weight-scale search. Formulas, tie rules and
// deviations: doc/quantization.md §9.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/qparams.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::quant {

/// A closed real range [lo, hi] chosen by a calibrator (lo <= hi).
struct value_range {
  float lo = 0.0f;
  float hi = 0.0f;
  friend bool operator==(const value_range&, const value_range&) = default;
};

/// The contract every per-tensor observer meets: it accumulates batches and counts
/// them. Each one also has a qprune-default `params(qrange, scheme)`; the framework
/// modes add `calculate_qparams(...)` or `compute_range()`.
template <class O>
concept calibration_observer = requires(O& o, const O& co, std::span<const float> x) {
  o.observe(x);
  o.reset();
  { co.batches_seen() } -> std::convertible_to<index_t>;
  { co.values_seen() } -> std::convertible_to<index_t>;
};

namespace detail::observers_impl {

using quant::detail::unfused;

enum class nonfinite : std::uint8_t { reject, drop_inf };

/// Throws config_error for an empty batch, a NaN, or (reject) an infinity; the
/// message names the first offending index.
inline void check_batch(std::span<const float> x, nonfinite rule) {
  if (x.empty()) throw config_error("calibration batch is empty (expected at least one value)");
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      throw config_error("calibration batch contains NaN at index " + std::to_string(i) +
                         " (expected finite values)");
    }
    if (rule == nonfinite::reject && std::isinf(x[i])) {
      throw config_error("calibration batch contains an infinity at index " + std::to_string(i) +
                         " (expected finite values: the scale would be infinite)");
    }
  }
}

inline value_range min_max(std::span<const float> x) noexcept {
  value_range r{x[0], x[0]};
  for (const float v : x) {
    r.lo = std::min(r.lo, v);
    r.hi = std::max(r.hi, v);
  }
  return r;
}

/// Calls f(linear position in row-major order of the extents, element) for every
/// element of a view of any layout.
template <class T, std::size_t R, class L, class F>
void for_each_element(const tensor_view<T, R, L>& v, F&& f) {
  if (v.size() == 0) return;
  std::array<index_t, R> idx{};
  const index_t n = v.size();
  for (index_t k = 0; k < n; ++k) {
    index_t off = 0;
    for (std::size_t r = 0; r < R; ++r) off += idx[r] * v.stride(r);
    f(idx, v.data_handle()[off]);
    for (std::size_t r = R; r-- > 0;) {
      if (++idx[r] < v.extent(r)) break;
      idx[r] = 0;
    }
  }
}

/// The elements of a view as one contiguous span: directly for dense layouts,
/// through `buf` otherwise (element order does not matter to any observer).
template <class T, std::size_t R, class L>
std::span<const float> as_span(const tensor_view<T, R, L>& v, std::vector<float>& buf) {
  if constexpr (!std::same_as<L, layout_stride>) {
    return std::span<const float>(v.data_handle(), static_cast<std::size_t>(v.size()));
  } else {
    buf.clear();
    buf.reserve(static_cast<std::size_t>(v.size()));
    for_each_element(v, [&](const auto&, float x) { buf.push_back(x); });
    return std::span<const float>(buf);
  }
}

/// PyTorch's float32 sum (ATen cascade_sum, cpu/SumKernel.cpp) of a contiguous
/// 1-D tensor on an AVX2 build (Vectorized<float> has 8 lanes): 8 lanes x 4
/// interleaved rows, partial sums cascaded in levels of 2^max(4, ceil(log2 n)/4)
/// rows, then the lanes added in order. Used where torch calls .sum() on a float
/// tensor, so the observer reproduces its rounding. (An AVX-512 build of torch uses
/// 16 lanes and can differ in the last bit.)
struct torch_cascade {
  template <class Acc, class Load>
  static std::array<Acc, 4> multi_row_sum(Load load, index_t size, Acc zero) {
    constexpr std::size_t num_levels = 4;
    index_t cl2 = 1;
    if (size > 2) {
      cl2 = 0;
      for (auto v = static_cast<std::uint64_t>(size - 1); v != 0; v >>= 1) ++cl2;
    }
    const index_t level_power = std::max<index_t>(4, cl2 / static_cast<index_t>(num_levels));
    const index_t level_step = index_t{1} << level_power;
    const index_t level_mask = level_step - 1;
    std::array<std::array<Acc, 4>, num_levels> acc{};
    for (auto& a : acc) a.fill(zero);
    index_t i = 0;
    while (i + level_step <= size) {
      for (index_t j = 0; j < level_step; ++j, ++i) {
        for (std::size_t k = 0; k < 4; ++k) acc[0][k] = add(acc[0][k], load(i, k));
      }
      for (std::size_t j = 1; j < num_levels; ++j) {
        for (std::size_t k = 0; k < 4; ++k) {
          acc[j][k] = add(acc[j][k], acc[j - 1][k]);
          acc[j - 1][k] = zero;
        }
        if ((i & (level_mask << (static_cast<index_t>(j) * level_power))) != 0) break;
      }
    }
    for (; i < size; ++i) {
      for (std::size_t k = 0; k < 4; ++k) acc[0][k] = add(acc[0][k], load(i, k));
    }
    for (std::size_t j = 1; j < num_levels; ++j) {
      for (std::size_t k = 0; k < 4; ++k) acc[0][k] = add(acc[0][k], acc[j][k]);
    }
    return acc[0];
  }
  template <class Acc, class Load>
  static Acc row_sum(Load load, index_t size, Acc zero) {
    const index_t size_ilp = size / 4;
    auto ps = multi_row_sum<Acc>(
        [&](index_t i, std::size_t k) { return load(i * 4 + static_cast<index_t>(k)); }, size_ilp, zero);
    for (index_t i = size_ilp * 4; i < size; ++i) ps[0] = add(ps[0], load(i));
    for (std::size_t k = 1; k < 4; ++k) ps[0] = add(ps[0], ps[k]);
    return ps[0];
  }
  using lanes = std::array<float, 8>;
  static float add(float a, float b) noexcept { return a + b; }
  static lanes add(const lanes& a, const lanes& b) noexcept {
    lanes r{};
    for (std::size_t l = 0; l < 8; ++l) r[l] = a[l] + b[l];
    return r;
  }
  static float sum(std::span<const float> a) {
    const auto n = static_cast<index_t>(a.size());
    if (n >= 8) {
      const index_t vs = n / 8;
      const lanes v = row_sum<lanes>(
          [&](index_t i) {
            lanes r{};
            for (std::size_t l = 0; l < 8; ++l) r[l] = a[static_cast<std::size_t>(i * 8) + l];
            return r;
          },
          vs, lanes{});
      float acc = 0.0f;
      for (index_t k = vs * 8; k < n; ++k) acc += a[static_cast<std::size_t>(k)];
      for (std::size_t l = 0; l < 8; ++l) acc += v[l];
      return 0.0f + acc;
    }
    return 0.0f + row_sum<float>([&](index_t i) { return a[static_cast<std::size_t>(i)]; }, n, 0.0f);
  }
};

/// torch.cumsum of a float32 tensor on the CPU: a float64 running sum, each
/// prefix rounded to float32.
inline std::vector<float> torch_cumsum(std::span<const float> a) {
  std::vector<float> out(a.size());
  double acc = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    acc += static_cast<double>(a[i]);
    out[i] = static_cast<float>(acc);
  }
  return out;
}

/// c10::div_floor_floating, the float32 `torch.div(a, b, rounding_mode='floor')`:
///   mod = fmod(a, b); div = (a - mod) / b; div -= 1 if mod != 0 and sign(b) != sign(mod);
///   floordiv = floor(div), + 1 if div - floor(div) > 0.5 (0 keeps the sign of a / b).
inline float torch_div_floor(float a, float b) noexcept {
  if (b == 0.0f) return a / b;
  const float mod = std::fmod(a, b);
  float div = (a - mod) / b;
  if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f))) div -= 1.0f;
  if (div != 0.0f) {
    float fd = std::floor(div);
    if (div - fd > 0.5f) fd += 1.0f;
    return fd;
  }
  return std::copysign(0.0f, a / b);
}

/// numpy's npy_floor_divide on doubles (Python's a // b for float64 scalars).
inline double numpy_floor_divide(double a, double b) noexcept {
  if (b == 0.0) return a / b;
  const double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0 && ((b < 0.0) != (mod < 0.0))) div -= 1.0;
  if (div != 0.0) {
    double fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
    return fd;
  }
  return std::copysign(0.0, a / b);
}

/// numpy's float32 pairwise summation (np.add.reduce on a contiguous float32
/// array): blocks of <= 128 summed with 8 interleaved accumulators, larger ones
/// split in two at a multiple of 8; the reduction starts from the identity 0.
inline float numpy_pairwise(const float* a, std::size_t n) noexcept {
  if (n < 8) {
    float r = 0.0f;
    for (std::size_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    std::array<float, 8> r{};
    for (std::size_t j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (std::size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise(a, n2) + numpy_pairwise(a + n2, n - n2);
}

inline float numpy_sum(std::span<const float> a) noexcept {
  return 0.0f + numpy_pairwise(a.data(), a.size());
}

/// Rejects PyTorch configurations torch itself rejects in an observer's constructor.
inline void check_pytorch_config(const pytorch::observer_config& c, bool per_channel,
                                 const char* observer) {
  const bool pc = c.scheme == pytorch::qscheme::per_channel_affine ||
                  c.scheme == pytorch::qscheme::per_channel_symmetric;
  if (pc != per_channel) {
    throw config_error(std::string(observer) + " supports only " +
                       (per_channel ? "per-channel" : "per-tensor") +
                       " qschemes (PyTorch raises NotImplementedError)");
  }
  if (pytorch::is_symmetric(c.scheme) && c.reduce_range && c.type == dtype::uint8) {
    throw config_error("symmetric quint8 observers cannot reduce the range (PyTorch raises "
                       "NotImplementedError)");
  }
  static_cast<void>(pytorch::effective_range(c));
}

[[noreturn]] inline void throw_unobserved() {
  throw config_error("the observer has seen no calibration batch (call observe() first)");
}

/// qprune's rule on a [lo, hi] range: affine -> choose_affine_params(lo, hi, r);
/// symmetric -> choose_symmetric_params(max(|lo|, |hi|), r).
inline affine_params qprune_params(float lo, float hi, qrange r, scheme s) {
  if (s == scheme::affine) return choose_affine_params(lo, hi, r);
  return choose_symmetric_params(std::max(std::fabs(lo), std::fabs(hi)), r);
}

inline void check_averaging_constant(float c) {
  if (!(c >= 0.0f && c <= 1.0f)) {
    throw config_error("averaging constant " + std::to_string(c) + " is invalid (expected 0 <= c <= 1)");
  }
}

}  // namespace detail::observers_impl

// ---------------------------------------------------------------------------
// Min / max observers
// ---------------------------------------------------------------------------

/// Running minimum and maximum over every batch (PyTorch's MinMaxObserver):
///   x_min = min(x_min, min X), x_max = max(x_max, max X); before the first batch
///   x_min = +inf, x_max = -inf.
/// Inputs: a batch must be non-empty and finite (config_error otherwise: an
/// infinity would make the scale infinite; NaN is rejected instead of propagated
/// as torch does).
class minmax_observer {
 public:
  /// Adds one batch. Throws config_error (empty batch, NaN, infinity); the state
  /// is unchanged when it throws.
  void observe(std::span<const float> x) {
    detail::observers_impl::check_batch(x, detail::observers_impl::nonfinite::reject);
    const value_range b = detail::observers_impl::min_max(x);
    min_ = std::min(b.lo, min_);
    max_ = std::max(b.hi, max_);
    ++batches_;
    values_ += static_cast<index_t>(x.size());
  }
  /// Adds one batch given as a view of any rank and layout.
  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    std::vector<float> buf;
    observe(detail::observers_impl::as_span(v, buf));
  }

  /// Running minimum (+inf before the first batch).
  [[nodiscard]] float min() const noexcept { return min_; }
  /// Running maximum (-inf before the first batch).
  [[nodiscard]] float max() const noexcept { return max_; }
  [[nodiscard]] index_t batches_seen() const noexcept { return batches_; }
  [[nodiscard]] index_t values_seen() const noexcept { return values_; }
  /// Forgets every batch (PyTorch's reset_min_max_vals).
  void reset() noexcept { *this = minmax_observer{}; }

  /// PyTorch's MinMaxObserver.calculate_qparams(): pytorch::calculate_qparams(min, max, c),
  /// bit for bit; (1.0, 0) before the first batch. Throws config_error for a
  /// per-channel qscheme or symmetric quint8 with reduce_range (torch rejects both).
  [[nodiscard]] affine_params calculate_qparams(const pytorch::observer_config& c) const {
    detail::observers_impl::check_pytorch_config(c, false, "MinMaxObserver");
    return pytorch::calculate_qparams(min_, max_, c);
  }
  /// qprune's parameters for the observed range: affine -> choose_affine_params(min,
  /// max, r); symmetric -> choose_symmetric_params(max(|min|, |max|), r).
  /// Throws config_error before the first batch.
  [[nodiscard]] affine_params params(qrange r, scheme s) const {
    if (batches_ == 0) detail::observers_impl::throw_unobserved();
    return detail::observers_impl::qprune_params(min_, max_, r, s);
  }

 private:
  float min_ = std::numeric_limits<float>::infinity();
  float max_ = -std::numeric_limits<float>::infinity();
  index_t batches_ = 0;
  index_t values_ = 0;
};

/// Exponential moving average of the batch minimum and maximum (PyTorch's
/// MovingAverageMinMaxObserver). The first batch initialises x_min = min X,
/// x_max = max X; every later batch updates, in float32 as torch computes it
/// (the product is rounded before the addition):
///   x_min <- x_min + c * (min X - x_min),   x_max <- x_max + c * (max X - x_max)
/// with c = averaging_constant (default 0.01f, torch's python 0.01 as float32).
class moving_average_minmax_observer {
 public:
  /// Throws config_error unless 0 <= averaging_constant <= 1.
  explicit moving_average_minmax_observer(float averaging_constant = 0.01f)
      : c_(averaging_constant) {
    detail::observers_impl::check_averaging_constant(c_);
  }

  /// Adds one batch (same input rules as minmax_observer::observe).
  void observe(std::span<const float> x) {
    namespace oi = detail::observers_impl;
    oi::check_batch(x, oi::nonfinite::reject);
    const value_range b = oi::min_max(x);
    if (batches_ == 0) {
      min_ = b.lo;
      max_ = b.hi;
    } else {
      min_ = min_ + oi::unfused(c_ * (b.lo - min_));
      max_ = max_ + oi::unfused(c_ * (b.hi - max_));
    }
    ++batches_;
    values_ += static_cast<index_t>(x.size());
  }
  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    std::vector<float> buf;
    observe(detail::observers_impl::as_span(v, buf));
  }

  [[nodiscard]] float min() const noexcept { return min_; }
  [[nodiscard]] float max() const noexcept { return max_; }
  [[nodiscard]] float averaging_constant() const noexcept { return c_; }
  [[nodiscard]] index_t batches_seen() const noexcept { return batches_; }
  [[nodiscard]] index_t values_seen() const noexcept { return values_; }
  /// Forgets every batch; keeps the averaging constant.
  void reset() noexcept { *this = moving_average_minmax_observer(c_); }

  /// pytorch::calculate_qparams(min, max, c), bit for bit (see minmax_observer).
  [[nodiscard]] affine_params calculate_qparams(const pytorch::observer_config& c) const {
    detail::observers_impl::check_pytorch_config(c, false, "MovingAverageMinMaxObserver");
    return pytorch::calculate_qparams(min_, max_, c);
  }
  /// qprune's parameters for the averaged range (see minmax_observer::params).
  [[nodiscard]] affine_params params(qrange r, scheme s) const {
    if (batches_ == 0) detail::observers_impl::throw_unobserved();
    return detail::observers_impl::qprune_params(min_, max_, r, s);
  }

 private:
  float c_;
  float min_ = std::numeric_limits<float>::infinity();
  float max_ = -std::numeric_limits<float>::infinity();
  index_t batches_ = 0;
  index_t values_ = 0;
};

namespace detail::observers_impl {

/// Shared state of the per-channel observers: one running [min, max] per slice
/// along `axis`; `average` selects the moving-average update.
class per_channel_state {
 public:
  per_channel_state(index_t axis, float c) : axis_(axis), c_(c) {
    if (axis < 0) {
      throw config_error("channel axis " + std::to_string(axis) + " is invalid (expected >= 0)");
    }
  }

  template <class T, std::size_t R, class L>
  void observe(const tensor_view<T, R, L>& v, bool average) {
    static_assert(R >= 1, "per-channel observers need a tensor of rank >= 1");
    if (axis_ >= static_cast<index_t>(R)) {
      throw config_error("channel axis " + std::to_string(axis_) + " is out of range for a rank-" +
                         std::to_string(R) + " batch (expected 0 <= axis < " + std::to_string(R) + ")");
    }
    if (v.size() == 0) throw config_error("calibration batch is empty (expected at least one value)");
    const index_t channels = v.extent(static_cast<std::size_t>(axis_));
    if (!mins_.empty() && static_cast<index_t>(mins_.size()) != channels) {
      throw shape_error("batch has " + std::to_string(channels) + " channels along axis " +
                        std::to_string(axis_) + " but the observer has seen " +
                        std::to_string(mins_.size()));
    }
    std::vector<float> lo(static_cast<std::size_t>(channels), std::numeric_limits<float>::infinity());
    std::vector<float> hi(static_cast<std::size_t>(channels), -std::numeric_limits<float>::infinity());
    index_t k = 0;
    for_each_element(v, [&](const std::array<index_t, R>& idx, float x) {
      if (!std::isfinite(x)) {
        throw config_error("calibration batch contains " + std::string(std::isnan(x) ? "NaN" : "an infinity") +
                           " at index " + std::to_string(k) + " (expected finite values)");
      }
      const auto ch = static_cast<std::size_t>(idx[static_cast<std::size_t>(axis_)]);
      lo[ch] = std::min(lo[ch], x);
      hi[ch] = std::max(hi[ch], x);
      ++k;
    });
    if (mins_.empty()) {
      mins_ = std::move(lo);
      maxs_ = std::move(hi);
    } else {
      for (std::size_t ch = 0; ch < mins_.size(); ++ch) {
        if (average) {
          mins_[ch] = mins_[ch] + unfused(c_ * (lo[ch] - mins_[ch]));
          maxs_[ch] = maxs_[ch] + unfused(c_ * (hi[ch] - maxs_[ch]));
        } else {
          mins_[ch] = std::min(lo[ch], mins_[ch]);
          maxs_[ch] = std::max(hi[ch], maxs_[ch]);
        }
      }
    }
    ++batches_;
    values_ += v.size();
  }

  per_channel_params calculate_qparams(const pytorch::observer_config& c, const char* name) const {
    check_pytorch_config(c, true, name);
    per_channel_params p;
    p.axis = axis_;
    if (mins_.empty()) {  // torch: check_min_max_valid fails -> tensor([1.0]), tensor([0])
      p.scales = {1.0f};
      p.zero_points = {0};
      return p;
    }
    for (std::size_t ch = 0; ch < mins_.size(); ++ch) {
      const affine_params a = pytorch::calculate_qparams(mins_[ch], maxs_[ch], c);
      p.scales.push_back(a.scale);
      p.zero_points.push_back(a.zero_point);
    }
    return p;
  }

  per_channel_params params(qrange r, scheme s) const {
    if (mins_.empty()) throw_unobserved();
    per_channel_params p;
    p.axis = axis_;
    for (std::size_t ch = 0; ch < mins_.size(); ++ch) {
      const affine_params a = qprune_params(mins_[ch], maxs_[ch], r, s);
      p.scales.push_back(a.scale);
      p.zero_points.push_back(a.zero_point);
    }
    return p;
  }

  index_t axis_;
  float c_;
  std::vector<float> mins_;
  std::vector<float> maxs_;
  index_t batches_ = 0;
  index_t values_ = 0;
};

}  // namespace detail::observers_impl

/// Running minimum and maximum of every slice along `axis` (PyTorch's
/// PerChannelMinMaxObserver; torch's default axis is 0). A batch is a view of any
/// rank >= 1 and any layout; slice c holds every element whose index along `axis`
/// is c. The number of channels is fixed by the first batch (shape_error if a
/// later batch differs). Inputs must be non-empty and finite (config_error).
class per_channel_minmax_observer {
 public:
  /// Throws config_error for a negative axis (one past the rank is caught in observe()).
  explicit per_channel_minmax_observer(index_t axis = 0) : s_(axis, 1.0f) {}

  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    s_.observe(v, false);
  }

  [[nodiscard]] index_t axis() const noexcept { return s_.axis_; }
  /// Per-channel running minima (empty before the first batch).
  [[nodiscard]] std::span<const float> mins() const noexcept { return s_.mins_; }
  [[nodiscard]] std::span<const float> maxs() const noexcept { return s_.maxs_; }
  [[nodiscard]] index_t batches_seen() const noexcept { return s_.batches_; }
  [[nodiscard]] index_t values_seen() const noexcept { return s_.values_; }
  void reset() noexcept { s_ = detail::observers_impl::per_channel_state(s_.axis_, 1.0f); }

  /// PyTorch's calculate_qparams(): pytorch::calculate_qparams per channel, bit for
  /// bit; before the first batch one channel (1.0, 0), as torch returns. Throws
  /// config_error for a per-tensor qscheme or symmetric quint8 with reduce_range.
  [[nodiscard]] per_channel_params calculate_qparams(const pytorch::observer_config& c) const {
    return s_.calculate_qparams(c, "PerChannelMinMaxObserver");
  }
  /// qprune's parameters per channel (minmax_observer::params for every slice).
  [[nodiscard]] per_channel_params params(qrange r, scheme s) const { return s_.params(r, s); }

 private:
  detail::observers_impl::per_channel_state s_;
};

/// Per-channel exponential moving average of the slice minima and maxima
/// (PyTorch's MovingAveragePerChannelMinMaxObserver): the first batch initialises,
/// later ones update every channel as moving_average_minmax_observer does.
class moving_average_per_channel_minmax_observer {
 public:
  /// Throws config_error unless 0 <= averaging_constant <= 1 and axis >= 0.
  explicit moving_average_per_channel_minmax_observer(float averaging_constant = 0.01f,
                                                      index_t axis = 0)
      : s_(axis, averaging_constant) {
    detail::observers_impl::check_averaging_constant(averaging_constant);
  }

  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    s_.observe(v, true);
  }

  [[nodiscard]] index_t axis() const noexcept { return s_.axis_; }
  [[nodiscard]] float averaging_constant() const noexcept { return s_.c_; }
  [[nodiscard]] std::span<const float> mins() const noexcept { return s_.mins_; }
  [[nodiscard]] std::span<const float> maxs() const noexcept { return s_.maxs_; }
  [[nodiscard]] index_t batches_seen() const noexcept { return s_.batches_; }
  [[nodiscard]] index_t values_seen() const noexcept { return s_.values_; }
  void reset() noexcept { s_ = detail::observers_impl::per_channel_state(s_.axis_, s_.c_); }

  /// See per_channel_minmax_observer::calculate_qparams.
  [[nodiscard]] per_channel_params calculate_qparams(const pytorch::observer_config& c) const {
    return s_.calculate_qparams(c, "MovingAveragePerChannelMinMaxObserver");
  }
  [[nodiscard]] per_channel_params params(qrange r, scheme s) const { return s_.params(r, s); }

 private:
  detail::observers_impl::per_channel_state s_;
};

// ---------------------------------------------------------------------------
// PyTorch HistogramObserver
// ---------------------------------------------------------------------------

/// PyTorch 1.13's HistogramObserver, bit for bit (float32 where torch uses float32
/// tensors, float64 where it uses Python floats). doc/quantization.md §9.3 has the
/// full derivation; in short:
///
/// observe(X) -- infinities are dropped (torch >= 2.1; torch 1.13 raises), NaN throws:
///   * first batch, or min == max so far: min, max = aminmax(X);
///     histogram = histc(X, bins, int(min), int(max))
///   * otherwise: cmin = min(min X, min), cmax = max(max X, max);
///     w = (max - min) / (bins * upsample_rate); d = ceil((cmax - cmin) / (bins * w));
///     cmax += d * (bins * w) - (cmax - cmin); start = round_half_even((min - cmin) / w);
///     h = histc(X, bins, int(cmin), int(cmax)); if the range is unchanged h += histogram,
///     else the old histogram is upsampled (each bin repeated upsample_rate times, placed
///     at `start` in bins*d slots), integrated in float64, sampled every d slots,
///     differenced, divided by upsample_rate and added to h.
///   histc(X, n, lo, hi): lo == hi -> [min X, max X], still equal -> [lo - 1, hi + 1];
///   x outside [lo, hi] is not counted (the int() truncation quirk: values between
///   min and trunc(min) are lost); bin = (int64)((x - lo) * n / (hi - lo)), n -> n - 1.
/// calculate_qparams(): the L2 search of _non_linear_param_search (quantile steps of
///   1e-5, stop when the error rises), then pytorch::calculate_qparams(new_min, new_max).
///   torch.sum and torch.cumsum are reproduced in their CPU order (cascade sum on 8
///   lanes, cumsum with a float64 accumulator).
class histogram_observer {
 public:
  /// Throws config_error unless bins >= 1 and upsample_rate >= 1.
  explicit histogram_observer(index_t bins = 2048, index_t upsample_rate = 128)
      : bins_(bins), upsample_(upsample_rate) {
    if (bins < 1 || upsample_rate < 1) {
      throw config_error("histogram observer needs bins >= 1 and upsample_rate >= 1, got " +
                         std::to_string(bins) + " and " + std::to_string(upsample_rate));
    }
    hist_.assign(static_cast<std::size_t>(bins_), 0.0f);
  }

  /// Adds one batch. Throws config_error for an empty batch, a NaN, a range whose
  /// integer truncation does not fit int64 (torch raises too), or batches whose
  /// ranges differ so much that torch's merge would need more than 2^53 slots.
  /// A batch of only infinities counts as seen and changes nothing else.
  void observe(std::span<const float> x) {
    namespace oi = detail::observers_impl;
    oi::check_batch(x, oi::nonfinite::drop_inf);
    std::vector<float> finite;
    std::span<const float> xs = x;
    if (std::any_of(x.begin(), x.end(), [](float v) { return std::isinf(v); })) {
      finite.reserve(x.size());
      for (const float v : x) {
        if (!std::isinf(v)) finite.push_back(v);
      }
      xs = finite;
    }
    if (xs.empty()) {
      ++batches_;
      return;
    }
    const value_range b = oi::min_max(xs);
    const bool uninitialised = batches_with_data_ == 0;
    if (uninitialised || min_ == max_) {
      std::vector<float> h(hist_.size(), 0.0f);
      histc(xs, b, truncate(b.lo), truncate(b.hi), h);
      hist_ = std::move(h);
      min_ = b.lo;
      max_ = b.hi;
    } else {
      merge(xs, b);
    }
    ++batches_;
    ++batches_with_data_;
    values_ += static_cast<index_t>(xs.size());
  }
  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    std::vector<float> buf;
    observe(detail::observers_impl::as_span(v, buf));
  }

  [[nodiscard]] index_t bins() const noexcept { return bins_; }
  [[nodiscard]] index_t upsample_rate() const noexcept { return upsample_; }
  /// The running histogram (float counts; fractional after merges).
  [[nodiscard]] std::span<const float> histogram() const noexcept { return hist_; }
  /// The range the histogram covers (+inf / -inf before the first batch).
  [[nodiscard]] float min() const noexcept { return min_; }
  [[nodiscard]] float max() const noexcept { return max_; }
  [[nodiscard]] index_t batches_seen() const noexcept { return batches_; }
  /// Finite values that entered the statistics.
  [[nodiscard]] index_t values_seen() const noexcept { return values_; }
  void reset() noexcept {
    std::fill(hist_.begin(), hist_.end(), 0.0f);
    min_ = std::numeric_limits<float>::infinity();
    max_ = -std::numeric_limits<float>::infinity();
    batches_ = batches_with_data_ = values_ = 0;
  }

  /// The [new_min, new_max] torch's _non_linear_param_search returns for a target of
  /// `dst_bins` quantization bins (2^bits of the dtype; 256 for int8 and uint8).
  /// Throws config_error before the first batch or if dst_bins < 1.
  [[nodiscard]] value_range search_range(double dst_bins) const {
    namespace oi = detail::observers_impl;
    if (batches_with_data_ == 0) oi::throw_unobserved();
    if (!(dst_bins >= 1.0)) throw config_error("the search needs at least one destination bin");
    const auto n = static_cast<std::size_t>(bins_);
    const float bin_width = (max_ - min_) / static_cast<float>(bins_);
    const double total = static_cast<double>(oi::torch_cascade::sum(hist_));
    const std::vector<float> csum = oi::torch_cumsum(hist_);
    constexpr double stepsize = 1e-5;
    double alpha = 0.0;
    double beta = 1.0;
    index_t start_bin = 0;
    index_t end_bin = bins_ - 1;
    double norm_min = std::numeric_limits<double>::infinity();
    std::vector<float> norm_buf(n);
    while (alpha < beta) {
      const double next_alpha = alpha + stepsize;
      const double next_beta = beta - stepsize;
      // torch compares a float32 element with a Python float: in float32.
      const auto lo_target = static_cast<float>(next_alpha * total);
      const auto hi_target = static_cast<float>(next_beta * total);
      index_t l = start_bin;
      index_t r = end_bin;
      while (l < end_bin && csum[static_cast<std::size_t>(l)] < lo_target) ++l;
      while (r > start_bin && csum[static_cast<std::size_t>(r)] > hi_target) --r;
      index_t next_start = start_bin;
      index_t next_end = end_bin;
      if ((l - start_bin) > (end_bin - r)) {
        next_start = l;
        alpha = next_alpha;
      } else {
        next_end = r;
        beta = next_beta;
      }
      if (next_start == start_bin && next_end == end_bin) continue;
      const double norm = quantization_error(next_start, next_end, dst_bins, norm_buf);
      if (norm > norm_min) break;
      norm_min = norm;
      start_bin = next_start;
      end_bin = next_end;
    }
    return {min_ + oi::unfused(bin_width * static_cast<float>(start_bin)),
            min_ + oi::unfused(bin_width * static_cast<float>(end_bin + 1))};
  }

  /// PyTorch's HistogramObserver.calculate_qparams(), bit for bit: (1.0, 0) before
  /// the first batch, else pytorch::calculate_qparams(search_range(2^bits(c.type))).
  /// Throws config_error for a per-channel qscheme or symmetric quint8 with reduce_range.
  [[nodiscard]] affine_params calculate_qparams(const pytorch::observer_config& c) const {
    detail::observers_impl::check_pytorch_config(c, false, "HistogramObserver");
    if (batches_with_data_ == 0) return {1.0f, 0};
    const value_range r = search_range(std::ldexp(1.0, bits_of(c.type)));
    return pytorch::calculate_qparams(r.lo, r.hi, c);
  }
  /// qprune's parameters on the searched range: search_range(r.levels() + 1), then
  /// choose_affine_params / choose_symmetric_params. Throws config_error before the
  /// first batch.
  [[nodiscard]] affine_params params(qrange r, scheme s) const {
    validate(r);
    const value_range v = search_range(static_cast<double>(r.levels()) + 1.0);
    return detail::observers_impl::qprune_params(v.lo, v.hi, r, s);
  }

 private:
  /// Python's int() of a float32 0-dim tensor: truncation toward zero; torch then
  /// needs the value as an int64 Scalar.
  static double truncate(float v) {
    const double t = std::trunc(static_cast<double>(v));
    if (!(std::fabs(t) < 9223372036854775808.0)) {
      throw config_error("histogram range bound " + std::to_string(v) +
                         " does not fit int64 (torch 1.13's histc(min=int(min)) fails too)");
    }
    return t;
  }

  /// torch.histc(x, bins, min=lo, max=hi) on the CPU (LINEAR_INTERPOLATION kernel).
  void histc(std::span<const float> x, value_range batch, double lo, double hi,
             std::vector<float>& out) const {
    double left = lo;
    double right = hi;
    if (left == right) {
      left = static_cast<double>(batch.lo);
      right = static_cast<double>(batch.hi);
    }
    if (left == right) {
      left -= 1.0;
      right += 1.0;
    }
    const auto l = static_cast<float>(left);  // linspace's first and last edge
    const auto r = static_cast<float>(right);
    const auto nb = static_cast<float>(bins_);
    for (const float v : x) {
      if (!(v >= l && v <= r)) continue;
      index_t pos = 0;
      if (r > l) {
        const float t = ((v - l) * nb) / (r - l);
        pos = saturate_to_int(t, 0, static_cast<std::int32_t>(std::min<index_t>(bins_, INT32_MAX)), 0);
      }  // r == l (two float32-equal edges): torch divides by zero (UB); qprune uses bin 0
      if (pos >= bins_) pos = bins_ - 1;
      out[static_cast<std::size_t>(pos)] += 1.0f;
    }
  }

  /// The `else` branch of forward(): _adjust_min_max, histc, _combine_histograms.
  void merge(std::span<const float> x, value_range b) {
    namespace oi = detail::observers_impl;
    const float cmin0 = std::min(b.lo, min_);
    float cmax = std::max(b.hi, max_);
    const float hist_bin_width = (max_ - min_) / static_cast<float>(bins_ * upsample_);
    const float span_w = static_cast<float>(bins_) * hist_bin_width;
    const float ratio = (cmax - cmin0) / span_w;
    const float dceil = std::ceil(ratio);
    if (!(dceil >= 1.0f) || !(static_cast<double>(dceil) * static_cast<double>(bins_) < 9007199254740992.0)) {
      throw config_error("batch range [" + std::to_string(b.lo) + ", " + std::to_string(b.hi) +
                         "] cannot be merged into the histogram over [" + std::to_string(min_) + ", " +
                         std::to_string(max_) + "] (torch's merge would need " + std::to_string(dceil) +
                         " x bins slots)");
    }
    const auto downsample = static_cast<index_t>(dceil);
    const float e = oi::unfused(static_cast<float>(downsample) * span_w) - (cmax - cmin0);
    cmax = cmax + e;
    const float cmin = cmin0;
    const auto start_idx = static_cast<index_t>(std::nearbyint((min_ - cmin) / hist_bin_width));
    std::vector<float> h(hist_.size(), 0.0f);
    histc(x, b, truncate(cmin), truncate(cmax), h);
    if (cmin == min_ && cmax == max_) {
      for (std::size_t i = 0; i < h.size(); ++i) h[i] += hist_[i];
    } else {
      // histogram_with_output_range holds the old histogram, each bin repeated
      // upsample_rate times, in slots [start, start + bins * up) of bins * d zeros
      // (torch raises if that slice does not fit; qprune keeps the part that fits).
      // Its float64 cumsum is sampled at slots j*d + d - 1. Zero slots add exactly
      // nothing, so only the occupied slots are visited.
      const index_t total_slots = bins_ * downsample;
      const index_t seg_begin = start_idx;
      const index_t seg_end = std::min(start_idx + bins_ * upsample_, total_slots);
      double acc = 0.0;
      index_t k = seg_begin;
      float prev = 0.0f;  // shifted_integral_histogram[j] (float32)
      for (index_t j = 0; j < bins_; ++j) {
        const index_t sample = j * downsample + downsample - 1;
        for (; k < seg_end && k <= sample; ++k) {
          acc += static_cast<double>(hist_[static_cast<std::size_t>((k - seg_begin) / upsample_)]);
        }
        const double interpolated = (acc - static_cast<double>(prev)) / static_cast<double>(upsample_);
        h[static_cast<std::size_t>(j)] += static_cast<float>(interpolated);
        prev = static_cast<float>(acc);
      }
    }
    hist_ = std::move(h);
    min_ = cmin;
    max_ = cmax;
  }

  /// _compute_quantization_error(next_start_bin, next_end_bin), float32 tensor math
  /// with float64 Python scalars, summed with torch's cascade sum.
  double quantization_error(index_t next_start, index_t next_end, double dst_bins,
                            std::vector<float>& norm) const {
    namespace oi = detail::observers_impl;
    const double bin_width = (static_cast<double>(max_) - static_cast<double>(min_)) /
                             static_cast<double>(bins_);
    const double dst_bin_width =
        bin_width * static_cast<double>(next_end - next_start + 1) / dst_bins;
    if (dst_bin_width == 0.0) return 0.0;
    const auto bw = static_cast<float>(bin_width);
    const auto dbw = static_cast<float>(dst_bin_width);
    const auto half = static_cast<float>(dst_bin_width / 2);
    const auto mhalf = static_cast<float>(-dst_bin_width / 2);
    const auto last_dst = static_cast<float>(dst_bins - 1.0);
    const float mhalf_cube = oi::unfused(oi::unfused(mhalf * mhalf) * mhalf);
    const float half_cube = oi::unfused(oi::unfused(half * half) * half);
    const float inner = (half_cube - mhalf_cube) / 3.0f;
    for (index_t i = 0; i < bins_; ++i) {
      const float src_begin = static_cast<float>(i - next_start) * bw;
      const float src_end = src_begin + bw;
      const float dst_begin = std::clamp(oi::torch_div_floor(src_begin, dbw), 0.0f, last_dst);
      const float dst_begin_center = (dst_begin + 0.5f) * dbw;
      const float dst_end = std::clamp(oi::torch_div_floor(src_end, dbw), 0.0f, last_dst);
      const float density = hist_[static_cast<std::size_t>(i)] / bw;
      const float db = src_begin - dst_begin_center;
      const float db_cube = oi::unfused(oi::unfused(db * db) * db);
      float n = 0.0f;
      n = n + oi::unfused(density * ((half_cube - db_cube) / 3.0f));
      n = n + oi::unfused(((dst_end - dst_begin) - 1.0f) * oi::unfused(density * inner));
      const float dst_end_center = oi::unfused(dst_end * dbw) + half;
      const float de = src_end - dst_end_center;
      const float de_cube = oi::unfused(oi::unfused(de * de) * de);
      n = n + oi::unfused(density * ((de_cube - mhalf_cube) / 3.0f));
      norm[static_cast<std::size_t>(i)] = n;
    }
    return static_cast<double>(oi::torch_cascade::sum(norm));
  }

  index_t bins_;
  index_t upsample_;
  std::vector<float> hist_;
  float min_ = std::numeric_limits<float>::infinity();
  float max_ = -std::numeric_limits<float>::infinity();
  index_t batches_ = 0;
  index_t batches_with_data_ = 0;
  index_t values_ = 0;
};

// ---------------------------------------------------------------------------
// ONNX Runtime calibrators
// ---------------------------------------------------------------------------

namespace detail::ort_calibration {

namespace oi = observers_impl;

/// np.histogram(a, bins=n, range=(first, last)) with equal bins, float32 data.
/// `f32_bounds`: first/last are numpy float32 scalars (their difference is taken
/// in float32), otherwise float64. Edges are np.linspace in float64 rounded to
/// float32; a value goes to bin (intp)((x - first) * norm) in float32, corrected by
/// one against the edges, the last bin closed; values outside [first, last] are dropped.
inline void numpy_histogram_uniform(std::span<const float> a, double first, double last,
                                    bool f32_bounds, index_t n, std::vector<std::int64_t>& counts,
                                    std::vector<float>& edges) {
  if (first == last) {  // _get_outer_edges: the +-0.5 makes them float64
    first -= 0.5;
    last += 0.5;
    f32_bounds = false;
  }
  const auto nn = static_cast<std::size_t>(n);
  edges.assign(nn + 1, 0.0f);
  const double step = (last - first) / static_cast<double>(n);
  for (std::size_t i = 0; i < nn; ++i) {
    edges[i] = static_cast<float>(oi::unfused(static_cast<double>(i) * step) + first);
  }
  edges[nn] = static_cast<float>(last);
  double norm = 0.0;
  if (f32_bounds) {
    norm = static_cast<double>(n) /
           static_cast<double>(static_cast<float>(last) - static_cast<float>(first));
  } else {
    norm = static_cast<double>(n) / (last - first);
  }
  const auto normf = static_cast<float>(norm);
  const auto fe = static_cast<float>(first);
  const auto le = static_cast<float>(last);
  counts.assign(nn, 0);
  for (const float x : a) {
    if (!(x >= fe && x <= le)) continue;
    const float f = (x - fe) * normf;
    index_t idx = f >= static_cast<float>(n) ? n : static_cast<index_t>(f);
    if (idx == n) --idx;
    if (x < edges[static_cast<std::size_t>(idx)]) --idx;
    if (idx < n - 1 && x >= edges[static_cast<std::size_t>(idx + 1)]) ++idx;
    if (idx < 0) continue;  // unreachable: edges[0] == float(first)
    ++counts[static_cast<std::size_t>(idx)];
  }
}

/// np.histogram(a, bins=edges) for explicit, non-decreasing edges: bin i counts
/// edges[i] <= x < edges[i+1], the last bin also x == edges[n]; others are dropped.
inline void numpy_histogram_edges(std::span<const float> a, std::span<const double> edges,
                                  std::vector<std::int64_t>& counts) {
  const std::size_t n = edges.size() - 1;
  counts.assign(n, 0);
  for (const float x : a) {
    const auto v = static_cast<double>(x);
    if (!(v >= edges.front() && v <= edges.back())) continue;
    auto i = static_cast<std::size_t>(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin());
    i = i == 0 ? 0 : i - 1;
    if (i >= n) i = n - 1;
    ++counts[i];
  }
}

/// ORT's HistogramCollector.collect_value state: a histogram over [-t, t] that
/// grows symmetrically (merge_histogram). `threshold_f32` tracks numpy's dtype of t
/// (float32 until the first growth, float64 after).
struct value_histogram {
  std::vector<std::int64_t> hist;
  std::vector<float> edges;
  float min = 0.0f;
  float max = 0.0f;
  double threshold = 0.0;
  bool threshold_f32 = true;
  bool empty = true;

  void collect(std::span<const float> x, index_t num_bins) {
    const value_range b = oi::min_max(x);
    const float t = std::max(std::fabs(b.lo), std::fabs(b.hi));
    if (empty) {
      numpy_histogram_uniform(x, -static_cast<double>(t), static_cast<double>(t), true, num_bins, hist,
                              edges);
      min = b.lo;
      max = b.hi;
      threshold = static_cast<double>(t);
      threshold_f32 = true;
      empty = false;
      return;
    }
    std::vector<std::int64_t> h;
    if (static_cast<double>(t) <= threshold) {
      std::vector<float> unused;
      numpy_histogram_uniform(x, -threshold, threshold, threshold_f32,
                              static_cast<index_t>(hist.size()), h, unused);
      for (std::size_t i = 0; i < h.size(); ++i) hist[i] += h[i];
    } else if (threshold == 0.0) {
      numpy_histogram_uniform(x, -static_cast<double>(t), static_cast<double>(t), true,
                              static_cast<index_t>(hist.size()), h, edges);
      for (std::size_t i = 0; i < h.size(); ++i) h[i] += hist[i];
      hist = std::move(h);
      threshold = static_cast<double>(t);
      threshold_f32 = true;
    } else {
      const auto old_bins = static_cast<index_t>(hist.size());
      const double old_stride = 2.0 * threshold / static_cast<double>(old_bins);
      const double diff = threshold_f32 ? static_cast<double>(t - static_cast<float>(threshold))
                                        : static_cast<double>(t) - threshold;
      const double q = oi::numpy_floor_divide(diff, old_stride) + 1.0;
      if (!(q < 1e15)) throw config_error("batch range grows the histogram beyond 10^15 bins");
      const auto half = static_cast<index_t>(q);
      const index_t new_bins = old_bins + 2 * half;
      const double new_t = oi::unfused(static_cast<double>(half) * old_stride) + threshold;
      numpy_histogram_uniform(x, -new_t, new_t, false, new_bins, h, edges);
      for (index_t i = 0; i < old_bins; ++i) {
        h[static_cast<std::size_t>(half + i)] += hist[static_cast<std::size_t>(i)];
      }
      hist = std::move(h);
      threshold = new_t;
      threshold_f32 = false;
    }
    min = std::min(min, b.lo);
    max = std::max(max, b.hi);
  }
};

/// ORT's collect_absolute_value state: a histogram of |x| over [min|x|, max|x|]
/// of the first batch, extended to the right by whole bins (np.arange) when a
/// later batch exceeds it.
struct abs_histogram {
  std::vector<std::int64_t> hist;
  std::vector<float> edges;
  float min = 0.0f;
  float max = 0.0f;
  bool empty = true;

  void collect(std::span<const float> x, index_t num_bins) {
    const value_range b = oi::min_max(x);
    std::vector<float> ax(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
    const value_range ab = oi::min_max(ax);
    if (empty) {
      numpy_histogram_uniform(ax, static_cast<double>(ab.lo), static_cast<double>(ab.hi), true,
                              num_bins, hist, edges);
      min = b.lo;
      max = b.hi;
      empty = false;
      return;
    }
    std::vector<double> e(edges.begin(), edges.end());
    if (ab.hi > edges.back()) {
      // np.arange(edges[-1] + width, amax + width, width) on numpy float32 scalars:
      // length ceil((stop - start) / width) in float32, values in float64:
      // v0 = start, v1 = float32(start + width), v_i = v0 + i * (v1 - v0).
      const float width = edges[1] - edges[0];
      const float start = edges.back() + width;
      const float stop = ab.hi + width;
      const double len = std::ceil(static_cast<double>((stop - start) / width));
      if (!(len < 1e9)) throw config_error("batch range grows the |x| histogram beyond 10^9 bins");
      const auto count = len > 0.0 ? static_cast<index_t>(len) : index_t{0};
      const auto v0 = static_cast<double>(start);
      const auto v1 = static_cast<double>(static_cast<float>(start + width));
      const double delta = v1 - v0;
      for (index_t i = 0; i < count; ++i) {
        e.push_back(i == 0 ? v0 : (i == 1 ? v1 : v0 + oi::unfused(static_cast<double>(i) * delta)));
      }
    }
    std::vector<std::int64_t> h;
    numpy_histogram_edges(ax, e, h);
    for (std::size_t i = 0; i < hist.size(); ++i) h[i] += hist[i];
    hist = std::move(h);
    edges.resize(e.size());
    for (std::size_t i = 0; i < e.size(); ++i) edges[i] = static_cast<float>(e[i]);
    min = std::min(min, b.lo);
    max = std::max(max, b.hi);
  }
};

/// ORT's smooth_distribution on an int64 histogram, in float32:
///   zero bins -> 0.0001f, others -> float(p) + float(-eps1), eps1 = 0.0001 * zeros / nonzeros.
/// Returns false when every bin is zero (ORT returns None). Throws config_error where
/// ORT's `assert eps1 < 1.0` fails.
inline bool smooth_distribution(std::span<const std::int64_t> p, std::vector<float>& out) {
  std::size_t zeros = 0;
  for (const auto v : p) zeros += v == 0 ? 1 : 0;
  const std::size_t nonzeros = p.size() - zeros;
  if (nonzeros == 0) return false;
  const double eps1 = 0.0001 * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  if (!(eps1 < 1.0)) {
    throw config_error("entropy calibration: " + std::to_string(zeros) + " empty bins against " +
                       std::to_string(nonzeros) +
                       " non-empty ones (ONNX Runtime's smooth_distribution asserts eps1 < 1)");
  }
  const auto eps_f = static_cast<float>(0.0001);
  const auto neg_eps1 = static_cast<float>(-eps1);
  out.resize(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    const auto pf = static_cast<float>(p[i]);
    out[i] = p[i] == 0 ? pf + eps_f : pf + neg_eps1;
  }
  return true;
}

/// scipy.stats.entropy(p, q) (scipy 1.10) on float32 inputs: p and q normalised by
/// their float32 numpy sums, rel_entr(p_i, q_i) = p_i * log(p_i / q_i) in double
/// rounded to float32, summed with numpy's float32 pairwise sum.
inline float kl_divergence(std::span<const float> p, std::span<const float> q) {
  const float ps = oi::numpy_sum(p);
  const float qs = oi::numpy_sum(q);
  std::vector<float> vec(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    const float pk = p[i] / ps;
    const float qk = q[i] / qs;
    const auto x = static_cast<double>(pk);
    const auto y = static_cast<double>(qk);
    double r = 0.0;
    if (std::isnan(x) || std::isnan(y)) {
      r = std::numeric_limits<double>::quiet_NaN();
    } else if (x > 0 && y > 0) {
      r = x * std::log(x / y);
    } else if (x == 0 && y >= 0) {
      r = 0.0;
    } else {
      r = std::numeric_limits<double>::infinity();
    }
    vec[i] = static_cast<float>(r);
  }
  return oi::numpy_sum(vec);
}

}  // namespace detail::ort_calibration

namespace onnxruntime {

/// Which values ORT's percentile calibrator histograms.
enum class percentile_mode : std::uint8_t {
  symmetric,   ///< |x| (collect_absolute_value); ORT's default for CalibrationMethod.Percentile
  asymmetric,  ///< x over [-t, t] (collect_value)
};

/// ONNX Runtime's percentile calibration (HistogramCollector with method
/// "percentile"), bit for bit with its numpy arithmetic (doc/quantization.md §9.4):
///   symmetric:  histogram of |x| over [min|x|, max|x|] of the first batch (num_bins
///               equal bins); later batches extend it to the right with np.arange
///               bins of the same width, values below the first edge are dropped.
///               cdf = cumsum(hist / total) (float64); i = searchsorted(cdf, p / 100);
///               range = (-edge[i], edge[i])
///   asymmetric: histogram of x over [-t, t], t = max|x|, grown symmetrically as in
///               entropy_calibrator; cut = (100 - p) / 200;
///               range = (edge[searchsorted(cdf, cut)], edge[searchsorted(cdf, 1 - cut)])
///   then lo = max(lo, min x) and hi = min(hi, max x) over every batch seen.
/// Defaults: num_bins 2048, percentile 99.999 (ORT's create_calibrator defaults).
class percentile_calibrator {
 public:
  /// Throws config_error unless num_bins >= 1 and 0 <= percentile <= 100.
  explicit percentile_calibrator(index_t num_bins = 2048, double percentile = 99.999,
                                 percentile_mode mode = percentile_mode::symmetric)
      : num_bins_(num_bins), percentile_(percentile), mode_(mode) {
    if (num_bins < 1) throw config_error("percentile calibration needs num_bins >= 1");
    if (!(percentile >= 0.0 && percentile <= 100.0)) {
      throw config_error("percentile " + std::to_string(percentile) +
                         " is invalid (expected 0 <= percentile <= 100)");
    }
  }

  /// Adds one batch. Throws config_error for an empty batch, NaN or an infinity
  /// (np.histogram raises on a non-finite range).
  void observe(std::span<const float> x) {
    namespace oi = quant::detail::observers_impl;
    oi::check_batch(x, oi::nonfinite::reject);
    if (mode_ == percentile_mode::symmetric) {
      abs_.collect(x, num_bins_);
    } else {
      val_.collect(x, num_bins_);
    }
    ++batches_;
    values_ += static_cast<index_t>(x.size());
  }
  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    std::vector<float> buf;
    observe(quant::detail::observers_impl::as_span(v, buf));
  }

  /// The calibrated range (compute_percentile). Throws config_error before the first batch.
  [[nodiscard]] value_range compute_range() const {
    if (batches_ == 0) quant::detail::observers_impl::throw_unobserved();
    const auto& hist = histogram();
    const auto& edges = mode_ == percentile_mode::symmetric ? abs_.edges : val_.edges;
    const float mn = min();
    const float mx = max();
    std::int64_t total = 0;
    for (const auto v : hist) total += v;
    std::vector<double> cdf(hist.size());
    double acc = 0.0;
    for (std::size_t i = 0; i < hist.size(); ++i) {
      acc += static_cast<double>(hist[i]) / static_cast<double>(total);
      cdf[i] = acc;
    }
    auto search = [&](double v) {
      return static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), v) - cdf.begin());
    };
    value_range r;
    if (mode_ == percentile_mode::symmetric) {
      const float e = edges[search(percentile_ / 100.0)];
      r = {-e, e};
    } else {
      const double cut = (100.0 - percentile_) / 200.0;
      r = {edges[search(cut)], edges[search(1.0 - cut)]};
    }
    if (r.lo < mn) r.lo = mn;
    if (r.hi > mx) r.hi = mx;
    return r;
  }
  /// qprune's parameters on the calibrated range (choose_affine_params /
  /// choose_symmetric_params). ORT's own: onnxruntime::compute_scale_zp(range.lo,
  /// range.hi, qrange_for(type, reduce_range, symmetric), symmetric).
  [[nodiscard]] affine_params params(qrange r, scheme s) const {
    const value_range v = compute_range();
    return quant::detail::observers_impl::qprune_params(v.lo, v.hi, r, s);
  }

  /// Histogram counts (int64, as np.histogram returns them).
  [[nodiscard]] const std::vector<std::int64_t>& histogram() const noexcept {
    return mode_ == percentile_mode::symmetric ? abs_.hist : val_.hist;
  }
  /// Bin edges (float32, histogram().size() + 1 of them).
  [[nodiscard]] std::span<const float> edges() const noexcept {
    return mode_ == percentile_mode::symmetric ? abs_.edges : val_.edges;
  }
  /// Minimum / maximum of the raw values of every batch.
  [[nodiscard]] float min() const noexcept { return mode_ == percentile_mode::symmetric ? abs_.min : val_.min; }
  [[nodiscard]] float max() const noexcept { return mode_ == percentile_mode::symmetric ? abs_.max : val_.max; }
  [[nodiscard]] index_t batches_seen() const noexcept { return batches_; }
  [[nodiscard]] index_t values_seen() const noexcept { return values_; }
  void reset() noexcept { *this = percentile_calibrator(num_bins_, percentile_, mode_); }

 private:
  index_t num_bins_;
  double percentile_;
  percentile_mode mode_;
  quant::detail::ort_calibration::abs_histogram abs_;
  quant::detail::ort_calibration::value_histogram val_;
  index_t batches_ = 0;
  index_t values_ = 0;
};

/// ONNX Runtime's entropy (KL-divergence, TensorRT-style) calibration,
/// HistogramCollector with method "entropy", bit for bit (doc/quantization.md §9.5):
///   collect: histogram of x over [-t, t], t = max|x| of the first batch; a batch with
///     a larger t grows it by h = int((t_new - t) // (2t/n) + 1) bins on each side,
///     t <- h * (2t/n) + t (float64); a first batch of zeros is replaced, bin for bin.
///   compute_range: for i = nq/2 .. n/2 (n = bins, nq = num_quantized_bins):
///     slice = hist[n/2 - i : min(n/2 + i + 1, n)]; p = slice with the outlier counts
///     added to its first and last bin; the slice (without outliers) merged into nq
///     groups of m = len / nq bins (the remainder added to the last group); q = each
///     group's sum / (number of nonzero p in the group), truncated to int64 and written
///     to every position of the group (ORT fills zero-p positions too, and leaves the
///     remainder positions [nq*m, len) at 0); p and q smoothed (smooth_distribution);
///     KL = scipy.stats.entropy(p, q), +inf when q is all zero;
///     the threshold pair (edge[start], edge[end]) of the smallest KL (first on ties),
///     then clamped to [min x, max x].
/// ORT's defaults: num_bins 128, num_quantized_bins 128 -- with a single batch the
/// only candidate is the whole histogram, i.e. [min x, max x].
class entropy_calibrator {
 public:
  /// Throws config_error unless num_bins >= 1, num_quantized_bins >= 1 and
  /// num_bins / 2 >= num_quantized_bins / 2 (ORT fails otherwise).
  explicit entropy_calibrator(index_t num_bins = 128, index_t num_quantized_bins = 128)
      : num_bins_(num_bins), nq_(num_quantized_bins) {
    if (num_bins < 1 || num_quantized_bins < 1 || num_bins / 2 < num_quantized_bins / 2) {
      throw config_error("entropy calibration needs num_bins >= 1, num_quantized_bins >= 1 and "
                         "num_bins / 2 >= num_quantized_bins / 2, got " + std::to_string(num_bins) +
                         " and " + std::to_string(num_quantized_bins));
    }
  }

  /// Adds one batch. Throws config_error for an empty batch, NaN or an infinity.
  void observe(std::span<const float> x) {
    namespace oi = quant::detail::observers_impl;
    oi::check_batch(x, oi::nonfinite::reject);
    val_.collect(x, num_bins_);
    ++batches_;
    values_ += static_cast<index_t>(x.size());
  }
  template <class T, std::size_t R, class L>
    requires std::same_as<std::remove_cv_t<T>, float>
  void observe(const tensor_view<T, R, L>& v) {
    std::vector<float> buf;
    observe(quant::detail::observers_impl::as_span(v, buf));
  }

  /// KL divergence of every candidate threshold i = nq/2 .. n/2 (float32 values;
  /// +inf where q smooths to nothing). Throws config_error before the first batch.
  [[nodiscard]] std::vector<float> kl_divergences() const {
    if (batches_ == 0) quant::detail::observers_impl::throw_unobserved();
    const auto& hist = val_.hist;
    const auto n = static_cast<index_t>(hist.size());
    const index_t zero_bin = n / 2;
    const index_t half_q = nq_ / 2;
    std::vector<float> kl;
    std::vector<std::int64_t> prefix(hist.size() + 1, 0);
    for (std::size_t i = 0; i < hist.size(); ++i) prefix[i + 1] = prefix[i] + hist[i];
    std::vector<std::int64_t> p;
    std::vector<std::int64_t> q;
    std::vector<std::int64_t> qbins(static_cast<std::size_t>(nq_));
    std::vector<float> ps;
    std::vector<float> qs;
    for (index_t i = half_q; i <= zero_bin; ++i) {
      const index_t start = zero_bin - i;
      const index_t end = std::min(zero_bin + i + 1, n);
      const auto len = static_cast<std::size_t>(end - start);
      const auto* sliced = hist.data() + start;
      p.assign(sliced, sliced + len);
      p.front() += prefix[static_cast<std::size_t>(start)];
      p.back() += prefix.back() - prefix[static_cast<std::size_t>(end)];
      const auto merged = static_cast<index_t>(len) / nq_;
      for (index_t k = 0; k < nq_; ++k) {
        std::int64_t s = 0;
        for (index_t j = k * merged; j < (k + 1) * merged; ++j) s += sliced[j];
        qbins[static_cast<std::size_t>(k)] = s;
      }
      for (auto j = static_cast<std::size_t>(nq_ * merged); j < len; ++j) qbins.back() += sliced[j];
      q.assign(len, 0);
      for (index_t k = 0; k < nq_; ++k) {
        index_t norm = 0;
        for (index_t j = k * merged; j < (k + 1) * merged; ++j) {
          norm += p[static_cast<std::size_t>(j)] != 0 ? 1 : 0;
        }
        if (norm != 0) {
          const double v = static_cast<double>(qbins[static_cast<std::size_t>(k)]) / static_cast<double>(norm);
          const auto vi = static_cast<std::int64_t>(v);  // numpy's float -> int64 assignment truncates
          for (index_t j = k * merged; j < (k + 1) * merged; ++j) q[static_cast<std::size_t>(j)] = vi;
        }
      }
      const bool p_ok = quant::detail::ort_calibration::smooth_distribution(p, ps);
      const bool q_ok = quant::detail::ort_calibration::smooth_distribution(q, qs);
      if (!q_ok || !p_ok) {
        kl.push_back(std::numeric_limits<float>::infinity());
      } else {
        kl.push_back(quant::detail::ort_calibration::kl_divergence(ps, qs));
      }
    }
    return kl;
  }

  /// The calibrated range (get_entropy_threshold). Throws config_error before the
  /// first batch.
  [[nodiscard]] value_range compute_range() const {
    const std::vector<float> kl = kl_divergences();
    // np.argmin: the first minimum (a NaN, if any, wins as numpy's does).
    std::size_t best = 0;
    for (std::size_t k = 1; k < kl.size(); ++k) {
      if (std::isnan(kl[best])) break;
      if (std::isnan(kl[k]) || kl[k] < kl[best]) best = k;
    }
    const index_t n = static_cast<index_t>(val_.hist.size());
    const index_t i = nq_ / 2 + static_cast<index_t>(best);
    const index_t start = n / 2 - i;
    const index_t end = std::min(n / 2 + i + 1, n);
    value_range r{val_.edges[static_cast<std::size_t>(start)], val_.edges[static_cast<std::size_t>(end)]};
    if (r.lo < val_.min) r.lo = val_.min;
    if (r.hi > val_.max) r.hi = val_.max;
    return r;
  }
  /// qprune's parameters on the calibrated range (see percentile_calibrator::params).
  [[nodiscard]] affine_params params(qrange r, scheme s) const {
    const value_range v = compute_range();
    return quant::detail::observers_impl::qprune_params(v.lo, v.hi, r, s);
  }

  [[nodiscard]] const std::vector<std::int64_t>& histogram() const noexcept { return val_.hist; }
  [[nodiscard]] std::span<const float> edges() const noexcept { return val_.edges; }
  /// The running threshold t (float64; numpy holds it as float32 until the first growth).
  [[nodiscard]] double threshold() const noexcept { return val_.threshold; }
  [[nodiscard]] float min() const noexcept { return val_.min; }
  [[nodiscard]] float max() const noexcept { return val_.max; }
  [[nodiscard]] index_t batches_seen() const noexcept { return batches_; }
  [[nodiscard]] index_t values_seen() const noexcept { return values_; }
  void reset() noexcept { *this = entropy_calibrator(num_bins_, nq_); }

 private:
  index_t num_bins_;
  index_t nq_;
  quant::detail::ort_calibration::value_histogram val_;
  index_t batches_ = 0;
  index_t values_ = 0;
};

}  // namespace onnxruntime

// ---------------------------------------------------------------------------
// MSE weight-scale search
// ---------------------------------------------------------------------------

/// The grid of clipping ratios mse_weight_search tries:
///   alpha_k = 1 - (1 - min_ratio) * k / steps,  k = 0 .. steps  (1.0 first, min_ratio last).
struct mse_search_options {
  index_t steps = 100;
  float min_ratio = 0.5f;
};

namespace detail::observers_impl {

inline void check_mse_options(const mse_search_options& o, qrange r) {
  validate(r);
  if (o.steps < 0 || !(o.min_ratio > 0.0f && o.min_ratio <= 1.0f)) {
    throw config_error("MSE search needs steps >= 0 and 0 < min_ratio <= 1, got " +
                       std::to_string(o.steps) + " and " + std::to_string(o.min_ratio));
  }
  if (r.qmax <= 0) {
    throw config_error("symmetric quantization needs qmax > 0, got range [" + std::to_string(r.qmin) +
                       ", " + std::to_string(r.qmax) + "]");
  }
}

/// Σ (x - s * clamp(round_half_even(x / s), qmin, qmax))², accumulated in double.
inline double quant_sse(std::span<const float> x, float s, qrange r) noexcept {
  double e = 0.0;
  for (const float v : x) {
    const std::int32_t q = saturate_to_int(std::nearbyint(v / s), r.qmin, r.qmax, 0);
    const double d = static_cast<double>(v) - static_cast<double>(s) * static_cast<double>(q);
    e += d * d;
  }
  return e;
}

inline affine_params mse_search(std::span<const float> x, qrange r, const mse_search_options& o) {
  float absmax = 0.0f;
  for (const float v : x) absmax = std::max(absmax, std::fabs(v));
  affine_params best = choose_symmetric_params(absmax, r);
  if (absmax == 0.0f) return best;
  double best_err = quant_sse(x, best.scale, r);
  for (index_t k = 1; k <= o.steps; ++k) {
    const double alpha = 1.0 - (1.0 - static_cast<double>(o.min_ratio)) * static_cast<double>(k) /
                                   static_cast<double>(o.steps);
    const float clip = static_cast<float>(alpha) * absmax;
    if (!(clip > 0.0f)) break;
    const affine_params p = choose_symmetric_params(clip, r);
    const double err = quant_sse(x, p.scale, r);
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

}  // namespace detail::observers_impl

/// MSE-optimal symmetric scale for weights (per tensor): tries every clipping ratio
/// alpha_k of the grid (mse_search_options: 101 ratios from 1.0 down to 0.5 by
/// default), scale_k = choose_symmetric_params(float(alpha_k) * absmax, r).scale =
/// alpha_k * absmax / qmax, and keeps the one with the smallest
///   SSE(s) = Σ (x - s * clamp(round_half_even(x / s), qmin, qmax))²   (float64 sum)
/// -- strictly smaller wins, so ties keep the larger alpha and the result is never
/// worse than plain absmax (alpha = 1). Zero point 0. All-zero input: scale 1.
/// Throws config_error for an empty or non-finite input, an invalid grid, or qmax <= 0.
[[nodiscard]] inline affine_params mse_weight_search(std::span<const float> w,
                                                     qrange r = narrow_range(dtype::int8),
                                                     const mse_search_options& o = {}) {
  namespace oi = detail::observers_impl;
  oi::check_mse_options(o, r);
  oi::check_batch(w, oi::nonfinite::reject);
  return oi::mse_search(w, r, o);
}

/// The same search for every slice along `axis` of a weight view of any rank and
/// layout (e.g. axis 0: one scale per output channel). Throws config_error for an
/// empty or non-finite input or an axis outside [0, rank).
template <class T, std::size_t R, class L>
  requires std::same_as<std::remove_cv_t<T>, float>
[[nodiscard]] per_channel_params mse_weight_search_per_channel(const tensor_view<T, R, L>& w,
                                                               index_t axis,
                                                               qrange r = narrow_range(dtype::int8),
                                                               const mse_search_options& o = {}) {
  namespace oi = detail::observers_impl;
  oi::check_mse_options(o, r);
  if (axis < 0 || axis >= static_cast<index_t>(R)) {
    throw config_error("channel axis " + std::to_string(axis) + " is out of range for a rank-" +
                       std::to_string(R) + " tensor");
  }
  if (w.size() == 0) throw config_error("weight tensor is empty (expected at least one value)");
  const auto channels = static_cast<std::size_t>(w.extent(static_cast<std::size_t>(axis)));
  std::vector<std::vector<float>> slices(channels);
  oi::for_each_element(w, [&](const std::array<index_t, R>& idx, float x) {
    slices[static_cast<std::size_t>(idx[static_cast<std::size_t>(axis)])].push_back(x);
  });
  per_channel_params p;
  p.axis = axis;
  for (const auto& s : slices) {
    oi::check_batch(s, oi::nonfinite::reject);
    const affine_params a = oi::mse_search(s, r, o);
    p.scales.push_back(a.scale);
    p.zero_points.push_back(a.zero_point);
  }
  return p;
}

static_assert(calibration_observer<minmax_observer>);
static_assert(calibration_observer<moving_average_minmax_observer>);
static_assert(calibration_observer<histogram_observer>);
static_assert(calibration_observer<onnxruntime::percentile_calibrator>);
static_assert(calibration_observer<onnxruntime::entropy_calibrator>);

}  // namespace qprune::quant

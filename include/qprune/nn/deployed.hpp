// The deployable model: what convert() (nn/convert.hpp) turns a trained float or
// QAT network into, and what the .qpr file stores. A runtime sequence of
// inference operations, each owning its weights in their deployed form (float,
// fp16/bf16 panels, packed int8 with requantization, int4 groups, CSR or packed
// N:M) and running on the library's kernels. Activations between operations are
// float, or uint8 codes with one (scale, zero point) when two int8 operations
// follow each other (static int8: requantized in the GEMM's output stage).
// Every op class exposes the stored form of its weights and its settings
// (weight(), codes(), bias(), relu(), geometry(), ...), which nn/model_file.hpp
// writes to and reads from a .qpr file; see each class for what it keeps for that.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "qprune/core/eigen.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/conv2d_s8.hpp"
#include "qprune/kernels/gemm_f16.hpp"
#include "qprune/kernels/gemm_q4.hpp"
#include "qprune/kernels/gemm_s8.hpp"
#include "qprune/kernels/im2col.hpp"
#include "qprune/kernels/quantize.hpp"
#include "qprune/kernels/spmm.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "qprune/quant/dynamic.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/quantize.hpp"
#include "qprune/quant/requantize.hpp"

namespace qprune::nn {

/// An activation between deployed operations: NHWC [batch, height, width,
/// channels] (a Dense activation has height = width = 1), row-major, as float
/// values or as uint8 codes x = scale * (q - zero_point).
struct activation {
  index_t batch = 0, height = 1, width = 1, channels = 0;
  bool quantized = false;
  aligned_vector<float> values;        ///< when !quantized
  aligned_vector<std::uint8_t> codes;  ///< when quantized
  quant::affine_params params{};       ///< of the codes

  /// batch * height * width: the rows of the [pixels, channels] view.
  [[nodiscard]] index_t pixels() const noexcept { return batch * height * width; }
  /// Features per sample, height * width * channels.
  [[nodiscard]] index_t features() const noexcept { return height * width * channels; }
  [[nodiscard]] index_t size() const noexcept { return pixels() * channels; }

  /// Resizes to a float activation of the given shape (values unspecified).
  void set_float(index_t b, index_t h, index_t w, index_t c) {
    batch = b; height = h; width = w; channels = c;
    quantized = false;
    values.resize(static_cast<std::size_t>(size()));
  }
  /// Resizes to a uint8 activation of the given shape and parameters.
  void set_codes(index_t b, index_t h, index_t w, index_t c, quant::affine_params p) {
    batch = b; height = h; width = w; channels = c;
    quantized = true;
    params = p;
    codes.resize(static_cast<std::size_t>(size()));
  }
  /// [batch, features] (the Dense view) of the float values.
  [[nodiscard]] tensor_view<const float, 2> rows() const noexcept { return {values.data(), batch, features()}; }
  [[nodiscard]] tensor_view<float, 2> rows() noexcept { return {values.data(), batch, features()}; }
  /// [pixels, channels] (the conv view) of the float values.
  [[nodiscard]] tensor_view<const float, 2> pixel_rows() const noexcept {
    return {values.data(), pixels(), channels};
  }
};

/// One deployed operation. forward() reads `in` and writes `out` (never the same
/// object); ops keep scratch buffers, so one model must not run forward from two
/// threads at once.
class op {
 public:
  virtual ~op() = default;
  /// A short kind name: "dense.int8", "conv2d.f32", "max_pool2d", ...
  [[nodiscard]] virtual std::string kind() const = 0;
  /// Bytes of the stored weights and parameters (what a file holds for this op).
  [[nodiscard]] virtual std::int64_t weight_bytes() const noexcept { return 0; }
  /// Fraction of weights that are exactly zero / not stored (0 for ops without weights).
  [[nodiscard]] virtual double sparsity() const noexcept { return 0.0; }
  /// Whether the op reads uint8 codes directly (so its producer may requantize for it).
  [[nodiscard]] virtual bool takes_codes() const noexcept { return false; }
  /// The input (scale, zero point) an op that takes codes expects.
  [[nodiscard]] virtual quant::affine_params input_params() const noexcept { return {}; }
  /// Asks an int8 op to emit uint8 codes with parameters `p` (requantization in
  /// its output stage) instead of float; returns false if it cannot.
  virtual bool emit_codes(quant::affine_params /*p*/) { return false; }
  /// Whether the op passes codes through unchanged (pooling, flatten).
  [[nodiscard]] virtual bool passes_codes() const noexcept { return false; }
  /// Runs the op.
  virtual void forward(const activation& in, activation& out) = 0;
};

namespace detail::deployed {

inline void check_features(const activation& in, index_t expected, const std::string& who) {
  if (in.features() != expected) {
    throw shape_error(who + ": input has " + std::to_string(in.features()) +
                      " features per sample (expected " + std::to_string(expected) + ")");
  }
}

inline void check_channels(const activation& in, index_t expected, const std::string& who) {
  if (in.channels != expected) {
    throw shape_error(who + ": input has " + std::to_string(in.channels) + " channels (expected " +
                      std::to_string(expected) + ")");
  }
}

/// A float view of `in`: its values, or its codes dequantized into `scratch`.
inline const float* float_values(const activation& in, aligned_vector<float>& scratch) {
  if (!in.quantized) return in.values.data();
  scratch.resize(static_cast<std::size_t>(in.size()));
  for (std::size_t i = 0; i < scratch.size(); ++i) {
    scratch[i] = quant::dequantize_value(in.codes[i], in.params);
  }
  return scratch.data();
}

/// `in` as uint8 codes with parameters p: its own codes when they already use p,
/// else quantized (x / s rounded half to even, + z, clamped to [0, 255]).
inline const std::uint8_t* codes_for(const activation& in, quant::affine_params p,
                                     aligned_vector<std::uint8_t>& scratch,
                                     aligned_vector<float>& fscratch) {
  if (in.quantized && in.params == p) return in.codes.data();
  const float* x = float_values(in, fscratch);
  scratch.resize(static_cast<std::size_t>(in.size()));
  kernels::quantize_linear(std::span<const float>(x, static_cast<std::size_t>(in.size())),
                           kernels::linear_quantizer{p.scale, p.zero_point, 0, 255, kernels::quantize_op::divide},
                           std::span<std::uint8_t>(scratch));
  return scratch.data();
}

/// max(x, 0) as the float relu layer computes it: NaN and -0 pass through.
/// Throws shape_error unless `in` is [batch, g.in_h, g.in_w, g.in_c].
inline void check_conv_input(const activation& in, const kernels::conv2d_geometry& g, const std::string& who) {
  if (in.height != g.in_h || in.width != g.in_w || in.channels != g.in_c) {
    throw shape_error(who + ": input is [" + std::to_string(in.batch) + ", " + std::to_string(in.height) + ", " +
                      std::to_string(in.width) + ", " + std::to_string(in.channels) + "] (expected [batch, " +
                      std::to_string(g.in_h) + ", " + std::to_string(g.in_w) + ", " + std::to_string(g.in_c) + "])");
  }
}

inline void relu_inplace(std::span<float> v) noexcept {
  for (float& x : v) x = x < 0.0f ? 0.0f : x;
}

inline std::int64_t float_bytes(std::size_t n) noexcept { return 4 * static_cast<std::int64_t>(n); }

/// Per-channel int8 weight scales, the int32 bias and the output stage of a
/// static int8 Dense or Conv: float output (dequantize + bias + ReLU) unless
/// emit_codes() asked for requantized uint8.
class int8_output {
 public:
  int8_output() = default;
  /// Throws shape_error unless `bias` is empty or has one value per weight scale.
  int8_output(std::vector<float> w_scales, std::span<const float> bias, quant::affine_params in, bool relu)
      : w_scales_(std::move(w_scales)), bias_f_(bias.begin(), bias.end()), in_(in), relu_(relu) {
    const auto n = w_scales_.size();
    if (!bias.empty() && bias.size() != n) {
      throw shape_error("int8 output stage: bias has " + std::to_string(bias.size()) + " values (expected " +
                        std::to_string(n) + " or none)");
    }
    bias_q_.assign(n, 0);
    out_scale_.resize(n);
    out_bias_.resize(n);
    for (std::size_t c = 0; c < n; ++c) {
      // TFLite's int32 bias: scale s_in * s_w[c], zero point 0, round half to even.
      const double s = static_cast<double>(in.scale) * static_cast<double>(w_scales_[c]);
      const double b = bias.empty() ? 0.0 : std::nearbyint(static_cast<double>(bias[c]) / s);
      bias_q_[c] = static_cast<std::int32_t>(std::clamp(b, -2147483648.0, 2147483647.0));
      out_scale_[c] = static_cast<float>(s);
      out_bias_[c] = static_cast<float>(static_cast<double>(bias_q_[c]) * s);
    }
  }
  [[nodiscard]] const quant::affine_params& input() const noexcept { return in_; }
  [[nodiscard]] bool relu() const noexcept { return relu_; }
  [[nodiscard]] const std::vector<float>& weight_scales() const noexcept { return w_scales_; }
  [[nodiscard]] const std::vector<std::int32_t>& bias() const noexcept { return bias_q_; }
  /// The float bias the stage was built from (empty for none): what a saved
  /// model stores, so that loading derives the same int32 bias (4 bytes per channel kept).
  [[nodiscard]] std::span<const float> float_bias() const noexcept { return bias_f_; }
  [[nodiscard]] bool emits_codes() const noexcept { return stage_ != nullptr; }
  [[nodiscard]] const quant::affine_params& output() const noexcept { return out_; }
  /// Requantize to uint8 codes with parameters p (fused ReLU as the clamp).
  void emit(quant::affine_params p) {
    out_ = p;
    const auto rp = quant::make_requant_params(in_.scale, w_scales_, p, quant::full_range(quant::dtype::uint8),
                                               relu_ ? quant::fused_activation::relu : quant::fused_activation::none);
    stage_ = std::make_shared<kernels::requant_stage<std::uint8_t>>(rp, bias_q_, static_cast<index_t>(w_scales_.size()));
  }
  [[nodiscard]] kernels::store_float float_stage() const noexcept {
    return {out_scale_.data(), out_bias_.data(), relu_, true};
  }
  [[nodiscard]] const kernels::requant_stage<std::uint8_t>& requant() const noexcept { return *stage_; }
  [[nodiscard]] std::int64_t bytes() const noexcept {
    return 4 * static_cast<std::int64_t>(w_scales_.size() + bias_q_.size()) + 8;  // + input scale, zero point
  }

 private:
  std::vector<float> w_scales_;
  std::vector<float> bias_f_;
  std::vector<std::int32_t> bias_q_;
  std::vector<float> out_scale_, out_bias_;
  quant::affine_params in_{}, out_{};
  bool relu_ = false;
  std::shared_ptr<const kernels::requant_stage<std::uint8_t>> stage_;
};

/// Throws shape_error unless `bias` is empty or has `n` values.
inline void check_bias(std::size_t bias, index_t n, const std::string& who) {
  if (bias != 0 && static_cast<index_t>(bias) != n) {
    throw shape_error(who + ": bias has " + std::to_string(bias) + " values (expected " + std::to_string(n) +
                      " or none)");
  }
}

/// A copy of int8 weight codes [rows, cols] after checking that there is one
/// scale per row. Throws shape_error otherwise.
inline tensor<std::int8_t, 2> checked_codes(tensor_view<const std::int8_t, 2> codes, std::size_t scales,
                                           const std::string& who) {
  if (static_cast<index_t>(scales) != codes.extent(0)) {
    throw shape_error(who + ": " + std::to_string(scales) + " weight scales for " + std::to_string(codes.extent(0)) +
                      " output channels (expected one per channel)");
  }
  return tensor<std::int8_t, 2>(codes.extents(), std::span<const std::int8_t>(
                                                     codes.data_handle(), static_cast<std::size_t>(codes.size())));
}

/// Fraction of exact zeros (float weights or integer codes).
template <class T>
double zero_fraction(std::span<const T> w) noexcept {
  if (w.empty()) return 0.0;
  std::size_t z = 0;
  for (const T v : w) z += v == T{0} ? 1 : 0;
  return static_cast<double>(z) / static_cast<double>(w.size());
}

}  // namespace detail::deployed

// ---------------------------------------------------------------------------
// Dense operations: y[b, o] = act(sum_i x[b, i] w[o, i] + bias[o])
// ---------------------------------------------------------------------------

/// fp32 Dense on Eigen's GEMM.
class float_dense final : public op {
 public:
  /// w [out, in]; bias out values or empty. Throws shape_error for another bias size.
  float_dense(tensor<float, 2> w, std::vector<float> bias, bool relu)
      : w_(std::move(w)), bias_(std::move(bias)), relu_(relu) {
    detail::deployed::check_bias(bias_.size(), w_.extent(0), "dense.f32");
  }
  std::string kind() const override { return "dense.f32"; }
  std::int64_t weight_bytes() const noexcept override {
    return detail::deployed::float_bytes(static_cast<std::size_t>(w_.size()) + bias_.size());
  }
  double sparsity() const noexcept override {
    return detail::deployed::zero_fraction(std::span<const float>(w_.data(), static_cast<std::size_t>(w_.size())));
  }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_features(in, w_.extent(1), "dense.f32");
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, 1, 1, w_.extent(0));
    auto y = as_eigen(out.rows());
    y.noalias() = as_eigen(tensor_view<const float, 2>(x, in.batch, w_.extent(1))) * as_eigen(w_.cview()).transpose();
    if (!bias_.empty()) {
      y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias_.data(), static_cast<Eigen::Index>(bias_.size()));
    }
    if (relu_) detail::deployed::relu_inplace(std::span<float>(out.values));
  }
  /// The weights [out, in], the bias (empty for none) and whether ReLU is fused.
  const tensor<float, 2>& weight() const noexcept { return w_; }
  std::span<const float> bias() const noexcept { return bias_; }
  bool relu() const noexcept { return relu_; }

 private:
  tensor<float, 2> w_;
  std::vector<float> bias_;
  bool relu_;
  aligned_vector<float> scratch_;
};

/// Dense with fp16 or bf16 weights (kernels::gemm_f16: panels widened in registers).
/// Keeps only the packed panels; weight() unpacks them for saving.
template <class H>
class half_dense final : public op {
 public:
  /// w [out, in] rounded to H (nearest even); bias out values or empty (shape_error otherwise).
  half_dense(tensor_view<const float, 2> w, std::vector<float> bias, bool relu)
      : w_(kernels::pack_f16<H>(w)), bias_(std::move(bias)), relu_(relu), n_(w.extent(0)), k_(w.extent(1)) {
    detail::deployed::check_bias(bias_.size(), n_, kind());
    // Zeros of the stored H values (a float that rounds to +-0 counts).
    std::size_t z = 0;
    for (index_t i = 0; i < w.size(); ++i) z += static_cast<float>(H(w.data_handle()[i])) == 0.0f ? 1 : 0;
    sparsity_ = w.size() == 0 ? 0.0 : static_cast<double>(z) / static_cast<double>(w.size());
  }
  std::string kind() const override { return std::same_as<H, half> ? "dense.f16" : "dense.bf16"; }
  std::int64_t weight_bytes() const noexcept override {
    return 2 * n_ * k_ + detail::deployed::float_bytes(bias_.size());
  }
  double sparsity() const noexcept override { return sparsity_; }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_features(in, k_, kind());
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, 1, 1, n_);
    kernels::gemm_f16<H>(tensor_view<const float, 2>(x, in.batch, k_), w_, bias_, relu_, out.rows());
  }
  /// The stored weights [out, in] as H values, unpacked from the kernel's panels
  /// (a new tensor, 2 bytes per weight).
  [[nodiscard]] tensor<H, 2> weight() const {
    tensor<H, 2> r(n_, k_);
    const H* p = w_.data();
    const index_t wd = w_.panel();
    for (index_t i = 0; i < n_; ++i) {
      for (index_t j = 0; j < k_; ++j) {
        r(i, j) = wd == 0 ? p[i * k_ + j] : p[((i / wd) * k_ + j) * wd + i % wd];
      }
    }
    return r;
  }
  std::span<const float> bias() const noexcept { return bias_; }
  bool relu() const noexcept { return relu_; }

 private:
  kernels::packed_f16<H> w_;
  std::vector<float> bias_;
  bool relu_;
  index_t n_, k_;
  double sparsity_;
  aligned_vector<float> scratch_;
};

/// Static int8 Dense: per-channel symmetric int8 weights, the input quantized
/// with calibrated (scale, zero point) to uint8, int32 bias, and either a float
/// output stage or requantization to the next int8 op's input parameters.
/// Memory: besides the packed panels it keeps the row-major codes (1 byte per
/// weight) and the float bias, the form a saved model stores.
class int8_dense final : public op {
 public:
  /// codes [out, in] with one scale per row; `in` the calibrated input parameters;
  /// bias out values or empty. Throws shape_error for other sizes.
  int8_dense(tensor_view<const std::int8_t, 2> codes, std::vector<float> w_scales, std::span<const float> bias,
             quant::affine_params in, bool relu)
      : wcodes_(detail::deployed::checked_codes(codes, w_scales.size(), "dense.int8")), w_(kernels::pack_s8(codes)),
        out_(std::move(w_scales), bias, in, relu), n_(codes.extent(0)), k_(codes.extent(1)) {
    sparsity_ = detail::deployed::zero_fraction(
        std::span<const std::int8_t>(codes.data_handle(), static_cast<std::size_t>(codes.size())));
  }
  std::string kind() const override { return "dense.int8"; }
  std::int64_t weight_bytes() const noexcept override { return n_ * k_ + out_.bytes(); }
  double sparsity() const noexcept override { return sparsity_; }
  bool takes_codes() const noexcept override { return true; }
  quant::affine_params input_params() const noexcept override { return out_.input(); }
  bool emit_codes(quant::affine_params p) override {
    out_.emit(p);
    return true;
  }
  /// Weight scales, input parameters, bias, ReLU and output stage.
  const detail::deployed::int8_output& stage() const noexcept { return out_; }
  /// The weight codes [out, in], row-major.
  const tensor<std::int8_t, 2>& codes() const noexcept { return wcodes_; }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_features(in, k_, "dense.int8");
    const std::uint8_t* x = detail::deployed::codes_for(in, out_.input(), codes_, fscratch_);
    const tensor_view<const std::uint8_t, 2> xv(x, in.batch, k_);
    if (out_.emits_codes()) {
      out.set_codes(in.batch, 1, 1, n_, out_.output());
      kernels::gemm_s8(xv, out_.input().zero_point, w_,
                       tensor_view<std::uint8_t, 2>(out.codes.data(), in.batch, n_), out_.requant());
    } else {
      out.set_float(in.batch, 1, 1, n_);
      kernels::gemm_s8(xv, out_.input().zero_point, w_, out.rows(), out_.float_stage());
    }
  }

 private:
  tensor<std::int8_t, 2> wcodes_;
  kernels::packed_s8 w_;
  detail::deployed::int8_output out_;
  index_t n_, k_;
  double sparsity_ = 0.0;
  aligned_vector<std::uint8_t> codes_;
  aligned_vector<float> fscratch_;
};

/// Dynamic int8 Dense (quant::dynamic_linear, qprune's rule, uint8 activations
/// chosen per call), then ReLU when fused. The layer's codes, scales and bias
/// (linear()) are what a saved model stores; nothing extra is kept.
class dynamic_dense final : public op {
 public:
  /// w [out, in] quantized per row (symmetric int8, [-127, 127]); bias out values
  /// or empty. Throws as quant::dynamic_linear (shape_error, config_error for
  /// non-finite values).
  dynamic_dense(tensor_view<const float, 2> w, std::span<const float> bias, bool relu)
      : lin_(w, bias, quant::weight_granularity::per_channel, quant::dynamic_scheme::for_qprune(quant::dtype::uint8)),
        relu_(relu) {
    // Zeros of the stored codes.
    const auto q = lin_.weight_codes<std::int8_t>();
    sparsity_ = detail::deployed::zero_fraction(
        std::span<const std::int8_t>(q.data_handle(), static_cast<std::size_t>(q.size())));
  }
  std::string kind() const override { return "dense.dynamic_int8"; }
  std::int64_t weight_bytes() const noexcept override {
    return lin_.out_features() * lin_.in_features() + 8 * lin_.out_features();
  }
  double sparsity() const noexcept override { return sparsity_; }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_features(in, lin_.in_features(), "dense.dynamic_int8");
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, 1, 1, lin_.out_features());
    lin_.forward(tensor_view<const float, 2>(x, in.batch, lin_.in_features()), out.rows());
    if (relu_) detail::deployed::relu_inplace(std::span<float>(out.values));
  }
  /// The quantized layer: weight_codes<std::int8_t>(), weight_params(), bias().
  const quant::dynamic_linear& linear() const noexcept { return lin_; }
  bool relu() const noexcept { return relu_; }

 private:
  quant::dynamic_linear lin_;
  bool relu_;
  double sparsity_ = 0.0;
  aligned_vector<float> scratch_;
};

/// Dense with 4-bit grouped weights (kernels::gemm_q4_dynamic: activations
/// quantized per row and group to int8 on the fly, integer dot products).
/// Memory: besides the kernel's packing it keeps the packed_int4_matrix it was
/// built from (half a byte per weight plus the group parameters), the form a
/// saved model stores.
class int4_dense final : public op {
 public:
  /// w [out, in]; bias out values or empty. Throws as kernels::pack_q4, and
  /// shape_error for another bias size.
  int4_dense(const quant::packed_int4_matrix& w, std::vector<float> bias, bool relu)
      : src_(w), w_(kernels::pack_q4(w)), bias_(std::move(bias)), relu_(relu), bytes_(quant::storage_bytes(w)) {
    detail::deployed::check_bias(bias_.size(), w.rows, "dense.int4");
  }
  std::string kind() const override { return "dense.int4"; }
  std::int64_t weight_bytes() const noexcept override { return bytes_ + detail::deployed::float_bytes(bias_.size()); }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_features(in, w_.cols(), "dense.int4");
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, 1, 1, w_.rows());
    kernels::gemm_q4_dynamic(tensor_view<const float, 2>(x, in.batch, w_.cols()), w_, bias_, relu_, out.rows());
  }
  /// The 4-bit weights as built (codes packed per row, group scales / zero points).
  const quant::packed_int4_matrix& weight() const noexcept { return src_; }
  std::span<const float> bias() const noexcept { return bias_; }
  bool relu() const noexcept { return relu_; }

 private:
  quant::packed_int4_matrix src_;
  kernels::packed_q4 w_;
  std::vector<float> bias_;
  bool relu_;
  std::int64_t bytes_;
  aligned_vector<float> scratch_;
};

/// Dense with sparse weights: a prune::csr_matrix or packed_nm_matrix (values
/// float, half or int8) on the sparse kernels.
template <class Matrix>
class sparse_dense final : public op {
 public:
  /// bias w.rows() values or empty (shape_error otherwise).
  sparse_dense(Matrix w, std::vector<float> bias, bool relu)
      : w_(std::move(w)), bias_(std::move(bias)), relu_(relu) {
    detail::deployed::check_bias(bias_.size(), w_.rows(), kind());
  }
  std::string kind() const override {
    return std::string(Matrix::format == prune::storage_format::csr ? "dense.csr." : "dense.nm.") +
           std::string(prune::to_string(Matrix::kind));
  }
  std::int64_t weight_bytes() const noexcept override {
    return w_.bytes() + detail::deployed::float_bytes(bias_.size());
  }
  double sparsity() const noexcept override {
    const double total = static_cast<double>(w_.rows()) * static_cast<double>(w_.cols());
    return total == 0.0 ? 0.0 : 1.0 - static_cast<double>(w_.nnz()) / total;
  }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_features(in, w_.cols(), kind());
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, 1, 1, w_.rows());
    kernels::spmm(tensor_view<const float, 2>(x, in.batch, w_.cols()), w_, out.rows(), bias_);
    if (relu_) detail::deployed::relu_inplace(std::span<float>(out.values));
  }
  /// The sparse weights [out, in] (stored as they are saved).
  const Matrix& weight() const noexcept { return w_; }
  std::span<const float> bias() const noexcept { return bias_; }
  bool relu() const noexcept { return relu_; }

 private:
  Matrix w_;
  std::vector<float> bias_;
  bool relu_;
  aligned_vector<float> scratch_;
};

// ---------------------------------------------------------------------------
// Convolutions (NHWC, weights OHWI [out, kh, kw, in / groups])
// ---------------------------------------------------------------------------

/// fp32 Conv2d: im2col in row blocks, one Eigen GEMM per block and group.
class float_conv final : public op {
 public:
  /// g: geometry (batch ignored); w [out_c, patch]; bias out_c values or empty.
  /// Throws as conv2d_geometry::validate, shape_error for other weight or bias sizes.
  float_conv(const kernels::conv2d_geometry& g, tensor<float, 2> w, std::vector<float> bias, bool relu)
      : g_(g), w_(std::move(w)), bias_(std::move(bias)), relu_(relu) {
    g_.batch = 1;
    g_.validate();
    if (w_.extent(0) != g_.out_c || w_.extent(1) != g_.patch()) {
      throw shape_error("conv2d.f32: weights are [" + std::to_string(w_.extent(0)) + ", " +
                        std::to_string(w_.extent(1)) + "] (expected [" + std::to_string(g_.out_c) + ", " +
                        std::to_string(g_.patch()) + "])");
    }
    detail::deployed::check_bias(bias_.size(), g_.out_c, "conv2d.f32");
  }
  std::string kind() const override { return "conv2d.f32"; }
  std::int64_t weight_bytes() const noexcept override {
    return detail::deployed::float_bytes(static_cast<std::size_t>(w_.size()) + bias_.size());
  }
  double sparsity() const noexcept override {
    return detail::deployed::zero_fraction(std::span<const float>(w_.data(), static_cast<std::size_t>(w_.size())));
  }
  void forward(const activation& in, activation& out) override {
    kernels::conv2d_geometry g = geometry_for(in);
    const float* x = detail::deployed::float_values(in, scratch_);
    const index_t rows = g.out_pixels(), patch = g.patch(), goc = g.group_out_c();
    out.set_float(in.batch, g.out_h(), g.out_w(), g.out_c);
    const index_t block = std::max<index_t>(8, std::min<index_t>(rows, (index_t{1} << 16) / std::max<index_t>(patch, 1)));
    cols_.resize(static_cast<std::size_t>(block * patch));
    using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    for (index_t r0 = 0; r0 < rows; r0 += block) {
      const index_t r1 = std::min(rows, r0 + block);
      for (index_t grp = 0; grp < g.groups; ++grp) {
        kernels::im2col(g, x, grp, r0, r1, 0.0f, cols_.data(), patch);
        Eigen::Map<const row_major> c(cols_.data(), r1 - r0, patch);
        Eigen::Map<const row_major> wg(w_.data() + grp * goc * patch, goc, patch);
        Eigen::Map<row_major, 0, Eigen::OuterStride<>> y(out.values.data() + r0 * g.out_c + grp * goc, r1 - r0,
                                                         goc, Eigen::OuterStride<>(g.out_c));
        y.noalias() = c * wg.transpose();
      }
    }
    if (!bias_.empty() || relu_) {
      for (index_t r = 0; r < rows; ++r) {
        float* y = out.values.data() + r * g.out_c;
        for (index_t o = 0; o < g.out_c; ++o) {
          float v = bias_.empty() ? y[o] : y[o] + bias_[static_cast<std::size_t>(o)];
          y[o] = relu_ && v < 0.0f ? 0.0f : v;
        }
      }
    }
  }
  /// The geometry (batch 1), the filters [out_c, patch] (OHWI rows), the bias
  /// (empty for none) and whether ReLU is fused.
  const kernels::conv2d_geometry& geometry() const noexcept { return g_; }
  const tensor<float, 2>& weight() const noexcept { return w_; }
  std::span<const float> bias() const noexcept { return bias_; }
  bool relu() const noexcept { return relu_; }

 private:
  kernels::conv2d_geometry geometry_for(const activation& in) const {
    detail::deployed::check_conv_input(in, g_, "conv2d.f32");
    kernels::conv2d_geometry g = g_;
    g.batch = in.batch;
    return g;
  }

  kernels::conv2d_geometry g_;
  tensor<float, 2> w_;
  std::vector<float> bias_;
  bool relu_;
  aligned_vector<float> scratch_, cols_;
};

/// Conv2d with fp16 or bf16 weights: each weight is rounded to H once (nearest
/// even) and the conv runs in float (float_conv) on the exactly widened values,
/// so it computes a float conv with the rounded weights. Memory: the widened
/// weights, 4 bytes each; weight_bytes() and a saved file count 2.
template <class H>
class half_conv final : public op {
 public:
  /// As float_conv; w [out_c, patch] is rounded to H.
  half_conv(const kernels::conv2d_geometry& g, tensor_view<const float, 2> w, std::vector<float> bias, bool relu)
      : conv_(g, rounded(w), std::move(bias), relu) {}
  std::string kind() const override { return std::same_as<H, half> ? "conv2d.f16" : "conv2d.bf16"; }
  std::int64_t weight_bytes() const noexcept override {
    return 2 * conv_.weight().size() + detail::deployed::float_bytes(conv_.bias().size());
  }
  double sparsity() const noexcept override { return conv_.sparsity(); }
  void forward(const activation& in, activation& out) override { conv_.forward(in, out); }
  const kernels::conv2d_geometry& geometry() const noexcept { return conv_.geometry(); }
  /// The stored weights [out_c, patch] as H values (a new tensor; exact).
  [[nodiscard]] tensor<H, 2> weight() const {
    const tensor<float, 2>& w = conv_.weight();
    tensor<H, 2> r(w.extents());
    for (index_t i = 0; i < w.size(); ++i) r.data()[i] = H(w.data()[i]);
    return r;
  }
  std::span<const float> bias() const noexcept { return conv_.bias(); }
  bool relu() const noexcept { return conv_.relu(); }

 private:
  static tensor<float, 2> rounded(tensor_view<const float, 2> w) {
    tensor<float, 2> r(w.extents());
    for (index_t i = 0; i < w.extent(0); ++i)
      for (index_t j = 0; j < w.extent(1); ++j) r(i, j) = static_cast<float>(H(w(i, j)));
    return r;
  }

  float_conv conv_;
};

/// Static int8 Conv2d on kernels::conv2d_s8 (im2col + int8 GEMM, or the direct
/// depthwise kernel), with the same output stages as int8_dense. Memory: besides
/// the packed weights it keeps the codes [out_c, patch] (1 byte per weight) and
/// the float bias, the form a saved model stores.
class int8_conv final : public op {
 public:
  /// codes [out_c, patch] (OHWI rows) with one scale per output channel; bias
  /// out_c values or empty. Throws as conv2d_geometry::validate and shape_error
  /// for other sizes.
  int8_conv(const kernels::conv2d_geometry& g, tensor_view<const std::int8_t, 2> codes, std::vector<float> w_scales,
            std::span<const float> bias, quant::affine_params in, bool relu)
      : g_(g), wcodes_(detail::deployed::checked_codes(codes, w_scales.size(), "conv2d.int8")),
        out_(std::move(w_scales), bias, in, relu) {
    g_.batch = 1;
    g_.validate();
    if (codes.extent(0) != g_.out_c || codes.extent(1) != g_.patch()) {
      throw shape_error("conv2d.int8: weights are [" + std::to_string(codes.extent(0)) + ", " +
                        std::to_string(codes.extent(1)) + "] (expected [" + std::to_string(g_.out_c) + ", " +
                        std::to_string(g_.patch()) + "])");
    }
    w_ = kernels::pack_conv_s8(g_, codes);
    bytes_ = codes.size();
  }
  std::string kind() const override { return "conv2d.int8"; }
  std::int64_t weight_bytes() const noexcept override { return bytes_ + out_.bytes(); }
  bool takes_codes() const noexcept override { return true; }
  quant::affine_params input_params() const noexcept override { return out_.input(); }
  bool emit_codes(quant::affine_params p) override {
    out_.emit(p);
    return true;
  }
  /// The geometry (batch 1), the codes [out_c, patch] and the output stage.
  const kernels::conv2d_geometry& geometry() const noexcept { return g_; }
  const tensor<std::int8_t, 2>& codes() const noexcept { return wcodes_; }
  const detail::deployed::int8_output& stage() const noexcept { return out_; }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_conv_input(in, g_, "conv2d.int8");
    const std::uint8_t* x = detail::deployed::codes_for(in, out_.input(), codes_, fscratch_);
    const tensor_view<const std::uint8_t, 2> xv(x, in.pixels(), g_.in_c);
    const index_t oh = g_.out_h(), ow = g_.out_w(), rows = in.batch * oh * ow;
    if (out_.emits_codes()) {
      out.set_codes(in.batch, oh, ow, g_.out_c, out_.output());
      kernels::conv2d_s8(xv, out_.input().zero_point, w_, tensor_view<std::uint8_t, 2>(out.codes.data(), rows, g_.out_c),
                         out_.requant());
    } else {
      out.set_float(in.batch, oh, ow, g_.out_c);
      kernels::conv2d_s8(xv, out_.input().zero_point, w_, tensor_view<float, 2>(out.values.data(), rows, g_.out_c),
                         out_.float_stage());
    }
  }

 private:
  kernels::conv2d_geometry g_;
  tensor<std::int8_t, 2> wcodes_;
  kernels::packed_conv_s8 w_;
  detail::deployed::int8_output out_;
  index_t bytes_ = 0;
  aligned_vector<std::uint8_t> codes_;
  aligned_vector<float> fscratch_;
};

// ---------------------------------------------------------------------------
// Operations without weights
// ---------------------------------------------------------------------------

/// ReLU, max(0, x), or ReLU6, min(max(x, 0), 6), on float values (NaN
/// propagates, as in the float layers) or on codes (clamped to the codes of 0
/// and 6: q >= z, q <= min(255, rne(6 / s) + z)).
class relu_op final : public op {
 public:
  /// cap = +inf: ReLU; cap = 6: ReLU6.
  explicit relu_op(float cap = std::numeric_limits<float>::infinity()) : cap_(cap) {}
  std::string kind() const override { return std::isinf(cap_) ? "relu" : "relu6"; }
  bool passes_codes() const noexcept override { return true; }
  /// The upper clamp (+inf for ReLU).
  float cap() const noexcept { return cap_; }
  void forward(const activation& in, activation& out) override {
    if (in.quantized) {
      out.set_codes(in.batch, in.height, in.width, in.channels, in.params);
      const auto lo = static_cast<std::uint8_t>(std::clamp(in.params.zero_point, 0, 255));
      std::uint8_t hi = 255;
      if (!std::isinf(cap_)) {
        hi = static_cast<std::uint8_t>(quant::quantize_value(cap_, in.params, quant::full_range(quant::dtype::uint8),
                                                             quant::rounding::half_to_even));
      }
      for (std::size_t i = 0; i < in.codes.size(); ++i) out.codes[i] = std::min(std::max(in.codes[i], lo), hi);
    } else {
      out.set_float(in.batch, in.height, in.width, in.channels);
      for (std::size_t i = 0; i < in.values.size(); ++i) {
        const float v = in.values[i];
        out.values[i] = v < 0.0f ? 0.0f : (v > cap_ ? cap_ : v);
      }
    }
  }

 private:
  float cap_;
};

/// 2-D max or average pooling over NHWC, window k x k, stride s, no padding
/// (floor), PyTorch's MaxPool2d / AvgPool2d defaults. Max pooling works on codes
/// directly (quantization is monotonic); average pooling dequantizes.
class pool_op final : public op {
 public:
  enum class kind_t { max, average };
  pool_op(kind_t k, index_t window, index_t stride) : kind_(k), k_(window), s_(stride) {
    if (window < 1 || stride < 1) {
      throw config_error("pooling window " + std::to_string(window) + " stride " + std::to_string(stride) +
                         " (expected both >= 1)");
    }
  }
  std::string kind() const override { return kind_ == kind_t::max ? "max_pool2d" : "avg_pool2d"; }
  bool passes_codes() const noexcept override { return kind_ == kind_t::max; }
  kind_t pool_kind() const noexcept { return kind_; }
  index_t window() const noexcept { return k_; }
  index_t stride() const noexcept { return s_; }
  void forward(const activation& in, activation& out) override {
    if (in.height < k_ || in.width < k_) {
      throw shape_error(kind() + ": input " + std::to_string(in.height) + " x " + std::to_string(in.width) +
                        " is smaller than the window " + std::to_string(k_));
    }
    const index_t oh = (in.height - k_) / s_ + 1, ow = (in.width - k_) / s_ + 1, c = in.channels;
    if (in.quantized && kind_ == kind_t::max) {
      out.set_codes(in.batch, oh, ow, c, in.params);
      run(in.codes.data(), out.codes.data(), in, oh, ow);
      return;
    }
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, oh, ow, c);
    run(x, out.values.data(), in, oh, ow);
  }

 private:
  template <class T>
  void run(const T* x, T* y, const activation& in, index_t oh, index_t ow) const {
    const index_t c = in.channels;
    for (index_t b = 0; b < in.batch; ++b) {
      for (index_t i = 0; i < oh; ++i) {
        for (index_t j = 0; j < ow; ++j) {
          T* dst = y + ((b * oh + i) * ow + j) * c;
          for (index_t ch = 0; ch < c; ++ch) {
            if constexpr (std::same_as<T, float>) {
              float acc = kind_ == kind_t::max ? -std::numeric_limits<float>::infinity() : 0.0f;
              for (index_t di = 0; di < k_; ++di)
                for (index_t dj = 0; dj < k_; ++dj) {
                  const float v = x[((b * in.height + i * s_ + di) * in.width + j * s_ + dj) * c + ch];
                  acc = kind_ == kind_t::max ? (v > acc || std::isnan(v) ? v : acc) : acc + v;
                }
              dst[ch] = kind_ == kind_t::max ? acc : acc / static_cast<float>(k_ * k_);
            } else {
              T acc = 0;
              for (index_t di = 0; di < k_; ++di)
                for (index_t dj = 0; dj < k_; ++dj)
                  acc = std::max(acc, x[((b * in.height + i * s_ + di) * in.width + j * s_ + dj) * c + ch]);
              dst[ch] = acc;
            }
          }
        }
      }
    }
  }

  kind_t kind_;
  index_t k_, s_;
  aligned_vector<float> scratch_;
};

/// NHWC [b, h, w, c] -> [b, 1, 1, h*w*c]: the same bytes, so codes pass through.
class flatten_op final : public op {
 public:
  std::string kind() const override { return "flatten"; }
  bool passes_codes() const noexcept override { return true; }
  void forward(const activation& in, activation& out) override {
    out.batch = in.batch;
    out.height = 1;
    out.width = 1;
    out.channels = in.features();
    out.quantized = in.quantized;
    out.params = in.params;
    if (in.quantized) {
      out.codes = in.codes;
    } else {
      out.values = in.values;
    }
  }
};

/// y = x * scale[c] + shift[c] per channel: an eval-mode batch norm that could
/// not be folded into a preceding Dense or Conv.
class channel_affine_op final : public op {
 public:
  /// Throws shape_error unless scale and shift have the same size.
  channel_affine_op(std::vector<float> scale, std::vector<float> shift)
      : scale_(std::move(scale)), shift_(std::move(shift)) {
    if (scale_.size() != shift_.size()) {
      throw shape_error("batch_norm: " + std::to_string(scale_.size()) + " scales and " +
                        std::to_string(shift_.size()) + " shifts (expected one of each per channel)");
    }
  }
  std::string kind() const override { return "batch_norm"; }
  std::int64_t weight_bytes() const noexcept override {
    return detail::deployed::float_bytes(scale_.size() + shift_.size());
  }
  void forward(const activation& in, activation& out) override {
    detail::deployed::check_channels(in, static_cast<index_t>(scale_.size()), "batch_norm");
    const float* x = detail::deployed::float_values(in, scratch_);
    out.set_float(in.batch, in.height, in.width, in.channels);
    for (index_t p = 0; p < in.pixels(); ++p)
      for (index_t c = 0; c < in.channels; ++c) {
        const auto i = static_cast<std::size_t>(p * in.channels + c);
        out.values[i] = x[i] * scale_[static_cast<std::size_t>(c)] + shift_[static_cast<std::size_t>(c)];
      }
  }
  /// The per-channel scale and shift.
  std::span<const float> scale() const noexcept { return scale_; }
  std::span<const float> shift() const noexcept { return shift_; }

 private:
  std::vector<float> scale_, shift_;
  aligned_vector<float> scratch_;
};

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// A deployable network: an input shape and a sequence of operations.
/// forward() takes float samples [batch, height * width * channels] (NHWC) and
/// returns the last op's output as float [batch, features].
class deployed_model {
 public:
  deployed_model() = default;
  deployed_model(index_t in_h, index_t in_w, index_t in_c) : h_(in_h), w_(in_w), c_(in_c) {
    if (in_h < 1 || in_w < 1 || in_c < 1) {
      throw config_error("model input " + std::to_string(in_h) + " x " + std::to_string(in_w) + " x " +
                         std::to_string(in_c) + " (expected positive extents)");
    }
  }

  /// Appends an op.
  void add(std::unique_ptr<op> o) { ops_.push_back(std::move(o)); }
  template <class Op, class... Args>
  Op& emplace(Args&&... args) {
    auto p = std::make_unique<Op>(std::forward<Args>(args)...);
    Op& r = *p;
    ops_.push_back(std::move(p));
    return r;
  }

  /// Lets each int8 op hand uint8 codes straight to the next int8 op (through
  /// ops that pass codes: max pooling, flatten, ReLU): the producer requantizes
  /// to the consumer's input parameters. convert() calls it once.
  void chain_int8() {
    for (std::size_t i = 0; i < ops_.size(); ++i) {
      if (!ops_[i]->takes_codes()) continue;
      std::size_t j = i + 1;
      while (j < ops_.size() && ops_[j]->passes_codes()) ++j;
      if (j < ops_.size() && ops_[j]->takes_codes()) ops_[i]->emit_codes(ops_[j]->input_params());
    }
  }

  /// Runs the model on x [batch, in_h * in_w * in_c]. Throws shape_error for a
  /// wrong feature count and whatever an op throws for mismatched shapes.
  [[nodiscard]] tensor<float, 2> forward(tensor_view<const float, 2> x) {
    if (x.extent(1) != h_ * w_ * c_) {
      throw shape_error("model input has " + std::to_string(x.extent(1)) + " features (expected " +
                        std::to_string(h_ * w_ * c_) + " = " + std::to_string(h_) + " x " + std::to_string(w_) +
                        " x " + std::to_string(c_) + ")");
    }
    a_.set_float(x.extent(0), h_, w_, c_);
    std::copy_n(x.data_handle(), x.size(), a_.values.data());
    activation* cur = &a_;
    activation* nxt = &b_;
    for (auto& o : ops_) {
      o->forward(*cur, *nxt);
      std::swap(cur, nxt);
    }
    tensor<float, 2> y(cur->batch, cur->features());
    const float* v = detail::deployed::float_values(*cur, scratch_);
    std::copy_n(v, y.size(), y.data());
    return y;
  }

  [[nodiscard]] const std::vector<std::unique_ptr<op>>& ops() const noexcept { return ops_; }
  [[nodiscard]] std::int64_t weight_bytes() const noexcept {
    std::int64_t b = 0;
    for (const auto& o : ops_) b += o->weight_bytes();
    return b;
  }
  [[nodiscard]] index_t input_height() const noexcept { return h_; }
  [[nodiscard]] index_t input_width() const noexcept { return w_; }
  [[nodiscard]] index_t input_channels() const noexcept { return c_; }

 private:
  index_t h_ = 1, w_ = 1, c_ = 1;
  std::vector<std::unique_ptr<op>> ops_;
  activation a_, b_;
  aligned_vector<float> scratch_;
};

}  // namespace qprune::nn

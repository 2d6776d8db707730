// `masked_weight<WeightQ, Pruner>`: the weight block every prunable layer owns --
// float master weights [rows, cols] and their gradient, the pruner policy and its
// mask, the weight quantizer policy and a slot for its storage (filled by
// convert()). It computes the forward's effective weight in one place,
//   w_eff = mask ⊙ w   (then the quantizer's fake-quant, when it has one),
// and masks gradients so pruned weights stay exactly zero through training.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/nn/layer.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/schedule.hpp"
#include "qprune/quant/concepts.hpp"

namespace qprune::nn {

/// Float master weights [rows, cols] with gradient, mask and policies (see file comment).
/// Conv filters OHWI [out, kh, kw, in/groups] are held as [out, kh*kw*in/groups]
/// (the same row-major memory).
template <quant::weight_quantizer WeightQ = quant::none, prune::pruner Pruner = prune::none>
class masked_weight {
 public:
  using quantizer_type = WeightQ;
  using pruner_type = Pruner;
  using mask_type = typename Pruner::mask_type;
  using storage_type = typename WeightQ::storage_type;

  /// True when the pruner's mask keeps everything by construction (prune::none):
  /// then no mask is stored, applied or computed.
  static constexpr bool always_dense = detail::is_all_kept_v<mask_type>;

  masked_weight() = default;
  /// Zero weights and gradient of shape [rows, cols]; the mask is computed by the
  /// pruner from these (zero) weights: call update_mask() after initialising them.
  masked_weight(index_t rows, index_t cols, Pruner pruner = {}, WeightQ quantizer = {})
      : value_(rows, cols),
        grad_(rows, cols),
        pruner_(std::move(pruner)),
        quantizer_(std::move(quantizer)),
        mask_(initial_mask()) {}

  index_t rows() const noexcept { return value_.extent(0); }
  index_t cols() const noexcept { return value_.extent(1); }

  /// The master weights. Writing them does not re-apply the mask: call apply_mask().
  tensor<float, 2>& value() noexcept { return value_; }
  const tensor<float, 2>& value() const noexcept { return value_; }
  /// dL/dw accumulated by backward (masked: pruned entries are exactly 0).
  tensor<float, 2>& grad() noexcept { return grad_; }
  const tensor<float, 2>& grad() const noexcept { return grad_; }

  const mask_type& mask() const noexcept { return mask_; }
  /// Replaces the mask and applies it to the weights. Throws what the mask's
  /// apply throws (shape_error for a prune::mask of other extents); then nothing changes.
  void set_mask(mask_type m) {
    m.apply(value_.view());
    mask_ = std::move(m);
  }
  Pruner& pruner() noexcept { return pruner_; }
  const Pruner& pruner() const noexcept { return pruner_; }
  WeightQ& quantizer() noexcept { return quantizer_; }
  const WeightQ& quantizer() const noexcept { return quantizer_; }
  /// The slot convert() fills with the quantizer's storage (empty while training).
  std::optional<storage_type>& storage() noexcept { return storage_; }
  const std::optional<storage_type>& storage() const noexcept { return storage_; }

  /// mask ← pruner.compute_mask(w), then w ← mask ⊙ w. Nothing for prune::none.
  void update_mask() {
    if constexpr (!always_dense) {
      mask_ = pruner_.compute_mask(value_.cview());
      mask_.apply(value_.view());
    }
  }
  /// Sets the pruner's target sparsity, then update_mask(). Throws config_error
  /// for s outside [0, 1] (from the pruner).
  void prune_to(float sparsity)
    requires prune::sparsity_pruner<Pruner>
  {
    pruner_.set_sparsity(sparsity);
    update_mask();
  }
  /// prune::update_mask with this weight (tfmot's conditional update), then
  /// w ← mask ⊙ w when it updated. Returns whether it did.
  template <prune::pruning_schedule S>
    requires prune::sparsity_pruner<Pruner>
  bool update_mask(const S& schedule, std::int64_t step) {
    if (!prune::update_mask(schedule, step, pruner_, value_.cview(), mask_)) return false;
    mask_.apply(value_.view());
    return true;
  }
  /// w ← mask ⊙ w (pruned weights become exactly +0). Optimizers call it after each step.
  void apply_mask() {
    if constexpr (!always_dense) mask_.apply(value_.view());
  }

  /// The weight the forward multiplies by, computed here and nowhere else:
  ///   w_eff = mask ⊙ w, then the quantizer's fake_quantize(w_eff) for a quant::fake_quant_weight_quantizer.
  /// For prune::none with a plain quantizer this is the master weight itself (no copy).
  /// Lifetime: valid until the next call or until the weights change.
  tensor_view<const float, 2> effective() {
    if constexpr (always_dense && !quant::fake_quant_weight_quantizer<WeightQ>) {
      return value_.cview();
    } else {
      if (!(masked_.extents() == value_.extents())) masked_ = tensor<float, 2>(value_.extents());
      std::copy_n(value_.data(), value_.size(), masked_.data());
      if constexpr (!always_dense) mask_.apply(masked_.view());
      if constexpr (quant::fake_quant_weight_quantizer<WeightQ>) {
        if (!(eff_.extents() == value_.extents())) eff_ = tensor<float, 2>(value_.extents());
        quantizer_.fake_quantize(masked_.cview(), eff_.view());
        return eff_.cview();
      } else {
        return masked_.cview();
      }
    }
  }

  /// Turns dL/dw_eff (accumulated into grad() by the layer) into the master
  /// weight's gradient: the quantizer's straight-through backward (if any), then
  /// grad ← mask ⊙ grad. Call once per backward, after accumulating.
  /// Note: with a fake quantizer, grad() must hold only this step's dL/dw_eff.
  void finish_backward() {
    if constexpr (quant::fake_quant_weight_quantizer<WeightQ>) {
      quantizer_.fake_quantize_backward(masked_.cview(), grad_.view());
    }
    if constexpr (!always_dense) detail::mask_gradient(mask_, grad_.view());
  }

  void zero_grad() noexcept { grad_.fill(0.0f); }

  /// Replaces the master weights by `value` of any shape (structured pruning
  /// makes a layer physically smaller): the gradient becomes zeros of the new
  /// shape, the quantizer's storage slot is emptied, and the mask is recomputed by
  /// the pruner from the new weights and applied (prune::none: nothing). Throws
  /// what the pruner throws (then nothing changes).
  void replace(tensor<float, 2> value) {
    mask_type m{};
    if constexpr (!always_dense) {
      m = pruner_.compute_mask(value.cview());
      m.apply(value.view());
    }
    grad_ = tensor<float, 2>(value.extents());
    value_ = std::move(value);
    mask_ = std::move(m);
    masked_ = tensor<float, 2>();
    eff_ = tensor<float, 2>();
    storage_.reset();
  }

  /// The weights as a `parameter` (value + gradient spans).
  parameter as_parameter() noexcept { return {value_.span(), grad_.span(), parameter_kind::weight}; }

 private:
  mask_type initial_mask() const {
    if constexpr (always_dense) {
      return mask_type{};
    } else {
      return pruner_.compute_mask(value_.cview());
    }
  }

  tensor<float, 2> value_;
  tensor<float, 2> grad_;
  tensor<float, 2> masked_;  // mask ⊙ w, when a mask or fake-quant needs a copy
  tensor<float, 2> eff_;     // fake_quant(mask ⊙ w)
  [[no_unique_address]] Pruner pruner_{};
  [[no_unique_address]] WeightQ quantizer_{};
  [[no_unique_address]] mask_type mask_{};
  std::optional<storage_type> storage_;
};

}  // namespace qprune::nn

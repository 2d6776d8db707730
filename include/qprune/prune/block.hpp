// Block sparsity on [rows, cols] weights: whole bh x bw blocks (1x4, 4x1, 4x4, 8x1, ...)
// are kept or pruned together, scored by the AVG or MAX of |w| over the block. qprune's
// default prunes exactly k = round_half_even(s · blocks) blocks; tfmot:: reproduces
// tfmot's block mask (factorized SAME pooling, threshold with ties kept, expand, crop).
// Semantics and the tfmot padding quirk: doc/pruning.md §4.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/mask.hpp"

namespace qprune::prune {

/// How the |w| of a block are pooled into one score.
enum class block_pooling : std::uint8_t {
  avg,  ///< mean |w| over the block's elements inside the tensor
  max,  ///< max |w| over the block (NaN ranks above every number)
};

/// A block of `height` rows by `width` columns (tfmot's block_size = (height, width)).
struct block_shape {
  index_t height = 1;
  index_t width = 1;
  friend constexpr bool operator==(block_shape, block_shape) noexcept = default;
};

/// Throws config_error unless both sides are >= 1.
inline void check_block_shape(block_shape b) {
  if (b.height < 1 || b.width < 1) {
    throw config_error("block shape " + std::to_string(b.height) + "x" + std::to_string(b.width) +
                       " is invalid (expected height >= 1 and width >= 1)");
  }
}

namespace detail {
inline index_t ceil_div(index_t a, index_t b) noexcept { return (a + b - 1) / b; }

/// Blocks aligned at (0, 0); edge blocks are partial. Scores in double: AVG = sum / count
/// of the elements inside the tensor; MAX = max, NaN sticky.
inline std::vector<double> aligned_block_scores(const tensor_view<const float, 2, layout_stride>& w,
                                                block_shape b, block_pooling pool) {
  const index_t rows = w.extent(0), cols = w.extent(1);
  const index_t br = ceil_div(rows, b.height), bc = ceil_div(cols, b.width);
  std::vector<double> s(static_cast<std::size_t>(br * bc), 0.0);
  for (index_t i = 0; i < br; ++i) {
    for (index_t j = 0; j < bc; ++j) {
      const index_t r1 = std::min(rows, (i + 1) * b.height), c1 = std::min(cols, (j + 1) * b.width);
      double acc = 0.0;
      for (index_t r = i * b.height; r < r1; ++r) {
        for (index_t c = j * b.width; c < c1; ++c) {
          const double x = std::fabs(static_cast<double>(w(r, c)));
          if (pool == block_pooling::avg) {
            acc += x;
          } else if (x != x || x > acc) {
            acc = x;
          }
        }
      }
      if (pool == block_pooling::avg) {
        acc /= static_cast<double>((r1 - i * b.height) * (c1 - j * b.width));
      }
      s[static_cast<std::size_t>(i * bc + j)] = acc;
    }
  }
  return s;
}

/// Expands a per-block keep flag (blocks aligned at (0, 0), bc per block row) to a mask.
inline mask expand_blocks(const extents<2>& e, block_shape b, index_t bc,
                          std::span<const std::uint8_t> block_keep) {
  mask m(e);
  for (index_t r = 0; r < e.extent(0); ++r) {
    for (index_t c = 0; c < e.extent(1); ++c) {
      m(r, c) = block_keep[static_cast<std::size_t>((r / b.height) * bc + c / b.width)];
    }
  }
  return m;
}
}  // namespace detail

/// qprune's block mask: the tensor is tiled into bh x bw blocks from (0, 0) (the last
/// block row / column is partial when the extents are not multiples), each block is
/// scored by the AVG (over its elements inside the tensor) or MAX of |w|, in double, and
/// exactly k = round_half_even(sparsity · B) of the B blocks with the lowest score are
/// pruned whole. Ties: among equal scores the block later in row-major block order is
/// pruned first; NaN scores rank above every number. Element sparsity equals
/// k / B when the block divides the extents.
/// Throws config_error unless 0 <= sparsity <= 1 and the block sides are >= 1.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] mask block_mask(const V& w, float sparsity, block_shape b,
                              block_pooling pool = block_pooling::avg) {
  check_sparsity(sparsity);
  check_block_shape(b);
  const auto sw = as_strided(w);
  const auto scores = detail::aligned_block_scores(sw, b, pool);
  const index_t nb = static_cast<index_t>(scores.size());
  std::vector<std::uint8_t> keep(scores.size(), 1);
  const index_t k = detail::fraction_count(sparsity, nb);
  for (index_t i : detail::lowest_k(std::span<const double>(scores), k)) {
    keep[static_cast<std::size_t>(i)] = 0;
  }
  return detail::expand_blocks(sw.extents(), b, detail::ceil_div(sw.extent(1), b.width), keep);
}

/// The block pruner policy (block_mask) with a run-time sparsity for schedules.
class block_magnitude {
 public:
  using mask_type = mask;

  /// Throws config_error for a sparsity outside [0, 1] or a block side < 1.
  explicit block_magnitude(float sparsity, block_shape b, block_pooling pool = block_pooling::avg)
      : sparsity_((check_sparsity(sparsity), sparsity)),
        block_((check_block_shape(b), b)),
        pool_(pool) {}

  float sparsity() const noexcept { return sparsity_; }
  void set_sparsity(float s) {
    check_sparsity(s);
    sparsity_ = s;
  }
  block_shape block() const noexcept { return block_; }
  block_pooling pooling() const noexcept { return pool_; }
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return block_mask(w, sparsity_, block_, pool_);
  }

 private:
  float sparsity_;
  block_shape block_;
  block_pooling pool_;
};

static_assert(sparsity_pruner<block_magnitude>);

namespace tfmot {

/// tfmot's pruning_utils.factorized_pool(|w|, window = stride = (bh, bw), padding SAME),
/// in float32: first along axis 0, then along axis 1. Along an axis of length L with
/// block s the output has ceil(L / s) entries and TF's SAME padding puts
/// floor((ceil(L / s)·s − L) / 2) virtual elements *before* the first one, so output i
/// pools input positions [i·s − pad, i·s − pad + s) ∩ [0, L).
///   AVG: (sum of the valid elements in increasing order, float32) / (their count),
///        padding excluded as in TF's AvgPool;  MAX: their max (NaN ranks above numbers).
/// Bit-exactness of AVG with TF's kernel summation order is not verified (no TF here).
/// Throws config_error for a block side < 1.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] tensor<float, 2> factorized_pool(const V& w, block_shape b, block_pooling pool) {
  check_block_shape(b);
  const auto sw = as_strided(w);
  const index_t rows = sw.extent(0), cols = sw.extent(1);
  const auto pool_axis = [pool](index_t len, index_t s, index_t i, auto&& at) {
    const index_t out = prune::detail::ceil_div(len, s);
    const index_t pad = (out * s - len) / 2;
    const index_t lo = std::max<index_t>(0, i * s - pad), hi = std::min(len, i * s - pad + s);
    float acc = pool == block_pooling::avg ? 0.0f : -1.0f;  // |w| >= 0 > -1
    for (index_t k = lo; k < hi; ++k) {
      const float x = at(k);
      if (pool == block_pooling::avg) {
        acc += x;
      } else if (x != x || x > acc) {
        acc = x;
      }
    }
    return pool == block_pooling::avg ? acc / static_cast<float>(hi - lo) : acc;
  };
  const index_t pr = prune::detail::ceil_div(rows, b.height);
  const index_t pc = prune::detail::ceil_div(cols, b.width);
  tensor<float, 2> stage1(pr, cols);
  for (index_t i = 0; i < pr; ++i)
    for (index_t c = 0; c < cols; ++c)
      stage1(i, c) = pool_axis(rows, b.height, i, [&](index_t r) { return std::fabs(sw(r, c)); });
  tensor<float, 2> out(pr, pc);
  for (index_t i = 0; i < pr; ++i)
    for (index_t j = 0; j < pc; ++j)
      out(i, j) = pool_axis(cols, b.width, j, [&](index_t c) { return stage1(i, c); });
  return out;
}

/// tfmot's block mask (Pruning._maybe_update_block_mask): pooled = factorized_pool(w);
/// the low-magnitude rule on pooled values (k = kept_count(pooled size, s),
/// thr = k-th largest, keep pooled >= thr, ties kept); the pooled mask is expanded by
/// (bh, bw) from (0, 0) and cropped to w's extents. Quirk kept for bit-compatibility:
/// when an extent is not a multiple of its block side, the pooling windows are shifted by
/// the SAME padding while the expansion is not, so an edge element may take the decision
/// of a window that did not contain it. Block (1, 1) equals magnitude_mask.
/// tfmot rejects (ValueError) weights whose squeezed rank is not 2 and pooled shapes with
/// an extent of 1; qprune computes the same formula for every shape.
/// Throws config_error for a sparsity outside [0, 1] or a block side < 1.
template <float_view V>
  requires(V::rank() == 2)
[[nodiscard]] mask block_mask(const V& w, float sparsity, block_shape b,
                              block_pooling pool = block_pooling::avg) {
  check_sparsity(sparsity);
  const auto pooled = factorized_pool(w, b, pool);
  const mask pm = tfmot::magnitude_mask(pooled.cview(), sparsity);
  return prune::detail::expand_blocks(w.extents(), b, pooled.extent(1), pm.span());
}

/// tfmot's pruner with a block_size (and block_pooling_type) as a policy with a
/// run-time sparsity. Block (1, 1) is tfmot's element-wise mode.
class block_magnitude {
 public:
  using mask_type = mask;

  /// Throws config_error for a sparsity outside [0, 1] or a block side < 1.
  explicit block_magnitude(float sparsity, block_shape b = {1, 1},
                           block_pooling pool = block_pooling::avg)
      : sparsity_((check_sparsity(sparsity), sparsity)),
        block_((check_block_shape(b), b)),
        pool_(pool) {}

  float sparsity() const noexcept { return sparsity_; }
  void set_sparsity(float s) {
    check_sparsity(s);
    sparsity_ = s;
  }
  block_shape block() const noexcept { return block_; }
  block_pooling pooling() const noexcept { return pool_; }
  [[nodiscard]] mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    return tfmot::block_mask(w, sparsity_, block_, pool_);
  }

 private:
  float sparsity_;
  block_shape block_;
  block_pooling pool_;
};

static_assert(sparsity_pruner<block_magnitude>);

}  // namespace tfmot

}  // namespace qprune::prune

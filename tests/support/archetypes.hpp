// Minimal policies that satisfy each qprune concept and nothing more: if a
// concept ever asks for more than it needs, these stop compiling.
#pragma once

#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"

namespace qprune::test {

/// The least a weight quantizer must provide.
struct weight_quantizer_archetype {
  struct storage_type {
    index_t rows = 0, cols = 0;
  };
  storage_type quantize(tensor_view<const float, 2> w) const { return {w.extent(0), w.extent(1)}; }
  void dequantize(const storage_type&, tensor_view<float, 2>) const {}
};

/// The least an activation quantizer must provide.
struct activation_quantizer_archetype {
  static constexpr bool quantizes_activations = false;
};

}  // namespace qprune::test

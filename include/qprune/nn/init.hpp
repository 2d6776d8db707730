// Parameter initialisation with PyTorch's defaults for Linear and Conv2d, from an
// explicit, seeded std::mt19937 so runs are reproducible (same seed, same
// weights, for a given standard library).
#pragma once

#include <cmath>
#include <random>
#include <span>
#include <string>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"

namespace qprune::nn {

/// The generator every initialiser takes: seed it explicitly (std::mt19937(seed)).
using init_rng = std::mt19937;

/// Fills `values` with U(-bound, bound) draws, in order, from `rng`
/// (std::uniform_real_distribution<float>). Throws config_error for bound < 0 or NaN.
inline void uniform_fill(std::span<float> values, float bound, init_rng& rng) {
  if (!(bound >= 0.0f)) {
    throw config_error("uniform_fill: bound " + std::to_string(bound) + " (expected >= 0)");
  }
  std::uniform_real_distribution<float> dist(-bound, bound);
  for (float& v : values) v = bound == 0.0f ? 0.0f : dist(rng);
}

/// PyTorch's default bound for Linear/Conv2d weights and biases:
///   kaiming_uniform_(w, a = sqrt(5)): gain = sqrt(2 / (1 + a^2)) = sqrt(1/3),
///   bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in);
///   bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
/// fan_in = in_features (dense) or kernel_h * kernel_w * in_channels / groups (conv).
/// Throws config_error for fan_in < 1.
[[nodiscard]] inline float default_init_bound(index_t fan_in) {
  if (fan_in < 1) {
    throw config_error("default_init_bound: fan_in " + std::to_string(fan_in) +
                       " (expected >= 1)");
  }
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
}

/// PyTorch's default initialisation of a weight and its bias: both U(-b, b) with
/// b = 1/sqrt(fan_in), weights drawn first (row-major), then the bias.
inline void default_init(std::span<float> weight, std::span<float> bias, index_t fan_in,
                         init_rng& rng) {
  const float b = default_init_bound(fan_in);
  uniform_fill(weight, b, rng);
  uniform_fill(bias, b, rng);
}

}  // namespace qprune::nn

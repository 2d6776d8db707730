// Compile-fail test (not a GoogleTest): naming a layer with a type that is not a
// policy must stop compilation with the concept's diagnostic. tests/nn/policy.tests.cmake
// builds this TU once per QPRUNE_NOT_A_POLICY_* case and expects the build to fail
// with a message naming the unsatisfied concept; the `control` case (valid policies)
// must build, so a failure really comes from the concept check.
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/prune/magnitude.hpp"

namespace {
/// Looks like a pruner but has no mask_type.
struct not_a_pruner {
  [[nodiscard]] int compute_mask(qprune::tensor_view<const float, 2>) const { return 0; }
};
/// Not a weight quantizer: no storage_type, quantize or dequantize.
struct not_a_quantizer {};
}  // namespace

#if defined(QPRUNE_NOT_A_POLICY_DENSE)
using layer = qprune::nn::dense<qprune::quant::none, not_a_pruner>;
#elif defined(QPRUNE_NOT_A_POLICY_CONV2D)
using layer = qprune::nn::conv2d<qprune::quant::none, not_a_pruner>;
#elif defined(QPRUNE_NOT_A_POLICY_WEIGHTQ)
using layer = qprune::nn::dense<not_a_quantizer>;
#else  // control
using layer = qprune::nn::dense<qprune::quant::fp16, qprune::prune::magnitude>;
#endif

int main() {
  qprune::nn::init_rng rng(1);
  layer l({.in_features = 4, .out_features = 2}, rng);
  return static_cast<int>(l.weight().size()) == 8 ? 0 : 1;
}

#include "qprune/quant/concepts.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "support/archetypes.hpp"
#include "support/random.hpp"

namespace {

using qprune::index_t;
using qprune::tensor;
using qprune::tensor_view;
namespace quant = qprune::quant;

// The archetypes satisfy the concepts; things that are not policies do not.
static_assert(quant::weight_quantizer<qprune::test::weight_quantizer_archetype>);
static_assert(quant::activation_quantizer<qprune::test::activation_quantizer_archetype>);
static_assert(!quant::weight_quantizer<int>);
static_assert(!quant::weight_quantizer<qprune::test::activation_quantizer_archetype>);
static_assert(!quant::activation_quantizer<qprune::test::weight_quantizer_archetype>);
struct quantize_returns_wrong_type {
  using storage_type = tensor<float, 2>;
  int quantize(tensor_view<const float, 2>) const { return 0; }
  void dequantize(const storage_type&, tensor_view<float, 2>) const {}
};
static_assert(!quant::weight_quantizer<quantize_returns_wrong_type>);

tensor<float, 2> random_weights(index_t rows, index_t cols, std::uint64_t salt) {
  tensor<float, 2> w(rows, cols);
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (float& x : w.span()) x = nd(rng);
  return w;
}

TEST(WeightPolicies, NoneRoundTripsExactly) {
  const auto w = random_weights(7, 13, 1);
  const quant::none q;
  const auto s = q.quantize(w.cview());
  tensor<float, 2> back(7, 13);
  q.dequantize(s, back.view());
  EXPECT_TRUE(back == w);
}

template <class Policy, class H>
void check_two_byte_policy() {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(17, 33, 2);
  const Policy q;
  const auto s = q.quantize(w.cview());
  ASSERT_EQ(s.extent(0), 17);
  ASSERT_EQ(s.extent(1), 33);
  tensor<float, 2> back(17, 33);
  q.dequantize(s, back.view());
  for (index_t i = 0; i < 17; ++i) {
    for (index_t j = 0; j < 33; ++j) {
      ASSERT_EQ(s(i, j).bits, H(w(i, j)).bits);  // same bits as the scalar conversion
      ASSERT_EQ(back(i, j), static_cast<float>(H(w(i, j))));
    }
  }
  // A strided (column-major) view of the same numbers quantizes to the same storage.
  tensor<float, 2> wt(33, 17);
  for (index_t i = 0; i < 17; ++i)
    for (index_t j = 0; j < 33; ++j) wt(j, i) = w(i, j);
  const tensor_view<const float, 2, qprune::layout_left> cm(wt.data(), 17, 33);
  const auto s2 = q.quantize(tensor_view<const float, 2, qprune::layout_stride>(cm));
  EXPECT_TRUE(s2 == s);
}

TEST(WeightPolicies, Fp16MatchesScalarConversion) { check_two_byte_policy<quant::fp16, qprune::half>(); }
TEST(WeightPolicies, Bf16MatchesScalarConversion) {
  check_two_byte_policy<quant::bf16, qprune::bfloat16>();
}

TEST(WeightPolicies, PrunedZerosStayZero) {
  auto w = random_weights(4, 8, 3);
  for (index_t j = 0; j < 8; j += 2) w(1, j) = 0.0f;
  const auto s = quant::fp16{}.quantize(w.cview());
  for (index_t j = 0; j < 8; j += 2) EXPECT_EQ(s(1, j).bits, 0);
}

}  // namespace

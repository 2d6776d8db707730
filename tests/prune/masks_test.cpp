// prune::basic_mask (counts, apply to weights and gradients, AND, factories) and the
// pruner concepts: archetypes, prune::none, and every shipped policy used through the
// same generic code.
#include "qprune/prune/mask.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qprune/prune/block.hpp"
#include "qprune/prune/concepts.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/n_m.hpp"
#include "support/random.hpp"

namespace {

using qprune::extents;
using qprune::index_t;
using qprune::layout_left;
using qprune::layout_stride;
using qprune::tensor;
using qprune::tensor_view;
namespace prune = qprune::prune;

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

// Runs f, expects an E whose message contains `fragment`.
template <class E, class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an exception containing: " << fragment;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

tensor<float, 2> random_weights(index_t rows, index_t cols, std::uint64_t salt) {
  tensor<float, 2> w(rows, cols);
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : w.span()) x = nd(rng);
  return w;
}

prune::mask mask_of(index_t rows, index_t cols, std::vector<std::uint8_t> v) {
  return prune::mask::from_values(extents<2>(rows, cols), v);
}

// ---------------------------------------------------------------- the mask type

TEST(Mask, ConstructionCountsAndSparsity) {
  const prune::mask all(3, 4);
  EXPECT_EQ(all.rows(), 3);
  EXPECT_EQ(all.cols(), 4);
  EXPECT_EQ(all.size(), 12);
  EXPECT_EQ(all.count_kept(), 12);
  EXPECT_EQ(all.count_pruned(), 0);
  EXPECT_EQ(all.sparsity(), 0.0);

  const prune::mask none_kept(extents<2>(3, 4), false);
  EXPECT_EQ(none_kept.count_kept(), 0);
  EXPECT_EQ(none_kept.sparsity(), 1.0);

  const auto m = mask_of(2, 3, {1, 0, 1, 0, 0, 1});
  EXPECT_EQ(m.count_kept(), 3);
  EXPECT_EQ(m.sparsity(), 0.5);
  EXPECT_EQ(m(0, 1), 0);
  EXPECT_EQ(m(1, 2), 1);
  EXPECT_TRUE(m.is_binary());

  const prune::mask empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.sparsity(), 0.0);
}

TEST(Mask, FromValuesRejectsBadInput) {
  expect_error<qprune::shape_error>(
      [] {
        (void)mask_of(2, 2, {1, 0, 1});
      },
      "[qprune.shape] mask of extents [2, 2] given 3 values (expected 4)");
  expect_error<qprune::config_error>(
      [] {
        (void)mask_of(1, 3, {1, 2, 0});
      },
      "mask value 2 at index 1 is invalid (expected 0 or 1)");
}

TEST(Mask, FromNonzeros) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const tensor<float, 2> w(extents<2>(2, 3), {0.0f, -0.0f, nan, 1.5f, -2.0f, 0.0f});
  const auto m = prune::mask::from_nonzeros(w.cview());
  EXPECT_EQ(m, mask_of(2, 3, {0, 0, 1, 1, 1, 0}));
  // Any layout: a column-major view of the transposed buffer gives the same mask.
  const tensor<float, 2> wt(extents<2>(3, 2), {0.0f, 1.5f, -0.0f, -2.0f, nan, 0.0f});
  const tensor_view<const float, 2, layout_left> cm(wt.data(), 2, 3);
  EXPECT_EQ(prune::mask::from_nonzeros(cm), m);
}

TEST(Mask, ApplyZeroesPrunedWeightsExactly) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  tensor<float, 2> w(extents<2>(2, 4), {-1.5f, 2.0f, inf, nan, -0.0f, nan, -3.0f, 4.0f});
  const auto m = mask_of(2, 4, {0, 1, 0, 0, 1, 1, 0, 1});
  m.apply(w.view());
  EXPECT_EQ(bits(w(0, 0)), 0u);  // +0.0f, not -0.0f
  EXPECT_EQ(w(0, 1), 2.0f);
  EXPECT_EQ(bits(w(0, 2)), 0u);           // inf cleared (a product would give NaN)
  EXPECT_EQ(bits(w(0, 3)), 0u);           // NaN cleared
  EXPECT_EQ(bits(w(1, 0)), bits(-0.0f));  // kept entries are untouched
  EXPECT_TRUE(std::isnan(w(1, 1)));
  EXPECT_EQ(bits(w(1, 2)), 0u);
  EXPECT_EQ(w(1, 3), 4.0f);
  EXPECT_EQ(prune::mask::from_nonzeros(w.cview()).count_kept(), 3);
}

TEST(Mask, ApplyIsIdempotentAndLayoutIndependent) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w0 = random_weights(7, 13, 11);
  const auto m = prune::magnitude_mask(w0.cview(), 0.6f);
  auto once = w0;
  m.apply(once.view());
  auto twice = once;
  m.apply(twice.view());
  EXPECT_TRUE(once == twice);
  EXPECT_EQ(prune::mask::from_nonzeros(once.cview()), m);

  // The same numbers stored column-major, masked through a layout_left view.
  tensor<float, 2> wt(13, 7);
  for (index_t i = 0; i < 7; ++i)
    for (index_t j = 0; j < 13; ++j) wt(j, i) = w0(i, j);
  const tensor_view<float, 2, layout_left> cm(wt.data(), 7, 13);
  m.apply(cm);
  for (index_t i = 0; i < 7; ++i)
    for (index_t j = 0; j < 13; ++j) EXPECT_EQ(bits(wt(j, i)), bits(once(i, j)));
}

TEST(Mask, ApplyToGradient) {
  tensor<float, 2> g(extents<2>(1, 4), {0.5f, -0.25f, 1.0f, -2.0f});
  mask_of(1, 4, {1, 0, 0, 1}).apply_to_gradient(g.view());
  EXPECT_EQ(g(0, 0), 0.5f);
  EXPECT_EQ(bits(g(0, 1)), 0u);
  EXPECT_EQ(bits(g(0, 2)), 0u);
  EXPECT_EQ(g(0, 3), -2.0f);
}

TEST(Mask, ApplyShapeMismatchThrows) {
  tensor<float, 2> w(3, 5);
  expect_error<qprune::shape_error>([&] { prune::mask(3, 4).apply(w.view()); },
                                    "the mask has extents [3, 4] but the tensor has [3, 5]");
}

TEST(Mask, LogicalAnd) {
  const auto a = mask_of(2, 2, {1, 1, 0, 0});
  const auto b = mask_of(2, 2, {1, 0, 1, 0});
  EXPECT_EQ(a & b, mask_of(2, 2, {1, 0, 0, 0}));
  auto c = a;
  c &= prune::mask(2, 2);
  EXPECT_EQ(c, a);
  EXPECT_THROW((void)(a & prune::mask(2, 3)), qprune::shape_error);
}

TEST(Mask, NdMaskAndReshape) {
  // A conv filter mask [out, kh, kw, in] and its [out, kh*kw*in] view.
  prune::basic_mask<4> m4(2, 3, 3, 4);
  m4(1, 2, 0, 3) = 0;
  EXPECT_EQ(m4.count_pruned(), 1);
  const auto m2 = m4.reshaped(extents<2>(2, 36));
  EXPECT_EQ(m2(1, (2 * 3 + 0) * 4 + 3), 0);
  EXPECT_EQ(m2.count_pruned(), 1);
  EXPECT_EQ(m2.reshaped(extents<4>(2, 3, 3, 4)), m4);
  EXPECT_THROW((void)m4.reshaped(extents<2>(5, 5)), qprune::shape_error);

  tensor<float, 4> w(extents<4>(2, 3, 3, 4), 1.0f);
  m4.apply(w.view());
  EXPECT_EQ(w(1, 2, 0, 3), 0.0f);
  EXPECT_EQ(w(1, 2, 0, 2), 1.0f);
}

// ---------------------------------------------------------------- concepts

// The least a pruner must provide: a mask type that applies itself, and compute_mask.
struct mask_archetype {
  void apply(tensor_view<float, 2>) const {}
};
struct pruner_archetype {
  using mask_type = mask_archetype;
  mask_type compute_mask(tensor_view<const float, 2>) const { return {}; }
};
struct sparsity_pruner_archetype : pruner_archetype {
  void set_sparsity(float) {}
  float sparsity() const { return 0.0f; }
};
struct wrong_return_type {
  using mask_type = prune::mask;
  int compute_mask(tensor_view<const float, 2>) const { return 0; }
};
struct mask_without_apply {
  using mask_type = int;
  int compute_mask(tensor_view<const float, 2>) const { return 0; }
};
struct no_mask_type {
  prune::mask compute_mask(tensor_view<const float, 2>) const { return {}; }
};

static_assert(prune::pruner<pruner_archetype>);
static_assert(!prune::sparsity_pruner<pruner_archetype>);
static_assert(prune::sparsity_pruner<sparsity_pruner_archetype>);
static_assert(!prune::pruner<int>);
static_assert(!prune::pruner<wrong_return_type>);
static_assert(!prune::pruner<mask_without_apply>);
static_assert(!prune::pruner<no_mask_type>);
static_assert(prune::applicable_mask<prune::mask> && prune::applicable_mask<prune::all_kept_mask>);

static_assert(prune::pruner<prune::none> && !prune::sparsity_pruner<prune::none>);
static_assert(prune::sparsity_pruner<prune::magnitude>);
static_assert(prune::sparsity_pruner<prune::block_magnitude>);
static_assert(prune::pruner<prune::n_m> && !prune::sparsity_pruner<prune::n_m>);
static_assert(prune::sparsity_pruner<prune::tfmot::magnitude>);
static_assert(prune::sparsity_pruner<prune::tfmot::block_magnitude>);
static_assert(prune::pruner<prune::tfmot::m_by_n>);

// How a layer holds its policy and mask: an empty policy and mask cost no bytes.
template <prune::pruner P>
struct layer_like {
  [[no_unique_address]] P pruner;
  [[no_unique_address]] typename P::mask_type mask;
  float weight;
};
static_assert(sizeof(layer_like<prune::none>) == sizeof(float));

// Generic code written once against the concept.
template <prune::pruner P>
tensor<float, 2> pruned_copy(const P& p, const tensor<float, 2>& w) {
  auto out = w;
  const auto m = p.compute_mask(w.cview());
  m.apply(out.view());
  return out;
}

TEST(PrunerConcept, NoneKeepsEverything) {
  const auto w = random_weights(4, 8, 21);
  EXPECT_TRUE(pruned_copy(prune::none{}, w) == w);
  EXPECT_EQ(prune::none{}.compute_mask(w.cview()).sparsity(), 0.0);
  static_assert(prune::all_kept_mask::is_all_kept);
}

TEST(PrunerConcept, EveryPolicyWorksThroughGenericCode) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(8, 16, 22);
  const auto count_zeros = [](const tensor<float, 2>& t) {
    return t.size() - prune::mask::from_nonzeros(t.cview()).count_kept();
  };
  EXPECT_EQ(count_zeros(pruned_copy(prune::magnitude(0.75f), w)), 96);
  EXPECT_EQ(count_zeros(pruned_copy(prune::n_m(2, 4), w)), 64);
  EXPECT_EQ(count_zeros(pruned_copy(prune::block_magnitude(0.5f, {1, 4}), w)), 64);
  EXPECT_EQ(count_zeros(pruned_copy(prune::tfmot::magnitude(0.25f), w)), 32);
  EXPECT_EQ(count_zeros(pruned_copy(prune::tfmot::block_magnitude(0.5f, {2, 2}), w)), 64);
  EXPECT_EQ(count_zeros(pruned_copy(prune::tfmot::m_by_n(2, 4), w)), 64);
  EXPECT_EQ(count_zeros(pruned_copy(pruner_archetype{}, w)), 0);
}

}  // namespace

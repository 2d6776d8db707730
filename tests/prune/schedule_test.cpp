// tfmot pruning schedules (step rules from tfmot's pruning_schedule_test, float32 values
// of PolynomialDecay as TF computes them), update_mask in a training loop, and the
// iterative helper's PyTorch counting rule.
#include "qprune/prune/schedule.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "qprune/prune/magnitude.hpp"
#include "support/random.hpp"

namespace {

using qprune::extents;
using qprune::index_t;
using qprune::tensor;
namespace prune = qprune::prune;

template <class E, class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an exception containing: " << fragment;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

// ---------------------------------------------------------------- step rules

template <class S>
void check_begin_end_range(const S& s) {
  // tfmot testPrunesOnlyInBeginEndStepRange: begin 100, end 200, frequency 1.
  EXPECT_FALSE(s.should_prune(90));
  EXPECT_FALSE(s.should_prune(99));
  EXPECT_TRUE(s.should_prune(100));
  EXPECT_TRUE(s.should_prune(110));
  EXPECT_TRUE(s.should_prune(200));
  EXPECT_FALSE(s.should_prune(201));
  EXPECT_FALSE(s.should_prune(210));
}

template <class S>
void check_frequency(const S& s) {
  // tfmot testOnlyPrunesAtValidFrequencySteps: begin 100, end 200, frequency 10.
  EXPECT_FALSE(s.should_prune(109));
  EXPECT_FALSE(s.should_prune(111));
  EXPECT_TRUE(s.should_prune(100));
  EXPECT_TRUE(s.should_prune(110));
  EXPECT_TRUE(s.should_prune(200));
  EXPECT_FALSE(s.should_prune(210));
}

TEST(Schedule, StepRulesMatchTfmot) {
  check_begin_end_range(prune::constant_sparsity(0.5, 100, 200, 1));
  check_begin_end_range(prune::polynomial_decay(0.2, 0.8, 100, 200, 3, 1));
  check_frequency(prune::constant_sparsity(0.5, 100, 200, 10));
  check_frequency(prune::polynomial_decay(0.2, 0.8, 100, 200, 3, 10));
  // end_step = -1 prunes for ever (testPrunesForeverIfEndStepIsNegativeOne).
  const prune::constant_sparsity forever(0.5, 0, -1, 10);
  EXPECT_TRUE(forever.should_prune(10000));
  EXPECT_TRUE(forever.should_prune(100000000));
  EXPECT_FALSE(forever.should_prune(100000001));
  EXPECT_FALSE(forever.should_prune(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(forever.sparsity(100000000), 0.5f);
  // Defaults: end -1, frequency 100.
  const prune::constant_sparsity d(0.3, 5);
  EXPECT_EQ(d.end_step(), -1);
  EXPECT_EQ(d.frequency(), 100);
  EXPECT_TRUE(d.should_prune(105));
  EXPECT_FALSE(d.should_prune(100));
  EXPECT_EQ(bits(d.sparsity(0)), bits(0.3f));  // float32(target)
}

TEST(Schedule, ValidationMatchesTfmot) {
  expect_error<qprune::config_error>([] { (void)prune::constant_sparsity(0.5, -1, 1000); },
                                     "begin_step -1 is invalid (expected >= 0)");
  expect_error<qprune::config_error>([] { (void)prune::constant_sparsity(0.5, 10, -5); },
                                     "end_step -5 is invalid (expected -1 or >= 0)");
  expect_error<qprune::config_error>(
      [] { (void)prune::polynomial_decay(0.2, 0.8, 10, 5); },
      "end_step 5 is before begin_step 10 (expected begin_step <= end_step)");
  expect_error<qprune::config_error>([] { (void)prune::polynomial_decay(0.4, 0.8, 10, -1); },
                                     "end_step -1 (prune forever) is invalid for polynomial_decay");
  for (const std::int64_t f : {0, -1, -5}) {
    EXPECT_THROW((void)prune::constant_sparsity(0.5, 10, 1000, f), qprune::config_error) << f;
    EXPECT_THROW((void)prune::polynomial_decay(0.2, 0.8, 10, 1000, 3, f), qprune::config_error)
        << f;
  }
  for (const double s : {-0.001, -1.0, -10.0, 1.0, 10.0, std::nan("")}) {
    EXPECT_THROW((void)prune::constant_sparsity(s, 0), qprune::config_error) << s;
    EXPECT_THROW((void)prune::polynomial_decay(s, 0.8, 0, 10), qprune::config_error) << s;
    EXPECT_THROW((void)prune::polynomial_decay(0.2, s, 0, 10), qprune::config_error) << s;
  }
  expect_error<qprune::config_error>([] { (void)prune::constant_sparsity(1.0, 0); },
                                     "target_sparsity 1 is invalid (expected [0, 1))");
  for (const double s : {0.0, 0.001, 0.5, 0.99}) {
    EXPECT_NO_THROW((void)prune::constant_sparsity(s, 0));
    EXPECT_NO_THROW((void)prune::polynomial_decay(s, 0.8, 0, 10));
  }
  EXPECT_NO_THROW((void)prune::constant_sparsity(0.5, 0, 0));
  EXPECT_NO_THROW((void)prune::polynomial_decay(0.2, 0.8, 10, 10));
  EXPECT_THROW((void)prune::polynomial_decay(0.2, 0.8, 0, 10, -1.0), qprune::config_error);
  EXPECT_THROW((void)prune::polynomial_decay(0.2, 0.8, 0, 10, std::nan("")), qprune::config_error);
}

// ---------------------------------------------------------------- PolynomialDecay values

struct poly_point {
  std::int64_t step;
  std::uint32_t bits;
  bool prune;
};

void check_table(const prune::polynomial_decay& s, const std::vector<poly_point>& table) {
  for (const auto& p : table) {
    EXPECT_EQ(bits(s.sparsity(p.step)), p.bits) << "step " << p.step << ": " << s.sparsity(p.step);
    EXPECT_EQ(s.should_prune(p.step), p.prune) << "step " << p.step;
  }
}

TEST(PolynomialDecay, Float32ValuesLikeTensorFlow) {
  // PolynomialDecay(0, 0.9, 0, 100, power 3, frequency 100). By hand, in float32:
  //   step 0:   p = 0, (1-p)^3 = 1: f32(-0.9) + f32(0.9) = 0
  //   step 1:   p = 0.01f, 0.99f^3 = 0.970299..: -0.9f * 0.970299 + 0.9f = 0.0267309 (0x3cdafac0)
  //   step 50:  p = 0.5, 0.125: -0.9f * 0.125 = -0.1125 (exact scaling), + 0.9f = 0.78749996
  //   step 99:  p = 0.99f, 0.01^3 ~ 1e-6: 0.8999991
  //   step 100, 150: p = 1 (clipped): f32(0.9) = 0.89999998
  check_table(prune::polynomial_decay(0.0, 0.9, 0, 100), {{0, 0x00000000u, true},
                                                          {1, 0x3cdafac0u, false},
                                                          {50, 0x3f499999u, false},
                                                          {99, 0x3f666657u, false},
                                                          {100, 0x3f666666u, true},
                                                          {150, 0x3f666666u, false}});
  // tfmot testPolynomialDecay_PrunesCorrectly: (0.2, 0.8, 100, 110, 3, 2) gives ~0.2,
  // 0.4928, 0.725, 0.8. In float32 the step-100 value is f32(-0.6) + f32(0.8) =
  // 0.19999999 (0x3e4ccccc), not f32(0.2) = 0x3e4ccccd.
  check_table(prune::polynomial_decay(0.2, 0.8, 100, 110, 3, 2), {{90, 0x3e4ccccc, false},
                                                                  {100, 0x3e4ccccc, true},
                                                                  {102, 0x3efc5048, true},
                                                                  {105, 0x3f39999a, false},
                                                                  {110, 0x3f4ccccd, true},
                                                                  {111, 0x3f4ccccd, false}});
  check_table(prune::polynomial_decay(0.5, 0.95, 1000, 5000, 2, 1000), {{999, 0x3f000000, false},
                                                                        {1000, 0x3f000000, true},
                                                                        {1001, 0x3f000ebe, false},
                                                                        {2345, 0x3f407270, false},
                                                                        {4999, 0x3f733333, false},
                                                                        {5000, 0x3f733333, true},
                                                                        {7000, 0x3f733333, false}});
}

TEST(PolynomialDecay, AgreesWithTheRealFormula) {
  // Independent check of the formula (double precision) on random schedules: the
  // float32 evaluation is within a few float32 ulps of s_f + (s_i - s_f)(1 - p)^power.
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(3);
  std::uniform_real_distribution<double> sp(0.0, 0.999);
  std::uniform_int_distribution<std::int64_t> st(0, 5000);
  for (int t = 0; t < 200; ++t) {
    const double si = sp(rng), sf = sp(rng);
    const std::int64_t b = st(rng), e = b + 1 + st(rng);
    const double power = static_cast<double>(1 + t % 4);
    const prune::polynomial_decay s(si, sf, b, e, power);
    for (const std::int64_t step : {b - 1, b, b + 1, (b + e) / 2, e - 1, e, e + 7}) {
      const double p =
          std::clamp(static_cast<double>(step - b) / static_cast<double>(e - b), 0.0, 1.0);
      const double want = sf + (si - sf) * std::pow(1.0 - p, power);
      ASSERT_NEAR(s.sparsity(step), want, 4e-7)
          << si << " " << sf << " " << b << " " << e << " " << step;
    }
  }
}

TEST(PolynomialDecay, EndEqualsBeginGivesTheFinalSparsity) {
  const prune::polynomial_decay s(0.2, 0.8, 10, 10, 3, 1);
  EXPECT_EQ(s.sparsity(9), static_cast<float>(0.2 - 0.8) + 0.8f);
  EXPECT_EQ(s.sparsity(10), 0.8f);
  EXPECT_EQ(s.sparsity(11), 0.8f);
  EXPECT_TRUE(s.should_prune(10));
  EXPECT_FALSE(s.should_prune(11));
}

// ---------------------------------------------------------------- schedules in a training loop

// A schedule given as a table (tfmot's testConditionalMaskUpdate uses one).
struct table_schedule {
  std::vector<float> values;
  bool should_prune(std::int64_t) const { return true; }
  float sparsity(std::int64_t step) const { return values[static_cast<std::size_t>(step)]; }
};
static_assert(prune::pruning_schedule<table_schedule>);

TEST(UpdateMask, TfmotConditionalMaskUpdateSequence) {
  // Weights 1..100, sparsities [0, .1, .1, .3, .3, .5, .5, .5, .5, .5]; the mask is
  // applied to the weights after every step. tfmot expects these nonzero counts.
  tensor<float, 2> w(1, 100);
  for (index_t i = 0; i < 100; ++i) w(0, i) = static_cast<float>(i + 1);
  const table_schedule sched{{0.0f, 0.1f, 0.1f, 0.3f, 0.3f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}};
  prune::tfmot::magnitude pruner;
  prune::mask m(1, 100);
  std::vector<index_t> nonzeros;
  for (std::int64_t step = 0; step < 10; ++step) {
    EXPECT_TRUE(prune::update_mask(sched, step, pruner, w.cview(), m));
    m.apply(w.view());
    nonzeros.push_back(prune::mask::from_nonzeros(w.cview()).count_kept());
  }
  EXPECT_EQ(nonzeros, (std::vector<index_t>{100, 90, 90, 70, 70, 50, 50, 50, 50, 50}));
}

// A pruner written against the concept's signature alone (row-major views only):
// update_mask passes the caller's view through, so it compiles and runs.
struct row_major_only_pruner : prune::sparsity_target {
  using mask_type = prune::mask;
  row_major_only_pruner() : prune::sparsity_target(0.0f) {}
  prune::mask compute_mask(qprune::tensor_view<const float, 2> w) const {
    prune::mask m(w.extents(), false);
    const auto keep = static_cast<index_t>(std::lround((1.0 - sparsity()) * static_cast<double>(w.extent(1))));
    for (index_t r = 0; r < w.extent(0); ++r)
      for (index_t c = 0; c < keep; ++c) m(r, c) = 1;  // keeps the first columns
    return m;
  }
};
static_assert(prune::sparsity_pruner<row_major_only_pruner>);

TEST(UpdateMask, TakesPrunersThatAcceptOnlyRowMajorViews) {
  tensor<float, 2> w(2, 4);
  row_major_only_pruner p;
  prune::mask m(2, 4);
  const table_schedule sched{{0.5f}};
  EXPECT_TRUE(prune::update_mask(sched, 0, p, w.cview(), m));
  EXPECT_EQ(m.count_kept(), 4);
  EXPECT_EQ(m(0, 1), 1);
  EXPECT_EQ(m(0, 2), 0);
}

TEST(UpdateMask, GradualPruningWithPolynomialDecay) {
  SCOPED_TRACE(qprune::test::seed_trace());
  tensor<float, 2> w(32, 32);
  auto rng = qprune::test::make_rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : w.span()) x = nd(rng);
  const prune::polynomial_decay sched(0.0, 0.9, 0, 100, 3, 10);
  prune::magnitude pruner;
  prune::mask m(32, 32);
  int updates = 0;
  double last = 0.0;
  for (std::int64_t step = 0; step <= 120; ++step) {
    const auto before = m;
    if (prune::update_mask(sched, step, pruner, w.cview(), m)) {
      ++updates;
      EXPECT_EQ(step % 10, 0);
      EXPECT_EQ(pruner.sparsity(), sched.sparsity(step));
      EXPECT_GE(m.sparsity(), last);
      EXPECT_EQ(m & before, m);  // pruned weights stay pruned: the zeros rank lowest
      last = m.sparsity();
    } else {
      EXPECT_EQ(m, before);
    }
    m.apply(w.view());
    // (a training step would update w here, with gradients masked by m)
  }
  EXPECT_EQ(updates, 11);            // steps 0, 10, ..., 100
  EXPECT_EQ(m.count_pruned(), 922);  // round_half_even(1024 * 0.9f) = round(921.6)
}

// ---------------------------------------------------------------- iterative

TEST(Iterative, AmountsAreRelativeToWhatRemains) {
  const prune::iterative frac{0.3, 0.5};
  EXPECT_EQ(frac.size(), 2);
  EXPECT_EQ(frac.remaining_after(91, 0), 91);
  EXPECT_EQ(frac.remaining_after(91, 1), 64);  // 91 - round(27.3)
  EXPECT_EQ(frac.remaining_after(91, 2), 32);  // 64 - 32
  EXPECT_DOUBLE_EQ(frac.sparsity_after(91, 2), 1.0 - 32.0 / 91.0);
  const prune::iterative counts{20, 15};
  EXPECT_EQ(counts.remaining_after(91, 2), 56);
  const prune::iterative halves{0.5, 0.5};
  EXPECT_EQ(halves.remaining_after(13, 2), 3);  // 13 - round(6.5) = 7; 7 - round(3.5) = 3
  const prune::iterative mixed{0.2, 0.25, 1};
  EXPECT_EQ(mixed.remaining_after(10, 3), 5);  // 10 - 2 = 8; 8 - 2 = 6; 6 - 1 = 5
  EXPECT_TRUE(mixed[2].is_count());
  EXPECT_EQ(mixed.sparsity_after(0, 0), 0.0);
  expect_error<qprune::config_error>([&] { (void)mixed.remaining_after(10, 4); },
                                     "iterative: 4 steps requested (expected 0 to 3)");
  const prune::iterative too_many{5, 5};
  expect_error<qprune::config_error>(
      [&] { (void)too_many.remaining_after(8, 2); },
      "amount=5 should be smaller than the number of parameters to prune=3");
  EXPECT_THROW((void)prune::iterative({0.5, 1.5}), qprune::config_error);
}

TEST(Iterative, MaskMatchesTheRemainingCount) {
  SCOPED_TRACE(qprune::test::seed_trace());
  tensor<float, 2> w(7, 13);
  auto rng = qprune::test::make_rng(6);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : w.span()) x = nd(rng);
  const prune::iterative it{0.3, 0.5, 10};
  for (index_t s = 0; s <= it.size(); ++s) {
    const auto m = it.l1_unstructured(w.cview(), s);
    EXPECT_EQ(m.count_kept(), it.remaining_after(91, s));
    // With distinct magnitudes, iterating L1 keeps the largest |w| (same as one shot).
    EXPECT_EQ(m, prune::pytorch::l1_unstructured(w.cview(), 91 - it.remaining_after(91, s)));
  }
}

}  // namespace

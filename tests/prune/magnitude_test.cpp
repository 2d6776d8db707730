// Magnitude pruning: qprune's exact-k default (rounding, tie and NaN rules, global),
// torch.nn.utils.prune masks on every vector of tests/data/prune/torch_prune.json and
// masks_torch_container.json (exact), and tfmot's low-magnitude mask (tfmot's own test
// cases and hand-computed thresholds).
#include "qprune/prune/magnitude.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "qprune/prune/schedule.hpp"
#include "support/data.hpp"
#include "support/json.hpp"
#include "support/random.hpp"

namespace {

using qprune::test::load_json;
using qprune::test::floats;

using qprune::extents;
using qprune::index_t;
using qprune::layout_left;
using qprune::tensor;
using qprune::tensor_view;
namespace prune = qprune::prune;
namespace pytorch = qprune::prune::pytorch;
namespace tfmot = qprune::prune::tfmot;
using json = nlohmann::json;
using bytes = std::vector<std::uint8_t>;

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();

template <class E, class F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an exception containing: " << fragment;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

template <std::size_t R>
bytes flat(const prune::basic_mask<R>& m) {
  return bytes(m.span().begin(), m.span().end());
}

tensor<float, 2> random_weights(index_t rows, index_t cols, std::uint64_t salt) {
  tensor<float, 2> w(rows, cols);
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& x : w.span()) x = nd(rng);
  return w;
}

tensor<float, 2> row(std::vector<float> v) {
  return tensor<float, 2>(extents<2>(1, static_cast<index_t>(v.size())), std::span<const float>(v));
}

// ---------------------------------------------------------------- qprune's exact-k default

TEST(Magnitude, PrunesExactlyRoundHalfEvenOfSparsityTimesN) {
  SCOPED_TRACE(qprune::test::seed_trace());
  // (rows, cols, sparsity, expected k): half-way products round to even.
  struct row_case {
    index_t rows, cols;
    float s;
    index_t k;
  };
  for (const auto c :
       {row_case{1, 13, 0.5f, 6}, row_case{1, 7, 0.5f, 4}, row_case{2, 5, 0.25f, 2},
        row_case{2, 7, 0.25f, 4}, row_case{4, 4, 0.3f, 5}, row_case{8, 16, 0.9f, 115},
        row_case{3, 3, 0.0f, 0}, row_case{3, 3, 1.0f, 9}}) {
    const auto w =
        random_weights(c.rows, c.cols, static_cast<std::uint64_t>(c.rows * 100 + c.cols));
    const auto m = prune::magnitude_mask(w.cview(), c.s);
    EXPECT_EQ(m.count_pruned(), c.k) << c.rows << "x" << c.cols << " s=" << c.s;
    // Every pruned |w| is <= every kept |w|.
    float max_pruned = 0.0f, min_kept = std::numeric_limits<float>::infinity();
    for (index_t i = 0; i < w.size(); ++i) {
      const float a = std::fabs(w.data()[i]);
      if (m.data()[i] == 0)
        max_pruned = std::max(max_pruned, a);
      else
        min_kept = std::min(min_kept, a);
    }
    EXPECT_LE(max_pruned, min_kept);
  }
}

TEST(Magnitude, ReachesTheRequestedSparsityOnRandomShapes) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(31);
  std::uniform_int_distribution<index_t> dim(1, 40);
  std::uniform_real_distribution<float> frac(0.0f, 1.0f);
  for (int t = 0; t < 200; ++t) {
    const index_t r = dim(rng), c = dim(rng);
    const float s = frac(rng);
    const auto w = random_weights(r, c, static_cast<std::uint64_t>(1000 + t));
    const auto m = prune::magnitude_mask(w.cview(), s);
    const double k = std::nearbyint(static_cast<double>(s) * static_cast<double>(r * c));
    ASSERT_EQ(m.count_pruned(), static_cast<index_t>(k));
    // The mask is a fixed point: recomputing it on the masked weights changes nothing.
    auto masked = w;
    m.apply(masked.view());
    ASSERT_EQ(prune::magnitude_mask(masked.cview(), s), m);
  }
}

TEST(Magnitude, TieRuleLowerIndexIsKeptFirst) {
  // All-equal weights: the tie rule alone decides; later entries are pruned first.
  const auto w = row({1, 1, 1, 1, 1, 1});
  EXPECT_EQ(flat(prune::magnitude_mask(w.cview(), 0.5f)), (bytes{1, 1, 1, 0, 0, 0}));
  // Sign does not matter, only |w|; ties broken by position.
  const auto v = row({-2, 1, -1, 3, 1, -1});
  EXPECT_EQ(flat(prune::magnitude_mask(v.cview(), 0.5f)), (bytes{1, 1, 0, 1, 0, 0}));
  EXPECT_EQ(flat(prune::magnitude_mask(v.cview(), 1.0f / 3.0f)), (bytes{1, 1, 1, 1, 0, 0}));
  // Row-major order across rows: in a 2x2 of equal weights, (1, 1) goes first.
  const tensor<float, 2> sq(extents<2>(2, 2), {5, 5, 5, 5});
  EXPECT_EQ(flat(prune::magnitude_mask(sq.cview(), 0.25f)), (bytes{1, 1, 1, 0}));
}

TEST(Magnitude, EdgeCases) {
  const auto one = row({-0.5f});
  EXPECT_EQ(flat(prune::magnitude_mask(one.cview(), 0.0f)), bytes{1});
  EXPECT_EQ(flat(prune::magnitude_mask(one.cview(), 0.49f)), bytes{1});  // round(0.49) = 0
  EXPECT_EQ(flat(prune::magnitude_mask(one.cview(), 0.5f)), bytes{1});   // round(0.5) = 0 (even)
  EXPECT_EQ(flat(prune::magnitude_mask(one.cview(), 0.51f)), bytes{0});
  const tensor<float, 2> empty(0, 5);
  EXPECT_EQ(prune::magnitude_mask(empty.cview(), 0.5f).size(), 0);
  // NaN weights rank above every number (never pruned before a number), inf below NaN.
  const auto w = row({nan_f, 1, -std::numeric_limits<float>::infinity(), 3});
  EXPECT_EQ(flat(prune::magnitude_mask(w.cview(), 0.5f)), (bytes{1, 0, 1, 0}));
  EXPECT_EQ(flat(prune::magnitude_mask(w.cview(), 0.75f)), (bytes{1, 0, 0, 0}));
  EXPECT_EQ(flat(prune::magnitude_mask(w.cview(), 1.0f)), (bytes{0, 0, 0, 0}));
}

TEST(Magnitude, BadSparsityThrows) {
  const auto w = row({1, 2, 3});
  for (const float s : {-0.01f, 1.01f, nan_f}) {
    expect_error<qprune::config_error>([&] { (void)prune::magnitude_mask(w.cview(), s); },
                                       "(expected a fraction of zeros in [0, 1])");
  }
  expect_error<qprune::config_error>([] { (void)prune::magnitude(1.5f); },
                                     "[qprune.config] sparsity 1.5 is invalid");
  prune::magnitude p(0.5f);
  EXPECT_THROW(p.set_sparsity(-1.0f), qprune::config_error);
  EXPECT_EQ(p.sparsity(), 0.5f);  // unchanged after a rejected update
}

TEST(Magnitude, StridedViewGivesTheSameMask) {
  const auto w = random_weights(6, 9, 41);
  tensor<float, 2> wt(9, 6);
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 9; ++j) wt(j, i) = w(i, j);
  const tensor_view<const float, 2, layout_left> cm(wt.data(), 6, 9);
  EXPECT_EQ(prune::magnitude_mask(cm, 0.4f), prune::magnitude_mask(w.cview(), 0.4f));
  EXPECT_EQ(prune::magnitude(0.4f).compute_mask(cm), prune::magnitude_mask(w.cview(), 0.4f));
}

TEST(Magnitude, ScoreMaskUsesRawScores) {
  // Scores are not |score|: a negative score ranks lowest.
  const auto s = row({-5, 1, 2, 0.5f});
  EXPECT_EQ(flat(prune::score_mask(s.cview(), 0.5f)), (bytes{0, 1, 1, 0}));
  EXPECT_EQ(flat(prune::magnitude_mask(s.cview(), 0.5f)), (bytes{1, 0, 1, 0}));
}

TEST(Magnitude, PruneLowestKernel) {
  const std::vector<float> s{3, 1, 2, 1};
  bytes keep{1, 1, 0, 1};  // entry 2 was pruned before: stays 0
  prune::prune_lowest(s, 2, keep);
  EXPECT_EQ(keep, (bytes{1, 0, 0, 0}));
  EXPECT_THROW(prune::prune_lowest(s, 5, keep), qprune::config_error);
  bytes short_keep{1, 1};
  expect_error<qprune::shape_error>([&] { prune::prune_lowest(s, 1, short_keep); },
                                    "4 scores but 2 mask entries");
}

TEST(Magnitude, PruneLowestMatchesASortedReference) {
  // The ranking kernel against a direct statement of the rule: sort positions by
  // (score, NaN highest), ties by the higher position first, and prune the first k.
  // Few distinct values, NaN, +-0.0 and +-inf make ties and special values common.
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(91);
  const std::vector<float> pool{0.0f,
                                -0.0f,
                                1.0f,
                                -1.0f,
                                2.5f,
                                -7.0f,
                                nan_f,
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(),
                                1e-40f};
  std::uniform_int_distribution<std::size_t> pick(0, pool.size() - 1);
  std::uniform_int_distribution<index_t> len(0, 300);
  for (int t = 0; t < 300; ++t) {
    const index_t n = len(rng);
    std::vector<float> s(static_cast<std::size_t>(n));
    for (float& x : s) x = pool[pick(rng)];
    std::uniform_int_distribution<index_t> kd(0, n);
    const index_t k = kd(rng);
    bytes keep(s.size(), 1);
    prune::prune_lowest(s, k, keep);
    std::vector<index_t> order(s.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<index_t>(i);
    const auto key = [](float x) {
      return x != x ? std::numeric_limits<double>::infinity() * 2 : x;
    };
    std::sort(order.begin(), order.end(), [&](index_t a, index_t b) {
      const float x = s[static_cast<std::size_t>(a)], y = s[static_cast<std::size_t>(b)];
      const bool xn = x != x, yn = y != y;
      if (xn != yn) return yn;  // a number is below NaN
      if (!xn && key(x) != key(y)) return key(x) < key(y);
      return a > b;  // ties: the higher position first
    });
    bytes want(s.size(), 1);
    for (index_t i = 0; i < k; ++i)
      want[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 0;
    ASSERT_EQ(keep, want) << "n=" << n << " k=" << k;
  }
}

TEST(Magnitude, GlobalUsesOneThresholdAcrossTensors) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto a = random_weights(5, 8, 51);
  const auto b = random_weights(3, 4, 52);
  tensor<float, 2> b_scaled = b;
  for (float& x : b_scaled.span()) x *= 0.1f;  // b's weights are mostly the smallest
  const std::vector<tensor_view<const float, 2>> ws{a.cview(), b_scaled.cview()};
  const auto ms = prune::global_magnitude_masks(ws, 0.5f);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].count_pruned() + ms[1].count_pruned(), 26);  // round(0.5 * 52)
  // Per tensor would prune half of each; globally b loses more than half.
  EXPECT_GT(ms[1].count_pruned(), 6);
  // Same result as one magnitude_mask over the concatenation.
  tensor<float, 2> cat(1, 52);
  std::copy(a.span().begin(), a.span().end(), cat.span().begin());
  std::copy(b_scaled.span().begin(), b_scaled.span().end(), cat.span().begin() + 40);
  const auto mc = prune::magnitude_mask(cat.cview(), 0.5f);
  bytes joined = flat(ms[0]);
  const bytes second = flat(ms[1]);
  joined.insert(joined.end(), second.begin(), second.end());
  EXPECT_EQ(joined, flat(mc));
  // Tie rule across tensors: the later tensor's entries are pruned first.
  const auto t1 = row({1, 1}), t2 = row({1, 1});
  const std::vector<tensor_view<const float, 2>> tied{t1.cview(), t2.cview()};
  const auto mt = prune::global_magnitude_masks(tied, 0.5f);
  EXPECT_EQ(flat(mt[0]), (bytes{1, 1}));
  EXPECT_EQ(flat(mt[1]), (bytes{0, 0}));
}

// ---------------------------------------------------------------- PyTorch vectors

const json& torch_vectors() {
  static const json j = load_json("prune/torch_prune.json");
  return j;
}
const json& container_vectors() {
  static const json j = load_json("prune/masks_torch_container.json");
  return j;
}

bytes mask_bytes(const json& a) {
  bytes v;
  for (const auto& x : a) v.push_back(static_cast<std::uint8_t>(x.get<int>()));
  return v;
}
std::vector<index_t> shape_of(const json& a) { return a.get<std::vector<index_t>>(); }
pytorch::amount amount_of(const json& c) {
  if (c.at("amount_is_int").get<bool>())
    return pytorch::amount(c.at("amount_int").get<std::int64_t>());
  return pytorch::amount(std::bit_cast<double>(c.at("amount_bits64").get<std::uint64_t>()));
}
double norm_of(const json& c) {
  return std::bit_cast<double>(c.at("n_bits64").get<std::uint64_t>());
}

// Calls f with a row-major view of `data` whose rank (1 to 4) is known at run time.
template <class F>
auto with_view(const std::vector<index_t>& s, const std::vector<float>& data, F&& f) {
  switch (s.size()) {
    case 1:
      return f(tensor_view<const float, 1>(data.data(), s[0]));
    case 2:
      return f(tensor_view<const float, 2>(data.data(), s[0], s[1]));
    case 3:
      return f(tensor_view<const float, 3>(data.data(), s[0], s[1], s[2]));
    case 4:
      return f(tensor_view<const float, 4>(data.data(), s[0], s[1], s[2], s[3]));
    default:
      throw std::runtime_error("unsupported rank in test vectors");
  }
}

TEST(PyTorchPrune, EverySingleCallCaseMatchesTorch) {
  const auto& cases = torch_vectors().at("cases");
  ASSERT_EQ(cases.size(), 211u);
  int l1 = 0, ln = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto shape = shape_of(c.at("shape"));
    const auto w = floats(c.at("weight_bits"));
    const auto a = amount_of(c);
    const std::string method = c.at("method").get<std::string>();
    const bytes got = with_view(shape, w, [&](auto v) -> bytes {
      if (method == "l1_unstructured") {
        EXPECT_EQ(a.to_prune(v.size()), c.at("nparams_toprune").get<index_t>());
        return flat(pytorch::l1_unstructured(v, a));
      }
      if constexpr (decltype(v)::rank() >= 2) {
        const auto dim = c.at("dim").get<index_t>();
        const auto d =
            static_cast<std::size_t>(dim < 0 ? dim + static_cast<index_t>(v.rank()) : dim);
        EXPECT_EQ(a.to_prune(v.extent(d)), c.at("nparams_toprune").get<index_t>());
        EXPECT_EQ(std::isinf(norm_of(c)), c.at("n_is_inf").get<bool>());
        return flat(pytorch::ln_structured(v, a, norm_of(c), dim));
      }
      ADD_FAILURE() << "ln_structured case on a rank-1 tensor";
      return {};
    });
    (method == "l1_unstructured" ? l1 : ln) += 1;
    EXPECT_EQ(got, mask_bytes(c.at("mask")));
  }
  EXPECT_GT(l1, 0);
  EXPECT_GT(ln, 0);
}

TEST(PyTorchPrune, GlobalUnstructuredMatchesTorch) {
  const auto& cases = torch_vectors().at("global_unstructured");
  ASSERT_EQ(cases.size(), 8u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    // Tensors of ranks 2, 4 and 1: unstructured ranking depends only on the row-major
    // order, so each is passed as a 1-D view of its elements.
    std::vector<std::vector<float>> data;
    for (const auto& p : c.at("params")) data.push_back(floats(p.at("weight_bits")));
    std::vector<tensor_view<const float, 1>> views;
    for (const auto& d : data) views.emplace_back(d.data(), static_cast<index_t>(d.size()));
    const auto a = amount_of(c);
    EXPECT_EQ(a.to_prune(c.at("total_params").get<index_t>()),
              c.at("nparams_toprune").get<index_t>());
    const auto masks = pytorch::global_unstructured(views, a);
    ASSERT_EQ(masks.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(flat(masks[i]), mask_bytes(c.at("masks")[i]));
  }
}

// Runs the steps of an iterative case through a pruning_container; returns the mask
// after each step and checks the pruned weights against `final_bits` when given.
std::vector<bytes> run_iterative(const json& c, const json* final_bits) {
  const auto shape = shape_of(c.at("shape"));
  const auto w = floats(c.at("weight_bits"));
  return with_view(shape, w, [&](auto v) {
    constexpr std::size_t rank = decltype(v)::rank();
    pytorch::pruning_container<rank> pc(v.extents());
    std::vector<bytes> out;
    for (const auto& st : c.at("steps")) {
      if (st.at("method").get<std::string>() == "l1_unstructured") {
        pc.l1_unstructured(v, amount_of(st));
      } else if constexpr (rank >= 2) {
        pc.ln_structured(v, amount_of(st), norm_of(st), st.at("dim").get<index_t>());
      } else {
        ADD_FAILURE() << "ln_structured step on a rank-1 tensor";
      }
      out.push_back(flat(pc.mask()));
    }
    EXPECT_EQ(pc.steps(), static_cast<index_t>(out.size()));
    if (final_bits != nullptr) {
      // torch's pruned weight is mask * orig, so a pruned negative weight is -0.0;
      // qprune writes +0.0 (doc/pruning.md §1). Kept weights are bit-identical.
      std::vector<float> pruned = w;
      pc.mask().apply(tensor_view<float, rank>(pruned.data(), v.extents()));
      const auto expect = final_bits->get<std::vector<std::uint32_t>>();
      for (std::size_t i = 0; i < pruned.size(); ++i) {
        const auto got = std::bit_cast<std::uint32_t>(pruned[i]);
        if (expect[i] == 0x80000000u || expect[i] == 0u) {
          EXPECT_EQ(got, 0u) << i;
          EXPECT_EQ(pc.mask().data()[i], 0) << i;
        } else {
          EXPECT_EQ(got, expect[i]) << i;
        }
      }
    }
    return out;
  });
}

TEST(PyTorchPrune, IterativePruningContainerMatchesTorch) {
  const auto& cases = torch_vectors().at("iterative");
  ASSERT_EQ(cases.size(), 6u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto got = run_iterative(c, &c.at("final_pruned_weight_bits"));
    const auto& expect = c.at("masks_after_each_step");
    ASSERT_EQ(got.size(), expect.size());
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], mask_bytes(expect[i])) << "step " << i;
    EXPECT_EQ(got.back(), mask_bytes(c.at("final_mask")));
  }
}

TEST(PyTorchPrune, ContainerEdgeSemanticsMatchTorch) {
  // Structured steps score orig * mask and count only surviving channels; unstructured
  // steps after structured ones count surviving entries (masks_torch_container.py).
  const auto& cases = container_vectors().at("iterative");
  ASSERT_EQ(cases.size(), 6u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto got = run_iterative(c, nullptr);
    const auto& expect = c.at("masks_after_each_step");
    ASSERT_EQ(got.size(), expect.size());
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], mask_bytes(expect[i])) << "step " << i;
  }
}

TEST(PyTorchPrune, GlobalUnstructuredTwiceMatchesTorch) {
  const auto& cases = container_vectors().at("global_iterative");
  ASSERT_EQ(cases.size(), 3u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    std::vector<std::vector<float>> data;
    for (const auto& p : c.at("params")) data.push_back(floats(p.at("weight_bits")));
    std::vector<tensor_view<const float, 1>> views;
    std::vector<prune::basic_mask<1>> masks;
    for (const auto& d : data) {
      views.emplace_back(d.data(), static_cast<index_t>(d.size()));
      masks.emplace_back(static_cast<index_t>(d.size()));
    }
    for (std::size_t step = 0; step < c.at("amounts").size(); ++step) {
      masks = pytorch::global_unstructured(views, amount_of(c.at("amounts")[step]),
                                           std::span<const prune::basic_mask<1>>(masks));
      for (std::size_t i = 0; i < masks.size(); ++i) {
        EXPECT_EQ(flat(masks[i]), mask_bytes(c.at("masks_after_each_step")[step][i]))
            << "step " << step << " tensor " << i;
      }
    }
  }
}

TEST(PyTorchPrune, IterativeHelperMatchesTorchCounts) {
  // prune::iterative reproduces the all-L1 iterative cases: masks and remaining counts.
  for (const auto& c : torch_vectors().at("iterative")) {
    bool all_l1 = true;
    std::vector<pytorch::amount> amounts;
    for (const auto& st : c.at("steps")) {
      all_l1 = all_l1 && st.at("method").get<std::string>() == "l1_unstructured";
      amounts.push_back(amount_of(st));
    }
    if (!all_l1) continue;
    SCOPED_TRACE(c.at("name").get<std::string>());
    const prune::iterative it(amounts);
    const auto w = floats(c.at("weight_bits"));
    const tensor_view<const float, 1> v(w.data(), static_cast<index_t>(w.size()));
    for (index_t s = 1; s <= it.size(); ++s) {
      const bytes expect =
          mask_bytes(c.at("masks_after_each_step")[static_cast<std::size_t>(s - 1)]);
      EXPECT_EQ(flat(it.l1_unstructured(v, s)), expect);
      EXPECT_EQ(it.remaining_after(v.size(), s), std::count(expect.begin(), expect.end(), 1));
    }
  }
}

TEST(PyTorchPrune, AmountRules) {
  EXPECT_EQ(pytorch::amount(0.5).to_prune(13), 6);   // 6.5 -> 6 (Python round)
  EXPECT_EQ(pytorch::amount(0.5).to_prune(7), 4);    // 3.5 -> 4
  EXPECT_EQ(pytorch::amount(0.3).to_prune(91), 27);  // 27.3
  EXPECT_EQ(pytorch::amount(3).to_prune(3), 3);
  EXPECT_TRUE(pytorch::amount(3).is_count());
  EXPECT_FALSE(pytorch::amount(1.0).is_count());
  expect_error<qprune::config_error>(
      [] { (void)pytorch::amount(4).to_prune(3); },
      "amount=4 should be smaller than the number of parameters to prune=3");
  expect_error<qprune::config_error>(
      [] { (void)pytorch::amount(-1); },
      "amount=-1 is invalid (expected a float in [0, 1] or a non-negative integer)");
  for (const double bad : {1.5, -0.25, std::nan("")}) {
    EXPECT_THROW((void)pytorch::amount{bad}, qprune::config_error) << bad;
  }
  const auto w = row({1, 2, 3});
  EXPECT_THROW((void)pytorch::l1_unstructured(w.cview(), 4), qprune::config_error);
  // An int count is relative to the surviving entries in a container.
  pytorch::pruning_container<2> pc(w.extents());
  pc.l1_unstructured(w.cview(), 2);
  EXPECT_EQ(flat(pc.mask()), (bytes{0, 0, 1}));
  expect_error<qprune::config_error>([&] { pc.l1_unstructured(w.cview(), 2); },
                                     "parameters to prune=1");
}

TEST(PyTorchPrune, LnStructuredArgumentErrors) {
  const auto w = random_weights(4, 5, 61);
  expect_error<qprune::config_error>(
      [&] { (void)pytorch::ln_structured(w.cview(), 1, 2.0, 2); },
      "dim 2 is out of range for a tensor of rank 2 (expected -2 <= dim < 2)");
  EXPECT_THROW((void)pytorch::ln_structured(w.cview(), 1, 2.0, -3), qprune::config_error);
  for (const double n : {0.0, -1.0, std::nan("")}) {
    EXPECT_THROW((void)pytorch::ln_structured(w.cview(), 1, n, 0), qprune::config_error) << n;
  }
  EXPECT_THROW((void)pytorch::ln_structured(w.cview(), 5, 2.0, 0), qprune::config_error);
  EXPECT_THROW((void)pytorch::ln_structured(w.cview(), 1, 2.0, 0, prune::mask(5, 4)),
               qprune::shape_error);
  // Fractional norm order: the ranking follows sum |x|^n.
  const tensor<float, 2> t(extents<2>(2, 2), {4, 0, 2, 2});
  EXPECT_EQ(flat(pytorch::ln_structured(t.cview(), 1, 0.5, 0)), (bytes{0, 0, 1, 1}));  // 2 < 2·√2
  EXPECT_EQ(flat(pytorch::ln_structured(t.cview(), 1, 4.0, 0)), (bytes{1, 1, 0, 0}));  // 256 > 32
  // Ties between channel norms: the lower channel index is kept.
  const tensor<float, 2> tie(extents<2>(3, 2), {1, 1, 1, 1, 1, 1});
  EXPECT_EQ(flat(pytorch::ln_structured(tie.cview(), 1, 1.0, 0)), (bytes{1, 1, 1, 1, 0, 0}));
}

TEST(PyTorchPrune, RandomUnstructuredPrunesExactCountsOfSurvivors) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(71);
  pytorch::pruning_container<2> pc(extents<2>(6, 10));
  pc.random_unstructured(0.3, rng);
  EXPECT_EQ(pc.mask().count_pruned(), 18);
  const auto after_first = pc.mask();
  pc.random_unstructured(10, rng);
  EXPECT_EQ(pc.mask().count_pruned(), 28);
  // Only survivors were pruned by the second call.
  EXPECT_EQ(pc.mask() & after_first, pc.mask());
  auto rng2 = qprune::test::make_rng(71);
  EXPECT_EQ(pytorch::random_unstructured(prune::mask(6, 10), 0.3, rng2), after_first);
}

// ---------------------------------------------------------------- tfmot

TEST(TfmotMagnitude, KeptCountInFloat32) {
  // k = max(round_half_even(f32(n) * (1 - s)), 1), every step in float32.
  EXPECT_EQ(tfmot::kept_count(10, 0.200000018f), 8);  // 7.99999982 -> 8
  EXPECT_EQ(tfmot::kept_count(4, 0.375f), 2);         // 2.5 -> 2
  EXPECT_EQ(tfmot::kept_count(12, 0.125f), 10);       // 10.5 -> 10
  EXPECT_EQ(tfmot::kept_count(10, 0.25f), 8);         // 7.5 -> 8
  EXPECT_EQ(tfmot::kept_count(5, 0.6f), 2);           // 1.99999988 -> 2
  EXPECT_EQ(tfmot::kept_count(100, 0.99f), 1);
  EXPECT_EQ(tfmot::kept_count(7, 1.0f), 1);  // at least one weight survives
  EXPECT_EQ(tfmot::kept_count(7, 0.0f), 7);
  EXPECT_EQ(tfmot::kept_count(0, 0.5f), 0);
}

TEST(TfmotMagnitude, TfmotTestConstructsMaskAndThreshold) {
  // pruning_impl_test.testConstructsMaskAndThresholdCorrectly: [1..10], s = 0.200000018.
  tensor<float, 2> w(1, 10);
  for (index_t i = 0; i < 10; ++i) w(0, i) = static_cast<float>(i + 1);
  EXPECT_EQ(tfmot::magnitude_threshold(w.cview(), 0.200000018f), 3.0f);
  EXPECT_EQ(flat(tfmot::magnitude_mask(w.cview(), 0.200000018f)),
            (bytes{0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
  // testUpdateSingleMask: linspace(1, 100, 100) at 0.5 keeps 50.
  tensor<float, 2> l(1, 100);
  for (index_t i = 0; i < 100; ++i) l(0, i) = static_cast<float>(i + 1);
  EXPECT_EQ(tfmot::magnitude_mask(l.cview(), 0.5f).count_kept(), 50);
}

TEST(TfmotMagnitude, TiesWithTheThresholdAreKept) {
  const auto w = row({1, -1, 1, 1, 2});
  EXPECT_EQ(tfmot::magnitude_threshold(w.cview(), 0.6f), 1.0f);  // k = 2: second largest is 1
  EXPECT_EQ(flat(tfmot::magnitude_mask(w.cview(), 0.6f)), (bytes{1, 1, 1, 1, 1}));
  // qprune's exact-k prunes 3 of them instead.
  EXPECT_EQ(flat(prune::magnitude_mask(w.cview(), 0.6f)), (bytes{1, 0, 0, 0, 1}));
  // All-equal weights survive at any sparsity; one weight always survives.
  const auto eq = row({3, 3, 3, 3});
  EXPECT_EQ(tfmot::magnitude_mask(eq.cview(), 0.9f).count_kept(), 4);
  const auto one = row({0.5f});
  EXPECT_EQ(tfmot::magnitude_mask(one.cview(), 1.0f).count_kept(), 1);
  // NaN magnitudes rank above numbers and are kept.
  const auto n = row({nan_f, 1, 2, 3});
  EXPECT_EQ(flat(tfmot::magnitude_mask(n.cview(), 0.5f)), (bytes{1, 0, 0, 1}));
  EXPECT_EQ(flat(tfmot::magnitude_mask(n.cview(), 0.75f)), (bytes{1, 0, 0, 0}));
  EXPECT_THROW((void)tfmot::magnitude_threshold(tensor<float, 2>(0, 3).cview(), 0.5f),
               qprune::shape_error);
  EXPECT_THROW((void)tfmot::magnitude_mask(w.cview(), 1.5f), qprune::config_error);
}

TEST(TfmotMagnitude, RankIndependent) {
  SCOPED_TRACE(qprune::test::seed_trace());
  const auto w = random_weights(6, 12, 81);
  const tensor_view<const float, 4> w4(w.data(), 6, 3, 2, 2);
  const auto m4 = tfmot::magnitude_mask(w4, 0.7f);
  EXPECT_EQ(flat(m4), flat(tfmot::magnitude_mask(w.cview(), 0.7f)));
  EXPECT_EQ(m4.count_kept(), 22);  // round(72 * 0.3) = 21.6 -> 22, tie-free weights
}

}  // namespace

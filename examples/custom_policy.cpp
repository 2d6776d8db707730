// User-written policies: a weight quantizer and a pruner that plug into the
// library's layers exactly like quant::int8 and prune::magnitude do.
//   - `ternary` (Ternary Weight Networks, Li & Liu 2016) satisfies
//     quant::fake_quant_weight_quantizer: weights become {-a_r, 0, +a_r} per row,
//     trained with a straight-through gradient;
//   - `top_k_per_row` satisfies prune::sparsity_pruner: every output row (neuron or
//     filter) keeps the same number of largest-|w| weights (balanced sparsity), and
//     a prune::polynomial_decay schedule raises its sparsity during training.
// Both go into nn::conv2d<ternary, top_k_per_row> and nn::dense<ternary, top_k_per_row>
// (the hidden layers of a small CNN; the first and last layers stay float, as is usual
// for ternary networks), trained briefly on Fashion-MNIST. It prints per layer the
// sparsity and the number of distinct weight values the forward uses, and the accuracy
// next to the same CNN with the default (float, unpruned) policies.
//
//   custom_policy [--epochs 1] [--sparsity 0.5] [--train-limit 0 (= all)] [--test-limit 0]
//
// Needs Debian's dataset-fashion-mnist (or QPRUNE_FASHION_MNIST_DIR).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "qprune/nn/activations.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/pooling.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/schedule.hpp"
#include "qprune/quant/concepts.hpp"
#include "fmnist_common.hpp"

using namespace qprune;

/// Ternary weights, per output row r over its n weights:
///   t_r = 0.7 · mean|w|,  a_r = mean of |w| over {|w| > t_r},  q = sign(w) if |w| > t_r else 0,
///   w' = a_r · q.   Stored as int8 codes in {-1, 0, 1} and one float a_r per row.
/// Pruned weights (0) stay 0. QAT: the gradient passes straight through (identity).
struct ternary {
  struct storage_type {
    tensor<std::int8_t, 2> codes;
    std::vector<float> alpha;
  };
  static constexpr bool quantizes_activations = false;

  [[nodiscard]] storage_type quantize(tensor_view<const float, 2> w) const {
    storage_type s{tensor<std::int8_t, 2>(w.extent(0), w.extent(1)), std::vector<float>(static_cast<std::size_t>(w.extent(0)))};
    for (index_t r = 0; r < w.extent(0); ++r) {
      double sum = 0.0, kept = 0.0;
      for (index_t c = 0; c < w.extent(1); ++c) sum += std::fabs(w(r, c));
      const double t = 0.7 * sum / static_cast<double>(w.extent(1));
      index_t n = 0;
      for (index_t c = 0; c < w.extent(1); ++c) {
        const bool keep = std::fabs(w(r, c)) > t;
        s.codes(r, c) = static_cast<std::int8_t>(keep ? (w(r, c) > 0.0f ? 1 : -1) : 0);
        kept += keep ? std::fabs(w(r, c)) : 0.0;
        n += keep ? 1 : 0;
      }
      s.alpha[static_cast<std::size_t>(r)] = n == 0 ? 0.0f : static_cast<float>(kept / static_cast<double>(n));
    }
    return s;
  }
  void dequantize(const storage_type& s, tensor_view<float, 2> out) const {
    for (index_t r = 0; r < out.extent(0); ++r)
      for (index_t c = 0; c < out.extent(1); ++c) out(r, c) = s.alpha[static_cast<std::size_t>(r)] * s.codes(r, c);
  }
  void fake_quantize(tensor_view<const float, 2> w, tensor_view<float, 2> out) const { dequantize(quantize(w), out); }
  void fake_quantize_backward(tensor_view<const float, 2>, tensor_view<float, 2>) const {}  // straight through
};

/// Prunes k = round(sparsity · cols) smallest-|w| weights in every row, with the
/// library's ranking kernel (prune::prune_lowest: exact k, deterministic ties).
/// sparsity() / set_sparsity() come from prune::sparsity_target, so schedules drive it.
class top_k_per_row : public prune::sparsity_target {
 public:
  using mask_type = prune::mask;
  using prune::sparsity_target::sparsity_target;

  [[nodiscard]] prune::mask compute_mask(tensor_view<const float, 2, layout_stride> w) const {
    const index_t rows = w.extent(0), cols = w.extent(1);
    const auto k = static_cast<index_t>(std::nearbyint(static_cast<double>(sparsity()) * static_cast<double>(cols)));
    prune::mask m(rows, cols);
    std::vector<float> a(static_cast<std::size_t>(cols));
    for (index_t r = 0; r < rows; ++r) {
      for (index_t c = 0; c < cols; ++c) a[static_cast<std::size_t>(c)] = std::fabs(w(r, c));
      prune::prune_lowest(a, k, m.span().subspan(static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols)));
    }
    return m;
  }
};

static_assert(quant::fake_quant_weight_quantizer<ternary>, "ternary must be a QAT weight quantizer");
static_assert(prune::sparsity_pruner<top_k_per_row>, "top_k_per_row must be a schedulable pruner");

/// conv 1->16, relu, pool, Conv 16->32, relu, pool, flatten, Dense 1568->128, relu, dense 128->10
/// (3x3 kernels, padding 1); the capitalised layers take the policies Q and P.
template <class Q, class P>
auto make_cnn(nn::init_rng& rng) {
  const auto conv3x3 = [](index_t in, index_t out) {
    return nn::conv2d_options{.in_channels = in, .out_channels = out, .kernel_h = 3, .kernel_w = 3, .padding = nn::pad(1)};
  };
  auto c1 = nn::conv2d<>(conv3x3(1, 16), rng);  // initialised in this order from rng
  auto c2 = nn::conv2d<Q, P>(conv3x3(16, 32), rng);
  auto d1 = nn::dense<Q, P>({.in_features = 7 * 7 * 32, .out_features = 128}, rng);
  auto d2 = nn::dense<>({.in_features = 128, .out_features = 10}, rng);
  return nn::sequential(std::move(c1), nn::relu(), nn::max_pool2d(), std::move(c2), nn::relu(), nn::max_pool2d(),
                        nn::flatten(), std::move(d1), nn::relu(), std::move(d2));
}

int main(int argc, char** argv) {
  try {
    const fmnist::flags f(argc, argv, {{"epochs", "1"}, {"sparsity", "0.5"}, {"train-limit", "0"}, {"test-limit", "0"}});
    const fmnist::data d = fmnist::load(f.count("train-limit"), f.count("test-limit"));
    const int epochs = static_cast<int>(f.count("epochs"));
    const std::int64_t steps = epochs * ((d.train_x.extent(0) + fmnist::kBatch - 1) / fmnist::kBatch);
    const prune::polynomial_decay schedule(0.0, f.number("sparsity"), 0, std::max<std::int64_t>(1, steps / 2), 3,
                                           std::max<std::int64_t>(1, steps / 20));

    std::printf("CNN with nn::conv2d<ternary, top_k_per_row> and nn::dense<ternary, top_k_per_row>\n");
    nn::init_rng rng(1);
    auto net = make_cnn<ternary, top_k_per_row>(rng);
    const double acc = fmnist::train<4>(net, d, epochs, [&](std::int64_t step) { net.update_masks(schedule, step); });

    std::printf("\nthe same CNN with the default policies (quant::none, prune::none)\n");
    nn::init_rng rng2(1);
    auto ref = make_cnn<quant::none, prune::none>(rng2);
    const double ref_acc = fmnist::train<4>(ref, d, epochs, [](std::int64_t) {});

    std::printf("\n| layer [weight rows, cols] | policies | weights | pruned by the mask | kept per row | zeros in w_eff | distinct values in w_eff |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|\n");
    net.for_each_layer([&](auto& l) {
      using L = std::remove_cvref_t<decltype(l)>;
      if constexpr (nn::maskable<L>) {
        const tensor_view<const float, 2> w = l.weights().effective();  // what the forward multiplies by
        const std::set<float> distinct(w.data_handle(), w.data_handle() + w.size());
        const auto zeros = static_cast<double>(std::count(w.data_handle(), w.data_handle() + w.size(), 0.0f));
        std::string kept = "all";
        if constexpr (std::same_as<typename L::pruner_type, top_k_per_row>) {
          std::set<long> per_row;  // the pruner keeps the same count in every row
          for (index_t r = 0; r < w.extent(0); ++r)
            per_row.insert(static_cast<long>(std::count(l.mask().data() + r * w.extent(1), l.mask().data() + (r + 1) * w.extent(1), 1)));
          kept = std::to_string(*per_row.begin()) + (per_row.size() == 1 ? "" : "-" + std::to_string(*per_row.rbegin()));
        }
        std::printf("| %s [%ld, %ld] | %s | %ld | %.1f%% | %s | %.1f%% | %zu |\n",
                    std::same_as<typename L::input_type, tensor<float, 4>> ? "conv2d" : "dense",
                    static_cast<long>(w.extent(0)), static_cast<long>(w.extent(1)),
                    std::same_as<typename L::weight_quantizer_type, ternary> ? "ternary, top_k_per_row" : "none, none",
                    static_cast<long>(w.size()), 100.0 * l.mask().sparsity(), kept.c_str(),
                    100.0 * zeros / static_cast<double>(w.size()), distinct.size());
      }
    });
    std::printf("(w_eff = ternary(mask ⊙ w): at most 2 values per row and 0; ternary also zeroes |w| <= 0.7 mean|w|)\n");
    std::printf("\n| model | test accuracy |\n|---|---:|\n| ternary + top_k_per_row hidden layers | %.2f%% |\n", acc);
    std::printf("| float, unpruned (default policies) | %.2f%% |\n", ref_acc);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_policy: %s\n", e.what());
    return 1;
  }
}

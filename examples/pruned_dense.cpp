// Magnitude pruning with a user-written layer (Keras: a custom `PrunedDense` that
// multiplies its kernel by a mask, as tfmot's prune_low_magnitude does). The layer
// below owns a prune::mask and a prune::magnitude pruner; the mask is applied in
// forward, to the weight gradient in backward, and to the weights after every
// optimizer step (apply_mask, which nn::adam calls), so pruned weights stay exactly
// zero. tfmot's gradual schedule, prune::polynomial_decay (0 -> --sparsity over the
// first 2/3 of training, cubic), drives it through nn::sequential::update_masks.
// Then per layer: sparsity and storage bytes as dense fp32 and as CSR
// (prune::csr_matrix with fp32 or int8 values), and the same network built from the
// library's nn::dense<quant::none, prune::magnitude> for comparison.
//
//   pruned_dense [--epochs 4] [--sparsity 0.8] [--train-limit 0 (= all)] [--test-limit 0]
//
// Needs Debian's dataset-fashion-mnist (or QPRUNE_FASHION_MNIST_DIR).
#include <cstdint>
#include <cstdio>
#include <exception>

#include "qprune/core/eigen.hpp"
#include "qprune/nn/activations.hpp"
#include "qprune/nn/convert.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/mask.hpp"
#include "qprune/prune/schedule.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "fmnist_common.hpp"

using namespace qprune;

/// y = x (mask ⊙ W)ᵀ + b over [batch, in] -> [batch, out].
class pruned_dense {
 public:
  pruned_dense(index_t in, index_t out, nn::init_rng& rng) : w_(out, in), dw_(out, in), b_(out), db_(out), mask_(out, in) {
    nn::uniform_fill(w_.span(), nn::default_init_bound(in), rng);  // PyTorch's Linear init
    nn::uniform_fill(b_.span(), nn::default_init_bound(in), rng);
  }

  void set_mode(nn::mode m) { train_ = m == nn::mode::train; }

  tensor<float, 2> forward(tensor_view<const float, 2> x) {
    w_eff_ = w_;
    mask_.apply(w_eff_.view());  // mask ⊙ W
    if (train_) x_ = tensor<float, 2>(x.extents(), std::span<const float>(x.data_handle(), static_cast<std::size_t>(x.size())));
    tensor<float, 2> y(x.extent(0), w_.extent(0));
    as_eigen(y.view()).noalias() = as_eigen(x) * as_eigen(w_eff_.cview()).transpose();
    as_eigen(y.view()).rowwise() += as_eigen(b_.cview()).transpose();
    return y;
  }

  tensor<float, 2> backward(tensor_view<const float, 2> g) {
    as_eigen(dw_.view()).noalias() += as_eigen(g).transpose() * as_eigen(x_.cview());
    mask_.apply_to_gradient(dw_.view());  // pruned weights get no gradient
    as_eigen(db_.view()).noalias() += as_eigen(g).colwise().sum().transpose();
    tensor<float, 2> dx(g.extent(0), w_.extent(1));
    as_eigen(dx.view()).noalias() = as_eigen(g) * as_eigen(w_eff_.cview());
    return dx;
  }

  template <class F>
  void for_each_parameter(F&& f) {
    f(nn::parameter{w_.span(), dw_.span(), nn::parameter_kind::weight});
    f(nn::parameter{b_.span(), db_.span(), nn::parameter_kind::bias});
  }
  void zero_grad() {
    dw_.fill(0.0f);
    db_.fill(0.0f);
  }
  /// W ← mask ⊙ W: Adam's momentum would otherwise move pruned weights again.
  void apply_mask() { mask_.apply(w_.view()); }
  /// tfmot's conditional update: at the schedule's steps the mask becomes "keep the
  /// largest |W|" at the scheduled sparsity (prune::magnitude: exact count, fixed ties).
  template <prune::pruning_schedule S>
  bool update_mask(const S& schedule, std::int64_t step) {
    if (!prune::update_mask(schedule, step, pruner_, w_.cview(), mask_)) return false;
    apply_mask();
    return true;
  }

  const tensor<float, 2>& weight() const { return w_; }
  const prune::mask& mask() const { return mask_; }

 private:
  tensor<float, 2> w_, dw_, w_eff_, x_;
  tensor<float, 1> b_, db_;
  prune::magnitude pruner_;
  prune::mask mask_;  // all kept until the schedule's first step
  bool train_ = true;
};

/// Weight storage of a network's pruned layers (anything with weight() and mask()).
struct storage {
  std::int64_t dense = 0, csr32 = 0, csr8 = 0, pruned = 0, weights = 0;
  double sparsity() const { return 100.0 * static_cast<double>(pruned) / static_cast<double>(weights); }
};
template <class Net>
storage storage_of(Net& net, bool print_rows) {
  storage t;
  int i = 0;
  net.for_each_layer([&](auto& l) {
    if constexpr (nn::maskable<std::remove_cvref_t<decltype(l)>>) {
      const tensor<float, 2>& w = l.weight();
      const std::int64_t b[3] = {4 * w.size(), prune::csr_matrix<float>::from_dense(w.cview()).bytes(),
                                 prune::csr_matrix<std::int8_t>::from_dense(w.cview()).bytes()};
      if (print_rows) {
        std::printf("| dense %d | %ld x %ld | %.2f%% | %ld | %ld | %ld |\n", i++, static_cast<long>(w.extent(0)),
                    static_cast<long>(w.extent(1)), 100.0 * l.mask().sparsity(), static_cast<long>(b[0]),
                    static_cast<long>(b[1]), static_cast<long>(b[2]));
      }
      t.dense += b[0];
      t.csr32 += b[1];
      t.csr8 += b[2];
      t.pruned += l.mask().count_pruned();
      t.weights += w.size();
    }
  });
  return t;
}

int main(int argc, char** argv) {
  try {
    const fmnist::flags f(argc, argv, {{"epochs", "4"}, {"sparsity", "0.8"}, {"train-limit", "0"}, {"test-limit", "0"}});
    const fmnist::data d = fmnist::load(f.count("train-limit"), f.count("test-limit"));
    const int epochs = static_cast<int>(f.count("epochs"));
    const std::int64_t steps = epochs * ((d.train_x.extent(0) + fmnist::kBatch - 1) / fmnist::kBatch);
    // tfmot's PolynomialDecay(0, sparsity, begin 0, end 2/3 of training, power 3, frequency).
    const prune::polynomial_decay schedule(0.0, f.number("sparsity"), 0, std::max<std::int64_t>(1, steps * 2 / 3), 3,
                                           std::max<std::int64_t>(1, steps / 40));

    nn::init_rng rng(1);
    nn::sequential net(pruned_dense(784, 256, rng), nn::relu(), pruned_dense(256, 128, rng), nn::relu(),
                       pruned_dense(128, 10, rng));
    std::printf("gradual magnitude pruning of pruned_dense layers to %.0f%% sparsity\n", 100.0 * f.number("sparsity"));
    const double acc = fmnist::train<2>(net, d, epochs, [&](std::int64_t step) { net.update_masks(schedule, step); });

    std::printf("\n| layer | shape | sparsity | dense fp32 bytes | CSR fp32 bytes | CSR int8 bytes |\n");
    std::printf("|---|---|---:|---:|---:|---:|\n");
    const storage t = storage_of(net, true);
    std::printf("| total | | %.2f%% | %ld | %ld (%.3fx) | %ld (%.3fx) |\n", t.sparsity(), static_cast<long>(t.dense),
                static_cast<long>(t.csr32), static_cast<double>(t.csr32) / static_cast<double>(t.dense),
                static_cast<long>(t.csr8), static_cast<double>(t.csr8) / static_cast<double>(t.dense));

    // The same network from the library's layers: nn::dense<quant::none, prune::magnitude>
    // owns the mask, gradient masking and schedule update that pruned_dense spells out.
    std::printf("\nthe same with nn::dense<quant::none, prune::magnitude>\n");
    using lib_dense = nn::dense<quant::none, prune::magnitude>;
    nn::init_rng rng2(1);
    nn::sequential lib(lib_dense({784, 256}, rng2), nn::relu(), lib_dense({256, 128}, rng2), nn::relu(), lib_dense({128, 10}, rng2));
    const double lib_acc = fmnist::train<2>(lib, d, epochs, [&](std::int64_t step) { lib.update_masks(schedule, step); });
    nn::deployed_model csr = nn::convert(lib, {.format = nn::weight_format::fp32, .input_channels = 784,
                                               .sparse = nn::sparse_layout::csr});
    const double csr_acc = fmnist::percent_equal(
        fmnist::predict([&](tensor_view<const float, 2> x) { return csr.forward(x); }, d.test_x), d.test_labels());

    const storage lt = storage_of(lib, false);
    std::printf("\n| model | test accuracy | sparsity | CSR fp32 bytes |\n|---|---:|---:|---:|\n");
    std::printf("| custom pruned_dense | %.2f%% | %.2f%% | %ld |\n", acc, t.sparsity(), static_cast<long>(t.csr32));
    std::printf("| nn::dense<quant::none, prune::magnitude> | %.2f%% | %.2f%% | %ld |\n", lib_acc, lt.sparsity(),
                static_cast<long>(lt.csr32));
    std::printf("| the latter after nn::convert(sparse_layout::csr) | %.2f%% | | %ld (with the fp32 biases) |\n",
                csr_acc, static_cast<long>(csr.weight_bytes()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pruned_dense: %s\n", e.what());
    return 1;
  }
}

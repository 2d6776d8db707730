// Trains an MLP or a small CNN on Fashion-MNIST with qprune's nn layers, the
// recipe of issue #6: inputs (pixel/255 - 0.286)/0.353; MLP 784-256-128-10 ReLU
// (8 epochs) or CNN conv3x3(32, pad 1)-relu-maxpool2-conv3x3(64, pad 1)-relu-
// maxpool2-flatten-fc128-relu-fc10 (4 epochs); Adam lr 1e-3, batch 128, shuffled
// with a fixed seed, PyTorch-default initialisation from fixed seeds.
//
//   train_fashion_mnist --model mlp|cnn [--epochs N] [--train-limit N] [--test-limit N]
//                       [--prune S]   (optional: gradual magnitude pruning to sparsity S)
//                       [--seed N]    (initialisation seed, default 1; shuffle seed 20261128 + N)
//
// Needs Debian's dataset-fashion-mnist (or QPRUNE_FASHION_MNIST_DIR).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qprune/io/idx.hpp"
#include "qprune/nn/activations.hpp"
#include "qprune/nn/conv2d.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/loss.hpp"
#include "qprune/nn/optim.hpp"
#include "qprune/nn/pooling.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/prune/magnitude.hpp"
#include "qprune/prune/schedule.hpp"
#include "fmnist_common.hpp"

namespace {

using namespace qprune;

using fmnist::kBatch;
using fmnist::kMean;
using fmnist::kStd;

struct args {
  std::string model = "mlp";
  int epochs = 0;  // 0: the default, 8 (mlp) or 4 (cnn)
  index_t train_limit = 0, test_limit = 0;  // 0: all images
  float prune = 0.0f;
  unsigned seed = 1;  // initialisation seed; the shuffle seed is 20261128 + seed
};

args parse(int argc, char** argv) {
  const fmnist::flags f(argc, argv,
                        {{"model", "mlp"}, {"epochs", "0"}, {"train-limit", "0"}, {"test-limit", "0"}, {"prune", "0"},
                         {"seed", "1"}},
                        {.text = {"model"}, .switches = {}});
  args a;
  a.model = f.text("model");
  a.epochs = static_cast<int>(f.count("epochs"));
  a.train_limit = f.count("train-limit");
  a.test_limit = f.count("test-limit");
  a.prune = static_cast<float>(f.number("prune"));
  if (f.count("seed") < 0) throw config_error("--seed is negative (expected a seed >= 0)");
  a.seed = static_cast<unsigned>(f.count("seed"));
  if (a.model != "mlp" && a.model != "cnn") {
    throw config_error("--model " + a.model + " (expected mlp or cnn)");
  }
  if (a.epochs <= 0) a.epochs = a.model == "mlp" ? 8 : 4;
  return a;
}

using pruned_dense = nn::dense<quant::none, prune::magnitude>;
using pruned_conv = nn::conv2d<quant::none, prune::magnitude>;

auto make_mlp(nn::init_rng& rng) {
  return nn::sequential(pruned_dense({.in_features = 784, .out_features = 256}, rng), nn::relu(),
                        pruned_dense({.in_features = 256, .out_features = 128}, rng), nn::relu(),
                        pruned_dense({.in_features = 128, .out_features = 10}, rng));
}

auto make_cnn(nn::init_rng& rng) {
  const auto conv = [&](index_t in, index_t out) {
    return pruned_conv({.in_channels = in, .out_channels = out, .kernel_h = 3, .kernel_w = 3,
                        .padding = nn::pad(1)},
                       rng);
  };
  auto c1 = conv(1, 32);
  auto c2 = conv(32, 64);
  return nn::sequential(std::move(c1), nn::relu(), nn::max_pool2d(), std::move(c2), nn::relu(),
                        nn::max_pool2d(), nn::flatten(),
                        pruned_dense({.in_features = 7 * 7 * 64, .out_features = 128}, rng),
                        nn::relu(), pruned_dense({.in_features = 128, .out_features = 10}, rng));
}

using fmnist::gather;

struct epoch_result {
  double loss, train_acc, test_acc, seconds;
};

template <std::size_t R, class Net>
std::vector<epoch_result> train(Net& net, const io::mnist_set& train_set,
                                const tensor<float, 2>& train_x, const io::mnist_set& test_set,
                                const tensor<float, 2>& test_x, const args& a) {
  const index_t n = train_x.extent(0);
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 shuffle_rng(20261128u + a.seed);
  nn::adam adam({.lr = 1e-3});
  nn::softmax_cross_entropy ce;
  const std::int64_t steps_per_epoch = (n + kBatch - 1) / kBatch;
  const std::int64_t total_steps = steps_per_epoch * a.epochs;
  // Optional gradual pruning: tfmot's polynomial decay over the first 2/3 of training.
  const prune::polynomial_decay schedule(0.0, a.prune > 0.0f ? a.prune : 0.0,
                                         0, std::max<std::int64_t>(1, total_steps * 2 / 3), 3,
                                         std::max<std::int64_t>(1, steps_per_epoch / 4));
  std::vector<epoch_result> results;
  std::int64_t step = 0;
  std::vector<std::uint8_t> labels;
  for (int epoch = 1; epoch <= a.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    std::shuffle(order.begin(), order.end(), shuffle_rng);
    net.set_mode(nn::mode::train);
    double loss_sum = 0.0;
    index_t correct = 0, batches = 0;
    for (index_t b0 = 0; b0 < n; b0 += kBatch, ++step) {
      const index_t bn = std::min(kBatch, n - b0);
      const std::span<const index_t> idx(order.data() + b0, static_cast<std::size_t>(bn));
      labels.resize(static_cast<std::size_t>(bn));
      for (index_t i = 0; i < bn; ++i) {
        labels[static_cast<std::size_t>(i)] = train_set.labels[static_cast<std::size_t>(idx[static_cast<std::size_t>(i)])];
      }
      if (a.prune > 0.0f) net.update_masks(schedule, step);
      const auto x = gather<R>(train_x, idx);
      net.zero_grad();
      const auto logits = net.forward(x);
      const std::span<const std::uint8_t> ls(labels);
      loss_sum += ce.forward(logits.cview(), ls);
      correct += nn::count_correct(logits.cview(), ls);
      ++batches;
      net.backward_params(ce.backward());
      adam.step(net);
    }
    // Test accuracy in eval mode, batches of 1000.
    net.set_mode(nn::mode::eval);
    index_t test_correct = 0;
    const index_t tn = test_x.extent(0);
    std::vector<index_t> tidx;
    for (index_t b0 = 0; b0 < tn; b0 += 1000) {
      const index_t bn = std::min<index_t>(1000, tn - b0);
      tidx.resize(static_cast<std::size_t>(bn));
      std::iota(tidx.begin(), tidx.end(), b0);
      const auto logits = net.forward(gather<R>(test_x, tidx));
      test_correct += nn::count_correct(
          logits.cview(), std::span<const std::uint8_t>(test_set.labels.data() + b0,
                                                        static_cast<std::size_t>(bn)));
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    results.push_back({loss_sum / static_cast<double>(batches),
                       100.0 * static_cast<double>(correct) / static_cast<double>(n),
                       100.0 * static_cast<double>(test_correct) / static_cast<double>(tn), secs});
    const auto& r = results.back();
    std::printf("epoch %d/%d  loss %.4f  train acc %.2f%%  test acc %.2f%%  %.1f s\n", epoch,
                a.epochs, r.loss, r.train_acc, r.test_acc, r.seconds);
    std::fflush(stdout);
  }
  return results;
}

template <class Net>
double sparsity_of(Net& net) {
  index_t zeros = 0, total = 0;
  net.for_each_layer([&](auto& l) {
    if constexpr (nn::maskable<std::remove_reference_t<decltype(l)>>) {
      for (float v : l.weight().span()) zeros += v == 0.0f ? 1 : 0;
      total += l.weight().size();
    }
  });
  return total == 0 ? 0.0 : static_cast<double>(zeros) / static_cast<double>(total);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args a = parse(argc, argv);
    const io::mnist_set train_set = io::load_fashion_mnist(io::split::train);
    const io::mnist_set test_set = io::load_fashion_mnist(io::split::test);
    const index_t ntrain = a.train_limit > 0 ? std::min(a.train_limit, train_set.count) : train_set.count;
    const index_t ntest = a.test_limit > 0 ? std::min(a.test_limit, test_set.count) : test_set.count;
    const auto train_x = io::normalized_images(train_set, kMean, kStd, 0, ntrain);
    const auto test_x = io::normalized_images(test_set, kMean, kStd, 0, ntest);
    std::printf("model %s, %d epochs, %ld training / %ld test images, Adam lr 1e-3, batch %ld%s\n",
                a.model.c_str(), a.epochs, static_cast<long>(ntrain), static_cast<long>(ntest),
                static_cast<long>(kBatch), a.prune > 0.0f ? ", gradual magnitude pruning" : "");
    nn::init_rng init(a.seed);
    std::vector<epoch_result> r;
    double sparsity = 0.0;
    if (a.model == "mlp") {
      auto net = make_mlp(init);
      r = train<2>(net, train_set, train_x, test_set, test_x, a);
      sparsity = sparsity_of(net);
    } else {
      auto net = make_cnn(init);
      r = train<4>(net, train_set, train_x, test_set, test_x, a);
      sparsity = sparsity_of(net);
    }
    double total = 0.0;
    std::printf("\n| epoch | loss   | train acc | test acc | seconds |\n");
    std::printf("|------:|-------:|----------:|---------:|--------:|\n");
    for (std::size_t e = 0; e < r.size(); ++e) {
      std::printf("| %5zu | %.4f | %8.2f%% | %7.2f%% | %7.1f |\n", e + 1, r[e].loss,
                  r[e].train_acc, r[e].test_acc, r[e].seconds);
      total += r[e].seconds;
    }
    std::printf("final test accuracy %.2f%%, weight sparsity %.1f%%, total %.1f s\n",
                r.empty() ? 0.0 : r.back().test_acc, 100.0 * sparsity, total);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_fashion_mnist: %s\n", e.what());
    return 1;
  }
}

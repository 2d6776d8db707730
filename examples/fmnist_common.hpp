// Plumbing shared by the Fashion-MNIST examples (ptq_int8, qat_custom_layer,
// pruned_dense, custom_policy, fashion_mnist_report), so each shows only its story: --name value
// flags, Fashion-MNIST with the recipe's normalisation (pixel/255 - 0.286)/0.353,
// a shuffled Adam mini-batch loop with progress lines, batched prediction and
// batch-1 latency. Uses only qprune's public API; not part of the library.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <set>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "qprune/io/idx.hpp"
#include "qprune/nn/loss.hpp"
#include "qprune/nn/optim.hpp"

namespace fmnist {

using namespace qprune;

constexpr float kMean = 0.286f, kStd = 0.353f;
constexpr index_t kBatch = 128;

/// Which flags are not numbers: `text` flags take any value, `switches` take
/// none (`--full`; off unless given).
struct flag_kinds {
  std::set<std::string> text, switches;
};

/// `--name value` flags (and `--name` switches). The example lists the names it
/// takes with their default values; anything else is a config_error that lists
/// them (as does --help). Numeric values are checked before any work starts.
class flags {
 public:
  flags(int argc, char** argv, std::map<std::string, std::string> defaults, flag_kinds kinds = {})
      : v_(std::move(defaults)), kinds_(std::move(kinds)) {
    for (const auto& sw : kinds_.switches) v_.emplace(sw, std::string());
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::printf("flags: %s\n", names().c_str());
        std::exit(0);
      }
      const auto it = k.rfind("--", 0) == 0 ? v_.find(k.substr(2)) : v_.end();
      if (it == v_.end()) throw config_error("unknown argument '" + k + "' (expected " + names() + ")");
      if (kinds_.switches.contains(it->first)) {
        given_.insert(it->first);
        continue;
      }
      if (i + 1 >= argc) throw config_error("missing value after " + k);
      it->second = argv[++i];
    }
    for (const auto& kv : v_) {
      if (!kinds_.text.contains(kv.first) && !kinds_.switches.contains(kv.first)) (void)number(kv.first);
    }
  }
  /// The flag's value as a number; config_error if it is not one.
  [[nodiscard]] double number(const std::string& name) const {
    const std::string& s = v_.at(name);
    std::size_t used = 0;
    double v = 0.0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size()) throw config_error("--" + name + " '" + s + "' (expected a number)");
    return v;
  }
  /// The flag's value as an integer (truncated); config_error beyond +-1e12.
  [[nodiscard]] index_t count(const std::string& name) const {
    const double v = number(name);
    if (!(std::fabs(v) <= 1e12)) throw config_error("--" + name + " " + v_.at(name) + " (expected at most 1e12)");
    return static_cast<index_t>(v);
  }
  /// A text flag's value.
  [[nodiscard]] const std::string& text(const std::string& name) const { return v_.at(name); }
  /// Whether a switch was given.
  [[nodiscard]] bool on(const std::string& name) const { return given_.contains(name); }

 private:
  std::string names() const {
    std::string s;
    for (const auto& [k, v] : v_) {
      s += s.empty() ? "--" : ", --";
      s += k;
      if (kinds_.switches.contains(k)) continue;
      s += kinds_.text.contains(k) ? " TEXT" : " N";
      if (v.empty()) continue;
      s += " (default ";
      s += v;
      s += ')';
    }
    return s;
  }
  std::map<std::string, std::string> v_;
  flag_kinds kinds_;
  std::set<std::string> given_;  // the switches given
};

/// Fashion-MNIST: labels and normalised images [n, 784] of both halves.
struct data {
  io::mnist_set train_set, test_set;
  tensor<float, 2> train_x, test_x;
  [[nodiscard]] std::span<const std::uint8_t> test_labels() const {
    return {test_set.labels.data(), static_cast<std::size_t>(test_x.extent(0))};
  }
};

/// The first `train_limit` / `test_limit` images of each half (<= 0: all of them).
/// Throws io_error when the data set is missing (Debian: apt install dataset-fashion-mnist).
inline data load(index_t train_limit, index_t test_limit) {
  data d{io::load_fashion_mnist(io::split::train), io::load_fashion_mnist(io::split::test), {}, {}};
  const auto limit = [](index_t l, index_t n) { return l > 0 ? std::min(l, n) : n; };
  d.train_x = io::normalized_images(d.train_set, kMean, kStd, 0, limit(train_limit, d.train_set.count));
  d.test_x = io::normalized_images(d.test_set, kMean, kStd, 0, limit(test_limit, d.test_set.count));
  std::printf("Fashion-MNIST: %ld training / %ld test images\n", static_cast<long>(d.train_x.extent(0)),
              static_cast<long>(d.test_x.extent(0)));
  return d;
}

/// Rows `idx` of x [n, 784] as [idx.size(), 784] (R = 2) or NHWC [idx.size(), 28, 28, 1] (R = 4).
template <std::size_t R>
tensor<float, R> gather(const tensor<float, 2>& x, std::span<const index_t> idx) {
  const index_t px = x.extent(1), n = static_cast<index_t>(idx.size());
  tensor<float, 2> out(n, px);
  for (index_t i = 0; i < n; ++i) std::copy_n(x.data() + idx[static_cast<std::size_t>(i)] * px, px, out.data() + i * px);
  if constexpr (R == 2) {
    return out;
  } else {
    return out.reshaped(extents<4>(n, 28, 28, 1));
  }
}

/// The argmax class of every row of x under `forward` ([rows, 784] view -> logits), 500 rows at a time.
template <class F>
std::vector<int> predict(F&& forward, const tensor<float, 2>& x) {
  std::vector<int> pred;
  for (index_t b0 = 0; b0 < x.extent(0); b0 += 500) {
    const index_t bn = std::min<index_t>(500, x.extent(0) - b0);
    const tensor<float, 2> z = forward(tensor_view<const float, 2>(x.data() + b0 * x.extent(1), bn, x.extent(1)));
    for (index_t n = 0; n < bn; ++n) {
      const float* row = z.data() + n * z.extent(1);
      pred.push_back(static_cast<int>(std::max_element(row, row + z.extent(1)) - row));
    }
  }
  return pred;
}

/// predict() for a sequential network in eval mode; its input is rank R (2: MLP, 4: CNN).
template <std::size_t R, class Net>
std::vector<int> predict_net(Net& net, const tensor<float, 2>& x) {
  net.set_mode(nn::mode::eval);
  return predict(
      [&](tensor_view<const float, 2> rows) {
        if constexpr (R == 2) {
          return net.forward(rows);
        } else {
          const std::span<const float> v(rows.data_handle(), static_cast<std::size_t>(rows.size()));
          return net.forward(tensor<float, 4>(extents<4>(rows.extent(0), 28, 28, 1), v));
        }
      },
      x);
}

/// Percentage of predictions equal to the labels (or to another model's predictions).
template <class T>
double percent_equal(const std::vector<int>& pred, std::span<const T> ref) {
  std::size_t same = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) same += pred[i] == static_cast<int>(ref[i]) ? 1 : 0;
  return pred.empty() ? 0.0 : 100.0 * static_cast<double>(same) / static_cast<double>(pred.size());
}
inline double percent_equal(const std::vector<int>& a, const std::vector<int>& b) {
  return percent_equal(a, std::span<const int>(b));
}

/// Trains `net` (an nn::sequential, input rank R) for `epochs` epochs: Adam lr 1e-3,
/// batch 128, shuffled with a fixed seed, softmax cross-entropy. `before_step(step)`
/// runs before every step (a pruning schedule's mask update). Prints a line every
/// 100 batches and the test accuracy after each epoch; returns the last one.
template <std::size_t R, class Net, class Hook>
double train(Net& net, const data& d, int epochs, Hook&& before_step) {
  const index_t n = d.train_x.extent(0);
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 shuffle_rng(20261128u);
  nn::adam adam({.lr = 1e-3});
  nn::softmax_cross_entropy ce;
  std::vector<std::uint8_t> labels;
  const index_t batches = (n + kBatch - 1) / kBatch;
  double test_acc = 0.0;
  std::int64_t step = 0;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    std::shuffle(order.begin(), order.end(), shuffle_rng);
    net.set_mode(nn::mode::train);
    double loss = 0.0;
    for (index_t b = 0; b < batches; ++b, ++step) {
      const std::span<const index_t> idx(order.data() + b * kBatch, static_cast<std::size_t>(std::min(kBatch, n - b * kBatch)));
      labels.clear();
      for (index_t i : idx) labels.push_back(d.train_set.labels[static_cast<std::size_t>(i)]);
      before_step(step);
      net.zero_grad();
      loss += ce.forward(net.forward(gather<R>(d.train_x, idx)).cview(), std::span<const std::uint8_t>(labels));
      net.backward_params(ce.backward());
      adam.step(net);
      if ((b + 1) % 100 == 0) {
        std::printf("  epoch %d/%d  batch %ld/%ld  mean loss %.4f\n", epoch, epochs, static_cast<long>(b + 1),
                    static_cast<long>(batches), loss / static_cast<double>(b + 1));
        std::fflush(stdout);
      }
    }
    test_acc = percent_equal(predict_net<R>(net, d.test_x), d.test_labels());
    std::printf("epoch %d/%d  mean loss %.4f  test acc %.2f%%  %.1f s\n", epoch, epochs,
                loss / static_cast<double>(batches), test_acc,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::fflush(stdout);
  }
  return test_acc;
}

/// Median wall time in microseconds of forward(one image) over the first `runs`
/// rows of x, after 20 warm-up calls.
template <class F>
double median_latency_us(F&& forward, const tensor<float, 2>& x, index_t runs) {
  runs = std::min(runs, x.extent(0));
  std::vector<double> us;
  for (index_t i = -20; i < runs; ++i) {
    const tensor_view<const float, 2> one(x.data() + std::max<index_t>(i, 0) * x.extent(1), 1, x.extent(1));
    const auto t0 = std::chrono::steady_clock::now();
    const auto y = forward(one);
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 0 && y.size() > 0) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(us.size() / 2), us.end());
  return us.empty() ? 0.0 : us[us.size() / 2];
}

}  // namespace fmnist

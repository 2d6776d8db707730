// Post-training int8 quantization, the way TFLite's converter does it with
// Optimize.DEFAULT and a representative dataset:
//   - weights: int8, symmetric, one scale per output channel (zero point 0, [-127, 127]);
//   - activations: one affine (scale, zero point) per tensor, MinMax-calibrated on
//     ~1000 representative training images (uint8 codes [0, 255]; TFLite's int8
//     codes [-128, 127] are the same grid with the zero point shifted by 128);
//   - bias: int32 at scale s_in * s_w[c]; each layer requantizes its int32
//     accumulators straight into the next layer's uint8 input (ReLU fused as a clamp).
// It trains a float MLP 784-256-128-10 on Fashion-MNIST for a few epochs, converts
// it with nn::convert(weight_format::int8_static) and prints fp32 vs int8 test
// accuracy, weight bytes and batch-1 latency (median over single-image calls).
//
//   ptq_int8 [--epochs 5] [--train-limit 0 (= all)] [--test-limit 0] [--calib 1000] [--runs 2000]
//
// Needs Debian's dataset-fashion-mnist (or QPRUNE_FASHION_MNIST_DIR).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <numeric>
#include <random>
#include <vector>

#include "qprune/nn/activations.hpp"
#include "qprune/nn/convert.hpp"
#include "qprune/nn/dense.hpp"
#include "qprune/nn/sequential.hpp"
#include "fmnist_common.hpp"

using namespace qprune;

int main(int argc, char** argv) {
  try {
    const fmnist::flags f(argc, argv,
                        {{"epochs", "5"}, {"train-limit", "0"}, {"test-limit", "0"}, {"calib", "1000"}, {"runs", "2000"}});
    const fmnist::data d = fmnist::load(f.count("train-limit"), f.count("test-limit"));

    // 1. A float model, trained as usual.
    nn::init_rng rng(1);
    nn::sequential net(nn::dense<>({.in_features = 784, .out_features = 256}, rng), nn::relu(),
                       nn::dense<>({.in_features = 256, .out_features = 128}, rng), nn::relu(),
                       nn::dense<>({.in_features = 128, .out_features = 10}, rng));
    fmnist::train<2>(net, d, static_cast<int>(f.count("epochs")), [](std::int64_t) {});

    // 2. The representative dataset: `calib` training images drawn at random (fixed seed).
    std::vector<index_t> pick(static_cast<std::size_t>(d.train_x.extent(0)));
    std::iota(pick.begin(), pick.end(), 0);
    std::shuffle(pick.begin(), pick.end(), std::mt19937(7));
    pick.resize(static_cast<std::size_t>(std::clamp<index_t>(f.count("calib"), 1, d.train_x.extent(0))));
    const tensor<float, 2> representative = fmnist::gather<2>(d.train_x, pick);

    // 3. Convert: the float reference, and static int8 calibrated with MinMax.
    nn::deployed_model fp32 = nn::convert(net, {.format = nn::weight_format::fp32, .input_channels = 784});
    nn::deployed_model int8 = nn::convert(net,
                                          {.format = nn::weight_format::int8_static,
                                           .input_channels = 784,
                                           .calibration = nn::calibration_method::minmax},
                                          representative.cview());

    std::printf("\nint8 model, calibrated on %zu representative images:\n", pick.size());
    for (const auto& op : int8.ops()) {
      const auto* q = dynamic_cast<const nn::int8_dense*>(op.get());
      if (q == nullptr) continue;
      const auto& st = q->stage();
      const auto [lo, hi] = std::minmax_element(st.weight_scales().begin(), st.weight_scales().end());
      std::printf("  %s  in: uint8 scale %.6f zero point %3d | %zu weight scales in [%.2e, %.2e], int32 bias | out: ",
                  q->kind().c_str(), static_cast<double>(st.input().scale), st.input().zero_point,
                  st.weight_scales().size(), static_cast<double>(*lo), static_cast<double>(*hi));
      if (st.emits_codes()) {
        std::printf("requantized to uint8 (scale %.6f, zero point %d)%s\n", static_cast<double>(st.output().scale),
                    st.output().zero_point, st.relu() ? ", ReLU fused" : "");
      } else {
        std::printf("float logits\n");
      }
    }

    // 4. Accuracy, agreement, size and batch-1 latency of both deployed models.
    const auto run = [](nn::deployed_model& m) { return [&m](tensor_view<const float, 2> x) { return m.forward(x); }; };
    const std::vector<int> p32 = fmnist::predict(run(fp32), d.test_x), p8 = fmnist::predict(run(int8), d.test_x);
    const double acc32 = fmnist::percent_equal(p32, d.test_labels()), acc8 = fmnist::percent_equal(p8, d.test_labels());
    const index_t runs = f.count("runs");
    const double t32 = fmnist::median_latency_us(run(fp32), d.test_x, runs);
    const double t8 = fmnist::median_latency_us(run(int8), d.test_x, runs);
    const auto b32 = static_cast<double>(fp32.weight_bytes()), b8 = static_cast<double>(int8.weight_bytes());

    std::printf("\n| model | test accuracy | weight bytes | batch-1 latency (median) |\n");
    std::printf("|---|---:|---:|---:|\n");
    std::printf("| fp32 | %.2f%% | %.0f | %.1f us |\n", acc32, b32, t32);
    std::printf("| int8 (per-channel weights, per-tensor uint8 activations) | %.2f%% | %.0f | %.1f us |\n", acc8, b8, t8);
    std::printf("| int8 / fp32 | %+.2f points | %.3fx | %.2fx (%.1fx faster) |\n", acc8 - acc32, b8 / b32, t8 / t32,
                t32 / t8);
    std::printf("\ntop-1 agreement fp32 vs int8: %.2f%% of %ld test images\n", fmnist::percent_equal(p8, p32),
                static_cast<long>(d.test_x.extent(0)));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ptq_int8: %s\n", e.what());
    return 1;
  }
}

// Quantization-aware training with a user-written layer (Keras: a custom
// `MyQuantizedLayer` whose call() fake-quantizes its kernel and input). The layer
// below owns
//   - an nn::masked_weight<quant::int8>: float master weights whose forward value is
//     fake-quantized to int8, symmetric, one scale per output channel, and
//   - a quant::static_int8 observer that fake-quantizes its input to uint8 with a
//     moving-average min/max (scale, zero point),
// and implements forward / backward / set_mode / for_each_parameter / zero_grad, so
// nn::sequential and nn::adam train it like a library layer. After a short QAT run
// the integer model is assembled by hand (nn::convert() only knows the library's
// layers): each layer's int8 codes, scales and observer parameters become an
// nn::int8_dense in an nn::deployed_model. It prints the fake-quant vs integer
// accuracy and how often the two agree.
//
//   qat_custom_layer [--epochs 5] [--train-limit 0 (= all)] [--test-limit 0]
//
// Needs Debian's dataset-fashion-mnist (or QPRUNE_FASHION_MNIST_DIR).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <vector>

#include "qprune/core/eigen.hpp"
#include "qprune/nn/activations.hpp"
#include "qprune/nn/deployed.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/nn/masked_weight.hpp"
#include "qprune/nn/sequential.hpp"
#include "qprune/quant/int8.hpp"
#include "fmnist_common.hpp"

using namespace qprune;

/// y = fq_in(x) · fq_w(W)ᵀ + b over [batch, in] -> [batch, out]. Backward uses the
/// straight-through estimators: dW passes unchanged (int8's max-abs scales clip
/// nothing), dx is zeroed where x fell outside the observer's range.
class my_quantized_dense {
 public:
  my_quantized_dense(index_t in, index_t out, nn::init_rng& rng) : w_(out, in), b_(out), db_(out) {
    nn::uniform_fill(w_.value().span(), nn::default_init_bound(in), rng);  // PyTorch's Linear init
    nn::uniform_fill(b_.span(), nn::default_init_bound(in), rng);
  }

  void set_mode(nn::mode m) { train_ = m == nn::mode::train; }

  tensor<float, 2> forward(tensor_view<const float, 2> x) {
    xq_ = tensor<float, 2>(x.extents());
    if (train_ || in_.calibrated()) {
      in_.fake_quantize(x, xq_.view(), /*observe_batch=*/train_);  // observe, then dq(q(x))
    } else {
      std::copy_n(x.data_handle(), x.size(), xq_.data());
    }
    if (train_) x_ = tensor<float, 2>(x.extents(), std::span<const float>(x.data_handle(), static_cast<std::size_t>(x.size())));
    w_eff_ = w_.effective();  // fq_w(W), recomputed from the master weights; valid until they change
    tensor<float, 2> y(x.extent(0), w_.rows());
    as_eigen(y.view()).noalias() = as_eigen(xq_.cview()) * as_eigen(w_eff_).transpose();
    as_eigen(y.view()).rowwise() += as_eigen(b_.cview()).transpose();
    return y;
  }

  tensor<float, 2> backward(tensor_view<const float, 2> g) {
    as_eigen(w_.grad().view()).noalias() += as_eigen(g).transpose() * as_eigen(xq_.cview());
    as_eigen(db_.view()).noalias() += as_eigen(g).colwise().sum().transpose();
    w_.finish_backward();  // the weight fake-quant's straight-through gradient
    tensor<float, 2> dx(g.extent(0), w_.cols());
    as_eigen(dx.view()).noalias() = as_eigen(g) * as_eigen(w_eff_);
    in_.fake_quantize_backward(x_.cview(), dx.view());  // 0 where x was clipped
    return dx;
  }

  template <class F>
  void for_each_parameter(F&& f) {
    f(w_.as_parameter());
    f(nn::parameter{b_.span(), db_.span(), nn::parameter_kind::bias});
  }
  void zero_grad() {
    w_.zero_grad();
    db_.fill(0.0f);
  }

  /// The deployed op: the int8 codes and per-channel scales the fake-quant used,
  /// the float bias (int8_dense rounds it to int32 at scale s_in * s_w[c]) and the
  /// observer's input (scale, zero point); `relu` fuses a following ReLU.
  std::unique_ptr<nn::op> to_int8(bool relu) const {
    const quant::int8_weights q = w_.quantizer().quantize(w_.value().cview());
    return std::make_unique<nn::int8_dense>(q.codes.cview(), q.params.scales, b_.span(), in_.params(), relu);
  }

 private:
  nn::masked_weight<quant::int8> w_;  // float master weights, int8 fake-quant forward value
  tensor<float, 1> b_, db_;
  quant::static_int8 in_;  // uint8 per-tensor input observer
  tensor_view<const float, 2> w_eff_;
  tensor<float, 2> x_, xq_;
  bool train_ = true;
};

int main(int argc, char** argv) {
  try {
    const fmnist::flags f(argc, argv, {{"epochs", "5"}, {"train-limit", "0"}, {"test-limit", "0"}});
    const fmnist::data d = fmnist::load(f.count("train-limit"), f.count("test-limit"));

    nn::init_rng rng(1);
    nn::sequential net(my_quantized_dense(784, 256, rng), nn::relu(), my_quantized_dense(256, 128, rng), nn::relu(),
                       my_quantized_dense(128, 10, rng));
    std::printf("QAT of a 784-256-128-10 MLP built from my_quantized_dense\n");
    fmnist::train<2>(net, d, static_cast<int>(f.count("epochs")), [](std::int64_t) {});

    // The integer model, by hand: three int8 Dense ops; chain_int8() makes each one
    // requantize its int32 accumulators into the next one's uint8 input codes.
    nn::deployed_model q(1, 1, 784);
    q.add(net.get<0>().to_int8(/*relu=*/true));
    q.add(net.get<2>().to_int8(true));
    q.add(net.get<4>().to_int8(false));
    q.chain_int8();

    net.set_mode(nn::mode::eval);  // eval: the observers are frozen, inputs still fake-quantized
    const auto run_q = [&](tensor_view<const float, 2> x) { return q.forward(x); };
    const std::vector<int> pf = fmnist::predict_net<2>(net, d.test_x), pq = fmnist::predict(run_q, d.test_x);
    // Logit differences on the first 1000 test images, relative to the fake-quant logits' range.
    const index_t n = std::min<index_t>(1000, d.test_x.extent(0));
    const tensor_view<const float, 2> first(d.test_x.data(), n, 784);
    const tensor<float, 2> zf = net.forward(first), zq = q.forward(first);
    const auto [lo, hi] = std::minmax_element(zf.data(), zf.data() + zf.size());
    double max_diff = 0.0;
    for (index_t i = 0; i < zf.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::fabs(zf.data()[i] - zq.data()[i])));

    std::size_t float_bytes = 0;
    net.for_each_parameter([&](const nn::parameter& p) { float_bytes += 4 * p.value.size(); });

    std::printf("\n| model | arithmetic | test accuracy | weight bytes |\n|---|---|---:|---:|\n");
    std::printf("| QAT network (my_quantized_dense) | float, fake-quant weights and inputs | %.2f%% | %zu (fp32 masters) |\n",
                fmnist::percent_equal(pf, d.test_labels()), float_bytes);
    std::printf("| deployed (3 x nn::int8_dense) | int8 x uint8 -> int32, requantized | %.2f%% | %ld |\n",
                fmnist::percent_equal(pq, d.test_labels()), static_cast<long>(q.weight_bytes()));
    std::printf("\ntop-1 agreement: %.2f%% of %zu test images; max |logit difference| on %ld images: %.4f "
                "(%.2f%% of the logit range %.2f)\n",
                fmnist::percent_equal(pq, pf), pf.size(), static_cast<long>(n), max_diff,
                100.0 * max_diff / static_cast<double>(*hi - *lo), static_cast<double>(*hi - *lo));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qat_custom_layer: %s\n", e.what());
    return 1;
  }
}

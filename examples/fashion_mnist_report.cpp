// The Fashion-MNIST compression report: trains the issue-#6 MLP (and with --full
// the CNN), or reuses the float model it saved on an earlier run, then builds
// every compressed variant (fp16, bf16, static / dynamic / QAT int8, int4,
// magnitude, 2:4, Wanda and structured pruning, pruning + int8), saves each as a
// .qpr file and measures test accuracy, file bytes, batch-1 latency and batch-64
// throughput on the deployed (integer) kernels. Writes report.md, report.csv and
// report.svg (accuracy against file size) into --out.
//
//   fashion_mnist_report                 quick: the MLP, 4 epochs, 12 variants (about a minute)
//   fashion_mnist_report --full          the MLP (8 epochs) and the CNN (4 epochs), every variant
//   options: --out DIR (default fashion_mnist_report) --model mlp|cnn|both --epochs N
//            --train-limit N --test-limit N --seed N --retrain (ignore a saved model)
//
// Needs Debian's dataset-fashion-mnist (or QPRUNE_FASHION_MNIST_DIR).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fmnist_common.hpp"
#include "qprune/qprune.hpp"

namespace {

using namespace qprune;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr float kMean = 0.286f, kStd = 0.353f;
constexpr index_t kBatch = 128;

struct args {
  bool full = false;
  std::string model;  // mlp, cnn, both (default: mlp quick, both full)
  int epochs = 0;  // 0: the default (8 / 4 full, 4 / 1 quick)
  index_t train_limit = 0, test_limit = 0;  // 0: all images
  unsigned seed = 1;
  bool retrain = false;
  fs::path out = "fashion_mnist_report";
};

args parse(int argc, char** argv) {
  const fmnist::flags f(argc, argv,
                        {{"model", ""}, {"epochs", "0"}, {"train-limit", "0"}, {"test-limit", "0"}, {"seed", "1"},
                         {"out", "fashion_mnist_report"}},
                        {.text = {"model", "out"}, .switches = {"full", "retrain"}});
  args a;
  a.full = f.on("full");
  a.retrain = f.on("retrain");
  a.model = f.text("model");
  a.out = f.text("out");
  a.epochs = static_cast<int>(f.count("epochs"));
  a.train_limit = f.count("train-limit");
  a.test_limit = f.count("test-limit");
  if (f.count("seed") < 0) throw config_error("--seed is negative (expected a seed >= 0)");
  a.seed = static_cast<unsigned>(f.count("seed"));
  if (a.model.empty()) a.model = a.full ? "both" : "mlp";
  if (a.model != "mlp" && a.model != "cnn" && a.model != "both") {
    throw config_error("--model " + a.model + " (expected mlp, cnn or both)");
  }
  return a;
}

// ---------------------------------------------------------------------------
// Data, models, training
// ---------------------------------------------------------------------------

struct dataset {
  io::mnist_set train_set, test_set;
  tensor<float, 2> train_x, test_x, calib_x;  // calib: the first 1000 training images
};

template <class Dense>
auto make_mlp(nn::init_rng& rng) {
  return nn::sequential(Dense({.in_features = 784, .out_features = 256}, rng), nn::relu(),
                        Dense({.in_features = 256, .out_features = 128}, rng), nn::relu(),
                        Dense({.in_features = 128, .out_features = 10}, rng));
}

template <class Dense, class Conv>
auto make_cnn(nn::init_rng& rng) {
  auto c1 = Conv({.in_channels = 1, .out_channels = 32, .kernel_h = 3, .kernel_w = 3, .padding = nn::pad(1)}, rng);
  auto c2 = Conv({.in_channels = 32, .out_channels = 64, .kernel_h = 3, .kernel_w = 3, .padding = nn::pad(1)}, rng);
  return nn::sequential(std::move(c1), nn::relu(), nn::max_pool2d(), std::move(c2), nn::relu(), nn::max_pool2d(),
                        nn::flatten(), Dense({.in_features = 7 * 7 * 64, .out_features = 128}, rng), nn::relu(),
                        Dense({.in_features = 128, .out_features = 10}, rng));
}

using fdense = nn::dense<quant::none, prune::magnitude>;
using fconv = nn::conv2d<quant::none, prune::magnitude>;
using qdense = nn::dense<quant::int8, prune::none, quant::static_int8>;
using qconv = nn::conv2d<quant::int8, prune::none, quant::static_int8>;

using fmnist::gather;

template <class Net>
constexpr std::size_t rank_of() {
  using first = std::remove_cvref_t<decltype(std::declval<Net&>().template get<0>())>;
  return nn::is_conv_layer_v<first> ? 4 : 2;
}

/// One line of progress on stderr, rewritten in place.
void progress(const std::string& what, int epoch, int epochs, index_t batch, index_t batches, double elapsed) {
  const double done = (static_cast<double>(epoch - 1) + static_cast<double>(batch) / static_cast<double>(batches)) /
                      static_cast<double>(epochs);
  const double eta = done > 0.0 ? elapsed * (1.0 - done) / done : 0.0;
  std::fprintf(stderr, "\r  %-24s epoch %d/%d  batch %4ld/%ld  ETA %4.0f s ", what.c_str(), epoch, epochs,
               static_cast<long>(batch), static_cast<long>(batches), eta);
  std::fflush(stderr);
}

/// Adam (lr) for `epochs` epochs, batch 128, shuffled with a fixed seed. With a
/// schedule, every prunable layer's mask follows it (tfmot's UpdatePruningStep).
template <class Net>
void train(Net& net, const dataset& d, int epochs, double lr, unsigned seed, const std::string& what,
           const prune::polynomial_decay* schedule = nullptr) {
  constexpr std::size_t R = rank_of<Net>();
  const index_t n = d.train_x.extent(0);
  const index_t batches = (n + kBatch - 1) / kBatch;
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 shuffle_rng(20261128u + seed);
  nn::adam adam({.lr = lr});
  nn::softmax_cross_entropy ce;
  std::vector<std::uint8_t> labels;
  std::int64_t step = 0;
  const auto t0 = clock_type::now();
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), shuffle_rng);
    net.set_mode(nn::mode::train);
    for (index_t b = 0; b < batches; ++b, ++step) {
      const index_t b0 = b * kBatch, bn = std::min(kBatch, n - b0);
      const std::span<const index_t> idx(order.data() + b0, static_cast<std::size_t>(bn));
      labels.resize(static_cast<std::size_t>(bn));
      for (std::size_t i = 0; i < idx.size(); ++i) labels[i] = d.train_set.labels[static_cast<std::size_t>(idx[i])];
      if (schedule != nullptr) net.update_masks(*schedule, step);
      net.zero_grad();
      const auto logits = net.forward(gather<R>(d.train_x, idx));
      (void)ce.forward(logits.cview(), std::span<const std::uint8_t>(labels));
      net.backward_params(ce.backward());
      adam.step(net);
      if (b % 25 == 0 || b + 1 == batches) {
        progress(what, epoch, epochs, b + 1, batches, std::chrono::duration<double>(clock_type::now() - t0).count());
      }
    }
  }
  std::fprintf(stderr, "\n");
  net.set_mode(nn::mode::eval);
}

/// Copies every Dense/Conv weight and bias of `src` into the same-shaped `dst`.
template <std::size_t I = 0, class Src, class Dst>
void copy_parameters(Src& src, Dst& dst) {
  if constexpr (I < Src::size()) {
    auto& s = src.template get<I>();
    auto& t = dst.template get<I>();
    if constexpr (requires { s.weight(); t.weight(); }) {
      std::copy_n(s.weight().data(), s.weight().size(), t.weight().data());
      std::copy_n(s.bias().data(), s.bias().size(), t.bias().data());
    }
    copy_parameters<I + 1>(src, dst);
  }
}

/// Runs x through the layers one at a time in eval mode, calling f(layer, input) for every layer.
template <std::size_t I = 0, class Net, class X, class F>
void walk(Net& net, const X& x, F&& f) {
  if constexpr (I < Net::size()) {
    auto& l = net.template get<I>();
    f(l, x);
    const auto y = l.forward(x);
    walk<I + 1>(net, y, f);
  }
}

/// Calls f(masked_weight&) for every prunable layer.
template <class Net, class F>
void for_each_weight(Net& net, F&& f) {
  net.for_each_layer([&](auto& l) {
    if constexpr (nn::maskable<std::remove_cvref_t<decltype(l)>>) f(l.weights());
  });
}

// ---------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------

struct row {
  std::string model, variant;
  double accuracy = 0.0, delta = 0.0;
  std::uintmax_t bytes = 0;
  double ratio = 1.0, latency_us = 0.0, throughput = 0.0, sparsity = 0.0;
};

double accuracy(nn::deployed_model& m, const dataset& d) {
  const index_t n = d.test_x.extent(0), px = d.test_x.extent(1);
  index_t correct = 0;
  for (index_t b0 = 0; b0 < n; b0 += 1000) {
    const index_t bn = std::min<index_t>(1000, n - b0);
    const auto y = m.forward(tensor_view<const float, 2>(d.test_x.data() + b0 * px, bn, px));
    correct += nn::count_correct(y.cview(), std::span<const std::uint8_t>(d.test_set.labels.data() + b0,
                                                                          static_cast<std::size_t>(bn)));
  }
  return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

/// Median seconds of one forward of `rows` test images (at least 15 runs and 0.3 s).
double time_forward(nn::deployed_model& m, const dataset& d, index_t rows) {
  const index_t px = d.test_x.extent(1);
  const tensor_view<const float, 2> x(d.test_x.data(), rows, px);
  for (int i = 0; i < 3; ++i) (void)m.forward(x);
  std::vector<double> t;
  const auto start = clock_type::now();
  while (t.size() < 15 || (std::chrono::duration<double>(clock_type::now() - start).count() < 0.3 && t.size() < 5000)) {
    const auto t0 = clock_type::now();
    (void)m.forward(x);
    t.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return median(std::move(t));
}

/// Non-zero and total Dense/Conv weights of a float model.
template <class Net>
std::pair<double, double> weight_counts(Net& net) {
  double nonzero = 0.0, total = 0.0;
  for_each_weight(net, [&](auto& w) {
    for (float v : w.value().span()) nonzero += v != 0.0f ? 1.0 : 0.0;
    total += static_cast<double>(w.value().size());
  });
  return {nonzero, total};
}

struct reporter {
  const dataset& data;
  fs::path out;
  std::string model;
  std::vector<row>& rows;
  double dense_weights;  // of the fp32 model
  double fp32_acc = 0.0;
  std::uintmax_t fp32_bytes = 0;

  /// Measures and records `m`, converted from `net` (whose zeros give the sparsity).
  template <class Net>
  void add(const std::string& variant, Net& net, nn::deployed_model m) {
    row r{model, variant};
    r.accuracy = accuracy(m, data);
    const fs::path file = out / (model + "_" + variant + ".qpr");
    nn::save(m, file);
    r.bytes = fs::file_size(file);
    if (variant == "fp32") {
      fp32_acc = r.accuracy;
      fp32_bytes = r.bytes;
    }
    r.delta = r.accuracy - fp32_acc;
    r.ratio = static_cast<double>(fp32_bytes) / static_cast<double>(r.bytes);
    r.latency_us = 1e6 * time_forward(m, data, 1);
    r.throughput = 64.0 / time_forward(m, data, 64);
    r.sparsity = 1.0 - weight_counts(net).first / dense_weights;
    rows.push_back(r);
    std::printf("  %-4s %-26s acc %6.2f%% (%+5.2f)  %9ju bytes (%5.2fx)  %8.1f us/image  %8.0f images/s  sparsity %4.1f%%\n",
                model.c_str(), variant.c_str(), r.accuracy, r.delta, r.bytes, r.ratio, r.latency_us, r.throughput,
                100.0 * r.sparsity);
    std::fflush(stdout);
  }
};

// ---------------------------------------------------------------------------
// The variants of one model
// ---------------------------------------------------------------------------

template <class Net, class QNet>
void run_model(const std::string& name, Net fp32, QNet qat, const dataset& d, const args& a, int epochs,
               std::vector<row>& rows) {
  constexpr bool is_cnn = rank_of<Net>() == 4;
  std::printf("\n== %s: %ld training / %ld test images ==\n", name.c_str(), static_cast<long>(d.train_x.extent(0)),
              static_cast<long>(d.test_x.extent(0)));
  const fs::path saved = a.out / (name + "_float_e" + std::to_string(epochs) + "_s" + std::to_string(a.seed) + "_n" +
                                  std::to_string(d.train_x.extent(0)) + ".qpr");
  if (!a.retrain && fs::exists(saved)) {
    nn::load_parameters(saved, fp32);
    std::printf("  reusing the float model saved in %s\n", saved.string().c_str());
  } else {
    train(fp32, d, epochs, 1e-3, a.seed, name + " fp32 training");
    nn::save_parameters(saved, fp32);
  }
  fp32.set_mode(nn::mode::eval);

  nn::convert_options base;
  base.input_height = is_cnn ? 28 : 1;
  base.input_width = is_cnn ? 28 : 1;
  base.input_channels = is_cnn ? 1 : 784;
  const auto with = [&](nn::weight_format f) {
    nn::convert_options o = base;
    o.format = f;
    return o;
  };
  const tensor_view<const float, 2> calib = d.calib_x.cview();
  reporter rep{d, a.out, name, rows, weight_counts(fp32).second};

  rep.add("fp32", fp32, nn::convert(fp32, base));
  rep.add("fp16", fp32, nn::convert(fp32, with(nn::weight_format::fp16)));
  rep.add("bf16", fp32, nn::convert(fp32, with(nn::weight_format::bf16)));
  for (auto [method, label] : {std::pair{nn::calibration_method::minmax, "int8_static_minmax"},
                               std::pair{nn::calibration_method::histogram, "int8_static_histogram"},
                               std::pair{nn::calibration_method::entropy, "int8_static_entropy"}}) {
    if (!a.full && method != nn::calibration_method::minmax) continue;
    auto o = with(nn::weight_format::int8_static);
    o.calibration = method;
    rep.add(label, fp32, nn::convert(fp32, o, calib));
  }
  rep.add("int8_dynamic", fp32, nn::convert(fp32, with(nn::weight_format::int8_dynamic)));
  {
    copy_parameters(fp32, qat);
    train(qat, d, 1, 1e-4, a.seed + 100, name + " QAT int8 (1 epoch)");
    rep.add("int8_qat", qat, nn::convert(qat, with(nn::weight_format::int8_static), calib));
  }
  rep.add("int4_g32", fp32, nn::convert(fp32, with(nn::weight_format::int4)));

  const index_t steps = (d.train_x.extent(0) + kBatch - 1) / kBatch;
  auto csr = base;
  csr.sparse = nn::sparse_layout::csr;
  const std::vector<double> levels = a.full ? std::vector<double>{0.5, 0.75, 0.9} : std::vector<double>{0.75, 0.9};
  Net pruned75 = fp32;
  for (double s : levels) {
    const std::string pct = std::to_string(static_cast<int>(s * 100.0 + 0.5));
    if (a.full) {
      Net net = fp32;
      for_each_weight(net, [&](auto& w) { w.prune_to(static_cast<float>(s)); });
      rep.add("magnitude" + pct + "_oneshot", net, nn::convert(net, csr));
    }
    // One epoch: polynomial decay from 0 to s over the first 2/3, then fine-tuning at s.
    Net net = fp32;
    const prune::polynomial_decay schedule(0.0, s, 0, std::max<std::int64_t>(1, steps * 2 / 3), 3,
                                           std::max<std::int64_t>(1, steps / 20));
    train(net, d, 1, 1e-3, a.seed + 200, name + " magnitude " + pct + "% + FT", &schedule);
    rep.add("magnitude" + pct + "_ft", net, nn::convert(net, csr));
    if (s == 0.75) pruned75 = net;
  }
  {
    Net net = fp32;
    for_each_weight(net, [](auto& w) { w.set_mask(prune::n_m_mask(w.value().cview(), 2, 4)); });
    train(net, d, 1, 1e-3, a.seed + 300, name + " 2:4 + FT");
    auto o = base;
    o.sparse = nn::sparse_layout::nm;
    rep.add("nm_2of4_ft", net, nn::convert(net, o));
  }
  if (a.full) {
    // Wanda 50%: |W| * ||X_j|| per output row, X from 128 calibration images.
    Net net = fp32;
    const index_t nc = std::min<index_t>(128, d.calib_x.extent(0));
    std::vector<index_t> idx(static_cast<std::size_t>(nc));
    std::iota(idx.begin(), idx.end(), 0);
    walk(net, gather<rank_of<Net>()>(d.calib_x, idx), [](auto& l, const auto& x) {
      using L = std::remove_cvref_t<decltype(l)>;
      if constexpr (nn::is_dense_layer_v<L>) {
        prune::wanda_calibrator cal(l.in_features());
        cal.add_batch(x.cview());
        l.weights().set_mask(prune::wanda_mask(l.weight(), cal, 0.5));
      } else if constexpr (nn::is_conv_layer_v<L>) {
        const kernels::conv2d_geometry g = l.geometry(x.extents());
        tensor<float, 2> cols(g.out_pixels(), g.patch());
        kernels::im2col(g, x.data(), 0, 0, g.out_pixels(), 0.0f, cols.data(), g.patch());
        prune::wanda_calibrator cal(g.patch());
        cal.add_batch(cols.cview());
        l.weights().set_mask(prune::wanda_mask(l.weight(), cal, 0.5));
      }
    });
    rep.add("wanda50_oneshot", net, nn::convert(net, csr));
  }
  for (double f : a.full ? std::vector<double>{0.25, 0.5} : std::vector<double>{0.5}) {
    const std::string pct = std::to_string(static_cast<int>(f * 100.0 + 0.5));
    Net net = fp32;
    (void)nn::remove_channels(net, {.fraction = f});
    // The smaller network is re-trained longer than the masked variants: 3 epochs.
    train(net, d, 3, 1e-3, a.seed + 400, name + " structured " + pct + "% + FT");
    rep.add("structured" + pct + "_ft", net, nn::convert(net, base));
  }
  {
    auto o = with(nn::weight_format::int8_static);
    o.sparse = nn::sparse_layout::csr;
    rep.add("magnitude75_ft_int8", pruned75, nn::convert(pruned75, o, calib));
  }
}

// ---------------------------------------------------------------------------
// Output: Markdown, CSV, SVG
// ---------------------------------------------------------------------------

/// What each variant is, for the legend under the table.
constexpr const char* kLegend =
    "\nVariants (from the trained fp32 model; test accuracy on the 10000 test images; file bytes = the .qpr "
    "file nn::save wrote; latency = median of single-image forwards; throughput = batches of 64; sparsity = "
    "1 - non-zero weights / the fp32 model's weights):\n"
    "- fp16, bf16: weights rounded to half / bfloat16 (round to nearest even), fp32 compute.\n"
    "- int8_static_*: per-channel symmetric int8 weights, per-tensor uint8 activations calibrated on 1000 "
    "training images with the MinMax / Histogram / Entropy observer, int32 bias, requantized integer chain.\n"
    "- int8_dynamic: per-channel int8 weights, activations quantized per batch at run time.\n"
    "- int8_qat: 1 epoch of quantization-aware training (fake-quant weights and activations, Adam lr 1e-4), "
    "then static int8 with the observed ranges.\n"
    "- int4_g32: 4-bit symmetric weights in groups of 32 along the input, int8 activations per row.\n"
    "- magnitudeS_oneshot: the S% smallest weights of every layer set to zero; magnitudeS_ft: 1 epoch of "
    "fine-tuning while a polynomial-decay schedule raises the sparsity from 0 to S% over its first 2/3; "
    "stored as CSR or bitmask, whichever is smaller.\n"
    "- nm_2of4_ft: 2 of every 4 consecutive weights kept (by magnitude), 1 epoch of fine-tuning, packed N:M.\n"
    "- wanda50_oneshot: Wanda, |W| * ||X_j|| over 128 calibration images, 50% per output row.\n"
    "- structuredS_ft: S% of the hidden output channels (lowest L2 norm) physically removed with "
    "nn::remove_channels, 3 epochs of fine-tuning, dense fp32 kernels on the smaller layers.\n"
    "- magnitude75_ft_int8: magnitude75_ft converted to int8 weights (CSR/bitmask int8, per-row scales).\n";

void write_tables(const std::vector<row>& rows, const fs::path& out) {
  std::ofstream md(out / "report.md"), csv(out / "report.csv");
  md << "| model | variant | test acc % | vs fp32 | file bytes | ratio | batch-1 us/image | batch-64 images/s | sparsity |\n"
     << "|---|---|--:|--:|--:|--:|--:|--:|--:|\n";
  csv << "model,variant,accuracy,delta,file_bytes,ratio,latency_us,throughput,sparsity\n";
  char buf[512];
  for (const row& r : rows) {
    std::snprintf(buf, sizeof buf, "| %s | %s | %.2f | %+.2f | %ju | %.2fx | %.1f | %.0f | %.1f%% |\n", r.model.c_str(),
                  r.variant.c_str(), r.accuracy, r.delta, r.bytes, r.ratio, r.latency_us, r.throughput,
                  100.0 * r.sparsity);
    md << buf;
    std::snprintf(buf, sizeof buf, "%s,%s,%.4f,%.4f,%ju,%.4f,%.3f,%.1f,%.4f\n", r.model.c_str(), r.variant.c_str(),
                  r.accuracy, r.delta, r.bytes, r.ratio, r.latency_us, r.throughput, r.sparsity);
    csv << buf;
  }
  md << kLegend;
}

/// Accuracy against file size (log scale), one labelled point per variant.
void write_svg(const std::vector<row>& rows, const fs::path& file) {
  const double w = 960, h = 600, l = 70, r = 230, t = 40, b = 60;
  double x0 = 1e300, x1 = 0, y0 = 100, y1 = 0;
  for (const row& p : rows) {
    x0 = std::min(x0, std::log10(static_cast<double>(p.bytes)));
    x1 = std::max(x1, std::log10(static_cast<double>(p.bytes)));
    y0 = std::min(y0, p.accuracy);
    y1 = std::max(y1, p.accuracy);
  }
  x0 = std::floor(x0 * 4) / 4 - 0.05;
  x1 = std::ceil(x1 * 4) / 4 + 0.05;
  // The axis shows the 6 points below the best variant; worse ones (one-shot
  // pruning without fine-tuning) sit on the bottom edge with their accuracy.
  y0 = std::max(std::floor(y0) - 0.5, std::floor(y1) - 6.0);
  y1 = std::ceil(y1) + 0.5;
  const auto px = [&](double v) { return l + (std::log10(v) - x0) / (x1 - x0) * (w - l - r); };
  const auto py = [&](double v) { return h - b - (v - y0) / (y1 - y0) * (h - t - b); };
  std::ofstream s(file);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
                "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                w, h);
  s << buf;
  s << "<text x=\"" << l << "\" y=\"24\" font-size=\"15\">Fashion-MNIST: test accuracy against .qpr file size</text>\n";
  std::snprintf(buf, sizeof buf, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n",
                l, t, w - l - r, h - t - b);
  s << buf;
  for (double e = std::ceil(x0); e <= x1; e += 1.0) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, e);
      if (std::log10(v) > x1) break;
      const char* unit = v >= 1e6 ? "MB" : (v >= 1e3 ? "kB" : "B");
      const double shown = v >= 1e6 ? v / 1e6 : (v >= 1e3 ? v / 1e3 : v);
      std::snprintf(buf, sizeof buf,
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#ddd\"/><text x=\"%.1f\" y=\"%.0f\" "
                    "text-anchor=\"middle\">%g %s</text>\n",
                    px(v), px(v), t, h - b, px(v), h - b + 16, shown, unit);
      s << buf;
    }
  }
  const double span = y1 - y0;
  const double ystep = span <= 8 ? 1.0 : (span <= 16 ? 2.0 : (span <= 40 ? 5.0 : 10.0));
  for (double v = std::ceil(y0 / ystep) * ystep; v <= y1; v += ystep) {
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.0f\" y=\"%.1f\" "
                  "text-anchor=\"end\">%.0f%%</text>\n",
                  l, w - r, py(v), py(v), l - 6, py(v) + 4, v);
    s << buf;
  }
  std::snprintf(buf, sizeof buf,
                "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">file bytes (log scale)</text>\n<text x=\"16\" "
                "y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" text-anchor=\"middle\">test accuracy</text>\n",
                l + (w - l - r) / 2, h - 18, t + (h - t - b) / 2, t + (h - t - b) / 2);
  s << buf;
  // Labels right of their point, moved up or down in 11-pixel steps until they
  // overlap no label placed before (boxes estimated at 6 pixels per character).
  struct box {
    double x0, x1, y0, y1;
  };
  std::vector<box> placed;
  for (const row& p : rows) {
    const char* colour = p.model == "mlp" ? "#1f77b4" : "#d62728";
    const bool below = p.accuracy < y0;
    const double cx = px(static_cast<double>(p.bytes)), cy = py(below ? y0 : p.accuracy);
    char acc[32];
    std::snprintf(acc, sizeof acc, " (%.1f%%)", p.accuracy);
    const std::string label = p.model + " " + p.variant + (below ? acc : "");
    const double lw = 6.0 * static_cast<double>(label.size());
    double ly = cy + 4;
    for (int k = 0; k < 40; ++k) {
      const double cand = cy + 4 + (k % 2 == 0 ? 1 : -1) * 11.0 * static_cast<double>((k + 1) / 2);
      const bool clash = std::any_of(placed.begin(), placed.end(), [&](const box& o) {
        return cx + 7 < o.x1 && cx + 7 + lw > o.x0 && cand - 10 < o.y1 && cand > o.y0;
      });
      if (!clash) {
        ly = cand;
        break;
      }
    }
    placed.push_back({cx + 7, cx + 7 + lw, ly - 10, ly});
    std::snprintf(buf, sizeof buf,
                  "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                  "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"0.5\"/><text x=\"%.1f\" y=\"%.1f\" fill=\"%s\">%s</text>\n",
                  cx, cy, colour, cx + 4, cy, cx + 7, ly - 4, colour, cx + 7, ly, colour, label.c_str());
    s << buf;
  }
  s << "</svg>\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args a = parse(argc, argv);
    fs::create_directories(a.out);
    const auto t0 = clock_type::now();
    dataset d{io::load_fashion_mnist(io::split::train), io::load_fashion_mnist(io::split::test), {}, {}, {}};
    const index_t ntrain = a.train_limit > 0 ? std::min(a.train_limit, d.train_set.count) : d.train_set.count;
    const index_t ntest = a.test_limit > 0 ? std::min(a.test_limit, d.test_set.count) : d.test_set.count;
    d.train_x = io::normalized_images(d.train_set, kMean, kStd, 0, ntrain);
    d.test_x = io::normalized_images(d.test_set, kMean, kStd, 0, ntest);
    d.calib_x = io::normalized_images(d.train_set, kMean, kStd, 0, std::min<index_t>(1000, ntrain));
    std::printf("Fashion-MNIST compression report (%s): Adam lr 1e-3, batch %ld, seed %u; files in %s\n",
                a.full ? "full" : "quick", static_cast<long>(kBatch), a.seed, a.out.string().c_str());
    std::vector<row> rows;
    if (a.model != "cnn") {
      nn::init_rng init(a.seed), qinit(a.seed);
      run_model("mlp", make_mlp<fdense>(init), make_mlp<qdense>(qinit), d, a,
                a.epochs > 0 ? a.epochs : (a.full ? 8 : 4), rows);
    }
    if (a.model != "mlp") {
      nn::init_rng init(a.seed), qinit(a.seed);
      run_model("cnn", make_cnn<fdense, fconv>(init), make_cnn<qdense, qconv>(qinit), d, a,
                a.epochs > 0 ? a.epochs : (a.full ? 4 : 1), rows);
    }
    write_tables(rows, a.out);
    write_svg(rows, a.out / "report.svg");
    std::printf("\n");
    std::ifstream md(a.out / "report.md");
    std::printf("%s", std::string(std::istreambuf_iterator<char>(md), {}).c_str());
    std::printf("\nwrote %s, %s and %s in %.0f s\n", (a.out / "report.md").string().c_str(),
                (a.out / "report.csv").string().c_str(), (a.out / "report.svg").string().c_str(),
                std::chrono::duration<double>(clock_type::now() - t0).count());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist_report: %s\n", e.what());
    return 1;
  }
}

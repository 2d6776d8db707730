// nn/model_file.hpp: deployed models saved to .qpr and loaded back give
// bit-identical forward results for every op kind and weight format (built
// directly with emplace<>, plus one convert() per model family); the file stores
// weights in their deployed dtype; corrupted files (metadata JSON edited and
// re-saved, tensors dropped or replaced) throw io_error naming the problem; and
// parameter files restore a sequential's eval-mode forward bit for bit or
// reject another architecture without touching the network.
#include "qprune/nn/model_file.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "qprune/nn/convert.hpp"
#include "qprune/nn/init.hpp"
#include "qprune/prune/magnitude.hpp"
#include "support/random.hpp"

namespace {

using namespace qprune;
namespace qpr = io::qpr;
using json = nlohmann::json;

/// A fresh directory per test, removed at the end.
class ModelFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("qprune_model_file_" + std::to_string(::getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path path(const std::string& name) const { return dir_ / name; }

  std::filesystem::path dir_;
};

qpr::save_options no_sync() {
  qpr::save_options o;
  o.sync = false;
  return o;
}

tensor<float, 2> normal(index_t rows, index_t cols, std::uint64_t salt, float sd = 1.0f) {
  auto rng = test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, sd);
  tensor<float, 2> t(rows, cols);
  for (float& v : t.span()) v = nd(rng);
  return t;
}

std::vector<float> vec(index_t n, std::uint64_t salt, float sd = 0.5f) {
  const auto t = normal(1, n, salt, sd);
  return std::vector<float>(t.span().begin(), t.span().end());
}

tensor<std::int8_t, 2> codes(index_t rows, index_t cols, std::uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::uniform_int_distribution<int> d(-127, 127);
  tensor<std::int8_t, 2> t(rows, cols);
  for (auto& v : t.span()) v = static_cast<std::int8_t>(d(rng));
  return t;
}

std::vector<float> scales(index_t n, std::uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::uniform_real_distribution<float> d(0.002f, 0.03f);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (float& v : s) v = d(rng);
  return s;
}

/// Zeroes all but the 2 largest magnitudes of every group of 4 along each row.
void prune_2_4(tensor<float, 2>& w) {
  for (index_t r = 0; r < w.extent(0); ++r) {
    for (index_t g = 0; g < w.extent(1); g += 4) {
      const index_t e = std::min<index_t>(g + 4, w.extent(1));
      std::vector<index_t> idx;
      for (index_t c = g; c < e; ++c) idx.push_back(c);
      std::sort(idx.begin(), idx.end(), [&](index_t a, index_t b) { return std::fabs(w(r, a)) > std::fabs(w(r, b)); });
      for (std::size_t k = 2; k < idx.size(); ++k) w(r, idx[k]) = 0.0f;
    }
  }
}

/// Zeroes a fraction of the weights (every element whose hash falls below it).
void prune_random(tensor<float, 2>& w, double fraction, std::uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::uniform_real_distribution<double> d(0.0, 1.0);
  for (float& v : w.span()) v = d(rng) < fraction ? 0.0f : v;
}

void expect_bits_eq(const tensor<float, 2>& got, const tensor<float, 2>& want) {
  ASSERT_EQ(got.extent(0), want.extent(0));
  ASSERT_EQ(got.extent(1), want.extent(1));
  for (index_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got.data()[i]), std::bit_cast<std::uint32_t>(want.data()[i]))
        << "element " << i << ": " << got.data()[i] << " vs " << want.data()[i];
  }
}

/// At least half of the outputs are non-zero (the comparison is not vacuous).
void expect_informative(const tensor<float, 2>& y) {
  index_t nz = 0;
  for (float v : std::span<const float>(y.data(), static_cast<std::size_t>(y.size()))) nz += v != 0.0f ? 1 : 0;
  EXPECT_GE(2 * nz, y.size());
}

using detail_stage = nn::detail::deployed::int8_output;

/// The output stage of a static int8 op, else nullptr.
const detail_stage* stage_of(const nn::op& o) {
  if (const auto* d = dynamic_cast<const nn::int8_dense*>(&o)) return &d->stage();
  if (const auto* c = dynamic_cast<const nn::int8_conv*>(&o)) return &c->stage();
  return nullptr;
}

/// Saves `m`, loads it back, and checks that every op and the forward on `x`
/// agree exactly. Returns the loaded model.
nn::deployed_model round_trip(nn::deployed_model& m, const std::filesystem::path& p, const tensor<float, 2>& x) {
  nn::save(m, p, no_sync());
  nn::deployed_model r = nn::load_model(p);
  EXPECT_EQ(r.input_height(), m.input_height());
  EXPECT_EQ(r.input_width(), m.input_width());
  EXPECT_EQ(r.input_channels(), m.input_channels());
  EXPECT_EQ(r.ops().size(), m.ops().size());
  for (std::size_t i = 0; i < std::min(r.ops().size(), m.ops().size()); ++i) {
    EXPECT_EQ(r.ops()[i]->kind(), m.ops()[i]->kind()) << "op " << i;
    EXPECT_EQ(r.ops()[i]->weight_bytes(), m.ops()[i]->weight_bytes()) << "op " << i;
    EXPECT_EQ(r.ops()[i]->sparsity(), m.ops()[i]->sparsity()) << "op " << i;
    EXPECT_EQ(r.ops()[i]->takes_codes(), m.ops()[i]->takes_codes()) << "op " << i;
    const detail_stage* sa = stage_of(*m.ops()[i]);
    const detail_stage* sb = stage_of(*r.ops()[i]);
    EXPECT_EQ(sa == nullptr, sb == nullptr) << "op " << i;
    if (sa != nullptr && sb != nullptr) {
      EXPECT_EQ(sb->emits_codes(), sa->emits_codes()) << "op " << i;
      if (sa->emits_codes()) {
        EXPECT_EQ(sb->output(), sa->output()) << "op " << i;
      }
      EXPECT_EQ(sb->input(), sa->input()) << "op " << i;
      EXPECT_EQ(sb->bias(), sa->bias()) << "op " << i;
    }
  }
  const auto want = m.forward(x.cview());
  expect_informative(want);
  expect_bits_eq(r.forward(x.cview()), want);
  return r;
}

const qpr::tensor_info& info(const qpr::file& f, const std::string& name) {
  const qpr::tensor_info* t = f.find(name);
  if (t == nullptr) throw std::runtime_error("no tensor " + name);
  return *t;
}

// ---------------------------------------------------------------------------
// Deployed models: every op kind round-trips
// ---------------------------------------------------------------------------

TEST_F(ModelFile, FloatAndHalfDenseWithReluAndRelu6) {
  SCOPED_TRACE(test::seed_trace());
  nn::deployed_model m(1, 1, 24);
  m.emplace<nn::float_dense>(normal(16, 24, 1, 0.3f), vec(16, 2), true);
  m.emplace<nn::half_dense<half>>(normal(12, 16, 3, 0.3f).cview(), vec(12, 4), true);
  m.emplace<nn::half_dense<bfloat16>>(normal(10, 12, 5, 0.5f).cview(), std::vector<float>{}, false);
  m.emplace<nn::relu_op>(6.0f);
  m.emplace<nn::float_dense>(normal(5, 10, 6, 0.5f), vec(5, 7), false);
  round_trip(m, path("m.qpr"), normal(3, 24, 8));

  const qpr::file f = qpr::load(path("m.qpr"));
  EXPECT_EQ(info(f, "0.weight").type, qpr::dtype::f32);
  EXPECT_EQ(info(f, "1.weight").type, qpr::dtype::f16);
  EXPECT_EQ(info(f, "2.weight").type, qpr::dtype::bf16);
  EXPECT_EQ(info(f, "2.weight").shape, (std::vector<index_t>{10, 12}));
  EXPECT_EQ(f.find("2.bias"), nullptr);
  EXPECT_EQ(info(f, "4.bias").type, qpr::dtype::f32);
  const json j = json::parse(f.metadata().at(std::string(qpr::model_metadata_key)));
  EXPECT_EQ(j["format"], "qprune.deployed");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["ops"][3]["kind"], "relu6");
  EXPECT_EQ(j["ops"][3]["cap"], 6.0);
  EXPECT_EQ(j["ops"][2]["tensors"]["bias"], nullptr);
}

TEST_F(ModelFile, StaticInt8DenseChainedAndUnchained) {
  SCOPED_TRACE(test::seed_trace());
  for (const bool chained : {true, false}) {
    SCOPED_TRACE(chained ? "chained" : "float outputs");
    nn::deployed_model m(1, 1, 24);
    auto c0 = codes(32, 24, 10);
    c0(3, 5) = -128;  // the full int8 range is stored too
    m.emplace<nn::int8_dense>(c0.cview(), scales(32, 11), vec(32, 12), quant::affine_params{0.031f, 121}, true);
    m.emplace<nn::relu_op>();
    m.emplace<nn::int8_dense>(codes(16, 32, 13).cview(), scales(16, 14), vec(16, 15),
                              quant::affine_params{0.0173f, 3}, true);
    m.emplace<nn::int8_dense>(codes(5, 16, 16).cview(), scales(5, 17), std::vector<float>{},
                              quant::affine_params{0.0421f, 7}, false);
    if (chained) m.chain_int8();
    auto r = round_trip(m, path("int8.qpr"), normal(4, 24, 18));
    const auto& s0 = dynamic_cast<const nn::int8_dense&>(*r.ops()[0]).stage();
    const auto& s2 = dynamic_cast<const nn::int8_dense&>(*r.ops()[2]).stage();
    EXPECT_EQ(s0.emits_codes(), chained);
    EXPECT_EQ(s2.emits_codes(), chained);
    if (chained) {
      EXPECT_EQ(s0.output(), (quant::affine_params{0.0173f, 3}));
      EXPECT_EQ(s2.output(), (quant::affine_params{0.0421f, 7}));
    }
    EXPECT_FALSE(dynamic_cast<const nn::int8_dense&>(*r.ops()[3]).stage().emits_codes());
    EXPECT_EQ(s0.input(), (quant::affine_params{0.031f, 121}));
    EXPECT_EQ(s0.bias(), dynamic_cast<const nn::int8_dense&>(*m.ops()[0]).stage().bias());

    const qpr::file f = qpr::load(path("int8.qpr"));
    const auto& w0 = info(f, "0.weight");
    EXPECT_EQ(w0.type, qpr::dtype::int8);
    EXPECT_EQ(w0.quant, qpr::granularity::channel);
    EXPECT_EQ(w0.qmin, -128);
    EXPECT_EQ(info(f, "2.weight").qmin, -127);
    EXPECT_EQ(w0.section_bytes[0], 32u * 24);  // one byte per code
    EXPECT_EQ(w0.section_bytes[1], 32u * 4);   // one float32 scale per row
  }
}

TEST_F(ModelFile, Int8FileIsOneBytePerWeight) {
  nn::deployed_model m(1, 1, 512);
  m.emplace<nn::int8_dense>(codes(256, 512, 20).cview(), scales(256, 21), vec(256, 22),
                            quant::affine_params{0.02f, 128}, false);
  nn::save(m, path("big.qpr"), no_sync());
  const auto bytes = std::filesystem::file_size(path("big.qpr"));
  // 131072 codes + 256 scales + 256 bias floats + header / JSON / alignment.
  EXPECT_GE(bytes, 256u * 512 + 2 * 4 * 256);
  EXPECT_LT(bytes, 256u * 512 + 2 * 4 * 256 + 2048);
}

TEST_F(ModelFile, DynamicInt8Dense) {
  SCOPED_TRACE(test::seed_trace());
  nn::deployed_model m(1, 1, 20);
  auto w = normal(12, 20, 30, 0.4f);
  for (index_t j = 0; j < 20; ++j) w(4, j) = 0.0f;     // an all-zero row: scale 1
  w(7, 3) = 1e-30f;                                    // a value far below its row's scale
  m.emplace<nn::dynamic_dense>(w.cview(), vec(12, 31), true);
  m.emplace<nn::dynamic_dense>(normal(6, 12, 32, 0.4f).cview(), std::vector<float>{}, false);
  auto r = round_trip(m, path("dyn.qpr"), normal(3, 20, 33));
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& a = dynamic_cast<const nn::dynamic_dense&>(*m.ops()[i]).linear();
    const auto& b = dynamic_cast<const nn::dynamic_dense&>(*r.ops()[i]).linear();
    const auto ca = a.weight_codes<std::int8_t>(), cb = b.weight_codes<std::int8_t>();
    EXPECT_TRUE(std::equal(ca.data_handle(), ca.data_handle() + ca.size(), cb.data_handle()));
    EXPECT_EQ(a.weight_params().scales, b.weight_params().scales);
  }
  const qpr::file f = qpr::load(path("dyn.qpr"));
  EXPECT_EQ(info(f, "0.weight").type, qpr::dtype::int8);
}

TEST_F(ModelFile, Int4DenseEveryScheme) {
  SCOPED_TRACE(test::seed_trace());
  nn::deployed_model m(1, 1, 48);
  m.emplace<nn::int4_dense>(quant::quantize_int4(normal(32, 48, 40, 0.3f).cview(), 16, quant::int4_scheme::symmetric),
                            vec(32, 41), true);
  m.emplace<nn::int4_dense>(
      quant::quantize_int4(normal(20, 32, 42, 0.3f).cview(), 16, quant::int4_scheme::symmetric_narrow), vec(20, 43),
      true);
  m.emplace<nn::int4_dense>(quant::quantize_int4(normal(7, 20, 44, 0.3f).cview(), 16, quant::int4_scheme::affine),
                            std::vector<float>{}, false);
  round_trip(m, path("q4.qpr"), normal(3, 48, 45));
  const qpr::file f = qpr::load(path("q4.qpr"));
  EXPECT_EQ(info(f, "0.weight").type, qpr::dtype::int4);
  EXPECT_EQ(info(f, "1.weight").qmin, -7);
  EXPECT_EQ(info(f, "2.weight").type, qpr::dtype::uint4);
  EXPECT_EQ(info(f, "0.weight").section_bytes[0], 32u * 24);  // two codes per byte
}

TEST_F(ModelFile, SparseCsrAndNmWithFloatHalfInt8Values) {
  SCOPED_TRACE(test::seed_trace());
  const index_t dims[] = {24, 20, 18, 16, 12, 10, 6};
  std::vector<tensor<float, 2>> ws;
  for (int l = 0; l < 6; ++l) {
    auto w = normal(dims[l + 1], dims[l], 50 + static_cast<std::uint64_t>(l), 0.4f);
    if (l < 3) prune_random(w, 0.7, 60 + static_cast<std::uint64_t>(l)); else prune_2_4(w);
    // Kept weights well above the int8 / fp16 resolution, so no kept entry is stored as 0.
    for (float& v : w.span()) v = v == 0.0f ? 0.0f : std::copysign(std::max(std::fabs(v), 0.1f), v);
    ws.push_back(std::move(w));
  }
  nn::deployed_model m(1, 1, 24);
  m.emplace<nn::sparse_dense<prune::csr_matrix<float>>>(prune::csr_matrix<float>::from_dense(ws[0].cview()), vec(20, 70), true);
  m.emplace<nn::sparse_dense<prune::csr_matrix<half>>>(prune::csr_matrix<half>::from_dense(ws[1].cview()), vec(18, 71), true);
  m.emplace<nn::sparse_dense<prune::csr_matrix<std::int8_t>>>(prune::csr_matrix<std::int8_t>::from_dense(ws[2].cview()),
                                                              std::vector<float>{}, true);
  m.emplace<nn::sparse_dense<prune::packed_nm_matrix<float>>>(
      prune::packed_nm_matrix<float>::from_dense(ws[3].cview(), 2, 4), vec(12, 72), true);
  m.emplace<nn::sparse_dense<prune::packed_nm_matrix<half>>>(
      prune::packed_nm_matrix<half>::from_dense(ws[4].cview(), 2, 4), vec(10, 73), true);
  m.emplace<nn::sparse_dense<prune::packed_nm_matrix<std::int8_t>>>(
      prune::packed_nm_matrix<std::int8_t>::from_dense(ws[5].cview(), 2, 4), vec(6, 74), false);
  round_trip(m, path("sparse.qpr"), normal(3, 24, 75));
  const qpr::file f = qpr::load(path("sparse.qpr"));
  // 30% kept: one bit per element costs less than a 1-byte column index per entry.
  EXPECT_EQ(info(f, "0.weight").enc, qpr::encoding::bitmask);
  EXPECT_EQ(info(f, "2.weight").enc, qpr::encoding::bitmask);
  EXPECT_EQ(info(f, "1.weight").type, qpr::dtype::f16);
  EXPECT_EQ(info(f, "2.weight").type, qpr::dtype::int8);
  EXPECT_EQ(info(f, "3.weight").enc, qpr::encoding::nm);
  EXPECT_EQ(info(f, "5.weight").nm_m, 4);
  EXPECT_LT(info(f, "0.weight").nnz, 20u * 24 / 2);
}

TEST_F(ModelFile, VerySparseCsrStaysCsr) {
  SCOPED_TRACE(test::seed_trace());
  auto w = normal(8, 256, 80, 0.4f);
  prune_random(w, 0.97, 81);
  for (float& v : w.span()) v = v == 0.0f ? 0.0f : std::copysign(std::max(std::fabs(v), 0.1f), v);
  nn::deployed_model m(1, 1, 256);
  m.emplace<nn::sparse_dense<prune::csr_matrix<std::int8_t>>>(prune::csr_matrix<std::int8_t>::from_dense(w.cview()),
                                                              vec(8, 82), false);
  round_trip(m, path("very_sparse.qpr"), normal(2, 256, 83));
  const qpr::file f = qpr::load(path("very_sparse.qpr"));
  EXPECT_EQ(info(f, "0.weight").enc, qpr::encoding::csr);  // ~62 one-byte indices < 256 mask bytes
}

kernels::conv2d_geometry geom(index_t h, index_t w, index_t c, index_t oc, index_t k, index_t stride,
                              std::array<index_t, 4> pads, index_t dilation = 1, index_t groups = 1) {
  kernels::conv2d_geometry g;
  g.in_h = h;
  g.in_w = w;
  g.in_c = c;
  g.out_c = oc;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = stride;
  g.pad_top = pads[0];
  g.pad_bottom = pads[1];
  g.pad_left = pads[2];
  g.pad_right = pads[3];
  g.dilation_h = g.dilation_w = dilation;
  g.groups = groups;
  return g;
}

TEST_F(ModelFile, FloatAndHalfConvsPoolingBatchNormFlatten) {
  SCOPED_TRACE(test::seed_trace());
  nn::deployed_model m(10, 10, 3);
  const auto g1 = geom(10, 10, 3, 6, 3, 1, {1, 1, 1, 1});
  m.emplace<nn::float_conv>(g1, normal(6, g1.patch(), 80, 0.3f), vec(6, 81), true);
  m.emplace<nn::pool_op>(nn::pool_op::kind_t::max, 2, 2);
  const auto g2 = geom(5, 5, 6, 8, 3, 1, {2, 2, 2, 2}, 2);
  m.emplace<nn::half_conv<half>>(g2, normal(8, g2.patch(), 82, 0.3f).cview(), std::vector<float>{}, false);
  m.emplace<nn::channel_affine_op>(vec(8, 83, 1.0f), vec(8, 84));
  m.emplace<nn::relu_op>(6.0f);
  const auto g3 = geom(5, 5, 8, 8, 3, 2, {1, 0, 1, 0}, 1, 8);
  m.emplace<nn::half_conv<bfloat16>>(g3, normal(8, g3.patch(), 85, 0.5f).cview(), vec(8, 86), true);
  m.emplace<nn::pool_op>(nn::pool_op::kind_t::average, 2, 1);
  m.emplace<nn::flatten_op>();
  m.emplace<nn::float_dense>(normal(4, 8, 87, 0.5f), vec(4, 88), false);
  round_trip(m, path("conv.qpr"), normal(3, 300, 89));

  const qpr::file f = qpr::load(path("conv.qpr"));
  EXPECT_EQ(info(f, "0.weight").shape, (std::vector<index_t>{6, 3, 3, 3}));
  EXPECT_EQ(info(f, "2.weight").type, qpr::dtype::f16);
  EXPECT_EQ(info(f, "5.weight").type, qpr::dtype::bf16);
  EXPECT_EQ(info(f, "5.weight").shape, (std::vector<index_t>{8, 3, 3, 1}));
  const json j = json::parse(f.metadata().at(std::string(qpr::model_metadata_key)));
  EXPECT_EQ(j["ops"][5]["geometry"]["groups"], 8);
  EXPECT_EQ(j["ops"][5]["geometry"]["pad_bottom"], 0);
  EXPECT_EQ(j["ops"][6]["kind"], "avg_pool2d");
  EXPECT_EQ(j["ops"][6]["stride"], 1);
}

TEST_F(ModelFile, StaticInt8ConvChainThroughPoolingIncludingDepthwise) {
  SCOPED_TRACE(test::seed_trace());
  nn::deployed_model m(10, 10, 3);
  const auto g1 = geom(10, 10, 3, 8, 3, 1, {1, 1, 1, 1});
  m.emplace<nn::int8_conv>(g1, codes(8, g1.patch(), 90).cview(), scales(8, 91), vec(8, 92),
                           quant::affine_params{0.02f, 128}, true);
  m.emplace<nn::pool_op>(nn::pool_op::kind_t::max, 2, 2);
  const auto g2 = geom(5, 5, 8, 8, 3, 1, {1, 1, 1, 1}, 1, 8);
  m.emplace<nn::int8_conv>(g2, codes(8, g2.patch(), 93).cview(), scales(8, 94), vec(8, 95),
                           quant::affine_params{0.011f, 0}, true);
  const auto g3 = geom(5, 5, 8, 4, 1, 1, {0, 0, 0, 0});
  m.emplace<nn::int8_conv>(g3, codes(4, g3.patch(), 96).cview(), scales(4, 97), std::vector<float>{},
                           quant::affine_params{0.009f, 0}, false);
  m.emplace<nn::flatten_op>();
  m.emplace<nn::int8_dense>(codes(5, 100, 98).cview(), scales(5, 99), vec(5, 100), quant::affine_params{0.05f, 100},
                            false);
  m.chain_int8();
  auto r = round_trip(m, path("int8conv.qpr"), normal(2, 300, 101));
  EXPECT_TRUE(dynamic_cast<const nn::int8_conv&>(*r.ops()[0]).stage().emits_codes());
  EXPECT_TRUE(dynamic_cast<const nn::int8_conv&>(*r.ops()[3]).stage().emits_codes());
  const qpr::file f = qpr::load(path("int8conv.qpr"));
  EXPECT_EQ(info(f, "2.weight").shape, (std::vector<index_t>{8, 3, 3, 1}));
  EXPECT_EQ(info(f, "2.weight").type, qpr::dtype::int8);
}

TEST_F(ModelFile, EmptyModelRoundTrips) {
  nn::deployed_model m(2, 3, 4);
  nn::save(m, path("empty.qpr"), no_sync());
  auto r = nn::load_model(path("empty.qpr"));
  EXPECT_EQ(r.ops().size(), 0u);
  const auto x = normal(2, 24, 102);
  expect_bits_eq(r.forward(x.cview()), x);
}

// ---------------------------------------------------------------------------
// Sequential models: the ones the parameter tests use, converted once each
// ---------------------------------------------------------------------------

using pdense = nn::dense<quant::none, prune::magnitude>;
using qatdense = nn::dense<quant::int8, prune::none, quant::static_int8>;
using mlp_t = nn::sequential<pdense, nn::relu, pdense, nn::relu, qatdense>;

mlp_t make_mlp(std::uint32_t seed, index_t hidden = 16) {
  nn::init_rng rng(seed);
  return mlp_t(pdense({24, hidden}, rng, prune::magnitude(0.5f)), nn::relu{},
               pdense({hidden, 12}, rng, prune::magnitude(0.6f)), nn::relu{}, qatdense({12, 5}, rng));
}

using pconv = nn::conv2d<quant::none, prune::magnitude>;
using cnn_t = nn::sequential<pconv, nn::batch_norm, nn::relu, nn::max_pool2d, nn::conv2d<>, nn::relu, nn::avg_pool2d,
                             nn::flatten, nn::dense<>>;

cnn_t make_cnn(std::uint32_t seed) {
  nn::init_rng rng(seed);
  return cnn_t(pconv({3, 6, 3, 3, 1, 1, nn::pad(1)}, rng, prune::magnitude(0.5f)), nn::batch_norm({6}),
               nn::relu{}, nn::max_pool2d{}, nn::conv2d<>({6, 8, 3, 3, 1, 1, nn::pad(1)}, rng), nn::relu{},
               nn::avg_pool2d({2, 2, 2, 2}), nn::flatten{}, nn::dense<>({2 * 2 * 8, 4}, rng));
}

/// Random batch-norm affine parameters and running statistics.
void randomize_bn(nn::batch_norm& bn, std::uint64_t salt) {
  auto rng = test::make_rng(salt);
  std::uniform_real_distribution<float> d(-0.5f, 0.5f), v(0.2f, 2.0f);
  for (float& x : bn.gamma().span()) x = 1.0f + d(rng);
  for (float& x : bn.beta().span()) x = d(rng);
  for (float& x : bn.running_mean().span()) x = d(rng);
  for (float& x : bn.running_var().span()) x = v(rng);
}

tensor<float, 4> images(index_t n, std::uint64_t salt) {
  const auto x = normal(n, 4 * 4 * 3 * 4, salt);  // 8x8x3 images
  return tensor<float, 4>(extents<4>(n, 8, 8, 3), std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
}

TEST_F(ModelFile, ConvertedStaticInt8MlpRoundTrips) {
  SCOPED_TRACE(test::seed_trace());
  auto net = make_mlp(1);
  const auto calib = normal(32, 24, 110);
  static_cast<void>(net.forward(calib.cview()));  // the QAT layer observes its input
  nn::convert_options o;
  o.format = nn::weight_format::int8_static;
  o.input_channels = 24;
  auto m = nn::convert(net, o, calib.cview());
  round_trip(m, path("mlp.qpr"), normal(5, 24, 111));
}

TEST_F(ModelFile, ConvertedStaticInt8CnnWithFoldedBatchNormRoundTrips) {
  SCOPED_TRACE(test::seed_trace());
  auto net = make_cnn(2);
  randomize_bn(net.get<1>(), 120);
  const auto calib = images(16, 121);
  nn::convert_options o;
  o.format = nn::weight_format::int8_static;
  o.input_height = 8;
  o.input_width = 8;
  o.input_channels = 3;
  auto m = nn::convert(net, o, tensor_view<const float, 2>(calib.data(), 16, 192));
  const auto x = images(3, 122);
  round_trip(m, path("cnn.qpr"), tensor<float, 2>(extents<2>(3, 192), std::span<const float>(x.data(), 576)));
}

// ---------------------------------------------------------------------------
// Corrupted deployed-model files
// ---------------------------------------------------------------------------

/// A small model with a Dense int8 chain and a conv, saved to `p`.
void save_reference(const std::filesystem::path& p) {
  nn::deployed_model m(4, 4, 2);
  const auto g = geom(4, 4, 2, 3, 3, 1, {1, 1, 1, 1});
  m.emplace<nn::float_conv>(g, normal(3, g.patch(), 130, 0.3f), vec(3, 131), true);
  m.emplace<nn::flatten_op>();
  m.emplace<nn::int8_dense>(codes(8, 48, 132).cview(), scales(8, 133), vec(8, 134), quant::affine_params{0.03f, 0},
                            true);
  m.emplace<nn::int8_dense>(codes(4, 8, 135).cview(), scales(4, 136), vec(4, 137), quant::affine_params{0.02f, 0},
                            false);
  m.chain_int8();
  nn::save(m, p, no_sync());
}

/// Rewrites `src` into `dst` with qpr::save: the model JSON edited by
/// `edit_json` (or the raw metadata replaced by `raw`), tensors edited by
/// `edit_tensors` (entries point into `src` while it is open).
void resave(const std::filesystem::path& src, const std::filesystem::path& dst, const std::function<void(json&)>& edit_json,
            const std::function<void(std::vector<qpr::tensor_entry>&)>& edit_tensors = {},
            const std::optional<std::string>& raw = std::nullopt) {
  const qpr::file f = qpr::load(src);
  json j = json::parse(f.metadata().at(std::string(qpr::model_metadata_key)));
  if (edit_json) edit_json(j);
  std::vector<qpr::tensor_entry> es;
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const qpr::tensor_ref r = f.tensor(i);
    qpr::tensor_entry e;
    e.info = *r.info;
    e.sections = r.sections;
    es.push_back(std::move(e));
  }
  if (edit_tensors) edit_tensors(es);
  qpr::metadata_map meta;
  meta[std::string(qpr::model_metadata_key)] = raw ? *raw : j.dump();
  qpr::save(dst, es, meta, no_sync());
}

void erase_tensor(std::vector<qpr::tensor_entry>& es, const std::string& name) {
  std::erase_if(es, [&](const qpr::tensor_entry& e) { return e.info.name == name; });
}

/// Expects load_model(p) to throw io_error whose message contains every part.
void expect_load_error(const std::filesystem::path& p, std::initializer_list<std::string> parts) {
  try {
    static_cast<void>(nn::load_model(p));
    ADD_FAILURE() << "load_model did not throw";
  } catch (const io_error& e) {
    const std::string msg = e.what();
    for (const auto& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
  }
}

TEST_F(ModelFile, ReferenceFileLoads) {
  save_reference(path("ref.qpr"));
  resave(path("ref.qpr"), path("same.qpr"), {});
  auto a = nn::load_model(path("ref.qpr"));
  auto b = nn::load_model(path("same.qpr"));
  const auto x = normal(2, 32, 138);
  const auto want = a.forward(x.cview());
  expect_bits_eq(b.forward(x.cview()), want);
  // From bytes in memory (64-byte aligned, as file::from_bytes requires).
  aligned_vector<std::byte> bytes(std::filesystem::file_size(path("ref.qpr")));
  std::FILE* in = std::fopen(path("ref.qpr").c_str(), "rb");
  ASSERT_NE(in, nullptr);
  ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), in), bytes.size());
  std::fclose(in);
  const qpr::file f = qpr::file::from_bytes(bytes);
  auto c = nn::load_model(f);
  expect_bits_eq(c.forward(x.cview()), want);
}

TEST_F(ModelFile, MetadataErrors) {
  save_reference(path("ref.qpr"));
  // No metadata at all.
  const std::vector<float> v{1.0f, 2.0f};
  qpr::save(path("plain.qpr"), {qpr::entry("x", std::span<const float>(v))}, {}, no_sync());
  expect_load_error(path("plain.qpr"), {"plain.qpr", "no 'qprune.model' metadata"});
  // Not JSON, nested too deep, duplicate keys, not an object.
  resave(path("ref.qpr"), path("bad.qpr"), {}, {}, std::string("{\"format\": \"qprune.deployed\", "));
  expect_load_error(path("bad.qpr"), {"not valid JSON"});
  resave(path("ref.qpr"), path("deep.qpr"), {}, {}, std::string("[[[[[[[[[[1]]]]]]]]]]"));
  expect_load_error(path("deep.qpr"), {"nested deeper"});
  resave(path("ref.qpr"), path("dup.qpr"), {}, {}, std::string("{\"format\": 1, \"format\": 2}"));
  expect_load_error(path("dup.qpr"), {"'format' twice"});
  resave(path("ref.qpr"), path("arr.qpr"), {}, {}, std::string("[1, 2]"));
  expect_load_error(path("arr.qpr"), {"expected a JSON object"});
  // Format name and version.
  resave(path("ref.qpr"), path("fmt.qpr"), [](json& j) { j["format"] = "qprune.parameters"; });
  expect_load_error(path("fmt.qpr"), {"\"format\" is \"qprune.parameters\"", "nn::load_parameters"});
  resave(path("ref.qpr"), path("ver.qpr"), [](json& j) { j["version"] = 2; });
  expect_load_error(path("ver.qpr"), {"unsupported \"version\" 2 (expected 1)"});
  resave(path("ref.qpr"), path("nover.qpr"), [](json& j) { j.erase("version"); });
  expect_load_error(path("nover.qpr"), {"no \"version\""});
  resave(path("ref.qpr"), path("ops.qpr"), [](json& j) { j["ops"] = 3; });
  expect_load_error(path("ops.qpr"), {"\"ops\" is 3 (expected an array)"});
}

TEST_F(ModelFile, OpErrors) {
  save_reference(path("ref.qpr"));
  resave(path("ref.qpr"), path("kind.qpr"), [](json& j) { j["ops"][2]["kind"] = "dense.int9"; });
  expect_load_error(path("kind.qpr"), {"op 2", "unknown kind \"dense.int9\""});
  resave(path("ref.qpr"), path("relu.qpr"), [](json& j) { j["ops"][0].erase("relu"); });
  expect_load_error(path("relu.qpr"), {"op 0 (conv2d.f32)", "no \"relu\""});
  resave(path("ref.qpr"), path("relu2.qpr"), [](json& j) { j["ops"][0]["relu"] = 1; });
  expect_load_error(path("relu2.qpr"), {"\"relu\" is 1 (expected true or false)"});
  resave(path("ref.qpr"), path("zp.qpr"), [](json& j) { j["ops"][2]["input_quant"]["zero_point"] = 300; });
  expect_load_error(path("zp.qpr"), {"op 2 (dense.int8)", "\"zero_point\" is 300"});
  resave(path("ref.qpr"), path("scale.qpr"), [](json& j) { j["ops"][2]["output_quant"]["scale"] = -0.5; });
  expect_load_error(path("scale.qpr"), {"op 2 (dense.int8)", "\"output_quant\" has scale -0.5"});
  resave(path("ref.qpr"), path("scale2.qpr"), [](json& j) { j["ops"][3]["input_quant"]["scale"] = 1e300; });
  expect_load_error(path("scale2.qpr"), {"op 3", "expected a finite float32 value"});
  resave(path("ref.qpr"), path("geom.qpr"), [](json& j) { j["ops"][0]["geometry"]["stride_h"] = 0; });
  expect_load_error(path("geom.qpr"), {"op 0 (conv2d.f32)", "\"stride_h\" is 0"});
  resave(path("ref.qpr"), path("geom2.qpr"), [](json& j) { j["ops"][0]["geometry"]["groups"] = 2; });
  expect_load_error(path("geom2.qpr"), {"op 0 (conv2d.f32)", "does not divide"});
  resave(path("ref.qpr"), path("tens.qpr"), [](json& j) { j["ops"][2]["tensors"]["weight"] = 7; });
  expect_load_error(path("tens.qpr"), {"op 2", "tensor \"weight\" is 7"});
}

TEST_F(ModelFile, TensorErrors) {
  save_reference(path("ref.qpr"));
  // A tensor is missing.
  resave(path("ref.qpr"), path("drop.qpr"), {}, [](auto& es) { erase_tensor(es, "2.weight"); });
  expect_load_error(path("drop.qpr"), {"op 2 (dense.int8)", "'2.weight' is not in the file"});
  resave(path("ref.qpr"), path("dropb.qpr"), {}, [](auto& es) { erase_tensor(es, "3.bias"); });
  expect_load_error(path("dropb.qpr"), {"op 3 (dense.int8)", "'3.bias' is not in the file"});
  // Wrong dtype: the int8 weights replaced by float32 of the same shape.
  const tensor<float, 2> f32(8, 48);
  resave(path("ref.qpr"), path("dtype.qpr"), {}, [&](auto& es) {
    erase_tensor(es, "2.weight");
    es.push_back(qpr::entry("2.weight", f32.cview()));
  });
  expect_load_error(path("dtype.qpr"), {"op 2 (dense.int8)", "'2.weight' is f32 dense [8, 48]", "expected int8 dense"});
  // Wrong bias length.
  const std::vector<float> b9(9, 0.0f);
  resave(path("ref.qpr"), path("bias.qpr"), {}, [&](auto& es) {
    erase_tensor(es, "2.bias");
    es.push_back(qpr::entry("2.bias", std::span<const float>(b9)));
  });
  expect_load_error(path("bias.qpr"), {"op 2 (dense.int8)", "'2.bias' is f32 dense [9]", "expected f32 dense [8]"});
  // Conv filters of another shape.
  const tensor<float, 2> w(3, 17);
  resave(path("ref.qpr"), path("conv.qpr"), {}, [&](auto& es) {
    erase_tensor(es, "0.weight");
    es.push_back(qpr::entry("0.weight", w.cview()));
  });
  expect_load_error(path("conv.qpr"), {"op 0 (conv2d.f32)", "[3, 17]", "expected f32 dense [3, 3, 3, 2]"});
}

TEST_F(ModelFile, InconsistentShapesBetweenOps) {
  save_reference(path("ref.qpr"));
  resave(path("ref.qpr"), path("in.qpr"), [](json& j) { j["input"]["channels"] = 3; });
  expect_load_error(path("in.qpr"), {"op 0 (conv2d.f32)", "takes 4 x 4 x 2 inputs but the previous op produces 4 x 4 x 3"});
  // Without the flatten the Dense still sees 48 features; removing the conv does not.
  resave(path("ref.qpr"), path("noconv.qpr"), [](json& j) { j["ops"].erase(0); });
  expect_load_error(path("noconv.qpr"), {"op 1 (dense.int8)", "take 48 input features but the previous op produces 32"});
  resave(path("ref.qpr"), path("pool.qpr"), [](json& j) {
    j["ops"][1] = json{{"kind", "max_pool2d"}, {"window", 5}, {"stride", 1}};
  });
  expect_load_error(path("pool.qpr"), {"op 1 (max_pool2d)", "window 5 is larger than its input 4 x 4"});
}

TEST_F(ModelFile, ChecksumErrorIsReported) {
  save_reference(path("ref.qpr"));
  const qpr::file f = qpr::load(path("ref.qpr"));
  const auto off = info(f, "2.weight").offset;
  std::vector<char> bytes(std::filesystem::file_size(path("ref.qpr")));
  {
    std::FILE* in = std::fopen(path("ref.qpr").c_str(), "rb");
    ASSERT_NE(in, nullptr);
    ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), in), bytes.size());
    std::fclose(in);
  }
  bytes[off + 3] = static_cast<char>(bytes[off + 3] ^ 0x10);
  std::FILE* out = std::fopen(path("crc.qpr").c_str(), "wb");
  ASSERT_NE(out, nullptr);
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), out), bytes.size());
  std::fclose(out);
  expect_load_error(path("crc.qpr"), {"op 2 (dense.int8)", "checksum mismatch"});
}

class custom_op final : public nn::op {
 public:
  std::string kind() const override { return "custom"; }
  void forward(const nn::activation& in, nn::activation& out) override { out = in; }
};

TEST_F(ModelFile, SavingAnUnknownOpClassThrowsAndWritesNothing) {
  nn::deployed_model m(1, 1, 4);
  m.emplace<nn::relu_op>();
  m.emplace<custom_op>();
  try {
    nn::save(m, path("x.qpr"), no_sync());
    ADD_FAILURE() << "save did not throw";
  } catch (const config_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot save op 1 ('custom')"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path("x.qpr")));
}

// ---------------------------------------------------------------------------
// Parameter files
// ---------------------------------------------------------------------------

template <class Net, class X>
tensor<float, 2> eval_forward(Net& net, const X& x) {
  net.set_mode(nn::mode::eval);
  auto y = net.forward(x);
  if constexpr (decltype(y)::rank() == 2) {
    return y;
  } else {
    return tensor<float, 2>(extents<2>(y.extent(0), y.size() / y.extent(0)),
                            std::span<const float>(y.data(), static_cast<std::size_t>(y.size())));
  }
}

template <std::size_t R>
bool same_bits(const tensor<float, R>& a, const tensor<float, R>& b) {
  return a.size() == b.size() &&
         std::equal(a.data(), a.data() + a.size(), b.data(),
                    [](float x, float y) { return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y); });
}

TEST_F(ModelFile, ParametersOfPrunedMlpWithQatLayerRoundTrip) {
  SCOPED_TRACE(test::seed_trace());
  auto a = make_mlp(1);
  const auto x = normal(6, 24, 140);
  // Train-mode forwards: the QAT layer observes its inputs (moving average over two batches).
  static_cast<void>(a.forward(x.cview()));
  static_cast<void>(a.forward(normal(4, 24, 141).cview()));
  ASSERT_TRUE(a.get<4>().activation_quantizer().calibrated());
  EXPECT_NEAR(a.get<0>().mask().sparsity(), 0.5, 1e-9);
  nn::save_parameters(path("mlp.qpr"), a, no_sync());

  auto b = make_mlp(2);
  ASSERT_FALSE(same_bits(b.get<0>().weight(), a.get<0>().weight()));
  ASSERT_FALSE(b.get<0>().mask() == a.get<0>().mask());
  nn::load_parameters(path("mlp.qpr"), b);
  EXPECT_TRUE(same_bits(b.get<0>().weight(), a.get<0>().weight()));
  EXPECT_TRUE(same_bits(b.get<2>().bias(), a.get<2>().bias()));
  EXPECT_TRUE(b.get<0>().mask() == a.get<0>().mask());
  EXPECT_TRUE(b.get<2>().mask() == a.get<2>().mask());
  const auto& qa = a.get<4>().activation_quantizer();
  const auto& qb = b.get<4>().activation_quantizer();
  ASSERT_TRUE(qb.calibrated());
  EXPECT_EQ(qb.observer().min(), qa.observer().min());
  EXPECT_EQ(qb.observer().max(), qa.observer().max());
  EXPECT_EQ(qb.params(), qa.params());
  const auto want = eval_forward(a, x.cview());
  expect_informative(want);
  expect_bits_eq(eval_forward(b, x.cview()), want);

  // An uncalibrated quantizer is restored as uncalibrated.
  auto c = make_mlp(3);
  nn::save_parameters(path("fresh.qpr"), c, no_sync());
  nn::load_parameters(path("fresh.qpr"), b);
  EXPECT_FALSE(b.get<4>().activation_quantizer().calibrated());
  expect_bits_eq(eval_forward(b, x.cview()), eval_forward(c, x.cview()));

  const qpr::file f = qpr::load(path("mlp.qpr"));
  EXPECT_EQ(info(f, "0.mask").type, qpr::dtype::uint8);
  EXPECT_EQ(info(f, "0.weight").shape, (std::vector<index_t>{16, 24}));
  EXPECT_EQ(info(f, "4.input_range").shape, (std::vector<index_t>{2}));
  EXPECT_EQ(f.find("4.mask"), nullptr);
}

TEST_F(ModelFile, ParametersOfCnnWithBatchNormRoundTrip) {
  SCOPED_TRACE(test::seed_trace());
  auto a = make_cnn(1);
  randomize_bn(a.get<1>(), 150);
  nn::save_parameters(path("cnn.qpr"), a, no_sync());
  auto b = make_cnn(2);
  nn::load_parameters(path("cnn.qpr"), b);
  EXPECT_TRUE(same_bits(b.get<1>().running_var(), a.get<1>().running_var()));
  EXPECT_TRUE(same_bits(b.get<1>().gamma(), a.get<1>().gamma()));
  EXPECT_TRUE(b.get<0>().mask() == a.get<0>().mask());
  const auto x = images(3, 151);
  const auto want = eval_forward(a, x);
  expect_informative(want);
  expect_bits_eq(eval_forward(b, x), want);

  const qpr::file f = qpr::load(path("cnn.qpr"));
  EXPECT_EQ(info(f, "0.weight").shape, (std::vector<index_t>{6, 3, 3, 3}));
  EXPECT_EQ(info(f, "0.mask").shape, (std::vector<index_t>{6, 3, 3, 3}));
  EXPECT_EQ(info(f, "1.running_mean").shape, (std::vector<index_t>{6}));
  const json j = json::parse(f.metadata().at(std::string(qpr::model_metadata_key)));
  EXPECT_EQ(j["format"], "qprune.parameters");
  EXPECT_EQ(j["layers"][0]["padding"], json::array({1, 1, 1, 1}));
  EXPECT_EQ(j["layers"][6]["count_include_pad"], true);
}

/// Expects load_parameters to throw io_error with every part in its message.
template <class Net>
void expect_param_error(const std::filesystem::path& p, Net& net, std::initializer_list<std::string> parts) {
  try {
    nn::load_parameters(p, net);
    ADD_FAILURE() << "load_parameters did not throw";
  } catch (const io_error& e) {
    const std::string msg = e.what();
    for (const auto& s : parts) EXPECT_NE(msg.find(s), std::string::npos) << "'" << s << "' not in: " << msg;
  }
}

TEST_F(ModelFile, ParametersRejectAnotherArchitectureAndLeaveTheNetworkUnchanged) {
  auto a = make_mlp(1);
  static_cast<void>(a.forward(normal(4, 24, 160).cview()));  // calibrates the QAT layer: "4.input_range"
  nn::save_parameters(path("mlp.qpr"), a, no_sync());
  // Other hidden size.
  auto wide = make_mlp(2, 20);
  expect_param_error(path("mlp.qpr"), wide, {"layer 0 (dense)", "\"out_features\" is 16 in the file and 20 in the network"});
  // Another network type.
  auto cnn = make_cnn(2);
  expect_param_error(path("mlp.qpr"), cnn, {"the file has 5 layers and the network 9"});
  // Unpruned layers where the file has masks.
  nn::init_rng rng(4);
  nn::sequential<nn::dense<>, nn::relu, pdense, nn::relu, qatdense> unpruned(
      nn::dense<>({24, 16}, rng), nn::relu{}, pdense({16, 12}, rng), nn::relu{}, qatdense({12, 5}, rng));
  expect_param_error(path("mlp.qpr"), unpruned, {"layer 0 (dense)", "\"masked\" is true in the file and false"});
  // A deployed model file.
  save_reference(path("ref.qpr"));
  expect_param_error(path("ref.qpr"), a, {"\"format\" is \"qprune.deployed\"", "nn::load_model"});
  // A parameter file given to load_model.
  expect_load_error(path("mlp.qpr"), {"nn::load_parameters"});

  // Corruptions in the last layer: the network keeps its own values.
  auto b = make_mlp(5);
  const tensor<float, 2> w0 = b.get<0>().weight();
  const auto m0 = b.get<0>().mask();
  resave(path("mlp.qpr"), path("dtype.qpr"), {}, [](auto& es) {
    for (auto& e : es) {
      if (e.info.name == "4.input_range") e.info.type = qpr::dtype::int8, e.info.shape = {8};
    }
  });
  expect_param_error(path("dtype.qpr"), b, {"layer 4 (dense)", "'4.input_range' is int8 dense [8]"});
  EXPECT_TRUE(same_bits(b.get<0>().weight(), w0));
  EXPECT_TRUE(b.get<0>().mask() == m0);
  // A mask with a value other than 0 and 1.
  std::vector<std::uint8_t> bad(16 * 12, 1);
  bad[7] = 2;
  resave(path("mlp.qpr"), path("mask.qpr"), {}, [&](auto& es) {
    for (auto& e : es) {
      if (e.info.name == "2.mask") e.sections[0] = std::as_bytes(std::span<const std::uint8_t>(bad));
    }
  });
  expect_param_error(path("mask.qpr"), b, {"layer 2 (dense)", "holds the value 2 (expected 0 or 1)"});
  resave(path("mlp.qpr"), path("drop.qpr"), {}, [](auto& es) { erase_tensor(es, "2.bias"); });
  expect_param_error(path("drop.qpr"), b, {"layer 2 (dense)", "'2.bias' is not in the file"});
  resave(path("mlp.qpr"), path("kind.qpr"), [](json& j) { j["layers"][1]["kind"] = "relu6"; });
  expect_param_error(path("kind.qpr"), b, {"layer 1", "is a relu6 layer in the file and a relu layer in the network"});
  EXPECT_TRUE(same_bits(b.get<0>().weight(), w0));
}

}  // namespace

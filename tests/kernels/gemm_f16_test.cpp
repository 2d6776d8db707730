// fp16 / bf16-weight GEMM: every path this CPU supports against the scalar
// twin, bit for bit (each output accumulates with fma in k order on every
// path), and against a double-precision product within the rounding of the
// weights.
#include "qprune/kernels/gemm_f16.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "support/random.hpp"

namespace {

using qprune::bfloat16;
using qprune::half;
using qprune::index_t;
using qprune::tensor;
using qprune::kernels::isa;

template <class H>
void check(isa path, index_t m, index_t n, index_t k, bool with_bias, bool relu, std::uint64_t salt) {
  SCOPED_TRACE("isa=" + std::string(qprune::kernels::to_string(path)) + " M=" + std::to_string(m) +
               " N=" + std::to_string(n) + " K=" + std::to_string(k) + " " + qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  tensor<float, 2> x(m, k), w(n, k);
  for (auto& v : x.span()) v = nd(rng);
  for (auto& v : w.span()) v = nd(rng) * 0.05f;
  std::vector<float> bias(with_bias ? static_cast<std::size_t>(n) : 0);
  for (auto& v : bias) v = nd(rng);
  const auto packed = qprune::kernels::pack_f16<H>(w.cview(), path);
  tensor<float, 2> got(m, n), want(m, n);
  qprune::kernels::gemm_f16<H>(x.cview(), packed, bias, relu, got.view());
  std::vector<H> wh(static_cast<std::size_t>(n * k));
  for (index_t i = 0; i < n * k; ++i) wh[static_cast<std::size_t>(i)] = H(w.data()[i]);
  qprune::kernels::reference::gemm_f16(m, n, k, x.data(), k, wh.data(), k,
                                       with_bias ? bias.data() : nullptr, relu, want.data(), n);
  for (index_t i = 0; i < m * n; ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(got.data()[i]), std::bit_cast<std::uint32_t>(want.data()[i]))
        << "element " << i;
  }
  // Against double precision with the rounded weights: only float accumulation error remains.
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      double acc = 0, mag = 0;
      for (index_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(x(i, p)) * static_cast<float>(wh[static_cast<std::size_t>(j * k + p)]);
        acc += t;
        mag += std::abs(t);
      }
      if (with_bias) acc += bias[static_cast<std::size_t>(j)];
      if (relu) acc = std::max(acc, 0.0);
      ASSERT_NEAR(got(i, j), acc, 1e-6 * (mag + 1.0) * static_cast<double>(k + 1));
    }
  }
}

class GemmF16 : public ::testing::TestWithParam<isa> {};

TEST_P(GemmF16, HalfWeightsEdgeShapes) {
  std::uint64_t salt = 10;
  for (index_t m : {1, 2, 3, 5, 8, 9, 17})
    for (index_t n : {1, 7, 8, 15, 16, 17, 33, 64, 97})
      for (index_t k : {1, 2, 13, 64})
        check<half>(GetParam(), m, n, k, (n % 2) == 1, (m % 2) == 0, ++salt);
}

TEST_P(GemmF16, Bf16WeightsEdgeShapes) {
  std::uint64_t salt = 500;
  for (index_t m : {1, 3, 16})
    for (index_t n : {1, 9, 31, 48})
      for (index_t k : {1, 7, 100})
        check<bfloat16>(GetParam(), m, n, k, true, false, ++salt);
}

TEST_P(GemmF16, EmptyAndLarge) {
  check<half>(GetParam(), 0, 5, 7, true, false, 1);
  check<half>(GetParam(), 3, 0, 7, false, false, 2);
  check<half>(GetParam(), 3, 5, 0, true, true, 3);
  check<half>(GetParam(), 33, 257, 300, true, true, 4);
  // Fewer than four rows run over eight, then four panels at a time (N = 257:
  // 8 + 8 + 1 panels of 16; N = 200: 8 + 4 + 1).
  for (index_t m : {1, 2, 3}) {
    check<half>(GetParam(), m, 257, 70, true, m == 2, 40 + static_cast<std::uint64_t>(m));
    check<bfloat16>(GetParam(), m, 200, 33, m != 2, false, 50 + static_cast<std::uint64_t>(m));
  }
}

TEST_P(GemmF16, TwoThreadsGiveIdenticalResults) {
  qprune::kernels::set_num_threads(2);
  check<half>(GetParam(), 64, 512, 256, true, false, 5);
  check<bfloat16>(GetParam(), 1, 1024, 1024, true, true, 6);
  // Few output channels: the rows are split instead.
  check<half>(GetParam(), 203, 40, 300, true, false, 7);
  qprune::kernels::set_num_threads(1);
}

INSTANTIATE_TEST_SUITE_P(AllSupported, GemmF16, ::testing::ValuesIn(qprune::kernels::supported_isas()),
                         [](const ::testing::TestParamInfo<isa>& p) {
                           return std::string(qprune::kernels::to_string(p.param));
                         });

TEST(GemmF16Api, RejectsBadShapes) {
  tensor<float, 2> w(4, 8), x(3, 8), xb(3, 9), y(3, 4), yb(2, 4);
  const auto packed = qprune::kernels::pack_f16<half>(w.cview());
  std::vector<float> bias(4), bad_bias(3);
  EXPECT_THROW(qprune::kernels::gemm_f16<half>(xb.cview(), packed, bias, false, y.view()), qprune::shape_error);
  EXPECT_THROW(qprune::kernels::gemm_f16<half>(x.cview(), packed, bias, false, yb.view()), qprune::shape_error);
  EXPECT_THROW(qprune::kernels::gemm_f16<half>(x.cview(), packed, bad_bias, false, y.view()), qprune::shape_error);
}

}  // namespace

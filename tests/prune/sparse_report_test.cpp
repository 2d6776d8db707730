// Tests for prune/report.hpp: choose_format against hand-counted bytes of
// every candidate (ties included), reports of built storages and of chosen
// formats, the printers' exact text, and the done-when check: a
// 1024x1024 layer pruned to 90% stored in <= 15% (fp16) / <= 12% (int8) of its
// dense fp32 bytes, as the storages' own bytes() report.
#include "qprune/prune/report.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "qprune/core/tensor.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "support/random.hpp"

namespace {

using qprune::config_error;
using qprune::half;
using qprune::index_t;
using qprune::shape_error;
using qprune::tensor;
namespace prune = qprune::prune;
using prune::bitmask_matrix;
using prune::csr_matrix;
using prune::format_options;
using prune::packed_nm_matrix;
using prune::storage_format;
using prune::value_kind;

tensor<float, 2> make(index_t rows, index_t cols, std::initializer_list<float> v) {
  return tensor<float, 2>(qprune::extents<2>(rows, cols), v);
}

// 3x5 with 4 kept entries (2:4-compatible).
tensor<float, 2> small_matrix() {
  return make(3, 5, {1.0f, 0.0f, 0.0f, -2.0f, 0.0f,  //
                     0.0f, 0.0f, 0.0f, 0.0f, 0.5f,   //
                     0.0f, 3.0f, 0.0f, 0.0f, 0.0f});
}

// 8x64 with exactly one nonzero in every group of 4 (1:4), at column (r + g) % 4.
tensor<float, 2> one_in_four() {
  tensor<float, 2> w(8, 64);
  for (index_t r = 0; r < 8; ++r)
    for (index_t g = 0; g < 16; ++g) w(r, 4 * g + (r + g) % 4) = 1.0f + static_cast<float>(r + g);
  return w;
}

TEST(ChooseFormat, SmallestByExactBytes) {
  // fp16, 3x5, nnz 4: dense 30; csr 8 + 8 + 4 + 16 = 36; bitmask 2 + 8 = 10;
  // packed 2:4 2 + 24 + 3 = 29; 2:8 / 2:16 (6 slots) 2 + 12 + 3 = 17.
  const auto c = prune::choose_format(small_matrix(), value_kind::fp16);
  EXPECT_EQ(c.format, storage_format::bitmask);
  EXPECT_EQ(c.nnz, 4);
  EXPECT_EQ(c.bytes.total(), 10);
  EXPECT_EQ(c.n, 0);
  format_options no_bitmask;
  no_bitmask.allow_bitmask = false;
  const auto d = prune::choose_format(small_matrix(), value_kind::fp16, no_bitmask);
  EXPECT_EQ(d.format, storage_format::packed_nm);
  EXPECT_EQ(d.n, 2);
  EXPECT_EQ(d.m, 8);  // 2:8 and 2:16 both take 17 bytes: the smaller M wins the tie
  EXPECT_EQ(d.bytes.total(), 17);
  EXPECT_EQ(packed_nm_matrix<half>::from_dense(small_matrix(), 2, 8).bytes(), 17);
}

TEST(ChooseFormat, DenseWhenNothingIsPruned) {
  // fp32 3x5 all nonzero: dense 60; bitmask 2 + 60; csr 8 + 60 + 15 + 16; 5:8 2 + 60 + 6.
  const tensor<float, 2> w(qprune::extents<2>(3, 5), 0.25f);
  const auto c = prune::choose_format(w, value_kind::fp32);
  EXPECT_EQ(c.format, storage_format::dense);
  EXPECT_EQ(c.bytes.total(), 60);
  format_options sparse_only;
  sparse_only.allow_dense = false;
  EXPECT_EQ(prune::choose_format(w, value_kind::fp32, sparse_only).bytes.total(), 62);
  // int8 dense counts its scales: 15 + 12.
  EXPECT_EQ(prune::choose_format(w, value_kind::int8).bytes.total(), 27);
}

TEST(ChooseFormat, TiesGoToTheEarlierFormat) {
  // fp16 1x16 with one zero: dense 32 == bitmask 2 + 30; dense comes first.
  tensor<float, 2> w(qprune::extents<2>(1, 16), 1.0f);
  w(0, 5) = 0.0f;
  const auto c = prune::choose_format(w, value_kind::fp16);
  EXPECT_EQ(c.format, storage_format::dense);
  EXPECT_EQ(c.bytes.total(), 32);
  format_options o;
  o.allow_dense = false;
  const auto d = prune::choose_format(w, value_kind::fp16, o);
  EXPECT_EQ(d.format, storage_format::bitmask);
  EXPECT_EQ(d.bytes.total(), 32);
  EXPECT_EQ(bitmask_matrix<half>::from_dense(w).bytes(), 32);
}

TEST(ChooseFormat, PackedNmWhenThePatternIsRegular) {
  // fp16 8x64, 1:4: packed 1:4 2 + 256 + 32 = 290 < 2:8 306 < bitmask 320 < 4:16 322 < csr 428.
  const auto w = one_in_four();
  const auto c = prune::choose_format(w, value_kind::fp16);
  EXPECT_EQ(c.format, storage_format::packed_nm);
  EXPECT_EQ(c.n, 1);
  EXPECT_EQ(c.m, 4);
  EXPECT_EQ(c.bytes.total(), 290);
  EXPECT_EQ(packed_nm_matrix<half>::from_dense(w, 1, 4).bytes(), 290);
  EXPECT_EQ(bitmask_matrix<half>::from_dense(w).bytes(), 320);
  EXPECT_EQ(csr_matrix<half>::from_dense(w).bytes(), 428);
  format_options only8;
  only8.nm_group_sizes = {8};
  const auto d = prune::choose_format(w, value_kind::fp16, only8);
  EXPECT_EQ(d.m, 8);
  EXPECT_EQ(d.n, 2);
  EXPECT_EQ(d.bytes.total(), 306);
  // Without N:M candidates the bitmask wins.
  format_options none;
  none.nm_group_sizes.clear();
  EXPECT_EQ(prune::choose_format(w, value_kind::fp16, none).format, storage_format::bitmask);
}

TEST(ChooseFormat, MaskDecidesTheKeptEntries) {
  // All weights nonzero; the mask keeps the 1:4 pattern of one_in_four().
  const auto p = one_in_four();
  tensor<float, 2> w(qprune::extents<2>(8, 64), 0.5f);
  tensor<std::uint8_t, 2> mask(8, 64);
  for (index_t i = 0; i < p.size(); ++i) mask.data()[i] = p.data()[i] != 0.0f ? 1 : 0;
  const auto c = prune::choose_format(w, mask, value_kind::fp16);
  EXPECT_EQ(c.format, storage_format::packed_nm);
  EXPECT_EQ(c.n, 1);
  EXPECT_EQ(c.nnz, 128);
  const auto r = prune::make_report("masked", w, mask, value_kind::fp16);
  EXPECT_EQ(r.stored_bytes, packed_nm_matrix<half>::from_dense(w, mask, 1, 4).bytes());
  EXPECT_THROW(static_cast<void>(prune::choose_format(w, tensor<std::uint8_t, 2>(8, 63),
                                                      value_kind::fp16)),
               shape_error);
}

TEST(ChooseFormat, BadOptions) {
  const auto w = small_matrix();
  format_options o;
  o.nm_group_sizes = {4, 17};
  EXPECT_THROW(static_cast<void>(prune::choose_format(w, value_kind::fp32, o)), config_error);
  o.nm_group_sizes = {1};
  EXPECT_THROW(static_cast<void>(prune::choose_format(w, value_kind::fp32, o)), config_error);
  format_options nothing{false, false, false, {}};
  try {
    static_cast<void>(prune::choose_format(w, value_kind::fp32, nothing));
    ADD_FAILURE() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_STREQ(e.what(),
                 "[qprune.config] no storage format is allowed (expected at least one candidate)");
  }
}

TEST(StorageBytes, DispatchAndErrors) {
  EXPECT_EQ(prune::storage_bytes(storage_format::csr, value_kind::int8, 3, 5, 4).total(), 44);
  EXPECT_EQ(prune::storage_bytes(storage_format::bitmask, value_kind::fp16, 3, 5, 4).total(), 10);
  EXPECT_EQ(
      prune::storage_bytes(storage_format::packed_nm, value_kind::fp32, 3, 5, 4, 2, 4).total(),
      53);
  EXPECT_EQ(prune::storage_bytes(storage_format::dense, value_kind::fp16, 3, 5, 4).total(), 30);
  EXPECT_THROW(static_cast<void>(prune::storage_bytes(storage_format::packed_nm,
                                                      value_kind::fp32, 3, 5, 4, 4, 4)),
               config_error);
  EXPECT_THROW(static_cast<void>(
                   prune::storage_bytes(storage_format::csr, value_kind::fp32, 3, 5, 16)),
               shape_error);
  EXPECT_THROW(static_cast<void>(
                   prune::storage_bytes(storage_format::csr, value_kind::fp32, -1, 5, 0)),
               shape_error);
}

TEST(SparseReport, OfABuiltStorage) {
  const auto r = prune::make_report("fc1", csr_matrix<half>::from_dense(small_matrix()));
  EXPECT_EQ(r.name, "fc1");
  EXPECT_EQ(r.rows, 3);
  EXPECT_EQ(r.cols, 5);
  EXPECT_EQ(r.nnz, 4);
  EXPECT_DOUBLE_EQ(r.sparsity, 11.0 / 15.0);
  EXPECT_EQ(r.format, storage_format::csr);
  EXPECT_EQ(r.format_name(), "csr");
  EXPECT_EQ(r.values, value_kind::fp16);
  EXPECT_EQ(r.dense_fp32_bytes, 60);
  EXPECT_EQ(r.stored_bytes, 36);
  EXPECT_DOUBLE_EQ(r.ratio, 36.0 / 60.0);
  EXPECT_EQ(r.bytes.indices, 4);

  const auto p = prune::make_report("p", packed_nm_matrix<std::int8_t>::from_dense(small_matrix(), 2, 4));
  EXPECT_EQ(p.format_name(), "packed 2:4");
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.m, 4);
  EXPECT_EQ(p.stored_bytes, 29);
  EXPECT_EQ(p.values, value_kind::int8);

  const auto e = prune::make_report("empty", bitmask_matrix<float>::from_dense(tensor<float, 2>(0, 4)));
  EXPECT_EQ(e.sparsity, 0.0);
  EXPECT_EQ(e.ratio, 0.0);
  EXPECT_EQ(e.stored_bytes, 0);
}

TEST(SparseReport, OfTheChosenFormatAgreesWithTheStorage) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(77);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (const double density : {0.02, 0.3, 0.6, 0.97}) {
    tensor<float, 2> w(23, 301);
    for (float& v : w.span()) v = u(rng) < density ? nd(rng) : 0.0f;
    for (const value_kind v : {value_kind::fp32, value_kind::fp16, value_kind::int8}) {
      const auto r = prune::make_report("w", w, v);
      SCOPED_TRACE(r.format_name() + " " + std::string(prune::to_string(v)));
      index_t built = -1;
      auto bytes_of = [&]<class V>() -> index_t {
        switch (r.format) {
          case storage_format::csr: return csr_matrix<V>::from_dense(w).bytes();
          case storage_format::bitmask: return bitmask_matrix<V>::from_dense(w).bytes();
          case storage_format::packed_nm:
            return packed_nm_matrix<V>::from_dense(w, r.n, r.m).bytes();
          case storage_format::dense:
            return prune::dense_bytes(v, 23, 301).total();
        }
        return -1;
      };
      if (v == value_kind::fp32) built = bytes_of.template operator()<float>();
      if (v == value_kind::fp16) built = bytes_of.template operator()<half>();
      if (v == value_kind::int8) built = bytes_of.template operator()<std::int8_t>();
      EXPECT_EQ(r.stored_bytes, built);
      // No candidate is smaller.
      EXPECT_LE(r.stored_bytes, prune::dense_bytes(v, 23, 301).total());
      EXPECT_LE(r.stored_bytes, prune::csr_bytes(v, 23, 301, r.nnz).total());
      EXPECT_LE(r.stored_bytes, prune::bitmask_bytes(v, 23, 301, r.nnz).total());
    }
  }
}

// Reports used by the printer tests: fc1 (bitmask fp16, 3x5) and conv2 (packed 1:4 fp16).
std::vector<prune::sparse_report> two_reports() {
  return {prune::make_report("fc1", small_matrix(), value_kind::fp16),
          prune::make_report("conv2.weight", one_in_four(), value_kind::fp16)};
}

TEST(SparseReport, OneLine) {
  std::ostringstream os;
  os << std::setprecision(3) << two_reports()[0];
  EXPECT_EQ(os.str(), "fc1 3x5 nnz=4 sparsity=73.33% bitmask fp16 60 -> 10 bytes (16.67%)");
  // The stream's own formatting is left alone.
  os.str("");
  os << 1.0 / 3.0;
  EXPECT_EQ(os.str(), "0.333");
}

TEST(SparseReport, Table) {
  std::ostringstream os;
  const auto reports = two_reports();
  prune::print_table(os, reports);
  EXPECT_EQ(os.str(),
            "name          shape  nnz  sparsity  format      values  dense bytes  stored bytes   ratio\n"
            "fc1             3x5    4    73.33%  bitmask     fp16             60            10  16.67%\n"
            "conv2.weight   8x64  128    75.00%  packed 1:4  fp16           2048           290  14.16%\n"
            "total                132    74.95%                             2108           300  14.23%\n");
  std::ostringstream empty;
  prune::print_table(empty, {});
  EXPECT_EQ(empty.str(),
            "name   shape  nnz  sparsity  format  values  dense bytes  stored bytes  ratio\n"
            "total           0     0.00%                            0             0  0.00%\n");
}

// ---------------------------------------------------------------------------
// The done-when check
// ---------------------------------------------------------------------------

TEST(DoneWhen, Layer1024PrunedTo90PercentShrinks) {
  SCOPED_TRACE(qprune::test::seed_trace());
  constexpr index_t n = 1024;
  constexpr index_t numel = n * n;
  // Magnitude pruning to exactly round(0.9 * 2^20) = 943718 zeros: keep the
  // 104858 largest |w| (ties broken by index; normal samples have none in practice).
  tensor<float, 2> w(n, n);
  auto rng = qprune::test::make_rng(1024);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (float& v : w.span()) {
    do v = nd(rng);
    while (v == 0.0f);
  }
  constexpr index_t keep = numel - 943718;
  std::vector<index_t> order(static_cast<std::size_t>(numel));
  std::iota(order.begin(), order.end(), index_t{0});
  const float* d = w.data();
  std::nth_element(order.begin(), order.begin() + keep, order.end(), [d](index_t a, index_t b) {
    const float fa = std::fabs(d[a]), fb = std::fabs(d[b]);
    return fa != fb ? fa > fb : a < b;
  });
  for (auto it = order.begin() + keep; it != order.end(); ++it) w.data()[*it] = 0.0f;
  index_t nnz = 0;
  for (float v : w.span()) nnz += v != 0.0f ? 1 : 0;
  ASSERT_EQ(nnz, 104858);

  const auto csr16 = csr_matrix<half>::from_dense(w);
  const auto bm16 = bitmask_matrix<half>::from_dense(w);
  const auto csr8 = csr_matrix<std::int8_t>::from_dense(w);
  const auto bm8 = bitmask_matrix<std::int8_t>::from_dense(w);
  std::vector<prune::sparse_report> reports{
      prune::make_report("fc 1024x1024 csr fp16", csr16),
      prune::make_report("fc 1024x1024 bitmask fp16", bm16),
      prune::make_report("fc 1024x1024 csr int8", csr8),
      prune::make_report("fc 1024x1024 bitmask int8", bm8),
      prune::make_report("fc 1024x1024 smallest fp16", w, value_kind::fp16),
      prune::make_report("fc 1024x1024 smallest int8", w, value_kind::int8)};
  prune::print_table(std::cout, reports);

  // Exact bytes (dense fp32: 4 MiB = 4194304):
  //   csr fp16      8 + 2*104858 values + 2*104858 uint16 columns + 1025*4 row pointers
  //   bitmask fp16  2^20/8 mask + 2*104858 values
  //   csr int8      8 + 104858 + 1024*4 scales + 2*104858 + 1025*4
  //   bitmask int8  131072 + 104858 + 1024*4
  EXPECT_EQ(csr16.bytes(), 423540);
  EXPECT_EQ(bm16.bytes(), 340788);
  EXPECT_EQ(csr8.bytes(), 322778);
  EXPECT_EQ(bm8.bytes(), 240026);
  EXPECT_EQ(reports[0].dense_fp32_bytes, 4194304);
  EXPECT_EQ(reports[0].sparsity, 943718.0 / 1048576.0);

  const auto& f16 = reports[4];
  EXPECT_EQ(f16.format, storage_format::bitmask);
  EXPECT_EQ(f16.stored_bytes, 340788);
  EXPECT_LE(f16.ratio, 0.15);  // 8.125%
  const auto& i8 = reports[5];
  EXPECT_EQ(i8.format, storage_format::bitmask);
  EXPECT_EQ(i8.stored_bytes, 240026);
  EXPECT_LE(i8.ratio, 0.12);  // 5.723%
  // Every sparse format alone meets the bound too.
  EXPECT_LE(reports[0].ratio, 0.15);
  EXPECT_LE(reports[2].ratio, 0.12);

  // And the storages are real: they reconstruct the pruned layer.
  tensor<float, 2> back(n, n);
  bm16.to_dense(back);
  for (index_t i = 0; i < numel; ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(back.data()[i]),
              std::bit_cast<std::uint32_t>(static_cast<float>(half(w.data()[i]))))
        << i;
  }
}

}  // namespace

// Tests of the .qpr file format (io/format.hpp): exact round trips of every
// dtype and encoding, views in place, dequantization against the library's own
// dequantizers, each named corruption, a byte-flip / truncation sweep, and
// atomic saving (a child killed with SIGKILL mid-save leaves the old file).
#include "qprune/io/format.hpp"
#include "qprune/quant/int8.hpp"
#ifdef QPRUNE_CLI
#include "qprune/io/array.hpp"
#include "qprune/io/npz.hpp"
#include "qprune/io/safetensors.hpp"
#endif

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "support/random.hpp"

namespace {

namespace fs = std::filesystem;
namespace qpr = qprune::io::qpr;
using qprune::index_t;
using qprune::io_error;

class QprTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qpr_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path path(const std::string& n) const { return dir_ / n; }
  fs::path dir_;
};

std::vector<std::uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_file(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
/// Recomputes the header CRC after a deliberate table edit.
void fix_header_crc(std::vector<std::uint8_t>& b) {
  std::uint64_t hlen = 0;
  std::memcpy(&hlen, b.data() + 16, 8);
  std::memset(b.data() + 40, 0, 4);
  const auto crc = static_cast<std::uint32_t>(crc32_z(0, b.data(), static_cast<std::size_t>(hlen)));
  std::memcpy(b.data() + 40, &crc, 4);
}
template <class T>
void put(std::vector<std::uint8_t>& b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}

qprune::tensor<float, 2> random_matrix(index_t r, index_t c, std::mt19937_64& rng, double zero_fraction = 0.0) {
  qprune::tensor<float, 2> w(r, c);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = u(rng) < zero_fraction ? 0.0f : d(rng);
  return w;
}

/// Keeps 2 of every 4 columns (the two largest |w|) so the matrix is 2:4 sparse.
void make_2_4(qprune::tensor<float, 2>& w) {
  for (index_t i = 0; i < w.extent(0); ++i)
    for (index_t g = 0; g < w.extent(1); g += 4) {
      for (int drop = 0; drop < 2; ++drop) {
        index_t best = -1;
        for (index_t c = g; c < std::min(g + 4, w.extent(1)); ++c)
          if (w(i, c) != 0.0f && (best < 0 || std::fabs(w(i, c)) < std::fabs(w(i, best)))) best = c;
        if (best >= 0 && std::min(g + 4, w.extent(1)) - g - drop > 2) w(i, best) = 0.0f;
      }
    }
}

template <class T>
bool same_bits(std::span<const T> a, std::span<const T> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

TEST_F(QprTest, DenseRoundTripEveryStorageType) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(1);
  qprune::tensor<float, 3> f(3, 5, 7);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (index_t i = 0; i < f.size(); ++i) f.data()[i] = d(rng);
  f.data()[0] = -0.0f;
  f.data()[1] = std::numeric_limits<float>::infinity();
  qprune::tensor<qprune::half, 2> h(4, 9);
  qprune::tensor<qprune::bfloat16, 1> bf(11);
  qprune::tensor<std::int8_t, 2> i8(2, 3);
  qprune::tensor<std::uint8_t, 4> u8(1, 2, 3, 4);
  for (index_t i = 0; i < h.size(); ++i) h.data()[i] = qprune::half::from_bits(static_cast<std::uint16_t>(rng()));
  for (index_t i = 0; i < bf.size(); ++i) bf.data()[i] = qprune::bfloat16(d(rng));
  for (index_t i = 0; i < i8.size(); ++i) i8.data()[i] = static_cast<std::int8_t>(rng());
  for (index_t i = 0; i < u8.size(); ++i) u8.data()[i] = static_cast<std::uint8_t>(rng());
  qprune::tensor<float, 2> empty(0, 5);

  qpr::save(path("a.qpr"),
            {qpr::entry("f", f), qpr::entry("h", h), qpr::entry("bf", bf), qpr::entry("i8", i8),
             qpr::entry("u8", u8), qpr::entry("empty", empty)},
            qpr::metadata_map{{"author", "test"}, {"k", ""}});
  const qpr::file file = qpr::load(path("a.qpr"), qpr::verify::eager);
  ASSERT_EQ(file.tensors().size(), 6u);
  EXPECT_EQ(file.metadata().at("author"), "test");
  EXPECT_EQ(file.metadata().at("k"), "");
  EXPECT_TRUE((qpr::load_tensor<float, 3>(file.tensor("f")) == f));
  EXPECT_TRUE((qpr::load_tensor<qprune::half, 2>(file.tensor("h")) == h));
  EXPECT_TRUE((qpr::load_tensor<qprune::bfloat16, 1>(file.tensor("bf")) == bf));
  EXPECT_TRUE((qpr::load_tensor<std::int8_t, 2>(file.tensor("i8")) == i8));
  EXPECT_TRUE((qpr::load_tensor<std::uint8_t, 4>(file.tensor("u8")) == u8));
  EXPECT_TRUE((qpr::load_tensor<float, 2>(file.tensor("empty")) == empty));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(qpr::load_tensor<float, 3>(file.tensor("f")).data()[0]), 0x80000000u);
  // Views point into the mapping, 64-byte aligned.
  const auto v = file.tensor("f").view<float, 3>();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.data_handle()) % 64, 0u);
  EXPECT_EQ(v(2, 4, 6), f(2, 4, 6));
  // Wrong type or rank: io_error.
  EXPECT_THROW(static_cast<void>(file.tensor("f").view<float, 2>()), io_error);
  EXPECT_THROW(static_cast<void>(file.tensor("f").values<qprune::half>()), io_error);
  EXPECT_THROW(static_cast<void>(file.tensor("nope")), io_error);
  // to_float widens f16 / bf16 exactly and gives integers as values.
  const auto hf = qpr::to_float(file.tensor("h"));
  for (index_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(hf[static_cast<std::size_t>(i)]),
              std::bit_cast<std::uint32_t>(static_cast<float>(h.data()[i])));
  }
  const auto i8f = qpr::to_float(file.tensor("i8"));
  for (index_t i = 0; i < i8.size(); ++i) EXPECT_EQ(i8f[static_cast<std::size_t>(i)], static_cast<float>(i8.data()[i]));
  // No temporaries left beside the file.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
}

TEST_F(QprTest, Int8WeightsRoundTripAndDequantize) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(2);
  const auto w = random_matrix(17, 33, rng);
  const qprune::quant::int8 q;
  const auto s = q.quantize(w.cview());
  qpr::save(path("w.qpr"), {qpr::entry("layer.weight", s)});
  const auto file = qpr::load(path("w.qpr"));
  const auto& info = file.tensors()[0];
  EXPECT_EQ(info.type, qpr::dtype::int8);
  EXPECT_EQ(info.quant, qpr::granularity::channel);
  EXPECT_EQ(info.qmin, -127);
  const auto back = qpr::load_int8_weights(file.tensor(0));
  EXPECT_TRUE(back.codes == s.codes);
  EXPECT_EQ(back.params, s.params);
  qprune::tensor<float, 2> expect(17, 33);
  q.dequantize(s, expect.view());
  const auto got = qpr::to_float(file.tensor(0));
  EXPECT_TRUE(same_bits<float>(got, expect.span()));
}

TEST_F(QprTest, PackedInt4RoundTripEveryScheme) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(3);
  const auto w = random_matrix(5, 71, rng);  // odd cols, partial last group
  for (auto scheme : {qprune::quant::int4_scheme::symmetric, qprune::quant::int4_scheme::symmetric_narrow,
                      qprune::quant::int4_scheme::affine}) {
    const auto m = qprune::quant::quantize_int4(w.cview(), 32, scheme);
    qpr::save(path("q4.qpr"), {qpr::entry("w", m)});
    const auto file = qpr::load(path("q4.qpr"), qpr::verify::eager);
    const auto back = qpr::load_packed_int4(file.tensor("w"));
    EXPECT_EQ(back.kind, m.kind);
    EXPECT_EQ(back.rows, m.rows);
    EXPECT_EQ(back.cols, m.cols);
    EXPECT_TRUE(back.codes == m.codes);
    EXPECT_EQ(back.params, m.params);
    qprune::tensor<float, 2> expect(5, 71);
    qprune::quant::dequantize(m, expect.view());
    EXPECT_TRUE(same_bits<float>(qpr::to_float(file.tensor("w")), expect.span()));
  }
}

TEST_F(QprTest, PerGroupAxis0AndPerTensorHandComputed) {
  // 3x2 uint8 codes grouped along axis 0 with group size 2: parameter shape [2, 2],
  // element (r, c) uses entry (r / 2) * 2 + c.
  const std::vector<std::uint8_t> codes{10, 20, 30, 40, 50, 60};
  const std::vector<float> scales{0.5f, 0.25f, 2.0f, 4.0f};
  const std::vector<std::int32_t> zps{10, 0, 50, 1};
  qpr::tensor_entry e;
  e.info.name = "g";
  e.info.type = qpr::dtype::uint8;
  e.info.shape = {3, 2};
  e.info.quant = qpr::granularity::group;
  e.info.axis = 0;
  e.info.group_size = 2;
  e.info.param_count = 4;
  e.info.qmin = 0;
  e.info.qmax = 255;
  e.info.has_zero_points = true;
  e.sections[0] = std::as_bytes(std::span(codes));
  e.sections[1] = std::as_bytes(std::span(scales));
  e.sections[2] = std::as_bytes(std::span(zps));
  qpr::save(path("g.qpr"), {e});
  const auto file = qpr::load(path("g.qpr"));
  const auto f = qpr::to_float(file.tensor("g"));
  const std::vector<float> want{0.5f * 0, 0.25f * 20, 0.5f * 20, 0.25f * 40, 2.0f * 0, 4.0f * 59};
  ASSERT_EQ(f.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(f[i], want[i]) << i;
  // A wrong parameter count is rejected before writing.
  e.info.param_count = 3;
  e.sections[1] = std::as_bytes(std::span(scales).first(3));
  e.sections[2] = std::as_bytes(std::span(zps).first(3));
  EXPECT_THROW(qpr::save(path("bad.qpr"), {e}), qprune::config_error);
  EXPECT_FALSE(fs::exists(path("bad.qpr")));
}

template <class V>
void sparse_round_trip(const fs::path& p, std::mt19937_64& rng) {
  auto w = random_matrix(9, 300, rng, 0.8);  // cols > 256: 2-byte CSR indices
  auto w24 = random_matrix(6, 23, rng);     // 23 cols: partial last group
  make_2_4(w24);
  const auto csr = qprune::prune::csr_matrix<V>::from_dense(w.cview());
  const auto bm = qprune::prune::bitmask_matrix<V>::from_dense(w.cview());
  const auto nm = qprune::prune::packed_nm_matrix<V>::from_dense(w24.cview(), 2, 4);
  ASSERT_EQ(csr.col_index_bytes(), 2);
  qpr::save(p, {qpr::entry("csr", csr), qpr::entry("bm", bm), qpr::entry("nm", nm)});
  const auto file = qpr::load(p, qpr::verify::eager);
  const auto c2 = qpr::load_csr<V>(file.tensor("csr"));
  const auto b2 = qpr::load_bitmask<V>(file.tensor("bm"));
  const auto n2 = qpr::load_packed_nm<V>(file.tensor("nm"));
  EXPECT_TRUE(same_bits(c2.values(), csr.values()));
  EXPECT_TRUE(same_bits(c2.scales(), csr.scales()));
  EXPECT_EQ(c2.nnz(), csr.nnz());
  EXPECT_TRUE(c2.col_indices() == csr.col_indices());
  EXPECT_TRUE(c2.row_ptr() == csr.row_ptr());
  EXPECT_TRUE(same_bits(b2.values(), bm.values()));
  EXPECT_TRUE(same_bits(b2.mask_bytes(), bm.mask_bytes()));
  EXPECT_TRUE(same_bits(b2.scales(), bm.scales()));
  EXPECT_TRUE(same_bits(n2.values(), nm.values()));
  EXPECT_TRUE(same_bits(n2.position_bytes(), nm.position_bytes()));
  EXPECT_TRUE(same_bits(n2.scales(), nm.scales()));
  EXPECT_EQ(n2.nnz(), nm.nnz());
  EXPECT_EQ(file.tensors()[0].nnz, static_cast<std::uint64_t>(csr.nnz()));
  EXPECT_NEAR(file.tensors()[0].sparsity(), 1.0 - static_cast<double>(csr.nnz()) / 2700.0, 1e-12);
  // Dequantized floats equal to_dense, bit for bit.
  qprune::tensor<float, 2> a(9, 300), b(6, 23);
  csr.to_dense(a.view());
  EXPECT_TRUE(same_bits<float>(qpr::to_float(file.tensor("csr")), a.span()));
  EXPECT_TRUE(same_bits<float>(qpr::to_float(file.tensor("bm")), a.span()));
  nm.to_dense(b.view());
  EXPECT_TRUE(same_bits<float>(qpr::to_float(file.tensor("nm")), b.span()));
  // Asking for the wrong value type or encoding is an io_error.
  EXPECT_THROW(static_cast<void>(qpr::load_bitmask<V>(file.tensor("csr"))), io_error);
}

TEST_F(QprTest, SparseRoundTripFloat) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(4);
  sparse_round_trip<float>(path("s.qpr"), rng);
}
TEST_F(QprTest, SparseRoundTripHalf) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(5);
  sparse_round_trip<qprune::half>(path("s.qpr"), rng);
}
TEST_F(QprTest, SparseRoundTripInt8) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(6);
  sparse_round_trip<std::int8_t>(path("s.qpr"), rng);
}

TEST_F(QprTest, SaveRejectsInconsistentEntries) {
  const std::vector<float> v(6, 1.0f);
  auto e = qpr::entry("x", std::span<const float>(v));
  e.info.shape = {7};
  EXPECT_THROW(qpr::save(path("x.qpr"), {e}), qprune::config_error);
  auto dup = qpr::entry("x", std::span<const float>(v));
  EXPECT_THROW(qpr::save(path("x.qpr"), {dup, dup}), qprune::config_error);
  EXPECT_THROW(qpr::save(dir_ / "missing" / "x.qpr", {dup}), io_error);
  EXPECT_FALSE(fs::exists(path("x.qpr")));
}

// A one-tensor file with a known table layout: name "w" (1 byte), rank 2, so the
// table entry starts at 64 with: dtype 67, encoding 68, quant 69, rank 70, dims 76 and
// 84, nnz 124, sections 132.., offset 180, length 188, crc 196.
std::vector<std::uint8_t> small_file(const fs::path& p) {
  std::vector<float> v(12);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) - 3.5f;
  qpr::save(p, {qpr::entry("w", qprune::tensor_view<const float, 2>(v.data(), 3, 4))});
  return read_file(p);
}

void expect_io_error(const fs::path& p, const std::vector<std::uint8_t>& b, const std::string& needle) {
  write_file(p, b);
  try {
    const auto f = qpr::load(p, qpr::verify::eager);
    ADD_FAILURE() << "no error, expected one mentioning '" << needle << "'";
  } catch (const io_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST_F(QprTest, EachCorruptionIsNamed) {
  const auto p = path("c.qpr");
  const auto good = small_file(p);
  ASSERT_EQ(good[67], 0);  // f32
  ASSERT_EQ(good[70], 2);  // rank
  auto b = good;
  b[1] = 'X';
  expect_io_error(p, b, "bad magic");
  b = good;
  put<std::uint32_t>(b, 8, 2);
  expect_io_error(p, b, "unsupported format version 2");
  b = good;
  put<std::uint32_t>(b, 12, 0x04030201u);
  expect_io_error(p, b, "big-endian");
  b = good;
  b[100] ^= 1;
  expect_io_error(p, b, "header checksum mismatch");
  b = good;
  b.resize(b.size() - 1);
  expect_io_error(p, b, "truncated");
  expect_io_error(p, {good.begin(), good.begin() + 10}, "truncated");
  b = good;
  b.push_back(0);
  expect_io_error(p, b, "trailing bytes");
  b = good;
  b.back() ^= 0x40;
  expect_io_error(p, b, "checksum mismatch");
  b = good;
  b[67] = 9;
  fix_header_crc(b);
  expect_io_error(p, b, "unknown dtype 9");
  b = good;
  b[68] = 7;
  fix_header_crc(b);
  expect_io_error(p, b, "unknown encoding 7");
  b = good;
  put<std::uint64_t>(b, 76, std::uint64_t{1} << 40);
  put<std::uint64_t>(b, 84, std::uint64_t{1} << 40);
  fix_header_crc(b);
  expect_io_error(p, b, "overflows");
  b = good;
  put<std::uint64_t>(b, 180, 320);  // offset past the end (the file has 304 bytes)
  fix_header_crc(b);
  expect_io_error(p, b, "past the end");
  b = good;
  put<std::uint64_t>(b, 180, 200);  // not a multiple of 64
  fix_header_crc(b);
  expect_io_error(p, b, "misaligned");
  b = good;
  put<std::uint64_t>(b, 132, 44);  // values section size disagrees with the shape
  fix_header_crc(b);
  expect_io_error(p, b, "expected 48");
}

TEST_F(QprTest, OverlappingTensorsAreRejected) {
  const std::vector<float> v(16, 2.0f);
  qpr::save(path("o.qpr"), {qpr::entry("a", std::span<const float>(v)), qpr::entry("b", std::span<const float>(v))});
  auto b = read_file(path("o.qpr"));
  const auto file = qpr::load(path("o.qpr"));
  // Point b's payload at a's (entries are 1-D, names 1 byte: each entry is
  // 2+1+9+8+8+8+8+4+4+8+48+8+8+4 = 128 bytes; offset at +108).
  const std::size_t entry_b = 64 + 128;
  std::uint64_t off_a = 0;
  std::memcpy(&off_a, b.data() + 64 + 108, 8);
  ASSERT_EQ(off_a, file.tensors()[0].offset);
  put<std::uint64_t>(b, entry_b + 108, off_a);
  fix_header_crc(b);
  expect_io_error(path("o2.qpr"), b, "overlap");
}

TEST_F(QprTest, LazyOpenReadsOnlyTheTable) {
  const auto p = path("l.qpr");
  auto b = small_file(p);
  b.back() ^= 0x01;  // corrupt the payload
  write_file(p, b);
  const auto file = qpr::load(p);  // lazy: table only, no error yet
  ASSERT_EQ(file.tensors().size(), 1u);
  EXPECT_EQ(file.tensors()[0].shape, (std::vector<index_t>{3, 4}));
  EXPECT_FALSE(file.verified(0));
  EXPECT_THROW(static_cast<void>(file.tensor(0)), io_error);
  EXPECT_THROW(static_cast<void>(qpr::load(p, qpr::verify::eager)), io_error);
}

/// Parses and converts every tensor; returns normally or throws io_error only.
void load_everything(std::span<const std::byte> bytes) {
  const auto f = qpr::file::from_bytes(bytes, qpr::verify::eager);
  for (std::size_t i = 0; i < f.tensors().size(); ++i) static_cast<void>(qpr::to_float(f.tensor(i)));
}

TEST_F(QprTest, CorruptionSweepEveryByteAndEveryLength) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(7);
  auto w = random_matrix(3, 8, rng, 0.5);
  const auto csr = qprune::prune::csr_matrix<std::int8_t>::from_dense(w.cview());
  const auto q8 = qprune::quant::int8{}.quantize(w.cview());
  const auto p = path("sweep.qpr");
  qpr::save(p, {qpr::entry("c", csr), qpr::entry("q", q8)}, {{"m", "v"}});
  const auto good = read_file(p);
  ASSERT_LT(good.size(), 1024u);
  // The parser runs on an aligned in-memory copy (what the mapping gives); a few
  // of the cases also go through real files below.
  qprune::aligned_vector<std::byte> buf(good.size());
  std::memcpy(buf.data(), good.data(), good.size());
  ASSERT_NO_THROW(load_everything(buf));
  int errors = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    buf[i] = ~buf[i];
    try {
      load_everything(buf);
      ADD_FAILURE() << "flipping byte " << i << " went unnoticed";
    } catch (const io_error&) {
      ++errors;
    }
    buf[i] = ~buf[i];
  }
  EXPECT_EQ(errors, static_cast<int>(good.size()));
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(load_everything(std::span<const std::byte>(buf).first(n)), io_error) << "truncated to " << n;
  }
  for (std::size_t n : {std::size_t{0}, std::size_t{63}, good.size() / 2, good.size() - 1}) {
    write_file(path("t.qpr"), {good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)});
    EXPECT_THROW(static_cast<void>(qpr::load(path("t.qpr"))), io_error) << n;
  }
}

TEST_F(QprTest, KilledMidSaveLeavesThePreviousFile) {
  const auto p = path("model.qpr");
  const std::vector<float> old_values{1.0f, 2.0f, 3.0f};
  qpr::save(p, {qpr::entry("old", std::span<const float>(old_values))});
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    // 64 MB of payload, written in 8 MB chunks; tell the parent half way, then wait to be killed.
    std::vector<float> big(std::size_t{16} << 20, 0.5f);
    qpr::save_options opt;
    opt.progress = [&](std::uint64_t done, std::uint64_t total) {
      if (done * 2 >= total) {
        const char c = 'x';
        if (::write(fds[1], &c, 1) != 1) ::_exit(3);
        for (;;) ::pause();
      }
    };
    try {
      qpr::save(p, {qpr::entry("new", std::span<const float>(big))}, {}, opt);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(1);  // must not get here: the parent kills us first
  }
  ::close(fds[1]);
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  ::close(fds[0]);
  // The temporary exists, beside the target, under another name.
  int temporaries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().filename() != "model.qpr") {
      ++temporaries;
      EXPECT_EQ(e.path().filename().string().rfind(".model.qpr.tmp-", 0), 0u) << e.path();
    }
  }
  EXPECT_EQ(temporaries, 1);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  // The previous good file still loads, unchanged.
  const auto f = qpr::load(p, qpr::verify::eager);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensors()[0].name, "old");
  EXPECT_TRUE((qpr::load_tensor<float, 1>(f.tensor(0)) == qprune::tensor<float, 1>(qprune::extents<1>(3), old_values)));
  // A later save of the same target succeeds and replaces it.
  qpr::save(p, {qpr::entry("again", std::span<const float>(old_values))});
  EXPECT_EQ(qpr::load(p).tensors()[0].name, "again");
}

TEST_F(QprTest, ModelHookKeyIsPlainMetadata) {
  const std::vector<float> b{0.5f};
  qpr::save(path("m.qpr"), {qpr::entry("fc1.bias", std::span<const float>(b))},
            {{std::string(qpr::model_metadata_key), R"({"layers":[{"name":"fc1","type":"dense"}]})"}});
  const auto f = qpr::load(path("m.qpr"));
  EXPECT_EQ(f.metadata().at("qprune.model"), R"({"layers":[{"name":"fc1","type":"dense"}]})");
  EXPECT_NE(f.find("fc1.bias"), nullptr);
}

TEST_F(QprTest, FromBytesNeedsAlignment) {
  const auto good = small_file(path("a.qpr"));
  qprune::aligned_vector<std::byte> buf(good.size() + 1);
  std::memcpy(buf.data() + 1, good.data(), good.size());
  EXPECT_THROW(static_cast<void>(qpr::file::from_bytes(std::span<const std::byte>(buf).subspan(1))), io_error);
  std::memcpy(buf.data(), good.data(), good.size());
  const auto f = qpr::file::from_bytes(std::span<const std::byte>(buf).first(good.size()), qpr::verify::eager);
  EXPECT_EQ(qpr::to_float(f.tensor("w"))[5], 1.5f);
}

}  // namespace

#ifdef QPRUNE_CLI
// ---------------------------------------------------------------------------
// The qprune tool (tools/qprune), run as a process on small generated files.
// ---------------------------------------------------------------------------

namespace cli {

int run(const std::string& args) {
  const std::string cmd = std::string("'") + QPRUNE_CLI + "' " + args + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace cli

TEST_F(QprTest, CliCompressInspectDecompressRoundTrip) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(8);
  const auto w = random_matrix(16, 64, rng);
  const auto b = random_matrix(1, 16, rng);
  const std::vector<qprune::io::array> arrays{
      qprune::io::array::from_values<float>("fc.weight", {16, 64}, w.span()),
      qprune::io::array::from_values<float>("fc.bias", {16}, b.span())};
  qprune::io::write_npz(path("in.npz"), arrays);
  const std::string in = "'" + path("in.npz").string() + "'";
  ASSERT_EQ(cli::run("compress " + in + " -o '" + path("q.qpr").string() + "' --dtype int8 --report"), 0);
  // int8 per channel: exactly the codes and scales of quant::int8 (the library's policy).
  const auto f = qpr::load(path("q.qpr"), qpr::verify::eager);
  const auto s = qprune::quant::int8{}.quantize(w.cview());
  const auto back = qpr::load_int8_weights(f.tensor("fc.weight"));
  EXPECT_TRUE(back.codes == s.codes);
  EXPECT_EQ(back.params.scales, s.params.scales);
  EXPECT_EQ((f.tensor("fc.bias").view<float, 1>()(3)), b.data()[3]);  // biases stay float
  EXPECT_EQ(cli::run("inspect '" + path("q.qpr").string() + "'"), 0);
  EXPECT_EQ(cli::run("inspect '" + path("q.qpr").string() + "' --verify"), 0);
  EXPECT_EQ(cli::run("inspect " + in), 0);
  // decompress: the dequantized floats, bit for bit what to_float gives.
  ASSERT_EQ(cli::run("decompress '" + path("q.qpr").string() + "' -o '" + path("d.npz").string() + "'"), 0);
  const auto d = qprune::io::read_npz(path("d.npz"));
  ASSERT_EQ(d.size(), 2u);
  const auto expect = qpr::to_float(f.tensor("fc.weight"));
  EXPECT_TRUE(same_bits<float>(d[0].to_float(), expect));
  EXPECT_TRUE(same_bits<float>(d[1].to_float(), b.span()));
  // --raw: the codes and the scales.
  ASSERT_EQ(cli::run("decompress '" + path("q.qpr").string() + "' -o '" + path("r.safetensors").string() + "' --raw"), 0);
  const auto r = qprune::io::read_safetensors(path("r.safetensors"));
  ASSERT_NE(r.find("fc.weight"), nullptr);
  EXPECT_EQ(r.find("fc.weight")->type(), qprune::io::dtype::i8);
  EXPECT_TRUE(same_bits<std::int8_t>(r.find("fc.weight")->values<std::int8_t>(), s.codes.span()));
  EXPECT_TRUE(same_bits<float>(r.find("fc.weight.scales")->values<float>(), s.params.scales));
  // 2:4 pruning with fp16 values is stored packed N:M.
  ASSERT_EQ(cli::run("compress " + in + " -o '" + path("p.qpr").string() + "' --dtype fp16 --prune nm:2:4"), 0);
  const auto p = qpr::load(path("p.qpr"), qpr::verify::eager);
  EXPECT_EQ(p.find("fc.weight")->enc, qpr::encoding::nm);
  EXPECT_EQ(p.find("fc.weight")->nnz, 16u * 32u);
  // int4 groups.
  ASSERT_EQ(cli::run("compress " + in + " -o '" + path("g.qpr").string() + "' --dtype int4 --granularity group:32"), 0);
  const auto g = qpr::load(path("g.qpr"), qpr::verify::eager);
  const auto m = qpr::load_packed_int4(g.tensor("fc.weight"));
  const auto want = qprune::quant::quantize_int4(w.cview(), 32, qprune::quant::int4_scheme::symmetric);
  EXPECT_TRUE(m.codes == want.codes);
  EXPECT_EQ(m.params, want.params);
}

TEST_F(QprTest, CliExitCodes) {
  const std::vector<qprune::io::array> arrays{qprune::io::array::from_values<float>("w", {2, 2}, std::vector<float>{1, 2, 3, 4})};
  qprune::io::write_npz(path("in.npz"), arrays);
  const std::string in = "'" + path("in.npz").string() + "'";
  EXPECT_EQ(cli::run(""), 2);
  EXPECT_EQ(cli::run("frobnicate"), 2);
  EXPECT_EQ(cli::run("compress " + in), 2);                                      // no -o
  EXPECT_EQ(cli::run("compress " + in + " -o x.qpr --dtype int3"), 2);           // bad dtype
  EXPECT_EQ(cli::run("compress " + in + " -o x.qpr --granularity group:24 --dtype int8"), 2);
  EXPECT_EQ(cli::run("decompress " + in + " -o x.txt"), 2);
  EXPECT_EQ(cli::run("--help"), 0);
  write_file(path("bad.qpr"), std::vector<std::uint8_t>(100, 7));
  EXPECT_EQ(cli::run("inspect '" + path("bad.qpr").string() + "'"), 1);          // bad magic
  EXPECT_EQ(cli::run("inspect '" + path("missing.npz").string() + "'"), 1);      // no such file
  EXPECT_EQ(cli::run("compress '" + path("bad.qpr").string() + "' -o '" + path("o.qpr").string() + "'"), 1);
  EXPECT_FALSE(fs::exists(path("o.qpr")));
}
#endif  // QPRUNE_CLI

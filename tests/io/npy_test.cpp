// NumPy interchange: .npy and .npz files written by numpy 1.24 load with the
// right values (tests/data/io/gen_io_files.py, manifest.json), our writers
// reproduce numpy's bytes and round-trip every dtype in both orders, the header
// parser and zip reader reject malformed input with io_error, and a corruption
// sweep (every byte flipped, every truncation) only ever yields io_error.
// Also covers io/array.hpp conversions and io/mmap.hpp.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <fstream>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "qprune/io/array.hpp"
#include "qprune/io/mmap.hpp"
#include "qprune/io/npy.hpp"
#include "qprune/io/npz.hpp"
#include "support/data.hpp"
#include "support/json.hpp"
#include "support/random.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = qprune::io;
using qprune::index_t;
using qprune::test::json;

std::vector<std::uint32_t> float_bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> b;
  for (const float x : v) b.push_back(std::bit_cast<std::uint32_t>(x));
  return b;
}

/// Expects `fn` to throw qprune::io_error whose message contains `needle`.
template <class F>
void expect_io_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no io_error; expected one containing: " << needle;
  } catch (const qprune::io_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

io::dtype npy_code_to_dtype(const std::string& descr) {
  const std::string c = descr.substr(1);
  if (c == "f4") return io::dtype::f32;
  if (c == "f8") return io::dtype::f64;
  if (c == "f2") return io::dtype::f16;
  if (c == "i1") return io::dtype::i8;
  if (c == "u1") return io::dtype::u8;
  if (c == "i2") return io::dtype::i16;
  if (c == "u2") return io::dtype::u16;
  if (c == "i4") return io::dtype::i32;
  if (c == "u4") return io::dtype::u32;
  if (c == "i8") return io::dtype::i64;
  if (c == "u8") return io::dtype::u64;
  if (c == "b1") return io::dtype::boolean;
  ADD_FAILURE() << "unknown descr " << descr;
  return io::dtype::f32;
}

/// Checks an array against its manifest entry: dtype, shape, order, every value, sum.
void expect_matches_manifest(const io::array& a, const json& m) {
  SCOPED_TRACE("array '" + a.name() + "'");
  EXPECT_EQ(a.type(), npy_code_to_dtype(m["dtype"].get<std::string>()));
  EXPECT_EQ(a.shape(), m["shape"].get<std::vector<index_t>>());
  EXPECT_EQ(a.order() == io::array_order::fortran, m["fortran_order"].get<bool>());
  const std::vector<float> v = a.to_float();
  EXPECT_EQ(float_bits(v), m["values_bits"].get<std::vector<std::uint32_t>>());
  double sum = 0;
  for (const float x : v) sum += x;
  const double want = qprune::test::f64(m["sum_bits64"]);
  EXPECT_NEAR(sum, want, 1e-12 * (1 + std::abs(want)));
}

const json& manifest() {
  static const json m = qprune::test::load_json("io/manifest.json");
  return m;
}

// ---------------------------------------------------------------- mapped_file

TEST(mapped_file, maps_a_regular_file_and_moves) {
  auto f = io::mapped_file::open(qprune::test::data_path("io/np_f4.npy"));
  EXPECT_TRUE(f.is_mapped());
  EXPECT_EQ(f.size(), fs::file_size(qprune::test::data_path("io/np_f4.npy")));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f.bytes().data()) % 4096, 0u);
  const std::byte* p = f.bytes().data();
  io::mapped_file g = std::move(f);
  EXPECT_EQ(g.bytes().data(), p);
  EXPECT_TRUE(f.bytes().empty());
  EXPECT_EQ(static_cast<unsigned char>(g.bytes()[0]), 0x93);
}

TEST(mapped_file, errors_name_the_file) {
  expect_io_error([] { (void)io::mapped_file::open("/nonexistent/qprune.npy"); }, "'/nonexistent/qprune.npy'");
  expect_io_error([] { (void)io::mapped_file::open(fs::temp_directory_path()); }, "directory");
}

TEST(mapped_file, empty_and_unsized_files_use_the_read_fallback) {
  const fs::path p = fs::temp_directory_path() / "qprune_mmap_empty_test";
  { std::ofstream(p, std::ios::binary); }
  const auto f = io::mapped_file::open(p);
  EXPECT_TRUE(f.bytes().empty());
  EXPECT_FALSE(f.is_mapped());
  fs::remove(p);
  // procfs files report size 0 but have contents.
  const auto s = io::mapped_file::open("/proc/self/status");
  EXPECT_FALSE(s.is_mapped());
  EXPECT_GT(s.size(), 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(s.bytes().data()) % 64, 0u);
}

// ---------------------------------------------------------------- array conversions

TEST(array, from_float_rounds_half_to_even_and_saturates) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1000.f, -1000.f, inf, -inf, nan, 1.49999988f};
  const auto shape = std::vector<index_t>{static_cast<index_t>(x.size())};
  const auto i8 = io::array::from_float("q", shape, x, io::dtype::i8);
  EXPECT_EQ(std::vector<std::int8_t>(i8.values<std::int8_t>().begin(), i8.values<std::int8_t>().end()),
            (std::vector<std::int8_t>{2, -2, 4, 0, 0, 127, -128, 127, -128, 0, 1}));
  const auto u8 = io::array::from_float("q", shape, x, io::dtype::u8);
  EXPECT_EQ(std::vector<std::uint8_t>(u8.values<std::uint8_t>().begin(), u8.values<std::uint8_t>().end()),
            (std::vector<std::uint8_t>{2, 0, 4, 0, 0, 255, 0, 255, 0, 0, 1}));
  const auto i64 = io::array::from_float("q", {3}, std::vector<float>{1e30f, -1e30f, 9.2233715e18f}, io::dtype::i64);
  EXPECT_EQ(i64.values<std::int64_t>()[0], std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(i64.values<std::int64_t>()[1], std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(i64.values<std::int64_t>()[2], std::int64_t{9223371487098961920});  // float just below 2^63
  const auto u64 = io::array::from_float("q", {3}, std::vector<float>{1.8446744e19f, -1.f, 1.8446743e19f},
                                         io::dtype::u64);
  EXPECT_EQ(u64.values<std::uint64_t>()[0], std::numeric_limits<std::uint64_t>::max());  // 2^64 saturates
  EXPECT_EQ(u64.values<std::uint64_t>()[1], 0u);
  EXPECT_EQ(u64.values<std::uint64_t>()[2], std::uint64_t{18446742974197923840u});
  const auto u32 = io::array::from_float("q", {2}, std::vector<float>{4294967296.f, 4294967040.f}, io::dtype::u32);
  EXPECT_EQ(u32.values<std::uint32_t>()[0], 4294967295u);
  EXPECT_EQ(u32.values<std::uint32_t>()[1], 4294967040u);
  // f16: 1 + 2^-11 is a tie between 1 and 1 + 2^-10 -> even (1); 65520 -> inf.
  const auto h = io::array::from_float("h", {3}, std::vector<float>{1.00048828125f, 1.00146484375f, 65520.f},
                                       io::dtype::f16);
  EXPECT_EQ(h.values<qprune::half>()[0].bits, 0x3C00);
  EXPECT_EQ(h.values<qprune::half>()[1].bits, 0x3C02);
  EXPECT_EQ(h.values<qprune::half>()[2].bits, 0x7C00);
  // bf16: 1 + 2^-8 is a tie -> 1; 1 + 3*2^-8 -> 1 + 2^-6.
  const auto b = io::array::from_float("b", {2}, std::vector<float>{1.00390625f, 1.01171875f}, io::dtype::bf16);
  EXPECT_EQ(b.values<qprune::bfloat16>()[0].bits, 0x3F80);
  EXPECT_EQ(b.values<qprune::bfloat16>()[1].bits, 0x3F82);
  const auto bo = io::array::from_float("m", {3}, std::vector<float>{0.f, -0.f, nan}, io::dtype::boolean);
  EXPECT_EQ(bo.values<std::uint8_t>()[0], 0);
  EXPECT_EQ(bo.values<std::uint8_t>()[1], 0);
  EXPECT_EQ(bo.values<std::uint8_t>()[2], 1);
  EXPECT_THROW((void)io::array::from_float("f8", {1}, std::vector<float>{1.f}, io::dtype::f8_e4m3),
               qprune::config_error);
  EXPECT_THROW((void)io::array::from_float("x", {2}, std::vector<float>{1.f}, io::dtype::f32), qprune::shape_error);
}

TEST(array, to_float_is_exact_where_float_can_hold_the_value) {
  const std::vector<std::int64_t> i = {std::numeric_limits<std::int64_t>::min(), 16777217, -3};
  const auto a = io::array::from_values<std::int64_t>("i", {3}, i);
  const auto f = a.to_float();
  EXPECT_EQ(f[0], -9223372036854775808.f);
  EXPECT_EQ(f[1], 16777216.f);  // 2^24 + 1 rounds to even
  EXPECT_EQ(f[2], -3.f);
  const auto d = io::array::from_values<double>("d", {2}, std::vector<double>{1e300, 0.1});
  EXPECT_EQ(d.to_float()[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(d.to_float()[1], 0.1f);
  const std::array<bool, 2> bv = {true, false};
  const auto b = io::array::from_values<bool>("b", {2}, std::span<const bool>(bv));
  EXPECT_EQ(b.to_float(), (std::vector<float>{1.f, 0.f}));
  EXPECT_THROW((void)a.values<double>(), qprune::config_error);
  const auto f8 = io::array::copy_of("f8", io::dtype::f8_e5m2, {1}, io::array_order::c, qprune::test::to_bytes("\x3c"));
  EXPECT_THROW((void)f8.to_float(), qprune::config_error);
  EXPECT_THROW((void)io::array::copy_of("x", io::dtype::f32, {2}, io::array_order::c, qprune::test::to_bytes("abc")),
               qprune::shape_error);
  EXPECT_THROW((void)io::array::copy_of("x", io::dtype::f32, {-1}, io::array_order::c, {}), qprune::shape_error);
}

TEST(array, fortran_order_converts_to_c_order) {
  // Column-major storage of [[0, 1, 2], [3, 4, 5]].
  const std::vector<float> fstore = {0, 3, 1, 4, 2, 5};
  const auto a = io::array::from_values<float>("f", {2, 3}, fstore, io::array_order::fortran);
  EXPECT_EQ(a.to_float(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  const auto c = a.to_c_order();
  EXPECT_EQ(c.order(), io::array_order::c);
  EXPECT_EQ(std::vector<float>(c.values<float>().begin(), c.values<float>().end()),
            (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(array, misaligned_views_are_copied_aligned) {
  std::vector<std::byte> buf(17);
  const auto a = io::array::view("x", io::dtype::f32, {4}, io::array_order::c,
                                 std::span<const std::byte>(buf).subspan(1, 16));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.bytes().data()) % 4, 0u);
  EXPECT_NE(a.bytes().data(), buf.data() + 1);
  const auto b = io::array::view("y", io::dtype::u8, {16}, io::array_order::c,
                                 std::span<const std::byte>(buf).subspan(1, 16));
  EXPECT_EQ(b.bytes().data(), buf.data() + 1);  // no copy needed for bytes
}

// ---------------------------------------------------------------- .npy from numpy

TEST(npy, numpy_written_files_load_with_the_right_values) {
  int n = 0;
  for (const auto& [file, arrays] : manifest().items()) {
    if (file.size() < 4 || file.substr(file.size() - 4) != ".npy") continue;
    SCOPED_TRACE(file);
    const io::array a = io::read_npy(qprune::test::data_path("io/" + file));
    EXPECT_EQ(a.name(), file.substr(0, file.size() - 4));
    expect_matches_manifest(a, arrays["x"]);
    ++n;
  }
  EXPECT_EQ(n, 21);
}

TEST(npy, reads_in_place_from_the_mapping) {
  const io::array a = io::read_npy(qprune::test::data_path("io/np_f4.npy"));
  // numpy pads the header so the data starts at offset 128 of a page-aligned map.
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.bytes().data()) % 4096, 128u);
  const auto f = qprune::test::read_raw<std::byte>("io/np_f4.npy");
  const io::array b = io::read_npy(f, "buffer", "b");
  EXPECT_EQ(b.bytes().data(), f.data() + 128);
  EXPECT_EQ(b.values<float>().size(), 12u);
}

TEST(npy, header_fields) {
  const auto v3 = qprune::test::read_raw<std::byte>("io/np_f4_v3.npy");
  const io::npy_header h = io::parse_npy_header(v3);
  EXPECT_EQ(h.major_version, 3);
  EXPECT_EQ(h.type, io::dtype::f32);
  EXPECT_EQ(h.shape, (std::vector<index_t>{6, 2}));
  EXPECT_EQ(h.data_offset, 128u);
  EXPECT_EQ(io::parse_npy_header(qprune::test::read_raw<std::byte>("io/np_f4_v2.npy")).major_version, 2);
  const auto big = io::parse_npy_header(qprune::test::read_raw<std::byte>("io/np_i2_big.npy"));
  EXPECT_TRUE(big.big_endian);
  EXPECT_EQ(big.type, io::dtype::i16);
}

TEST(npy, encoder_reproduces_numpy_bytes) {
  for (const char* f : {"np_f4.npy", "np_f8.npy", "np_f2.npy", "np_i1.npy", "np_u1.npy", "np_i2.npy",
                        "np_u2.npy", "np_i4.npy", "np_u4.npy", "np_i8.npy", "np_u8.npy", "np_b1.npy",
                        "np_f4_fortran.npy", "np_f8_fortran_3d.npy", "np_f8_scalar.npy", "np_f4_empty.npy",
                        "np_i4_1d.npy", "sweep.npy"}) {
    SCOPED_TRACE(f);
    const auto bytes = qprune::test::read_raw<std::byte>(std::string("io/") + f);
    EXPECT_EQ(io::encode_npy(io::read_npy(bytes)), bytes);
  }
  // Big-endian and v2/v3 files come back as little-endian v1.0 with the same values.
  const io::array big = io::read_npy(qprune::test::read_raw<std::byte>("io/np_f4_big.npy"));
  const io::array little = io::read_npy(qprune::test::read_raw<std::byte>("io/np_f4.npy"));
  EXPECT_EQ(float_bits(big.to_float()), float_bits(little.to_float()));
  const auto re = io::encode_npy(big);
  EXPECT_EQ(io::parse_npy_header(re).major_version, 1);
  EXPECT_FALSE(io::parse_npy_header(re).big_endian);
}

TEST(npy, round_trips_every_dtype_in_both_orders) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(71);
  const std::vector<std::vector<index_t>> shapes = {{3, 4}, {2, 3, 4}, {5}, {}, {0, 3}, {1, 1, 7}};
  for (const io::dtype t : {io::dtype::boolean, io::dtype::u8, io::dtype::i8, io::dtype::i16, io::dtype::u16,
                            io::dtype::f16, io::dtype::i32, io::dtype::u32, io::dtype::f32, io::dtype::f64,
                            io::dtype::i64, io::dtype::u64}) {
    for (const auto& shape : shapes) {
      for (const auto order : {io::array_order::c, io::array_order::fortran}) {
        index_t n = 1;
        for (const index_t d : shape) n *= d;
        std::vector<std::byte> raw(static_cast<std::size_t>(n) * io::dtype_size(t));
        for (auto& b : raw) b = static_cast<std::byte>(t == io::dtype::boolean ? rng() % 2 : rng() % 256);
        const auto a = io::array::copy_of("a", t, shape, order, raw);
        const auto file = io::encode_npy(a);
        EXPECT_EQ(file.size() - raw.size(), io::parse_npy_header(file).data_offset);
        EXPECT_EQ(io::parse_npy_header(file).data_offset % 64, 0u);
        const auto back = io::read_npy(file);
        EXPECT_EQ(back.type(), t);
        EXPECT_EQ(back.shape(), shape);
        EXPECT_EQ(back.order(), order);
        EXPECT_TRUE(std::equal(back.bytes().begin(), back.bytes().end(), raw.begin(), raw.end()))
            << io::to_string(t) << " rank " << shape.size();
      }
    }
  }
  EXPECT_THROW((void)io::encode_npy(io::array::from_float("b", {1}, std::vector<float>{1.f}, io::dtype::bf16)),
               qprune::config_error);
}

TEST(npy, write_and_read_a_file) {
  const fs::path p = fs::temp_directory_path() / "qprune_npy_write_test.npy";
  const auto a = io::array::from_values<float>("w", {2, 2}, std::vector<float>{1, 2, 3, 4});
  io::write_npy(p, a);
  const auto b = io::read_npy(p);
  EXPECT_EQ(b.name(), "qprune_npy_write_test");
  EXPECT_EQ(b.to_float(), (std::vector<float>{1, 2, 3, 4}));
  fs::remove(p);
  EXPECT_THROW(io::write_npy("/nonexistent/dir/x.npy", a), qprune::io_error);
}

// ---------------------------------------------------------------- .npy header grammar

std::vector<std::byte> npy_with_header(std::string dict, std::size_t data_bytes, int major = 1) {
  std::string h = "\x93NUMPY";
  h += static_cast<char>(major);
  h += '\0';
  const std::size_t len = dict.size();
  if (major == 1) {
    h += static_cast<char>(len & 0xFF);
    h += static_cast<char>(len >> 8);
  } else {
    for (int i = 0; i < 4; ++i) h += static_cast<char>((len >> (8 * i)) & 0xFF);
  }
  h += dict;
  h.append(data_bytes, '\x01');
  return qprune::test::to_bytes(h);
}

TEST(npy, parser_accepts_the_literal_variants_python_writes) {
  struct ok_case {
    std::string dict;
    std::vector<index_t> shape;
    io::array_order order;
  };
  const std::vector<ok_case> cases = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n", {2, 3}, io::array_order::c},
      {"{\"descr\": \"<f4\", \"fortran_order\": True, \"shape\": (2, 3)}\n", {2, 3}, io::array_order::fortran},
      {"{'shape': (6,), 'descr': '<f4', 'fortran_order': False}\n", {6}, io::array_order::c},
      {"{'descr':'<f4','fortran_order':False,'shape':(1,2,3,),}\n", {1, 2, 3}, io::array_order::c},
      {"{\t'descr': '<f4',\t'fortran_order': False, 'shape': ( 6 , ) }\t\n", {6}, io::array_order::c},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dict);
    const auto f = npy_with_header(c.dict, 24);
    const auto h = io::parse_npy_header(f);
    EXPECT_EQ(h.shape, c.shape);
    EXPECT_EQ(h.order, c.order);
  }
  EXPECT_EQ(io::parse_npy_header(npy_with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (), }\n", 1))
                .size,
            1);
  EXPECT_EQ(io::parse_npy_header(npy_with_header("{'descr': '<u8', 'fortran_order': False, 'shape': (0, 5), }\n", 0))
                .size,
            0);
}

TEST(npy, parser_rejects_malformed_headers) {
  const auto bad = [](const std::string& dict, std::size_t data, const std::string& needle, int major = 1) {
    SCOPED_TRACE(dict);
    const auto f = npy_with_header(dict, data, major);
    expect_io_error([&] { (void)io::read_npy(f, "'t.npy'"); }, needle);
    expect_io_error([&] { (void)io::read_npy(f, "'t.npy'"); }, "'t.npy'");
  };
  const std::string fo = "'fortran_order': False, ";
  bad("{'descr': '<f4', " + fo + "'shape': (2, 3), 'extra': 1}\n", 24, "unknown header key 'extra'");
  bad("{'descr': '<f4', " + fo + "}\n", 24, "no 'shape' key");
  bad("{'descr': '<f4', 'descr': '<f4', " + fo + "'shape': (6,)}\n", 24, "repeats the key 'descr'");
  bad("{'descr': '|O', " + fo + "'shape': (1,)}\n", 8, "Python objects");
  bad("{'descr': '<c8', " + fo + "'shape': (1,)}\n", 8, "unsupported dtype '<c8'");
  bad("{'descr': '|f4', " + fo + "'shape': (1,)}\n", 4, "unsupported dtype '|f4'");
  bad("{'descr': [('a', '<f4')], " + fo + "'shape': (1,)}\n", 4, "expected a quoted string");
  bad("{'descr': '<f4', " + fo + "'shape': (6)}\n", 24, "parenthesised integer");
  bad("{'descr': '<f4', " + fo + "'shape': (-1,)}\n", 24, "expected a non-negative integer");
  bad("{'descr': '<f4', " + fo + "'shape': (06,)}\n", 24, "leading zero");
  bad("{'descr': '<f4', " + fo + "'shape': [6]}\n", 24, "expected '(' opening the shape tuple");
  bad("{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}\n", 24, "expected True or False");
  bad("{'descr': '<f4', " + fo + "'shape': (6,)}   ", 24, "final newline");
  bad("{'descr': '<f4', " + fo + "'shape': (6,)} x\n", 24, "final newline");
  bad("{'descr': '<f4' " + fo + "'shape': (6,)}\n", 24, "expected ',' or '}'");
  bad("{'descr': '<f\\4', " + fo + "'shape': (6,)}\n", 24, "inside a string");
  bad("{'descr': '<f4', " + fo + "'shape': (6,)}\n", 20, "has 20 data bytes (expected 24");
  bad("{'descr': '<f4', " + fo + "'shape': (6,)}\n", 28, "has 28 data bytes (expected 24");
  bad("{'descr': '<f8', " + fo + "'shape': (4294967296, 4294967296)}\n", 8, "overflows");
  bad("{'descr': '<f8', " + fo + "'shape': (99999999999999999999,)}\n", 8, "above 2^63 - 1");
  std::string deep = "(";
  for (int i = 0; i < 65; ++i) deep += "1, ";
  bad("{'descr': '<f4', " + fo + "'shape': " + deep + ")}\n", 4, "more than 64 dimensions");
  bad("{'descr': '<f4', " + fo + "'shape': (6,)}\n", 24, "version 4.0", 4);

  expect_io_error([] { (void)io::read_npy(qprune::test::to_bytes(std::string("\x93NUMPX\x01\x00\x00\x00", 10))); }, ".npy magic");
  expect_io_error([] { (void)io::read_npy(qprune::test::to_bytes("\x93NUMPY\x01")); }, "expected at least the 10-byte");
  expect_io_error([] { (void)io::read_npy(qprune::test::to_bytes(std::string("\x93NUMPY\x01\x00\xff\x00{", 11))); },
                  "declares a 255-byte header");
  expect_io_error([] { (void)io::read_npy(qprune::test::to_bytes(std::string("\x93NUMPY\x02\x00\x05\x00", 10))); },
                  "12-byte");
}

// ---------------------------------------------------------------- .npz

TEST(npz, numpy_written_archives_load) {
  for (const char* file : {"np_savez.npz", "np_savez_compressed.npz", "np_savez_zip64.npz"}) {
    SCOPED_TRACE(file);
    const auto arrays = io::read_npz(qprune::test::data_path(std::string("io/") + file));
    const json& m = manifest()[file];
    ASSERT_EQ(arrays.size(), m.size());
    for (const auto& a : arrays) expect_matches_manifest(a, m[a.name()]);
  }
  // Central-directory order is numpy's argument order.
  const auto arrays = io::read_npz(qprune::test::read_raw<std::byte>("io/np_savez.npz"));
  EXPECT_EQ(arrays[0].name(), "weight");
  EXPECT_EQ(arrays[1].name(), "bias");
  EXPECT_EQ(arrays[2].name(), "mask");
}

TEST(npz, round_trips_stored_and_deflated) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(72);
  std::vector<io::array> arrays;
  std::vector<float> w(300);
  for (auto& x : w) x = static_cast<float>(static_cast<std::int64_t>(rng() % 2001) - 1000) / 64.f;
  arrays.push_back(io::array::from_float("layer.0.weight", {20, 15}, w, io::dtype::f32));
  arrays.push_back(io::array::from_float("layer.0.bias", {15}, std::span(w).first(15), io::dtype::f16));
  arrays.push_back(io::array::from_float("mask", {15, 20}, w, io::dtype::boolean, io::array_order::fortran));
  arrays.push_back(io::array::from_float("scalar", {}, std::span(w).first(1), io::dtype::f64));
  arrays.push_back(io::array::from_float("empty", {0}, {}, io::dtype::i64));
  for (const auto method : {io::zip_method::stored, io::zip_method::deflated}) {
    const auto zip = io::encode_npz(arrays, method);
    const auto back = io::read_npz(zip);
    ASSERT_EQ(back.size(), arrays.size());
    for (std::size_t i = 0; i < arrays.size(); ++i) {
      EXPECT_EQ(back[i].name(), arrays[i].name());
      EXPECT_EQ(back[i].type(), arrays[i].type());
      EXPECT_EQ(back[i].shape(), arrays[i].shape());
      EXPECT_EQ(back[i].order(), arrays[i].order());
      EXPECT_TRUE(std::equal(back[i].bytes().begin(), back[i].bytes().end(), arrays[i].bytes().begin(),
                             arrays[i].bytes().end()));
    }
    if (method == io::zip_method::deflated) {
      EXPECT_LT(zip.size(), io::encode_npz(arrays).size());
    }
  }
  // numpy's own archives re-encode to archives with the same members.
  const auto np = io::read_npz(qprune::test::read_raw<std::byte>("io/np_savez_compressed.npz"));
  const auto re = io::read_npz(io::encode_npz(np, io::zip_method::deflated));
  for (std::size_t i = 0; i < np.size(); ++i) EXPECT_EQ(float_bits(re[i].to_float()), float_bits(np[i].to_float()));
  std::vector<io::array> dup = {arrays[0], arrays[0]};
  EXPECT_THROW((void)io::encode_npz(dup), qprune::config_error);
}

TEST(npz, write_and_read_a_file) {
  const fs::path p = fs::temp_directory_path() / "qprune_npz_write_test.npz";
  const std::vector<io::array> arrays = {io::array::from_values<std::int32_t>("k", {3}, std::vector<std::int32_t>{1, -2, 3})};
  io::write_npz(p, arrays, io::zip_method::deflated);
  const auto back = io::read_npz(p);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].to_float(), (std::vector<float>{1, -2, 3}));
  fs::remove(p);
}

/// Offset of the first occurrence of the 4-byte little-endian signature `sig` at or after `from`.
std::size_t find_sig(const std::vector<std::byte>& b, std::uint32_t sig, std::size_t from = 0) {
  for (std::size_t i = from; i + 4 <= b.size(); ++i) {
    if (io::detail::load_le<std::uint32_t>(b.data() + i) == sig) return i;
  }
  ADD_FAILURE() << "signature not found";
  return 0;
}

TEST(npz, rejects_malformed_archives) {
  const std::vector<io::array> arrays = {
      io::array::from_values<float>("a", {2}, std::vector<float>{1, 2}),
      io::array::from_values<float>("b", {2}, std::vector<float>{3, 4})};
  const auto good = io::encode_npz(arrays);
  const std::size_t cd = find_sig(good, io::detail::zip_central_sig);
  const std::size_t cd2 = find_sig(good, io::detail::zip_central_sig, cd + 4);
  const std::size_t eocd = find_sig(good, io::detail::zip_eocd_sig);
  const auto patched = [&](std::size_t off, std::initializer_list<std::uint8_t> v) {
    auto b = good;
    for (const auto x : v) b[off++] = std::byte{x};
    return b;
  };
  const auto bad = [](const std::vector<std::byte>& b, const std::string& needle) {
    expect_io_error([&] { (void)io::read_npz(b, "'t.npz'"); }, needle);
  };
  bad(patched(cd + 8, {0x01, 0x00}), "member 'a.npy' is encrypted");
  bad(patched(cd + 10, {12, 0}), "compression method 12");
  bad(patched(cd + 16, {0x00, 0x00, 0x00, 0x00}), "CRC-32");
  bad(patched(cd + 46, {'a', '.', 'n', 'p', 'z'}), "different name in its local header");
  const std::size_t local2 = find_sig(good, io::detail::zip_local_sig, 4);
  auto dup = patched(cd2 + 46, {'a'});
  dup[local2 + 30] = std::byte{'a'};
  bad(dup, "two members named 'a.npy'");
  // Member a's sizes grown by 10 bytes: its data runs into b's local header.
  const auto a_size = io::detail::load_le<std::uint32_t>(good.data() + cd + 20);
  auto overlap = good;
  io::detail::store_le<std::uint32_t>(overlap.data() + cd + 20, a_size + 10);
  io::detail::store_le<std::uint32_t>(overlap.data() + cd + 24, a_size + 10);
  bad(overlap, "members 'a.npy' and 'b.npy' overlap");
  bad(patched(cd + 42, {0xFF, 0xFF, 0, 0}), "local header at offset 65535");
  bad(patched(cd + 20, {0xFF, 0xFF, 0, 0}), "is stored with 65535 compressed");
  bad(patched(cd + 20, {0xFF, 0xFF, 0xFF, 0xFF}), "no zip64 extra field");
  bad(patched(eocd + 10, {3, 0}), "multi-disk");
  bad(patched(eocd + 8, {3, 0, 3, 0}), "declares 3 members");
  bad(patched(eocd + 16, {0, 0, 0, 0}), "expected it to end at offset");
  bad(patched(eocd + 20, {1, 0}), "no end of central directory record");
  bad(patched(0, {'Q'}), "no local header");
  auto fake = qprune::test::to_bytes("not a zip file at all, but long enough");
  bad(fake, "no end of central directory record");
  bad(qprune::test::to_bytes("PK"), "expected at least the 22-byte");
  // A member that is not .npy.
  auto renamed = good;
  for (const std::size_t off : {std::size_t{30}, cd + 46}) renamed[off + 2] = std::byte{'x'};  // "a.xpy"
  bad(renamed, "is not a .npy file");
}

TEST(npz, rejects_lying_deflate_sizes) {
  const std::vector<io::array> arrays = {io::array::from_float("z", {1000}, std::vector<float>(1000, 0.f), io::dtype::f32)};
  const auto good = io::encode_npz(arrays, io::zip_method::deflated);
  const std::size_t cd = find_sig(good, io::detail::zip_central_sig);
  auto b = good;
  // Uncompressed size claims 1 byte more than the stream inflates to.
  const auto u = io::detail::load_le<std::uint32_t>(b.data() + cd + 24);
  io::detail::store_le<std::uint32_t>(b.data() + cd + 24, u + 1);
  expect_io_error([&] { (void)io::read_npz(b); }, "inflates to " + std::to_string(u) + " bytes");
  io::detail::store_le<std::uint32_t>(b.data() + cd + 24, u - 1);
  expect_io_error([&] { (void)io::read_npz(b); }, "inflates to more than");
  io::detail::store_le<std::uint32_t>(b.data() + cd + 24, 0x7FFFFFFF);
  expect_io_error([&] { (void)io::read_npz(b); }, "1032:1");
}

// ---------------------------------------------------------------- corruption sweep

template <class Read>
void corruption_sweep(const std::vector<std::byte>& good, Read read) {
  (void)read(good);  // the intact file reads
  int errors = 0;
  for (std::size_t len = 0; len < good.size(); ++len) {
    const std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    try {
      (void)read(cut);
      ADD_FAILURE() << "truncation to " << len << " bytes was accepted";
    } catch (const qprune::io_error&) {
      ++errors;
    }
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (const std::uint8_t mask : {std::uint8_t{0xFF}, std::uint8_t{0x01}, std::uint8_t{0x80}}) {
      auto b = good;
      b[i] ^= std::byte{mask};
      try {
        const auto r = read(b);
        (void)r;
      } catch (const qprune::io_error&) {
        ++errors;
      }
    }
  }
  EXPECT_GE(errors, static_cast<int>(good.size()));
}

TEST(npy, corruption_sweep_yields_only_io_errors) {
  corruption_sweep(qprune::test::read_raw<std::byte>("io/sweep.npy"), [](const std::vector<std::byte>& b) {
    const auto a = io::read_npy(b);
    return a.to_float();  // every accepted file converts
  });
}

TEST(npz, corruption_sweep_yields_only_io_errors) {
  for (const char* f : {"sweep.npz", "sweep_deflated.npz", "np_savez_zip64.npz"}) {
    SCOPED_TRACE(f);
    corruption_sweep(qprune::test::read_raw<std::byte>(std::string("io/") + f), [](const std::vector<std::byte>& b) {
      const auto arrays = io::read_npz(b);
      for (const auto& a : arrays) (void)a.to_float();
      return arrays.size();
    });
  }
}

}  // namespace

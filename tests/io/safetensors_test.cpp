// safetensors: torch-created tensors (written by tests/data/io/gen_io_files.py
// following the format's specification) load with torch's values, bf16 included;
// the writer reproduces the reference implementation's bytes (its own unit-test
// vectors and our generator's files); every dtype round-trips; malformed headers
// and offsets throw io_error; a corruption sweep only ever yields io_error.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "qprune/io/array.hpp"
#include "qprune/io/mmap.hpp"
#include "qprune/io/safetensors.hpp"
#include "support/data.hpp"
#include "support/json.hpp"
#include "support/random.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = qprune::io;
using qprune::index_t;
using qprune::test::json;

std::vector<std::byte> u8_bytes(std::initializer_list<int> v) {
  std::vector<std::byte> b;
  for (const int x : v) b.push_back(static_cast<std::byte>(x));
  return b;
}

/// A file with header `json` (no padding) followed by `data_bytes` bytes.
std::vector<std::byte> st_file(const std::string& header, std::size_t data_bytes) {
  std::vector<std::byte> b(8);
  io::detail::store_le<std::uint64_t>(b.data(), header.size());
  const auto h = qprune::test::to_bytes(header);
  b.insert(b.end(), h.begin(), h.end());
  b.resize(b.size() + data_bytes, std::byte{0});
  return b;
}

template <class F>
void expect_io_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no io_error; expected one containing: " << needle;
  } catch (const qprune::io_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

io::dtype st_dtype(const std::string& s) {
  io::dtype t{};
  EXPECT_TRUE(io::detail::safetensors_dtype_from_name(s, t)) << s;
  return t;
}

std::vector<std::uint32_t> float_bits(const std::vector<float>& v) {
  std::vector<std::uint32_t> b;
  for (const float x : v) b.push_back(std::bit_cast<std::uint32_t>(x));
  return b;
}

const json& manifest() {
  static const json m = qprune::test::load_json("io/manifest.json");
  return m;
}

TEST(safetensors, torch_tensors_load_with_torch_values) {
  const auto f = io::read_safetensors(qprune::test::data_path("io/torch.safetensors"));
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"source", "gen_io_files.py"}}));
  const json& m = manifest()["torch.safetensors"];
  ASSERT_EQ(f.tensors.size(), m.size());
  for (const auto& a : f.tensors) {
    SCOPED_TRACE(a.name());
    const json& e = m[a.name()];
    EXPECT_EQ(a.type(), st_dtype(e["dtype"].get<std::string>()));
    EXPECT_EQ(a.shape(), e["shape"].get<std::vector<index_t>>());
    // In place: the reference layout keeps every tensor aligned to its element size.
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.bytes().data()) % io::dtype_size(a.type()), 0u);
    const auto v = a.to_float();
    EXPECT_EQ(float_bits(v), e["values_bits"].get<std::vector<std::uint32_t>>());
    double sum = 0;
    for (const float x : v) sum += x;
    const double want = qprune::test::f64(e["sum_bits64"]);
    EXPECT_NEAR(sum, want, 1e-12 * (1 + std::abs(want)));
  }
  // Data-offset order: the reference writer's order (largest dtype first, then name).
  std::vector<std::string> names;
  for (const auto& a : f.tensors) names.push_back(a.name());
  EXPECT_EQ(names, (std::vector<std::string>{"q.i64", "w.f64", "empty", "scalar", "w.f32", "q.i32", "w.bf16",
                                             "w.f16", "q.i16", "q.i8", "q.u8", "mask"}));
  ASSERT_NE(f.find("w.bf16"), nullptr);
  EXPECT_EQ(f.find("w.bf16")->values<qprune::bfloat16>().size(), 15u);
  EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(safetensors, raw_dtypes_keep_their_bytes) {
  const auto f = io::read_safetensors(qprune::test::read_raw<std::byte>("io/raw_dtypes.safetensors"));
  const io::array* e4 = f.find("f8a");
  ASSERT_NE(e4, nullptr);
  EXPECT_EQ(e4->type(), io::dtype::f8_e4m3);
  EXPECT_EQ(std::vector<std::byte>(e4->bytes().begin(), e4->bytes().end()), u8_bytes({0x00, 0x38, 0xb8, 0x7e}));
  EXPECT_THROW((void)e4->to_float(), qprune::config_error);
  EXPECT_EQ(f.find("f8b")->type(), io::dtype::f8_e5m2);
  EXPECT_EQ(f.find("f8b")->shape(), (std::vector<index_t>{2, 2}));
  EXPECT_THROW((void)f.find("f8b")->to_float(), qprune::config_error);
  const json& m = manifest()["raw_dtypes.safetensors"];
  for (const char* n : {"u16", "u32", "u64"}) {
    EXPECT_EQ(float_bits(f.find(n)->to_float()), m[n]["values_bits"].get<std::vector<std::uint32_t>>()) << n;
  }
  EXPECT_EQ(f.find("u64")->values<std::uint64_t>()[1], std::numeric_limits<std::uint64_t>::max());
  EXPECT_TRUE(f.metadata.empty());
}

TEST(safetensors, writer_reproduces_reference_bytes) {
  // The reference implementation's own serialization vectors (safetensors/src/tensor.rs tests).
  const std::vector<float> v = {0, 1, 2, 3, 4, 5};
  const std::vector<io::array> one = {io::array::from_values<float>("attn.0", {1, 2, 3}, v)};
  std::vector<std::byte> want = u8_bytes({64, 0, 0, 0, 0, 0, 0, 0});
  const auto h = qprune::test::to_bytes(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})");
  want.insert(want.end(), h.begin(), h.end());
  const auto d = u8_bytes({0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64});
  want.insert(want.end(), d.begin(), d.end());
  EXPECT_EQ(io::encode_safetensors(one), want);

  const std::vector<io::array> aligned = {io::array::from_values<float>("attn0", {1, 1, 2, 3}, v)};
  const auto out = io::encode_safetensors(aligned);
  EXPECT_EQ(io::detail::load_le<std::uint64_t>(out.data()), 72u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()) + 8, 72),
            R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + std::string(7, ' '));

  EXPECT_EQ(io::encode_safetensors({}), u8_bytes({8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 32, 32, 32, 32, 32, 32}));
  const auto meta = io::encode_safetensors({}, {{"framework", "pt"}});
  EXPECT_EQ(io::detail::load_le<std::uint64_t>(meta.data()), 40u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(meta.data()) + 8, 40),
            R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '));
  EXPECT_TRUE(io::read_safetensors(meta).tensors.empty());

  // Our generator's files (written as the reference writes them) re-encode byte for byte.
  for (const char* file : {"torch.safetensors", "raw_dtypes.safetensors", "sweep.safetensors"}) {
    SCOPED_TRACE(file);
    const auto bytes = qprune::test::read_raw<std::byte>(std::string("io/") + file);
    const auto f = io::read_safetensors(bytes);
    EXPECT_EQ(io::encode_safetensors(f.tensors, f.metadata), bytes);
  }
}

TEST(safetensors, round_trips_every_dtype) {
  SCOPED_TRACE(qprune::test::seed_trace());
  auto rng = qprune::test::make_rng(73);
  std::vector<io::array> arrays;
  const std::vector<std::vector<index_t>> shapes = {{3, 5}, {7}, {}, {0, 2}, {2, 1, 3}};
  int k = 0;
  for (std::uint8_t t = 0; t <= static_cast<std::uint8_t>(io::dtype::u64); ++t) {
    for (const auto& shape : shapes) {
      index_t n = 1;
      for (const index_t d : shape) n *= d;
      std::vector<std::byte> raw(static_cast<std::size_t>(n) * io::dtype_size(static_cast<io::dtype>(t)));
      for (auto& b : raw) b = static_cast<std::byte>(rng() % 256);
      std::string name = std::to_string(k++);
      name.insert(name.begin(), 't');
      arrays.push_back(io::array::copy_of(std::move(name), static_cast<io::dtype>(t), shape,
                                          io::array_order::c, raw));
    }
  }
  const auto bytes = io::encode_safetensors(arrays, {{"k", "v\"\\\n\xc3\xa9"}});
  const auto f = io::read_safetensors(bytes);
  EXPECT_EQ(f.metadata.at("k"), "v\"\\\n\xc3\xa9");
  ASSERT_EQ(f.tensors.size(), arrays.size());
  for (const auto& a : arrays) {
    const io::array* b = f.find(a.name());
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->type(), a.type());
    EXPECT_EQ(b->shape(), a.shape());
    EXPECT_TRUE(std::equal(a.bytes().begin(), a.bytes().end(), b->bytes().begin(), b->bytes().end()));
    EXPECT_EQ(static_cast<std::size_t>(b->bytes().data() - bytes.data()) % io::dtype_size(b->type()), 0u);
  }
  // Fortran-order arrays are written in C order.
  const std::vector<io::array> f_arr = {
      io::array::from_values<std::int16_t>("f", {2, 3}, std::vector<std::int16_t>{0, 3, 1, 4, 2, 5},
                                           io::array_order::fortran)};
  const auto fc = io::read_safetensors(io::encode_safetensors(f_arr));
  const auto vals = fc.tensors[0].values<std::int16_t>();
  EXPECT_EQ(std::vector<std::int16_t>(vals.begin(), vals.end()), (std::vector<std::int16_t>{0, 1, 2, 3, 4, 5}));
}

TEST(safetensors, writer_rejects_bad_names) {
  const auto a = io::array::from_values<float>("x", {1}, std::vector<float>{1});
  const std::vector<io::array> dup = {a, a};
  EXPECT_THROW((void)io::encode_safetensors(dup), qprune::config_error);
  const std::vector<io::array> reserved = {a.renamed("__metadata__")};
  EXPECT_THROW((void)io::encode_safetensors(reserved), qprune::config_error);
  const std::vector<io::array> bad_utf8 = {a.renamed("\xff")};
  EXPECT_THROW((void)io::encode_safetensors(bad_utf8), qprune::config_error);
}

TEST(safetensors, write_and_read_a_file) {
  const fs::path p = fs::temp_directory_path() / "qprune_safetensors_write_test.safetensors";
  const std::vector<io::array> arrays = {
      io::array::from_float("w", {2, 2}, std::vector<float>{1.f, -2.f, 0.5f, 3.f}, io::dtype::bf16)};
  io::write_safetensors(p, arrays, {{"a", "b"}});
  const auto f = io::read_safetensors(p);
  EXPECT_EQ(f.tensors[0].to_float(), (std::vector<float>{1.f, -2.f, 0.5f, 3.f}));
  EXPECT_EQ(f.metadata.at("a"), "b");
  fs::remove(p);
  expect_io_error([&] { (void)io::read_safetensors(p); }, p.string());
}

TEST(safetensors, rejects_malformed_files) {
  const auto bad = [](const std::vector<std::byte>& b, const std::string& needle) {
    expect_io_error([&] { (void)io::read_safetensors(b, "'m.safetensors'"); }, needle);
    expect_io_error([&] { (void)io::read_safetensors(b, "'m.safetensors'"); }, "'m.safetensors'");
  };
  const std::string t = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  bad(qprune::test::to_bytes("1234567"), "expected at least the 8-byte header size");
  auto huge = st_file("{}", 0);
  io::detail::store_le<std::uint64_t>(huge.data(), 100'000'001);
  bad(huge, "declares a 100000001-byte header (expected at most 100000000)");
  io::detail::store_le<std::uint64_t>(huge.data(), 3);
  bad(huge, "declares a 3-byte header but has 2");
  io::detail::store_le<std::uint64_t>(huge.data(), ~std::uint64_t{0});
  bad(huge, "expected at most 100000000");
  bad(st_file(" {}", 0), "does not start with '{'");
  bad(st_file("", 0), "does not start with '{'");
  bad(st_file("{" + t, 8), "invalid JSON header");
  bad(st_file("{\"\xff\":1}", 0), "invalid JSON header");
  bad(st_file("{" + t + "," + t + "}", 8), "key 't' twice");
  bad(st_file(R"({"t":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8), "key 'dtype' twice");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", 8), "nested deeper");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":[{}]}})", 8), "nested deeper");
  bad(st_file("[]", 0), "does not start with '{'");
  bad(st_file(R"({"t":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}})", 16), "of dtype \"C64\"");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "expected a non-negative integer");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "expected a non-negative integer");
  bad(st_file(R"({"t":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8), "non-array shape");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), "not a pair");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "without 'data_offsets'");
  bad(st_file(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8), "without 'dtype'");
  bad(st_file(R"({"t":[1]})", 8), "non-object");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", 12), "expected a span of 8 bytes");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "data_offsets [8, 0]");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "at data offset 4 (expected 0");
  bad(st_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"I8","shape":[2],"data_offsets":[6,8]}})", 8),
      "at data offset 6 (expected 8");
  bad(st_file("{" + t + "}", 9), "has 9 bytes of data (expected 8");
  bad(st_file("{" + t + "}", 4), "has 4 bytes of data (expected 8");
  bad(st_file(R"({"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0), "overflows");
  bad(st_file(R"({"t":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})", 0), "at most 2^63 - 1");
  bad(st_file(R"({"__metadata__":{"a":1}})", 0), "non-string value");
  bad(st_file(R"({"__metadata__":[]})", 0), "not an object");
  // Accepted: whitespace padding, null metadata, any key order, zero-size tensors at one offset.
  const auto ok = io::read_safetensors(st_file(
      R"({"__metadata__":null, "z":{"shape":[0],"data_offsets":[0,0],"dtype":"F32"},)"
      R"("e":{"dtype":"I8","shape":[0,3],"data_offsets":[0,0]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   )",
      8));
  EXPECT_EQ(ok.tensors.size(), 3u);
  EXPECT_EQ(ok.tensors.back().name(), "t");
}

TEST(safetensors, corruption_sweep_yields_only_io_errors) {
  const auto good = qprune::test::read_raw<std::byte>("io/sweep.safetensors");
  ASSERT_LT(good.size(), 400u);
  (void)io::read_safetensors(good);
  for (std::size_t len = 0; len < good.size(); ++len) {
    const std::vector<std::byte> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW((void)io::read_safetensors(cut), qprune::io_error) << "truncated to " << len;
  }
  int errors = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (const std::uint8_t mask : {std::uint8_t{0xFF}, std::uint8_t{0x01}, std::uint8_t{0x80}}) {
      auto b = good;
      b[i] ^= std::byte{mask};
      try {
        const auto f = io::read_safetensors(b);
        for (const auto& a : f.tensors) {
          if (io::converts_to_float(a.type())) (void)a.to_float();
        }
      } catch (const qprune::io_error&) {
        ++errors;
      }
    }
  }
  // Every flip of the size field or the JSON structure is caught; data bytes may change freely.
  EXPECT_GT(errors, static_cast<int>(good.size()));
}

}  // namespace

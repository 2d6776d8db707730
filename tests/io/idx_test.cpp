// IDX reading (plain and gzip), its validation, and Fashion-MNIST as Debian's
// dataset-fashion-mnist installs it.
#include "qprune/io/idx.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using qprune::index_t;

class idx_files : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qprune_idx_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::vector<std::uint8_t>& bytes, bool gzip = false) {
    const fs::path p = dir_ / name;
    if (gzip) {
      gzFile f = gzopen(p.string().c_str(), "wb");
      EXPECT_NE(f, nullptr);
      EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
                static_cast<int>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(p, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    return p;
  }
  fs::path dir_;
};

std::vector<std::uint8_t> idx(std::vector<std::uint32_t> dims, std::vector<std::uint8_t> data) {
  std::vector<std::uint8_t> b{0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  }
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

template <class F>
std::string io_message(F&& f) {
  try {
    f();
  } catch (const qprune::io_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected qprune::io_error";
  return {};
}

TEST_F(idx_files, reads_plain_and_gzip_alike) {
  const std::vector<std::uint8_t> data{1, 2, 3, 4, 5, 6, 250, 251, 252, 253, 254, 255};
  for (bool gz : {false, true}) {
    const auto a = qprune::io::read_idx(write(gz ? "a.gz" : "a", idx({2, 3, 2}, data), gz));
    EXPECT_EQ(a.dims, (std::vector<index_t>{2, 3, 2}));
    EXPECT_EQ(a.data, data);
  }
}

TEST_F(idx_files, rejects_bad_headers_and_lengths) {
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(dir_ / "missing"); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("short", {0, 0, 8})); })
                .find("at least the 4-byte IDX magic"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("magic", {1, 0, 8, 1, 0, 0, 0, 1, 7})); })
                .find("IDX magic"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("type", {0, 0, 0x0D, 1, 0, 0, 0, 1, 7})); })
                .find("expected 0x08"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("rank", {0, 0, 8, 0})); })
                .find("expected 1 to 4"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("hdr", {0, 0, 8, 2, 0, 0, 0, 1})); })
                .find("truncated inside its header"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("zero", idx({2, 0}, {}))); })
                .find("dimension 1 = 0"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("trunc", idx({2, 3}, {1, 2, 3, 4, 5}))); })
                .find("has 5 data bytes (expected 6"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(write("long", idx({2}, {1, 2, 3}))); })
                .find("has 3 data bytes (expected 2"),
            std::string::npos);
  EXPECT_NE(io_message([&] {
              (void)qprune::io::read_idx(write("huge", idx({0x7fffffff, 0x7fffffff}, {})));
            }).find("2^40"),
            std::string::npos);
  // A gzip stream cut short is reported, not read as a short file.
  auto gz = write("cut.gz", idx({64}, std::vector<std::uint8_t>(64, 7)), true);
  const auto full = fs::file_size(gz);
  fs::resize_file(gz, full - 6);
  EXPECT_NE(io_message([&] { (void)qprune::io::read_idx(gz); }).find("middle of its gzip stream"),
            std::string::npos);
}

TEST_F(idx_files, mnist_pairs_must_agree) {
  const auto images = write("im", idx({2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7}));
  const auto labels = write("lb", idx({2}, {3, 9}));
  const auto set = qprune::io::load_mnist(images, labels);
  EXPECT_EQ(set.count, 2);
  EXPECT_EQ(set.pixels(), 4);
  EXPECT_EQ(set.labels, (std::vector<std::uint8_t>{3, 9}));
  EXPECT_NE(io_message([&] { (void)qprune::io::load_mnist(images, write("lb3", idx({3}, {1, 2, 3}))); })
                .find("holds 2 images but"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::load_mnist(labels, labels); }).find("expected 3"),
            std::string::npos);
  EXPECT_NE(io_message([&] { (void)qprune::io::load_mnist(images, images); }).find("expected 1"),
            std::string::npos);
}

TEST_F(idx_files, missing_fashion_mnist_names_the_package) {
  const std::string m = io_message([&] { (void)qprune::io::load_fashion_mnist(qprune::io::split::test, dir_); });
  EXPECT_NE(m.find("t10k-images-idx3-ubyte"), std::string::npos) << m;
  EXPECT_NE(m.find("dataset-fashion-mnist"), std::string::npos) << m;
}

TEST_F(idx_files, labels_outside_ten_classes_are_rejected) {
  write("t10k-images-idx3-ubyte", idx({1, 1, 2}, {0, 255}));
  write("t10k-labels-idx1-ubyte.gz", idx({1}, {10}), true);
  EXPECT_NE(io_message([&] { (void)qprune::io::load_fashion_mnist(qprune::io::split::test, dir_); })
                .find("label 0 is 10"),
            std::string::npos);
}

TEST(normalized_images, maps_pixels_and_checks_ranges) {
  qprune::io::mnist_set set{3, 1, 2, {0, 255, 51, 102, 7, 8}, {0, 1, 2}};
  const auto x = qprune::io::normalized_images(set, 0.5f, 0.25f, 1, 2);
  ASSERT_EQ(x.extent(0), 2);
  ASSERT_EQ(x.extent(1), 2);
  EXPECT_EQ(x(0, 0), (51.0f / 255.0f - 0.5f) / 0.25f);
  EXPECT_EQ(x(0, 1), (102.0f / 255.0f - 0.5f) / 0.25f);
  EXPECT_EQ(x(1, 0), (7.0f / 255.0f - 0.5f) / 0.25f);
  EXPECT_EQ(qprune::io::normalized_images(set, 0.0f, 1.0f).extent(0), 3);
  EXPECT_THROW((void)qprune::io::normalized_images(set, 0.0f, 1.0f, 2, 2), qprune::shape_error);
  EXPECT_THROW((void)qprune::io::normalized_images(set, 0.0f, 0.0f), qprune::config_error);
}

// The real data set, as the CI script installs it (dataset-fashion-mnist).
TEST(fashion_mnist, debian_package_loads_with_known_contents) {
  const auto train = qprune::io::load_fashion_mnist(qprune::io::split::train);
  const auto test = qprune::io::load_fashion_mnist(qprune::io::split::test);
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(test.count, 10000);
  EXPECT_EQ(train.rows, 28);
  EXPECT_EQ(train.cols, 28);
  EXPECT_EQ(std::vector<std::uint8_t>(train.labels.begin(), train.labels.begin() + 10),
            (std::vector<std::uint8_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}));
  EXPECT_EQ(std::vector<std::uint8_t>(test.labels.begin(), test.labels.begin() + 10),
            (std::vector<std::uint8_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}));
  std::vector<int> per_class(10, 0);
  for (auto l : train.labels) ++per_class[l];
  for (int c : per_class) EXPECT_EQ(c, 6000);
  long first = 0;
  for (index_t i = 0; i < 784; ++i) first += train.images[static_cast<std::size_t>(i)];
  EXPECT_EQ(first, 76247);  // sum of the first training image's pixels (numpy on the same file)
}

}  // namespace

// IDX files (the MNIST family's format), plain or gzip-compressed, and the
// Fashion-MNIST data set as Debian's dataset-fashion-mnist package installs it.
// Every header field is validated before the data is trusted: a bad magic, a
// type other than unsigned byte, dimensions that overflow or disagree with the
// file's length all throw io_error naming the file.
#pragma once

#include <zlib.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"

namespace qprune::io {

/// An IDX array of unsigned bytes: its dimensions and its values, row-major.
struct idx_array {
  std::vector<index_t> dims;
  std::vector<std::uint8_t> data;
};

namespace detail {

/// "'<path>'" for messages, built with += ("'" + std::string trips GCC 12's
/// -Wrestrict at -O3, PR 105329).
inline std::string quoted(const std::filesystem::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

/// Reads a whole file through zlib, which passes uncompressed files through
/// unchanged, so `x.idx` and `x.idx.gz` read the same.
inline std::vector<std::uint8_t> read_maybe_gzip(const std::filesystem::path& path) {
  gzFile f = gzopen(path.string().c_str(), "rb");
  if (f == nullptr) {
    throw io_error("cannot open " + detail::quoted(path) + " (expected a readable IDX file)");
  }
  std::vector<std::uint8_t> out;
  std::array<std::uint8_t, 1 << 16> buf{};
  for (;;) {
    const int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      throw io_error(detail::quoted(path) + " is corrupt: " + msg +
                     " (expected an IDX file, optionally gzip-compressed)");
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  // A gzip stream that ends early reads as a short file; zlib reports it here.
  if (gzclose(f) != Z_OK) {
    throw io_error(detail::quoted(path) +
                   " ends in the middle of its gzip stream (expected a complete file)");
  }
  return out;
}

inline std::uint32_t read_be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace detail

/// Reads an IDX file of unsigned bytes (type code 0x08), gzip-compressed or not.
/// Throws io_error when the file is missing or unreadable, the magic is not
/// 00 00 08 nd, a dimension is 0 or the element count overflows, or the data
/// length differs from the product of the dimensions.
[[nodiscard]] inline idx_array read_idx(const std::filesystem::path& path) {
  std::vector<std::uint8_t> bytes = detail::read_maybe_gzip(path);
  const std::string name = detail::quoted(path);
  if (bytes.size() < 4) {
    throw io_error(name + " has " + std::to_string(bytes.size()) +
                   " bytes (expected at least the 4-byte IDX magic)");
  }
  if (bytes[0] != 0 || bytes[1] != 0) {
    throw io_error(name + " does not start with an IDX magic (expected bytes 00 00)");
  }
  if (bytes[2] != 0x08) {
    throw io_error(name + " holds IDX type 0x" + std::to_string(bytes[2]) +
                   " (expected 0x08, unsigned bytes)");
  }
  const std::size_t rank = bytes[3];
  if (rank == 0 || rank > 4) {
    throw io_error(name + " declares " + std::to_string(rank) + " dimensions (expected 1 to 4)");
  }
  const std::size_t header = 4 + 4 * rank;
  if (bytes.size() < header) {
    throw io_error(name + " is truncated inside its header (" + std::to_string(bytes.size()) +
                   " bytes, expected at least " + std::to_string(header) + ")");
  }
  idx_array a;
  std::uint64_t count = 1;
  for (std::size_t i = 0; i < rank; ++i) {
    const std::uint32_t d = detail::read_be32(bytes.data() + 4 + 4 * i);
    if (d == 0 || d > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max())) {
      throw io_error(name + " has dimension " + std::to_string(i) + " = " + std::to_string(d) +
                     " (expected 1 to 2^31 - 1)");
    }
    count *= d;
    if (count > (std::uint64_t{1} << 40)) {
      throw io_error(name + " declares more than 2^40 elements (expected a realistic data set)");
    }
    a.dims.push_back(static_cast<index_t>(d));
  }
  if (bytes.size() - header != count) {
    throw io_error(name + " has " + std::to_string(bytes.size() - header) +
                   " data bytes (expected " + std::to_string(count) + " from its dimensions)");
  }
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header));
  a.data = std::move(bytes);
  return a;
}

/// An image classification set: `count` images of rows x cols bytes and one
/// label byte each.
struct mnist_set {
  index_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> images;  ///< count * rows * cols, image-major, row-major pixels
  std::vector<std::uint8_t> labels;  ///< count
  /// Pixels per image.
  [[nodiscard]] index_t pixels() const noexcept { return rows * cols; }
};

/// Reads an MNIST-style image file ([count, rows, cols]) and label file
/// ([count]). Throws io_error for anything read_idx rejects, for ranks other
/// than 3 and 1, or for counts that differ.
[[nodiscard]] inline mnist_set load_mnist(const std::filesystem::path& images,
                                          const std::filesystem::path& labels) {
  idx_array im = read_idx(images), lb = read_idx(labels);
  if (im.dims.size() != 3) {
    throw io_error(detail::quoted(images) + " has " + std::to_string(im.dims.size()) +
                   " dimensions (expected 3: count, rows, cols)");
  }
  if (lb.dims.size() != 1) {
    throw io_error(detail::quoted(labels) + " has " + std::to_string(lb.dims.size()) +
                   " dimensions (expected 1: count)");
  }
  if (im.dims[0] != lb.dims[0]) {
    throw io_error(detail::quoted(images) + " holds " + std::to_string(im.dims[0]) + " images but " +
                   detail::quoted(labels) + " " + std::to_string(lb.dims[0]) +
                   " labels (expected the same count)");
  }
  return {im.dims[0], im.dims[1], im.dims[2], std::move(im.data), std::move(lb.data)};
}

/// Which half of a data set.
enum class split { train, test };

/// The directory Fashion-MNIST is read from: $QPRUNE_FASHION_MNIST_DIR when set,
/// else where Debian's dataset-fashion-mnist installs it.
[[nodiscard]] inline std::filesystem::path fashion_mnist_dir() {
  if (const char* env = std::getenv("QPRUNE_FASHION_MNIST_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return "/usr/share/datasets/fashion-mnist";
}

/// Loads Fashion-MNIST's training (60,000) or test (10,000) images and labels
/// from `dir` (default fashion_mnist_dir()), reading `<prefix>-images-idx3-ubyte`
/// and `<prefix>-labels-idx1-ubyte` with or without `.gz`. Throws io_error when
/// the files are missing (saying which package provides them) or invalid, and
/// when a label is not 0..9.
[[nodiscard]] inline mnist_set load_fashion_mnist(split s, std::filesystem::path dir = {}) {
  if (dir.empty()) dir = fashion_mnist_dir();
  const std::string prefix = s == split::train ? "train" : "t10k";
  auto find = [&](const std::string& stem) {
    for (const char* ext : {".gz", ""}) {
      std::filesystem::path p = dir / (stem + ext);
      std::error_code ec;
      if (std::filesystem::is_regular_file(p, ec)) return p;
    }
    throw io_error("Fashion-MNIST file " + stem + "[.gz] not found in '" + dir.string() +
                   "' (expected Debian's package dataset-fashion-mnist: apt install "
                   "dataset-fashion-mnist, or set QPRUNE_FASHION_MNIST_DIR)");
  };
  const std::filesystem::path images = find(prefix + "-images-idx3-ubyte");
  mnist_set set = load_mnist(images, find(prefix + "-labels-idx1-ubyte"));
  for (std::size_t i = 0; i < set.labels.size(); ++i) {
    if (set.labels[i] > 9) {
      throw io_error("Fashion-MNIST label " + std::to_string(i) + " is " +
                     std::to_string(set.labels[i]) + " (expected a class 0 to 9)");
    }
  }
  return set;
}

/// Images [first, first + n) as a float matrix [n, rows * cols] of
/// (pixel / 255 - mean) / stddev, the usual input normalisation (Fashion-MNIST:
/// mean 0.286, stddev 0.353). n < 0 means "to the end". Throws shape_error for a
/// range outside the set and config_error for stddev <= 0.
[[nodiscard]] inline tensor<float, 2> normalized_images(const mnist_set& set, float mean,
                                                        float stddev, index_t first = 0,
                                                        index_t n = -1) {
  if (n < 0) n = set.count - first;
  if (first < 0 || n < 0 || first + n > set.count) {
    throw shape_error("images [" + std::to_string(first) + ", " + std::to_string(first + n) +
                      ") requested from a set of " + std::to_string(set.count) +
                      " (expected a range inside it)");
  }
  if (!(stddev > 0.0f)) {
    throw config_error("normalisation stddev " + std::to_string(stddev) + " (expected > 0)");
  }
  const index_t px = set.pixels();
  tensor<float, 2> out(n, px);
  const std::uint8_t* src = set.images.data() + first * px;
  float* dst = out.data();
  for (index_t i = 0; i < n * px; ++i) {
    dst[i] = (static_cast<float>(src[i]) / 255.0f - mean) / stddev;
  }
  return out;
}

}  // namespace qprune::io

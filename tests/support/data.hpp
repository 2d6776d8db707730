// Reading the committed reference vectors under tests/data/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qprune::test {

/// Absolute path of a file under tests/data/.
inline std::string data_path(const std::string& rel) {
  return std::string(QPRUNE_TEST_DATA_DIR) + "/" + rel;
}

/// Reads a raw little-endian array of T (the file's size must be a multiple of sizeof(T)).
template <class T>
std::vector<T> read_raw(const std::string& rel) {
  std::ifstream f(data_path(rel), std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("cannot open test data " + data_path(rel));
  const auto bytes = static_cast<std::size_t>(f.tellg());
  if (bytes % sizeof(T) != 0) throw std::runtime_error("odd size: " + data_path(rel));
  std::vector<T> v(bytes / sizeof(T));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(bytes));
  return v;
}

/// The bytes of `s` (hand-written file contents in tests).
inline std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
  return v;
}

}  // namespace qprune::test

// Reading the framework-generated JSON vectors under tests/data/: floats are
// stored as their IEEE bit patterns (uint32 in keys ending `_bits`, uint64 in
// `_bits64`), so nothing is lost to decimal printing.
#pragma once

#include <bit>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/data.hpp"

namespace qprune::test {

using json = nlohmann::json;

/// Parses tests/data/<rel>; throws std::runtime_error naming the file if it is missing.
inline json load_json(const std::string& rel) {
  std::ifstream f(data_path(rel));
  if (!f) throw std::runtime_error("cannot open test data " + data_path(rel));
  return json::parse(f);
}

/// A float from its uint32 bit pattern.
inline float f32(const json& bits) { return std::bit_cast<float>(bits.get<std::uint32_t>()); }
/// A double from its uint64 bit pattern.
inline double f64(const json& bits) { return std::bit_cast<double>(bits.get<std::uint64_t>()); }
/// The bit pattern of a float, for exact comparisons.
inline std::uint32_t bits(float v) { return std::bit_cast<std::uint32_t>(v); }

/// An array of uint32 bit patterns as floats.
inline std::vector<float> floats(const json& a) {
  std::vector<float> v;
  v.reserve(a.size());
  for (const auto& x : a) v.push_back(f32(x));
  return v;
}

}  // namespace qprune::test

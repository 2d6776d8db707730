// Seeded random numbers for tests. The seed comes from QPRUNE_TEST_SEED when it
// is set (to reproduce a failure), else a fixed default; tests print it through
// SCOPED_TRACE so every failure message carries it.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace qprune::test {

/// The seed every test generator starts from.
inline std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    const char* env = std::getenv("QPRUNE_TEST_SEED");
    return env != nullptr ? std::strtoull(env, nullptr, 10) : std::uint64_t{20261129};
  }();
  return seed;
}

/// "seed=N (rerun with QPRUNE_TEST_SEED=N)" for SCOPED_TRACE.
inline std::string seed_trace() {
  return "seed=" + std::to_string(test_seed()) +
         " (rerun with QPRUNE_TEST_SEED=" + std::to_string(test_seed()) + ")";
}

/// A generator seeded from test_seed() and a per-test salt.
inline std::mt19937_64 make_rng(std::uint64_t salt = 0) {
  return std::mt19937_64(test_seed() ^ (salt * 0x9e3779b97f4a7c15ull));
}

}  // namespace qprune::test

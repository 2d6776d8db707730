#include "qprune/core/error.hpp"

#include <gtest/gtest.h>

#include <string>
#include <type_traits>

namespace {

static_assert(std::is_base_of_v<std::runtime_error, qprune::error>);
static_assert(std::is_base_of_v<qprune::error, qprune::shape_error>);
static_assert(std::is_base_of_v<qprune::error, qprune::config_error>);
static_assert(std::is_base_of_v<qprune::error, qprune::io_error>);

TEST(Error, MessagesArePrefixedWithTheirKind) {
  EXPECT_EQ(std::string(qprune::shape_error("bad").what()), "[qprune.shape] bad");
  EXPECT_EQ(std::string(qprune::config_error("sparsity 2 (expected [0, 1])").what()),
            "[qprune.config] sparsity 2 (expected [0, 1])");
  EXPECT_EQ(std::string(qprune::io_error("truncated").what()), "[qprune.io] truncated");
  EXPECT_EQ(std::string(qprune::error("custom", "x").what()), "[qprune.custom] x");
}

TEST(Error, CatchableAsBase) {
  try {
    throw qprune::io_error("x");
  } catch (const qprune::error& e) {
    EXPECT_NE(std::string(e.what()).find("[qprune.io]"), std::string::npos);
    return;
  }
  FAIL() << "not caught as qprune::error";
}

}  // namespace

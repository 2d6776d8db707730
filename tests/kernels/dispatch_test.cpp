#include "qprune/kernels/dispatch.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using qprune::kernels::isa;

TEST(Dispatch, NamesRoundTrip) {
  for (isa i : {isa::scalar, isa::avx2, isa::avx512, isa::avx512_vnni}) {
    EXPECT_EQ(qprune::kernels::parse_isa(qprune::kernels::to_string(i)), i);
  }
  EXPECT_THROW(qprune::kernels::parse_isa("sse9"), qprune::config_error);
}

TEST(Dispatch, SupportedListIsOrderedAndEndsAtTheBest) {
  const auto all = qprune::kernels::supported_isas();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), isa::scalar);
  EXPECT_EQ(all.back(), qprune::kernels::best_supported_isa());
  for (isa i : all) EXPECT_TRUE(qprune::kernels::is_supported(i));
  EXPECT_TRUE(qprune::kernels::is_supported(qprune::kernels::active_isa()));
}

TEST(Dispatch, RequireSupportedNamesTheMissingIsa) {
  for (int k = 0; k <= 3; ++k) {
    const auto i = static_cast<isa>(k);
    if (qprune::kernels::is_supported(i)) {
      EXPECT_NO_THROW(qprune::kernels::require_supported(i));
    } else {
      try {
        qprune::kernels::require_supported(i);
        FAIL() << "no throw for " << qprune::kernels::to_string(i);
      } catch (const qprune::config_error& e) {
        EXPECT_NE(std::string(e.what()).find(std::string(qprune::kernels::to_string(i))),
                  std::string::npos);
      }
    }
  }
}

}  // namespace

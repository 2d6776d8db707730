// Both odr_a.cpp and odr_b.cpp include every public header and use inline
// functions and function-local statics from them; linking the two together
// catches any non-inline definition in a header.
#include <qprune/qprune.hpp>

#include <vector>

int odr_a() {
  std::vector<float> in{1.0f, 2.5f, -0.0f};
  std::vector<qprune::half> out(3);
  qprune::kernels::convert(std::span<const float>(in), std::span<qprune::half>(out));
  qprune::tensor<float, 2> t(2, 2);
  qprune::as_eigen(t.view()).setIdentity();
  return static_cast<int>(qprune::kernels::active_isa()) * 0 + out[1].bits + static_cast<int>(t(1, 1));
}

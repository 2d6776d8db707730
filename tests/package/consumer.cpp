// A minimal qprune consumer: converts weights to fp16 and back through the
// public API and checks the numbers.
#include <qprune/qprune.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<float> w{0.5f, -1.25f, 65504.0f, 1e-8f};
  std::vector<qprune::half> h(w.size());
  qprune::kernels::convert(std::span<const float>(w), std::span<qprune::half>(h));
  std::vector<float> back(w.size());
  qprune::kernels::convert(std::span<const qprune::half>(h), std::span<float>(back));
  const bool ok = back[0] == 0.5f && back[1] == -1.25f && back[2] == 65504.0f && back[3] == 0.0f;
  std::printf("qprune %d.%d.%d consumer: %s (isa %s)\n", qprune::version_major,
              qprune::version_minor, qprune::version_patch, ok ? "ok" : "WRONG",
              std::string(qprune::kernels::to_string(qprune::kernels::active_isa())).c_str());
  return ok ? 0 : 1;
}

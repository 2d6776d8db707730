// Run-time instruction-set selection for qprune's kernels.
//
// Each fast kernel has per-ISA bodies in their own namespaces, compiled with
// [[gnu::target(...)]] (no -march flags on the library), and a scalar reference
// twin. The best ISA the CPU supports is detected once; the environment variable
// QPRUNE_FORCE_ISA=scalar|avx2|avx512|avx512_vnni (read once, at first use)
// pins a lower path for tests and benchmarks. Dispatch happens once per kernel
// call (a whole array or GEMM), never per element.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"

#if QPRUNE_X86
#include <cpuid.h>
#endif

namespace qprune::kernels {

/// Instruction-set levels, ordered: each includes the ones before it.
///  - scalar:      portable C++, the reference twins.
///  - avx2:        AVX2 + FMA + F16C (Haswell, Zen 1 and later).
///  - avx512:      AVX-512 F, BW, DQ, VL (Skylake-SP, Zen 4 and later).
///  - avx512_vnni: avx512 + VNNI (vpdpbusd; Cascade Lake, Ice Lake, Zen 4).
enum class isa : int { scalar = 0, avx2 = 1, avx512 = 2, avx512_vnni = 3 };

/// "scalar", "avx2", "avx512" or "avx512_vnni".
constexpr std::string_view to_string(isa i) noexcept {
  switch (i) {
    case isa::scalar: return "scalar";
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    case isa::avx512_vnni: return "avx512_vnni";
  }
  return "unknown";
}

/// Parses a name printed by to_string; throws config_error for anything else.
inline isa parse_isa(std::string_view name) {
  for (isa i : {isa::scalar, isa::avx2, isa::avx512, isa::avx512_vnni}) {
    if (name == to_string(i)) return i;
  }
  throw config_error("unknown instruction set '" + std::string(name) +
                     "' (expected scalar, avx2, avx512 or avx512_vnni)");
}

namespace detail {
inline isa detect_best_isa() noexcept {
#if QPRUNE_X86
  __builtin_cpu_init();
  // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does
  // not know "f16c".
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (!avx2) return isa::scalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  if (!avx512) return isa::avx2;
  if (__builtin_cpu_supports("avx512vnni")) return isa::avx512_vnni;
  return isa::avx512;
#else
  return isa::scalar;
#endif
}
}  // namespace detail

/// The best instruction set this CPU supports (detected once).
inline isa best_supported_isa() noexcept {
  static const isa best = detail::detect_best_isa();
  return best;
}

/// True when the CPU can run kernels built for `i`.
inline bool is_supported(isa i) noexcept {
  return static_cast<int>(i) <= static_cast<int>(best_supported_isa());
}

/// Every level this CPU can run, from scalar up: the list tests iterate over.
inline std::vector<isa> supported_isas() {
  std::vector<isa> out;
  for (int i = 0; i <= static_cast<int>(best_supported_isa()); ++i) out.push_back(static_cast<isa>(i));
  return out;
}

/// The level kernels use by default: best_supported_isa(), lowered by
/// QPRUNE_FORCE_ISA when that is set. Read once. A forced level the CPU cannot
/// run, or an unknown name, is reported on stderr and the best level is used,
/// since this runs inside noexcept kernels; use parse_isa to validate names.
inline isa active_isa() noexcept {
  static const isa active = [] {
    const isa best = best_supported_isa();
    const char* env = std::getenv("QPRUNE_FORCE_ISA");
    if (env == nullptr || *env == '\0') return best;
    for (isa i : {isa::scalar, isa::avx2, isa::avx512, isa::avx512_vnni}) {
      if (std::string_view(env) == to_string(i)) {
        if (static_cast<int>(i) <= static_cast<int>(best)) return i;
        std::fprintf(stderr, "qprune: QPRUNE_FORCE_ISA=%s is not supported by this CPU; using %s\n",
                     env, std::string(to_string(best)).c_str());
        return best;
      }
    }
    std::fprintf(stderr,
                 "qprune: QPRUNE_FORCE_ISA=%s is not one of scalar, avx2, avx512, avx512_vnni; "
                 "using %s\n",
                 env, std::string(to_string(best)).c_str());
    return best;
  }();
  return active;
}

/// Throws config_error unless the CPU supports `i`. Used by the kernel entry
/// points that take an explicit ISA argument.
inline void require_supported(isa i) {
  if (!is_supported(i)) {
    throw config_error("instruction set " + std::string(to_string(i)) +
                       " is not supported by this CPU (best: " +
                       std::string(to_string(best_supported_isa())) + ")");
  }
}

}  // namespace qprune::kernels

// Build configuration shared by every qprune header: the version, the index
// type, QPRUNE_ASSERT and the platform switches. Errors at API boundaries are
// exceptions (core/error.hpp); QPRUNE_ASSERT is for programmer errors in hot
// paths and is compiled out under NDEBUG.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#define QPRUNE_VERSION_MAJOR 0
#define QPRUNE_VERSION_MINOR 1
#define QPRUNE_VERSION_PATCH 0

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
/// 1 when the x86 SIMD paths (selected at run time) are compiled in.
#define QPRUNE_X86 1
#else
#define QPRUNE_X86 0
#endif

// GCC 12.2 warns "__Y is used uninitialized" inside its own AVX-512 intrinsics
// (GCC bug 105593, fixed in 12.3). The x86 kernel headers wrap their bodies in
// these so the warning is silenced where the intrinsics are inlined, and only there.
#if defined(__GNUC__) && !defined(__clang__)
#define QPRUNE_X86_INTRINSICS_BEGIN                                  \
  _Pragma("GCC diagnostic push")                                     \
      _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"") \
          _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define QPRUNE_X86_INTRINSICS_END _Pragma("GCC diagnostic pop")
#else
#define QPRUNE_X86_INTRINSICS_BEGIN
#define QPRUNE_X86_INTRINSICS_END
#endif

namespace qprune {

/// Signed type for sizes and indices, the same as Eigen::Index.
using index_t = std::ptrdiff_t;

/// The library's version as numbers.
inline constexpr int version_major = QPRUNE_VERSION_MAJOR;
inline constexpr int version_minor = QPRUNE_VERSION_MINOR;
inline constexpr int version_patch = QPRUNE_VERSION_PATCH;

namespace detail {
/// Prints the failed condition and aborts. Used by QPRUNE_ASSERT only.
[[noreturn]] inline void assert_fail(const char* cond, const char* msg, const char* file,
                                     int line) noexcept {
  std::fprintf(stderr, "%s:%d: qprune assertion failed: %s (%s)\n", file, line, msg, cond);
  std::abort();
}
}  // namespace detail
}  // namespace qprune

/// QPRUNE_ASSERT(cond, "message"): checks a precondition that callers inside the
/// library guarantee. On in debug builds, off under NDEBUG; define it before
/// including qprune to override (for example to throw in a test harness).
#ifndef QPRUNE_ASSERT
#ifdef NDEBUG
#define QPRUNE_ASSERT(cond, msg) static_cast<void>(0)
#else
#define QPRUNE_ASSERT(cond, msg) \
  ((cond) ? static_cast<void>(0) : ::qprune::detail::assert_fail(#cond, msg, __FILE__, __LINE__))
#endif
#endif

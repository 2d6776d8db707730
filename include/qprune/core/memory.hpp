// Aligned heap storage. Kernels and the file format want weight buffers on
// 64-byte boundaries (a cache line, one AVX-512 register), so every owning
// container in qprune allocates through `aligned_allocator`.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace qprune {

/// Alignment, in bytes, of every buffer qprune allocates.
inline constexpr std::size_t default_alignment = 64;

/// std::allocator-compatible allocator returning `Align`-byte aligned memory.
template <class T, std::size_t Align = default_alignment>
struct aligned_allocator {
  static_assert(Align >= alignof(T) && (Align & (Align - 1)) == 0,
                "aligned_allocator: Align must be a power of two >= alignof(T)");
  using value_type = T;
  template <class U>
  struct rebind {
    using other = aligned_allocator<U, Align>;
  };

  constexpr aligned_allocator() noexcept = default;
  template <class U>
  constexpr aligned_allocator(const aligned_allocator<U, Align>&) noexcept {}

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{Align}));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{Align}); }

  template <class U>
  friend constexpr bool operator==(const aligned_allocator&,
                                   const aligned_allocator<U, Align>&) noexcept {
    return true;
  }
};

/// A std::vector whose data() is 64-byte aligned.
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

}  // namespace qprune

// A read-only view of a whole file: memory-mapped with POSIX mmap where that
// is available and works, otherwise read into a 64-byte aligned heap buffer.
// Readers of binary formats (.npy, .npz, .safetensors, .qpr) parse the bytes
// in place and may hand out views that live as long as the mapped_file.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define QPRUNE_HAS_MMAP 1
#else
#define QPRUNE_HAS_MMAP 0
#endif

namespace qprune::io {

/// The read-only contents of one file, valid until the object is destroyed.
///
/// `open` maps the file (PROT_READ, MAP_PRIVATE). The mapping starts on a page
/// boundary, so `bytes().data()` is at least 4096-byte aligned; the fallback
/// buffer (used when mmap is unavailable or fails, e.g. for pipes or special
/// files) is 64-byte aligned. An empty file gives an empty span. Move-only;
/// moving keeps `bytes()` pointing at the same memory.
class mapped_file {
 public:
  /// An empty object (no file, `bytes()` empty).
  mapped_file() noexcept = default;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { swap(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      mapped_file tmp(std::move(o));
      swap(tmp);
    }
    return *this;
  }
  ~mapped_file() { release(); }

  /// Opens and maps `path` read-only. Throws io_error naming the file when it
  /// does not exist, is a directory, or cannot be read.
  [[nodiscard]] static mapped_file open(const std::filesystem::path& path) {
    mapped_file f;
    f.path_ = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      throw io_error("cannot open '" + path.string() + "': it is a directory (expected a file)");
    }
#if QPRUNE_HAS_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      throw io_error("cannot open '" + path.string() + "': " +
                     std::generic_category().message(errno) + " (expected a readable file)");
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      // Size 0 may be a real empty file or a procfs-like file whose size is
      // unknown: both go through the read fallback.
      const auto size = static_cast<std::size_t>(st.st_size);
      void* p = size == 0 ? MAP_FAILED : ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) {
        ::close(fd);
        f.map_ = p;
        f.data_ = static_cast<const std::byte*>(p);
        f.size_ = size;
        return f;
      }
    }
    ::close(fd);
#endif
    f.read_into_buffer();
    return f;
  }

  /// The file's bytes (empty for an empty file or a default-constructed object).
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  /// The path given to `open`.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Number of bytes in the file.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  /// True when the bytes come from mmap, false when they were read into a buffer.
  [[nodiscard]] bool is_mapped() const noexcept { return map_ != nullptr; }

 private:
  void swap(mapped_file& o) noexcept {
    std::swap(path_, o.path_);
    std::swap(map_, o.map_);
    std::swap(buffer_, o.buffer_);  // vector swap keeps element addresses
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }

  void release() noexcept {
#if QPRUNE_HAS_MMAP
    if (map_ != nullptr) ::munmap(map_, size_);
#endif
    map_ = nullptr;
    data_ = nullptr;
    size_ = 0;
  }

  void read_into_buffer() {
    std::FILE* fp = std::fopen(path_.string().c_str(), "rb");
    if (fp == nullptr) {
      throw io_error("cannot open '" + path_.string() + "' (expected a readable file)");
    }
    std::vector<std::byte> chunk(std::size_t{1} << 16);
    for (;;) {
      const std::size_t n = std::fread(chunk.data(), 1, chunk.size(), fp);
      buffer_.insert(buffer_.end(), chunk.begin(),
                     chunk.begin() + static_cast<std::ptrdiff_t>(n));
      if (n < chunk.size()) break;
    }
    const bool failed = std::ferror(fp) != 0;
    std::fclose(fp);
    if (failed) {
      throw io_error("cannot read '" + path_.string() + "' (expected a readable file)");
    }
    data_ = buffer_.data();
    size_ = buffer_.size();
  }

  std::filesystem::path path_;
  void* map_ = nullptr;
  aligned_vector<std::byte> buffer_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace qprune::io

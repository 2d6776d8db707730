// The qprune file (.qpr): a versioned, checksummed, memory-mappable container
// of named tensors (float, fp16/bf16, 8- and 4-bit codes with their per-tensor /
// per-channel / per-group parameters, dense or CSR / bitmask / N:M sparse).
// Saving is atomic (temporary file beside the target, fsync, rename, directory
// fsync); loading validates every header and table field before any use and
// hands out views into the mapped bytes. Layout, field by field: doc/format.md.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/io/checksum.hpp"
#include "qprune/io/mmap.hpp"
#include "qprune/prune/sparse_storage.hpp"
#include "qprune/quant/int4.hpp"
#include "qprune/quant/params.hpp"
#include "qprune/quant/quantize.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace qprune::quant {
// Declared here, defined in quant/int8.hpp: the int8_weights entry points below are
// templates instantiated only where that header is included, so this header does
// not pull in the quantizer policies and the kernels behind them.
struct int8_weights;
}  // namespace qprune::quant

namespace qprune::io::qpr {

static_assert(std::endian::native == std::endian::little,
              "qprune::io::qpr reads and writes little-endian files on little-endian hosts only");

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

/// Magic bytes at offset 0: 0x89 'Q' 'P' 'R' '\r' '\n' 0x1A '\n' (PNG-style:
/// the high byte and the line endings catch 7-bit and text-mode transfers).
inline constexpr std::array<std::uint8_t, 8> magic{0x89, 'Q', 'P', 'R', '\r', '\n', 0x1A, '\n'};
/// The format version this header writes and the only one it reads.
inline constexpr std::uint32_t format_version = 1;
/// Written as a native uint32; read back as 0x04030201 from a big-endian writer.
inline constexpr std::uint32_t endian_marker = 0x01020304u;
/// Size of the fixed header; the metadata follows it.
inline constexpr std::size_t fixed_header_bytes = 64;
/// Every tensor payload and every section inside it starts on this boundary.
inline constexpr std::size_t data_alignment = 64;
/// Largest supported rank.
inline constexpr int max_rank = 8;
/// Metadata key reserved for the model hook (doc/format.md, "Models"): a JSON
/// description of a layer graph whose parameters are tensors named "<layer>.<param>".
inline constexpr std::string_view model_metadata_key = "qprune.model";

/// Element type of a stored tensor. 4-bit types are packed two per byte along
/// the last axis, low nibble first, each row (last-axis line) padded to a whole
/// byte (quant/int4.hpp's packing).
enum class dtype : std::uint8_t { f32 = 0, f16 = 1, bf16 = 2, int8 = 3, uint8 = 4, int4 = 5, uint4 = 6 };
/// How the elements are stored.
enum class encoding : std::uint8_t { dense = 0, csr = 1, bitmask = 2, nm = 3 };
/// Which elements share a (scale, zero point).
enum class granularity : std::uint8_t { none = 0, tensor = 1, channel = 2, group = 3 };

[[nodiscard]] constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::int8: return "int8";
    case dtype::uint8: return "uint8";
    case dtype::int4: return "int4";
    case dtype::uint4: return "uint4";
  }
  return "unknown";
}
[[nodiscard]] constexpr std::string_view to_string(encoding e) noexcept {
  switch (e) {
    case encoding::dense: return "dense";
    case encoding::csr: return "csr";
    case encoding::bitmask: return "bitmask";
    case encoding::nm: return "nm";
  }
  return "unknown";
}
[[nodiscard]] constexpr std::string_view to_string(granularity g) noexcept {
  switch (g) {
    case granularity::none: return "none";
    case granularity::tensor: return "tensor";
    case granularity::channel: return "channel";
    case granularity::group: return "group";
  }
  return "unknown";
}

/// True for the integer code types.
[[nodiscard]] constexpr bool is_integer(dtype t) noexcept {
  return t == dtype::int8 || t == dtype::uint8 || t == dtype::int4 || t == dtype::uint4;
}
/// True for int4 / uint4.
[[nodiscard]] constexpr bool is_4bit(dtype t) noexcept { return t == dtype::int4 || t == dtype::uint4; }
/// Bytes per element for the byte-addressed types (f32 4, f16/bf16 2, int8/uint8 1); 0 for 4-bit.
[[nodiscard]] constexpr std::uint64_t element_bytes(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::int8:
    case dtype::uint8: return 1;
    default: return 0;
  }
}
/// The whole code range of an integer type (int8 [-128, 127], uint4 [0, 15], ...).
[[nodiscard]] constexpr quant::qrange code_limits(dtype t) noexcept {
  switch (t) {
    case dtype::int8: return quant::full_range(quant::dtype::int8);
    case dtype::uint8: return quant::full_range(quant::dtype::uint8);
    case dtype::int4: return quant::full_range(quant::dtype::int4);
    case dtype::uint4: return quant::full_range(quant::dtype::uint4);
    default: return {0, 0};
  }
}

/// The element type tag of a C++ storage type.
template <class T>
inline constexpr bool is_storage_type =
    std::is_same_v<T, float> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16> ||
    std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>;
template <class T>
  requires is_storage_type<T>
inline constexpr dtype dtype_of = std::is_same_v<T, float>        ? dtype::f32
                                  : std::is_same_v<T, half>       ? dtype::f16
                                  : std::is_same_v<T, bfloat16>   ? dtype::bf16
                                  : std::is_same_v<T, std::int8_t> ? dtype::int8
                                                                   : dtype::uint8;

/// The six payload sections of a tensor, in file order.
enum class section : std::uint8_t { values = 0, scales = 1, zero_points = 2, indices = 3, row_ptr = 4, mask = 5 };
inline constexpr std::size_t section_count = 6;

/// Metadata: UTF-8 string keys (unique, non-empty) and values.
using metadata_map = std::map<std::string, std::string, std::less<>>;

/// One tensor-table entry as stored (doc/format.md, "Tensor table").
///   values       dense: every element (4-bit packed per last-axis line);
///                CSR / bitmask: nnz values; N:M: rows * ceil(cols / m) * n slots
///   scales       param_count float32, zero_points param_count int32 (if has_zero_points)
///   indices      CSR column indices (index_bytes each); N:M slot positions
///                (ceil(log2 m) bits each, LSB first)
///   row_ptr      CSR row pointers, rows + 1 entries of row_ptr_bytes
///   mask         bitmask bits, ceil(rows * cols / 8) bytes, LSB first
/// Each non-empty section starts 64-byte aligned inside the payload.
struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  encoding enc = encoding::dense;
  granularity quant = granularity::none;
  bool has_zero_points = false;
  std::vector<index_t> shape;
  index_t axis = 0;        ///< channel / group axis
  index_t group_size = 0;  ///< group granularity only
  std::uint64_t param_count = 0;
  std::int32_t qmin = 0;  ///< clamp range the codes were produced on (0, 0 without quantization)
  std::int32_t qmax = 0;
  std::uint64_t nnz = 0;          ///< sparse: kept entries
  std::uint8_t index_bytes = 0;   ///< CSR: 1, 2 or 4
  std::uint8_t row_ptr_bytes = 0; ///< CSR: 4 or 8
  std::uint8_t nm_n = 0;          ///< N:M pattern
  std::uint8_t nm_m = 0;
  std::uint64_t offset = 0;  ///< payload start, from the start of the file
  std::uint64_t length = 0;  ///< payload bytes
  std::uint32_t crc = 0;     ///< CRC-32 (zlib) of the payload bytes
  std::array<std::uint64_t, section_count> section_bytes{};
  std::array<std::uint64_t, section_count> section_offset{};  ///< relative to `offset` (derived)

  /// Product of the shape (1 for rank 0).
  [[nodiscard]] std::uint64_t element_count() const noexcept {
    std::uint64_t n = 1;
    for (index_t d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }
  /// Stored entries: nnz for sparse encodings, element_count() for dense.
  [[nodiscard]] std::uint64_t stored_count() const noexcept {
    return enc == encoding::dense ? element_count() : nnz;
  }
  /// Fraction of zero (not stored) elements: 1 - stored / elements (0 for dense or empty).
  [[nodiscard]] double sparsity() const noexcept {
    const std::uint64_t n = element_count();
    return (enc == encoding::dense || n == 0) ? 0.0 : 1.0 - static_cast<double>(nnz) / static_cast<double>(n);
  }
};

namespace detail {

[[nodiscard]] constexpr std::uint64_t align_up(std::uint64_t x, std::uint64_t a) noexcept {
  return (x + a - 1) / a * a;
}

/// a * b, or nullopt on uint64 overflow.
[[nodiscard]] constexpr std::optional<std::uint64_t> mul(std::uint64_t a, std::uint64_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}
[[nodiscard]] constexpr std::optional<std::uint64_t> add(std::uint64_t a, std::uint64_t b) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return std::nullopt;
  return a + b;
}

/// CRC-32 (ISO-HDLC, zlib's crc32) continued over `bytes`.
[[nodiscard]] inline std::uint32_t crc32(std::uint32_t crc, const void* p, std::size_t n) noexcept {
  if (n == 0) return crc;
  return io::crc32(std::span<const std::byte>(static_cast<const std::byte*>(p), n), crc);
}

/// Bits of an N:M slot position (ceil(log2 m)).
[[nodiscard]] constexpr int nm_bits(int m) noexcept { return prune::packed_nm_index_bits(m); }

/// The sizes every section must have, or a message naming the inconsistency.
/// Precondition: shape already validated (product fits), dtype/encoding known.
struct expected_sizes {
  std::array<std::uint64_t, section_count> bytes{};
  std::string problem;
};

[[nodiscard]] inline expected_sizes compute_sections(const tensor_info& t) {
  expected_sizes r;
  auto fail = [&](std::string m) {
    r.problem = std::move(m);
    return r;
  };
  const std::uint64_t n = t.element_count();
  const std::uint64_t eb = element_bytes(t.type);
  auto value_bytes = [&](std::uint64_t count) -> std::optional<std::uint64_t> {
    return mul(count, eb);
  };
  std::optional<std::uint64_t> values;
  if (t.enc == encoding::dense) {
    if (is_4bit(t.type)) {
      const std::uint64_t last = t.shape.empty() ? 1 : static_cast<std::uint64_t>(t.shape.back());
      const std::uint64_t lines = last == 0 ? 0 : n / last;
      values = mul(lines, (last + 1) / 2);
    } else {
      values = value_bytes(n);
    }
  } else {
    if (t.shape.size() != 2) return fail("a " + std::string(to_string(t.enc)) + " tensor has rank " +
                                         std::to_string(t.shape.size()) + " (expected 2)");
    if (is_4bit(t.type)) return fail("sparse encodings do not store 4-bit values (expected f32, f16, bf16, int8 or uint8)");
    const auto rows = static_cast<std::uint64_t>(t.shape[0]);
    const auto cols = static_cast<std::uint64_t>(t.shape[1]);
    if (t.nnz > n) return fail("nnz " + std::to_string(t.nnz) + " exceeds the " + std::to_string(n) + " elements");
    if (t.enc == encoding::csr) {
      if (t.index_bytes != 1 && t.index_bytes != 2 && t.index_bytes != 4)
        return fail("CSR column index width " + std::to_string(t.index_bytes) + " (expected 1, 2 or 4)");
      if (t.row_ptr_bytes != 4 && t.row_ptr_bytes != 8)
        return fail("CSR row pointer width " + std::to_string(t.row_ptr_bytes) + " (expected 4 or 8)");
      if (cols > (std::uint64_t{1} << (8 * std::min<unsigned>(t.index_bytes, 4))) && t.index_bytes < 4)
        return fail("CSR column index width " + std::to_string(t.index_bytes) + " cannot address " +
                    std::to_string(cols) + " columns");
      if (cols > (std::uint64_t{1} << 32))
        return fail("CSR stores at most 2^32 columns, got " + std::to_string(cols));
      if (t.row_ptr_bytes == 4 && t.nnz > 0xffffffffull)
        return fail("CSR row pointer width 4 cannot hold nnz " + std::to_string(t.nnz));
      values = value_bytes(t.nnz);
      r.bytes[3] = t.nnz * t.index_bytes;  // nnz <= n and n * 4 fits (checked by the shape rule)
      const auto rp = mul(rows + 1, t.row_ptr_bytes);
      if (!rp) return fail("CSR row pointers overflow");
      r.bytes[4] = *rp;
    } else if (t.enc == encoding::bitmask) {
      values = value_bytes(t.nnz);
      r.bytes[5] = (n + 7) / 8;
    } else {
      if (!(t.nm_n >= 1 && t.nm_n < t.nm_m && t.nm_m <= 16))
        return fail("N:M pattern " + std::to_string(t.nm_n) + ":" + std::to_string(t.nm_m) +
                    " (expected 1 <= N < M <= 16)");
      const std::uint64_t groups = (cols + t.nm_m - 1) / t.nm_m;
      const auto slots = mul(rows, groups);
      const auto slots2 = slots ? mul(*slots, t.nm_n) : std::nullopt;
      if (!slots2) return fail("N:M slot count overflows");
      values = value_bytes(*slots2);
      const auto bits = mul(*slots2, static_cast<std::uint64_t>(nm_bits(t.nm_m)));
      if (!bits) return fail("N:M slot positions overflow");
      r.bytes[3] = (*bits + 7) / 8;
    }
  }
  if (!values) return fail("the value bytes overflow");
  r.bytes[0] = *values;
  // Quantization parameters.
  if (t.quant == granularity::none) {
    if (t.param_count != 0 || t.has_zero_points || t.qmin != 0 || t.qmax != 0 || t.axis != 0 || t.group_size != 0)
      return fail("a tensor without quantization has parameters (expected none)");
    return r;
  }
  if (!is_integer(t.type))
    return fail(std::string(to_string(t.type)) + " values with " + std::string(to_string(t.quant)) +
                " quantization (expected an integer dtype)");
  const quant::qrange lim = code_limits(t.type);
  if (!(t.qmin >= lim.qmin && t.qmin < t.qmax && t.qmax <= lim.qmax))
    return fail("code range [" + std::to_string(t.qmin) + ", " + std::to_string(t.qmax) + "] (expected inside [" +
                std::to_string(lim.qmin) + ", " + std::to_string(lim.qmax) + "] with qmin < qmax)");
  std::uint64_t count = 0;
  const auto rank = static_cast<index_t>(t.shape.size());
  if (t.quant == granularity::tensor) {
    if (t.axis != 0 || t.group_size != 0) return fail("per-tensor quantization with an axis or group size");
    count = 1;
  } else {
    if (t.axis < 0 || t.axis >= rank)
      return fail("quantization axis " + std::to_string(t.axis) + " (expected 0.." + std::to_string(rank - 1) + ")");
    const auto len = static_cast<std::uint64_t>(t.shape[static_cast<std::size_t>(t.axis)]);
    if (t.quant == granularity::channel) {
      if (t.group_size != 0) return fail("per-channel quantization with a group size");
      count = len;
    } else {
      if (t.enc != encoding::dense) return fail("per-group quantization of a sparse tensor (expected dense)");
      if (t.group_size < 1) return fail("group size " + std::to_string(t.group_size) + " (expected >= 1)");
      const std::uint64_t other = len == 0 ? 0 : n / len;
      const auto gs = static_cast<std::uint64_t>(t.group_size);
      const auto c = mul(other, (len + gs - 1) / gs);
      if (!c) return fail("group parameter count overflows");
      count = *c;
    }
  }
  if (t.param_count != count)
    return fail("parameter count " + std::to_string(t.param_count) + " (expected " + std::to_string(count) + ")");
  r.bytes[1] = count * 4;  // count <= elements, so 4 * count fits
  r.bytes[2] = t.has_zero_points ? count * 4 : 0;
  return r;
}

/// Section offsets inside the payload and the payload length: each non-empty
/// section starts at the next multiple of 64.
inline std::uint64_t layout_sections(tensor_info& t) noexcept {
  std::uint64_t pos = 0;
  for (std::size_t s = 0; s < section_count; ++s) {
    if (t.section_bytes[s] != 0) pos = align_up(pos, data_alignment);
    t.section_offset[s] = pos;
    pos += t.section_bytes[s];
  }
  return pos;
}

/// Little-endian writer into a byte vector.
struct out_buffer {
  std::vector<std::uint8_t> b;
  template <class T>
  void put(T v) {
    std::uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
  }
  void put_bytes(std::string_view s) { b.insert(b.end(), s.begin(), s.end()); }
};

/// Bounds-checked little-endian reader; every failure names `what` it was reading.
class in_buffer {
 public:
  in_buffer(const std::uint8_t* p, std::size_t n, const std::string& who) : p_(p), n_(n), who_(who) {}
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string(std::size_t len, const char* what) {
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  [[nodiscard]] std::size_t pos() const noexcept { return pos_; }

 private:
  void need(std::size_t k, const char* what) const {
    if (k > n_ - pos_) {
      throw io_error(who_ + ": the header ends inside " + what + " (header length " + std::to_string(n_) +
                     " bytes; the file is truncated or its header length is wrong)");
    }
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  const std::string& who_;
};

}  // namespace detail

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A tensor to write: its table fields and non-owning spans over its sections.
///
/// Lifetime: the spans must stay valid until save() returns. The entry()
/// factories below fill every field from a library type; `validate` is applied
/// by save() (the same rules load() checks), so an inconsistent entry throws
/// config_error / shape_error before anything is written.
struct tensor_entry {
  tensor_info info;  ///< offset, length, crc, section offsets: computed by save()
  std::array<std::span<const std::byte>, section_count> sections{};
};

/// Options of save().
struct save_options {
  /// Called after each written chunk with (bytes written, total bytes); may be empty.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
  /// fsync the file and its directory (on by default; off only for throwaway files).
  bool sync = true;
};

namespace detail {

/// Checks a tensor_info against the format rules (names, shape, sizes); throws `E`.
template <class E>
void check_info(const tensor_info& t, const std::string& who) {
  if (t.name.empty() || t.name.size() > 65535) {
    throw E(who + ": tensor name of " + std::to_string(t.name.size()) + " bytes (expected 1..65535)");
  }
  if (static_cast<std::uint8_t>(t.type) > 6) {
    throw E(who + ": tensor '" + t.name + "' has unknown dtype " + std::to_string(static_cast<int>(t.type)) +
            " (expected 0..6: f32 f16 bf16 int8 uint8 int4 uint4)");
  }
  if (static_cast<std::uint8_t>(t.enc) > 3) {
    throw E(who + ": tensor '" + t.name + "' has unknown encoding " + std::to_string(static_cast<int>(t.enc)) +
            " (expected 0..3: dense csr bitmask nm)");
  }
  if (static_cast<std::uint8_t>(t.quant) > 3) {
    throw E(who + ": tensor '" + t.name + "' has unknown quantization granularity " +
            std::to_string(static_cast<int>(t.quant)) + " (expected 0..3: none tensor channel group)");
  }
  if (t.shape.size() > static_cast<std::size_t>(max_rank)) {
    throw E(who + ": tensor '" + t.name + "' has rank " + std::to_string(t.shape.size()) + " (expected at most " +
            std::to_string(max_rank) + ")");
  }
  // The element count times 4 (widest element, widest index) must fit in 2^62 so
  // that every size computed later fits in uint64 and index_t.
  std::uint64_t n = 1;
  for (index_t d : t.shape) {
    if (d < 0) throw E(who + ": tensor '" + t.name + "' has a negative extent (expected sizes >= 0)");
    const auto p = mul(n, static_cast<std::uint64_t>(d));
    if (!p || *p > (std::uint64_t{1} << 60)) {
      throw E(who + ": tensor '" + t.name + "' has a shape whose product overflows (expected at most 2^60 elements)");
    }
    n = *p;
  }
  const expected_sizes ex = compute_sections(t);
  if (!ex.problem.empty()) throw E(who + ": tensor '" + t.name + "': " + ex.problem);
  for (std::size_t s = 0; s < section_count; ++s) {
    if (ex.bytes[s] != t.section_bytes[s]) {
      throw E(who + ": tensor '" + t.name + "' section " + std::to_string(s) + " holds " +
              std::to_string(t.section_bytes[s]) + " bytes (expected " + std::to_string(ex.bytes[s]) + ")");
    }
  }
}

inline void write_all(int fd, const void* p, std::size_t n, const std::string& who) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ::ssize_t w = ::write(fd, c, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw io_error("cannot write '" + who + "': " + std::generic_category().message(errno));
    }
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace detail

/// Writes `tensors` and `metadata` to `path` atomically:
///   1. a temporary file "<dir>/.<name>.tmp-<pid>-<random>" is created (O_EXCL) beside the target,
///   2. header, table and payloads are written and fsynced,
///   3. the temporary is renamed over `path`, then the directory is fsynced.
/// A crash at any point leaves either the old file or the new one at `path`
/// (never a partial file); on an error the temporary is removed.
/// Throws config_error / shape_error for an inconsistent entry (nothing is
/// written), config_error for a duplicate tensor name or metadata key problem,
/// io_error when the file cannot be written.
/// Complexity: one pass over the payloads (CRC-32 and write); no copies of them.
inline void save(const std::filesystem::path& path, std::span<const tensor_entry> tensors,
                 const metadata_map& metadata = {}, const save_options& opt = {}) {
  const std::string who = path.string();
  std::vector<tensor_info> infos;
  infos.reserve(tensors.size());
  {
    std::map<std::string_view, int> names;
    for (const tensor_entry& e : tensors) {
      tensor_info t = e.info;
      for (std::size_t s = 0; s < section_count; ++s) t.section_bytes[s] = e.sections[s].size();
      detail::check_info<config_error>(t, "cannot save '" + who + "'");
      if (!names.emplace(e.info.name, 0).second) {
        throw config_error("cannot save '" + who + "': tensor name '" + e.info.name + "' appears twice (expected unique names)");
      }
      infos.push_back(std::move(t));
    }
  }
  if (tensors.size() > 0xffffffffu || metadata.size() > 0xffffffffu) {
    throw config_error("cannot save '" + who + "': too many tensors or metadata entries (expected < 2^32)");
  }
  for (const auto& [k, v] : metadata) {
    if (k.empty() || k.size() > 0xffffffffu || v.size() > 0xffffffffu) {
      throw config_error("cannot save '" + who + "': metadata key '" + k + "' (expected a non-empty key, < 4 GiB)");
    }
  }
  // Header: fixed part, metadata, table (offsets filled after sizing).
  detail::out_buffer h;
  std::size_t table_start = 0;
  auto build_header = [&](bool with_offsets) {
    h.b.clear();
    h.put_bytes(std::string_view(reinterpret_cast<const char*>(magic.data()), magic.size()));
    h.put<std::uint32_t>(format_version);
    h.put<std::uint32_t>(endian_marker);
    h.put<std::uint64_t>(0);  // header length, patched
    h.put<std::uint64_t>(0);  // file length, patched
    h.put<std::uint32_t>(static_cast<std::uint32_t>(metadata.size()));
    h.put<std::uint32_t>(static_cast<std::uint32_t>(infos.size()));
    h.put<std::uint32_t>(0);  // header CRC, patched
    h.put<std::uint32_t>(0);  // flags
    h.put<std::uint64_t>(0);
    h.put<std::uint64_t>(0);
    for (const auto& [k, v] : metadata) {
      h.put<std::uint32_t>(static_cast<std::uint32_t>(k.size()));
      h.put_bytes(k);
      h.put<std::uint32_t>(static_cast<std::uint32_t>(v.size()));
      h.put_bytes(v);
    }
    table_start = h.b.size();
    for (const tensor_info& t : infos) {
      h.put<std::uint16_t>(static_cast<std::uint16_t>(t.name.size()));
      h.put_bytes(t.name);
      h.put<std::uint8_t>(static_cast<std::uint8_t>(t.type));
      h.put<std::uint8_t>(static_cast<std::uint8_t>(t.enc));
      h.put<std::uint8_t>(static_cast<std::uint8_t>(t.quant));
      h.put<std::uint8_t>(static_cast<std::uint8_t>(t.shape.size()));
      h.put<std::uint8_t>(t.has_zero_points ? 1 : 0);
      h.put<std::uint8_t>(t.index_bytes);
      h.put<std::uint8_t>(t.row_ptr_bytes);
      h.put<std::uint8_t>(t.nm_n);
      h.put<std::uint8_t>(t.nm_m);
      for (index_t d : t.shape) h.put<std::uint64_t>(static_cast<std::uint64_t>(d));
      h.put<std::int64_t>(t.axis);
      h.put<std::int64_t>(t.group_size);
      h.put<std::uint64_t>(t.param_count);
      h.put<std::int32_t>(t.qmin);
      h.put<std::int32_t>(t.qmax);
      h.put<std::uint64_t>(t.nnz);
      for (std::uint64_t s : t.section_bytes) h.put<std::uint64_t>(s);
      h.put<std::uint64_t>(with_offsets ? t.offset : 0);
      h.put<std::uint64_t>(with_offsets ? t.length : 0);
      h.put<std::uint32_t>(with_offsets ? t.crc : 0);
    }
  };
  build_header(false);
  const std::uint64_t header_len = h.b.size();
  std::uint64_t pos = detail::align_up(header_len, data_alignment);
  // Payloads follow each other at 64-byte boundaries; empty ones point at the
  // start of the data region. The file ends right after the last payload.
  std::uint64_t file_len = pos;
  for (tensor_info& t : infos) {
    t.length = detail::layout_sections(t);
    if (t.length == 0) {
      t.offset = detail::align_up(header_len, data_alignment);
      continue;
    }
    t.offset = pos;
    file_len = pos + t.length;
    pos = detail::align_up(file_len, data_alignment);
  }
  // Payload CRCs (one pass; the write pass below reuses the same spans).
  static constexpr std::array<std::byte, data_alignment> zeros{};
  for (std::size_t i = 0; i < infos.size(); ++i) {
    tensor_info& t = infos[i];
    std::uint32_t crc = 0;
    std::uint64_t at = 0;
    for (std::size_t s = 0; s < section_count; ++s) {
      if (t.section_bytes[s] == 0) continue;
      crc = detail::crc32(crc, zeros.data(), static_cast<std::size_t>(t.section_offset[s] - at));
      crc = detail::crc32(crc, tensors[i].sections[s].data(), tensors[i].sections[s].size());
      at = t.section_offset[s] + t.section_bytes[s];
    }
    t.crc = crc;
  }
  build_header(true);
  auto patch64 = [&](std::size_t off, std::uint64_t v) { std::memcpy(h.b.data() + off, &v, 8); };
  patch64(16, header_len);
  patch64(24, file_len);
  const std::uint32_t hcrc = detail::crc32(0, h.b.data(), h.b.size());
  std::memcpy(h.b.data() + 40, &hcrc, 4);

  // Write to a temporary beside the target.
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::random_device rd;
  std::filesystem::path tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    const auto r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    char suffix[40];
    std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%016llx", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(r));
    std::string base(1, '.');  // built by appends: GCC 12's -Wrestrict misfires on "." + string
    base.append(path.filename().string()).append(suffix);
    tmp = dir / base;
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    throw io_error("cannot create a temporary file in '" + dir.string() + "' to save '" + who +
                   "': " + std::generic_category().message(errno));
  }
  try {
    std::uint64_t written = 0;
    auto put = [&](const void* p, std::size_t n) {
      detail::write_all(fd, p, n, tmp.string());
      written += n;
      if (opt.progress) opt.progress(written, file_len);
    };
    put(h.b.data(), h.b.size());
    std::uint64_t at = h.b.size();
    auto pad_to = [&](std::uint64_t target) {
      while (at < target) {
        const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(target - at, zeros.size()));
        put(zeros.data(), k);
        at += k;
      }
    };
    for (std::size_t i = 0; i < infos.size(); ++i) {
      const tensor_info& t = infos[i];
      for (std::size_t s = 0; s < section_count; ++s) {
        if (t.section_bytes[s] == 0) continue;
        pad_to(t.offset + t.section_offset[s]);
        const std::span<const std::byte> d = tensors[i].sections[s];
        constexpr std::size_t chunk = std::size_t{8} << 20;
        for (std::size_t k = 0; k < d.size(); k += chunk) {
          const std::size_t m = std::min(chunk, d.size() - k);
          put(d.data() + k, m);
        }
        at += d.size();
      }
    }
    pad_to(file_len);
    if (opt.sync && ::fsync(fd) != 0) {
      throw io_error("cannot flush '" + tmp.string() + "': " + std::generic_category().message(errno));
    }
    if (::close(fd) != 0) {
      fd = -1;
      throw io_error("cannot close '" + tmp.string() + "': " + std::generic_category().message(errno));
    }
    fd = -1;
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      throw io_error("cannot rename '" + tmp.string() + "' to '" + who + "': " + std::generic_category().message(errno));
    }
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (opt.sync) {
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);  // Best effort: some file systems refuse fsync on directories.
      ::close(dfd);
    }
  }
}

/// Overload taking a vector (braced lists of entries convert to it).
inline void save(const std::filesystem::path& path, const std::vector<tensor_entry>& tensors,
                 const metadata_map& metadata = {}, const save_options& opt = {}) {
  save(path, std::span<const tensor_entry>(tensors), metadata, opt);
}

/// Collects entries and metadata, then writes them with save() on commit().
/// The objects the entries point into must outlive commit().
class writer {
 public:
  explicit writer(std::filesystem::path path) : path_(std::move(path)) {}
  /// Adds (or replaces) a metadata entry.
  writer& set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
    return *this;
  }
  /// Adds a tensor (validated by commit()).
  writer& add(tensor_entry e) {
    entries_.push_back(std::move(e));
    return *this;
  }
  /// Writes the file atomically (see save()). Throws as save().
  void commit(const save_options& opt = {}) const { save(path_, entries_, metadata_, opt); }

 private:
  std::filesystem::path path_;
  std::vector<tensor_entry> entries_;
  metadata_map metadata_;
};

// ---------------------------------------------------------------------------
// entry(): the library's types as tensor entries (views, no copies)
// ---------------------------------------------------------------------------

/// A dense tensor of float, half, bfloat16, int8 or uint8 (stored raw, without
/// quantization parameters), from a row-major view. Lifetime: the view's memory.
template <class T, std::size_t R>
  requires is_storage_type<T>
[[nodiscard]] tensor_entry entry(std::string name, tensor_view<const T, R> v) {
  tensor_entry e;
  e.info.name = std::move(name);
  e.info.type = dtype_of<T>;
  for (std::size_t r = 0; r < R; ++r) e.info.shape.push_back(v.extent(r));
  e.sections[0] = std::as_bytes(std::span<const T>(v.data_handle(), static_cast<std::size_t>(v.size())));
  return e;
}
template <class T, std::size_t R>
  requires is_storage_type<T>
[[nodiscard]] tensor_entry entry(std::string name, const tensor<T, R>& t) {
  return entry(std::move(name), t.cview());
}

/// A 1-D float array.
[[nodiscard]] inline tensor_entry entry(std::string name, std::span<const float> v) {
  return entry(std::move(name), tensor_view<const float, 1>(v.data(), static_cast<index_t>(v.size())));
}

/// int8 weights [out, in]: int8 codes, per-channel (axis 0) float32 scales, code
/// range [-127, 127], zero points 0 (not stored).
/// (Include quant/int8.hpp to use it.)
template <class W>
  requires std::same_as<W, quant::int8_weights>
[[nodiscard]] tensor_entry entry(std::string name, const W& w) {
  tensor_entry e;
  tensor_info& t = e.info;
  t.name = std::move(name);
  t.type = dtype::int8;
  t.shape = {w.codes.extent(0), w.codes.extent(1)};
  t.quant = granularity::channel;
  t.axis = 0;
  t.param_count = static_cast<std::uint64_t>(w.params.scales.size());
  t.qmin = -127;
  t.qmax = 127;
  bool zero = true;
  for (std::int32_t z : w.params.zero_points) zero = zero && z == 0;
  if (!zero) {
    throw config_error("int8 weights '" + t.name + "' have non-zero zero points (expected symmetric weights)");
  }
  e.sections[0] = std::as_bytes(w.codes.span());
  e.sections[1] = std::as_bytes(std::span<const float>(w.params.scales));
  return e;
}

/// Packed 4-bit weights [rows, cols]: int4 (symmetric schemes) or uint4 (affine)
/// codes packed per row, per-group parameters along axis 1 ([rows, G] row-major),
/// code range of the scheme; zero points stored for the affine scheme only.
[[nodiscard]] inline tensor_entry entry(std::string name, const quant::packed_int4_matrix& m) {
  tensor_entry e;
  tensor_info& t = e.info;
  t.name = std::move(name);
  t.type = m.kind == quant::int4_scheme::affine ? dtype::uint4 : dtype::int4;
  t.shape = {m.rows, m.cols};
  t.quant = granularity::group;
  t.axis = 1;
  t.group_size = m.params.group_size;
  t.param_count = static_cast<std::uint64_t>(m.params.scales.size());
  const quant::qrange r = quant::code_range(m.kind);
  t.qmin = r.qmin;
  t.qmax = r.qmax;
  t.has_zero_points = m.kind == quant::int4_scheme::affine;
  if (m.params.axis != 1) throw config_error("packed 4-bit matrix '" + t.name + "' is grouped along axis " +
                                             std::to_string(m.params.axis) + " (expected 1)");
  e.sections[0] = std::as_bytes(m.codes.span());
  e.sections[1] = std::as_bytes(std::span<const float>(m.params.scales));
  if (t.has_zero_points) e.sections[2] = std::as_bytes(std::span<const std::int32_t>(m.params.zero_points));
  return e;
}

namespace detail {
template <prune::sparse_value V>
void sparse_common(tensor_info& t, index_t rows, index_t cols, index_t nnz, std::span<const float> scales) {
  t.type = std::is_same_v<V, float> ? dtype::f32 : (std::is_same_v<V, half> ? dtype::f16 : dtype::int8);
  t.shape = {rows, cols};
  t.nnz = static_cast<std::uint64_t>(nnz);
  static_cast<void>(scales);
  if constexpr (std::is_same_v<V, std::int8_t>) {
    t.quant = granularity::channel;
    t.axis = 0;
    t.param_count = scales.size();
    t.qmin = -127;
    t.qmax = 127;
  }
}
}  // namespace detail

/// A CSR matrix: values (f32 / f16 / int8 with one float32 scale per row, axis 0,
/// range [-127, 127]), column indices and row pointers at the matrix's widths.
template <prune::sparse_value V>
[[nodiscard]] tensor_entry entry(std::string name, const prune::csr_matrix<V>& a) {
  tensor_entry e;
  e.info.name = std::move(name);
  e.info.enc = encoding::csr;
  detail::sparse_common<V>(e.info, a.rows(), a.cols(), a.nnz(), a.scales());
  e.info.index_bytes = static_cast<std::uint8_t>(a.col_index_bytes());
  e.info.row_ptr_bytes = static_cast<std::uint8_t>(a.row_ptr_bytes());
  e.sections[0] = std::as_bytes(a.values());
  e.sections[1] = std::as_bytes(a.scales());
  e.sections[3] = std::visit([](const auto& v) { return std::as_bytes(std::span(v.data(), v.size())); }, a.col_indices());
  e.sections[4] = std::visit([](const auto& v) { return std::as_bytes(std::span(v.data(), v.size())); }, a.row_ptr());
  return e;
}

/// A bitmask matrix: mask bits and stored values (scales as for CSR).
template <prune::sparse_value V>
[[nodiscard]] tensor_entry entry(std::string name, const prune::bitmask_matrix<V>& a) {
  tensor_entry e;
  e.info.name = std::move(name);
  e.info.enc = encoding::bitmask;
  detail::sparse_common<V>(e.info, a.rows(), a.cols(), a.nnz(), a.scales());
  e.sections[0] = std::as_bytes(a.values());
  e.sections[1] = std::as_bytes(a.scales());
  e.sections[5] = std::as_bytes(a.mask_bytes());
  return e;
}

/// The bitmask encoding of a CSR matrix: the same values and scales (both store
/// the kept entries in row-major order), the pattern as one bit per element
/// (bit i % 8 of byte i / 8 for row-major element i), written into `mask`, which
/// must outlive the save. Smaller than CSR's indices once more than about one
/// element in 8 (uint8 indices) to 16 (uint16) is kept; load_csr reads it back.
template <prune::sparse_value V>
[[nodiscard]] tensor_entry bitmask_entry(std::string name, const prune::csr_matrix<V>& a,
                                         std::vector<std::uint8_t>& mask) {
  tensor_entry e;
  e.info.name = std::move(name);
  e.info.enc = encoding::bitmask;
  detail::sparse_common<V>(e.info, a.rows(), a.cols(), a.nnz(), a.scales());
  mask.assign(static_cast<std::size_t>((a.rows() * a.cols() + 7) / 8), 0);
  std::visit(
      [&](const auto& ci, const auto& rp) {
        for (index_t r = 0; r < a.rows(); ++r) {
          for (auto k = rp[static_cast<std::size_t>(r)]; k < rp[static_cast<std::size_t>(r) + 1]; ++k) {
            const auto i = static_cast<std::size_t>(r * a.cols() + static_cast<index_t>(ci[static_cast<std::size_t>(k)]));
            mask[i >> 3] = static_cast<std::uint8_t>(mask[i >> 3] | (1u << (i & 7)));
          }
        }
      },
      a.col_indices(), a.row_ptr());
  e.sections[0] = std::as_bytes(a.values());
  e.sections[1] = std::as_bytes(a.scales());
  e.sections[5] = std::as_bytes(std::span<const std::uint8_t>(mask));
  return e;
}

/// A packed N:M matrix: every slot's value, bit-packed slot positions, N and M
/// (scales as for CSR); nnz records the kept entries.
template <prune::sparse_value V>
[[nodiscard]] tensor_entry entry(std::string name, const prune::packed_nm_matrix<V>& a) {
  tensor_entry e;
  e.info.name = std::move(name);
  e.info.enc = encoding::nm;
  detail::sparse_common<V>(e.info, a.rows(), a.cols(), a.nnz(), a.scales());
  e.info.nm_n = static_cast<std::uint8_t>(a.n());
  e.info.nm_m = static_cast<std::uint8_t>(a.m());
  e.sections[0] = std::as_bytes(a.values());
  e.sections[1] = std::as_bytes(a.scales());
  e.sections[3] = std::as_bytes(a.position_bytes());
  return e;
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// When load() checks the payloads (CRC-32 and sparse index contents).
enum class verify : std::uint8_t {
  lazy,   ///< on the first access of each tensor (inspect reads only the table)
  eager,  ///< every tensor, before load() returns
};

/// A verified tensor: its table entry and its sections, as views into the file.
/// Lifetime: valid while the `file` it came from is alive.
struct tensor_ref {
  const tensor_info* info = nullptr;
  std::array<std::span<const std::byte>, section_count> sections{};

  [[nodiscard]] std::span<const std::byte> bytes(section s) const noexcept {
    return sections[static_cast<std::size_t>(s)];
  }
  /// The scales (float32; 4-byte aligned in the file).
  [[nodiscard]] std::span<const float> scales() const noexcept {
    const auto b = bytes(section::scales);
    return {reinterpret_cast<const float*>(b.data()), b.size() / 4};
  }
  /// The zero points (empty when the table says they are all 0).
  [[nodiscard]] std::span<const std::int32_t> zero_points() const noexcept {
    const auto b = bytes(section::zero_points);
    return {reinterpret_cast<const std::int32_t*>(b.data()), b.size() / 4};
  }
  /// The values section as T. Throws io_error unless the dtype is T's.
  template <class T>
    requires is_storage_type<T>
  [[nodiscard]] std::span<const T> values() const {
    if (info->type != dtype_of<T>) {
      throw io_error("tensor '" + info->name + "' holds " + std::string(to_string(info->type)) + " values (expected " +
                     std::string(to_string(dtype_of<T>)) + ")");
    }
    const auto b = bytes(section::values);
    return {reinterpret_cast<const T*>(b.data()), b.size() / sizeof(T)};
  }
  /// A dense tensor as a view into the file (no copy). Throws io_error unless the
  /// tensor is dense, of dtype T and of rank R.
  template <class T, std::size_t R>
    requires is_storage_type<T>
  [[nodiscard]] tensor_view<const T, R> view() const {
    if (info->enc != encoding::dense || info->shape.size() != R) {
      throw io_error("tensor '" + info->name + "' is a " + std::string(to_string(info->enc)) + " tensor of rank " +
                     std::to_string(info->shape.size()) + " (expected dense, rank " + std::to_string(R) + ")");
    }
    const std::span<const T> v = values<T>();
    std::array<index_t, R> e{};
    for (std::size_t r = 0; r < R; ++r) e[r] = info->shape[r];
    return tensor_view<const T, R>(v.data(), extents<R>(e));
  }
};

/// An opened .qpr file: the parsed metadata and tensor table over the mapped
/// bytes. Move-only. Views handed out stay valid while the object lives.
class file {
 public:
  file() = default;
  file(file&&) noexcept = default;
  file& operator=(file&&) noexcept = default;

  /// Maps `path` and validates the header and the whole table: magic, version,
  /// endianness, header CRC, lengths, shapes, sizes, offsets, alignment and
  /// overlaps. Payload CRCs are checked per `mode`. Throws io_error naming the
  /// file and the problem. Reads only the header and table when mode is lazy.
  [[nodiscard]] static file open(const std::filesystem::path& path, verify mode = verify::lazy) {
    file f;
    f.map_ = std::make_unique<mapped_file>(mapped_file::open(path));
    f.who_.assign(1, '\'').append(path.string()).append(1, '\'');
    f.parse(f.map_->bytes(), mode);
    return f;
  }

  /// Parses bytes already in memory (not copied; they must outlive the object and
  /// be 64-byte aligned, as a mapped file is). Throws as open().
  [[nodiscard]] static file from_bytes(std::span<const std::byte> bytes, verify mode = verify::lazy) {
    file f;
    f.who_ = "buffer";
    f.parse(bytes, mode);
    return f;
  }

  /// The metadata entries.
  [[nodiscard]] const metadata_map& metadata() const noexcept { return metadata_; }
  /// The tensor table, in file order (no payload read).
  [[nodiscard]] std::span<const tensor_info> tensors() const noexcept { return infos_; }
  /// The table entry of `name`, or nullptr.
  [[nodiscard]] const tensor_info* find(std::string_view name) const noexcept {
    for (const tensor_info& t : infos_)
      if (t.name == name) return &t;
    return nullptr;
  }
  /// Total file bytes.
  [[nodiscard]] std::uint64_t file_bytes() const noexcept { return bytes_.size(); }
  /// Header + table bytes (the part inspect reads).
  [[nodiscard]] std::uint64_t header_bytes() const noexcept { return header_len_; }

  /// Tensor i, verified (CRC-32 and index contents) on first access.
  /// Throws io_error for a checksum mismatch or invalid indices, std::out_of_range for i.
  [[nodiscard]] tensor_ref tensor(std::size_t i) const {
    const tensor_info& t = infos_.at(i);
    if (state_[i].load(std::memory_order_acquire) == 0) {
      verify_tensor(t);
      state_[i].store(1, std::memory_order_release);
    }
    return make_ref(t);
  }
  /// Tensor `name`, verified on first access. Throws io_error if absent.
  [[nodiscard]] tensor_ref tensor(std::string_view name) const {
    for (std::size_t i = 0; i < infos_.size(); ++i)
      if (infos_[i].name == name) return tensor(i);
    throw io_error(who_ + " has no tensor '" + std::string(name) + "'");
  }
  /// Whether tensor i's payload has been verified.
  [[nodiscard]] bool verified(std::size_t i) const {
    static_cast<void>(infos_.at(i));
    return state_[i].load(std::memory_order_acquire) != 0;
  }
  /// Verifies every tensor. Throws as tensor().
  void verify_all() const {
    for (std::size_t i = 0; i < infos_.size(); ++i) static_cast<void>(tensor(i));
  }

 private:
  void parse(std::span<const std::byte> b, verify mode) {
    bytes_ = b;
    const auto* p = reinterpret_cast<const std::uint8_t*>(b.data());
    const std::size_t n = b.size();
    if (n < fixed_header_bytes) {
      throw io_error(who_ + " is truncated: " + std::to_string(n) + " bytes (expected at least the " +
                     std::to_string(fixed_header_bytes) + "-byte header)");
    }
    if (std::memcmp(p, magic.data(), magic.size()) != 0) {
      throw io_error(who_ + " has a bad magic (expected a qprune file starting with \\x89QPR\\r\\n\\x1a\\n)");
    }
    if (reinterpret_cast<std::uintptr_t>(p) % data_alignment != 0) {
      throw io_error(who_ + " is not 64-byte aligned in memory (expected a mapped file or an aligned buffer)");
    }
    std::uint32_t version = 0, marker = 0, mcount = 0, tcount = 0, hcrc = 0, flags = 0;
    std::uint64_t hlen = 0, flen = 0, r0 = 0, r1 = 0;
    std::memcpy(&version, p + 8, 4);
    std::memcpy(&marker, p + 12, 4);
    std::memcpy(&hlen, p + 16, 8);
    std::memcpy(&flen, p + 24, 8);
    std::memcpy(&mcount, p + 32, 4);
    std::memcpy(&tcount, p + 36, 4);
    std::memcpy(&hcrc, p + 40, 4);
    std::memcpy(&flags, p + 44, 4);
    std::memcpy(&r0, p + 48, 8);
    std::memcpy(&r1, p + 56, 8);
    if (marker == 0x04030201u) {
      throw io_error(who_ + " was written big-endian (expected a little-endian qprune file)");
    }
    if (marker != endian_marker) {
      throw io_error(who_ + " has a bad endianness marker " + std::to_string(marker) + " (expected 0x01020304)");
    }
    if (version != format_version) {
      throw io_error(who_ + " has unsupported format version " + std::to_string(version) + " (expected " +
                     std::to_string(format_version) + ")");
    }
    if (flen != n) {
      throw io_error(who_ + (flen > n ? " is truncated: " : " has trailing bytes: ") + std::to_string(n) +
                     " bytes (the header says " + std::to_string(flen) + ")");
    }
    if (hlen < fixed_header_bytes || hlen > n) {
      throw io_error(who_ + " has header length " + std::to_string(hlen) + " (expected " +
                     std::to_string(fixed_header_bytes) + ".." + std::to_string(n) + ", the file's size)");
    }
    {
      std::uint32_t crc = detail::crc32(0, p, 40);
      static constexpr std::uint8_t z[4] = {0, 0, 0, 0};
      crc = detail::crc32(crc, z, 4);
      crc = detail::crc32(crc, p + 44, static_cast<std::size_t>(hlen) - 44);
      if (crc != hcrc) {
        throw io_error(who_ + " has a header checksum mismatch (stored " + std::to_string(hcrc) + ", computed " +
                       std::to_string(crc) + "): the header is corrupt");
      }
    }
    if (flags != 0 || r0 != 0 || r1 != 0) {
      throw io_error(who_ + " has non-zero reserved header fields (expected 0: written by a newer qprune?)");
    }
    header_len_ = hlen;
    detail::in_buffer in(p, static_cast<std::size_t>(hlen), who_);
    static_cast<void>(in.get_string(fixed_header_bytes, "the fixed header"));
    for (std::uint32_t i = 0; i < mcount; ++i) {
      const auto kl = in.get<std::uint32_t>("a metadata key length");
      std::string k = in.get_string(kl, "a metadata key");
      const auto vl = in.get<std::uint32_t>("a metadata value length");
      std::string v = in.get_string(vl, "a metadata value");
      if (k.empty()) throw io_error(who_ + " has an empty metadata key (expected a name)");
      if (!metadata_.emplace(std::move(k), std::move(v)).second) {
        throw io_error(who_ + " has a duplicate metadata key (expected unique keys)");
      }
    }
    infos_.reserve(std::min<std::size_t>(tcount, hlen / 64));
    for (std::uint32_t i = 0; i < tcount; ++i) {
      tensor_info t;
      const auto nl = in.get<std::uint16_t>("a tensor name length");
      t.name = in.get_string(nl, "a tensor name");
      const auto ty = in.get<std::uint8_t>("a dtype");
      const auto en = in.get<std::uint8_t>("an encoding");
      const auto qg = in.get<std::uint8_t>("a quantization granularity");
      const auto rank = in.get<std::uint8_t>("a rank");
      const auto zf = in.get<std::uint8_t>("a zero-point flag");
      t.index_bytes = in.get<std::uint8_t>("an index width");
      t.row_ptr_bytes = in.get<std::uint8_t>("a row-pointer width");
      t.nm_n = in.get<std::uint8_t>("an N:M pattern");
      t.nm_m = in.get<std::uint8_t>("an N:M pattern");
      const std::string tw = who_ + ": tensor " + std::to_string(i) + " ('" + t.name + "')";
      if (ty > 6) throw io_error(tw + " has unknown dtype " + std::to_string(ty) + " (expected 0..6: f32 f16 bf16 int8 uint8 int4 uint4)");
      if (en > 3) throw io_error(tw + " has unknown encoding " + std::to_string(en) + " (expected 0..3: dense csr bitmask nm)");
      if (qg > 3) throw io_error(tw + " has unknown quantization granularity " + std::to_string(qg) + " (expected 0..3)");
      if (rank > max_rank) throw io_error(tw + " has rank " + std::to_string(rank) + " (expected at most 8)");
      if (zf > 1) throw io_error(tw + " has zero-point flag " + std::to_string(zf) + " (expected 0 or 1)");
      t.type = static_cast<dtype>(ty);
      t.enc = static_cast<encoding>(en);
      t.quant = static_cast<granularity>(qg);
      t.has_zero_points = zf == 1;
      for (int r = 0; r < rank; ++r) {
        const auto d = in.get<std::uint64_t>("a dimension");
        if (d > (std::uint64_t{1} << 60)) throw io_error(tw + " has extent " + std::to_string(d) + " (expected at most 2^60)");
        t.shape.push_back(static_cast<index_t>(d));
      }
      t.axis = in.get<std::int64_t>("a quantization axis");
      t.group_size = in.get<std::int64_t>("a group size");
      t.param_count = in.get<std::uint64_t>("a parameter count");
      t.qmin = in.get<std::int32_t>("a code range");
      t.qmax = in.get<std::int32_t>("a code range");
      t.nnz = in.get<std::uint64_t>("an nnz");
      for (std::uint64_t& s : t.section_bytes) s = in.get<std::uint64_t>("a section size");
      t.offset = in.get<std::uint64_t>("a payload offset");
      t.length = in.get<std::uint64_t>("a payload length");
      t.crc = in.get<std::uint32_t>("a payload checksum");
      detail::check_info<io_error>(t, who_);
      const std::uint64_t need = detail::layout_sections(t);
      if (t.length != need) {
        throw io_error(tw + " has payload length " + std::to_string(t.length) + " (expected " + std::to_string(need) +
                       " from its sections)");
      }
      if (t.offset % data_alignment != 0) {
        throw io_error(tw + " is misaligned: offset " + std::to_string(t.offset) + " (expected a multiple of 64)");
      }
      if (t.offset < hlen || t.offset > n || t.length > n - t.offset) {
        throw io_error(tw + " has offset " + std::to_string(t.offset) + " and length " + std::to_string(t.length) +
                       " past the end of the data (header ends at " + std::to_string(hlen) + ", file at " +
                       std::to_string(n) + ")");
      }
      infos_.push_back(std::move(t));
    }
    if (in.pos() != hlen) {
      throw io_error(who_ + " has " + std::to_string(hlen - in.pos()) + " unexplained header bytes after the table " +
                     "(expected the table to end at the header length)");
    }
    {
      std::map<std::string_view, std::size_t> seen;
      for (std::size_t i = 0; i < infos_.size(); ++i) {
        if (!seen.emplace(infos_[i].name, i).second) {
          throw io_error(who_ + " has two tensors named '" + infos_[i].name + "' (expected unique names)");
        }
      }
    }
    // The payloads tile the data region: sorted by offset, each non-empty one
    // starts at the first multiple of 64 after the previous one (after the header
    // for the first), and the file ends with the last. So every byte of the file
    // is covered by the header CRC, a payload CRC, or a zero-padding check.
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < infos_.size(); ++i)
      if (infos_[i].length > 0) order.push_back(i);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t c) { return infos_[a].offset < infos_[c].offset; });
    std::uint64_t expect = detail::align_up(hlen, data_alignment);
    std::uint64_t end = expect;
    for (std::size_t k = 0; k < order.size(); ++k) {
      const tensor_info& c = infos_[order[k]];
      if (c.offset < expect) {
        throw io_error(who_ + ": tensors '" + infos_[order[k - 1]].name + "' and '" + c.name + "' overlap (offset " +
                       std::to_string(c.offset) + ", the previous payload ends at " + std::to_string(end) + ")");
      }
      if (c.offset > expect) {
        throw io_error(who_ + ": tensor '" + c.name + "' starts at " + std::to_string(c.offset) + " (expected " +
                       std::to_string(expect) + ", right after the previous payload)");
      }
      end = c.offset + c.length;
      expect = detail::align_up(end, data_alignment);
    }
    if (end != n) {
      throw io_error(who_ + " has " + std::to_string(n - std::min<std::uint64_t>(n, end)) +
                     " bytes after the last payload (expected the file to end at " + std::to_string(end) + ")");
    }
    for (std::uint64_t k = hlen; k < std::min<std::uint64_t>(detail::align_up(hlen, data_alignment), n); ++k) {
      if (p[k] != 0) throw io_error(who_ + " has non-zero padding after the header (byte " + std::to_string(k) + ")");
    }
    state_ = std::make_unique<std::atomic<std::uint8_t>[]>(infos_.size());
    for (std::size_t i = 0; i < infos_.size(); ++i) state_[i].store(0);
    if (mode == verify::eager) verify_all();
  }

  [[nodiscard]] tensor_ref make_ref(const tensor_info& t) const noexcept {
    tensor_ref r;
    r.info = &t;
    for (std::size_t s = 0; s < section_count; ++s) {
      r.sections[s] = bytes_.subspan(static_cast<std::size_t>(t.offset + t.section_offset[s]),
                                     static_cast<std::size_t>(t.section_bytes[s]));
    }
    return r;
  }

  template <class I>
  static std::uint64_t read_index(const std::byte* p, std::uint64_t k) noexcept {
    I v;
    std::memcpy(&v, p + k * sizeof(I), sizeof(I));
    return static_cast<std::uint64_t>(v);
  }
  static std::uint64_t read_width(const std::byte* p, std::uint64_t k, int width) noexcept {
    switch (width) {
      case 1: return read_index<std::uint8_t>(p, k);
      case 2: return read_index<std::uint16_t>(p, k);
      case 4: return read_index<std::uint32_t>(p, k);
      default: return read_index<std::uint64_t>(p, k);
    }
  }

  void verify_tensor(const tensor_info& t) const {
    const std::string tw = who_ + ": tensor '" + t.name + "'";
    const std::span<const std::byte> payload =
        bytes_.subspan(static_cast<std::size_t>(t.offset), static_cast<std::size_t>(t.length));
    const std::uint32_t crc = detail::crc32(0, payload.data(), payload.size());
    if (crc != t.crc) {
      throw io_error(tw + " has a checksum mismatch (stored " + std::to_string(t.crc) + ", computed " +
                     std::to_string(crc) + "): its data is corrupt");
    }
    const std::uint64_t pad_end = std::min<std::uint64_t>(detail::align_up(t.offset + t.length, data_alignment), bytes_.size());
    for (std::uint64_t k = t.offset + t.length; k < pad_end; ++k) {
      if (bytes_[static_cast<std::size_t>(k)] != std::byte{0}) {
        throw io_error(tw + " is followed by non-zero padding (byte " + std::to_string(k) + ")");
      }
    }
    const tensor_ref r = make_ref(t);
    // Quantization parameters: scales finite and > 0, zero points inside [qmin, qmax].
    for (float s : r.scales()) {
      if (!(std::isfinite(s) && s > 0.0f)) throw io_error(tw + " has a scale " + std::to_string(s) + " (expected finite and > 0)");
    }
    for (std::int32_t z : r.zero_points()) {
      if (z < t.qmin || z > t.qmax) {
        throw io_error(tw + " has a zero point " + std::to_string(z) + " outside its code range [" + std::to_string(t.qmin) +
                       ", " + std::to_string(t.qmax) + "]");
      }
    }
    if (t.enc == encoding::dense) return;
    const auto rows = static_cast<std::uint64_t>(t.shape[0]);
    const auto cols = static_cast<std::uint64_t>(t.shape[1]);
    if (t.enc == encoding::csr) {
      const std::byte* rp = r.bytes(section::row_ptr).data();
      const std::byte* ci = r.bytes(section::indices).data();
      if (read_width(rp, 0, t.row_ptr_bytes) != 0) throw io_error(tw + ": CSR row pointer 0 is not 0");
      std::uint64_t prev = 0;
      for (std::uint64_t i = 1; i <= rows; ++i) {
        const std::uint64_t e = read_width(rp, i, t.row_ptr_bytes);
        if (e < prev || e > t.nnz) {
          throw io_error(tw + ": CSR row pointer " + std::to_string(i) + " is " + std::to_string(e) +
                         " (expected non-decreasing, at most nnz " + std::to_string(t.nnz) + ")");
        }
        for (std::uint64_t k = prev; k < e; ++k) {
          const std::uint64_t c = read_width(ci, k, t.index_bytes);
          if (c >= cols || (k > prev && c <= read_width(ci, k - 1, t.index_bytes))) {
            throw io_error(tw + ": CSR column index " + std::to_string(c) + " at entry " + std::to_string(k) +
                           " (expected ascending within the row and < " + std::to_string(cols) + ")");
          }
        }
        prev = e;
      }
      if (prev != t.nnz) throw io_error(tw + ": the last CSR row pointer is " + std::to_string(prev) + " (expected nnz " + std::to_string(t.nnz) + ")");
    } else if (t.enc == encoding::bitmask) {
      const auto m = r.bytes(section::mask);
      std::uint64_t ones = 0;
      for (std::byte x : m) ones += static_cast<std::uint64_t>(std::popcount(static_cast<unsigned>(x)));
      const std::uint64_t n = rows * cols;
      if (n % 8 != 0 && !m.empty() && (static_cast<unsigned>(m.back()) >> (n % 8)) != 0) {
        throw io_error(tw + ": bitmask padding bits are set (expected 0 past element " + std::to_string(n) + ")");
      }
      if (ones != t.nnz) throw io_error(tw + ": the bitmask has " + std::to_string(ones) + " bits set (expected nnz " + std::to_string(t.nnz) + ")");
    } else {
      const auto pos = r.bytes(section::indices);
      const auto* pb = reinterpret_cast<const std::uint8_t*>(pos.data());
      const int bits = detail::nm_bits(t.nm_m);
      const std::uint64_t groups = (cols + t.nm_m - 1) / t.nm_m;
      std::uint64_t s = 0;
      for (std::uint64_t g = 0; g < rows * groups; ++g) {
        int last = -1;
        for (int k = 0; k < t.nm_n; ++k, ++s) {
          const auto v = static_cast<int>(prune::detail::sparse_get_bits(pb, pos.size(), s * static_cast<std::uint64_t>(bits), bits));
          if (v >= t.nm_m || v <= last) {
            throw io_error(tw + ": N:M slot " + std::to_string(s) + " has position " + std::to_string(v) +
                           " (expected ascending positions < " + std::to_string(t.nm_m) + " within a group)");
          }
          last = v;
        }
      }
      const std::uint64_t used = s * static_cast<std::uint64_t>(bits);
      if (used % 8 != 0 && !pos.empty() && (static_cast<unsigned>(pos.back()) >> (used % 8)) != 0) {
        throw io_error(tw + ": N:M position padding bits are set (expected 0)");
      }
    }
  }

  std::unique_ptr<mapped_file> map_;
  std::string who_;
  std::span<const std::byte> bytes_;
  std::uint64_t header_len_ = 0;
  metadata_map metadata_;
  std::vector<tensor_info> infos_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> state_;
};

/// Opens `path` (file::open). Throws io_error as file::open.
[[nodiscard]] inline file load(const std::filesystem::path& path, verify mode = verify::lazy) {
  return file::open(path, mode);
}

// ---------------------------------------------------------------------------
// Converting loaded tensors
// ---------------------------------------------------------------------------

namespace detail {

/// Stored element k of the values section as float: f32 itself, f16/bf16 widened
/// exactly, integers as their value (before any scale).
[[nodiscard]] inline float stored_as_float(dtype t, const std::byte* v, std::uint64_t k) noexcept {
  switch (t) {
    case dtype::f32: {
      float f;
      std::memcpy(&f, v + 4 * k, 4);
      return f;
    }
    case dtype::f16: {
      std::uint16_t h;
      std::memcpy(&h, v + 2 * k, 2);
      return qprune::detail::half_bits_to_float(h);
    }
    case dtype::bf16: {
      std::uint16_t h;
      std::memcpy(&h, v + 2 * k, 2);
      return qprune::detail::bf16_bits_to_float(h);
    }
    case dtype::int8: return static_cast<float>(static_cast<std::int8_t>(v[k]));
    case dtype::uint8: return static_cast<float>(static_cast<std::uint8_t>(v[k]));
    default: return 0.0f;
  }
}

/// Integer code of stored element k (byte types).
[[nodiscard]] inline std::int32_t stored_code(dtype t, const std::byte* v, std::uint64_t k) noexcept {
  return t == dtype::int8 ? std::int32_t{static_cast<std::int8_t>(v[k])} : std::int32_t{static_cast<std::uint8_t>(v[k])};
}

}  // namespace detail

/// Writes the tensor's dense float values into `out` (element_count() floats,
/// row-major):
///   float dtypes: the stored value (f16 / bf16 widened exactly);
///   integer codes with parameters: x' = scale * float(q - zero_point) with the
///     element's (scale, zero point): quant::dequantize_value;
///   integer codes without parameters: float(q);
///   sparse encodings: stored entries as above, every other element +0.0f.
/// Parameter of an element with index (i_0, ..., i_{R-1}): per tensor entry 0;
/// per channel entry i_axis; per group the row-major index in the parameter
/// shape (the shape with extent(axis) replaced by ceil(extent(axis) / group_size))
/// of (i_0, ..., i_axis / group_size, ..., i_{R-1}).
/// Throws shape_error unless out.size() == element_count().
inline void dequantize(const tensor_ref& r, std::span<float> out) {
  const tensor_info& t = *r.info;
  if (out.size() != t.element_count()) {
    throw shape_error("tensor '" + t.name + "' has " + std::to_string(t.element_count()) + " elements, output holds " +
                      std::to_string(out.size()));
  }
  const std::byte* v = r.bytes(section::values).data();
  const std::span<const float> sc = r.scales();
  const std::span<const std::int32_t> zp = r.zero_points();
  auto param = [&](std::uint64_t p) {
    return quant::affine_params{sc[p], zp.empty() ? 0 : zp[p]};
  };
  float* o = out.data();
  if (t.enc == encoding::dense) {
    const std::uint64_t n = t.element_count();
    if (n == 0) return;
    if (!is_integer(t.type)) {
      for (std::uint64_t k = 0; k < n; ++k) o[k] = detail::stored_as_float(t.type, v, k);
      return;
    }
    const std::uint64_t last = t.shape.empty() ? 1 : static_cast<std::uint64_t>(t.shape.back());
    const std::uint64_t row_bytes = (last + 1) / 2;
    auto code = [&](std::uint64_t k) -> std::int32_t {
      if (!is_4bit(t.type)) return detail::stored_code(t.type, v, k);
      const std::uint64_t line = k / last, c = k % last;
      const auto b = static_cast<std::uint8_t>(v[line * row_bytes + c / 2]);
      const auto nib = static_cast<std::uint8_t>((c % 2 == 0 ? b : (b >> 4)) & 0x0F);
      return t.type == dtype::int4 ? std::int32_t{quant::int4_from_nibble(nib)} : std::int32_t{nib};
    };
    if (t.quant == granularity::none) {
      for (std::uint64_t k = 0; k < n; ++k) o[k] = static_cast<float>(code(k));
      return;
    }
    if (t.quant == granularity::tensor) {
      const quant::affine_params p = param(0);
      for (std::uint64_t k = 0; k < n; ++k) o[k] = quant::dequantize_value(code(k), p);
      return;
    }
    const auto ax = static_cast<std::size_t>(t.axis);
    std::uint64_t outer = 1, inner = 1;
    for (std::size_t d = 0; d < ax; ++d) outer *= static_cast<std::uint64_t>(t.shape[d]);
    for (std::size_t d = ax + 1; d < t.shape.size(); ++d) inner *= static_cast<std::uint64_t>(t.shape[d]);
    const auto len = static_cast<std::uint64_t>(t.shape[ax]);
    const std::uint64_t gs = t.quant == granularity::group ? static_cast<std::uint64_t>(t.group_size) : 1;
    const std::uint64_t groups = (len + gs - 1) / gs;
    std::uint64_t k = 0;
    for (std::uint64_t a0 = 0; a0 < outer; ++a0) {
      for (std::uint64_t a = 0; a < len; ++a) {
        for (std::uint64_t i = 0; i < inner; ++i, ++k) {
          const std::uint64_t p = t.quant == granularity::channel ? a : (a0 * groups + a / gs) * inner + i;
          o[k] = quant::dequantize_value(code(k), param(p));
        }
      }
    }
    return;
  }
  // Sparse (rank 2, byte-addressed values).
  const auto rows = static_cast<std::uint64_t>(t.shape[0]);
  const auto cols = static_cast<std::uint64_t>(t.shape[1]);
  std::fill(out.begin(), out.end(), 0.0f);
  auto value = [&](std::uint64_t k, std::uint64_t row, std::uint64_t col) -> float {
    if (!is_integer(t.type) || t.quant == granularity::none) return detail::stored_as_float(t.type, v, k);
    const std::uint64_t p = t.quant == granularity::tensor ? 0 : (t.axis == 0 ? row : col);
    return quant::dequantize_value(detail::stored_code(t.type, v, k), param(p));
  };
  if (t.enc == encoding::csr) {
    const std::byte* rp = r.bytes(section::row_ptr).data();
    const std::byte* ci = r.bytes(section::indices).data();
    auto rd = [](const std::byte* p, std::uint64_t k, int w) -> std::uint64_t {
      std::uint64_t x = 0;
      std::memcpy(&x, p + k * static_cast<std::uint64_t>(w), static_cast<std::size_t>(w));
      return x;
    };
    for (std::uint64_t row = 0; row < rows; ++row) {
      const std::uint64_t b = rd(rp, row, t.row_ptr_bytes), e = rd(rp, row + 1, t.row_ptr_bytes);
      for (std::uint64_t k = b; k < e; ++k) {
        const std::uint64_t c = rd(ci, k, t.index_bytes);
        o[row * cols + c] = value(k, row, c);
      }
    }
  } else if (t.enc == encoding::bitmask) {
    const std::byte* m = r.bytes(section::mask).data();
    std::uint64_t k = 0;
    for (std::uint64_t i = 0; i < rows * cols; ++i) {
      if (((static_cast<unsigned>(m[i >> 3]) >> (i & 7)) & 1u) != 0) o[i] = value(k++, i / cols, i % cols);
    }
  } else {
    const auto pos = r.bytes(section::indices);
    const auto* pb = reinterpret_cast<const std::uint8_t*>(pos.data());
    const int bits = detail::nm_bits(t.nm_m);
    const std::uint64_t groups = (cols + t.nm_m - 1) / t.nm_m;
    std::uint64_t s = 0;
    for (std::uint64_t row = 0; row < rows; ++row) {
      for (std::uint64_t g = 0; g < groups; ++g) {
        for (int i = 0; i < t.nm_n; ++i, ++s) {
          const std::uint64_t c = g * t.nm_m + prune::detail::sparse_get_bits(pb, pos.size(), s * static_cast<std::uint64_t>(bits), bits);
          if (c < cols) o[row * cols + c] = value(s, row, c);
        }
      }
    }
  }
}

/// The tensor's dense float values (see dequantize), in a new 64-byte aligned buffer.
[[nodiscard]] inline aligned_vector<float> to_float(const tensor_ref& r) {
  aligned_vector<float> out(static_cast<std::size_t>(r.info->element_count()));
  dequantize(r, out);
  return out;
}

/// A dense tensor of T and rank R, copied out of the file (exact). Throws io_error
/// unless the tensor is dense, of dtype T, rank R, and has no quantization parameters.
template <class T, std::size_t R>
  requires is_storage_type<T>
[[nodiscard]] qprune::tensor<T, R> load_tensor(const tensor_ref& r) {
  const tensor_view<const T, R> v = r.view<T, R>();
  return qprune::tensor<T, R>(v.extents(), std::span<const T>(v.data_handle(), static_cast<std::size_t>(v.size())));
}

/// int8 weights [out, in] (codes and per-channel scales, exact). Throws io_error
/// unless the tensor is dense int8, rank 2, per channel along axis 0 with zero points 0.
/// (Include quant/int8.hpp to use it.)
template <class W = quant::int8_weights>
  requires std::same_as<W, quant::int8_weights>
[[nodiscard]] W load_int8_weights(const tensor_ref& r) {
  const tensor_info& t = *r.info;
  if (t.type != dtype::int8 || t.enc != encoding::dense || t.shape.size() != 2 || t.quant != granularity::channel ||
      t.axis != 0) {
    throw io_error("tensor '" + t.name + "' is not int8 weights (expected dense int8, rank 2, per channel along axis 0)");
  }
  for (std::int32_t z : r.zero_points())
    if (z != 0) throw io_error("tensor '" + t.name + "' has non-zero zero points (expected symmetric int8 weights)");
  W w{load_tensor<std::int8_t, 2>(r), {}};
  const auto sc = r.scales();
  w.params.scales.assign(sc.begin(), sc.end());
  w.params.zero_points.assign(sc.size(), 0);
  w.params.axis = 0;
  return w;
}

/// A packed 4-bit matrix (exact). The scheme: affine for uint4, symmetric_narrow
/// for int4 with code range [-7, 7], symmetric otherwise. Throws io_error unless
/// the tensor is dense int4/uint4, rank 2, grouped along axis 1.
[[nodiscard]] inline quant::packed_int4_matrix load_packed_int4(const tensor_ref& r) {
  const tensor_info& t = *r.info;
  if (!is_4bit(t.type) || t.enc != encoding::dense || t.shape.size() != 2 || t.quant != granularity::group ||
      t.axis != 1) {
    throw io_error("tensor '" + t.name + "' is not a packed 4-bit matrix (expected dense int4/uint4, rank 2, grouped along axis 1)");
  }
  quant::packed_int4_matrix m;
  m.kind = t.type == dtype::uint4 ? quant::int4_scheme::affine
                                  : (t.qmin == -7 ? quant::int4_scheme::symmetric_narrow : quant::int4_scheme::symmetric);
  m.rows = t.shape[0];
  m.cols = t.shape[1];
  const auto v = r.bytes(section::values);
  m.codes = qprune::tensor<std::uint8_t, 2>(
      extents<2>(m.rows, m.row_bytes()),
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v.data()), v.size()));
  const auto sc = r.scales();
  const auto zp = r.zero_points();
  m.params.scales.assign(sc.begin(), sc.end());
  if (zp.empty()) m.params.zero_points.assign(sc.size(), 0);
  else m.params.zero_points.assign(zp.begin(), zp.end());
  m.params.axis = 1;
  m.params.group_size = t.group_size;
  return m;
}

namespace detail {

template <prune::sparse_value V>
void check_sparse_kind(const tensor_info& t, encoding want) {
  constexpr dtype d = std::is_same_v<V, float> ? dtype::f32 : (std::is_same_v<V, half> ? dtype::f16 : dtype::int8);
  const bool int8_ok = d != dtype::int8 || (t.quant == granularity::channel && t.axis == 0 && !t.has_zero_points);
  const bool float_ok = d == dtype::int8 || t.quant == granularity::none;
  if (t.enc != want || t.type != d || !int8_ok || !float_ok) {
    throw io_error("tensor '" + t.name + "' is a " + std::string(to_string(t.enc)) + " " + std::string(to_string(t.type)) +
                   " tensor (expected " + std::string(to_string(want)) + " " + std::string(to_string(d)) +
                   (d == dtype::int8 ? " with per-row scales" : "") + ")");
  }
}

/// Dense float weights from which from_dense rebuilds exactly the stored values:
/// fp32 / fp16 the values themselves; int8 per row values w = s * q, with the
/// largest |w| nudged so that max|w| / 127 == s (from_dense's scale rule).
/// Throws io_error when no such weights exist (a row whose largest code is not
/// +-127, or all-zero codes with a scale other than 1).
template <prune::sparse_value V>
void rebuild_rows(const tensor_ref& r, std::span<float> dense) {
  dequantize(r, dense);
  if constexpr (std::is_same_v<V, std::int8_t>) {
    const tensor_info& t = *r.info;
    const auto rows = static_cast<std::size_t>(t.shape[0]);
    const auto cols = static_cast<std::size_t>(t.shape[1]);
    const std::span<const float> sc = r.scales();
    for (std::size_t i = 0; i < rows; ++i) {
      float* row = dense.data() + i * cols;
      const float s = sc[i];
      float amax = 0.0f;
      for (std::size_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(row[c]));
      if (amax == 0.0f) {
        if (s != 1.0f) throw io_error("tensor '" + t.name + "' row " + std::to_string(i) + " cannot be rebuilt exactly (all codes 0, scale not 1)");
        continue;
      }
      float target = amax;
      bool found = false;
      for (int step = 0; step < 64 && !found; ++step) {
        for (float cand : {target, std::nextafter(target, 0.0f), std::nextafter(target, INFINITY)}) {
          if (cand / 127.0f == s) {
            target = cand;
            found = true;
            break;
          }
        }
        if (!found) target = (target / 127.0f < s) ? std::nextafter(target, INFINITY) : std::nextafter(target, 0.0f);
      }
      if (!found) throw io_error("tensor '" + t.name + "' row " + std::to_string(i) + " cannot be rebuilt exactly (its scale is not max|w| / 127)");
      for (std::size_t c = 0; c < cols; ++c) {
        if (std::fabs(row[c]) == amax) row[c] = std::copysign(target, row[c]);
      }
    }
  }
}

/// keep[i] = bit i % 8 of mask byte i / 8, for every row-major element i.
inline void unpack_mask_bits(const tensor_ref& r, qprune::tensor<std::uint8_t, 2>& keep) {
  const std::byte* m = r.bytes(section::mask).data();
  for (index_t i = 0; i < keep.size(); ++i) {
    keep.data()[i] = static_cast<std::uint8_t>((static_cast<unsigned>(m[i >> 3]) >> (i & 7)) & 1u);
  }
}

template <class S>
void check_rebuilt(const tensor_ref& r, const S& a) {
  const auto v = r.bytes(section::values);
  const auto got = std::as_bytes(a.values());
  const auto sc = std::as_bytes(a.scales());
  const auto want_sc = r.bytes(section::scales);
  if (got.size() != v.size() || !std::equal(got.begin(), got.end(), v.begin()) || sc.size() != want_sc.size() ||
      !std::equal(sc.begin(), sc.end(), want_sc.begin())) {
    throw io_error("tensor '" + r.info->name + "' cannot be rebuilt exactly as a " + std::string(to_string(r.info->enc)) +
                   " matrix (its values or scales are not what from_dense produces)");
  }
}

}  // namespace detail

/// A CSR matrix rebuilt with csr_matrix::from_dense over the stored pattern of a
/// CSR- or bitmask-encoded tensor (exact for matrices the library wrote; io_error
/// otherwise, or if the tensor is neither of value type V).
template <prune::sparse_value V>
[[nodiscard]] prune::csr_matrix<V> load_csr(const tensor_ref& r) {
  const bool bitmask = r.info->enc == encoding::bitmask;
  detail::check_sparse_kind<V>(*r.info, bitmask ? encoding::bitmask : encoding::csr);
  const auto rows = r.info->shape[0], cols = r.info->shape[1];
  qprune::tensor<float, 2> w(rows, cols);
  qprune::tensor<std::uint8_t, 2> keep(rows, cols);
  detail::rebuild_rows<V>(r, w.span());
  if (bitmask) {
    detail::unpack_mask_bits(r, keep);
    auto a = prune::csr_matrix<V>::from_dense(w.cview(), keep.cview());
    detail::check_rebuilt(r, a);
    return a;
  }
  const std::byte* rp = r.bytes(section::row_ptr).data();
  const std::byte* ci = r.bytes(section::indices).data();
  for (index_t i = 0; i < rows; ++i) {
    std::uint64_t b = 0, e = 0;
    std::memcpy(&b, rp + static_cast<std::size_t>(i) * r.info->row_ptr_bytes, r.info->row_ptr_bytes);
    std::memcpy(&e, rp + static_cast<std::size_t>(i + 1) * r.info->row_ptr_bytes, r.info->row_ptr_bytes);
    for (std::uint64_t k = b; k < e; ++k) {
      std::uint64_t c = 0;
      std::memcpy(&c, ci + k * r.info->index_bytes, r.info->index_bytes);
      keep(i, static_cast<index_t>(c)) = 1;
    }
  }
  auto a = prune::csr_matrix<V>::from_dense(w.cview(), keep.cview());
  detail::check_rebuilt(r, a);
  return a;
}

/// A bitmask matrix rebuilt with bitmask_matrix::from_dense over the stored mask
/// (exactness and errors as load_csr).
template <prune::sparse_value V>
[[nodiscard]] prune::bitmask_matrix<V> load_bitmask(const tensor_ref& r) {
  detail::check_sparse_kind<V>(*r.info, encoding::bitmask);
  const auto rows = r.info->shape[0], cols = r.info->shape[1];
  qprune::tensor<float, 2> w(rows, cols);
  qprune::tensor<std::uint8_t, 2> keep(rows, cols);
  detail::rebuild_rows<V>(r, w.span());
  detail::unpack_mask_bits(r, keep);
  auto a = prune::bitmask_matrix<V>::from_dense(w.cview(), keep.cview());
  detail::check_rebuilt(r, a);
  return a;
}

/// A packed N:M matrix rebuilt with packed_nm_matrix::from_dense: first keeping
/// the slots with non-zero values, then (if that does not reproduce the slots)
/// every slot; values, positions and scales are exact or io_error is thrown.
/// nnz() equals the stored nnz except for files whose kept entries include zeros.
template <prune::sparse_value V>
[[nodiscard]] prune::packed_nm_matrix<V> load_packed_nm(const tensor_ref& r) {
  detail::check_sparse_kind<V>(*r.info, encoding::nm);
  const tensor_info& t = *r.info;
  const auto rows = t.shape[0], cols = t.shape[1];
  qprune::tensor<float, 2> w(rows, cols);
  detail::rebuild_rows<V>(r, w.span());
  const auto pos = r.bytes(section::indices);
  const auto* pb = reinterpret_cast<const std::uint8_t*>(pos.data());
  const int bits = detail::nm_bits(t.nm_m);
  const index_t groups = (cols + t.nm_m - 1) / t.nm_m;
  const std::byte* v = r.bytes(section::values).data();
  const auto vb = element_bytes(t.type);
  for (int attempt = 0; attempt < 2; ++attempt) {
    qprune::tensor<std::uint8_t, 2> keep(rows, cols);
    std::uint64_t s = 0;
    for (index_t i = 0; i < rows; ++i) {
      for (index_t g = 0; g < groups; ++g) {
        for (int k = 0; k < t.nm_n; ++k, ++s) {
          const index_t c = g * t.nm_m + static_cast<index_t>(prune::detail::sparse_get_bits(pb, pos.size(), s * static_cast<std::uint64_t>(bits), bits));
          bool nonzero = false;
          for (std::uint64_t b = 0; b < vb; ++b) nonzero = nonzero || v[s * vb + b] != std::byte{0};
          if (c < cols && (attempt == 1 || nonzero)) keep(i, c) = 1;
        }
      }
    }
    auto a = prune::packed_nm_matrix<V>::from_dense(w.cview(), keep.cview(), t.nm_n, t.nm_m);
    const auto got = a.position_bytes();
    const bool same_pos = got.size() == pos.size() &&
                          std::equal(got.begin(), got.end(), reinterpret_cast<const std::uint8_t*>(pos.data()));
    if (same_pos && (attempt == 1 || static_cast<std::uint64_t>(a.nnz()) == t.nnz)) {
      detail::check_rebuilt(r, a);
      return a;
    }
  }
  throw io_error("tensor '" + t.name + "' cannot be rebuilt exactly as a packed N:M matrix (slot positions differ)");
}

}  // namespace qprune::io::qpr

// The named N-D array shared by the .npy, .npz and safetensors readers and
// writers: a dtype, a shape, a storage order and bytes that are either owned or
// a view into a memory-mapped file, plus exact conversions to and from float32.
// Arrays are immutable and cheap to copy (copies share the bytes).
// Numerics of the conversions: doc/format.md, "NumPy and safetensors".
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::io {

static_assert(std::endian::native == std::endian::little,
              "qprune::io stores arrays in little-endian order; big-endian hosts are not supported");

/// Element types the interchange formats carry. The order is safetensors'
/// (its writer sorts tensors by this order, largest first).
enum class dtype : std::uint8_t {
  boolean,  ///< one byte, 0 = false, anything else = true
  u8,
  i8,
  f8_e5m2,  ///< safetensors F8_E5M2: raw bytes only, no float conversion
  f8_e4m3,  ///< safetensors F8_E4M3: raw bytes only, no float conversion
  i16,
  u16,
  f16,   ///< IEEE binary16 (qprune::half)
  bf16,  ///< bfloat16 (qprune::bfloat16)
  i32,
  u32,
  f32,
  f64,
  i64,
  u64,
};

/// Bytes per element of `t` (1, 2, 4 or 8).
[[nodiscard]] constexpr std::size_t dtype_size(dtype t) noexcept {
  switch (t) {
    case dtype::boolean:
    case dtype::u8:
    case dtype::i8:
    case dtype::f8_e5m2:
    case dtype::f8_e4m3: return 1;
    case dtype::i16:
    case dtype::u16:
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::i32:
    case dtype::u32:
    case dtype::f32: return 4;
    case dtype::f64:
    case dtype::i64:
    case dtype::u64: return 8;
  }
  return 1;
}

/// Short lower-case name of `t` for messages ("f32", "bf16", "bool", ...).
[[nodiscard]] constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::boolean: return "bool";
    case dtype::u8: return "u8";
    case dtype::i8: return "i8";
    case dtype::f8_e5m2: return "f8_e5m2";
    case dtype::f8_e4m3: return "f8_e4m3";
    case dtype::i16: return "i16";
    case dtype::u16: return "u16";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::i32: return "i32";
    case dtype::u32: return "u32";
    case dtype::f32: return "f32";
    case dtype::f64: return "f64";
    case dtype::i64: return "i64";
    case dtype::u64: return "u64";
  }
  return "?";
}

/// True when `to_float` / `from_float` support `t` (every dtype but the two fp8 ones).
[[nodiscard]] constexpr bool converts_to_float(dtype t) noexcept {
  return t != dtype::f8_e5m2 && t != dtype::f8_e4m3;
}

namespace detail {
template <class T>
struct dtype_of_impl;
template <> struct dtype_of_impl<bool> { static constexpr dtype value = dtype::boolean; };
template <> struct dtype_of_impl<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <> struct dtype_of_impl<std::int8_t> { static constexpr dtype value = dtype::i8; };
template <> struct dtype_of_impl<std::int16_t> { static constexpr dtype value = dtype::i16; };
template <> struct dtype_of_impl<std::uint16_t> { static constexpr dtype value = dtype::u16; };
template <> struct dtype_of_impl<half> { static constexpr dtype value = dtype::f16; };
template <> struct dtype_of_impl<bfloat16> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of_impl<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of_impl<std::uint32_t> { static constexpr dtype value = dtype::u32; };
template <> struct dtype_of_impl<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of_impl<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of_impl<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <> struct dtype_of_impl<std::uint64_t> { static constexpr dtype value = dtype::u64; };
}  // namespace detail

/// The dtype whose elements are C++ type T (bool, the fixed-width integers,
/// half, bfloat16, float, double). Other types do not compile.
template <class T>
inline constexpr dtype dtype_of = detail::dtype_of_impl<std::remove_cv_t<T>>::value;

/// Element order of an N-D array in memory.
enum class array_order : std::uint8_t {
  c,        ///< row-major: the last index varies fastest (numpy's default)
  fortran,  ///< column-major: the first index varies fastest (numpy fortran_order=True)
};

namespace detail {

/// Element count of `shape`, or -1 when a dimension is negative or the product
/// of the elements times `elem_bytes` overflows index_t.
[[nodiscard]] inline index_t checked_count(std::span<const index_t> shape,
                                           std::size_t elem_bytes) noexcept {
  const auto limit = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) /
                     static_cast<std::uint64_t>(elem_bytes == 0 ? 1 : elem_bytes);
  std::uint64_t n = 1;
  bool zero = false;
  for (const index_t d : shape) {
    if (d < 0) return -1;
    if (d == 0) zero = true;
  }
  if (zero) return 0;
  for (const index_t d : shape) {
    const auto u = static_cast<std::uint64_t>(d);
    if (n > limit / u) return -1;
    n *= u;
  }
  return static_cast<index_t>(n);
}

/// "(2, 3)"-style text of a shape for messages.
[[nodiscard]] inline std::string shape_string(std::span<const index_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

template <class T>
[[nodiscard]] inline T load_le(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
inline void store_le(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof(T));
}

/// Reverses the bytes of each `elem`-byte element of `bytes` in place.
inline void byte_swap(std::span<std::byte> bytes, std::size_t elem) noexcept {
  if (elem <= 1) return;
  for (std::size_t i = 0; i + elem <= bytes.size(); i += elem) {
    std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(i),
                 bytes.begin() + static_cast<std::ptrdiff_t>(i + elem));
  }
}

/// Element `i` of raw little-endian bytes of dtype `t`, as float.
///   integers: the nearest float (ties to even); exact for |v| <= 2^24
///   f16/bf16: exact; f64: nearest float (ties to even), overflow -> +-inf
///   bool: 0 -> 0.0f, anything else -> 1.0f
[[nodiscard]] inline float element_to_float(const std::byte* p, dtype t) noexcept {
  switch (t) {
    case dtype::boolean: return load_le<std::uint8_t>(p) != 0 ? 1.0f : 0.0f;
    case dtype::u8: return static_cast<float>(load_le<std::uint8_t>(p));
    case dtype::i8: return static_cast<float>(load_le<std::int8_t>(p));
    case dtype::i16: return static_cast<float>(load_le<std::int16_t>(p));
    case dtype::u16: return static_cast<float>(load_le<std::uint16_t>(p));
    case dtype::f16: return static_cast<float>(half::from_bits(load_le<std::uint16_t>(p)));
    case dtype::bf16: return static_cast<float>(bfloat16::from_bits(load_le<std::uint16_t>(p)));
    case dtype::i32: return static_cast<float>(load_le<std::int32_t>(p));
    case dtype::u32: return static_cast<float>(load_le<std::uint32_t>(p));
    case dtype::f32: return load_le<float>(p);
    case dtype::f64: return static_cast<float>(load_le<double>(p));
    case dtype::i64: return static_cast<float>(load_le<std::int64_t>(p));
    case dtype::u64: return static_cast<float>(load_le<std::uint64_t>(p));
    case dtype::f8_e5m2:
    case dtype::f8_e4m3: return 0.0f;
  }
  return 0.0f;
}

/// Rounds `x` half to even and saturates it to I's range; NaN -> 0.
/// Types up to 32 bits reuse quant::saturate_to_int; wider ones compare
/// against 2^63 / 2^64, which are exact doubles.
template <class I>
[[nodiscard]] inline I float_to_int_saturated(float x) noexcept {
  using L = std::numeric_limits<I>;
  const double r = quant::round_to_integral(static_cast<double>(x), quant::rounding::half_to_even);
  if constexpr (sizeof(I) < 4 || std::is_same_v<I, std::int32_t>) {
    return static_cast<I>(quant::saturate_to_int(r, static_cast<std::int32_t>(L::min()),
                                                 static_cast<std::int32_t>(L::max()), 0));
  } else {
    if (std::isnan(r)) return I{0};
    constexpr double two_pow_digits = L::digits == 64 ? 18446744073709551616.0
                                      : L::digits == 63 ? 9223372036854775808.0
                                                        : 4294967296.0;
    if (r >= two_pow_digits) return L::max();
    if (r <= static_cast<double>(L::min())) return L::min();
    return static_cast<I>(r);
  }
}

/// Stores `x` as element of dtype `t` at `p` (see array::from_float for the rules).
inline void float_to_element(float x, std::byte* p, dtype t) noexcept {
  switch (t) {
    case dtype::boolean: store_le<std::uint8_t>(p, x != 0.0f ? 1 : 0); return;
    case dtype::u8: store_le(p, float_to_int_saturated<std::uint8_t>(x)); return;
    case dtype::i8: store_le(p, float_to_int_saturated<std::int8_t>(x)); return;
    case dtype::i16: store_le(p, float_to_int_saturated<std::int16_t>(x)); return;
    case dtype::u16: store_le(p, float_to_int_saturated<std::uint16_t>(x)); return;
    case dtype::f16: store_le(p, half(x).bits); return;
    case dtype::bf16: store_le(p, bfloat16(x).bits); return;
    case dtype::i32: store_le(p, float_to_int_saturated<std::int32_t>(x)); return;
    case dtype::u32: store_le(p, float_to_int_saturated<std::uint32_t>(x)); return;
    case dtype::f32: store_le(p, x); return;
    case dtype::f64: store_le(p, static_cast<double>(x)); return;
    case dtype::i64: store_le(p, float_to_int_saturated<std::int64_t>(x)); return;
    case dtype::u64: store_le(p, float_to_int_saturated<std::uint64_t>(x)); return;
    case dtype::f8_e5m2:
    case dtype::f8_e4m3: store_le<std::uint8_t>(p, 0); return;
  }
}

/// Calls f(storage_index) for every element in C (row-major) order of an
/// array stored in Fortran order with extents `shape`.
template <class F>
inline void for_each_fortran_offset_in_c_order(std::span<const index_t> shape, index_t count,
                                               F&& f) {
  const std::size_t rank = shape.size();
  std::vector<index_t> stride(rank), idx(rank, 0);
  index_t s = 1;
  for (std::size_t r = 0; r < rank; ++r) {
    stride[r] = s;
    s *= shape[r];
  }
  index_t off = 0;
  for (index_t k = 0; k < count; ++k) {
    f(k, off);
    // Increment the C-order multi-index (last dimension fastest).
    for (std::size_t r = rank; r-- > 0;) {
      if (++idx[r] < shape[r]) {
        off += stride[r];
        break;
      }
      off -= stride[r] * (shape[r] - 1);
      idx[r] = 0;
    }
  }
}

/// Writes `bytes` to `path` (created or truncated); io_error on failure.
inline void write_whole_file(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw io_error("cannot create '" + path.string() + "' (expected a writable path)");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  f.flush();
  if (!f) throw io_error("cannot write '" + path.string() + "' (disk full or I/O error)");
}

}  // namespace detail

/// An immutable named N-D array: dtype, shape, storage order and bytes.
///
/// The bytes are little-endian elements in the array's storage order, aligned
/// to the element size. They are either owned (shared by copies) or a view into
/// memory kept alive by an `owner` handle (readers pass the mapped file, so an
/// array read from a path stays valid after the reader returns). Arrays made by
/// `view` without an owner do not own their bytes: the caller keeps them alive.
class array {
 public:
  /// An empty f32 array of shape (0,).
  array() = default;

  /// An array over `bytes` without copying them when they are aligned to the
  /// element size; otherwise the bytes are copied into an owned aligned buffer.
  /// `owner` (optional) is kept alive as long as any copy of the array.
  /// Throws shape_error when the shape has a negative dimension, its element
  /// count overflows, or bytes.size() != count * dtype_size(type).
  [[nodiscard]] static array view(std::string name, dtype type, std::vector<index_t> shape,
                                  array_order order, std::span<const std::byte> bytes,
                                  std::shared_ptr<const void> owner = {}) {
    array a = make_header(std::move(name), type, std::move(shape), order, bytes.size());
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % dtype_size(type) != 0) {
      a.own_copy(bytes);
    } else {
      a.bytes_ = bytes;
      a.owner_ = std::move(owner);
    }
    return a;
  }

  /// An array owning a copy of `bytes` (same checks as `view`).
  [[nodiscard]] static array copy_of(std::string name, dtype type, std::vector<index_t> shape,
                                     array_order order, std::span<const std::byte> bytes) {
    array a = make_header(std::move(name), type, std::move(shape), order, bytes.size());
    a.own_copy(bytes);
    return a;
  }

  /// An array owning a copy of `values` (elements in `order`); bool values are
  /// stored as bytes 0/1. Throws shape_error when values.size() differs from
  /// the shape's element count.
  template <class T>
  [[nodiscard]] static array from_values(std::string name, std::vector<index_t> shape,
                                         std::span<const T> values,
                                         array_order order = array_order::c) {
    constexpr dtype t = dtype_of<T>;
    const auto n = static_cast<std::size_t>(check_shape(shape, t));
    if (values.size() != n) {
      throw shape_error("array '" + name + "' of shape " + detail::shape_string(shape) + " needs " +
                        std::to_string(n) + " values (got " + std::to_string(values.size()) + ")");
    }
    auto buf = std::make_shared<aligned_vector<std::byte>>(n * sizeof(T));
    if constexpr (std::is_same_v<std::remove_cv_t<T>, bool>) {
      for (std::size_t i = 0; i < n; ++i) (*buf)[i] = std::byte{values[i] ? std::uint8_t{1} : std::uint8_t{0}};
    } else if (n != 0) {
      std::memcpy(buf->data(), values.data(), n * sizeof(T));
    }
    return from_buffer(std::move(name), t, std::move(shape), order, std::move(buf));
  }

  /// An array of dtype `type` holding `values` (given in `order`) converted from float32.
  /// Numerics:
  ///   f32: copied; f64: exact widening
  ///   f16, bf16: round to nearest, ties to even (core/half.hpp), overflow -> +-inf
  ///   integers: q = saturate<T>(round_half_even(x)); NaN -> 0; +-inf -> max/min
  ///   bool: x != 0 (so NaN -> true, like numpy's astype(bool))
  /// Throws config_error for the fp8 dtypes, shape_error for a count mismatch.
  [[nodiscard]] static array from_float(std::string name, std::vector<index_t> shape,
                                        std::span<const float> values, dtype type,
                                        array_order order = array_order::c) {
    if (!converts_to_float(type)) {
      throw config_error("cannot convert float32 to " + std::string(to_string(type)) +
                         " (expected a dtype other than f8_e5m2/f8_e4m3)");
    }
    const auto n = static_cast<std::size_t>(check_shape(shape, type));
    if (values.size() != n) {
      throw shape_error("array '" + name + "' of shape " + detail::shape_string(shape) + " needs " +
                        std::to_string(n) + " values (got " + std::to_string(values.size()) + ")");
    }
    const std::size_t es = dtype_size(type);
    auto buf = std::make_shared<aligned_vector<std::byte>>(n * es);
    for (std::size_t i = 0; i < n; ++i) detail::float_to_element(values[i], buf->data() + i * es, type);
    return from_buffer(std::move(name), type, std::move(shape), order, std::move(buf));
  }

  /// The array's name (an npz member without ".npy", a safetensors key, ...).
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// Element type.
  [[nodiscard]] dtype type() const noexcept { return type_; }
  /// Extents, outermost first (empty for a 0-d scalar).
  [[nodiscard]] const std::vector<index_t>& shape() const noexcept { return shape_; }
  /// Number of dimensions.
  [[nodiscard]] index_t rank() const noexcept { return static_cast<index_t>(shape_.size()); }
  /// Storage order of the bytes.
  [[nodiscard]] array_order order() const noexcept { return order_; }
  /// Number of elements (product of the shape; 1 for a 0-d array).
  [[nodiscard]] index_t size() const noexcept { return size_; }
  /// Raw little-endian element bytes in storage order (size() * dtype_size(type())).
  /// Lifetime: valid while this array or a copy of it exists (and, for a
  /// `view` without owner, while the viewed memory does).
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }

  /// The elements as T, in storage order, without copying. T must be the
  /// C++ type of the dtype (dtype_of<T> == type()); bool arrays are read as
  /// std::uint8_t (raw bytes, nonzero = true). Throws config_error otherwise.
  template <class T>
  [[nodiscard]] std::span<const T> values() const {
    constexpr bool raw_bool = std::is_same_v<std::remove_cv_t<T>, std::uint8_t>;
    if (!(dtype_of<T> == type_ || (raw_bool && type_ == dtype::boolean))) {
      throw config_error("array '" + name_ + "' holds " + std::string(to_string(type_)) +
                         " elements (expected " + std::string(to_string(dtype_of<T>)) + ")");
    }
    static_assert(!std::is_same_v<std::remove_cv_t<T>, bool>,
                  "read bool arrays as std::uint8_t (nonzero = true)");
    return {reinterpret_cast<const T*>(bytes_.data()), static_cast<std::size_t>(size_)};
  }

  /// Writes the elements converted to float32 into `out`, in C (row-major)
  /// order whatever the storage order. Numerics: exact for bool, all 8- and
  /// 16-bit integers, f16, bf16 and f32; nearest float (ties to even) for
  /// 32/64-bit integers above 2^24 and for f64 (overflow -> +-inf).
  /// Throws config_error for fp8 dtypes, shape_error if out.size() != size().
  void to_float(std::span<float> out) const {
    if (!converts_to_float(type_)) {
      throw config_error("cannot convert array '" + name_ + "' of dtype " +
                         std::string(to_string(type_)) +
                         " to float32 (expected a dtype other than f8_e5m2/f8_e4m3)");
    }
    if (out.size() != static_cast<std::size_t>(size_)) {
      throw shape_error("to_float of array '" + name_ + "' needs " + std::to_string(size_) +
                        " floats (got " + std::to_string(out.size()) + ")");
    }
    const std::size_t es = dtype_size(type_);
    const std::byte* p = bytes_.data();
    if (order_ == array_order::c || shape_.size() < 2) {
      if (type_ == dtype::f32 && size_ != 0) {
        std::memcpy(out.data(), p, out.size() * sizeof(float));
        return;
      }
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = detail::element_to_float(p + i * es, type_);
    } else {
      detail::for_each_fortran_offset_in_c_order(shape_, size_, [&](index_t k, index_t off) {
        out[static_cast<std::size_t>(k)] =
            detail::element_to_float(p + static_cast<std::size_t>(off) * es, type_);
      });
    }
  }

  /// The elements converted to float32, in C order (see the overload above).
  [[nodiscard]] std::vector<float> to_float() const {
    if (!converts_to_float(type_)) to_float(std::span<float>{});  // throws the config_error
    std::vector<float> v(static_cast<std::size_t>(size_));
    to_float(std::span<float>(v));
    return v;
  }

  /// The same array in C order: a copy with permuted bytes when the storage
  /// order is Fortran and the rank is 2 or more, else *this (sharing bytes).
  [[nodiscard]] array to_c_order() const {
    if (order_ == array_order::c) return *this;
    array a = *this;
    a.order_ = array_order::c;
    if (shape_.size() < 2) return a;
    const std::size_t es = dtype_size(type_);
    auto buf = std::make_shared<aligned_vector<std::byte>>(bytes_.size());
    detail::for_each_fortran_offset_in_c_order(shape_, size_, [&](index_t k, index_t off) {
      std::memcpy(buf->data() + static_cast<std::size_t>(k) * es,
                  bytes_.data() + static_cast<std::size_t>(off) * es, es);
    });
    a.bytes_ = {buf->data(), buf->size()};
    a.owner_ = std::move(buf);
    return a;
  }

  /// The same array (sharing bytes) under another name.
  [[nodiscard]] array renamed(std::string name) const {
    array a = *this;
    a.name_ = std::move(name);
    return a;
  }

 private:
  static index_t check_shape(const std::vector<index_t>& shape, dtype t) {
    const index_t n = detail::checked_count(shape, dtype_size(t));
    if (n < 0) {
      throw shape_error("shape " + detail::shape_string(shape) +
                        " has a negative dimension or too many elements (expected extents >= 0 "
                        "whose byte size fits in index_t)");
    }
    return n;
  }

  static array make_header(std::string name, dtype type, std::vector<index_t> shape,
                           array_order order, std::size_t nbytes) {
    const index_t n = check_shape(shape, type);
    if (nbytes != static_cast<std::size_t>(n) * dtype_size(type)) {
      throw shape_error("array '" + name + "' of shape " + detail::shape_string(shape) + " and dtype " +
                        std::string(to_string(type)) + " needs " +
                        std::to_string(static_cast<std::size_t>(n) * dtype_size(type)) +
                        " bytes (got " + std::to_string(nbytes) + ")");
    }
    array a;
    a.name_ = std::move(name);
    a.type_ = type;
    a.shape_ = std::move(shape);
    a.order_ = order;
    a.size_ = n;
    return a;
  }

  static array from_buffer(std::string name, dtype type, std::vector<index_t> shape,
                           array_order order, std::shared_ptr<aligned_vector<std::byte>> buf) {
    array a = make_header(std::move(name), type, std::move(shape), order, buf->size());
    a.bytes_ = {buf->data(), buf->size()};
    a.owner_ = std::move(buf);
    return a;
  }

  void own_copy(std::span<const std::byte> bytes) {
    auto buf = std::make_shared<aligned_vector<std::byte>>(bytes.begin(), bytes.end());
    bytes_ = {buf->data(), buf->size()};
    owner_ = std::move(buf);
  }

  std::string name_;
  dtype type_ = dtype::f32;
  std::vector<index_t> shape_{0};
  array_order order_ = array_order::c;
  index_t size_ = 0;
  std::span<const std::byte> bytes_;
  std::shared_ptr<const void> owner_;
};

}  // namespace qprune::io

// NumPy .npy files: format versions 1.0, 2.0 and 3.0, C and Fortran order,
// bool/int/uint of 8-64 bits and f16/f32/f64 ('>' big-endian files are
// byte-swapped on read). The header dict is parsed by a small strict parser for
// exactly the grammar numpy writes; every malformed file throws io_error naming
// the source and the problem. Format description: doc/format.md, "NumPy".
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/io/array.hpp"
#include "qprune/io/mmap.hpp"

namespace qprune::io {

/// What a .npy header says, before any data is touched.
struct npy_header {
  int major_version = 1;  ///< 1, 2 or 3 (the minor version is always 0)
  dtype type = dtype::f32;
  bool big_endian = false;  ///< descr starts with '>' (elements are swapped on read)
  array_order order = array_order::c;
  std::vector<index_t> shape;
  std::size_t data_offset = 0;  ///< bytes from the start of the file to the first element
  index_t size = 0;             ///< element count (product of the shape)
};

/// Longest shape a .npy header may declare (numpy 1.x allows 32; 2.x 64).
inline constexpr std::size_t npy_max_rank = 64;

namespace detail {

/// Throws io_error "<source> <what>".
[[noreturn]] inline void npy_fail(std::string_view source, const std::string& what) {
  throw io_error(std::string(source) + " " + what);
}

/// Recursive-descent parser for the .npy header dict:
///   dict  := '{' ws [entry (ws ',' ws entry)* [ws ',']] ws '}' ws '\n'
///   entry := str ws ':' ws value
///   str   := "'" [^'\\\n]* "'" | '"' [^"\\\n]* '"'
///   value := str (for 'descr') | 'True' | 'False' (for 'fortran_order')
///          | '(' ws ')' | '(' ws int ws ',' ws ')' | '(' ws int (ws ',' ws int)+ [ws ','] ws ')'
///   int   := '0' | [1-9][0-9]*        ws := (' ' | '\t')*
/// The keys 'descr', 'fortran_order' and 'shape' must each appear exactly once.
class npy_dict_parser {
 public:
  npy_dict_parser(std::string_view text, std::string_view source) noexcept
      : s_(text), source_(source) {}

  void parse(std::string& descr, bool& fortran, std::vector<index_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{', "'{' opening the header dict");
    skip_ws();
    while (peek() != '}') {
      const std::string key = parse_string();
      skip_ws();
      expect(':', "':' after key '" + key + "'");
      skip_ws();
      if (key == "descr") {
        if (have_descr) fail("repeats the key 'descr' (expected each key once)");
        descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_fortran) fail("repeats the key 'fortran_order' (expected each key once)");
        fortran = parse_bool();
        have_fortran = true;
      } else if (key == "shape") {
        if (have_shape) fail("repeats the key 'shape' (expected each key once)");
        parse_shape(shape);
        have_shape = true;
      } else {
        fail("has the unknown header key '" + key +
             "' (expected only 'descr', 'fortran_order' and 'shape')");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != '}') {
        fail("has " + describe_here() + " after the value of '" + key + "' (expected ',' or '}')");
      }
    }
    ++pos_;  // '}'
    skip_ws();
    if (pos_ + 1 != s_.size() || s_[pos_] != '\n') {
      fail("has " + describe_here() +
           " after the header dict (expected space padding and a final newline)");
    }
    if (!have_descr || !have_fortran || !have_shape) {
      fail(std::string("has no '") + (!have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape") +
           "' key (expected 'descr', 'fortran_order' and 'shape')");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { npy_fail(source_, what); }

  [[nodiscard]] char peek() const noexcept { return pos_ < s_.size() ? s_[pos_] : '\0'; }

  [[nodiscard]] std::string describe_here() const {
    if (pos_ >= s_.size()) return "the end of the header";
    const auto c = static_cast<unsigned char>(s_[pos_]);
    std::string d = "byte " + std::to_string(static_cast<unsigned>(c));
    if (c >= 0x20 && c < 0x7f) d += " '" + std::string(1, static_cast<char>(c)) + "'";
    return d + " at header offset " + std::to_string(pos_);
  }

  void skip_ws() noexcept {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }

  void expect(char c, const std::string& what) {
    if (peek() != c || pos_ >= s_.size()) fail("has " + describe_here() + " (expected " + what + ")");
    ++pos_;
  }

  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("has " + describe_here() + " (expected a quoted string)");
    const std::size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      const char c = s_[pos_];
      if (c == '\\' || c == '\n') fail("has " + describe_here() + " inside a string (expected plain text)");
      ++pos_;
    }
    if (pos_ >= s_.size()) fail("has an unterminated string in its header (expected a closing quote)");
    return std::string(s_.substr(start, pos_++ - start));
  }

  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("has " + describe_here() + " for 'fortran_order' (expected True or False)");
  }

  index_t parse_int() {
    const std::size_t start = pos_;
    std::uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[pos_] - '0');
      if (v > (static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) - d) / 10) {
        fail("has a dimension above 2^63 - 1 in 'shape' (expected a representable size)");
      }
      v = v * 10 + d;
      ++pos_;
    }
    if (pos_ == start) {
      pos_ = start;
      fail("has " + describe_here() + " in 'shape' (expected a non-negative integer)");
    }
    if (s_[start] == '0' && pos_ - start > 1) {
      fail("has a dimension with a leading zero in 'shape' (expected a decimal integer)");
    }
    return static_cast<index_t>(v);
  }

  void parse_shape(std::vector<index_t>& shape) {
    shape.clear();
    expect('(', "'(' opening the shape tuple");
    skip_ws();
    if (peek() == ')') {
      ++pos_;
      return;
    }
    bool trailing_comma = false;
    for (;;) {
      if (shape.size() == npy_max_rank) {
        fail("declares more than " + std::to_string(npy_max_rank) + " dimensions (expected at most " +
             std::to_string(npy_max_rank) + ")");
      }
      shape.push_back(parse_int());
      skip_ws();
      trailing_comma = false;
      if (peek() == ',') {
        ++pos_;
        trailing_comma = true;
        skip_ws();
        if (peek() == ')') break;
        continue;
      }
      if (peek() == ')') break;
      fail("has " + describe_here() + " in 'shape' (expected ',' or ')')");
    }
    ++pos_;  // ')'
    if (shape.size() == 1 && !trailing_comma) {
      fail("has a parenthesised integer as 'shape' (expected a tuple such as (n,))");
    }
  }

  std::string_view s_;
  std::string_view source_;
  std::size_t pos_ = 0;
};

/// Maps a numpy descr string to a dtype; `big_endian` set for '>' types.
/// Accepts '<' (or '>') for multi-byte types and '|', '<', '>' for one-byte types.
inline dtype npy_descr_to_dtype(std::string_view descr, bool& big_endian, std::string_view source) {
  big_endian = false;
  if (descr == "|O" || descr == "O" || descr == "<O" || descr == ">O") {
    npy_fail(source, "holds Python objects (descr '" + std::string(descr) +
                         "'; expected numeric data: object arrays need pickle and are not supported)");
  }
  const auto unsupported = [&]() {
    npy_fail(source, "has the unsupported dtype '" + std::string(descr) +
                         "' (expected one of <f2 <f4 <f8 |b1 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8, or '>' "
                         "for big-endian)");
  };
  if (descr.size() != 3) unsupported();
  const char bo = descr[0];
  const std::string_view code = descr.substr(1);
  dtype t{};
  if (code == "b1") t = dtype::boolean;
  else if (code == "i1") t = dtype::i8;
  else if (code == "u1") t = dtype::u8;
  else if (code == "i2") t = dtype::i16;
  else if (code == "u2") t = dtype::u16;
  else if (code == "i4") t = dtype::i32;
  else if (code == "u4") t = dtype::u32;
  else if (code == "i8") t = dtype::i64;
  else if (code == "u8") t = dtype::u64;
  else if (code == "f2") t = dtype::f16;
  else if (code == "f4") t = dtype::f32;
  else if (code == "f8") t = dtype::f64;
  else unsupported();
  if (dtype_size(t) == 1) {
    if (bo != '|' && bo != '<' && bo != '>') unsupported();
  } else {
    if (bo != '<' && bo != '>') unsupported();
    big_endian = bo == '>';
  }
  return t;
}

/// numpy's descr for a dtype; config_error for dtypes numpy lacks (bf16, fp8).
inline std::string_view dtype_to_npy_descr(dtype t) {
  switch (t) {
    case dtype::boolean: return "|b1";
    case dtype::u8: return "|u1";
    case dtype::i8: return "|i1";
    case dtype::i16: return "<i2";
    case dtype::u16: return "<u2";
    case dtype::f16: return "<f2";
    case dtype::i32: return "<i4";
    case dtype::u32: return "<u4";
    case dtype::f32: return "<f4";
    case dtype::f64: return "<f8";
    case dtype::i64: return "<i8";
    case dtype::u64: return "<u8";
    case dtype::bf16:
    case dtype::f8_e5m2:
    case dtype::f8_e4m3: break;
  }
  throw config_error("numpy has no dtype for " + std::string(to_string(t)) +
                     " (expected bool, an integer, f16, f32 or f64; convert with to_float first)");
}

}  // namespace detail

/// Parses and validates the header of a .npy file held in `bytes`; `source`
/// names it in messages ("'w.npy'", "buffer", ...). Checks the magic, the
/// version (1.0, 2.0, 3.0), the header length against the file, the dict
/// grammar, the dtype, the shape (product overflow) and that exactly
/// size * dtype_size bytes of data follow the header. Throws io_error.
[[nodiscard]] inline npy_header parse_npy_header(std::span<const std::byte> bytes,
                                                 std::string_view source = "buffer") {
  using detail::npy_fail;
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 10) {
    npy_fail(source, "has " + std::to_string(bytes.size()) +
                         " bytes (expected at least the 10-byte .npy preamble)");
  }
  for (std::size_t i = 0; i < 6; ++i) {
    if (static_cast<unsigned char>(bytes[i]) != magic[i]) {
      npy_fail(source, "does not start with the .npy magic (expected \\x93NUMPY)");
    }
  }
  npy_header h;
  const auto major = static_cast<unsigned>(bytes[6]), minor = static_cast<unsigned>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    npy_fail(source, "has .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                         " (expected 1.0, 2.0 or 3.0)");
  }
  h.major_version = static_cast<int>(major);
  std::size_t prefix = 10, header_len = 0;
  if (major == 1) {
    header_len = detail::load_le<std::uint16_t>(bytes.data() + 8);
  } else {
    if (bytes.size() < 12) {
      npy_fail(source, "has " + std::to_string(bytes.size()) + " bytes (expected at least the 12-byte "
                           ".npy version " + std::to_string(major) + " preamble)");
    }
    prefix = 12;
    header_len = detail::load_le<std::uint32_t>(bytes.data() + 8);
  }
  if (header_len > bytes.size() - prefix) {
    npy_fail(source, "declares a " + std::to_string(header_len) + "-byte header but has " +
                         std::to_string(bytes.size() - prefix) +
                         " bytes after the preamble (expected the whole header)");
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + prefix), header_len);
  std::string descr;
  bool fortran = false;
  detail::npy_dict_parser(text, source).parse(descr, fortran, h.shape);
  h.type = detail::npy_descr_to_dtype(descr, h.big_endian, source);
  h.order = fortran ? array_order::fortran : array_order::c;
  h.data_offset = prefix + header_len;
  const std::size_t es = dtype_size(h.type);
  h.size = detail::checked_count(h.shape, es);
  if (h.size < 0) {
    npy_fail(source, "has shape " + detail::shape_string(h.shape) +
                         " whose byte size overflows (expected a representable size)");
  }
  const std::size_t data_bytes = bytes.size() - h.data_offset;
  const std::size_t want = static_cast<std::size_t>(h.size) * es;
  if (data_bytes != want) {
    npy_fail(source, "has " + std::to_string(data_bytes) + " data bytes (expected " +
                         std::to_string(want) + " for shape " + detail::shape_string(h.shape) + " of " +
                         std::string(to_string(h.type)) + ")");
  }
  return h;
}

/// Reads a .npy file held in `bytes` as an array named `name`.
/// Lifetime: little-endian data aligned to its element size is not copied: the
/// array views `bytes` (and keeps `owner`, if given, alive); big-endian or
/// misaligned data is copied (and byte-swapped) into an owned buffer.
/// Throws io_error as parse_npy_header does.
[[nodiscard]] inline array read_npy(std::span<const std::byte> bytes, std::string_view source = "buffer",
                                    std::string name = {}, std::shared_ptr<const void> owner = {}) {
  const npy_header h = parse_npy_header(bytes, source);
  const auto data = bytes.subspan(h.data_offset);
  if (h.big_endian) {
    aligned_vector<std::byte> tmp(data.begin(), data.end());
    detail::byte_swap(tmp, dtype_size(h.type));
    return array::copy_of(std::move(name), h.type, h.shape, h.order, tmp);
  }
  return array::view(std::move(name), h.type, h.shape, h.order, data, std::move(owner));
}

/// Reads a .npy file from a buffer the array takes over (so
/// `read_npy(encode_npy(a))` is safe: the bytes live as long as the array).
[[nodiscard]] inline array read_npy(std::vector<std::byte>&& bytes, std::string_view source = "buffer",
                                    std::string name = {}) {
  auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
  const std::span<const std::byte> view(*owned);
  return read_npy(view, source, std::move(name), std::move(owned));
}

/// Reads a .npy file by memory-mapping it; the array is named after the file's
/// stem and keeps the mapping alive (no copy when the data is aligned, as it is
/// in files numpy writes). Throws io_error naming the file.
[[nodiscard]] inline array read_npy(const std::filesystem::path& path) {
  auto file = std::make_shared<mapped_file>(mapped_file::open(path));
  const auto bytes = file->bytes();
  return read_npy(bytes, "'" + path.string() + "'", path.stem().string(), std::move(file));
}

/// The .npy header numpy 1.24 writes for `a`, byte for byte:
///   "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + spaces + '\n'
/// with 21 - len(str(shape[0])) spaces of growth room (shape[-1] in Fortran
/// order; none for 0-d), padded so the data starts at a multiple of 64.
/// Version 1.0, or 2.0 when the header exceeds 65535 bytes.
/// Throws config_error for dtypes numpy lacks (bf16, fp8).
[[nodiscard]] inline std::vector<std::byte> encode_npy_header(const array& a) {
  std::string dict = "{'descr': '";
  dict += detail::dtype_to_npy_descr(a.type());
  dict += "', 'fortran_order': ";
  dict += a.order() == array_order::fortran ? "True" : "False";
  dict += ", 'shape': " + detail::shape_string(a.shape()) + ", }";
  const auto& sh = a.shape();
  if (!sh.empty()) {
    const index_t grow = a.order() == array_order::fortran ? sh.back() : sh.front();
    dict.append(21 - std::min<std::size_t>(21, std::to_string(grow).size()), ' ');
  }
  std::size_t prefix = 10;
  std::size_t hlen = dict.size() + 1;  // + '\n'
  std::size_t pad = 64 - (prefix + hlen) % 64;
  int major = 1;
  if (hlen + pad > 0xFFFF) {
    major = 2;
    prefix = 12;
    pad = 64 - (prefix + hlen) % 64;
  }
  std::vector<std::byte> out(prefix + hlen + pad);
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  for (std::size_t i = 0; i < 6; ++i) out[i] = std::byte{magic[i]};
  out[6] = std::byte{static_cast<unsigned char>(major)};
  out[7] = std::byte{0};
  if (major == 1) {
    detail::store_le(out.data() + 8, static_cast<std::uint16_t>(hlen + pad));
  } else {
    detail::store_le(out.data() + 8, static_cast<std::uint32_t>(hlen + pad));
  }
  std::memcpy(out.data() + prefix, dict.data(), dict.size());
  std::memset(out.data() + prefix + dict.size(), ' ', pad);
  out.back() = std::byte{'\n'};
  return out;
}

/// A complete .npy file for `a` (header as encode_npy_header, then the bytes in
/// the array's storage order). Throws config_error for bf16/fp8 arrays.
[[nodiscard]] inline std::vector<std::byte> encode_npy(const array& a) {
  std::vector<std::byte> out = encode_npy_header(a);
  out.insert(out.end(), a.bytes().begin(), a.bytes().end());
  return out;
}

/// Writes `a` to `path` as .npy (see encode_npy); io_error when the file cannot be written.
inline void write_npy(const std::filesystem::path& path, const array& a) {
  const std::vector<std::byte> header = encode_npy_header(a);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw io_error("cannot create '" + path.string() + "' (expected a writable path)");
  f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(a.bytes().data()), static_cast<std::streamsize>(a.bytes().size()));
  f.flush();
  if (!f) throw io_error("cannot write '" + path.string() + "' (disk full or I/O error)");
}

}  // namespace qprune::io

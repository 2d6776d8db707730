// safetensors files (huggingface/safetensors format): an 8-byte little-endian
// header size, a JSON header (parsed with nlohmann-json) mapping tensor names to
// dtype, shape and data offsets, plus an optional "__metadata__" string map, then
// the data. Validated as the reference implementation validates it; written
// byte for byte as it writes. Layout notes: doc/format.md, "safetensors".
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/io/array.hpp"
#include "qprune/io/json.hpp"
#include "qprune/io/mmap.hpp"

namespace qprune::io {

/// The largest JSON header accepted (the reference implementation's limit).
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

/// The tensors of a safetensors file (in data-offset order) and its metadata.
struct safetensors_file {
  std::vector<array> tensors;
  std::map<std::string, std::string> metadata;  ///< "__metadata__" (empty when absent)

  /// The tensor called `name`, or nullptr.
  [[nodiscard]] const array* find(std::string_view name) const noexcept {
    for (const array& a : tensors) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
};

namespace detail {

/// safetensors dtype string <-> dtype.
[[nodiscard]] constexpr std::string_view safetensors_dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::boolean: return "BOOL";
    case dtype::u8: return "U8";
    case dtype::i8: return "I8";
    case dtype::f8_e5m2: return "F8_E5M2";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::i16: return "I16";
    case dtype::u16: return "U16";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i32: return "I32";
    case dtype::u32: return "U32";
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::i64: return "I64";
    case dtype::u64: return "U64";
  }
  return "?";
}

[[nodiscard]] inline bool safetensors_dtype_from_name(std::string_view s, dtype& t) noexcept {
  for (std::uint8_t i = 0; i <= static_cast<std::uint8_t>(dtype::u64); ++i) {
    if (safetensors_dtype_name(static_cast<dtype>(i)) == s) {
      t = static_cast<dtype>(i);
      return true;
    }
  }
  return false;
}

[[noreturn]] inline void st_fail(std::string_view source, const std::string& what) {
  throw io_error(std::string(source) + " " + what);
}

/// Parses the JSON header, rejecting duplicate keys in any object and nesting
/// deeper than the format needs (object -> tensor object -> shape array).
inline nlohmann::json parse_safetensors_json(std::string_view text, std::string_view source) {
  return parse_strict_json(text, 3, [&](json_problem p, const std::string& d) {
    switch (p) {
      case json_problem::too_deep:
        return io_error(std::string(source) + " has a JSON header nested deeper than 3 levels (expected "
                                              "{name: {dtype, shape: [...], data_offsets: [...]}})");
      case json_problem::duplicate_key:
        return io_error(std::string(source) + " has the key '" + d + "' twice in one JSON object (expected unique names)");
      default:
        return io_error(std::string(source) + " has an invalid JSON header: " + d + " (expected valid UTF-8 JSON)");
    }
  });
}

[[nodiscard]] inline std::uint64_t json_u64(const nlohmann::json& j, std::string_view source,
                                            const std::string& what) {
  if (!j.is_number_unsigned()) {
    st_fail(source, "has " + what + " = " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                        " (expected a non-negative integer)");
  }
  return j.get<std::uint64_t>();
}

inline safetensors_file read_safetensors_impl(std::span<const std::byte> bytes, std::string_view source,
                                              const std::shared_ptr<const void>& owner) {
  if (bytes.size() < 8) {
    st_fail(source, "has " + std::to_string(bytes.size()) + " bytes (expected at least the 8-byte header size)");
  }
  const auto n = load_le<std::uint64_t>(bytes.data());
  if (n > safetensors_max_header) {
    st_fail(source, "declares a " + std::to_string(n) + "-byte header (expected at most " +
                        std::to_string(safetensors_max_header) + ")");
  }
  if (n > bytes.size() - 8) {
    st_fail(source, "declares a " + std::to_string(n) + "-byte header but has " + std::to_string(bytes.size() - 8) +
                        " bytes after the size (expected the whole header)");
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<std::size_t>(n));
  if (text.empty() || text.front() != '{') {
    st_fail(source, "has a header that does not start with '{' (expected a JSON object)");
  }
  const nlohmann::json j = parse_safetensors_json(text, source);
  if (!j.is_object()) st_fail(source, "has a JSON header that is not an object (expected {...})");
  const auto data = bytes.subspan(static_cast<std::size_t>(8 + n));

  struct entry {
    std::string name;
    dtype type;
    std::vector<index_t> shape;
    std::uint64_t begin, end;
  };
  std::vector<entry> entries;
  safetensors_file out;
  for (const auto& [key, v] : j.items()) {
    if (key == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) st_fail(source, "has a __metadata__ that is not an object (expected a string map)");
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string()) {
          st_fail(source, "has __metadata__ key '" + mk + "' with a non-string value (expected a string)");
        }
        out.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    const std::string what = "tensor '" + key + "'";
    if (!v.is_object()) st_fail(source, "has " + what + " described by a non-object (expected {dtype, shape, data_offsets})");
    const auto dt = v.find("dtype");
    const auto sh = v.find("shape");
    const auto off = v.find("data_offsets");
    if (dt == v.end() || sh == v.end() || off == v.end()) {
      st_fail(source, "has " + what + " without " +
                          (dt == v.end() ? "'dtype'" : sh == v.end() ? "'shape'" : "'data_offsets'") +
                          " (expected dtype, shape and data_offsets)");
    }
    entry e{key, dtype::f32, {}, 0, 0};
    if (!dt->is_string() || !safetensors_dtype_from_name(dt->get_ref<const std::string&>(), e.type)) {
      st_fail(source, "has " + what + " of dtype " + dt->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                          " (expected one of BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64)");
    }
    if (!sh->is_array()) st_fail(source, "has " + what + " with a non-array shape (expected [d0, d1, ...])");
    for (const auto& d : *sh) {
      const std::uint64_t u = json_u64(d, source, what + " shape dimension");
      if (u > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max())) {
        st_fail(source, "has " + what + " with dimension " + std::to_string(u) + " (expected at most 2^63 - 1)");
      }
      e.shape.push_back(static_cast<index_t>(u));
    }
    if (!off->is_array() || off->size() != 2) {
      st_fail(source, "has " + what + " whose data_offsets is not a pair (expected [begin, end])");
    }
    e.begin = json_u64((*off)[0], source, what + " data_offsets[0]");
    e.end = json_u64((*off)[1], source, what + " data_offsets[1]");
    const index_t count = checked_count(e.shape, dtype_size(e.type));
    if (count < 0) {
      st_fail(source, "has " + what + " of shape " + shape_string(e.shape) +
                          " whose byte size overflows (expected a representable size)");
    }
    if (e.end < e.begin || e.end - e.begin != static_cast<std::uint64_t>(count) * dtype_size(e.type)) {
      st_fail(source, "has " + what + " with data_offsets [" + std::to_string(e.begin) + ", " +
                          std::to_string(e.end) + "] (expected a span of " +
                          std::to_string(static_cast<std::uint64_t>(count) * dtype_size(e.type)) +
                          " bytes for shape " + shape_string(e.shape) + " of " +
                          std::string(safetensors_dtype_name(e.type)) + ")");
    }
    entries.push_back(std::move(e));
  }
  // Like the reference: sorted by offsets, the tensors must tile the data
  // section exactly: no gap, no overlap, nothing after the last one.
  std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t pos = 0;
  for (const entry& e : entries) {
    if (e.begin != pos) {
      st_fail(source, "has tensor '" + e.name + "' at data offset " + std::to_string(e.begin) + " (expected " +
                          std::to_string(pos) + ": tensors must be contiguous, without gaps or overlaps)");
    }
    pos = e.end;
  }
  if (pos != data.size()) {
    st_fail(source, "has " + std::to_string(data.size()) + " bytes of data (expected " + std::to_string(pos) +
                        ", the end of the last tensor)");
  }
  out.tensors.reserve(entries.size());
  for (entry& e : entries) {
    const auto span = data.subspan(static_cast<std::size_t>(e.begin), static_cast<std::size_t>(e.end - e.begin));
    out.tensors.push_back(array::view(std::move(e.name), e.type, std::move(e.shape), array_order::c, span, owner));
  }
  return out;
}

}  // namespace detail

/// Reads a safetensors file held in `bytes` (`source` names it in messages).
/// Validates: size field, header size (at most 100'000'000 bytes, within the
/// file), header starts with '{' and is valid UTF-8 JSON, no duplicate keys,
/// known dtypes (BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64
/// I64 U64), shapes of non-negative integers whose byte size does not
/// overflow, data_offsets = [begin, end] with end - begin = count * size, and
/// tensors tiling the data section exactly. Throws io_error.
/// Lifetime: tensors aligned to their element size view `bytes` (and keep
/// `owner`, if given, alive); misaligned ones are copied.
[[nodiscard]] inline safetensors_file read_safetensors(std::span<const std::byte> bytes,
                                                       std::string_view source = "buffer",
                                                       std::shared_ptr<const void> owner = {}) {
  return detail::read_safetensors_impl(bytes, source, owner);
}

/// Reads a safetensors file from a buffer the tensors take over (so
/// `read_safetensors(encode_safetensors(tensors))` is safe).
[[nodiscard]] inline safetensors_file read_safetensors(std::vector<std::byte>&& bytes,
                                                       std::string_view source = "buffer") {
  auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
  const std::span<const std::byte> view(*owned);
  return detail::read_safetensors_impl(view, source, owned);
}

/// Reads a safetensors file through a memory map kept alive by the tensors
/// (no copy: files written by the reference implementation are aligned).
[[nodiscard]] inline safetensors_file read_safetensors(const std::filesystem::path& path) {
  auto file = std::make_shared<mapped_file>(mapped_file::open(path));
  const auto bytes = file->bytes();
  return detail::read_safetensors_impl(bytes, "'" + path.string() + "'", file);
}

/// A safetensors file holding `tensors` (Fortran-order arrays are written in C
/// order) and, when not empty, `metadata`, byte for byte as the reference
/// implementation's serialize(): tensors sorted by dtype, largest first (in the
/// order of the dtype enum), then by name; compact JSON
///   {"__metadata__":{...},"name":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},...}
/// padded with spaces to a multiple of 8 bytes; data in the same order.
/// Throws config_error for duplicate or reserved ("__metadata__") names and
/// for names or metadata that are not valid UTF-8.
[[nodiscard]] inline std::vector<std::byte> encode_safetensors(
    std::span<const array> tensors, const std::map<std::string, std::string>& metadata = {}) {
  std::vector<const array*> order;
  std::set<std::string_view> seen;
  for (const array& a : tensors) {
    if (a.name() == "__metadata__") {
      throw config_error("a tensor is named '__metadata__' (expected another name: it is reserved)");
    }
    if (!seen.insert(a.name()).second) {
      throw config_error("two tensors are named '" + a.name() + "' (expected unique names)");
    }
    order.push_back(&a);
  }
  std::stable_sort(order.begin(), order.end(), [](const array* a, const array* b) {
    if (a->type() != b->type()) return a->type() > b->type();
    return a->name() < b->name();
  });
  const auto quote = [](const std::string& s) {
    try {
      return nlohmann::json(s).dump();
    } catch (const nlohmann::json::exception&) {
      throw config_error("the string '" + s + "' is not valid UTF-8 (expected a UTF-8 tensor name or metadata)");
    }
  };
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      header += quote(k) + ':' + quote(v);
    }
    header += "},";
  }
  std::uint64_t offset = 0;
  for (const array* a : order) {
    header += quote(a->name()) + ":{\"dtype\":\"" + std::string(detail::safetensors_dtype_name(a->type())) +
              "\",\"shape\":[";
    for (std::size_t i = 0; i < a->shape().size(); ++i) {
      if (i != 0) header += ',';
      header += std::to_string(a->shape()[i]);
    }
    const std::uint64_t end = offset + a->bytes().size();
    header += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(end) + "]},";
    offset = end;
  }
  if (header.size() > 1) header.pop_back();  // the last ','
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<std::byte> out(8 + header.size());
  detail::store_le(out.data(), static_cast<std::uint64_t>(header.size()));
  std::memcpy(out.data() + 8, header.data(), header.size());
  out.reserve(out.size() + static_cast<std::size_t>(offset));
  for (const array* a : order) {
    if (a->order() == array_order::fortran && a->rank() >= 2) {
      const array c = a->to_c_order();
      out.insert(out.end(), c.bytes().begin(), c.bytes().end());
    } else {
      out.insert(out.end(), a->bytes().begin(), a->bytes().end());
    }
  }
  return out;
}

/// Writes `tensors` and `metadata` to `path` as safetensors (see encode_safetensors).
inline void write_safetensors(const std::filesystem::path& path, std::span<const array> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  detail::write_whole_file(path, encode_safetensors(tensors, metadata));
}

}  // namespace qprune::io

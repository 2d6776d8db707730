// NumPy .npz archives: zip files of .npy members, stored or deflated (zlib's
// raw inflate/deflate), with zip64 sizes and offsets, every CRC-32 verified and
// the central directory validated before any member is trusted. Writes what
// np.savez / np.savez_compressed write. Layout notes: doc/format.md, "NumPy".
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/io/array.hpp"
#include "qprune/io/mmap.hpp"
#include "qprune/io/npy.hpp"

namespace qprune::io {

/// How members are written into a .npz archive.
enum class zip_method : std::uint16_t {
  stored = 0,    ///< np.savez
  deflated = 8,  ///< np.savez_compressed (zlib level 6, raw deflate)
};

namespace detail {

inline constexpr std::uint32_t zip_local_sig = 0x04034b50;
inline constexpr std::uint32_t zip_central_sig = 0x02014b50;
inline constexpr std::uint32_t zip_eocd_sig = 0x06054b50;
inline constexpr std::uint32_t zip64_eocd_sig = 0x06064b50;
inline constexpr std::uint32_t zip64_locator_sig = 0x07064b50;
/// Deflate cannot expand a stream by more than 1032:1 (258-byte matches coded
/// in 2 bits); a larger declared ratio is a lie and would be a zip bomb.
inline constexpr std::uint64_t deflate_max_ratio = 1032;

struct zip_member {
  std::string name;
  std::uint16_t flags = 0, method = 0;
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, uncompressed = 0, local_offset = 0;
  std::uint64_t data_offset = 0;  ///< filled from the local header
};

[[noreturn]] inline void zip_fail(std::string_view source, const std::string& what) {
  throw io_error(std::string(source) + " " + what);
}

/// Bounds-checked little-endian reader over the archive bytes.
struct zip_reader {
  std::span<const std::byte> b;
  std::string_view source;
  [[nodiscard]] bool has(std::uint64_t off, std::uint64_t n) const noexcept {
    return off <= b.size() && n <= b.size() - off;
  }
  template <class T>
  [[nodiscard]] T get(std::uint64_t off) const noexcept {
    return load_le<T>(b.data() + off);  // callers check has() first
  }
};

/// Reads the zip64 extended-information extra field: for each of the central
/// header's uncompressed size, compressed size and local offset that is
/// 0xFFFFFFFF, the next 8 bytes of field 0x0001 give the real value.
inline void parse_zip64_extra(std::span<const std::byte> extra, zip_member& m, bool need_u,
                              bool need_c, bool need_o, std::string_view source) {
  std::size_t p = 0;
  bool found = false;
  while (p < extra.size()) {
    if (extra.size() - p < 4) {
      zip_fail(source, "member '" + m.name + "' has a truncated extra field (expected 4-byte headers)");
    }
    const auto id = load_le<std::uint16_t>(extra.data() + p);
    const std::size_t len = load_le<std::uint16_t>(extra.data() + p + 2);
    if (len > extra.size() - p - 4) {
      zip_fail(source, "member '" + m.name + "' has an extra field running past its extra area (" +
                           std::to_string(len) + " bytes declared, " +
                           std::to_string(extra.size() - p - 4) + " left)");
    }
    if (id == 0x0001 && !found) {
      found = true;
      std::size_t q = 0;
      const auto take = [&](std::uint64_t& v, const char* what) {
        if (len - q < 8) {
          zip_fail(source, "member '" + m.name + "' has a zip64 extra field without its " + what +
                               " (expected 8 more bytes)");
        }
        v = load_le<std::uint64_t>(extra.data() + p + 4 + q);
        q += 8;
      };
      if (need_u) take(m.uncompressed, "uncompressed size");
      if (need_c) take(m.compressed, "compressed size");
      if (need_o) take(m.local_offset, "local header offset");
    }
    p += 4 + len;
  }
  if ((need_u || need_c || need_o) && !found) {
    zip_fail(source, "member '" + m.name +
                         "' has a size or offset of 0xFFFFFFFF but no zip64 extra field (expected one)");
  }
}

/// Parses and validates the archive structure: end of central directory
/// (plus zip64 record and locator), every central header and local header.
inline std::vector<zip_member> parse_zip_directory(std::span<const std::byte> bytes,
                                                   std::string_view source) {
  const zip_reader r{bytes, source};
  if (bytes.size() < 22) {
    zip_fail(source, "has " + std::to_string(bytes.size()) +
                         " bytes (expected at least the 22-byte end of central directory record)");
  }
  // The record is the last 22 bytes plus its comment; scan back over a comment of up to 65535 bytes.
  std::uint64_t eocd = 0;
  bool found = false;
  for (std::uint64_t pos = bytes.size() - 22;; --pos) {
    if (r.get<std::uint32_t>(pos) == zip_eocd_sig &&
        pos + 22 + r.get<std::uint16_t>(pos + 20) == bytes.size()) {
      eocd = pos;
      found = true;
      break;
    }
    if (pos == 0 || bytes.size() - 22 - pos >= 0xFFFF) break;
  }
  if (!found) {
    zip_fail(source, "has no end of central directory record (expected a zip archive)");
  }
  std::uint64_t disk = r.get<std::uint16_t>(eocd + 4), cd_disk = r.get<std::uint16_t>(eocd + 6);
  std::uint64_t n_disk = r.get<std::uint16_t>(eocd + 8), n_total = r.get<std::uint16_t>(eocd + 10);
  std::uint64_t cd_size = r.get<std::uint32_t>(eocd + 12), cd_offset = r.get<std::uint32_t>(eocd + 16);
  std::uint64_t cd_end_expected = eocd;  // where the central directory must end
  if (eocd >= 20 && r.get<std::uint32_t>(eocd - 20) == zip64_locator_sig) {
    const std::uint64_t loc = eocd - 20;
    const std::uint64_t rec = r.get<std::uint64_t>(loc + 8);
    if (r.get<std::uint32_t>(loc + 4) != 0 || r.get<std::uint32_t>(loc + 16) > 1) {
      zip_fail(source, "is a multi-disk zip64 archive (expected a single file)");
    }
    if (rec > loc || loc - rec < 56) {
      zip_fail(source, "has a zip64 end of central directory record at offset " + std::to_string(rec) +
                           " (expected at least 56 bytes before its locator at " + std::to_string(loc) + ")");
    }
    if (r.get<std::uint32_t>(rec) != zip64_eocd_sig) {
      zip_fail(source, "has no zip64 end of central directory record at offset " + std::to_string(rec) +
                           " (expected signature PK\\6\\6)");
    }
    if (r.get<std::uint64_t>(rec + 4) != loc - rec - 12) {
      zip_fail(source, "has a zip64 end of central directory record of " +
                           std::to_string(r.get<std::uint64_t>(rec + 4)) + " bytes (expected " +
                           std::to_string(loc - rec - 12) + ", up to its locator)");
    }
    disk = r.get<std::uint32_t>(rec + 16);
    cd_disk = r.get<std::uint32_t>(rec + 20);
    n_disk = r.get<std::uint64_t>(rec + 24);
    n_total = r.get<std::uint64_t>(rec + 32);
    cd_size = r.get<std::uint64_t>(rec + 40);
    cd_offset = r.get<std::uint64_t>(rec + 48);
    cd_end_expected = rec;
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total) {
    zip_fail(source, "is a multi-disk archive (expected a single file)");
  }
  if (cd_offset > cd_end_expected || cd_size != cd_end_expected - cd_offset) {
    zip_fail(source, "has a central directory of " + std::to_string(cd_size) + " bytes at offset " +
                         std::to_string(cd_offset) + " (expected it to end at offset " +
                         std::to_string(cd_end_expected) + ", where the end record starts)");
  }
  if (n_total > cd_size / 46) {
    zip_fail(source, "declares " + std::to_string(n_total) + " members in a " + std::to_string(cd_size) +
                         "-byte central directory (expected at most " + std::to_string(cd_size / 46) + ")");
  }
  std::vector<zip_member> members;
  members.reserve(static_cast<std::size_t>(n_total));
  std::uint64_t p = cd_offset;
  for (std::uint64_t i = 0; i < n_total; ++i) {
    if (!r.has(p, 46) || p + 46 > cd_end_expected) {
      zip_fail(source, "has central directory entry " + std::to_string(i) +
                           " running past the directory (expected 46 bytes at offset " + std::to_string(p) + ")");
    }
    if (r.get<std::uint32_t>(p) != zip_central_sig) {
      zip_fail(source, "has no central directory entry " + std::to_string(i) + " at offset " +
                           std::to_string(p) + " (expected signature PK\\1\\2)");
    }
    zip_member m;
    m.flags = r.get<std::uint16_t>(p + 8);
    m.method = r.get<std::uint16_t>(p + 10);
    m.crc = r.get<std::uint32_t>(p + 16);
    m.compressed = r.get<std::uint32_t>(p + 20);
    m.uncompressed = r.get<std::uint32_t>(p + 24);
    const std::uint64_t name_len = r.get<std::uint16_t>(p + 28), extra_len = r.get<std::uint16_t>(p + 30),
                        comment_len = r.get<std::uint16_t>(p + 32);
    const std::uint64_t disk_start = r.get<std::uint16_t>(p + 34);
    m.local_offset = r.get<std::uint32_t>(p + 42);
    const std::uint64_t var = name_len + extra_len + comment_len;
    if (var > cd_end_expected - p - 46) {
      zip_fail(source, "has central directory entry " + std::to_string(i) + " whose name, extra and comment (" +
                           std::to_string(var) + " bytes) run past the directory");
    }
    m.name.assign(reinterpret_cast<const char*>(bytes.data() + p + 46), static_cast<std::size_t>(name_len));
    if (m.name.empty() || m.name.find('\0') != std::string::npos) {
      zip_fail(source, "has central directory entry " + std::to_string(i) +
                           " with an empty name or a NUL byte in it (expected a member name)");
    }
    parse_zip64_extra(bytes.subspan(static_cast<std::size_t>(p + 46 + name_len), static_cast<std::size_t>(extra_len)),
                      m, m.uncompressed == 0xFFFFFFFF, m.compressed == 0xFFFFFFFF,
                      m.local_offset == 0xFFFFFFFF, source);
    if (disk_start != 0 && disk_start != 0xFFFF) {
      zip_fail(source, "member '" + m.name + "' starts on disk " + std::to_string(disk_start) + " (expected 0)");
    }
    if ((m.flags & 0x0041) != 0) {
      zip_fail(source, "member '" + m.name + "' is encrypted (expected a plain archive)");
    }
    if (m.method != 0 && m.method != 8) {
      zip_fail(source, "member '" + m.name + "' uses compression method " + std::to_string(m.method) +
                           " (expected 0, stored, or 8, deflated)");
    }
    if (m.method == 0 && m.compressed != m.uncompressed) {
      zip_fail(source, "member '" + m.name + "' is stored with " + std::to_string(m.compressed) +
                           " compressed and " + std::to_string(m.uncompressed) +
                           " uncompressed bytes (expected equal sizes)");
    }
    if (m.method == 8 && m.uncompressed / deflate_max_ratio > m.compressed) {
      zip_fail(source, "member '" + m.name + "' declares " + std::to_string(m.uncompressed) +
                           " bytes inflated from " + std::to_string(m.compressed) +
                           " (expected a ratio of at most 1032:1, deflate's maximum)");
    }
    // Local header: same name, data inside the archive before the central directory.
    const std::uint64_t lo = m.local_offset;
    if (lo > cd_offset || cd_offset - lo < 30) {
      zip_fail(source, "member '" + m.name + "' has its local header at offset " + std::to_string(lo) +
                           " (expected 30 bytes before the central directory at " + std::to_string(cd_offset) + ")");
    }
    if (r.get<std::uint32_t>(lo) != zip_local_sig) {
      zip_fail(source, "member '" + m.name + "' has no local header at offset " + std::to_string(lo) +
                           " (expected signature PK\\3\\4)");
    }
    const std::uint16_t lflags = r.get<std::uint16_t>(lo + 6), lmethod = r.get<std::uint16_t>(lo + 8);
    const std::uint64_t lname = r.get<std::uint16_t>(lo + 26), lextra = r.get<std::uint16_t>(lo + 28);
    if ((lflags & 0x0041) != 0 || lmethod != m.method) {
      zip_fail(source, "member '" + m.name + "' has a local header disagreeing with its central entry "
                           "(flags or method; expected the same, unencrypted)");
    }
    if (lname + lextra > cd_offset - lo - 30) {
      zip_fail(source, "member '" + m.name + "' has a local name and extra field running into the central directory");
    }
    if (lname != name_len ||
        std::string_view(reinterpret_cast<const char*>(bytes.data() + lo + 30), static_cast<std::size_t>(lname)) != m.name) {
      zip_fail(source, "member '" + m.name + "' has a different name in its local header (expected the same)");
    }
    m.data_offset = lo + 30 + lname + lextra;
    if (m.compressed > cd_offset - m.data_offset) {
      zip_fail(source, "member '" + m.name + "' has " + std::to_string(m.compressed) + " bytes of data at offset " +
                           std::to_string(m.data_offset) + " (expected them to end before the central directory at " +
                           std::to_string(cd_offset) + ")");
    }
    members.push_back(std::move(m));
    p += 46 + var;
  }
  if (p != cd_end_expected) {
    zip_fail(source, "has " + std::to_string(cd_end_expected - p) +
                         " unused bytes at the end of its central directory (expected none)");
  }
  // Members must not overlap: each local header + data ends before the next one starts.
  std::vector<const zip_member*> by_offset;
  by_offset.reserve(members.size());
  for (const auto& m : members) by_offset.push_back(&m);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const zip_member* a, const zip_member* b) { return a->local_offset < b->local_offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const zip_member& a = *by_offset[i - 1];
    const zip_member& b = *by_offset[i];
    if (a.data_offset + a.compressed > b.local_offset) {
      zip_fail(source, "members '" + a.name + "' and '" + b.name + "' overlap (expected '" + a.name +
                           "' to end by offset " + std::to_string(b.local_offset) + ")");
    }
  }
  return members;
}

/// CRC-32 (zlib's) of `data`, in chunks so sizes above 4 GiB work.
[[nodiscard]] inline std::uint32_t crc32_of(std::span<const std::byte> data,
                                            std::uint32_t crc = 0) noexcept {
  uLong c = crc;
  std::size_t off = 0;
  while (off < data.size()) {
    const std::size_t n = std::min<std::size_t>(data.size() - off, std::size_t{1} << 30);
    c = ::crc32(c, reinterpret_cast<const Bytef*>(data.data() + off), static_cast<uInt>(n));
    off += n;
  }
  return static_cast<std::uint32_t>(c);
}

/// Inflates a raw deflate stream that must produce exactly `out_size` bytes.
/// The buffer has one spare byte so a stream producing more is detected.
inline std::shared_ptr<aligned_vector<std::byte>> inflate_member(std::span<const std::byte> in,
                                                                 std::size_t out_size,
                                                                 const std::string& what) {
  auto out = std::make_shared<aligned_vector<std::byte>>(out_size + 1);
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw io_error("zlib inflateInit2 failed for " + what);
  std::size_t in_off = 0, out_off = 0;
  int ret = Z_OK;
  for (;;) {
    const std::size_t in_n = std::min<std::size_t>(in.size() - in_off, std::size_t{1} << 30);
    const std::size_t out_n = std::min<std::size_t>(out->size() - out_off, std::size_t{1} << 30);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data() + in_off));
    zs.avail_in = static_cast<uInt>(in_n);
    zs.next_out = reinterpret_cast<Bytef*>(out->data() + out_off);
    zs.avail_out = static_cast<uInt>(out_n);
    ret = inflate(&zs, Z_NO_FLUSH);
    in_off += in_n - zs.avail_in;
    out_off += out_n - zs.avail_out;
    if (ret == Z_STREAM_END || out_off > out_size) break;
    if (ret != Z_OK) break;  // Z_DATA_ERROR, Z_BUF_ERROR (no progress: input exhausted), ...
  }
  const std::string zmsg = zs.msg != nullptr ? zs.msg : "";
  inflateEnd(&zs);
  if (out_off > out_size) {
    throw io_error(what + " inflates to more than its declared " + std::to_string(out_size) + " bytes");
  }
  if (ret != Z_STREAM_END) {
    throw io_error(what + " has a corrupt or truncated deflate stream" + (zmsg.empty() ? "" : " (" + zmsg + ")") +
                   " (expected a complete raw deflate stream)");
  }
  if (out_off != out_size) {
    throw io_error(what + " inflates to " + std::to_string(out_off) + " bytes (expected " +
                   std::to_string(out_size) + ")");
  }
  return out;
}

inline std::vector<array> read_npz_impl(std::span<const std::byte> bytes, std::string_view source,
                                        const std::shared_ptr<const void>& owner) {
  const std::vector<zip_member> members = parse_zip_directory(bytes, source);
  std::vector<array> out;
  out.reserve(members.size());
  std::set<std::string> names;
  for (const zip_member& m : members) {
    const std::string what = std::string(source) + " member '" + m.name + "'";
    if (m.name.size() < 5 || m.name.compare(m.name.size() - 4, 4, ".npy") != 0) {
      throw io_error(what + " is not a .npy file (expected only NAME.npy members)");
    }
    std::string name = m.name.substr(0, m.name.size() - 4);
    if (!names.insert(name).second) {
      throw io_error(std::string(source) + " has two members named '" + m.name + "' (expected unique names)");
    }
    const auto raw = bytes.subspan(static_cast<std::size_t>(m.data_offset), static_cast<std::size_t>(m.compressed));
    std::span<const std::byte> data = raw;
    std::shared_ptr<const void> keep = owner;
    if (m.method == 8) {
      auto buf = inflate_member(raw, static_cast<std::size_t>(m.uncompressed), what);
      data = std::span<const std::byte>(buf->data(), static_cast<std::size_t>(m.uncompressed));
      keep = std::move(buf);
    }
    const std::uint32_t crc = crc32_of(data);
    if (crc != m.crc) {
      throw io_error(what + " has CRC-32 " + std::to_string(crc) + " (expected " + std::to_string(m.crc) +
                     " from the central directory)");
    }
    out.push_back(read_npy(data, what, std::move(name), std::move(keep)));
  }
  return out;
}

}  // namespace detail

/// Reads every member of a .npz archive held in `bytes` (`source` names it in
/// messages). Arrays are named after their members without ".npy" and come in
/// central-directory order. Validates: end record (zip64 record and locator
/// when present), single disk, central directory bounds and entry count,
/// names, no encryption, methods 0/8 only, zip64 extra fields, local headers
/// matching their entries, members inside the archive and not overlapping,
/// inflated sizes, CRC-32 and each member as a .npy file. Throws io_error.
/// Lifetime: stored members with aligned data view `bytes` (owner, if given,
/// is kept alive); deflated members own their inflated buffer.
[[nodiscard]] inline std::vector<array> read_npz(std::span<const std::byte> bytes,
                                                 std::string_view source = "buffer",
                                                 std::shared_ptr<const void> owner = {}) {
  return detail::read_npz_impl(bytes, source, owner);
}

/// Reads a .npz archive from a buffer the arrays take over (so
/// `read_npz(encode_npz(arrays))` is safe).
[[nodiscard]] inline std::vector<array> read_npz(std::vector<std::byte>&& bytes,
                                                 std::string_view source = "buffer") {
  auto owned = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
  const std::span<const std::byte> view(*owned);
  return detail::read_npz_impl(view, source, owned);
}

/// Reads a .npz file through a memory map kept alive by the returned arrays.
[[nodiscard]] inline std::vector<array> read_npz(const std::filesystem::path& path) {
  auto file = std::make_shared<mapped_file>(mapped_file::open(path));
  const auto bytes = file->bytes();
  return detail::read_npz_impl(bytes, "'" + path.string() + "'", file);
}

/// A .npz archive holding each array as member "<name>.npy", in the given
/// order, the way numpy 1.24's savez writes it: local headers with a zip64
/// extra field (numpy forces zip64), version 4.5, date 1980-01-01 00:00
/// (numpy uses the current time; a fixed date makes output reproducible),
/// central entries with zip64 fields only for values >= 2^32 and a zip64 end
/// record only when needed. `deflated` uses zlib level 6 (Z_DEFAULT_COMPRESSION)
/// raw deflate, as Python's zipfile does.
/// Throws config_error for duplicate or empty names and for bf16/fp8 arrays.
[[nodiscard]] inline std::vector<std::byte> encode_npz(std::span<const array> arrays,
                                                       zip_method method = zip_method::stored) {
  using detail::store_le;
  std::vector<std::byte> out, central;
  std::set<std::string> seen;
  const auto put16 = [](std::vector<std::byte>& v, std::uint64_t x) {
    const std::size_t at = v.size();
    v.resize(at + 2);
    store_le(v.data() + at, static_cast<std::uint16_t>(x));
  };
  const auto put32 = [](std::vector<std::byte>& v, std::uint64_t x) {
    const std::size_t at = v.size();
    v.resize(at + 4);
    store_le(v.data() + at, static_cast<std::uint32_t>(x));
  };
  const auto put64 = [](std::vector<std::byte>& v, std::uint64_t x) {
    const std::size_t at = v.size();
    v.resize(at + 8);
    store_le(v.data() + at, x);
  };
  const auto put_str = [](std::vector<std::byte>& v, const std::string& s) {
    for (const char c : s) v.push_back(static_cast<std::byte>(c));
  };
  constexpr std::uint64_t lim32 = 0xFFFFFFFF;
  for (const array& a : arrays) {
    if (a.name().empty()) throw config_error("cannot write an unnamed array to .npz (expected a name)");
    if (!seen.insert(a.name()).second) {
      throw config_error("two arrays are named '" + a.name() + "' (expected unique names in a .npz)");
    }
    const std::string member = a.name() + ".npy";
    if (member.size() > 0xFFFF) throw config_error("array name longer than 65531 bytes (expected a zip member name)");
    const std::vector<std::byte> npy = encode_npy(a);
    const std::uint32_t crc = detail::crc32_of(npy);
    std::vector<std::byte> deflated;
    std::span<const std::byte> data = npy;
    if (method == zip_method::deflated) {
      z_stream zs{};
      if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        throw io_error("zlib deflateInit2 failed while writing member '" + member + "'");
      }
      deflated.resize(static_cast<std::size_t>(deflateBound(&zs, static_cast<uLong>(npy.size()))) + 16);
      // deflateBound guarantees the output fits; input and output are fed in
      // chunks of at most 1 GiB because zlib counts in 32 bits.
      std::size_t in_fed = 0;
      auto* out_begin = reinterpret_cast<Bytef*>(deflated.data());
      zs.next_out = out_begin;
      int ret = Z_OK;
      do {
        if (zs.avail_in == 0 && in_fed < npy.size()) {
          const std::size_t in_n = std::min<std::size_t>(npy.size() - in_fed, std::size_t{1} << 30);
          zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(npy.data() + in_fed));
          zs.avail_in = static_cast<uInt>(in_n);
          in_fed += in_n;
        }
        const auto used = static_cast<std::size_t>(zs.next_out - out_begin);
        zs.avail_out = static_cast<uInt>(std::min<std::size_t>(deflated.size() - used, std::size_t{1} << 30));
        ret = deflate(&zs, in_fed == npy.size() ? Z_FINISH : Z_NO_FLUSH);
      } while (ret == Z_OK);
      const auto produced = static_cast<std::size_t>(zs.next_out - out_begin);
      deflateEnd(&zs);
      if (ret != Z_STREAM_END) throw io_error("zlib deflate failed while writing member '" + member + "'");
      deflated.resize(produced);
      data = deflated;
    }
    const std::uint64_t offset = out.size();
    const std::uint16_t flags = std::any_of(member.begin(), member.end(),
                                            [](char c) { return static_cast<unsigned char>(c) >= 0x80; })
                                    ? 0x0800  // UTF-8 name, as Python's zipfile marks it
                                    : 0x0000;
    // Local header, zip64 form (sizes in the extra field), as numpy forces it.
    put32(out, detail::zip_local_sig);
    put16(out, 45);
    put16(out, flags);
    put16(out, static_cast<std::uint16_t>(method));
    put16(out, 0);     // time 00:00:00
    put16(out, 0x21);  // date 1980-01-01
    put32(out, crc);
    put32(out, lim32);
    put32(out, lim32);
    put16(out, member.size());
    put16(out, 20);
    put_str(out, member);
    put16(out, 1);
    put16(out, 16);
    put64(out, npy.size());
    put64(out, data.size());
    out.insert(out.end(), data.begin(), data.end());
    // Central entry: 32-bit fields unless a value needs zip64.
    std::vector<std::byte> extra;
    const bool big_sizes = npy.size() > lim32 || data.size() > lim32;
    const bool big_off = offset > lim32;
    if (big_sizes) {
      put64(extra, npy.size());
      put64(extra, data.size());
    }
    if (big_off) put64(extra, offset);
    put32(central, detail::zip_central_sig);
    put16(central, 0x0300 | 45);  // made by: Unix, 4.5
    put16(central, 45);
    put16(central, flags);
    put16(central, static_cast<std::uint16_t>(method));
    put16(central, 0);
    put16(central, 0x21);
    put32(central, crc);
    put32(central, big_sizes ? lim32 : data.size());
    put32(central, big_sizes ? lim32 : npy.size());
    put16(central, member.size());
    put16(central, extra.empty() ? 0 : extra.size() + 4);
    put16(central, 0);  // comment
    put16(central, 0);  // disk
    put16(central, 0);  // internal attributes
    put32(central, 0600u << 16);  // external attributes: -rw-------
    put32(central, big_off ? lim32 : offset);
    put_str(central, member);
    if (!extra.empty()) {
      put16(central, 1);
      put16(central, extra.size());
      central.insert(central.end(), extra.begin(), extra.end());
    }
  }
  const std::uint64_t cd_offset = out.size(), cd_size = central.size(), n = arrays.size();
  out.insert(out.end(), central.begin(), central.end());
  const bool zip64 = n > 0xFFFF || cd_offset > lim32 || cd_size > lim32;
  if (zip64) {
    const std::uint64_t rec = out.size();
    put32(out, detail::zip64_eocd_sig);
    put64(out, 44);
    put16(out, 45);
    put16(out, 45);
    put32(out, 0);
    put32(out, 0);
    put64(out, n);
    put64(out, n);
    put64(out, cd_size);
    put64(out, cd_offset);
    put32(out, detail::zip64_locator_sig);
    put32(out, 0);
    put64(out, rec);
    put32(out, 1);
  }
  put32(out, detail::zip_eocd_sig);
  put16(out, 0);
  put16(out, 0);
  put16(out, zip64 ? 0xFFFF : n);
  put16(out, zip64 ? 0xFFFF : n);
  put32(out, zip64 ? lim32 : cd_size);
  put32(out, zip64 ? lim32 : cd_offset);
  put16(out, 0);
  return out;
}

/// Writes `arrays` to `path` as a .npz archive (see encode_npz).
inline void write_npz(const std::filesystem::path& path, std::span<const array> arrays,
                      zip_method method = zip_method::stored) {
  detail::write_whole_file(path, encode_npz(arrays, method));
}

}  // namespace qprune::io

// Sparse storage of pruned [rows, cols] weight matrices, with exact byte
// accounting: CSR (narrowest column-index and row-pointer widths), bitmask, and
// packed N:M (N value slots plus ceil(log2 M)-bit positions per group of M),
// each with fp32, fp16 or int8 (symmetric, per row) values. Layouts, byte
// formulas and the int8 rule: doc/pruning.md, "Sparse storage". The scalar
// SpMV / SpMM over these classes: kernels/reference/spmm.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/half.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/quant/rounding.hpp"

namespace qprune::prune {

// ---------------------------------------------------------------------------
// Value types and formats
// ---------------------------------------------------------------------------

/// The type of the stored values: fp32 (`float`), fp16 (`qprune::half`), or
/// int8 (`std::int8_t`) codes with one float32 scale per row.
enum class value_kind : std::uint8_t { fp32, fp16, int8 };

constexpr std::string_view to_string(value_kind v) noexcept {
  switch (v) {
    case value_kind::fp32: return "fp32";
    case value_kind::fp16: return "fp16";
    case value_kind::int8: return "int8";
  }
  return "unknown";
}

/// Bytes of one stored value: 4, 2 or 1.
constexpr std::int64_t value_bytes(value_kind v) noexcept {
  return v == value_kind::fp32 ? 4 : (v == value_kind::fp16 ? 2 : 1);
}

/// The value types the sparse storages are defined for.
template <class V>
concept sparse_value =
    std::same_as<V, float> || std::same_as<V, half> || std::same_as<V, std::int8_t>;

/// value_kind of a sparse_value type.
template <sparse_value V>
inline constexpr value_kind value_kind_of = std::same_as<V, float>  ? value_kind::fp32
                                            : std::same_as<V, half> ? value_kind::fp16
                                                                    : value_kind::int8;

/// How a matrix is stored. `dense` is every element in row-major order (what a
/// quantizer without pruning stores); it is a candidate of choose_format
/// (prune/report.hpp) only, with no class here.
enum class storage_format : std::uint8_t { dense, csr, bitmask, packed_nm };

constexpr std::string_view to_string(storage_format f) noexcept {
  switch (f) {
    case storage_format::dense: return "dense";
    case storage_format::csr: return "csr";
    case storage_format::bitmask: return "bitmask";
    case storage_format::packed_nm: return "packed_nm";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// Byte accounting
// ---------------------------------------------------------------------------

/// The exact bytes of one stored matrix, section by section. Sections are
/// counted as if concatenated without padding (a file format that aligns them
/// adds its own). Not counted, because every format (dense fp32 included) stores
/// them in the tensor's metadata: the shape, the format tag and the value kind.
///   header      format parameters that cannot be derived from the shape:
///               CSR: nnz as uint64 (8), which fixes the row-pointer width;
///               packed N:M: N and M as uint8 (2); bitmask, dense: 0
///   values      stored values (value_bytes each)
///   scales      int8 only: one float32 per row (4 * rows)
///   indices     CSR column indices; packed N:M slot positions (bit-packed)
///   row_ptr     CSR row pointers (rows + 1 entries)
///   mask        bitmask bits (one per element)
struct byte_breakdown {
  std::int64_t header = 0;
  std::int64_t values = 0;
  std::int64_t scales = 0;
  std::int64_t indices = 0;
  std::int64_t row_ptr = 0;
  std::int64_t mask = 0;

  /// The sum of every section: the storage's bytes().
  [[nodiscard]] constexpr std::int64_t total() const noexcept {
    return header + values + scales + indices + row_ptr + mask;
  }
  friend constexpr bool operator==(const byte_breakdown&, const byte_breakdown&) = default;
};

/// Width in bytes of a CSR column index: 1 if cols <= 256, 2 if cols <= 65536,
/// else 4. Precondition: cols <= 2^32 (csr_matrix::from_dense checks it).
[[nodiscard]] constexpr int csr_col_index_bytes(index_t cols) noexcept {
  return cols <= 256 ? 1 : (cols <= 65536 ? 2 : 4);
}

/// Width in bytes of a CSR row pointer: 4 if nnz < 2^32 (every pointer, at most
/// nnz, fits uint32), else 8.
[[nodiscard]] constexpr int csr_row_ptr_bytes(index_t nnz) noexcept {
  return static_cast<std::uint64_t>(nnz) <= std::numeric_limits<std::uint32_t>::max() ? 4 : 8;
}

/// Bits of one packed N:M slot position: ceil(log2 M) (1 for M = 2, 2 for
/// M = 3..4, 3 for M = 5..8, 4 for M = 9..16). Precondition: 2 <= M <= 16.
[[nodiscard]] constexpr int packed_nm_index_bits(int m) noexcept {
  int b = 0;
  while ((1 << b) < m) ++b;
  return b;
}

/// Groups per row of a packed N:M matrix: ceil(cols / M). Precondition: M >= 1.
[[nodiscard]] constexpr index_t packed_nm_groups(index_t cols, int m) noexcept {
  return (cols + m - 1) / m;
}

/// dense: rows*cols*value_bytes + scales. Preconditions: rows, cols >= 0.
[[nodiscard]] constexpr byte_breakdown dense_bytes(value_kind v, index_t rows,
                                                   index_t cols) noexcept {
  byte_breakdown b;
  b.values = rows * cols * value_bytes(v);
  b.scales = v == value_kind::int8 ? 4 * rows : 0;
  return b;
}

/// CSR: header 8 + nnz*value_bytes + scales + nnz*csr_col_index_bytes(cols)
/// + (rows + 1)*csr_row_ptr_bytes(nnz). Preconditions: sizes >= 0, cols <= 2^32.
[[nodiscard]] constexpr byte_breakdown csr_bytes(value_kind v, index_t rows, index_t cols,
                                                 index_t nnz) noexcept {
  byte_breakdown b;
  b.header = 8;
  b.values = nnz * value_bytes(v);
  b.scales = v == value_kind::int8 ? 4 * rows : 0;
  b.indices = nnz * csr_col_index_bytes(cols);
  b.row_ptr = (rows + 1) * csr_row_ptr_bytes(nnz);
  return b;
}

/// Bitmask: ceil(rows*cols / 8) mask bytes + nnz*value_bytes + scales.
/// Preconditions: sizes >= 0.
[[nodiscard]] constexpr byte_breakdown bitmask_bytes(value_kind v, index_t rows, index_t cols,
                                                     index_t nnz) noexcept {
  byte_breakdown b;
  b.mask = (rows * cols + 7) / 8;
  b.values = nnz * value_bytes(v);
  b.scales = v == value_kind::int8 ? 4 * rows : 0;
  return b;
}

/// Packed N:M: with S = rows * ceil(cols / M) * N slots,
/// header 2 + S*value_bytes + ceil(S * packed_nm_index_bits(M) / 8) + scales.
/// Independent of nnz (groups with fewer than N kept entries are zero-filled).
/// Preconditions: sizes >= 0, 1 <= N < M <= 16.
[[nodiscard]] constexpr byte_breakdown packed_nm_bytes(value_kind v, index_t rows, index_t cols,
                                                       int n, int m) noexcept {
  const index_t slots = rows * packed_nm_groups(cols, m) * n;
  byte_breakdown b;
  b.header = 2;
  b.values = slots * value_bytes(v);
  b.scales = v == value_kind::int8 ? 4 * rows : 0;
  b.indices = (slots * packed_nm_index_bits(m) + 7) / 8;
  return b;
}

// ---------------------------------------------------------------------------
// Building blocks shared by the formats (not part of the API)
// ---------------------------------------------------------------------------

namespace detail {

/// int8 scale of one row: s = max|w| / 127 (float division) over the row's
/// stored entries; 1 when that maximum is 0 (an all-zero or empty row); the
/// smallest positive float 2^-149 when the division underflows to 0, so codes
/// stay inside [-127, 127] instead of dividing by zero.
[[nodiscard]] inline float sparse_int8_scale(float max_abs) noexcept {
  if (max_abs == 0.0f) return 1.0f;
  const float s = max_abs / 127.0f;
  return s > 0.0f ? s : std::numeric_limits<float>::denorm_min();
}

/// int8 code: q = clamp(round_half_even(w / s), -127, 127) (the division in
/// float; zero point 0). Precondition: w finite, s > 0 (then w / s is finite).
[[nodiscard]] inline std::int8_t sparse_int8_code(float w, float s) noexcept {
  const float r = quant::round_to_integral(w / s, quant::rounding::half_to_even);
  return static_cast<std::int8_t>(quant::saturate_to_int(r, -127, 127, 0));
}

/// A stored value as float: fp32 itself, fp16 exactly widened, int8 the code
/// (without its scale).
template <sparse_value V>
[[nodiscard]] constexpr float sparse_stored_float(V v) noexcept {
  if constexpr (std::same_as<V, float>) {
    return v;
  } else {
    return static_cast<float>(v);
  }
}

/// A stored value dequantized: fp32 / fp16 as sparse_stored_float; int8 s * q
/// (one float multiplication).
template <sparse_value V>
[[nodiscard]] constexpr float sparse_dequantize(V v, float s) noexcept {
  if constexpr (std::same_as<V, std::int8_t>) {
    return s * static_cast<float>(v);
  } else {
    return sparse_stored_float(v);
  }
}

/// Encodes one kept weight: fp32 unchanged, fp16 half(w) (nearest even),
/// int8 sparse_int8_code(w, s).
template <sparse_value V>
[[nodiscard]] inline V sparse_encode(float w, float s) noexcept {
  if constexpr (std::same_as<V, float>) {
    return w;
  } else if constexpr (std::same_as<V, half>) {
    return half(w);
  } else {
    return sparse_int8_code(w, s);
  }
}

/// A validated dense input: row-major weights and, optionally, a 0/1 mask of
/// the same shape. An entry is kept (stored) when mask == 1, or, without a
/// mask, when w != 0 (so -0.0 counts as pruned).
struct sparse_source {
  const float* w = nullptr;
  const std::uint8_t* keep = nullptr;
  index_t rows = 0;
  index_t cols = 0;

  [[nodiscard]] bool kept(index_t r, index_t c) const noexcept {
    const index_t i = r * cols + c;
    return keep != nullptr ? keep[i] != 0 : w[i] != 0.0f;
  }
  [[nodiscard]] float at(index_t r, index_t c) const noexcept { return w[r * cols + c]; }
};

inline std::string sparse_shape_string(index_t rows, index_t cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

inline void sparse_check_extents(index_t rows, index_t cols) {
  if (rows < 0 || cols < 0) {
    throw shape_error("weight matrix is " + sparse_shape_string(rows, cols) +
                      " (expected extents >= 0)");
  }
}

[[nodiscard]] inline sparse_source sparse_make_source(tensor_view<const float, 2> w) {
  sparse_check_extents(w.extent(0), w.extent(1));
  return {w.data_handle(), nullptr, w.extent(0), w.extent(1)};
}

/// Throws shape_error if the mask's shape differs from the weights', and
/// config_error for a mask byte other than 0 or 1.
[[nodiscard]] inline sparse_source sparse_make_source(tensor_view<const float, 2> w,
                                                      tensor_view<const std::uint8_t, 2> keep) {
  sparse_check_extents(w.extent(0), w.extent(1));
  if (keep.extents() != w.extents()) {
    throw shape_error("mask is " + sparse_shape_string(keep.extent(0), keep.extent(1)) +
                      " but the weights are " + sparse_shape_string(w.extent(0), w.extent(1)) +
                      " (expected the same shape)");
  }
  const std::uint8_t* m = keep.data_handle();
  for (index_t i = 0; i < keep.size(); ++i) {
    if (m[i] > 1) {
      throw config_error("mask value " + std::to_string(m[i]) + " at (" +
                         std::to_string(i / w.extent(1)) + ", " +
                         std::to_string(i % w.extent(1)) + ") (expected 0 or 1)");
    }
  }
  return {w.data_handle(), m, w.extent(0), w.extent(1)};
}

/// Per-row int8 scales over the kept entries (sparse_int8_scale). Throws
/// config_error for a kept entry that is NaN or infinite.
[[nodiscard]] inline aligned_vector<float> sparse_int8_row_scales(const sparse_source& s) {
  aligned_vector<float> scales(static_cast<std::size_t>(s.rows));
  for (index_t r = 0; r < s.rows; ++r) {
    float max_abs = 0.0f;
    for (index_t c = 0; c < s.cols; ++c) {
      if (!s.kept(r, c)) continue;
      const float w = s.at(r, c);
      if (!std::isfinite(w)) {
        throw config_error("weight (" + std::to_string(r) + ", " + std::to_string(c) + ") is " +
                           (std::isnan(w) ? "NaN" : "infinite") +
                           " (expected finite weights for int8 values)");
      }
      max_abs = std::max(max_abs, std::fabs(w));
    }
    scales[static_cast<std::size_t>(r)] = sparse_int8_scale(max_abs);
  }
  return scales;
}

/// Scales for value type V: the int8 row scales, or none.
template <sparse_value V>
[[nodiscard]] aligned_vector<float> sparse_scales_for(const sparse_source& s) {
  if constexpr (std::same_as<V, std::int8_t>) {
    return sparse_int8_row_scales(s);
  } else {
    return {};
  }
}

/// Writes the low `width` bits of `v` at bit `pos` of `buf`, LSB first.
/// Precondition: the bits lie inside the buffer, which starts zeroed.
inline void sparse_put_bits(std::uint8_t* buf, std::uint64_t pos, int width,
                            unsigned v) noexcept {
  for (int t = 0; t < width; ++t) {
    if (((v >> t) & 1u) != 0) {
      const std::uint64_t p = pos + static_cast<std::uint64_t>(t);
      buf[p >> 3] = static_cast<std::uint8_t>(buf[p >> 3] | (1u << (p & 7u)));
    }
  }
}

/// Reads `width` bits at bit `pos`, LSB first; bits past `nbytes` read as 0.
[[nodiscard]] inline unsigned sparse_get_bits(const std::uint8_t* buf, std::size_t nbytes,
                                              std::uint64_t pos, int width) noexcept {
  unsigned v = 0;
  for (int t = 0; t < width; ++t) {
    const std::uint64_t p = pos + static_cast<std::uint64_t>(t);
    if ((p >> 3) < nbytes && ((buf[p >> 3] >> (p & 7u)) & 1u) != 0) v |= 1u << t;
  }
  return v;
}

/// Throws shape_error unless `out` is rows x cols.
inline void sparse_check_output(tensor_view<float, 2> out, index_t rows, index_t cols) {
  if (out.extent(0) != rows || out.extent(1) != cols) {
    throw shape_error("output is " + sparse_shape_string(out.extent(0), out.extent(1)) +
                      " (expected " + sparse_shape_string(rows, cols) + ", the matrix's shape)");
  }
}

}  // namespace detail

/// Throws config_error unless 1 <= n < m <= 16 (so a slot position fits in
/// ceil(log2 m) <= 4 bits).
inline void check_packed_nm_pattern(int n, int m) {
  if (!(n >= 1 && n < m && m <= 16)) {
    throw config_error("N:M pattern " + std::to_string(n) + ":" + std::to_string(m) +
                       " is not supported (expected 1 <= N < M <= 16)");
  }
}

// ---------------------------------------------------------------------------
// The contract shared by the formats
// ---------------------------------------------------------------------------

/// A sparse matrix storage: its value type, format, shape, stored-entry count,
/// exact bytes and dense reconstruction. csr_matrix, bitmask_matrix and
/// packed_nm_matrix satisfy it; prune/report.hpp reports any type that does.
template <class S>
concept sparse_matrix_storage = requires(const S& s, tensor_view<float, 2> out) {
  typename S::value_type;
  requires sparse_value<typename S::value_type>;
  { S::format } -> std::convertible_to<storage_format>;
  { s.rows() } -> std::same_as<index_t>;
  { s.cols() } -> std::same_as<index_t>;
  { s.nnz() } -> std::same_as<index_t>;
  { s.bytes() } -> std::same_as<std::int64_t>;
  { s.breakdown() } -> std::same_as<byte_breakdown>;
  s.to_dense(out);
};

// ---------------------------------------------------------------------------
// CSR
// ---------------------------------------------------------------------------

/// Compressed sparse rows over values of type V.
///
/// Layout: the stored entries in row-major order (ascending column within a
/// row); `values()[k]`, column index `col_indices()[k]`, and row r's entries at
/// k in [row_ptr[r], row_ptr[r + 1]). Column indices are uint8 when cols <= 256,
/// uint16 when cols <= 65536, else uint32; row pointers are uint32 when
/// nnz < 2^32, else uint64 (the alternative held by each std::variant). int8
/// values carry one float32 scale per row (`scales()`).
///
/// Every entry the source keeps is stored explicitly, even when its value is 0
/// (a kept int8 weight whose code rounds to 0, a mask-kept zero), so nnz() is
/// the number of kept entries. Bytes: csr_bytes().
/// Invariant: built by from_dense only, so the arrays are mutually consistent
/// (every index < cols, row pointers non-decreasing up to nnz).
template <sparse_value V>
class csr_matrix {
 public:
  using value_type = V;
  using col_index_array = std::variant<aligned_vector<std::uint8_t>,
                                       aligned_vector<std::uint16_t>,
                                       aligned_vector<std::uint32_t>>;
  using row_ptr_array = std::variant<aligned_vector<std::uint32_t>, aligned_vector<std::uint64_t>>;
  static constexpr storage_format format = storage_format::csr;
  static constexpr value_kind kind = value_kind_of<V>;

  /// The empty 0x0 matrix (one row pointer, 0).
  csr_matrix() = default;

  /// Stores the nonzero entries of `w` (w != 0; -0.0 counts as zero).
  /// Numerics: fp32 exact; fp16 half(w), nearest even; int8 per row
  ///   s_r = max_c |w_rc| / 127 (1 if the row is all zero),
  ///   q = clamp(round_half_even(w / s_r), -127, 127), dequantized s_r * q.
  /// Throws shape_error if cols > 2^32, config_error (int8) for a NaN or
  /// infinite weight. Complexity: two passes over w, one allocation per array.
  [[nodiscard]] static csr_matrix from_dense(tensor_view<const float, 2> w) {
    return build(detail::sparse_make_source(w));
  }

  /// Stores exactly the entries with mask == 1 (zeros included); int8 scales
  /// are taken over those entries only. Throws shape_error if the mask's shape
  /// differs, config_error for a mask byte other than 0/1, and as above.
  [[nodiscard]] static csr_matrix from_dense(tensor_view<const float, 2> w,
                                             tensor_view<const std::uint8_t, 2> keep) {
    return build(detail::sparse_make_source(w, keep));
  }

  /// Writes the dequantized dense matrix: stored entries as the value type
  /// decodes them (int8: s_r * q), every other element +0.0f.
  /// Throws shape_error unless `out` is rows() x cols().
  void to_dense(tensor_view<float, 2> out) const {
    detail::sparse_check_output(out, rows_, cols_);
    float* o = out.data_handle();
    std::fill_n(o, rows_ * cols_, 0.0f);
    for_each_stored([&](index_t r, index_t c, V v) noexcept {
      o[r * cols_ + c] = detail::sparse_dequantize(v, row_scale(r));
    });
  }

  /// Calls f(row, col, value) for every stored entry, in row-major order with
  /// ascending columns. `f` must not throw.
  template <class F>
  void for_each_stored(F&& f) const noexcept {
    std::visit(
        [&](const auto& ci, const auto& rp) {
          for (index_t r = 0; r < rows_; ++r) {
            const auto end = static_cast<std::size_t>(rp[static_cast<std::size_t>(r) + 1]);
            for (auto k = static_cast<std::size_t>(rp[static_cast<std::size_t>(r)]); k < end;
                 ++k) {
              f(r, static_cast<index_t>(ci[k]), values_[k]);
            }
          }
        },
        col_idx_, row_ptr_);
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  /// Stored entries.
  [[nodiscard]] index_t nnz() const noexcept { return static_cast<index_t>(values_.size()); }
  /// Exact bytes: csr_bytes(kind, rows, cols, nnz).
  [[nodiscard]] std::int64_t bytes() const noexcept { return breakdown().total(); }
  [[nodiscard]] byte_breakdown breakdown() const noexcept {
    return csr_bytes(kind, rows_, cols_, nnz());
  }
  /// 1, 2 or 4 (see the class comment).
  [[nodiscard]] int col_index_bytes() const noexcept {
    return std::visit([](const auto& v) { return static_cast<int>(sizeof(v[0])); }, col_idx_);
  }
  /// 4 or 8.
  [[nodiscard]] int row_ptr_bytes() const noexcept {
    return std::visit([](const auto& v) { return static_cast<int>(sizeof(v[0])); }, row_ptr_);
  }
  [[nodiscard]] std::span<const V> values() const noexcept { return {values_.data(), values_.size()}; }
  /// int8: one scale per row; fp32 / fp16: empty.
  [[nodiscard]] std::span<const float> scales() const noexcept {
    return {scales_.data(), scales_.size()};
  }
  /// The scale of row r (1 for fp32 / fp16). Precondition: 0 <= r < rows().
  [[nodiscard]] float row_scale(index_t r) const noexcept {
    if constexpr (std::same_as<V, std::int8_t>) {
      return scales_[static_cast<std::size_t>(r)];
    } else {
      static_cast<void>(r);
      return 1.0f;
    }
  }
  [[nodiscard]] const col_index_array& col_indices() const noexcept { return col_idx_; }
  [[nodiscard]] const row_ptr_array& row_ptr() const noexcept { return row_ptr_; }

 private:
  static csr_matrix build(const detail::sparse_source& s) {
    constexpr index_t max_cols = index_t{1} << 32;
    if (s.cols > max_cols) {
      throw shape_error("CSR stores at most 2^32 columns, got " + std::to_string(s.cols) +
                        " (expected cols <= 4294967296)");
    }
    csr_matrix a;
    a.rows_ = s.rows;
    a.cols_ = s.cols;
    a.scales_ = detail::sparse_scales_for<V>(s);
    index_t nnz = 0;
    for (index_t r = 0; r < s.rows; ++r)
      for (index_t c = 0; c < s.cols; ++c) nnz += s.kept(r, c) ? 1 : 0;
    const auto n = static_cast<std::size_t>(nnz);
    const auto nr = static_cast<std::size_t>(s.rows) + 1;
    a.values_.resize(n);
    switch (csr_col_index_bytes(s.cols)) {
      case 1: a.col_idx_ = aligned_vector<std::uint8_t>(n); break;
      case 2: a.col_idx_ = aligned_vector<std::uint16_t>(n); break;
      default: a.col_idx_ = aligned_vector<std::uint32_t>(n); break;
    }
    if (csr_row_ptr_bytes(nnz) == 4) {
      a.row_ptr_ = aligned_vector<std::uint32_t>(nr);
    } else {
      a.row_ptr_ = aligned_vector<std::uint64_t>(nr);
    }
    std::visit(
        [&](auto& ci, auto& rp) {
          using I = typename std::remove_reference_t<decltype(ci)>::value_type;
          using P = typename std::remove_reference_t<decltype(rp)>::value_type;
          std::size_t k = 0;
          rp[0] = 0;
          for (index_t r = 0; r < s.rows; ++r) {
            const float sc = a.row_scale(r);
            for (index_t c = 0; c < s.cols; ++c) {
              if (!s.kept(r, c)) continue;
              ci[k] = static_cast<I>(c);
              a.values_[k] = detail::sparse_encode<V>(s.at(r, c), sc);
              ++k;
            }
            rp[static_cast<std::size_t>(r) + 1] = static_cast<P>(k);
          }
        },
        a.col_idx_, a.row_ptr_);
    return a;
  }

  index_t rows_ = 0;
  index_t cols_ = 0;
  aligned_vector<V> values_;
  aligned_vector<float> scales_;
  col_index_array col_idx_;
  row_ptr_array row_ptr_{aligned_vector<std::uint32_t>(1, 0u)};
};

// ---------------------------------------------------------------------------
// Bitmask
// ---------------------------------------------------------------------------

/// One bit per element plus the stored values.
///
/// Layout: element (r, c) is bit i = r * cols + c of one continuous bit string
/// (rows are NOT padded to whole bytes): byte i / 8, bit i % 8, least
/// significant bit first; the last byte's unused high bits are 0. A set bit
/// means stored; `values()` holds the stored values in row-major order. int8
/// values carry one float32 scale per row. Stored zeros are kept as in
/// csr_matrix. Bytes: bitmask_bytes().
template <sparse_value V>
class bitmask_matrix {
 public:
  using value_type = V;
  static constexpr storage_format format = storage_format::bitmask;
  static constexpr value_kind kind = value_kind_of<V>;

  /// The empty 0x0 matrix.
  bitmask_matrix() = default;

  /// Stores the nonzero entries of `w`. Numerics and errors as
  /// csr_matrix::from_dense (no column limit).
  [[nodiscard]] static bitmask_matrix from_dense(tensor_view<const float, 2> w) {
    return build(detail::sparse_make_source(w));
  }

  /// Stores exactly the entries with mask == 1. Errors as csr_matrix's.
  [[nodiscard]] static bitmask_matrix from_dense(tensor_view<const float, 2> w,
                                                 tensor_view<const std::uint8_t, 2> keep) {
    return build(detail::sparse_make_source(w, keep));
  }

  /// As csr_matrix::to_dense.
  void to_dense(tensor_view<float, 2> out) const {
    detail::sparse_check_output(out, rows_, cols_);
    float* o = out.data_handle();
    std::fill_n(o, rows_ * cols_, 0.0f);
    for_each_stored([&](index_t r, index_t c, V v) noexcept {
      o[r * cols_ + c] = detail::sparse_dequantize(v, row_scale(r));
    });
  }

  /// Calls f(row, col, value) for every stored entry, in row-major order.
  /// `f` must not throw.
  template <class F>
  void for_each_stored(F&& f) const noexcept {
    std::size_t k = 0;
    index_t i = 0;
    for (index_t r = 0; r < rows_; ++r) {
      for (index_t c = 0; c < cols_; ++c, ++i) {
        if (((mask_[static_cast<std::size_t>(i >> 3)] >> (i & 7)) & 1) != 0 &&
            k < values_.size()) {
          f(r, c, values_[k++]);
        }
      }
    }
  }

  /// True when (r, c) is stored. Precondition: inside the matrix.
  [[nodiscard]] bool is_stored(index_t r, index_t c) const noexcept {
    const index_t i = r * cols_ + c;
    return ((mask_[static_cast<std::size_t>(i >> 3)] >> (i & 7)) & 1) != 0;
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  [[nodiscard]] index_t nnz() const noexcept { return static_cast<index_t>(values_.size()); }
  /// Exact bytes: bitmask_bytes(kind, rows, cols, nnz).
  [[nodiscard]] std::int64_t bytes() const noexcept { return breakdown().total(); }
  [[nodiscard]] byte_breakdown breakdown() const noexcept {
    return bitmask_bytes(kind, rows_, cols_, nnz());
  }
  /// The mask bits, ceil(rows * cols / 8) bytes.
  [[nodiscard]] std::span<const std::uint8_t> mask_bytes() const noexcept {
    return {mask_.data(), mask_.size()};
  }
  [[nodiscard]] std::span<const V> values() const noexcept { return {values_.data(), values_.size()}; }
  [[nodiscard]] std::span<const float> scales() const noexcept {
    return {scales_.data(), scales_.size()};
  }
  /// The scale of row r (1 for fp32 / fp16). Precondition: 0 <= r < rows().
  [[nodiscard]] float row_scale(index_t r) const noexcept {
    if constexpr (std::same_as<V, std::int8_t>) {
      return scales_[static_cast<std::size_t>(r)];
    } else {
      static_cast<void>(r);
      return 1.0f;
    }
  }

 private:
  static bitmask_matrix build(const detail::sparse_source& s) {
    bitmask_matrix a;
    a.rows_ = s.rows;
    a.cols_ = s.cols;
    a.scales_ = detail::sparse_scales_for<V>(s);
    a.mask_.assign(static_cast<std::size_t>((s.rows * s.cols + 7) / 8), 0);
    index_t nnz = 0;
    for (index_t r = 0; r < s.rows; ++r)
      for (index_t c = 0; c < s.cols; ++c) nnz += s.kept(r, c) ? 1 : 0;
    a.values_.resize(static_cast<std::size_t>(nnz));
    std::size_t k = 0;
    index_t i = 0;
    for (index_t r = 0; r < s.rows; ++r) {
      const float sc = a.row_scale(r);
      for (index_t c = 0; c < s.cols; ++c, ++i) {
        if (!s.kept(r, c)) continue;
        auto& byte = a.mask_[static_cast<std::size_t>(i >> 3)];
        byte = static_cast<std::uint8_t>(byte | (1u << (i & 7)));
        a.values_[k++] = detail::sparse_encode<V>(s.at(r, c), sc);
      }
    }
    return a;
  }

  index_t rows_ = 0;
  index_t cols_ = 0;
  aligned_vector<std::uint8_t> mask_;
  aligned_vector<V> values_;
  aligned_vector<float> scales_;
};

// ---------------------------------------------------------------------------
// Packed N:M
// ---------------------------------------------------------------------------

/// N:M semi-structured sparsity along each row (the reduction axis), packed:
/// every group of M consecutive columns holds exactly N value slots and N slot
/// positions (0..M-1 within the group) of b = ceil(log2 M) bits each.
///
/// Layout: slot s = (r * groups + g) * N + i (groups = ceil(cols / M)):
/// `values()[s]`, and its position in bits [s*b, s*b + b) of one continuous bit
/// string, least significant bit first (2:4: four 2-bit positions per byte).
/// Within a group the N slots hold distinct positions in ascending order: the
/// kept entries, plus, when fewer than N are kept, padding slots at the lowest
/// positions not kept, with value 0 (fp32 +0, fp16 +0, int8 code 0). A row whose
/// length is not a multiple of M ends with a partial group padded on the right:
/// its missing columns count as pruned; a padding slot may point past the last
/// column (only when the partial group is narrower than N), and such slots are
/// skipped by to_dense, for_each_stored and the kernels. nnz() counts the kept
/// entries, not the slots. int8 values carry one float32 scale per row.
/// Bytes: packed_nm_bytes() (independent of nnz).
template <sparse_value V>
class packed_nm_matrix {
 public:
  using value_type = V;
  static constexpr storage_format format = storage_format::packed_nm;
  static constexpr value_kind kind = value_kind_of<V>;

  /// The empty 0x0 matrix with pattern 2:4.
  packed_nm_matrix() = default;

  /// Packs the nonzero entries of `w` (w != 0) with pattern n:m. Numerics as
  /// csr_matrix::from_dense. Throws config_error if the pattern is not
  /// 1 <= n < m <= 16, if a group has more than n nonzeros ("row 1 group 0 has
  /// 3 nonzeros (expected at most 2 for 2:4)"), or (int8) for a non-finite weight.
  [[nodiscard]] static packed_nm_matrix from_dense(tensor_view<const float, 2> w, int n, int m) {
    check_packed_nm_pattern(n, m);
    return build(detail::sparse_make_source(w), n, m);
  }

  /// Packs exactly the entries with mask == 1. Errors as above (counting mask
  /// ones), plus shape_error / config_error for a bad mask as csr_matrix's.
  [[nodiscard]] static packed_nm_matrix from_dense(tensor_view<const float, 2> w,
                                                   tensor_view<const std::uint8_t, 2> keep, int n,
                                                   int m) {
    check_packed_nm_pattern(n, m);
    return build(detail::sparse_make_source(w, keep), n, m);
  }

  /// As csr_matrix::to_dense (padding slots write 0 to pruned positions).
  void to_dense(tensor_view<float, 2> out) const {
    detail::sparse_check_output(out, rows_, cols_);
    float* o = out.data_handle();
    std::fill_n(o, rows_ * cols_, 0.0f);
    for_each_stored([&](index_t r, index_t c, V v) noexcept {
      o[r * cols_ + c] = detail::sparse_dequantize(v, row_scale(r));
    });
  }

  /// Calls f(row, col, value) for every slot whose column lies inside the
  /// matrix (padding slots included, with value 0), in row-major order with
  /// ascending columns. `f` must not throw.
  template <class F>
  void for_each_stored(F&& f) const noexcept {
    const index_t groups = groups_per_row();
    std::size_t s = 0;
    for (index_t r = 0; r < rows_; ++r) {
      for (index_t g = 0; g < groups; ++g) {
        for (int i = 0; i < n_; ++i, ++s) {
          const index_t c = g * m_ + static_cast<index_t>(slot_position(s));
          if (c < cols_ && s < values_.size()) f(r, c, values_[s]);
        }
      }
    }
  }

  [[nodiscard]] index_t rows() const noexcept { return rows_; }
  [[nodiscard]] index_t cols() const noexcept { return cols_; }
  /// Kept entries (padding slots excluded).
  [[nodiscard]] index_t nnz() const noexcept { return nnz_; }
  [[nodiscard]] int n() const noexcept { return n_; }
  [[nodiscard]] int m() const noexcept { return m_; }
  /// Bits per slot position, ceil(log2 m).
  [[nodiscard]] int index_bits() const noexcept { return packed_nm_index_bits(m_); }
  /// ceil(cols / m).
  [[nodiscard]] index_t groups_per_row() const noexcept { return packed_nm_groups(cols_, m_); }
  /// rows * groups_per_row * n.
  [[nodiscard]] index_t slot_count() const noexcept {
    return static_cast<index_t>(values_.size());
  }
  /// Exact bytes: packed_nm_bytes(kind, rows, cols, n, m).
  [[nodiscard]] std::int64_t bytes() const noexcept { return breakdown().total(); }
  [[nodiscard]] byte_breakdown breakdown() const noexcept {
    return packed_nm_bytes(kind, rows_, cols_, n_, m_);
  }
  /// Position (0..m-1) within its group of slot s; 0 past the end.
  [[nodiscard]] int slot_position(std::size_t s) const noexcept {
    return static_cast<int>(detail::sparse_get_bits(
        positions_.data(), positions_.size(),
        static_cast<std::uint64_t>(s) * static_cast<std::uint64_t>(index_bits()), index_bits()));
  }
  /// The packed slot positions, ceil(slots * index_bits / 8) bytes.
  [[nodiscard]] std::span<const std::uint8_t> position_bytes() const noexcept {
    return {positions_.data(), positions_.size()};
  }
  /// Every slot's value (padding included).
  [[nodiscard]] std::span<const V> values() const noexcept { return {values_.data(), values_.size()}; }
  [[nodiscard]] std::span<const float> scales() const noexcept {
    return {scales_.data(), scales_.size()};
  }
  /// The scale of row r (1 for fp32 / fp16). Precondition: 0 <= r < rows().
  [[nodiscard]] float row_scale(index_t r) const noexcept {
    if constexpr (std::same_as<V, std::int8_t>) {
      return scales_[static_cast<std::size_t>(r)];
    } else {
      static_cast<void>(r);
      return 1.0f;
    }
  }

 private:
  static packed_nm_matrix build(const detail::sparse_source& s, int n, int m) {
    packed_nm_matrix a;
    a.rows_ = s.rows;
    a.cols_ = s.cols;
    a.n_ = n;
    a.m_ = m;
    const index_t groups = a.groups_per_row();
    const int bits = a.index_bits();
    const index_t slots = s.rows * groups * n;
    // Validate every group before the (int8) scales, so a pattern violation is
    // reported first.
    for (index_t r = 0; r < s.rows; ++r) {
      for (index_t g = 0; g < groups; ++g) {
        const index_t width = std::min<index_t>(m, s.cols - g * m);
        int count = 0;
        for (index_t p = 0; p < width; ++p) count += s.kept(r, g * m + p) ? 1 : 0;
        if (count > n) {
          throw config_error("row " + std::to_string(r) + " group " + std::to_string(g) +
                             " has " + std::to_string(count) +
                             (s.keep != nullptr ? " kept entries" : " nonzeros") +
                             " (expected at most " + std::to_string(n) + " for " +
                             std::to_string(n) + ":" + std::to_string(m) + ")");
        }
      }
    }
    a.scales_ = detail::sparse_scales_for<V>(s);
    a.values_.assign(static_cast<std::size_t>(slots), V{});
    a.positions_.assign(static_cast<std::size_t>((slots * bits + 7) / 8), 0);
    std::size_t slot = 0;
    for (index_t r = 0; r < s.rows; ++r) {
      const float sc = a.row_scale(r);
      for (index_t g = 0; g < groups; ++g) {
        const index_t width = std::min<index_t>(m, s.cols - g * m);
        std::array<bool, 16> kept{};
        int count = 0;
        for (index_t p = 0; p < width; ++p) {
          kept[static_cast<std::size_t>(p)] = s.kept(r, g * m + p);
          count += kept[static_cast<std::size_t>(p)] ? 1 : 0;
        }
        a.nnz_ += count;
        int pads = n - count;
        for (int p = 0; p < m; ++p) {
          const bool k = kept[static_cast<std::size_t>(p)];
          if (!k && pads == 0) continue;
          if (!k) --pads;
          detail::sparse_put_bits(a.positions_.data(),
                                  static_cast<std::uint64_t>(slot) *
                                      static_cast<std::uint64_t>(bits),
                                  bits, static_cast<unsigned>(p));
          if (k) a.values_[slot] = detail::sparse_encode<V>(s.at(r, g * m + p), sc);
          ++slot;
        }
      }
    }
    return a;
  }

  index_t rows_ = 0;
  index_t cols_ = 0;
  int n_ = 2;
  int m_ = 4;
  index_t nnz_ = 0;
  aligned_vector<V> values_;
  aligned_vector<std::uint8_t> positions_;
  aligned_vector<float> scales_;
};

}  // namespace qprune::prune

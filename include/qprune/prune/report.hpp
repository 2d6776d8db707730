// What pruning saves, per tensor: shape, stored entries, sparsity, storage
// format, value type, and dense fp32 bytes against the exact stored bytes of
// prune/sparse_storage.hpp. choose_format picks the smallest storage for a
// value type; the printers write one line or a table. Definitions:
// doc/pruning.md, "Sparse storage report".
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/prune/sparse_storage.hpp"

namespace qprune::prune {

/// The storage formats choose_format may pick from.
///   nm_group_sizes  values of M tried for packed N:M (each 2..16). For each M
///                   the pattern is N:M with N = the largest number of kept
///                   entries in any group of M (at least 1); skipped when N >= M.
struct format_options {
  bool allow_dense = true;
  bool allow_csr = true;
  bool allow_bitmask = true;
  std::vector<int> nm_group_sizes{4, 8, 16};
};

/// A format and its exact bytes. n, m: the pattern when format == packed_nm, else 0.
struct format_choice {
  storage_format format = storage_format::dense;
  int n = 0;
  int m = 0;
  index_t nnz = 0;
  byte_breakdown bytes;
};

/// "dense", "csr", "bitmask", or "packed 2:4" (N:M with its pattern).
[[nodiscard]] inline std::string format_name(storage_format f, int n = 0, int m = 0) {
  if (f == storage_format::packed_nm) {
    return "packed " + std::to_string(n) + ":" + std::to_string(m);
  }
  return std::string(to_string(f));
}

/// Exact bytes of a [rows, cols] matrix with nnz stored entries in format `f`
/// with values `v` (dense_bytes, csr_bytes, bitmask_bytes or packed_nm_bytes).
/// Throws config_error for a packed N:M pattern outside 1 <= n < m <= 16,
/// shape_error for negative sizes or nnz > rows * cols, or CSR with cols > 2^32.
[[nodiscard]] inline byte_breakdown storage_bytes(storage_format f, value_kind v, index_t rows,
                                                  index_t cols, index_t nnz, int n = 0,
                                                  int m = 0) {
  detail::sparse_check_extents(rows, cols);
  if (nnz < 0 || nnz > rows * cols) {
    throw shape_error("nnz " + std::to_string(nnz) + " for a " +
                      detail::sparse_shape_string(rows, cols) +
                      " matrix (expected 0 <= nnz <= rows * cols)");
  }
  switch (f) {
    case storage_format::dense: return dense_bytes(v, rows, cols);
    case storage_format::csr:
      if (cols > (index_t{1} << 32)) {
        throw shape_error("CSR stores at most 2^32 columns, got " + std::to_string(cols) +
                          " (expected cols <= 4294967296)");
      }
      return csr_bytes(v, rows, cols, nnz);
    case storage_format::bitmask: return bitmask_bytes(v, rows, cols, nnz);
    case storage_format::packed_nm:
      check_packed_nm_pattern(n, m);
      return packed_nm_bytes(v, rows, cols, n, m);
  }
  return {};
}

namespace detail {

/// The largest number of kept entries in any group of m consecutive columns of
/// a row (the last group of a row may be partial).
[[nodiscard]] inline int sparse_max_group_count(const sparse_source& s, int m) noexcept {
  int best = 0;
  for (index_t r = 0; r < s.rows; ++r) {
    for (index_t g0 = 0; g0 < s.cols; g0 += m) {
      const index_t end = std::min<index_t>(s.cols, g0 + m);
      int count = 0;
      for (index_t c = g0; c < end; ++c) count += s.kept(r, c) ? 1 : 0;
      best = std::max(best, count);
    }
  }
  return best;
}

[[nodiscard]] inline format_choice sparse_choose(const sparse_source& s, value_kind v,
                                                 const format_options& opt) {
  for (int m : opt.nm_group_sizes) {
    if (m < 2 || m > 16) {
      throw config_error("N:M group size " + std::to_string(m) +
                         " is not supported (expected 2 <= M <= 16)");
    }
  }
  index_t nnz = 0;
  for (index_t r = 0; r < s.rows; ++r)
    for (index_t c = 0; c < s.cols; ++c) nnz += s.kept(r, c) ? 1 : 0;

  // Candidates in tie-break order: the first of equal size wins.
  std::vector<format_choice> candidates;
  if (opt.allow_dense) candidates.push_back({storage_format::dense, 0, 0, nnz, {}});
  if (opt.allow_csr && s.cols <= (index_t{1} << 32)) {
    candidates.push_back({storage_format::csr, 0, 0, nnz, {}});
  }
  if (opt.allow_bitmask) candidates.push_back({storage_format::bitmask, 0, 0, nnz, {}});
  std::vector<int> ms = opt.nm_group_sizes;
  std::sort(ms.begin(), ms.end());
  ms.erase(std::unique(ms.begin(), ms.end()), ms.end());
  for (int m : ms) {
    const int n = std::max(sparse_max_group_count(s, m), 1);
    if (n < m) candidates.push_back({storage_format::packed_nm, n, m, nnz, {}});
  }
  if (candidates.empty()) {
    throw config_error("no storage format is allowed (expected at least one candidate)");
  }
  for (auto& c : candidates) c.bytes = storage_bytes(c.format, v, s.rows, s.cols, nnz, c.n, c.m);
  return *std::min_element(candidates.begin(), candidates.end(),
                           [](const format_choice& a, const format_choice& b) {
                             return a.bytes.total() < b.bytes.total();
                           });
}

}  // namespace detail

/// The smallest storage of `w` with values `v` among the allowed formats, by
/// exact bytes; kept entries are w != 0. Ties go to the earlier of dense, csr,
/// bitmask, packed N:M (ascending M). Packed N:M is a candidate for each M in
/// opt.nm_group_sizes with the smallest N that fits every group. Throws
/// config_error for an M outside [2, 16] or when no format is allowed.
/// Complexity: one pass over w per candidate M, plus one.
[[nodiscard]] inline format_choice choose_format(tensor_view<const float, 2> w, value_kind v,
                                                 const format_options& opt = {}) {
  return detail::sparse_choose(detail::sparse_make_source(w), v, opt);
}

/// Same, with the kept entries given by a 0/1 mask of w's shape (shape_error
/// if it differs, config_error for a byte other than 0/1).
[[nodiscard]] inline format_choice choose_format(tensor_view<const float, 2> w,
                                                 tensor_view<const std::uint8_t, 2> keep,
                                                 value_kind v, const format_options& opt = {}) {
  return detail::sparse_choose(detail::sparse_make_source(w, keep), v, opt);
}

/// One tensor's storage report.
///   sparsity          1 - nnz / (rows * cols): the fraction of elements not
///                     stored (0 for an empty matrix)
///   dense_fp32_bytes  4 * rows * cols
///   stored_bytes      bytes.total(), the exact bytes of the chosen storage
///   ratio             stored_bytes / dense_fp32_bytes (0 when the matrix is
///                     empty); 0.1 means a tenth of the fp32 size
struct sparse_report {
  std::string name;
  index_t rows = 0;
  index_t cols = 0;
  index_t nnz = 0;
  double sparsity = 0.0;
  storage_format format = storage_format::dense;
  int n = 0;
  int m = 0;
  value_kind values = value_kind::fp32;
  std::int64_t dense_fp32_bytes = 0;
  std::int64_t stored_bytes = 0;
  double ratio = 0.0;
  byte_breakdown bytes;

  /// format_name(format, n, m).
  [[nodiscard]] std::string format_name() const { return prune::format_name(format, n, m); }
};

namespace detail {
[[nodiscard]] inline sparse_report sparse_make_report(std::string name, index_t rows,
                                                      index_t cols, value_kind v,
                                                      const format_choice& c) {
  sparse_report r;
  r.name = std::move(name);
  r.rows = rows;
  r.cols = cols;
  r.nnz = c.nnz;
  const index_t numel = rows * cols;
  r.sparsity = numel == 0 ? 0.0
                          : 1.0 - static_cast<double>(c.nnz) / static_cast<double>(numel);
  r.format = c.format;
  r.n = c.n;
  r.m = c.m;
  r.values = v;
  r.dense_fp32_bytes = 4 * numel;
  r.bytes = c.bytes;
  r.stored_bytes = c.bytes.total();
  r.ratio = numel == 0 ? 0.0
                       : static_cast<double>(r.stored_bytes) /
                             static_cast<double>(r.dense_fp32_bytes);
  return r;
}
}  // namespace detail

/// The report of a built storage: its own nnz(), breakdown() and bytes().
template <sparse_matrix_storage S>
[[nodiscard]] sparse_report make_report(std::string name, const S& s) {
  format_choice c;
  c.format = S::format;
  if constexpr (S::format == storage_format::packed_nm) {
    c.n = s.n();
    c.m = s.m();
  }
  c.nnz = s.nnz();
  c.bytes = s.breakdown();
  return detail::sparse_make_report(std::move(name), s.rows(), s.cols(),
                                    value_kind_of<typename S::value_type>, c);
}

/// The report of `w` stored in its smallest format (choose_format) with values `v`.
[[nodiscard]] inline sparse_report make_report(std::string name, tensor_view<const float, 2> w,
                                               value_kind v, const format_options& opt = {}) {
  return detail::sparse_make_report(std::move(name), w.extent(0), w.extent(1), v,
                                    choose_format(w, v, opt));
}

/// Same, with the kept entries given by a 0/1 mask.
[[nodiscard]] inline sparse_report make_report(std::string name, tensor_view<const float, 2> w,
                                               tensor_view<const std::uint8_t, 2> keep,
                                               value_kind v, const format_options& opt = {}) {
  return detail::sparse_make_report(std::move(name), w.extent(0), w.extent(1), v,
                                    choose_format(w, keep, v, opt));
}

/// One line, for example
///   fc1 1024x1024 nnz=104858 sparsity=90.00% bitmask fp16 4194304 -> 340788 bytes (8.13%)
/// (percentages with two decimals). The stream's flags are left unchanged.
inline std::ostream& operator<<(std::ostream& os, const sparse_report& r) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2);
  s << r.name << ' ' << r.rows << 'x' << r.cols << " nnz=" << r.nnz
    << " sparsity=" << 100.0 * r.sparsity << "% " << r.format_name() << ' '
    << to_string(r.values) << ' ' << r.dense_fp32_bytes << " -> " << r.stored_bytes
    << " bytes (" << 100.0 * r.ratio << "%)";
  return os << s.str();
}

/// A table with a header line, one line per report and a total line (sums of
/// nnz and bytes; sparsity and ratio of the sums), columns separated by two
/// spaces, text left-aligned and numbers right-aligned, each column as wide as
/// its widest cell. The stream's flags are left unchanged.
inline void print_table(std::ostream& os, std::span<const sparse_report> reports) {
  constexpr std::size_t ncol = 9;
  const std::array<std::string, ncol> head{"name",   "shape",       "nnz",
                                           "sparsity", "format",    "values",
                                           "dense bytes", "stored bytes", "ratio"};
  const std::array<bool, ncol> left{true, false, false, false, true, true, false, false, false};
  auto pct = [](double x) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << 100.0 * x << '%';
    return s.str();
  };
  std::vector<std::array<std::string, ncol>> lines;
  lines.push_back(head);
  std::int64_t nnz = 0, numel = 0, dense = 0, stored = 0;
  for (const auto& r : reports) {
    lines.push_back({r.name, std::to_string(r.rows) + "x" + std::to_string(r.cols),
                     std::to_string(r.nnz), pct(r.sparsity), r.format_name(),
                     std::string(to_string(r.values)), std::to_string(r.dense_fp32_bytes),
                     std::to_string(r.stored_bytes), pct(r.ratio)});
    nnz += r.nnz;
    numel += r.rows * r.cols;
    dense += r.dense_fp32_bytes;
    stored += r.stored_bytes;
  }
  const double tot_sparsity =
      numel == 0 ? 0.0 : 1.0 - static_cast<double>(nnz) / static_cast<double>(numel);
  const double tot_ratio =
      dense == 0 ? 0.0 : static_cast<double>(stored) / static_cast<double>(dense);
  lines.push_back({"total", "", std::to_string(nnz), pct(tot_sparsity), "", "",
                   std::to_string(dense), std::to_string(stored), pct(tot_ratio)});
  std::array<std::size_t, ncol> width{};
  for (const auto& l : lines)
    for (std::size_t i = 0; i < ncol; ++i) width[i] = std::max(width[i], l[i].size());
  std::ostringstream s;
  for (const auto& l : lines) {
    std::string line;
    for (std::size_t i = 0; i < ncol; ++i) {
      const std::string pad(width[i] - l[i].size(), ' ');
      if (i > 0) line += "  ";
      line += left[i] ? l[i] + pad : pad + l[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    s << line << '\n';
  }
  os << s.str();
}

}  // namespace qprune::prune

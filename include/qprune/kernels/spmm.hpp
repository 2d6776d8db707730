// Fast sparse-weight kernels in the layer orientation, over the storages of
// prune/sparse_storage.hpp (CSR and packed N:M; fp32, fp16, int8 values):
//
//   SpMV  y[N]    = W[N, K] x[K] (+ bias)
//   SpMM  Y[M, N] = X[M, K] W^T  (+ bias)     (M = batch, X and Y row-major)
//
// Every path (AVX-512, AVX2 + FMA + F16C, the scalar twins spmv_lanes /
// spmm_lanes of kernels/reference/spmm.hpp) sums each output in the same "lane
// order" (16 partial sums, fixed tree), so all give the same bits, for any
// thread count and any batch size. The order, stated as formulas, is the
// reference's (kernels/reference/spmm.hpp); x86 bodies: kernels/x86/spmm.hpp.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <variant>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"
#include "qprune/core/memory.hpp"
#include "qprune/core/tensor_view.hpp"
#include "qprune/kernels/dispatch.hpp"
#include "qprune/kernels/parallel.hpp"
#include "qprune/kernels/reference/spmm.hpp"
#include "qprune/kernels/x86/spmm.hpp"
#include "qprune/prune/sparse_storage.hpp"

namespace qprune::kernels {

namespace detail {

/// Largest matrix column count the SIMD paths take: column numbers, and SpMM's
/// offsets column * ld into X^T, are int32 in the vector registers.
inline constexpr index_t spmm_simd_max_index = index_t{1} << 30;

/// Work (stored entries times batch) below which a call stays on one thread.
inline constexpr index_t spmm_parallel_min_work = index_t{1} << 16;

inline void spmv_check(index_t rows, index_t cols, std::size_t xs, std::size_t ys,
                       std::size_t bs) {
  if (static_cast<index_t>(xs) != cols) {
    throw shape_error("SpMV input x has " + std::to_string(xs) + " values (expected " +
                      std::to_string(cols) + ", the matrix's columns)");
  }
  if (static_cast<index_t>(ys) != rows) {
    throw shape_error("SpMV output y has " + std::to_string(ys) + " values (expected " +
                      std::to_string(rows) + ", the matrix's rows)");
  }
  if (bs != 0 && static_cast<index_t>(bs) != rows) {
    throw shape_error("bias has " + std::to_string(bs) + " values (expected " +
                      std::to_string(rows) + ", the matrix's rows, or none)");
  }
}

inline void spmm_check(index_t rows, index_t cols, tensor_view<const float, 2> x,
                       tensor_view<float, 2> y, std::size_t bs) {
  if (x.extent(1) != cols) {
    throw shape_error("SpMM input X is " + std::to_string(x.extent(0)) + " x " +
                      std::to_string(x.extent(1)) + " (expected " + std::to_string(cols) +
                      " columns, the matrix's columns)");
  }
  if (y.extent(0) != x.extent(0) || y.extent(1) != rows) {
    throw shape_error("SpMM output Y is " + std::to_string(y.extent(0)) + " x " +
                      std::to_string(y.extent(1)) + " (expected " + std::to_string(x.extent(0)) +
                      " x " + std::to_string(rows) + ": X's rows x the matrix's rows)");
  }
  if (bs != 0 && static_cast<index_t>(bs) != rows) {
    throw shape_error("bias has " + std::to_string(bs) + " values (expected " +
                      std::to_string(rows) + ", the matrix's rows, or none)");
  }
}

/// Scales pointer for the kernels: int8 row scales, else null.
template <class Matrix>
[[nodiscard]] const float* spmm_scales(const Matrix& a) noexcept {
  if constexpr (std::same_as<typename Matrix::value_type, std::int8_t>) {
    return a.scales().data();
  } else {
    return nullptr;
  }
}

/// Runs body(r0, r1) over [0, rows), split over the threads when work is large.
template <class F>
void spmm_split_rows(index_t rows, index_t work, const F& body) {
  if (num_threads() > 1 && work >= spmm_parallel_min_work && rows > 1) {
    parallel_for(rows, [&](index_t b, index_t e) { body(b, e); });
  } else {
    body(0, rows);
  }
}

/// X [M, K] row-major into X^T [(K + 1) x ld], ld = M rounded up to 16, the
/// padding lanes and the last row (read by stored zeros) +0. SIMD paths only.
inline aligned_vector<float> spmm_pack_xt(tensor_view<const float, 2> x, index_t ld) {
  const index_t m = x.extent(0), k = x.extent(1);
  aligned_vector<float> xt(static_cast<std::size_t>((k + 1) * ld));
#if QPRUNE_X86
  x86_avx2::transpose(x.data_handle(), m, k, k, xt.data(), ld);
#endif
  for (index_t c = 0; c < k; ++c) std::fill(xt.data() + c * ld + m, xt.data() + (c + 1) * ld, 0.0f);
  std::fill(xt.data() + k * ld, xt.data() + (k + 1) * ld, 0.0f);
  return xt;
}

/// The SIMD SpMM driver shared by the formats: packs X^T, gives each task one
/// decode buffer of `max_len` (rounded up to 16) entries and one 16 x ld result
/// tile, and calls run(io, r0, r1, wbuf, obuf, tile) on each task's rows.
template <class V, class Run>
void spmm_simd(tensor_view<const float, 2> x, index_t rows, index_t cols, index_t max_len,
               index_t nnz, const float* scales, std::span<const float> bias,
               tensor_view<float, 2> y, const Run& run) {
  const index_t m = x.extent(0);
  const index_t ld = (m + 15) / 16 * 16;
  const aligned_vector<float> xt = spmm_pack_xt(x, ld);
  spmm_io io{xt.data(), y.data_handle(), bias.empty() ? nullptr : bias.data(), scales};
  io.m = m;
  io.ld = ld;
  io.n = rows;
  io.k = cols;
  const index_t len = (max_len + 15) / 16 * 16;
  const index_t tasks =
      num_threads() > 1 && nnz * m >= spmm_parallel_min_work ? std::min<index_t>(num_threads(), rows) : 1;
  aligned_vector<float> wbuf(static_cast<std::size_t>(std::max<index_t>(1, tasks * len)));
  aligned_vector<std::int32_t> obuf(wbuf.size());
  aligned_vector<float> tiles(static_cast<std::size_t>(tasks * 16 * ld));
  const auto task = [&](index_t t) noexcept {
    run(io, t * rows / tasks, (t + 1) * rows / tasks, wbuf.data() + t * len, obuf.data() + t * len,
        tiles.data() + t * 16 * ld);
  };
  if (tasks > 1) {
    parallel_for(tasks, [&](index_t b, index_t e) {
      for (index_t t = b; t < e; ++t) task(t);
    });
  } else {
    task(0);
  }
}

#if QPRUNE_X86
/// AVX-512 SpMM for N:M patterns whose blocks of 16 slots span at most 32
/// columns (N a power of two, M <= 2N: 2:4, 4:8, 1:2, ...): no X^T; each task
/// decodes four matrix rows at a time (float values, window columns, nonzero
/// lanes) and runs them against 2 batch rows at a time (x86_avx512::spmm_nm_contiguous).
template <class V>
void spmm_nm_windows(tensor_view<const float, 2> x, const prune::packed_nm_matrix<V>& w,
                     tensor_view<float, 2> y, std::span<const float> bias, isa path) {
  static_cast<void>(path);
  const index_t rows = w.rows();
  const index_t slots = w.groups_per_row() * w.n();
  const index_t len = (slots + 15) / 16 * 16;
  spmm_io io{x.data_handle(), y.data_handle(), bias.empty() ? nullptr : bias.data(), spmm_scales(w)};
  io.m = x.extent(0);
  io.n = rows;
  io.k = w.cols();
  const spmm_nm_rows<V> a{w.values().data(), w.position_bytes().data(), w.position_bytes().size(), w.n(), w.m(),
                          w.index_bits(), slots, w.cols()};
  const index_t tasks =
      num_threads() > 1 && w.slot_count() * io.m >= spmm_parallel_min_work ? std::min<index_t>(num_threads(), rows) : 1;
  constexpr index_t pass = x86_avx512::spmm_nm_rows_per_pass;
  const auto per_task = static_cast<std::size_t>(pass * len);
  const auto kper_task = static_cast<std::size_t>(pass * (len / 16));
  aligned_vector<float> wbuf(std::max<std::size_t>(1, static_cast<std::size_t>(tasks) * per_task));
  aligned_vector<std::int32_t> cbuf(wbuf.size());
  aligned_vector<std::uint16_t> kbuf(std::max<std::size_t>(1, static_cast<std::size_t>(tasks) * kper_task));
  const auto task = [&](index_t t) noexcept {
    x86_avx512::nm_decoded d[pass];
    for (index_t q = 0; q < pass; ++q) {
      const auto o = static_cast<std::size_t>(t) * per_task + static_cast<std::size_t>(q * len);
      const auto ko = static_cast<std::size_t>(t) * kper_task + static_cast<std::size_t>(q * (len / 16));
      d[q] = {wbuf.data() + o, cbuf.data() + o, kbuf.data() + ko};
    }
    x86_avx512::spmm_nm_contiguous(a, io, t * rows / tasks, (t + 1) * rows / tasks, d);
  };
  if (tasks > 1) {
    parallel_for(tasks, [&](index_t b, index_t e) {
      for (index_t t = b; t < e; ++t) task(t);
    });
  } else {
    task(0);
  }
}
#endif

/// True when the SIMD paths can take a matrix of `cols` columns and batch `m`
/// (m = 1: SpMV, whose int32 lane indices are columns; SpMM: offsets (cols + 1) * ld).
[[nodiscard]] inline bool spmm_simd_fits(isa path, index_t cols, index_t m) noexcept {
  if (!QPRUNE_X86 || path == isa::scalar) return false;
  if (cols >= spmm_simd_max_index) return false;
  const index_t ld = (m + 15) / 16 * 16;
  return m == 1 || (cols + 1) * ld <= index_t{0x7fffffff};
}

}  // namespace detail

/// y = W x (+ bias): y[N] from the CSR matrix W [N, K] and x[K].
/// Numerics (the lane order, reference::spmv_lanes): row r's stored entries in
/// ascending column order carry positions j = 0, 1, ...; with p[0..15] = +0,
///   for each entry with value a != 0:   p[j % 16] = fma(a, x_c, p[j % 16])
///   p[i] += p[i+8] (i < 8); p[i] += p[i+4] (i < 4); p[i] += p[i+2] (i < 2); sum = p[0] + p[1]
///   fp32 / fp16 (widened exactly): y_r = sum + b_r;  int8 (a = code q): y_r = fma(s_r, sum, b_r)
/// (b_r = +0 without a bias). Stored zeros never touch x, so a NaN / inf x_c
/// reaches exactly the rows holding a nonzero value in column c. Every
/// instruction set and thread count gives the same bits (NaN payloads aside).
/// `bias`: rows values or empty. `path`: the instruction set (default: the
/// active one); throws config_error if the CPU cannot run it.
/// Throws shape_error unless x.size() == cols() and y.size() == rows().
/// Precondition: y does not overlap x or bias. No allocation.
template <prune::sparse_value V>
void spmv(const prune::csr_matrix<V>& w, std::span<const float> x, std::span<float> y,
          std::span<const float> bias = {}, isa path = active_isa()) {
  detail::spmv_check(w.rows(), w.cols(), x.size(), y.size(), bias.size());
  require_supported(path);
  if (w.rows() == 0) return;
  if (!detail::spmm_simd_fits(path, w.cols(), 1)) {
    static_cast<void>(reference::spmv_lanes(w, x, y, bias));
    return;
  }
#if QPRUNE_X86
  detail::spmm_io io{x.data(), y.data(), bias.empty() ? nullptr : bias.data(), detail::spmm_scales(w)};
  std::visit(
      [&](const auto& ci, const auto& rp) {
        using I = typename std::remove_cvref_t<decltype(ci)>::value_type;
        using P = typename std::remove_cvref_t<decltype(rp)>::value_type;
        const detail::spmm_csr_rows<V, I, P> a{w.values().data(), ci.data(), rp.data(), w.nnz()};
        detail::spmm_split_rows(w.rows(), w.nnz(), [&](index_t r0, index_t r1) {
          if (path == isa::avx2) {
            x86_avx2::spmv_csr(a, io, r0, r1);
          } else {
            x86_avx512::spmv_csr(a, io, r0, r1);
          }
        });
      },
      w.col_indices(), w.row_ptr());
#endif
}

/// y = W x (+ bias) for a packed N:M matrix (any 1 <= N < M <= 16). As the CSR
/// overload, with positions j the row's slots g * N + i (padding slots count
/// as positions and, holding 0, contribute nothing).
template <prune::sparse_value V>
void spmv(const prune::packed_nm_matrix<V>& w, std::span<const float> x, std::span<float> y,
          std::span<const float> bias = {}, isa path = active_isa()) {
  detail::spmv_check(w.rows(), w.cols(), x.size(), y.size(), bias.size());
  require_supported(path);
  if (w.rows() == 0) return;
  if (!detail::spmm_simd_fits(path, w.cols(), 1)) {
    static_cast<void>(reference::spmv_lanes(w, x, y, bias));
    return;
  }
#if QPRUNE_X86
  detail::spmm_io io{x.data(), y.data(), bias.empty() ? nullptr : bias.data(), detail::spmm_scales(w)};
  const detail::spmm_nm_rows<V> a{w.values().data(), w.position_bytes().data(),
                                  w.position_bytes().size(), w.n(), w.m(), w.index_bits(),
                                  w.groups_per_row() * w.n(), w.cols()};
  detail::spmm_split_rows(w.rows(), w.slot_count(), [&](index_t r0, index_t r1) {
    if (path == isa::avx2) {
      x86_avx2::spmv_nm(a, io, r0, r1);
    } else {
      x86_avx512::spmv_nm(a, io, r0, r1);
    }
  });
#endif
}

/// Y = X W^T (+ bias), the Dense layer product: X [M, K], W [N, K] in CSR,
/// Y [M, N], X and Y row-major; bias[r] is added to column r of Y.
/// Numerics: row i of Y is exactly spmv(W, row i of X) (the lane order above),
/// so results depend on neither the batch size, the instruction set nor the
/// thread count. SIMD paths transpose X once per call into a zero-padded X^T
/// [K + 1, M rounded up to 16] and run the batch in the vector lanes.
/// Throws shape_error unless X is [M, cols()] and Y is [M, rows()], bias has
/// rows() values or none; config_error if the CPU cannot run `path`.
/// Precondition: Y does not overlap X or bias. Allocation: X^T, and one
/// decoded row (8 bytes per entry) per thread.
template <prune::sparse_value V>
void spmm(tensor_view<const float, 2> x, const prune::csr_matrix<V>& w, tensor_view<float, 2> y,
          std::span<const float> bias = {}, isa path = active_isa()) {
  detail::spmm_check(w.rows(), w.cols(), x, y, bias.size());
  require_supported(path);
  const index_t m = x.extent(0);
  if (m == 0 || w.rows() == 0) return;
  if (m == 1) {
    spmv(w, std::span<const float>(x.data_handle(), static_cast<std::size_t>(w.cols())),
         std::span<float>(y.data_handle(), static_cast<std::size_t>(w.rows())), bias, path);
    return;
  }
  if (!detail::spmm_simd_fits(path, w.cols(), m)) {
    static_cast<void>(reference::spmm_lanes(x, w, y, bias));
    return;
  }
#if QPRUNE_X86
  std::visit(
      [&](const auto& ci, const auto& rp) {
        using I = typename std::remove_cvref_t<decltype(ci)>::value_type;
        using P = typename std::remove_cvref_t<decltype(rp)>::value_type;
        index_t max_len = 0;
        for (std::size_t r = 0; r + 1 < rp.size(); ++r) {
          max_len = std::max(max_len, static_cast<index_t>(rp[r + 1] - rp[r]));
        }
        const detail::spmm_csr_rows<V, I, P> a{w.values().data(), ci.data(), rp.data(), w.nnz()};
        detail::spmm_simd<V>(x, w.rows(), w.cols(), max_len, w.nnz(), detail::spmm_scales(w), bias, y,
                             [&](const detail::spmm_io& io, index_t r0, index_t r1, float* wb,
                                 std::int32_t* ob, float* tile) noexcept {
                               if (path == isa::avx2) {
                                 x86_avx2::spmm_csr(a, io, r0, r1, wb, ob, tile);
                               } else {
                                 x86_avx512::spmm_csr(a, io, r0, r1, wb, ob, tile);
                               }
                             });
      },
      w.col_indices(), w.row_ptr());
#endif
}

/// Y = X W^T (+ bias) for a packed N:M matrix. As the CSR overload (same
/// numerics: row i of Y is spmv of row i of X). On AVX-512, patterns with N a
/// power of two and M <= 2N (2:4, 4:8, 1:2, 8:16) read X in place (no X^T) and
/// allocate 4 decoded rows (10 bytes per slot) per thread instead.
template <prune::sparse_value V>
void spmm(tensor_view<const float, 2> x, const prune::packed_nm_matrix<V>& w,
          tensor_view<float, 2> y, std::span<const float> bias = {}, isa path = active_isa()) {
  detail::spmm_check(w.rows(), w.cols(), x, y, bias.size());
  require_supported(path);
  const index_t m = x.extent(0);
  if (m == 0 || w.rows() == 0) return;
  if (m == 1) {
    spmv(w, std::span<const float>(x.data_handle(), static_cast<std::size_t>(w.cols())),
         std::span<float>(y.data_handle(), static_cast<std::size_t>(w.rows())), bias, path);
    return;
  }
  if (!detail::spmm_simd_fits(path, w.cols(), m)) {
    static_cast<void>(reference::spmm_lanes(x, w, y, bias));
    return;
  }
#if QPRUNE_X86
  if (path != isa::avx2 && x86_avx512::nm_contiguous(w.n(), w.m())) {
    detail::spmm_nm_windows(x, w, y, bias, path);
    return;
  }
  const index_t slots = w.groups_per_row() * w.n();
  const detail::spmm_nm_rows<V> a{w.values().data(), w.position_bytes().data(),
                                  w.position_bytes().size(), w.n(), w.m(), w.index_bits(), slots,
                                  w.cols()};
  detail::spmm_simd<V>(x, w.rows(), w.cols(), slots, w.slot_count(), detail::spmm_scales(w), bias, y,
                       [&](const detail::spmm_io& io, index_t r0, index_t r1, float* wb,
                           std::int32_t* ob, float* tile) noexcept {
                         if (path == isa::avx2) {
                           x86_avx2::spmm_nm(a, io, r0, r1, wb, ob, tile);
                         } else {
                           x86_avx512::spmm_nm(a, io, r0, r1, wb, ob, tile);
                         }
                       });
#endif
}

}  // namespace qprune::kernels

// A small fixed thread pool for splitting a kernel's independent work items
// (blocks of output channels) over threads. Each item is computed by exactly
// one thread with the same arithmetic as on one thread, so results do not
// depend on the thread count.
//
// The count comes from set_num_threads(), else the environment variable
// QPRUNE_NUM_THREADS, else 1: qprune never starts threads unless asked.
// When the consumer compiles with OpenMP (_OPENMP defined), OpenMP's runtime
// is used instead of the pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "qprune/core/config.hpp"
#include "qprune/core/error.hpp"

namespace qprune::kernels {

namespace detail {

inline int env_threads() noexcept {
  const char* e = std::getenv("QPRUNE_NUM_THREADS");
  if (e == nullptr) return 1;
  const long v = std::strtol(e, nullptr, 10);
  return v >= 1 && v <= 256 ? static_cast<int>(v) : 1;
}

inline std::atomic<int>& thread_setting() noexcept {
  static std::atomic<int> n{env_threads()};
  return n;
}

/// A short busy-wait step (the x86 PAUSE hint, else a yield).
inline void spin_pause() noexcept {
#if QPRUNE_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

/// How many spin_pause() steps a thread polls before it sleeps on a condition
/// variable: about 50 microseconds, longer than a typical hand-off between
/// back-to-back kernel calls, short enough not to matter when nothing comes.
inline constexpr int spin_steps = 1000;

/// Persistent workers; run() hands each of them a share of [0, items).
class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }

  /// Calls fn(begin, end) on `threads` contiguous chunks of [0, items), the
  /// calling thread taking the first chunk. Blocks until all are done.
  void run(index_t items, int threads, const std::function<void(index_t, index_t)>& fn) {
    std::unique_lock<std::mutex> run_lock(run_mutex_);  // one parallel region at a time
    ensure_workers(threads - 1);
    const index_t chunk = (items + threads - 1) / threads;
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = &fn;
      items_ = items;
      chunk_ = chunk;
      active_ = threads - 1;
      pending_.store(threads - 1);
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    fn(0, std::min(chunk, items));
    // Workers that were spinning finish without a sleep/wake round trip; poll
    // briefly for them before sleeping.
    for (int i = 0; i < spin_steps && pending_.load(std::memory_order_acquire) != 0; ++i) spin_pause();
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return pending_.load() == 0; });
    fn_ = nullptr;
  }

  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      ++generation_;
      published_.store(generation_, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  thread_pool() = default;

  void ensure_workers(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      const int id = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, id] { loop(id); });
    }
  }

  void loop(int id) {
    unsigned long seen = 0;
    for (;;) {
      const std::function<void(index_t, index_t)>* fn = nullptr;
      index_t begin = 0, end = 0;
      for (int i = 0; i < spin_steps && published_.load(std::memory_order_acquire) == seen; ++i) {
        spin_pause();
      }
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (id > active_) continue;
        fn = fn_;
        begin = std::min(chunk_ * id, items_);
        end = std::min(begin + chunk_, items_);
      }
      if (begin < end) (*fn)(begin, end);
      std::lock_guard<std::mutex> lk(m_);
      if (pending_.fetch_sub(1) == 1) done_cv_.notify_one();
    }
  }

  std::mutex run_mutex_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(index_t, index_t)>* fn_ = nullptr;
  index_t items_ = 0, chunk_ = 0;
  int active_ = 0;
  std::atomic<int> pending_{0};  // written under m_, polled without it
  unsigned long generation_ = 0;
  std::atomic<unsigned long> published_{0};  // generation_, readable without m_
  bool stop_ = false;
};

}  // namespace detail

/// Sets how many threads the big kernels use (1 = the calling thread only).
/// Throws config_error outside [1, 256].
inline void set_num_threads(int n) {
  if (n < 1 || n > 256) {
    throw config_error("thread count " + std::to_string(n) + " is invalid (expected 1 to 256)");
  }
  detail::thread_setting().store(n);
}

/// The thread count kernels use now.
inline int num_threads() noexcept { return detail::thread_setting().load(); }

/// Runs fn(begin, end) over [0, items) split into at most num_threads()
/// contiguous chunks (fewer when items is small); sequential when one thread.
inline void parallel_for(index_t items, const std::function<void(index_t, index_t)>& fn) {
  const int threads = static_cast<int>(std::min<index_t>(num_threads(), items));
  if (threads <= 1) {
    if (items > 0) fn(0, items);
    return;
  }
#ifdef _OPENMP
  const index_t chunk = (items + threads - 1) / threads;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    const index_t b = std::min(chunk * t, items), e = std::min(b + chunk, items);
    if (b < e) fn(b, e);
  }
#else
  detail::thread_pool::instance().run(items, threads, fn);
#endif
}

namespace detail {
/// The default row preparation of split_gemm_work: nothing.
struct no_row_prep {
  void operator()(index_t, index_t) const noexcept {}
};

/// Splits an M x N x K GEMM whose output channels come in blocks of `block`
/// over num_threads() threads when the product is large enough to pay for it:
/// f(row_begin, row_end, block_begin, block_end). Work is split by channel
/// blocks when there are enough of them to balance, else by rows (in
/// multiples of 8, the micro-kernel height), so a layer with few output
/// channels (a conv with 64 filters) still uses every thread; rows also win
/// when M > N and they balance as well (each thread then reads its part of A
/// and all of B, less than all of A). prep(row_begin, row_end) readies the
/// input rows f will read, before f reads them: once for all rows before a
/// channel split, and by each thread for its own rows in a row split.
template <class F, class P = no_row_prep>
void split_gemm_work(index_t m, index_t n, index_t k, index_t block, const F& f, const P& prep = {}) {
  const index_t blocks = (n + block - 1) / block;
  const index_t threads = num_threads();
  if (threads <= 1 || m * n * k < (index_t{1} << 21)) {
    prep(0, m);
    f(0, m, 0, blocks);
    return;
  }
  // Balance: the busiest thread's share against the ideal n / threads (or
  // m / threads).
  const index_t row_chunks = (m + 7) / 8;
  const double by_blocks =
      static_cast<double>(n) / static_cast<double>(((blocks + threads - 1) / threads) * block * threads);
  const double by_rows =
      static_cast<double>(m) / static_cast<double>(((row_chunks + threads - 1) / threads) * 8 * threads);
  const bool rows_read_less = m > n && by_rows + 0.05 >= by_blocks;
  if (m < 16 * threads || (!rows_read_less && by_blocks + 0.05 >= by_rows)) {
    prep(0, m);
    parallel_for(blocks, [&](index_t b, index_t e) { f(0, m, b, e); });
  } else {
    parallel_for(row_chunks, [&](index_t b, index_t e) {
      const index_t r0 = b * 8, r1 = std::min(m, e * 8);
      prep(r0, r1);
      f(r0, r1, 0, blocks);
    });
  }
}
}  // namespace detail

}  // namespace qprune::kernels

// Two runtimes behind one parallel_for:
// - OpenMP (the default): a region runs on the OpenMP team torch's own ops use. Torch's wheel
//   ships libgomp under the soname libgomp.so.1, so the loader gives this module the copy torch
//   already loaded: one team per process. Its workers spin after each of torch's float layers,
//   so a second pool's worker had to wait for that core during the engine call that follows;
//   on the shared team the spinning worker takes our first task at once.
// - Our own persistent pool (`ThreadPool::kOwn`): workers spin briefly after a region, then
//   sleep on a condition variable, yielding their CPU on every check after a few pause-spins.
//   The caller waits for the TASKS of its region, never for workers: a worker that wakes late
//   finds no task left. A forked child always uses it: libgomp's team does not survive fork()
//   (a region on it waits forever for the parent's workers).
#include "xnorlab/threadpool.h"
#include <omp.h>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace xnorlab {
namespace {

constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int default_threads() {
  const char* env = std::getenv("XNORLAB_THREADS");
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 256) return static_cast<int>(v);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw > 256 ? 256 : hw);
}

// One parallel region: tasks are claimed with `next` and counted in `done`.
struct Region {
  const std::function<void(int64_t)>* body = nullptr;
  int64_t tasks = 0;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex error_mutex;
  std::exception_ptr error;
};

// Set while this thread runs tasks of a region.
thread_local bool t_inside_region = false;
// region_thread_place(): OpenMP's thread number in a team's region, 1 + index on our workers.
thread_local int t_place = 0;
// Set while a SerialScope lives on this thread.
thread_local bool t_serial = false;
std::atomic<ThreadPool> g_runtime{ThreadPool::kOpenMP};
std::atomic<bool> g_forked_child{false};

struct InsideRegion {
  InsideRegion() { t_inside_region = true; }
  ~InsideRegion() { t_inside_region = false; }
  InsideRegion(const InsideRegion&) = delete;
  InsideRegion& operator=(const InsideRegion&) = delete;
};

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {}

  int threads() const { return threads_.load(); }
  std::mutex& region_mutex() { return region_mutex_; }

  // Workers are never destroyed by a resize: a smaller count parks the extra ones (they skip
  // regions), a larger one reuses them before creating more: fresh threads start on the
  // caller's CPU until the kernel moves them, which slows the first regions after a resize.
  void resize(int threads) {
    std::lock_guard<std::mutex> region(region_mutex_);
    threads_.store(threads);
  }

  void run(int64_t tasks, const std::function<void(int64_t)>& body) {
    // A parallel_for inside a task of a region (nested) runs on its own thread: the pool has
    // one region at a time, and waiting for it from inside it would deadlock. So does one
    // inside a SerialScope.
    if (tasks <= 1 || t_inside_region || t_serial) {
      for (int64_t t = 0; t < tasks; ++t) body(t);
      return;
    }
    std::lock_guard<std::mutex> guard(region_mutex_);
    if (threads_.load() <= 1) {
      for (int64_t t = 0; t < tasks; ++t) body(t);
      return;
    }
    if (g_runtime.load() == ThreadPool::kOpenMP) {
      run_openmp(tasks, body);
      return;
    }
    start_workers();
    auto region = std::make_shared<Region>();
    region->body = &body;
    region->tasks = tasks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = region;
      generation_.fetch_add(1);
    }
    cv_work_.notify_all();
    work(*region);
    wait_done(*region);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_.reset();
    }
    if (region->error) std::rethrow_exception(region->error);
  }

 private:
  // Tasks are claimed from the region's counter as in our pool, so a thread that joins late
  // takes fewer; no exception leaves the OpenMP block (work() keeps the first one).
  void run_openmp(int64_t tasks, const std::function<void(int64_t)>& body) {
    Region r;
    r.body = &body;
    r.tasks = tasks;
    const int n = static_cast<int>(std::min<int64_t>(threads_.load(), tasks));
#pragma omp parallel num_threads(n)
    {
      t_place = omp_get_thread_num();
      work(r);
      t_place = 0;
    }
    if (r.error) std::rethrow_exception(r.error);
  }

  void work(Region& r) {
    const InsideRegion inside;
    for (;;) {
      const int64_t t = r.next.fetch_add(1);
      if (t >= r.tasks) return;
      try {
        (*r.body)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(r.error_mutex);
        if (!r.error) r.error = std::current_exception();
      }
      if (r.done.fetch_add(1) + 1 == r.tasks) {
        std::lock_guard<std::mutex> lock(mutex_);
        cv_done_.notify_all();
      }
    }
  }

  void wait_done(Region& r) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (r.done.load() != r.tasks) {
      if (std::chrono::steady_clock::now() > until) {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_done_.wait(lock, [&] { return r.done.load() == r.tasks; });
        return;
      }
      cpu_relax();
    }
  }

  // `seen` is the generation at creation time, read before the region that starts it.
  // Worker `index` takes part in a region only while index + 1 < threads (else it is parked).
  void worker_loop(int index, uint64_t seen) {
    t_place = index + 1;
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while (generation_.load() == seen) {
        if (std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> lock(mutex_);
          cv_work_.wait(lock, [&] { return generation_.load() != seen; });
          break;
        }
        if (++spins > 64) {
          sched_yield();
        } else {
          cpu_relax();
        }
      }
      std::shared_ptr<Region> region;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        seen = generation_.load();
        region = current_;
      }
      if (region && index + 1 < threads_.load()) work(*region);
    }
  }

  // Create the workers this thread count needs that do not exist yet (called under
  // region_mutex_, before the region's generation is published).
  void start_workers() {
    const int wanted = threads_.load() - 1;
    const uint64_t now = generation_.load();
    for (int i = static_cast<int>(workers_.size()); i < wanted; ++i) {
      workers_.emplace_back([this, i, now] { worker_loop(i, now); });
    }
  }

  std::atomic<int> threads_;
  std::mutex region_mutex_, mutex_;
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::shared_ptr<Region> current_;
};

std::atomic<Pool*> g_pool{nullptr};

// Pools are never destroyed: no join during interpreter shutdown. A forked child gets a fresh
// pool: the parent's workers do not exist there, and its mutexes and condition variables may
// hold their state (a broadcast would wait for those workers forever); the old one is leaked.
Pool& pool() {
  static const bool created = [] {
    g_pool.store(new Pool(default_threads()));
    pthread_atfork(nullptr, nullptr, [] {
      g_pool.store(new Pool(g_pool.load()->threads()));
      g_runtime.store(ThreadPool::kOwn);
      g_forked_child.store(true);
    });
    return true;
  }();
  (void)created;
  return *g_pool.load();
}

}  // namespace

int region_thread_place() { return t_place; }
int get_threads() { return t_serial ? 1 : pool().threads(); }

SerialScope::SerialScope() : before_(t_serial) { t_serial = true; }
SerialScope::~SerialScope() { t_serial = before_; }

void set_threads(int threads) {
  if (threads < 1 || threads > 256) {
    throw std::invalid_argument("threads must be in 1..256, got " + std::to_string(threads));
  }
  pool().resize(threads);
}

ThreadPool get_thread_pool() { return g_runtime.load(); }

void set_thread_pool(ThreadPool runtime) {
  if (runtime == ThreadPool::kOpenMP && g_forked_child.load()) {
    throw std::invalid_argument(
        "this process is a forked child: an OpenMP team does not survive fork(), so the "
        "engine keeps its own pool");
  }
  std::lock_guard<std::mutex> region(pool().region_mutex());
  g_runtime.store(runtime);
}

void parallel_for(int64_t tasks, const std::function<void(int64_t)>& body) {
  pool().run(tasks, body);
}

}  // namespace xnorlab

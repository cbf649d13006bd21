// Persistent thread pool: workers spin briefly after a region (back-to-back layer calls wake
// them without a syscall), then sleep on a condition variable. After a few pause-spins a
// waiting worker yields its CPU on every check: in a whole model, torch's own threads run the
// float layers between our calls, and a worker spinning on pause alone takes a core from them.
// The caller waits for the TASKS of its region, never for workers: a worker that wakes late
// finds no task left and goes back to sleep, so an oversubscribed machine cannot stall a call
// on a descheduled worker.
#include "xnorlab/threadpool.h"

#include <pthread.h>
#include <sched.h>

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
// Set while a SerialScope lives on this thread.
thread_local bool t_serial = false;

struct InsideRegion {
  InsideRegion() { t_inside_region = true; }
  ~InsideRegion() { t_inside_region = false; }
  InsideRegion(const InsideRegion&) = delete;
  InsideRegion& operator=(const InsideRegion&) = delete;
};

class Pool {
 public:
  Pool() : threads_(default_threads()) {}

  int threads() const { return threads_.load(); }

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

  // After fork() the child has no workers: forget them without joining.
  void forget_after_fork() {
    workers_ = new std::vector<std::thread>();  // the old vector is leaked on purpose
  }

 private:
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
    for (int i = static_cast<int>(workers_->size()); i < wanted; ++i) {
      workers_->emplace_back([this, i, now] { worker_loop(i, now); });
    }
  }

  std::atomic<int> threads_;
  std::mutex region_mutex_, mutex_;
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread>* workers_ = new std::vector<std::thread>();
  std::atomic<uint64_t> generation_{0};
  std::shared_ptr<Region> current_;
};

Pool& pool() {
  static Pool* instance = [] {
    auto* p = new Pool();  // never destroyed: no join during interpreter shutdown
    pthread_atfork(nullptr, nullptr, [] { pool().forget_after_fork(); });
    return p;
  }();
  return *instance;
}

}  // namespace

int get_threads() { return t_serial ? 1 : pool().threads(); }

SerialScope::SerialScope() : before_(t_serial) { t_serial = true; }
SerialScope::~SerialScope() { t_serial = before_; }

void set_threads(int threads) {
  if (threads < 1 || threads > 256) {
    throw std::invalid_argument("threads must be in 1..256, got " + std::to_string(threads));
  }
  pool().resize(threads);
}

void parallel_for(int64_t tasks, const std::function<void(int64_t)>& body) {
  pool().run(tasks, body);
}

}  // namespace xnorlab

// Persistent thread pool: workers spin briefly after a region (back-to-back layer calls wake
// them without a syscall), then sleep on a condition variable.
#include "xnorlab/threadpool.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace xnorlab {
namespace {

constexpr auto kSpin = std::chrono::microseconds(60);

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

class Pool {
 public:
  Pool() : threads_(default_threads()) {}
  ~Pool() { stop_workers(); }

  int threads() const { return threads_; }

  void resize(int threads) {
    std::lock_guard<std::mutex> region(region_mutex_);
    stop_workers();
    threads_ = threads;
  }

  void run(int64_t tasks, const std::function<void(int64_t)>& body) {
    std::lock_guard<std::mutex> region(region_mutex_);
    if (threads_ <= 1 || tasks <= 1) {
      for (int64_t t = 0; t < tasks; ++t) body(t);
      return;
    }
    start_workers();
    body_ = &body;
    tasks_ = tasks;
    next_.store(0);
    error_ = nullptr;
    pending_.store(static_cast<int>(workers_->size()));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1);
    }
    cv_work_.notify_all();
    work();
    wait_done();
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  // After fork() the child has no workers: forget them without joining.
  void forget_after_fork() {
    workers_ = new std::vector<std::thread>();  // the old vector is leaked on purpose
    stop_flag_.store(false);
  }

 private:
  void work() {
    for (;;) {
      const int64_t t = next_.fetch_add(1);
      if (t >= tasks_) return;
      try {
        (*body_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void wait_done() {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (pending_.load() != 0) {
      if (std::chrono::steady_clock::now() > until) {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_done_.wait(lock, [&] { return pending_.load() == 0; });
        return;
      }
      cpu_relax();
    }
  }

  // `seen` is the generation at creation time, read before the region that starts it.
  void worker_loop(uint64_t seen) {
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (generation_.load() == seen && !stop_flag_.load()) {
        if (std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> lock(mutex_);
          cv_work_.wait(lock, [&] { return generation_.load() != seen || stop_flag_.load(); });
          break;
        }
        cpu_relax();
      }
      if (stop_flag_.load()) return;
      seen = generation_.load();
      work();
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        cv_done_.notify_one();
      }
    }
  }

  void start_workers() {
    if (!workers_->empty()) return;
    stop_flag_.store(false);
    const uint64_t now = generation_.load();
    for (int i = 1; i < threads_; ++i) workers_->emplace_back([this, now] { worker_loop(now); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_flag_.store(true);
    }
    cv_work_.notify_all();
    for (auto& w : *workers_) w.join();
    workers_->clear();
  }

  int threads_;
  std::mutex region_mutex_, mutex_, error_mutex_;
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread>* workers_ = new std::vector<std::thread>();
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_flag_{false};
  const std::function<void(int64_t)>* body_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::exception_ptr error_;
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

int get_threads() { return pool().threads(); }

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

// parallel_for on torch's OpenMP team (shared through libgomp.so.1) or on our own persistent
// std::thread pool; src/threadpool.cpp says when each is used and why.
#pragma once
#include <cstdint>
#include <functional>

namespace xnorlab {

// Threads used by parallel_for (>= 1). Default: XNORLAB_THREADS, else hardware concurrency;
// 1 on a thread inside a SerialScope.
int get_threads();
// Resize the pool (1..256). Workers are created lazily and kept alive between calls.
void set_threads(int threads);

enum class ThreadPool : int { kOpenMP = 0, kOwn = 1 };
// The runtime parallel_for uses; a forked child switches to kOwn (see threadpool.cpp).
ThreadPool get_thread_pool();
// Waits for a running region to finish before switching.
void set_thread_pool(ThreadPool runtime);

// Run body(task) for task in [0, tasks) on the pool; the calling thread takes part. Tasks are
// handed out dynamically (atomic counter). Calls are serialized (one parallel region at a time).
// The first exception thrown by a body is rethrown in the caller after all tasks finished.
void parallel_for(int64_t tasks, const std::function<void(int64_t)>& body);

// This thread's place in the running region: 0 for the thread that called parallel_for (and
// outside a region), 1.. for the pool's workers. A place keeps its thread from one region to
// the next, so work split by place finds the data its thread wrote last time in that core's cache.
int region_thread_place();

// While it lives, parallel work started on this thread runs on this thread alone (get_threads()
// is 1 here): a caller that measured its work to run faster without the pool's workers.
class SerialScope {
 public:
  SerialScope();
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool before_;
};

}  // namespace xnorlab

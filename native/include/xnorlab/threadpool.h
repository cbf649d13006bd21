// A persistent std::thread pool (no OpenMP: torch ships its own runtime, two would fight).
#pragma once
#include <cstdint>
#include <functional>

namespace xnorlab {

// Threads used by parallel_for (>= 1). Default: XNORLAB_THREADS, else hardware concurrency;
// 1 on a thread inside a SerialScope.
int get_threads();
// Resize the pool (1..256). Workers are created lazily and kept alive between calls.
void set_threads(int threads);

// Run body(task) for task in [0, tasks) on the pool; the calling thread takes part. Tasks are
// handed out dynamically (atomic counter). Calls are serialized (one parallel region at a time).
// The first exception thrown by a body is rethrown in the caller after all tasks finished.
void parallel_for(int64_t tasks, const std::function<void(int64_t)>& body);

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

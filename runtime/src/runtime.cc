#include "dynrpc/runtime.h"

#include <sched.h>

#include <algorithm>

namespace dynrpc {
namespace {

// `threads`, or when it is <= 0 the CPUs this process may run on (its
// affinity mask: a container's cpuset, taskset), at least 1.
int ResolveThreads(int threads) {
  if (threads > 0) return threads;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

// One thread: the io_context is told so, and spares itself the hand-offs
// between threads.
Runtime::Runtime(int threads)
    : io_context_(ResolveThreads(threads)), work_(io_context_.get_executor()) {
  threads = ResolveThreads(threads);
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { io_context_.run(); });
  }
}

Runtime::~Runtime() {
  work_.reset();
  io_context_.stop();
  for (std::thread& t : threads_) t.join();
}

}  // namespace dynrpc

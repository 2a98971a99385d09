#include "dynrpc/runtime.h"

#include <algorithm>

namespace dynrpc {

Runtime::Runtime(int threads) : work_(io_context_.get_executor()) {
  if (threads <= 0) {
    threads = std::max(1u, std::thread::hardware_concurrency());
  }
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

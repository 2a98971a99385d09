// The threads that run dynrpc's coroutines.
//
// Example:
//   dynrpc::Runtime runtime;               // one thread per core
//   dynrpc::Server server(runtime.executor());
//
// A process normally has one Runtime. Servers and channels created on its
// executor must be destroyed before it.
#ifndef DYNRPC_RUNTIME_H_
#define DYNRPC_RUNTIME_H_

#include <optional>
#include <thread>
#include <vector>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"

namespace dynrpc {

// Owns an io_context and the threads that run it, from construction until
// destruction (which stops the context and joins the threads).
class Runtime {
 public:
  // `threads` <= 0: std::thread::hardware_concurrency() (at least 1).
  explicit Runtime(int threads = 0);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  boost::asio::any_io_executor executor() {
    return io_context_.get_executor();
  }
  boost::asio::io_context& io_context() { return io_context_; }


 private:
  boost::asio::io_context io_context_;
  std::optional<
      boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      work_;
  std::vector<std::thread> threads_;
};

}  // namespace dynrpc

#endif  // DYNRPC_RUNTIME_H_

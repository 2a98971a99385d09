// The threads that run dynrpc's coroutines.
//
// Example:
//   dynrpc::Runtime runtime;               // one thread per CPU it may use
//   dynrpc::Server server(runtime.executor());
//
// A process normally has one Runtime. Servers and channels created on its
// executor must be destroyed before it.
#ifndef DYNRPC_RUNTIME_H_
#define DYNRPC_RUNTIME_H_

#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_future.hpp"

namespace dynrpc {

// Owns an io_context and the threads that run it, from construction until
// destruction (which stops the context and joins the threads).
class Runtime {
 public:
  // `threads` <= 0: one per CPU this process may run on (its affinity mask,
  // so a container's cpuset or taskset counts), at least 1.
  explicit Runtime(int threads = 0);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  boost::asio::any_io_executor executor() {
    return io_context_.get_executor();
  }
  boost::asio::io_context& io_context() { return io_context_; }

  // Runs `op` on this runtime and blocks until it ends, returning its
  // result (or rethrowing its exception): how plain main() calls a
  // coroutine, such as a client's conversation with its stubs.
  //   absl::Status s = runtime.Run(Chat(stub));
  // Not from the runtime's own threads (it would wait for itself).
  template <typename T>
  T Run(boost::asio::awaitable<T> op) {
    return boost::asio::co_spawn(io_context_, std::move(op),
                                 boost::asio::use_future)
        .get();
  }


 private:
  boost::asio::io_context io_context_;
  std::optional<
      boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      work_;
  std::vector<std::thread> threads_;
};

}  // namespace dynrpc

#endif  // DYNRPC_RUNTIME_H_

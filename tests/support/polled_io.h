// An io_context a test drives by hand on its own thread: Poll() runs what is
// ready and returns, so "still waiting" is an observation, not a guess.
#ifndef DYNRPC_TESTS_SUPPORT_POLLED_IO_H_
#define DYNRPC_TESTS_SUPPORT_POLLED_IO_H_

#include <chrono>
#include <future>
#include <utility>

#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/use_future.hpp"

namespace dynrpc::testing {

class PolledIo {
 public:
  // Starts `op` and runs it until it waits (or ends).
  template <typename T>
  std::future<T> Start(boost::asio::awaitable<T> op) {
    auto f = boost::asio::co_spawn(io_, std::move(op), boost::asio::use_future);
    Poll();
    return f;
  }
  void Poll() {
    io_.restart();
    io_.poll();
  }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
};

// Whether `f` has its value now, without waiting.
template <typename T>
bool Ready(const std::future<T>& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

}  // namespace dynrpc::testing

#endif  // DYNRPC_TESTS_SUPPORT_POLLED_IO_H_

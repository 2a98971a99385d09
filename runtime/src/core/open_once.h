// The opening of a client stream, shared by its first operations: a stream
// opens on its first Read(), Write() or Finish(), and a reader and a writer
// coroutine may start at once. The core's one copy, for every plane.
#ifndef DYNRPC_RUNTIME_SRC_CORE_OPEN_ONCE_H_
#define DYNRPC_RUNTIME_SRC_CORE_OPEN_ONCE_H_

#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/deadline.h"

namespace dynrpc::internal {

// Thread-safe. The first caller of Run() opens; callers that come while it
// does wait for it; every caller, then and later, gets the opening's status.
class OpenOnce {
 public:
  // Runs `(self->*open)()` once. A waiter whose own coroutine is cancelled
  // gets CANCELLED (the opening goes on). The opener's coroutine cancelled
  // (Asio) cancels the call, as cancelling any operation of a client stream
  // does: every waiter then gets that status. If the opening coroutine is
  // destroyed before it ends, the status is CANCELLED: nobody waits forever.
  template <typename T>
  boost::asio::awaitable<absl::Status> Run(
      T* self, boost::asio::awaitable<absl::Status> (T::*open)()) {
    namespace asio = boost::asio;
    asio::any_io_executor executor = co_await asio::this_coro::executor;
    std::shared_ptr<Signal> wait;
    {
      std::lock_guard lock(mu_);
      if (status_) co_return *status_;
      if (opening_) {
        wait = std::make_shared<Signal>(executor, 1);
        waiters_.push_back(wait);
      } else {
        opening_ = true;
      }
    }
    if (wait) {
      auto [ec] = co_await wait->async_receive(
          asio::as_tuple(asio::use_awaitable));
      if (ec) co_return absl::CancelledError("cancelled while the call opened");
      std::lock_guard lock(mu_);
      co_return *status_;
    }
    absl::Status status =
        absl::CancelledError("opening the call was cancelled");
    {
      absl::Cleanup done = [this, &status] { Done(status); };
      status = co_await (self->*open)();
    }
    co_return status;
  }

 private:
  void Done(const absl::Status& status) {
    std::vector<std::shared_ptr<Signal>> waiters;
    {
      std::lock_guard lock(mu_);
      status_ = status;
      waiters.swap(waiters_);
    }
    for (auto& w : waiters) w->try_send(boost::system::error_code{});
  }

  std::mutex mu_;
  bool opening_ = false;
  std::optional<absl::Status> status_;
  std::vector<std::shared_ptr<Signal>> waiters_;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_OPEN_ONCE_H_

// Runs an operation against a deadline, the same way on both sides of a call.
#ifndef DYNRPC_RUNTIME_SRC_CORE_DEADLINE_H_
#define DYNRPC_RUNTIME_SRC_CORE_DEADLINE_H_

#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/deferred.hpp"
#include "boost/asio/experimental/parallel_group.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// Runs `op` on a new strand of the caller's executor; if `deadline` passes
// first, cancels `op` (terminal cancellation), waits for it to unwind and
// yields DEADLINE_EXCEEDED with `message`. Cancelling the awaiting coroutine
// cancels `op` too. The strand serializes the op with the cancellation the
// timer emits, so planes need not guard against it.
template <typename T>
boost::asio::awaitable<absl::StatusOr<T>> WithDeadline(
    boost::asio::awaitable<absl::StatusOr<T>> op, Clock::time_point deadline,
    std::string message) {
  namespace asio = boost::asio;
  if (Clock::now() >= deadline) {
    co_return absl::DeadlineExceededError(std::move(message));
  }
  auto strand = asio::make_strand(co_await asio::this_coro::executor);
  asio::steady_timer timer(strand, deadline);
  auto [order, exception, result, timer_ec] =
      co_await asio::experimental::make_parallel_group(
          asio::co_spawn(strand, std::move(op), asio::deferred),
          timer.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(),
                      asio::use_awaitable);
  if (order[0] == 0) {
    if (exception) std::rethrow_exception(exception);
    co_return std::move(result);
  }
  co_return absl::DeadlineExceededError(std::move(message));
}

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_DEADLINE_H_

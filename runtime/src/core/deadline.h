// Runs an operation against a deadline and a caller's cancellation, the same
// way on both sides of a call.
#ifndef DYNRPC_RUNTIME_SRC_CORE_DEADLINE_H_
#define DYNRPC_RUNTIME_SRC_CORE_DEADLINE_H_

#include <array>
#include <tuple>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/deferred.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "boost/asio/experimental/parallel_group.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/context_access.h"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// A thread-safe wake-up: try_send() from any thread, async_receive() to
// wait (capacity 1: a signal sent before the wait is kept). WithDeadline
// takes one to cancel the operation it runs.
using Signal = boost::asio::experimental::concurrent_channel<void(
    boost::system::error_code)>;

// The status for an exception that ended `what` (a phrase: "handler of
// /pkg.S/M"): Asio's operation_aborted, the way a cancelled coroutine ends,
// is CANCELLED; anything else `otherwise`. Exceptions never cross a dynrpc
// API.
absl::Status StatusFromException(
    std::exception_ptr e, std::string_view what,
    absl::StatusCode otherwise = absl::StatusCode::kInternal);

// Runs `op` on a new strand of the caller's executor and yields its result
// (R is absl::StatusOr<T> or CallResult: anything built from a Status),
// unless:
//  - `deadline` passes first: `op` gets terminal cancellation, is waited for,
//    and the result is DEADLINE_EXCEEDED with `message`;
//  - the awaiting coroutine is cancelled, `context` (may be null) is
//    TryCancel()ed, or `cancel` (may be null) is signalled: the same, with
//    CANCELLED.
// Every cancellation `op` sees is delivered on its strand, so a plane's
// coroutine never races with it. An exception from `op` becomes a status.
template <typename R>
boost::asio::awaitable<R> WithDeadline(boost::asio::awaitable<R> op,
                                       Clock::time_point deadline,
                                       std::string message,
                                       ClientContext* context = nullptr,
                                       std::shared_ptr<Signal> cancel =
                                           nullptr) {
  namespace asio = boost::asio;
  if (Clock::now() >= deadline) {
    co_return R(absl::DeadlineExceededError(std::move(message)));
  }
  auto strand = asio::make_strand(co_await asio::this_coro::executor);
  asio::steady_timer timer(strand, deadline);
  if (cancel == nullptr) cancel = std::make_shared<Signal>(strand, 1);
  if (context != nullptr &&
      !ContextAccess::SetCanceller(*context, [cancel] {
        cancel->try_send(boost::system::error_code{});
      })) {
    co_return R(absl::CancelledError("call cancelled by the caller"));
  }
  using Outcome =
      std::tuple<std::array<std::size_t, 3>, std::exception_ptr, R,
                 boost::system::error_code, boost::system::error_code>;
  // The race runs on the strand, so its launch and its completion never
  // overlap: Asio 1.81's parallel_group may still be emitting cancellations
  // into its operations (the timer, `cancel`'s channel) on the launching
  // thread after the group completed on another, and by then the caller
  // could have destroyed them. bind_executor: co_spawn delivers cancellation
  // to `op` through its strand instead of on the canceller's thread.
  auto race = [](asio::awaitable<R> op, asio::strand<asio::any_io_executor> on,
                 asio::steady_timer& timer,
                 Signal& cancel) -> asio::awaitable<Outcome> {
    co_return co_await asio::experimental::make_parallel_group(
        asio::co_spawn(on, std::move(op), asio::bind_executor(on, asio::deferred)),
        timer.async_wait(asio::deferred), cancel.async_receive(asio::deferred))
        .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  };
  auto [order, exception, result, timer_ec, cancel_ec] =
      co_await asio::co_spawn(strand, race(std::move(op), strand, timer, *cancel),
                              asio::use_awaitable);
  if (context != nullptr) ContextAccess::ClearCanceller(*context);
  switch (order[0]) {
    case 0:
      if (exception) co_return R(StatusFromException(exception, "the call"));
      co_return std::move(result);
    case 1:
      if (!timer_ec) {
        co_return R(absl::DeadlineExceededError(std::move(message)));
      }
      break;
    default:
      break;
  }
  co_return R(absl::CancelledError("call cancelled by the caller"));
}

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_DEADLINE_H_

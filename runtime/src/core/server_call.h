// The server side of a call: how its handler is cancelled (one mechanism for
// every plane), and, for the framed planes (TCP, NATS), the whole call.
#ifndef DYNRPC_RUNTIME_SRC_CORE_SERVER_CALL_H_
#define DYNRPC_RUNTIME_SRC_CORE_SERVER_CALL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/post.hpp"
#include "core/request_plane.h"
#include "core/stream_state.h"
#include "core/task_group.h"

namespace dynrpc::internal {

// A server call's own strand, its cancellation signal and the flag
// ServerContext::IsCancelled() reads. Whatever ends a call (the caller's
// cancel, a lost connection, the deadline, the server's shutdown) takes the
// same path: the plane ends the call's stream so that pending and later
// reads and writes return why, then CancelHandler() delivers Asio's
// terminal cancellation to the handler's coroutine, whose pending and later
// co_awaits then end. A plane's call record derives from this.
//
// Always owned by a shared_ptr (make_shared): the flag and the signal it
// hands out share the call's ownership, so a call costs one allocation, not
// one for each of them.
struct ServerCallBase : std::enable_shared_from_this<ServerCallBase> {
  explicit ServerCallBase(boost::asio::any_io_executor call_strand)
      : strand(std::move(call_strand)) {}

  // Flags the call cancelled and cancels its coroutine (on its strand). Any
  // thread, before or after Spawn() (a cancel that comes first is delivered
  // once the coroutine is connected to the signal); harmless once the
  // coroutine has ended.
  void CancelHandler() {
    cancelled_.store(true);
    if (spawned_.load()) Emit();
  }

  // Runs `task`, the call's coroutine, in `tasks` on the call's strand,
  // where CancelHandler() (and the group's CancelAll()) reach it.
  void Spawn(TaskGroup& tasks, boost::asio::awaitable<void> task,
             const char* name) {
    tasks.Spawn(strand, std::move(task), name, signal());
    // Either this sees the flag or CancelHandler() sees `spawned_` (both
    // sequentially consistent): a cancel is never lost; twice is harmless.
    spawned_.store(true);
    if (cancelled_.load()) Emit();
  }

  // The flag ServerContext::IsCancelled() reads.
  std::shared_ptr<std::atomic<bool>> cancelled() {
    return {shared_from_this(), &cancelled_};
  }

  const boost::asio::any_io_executor strand;

 private:
  std::shared_ptr<boost::asio::cancellation_signal> signal() {
    return {shared_from_this(), &signal_};
  }
  // Delivers terminal cancellation on the strand, where the signal is used.
  void Emit() {
    boost::asio::post(strand, [signal = signal()] {
      signal->emit(boost::asio::cancellation_type::terminal);
    });
  }

  boost::asio::cancellation_signal signal_;  // used on `strand` only
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> spawned_{false};
};

// The frames a framed plane (TCP, NATS) sends for one server call. The core
// calls it from the call's coroutine only, one operation at a time.
class ServerLink {
 public:
  virtual ~ServerLink() = default;
  // Refuses a response message the wire cannot carry, naming the limit.
  virtual absl::Status CheckMessage(std::size_t bytes) const = 0;
  // The largest request message the server accepts (a compressed one
  // inflated).
  virtual std::size_t max_message_size() const = 0;
  // One response message of a streaming call, its window already taken;
  // with the handler's initial metadata when `initial_metadata` is set (the
  // first message). `encoding`: the call's response compression (the same
  // on every call); `compressed`: whether this message is. An error means
  // it was not sent.
  virtual absl::Status SendMessage(std::string message,
                                   const Metadata* initial_metadata,
                                   Compression encoding, bool compressed) = 0;
  // The handler read `bytes`: the caller may send that much more.
  virtual void SendWindow(uint32_t bytes) = 0;
  // Forgets the call (its frames are no longer delivered) and sends its end.
  // `initial_sent`: the initial metadata went with a message.
  virtual void SendEnd(CallResult result, bool initial_sent) = 0;

  // A wire with flow control of its own (HTTP/2) paces the call: the core
  // waits for Ready() before each message and Drain() after the end. Others
  // cost no wait.
  virtual bool paced_by_wire() const { return false; }
  // Waits until a message may be queued (what waits before it is small);
  // an error: the call cannot send any more.
  virtual boost::asio::awaitable<absl::Status> Ready() {
    co_return absl::OkStatus();
  }
  // After SendEnd(): waits for what the end needs on the wire (HTTP/2: a
  // caller still sending is reset once the answer is out).
  virtual boost::asio::awaitable<void> Drain() { co_return; }
};

// The next message the caller sent, from `state`, granting its window back
// through `link` as it is read.
boost::asio::awaitable<absl::StatusOr<std::optional<std::string>>> ReadMessage(
    StreamState& state, ServerLink& link, std::size_t* wire_bytes = nullptr);

// Runs `handler` on a call with Asio's cancellation in force (once the call
// is cancelled, every co_await of the handler throws, as on every plane),
// and yields its result whatever happens: a handler cancelled before it
// began yields CANCELLED. `stream` is null for a unary call. The awaiting
// coroutine goes on afterwards with throw_if_cancelled(false), so that it
// can still answer.
boost::asio::awaitable<CallResult> RunHandler(CallHandler& handler,
                                              CallRequest request,
                                              ServerCallInfo info,
                                              ServerStream* stream);

// A server call on a framed plane: the plane's reader delivers the call's
// frames to `stream` (streaming calls) and ends it through Cancel(); the
// core runs the handler over it and sends through the call itself, whose
// plane's subclass is its ServerLink.
struct FramedServerCall : ServerCallBase, ServerLink {
  using ServerCallBase::ServerCallBase;

  // The call ends (the caller cancelled or was lost, the deadline, the
  // server's shutdown): end the stream, then cancel the handler. Any thread.
  void Cancel(const absl::Status& why) {
    if (stream) stream->End(CallResult(why), /*discard_unread=*/true);
    OnCancel(why);
    CancelHandler();
  }

  // What the plane does when the call is cancelled (HTTP/2: later DATA is
  // dropped and its window given back at once). Any thread.
  virtual void OnCancel(const absl::Status& why) {}

  // The call's coroutine, for Spawn() (or awaited by one): runs `handler`
  // on the request (over `stream` for a streaming call), settles the status
  // and sends the end, even once the call is cancelled. `handler` must
  // outlive it.
  static boost::asio::awaitable<void> Serve(
      std::shared_ptr<FramedServerCall> call, CallHandler& handler,
      CallRequest request, std::string peer);

  // Streaming calls only; set before the call is published to the reader.
  std::shared_ptr<StreamState> stream;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_SERVER_CALL_H_

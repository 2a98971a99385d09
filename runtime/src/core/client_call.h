// The client side of a call, for every request plane: the plane's wire
// carries the call's frames (TCP, NATS, HTTP/2).
//
// The core owns the call: its opening (once, whatever operation comes
// first), its StreamState (the window, the buffered messages, the end), the
// ordering of what it sends, its cancellation and the release of what holds
// it. The plane does two things only: it sends the call's frames (a
// ClientLink), and its reader delivers the frames that arrive to the call's
// StreamState (Deliver, SetInitialMetadata, AddSendWindow, End).
//
// HTTP/2 keeps nghttp2's flow control: its calls' StreamStates keep no
// window of their own (StreamState::WireWindow).
#ifndef DYNRPC_RUNTIME_SRC_CORE_CLIENT_CALL_H_
#define DYNRPC_RUNTIME_SRC_CORE_CLIENT_CALL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "core/deadline.h"
#include "core/request_plane.h"
#include "core/stream_state.h"

namespace dynrpc::internal {

// The frames one open call sends. Its methods are called by the core only:
// messages under one lock and never after SendHalfClose(); SendCancel() at
// most once; Release() once. A SendCancel() from another thread (the
// deadline, TryCancel) may come after or during Release(): Release() gives
// back what holds the call (a connection slot), never what SendCancel()
// uses.
class ClientLink {
 public:
  virtual ~ClientLink() = default;
  // Waits until messages may be sent (NATS: until a server accepted the
  // call). An error: the call ended first.
  virtual boost::asio::awaitable<absl::Status> Ready();
  // Refuses a message the wire cannot carry, naming the limit.
  virtual absl::Status CheckMessage(std::size_t bytes) const = 0;
  // One request message, its window already taken; `compressed`: with the
  // head's encoding. An error means it was not sent: RESOURCE_EXHAUSTED
  // (too large for the wire; the call goes on without it), anything else
  // ends the call.
  virtual absl::Status SendMessage(std::string message, bool compressed) = 0;
  virtual void SendHalfClose() = 0;
  // The caller read `bytes`: the server may send that much more.
  virtual void SendWindow(uint32_t bytes) = 0;
  // The caller will read no more (Finish()): a wire with its own window
  // gives back what waits unread, and what comes later, so the server can
  // finish. (Over the core's window, the unread messages' grant does.)
  virtual void StopReading() {}
  // The core ended the call before the server did (TryCancel, the deadline,
  // a dropped stream): tell the server, and stop delivering to its state.
  virtual void SendCancel() = 0;
  // The call has ended: give back what it held (a pooled connection's slot).
  virtual void Release() {}
};

// What ends the wait of a call's opening (for a connection, say) besides
// its deadline: TryCancel() and the core's Cancel(). A plane that must wait
// takes the signal with Arm() and waits under WithDeadline(); a call that is
// opened at once costs nothing.
class OpenCancel {
 public:
  // A stream's: its Cancel() signals `signal`.
  explicit OpenCancel(std::shared_ptr<Signal> signal)
      : signal_(std::move(signal)) {}
  // A unary call's: `hook` (which must outlive this) fires it.
  explicit OpenCancel(CancelHook& hook) : hook_(&hook) {}

  std::shared_ptr<Signal> Arm(const boost::asio::any_io_executor& executor);

 private:
  std::shared_ptr<Signal> signal_;
  CancelHook* hook_ = nullptr;
};

// A request plane whose calls the core runs over ClientLinks. Must be owned
// by a shared_ptr: a stream keeps it alive while it opens.
class FramedPlaneClient
    : public RequestPlaneClient,
      public std::enable_shared_from_this<FramedPlaneClient> {
 public:
  // Opens a call to `target` (borrowed until the first suspension): waits
  // for a connection, until `head.deadline` (DEADLINE_EXCEEDED) or `cancel`
  // fires (then any error: the core knows why), and sends its head,
  // with `*first_message` and half-closed when given. The plane may move
  // from `head.method`, `head.metadata` and `*first_message`. From then on
  // its reader delivers what arrives for the call to `state` and ends it
  // when the server does; for a unary call (`streaming` false) the end
  // carries the response message (with payload_compressed and encoding as
  // it came: the core inflates it). `head.payload_compressed` says whether
  // `*first_message` is compressed with `head.encoding`. On error nothing
  // was sent.
  virtual boost::asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>>
  Open(std::string_view target, CallRequest& head, std::string* first_message,
       bool streaming, std::shared_ptr<StreamState> state,
       OpenCancel& cancel) = 0;
  // The largest response message the plane accepts (StreamState's slack; a
  // plane that learns it at connection time sets it on the state in Open).
  virtual std::size_t max_message_size() const = 0;
  // Where the core's waits for a call's opening run.
  virtual const boost::asio::any_io_executor& executor() const = 0;
  // Set for a wire with flow control of its own (HTTP/2): the calls'
  // StreamStates keep no window, and grant each message read.
  virtual std::optional<StreamState::WireWindow> wire_window() const {
    return std::nullopt;
  }

  boost::asio::awaitable<CallResult> Unary(
      std::string_view target, CallRequest request,
      std::shared_ptr<CancelHook> cancel) final;
  std::unique_ptr<ClientStream> StartStream(
      std::string_view target, CallRequest head,
      std::optional<std::string> first_message) final;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_CLIENT_CALL_H_

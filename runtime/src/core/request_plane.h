// The seam between the RPC core and the request planes.
//
// Above it: Server, Channel, the dispatcher, deadlines and status. Below it:
// one folder per plane (tcp/, http/, nats/), created by the network manager.
// This file has the outer interfaces (RequestPlaneServer/Client, CallHandler)
// and what every call carries across (CallRequest, CallResult, the status
// rule). The calls themselves are the core's: client_call.h and
// server_call.h, where a plane only sends a call's frames (ClientLink,
// ServerLink) and feeds its StreamState. Framing and sockets never cross.
#ifndef DYNRPC_RUNTIME_SRC_CORE_REQUEST_PLANE_H_
#define DYNRPC_RUNTIME_SRC_CORE_REQUEST_PLANE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "core/compression.h"
#include "core/deadline_timers.h"
#include "dynrpc/context.h"
#include "dynrpc/service.h"

namespace dynrpc::internal {

// One call as it crosses the seam.
struct CallRequest {
  std::string method;  // "/package.Service/Method"
  Metadata metadata;
  // Absolute; the plane carries it to the server (as remaining time).
  std::optional<Clock::time_point> deadline;
  std::string payload;  // the serialized request message (unary calls)
  // `payload`'s size as it came on the wire (before the core inflated it);
  // 0: its size (wire_bytes() says which).
  std::size_t wire_size = 0;
  std::size_t wire_bytes() const {
    return wire_size != 0 ? wire_size : payload.size();
  }
  // The caller's compression (grpc-encoding): every request message it
  // compresses uses it. The plane carries, per message, whether it did:
  // `payload_compressed` for `payload` (or a stream's first message).
  Compression encoding = Compression::kIdentity;
  bool payload_compressed = false;
  // The compressions the caller accepts for responses (grpc-accept-encoding;
  // every dynrpc caller accepts all).
  CompressionSet accepts = kAllCompressions;
};

// How a call ended: exactly one status, with the server's metadata and, for
// unary and client-streaming calls that succeeded, the serialized response.
struct CallResult {
  CallResult() = default;
  CallResult(absl::Status s) : status(std::move(s)) {}  // NOLINT: implicit
  absl::Status status;
  // The response message, when `has_message` (unary and client-streaming
  // calls that succeeded; it may be empty bytes).
  bool has_message = false;
  std::string payload;
  // `payload` is compressed with `encoding`, the server's compression.
  bool payload_compressed = false;
  // `payload`'s size as it came on the wire; 0: its size (wire_bytes()).
  std::size_t wire_size = 0;
  std::size_t wire_bytes() const {
    return wire_size != 0 ? wire_size : payload.size();
  }
  Compression encoding = Compression::kIdentity;
  Metadata initial_metadata;
  Metadata trailing_metadata;
  // UNAVAILABLE before any handler could have run it: the call was never
  // sent (a connection could not be made), the connection was lost before
  // any response frame, no server took it (NATS), or a draining server
  // refused it. A channel bound to a service retries such a call once on
  // another instance.
  bool not_processed = false;
};

// The one rule, for every plane, for which status ends a server stream when
// the plane ended it (`plane_end`) and the handler returned `from_handler`:
// a fault in what the caller sent (a message over the limit or beyond its
// window: RESOURCE_EXHAUSTED; malformed: INTERNAL; messages lost:
// DATA_LOSS; a method the wire cannot carry: UNIMPLEMENTED) is the call's
// status, whatever the handler made of it. Otherwise (the stream ended OK,
// the caller cancelled or went away, the deadline passed) the handler's
// result stands: the dispatcher has already made it DEADLINE_EXCEEDED when
// the deadline passed.
inline CallResult SettleServerCall(CallResult from_handler,
                                   const absl::Status& plane_end) {
  switch (plane_end.code()) {
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnimplemented:
      return CallResult(plane_end);
    default:
      return from_handler;
  }
}

// The server side of one call, as the core sees it.
struct ServerCallInfo {
  std::string peer;  // the caller, for logs
  // Set by the plane when the caller cancels or its connection is lost (the
  // plane also cancels the handler's coroutine then); set by the core when
  // the deadline passes.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Ends the call from any thread, as a lost caller would: the plane ends
  // its stream with `why` and cancels the handler's coroutine (Asio
  // terminal cancellation, delivered on the call's strand). The core calls
  // it when the deadline passes.
  std::function<void(absl::Status why)> cancel;
};

// The plane's side of a streaming call on the server.
class ServerStream {
 public:
  virtual ~ServerStream() = default;
  // The next request message; nullopt once the client half-closed; an error
  // when the call was cancelled or lost. `*wire_bytes` (if given): its size
  // as it came (compressed, when it was).
  virtual boost::asio::awaitable<absl::StatusOr<std::optional<std::string>>>
  Read(std::size_t* wire_bytes = nullptr) = 0;
  // Sends one message, after `initial_metadata` on the first call. Waits for
  // the client's window. `encoding` is the call's response compression
  // (the same on every call: the first fixes it), `compressed` whether this
  // message is.
  virtual boost::asio::awaitable<absl::Status> Write(
      std::string message, const Metadata& initial_metadata,
      Compression encoding, bool compressed) = 0;
};

// The core's side of a server plane: a plane hands it every decoded call.
class CallHandler {
 public:
  virtual ~CallHandler() = default;
  // Runs a unary call to completion. Cancelling the awaiting coroutine
  // cancels the handler.
  virtual boost::asio::awaitable<CallResult> HandleUnary(
      CallRequest request, ServerCallInfo info) = 0;
  // Runs a streaming call (`request.payload` is unused) over `stream`.
  virtual boost::asio::awaitable<CallResult> HandleStream(
      CallRequest request, ServerCallInfo info, ServerStream& stream) = 0;
  // The method registered under `path` ("/package.Service/Method"), or null:
  // for planes whose wire does not say the method's kind (HTTP/2), or that
  // transcode its messages. Valid while the handler is.
  virtual const MethodEntry* FindMethod(std::string_view path) const = 0;
  // Every registered method path, for planes that subscribe per method
  // (NATS).
  virtual std::vector<std::string> MethodPaths() const = 0;
};

// RequestPlaneServer: receives calls for a server.
class RequestPlaneServer {
 public:
  virtual ~RequestPlaneServer() = default;
  // Binds, starts serving with `handler` (borrowed: it must outlive
  // Shutdown()) and returns the address clients reach this server at.
  virtual absl::StatusOr<std::string> Start(CallHandler& handler) = 0;
  // Stops accepting, closes connections, cancels the handlers still running
  // and blocks until they have returned. Idempotent. Not to be called from
  // the executor's threads.
  virtual void Shutdown() = 0;
};

// How the core ends a call a plane is running, from any thread: at its
// deadline (as a DeadlineTimers target: DEADLINE_EXCEEDED), or when the
// caller TryCancel()s. The plane says how (Set), and may say it again as the
// call moves on (waiting for a connection, then waiting for the reply); a
// Cancel() that came first runs at once.
class CancelHook final : public DeadlineTimers::Target {
 public:
  void Expired() override {
    Cancel(absl::DeadlineExceededError("deadline exceeded"));
  }

  // What a hook can end without a std::function (one allocation less on
  // every call).
  class Target {
   public:
    virtual void Cancel(absl::Status why) = 0;

   protected:
    ~Target() = default;
  };

  void Set(std::function<void(absl::Status why)> cancel) {
    std::unique_lock lock(mu_);
    if (why_) {
      absl::Status why = *why_;
      lock.unlock();
      cancel(why);
      return;
    }
    cancel_ = std::move(cancel);
    target_.reset();
  }
  void Set(std::shared_ptr<Target> target) {
    std::unique_lock lock(mu_);
    if (why_) {
      absl::Status why = *why_;
      lock.unlock();
      target->Cancel(why);
      return;
    }
    target_ = std::move(target);
    cancel_ = nullptr;
  }
  // Ends the call with `why`; the first call wins.
  void Cancel(absl::Status why) {
    std::function<void(absl::Status)> cancel;
    std::shared_ptr<Target> target;
    {
      std::lock_guard lock(mu_);
      if (why_) return;
      why_ = why;
      cancel = std::move(cancel_);
      target = std::move(target_);
    }
    if (cancel) cancel(why);
    if (target) target->Cancel(std::move(why));
  }
  std::optional<absl::Status> cancelled() const {
    std::lock_guard lock(mu_);
    return why_;
  }

 private:
  mutable std::mutex mu_;
  std::optional<absl::Status> why_;
  std::function<void(absl::Status)> cancel_;  // or
  std::shared_ptr<Target> target_;
};

// The plane's side of a streaming call on the client. Ends exactly once:
// with the server's status, a lost connection, or Cancel().
class ClientStream {
 public:
  // Cancels the call if it has not ended.
  virtual ~ClientStream() = default;
  // Opens the call if needed, then sends one message once the server's
  // window allows; `compressed`: with the head's encoding. An error means
  // the call has ended (Finish says how) or the message is over the size
  // limit.
  virtual boost::asio::awaitable<absl::Status> Write(std::string message,
                                                     bool compressed) = 0;
  virtual boost::asio::awaitable<absl::Status> WritesDone() = 0;
  // The next message; nullopt when the call ended with OK; else its status.
  // `*wire_bytes` (if given): its size as it came.
  virtual boost::asio::awaitable<absl::StatusOr<std::optional<std::string>>>
  Read(std::size_t* wire_bytes = nullptr) = 0;
  // Half-closes, drops unread messages and waits for the end.
  virtual boost::asio::awaitable<CallResult> Finish() = 0;
  // Ends the call with `why` (CANCELLED, DEADLINE_EXCEEDED) from any thread:
  // waiting operations return, the server is told.
  virtual void Cancel(absl::Status why) = 0;
  // How the call ended, once it has (then without waiting).
  virtual std::optional<CallResult> EndedResult() const = 0;
};

// RequestPlaneClient: sends calls to servers' addresses. Thread-safe.
class RequestPlaneClient {
 public:
  virtual ~RequestPlaneClient() = default;
  // Sends `request` to the server at `target` (an address its Start()
  // returned) and yields how the call ended. `request.deadline` is always
  // set; the core enforces it, and the caller's TryCancel(), through
  // `cancel`: when that fires the plane must end the call at once with the
  // status given, release what it holds and tell the server. Cancelling the
  // awaiting coroutine (Asio) ends the call too.
  virtual boost::asio::awaitable<CallResult> Unary(
      std::string_view target, CallRequest request,
      std::shared_ptr<CancelHook> cancel) = 0;
  // A streaming call to `target`, opened by its first operation. With
  // `first_message`, it goes with the call's head and the client half-closes
  // (server-streaming). The core enforces the deadline with Cancel().
  virtual std::unique_ptr<ClientStream> StartStream(
      std::string_view target, CallRequest head,
      std::optional<std::string> first_message) = 0;
  // The timeout of a call whose context sets no deadline, and the variable
  // that set it (for messages).
  virtual Clock::duration default_timeout() const = 0;
  virtual std::string_view default_timeout_variable() const = 0;
  // Whether `target` has this plane's form (Channel::Create asks, so that a
  // malformed target fails there, not at the first call): INVALID_ARGUMENT
  // saying what a target is.
  virtual absl::Status CheckTarget(std::string_view target) const {
    return absl::OkStatus();
  }
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_REQUEST_PLANE_H_

// The seam between the RPC core and the request planes.
//
// Above it: Server, Channel, the dispatcher, deadlines and status. Below it:
// one folder per plane (tcp/, later http/ and nats/), each implementing the
// two interfaces here, created by the network manager. The core hands a plane
// whole messages (a method path, metadata, a deadline and serialized bytes)
// and gets whole messages back; framing and sockets never cross the seam.
#ifndef DYNRPC_RUNTIME_SRC_CORE_REQUEST_PLANE_H_
#define DYNRPC_RUNTIME_SRC_CORE_REQUEST_PLANE_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "dynrpc/context.h"

namespace dynrpc::internal {

// One call as it crosses the seam.
struct CallRequest {
  std::string method;  // "/package.Service/Method"
  Metadata metadata;
  // Absolute; the plane carries it to the server (as remaining time).
  std::optional<Clock::time_point> deadline;
  std::string payload;  // the serialized request message
};

// The core's side of a server plane: a plane hands it every decoded call.
class CallHandler {
 public:
  virtual ~CallHandler() = default;
  // Runs the call to completion and yields the serialized response or the
  // call's status. Cancelling the awaiting coroutine cancels the handler.
  // `peer` names the caller for logs.
  virtual boost::asio::awaitable<absl::StatusOr<std::string>> HandleUnary(
      CallRequest request, std::string peer) = 0;
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

// RequestPlaneClient: sends calls to servers' addresses. Thread-safe.
class RequestPlaneClient {
 public:
  virtual ~RequestPlaneClient() = default;
  // Sends `request` to the server at `target` (an address its Start()
  // returned) and yields the serialized reply or the call's status.
  // `request.deadline` is always set by the core, which also enforces it by
  // cancelling the awaiting coroutine: the plane must then stop waiting,
  // release what the call holds and tell the server (it may return any
  // status; the core reports DEADLINE_EXCEEDED or CANCELLED).
  virtual boost::asio::awaitable<absl::StatusOr<std::string>> Unary(
      std::string_view target, CallRequest request) = 0;
  // The timeout of a call whose context sets no deadline.
  virtual Clock::duration default_timeout() const = 0;
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_REQUEST_PLANE_H_

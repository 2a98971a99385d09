// A Channel is what generated stubs call through, on the request plane that
// the configuration selects (callers never learn which): a client of one
// target (an address that a dynrpc::Server reported), or of a service, whose
// instances discovery lists and among which each call is routed.
//
// Example:
//   dynrpc::Runtime runtime;
//   auto channel = dynrpc::Channel::Create(runtime.executor(), address);
//   if (!channel.ok()) return channel.status();
//   helloworld::Greeter::Stub stub(*channel);
//   dynrpc::ClientContext ctx;
//   absl::StatusOr<helloworld::HelloReply> reply =
//       co_await stub.SayHello(ctx, request);
//
// Bound to a service, with no address:
//   auto channel = dynrpc::Channel::ForService(
//       runtime.executor(), helloworld::Greeter::kServiceName);
#ifndef DYNRPC_CHANNEL_H_
#define DYNRPC_CHANNEL_H_

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/co_spawn.hpp"
#include "boost/asio/use_future.hpp"
#include "dynrpc/config.h"
#include "dynrpc/context.h"
#include "dynrpc/message_buffers.h"
#include "dynrpc/routing.h"
#include "dynrpc/stream.h"

namespace dynrpc {

namespace internal {
class DeadlineTimers;
class RequestPlaneClient;
class ServiceRouter;
}  // namespace internal

// How a channel bound to a service routes its calls.
struct ChannelOptions {
  RoutingPolicy policy = RoutingPolicy::kRoundRobin;
  // A policy of your own, used instead of `policy` (shared: it may outlive
  // the channel's calls).
  std::shared_ptr<Router> router;
  // How often an instance marked down is probed (a health check) to bring
  // it back.
  std::chrono::milliseconds probe_interval{1000};
};

// Thread-safe: any number of coroutines on any threads may call through one
// channel at once. Connections are opened lazily, on the first call.
//
// Lifetime: shared by the stubs that use it; the Runtime whose executor it
// was created with must outlive it.
class Channel {
 public:
  // Uses Config::Global(); fails if the environment's configuration is
  // invalid.
  static absl::StatusOr<std::shared_ptr<Channel>> Create(
      boost::asio::any_io_executor executor, std::string target);
  static absl::StatusOr<std::shared_ptr<Channel>> Create(
      boost::asio::any_io_executor executor, std::string target,
      const Config& config);

  // A channel bound to `service` ("helloworld.Greeter", a generated
  // class's kServiceName): each call goes to one of the instances that
  // discovery (Config::discovery) lists in this namespace on this request
  // plane, chosen by `options.policy` (see dynrpc/routing.h). New instances
  // take calls as soon as discovery lists them; a dead or deregistered one
  // is not picked again. A call that no instance processed (its instance
  // refused the connection, lost it before answering, or was draining) is
  // retried once on another instance; streams never are. Fails at once
  // only for a bad configuration; a missing service is each call's
  // UNAVAILABLE, and instances on another request plane only are each
  // call's FAILED_PRECONDITION naming both planes.
  static absl::StatusOr<std::shared_ptr<Channel>> ForService(
      boost::asio::any_io_executor executor, std::string service,
      ChannelOptions options = {});
  static absl::StatusOr<std::shared_ptr<Channel>> ForService(
      boost::asio::any_io_executor executor, std::string service,
      ChannelOptions options, const Config& config);

  // The instances discovery lists now (every plane); empty for a channel
  // to an address.
  std::vector<Instance> instances() const;

  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends one serialized request to `method_path` ("/pkg.Service/Method") and
  // yields the serialized response or the call's status. `context` and the
  // characters of `method_path` must outlive the returned awaitable.
  // Cancelling the awaiting coroutine (an Asio cancellation slot) cancels
  // the call.
  boost::asio::awaitable<absl::StatusOr<std::string>> CallUnary(
      ClientContext& context, std::string_view method_path,
      std::string request);

  // Typed form used by generated stubs: serializes `request`, calls, parses
  // the reply. `context` and `request` must outlive the returned awaitable.
  template <typename Response, typename Request>
  boost::asio::awaitable<absl::StatusOr<Response>> Unary(
      ClientContext& context, std::string_view method_path,
      const Request& request) {
    std::string bytes;
    if (!internal::SerializeToBuffer(request, bytes)) {
      co_return absl::InternalError("failed to serialize request for " +
                                    std::string(method_path));
    }
    absl::StatusOr<std::string> reply =
        co_await CallUnary(context, method_path, std::move(bytes));
    if (!reply.ok()) co_return std::move(reply).status();
    Response response;
    std::size_t size = reply->size();
    if (!internal::ParseAndRecycle(*std::move(reply), response)) {
      co_return absl::InternalError(
          "failed to parse response of " + std::to_string(size) +
          " bytes from " + std::string(method_path) + " as " +
          Response::descriptor()->full_name());
    }
    co_return response;
  }

  // Starts a streaming call to `method_path`; the stream's first operation
  // opens it, and errors (an unreachable server, say) surface there. With
  // `request`, that message is sent with the call's head and the client
  // half-closes (a server-streaming call). `context` must outlive the
  // stream; its deadline (or the default timeout) covers the whole stream.
  std::unique_ptr<RawClientStream> StartStream(
      ClientContext& context, std::string_view method_path,
      std::optional<std::string> request);

  // Typed forms used by generated stubs.
  template <typename Response, typename Request>
  ClientReader<Response> ServerStreaming(ClientContext& context,
                                         std::string_view method_path,
                                         const Request& request) {
    absl::StatusOr<std::string> bytes = internal::Serialize(request);
    if (!bytes.ok()) return ClientReader<Response>(FailedStream(bytes.status()));
    return ClientReader<Response>(
        StartStream(context, method_path, *std::move(bytes)));
  }
  template <typename Request, typename Response>
  ClientWriter<Request, Response> ClientStreaming(
      ClientContext& context, std::string_view method_path) {
    return ClientWriter<Request, Response>(
        StartStream(context, method_path, std::nullopt));
  }
  template <typename Request, typename Response>
  ClientReaderWriter<Request, Response> BidiStreaming(
      ClientContext& context, std::string_view method_path) {
    return ClientReaderWriter<Request, Response>(
        StartStream(context, method_path, std::nullopt));
  }

  // A stream whose every operation fails with `status`.
  static std::unique_ptr<RawClientStream> FailedStream(absl::Status status);

  const boost::asio::any_io_executor& executor() const { return executor_; }
  // The address, or the service's name for a channel bound to a service.
  const std::string& target() const { return target_; }

 private:
  Channel(boost::asio::any_io_executor executor, std::string target,
          std::shared_ptr<internal::RequestPlaneClient> client,
          std::shared_ptr<internal::ServiceRouter> router,
          const Config& config);

  boost::asio::any_io_executor executor_;
  std::string target_;
  std::shared_ptr<internal::RequestPlaneClient> client_;
  std::shared_ptr<internal::ServiceRouter> router_;  // bound to a service
  // Requests' compression when a context does not say (DYN_COMPRESSION),
  // and the size below which none is.
  Compression compression_;
  std::size_t compression_min_bytes_;
  std::string_view plane_name_;  // for metrics: "tcp", "http", "nats"
  // The deadlines of this channel's calls, on one timer.
  std::shared_ptr<internal::DeadlineTimers> deadlines_;
};

namespace internal {
template <typename Response, typename Request, typename Stub>
boost::asio::awaitable<absl::StatusOr<Response>> CallWithOwnedRequest(
    Stub* stub,
    boost::asio::awaitable<absl::StatusOr<Response>> (Stub::*method)(
        ClientContext&, const Request&),
    ClientContext& context, Request request) {
  co_return co_await (stub->*method)(context, request);
}
}  // namespace internal

// The future form of a generated method, for code without coroutines: runs
// `(stub->*method)(context, request)` on `executor` and returns its result.
// `request` is copied; `stub` and `context` must outlive the future's
// completion.
//
// WARNING: the executor must be run by a thread other than the one that
// waits on the future (dynrpc::Runtime runs its own threads), or get() never
// returns.
template <typename Response, typename Request, typename Stub>
std::future<absl::StatusOr<Response>> CallAsFuture(
    const boost::asio::any_io_executor& executor, Stub* stub,
    boost::asio::awaitable<absl::StatusOr<Response>> (Stub::*method)(
        ClientContext&, const Request&),
    ClientContext& context, const Request& request) {
  return boost::asio::co_spawn(
      executor,
      internal::CallWithOwnedRequest<Response, Request, Stub>(
          stub, method, context, request),
      boost::asio::use_future);
}

}  // namespace dynrpc

#endif  // DYNRPC_CHANNEL_H_

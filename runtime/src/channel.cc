#include "dynrpc/channel.h"

#include <chrono>
#include <mutex>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boost/asio/this_coro.hpp"
#include "core/context_access.h"
#include "core/deadline.h"
#include "core/deadline_timers.h"
#include "core/metrics.h"
#include "core/request_plane.h"
#include "discovery/discovery.h"
#include "network_manager.h"
#include "routing/service_router.h"
#include "system/system_server.h"

namespace dynrpc {
namespace {

namespace asio = boost::asio;
using internal::CallResult;
using internal::ContextAccess;

using internal::CompressInPlace;

// The process's system server, when `config` asks for one (a process
// with channels only has its metrics too).
absl::Status StartSystemServer(const Config& config) {
  if (!config.system_port) return absl::OkStatus();
  return internal::SystemServer::StartFor(config).status();
}

// 32 random hex digits. Written directly: StrFormat's formatting cost a
// call more than the rest of building its head.
std::string NewRequestId() {
  thread_local absl::BitGen gen;
  constexpr char kDigits[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = absl::Uniform<uint64_t>(gen);
    for (int i = 15; i >= 0; --i, bits >>= 4) {
      id[half * 16 + i] = kDigits[bits & 15];
    }
  }
  return id;
}

// A stream that failed before it started.
class FailedRawStream final : public RawClientStream {
 public:
  explicit FailedRawStream(absl::Status status) : status_(std::move(status)) {}
  asio::awaitable<absl::Status> Write(std::string, WriteOptions) override {
    co_return status_;
  }
  asio::awaitable<absl::Status> WritesDone() override { co_return status_; }
  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    co_return status_;
  }
  asio::awaitable<absl::Status> Finish() override { co_return status_; }

 private:
  absl::Status status_;
};

// What a stream's deadline ends: the plane's stream, if it is still there.
struct StreamExpiry final : internal::DeadlineTimers::Target {
  StreamExpiry(std::weak_ptr<internal::ClientStream> plane, std::string expired)
      : plane(std::move(plane)), expired(std::move(expired)) {}
  void Expired() override {
    if (auto stream = plane.lock()) {
      stream->Cancel(absl::DeadlineExceededError(expired));
    }
  }
  const std::weak_ptr<internal::ClientStream> plane;
  const std::string expired;
};

// The public stream over a plane's: enforces the deadline (entered in the
// channel's DeadlineTimers, it cancels the plane stream), wires
// ClientContext::TryCancel, and hands the server's metadata to the context
// when the call ends.
class CoreClientStream final : public RawClientStream {
 public:
  CoreClientStream(std::shared_ptr<internal::ClientStream> plane,
                   ClientContext& context,
                   std::shared_ptr<internal::DeadlineTimers> deadlines,
                   Clock::time_point deadline, std::string expired,
                   Compression compression, std::size_t compression_min_bytes,
                   internal::CallStats* stats)
      : plane_(std::move(plane)),
        context_(context),
        compression_(compression),
        compression_min_bytes_(compression_min_bytes),
        stats_(stats),
        counted_(stats),
        deadlines_(std::move(deadlines)),
        pending_(deadlines_->Add(deadline, std::make_shared<StreamExpiry>(
                                               plane_, std::move(expired)))) {
    std::weak_ptr<internal::ClientStream> weak = plane_;
    ContextAccess::SetCanceller(context_, [weak] {
      if (auto plane = weak.lock()) {
        plane->Cancel(absl::CancelledError("call cancelled by the caller"));
      }
    });
  }
  ~CoreClientStream() override {
    ContextAccess::ClearCanceller(context_);
    {
      std::lock_guard lock(mu_);
      pending_.Cancel();
    }
    // No effect once the call has ended.
    plane_->Cancel(absl::CancelledError("stream dropped before it ended"));
  }

  asio::awaitable<absl::Status> Write(std::string message,
                                      WriteOptions options) override {
    const std::size_t size = message.size();
    bool compressed =
        !options.no_compression &&
        CompressInPlace(compression_, compression_min_bytes_, message);
    const std::size_t wire = message.size();
    absl::Status written =
        co_await plane_->Write(std::move(message), compressed);
    if (stats_ && written.ok()) stats_->Sent(size, wire);
    co_return written;
  }
  asio::awaitable<absl::Status> WritesDone() override {
    return plane_->WritesDone();
  }
  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    std::size_t wire = 0;
    absl::StatusOr<std::optional<std::string>> message =
        co_await plane_->Read(&wire);
    if (stats_ && message.ok() && message->has_value()) {
      stats_->Received((*message)->size(), wire);
    }
    if (!message.ok() || !message->has_value()) {
      // The call has ended: record it without another wait (which, in a
      // cancelled coroutine, Asio would turn into an exception).
      if (std::optional<CallResult> result = plane_->EndedResult()) {
        Record(*std::move(result));
      } else {
        co_await Finish();
      }
    }
    co_return message;
  }
  asio::awaitable<absl::Status> Finish() override {
    CallResult result = co_await plane_->Finish();
    absl::Status status = result.status;
    Record(std::move(result));
    co_return status;
  }

 private:
  // Once: stops the timer and the canceller, and hands the server's
  // metadata to the context. A Read() and a Finish() may both get here.
  void Record(CallResult result) {
    std::lock_guard lock(mu_);
    if (ended_) return;
    ended_ = true;
    counted_.End(result.status.code());
    pending_.Cancel();
    ContextAccess::ClearCanceller(context_);
    ContextAccess::SetServerMetadata(context_,
                                     std::move(result.initial_metadata),
                                     std::move(result.trailing_metadata));
  }

  std::shared_ptr<internal::ClientStream> plane_;
  ClientContext& context_;
  const Compression compression_;  // the call's
  const std::size_t compression_min_bytes_;
  internal::CallStats* const stats_;  // null: not counted
  std::mutex mu_;
  internal::CountedCall counted_;  // End() under mu_
  // Kept while the stream lives: a stream may outlive its channel.
  std::shared_ptr<internal::DeadlineTimers> deadlines_;
  internal::DeadlineTimers::Handle pending_;  // Cancel() under mu_
  bool ended_ = false;             // guarded by mu_
};

}  // namespace

absl::StatusOr<std::shared_ptr<Channel>> Channel::Create(
    boost::asio::any_io_executor executor, std::string target) {
  const absl::StatusOr<Config>& config = Config::Global();
  if (!config.ok()) return config.status();
  return Create(std::move(executor), std::move(target), *config);
}

absl::StatusOr<std::shared_ptr<Channel>> Channel::Create(
    boost::asio::any_io_executor executor, std::string target,
    const Config& config) {
  if (target.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target '", target,
        "' is a URL; a target is the address a server reports "
        "(Server::address()): host:port on the tcp and http request planes, "
        "'*' or an instance id on nats"));
  }
  absl::StatusOr<std::shared_ptr<internal::RequestPlaneClient>> client =
      internal::CreateRequestPlaneClient(config, executor);
  if (!client.ok()) return client.status();
  if (absl::Status s = (*client)->CheckTarget(target); !s.ok()) return s;
  if (absl::Status s = StartSystemServer(config); !s.ok()) return s;
  return std::shared_ptr<Channel>(
      new Channel(std::move(executor), std::move(target), std::move(*client),
                  nullptr, config));
}

absl::StatusOr<std::shared_ptr<Channel>> Channel::ForService(
    boost::asio::any_io_executor executor, std::string service,
    ChannelOptions options) {
  const absl::StatusOr<Config>& config = Config::Global();
  if (!config.ok()) return config.status();
  return ForService(std::move(executor), std::move(service), std::move(options),
                    *config);
}

absl::StatusOr<std::shared_ptr<Channel>> Channel::ForService(
    boost::asio::any_io_executor executor, std::string service,
    ChannelOptions options, const Config& config) {
  if (service.empty() || service.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", service,
        "' is not a service name: give the full name, as "
        "\"helloworld.Greeter\" (a generated class's kServiceName)"));
  }
  absl::StatusOr<std::shared_ptr<internal::RequestPlaneClient>> client =
      internal::CreateRequestPlaneClient(config, executor);
  if (!client.ok()) return client.status();
  absl::StatusOr<std::shared_ptr<internal::Discovery>> discovery =
      internal::CreateDiscovery(config, executor);
  if (!discovery.ok()) return discovery.status();
  if (absl::Status s = StartSystemServer(config); !s.ok()) return s;
  internal::ServiceRouter::Options routing;
  routing.service = service;
  routing.plane = config.request_plane;
  routing.policy = options.policy;
  routing.router = options.router;
  if (routing.router == nullptr && options.policy != RoutingPolicy::kDirect) {
    routing.router = MakeRouter(options.policy);
  }
  routing.discovery = *std::move(discovery);
  routing.name_space = config.discovery.name_space;
  routing.probe_interval = options.probe_interval;
  std::shared_ptr<internal::ServiceRouter> router =
      internal::ServiceRouter::Start(std::move(routing), *client, executor);
  return std::shared_ptr<Channel>(
      new Channel(std::move(executor), std::move(service), std::move(*client),
                  std::move(router), config));
}

Channel::Channel(boost::asio::any_io_executor executor, std::string target,
                 std::shared_ptr<internal::RequestPlaneClient> client,
                 std::shared_ptr<internal::ServiceRouter> router,
                 const Config& config)
    : executor_(std::move(executor)),
      target_(std::move(target)),
      client_(std::move(client)),
      router_(std::move(router)),
      compression_(config.compression),
      compression_min_bytes_(config.compression_min_bytes),
      plane_name_(RequestPlaneName(config.request_plane)),
      deadlines_(std::make_shared<internal::DeadlineTimers>(executor_)) {}

Channel::~Channel() = default;

std::vector<Instance> Channel::instances() const {
  if (router_ == nullptr) return {};
  return router_->instances();
}

namespace {

// The head of a call: the context's metadata plus a request id, and the
// deadline (the context's, else the plane's default timeout).
internal::CallRequest MakeHead(const ClientContext& context,
                               std::string_view method_path,
                               Clock::duration default_timeout,
                               Compression compression) {
  internal::CallRequest call;
  call.method = std::string(method_path);
  call.encoding = context.compression().value_or(compression);
  call.metadata = context.metadata();
  if (!FindMetadata(call.metadata, "x-request-id")) {
    call.metadata.emplace_back("x-request-id", NewRequestId());
  }
  call.deadline = context.deadline().value_or(Clock::now() + default_timeout);
  return call;
}

std::string ExpiredMessage(const ClientContext& context,
                           std::string_view method_path,
                           const internal::RequestPlaneClient& client) {
  if (context.deadline()) {
    return absl::StrFormat("call to %s exceeded its deadline", method_path);
  }
  return absl::StrFormat(
      "call to %s exceeded the default timeout of %d ms (%s)", method_path,
      std::chrono::duration_cast<std::chrono::milliseconds>(
          client.default_timeout())
          .count(),
      client.default_timeout_variable());
}

// The status of a call past its deadline: `expired` (which limit it was),
// and why discovery had not listed the service if that was the cause.
absl::Status ExpiredStatus(std::string expired, const absl::Status& cause) {
  constexpr std::string_view kPrefix =
      internal::ServiceRouter::kNotListedPrefix;
  if (absl::StartsWith(cause.message(),
                       absl::string_view(kPrefix.data(), kPrefix.size()))) {
    return absl::DeadlineExceededError(
        absl::StrCat(expired, ": ", cause.message()));
  }
  return absl::DeadlineExceededError(std::move(expired));
}

}  // namespace

// GCC 12 warns that this coroutine's frame is freed by the sized operator
// delete of Asio's awaitable_frame_base, "not matching" its operator new,
// which is the same class's: a false positive of its inlining of coroutine
// frames (as in http_server.cc), silenced for this function only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
boost::asio::awaitable<absl::StatusOr<std::string>> Channel::CallUnary(
    ClientContext& context, std::string_view method_path, std::string request) {
  internal::CallStats* stats = internal::Metrics::Global().For(
      internal::Metrics::Side::kClient, method_path, plane_name_);
  internal::CountedCall counted(stats);
  internal::CallRequest call =
      MakeHead(context, method_path, client_->default_timeout(), compression_);
  call.payload = std::move(request);
  const std::size_t request_size = call.payload.size();
  call.payload_compressed =
      CompressInPlace(call.encoding, compression_min_bytes_, call.payload);
  if (stats) stats->Sent(request_size, call.payload.size());
  Clock::time_point deadline = *call.deadline;
  // Already too late: the call is never sent (as gRPC does).
  if (Clock::now() >= deadline) {
    counted.End(absl::StatusCode::kDeadlineExceeded);
    co_return absl::DeadlineExceededError(
        ExpiredMessage(context, method_path, *client_));
  }
  // The deadline and TryCancel() end the call through the plane's hook: no
  // timer of its own, no extra coroutine.
  auto cancel = std::make_shared<internal::CancelHook>();
  if (!ContextAccess::SetCanceller(context, [cancel] {
        cancel->Cancel(absl::CancelledError("call cancelled by the caller"));
      })) {
    co_return absl::CancelledError("call cancelled by the caller");
  }
  // Its message is replaced below, once the call has ended: built only for
  // a call that expires.
  internal::DeadlineTimers::Handle pending = deadlines_->Add(deadline, cancel);
  // (Not a ?: : GCC 12 miscompiles co_await in one.)
  CallResult result;
  if (router_ != nullptr) {
    result = co_await router_->Unary(context, std::move(call), cancel);
  } else {
    result = co_await client_->Unary(target_, std::move(call), cancel);
  }
  pending.Cancel();
  ContextAccess::ClearCanceller(context);
  ContextAccess::SetServerMetadata(context, std::move(result.initial_metadata),
                                   std::move(result.trailing_metadata));
  // The server enforces the same deadline and may report it first; past the
  // deadline, say which limit it was, whichever side noticed.
  if (absl::IsDeadlineExceeded(result.status) && Clock::now() >= deadline) {
    result.status = ExpiredStatus(
        ExpiredMessage(context, method_path, *client_), result.status);
  }
  counted.End(result.status.code());
  if (!result.status.ok()) co_return result.status;
  if (stats) {
    stats->Received(result.payload.size(), result.wire_bytes());
  }
  co_return std::move(result.payload);
}
#pragma GCC diagnostic pop

std::unique_ptr<RawClientStream> Channel::StartStream(
    ClientContext& context, std::string_view method_path,
    std::optional<std::string> request) {
  internal::CallStats* stats = internal::Metrics::Global().For(
      internal::Metrics::Side::kClient, method_path, plane_name_);
  internal::CallRequest head =
      MakeHead(context, method_path, client_->default_timeout(), compression_);
  if (request) {
    const std::size_t size = request->size();
    head.payload_compressed =
        CompressInPlace(head.encoding, compression_min_bytes_, *request);
    if (stats) stats->Sent(size, request->size());
  }
  Clock::time_point deadline = *head.deadline;
  const Compression head_encoding = head.encoding;
  std::shared_ptr<internal::ClientStream> plane =
      router_ != nullptr
          ? router_->StartStream(context, std::move(head), std::move(request))
          : client_->StartStream(target_, std::move(head), std::move(request));
  std::string expired = ExpiredMessage(context, method_path, *client_);
  if (Clock::now() >= deadline) {
    // Already too late: ended before its first operation, so never sent.
    plane->Cancel(absl::DeadlineExceededError(expired));
  }
  return std::make_unique<CoreClientStream>(
      std::move(plane), context, deadlines_, deadline, std::move(expired),
      head_encoding, compression_min_bytes_, stats);
}

std::unique_ptr<RawClientStream> Channel::FailedStream(absl::Status status) {
  return std::make_unique<FailedRawStream>(std::move(status));
}

}  // namespace dynrpc

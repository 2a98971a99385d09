#include "core/dispatcher.h"

#include <atomic>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/error.hpp"
#include "boost/system/system_error.hpp"
#include "core/context_access.h"
#include "dynrpc/message_buffers.h"
#include "boost/asio/this_coro.hpp"
#include "core/deadline.h"

namespace dynrpc::internal {

namespace asio = boost::asio;

absl::Status Dispatcher::Register(Service& service) {
  for (const MethodEntry& m : service.methods()) {
    if (!methods_.emplace(m.path, &m).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("method ", m.path, " is registered twice (service ",
                       service.full_name(), " added twice?)"));
    }
  }
  return absl::OkStatus();
}

namespace {

// Runs a handler; an exception it throws becomes UNKNOWN (or CANCELLED when
// it is Asio's operation_aborted, the way a cancelled handler may end).
template <typename Handler>
asio::awaitable<absl::StatusOr<std::string>> Guarded(const std::string& method,
                                                    Handler run) {
  std::exception_ptr thrown;
  try {
    co_return co_await run();
  } catch (...) {
    thrown = std::current_exception();
  }
  co_return StatusFromException(thrown, absl::StrCat("handler of ", method),
                                absl::StatusCode::kUnknown);
}

// A call's response compression: the handler's choice, else the server's,
// if the caller accepts it; identity otherwise.
class ResponseCompression {
 public:
  ResponseCompression(const CompressionPolicy& policy,
                      CompressionSet accepts)
      : policy_(policy), accepts_(accepts) {}

  // The call's algorithm, fixed by its first use.
  Compression Fix(const ServerContext& context) {
    if (!fixed_) {
      Compression wanted = context.compression().value_or(policy_.algorithm);
      fixed_ = (accepts_ & Bit(wanted)) ? wanted : Compression::kIdentity;
    }
    return *fixed_;
  }
  // Compresses `message` in place when worth it; whether it did.
  bool Apply(const ServerContext& context, std::string& message) {
    return CompressInPlace(Fix(context), policy_.min_bytes, message);
  }

 private:
  const CompressionPolicy& policy_;
  const CompressionSet accepts_;
  std::optional<Compression> fixed_;
};

// The public stream a handler sees, over the plane's.
class HandlerStream final : public RawServerStream {
 public:
  HandlerStream(ServerStream& plane, ServerContext& context,
                ResponseCompression& compression, CallStats* stats)
      : plane_(plane),
        context_(context),
        compression_(compression),
        stats_(stats) {}
  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    std::size_t wire = 0;
    absl::StatusOr<std::optional<std::string>> message =
        co_await plane_.Read(&wire);
    if (stats_ && message.ok() && message->has_value()) {
      stats_->Received((*message)->size(), wire);
    }
    co_return message;
  }
  asio::awaitable<absl::Status> Write(std::string message,
                                      WriteOptions options) override {
    Compression encoding = compression_.Fix(context_);
    const std::size_t size = message.size();
    bool compressed =
        !options.no_compression && compression_.Apply(context_, message);
    const std::size_t wire = message.size();
    absl::Status written = co_await plane_.Write(
        std::move(message), ContextAccess::InitialMetadata(context_), encoding,
        compressed);
    if (stats_ && written.ok()) stats_->Sent(size, wire);
    co_return written;
  }

 private:
  ServerStream& plane_;
  ServerContext& context_;
  ResponseCompression& compression_;
  CallStats* const stats_;  // null: not counted
};

absl::Status HandlerExpired(const std::string& method) {
  return absl::DeadlineExceededError(absl::StrCat(
      "the caller's deadline for ", method, " passed while its handler ran"));
}

// What a call's deadline does when it passes first: has the plane cancel
// the call. Shared with the deadline table, which may expire it after the
// call's frame has gone, so it holds the method's name itself; the message
// is built only for a call that expires.
struct Expiry final : DeadlineTimers::Target {
  Expiry(std::string method, const ServerCallInfo& info)
      : method(std::move(method)),
        cancelled(info.cancelled),
        cancel(info.cancel) {}
  void Expired() override {
    expired.store(true);
    if (cancelled) cancelled->store(true);
    if (cancel) cancel(HandlerExpired(method));
  }
  std::atomic<bool> expired{false};
  const std::string method;
  const std::shared_ptr<std::atomic<bool>> cancelled;
  const std::function<void(absl::Status)> cancel;
};

// Runs `run` under the request's deadline and turns its outcome into the
// call's result, with the metadata the handler added. The handler runs in
// the plane's call coroutine itself; when the deadline passes, `deadlines`
// has the plane cancel that call (its stream ends, its coroutine gets
// terminal cancellation), so the handler's pending operations end,
// IsCancelled() turns true at once, and the call's status is
// DEADLINE_EXCEEDED.
asio::awaitable<CallResult> Run(
    ServerContext& context, const std::optional<Clock::time_point>& deadline,
    const ServerCallInfo& info, bool has_message,
    ResponseCompression& compression, CallStats* stats,
    DeadlineTimers& deadlines,
    asio::awaitable<absl::StatusOr<std::string>> run) {
  absl::StatusOr<std::string> outcome;
  if (deadline) {
    auto expiry = std::make_shared<Expiry>(context.method(), info);
    DeadlineTimers::Handle pending = deadlines.Add(*deadline, expiry);
    outcome = co_await std::move(run);
    pending.Cancel();
    if (expiry->expired.load()) outcome = HandlerExpired(context.method());
  } else {
    outcome = co_await std::move(run);
  }
  CallResult result;
  if (outcome.ok()) {
    result.has_message = has_message;
    result.payload = *std::move(outcome);
    if (has_message) {
      const std::size_t size = result.payload.size();
      result.encoding = compression.Fix(context);
      result.payload_compressed = compression.Apply(context, result.payload);
      if (stats) stats->Sent(size, result.payload.size());
    }
  } else {
    result.status = outcome.status();
  }
  result.initial_metadata = ContextAccess::TakeInitialMetadata(context);
  result.trailing_metadata = ContextAccess::TakeTrailingMetadata(context);
  // The drain's mark is the runtime's alone: a handler's own (a proxy
  // forwarding a downstream refusal) would have its caller retry a call it
  // processed.
  std::erase_if(result.trailing_metadata, [](const auto& entry) {
    return entry.first == Dispatcher::kNotProcessedKey;
  });
  co_return result;
}

absl::Status WrongKind(const std::string& method, bool streaming) {
  return absl::UnimplementedError(absl::StrCat(
      "method ", method, " is ", streaming ? "a streaming" : "a unary",
      " method; it was called as ", streaming ? "unary" : "a stream"));
}

}  // namespace

void Dispatcher::set_metrics(std::string_view plane) {
  for (const auto& [path, entry] : methods_) {
    if (CallStats* stats =
            Metrics::Global().For(Metrics::Side::kServer, path, plane)) {
      stats_[path] = stats;
    }
  }
}

const MethodEntry* Dispatcher::FindMethod(std::string_view path) const {
  auto it = methods_.find(absl::string_view(path.data(), path.size()));
  return it == methods_.end() ? nullptr : it->second;
}

std::vector<std::string> Dispatcher::MethodPaths() const {
  std::vector<std::string> paths;
  for (const auto& [path, entry] : methods_) paths.push_back(path);
  return paths;
}

namespace {

// A call whose deadline passed before it arrived is not run.
std::optional<absl::Status> Expired(const CallRequest& request) {
  if (request.deadline && Clock::now() >= *request.deadline) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the caller's deadline for ", request.method,
        " passed before its handler started"));
  }
  return std::nullopt;
}

}  // namespace

namespace {
// Calls a drain lets through and does not wait for.
bool IsHealthMethod(std::string_view path) {
  return path.starts_with("/grpc.health.v1.Health/");
}
}  // namespace

// Holds one unit of running_ (taken by Admit, under drain_mu_) until
// destroyed.
class Dispatcher::Running {
 public:
  explicit Running(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  ~Running() {
    std::lock_guard lock(dispatcher_.drain_mu_);
    // A drain's quiet period counts from the last handler's end too: its
    // answer needs the time to be written before the server closes.
    if (dispatcher_.draining_) dispatcher_.last_arrival_ = Clock::now();
    if (--dispatcher_.running_ == 0) dispatcher_.idle_cv_.notify_all();
  }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;

 private:
  Dispatcher& dispatcher_;
};

void Dispatcher::StartDrain() {
  std::lock_guard lock(drain_mu_);
  draining_ = true;
  last_arrival_ = Clock::now();
}

bool Dispatcher::WaitIdle(Clock::time_point deadline) {
  std::unique_lock lock(drain_mu_);
  idle_cv_.wait_until(lock, deadline,
                      [&] { return running_ == 0 || drain_ended_; });
  // Cut short by Shutdown(): its handlers are being cancelled.
  return running_ == 0 && !drain_ended_;
}

void Dispatcher::EndDrainWaits() {
  std::lock_guard lock(drain_mu_);
  drain_ended_ = true;
  idle_cv_.notify_all();
}

void Dispatcher::WaitQuiet(Clock::duration quiet, Clock::time_point deadline) {
  std::unique_lock lock(drain_mu_);
  for (;;) {
    Clock::time_point quiet_at = last_arrival_ + quiet;
    Clock::time_point now = Clock::now();
    if (now >= quiet_at || now >= deadline || drain_ended_) return;
    idle_cv_.wait_until(lock, std::min(quiet_at, deadline));
  }
}

absl::StatusOr<const MethodEntry*> Dispatcher::Admit(
    const CallRequest& request, bool streaming,
    std::optional<Admission::Token>& slot, std::optional<Running>& running) {
  auto it = methods_.find(request.method);
  if (it == methods_.end()) {
    return absl::UnimplementedError(
        absl::StrCat("unknown method ", request.method));
  }
  const MethodEntry& method = *it->second;
  if ((method.kind != MethodKind::kUnary) != streaming) {
    return WrongKind(method.path, !streaming);
  }
  if (std::optional<absl::Status> late = Expired(request)) return *late;
  if (handlers_ && !(slot = handlers_->TryAcquire())) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server is running DYN_SERVER_MAX_HANDLERS=", handlers_->limit(),
        " handlers already; ", method.path, " was not run"));
  }
  // The drain's check and count in one step: a call admitted here is one
  // that WaitIdle() waits for.
  if (!IsHealthMethod(method.path)) {
    std::lock_guard lock(drain_mu_);
    if (draining_) {
      last_arrival_ = Clock::now();
      return absl::UnavailableError(absl::StrCat(
          "the server is draining (shutting down): ", method.path,
          " was not run; call another instance"));
    }
    ++running_;
    running.emplace(*this);
  }
  return &method;
}

namespace {
// A call that was not admitted. UNAVAILABLE only comes from a drain: the
// caller may send it elsewhere.
CallResult Refused(absl::Status why) {
  CallResult result(std::move(why));
  if (absl::IsUnavailable(result.status)) {
    result.trailing_metadata.emplace_back(Dispatcher::kNotProcessedKey,
                                          "draining");
  }
  return result;
}
}  // namespace

asio::awaitable<CallResult> Dispatcher::HandleUnary(CallRequest request,
                                                    ServerCallInfo info) {
  CallStats* stats = StatsFor(request.method);
  CountedCall counted(stats);
  std::optional<Admission::Token> slot;
  std::optional<Running> running;
  absl::StatusOr<const MethodEntry*> admitted =
      Admit(request, /*streaming=*/false, slot, running);
  if (!admitted.ok()) {
    counted.End(admitted.status().code());
    co_return Refused(admitted.status());
  }
  const MethodEntry& method = **admitted;
  if (stats) {
    stats->Received(request.payload.size(), request.wire_bytes());
  }
  ServerContext context(std::move(request.method), std::move(request.metadata),
                        request.deadline, std::move(info.peer));
  ContextAccess::SetCancelledFlag(context, info.cancelled);
  ResponseCompression compression(compression_, request.accepts);
  // The handler owns the request's bytes (and recycles them once parsed).
  auto handle = [&]() {
    return method.unary(context, std::move(request.payload));
  };
  asio::awaitable<absl::StatusOr<std::string>> run =
      Guarded(method.path, handle);
  CallResult result =
      co_await Run(context, request.deadline, info,
                   /*has_message=*/true, compression, stats, deadlines_,
                   std::move(run));
  counted.End(result.status.code());
  co_return result;
}

asio::awaitable<CallResult> Dispatcher::HandleStream(CallRequest request,
                                                     ServerCallInfo info,
                                                     ServerStream& stream) {
  CallStats* stats = StatsFor(request.method);
  CountedCall counted(stats);
  std::optional<Admission::Token> slot;
  std::optional<Running> running;
  absl::StatusOr<const MethodEntry*> admitted =
      Admit(request, /*streaming=*/true, slot, running);
  if (!admitted.ok()) {
    counted.End(admitted.status().code());
    co_return Refused(admitted.status());
  }
  const MethodEntry& method = **admitted;
  ServerContext context(std::move(request.method), std::move(request.metadata),
                        request.deadline, std::move(info.peer));
  ContextAccess::SetCancelledFlag(context, info.cancelled);
  ResponseCompression compression(compression_, request.accepts);
  HandlerStream handler_stream(stream, context, compression, stats);
  auto handle = [&]() { return method.stream(context, handler_stream); };
  asio::awaitable<absl::StatusOr<std::string>> run =
      Guarded(method.path, handle);
  CallResult result =
      co_await Run(context, request.deadline, info,
                   method.kind == MethodKind::kClientStreaming, compression,
                   stats, deadlines_, std::move(run));
  counted.End(result.status.code());
  co_return result;
}

}  // namespace dynrpc::internal

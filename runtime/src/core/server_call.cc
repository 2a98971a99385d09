#include "core/server_call.h"

#include <exception>
#include <optional>
#include <utility>

#include "core/deadline.h"
#include "dynrpc/status_macros.h"

namespace dynrpc::internal {

namespace asio = boost::asio;

namespace {

// A streaming call's side for the handler: what the caller sent, from the
// call's StreamState; what the handler writes, through the plane's link.
class FramedServerStream final : public ServerStream {
 public:
  FramedServerStream(StreamState& state, ServerLink& link)
      : state_(state), link_(link) {}

  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read(
      std::size_t* wire_bytes) override {
    return ReadMessage(state_, link_, wire_bytes);
  }

  asio::awaitable<absl::Status> Write(std::string message,
                                      const Metadata& initial_metadata,
                                      Compression encoding,
                                      bool compressed) override {
    DYNRPC_CO_RETURN_IF_ERROR(link_.CheckMessage(message.size()));
    const std::size_t size = message.size();
    DYNRPC_CO_RETURN_IF_ERROR(co_await state_.ReserveSend(size));
    if (link_.paced_by_wire()) {
      DYNRPC_CO_RETURN_IF_ERROR(co_await link_.Ready());
    }
    absl::Status sent = link_.SendMessage(
        std::move(message), initial_sent_ ? nullptr : &initial_metadata,
        encoding, compressed);
    if (!sent.ok()) {
      // Not sent: its window comes back.
      state_.AddSendWindow(
          static_cast<uint32_t>(size + StreamState::kMessageOverhead));
      co_return sent;
    }
    initial_sent_ = true;
    co_return absl::OkStatus();
  }

  bool initial_sent() const { return initial_sent_; }

 private:
  StreamState& state_;
  ServerLink& link_;
  bool initial_sent_ = false;
};

}  // namespace

asio::awaitable<absl::StatusOr<std::optional<std::string>>> ReadMessage(
    StreamState& state, ServerLink& link, std::size_t* wire_bytes) {
  uint32_t grant = 0;
  absl::StatusOr<std::optional<std::string>> message =
      co_await state.Read(&grant, wire_bytes);
  if (grant > 0) link.SendWindow(grant);
  // A message that did not inflate (or a cancelled read): the call ends
  // with why, whatever the handler makes of it.
  if (!message.ok() && !state.ended()) {
    state.End(CallResult(message.status()), /*discard_unread=*/true);
  }
  co_return message;
}

asio::awaitable<CallResult> RunHandler(CallHandler& handler,
                                       CallRequest request, ServerCallInfo info,
                                       ServerStream* stream) {
  // Asio keeps this flag per coroutine thread: it holds for the handler's
  // co_awaits too, whatever the awaiting coroutine set.
  co_await asio::this_coro::throw_if_cancelled(true);
  CallResult result;
  std::exception_ptr thrown;
  try {
    if (stream == nullptr) {
      result =
          co_await handler.HandleUnary(std::move(request), std::move(info));
    } else {
      result = co_await handler.HandleStream(std::move(request),
                                             std::move(info), *stream);
    }
  } catch (...) {
    // Cancelled before the handler began (its first co_await threw); the
    // dispatcher turns the handler's own exceptions into its status.
    thrown = std::current_exception();
  }
  co_await asio::this_coro::throw_if_cancelled(false);
  if (thrown) {
    result = CallResult(
        StatusFromException(thrown, "the call", absl::StatusCode::kUnknown));
  }
  co_return result;
}

asio::awaitable<void> FramedServerCall::Serve(
    std::shared_ptr<FramedServerCall> call, CallHandler& handler,
    CallRequest request, std::string peer) {
  // Named, not a braced temporary in the co_await: GCC 12 miscopies those.
  ServerCallInfo info{std::move(peer), call->cancelled(),
                      [call](absl::Status why) { call->Cancel(why); }};
  std::optional<FramedServerStream> stream;
  if (call->stream != nullptr) stream.emplace(*call->stream, *call);
  CallResult result;
  absl::Status inflated;
  request.wire_size = request.wire_bytes();  // before inflation changes it
  if (request.payload_compressed) {
    inflated = InflateInPlace(request.encoding, request.payload,
                              call->max_message_size(), "request");
    request.payload_compressed = false;
  }
  if (inflated.ok()) {
    result = co_await RunHandler(handler, std::move(request), std::move(info),
                                 stream ? &*stream : nullptr);
  } else {
    result = CallResult(std::move(inflated));
  }
  bool initial_sent = false;
  if (stream) {
    result = SettleServerCall(std::move(result), call->stream->end_status());
    call->stream->End(CallResult(absl::OkStatus()));
    initial_sent = stream->initial_sent();
  }
  if (result.status.ok() && result.has_message) {
    // A response the wire cannot carry: the caller hears why, with the
    // metadata.
    if (absl::Status fits = call->CheckMessage(result.payload.size());
        !fits.ok()) {
      result.status = std::move(fits);
      result.has_message = false;
      result.payload.clear();
    }
  }
  call->SendEnd(std::move(result), initial_sent);
  if (call->paced_by_wire()) co_await call->Drain();
}

}  // namespace dynrpc::internal

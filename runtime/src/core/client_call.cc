#include "core/client_call.h"

#include <mutex>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "boost/asio/this_coro.hpp"
#include "core/open_once.h"
#include "dynrpc/status_macros.h"

namespace dynrpc::internal {

namespace asio = boost::asio;

asio::awaitable<absl::Status> ClientLink::Ready() {
  co_return absl::OkStatus();
}

std::shared_ptr<Signal> OpenCancel::Arm(const asio::any_io_executor& executor) {
  if (signal_ == nullptr) {
    signal_ = std::make_shared<Signal>(executor, 1);
    hook_->Set([signal = signal_](absl::Status) {
      signal->try_send(boost::system::error_code{});
    });
  }
  return signal_;
}

namespace {

// A response message that came compressed, inflated (up to `limit`); the
// call's status says why when it does not.
void InflateResponse(CallResult& result, std::size_t limit) {
  if (!result.has_message) return;
  result.wire_size = result.payload.size();
  if (!result.payload_compressed) return;
  result.payload_compressed = false;
  absl::Status inflated =
      InflateInPlace(result.encoding, result.payload, limit, "response");
  if (!inflated.ok()) {
    result.status = std::move(inflated);
    result.has_message = false;
    result.payload.clear();
  }
}

absl::Status TooLate() {
  return absl::DeadlineExceededError(
      "the call's deadline passed before it was sent");
}

// A streaming call, opened by its first operation. Ends exactly once (its
// StreamState's end): with the server's status, a lost connection, or
// Cancel().
class FramedClientStream final : public ClientStream {
 public:
  FramedClientStream(const std::shared_ptr<FramedPlaneClient>& plane,
                     std::string target, CallRequest head,
                     std::optional<std::string> first_message)
      : plane_(plane),
        target_(std::move(target)),
        head_(std::move(head)),
        first_message_(std::move(first_message)),
        state_(std::make_shared<StreamState>(plane->max_message_size(),
                                             plane->wire_window())),
        cancel_open_(std::make_shared<Signal>(plane->executor(), 1)) {}

  ~FramedClientStream() override {
    Cancel(absl::CancelledError("stream dropped before it ended"));
  }

  asio::awaitable<absl::Status> Write(std::string message,
                                      bool compressed) override {
    DYNRPC_CO_RETURN_IF_ERROR(co_await EnsureOpen());
    if (writes_done()) {
      co_return absl::FailedPreconditionError("Write() after WritesDone()");
    }
    DYNRPC_CO_RETURN_IF_ERROR(link_->CheckMessage(message.size()));
    const std::size_t size = message.size();
    absl::Status ready = co_await link_->Ready();
    if (ready.ok()) ready = co_await state_->ReserveSend(size);
    if (!ready.ok()) {
      // Our wait was cancelled (the caller's coroutine): end the call.
      if (absl::IsCancelled(ready) && !state_->ended()) Cancel(ready);
      co_return ready;
    }
    absl::Status sent;
    bool after_done = false;
    {
      // One writer at a time, in order, and never after the half-close.
      std::lock_guard lock(send_mu_);
      if (writes_done_) {
        after_done = true;
      } else {
        sent = link_->SendMessage(std::move(message), compressed);
      }
    }
    if (after_done || absl::IsResourceExhausted(sent)) {
      // Not sent: its window comes back and the stream goes on without it.
      state_->AddSendWindow(
          static_cast<uint32_t>(size + StreamState::kMessageOverhead));
      if (after_done) {
        co_return absl::FailedPreconditionError("Write() after WritesDone()");
      }
      co_return sent;
    }
    if (!sent.ok()) Cancel(sent);
    co_return sent;
  }

  asio::awaitable<absl::Status> WritesDone() override {
    DYNRPC_CO_RETURN_IF_ERROR(co_await EnsureOpen());
    if (writes_done()) co_return absl::OkStatus();
    DYNRPC_CO_RETURN_IF_ERROR(co_await link_->Ready());
    std::lock_guard lock(send_mu_);  // after every message a Write() sent
    if (!writes_done_) {
      writes_done_ = true;
      link_->SendHalfClose();
    }
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read(
      std::size_t* wire_bytes) override {
    absl::Status open = co_await EnsureOpen();
    if (!open.ok()) co_return open;
    uint32_t grant = 0;
    absl::StatusOr<std::optional<std::string>> message =
        co_await state_->Read(&grant, wire_bytes);
    if (grant > 0) link_->SendWindow(grant);
    if (!message.ok() && !state_->ended()) {
      // Our wait was cancelled (Asio), or a message did not inflate: the
      // call ends with why, and the server is told.
      Cancel(message.status());
    }
    if (state_->ended()) ReleaseLink();
    co_return message;
  }

  asio::awaitable<CallResult> Finish() override {
    absl::Status open = co_await EnsureOpen();
    if (!open.ok()) co_return CallResult(open);
    // Stop reading first: a server blocked on our unread messages could
    // otherwise hold up the half-close on a wire with its own window.
    link_->StopReading();
    if (!writes_done() && !state_->ended()) co_await WritesDone();
    for (;;) {
      uint32_t grant = 0;
      std::optional<CallResult> end = co_await state_->WaitEnd(&grant);
      if (end) {
        if (absl::IsCancelled(end->status) && !state_->ended()) {
          Cancel(end->status);  // our wait was cancelled (Asio)
        }
        ReleaseLink();
        InflateResponse(*end, state_->max_message());
        co_return *std::move(end);
      }
      link_->SendWindow(grant);
    }
  }

  void Cancel(absl::Status why) override {
    if (!state_->End(CallResult(why), /*discard_unread=*/true)) return;
    cancel_open_->try_send(boost::system::error_code{});  // if still opening
    std::shared_ptr<ClientLink> link;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      link = link_;
    }
    // Not open yet: Open() tells the server once it is.
    if (link == nullptr) return;
    link->SendCancel();
    ReleaseLink();
  }

  std::optional<CallResult> EndedResult() const override {
    return state_->result();
  }

 private:
  bool writes_done() {
    std::lock_guard lock(send_mu_);
    return writes_done_;
  }

  // Once the call has ended: gives back what holds it, so that a finished
  // stream kept around holds no connection slot.
  void ReleaseLink() {
    std::shared_ptr<ClientLink> link;
    {
      std::lock_guard lock(mu_);
      if (released_ || link_ == nullptr) return;
      released_ = true;
      link = link_;
    }
    link->Release();
  }

  asio::awaitable<absl::Status> EnsureOpen() {
    return open_.Run(this, &FramedClientStream::Open);
  }

  // The one opening (OpenOnce): a Cancel() or the deadline ends its wait for
  // a connection; a Cancel() that came while it opened is sent after it.
  asio::awaitable<absl::Status> Open() {
    if (state_->ended()) co_return state_->end_status();
    if (head_.deadline && Clock::now() >= *head_.deadline) {
      state_->End(CallResult(TooLate()));
      co_return TooLate();
    }
    // The plane, kept alive while it opens the call only: a channel dropped
    // with streams open closes its connections, which ends their calls.
    std::shared_ptr<FramedPlaneClient> plane = plane_.lock();
    if (plane == nullptr) {
      absl::Status gone = absl::UnavailableError(
          "the channel was destroyed before the call opened");
      state_->End(CallResult(gone));
      co_return gone;
    }
    std::string* first = first_message_ ? &*first_message_ : nullptr;
    OpenCancel cancel(cancel_open_);
    absl::StatusOr<std::shared_ptr<ClientLink>> link = co_await plane->Open(
        target_, head_, first, /*streaming=*/true, state_, cancel);
    if (!link.ok()) {
      // Cancelled (or timed out) meanwhile: that is how the call ended.
      if (!state_->End(CallResult(link.status()))) {
        co_return state_->end_status();
      }
      co_return link.status();
    }
    if (first != nullptr) {
      std::lock_guard lock(send_mu_);
      writes_done_ = true;
    }
    bool cancelled;
    {
      std::lock_guard lock(mu_);
      link_ = *std::move(link);
      cancelled = cancelled_;
    }
    if (cancelled) {
      link_->SendCancel();
      ReleaseLink();
    }
    co_return absl::OkStatus();
  }

  const std::weak_ptr<FramedPlaneClient> plane_;
  const std::string target_;
  CallRequest head_;  // the plane may take its method and metadata
  std::optional<std::string> first_message_;
  const std::shared_ptr<StreamState> state_;
  const std::shared_ptr<Signal> cancel_open_;  // Cancel() ends Open()'s wait
  OpenOnce open_;
  std::mutex mu_;
  // Set once by Open() (under mu_); read without it by the operations after
  // EnsureOpen() returned.
  std::shared_ptr<ClientLink> link_;
  bool cancelled_ = false;  // under mu_
  bool released_ = false;   // under mu_
  // Orders what the writers send: the messages, then the half-close.
  std::mutex send_mu_;
  bool writes_done_ = false;  // under send_mu_
};

// A unary call's state and, once open, its link, in one allocation; its
// CancelHook ends it through this, without a std::function.
struct UnaryCall final : CancelHook::Target {
  UnaryCall(std::size_t max_message,
            std::optional<StreamState::WireWindow> wire)
      : state(max_message, wire) {}

  // Ends the call, if it runs, and tells the server. Any thread.
  void Cancel(absl::Status why) override {
    std::shared_ptr<ClientLink> to_tell;
    {
      std::lock_guard lock(mu);
      if (!state.End(CallResult(std::move(why)), /*discard_unread=*/true)) {
        return;
      }
      to_tell = link;
    }
    if (to_tell) to_tell->SendCancel();
  }

  // Once the call is over (however it ended): cancels it if it still runs,
  // gives back what it held, and drops the link. A plane's record of the
  // call may own the state (and so this): no cycle outlives the call.
  void Finish() {
    // (Cancel() checks again: the call may end meanwhile.)
    if (!state.ended()) Cancel(absl::CancelledError("call cancelled"));
    std::shared_ptr<ClientLink> done;
    {
      // After any Cancel() that ended the call has taken its copy.
      std::lock_guard lock(mu);
      done = std::move(link);
    }
    done->Release();
  }

  StreamState state;
  std::mutex mu;
  std::shared_ptr<ClientLink> link;  // under mu
};

}  // namespace

asio::awaitable<CallResult> FramedPlaneClient::Unary(
    std::string_view target, CallRequest request,
    std::shared_ptr<CancelHook> cancel) {
  // Cancelled or expired before it was sent: the server never hears of it.
  if (std::optional<absl::Status> why = cancel->cancelled()) {
    co_return CallResult(*why);
  }
  if (request.deadline && Clock::now() >= *request.deadline) {
    co_return CallResult(TooLate());
  }
  auto call = std::make_shared<UnaryCall>(max_message_size(), wire_window());
  // While it opens, the deadline and TryCancel() end any wait for a
  // connection.
  OpenCancel stop(*cancel);
  absl::StatusOr<std::shared_ptr<ClientLink>> opened =
      co_await Open(target, request, &request.payload, /*streaming=*/false,
                    std::shared_ptr<StreamState>(call, &call->state), stop);
  if (!opened.ok()) {
    if (std::optional<absl::Status> why = cancel->cancelled()) {
      co_return CallResult(*why);
    }
    // Never sent (no connection could be made).
    CallResult failed(opened.status());
    failed.not_processed = absl::IsUnavailable(failed.status);
    co_return failed;
  }
  {
    std::lock_guard lock(call->mu);
    call->link = *std::move(opened);
  }
  // However the wait below ends, even by Asio's cancellation (a CANCELLED
  // result, or an exception).
  absl::Cleanup done = [&call] { call->Finish(); };
  // Once open, the deadline and TryCancel() end the call and tell the
  // server (at once if they came while it opened: after its head, then).
  cancel->Set(std::shared_ptr<CancelHook::Target>(call));
  CallResult end = co_await call->state.TakeEnd();
  // The limit the plane refined when it opened the call.
  InflateResponse(end, call->state.max_message());
  co_return std::move(end);
}

std::unique_ptr<ClientStream> FramedPlaneClient::StartStream(
    std::string_view target, CallRequest head,
    std::optional<std::string> first_message) {
  return std::make_unique<FramedClientStream>(
      shared_from_this(), std::string(target), std::move(head),
      std::move(first_message));
}

}  // namespace dynrpc::internal

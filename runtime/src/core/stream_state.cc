#include "core/stream_state.h"

#include <algorithm>
#include <unordered_set>
#include <utility>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/associated_cancellation_slot.hpp"
#include "boost/asio/associated_executor.hpp"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/execution_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::internal {

namespace asio = boost::asio;

// Every HeldWait of one execution context (io_context) that holds a
// handler. Its shutdown, which comes before the context destroys anything,
// destroys the handlers still held (see HeldWait).
class HeldWaits : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;

  explicit HeldWaits(asio::execution_context& context)
      : asio::execution_context::service(context) {}

  void Add(std::shared_ptr<HeldWait> wait) {
    std::lock_guard lock(mu_);
    waits_.insert(std::move(wait));
  }
  void Remove(const std::shared_ptr<HeldWait>& wait) {
    std::lock_guard lock(mu_);
    waits_.erase(wait);
  }

 private:
  void shutdown() override {
    std::unordered_set<std::shared_ptr<HeldWait>> waits;
    {
      std::lock_guard lock(mu_);
      waits.swap(waits_);
    }
    std::vector<HeldWait::Handler> dropped;
    for (const std::shared_ptr<HeldWait>& wait : waits) {
      std::lock_guard lock(wait->mu);
      if (wait->handler) dropped.push_back(*std::exchange(wait->handler, {}));
    }
    // Destroyed here, outside every lock: a frame's destruction may end
    // streams (and so take other waits' locks).
  }

  std::mutex mu_;
  std::unordered_set<std::shared_ptr<HeldWait>> waits_;
};

StreamState::StreamState(std::size_t max_message,
                         std::optional<WireWindow> wire)
    : max_message_(max_message),
      wire_overhead_(wire ? std::optional<std::size_t>(wire->overhead)
                          : std::nullopt) {}

void StreamState::WaitLocked(const asio::any_io_executor& executor,
                             Waiting& waiting) {
  waiting.signal_ = std::make_shared<Signal>(executor, 1);
  waiters_.push_back(waiting.signal_);
}

StreamState::Waiting::~Waiting() {
  if (signal_ == nullptr) return;
  std::lock_guard lock(state_.mu_);
  std::erase(state_.waiters_, signal_);
}

void StreamState::WakeAllLocked() {
  for (auto& w : waiters_) w->try_send(boost::system::error_code{});
  waiters_.clear();
}

std::optional<HeldWait::Handler> StreamState::TakeEndWaiterLocked() {
  if (end_waiter_ == nullptr) return std::nullopt;
  std::optional<HeldWait::Handler> waiter;
  HeldWaits* registry = nullptr;
  {
    std::lock_guard lock(end_waiter_->mu);
    if (!end_waiter_->handler) return std::nullopt;
    waiter = std::exchange(end_waiter_->handler, std::nullopt);
    registry = end_waiter_->registry;
  }
  // Alive: the handler was still held, so its context's shutdown has not
  // come to it (and the service outlives its shutdown).
  registry->Remove(end_waiter_);
  return waiter;
}

void StreamState::ResumeEndWaiter(std::optional<HeldWait::Handler> waiter,
                                  boost::system::error_code ec, Resume resume) {
  if (!waiter) return;
  asio::any_io_executor executor = std::move(waiter->executor);
  auto complete = [handler = std::move(waiter->handler), ec]() mutable {
    std::move(handler)(ec);
  };
  if (resume == Resume::kInline) {
    asio::dispatch(executor, std::move(complete));
  } else {
    asio::post(executor, std::move(complete));
  }
}

void StreamState::HoldEndWaiter(HeldWait::Handler handler) {
  asio::cancellation_slot slot =
      asio::get_associated_cancellation_slot(handler.handler);
  asio::execution_context& context =
      asio::query(handler.executor, asio::execution::context);
  std::unique_lock lock(mu_);
  if (end_) {  // it ended between TakeEnd()'s look and this
    lock.unlock();
    ResumeEndWaiter(std::move(handler), {}, Resume::kPost);
    return;
  }
  {
    std::lock_guard held(end_waiter_->mu);
    if (end_waiter_->registry == nullptr ||
        &end_waiter_->registry->context() != &context) {
      end_waiter_->registry = &asio::use_service<HeldWaits>(context);
    }
    end_waiter_->handler.emplace(std::move(handler));
  }
  end_waiter_->registry->Add(end_waiter_);
  if (slot.is_connected()) {
    // Cleared by the coroutine when it resumes, however the wait ends.
    slot.assign([this](asio::cancellation_type type) {
      if (type == asio::cancellation_type::none) return;
      std::optional<HeldWait::Handler> waiter;
      {
        std::lock_guard lock(mu_);
        waiter = TakeEndWaiterLocked();
      }
      ResumeEndWaiter(std::move(waiter), asio::error::operation_aborted,
                      Resume::kPost);
    });
  }
}

bool StreamState::Deliver(std::string message, Compression compressed_with) {
  std::lock_guard lock(mu_);
  if (end_) return true;  // ended meanwhile: dropped, nobody reads it
  if (!wire_overhead_) {
    outstanding_ += message.size() + kMessageOverhead;
    if (outstanding_ > static_cast<uint64_t>(kInitialWindow) +
                           2 * (max_message_ + kMessageOverhead)) {
      return false;
    }
  }
  heard_ = true;
  if (!inbound_) inbound_.emplace();
  inbound_->push_back(Inbound{std::move(message), compressed_with});
  WakeAllLocked();
  return true;
}

void StreamState::PeerDone() {
  std::lock_guard lock(mu_);
  peer_done_ = true;
  WakeAllLocked();
}

void StreamState::AddSendWindow(uint32_t bytes) {
  std::lock_guard lock(mu_);
  // A peer never owes us more than a window: a larger grant (a hostile or
  // broken peer) would let our writer queue without bound.
  send_window_ = std::min<int64_t>(send_window_ + bytes, kInitialWindow);
  WakeAllLocked();
}

void StreamState::SetInitialMetadata(Metadata metadata) {
  std::lock_guard lock(mu_);
  heard_ = true;
  initial_metadata_ = std::move(metadata);
}

bool StreamState::EndLost(absl::Status why) {
  CallResult result(std::move(why));
  std::optional<HeldWait::Handler> waiter;
  bool ended = false;
  {
    std::lock_guard lock(mu_);
    result.not_processed = !heard_ && absl::IsUnavailable(result.status);
    ended = EndLocked(std::move(result), /*discard_unread=*/true);
    if (ended) waiter = TakeEndWaiterLocked();
  }
  ResumeEndWaiter(std::move(waiter), {}, Resume::kPost);
  return ended;
}

bool StreamState::End(CallResult result, bool discard_unread, Resume resume) {
  std::optional<HeldWait::Handler> waiter;
  bool ended = false;
  {
    std::lock_guard lock(mu_);
    ended = EndLocked(std::move(result), discard_unread);
    if (ended) waiter = TakeEndWaiterLocked();
  }
  ResumeEndWaiter(std::move(waiter), {}, resume);
  return ended;
}

bool StreamState::EndLocked(CallResult result, bool discard_unread) {
  if (end_) return false;
  if (discard_unread) inbound_.reset();
  if (result.initial_metadata.empty()) {
    result.initial_metadata = std::move(initial_metadata_);
  }
  end_ = std::move(result);
  WakeAllLocked();
  return true;
}

uint32_t StreamState::TakeGrantLocked(std::size_t consumed) {
  unannounced_ += consumed;
  if (end_ || unannounced_ < static_cast<uint64_t>(kInitialWindow / 2)) {
    return 0;
  }
  uint64_t grant = std::exchange(unannounced_, 0);
  outstanding_ -= std::min(outstanding_, grant);
  return static_cast<uint32_t>(grant);
}

asio::awaitable<absl::StatusOr<std::optional<std::string>>> StreamState::Read(
    uint32_t* grant, std::size_t* wire_bytes) {
  *grant = 0;
  asio::any_io_executor executor = co_await asio::this_coro::executor;
  for (;;) {
    Waiting waiting(*this);
    std::optional<Inbound> taken;  // a compressed message, to inflate
    std::size_t limit = 0;
    {
      std::lock_guard lock(mu_);
      if (inbound_ && !inbound_->empty()) {
        Inbound message = std::move(inbound_->front());
        inbound_->pop_front();
        const std::size_t size = message.bytes.size();
        if (wire_bytes != nullptr) *wire_bytes = size;
        *grant = wire_overhead_ ? static_cast<uint32_t>(size + *wire_overhead_)
                                : TakeGrantLocked(size + kMessageOverhead);
        if (message.compressed_with == Compression::kIdentity) {
          co_return std::optional<std::string>(std::move(message.bytes));
        }
        taken = std::move(message);
        limit = max_message_;
      } else {
        if (end_) {
          if (end_->status.ok()) co_return std::optional<std::string>();
          co_return end_->status;
        }
        if (peer_done_) co_return std::optional<std::string>();
        WaitLocked(executor, waiting);
      }
    }
    if (taken) {
      // Inflated outside the lock: the connection's reader may deliver
      // meanwhile.
      absl::Status inflated = InflateInPlace(taken->compressed_with,
                                             taken->bytes, limit, "streamed");
      if (!inflated.ok()) {
        // The call fails, even if the peer has ended it OK meanwhile.
        std::lock_guard lock(mu_);
        if (end_ && end_->status.ok()) {
          end_->status = inflated;
          end_->has_message = false;
          end_->payload.clear();
        }
        co_return inflated;
      }
      co_return std::optional<std::string>(std::move(taken->bytes));
    }
    auto [ec] = co_await waiting.signal().async_receive(
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return absl::CancelledError("read cancelled");
  }
}

asio::awaitable<absl::Status> StreamState::ReserveSend(std::size_t bytes) {
  asio::any_io_executor executor = co_await asio::this_coro::executor;
  for (;;) {
    Waiting waiting(*this);
    {
      std::lock_guard lock(mu_);
      if (end_) {
        if (end_->status.ok()) {
          co_return absl::FailedPreconditionError(
              "the stream has already finished");
        }
        co_return end_->status;
      }
      if (wire_overhead_) co_return absl::OkStatus();  // the wire's window
      if (send_window_ > 0) {
        send_window_ -= static_cast<int64_t>(bytes + kMessageOverhead);
        co_return absl::OkStatus();
      }
      WaitLocked(executor, waiting);
    }
    auto [ec] = co_await waiting.signal().async_receive(
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return absl::CancelledError("write cancelled");
  }
}

asio::awaitable<std::optional<CallResult>> StreamState::WaitEnd(
    uint32_t* grant) {
  *grant = 0;
  asio::any_io_executor executor = co_await asio::this_coro::executor;
  for (;;) {
    Waiting waiting(*this);
    {
      std::lock_guard lock(mu_);
      if (end_) co_return *end_;
      std::size_t dropped = 0;
      if (inbound_) {
        for (const Inbound& m : *inbound_) {
          dropped += m.bytes.size() + wire_overhead_.value_or(kMessageOverhead);
        }
        inbound_.reset();
      }
      if (dropped > 0) {
        unannounced_ += dropped;
        uint64_t g = std::exchange(unannounced_, 0);
        outstanding_ -= std::min<uint64_t>(outstanding_, g);
        *grant = static_cast<uint32_t>(g);
        co_return std::nullopt;  // grant it, then wait again
      }
      WaitLocked(executor, waiting);
    }
    auto [ec] = co_await waiting.signal().async_receive(
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return CallResult(absl::CancelledError("wait cancelled"));
  }
}

asio::awaitable<CallResult> StreamState::TakeEnd() {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (end_) co_return std::move(*end_);  // consumed; still ended
      if (end_waiter_ == nullptr) end_waiter_ = std::make_shared<HeldWait>();
    }
    auto [ec] = co_await asio::async_initiate<
        const asio::as_tuple_t<asio::use_awaitable_t<>>,
        void(boost::system::error_code)>(
        [this](auto handler) {
          asio::any_io_executor executor =
              asio::get_associated_executor(handler);
          HoldEndWaiter({std::move(handler), std::move(executor)});
        },
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return CallResult(absl::CancelledError("wait cancelled"));
  }
}

void StreamState::set_max_message(std::size_t max_message) {
  std::lock_guard lock(mu_);
  max_message_ = max_message;
}

std::size_t StreamState::max_message() const {
  std::lock_guard lock(mu_);
  return max_message_;
}

std::optional<CallResult> StreamState::result() const {
  std::lock_guard lock(mu_);
  return end_;
}

bool StreamState::ended() const {
  std::lock_guard lock(mu_);
  return end_.has_value();
}

absl::Status StreamState::end_status() const {
  std::lock_guard lock(mu_);
  return end_ ? end_->status : absl::OkStatus();
}

}  // namespace dynrpc::internal

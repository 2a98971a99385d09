#include "tcp/stream_state.h"

#include <utility>

#include "boost/asio/as_tuple.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;

StreamState::StreamState(asio::any_io_executor executor)
    : readable_(executor, 1), writable_(executor, 1) {}

void StreamState::Deliver(std::string message) {
  {
    std::lock_guard lock(mu_);
    if (end_) return;
    inbound_.push_back(std::move(message));
  }
  readable_.try_send(boost::system::error_code{});
}

void StreamState::PeerDone() {
  {
    std::lock_guard lock(mu_);
    peer_done_ = true;
  }
  readable_.try_send(boost::system::error_code{});
}

void StreamState::AddSendWindow(uint32_t bytes) {
  {
    std::lock_guard lock(mu_);
    send_window_ += bytes;
  }
  writable_.try_send(boost::system::error_code{});
}

void StreamState::SetInitialMetadata(Metadata metadata) {
  std::lock_guard lock(mu_);
  initial_metadata_ = std::move(metadata);
}

bool StreamState::End(CallResult result, bool discard_unread) {
  {
    std::lock_guard lock(mu_);
    if (end_) return false;
    if (discard_unread) inbound_.clear();
    if (result.initial_metadata.empty()) {
      result.initial_metadata = std::move(initial_metadata_);
    }
    end_ = std::move(result);
  }
  readable_.try_send(boost::system::error_code{});
  writable_.try_send(boost::system::error_code{});
  return true;
}

uint32_t StreamState::TakeGrantLocked(std::size_t consumed) {
  unannounced_ += consumed;
  if (end_ || unannounced_ < static_cast<uint64_t>(kInitialWindow / 2)) {
    return 0;
  }
  return static_cast<uint32_t>(std::exchange(unannounced_, 0));
}

asio::awaitable<absl::StatusOr<std::optional<std::string>>> StreamState::Read(
    uint32_t* grant) {
  *grant = 0;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (!inbound_.empty()) {
        std::string message = std::move(inbound_.front());
        inbound_.pop_front();
        *grant = TakeGrantLocked(message.size() + kMessageOverhead);
        co_return std::optional<std::string>(std::move(message));
      }
      if (end_) {
        if (end_->status.ok()) co_return std::optional<std::string>();
        co_return end_->status;
      }
      if (peer_done_) co_return std::optional<std::string>();
    }
    auto [ec] = co_await readable_.async_receive(
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return absl::CancelledError("read cancelled");
  }
}

asio::awaitable<absl::Status> StreamState::ReserveSend(std::size_t bytes) {
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (end_) {
        if (end_->status.ok()) {
          co_return absl::FailedPreconditionError(
              "the stream has already finished");
        }
        co_return end_->status;
      }
      if (send_window_ > 0) {
        send_window_ -= static_cast<int64_t>(bytes + kMessageOverhead);
        co_return absl::OkStatus();
      }
    }
    auto [ec] = co_await writable_.async_receive(
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return absl::CancelledError("write cancelled");
  }
}

asio::awaitable<std::optional<CallResult>> StreamState::WaitEnd(
    uint32_t* grant) {
  *grant = 0;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      std::size_t dropped = 0;
      for (const std::string& m : inbound_) dropped += m.size() + kMessageOverhead;
      inbound_.clear();
      if (dropped > 0) {
        unannounced_ += dropped;
        *grant = static_cast<uint32_t>(std::exchange(unannounced_, 0));
      }
      if (end_) co_return *end_;
    }
    if (*grant > 0) co_return std::nullopt;  // grant it, then wait again
    auto [ec] = co_await readable_.async_receive(
        asio::as_tuple(asio::use_awaitable));
    if (ec) co_return CallResult(absl::CancelledError("wait cancelled"));
  }
}

bool StreamState::ended() const {
  std::lock_guard lock(mu_);
  return end_.has_value();
}

absl::Status StreamState::end_status() const {
  std::lock_guard lock(mu_);
  return end_ ? end_->status : absl::OkStatus();
}

}  // namespace dynrpc::internal::tcp

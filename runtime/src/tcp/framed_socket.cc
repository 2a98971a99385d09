#include "tcp/framed_socket.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "dynrpc/message_buffers.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;

namespace {
constexpr std::size_t kReadBufferSize = 64 * 1024;
}  // namespace

absl::Status SocketError(const boost::system::error_code& ec,
                         absl::string_view what) {
  if (ec == asio::error::eof) {
    return absl::UnavailableError(
        absl::StrCat(what, ": connection closed by the peer"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

FramedSocket::FramedSocket(asio::ip::tcp::socket socket,
                           std::size_t max_message_size)
    : strand_(socket.get_executor()),
      socket_(std::move(socket)),
      max_message_size_(max_message_size),
      read_buffer_(kReadBufferSize),
      wake_(strand_, asio::steady_timer::time_point::max()) {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  asio::ip::tcp::endpoint remote = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer"
             : (remote.address().is_v6()
                    ? absl::StrCat("[", remote.address().to_string(),
                                   "]:", remote.port())
                    : absl::StrCat(remote.address().to_string(), ":",
                                   remote.port()));
}

void FramedSocket::Send(std::string prefix, std::string payload) {
  asio::post(strand_, [self = shared_from_this(), prefix = std::move(prefix),
                       payload = std::move(payload)]() mutable {
    if (self->closed_) return;
    self->outbox_.emplace_back(std::move(prefix), std::move(payload));
    self->wake_.cancel();
  });
}

asio::awaitable<void> FramedSocket::WriteLoop(
    std::shared_ptr<FramedSocket> self) {
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await self->WriteQueued();
  self->Close();
}

asio::awaitable<void> FramedSocket::WriteQueued() {
  std::vector<std::pair<std::string, std::string>> batch;
  std::vector<asio::const_buffer> buffers;
  while (!closed_) {
    if (outbox_.empty()) {
      wake_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_.async_wait(as_tuple(use_awaitable));
      // Woken by Send() (more to write) or Close(), or the task was
      // cancelled.
      asio::cancellation_state state =
          co_await asio::this_coro::cancellation_state;
      if (state.cancelled() != asio::cancellation_type::none) break;
      continue;
    }
    batch.assign(std::make_move_iterator(outbox_.begin()),
                 std::make_move_iterator(outbox_.end()));
    outbox_.clear();
    buffers.clear();
    for (const auto& [prefix, payload] : batch) {
      buffers.push_back(asio::buffer(prefix));
      if (!payload.empty()) buffers.push_back(asio::buffer(payload));
    }
    auto [ec, n] =
        co_await asio::async_write(socket_, buffers, as_tuple(use_awaitable));
    for (auto& [prefix, payload] : batch) {
      RecycleMessageBuffer(std::move(payload));
    }
    batch.clear();
    if (ec) break;
  }
}

asio::awaitable<boost::system::error_code> FramedSocket::Fill(std::size_t n) {
  if (read_buffer_.size() - read_begin_ < n) {
    std::memmove(read_buffer_.data(), read_buffer_.data() + read_begin_,
                 buffered());
    read_end_ -= read_begin_;
    read_begin_ = 0;
  }
  while (buffered() < n) {
    auto [ec, got] = co_await socket_.async_read_some(
        asio::buffer(read_buffer_.data() + read_end_,
                     read_buffer_.size() - read_end_),
        as_tuple(use_awaitable));
    if (ec) co_return ec;
    read_end_ += got;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<boost::system::error_code> FramedSocket::ReadExact(
    char* out, std::size_t n) {
  std::size_t from_buffer = std::min(n, buffered());
  std::memcpy(out, read_buffer_.data() + read_begin_, from_buffer);
  read_begin_ += from_buffer;
  if (from_buffer == n) co_return boost::system::error_code{};
  std::size_t rest = n - from_buffer;
  if (rest < read_buffer_.size() / 2) {
    // Small remainder: go through the buffer so the next frame's header
    // arrives with it.
    if (auto ec = co_await Fill(rest)) co_return ec;
    std::memcpy(out + from_buffer, read_buffer_.data() + read_begin_, rest);
    read_begin_ += rest;
    co_return boost::system::error_code{};
  }
  auto [ec, got] = co_await asio::async_read(
      socket_, asio::buffer(out + from_buffer, rest), as_tuple(use_awaitable));
  co_return ec;
}

asio::awaitable<boost::system::error_code> FramedSocket::Discard(
    std::size_t n) {
  while (n > 0) {
    if (buffered() == 0) {
      if (auto ec = co_await Fill(1)) co_return ec;
    }
    std::size_t k = std::min(n, buffered());
    read_begin_ += k;
    n -= k;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<absl::StatusOr<InFrame>> FramedSocket::ReadFrame() {
  if (discard_ > 0) {
    std::size_t n = std::exchange(discard_, 0);
    if (auto ec = co_await Discard(n)) {
      co_return SocketError(ec, absl::StrCat("connection to ", peer_));
    }
  }
  if (auto ec = co_await Fill(kFrameHeaderSize)) {
    co_return SocketError(ec, absl::StrCat("connection to ", peer_));
  }
  absl::StatusOr<FrameHeader> header = DecodeFrameHeader(
      std::string_view(read_buffer_.data() + read_begin_, kFrameHeaderSize));
  if (!header.ok()) co_return header.status();
  read_begin_ += kFrameHeaderSize;

  InFrame frame;
  frame.header = *header;
  if (header->head_len > kMaxHeadSize ||
      header->payload_len > max_message_size_) {
    // Returned at once, so the call can be answered before the peer has
    // finished sending it; the next ReadFrame() drops its bytes.
    frame.oversized = true;
    discard_ = std::size_t{header->head_len} + header->payload_len;
    co_return frame;
  }
  frame.head.resize(header->head_len);
  boost::system::error_code ec =
      co_await ReadExact(frame.head.data(), frame.head.size());
  if (!ec) {
    frame.payload = TakeMessageBuffer(header->payload_len);
    frame.payload.resize(header->payload_len);
    ec = co_await ReadExact(frame.payload.data(), frame.payload.size());
  }
  if (ec) co_return SocketError(ec, absl::StrCat("connection to ", peer_));
  co_return frame;
}

void FramedSocket::Close() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->closed_) return;
    self->closed_ = true;
    boost::system::error_code ec;
    self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    self->socket_.close(ec);
    self->outbox_.clear();
    self->wake_.cancel();
  });
}

}  // namespace dynrpc::internal::tcp

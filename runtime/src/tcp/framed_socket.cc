#include "tcp/framed_socket.h"

#include <algorithm>
#include <array>
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
#include "net/sockets.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;

namespace {
constexpr std::size_t kReadBufferSize = 64 * 1024;
// A frame's payload buffer reserves at most this much at first and grows as
// its bytes arrive, so a header claiming a large payload costs nothing until
// the payload comes.
constexpr std::size_t kFirstPayloadChunk = 256 * 1024;
// The payload is read in steps of at least this much (and at most what has
// arrived so far).
constexpr std::size_t kPayloadStep = 16 * 1024;
// The smallest payload the next read expects again (see ReadFrame()): the
// smallest message buffer that is recycled.
constexpr std::size_t kMinLentPayload = 64 * 1024;
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
                           const TcpConfig& config)
    : strand_(socket.get_executor()),
      socket_(std::move(socket)),
      max_message_size_(config.max_message_size),
      read_timeout_(config.read_timeout),
      max_queued_bytes_(config.max_queued_bytes),
      // Not zeroed: its pages are touched only as bytes arrive.
      read_buffer_(std::make_unique_for_overwrite<char[]>(kReadBufferSize)),
      last_read_(std::chrono::steady_clock::now()),
      watchdog_(strand_),
      room_(strand_, asio::steady_timer::time_point::max()),
      wake_(strand_, asio::steady_timer::time_point::max()) {
  peer_ = net::PrepareSocket(socket_);
  net::SetKeepalive(socket_, config.keepalive_interval,
                    config.keepalive_timeout);
}

void FramedSocket::Send(std::string prefix, std::string payload, Burst burst) {
  const std::size_t bytes = prefix.size() + payload.size();
  bool wake = false;
  bool flush = false;
  {
    std::lock_guard lock(out_mu_);
    if (out_closed_) return;
    queued_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    outbox_.push_back(Frame{std::move(prefix), std::move(payload)});
    outbox_bytes_ += bytes;
    if (burst == Burst::kCall) ++call_frames_;
    if (!writing_ && outbox_bytes_ <= kMaxInlineBytes &&
        (outbox_.size() >= kOtherFlushFrames ||
         (burst == Burst::kCall && call_frames_ >= read_burst_.Group()))) {
      writing_ = inline_writing_ = true;
      TakeOutboxLocked(inline_batch_);
      flush = true;
    } else {
      // One wake-up per batch: the writer takes everything queued by then.
      wake = !std::exchange(wake_posted_, true);
    }
  }
  if (flush) {
    FlushInline();
  } else if (wake) {
    PostWake();
  }
}

void FramedSocket::TakeOutboxLocked(std::vector<Frame>& into) {
  into.assign(std::make_move_iterator(outbox_.begin()),
              std::make_move_iterator(outbox_.end()));
  outbox_.clear();
  outbox_bytes_ = 0;
  call_frames_ = 0;
}

void FramedSocket::PostWake() {
  asio::post(strand_, [self = shared_from_this()] { self->wake_.cancel(); });
}

void FramedSocket::FlushInline() {
  inline_iov_.clear();
  for (const Frame& frame : inline_batch_) {
    frame.ForEachUnsent([&](const char* data, std::size_t size) {
      inline_iov_.push_back({const_cast<char*>(data), size});
    });
  }
  // The descriptor stays open meanwhile: Close() leaves closing it to us.
  // What the socket does not take (full, or failed: the writer meets the
  // error itself) the writer sends.
  const std::size_t written =
      net::SendNow(socket_.native_handle(), inline_iov_);
  // Frames wholly written are done; the first one not notes how much of it
  // went, and it and those after it go back to the front of the queue.
  std::size_t left = written;
  std::size_t done = 0;
  for (; done < inline_batch_.size(); ++done) {
    Frame& frame = inline_batch_[done];
    const std::size_t unsent = frame.size() - frame.sent;
    if (left < unsent) {
      frame.sent += left;
      break;
    }
    left -= unsent;
    RecycleMessageBuffer(std::move(frame.payload));
  }
  bool wake = false;
  bool close = false;
  {
    std::lock_guard lock(out_mu_);
    if (!out_closed_) {
      for (auto it = inline_batch_.begin() + done; it != inline_batch_.end();
           ++it) {
        outbox_bytes_ += it->size() - it->sent;
      }
      outbox_.insert(outbox_.begin(),
                     std::make_move_iterator(inline_batch_.begin() + done),
                     std::make_move_iterator(inline_batch_.end()));
    }
    // Emptied before the send side is given back: the next holder refills
    // it.
    inline_batch_.clear();
    writing_ = inline_writing_ = false;
    wake = !outbox_.empty() && !std::exchange(wake_posted_, true);
    close = std::exchange(close_pending_, false);
  }
  Dequeued(written, /*on_strand=*/false);
  if (wake) {
    PostWake();
  }
  if (close) {
    asio::post(strand_, [self = shared_from_this()] {
      boost::system::error_code ec;
      self->socket_.close(ec);
    });
  }
}

void FramedSocket::Dequeued(std::size_t written, bool on_strand) {
  const std::size_t before =
      queued_bytes_.fetch_sub(written, std::memory_order_relaxed);
  if (before - written > max_queued_bytes_) return;
  if (on_strand) {
    room_.cancel();  // a reader waiting in WaitForRoom() goes on
  } else if (before > max_queued_bytes_) {
    asio::post(strand_, [self = shared_from_this()] { self->room_.cancel(); });
  }
}

asio::awaitable<void> FramedSocket::WriteLoop(
    std::shared_ptr<FramedSocket> self) {
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await self->WriteQueued();
  self->Close();
}

asio::awaitable<void> FramedSocket::WriteQueued() {
  std::vector<Frame> batch;
  std::vector<asio::const_buffer> buffers;
  while (!closed_) {
    {
      std::lock_guard lock(out_mu_);
      // From here on a Send() posts a new wake-up: it runs once the writer
      // waits (both are on the strand), or finds it writing (and it looks
      // again before it waits), so no frame is left behind.
      wake_posted_ = false;
      // While an inline flush writes, it has the socket: it wakes the
      // writer when it is done if frames are left.
      if (!writing_) {
        TakeOutboxLocked(batch);
        writing_ = !batch.empty();
      }
    }
    if (batch.empty()) {
      // Looked at before each wait: a cancellation that came while the
      // writer wrote reached no wait (core/task_group.h: TaskCancelled()).
      asio::cancellation_state state =
          co_await asio::this_coro::cancellation_state;
      if (state.cancelled() != asio::cancellation_type::none) break;
      wake_.expires_at(asio::steady_timer::time_point::max());
      // Woken by Send() (more to write) or Close(), or the task was
      // cancelled (seen at the top of the next turn).
      co_await wake_.async_wait(as_tuple(use_awaitable));
      continue;
    }
    buffers.clear();
    for (const Frame& frame : batch) {
      frame.ForEachUnsent([&](const char* data, std::size_t size) {
        buffers.push_back(asio::buffer(data, size));
      });
    }
    auto [ec, n] = co_await asio::async_write(socket_, buffers, net::WriteAll(),
                                              as_tuple(use_awaitable));
    std::size_t written = 0;
    for (Frame& frame : batch) {
      written += frame.size() - frame.sent;
      RecycleMessageBuffer(std::move(frame.payload));
    }
    batch.clear();
    {
      std::lock_guard lock(out_mu_);
      // A write that failed or was cancelled may have sent part of a frame:
      // nobody writes after it (the connection closes).
      writing_ = static_cast<bool>(ec);
    }
    Dequeued(written, /*on_strand=*/true);
    if (ec) break;
  }
}

void FramedSocket::StartFrameClock() {
  if (in_frame_) return;
  in_frame_ = true;
  stall_deadline_ = std::chrono::steady_clock::now() + read_timeout_;
  ArmWatchdog();
}

void FramedSocket::ArmWatchdog() {
  if (watchdog_armed_) return;
  watchdog_armed_ = true;
  watchdog_.expires_at(stall_deadline_);
  watchdog_.async_wait(
      [weak = weak_from_this()](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (ec || self == nullptr) return;
        self->watchdog_armed_ = false;
        if (!self->in_frame_ || self->closed_) return;
        if (std::chrono::steady_clock::now() < self->stall_deadline_) {
          self->ArmWatchdog();  // bytes came meanwhile: wait for the new limit
          return;
        }
        self->stalled_ = true;
        self->Close();
      });
}

template <typename MutableBuffers>
asio::awaitable<boost::system::error_code> FramedSocket::ReadSome(
    const MutableBuffers& buffers, std::size_t& got) {
  // A cancellation that came while the reader was not waiting would not
  // end the read below (core/task_group.h: TaskCancelled()).
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  if (state.cancelled() != asio::cancellation_type::none) {
    got = 0;
    co_return asio::error::operation_aborted;
  }
  auto [ec, k] =
      co_await socket_.async_read_some(buffers, as_tuple(use_awaitable));
  got = k;
  if (k > 0) {
    last_read_ = std::chrono::steady_clock::now();
    if (in_frame_) stall_deadline_ = last_read_ + read_timeout_;
  }
  co_return ec;
}

asio::awaitable<boost::system::error_code> FramedSocket::Fill(std::size_t n) {
  if (kReadBufferSize - read_begin_ < n) {
    std::memmove(read_buffer_.get(), read_buffer_.get() + read_begin_,
                 buffered());
    read_end_ -= read_begin_;
    read_begin_ = 0;
  }
  while (buffered() < n) {
    // Part of a frame is here: the rest must not stall.
    if (buffered() > 0) StartFrameClock();
    std::size_t got = 0;
    boost::system::error_code ec =
        co_await ReadSome(asio::buffer(read_buffer_.get() + read_end_,
                                       kReadBufferSize - read_end_),
                          got);
    if (ec) co_return ec;
    read_end_ += got;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<boost::system::error_code> FramedSocket::ReadExact(
    char* out, std::size_t n) {
  std::size_t from_buffer = std::min(n, buffered());
  std::memcpy(out, read_buffer_.get() + read_begin_, from_buffer);
  read_begin_ += from_buffer;
  if (from_buffer == n) co_return boost::system::error_code{};
  std::size_t rest = n - from_buffer;
  if (rest < kReadBufferSize / 2) {
    // Small remainder: go through the buffer so the next frame's header
    // arrives with it.
    if (auto ec = co_await Fill(rest)) co_return ec;
    std::memcpy(out + from_buffer, read_buffer_.get() + read_begin_, rest);
    read_begin_ += rest;
    co_return boost::system::error_code{};
  }
  std::size_t done = from_buffer;
  while (done < n) {
    std::size_t got = 0;
    if (auto ec = co_await ReadSome(asio::buffer(out + done, n - done), got)) {
      co_return ec;
    }
    done += got;
  }
  co_return boost::system::error_code{};
}

asio::awaitable<boost::system::error_code> FramedSocket::ReadPayload(
    std::string& payload, std::size_t n) {
  // A recycled buffer large enough for the whole message is already
  // resident: the bytes go straight into it (no growth, no zeroing, no
  // copy beyond the socket's). Otherwise start small and grow: the buffer is
  // written (and zeroed first) only a step ahead of the bytes that have
  // arrived, at most as many again or kPayloadStep, so a peer that claims a
  // large payload and sends little makes us hold little.
  if (TakeRecycledForOverwrite(n, payload)) {
    co_return co_await ReadExact(payload.data(), n);
  }
  std::size_t first = std::min(n, kFirstPayloadChunk);
  payload.clear();
  if (payload.capacity() < first) payload.reserve(first);
  while (payload.size() < n) {
    std::size_t have = payload.size();
    std::size_t step = std::min(n - have, std::max(kPayloadStep, have));
    if (payload.capacity() < have + step) {
      payload.reserve(std::min(n, std::max(have + step, have * 4)));
    }
    payload.resize(have + step);
    if (auto ec = co_await ReadExact(payload.data() + have, step)) {
      co_return ec;
    }
  }
  co_return boost::system::error_code{};
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

asio::awaitable<boost::system::error_code> FramedSocket::ReadAhead(
    LentBuffer& payload, InFrame& frame, std::size_t& payload_got) {
  payload_got = 0;
  // One read lays the bytes out as the expected frame would have them, its
  // header and head in the (empty) read buffer and its payload in `payload`,
  // but takes no more than the read buffer holds, so that a frame of another
  // shape can be put back in it. (A payload of kMinLentPayload or more does
  // not fit beside the head: the read ends inside the payload.)
  read_begin_ = read_end_ = 0;
  char* const base = read_buffer_.get();
  const std::size_t lead = kFrameHeaderSize + expect_head_;
  const std::size_t into_payload =
      std::min(payload.size(), kReadBufferSize - lead);
  const std::array<asio::mutable_buffer, 2> buffers = {
      asio::buffer(base, lead), asio::buffer(payload.data(), into_payload)};
  std::size_t got = 0;
  boost::system::error_code ec = co_await ReadSome(buffers, got);
  const std::size_t in_lead = std::min(got, lead);
  const std::size_t in_payload = got - in_lead;
  if (!ec && got >= lead) {
    absl::StatusOr<FrameHeader> header =
        DecodeFrameHeader(std::string_view(base, kFrameHeaderSize));
    if (header.ok() && header->head_len == expect_head_ &&
        header->payload_len == payload.size()) {
      frame.header = *header;
      frame.head.assign(base + kFrameHeaderSize, expect_head_);
      frame.payload = payload.Keep();
      payload_got = in_payload;
      co_return ec;
    }
  }
  // Another frame: its bytes go back in order.
  std::memcpy(base + in_lead, payload.data(), in_payload);
  read_end_ = got;
  payload.Return();
  co_return ec;
}

absl::Status FramedSocket::ReadError(
    const boost::system::error_code& ec) const {
  if (stalled_) {
    return absl::UnavailableError(
        absl::StrCat("connection to ", peer_,
                     " closed: a frame stalled for longer than "
                     "DYN_TCP_READ_TIMEOUT=",
                     read_timeout_.count(), " ms"));
  }
  return SocketError(ec, absl::StrCat("connection to ", peer_));
}

asio::awaitable<absl::StatusOr<InFrame>> FramedSocket::ReadFrame() {
  if (discard_ > 0) {
    std::size_t n = std::exchange(discard_, 0);
    if (n > buffered()) StartFrameClock();
    if (auto ec = co_await Discard(n)) co_return ReadError(ec);
    in_frame_ = false;
  }
  // (Each awaited helper is a coroutine frame of its own: the checks before
  // them keep a frame that has arrived whole from allocating any.)
  InFrame frame;
  if (buffered() < kFrameHeaderSize) {
    // The frames of the last read are all taken: how many there were sizes
    // the bursts Send() expects.
    read_burst_.Read(std::exchange(frames_this_read_, 0));
    // After a large frame the next is read as if shaped like it, its
    // payload straight into a lent message buffer, not copied out of the
    // read buffer (once the reads agree with the frame's shape; a frame of
    // another shape costs the memcpy that puts its bytes back).
    LentBuffer ahead;  // returned by its destructor if this frame ends
    if (expect_payload_ != 0 && buffered() == 0 &&
        ahead.Borrow(expect_payload_)) {
      std::size_t payload_got = 0;
      boost::system::error_code ec =
          co_await ReadAhead(ahead, frame, payload_got);
      if (ec) co_return ReadError(ec);
      if (!frame.payload.empty()) {  // the frame was shaped as expected
        ++frames_this_read_;
        if (payload_got < frame.payload.size()) {
          StartFrameClock();
          ec = co_await ReadExact(frame.payload.data() + payload_got,
                                  frame.payload.size() - payload_got);
          if (ec) co_return ReadError(ec);
        }
        in_frame_ = false;
        co_return frame;
      }
    }
    if (auto ec = co_await Fill(kFrameHeaderSize)) co_return ReadError(ec);
  }
  ++frames_this_read_;
  absl::StatusOr<FrameHeader> header = DecodeFrameHeader(
      std::string_view(read_buffer_.get() + read_begin_, kFrameHeaderSize));
  if (!header.ok()) co_return header.status();
  read_begin_ += kFrameHeaderSize;

  frame.header = *header;
  expect_head_ = expect_payload_ = 0;
  if (header->head_len > kMaxHeadSize ||
      header->payload_len > max_message_size_) {
    // Returned at once, so the call can be answered before the peer has
    // finished sending it; the next ReadFrame() drops its bytes.
    frame.oversized = true;
    discard_ = std::size_t{header->head_len} + header->payload_len;
    in_frame_ = false;
    co_return frame;
  }
  // (A head of at most half the read buffer leaves ReadAhead() room for a
  // useful part of the payload.)
  if (header->payload_len >= kMinLentPayload &&
      kFrameHeaderSize + header->head_len <= kReadBufferSize / 2) {
    expect_head_ = header->head_len;
    expect_payload_ = header->payload_len;
  }
  const std::size_t body = std::size_t{header->head_len} + header->payload_len;
  if (buffered() >= body) {
    // All of it is here (the common case for small calls): copied out as
    // it is, no waiting.
    const char* at = read_buffer_.get() + read_begin_;
    frame.head.assign(at, header->head_len);
    frame.payload.assign(at + header->head_len, header->payload_len);
    read_begin_ += body;
    in_frame_ = false;
    co_return frame;
  }
  StartFrameClock();  // part of it is still to come
  frame.head.resize(header->head_len);
  boost::system::error_code ec =
      co_await ReadExact(frame.head.data(), frame.head.size());
  if (!ec) ec = co_await ReadPayload(frame.payload, header->payload_len);
  if (ec) co_return ReadError(ec);
  in_frame_ = false;
  co_return frame;
}

asio::awaitable<void> FramedSocket::WaitForRoom() {
  asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
  while (!closed_ && over_queued() &&
         state.cancelled() == asio::cancellation_type::none) {
    room_.expires_at(asio::steady_timer::time_point::max());
    // Woken by the writer (room made), Close() or cancellation; the
    // re-check decides.
    (void)co_await room_.async_wait(as_tuple(use_awaitable));
  }
}

void FramedSocket::Close() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->closed_) return;
    self->closed_ = true;
    boost::system::error_code ec;
    self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    bool close_now = true;
    {
      std::lock_guard lock(self->out_mu_);
      self->out_closed_ = true;
      std::vector<Frame> dropped;
      self->TakeOutboxLocked(dropped);
      // An inline flush is in sendmsg() on the descriptor: closing it now
      // could hand its number to another socket before that returns.
      if (self->inline_writing_) {
        self->close_pending_ = true;
        close_now = false;
      }
    }
    if (close_now) self->socket_.close(ec);
    self->wake_.cancel();
    self->room_.cancel();
    self->watchdog_.cancel();
  });
}

}  // namespace dynrpc::internal::tcp

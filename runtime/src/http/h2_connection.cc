#include "http/h2_connection.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "dynrpc/message_buffers.h"
#include "dynrpc/status_macros.h"
#include "net/sockets.h"

namespace dynrpc::internal::http {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;

namespace {

constexpr std::size_t kReadBufferSize = 64 * 1024;
// A write gathers at most this much of what the session has to send.
constexpr std::size_t kWriteBatch = 1 << 20;
// DATA payload pieces shorter than this are copied into the write batch
// (one buffer for many small messages); longer ones are written from where
// they are.
constexpr std::size_t kCopyBelow = 4096;
// An inline flush (SentLocked) gathers at most this much, so a caller's
// thread never writes a large batch itself: the writer takes the rest.
constexpr std::size_t kMaxInlineBatch = 256 << 10;
// Frames of any kind (streamed messages) queued since the last write that
// are flushed inline, as a group of calls' ends is.
constexpr std::size_t kFlushSends = 32;
// Flow-control windows. Fixed (DYN_HTTP2_ADAPTIVE_WINDOW=false): hyper's
// defaults, the library the guide's original plane used. Adaptive: from
// HTTP/2's default, doubled toward the measured bandwidth-delay product.
constexpr int32_t kFixedStreamWindow = 2 << 20;
constexpr int32_t kAdaptiveInitialWindow = 65535;
constexpr int32_t kMaxWindow = 16 << 20;
constexpr int32_t kConnectionWindow = 32 << 20;
// Header blocks over this are refused (the TCP plane's metadata limit),
// measured as RFC 9113 section 6.5.2's header-list size (each field: its
// name, its value and 32 bytes) and announced in
// SETTINGS_MAX_HEADER_LIST_SIZE.
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;
constexpr std::size_t kHeaderFieldOverhead = 32;

// Inline for a usual block: no allocation (nghttp2 copies the fields).
using NvArray = absl::InlinedVector<nghttp2_nv, 12>;

NvArray ToNv(const Headers& headers) {
  NvArray nv;
  nv.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                  name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

}  // namespace

Metadata MetadataFromHeaders(const Headers& headers,
                             std::vector<std::string>* undecodable) {
  Metadata metadata;
  for (const auto& [name, value] : headers) {
    if (IsReservedHeader(name) || name == kCallKindHeader) continue;
    std::optional<std::string> decoded = DecodeMetadataValue(name, value);
    if (!decoded) {
      if (undecodable != nullptr) undecodable->push_back(name);
      continue;
    }
    metadata.emplace_back(name, *std::move(decoded));
  }
  return metadata;
}

std::optional<std::string_view> FindHeader(const Headers& headers,
                                           std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

H2Connection::H2Connection(Role role, asio::ip::tcp::socket socket,
                           const HttpConfig& config)
    : role_(role),
      config_(config),
      socket_(std::move(socket)),
      peer_(net::PrepareSocket(socket_)),
      wake_(std::make_shared<Signal>(socket_.get_executor(), 1)) {}

H2Connection::~H2Connection() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

absl::Status H2Connection::Start() {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks,
                                                          &OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
                                                            &OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks,
                                                         &OnStreamClose);
  nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks,
                                                                 &DataLength);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &OnFrameSend);
  nghttp2_session_callbacks_set_send_data_callback(callbacks, &SendData);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  // Windows are given back as the application reads (GiveBackLocked).
  nghttp2_option_set_no_auto_window_update(option, 1);
  // Metadata values may begin or end with spaces (gRPC allows it).
  nghttp2_option_set_no_rfc9113_leading_and_trailing_ws_validation(option, 1);
  int rv =
      role_ == Role::kClient
          ? nghttp2_session_client_new2(&session_, callbacks, this, option)
          : nghttp2_session_server_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    return absl::InternalError(
        absl::StrCat("nghttp2 session: ", nghttp2_strerror(rv)));
  }
  window_ =
      config_.adaptive_window ? kAdaptiveInitialWindow : kFixedStreamWindow;
  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE,
       static_cast<uint32_t>(config_.max_frame_size)},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(window_)},
      // Advisory (nghttp2 does not enforce it; OnHeader does): a peer that
      // honours it fails an oversized block itself.
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(kMaxHeaderBytes)},
  };
  if (role_ == Role::kServer) {
    settings.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                        static_cast<uint32_t>(std::min<std::size_t>(
                            config_.max_concurrent_streams, 0x7fffffff))});
  } else {
    settings.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  }
  std::lock_guard lock(mu_);
  rv = nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(),
                               settings.size());
  if (rv == 0) {
    rv = nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                               kConnectionWindow);
  }
  if (rv != 0) {
    return absl::InternalError(
        absl::StrCat("nghttp2 settings: ", nghttp2_strerror(rv)));
  }
  stats_.local_window = window_;
  // No Wake(): the writer, spawned after Start(), sends them on its first
  // pass.
  return absl::OkStatus();
}

void H2Connection::Wake() { wake_->try_send(boost::system::error_code{}); }

asio::awaitable<void> H2Connection::ReadLoop(
    std::shared_ptr<H2Connection> self) {
  co_await self->Read();
}

asio::awaitable<void> H2Connection::WriteLoop(
    std::shared_ptr<H2Connection> self) {
  co_await self->Write();
}

asio::awaitable<void> H2Connection::Read() {
  co_await asio::this_coro::throw_if_cancelled(false);
  // Not zeroed: a page of it is touched only when bytes arrive there, so an
  // idle connection holds one or two of its 16 pages, not all of them.
  std::unique_ptr<uint8_t[]> buffer =
      std::make_unique_for_overwrite<uint8_t[]>(kReadBufferSize);
  // Looked at before each wait (core/task_group.h: TaskCancelled()).
  const asio::cancellation_state state =
      co_await asio::this_coro::cancellation_state;
  for (;;) {
    if (state.cancelled() != asio::cancellation_type::none) {
      Close(absl::UnavailableError(absl::StrCat("HTTP/2 connection to ", peer_,
                                                ": its reader stopped")));
      break;
    }
    auto [ec, n] = co_await socket_.async_read_some(
        asio::buffer(buffer.get(), kReadBufferSize), as_tuple(use_awaitable));
    if (ec) {
      Close(absl::UnavailableError(
          ec == asio::error::eof ? absl::StrCat("HTTP/2 connection to ", peer_,
                                                " closed by the peer")
                                 : absl::StrCat("HTTP/2 connection to ", peer_,
                                                " lost: ", ec.message())));
      break;
    }
    last_read_ = Clock::now();
    std::vector<std::shared_ptr<H2Stream>> requests;
    bool failed = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) break;
      ends_this_read_ = 0;
      ssize_t rv = nghttp2_session_mem_recv(session_, buffer.get(), n);
      read_burst_.Read(ends_this_read_);
      if (rv < 0) {
        // A connection error: nghttp2 has queued a GOAWAY; the writer sends
        // it and then closes (the session wants neither read nor write).
        absl::Status why = absl::UnavailableError(
            absl::StrCat("HTTP/2 protocol error on the connection to ", peer_,
                         ": ", nghttp2_strerror(static_cast<int>(rv))));
        for (auto& [id, stream] : streams_) FailStreamLocked(*stream, why);
        failed = true;
      }
      requests.swap(new_requests_);
      // Only when the read left the writer something to do: frames the
      // session answers with (SETTINGS and PING acks, RST_STREAM, GOAWAY),
      // DATA a WINDOW_UPDATE let go, or the session's end. A call's frames
      // wake it (or go out inline) when the call queues them; a wake for
      // nothing costs a trip through the scheduler and a reactor poll.
      if (failed || NeedsWriterLocked()) Wake();
    }
    // Outside the mutex: starting a call may run it at once.
    for (auto& stream : requests) OnRequest(std::move(stream));
    if (failed) break;
  }
}

void H2Connection::BatchCopy(const char* data, std::size_t size) {
  if (size == 0) return;
  if (!batch_pieces_.empty() && batch_pieces_.back().data == nullptr) {
    batch_pieces_.back().size += size;  // the bytes follow on
  } else {
    batch_pieces_.push_back({nullptr, batch_bytes_.size(), size});
  }
  batch_bytes_.append(data, size);
  batch_size_ += size;
}

void H2Connection::BatchPayload(const char* data, std::size_t size) {
  if (size < kCopyBelow) {
    BatchCopy(data, size);
    return;
  }
  batch_pieces_.push_back({data, 0, size});
  batch_size_ += size;
}

void H2Connection::ReleaseBatch() {
  batch_bytes_.clear();
  batch_pieces_.clear();
  batch_size_ = 0;
  batch_sent_ = 0;
  for (std::string& done : batch_done_) RecycleMessageBuffer(std::move(done));
  batch_done_.clear();
  batch_streams_.clear();
}

absl::Status H2Connection::FillBatchLocked(std::size_t limit) {
  pending_sends_ = pending_ends_ = 0;
  while (batch_size_ < limit) {
    const uint8_t* data = nullptr;
    // DATA frames come through SendData() meanwhile.
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      return absl::InternalError(absl::StrCat(
          "HTTP/2 session failed: ", nghttp2_strerror(static_cast<int>(n))));
    }
    if (n == 0) break;
    BatchCopy(reinterpret_cast<const char*>(data), n);
  }
  return absl::OkStatus();
}

template <typename F>
void H2Connection::ForEachUnsent(F&& f) const {
  std::size_t skip = batch_sent_;
  for (const BatchPiece& piece : batch_pieces_) {
    if (skip >= piece.size) {
      skip -= piece.size;
      continue;
    }
    const char* data =
        piece.data != nullptr ? piece.data : batch_bytes_.data() + piece.offset;
    f(data + skip, piece.size - skip);
    skip = 0;
  }
}

asio::awaitable<void> H2Connection::Write() {
  co_await asio::this_coro::throw_if_cancelled(false);
  std::vector<asio::const_buffer> buffers;
  bool woken = false;  // by Wake(), since the writer last looked
  for (;;) {
    bool finished = false;
    absl::Status failure;
    {
      std::lock_guard lock(mu_);
      if (closed_) break;
      // While an inline flush holds the batch, it wakes us if it leaves
      // anything.
      if (!writing_) {
        // A batch not empty is what an inline flush left.
        if (batch_size_ == 0) failure = FillBatchLocked(kWriteBatch);
        finished = batch_size_ == 0 && !nghttp2_session_want_read(session_) &&
                   !nghttp2_session_want_write(session_);
        ForEachUnsent([&](const char* data, std::size_t size) {
          buffers.push_back(asio::buffer(data, size));
        });
        writing_ = !buffers.empty();
      }
      if (std::exchange(woken, false) && buffers.empty() && !finished) {
        ++stats_.writer_idle_wakes;
      }
    }
    if (!failure.ok()) {
      Close(std::move(failure));  // outside the mutex: it closes the socket
      break;
    }
    if (!buffers.empty()) {
      auto [ec, n] = co_await asio::async_write(
          socket_, buffers, net::WriteAll(), as_tuple(use_awaitable));
      buffers.clear();
      if (ec) {
        Close(absl::UnavailableError(absl::StrCat(
            "HTTP/2 connection to ", peer_, " lost: ", ec.message())));
        break;
      }
      std::lock_guard lock(mu_);
      ReleaseBatch();
      writing_ = false;
      continue;
    }
    if (finished) {
      Close(absl::UnavailableError(
          absl::StrCat("HTTP/2 connection to ", peer_, " ended (GOAWAY)")));
      break;
    }
    asio::cancellation_state state =
        co_await asio::this_coro::cancellation_state;
    bool cancelled = state.cancelled() != asio::cancellation_type::none;
    if (!cancelled) {
      auto [ec] = co_await wake_->async_receive(as_tuple(use_awaitable));
      cancelled = static_cast<bool>(ec);
      woken = true;
    }
    if (cancelled) {
      // Cancelled (the server or client shuts down): without its writer
      // the connection is over. Closed now, so that no inline write can
      // follow a frame this writer left half-written, and no write left to
      // it waits for nobody.
      Close(absl::UnavailableError(absl::StrCat("HTTP/2 connection to ", peer_,
                                                ": its writer stopped")));
      break;
    }
  }
  std::lock_guard lock(mu_);
  if (!inline_writing_) ReleaseBatch();  // else the flush lets it go
}

void H2Connection::SentLocked(std::unique_lock<std::mutex>& lock,
                              bool call_end) {
  ++pending_sends_;
  if (call_end) ++pending_ends_;
  if (writing_ || closed_ || batch_size_ > 0 ||
      (pending_ends_ < read_burst_.Group() && pending_sends_ < kFlushSends)) {
    Wake();
    return;
  }
  FlushInlineLocked(lock);
}

void H2Connection::FlushInlineLocked(std::unique_lock<std::mutex>& lock) {
  absl::Status failure = FillBatchLocked(kMaxInlineBatch);
  if (!failure.ok()) {
    lock.unlock();
    Close(std::move(failure));
    lock.lock();
    return;
  }
  if (batch_size_ == 0) return;
  writing_ = inline_writing_ = true;
  inline_iov_.clear();
  ForEachUnsent([&](const char* data, std::size_t size) {
    inline_iov_.push_back({const_cast<char*>(data), size});
  });
  const int fd = socket_.native_handle();
  lock.unlock();
  // The descriptor stays open meanwhile (Close() leaves it to us), and the
  // batch is ours: only SendData() and the writer change it, and both wait
  // for writing_.
  const std::size_t written = net::SendNow(fd, inline_iov_);
  lock.lock();
  writing_ = inline_writing_ = false;
  batch_sent_ += written;
  const bool whole = batch_sent_ == batch_size_;
  ++stats_.inline_flushes;
  if (!whole) ++stats_.inline_flushes_cut_short;
  if (whole || closed_) ReleaseBatch();
  // The writer takes what the socket did not (and meets its error, if
  // that is why), what the session has queued meanwhile, or the session's
  // end.
  if (!whole || nghttp2_session_want_write(session_) ||
      !nghttp2_session_want_read(session_)) {
    Wake();
  }
  if (std::exchange(close_pending_, false)) PostSocketClose();
}

void H2Connection::PostSocketClose() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    self->socket_.close(ec);
  });
}

void H2Connection::Close(absl::Status why) {
  bool first = false;
  bool deferred = false;
  {
    std::lock_guard lock(mu_);
    first = !closed_;
    CloseLocked(std::move(why));
    // An inline flush is in sendmsg() on the descriptor: closing it now
    // could hand its number to another socket first. The flush closes it.
    if (first && inline_writing_) deferred = close_pending_ = true;
  }
  if (!first) return;
  if (!deferred) PostSocketClose();
  OnClosed();
}

void H2Connection::CloseLocked(absl::Status why) {
  if (closed_) return;
  closed_ = true;
  close_reason_ = why;
  for (auto& [id, stream] : streams_) {
    FailStreamLocked(*stream, why);
    stream->closed = true;
    OnStreamClosed(stream);
  }
  streams_.clear();
  pings_.clear();
  for (auto& w : settings_waiters_) w->try_send(boost::system::error_code{});
  settings_waiters_.clear();
  Wake();
}

bool H2Connection::accepting() const {
  std::lock_guard lock(mu_);
  return !closed_ && !goaway_;
}

std::size_t H2Connection::open_streams() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

std::size_t H2Connection::stream_limit() const {
  std::lock_guard lock(mu_);
  std::size_t limit = config_.max_concurrent_streams;
  if (session_ != nullptr) {
    limit = std::min<std::size_t>(
        limit, nghttp2_session_get_remote_settings(
                   session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  }
  return std::max<std::size_t>(limit, 1);
}

H2Stats H2Connection::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

H2Stream* H2Connection::FindRawLocked(int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

std::shared_ptr<H2Stream> H2Connection::FindLocked(int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second;
}

void H2Connection::WakeStreamLocked(H2Stream& stream) {
  for (auto& w : stream.waiters) w->try_send(boost::system::error_code{});
  stream.waiters.clear();
}

void H2Connection::FailStreamLocked(H2Stream& stream, absl::Status why) {
  if (stream.error.ok()) stream.error = std::move(why);
  stream.inbound.clear();
  stream.unread = 0;
  WakeStreamLocked(stream);
  OnStreamEndLocked(stream);
}

void H2Connection::PeerEndedLocked(H2Stream& stream) {
  if (stream.peer_ended) return;
  stream.peer_ended = true;
  ++ends_this_read_;
  // A raw (JSON) body is one message, complete at the end of the stream.
  if (stream.mode == BodyMode::kRaw && stream.error.ok() && stream.state) {
    stream.state->Deliver(std::move(stream.raw_body));
    ++stream.unread;
  }
  OnStreamEndLocked(stream);
}

void H2Connection::GiveBackLocked(H2Stream& stream, std::size_t bytes) {
  if (bytes == 0 || closed_ || stream.closed || stream.id < 0) return;
  nghttp2_session_consume_stream(session_, stream.id, bytes);
  // A WINDOW_UPDATE, once half the window is consumed.
  if (NeedsWriterLocked()) Wake();
}

bool H2Connection::NeedsWriterLocked() const {
  return nghttp2_session_want_write(session_) != 0 ||
         nghttp2_session_want_read(session_) == 0;
}

// --- streams ---

absl::StatusOr<int32_t> H2Connection::SubmitRequest(
    std::shared_ptr<H2Stream> stream, const Headers& headers) {
  NvArray nv = ToNv(headers);
  std::unique_lock lock(mu_);
  if (closed_) return close_reason_;
  if (goaway_) {
    return absl::UnavailableError(absl::StrCat("HTTP/2 connection to ", peer_,
                                               " is going away (GOAWAY)"));
  }
  nghttp2_data_provider provider;
  provider.source.ptr = stream.get();
  provider.read_callback = &ReadData;
  int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(),
                                      &provider, stream.get());
  if (id < 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open an HTTP/2 stream to ", peer_, ": ", nghttp2_strerror(id)));
  }
  stream->id = id;
  const bool call_end = stream->out_end;  // a unary call's whole request
  streams_[id] = std::move(stream);
  SentLocked(lock, call_end);
  return id;
}

absl::Status H2Connection::SubmitResponse(
    const std::shared_ptr<H2Stream>& stream, const Headers& headers,
    bool body) {
  NvArray nv = ToNv(headers);
  std::unique_lock lock(mu_);
  DYNRPC_RETURN_IF_ERROR(
      SubmitResponseLocked(*stream, nv.data(), nv.size(), body));
  SentLocked(lock, /*call_end=*/!body);  // trailers-only: the whole answer
  return absl::OkStatus();
}

absl::Status H2Connection::SubmitWholeResponse(
    const std::shared_ptr<H2Stream>& stream, const Headers& headers,
    std::string prefix, std::string bytes, std::optional<Headers> trailers) {
  NvArray nv = ToNv(headers);
  std::unique_lock lock(mu_);
  DYNRPC_RETURN_IF_ERROR(
      SubmitResponseLocked(*stream, nv.data(), nv.size(), /*body=*/true));
  QueueDataLocked(*stream, std::move(prefix), std::move(bytes), /*end=*/true,
                  std::move(trailers));
  SentLocked(lock, /*call_end=*/true);
  return absl::OkStatus();
}

absl::Status H2Connection::SubmitResponseLocked(H2Stream& stream,
                                                const nghttp2_nv* nv,
                                                std::size_t count, bool body) {
  if (closed_) return close_reason_;
  if (stream.closed) return stream.error;
  nghttp2_data_provider provider;
  provider.source.ptr = &stream;
  provider.read_callback = &ReadData;
  int rv = nghttp2_submit_response(session_, stream.id, nv, count,
                                   body ? &provider : nullptr);
  if (rv != 0) {
    return absl::InternalError(
        absl::StrCat("HTTP/2 response: ", nghttp2_strerror(rv)));
  }
  return absl::OkStatus();
}

void H2Connection::QueueData(const std::shared_ptr<H2Stream>& stream,
                             std::string prefix, std::string bytes, bool end,
                             std::optional<Headers> trailers) {
  std::unique_lock lock(mu_);
  if (closed_ || stream->closed) return;
  QueueDataLocked(*stream, std::move(prefix), std::move(bytes), end,
                  std::move(trailers));
  SentLocked(lock, end);
}

void H2Connection::QueueDataLocked(H2Stream& stream, std::string prefix,
                                   std::string bytes, bool end,
                                   std::optional<Headers> trailers) {
  for (std::string* piece : {&prefix, &bytes}) {
    if (piece->empty()) continue;
    stream.out_bytes += piece->size();
    stream.out.push_back(std::move(*piece));
  }
  if (end) {
    stream.out_end = true;
    stream.out_trailers = std::move(trailers);
  }
  if (stream.data_deferred && stream.id >= 0) {
    stream.data_deferred = false;
    nghttp2_session_resume_data(session_, stream.id);
  }
}

void H2Connection::FailStream(const std::shared_ptr<H2Stream>& stream,
                              absl::Status why) {
  std::lock_guard lock(mu_);
  FailStreamLocked(*stream, std::move(why));
}

void H2Connection::Reset(const std::shared_ptr<H2Stream>& stream,
                         uint32_t error_code, absl::Status why) {
  std::lock_guard lock(mu_);
  FailStreamLocked(*stream, std::move(why));
  if (closed_ || stream->closed || stream->id < 0) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream->id,
                            error_code);
  Wake();
}

void H2Connection::ResetIfOpen(const std::shared_ptr<H2Stream>& stream) {
  bool peer_ended_well;
  {
    std::lock_guard lock(mu_);
    if (closed_ || stream->closed) return;
    peer_ended_well = stream->peer_ended && stream->error.ok();
  }
  Reset(stream, peer_ended_well ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL,
        absl::CancelledError("the call has ended"));
}

asio::awaitable<bool> H2Connection::Wait(
    const std::shared_ptr<H2Stream>& stream,
    const std::function<bool(const H2Stream&)>& ready, bool stop_on_error) {
  for (;;) {
    std::shared_ptr<Signal> signal;
    {
      std::lock_guard lock(mu_);
      if (ready(*stream) || (stop_on_error && !stream->error.ok()) ||
          stream->closed || closed_) {
        co_return true;
      }
      signal = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
      stream->waiters.push_back(signal);
    }
    auto [ec] = co_await signal->async_receive(as_tuple(use_awaitable));
    if (ec) {
      std::lock_guard lock(mu_);
      std::erase(stream->waiters, signal);
      co_return false;
    }
  }
}

asio::awaitable<absl::Status> H2Connection::WaitWritable(
    const std::shared_ptr<H2Stream>& stream, std::size_t high_water) {
  bool woke = co_await Wait(stream, [high_water](const H2Stream& s) {
    return s.out_bytes <= high_water;
  });
  if (!woke) co_return absl::CancelledError("the write was cancelled");
  std::lock_guard lock(mu_);
  if (!stream->error.ok()) co_return stream->error;
  if (stream->closed && !stream->end_sent) {
    co_return absl::FailedPreconditionError(
        "the HTTP/2 stream closed before its messages were sent");
  }
  co_return absl::OkStatus();
}

void H2Connection::DropUnread(const std::shared_ptr<H2Stream>& stream) {
  std::lock_guard lock(mu_);
  stream->mode = BodyMode::kDrop;
  stream->inbound.clear();
  stream->unread = 0;
  GiveBackLocked(*stream, std::exchange(stream->unconsumed, 0) +
                              std::exchange(stream->partial_held, 0));
}

void H2Connection::Consumed(const std::shared_ptr<H2Stream>& stream,
                            std::size_t bytes) {
  std::lock_guard lock(mu_);
  std::size_t give = std::min(stream->unconsumed, bytes);
  stream->unconsumed -= give;
  if (stream->unread > 0) --stream->unread;
  // The reader will wait for the message still arriving: let it come.
  if (stream->unread == 0) give += std::exchange(stream->partial_held, 0);
  GiveBackLocked(*stream, give);
}

asio::awaitable<absl::Status> H2Connection::WaitForSettings(
    std::chrono::milliseconds timeout, std::string_view timeout_variable) {
  auto timer =
      std::make_shared<asio::steady_timer>(socket_.get_executor(), timeout);
  std::weak_ptr<H2Connection> weak = shared_from_this();
  timer->async_wait([weak, timer, timeout,
                     variable = std::string(timeout_variable)](
                        const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || self == nullptr) return;
    if (self->Locked([&] { return self->settings_received_; })) return;
    self->Close(absl::UnavailableError(absl::StrCat(
        "no HTTP/2 SETTINGS from ", self->peer_, " within ", timeout.count(),
        " ms (", variable, "): is it an HTTP/2 (h2c) server?")));
  });
  for (;;) {
    std::shared_ptr<Signal> signal;
    {
      std::lock_guard lock(mu_);
      if (closed_) co_return close_reason_;
      if (settings_received_) {
        asio::post(timer->get_executor(), [timer] { timer->cancel(); });
        co_return absl::OkStatus();
      }
      signal = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
      settings_waiters_.push_back(signal);
    }
    auto [ec] = co_await signal->async_receive(as_tuple(use_awaitable));
    if (ec) co_return absl::CancelledError("cancelled while connecting");
  }
}

asio::awaitable<void> H2Connection::WaitSent(
    const std::shared_ptr<H2Stream>& stream) {
  (void)co_await Wait(
      stream, [](const H2Stream& s) { return s.end_sent; },
      /*stop_on_error=*/false);
}

bool H2Connection::SubmitPingLocked(std::function<void()> on_ack) {
  uint64_t id = next_ping_++;
  uint8_t opaque[8];
  std::memcpy(opaque, &id, sizeof(id));
  if (nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, opaque) != 0) {
    return false;
  }
  if (on_ack) pings_[id] = std::move(on_ack);
  ++stats_.pings_sent;
  return true;
}

void H2Connection::SendPing() {
  std::lock_guard lock(mu_);
  if (closed_) return;
  if (SubmitPingLocked(nullptr)) Wake();
}

void H2Connection::OnBdpSampleLocked(std::size_t bytes) {
  if (!config_.adaptive_window || window_ >= kMaxWindow) return;
  bdp_bytes_ += bytes;
  if (bdp_probe_out_ || Clock::now() < bdp_next_probe_) return;
  // A probe: the bytes that arrive until its answer are what the path
  // holds in one round trip.
  bdp_probe_out_ = SubmitPingLocked([this] {
    bdp_probe_out_ = false;
    // The window limited the round trip: grow it to twice what it held.
    // Otherwise probe less and less often (100 ms, doubling to 10 s), as
    // gRPC's BDP estimator does, so steady traffic costs few PINGs.
    int32_t grown =
        static_cast<int32_t>(std::min<std::size_t>(kMaxWindow, 2 * bdp_bytes_));
    if (bdp_bytes_ * 3 < static_cast<std::size_t>(window_) * 2 ||
        grown <= window_) {
      bdp_delay_ = std::clamp<Clock::duration>(2 * bdp_delay_,
                                               std::chrono::milliseconds(100),
                                               std::chrono::seconds(10));
      bdp_next_probe_ = Clock::now() + bdp_delay_;
      return;
    }
    bdp_delay_ = Clock::duration::zero();
    window_ = grown;
    stats_.local_window = window_;
    nghttp2_settings_entry entry{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
                                 static_cast<uint32_t>(window_)};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, &entry, 1);
  });
  if (bdp_probe_out_) bdp_bytes_ = bytes;  // counted from the probe on
}

// --- nghttp2 callbacks (under mu_) ---

int H2Connection::OnBeginHeaders(nghttp2_session* session,
                                 const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (self->role_ != Role::kServer || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  auto stream = std::make_shared<H2Stream>(
      self->config_.max_message_size, "DYN_HTTP_MAX_MESSAGE_SIZE", "request");
  stream->id = frame->hd.stream_id;
  nghttp2_session_set_stream_user_data(session, stream->id, stream.get());
  self->streams_[stream->id] = std::move(stream);
  return 0;
}

int H2Connection::OnHeader(nghttp2_session* session, const nghttp2_frame* frame,
                           const uint8_t* name, size_t namelen,
                           const uint8_t* value, size_t valuelen, uint8_t flags,
                           void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  H2Stream* stream = self->FindRawLocked(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  Headers& block = stream->headers_done ? stream->trailers : stream->headers;
  // A running sum (constant time per field), with the per-field overhead, so
  // a block of many tiny fields (one-byte indexed ones) is bounded too.
  stream->header_list_size += namelen + valuelen + kHeaderFieldOverhead;
  if (stream->header_list_size > kMaxHeaderBytes) {
    self->FailStreamLocked(
        *stream, absl::ResourceExhaustedError(
                     absl::StrCat("header block of more than ", kMaxHeaderBytes,
                                  " bytes (metadata limit)")));
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  if (block.empty()) block.reserve(8);  // a request's usual fields
  block.emplace_back(
      std::string(reinterpret_cast<const char*>(name), namelen),
      std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int H2Connection::OnFrameRecv(nghttp2_session* session,
                              const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      std::shared_ptr<H2Stream> stream = self->FindLocked(frame->hd.stream_id);
      if (stream == nullptr) return 0;
      if (!stream->headers_done) {
        // A 1xx informational response: not the response yet.
        std::optional<std::string_view> status =
            FindHeader(stream->headers, ":status");
        if (status && status->starts_with("1")) {
          stream->headers.clear();
          stream->header_list_size = 0;
          return 0;
        }
        stream->headers_done = true;
        stream->header_list_size = 0;  // the trailers count afresh
        // What the peer's compressed messages are compressed with.
        stream->decoder.set_encoding(
            FindHeader(stream->headers, "grpc-encoding"));
        if (self->role_ == Role::kServer) {
          self->ChooseBodyMode(*stream);
          if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            self->PeerEndedLocked(*stream);
          }
          self->new_requests_.push_back(stream);
        } else {
          self->OnResponseHeadersLocked(*stream);
        }
      } else {
        stream->trailers_done = true;
      }
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        self->PeerEndedLocked(*stream);
      }
      self->WakeStreamLocked(*stream);
      return 0;
    }
    case NGHTTP2_DATA: {
      self->stats_.largest_data_frame_received = std::max<std::size_t>(
          self->stats_.largest_data_frame_received, frame->hd.length);
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        H2Stream* stream = self->FindRawLocked(frame->hd.stream_id);
        if (stream == nullptr) return 0;
        self->PeerEndedLocked(*stream);
        self->WakeStreamLocked(*stream);
      }
      return 0;
    }
    case NGHTTP2_PING: {
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) return 0;
      uint64_t id;
      std::memcpy(&id, frame->ping.opaque_data, sizeof(id));
      auto it = self->pings_.find(id);
      if (it == self->pings_.end()) return 0;
      std::function<void()> on_ack = std::move(it->second);
      self->pings_.erase(it);
      if (on_ack) on_ack();
      return 0;
    }
    case NGHTTP2_GOAWAY:
      self->goaway_ = true;
      return 0;
    case NGHTTP2_SETTINGS:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !self->settings_received_) {
        self->settings_received_ = true;
        for (auto& w : self->settings_waiters_) {
          w->try_send(boost::system::error_code{});
        }
        self->settings_waiters_.clear();
      }
      return 0;
    default:
      return 0;
  }
}

int H2Connection::OnDataChunk(nghttp2_session* session, uint8_t flags,
                              int32_t stream_id, const uint8_t* data,
                              size_t len, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  // The connection's window is given back at once: each stream's own
  // window bounds what waits unread.
  nghttp2_session_consume_connection(session, len);
  self->OnBdpSampleLocked(len);
  H2Stream* stream = self->FindRawLocked(stream_id);
  if (stream == nullptr) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data), len);
  if (!stream->error.ok() || stream->mode == BodyMode::kDrop) {
    nghttp2_session_consume_stream(session, stream_id, len);
    return 0;
  }
  if (stream->mode == BodyMode::kRaw) {
    nghttp2_session_consume_stream(session, stream_id, len);
    if (stream->raw_body.size() + len > stream->max_message) {
      self->FailStreamLocked(
          *stream, absl::ResourceExhaustedError(absl::StrCat(
                       stream->what, " body of more than ", stream->max_message,
                       " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=",
                       stream->max_message, " bytes")));
      return 0;
    }
    stream->raw_body.append(bytes);
    return 0;
  }
  std::vector<GrpcMessage> messages;
  absl::Status fed = stream->decoder.Feed(bytes, stream->what, messages);
  // Window bytes of complete messages come back as they are read. Those of
  // the message still arriving come back at once if the reader waits for
  // it (else a message larger than the window could never arrive), or when
  // the reader has caught up.
  std::size_t to_partial =
      messages.empty() ? len : std::min(len, stream->decoder.buffered());
  if (!messages.empty()) {
    stream->unconsumed += std::exchange(stream->partial_held, 0);
  }
  stream->unconsumed += len - to_partial;
  const bool none_unread =
      stream->deliver ? stream->unread == 0 : stream->inbound.empty();
  if (none_unread && messages.empty()) {
    if (to_partial > 0) {
      nghttp2_session_consume_stream(session, stream_id, to_partial);
    }
  } else {
    stream->partial_held += to_partial;
  }
  for (GrpcMessage& m : messages) {
    if (stream->deliver) {
      // Never refused: our window.
      stream->state->Deliver(std::move(m.bytes), m.compressed_with);
      ++stream->unread;
    } else {
      stream->inbound.push_back(std::move(m));
    }
  }
  if (!fed.ok()) {
    self->FailStreamLocked(*stream, std::move(fed));
  } else if (!messages.empty()) {
    self->WakeStreamLocked(*stream);
  }
  return 0;
}

int H2Connection::OnStreamClose(nghttp2_session* session, int32_t stream_id,
                                uint32_t error_code, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  std::shared_ptr<H2Stream> stream = self->FindLocked(stream_id);
  if (stream == nullptr) return 0;
  stream->closed = true;
  if (error_code == NGHTTP2_NO_ERROR && self->role_ == Role::kServer &&
      !stream->end_sent && stream->error.ok()) {
    // The caller reset the stream (with NO_ERROR) before we answered: it is
    // gone, and the handler must stop.
    stream->error = absl::CancelledError("the caller reset the stream");
  }
  if (error_code != NGHTTP2_NO_ERROR) {
    stream->reset_code = error_code;
    // A status the peer sent in full still stands.
    if (!stream->trailers_done &&
        !(stream->peer_ended && stream->headers_done &&
          self->role_ == Role::kClient)) {
      if (stream->error.ok()) stream->error = StatusFromResetCode(error_code);
    }
  }
  self->WakeStreamLocked(*stream);
  self->OnStreamEndLocked(*stream);
  self->streams_.erase(stream_id);
  self->OnStreamClosed(stream);
  return 0;
}

int H2Connection::OnFrameSend(nghttp2_session* session,
                              const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    if (std::shared_ptr<H2Stream> stream =
            self->FindLocked(frame->hd.stream_id)) {
      stream->end_sent = true;
      self->WakeStreamLocked(*stream);
    }
  }
  return 0;
}

// Hands nghttp2 the length of the next DATA frame, not its bytes
// (NGHTTP2_DATA_FLAG_NO_COPY): SendData() then puts them in the write batch
// by reference. nghttp2 sends each frame before it asks for the next, and
// the queue only grows meanwhile, so the first `n` bytes stay put.
ssize_t H2Connection::ReadData(nghttp2_session* session, int32_t stream_id,
                               uint8_t* buf, size_t length,
                               uint32_t* data_flags,
                               nghttp2_data_source* source, void* user) {
  auto* stream = static_cast<H2Stream*>(source->ptr);
  const std::size_t n = std::min(length, stream->out_bytes);
  if (n > 0) *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == stream->out_bytes && stream->out_end) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (stream->out_trailers) {
      *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      NvArray nv = ToNv(*stream->out_trailers);
      nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size());
    }
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    stream->data_deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

// A DATA frame ReadData() sized: its header, then `length` bytes off the
// front of the stream's queue, into the write batch (by reference when
// large). Padding is never asked for, but is honoured.
int H2Connection::SendData(nghttp2_session* session, nghttp2_frame* frame,
                           const uint8_t* framehd, size_t length,
                           nghttp2_data_source* source, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto* stream = static_cast<H2Stream*>(source->ptr);
  self->BatchCopy(reinterpret_cast<const char*>(framehd), 9);
  const std::size_t padlen = frame->data.padlen;
  if (padlen > 0) {
    const char pad_length = static_cast<char>(padlen - 1);
    self->BatchCopy(&pad_length, 1);
  }
  bool referenced_queue = false;
  std::size_t left = length;
  while (left > 0 && !stream->out.empty()) {
    std::string& front = stream->out.front();
    const std::size_t at = stream->out_offset;
    const std::size_t n = std::min(left, front.size() - at);
    left -= n;
    if (at + n < front.size()) {
      // Part of it: it stays queued (and in place) for the next frame.
      self->BatchPayload(front.data() + at, n);
      referenced_queue |= n >= kCopyBelow;
      stream->out_offset += n;
      break;
    }
    if (front.size() >= kCopyBelow) {
      // Earlier frames of this batch may reference it too: it lives until
      // the write ends. (Moving a heap-allocated string keeps its bytes
      // where they are.)
      self->batch_done_.push_back(std::move(front));
      self->BatchPayload(self->batch_done_.back().data() + at, n);
    } else {
      self->BatchPayload(front.data() + at, n);
      RecycleMessageBuffer(std::move(front));
    }
    stream->out.pop_front();
    stream->out_offset = 0;
  }
  if (referenced_queue) {
    if (std::shared_ptr<H2Stream> owner =
            self->FindLocked(frame->hd.stream_id)) {
      self->batch_streams_.push_back(std::move(owner));
    }
  }
  if (padlen > 1)
    self->BatchCopy(std::string(padlen - 1, '\0').data(), padlen - 1);
  stream->out_bytes -= length - left;
  self->WakeStreamLocked(*stream);
  return 0;
}

ssize_t H2Connection::DataLength(nghttp2_session* session, uint8_t frame_type,
                                 int32_t stream_id,
                                 int32_t session_remote_window_size,
                                 int32_t stream_remote_window_size,
                                 uint32_t remote_max_frame_size, void* user) {
  // Frames as large as the peer allows (and the windows hold), so a large
  // message goes out in few frames.
  int64_t n = std::min<int64_t>({static_cast<int64_t>(remote_max_frame_size),
                                 session_remote_window_size,
                                 stream_remote_window_size, 1 << 20});
  return static_cast<ssize_t>(std::max<int64_t>(n, 1));
}

}  // namespace dynrpc::internal::http

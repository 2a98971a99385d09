// One HTTP/2 connection on nghttp2, shared by the HTTP plane's client and
// server: a reader and a writer coroutine drive the session; calls use its
// streams from their own coroutines.
//
// Threading: the nghttp2 session and every H2Stream's state are guarded by
// the connection's mutex. nghttp2 callbacks run under it (inside
// mem_recv/mem_send) and only change state and wake waiters; they never run
// user code. Whoever changes what the session has to send calls Wake()
// (the reader only when the session then wants to write: a wake for
// nothing costs a trip through the scheduler), or, when it queued a
// stream's frames from a call (SubmitRequest, SubmitResponse,
// SubmitWholeResponse, QueueData), SentLocked(): the frames of a burst of
// calls then go out from the thread that queued them, a few calls at a
// time, rather than from the writer once the whole burst has been answered
// (which left the peer idle meanwhile: the two ends took turns).
#ifndef DYNRPC_RUNTIME_SRC_HTTP_H2_CONNECTION_H_
#define DYNRPC_RUNTIME_SRC_HTTP_H2_CONNECTION_H_

#include <nghttp2/nghttp2.h>
#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "core/deadline.h"
#include "core/request_plane.h"
#include "core/stream_state.h"
#include "dynrpc/config.h"
#include "http/grpc_wire.h"
#include "net/sockets.h"

namespace dynrpc::internal::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// The metadata in a header block: its custom headers (not reserved, not
// dynrpc's call-kind header), "-bin" values base64-decoded. Entries whose
// value does not decode are left out and their keys listed in
// `undecodable` (if given).
Metadata MetadataFromHeaders(const Headers& headers,
                             std::vector<std::string>* undecodable = nullptr);

// The value of header `name` (lowercase), or nullopt.
std::optional<std::string_view> FindHeader(const Headers& headers,
                                           std::string_view name);

// How a stream's DATA is read.
enum class BodyMode {
  kGrpc,  // length-prefixed messages (GrpcMessageDecoder)
  kRaw,   // the whole body is one message (JSON), bounded by the limit
  kDrop,  // ignored (a request already answered)
};

// A stream's outbound pieces, oldest first. Unlike std::deque it allocates
// nothing while empty (most streams queue one message); it is a vector read
// from `head_`, compacted as it drains. Moving a piece keeps a heap
// buffer's bytes in place, which SendData() relies on for the large pieces
// it references (pieces under kCopyBelow are copied).
class PieceQueue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::string& front() { return items_[head_]; }
  void push_back(std::string piece) {
    if (items_.empty()) items_.reserve(2);  // a message and its prefix
    items_.push_back(std::move(piece));
  }
  void pop_front() {
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 32 && 2 * head_ >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + head_);
      head_ = 0;
    }
  }

 private:
  std::vector<std::string> items_;
  std::size_t head_ = 0;
};

// One HTTP/2 stream: one call. Fields are guarded by the connection's mutex;
// the call's coroutines use them through H2Connection's methods.
struct H2Stream {
  // `limit_name` and `what`: literals (they are kept as pointers).
  H2Stream(std::size_t max_message, const char* limit_name, const char* what)
      : decoder(max_message, limit_name),
        max_message(max_message),
        what(what) {}

  int32_t id = -1;
  // The first header block (request or response headers), then trailers.
  Headers headers;
  bool headers_done = false;
  Headers trailers;
  bool trailers_done = false;
  // The header-list size (RFC 9113 section 6.5.2) of the block arriving.
  std::size_t header_list_size = 0;

  // Inbound DATA.
  BodyMode mode = BodyMode::kGrpc;
  GrpcMessageDecoder decoder;
  std::size_t max_message;
  const char* what;  // "request" or "response", for size errors
  std::string raw_body;
  std::vector<GrpcMessage> inbound;
  // Stream-window bytes of complete messages not yet read: given back as
  // they are read, so a reader that stops reading stops the peer. (Bytes of
  // a message still arriving are given back at once: a message may be
  // larger than the window.)
  std::size_t unconsumed = 0;
  // Window bytes of the message still arriving, held while complete
  // messages wait unread (given back once the reader waits for it).
  std::size_t partial_held = 0;
  bool peer_ended = false;  // END_STREAM received
  // Why the stream failed (an oversized or malformed message, a reset by
  // the peer, the connection lost): the first error wins.
  absl::Status error;
  bool closed = false;      // nghttp2 closed the stream
  uint32_t reset_code = 0;  // the peer's RST_STREAM code, once closed by one

  // Outbound DATA: what the data provider hands nghttp2.
  PieceQueue out;
  std::size_t out_offset = 0;           // into out.front()
  std::size_t out_bytes = 0;            // queued, not yet taken by nghttp2
  bool out_end = false;                 // no more DATA after `out`
  std::optional<Headers> out_trailers;  // sent after the last DATA
  bool data_deferred = false;
  bool end_sent = false;  // a frame with END_STREAM went out

  std::vector<std::shared_ptr<Signal>> waiters;

  // The call's state in the core, which the connection ends (when the peer
  // ended its side, the stream failed or closed). With `deliver` (server
  // calls, streaming client calls) each message goes to it as it completes
  // (a raw body at the stream's end); a unary client call's one message
  // waits in `inbound` for the end.
  std::shared_ptr<StreamState> state;
  bool deliver = false;
  std::size_t unread = 0;  // messages delivered to `state`, not yet read
};

// Observed by tests: what the connection has seen.
struct H2Stats {
  std::size_t largest_data_frame_received = 0;
  int32_t local_window = 0;  // the stream window we advertise
  int pings_sent = 0;
  // Writes made by the thread that queued the frames (SentLocked), and
  // those of them the socket did not wholly take (the writer sent the rest).
  int inline_flushes = 0;
  int inline_flushes_cut_short = 0;
  // Times the writer was woken and found nothing to write: each a trip
  // through the scheduler (and a reactor poll) for nothing.
  int writer_idle_wakes = 0;
};

class H2Connection : public std::enable_shared_from_this<H2Connection> {
 public:
  enum class Role { kClient, kServer };

  // The socket's executor must be a strand: the reader, writer and timers
  // run on it. Call Start() once, then use the connection.
  H2Connection(Role role, boost::asio::ip::tcp::socket socket,
               const HttpConfig& config);
  virtual ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // Creates the session and queues our SETTINGS; before the loops are
  // spawned (the writer's first pass sends them).
  absl::Status Start();
  // The reader and the writer, for the caller to spawn on the socket's
  // strand; `self` (this connection) keeps it alive while they run.
  static boost::asio::awaitable<void> ReadLoop(
      std::shared_ptr<H2Connection> self);
  static boost::asio::awaitable<void> WriteLoop(
      std::shared_ptr<H2Connection> self);

  // Ends the connection: every stream fails with `why` (UNAVAILABLE), the
  // socket closes. Idempotent; any thread.
  void Close(absl::Status why);
  // After GOAWAY (either way) or Close(): no new streams.
  bool accepting() const;
  // Streams open now, and the most this connection may have at once (ours
  // and the peer's SETTINGS_MAX_CONCURRENT_STREAMS).
  std::size_t open_streams() const;
  std::size_t stream_limit() const;

  const std::string& peer() const { return peer_; }
  // When bytes last arrived (the socket's strand only).
  Clock::time_point last_read() const { return last_read_; }
  boost::asio::any_io_executor executor() { return socket_.get_executor(); }
  H2Stats stats() const;

  // --- streams (any thread) ---
  // Client: sends request headers, then the stream's `out` as DATA.
  absl::StatusOr<int32_t> SubmitRequest(std::shared_ptr<H2Stream> stream,
                                        const Headers& headers);
  // Server: sends response headers; with `body`, DATA and trailers follow
  // through QueueData(); without, the headers end the stream
  // (trailers-only).
  absl::Status SubmitResponse(const std::shared_ptr<H2Stream>& stream,
                              const Headers& headers, bool body);
  // Server: a whole response at once: the headers, DATA (`prefix` then
  // `bytes`, either may be empty) and the end, after `trailers` if given.
  // The same frames as SubmitResponse() then QueueData(), decided on
  // together: one flush (or one writer wake) for the lot, not one for the
  // headers and another for the rest.
  absl::Status SubmitWholeResponse(const std::shared_ptr<H2Stream>& stream,
                                   const Headers& headers, std::string prefix,
                                   std::string bytes,
                                   std::optional<Headers> trailers);
  // Queues DATA: `prefix` then `bytes` (either may be empty); with `end`,
  // the end of the stream, after `trailers` if given.
  void QueueData(const std::shared_ptr<H2Stream>& stream, std::string prefix,
                 std::string bytes, bool end,
                 std::optional<Headers> trailers = std::nullopt);
  // Fails the stream locally with `why` (waiters return it); the peer is
  // told nothing.
  void FailStream(const std::shared_ptr<H2Stream>& stream, absl::Status why);
  // RST_STREAM with `error_code`, and fails the stream locally with `why`.
  void Reset(const std::shared_ptr<H2Stream>& stream, uint32_t error_code,
             absl::Status why);
  // A stream whose call has ended but that is still open on the wire:
  // RST_STREAM, NO_ERROR when the peer ended its side well, else CANCEL.
  void ResetIfOpen(const std::shared_ptr<H2Stream>& stream);

  // Waits until `ready` (evaluated under the mutex) holds, the stream has an
  // error, or it is closed. Yields false when cancelled (Asio).
  boost::asio::awaitable<bool> Wait(
      const std::shared_ptr<H2Stream>& stream,
      const std::function<bool(const H2Stream&)>& ready,
      bool stop_on_error = true);
  // Waits until at most `high_water` bytes of the stream's DATA are queued
  // (flow control: the peer reads what we send). The stream's error if it
  // fails first.
  boost::asio::awaitable<absl::Status> WaitWritable(
      const std::shared_ptr<H2Stream>& stream, std::size_t high_water);

  // Drops the stream's unread messages and any that arrive later, giving
  // their window back (the peer may finish).
  void DropUnread(const std::shared_ptr<H2Stream>& stream);
  // A message delivered to the stream's `state` was read: `bytes` of the
  // stream's window come back (and, once none waits unread, those of the
  // message still arriving).
  void Consumed(const std::shared_ptr<H2Stream>& stream, std::size_t bytes);
  // Waits until our side of the stream has ended on the wire (a frame with
  // END_STREAM went out) or the stream closed, even if it has failed.
  boost::asio::awaitable<void> WaitSent(
      const std::shared_ptr<H2Stream>& stream);

  // Runs `f` under the connection's mutex.
  template <typename F>
  auto Locked(F&& f) const {
    std::lock_guard lock(mu_);
    return f();
  }

  // Waits until the peer's first SETTINGS arrived (its limits are known),
  // or the connection ended (its reason). After `timeout` the connection
  // closes with UNAVAILABLE naming `timeout_variable` (not an HTTP/2 peer).
  boost::asio::awaitable<absl::Status> WaitForSettings(
      std::chrono::milliseconds timeout, std::string_view timeout_variable);

  // Sends a PING now (keepalive: its answer, like any bytes, moves
  // last_read() on).
  void SendPing();

 protected:
  // Server: a new stream's request headers are complete. Called by the
  // reader, not under the mutex; must not block (spawn the call).
  virtual void OnRequest(std::shared_ptr<H2Stream> stream) {}
  // A stream went away (closed); under the mutex.
  virtual void OnStreamClosed(const std::shared_ptr<H2Stream>& stream) {}
  // A stream ended: the peer ended its side, it failed, or it closed (any
  // of them, maybe more than once); under the mutex.
  virtual void OnStreamEndLocked(H2Stream& stream) {}
  // Client: a stream's response headers (not 1xx) are complete; under the
  // mutex.
  virtual void OnResponseHeadersLocked(H2Stream& stream) {}
  // The connection ended; not under the mutex.
  virtual void OnClosed() {}
  // Server: the body mode and limits for a request, from its headers.
  virtual void ChooseBodyMode(H2Stream& stream) {}

  // Under mu_: wakes the writer.
  void Wake();
  // Under mu_: why the connection closed (OK while open).
  const absl::Status& close_reason() const { return close_reason_; }

  const Role role_;
  const HttpConfig config_;
  mutable std::mutex mu_;

 private:
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*,
                      size_t, const uint8_t*, size_t, uint8_t, void*);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*,
                         size_t, void*);
  static int OnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  static int OnFrameSend(nghttp2_session*, const nghttp2_frame*, void*);
  static ssize_t ReadData(nghttp2_session*, int32_t, uint8_t*, size_t,
                          uint32_t*, nghttp2_data_source*, void*);
  static int SendData(nghttp2_session*, nghttp2_frame*, const uint8_t*, size_t,
                      nghttp2_data_source*, void*);
  static ssize_t DataLength(nghttp2_session*, uint8_t, int32_t, int32_t,
                            int32_t, uint32_t, void*);

  boost::asio::awaitable<void> Read();
  boost::asio::awaitable<void> Write();
  // The batch Write() is assembling (under mu_): bytes nghttp2 serialized.
  void BatchCopy(const char* data, std::size_t size);
  // DATA payload bytes, referenced where they are unless few.
  void BatchPayload(const char* data, std::size_t size);
  // Everything a write holds on to, let go once it is written.
  void ReleaseBatch();
  std::shared_ptr<H2Stream> FindLocked(int32_t id) const;
  // The same, borrowed (callbacks that keep no reference).
  H2Stream* FindRawLocked(int32_t id) const;
  void FailStreamLocked(H2Stream& stream, absl::Status why);
  void WakeStreamLocked(H2Stream& stream);
  void GiveBackLocked(H2Stream& stream, std::size_t bytes);
  // Under mu_: the session has frames to send, or wants neither to read nor
  // to write (the writer then ends the connection).
  bool NeedsWriterLocked() const;
  // Under mu_: SubmitResponse() and QueueData() without the flush decision
  // (SentLocked), which their callers make.
  absl::Status SubmitResponseLocked(H2Stream& stream, const nghttp2_nv* nv,
                                    std::size_t count, bool body);
  void QueueDataLocked(H2Stream& stream, std::string prefix, std::string bytes,
                       bool end, std::optional<Headers> trailers);
  // The peer ended its side (END_STREAM on DATA or HEADERS).
  void PeerEndedLocked(H2Stream& stream);
  void OnBdpSampleLocked(std::size_t bytes);
  // Queues a PING; `on_ack`, if any, runs (under the mutex) when answered.
  // False when nghttp2 refused it.
  bool SubmitPingLocked(std::function<void()> on_ack);
  void CloseLocked(absl::Status why);
  // Closes the socket on its strand.
  void PostSocketClose();

  // Under mu_, from SubmitRequest/SubmitResponse/QueueData (never from an
  // nghttp2 callback): a stream's frames were queued; `call_end` when they
  // end our side of a call. Once read_burst_.Group() calls' ends are
  // queued, or kFlushSends frames of any kind, and
  // nobody is writing, writes them at once (FlushInlineLocked); else wakes
  // the writer.
  void SentLocked(std::unique_lock<std::mutex>& lock, bool call_end);
  // Under mu_, with writing_ free: fills the batch (at most
  // kMaxInlineBatch) and writes what the socket takes now, without the
  // mutex; the rest goes to the writer.
  void FlushInlineLocked(std::unique_lock<std::mutex>& lock);
  // Under mu_: appends what the session has to send to the batch, until it
  // holds `limit` bytes.
  absl::Status FillBatchLocked(std::size_t limit);
  // Under mu_: each piece of the batch not yet written (from batch_sent_).
  template <typename F>
  void ForEachUnsent(F&& f) const;

  boost::asio::ip::tcp::socket socket_;
  std::string peer_;
  Clock::time_point last_read_ = Clock::now();  // the reader's (strand)
  nghttp2_session* session_ = nullptr;
  std::shared_ptr<Signal> wake_;
  bool closed_ = false;
  bool goaway_ = false;
  bool settings_received_ = false;
  // Requests whose headers arrived during the current mem_recv.
  std::vector<std::shared_ptr<H2Stream>> new_requests_;
  std::vector<std::shared_ptr<Signal>> settings_waiters_;
  absl::Status close_reason_;
  absl::flat_hash_map<int32_t, std::shared_ptr<H2Stream>> streams_;
  H2Stats stats_;

  // The write batch (mu_; only its holder, the writer or an inline write
  // (writing_), and the callbacks of the mem_send that fills it use it). DATA
  // payloads are not copied into nghttp2's buffers (NGHTTP2_DATA_FLAG_NO_COPY):
  // SendData() lists them here by reference, between the bytes nghttp2
  // serialized.
  struct BatchPiece {
    const char* data;  // null: batch_bytes_[offset, offset + size)
    std::size_t offset;
    std::size_t size;
  };
  std::string batch_bytes_;
  std::vector<BatchPiece> batch_pieces_;
  std::size_t batch_size_ = 0;
  // Payloads the batch references and the streams own no more; recycled
  // after the write. A deque: moving one in keeps the others in place.
  std::deque<std::string> batch_done_;
  // Streams whose payload (still queued, partly sent) the batch references:
  // kept alive until the write ends. Their queue only grows meanwhile.
  std::vector<std::shared_ptr<H2Stream>> batch_streams_;
  // Bytes of the batch written (an inline flush the socket took part of:
  // the writer sends the rest).
  std::size_t batch_sent_ = 0;
  // The batch is being written, by the writer or an inline flush: nobody
  // else fills or writes it. A failed write keeps it (the wire may end
  // inside a frame: nothing may follow).
  bool writing_ = false;
  // An inline flush is in sendmsg() on the descriptor: Close() leaves
  // closing it to the flush (close_pending_).
  bool inline_writing_ = false;
  bool close_pending_ = false;
  std::vector<iovec> inline_iov_;
  // Frames and calls' ends queued since the batch was last filled.
  std::size_t pending_sends_ = 0;
  std::size_t pending_ends_ = 0;
  // Streams the peer ended in the current read, and over reads: how many
  // calls' ends SentLocked() waits for.
  std::size_t ends_this_read_ = 0;
  net::BurstMeter read_burst_;

  // PINGs in flight, by opaque data.
  uint64_t next_ping_ = 1;
  absl::flat_hash_map<uint64_t, std::function<void()>> pings_;

  // Adaptive window (BDP estimation): bytes received since the probe PING
  // went out, and the window we advertise.
  bool bdp_probe_out_ = false;
  Clock::time_point bdp_next_probe_;
  Clock::duration bdp_delay_{};
  std::size_t bdp_bytes_ = 0;
  int32_t window_ = 0;
};

}  // namespace dynrpc::internal::http

#endif  // DYNRPC_RUNTIME_SRC_HTTP_H2_CONNECTION_H_

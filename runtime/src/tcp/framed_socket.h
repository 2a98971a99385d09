// A TCP connection speaking frame.h's format: one buffered reader and one
// writer coroutine, shared by the client and the server side.
#ifndef DYNRPC_RUNTIME_SRC_TCP_FRAMED_SOCKET_H_
#define DYNRPC_RUNTIME_SRC_TCP_FRAMED_SOCKET_H_

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "dynrpc/config.h"
#include "dynrpc/message_buffers.h"
#include "net/sockets.h"
#include "tcp/frame.h"

namespace dynrpc::internal::tcp {

struct InFrame {
  FrameHeader header;
  std::string head;
  std::string payload;
  // The frame's head or payload was over the limit: `head` and `payload`
  // are empty, and its bytes are dropped unread (never allocated) by the
  // next ReadFrame().
  bool oversized = false;
};

// The socket's executor must be a strand; ReadFrame(), WaitForRoom() and
// WriteLoop() run on it, and every other member is safe from any thread.
// Shared by the reader and writer coroutines (and the calls that send on
// it); the socket closes when the last owner lets go or Close() is called.
//
// Memory a peer can make it hold: the 64 KiB read buffer (its pages touched
// only as bytes arrive), the frame being read (written only as its bytes
// arrive: at most twice what has arrived, or 16 KiB), and what the owner
// queues with Send(): a server bounds that with WaitForRoom().
class FramedSocket : public std::enable_shared_from_this<FramedSocket> {
 public:
  // Uses config.max_message_size, read_timeout, max_queued_bytes and the
  // keepalive settings (for the kernel's TCP keepalive).
  FramedSocket(boost::asio::ip::tcp::socket socket, const TcpConfig& config);

  // How a frame is batched with those queued before it.
  enum class Burst {
    // A call's REQUEST or its end: one per call, from many calls at once.
    kCall,
    // Anything else: a stream's messages, windows, pings, cancels.
    kOther,
  };
  // Queues a frame (its header and head, then its payload) for the writer.
  // Frames go out in the order Send() is called from one thread; the writer
  // batches whatever is queued into one gather write. Dropped after Close().
  //
  // A burst does not wait whole for the writer's turn on the strand: once
  // enough of it is queued (read_burst_.Group() call frames, or
  // kOtherFlushFrames frames of any kind), they come to at most
  // kMaxInlineBytes and nobody is writing, the Send()
  // that queued the last one writes them all itself, at once and without
  // blocking. The peer then starts on the first calls while this side still
  // makes the rest, instead of each side idling while the other works
  // through a whole batch.
  void Send(std::string prefix, std::string payload = {},
            Burst burst = Burst::kOther);
  static constexpr std::size_t kOtherFlushFrames = 32;
  // Larger queues are left to the writer: a Send() (maybe under its
  // caller's lock) never copies more than this into the kernel itself.
  static constexpr std::size_t kMaxInlineBytes = 256 << 10;

  // The single writer: drains the queue until Close() or a write error. The
  // coroutine owns `self`, so the socket lives as long as it runs.
  static boost::asio::awaitable<void> WriteLoop(
      std::shared_ptr<FramedSocket> self);

  // Reads the next frame. UNAVAILABLE when the peer closed the connection or
  // the socket failed, or when a frame that had begun to arrive stalled (no
  // byte for read_timeout: the connection is closed); INTERNAL for a
  // malformed header. A frame over the limits comes back with `oversized`
  // set. Only one reader at a time.
  boost::asio::awaitable<absl::StatusOr<InFrame>> ReadFrame();

  // Returns once the bytes queued for the peer are at most
  // max_queued_bytes, or the socket is closed. A server calls it before
  // reading the next request, so a peer that does not read its responses
  // stops being read (and TCP's own flow control holds it back).
  boost::asio::awaitable<void> WaitForRoom();
  // More than max_queued_bytes are queued: WaitForRoom() would wait.
  bool over_queued() const {
    return queued_bytes_.load(std::memory_order_relaxed) > max_queued_bytes_;
  }

  // When the reader last received bytes (strand only).
  std::chrono::steady_clock::time_point last_read() const { return last_read_; }
  const boost::asio::any_io_executor& executor() const { return strand_; }

  // Closes the socket; pending reads and writes end. Idempotent.
  void Close();

  // "ip:port" of the other end, for messages.
  const std::string& peer() const { return peer_; }
  std::size_t max_message_size() const { return max_message_size_; }

 private:
  // A queued frame; its first `sent` bytes (prefix, then payload) are
  // written already (an inline flush the socket did not take whole).
  struct Frame {
    std::string prefix;
    std::string payload;
    std::size_t sent = 0;
    std::size_t size() const { return prefix.size() + payload.size(); }
    // Calls f(data, size) for each part of what is still to write.
    template <typename F>
    void ForEachUnsent(F f) const {
      if (sent < prefix.size()) f(prefix.data() + sent, prefix.size() - sent);
      const std::size_t from = sent > prefix.size() ? sent - prefix.size() : 0;
      if (from < payload.size())
        f(payload.data() + from, payload.size() - from);
    }
  };
  boost::asio::awaitable<void> WriteQueued();
  // Moves every queued frame into `into` (under out_mu_).
  void TakeOutboxLocked(std::vector<Frame>& into);
  // Wakes the writer (its wait on wake_), on the strand.
  void PostWake();
  // Writes inline_batch_ from the calling thread without blocking; what the
  // socket does not take goes back to the front of the outbox, for the
  // writer. The caller set writing_ and inline_writing_.
  void FlushInline();
  // `written` bytes left the queue: wakes a WaitForRoom() it concerns.
  void Dequeued(std::size_t written, bool on_strand);
  boost::asio::awaitable<boost::system::error_code> Fill(std::size_t n);
  boost::asio::awaitable<boost::system::error_code> ReadExact(char* out,
                                                              std::size_t n);
  boost::asio::awaitable<boost::system::error_code> ReadPayload(
      std::string& payload, std::size_t n);
  boost::asio::awaitable<boost::system::error_code> Discard(std::size_t n);
  // One read into `buffers` (mid-frame reads move the stall deadline on).
  template <typename MutableBuffers>
  boost::asio::awaitable<boost::system::error_code> ReadSome(
      const MutableBuffers& buffers, std::size_t& got);
  // Reads the start of a frame expected to be shaped like the last one
  // (see ReadFrame()) into the empty read buffer and `payload`, lent for
  // the expected payload (64 KiB or more). Then either the
  // frame was so shaped: frame.header and frame.head are set, and
  // frame.payload (non-empty) is the kept loan with its first
  // `payload_got` bytes read; or frame.payload stays empty, the bytes that
  // came are in the read buffer in order and the loan is returned.
  boost::asio::awaitable<boost::system::error_code> ReadAhead(
      LentBuffer& payload, InFrame& frame, std::size_t& payload_got);
  std::size_t buffered() const { return read_end_ - read_begin_; }
  // A frame has begun to arrive: from now on a stall closes the connection.
  void StartFrameClock();
  void ArmWatchdog();
  absl::Status ReadError(const boost::system::error_code& ec) const;

  boost::asio::any_io_executor strand_;
  boost::asio::ip::tcp::socket socket_;
  std::size_t max_message_size_;
  std::chrono::milliseconds read_timeout_;
  std::size_t max_queued_bytes_;
  std::string peer_;

  // Reader state (strand).
  std::unique_ptr<char[]> read_buffer_;
  std::size_t read_begin_ = 0;
  std::size_t read_end_ = 0;
  std::size_t discard_ = 0;  // bytes of an oversized frame still to drop
  std::chrono::steady_clock::time_point last_read_;
  bool in_frame_ = false;  // a frame has begun and not yet fully arrived
  std::size_t frames_this_read_ = 0;  // frames taken from the last read
  // The shape of the last frame when its payload was large enough for a
  // recycled buffer (else 0): the next read expects one like it.
  uint32_t expect_head_ = 0;
  uint32_t expect_payload_ = 0;
  std::chrono::steady_clock::time_point stall_deadline_;
  boost::asio::steady_timer watchdog_;
  bool watchdog_armed_ = false;
  bool stalled_ = false;            // the watchdog closed the connection
  boost::asio::steady_timer room_;  // wakes WaitForRoom()

  // Bytes passed to Send() and not yet written (any thread).
  std::atomic<std::size_t> queued_bytes_{0};

  // Frames queued for the writer (any thread, under out_mu_): Send()
  // appends and posts one wake-up to the strand per batch, not a handler
  // per frame.
  std::mutex out_mu_;
  std::deque<Frame> outbox_;
  std::size_t outbox_bytes_ = 0;  // what outbox_'s frames still have to send
  bool wake_posted_ = false;      // a wake-up is on its way to the writer
  bool out_closed_ = false;       // Close() ran: Send() drops frames
  // The send side is taken, by the writer or by an inline flush: only its
  // holder writes to the socket.
  bool writing_ = false;
  bool inline_writing_ = false;  // the holder is an inline flush
  bool close_pending_ = false;   // Close() left the descriptor to it
  // The inline flush's frames and gather list (its holder only).
  std::vector<Frame> inline_batch_;
  std::vector<struct iovec> inline_iov_;
  std::size_t call_frames_ = 0;  // kCall frames in outbox_
  // Frames that come in one read: how many call frames start an inline
  // flush (written by the reader, read by Send()).
  net::BurstMeter read_burst_;

  // Writer state (strand).
  boost::asio::steady_timer wake_;
  bool closed_ = false;
};

// Maps a socket error to the status a call sees: UNAVAILABLE naming `what`.
absl::Status SocketError(const boost::system::error_code& ec,
                         absl::string_view what);

}  // namespace dynrpc::internal::tcp

#endif  // DYNRPC_RUNTIME_SRC_TCP_FRAMED_SOCKET_H_

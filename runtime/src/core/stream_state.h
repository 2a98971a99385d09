// The buffered, flow-controlled state of one streaming call, on either side:
// shared by the coroutines that use the stream and the plane's reader. Used
// by the planes whose wire has no flow control of its own (TCP, NATS).
#ifndef DYNRPC_RUNTIME_SRC_CORE_STREAM_STATE_H_
#define DYNRPC_RUNTIME_SRC_CORE_STREAM_STATE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/any_completion_handler.hpp"
#include "boost/asio/any_io_executor.hpp"
#include "boost/asio/awaitable.hpp"
#include "core/deadline.h"
#include "core/request_plane.h"

namespace dynrpc::internal {

// A coroutine's completion handler held by a StreamState while it waits
// (TakeEnd()). While held it is also known to its io_context's HeldWaits
// service (stream_state.cc), whose shutdown destroys it as Asio destroys
// its own pending operations: the handler owns the coroutine's frame, which
// may own the state that holds the handler, and nothing else would free
// either. Shared by the state and that service.
class HeldWaits;
struct HeldWait {
  struct Handler {
    boost::asio::any_completion_handler<void(boost::system::error_code)>
        handler;
    boost::asio::any_io_executor executor;  // the coroutine's
  };
  std::mutex mu;
  std::optional<Handler> handler;  // under mu
  HeldWaits* registry = nullptr;   // the service that knows of it (under mu)
};

// Thread-safe. Messages the peer sent wait here until read; the peer may
// send while its window (kInitialWindow bytes, replenished as we read; each
// message costs its size plus kMessageOverhead) is positive, so this buffer
// holds at most a window plus one message. A peer that sends beyond a window
// plus two messages (slack for a message in flight and a server-streaming
// call's request) is refused: Deliver() returns false. The stream ends once,
// with a result.
//
// Every change wakes every waiter, so a Read() and a Finish() (WaitEnd) may
// wait at the same time.
class StreamState {
 public:
  static constexpr int64_t kInitialWindow = 1 << 20;
  // What a message costs the window beyond its bytes (about a frame
  // header), so a stream of tiny messages is bounded too.
  static constexpr std::size_t kMessageOverhead = 20;

  // Set for a plane whose wire has flow control of its own (HTTP/2): no
  // window is kept here (ReserveSend() never waits, Deliver() never
  // refuses; the wire's window bounds what waits unread), and Read() grants
  // each message as it is read: its size plus `overhead` (its framing on
  // the wire), for the plane to give back to the peer.
  struct WireWindow {
    std::size_t overhead;
  };

  // `max_message`: the largest message the peer may send (the slack above
  // the window a sender may legitimately use).
  explicit StreamState(std::size_t max_message,
                       std::optional<WireWindow> wire = std::nullopt);

  // --- the connection's reader ---
  // False when the peer overran its window: the caller ends the call.
  // `compressed_with`: the algorithm that compressed it (Read() inflates
  // it, up to the message size limit).
  bool Deliver(std::string message,
               Compression compressed_with = Compression::kIdentity);
  // The peer sends no more messages (client half-close, seen by the server).
  void PeerDone();
  // The peer read `bytes` more: the send window grows, never beyond
  // kInitialWindow whatever the peer claims.
  void AddSendWindow(uint32_t bytes);
  // The server's initial metadata (a HEADERS frame); the end carries it
  // unless the end brings its own.
  void SetInitialMetadata(Metadata metadata);
  // How End() resumes TakeEnd()'s waiter.
  enum class Resume {
    // Through a completion posted to the waiter's executor: always safe.
    kPost,
    // In place, within End(), when the caller runs on the waiter's
    // executor (Asio's dispatch); posted otherwise. Only for a caller that
    // holds no lock and lets the waiter's code run inside it, up to the
    // waiter's next suspension (which may start another call): the TCP
    // client's reader, between frames. Spares the waiter a scheduler round.
    kInline,
  };
  // Ends the stream with `result` (its status decides what Read() returns
  // once the buffer is drained; with `discard_unread`, at once: a
  // cancellation). False if it had ended already.
  bool End(CallResult result, bool discard_unread = false,
           Resume resume = Resume::kPost);
  // Ends the stream with `why` (at once, like a cancellation) because its
  // connection was lost or refused it: when `why` is UNAVAILABLE and nothing
  // came from the server (no initial metadata, no message), the result is
  // marked not_processed, so a channel bound to a service may retry it
  // elsewhere.
  bool EndLost(absl::Status why);

  // --- the stream's users ---
  // The next message; nullopt after PeerDone() or an OK end; the end's
  // status otherwise. `*grant` is set to the bytes to announce to the peer in
  // a WINDOW frame (0: none yet). A cancelled wait yields CANCELLED. A
  // compressed message that inflates past the limit yields
  // RESOURCE_EXHAUSTED, a corrupt one INTERNAL, without ending the stream:
  // the caller ends the call (and tells the peer).
  // `*wire_bytes` (if given): the message's size as it came.
  boost::asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read(
      uint32_t* grant, std::size_t* wire_bytes = nullptr);
  // Waits until the send window is positive, then takes `bytes` from it.
  // The end's status if the stream ends first (FAILED_PRECONDITION after an
  // OK end: the peer finished while we were still writing).
  boost::asio::awaitable<absl::Status> ReserveSend(std::size_t bytes);
  // Waits for the end and returns it. Unread messages are dropped: then it
  // returns nullopt early with `*grant` set to their bytes, for the caller to
  // announce (so the peer can finish) before waiting again.
  boost::asio::awaitable<std::optional<CallResult>> WaitEnd(uint32_t* grant);

  // Waits for the end and moves it out: for a unary call, whose one waiter
  // this is (at most one at a time). The stream stays ended, but its result
  // is consumed (result() and end_status() no longer say it). A cancelled
  // wait yields CANCELLED (the stream goes on).
  boost::asio::awaitable<CallResult> TakeEnd();
  // The peer's largest message, once the plane knows it (NATS: the server's
  // max_payload, learnt when connected).
  void set_max_message(std::size_t max_message);
  std::size_t max_message() const;

  // The result, once ended.
  std::optional<CallResult> result() const;
  bool ended() const;
  // The end's status; OK while the stream runs.
  absl::Status end_status() const;

 private:
  bool EndLocked(CallResult result, bool discard_unread);
  // A wait in progress: its signal is in waiters_ from WaitLocked() until
  // this ends, however the wait ends. A coroutine frame destroyed while it
  // waits (an io_context destroyed with the call pending) thus leaves no
  // entry behind for a later WakeAllLocked() to fire: Boost 1.81's channel
  // crashes on a send to a channel whose waiting receive was abandoned by
  // the io_context's shutdown.
  class Waiting {
   public:
    explicit Waiting(StreamState& state) : state_(state) {}
    ~Waiting();
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;
    Signal& signal() { return *signal_; }

   private:
    friend class StreamState;
    StreamState& state_;
    std::shared_ptr<Signal> signal_;  // set under mu_ by WaitLocked()
  };
  // Under mu_: registers `waiting` for the next WakeAllLocked().
  void WaitLocked(const boost::asio::any_io_executor& ex, Waiting& waiting);
  void WakeAllLocked();
  uint32_t TakeGrantLocked(std::size_t consumed);

  mutable std::mutex mu_;
  std::size_t max_message_;  // under mu_
  // Set for a wire with its own flow control: each message's framing.
  const std::optional<std::size_t> wire_overhead_;
  // Made with the first message: a unary call's state never allocates one.
  struct Inbound {
    std::string bytes;
    Compression compressed_with;
  };
  std::optional<std::deque<Inbound>> inbound_;
  bool peer_done_ = false;
  std::optional<CallResult> end_;
  Metadata initial_metadata_;
  bool heard_ = false;  // initial metadata or a message came
  int64_t send_window_ = kInitialWindow;
  uint64_t unannounced_ = 0;  // bytes read but not yet granted back
  // Bytes the peer sent that we have not granted back: at most a window
  // (plus one message in flight, plus a server-streaming call's first one).
  uint64_t outstanding_ = 0;
  std::vector<std::shared_ptr<Signal>> waiters_;
  // TakeEnd()'s waiter: its coroutine's completion handler, held (not a
  // channel's posted completion) so that End() may resume it in place.
  // Made on the first wait and kept: a unary call's one waiter costs one
  // allocation.
  std::shared_ptr<HeldWait> end_waiter_;
  // Takes the waiting handler, if any (under mu_), for Resume() once mu_ is
  // released.
  std::optional<HeldWait::Handler> TakeEndWaiterLocked();
  static void ResumeEndWaiter(std::optional<HeldWait::Handler> waiter,
                              boost::system::error_code ec, Resume resume);
  // TakeEnd()'s initiation: holds `handler` until End() (or resumes it at
  // once when the stream ended meanwhile).
  void HoldEndWaiter(HeldWait::Handler handler);
};

}  // namespace dynrpc::internal

#endif  // DYNRPC_RUNTIME_SRC_CORE_STREAM_STATE_H_

#include "tcp/tcp_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <list>
#include <utility>
#include <variant>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/experimental/concurrent_channel.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "net/sockets.h"
#include "tcp/framed_socket.h"
#include "core/deadline.h"
#include "dynrpc/status_macros.h"
#include "tcp/limits.h"
#include "core/open_once.h"
#include "core/stream_state.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

using Reply = CallResult;
using ReplyChannel = asio::experimental::concurrent_channel<void(
    boost::system::error_code, Reply)>;
// Wakes a caller waiting for a connection; carries the failure of the dial it
// waited for, if that failed.
using WakeChannel = asio::experimental::concurrent_channel<void(
    boost::system::error_code, absl::Status)>;

// Splits "host:port" or "[v6]:port".
}  // namespace

// One multiplexed connection: calls are matched to responses by call id.
class ClientConnection : public std::enable_shared_from_this<ClientConnection> {
 public:
  explicit ClientConnection(std::shared_ptr<FramedSocket> socket)
      : socket_(std::move(socket)), keepalive_(socket_->executor()) {}

  // Sends a request frame (`prefix` from EncodeRequestPrefix, any call id)
  // and waits for its response. If the awaiting coroutine is cancelled the
  // server is told (a CANCEL frame) and the call yields CANCELLED.
  asio::awaitable<Reply> Call(std::string prefix, std::string payload,
                              CancelHook& cancel) {
    auto reply =
        std::make_shared<ReplyChannel>(co_await asio::this_coro::executor, 1);
    // Cancelled before it was sent: the server never hears of it.
    if (std::optional<absl::Status> why = cancel.cancelled()) {
      co_return CallResult(*why);
    }
    uint64_t id;
    {
      std::lock_guard lock(mu_);
      if (closed_) co_return CallResult(close_status_);
      id = next_id_++;
      pending_.emplace(id, reply);
      // Queued under the lock that the canceller below takes first, so a
      // CANCEL for this id is always queued after its REQUEST.
      SetCallId(prefix, id);
      socket_->Send(std::move(prefix), std::move(payload));
    }
    // The core's deadline or TryCancel(): complete the wait below with its
    // status and tell the server. Owns what it touches: it may run late.
    cancel.Set([self = shared_from_this(), id, reply](absl::Status why) {
      bool was_pending;
      {
        std::lock_guard lock(self->mu_);
        was_pending = self->pending_.erase(id) > 0;
      }
      if (!was_pending) return;
      reply->try_send(boost::system::error_code{}, CallResult(std::move(why)));
      self->socket_->Send(EncodeCancel(id));
    });
    // Runs also when the wait below throws because the call was cancelled.
    absl::Cleanup forget = [this, id] {
      bool was_pending;
      {
        std::lock_guard lock(mu_);
        was_pending = pending_.erase(id) > 0;
      }
      if (was_pending) socket_->Send(EncodeCancel(id));
    };
    auto [ec, result] = co_await reply->async_receive(as_tuple(use_awaitable));
    if (ec) co_return CallResult(absl::CancelledError("call cancelled"));
    co_return std::move(result);
  }

  // Registers a streaming call and sends its REQUEST frame (`prefix`, any
  // call id, then `first_message` if any). Returns the call id.
  absl::StatusOr<uint64_t> OpenStream(std::shared_ptr<StreamState> state,
                                      std::string prefix,
                                      std::string first_message) {
    uint64_t id;
    {
      std::lock_guard lock(mu_);
      if (closed_) return close_status_;
      id = next_id_++;
      streams_.emplace(id, std::move(state));
    }
    SetCallId(prefix, id);
    socket_->Send(std::move(prefix), std::move(first_message));
    return id;
  }

  void ForgetStream(uint64_t id) {
    std::lock_guard lock(mu_);
    streams_.erase(id);
  }

  // Delivers responses until the connection fails, then fails every call
  // still waiting with the reason (UNAVAILABLE for a lost connection). The
  // coroutine owns `self`.
  static asio::awaitable<void> ReadLoop(std::shared_ptr<ClientConnection> self) {
    // Every wait below uses as_tuple: cancellation arrives as an error code
    // and the cleanup after the loop still runs.
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await self->ReadResponses();
  }

  // Liveness: while calls are in flight and nothing has arrived for
  // `interval`, sends a PING; when nothing (a PONG or anything else) arrives
  // within `timeout` after it, the connection is lost: its calls end
  // UNAVAILABLE. Runs on the socket's strand until the connection closes.
  static asio::awaitable<void> KeepaliveLoop(
      std::shared_ptr<ClientConnection> self,
      std::chrono::milliseconds interval, std::chrono::milliseconds timeout) {
    co_await asio::this_coro::throw_if_cancelled(false);
    FramedSocket& socket = *self->socket_;
    for (;;) {
      const bool busy = self->busy();
      const Clock::time_point quiet_until = socket.last_read() + interval;
      if (!busy || quiet_until > Clock::now()) {
        // Idle (the kernel's keepalive watches it), or heard from lately.
        self->keepalive_.expires_at(busy ? quiet_until
                                         : Clock::now() + interval);
        auto [ec] =
            co_await self->keepalive_.async_wait(as_tuple(use_awaitable));
        if (ec || self->closed()) co_return;
        continue;
      }
      Clock::time_point sent = Clock::now();
      socket.Send(EncodePing());
      self->keepalive_.expires_after(timeout);
      auto [ec] = co_await self->keepalive_.async_wait(as_tuple(use_awaitable));
      if (ec || self->closed()) co_return;
      if (socket.last_read() < sent) {
        self->FailAll(absl::UnavailableError(absl::StrCat(
            "connection to ", socket.peer(),
            " lost: no answer to a keepalive PING within "
            "DYN_TCP_KEEPALIVE_TIMEOUT=",
            timeout.count(), " ms")));
        socket.Close();
        co_return;
      }
    }
  }

 private:
  asio::awaitable<void> ReadResponses() {
    absl::Status why;
    for (;;) {
      absl::StatusOr<InFrame> frame = co_await socket_->ReadFrame();
      if (!frame.ok()) {
        // A lost connection, or a peer whose frames cannot be trusted:
        // either way the connection is gone for its calls.
        why = absl::IsUnavailable(frame.status())
                  ? frame.status()
                  : absl::UnavailableError(absl::StrCat(
                        "connection to ", socket_->peer(),
                        " closed: ", frame.status().message()));
        break;
      }
      const FrameHeader& header = frame->header;
      if (header.type == FrameType::kPong) continue;  // liveness only
      if (header.type == FrameType::kRequest ||
          header.type == FrameType::kCancel ||
          header.type == FrameType::kHalfClose ||
          header.type == FrameType::kPing) {  // only clients send these
        why = absl::UnavailableError(absl::StrCat(
            "connection to ", socket_->peer(),
            " closed: malformed frame: unexpected frame type ",
            static_cast<int>(header.type)));
        break;
      }
      if (header.type == FrameType::kResponse) {
        std::shared_ptr<ReplyChannel> reply;
        {
          std::lock_guard lock(mu_);
          auto it = pending_.find(header.call_id);
          if (it != pending_.end()) {
            reply = std::move(it->second);
            pending_.erase(it);
          }
        }
        if (reply) {
          reply->try_send(boost::system::error_code{},
                          ToReply(*std::move(frame)));
          continue;
        }
      }
      std::shared_ptr<StreamState> stream;
      {
        std::lock_guard lock(mu_);
        auto it = streams_.find(header.call_id);
        if (it == streams_.end()) continue;  // ended meanwhile
        stream = it->second;
        if (header.type == FrameType::kResponse) streams_.erase(it);
      }
      if (!DeliverToStream(*stream, *std::move(frame))) {
        socket_->Send(EncodeCancel(header.call_id));
        ForgetStream(header.call_id);
      }
    }
    FailAll(why);
    socket_->Close();
  }

  // False when the stream had to be ended here (an oversized message).
  bool DeliverToStream(StreamState& stream, InFrame frame) {
    switch (frame.header.type) {
      case FrameType::kHeaders: {
        absl::StatusOr<Metadata> metadata = DecodeHeaders(frame.head);
        if (metadata.ok()) stream.SetInitialMetadata(*std::move(metadata));
        return true;
      }
      case FrameType::kMessage:
        if (frame.oversized) {
          stream.End(CallResult(OversizedError(
                         "response", frame.header, socket_->max_message_size())),
                     /*discard_unread=*/true);
          return false;
        }
        if (!stream.Deliver(std::move(frame.payload))) {
          stream.End(CallResult(absl::ResourceExhaustedError(absl::StrCat(
                         "the server at ", socket_->peer(),
                         " sent beyond the stream's flow-control window"))),
                     /*discard_unread=*/true);
          return false;
        }
        return true;
      case FrameType::kWindow: {
        absl::StatusOr<uint32_t> bytes = DecodeWindow(frame.head);
        if (bytes.ok()) stream.AddSendWindow(*bytes);
        return true;
      }
      case FrameType::kResponse: {
        bool has_message = (frame.header.flags & kFlagHasMessage) != 0;
        std::string payload = std::move(frame.payload);
        CallResult result = ToReply(std::move(frame));
        if (result.status.ok() && has_message) {
          stream.Deliver(std::move(payload));  // its window is not checked:
                                               // it ends the call
          result.has_message = false;
          result.payload.clear();
        }
        stream.End(std::move(result));
        return true;
      }
      default:
        return true;
    }
  }


 public:
  void Close() {
    FailAll(absl::UnavailableError(
        absl::StrCat("connection to ", socket_->peer(), " closed by the client")));
    socket_->Close();
  }

  bool closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

  const std::shared_ptr<FramedSocket>& socket() const { return socket_; }

  // Calls using this connection; guarded by the pool's mutex.
  std::size_t in_flight = 0;

 private:
  CallResult ToReply(InFrame frame) {
    if (frame.oversized) {
      return CallResult(OversizedError("response", frame.header,
                                       socket_->max_message_size()));
    }
    absl::StatusOr<ResponseHead> head = DecodeResponseHead(frame.head);
    if (!head.ok()) return CallResult(head.status());
    CallResult result(absl::Status(head->code, head->message));
    result.initial_metadata = std::move(head->initial_metadata);
    result.trailing_metadata = std::move(head->metadata);
    if (result.status.ok()) {
      result.has_message = (frame.header.flags & kFlagHasMessage) != 0;
      result.payload = std::move(frame.payload);
    }
    return result;
  }

  // Calls or streams are in flight.
  bool busy() {
    std::lock_guard lock(mu_);
    return !pending_.empty() || !streams_.empty();
  }

  void FailAll(const absl::Status& why) {
    absl::flat_hash_map<uint64_t, std::shared_ptr<ReplyChannel>> pending;
    absl::flat_hash_map<uint64_t, std::shared_ptr<StreamState>> streams;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      close_status_ = why;
      pending.swap(pending_);
      streams.swap(streams_);
    }
    // The keepalive task ends now rather than at its next tick.
    asio::post(socket_->executor(),
               [self = shared_from_this()] { self->keepalive_.cancel(); });
    for (auto& [id, reply] : pending) {
      reply->try_send(boost::system::error_code{}, CallResult(why));
    }
    for (auto& [id, stream] : streams) stream->End(CallResult(why));
  }

  std::shared_ptr<FramedSocket> socket_;
  asio::steady_timer keepalive_;  // KeepaliveLoop's (strand)
  std::mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<ReplyChannel>> pending_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<StreamState>> streams_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
  absl::Status close_status_;
};

// The connections to one target.
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool> {
 public:
  // A slot on a connection: released (and a waiter woken) on destruction.
  class Lease {
   public:
    Lease(std::shared_ptr<ConnectionPool> pool,
          std::shared_ptr<ClientConnection> connection)
        : pool_(std::move(pool)), connection_(std::move(connection)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = default;
    ~Lease() {
      if (pool_) pool_->Release(*connection_);
    }
    ClientConnection& connection() { return *connection_; }
    const std::shared_ptr<ClientConnection>& shared_connection() const {
      return connection_;
    }

   private:
    std::shared_ptr<ConnectionPool> pool_;
    std::shared_ptr<ClientConnection> connection_;
  };

  ConnectionPool(std::string target, const TcpConfig& config,
                 std::shared_ptr<TaskGroup> tasks)
      : target_(std::move(target)), config_(config), tasks_(std::move(tasks)) {}

  ~ConnectionPool() {
    for (auto& connection : connections_) connection->Close();
  }

  // A slot on the least-loaded open connection. When every connection is
  // full, one caller dials a new one (while the pool has room) and the others
  // wait for that dial: its failure fails them too, so a dead server costs
  // one connect attempt, not one per call. When the pool is full, callers
  // wait for a slot to free up.
  // A slot on an open connection now, if one is free.
  std::optional<Lease> TryAcquire() {
    std::lock_guard lock(mu_);
    return TryAcquireLocked();
  }

  asio::awaitable<absl::StatusOr<Lease>> Acquire() {
    for (;;) {
      std::shared_ptr<WakeChannel> waiter;
      {
        std::lock_guard lock(mu_);
        if (std::optional<Lease> lease = TryAcquireLocked()) {
          co_return *std::move(lease);
        }
        if (!dialing_ && connections_.size() < config_.pool_size) {
          dialing_ = true;
        } else {
          waiter = std::make_shared<WakeChannel>(
              co_await asio::this_coro::executor, 1);
          (dialing_ ? dial_waiters_ : slot_waiters_).push_back(waiter);
        }
      }
      if (waiter) {
        bool woken = false;
        // Also runs when the wait throws on cancellation. A waiter that was
        // woken but gives up passes the freed slot on.
        absl::Cleanup leave = [this, &waiter, &woken] {
          if (woken) return;
          std::lock_guard lock(mu_);
          std::size_t queued =
              dial_waiters_.remove(waiter) + slot_waiters_.remove(waiter);
          if (queued == 0) WakeSlotWaiterLocked();
        };
        auto [ec, outcome] =
            co_await waiter->async_receive(as_tuple(use_awaitable));
        if (ec) {
          co_return absl::CancelledError(
              "cancelled while waiting for a connection");
        }
        woken = true;
        if (!outcome.ok()) co_return outcome;  // the dial we waited for failed
        continue;
      }
      absl::StatusOr<std::shared_ptr<ClientConnection>> connection =
          absl::CancelledError("dial cancelled");
      {
        // Also runs if the dial is cancelled: the waiters retry.
        absl::Cleanup done_dialing = [this, &connection] {
          std::lock_guard lock(mu_);
          dialing_ = false;
          if (connection.ok()) {
            // Ours before anyone else can see it.
            (*connection)->in_flight = 1;
            connections_.push_back(*connection);
          }
          absl::Status outcome = connection.ok() || absl::IsCancelled(
                                                        connection.status())
                                     ? absl::OkStatus()
                                     : connection.status();
          for (auto& w : dial_waiters_) {
            w->try_send(boost::system::error_code{}, outcome);
          }
          dial_waiters_.clear();
        };
        connection = co_await Dial();
      }
      if (!connection.ok()) co_return connection.status();
      co_return Lease(shared_from_this(), std::move(*connection));
    }
  }

 private:
  std::optional<Lease> TryAcquireLocked() {
    std::erase_if(connections_, [](const auto& c) { return c->closed(); });
    std::shared_ptr<ClientConnection> best;
    for (const auto& c : connections_) {
      if (c->in_flight < config_.channel_buffer &&
          (best == nullptr || c->in_flight < best->in_flight)) {
        best = c;
      }
    }
    if (best == nullptr) return std::nullopt;
    ++best->in_flight;
    return Lease(shared_from_this(), std::move(best));
  }

  asio::awaitable<absl::StatusOr<std::shared_ptr<ClientConnection>>> Dial() {
    asio::any_io_executor strand = tasks_->NewStrand();
    absl::StatusOr<tcp::socket> socket = co_await net::Connect(
        strand, target_, config_.connect_timeout, "DYN_TCP_CONNECT_TIMEOUT");
    if (!socket.ok()) co_return socket.status();
    auto framed = std::make_shared<FramedSocket>(std::move(*socket), config_);
    auto connection = std::make_shared<ClientConnection>(framed);
    tasks_->Spawn(strand, FramedSocket::WriteLoop(framed), "tcp client writer");
    tasks_->Spawn(strand, ClientConnection::ReadLoop(connection),
                  "tcp client reader");
    tasks_->Spawn(strand,
                  ClientConnection::KeepaliveLoop(
                      connection, config_.keepalive_interval,
                      config_.keepalive_timeout),
                  "tcp client keepalive");
    co_return connection;
  }

  void Release(ClientConnection& connection) {
    std::lock_guard lock(mu_);
    --connection.in_flight;
    WakeSlotWaiterLocked();
  }

  void WakeSlotWaiterLocked() {
    while (!slot_waiters_.empty()) {
      std::shared_ptr<WakeChannel> w = std::move(slot_waiters_.front());
      slot_waiters_.pop_front();
      if (w->try_send(boost::system::error_code{}, absl::OkStatus())) return;
    }
  }

  const std::string target_;
  const TcpConfig config_;
  const std::shared_ptr<TaskGroup> tasks_;  // the client's
  std::mutex mu_;
  std::vector<std::shared_ptr<ClientConnection>> connections_;
  bool dialing_ = false;  // one dial at a time
  // Callers waiting for the dial in progress; told its failure.
  std::list<std::shared_ptr<WakeChannel>> dial_waiters_;
  // Callers waiting for a slot on a full pool.
  std::list<std::shared_ptr<WakeChannel>> slot_waiters_;
};

TcpClient::TcpClient(TcpConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      tasks_(std::make_shared<TaskGroup>(executor_)) {}

TcpClient::~TcpClient() {
  {
    std::lock_guard lock(mu_);
    pools_.clear();
  }
  tasks_->CancelAll();
}

std::shared_ptr<ConnectionPool> TcpClient::PoolFor(std::string_view target) {
  absl::string_view key(target.data(), target.size());
  std::lock_guard lock(mu_);
  // Looked up without building a std::string: this runs on every call.
  if (auto it = pools_.find(key); it != pools_.end()) return it->second;
  auto pool =
      std::make_shared<ConnectionPool>(std::string(target), config_, tasks_);
  pools_.emplace(std::string(target), pool);
  return pool;
}

namespace {

// The time left until `deadline`, for the wire; 0 means none.
uint64_t TimeLeftUs(const std::optional<Clock::time_point>& deadline) {
  if (!deadline) return 0;
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(
      *deadline - Clock::now());
  return static_cast<uint64_t>(std::max<int64_t>(left.count(), 1));
}

}  // namespace

asio::awaitable<CallResult> TcpClient::Unary(
    std::string_view target, CallRequest request,
    std::shared_ptr<CancelHook> cancel) {
  // Refuse what the server would refuse, before anything is written.
  if (request.payload.size() > config_.max_message_size) {
    co_return CallResult(OversizedError("request", request.payload.size(),
                                        config_.max_message_size));
  }
  RequestHead head;
  head.method = std::move(request.method);
  head.metadata = std::move(request.metadata);
  absl::StatusOr<std::string> prefix =
      EncodeRequestPrefix(0, head, request.payload.size());
  if (!prefix.ok()) co_return CallResult(prefix.status());

  std::shared_ptr<ConnectionPool> pool = PoolFor(target);
  std::optional<ConnectionPool::Lease> lease = pool->TryAcquire();
  if (!lease) {
    // Slow path: dial, or wait for a slot, until done or cancelled.
    auto wake = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
    cancel->Set([wake](absl::Status) {
      wake->try_send(boost::system::error_code{});
    });
    absl::StatusOr<ConnectionPool::Lease> waited = co_await WithDeadline(
        pool->Acquire(), Clock::time_point::max(), "", nullptr, wake);
    if (std::optional<absl::Status> why = cancel->cancelled()) {
      co_return CallResult(*why);
    }
    if (!waited.ok()) co_return CallResult(waited.status());
    lease.emplace(*std::move(waited));
  }
  // The time left when the request is written, not when it was made.
  SetTimeout(*prefix, TimeLeftUs(request.deadline));
  co_return co_await lease->connection().Call(
      std::move(*prefix), std::move(request.payload), *cancel);
}

// A streaming call: opened by its first operation on a pooled connection,
// whose slot it holds until it ends.
class TcpClientStream final : public ClientStream {
 public:
  TcpClientStream(std::shared_ptr<ConnectionPool> pool, CallRequest head,
                  std::optional<std::string> first_message,
                  std::size_t max_message, asio::any_io_executor executor)
      : pool_(std::move(pool)),
        head_(std::move(head)),
        first_message_(std::move(first_message)),
        max_message_(max_message),
        state_(std::make_shared<StreamState>(max_message)),
        cancel_open_(std::make_shared<Signal>(executor, 1)) {}

  ~TcpClientStream() override {
    Cancel(absl::CancelledError("stream dropped before it ended"));
  }

  asio::awaitable<absl::Status> Write(std::string message) override {
    DYNRPC_CO_RETURN_IF_ERROR(co_await EnsureOpen());
    if (writes_done_) {
      co_return absl::FailedPreconditionError("Write() after WritesDone()");
    }
    if (message.size() > max_message_) {
      co_return OversizedError("request", message.size(), max_message_);
    }
    absl::Status reserved = co_await state_->ReserveSend(message.size());
    if (!reserved.ok()) {
      // Our wait was cancelled (the caller's coroutine): end the call.
      if (absl::IsCancelled(reserved) && !state_->ended()) Cancel(reserved);
      co_return reserved;
    }
    if (writes_done_) {  // a WritesDone() raced past us: never after it
      co_return absl::FailedPreconditionError("Write() after WritesDone()");
    }
    std::string prefix = EncodeMessagePrefix(id_, message.size());
    connection_->socket()->Send(std::move(prefix), std::move(message));
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::Status> WritesDone() override {
    DYNRPC_CO_RETURN_IF_ERROR(co_await EnsureOpen());
    if (!writes_done_) {
      writes_done_ = true;
      connection_->socket()->Send(EncodeHalfClose(id_));
    }
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    absl::Status open = co_await EnsureOpen();
    if (!open.ok()) co_return open;
    uint32_t grant = 0;
    absl::StatusOr<std::optional<std::string>> message =
        co_await state_->Read(&grant);
    if (grant > 0) connection_->socket()->Send(EncodeWindow(id_, grant));
    if (absl::IsCancelled(message.status()) && !state_->ended()) {
      // Our wait was cancelled (the caller's coroutine): end the call.
      Cancel(message.status());
    }
    if (state_->ended()) ReleaseSlot();
    co_return message;
  }

  asio::awaitable<CallResult> Finish() override {
    absl::Status open = co_await EnsureOpen();
    if (!open.ok()) co_return CallResult(open);
    if (!writes_done_ && !state_->ended()) co_await WritesDone();
    for (;;) {
      uint32_t grant = 0;
      std::optional<CallResult> end = co_await state_->WaitEnd(&grant);
      if (end) {
        ReleaseSlot();
        co_return *std::move(end);
      }
      connection_->socket()->Send(EncodeWindow(id_, grant));
    }
  }

  std::optional<CallResult> EndedResult() const override {
    return state_->result();
  }

  void Cancel(absl::Status why) override {
    if (!state_->End(CallResult(why), /*discard_unread=*/true)) return;
    cancel_open_->try_send(boost::system::error_code{});  // if still opening
    {
      std::lock_guard lock(mu_);
      if (connection_ != nullptr && opened_ok_) {
        connection_->socket()->Send(EncodeCancel(id_));
        connection_->ForgetStream(id_);
      }
    }
    ReleaseSlot();
  }

 private:
  // Gives the connection slot back once the call has ended, so a finished
  // stream kept around does not hold one of DYN_TCP_CHANNEL_BUFFER's slots.
  void ReleaseSlot() {
    std::optional<ConnectionPool::Lease> lease;
    {
      std::lock_guard lock(mu_);
      lease.swap(lease_);
    }
  }

  // Opens the call once; concurrent first operations wait for that.
  asio::awaitable<absl::Status> EnsureOpen() {
    return open_.Run(this, &TcpClientStream::Open);
  }

  asio::awaitable<absl::Status> Open() {
    if (state_->ended()) co_return state_->end_status();
    if (first_message_ && first_message_->size() > max_message_) {
      absl::Status error =
          OversizedError("request", first_message_->size(), max_message_);
      state_->End(CallResult(error));
      co_return error;
    }
    RequestHead head;
    head.method = std::move(head_.method);
    head.metadata = std::move(head_.metadata);
    uint16_t flags = kFlagStreaming;
    if (first_message_) flags |= kFlagHasMessage | kFlagEndStream;
    std::string first = first_message_ ? std::move(*first_message_) : "";
    absl::StatusOr<std::string> prefix =
        EncodeRequestPrefix(0, head, first.size(), flags);
    if (!prefix.ok()) {
      state_->End(CallResult(prefix.status()));
      co_return prefix.status();
    }
    // The core always sets a deadline. (Not a ?: around co_await: GCC 12
    // miscompiles that.)
    absl::StatusOr<ConnectionPool::Lease> lease = co_await WithDeadline(
        pool_->Acquire(), head_.deadline.value_or(Clock::time_point::max()),
        "the call's deadline passed while it waited for a connection",
        /*context=*/nullptr, cancel_open_);
    if (!lease.ok() && state_->ended()) {
      co_return state_->end_status();  // cancelled (or timed out) meanwhile
    }
    if (!lease.ok()) {
      state_->End(CallResult(lease.status()));
      co_return lease.status();
    }
    std::shared_ptr<ClientConnection> connection = lease->shared_connection();
    {
      std::lock_guard lock(mu_);
      lease_.emplace(*std::move(lease));
    }
    SetTimeout(*prefix, TimeLeftUs(head_.deadline));
    absl::StatusOr<uint64_t> id =
        connection->OpenStream(state_, *std::move(prefix), std::move(first));
    if (!id.ok()) {
      state_->End(CallResult(id.status()));
      co_return id.status();
    }
    if (first_message_) writes_done_ = true;
    {
      std::lock_guard lock(mu_);
      id_ = *id;
      connection_ = connection;
      opened_ok_ = true;
    }
    if (state_->ended()) {  // cancelled while opening
      connection_->socket()->Send(EncodeCancel(id_));
      connection_->ForgetStream(id_);
      ReleaseSlot();
    }
    co_return absl::OkStatus();
  }

  std::shared_ptr<ConnectionPool> pool_;
  CallRequest head_;
  std::optional<std::string> first_message_;
  std::size_t max_message_;
  std::shared_ptr<StreamState> state_;
  std::shared_ptr<Signal> cancel_open_;  // Cancel() ends Open()'s wait
  std::optional<ConnectionPool::Lease> lease_;  // guarded by mu_
  std::atomic<bool> writes_done_{false};

  std::mutex mu_;
  OpenOnce open_;
  bool opened_ok_ = false;                  // guarded by mu_
  // Set once opened (under mu_); outlives the lease, which ReleaseSlot()
  // gives back when the call ends.
  std::shared_ptr<ClientConnection> connection_;
  uint64_t id_ = 0;
};

std::unique_ptr<ClientStream> TcpClient::StartStream(
    std::string_view target, CallRequest head,
    std::optional<std::string> first_message) {
  return std::make_unique<TcpClientStream>(PoolFor(target), std::move(head),
                                           std::move(first_message),
                                           config_.max_message_size, executor_);
}

}  // namespace dynrpc::internal::tcp

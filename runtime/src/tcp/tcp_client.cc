#include "tcp/tcp_client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/experimental/awaitable_operators.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/client_call.h"
#include "core/connection_pool.h"
#include "core/deadline.h"
#include "core/liveness.h"
#include "core/metrics.h"
#include "core/stream_state.h"
#include "dynrpc/status_macros.h"
#include "net/sockets.h"
#include "tcp/framed_socket.h"
#include "tcp/limits.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;
using asio::ip::tcp;

// One multiplexed connection: calls are matched to responses by call id.
class ClientConnection final
    : public std::enable_shared_from_this<ClientConnection>,
      public PooledConnection,
      public WatchedConnection {
 public:
  // A call in flight: where its frames go.
  struct Call {
    std::shared_ptr<StreamState> state;
    bool streaming = false;  // else unary: the RESPONSE carries the message
  };

  // Watched by the core's liveness policy: a PING when the server has been
  // silent for keepalive_interval with calls in flight; no answer within
  // keepalive_timeout and the connection is lost.
  ClientConnection(std::shared_ptr<FramedSocket> socket,
                   const TcpConfig& config)
      : WatchedConnection(
            Liveness::Policy{.interval = config.keepalive_interval,
                             .timeout = config.keepalive_timeout,
                             .probe_name = "keepalive PING",
                             .timeout_setting = absl::StrCat(
                                 "DYN_TCP_KEEPALIVE_TIMEOUT=",
                                 config.keepalive_timeout.count(), " ms"),
                             .idle_setting = ""},
            socket->executor()),
        socket_(std::move(socket)),
        channel_buffer_(config.channel_buffer) {}

  // A new connection to `target`, its reader, writer and watcher running.
  static asio::awaitable<absl::StatusOr<std::shared_ptr<PooledConnection>>>
  Dial(std::string target, TcpConfig config, TaskGroup& tasks) {
    asio::any_io_executor strand = tasks.NewStrand();
    absl::StatusOr<tcp::socket> socket = co_await net::Connect(
        strand, target, config.connect_timeout, "DYN_TCP_CONNECT_TIMEOUT");
    if (!socket.ok()) co_return socket.status();
    auto framed = std::make_shared<FramedSocket>(std::move(*socket), config);
    auto connection = std::make_shared<ClientConnection>(framed, config);
    tasks.Spawn(strand, FramedSocket::WriteLoop(framed), "tcp client writer");
    tasks.Spawn(strand, ReadLoop(connection), "tcp client reader");
    tasks.Spawn(strand, Watch(connection), "tcp client keepalive");
    co_return connection;
  }

  // Registers a call whose frames go to `state` and sends its REQUEST
  // frame (`prefix` from EncodeRequestPrefix, any call id, then `payload`).
  // Returns the call id.
  absl::StatusOr<uint64_t> Register(std::shared_ptr<StreamState> state,
                                    bool streaming, std::string prefix,
                                    std::string payload) {
    std::lock_guard lock(mu_);
    if (closed_) return close_status_;
    uint64_t id = next_id_++;
    calls_.emplace(id, Call{std::move(state), streaming});
    // Queued under the lock that CancelCall() takes, so a CANCEL for this
    // id is always queued after its REQUEST.
    SetCallId(prefix, id);
    socket_->Send(std::move(prefix), std::move(payload),
                  FramedSocket::Burst::kCall);
    return id;
  }

  // The call ended on our side: tell the server, if it has not ended there.
  void CancelCall(uint64_t id) {
    bool was_live;
    {
      std::lock_guard lock(mu_);
      was_live = calls_.erase(id) > 0;
    }
    if (was_live) socket_->Send(EncodeCancel(id));
  }

  // Delivers responses until the connection fails, then fails every call
  // still waiting with the reason (UNAVAILABLE for a lost connection). The
  // coroutine owns `self`.
  static asio::awaitable<void> ReadLoop(
      std::shared_ptr<ClientConnection> self) {
    // Every wait below uses as_tuple: cancellation arrives as an error code
    // and the cleanup after the loop still runs.
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await self->ReadResponses();
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
                  : absl::UnavailableError(
                        absl::StrCat("connection to ", socket_->peer(),
                                     " closed: ", frame.status().message()));
        break;
      }
      const FrameHeader& header = frame->header;
      if (header.type == FrameType::kPong) continue;  // liveness only
      if (header.type == FrameType::kRequest ||
          header.type == FrameType::kCancel ||
          header.type == FrameType::kHalfClose ||
          header.type == FrameType::kPing) {  // only clients send these
        why = absl::UnavailableError(
            absl::StrCat("connection to ", socket_->peer(),
                         " closed: malformed frame: unexpected frame type ",
                         static_cast<int>(header.type)));
        break;
      }
      Call call;
      {
        std::lock_guard lock(mu_);
        auto it = calls_.find(header.call_id);
        if (it == calls_.end()) continue;  // ended meanwhile
        call = it->second;
        if (header.type == FrameType::kResponse) calls_.erase(it);
      }
      if (!Deliver(call, *std::move(frame))) CancelCall(header.call_id);
    }
    FailAll(why);
    socket_->Close();
  }

  // False when the call had to be ended here (an oversized message).
  bool Deliver(const Call& call, InFrame frame) {
    // A unary call hears its RESPONSE only.
    if (!call.streaming && frame.header.type != FrameType::kResponse) {
      return true;
    }
    StreamState& stream = *call.state;
    switch (frame.header.type) {
      case FrameType::kHeaders: {
        absl::StatusOr<Metadata> metadata = DecodeHeaders(frame.head);
        if (metadata.ok()) stream.SetInitialMetadata(*std::move(metadata));
        return true;
      }
      case FrameType::kMessage:
        if (frame.oversized) {
          stream.End(CallResult(OversizedError("response", frame.header,
                                               socket_->max_message_size())),
                     /*discard_unread=*/true);
          return false;
        }
        if (!stream.Deliver(std::move(frame.payload),
                            CompressionOf(frame.header.flags))) {
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
        if (!call.streaming) {
          // The caller goes on at once, in this thread when it runs on this
          // executor: the reader holds no lock here and reads on once the
          // caller waits again.
          stream.End(ToReply(std::move(frame)), /*discard_unread=*/false,
                     StreamState::Resume::kInline);
          return true;
        }
        bool has_message = (frame.header.flags & kFlagHasMessage) != 0;
        std::string payload = std::move(frame.payload);
        CallResult result = ToReply(std::move(frame));
        if (result.status.ok() && has_message) {
          // Its window is not checked: it ends the call.
          stream.Deliver(std::move(payload), CompressionOf(frame.header.flags));
          result.has_message = false;
          result.payload.clear();
          result.payload_compressed = false;
        }
        stream.End(std::move(result));
        return true;
      }
      default:
        return true;
    }
  }

 public:
  // The pool's view.
  bool accepting() const override { return !closed(); }
  std::size_t capacity() const override { return channel_buffer_; }
  void Close(absl::Status why) override {
    FailAll(why);
    socket_->Close();
  }
  void OnCallsOpen(bool open) override { SetCallsOpen(open); }

  bool closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }

  const std::shared_ptr<FramedSocket>& socket() const { return socket_; }

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
      result.encoding = CompressionOf(frame.header.flags);
      result.payload_compressed = result.encoding != Compression::kIdentity;
    }
    return result;
  }

  // The liveness policy's plane half.
  void SendProbe() override { socket_->Send(EncodePing()); }
  void Lost(absl::Status why) override { Close(std::move(why)); }
  bool CloseIdle(absl::Status) override { return false; }  // never asked
  bool WatchingDone() override { return closed(); }
  std::string peer_name() const override {
    return absl::StrCat("the server at ", socket_->peer());
  }
  Clock::time_point last_heard() const override { return socket_->last_read(); }

  void FailAll(const absl::Status& why) {
    absl::flat_hash_map<uint64_t, Call> calls;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      close_status_ = why;
      calls.swap(calls_);
    }
    StopWatching();  // now rather than at its next wake
    for (auto& [id, call] : calls) call.state->EndLost(why);
  }

  std::shared_ptr<FramedSocket> socket_;
  const std::size_t channel_buffer_;
  mutable std::mutex mu_;
  absl::flat_hash_map<uint64_t, Call> calls_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
  absl::Status close_status_;
};

TcpClient::TcpClient(TcpConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      tasks_(std::make_shared<TaskGroup>(executor_)),
      pools_([this](std::string_view target) {
        ConnectionPool::Options options;
        options.max_connections = config_.pool_size;
        options.connections_gauge = &Metrics::Global().client_connections(0);
        return std::make_shared<ConnectionPool>(
            std::move(options), [target = std::string(target), config = config_,
                                 tasks = tasks_](ConnectionPool&) {
              return ClientConnection::Dial(target, config, *tasks);
            });
      }) {}

TcpClient::~TcpClient() {
  pools_.Clear();
  tasks_->CancelAll();
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

// The frames of one call on a pooled connection, whose slot it holds until
// the core releases it.
class TcpLink final : public ClientLink {
 public:
  TcpLink(ConnectionPool::Lease lease, uint64_t id, std::size_t max_message,
          Compression encoding)
      : connection_(lease.shared<ClientConnection>()),
        lease_(std::move(lease)),
        id_(id),
        max_message_(max_message),
        compressed_flag_(CompressionFlag(encoding)) {}

  absl::Status CheckMessage(std::size_t bytes) const override {
    if (bytes <= max_message_) return absl::OkStatus();
    return OversizedError("request", bytes, max_message_);
  }
  absl::Status SendMessage(std::string message, bool compressed) override {
    // Its own statement: arguments are evaluated in no set order.
    std::string prefix = EncodeMessagePrefix(id_, message.size(),
                                             compressed ? compressed_flag_ : 0);
    socket().Send(std::move(prefix), std::move(message));
    return absl::OkStatus();
  }
  void SendHalfClose() override { socket().Send(EncodeHalfClose(id_)); }
  void SendWindow(uint32_t bytes) override {
    socket().Send(EncodeWindow(id_, bytes));
  }
  void SendCancel() override { connection_->CancelCall(id_); }
  void Release() override { lease_.reset(); }

 private:
  FramedSocket& socket() { return *connection_->socket(); }

  const std::shared_ptr<ClientConnection> connection_;
  std::optional<ConnectionPool::Lease> lease_;
  const uint64_t id_;
  const std::size_t max_message_;
  const uint16_t compressed_flag_;  // the call's compression
};

asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>> TcpClient::Open(
    std::string_view target, CallRequest& head, std::string* first_message,
    bool streaming, std::shared_ptr<StreamState> state, OpenCancel& cancel) {
  // Refuse what the server would refuse, before anything is written.
  std::string payload;
  if (first_message != nullptr) {
    if (first_message->size() > config_.max_message_size) {
      co_return OversizedError("request", first_message->size(),
                               config_.max_message_size);
    }
    payload = std::move(*first_message);
  }
  RequestHead wire;
  wire.method = std::move(head.method);
  wire.metadata = std::move(head.metadata);
  uint16_t flags = (streaming ? kFlagStreaming : 0) | kFlagAcceptsCompression;
  if (first_message != nullptr) {
    flags |= kFlagHasMessage | kFlagEndStream;
    if (head.payload_compressed) flags |= CompressionFlag(head.encoding);
  }
  absl::StatusOr<std::string> prefix =
      EncodeRequestPrefix(0, wire, payload.size(), flags);
  if (!prefix.ok()) co_return prefix.status();

  absl::StatusOr<ConnectionPool::Lease> lease =
      co_await pools_.For(target)->AcquireForCall(head.deadline, cancel,
                                                  executor_);
  if (!lease.ok()) co_return lease.status();
  // The time left when the request is written, not when it was made.
  SetTimeout(*prefix, TimeLeftUs(head.deadline));
  absl::StatusOr<uint64_t> id = lease->get<ClientConnection>().Register(
      std::move(state), streaming, *std::move(prefix), std::move(payload));
  if (!id.ok()) co_return id.status();
  co_return std::make_shared<TcpLink>(*std::move(lease), *id,
                                      config_.max_message_size, head.encoding);
}

}  // namespace dynrpc::internal::tcp

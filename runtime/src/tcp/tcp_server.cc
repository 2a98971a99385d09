#include "tcp/tcp_server.h"

#include <atomic>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "absl/container/flat_hash_map.h"
#include "dynrpc/status_macros.h"
#include "net/sockets.h"
#include "tcp/limits.h"
#include "core/metrics.h"
#include "core/server_call.h"
#include "core/stream_state.h"

namespace dynrpc::internal::tcp {

namespace asio = boost::asio;
using asio::ip::tcp;

TcpServer::TcpServer(TcpConfig config, const ServerLimits& limits,
                     asio::any_io_executor executor)
    : SocketServer({config.host, config.port, "DYN_TCP_RPC_HOST",
                    "DYN_TCP_RPC_PORT", config.port_from_environment,
                    &Metrics::Global().server_connections(0)},
                   limits, std::move(executor), "tcp accept loop"),
      config_(std::move(config)) {}

void TcpServer::Accepted(tcp::socket socket, asio::any_io_executor strand,
                         Admission::Token token) {
  auto connection = std::make_shared<FramedSocket>(std::move(socket), config_);
  tasks().Spawn(strand, FramedSocket::WriteLoop(connection),
                "tcp server writer");
  tasks().Spawn(strand,
                net::Holding(std::move(token), ServeConnection(connection)),
                "tcp server reader");
}

// A connection and the calls in progress on it.
struct ServerConnection {
  explicit ServerConnection(std::shared_ptr<FramedSocket> s)
      : socket(std::move(s)) {}

  std::shared_ptr<FramedServerCall> Find(uint64_t id) {
    std::lock_guard lock(mu);
    auto it = calls.find(id);
    return it == calls.end() ? nullptr : it->second;
  }
  void Forget(uint64_t id) {
    std::lock_guard lock(mu);
    calls.erase(id);
  }
  // Sends the call's end: its status, the metadata, its response message.
  void SendResult(uint64_t id, CallResult result, bool headers_sent) {
    ResponseHead head;
    head.code = result.status.code();
    head.message = std::string(result.status.message());
    if (!headers_sent) head.initial_metadata = std::move(result.initial_metadata);
    head.metadata = std::move(result.trailing_metadata);
    uint16_t flags = result.has_message && result.status.ok() ? kFlagHasMessage : 0;
    if (!flags) result.payload.clear();
    if (flags && result.payload_compressed) {
      flags |= CompressionFlag(result.encoding);
    }
    absl::StatusOr<std::string> prefix =
        EncodeResponsePrefix(id, head, result.payload.size(), flags);
    if (!prefix.ok()) {
      // Metadata too large to send: say so instead.
      ResponseHead error;
      error.code = prefix.status().code();
      error.message = std::string(prefix.status().message());
      prefix = EncodeResponsePrefix(id, error, 0, 0);
      result.payload.clear();
    }
    if (prefix.ok()) {
      socket->Send(*std::move(prefix), std::move(result.payload),
                   FramedSocket::Burst::kCall);
    }
  }

  std::shared_ptr<FramedSocket> socket;
  std::mutex mu;
  absl::flat_hash_map<uint64_t, std::shared_ptr<FramedServerCall>> calls;
};

namespace {

// One call on a connection, and the frames it sends.
class TcpServerCall final : public FramedServerCall {
 public:
  TcpServerCall(asio::any_io_executor strand,
                std::shared_ptr<ServerConnection> connection, uint64_t id,
                std::size_t max_message)
      : FramedServerCall(std::move(strand)),
        connection_(std::move(connection)),
        id_(id),
        max_message_(max_message) {}

  absl::Status CheckMessage(std::size_t bytes) const override {
    if (bytes <= max_message_) return absl::OkStatus();
    return OversizedError("response", bytes, max_message_);
  }
  std::size_t max_message_size() const override { return max_message_; }
  absl::Status SendMessage(std::string message,
                           const Metadata* initial_metadata,
                           Compression encoding, bool compressed) override {
    FramedSocket& socket = *connection_->socket;
    if (initial_metadata != nullptr) {
      absl::StatusOr<std::string> headers =
          EncodeHeaders(id_, *initial_metadata);
      if (!headers.ok()) return headers.status();
      socket.Send(*std::move(headers));
    }
    std::string prefix = EncodeMessagePrefix(
        id_, message.size(), compressed ? CompressionFlag(encoding) : 0);
    socket.Send(std::move(prefix), std::move(message));
    return absl::OkStatus();
  }
  void SendWindow(uint32_t bytes) override {
    connection_->socket->Send(EncodeWindow(id_, bytes));
  }
  void SendEnd(CallResult result, bool initial_sent) override {
    connection_->Forget(id_);
    connection_->SendResult(id_, std::move(result), initial_sent);
  }

 private:
  // The connection's table holds the call until Forget() (or the
  // connection's end): a cycle, broken then.
  const std::shared_ptr<ServerConnection> connection_;
  const uint64_t id_;
  const std::size_t max_message_;
};

}  // namespace

asio::awaitable<void> TcpServer::ServeConnection(
    std::shared_ptr<FramedSocket> socket) {
  co_await asio::this_coro::throw_if_cancelled(false);
  auto connection = std::make_shared<ServerConnection>(socket);
  bool protocol_error = false;
  for (;;) {
    // A peer that does not read its responses is not read either.
    if (socket->over_queued()) {
      co_await socket->WaitForRoom();
      asio::cancellation_state state =
          co_await asio::this_coro::cancellation_state;
      if (state.cancelled() != asio::cancellation_type::none) {
        break;  // the server is shutting down
      }
    }
    absl::StatusOr<InFrame> frame = co_await socket->ReadFrame();
    if (!frame.ok()) break;  // peer gone, or a header we cannot trust
    const FrameHeader& header = frame->header;
    if (header.type == FrameType::kRequest) {
      if (!OpenCall(connection, *std::move(frame))) break;
      continue;
    }
    std::shared_ptr<FramedServerCall> call = connection->Find(header.call_id);
    switch (header.type) {
      case FrameType::kPing:
        socket->Send(EncodePong());
        break;
      case FrameType::kCancel:
        if (call) call->Cancel(absl::CancelledError("the caller cancelled"));
        break;
      case FrameType::kMessage:
        if (!call || !call->stream) break;  // ended meanwhile
        if (frame->oversized) {
          absl::Status error = OversizedError("request", header,
                                              config_.max_message_size);
          call->Cancel(error);
        } else if (!call->stream->Deliver(std::move(frame->payload),
                                          CompressionOf(header.flags))) {
          call->Cancel(absl::ResourceExhaustedError(absl::StrCat(
              "the caller at ", socket->peer(),
              " sent beyond the stream's flow-control window")));
        }
        break;
      case FrameType::kHalfClose:
        if (call && call->stream) call->stream->PeerDone();
        break;
      case FrameType::kWindow:
        if (call && call->stream) {
          absl::StatusOr<uint32_t> bytes = DecodeWindow(frame->head);
          if (bytes.ok()) call->stream->AddSendWindow(*bytes);
        }
        break;
      default:  // a client never sends the rest: not our protocol
        protocol_error = true;
        break;
    }
    if (protocol_error) break;
  }
  {
    std::lock_guard lock(connection->mu);
    for (auto& [id, call] : connection->calls) {
      call->Cancel(absl::UnavailableError("the caller's connection was lost"));
    }
    connection->calls.clear();
  }
  socket->Close();
}

bool TcpServer::OpenCall(const std::shared_ptr<ServerConnection>& connection,
                         InFrame frame) {
  const FrameHeader& header = frame.header;
  auto error = [&](const absl::Status& status) {
    connection->SendResult(header.call_id, CallResult(status), false);
    return true;
  };
  if (frame.oversized) {
    return error(OversizedError("request", header, config_.max_message_size));
  }
  absl::StatusOr<RequestHead> head = DecodeRequestHead(frame.head);
  if (!head.ok()) return error(head.status());

  CallRequest request;
  request.method = std::move(head->method);
  request.metadata = std::move(head->metadata);
  if (head->timeout_us != 0) {
    request.deadline = Clock::now() + std::chrono::microseconds(head->timeout_us);
  }
  bool has_message = (header.flags & kFlagHasMessage) != 0;
  bool end_stream = (header.flags & kFlagEndStream) != 0;
  request.accepts = (header.flags & kFlagAcceptsCompression)
                        ? kAllCompressions
                        : Bit(Compression::kIdentity);
  // The caller says which kind of call this is; the dispatcher refuses a
  // method of the other kind.
  bool unary = (header.flags & kFlagStreaming) == 0;
  if (unary && !(has_message && end_stream)) {
    return error(absl::InternalError(
        "malformed frame: a unary REQUEST must carry its message and end the "
        "stream"));
  }

  const uint64_t id = header.call_id;
  auto call = std::make_shared<TcpServerCall>(tasks().NewStrand(), connection,
                                              id, config_.max_message_size);
  if (!unary) {
    call->stream = std::make_shared<StreamState>(config_.max_message_size);
    if (has_message) {
      call->stream->Deliver(std::move(frame.payload),
                            CompressionOf(header.flags));
    }
    if (end_stream) call->stream->PeerDone();
  } else {
    request.payload = std::move(frame.payload);
    request.encoding = CompressionOf(header.flags);
    request.payload_compressed = request.encoding != Compression::kIdentity;
  }
  bool over_limit = false;
  {
    std::lock_guard lock(connection->mu);
    // A call id still in use: the peer does not follow the protocol, and
    // answering would end the live call. Close the connection.
    if (connection->calls.contains(id)) return false;
    over_limit =
        connection->calls.size() >= config_.max_calls_per_connection;
    if (!over_limit) connection->calls.emplace(id, call);
  }
  if (over_limit) {
    return error(absl::ResourceExhaustedError(absl::StrCat(
        "the server runs at most DYN_TCP_MAX_CALLS_PER_CONNECTION=",
        config_.max_calls_per_connection, " calls at once per connection; ",
        request.method, " was not run")));
  }
  call->Spawn(tasks(),
              FramedServerCall::Serve(call, handler(), std::move(request),
                                      connection->socket->peer()),
              unary ? "tcp server call" : "tcp server stream");
  return true;
}

}  // namespace dynrpc::internal::tcp

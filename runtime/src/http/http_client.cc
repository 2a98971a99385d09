#include "http/http_client.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "core/metrics.h"
#include "core/connection_pool.h"
#include "core/liveness.h"
#include "net/sockets.h"

namespace dynrpc::internal::http {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;

namespace {

// A stream's Write() returns once at most this much of its DATA waits to be
// sent: the server's flow-control window holds the writer back.
constexpr std::size_t kWriteHighWater = 64 * 1024;

// How a call ended, from its stream (under the connection's mutex). With
// `unary`, an OK status needs exactly one message.
CallResult ResultFrom(H2Stream& stream, std::string_view target, bool unary) {
  CallResult result;
  const Headers* status_block = nullptr;
  if (stream.trailers_done) {
    status_block = &stream.trailers;
  } else if (stream.headers_done &&
             FindHeader(stream.headers, "grpc-status").has_value()) {
    status_block = &stream.headers;  // trailers-only
  }
  if (status_block == nullptr) {
    // No status: the call ended by Cancel() (TryCancel, the deadline), a
    // reset or a lost connection. The response headers, if they came, still
    // carry the server's initial metadata (the TCP and NATS planes keep it
    // too).
    if (stream.headers_done) {
      result.initial_metadata = MetadataFromHeaders(stream.headers);
    }
    if (!stream.error.ok()) {
      result.status = stream.error;
      // Lost (or refused: REFUSED_STREAM, GOAWAY) before any response
      // frame.
      result.not_processed =
          !stream.headers_done && absl::IsUnavailable(stream.error);
      return result;
    }
    std::optional<std::string_view> http_status =
        FindHeader(stream.headers, ":status");
    int code = 0;
    if (stream.headers_done && http_status &&
        absl::SimpleAtoi(absl::string_view(http_status->data(),
                                           http_status->size()),
                         &code) &&
        code != 200) {
      result.status = absl::Status(
          GrpcCodeFromHttpStatus(code),
          absl::StrCat("HTTP status ", code, " from ", std::string(target),
                       " (not a gRPC response)"));
    } else {
      result.status = absl::UnknownError(absl::StrCat(
          "the response from ", std::string(target),
          " ended without a grpc-status"));
    }
    return result;
  }
  std::optional<std::string_view> code_text =
      FindHeader(*status_block, "grpc-status");
  int code = 0;
  if (!absl::SimpleAtoi(absl::string_view(code_text->data(), code_text->size()),
                        &code) ||
      code < 0 || code > 16) {
    result.status = absl::UnknownError(absl::StrCat(
        "invalid grpc-status '", std::string(*code_text), "' from ",
        std::string(target)));
    return result;
  }
  std::string message =
      PercentDecode(FindHeader(*status_block, "grpc-message").value_or(""));
  result.status = absl::Status(static_cast<absl::StatusCode>(code), message);
  if (status_block != &stream.headers) {
    result.initial_metadata = MetadataFromHeaders(stream.headers);
  }
  result.trailing_metadata = MetadataFromHeaders(*status_block);
  if (!result.status.ok()) return result;
  // (A stream whose reader stopped reading drops what arrives after: its
  // decoder stops where it was.)
  if (stream.mode != BodyMode::kDrop && !stream.decoder.AtBoundary()) {
    result.status = absl::InternalError(absl::StrCat(
        "the response ended inside a message (",
        stream.decoder.buffered(), " bytes of it received)"));
  } else if (!unary) {
    return result;
  } else if (stream.inbound.size() != 1) {
    result.status = absl::InternalError(absl::StrCat(
        "a unary response carried ", stream.inbound.size(),
        " messages instead of one"));
  } else {
    result.has_message = true;
    result.payload = std::move(stream.inbound.front().bytes);
    result.encoding = stream.inbound.front().compressed_with;
    result.payload_compressed = result.encoding != Compression::kIdentity;
    stream.inbound.clear();
  }
  return result;
}

}  // namespace

absl::Status CheckConfig(const HttpConfig& config) {
  if (config.max_message_size == 0 || config.max_message_size > 0x7fffffff) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HttpConfig: max_message_size=", config.max_message_size,
        " must be from 1 to 2147483647 bytes (DYN_HTTP_MAX_MESSAGE_SIZE)"));
  }
  if (config.max_frame_size < 16384 || config.max_frame_size > 16777215) {
    return absl::InvalidArgumentError(absl::StrCat(
        "HttpConfig: max_frame_size=", config.max_frame_size,
        " must be from 16384 to 16777215 (DYN_HTTP2_MAX_FRAME_SIZE)"));
  }
  if (config.max_concurrent_streams == 0) {
    return absl::InvalidArgumentError(
        "HttpConfig: max_concurrent_streams must be at least 1 "
        "(DYN_HTTP2_MAX_CONCURRENT_STREAMS)");
  }
  if (config.request_timeout.count() <= 0 ||
      config.connect_timeout.count() <= 0 ||
      config.keep_alive_interval.count() <= 0 ||
      config.keep_alive_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "HttpConfig: request_timeout, connect_timeout, keep_alive_interval "
        "and keep_alive_timeout must be positive (DYN_HTTP_REQUEST_TIMEOUT, "
        "DYN_HTTP_CONNECT_TIMEOUT, DYN_HTTP2_KEEP_ALIVE_INTERVAL_SECS, "
        "DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS)");
  }
  return absl::OkStatus();
}

// A pooled connection, watched by the core's liveness policy: an HTTP/2
// PING when the server has been silent for the keep-alive interval with
// calls open, closed when one goes unanswered for the keep-alive timeout or
// when no call used it for the pool's idle timeout.
class ClientConnection final : public H2Connection,
                               public PooledConnection,
                               public WatchedConnection {
 public:
  ClientConnection(asio::ip::tcp::socket socket, const HttpConfig& config,
                   asio::any_io_executor strand, std::string target,
                   std::function<void(absl::Status)> on_closed,
                   std::weak_ptr<ConnectionPool> pool)
      : H2Connection(Role::kClient, std::move(socket), config),
        WatchedConnection(
            Liveness::Policy{
                .interval = config.keep_alive_interval,
                .timeout = config.keep_alive_timeout,
                .idle_close = config.pool_idle_timeout,
                .probe_name = "HTTP/2 PING",
                .timeout_setting =
                    absl::StrCat("DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS=",
                                 config.keep_alive_timeout.count()),
                .idle_setting =
                    absl::StrCat("DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS=",
                                 config.pool_idle_timeout.count())},
            std::move(strand)),
        target_(std::move(target)),
        on_closed_(std::move(on_closed)),
        pool_(std::move(pool)) {}

  // A new connection to `target` for `pool`, its reader, writer and
  // watcher running, once the server's SETTINGS have come (its stream
  // limit decides how many calls the connection may carry).
  static asio::awaitable<absl::StatusOr<std::shared_ptr<PooledConnection>>>
  Dial(std::string target, HttpConfig config, TaskGroup& tasks,
       std::function<void(absl::Status)> on_closed,
       std::weak_ptr<ConnectionPool> pool) {
    asio::any_io_executor strand = tasks.NewStrand();
    absl::StatusOr<asio::ip::tcp::socket> socket = co_await net::Connect(
        strand, target, config.connect_timeout, "DYN_HTTP_CONNECT_TIMEOUT");
    if (!socket.ok()) co_return socket.status();
    auto connection = std::make_shared<ClientConnection>(
        std::move(*socket), config, strand, target, std::move(on_closed),
        std::move(pool));
    if (absl::Status s = connection->Start(); !s.ok()) co_return s;
    tasks.Spawn(strand, ReadLoop(connection), "http client reader");
    tasks.Spawn(strand, WriteLoop(connection), "http client writer");
    if (absl::Status s = co_await connection->WaitForSettings(
            config.connect_timeout, "DYN_HTTP_CONNECT_TIMEOUT");
        !s.ok()) {
      connection->Close(s);
      co_return s;
    }
    connection->SetCallsOpen(true);  // for the call that dialled it
    tasks.Spawn(strand, Watch(connection), "http client keepalive");
    co_return connection;
  }

  // The pool's view.
  bool accepting() const override { return H2Connection::accepting(); }
  std::size_t capacity() const override { return stream_limit(); }
  void Close(absl::Status why) override { H2Connection::Close(std::move(why)); }
  void OnCallsOpen(bool open) override { SetCallsOpen(open); }

 protected:
  void OnClosed() override {
    StopWatching();
    if (on_closed_) on_closed_(Locked([&] { return close_reason(); }));
  }

  // The server's initial metadata, for the core: the call keeps it however
  // it ends (a cancel, its deadline). Not from a trailers-only response,
  // whose headers are the trailers.
  void OnResponseHeadersLocked(H2Stream& stream) override {
    if (stream.state == nullptr ||
        FindHeader(stream.headers, "grpc-status").has_value()) {
      return;
    }
    stream.state->SetInitialMetadata(MetadataFromHeaders(stream.headers));
  }

  // The call's end, for the core: once, however it came (the first end
  // wins in its state).
  void OnStreamEndLocked(H2Stream& stream) override {
    if (stream.state == nullptr || stream.state->ended()) return;
    const bool failed = !stream.error.ok();
    stream.state->End(ResultFrom(stream, target_, /*unary=*/!stream.deliver),
                      /*discard_unread=*/failed);
  }

  // The liveness policy's plane half.
  void SendProbe() override { SendPing(); }
  void Lost(absl::Status why) override { Close(std::move(why)); }
  bool CloseIdle(absl::Status why) override {
    if (std::shared_ptr<ConnectionPool> pool = pool_.lock()) {
      return pool->CloseIfIdle(*this, std::move(why));
    }
    Close(std::move(why));
    return true;
  }
  bool WatchingDone() override { return !accepting(); }
  std::string peer_name() const override {
    return absl::StrCat("the server at ", peer());
  }
  Clock::time_point last_heard() const override { return last_read(); }

 private:
  const std::string target_;
  std::function<void(absl::Status)> on_closed_;
  const std::weak_ptr<ConnectionPool> pool_;
};

HttpClient::HttpClient(HttpConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(executor),
      tasks_(std::make_shared<TaskGroup>(std::move(executor))),
      pools_([this](std::string_view target) {
        ConnectionPool::Options options;
        options.max_idle = config_.pool_max_idle_per_host;
        options.connections_gauge = &Metrics::Global().client_connections(1);
        options.max_idle_setting =
            absl::StrCat("DYN_HTTP2_POOL_MAX_IDLE_PER_HOST=",
                         config_.pool_max_idle_per_host);
        return std::make_shared<ConnectionPool>(
            std::move(options),
            [target = std::string(target), config = config_, tasks = tasks_,
             on_closed = on_connection_closed_](ConnectionPool& pool) {
              return ClientConnection::Dial(target, config, *tasks, on_closed,
                                            pool.weak_from_this());
            });
      }) {}

HttpClient::~HttpClient() {
  pools_.Clear();
  tasks_->CancelAll();
}

std::vector<H2Stats> HttpClient::ConnectionStats(
    std::string_view target) const {
  std::shared_ptr<ConnectionPool> pool = pools_.Find(target);
  std::vector<H2Stats> stats;
  if (pool == nullptr) return stats;
  for (auto& c : pool->connections()) {
    stats.push_back(static_cast<ClientConnection&>(*c).stats());
  }
  return stats;
}

absl::StatusOr<Headers> HttpClient::RequestHeaders(
    std::string_view target, const CallRequest& request,
    bool streaming) const {
  if (absl::Status s = ValidateMetadata(request.metadata); !s.ok()) return s;
  std::string root = config_.root_path == "/" ? "" : config_.root_path;
  Headers headers = {
      {":method", "POST"},
      {":scheme", "http"},
      {":path", root + request.method},
      {":authority", std::string(target)},
      {"content-type", "application/grpc"},
      {"te", "trailers"},
      {"user-agent", "dynrpc-cpp/0.1"},
      {std::string(kCallKindHeader), streaming ? "stream" : "unary"},
  };
  if (request.deadline) {
    headers.emplace_back("grpc-timeout",
                         EncodeGrpcTimeout(*request.deadline - Clock::now()));
  }
  if (request.encoding != Compression::kIdentity) {
    headers.emplace_back("grpc-encoding",
                         std::string(CompressionName(request.encoding)));
  }
  headers.emplace_back("grpc-accept-encoding", std::string(kAcceptEncoding));
  for (const auto& [key, value] : request.metadata) {
    std::string name = absl::AsciiStrToLower(key);
    headers.emplace_back(name, EncodeMetadataValue(name, value));
  }
  return headers;
}

namespace {

// The frames of one call on a pooled connection, whose slot it holds until
// the core releases it. HTTP/2's own flow control paces it: the call's
// StreamState keeps no window (wire_window()).
class HttpLink final : public ClientLink {
 public:
  HttpLink(ConnectionPool::Lease lease, std::shared_ptr<H2Stream> stream,
           std::size_t max_message)
      : connection_(lease.shared<ClientConnection>()),
        lease_(std::move(lease)),
        stream_(std::move(stream)),
        max_message_(max_message) {}

  // At most kWriteHighWater bytes wait in front of a message: the peer
  // reads what we send.
  asio::awaitable<absl::Status> Ready() override {
    return connection_->WaitWritable(stream_, kWriteHighWater);
  }
  absl::Status CheckMessage(std::size_t bytes) const override {
    return CheckMessageSize("request", bytes, max_message_);
  }
  absl::Status SendMessage(std::string message, bool compressed) override {
    std::string prefix =
        EncodeGrpcPrefix(static_cast<uint32_t>(message.size()), compressed);
    connection_->QueueData(stream_, std::move(prefix), std::move(message),
                           /*end=*/false);
    return absl::OkStatus();
  }
  void SendHalfClose() override {
    connection_->QueueData(stream_, {}, {}, /*end=*/true);
  }
  void SendWindow(uint32_t bytes) override {
    connection_->Consumed(stream_, bytes);
  }
  void StopReading() override { connection_->DropUnread(stream_); }
  void SendCancel() override {
    connection_->Reset(stream_, NGHTTP2_CANCEL,
                       absl::CancelledError("call cancelled by the caller"));
  }
  // The call has ended: a stream still open on the wire (the server ended
  // before we half-closed, or we failed it) is reset, so that it does not
  // keep one of the server's stream slots after ours is given back.
  void Release() override {
    connection_->ResetIfOpen(stream_);
    lease_.reset();
  }

 private:
  const std::shared_ptr<ClientConnection> connection_;
  std::optional<ConnectionPool::Lease> lease_;
  const std::shared_ptr<H2Stream> stream_;
  const std::size_t max_message_;
};

}  // namespace

asio::awaitable<absl::StatusOr<std::shared_ptr<ClientLink>>> HttpClient::Open(
    std::string_view target_view, CallRequest& head,
    std::string* first_message, bool streaming,
    std::shared_ptr<StreamState> state, OpenCancel& cancel) {
  std::string target(target_view);
  if (first_message != nullptr) {
    absl::Status fits = CheckMessageSize("request", first_message->size(),
                                         config_.max_message_size);
    if (!fits.ok()) co_return fits;
  }
  absl::StatusOr<Headers> headers = RequestHeaders(target, head, streaming);
  if (!headers.ok()) co_return headers.status();
  absl::StatusOr<ConnectionPool::Lease> lease =
      co_await pools_.For(target)->AcquireForCall(head.deadline, cancel,
                                               executor_);
  if (!lease.ok()) co_return lease.status();
  auto stream = std::make_shared<H2Stream>(
      config_.max_message_size, "DYN_HTTP_MAX_MESSAGE_SIZE", "response");
  stream->state = std::move(state);
  stream->deliver = streaming;
  if (first_message != nullptr) {
    stream->out_bytes = kGrpcPrefixSize + first_message->size();
    stream->out.push_back(
        EncodeGrpcPrefix(static_cast<uint32_t>(first_message->size()),
                         head.payload_compressed));
    if (!first_message->empty()) {
      stream->out.push_back(std::move(*first_message));
    }
    stream->out_end = true;
  }
  std::shared_ptr<ClientConnection> connection =
      lease->shared<ClientConnection>();
  absl::StatusOr<int32_t> id = connection->SubmitRequest(stream, *headers);
  if (!id.ok()) co_return id.status();
  co_return std::make_shared<HttpLink>(*std::move(lease), std::move(stream),
                                       config_.max_message_size);
}

}  // namespace dynrpc::internal::http

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
#include "core/open_once.h"
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
  if (!result.status.ok() || !unary) return result;
  if (!stream.decoder.AtBoundary()) {
    result.status = absl::InternalError(
        "the response ended inside a message");
  } else if (stream.inbound.size() != 1) {
    result.status = absl::InternalError(absl::StrCat(
        "a unary response carried ", stream.inbound.size(),
        " messages instead of one"));
  } else {
    result.has_message = true;
    result.payload = std::move(stream.inbound.front());
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

// `calls` of a connection closing for being idle: no call fits beside it.
constexpr std::size_t kClosingCalls = std::size_t{1} << 40;

// A pooled connection. `calls` and `idle_since` change under the client's
// mutex (taken before the connection's, never after); the maintenance task
// reads them without it.
class ClientConnection final : public H2Connection {
 public:
  ClientConnection(asio::ip::tcp::socket socket, const HttpConfig& config,
                   asio::any_io_executor strand,
                   std::function<void(absl::Status)> on_closed)
      : H2Connection(Role::kClient, std::move(socket), config),
        timer_(std::make_shared<asio::steady_timer>(strand)),
        on_closed_(std::move(on_closed)) {}

  // Wakes the maintenance task to look again (a call started or the last
  // one ended, or the connection closed).
  void Poke() {
    asio::post(timer_->get_executor(), [timer = timer_] { timer->cancel(); });
  }

  std::atomic<std::size_t> calls{0};
  std::atomic<Clock::rep> idle_since{Clock::now().time_since_epoch().count()};
  // Keepalive (any thread).
  std::atomic<bool> ping_outstanding{false};
  std::atomic<Clock::rep> last_alive{Clock::now().time_since_epoch().count()};
  Clock::time_point ping_sent;  // maintenance task only

  const std::shared_ptr<asio::steady_timer>& timer() const { return timer_; }

 protected:
  void OnClosed() override {
    Poke();
    if (on_closed_) on_closed_(Locked([&] { return close_reason(); }));
  }

 private:
  std::shared_ptr<asio::steady_timer> timer_;  // the maintenance task's
  std::function<void(absl::Status)> on_closed_;
};

// The maintenance task of one connection: keepalive PINGs while calls are
// open, and closing it when idle too long. It may outlive the client (whose
// destruction closes the connection, which ends the task), so it uses only
// the connection and its own copy of the configuration.
asio::awaitable<void> Maintain(std::shared_ptr<ClientConnection> connection,
                               HttpConfig config) {
  co_await asio::this_coro::throw_if_cancelled(false);
  const std::shared_ptr<asio::steady_timer>& timer = connection->timer();
  for (;;) {
    if (!connection->accepting()) break;
    Clock::time_point now = Clock::now();
    Clock::time_point wake = Clock::time_point::max();
    bool idle = connection->calls == 0;
    if (idle) {
      wake = Clock::time_point(Clock::duration(connection->idle_since)) +
             config.pool_idle_timeout;
    }
    if (idle && now >= wake) {
      // Claim it first, so a call cannot take it while it closes.
      std::size_t none = 0;
      if (!connection->calls.compare_exchange_strong(none, kClosingCalls)) {
        continue;  // a call took it meanwhile
      }
      connection->Close(absl::UnavailableError(absl::StrCat(
          "idle for ", config.pool_idle_timeout.count(),
          " s (DYN_HTTP2_POOL_IDLE_TIMEOUT_SECS)")));
      break;
    }
    if (!idle) {
      // Keepalive while calls are open: a PING every interval; one not
      // answered within the timeout means the peer is gone.
      if (connection->ping_outstanding) {
        Clock::time_point dead_at =
            connection->ping_sent + config.keep_alive_timeout;
        if (now >= dead_at) {
          connection->Close(absl::UnavailableError(absl::StrCat(
              "no answer to an HTTP/2 PING from ", connection->peer(),
              " within ", config.keep_alive_timeout.count(),
              " s (DYN_HTTP2_KEEP_ALIVE_TIMEOUT_SECS): the connection is "
              "presumed dead")));
          break;
        }
        wake = dead_at;
      } else {
        Clock::time_point next =
            Clock::time_point(Clock::duration(connection->last_alive.load())) +
            config.keep_alive_interval;
        if (now >= next) {
          connection->ping_outstanding = true;
          connection->ping_sent = now;
          std::weak_ptr<ClientConnection> weak = connection;
          connection->SendPing([weak] {
            if (auto c = weak.lock()) {
              c->last_alive = Clock::now().time_since_epoch().count();
              c->ping_outstanding = false;
            }
          });
          continue;
        }
        wake = next;
      }
    }
    timer->expires_at(wake);
    // Woken by the time, or early by Poke() (a call started or ended).
    (void)co_await timer->async_wait(as_tuple(use_awaitable));
    asio::cancellation_state state =
        co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none) break;
  }
}

HttpClient::Lease::Lease(std::shared_ptr<HttpClient> client,
                         std::shared_ptr<ClientConnection> connection)
    : client_(std::move(client)), connection_(std::move(connection)) {}

HttpClient::Lease& HttpClient::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (connection_) client_->Release(*connection_);
    client_ = std::move(other.client_);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

HttpClient::Lease::~Lease() {
  if (connection_) client_->Release(*connection_);
}

HttpClient::HttpClient(HttpConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(executor),
      tasks_(std::make_shared<TaskGroup>(std::move(executor))) {}

HttpClient::~HttpClient() {
  std::vector<std::shared_ptr<ClientConnection>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [target, pool] : pools_) {
      all.insert(all.end(), pool.begin(), pool.end());
    }
    pools_.clear();
  }
  for (auto& c : all) {
    c->Close(absl::UnavailableError("the channel was destroyed"));
  }
  tasks_->CancelAll();
}

std::vector<H2Stats> HttpClient::ConnectionStats(
    std::string_view target) const {
  std::vector<std::shared_ptr<ClientConnection>> pool;
  {
    std::lock_guard lock(mu_);
    auto it = pools_.find(absl::string_view(target.data(), target.size()));
    if (it != pools_.end()) pool = it->second;
  }
  std::vector<H2Stats> stats;
  for (auto& c : pool) {
    if (c->accepting()) stats.push_back(c->stats());
  }
  return stats;
}

void HttpClient::Release(ClientConnection& connection) {
  std::shared_ptr<ClientConnection> closing;
  {
    std::lock_guard lock(mu_);
    if (--connection.calls > 0) return;
    connection.idle_since = Clock::now().time_since_epoch().count();
    // Beyond DYN_HTTP2_POOL_MAX_IDLE_PER_HOST idle connections, this one
    // closes now.
    for (auto& [target, pool] : pools_) {
      auto it = std::find_if(pool.begin(), pool.end(), [&](const auto& c) {
        return c.get() == &connection;
      });
      if (it == pool.end()) continue;
      std::size_t idle = 0;
      for (auto& c : pool) {
        if (c->calls == 0 && c->accepting()) ++idle;
      }
      if (idle > config_.pool_max_idle_per_host) {
        closing = *it;
        pool.erase(it);
      }
      break;
    }
  }
  if (closing == nullptr) {
    connection.Poke();
    return;
  }
  // Outside the mutex: Close() runs the connection's close hooks.
  closing->Close(absl::UnavailableError(absl::StrCat(
      "more than ", config_.pool_max_idle_per_host,
      " idle connections (DYN_HTTP2_POOL_MAX_IDLE_PER_HOST)")));
}

std::optional<HttpClient::Lease> HttpClient::TryAcquire(
    const std::string& target) {
  std::lock_guard lock(mu_);
  auto& pool = pools_[target];
  std::erase_if(pool, [](const auto& c) { return !c->accepting(); });
  for (auto& c : pool) {
    if (c->calls < c->stream_limit()) {
      if (++c->calls == 1) c->Poke();
      return Lease(shared_from_this(), c);
    }
  }
  return std::nullopt;
}

asio::awaitable<absl::StatusOr<HttpClient::Lease>> HttpClient::AcquireUnless(
    std::string target, std::shared_ptr<Signal> cancel) {
  if (std::optional<Lease> lease = TryAcquire(target)) {
    co_return *std::move(lease);
  }
  co_return co_await WithDeadline(Acquire(std::move(target)),
                                  Clock::time_point::max(), "", nullptr,
                                  std::move(cancel));
}

asio::awaitable<absl::StatusOr<HttpClient::Lease>> HttpClient::Acquire(
    std::string target) {
  if (std::optional<Lease> lease = TryAcquire(target)) {
    co_return *std::move(lease);
  }
  asio::any_io_executor strand = tasks_->NewStrand();
  absl::StatusOr<asio::ip::tcp::socket> socket = co_await net::Connect(
      strand, target, config_.connect_timeout, "DYN_HTTP_CONNECT_TIMEOUT");
  if (!socket.ok()) co_return socket.status();
  auto connection = std::make_shared<ClientConnection>(
      std::move(*socket), config_, strand, on_connection_closed_);
  if (absl::Status s = connection->Start(); !s.ok()) co_return s;
  tasks_->Spawn(strand, H2Connection::ReadLoop(connection), "http client reader");
  tasks_->Spawn(strand, H2Connection::WriteLoop(connection), "http client writer");
  // The server's SETTINGS first: its stream limit decides how many calls
  // this connection may carry.
  if (absl::Status s = co_await connection->WaitForSettings(
          config_.connect_timeout, "DYN_HTTP_CONNECT_TIMEOUT"); !s.ok()) {
    connection->Close(s);
    co_return s;
  }
  {
    std::lock_guard lock(mu_);
    connection->calls = 1;
    pools_[target].push_back(connection);
  }
  tasks_->Spawn(strand, Maintain(connection, config_),
                "http client keepalive");
  co_return Lease(shared_from_this(), std::move(connection));
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
  for (const auto& [key, value] : request.metadata) {
    std::string name = absl::AsciiStrToLower(key);
    headers.emplace_back(name, EncodeMetadataValue(name, value));
  }
  return headers;
}

asio::awaitable<CallResult> HttpClient::Unary(
    std::string_view target_view, CallRequest request,
    std::shared_ptr<CancelHook> cancel) {
  std::string target(target_view);
  if (request.payload.size() > config_.max_message_size) {
    co_return CallResult(absl::ResourceExhaustedError(absl::StrCat(
        "request message of ", request.payload.size(),
        " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=", config_.max_message_size,
        " bytes")));
  }
  absl::StatusOr<Headers> headers = RequestHeaders(target, request, /*streaming=*/false);
  if (!headers.ok()) co_return CallResult(headers.status());
  std::optional<Lease> lease = TryAcquire(target);
  if (!lease) {
    // Dialling: the deadline or TryCancel() interrupts it.
    auto wake = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
    cancel->Set([wake](absl::Status) {
      wake->try_send(boost::system::error_code{});
    });
    absl::StatusOr<Lease> dialled = co_await AcquireUnless(target, wake);
    if (std::optional<absl::Status> why = cancel->cancelled()) {
      co_return CallResult(*why);
    }
    if (!dialled.ok()) co_return CallResult(dialled.status());
    lease.emplace(*std::move(dialled));
  }
  auto stream = std::make_shared<H2Stream>(
      config_.max_message_size, "DYN_HTTP_MAX_MESSAGE_SIZE", "response");
  stream->out_bytes = kGrpcPrefixSize + request.payload.size();
  stream->out.push_back(
      EncodeGrpcPrefix(static_cast<uint32_t>(request.payload.size())));
  if (!request.payload.empty()) stream->out.push_back(std::move(request.payload));
  stream->out_end = true;
  std::shared_ptr<ClientConnection> connection = lease->get();
  absl::StatusOr<int32_t> id = connection->SubmitRequest(stream, *headers);
  if (!id.ok()) co_return CallResult(id.status());
  cancel->Set([connection, stream](absl::Status why) {
    connection->Reset(stream, NGHTTP2_CANCEL, std::move(why));
  });
  bool woke = co_await connection->Wait(
      stream, [](const H2Stream& s) { return s.peer_ended; });
  if (!woke) {
    connection->Reset(stream, NGHTTP2_CANCEL,
                      absl::CancelledError("call cancelled by the caller"));
    co_return CallResult(absl::CancelledError("call cancelled by the caller"));
  }
  co_return connection->Locked(
      [&] { return ResultFrom(*stream, target, /*unary=*/true); });
}

namespace {

// The plane's side of a streaming call on the client, opened by its first
// operation.
class HttpClientStream final : public ClientStream {
 public:
  HttpClientStream(std::shared_ptr<HttpClient> client, std::string target,
                   CallRequest head, std::optional<std::string> first,
                   asio::any_io_executor executor)
      : client_(std::move(client)),
        target_(std::move(target)),
        head_(std::move(head)),
        first_(std::move(first)),
        cancel_open_(std::make_shared<Signal>(executor, 1)) {}

  ~HttpClientStream() override {
    Cancel(absl::CancelledError("stream dropped before it ended"));
  }

  asio::awaitable<absl::Status> Write(std::string message) override {
    if (message.size() > client_->config().max_message_size) {
      co_return absl::ResourceExhaustedError(absl::StrCat(
          "request message of ", message.size(),
          " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=",
          client_->config().max_message_size, " bytes"));
    }
    if (absl::Status s = co_await Open(); !s.ok()) co_return s;
    if (writes_done_) {
      co_return absl::FailedPreconditionError("Write() after WritesDone()");
    }
    std::string prefix = EncodeGrpcPrefix(static_cast<uint32_t>(message.size()));
    connection_->QueueData(stream_, std::move(prefix), std::move(message),
                           /*end=*/false);
    co_return co_await connection_->WaitWritable(stream_, kWriteHighWater);
  }

  asio::awaitable<absl::Status> WritesDone() override {
    if (absl::Status s = co_await Open(); !s.ok()) co_return s;
    HalfClose();
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    if (absl::Status s = co_await Open(); !s.ok()) co_return s;
    absl::StatusOr<std::optional<std::string>> message =
        co_await connection_->ReadMessage(stream_);
    if (message.ok() && message->has_value()) co_return message;
    std::optional<CallResult> ended = EndedResult();
    if (!ended) {
      // Cancelled (Asio) while waiting: the call ends with it.
      absl::Status why = message.ok() ? absl::CancelledError("read cancelled")
                                      : message.status();
      Cancel(why);
      co_return why;
    }
    if (!ended->status.ok()) co_return ended->status;
    co_return std::optional<std::string>();
  }

  asio::awaitable<CallResult> Finish() override {
    if (absl::Status s = co_await Open(); !s.ok()) co_return CallResult(s);
    HalfClose();
    // Unread messages are dropped, and their window given back, so the
    // server can finish.
    connection_->DropUnread(stream_);
    bool woke = co_await connection_->Wait(
        stream_, [](const H2Stream& s) { return s.peer_ended; });
    if (!woke) {
      Cancel(absl::CancelledError("call cancelled by the caller"));
    }
    co_return EndedResult().value_or(
        CallResult(absl::CancelledError("call cancelled by the caller")));
  }

  void Cancel(absl::Status why) override {
    std::shared_ptr<ClientConnection> connection;
    std::shared_ptr<H2Stream> stream;
    {
      std::lock_guard lock(mu_);
      if (result_ || cancelled_) return;
      cancelled_ = why;
      connection = connection_;
      stream = stream_;
    }
    cancel_open_->try_send(boost::system::error_code{});  // if still dialling
    if (connection && stream) {
      connection->Reset(stream, NGHTTP2_CANCEL, std::move(why));
    }
  }

  std::optional<CallResult> EndedResult() const override {
    std::lock_guard lock(mu_);
    if (result_) return result_;
    if (cancelled_ && !connection_) return CallResult(*cancelled_);
    if (!connection_) return std::nullopt;
    std::optional<CallResult> ended = connection_->Locked(
        [&]() -> std::optional<CallResult> {
          if (!stream_->peer_ended && stream_->error.ok() && !stream_->closed) {
            return std::nullopt;
          }
          return ResultFrom(*stream_, target_, /*unary=*/false);
        });
    if (ended) result_ = ended;
    return ended;
  }

 private:
  // Opens the call on the first operation; later ones wait for it.
  asio::awaitable<absl::Status> Open() {
    return open_.Run(this, &HttpClientStream::OpenAndRecord);
  }

  asio::awaitable<absl::Status> OpenAndRecord() {
    absl::Status status = co_await DoOpen();
    if (!status.ok()) {
      std::lock_guard lock(mu_);
      if (!result_) result_ = CallResult(status);
    }
    co_return status;
  }

  asio::awaitable<absl::Status> DoOpen() {
    {
      std::lock_guard lock(mu_);
      if (cancelled_) co_return *cancelled_;
    }
    absl::StatusOr<Headers> headers = client_->RequestHeaders(target_, head_, /*streaming=*/true);
    if (!headers.ok()) co_return headers.status();
    absl::StatusOr<HttpClient::Lease> lease =
        co_await client_->AcquireUnless(target_, cancel_open_);
    {
      std::lock_guard lock(mu_);
      if (cancelled_) co_return *cancelled_;
    }
    if (!lease.ok()) co_return lease.status();
    auto stream = std::make_shared<H2Stream>(
        client_->config().max_message_size, "DYN_HTTP_MAX_MESSAGE_SIZE",
        "response");
    if (first_) {
      if (first_->size() > client_->config().max_message_size) {
        co_return absl::ResourceExhaustedError(absl::StrCat(
            "request message of ", first_->size(),
            " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=",
            client_->config().max_message_size, " bytes"));
      }
      stream->out_bytes = kGrpcPrefixSize + first_->size();
      stream->out.push_back(
          EncodeGrpcPrefix(static_cast<uint32_t>(first_->size())));
      if (!first_->empty()) stream->out.push_back(*std::move(first_));
      stream->out_end = true;
      writes_done_ = true;
    }
    std::shared_ptr<ClientConnection> connection = lease->get();
    absl::StatusOr<int32_t> id = connection->SubmitRequest(stream, *headers);
    if (!id.ok()) co_return id.status();
    std::optional<absl::Status> cancelled;
    {
      std::lock_guard lock(mu_);
      lease_ = *std::move(lease);
      connection_ = connection;
      stream_ = stream;
      cancelled = cancelled_;
    }
    // Cancelled while opening: the stream ends now.
    if (cancelled) connection->Reset(stream, NGHTTP2_CANCEL, *cancelled);
    co_return absl::OkStatus();
  }

  void HalfClose() {
    if (writes_done_) return;
    writes_done_ = true;
    connection_->QueueData(stream_, {}, {}, /*end=*/true);
  }

  const std::shared_ptr<HttpClient> client_;
  const std::string target_;
  const CallRequest head_;
  std::optional<std::string> first_;
  const std::shared_ptr<Signal> cancel_open_;  // interrupts the dial

  mutable std::mutex mu_;
  OpenOnce open_;
  std::optional<absl::Status> cancelled_;
  mutable std::optional<CallResult> result_;
  // Set once opened (under mu_), then read freely by the stream's users.
  HttpClient::Lease lease_;
  std::shared_ptr<ClientConnection> connection_;
  std::shared_ptr<H2Stream> stream_;
  bool writes_done_ = false;  // the users' side only
};

}  // namespace

std::unique_ptr<ClientStream> HttpClient::StartStream(
    std::string_view target, CallRequest head,
    std::optional<std::string> first_message) {
  return std::make_unique<HttpClientStream>(
      shared_from_this(), std::string(target), std::move(head),
      std::move(first_message), executor_);
}

}  // namespace dynrpc::internal::http

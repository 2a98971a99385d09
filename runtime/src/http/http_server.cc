#include "http/http_server.h"

#include <atomic>
#include <exception>
#include <map>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/as_tuple.hpp"
#include "boost/asio/cancellation_signal.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "core/deadline.h"
#include "core/server_call.h"
#include "dynrpc/message_buffers.h"
#include "net/sockets.h"

namespace dynrpc::internal::http {

namespace asio = boost::asio;

namespace {

// A streaming Write() returns once at most this much of the stream's DATA
// waits to be sent: the peer's flow-control window holds the writer back.
constexpr std::size_t kWriteHighWater = 64 * 1024;

enum class ContentKind { kGrpc, kJson, kOther };

ContentKind Classify(std::optional<std::string_view> content_type) {
  if (!content_type) return ContentKind::kOther;
  std::string type = absl::AsciiStrToLower(
      absl::string_view(content_type->data(), content_type->size()));
  std::string_view base = type;
  base = base.substr(0, base.find(';'));
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  if (base == "application/grpc" || base == "application/grpc+proto") {
    return ContentKind::kGrpc;
  }
  if (base == "application/json") return ContentKind::kJson;
  return ContentKind::kOther;
}

// One call in progress: how to cancel its coroutine.
struct ServerCall : ServerCallBase {
  using ServerCallBase::ServerCallBase;
  // The call's stream, and its connection (weak: the core may hold the
  // call's `cancel` after the connection has gone).
  std::shared_ptr<H2Stream> stream;
  std::weak_ptr<H2Connection> connection;

  // The core ends the call with `why` (its deadline passed), as the TCP
  // plane's ServerCall::Cancel(why) does: the stream fails with `why`, so
  // the handler's pending and later Read()/Write() return it and none of
  // its messages goes out any more; its coroutine is cancelled; once it has
  // returned, ServeStream sends the call's status in the trailers (and
  // resets the stream if the caller is still sending). Any thread, not
  // under the connection's mutex.
  void End(absl::Status why) {
    if (std::shared_ptr<H2Connection> c = connection.lock()) {
      c->FailStream(stream, std::move(why));
    }
    CancelHandler();
  }
};

}  // namespace

class HttpServerConnection final : public H2Connection {
 public:
  HttpServerConnection(asio::ip::tcp::socket socket, const HttpConfig& config,
                       HttpServer& server)
      : H2Connection(Role::kServer, std::move(socket), config),
        server_(server) {}

  std::shared_ptr<ServerCall> CallFor(int32_t id) {
    return Locked([&]() -> std::shared_ptr<ServerCall> {
      auto it = calls_.find(id);
      return it == calls_.end() ? nullptr : it->second;
    });
  }
  // The call's handler has ended: it no longer counts toward the stream
  // limit, and the oldest stream parked at the limit starts. Idempotent.
  void Forget(int32_t id) {
    std::shared_ptr<ServerCall> next;
    Locked([&] {
      if (calls_.erase(id) == 0) return;
      if (parked_.empty() || calls_.size() >= config_.max_concurrent_streams) {
        return;
      }
      auto oldest = parked_.begin();
      next = NewCall(oldest->second);
      calls_[oldest->first] = next;
      parked_.erase(oldest);
    });
    if (next) StartCall(std::move(next));  // outside the mutex: may run now
  }

 protected:
  void ChooseBodyMode(H2Stream& stream) override {
    switch (Classify(FindHeader(stream.headers, "content-type"))) {
      case ContentKind::kGrpc:
        stream.mode = BodyMode::kGrpc;
        break;
      case ContentKind::kJson:
        stream.mode = BodyMode::kRaw;
        break;
      case ContentKind::kOther:
        stream.mode = BodyMode::kDrop;
        break;
    }
  }

  void OnRequest(std::shared_ptr<H2Stream> stream) override {
    std::shared_ptr<ServerCall> call = NewCall(stream);
    bool serve = Locked([&] {
      if (stream->closed && !stream->error.ok()) return false;  // reset
      // A call counts toward the stream limit until its handler has ended,
      // not until its stream closes: a caller that resets its streams at
      // once ("rapid reset") cannot run more handlers than
      // SETTINGS_MAX_CONCURRENT_STREAMS. A stream that comes while handlers
      // of reset streams still wind down waits, parked, for one to end (no
      // more than the limit of open streams can wait; a reset one leaves).
      if (calls_.size() >= config_.max_concurrent_streams) {
        parked_[stream->id] = stream;
        return false;
      }
      calls_[stream->id] = call;
      return true;
    });
    if (serve) StartCall(std::move(call));
  }

  void OnStreamClosed(const std::shared_ptr<H2Stream>& stream) override {
    parked_.erase(stream->id);  // reset while it waited: it never starts
    auto it = calls_.find(stream->id);
    if (it == calls_.end()) return;
    // Reset by the caller, or the connection was lost: the handler stops.
    if (!stream->error.ok()) it->second->CancelHandler();
  }

 private:
  std::shared_ptr<ServerCall> NewCall(std::shared_ptr<H2Stream> stream) {
    auto call = std::make_shared<ServerCall>(server_.tasks_.NewStrand());
    call->stream = std::move(stream);
    call->connection = weak_from_this();
    return call;
  }

  // Runs the call's coroutine (admitted into calls_ already).
  void StartCall(std::shared_ptr<ServerCall> call) {
    std::shared_ptr<H2Stream> stream = call->stream;
    call->Spawn(
        server_.tasks_,
        server_.ServeStream(
            std::static_pointer_cast<HttpServerConnection>(shared_from_this()),
            std::move(stream)),
        "http server call");
  }

  HttpServer& server_;
  // Calls whose coroutine runs, by stream id (under the mutex).
  absl::flat_hash_map<int32_t, std::shared_ptr<ServerCall>> calls_;
  // Streams waiting for a handler to end, oldest first (under the mutex).
  std::map<int32_t, std::shared_ptr<H2Stream>> parked_;
};

namespace {

Headers GrpcResponseHeaders(const Metadata& initial_metadata) {
  Headers headers = {{":status", "200"}, {"content-type", "application/grpc"}};
  for (const auto& [key, value] : initial_metadata) {
    std::string name = absl::AsciiStrToLower(key);
    headers.emplace_back(name, EncodeMetadataValue(name, value));
  }
  return headers;
}

void AddStatus(Headers& headers, const absl::Status& status,
               const Metadata& trailing_metadata) {
  headers.emplace_back("grpc-status",
                       std::to_string(static_cast<int>(status.code())));
  if (!status.message().empty()) {
    headers.emplace_back(
        "grpc-message",
        PercentEncode(std::string_view(status.message().data(),
                                       status.message().size())));
  }
  for (const auto& [key, value] : trailing_metadata) {
    std::string name = absl::AsciiStrToLower(key);
    headers.emplace_back(name, EncodeMetadataValue(name, value));
  }
}

// The metadata a caller sent; INVALID_ARGUMENT naming a "-bin" value that
// is not base64.
absl::StatusOr<Metadata> CallerMetadata(const Headers& headers) {
  std::vector<std::string> undecodable;
  Metadata metadata = MetadataFromHeaders(headers, &undecodable);
  if (!undecodable.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metadata '", undecodable.front(), "' is not valid base64 (a -bin key)"));
  }
  return metadata;
}

// The plane's side of a streaming call, for the core.
class HttpServerStream final : public ServerStream {
 public:
  HttpServerStream(std::shared_ptr<HttpServerConnection> connection,
                   std::shared_ptr<H2Stream> stream, std::size_t max_message)
      : connection_(std::move(connection)),
        stream_(std::move(stream)),
        max_message_(max_message) {}

  asio::awaitable<absl::StatusOr<std::optional<std::string>>> Read() override {
    return connection_->ReadMessage(stream_);
  }

  asio::awaitable<absl::Status> Write(
      std::string message, const Metadata& initial_metadata) override {
    if (message.size() > max_message_) {
      co_return absl::ResourceExhaustedError(absl::StrCat(
          "response message of ", message.size(),
          " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=", max_message_, " bytes"));
    }
    // The call has ended (its deadline passed, the caller reset it, the
    // connection was lost): nothing more goes out, and Write() says why.
    absl::Status failed = connection_->Locked([&] { return stream_->error; });
    if (!failed.ok()) co_return failed;
    if (!headers_sent_) {
      absl::Status sent = connection_->SubmitResponse(
          stream_, GrpcResponseHeaders(initial_metadata), /*body=*/true);
      if (!sent.ok()) co_return sent;
      headers_sent_ = true;
    }
    std::string prefix = EncodeGrpcPrefix(static_cast<uint32_t>(message.size()));
    connection_->QueueData(stream_, std::move(prefix), std::move(message),
                           /*end=*/false);
    co_return co_await connection_->WaitWritable(stream_, kWriteHighWater);
  }

  bool headers_sent() const { return headers_sent_; }

 private:
  std::shared_ptr<HttpServerConnection> connection_;
  std::shared_ptr<H2Stream> stream_;
  std::size_t max_message_;
  bool headers_sent_ = false;
};

// Sends how a call ended.
class Responder {
 public:
  Responder(std::shared_ptr<HttpServerConnection> connection,
            std::shared_ptr<H2Stream> stream, std::size_t max_message)
      : connection_(std::move(connection)),
        stream_(std::move(stream)),
        max_message_(max_message) {}

  // The gRPC end of a call: its message (if any), status and metadata.
  asio::awaitable<void> Grpc(CallResult result, bool headers_sent) {
    // The handler has ended: its call stops counting against the stream
    // limit before its end can reach the caller (who may then open another).
    connection_->Forget(stream_->id);
    if (result.has_message && result.status.ok() &&
        result.payload.size() > max_message_) {
      result = CallResult(absl::ResourceExhaustedError(absl::StrCat(
          "response message of ", result.payload.size(),
          " bytes exceeds DYN_HTTP_MAX_MESSAGE_SIZE=", max_message_,
          " bytes")));
    }
    bool with_message = result.has_message && result.status.ok();
    Headers trailers;
    AddStatus(trailers, result.status, result.trailing_metadata);
    if (!headers_sent && !with_message && result.initial_metadata.empty()) {
      // Trailers-only: one HEADERS frame ends the stream. (With initial
      // metadata, headers and trailers go apart, as gRPC's servers do, so
      // the caller sees it as initial metadata.)
      Headers headers = GrpcResponseHeaders(result.initial_metadata);
      headers.insert(headers.end(), trailers.begin(), trailers.end());
      (void)connection_->SubmitResponse(stream_, headers, /*body=*/false);
    } else {
      if (!headers_sent) {
        (void)connection_->SubmitResponse(
            stream_, GrpcResponseHeaders(result.initial_metadata),
            /*body=*/true);
      }
      std::string prefix, payload;
      if (with_message) {
        prefix = EncodeGrpcPrefix(static_cast<uint32_t>(result.payload.size()));
        payload = std::move(result.payload);
      }
      connection_->QueueData(stream_, std::move(prefix), std::move(payload),
                             /*end=*/true, std::move(trailers));
    }
    co_await StopCaller(NGHTTP2_NO_ERROR);
  }

  // An HTTP-level answer (JSON callers, wrong content-type or method):
  // `http_status` with `body`.
  asio::awaitable<void> Http(int http_status, std::string body,
                             std::string content_type = "application/json") {
    connection_->Forget(stream_->id);  // as in Grpc()
    Headers headers = {{":status", std::to_string(http_status)},
                       {"content-type", std::move(content_type)},
                       {"content-length", std::to_string(body.size())}};
    (void)connection_->SubmitResponse(stream_, headers, /*body=*/true);
    connection_->QueueData(stream_, {}, std::move(body), /*end=*/true);
    co_await StopCaller(NGHTTP2_NO_ERROR);
  }

  asio::awaitable<void> JsonError(const absl::Status& status,
                                  int http_status = 0) {
    co_await Http(http_status != 0 ? http_status
                                   : HttpStatusFromGrpcCode(status.code()),
                  JsonErrorBody(status));
  }

 private:
  // A caller still sending when its answer is complete is told to stop with
  // RST_STREAM (RFC 9113 8.1), once the answer has gone to the session.
  asio::awaitable<void> StopCaller(uint32_t code) {
    bool still_sending = connection_->Locked([&] {
      return !stream_->peer_ended && !stream_->closed;
    });
    if (!still_sending) co_return;
    co_await connection_->WaitSent(stream_);
    connection_->Reset(stream_, code,
                       absl::CancelledError("answered before the request "
                                            "ended"));
  }

  std::shared_ptr<HttpServerConnection> connection_;
  std::shared_ptr<H2Stream> stream_;
  std::size_t max_message_;
};

// A unary request's message, unless the call's deadline passes first (a
// caller that never finishes its request must not hold the call forever):
// then DEADLINE_EXCEEDED.
asio::awaitable<absl::StatusOr<std::optional<std::string>>> ReadBefore(
    H2Connection& connection, const std::shared_ptr<H2Stream>& stream,
    std::optional<Clock::time_point> deadline) {
  if (!deadline) co_return co_await connection.ReadMessage(stream);
  asio::steady_timer timer(co_await asio::this_coro::executor, *deadline);
  // Weak: the handler may run after this coroutine and the connection end.
  std::weak_ptr<H2Connection> weak = connection.shared_from_this();
  timer.async_wait([weak, stream](const boost::system::error_code& ec) {
    auto connection = weak.lock();
    if (ec || connection == nullptr) return;
    connection->FailStream(stream, absl::DeadlineExceededError(
                                       "the call's deadline (grpc-timeout) "
                                       "passed before its request arrived"));
  });
  absl::StatusOr<std::optional<std::string>> message =
      co_await connection.ReadMessage(stream);
  timer.cancel();
  co_return message;
}

// Runs the core's handler of one call. ServeStream runs with
// throw_if_cancelled(false), to answer even once the call is cancelled; but
// Asio keeps that flag per coroutine thread (in the spawned coroutine's
// entry frame), and the handler runs in ServeStream's thread: with it, a
// cancellation would end only the wait in progress, and the handler's later
// co_awaits (a timer, a downstream call) would run on. The handler runs with
// Asio's default instead, as on the TCP plane: once the call is cancelled
// (the caller reset it, the connection was lost, its deadline passed), every
// co_await it makes throws. `stream` is null for a unary call.
asio::awaitable<CallResult> RunHandler(CallHandler& handler,
                                       CallRequest request,
                                       ServerCallInfo info,
                                       ServerStream* stream) {
  co_await asio::this_coro::throw_if_cancelled(true);
  CallResult result;
  std::exception_ptr thrown;
  try {
    if (stream == nullptr) {
      result = co_await handler.HandleUnary(std::move(request),
                                            std::move(info));
    } else {
      result = co_await handler.HandleStream(std::move(request),
                                             std::move(info), *stream);
    }
  } catch (...) {
    // Cancelled before the handler began (the co_await threw at once); the
    // dispatcher turns the handler's own exceptions into its status.
    thrown = std::current_exception();
  }
  co_await asio::this_coro::throw_if_cancelled(false);
  if (thrown) {
    result = CallResult(StatusFromException(thrown, "the call",
                                            absl::StatusCode::kUnknown));
  }
  co_return result;
}

}  // namespace

HttpServer::HttpServer(HttpConfig config, const ServerLimits& limits,
                       asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      connections_(limits.max_connections),
      tasks_(executor_) {}

HttpServer::~HttpServer() { Shutdown(); }

absl::StatusOr<std::string> HttpServer::Start(CallHandler& handler) {
  handler_ = &handler;
  absl::StatusOr<net::Listener> listener = net::Listen(
      asio::make_strand(executor_),
      {config_.host, config_.port, "DYN_HTTP_RPC_HOST", "DYN_HTTP_RPC_PORT"});
  if (!listener.ok()) return listener.status();
  acceptor_.emplace(std::move(listener->acceptor));
  tasks_.Spawn(acceptor_->get_executor(), AcceptLoop(), "http accept loop");
  return std::move(listener->address);
}

void HttpServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  tasks_.CancelAll();
  tasks_.Wait();
}

asio::awaitable<void> HttpServer::AcceptLoop() {
  // The connections, to end them at shutdown (the accept loop's strand).
  std::vector<std::weak_ptr<HttpServerConnection>> connections;
  co_await net::AcceptLoop(
      *acceptor_, connections_, [this] { return tasks_.NewStrand(); },
      [&](asio::ip::tcp::socket socket, asio::any_io_executor strand,
          Admission::Token token) {
        auto connection = std::make_shared<HttpServerConnection>(
            std::move(socket), config_, *this);
        if (!connection->Start().ok()) return;
        std::erase_if(connections, [](const auto& c) { return c.expired(); });
        connections.push_back(connection);
        tasks_.Spawn(strand, H2Connection::WriteLoop(connection),
                     "http server writer");
        tasks_.Spawn(strand,
                     net::Holding(std::move(token),
                                  H2Connection::ReadLoop(connection)),
                     "http server reader");
      });
  // Shutting down: end every connection, so its reader and writer return.
  for (auto& weak : connections) {
    if (auto c = weak.lock()) {
      c->Close(absl::UnavailableError("the server is shutting down"));
    }
  }
}

std::string HttpServer::MethodPath(std::string_view path) const {
  path = path.substr(0, path.find('?'));
  std::string_view root = config_.root_path;
  if (!root.empty() && root != "/" && path.starts_with(root) &&
      path.size() > root.size() && path[root.size()] == '/') {
    return std::string(path.substr(root.size()));
  }
  return std::string(path);
}

asio::awaitable<void> HttpServer::ServeStream(
    std::shared_ptr<HttpServerConnection> connection,
    std::shared_ptr<H2Stream> stream) {
  co_await asio::this_coro::throw_if_cancelled(false);
  absl::Cleanup forget = [&] { connection->Forget(stream->id); };
  std::shared_ptr<ServerCall> call = connection->CallFor(stream->id);
  if (call == nullptr) co_return;  // already gone
  Headers headers = connection->Locked([&] { return stream->headers; });
  Responder respond(connection, stream, config_.max_message_size);

  std::optional<std::string_view> content_type =
      FindHeader(headers, "content-type");
  ContentKind kind = Classify(content_type);
  if (FindHeader(headers, ":method") != "POST") {
    co_await respond.JsonError(
        absl::InvalidArgumentError(absl::StrCat(
            "method ", std::string(FindHeader(headers, ":method").value_or("")),
            " not allowed: calls are POST")),
        405);
    co_return;
  }
  if (kind == ContentKind::kOther) {
    co_await respond.JsonError(
        absl::InvalidArgumentError(absl::StrCat(
            "unsupported content-type '",
            std::string(content_type.value_or("")),
            "': use application/grpc (gRPC) or application/json")),
        415);
    co_return;
  }
  std::string path(FindHeader(headers, ":path").value_or(""));
  std::string method_path = MethodPath(path);
  const MethodEntry* entry = handler_->FindMethod(method_path);

  CallRequest request;
  request.method = method_path;
  if (std::optional<std::string_view> timeout =
          FindHeader(headers, "grpc-timeout")) {
    std::optional<Clock::duration> parsed = ParseGrpcTimeout(*timeout);
    if (!parsed) {
      absl::Status bad = absl::InvalidArgumentError(absl::StrCat(
          "malformed grpc-timeout '", std::string(*timeout), "'"));
      if (kind == ContentKind::kJson) {
        co_await respond.JsonError(bad);
      } else {
        co_await respond.Grpc(CallResult(bad), false);
      }
      co_return;
    }
    request.deadline = Clock::now() + *parsed;
  }
  absl::StatusOr<Metadata> metadata = CallerMetadata(headers);
  if (!metadata.ok()) {
    if (kind == ContentKind::kJson) {
      co_await respond.JsonError(metadata.status());
    } else {
      co_await respond.Grpc(CallResult(metadata.status()), false);
    }
    co_return;
  }
  request.metadata = *std::move(metadata);
  ServerCallInfo info{connection->peer(), call->cancelled,
                      [call](absl::Status why) { call->End(std::move(why)); }};

  if (kind == ContentKind::kJson) {
    if (entry == nullptr) {
      co_await respond.JsonError(
          absl::UnimplementedError(absl::StrCat("unknown method ", path)),
          404);
      co_return;
    }
    if (entry->kind != MethodKind::kUnary) {
      co_await respond.JsonError(absl::UnimplementedError(absl::StrCat(
          "JSON calls are for unary methods; ", method_path,
          " is a streaming method (use gRPC)")));
      co_return;
    }
    absl::StatusOr<std::optional<std::string>> body =
        co_await ReadBefore(*connection, stream, request.deadline);
    if (!body.ok()) {
      co_await respond.JsonError(body.status());
      co_return;
    }
    namespace pb = google::protobuf;
    std::unique_ptr<pb::Message> in(
        pb::MessageFactory::generated_factory()
            ->GetPrototype(entry->request_type)
            ->New());
    std::string json = body->value_or("");
    if (json.empty()) json = "{}";
    pb::util::Status parsed = pb::util::JsonStringToMessage(json, in.get());
    if (!parsed.ok()) {
      co_await respond.JsonError(absl::InvalidArgumentError(absl::StrCat(
          "request body is not a JSON ", entry->request_type->full_name(),
          ": ", std::string(parsed.message()))));
      co_return;
    }
    in->SerializeToString(&request.payload);
    CallResult result = co_await RunHandler(*handler_, std::move(request),
                                            std::move(info), nullptr);
    if (!result.status.ok()) {
      co_await respond.JsonError(result.status);
      co_return;
    }
    std::unique_ptr<pb::Message> out(
        pb::MessageFactory::generated_factory()
            ->GetPrototype(entry->response_type)
            ->New());
    std::string reply;
    if (!out->ParseFromString(result.payload) ||
        !pb::util::MessageToJsonString(*out, &reply).ok()) {
      co_await respond.JsonError(absl::InternalError(absl::StrCat(
          "cannot render the response as JSON ",
          entry->response_type->full_name())));
      co_return;
    }
    co_await respond.Http(200, std::move(reply));
    co_return;
  }

  if (entry == nullptr) {
    co_await respond.Grpc(
        CallResult(absl::UnimplementedError(
            absl::StrCat("unknown method ", method_path))),
        false);
    co_return;
  }
  // The kind the caller says it calls (dynrpc clients), else the method's:
  // the dispatcher refuses a mismatch.
  std::optional<std::string_view> declared =
      FindHeader(headers, kCallKindHeader);
  bool unary = declared ? *declared == "unary"
                        : entry->kind == MethodKind::kUnary;
  if (unary) {
    absl::StatusOr<std::optional<std::string>> message =
        co_await ReadBefore(*connection, stream, request.deadline);
    // (Not a ?: around co_await: GCC 12 miscompiles that.)
    absl::StatusOr<std::optional<std::string>> more = std::nullopt;
    if (message.ok() && message->has_value()) {
      more = co_await ReadBefore(*connection, stream, request.deadline);
    }
    absl::Status bad;
    if (!message.ok()) {
      bad = message.status();
    } else if (!message->has_value()) {
      bad = absl::InternalError("a unary request ended without its message");
    } else if (!more.ok()) {
      bad = more.status();
    } else if (more->has_value()) {
      bad = absl::InternalError("a unary request carried a second message");
    }
    if (!bad.ok()) {
      bool caller_gone = connection->Locked([&] { return stream->closed; });
      if (!caller_gone) co_await respond.Grpc(CallResult(bad), false);
      co_return;
    }
    request.payload = **std::move(message);
    CallResult result = co_await RunHandler(*handler_, std::move(request),
                                            std::move(info), nullptr);
    co_await respond.Grpc(std::move(result), false);
    co_return;
  }
  HttpServerStream server_stream(connection, stream, config_.max_message_size);
  CallResult result = co_await RunHandler(*handler_, std::move(request),
                                          std::move(info), &server_stream);
  absl::Status plane_end = connection->Locked([&] { return stream->error; });
  result = SettleServerCall(std::move(result), plane_end);
  co_await respond.Grpc(std::move(result), server_stream.headers_sent());
}

}  // namespace dynrpc::internal::http

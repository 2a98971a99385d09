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
#include "core/deadline.h"
#include "core/metrics.h"
#include "core/server_call.h"
#include "dynrpc/message_buffers.h"
#include "dynrpc/status_macros.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
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

}  // namespace

class HttpServerConnection;

namespace {

// One call in progress, and the frames it sends (gRPC calls: the core runs
// them over its StreamState, `h2->state`; JSON calls are the plane's own).
class ServerCall final : public FramedServerCall {
 public:
  // The connection is weak: the core may hold the call after the
  // connection has gone.
  ServerCall(asio::any_io_executor strand, std::shared_ptr<H2Stream> stream,
             std::weak_ptr<HttpServerConnection> connection,
             std::size_t max_message)
      : FramedServerCall(std::move(strand)),
        h2(std::move(stream)),
        connection(std::move(connection)),
        max_message_(max_message) {}

  absl::Status CheckMessage(std::size_t bytes) const override;
  std::size_t max_message_size() const override { return max_message_; }
  absl::Status SendMessage(std::string message,
                           const Metadata* initial_metadata,
                           Compression encoding, bool compressed) override;
  void SendWindow(uint32_t bytes) override;
  void SendEnd(CallResult result, bool initial_sent) override;
  bool paced_by_wire() const override { return true; }
  asio::awaitable<absl::Status> Ready() override;
  asio::awaitable<void> Drain() override;
  void OnCancel(const absl::Status& why) override;

  const std::shared_ptr<H2Stream> h2;
  const std::weak_ptr<HttpServerConnection> connection;

 private:
  const std::size_t max_message_;
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
        // The call's messages go to the core as they complete; HTTP/2's
        // stream window bounds what waits unread.
        stream.state = std::make_shared<StreamState>(
            config_.max_message_size, StreamState::WireWindow{kGrpcPrefixSize});
        stream.deliver = true;
        break;
      case ContentKind::kJson:
        // One message, the whole body, delivered at its end.
        stream.mode = BodyMode::kRaw;
        stream.state = std::make_shared<StreamState>(
            config_.max_message_size, StreamState::WireWindow{0});
        stream.deliver = true;
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

  // What the caller's side of a gRPC call came to, for the core: its
  // half-close, or why it failed (a reset, an oversized or malformed
  // message, the connection lost).
  void OnStreamEndLocked(H2Stream& stream) override {
    if (stream.state == nullptr) return;
    if (!stream.error.ok()) {
      stream.state->End(CallResult(stream.error), /*discard_unread=*/true);
    } else if (stream.peer_ended && !stream.decoder.AtBoundary()) {
      // The complete messages before it are still read first.
      stream.state->End(CallResult(absl::InternalError(
          absl::StrCat("the ", stream.what, " stream ended inside a message (",
                       stream.decoder.buffered(), " bytes of it received)"))));
    } else if (stream.peer_ended) {
      stream.state->PeerDone();
    } else if (stream.closed) {
      stream.state->End(CallResult(absl::InternalError(
                            "the HTTP/2 stream closed before it ended")),
                        /*discard_unread=*/true);
    }
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
    return std::make_shared<ServerCall>(
        server_.tasks().NewStrand(), std::move(stream),
        std::static_pointer_cast<HttpServerConnection>(shared_from_this()),
        config_.max_message_size);
  }

  // Runs the call's coroutine (admitted into calls_ already).
  void StartCall(std::shared_ptr<ServerCall> call) {
    std::shared_ptr<H2Stream> stream = call->h2;
    call->Spawn(
        server_.tasks(),
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

// `encoding`: the compression of the response messages that have the flag.
Headers GrpcResponseHeaders(const Metadata& initial_metadata,
                            Compression encoding = Compression::kIdentity) {
  Headers headers = {{":status", "200"},
                     {"content-type", "application/grpc"},
                     {"grpc-accept-encoding", std::string(kAcceptEncoding)}};
  if (encoding != Compression::kIdentity) {
    headers.emplace_back("grpc-encoding",
                         std::string(CompressionName(encoding)));
  }
  for (const auto& [key, value] : initial_metadata) {
    std::string name = absl::AsciiStrToLower(key);
    headers.emplace_back(name, EncodeMetadataValue(name, value));
  }
  return headers;
}

// The response headers of most calls (no initial metadata, messages not
// compressed), built once.
const Headers& PlainGrpcResponseHeaders() {
  static const Headers* const kPlain =
      new Headers(GrpcResponseHeaders(Metadata{}));
  return *kPlain;
}

void AddStatus(Headers& headers, const absl::Status& status,
               const Metadata& trailing_metadata) {
  headers.emplace_back("grpc-status",
                       std::to_string(static_cast<int>(status.code())));
  if (!status.message().empty()) {
    headers.emplace_back(
        "grpc-message", PercentEncode(std::string_view(
                            status.message().data(), status.message().size())));
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
    return absl::InvalidArgumentError(
        absl::StrCat("metadata '", undecodable.front(),
                     "' is not valid base64 (a -bin key)"));
  }
  return metadata;
}

// Sends how a call ended.
class Responder {
 public:
  Responder(std::shared_ptr<HttpServerConnection> connection,
            std::shared_ptr<H2Stream> stream)
      : connection_(std::move(connection)), stream_(std::move(stream)) {}

  // The gRPC end of a call that never reached its handler.
  asio::awaitable<void> Grpc(CallResult result) {
    SendGrpcEnd(std::move(result), /*headers_sent=*/false);
    co_await StopCaller();
  }

  // The gRPC end of a call: its message (if any), status and metadata (the
  // core has checked the message's size).
  void SendGrpcEnd(CallResult result, bool headers_sent) {
    // The handler has ended: its call stops counting against the stream
    // limit before its end can reach the caller (who may then open another).
    connection_->Forget(stream_->id);
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
      std::string prefix, payload;
      if (with_message) {
        prefix = EncodeGrpcPrefix(static_cast<uint32_t>(result.payload.size()),
                                  result.payload_compressed);
        payload = std::move(result.payload);
      }
      if (headers_sent) {
        connection_->QueueData(stream_, std::move(prefix), std::move(payload),
                               /*end=*/true, std::move(trailers));
        return;
      }
      const Compression encoding = with_message && result.payload_compressed
                                       ? result.encoding
                                       : Compression::kIdentity;
      std::optional<Headers> headers;
      if (!result.initial_metadata.empty() ||
          encoding != Compression::kIdentity) {
        headers = GrpcResponseHeaders(result.initial_metadata, encoding);
      }
      (void)connection_->SubmitWholeResponse(
          stream_, headers ? *headers : PlainGrpcResponseHeaders(),
          std::move(prefix), std::move(payload), std::move(trailers));
    }
  }

  // An HTTP-level answer (JSON callers, wrong content-type or method):
  // `http_status` with `body`.
  asio::awaitable<void> Http(int http_status, std::string body,
                             std::string content_type = "application/json") {
    connection_->Forget(stream_->id);  // as in Grpc()
    Headers headers = {{":status", std::to_string(http_status)},
                       {"content-type", std::move(content_type)},
                       {"content-length", std::to_string(body.size())}};
    (void)connection_->SubmitWholeResponse(stream_, headers, {},
                                           std::move(body), std::nullopt);
    co_await StopCaller();
  }

  asio::awaitable<void> JsonError(const absl::Status& status,
                                  int http_status = 0) {
    co_await Http(
        http_status != 0 ? http_status : HttpStatusFromGrpcCode(status.code()),
        JsonErrorBody(status));
  }

  // A caller still sending when its answer is complete is told to stop with
  // RST_STREAM (RFC 9113 8.1), once the answer has gone to the session.
  asio::awaitable<void> StopCaller() {
    bool still_sending = connection_->Locked(
        [&] { return !stream_->peer_ended && !stream_->closed; });
    if (!still_sending) co_return;
    co_await connection_->WaitSent(stream_);
    connection_->Reset(stream_, NGHTTP2_NO_ERROR,
                       absl::CancelledError("answered before the request "
                                            "ended"));
  }

 private:
  std::shared_ptr<HttpServerConnection> connection_;
  std::shared_ptr<H2Stream> stream_;
};

// A unary request's one message (a JSON call's: its body), from the call's
// state, unless the
// call's deadline passes first (a caller that never finishes its request
// must not hold the call for ever): then DEADLINE_EXCEEDED.
asio::awaitable<absl::StatusOr<std::string>> ReadUnaryRequest(
    ServerCall& call, std::optional<Clock::time_point> deadline,
    std::size_t* wire_bytes = nullptr) {
  std::shared_ptr<StreamState> state = call.h2->state;
  std::optional<asio::steady_timer> timer;
  if (deadline) {
    timer.emplace(co_await asio::this_coro::executor, *deadline);
    timer->async_wait([state](const boost::system::error_code& ec) {
      if (ec) return;
      state->End(CallResult(absl::DeadlineExceededError(
                     "the call's deadline (grpc-timeout) passed before its "
                     "request arrived")),
                 /*discard_unread=*/true);
    });
  }
  absl::StatusOr<std::optional<std::string>> message =
      co_await ReadMessage(*state, call, wire_bytes);
  absl::StatusOr<std::optional<std::string>> more = std::nullopt;
  if (message.ok() && message->has_value()) {
    more = co_await ReadMessage(*state, call);
  }
  if (timer) timer->cancel();
  if (!message.ok()) co_return message.status();
  if (!message->has_value()) {
    co_return absl::InternalError("a unary request ended without its message");
  }
  if (!more.ok()) co_return more.status();
  if (more->has_value()) {
    co_return absl::InternalError("a unary request carried a second message");
  }
  co_return **std::move(message);
}

}  // namespace

HttpServer::HttpServer(HttpConfig config, const ServerLimits& limits,
                       asio::any_io_executor executor)
    : SocketServer({config.host, config.port, "DYN_HTTP_RPC_HOST",
                    "DYN_HTTP_RPC_PORT", config.port_from_environment,
                    &Metrics::Global().server_connections(1)},
                   limits, std::move(executor), "http accept loop"),
      config_(std::move(config)) {}

void HttpServer::Accepted(asio::ip::tcp::socket socket,
                          asio::any_io_executor strand,
                          Admission::Token token) {
  auto connection =
      std::make_shared<HttpServerConnection>(std::move(socket), config_, *this);
  if (!connection->Start().ok()) return;
  std::erase_if(connections_, [](const auto& c) { return c.expired(); });
  connections_.push_back(connection);
  tasks().Spawn(strand, H2Connection::WriteLoop(connection),
                "http server writer");
  tasks().Spawn(
      strand,
      net::Holding(std::move(token), H2Connection::ReadLoop(connection)),
      "http server reader");
}

void HttpServer::StoppedAccepting() {
  for (auto& weak : connections_) {
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

// GCC 12 warns (-Wmismatched-new-delete) that this coroutine's frame is
// freed by the sized operator delete of Asio's awaitable_frame_base, "not
// matching" its operator new, which is the same class's: a false positive
// of GCC 12's inlining of coroutine frames (GCC bug 109224), silenced for
// this function only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<void> HttpServer::ServeStream(
    std::shared_ptr<HttpServerConnection> connection,
    std::shared_ptr<H2Stream> stream) {
  co_await asio::this_coro::throw_if_cancelled(false);
  absl::Cleanup forget = [&] { connection->Forget(stream->id); };
  std::shared_ptr<ServerCall> call = connection->CallFor(stream->id);
  if (call == nullptr) co_return;  // already gone
  // Taken, not copied: the connection has read what it needs of them.
  Headers headers =
      connection->Locked([&] { return std::move(stream->headers); });
  Responder respond(connection, stream);

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
        absl::InvalidArgumentError(
            absl::StrCat("unsupported content-type '",
                         std::string(content_type.value_or("")),
                         "': use application/grpc (gRPC) or application/json")),
        415);
    co_return;
  }
  std::string path(FindHeader(headers, ":path").value_or(""));
  std::string method_path = MethodPath(path);
  const MethodEntry* entry = handler().FindMethod(method_path);

  CallRequest request;
  request.method = method_path;
  if (std::optional<std::string_view> timeout =
          FindHeader(headers, "grpc-timeout")) {
    std::optional<Clock::duration> parsed = ParseGrpcTimeout(*timeout);
    if (!parsed) {
      absl::Status bad = absl::InvalidArgumentError(
          absl::StrCat("malformed grpc-timeout '", std::string(*timeout), "'"));
      if (kind == ContentKind::kJson) {
        co_await respond.JsonError(bad);
      } else {
        co_await respond.Grpc(CallResult(bad));
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
      co_await respond.Grpc(CallResult(metadata.status()));
    }
    co_return;
  }
  request.metadata = *std::move(metadata);
  // What the caller compresses with, and accepts (a caller that does not
  // say accepts no compression: JSON callers, say).
  std::optional<std::string_view> encoding =
      FindHeader(headers, "grpc-encoding");
  if (kind == ContentKind::kGrpc && encoding) {
    std::optional<Compression> known = ParseCompression(*encoding);
    if (!known) {
      co_await respond.Grpc(CallResult(UnsupportedCompression(*encoding)));
      co_return;
    }
    request.encoding = *known;
  }
  std::optional<std::string_view> accepts =
      FindHeader(headers, "grpc-accept-encoding");
  request.accepts = kind == ContentKind::kGrpc && accepts
                        ? ParseAcceptEncoding(*accepts)
                        : Bit(Compression::kIdentity);

  if (kind == ContentKind::kJson) {
    ServerCallInfo info{connection->peer(), call->cancelled(),
                        [call](absl::Status why) { call->Cancel(why); }};
    if (entry == nullptr) {
      co_await respond.JsonError(
          absl::UnimplementedError(absl::StrCat("unknown method ", path)), 404);
      co_return;
    }
    if (entry->kind != MethodKind::kUnary) {
      co_await respond.JsonError(absl::UnimplementedError(
          absl::StrCat("JSON calls are for unary methods; ", method_path,
                       " is a streaming method (use gRPC)")));
      co_return;
    }
    absl::StatusOr<std::string> body =
        co_await ReadUnaryRequest(*call, request.deadline);
    if (!body.ok()) {
      co_await respond.JsonError(body.status());
      co_return;
    }
    namespace pb = google::protobuf;
    std::unique_ptr<pb::Message> in(pb::MessageFactory::generated_factory()
                                        ->GetPrototype(entry->request_type)
                                        ->New());
    std::string json = *std::move(body);
    if (json.empty()) json = "{}";
    pb::util::Status parsed = pb::util::JsonStringToMessage(json, in.get());
    if (!parsed.ok()) {
      co_await respond.JsonError(absl::InvalidArgumentError(absl::StrCat(
          "request body is not a JSON ", entry->request_type->full_name(), ": ",
          std::string(parsed.message()))));
      co_return;
    }
    in->SerializeToString(&request.payload);
    CallResult result = co_await RunHandler(handler(), std::move(request),
                                            std::move(info), nullptr);
    if (!result.status.ok()) {
      co_await respond.JsonError(result.status);
      co_return;
    }
    std::unique_ptr<pb::Message> out(pb::MessageFactory::generated_factory()
                                         ->GetPrototype(entry->response_type)
                                         ->New());
    std::string reply;
    if (!out->ParseFromString(result.payload) ||
        !pb::util::MessageToJsonString(*out, &reply).ok()) {
      co_await respond.JsonError(absl::InternalError(
          absl::StrCat("cannot render the response as JSON ",
                       entry->response_type->full_name())));
      co_return;
    }
    co_await respond.Http(200, std::move(reply));
    co_return;
  }

  if (entry == nullptr) {
    co_await respond.Grpc(CallResult(absl::UnimplementedError(
        absl::StrCat("unknown method ", method_path))));
    co_return;
  }
  // The kind the caller says it calls (dynrpc clients), else the method's:
  // the dispatcher refuses a mismatch.
  std::optional<std::string_view> declared =
      FindHeader(headers, kCallKindHeader);
  bool unary =
      declared ? *declared == "unary" : entry->kind == MethodKind::kUnary;
  if (unary) {
    std::size_t wire = 0;
    absl::StatusOr<std::string> message =
        co_await ReadUnaryRequest(*call, request.deadline, &wire);
    if (!message.ok()) {
      bool caller_gone = connection->Locked([&] { return stream->closed; });
      if (!caller_gone) co_await respond.Grpc(CallResult(message.status()));
      co_return;
    }
    request.payload = *std::move(message);
    request.wire_size = wire;
  } else {
    call->stream = stream->state;  // the core runs the stream over it
  }
  // The core runs the handler and sends the end through the call.
  co_await FramedServerCall::Serve(call, handler(), std::move(request),
                                   connection->peer());
}
#pragma GCC diagnostic pop

// --- the frames a call sends ---

absl::Status ServerCall::CheckMessage(std::size_t bytes) const {
  return CheckMessageSize("response", bytes, max_message_);
}

absl::Status ServerCall::SendMessage(std::string message,
                                     const Metadata* initial_metadata,
                                     Compression encoding, bool compressed) {
  std::shared_ptr<HttpServerConnection> c = connection.lock();
  if (c == nullptr) return absl::UnavailableError("the connection was lost");
  if (initial_metadata != nullptr) {
    DYNRPC_RETURN_IF_ERROR(c->SubmitResponse(
        h2, GrpcResponseHeaders(*initial_metadata, encoding), /*body=*/true));
  }
  std::string prefix =
      EncodeGrpcPrefix(static_cast<uint32_t>(message.size()), compressed);
  c->QueueData(h2, std::move(prefix), std::move(message), /*end=*/false);
  return absl::OkStatus();
}

void ServerCall::SendWindow(uint32_t bytes) {
  if (std::shared_ptr<HttpServerConnection> c = connection.lock()) {
    c->Consumed(h2, bytes);
  }
}

void ServerCall::SendEnd(CallResult result, bool initial_sent) {
  if (std::shared_ptr<HttpServerConnection> c = connection.lock()) {
    Responder(std::move(c), h2).SendGrpcEnd(std::move(result), initial_sent);
  }
}

asio::awaitable<absl::Status> ServerCall::Ready() {
  std::shared_ptr<HttpServerConnection> c = connection.lock();
  if (c == nullptr) co_return absl::UnavailableError("the connection was lost");
  co_return co_await c->WaitWritable(h2, kWriteHighWater);
}

void ServerCall::OnCancel(const absl::Status& why) {
  if (std::shared_ptr<HttpServerConnection> c = connection.lock()) {
    c->FailStream(h2, why);
  }
}

asio::awaitable<void> ServerCall::Drain() {
  if (std::shared_ptr<HttpServerConnection> c = connection.lock()) {
    co_await Responder(std::move(c), h2).StopCaller();
  }
}

}  // namespace dynrpc::internal::http

// Typed message streams: what streaming methods of generated stubs and
// services hand their callers.
//
// Client side, a server-streaming method:
//   dynrpc::ClientReader<Token> tokens = stub.Generate(ctx, request);
//   Token token;
//   while (co_await tokens.Next(token)) Print(token);
//   absl::Status status = co_await tokens.Finish();  // OK, or why it ended
//
// or, where each read's outcome matters, Read():
//   absl::StatusOr<std::optional<Token>> token = co_await tokens.Read();
//   // an error: the call failed; nullopt: the server finished with OK
//
// Server side, the same method:
//   boost::asio::awaitable<absl::Status> Generate(
//       dynrpc::ServerContext& ctx, const Prompt& prompt,
//       dynrpc::ServerWriter<Token>& writer) override {
//     for (...) DYNRPC_CO_RETURN_IF_ERROR(co_await writer.Write(token));
//     co_return absl::OkStatus();
//   }
//
// Flow control: Write() waits while the other side has not read what was
// already sent (a bounded window per stream), so a slow reader slows its
// writer instead of growing memory. One Read() and one Write() may be
// outstanding at a time on a stream, from any coroutines.
#ifndef DYNRPC_STREAM_H_
#define DYNRPC_STREAM_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "dynrpc/message_buffers.h"

namespace dynrpc {

// The untyped client side of a streaming call, as a request plane provides
// it. Dropping it before Finish() completed cancels the call. Implement it to
// fake a stream in tests; generated code only wraps it.
class RawClientStream {
 public:
  virtual ~RawClientStream() = default;
  // Sends one message (compressed as the context says, unless `options`
  // says not). Waits while the send window is full. An error means the call
  // is over: Finish() says why.
  virtual boost::asio::awaitable<absl::Status> Write(std::string message,
                                                     WriteOptions options) = 0;
  // No more messages from this side (half-close). Idempotent.
  virtual boost::asio::awaitable<absl::Status> WritesDone() = 0;
  // The next message; nullopt when the server ended the stream with OK; the
  // call's status when it ended otherwise.
  virtual boost::asio::awaitable<absl::StatusOr<std::optional<std::string>>>
  Read() = 0;
  // Half-closes if needed, drops unread messages, and waits for the call's
  // status. Afterwards the context holds the server's metadata.
  virtual boost::asio::awaitable<absl::Status> Finish() = 0;
};

// The untyped server side of a streaming call, as a request plane provides
// it. Owned by the runtime; valid until the handler's coroutine completes.
class RawServerStream {
 public:
  virtual ~RawServerStream() = default;
  // The next message; nullopt when the client half-closed; when the call
  // ended first, why: CANCELLED (the caller cancelled or the handler's
  // coroutine was), DEADLINE_EXCEEDED, UNAVAILABLE (the caller's connection
  // was lost) or RESOURCE_EXHAUSTED (the caller overran its window or the
  // size limit).
  virtual boost::asio::awaitable<absl::StatusOr<std::optional<std::string>>>
  Read() = 0;
  // Sends one message (the first also sends the context's initial
  // metadata; the first fixes the call's compression). Waits while the
  // client has not read enough; an error means the call is over (the
  // handler should return).
  virtual boost::asio::awaitable<absl::Status> Write(std::string message,
                                                     WriteOptions options) = 0;
};

namespace internal {

template <typename T>
absl::StatusOr<std::optional<T>> ParseRead(
    absl::StatusOr<std::optional<std::string>> raw) {
  if (!raw.ok()) return std::move(raw).status();
  if (!raw->has_value()) return std::optional<T>();
  T message;
  std::size_t size = (*raw)->size();
  if (!ParseAndRecycle(std::move(**raw), message)) {
    return absl::InternalError("failed to parse a streamed message of " +
                               std::to_string(size) + " bytes as " +
                               T::descriptor()->full_name());
  }
  return std::optional<T>(std::move(message));
}

template <typename T>
absl::StatusOr<std::string> Serialize(const T& message) {
  std::string bytes;
  if (!SerializeToBuffer(message, bytes)) {
    return absl::InternalError("failed to serialize a " +
                               T::descriptor()->full_name());
  }
  return bytes;
}

// The typed operations over a raw client stream, for the classes below.
class ClientStreamBase {
 public:
  explicit ClientStreamBase(std::unique_ptr<RawClientStream> raw)
      : raw_(std::move(raw)) {}

 protected:
  template <typename T>
  boost::asio::awaitable<absl::Status> WriteTyped(const T& message,
                                                  WriteOptions options) {
    absl::StatusOr<std::string> bytes = Serialize(message);
    if (!bytes.ok()) co_return bytes.status();
    co_return co_await raw_->Write(*std::move(bytes), options);
  }
  template <typename T>
  boost::asio::awaitable<absl::StatusOr<std::optional<T>>> ReadTyped() {
    co_return ParseRead<T>(co_await raw_->Read());
  }
  template <typename T>
  boost::asio::awaitable<bool> NextTyped(T& out) {
    absl::StatusOr<std::optional<T>> next = co_await ReadTyped<T>();
    if (!next.ok()) {
      if (read_error_.ok()) read_error_ = next.status();
      co_return false;
    }
    if (!next->has_value()) co_return false;
    out = std::move(**next);
    co_return true;
  }
  // The call's status, or (if the call ended OK) the error a Next() met.
  boost::asio::awaitable<absl::Status> FinishReading() {
    absl::Status status = co_await raw_->Finish();
    if (status.ok() && !read_error_.ok()) co_return read_error_;
    co_return status;
  }
  std::unique_ptr<RawClientStream> raw_;
  absl::Status read_error_;  // the first error Next() met
};

}  // namespace internal

// Reads the responses of a server-streaming call. Move-only; the context it
// was started with must outlive it.
template <typename Response>
class ClientReader : private internal::ClientStreamBase {
 public:
  explicit ClientReader(std::unique_ptr<RawClientStream> raw)
      : ClientStreamBase(std::move(raw)) {}
  ClientReader(ClientReader&&) = default;
  ClientReader& operator=(ClientReader&&) = default;

  // The next response; nullopt at the end of a call that ended with OK; the
  // call's status if it failed.
  boost::asio::awaitable<absl::StatusOr<std::optional<Response>>> Read() {
    return ReadTyped<Response>();
  }
  // The next response into `out`: true, or false at the end of the stream,
  // whether it ended well or not (Finish() says which), as gRPC's Read().
  boost::asio::awaitable<bool> Next(Response& out) {
    return NextTyped(out);
  }
  // The call's status, dropping unread responses (which cancels nothing: the
  // server finishes on its own). After Next() gave false, why it did. Not
  // needed after Read() gave nullopt or an error, but gives the trailing
  // metadata.
  boost::asio::awaitable<absl::Status> Finish() { return FinishReading(); }
};

// Writes the requests of a client-streaming call, then takes its response.
template <typename Request, typename Response>
class ClientWriter : private internal::ClientStreamBase {
 public:
  explicit ClientWriter(std::unique_ptr<RawClientStream> raw)
      : ClientStreamBase(std::move(raw)) {}
  ClientWriter(ClientWriter&&) = default;
  ClientWriter& operator=(ClientWriter&&) = default;

  // An error means the call is over; Finish() says why.
  boost::asio::awaitable<absl::Status> Write(const Request& request,
                                             WriteOptions options = {}) {
    return WriteTyped(request, options);
  }
  // Half-closes and waits for the response or the call's status.
  boost::asio::awaitable<absl::StatusOr<Response>> Finish() {
    co_await raw_->WritesDone();
    absl::StatusOr<std::optional<Response>> response = co_await ReadTyped<Response>();
    absl::Status status = co_await raw_->Finish();
    if (!status.ok()) co_return status;
    if (!response.ok()) co_return response.status();
    if (!response->has_value()) {
      co_return absl::InternalError(
          "client-streaming call ended with OK but no response");
    }
    co_return std::move(**response);
  }
};

// Both directions of a bidirectional-streaming call.
template <typename Request, typename Response>
class ClientReaderWriter : private internal::ClientStreamBase {
 public:
  explicit ClientReaderWriter(std::unique_ptr<RawClientStream> raw)
      : ClientStreamBase(std::move(raw)) {}
  ClientReaderWriter(ClientReaderWriter&&) = default;
  ClientReaderWriter& operator=(ClientReaderWriter&&) = default;

  boost::asio::awaitable<absl::Status> Write(const Request& request,
                                             WriteOptions options = {}) {
    return WriteTyped(request, options);
  }
  boost::asio::awaitable<absl::Status> WritesDone() {
    return raw_->WritesDone();
  }
  boost::asio::awaitable<absl::StatusOr<std::optional<Response>>> Read() {
    return ReadTyped<Response>();
  }
  // As ClientReader's.
  boost::asio::awaitable<bool> Next(Response& out) {
    return NextTyped(out);
  }
  boost::asio::awaitable<absl::Status> Finish() { return FinishReading(); }
};

// A handler's view of the requests of a client-streaming or bidi call.
template <typename Request>
class ServerReader {
 public:
  explicit ServerReader(RawServerStream& raw) : raw_(raw) {}
  // The next request; nullopt when the client is done sending; an error
  // when the call ended (cancelled, deadline, connection lost).
  boost::asio::awaitable<absl::StatusOr<std::optional<Request>>> Read() {
    co_return internal::ParseRead<Request>(co_await raw_.Read());
  }
  // The next request into `out`: true, or false once the client is done
  // sending or the call ended; then status() says which.
  //   Request request;
  //   while (co_await reader.Next(request)) Handle(request);
  //   DYNRPC_CO_RETURN_IF_ERROR(reader.status());
  boost::asio::awaitable<bool> Next(Request& out) {
    absl::StatusOr<std::optional<Request>> next = co_await Read();
    if (!next.ok()) {
      status_ = next.status();
      co_return false;
    }
    if (!next->has_value()) co_return false;
    out = std::move(**next);
    co_return true;
  }
  // OK, or why the last Next() gave false other than the client's end.
  const absl::Status& status() const { return status_; }

 private:
  RawServerStream& raw_;
  absl::Status status_;
};

// A handler's way to stream responses.
template <typename Response>
class ServerWriter {
 public:
  explicit ServerWriter(RawServerStream& raw) : raw_(raw) {}
  // Waits while the client lags behind. An error means the call is over:
  // the handler should return.
  boost::asio::awaitable<absl::Status> Write(const Response& response,
                                             WriteOptions options = {}) {
    absl::StatusOr<std::string> bytes = internal::Serialize(response);
    if (!bytes.ok()) co_return bytes.status();
    co_return co_await raw_.Write(*std::move(bytes), options);
  }

 private:
  RawServerStream& raw_;
};

template <typename Request, typename Response>
class ServerReaderWriter : public ServerReader<Request>,
                           public ServerWriter<Response> {
 public:
  explicit ServerReaderWriter(RawServerStream& raw)
      : ServerReader<Request>(raw), ServerWriter<Response>(raw) {}
};

}  // namespace dynrpc

#endif  // DYNRPC_STREAM_H_

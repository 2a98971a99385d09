// The base of every generated service skeleton.
//
// Generated code derives `Greeter::Service` from dynrpc::Service and
// registers one typed handler per method; user code overrides the virtual
// coroutine handlers and hands the object to a dynrpc::Server.
//
// Example:
//   class GreeterImpl final : public helloworld::Greeter::Service {
//     dynrpc::Reply<helloworld::HelloReply> SayHello(
//         dynrpc::ServerContext& ctx,
//         const helloworld::HelloRequest& request) override {
//       helloworld::HelloReply reply;
//       reply.set_message("Hello " + request.name());
//       co_return reply;
//     }
//   };
#ifndef DYNRPC_SERVICE_H_
#define DYNRPC_SERVICE_H_

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/awaitable.hpp"
#include "dynrpc/context.h"
#include "dynrpc/stream.h"

namespace google::protobuf {
class Descriptor;
}  // namespace google::protobuf

namespace dynrpc {

// What handlers return, as the generated classes spell it (the long forms
// are the same types, and override as well):
//   dynrpc::Reply<HelloReply> SayHello(ServerContext&, const HelloRequest&);
//   dynrpc::StreamReply Generate(ServerContext&, const Prompt&,
//                                ServerWriter<Token>&);
// A unary or client-streaming handler yields its response or an error; a
// server- or bidi-streaming one how the call ended.
template <typename Response>
using Reply = boost::asio::awaitable<absl::StatusOr<Response>>;
using StreamReply = boost::asio::awaitable<absl::Status>;

// A type-erased unary handler: takes the serialized request (its buffer is
// the handler's, recycled once parsed), yields the serialized response or the
// call's error status.
using RawUnaryHandler =
    std::function<boost::asio::awaitable<absl::StatusOr<std::string>>(
        ServerContext& context, std::string request)>;

// A type-erased streaming handler: reads and writes through `stream`, and
// yields the call's status with, for client-streaming methods, the
// serialized response (empty otherwise).
using RawStreamHandler =
    std::function<boost::asio::awaitable<absl::StatusOr<std::string>>(
        ServerContext& context, RawServerStream& stream)>;

enum class MethodKind { kUnary, kServerStreaming, kClientStreaming, kBidi };

// One method of a service, as the server's dispatcher sees it.
struct MethodEntry {
  std::string path;  // "/package.Service/Method"
  MethodKind kind = MethodKind::kUnary;
  // The message types, for planes that transcode (the HTTP plane's JSON).
  const google::protobuf::Descriptor* request_type = nullptr;
  const google::protobuf::Descriptor* response_type = nullptr;
  RawUnaryHandler unary;    // kUnary
  RawStreamHandler stream;  // the streaming kinds
};

class Service {
 public:
  virtual ~Service() = default;
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // The fully-qualified service name, e.g. "helloworld.Greeter".
  const std::string& full_name() const { return full_name_; }
  // Every method registered by the generated constructor.
  const std::vector<MethodEntry>& methods() const { return methods_; }

 protected:
  explicit Service(std::string full_name) : full_name_(std::move(full_name)) {}

  // For generated code: registers `handler` (a member of the derived class,
  // called virtually on `this`) under "/<full_name>/<method_name>". A request
  // that does not parse as `Request` fails with INTERNAL without calling the
  // handler.
  template <typename Request, typename Response, typename Derived>
  void AddUnaryMethod(
      std::string_view method_name,
      boost::asio::awaitable<absl::StatusOr<Response>> (Derived::*handler)(
          ServerContext&, const Request&)) {
    Derived* self = static_cast<Derived*>(this);
    MethodEntry& m = AddMethod<Request, Response>(method_name, MethodKind::kUnary);
    m.unary = [self, handler](ServerContext& context, std::string bytes)
        -> boost::asio::awaitable<absl::StatusOr<std::string>> {
      return Invoke<Request, Response>(self, handler, context,
                                       std::move(bytes));
    };
  }

  // For generated code: a server-streaming method. The handler gets the one
  // request and writes responses; what it returns is the call's status.
  template <typename Request, typename Response, typename Derived>
  void AddServerStreamingMethod(
      std::string_view method_name,
      boost::asio::awaitable<absl::Status> (Derived::*handler)(
          ServerContext&, const Request&, ServerWriter<Response>&)) {
    Derived* self = static_cast<Derived*>(this);
    AddMethod<Request, Response>(method_name, MethodKind::kServerStreaming)
        .stream =
        [self, handler](ServerContext& context, RawServerStream& stream)
        -> boost::asio::awaitable<absl::StatusOr<std::string>> {
      return InvokeServerStreaming<Request, Response>(self, handler, context,
                                                      stream);
    };
  }

  // For generated code: a client-streaming method. The handler reads the
  // requests and returns the one response.
  template <typename Request, typename Response, typename Derived>
  void AddClientStreamingMethod(
      std::string_view method_name,
      boost::asio::awaitable<absl::StatusOr<Response>> (Derived::*handler)(
          ServerContext&, ServerReader<Request>&)) {
    Derived* self = static_cast<Derived*>(this);
    AddMethod<Request, Response>(method_name, MethodKind::kClientStreaming)
        .stream =
        [self, handler](ServerContext& context, RawServerStream& stream)
        -> boost::asio::awaitable<absl::StatusOr<std::string>> {
      return InvokeClientStreaming<Request, Response>(self, handler, context,
                                                      stream);
    };
  }

  // For generated code: a bidirectional-streaming method.
  template <typename Request, typename Response, typename Derived>
  void AddBidiStreamingMethod(
      std::string_view method_name,
      boost::asio::awaitable<absl::Status> (Derived::*handler)(
          ServerContext&, ServerReaderWriter<Request, Response>&)) {
    Derived* self = static_cast<Derived*>(this);
    AddMethod<Request, Response>(method_name, MethodKind::kBidi)
        .stream =
        [self, handler](ServerContext& context, RawServerStream& stream)
        -> boost::asio::awaitable<absl::StatusOr<std::string>> {
      return InvokeBidi<Request, Response>(self, handler, context, stream);
    };
  }

 private:
  template <typename Request, typename Response, typename Derived>
  static boost::asio::awaitable<absl::StatusOr<std::string>> Invoke(
      Derived* self,
      boost::asio::awaitable<absl::StatusOr<Response>> (Derived::*handler)(
          ServerContext&, const Request&),
      ServerContext& context, std::string bytes) {
    Request request;
    const std::size_t size = bytes.size();
    // The buffer goes back for reuse before the handler runs: the response
    // is serialized into it.
    if (!internal::ParseAndRecycle(std::move(bytes), request)) {
      co_return absl::InternalError(
          "failed to parse request of " + std::to_string(size) +
          " bytes as " + Request::descriptor()->full_name() + " for " +
          context.method());
    }
    absl::StatusOr<Response> response =
        co_await (self->*handler)(context, request);
    if (!response.ok()) co_return std::move(response).status();
    std::string out;
    if (!internal::SerializeToBuffer(*response, out)) {
      co_return absl::InternalError("failed to serialize response of " +
                                    context.method());
    }
    co_return out;
  }

  template <typename Request, typename Response>
  MethodEntry& AddMethod(std::string_view method_name, MethodKind kind) {
    MethodEntry& m = methods_.emplace_back();
    m.path = "/" + full_name_ + "/" + std::string(method_name);
    m.kind = kind;
    m.request_type = Request::descriptor();
    m.response_type = Response::descriptor();
    return m;
  }

  template <typename Request, typename Response, typename Derived>
  static boost::asio::awaitable<absl::StatusOr<std::string>>
  InvokeServerStreaming(Derived* self,
                        boost::asio::awaitable<absl::Status> (Derived::*handler)(
                            ServerContext&, const Request&,
                            ServerWriter<Response>&),
                        ServerContext& context, RawServerStream& stream) {
    absl::StatusOr<std::optional<Request>> request =
        internal::ParseRead<Request>(co_await stream.Read());
    if (!request.ok()) co_return request.status();
    if (!request->has_value()) {
      co_return absl::InternalError("server-streaming call " +
                                    context.method() + " sent no request");
    }
    ServerWriter<Response> writer(stream);
    absl::Status status = co_await (self->*handler)(context, **request, writer);
    if (!status.ok()) co_return status;
    co_return std::string();
  }

  template <typename Request, typename Response, typename Derived>
  static boost::asio::awaitable<absl::StatusOr<std::string>>
  InvokeClientStreaming(Derived* self,
                        boost::asio::awaitable<absl::StatusOr<Response>> (
                            Derived::*handler)(ServerContext&,
                                               ServerReader<Request>&),
                        ServerContext& context, RawServerStream& stream) {
    ServerReader<Request> reader(stream);
    absl::StatusOr<Response> response =
        co_await (self->*handler)(context, reader);
    if (!response.ok()) co_return std::move(response).status();
    co_return internal::Serialize(*response);
  }

  template <typename Request, typename Response, typename Derived>
  static boost::asio::awaitable<absl::StatusOr<std::string>> InvokeBidi(
      Derived* self,
      boost::asio::awaitable<absl::Status> (Derived::*handler)(
          ServerContext&, ServerReaderWriter<Request, Response>&),
      ServerContext& context, RawServerStream& stream) {
    ServerReaderWriter<Request, Response> reader_writer(stream);
    absl::Status status = co_await (self->*handler)(context, reader_writer);
    if (!status.ok()) co_return status;
    co_return std::string();
  }

  std::string full_name_;
  std::vector<MethodEntry> methods_;
};

// What a generated handler that the user did not override returns.
inline absl::Status UnimplementedMethod(std::string_view path) {
  return absl::UnimplementedError("method " + std::string(path) +
                                   " is not implemented by this server");
}

}  // namespace dynrpc

#endif  // DYNRPC_SERVICE_H_

// The base of every generated service skeleton.
//
// Generated code derives `Greeter::Service` from dynrpc::Service and
// registers one typed handler per method; user code overrides the virtual
// coroutine handlers and hands the object to a dynrpc::Server.
//
// Example:
//   class GreeterImpl final : public helloworld::Greeter::Service {
//     boost::asio::awaitable<absl::StatusOr<helloworld::HelloReply>> SayHello(
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

namespace dynrpc {

// A type-erased unary handler: takes the serialized request, yields the
// serialized response or the call's error status. `request` stays valid until
// the returned awaitable completes.
using RawUnaryHandler =
    std::function<boost::asio::awaitable<absl::StatusOr<std::string>>(
        ServerContext& context, std::string_view request)>;

// One method of a service, as the server's dispatcher sees it.
struct MethodEntry {
  std::string path;  // "/package.Service/Method"
  RawUnaryHandler handler;
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
    methods_.push_back(MethodEntry{
        "/" + full_name_ + "/" + std::string(method_name),
        [self, handler](ServerContext& context, std::string_view bytes)
            -> boost::asio::awaitable<absl::StatusOr<std::string>> {
          return Invoke<Request, Response>(self, handler, context, bytes);
        }});
  }

 private:
  template <typename Request, typename Response, typename Derived>
  static boost::asio::awaitable<absl::StatusOr<std::string>> Invoke(
      Derived* self,
      boost::asio::awaitable<absl::StatusOr<Response>> (Derived::*handler)(
          ServerContext&, const Request&),
      ServerContext& context, std::string_view bytes) {
    Request request;
    if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      co_return absl::InternalError(
          "failed to parse request of " + std::to_string(bytes.size()) +
          " bytes as " + Request::descriptor()->full_name() + " for " +
          context.method());
    }
    absl::StatusOr<Response> response =
        co_await (self->*handler)(context, request);
    if (!response.ok()) co_return std::move(response).status();
    std::string out;
    if (!response->SerializeToString(&out)) {
      co_return absl::InternalError("failed to serialize response of " +
                                    context.method());
    }
    co_return out;
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

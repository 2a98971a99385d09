// Serves helloworld.Greeter on the request plane DYN_REQUEST_PLANE selects.
//
//   greeter_server [--address-file=PATH]
//
// Prints "listening on <address>" (and writes the address to PATH) once it
// accepts calls; stops on SIGINT or SIGTERM.
#include "common/example_server.h"
#include "dynrpc/dynrpc.h"
#include "helloworld/helloworld.dynrpc.pb.h"

namespace {

class GreeterImpl final : public helloworld::Greeter::Service {
 public:
  boost::asio::awaitable<absl::StatusOr<helloworld::HelloReply>> SayHello(
      dynrpc::ServerContext& context,
      const helloworld::HelloRequest& request) override {
    if (request.name().empty()) {
      co_return absl::InvalidArgumentError("name must not be empty");
    }
    helloworld::HelloReply reply;
    reply.set_message("Hello, " + request.name() + "!");
    co_return reply;
  }
};

}  // namespace

int main(int argc, char** argv) {
  GreeterImpl greeter;
  return examples::ServeUntilSignalled("greeter_server", greeter, argc, argv);
}

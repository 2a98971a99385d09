// Serves first.Greeter on the request plane DYN_REQUEST_PLANE picks (tcp
// unless set) until Ctrl-C.
#include <iostream>
#include <string>

#include "dynrpc/dynrpc.h"
#include "greeter.dynrpc.pb.h"

class Greeter final : public first::Greeter::Service {
 public:
  dynrpc::Reply<first::HelloReply> SayHello(
      dynrpc::ServerContext& context,
      const first::HelloRequest& request) override {
    if (request.name().empty()) {
      co_return absl::InvalidArgumentError("name must not be empty");
    }
    first::HelloReply reply;
    reply.set_message("Hello, " + request.name() + "!");
    co_return reply;
  }

  dynrpc::StreamReply SayHellos(
      dynrpc::ServerContext& context, const first::HelloRequest& request,
      dynrpc::ServerWriter<first::HelloReply>& writer) override {
    for (int i = 1; i <= request.times(); ++i) {
      first::HelloReply reply;
      reply.set_message("Hello #" + std::to_string(i) + ", " + request.name());
      // Fails once the caller has gone (cancelled, deadline, disconnected).
      if (absl::Status s = co_await writer.Write(reply); !s.ok()) co_return s;
    }
    co_return absl::OkStatus();
  }
};

int main() {
  dynrpc::Runtime runtime;  // the threads that run calls
  dynrpc::Server server(runtime.executor());
  Greeter greeter;
  absl::Status started = server.AddService(greeter);
  if (started.ok()) started = server.Start();
  if (!started.ok()) {
    std::cerr << "server: " << started << "\n";
    return 1;
  }
  std::cout << "listening on " << server.address() << std::endl;
  server.Wait();  // until SIGINT or SIGTERM, then a clean shutdown
}
